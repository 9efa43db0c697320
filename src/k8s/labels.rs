//! Label syntax checks and label-selector matching.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// RFC 1123 label: lower-case alphanumerics and '-', at most 63.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// RFC 1123 subdomain: dot-separated labels, at most 253.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label key: `[prefix/]name`.
pub fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name_part(name),
        None => is_name_part(key),
    }
}

/// A label value: empty, or at most 63 of `[A-Za-z0-9._-]` starting and ending alphanumeric.
pub fn is_label_value(v: &str) -> bool {
    v.is_empty() || is_name_part(v)
}

/// Does `selector` select an object with `labels`? An empty selector selects everything, as in
/// Kubernetes; an unknown operator selects nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    if let Some(ml) = &selector.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let got = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => got.is_some_and(|v| values.contains(v)),
            "NotIn" => got.is_none_or(|v| !values.contains(v)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => false,
        }
    })
}

/// Is the selector empty (it would select every pod of the namespace)?
pub fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector
            .match_expressions
            .as_ref()
            .is_none_or(|m| m.is_empty())
}

/// The ordinal from a StatefulSet pod name's `-N` suffix (`mysql-2` → 2).
pub fn ordinal_from_name(name: &str) -> Option<u32> {
    let (_, suffix) = name.rsplit_once('-')?;
    if suffix.is_empty() || suffix.len() > 9 || !suffix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if suffix.len() > 1 && suffix.starts_with('0') {
        return None;
    }
    suffix.parse().ok()
}

/// Parses `key=value,key2=value2` (as in `stsguard.io/role-node-selector.<role>`). Linear in the
/// text: duplicates are found with a set; messages quote a cut-down part.
pub fn parse_label_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    use crate::text::quote;
    let mut out: Vec<(String, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("\"{}\" is not key=value", quote(part)));
        };
        let (k, v) = (k.trim(), v.trim());
        if !is_qualified_name(k) {
            return Err(format!(
                "\"{}\" in \"{}\" is not a valid label key",
                quote(k),
                quote(part)
            ));
        }
        if !is_label_value(v) {
            return Err(format!(
                "\"{}\" in \"{}\" is not a valid label value",
                quote(v),
                quote(part)
            ));
        }
        if !seen.insert(k) {
            return Err(format!("key \"{k}\" appears twice"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    if out.is_empty() {
        return Err(format!("\"{}\" names no key=value pair", quote(s)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "db")])),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "canary".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        assert!(selector_matches(
            &sel,
            &labels(&[("app", "db"), ("tier", "a")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "db"), ("tier", "c")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "db"), ("tier", "a"), ("canary", "1")])
        ));
        assert!(!selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "a")])
        ));
        assert!(selector_matches(&LabelSelector::default(), &labels(&[])));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "x".into(),
                operator: "Weird".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(!selector_matches(&bad, &labels(&[("x", "1")])));
    }

    #[test]
    fn names() {
        assert!(is_qualified_name("kubernetes.io/hostname"));
        assert!(is_qualified_name("node-class"));
        assert!(!is_qualified_name("Bad Key"));
        assert!(!is_qualified_name("/x"));
        assert!(is_label_value(""));
        assert!(is_label_value("big.v1_a"));
        assert!(!is_label_value("-big"));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(is_dns_subdomain("cluster.local"));
        assert!(!is_dns_subdomain("Cluster..local"));
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_from_name("mysql-0"), Some(0));
        assert_eq!(ordinal_from_name("my-sql-12"), Some(12));
        assert_eq!(ordinal_from_name("mysql"), None);
        assert_eq!(ordinal_from_name("mysql-"), None);
        assert_eq!(ordinal_from_name("mysql-01"), None);
        assert_eq!(ordinal_from_name("mysql-x1"), None);
    }

    #[test]
    fn pairs() -> Result<(), Box<dyn std::error::Error>> {
        assert_eq!(
            parse_label_pairs("a=b, c/d=")?,
            vec![("a".into(), "b".into()), ("c/d".into(), "".into())]
        );
        assert!(parse_label_pairs("a").unwrap_err().contains("\"a\""));
        assert!(parse_label_pairs("a=b c").unwrap_err().contains("\"b c\""));
        assert!(parse_label_pairs("").is_err());
        assert!(parse_label_pairs("a=1,a=2").is_err());
        Ok(())
    }
}
