//! Validation rules (README.md "Rules"): one small function per rule, a mode per rule
//! from the policy, look-ups from watch caches through [`Lookups`].

pub mod lookups;
pub mod quorum;
pub mod rules;

pub use lookups::{Lookup, Lookups, NoLookups};

use k8s_openapi::api::apps::v1::StatefulSet;

use crate::k8s::annotations as ann;
use crate::policy::{Mode, Policy};
pub use rules::{Deleted, RULES, RuleId, Runs};

/// What is being judged.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// CREATE (old None) or UPDATE of a StatefulSet.
    Write {
        object: &'a StatefulSet,
        old: Option<&'a StatefulSet>,
    },
    /// UPDATE of `statefulsets/scale`: the StatefulSet comes from the cache.
    Scale {
        name: &'a str,
        replicas: i32,
        old_replicas: Option<i32>,
    },
    /// DELETE of a StatefulSet: `old` is the object being deleted.
    Delete { old: Option<&'a StatefulSet> },
    /// DELETE of the Namespace [`Review::namespace`]: judged for the StatefulSets in it, from the
    /// watch cache.
    DeleteNamespace,
    /// DELETE of the PersistentVolumeClaim `name` in [`Review::namespace`]: judged for the
    /// StatefulSets of the namespace, from the watch cache.
    DeleteClaim { name: &'a str },
}

/// The request as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Review<'a> {
    pub namespace: &'a str,
    pub subject: Subject<'a>,
}

/// What a finding says. `stsguard check --output json` writes it as the finding's `result`
/// (`fail`, `warn`, `not-checked`); a PolicyReport writes "not checked" as `skip`
/// ([`crate::audit::reports`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// An enforced rule failed: the object is denied.
    Fail,
    /// Allowed with a warning: a rule at mode `warn` failed (in `check`, also a mutation
    /// warning).
    Warn,
    /// The rule could not be evaluated: a look-up could not say. Never a denial.
    NotChecked,
}

/// One finding about one object: a rule that did not pass. The one model of the webhook's
/// validation, `stsguard check`, `stsguard audit` and the background audit. `R` is what the
/// finding is about: a validation rule ([`RuleId`]), or in `check` also a mutation warning or
/// the bound on work ([`crate::check::Rule`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding<R = RuleId> {
    pub rule: R,
    /// The rule's mode for this object (for a "not checked" finding too; `warn` for a mutation
    /// warning).
    pub mode: Mode,
    #[serde(rename = "result")]
    pub outcome: Outcome,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Enforced rules that failed (outcome `Fail`): the request is denied.
    pub violations: Vec<Finding>,
    /// Warned rules that failed (`Warn`), and the rules of any mode that could not be checked
    /// (`NotChecked`).
    pub warnings: Vec<Finding>,
    /// Every rule evaluated, with its result, for metrics.
    pub results: Vec<(RuleId, Mode, RuleResult)>,
}

impl Findings {
    pub fn allowed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The rules that passed.
    pub(crate) fn passed(&self) -> usize {
        (self.results.iter())
            .filter(|r| r.2 == RuleResult::Pass)
            .count()
    }

    /// The denial message: every violation, each naming its rule.
    pub fn denial(&self) -> String {
        let parts: Vec<String> = self
            .violations
            .iter()
            .map(|f| format!("[{}] {}", f.rule, f.message))
            .collect();
        format!("stsguard denied the request: {}", parts.join("; "))
    }

    /// Short warning lines (the API server truncates past 256 characters).
    pub fn warning_lines(&self) -> Vec<String> {
        self.warnings
            .iter()
            .map(|f| {
                let not_checked = match f.outcome {
                    Outcome::NotChecked => "not checked: ",
                    _ => "",
                };
                crate::text::warning(&format!("[{}] {not_checked}{}", f.rule, f.message))
            })
            .collect()
    }
}

/// A rule's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// A look-up could not say: never a denial.
    NotChecked(String),
    /// The rule does not apply to this request (e.g. a scale-down rule on a CREATE).
    NotApplicable,
}

/// A rule's result, as counted (the `result` label of the review metrics: a failure at any
/// mode is `fail`; "not checked" is `unknown` there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleResult {
    Pass,
    Fail,
    NotChecked,
}

impl RuleResult {
    /// The metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleResult::Pass => "pass",
            RuleResult::Fail => "fail",
            RuleResult::NotChecked => "unknown",
        }
    }
}

/// The mode of a rule for an object: the policy's, relaxed by `stsguard.io/rule.<id>` on the
/// object only when the policy allows overrides (an override can never tighten). `detected`: the
/// rule applies because stsguard recognised what the object runs (quorum detection), not because
/// the object asked for it; it is judged at that mode, never stricter than its own.
pub fn mode_for(
    rule: RuleId,
    policy: &Policy,
    object: Option<&StatefulSet>,
    detected: Option<Mode>,
) -> Mode {
    let own = own_mode(rule, policy, object);
    detected.map_or(own, |d| own.max(d)) // Enforce < Warn < Off: the more relaxed
}

