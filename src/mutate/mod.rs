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

/// What a mutation did and what it skipped.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Short human lines: what was added.
    pub added: Vec<String>,
    /// Things skipped or kept; they go to `response.warnings`.
    pub warnings: Vec<String>,
}

impl Report {
    pub fn warn(&mut self, w: impl Into<String>) {
        let w = w.into();
        if !self.warnings.contains(&w) {
            self.warnings.push(w);
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
            report.warn(format!(
                "{key}: \"{v}\" is not \"true\" or \"false\"; using {default}"
            ));
            default
        }
    }
}

/// Mutates a StatefulSet (DESIGN.md "Mutation" 1-3). Idempotent: mutating the result again
/// changes nothing. Never removes or changes what the user wrote.
pub fn mutate(sts: &StatefulSet, policy: &Policy) -> Mutation {
    let mut report = Report::default();
    let mut out = sts.clone();
    if policy.is_excluded(sts.metadata.namespace.as_deref())
        || !flag(sts, keys::MUTATE, true, &mut report)
    {
        return Mutation {
            object: out,
            report,
        };
    }
    if sts.spec.is_none() {
        report.warn("the StatefulSet has no spec: nothing to mutate");
        return Mutation {
            object: out,
            report,
        };
    }
    let roles = roles::apply(&mut out, policy, &mut report);
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
    env::apply(&mut out, &vars, &mut report);
    affinity::apply(&mut out, policy, &mut report);
    Mutation {
        object: out,
        report,
    }
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
