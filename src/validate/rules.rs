//! The rules, as one table ([`rules!`] below: id, default mode, when it runs, its check), then one
//! function per rule. Each returns a [`Verdict`] whose message names the field path and the fix.
//! A new rule is one row and one function (and its tests: `tests/validation_rules.rs`); the
//! chart's schema and the README are checked against the table.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PodSpec;
use serde::{Deserialize, Serialize};

use super::quorum::Quorum;
use super::{Lookup, Lookups, Verdict, replicas};
use crate::k8s::annotations::{self as ann, keys};
use crate::k8s::labels::{self, selector_matches};
use crate::k8s::roles::{mount_path_problem, role_node_selector, server_id_base, spec_of};
use crate::k8s::template::{is_equivalent, uses_host_path};
use crate::policy::{Mode, Policy};
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
    /// On a DELETE, what goes ([`Runs::OnDelete`]); `None` on writes and scales.
    pub deleted: Option<Deleted<'a>>,
    pub policy: &'a Policy,
}

/// What a DELETE removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted<'a> {
    /// The StatefulSet [`Input::object`] itself.
    StatefulSet,
    /// The namespace [`Input::namespace`]: judged once for each StatefulSet in it.
    Namespace,
    /// The PersistentVolumeClaim of this name in [`Input::namespace`]: judged once for each
    /// StatefulSet in the namespace.
    Claim(&'a str),
}

/// Which requests a rule judges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// CREATE and UPDATE of a StatefulSet.
    OnWrite,
    /// Those, and UPDATE of `statefulsets/scale` (a rule about the replica count).
    OnWriteAndScale,
    /// DELETE of a StatefulSet (the object deleted), and of a Namespace or a
    /// PersistentVolumeClaim: then once for each StatefulSet of the namespace, from the watch
    /// cache, and the StatefulSets that fail make one finding per mode (see
    /// [`super::validate`]).
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
        /// A validation rule id (README.md "Rules").
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
        |i| i.old_replicas.map_or(Verdict::NotApplicable, |old| quorum_scale_down(i.object, old, i.quorum));
    LocalStorageBinding = "local-storage-binding", Warn,  OnWrite,         false, |i| local_storage_binding(i.object, i.lookups);
    ClaimAccessMode  = "claim-access-mode",      Warn,    OnWrite,         false, |i| claim_access_mode(i.object);
    ClaimRetention   = "claim-retention",        Warn,    OnWrite,         false, |i| claim_retention(i.object);
    ReadinessProbe   = "readiness-probe",        Warn,    OnWrite,         false, |i| readiness_probe(i.object);
    OrderedRoles     = "ordered-roles",          Warn,    OnWrite,         false, |i| ordered_roles(i.object);
    RoleSpec         = "role-spec",              Enforce, OnWrite,         false, |i| role_spec(i.object);
    DisruptionBudget = "disruption-budget",      Warn,    OnWrite,         false, |i| disruption_budget(i.object, i.namespace, i.lookups);
    DeleteProtection = "delete-protection",      Enforce, OnDelete,        false, delete_protection;
    ProtectRetention = "protect-retention",      Warn,    OnWrite,         false, |i| protect_retention(i.object);
    SingleInstance   = "single-instance",        Enforce, OnWriteAndScale, false, |i| single_instance(i.object);
    SafetySwitch     = "safety-switch",          Enforce, OnWrite,         false, |i| safety_switch(i.object);
    AnnotationIgnored = "annotation-ignored",    Warn,    OnWrite,         false, |i| annotation_ignored(i.object, i.policy);
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
        Lookup::Unknown(why) => Verdict::NotChecked(format!("Service {ns}/{svc} ({why})")),
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

