//! The mutation core: pure functions from a typed object and the policy to the mutated object.
//!
//! The JSONPatch sent to the API server is always `json_patch::diff` of the typed original and
//! the typed result (see [`patch_for`]); nothing here builds patch paths by hand.

pub mod affinity;
pub mod env;
pub mod pod;
pub mod roles;

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::labels::keys;
use crate::policy::Policy;

/// Why a mutation skipped or kept something: the id of a mutation warning (listed in the
/// README; `stsguard check --output json` reports it as the finding's `rule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarningId {
    /// A `stsguard.io/…` annotation has a value stsguard does not understand: the default is used.
    AnnotationInvalid,
    /// The StatefulSet has no spec: nothing to mutate.
    NoSpec,
    /// `spec.serviceName` is empty: the variables built on it are not injected.
    NoServiceName,
    /// A container defines an identity variable otherwise: the user's value is kept.
    EnvKept,
    /// A weaker anti-affinity term of the user's (a lower weight) is kept in place of stsguard's.
    AntiAffinityKept,
    /// `spec.selector` is empty: no anti-affinity added.
    AntiAffinityEmptySelector,
    /// The role annotations do not parse: roles not applied (the `role-spec` rule says why).
    RolesInvalid,
    /// A volume with stsguard's name exists and is not stsguard's: kept.
    VolumeKept,
    /// Something else is mounted at the role mount path: role files not mounted there.
    MountKept,
    /// A pod's role label, or a node selector key of its role, is set already: kept.
    PodLabelKept,
    /// A managed pod without what its role needs (roles annotation, ordinal).
    PodNoRole,
}

impl WarningId {
    pub const ALL: [WarningId; 11] = [
        WarningId::AnnotationInvalid,
        WarningId::NoSpec,
        WarningId::NoServiceName,
        WarningId::EnvKept,
        WarningId::AntiAffinityKept,
        WarningId::AntiAffinityEmptySelector,
        WarningId::RolesInvalid,
        WarningId::VolumeKept,
        WarningId::MountKept,
        WarningId::PodLabelKept,
        WarningId::PodNoRole,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WarningId::AnnotationInvalid => "annotation-invalid",
            WarningId::NoSpec => "no-spec",
            WarningId::NoServiceName => "no-service-name",
            WarningId::EnvKept => "env-kept",
            WarningId::AntiAffinityKept => "anti-affinity-kept",
            WarningId::AntiAffinityEmptySelector => "anti-affinity-empty-selector",
            WarningId::RolesInvalid => "roles-invalid",
            WarningId::VolumeKept => "volume-kept",
            WarningId::MountKept => "mount-kept",
            WarningId::PodLabelKept => "pod-label-kept",
            WarningId::PodNoRole => "pod-no-role",
        }
    }
}

impl std::fmt::Display for WarningId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One mutation warning.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub id: WarningId,
    pub message: String,
}

/// What a mutation did and what it skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Short human lines: what was added.
    pub added: Vec<String>,
    /// Things skipped or kept, as `[id] message` lines; they go to `response.warnings`. At most
    /// [`Report::MAX_WARNINGS`].
    pub warnings: Vec<String>,
    /// The same warnings with their ids apart.
    pub notes: Vec<Warning>,
    /// Warnings past the first [`Report::MAX_WARNINGS`], counted and dropped.
    pub more_warnings: usize,
}

impl Report {
    /// Enough to say what went wrong; the API server's warning headers are small.
    pub const MAX_WARNINGS: usize = 16;

    pub fn warn(&mut self, id: WarningId, message: impl Into<String>) {
        let message = message.into();
        let line = format!("[{id}] {message}");
        if self.warnings.contains(&line) {
            return;
        }
        if self.warnings.len() < Self::MAX_WARNINGS {
            self.warnings.push(line);
            self.notes.push(Warning { id, message });
        } else {
            self.more_warnings += 1;
        }
    }
    pub fn added(&mut self, a: impl Into<String>) {
        self.added.push(a.into());
    }
}

