//! Look-ups from kube watch caches, driven by real list + watch responses served over
//! HTTP on 127.0.0.1 by an in-process stand-in for the Kubernetes API server (it answers the
//! list and the streaming watch of services, storageclasses, poddisruptionbudgets and
//! statefulsets the way the API server does). Also: not yet synced, unreachable, and Scale
//! requests judged from the cache.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use stsguard::admission::{Endpoint, answer};
use stsguard::policy::Policy;
use stsguard::validate::{Lookup, Lookups};
use stsguard::watch::WatchLookups;
use tokio::sync::{Notify, broadcast};

/// What the stand-in serves for one resource path.
#[derive(Clone)]
struct Resource {
    list_kind: &'static str,
    api_version: &'static str,
    items: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Every event sent so far: a watch that connects after an event was sent still gets it
    /// (the real API server replays from the resourceVersion the watch asks for).
    history: Arc<Mutex<Vec<String>>>,
    events: broadcast::Sender<String>,
}

#[derive(Clone)]
struct FakeApi {
    resources: Arc<HashMap<&'static str, Resource>>,
    /// Lists wait for this before answering (to hold the caches unsynced).
    gate: Arc<Notify>,
    gated: Arc<std::sync::atomic::AtomicBool>,
}

const PATHS: [(&str, &str, &str); 4] = [
    ("/api/v1/services", "ServiceList", "v1"),
    (
        "/apis/storage.k8s.io/v1/storageclasses",
        "StorageClassList",
        "storage.k8s.io/v1",
    ),
    (
        "/apis/policy/v1/poddisruptionbudgets",
        "PodDisruptionBudgetList",
        "policy/v1",
    ),
    ("/apis/apps/v1/statefulsets", "StatefulSetList", "apps/v1"),
];

impl FakeApi {
    fn new(gated: bool) -> FakeApi {
        let resources = PATHS
            .iter()
            .map(|(p, k, v)| {
                (
                    *p,
                    Resource {
                        list_kind: k,
                        api_version: v,
                        items: Default::default(),
                        history: Default::default(),
                        events: broadcast::channel(64).0,
                    },
                )
            })
            .collect();
        FakeApi {
            resources: Arc::new(resources),
            gate: Arc::new(Notify::new()),
            gated: Arc::new(gated.into()),
        }
    }

    fn add(&self, path: &str, obj: serde_json::Value) {
        self.resources[path].items.lock().unwrap().push(obj);
    }

    /// Sends a watch event, as the API server does when an object changes.
    fn event(&self, path: &str, kind: &str, obj: serde_json::Value) {
        let line = serde_json::json!({"type": kind, "object": obj}).to_string() + "\n";
        let res = &self.resources[path];
        let mut history = res.history.lock().unwrap();
        history.push(line.clone());
        let _ = res.events.send(line);
    }

    fn open_gate(&self) {
        self.gated.store(false, std::sync::atomic::Ordering::SeqCst);
        self.gate.notify_waiters();
    }

    async fn serve(self) -> String {
        let app = axum::Router::new().fallback(handler).with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }
}

async fn handler(
    State(api): State<FakeApi>,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let Some(res) = api.resources.get(uri.path()).cloned() else {
        return (axum::http::StatusCode::NOT_FOUND, "not found").into_response();
    };
    if q.get("watch").map(String::as_str) == Some("true") {
        // Subscribe and copy the history under one lock, so no event is lost or sent twice.
        let (rx, past) = {
            let history = res.history.lock().unwrap();
            (res.events.subscribe(), history.clone())
        };
        let past = futures::stream::iter(past.into_iter().map(Ok::<_, std::io::Error>));
        let live = futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(line) => Some((Ok::<_, std::io::Error>(line), rx)),
                Err(_) => None,
            }
        });
        let stream = futures::StreamExt::chain(past, live);
        return (
            [("content-type", "application/json")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    while api.gated.load(std::sync::atomic::Ordering::SeqCst) {
        let n = api.gate.notified();
        if !api.gated.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        n.await;
    }
    let items = res.items.lock().unwrap().clone();
    axum::Json(serde_json::json!({
        "kind": res.list_kind, "apiVersion": res.api_version,
        "metadata": {"resourceVersion": "100"}, "items": items,
    }))
    .into_response()
}

fn client(url: &str) -> kube::Client {
    stsguard::install_crypto_provider();
    let cfg = kube::Config::new(url.parse().unwrap());
    kube::Client::try_from(cfg).unwrap()
}

fn sts(name: &str, replicas: i32, quorum: bool, shared_claim: bool) -> serde_json::Value {
    let mut v = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "db", "resourceVersion": "7", "annotations": {}},
        "spec": {
            "replicas": replicas, "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
    });
    if quorum {
        v["metadata"]["annotations"]["stsguard.io/quorum"] = "true".into();
    }
    if shared_claim {
        v["spec"]["template"]["spec"]["volumes"] =
            serde_json::json!([{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}]);
    }
    v
}

