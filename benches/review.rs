//! Per-review CPU of stsguard (mutate + validate of the same review) against the floor of any
//! webhook: a bare serde_json parse + serialize of the review. Prints the ratio (target <= 2x),
//! from criterion's estimates and measured interleaved (see [`interleaved`]).
//!
//! Inputs: the captured reviews benches/mysql-k8s-website.create.mutating.json (typical, 15 KB)
//! and benches/argocd-controller-argo-cd.create.mutating.json (the corpus's largest, 46 KB),
//! copied from tests/fixtures/admission/corpus.
//!
//! Group `delete`: the captured Namespace and PersistentVolumeClaim DELETE reviews
//! (tests/fixtures/admission) against namespaces of 10, 100 and 1,000 protected StatefulSets (the
//! mysql one, renamed) in the server's own watch-cache stores, beside the StatefulSet DELETE
//! review; prints the time per review and per StatefulSet (linear: the per-StatefulSet figure
//! stays flat).

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use criterion::{Criterion, criterion_group};
use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::admission::{Endpoint, answer};
use stsguard::policy::Policy;
use stsguard::validate::NoLookups;
use stsguard::watch::WatchLookups;

// The same allocator as the stsguard binary, for the floor and stsguard alike.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const INPUTS: &[(&str, &str)] = &[
    ("typical", "mysql-k8s-website.create.mutating.json"),
    ("large", "argocd-controller-argo-cd.create.mutating.json"),
];

fn input(file: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("benches")
            .join(file),
    )
    .unwrap()
}

fn floor(body: &[u8]) -> Vec<u8> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    serde_json::to_vec(&v).unwrap()
}

fn stsguard_review(body: &[u8], policy: &Policy, lookups: &NoLookups) -> (Vec<u8>, Vec<u8>) {
    let m = answer(Endpoint::Mutate, body, policy, lookups).unwrap();
    let v = answer(Endpoint::Validate, body, policy, lookups).unwrap();
    (m.body, v.body)
}

/// The fixtures are pretty-printed; the API server sends compact JSON. Both are measured.
fn variants() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, file) in INPUTS {
        let pretty = input(file);
        let v: serde_json::Value = serde_json::from_slice(&pretty).unwrap();
        out.push((format!("{name}-compact"), serde_json::to_vec(&v).unwrap()));
        out.push((format!("{name}-pretty"), pretty));
    }
    out
}

fn bench(c: &mut Criterion) {
    let policy = Policy::default();
    let lookups = NoLookups("bench".into());
    for (name, body) in variants() {
        let mut g = c.benchmark_group(&name);
        g.bench_function("floor_parse_serialize", |b| {
            b.iter(|| floor(black_box(&body)))
        });
        g.bench_function("stsguard_mutate_validate", |b| {
            b.iter(|| stsguard_review(black_box(&body), &policy, &lookups))
        });
        g.bench_function("stsguard_mutate", |b| {
            b.iter(|| answer(Endpoint::Mutate, black_box(&body), &policy, &lookups).unwrap())
        });
        g.bench_function("bounds_scan", |b| {
            b.iter(|| stsguard::bounds::check_body(black_box(&body)))
        });
        g.bench_function("stsguard_validate", |b| {
            b.iter(|| answer(Endpoint::Validate, black_box(&body), &policy, &lookups).unwrap())
        });
        g.finish();
    }
}

/// Namespace sizes of the `delete` group.
const DELETE_SIZES: &[usize] = &[10, 100, 1000];

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission")
        .join(name);
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    serde_json::to_vec(&v).unwrap()
}

/// `n` protected StatefulSets `s0000`… in namespace `cap` (the captured reviews' namespace):
/// the mysql StatefulSet, renamed.
fn protected_namespace(n: usize) -> std::sync::Arc<WatchLookups> {
    let review: serde_json::Value = serde_json::from_slice(&input(INPUTS[0].1)).unwrap();
    let mut object = review["request"]["object"].clone();
    object["metadata"]["namespace"] = "cap".into();
    object["metadata"]["annotations"]["stsguard.io/protect"] = "true".into();
    let sets: Vec<StatefulSet> = (0..n)
        .map(|i| {
            let mut o = object.clone();
            o["metadata"]["name"] = format!("s{i:04}").into();
            serde_json::from_value(o).unwrap()
        })
        .collect();
    WatchLookups::from_objects(vec![], vec![], vec![], sets)
}