fn own_mode(rule: RuleId, policy: &Policy, object: Option<&StatefulSet>) -> Mode {
    let base = policy.mode(rule);
    if !policy.validation.allow_object_overrides {
        return base;
    }
    match object
        .and_then(|o| ann::rule_override(o, rule.as_str()))
        .and_then(Mode::parse)
    {
        Some(m) if m > base => m, // Enforce < Warn < Off
        _ => base,
    }
}

struct Acc<'p> {
    policy: &'p Policy,
    findings: Findings,
}

impl Acc<'_> {
    /// Runs `rule` at its mode for `object` (the annotations that may relax it); `detected`: see
    /// [`mode_for`].
    fn run(
        &mut self,
        rule: RuleId,
        object: Option<&StatefulSet>,
        detected: Option<Mode>,
        f: impl FnOnce() -> Verdict,
    ) {
        let mode = mode_for(rule, self.policy, object, detected);
        if mode == Mode::Off {
            return;
        }
        self.record(rule, mode, f());
    }

    /// Records a verdict of `rule` at `mode` (not `Off`).
    fn record(&mut self, rule: RuleId, mode: Mode, verdict: Verdict) {
        let (result, said) = match verdict {
            Verdict::NotApplicable => return,
            Verdict::Pass => (RuleResult::Pass, None),
            Verdict::Fail(message) if mode == Mode::Enforce => {
                (RuleResult::Fail, Some((Outcome::Fail, message)))
            }
            Verdict::Fail(message) => (RuleResult::Fail, Some((Outcome::Warn, message))),
            Verdict::NotChecked(message) => {
                (RuleResult::NotChecked, Some((Outcome::NotChecked, message)))
            }
        };
        self.findings.results.push((rule, mode, result));
        if let Some((outcome, message)) = said {
            let finding = Finding {
                rule,
                mode,
                outcome,
                message,
            };
            if outcome == Outcome::Fail {
                self.findings.violations.push(finding);
            } else {
                self.findings.warnings.push(finding);
            }
        }
    }
}

fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn with_replicas(sts: &StatefulSet, n: i32) -> StatefulSet {
    let mut s = sts.clone();
    if let Some(spec) = s.spec.as_mut() {
        spec.replicas = Some(n);
    }
    s
}

/// Judges a request against the policy: every rule of [`RULES`] that runs on this kind of
/// request, at its mode.
pub fn validate(review: &Review, policy: &Policy, lookups: &dyn Lookups) -> Findings {
    let mut acc = Acc {
        policy,
        findings: Findings::default(),
    };
    let namespace = review.namespace;
    if policy.is_excluded(Some(namespace)) {
        return acc.findings;
    }
    // The object judged, the object whose annotations set the modes, the replicas before.
    static NONE: std::sync::LazyLock<StatefulSet> = std::sync::LazyLock::new(Default::default);
    // A scale judges the cached StatefulSet at its new size; its annotations set the modes.
    let (cached, scaled);
    let (judged, own, old_replicas, runs): (&StatefulSet, Option<&StatefulSet>, _, &[Runs]) =
        match review.subject {
            Subject::DeleteNamespace => {
                judge_holders(&mut acc, namespace, Deleted::Namespace, lookups);
                return acc.findings;
            }
            Subject::DeleteClaim { name } => {
                judge_holders(&mut acc, namespace, Deleted::Claim(name), lookups);
                return acc.findings;
            }
            Subject::Delete { old } => (old.unwrap_or(&NONE), old, None, &[Runs::OnDelete]),
            Subject::Write { object, old } => (
                object,
                Some(object),
                old.map(replicas),
                &[Runs::OnWrite, Runs::OnWriteAndScale],
            ),
            Subject::Scale {
                name,
                replicas: n,
                old_replicas,
            } => match lookups.statefulset(namespace, name) {
                Lookup::Found(found) => {
                    cached = found;
                    scaled = with_replicas(&cached, n);
                    let old = old_replicas.unwrap_or_else(|| replicas(&cached));
                    (&scaled, Some(&*cached), Some(old), &[Runs::OnWriteAndScale])
                }
                other => {
                    let why = match other {
                        Lookup::Unknown(why) => format!("scale of {name} not checked: {why}"),
                        _ => format!(
                            "StatefulSet {namespace}/{name} is not in the watch cache; scale not checked"
                        ),
                    };
                    for rule in RULES.iter().filter(|r| r.runs == Runs::OnWriteAndScale) {
                        acc.run(rule.id, None, None, || Verdict::NotChecked(why.clone()));
                    }
                    return acc.findings;
                }
            },
        };
    // Quorum detection reads the template and annotations, never the replica count.
    let quorum = quorum::of(judged);
    let input = rules::Input {
        object: judged,
        old_replicas,
        namespace,
        lookups,
        quorum: &quorum,
        deleted: matches!(review.subject, Subject::Delete { .. }).then_some(Deleted::StatefulSet),
        policy,
    };
    run_rules(&mut acc, &input, own, runs);
    acc.findings
}

