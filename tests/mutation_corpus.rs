//! The mutation over the real-world corpus. Reads tests/fixtures
//! (statefulsets/*.yaml and admission/corpus/*.create.mutating.json); fails if it is missing.
//!
//! For each object: the patch applies to the object as received; the result reads into
//! k8s-openapi's StatefulSet without an unknown field the input did not have; mutating the
//! result again gives an empty patch; every field the user wrote is still there, unchanged.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::admission::{Endpoint, answer};
use stsguard::policy::Policy;
use stsguard::validate::NoLookups;

fn yaml_statefulsets() -> Vec<(PathBuf, serde_json::Value)> {
    apps_v1_statefulsets()
}

/// The four properties for one raw object; returns the mutated object.
fn check(label: &str, raw: &serde_json::Value, policy: &Policy) -> serde_json::Value {
    let sts: StatefulSet =
        serde_json::from_value(raw.clone()).unwrap_or_else(|e| panic!("{label}: {e}"));
    let m = stsguard::mutate::mutate(&sts, policy);
    let patch = stsguard::mutate::patch::statefulset(&sts, &m.object).unwrap();
    assert!(!patch.0.is_empty(), "{label}: nothing mutated");
    let mut doc = raw.clone();
    common::apply_adds_only(&mut doc, &patch).unwrap_or_else(|e| panic!("{label}: {e}"));
    assert_mutated_ok(label, raw, &doc, policy);
    doc
}

fn assert_mutated_ok(
    label: &str,
    raw: &serde_json::Value,
    doc: &serde_json::Value,
    policy: &Policy,
) {
    let before = ignored_fields(raw).unwrap();
    let after =
        ignored_fields(doc).unwrap_or_else(|e| panic!("{label}: result is not a StatefulSet: {e}"));
    for f in &after {
        assert!(
            before.contains(f),
            "{label}: the result has a field k8s-openapi does not know: {f}"
        );
    }
    let typed: StatefulSet = serde_json::from_value(doc.clone()).unwrap();
    let again = stsguard::mutate::mutate(&typed, policy);
    let second = common::full_diff(&typed, &again.object).unwrap();
    assert!(
        second.0.is_empty(),
        "{label}: not idempotent, second patch: {}",
        serde_json::to_string(&second).unwrap()
    );
    assert!(
        contains(raw, doc),
        "{label}: a field the user wrote changed or went away"
    );
}

#[test]
fn yaml_corpus_default_policy() {
    let policy = Policy::default();
    for (p, raw) in yaml_statefulsets() {
        check(&p.display().to_string(), &raw, &policy);
    }
}

#[test]
fn yaml_corpus_with_roles_and_required_anti_affinity() {
    let policy = Policy::default();
    for (p, mut raw) in yaml_statefulsets() {
        annotate(
            &mut raw,
            &[
                ("stsguard.io/roles", "primary=0,replica=*"),
                ("stsguard.io/role-config", "cfg"),
                ("stsguard.io/anti-affinity", "required"),
                ("stsguard.io/role-node-selector.primary", "node-class=big"),
            ],
        );
        let out = check(&format!("{} +roles", p.display()), &raw, &policy);
        let inits = out["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .unwrap();
        assert_eq!(inits[0]["name"], "stsguard-role", "{}", p.display());
    }
}

#[test]
fn yaml_corpus_with_everything_off_is_untouched() {
    let mut policy = Policy::default();
    policy.mutation.ordinal_env = false;
    policy.mutation.anti_affinity.mode = stsguard::policy::AntiAffinityMode::None;
    for (p, raw) in yaml_statefulsets() {
        let sts: StatefulSet = serde_json::from_value(raw.clone()).unwrap();
        let m = stsguard::mutate::mutate(&sts, &policy);
        let patch = stsguard::mutate::patch::statefulset(&sts, &m.object).unwrap();
        // hostPath pods still get required anti-affinity unless the policy turns it off, and here it is off.
        assert!(
            patch.0.is_empty(),
            "{}: {}",
            p.display(),
            serde_json::to_string(&patch).unwrap()
        );
    }
}

fn corpus_reviews(suffix: &str) -> Vec<(PathBuf, serde_json::Value)> {
    let dir = fixtures().join("admission/corpus");
    let mut v: Vec<(PathBuf, serde_json::Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_string_lossy().ends_with(suffix) && !p.to_string_lossy().contains(".pod0.")
        })
        .map(|p| {
            let j = read_json(&p);
            (p, j)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!v.is_empty(), "no {suffix} reviews in {}", dir.display());
    v
}

#[test]
fn captured_create_reviews_through_the_review_path() {
    let policy = Policy::default();
    let lookups = NoLookups("test".into());
    let mut counts = BTreeMap::new();
    for (p, review) in corpus_reviews(".create.mutating.json") {
        let label = p.display().to_string();
        let body = serde_json::to_vec(&review).unwrap();
        let a = answer(Endpoint::Mutate, &body, &policy, &lookups).unwrap();
        let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(out["response"]["uid"], review["request"]["uid"], "{label}");
        assert_eq!(out["response"]["allowed"], true, "{label}");
        let patch = patch_of(&out).unwrap_or_else(|| panic!("{label}: no patch"));
        let raw = review["request"]["object"].clone();
        let mut doc = raw.clone();
        json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_mutated_ok(&label, &raw, &doc, &policy);
        // The same review carrying the mutated object: no patch (reinvocation, UPDATE of a stored object).
        let mut again = review.clone();
        again["request"]["object"] = doc;
        let a2 = answer(
            Endpoint::Mutate,
            &serde_json::to_vec(&again).unwrap(),
            &policy,
            &lookups,
        )
        .unwrap();
        let out2: serde_json::Value = serde_json::from_slice(&a2.body).unwrap();
        assert!(patch_of(&out2).is_none(), "{label}: second pass patched");
        *counts.entry("reviews").or_insert(0) += 1;
    }
    assert!(counts["reviews"] >= 30, "{counts:?}");
}