/// The result of mutating a StatefulSet.
#[derive(Clone, Debug)]
pub struct Mutation {
    pub object: StatefulSet,
    pub report: Report,
}

pub(crate) fn annotation<'a>(sts: &'a StatefulSet, key: &str) -> Option<&'a str> {
    sts.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn flag(sts: &StatefulSet, key: &str, default: bool, report: &mut Report) -> bool {
    match annotation(sts, key).map(str::trim) {
        None => default,
        Some("true") => true,
        Some("false") | Some("none") => false,
        Some(v) => {
            report.warn(
                WarningId::AnnotationInvalid,
                format!("{key}: \"{v}\" is not \"true\" or \"false\"; using {default}"),
            );
            default
        }
    }
}

/// Mutates a StatefulSet (DESIGN.md "Mutation" 1-3). Idempotent: mutating the result again
/// changes nothing. Never removes or changes what the user wrote.
pub fn mutate(sts: &StatefulSet, policy: &Policy) -> Mutation {
    let mut object = sts.clone();
    let report = mutate_in_place(&mut object, policy);
    Mutation { object, report }
}

/// [`mutate`] without the copy: changes `sts` itself.
///
/// Without `stsguard.io/roles` it changes only the template's affinity and the containers' and
/// init containers' env: [`mutate_with_patch`] relies on that (the property tests check it).
pub fn mutate_in_place(sts: &mut StatefulSet, policy: &Policy) -> Report {
    let mut report = Report::default();
    if policy.is_excluded(sts.metadata.namespace.as_deref())
        || !flag(sts, keys::MUTATE, true, &mut report)
    {
        return report;
    }
    if sts.spec.is_none() {
        report.warn(
            WarningId::NoSpec,
            "the StatefulSet has no spec: nothing to mutate",
        );
        return report;
    }
    let roles = roles::apply(sts, policy, &mut report);
    let ordinal_env = flag(
        sts,
        keys::ORDINAL_ENV,
        policy.mutation.ordinal_env,
        &mut report,
    );
    let vars = env::identity_vars(
        sts,
        policy,
        ordinal_env,
        roles.and_then(|r| r.primary_fqdn),
        &mut report,
    );
    env::apply(sts, &vars, &mut report);
    affinity::apply(sts, policy, &mut report);
    report
}

/// The server's path: mutates `sts` in place and returns the patch from what it was (the same
/// patch as [`statefulset_patch`] of a copy taken before).
///
/// Only what the mutation can change is copied first (`project::Snapshot`), not the whole
/// object — unless `stsguard.io/roles` is set: the role init container is then inserted, and the
/// patch needs the whole original init container list, so the object is copied as a whole.
pub fn mutate_with_patch(
    sts: &mut StatefulSet,
    policy: &Policy,
) -> Result<(Report, json_patch::Patch), serde_json::Error> {
    if annotation(sts, keys::ROLES).is_some() {
        let m = mutate(sts, policy);
        let patch = statefulset_patch(sts, &m.object)?;
        *sts = m.object;
        return Ok((m.report, patch));
    }
    let before = project::Snapshot::of(sts);
    let report = mutate_in_place(sts, policy);
    let patch = before.patch_to(sts)?;
    Ok((report, patch))
}

/// The JSONPatch turning `before` into `after`: a diff of their typed serialisations.
pub fn patch_for<T: serde::Serialize>(
    before: &T,
    after: &T,
) -> Result<json_patch::Patch, serde_json::Error> {
    Ok(json_patch::diff(
        &serde_json::to_value(before)?,
        &serde_json::to_value(after)?,
    ))
}

