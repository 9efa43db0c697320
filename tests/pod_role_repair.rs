//! Pods created while stsguard was not reachable get their role label once it runs: the repair
//! watches managed pods without a role label and patches each. Driven by an in-process stand-in
//! for the API server on 127.0.0.1 that answers the pods list and watch with the label selector
//! applied (as the API server does: only matching pods, and a pod that stops matching leaves the
//! watch) and applies merge patches, checking the resourceVersion they carry. A real API server
//! is the judge in the end-to-end outage scenario (tests/e2e/outage.rs).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use stsguard::policy::Policy;
use stsguard::repair::RepairLabels;
use tokio::sync::broadcast;

use common::eventually;

/// `Some` as ready, `None` as not yet, for [`eventually`].
fn ready<T>(v: Option<T>) -> std::future::Ready<Result<T, String>> {
    std::future::ready(v.ok_or_else(|| "not yet".to_string()))
}

#[derive(Clone, Default)]
struct Pods {
    items: Arc<Mutex<Vec<serde_json::Value>>>,
    patches: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    events: Arc<Mutex<Option<broadcast::Sender<String>>>>,
    version: Arc<std::sync::atomic::AtomicU64>,
}

fn pod(ns: &str, name: &str, labels: serde_json::Value, rv: u64) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "resourceVersion": rv.to_string(),
            "labels": labels,
            "annotations": {"stsguard.io/roles": "primary=0,replica=*"},
        },
        "spec": {"containers": [{"name": "db", "image": "db"}]},
    })
}

/// The label selectors the repair uses: `k=v` and `!k`, comma-separated.
fn matches(selector: &str, labels: &serde_json::Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|t| {
        if let Some(k) = t.strip_prefix('!') {
            labels.get(k).is_none()
        } else if let Some((k, v)) = t.split_once('=') {
            labels.get(k).and_then(|x| x.as_str()) == Some(v)
        } else {
            labels.get(t).is_some()
        }
    })
}

impl Pods {
    fn sender(&self) -> broadcast::Sender<String> {
        self.events
            .lock()
            .unwrap()
            .get_or_insert_with(|| broadcast::channel(64).0)
            .clone()
    }

    /// A pod created (by the StatefulSet controller, say): a watch event for every watcher.
    fn create(&self, p: serde_json::Value) {
        self.items.lock().unwrap().push(p.clone());
        let _ = self
            .sender()
            .send(serde_json::json!({"type": "ADDED", "object": p}).to_string() + "\n");
    }
}

