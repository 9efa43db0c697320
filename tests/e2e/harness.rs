//! The end-to-end harness: the throw-away control plane (`tests/cluster/cluster.sh`, running the
//! Kubernetes binaries of `K8S_BIN_DIR`), the `stsguard serve` process, kubectl and helm from
//! `.tools/bin`, and small helpers.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::{Launch, Proc};
pub use crate::common::{contains, eventually, tail};

/// The repository.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The control-plane scripts (`cluster.sh`, `node.sh`): in the repository.
pub fn cluster_scripts() -> PathBuf {
    repo().join("tests/cluster")
}

/// The real-world StatefulSets (with their Services).
pub fn fixture_statefulsets() -> PathBuf {
    repo().join("tests/fixtures/statefulsets")
}

/// The Kubernetes version the tests run (a folder `v<it>` of `K8S_BIN_DIR`).
pub const K8S_VERSION: &str = "1.28";

/// `K8S_BIN_DIR`: the folder holding the Kubernetes server binaries (`v1.28/kube-apiserver[.xz]`,
/// …). No package registry ships them, so they are the one input from outside the repository.
/// `Err`: why the cluster tests cannot run here.
pub fn k8s_bin_dir() -> Result<PathBuf, String> {
    match std::env::var_os("K8S_BIN_DIR").filter(|v| !v.is_empty()) {
        None => Err(
            "K8S_BIN_DIR is not set (a folder with v1.28/kube-apiserver, kube-controller-manager \
             and kube-scheduler, plain or .xz; see DEVELOPMENT.md)"
                .into(),
        ),
        Some(d) => {
            let dir = PathBuf::from(d);
            let v = dir.join(format!("v{K8S_VERSION}"));
            let has = |b: &str| v.join(b).is_file() || v.join(format!("{b}.xz")).is_file();
            let missing: Vec<&str> = BINARIES.iter().copied().filter(|b| !has(b)).collect();
            if missing.is_empty() {
                Ok(dir)
            } else {
                Err(format!(
                    "K8S_BIN_DIR={} has no {} in {}",
                    dir.display(),
                    missing.join(", "),
                    v.display()
                ))
            }
        }
    }
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

pub fn tool(name: &str) -> PathBuf {
    repo().join(".tools/bin").join(name)
}

/// What is missing to start a cluster here (etcd, helm, kubectl, the script's own needs).
pub fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    for (bin, hint) in [
        ("etcd", "apt-get install -y etcd-server"),
        ("openssl", "apt-get install -y openssl"),
        ("xz", "apt-get install -y xz-utils"),
        ("python3", "apt-get install -y python3"),
        ("curl", "apt-get install -y curl"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            missing.push(format!("{bin} is not on PATH ({hint})"));
        }
    }
    for t in ["helm", "kubectl"] {
        if !tool(t).is_file() {
            missing.push(format!(
                "{} is missing (bash .ci/install-tools.sh)",
                tool(t).display()
            ));
        }
    }
    missing
}

