//! What the rules look up in the cluster, and where the answers come from: the input files for
//! `check` ([`StaticLookups`]), nothing for `--no-cluster` ([`NoLookups`]); the server answers
//! from its watch caches ([`crate::watch::WatchLookups`]): nothing calls the API on the request path.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;

use crate::bounds::PastBound;

/// The answer of a look-up.
#[derive(Clone, Debug)]
pub enum Lookup<T> {
    Found(T),
    Missing,
    /// The cache cannot say (not synced, cluster unreachable, `--no-cluster`): never deny on it.
    Unknown(String),
}

/// Look-ups the rules need; the server answers them from watch caches, `check` from its input.
pub trait Lookups: Send + Sync {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Arc<Service>>;
    /// `name` None: the cluster's default StorageClass.
    fn storage_class(&self, name: Option<&str>) -> Lookup<Arc<StorageClass>>;
    fn pdbs(&self, namespace: &str) -> Lookup<Vec<Arc<PodDisruptionBudget>>>;
    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<Arc<StatefulSet>>;
    /// Every StatefulSet in `namespace`.
    fn statefulsets_in(&self, namespace: &str) -> Lookup<Vec<Arc<StatefulSet>>>;
    /// Why the StatefulSet `namespace/name` is past a bound ([`crate::bounds::check_statefulset`]),
    /// if it is found and is. The watch caches judge it once when it arrives and answer without
    /// decoding it; the default looks it up and checks it.
    fn statefulset_past_bound(&self, namespace: &str, name: &str) -> Option<PastBound> {
        match self.statefulset(namespace, name) {
            Lookup::Found(sts) => crate::bounds::check_statefulset(&sts).err(),
            _ => None,
        }
    }
}

/// Look-ups that know nothing: every look-up is "unknown" with the given reason.
pub struct NoLookups(pub String);

impl Lookups for NoLookups {
    fn service(&self, _: &str, _: &str) -> Lookup<Arc<Service>> {
        Lookup::Unknown(self.0.clone())
    }
    fn storage_class(&self, _: Option<&str>) -> Lookup<Arc<StorageClass>> {
        Lookup::Unknown(self.0.clone())
    }
    fn pdbs(&self, _: &str) -> Lookup<Vec<Arc<PodDisruptionBudget>>> {
        Lookup::Unknown(self.0.clone())
    }
    fn statefulset(&self, _: &str, _: &str) -> Lookup<Arc<StatefulSet>> {
        Lookup::Unknown(self.0.clone())
    }
    fn statefulsets_in(&self, _: &str) -> Lookup<Vec<Arc<StatefulSet>>> {
        Lookup::Unknown(self.0.clone())
    }
}

pub(crate) const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
pub(crate) const DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";

pub(crate) fn found<T>(o: Option<T>) -> Lookup<T> {
    o.map_or(Lookup::Missing, Lookup::Found)
}

/// Is this the cluster's default StorageClass?
pub fn is_default_class(c: &StorageClass) -> bool {
    c.metadata.annotations.as_ref().is_some_and(|a| {
        [DEFAULT_CLASS, DEFAULT_CLASS_BETA]
            .iter()
            .any(|k| a.get(*k).is_some_and(|v| v == "true"))
    })
}

/// Look-ups answered from a fixed set of objects: `stsguard check` uses the other documents of
/// its input; tests use it directly.
#[derive(Default)]
pub struct StaticLookups {
    pub services: Vec<Arc<Service>>,
    pub classes: Vec<Arc<StorageClass>>,
    pub pdbs: Vec<Arc<PodDisruptionBudget>>,
    pub statefulsets: Vec<Arc<StatefulSet>>,
    /// When false, look-ups for kinds with no object given answer "unknown", not "missing".
    pub authoritative: bool,
}

fn ns_name<K: Resource>(o: &K, ns: &str, name: &str) -> bool {
    o.meta().namespace.as_deref().unwrap_or("default") == ns
        && o.meta().name.as_deref() == Some(name)
}

impl StaticLookups {
    fn unknown<T>(&self, what: &str, empty: bool) -> Option<Lookup<T>> {
        (!self.authoritative && empty).then(|| Lookup::Unknown(format!("no {what} in the input")))
    }
}

impl Lookups for StaticLookups {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Arc<Service>> {
        self.unknown("Service", self.services.is_empty())
            .unwrap_or_else(|| {
                found(
                    self.services
                        .iter()
                        .find(|s| ns_name(&***s, namespace, name))
                        .cloned(),
                )
            })
    }
    fn storage_class(&self, name: Option<&str>) -> Lookup<Arc<StorageClass>> {
        if let Some(u) = self.unknown("StorageClass", self.classes.is_empty()) {
            return u;
        }
        let found = self
            .classes
            .iter()
            .find(|c| match name {
                Some(n) => c.metadata.name.as_deref() == Some(n),
                None => is_default_class(c),
            })
            .cloned();
        match found {
            Some(c) => Lookup::Found(c),
            None if self.authoritative => Lookup::Missing,
            // The input has StorageClasses, but not this one: the cluster may have it, or the
            // claims would stay Pending; either way the rule cannot tell.
            None => {
                let have: Vec<&str> = self
                    .classes
                    .iter()
                    .filter_map(|c| c.metadata.name.as_deref())
                    .collect();
                Lookup::Unknown(match name {
                    Some(_) => format!(
                        "not in the input, which has StorageClass {}; add it, or fix the name",
                        have.join(", ")
                    ),
                    None => format!(
                        "none of the input's StorageClasses ({}) is the default",
                        have.join(", ")
                    ),
                })
            }
        }
    }
    fn pdbs(&self, namespace: &str) -> Lookup<Vec<Arc<PodDisruptionBudget>>> {
        self.unknown("PodDisruptionBudget", self.pdbs.is_empty())
            .unwrap_or_else(|| {
                Lookup::Found(
                    self.pdbs
                        .iter()
                        .filter(|p| {
                            p.metadata.namespace.as_deref().unwrap_or("default") == namespace
                        })
                        .cloned()
                        .collect(),
                )
            })
    }
    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<Arc<StatefulSet>> {
        self.unknown("StatefulSet", self.statefulsets.is_empty())
            .unwrap_or_else(|| {
                found(
                    self.statefulsets
                        .iter()
                        .find(|s| ns_name(&***s, namespace, name))
                        .cloned(),
                )
            })
    }
    fn statefulsets_in(&self, namespace: &str) -> Lookup<Vec<Arc<StatefulSet>>> {
        self.unknown("StatefulSet", self.statefulsets.is_empty())
            .unwrap_or_else(|| {
                Lookup::Found(
                    self.statefulsets
                        .iter()
                        .filter(|s| {
                            s.metadata.namespace.as_deref().unwrap_or("default") == namespace
                        })
                        .cloned()
                        .collect(),
                )
            })
    }
}
