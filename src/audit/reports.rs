//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, the Kubernetes Policy working group's format, read
//! by Policy Reporter and `kubectl get polr`): one per namespace, named `stsguard`, written with
//! server-side apply and deleted when the namespace has no result left.
//!
//! There is no typed struct for PolicyReport in k8s-openapi: the objects are built as JSON and
//! sent through kube's `DynamicObject` API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::{Audit, NamespaceResults, Outcome};
use crate::policy::Mode;

/// The report's name in every namespace.
pub const NAME: &str = "stsguard";
/// Field manager of the server-side apply, and the `policy` and `source` of every result.
pub const MANAGER: &str = "stsguard";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    )
}

/// A result's `severity`, from the mode the rule was judged at.
pub fn severity(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "high",
        Mode::Warn => "medium",
        Mode::Off => "info",
    }
}

/// A `timestamp` ({seconds, nanos}).
pub fn timestamp(t: SystemTime) -> Value {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    json!({"seconds": d.as_secs(), "nanos": d.subsec_nanos()})
}

/// When each (object uid or name, rule) result was first seen, so that an unchanged report is
/// the same object run after run (and is not written again).
pub type FirstSeen = HashMap<(String, &'static str), SystemTime>;

/// The PolicyReport of one namespace. `first_seen` gives each result's timestamp (results not
/// in it are stamped `now` and added).
pub fn build(
    namespace: &str,
    results: &NamespaceResults<'_>,
    first_seen: &mut FirstSeen,
    now: SystemTime,
) -> Value {
    let mut items = Vec::new();
    let mut objects = results.objects.clone();
    objects.sort_by(|a, b| a.name.cmp(&b.name));
    for o in objects {
        let mut rs: Vec<_> = o.results.iter().collect();
        rs.sort_by_key(|r| r.rule);
        for r in rs {
            let key = (
                o.uid.clone().unwrap_or_else(|| o.name.clone()),
                r.rule.as_str(),
            );
            let seen = *first_seen.entry(key).or_insert(now);
            let mut resource = json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "namespace": namespace,
                "name": o.name,
            });
            if let Some(uid) = &o.uid {
                resource["uid"] = json!(uid);
            }
            items.push(json!({
                "policy": "stsguard",
                "rule": r.rule.as_str(),
                "result": r.outcome.as_str(),
                "source": "stsguard",
                "severity": severity(r.mode),
                "scored": r.outcome != Outcome::Skip,
                "message": r.message,
                "properties": {"mode": r.mode.as_str()},
                "resources": [resource],
                "timestamp": timestamp(seen),
            }));
        }
    }
    json!({
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": NAME,
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGER},
        },
        "summary": {
            "pass": results.summary.pass,
            "fail": results.summary.fail,
            "warn": results.summary.warn,
            "error": results.summary.error,
            "skip": results.summary.skip,
        },
        "results": items,
    })
}

/// Every namespace's report (only namespaces with a result that is not a pass).
pub fn build_all(
    audit: &Audit,
    first_seen: &mut FirstSeen,
    now: SystemTime,
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut live = std::collections::HashSet::new();
    for (ns, results) in audit.by_namespace() {
        for o in &results.objects {
            for r in &o.results {
                live.insert((
                    o.uid.clone().unwrap_or_else(|| o.name.clone()),
                    r.rule.as_str(),
                ));
            }
        }
        if results.has_results() {
            out.insert(ns.to_string(), build(ns, &results, first_seen, now));
        }
    }
    // Results gone (fixed, deleted): a new occurrence later is new.
    first_seen.retain(|k, _| live.contains(k));
    out
}

/// What one write did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub applied: usize,
    pub unchanged: usize,
    pub deleted: usize,
    /// Namespaces whose report could not be written or deleted (logged once per error).
    pub failed: usize,
}

/// Whether the PolicyReport CRD is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crd {
    Unknown,
    Missing,
    Present,
}

/// Writes the reports of successive audits: applies what changed, deletes what is gone.
pub struct Writer {
    client: kube::Client,
    ar: ApiResource,
    /// The report last applied per namespace (content), to skip unchanged ones.
    last: BTreeMap<String, Value>,
    first_seen: FirstSeen,
    crd: Crd,
    /// When the reports were last listed (to find reports this writer did not write: left over
    /// by an earlier leader, or deleted by hand); every [`RESYNC`].
    listed: Option<Instant>,
    /// The last error per namespace, to log each once.
    failed: BTreeMap<String, String>,
}