/// The same patch as [`patch_for`] for a StatefulSet [`mutate`] produced, computed faster: only
/// what the mutation can change is serialised and diffed — the template's labels and
/// annotations, affinity, volumes, init containers (whole: one may be inserted), and each
/// container's env and volumeMounts — and of those only the fields that differ (typed
/// equality); a field equal on both sides is left out of both projections. Everything left out
/// is identical on both sides and would yield no operation. The property tests check that it
/// equals the full diff.
pub fn statefulset_patch(
    before: &StatefulSet,
    after: &StatefulSet,
) -> Result<json_patch::Patch, serde_json::Error> {
    match project::Parts::of(before)
        .zip(project::Parts::of(after))
        .and_then(|(b, a)| project::pair(&b, &a))
    {
        Some((b, a)) => Ok(json_patch::diff(
            &serde_json::to_value(b)?,
            &serde_json::to_value(a)?,
        )),
        None => patch_for(before, after),
    }
}

mod project {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::StatefulSet;
    use k8s_openapi::api::core::v1::{
        Affinity, Container, EnvVar, LocalObjectReference, Volume, VolumeMount,
    };
    use serde::Serialize;

    type Labels = Option<BTreeMap<String, String>>;
    type Env = Option<Vec<EnvVar>>;
    type Mounts = Option<Vec<VolumeMount>>;

    static NO_LABELS: Labels = None;
    static NO_AFFINITY: Option<Affinity> = None;
    static NO_VOLUMES: Option<Vec<Volume>> = None;
    static NO_MOUNTS: Mounts = None;
    static NO_SECRETS: Option<Vec<LocalObjectReference>> = None;

