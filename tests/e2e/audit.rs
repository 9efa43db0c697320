//! Scenario `audit`: what already runs. StatefulSets created before the webhooks are registered
//! ([`seed`], called by the setup: an even quorum, a shared claim, one without its governing
//! Service, a clean one) are judged by `stsguard audit -A` (rules and exit codes as `check`) and
//! by `stsguard serve`'s background audit: without the PolicyReport CRD, one log line and the
//! gauges; with it (installed from `tests/fixtures/policyreport-crd.yaml`), two servers with the
//! chart's RBAC for `audit.policyReports=true` (a second release, `stsguard-audit`) elect one
//! writer through the Lease; the reports follow a fix and a deletion within an interval, and the
//! other server takes over when the writer goes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaimVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::harness::{self, Stsguard, eventually, say};
use crate::kube_util;
use crate::setup::Ctx;

/// The audited namespace (three StatefulSets with findings) and a clean one.
pub const NS: &str = "e2e-audit";
pub const CLEAN_NS: &str = "e2e-audit-clean";
/// The second release (RBAC only; the servers run as processes).
const RELEASE: &str = "stsguard-audit";
const RELEASE_NS: &str = "e2e-audit-system";
/// The background audit's interval in this test.
const INTERVAL: Duration = Duration::from_secs(2);
/// Startup slack on top of an interval: the process's watch caches sync, the first Lease round.
const SLACK: Duration = Duration::from_secs(8);

fn service(name: &str) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pdb(name: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_string(), name.to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Before the webhooks exist: objects the webhook would deny (`even`, `shared`) or warn about
/// (`nosvc`), and a clean one in its own namespace.
pub async fn seed(client: &Client) {
    kube_util::create_namespace(client, NS).await;
    kube_util::create_namespace(client, CLEAN_NS).await;
    let pp = PostParams::default();
    let even = kube_util::statefulset("even", 4, &[("stsguard.io/quorum", "true")]);
    let mut shared = kube_util::statefulset("shared", 2, &[]);
    {
        let pod = shared
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .unwrap();
        pod.volumes = Some(vec![Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "shared-data".into(),
                ..Default::default()
            }),
            ..Default::default()
        }]);
        pod.containers[0].volume_mounts = Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]);
    }
    let nosvc = kube_util::statefulset("nosvc", 1, &[]);
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS);
    for (s, with_service) in [(&even, true), (&shared, true), (&nosvc, false)] {
        let name = s.metadata.name.clone().unwrap();
        sts.create(&pp, s).await.unwrap();
        if with_service {
            Api::<Service>::namespaced(client.clone(), NS)
                .create(&pp, &service(&name))
                .await
                .unwrap();
            Api::<PodDisruptionBudget>::namespaced(client.clone(), NS)
                .create(&pp, &pdb(&name))
                .await
                .unwrap();
        }
    }
    Api::<StatefulSet>::namespaced(client.clone(), CLEAN_NS)
        .create(&pp, &kube_util::statefulset("clean", 1, &[]))
        .await
        .unwrap();
    Api::<Service>::namespaced(client.clone(), CLEAN_NS)
        .create(&pp, &service("clean"))
        .await
        .unwrap();
}

/// `stsguard audit <args>`: exit code, stdout, stderr.
fn audit_cli(kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .arg("audit")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// rule → result (`fail`, `warn`, `not-checked`) of one `--output json` element: findings as
/// objects `{rule, result}`, or as `violations` (objects) and `warnings`
/// (`StatefulSet ns/name: [rule] text`).
fn rules_of(v: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(findings) = v["findings"].as_array() {
        for f in findings {
            out.insert(
                f["rule"].as_str().unwrap_or("").to_string(),
                f["result"].as_str().unwrap_or("").to_string(),
            );
        }
        return out;
    }
    for f in v["violations"].as_array().into_iter().flatten() {
        out.insert(f["rule"].as_str().unwrap().to_string(), "fail".to_string());
    }
    for w in v["warnings"].as_array().into_iter().flatten() {
        let w = w.as_str().unwrap();
        // `StatefulSet ns/name: [rule] text`
        if let Some(rest) = w.find(": [").map(|i| &w[i + 3..]) {
            if let Some(end) = rest.find(']') {
                let result = if rest[end..].starts_with("] not checked") {
                    "not-checked"
                } else {
                    "warn"
                };
                out.insert(rest[..end].to_string(), result.to_string());
            }
        }
    }
    out
}

fn find<'a>(all: &'a [serde_json::Value], ns: &str, name: &str) -> &'a serde_json::Value {
    all.iter()
        .find(|c| c["namespace"] == ns && c["name"] == name)
        .unwrap_or_else(|| panic!("stsguard audit -A lists no {ns}/{name}"))
}

