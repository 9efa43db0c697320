//! PolicyReports (`wgpolicyk8s.io/v1alpha2`, the Kubernetes Policy working group's format, read
//! by Policy Reporter and `kubectl get polr`): one per namespace, named `stsguard`, written with
//! server-side apply and deleted when the namespace has no result left. A namespace whose results
//! do not fit in [`REPORT_BUDGET`] bytes gets several: `stsguard`, `stsguard-2`, `stsguard-3`...
//!
//! This module builds them (pure: names, the results' hash, the parts); [`super::writer`] writes
//! them to the cluster, one namespace at a time, and sends a namespace again only when the hash
//! of its results ([`HASH_ANNOTATION`]) changed.
//!
//! There is no typed struct for PolicyReport in k8s-openapi: the objects are built as JSON and
//! sent through kube's `DynamicObject` API.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube::core::{ApiResource, GroupVersionKind};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{NamespaceResults, ObjectResult};
use crate::check::Rule;
use crate::policy::Mode;
use crate::validate::{Finding, Outcome};

/// The report's name in every namespace (the first part; the next ones add `-2`, `-3`...).
pub const NAME: &str = "stsguard";
/// Field manager of the server-side apply, and the `policy` and `source` of every result.
pub const MANAGER: &str = "stsguard";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The hash of the namespace's results (all parts), on every part.
pub const HASH_ANNOTATION: &str = "stsguard.io/results-hash";

/// Bytes of results in one PolicyReport, at most. The API server refuses a request body over
/// 3 MiB with 413 (`MaxRequestBodyBytes`, 3 * 1024 * 1024, in k8s.io/apiserver
/// pkg/server/config.go), and etcd refuses to store an object over 1.5 MiB (its
/// `--max-request-bytes` default, 1572864): 1 MiB of results leaves room under both for the
/// report's metadata (its managedFields included).
pub const REPORT_BUDGET: usize = 1024 * 1024;

/// Changes when the report's layout changes, so that reports written by an older version are
/// written again.
const FORMAT: &str = "stsguard-policyreport-1";

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("wgpolicyk8s.io", "v1alpha2", "PolicyReport"),
        "policyreports",
    )
}

/// A PolicyReport's `summary`: rule results per PolicyReport `result`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReportSummary {
    pub pass: usize,
    pub fail: usize,
    pub warn: usize,
    pub error: usize,
    pub skip: usize,
}

impl ReportSummary {
    /// The counts of a namespace's results.
    pub(crate) fn of(results: &NamespaceResults<'_>) -> ReportSummary {
        let mut s = ReportSummary::default();
        for o in &results.objects {
            s.pass += o.passed;
            for r in &o.results {
                s.count(r.outcome);
            }
        }
        s
    }

    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Fail => self.fail += 1,
            Outcome::Warn => self.warn += 1,
            Outcome::NotChecked => self.skip += 1,
        }
    }
}

/// A finding's PolicyReport `result`: "not checked" is `skip` there.
fn report_result(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Fail => "fail",
        Outcome::Warn => "warn",
        Outcome::NotChecked => "skip",
    }
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

/// When each (object uid or name, rule) result of one namespace was first seen: a result's
/// `timestamp`, kept run after run while the result stays.
pub type FirstSeen = HashMap<(String, String), SystemTime>;

fn result_key(o: &ObjectResult, rule: &str) -> (String, String) {
    (
        o.uid.clone().unwrap_or_else(|| o.name.clone()),
        rule.to_string(),
    )
}

/// The name of part `i` (from 0) of a namespace's report.
pub fn part_name(i: usize) -> String {
    if i == 0 {
        NAME.to_string()
    } else {
        format!("{NAME}-{}", i + 1)
    }
}

