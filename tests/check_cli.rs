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
    let (code, _, err) = check(
        &["-f", "-"],
        Some(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {replicas: many}\n",
        ),
    );
    assert_eq!(code, 2);
    assert!(err.contains("StatefulSet x: spec.replicas"), "{err}");

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

/// The exit codes of bad or empty input, each with a message saying where and what.
#[test]
fn exit_codes_of_empty_and_refused_input() {
    // An empty file: nothing checked, exit 3 with a message on stderr; 0 with --allow-empty.
    let (code, out, err) = check(&["-f", "-"], Some(""));
    assert_eq!(code, 3, "{out}{err}");
    assert!(err.contains("no apps/v1 StatefulSet"), "{err}");
    let (code, out, _) = check(&["-f", "-", "--allow-empty"], Some(""));
    assert_eq!(code, 0);
    assert!(
        out.contains("0 StatefulSets checked: 0 allowed, 0 denied"),
        "{out}"
    );
    let (code, out, _) = check(&["-f", "-", "--allow-empty", "-o", "json"], Some(""));
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "[]");
    // Only comments (an empty `helm template`): the same.
    let (code, _, _) = check(
        &["-f", "-"],
        Some("---\n# Source: x/templates/y.yaml\n---\n"),
    );
    assert_eq!(code, 3);

    // A Deployment only: exit 3, the message says what was there.
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n";
    let (code, _, err) = check(&["-f", "-"], Some(deployment));
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("only 1 Deployment"), "{err}");

    // A StatefulSet in apps/v1beta2, which the API server refuses: bad input, exit 2, with the
    // file, the document, the object and the apiVersion.
    let legacy = format!(
        "{deployment}---\n{}",
        GOOD.split("---")
            .nth(1)
            .unwrap()
            .replace("apps/v1", "apps/v1beta2")
    );
    let (code, _, err) = check(&["-f", "-"], Some(&legacy));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("-: document 2")
            && err.contains("StatefulSet db")
            && err.contains("apps/v1beta2"),
        "{err}"
    );

    // A type error: exit 2, with the document, the object and the field path.
    let typed = GOOD.replace("replicas: 1", "replicas: 2181x");
    let (code, _, err) = check(&["-f", "-"], Some(&typed));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("-: document 2 (line 6)")
            && err.contains("StatefulSet db: spec.replicas: invalid type: string \"2181x\""),
        "{err}"
    );
    // Deeper: the path goes down to the field.
    let typed = GOOD.replace("image: db,", "image: db, ports: [{containerPort: http}],");
    let (code, _, err) = check(&["-f", "-"], Some(&typed));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("spec.template.spec.containers[0].ports[0].containerPort"),
        "{err}"
    );
    // An unquoted yes where a string belongs: kubectl reads a boolean, so does check.
    let yes = GOOD.replace("image: db,", "image: db, env: [{name: DEBUG, value: yes}],");
    let (code, _, err) = check(&["-f", "-"], Some(&yes));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("env[0].value: invalid type: boolean `true`")
            && err.contains("quote the value"),
        "{err}"
    );

    // A duplicate key: exit 2, naming the key, the document and the line.
    let dup = GOOD.replace("  replicas: 1\n", "  replicas: 1\n  replicas: 2\n");
    let (code, _, err) = check(&["-f", "-"], Some(&dup));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("document 2 (line 12, column 3)")
            && err.contains("duplicate key \"replicas\""),
        "{err}"
    );
    // In JSON input too.
    let (code, _, err) = check(
        &["-f", "-"],
        Some("{\"apiVersion\": \"v1\", \"kind\": \"Service\", \"kind\": \"Service\"}"),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("duplicate key \"kind\""), "{err}");
}

