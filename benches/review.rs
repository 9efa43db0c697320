//! Per-review CPU of stsguard (mutate + validate of the same review) against the floor of any
//! webhook: a bare serde_json parse + serialize of the review. Prints the ratio (target <= 2x).
//!
//! Inputs: the captured reviews benches/mysql-k8s-website.create.mutating.json (typical, 15 KB)
//! and benches/argocd-controller-argo-cd.create.mutating.json (the corpus's largest, 46 KB),
//! copied from ../shared/fixtures/admission/corpus.

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group};
use stsguard::policy::Policy;
use stsguard::review::{Endpoint, answer};
use stsguard::validate::NoLookups;

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
        g.bench_function("stsguard_validate", |b| {
            b.iter(|| answer(Endpoint::Validate, black_box(&body), &policy, &lookups).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench);

fn estimate(group: &str, f: &str) -> Option<f64> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/criterion")
        .join(group)
        .join(f)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    for (name, _) in variants() {
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
