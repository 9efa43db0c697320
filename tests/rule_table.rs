//! The rule table is the one list of rules: the chart's values schema and the README's rule
//! table name exactly its ids, with its default modes, and the README's list of the rules a
//! Scale runs is the table's.

use std::collections::BTreeSet;

use stsguard::validate::{RULES, Runs};

fn repo(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ids() -> BTreeSet<String> {
    RULES.iter().map(|r| r.id.as_str().to_string()).collect()
}

#[test]
fn the_chart_schema_lists_exactly_the_rules() {
    let schema: serde_json::Value =
        serde_json::from_str(&repo("charts/stsguard/values.schema.json")).unwrap();
    // The rules object is wherever `validation.rules` sits in the schema: find it by shape.
    fn find(v: &serde_json::Value, out: &mut Vec<BTreeSet<String>>) {
        if let Some(m) = v.as_object() {
            if let Some(rules) = m
                .get("rules")
                .and_then(|r| r.get("properties"))
                .and_then(|p| p.as_object())
            {
                out.push(rules.keys().cloned().collect());
            }
            m.values().for_each(|x| find(x, out));
        } else if let Some(a) = v.as_array() {
            a.iter().for_each(|x| find(x, out));
        }
    }
    let mut found = Vec::new();
    find(&schema, &mut found);
    assert_eq!(found.len(), 1, "one rules object in the schema");
    assert_eq!(found[0], ids());
}

#[test]
fn the_readme_lists_exactly_the_rules_with_their_defaults() {
    let readme = repo("README.md");
    let rows: Vec<(String, String)> = readme
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let id = cells.get(1)?.trim_matches('`').to_string();
            let default = cells.get(3)?.to_string();
            RULES
                .iter()
                .any(|r| r.id.as_str() == id)
                .then_some((id, default))
        })
        .collect();
    let listed: BTreeSet<String> = rows.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(listed, ids(), "README rule table");
    assert_eq!(rows.len(), RULES.len(), "each rule listed once");
    for (id, default) in rows {
        let rule = RULES.iter().find(|r| r.id.as_str() == id).unwrap();
        assert!(
            default.starts_with(rule.default_mode.as_str()),
            "README says {id} defaults to {default:?}, the table {}",
            rule.default_mode
        );
    }
    // The rules a Scale runs, as the README names them.
    let scale: BTreeSet<&str> = RULES
        .iter()
        .filter(|r| r.runs == Runs::OnWriteAndScale)
        .map(|r| r.id.as_str())
        .collect();
    let para = readme
        .split("\n\n")
        .find(|p| p.starts_with("A `Scale` request"))
        .expect("the README's paragraph on Scale requests");
    let named: BTreeSet<&str> = RULES
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| para.contains(&format!("`{id}`")))
        .collect();
    assert_eq!(named, scale);
}

#[test]
fn each_id_is_its_row() {
    for r in RULES {
        assert_eq!(r.id.rule().id, r.id);
        assert_eq!(stsguard::validate::RuleId::parse(r.id.as_str()), Some(r.id));
    }
}
