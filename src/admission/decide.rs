//! What each endpoint decides of a request once it is read: `/mutate`'s patch
//! ([`mutate_request`]: a StatefulSet's mutation, a role-managed Pod's label and node selector)
//! and `/validate`'s findings ([`validate_request`]: a write, a scale, a DELETE of a StatefulSet,
//! of a Namespace or of a claim, judged by the rules with the watch caches' look-ups). The
//! answer around it is [`super::answer_counted`]'s.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::core::admission::Operation;

use super::decode::{Kind, Object};
use super::wire::{Request, Slot};
use crate::error::{Error, Result};
use crate::mutate;
use crate::policy::{Mode, Policy, RuleId};
use crate::validate::{self, Findings, Lookup, Lookups, Review, RuleResult, Subject};

/// What the dispatch decided.
#[derive(Default)]
pub(super) struct Decision {
    /// The object's name when the request does not carry it (the claims the namespace controller
    /// deletes by collection; `generateName` on a CREATE), for the log line and the warnings.
    pub(super) name: Option<String>,
    /// Why the request could not be judged once its object was named (a cache that cannot
    /// answer): answered per the policy's `onError`, as an `Err` is.
    pub(super) not_evaluated: Option<Error>,
    pub(super) denied: Option<String>,
    pub(super) warnings: Vec<String>,
    pub(super) patch: Option<json_patch::Patch>,
    pub(super) rules: Vec<(RuleId, Mode, RuleResult)>,
}

/// The request's object or old object as a StatefulSet, within the bounds on work.
fn statefulset(slot: Slot<'_>, for_patch: bool, what: &str) -> Result<Option<StatefulSet>> {
    match slot.take(Kind::StatefulSet, for_patch, what)? {
        Some(Object::StatefulSet(s)) => {
            crate::bounds::check_statefulset(&s).map_err(Error::PastBound)?;
            Ok(Some(*s))
        }
        _ => Ok(None),
    }
}

/// The request's old object as a StatefulSet, for what a write or a delete reads of it: its
/// replicas and its metadata (the annotations that protect it and set the modes). One already
/// past a bound (stored before stsguard, or while its webhook was off) is not a reason to refuse
/// the write that makes it smaller nor its delete: it is judged on its metadata and replicas
/// alone, constant work whatever its size.
fn old_statefulset(slot: Slot<'_>) -> Result<Option<StatefulSet>> {
    match slot.take(Kind::StatefulSet, false, "request.oldObject")? {
        Some(Object::StatefulSet(s)) => Ok(Some(match crate::bounds::check_statefulset(&s) {
            Ok(()) => *s,
            Err(_) => StatefulSet {
                metadata: s.metadata,
                spec: Some(k8s_openapi::api::apps::v1::StatefulSetSpec {
                    replicas: s.spec.and_then(|spec| spec.replicas),
                    ..Default::default()
                }),
                status: None,
            },
        })),
        _ => Ok(None),
    }
}

pub(super) fn mutate_request(req: Request<'_>, policy: &Policy) -> Result<Decision> {
    if req.resource.resource == "pods" {
        let Some(Object::Pod(pod)) = req.object.take(Kind::Pod, true, "request.object")? else {
            return Ok(Decision::default());
        };
        crate::bounds::check_pod(pod.spec.as_ref()).map_err(Error::PastBound)?;
        let (out, report) = mutate::pod::mutate_pod(&pod);
        return Ok(Decision {
            warnings: report.warnings,
            patch: Some(mutate::patch::pod(&pod, &out)?),
            name: own_name(&pod.metadata),
            ..Default::default()
        });
    }
    let Some(mut sts) = statefulset(req.object, true, "request.object")? else {
        return Ok(Decision::default());
    };
    // An UPDATE is mutated only when it changes the template or what drives it: the stored
    // object is what the pods run, and stsguard causes no rollout of its own.
    let old = match req.operation {
        Operation::Update => old_statefulset(req.old_object)?,
        _ => None,
    };
    let (report, patch) = mutate::mutate_with_patch(&mut sts, old.as_ref(), policy)?;
    Ok(Decision {
        warnings: report.warnings,
        patch: Some(patch),
        name: own_name(&sts.metadata),
        ..Default::default()
    })
}

