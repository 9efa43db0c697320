//! The floor for the load benchmark: the least any correct webhook must do — parse the body as
//! JSON and answer an allowed review echoing request.uid — on stsguard's own TLS/HTTP stack
//! (the same `serve_tls`, rustls config, router layers and allocator).
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn echo(body: Bytes) -> axum::response::Response {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let answer = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "response": {"uid": v["request"]["uid"], "allowed": true},
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&answer).unwrap_or_default(),
    )
        .into_response()
}

#[tokio::main]
async fn main() {
    stsguard::install_crypto_provider();
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:0".into());
    let ca_file = std::env::args().nth(2).unwrap_or("floor-ca.pem".into());
    let b = stsguard::certs::generate("localhost", &["127.0.0.1".into(), "localhost".into()], 1)
        .unwrap();
    std::fs::write(&ca_file, &b.ca_pem).unwrap();
    let loaded =
        stsguard::server::tls::load_pem(b.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap();
    let tls = std::sync::Arc::new(
        stsguard::server::tls::server_config(stsguard::server::tls::SwappableCert::new(loaded))
            .unwrap(),
    );
    let app = axum::Router::new()
        .route("/mutate", post(echo))
        .route("/validate", post(echo))
        .layer(DefaultBodyLimit::max(stsguard::server::MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ));
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!(
        "{{\"message\":\"serving\",\"addr\":\"{}\"}}",
        listener.local_addr().unwrap()
    );
    stsguard::server::serve_tls(listener, tls, app, Default::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
}
