//! End to end: stsguard against a REAL Kubernetes v1.28 API server.
//!
//! Runs only where the Kubernetes server binaries are given: `K8S_BIN_DIR` names a folder with
//! `v1.28/kube-apiserver`, `kube-controller-manager` and `kube-scheduler` (plain or `.xz`, e.g.
//! the server binaries of an upstream release). No package registry ships them, so without
//! `K8S_BIN_DIR` every cluster test says loudly, once, that it did not run, and passes (CI here
//! runs without them). With `K8S_BIN_DIR` set, a cluster that cannot start fails the test under
//! `CI=true` and is reported and passed over otherwise. The control plane is started by
//! `tests/cluster/cluster.sh`; it also needs etcd on PATH (Debian `etcd-server`) and helm and
//! kubectl in `.tools/bin` (`bash .ci/install-tools.sh`). What a real API server proved that
//! the tests without it must also show is carried by the in-process tests (the captured reviews
//! in `tests/fixtures/admission`, the watch stand-in of `tests/watch_lookups.rs`).
//!
//! Each scenario is its own test, runnable by name (`cargo test --test e2e adoption`). One
//! cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler on 127.0.0.1) is
//! shared by the scenarios of the process (`e2e/shared.rs`): the first to run starts it, and it
//! is stopped when the process exits (a hook at exit, which fails the run if anything of it is
//! left running), on SIGINT/SIGTERM (a hook), or by the next run when this one was killed. stsguard runs as a
//! process (`stsguard serve`) with a certificate from `stsguard certs --san 127.0.0.1`, the
//! webhook configurations, ClusterRole and policy rendered from the chart (`helm template`), and
//! the token of a ServiceAccount bound to that ClusterRole (so a missing RBAC verb fails here).
//! After each scenario, the checks that hold whichever ran: no watch refused for lack of a
//! permission, both webhooks called, no review from an excluded namespace or unreadable. The
//! scenarios run as concurrently as the test harness runs tests, each in its own namespaces:
//!
//! 1. `fixtures`: every fixture is created with kubectl, admitted and stored with stsguard's
//!    mutations; re-applying it (client-side and server-side) causes no rollout.
//! 2. `roles`: role labels on the StatefulSet controller's own pods, role placement and required
//!    anti-affinity through the real scheduler, and a rolling update, the test playing kubelet.
//! 3. `scale`: `kubectl scale` and the scale subresource judged from the watch cache, delete
//!    protection of StatefulSets (one by one, by collection, their namespace), and dry-run
//!    warnings reaching the client.
//! 4. `caches`: a Service and a PodDisruptionBudget created after start are seen by the next review.
//! 5. `audit`: StatefulSets created before the webhooks (seeded by the setup) in `stsguard audit`
//!    and in PolicyReports written by one of two servers elected through a Lease.
//! 6. `outage`: a server of the scenario's own stopped and started again: StatefulSet writes
//!    refused meanwhile, pods created without waiting, their role labels repaired once it is back.
//! 7. `protect`: a protected StatefulSet keeps its namespace (every object beside it stays) and
//!    the claims it uses; unprotected, the namespace deletes completely.
//! 8. `adoption`: a StatefulSet created before the webhooks, labelled and annotated afterwards
//!    without a rollout (generation 1), adopted by a template change; roles added and removed.

#[path = "e2e/adoption.rs"]
mod adoption;
#[path = "e2e/audit.rs"]
mod audit;
#[path = "e2e/caches.rs"]
mod caches;
#[path = "e2e/fixtures.rs"]
mod fixtures;
#[path = "e2e/harness.rs"]
mod harness;
#[path = "e2e/install.rs"]
mod install;
#[path = "e2e/kube_util.rs"]
mod kube_util;
#[path = "e2e/outage.rs"]
mod outage;
#[path = "e2e/protect.rs"]
mod protect;
#[path = "e2e/roles.rs"]
mod roles;
#[path = "e2e/scale.rs"]
mod scale;
#[path = "e2e/setup.rs"]
mod setup;
#[path = "e2e/shared.rs"]
mod shared;

mod common;

use std::process::Command;

use shared::scenario;

