//! Fuzzing, bounded so CI runs it on every push (cargo-fuzz needs a nightly toolchain,
//! which this project's machines cannot fetch; proptest drives the same entry points).
//! - arbitrary bytes as a request body, to both endpoints and through the HTTP router;
//! - structure-aware AdmissionReviews: random kinds, resources, operations, uids, nulls, huge
//!   strings, deep nesting, and real corpus objects with random parts replaced.
//!
//! Every case: no panic, no hang, and either a well-formed review echoing the uid (whose patch,
//! if any, applies to the object) or a 4xx with a one-line reason. Case counts are printed.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use serde_json::{Value, json};
use stsguard::admission::{Endpoint, answer};
use stsguard::policy::Policy;
use stsguard::validate::NoLookups;

static SLOWEST_US: AtomicU64 = AtomicU64::new(0);

/// Runs both endpoints on a body and checks the invariants.
fn check(body: &[u8]) -> Result<(), TestCaseError> {
    // The uid as the request carries it, the object skipped (a Value parse would stop at depth 128).
    #[derive(serde::Deserialize)]
    struct Probe {
        request: Option<ProbeRequest>,
    }
    #[derive(serde::Deserialize)]
    struct ProbeRequest {
        uid: Option<Value>,
    }
    let uid = serde_json::from_slice::<Probe>(body)
        .ok()
        .and_then(|p| p.request)
        .and_then(|r| r.uid);
    for ep in [Endpoint::Mutate, Endpoint::Validate] {
        let t = Instant::now();
        let r = answer(ep, body, &Policy::default(), &NoLookups("fuzz".into()));
        SLOWEST_US.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        match r {
            Err(bad) => {
                let m = bad.to_string();
                prop_assert!(
                    !m.is_empty() && !m.contains('\n'),
                    "reason must be one line: {m:?}"
                );
            }
            Ok(a) => {
                let v: Value = serde_json::from_slice(&a.body)
                    .map_err(|e| TestCaseError::fail(format!("answer is not JSON: {e}")))?;
                prop_assert_eq!(&v["apiVersion"], "admission.k8s.io/v1");
                prop_assert_eq!(&v["kind"], "AdmissionReview");
                prop_assert!(v["response"]["allowed"].is_boolean());
                prop_assert_eq!(Some(&v["response"]["uid"]), uid.as_ref(), "uid not echoed");
                for w in v["response"]["warnings"].as_array().into_iter().flatten() {
                    prop_assert!(w.as_str().unwrap().len() <= 256);
                }
                if let Some(p) = v["response"].get("patch") {
                    prop_assert_eq!(ep, Endpoint::Mutate);
                    prop_assert_eq!(&v["response"]["patchType"], "JSONPatch");
                    use base64::Engine as _;
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(p.as_str().unwrap())
                        .unwrap();
                    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
                    let req: Value = serde_json::from_slice(body).map_err(|e| {
                        TestCaseError::fail(format!("patched a body that is not JSON: {e}"))
                    })?;
                    let mut doc = req["request"]["object"].clone();
                    prop_assert!(
                        json_patch::patch(&mut doc, &patch).is_ok(),
                        "patch does not apply to the object"
                    );
                }
            }
        }
    }
    Ok(())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-zA-Z0-9_./=-]{0,12}".prop_map(Value::String),
        ".{0,8}".prop_map(Value::String),
        (0usize..200_000).prop_map(|n| Value::String("x".repeat(n))),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "metadata",
                    "spec",
                    "template",
                    "containers",
                    "env",
                    "name",
                    "labels",
                    "annotations",
                    "replicas",
                    "selector",
                    "matchLabels",
                    "volumes",
                    "affinity",
                    "initContainers",
                    "serviceName",
                    "x",
                ]),
                inner,
                0..6,
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn corpus_object() -> impl Strategy<Value = Value> {
    let dir = common::fixtures().join("admission/corpus");
    let mut objs: Vec<Value> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| common::read_json(&e.unwrap().path())["request"]["object"].clone())
        .collect();
    objs.sort_by_key(|v| v.to_string());
    prop::sample::select(objs)
}

/// A corpus object with one random part replaced (or removed).
fn mangled_object() -> impl Strategy<Value = Value> {
    (
        corpus_object(),
        prop::collection::vec(any::<prop::sample::Index>(), 1..4),
        json_value(),
        any::<bool>(),
    )
        .prop_map(|(mut obj, path, value, remove)| {
            let mut cur = &mut obj;
            for idx in path {
                let next = match cur {
                    Value::Object(m) if !m.is_empty() => {
                        let k = m.keys().nth(idx.index(m.len())).unwrap().clone();
                        m.get_mut(&k).unwrap() as *mut Value
                    }
                    Value::Array(a) if !a.is_empty() => {
                        let i = idx.index(a.len());
                        &mut a[i] as *mut Value
                    }
                    _ => break,
                };
                // SAFETY: `next` points into `cur`, which we replace by it; no other borrow lives.
                cur = unsafe { &mut *next };
            }
            if remove {
                *cur = Value::Null
            } else {
                *cur = value
            }
            obj
        })
}

