//! Memory at cluster scale: the resident set of the server's watch caches, and its peak during one
//! background audit with its PolicyReports built and serialised as the writer sends them.
//!
//! Each case runs in a child process of its own (this binary, re-run with `SIZING_CASE`), so
//! that no case inherits another's heap. In the child:
//! 1. synthetic objects are made from the real-world manifests of tests/fixtures/statefulsets
//!    (cycled, renamed, 10 StatefulSets per namespace), each with its Services and
//!    PodDisruptionBudgets (a governing headless Service, others with ports, labels and
//!    annotations; PDBs selecting the pods), and put in the server's own stores
//!    (`WatchLookups::from_objects`, which projects them as the watches do);
//! 2. `caches` = VmRSS after the stores are filled and the input dropped, minus VmRSS before;
//! 3. the peak is reset (`/proc/self/clear_refs` 5) and one audit runs with every namespace's
//!    PolicyReport built and serialised; `audit peak` = VmHWM minus the VmRSS before the audit.
//!
//! Two measures: the live heap (bytes allocated and not freed, counted by a wrapper around the
//! binary's allocator, mimalloc) and its peak, which are exact; and the process's VmRSS/VmHWM,
//! which also hold what the allocator keeps after a free (the objects made for the input among
//! them).
//!
//! Run: `cargo bench --bench sizing` (release profile). `SIZING_CASES` picks cases, e.g.
//! `SIZING_CASES=6400:10000:10000,1000` (StatefulSets[:Services[:PDBs[:per namespace]]]; by
//! default 5 Services and 1 PDB per StatefulSet, 10 StatefulSets per namespace). It prints
//! figures and asserts nothing.

use std::alloc::{GlobalAlloc, Layout};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::json;
use stsguard::policy::Policy;
use stsguard::watch::WatchLookups;

