//! Every mutated corpus StatefulSet is valid against the Kubernetes schemas (strict: no unknown
//! field) for 1.28 and the newest version kubernetes-validate knows, whenever the original is.
//! Uses the real `kubernetes-validate` (PyPI; .ci/install-tools.sh installs it) and reads
//! tests/fixtures/statefulsets.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::policy::Policy;

fn failing(version: &str, files: &[std::path::PathBuf]) -> BTreeSet<String> {
    let out = Command::new("kubernetes-validate")
        .args(["-k", version, "--strict", "--quiet"])
        .args(files)
        .output()
        .expect("kubernetes-validate is not installed: run .ci/install-tools.sh (pip install kubernetes-validate)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .filter(|l| l.starts_with("ERROR"))
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect()
}

#[test]
fn mutated_corpus_is_schema_valid() {
    let dir = tempfile::tempdir().unwrap();
    let mut originals = Vec::new();
    let mut mutated = Vec::new();
    for (p, raw) in apps_v1_statefulsets() {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        for (variant, roles) in [("plain", false), ("roles", true)] {
            let mut raw = raw.clone();
            if roles {
                annotate(
                    &mut raw,
                    &[
                        ("stsguard.io/roles", "primary=0,replica=*"),
                        ("stsguard.io/role-config", "cfg"),
                    ],
                );
            }
            let sts: StatefulSet = serde_json::from_value(raw.clone()).unwrap();
            let m = stsguard::mutate::mutate(&sts, &Policy::default());
            let o = dir.path().join(format!("orig-{variant}-{name}"));
            let r = dir.path().join(format!("mut-{variant}-{name}"));
            std::fs::write(&o, stsguard::yaml::to_string_of(&raw).unwrap()).unwrap();
            std::fs::write(&r, stsguard::yaml::to_string_of(&m.object).unwrap()).unwrap();
            originals.push(o);
            mutated.push(r);
        }
    }
    assert!(mutated.len() >= 60);
    for version in ["1.28.0", "1.37.0"] {
        let bad_orig = failing(version, &originals);
        let bad_mut = failing(version, &mutated);
        let mut regressions = Vec::new();
        for m in &bad_mut {
            let orig = m.replace("/mut-", "/orig-");
            if !bad_orig.contains(&orig) {
                regressions.push(m.clone());
            }
        }
        assert!(
            regressions.is_empty(),
            "mutation made these invalid for Kubernetes {version}: {regressions:?}"
        );
        // The check itself works: a broken object is caught.
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: x}\nspec: {selector: {}, template: {}, serviceName: 7}\n").unwrap();
        assert_eq!(failing(version, &[broken]).len(), 1);
    }
}
