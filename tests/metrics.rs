//! Request outcomes and rule results reach /metrics, and /healthz answers.

mod common;

use std::sync::Arc;

use axum::body::Body;
use common::*;
use http_body_util::BodyExt;
use stsguard::policy::Policy;
use stsguard::server::{AppState, Readiness, metrics_router, router};
use stsguard::validate::NoLookups;
use tower::ServiceExt;

#[tokio::test]
async fn outcomes_and_rule_results_are_counted() {
    let state = AppState::new(Policy::default(), Arc::new(NoLookups("t".into())));
    let metrics = state.metrics.clone();
    let app = router(state, std::time::Duration::from_secs(5));
    let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
    r["request"]["object"]["metadata"]["annotations"]["stsguard.io/quorum"] = "true".into();
    let body = serde_json::to_vec(&r).unwrap();
    for path in ["/mutate", "/validate"] {
        let resp = app
            .clone()
            .oneshot(
                axum::http::Request::post(path)
                    .body(Body::from(body.clone()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = app
        .clone()
        .oneshot(
            axum::http::Request::post("/validate")
                .body(Body::from("nope"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let m = metrics_router(
        metrics,
        Arc::new(Readiness {
            tls_bound: true.into(),
            ..Default::default()
        }),
    );
    let text = String::from_utf8(
        m.clone()
            .oneshot(
                axum::http::Request::get("/metrics")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    for want in [
        r#"stsguard_admission_requests_total{endpoint="mutate",kind="StatefulSet",operation="CREATE",outcome="patched"} 1"#,
        r#"stsguard_admission_requests_total{endpoint="validate",kind="StatefulSet",operation="CREATE",outcome="denied"} 1"#,
        r#"outcome="bad_request"} 1"#,
        r#"stsguard_rule_results_total{rule="quorum-odd",mode="enforce",result="fail"} 1"#,
        r#"stsguard_rule_results_total{rule="governing-service",mode="warn",result="unknown"} 1"#,
        "stsguard_admission_duration_seconds_bucket",
        "stsguard_certificate_expiry_timestamp_seconds",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    for (path, code) in [("/healthz", 200), ("/readyz", 200)] {
        let resp = m
            .clone()
            .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), code, "{path}");
    }
}