async fn handler(
    State(pods): State<Pods>,
    method: Method,
    uri: Uri,
    Query(q): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> axum::response::Response {
    let selector = q.get("labelSelector").cloned().unwrap_or_default();
    if method == Method::PATCH {
        // /api/v1/namespaces/{ns}/pods/{name}
        let parts: Vec<&str> = uri.path().split('/').collect();
        let (ns, name) = (parts[4], parts[6]);
        let patch: serde_json::Value = serde_json::from_slice(&body).unwrap();
        pods.patches
            .lock()
            .unwrap()
            .push((format!("{ns}/{name}"), patch.clone()));
        let mut items = pods.items.lock().unwrap();
        let Some(p) = items
            .iter_mut()
            .find(|p| p["metadata"]["namespace"] == ns && p["metadata"]["name"] == name)
        else {
            return (StatusCode::NOT_FOUND, "not found").into_response();
        };
        if patch["metadata"]["resourceVersion"] != p["metadata"]["resourceVersion"] {
            return (StatusCode::CONFLICT, "the object has been modified").into_response();
        }
        let rv = pods
            .version
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        for (k, v) in patch["metadata"]["labels"].as_object().unwrap() {
            p["metadata"]["labels"][k] = v.clone();
        }
        p["metadata"]["resourceVersion"] = rv.to_string().into();
        let out = p.clone();
        drop(items);
        // The pod no longer matches the repair's selector: the watch says DELETED.
        let _ = pods
            .sender()
            .send(serde_json::json!({"type": "DELETED", "object": out}).to_string() + "\n");
        return axum::Json(out).into_response();
    }
    assert_eq!(uri.path(), "/api/v1/pods", "only pods, cluster-wide");
    if q.get("watch").map(String::as_str) == Some("true") {
        let rx = pods.sender().subscribe();
        let stream = futures::stream::unfold((rx, selector), |(mut rx, sel)| async move {
            loop {
                let line = rx.recv().await.ok()?;
                let v: serde_json::Value = serde_json::from_str(&line).ok()?;
                // DELETED of a pod that stopped matching is sent whatever its labels.
                if v["type"] == "DELETED" || matches(&sel, &v["object"]["metadata"]["labels"]) {
                    return Some((Ok::<_, std::io::Error>(line), (rx, sel)));
                }
            }
        });
        return (
            [("content-type", "application/json")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    let items: Vec<serde_json::Value> = pods
        .items
        .lock()
        .unwrap()
        .iter()
        .filter(|p| matches(&selector, &p["metadata"]["labels"]))
        .cloned()
        .collect();
    axum::Json(serde_json::json!({
        "kind": "PodList", "apiVersion": "v1",
        "metadata": {"resourceVersion": "100"}, "items": items,
    }))
    .into_response()
}

#[tokio::test]
async fn pods_created_without_stsguard_get_their_role_label_once_it_runs() {
    let pods = Pods::default();
    pods.version.store(200, std::sync::atomic::Ordering::SeqCst);
    let managed =
        serde_json::json!({"stsguard.io/managed": "true", "apps.kubernetes.io/pod-index": "0"});
    // Created during the outage: no role label.
    pods.items.lock().unwrap().extend([
        pod("db", "db-0", managed.clone(), 11),
        // Labelled by the webhook when it ran: not the repair's.
        pod(
            "db",
            "db-1",
            serde_json::json!({"stsguard.io/managed": "true", "stsguard.io/role": "replica"}),
            12,
        ),
        // An excluded namespace: stsguard never labels there.
        pod("kube-public", "x-0", managed.clone(), 13),
        // Not role-managed at all.
        pod("web", "web-0", serde_json::json!({"app": "web"}), 14),
    ]);
    let app = axum::Router::new()
        .fallback(handler)
        .with_state(pods.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    stsguard::install_crypto_provider();
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap()))
            .unwrap();
    let counts = Family::<RepairLabels, Counter>::default();
    stsguard::repair::spawn(
        client,
        Arc::new(arc_swap::ArcSwap::from_pointee(Policy::default())),
        counts.clone(),
    );

    // The pod left without its label during the outage is labelled with its ordinal's role,
    // carrying the resourceVersion it was read at.
    let first = eventually("the patch of db/db-0", 20, || {
        ready(pods.patches.lock().unwrap().first().cloned())
    })
    .await;
    assert_eq!(first.0, "db/db-0");
    assert_eq!(
        first.1,
        serde_json::json!({"metadata": {"resourceVersion": "11", "labels": {"stsguard.io/role": "primary"}}})
    );
    // A pod created later without the webhook (its review timed out, say): labelled too.
    pods.create(pod(
        "db",
        "db-2",
        serde_json::json!({"stsguard.io/managed": "true"}),
        15,
    ));
    eventually("the patch of db/db-2", 20, || {
        ready(
            pods.patches
                .lock()
                .unwrap()
                .iter()
                .any(|(p, b)| {
                    p == "db/db-2" && b["metadata"]["labels"]["stsguard.io/role"] == "replica"
                })
                .then_some(()),
        )
    })
    .await;
    eventually("two repairs counted", 20, || {
        ready(
            (counts
                .get_or_create(&RepairLabels { result: "labelled" })
                .get()
                == 2)
                .then_some(()),
        )
    })
    .await;
    // Nothing else was touched: the excluded namespace, the labelled pod, the unmanaged one.
    let patched: Vec<String> = pods
        .patches
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(patched, ["db/db-0", "db/db-2"]);
    let items = pods.items.lock().unwrap();
    let role = |name: &str| {
        items
            .iter()
            .find(|p| p["metadata"]["name"] == name)
            .unwrap()["metadata"]["labels"]["stsguard.io/role"]
            .clone()
    };
    assert_eq!(role("db-0"), "primary");
    assert_eq!(role("db-1"), "replica");
    assert_eq!(role("db-2"), "replica");
    assert!(role("x-0").is_null());
}
