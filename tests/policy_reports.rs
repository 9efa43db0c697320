//! The PolicyReport writer against an in-process stand-in for the API server on 127.0.0.1 that
//! keeps PolicyReports (server-side apply, get, delete, metadata list) and refuses a request body
//! over 3 MiB with 413, as the API server does. A namespace's results too large for one report
//! go out as several; a report whose results did not change is not sent again, also by a new
//! writer (a restart), and its results keep their timestamps.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use stsguard::audit::reports::HASH_ANNOTATION;
use stsguard::audit::writer::Writer;
use stsguard::audit::{Audit, ObjectResult};
use stsguard::policy::{Mode, RuleId};
use stsguard::validate::{Finding, Outcome};

/// The API server's limit on a request body (k8s.io/apiserver, `MaxRequestBodyBytes`).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// One PATCH: namespace, name, body bytes, status.
type Patched = (String, String, usize, u16);

#[derive(Clone, Default)]
struct Reports {
    /// (namespace, name) -> stored report.
    stored: Arc<Mutex<BTreeMap<(String, String), Value>>>,
    /// Every PATCH: (namespace, name, body bytes, status).
    patches: Arc<Mutex<Vec<Patched>>>,
    deletes: Arc<Mutex<Vec<(String, String)>>>,
}

impl Reports {
    fn patches(&self) -> Vec<Patched> {
        self.patches.lock().unwrap().clone()
    }
    fn names(&self, ns: &str) -> Vec<String> {
        self.stored
            .lock()
            .unwrap()
            .keys()
            .filter(|(n, _)| n == ns)
            .map(|(_, name)| name.clone())
            .collect()
    }
    fn get(&self, ns: &str, name: &str) -> Value {
        self.stored
            .lock()
            .unwrap()
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

fn status(code: StatusCode, reason: &str) -> axum::response::Response {
    (
        code,
        axum::Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "code": code.as_u16(), "message": reason}),
        ),
    )
        .into_response()
}

async fn handler(
    State(s): State<Reports>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> axum::response::Response {
    let path = uri.path();
    if path == "/apis/wgpolicyk8s.io/v1alpha2/policyreports" && method == Method::GET {
        let items: Vec<Value> = s
            .stored
            .lock()
            .unwrap()
            .values()
            .map(|r| {
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                       "metadata": r["metadata"]})
            })
            .collect();
        return axum::Json(
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                                 "metadata": {"resourceVersion": "1"}, "items": items}),
        )
        .into_response();
    }
    let Some(rest) = path.strip_prefix("/apis/wgpolicyk8s.io/v1alpha2/namespaces/") else {
        return status(StatusCode::NOT_FOUND, "NotFound");
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [ns, "policyreports", name] = parts[..] else {
        return status(StatusCode::NOT_FOUND, "NotFound");
    };
    let key = (ns.to_string(), name.to_string());
    match method {
        Method::PATCH => {
            if body.len() > MAX_BODY {
                s.patches
                    .lock()
                    .unwrap()
                    .push((key.0, key.1, body.len(), 413));
                return status(StatusCode::PAYLOAD_TOO_LARGE, "RequestEntityTooLarge");
            }
            let mut new: Value = serde_json::from_slice(&body).unwrap();
            new["metadata"]["resourceVersion"] = "2".into();
            s.patches
                .lock()
                .unwrap()
                .push((key.0.clone(), key.1.clone(), body.len(), 200));
            s.stored.lock().unwrap().insert(key, new.clone());
            axum::Json(new).into_response()
        }
        Method::GET => match s.stored.lock().unwrap().get(&key) {
            Some(r) => axum::Json(r.clone()).into_response(),
            None => status(StatusCode::NOT_FOUND, "NotFound"),
        },
        Method::DELETE => match s.stored.lock().unwrap().remove(&key) {
            Some(_) => {
                s.deletes.lock().unwrap().push(key);
                axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}))
                    .into_response()
            }
            None => status(StatusCode::NOT_FOUND, "NotFound"),
        },
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed"),
    }
}

async fn serve() -> (Reports, kube::Client) {
    let state = Reports::default();
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
    (state, client)
}

/// `n` StatefulSets in `ns` with six warned results each.
fn objects(ns: &str, n: usize) -> Vec<ObjectResult> {
    let rules = [
        RuleId::QuorumOdd,
        RuleId::GoverningService,
        RuleId::DisruptionBudget,
        RuleId::SharedClaim,
        RuleId::HostpathSpread,
        RuleId::ReadinessProbe,
    ];
    (0..n)
        .map(|i| ObjectResult {
            namespace: ns.into(),
            name: format!("kafka-{i:04}"),
            uid: Some(format!("00000000-0000-0000-0000-{i:012}")),
            passed: 5,
            results: rules
                .iter()
                .map(|&rule| Finding {
                    rule: rule.into(),
                    mode: Mode::Warn,
                    outcome: Outcome::Warn,
                    message: format!(
                        "no PodDisruptionBudget selects the pods of kafka-{i:04}: a drain may evict them all; add one"
                    ),
                })
                .collect(),
        })
        .collect()
}