/// Is `name` one of the names [`part_name`] gives?
pub fn is_part_name(name: &str) -> bool {
    name == NAME
        || name
            .strip_prefix(NAME)
            .and_then(|s| s.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The objects of a namespace in report order (by name), each with its results in rule order.
fn ordered<'a>(results: &NamespaceResults<'a>) -> Vec<(&'a ObjectResult, Vec<&'a Finding<Rule>>)> {
    let mut objects = results.objects.clone();
    objects.sort_by(|a, b| a.name.cmp(&b.name));
    objects
        .into_iter()
        .map(|o| {
            let mut rs: Vec<_> = o.results.iter().collect();
            rs.sort_by_key(|r| r.rule);
            (o, rs)
        })
        .collect()
}

/// SHA-256 (hex) of what a namespace's reports say, timestamps aside: equal hashes, equal
/// reports.
pub fn results_hash(namespace: &str, results: &NamespaceResults<'_>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut field = |s: &str| {
        ctx.update(&(s.len() as u64).to_le_bytes());
        ctx.update(s.as_bytes());
    };
    field(FORMAT);
    field(namespace);
    let s = ReportSummary::of(results);
    for n in [s.pass, s.fail, s.warn, s.error, s.skip] {
        field(&n.to_string());
    }
    for (o, rs) in ordered(results) {
        field(&o.name);
        field(o.uid.as_deref().unwrap_or(""));
        for r in rs {
            field(r.rule.as_str());
            field(report_result(r.outcome));
            field(r.mode.as_str());
            field(&r.message);
        }
    }
    let digest = ctx.finish();
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// One PolicyReport, ready to send: its results already serialised (one namespace's reports
/// are all the writer holds at a time).
#[derive(Debug, serde::Serialize)]
pub struct Report {
    #[serde(rename = "apiVersion")]
    pub api_version: &'static str,
    pub kind: &'static str,
    pub metadata: Value,
    pub summary: ReportSummary,
    pub results: Vec<Box<RawValue>>,
}

impl Report {
    pub fn name(&self) -> &str {
        self.metadata["name"].as_str().unwrap_or(NAME)
    }
}

/// The PolicyReports of one namespace: its results in object then rule order, cut into parts of
/// at most `budget` bytes of results (a result larger than that alone in its part). The first
/// part counts the passes; each part counts its own other results. `first_seen` gives each
/// result's timestamp (results not in it are stamped `now` and added; results gone are removed).
pub fn build(
    namespace: &str,
    results: &NamespaceResults<'_>,
    first_seen: &mut FirstSeen,
    now: SystemTime,
    budget: usize,
) -> Vec<Report> {
    let hash = results_hash(namespace, results);
    let mut live = std::collections::HashSet::new();
    let mut parts: Vec<(ReportSummary, Vec<Box<RawValue>>, usize)> = vec![(
        ReportSummary {
            pass: ReportSummary::of(results).pass,
            ..Default::default()
        },
        Vec::new(),
        0,
    )];
    for (o, rs) in ordered(results) {
        for r in rs {
            let key = result_key(o, r.rule.as_str());
            let seen = *first_seen.entry(key.clone()).or_insert(now);
            live.insert(key);
            let mut resource = json!({
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "namespace": namespace,
                "name": o.name,
            });
            if let Some(uid) = &o.uid {
                resource["uid"] = json!(uid);
            }
            let item = json!({
                "policy": "stsguard",
                "rule": r.rule.as_str(),
                "result": report_result(r.outcome),
                "source": "stsguard",
                "severity": severity(r.mode),
                "scored": r.outcome != Outcome::NotChecked,
                "message": r.message,
                "properties": {"mode": r.mode.as_str()},
                "resources": [resource],
                "timestamp": timestamp(seen),
            });
            let Ok(raw) = serde_json::value::to_raw_value(&item) else {
                continue; // a json! value always serialises
            };
            let size = raw.get().len() + 1;
            if parts
                .last()
                .is_some_and(|p| !p.1.is_empty() && p.2 + size > budget)
            {
                parts.push((ReportSummary::default(), Vec::new(), 0));
            }
            if let Some(p) = parts.last_mut() {
                p.0.count(r.outcome);
                p.2 += size;
                p.1.push(raw);
            }
        }
    }
    // Results gone (fixed, deleted): a new occurrence later is new.
    first_seen.retain(|k, _| live.contains(k));
    let total = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, (summary, items, _))| Report {
            api_version: "wgpolicyk8s.io/v1alpha2",
            kind: "PolicyReport",
            metadata: json!({
                "name": part_name(i),
                "namespace": namespace,
                "labels": {MANAGED_BY: MANAGER},
                "annotations": {
                    HASH_ANNOTATION: hash,
                    "stsguard.io/part": format!("{}/{total}", i + 1),
                },
            }),
            summary,
            results: items,
        })
        .collect()
}