/// `--output json`: sources, findings as objects, mutation warnings with their own ids.
#[test]
fn json_results_name_their_source_and_findings() {
    let two = format!(
        "{GOOD}---\n{}",
        GOOD.split("---")
            .nth(1)
            .unwrap()
            .replace("name: db}", "name: web}")
            .replace(
                "image: db,",
                "image: db, env: [{name: POD_NAMESPACE, value: tenant-a}],"
            )
    );
    let (code, out, _) = check(&["-f", "-", "-o", "json"], Some(&two));
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let results = v.as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(
        results[0]["source"],
        serde_json::json!({"file": "-", "document": 2, "line": 6})
    );
    assert_eq!(results[1]["source"]["document"], 4);
    assert_eq!(results[1]["kind"], "StatefulSet");
    assert_eq!(results[1]["name"], "web");
    assert_eq!(results[1]["namespace"], "default");
    let findings = results[1]["findings"].as_array().unwrap();
    let kept = findings
        .iter()
        .find(|f| f["rule"] == "env-kept")
        .unwrap_or_else(|| panic!("{findings:?}"));
    assert_eq!(kept["result"], "warn");
    assert_eq!(kept["mode"], "warn");
    assert!(kept["message"].as_str().unwrap().contains("POD_NAMESPACE"));
    // Every finding has the four fields, with a known result.
    for f in results
        .iter()
        .flat_map(|r| r["findings"].as_array().unwrap())
    {
        for k in ["rule", "mode", "result", "message"] {
            assert!(f[k].is_string(), "{k} in {f}");
        }
        assert!(
            ["fail", "warn", "not-checked"].contains(&f["result"].as_str().unwrap()),
            "{f}"
        );
    }
    // No PodDisruptionBudget in the input: disruption-budget is not checked, said as such.
    let three = two.replace("replicas: 1", "replicas: 3");
    let (_, out, _) = check(&["-f", "-", "-o", "json"], Some(&three));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pdb = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "disruption-budget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(pdb["result"], "not-checked", "{out}");
    assert!(!pdb["message"].as_str().unwrap().starts_with("not checked"));

    // The report: "not checked" once for both objects, and a summary line last.
    let (_, out, _) = check(&["-f", "-"], Some(&three));
    assert_eq!(out.matches("[disruption-budget]").count(), 1, "{out}");
    assert!(
        out.contains(
            "[disruption-budget] PodDisruptionBudgets (no PodDisruptionBudget in the input): default/db, default/web\n"
        ),
        "{out}"
    );
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("2 StatefulSets checked: 2 allowed, 0 denied, ")
            && last.ends_with("2 not checked"),
        "{out}"
    );
    assert!(out.contains("warn [env-kept]"), "{out}");
}

/// A StorageClass named by a claim and absent from an input that has StorageClasses is said.
#[test]
fn a_storage_class_missing_from_the_input_is_a_finding() {
    let with_claim = GOOD.replace(
        "  template:",
        "  volumeClaimTemplates: [{metadata: {name: data}, spec: {storageClassName: local-storage, accessModes: [ReadWriteOnce]}}]\n  template:",
    );
    let gp3 = "---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: gp3}\nprovisioner: ebs.csi.aws.com\n";
    let (code, out, _) = check(
        &["-f", "-", "-o", "json"],
        Some(&format!("{with_claim}{gp3}")),
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let f = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "local-storage-binding")
        .cloned()
        .unwrap_or_else(|| panic!("no local-storage-binding finding: {out}"));
    assert_eq!(f["result"], "not-checked");
    let m = f["message"].as_str().unwrap();
    assert!(
        m.contains("local-storage") && m.contains("not in the input") && m.contains("gp3"),
        "{m}"
    );
    // With the class in the input: a local provisioner binding Immediate fails the rule.
    let local = "---\napiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: local-storage}\nprovisioner: kubernetes.io/no-provisioner\n";
    let (_, out, _) = check(&["-f", "-"], Some(&format!("{with_claim}{gp3}{local}")));
    assert!(out.contains("warn [local-storage-binding]"), "{out}");
}