/// The same allocator as the stsguard binary, counting the bytes it holds: the live heap and its
/// peak are exact where VmRSS also holds what the allocator keeps after a free.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to mimalloc unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        unsafe { mimalloc::MiMalloc.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        grew(l.size());
        unsafe { mimalloc::MiMalloc.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { mimalloc::MiMalloc.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            grew(new - l.size());
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        unsafe { mimalloc::MiMalloc.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The live heap in KiB, and its peak since the last call (then reset to the live heap).
fn heap() -> (u64, u64) {
    let live = LIVE.load(Ordering::Relaxed);
    let peak = PEAK.swap(live, Ordering::Relaxed);
    ((live / 1024) as u64, (peak.max(live) / 1024) as u64)
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PER_NAMESPACE: usize = 10;

/// `VmRSS` and `VmHWM` of this process, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn reset_peak() {
    heap();
    // Linux: "5" resets VmHWM to the current VmRSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn fixtures() -> Result<Vec<StatefulSet>, BoxError> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/statefulsets");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    entries.sort();
    let mut out = Vec::new();
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

struct Case {
    sets: usize,
    services: usize,
    pdbs: usize,
    per_namespace: usize,
}

fn parse_case(s: &str) -> Option<Case> {
    let mut it = s.split(':').map(|n| n.trim().parse::<usize>().ok());
    let sets = it.next()??;
    let services = it.next().flatten().unwrap_or(sets * 5);
    let pdbs = it.next().flatten().unwrap_or(sets);
    let per_namespace = it.next().flatten().unwrap_or(PER_NAMESPACE).max(1);
    Some(Case {
        sets,
        services,
        pdbs,
        per_namespace,
    })
}

fn labels(app: &str) -> serde_json::Value {
    json!({
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": app,
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": format!("{app}-1.2.3"),
    })
}

#[allow(clippy::type_complexity)]
fn objects(
    case: &Case,
    base: &[StatefulSet],
    only: &str,
) -> Result<
    (
        Vec<Service>,
        Vec<StorageClass>,
        Vec<PodDisruptionBudget>,
        Vec<StatefulSet>,
    ),
    BoxError,
> {
    let ns_of = |i: usize| format!("team-{:05}", i / case.per_namespace);
    let mut sets = Vec::with_capacity(case.sets);
    let mut selectors = Vec::with_capacity(case.sets);
    for i in 0..case.sets {
        let mut s = base[i % base.len()].clone();
        let name = format!("{}-{i}", s.metadata.name.clone().unwrap_or_default());
        s.metadata.namespace = Some(ns_of(i));
        s.metadata.name = Some(name.clone());
        s.metadata.uid = Some(format!("00000000-0000-0000-0000-{i:012}"));
        s.metadata.resource_version = Some(format!("{}", 1000 + i));
        if let Some(sp) = s.spec.as_mut() {
            sp.service_name = Some(name.clone());
        }
        let sel = s
            .spec
            .as_ref()
            .and_then(|sp| sp.selector.match_labels.clone())
            .unwrap_or_default();
        selectors.push((ns_of(i), name, sel));
        sets.push(s);
    }
    let want = |kind: &str| only.is_empty() || only == kind;
    let mut services = Vec::new();
    for i in (0..case.services).filter(|_| want("Services")) {
        let (ns, owner, sel) = &selectors[i % selectors.len().max(1)];
        let governing = i < selectors.len();
        let name = if governing {
            owner.clone()
        } else {
            format!("{owner}-svc-{i}")
        };
        services.push(serde_json::from_value::<Service>(json!({
            "metadata": {
                "name": name, "namespace": ns,
                "uid": format!("10000000-0000-0000-0000-{i:012}"),
                "resourceVersion": format!("{}", 2000 + i),
                "labels": labels(owner),
                "annotations": {"meta.helm.sh/release-name": owner, "meta.helm.sh/release-namespace": ns},
            },
            "spec": {
                "clusterIP": if governing { "None".to_string() } else { format!("10.96.{}.{}", (i / 250) % 250, i % 250) },
                "clusterIPs": [if governing { "None".to_string() } else { format!("10.96.{}.{}", (i / 250) % 250, i % 250) }],
                "selector": sel,
                "ports": [{"name": "client", "port": 8080, "targetPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}],
                "type": "ClusterIP", "sessionAffinity": "None",
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "internalTrafficPolicy": "Cluster",
            },
            "status": {"loadBalancer": {}},
        }))?);
    }
    let mut pdbs = Vec::new();
    for i in (0..case.pdbs).filter(|_| want("PDBs")) {
        let (ns, owner, sel) = &selectors[i % selectors.len().max(1)];
        pdbs.push(serde_json::from_value::<PodDisruptionBudget>(json!({
            "metadata": {
                "name": format!("{owner}-pdb-{i}"), "namespace": ns,
                "uid": format!("20000000-0000-0000-0000-{i:012}"),
                "resourceVersion": format!("{}", 3000 + i),
                "labels": labels(owner),
            },
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": sel}},
            "status": {"currentHealthy": 3, "desiredHealthy": 2, "disruptionsAllowed": 1,
                       "expectedPods": 3, "observedGeneration": 1},
        }))?);
    }
    let classes: Vec<StorageClass> = vec![serde_json::from_value(json!({
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "pd.csi.storage.gke.io",
    }))?];
    if !want("StatefulSets") {
        sets = Vec::new();
    }
    Ok((services, classes, pdbs, sets))
}

/// One audit with every namespace's PolicyReports built and serialised, as `stsguard serve` does
/// it: one namespace at a time (judge, build, serialise as the writer sends, drop). Returns
/// (StatefulSets judged, reports, bytes of reports).
fn audit_and_reports(
    lookups: &WatchLookups,
    policy: &Policy,
) -> Result<(usize, usize, usize), BoxError> {
    let (mut judged, mut reports, mut bytes) = (0, 0, 0);
    let mut first_seen = std::collections::BTreeMap::new();
    for ns in lookups.statefulset_namespaces()? {
        let audit =
            futures::executor::block_on(stsguard::audit::audit_namespace(lookups, &ns, policy))?;
        judged += audit.objects.len();
        let by_ns = audit.by_namespace();
        let Some(results) = by_ns.get(ns.as_str()).filter(|r| r.has_results()) else {
            continue;
        };
        let seen = first_seen
            .entry(ns.clone())
            .or_insert_with(stsguard::audit::reports::FirstSeen::new);
        let _hash = stsguard::audit::reports::results_hash(&ns, results);
        for part in stsguard::audit::reports::build(
            &ns,
            results,
            seen,
            std::time::SystemTime::now(),
            stsguard::audit::reports::REPORT_BUDGET,
        ) {
            bytes += serde_json::to_vec(&part)?.len();
            reports += 1;
        }
    }
    Ok((judged, reports, bytes))
}

fn child(spec: &str) -> Result<(), BoxError> {
    let case = parse_case(spec).ok_or("SIZING_CASE: sets[:services:pdbs[:per namespace]]")?;
    let base = fixtures()?;
    let policy = Policy::default();
    // Each kind alone (heap bytes its cache holds), then all of them for the audit.
    let mut kinds = Vec::new();
    for kind in ["StatefulSets", "Services", "PDBs"] {
        let (h0, _) = heap();
        let (services, classes, pdbs, sets) = objects(&case, &base, kind)?;
        let one = WatchLookups::from_objects(services, classes, pdbs, sets);
        let (h1, p1) = heap();
        kinds.push(format!(
            "{kind} {:.1} (peak while filled +{:.1})",
            mib(h1.saturating_sub(h0)),
            mib(p1.saturating_sub(h0))
        ));
        drop(one);
    }
    let ((h0, _), (rss0, _)) = (heap(), rss());
    let t = Instant::now();
    let (services, classes, pdbs, sets) = objects(&case, &base, "")?;
    let lookups = WatchLookups::from_objects(services, classes, pdbs, sets);
    let load_s = t.elapsed().as_secs_f64();
    let ((h1, _), (rss1, _)) = (heap(), rss());
    reset_peak();
    let t = Instant::now();
    let (judged, reports, bytes) = audit_and_reports(&lookups, &policy)?;
    let audit_s = t.elapsed().as_secs_f64();
    let ((h2, p2), (rss2, hwm2)) = (heap(), rss());
    println!(
        "{:>6} StatefulSets, {:>6} Services, {:>6} PDBs, {} per namespace:\n  caches: heap {:.1} MiB ({}), VmRSS {:.1} -> {:.1} MiB, filled in {:.1} s\n  audit of {judged} with {reports} PolicyReports ({} KiB of JSON) in {:.2} s: heap peak +{:.1} MiB (after +{:.1}), VmHWM {:.1} MiB (+{:.1}), VmRSS after {:.1} MiB",
        case.sets,
        case.services,
        case.pdbs,
        case.per_namespace,
        mib(h1.saturating_sub(h0)),
        kinds.join(", "),
        mib(rss0),
        mib(rss1),
        load_s,
        bytes / 1024,
        audit_s,
        mib(p2.saturating_sub(h1)),
        mib(h2.saturating_sub(h1)),
        mib(hwm2),
        mib(hwm2.saturating_sub(rss1)),
        mib(rss2),
    );
    drop(lookups);
    Ok(())
}

fn main() -> Result<(), BoxError> {
    if let Ok(spec) = std::env::var("SIZING_CASE") {
        return child(&spec);
    }
    let cases = std::env::var("SIZING_CASES").unwrap_or_else(|_| "1000,10000,50000".to_string());
    let exe = std::env::current_exe()?;
    for spec in cases.split(',').filter(|s| !s.trim().is_empty()) {
        let out = Command::new(&exe)
            .env("SIZING_CASE", spec.trim())
            .output()?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            return Err(format!("case {spec} failed: {}", out.status).into());
        }
    }
    Ok(())
}
