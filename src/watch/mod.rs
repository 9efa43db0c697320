//! The server's look-ups: kube watch caches (reflectors, cluster-wide, keeping only the fields
//! the rules read) answer every look-up of a review; nothing calls the API on the request path.

mod cache;
mod projection;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::Api;

use crate::bounds::PastBound;
use crate::validate::lookups::{Lookup, Lookups, found, is_default_class};
use cache::Cache;
use projection::*;

/// The server's look-ups: four cluster-wide watch caches, indexed by namespace.
pub struct WatchLookups {
    services: Arc<Cache<Service, CachedService>>,
    classes: Arc<Cache<StorageClass>>,
    pdbs: Arc<Cache<PodDisruptionBudget, CachedPdb>>,
    statefulsets: Arc<Cache<StatefulSet, CachedStatefulSet>>,
}

impl WatchLookups {
    /// Starts the watches; call inside a Tokio runtime.
    pub fn start(client: kube::Client) -> Arc<Self> {
        Arc::new(WatchLookups {
            services: Cache::start(Api::all(client.clone()), project_service),
            classes: Cache::start(Api::all(client.clone()), project_class),
            pdbs: Cache::start(Api::all(client.clone()), project_pdb),
            statefulsets: Cache::start(Api::all(client), project_sts),
        })
    }

    /// Have all caches synced once?
    pub fn synced(&self) -> bool {
        self.services.ready().is_ok()
            && self.classes.ready().is_ok()
            && self.pdbs.ready().is_ok()
            && self.statefulsets.ready().is_ok()
    }

    /// The same stores filled once with `objects` and no watch: benchmarks and tests measure the
    /// server's own look-ups with them.
    pub fn from_objects(
        services: Vec<Service>,
        classes: Vec<StorageClass>,
        pdbs: Vec<PodDisruptionBudget>,
        statefulsets: Vec<StatefulSet>,
    ) -> Arc<Self> {
        Arc::new(WatchLookups {
            services: Cache::of(services, project_service),
            classes: Cache::of(classes, project_class),
            pdbs: Cache::of(pdbs, project_pdb),
            statefulsets: Cache::of(statefulsets, project_sts),
        })
    }

    /// Every StatefulSet in the cache, decoded whole (tests and benchmarks; the background audit
    /// decodes one namespace's at a time).
    pub fn statefulsets(&self) -> Result<Vec<Arc<StatefulSet>>, String> {
        self.statefulsets
            .all()?
            .iter()
            .map(|c| c.decode().map(Arc::new))
            .collect()
    }

    /// The namespaces that have a StatefulSet, in name order.
    pub fn statefulset_namespaces(&self) -> Result<Vec<String>, String> {
        self.statefulsets.namespaces()
    }

    /// The names of the StatefulSets of `namespace`, in name order.
    pub fn statefulset_names(&self, namespace: &str) -> Result<Vec<String>, String> {
        self.statefulsets.names_in(namespace)
    }

    /// What delete protection reads of the StatefulSet `namespace/name` (name, uid, annotations:
    /// what a result names), without decoding it.
    pub fn statefulset_held(&self, namespace: &str, name: &str) -> Option<StatefulSet> {
        match self.statefulsets.get(namespace, name) {
            Lookup::Found(c) => Some(c.held()),
            _ => None,
        }
    }

    /// Objects held per cache: (Services, StorageClasses, PDBs, StatefulSets).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        (
            self.services.len(),
            self.classes.len(),
            self.pdbs.len(),
            self.statefulsets.len(),
        )
    }
}

