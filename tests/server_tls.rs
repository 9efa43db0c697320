//! The webhook over real TLS sockets on 127.0.0.1 with real HTTPS clients.
//! Reads tests/fixtures/admission (the captured Kubernetes 1.28 reviews).

mod common;

use std::time::{Duration, Instant};

use common::*;
use stsguard::server::Timeouts;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn create_review() -> Vec<u8> {
    std::fs::read(fixtures().join("admission/statefulset-CREATE.mutating.json")).unwrap()
}

async fn post(c: &reqwest::Client, url: String, body: Vec<u8>) -> (u16, String, reqwest::Version) {
    let r = c
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let (status, version) = (r.status().as_u16(), r.version());
    (status, r.text().await.unwrap(), version)
}

#[tokio::test]
async fn create_review_answered_over_h2_and_http11() {
    let s = start_default().await;
    let uid = read_json(&fixtures().join("admission/statefulset-CREATE.mutating.json"))["request"]
        ["uid"]
        .clone();
    for (h2, want) in [
        (true, reqwest::Version::HTTP_2),
        (false, reqwest::Version::HTTP_11),
    ] {
        let c = client(&s.ca_pem, h2);
        // The API server appends ?timeout=Ns.
        let url = format!("https://localhost:{}/mutate?timeout=5s", s.addr.port());
        let (status, body, version) = post(&c, url, create_review()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(version, want);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(v["kind"], "AdmissionReview");
        assert_eq!(v["response"]["uid"], uid);
        assert_eq!(v["response"]["allowed"], true);
        // The wire form of the patch is a base64 string with patchType JSONPatch.
        assert!(
            v["response"]["patch"].is_string(),
            "patch must be base64 text: {body}"
        );
        let patch = patch_of(&v).unwrap();
        assert!(!patch.0.is_empty());
        // validate too
        let url = format!("https://127.0.0.1:{}/validate?timeout=5s", s.addr.port());
        let (status, body, _) = post(&c, url, create_review()).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["response"]["uid"], uid);
        assert!(v["response"].get("patch").is_none());
    }
}

#[tokio::test]
async fn bad_requests_get_4xx_with_a_reason() {
    let s = start_default().await;
    let c = client(&s.ca_pem, true);
    let base = format!("https://127.0.0.1:{}", s.addr.port());
    let (status, body, _) = post(&c, format!("{base}/mutate"), b"garbage".to_vec()).await;
    assert_eq!(status, 400);
    assert!(body.contains("not JSON"), "{body}");
    assert_eq!(body.trim().lines().count(), 1, "one-line reason: {body}");
    let (status, body, _) = post(
        &c,
        format!("{base}/mutate"),
        br#"{"kind":"Pod","apiVersion":"v1"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body, _) = post(
        &c,
        format!("{base}/validate"),
        br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("no request"), "{body}");
    let (status, body, _) = post(
        &c,
        format!("{base}/validate"),
        br#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"x"}}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(body.contains("admission.k8s.io/v1"), "{body}");

    // 8 MiB: over the 7 MiB limit.
    let big = vec![b' '; 8 * 1024 * 1024];
    let (status, _, _) = post(&c, format!("{base}/mutate"), big).await;
    assert_eq!(status, 413);
    let (status, _, _) = post(&c, format!("{base}/nope"), create_review()).await;
    assert_eq!(status, 404);
    let r = c.get(format!("{base}/mutate")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // The server is still fine after all that.
    let (status, _, _) = post(&c, format!("{base}/mutate"), create_review()).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn half_a_header_is_cut_off_within_the_timeout() {
    let timeouts = Timeouts {
        handshake: Duration::from_secs(1),
        header_read: Duration::from_secs(1),
        drain: Duration::from_secs(5),
        ..Default::default()
    };
    let s = start_server(
        Default::default(),
        std::sync::Arc::new(stsguard::validate::NoLookups("t".into())),
        timeouts,
    )
    .await;
    let mut tls = tls_connect(
        s.addr,
        "localhost",
        rustls_client(&s.ca_pem, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    tls.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Ty")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a half-sent header open for 10 s"
    );
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "cut off after {took:?}");

    // A client that connects and never starts the TLS handshake is dropped too.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut b)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "silent TCP client not closed: {r:?}"
    );
}

/// A ClientHello that offers only TLS 1.1 (record and client_version 0x0302).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([7u8; 32]); // random
    body.push(0); // session id
    // ECDHE-ECDSA/RSA-AES128-SHA, AES128-SHA, AES256-SHA: suites a TLS 1.1 client offers
    body.extend([0x00, 0x08, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x2f, 0x00, 0x35]);
    body.extend([0x01, 0x00]); // compression: null
    let mut hs = vec![0x01, 0x00, (body.len() >> 8) as u8, body.len() as u8];
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x02, (hs.len() >> 8) as u8, hs.len() as u8];
    rec.extend(hs);
    rec
}

#[tokio::test]
async fn tls11_only_client_is_refused() {
    let s = start_default().await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!buf.is_empty(), "expected an alert");
    assert_eq!(
        buf[0],
        0x15,
        "expected a TLS alert record, got {:02x?}",
        &buf[..buf.len().min(8)]
    );
    // A fatal alert: protocol_version (70) or handshake_failure (40), depending on what the
    // server notices first about a TLS 1.1-only hello.
    assert_eq!(buf.get(5), Some(&2), "fatal alert: {buf:02x?}");
    assert!(
        matches!(buf.get(6), Some(&70) | Some(&40)),
        "alert: {buf:02x?}"
    );

    // While a TLS 1.2 client is served.
    let cfg = tls::config_for(tls::pem_certs(&s.ca_pem), &[], &[&rustls::version::TLS12]).unwrap();
    let tls = tls_connect(s.addr, "localhost", cfg).await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
}

#[tokio::test]
async fn alpn_offers_h2_and_http11() {
    let s = start_default().await;
    let h2 = tls_connect(
        s.addr,
        "localhost",
        rustls_client(&s.ca_pem, &[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = tls_connect(
        s.addr,
        "localhost",
        rustls_client(&s.ca_pem, &[b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}
