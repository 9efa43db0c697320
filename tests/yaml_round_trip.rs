//! `stsguard check --output yaml` reads back, with a YAML 1.1 reader (PyYAML, as kubectl reads
//! YAML 1.1) and a YAML 1.2 reader (serde-saphyr with YAML 1.2 core scalars), to exactly the
//! mutated objects of `--output json`: every apps/v1 StatefulSet of tests/fixtures (this
//! test reads it and fails when it is missing), and StatefulSets carrying generated strings that
//! YAML readers take for booleans, nulls, numbers, dates… in env values, labels and annotations.
//! PyYAML is a test prerequisite (`python3 -c 'import yaml'`; `.ci/install-tools.sh` installs it).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

fn check(args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .arg("check")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "check {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// Every document of `yaml`, read by PyYAML (`safe_load_all`, YAML 1.1) and written as JSON.
fn pyyaml(yaml: &str) -> Vec<Value> {
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump(list(yaml.safe_load_all(sys.stdin.buffer)), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is missing: run .ci/install-tools.sh");
    let mut input = child.stdin.take().unwrap();
    input.write_all(yaml.as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("No module named 'yaml'"),
        "PyYAML is missing: run .ci/install-tools.sh (python3-yaml)"
    );
    assert!(out.status.success(), "PyYAML refused the output: {err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The same with a YAML 1.2 reader: only `true`/`false` are booleans, no octal `0755`.
fn yaml12(yaml: &str) -> Vec<Value> {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.legacy_octal_numbers = false;
    serde_saphyr::from_multiple_with_options(yaml, o).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn mutated(json_out: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(json_out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c["mutated"].clone())
        .collect()
}

fn assert_round_trip(what: &str, args: &[&str], stdin: Option<&str>) -> usize {
    let (_, yaml) = check(&[args, &["-o", "yaml"]].concat(), stdin);
    let (_, json_out) = check(&[args, &["-o", "json"]].concat(), stdin);
    let want = mutated(&json_out);
    assert!(!want.is_empty(), "{what}: nothing checked");
    let v11 = pyyaml(&yaml);
    let v12 = yaml12(&yaml);
    for (reader, got) in [("PyYAML (YAML 1.1)", &v11), ("YAML 1.2", &v12)] {
        assert_eq!(got.len(), want.len(), "{what}: {reader}");
        for (g, w) in got.iter().zip(&want) {
            if g != w {
                panic!(
                    "{what}: {reader} reads the YAML output otherwise than the JSON output\nyaml:\n{yaml}\nread: {}\njson: {}",
                    serde_json::to_string(g).unwrap(),
                    serde_json::to_string(w).unwrap()
                );
            }
        }
    }
    want.len()
}

#[test]
fn every_fixture_reads_back_to_the_json_output() {
    let dir = fixtures().join("statefulsets");
    let mut n = 0;
    for (path, _) in apps_v1_statefulsets() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let svc = dir.join(name.replace(".yaml", ".service.yaml"));
        let mut args = vec!["-f", path.to_str().unwrap()];
        if svc.exists() {
            args.push(svc.to_str().unwrap());
        }
        n += assert_round_trip(&name, &args, None);
    }
    assert!(n >= 30, "{n} fixtures");
}

/// Strings that some YAML reader takes for something else than a string.
const TRICKY: &[&str] = &[
    "yes",
    "Yes",
    "YES",
    "no",
    "No",
    "NO",
    "on",
    "On",
    "ON",
    "off",
    "Off",
    "OFF",
    "y",
    "Y",
    "n",
    "N",
    "true",
    "True",
    "FALSE",
    "~",
    "null",
    "Null",
    "NULL",
    "",
    " ",
    "0x1F",
    "0X1f",
    "012",
    "0o17",
    "0b101",
    "08",
    "1e3",
    "1E3",
    "1.5",
    "-1",
    "+1",
    ".5",
    "1.",
    ".inf",
    "-.Inf",
    "+.INF",
    ".NaN",
    ".nan",
    "nan",
    "inf",
    "Infinity",
    "2024-01-01",
    "2024-01-01T10:00:00Z",
    "2001-12-14 21:59:43.10 -5",
    "1_000",
    "0x_1F",
    "1:20",
    "190:20:30",
    "-1:20",
    "=",
    "<<",
    "- a",
    "-",
    "? x",
    ": x",
    "a: b",
    "a #b",
    "#c",
    "@x",
    "`x",
    "!x",
    "&x",
    "*x",
    "%x",
    "|",
    ">",
    "[a]",
    "{a: b}",
    "'q'",
    "\"q\"",
    "a\nb",
    "a\n",
    "a\n\n",
    "\na",
    " a\nb",
    "a \nb",
    "tab\tx",
    "\t",
    "cr\r\nlf",
    "nel\u{85}x",
    "ls\u{2028}x",
    "ps\u{2029}x",
    "bom\u{feff}",
    "del\u{7f}",
    "bell\u{7}",
    "ünï",
    "日本",
    "emoji 🦀",
    "---",
    "...",
    "--- a",
    "a\n---\nb",
    "a\n...\nb",
    "$(POD_NAME)",
    "$$x",
    "\\",
    "\\n",
    "key=value,x=y",
    "0",
    "00",
    "0.0",
    "-0",
    "1,000",
];

/// Generated strings: any of [`TRICKY`], or random text from a set of characters that matter to
/// YAML.
fn strings(n: usize) -> Vec<String> {
    let mut runner = TestRunner::deterministic();
    let random = proptest::string::string_regex(
        "[a-zA-Z0-9 :#\\-?.,\\[\\]{}!&*|>'\"%@`~=<+_\\n\\t\\\\\u{85}\u{2028}é]{0,12}",
    )
    .unwrap();
    let picked = proptest::sample::select(TRICKY);
    let mut out: Vec<String> = TRICKY.iter().map(|s| s.to_string()).collect();
    while out.len() < n {
        let a = random.new_tree(&mut runner).unwrap().current();
        let b = picked.new_tree(&mut runner).unwrap().current();
        out.push(a.clone());
        out.push(format!("{b}{a}"));
        out.push(format!("{a}{b}"));
    }
    out
}

#[test]
fn generated_strings_in_env_labels_and_annotations_read_back() {
    let strings = strings(1200);
    let mut items = Vec::new();
    for (i, chunk) in strings.chunks(12).enumerate() {
        let labels: serde_json::Map<String, Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, s)| (format!("{s}#{j}"), json!(s)))
            .chain([("app".to_string(), json!("db"))])
            .collect();
        let annotations: serde_json::Map<String, Value> =
            chunk.iter().map(|s| (s.clone(), json!(s))).collect();
        let env: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, s)| json!({"name": format!("V{j}"), "value": s}))
            .collect();
        items.push(json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": format!("s{i}"), "labels": labels, "annotations": annotations},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": labels.clone(), "annotations": annotations.clone()},
                    "spec": {"containers": [{"name": "db", "image": "db", "env": env}]}
                }
            }
        }));
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let n = assert_round_trip(
        "generated strings",
        &["-f", "-"],
        Some(&serde_json::to_string(&list).unwrap()),
    );
    assert_eq!(n, items.len());
}