/// (review name, body) of the `delete` group: the claim is no StatefulSet's, so every one is
/// read through.
fn delete_reviews() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("namespace", fixture("namespace-DELETE.validating.json")),
        (
            "claim",
            fixture("persistentvolumeclaim-DELETE-by-namespace-controller.validating.json"),
        ),
    ]
}

fn bench_deletes(c: &mut Criterion) {
    let policy = Policy::default();
    let mut g = c.benchmark_group("delete");
    let sts_delete = fixture("statefulset-DELETE.validating.json");
    let none = NoLookups("bench".into());
    g.bench_function("statefulset", |b| {
        b.iter(|| answer(Endpoint::Validate, black_box(&sts_delete), &policy, &none).unwrap())
    });
    for &n in DELETE_SIZES {
        let lookups = protected_namespace(n);
        for (what, body) in delete_reviews() {
            g.bench_function(format!("{what}_{n}"), |b| {
                b.iter(|| answer(Endpoint::Validate, black_box(&body), &policy, &*lookups).unwrap())
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench, bench_deletes);

fn estimate(group: &str, f: &str) -> Option<f64> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/criterion")
        .join(group)
        .join(f)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// The ratio measured interleaved: blocks of floor and stsguard runs alternate (which goes first
/// alternates too), and the median of the per-block ratios is taken. On a VM whose speed drifts
/// within seconds this is steadier than criterion's sequential groups.
fn interleaved(body: &[u8], policy: &Policy, lookups: &NoLookups) -> (f64, f64, f64) {
    const BLOCKS: usize = 400;
    const PER_BLOCK: u32 = 20;
    let time = |f: &dyn Fn()| {
        let t = Instant::now();
        for _ in 0..PER_BLOCK {
            f();
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(PER_BLOCK)
    };
    let floor_once = || {
        black_box(floor(black_box(body)));
    };
    let sts_once = || {
        black_box(stsguard_review(black_box(body), policy, lookups));
    };
    let (mut fs, mut ss, mut rs) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..BLOCKS {
        let (f, s) = if i % 2 == 0 {
            let f = time(&floor_once);
            (f, time(&sts_once))
        } else {
            let s = time(&sts_once);
            (time(&floor_once), s)
        };
        fs.push(f);
        ss.push(s);
        rs.push(s / f);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut ss), median(&mut fs), median(&mut rs))
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let policy = Policy::default();
    let lookups = NoLookups("bench".into());
    // `cargo bench -- FILTER` runs only the groups whose name contains FILTER: the interleaved
    // measurement and the ratios follow the same filter (no stale figures of groups not run).
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected = |name: &str| filter.as_ref().is_none_or(|f| name.contains(f.as_str()));
    for (name, body) in variants() {
        if !selected(&name) {
            continue;
        }
        let (s, f, r) = interleaved(&body, &policy, &lookups);
        println!(
            "RATIO {name} interleaved: mutate+validate {s:.1} us / floor {f:.1} us, median of 400 paired blocks {r:.2}x (target <= 2x)"
        );
    }
    if selected("delete") {
        let us = |f: &str| estimate("delete", f).map_or(f64::NAN, |ns| ns / 1000.0);
        println!(
            "DELETE StatefulSet (no look-up): {:.1} us",
            us("statefulset")
        );
        for (what, _) in delete_reviews() {
            for &n in DELETE_SIZES {
                let t = us(&format!("{what}_{n}"));
                println!(
                    "DELETE {what}, {n} protected StatefulSets in the namespace: {t:.1} us, {:.3} us per StatefulSet",
                    t / n as f64
                );
            }
        }
    }
    for (name, _) in variants() {
        if !selected(&name) {
            continue;
        }
        let Some(f) = estimate(&name, "floor_parse_serialize") else {
            continue;
        };
        let get = |what| {
            estimate(&name, what)
                .map(|s| s / 1000.0)
                .unwrap_or(f64::NAN)
        };
        let (both, m, v) = (
            get("stsguard_mutate_validate"),
            get("stsguard_mutate"),
            get("stsguard_validate"),
        );
        let f = f / 1000.0;
        println!(
            "RATIO {name}: mutate+validate {both:.1} us / floor {f:.1} us = {:.2}x (target <= 2x); mutate alone {:.2}x, validate alone {:.2}x",
            both / f,
            m / f,
            v / f
        );
    }
}