/// Clusters and processes to stop however the test ends (a panic unwinds through the guards; a
/// SIGINT/SIGTERM goes through [`stop_everything`]).
static LIVE_CLUSTERS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static LIVE_PIDS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn cluster_sh(cmd: &str, dir: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(cluster_scripts().join("cluster.sh"))
        .arg(cmd)
        .arg(dir)
        .env("K8S_BIN_DIR", k8s_bin_dir().unwrap_or_default())
        .env("K8S_VERSION", K8S_VERSION)
        .env("SCHEDULER", "1")
        .env("WIPE", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run bash tests/cluster/cluster.sh")
}

/// Stops every cluster and process this test started (for the signal hook).
pub fn stop_everything() {
    for pid in LIVE_PIDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
    {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    let dirs: Vec<PathBuf> = LIVE_CLUSTERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .collect();
    for d in dirs {
        let _ = cluster_sh("stop", &d);
    }
}

/// etcd, kube-apiserver, kube-controller-manager and kube-scheduler in `dir`; stopped on drop.
pub struct Cluster {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub started_in: Duration,
    /// Keep the folder (its logs) when stopped.
    keep: bool,
}

/// `target/tmp/e2e`: one `run-<pid>` folder per test process, and the unpacked binaries.
fn base() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e")
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// Stops the clusters of earlier runs whose test process is gone (killed before its guard ran).
fn reap_leftovers() {
    let Ok(entries) = std::fs::read_dir(base()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("run-") else {
            continue;
        };
        if pid_alive(pid) {
            continue;
        }
        // The stsguard process of that run (killed with it, its child outlived it).
        if let Ok(child) = std::fs::read_to_string(e.path().join("stsguard.pid")) {
            let child = child.trim();
            let cmdline = std::fs::read(Path::new("/proc").join(child).join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).to_string())
                .unwrap_or_default();
            if cmdline.contains(&*e.path().to_string_lossy()) {
                let _ = Command::new("kill").arg(child).status();
            }
        }
        say(format!(
            "e2e: cleaning up after an earlier run in {name} (its cluster stopped, if it still ran)"
        ));
        let _ = cluster_sh("stop", &e.path());
        let _ = std::fs::remove_dir_all(e.path());
    }
}

/// A cache of the unpacked control-plane binaries, keyed by the archives' sizes.
fn bin_cache() -> PathBuf {
    let src = k8s_bin_dir()
        .unwrap_or_default()
        .join(format!("v{K8S_VERSION}"));
    let key: Vec<String> = BINARIES
        .iter()
        .map(|b| {
            std::fs::metadata(src.join(format!("{b}.xz")))
                .or_else(|_| std::fs::metadata(src.join(b)))
                .map(|m| m.len().to_string())
                .unwrap_or_default()
        })
        .collect();
    base().join(format!("bin-{}", key.join("-")))
}

const BINARIES: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

impl Cluster {
    /// Starts a cluster (with the scheduler); `Err` says why it could not start.
    pub fn start() -> Result<Cluster, String> {
        reap_leftovers();
        let dir = base().join(format!("run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).map_err(|e| e.to_string())?;
        // Unpacking the three binaries costs seconds: link them from the cache when it is there.
        let cache = bin_cache();
        for b in BINARIES {
            let _ = std::fs::hard_link(cache.join(b), dir.join("bin").join(b));
        }
        LIVE_CLUSTERS.lock().unwrap().push(dir.clone());
        let mut cluster = Cluster {
            dir: dir.clone(),
            kubeconfig: PathBuf::new(),
            started_in: Duration::ZERO,
            keep: false,
        };
        let t = Instant::now();
        let out = cluster_sh("start", &dir);
        cluster.started_in = t.elapsed();
        if !out.status.success() {
            let logs = ["etcd", "kube-apiserver", "kube-controller-manager"]
                .iter()
                .map(|n| {
                    let text = std::fs::read_to_string(dir.join(format!("logs/{n}.log")))
                        .unwrap_or_default();
                    format!("--- {n}.log (end) ---\n{}", tail(&text, 15))
                })
                .collect::<Vec<_>>()
                .join("\n");
            return Err(format!(
                "cluster.sh start {} failed ({}):\n{}\n{logs}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let kc = stdout.lines().last().unwrap_or("").trim().to_string();
        if !Path::new(&kc).is_file() {
            return Err(format!("cluster.sh start printed no kubeconfig: {stdout}"));
        }
        cluster.kubeconfig = PathBuf::from(kc);
        if !cache.join(BINARIES[0]).exists() {
            let _ = std::fs::create_dir_all(&cache);
            for b in BINARIES {
                let _ = std::fs::hard_link(dir.join("bin").join(b), cache.join(b));
            }
        }
        Ok(cluster)
    }

    /// Stops the cluster; its folder is kept (with the logs) if `keep_logs`, else removed.
    pub fn finish(mut self, keep_logs: bool) {
        self.keep = keep_logs;
    }

    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Stops the cluster; returns the processes of it still alive afterwards (should be none).
    pub fn stop(&self) -> Vec<String> {
        let pids: Vec<(String, String)> = std::fs::read_dir(self.dir.join("run"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let pid = std::fs::read_to_string(e.path()).ok()?.trim().to_string();
                Some((e.file_name().to_string_lossy().to_string(), pid))
            })
            .collect();
        let out = cluster_sh("stop", &self.dir);
        if !out.status.success() {
            say(format!(
                "e2e: cluster.sh stop failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        LIVE_CLUSTERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|d| d != &self.dir);
        pids.into_iter()
            .filter(|(_, pid)| pid_alive(pid))
            .map(|(n, pid)| format!("{n} (pid {pid})"))
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let left = self.stop();
        if !left.is_empty() {
            say(format!(
                "e2e: still running after cluster.sh stop: {left:?}"
            ));
        }
        if self.keep || std::thread::panicking() {
            say(format!(
                "e2e: the cluster's logs are kept in {}",
                self.logs().display()
            ));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `stsguard serve` as a child process ([`Launch`], with the cluster's kubeconfig), serving;
/// its log is collected. Killed on drop.
pub struct Stsguard {
    proc: Proc,
    pub addr: std::net::SocketAddr,
    pub metrics_addr: std::net::SocketAddr,
}

impl Stsguard {
    /// Starts `stsguard <args>`; its pid goes to `pidfile` (for the clean-up after a killed run).
    pub fn spawn(args: &[&str], kubeconfig: &Path, pidfile: &Path) -> Stsguard {
        let proc = Launch::new()
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .spawn();
        let pid = proc.pid();
        LIVE_PIDS.lock().unwrap().push(pid);
        let _ = std::fs::write(pidfile, pid.to_string());
        match proc.serving_within(30) {
            Ok(s) => Stsguard {
                proc,
                addr: s.addr,
                metrics_addr: s.metrics_addr,
            },
            Err(e) => {
                drop(proc);
                forget_pid(pid);
                panic!("stsguard serve: {e}")
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }

    /// The JSON log lines with `message` equal to `msg`.
    pub fn log_lines(&self, msg: &str) -> Vec<serde_json::Value> {
        self.proc.log_lines(msg)
    }
}

impl Drop for Stsguard {
    fn drop(&mut self) {
        forget_pid(self.proc.pid());
    }
}

fn forget_pid(pid: u32) {
    LIVE_PIDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// Kills a `stsguard` this test started (one whose [`Stsguard`] may still be referenced).
pub fn kill_stsguard(pid: u32) {
    let live = LIVE_PIDS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&pid);
    if live {
        let _ = Command::new("kill").arg(pid.to_string()).status();
        forget_pid(pid);
    }
}

/// The result of one kubectl run.
#[derive(Debug)]
pub struct Kubectl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// The `Warning: ` lines kubectl printed (the API server's `Warning` headers).
    pub fn warnings(&self) -> Vec<String> {
        self.stderr
            .lines()
            .filter_map(|l| l.strip_prefix("Warning: "))
            .map(str::to_string)
            .collect()
    }

    /// stderr without the warning lines.
    pub fn errors(&self) -> String {
        self.stderr
            .lines()
            .filter(|l| !l.starts_with("Warning: "))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// kubectl (from `.tools/bin`) against the cluster, as the admin.
#[derive(Clone)]
pub struct KubectlRunner {
    pub kubeconfig: PathBuf,
    pub cache_dir: PathBuf,
}

impl KubectlRunner {
    /// Runs kubectl on a blocking thread (tokio's `process` feature is not enabled here), so
    /// that several can run at once.
    pub async fn run(&self, args: &[&str]) -> Kubectl {
        let mut cmd = Command::new(tool("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .args(args)
            .stdin(Stdio::null());
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("the kubectl thread")
            .expect("run kubectl");
        Kubectl {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// `helm template` of the chart; the documents as JSON.
pub fn helm_template(release: &str, namespace: &str, sets: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(tool("helm"));
    cmd.args(["template", release])
        .arg(repo().join("charts/stsguard"))
        .args(["--namespace", namespace]);
    for s in sets {
        cmd.arg(s);
    }
    let out = cmd.output().expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    stsguard::check::yaml_documents(&text)
        .expect("helm template output is YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// A namespace name from free text: lower case, `-` for anything else, at most 63 characters.
pub fn dns_label(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    out.truncate(63);
    out.trim_matches('-').to_string()
}

/// Processes (other than this one) whose command line mentions `dir`.
pub fn processes_mentioning(dir: &Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let needle = dir.to_string_lossy().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&needle) {
            found.push(format!("{pid}: {}", cmd.trim()));
        }
    }
    found
}

/// A log line for CI, written straight to stderr: the test harness captures `eprintln!` (shown
/// only when a test fails), not direct writes, so these lines are in every run's output.
pub fn say(line: impl AsRef<str>) {
    use std::io::Write;
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{}", line.as_ref());
}