/// A Namespace or claim DELETE (the webhook registers no other operation on them): the rules
/// judge the StatefulSets of the namespace from the watch cache. When the cache cannot say, the
/// review is not evaluated: answered per `onError`, which the answer says.
fn validate_delete_of(
    req: Request<'_>,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Decision> {
    let (kind, what) = match req.resource.resource.as_str() {
        "namespaces" => (Kind::Namespace, "namespace"),
        _ => (Kind::PersistentVolumeClaim, "claim"),
    };
    let meta = match req.old_object.take(kind, false, "request.oldObject")? {
        Some(Object::Namespace(o)) => Some(o.metadata),
        Some(Object::PersistentVolumeClaim(o)) => Some(o.metadata),
        _ => None,
    };
    let meta = meta.unwrap_or_default();
    // The namespace controller deletes claims by collection: those reviews carry no
    // `request.name`, only the old object names the claim.
    let named_by_request = !req.name.is_empty();
    let name = meta.name.filter(|n| !n.is_empty()).unwrap_or(req.name);
    if name.is_empty() {
        return Err(Error::NotEvaluated(format!(
            "the {what} deleted is named by neither request.name nor request.oldObject"
        )));
    }
    let (namespace, subject) = match kind {
        Kind::Namespace => (name.as_str(), Subject::DeleteNamespace),
        _ => {
            let ns = req.namespace.as_deref().or(meta.namespace.as_deref());
            (ns.unwrap_or(""), Subject::DeleteClaim { name: &name })
        }
    };
    // Delete protection reads the StatefulSets it enforces on beyond their annotation: each of
    // those within the bounds, as a request's object (what the look-up holds of it: the watch
    // cache holds what delete protection reads). One it passes over (unprotected, its rule off or
    // at warn, or, for a namespace, being deleted itself) holds nothing by a bound. One look-up
    // serves the check and the rules.
    let sets = lookups.statefulsets_in(namespace);
    if let Lookup::Found(sets) = &sets {
        let deleted = match kind {
            Kind::Namespace => validate::Deleted::Namespace,
            _ => validate::Deleted::Claim(&name),
        };
        for sts in sets
            .iter()
            .filter(|s| validate::enforces_on_delete(s, deleted, policy))
        {
            if let Err(why) = crate::bounds::check_statefulset(sts) {
                return Err(cached_past_bound(namespace, sts, why));
            }
        }
    }
    let fetched = Fetched {
        inner: lookups,
        namespace,
        sets: Some(sets),
        one: None,
    };
    let findings = validate::validate(&Review { namespace, subject }, policy, &fetched);
    let not_evaluated = findings
        .warnings
        .iter()
        .find(|f| f.outcome == validate::Outcome::NotChecked)
        .map(|f| Error::NotEvaluated(format!("[{}] not checked: {}", f.rule, f.message)));
    Ok(Decision {
        not_evaluated,
        denied: (!findings.allowed()).then(|| findings.denial()),
        warnings: findings.warning_lines(),
        rules: findings.results,
        name: (!named_by_request).then_some(name),
        ..Default::default()
    })
}

/// Look-ups with the StatefulSets already fetched for the bounds check answered again from what
/// was fetched (the same answer, no second look-up); the rest from `inner`.
struct Fetched<'a> {
    inner: &'a dyn Lookups,
    namespace: &'a str,
    sets: Option<Lookup<Vec<std::sync::Arc<StatefulSet>>>>,
    one: Option<(&'a str, Lookup<std::sync::Arc<StatefulSet>>)>,
}

impl Lookups for Fetched<'_> {
    fn service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Lookup<std::sync::Arc<k8s_openapi::api::core::v1::Service>> {
        self.inner.service(namespace, name)
    }
    fn storage_class(
        &self,
        name: Option<&str>,
    ) -> Lookup<std::sync::Arc<k8s_openapi::api::storage::v1::StorageClass>> {
        self.inner.storage_class(name)
    }
    fn pdbs(
        &self,
        namespace: &str,
    ) -> Lookup<Vec<std::sync::Arc<k8s_openapi::api::policy::v1::PodDisruptionBudget>>> {
        self.inner.pdbs(namespace)
    }
    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<std::sync::Arc<StatefulSet>> {
        match &self.one {
            Some((n, l)) if namespace == self.namespace && name == *n => l.clone(),
            _ => self.inner.statefulset(namespace, name),
        }
    }
    fn statefulsets_in(&self, namespace: &str) -> Lookup<Vec<std::sync::Arc<StatefulSet>>> {
        match &self.sets {
            Some(l) if namespace == self.namespace => l.clone(),
            _ => self.inner.statefulsets_in(namespace),
        }
    }
    fn statefulset_past_bound(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<crate::bounds::PastBound> {
        self.inner.statefulset_past_bound(namespace, name)
    }
}

