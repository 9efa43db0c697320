//! `stsguard.io/roles`: which role each ordinal plays, e.g. `primary=0,replica=*`.
//!
//! Entries are `role=ordinals`, comma-separated; ordinals are `N`, `N-M`, `N-` (N and above) or
//! `*` (every ordinal no other entry names). A role may appear in several entries. Every ordinal
//! must map to exactly one role: overlaps, gaps, bad numbers and bad role names are errors that
//! quote the bad part.

use std::fmt;

/// The largest ordinal a spec may name; StatefulSets never get near it.
pub const MAX_ORDINAL: u32 = 1_000_000;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Range {
    /// first..=last; `last` None means unbounded.
    Span {
        first: u32,
        last: Option<u32>,
    },
    Rest,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    role: String,
    range: Range,
    text: String,
}

/// A parsed, checked role spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSpec {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RoleSpecError(pub String);

fn is_role_name(s: &str) -> bool {
    // A role is a label value and a file-name prefix: lower-case DNS label, no dots.
    crate::labels::is_dns_label(s)
}

fn parse_ordinal(s: &str, entry: &str) -> Result<u32, RoleSpecError> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RoleSpecError(format!(
            "\"{entry}\": \"{s}\" is not an ordinal (a number 0, 1, 2…)"
        )));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_ORDINAL => Ok(n),
        _ => Err(RoleSpecError(format!(
            "\"{entry}\": ordinal \"{s}\" is larger than {MAX_ORDINAL}"
        ))),
    }
}

impl RoleSpec {
    pub fn parse(spec: &str) -> Result<RoleSpec, RoleSpecError> {
        let mut entries = Vec::new();
        if spec.trim().is_empty() {
            return Err(RoleSpecError(
                "the roles spec is empty; write e.g. \"primary=0,replica=*\"".into(),
            ));
        }
        for raw in spec.split(',') {
            let text = raw.trim();
            if text.is_empty() {
                return Err(RoleSpecError(format!(
                    "\"{spec}\" has an empty entry (two commas, or a trailing comma)"
                )));
            }
            let Some((role, ords)) = text.split_once('=') else {
                return Err(RoleSpecError(format!(
                    "\"{text}\" is not role=ordinals (e.g. primary=0)"
                )));
            };
            let role = role.trim();
            if role.is_empty() {
                return Err(RoleSpecError(format!("\"{text}\" has an empty role name")));
            }
            if !is_role_name(role) {
                return Err(RoleSpecError(format!(
                    "\"{text}\": role \"{role}\" must be lower-case letters, digits and '-', at most 63"
                )));
            }
            let ords = ords.trim();
            let range = if ords == "*" {
                Range::Rest
            } else if let Some(first) = ords.strip_suffix('-') {
                Range::Span {
                    first: parse_ordinal(first, text)?,
                    last: None,
                }
            } else if let Some((a, b)) = ords.split_once('-') {
                let (first, last) = (parse_ordinal(a, text)?, parse_ordinal(b, text)?);
                if last < first {
                    return Err(RoleSpecError(format!(
                        "\"{text}\": range {first}-{last} runs backwards"
                    )));
                }
                Range::Span {
                    first,
                    last: Some(last),
                }
            } else {
                let n = parse_ordinal(ords, text)?;
                Range::Span {
                    first: n,
                    last: Some(n),
                }
            };
            entries.push(Entry {
                role: role.to_string(),
                range,
                text: text.to_string(),
            });
        }
        let parsed = RoleSpec { entries };
        parsed.check()?;
        Ok(parsed)
    }

    fn spans(&self) -> impl Iterator<Item = (u32, Option<u32>, &Entry)> {
        self.entries.iter().filter_map(|e| match e.range {
            Range::Span { first, last } => Some((first, last, e)),
            Range::Rest => None,
        })
    }

