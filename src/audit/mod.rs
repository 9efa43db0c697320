//! The audit: the webhook's validation, over StatefulSets that already run, each judged as it is
//! stored (the judge `stsguard check` uses for an object that exists already).
//!
//! This module is pure: [`audit`] judges a set of StatefulSets with any [`Lookups`] and gives
//! per-object results, each a list of [`Finding`]s (the model `check` reports too);
//! [`reports`] turns them into PolicyReports, [`metrics`] into gauges.
//! [`task`] is `stsguard serve`'s background audit over its watch caches, [`cli`] the
//! `stsguard audit` command over a live cluster, [`lease`] the election of the one replica that
//! writes reports.

pub mod cli;
pub mod lease;
pub mod metrics;
pub mod reports;
pub mod task;
pub mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::bounds::PastBound;
use crate::check::{Rule, past_bound_finding};
use crate::policy::{Mode, Policy};
use crate::validate::{self, Finding, Findings, Lookups, Outcome};
use crate::watch::WatchLookups;

/// The audit of one StatefulSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectResult {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    /// Rules that passed.
    pub passed: usize,
    /// Rules that did not pass: failed enforced rules, then warned rules and rules not checked,
    /// each in the order the rules ran; or, for an object past a bound, that one failing finding
    /// ([`Rule::Bound`]).
    pub results: Vec<Finding<Rule>>,
}

/// The audit of a set of StatefulSets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// One entry per StatefulSet judged (also those that passed every rule).
    pub objects: Vec<ObjectResult>,
    /// StatefulSets passed over: in a namespace the policy excludes (the webhook never sees them).
    pub excluded: usize,
}

/// The per-object result from validation's findings.
fn object_result(sts: &StatefulSet, namespace: &str, findings: Findings) -> ObjectResult {
    let passed = findings.passed();
    let results = (findings.violations.into_iter())
        .chain(findings.warnings)
        .map(Finding::from)
        .collect();
    ObjectResult {
        namespace: namespace.to_string(),
        name: sts.metadata.name.clone().unwrap_or_default(),
        uid: sts.metadata.uid.clone(),
        passed,
        results,
    }
}

/// The result of a StatefulSet past a bound: not judged by the rules, one failing finding, as
/// the webhook denies it.
fn past_bound_result(sts: &StatefulSet, namespace: &str, why: &PastBound) -> ObjectResult {
    ObjectResult {
        namespace: namespace.to_string(),
        name: sts.metadata.name.clone().unwrap_or_default(),
        uid: sts.metadata.uid.clone(),
        passed: 0,
        results: vec![past_bound_finding(why)],
    }
}

/// Judges one StatefulSet (within the bounds, else [`past_bound_result`]); `None` when its
/// namespace is excluded by the policy.
fn audit_one(sts: &StatefulSet, policy: &Policy, lookups: &dyn Lookups) -> Option<ObjectResult> {
    let namespace = sts.metadata.namespace.as_deref().unwrap_or("default");
    if policy.is_excluded(Some(namespace)) {
        return None;
    }
    if let Err(why) = crate::bounds::check_statefulset(sts) {
        return Some(past_bound_result(sts, namespace, &why));
    }
    let findings = validate::judge_object(sts, namespace, policy, lookups);
    Some(object_result(sts, namespace, findings))
}

/// Judges every StatefulSet, in one go (for a blocking thread, the benchmark and the tests).
pub fn audit(sets: &[Arc<StatefulSet>], policy: &Policy, lookups: &dyn Lookups) -> Audit {
    let mut out = Audit::default();
    for sts in sets {
        match audit_one(sts, policy, lookups) {
            Some(r) => out.objects.push(r),
            None => out.excluded += 1,
        }
    }
    out
}

/// StatefulSets judged between two yields to the runtime in [`audit_yielding`]: one object costs
/// tens of microseconds, so a review waits at most a millisecond or two behind the audit.
pub const YIELD_EVERY: usize = 16;

/// [`audit`] on an async runtime, yielding to other tasks (reviews) every [`YIELD_EVERY`]
/// objects, so the audit takes CPU time only between them.
pub async fn audit_yielding(
    sets: &[Arc<StatefulSet>],
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Audit {
    let mut out = Audit::default();
    for (i, sts) in sets.iter().enumerate() {
        if i > 0 && i % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
        match audit_one(sts, policy, lookups) {
            Some(r) => out.objects.push(r),
            None => out.excluded += 1,
        }
    }
    out
}

/// What the metrics keep of successive namespaces' audits (the background audit judges one
/// namespace at a time and drops its results).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub objects: usize,
    pub excluded: usize,
    /// Violations (fail and warn results) per (rule, mode, namespace).
    pub violations: BTreeMap<(Rule, Mode, String), i64>,
}

