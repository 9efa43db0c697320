//! What an attack measured: findings against their bounds, notes, and the report a test asserts
//! (naming every bound exceeded and by how much) or the benchmark prints.

use super::*;

/// One measured figure and its bound. `over`: the real value is more than `value` (the client
/// stopped waiting, or the server was killed).
#[derive(Clone, Debug)]
pub struct Finding {
    pub what: String,
    pub value: f64,
    pub over: bool,
    pub bound: f64,
    pub unit: &'static str,
}

impl Finding {
    pub fn new(what: impl Into<String>, value: f64, bound: f64, unit: &'static str) -> Finding {
        Finding {
            what: what.into(),
            value,
            over: false,
            bound,
            unit,
        }
    }

    /// A yes/no finding: `bad` fails it.
    pub fn flag(what: impl Into<String>, bad: bool) -> Finding {
        Finding::new(what, f64::from(bad), 0.0, FLAG)
    }

    pub fn at_least(mut self, over: bool) -> Finding {
        self.over = over;
        self
    }

    pub fn ok(&self) -> bool {
        !self.over && self.value <= self.bound
    }

    pub fn measured(&self) -> String {
        if self.unit == FLAG {
            return if self.value > 0.0 { "yes" } else { "no" }.into();
        }
        format!(
            "{}{}{}",
            if self.over { "> " } else { "" },
            num(self.value),
            unit_sep(self.unit)
        )
    }
}

pub(crate) fn unit_sep(unit: &str) -> String {
    if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    }
}

pub(crate) fn num(v: f64) -> String {
    if v.is_infinite() {
        "∞".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The unit of a yes/no finding.
pub const FLAG: &str = "flag";

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.unit == FLAG {
            let mark = if self.ok() { "ok   " } else { "FAIL " };
            return write!(f, "{mark} {}: {}", self.what, self.measured());
        }
        if self.ok() {
            write!(
                f,
                "ok    {}: {} (bound ≤ {}{})",
                self.what,
                self.measured(),
                num(self.bound),
                unit_sep(self.unit)
            )
        } else {
            let by = self.value - self.bound;
            let by = if by.is_finite() && by > 0.0 {
                format!(
                    "; exceeded by {}{}{}",
                    if self.over { "more than " } else { "" },
                    num(by),
                    unit_sep(self.unit)
                )
            } else {
                String::new()
            };
            write!(
                f,
                "FAIL  {}: {} > bound {}{}{by}",
                self.what,
                self.measured(),
                num(self.bound),
                unit_sep(self.unit)
            )
        }
    }
}

/// What one attack measured.
#[derive(Default, Debug)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
}

impl Outcome {
    pub(crate) fn check(
        &mut self,
        what: impl Into<String>,
        value: f64,
        bound: f64,
        unit: &'static str,
    ) {
        self.findings.push(Finding::new(what, value, bound, unit));
    }
    pub(crate) fn flag(&mut self, what: impl Into<String>, bad: bool) {
        self.findings.push(Finding::flag(what, bad));
    }
    pub(crate) fn note(&mut self, s: impl Into<String>) {
        self.notes.push(s.into());
    }
}

/// An attack run: what it measured plus the server-wide figures.
#[derive(Debug)]
pub struct Report {
    pub attack: Attack,
    pub outcome: Outcome,
    pub peak_rss_mib: f64,
    pub rss_killed: bool,
    pub probe: ProbeStats,
    pub log_tail: String,
}

impl Report {
    pub fn failures(&self) -> Vec<&Finding> {
        self.outcome.findings.iter().filter(|f| !f.ok()).collect()
    }

    pub fn text(&self) -> String {
        let mut s = format!("attack {:?}: {}\n", self.attack, self.attack.title());
        for f in &self.outcome.findings {
            let _ = writeln!(s, "  {f}");
        }
        for n in &self.outcome.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }

    /// Panics, naming every bound exceeded and by how much.
    pub fn assert_ok(&self) {
        let failed = self.failures();
        if failed.is_empty() {
            eprintln!("{}", self.text());
            return;
        }
        panic!(
            "{} bound(s) exceeded under attack {:?}:\n{}\n--- server log (last lines) ---\n{}",
            failed.len(),
            self.attack,
            self.text(),
            self.log_tail
        );
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn status_text(r: &Result<Answer, String>) -> String {
    match r {
        Ok(a) => format!("HTTP {}, {} bytes", a.status, a.size),
        Err(e) => e.clone(),
    }
}

pub(crate) fn timing_text(len: usize, t: Duration, r: &Result<Answer, String>) -> String {
    match r {
        Ok(_) => format!("{} KB: {:.1} ms ({})", len / 1000, ms(t), status_text(r)),
        Err(_) => format!(
            "{} KB: > {:.0} s ({})",
            len / 1000,
            t.as_secs_f64(),
            status_text(r)
        ),
    }
}
