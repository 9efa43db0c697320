//! A bad policy file fails start-up naming the key; a changed file is reloaded without a
//! restart; a bad new file keeps the old policy. Runs the real binary over HTTPS on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn quorum_review() -> serde_json::Value {
    let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
    r["request"]["object"]["metadata"]["annotations"]["stsguard.io/quorum"] = "true".into();
    r["request"]["object"]["spec"]["replicas"] = 4.into();
    r
}

#[test]
fn a_bad_policy_file_fails_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        (
            "mutation:\n  antiAffinity:\n    mode: sometimes\n",
            "mutation.antiAffinity.mode",
        ),
        (
            "validation:\n  rules:\n    quorum-odd: enforce\n    quorum-even: warn\n",
            "validation.rules",
        ),
        ("clusterDomian: x\n", "clusterDomian"),
        (
            "mutation: {antiAffinity: {weight: 0}}\n",
            "mutation.antiAffinity.weight",
        ),
    ] {
        let p = dir.path().join("policy.yaml");
        std::fs::write(&p, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stsguard"))
            .args([
                "serve",
                "--dev",
                "--no-cluster",
                "--addr",
                "127.0.0.1:0",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .arg("--dev-ca-file")
            .arg(dir.path().join("ca.pem"))
            .arg("--config")
            .arg(&p)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "expected {key} in: {err}");
        assert!(!err.contains("panicked"));
    }
}

#[tokio::test]
async fn reload_on_change_and_keep_the_old_policy_on_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "validation:\n  rules: {quorum-odd: off}\n").unwrap();
    let ca = dir.path().join("ca.pem");
    let p = Proc::spawn(&[
        "serve",
        "--dev",
        "--no-cluster",
        "--addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--reload-interval",
        "300",
        "--dev-ca-file",
        ca.to_str().unwrap(),
        "--config",
        policy.to_str().unwrap(),
    ]);
    let addr = p.wait_serving();
    let c = client(&std::fs::read_to_string(&ca).unwrap(), true);
    let url = format!("https://localhost:{}/validate", addr.port());
    let allowed = || async {
        let v: serde_json::Value = c
            .post(&url)
            .json(&quorum_review())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["response"]["allowed"].as_bool().unwrap()
    };
    assert!(allowed().await, "quorum-odd is off");

    std::fs::write(&policy, "validation:\n  rules: {quorum-odd: enforce}\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while allowed().await {
        assert!(
            Instant::now() < deadline,
            "policy not reloaded:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(p.log().contains("policy reloaded"));

    std::fs::write(&policy, "validation:\n  rules: {quorum-odd: maybe}\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.log().contains("keeping the old one") {
        assert!(
            Instant::now() < deadline,
            "bad policy not reported:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        p.log().contains("validation.rules.quorum-odd"),
        "{}",
        p.log()
    );
    assert!(!allowed().await, "the old (enforcing) policy is kept");
}
