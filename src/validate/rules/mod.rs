//! The rules, as one table ([`rules!`] below: id, default mode, when it runs, its check), and one
//! function per rule, in a file per concern. Each returns a [`Verdict`] whose message names the field path and the fix.
//! A new rule is one row and one function (and its tests: `tests/validation_rules.rs`); the
//! chart's schema and the README are checked against the table.

// What the rules read, for this table and the rule files (each `use super::*`).
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

mod availability;
mod delete;
mod roles;
mod scale;
mod storage;
mod switches;

pub use availability::*;
pub use delete::*;
pub use roles::*;
pub use scale::*;
pub use storage::*;
pub use switches::*;

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
