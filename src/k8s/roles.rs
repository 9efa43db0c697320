//! `stsguard.io/roles`: which role each ordinal plays, e.g. `primary=0,replica=*`.
//!
//! Entries are `role=ordinals`, comma-separated; ordinals are `N`, `N-M`, `N-` (N and above) or
//! `*` (every ordinal no other entry names). A role may appear in several entries. Every ordinal
//! must map to exactly one role: overlaps, gaps, bad numbers and bad role names are errors that
//! quote the bad part.
//!
//! Every operation is linear or n log n in the spec's length: the spans are sorted once at parse
//! time, a role is found by binary search, and nothing walks the ordinals.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use k8s_openapi::api::apps::v1::StatefulSet;

use super::annotations::{self as ann, keys};
use super::labels::parse_label_pairs;

/// The largest ordinal a spec may name; StatefulSets never get near it.
pub const MAX_ORDINAL: u32 = 1_000_000;

/// The longest spec accepted: 256 KiB, the API server's limit on all of an object's annotations
/// together (`TotalAnnotationSizeLimitB`). Mutating webhooks see objects before that check.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;

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
    /// The spans as (first, last, entry index), sorted by `first`, not overlapping.
    sorted: Vec<(u32, Option<u32>, usize)>,
    /// The entry of `*`, if any.
    rest: Option<usize>,
    /// The distinct role names.
    names: HashSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RoleSpecError(pub String);

fn is_role_name(s: &str) -> bool {
    // A role is a label value and a file-name prefix: lower-case DNS label, no dots.
    crate::k8s::labels::is_dns_label(s)
}

fn parse_ordinal(s: &str, entry: &str) -> Result<u32, RoleSpecError> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RoleSpecError(format!(
            "\"{}\": \"{}\" is not an ordinal (a number 0, 1, 2…)",
            short(entry),
            short(s)
        )));
    }
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_ORDINAL => Ok(n),
        _ => Err(RoleSpecError(format!(
            "\"{}\": ordinal \"{}\" is larger than {MAX_ORDINAL}",
            short(entry),
            short(s)
        ))),
    }
}

