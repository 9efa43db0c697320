//! `stsguard check` as a user runs it: outputs, stdin, exit codes.

use std::io::Write;
use std::process::{Command, Stdio};

fn check(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stsguard"));
    c.arg("check")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const GOOD: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: db, readinessProbe: {exec: {command: [x]}}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
"#;

#[test]
fn outputs_and_exit_codes() {
    let (code, out, err) = check(&["-f", "-"], Some(GOOD));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("StatefulSet default/db: allowed"), "{out}");
    assert!(out.contains("+ preferred pod anti-affinity"), "{out}");
    assert!(
        !out.contains("governing-service"),
        "the Service in the input answers the look-up: {out}"
    );

    let (code, out, _) = check(&["-f", "-", "-o", "yaml"], Some(GOOD));
    assert_eq!(code, 0);
    let docs = stsguard::check::yaml_documents(&out).unwrap();
    assert_eq!(docs.len(), 1);
    let sts: k8s_openapi::api::apps::v1::StatefulSet =
        serde_json::from_value(docs[0].clone()).unwrap();
    assert!(sts.spec.unwrap().template.spec.unwrap().affinity.is_some());

    let (code, out, _) = check(&["-f", "-", "-o", "patch"], Some(GOOD));
    assert_eq!(code, 0);
    let patch: json_patch::Patch = serde_json::from_str(&out).unwrap();
    assert!(!patch.0.is_empty());

    let (code, out, _) = check(&["-f", "-", "-o", "json"], Some(GOOD));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for k in [
        "source",
        "kind",
        "name",
        "namespace",
        "allowed",
        "findings",
        "patch",
        "mutated",
    ] {
        assert!(v[0].get(k).is_some(), "json output lacks {k}");
    }

    // Denied by an enforced rule: exit 1, the rule named.
    let bad = GOOD.replace("replicas: 1", "replicas: 3").replace(
        "containers:",
        "volumes: [{name: d, persistentVolumeClaim: {claimName: c}}]\n      containers:",
    );
    let (code, out, _) = check(&["-f", "-"], Some(&bad));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DENY [shared-claim]"), "{out}");

    // Bad input: exit 2 with the reason.
    let (code, _, err) = check(&["-f", "-"], Some("kind: [unclosed"));
    assert_eq!(code, 2);
    assert!(err.contains("stsguard check:"), "{err}");
    let (code, _, err) = check(&["-f", "/nonexistent/x.yaml"], None);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/x.yaml"), "{err}");
    let (code, _, _) = check(
        &["-f", "-"],
        Some(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {replicas: many}\n",
        ),
    );
    assert_eq!(code, 2);

    // JSON input works too.
    let json = serde_json::to_string(&stsguard::check::yaml_documents(GOOD).unwrap()[1]).unwrap();
    let (code, out, _) = check(&["-f", "-"], Some(&json));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn huge_replica_counts_do_not_hang_the_report() {
    let s = GOOD.replace("replicas: 1", "replicas: 2147483647").replace(
        "metadata: {name: db}\nspec:\n  replicas",
        "metadata: {name: db, annotations: {stsguard.io/roles: 'primary=0,replica=*'}}\nspec:\n  replicas",
    );
    assert!(s.contains("stsguard.io/roles"));
    let t = std::time::Instant::now();
    let (code, out, err) = check(&["-f", "-"], Some(&s));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("primary: ordinals 0: any node"), "{out}");
    assert!(out.contains("(of 2147483647)"), "{out}");
}
