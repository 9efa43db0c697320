//! The background audit's cost, and what it does to reviews answered meanwhile.
//!
//! Input: 1,000 StatefulSets made from the real-world manifests of tests/fixtures/statefulsets
//! (cycled, renamed, spread over 100 namespaces), in the server's own watch-cache stores
//! (`WatchLookups::from_objects`) with 3,000 Services (a governing Service for every other set
//! and 2,500 unrelated ones), 500 PodDisruptionBudgets and 3 StorageClasses.
//!
//! 1. One audit over the 1,000 objects, as `stsguard serve` runs it: wall time and the CPU time
//!    of the thread (`/proc/thread-self/schedstat`), median and minimum of the runs.
//! 2. Reviews through the HTTP router (`oneshot`, no sockets) on a 2-worker runtime, by 4
//!    concurrent clients, each alternating /mutate and /validate of a captured 15 KB review:
//!    latency percentiles with no audit, then with the audit running back to back for the whole
//!    time (far more than the default of one audit every 10 minutes).
//!
//! Run: `cargo bench --bench audit` (release profile). `AUDIT_BENCH_RUNS` (default 15) and
//! `AUDIT_BENCH_REVIEWS` (per client and phase, default 2,000) make it shorter or longer. It
//! prints figures and asserts nothing about time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use stsguard::policy::Policy;
use stsguard::server::{AppState, router};
use stsguard::watch::WatchLookups;
use tower::ServiceExt;

// The same allocator as the stsguard binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const OBJECTS: usize = 1_000;
const NAMESPACES: usize = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the calling thread, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn fixtures() -> Result<Vec<StatefulSet>, BoxError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/statefulsets");
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| {
            format!(
                "{}: {e} (the benchmark reads tests/fixtures)",
                dir.display()
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    for p in entries {
        let text = std::fs::read_to_string(&p)?;
        let Ok(docs) = stsguard::check::yaml_documents(&text) else {
            continue;
        };
        for d in docs {
            if d["apiVersion"] == "apps/v1" && d["kind"] == "StatefulSet" {
                if let Ok(s) = serde_json::from_value::<StatefulSet>(d) {
                    out.push(s);
                }
            }
        }
    }
    if out.is_empty() {
        return Err("no apps/v1 StatefulSet in tests/fixtures/statefulsets".into());
    }
    Ok(out)
}

fn cluster() -> Result<Arc<WatchLookups>, BoxError> {
    let base = fixtures()?;
    let mut sets = Vec::new();
    let mut services = Vec::new();
    let mut pdbs = Vec::new();
    for i in 0..OBJECTS {
        let mut s = base[i % base.len()].clone();
        let ns = format!("team-{:03}", i % NAMESPACES);
        let name = format!("{}-{i}", s.metadata.name.clone().unwrap_or_default());
        s.metadata.namespace = Some(ns.clone());
        s.metadata.name = Some(name.clone());
        s.metadata.uid = Some(format!("00000000-0000-0000-0000-{i:012}"));
        let selector = s
            .spec
            .as_ref()
            .and_then(|sp| sp.selector.match_labels.clone())
            .unwrap_or_default();
        if i % 2 == 0 {
            let svc_name = s
                .spec
                .as_ref()
                .and_then(|sp| sp.service_name.clone())
                .unwrap_or_else(|| name.clone());
            services.push(serde_json::from_value::<Service>(serde_json::json!({
                "metadata": {"name": svc_name, "namespace": ns},
                "spec": {"clusterIP": "None", "selector": selector},
            }))?);
            pdbs.push(serde_json::from_value::<PodDisruptionBudget>(
                serde_json::json!({
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
                }),
            )?);
        }
        sets.push(s);
    }
    for i in 0..2_500 {
        services.push(serde_json::from_value::<Service>(serde_json::json!({
            "metadata": {"name": format!("web-{i}"), "namespace": format!("team-{:03}", i % NAMESPACES)},
            "spec": {"clusterIP": "10.0.0.1", "selector": {"app": format!("web-{i}")}},
        }))?);
    }
    let classes: Vec<StorageClass> = vec![
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "pd.csi.storage.gke.io",
        }))?,
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "local-storage"},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
        }))?,
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "fast"},
            "provisioner": "ebs.csi.aws.com",
        }))?,
    ];
    println!(
        "cluster: {} StatefulSets ({} distinct manifests) in {NAMESPACES} namespaces, {} Services, {} PDBs, {} StorageClasses",
        sets.len(),
        base.len(),
        services.len(),
        pdbs.len(),
        classes.len()
    );
    Ok(WatchLookups::from_objects(services, classes, pdbs, sets))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn audit_cost(lookups: &Arc<WatchLookups>, policy: &Policy) -> Result<(), BoxError> {
    let sets = lookups.statefulsets()?;
    let runs = env_usize("AUDIT_BENCH_RUNS", 15).max(1);
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let (w0, c0) = (Instant::now(), thread_cpu_ns());
        let a = stsguard::audit::audit(&sets, policy, &**lookups);
        let (wall, cpu) = (
            w0.elapsed().as_secs_f64(),
            (thread_cpu_ns() - c0) as f64 / 1e9,
        );
        walls.push(wall);
        cpus.push(cpu);
        last = Some(a);
    }
    let a = last.ok_or("no run")?;
    let violations: i64 = a.violations().values().sum();
    let reports = a
        .by_namespace()
        .values()
        .filter(|n| n.has_results())
        .count();
    let min_wall = walls.iter().copied().fold(f64::INFINITY, f64::min);
    let min_cpu = cpus.iter().copied().fold(f64::INFINITY, f64::min);
    let (mw, mc) = (median(&mut walls), median(&mut cpus));
    println!(
        "audit of {} StatefulSets ({runs} runs): wall median {:.1} ms (min {:.1}), CPU median {:.1} ms (min {:.1}); {:.1} µs CPU per StatefulSet; {violations} violations, {reports} namespaces with a report",
        sets.len(),
        mw * 1e3,
        min_wall * 1e3,
        mc * 1e3,
        min_cpu * 1e3,
        mc * 1e6 / sets.len() as f64,
    );
    // Building the PolicyReports of that audit (JSON; not the API writes).
    let t = Instant::now();
    let mut seen = stsguard::audit::reports::FirstSeen::new();
    let (mut count, mut bytes) = (0, 0);
    for (ns, results) in a.by_namespace().iter().filter(|(_, r)| r.has_results()) {
        for part in stsguard::audit::reports::build(
            ns,
            results,
            &mut seen,
            std::time::SystemTime::now(),
            stsguard::audit::reports::REPORT_BUDGET,
        ) {
            count += 1;
            bytes += serde_json::to_vec(&part)?.len();
        }
    }
    println!(
        "PolicyReports built: {} ({} KB of JSON) in {:.1} ms",
        count,
        bytes / 1024,
        t.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

async fn review(app: &axum::Router, path: &str, body: &[u8]) -> Result<Duration, BoxError> {
    let req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body.to_vec()))?;
    let t = Instant::now();
    let resp = app.clone().oneshot(req).await?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let d = t.elapsed();
    if !status.is_success() || bytes.is_empty() {
        return Err(format!("{path}: HTTP {status}").into());
    }
    Ok(d)
}