impl RoleSpec {
    pub fn parse(spec: &str) -> Result<RoleSpec, RoleSpecError> {
        let mut entries = Vec::new();
        if spec.len() > MAX_SPEC_BYTES {
            return Err(RoleSpecError(format!(
                "the roles spec is {} bytes, over the {MAX_SPEC_BYTES}-byte limit \
                 (the API server's limit on all annotations together)",
                spec.len()
            )));
        }
        if spec.trim().is_empty() {
            return Err(RoleSpecError(
                "the roles spec is empty; write e.g. \"primary=0,replica=*\"".into(),
            ));
        }
        for raw in spec.split(',') {
            let text = raw.trim();
            if text.is_empty() {
                return Err(RoleSpecError(format!(
                    "\"{}\" has an empty entry (two commas, or a trailing comma)",
                    short(spec)
                )));
            }
            let Some((role, ords)) = text.split_once('=') else {
                return Err(RoleSpecError(format!(
                    "\"{}\" is not role=ordinals (e.g. primary=0)",
                    short(text)
                )));
            };
            let role = role.trim();
            if role.is_empty() {
                return Err(RoleSpecError(format!(
                    "\"{}\" has an empty role name",
                    short(text)
                )));
            }
            if !is_role_name(role) {
                return Err(RoleSpecError(format!(
                    "\"{}\": role \"{}\" must be lower-case letters, digits and '-', at most 63",
                    short(text),
                    short(role)
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
                        "\"{}\": range {first}-{last} runs backwards",
                        short(text)
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
        let mut sorted: Vec<(u32, Option<u32>, usize)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match e.range {
                Range::Span { first, last } => Some((first, last, i)),
                Range::Rest => None,
            })
            .collect();
        sorted.sort_by_key(|s| s.0);
        let rest = entries.iter().position(|e| e.range == Range::Rest);
        let names = entries.iter().map(|e| e.role.clone()).collect();
        let parsed = RoleSpec {
            entries,
            sorted,
            rest,
            names,
        };
        parsed.check()?;
        Ok(parsed)
    }

    fn check(&self) -> Result<(), RoleSpecError> {
        let mut rests = self.entries.iter().filter(|e| e.range == Range::Rest);
        if let (Some(a), Some(b)) = (rests.next(), rests.next()) {
            return Err(RoleSpecError(format!(
                "\"{}\" and \"{}\" both claim the rest (*); only one entry may",
                short(&a.text),
                short(&b.text)
            )));
        }
        for pair in self.sorted.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if a.1.is_none_or(|last| b.0 <= last) {
                return Err(RoleSpecError(format!(
                    "\"{}\" and \"{}\" overlap at ordinal {}: every ordinal must have exactly one role",
                    short(&self.entries[a.2].text),
                    short(&self.entries[b.2].text),
                    b.0
                )));
            }
        }
        // The first ordinal no span covers, if any (one walk over the sorted spans).
        let mut next = Some(0u32);
        for (first, last, _) in &self.sorted {
            match next {
                Some(n) if *first <= n => next = last.map(|l| l.saturating_add(1)),
                _ => break,
            }
        }
        if let (Some(r), None) = (self.rest, next) {
            return Err(RoleSpecError(format!(
                "\"{}\" covers no ordinal: the other entries give every ordinal a role; drop it",
                short(&self.entries[r].text)
            )));
        }
        if self.rest.is_none() {
            // No `*`: the spans must cover 0.. without a gap and end open.
            let mut next = 0u32;
            for (first, last, _) in &self.sorted {
                if *first > next {
                    return Err(RoleSpecError(format!(
                        "ordinal {next} has no role in \"{}\"; add it to a role or end with role=* or role=N-",
                        short(&self.to_string())
                    )));
                }
                match last {
                    Some(l) => next = l + 1,
                    None => return Ok(()),
                }
            }
            return Err(RoleSpecError(format!(
                "ordinals from {next} on have no role in \"{}\"; end with role=* or role={next}-",
                short(&self.to_string())
            )));
        }
        Ok(())
    }

    /// The role of an ordinal (binary search over the sorted spans).
    pub fn role_for(&self, ordinal: u32) -> &str {
        let i = self.sorted.partition_point(|s| s.0 <= ordinal);
        if let Some((_, last, e)) = i.checked_sub(1).map(|i| self.sorted[i]) {
            if last.is_none_or(|l| ordinal <= l) {
                return &self.entries[e].role;
            }
        }
        // check() guarantees a `*` entry exists when the spans leave a gap.
        self.rest.map_or("", |r| self.entries[r].role.as_str())
    }

    /// The distinct role names, in first-mention order.
    pub fn roles(&self) -> Vec<&str> {
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .map(|e| e.role.as_str())
            .filter(|r| seen.insert(*r))
            .collect()
    }

    /// Does the spec name this role? (A set look-up.)
    pub fn has_role(&self, role: &str) -> bool {
        self.names.contains(role)
    }

    /// The role named first (the "primary").
    pub fn first_role(&self) -> &str {
        &self.entries[0].role
    }

    /// The lowest ordinal that plays the first role: its FQDN is `STS_PRIMARY_FQDN`.
    pub fn primary_ordinal(&self) -> u32 {
        let first = self.first_role();
        // The lowest ordinal of the first role is either a span start of that role, or, for `*`,
        // the lowest ordinal no span covers (one walk over the sorted spans).
        let lowest_span = self
            .sorted
            .iter()
            .find(|s| self.entries[s.2].role == first)
            .map(|s| s.0);
        let lowest_rest = self
            .rest
            .filter(|r| self.entries[*r].role == first)
            .and_then(|_| {
                let mut next = 0u32;
                for (start, last, _) in &self.sorted {
                    if *start > next {
                        break;
                    }
                    next = last.map(|l| l.saturating_add(1))?;
                }
                Some(next)
            });
        match (lowest_span, lowest_rest) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(0),
        }
    }
}

/// A spec entry quoted in a message, cut to a readable length.
fn short(s: &str) -> std::borrow::Cow<'_, str> {
    crate::text::quote(s)
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

// Reading the role annotations of a StatefulSet.

/// The role spec of a StatefulSet, if it asks for roles. Errors are the `role-spec` rule's.
pub fn spec_of(sts: &StatefulSet) -> Option<Result<RoleSpec, String>> {
    ann::get(sts, keys::ROLES).map(|s| RoleSpec::parse(s).map_err(|e| e.0))
}

/// Directories a role mount must not cover: mounting the emptyDir there would hide the image's
/// own files (`/bin`, `/etc`, `/usr`, …), or shadow what the kubelet and the runtime provide
/// (`/proc`, `/sys`, `/dev`, the service account token under `/var/run/secrets`).
const SYSTEM_DIRS: &[&str] = &[
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32", "/opt",
    "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib",
    "/var/log", "/var/run",
];
/// Trees nothing may be mounted into.
const SYSTEM_TREES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/var/run/secrets",
    "/run/secrets",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
];

/// Why `path` cannot be the role mount path, or `None` when it can: it must be absolute, plain
/// (no `.` or `..` parts) and not a system directory or inside a system tree.
pub fn mount_path_problem(path: &str) -> Option<String> {
    let shown = crate::text::quote(path);
    if !path.starts_with('/') {
        return Some(format!("\"{shown}\" must be an absolute path"));
    }
    if path.len() > 1024 {
        return Some(format!("\"{shown}\" is longer than 1024 bytes"));
    }
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if parts.iter().any(|p| *p == "." || *p == "..") {
        return Some(format!(
            "\"{shown}\" has a \".\" or \"..\" part; write the plain path"
        ));
    }
    let norm = format!("/{}", parts.join("/"));
    let inside = |tree: &str| norm == tree || norm.starts_with(&format!("{tree}/"));
    if SYSTEM_DIRS.contains(&norm.as_str()) || SYSTEM_TREES.iter().any(|t| inside(t)) {
        return Some(format!(
            "\"{shown}\" is a system path (mounting there hides the image's files); use e.g. /etc/stsguard"
        ));
    }
    None
}

/// `stsguard.io/server-id-base`, when it is a number.
pub fn server_id_base(sts: &StatefulSet) -> Option<Result<u64, String>> {
    ann::get(sts, keys::SERVER_ID_BASE).map(|v| {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("{}: \"{v}\" is not a whole number", keys::SERVER_ID_BASE))
    })
}

