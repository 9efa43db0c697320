//! The rules, as one table ([`rules!`] below: id, default mode, when it runs, its check), then one
//! function per rule. Each returns a [`Verdict`] whose message names the field path and the fix.
//! A new rule is one row and one function (and its tests: `tests/validation_rules.rs`); the
//! chart's schema and the README are checked against the table.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PodSpec;
use serde::{Deserialize, Serialize};

use super::quorum::Quorum;
use super::{Lookup, Lookups, Verdict, replicas};
use crate::k8s::annotations::{self as ann, keys};
use crate::k8s::labels::{self, selector_matches};
use crate::k8s::roles::{mount_path_problem, role_node_selector, server_id_base, spec_of};
use crate::k8s::template::{is_equivalent, uses_host_path};
use crate::policy::Mode;
use crate::text::quote as short;

/// What a rule judges.
pub struct Input<'a> {
    /// The StatefulSet as it would be: the request's object, or for a scale the cached object at
    /// its new size, or for a DELETE the object deleted.
    pub object: &'a StatefulSet,
    /// The replica count before an UPDATE or a scale.
    pub old_replicas: Option<i32>,
    pub namespace: &'a str,
    pub lookups: &'a dyn Lookups,
    /// How the set is a quorum ([`super::quorum::of`]).
    pub quorum: &'a Quorum,
}

/// Which requests a rule judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// CREATE and UPDATE of a StatefulSet.
    OnWrite,
    /// Those, and UPDATE of `statefulsets/scale` (a rule about the replica count).
    OnWriteAndScale,
    /// DELETE of a StatefulSet.
    OnDelete,
}

/// A row of the table.
pub struct Rule {
    pub id: RuleId,
    pub default_mode: Mode,
    pub runs: Runs,
    /// Quorum detection can apply it to a set that did not ask for it (see
    /// [`super::mode_for`]).
    pub by_detection: bool,
    pub check: fn(&Input) -> Verdict,
}

macro_rules! rules {
    ($($variant:ident = $id:literal, $mode:ident, $runs:ident, $detected:literal, $check:expr;)+) => {
        /// A validation rule id (DESIGN.md "Validation rules").
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum RuleId { $(#[serde(rename = $id)] $variant),+ }

        /// Every rule, in the order they run.
        pub const RULES: &[Rule] = &[$(Rule {
            id: RuleId::$variant,
            default_mode: Mode::$mode,
            runs: Runs::$runs,
            by_detection: $detected,
            check: $check,
        }),+];

        impl RuleId {
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $(RuleId::$variant => $id),+ } }
            pub fn parse(s: &str) -> Option<RuleId> {
                match s { $($id => Some(RuleId::$variant),)+ _ => None }
            }
        }
    };
}

rules! {
    // variant       = id,                       default, runs,           detected, check;
    GoverningService = "governing-service",      Warn,    OnWrite,         false, |i| governing_service(i.object, i.namespace, i.lookups);
    SharedClaim      = "shared-claim",           Enforce, OnWriteAndScale, false, |i| shared_claim(i.object);
    HostpathSpread   = "hostpath-spread",        Enforce, OnWriteAndScale, false, |i| hostpath_spread(i.object);
    QuorumOdd        = "quorum-odd",             Enforce, OnWriteAndScale, true,  |i| quorum_odd(i.object, i.quorum);
    QuorumScaleDown  = "quorum-scale-down",      Enforce, OnWriteAndScale, true,
        |i| i.old_replicas.map_or(Verdict::Skip, |old| quorum_scale_down(i.object, old, i.quorum));
    LocalStorageBinding = "local-storage-binding", Warn,  OnWrite,         false, |i| local_storage_binding(i.object, i.lookups);
    ClaimAccessMode  = "claim-access-mode",      Warn,    OnWrite,         false, |i| claim_access_mode(i.object);
    ClaimRetention   = "claim-retention",        Warn,    OnWrite,         false, |i| claim_retention(i.object);
    ReadinessProbe   = "readiness-probe",        Warn,    OnWrite,         false, |i| readiness_probe(i.object);
    OrderedRoles     = "ordered-roles",          Warn,    OnWrite,         false, |i| ordered_roles(i.object);
    RoleSpec         = "role-spec",              Enforce, OnWrite,         false, |i| role_spec(i.object);
    DisruptionBudget = "disruption-budget",      Warn,    OnWrite,         false, |i| disruption_budget(i.object, i.namespace, i.lookups);
    DeleteProtection = "delete-protection",      Enforce, OnDelete,        false, |i| delete_protection(i.object);
    SingleInstance   = "single-instance",        Enforce, OnWriteAndScale, false, |i| single_instance(i.object);
}

