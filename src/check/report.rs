//! Printing results: the human report, JSON, the mutated objects as YAML, the patches. Each
//! printer takes a list of [`Checked`] results, whatever their [`super::Source`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Checked, Rule};
use crate::validate::Outcome;

/// The counts of the report's last line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SummaryLine {
    checked: usize,
    allowed: usize,
    denied: usize,
    /// Findings that allow with a warning (rules at mode `warn`, mutation warnings).
    warnings: usize,
    /// Rules that could not be evaluated.
    not_checked: usize,
}

impl SummaryLine {
    fn of(results: &[Checked]) -> SummaryLine {
        let allowed = results.iter().filter(|c| c.allowed).count();
        SummaryLine {
            checked: results.len(),
            allowed,
            denied: results.len() - allowed,
            warnings: results.iter().map(|c| c.count(Outcome::Warn)).sum(),
            not_checked: results.iter().map(|c| c.count(Outcome::NotChecked)).sum(),
        }
    }
}

impl std::fmt::Display for SummaryLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        write!(
            f,
            "{} checked: {} allowed, {} denied, {}, {} not checked",
            plural(self.checked, "StatefulSet", "StatefulSets"),
            self.allowed,
            self.denied,
            plural(self.warnings, "warning", "warnings"),
            self.not_checked
        )
    }
}

/// Splits a "not checked" message `what (why)` into its parts: `why` is the text in the
/// parentheses that close the message (which may hold parentheses of its own).
fn what_why(message: &str) -> (&str, &str) {
    let Some(body) = message.strip_suffix(')') else {
        return ("", message);
    };
    let mut depth = 0usize;
    for (i, c) in body.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' if depth > 0 => depth -= 1,
            '(' => {
                return (body[..i].trim_end(), &body[i + 1..]);
            }
            _ => {}
        }
    }
    ("", message)
}

/// The human report: per StatefulSet its verdict, what the mutation adds, placement, denials
/// and warnings; then the rules that could not be checked, once per rule and reason with the
/// objects they concern; then one summary line.
pub fn render(results: &[Checked]) -> String {
    let mut s = String::new();
    // (rule, why) → (object, what was looked up), objects in the order of the results.
    let mut unchecked: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for c in results {
        let verdict = if c.allowed { "allowed" } else { "DENIED" };
        let _ = writeln!(
            s,
            "{} {}/{}: {verdict} ({})",
            c.kind, c.namespace, c.name, c.source
        );
        if c.findings.iter().any(|f| f.rule == Rule::Bound) {
            s.push_str("  mutation: not mutated (past a bound)\n");
        } else if c.added.is_empty() && c.removed.is_empty() {
            s.push_str("  mutation: nothing to add\n");
        } else {
            // An existing object is adopted when its template next changes: not before.
            let when = if c.existing {
                " at its next pod template change"
            } else {
                ""
            };
            let n = c.patch.0.len();
            let _ = writeln!(s, "  mutation{when} ({n} patch operations):");
            for a in &c.added {
                let _ = writeln!(s, "    + {a}");
            }
            for r in &c.removed {
                let _ = writeln!(s, "    - {r}");
            }
        }
        if !c.placement.is_empty() {
            s.push_str("  placement:\n");
            for (role, p) in &c.placement {
                let _ = writeln!(s, "    {role}: {p}");
            }
        }
        for f in &c.findings {
            match f.outcome {
                Outcome::Fail => {
                    let _ = writeln!(s, "  DENY [{}] {}", f.rule, f.message);
                }
                Outcome::Warn => {
                    let _ = writeln!(s, "  warn [{}] {}", f.rule, f.message);
                }
                Outcome::NotChecked => {
                    let (what, why) = what_why(&f.message);
                    unchecked
                        .entry((f.rule.to_string(), why.to_string()))
                        .or_default()
                        .push((format!("{}/{}", c.namespace, c.name), what.to_string()));
                }
            }
        }
    }
    if !unchecked.is_empty() {
        let from_cluster = results
            .iter()
            .all(|c| matches!(c.source, super::Source::Cluster { .. }));
        s.push_str(if from_cluster {
            "not checked (a look-up the cluster did not answer: see the reason; a kind that could not be listed needs list on it for the kubeconfig's user):\n"
        } else {
            "not checked (a look-up that the input does not answer; add the object to the input, or audit the cluster with stsguard audit):\n"
        });
        for ((rule, why), objects) in &unchecked {
            // What was looked up, said once when it is the same for every object.
            let same = objects.windows(2).all(|w| w[0].1 == w[1].1);
            let listed: Vec<String> = objects
                .iter()
                .map(|(o, what)| {
                    if same || what.is_empty() {
                        o.clone()
                    } else {
                        format!("{o} ({what})")
                    }
                })
                .collect();
            let head = match objects.first() {
                Some((_, what)) if same && !what.is_empty() => format!("{what} ({why})"),
                _ => why.clone(),
            };
            let _ = writeln!(s, "  [{rule}] {head}: {}", listed.join(", "));
        }
    }
    let _ = writeln!(s, "{}", SummaryLine::of(results));
    s
}

/// `--output json`: an array with one object per result.
pub fn json(results: &[Checked]) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(results).map(|s| s + "\n")
}

/// `--output yaml`: the mutated objects, one YAML document each (see [`crate::yaml`]).
pub fn yaml(results: &[Checked]) -> Result<String, serde_json::Error> {
    let mut s = String::new();
    for c in results {
        s.push_str("---\n");
        s.push_str(&crate::yaml::to_string_of(&c.mutated)?);
    }
    Ok(s)
}

/// `--output patch`: the JSONPatch of the one result, or an array of them.
pub fn patches(results: &[Checked]) -> Result<String, serde_json::Error> {
    let all: Vec<&json_patch::Patch> = results.iter().map(|c| &c.patch).collect();
    let v = match all.as_slice() {
        [one] => serde_json::to_string_pretty(one),
        _ => serde_json::to_string_pretty(&all),
    };
    v.map(|s| s + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Source;
    use crate::policy::RuleId;
    use crate::validate::Finding;

    fn not_checked(source: Source) -> Checked {
        Checked {
            source,
            kind: "StatefulSet",
            name: "db".into(),
            namespace: "ns".into(),
            allowed: true,
            findings: vec![Finding {
                rule: Rule::Validation(RuleId::GoverningService),
                mode: crate::policy::Mode::Warn,
                outcome: Outcome::NotChecked,
                message: "Service ns/db (no Service in the input)".into(),
            }],
            patch: json_patch::Patch(vec![]),
            mutated: Default::default(),
            violations: vec![],
            warnings: vec![],
            added: vec![],
            placement: vec![],
            removed: vec![],
            existing: false,
        }
    }

    #[test]
    fn the_not_checked_hint_fits_where_the_objects_came_from() {
        let file = render(&[not_checked(Source::File {
            file: "a.yaml".into(),
            document: 1,
            item: None,
            line: None,
        })]);
        assert!(file.contains("add the object to the input"), "{file}");
        let cluster = render(&[not_checked(Source::Cluster {
            cluster: "prod".into(),
        })]);
        assert!(cluster.contains("the cluster did not answer"), "{cluster}");
        assert!(
            !cluster.contains("add the object to the input"),
            "{cluster}"
        );
        assert!(!cluster.contains("audit the cluster"), "{cluster}");
    }
}
