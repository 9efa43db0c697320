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

/// The server's path: mutates `sts` and returns the patch from what it was (the same patch as
/// [`statefulset_patch`]).
pub fn mutate_with_patch(
    sts: &mut StatefulSet,
    policy: &Policy,
) -> Result<(Report, json_patch::Patch), serde_json::Error> {
    let m = mutate(sts, policy);
    let patch = statefulset_patch(sts, &m.object)?;
    *sts = m.object;
    Ok((m.report, patch))
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
    match project::pair(before, after) {
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
    use k8s_openapi::api::core::v1::{Affinity, Container, EnvVar, Volume, VolumeMount};
    use serde::Serialize;

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

    fn one<'a>(s: &'a StatefulSet, other: &StatefulSet) -> Option<Sts<'a>> {
        let t = &s.spec.as_ref()?.template;
        let o = &other.spec.as_ref()?.template;
        let none = Default::default();
        let om = o.metadata.as_ref().unwrap_or(&none);
        let none_spec = Default::default();
        let op = o.spec.as_ref().unwrap_or(&none_spec);
        Some(Sts {
            spec: Spec {
                template: Template {
                    metadata: t.metadata.as_ref().map(|m| Meta {
                        labels: differ(&m.labels, &om.labels),
                        annotations: differ(&m.annotations, &om.annotations),
                    }),
                    spec: t.spec.as_ref().map(|p| PodSpec {
                        affinity: differ(&p.affinity, &op.affinity),
                        volumes: differ(&p.volumes, &op.volumes),
                        init_containers: inits(&p.init_containers, &op.init_containers),
                        containers: each(&p.containers, &op.containers),
                    }),
                },
            },
        })
    }

    fn each<'a>(cs: &'a [Container], other: &[Container]) -> Vec<ContainerEnv<'a>> {
        cs.iter()
            .zip(other)
            .map(|(c, oc)| ContainerEnv {
                env: differ(&c.env, &oc.env),
                volume_mounts: differ(&c.volume_mounts, &oc.volume_mounts),
            })
            .collect()
    }

    fn inits<'a>(
        cs: &'a Option<Vec<Container>>,
        other: &Option<Vec<Container>>,
    ) -> Option<Inits<'a>> {
        match (cs, other) {
            _ if cs == other => None,
            (Some(cs), Some(o)) if cs.len() == o.len() => Some(Inits::Each(each(cs, o))),
            (Some(cs), _) => Some(Inits::Whole(cs)),
            (None, _) => None,
        }
    }

    /// Both projections, or `None` when they cannot be compared field by field (no spec, or
    /// the container lists differ in length — the mutation never adds containers).
    pub fn pair<'a>(b: &'a StatefulSet, a: &'a StatefulSet) -> Option<(Sts<'a>, Sts<'a>)> {
        let containers = |s: &StatefulSet| {
            s.spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| p.containers.len())
        };
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
