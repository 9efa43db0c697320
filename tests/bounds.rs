//! The bounds on one review, through the HTTP router (`oneshot`, no sockets): an object past a
//! bound (in the review or in the watch cache) is denied at /validate and left unpatched at
//! /mutate whatever `onError` says, with the uid echoed, a body over the limit is refused from its
//! Content-Length before it is read, the byte budget turns requests away instead of buffering
//! them, and the time budget answers for a review still being evaluated. The same attacks over
//! real TLS against the binary are in `tests/abuse.rs`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use common::*;
use http_body_util::BodyExt;
use stsguard::policy::{OnError, Policy};
use stsguard::server::{AppState, Gate, Limits, router};
use stsguard::validate::NoLookups;
use tower::ServiceExt;

fn state(policy: Policy, limits: Limits) -> AppState {
    let mut s = AppState::new(policy, Arc::new(NoLookups("test".into())));
    s.gate = Arc::new(Gate::new(limits));
    s
}

fn review_with(f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
    f(&mut r["request"]["object"]);
    serde_json::to_vec(&r).unwrap()
}

async fn post(app: &axum::Router, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn warnings(v: &serde_json::Value) -> String {
    v["response"]["warnings"].to_string()
}

fn padded_with_containers(n: usize) -> Vec<u8> {
    review_with(|o| {
        let c = o["spec"]["template"]["spec"]["containers"][0].clone();
        let many: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let mut c = c.clone();
                c["name"] = format!("c{i}").into();
                c
            })
            .collect();
        o["spec"]["template"]["spec"]["containers"] = many.into();
    })
}

/// A StatefulSet that `shared-claim` (enforced) denies: a claim template mounted through a
/// `volumes` entry that names it as a claim shared by every pod.
fn denied_by_a_rule(o: &mut serde_json::Value) {
    o["spec"]["template"]["spec"]["volumes"] = serde_json::json!([
        {"name": "shared", "persistentVolumeClaim": {"claimName": "one-for-all"}}
    ]);
}

