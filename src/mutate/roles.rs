//! Roles (docs/mutation.md): the role-selection init container, its volumes, and the markers the Pod
//! CREATE hook reads.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, LocalObjectReference,
    PodSpec, ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Report;
use super::added::Added;
use crate::k8s::annotations as ann;
use crate::k8s::keys;
use crate::k8s::roles::{RoleSpec, mount_path_problem, server_id_base, spec_of};
use crate::policy::Policy;

pub const INIT_CONTAINER: &str = "stsguard-role";
pub const ROLE_VOLUME: &str = "stsguard-role";
pub const CONFIG_VOLUME: &str = "stsguard-role-config";
pub const CONFIG_MOUNT_PATH: &str = "/etc/stsguard-config";
pub const BINARY: &str = "/usr/local/bin/stsguard";

/// What the roles step settled, for the steps after it and for reports.
pub struct Roles {
    pub spec: RoleSpec,
    pub primary_fqdn: Option<String>,
}

/// Where the role files are mounted: `stsguard.io/role-mount-path` when it is usable (see
/// [`mount_path_problem`]), else the policy's.
pub fn mount_path<'a>(sts: &'a StatefulSet, policy: &'a Policy) -> &'a str {
    match ann::get(sts, keys::ROLE_MOUNT_PATH) {
        Some(p) if mount_path_problem(p).is_none() => p,
        _ => &policy.mutation.roles.mount_path,
    }
}

fn q(s: &str) -> Quantity {
    Quantity(s.to_string())
}

fn init_container(
    sts: &StatefulSet,
    spec: &RoleSpec,
    policy: &Policy,
    config: bool,
    base: Option<u64>,
) -> Container {
    let mount = mount_path(sts, policy).to_string();
    let mut args = vec![
        "role-init".to_string(),
        "--roles".into(),
        spec.to_string(),
        "--out".into(),
        mount.clone(),
    ];
    if config {
        args.extend(["--config-dir".to_string(), CONFIG_MOUNT_PATH.to_string()]);
    }
    if let Some(b) = base {
        args.extend(["--server-id-base".to_string(), b.to_string()]);
    }
    args.extend([
        "--cluster-domain".to_string(),
        policy.cluster_domain.clone(),
    ]);
    let mut mounts = vec![VolumeMount {
        name: ROLE_VOLUME.into(),
        mount_path: mount,
        ..Default::default()
    }];
    if config {
        mounts.push(VolumeMount {
            name: CONFIG_VOLUME.into(),
            mount_path: CONFIG_MOUNT_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    Container {
        name: INIT_CONTAINER.into(),
        image: Some(policy.mutation.roles.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![BINARY.to_string()]),
        args: Some(args),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), q("10m")),
                ("memory".into(), q("16Mi")),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".into(), q("100m")),
                ("memory".into(), q("32Mi")),
            ])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn ensure_volume(pod: &mut PodSpec, volume: Volume, report: &mut Report) {
    let vols = pod.volumes.get_or_insert_with(Vec::new);
    match vols.iter().find(|v| v.name == volume.name) {
        None => {
            report.added(format!("volume \"{}\"", volume.name));
            vols.push(volume);
        }
        Some(v)
            if v.empty_dir.is_some() == volume.empty_dir.is_some()
                && v.config_map.is_some() == volume.config_map.is_some() => {}
        Some(_) => report.warn(
            super::WarningId::VolumeKept,
            format!(
                "a volume \"{}\" exists already and is not stsguard's: kept it",
                volume.name
            ),
        ),
    }
}

/// Mounts the role volume read-only into a container unless it already mounts it or uses the path.
fn ensure_mount(c: &mut Container, path: &str, what: &str, report: &mut Report) {
    let mounts = c.volume_mounts.as_deref().unwrap_or_default();
    if mounts.iter().any(|m| m.name == ROLE_VOLUME) {
        return;
    }
    if mounts
        .iter()
        .any(|m| m.mount_path.trim_end_matches('/') == path.trim_end_matches('/'))
    {
        report.warn(
            super::WarningId::MountKept,
            format!(
                "{what} \"{}\" mounts something else at {path}: role files not mounted there",
                c.name
            ),
        );
        return;
    }
    c.volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: ROLE_VOLUME.into(),
            mount_path: path.to_string(),
            read_only: Some(true),
            ..Default::default()
        });
}

