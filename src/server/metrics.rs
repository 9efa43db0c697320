//! Prometheus metrics (prometheus-client, text format on the metrics port).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Label values come from fixed sets only ([`kind_label`], [`operation_label`], outcomes): a
/// client can never add a series or write into the exposition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub kind: &'static str,
    pub operation: &'static str,
    pub outcome: &'static str,
}

/// The `kind` label: the kinds the webhooks are registered for, else `other`.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "StatefulSet" => "StatefulSet",
        "Pod" => "Pod",
        "Scale" => "Scale",
        "Namespace" => "Namespace",
        "PersistentVolumeClaim" => "PersistentVolumeClaim",
        "" => "",
        _ => "other",
    }
}

/// The `operation` label: the four admission operations, else `other`.
pub fn operation_label(op: &str) -> &'static str {
    match op {
        "CREATE" => "CREATE",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        "CONNECT" => "CONNECT",
        "" => "",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub what: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// `connections`, `bytes` (the in-flight budget), `time` (the review's budget), `size` (413).
    pub bound: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: &'static str,
    pub mode: &'static str,
    pub result: &'static str,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<EndpointLabels, Histogram>,
    pub cert_expiry: Gauge,
    pub reloads: Family<ReloadLabels, Counter>,
    pub rules: Family<RuleLabels, Counter>,
    pub rejected: Family<RejectLabels, Counter>,
    /// Quiet connections closed to make room for new ones at a connection cap.
    pub reclaimed: Counter,
    pub audit: crate::audit::metrics::AuditMetrics,
    pub pod_role_repairs: Family<crate::repair::RepairLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("stsguard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission reviews answered",
            requests.clone(),
        );
        let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
            ])
        });
        registry.register(
            "admission_duration_seconds",
            "Time to answer a review",
            latency.clone(),
        );
        let cert_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, seconds since the epoch",
            cert_expiry.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register("reloads", "Certificate and policy reloads", reloads.clone());
        let rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "rejected",
            "Connections and requests turned away by a bound (connection cap, byte budget, time budget)",
            rejected.clone(),
        );
        let reclaimed = Counter::default();
        registry.register(
            "connections_reclaimed",
            "Quiet connections closed to make room for new ones at a connection cap",
            reclaimed.clone(),
        );
        let rules = Family::<RuleLabels, Counter>::default();
        registry.register(
            "rule_results",
            "Validation rule results by rule, mode and result",
            rules.clone(),
        );
        let audit = crate::audit::metrics::AuditMetrics::register(&mut registry);
        let pod_role_repairs = Family::<crate::repair::RepairLabels, Counter>::default();
        registry.register(
            "pod_role_repairs",
            "Pods of role-managed StatefulSets created while stsguard was not reachable, by what the repair did (labelled, no_role, failed)",
            pod_role_repairs.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            cert_expiry,
            reloads,
            rules,
            rejected,
            reclaimed,
            audit,
            pod_role_repairs,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn reload(&self, what: &'static str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                what,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    pub fn reject(&self, bound: &'static str) {
        self.rejected.get_or_create(&RejectLabels { bound }).inc();
    }

    pub fn record(
        &self,
        endpoint: &'static str,
        s: &crate::admission::ReviewSummary,
        seconds: f64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint,
                kind: kind_label(&s.kind),
                operation: operation_label(s.operation),
                outcome: s.outcome.as_str(),
            })
            .inc();
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(seconds);
        for (rule, mode, result) in &s.rule_results {
            self.rules
                .get_or_create(&RuleLabels {
                    rule: rule.as_str(),
                    mode: mode.as_str(),
                    result: result.as_str(),
                })
                .inc();
        }
    }
}