impl Totals {
    pub fn add(&mut self, audit: &Audit) {
        self.objects += audit.objects.len();
        self.excluded += audit.excluded;
        for ((rule, mode, ns), n) in audit.violations() {
            *self
                .violations
                .entry((rule, mode, ns.to_string()))
                .or_insert(0) += n;
        }
    }
}

/// One namespace's audit from the server's watch caches, decoding one StatefulSet at a time
/// (the cache holds them as JSON) and yielding to other tasks every [`YIELD_EVERY`]. One the
/// cache judged past a bound is not decoded: its result is the bound's.
pub async fn audit_namespace(
    lookups: &WatchLookups,
    namespace: &str,
    policy: &Policy,
) -> Result<Audit, String> {
    let mut out = Audit::default();
    let names = lookups.statefulset_names(namespace)?;
    if policy.is_excluded(Some(namespace)) {
        out.excluded = names.len();
        return Ok(out);
    }
    for (i, name) in names.iter().enumerate() {
        if i > 0 && i % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
        if let Some(why) = lookups.statefulset_past_bound(namespace, name) {
            if let Some(held) = lookups.statefulset_held(namespace, name) {
                out.objects.push(past_bound_result(&held, namespace, &why));
            } // else deleted meanwhile
            continue;
        }
        let sts = match lookups.statefulset(namespace, name) {
            crate::validate::Lookup::Found(s) => s,
            crate::validate::Lookup::Missing => continue, // deleted meanwhile
            crate::validate::Lookup::Unknown(e) => return Err(e),
        };
        match audit_one(&sts, policy, lookups) {
            Some(r) => out.objects.push(r),
            None => out.excluded += 1,
        }
    }
    Ok(out)
}

/// The objects of one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceResults<'a> {
    pub objects: Vec<&'a ObjectResult>,
}

impl NamespaceResults<'_> {
    /// Has any object of the namespace a result that is not a pass?
    pub fn has_results(&self) -> bool {
        self.objects.iter().any(|o| !o.results.is_empty())
    }
}

