//! The real-world corpus through `stsguard check` (the binary, with each file's
//! `.service.yaml` answering the Service look-up) and through /validate (the captured
//! `corpus/*.create.validating.json` reviews). No panic, well-formed answers; prints which rules
//! fired on which file (run with --nocapture to see the table).

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::*;
use stsguard::admission::{Endpoint, answer};
use stsguard::policy::Policy;
use stsguard::validate::NoLookups;

/// `rule` for a failed rule, `rule?` for one that could not be checked (look-up unknown).
fn rules_in(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|w| {
            let rule = w.strip_prefix('[')?.split(']').next()?;
            stsguard::policy::RuleId::parse(rule)?;
            Some(if w.contains("] not checked:") {
                format!("{rule}?")
            } else {
                rule.to_string()
            })
        })
        .collect()
}

#[test]
fn corpus_through_check() {
    let dir = fixtures().join("statefulsets");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut table = BTreeMap::new();
    let mut checked = 0;
    for p in files {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".yaml") || name.ends_with(".service.yaml") {
            continue;
        }
        let svc = dir.join(name.replace(".yaml", ".service.yaml"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stsguard"));
        cmd.args(["check", "-o", "json", "-f", p.to_str().unwrap()]);
        if svc.exists() {
            cmd.arg(svc.to_str().unwrap());
        }
        let out = cmd.output().unwrap();
        let code = out.status.code();
        if name.starts_with("legacy-") {
            // apps/v1beta1: the API server refuses it, so check calls it bad input.
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(code, Some(2), "{name}: {err}");
            assert!(
                err.contains(&name) && err.contains("document 1") && err.contains("apps/v1beta1"),
                "{name}: the message names the file, the document and the apiVersion: {err}"
            );
            continue;
        }
        assert!(
            matches!(code, Some(0) | Some(1)),
            "{name}: exit {code:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}"));
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 1, "{name}");
        let c = &arr[0];
        assert_eq!(
            code == Some(0),
            c["allowed"] == true,
            "{name}: exit code follows allowed"
        );
        assert_eq!(c["source"]["file"], p.to_str().unwrap(), "{name}");
        assert_eq!(c["source"]["document"], 1, "{name}");
        let findings = c["findings"].as_array().unwrap();
        let with = |result: &str| -> Vec<String> {
            findings
                .iter()
                .filter(|f| f["result"] == result && f["stage"] == "validation")
                .map(|f| f["rule"].as_str().unwrap().to_string())
                .collect()
        };
        let denied = with("fail");
        let mut warned = with("warn");
        warned.extend(with("not-checked").into_iter().map(|r| format!("{r}?")));
        table.insert(name.trim_end_matches(".yaml").to_string(), (denied, warned));
        checked += 1;
    }
    assert!(checked >= 30);
    eprintln!("\n| file | denied (enforce) | warned |\n|---|---|---|");
    for (f, (d, w)) in &table {
        eprintln!("| {f} | {} | {} |", d.join(", "), w.join(", "));
    }
    // Facts about these manifests the rules must see.
    let (d, _) = &table["csi-hostpath-socat-csi-driver-host-path"];
    assert!(d.is_empty(), "a 1-replica hostPath set is fine: {d:?}");
    let (_, w) = &table["zk-k8s-website"];
    assert!(
        !w.contains(&"governing-service".to_string()),
        "its Service file is headless and selects the pods: {w:?}"
    );
    let (d, _) = &table["cockroachdb-k8s-examples"];
    assert!(
        d.is_empty(),
        "its pod volume is named like its volumeClaimTemplate: per-pod, not shared: {d:?}"
    );
    let (_, w) = &table["jenkins-kubernetes-plugin"];
    assert!(
        w.contains(&"governing-service".to_string()),
        "its governing Service is not headless: {w:?}"
    );
    let (_, w) = &table["web-parallel-k8s-website"];
    assert!(
        !w.contains(&"readiness-probe".to_string()),
        "Parallel: readiness-probe does not apply"
    );
}

#[test]
fn corpus_through_validate() {
    let dir = fixtures().join("admission/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".create.validating.json"))
        .collect();
    files.sort();
    assert!(files.len() >= 30);
    eprintln!("\n| review | allowed | rules in the answer |\n|---|---|---|");
    for p in files {
        let review = read_json(&p);
        let a = answer(
            Endpoint::Validate,
            &serde_json::to_vec(&review).unwrap(),
            &Policy::default(),
            &NoLookups("--no-cluster".into()),
        )
        .unwrap();
        let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(out["response"]["uid"], review["request"]["uid"]);
        let warnings: Vec<String> = out["response"]["warnings"]
            .as_array()
            .map(|w| w.iter().map(|x| x.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        assert!(warnings.iter().all(|w| w.len() <= 256));
        let mut rules = rules_in(&warnings);
        if out["response"]["allowed"] == false {
            let msg = out["response"]["status"]["message"].as_str().unwrap();
            assert!(msg.contains('['), "a denial names its rule: {msg}");
            rules.extend(
                msg.split('[')
                    .skip(1)
                    .filter_map(|s| s.split(']').next())
                    .filter(|r| stsguard::policy::RuleId::parse(r).is_some())
                    .map(|r| format!("DENY {r}")),
            );
        }
        eprintln!(
            "| {} | {} | {} |",
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".create.validating.json"),
            out["response"]["allowed"],
            rules.join(", ")
        );
    }
}