    /// The fields of a StatefulSet's template the mutation can change, borrowed.
    pub struct Parts<'a> {
        /// The template's labels and annotations; `None`: no template metadata.
        meta: Option<(&'a Labels, &'a Labels)>,
        /// `None`: no pod spec.
        pod: Option<PodParts<'a>>,
    }

    struct PodParts<'a> {
        affinity: &'a Option<Affinity>,
        volumes: &'a Option<Vec<Volume>>,
        pull_secrets: &'a Option<Vec<LocalObjectReference>>,
        init: Init<'a>,
        /// Each container's env and volumeMounts.
        containers: Vec<(&'a Env, &'a Mounts)>,
    }

    enum Init<'a> {
        /// The whole list, as it is.
        Whole(&'a Option<Vec<Container>>),
        /// Each init container's env and volumeMounts (`None`: no list): enough while the list
        /// keeps its length.
        Each(Option<Vec<(&'a Env, &'a Mounts)>>),
    }

    impl<'a> Init<'a> {
        fn len(&self) -> Option<usize> {
            match self {
                Init::Whole(w) => w.as_ref().map(Vec::len),
                Init::Each(e) => e.as_ref().map(Vec::len),
            }
        }
        fn each(&self) -> Option<Vec<(&'a Env, &'a Mounts)>> {
            match self {
                Init::Whole(w) => w.as_ref().map(|cs| env_mounts(cs)),
                Init::Each(e) => e.clone(),
            }
        }
    }

    fn env_mounts(cs: &[Container]) -> Vec<(&Env, &Mounts)> {
        cs.iter().map(|c| (&c.env, &c.volume_mounts)).collect()
    }

    impl<'a> Parts<'a> {
        /// `None` when there is no spec.
        pub fn of(sts: &'a StatefulSet) -> Option<Self> {
            let t = &sts.spec.as_ref()?.template;
            Some(Parts {
                meta: t.metadata.as_ref().map(|m| (&m.labels, &m.annotations)),
                pod: t.spec.as_ref().map(|p| PodParts {
                    affinity: &p.affinity,
                    volumes: &p.volumes,
                    pull_secrets: &p.image_pull_secrets,
                    init: Init::Whole(&p.init_containers),
                    containers: env_mounts(&p.containers),
                }),
            })
        }
    }

    /// A copy of what the mutation can change, taken before it runs, when it will not change
    /// the number of init containers (no roles): without roles it changes only the template's
    /// affinity and each container's and init container's env, so only those are copied, and
    /// only those are compared and diffed (labels, annotations, volumes and volumeMounts are left
    /// out of both sides). The property tests check the patch equals the full diff.
    pub struct Snapshot {
        /// `None`: no spec; `Some(None)`: no pod spec.
        template: Option<Option<PodCopy>>,
    }

    struct PodCopy {
        affinity: Option<Affinity>,
        init: Option<Vec<Env>>,
        containers: Vec<Env>,
    }

    fn copy(cs: &[Container]) -> Vec<Env> {
        cs.iter().map(|c| c.env.clone()).collect()
    }

    /// Each container's env alone: its volumeMounts left out.
    fn env_only<'a>(envs: impl Iterator<Item = &'a Env>) -> Vec<(&'a Env, &'a Mounts)> {
        envs.map(|e| (e, &NO_MOUNTS)).collect()
    }

    fn envs(cs: &[Container]) -> Vec<(&Env, &Mounts)> {
        env_only(cs.iter().map(|c| &c.env))
    }

    impl<'a> Parts<'a> {
        /// The parts of `sts` a [`Snapshot`] keeps; `None` when there is no spec.
        fn lean_of(sts: &'a StatefulSet) -> Option<Self> {
            let t = &sts.spec.as_ref()?.template;
            Some(Parts {
                meta: None,
                pod: t.spec.as_ref().map(|p| PodParts {
                    affinity: &p.affinity,
                    volumes: &NO_VOLUMES,
                    pull_secrets: &NO_SECRETS,
                    init: Init::Each(p.init_containers.as_deref().map(envs)),
                    containers: envs(&p.containers),
                }),
            })
        }
    }

    impl Snapshot {
        pub fn of(sts: &StatefulSet) -> Self {
            let template = sts.spec.as_ref().map(|s| {
                s.template.spec.as_ref().map(|p| PodCopy {
                    affinity: p.affinity.clone(),
                    init: p.init_containers.as_deref().map(copy),
                    containers: copy(&p.containers),
                })
            });
            Snapshot { template }
        }

        fn parts(&self) -> Option<Parts<'_>> {
            let t = self.template.as_ref()?;
            Some(Parts {
                meta: None,
                pod: t.as_ref().map(|p| PodParts {
                    affinity: &p.affinity,
                    volumes: &NO_VOLUMES,
                    pull_secrets: &NO_SECRETS,
                    init: Init::Each(p.init.as_ref().map(|es| env_only(es.iter()))),
                    containers: env_only(p.containers.iter()),
                }),
            })
        }

        /// The patch from the copied state to `after`: the same as
        /// [`super::statefulset_patch`] from the object the copy was taken of.
        pub fn patch_to(
            &self,
            after: &StatefulSet,
        ) -> Result<json_patch::Patch, serde_json::Error> {
            let (b, a) = match (self.parts(), Parts::lean_of(after)) {
                // No spec: the mutation changed nothing.
                (None, None) => return Ok(json_patch::Patch(Vec::new())),
                (Some(b), Some(a)) => (b, a),
                _ => {
                    return Err(serde::ser::Error::custom(
                        "the mutation added or removed spec",
                    ));
                }
            };
            let Some((b, a)) = pair(&b, &a) else {
                return Err(serde::ser::Error::custom(
                    "the mutation changed the number of containers",
                ));
            };
            Ok(json_patch::diff(
                &serde_json::to_value(b)?,
                &serde_json::to_value(a)?,
            ))
        }
    }

    /// A field of the projection: `None` when it is equal on both sides (left out of both),
    /// else the field as it is, absent staying absent as k8s-openapi serialises it, never
    /// `null` (a diff from `null` would be a `replace` on a path the real object does not have).
    type F<'a, T> = Option<&'a Option<T>>;

    fn skip<T>(f: &F<'_, T>) -> bool {
        !matches!(f, Some(Some(_)))
    }

    #[derive(Serialize)]
    pub struct Sts<'a> {
        pub spec: Spec<'a>,
    }
    #[derive(Serialize)]
    pub struct Spec<'a> {
        pub template: Template<'a>,
    }
    #[derive(Serialize)]
    pub struct Template<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub metadata: Option<Meta<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub spec: Option<PodSpec<'a>>,
    }
    #[derive(Serialize)]
    pub struct Meta<'a> {
        #[serde(skip_serializing_if = "skip")]
        pub labels: F<'a, BTreeMap<String, String>>,
        #[serde(skip_serializing_if = "skip")]
        pub annotations: F<'a, BTreeMap<String, String>>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PodSpec<'a> {
        #[serde(skip_serializing_if = "skip")]
        pub affinity: F<'a, Affinity>,
        #[serde(skip_serializing_if = "skip")]
        pub volumes: F<'a, Vec<Volume>>,
        #[serde(skip_serializing_if = "skip")]
        pub image_pull_secrets: F<'a, Vec<LocalObjectReference>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub init_containers: Option<Inits<'a>>,
        pub containers: Vec<ContainerEnv<'a>>,
    }
    /// Init containers: each one's env and volumeMounts when both lists have the same length,
    /// else the whole list (the role init container was inserted at the front).
    #[derive(Serialize)]
    #[serde(untagged)]
    pub enum Inits<'a> {
        Each(Vec<ContainerEnv<'a>>),
        Whole(&'a Vec<Container>),
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ContainerEnv<'a> {
        #[serde(skip_serializing_if = "skip")]
        pub env: F<'a, Vec<EnvVar>>,
        #[serde(skip_serializing_if = "skip")]
        pub volume_mounts: F<'a, Vec<VolumeMount>>,
    }

    /// `x` if it differs from `other`, else left out.
    fn differ<'a, T: PartialEq>(x: &'a Option<T>, other: &Option<T>) -> F<'a, T> {
        (x != other).then_some(x)
    }

    /// One side's projection; `None` when the init containers changed in number and this side
    /// has only their env and volumeMounts.
    fn one<'a>(s: &Parts<'a>, other: &Parts<'_>) -> Option<Sts<'a>> {
        let (ol, oa) = other.meta.unwrap_or((&NO_LABELS, &NO_LABELS));
        let spec = match &s.pod {
            None => None,
            Some(p) => {
                let (oaff, ovol, osec) = other
                    .pod
                    .as_ref()
                    .map_or((&NO_AFFINITY, &NO_VOLUMES, &NO_SECRETS), |o| {
                        (o.affinity, o.volumes, o.pull_secrets)
                    });
                let no_init = Init::Each(None);
                let oinit = other.pod.as_ref().map_or(&no_init, |o| &o.init);
                let ocontainers = other.pod.as_ref().map_or(&[][..], |o| &o.containers[..]);
                Some(PodSpec {
                    affinity: differ(p.affinity, oaff),
                    volumes: differ(p.volumes, ovol),
                    image_pull_secrets: differ(p.pull_secrets, osec),
                    init_containers: inits(&p.init, oinit)?,
                    containers: each(&p.containers, ocontainers),
                })
            }
        };
        Some(Sts {
            spec: Spec {
                template: Template {
                    metadata: s.meta.map(|(l, a)| Meta {
                        labels: differ(l, ol),
                        annotations: differ(a, oa),
                    }),
                    spec,
                },
            },
        })
    }

    fn each<'a>(cs: &[(&'a Env, &'a Mounts)], other: &[(&Env, &Mounts)]) -> Vec<ContainerEnv<'a>> {
        cs.iter()
            .zip(other)
            .map(|((env, mounts), (oenv, omounts))| ContainerEnv {
                env: differ(env, oenv),
                volume_mounts: differ(mounts, omounts),
            })
            .collect()
    }

    /// `Some(None)`: left out; `None`: cannot be projected from this side.
    fn inits<'a>(cs: &Init<'a>, other: &Init<'_>) -> Option<Option<Inits<'a>>> {
        if let (Init::Whole(w), Init::Whole(o)) = (cs, other) {
            if w == o {
                return Some(None);
            }
        }
        match (cs.len(), other.len()) {
            (None, _) => Some(None),
            (Some(n), Some(m)) if n == m => Some(Some(Inits::Each(each(
                &cs.each().unwrap_or_default(),
                &other.each().unwrap_or_default(),
            )))),
            _ => match cs {
                Init::Whole(Some(w)) => Some(Some(Inits::Whole(w))),
                _ => None,
            },
        }
    }

    /// Both projections, or `None` when they cannot be compared field by field (the container
    /// lists differ in length — the mutation never adds containers — or the init containers
    /// changed in number and a side has only their env and volumeMounts).
    pub fn pair<'a>(b: &Parts<'a>, a: &Parts<'a>) -> Option<(Sts<'a>, Sts<'a>)> {
        let containers = |p: &Parts| p.pod.as_ref().map(|p| p.containers.len());
        if containers(b) != containers(a) {
            return None;
        }
        Some((one(b, a)?, one(a, b)?))
    }
}