fn audit(objects: Vec<ObjectResult>) -> Audit {
    Audit {
        objects,
        excluded: 0,
    }
}

fn results_of(r: &Value) -> Vec<Value> {
    r["results"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn three_thousand_statefulsets_in_one_namespace_are_reported_in_parts_under_the_limit() {
    let (api, client) = serve().await;
    let big = audit(objects("big", 3000));
    let mut w = Writer::new(client.clone());
    let done = w.write(&big).await.unwrap().unwrap();
    let patches = api.patches();
    assert!(
        patches.iter().all(|p| p.3 == 200),
        "no report refused: {patches:?}"
    );
    assert!(patches.iter().all(|p| p.2 < MAX_BODY));
    assert!(patches.len() > 3, "{patches:?}");
    assert_eq!(done.applied, patches.len());
    assert_eq!(done.failed, 0);
    let names = api.names("big");
    assert_eq!(names.len(), patches.len());
    assert!(names.contains(&"stsguard".to_string()) && names.contains(&"stsguard-2".to_string()));
    let total: usize = names
        .iter()
        .map(|n| results_of(&api.get("big", n)).len())
        .sum();
    assert_eq!(total, 18_000, "every result in one of the parts");

    // The same results again: nothing sent.
    let again = w.write(&big).await.unwrap().unwrap();
    assert_eq!((again.applied, again.unchanged), (0, 1));
    assert_eq!(api.patches().len(), patches.len());

    // Fewer results: fewer parts, the extra ones deleted.
    let small = audit(objects("big", 10));
    let shrunk = w.write(&small).await.unwrap().unwrap();
    assert_eq!(shrunk.applied, 1);
    assert_eq!(shrunk.deleted, patches.len() - 1);
    assert_eq!(api.names("big"), ["stsguard"]);
}

#[tokio::test]
async fn an_unchanged_report_is_not_sent_again_after_a_restart_and_keeps_its_timestamps() {
    let (api, client) = serve().await;
    let mut first = objects("db", 3);
    first.extend(objects("web", 2));
    let a = audit(first.clone());
    let mut w = Writer::new(client.clone());
    assert_eq!(w.write(&a).await.unwrap().unwrap().applied, 2);
    let db = api.get("db", "stsguard");
    let stamps: Vec<Value> = results_of(&db)
        .iter()
        .map(|r| r["timestamp"].clone())
        .collect();
    assert!(db["metadata"]["annotations"][HASH_ANNOTATION].is_string());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // A new writer (restart, or another replica leading): the hashes on the server match.
    let mut restarted = Writer::new(client.clone());
    let r = restarted.write(&a).await.unwrap().unwrap();
    assert_eq!((r.applied, r.unchanged, r.deleted), (0, 2, 0));
    assert_eq!(api.patches().len(), 2, "nothing sent");

    // db changes: one result fixed, another rule failing instead, and a message reworded. db
    // is written again; the results that stayed (the reworded one too) keep the timestamp of
    // when they were first seen (read back from the report on the server), the new one is new.
    // web is not sent.
    let mut changed = first.clone();
    changed[0].results[0].rule = RuleId::ClaimRetention.into();
    changed[0].results[0].message = "whenDeleted: Delete".into();
    changed[0].results[1].message = "reworded".into();
    let mut restarted = Writer::new(client.clone());
    let r = restarted.write(&audit(changed)).await.unwrap().unwrap();
    assert_eq!((r.applied, r.unchanged), (1, 1));
    let db2 = api.get("db", "stsguard");
    let results = results_of(&db2);
    assert_eq!(results.len(), stamps.len());
    let new: Vec<&Value> = results
        .iter()
        .filter(|r| !stamps.contains(&r["timestamp"]))
        .collect();
    assert_eq!(new.len(), 1, "only the new result is new: {new:?}");
    assert_eq!(new[0]["rule"], "claim-retention");
    assert!(results.iter().any(|r| r["message"] == "reworded"));

    // web's StatefulSets gone: its report is deleted.
    let r = restarted
        .write(&audit(
            first.into_iter().filter(|o| o.namespace == "db").collect(),
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.deleted, 1);
    assert!(api.names("web").is_empty());
}
