//! The audit Lease across a rolling restart: the replica holding it releases it when it stops, so
//! the other takes over at its next look instead of waiting the Lease's duration out. Driven by an
//! in-process stand-in for the API server on 127.0.0.1 that keeps one Lease and refuses a write
//! carrying a stale resourceVersion with 409, as the API server does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use stsguard::audit::lease::{self, Config, Leadership};

#[derive(Clone, Default)]
struct Leases {
    lease: Arc<Mutex<Option<serde_json::Value>>>,
    version: Arc<Mutex<u64>>,
    /// Every holder written, in order.
    holders: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn handler(
    State(s): State<Leases>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> axum::response::Response {
    assert!(
        uri.path()
            .starts_with("/apis/coordination.k8s.io/v1/namespaces/sys/leases"),
        "{}",
        uri.path()
    );
    let mut lease = s.lease.lock().unwrap();
    let mut version = s.version.lock().unwrap();
    match method {
        Method::GET => match &*lease {
            Some(l) => axum::Json(l.clone()).into_response(),
            None => (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"})),
            )
                .into_response(),
        },
        Method::POST | Method::PUT => {
            let mut new: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let conflict = match (&*lease, method == Method::POST) {
                (Some(_), true) => true,
                (Some(old), false) => {
                    old["metadata"]["resourceVersion"] != new["metadata"]["resourceVersion"]
                }
                (None, true) => false,
                (None, false) => true,
            };
            if conflict {
                return (
                    StatusCode::CONFLICT,
                    axum::Json(serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "conflict"})),
                )
                    .into_response();
            }
            *version += 1;
            new["metadata"]["resourceVersion"] = version.to_string().into();
            s.holders
                .lock()
                .unwrap()
                .push(new["spec"]["holderIdentity"].clone());
            *lease = Some(new.clone());
            axum::Json(new).into_response()
        }
        _ => (StatusCode::METHOD_NOT_ALLOWED, "").into_response(),
    }
}

async fn until(what: &str, secs: u64, f: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.elapsed()
}

#[tokio::test]
async fn the_holder_releases_the_lease_when_it_stops_and_the_other_takes_over_at_once() {
    let state = Leases::default();
    let app = axum::Router::new()
        .fallback(handler)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    stsguard::install_crypto_provider();
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{addr}").parse().unwrap()))
            .unwrap();
    // A Lease held for a minute without renewal: waiting it out would take that long.
    let cfg = |id: &str| Config {
        namespace: "sys".into(),
        identity: id.into(),
        duration: Duration::from_secs(60),
    };
    let (stop_a, rx_a) = tokio::sync::watch::channel(false);
    let (_stop_b, rx_b) = tokio::sync::watch::channel(false);
    let (a, b) = (Leadership::default(), Leadership::default());
    let task_a = tokio::spawn(lease::run(client.clone(), cfg("a"), a.clone(), rx_a));
    until("a to hold the Lease", 10, || a.is_leader()).await;
    tokio::spawn(lease::run(client.clone(), cfg("b"), b.clone(), rx_b));
    b.first_round(Duration::from_secs(10)).await;
    assert!(!b.is_leader(), "one writer at a time");

    // a stops (SIGTERM in a rolling restart): it releases the Lease and its task ends.
    stop_a.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task_a)
        .await
        .expect("the election ends when stopped")
        .unwrap();
    assert!(!a.is_leader());
    let released = state.holders.lock().unwrap().last().cloned();
    assert!(
        released.as_ref().is_some_and(|h| h.is_null()),
        "released: no holder ({released:?})"
    );
    // b takes over at its next look, long before the minute is out.
    let took = until("b to take the Lease over", 30, || b.is_leader()).await;
    assert!(
        took < Duration::from_secs(30),
        "b waited {took:?}: the Lease was not released"
    );
    let holder = state.lease.lock().unwrap().clone().unwrap();
    assert_eq!(holder["spec"]["holderIdentity"], "b");
    assert_eq!(holder["spec"]["leaseTransitions"], 1);
}