impl RuleId {
    /// This rule's row.
    pub fn rule(self) -> &'static Rule {
        // The table has a row per id, in the same order (the macro writes both).
        &RULES[self as usize]
    }

    pub fn default_mode(self) -> Mode {
        self.rule().default_mode
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const HOSTNAME: &str = "kubernetes.io/hostname";

fn is_true(sts: &StatefulSet, key: &str) -> bool {
    ann::get(sts, key) == Some("true")
}

fn pod_spec(sts: &StatefulSet) -> Option<&PodSpec> {
    sts.spec.as_ref()?.template.spec.as_ref()
}

fn pod_labels(sts: &StatefulSet) -> BTreeMap<String, String> {
    sts.spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default()
}

fn name(sts: &StatefulSet) -> &str {
    sts.metadata.name.as_deref().unwrap_or("")
}

pub fn governing_service(sts: &StatefulSet, ns: &str, lookups: &dyn Lookups) -> Verdict {
    let Some(svc) = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.as_deref())
        .filter(|s| !s.is_empty())
    else {
        return Verdict::Fail(
            "spec.serviceName is empty: pods get no stable DNS names; name a headless Service"
                .into(),
        );
    };
    match lookups.service(ns, svc) {
        Lookup::Unknown(why) => Verdict::Unknown(format!("Service {ns}/{svc} ({why})")),
        Lookup::Missing => Verdict::Fail(format!(
            "spec.serviceName: no Service \"{svc}\" in {ns}; create one with clusterIP: None selecting the pods"
        )),
        Lookup::Found(s) => {
            let spec = s.spec.clone().unwrap_or_default();
            if spec.cluster_ip.as_deref() != Some("None") {
                return Verdict::Fail(format!(
                    "spec.serviceName: Service \"{svc}\" is not headless; set its clusterIP: None"
                ));
            }
            match spec.selector.filter(|s| !s.is_empty()) {
                // No selector: endpoints managed by hand (Patroni, Spilo): nothing to compare.
                None => Verdict::Pass,
                Some(sel) => {
                    let labels = pod_labels(sts);
                    if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                        Verdict::Pass
                    } else {
                        Verdict::Fail(format!(
                            "spec.serviceName: Service \"{svc}\" selector does not match the pod labels; align them"
                        ))
                    }
                }
            }
        }
    }
}

pub fn shared_claim(sts: &StatefulSet) -> Verdict {
    let n = replicas(sts);
    if n <= 1 {
        return Verdict::Pass;
    }
    let Some(pod) = pod_spec(sts) else {
        return Verdict::Pass;
    };
    // A pod volume named like a volumeClaimTemplate is replaced by the per-pod claim by the
    // StatefulSet controller (cockroachdb's example relies on it): not shared.
    let templates: Vec<&str> = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .map(|v| {
            v.iter()
                .filter_map(|t| t.metadata.name.as_deref())
                .collect()
        })
        .unwrap_or_default();
    for (i, v) in pod.volumes.iter().flatten().enumerate() {
        if let Some(pvc) = &v.persistent_volume_claim {
            if pvc.read_only == Some(true) || templates.contains(&v.name.as_str()) {
                continue;
            }
            return Verdict::Fail(format!(
                "spec.template.spec.volumes[{i}] \"{}\" mounts PVC \"{}\": all {n} replicas would write it; use volumeClaimTemplates",
                v.name, pvc.claim_name
            ));
        }
    }
    Verdict::Pass
}

pub fn hostpath_spread(sts: &StatefulSet) -> Verdict {
    let n = replicas(sts);
    let Some(pod) = pod_spec(sts) else {
        return Verdict::Pass;
    };
    if n <= 1 || !uses_host_path(pod) {
        return Verdict::Pass;
    }
    let spread = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|ts| ts.iter().any(|t| is_equivalent(t, HOSTNAME, sts)));
    if spread {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "{n} replicas mount a hostPath: two on one node share it; use required anti-affinity on {HOSTNAME} ({}: required)",
            keys::ANTI_AFFINITY
        ))
    }
}

/// `q`: how the set is a quorum ([`super::quorum::of`]): annotated, detected, or not at all.
pub fn quorum_odd(sts: &StatefulSet, q: &Quorum) -> Verdict {
    let n = replicas(sts);
    // n <= 0: a full stop (or invalid, which the API server's own validation rejects).
    if n <= 0 || n % 2 == 1 {
        return Verdict::Pass;
    }
    match q {
        Quorum::No => Verdict::Pass,
        Quorum::Detected(d) if !d.odd => Verdict::Pass,
        Quorum::Detected(d) => {
            // An even group of n tolerates n/2 - 1 failures, like the odd one below it.
            let f = n / 2 - 1;
            Verdict::Fail(format!(
                "{} with {n} members tolerates {f} failure{}, like {}; use {} or {}",
                d.describe(),
                if f == 1 { "" } else { "s" },
                n - 1,
                n - 1,
                n + 1
            ))
        }
        Quorum::Annotated => Verdict::Fail(format!(
            "spec.replicas is {n}: a quorum set needs an odd count to survive a split; use {} or {}",
            n - 1,
            n + 1
        )),
    }
}