/// The node selector pairs of a role, from `stsguard.io/role-node-selector.<role>` annotations.
pub fn role_node_selector(
    annotations: &BTreeMap<String, String>,
    role: &str,
) -> Option<Result<Vec<(String, String)>, String>> {
    annotations
        .get(&format!("{}{role}", keys::ROLE_NODE_SELECTOR_PREFIX))
        .map(|v| parse_label_pairs(v))
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
        let long = format!("primary=0,replica=*,{}", "x".repeat(10_000));
        assert!(e(&long).len() < 400, "messages quote a cut-down part");
        let huge = format!("primary=0,replica=1-{}", ",a=9".repeat(MAX_SPEC_BYTES / 4));
        assert!(e(&huge).contains("byte limit"));
    }

    /// A spec as large as the API server lets through, in the shapes that used to walk every
    /// ordinal or compare every pair: each answer is exact and needs no walk.
    #[test]
    fn large_specs_are_exact() -> Result<(), Box<dyn std::error::Error>> {
        // `p=*` first, then spans of another role over 0..=N: the primary is the first gap.
        let mut text = String::from("p=*");
        let mut n = 0u32;
        while text.len() < MAX_SPEC_BYTES - 32 {
            text.push_str(&format!(",a={}-{}", n, n + 9));
            n += 10;
        }
        let s = RoleSpec::parse(&text)?;
        assert_eq!(s.primary_ordinal(), n);
        assert_eq!(s.role_for(n), "p");
        assert_eq!(s.role_for(n - 1), "a");
        assert_eq!(s.role_for(5), "a");
        assert_eq!(s.roles(), vec!["p", "a"]);
        // Spans given out of order still find their roles.
        let s = RoleSpec::parse("b=5-9,a=0-4,c=10-")?;
        assert_eq!(
            (s.role_for(0), s.role_for(7), s.role_for(99)),
            ("a", "b", "c")
        );
        assert_eq!(s.primary_ordinal(), 5);
        // A `*` that covers no ordinal is refused (it would name no pod).
        for spec in ["a=*,b=0-3,a=4-", "a=*,b=0-"] {
            let e = RoleSpec::parse(spec).unwrap_err().0;
            assert!(e.contains("\"a=*\" covers no ordinal"), "{e}");
        }
        Ok(())
    }
}
