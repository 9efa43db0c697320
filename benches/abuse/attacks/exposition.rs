//! A strict parser of the Prometheus / OpenMetrics text exposition, and the check of `/metrics`
//! after an attack (it parses, no forged line).

use super::*;

/// A sample's labels, in order.
pub type Labels = Vec<(String, String)>;

#[derive(Debug, Default)]
pub struct Exposition {
    /// family name → type
    pub families: BTreeMap<String, String>,
    /// (sample name, labels) in order
    pub samples: Vec<(String, Labels)>,
    pub errors: Vec<String>,
}

impl Exposition {
    pub fn series_of(&self, family: &str) -> usize {
        self.samples
            .iter()
            .filter(|(n, _)| family_of(n, &self.families).as_deref() == Some(family))
            .count()
    }

    pub fn label_values(&self, label: &str) -> BTreeSet<String> {
        self.samples
            .iter()
            .flat_map(|(_, ls)| ls.iter())
            .filter(|(k, _)| k == label)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

pub(crate) const SUFFIXES: &[&str] = &[
    "_total", "_created", "_bucket", "_count", "_sum", "_info", "_gcount", "_gsum",
];

pub(crate) fn family_of(sample: &str, families: &BTreeMap<String, String>) -> Option<String> {
    if families.contains_key(sample) {
        return Some(sample.to_string());
    }
    SUFFIXES.iter().find_map(|s| {
        let f = sample.strip_suffix(s)?;
        families.contains_key(f).then(|| f.to_string())
    })
}

pub(crate) fn is_name_start(c: u8, colon: bool) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || (colon && c == b':')
}

pub(crate) fn is_name_char(c: u8, colon: bool) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || (colon && c == b':')
}

/// Reads a metric (`colon`) or label name at the start of `s`.
pub(crate) fn take_name(s: &str, colon: bool) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    if b.is_empty() || !is_name_start(b[0], colon) {
        return None;
    }
    let end = b
        .iter()
        .position(|c| !is_name_char(*c, colon))
        .unwrap_or(b.len());
    Some((&s[..end], &s[end..]))
}

/// Reads `{name="value",…}` at the start of `s` (after the `{`), strict escapes.
pub(crate) fn take_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((out, rest));
        }
        let (name, rest) = take_name(s, false).ok_or("bad label name")?;
        if !seen.insert(name.to_string()) {
            return Err(format!("label {name} twice"));
        }
        let rest = rest.strip_prefix("=\"").ok_or("label without =\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape \\{:?}", other.map(|o| o.1))),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((name.to_string(), value));
        s = &rest[end + 1..];
        if let Some(r) = s.strip_prefix(',') {
            s = r;
            if s.starts_with('}') && !out.is_empty() {
                // a trailing comma is allowed by the Prometheus format only
                continue;
            }
        } else if !s.starts_with('}') {
            return Err("labels not separated by ','".into());
        }
    }
}