/// How often the writer lists the reports to converge on what is there.
pub const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "cannot list PolicyReports (the chart's ClusterRole grants list with audit.policyReports): {0}"
    )]
    List(kube::Error),
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Writer {
    pub fn new(client: kube::Client) -> Self {
        Writer {
            client,
            ar: api_resource(),
            last: BTreeMap::new(),
            first_seen: FirstSeen::new(),
            crd: Crd::Unknown,
            listed: None,
            failed: BTreeMap::new(),
        }
    }

    /// Forget what was written: the next write applies everything and lists what is there (on
    /// becoming the leader: another replica may have written in between).
    pub fn reset(&mut self) {
        self.last.clear();
        self.listed = None;
    }

    /// Applies the reports of this audit and deletes those of namespaces without results.
    /// Returns `Ok(None)` when the PolicyReport CRD is not installed (said once in the log).
    pub async fn write(&mut self, audit: &Audit) -> Result<Option<Written>, WriteError> {
        let wanted = build_all(audit, &mut self.first_seen, SystemTime::now());
        let mut written = Written::default();
        // Which reports exist: listed at first, then every RESYNC; else what this writer wrote.
        let mut existing: BTreeSet<String> = self.last.keys().cloned().collect();
        if self.crd != Crd::Present || self.listed.is_none_or(|t| t.elapsed() >= RESYNC) {
            let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.ar);
            match all
                .list_metadata(&ListParams::default().labels(&format!("{MANAGED_BY}={MANAGER}")))
                .await
            {
                Ok(list) => {
                    if self.crd != Crd::Present {
                        tracing::info!(
                            "PolicyReport CRD (policyreports.wgpolicyk8s.io/v1alpha2) found: writing PolicyReports"
                        );
                    }
                    self.crd = Crd::Present;
                    self.listed = Some(Instant::now());
                    existing = list
                        .items
                        .into_iter()
                        .filter(|o| o.metadata.name.as_deref() == Some(NAME))
                        .filter_map(|o| o.metadata.namespace)
                        .collect();
                    // Reports this writer has not seen (written by another replica, or edited):
                    // apply again.
                    self.last.retain(|ns, _| existing.contains(ns));
                }
                Err(e) if not_found(&e) => {
                    if self.crd != Crd::Missing {
                        tracing::warn!(
                            "the PolicyReport CRD (policyreports.wgpolicyk8s.io, v1alpha2) is not installed: audit results go to the metrics only; install it (Kyverno and Policy Reporter ship it) to get PolicyReports"
                        );
                    }
                    self.crd = Crd::Missing;
                    return Ok(None);
                }
                Err(e) => return Err(WriteError::List(e)),
            }
        }
        let mut failures = BTreeMap::new();
        for (ns, report) in &wanted {
            if self.last.get(ns) == Some(report) {
                written.unchanged += 1;
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &self.ar);
            match api
                .patch(
                    NAME,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(report),
                )
                .await
            {
                Ok(_) => {
                    written.applied += 1;
                    self.last.insert(ns.clone(), report.clone());
                }
                Err(e) => {
                    // One namespace (e.g. being deleted) does not hold up the others.
                    if not_found(&e) {
                        self.listed = None; // the CRD may have gone: list again next time
                    }
                    failures.insert(ns.clone(), e.to_string());
                }
            }
        }
        for ns in existing.iter().filter(|ns| !wanted.contains_key(*ns)) {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &self.ar);
            match api.delete(NAME, &DeleteParams::default()).await {
                Ok(_) => {
                    written.deleted += 1;
                    self.last.remove(ns);
                }
                Err(e) if not_found(&e) => {
                    self.last.remove(ns);
                }
                Err(e) => {
                    failures.insert(ns.clone(), e.to_string());
                }
            }
        }
        // Said once per namespace and error, not at every audit.
        for (ns, e) in &failures {
            if self.failed.get(ns) != Some(e) {
                tracing::warn!(namespace = %ns, error = %e, "PolicyReport not written; retrying at the next audit");
            }
        }
        written.failed = failures.len();
        self.failed = failures;
        Ok(Some(written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{ObjectResult, RuleResult};
    use crate::policy::RuleId;

    fn audit() -> Audit {
        Audit {
            objects: vec![
                ObjectResult {
                    namespace: "db".into(),
                    name: "etcd".into(),
                    uid: Some("u-1".into()),
                    passed: 9,
                    results: vec![
                        RuleResult {
                            rule: RuleId::QuorumOdd,
                            mode: Mode::Enforce,
                            outcome: Outcome::Fail,
                            message: "4 members".into(),
                        },
                        RuleResult {
                            rule: RuleId::DisruptionBudget,
                            mode: Mode::Warn,
                            outcome: Outcome::Skip,
                            message: "not checked: x".into(),
                        },
                    ],
                },
                ObjectResult {
                    namespace: "db".into(),
                    name: "cache".into(),
                    uid: Some("u-2".into()),
                    passed: 10,
                    results: vec![RuleResult {
                        rule: RuleId::GoverningService,
                        mode: Mode::Warn,
                        outcome: Outcome::Warn,
                        message: "no Service".into(),
                    }],
                },
                ObjectResult {
                    namespace: "clean".into(),
                    name: "ok".into(),
                    uid: Some("u-3".into()),
                    passed: 11,
                    results: vec![],
                },
            ],
            excluded: 0,
        }
    }

    #[test]
    fn one_report_per_namespace_with_results() {
        let t0 = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let mut seen = FirstSeen::new();
        let all = build_all(&audit(), &mut seen, t0);
        assert_eq!(
            all.keys().collect::<Vec<_>>(),
            ["db"],
            "no report for a clean namespace"
        );
        let r = &all["db"];
        assert_eq!(r["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(r["kind"], "PolicyReport");
        assert_eq!(r["metadata"]["name"], "stsguard");
        assert_eq!(r["metadata"]["namespace"], "db");
        assert_eq!(
            r["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "stsguard"
        );
        assert_eq!(
            r["summary"],
            json!({"pass": 19, "fail": 1, "warn": 1, "error": 0, "skip": 1})
        );
        let results = r["results"].as_array().cloned().unwrap_or_default();
        // Sorted by object name, then rule.
        let got: Vec<(String, String, String, String)> = results
            .iter()
            .map(|x| {
                (
                    x["resources"][0]["name"].as_str().unwrap_or("").to_string(),
                    x["rule"].as_str().unwrap_or("").to_string(),
                    x["result"].as_str().unwrap_or("").to_string(),
                    x["severity"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let want = [
            ("cache", "governing-service", "warn", "medium"),
            ("etcd", "quorum-odd", "fail", "high"),
            ("etcd", "disruption-budget", "skip", "medium"),
        ];
        assert_eq!(
            got,
            want.map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string()))
        );
        let q = &results[1];
        assert_eq!(q["policy"], "stsguard");
        assert_eq!(q["source"], "stsguard");
        assert_eq!(q["message"], "4 members");
        assert_eq!(q["properties"]["mode"], "enforce");
        assert_eq!(
            q["resources"][0],
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "namespace": "db", "name": "etcd", "uid": "u-1"})
        );
        assert_eq!(
            q["timestamp"],
            json!({"seconds": 1_700_000_000u64, "nanos": 5})
        );
        assert_eq!(results[2]["scored"], false);
    }

    #[test]
    fn timestamps_are_first_seen_and_reports_stable() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = UNIX_EPOCH + Duration::from_secs(2000);
        let mut seen = FirstSeen::new();
        let a = build_all(&audit(), &mut seen, t0);
        let b = build_all(&audit(), &mut seen, t1);
        assert_eq!(
            a, b,
            "an unchanged audit gives the same report (not written again)"
        );
        // The etcd quorum result fixed, then back: a new timestamp.
        let mut fixed = audit();
        fixed.objects[0].results.remove(0);
        let c = build_all(&fixed, &mut seen, t1);
        assert_eq!(c["db"]["results"].as_array().map(Vec::len), Some(2));
        assert_eq!(c["db"]["summary"]["fail"], 0);
        let d = build_all(&audit(), &mut seen, t1);
        let q = d["db"]["results"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["rule"] == "quorum-odd"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(q["timestamp"]["seconds"], 2000);
        // Every result fixed: no report for the namespace.
        let mut none = audit();
        for o in &mut none.objects {
            o.results.clear();
        }
        assert!(build_all(&none, &mut seen, t1).is_empty());
        assert!(seen.is_empty());
    }
}