fn message(v: &serde_json::Value) -> String {
    v["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_statefulset_padded_past_the_container_bound_is_denied_even_under_on_error_allow() {
    let body = padded_with_containers(300);
    let policy = Policy::default();
    assert_eq!(policy.on_error, OnError::Allow);
    let app = router(state(policy, Limits::default()), Duration::from_secs(5));
    let (status, v) = post(&app, "/validate", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert_eq!(v["response"]["status"]["code"], 403);
    assert!(!v["response"]["uid"].as_str().unwrap().is_empty());
    let m = message(&v);
    for part in [
        "[bounds]",
        "StatefulSet default/web",
        "300 containers",
        "over stsguard's bound of 256",
        "fix: ",
    ] {
        assert!(m.contains(part), "{part:?} not in {m}");
    }
    // /mutate lets it through unpatched, and says so.
    let (status, v) = post(&app, "/mutate", body).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"]["patch"].is_null(), "no patch past the bound");
    let w = warnings(&v);
    assert!(
        w.contains(
            "StatefulSet default/web: [bounds] not mutated: the pod template has 300 containers"
        ),
        "{w}"
    );
}

#[tokio::test]
async fn a_statefulset_padded_with_env_entries_past_the_object_bound_is_denied() {
    // 1,400 env entries with valueFrom (three JSON objects each): ~110 KB, past 4,096 objects.
    let body = review_with(|o| {
        denied_by_a_rule(o);
        o["spec"]["template"]["spec"]["containers"][0]["env"] = (0..1400)
            .map(|i| serde_json::json!({"name": format!("E{i:04}"), "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}))
            .collect::<Vec<_>>()
            .into();
    });
    assert!(body.len() > 100_000, "{}", body.len());
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    let (status, v) = post(&app, "/validate", body).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let m = message(&v);
    assert!(
        m.contains(
            "[bounds] StatefulSet default/web: the review holds more than 4096 JSON objects"
        ),
        "{m}"
    );
    // The same object unpadded is denied by its rule: padding changes the reason, not the answer.
    let plain = review_with(denied_by_a_rule);
    let (_, v) = post(&app, "/validate", plain).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(message(&v).contains("[shared-claim]"), "{}", message(&v));
}

#[tokio::test]
async fn a_padded_statefulset_in_an_excluded_namespace_is_allowed() {
    let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
    r["request"]["namespace"] = "kube-system".into();
    r["request"]["object"]["metadata"]["namespace"] = "kube-system".into();
    r["request"]["object"]["spec"]["template"]["spec"]["volumes"] =
        vec![serde_json::json!({}); 5_000].into();
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    let (status, v) = post(&app, "/validate", serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(v["response"]["warnings"].is_null(), "{v}");
}

/// A watch cache holding `sts` (a StatefulSet of namespace `default`, name `web`).
fn cache_with(sts: serde_json::Value) -> AppState {
    cache_with_policy(sts, Policy::default())
}

fn cache_with_policy(sts: serde_json::Value, policy: Policy) -> AppState {
    let sts: k8s_openapi::api::apps::v1::StatefulSet = serde_json::from_value(sts).unwrap();
    let lookups = stsguard::validate::lookups::StaticLookups {
        statefulsets: vec![Arc::new(sts)],
        authoritative: true,
        ..Default::default()
    };
    let mut s = AppState::new(policy, Arc::new(lookups));
    s.gate = Arc::new(Gate::new(Limits::default()));
    s
}

fn cached_statefulset(containers: usize) -> serde_json::Value {
    let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
    let o = &mut r["request"]["object"];
    o["metadata"]["namespace"] = "default".into();
    o["metadata"]["name"] = "web".into();
    let c = o["spec"]["template"]["spec"]["containers"][0].clone();
    o["spec"]["template"]["spec"]["containers"] = (0..containers)
        .map(|i| {
            let mut c = c.clone();
            c["name"] = format!("c{i}").into();
            c
        })
        .collect::<Vec<_>>()
        .into();
    o.clone()
}

#[tokio::test]
async fn a_scale_of_a_cached_statefulset_past_a_bound_is_denied() {
    let app = router(
        cache_with(cached_statefulset(15_000)),
        Duration::from_secs(5),
    );
    let scale = read_json(&local_fixture(
        "admission/statefulset-scale-subresource-UPDATE.validating.json",
    ));
    let (status, v) = post(&app, "/validate", serde_json::to_vec(&scale).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let m = message(&v);
    assert!(
        m.contains("[bounds] StatefulSet default/web: the pod template has 15000 containers, over stsguard's bound of 256"),
        "{m}"
    );
    // The same StatefulSet within the bound: judged by the rules, allowed.
    let app = router(cache_with(cached_statefulset(3)), Duration::from_secs(5));
    let (_, v) = post(&app, "/validate", serde_json::to_vec(&scale).unwrap()).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
}

#[tokio::test]
async fn a_namespace_delete_judging_a_protected_cached_statefulset_past_a_bound_is_denied() {
    let mut sts = cached_statefulset(300);
    sts["metadata"]["namespace"] = "cap".into();
    sts["metadata"]["annotations"] = serde_json::json!({"stsguard.io/protect": "true"});
    let app = router(cache_with(sts), Duration::from_secs(5));
    let del = read_json(&local_fixture("admission/namespace-DELETE.validating.json"));
    let (status, v) = post(&app, "/validate", serde_json::to_vec(&del).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], false, "{v}");
    let m = message(&v);
    assert!(
        m.contains("[bounds] Namespace cap: StatefulSet cap/web (in the watch cache): the pod template has 300 containers"),
        "{m}"
    );
}

/// Delete protection passes an unprotected StatefulSet over on its annotation alone: one past a
/// bound (created before stsguard) holds neither its namespace nor a claim.
#[tokio::test]
async fn an_unprotected_cached_statefulset_past_a_bound_holds_no_namespace_or_claim() {
    let mut sts = cached_statefulset(300);
    sts["metadata"]["namespace"] = "cap".into();
    let app = router(cache_with(sts), Duration::from_secs(5));
    for fixture in [
        "admission/namespace-DELETE.validating.json",
        "admission/persistentvolumeclaim-DELETE.validating.json",
    ] {
        let del = read_json(&local_fixture(fixture));
        let (status, v) = post(&app, "/validate", serde_json::to_vec(&del).unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(v["response"]["allowed"], true, "{fixture}: {v}");
    }
}

/// A protected cached StatefulSet past a bound, in namespace `cap`; `deleting`: its
/// `deletionTimestamp` is set.
fn protected_past_a_bound(deleting: bool, annotations: serde_json::Value) -> serde_json::Value {
    let mut sts = cached_statefulset(3);
    sts["metadata"]["namespace"] = "cap".into();
    sts["metadata"]["annotations"] = annotations;
    // Past the bound on list entries in what delete protection reads: the pod's volumes.
    sts["spec"]["template"]["spec"]["volumes"] = (0..5_000)
        .map(|i| serde_json::json!({"name": format!("v{i}"), "emptyDir": {}}))
        .collect::<Vec<_>>()
        .into();
    if deleting {
        sts["metadata"]["deletionTimestamp"] = "2026-12-06T05:00:00Z".into();
    }
    sts
}

/// The server's own watch caches holding `sts`, with `policy`.
fn watch_cache_with(sts: serde_json::Value, policy: Policy) -> AppState {
    let sts = serde_json::from_value(sts).unwrap();
    let lookups = stsguard::watch::WatchLookups::from_objects(vec![], vec![], vec![], vec![sts]);
    let mut s = AppState::new(policy, lookups);
    s.gate = Arc::new(Gate::new(Limits::default()));
    s
}

/// The bound holds a namespace or claim only where delete protection would enforce on the
/// StatefulSet: at `warn` (the policy's or the object's override), `off`, or, for a namespace,
/// when the StatefulSet is being deleted itself, its size holds nothing; a claim stays kept while
/// its StatefulSet is being deleted. Through the server's watch caches, which hold what delete
/// protection reads: the bound is on that (here its 5,000 volumes).
#[tokio::test]
async fn a_cached_statefulset_past_a_bound_holds_a_delete_only_where_delete_protection_enforces() {
    let ns_delete = read_json(&local_fixture("admission/namespace-DELETE.validating.json"));
    let claim_delete = read_json(&local_fixture(
        "admission/persistentvolumeclaim-DELETE.validating.json",
    ));
    let protect = serde_json::json!({"stsguard.io/protect": "true"});
    let at_warn = serde_json::json!({
        "stsguard.io/protect": "true",
        "stsguard.io/rule.delete-protection": "warn",
    });
    let cases = [
        (
            "enforced",
            Policy::default(),
            false,
            protect.clone(),
            &ns_delete,
            false,
        ),
        (
            "policy at warn",
            Policy::from_yaml("validation: {rules: {delete-protection: warn}}", "t").unwrap(),
            false,
            protect.clone(),
            &ns_delete,
            true,
        ),
        (
            "policy off",
            Policy::from_yaml("validation: {rules: {delete-protection: off}}", "t").unwrap(),
            false,
            protect.clone(),
            &ns_delete,
            true,
        ),
        (
            "object's override at warn",
            Policy::from_yaml("validation: {allowObjectOverrides: true}", "t").unwrap(),
            false,
            at_warn,
            &ns_delete,
            true,
        ),
        (
            "being deleted, its namespace",
            Policy::default(),
            true,
            protect.clone(),
            &ns_delete,
            true,
        ),
        (
            "being deleted, a claim",
            Policy::default(),
            true,
            protect.clone(),
            &claim_delete,
            false,
        ),
    ];
    for (case, policy, deleting, annotations, review, allowed) in cases {
        let state = watch_cache_with(protected_past_a_bound(deleting, annotations), policy);
        let app = router(state, Duration::from_secs(5));
        let (status, v) = post(&app, "/validate", serde_json::to_vec(review).unwrap()).await;
        assert_eq!(status, 200, "{case}");
        assert_eq!(v["response"]["allowed"], allowed, "{case}: {v}");
        let past = v.to_string().contains("[bounds]");
        assert_eq!(
            past, !allowed,
            "{case}: a bound is named only in a denial: {v}"
        );
    }
}

/// Look-ups whose StatefulSet `default/web` the cache already judged past a bound: decoding it
/// (`statefulset`) is counted.
struct JudgedPastABound {
    decoded: std::sync::atomic::AtomicUsize,
}

impl stsguard::validate::Lookups for JudgedPastABound {
    fn service(
        &self,
        _: &str,
        _: &str,
    ) -> stsguard::validate::Lookup<Arc<k8s_openapi::api::core::v1::Service>> {
        stsguard::validate::Lookup::Missing
    }
    fn storage_class(
        &self,
        _: Option<&str>,
    ) -> stsguard::validate::Lookup<Arc<k8s_openapi::api::storage::v1::StorageClass>> {
        stsguard::validate::Lookup::Missing
    }
    fn pdbs(
        &self,
        _: &str,
    ) -> stsguard::validate::Lookup<Vec<Arc<k8s_openapi::api::policy::v1::PodDisruptionBudget>>>
    {
        stsguard::validate::Lookup::Missing
    }
    fn statefulset(
        &self,
        _: &str,
        _: &str,
    ) -> stsguard::validate::Lookup<Arc<k8s_openapi::api::apps::v1::StatefulSet>> {
        self.decoded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stsguard::validate::Lookup::Missing
    }
    fn statefulsets_in(
        &self,
        _: &str,
    ) -> stsguard::validate::Lookup<Vec<Arc<k8s_openapi::api::apps::v1::StatefulSet>>> {
        stsguard::validate::Lookup::Missing
    }
    fn statefulset_past_bound(&self, _: &str, _: &str) -> Option<stsguard::bounds::PastBound> {
        Some(stsguard::bounds::PastBound {
            what: "the pod template has 15000 containers, over stsguard's bound of 256".into(),
            fix: "fix: make the object smaller",
        })
    }
}

#[tokio::test]
async fn a_scale_of_a_statefulset_the_cache_judged_past_a_bound_is_denied_without_decoding_it() {
    let lookups = Arc::new(JudgedPastABound {
        decoded: Default::default(),
    });
    let mut state = AppState::new(Policy::default(), lookups.clone());
    state.gate = Arc::new(Gate::new(Limits::default()));
    let app = router(state, Duration::from_secs(5));
    let scale = read_json(&local_fixture(
        "admission/statefulset-scale-subresource-UPDATE.validating.json",
    ));
    let (status, v) = post(&app, "/validate", serde_json::to_vec(&scale).unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(message(&v).contains("[bounds]"), "{v}");
    assert!(message(&v).contains("15000 containers"), "{v}");
    assert_eq!(
        lookups.decoded.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the StatefulSet was looked up whole"
    );
}

#[tokio::test]
async fn a_flood_of_tiny_objects_is_not_read_into_types() {
    // 200,000 `{}` volumes: 400 KB of JSON that would be ~640 MB of typed Volumes.
    let body = review_with(|o| {
        o["spec"]["template"]["spec"]["volumes"] = vec![serde_json::json!({}); 200_000].into();
    });
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    let t = Instant::now();
    let (status, v) = post(&app, "/mutate", body).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true);
    assert!(warnings(&v).contains("JSON objects"), "{}", warnings(&v));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_the_body_is_read() {
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    // A body that never arrives: any attempt to read it would hang the test.
    let never = Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>());
    let req = axum::http::Request::post("/mutate")
        .header("content-length", 8 * 1024 * 1024)
        .header("expect", "100-continue")
        .body(never)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), app.oneshot(req))
        .await
        .expect("answered without reading the body")
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
}

/// A /mutate request announcing a 7 MiB body that stalls after `mib` MiB (it holds them while
/// it waits), running; dropping the sender ends it.
async fn stalled_body(
    app: &axum::Router,
    mib: usize,
) -> (
    futures::channel::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<Result<axum::response::Response, std::convert::Infallible>>,
) {
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let slow = axum::http::Request::post("/mutate")
        .header("content-length", 7 * 1024 * 1024)
        .body(Body::from_stream(rx))
        .unwrap();
    let holder = tokio::spawn(app.clone().oneshot(slow));
    futures::SinkExt::send(&mut tx, Ok(vec![b' '; mib * 1024 * 1024]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    (tx, holder)
}

#[tokio::test]
async fn past_the_byte_budget_a_request_waits_then_gets_503() {
    let limits = Limits {
        inflight_bytes: 8 * 1024 * 1024,
        workers: 2,
        wait: Duration::from_millis(300),
    };
    let app = router(state(Policy::default(), limits), Duration::from_secs(10));
    // A request whose 7 MiB body stalls after 5 MiB: it holds those 5 MiB while it waits.
    let (tx, holder) = stalled_body(&app, 5).await;
    let t = Instant::now();
    let req = axum::http::Request::post("/mutate")
        .header("content-length", 7 * 1024 * 1024)
        .body(Body::from(vec![b' '; 7 * 1024 * 1024]))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(t.elapsed() >= Duration::from_millis(250), "it waited first");
    // Ordinary reviews draw on their own share: unaffected by the large body held.
    let review = serde_json::to_vec(&read_json(&local_fixture(
        "admission/statefulset-CREATE.mutating.json",
    )))
    .unwrap();
    let (status, v) = post(&app, "/mutate", review.clone()).await;
    assert_eq!(status, 200, "{v}");
    // Once the holder's body ends (here: cut short, a 400), the budget is back.
    drop(tx);
    let _ = holder.await;
    let req = axum::http::Request::post("/mutate")
        .header("content-length", 7 * 1024 * 1024)
        .body(Body::from(vec![b' '; 7 * 1024 * 1024]))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400, "read and answered: not JSON");
}

/// A body sent without a Content-Length (chunked) is read in the ordinary lane until it grows
/// past the ordinary size: a small review keeps its lane while the large one is full.
#[tokio::test]
async fn a_small_chunked_review_keeps_the_ordinary_lane_while_the_large_one_is_full() {
    let limits = Limits {
        inflight_bytes: 8 * 1024 * 1024,
        workers: 2,
        wait: Duration::from_millis(300),
    };
    let app = router(state(Policy::default(), limits), Duration::from_secs(10));
    // The large lane (6 MiB of the 8) held whole by a body stalled after 6 MiB.
    let (tx, holder) = stalled_body(&app, 6).await;
    let review = serde_json::to_vec(&read_json(&local_fixture(
        "admission/statefulset-CREATE.mutating.json",
    )))
    .unwrap();
    let (head, tail) = review.split_at(review.len() / 2);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(head.to_vec()), Ok(tail.to_vec())];
    let req = axum::http::Request::post("/mutate")
        .header("content-type", "application/json")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();
    assert!(
        req.headers().get("content-length").is_none(),
        "sent chunked"
    );
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(v["response"]["patch"].is_string(), "evaluated: {v}");
    drop(tx);
    let _ = holder.await;
}

#[tokio::test]
async fn requests_that_send_no_body_hold_no_budget() {
    let limits = Limits {
        inflight_bytes: 8 * 1024 * 1024,
        workers: 2,
        wait: Duration::from_millis(300),
    };
    let app = router(state(Policy::default(), limits), Duration::from_secs(10));
    // 64 ordinary-sized requests that announce a body and never send it.
    let mut senders = Vec::new();
    let mut stalled = Vec::new();
    for _ in 0..64 {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let req = axum::http::Request::post("/mutate")
            .header("content-length", 200 * 1024)
            .body(Body::from_stream(rx))
            .unwrap();
        senders.push(tx);
        stalled.push(tokio::spawn(app.clone().oneshot(req)));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let review = serde_json::to_vec(&read_json(&local_fixture(
        "admission/statefulset-CREATE.mutating.json",
    )))
    .unwrap();
    let t = Instant::now();
    let (status, v) = post(&app, "/mutate", review).await;
    assert_eq!(status, 200, "{v}");
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "waited {:?} behind bodies that never came",
        t.elapsed()
    );
    drop(senders);
    for s in stalled {
        let _ = s.await;
    }
}

#[tokio::test]
async fn past_the_time_budget_the_review_is_answered_per_on_error() {
    // One evaluation slot, held by a slow body's review? Simpler: a budget shorter than the
    // body takes to arrive, and one that runs out while waiting for the only worker.
    let limits = Limits {
        workers: 1,
        ..Default::default()
    };
    let app = router(state(Policy::default(), limits), Duration::from_millis(1));
    let body = review_with(|o| {
        // Enough work that 1 ms is not enough even on a fast machine: 250 containers with
        // 16 env vars each.
        let c = o["spec"]["template"]["spec"]["containers"][0].clone();
        let many: Vec<serde_json::Value> = (0..250)
            .map(|i| {
                let mut c = c.clone();
                c["name"] = format!("c{i}").into();
                c["env"] = (0..14)
                    .map(|j| serde_json::json!({"name": format!("V{j}"), "value": "$(POD_NAME)"}))
                    .collect::<Vec<_>>()
                    .into();
                c
            })
            .collect();
        o["spec"]["template"]["spec"]["containers"] = many.into();
    });
    let (status, v) = post(&app, "/mutate", body).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true);
    assert!(warnings(&v).contains("time budget"), "{}", warnings(&v));
    assert!(!v["response"]["uid"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn metric_labels_come_from_fixed_sets() {
    let s = state(Policy::default(), Limits::default());
    let metrics = s.metrics.clone();
    let app = router(s, Duration::from_secs(5));
    for kind in ["X\"} 1\nstsguard_fake_metric{evil=\"1", "Widget", "Gadget"] {
        let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
        r["request"]["kind"]["kind"] = kind.into();
        let (status, _) = post(&app, "/mutate", serde_json::to_vec(&r).unwrap()).await;
        assert_eq!(status, 200);
    }
    let text = metrics.encode();
    assert!(!text.contains("fake_metric"), "{text}");
    assert!(!text.contains("Widget"));
    let kinds: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.starts_with("stsguard_admission_requests_total{"))
        .filter_map(|l| l.split("kind=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(kinds, ["other"].into_iter().collect());
}

#[tokio::test]
async fn a_huge_envelope_kind_gives_a_short_400() {
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    let body = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"{}","request":{{"uid":"u"}}}}"#,
        "K".repeat(1024 * 1024)
    );
    let req = axum::http::Request::post("/mutate")
        .body(Body::from(body))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.len() <= 300, "{} bytes", bytes.len());
}

/// Measurement, not a test (`cargo test --release --test bounds -- --ignored --nocapture`): a
/// Scale review of a cached 15,000-container StatefulSet through the router (checked against the
/// bounds first), against the rules run on it directly as the router did before; and one
/// `excludeNamespaces` look-up in 240,000 names, as a hash set and as the linear scan it was.
#[tokio::test]
#[ignore]
async fn measure_cached_scale_and_exclude_lookups() {
    let state = cache_with(cached_statefulset(15_000));
    let lookups = state.lookups.clone();
    let app = router(state, Duration::from_secs(5));
    let scale = serde_json::to_vec(&read_json(&local_fixture(
        "admission/statefulset-scale-subresource-UPDATE.validating.json",
    )))
    .unwrap();
    let pct = |mut v: Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * p) as usize]
    };
    let mut now = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let (_, v) = post(&app, "/validate", scale.clone()).await;
        now.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(v["response"]["allowed"], false);
    }
    let policy = Policy::default();
    let mut rules = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        let review = stsguard::validate::Review {
            namespace: "default",
            subject: stsguard::validate::Subject::Scale {
                name: "web",
                replicas: 5,
                old_replicas: Some(3),
            },
        };
        let f = stsguard::validate::validate(&review, &policy, lookups.as_ref());
        rules.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(f);
    }
    println!(
        "scale of a cached 15,000-container StatefulSet: router (bounds first) p50 {:.3} ms p99 {:.3} ms; rules on it directly (the old path) p50 {:.2} ms p99 {:.2} ms",
        pct(now.clone(), 0.5),
        pct(now, 0.99),
        pct(rules.clone(), 0.5),
        pct(rules, 0.99)
    );
    let names: Vec<String> = (0..240_000).map(|i| format!("ns-{i}")).collect();
    let p = Policy {
        exclude_namespaces: names.clone().into(),
        ..Default::default()
    };
    let n = 2_000;
    let t = Instant::now();
    for i in 0..n {
        std::hint::black_box(p.is_excluded(Some(if i % 2 == 0 { "app" } else { "ns-239999" })));
    }
    let set = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for i in 0..n {
        let ns = if i % 2 == 0 { "app" } else { "ns-239999" };
        std::hint::black_box(names.iter().any(|e| e == ns));
    }
    let scan = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "excludeNamespaces of 240,000: set look-up {set:.3} us, linear scan (the old look-up) {scan:.1} us"
    );
}