    fn check(&self) -> Result<(), RoleSpecError> {
        let rests: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.range == Range::Rest)
            .collect();
        if rests.len() > 1 {
            return Err(RoleSpecError(format!(
                "\"{}\" and \"{}\" both claim the rest (*); only one entry may",
                rests[0].text, rests[1].text
            )));
        }
        let mut spans: Vec<(u32, Option<u32>, &Entry)> = self.spans().collect();
        spans.sort_by_key(|s| s.0);
        for pair in spans.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.1.is_none_or(|last| b.0 <= last) {
                return Err(RoleSpecError(format!(
                    "\"{}\" and \"{}\" overlap at ordinal {}: every ordinal must have exactly one role",
                    a.2.text, b.2.text, b.0
                )));
            }
        }
        if rests.is_empty() {
            // No `*`: the spans must cover 0.. without a gap and end open.
            let mut next = 0u32;
            for (first, last, _) in &spans {
                if *first > next {
                    return Err(RoleSpecError(format!(
                        "ordinal {next} has no role in \"{}\"; add it to a role or end with role=* or role=N-",
                        self
                    )));
                }
                match last {
                    Some(l) => next = l + 1,
                    None => return Ok(()),
                }
            }
            return Err(RoleSpecError(format!(
                "ordinals from {next} on have no role in \"{}\"; end with role=* or role={next}-",
                self
            )));
        }
        Ok(())
    }

    /// The role of an ordinal.
    pub fn role_for(&self, ordinal: u32) -> &str {
        for (first, last, e) in self.spans() {
            if ordinal >= first && last.is_none_or(|l| ordinal <= l) {
                return &e.role;
            }
        }
        // check() guarantees a `*` entry exists when the spans leave a gap.
        self.entries
            .iter()
            .find(|e| e.range == Range::Rest)
            .map(|e| e.role.as_str())
            .unwrap_or("")
    }

    /// The distinct role names, in first-mention order.
    pub fn roles(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for e in &self.entries {
            if !out.contains(&e.role.as_str()) {
                out.push(&e.role);
            }
        }
        out
    }

    /// The role named first (the "primary").
    pub fn first_role(&self) -> &str {
        &self.entries[0].role
    }

    /// The lowest ordinal that plays the first role: its FQDN is `STS_PRIMARY_FQDN`.
    pub fn primary_ordinal(&self) -> u32 {
        let first = self.first_role();
        // The lowest ordinal of the first role is either a span start of that role, or, for `*`,
        // the lowest ordinal no span covers.
        let mut candidates: Vec<u32> = self
            .spans()
            .filter(|(_, _, e)| e.role == first)
            .map(|s| s.0)
            .collect();
        if self
            .entries
            .iter()
            .any(|e| e.role == first && e.range == Range::Rest)
        {
            let mut n = 0;
            while self.role_for(n) != first && n < MAX_ORDINAL {
                n += 1;
            }
            candidates.push(n);
        }
        candidates.into_iter().min().unwrap_or(0)
    }
}

impl fmt::Display for RoleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&e.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mysql_spec() -> Result<(), Box<dyn std::error::Error>> {
        let s = RoleSpec::parse("primary=0,replica=*")?;
        assert_eq!(s.role_for(0), "primary");
        assert_eq!(s.role_for(1), "replica");
        assert_eq!(s.role_for(77), "replica");
        assert_eq!(s.roles(), vec!["primary", "replica"]);
        assert_eq!(s.primary_ordinal(), 0);
        Ok(())
    }

    #[test]
    fn ranges() -> Result<(), Box<dyn std::error::Error>> {
        let s = RoleSpec::parse("seed=0-2, data=3-5 ,ingest=6-")?;
        assert_eq!(s.role_for(2), "seed");
        assert_eq!(s.role_for(3), "data");
        assert_eq!(s.role_for(6), "ingest");
        assert_eq!(s.role_for(600), "ingest");
        let s = RoleSpec::parse("replica=*,primary=0")?;
        assert_eq!(
            s.primary_ordinal(),
            1,
            "first role is replica; its lowest ordinal is 1"
        );
        let s = RoleSpec::parse("a=0,b=1,a=2-")?;
        assert_eq!(s.role_for(2), "a");
        assert_eq!(s.roles(), vec!["a", "b"]);
        Ok(())
    }

    #[test]
    fn errors_quote_the_bad_part() {
        let e = |s: &str| RoleSpec::parse(s).unwrap_err().0;
        assert!(
            e("primary=0,replica=0-").contains("\"primary=0\" and \"replica=0-\" overlap"),
            "{}",
            e("primary=0,replica=0-")
        );
        assert!(e("primary=0,replica=2-").contains("ordinal 1 has no role"));
        assert!(e("primary=0,replica=1-3").contains("from 4 on"));
        assert!(e("primary=x").contains("\"x\" is not an ordinal"));
        assert!(e("primary=-1,replica=*").contains("\"primary=-1\""));
        assert!(e("=0,replica=*").contains("empty role name"));
        assert!(e("Primary=0,replica=*").contains("\"Primary\""));
        assert!(e("primary=3-1,replica=*").contains("backwards"));
        assert!(e("a=*,b=*").contains("both claim the rest"));
        assert!(e("primary").contains("not role=ordinals"));
        assert!(e("primary=0,,replica=*").contains("empty entry"));
        assert!(e("").contains("empty"));
        assert!(e("primary=99999999999,replica=*").contains("larger than"));
    }
}
