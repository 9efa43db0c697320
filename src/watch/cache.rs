//! One watch cache: a kube reflector over one kind, cluster-wide, keeping a projection of each
//! object indexed by namespace and name.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};

use crate::validate::lookups::{Lookup, found};

/// One watch cache: the projected objects indexed by namespace, then name (cluster-scoped kinds
/// under ""), and whether it has synced once. Reviews read one namespace's entry; a write holds
/// the lock for one insert or removal.
pub(super) struct Cache<K, V = K> {
    by_ns: RwLock<Index<V>>,
    synced: AtomicBool,
    project: fn(K) -> V,
    kind: std::marker::PhantomData<fn(K)>,
}

type Index<V> = HashMap<String, BTreeMap<String, Arc<V>>>;

/// What a relist has seen so far (between `Init` and `InitDone`): objects not seen again are
/// removed at its end. Objects are replaced in place as they arrive, so a relist holds one copy
/// of the cache, not two.
#[derive(Default)]
struct Relist(Option<HashSet<(String, String)>>);

fn key<K: Resource>(o: &K) -> (String, String) {
    let m = o.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

impl<K, V> Cache<K, V>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
    V: Send + Sync + 'static,
{
    fn new(project: fn(K) -> V) -> Arc<Self> {
        Arc::new(Cache {
            by_ns: RwLock::new(HashMap::new()),
            synced: AtomicBool::new(false),
            project,
            kind: std::marker::PhantomData,
        })
    }

    pub(super) fn start(api: Api<K>, project: fn(K) -> V) -> Arc<Self> {
        let cache = Self::new(project);
        let c = cache.clone();
        tokio::spawn(async move {
            let stream = watcher(api, watcher::Config::default()).default_backoff();
            let mut stream = std::pin::pin!(stream);
            let mut relist = Relist::default();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(ev) => c.apply(ev, &mut relist),
                    Err(e) => {
                        tracing::warn!(kind = %K::kind(&()), error = %e, "watch failed; retrying")
                    }
                }
            }
        });
        cache
    }

    /// A cache holding `objects`, synced, with no watch behind it.
    pub(super) fn of(objects: Vec<K>, project: fn(K) -> V) -> Arc<Self> {
        let cache = Self::new(project);
        let mut relist = Relist::default();
        cache.apply(watcher::Event::Init, &mut relist);
        for o in objects {
            cache.apply(watcher::Event::InitApply(o), &mut relist);
        }
        cache.apply(watcher::Event::InitDone, &mut relist);
        cache
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index<V>> {
        // A panic while holding the lock cannot leave a map half-updated (one insert or remove).
        self.by_ns.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index<V>> {
        self.by_ns.read().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, o: K) -> (String, String) {
        let (ns, name) = key(&o);
        let v = Arc::new((self.project)(o));
        self.write()
            .entry(ns.clone())
            .or_default()
            .insert(name.clone(), v);
        (ns, name)
    }

    fn apply(&self, ev: watcher::Event<K>, relist: &mut Relist) {
        match ev {
            watcher::Event::Apply(o) => {
                self.insert(o);
            }
            watcher::Event::Delete(o) => {
                let (ns, name) = key(&o);
                let mut map = self.write();
                if let Some(names) = map.get_mut(&ns) {
                    names.remove(&name);
                    if names.is_empty() {
                        map.remove(&ns);
                    }
                }
            }
            watcher::Event::Init => relist.0 = Some(HashSet::new()),
            watcher::Event::InitApply(o) => {
                let k = self.insert(o);
                if let Some(seen) = relist.0.as_mut() {
                    seen.insert(k);
                }
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relist.0.take() {
                    let mut map = self.write();
                    map.retain(|ns, names| {
                        names.retain(|name, _| seen.contains(&(ns.clone(), name.clone())));
                        !names.is_empty()
                    });
                }
                if !self.synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(kind = %K::kind(&()), "watch cache synced");
                }
            }
        }
    }

    pub(super) fn ready(&self) -> Result<(), String> {
        if self.synced.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(format!("{} watch cache not synced", K::kind(&())))
        }
    }

    pub(super) fn get(&self, ns: &str, name: &str) -> Lookup<Arc<V>> {
        match self.ready() {
            Ok(()) => found(self.read().get(ns).and_then(|n| n.get(name)).cloned()),
            Err(e) => Lookup::Unknown(e),
        }
    }

    /// The objects of one namespace, in name order.
    pub(super) fn in_ns(&self, ns: &str) -> Lookup<Vec<Arc<V>>> {
        match self.ready() {
            Ok(()) => Lookup::Found(
                self.read()
                    .get(ns)
                    .map(|n| n.values().cloned().collect())
                    .unwrap_or_default(),
            ),
            Err(e) => Lookup::Unknown(e),
        }
    }

    /// The namespaces with at least one object, in name order.
    pub(super) fn namespaces(&self) -> Result<Vec<String>, String> {
        self.ready()?;
        let mut out: Vec<String> = self.read().keys().cloned().collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The names of one namespace's objects, in name order.
    pub(super) fn names_in(&self, ns: &str) -> Result<Vec<String>, String> {
        self.ready()?;
        Ok(self
            .read()
            .get(ns)
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default())
    }

    pub(super) fn all(&self) -> Result<Vec<Arc<V>>, String> {
        self.ready()?;
        Ok(self
            .read()
            .values()
            .flat_map(|n| n.values().cloned())
            .collect())
    }

    pub(super) fn len(&self) -> usize {
        self.read().values().map(BTreeMap::len).sum()
    }
}