/// Is `key` one of the annotations stsguard copies onto the pod template?
fn is_copy(key: &str) -> bool {
    key == keys::ROLES || key.starts_with(keys::ROLE_NODE_SELECTOR_PREFIX)
}

/// Every container and init container but stsguard's own.
fn all_but_ours(pod: &mut PodSpec) -> impl Iterator<Item = &mut Container> {
    let inits = pod.init_containers.iter_mut().flatten();
    inits
        .filter(|c| c.name != INIT_CONTAINER)
        .chain(pod.containers.iter_mut())
}

/// Removes stsguard's volume `name` (an emptyDir for the role files, a ConfigMap for the
/// config: a user's volume of that name and another kind is the user's).
fn remove_volume(pod: &mut PodSpec, name: &str, report: &mut Report) {
    let Some(vols) = pod.volumes.as_mut() else {
        return;
    };
    let ours = |v: &Volume| {
        v.name == name
            && match name {
                ROLE_VOLUME => v.empty_dir.is_some(),
                _ => v.config_map.is_some(),
            }
    };
    let before = vols.len();
    vols.retain(|v| !ours(v));
    if vols.len() < before {
        report.removed(format!("volume \"{name}\""));
    }
}

/// Takes out what stsguard added for the roles, when it added them (the record says so, or its
/// init container is there): the init container, its volumes and their mounts, the
/// `stsguard.io/managed` pod label and the annotation copies, the image pull secrets it added.
/// `STS_PRIMARY_FQDN` goes with the identity variables ([`super::env::apply`]). What the user
/// wrote stays.
pub fn take_out(sts: &mut StatefulSet, added: &mut Added, report: &mut Report) {
    let Some(template) = sts.spec.as_mut().map(|s| &mut s.template) else {
        return;
    };
    let has_init = template
        .spec
        .as_ref()
        .and_then(|p| p.init_containers.as_ref())
        .is_some_and(|i| i.iter().any(|c| c.name == INIT_CONTAINER));
    if !added.roles && !has_init {
        return;
    }
    if let Some(meta) = template.metadata.as_mut() {
        if meta
            .labels
            .as_mut()
            .and_then(|l| l.remove(keys::MANAGED))
            .is_some()
        {
            report.removed(format!("pod label {}", keys::MANAGED));
        }
        if let Some(anns) = meta.annotations.as_mut() {
            let copies: Vec<String> = anns.keys().filter(|k| is_copy(k)).cloned().collect();
            for k in copies {
                anns.remove(&k);
                report.removed(format!("pod annotation {k}"));
            }
        }
    }
    if let Some(pod) = template.spec.as_mut() {
        if let Some(inits) = pod.init_containers.as_mut() {
            let before = inits.len();
            inits.retain(|c| c.name != INIT_CONTAINER);
            if inits.len() < before {
                report.removed(format!("init container \"{INIT_CONTAINER}\""));
            }
        }
        remove_volume(pod, ROLE_VOLUME, report);
        remove_volume(pod, CONFIG_VOLUME, report);
        // The mounts named like the role volume are stsguard's (it mounts a user's volume of
        // that name too, with a volume-kept warning).
        for c in all_but_ours(pod) {
            if let Some(mounts) = c.volume_mounts.as_mut() {
                let before = mounts.len();
                mounts.retain(|m| m.name != ROLE_VOLUME);
                if mounts.len() < before {
                    report.removed(format!("role files mount of \"{}\"", c.name));
                }
            }
        }
        if !added.image_pull_secrets.is_empty() {
            if let Some(secrets) = pod.image_pull_secrets.as_mut() {
                secrets.retain(|s| !added.image_pull_secrets.contains(&s.name));
                report.removed(format!(
                    "imagePullSecrets {}",
                    added.image_pull_secrets.join(",")
                ));
            }
        }
    }
    added.roles = false;
    added.image_pull_secrets.clear();
}

