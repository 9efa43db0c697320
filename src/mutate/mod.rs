//! The mutation core: pure functions from a typed object and the policy to the mutated object.
//! [`patch`] turns the original and the result into the JSONPatch sent to the API server.

pub mod affinity;
pub mod env;
pub mod patch;
pub mod pod;
pub mod roles;

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::k8s::annotations::{self as ann, keys};
use crate::policy::Policy;

/// What a mutation did and what it skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Short human lines: what was added.
    pub added: Vec<String>,
    /// Things skipped or kept; they go to `response.warnings`. At most [`Report::MAX_WARNINGS`].
    pub warnings: Vec<String>,
    /// Warnings past the first [`Report::MAX_WARNINGS`], counted and dropped.
    pub more_warnings: usize,
}

impl Report {
    /// Enough to say what went wrong; the API server's warning headers are small.
    pub const MAX_WARNINGS: usize = 16;

    pub fn warn(&mut self, w: impl Into<String>) {
        let w = w.into();
        if self.warnings.contains(&w) {
            return;
        }
        if self.warnings.len() < Self::MAX_WARNINGS {
            self.warnings.push(w);
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

fn flag(sts: &StatefulSet, key: &str, default: bool, report: &mut Report) -> bool {
    ann::flag(sts, key)
        .unwrap_or_else(|why| {
            report.warn(format!("{why}; using {default}"));
            None
        })
        .unwrap_or(default)
}

/// Mutates a StatefulSet (DESIGN.md "Mutation" 1-3). Idempotent: mutating the result again
/// changes nothing. Never removes or changes what the user wrote: [`patch::statefulset`] turns
/// the result into a patch that only adds.
pub fn mutate(sts: &StatefulSet, policy: &Policy) -> Mutation {
    let mut object = sts.clone();
    let report = mutate_in_place(&mut object, policy);
    Mutation { object, report }
}

fn mutate_in_place(sts: &mut StatefulSet, policy: &Policy) -> Report {
    let mut report = Report::default();
    if policy.is_excluded(sts.metadata.namespace.as_deref())
        || !flag(sts, keys::MUTATE, true, &mut report)
    {
        return report;
    }
    if sts.spec.is_none() {
        report.warn("the StatefulSet has no spec: nothing to mutate");
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