impl Lookups for WatchLookups {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Arc<Service>> {
        match self.services.get(namespace, name) {
            Lookup::Found(s) => Lookup::Found(Arc::new(s.service())),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown(e) => Lookup::Unknown(e),
        }
    }
    fn storage_class(&self, name: Option<&str>) -> Lookup<Arc<StorageClass>> {
        match name {
            Some(n) => self.classes.get("", n),
            None => match self.classes.in_ns("") {
                Lookup::Found(all) => found(all.into_iter().find(|c| is_default_class(c))),
                Lookup::Missing => Lookup::Missing,
                Lookup::Unknown(e) => Lookup::Unknown(e),
            },
        }
    }
    /// The PDBs of `namespace` only: one map look-up, not a scan of the cluster's.
    fn pdbs(&self, namespace: &str) -> Lookup<Vec<Arc<PodDisruptionBudget>>> {
        match self.pdbs.in_ns(namespace) {
            Lookup::Found(v) => Lookup::Found(v.iter().map(|p| Arc::new(p.pdb())).collect()),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown(e) => Lookup::Unknown(e),
        }
    }
    /// The whole StatefulSet, decoded.
    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<Arc<StatefulSet>> {
        match self.statefulsets.get(namespace, name) {
            Lookup::Found(c) => match c.decode() {
                Ok(s) => Lookup::Found(Arc::new(s)),
                Err(e) => Lookup::Unknown(e),
            },
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown(e) => Lookup::Unknown(e),
        }
    }
    /// The verdict kept since the watch delivered it: nothing decoded.
    fn statefulset_past_bound(&self, namespace: &str, name: &str) -> Option<PastBound> {
        match self.statefulsets.get(namespace, name) {
            Lookup::Found(c) => c.past_bound().cloned(),
            _ => None,
        }
    }
    /// What delete protection reads of the namespace's StatefulSets ([`CachedStatefulSet`]).
    fn statefulsets_in(&self, namespace: &str) -> Lookup<Vec<Arc<StatefulSet>>> {
        match self.statefulsets.in_ns(namespace) {
            Lookup::Found(v) => Lookup::Found(v.iter().map(|c| Arc::new(c.held())).collect()),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown(e) => Lookup::Unknown(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_objects_answers_like_the_watch_caches() -> Result<(), Box<dyn std::error::Error>> {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "a", "managedFields": [{"manager": "x"}]},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"port": 1}]},
        }))?;
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db", "namespace": "a"},
            "spec": {"selector": {}, "template": {}, "serviceName": "db"},
        }))?;
        let w = WatchLookups::from_objects(vec![svc], vec![], vec![], vec![sts]);
        assert!(w.synced());
        let Lookup::Found(s) = w.service("a", "db") else {
            return Err("the Service is found".into());
        };
        assert!(
            s.metadata.managed_fields.is_none(),
            "stripped as the watch strips"
        );
        assert!(s.spec.as_ref().is_some_and(|sp| sp.ports.is_none()));
        assert!(matches!(w.service("b", "db"), Lookup::Missing));
        assert!(matches!(w.storage_class(None), Lookup::Missing));
        assert_eq!(w.statefulsets()?.len(), 1);
        assert!(matches!(w.statefulsets_in("a"), Lookup::Found(v) if v.len() == 1));
        assert!(matches!(w.statefulsets_in("b"), Lookup::Found(v) if v.is_empty()));
        Ok(())
    }

    #[test]
    fn a_statefulset_is_judged_against_the_bounds_once_when_it_arrives()
    -> Result<(), Box<dyn std::error::Error>> {
        let with = |name: &str, containers: usize| -> Result<StatefulSet, serde_json::Error> {
            let cs: Vec<_> = (0..containers)
                .map(|i| serde_json::json!({"name": format!("c{i}"), "image": "x"}))
                .collect();
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "a"},
                "spec": {"selector": {}, "serviceName": name,
                         "template": {"spec": {"containers": cs}}},
            }))
        };
        let w = WatchLookups::from_objects(
            vec![],
            vec![],
            vec![],
            vec![with("big", 300)?, with("small", 3)?],
        );
        let past = w
            .statefulset_past_bound("a", "big")
            .ok_or("past the bound")?;
        assert!(past.what.contains("300 containers"), "{past}");
        assert_eq!(w.statefulset_past_bound("a", "small"), None);
        assert_eq!(w.statefulset_past_bound("a", "none"), None);
        // The same verdict as the check on the whole object.
        let Lookup::Found(big) = w.statefulset("a", "big") else {
            return Err("found".into());
        };
        assert_eq!(crate::bounds::check_statefulset(&big).err(), Some(past));
        Ok(())
    }
}
