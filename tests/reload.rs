//! Certificate reloads that never make things worse: a FIFO in place of the certificate, an
//! expired or not yet valid certificate. Runs the real binary over HTTPS on 127.0.0.1 and looks
//! at the certificate it serves (docs/reload.md).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAY: Duration = Duration::from_secs(86_400);

fn names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

fn write_pair(dir: &Path, b: &stsguard::certs::Bundle) {
    std::fs::write(dir.join("tls.key"), &b.key_pem).unwrap();
    std::fs::write(dir.join("tls.crt"), &b.cert_pem).unwrap();
}

fn serve(dir: &Path) -> Proc {
    Launch::serve()
        .tls_in(dir)
        .no_cluster()
        .args(["--reload-interval", "1"])
        .spawn()
}

/// A plain HTTP GET on the metrics port: status and body, or None if no answer in 3 s.
async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let talk = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tcp.write_all(req.as_bytes()).await.ok()?;
        let mut s = String::new();
        tcp.read_to_string(&mut s).await.ok()?;
        let status = s.split_whitespace().nth(1)?.parse().ok()?;
        Some((status, s))
    };
    tokio::time::timeout(Duration::from_secs(3), talk)
        .await
        .ok()
        .flatten()
}

/// The serial of the certificate served on a new connection, or None if no handshake in 3 s.
async fn served_serial(addr: SocketAddr, ca_pem: &str) -> Option<String> {
    let cfg = rustls_client(ca_pem, &[b"http/1.1"]);
    let tls = tokio::time::timeout(Duration::from_secs(3), tls_connect(addr, "localhost", cfg))
        .await
        .ok()?
        .ok()?;
    Some(peer_serial(&tls))
}

/// `allowed` of a /validate answer, or None if no answer in 3 s.
async fn review(c: &reqwest::Client, addr: SocketAddr) -> Option<bool> {
    let body = std::fs::read(local_fixture(
        "admission/statefulset-CREATE.validating.json",
    ))
    .ok()?;
    let send = c
        .post(format!("https://localhost:{}/validate", addr.port()))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(3))
        .send();
    let v: serde_json::Value = send.await.ok()?.json().await.ok()?;
    v["response"]["allowed"].as_bool()
}

#[tokio::test]
async fn a_fifo_in_place_of_the_certificate_is_refused_and_the_server_keeps_answering() {
    let dir = tempfile::tempdir().unwrap();
    let a = stsguard::certs::generate("localhost", &names(), 1).unwrap();
    write_pair(dir.path(), &a);
    let p = serve(dir.path());
    let (addr, metrics) = (p.wait_serving(), p.metrics_addr());
    let c = client(&a.ca_pem, true);
    assert_eq!(review(&c, addr).await, Some(true));

    let crt = dir.path().join("tls.crt");
    std::fs::remove_file(&crt).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&crt)
        .status()
        .unwrap();
    assert!(made.success());
    // Several periodic checks (1 s apart) and the watch's events go by: every probe and every
    // review is answered meanwhile, by the old certificate.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        let health = get(metrics, "/healthz").await;
        assert_eq!(
            health.map(|h| h.0),
            Some(200),
            "health probe unanswered:\n{}",
            p.log()
        );
        assert_eq!(
            review(&c, addr).await,
            Some(true),
            "review unanswered:\n{}",
            p.log()
        );
        assert_eq!(
            served_serial(addr, &a.ca_pem).await,
            Some(serial_of(&a.cert_pem))
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p.wait_log("keeping the old one").await;
    assert!(
        p.log().contains("a FIFO (named pipe), not a regular file"),
        "{}",
        p.log()
    );

    // A regular file written in its place is loaded.
    std::fs::remove_file(&crt).unwrap();
    let b = stsguard::certs::generate("localhost", &names(), 1).unwrap();
    write_pair(dir.path(), &b);
    let both = format!("{}{}", a.ca_pem, b.ca_pem);
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_serial(addr, &both).await != Some(serial_of(&b.cert_pem)) {
        assert!(
            Instant::now() < deadline,
            "new certificate not served:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_expired_or_not_yet_valid_certificate_on_reload_keeps_the_old_one_served() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let a = stsguard::certs::generate("localhost", &names(), 1).unwrap();
    write_pair(dir.path(), &a);
    let p = serve(dir.path());
    let (addr, metrics) = (p.wait_serving(), p.metrics_addr());
    assert!(
        !p.log().contains("not valid now"),
        "a valid certificate at start: {}",
        p.log()
    );

    let expired =
        stsguard::certs::generate_valid("localhost", &names(), now - 2 * DAY, now - DAY).unwrap();
    write_pair(dir.path(), &expired);
    p.wait_log("expired at").await;
    let early =
        stsguard::certs::generate_valid("localhost", &names(), now + DAY, now + 2 * DAY).unwrap();
    write_pair(dir.path(), &early);
    p.wait_log("not valid before").await;
    let all = format!("{}{}{}", a.ca_pem, expired.ca_pem, early.ca_pem);
    assert_eq!(
        served_serial(addr, &all).await,
        Some(serial_of(&a.cert_pem)),
        "the old certificate is still served:\n{}",
        p.log()
    );
    assert!(
        !p.log().contains("serving certificate reloaded"),
        "{}",
        p.log()
    );
    let (_, m) = get(metrics, "/metrics").await.unwrap();
    let errors = m
        .lines()
        .find(|l| l.starts_with(r#"stsguard_reloads_total{what="certificate",result="error"}"#))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(errors.is_some_and(|n| n >= 2), "{m}");

    // A valid one is loaded.
    let b = stsguard::certs::generate("localhost", &names(), 1).unwrap();
    write_pair(dir.path(), &b);
    let all = format!("{all}{}", b.ca_pem);
    let deadline = Instant::now() + Duration::from_secs(15);
    while served_serial(addr, &all).await != Some(serial_of(&b.cert_pem)) {
        assert!(
            Instant::now() < deadline,
            "new certificate not served:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_expired_certificate_at_start_is_served_with_an_error_logged() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    let expired =
        stsguard::certs::generate_valid("localhost", &names(), now - 2 * DAY, now - DAY).unwrap();
    write_pair(dir.path(), &expired);
    let p = serve(dir.path());
    let addr = p.wait_serving();
    let log = p.log();
    let line = log
        .lines()
        .find(|l| l.contains("not valid now"))
        .unwrap_or_else(|| panic!("no error at start:\n{log}"));
    assert!(
        line.contains("\"ERROR\"") && line.contains("expired at"),
        "{line}"
    );
    assert_eq!(
        served_serial_unverified(addr).await,
        Some(serial_of(&expired.cert_pem))
    );
}

/// The served certificate's serial without checking it (an expired certificate fails the check).
async fn served_serial_unverified(addr: SocketAddr) -> Option<String> {
    let tls = tokio::time::timeout(
        Duration::from_secs(3),
        tls_connect(addr, "localhost", tls::config_trusting_anything()),
    )
    .await
    .ok()?
    .ok()?;
    Some(peer_serial(&tls))
}