/// `old` is the replica count before this change; `q` as for [`quorum_odd`]. The message names
/// a path the quorum rules accept step by step ([`scale_down_path`]).
pub fn quorum_scale_down(sts: &StatefulSet, old: i32, q: &Quorum) -> Verdict {
    let n = replicas(sts);
    if *q == Quorum::No || n == 0 || n >= old {
        return Verdict::Pass;
    }
    let majority = old / 2 + 1;
    if n >= majority {
        return Verdict::Pass;
    }
    let odd = match q {
        Quorum::Detected(d) => d.odd,
        _ => true,
    };
    let path = scale_down_path(old, n, odd);
    let steps: Vec<String> = path.iter().map(i32::to_string).collect();
    let advice = if path.contains(&0) {
        format!(
            "no smaller size keeps one: scale {} (0 stops every member)",
            steps.join(" -> ")
        )
    } else {
        format!("scale {}, one step at a time", steps.join(" -> "))
    };
    Verdict::Fail(match q {
        Quorum::Detected(d) => format!(
            "{}: {old} -> {n} members drops below a majority ({majority}) at once; {advice}",
            d.describe()
        ),
        _ => format!(
            "spec.replicas {old} -> {n} drops below a majority ({majority}) of the quorum at once; {advice}"
        ),
    })
}

/// The sizes from `old` down to `n` (`0 < n < old`) that the quorum rules accept one after the
/// other: each step keeps a majority of the members before it (`quorum-scale-down`), at an odd
/// size when `odd` (`quorum-odd`: 7 -> 4 would be refused; the last size is the one asked for,
/// which `quorum-odd` judges on its own). Where no smaller size keeps a
/// majority (3 with `odd`, 2 without), the only accepted way down is a full stop: `old`, 0,
/// `n`. Every step at least halves the count: at most 32 steps.
pub fn scale_down_path(old: i32, n: i32, odd: bool) -> Vec<i32> {
    let mut path = vec![old];
    let mut c = old;
    while c > n {
        let majority = c / 2 + 1;
        if n >= majority {
            // The last step: `n` itself is the user's (quorum-odd judges it on its own).
            path.push(n);
            break;
        }
        let next = if odd && majority % 2 == 0 {
            majority + 1
        } else {
            majority
        };
        if next >= c {
            return vec![old, 0, n];
        }
        c = next;
        path.push(c);
    }
    path
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
                return Verdict::NotChecked(format!("StorageClass {shown} ({why})"));
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
        Lookup::Unknown(why) => Verdict::NotChecked(format!("PodDisruptionBudgets ({why})")),
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

/// How `stsguard.io/protect` reads where it keeps something (a DELETE, the retention rule): as
/// every safety switch, it fails closed ([`ann::Switch::is_on`]): a value neither `"true"` nor
/// `"false"` protects, and the message names it.
pub fn protection(sts: &StatefulSet) -> ann::Switch<'_> {
    ann::switch(sts, keys::PROTECT)
}

/// `its stsguard.io/protect: "yes" is neither "true" nor "false": read as "true"` for an
/// unclear value.
fn unclear_note(p: ann::Switch) -> Option<String> {
    match p {
        ann::Switch::Invalid(v) => Some(format!(
            "its {}: {:?} is neither \"true\" nor \"false\": read as \"true\"",
            keys::PROTECT,
            short(v).as_ref()
        )),
        _ => None,
    }
}

/// The command that lifts the protection of `names` (`--all` when `None`).
fn unprotect(ns: &str, names: Option<&[&str]>) -> String {
    let which = names.map_or("--all".to_string(), |n| n.join(" "));
    format!(
        "kubectl -n {ns} annotate sts {which} {}=false --overwrite",
        keys::PROTECT
    )
}