/// A cached StatefulSet past a bound, named in the reason (the request names another object).
fn cached_past_bound(namespace: &str, sts: &StatefulSet, why: crate::bounds::PastBound) -> Error {
    let name = sts.metadata.name.as_deref().unwrap_or("");
    let object = crate::text::object("StatefulSet", namespace, name);
    Error::PastBound(crate::bounds::PastBound {
        what: format!("{object} (in the watch cache): {}", why.what),
        fix: why.fix,
    })
}

/// An object's name, or its `generateName` with `…` (a CREATE before the name is generated).
fn own_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<String> {
    meta.name
        .clone()
        .or_else(|| meta.generate_name.as_ref().map(|g| format!("{g}…")))
}

pub(super) fn validate_request(
    req: Request<'_>,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Decision> {
    if matches!(
        req.resource.resource.as_str(),
        "namespaces" | "persistentvolumeclaims"
    ) {
        return validate_delete_of(req, policy, lookups);
    }
    let namespace = req.namespace.as_deref().unwrap_or("");
    let mut name = None;
    let findings: Findings = match (req.sub_resource.as_deref(), &req.operation) {
        (Some(_), _) => {
            // autoscaling/v1 Scale omits `replicas: 0` (`spec: {}`): a Scale without
            // spec.replicas asks for 0 (and an old one without it had 0).
            let replicas = |slot: Slot<'_>, what| -> Result<Option<i32>> {
                Ok(match slot.take(Kind::Scale, false, what)? {
                    Some(Object::Scale(s)) => Some(s.spec.and_then(|s| s.replicas).unwrap_or(0)),
                    _ => None,
                })
            };
            // The rules judge the cached StatefulSet: within the bounds, as a request's object.
            // The cache judged the bounds when the object arrived: one past them is denied
            // without being decoded. One look-up serves the rules.
            if let Some(why) = lookups.statefulset_past_bound(namespace, &req.name) {
                return Err(Error::PastBound(why));
            }
            let cached = lookups.statefulset(namespace, &req.name);
            // The object may have changed between the two reads: checked again (constant work).
            if let Lookup::Found(sts) = &cached {
                crate::bounds::check_statefulset(sts).map_err(Error::PastBound)?;
            }
            let fetched = Fetched {
                inner: lookups,
                namespace,
                sets: None,
                one: Some((req.name.as_str(), cached)),
            };
            let Some(n) = replicas(req.object, "request.object")? else {
                return Err(Error::NotEvaluated(
                    "the Scale request has no object".into(),
                ));
            };
            let subject = Subject::Scale {
                name: &req.name,
                replicas: n,
                old_replicas: replicas(req.old_object, "request.oldObject")?,
            };
            validate::validate(&Review { namespace, subject }, policy, &fetched)
        }
        (None, Operation::Delete) => {
            let old = old_statefulset(req.old_object)?;
            let subject = Subject::Delete { old: old.as_ref() };
            validate::validate(&Review { namespace, subject }, policy, lookups)
        }
        (None, operation) => {
            let update = *operation == Operation::Update;
            let Some(object) = statefulset(req.object, false, "request.object")? else {
                return Err(Error::NotEvaluated("the request has no object".into()));
            };
            let old = match update {
                true => old_statefulset(req.old_object)?,
                false => None,
            };
            name = own_name(&object.metadata);
            let subject = Subject::Write {
                object: &object,
                old: old.as_ref(),
            };
            validate::validate(&Review { namespace, subject }, policy, lookups)
        }
    };
    Ok(Decision {
        denied: (!findings.allowed()).then(|| findings.denial()),
        warnings: findings.warning_lines(),
        rules: findings.results,
        name,
        ..Default::default()
    })
}
