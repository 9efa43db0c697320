//! What the rules look up in the cluster, and where the answers come from: kube watch caches
//! (reflectors, cluster-wide, keeping only the fields the rules read) for the server — nothing
//! calls the API on the request path — the input files for `check`, nothing for `--no-cluster`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

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

const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
const DEFAULT_CLASS_BETA: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// One watch cache and whether it has synced once.
struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    synced: Arc<AtomicBool>,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    fn start(api: Api<K>, strip: fn(&mut K)) -> Self {
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(strip),
        );
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                if let Err(e) = ev {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying");
                }
            }
        });
        {
            let (store, synced) = (store.clone(), synced.clone());
            tokio::spawn(async move {
                if store.wait_until_ready().await.is_ok() {
                    synced.store(true, Ordering::Release);
                    tracing::info!(kind = %K::kind(&()), "watch cache synced");
                }
            });
        }
        Cache { store, synced }
    }

    /// A cache holding `objects`, synced, with no watch behind it.
    fn of(objects: Vec<K>, strip: fn(&mut K)) -> Self {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Init);
        for mut o in objects {
            strip(&mut o);
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        Cache {
            store,
            synced: Arc::new(AtomicBool::new(true)),
        }
    }

    fn ready(&self) -> Result<&Store<K>, String> {
        if self.synced.load(Ordering::Acquire) {
            Ok(&self.store)
        } else {
            Err(format!("{} watch cache not synced", K::kind(&())))
        }
    }
}

fn strip_meta<K: Resource>(o: &mut K) {
    let m = o.meta_mut();
    m.managed_fields = None;
    if let Some(a) = m.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

fn strip_service(s: &mut Service) {
    strip_meta(s);
    s.metadata.annotations = None;
    s.status = None;
    s.spec = s.spec.take().map(|sp| ServiceSpec {
        cluster_ip: sp.cluster_ip,
        selector: sp.selector,
        ..Default::default()
    });
}

fn strip_class(c: &mut StorageClass) {
    strip_meta(c);
    let keep: BTreeMap<String, String> = c
        .metadata
        .annotations
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k == DEFAULT_CLASS || k == DEFAULT_CLASS_BETA)
        .collect();
    c.metadata.annotations = Some(keep);
    c.parameters = None;
    c.mount_options = None;
    c.allowed_topologies = None;
}

fn strip_pdb(p: &mut PodDisruptionBudget) {
    strip_meta(p);
    p.metadata.annotations = None;
    p.status = None;
    p.spec = p.spec.take().map(|s| PodDisruptionBudgetSpec {
        selector: s.selector,
        ..Default::default()
    });
}

/// Namespace and claim DELETEs read, of each cached StatefulSet: its name, annotations
/// (`stsguard.io/protect`, the rule overrides), `deletionTimestamp`, `spec.replicas`,
/// `spec.ordinals`, the names of its `volumeClaimTemplates` and its pod volumes' `claimName`s.
fn strip_sts(s: &mut StatefulSet) {
    strip_meta(s);
    s.status = None;
}

/// The server's look-ups: four cluster-wide watch caches.
pub struct WatchLookups {
    services: Cache<Service>,
    classes: Cache<StorageClass>,
    pdbs: Cache<PodDisruptionBudget>,
    statefulsets: Cache<StatefulSet>,
}

impl WatchLookups {
    /// Starts the watches; call inside a Tokio runtime.
    pub fn start(client: kube::Client) -> Arc<Self> {
        Arc::new(WatchLookups {
            services: Cache::start(Api::all(client.clone()), strip_service),
            classes: Cache::start(Api::all(client.clone()), strip_class),
            pdbs: Cache::start(Api::all(client.clone()), strip_pdb),
            statefulsets: Cache::start(Api::all(client), strip_sts),
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
            services: Cache::of(services, strip_service),
            classes: Cache::of(classes, strip_class),
            pdbs: Cache::of(pdbs, strip_pdb),
            statefulsets: Cache::of(statefulsets, strip_sts),
        })
    }

    /// Every StatefulSet in the cache (for the background audit).
    pub fn statefulsets(&self) -> Result<Vec<Arc<StatefulSet>>, String> {
        self.statefulsets.ready().map(|s| s.state())
    }
}

fn found<T>(o: Option<T>) -> Lookup<T> {
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

impl Lookups for WatchLookups {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Arc<Service>> {
        match self.services.ready() {
            Ok(s) => found(s.get(&ObjectRef::new(name).within(namespace))),
            Err(e) => Lookup::Unknown(e),
        }
    }
    fn storage_class(&self, name: Option<&str>) -> Lookup<Arc<StorageClass>> {
        match (self.classes.ready(), name) {
            (Err(e), _) => Lookup::Unknown(e),
            (Ok(s), Some(n)) => found(s.get(&ObjectRef::new(n))),
            (Ok(s), None) => found(s.state().into_iter().find(|c| is_default_class(c))),
        }
    }
    fn pdbs(&self, namespace: &str) -> Lookup<Vec<Arc<PodDisruptionBudget>>> {
        match self.pdbs.ready() {
            Ok(s) => Lookup::Found(
                s.state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace)),
            ),
            Err(e) => Lookup::Unknown(e),
        }
    }
    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<Arc<StatefulSet>> {
        match self.statefulsets.ready() {
            Ok(s) => found(s.get(&ObjectRef::new(name).within(namespace))),
            Err(e) => Lookup::Unknown(e),
        }
    }
    fn statefulsets_in(&self, namespace: &str) -> Lookup<Vec<Arc<StatefulSet>>> {
        match self.statefulsets.ready() {
            Ok(s) => Lookup::Found(
                s.state_filter(|o| o.metadata.namespace.as_deref() == Some(namespace)),
            ),
            Err(e) => Lookup::Unknown(e),
        }
    }
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
}