/// `delete-protection`: a StatefulSet whose `stsguard.io/protect` is not off ([`protection`])
/// keeps itself, its namespace (unless it is being deleted itself) and the claims it uses
/// ([`claim_use`]). For a namespace or a claim the verdict is this StatefulSet's part of the
/// message; [`held_message`] makes the whole one.
pub fn delete_protection(i: &Input) -> Verdict {
    let sts = i.object;
    let p = protection(sts);
    if !p.is_on() {
        return Verdict::Pass;
    }
    let name = name(sts);
    match i.deleted.unwrap_or(Deleted::StatefulSet) {
        Deleted::StatefulSet => Verdict::Fail(match p {
            ann::Switch::Invalid(v) => format!(
                "StatefulSet {name} is kept by {}: {:?}, which is neither \"true\" nor \"false\" (read as \"true\"); to delete it, first: {}",
                keys::PROTECT,
                short(v).as_ref(),
                unprotect(i.namespace, Some(&[name]))
            ),
            _ => format!(
                "StatefulSet {name} is protected by {}=true; to delete it, first: {}",
                keys::PROTECT,
                unprotect(i.namespace, Some(&[name]))
            ),
        }),
        // A StatefulSet being deleted goes anyway: its namespace may go with it.
        Deleted::Namespace if sts.metadata.deletion_timestamp.is_some() => Verdict::Pass,
        Deleted::Namespace => Verdict::Fail(match unclear_note(p) {
            Some(note) => format!("{name} ({note})"),
            None => name.to_string(),
        }),
        // Its claims stay kept while it is being deleted: they are what is at risk then (the
        // garbage collector deletes them under whenDeleted: Delete).
        Deleted::Claim(claim) => match claim_use(sts, claim) {
            Some(how) => Verdict::Fail(match unclear_note(p) {
                Some(note) => format!("{name} ({how}; {note})"),
                None => format!("{name} ({how})"),
            }),
            None => Verdict::Pass,
        },
    }
}

/// How `sts` uses the claim named `claim`, as a field path: the claim of one of its
/// volumeClaimTemplates for an ordinal in use (`spec.ordinals.start` up to, not including,
/// start + `spec.replicas`), or a pod volume mounting it by `claimName`. The claim of template
/// `t` for ordinal `n` is `t-<sts>-n` (both names may hold '-': each is matched exactly, and the
/// ordinal is read strictly, as the StatefulSet controller writes it), so a name that merely
/// looks alike is not used.
pub fn claim_use(sts: &StatefulSet, claim: &str) -> Option<String> {
    let spec = sts.spec.as_ref()?;
    let name = sts.metadata.name.as_deref()?;
    let start = i64::from(spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0));
    let end = start + i64::from(spec.replicas.unwrap_or(1));
    let templates = spec.volume_claim_templates.as_deref().unwrap_or_default();
    for (i, t) in templates.iter().enumerate() {
        let Some(template) = t.metadata.name.as_deref() else {
            continue;
        };
        let ordinal = claim
            .strip_prefix(template)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_prefix(name))
            .and_then(|r| r.strip_prefix('-'))
            .and_then(strict_ordinal);
        if let Some(n) = ordinal.filter(|n| (start..end).contains(n)) {
            return Some(format!(
                "spec.volumeClaimTemplates[{i}] \"{template}\" of pod {name}-{n}; pods {name}-{start}..{name}-{} in use",
                end - 1
            ));
        }
    }
    let pod = spec.template.spec.as_ref()?;
    // A volume named like a volumeClaimTemplate is replaced by the pod's own claim. The names
    // are gathered once, and only for a StatefulSet with a volume that names the claim.
    let mut replaced: Option<HashSet<&str>> = None;
    for (i, v) in pod.volumes.iter().flatten().enumerate() {
        let mounts = v
            .persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.claim_name == claim);
        if !mounts {
            continue;
        }
        let replaced = replaced.get_or_insert_with(|| {
            templates
                .iter()
                .filter_map(|t| t.metadata.name.as_deref())
                .collect()
        });
        if !replaced.contains(v.name.as_str()) {
            return Some(format!(
                "spec.template.spec.volumes[{i}] \"{}\" mounts it",
                v.name
            ));
        }
    }
    None
}

/// An ordinal as the StatefulSet controller writes it (`%d` of a non-negative int32): ASCII
/// digits, no sign, no leading zero.
fn strict_ordinal(s: &str) -> Option<i64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse::<i32>().ok().map(i64::from)
}