/// A StatefulSet stored past a bound (before stsguard, or while its webhook was off), as the
/// review's `oldObject` of `op`; `object` is the fixture's own three-container set.
fn with_old_past_a_bound(op: &str) -> Vec<u8> {
    let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
    r["request"]["operation"] = op.into();
    r["request"]["oldObject"] = cached_statefulset(300);
    if op == "DELETE" {
        r["request"]["object"] = serde_json::Value::Null;
    }
    serde_json::to_vec(&r).unwrap()
}

#[tokio::test]
async fn a_statefulset_stored_past_a_bound_can_be_made_smaller_and_deleted() {
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    for path in ["/validate", "/mutate"] {
        let (status, v) = post(&app, path, with_old_past_a_bound("UPDATE")).await;
        assert_eq!(status, 200);
        assert_eq!(v["response"]["allowed"], true, "{path}: {v}");
    }
    let (_, v) = post(&app, "/validate", with_old_past_a_bound("DELETE")).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
    // The write that keeps it past the bound is still refused: the bound is on the new object.
    let mut r: serde_json::Value =
        serde_json::from_slice(&with_old_past_a_bound("UPDATE")).unwrap();
    r["request"]["object"] = cached_statefulset(300);
    let (_, v) = post(&app, "/validate", serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(message(&v).contains("[bounds]"), "{v}");
}

/// `n` entries of a container's `env`, each a JSON object.
fn env_entries(n: usize) -> serde_json::Value {
    (0..n)
        .map(|i| serde_json::json!({"name": format!("V{i}"), "value": "x"}))
        .collect::<Vec<_>>()
        .into()
}

/// As [`with_old_past_a_bound`], with a stored object past the bound on the whole review's JSON
/// objects (5,000 `env` entries): the body itself is past a bound, and only its `oldObject` is.
fn with_old_past_the_review_bound(op: &str, annotations: serde_json::Value) -> Vec<u8> {
    let mut r: serde_json::Value = serde_json::from_slice(&with_old_past_a_bound(op)).unwrap();
    let old = &mut r["request"]["oldObject"];
    old["spec"]["template"]["spec"]["containers"] = serde_json::json!([{
        "name": "db",
        "image": "mysql:8",
        "env": env_entries(5_000),
    }]);
    old["metadata"]["annotations"] = annotations;
    let body = serde_json::to_vec(&r).unwrap();
    assert!(
        stsguard::bounds::check_body(&body).is_err(),
        "the body is past a bound"
    );
    body
}

/// A body past a bound only by its stored object is the way out for that object: made smaller or
/// deleted, it is judged on its request's object, the stored one read for its metadata and
/// replicas alone (so delete protection still keeps it, and a quorum's scale-down is still
/// judged), and the answer says so; /mutate leaves it unpatched (whether the write changes the
/// stored template is not known: no rollout of stsguard's own). A request whose own object is
/// past a bound is still refused.
#[tokio::test]
async fn a_statefulset_stored_past_the_review_bound_can_be_made_smaller_and_deleted_unless_protected()
 {
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    let none = serde_json::Value::Null;
    let update = || with_old_past_the_review_bound("UPDATE", serde_json::Value::Null);
    let (_, v) = post(&app, "/validate", update()).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(
        warnings(&v).contains("[bounds] the review is past stsguard's bounds with the stored object (request.oldObject): only its metadata and spec.replicas were read"),
        "{v}"
    );
    let (_, v) = post(&app, "/mutate", update()).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(v["response"]["patch"].is_null(), "not mutated: {v}");
    assert!(
        warnings(&v).contains(
            "[bounds] not mutated: the review is past stsguard's bounds with the stored object"
        ),
        "{v}"
    );
    // A quorum of 5 stored past the bound, updated to 1: the scale-down is judged on the stored
    // replicas.
    let quorum = serde_json::json!({"stsguard.io/quorum": "true"});
    let mut r: serde_json::Value =
        serde_json::from_slice(&with_old_past_the_review_bound("UPDATE", quorum.clone())).unwrap();
    r["request"]["oldObject"]["spec"]["replicas"] = 5.into();
    r["request"]["object"]["spec"]["replicas"] = 1.into();
    r["request"]["object"]["metadata"]["annotations"] = quorum;
    let (_, v) = post(&app, "/validate", serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(message(&v).contains("[quorum-scale-down]"), "{v}");
    let (_, v) = post(
        &app,
        "/validate",
        with_old_past_the_review_bound("DELETE", none),
    )
    .await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
    let protect = serde_json::json!({"stsguard.io/protect": "true"});
    let (_, v) = post(
        &app,
        "/validate",
        with_old_past_the_review_bound("DELETE", protect),
    )
    .await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(message(&v).contains("[delete-protection]"), "{v}");
    // Its object past a bound too: refused, as any object past a bound.
    let mut r: serde_json::Value = serde_json::from_slice(&with_old_past_the_review_bound(
        "UPDATE",
        serde_json::Value::Null,
    ))
    .unwrap();
    r["request"]["object"] = r["request"]["oldObject"].clone();
    let (_, v) = post(&app, "/validate", serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(message(&v).contains("[bounds]"), "{v}");
    // A CREATE carries no stored object: its excess is its own.
    r["request"]["operation"] = "CREATE".into();
    r["request"]["object"] = serde_json::json!({"metadata": {"name": "web"}});
    let (_, v) = post(&app, "/validate", serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
}

/// A StatefulSet over half the bound on JSON objects (2,500 env entries) is admitted, and its
/// UPDATE carries it twice, past the bound: the UPDATE that lifts its protection (an annotation
/// alone) is still judged, and then its DELETE.
#[tokio::test]
async fn a_statefulset_over_half_the_review_bound_can_have_its_protection_lifted_and_be_deleted() {
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
    let o = &mut r["request"]["object"];
    o["spec"]["template"]["spec"]["containers"][0]["env"] = env_entries(2_500);
    o["metadata"]["annotations"] = serde_json::json!({"stsguard.io/protect": "true"});
    let (_, v) = post(&app, "/validate", serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(v["response"]["allowed"], true, "admitted: {v}");
    // kubectl annotate ... stsguard.io/protect=false --overwrite
    r["request"]["operation"] = "UPDATE".into();
    r["request"]["oldObject"] = r["request"]["object"].clone();
    r["request"]["object"]["metadata"]["annotations"]["stsguard.io/protect"] = "false".into();
    let body = serde_json::to_vec(&r).unwrap();
    assert!(
        stsguard::bounds::check_body(&body).is_err(),
        "the UPDATE is past the bound"
    );
    let (_, v) = post(&app, "/validate", body).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
    assert!(
        warnings(&v).contains("only its metadata and spec.replicas were read"),
        "{v}"
    );
    r["request"]["operation"] = "DELETE".into();
    r["request"]["oldObject"] = r["request"]["object"].clone();
    r["request"]["object"] = serde_json::Value::Null;
    let (_, v) = post(&app, "/validate", serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(v["response"]["allowed"], true, "{v}");
}

#[tokio::test]
async fn a_protected_statefulset_stored_past_a_bound_is_still_kept_from_delete() {
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    let mut r: serde_json::Value =
        serde_json::from_slice(&with_old_past_a_bound("DELETE")).unwrap();
    r["request"]["oldObject"]["metadata"]["annotations"] =
        serde_json::json!({"stsguard.io/protect": "true"});
    let (_, v) = post(&app, "/validate", serde_json::to_vec(&r).unwrap()).await;
    assert_eq!(v["response"]["allowed"], false, "{v}");
    assert!(message(&v).contains("[delete-protection]"), "{v}");
}