/// Latencies of `per_client` reviews from each of `clients` concurrent clients.
async fn load(
    app: &axum::Router,
    body: &Arc<Vec<u8>>,
    clients: usize,
    per_client: usize,
) -> Result<Vec<f64>, BoxError> {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (app, body) = (app.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_client);
            for i in 0..per_client {
                let path = if (i + c) % 2 == 0 {
                    "/mutate"
                } else {
                    "/validate"
                };
                out.push(review(&app, path, &body).await?.as_secs_f64());
            }
            Ok::<_, BoxError>(out)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(|a, b| a.total_cmp(b));
    Ok(all)
}

fn line(label: &str, l: &[f64], wall: f64) -> String {
    format!(
        "{label}: {} reviews in {:.2} s ({:.0}/s): p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.1} ms",
        l.len(),
        wall,
        l.len() as f64 / wall,
        percentile(l, 0.5) * 1e6,
        percentile(l, 0.9) * 1e6,
        percentile(l, 0.99) * 1e6,
        l.last().copied().unwrap_or(0.0) * 1e3
    )
}

fn reviews_during_audit(lookups: Arc<WatchLookups>, policy: Policy) -> Result<(), BoxError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let body = Arc::new(std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches/mysql-k8s-website.create.mutating.json"),
    )?);
    let per_client = env_usize("AUDIT_BENCH_REVIEWS", 2_000).max(10);
    let clients = 4;
    rt.block_on(async move {
        let state = AppState::new(policy.clone(), lookups.clone());
        let app = router(state, Duration::from_secs(4));
        // Warm-up.
        load(&app, &body, clients, 100).await?;
        let mut results = BTreeMap::new();
        for phase in ["without audit", "with the audit running back to back"] {
            let stop = Arc::new(AtomicBool::new(false));
            let audits = Arc::new(AtomicUsize::new(0));
            let audit_task = (phase != "without audit").then(|| {
                let (stop, audits, lookups, policy) = (
                    stop.clone(),
                    audits.clone(),
                    lookups.clone(),
                    policy.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(sets) = lookups.statefulsets() {
                            let _ =
                                stsguard::audit::audit_yielding(&sets, &policy, &*lookups).await;
                            audits.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            });
            let t = Instant::now();
            let lat = load(&app, &body, clients, per_client).await?;
            let wall = t.elapsed().as_secs_f64();
            stop.store(true, Ordering::Relaxed);
            if let Some(task) = audit_task {
                task.await?;
            }
            let mut text = line(phase, &lat, wall);
            let n = audits.load(Ordering::Relaxed);
            if n > 0 {
                text.push_str(&format!("; {n} audits of {OBJECTS} StatefulSets meanwhile"));
            }
            println!("{text}");
            results.insert(phase, percentile(&lat, 0.99));
        }
        let base = results["without audit"];
        let during = results["with the audit running back to back"];
        println!(
            "review p99 during the audit / without: {:.2}x ({:.0} µs vs {:.0} µs)",
            during / base,
            during * 1e6,
            base * 1e6
        );
        Ok::<_, BoxError>(())
    })
}

fn main() -> Result<(), BoxError> {
    // `cargo bench` passes `--bench`; nothing to parse.
    stsguard::install_crypto_provider();
    let policy = Policy::default();
    let lookups = cluster()?;
    audit_cost(&lookups, &policy)?;
    reviews_during_audit(lookups, policy)?;
    Ok(())
}