/// How many holders a message names; the rest are counted.
const NAMED_HOLDERS: usize = 5;

/// The message of a namespace or claim DELETE held by the StatefulSets `held` (name, and the
/// part [`delete_protection`] said of it; sorted by name, not empty): the first few named, the
/// rest counted, and the fix.
pub fn held_message(deleted: Deleted, ns: &str, held: &[(&str, String)]) -> String {
    let n = held.len();
    let mut listed = held
        .iter()
        .take(NAMED_HOLDERS)
        .map(|(_, part)| part.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if n > NAMED_HOLDERS {
        listed.push_str(&format!(" and {} more", n - NAMED_HOLDERS));
    }
    let names: Vec<&str> = held.iter().map(|(name, _)| *name).collect();
    match deleted {
        Deleted::Namespace if n == 1 => format!(
            "namespace {ns} holds protected StatefulSet {listed}; to delete the namespace, first: {}",
            unprotect(ns, Some(&names))
        ),
        Deleted::Namespace => format!(
            "namespace {ns} holds {n} protected StatefulSets: {listed}; to delete the namespace, first: {}",
            unprotect(ns, None)
        ),
        Deleted::Claim(claim) => format!(
            "PersistentVolumeClaim {claim} holds the data of protected StatefulSet{} {listed}; to delete it, first: {}",
            if n == 1 { "" } else { "s" },
            unprotect(ns, Some(&names[..n.min(NAMED_HOLDERS)]))
        ),
        Deleted::StatefulSet => listed,
    }
}

/// `protect-retention`: a protected StatefulSet whose claims go with it once it is deleted.
pub fn protect_retention(sts: &StatefulSet) -> Verdict {
    let spec = sts.spec.as_ref();
    let deletes = spec
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
        .is_some_and(|p| p.when_deleted.as_deref() == Some("Delete"));
    let has_claims = spec
        .and_then(|s| s.volume_claim_templates.as_ref())
        .is_some_and(|v| !v.is_empty());
    if !protection(sts).is_on() || !deletes || !has_claims {
        return Verdict::Pass;
    }
    Verdict::Fail(
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Delete deletes the protected data; use Retain"
            .into(),
    )
}

pub fn single_instance(sts: &StatefulSet) -> Verdict {
    let n = replicas(sts);
    if ann::switch(sts, keys::SINGLE_INSTANCE).is_on() && n > 1 {
        Verdict::Fail(format!(
            "spec.replicas is {n} but {} is \"{}\": this workload cannot replicate; keep replicas at 1",
            keys::SINGLE_INSTANCE,
            ann::get(sts, keys::SINGLE_INSTANCE)
                .map(short)
                .unwrap_or_default()
        ))
    } else {
        Verdict::Pass
    }
}

/// The safety switches (`protect`, `single-instance`, `quorum`) are `"true"` or `"false"`: a
/// switch that is neither would leave the reader to guess, so it is refused on write, naming
/// the key, the value and the fix.
pub fn safety_switch(sts: &StatefulSet) -> Verdict {
    let bad: Vec<String> = keys::SWITCHES
        .iter()
        .filter_map(|key| match ann::switch(sts, key) {
            ann::Switch::Invalid(v) => Some(format!(
                "{key}: \"{}\" is not \"true\" or \"false\"; write \"true\" to turn it on, \"false\" to turn it off",
                short(v)
            )),
            _ => None,
        })
        .collect();
    if bad.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(bad.join("; "))
    }
}

/// `stsguard.io/` annotations that do nothing ([`ann::ignored`]): an unknown key, or a rule
/// override the policy does not take.
pub fn annotation_ignored(sts: &StatefulSet, policy: &Policy) -> Verdict {
    let allowed = policy.validation.allow_object_overrides;
    let ignored = ann::ignored(sts, allowed, |r| policy.mode(r));
    if ignored.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(ignored.join("; "))
    }
}