/// One StatefulSet judged as it is (or would be) stored: a write of it with no old object. The
/// one judge of the background audit, `stsguard audit` and `stsguard check`: an object that
/// exists already is judged as it runs, as the API server judges a write that leaves its pod
/// template alone (only a template change gets the mutation, see
/// [`crate::mutate::changes_template`]); `check` judges a new object after its mutation, as at
/// its creation.
pub(crate) fn judge_object(
    sts: &StatefulSet,
    namespace: &str,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Findings {
    validate(
        &Review {
            namespace,
            subject: Subject::Write {
                object: sts,
                old: None,
            },
        },
        policy,
        lookups,
    )
}

fn run_rules(acc: &mut Acc, input: &rules::Input, own: Option<&StatefulSet>, runs: &[Runs]) {
    let detected = input
        .quorum
        .detection_mode(acc.policy.validation.quorum_detection);
    for rule in RULES.iter().filter(|r| runs.contains(&r.runs)) {
        let detected = detected.filter(|_| rule.by_detection);
        acc.run(rule.id, own, detected, || (rule.check)(input));
    }
}

/// Does a delete rule enforced on `sts` read it beyond its annotation when `deleted` goes: it is
/// protected ([`rules::protection`]), the rule enforces on it (policy and its override), and,
/// for a namespace, it is not being deleted itself. The StatefulSets the bounds are checked on
/// for a Namespace or claim DELETE: any other holds nothing by a bound.
pub fn enforces_on_delete(sts: &StatefulSet, deleted: Deleted, policy: &Policy) -> bool {
    rules::protection(sts).is_on()
        && !(deleted == Deleted::Namespace && sts.metadata.deletion_timestamp.is_some())
        && RULES
            .iter()
            .filter(|r| r.runs == Runs::OnDelete)
            .any(|r| mode_for(r.id, policy, Some(sts), None) == Mode::Enforce)
}

/// A Namespace or claim DELETE: every rule that runs on deletes judges each StatefulSet of the
/// namespace (one look-up in the watch cache; linear in the StatefulSets, n log n for the names
/// of those that hold it), at that StatefulSet's own mode. Those that fail hold the namespace or
/// claim: one finding per mode, naming the first few ([`rules::held_message`]). A cache that
/// cannot say is a "not checked" result, which the admission layer answers per `onError`.
fn judge_holders(acc: &mut Acc, namespace: &str, deleted: Deleted, lookups: &dyn Lookups) {
    let on_delete = || RULES.iter().filter(|r| r.runs == Runs::OnDelete);
    let sets = match lookups.statefulsets_in(namespace) {
        Lookup::Found(sets) => sets,
        Lookup::Missing => Vec::new(),
        Lookup::Unknown(why) => {
            for rule in on_delete() {
                acc.run(rule.id, None, None, || {
                    Verdict::NotChecked(format!(
                        "the StatefulSets of namespace {namespace} ({why})"
                    ))
                });
            }
            return;
        }
    };
    let quorum = quorum::Quorum::No;
    for rule in on_delete() {
        let (mut enforced, mut warned) = (Vec::new(), Vec::new());
        for sts in &sets {
            let held = match mode_for(rule.id, acc.policy, Some(sts), None) {
                Mode::Enforce => &mut enforced,
                Mode::Warn => &mut warned,
                Mode::Off => continue,
            };
            let input = rules::Input {
                object: sts,
                old_replicas: None,
                namespace,
                lookups,
                quorum: &quorum,
                deleted: Some(deleted),
                policy: acc.policy,
            };
            if let Verdict::Fail(part) = (rule.check)(&input) {
                held.push((sts.metadata.name.as_deref().unwrap_or(""), part));
            }
        }
        let mode = acc.policy.mode(rule.id);
        if enforced.is_empty() && warned.is_empty() && mode != Mode::Off {
            acc.record(rule.id, mode, Verdict::Pass);
        }
        for (mode, mut held) in [(Mode::Enforce, enforced), (Mode::Warn, warned)] {
            if held.is_empty() {
                continue;
            }
            held.sort_unstable_by(|a, b| a.0.cmp(b.0));
            let message = rules::held_message(deleted, namespace, &held);
            acc.record(rule.id, mode, Verdict::Fail(message));
        }
    }
}