async fn wait_synced(l: &WatchLookups) {
    common::eventually("the caches to sync", 10, || {
        std::future::ready(if l.synced() {
            Ok(())
        } else {
            Err("not synced".to_string())
        })
    })
    .await
}

/// The captured `kubectl scale` review, retargeted.
fn scale_review(name: &str, from: i32, to: i32) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission/statefulset-scale-subresource-UPDATE.validating.json");
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("this test reads {}: {e}", p.display()));
    let mut r: serde_json::Value = serde_json::from_str(&text).unwrap();
    r["request"]["name"] = name.into();
    r["request"]["namespace"] = "db".into();
    r["request"]["object"]["metadata"]["name"] = name.into();
    r["request"]["object"]["spec"]["replicas"] = to.into();
    r["request"]["oldObject"]["spec"]["replicas"] = from.into();
    serde_json::to_vec(&r).unwrap()
}

fn judge(l: &dyn Lookups, body: &[u8]) -> serde_json::Value {
    let a = answer(Endpoint::Validate, body, &Policy::default(), l).unwrap();
    serde_json::from_slice(&a.body).unwrap()
}

#[tokio::test]
async fn list_and_watch_feed_the_caches() {
    let api = FakeApi::new(false);
    api.add("/api/v1/services", serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "db", "resourceVersion": "5", "managedFields": [{"manager": "kubectl"}]}, "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]}}));
    api.add("/apis/storage.k8s.io/v1/storageclasses", serde_json::json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local", "resourceVersion": "5"}, "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate"}));
    api.add("/apis/apps/v1/statefulsets", sts("zk", 3, true, false));
    api.add("/apis/apps/v1/statefulsets", sts("big", 5, true, false));
    api.add("/apis/apps/v1/statefulsets", sts("shared", 1, false, true));
    let url = api.clone().serve().await;
    let l = WatchLookups::start(client(&url));
    wait_synced(&l).await;

    // Listed objects, stripped to what the rules read.
    match l.service("db", "web") {
        Lookup::Found(s) => {
            assert_eq!(s.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
            assert!(s.metadata.managed_fields.is_none(), "managedFields kept");
            assert!(s.spec.as_ref().unwrap().ports.is_none(), "ports kept");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(l.service("db", "nope"), Lookup::Missing));
    assert!(matches!(l.storage_class(Some("local")), Lookup::Found(_)));
    assert!(matches!(l.pdbs("db"), Lookup::Found(v) if v.is_empty()));

    // Scale requests judged from the cache: 3 -> 4 and 5 -> 2 of quorum sets, 1 -> 3 with a shared claim.
    let r = judge(&*l, &scale_review("zk", 3, 4));
    assert_eq!(r["response"]["allowed"], false);
    assert!(
        r["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("[quorum-odd]"),
        "{r}"
    );
    let r = judge(&*l, &scale_review("big", 5, 2));
    assert_eq!(r["response"]["allowed"], false);
    let msg = r["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("[quorum-scale-down]") && msg.contains("majority (3)"),
        "{msg}"
    );
    let r = judge(&*l, &scale_review("shared", 1, 3));
    assert_eq!(r["response"]["allowed"], false);
    assert!(
        r["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("[shared-claim]"),
        "{r}"
    );
    // and an allowed one
    assert_eq!(
        judge(&*l, &scale_review("zk", 3, 5))["response"]["allowed"],
        true
    );

    // Watch events: a PDB and a StatefulSet appear after the sync; a Service is deleted.
    api.event("/apis/policy/v1/poddisruptionbudgets", "ADDED", serde_json::json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "web", "namespace": "db", "resourceVersion": "101"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "web"}}}}));
    api.event(
        "/apis/apps/v1/statefulsets",
        "ADDED",
        sts("late", 3, true, false),
    );
    api.event("/api/v1/services", "DELETED", serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "db", "resourceVersion": "102"}, "spec": {"clusterIP": "None"}}));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pdb = matches!(l.pdbs("db"), Lookup::Found(v) if v.len() == 1);
        let late = matches!(l.statefulset("db", "late"), Lookup::Found(_));
        let gone = matches!(l.service("db", "web"), Lookup::Missing);
        if pdb && late && gone {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watch events not applied: pdb {pdb} late {late} gone {gone}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        judge(&*l, &scale_review("late", 3, 4))["response"]["allowed"],
        false
    );
}

#[tokio::test]
async fn not_yet_synced_then_synced() {
    let api = FakeApi::new(true);
    api.add("/apis/apps/v1/statefulsets", sts("zk", 3, true, false));
    let url = api.clone().serve().await;
    let l = WatchLookups::start(client(&url));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!l.synced());
    assert!(matches!(l.service("db", "x"), Lookup::Unknown(m) if m.contains("not synced")));
    // A scale that would be denied is allowed with an "unknown" warning while unsynced.
    let r = judge(&*l, &scale_review("zk", 3, 4));
    assert_eq!(r["response"]["allowed"], true, "{r}");
    let w = r["response"]["warnings"].as_array().unwrap();
    assert!(
        w.iter().all(|w| w.as_str().unwrap().contains("not synced")),
        "{w:?}"
    );
    // /readyz follows the caches.
    let readiness = stsguard::server::Readiness {
        tls_bound: true.into(),
        caches: Some(Box::new({
            let l = l.clone();
            move || l.synced()
        })),
        ..Default::default()
    };
    assert_eq!(readiness.ready(), Err("watch caches not synced"));
    api.open_gate();
    wait_synced(&l).await;
    assert_eq!(readiness.ready(), Ok(()));
    assert_eq!(
        judge(&*l, &scale_review("zk", 3, 4))["response"]["allowed"],
        false
    );
}

