//! What the rules look up in the cluster, and where the answers come from: kube watch caches
//! (reflectors, cluster-wide, keeping only the fields the rules read) for the server — nothing
//! calls the API on the request path — the input files for `check`, nothing for `--no-cluster`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
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
use kube::Resource;
use kube::api::Api;
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

/// One watch cache: the projected objects indexed by namespace, then name (cluster-scoped kinds
/// under ""), and whether it has synced once. Reviews read one namespace's entry; a write holds
/// the lock for one insert or removal.
struct Cache<K, V = K> {
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

    fn start(api: Api<K>, project: fn(K) -> V) -> Arc<Self> {
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
    fn of(objects: Vec<K>, project: fn(K) -> V) -> Arc<Self> {
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

    fn ready(&self) -> Result<(), String> {
        if self.synced.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(format!("{} watch cache not synced", K::kind(&())))
        }
    }

    fn get(&self, ns: &str, name: &str) -> Lookup<Arc<V>> {
        match self.ready() {
            Ok(()) => found(self.read().get(ns).and_then(|n| n.get(name)).cloned()),
            Err(e) => Lookup::Unknown(e),
        }
    }

    /// The objects of one namespace, in name order.
    fn in_ns(&self, ns: &str) -> Lookup<Vec<Arc<V>>> {
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
    fn namespaces(&self) -> Result<Vec<String>, String> {
        self.ready()?;
        let mut out: Vec<String> = self.read().keys().cloned().collect();
        out.sort_unstable();
        Ok(out)
    }

    /// The names of one namespace's objects, in name order.
    fn names_in(&self, ns: &str) -> Result<Vec<String>, String> {
        self.ready()?;
        Ok(self
            .read()
            .get(ns)
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default())
    }

    fn all(&self) -> Result<Vec<Arc<V>>, String> {
        self.ready()?;
        Ok(self
            .read()
            .values()
            .flat_map(|n| n.values().cloned())
            .collect())
    }

    fn len(&self) -> usize {
        self.read().values().map(BTreeMap::len).sum()
    }
}

/// What every cache keeps of an object's metadata: name, namespace, uid, annotations (without
/// `kubectl.kubernetes.io/last-applied-configuration`, a copy of the whole object) and
/// `deletionTimestamp`; labels only where asked. Dropped: managedFields, ownerReferences,
/// finalizers, resourceVersion, generation, timestamps: nothing reads them.
fn project_meta(m: ObjectMeta, labels: bool, annotations: bool) -> ObjectMeta {
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

fn project_service(s: Service) -> CachedService {
    CachedService {
        name: s.metadata.name,
        namespace: s.metadata.namespace,
        spec: s.spec.map(|sp| (sp.cluster_ip, labels(sp.selector))),
    }
}

impl CachedService {
    fn service(&self) -> Service {
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

fn project_pdb(p: PodDisruptionBudget) -> CachedPdb {
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
    fn pdb(&self) -> PodDisruptionBudget {
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
fn project_class(c: StorageClass) -> StorageClass {
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
///   and Scale reviews. A decoded StatefulSet takes three to four times the bytes of its JSON.
pub struct CachedStatefulSet {
    held: Held,
    json: Box<[u8]>,
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
    fn of(s: &StatefulSet) -> Held {
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
    fn statefulset(&self) -> StatefulSet {
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
    pub fn decode(&self) -> Result<StatefulSet, String> {
        serde_json::from_slice(&self.json)
            .map_err(|e| format!("cached StatefulSet not decoded: {e}"))
    }

    /// What delete protection reads of it, as a StatefulSet with only those fields set.
    pub fn held(&self) -> StatefulSet {
        self.held.statefulset()
    }
}

fn project_sts(s: StatefulSet) -> CachedStatefulSet {
    let whole = StatefulSet {
        metadata: project_meta(s.metadata, true, true),
        spec: s.spec,
        status: None,
    };
    CachedStatefulSet {
        held: Held::of(&whole),
        // Serialising a typed object does not fail.
        json: serde_json::to_vec(&whole)
            .unwrap_or_default()
            .into_boxed_slice(),
    }
}

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
    /// What delete protection reads of the namespace's StatefulSets ([`CachedStatefulSet`]).
    fn statefulsets_in(&self, namespace: &str) -> Lookup<Vec<Arc<StatefulSet>>> {
        match self.statefulsets.in_ns(namespace) {
            Lookup::Found(v) => Lookup::Found(v.iter().map(|c| Arc::new(c.held())).collect()),
            Lookup::Missing => Lookup::Missing,
            Lookup::Unknown(e) => Lookup::Unknown(e),
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