/// The same patch as [`patch_for`] for a Pod [`pod::mutate_pod`] produced: it changes only
/// `metadata.labels` and `spec.nodeSelector`.
pub fn pod_patch(
    before: &k8s_openapi::api::core::v1::Pod,
    after: &k8s_openapi::api::core::v1::Pod,
) -> Result<json_patch::Patch, serde_json::Error> {
    use std::collections::BTreeMap;
    type Labels = Option<BTreeMap<String, String>>;
    // Absent stays absent (as k8s-openapi serialises it), never `null`: a diff from `null`
    // would be a `replace` on a path the real object does not have.
    fn absent(l: &&Labels) -> bool {
        l.is_none()
    }
    #[derive(serde::Serialize)]
    struct Meta<'a> {
        #[serde(skip_serializing_if = "absent")]
        labels: &'a Labels,
    }
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Spec<'a> {
        #[serde(skip_serializing_if = "absent")]
        node_selector: &'a Labels,
    }
    #[derive(serde::Serialize)]
    struct Projection<'a> {
        metadata: Meta<'a>,
        spec: Spec<'a>,
    }
    let project = |p: &'_ k8s_openapi::api::core::v1::Pod| -> Option<serde_json::Value> {
        let spec = p.spec.as_ref()?;
        serde_json::to_value(Projection {
            metadata: Meta {
                labels: &p.metadata.labels,
            },
            spec: Spec {
                node_selector: &spec.node_selector,
            },
        })
        .ok()
    };
    match (project(before), project(after)) {
        (Some(b), Some(a)) => Ok(json_patch::diff(&b, &a)),
        _ => patch_for(before, after),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    use super::project::Snapshot;

    fn sts(inits: usize) -> StatefulSet {
        let c = |name: &str| Container {
            name: name.into(),
            ..Default::default()
        };
        StatefulSet {
            spec: Some(StatefulSetSpec {
                template: PodTemplateSpec {
                    metadata: None,
                    spec: Some(PodSpec {
                        containers: vec![c("app")],
                        init_containers: Some((0..inits).map(|i| c(&format!("i{i}"))).collect()),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The copy holds only each init container's env and mounts: if their number changed, it
    /// refuses rather than give a wrong patch (the server answers per the failure mode).
    #[test]
    fn snapshot_refuses_a_changed_init_container_count() -> Result<(), Box<dyn std::error::Error>> {
        let before = sts(1);
        let snap = Snapshot::of(&before);
        assert!(snap.patch_to(&sts(2)).is_err());
        assert!(snap.patch_to(&sts(0)).is_err());
        // The same count: the same patch as the full diff.
        let mut after = sts(1);
        let pod = after
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .ok_or("no pod spec")?;
        pod.containers[0].env = Some(vec![Default::default()]);
        assert_eq!(snap.patch_to(&after)?, super::patch_for(&before, &after)?);
        assert!(!snap.patch_to(&after)?.0.is_empty());
        Ok(())
    }

    #[test]
    fn snapshot_without_spec() -> Result<(), serde_json::Error> {
        let none = StatefulSet::default();
        let snap = Snapshot::of(&none);
        assert!(snap.patch_to(&none)?.0.is_empty());
        assert!(snap.patch_to(&sts(0)).is_err());
        Ok(())
    }
}