impl Audit {
    /// The results grouped by namespace (sorted).
    pub fn by_namespace(&self) -> BTreeMap<&str, NamespaceResults<'_>> {
        let mut out: BTreeMap<&str, NamespaceResults<'_>> = BTreeMap::new();
        for o in &self.objects {
            out.entry(o.namespace.as_str()).or_default().objects.push(o);
        }
        out
    }

    /// Violations (fail and warn results) per (rule, mode, namespace).
    pub fn violations(&self) -> BTreeMap<(Rule, Mode, &str), i64> {
        let mut out = BTreeMap::new();
        for o in &self.objects {
            for r in &o.results {
                if r.outcome != Outcome::NotChecked {
                    *out.entry((r.rule, r.mode, o.namespace.as_str()))
                        .or_insert(0) += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RuleId;
    use crate::validate::lookups::StaticLookups;

    fn sts(
        ns: &str,
        name: &str,
        yaml_spec: &str,
    ) -> Result<Arc<StatefulSet>, Box<dyn std::error::Error>> {
        let text = format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}, namespace: {ns}, uid: uid-{name}}}\nspec:\n{yaml_spec}"
        );
        Ok(Arc::new(crate::yaml::from_str(&text)?))
    }

    const POD: &str = "  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec:\n      containers: [{name: c, image: busybox, readinessProbe: {exec: {command: [\"true\"]}}}]\n";

    fn lookups() -> StaticLookups {
        StaticLookups {
            authoritative: true,
            ..Default::default()
        }
    }

    #[test]
    fn results_per_object_with_outcomes() -> Result<(), Box<dyn std::error::Error>> {
        let even = sts(
            "a",
            "even",
            &format!("  replicas: 4\n  serviceName: even\n{POD}"),
        )?;
        let mut even = (*even).clone();
        even.metadata.annotations =
            Some([("stsguard.io/quorum".to_string(), "true".to_string())].into());
        let clean = sts("b", "clean", &format!("  replicas: 1\n{POD}"))?;
        let excluded = sts("kube-system", "sys", &format!("  replicas: 4\n{POD}"))?;
        let a = audit(
            &[Arc::new(even), clean, excluded],
            &Policy::default(),
            &lookups(),
        );
        assert_eq!(a.excluded, 1);
        assert_eq!(a.objects.len(), 2);
        let even = &a.objects[0];
        assert_eq!(even.uid.as_deref(), Some("uid-even"));
        let got: Vec<(&str, &str, Outcome)> = even
            .results
            .iter()
            .map(|r| (r.rule.as_str(), r.mode.as_str(), r.outcome))
            .collect();
        assert_eq!(
            got,
            [
                ("quorum-odd", "enforce", Outcome::Fail),
                ("governing-service", "warn", Outcome::Warn),
                ("disruption-budget", "warn", Outcome::Warn),
            ]
        );
        assert!(even.passed > 5, "{}", even.passed);
        // No serviceName, one replica: the governing-service rule still asks for a Service.
        let clean = &a.objects[1];
        assert!(
            clean
                .results
                .iter()
                .all(|r| r.rule == RuleId::GoverningService),
            "{:?}",
            clean.results
        );
        Ok(())
    }

    /// Two replicas sharing a hostPath, created before stsguard: the required anti-affinity
    /// the mutation would add comes only at its next template change, so the audit judges the
    /// object as it runs: the spread is missing.
    #[test]
    fn an_object_is_judged_as_it_runs_not_as_the_mutation_would_store_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let host = sts(
            "a",
            "host",
            "  replicas: 2\n  serviceName: host\n  selector: {matchLabels: {app: x}}\n  template:\n    metadata: {labels: {app: x}}\n    spec:\n      volumes: [{name: h, hostPath: {path: /d}}]\n      containers: [{name: c, image: busybox, readinessProbe: {exec: {command: [\"true\"]}}}]\n",
        )?;
        let a = audit(std::slice::from_ref(&host), &Policy::default(), &lookups());
        let rules: Vec<(Rule, Outcome)> = a.objects[0]
            .results
            .iter()
            .map(|r| (r.rule, r.outcome))
            .collect();
        assert!(
            rules.contains(&(RuleId::HostpathSpread.into(), Outcome::Fail)),
            "{rules:?}"
        );
        // Adopted (its template mutated), it passes.
        let adopted = Arc::new(crate::mutate::mutate(&host, &Policy::default()).object);
        let a = audit(&[adopted], &Policy::default(), &lookups());
        assert!(
            a.objects[0]
                .results
                .iter()
                .all(|r| r.rule != RuleId::HostpathSpread),
            "{:?}",
            a.objects[0].results
        );
        Ok(())
    }

    #[test]
    fn not_checked_is_at_the_rules_mode() -> Result<(), Box<dyn std::error::Error>> {
        let s = sts(
            "a",
            "web",
            &format!("  replicas: 3\n  serviceName: web\n{POD}"),
        )?;
        let unknown = crate::validate::NoLookups("cache not synced".into());
        let a = audit(&[s], &Policy::default(), &unknown);
        let not_checked: Vec<(&str, Mode)> = a.objects[0]
            .results
            .iter()
            .filter(|r| r.outcome == Outcome::NotChecked)
            .map(|r| (r.rule.as_str(), r.mode))
            .collect();
        assert!(
            not_checked.contains(&("governing-service", Mode::Warn)),
            "{not_checked:?}"
        );
        let mut policy = Policy::default();
        policy
            .validation
            .rules
            .insert(RuleId::GoverningService, Mode::Enforce);
        let a = audit(
            &[sts(
                "a",
                "web",
                &format!("  replicas: 3\n  serviceName: web\n{POD}"),
            )?],
            &policy,
            &unknown,
        );
        let gs = a.objects[0]
            .results
            .iter()
            .find(|r| r.rule == RuleId::GoverningService)
            .ok_or("a governing-service result")?;
        assert_eq!((gs.outcome, gs.mode), (Outcome::NotChecked, Mode::Enforce));
        assert!(a.violations().is_empty(), "not checked is no violation");
        Ok(())
    }

    /// `containers` copies of one container, in namespace `a`.
    fn with_containers(name: &str, containers: usize) -> Result<StatefulSet, serde_json::Error> {
        let cs: Vec<_> = (0..containers)
            .map(|i| serde_json::json!({"name": format!("c{i}"), "image": "x"}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "a", "uid": format!("uid-{name}")},
            "spec": {"selector": {}, "serviceName": name, "replicas": 3,
                     "template": {"spec": {"containers": cs}}},
        }))
    }

    #[tokio::test]
    async fn a_statefulset_past_a_bound_has_one_failing_bounds_result_in_both_audits()
    -> Result<(), Box<dyn std::error::Error>> {
        let (big, small) = (with_containers("big", 300)?, with_containers("small", 3)?);
        let policy = Policy::default();
        let caches = WatchLookups::from_objects(vec![], vec![], vec![], vec![big.clone(), small]);
        let from_caches = audit_namespace(&caches, "a", &policy).await?;
        let of_objects = audit(&caches.statefulsets()?, &policy, caches.as_ref());
        for a in [&from_caches, &of_objects] {
            let big = a.objects.iter().find(|o| o.name == "big").ok_or("big")?;
            assert_eq!(big.uid.as_deref(), Some("uid-big"), "named for its report");
            assert_eq!(big.passed, 0);
            let [r] = big.results.as_slice() else {
                return Err(format!("one result: {:?}", big.results).into());
            };
            assert_eq!(
                (r.rule, r.mode, r.outcome),
                (Rule::Bound, Mode::Enforce, Outcome::Fail)
            );
            assert!(
                r.message
                    .contains("300 containers, over stsguard's bound of 256"),
                "{}",
                r.message
            );
            let small = a
                .objects
                .iter()
                .find(|o| o.name == "small")
                .ok_or("small")?;
            assert!(small.passed > 0 && small.results.iter().all(|r| r.rule != Rule::Bound));
            assert_eq!(
                a.violations().get(&(Rule::Bound, Mode::Enforce, "a")),
                Some(&1)
            );
        }
        assert_eq!(
            from_caches, of_objects,
            "the caches' verdict is the check's"
        );
        // Its PolicyReport result names the bound.
        let ns = from_caches.by_namespace();
        let now = std::time::SystemTime::now();
        let parts = reports::build("a", &ns["a"], &mut Default::default(), now, usize::MAX);
        let text = serde_json::to_string(&parts)?;
        assert!(
            text.contains(r#""rule":"bounds""#) && text.contains(r#""result":"fail""#),
            "{text}"
        );
        // An excluded namespace is passed over, as the webhook never sees it.
        let skip = Policy::from_yaml("excludeNamespaces: [a]", "t")?;
        let skipped = audit_namespace(&caches, "a", &skip).await?;
        assert!(
            skipped.objects.is_empty() && skipped.excluded == 2,
            "{skipped:?}"
        );
        Ok(())
    }

    #[test]
    fn summary_and_violation_counts() -> Result<(), Box<dyn std::error::Error>> {
        let r = |rule: RuleId, mode, outcome| Finding {
            rule: rule.into(),
            mode,
            outcome,
            message: String::new(),
        };
        let a = Audit {
            objects: vec![
                ObjectResult {
                    namespace: "a".into(),
                    name: "x".into(),
                    uid: None,
                    passed: 10,
                    results: vec![
                        r(RuleId::SharedClaim, Mode::Enforce, Outcome::Fail),
                        r(RuleId::GoverningService, Mode::Warn, Outcome::Warn),
                    ],
                },
                ObjectResult {
                    namespace: "a".into(),
                    name: "y".into(),
                    uid: None,
                    passed: 11,
                    results: vec![
                        r(RuleId::SharedClaim, Mode::Enforce, Outcome::Fail),
                        r(RuleId::DisruptionBudget, Mode::Warn, Outcome::NotChecked),
                    ],
                },
                ObjectResult {
                    namespace: "b".into(),
                    name: "z".into(),
                    uid: None,
                    passed: 12,
                    results: vec![],
                },
            ],
            excluded: 0,
        };
        let ns = a.by_namespace();
        assert_eq!(
            reports::ReportSummary::of(&ns["a"]),
            reports::ReportSummary {
                pass: 21,
                fail: 2,
                warn: 1,
                error: 0,
                skip: 1
            }
        );
        assert!(ns["a"].has_results());
        assert!(!ns["b"].has_results());
        assert_eq!(reports::ReportSummary::of(&ns["b"]).pass, 12);
        let v = a.violations();
        assert_eq!(
            v.get(&(RuleId::SharedClaim.into(), Mode::Enforce, "a")),
            Some(&2)
        );
        assert_eq!(
            v.get(&(RuleId::GoverningService.into(), Mode::Warn, "a")),
            Some(&1)
        );
        assert_eq!(v.len(), 2, "{v:?}");
        Ok(())
    }
}