/// A weaker anti-affinity term of the user's (weight 1) is kept; the report warns only where the
/// weight changes the outcome: the scheduler normalises the inter-pod score over the nodes, so
/// as the pod's only soft term weight 1 spreads as well as 100, and against another preferred
/// term of weight 50 it loses.
#[test]
fn a_kept_weaker_anti_affinity_term_is_said_only_where_it_weakens_the_spread() {
    let term = "{weight: 1, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: db}}}}";
    let weak = GOOD.replace(
        "    spec:\n      containers:",
        &format!("    spec:\n      affinity: {{podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{term}]}}}}\n      containers:"),
    );
    assert_ne!(weak, GOOD);
    let (code, out, _) = check(&["-f", "-"], Some(&weak));
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("[anti-affinity-kept]"), "{out}");
    assert!(!out.contains("+ preferred pod anti-affinity"), "{out}");
    // With a preferred pod affinity term of weight 50 beside it, weight 1 loses: said, with
    // advice that changes the outcome.
    let outweighed = GOOD.replace(
        "    spec:\n      containers:",
        &format!("    spec:\n      affinity: {{podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{term}]}}, podAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{{weight: 50, podAffinityTerm: {{topologyKey: topology.kubernetes.io/zone, labelSelector: {{matchLabels: {{app: cache}}}}}}}}]}}}}\n      containers:"),
    );
    let (code, out, _) = check(&["-f", "-"], Some(&outweighed));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("warn [anti-affinity-kept] podAntiAffinity term on kubernetes.io/hostname kept at weight 1; other preferred pod (anti-)affinity terms weigh 50: raise its weight above 50"),
        "{out}"
    );
    assert!(!out.contains("+ preferred pod anti-affinity"), "{out}");
}

/// `stsguard check` reports protect-retention like any rule: a protected StatefulSet whose claims
/// would go with it (whenDeleted: Delete) is allowed with the finding at its default mode, and
/// denied when the policy enforces it.
#[test]
fn check_reports_the_retention_of_a_protected_statefulset() {
    let manifest = GOOD.replace(
        "metadata: {name: db}\nspec:\n  replicas: 1",
        "metadata: {name: db, annotations: {stsguard.io/protect: \"true\"}}\nspec:\n  replicas: 1\n  \
         persistentVolumeClaimRetentionPolicy: {whenDeleted: Delete, whenScaled: Retain}\n  \
         volumeClaimTemplates: [{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce]}}]",
    );
    assert_ne!(manifest, GOOD);
    let (code, out, err) = check(&["-f", "-", "-o", "json"], Some(&manifest));
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let found: Vec<&serde_json::Value> = v[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "protect-retention")
        .collect();
    assert_eq!(found.len(), 1, "{out}");
    assert_eq!(found[0]["mode"], "warn");
    assert_eq!(found[0]["result"], "warn");
    assert_eq!(
        found[0]["message"],
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Delete deletes the protected data; use Retain"
    );
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        "validation: {rules: {protect-retention: enforce}}\n",
    )
    .unwrap();
    let (code, out, _) = check(
        &["-f", "-", "--config", policy.to_str().unwrap()],
        Some(&manifest),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DENY [protect-retention]"), "{out}");
}

/// An object that exists already (`kubectl get sts -o yaml`: it has a `metadata.uid`) is judged
/// as it runs, and the report says that what stsguard would add comes at its next pod template
/// change; the same manifest as a new object is judged as the mutation stores it.
#[test]
fn an_existing_statefulset_is_judged_as_it_runs_and_adopted_at_its_next_template_change() {
    // Two replicas sharing a hostPath: stsguard's required anti-affinity spreads a new one.
    let host = GOOD.replace("  replicas: 1\n", "  replicas: 2\n").replace(
        "      containers: [",
        "      volumes: [{name: h, hostPath: {path: /var/db}}]\n      containers: [",
    );
    let (code, out, _) = check(&["-f", "-"], Some(&host));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("  mutation ("), "{out}");
    assert!(out.contains("+ required pod anti-affinity"), "{out}");
    let existing = host.replace(
        "metadata: {name: db}\nspec:\n  replicas",
        "metadata: {name: db, uid: 4d664a41-6291-4621-b86c-19bd247e16d0}\nspec:\n  replicas",
    );
    assert_ne!(existing, host);
    let (code, out, _) = check(&["-f", "-"], Some(&existing));
    assert_eq!(code, 1, "it runs without the spread: {out}");
    assert!(
        out.contains("  mutation at its next pod template change (")
            && out.contains("+ required pod anti-affinity")
            && out.contains("DENY [hostpath-spread]"),
        "{out}"
    );
}

