//! Bounded for CI: HTTPS load against the real binary while its certificate is rotated
//! the kubelet way and, near the end, it gets SIGTERM. The client stops sending once /readyz
//! turns 503 (as the endpoints controller would); every request it sent must be answered.

mod common;
// The load benchmark's client, driving the server while faults are injected.
#[path = "../benches/load/client.rs"]
mod loadgen;

use std::path::Path;
use std::time::Duration;

use common::*;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn layout(dir: &Path, ts: &str, b: &stsguard::certs::Bundle) {
    let d = dir.join(ts);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("tls.crt"), &b.cert_pem).unwrap();
    std::fs::write(d.join("tls.key"), &b.key_pem).unwrap();
}

#[tokio::test]
async fn rotation_and_sigterm_under_load_fail_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = stsguard::certs::generate("localhost", &["localhost".into()], 1).unwrap();
    let b = stsguard::certs::generate("localhost", &["localhost".into()], 1).unwrap();
    layout(dir, "..ts1", &a);
    layout(dir, "..ts2", &b);
    std::os::unix::fs::symlink("..ts1", dir.join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), dir.join(f)).unwrap();
    }
    let mut p = Launch::serve()
        .tls_in(dir)
        .no_cluster()
        .args(["--shutdown-delay", "1"])
        .spawn();
    let addr = p.wait_serving();
    let maddr = p.metrics_addr();
    let roots: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(format!("{}{}", a.ca_pem, b.ca_pem).as_bytes())
            .map(|c| c.unwrap())
            .collect();
    let body = std::fs::read(local_fixture("admission/statefulset-CREATE.mutating.json")).unwrap();
    let load = tokio::spawn(loadgen::run(loadgen::Options {
        addr,
        server_name: "localhost".into(),
        roots,
        path: "/mutate?timeout=5s".into(),
        body: body.into(),
        expect: b"009555d2-6006-4de1-a1f6-4bd1b179bab3".to_vec(),
        duration: Duration::from_secs(20),
        workers: 4,
        rate: None,
        reconnect_every: Some(25),
        ready_addr: Some(maddr),
        h2: true,
    }));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tmp_link = dir.join("..data_tmp");
    std::os::unix::fs::symlink("..ts2", &tmp_link).unwrap();
    std::fs::rename(&tmp_link, dir.join("..data")).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    p.signal("-TERM");
    let r = load.await.unwrap();
    eprintln!("fault run: {}", r.summary());
    assert_eq!(r.failed, 0, "failed requests: {:?}", r.first_errors);
    assert!(r.ok > 50, "{}", r.summary());
    assert!(
        r.stopped_by_readiness,
        "the client should have stopped on /readyz 503"
    );
    assert!(
        r.connections > 4,
        "reconnects happened across the rotation: {}",
        r.summary()
    );
    let status = tokio::task::spawn_blocking(move || p.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
