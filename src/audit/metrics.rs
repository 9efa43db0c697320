//! The audit's Prometheus gauges.
//!
//! `stsguard_audit_violations{rule,mode,namespace}`: rule and mode come from fixed sets; the
//! namespaces are the cluster's, bounded by [`MAX_NAMESPACES`] (past it, the remaining
//! namespaces are summed under `namespace="_other"`). Every run replaces the whole set, so a fixed
//! or deleted object's series disappear.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Audit;
use crate::check::Rule;
use crate::policy::Mode;

/// Namespaces with their own series, at most (the first ones in name order).
pub const MAX_NAMESPACES: usize = 500;
/// The namespace label of the series past [`MAX_NAMESPACES`].
pub const OTHER: &str = "_other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub rule: &'static str,
    pub mode: &'static str,
    pub namespace: String,
}

#[derive(Clone, Default)]
pub struct AuditMetrics {
    pub violations: Family<ViolationLabels, Gauge>,
    pub last_run: Gauge<f64, AtomicU64>,
    pub duration: Gauge<f64, AtomicU64>,
}

impl AuditMetrics {
    /// The gauges, registered in `registry` (prefix `stsguard`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = AuditMetrics::default();
        registry.register(
            "audit_violations",
            "StatefulSets failing a rule (results fail and warn) at the last background audit, by rule, mode and namespace",
            m.violations.clone(),
        );
        registry.register(
            "audit_last_run_timestamp_seconds",
            "End of the last background audit, seconds since the epoch",
            m.last_run.clone(),
        );
        registry.register(
            "audit_duration_seconds",
            "Wall time of the last background audit",
            m.duration.clone(),
        );
        m
    }

    /// Replaces the violation series with this audit's, and stamps the run.
    pub fn record(&self, audit: &Audit, seconds: f64, now_unix: f64) {
        let mut totals = super::Totals::default();
        totals.add(audit);
        self.record_counts(&totals.violations, seconds, now_unix);
    }

    /// Replaces the violation series with these counts per (rule, mode, namespace), and stamps
    /// the run.
    pub fn record_counts(
        &self,
        counts: &BTreeMap<(Rule, Mode, String), i64>,
        seconds: f64,
        now_unix: f64,
    ) {
        let own: BTreeSet<&str> = counts
            .keys()
            .map(|(_, _, ns)| ns.as_str())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(MAX_NAMESPACES)
            .collect();
        self.violations.clear();
        for ((rule, mode, ns), n) in counts {
            let namespace = if own.contains(ns.as_str()) {
                ns.as_str()
            } else {
                OTHER
            };
            self.violations
                .get_or_create(&ViolationLabels {
                    rule: rule.as_str(),
                    mode: mode.as_str(),
                    namespace: namespace.to_string(),
                })
                .inc_by(*n);
        }
        self.duration.set(seconds);
        self.last_run.set(now_unix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ObjectResult;
    use crate::validate::{Finding, Outcome};

    fn object(ns: &str, outcome: Outcome) -> ObjectResult {
        ObjectResult {
            namespace: ns.into(),
            name: "x".into(),
            uid: None,
            passed: 1,
            results: vec![Finding {
                rule: crate::policy::RuleId::SharedClaim.into(),
                mode: Mode::Enforce,
                outcome,
                message: String::new(),
            }],
        }
    }

    fn text(m: &AuditMetrics) -> Result<String, std::fmt::Error> {
        let mut r = Registry::with_prefix("stsguard");
        r.register("audit_violations", "", m.violations.clone());
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &r)?;
        Ok(s)
    }

    #[test]
    fn series_replaced_per_run_and_capped() -> Result<(), Box<dyn std::error::Error>> {
        let mut registry = Registry::default();
        let m = AuditMetrics::register(&mut registry);
        let a = Audit {
            objects: vec![
                object("a", Outcome::Fail),
                object("a", Outcome::Fail),
                object("b", Outcome::NotChecked),
            ],
            excluded: 0,
        };
        m.record(&a, 0.5, 1000.0);
        let t = text(&m)?;
        assert!(
            t.contains(
                r#"stsguard_audit_violations{rule="shared-claim",mode="enforce",namespace="a"} 2"#
            ),
            "{t}"
        );
        assert!(
            !t.contains(r#"namespace="b""#),
            "not checked is no violation: {t}"
        );
        // Fixed: the series goes.
        m.record(&Audit::default(), 0.1, 1001.0);
        assert!(!text(&m)?.contains("namespace=\"a\""));
        // Past the cap, the rest is summed under _other.
        let many = Audit {
            objects: (0..MAX_NAMESPACES + 3)
                .map(|i| object(&format!("ns-{i:04}"), Outcome::Fail))
                .collect(),
            excluded: 0,
        };
        m.record(&many, 0.1, 1002.0);
        let t = text(&m)?;
        assert_eq!(
            t.matches("stsguard_audit_violations{").count(),
            MAX_NAMESPACES + 1
        );
        assert!(t.contains(r#"namespace="_other"} 3"#), "{t}");
        assert_eq!(m.last_run.get(), 1002.0);
        Ok(())
    }
}