/// A mutated StatefulSet (as `--output yaml` prints it, or as it is stored) whose roles
/// annotation is gone: the report lists what the mutation takes out again.
#[test]
fn the_report_lists_what_a_removed_annotation_takes_out() {
    let roles = GOOD.replace(
        "metadata: {name: db}\nspec:\n  replicas",
        "metadata: {name: db, annotations: {stsguard.io/roles: \"primary=0,replica=*\"}}\nspec:\n  replicas",
    );
    assert_ne!(roles, GOOD);
    let (code, mutated, _) = check(&["-f", "-", "--output", "yaml"], Some(&roles));
    assert_eq!(code, 0, "{mutated}");
    assert!(mutated.contains("stsguard-role"), "{mutated}");
    let without: String = mutated
        .lines()
        .filter(|l| !l.trim_start().starts_with("stsguard.io/roles:") || l.starts_with("      "))
        .map(|l| format!("{l}\n"))
        .collect();
    let (code, out, _) = check(&["-f", "-"], Some(&without));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("    - init container \"stsguard-role\"")
            && out.contains("    - volume \"stsguard-role\"")
            && out.contains("    - pod label stsguard.io/managed"),
        "{without}\n{out}"
    );
}

/// `GOOD`'s StatefulSet with `n` containers, as JSON (one line).
fn statefulset_with_containers(n: usize) -> String {
    let containers: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"name":"c{i}","image":"db"}}"#))
        .collect();
    format!(
        r#"{{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{{"name":"big","namespace":"ns"}},"spec":{{"serviceName":"db","selector":{{"matchLabels":{{"app":"db"}}}},"template":{{"metadata":{{"labels":{{"app":"db"}}}},"spec":{{"containers":[{}]}}}}}}}}"#,
        containers.join(",")
    )
}

/// Past a bound a StatefulSet is a failing finding (rule `bounds`), as the server denies it:
/// neither mutated nor judged, and the exit code says denied.
#[test]
fn a_statefulset_past_a_bound_is_a_failing_finding() {
    // 300 containers: past the container bound (read into its type, checked before any copy).
    let (code, out, err) = check(&["-f", "-"], Some(&statefulset_with_containers(300)));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("StatefulSet ns/big: DENIED"), "{out}");
    assert!(
        out.contains("mutation: not mutated (past a bound)"),
        "{out}"
    );
    assert!(out.contains("DENY [bounds] not evaluated: "), "{out}");
    assert!(
        out.contains("300 containers, over stsguard's bound of 256"),
        "{out}"
    );
    // 5,000 containers: past the JSON object bound, not read into a type at all.
    let (code, out, _) = check(
        &["-f", "-", "-o", "json"],
        Some(&statefulset_with_containers(5_000)),
    );
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["allowed"], false, "{v}");
    assert_eq!(v[0]["findings"][0]["rule"], "bounds", "{v}");
    assert_eq!(v[0]["findings"][0]["result"], "fail", "{v}");
    let m = v[0]["findings"][0]["message"].as_str().unwrap();
    assert!(m.contains("more than 4096 JSON objects"), "{m}");
    assert_eq!(v[0]["patch"], serde_json::json!([]), "not mutated");
    // Within the bounds: judged as ever.
    let (code, out, _) = check(&["-f", "-"], Some(&statefulset_with_containers(3)));
    assert_eq!(code, 0, "{out}");
}

/// `-f /dev/zero`, or stdin that never ends: read up to the input bound (32 MiB), then a clear
/// error (exit 2), never until out of memory.
#[test]
fn input_past_the_size_bound_is_refused_after_reading_at_most_the_bound() {
    let (code, _, err) = check(&["-f", "/dev/zero"], None);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.trim_end(),
        "stsguard check: /dev/zero: input over 32 MiB (stsguard's bound, docs/bounds.md); split the file"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["check", "-f", "-"])
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stdin: input over 32 MiB"), "{err}");
}

/// More documents (or List items) than the bound (10,000): refused before they are parsed.
#[test]
fn input_past_the_document_bound_is_refused() {
    let docs = "---\n{}\n".repeat(10_001);
    let (code, _, err) = check(&["-f", "-"], Some(&docs));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("-: over 10000 objects (stsguard's bound"),
        "{err}"
    );
    let list = format!(
        r#"{{"apiVersion":"v1","kind":"List","items":[{}{{}}]}}"#,
        r#"{"apiVersion":"v1","kind":"ConfigMap"},"#.repeat(10_000)
    );
    let (code, _, err) = check(&["-f", "-"], Some(&list));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("over 10000 objects"), "{err}");
}