/// The annotations stsguard copies from the StatefulSet onto its pod template.
pub fn copied_annotations(sts: &StatefulSet) -> BTreeMap<String, String> {
    sts.metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| *k == keys::ROLES || k.starts_with(keys::ROLE_NODE_SELECTOR_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Applies the roles of `stsguard.io/roles`; without the annotation, or when it does not parse,
/// takes out what stsguard added for them ([`take_out`]). `added`: the record, kept up to date.
pub fn apply(
    sts: &mut StatefulSet,
    policy: &Policy,
    added: &mut Added,
    report: &mut Report,
) -> Option<Roles> {
    let Some((spec, base)) = settings(sts, report) else {
        take_out(sts, added, report);
        return None;
    };
    added.roles = true;
    let primary_fqdn = primary_fqdn(sts, &spec, policy, report);
    let config = ann::get(sts, keys::ROLE_CONFIG)
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(String::from);
    let mount = mount_path(sts, policy).to_string();
    let copied = copied_annotations(sts);
    let ours = init_container(sts, &spec, policy, config.is_some(), base);
    let sts_spec = sts.spec.as_mut()?;
    mark_template(
        sts_spec
            .template
            .metadata
            .get_or_insert_with(ObjectMeta::default),
        copied,
        report,
    );
    let pod = sts_spec.template.spec.get_or_insert_with(PodSpec::default);
    mount_role_files(pod, &mount, config.as_deref(), report);
    add_pull_secrets(
        pod,
        &policy.mutation.roles.image_pull_secrets,
        added,
        report,
    );
    ensure_init_container(pod, ours, &spec, report);
    Some(Roles { spec, primary_fqdn })
}

/// The role spec and the server-id base, or `None` (with a warning when they do not parse):
/// no roles.
fn settings(sts: &StatefulSet, report: &mut Report) -> Option<(RoleSpec, Option<u64>)> {
    let invalid = |report: &mut Report, e: String| {
        report.warn(
            super::WarningId::RolesInvalid,
            format!("role-spec: {e}; roles not applied"),
        );
    };
    let spec = match spec_of(sts)? {
        Ok(s) => s,
        Err(e) => {
            invalid(report, e);
            return None;
        }
    };
    match server_id_base(sts) {
        None => Some((spec, None)),
        Some(Ok(b)) => Some((spec, Some(b))),
        Some(Err(e)) => {
            invalid(report, e);
            None
        }
    }
}

/// `STS_PRIMARY_FQDN`: the primary pod's name under the governing Service, when there is one.
fn primary_fqdn(
    sts: &StatefulSet,
    spec: &RoleSpec,
    policy: &Policy,
    report: &mut Report,
) -> Option<String> {
    let name = sts.metadata.name.as_deref().unwrap_or_default();
    let service = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.as_deref())
        .filter(|s| !s.is_empty());
    match service {
        Some(svc) if !name.is_empty() => Some(format!(
            "{name}-{}.{svc}.$(POD_NAMESPACE).svc.{}",
            spec.primary_ordinal(),
            policy.cluster_domain
        )),
        _ => {
            report.warn(
                super::WarningId::NoServiceName,
                "spec.serviceName is empty: STS_PRIMARY_FQDN not injected",
            );
            None
        }
    }
}

/// Markers for the Pod CREATE hook (objectSelector) and its inputs on the pod template. The
/// copies are stsguard's own: they follow the StatefulSet's annotations, and copies of
/// annotations the StatefulSet no longer has go (a node selector removed).
fn mark_template(meta: &mut ObjectMeta, copied: BTreeMap<String, String>, report: &mut Report) {
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if labels.get(keys::MANAGED).map(String::as_str) != Some("true") {
        labels.insert(keys::MANAGED.into(), "true".into());
        report.added(format!("pod label {}=true", keys::MANAGED));
    }
    let anns = meta.annotations.get_or_insert_with(BTreeMap::new);
    let stale: Vec<String> = anns
        .keys()
        .filter(|k| is_copy(k) && !copied.contains_key(*k))
        .cloned()
        .collect();
    for k in stale {
        anns.remove(&k);
        report.removed(format!("pod annotation {k}"));
    }
    for (k, v) in copied {
        if anns.get(&k) != Some(&v) {
            anns.insert(k.clone(), v);
            report.added(format!("pod annotation {k}"));
        }
    }
}

/// The role files' volume (and the ConfigMap's, when there is one) mounted at `mount` in every
/// container but stsguard's own; a mount left at an old path is moved.
fn mount_role_files(pod: &mut PodSpec, mount: &str, config: Option<&str>, report: &mut Report) {
    if config.is_none() {
        remove_volume(pod, CONFIG_VOLUME, report);
    }
    for c in all_but_ours(pod) {
        if let Some(mounts) = c.volume_mounts.as_mut() {
            let before = mounts.len();
            mounts.retain(|m| m.name != ROLE_VOLUME || m.mount_path == mount);
            if mounts.len() < before {
                report.removed(format!(
                    "role files mount of \"{}\" at its old path",
                    c.name
                ));
            }
        }
    }
    ensure_volume(
        pod,
        Volume {
            name: ROLE_VOLUME.into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        },
        report,
    );
    if let Some(cm) = config {
        ensure_volume(
            pod,
            Volume {
                name: CONFIG_VOLUME.into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: cm.to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            report,
        );
    }
    for c in pod
        .init_containers
        .iter_mut()
        .flatten()
        .filter(|c| c.name != INIT_CONTAINER)
    {
        ensure_mount(c, mount, "init container", report);
    }
    for c in pod.containers.iter_mut() {
        ensure_mount(c, mount, "container", report);
    }
}

/// The policy's pull secrets for the role image, when the pod template sets none.
fn add_pull_secrets(pod: &mut PodSpec, secrets: &[String], added: &mut Added, report: &mut Report) {
    if secrets.is_empty()
        || pod
            .image_pull_secrets
            .as_ref()
            .is_some_and(|s| !s.is_empty())
    {
        return;
    }
    pod.image_pull_secrets = Some(
        secrets
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect(),
    );
    added.image_pull_secrets = secrets.to_vec();
    report.added(format!(
        "imagePullSecrets {} for the role image",
        secrets.join(",")
    ));
}

/// stsguard's init container first; one already there is kept in step with the annotations it
/// is built from, touching only what they decide (the API server's defaults stay).
fn ensure_init_container(pod: &mut PodSpec, ours: Container, spec: &RoleSpec, report: &mut Report) {
    let inits = pod.init_containers.get_or_insert_with(Vec::new);
    match inits.iter_mut().find(|c| c.name == INIT_CONTAINER) {
        None => {
            inits.insert(0, ours);
            report.added(format!(
                "init container \"{INIT_CONTAINER}\" (roles {spec})"
            ));
        }
        Some(existing) => {
            if existing.command != ours.command
                || existing.args != ours.args
                || existing.volume_mounts != ours.volume_mounts
            {
                existing.command = ours.command;
                existing.args = ours.args;
                existing.volume_mounts = ours.volume_mounts;
                report.added(format!(
                    "init container \"{INIT_CONTAINER}\" arguments updated (roles {spec})"
                ));
            }
        }
    }
}