/// The first-seen times of the results in a report read from the server (a restarted writer
/// keeps the timestamps of results that stay).
pub fn first_seen_of(report: &Value, into: &mut FirstSeen) {
    for r in report["results"].as_array().into_iter().flatten() {
        let res = &r["resources"][0];
        let Some(id) = res["uid"].as_str().or_else(|| res["name"].as_str()) else {
            continue;
        };
        let (Some(rule), Some(secs)) = (r["rule"].as_str(), r["timestamp"]["seconds"].as_u64())
        else {
            continue;
        };
        let nanos = r["timestamp"]["nanos"].as_u64().unwrap_or(0) as u32;
        into.insert(
            (id.to_string(), rule.to_string()),
            UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Audit, ObjectResult};
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
                        Finding {
                            rule: RuleId::QuorumOdd.into(),
                            mode: Mode::Enforce,
                            outcome: Outcome::Fail,
                            message: "4 members".into(),
                        },
                        Finding {
                            rule: RuleId::DisruptionBudget.into(),
                            mode: Mode::Warn,
                            outcome: Outcome::NotChecked,
                            message: "not checked: x".into(),
                        },
                    ],
                },
                ObjectResult {
                    namespace: "db".into(),
                    name: "cache".into(),
                    uid: Some("u-2".into()),
                    passed: 10,
                    results: vec![Finding {
                        rule: RuleId::GoverningService.into(),
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

    fn parts(
        a: &Audit,
        ns: &str,
        seen: &mut FirstSeen,
        now: SystemTime,
        budget: usize,
    ) -> Vec<Value> {
        let by_ns = a.by_namespace();
        build(ns, &by_ns[ns], seen, now, budget)
            .iter()
            .map(|p| serde_json::to_value(p).unwrap_or_default())
            .collect()
    }

    #[test]
    fn one_report_per_namespace_with_results() {
        let t0 = UNIX_EPOCH + Duration::new(1_700_000_000, 5);
        let mut seen = FirstSeen::new();
        let a = audit();
        assert!(
            !a.by_namespace()["clean"].has_results(),
            "no report for a clean namespace"
        );
        let all = parts(&a, "db", &mut seen, t0, REPORT_BUDGET);
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(r["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(r["kind"], "PolicyReport");
        assert_eq!(r["metadata"]["name"], "stsguard");
        assert_eq!(r["metadata"]["namespace"], "db");
        assert_eq!(
            r["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "stsguard"
        );
        assert_eq!(
            r["metadata"]["annotations"][HASH_ANNOTATION],
            json!(results_hash("db", &a.by_namespace()["db"]))
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
        let a = parts(&audit(), "db", &mut seen, t0, REPORT_BUDGET);
        let b = parts(&audit(), "db", &mut seen, t1, REPORT_BUDGET);
        assert_eq!(a, b, "an unchanged audit gives the same report");
        // The etcd quorum result fixed, then back: a new timestamp.
        let mut fixed = audit();
        fixed.objects[0].results.remove(0);
        let c = parts(&fixed, "db", &mut seen, t1, REPORT_BUDGET);
        assert_eq!(c[0]["results"].as_array().map(Vec::len), Some(2));
        assert_eq!(c[0]["summary"]["fail"], 0);
        let d = parts(&audit(), "db", &mut seen, t1, REPORT_BUDGET);
        let q = d[0]["results"]
            .as_array()
            .and_then(|r| r.iter().find(|x| x["rule"] == "quorum-odd"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(q["timestamp"]["seconds"], 2000);
        // A new writer reads the first-seen times back from the report on the server.
        let mut restarted = FirstSeen::new();
        first_seen_of(&a[0], &mut restarted);
        assert_eq!(restarted.len(), 3);
        let e = parts(&audit(), "db", &mut restarted, t1, REPORT_BUDGET);
        assert_eq!(e, a, "timestamps kept across a restart");
    }

    #[test]
    fn the_hash_follows_the_results_not_the_timestamps() {
        let a = audit();
        let h = results_hash("db", &a.by_namespace()["db"]);
        assert_eq!(h.len(), 64);
        assert_eq!(h, results_hash("db", &audit().by_namespace()["db"]));
        let mut changed = audit();
        changed.objects[1].results[0].message = "no Service \"x\"".into();
        assert_ne!(h, results_hash("db", &changed.by_namespace()["db"]));
        let mut more_passes = audit();
        more_passes.objects[1].passed += 1;
        assert_ne!(
            h,
            results_hash("db", &more_passes.by_namespace()["db"]),
            "the summary is in the report"
        );
        assert_ne!(h, results_hash("other", &a.by_namespace()["db"]));
    }

    /// 3,000 StatefulSets in one namespace, six results each: 18,000 results, far more than the
    /// API server takes in one request. They go out as several reports, each under the budget.
    #[test]
    fn a_namespace_over_the_request_limit_is_split_into_reports_under_it() {
        let rules = [
            RuleId::QuorumOdd,
            RuleId::GoverningService,
            RuleId::DisruptionBudget,
            RuleId::SharedClaim,
            RuleId::HostpathSpread,
            RuleId::LocalStorageBinding,
        ];
        let a = Audit {
            objects: (0..3000)
                .map(|i| ObjectResult {
                    namespace: "big".into(),
                    name: format!("kafka-{i:04}"),
                    uid: Some(format!("00000000-0000-0000-0000-{i:012}")),
                    passed: 5,
                    results: rules
                        .iter()
                        .map(|&rule: &RuleId| Finding {
                            rule: rule.into(),
                            mode: Mode::Warn,
                            outcome: Outcome::Warn,
                            message: format!(
                                "no PodDisruptionBudget selects the pods of kafka-{i:04}: a drain may evict them all; add one"
                            ),
                        })
                        .collect(),
                })
                .collect(),
            excluded: 0,
        };
        let mut seen = FirstSeen::new();
        let by_ns = a.by_namespace();
        let built = build("big", &by_ns["big"], &mut seen, UNIX_EPOCH, REPORT_BUDGET);
        assert!(built.len() > 3, "{} parts", built.len());
        let mut names = Vec::new();
        let mut total = ReportSummary::default();
        let mut results = 0;
        for p in &built {
            let bytes = serde_json::to_vec(p).unwrap_or_default().len();
            assert!(
                bytes < REPORT_BUDGET + 4096,
                "{} is {bytes} bytes",
                p.name()
            );
            assert!(bytes < 3 * 1024 * 1024);
            names.push(p.name().to_string());
            total.pass += p.summary.pass;
            total.warn += p.summary.warn;
            assert_eq!(p.summary.warn, p.results.len(), "each part counts its own");
            results += p.results.len();
            assert_eq!(
                p.metadata["annotations"][HASH_ANNOTATION],
                built[0].metadata["annotations"][HASH_ANNOTATION]
            );
        }
        assert_eq!(results, 18_000);
        assert_eq!(total.pass, 15_000, "the passes counted once");
        assert_eq!(total.warn, 18_000);
        assert_eq!(names[0], "stsguard");
        assert_eq!(names[1], "stsguard-2");
        assert!(names.iter().all(|n| is_part_name(n)));
        assert!(
            !is_part_name("stsguard-x") && !is_part_name("stsguard-") && !is_part_name("other")
        );
    }
}
