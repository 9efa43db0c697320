//! The bounds on one review, through the HTTP router (`oneshot`, no sockets): a review past a
//! bound is answered per `onError` with the uid echoed, a body over the limit is refused from its
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

#[tokio::test]
async fn too_many_containers_is_answered_per_on_error() {
    let body = review_with(|o| {
        let c = o["spec"]["template"]["spec"]["containers"][0].clone();
        let many: Vec<serde_json::Value> = (0..300)
            .map(|i| {
                let mut c = c.clone();
                c["name"] = format!("c{i}").into();
                c
            })
            .collect();
        o["spec"]["template"]["spec"]["containers"] = many.into();
    });
    let app = router(
        state(Policy::default(), Limits::default()),
        Duration::from_secs(5),
    );
    let (status, v) = post(&app, "/mutate", body.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true);
    assert!(v["response"]["patch"].is_null(), "no patch past the bound");
    assert!(warnings(&v).contains("300 containers"), "{}", warnings(&v));
    assert!(!v["response"]["uid"].as_str().unwrap().is_empty());
    // onError: deny turns the same review into a denial naming the bound.
    let deny = Policy {
        on_error: OnError::Deny,
        ..Default::default()
    };
    let app = router(state(deny, Limits::default()), Duration::from_secs(5));
    let (_, v) = post(&app, "/validate", body).await;
    assert_eq!(v["response"]["allowed"], false);
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("over stsguard's bound of 256")
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

#[tokio::test]
async fn past_the_byte_budget_a_request_waits_then_gets_503() {
    let limits = Limits {
        inflight_bytes: 8 * 1024 * 1024,
        workers: 2,
        wait: Duration::from_millis(300),
    };
    let app = router(state(Policy::default(), limits), Duration::from_secs(10));
    // A request whose 7 MiB body stalls after 5 MiB: it holds those 5 MiB while it waits.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
    let slow = axum::http::Request::post("/mutate")
        .header("content-length", 7 * 1024 * 1024)
        .body(Body::from_stream(rx))
        .unwrap();
    let holder = tokio::spawn(app.clone().oneshot(slow));
    futures::SinkExt::send(&mut tx, Ok(vec![b' '; 5 * 1024 * 1024]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
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
