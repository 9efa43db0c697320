//! The real binary as a process: certificate rotation the kubelet way, SIGTERM with a
//! request in flight, readiness. Talks HTTPS over 127.0.0.1 with a hyper client on tokio-rustls.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Writes a kubelet-style Secret volume: `..<ts>/files`, `..data -> ..<ts>`, `name -> ..data/name`.
fn kubelet_write(dir: &Path, generation: u32, cert: &str, key: &str) {
    let ts = format!("..2026_11_22_05_00_{generation:02}.{}", 100 + generation);
    let tsdir = dir.join(&ts);
    std::fs::create_dir_all(&tsdir).unwrap();
    std::fs::write(tsdir.join("tls.crt"), cert).unwrap();
    std::fs::write(tsdir.join("tls.key"), key).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&ts, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap(); // the atomic swap
    for f in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(f)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
        }
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn h1(stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Sender {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn send(sender: &mut Sender, body: &[u8]) -> (u16, serde_json::Value) {
    let req = hyper::Request::post("/mutate?timeout=5s")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test]
async fn certificate_rotation_the_kubelet_way() {
    let dir = tempfile::tempdir().unwrap();
    let a = stsguard::certs::generate("localhost", &["localhost".into()], 1).unwrap();
    let b = stsguard::certs::generate("localhost", &["localhost".into()], 1).unwrap();
    kubelet_write(dir.path(), 1, &a.cert_pem, &a.key_pem);
    // A long poll interval: the directory watch must see the swap.
    let p = Launch::serve()
        .tls_in(dir.path())
        .no_cluster()
        .args(["--reload-interval", "300"])
        .spawn();
    let addr = p.wait_serving();
    let both = format!("{}{}", a.ca_pem, b.ca_pem);
    let cfg = rustls_client(&both, &[b"http/1.1"]);
    let review =
        std::fs::read(local_fixture("admission/statefulset-CREATE.mutating.json")).unwrap();

    let old = tls_connect(addr, "localhost", cfg.clone()).await.unwrap();
    assert_eq!(peer_serial(&old), serial_of(&a.cert_pem));
    let mut old = h1(old).await;
    assert_eq!(send(&mut old, &review).await.0, 200);

    kubelet_write(dir.path(), 2, &b.cert_pem, &b.key_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = tls_connect(addr, "localhost", cfg.clone()).await.unwrap();
        if peer_serial(&fresh) == serial_of(&b.cert_pem) {
            let mut fresh = h1(fresh).await;
            assert_eq!(send(&mut fresh, &review).await.0, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new certificate not served after 10 s:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the rotation keeps working.
    let (status, v) = send(&mut old, &review).await;
    assert_eq!(status, 200);
    assert_eq!(v["response"]["allowed"], true);

    // A mismatched pair is refused: the old (b) certificate stays.
    let c = stsguard::certs::generate("localhost", &["localhost".into()], 1).unwrap();
    kubelet_write(dir.path(), 3, &c.cert_pem, &b.key_pem);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("keeping the old one") {
        assert!(
            Instant::now() < deadline,
            "no error logged for a mismatched pair:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = tls_connect(addr, "localhost", cfg.clone()).await.unwrap();
    assert_eq!(peer_serial(&fresh), serial_of(&b.cert_pem));
}

async fn readyz(addr: std::net::SocketAddr) -> u16 {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut s = String::new();
    tcp.read_to_string(&mut s).await.unwrap();
    s.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let mut p = Launch::serve().dev(&ca).spawn();
    let addr = p.wait_serving();
    let maddr = p.metrics_addr();
    assert_eq!(readyz(maddr).await, 200);
    let ca_pem = std::fs::read_to_string(&ca).unwrap();
    let review =
        std::fs::read(local_fixture("admission/statefulset-CREATE.mutating.json")).unwrap();
    let uid =
        serde_json::from_slice::<serde_json::Value>(&review).unwrap()["request"]["uid"].clone();

    let mut tls = tls_connect(addr, "localhost", rustls_client(&ca_pem, &[b"http/1.1"]))
        .await
        .unwrap();
    let head = format!(
        "POST /mutate?timeout=5s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        review.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let half = review.len() / 2;
    tls.write_all(&review[..half]).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    p.signal("-TERM");
    // Not ready any more, and no new connections.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let refused = tokio::net::TcpStream::connect(addr).await.is_err();
        if refused {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listener still accepting after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Draining (our request holds it open): the metrics port says not ready.
    assert_eq!(readyz(maddr).await, 503);

    // The request in flight still gets its answer.
    tls.write_all(&review[half..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight request not answered: {text}"
    );
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["response"]["uid"], uid);

    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = p.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "did not exit after SIGTERM:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0), "{}", p.log());

    // Logs go out through a background writer (src/main.rs): none is lost on the way out — the
    // review's line is there, and the last line is the one written just before the exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines: Vec<serde_json::Value> = loop {
        let lines: Vec<serde_json::Value> = p
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.last().is_some_and(|l| l["message"] == "stopped") || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        lines.last().map(|l| l["message"].clone()),
        Some("stopped".into()),
        "the last log line is not the exit's:\n{}",
        p.log()
    );
    let review_line = lines
        .iter()
        .find(|l| l["message"] == "review")
        .unwrap_or_else(|| panic!("no review log line:\n{}", p.log()));
    assert_eq!(review_line["uid"], uid);
    assert_eq!(review_line["outcome"], "patched");
    assert_eq!(review_line["operation"], "CREATE");
}

#[tokio::test]
async fn startup_errors_are_clear() {
    let out = Launch::serve().no_cluster().output();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--tls-cert"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
