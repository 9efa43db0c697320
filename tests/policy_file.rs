//! A bad or empty policy file fails start-up naming the key; a changed file is reloaded without
//! a restart; a bad, empty or half-written new file keeps the old policy. Runs the real binary
//! over HTTPS on 127.0.0.1.

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
        // Not the built-in defaults in silence: `onError: deny` would become allow.
        ("", "is empty"),
        ("# all commented out\n", "is empty"),
    ] {
        let p = dir.path().join("policy.yaml");
        std::fs::write(&p, text).unwrap();
        let out = Launch::serve()
            .dev(&dir.path().join("ca.pem"))
            .arg("--config")
            .arg(&p)
            .output();
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
    let p = Launch::serve()
        .dev(&ca)
        .args(["--reload-interval", "300", "--config"])
        .arg(&policy)
        .spawn();
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

/// A review past a bound (300 containers): not evaluated, so answered per `onError`.
fn unevaluable_review() -> serde_json::Value {
    let mut r = read_json(&local_fixture(
        "admission/statefulset-CREATE.validating.json",
    ));
    let spec = &mut r["request"]["object"]["spec"]["template"]["spec"];
    let c = spec["containers"][0].clone();
    spec["containers"] = (0..300)
        .map(|i| {
            let mut c = c.clone();
            c["name"] = format!("c{i}").into();
            c
        })
        .collect::<Vec<_>>()
        .into();
    r
}

/// A server with `--config policy` (`text` at start) polling every second, and a function
/// answering whether an unevaluable review is allowed (that is, whether `onError` is allow).
fn serve_with(dir: &std::path::Path, text: &str) -> (Proc, reqwest::Client, String) {
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, text).unwrap();
    let ca = dir.join("ca.pem");
    let p = Launch::serve()
        .dev(&ca)
        .args(["--reload-interval", "1", "--config"])
        .arg(&policy)
        .spawn();
    let addr = p.wait_serving();
    let c = client(&std::fs::read_to_string(&ca).unwrap(), true);
    (p, c, format!("https://localhost:{}/validate", addr.port()))
}

async fn on_error_allows(c: &reqwest::Client, url: &str) -> bool {
    let v: serde_json::Value = c
        .post(url)
        .json(&unevaluable_review())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = &v["response"];
    let says_bound = r.to_string().contains("256");
    assert!(says_bound, "the review is past the container bound: {v}");
    r["allowed"].as_bool().unwrap()
}

#[tokio::test]
async fn an_emptied_policy_file_or_a_fifo_keeps_on_error_deny() {
    let dir = tempfile::tempdir().unwrap();
    let (p, c, url) = serve_with(dir.path(), "onError: deny\n");
    assert!(!on_error_allows(&c, &url).await, "onError: deny at start");
    std::fs::write(dir.path().join("policy.yaml"), "").unwrap();
    p.wait_log("is empty").await;
    let refused = p
        .log()
        .lines()
        .find(|l| l.contains("is empty"))
        .unwrap_or_default()
        .to_string();
    assert!(
        refused.contains("\"ERROR\"") && refused.contains("keeping the old one"),
        "{refused}"
    );
    assert!(!on_error_allows(&c, &url).await, "onError: deny is kept");
    // Several periodic checks later, still.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!on_error_allows(&c, &url).await, "onError: deny is kept");
    // Nor does a FIFO in its place hang the server or replace the policy.
    let path = dir.path().join("policy.yaml");
    std::fs::remove_file(&path).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    p.wait_log("a FIFO (named pipe), not a regular file").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!on_error_allows(&c, &url).await, "onError: deny is kept");
    assert!(!p.log().contains("policy reloaded"), "{}", p.log());
}

#[tokio::test]
async fn a_policy_file_caught_half_written_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let (p, c, url) = serve_with(dir.path(), "onError: deny\n");
    assert!(!on_error_allows(&c, &url).await, "onError: deny at start");
    // A slow writer: the first half parses (and says nothing of onError: allow, the default);
    // it grows by a comment byte every 20 ms for 3 s, then the rest comes.
    let path = dir.path().join("policy.yaml");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"validation:\n  rules: {quorum-odd: enforce}\n#")
            .unwrap();
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            f.write_all(b"#").unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        f.write_all(b"\nonError: deny\n").unwrap();
    });
    while !writer.is_finished() {
        assert!(
            !on_error_allows(&c, &url).await,
            "a half-written policy was loaded:\n{}",
            p.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.join().unwrap();
    assert!(!p.log().contains("policy reloaded"), "{}", p.log());
    assert!(p.log().contains("kept changing"), "{}", p.log());
    // Once written, the whole file is loaded, once.
    p.wait_log("policy reloaded").await;
    assert!(!on_error_allows(&c, &url).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(p.log().matches("policy reloaded").count(), 1, "{}", p.log());
}