/// `old` is the replica count before this change; `q` as for [`quorum_odd`].
pub fn quorum_scale_down(sts: &StatefulSet, old: i32, q: &Quorum) -> Verdict {
    let n = replicas(sts);
    if *q == Quorum::No || n == 0 || n >= old {
        return Verdict::Pass;
    }
    let majority = old / 2 + 1;
    if n >= majority {
        return Verdict::Pass;
    }
    Verdict::Fail(match q {
        Quorum::Detected(d) => format!(
            "{}: {old} -> {n} members drops below a majority ({majority}) at once; scale down to {majority} first",
            d.describe()
        ),
        _ => format!(
            "spec.replicas {old} -> {n} drops below a majority ({majority}) of the quorum at once; scale down to {majority} first"
        ),
    })
}

/// Provisioners of node-local volumes: their claims must bind where the pod lands.
fn is_local_provisioner(p: &str) -> bool {
    const LOCAL: &[&str] = &[
        "kubernetes.io/no-provisioner",
        "rancher.io/local-path",
        "openebs.io/local",
        "local.csi.openebs.io",
        "topolvm.io",
        "topolvm.cybozu.com",
        "lvm.csi.metal-stack.io",
        "hostpath.csi.k8s.io",
        "k8s.io/minikube-hostpath",
    ];
    LOCAL.contains(&p)
        || p.contains("local-path")
        || p.contains("local-volume")
        || p.contains("localpv")
}

pub fn local_storage_binding(sts: &StatefulSet, lookups: &dyn Lookups) -> Verdict {
    let Some(spec) = &sts.spec else {
        return Verdict::Pass;
    };
    for (i, vct) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let legacy = vct.metadata.annotations.as_ref().and_then(|a| {
            a.get("volume.beta.kubernetes.io/storage-class")
                .or_else(|| a.get("volume.alpha.kubernetes.io/storage-class"))
        });
        let class = vct
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .or(legacy.map(String::as_str));
        if class == Some("") {
            continue; // explicitly no class: pre-bound PVs
        }
        let shown = class.unwrap_or("(default)");
        match lookups.storage_class(class) {
            Lookup::Unknown(why) => {
                return Verdict::Unknown(format!("StorageClass {shown} ({why})"));
            }
            Lookup::Missing => {}
            Lookup::Found(sc) => {
                let mode = sc.volume_binding_mode.as_deref().unwrap_or("Immediate");
                if is_local_provisioner(&sc.provisioner) && mode != "WaitForFirstConsumer" {
                    return Verdict::Fail(format!(
                        "spec.volumeClaimTemplates[{i}]: StorageClass \"{}\" ({}) binds {mode}; set volumeBindingMode: WaitForFirstConsumer",
                        sc.metadata.name.as_deref().unwrap_or(shown),
                        sc.provisioner
                    ));
                }
            }
        }
    }
    Verdict::Pass
}

pub fn claim_access_mode(sts: &StatefulSet) -> Verdict {
    let Some(spec) = &sts.spec else {
        return Verdict::Pass;
    };
    for (i, vct) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let modes = vct.spec.as_ref().and_then(|s| s.access_modes.as_ref());
        if modes.is_some_and(|m| m.iter().any(|m| m == "ReadWriteMany")) {
            return Verdict::Fail(format!(
                "spec.volumeClaimTemplates[{i}].spec.accessModes asks ReadWriteMany for per-pod data; use ReadWriteOnce"
            ));
        }
    }
    Verdict::Pass
}

pub fn claim_retention(sts: &StatefulSet) -> Verdict {
    let Some(p) = sts
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
    else {
        return Verdict::Pass;
    };
    let has_claims = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .is_some_and(|v| !v.is_empty());
    for (field, v) in [
        ("whenDeleted", &p.when_deleted),
        ("whenScaled", &p.when_scaled),
    ] {
        if has_claims && v.as_deref() == Some("Delete") {
            return Verdict::Fail(format!(
                "spec.persistentVolumeClaimRetentionPolicy.{field}: Delete removes the data; use Retain"
            ));
        }
    }
    Verdict::Pass
}