/// The report of `ns`, if any (kubectl as the admin).
async fn report(ctx: &Ctx, ns: &str) -> Result<Option<serde_json::Value>, String> {
    let r = ctx
        .kubectl
        .run(&[
            "-n",
            ns,
            "get",
            "policyreports.wgpolicyk8s.io",
            "stsguard",
            "-o",
            "json",
            "--show-managed-fields",
        ])
        .await;
    if r.ok {
        return serde_json::from_str(&r.stdout)
            .map(Some)
            .map_err(|e| e.to_string());
    }
    if r.stderr.contains("NotFound") || r.stderr.contains("not found") {
        return Ok(None);
    }
    Err(r.stderr)
}

/// (object, rule, result) of a report's results.
fn results(report: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    report["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["resources"][0]["name"].as_str().unwrap_or("").to_string(),
                r["rule"].as_str().unwrap_or("").to_string(),
                r["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    items
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

async fn metrics(s: &Stsguard) -> String {
    reqwest::Client::new()
        .get(format!("http://{}/metrics", s.metrics_addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("stsguard /metrics")
        .text()
        .await
        .unwrap()
}

/// The value of `stsguard_audit_violations{rule,mode,namespace}`.
fn violations(text: &str, rule: &str, mode: &str, ns: &str) -> Option<f64> {
    let key =
        format!("stsguard_audit_violations{{rule=\"{rule}\",mode=\"{mode}\",namespace=\"{ns}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

/// The identity a server elects under (its log line when PolicyReports are on).
fn identity(s: &Stsguard) -> Option<String> {
    s.log_lines("audit: PolicyReports on; electing the writer")
        .first()
        .and_then(|v| v["identity"].as_str().map(str::to_string))
}

fn acquired(s: &Stsguard) -> usize {
    s.log_lines("audit lease acquired: this replica writes the PolicyReports")
        .len()
}

fn writes(s: &Stsguard) -> Vec<serde_json::Value> {
    s.log_lines("PolicyReports written")
}

fn write_policy(work: &Path, name: &str, text: &str) -> PathBuf {
    let p = work.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn spawn_server(
    ctx: &Ctx,
    kubeconfig: &Path,
    name: &str,
    policy: &Path,
    extra: &[&str],
) -> Stsguard {
    let ca = ctx.work.join(format!("{name}-ca.pem"));
    let mut args = vec![
        "serve",
        "--dev",
        "--dev-ca-file",
        ca.to_str().unwrap(),
        "--addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--config",
        policy.to_str().unwrap(),
        "--lease-duration",
        "6",
    ];
    args.extend_from_slice(extra);
    Stsguard::spawn(&args, kubeconfig, &ctx.work.join(format!("{name}.pid")))
}

/// The chart's RBAC for `audit.policyReports=true` as a second release, its policy file, and a
/// kubeconfig with its ServiceAccount's token whose context namespace is the release's.
async fn audit_release(ctx: &Ctx) -> (PathBuf, PathBuf) {
    let docs = harness::helm_template(
        RELEASE,
        RELEASE_NS,
        &[
            "--set",
            "audit.policyReports=true",
            "--set",
            &format!("audit.interval={}s", INTERVAL.as_secs()),
            "--set",
            "certs.mode=secret",
            "--set",
            "certs.secret.name=unused",
            "--set",
            "certs.secret.caBundle=unused",
        ],
    );
    kube_util::create_namespace(&ctx.client, RELEASE_NS).await;
    let rbac: Vec<serde_json::Value> = docs
        .iter()
        .filter(|d| {
            [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ]
            .contains(&d["kind"].as_str().unwrap_or(""))
        })
        .cloned()
        .collect();
    let kinds: Vec<String> = rbac
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        kinds.contains(&"Role/stsguard-audit-audit-lease".to_string())
            && kinds.contains(&"ClusterRole/stsguard-audit-policyreports".to_string()),
        "{kinds:?}"
    );
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": rbac});
    let file = ctx.work.join("audit-rbac.json");
    std::fs::write(&file, list.to_string()).unwrap();
    let r = ctx
        .kubectl
        .run(&["apply", "-f", file.to_str().unwrap()])
        .await;
    assert!(r.ok, "kubectl apply the audit release's RBAC: {r:?}");
    let policy_text = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["policy.yaml"].as_str())
        .expect("the chart's policy ConfigMap")
        .to_string();
    let policy = write_policy(&ctx.work, "audit-policy.yaml", &policy_text);
    let p = stsguard::policy::Policy::load(&policy).unwrap();
    assert!(
        p.audit.policy_reports && p.audit.interval == INTERVAL,
        "{p:?}"
    );

    // The Lease goes into the server's own namespace: here, the context's.
    let kubeconfig = crate::setup::service_account_kubeconfig(
        &ctx.client,
        &ctx.kubectl.kubeconfig,
        (RELEASE_NS, RELEASE),
        Some(RELEASE_NS),
        &ctx.work,
        "audit-sa",
    )
    .await;
    (kubeconfig, policy)
}

pub async fn run(ctx: Arc<Ctx>) -> String {
    let client = ctx.client.clone();
    let admin = ctx.kubectl.kubeconfig.clone();

    // 1. `stsguard audit`: check's JSON, rules and exit codes, over the live cluster.
    let t = Instant::now();
    let (code, stdout, stderr) = audit_cli(&admin, &["-A", "--output", "json"]);
    let cli_secs = t.elapsed().as_secs_f64();
    assert_eq!(
        code, 1,
        "an enforced rule fails on existing objects: exit 1; stderr: {stderr}"
    );
    assert!(
        stderr.contains("StatefulSet(s) in") && stderr.contains("would be denied"),
        "progress and a summary on stderr: {stderr}"
    );
    let all: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    /// namespace, name, (rule, result)s, allowed
    type Expected<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);
    let expect: [Expected; 4] = [
        (NS, "even", &[("quorum-odd", "fail")], false),
        (NS, "shared", &[("shared-claim", "fail")], false),
        (NS, "nosvc", &[("governing-service", "warn")], true),
        (CLEAN_NS, "clean", &[], true),
    ];
    for (ns, name, rules, allowed) in expect {
        let c = find(&all, ns, name);
        let want: BTreeMap<String, String> = rules
            .iter()
            .map(|(r, x)| (r.to_string(), x.to_string()))
            .collect();
        assert_eq!(rules_of(c), want, "{ns}/{name}: {c}");
        assert_eq!(c["allowed"], allowed, "{ns}/{name}");
        // Created before the webhooks: the mutation preview has something to add, at the
        // next template change.
        assert!(
            c["patch"].as_array().is_some_and(|p| !p.is_empty()),
            "{ns}/{name}: the mutation its next template change would get"
        );
    }
    let (code, stdout, _) = audit_cli(&admin, &["-n", CLEAN_NS]);
    assert_eq!(code, 0, "nothing enforced fails in {CLEAN_NS}: {stdout}");
    assert!(
        stdout.contains(&format!("StatefulSet {CLEAN_NS}/clean: allowed"))
            && stdout.contains("  mutation at its next pod template change ("),
        "{stdout}"
    );
    let (code, stdout, _) = audit_cli(&admin, &["-n", NS]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains(&format!("StatefulSet {NS}/even: DENIED"))
            && stdout.contains("DENY [quorum-odd]")
            && stdout.contains("DENY [shared-claim]"),
        "{stdout}"
    );
    // The server's excluded namespaces are passed over, as the webhook never sees them.
    let (code, stdout, _) = audit_cli(&admin, &["-n", "kube-system"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        !stdout.contains("StatefulSet kube-system/")
            && stdout.contains("no StatefulSet to audit in namespace kube-system"),
        "{stdout}"
    );
    say(format!(
        "e2e audit: stsguard audit -A --output json: exit 1, {} StatefulSets, even/shared denied, nosvc warned, clean allowed ({cli_secs:.2} s)",
        all.len()
    ));

    // 2. Without the PolicyReport CRD: one clear log line, and the gauges.
    let probe_ns = "e2e-audit-probe";
    kube_util::create_namespace(&client, probe_ns).await;
    let probe_policy = write_policy(
        &ctx.work,
        "audit-probe-policy.yaml",
        "audit: {interval: 1s, policyReports: true}\n",
    );
    let probe = spawn_server(
        &ctx,
        &admin,
        "audit-probe",
        &probe_policy,
        &["--lease-namespace", probe_ns],
    );
    eventually("the audit's gauges without the CRD", 20, || {
        let probe = &probe;
        async move {
            let m = metrics(probe).await;
            let runs = probe.log_lines("audit").len();
            match violations(&m, "quorum-odd", "enforce", NS) {
                Some(v) if v == 1.0 && runs >= 3 => Ok(()),
                other => Err(format!("{other:?} after {runs} runs")),
            }
        }
    })
    .await;
    let missing: Vec<String> = probe
        .log()
        .lines()
        .filter(|l| {
            l.contains("PolicyReport CRD (policyreports.wgpolicyk8s.io, v1alpha2) is not installed")
        })
        .map(str::to_string)
        .collect();
    assert_eq!(
        missing.len(),
        1,
        "one log line however many runs: {missing:?}"
    );
    assert!(writes(&probe).is_empty());
    drop(probe);
    say(format!(
        "e2e audit: no CRD: gauges only, and one log line: {}",
        missing[0]
    ));

    // 3. The CRD, the second release's RBAC, two servers.
    let crd = harness::repo().join("tests/fixtures/policyreport-crd.yaml");
    let r = ctx
        .kubectl
        .run(&["apply", "-f", crd.to_str().unwrap()])
        .await;
    assert!(r.ok, "{r:?}");
    let r = ctx
        .kubectl
        .run(&[
            "wait",
            "--for",
            "condition=established",
            "--timeout=30s",
            "crd/policyreports.wgpolicyk8s.io",
        ])
        .await;
    assert!(r.ok, "{r:?}");
    let (sa_kubeconfig, policy) = audit_release(&ctx).await;
    let started = Instant::now();
    let a = spawn_server(&ctx, &sa_kubeconfig, "audit-a", &policy, &[]);
    let b = spawn_server(&ctx, &sa_kubeconfig, "audit-b", &policy, &[]);
    let first = eventually(
        "the PolicyReport of e2e-audit",
        (INTERVAL + SLACK).as_secs(),
        || {
            let ctx = &ctx;
            async move {
                match report(ctx, NS).await? {
                    Some(r)
                        if results(&r)
                            == set(&[
                                ("even", "quorum-odd", "fail"),
                                ("nosvc", "governing-service", "warn"),
                                ("shared", "shared-claim", "fail"),
                            ]) =>
                    {
                        Ok(r)
                    }
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    let first_secs = started.elapsed().as_secs_f64();
    assert_eq!(
        first["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "stsguard"
    );
    assert_eq!(first["summary"]["fail"], 2);
    assert_eq!(first["summary"]["warn"], 1);
    assert_eq!(first["summary"]["error"], 0);
    assert!(
        first["summary"]["pass"].as_u64().unwrap() > 20,
        "{}",
        first["summary"]
    );
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS);
    for r in first["results"].as_array().unwrap() {
        assert_eq!(r["policy"], "stsguard");
        assert_eq!(r["source"], "stsguard");
        let res = &r["resources"][0];
        assert_eq!(
            (res["apiVersion"].as_str(), res["kind"].as_str()),
            (Some("apps/v1"), Some("StatefulSet"))
        );
        let live = sts.get(res["name"].as_str().unwrap()).await.unwrap();
        assert_eq!(res["uid"].as_str(), live.metadata.uid.as_deref(), "{r}");
        let severity = if r["result"] == "fail" {
            "high"
        } else {
            "medium"
        };
        assert_eq!(r["severity"], severity, "{r}");
        assert!(
            r["timestamp"]["seconds"].as_u64().unwrap() > 1_700_000_000,
            "{r}"
        );
        assert!(!r["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(
        report(&ctx, CLEAN_NS).await.unwrap(),
        None,
        "no report where nothing fails"
    );
    let polr = ctx.kubectl.run(&["get", "polr", "-A"]).await;
    let yaml = ctx
        .kubectl
        .run(&["-n", NS, "get", "polr", "stsguard", "-o", "yaml"])
        .await;
    say(format!(
        "e2e audit: PolicyReport {NS}/stsguard in {first_secs:.1} s after the two servers' start (interval {} s)\n$ kubectl get polr -A\n{}$ kubectl -n {NS} get polr stsguard -o yaml\n{}",
        INTERVAL.as_secs(),
        polr.stdout,
        yaml.stdout
    ));

    // One writer: one server holds the Lease and logged the writes; the report has one manager.
    let (ida, idb) = (identity(&a).unwrap(), identity(&b).unwrap());
    assert_ne!(ida, idb);
    let lease = Api::<Lease>::namespaced(client.clone(), RELEASE_NS)
        .get(stsguard::audit::lease::NAME)
        .await
        .unwrap();
    let holder = lease.spec.unwrap().holder_identity.unwrap();
    let (leader, follower, follower_id) = if holder == ida {
        (a, b, idb)
    } else {
        assert_eq!(holder, idb, "the Lease is held by one of the two");
        (b, a, ida)
    };
    assert_eq!((acquired(&leader), acquired(&follower)), (1, 0));
    eventually("the leader's log of its writes", 5, || {
        let leader = &leader;
        async move {
            if writes(leader).is_empty() {
                Err(harness::tail(&leader.log(), 10))
            } else {
                Ok(())
            }
        }
    })
    .await;
    assert!(
        writes(&follower).is_empty(),
        "only the leader writes: {:?}",
        writes(&follower)
    );
    let managers: Vec<(String, String)> = first["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap().to_string(),
                m["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(managers, [("stsguard".to_string(), "Apply".to_string())]);
    // Both compute the gauges.
    for s in [&leader, &follower] {
        let m = metrics(s).await;
        assert_eq!(
            violations(&m, "shared-claim", "enforce", NS),
            Some(1.0),
            "{m}"
        );
        assert_eq!(violations(&m, "governing-service", "warn", NS), Some(1.0));
        assert!(m.contains("stsguard_audit_last_run_timestamp_seconds"));
        assert!(m.contains("stsguard_audit_duration_seconds"));
    }

    // 4. Fixed: 3 members (through the webhooks, which allow it) clears the quorum result.
    let t = Instant::now();
    sts.patch(
        "even",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    eventually(
        "the fixed quorum's result to go",
        (INTERVAL + SLACK).as_secs(),
        || {
            let ctx = &ctx;
            async move {
                let r = report(ctx, NS).await?.ok_or("no report")?;
                let got = results(&r);
                if got
                    == set(&[
                        ("nosvc", "governing-service", "warn"),
                        ("shared", "shared-claim", "fail"),
                    ])
                    && r["summary"]["fail"] == 1
                {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            }
        },
    )
    .await;
    let fixed_secs = t.elapsed().as_secs_f64();
    // 5. Deleted: its result goes.
    let t = Instant::now();
    sts.delete("shared", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "the deleted StatefulSet's result to go",
        (INTERVAL + SLACK).as_secs(),
        || {
            let ctx = &ctx;
            async move {
                let got = results(&report(ctx, NS).await?.ok_or("no report")?);
                if got == set(&[("nosvc", "governing-service", "warn")]) {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            }
        },
    )
    .await;
    let deleted_secs = t.elapsed().as_secs_f64();
    // Every replica's gauges follow at its own next run: fixed and deleted series are gone.
    eventually(
        "the follower's gauges to drop the fixed and deleted",
        (INTERVAL + SLACK).as_secs(),
        || {
            let follower = &follower;
            async move {
                let m = metrics(follower).await;
                let left = (
                    violations(&m, "quorum-odd", "enforce", NS),
                    violations(&m, "shared-claim", "enforce", NS),
                    violations(&m, "governing-service", "warn", NS),
                );
                if left == (None, None, Some(1.0)) {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            }
        },
    )
    .await;

    // 6. The writer goes: the other takes the Lease over and deletes the report once the last
    // result is fixed (nosvc gets its Service).
    let t = Instant::now();
    drop(leader);
    Api::<Service>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &service("nosvc"))
        .await
        .unwrap();
    eventually(
        "the other server to take over and delete the empty report",
        30,
        || {
            let ctx = &ctx;
            async move {
                match report(ctx, NS).await? {
                    None => Ok(()),
                    Some(r) => Err(format!("{:?}", results(&r))),
                }
            }
        },
    )
    .await;
    let takeover_secs = t.elapsed().as_secs_f64();
    assert_eq!(
        acquired(&follower),
        1,
        "{}",
        harness::tail(&follower.log(), 20)
    );
    assert!(
        writes(&follower).iter().any(|w| w["deleted"] == 1),
        "{:?}",
        writes(&follower)
    );
    let lease = Api::<Lease>::namespaced(client.clone(), RELEASE_NS)
        .get(stsguard::audit::lease::NAME)
        .await
        .unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(follower_id.as_str()));
    assert!(spec.lease_transitions.unwrap_or(0) >= 1);
    drop(follower);
    say(format!(
        "e2e audit: fix seen in {fixed_secs:.1} s, deletion in {deleted_secs:.1} s, takeover and empty report deleted in {takeover_secs:.1} s"
    ));
    format!(
        "stsguard audit -A exit 1 with the right rules; report {first_secs:.1} s after start; fix {fixed_secs:.1} s, delete {deleted_secs:.1} s, takeover {takeover_secs:.1} s (interval {} s, lease 6 s)",
        INTERVAL.as_secs()
    )
}
