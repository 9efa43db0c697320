//! `stsguard probe`, the chart's install hook: it waits until the webhook answers a review over
//! real TLS, trusted through the CA the webhook configurations carry, and says so; it fails
//! clearly when the webhook never answers or is not trusted.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn probe(args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .arg("probe")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) -> (Option<i32>, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_probe_waits_until_the_webhook_answers_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    // The address is known before anything listens on it, as a Service's is before its pods serve.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let ca = dir.path().join("ca.crt");
    // The server's certificate and CA, made first so the probe can trust it from the start.
    let b = stsguard::certs::generate("localhost", &["127.0.0.1".into()], 1).unwrap();
    std::fs::write(&ca, &b.ca_pem).unwrap();
    let child = probe(&[
        "--url",
        &url,
        "--ca-file",
        ca.to_str().unwrap(),
        "--timeout",
        "30",
    ]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stsguard::install_crypto_provider();
    let loaded =
        stsguard::server::tls::load_pem(b.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap();
    let tls = std::sync::Arc::new(
        stsguard::server::tls::server_config(stsguard::server::tls::SwappableCert::new(loaded))
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let app = stsguard::server::router(
        stsguard::server::AppState::new(
            Default::default(),
            std::sync::Arc::new(stsguard::validate::NoLookups("t".into())),
        ),
        Duration::from_secs(5),
    );
    tokio::spawn(stsguard::server::serve_tls(
        listener,
        tls,
        app,
        Default::default(),
        std::future::pending(),
    ));
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || finish(child))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("the webhook answers at https://127.0.0.1:"),
        "{stdout}"
    );
}

#[tokio::test]
async fn the_probe_fails_when_the_webhook_is_not_trusted_or_never_answers() {
    let s = start_default().await;
    let dir = tempfile::tempdir().unwrap();
    // Another CA than the one that signed the server's certificate.
    let other = dir.path().join("other.crt");
    std::fs::write(
        &other,
        stsguard::certs::generate("x", &[], 1).unwrap().ca_pem,
    )
    .unwrap();
    let url = format!("https://{}", s.addr);
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        finish(probe(&[
            "--url",
            &url,
            "--ca-file",
            other.to_str().unwrap(),
            "--timeout",
            "1",
        ]))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("did not answer within 1 s") && stderr.contains("TLS"),
        "{stderr}"
    );
    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &s.ca_pem).unwrap();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        finish(probe(&[
            "--url",
            &format!("https://127.0.0.1:{port}"),
            "--ca-file",
            ca.to_str().unwrap(),
            "--timeout",
            "1",
        ]))
    })
    .await
    .unwrap();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("connect 127.0.0.1:"), "{stderr}");
    // No CA at all: bad input.
    let (code, _, stderr) = finish(probe(&["--url", "https://127.0.0.1:1"]));
    assert_eq!(code, Some(2), "{stderr}");
}