pub fn readiness_probe(sts: &StatefulSet) -> Verdict {
    let Some(spec) = &sts.spec else {
        return Verdict::Pass;
    };
    if spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("OrderedReady")
        != "OrderedReady"
    {
        return Verdict::Pass;
    }
    let Some(pod) = pod_spec(sts) else {
        return Verdict::Pass;
    };
    match pod
        .containers
        .iter()
        .position(|c| c.readiness_probe.is_none())
    {
        None => Verdict::Pass,
        Some(i) => Verdict::Fail(format!(
            "spec.template.spec.containers[{i}] \"{}\" has no readinessProbe: OrderedReady ordering means nothing; add one",
            pod.containers[i].name
        )),
    }
}

pub fn ordered_roles(sts: &StatefulSet) -> Verdict {
    let parallel = sts
        .spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel");
    if ann::get(sts, keys::ROLES).is_some() && parallel {
        Verdict::Fail(format!(
            "{} with podManagementPolicy: Parallel: the {} may start last; use OrderedReady",
            keys::ROLES,
            spec_of(sts)
                .and_then(Result::ok)
                .map(|s| s.first_role().to_string())
                .unwrap_or("primary".into())
        ))
    } else {
        Verdict::Pass
    }
}

pub fn role_spec(sts: &StatefulSet) -> Verdict {
    let empty = BTreeMap::new();
    let anns = sts.metadata.annotations.as_ref().unwrap_or(&empty);
    let spec = match spec_of(sts) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return Verdict::Fail(format!("{}: {e}", keys::ROLES)),
        None => None,
    };
    if let Some(Err(e)) = server_id_base(sts) {
        return Verdict::Fail(e);
    }
    if let Some(why) = ann::get(sts, keys::ROLE_MOUNT_PATH).and_then(mount_path_problem) {
        return Verdict::Fail(format!("{}: {why}", keys::ROLE_MOUNT_PATH));
    }
    if let Some(cm) = ann::get(sts, keys::ROLE_CONFIG) {
        if !labels::is_dns_subdomain(cm) {
            return Verdict::Fail(format!(
                "{}: \"{}\" is not a ConfigMap name",
                keys::ROLE_CONFIG,
                short(cm)
            ));
        }
    }
    // The placement annotations sort together: a range over the prefix, not every key.
    for key in anns
        .range::<str, _>((
            std::ops::Bound::Included(keys::ROLE_NODE_SELECTOR_PREFIX),
            std::ops::Bound::Unbounded,
        ))
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(keys::ROLE_NODE_SELECTOR_PREFIX))
    {
        let Some(role) = key.strip_prefix(keys::ROLE_NODE_SELECTOR_PREFIX) else {
            continue;
        };
        let Some(spec) = &spec else {
            return Verdict::Fail(format!(
                "{key} is set but {} is not: add the roles",
                keys::ROLES
            ));
        };
        if !spec.has_role(role) {
            return Verdict::Fail(format!(
                "{}: role \"{}\" is not in {}",
                short(key),
                short(role),
                keys::ROLES
            ));
        }
        if let Some(Err(e)) = role_node_selector(anns, role) {
            return Verdict::Fail(format!("{key}: {e}"));
        }
    }
    Verdict::Pass
}

pub fn disruption_budget(sts: &StatefulSet, ns: &str, lookups: &dyn Lookups) -> Verdict {
    if replicas(sts) <= 1 {
        return Verdict::Pass;
    }
    let labels = pod_labels(sts);
    match lookups.pdbs(ns) {
        Lookup::Unknown(why) => Verdict::Unknown(format!("PodDisruptionBudgets ({why})")),
        Lookup::Missing => Verdict::Fail(no_pdb(sts)),
        Lookup::Found(pdbs) => {
            let selected = pdbs.iter().any(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| selector_matches(sel, &labels))
            });
            if selected {
                Verdict::Pass
            } else {
                Verdict::Fail(no_pdb(sts))
            }
        }
    }
}

fn no_pdb(sts: &StatefulSet) -> String {
    format!(
        "no PodDisruptionBudget selects the pods of {}: a drain may evict them all; add one",
        name(sts)
    )
}

/// `old`: the StatefulSet being deleted.
pub fn delete_protection(old: &StatefulSet) -> Verdict {
    if is_true(old, keys::PROTECT) {
        Verdict::Fail(format!(
            "StatefulSet {} is protected by {}=true; remove the annotation first to delete it",
            name(old),
            keys::PROTECT
        ))
    } else {
        Verdict::Pass
    }
}

pub fn single_instance(sts: &StatefulSet) -> Verdict {
    let n = replicas(sts);
    if is_true(sts, keys::SINGLE_INSTANCE) && n > 1 {
        Verdict::Fail(format!(
            "spec.replicas is {n} but {}=true: this workload cannot replicate; keep replicas at 1",
            keys::SINGLE_INSTANCE
        ))
    } else {
        Verdict::Pass
    }
}