#[tokio::test]
async fn unreachable_cluster_never_denies() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let l = WatchLookups::start(client(&format!("http://127.0.0.1:{port}")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!l.synced());
    let r = judge(&*l, &scale_review("zk", 3, 4));
    assert_eq!(r["response"]["allowed"], true);
    let create = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/admission/statefulset-CREATE.mutating.json"),
    )
    .unwrap();
    let r = judge(&*l, &create);
    assert_eq!(r["response"]["allowed"], true);
    let w: Vec<String> = r["response"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect();
    assert!(
        w.iter().any(
            |w| w.starts_with("StatefulSet default/web: [governing-service]")
                && w.contains("not synced")
        ),
        "{w:?}"
    );
}

/// A captured DELETE review (`namespace-DELETE` or `persistentvolumeclaim-DELETE`) retargeted to
/// namespace `db` and object `name`.
fn delete_review(fixture: &str, name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(fixture);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("this test reads {}: {e}", p.display()));
    let mut r: serde_json::Value = serde_json::from_str(&text).unwrap();
    r["request"]["name"] = name.into();
    r["request"]["namespace"] = "db".into();
    r["request"]["oldObject"]["metadata"]["name"] = name.into();
    if r["request"]["kind"]["kind"] == "Namespace" {
        r["request"]["namespace"] = name.into();
        r["request"]["oldObject"]["metadata"]["labels"]["kubernetes.io/metadata.name"] =
            name.into();
    }
    serde_json::to_vec(&r).unwrap()
}

/// Delete protection reads the StatefulSet watch cache: while it has not synced, a namespace or
/// claim DELETE is answered per `onError` and says so; a StatefulSet protected after the sync
/// holds its namespace and its claims at the next review, and lets them go once unprotected.
#[tokio::test]
async fn namespace_and_claim_deletes_follow_the_statefulset_cache() {
    let api = FakeApi::new(true);
    let url = api.clone().serve().await;
    let l = WatchLookups::start(client(&url));
    let namespace = delete_review("namespace-DELETE.validating.json", "db");
    let claim = |name: &str| delete_review("persistentvolumeclaim-DELETE.validating.json", name);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!l.synced());
    let deny = Policy {
        on_error: stsguard::policy::OnError::Deny,
        ..Default::default()
    };
    for (object, body) in [
        ("Namespace db", namespace.clone()),
        ("PersistentVolumeClaim db/data-kept-0", claim("data-kept-0")),
    ] {
        let r = judge(&*l, &body);
        assert_eq!(r["response"]["allowed"], true, "{r}");
        let w = r["response"]["warnings"][0].as_str().unwrap();
        let expected = format!(
            "{object}: stsguard could not evaluate this request: [delete-protection] not checked"
        );
        assert!(w.starts_with(&expected) && w.contains("not synced"), "{w}");
        let a = answer(Endpoint::Validate, &body, &deny, &*l).unwrap();
        let r: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(r["response"]["allowed"], false, "onError: deny: {r}");
    }
    api.open_gate();
    wait_synced(&l).await;
    assert_eq!(judge(&*l, &namespace)["response"]["allowed"], true);

    let mut kept = sts("kept", 2, false, false);
    kept["metadata"]["annotations"]["stsguard.io/protect"] = "true".into();
    kept["spec"]["volumeClaimTemplates"] = serde_json::json!([{"metadata": {"name": "data"}}]);
    api.event("/apis/apps/v1/statefulsets", "ADDED", kept.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = judge(&*l, &namespace);
        if r["response"]["allowed"] == false {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the protected StatefulSet never held: {r}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let m = r["response"]["status"]["message"].as_str().unwrap();
    assert!(
        m.contains("namespace db holds protected StatefulSet kept;"),
        "{m}"
    );
    assert_eq!(
        judge(&*l, &claim("data-kept-1"))["response"]["allowed"],
        false
    );
    assert_eq!(
        judge(&*l, &claim("data-kept-2"))["response"]["allowed"],
        true
    );

    kept["metadata"]["annotations"]["stsguard.io/protect"] = "false".into();
    kept["metadata"]["resourceVersion"] = "8".into();
    api.event("/apis/apps/v1/statefulsets", "MODIFIED", kept);
    let deadline = Instant::now() + Duration::from_secs(10);
    while judge(&*l, &namespace)["response"]["allowed"] == false {
        assert!(
            Instant::now() < deadline,
            "unprotected, the namespace stayed held"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        judge(&*l, &claim("data-kept-1"))["response"]["allowed"],
        true
    );
}
