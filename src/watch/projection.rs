//! What the caches keep of each object: only the fields the rules and delete protection read.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Service,
    ServiceSpec, Volume,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta, Time,
};

use crate::bounds::PastBound;
use crate::validate::lookups::{DEFAULT_CLASS, DEFAULT_CLASS_BETA};

/// What every cache keeps of an object's metadata: name, namespace, uid, annotations (without
/// `kubectl.kubernetes.io/last-applied-configuration`, a copy of the whole object) and
/// `deletionTimestamp`; labels only where asked. Dropped: managedFields, ownerReferences,
/// finalizers, resourceVersion, generation, timestamps: nothing reads them.
pub(super) fn project_meta(m: ObjectMeta, labels: bool, annotations: bool) -> ObjectMeta {
    let annotations = annotations
        .then(|| {
            m.annotations.map(|mut a| {
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
                a
            })
        })
        .flatten()
        .filter(|a| !a.is_empty());
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        labels: if labels { m.labels } else { None },
        annotations,
        deletion_timestamp: m.deletion_timestamp,
        ..Default::default()
    }
}

/// Labels as a boxed slice: a `BTreeMap` takes a node of several hundred bytes even for one
/// entry, and caches hold tens of thousands of selectors.
type Labels = Box<[(String, String)]>;

fn labels(m: Option<BTreeMap<String, String>>) -> Option<Labels> {
    m.map(|m| m.into_iter().collect())
}

fn label_map(l: &Option<Labels>) -> Option<BTreeMap<String, String>> {
    l.as_ref().map(|l| l.iter().cloned().collect())
}

/// A Service as the governing-service rule reads it: name, namespace, `spec.clusterIP`,
/// `spec.selector` (given to the rule as a Service with only these set).
pub struct CachedService {
    name: Option<String>,
    namespace: Option<String>,
    /// None: no `spec`.
    spec: Option<(Option<String>, Option<Labels>)>,
}

pub(super) fn project_service(s: Service) -> CachedService {
    CachedService {
        name: s.metadata.name,
        namespace: s.metadata.namespace,
        spec: s.spec.map(|sp| (sp.cluster_ip, labels(sp.selector))),
    }
}

impl CachedService {
    pub(super) fn service(&self) -> Service {
        Service {
            metadata: ObjectMeta {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                ..Default::default()
            },
            spec: self.spec.as_ref().map(|(ip, sel)| ServiceSpec {
                cluster_ip: ip.clone(),
                selector: label_map(sel),
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// `matchLabels` and `matchExpressions`.
type HeldSelector = (Option<Labels>, Option<Vec<LabelSelectorRequirement>>);

/// A PodDisruptionBudget as the disruption-budget rule reads it: name, namespace,
/// `spec.selector` (given to the rule as a PDB with only these set).
pub struct CachedPdb {
    name: Option<String>,
    namespace: Option<String>,
    /// None: no `spec`; `Some(None)`: no selector.
    selector: Option<Option<HeldSelector>>,
}

pub(super) fn project_pdb(p: PodDisruptionBudget) -> CachedPdb {
    CachedPdb {
        name: p.metadata.name,
        namespace: p.metadata.namespace,
        selector: p.spec.map(|s| {
            s.selector
                .map(|sel| (labels(sel.match_labels), sel.match_expressions))
        }),
    }
}

impl CachedPdb {
    pub(super) fn pdb(&self) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                ..Default::default()
            },
            spec: self.selector.as_ref().map(|sel| PodDisruptionBudgetSpec {
                selector: sel.as_ref().map(|(l, e)| LabelSelector {
                    match_labels: label_map(l),
                    match_expressions: e.clone(),
                }),
                ..Default::default()
            }),
            status: None,
        }
    }
}

/// A StorageClass as the local-storage rule reads it: name, the default-class annotations,
/// provisioner, volumeBindingMode.
pub(super) fn project_class(c: StorageClass) -> StorageClass {
    let mut metadata = project_meta(c.metadata, false, true);
    let keep: BTreeMap<String, String> = metadata
        .annotations
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == DEFAULT_CLASS || k == DEFAULT_CLASS_BETA)
        .collect();
    metadata.annotations = Some(keep);
    StorageClass {
        metadata,
        parameters: None,
        mount_options: None,
        allowed_topologies: None,
        ..c
    }
}

/// A cached StatefulSet, in two forms:
/// - `held`: what namespace and claim DELETEs read of every StatefulSet of the namespace, in a
///   small struct of its own ([`Held`]; a typed StatefulSet, even nearly empty, takes kilobytes:
///   every nested struct of the pod spec is inline);
/// - `json`: the whole object but `status` and the metadata nothing reads ([`project_meta`]),
///   as compact JSON, decoded one object at a time where it is judged whole: the background
///   audit (every rule; quorum detection reads the containers' images, command, args and env)
///   and Scale reviews. A decoded StatefulSet takes three to four times the bytes of its JSON;
/// - `past`: why it is past a bound ([`crate::bounds::check_statefulset`]), judged once when the
///   watch delivers it, so that a review or the audit that meets it reads the verdict instead of
///   decoding it (a Scale of it is denied, the audit reports the bound).
pub struct CachedStatefulSet {
    held: Held,
    json: Box<[u8]>,
    past: Option<PastBound>,
}

/// What delete protection reads of a StatefulSet: name, namespace, uid, its `stsguard.io/`
/// annotations (`stsguard.io/protect`, the rule overrides), `deletionTimestamp`,
/// `spec.replicas`, `spec.ordinals`, `spec.persistentVolumeClaimRetentionPolicy`, the names of
/// its `volumeClaimTemplates` and its pod volumes' names and `persistentVolumeClaim`, in their
/// order (messages name indexes).
struct Held {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    annotations: Option<BTreeMap<String, String>>,
    deletion_timestamp: Option<Time>,
    /// None: no `spec`.
    spec: Option<HeldSpec>,
}

/// A pod volume's name and claim.
type HeldVolume = (String, Option<PersistentVolumeClaimVolumeSource>);

struct HeldSpec {
    replicas: Option<i32>,
    ordinals: Option<StatefulSetOrdinals>,
    retention: Option<StatefulSetPersistentVolumeClaimRetentionPolicy>,
    templates: Option<Box<[Option<String>]>>,
    /// None: no pod `spec`; then each volume's name and claim.
    volumes: Option<Option<Box<[HeldVolume]>>>,
}

impl Held {
    pub(super) fn of(s: &StatefulSet) -> Held {
        let m = &s.metadata;
        Held {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            annotations: m
                .annotations
                .as_ref()
                .map(|a| {
                    a.iter()
                        .filter(|(k, _)| k.starts_with(crate::k8s::annotations::keys::PREFIX))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect::<BTreeMap<_, _>>()
                })
                .filter(|a| !a.is_empty()),
            deletion_timestamp: m.deletion_timestamp.clone(),
            spec: s.spec.as_ref().map(|sp| HeldSpec {
                replicas: sp.replicas,
                ordinals: sp.ordinals.clone(),
                retention: sp.persistent_volume_claim_retention_policy.clone(),
                templates: sp
                    .volume_claim_templates
                    .as_ref()
                    .map(|ts| ts.iter().map(|t| t.metadata.name.clone()).collect()),
                volumes: sp.template.spec.as_ref().map(|p| {
                    p.volumes.as_ref().map(|vs| {
                        vs.iter()
                            .map(|v| (v.name.clone(), v.persistent_volume_claim.clone()))
                            .collect()
                    })
                }),
            }),
        }
    }

