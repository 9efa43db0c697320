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
    let mut object = sts.clone();
    let report = mutate_in_place(&mut object, policy);
    Mutation { object, report }
}

/// [`mutate`] without the copy: changes `sts` itself.
pub fn mutate_in_place(sts: &mut StatefulSet, policy: &Policy) -> Report {
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

/// The server's path: mutates `sts` in place and returns the patch from what it was (the same
/// patch as [`statefulset_patch`] of a copy; no copy of the object is made).
pub fn mutate_with_patch(
    sts: &mut StatefulSet,
    policy: &Policy,
) -> Result<(Report, json_patch::Patch), serde_json::Error> {
    let Some(before) = projection(sts).map(serde_json::to_value).transpose()? else {
        let m = mutate(sts, policy);
        let patch = patch_for(sts, &m.object)?;
        *sts = m.object;
        return Ok((m.report, patch));
    };
    let report = mutate_in_place(sts, policy);
    let after = serde_json::to_value(projection(sts))?;
    Ok((report, json_patch::diff(&before, &after)))
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
/// container's env and volumeMounts. Everything else is identical on both sides and would yield
/// no operation. The property tests check that it equals the full diff.
pub fn statefulset_patch(
    before: &StatefulSet,
    after: &StatefulSet,
) -> Result<json_patch::Patch, serde_json::Error> {
    match (projection(before), projection(after)) {
        (Some(b), Some(a)) => Ok(json_patch::diff(
            &serde_json::to_value(b)?,
            &serde_json::to_value(a)?,
        )),
        _ => patch_for(before, after),
    }
}

mod project {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Affinity, Container, EnvVar, Volume, VolumeMount};
    use serde::Serialize;

    // Absent stays absent, as k8s-openapi serialises it, never `null` (a diff from `null` would
    // be a `replace` on a path the real object does not have).
    fn absent<T>(o: &&Option<T>) -> bool {
        o.is_none()
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
        #[serde(skip_serializing_if = "absent")]
        pub labels: &'a Option<BTreeMap<String, String>>,
        #[serde(skip_serializing_if = "absent")]
        pub annotations: &'a Option<BTreeMap<String, String>>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct PodSpec<'a> {
        #[serde(skip_serializing_if = "absent")]
        pub affinity: &'a Option<Affinity>,
        #[serde(skip_serializing_if = "absent")]
        pub volumes: &'a Option<Vec<Volume>>,
        #[serde(skip_serializing_if = "absent")]
        pub init_containers: &'a Option<Vec<Container>>,
        pub containers: Vec<ContainerEnv<'a>>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    pub struct ContainerEnv<'a> {
        #[serde(skip_serializing_if = "absent")]
        pub env: &'a Option<Vec<EnvVar>>,
        #[serde(skip_serializing_if = "absent")]
        pub volume_mounts: &'a Option<Vec<VolumeMount>>,
    }
}

fn projection(s: &StatefulSet) -> Option<project::Sts<'_>> {
    let t = &s.spec.as_ref()?.template;
    Some(project::Sts {
        spec: project::Spec {
            template: project::Template {
                metadata: t.metadata.as_ref().map(|m| project::Meta {
                    labels: &m.labels,
                    annotations: &m.annotations,
                }),
                spec: t.spec.as_ref().map(|p| project::PodSpec {
                    affinity: &p.affinity,
                    volumes: &p.volumes,
                    init_containers: &p.init_containers,
                    containers: p
                        .containers
                        .iter()
                        .map(|c| project::ContainerEnv {
                            env: &c.env,
                            volume_mounts: &c.volume_mounts,
                        })
                        .collect(),
                }),
            },
        },
    })
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