fn review() -> impl Strategy<Value = Value> {
    let group_res = prop::sample::select(vec![
        ("apps", "StatefulSet", "statefulsets", None),
        ("apps", "StatefulSet", "statefulsets", None),
        ("", "Pod", "pods", None),
        ("autoscaling", "Scale", "statefulsets", Some("scale")),
        ("apps", "Deployment", "deployments", None),
        ("", "Pod", "pods", Some("status")),
        ("", "Namespace", "namespaces", None),
        ("", "PersistentVolumeClaim", "persistentvolumeclaims", None),
    ]);
    let ops = prop::sample::select(vec!["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH"]);
    let object = prop_oneof![3 => mangled_object(), 2 => corpus_object(), 1 => json_value(), 1 => Just(Value::Null)];
    let uid = prop_oneof![8 => "[a-f0-9-]{1,36}".prop_map(Value::String), 1 => Just(json!("")), 1 => json_value()];
    (group_res, ops, object.clone(), object, uid, any::<bool>(), any::<u8>(), "[a-z0-9-]{0,20}").prop_map(
        |((g, k, r, sub), op, obj, old, uid, dry, drop_mask, ns)| {
            let mut req = json!({
                "uid": uid, "kind": {"group": g, "version": "v1", "kind": k},
                "resource": {"group": if k == "Scale" { "apps" } else { g }, "version": "v1", "resource": r},
                "name": "n", "namespace": ns, "operation": op, "userInfo": {"username": "u"},
                "object": obj, "oldObject": old, "dryRun": dry,
            });
            if let Some(s) = sub {
                req["subResource"] = s.into();
            }
            // Drop some fields at random.
            let keys = ["kind", "resource", "operation", "object", "namespace", "uid"];
            for (i, k) in keys.iter().enumerate() {
                if drop_mask & (1 << i) != 0 && drop_mask > 200 {
                    req.as_object_mut().unwrap().remove(*k);
                }
            }
            json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
        },
    )
}

/// Runs `cases` generated inputs through `check`, and prints how many ran.
fn fuzz<S: Strategy>(name: &str, cases: u32, strategy: S, body: impl Fn(S::Value) -> Vec<u8>) {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let count = AtomicU64::new(0);
    let t = Instant::now();
    let result = runner.run(&strategy, |v| {
        count.fetch_add(1, Ordering::Relaxed);
        check(&body(v))
    });
    eprintln!(
        "fuzz {name}: {} cases in {:.1}s (slowest answer so far {} us)",
        count.load(Ordering::Relaxed),
        t.elapsed().as_secs_f64(),
        SLOWEST_US.load(Ordering::Relaxed)
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

#[test]
fn arbitrary_bytes() {
    fuzz(
        "arbitrary bytes",
        20_000,
        prop::collection::vec(any::<u8>(), 0..2048),
        |b| b,
    );
}

#[test]
fn structured_reviews() {
    fuzz("structure-aware reviews", 4_000, review(), |r| {
        serde_json::to_vec(&r).unwrap()
    });
}

#[test]
fn json_with_a_review_prefix() {
    // A real review cut anywhere, with garbage after it.
    let review = std::fs::read(common::local_fixture(
        "admission/statefulset-CREATE.mutating.json",
    ))
    .unwrap();
    fuzz(
        "truncated reviews",
        2_000,
        (
            0usize..review.len(),
            prop::collection::vec(any::<u8>(), 0..64),
        ),
        move |(cut, tail)| {
            let mut body = review[..cut].to_vec();
            body.extend(tail);
            body
        },
    );
}

#[test]
fn deep_nesting_and_huge_strings() {
    let deep = "[".repeat(200_000) + &"]".repeat(200_000);
    check(deep.as_bytes()).unwrap();
    let deep_obj = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{{"uid":"u","kind":{{"group":"apps","version":"v1","kind":"StatefulSet"}},"resource":{{"group":"apps","version":"v1","resource":"statefulsets"}},"operation":"CREATE","object":{}{}}}}}"#,
        "{\"a\":".repeat(50_000),
        "1".to_string() + &"}".repeat(50_000)
    );
    check(deep_obj.as_bytes()).unwrap();
    let mut r = common::read_json(&common::local_fixture(
        "admission/statefulset-CREATE.mutating.json",
    ));
    r["request"]["object"]["metadata"]["annotations"]["big"] =
        "\u{e9}".repeat(3 * 1024 * 1024).into();
    let t = Instant::now();
    check(&serde_json::to_vec(&r).unwrap()).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "a 6 MiB annotation took {:?}",
        t.elapsed()
    );
}

/// A plain test with its own runtime: each case is driven by the runtime's `block_on` (the
/// handler uses tokio's timers and semaphores, which a foreign executor inside a tokio task
/// would starve).
#[test]
fn through_the_http_router() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    use axum::body::Body;
    use tower::ServiceExt;
    let app = stsguard::server::router(
        stsguard::server::AppState::new(
            Policy::default(),
            std::sync::Arc::new(NoLookups("fuzz".into())),
        ),
        Duration::from_secs(5),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(500));
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        review().prop_map(|r| serde_json::to_vec(&r).unwrap()),
    ];
    runner
        .run(&strategy, |body| {
            let app = app.clone();
            let status = rt.block_on(async move {
                let req = axum::http::Request::post("/mutate?timeout=5s")
                    .body(Body::from(body))
                    .unwrap();
                app.oneshot(req).await.unwrap().status().as_u16()
            });
            prop_assert!(status == 200 || status == 400, "status {}", status);
            Ok(())
        })
        .unwrap();
}
