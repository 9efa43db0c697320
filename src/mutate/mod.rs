//! The mutation core: pure functions from a typed object and the policy to the mutated object.
//! [`patch`] turns the original and the result into the JSONPatch sent to the API server.

pub mod added;
pub mod affinity;
pub mod env;
pub mod patch;
pub mod pod;
pub mod roles;

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::k8s::annotations::{self as ann, keys};
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
    /// Short human lines: what stsguard had added and took out again (an annotation removed).
    pub removed: Vec<String>,
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
    pub fn removed(&mut self, r: impl Into<String>) {
        self.removed.push(r.into());
    }
}

/// The result of mutating a StatefulSet.
#[derive(Clone, Debug)]
pub struct Mutation {
    pub object: StatefulSet,
    pub report: Report,
}

fn flag(sts: &StatefulSet, key: &str, default: bool, report: &mut Report) -> bool {
    ann::flag(sts, key)
        .unwrap_or_else(|why| {
            report.warn(
                WarningId::AnnotationInvalid,
                format!("{why}; using {default}"),
            );
            None
        })
        .unwrap_or(default)
}

/// Mutates a StatefulSet (docs/mutation.md). Idempotent: mutating the result again
/// changes nothing. Never removes or changes what the user wrote: [`patch::statefulset`] turns
/// the result into a patch that only adds.
pub fn mutate(sts: &StatefulSet, policy: &Policy) -> Mutation {
    let mut object = sts.clone();
    let report = mutate_in_place(&mut object, policy);
    Mutation { object, report }
}

/// The server's path: mutates `sts` in place and returns the patch from what it was. Only what
/// the mutation can change is copied first ([`patch::changeable`]); the patch is the same as
/// [`patch::statefulset`] from a copy of the whole object (the property tests check it).
///
/// `old`: the stored object of an UPDATE. An UPDATE that changes neither the pod template nor
/// an annotation that drives it ([`changes_template`]) is not mutated: its template stays as
/// stored, so a label, an annotation such as `stsguard.io/protect`, or a re-apply of an existing
/// StatefulSet never rolls its pods. The values stsguard does not understand are still said.
pub fn mutate_with_patch(
    sts: &mut StatefulSet,
    old: Option<&StatefulSet>,
    policy: &Policy,
) -> crate::error::Result<(Report, json_patch::Patch)> {
    if !changes_template(sts, old) {
        let mut report = Report::default();
        read_settings(sts, policy, &mut report);
        return Ok((report, json_patch::Patch(Vec::new())));
    }
    let before = patch::changeable(sts);
    let report = mutate_in_place(sts, policy);
    let patch = patch::statefulset(&before, sts)?;
    Ok((report, patch))
}

/// Does a write of `object` over `old` (none: a CREATE) change the pod template, or a
/// `stsguard.io/` annotation that decides what the mutation writes there
/// ([`ann::drives_template`])? Only such a write is mutated: the pods of an existing
/// StatefulSet roll only when the user changed something that rolls them.
pub fn changes_template(object: &StatefulSet, old: Option<&StatefulSet>) -> bool {
    let Some(old) = old else { return true };
    fn template(s: &StatefulSet) -> Option<&k8s_openapi::api::core::v1::PodTemplateSpec> {
        s.spec.as_ref().map(|s| &s.template)
    }
    template(object) != template(old)
        || !ann::template_drivers(object).eq(ann::template_drivers(old))
}

/// Reads the annotations the mutation's steps read, each with its warning when its value is not
/// understood; nothing is changed.
fn read_settings(sts: &StatefulSet, policy: &Policy, report: &mut Report) {
    if policy.is_excluded(sts.metadata.namespace.as_deref())
        || !flag(sts, keys::MUTATE, true, report)
    {
        return;
    }
    flag(sts, keys::ORDINAL_ENV, policy.mutation.ordinal_env, report);
    if affinity::effective_mode(sts, policy, report) != crate::policy::AntiAffinityMode::None {
        affinity::topology_key(sts, policy, report);
    }
}

fn mutate_in_place(sts: &mut StatefulSet, policy: &Policy) -> Report {
    let mut report = Report::default();
    if policy.is_excluded(sts.metadata.namespace.as_deref()) {
        return report;
    }
    let enabled = flag(sts, keys::MUTATE, true, &mut report);
    if sts.spec.is_none() {
        if enabled {
            report.warn(
                WarningId::NoSpec,
                "the StatefulSet has no spec: nothing to mutate",
            );
        }
        return report;
    }
    let mut added = added::Added::of(sts);
    if !enabled {
        // `mutate: "false"`: everything stsguard added goes, nothing else.
        roles::take_out(sts, &mut added, &mut report);
        env::apply(sts, &env::Identity::default(), &mut added, &mut report);
        affinity::take_out(sts, &mut added, &mut report);
        added.write(sts);
        return report;
    }
    let roles = roles::apply(sts, policy, &mut added, &mut report);
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
    env::apply(sts, &vars, &mut added, &mut report);
    affinity::apply(sts, policy, &mut added, &mut report);
    added.write(sts);
    report
}