pub(crate) fn is_number(s: &str) -> bool {
    matches!(s, "NaN" | "+Inf" | "-Inf" | "Inf" | "+inf" | "-inf")
        || (s.parse::<f64>().is_ok()
            && s.bytes()
                .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')))
}

/// Parses a whole exposition. OpenMetrics (`# EOF` required) when `openmetrics`. Every sample
/// must belong to the family its nearest `# TYPE` declared; no series twice.
pub fn parse_exposition(text: &str, openmetrics: bool) -> Exposition {
    let mut x = Exposition::default();
    let err = |x: &mut Exposition, line: usize, what: String| {
        if x.errors.len() < 20 {
            let what = if what.len() > 300 {
                let mut cut = 300;
                while !what.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!("{}…", &what[..cut])
            } else {
                what
            };
            x.errors.push(format!("line {}: {what}", line + 1));
        } else if x.errors.len() == 20 {
            x.errors.push("… (more)".into());
        }
    };
    if !text.is_empty() && !text.ends_with('\n') {
        err(
            &mut x,
            0,
            "the exposition does not end with a newline".into(),
        );
    }
    let mut current: Option<String> = None;
    let mut eof = false;
    let mut series = HashSet::new();
    for (i, line) in text.split_terminator('\n').enumerate() {
        if eof {
            err(&mut x, i, "content after # EOF".into());
            break;
        }
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let (kw, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            if !matches!(kw, "HELP" | "TYPE" | "UNIT") {
                err(&mut x, i, format!("unknown comment line: {line}"));
                continue;
            }
            let Some((name, r)) = take_name(rest, true) else {
                err(&mut x, i, format!("bad metric name in: {line}"));
                continue;
            };
            if kw == "TYPE" {
                let ty = r.trim_start_matches(' ');
                if !matches!(
                    ty,
                    "counter"
                        | "gauge"
                        | "histogram"
                        | "gaugehistogram"
                        | "stateset"
                        | "info"
                        | "summary"
                        | "unknown"
                        | "untyped"
                ) || !r.starts_with(' ')
                {
                    err(&mut x, i, format!("bad TYPE line: {line}"));
                }
                if x.families
                    .insert(name.to_string(), ty.to_string())
                    .is_some()
                {
                    err(&mut x, i, format!("family {name} declared twice"));
                }
                current = Some(name.to_string());
            } else if !r.is_empty() && !r.starts_with(' ') {
                err(&mut x, i, format!("bad {kw} line: {line}"));
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            err(
                &mut x,
                i,
                format!("not a sample, TYPE, HELP or UNIT line: {line:?}"),
            );
            continue;
        }
        let Some((name, rest)) = take_name(line, true) else {
            err(&mut x, i, format!("bad sample name: {line}"));
            continue;
        };
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(r) => match take_labels(r) {
                Ok(lr) => lr,
                Err(e) => {
                    err(&mut x, i, format!("{e}: {line}"));
                    continue;
                }
            },
            None => (Vec::new(), rest),
        };
        let Some(rest) = rest.strip_prefix(' ') else {
            err(&mut x, i, format!("no value: {line}"));
            continue;
        };
        // value [timestamp] [# exemplar]
        let (main, exemplar) = match rest.split_once(" # ") {
            Some((m, e)) if openmetrics => (m, Some(e)),
            _ => (rest, None),
        };
        let parts: Vec<&str> = main.split(' ').collect();
        if parts.is_empty() || parts.len() > 2 || !parts.iter().all(|p| is_number(p)) {
            err(&mut x, i, format!("bad value or timestamp: {line}"));
            continue;
        }
        if let Some(e) = exemplar {
            let ok = e
                .strip_prefix('{')
                .and_then(|r| take_labels(r).ok())
                .is_some_and(|(_, r)| {
                    let r = r.trim_start_matches(' ');
                    !r.is_empty() && r.split(' ').all(is_number)
                });
            if !ok {
                err(&mut x, i, format!("bad exemplar: {line}"));
            }
        }
        let fam = family_of(name, &x.families);
        match (&current, &fam) {
            (Some(c), Some(f)) if c == f => {}
            _ => err(
                &mut x,
                i,
                format!(
                    "sample {name} is not of the family declared above it ({})",
                    current.as_deref().unwrap_or("none")
                ),
            ),
        }
        let mut key_labels = labels.clone();
        key_labels.sort();
        if !series.insert((name.to_string(), key_labels)) {
            err(&mut x, i, format!("series repeated: {line}"));
        }
        x.samples.push((name.to_string(), labels));
    }
    if openmetrics && !eof {
        err(&mut x, 0, "OpenMetrics exposition without # EOF".into());
    }
    x
}

/// Fetches `/metrics` and checks it: it parses strictly, and no sample is forged.
pub async fn check_metrics(srv: &Server, out: &mut Outcome) -> Option<Exposition> {
    match metrics_get(srv.metrics, "/metrics").await {
        Err(e) => {
            out.flag(format!("/metrics unreachable after the attack ({e})"), true);
            None
        }
        Ok((status, ct, body)) => {
            if status != 200 {
                out.flag(format!("/metrics answered HTTP {status}"), true);
                return None;
            }
            let text = String::from_utf8_lossy(&body);
            let om = ct.contains("openmetrics");
            let x = parse_exposition(&text, om);
            let forged = x
                .samples
                .iter()
                .filter(|(n, _)| n.starts_with("stsguard_fake_metric"))
                .count();
            out.check(
                format!(
                    "/metrics lines a strict parser refuses{}",
                    if x.errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", x.errors.join(" | "))
                    }
                ),
                x.errors.len() as f64,
                0.0,
                "",
            );
            out.check(
                "forged stsguard_fake_metric samples in /metrics",
                forged as f64,
                0.0,
                "",
            );
            out.note(format!(
                "/metrics: {} bytes, {} samples, {} families",
                body.len(),
                x.samples.len(),
                x.families.len()
            ));
            Some(x)
        }
    }
}