    /// The StatefulSet delete protection judges: only these fields set.
    pub(super) fn statefulset(&self) -> StatefulSet {
        let spec = self.spec.as_ref().map(|sp| StatefulSetSpec {
            replicas: sp.replicas,
            ordinals: sp.ordinals.clone(),
            persistent_volume_claim_retention_policy: sp.retention.clone(),
            volume_claim_templates: sp.templates.as_ref().map(|ts| {
                ts.iter()
                    .map(|name| PersistentVolumeClaim {
                        metadata: ObjectMeta {
                            name: name.clone(),
                            ..Default::default()
                        },
                        ..Default::default()
                    })
                    .collect()
            }),
            template: PodTemplateSpec {
                metadata: None,
                spec: sp.volumes.as_ref().map(|vs| PodSpec {
                    volumes: vs.as_ref().map(|vs| {
                        vs.iter()
                            .map(|(name, claim)| Volume {
                                name: name.clone(),
                                persistent_volume_claim: claim.clone(),
                                ..Default::default()
                            })
                            .collect()
                    }),
                    ..Default::default()
                }),
            },
            ..Default::default()
        });
        StatefulSet {
            metadata: ObjectMeta {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                uid: self.uid.clone(),
                annotations: self.annotations.clone(),
                deletion_timestamp: self.deletion_timestamp.clone(),
                ..Default::default()
            },
            spec,
            status: None,
        }
    }
}

impl CachedStatefulSet {
    /// The whole StatefulSet (but what [`project_meta`] drops).
    pub fn decode(&self) -> Result<StatefulSet, String> {
        serde_json::from_slice(&self.json)
            .map_err(|e| format!("cached StatefulSet not decoded: {e}"))
    }

    /// Why it is past a bound, if it is: read without decoding it.
    pub fn past_bound(&self) -> Option<&PastBound> {
        self.past.as_ref()
    }

    /// What delete protection reads of it, as a StatefulSet with only those fields set.
    pub fn held(&self) -> StatefulSet {
        self.held.statefulset()
    }
}

pub(super) fn project_sts(s: StatefulSet) -> CachedStatefulSet {
    let whole = StatefulSet {
        metadata: project_meta(s.metadata, true, true),
        spec: s.spec,
        status: None,
    };
    let past = crate::bounds::check_statefulset(&whole).err();
    CachedStatefulSet {
        held: Held::of(&whole),
        // Serialising a typed object does not fail.
        json: serde_json::to_vec(&whole)
            .unwrap_or_default()
            .into_boxed_slice(),
        past,
    }
}