/// `helm install --wait` on a real node, and the first StatefulSet write right after it (and
/// after an upgrade) is admitted, with no retry ([`install`]).
#[test]
fn the_first_write_after_helm_install_on_a_real_node_is_admitted() {
    if let Err(why) = harness::k8s_bin_dir() {
        harness::say(format!(
            "e2e install: DID NOT RUN: no Kubernetes binaries here: {why}"
        ));
        return;
    }
    // A real node needs more than the control plane's binaries: where they are missing, the
    // scenario says so and does not run (also under CI: K8S_BIN_DIR alone does not ask for it).
    let mut missing = install::missing();
    missing.extend(harness::missing_prerequisites());
    if !missing.is_empty() {
        harness::say(format!(
            "e2e install: DID NOT RUN: a real node cannot start here: {}",
            missing.join("; ")
        ));
        return;
    }
    let _alone = shared::without_the_shared_cluster();
    let summary = install::run();
    harness::say(format!("e2e install: PASSED: {summary}"));
}

#[test]
fn fixtures() {
    scenario("fixtures", fixtures::run);
}

#[test]
fn roles() {
    scenario("roles", roles::run);
}

#[test]
fn scale() {
    scenario("scale", scale::run);
}

#[test]
fn caches() {
    scenario("caches", caches::run);
}

#[test]
fn audit() {
    scenario("audit", audit::run);
}

#[test]
fn outage() {
    scenario("outage", outage::run);
}

#[test]
fn protect() {
    scenario("protect", protect::run);
}

#[test]
fn adoption() {
    scenario("adoption", adoption::run);
}

/// `stsguard certs --san`: the certificate is valid for the extra IP address and DNS name (the
/// end-to-end test relies on it: the API server calls https://127.0.0.1:<port>). No cluster.
#[test]
fn certs_san_adds_ip_and_dns_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args([
            "certs",
            "--service",
            "hook",
            "--namespace",
            "sys",
            "--days",
            "1",
        ])
        .args(["--san", "127.0.0.1", "--san", "hook.example", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pem = std::fs::read(dir.path().join("tls.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("a SAN");
    use x509_parser::extensions::GeneralName;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for n in &san.value.general_names {
        match n {
            GeneralName::DNSName(d) => dns.push(d.to_string()),
            GeneralName::IPAddress(b) => ips.push(b.to_vec()),
            _ => {}
        }
    }
    assert!(dns.contains(&"hook.sys.svc".to_string()), "{dns:?}");
    assert!(dns.contains(&"hook.example".to_string()), "{dns:?}");
    assert_eq!(ips, vec![vec![127u8, 0, 0, 1]], "127.0.0.1 as an IP SAN");
    // Without --san: the Service names only.
    let plain = tempfile::tempdir().unwrap();
    let st = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["certs", "--days", "1", "--out"])
        .arg(plain.path())
        .status()
        .unwrap();
    assert!(st.success());
    let pem = std::fs::read(plain.path().join("tls.crt")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let san = cert.subject_alternative_name().unwrap().expect("a SAN");
    assert!(
        !san.value
            .general_names
            .iter()
            .any(|n| matches!(n, GeneralName::IPAddress(_))),
        "no IP SAN unless asked"
    );
}

/// `stsguard audit` without a reachable cluster or with a bad policy: exit 2 and a message that
/// says what to fix; `-n` and `-A` exclude each other. No cluster.
#[test]
fn audit_cannot_read_the_cluster_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such.kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["audit", "-A", "--kubeconfig"])
        .arg(&missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("stsguard audit: cannot read") && stderr.contains("no-such.kubeconfig"),
        "{stderr}"
    );
    // It says which policy it judges with: without --config, not the installed one.
    assert!(
        stderr.contains("judging with the built-in policy (no --config)")
            && stderr.contains("--config policy.yaml"),
        "{stderr}"
    );
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, "onError: deny\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["audit", "-A", "--kubeconfig"])
        .arg(&missing)
        .arg("--config")
        .arg(&good)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("judging with the policy in {}", good.display())),
        "{stderr}"
    );
    // A kubeconfig whose server does not answer.
    let kc = dir.path().join("dead.kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u, namespace: ns}}]\n\
         current-context: x\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["audit", "--kubeconfig"])
        .arg(&kc)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot list StatefulSets in namespace ns"),
        "the context's namespace, and what failed: {stderr}"
    );
    let policy = dir.path().join("p.yaml");
    std::fs::write(&policy, "audit: {interval: soon}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["audit", "--config"])
        .arg(&policy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("audit.interval"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["audit", "-A", "-n", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
