//! Scenario `install`: `helm install --wait` on a real node (tests/cluster/node.sh: containerd,
//! kubelet, kube-proxy; the API server calls stsguard through its Service), and the very next
//! StatefulSet write — no retry — is admitted and mutated; the same right after a `helm upgrade`
//! that rolls the pods; and after `helm uninstall` no webhook is left to refuse writes.
//!
//! Needs, beside `K8S_BIN_DIR` (with kubelet and kube-proxy, and crictl at its top): root, and
//! containerd, runc, the CNI plugins, iptables and conntrack (Debian: containerd runc
//! containernetworking-plugins iptables conntrack), gcc with static glibc (the sandbox image);
//! without them it says that it did not run. Its own control plane, with the knobs node.sh needs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::harness::{self, say};

/// What this machine lacks to run a real node (empty: it can).
pub fn missing() -> Vec<String> {
    let mut m = Vec::new();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        m.push("not root".to_string());
    }
    for bin in ["containerd", "runc", "iptables", "conntrack", "gcc", "ip"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            m.push(format!("{bin} is not on PATH"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() && !Path::new("/opt/cni/bin/bridge").exists() {
        m.push("no CNI bridge plugin (containernetworking-plugins)".into());
    }
    if let Ok(bins) = harness::k8s_bin_dir() {
        let v = bins.join(format!("v{}", harness::K8S_VERSION));
        for b in ["kubelet", "kube-proxy"] {
            if !v.join(b).is_file() && !v.join(format!("{b}.xz")).is_file() {
                m.push(format!("no {b} in {}", v.display()));
            }
        }
        if !bins.join("crictl").is_file() && !bins.join("crictl.xz").is_file() {
            m.push(format!("no crictl in {}", bins.display()));
        }
    }
    m
}

fn node_ip() -> Option<String> {
    let out = Command::new("sh")
        .args([
            "-c",
            "ip -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1",
        ])
        .output()
        .ok()?;
    let ip = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!ip.is_empty()).then_some(ip)
}

fn script(name: &str, cmd: &str, dir: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    let mut c = Command::new("bash");
    c.arg(harness::cluster_scripts().join(name))
        .arg(cmd)
        .arg(dir)
        .env("K8S_BIN_DIR", harness::k8s_bin_dir().unwrap_or_default())
        .env("K8S_VERSION", harness::K8S_VERSION)
        .stdin(Stdio::null());
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// Stops the node and the control plane however the scenario ends.
struct Node {
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = script("node.sh", "stop", &self.dir, &[]);
        let _ = script("cluster.sh", "stop", &self.dir, &[]);
        if std::thread::panicking() {
            say(format!(
                "e2e install: logs kept in {}",
                self.dir.join("logs").display()
            ));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn run_tool(tool: &str, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(harness::tool(tool))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

const STS: &str = "apiVersion: apps/v1
kind: StatefulSet
metadata: {name: NAME}
spec:
  replicas: 1
  serviceName: NAME
  selector: {matchLabels: {app: NAME}}
  template:
    metadata: {labels: {app: NAME}}
    spec: {containers: [{name: app, image: localhost/none:1, imagePullPolicy: Never}]}
";

/// One StatefulSet CREATE, at once, no retry: admitted, and stored with stsguard's mutation.
fn first_write(kubeconfig: &Path, work: &Path, ns: &str) -> Result<(), String> {
    let (ok, out) = run_tool("kubectl", kubeconfig, &["create", "namespace", ns]);
    if !ok {
        return Err(format!("create namespace {ns}: {out}"));
    }
    let file = work.join(format!("{ns}.yaml"));
    std::fs::write(&file, STS.replace("NAME", "db")).unwrap();
    let (ok, out) = run_tool(
        "kubectl",
        kubeconfig,
        &["-n", ns, "create", "-f", file.to_str().unwrap()],
    );
    if !ok {
        return Err(format!("the first StatefulSet write was refused: {out}"));
    }
    let (_, env) = run_tool(
        "kubectl",
        kubeconfig,
        &[
            "-n",
            ns,
            "get",
            "sts",
            "db",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[*].name}",
        ],
    );
    if env.contains("POD_NAME") {
        Ok(())
    } else {
        Err(format!(
            "admitted, but not mutated by stsguard: env {env:?}"
        ))
    }
}

pub fn run() -> String {
    let bins = harness::k8s_bin_dir().expect("checked by the caller");
    let ip = node_ip().expect("an IPv4 address on eth0 (node.sh's default node IP)");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(format!("install-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let node = Node { dir: dir.clone() };
    let t = Instant::now();
    let out = script(
        "cluster.sh",
        "start",
        &dir,
        &[
            ("SCHEDULER", "1"),
            ("BIND", "0.0.0.0"),
            ("ADVERTISE", &ip),
            ("RECONCILER", "lease"),
            ("WIPE", "1"),
        ],
    );
    assert!(
        out.status.success(),
        "cluster.sh start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stsguard's image, from the binary under test (the chart runs it as 65532).
    let image = dir.join("stsguard.tar");
    let st = Command::new("python3")
        .arg(harness::cluster_scripts().join("image.py"))
        .args(["--tag", "localhost/stsguard:e2e", "--out"])
        .arg(&image)
        .arg(env!("CARGO_BIN_EXE_stsguard"))
        .args(["--user", "65532"])
        .status()
        .unwrap();
    assert!(st.success(), "image.py");
    let out = script(
        "node.sh",
        "start",
        &dir,
        &[("IMAGES", image.to_str().unwrap())],
    );
    assert!(
        out.status.success(),
        "node.sh start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kc = dir.join("kubeconfig");
    say(format!(
        "e2e install: control plane and node from {} up in {:.1} s",
        bins.display(),
        t.elapsed().as_secs_f64()
    ));
    let chart = harness::repo().join("charts/stsguard");
    let helm = |verb: &str, extra: &[&str]| {
        let mut args = vec![
            verb,
            "stsguard",
            chart.to_str().unwrap(),
            "-n",
            "stsguard",
            "--wait",
            "--timeout",
            "5m",
            "--set",
            "image.repository=localhost/stsguard",
            "--set",
            "image.tag=e2e",
            "--set",
            "image.pullPolicy=Never",
        ];
        if verb == "install" {
            args.push("--create-namespace");
        }
        args.extend_from_slice(extra);
        let t = Instant::now();
        let (ok, out) = run_tool("helm", &kc, &args);
        assert!(ok, "helm {verb}: {out}");
        t.elapsed()
    };

    // Install, then at once a write: admitted and mutated.
    let installed_in = helm("install", &[]);
    first_write(&kc, &dir, "after-install").unwrap_or_else(|e| panic!("after helm install: {e}"));
    // An upgrade that rolls every replica, then at once a write.
    let upgraded_in = helm("upgrade", &["--set", "podAnnotations.rolled=yes"]);
    first_write(&kc, &dir, "after-upgrade").unwrap_or_else(|e| panic!("after helm upgrade: {e}"));
    // The install check's Job is gone once it succeeded.
    let (_, jobs) = run_tool(
        "kubectl",
        &kc,
        &["-n", "stsguard", "get", "jobs", "-o", "name"],
    );
    assert!(
        !jobs.contains("probe"),
        "the succeeded hook Job is deleted: {jobs}"
    );
    // Uninstalled: the webhook configurations go with the release; writes are not refused.
    let (ok, out) = run_tool(
        "helm",
        &kc,
        &["uninstall", "stsguard", "-n", "stsguard", "--wait"],
    );
    assert!(ok, "helm uninstall: {out}");
    let (_, hooks) = run_tool(
        "kubectl",
        &kc,
        &[
            "get",
            "mutatingwebhookconfigurations,validatingwebhookconfigurations",
            "-o",
            "name",
        ],
    );
    assert!(!hooks.contains("stsguard"), "left after uninstall: {hooks}");
    let file = dir.join("after-uninstall.yaml");
    std::fs::write(&file, STS.replace("NAME", "db2")).unwrap();
    let (ok, out) = run_tool(
        "kubectl",
        &kc,
        &[
            "-n",
            "after-install",
            "create",
            "-f",
            file.to_str().unwrap(),
        ],
    );
    assert!(ok, "a write after uninstall: {out}");
    drop(node);
    format!(
        "helm install --wait {:.1} s and upgrade --wait {:.1} s, each followed at once by an admitted, mutated StatefulSet write; nothing left after uninstall",
        installed_in.as_secs_f64(),
        upgraded_in.as_secs_f64()
    )
}
