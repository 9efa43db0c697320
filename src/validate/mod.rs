//! Validation rules (DESIGN.md "Validation rules"): one small function per rule, a mode per rule
//! from the policy, look-ups from watch caches through [`Lookups`].

pub mod quorum;
pub mod rules;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;

use crate::labels::keys;
use crate::policy::{Mode, Policy, RuleId};

/// The answer of a look-up.
#[derive(Clone, Debug)]
pub enum Lookup<T> {
    Found(T),
    Missing,
    /// The cache cannot say (not synced, cluster unreachable, `--no-cluster`): never deny on it.
    Unknown(String),
}

/// Look-ups the rules need; the server answers them from watch caches, `check` from its input.
pub trait Lookups: Send + Sync {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Arc<Service>>;
    /// `name` None: the cluster's default StorageClass.
    fn storage_class(&self, name: Option<&str>) -> Lookup<Arc<StorageClass>>;
    fn pdbs(&self, namespace: &str) -> Lookup<Vec<Arc<PodDisruptionBudget>>>;
    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<Arc<StatefulSet>>;
}

/// Look-ups that know nothing: every look-up is "unknown" with the given reason.
pub struct NoLookups(pub String);

impl Lookups for NoLookups {
    fn service(&self, _: &str, _: &str) -> Lookup<Arc<Service>> {
        Lookup::Unknown(self.0.clone())
    }
    fn storage_class(&self, _: Option<&str>) -> Lookup<Arc<StorageClass>> {
        Lookup::Unknown(self.0.clone())
    }
    fn pdbs(&self, _: &str) -> Lookup<Vec<Arc<PodDisruptionBudget>>> {
        Lookup::Unknown(self.0.clone())
    }
    fn statefulset(&self, _: &str, _: &str) -> Lookup<Arc<StatefulSet>> {
        Lookup::Unknown(self.0.clone())
    }
}

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
    /// DELETE: `old` is the object being deleted.
    Delete { old: Option<&'a StatefulSet> },
}

/// The request as the rules see it.
#[derive(Clone, Copy, Debug)]
pub struct Review<'a> {
    pub namespace: &'a str,
    pub subject: Subject<'a>,
}

/// One rule's result that is not a pass.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub rule: RuleId,
    pub mode: Mode,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Enforced rules that failed: the request is denied.
    pub violations: Vec<Finding>,
    /// Warned rules that failed, and "unknown" results of any rule.
    pub warnings: Vec<Finding>,
    /// Every rule evaluated, with its result, for metrics: (rule, mode, "pass"|"fail"|"unknown").
    pub results: Vec<(RuleId, Mode, &'static str)>,
}

impl Findings {
    pub fn allowed(&self) -> bool {
        self.violations.is_empty()
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
            .map(|f| short(&format!("[{}] {}", f.rule, f.message)))
            .collect()
    }
}

/// Cuts a warning to the API server's limit, on a character boundary.
pub fn short(s: &str) -> String {
    const MAX: usize = 250;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A rule's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail(String),
    Unknown(String),
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
    let key = format!("{}{}", keys::RULE_OVERRIDE_PREFIX, rule.as_str());
    match object
        .and_then(|o| o.metadata.annotations.as_ref())
        .and_then(|a| a.get(&key))
        .and_then(|v| Mode::parse(v))
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
    fn run(&mut self, rule: RuleId, object: Option<&StatefulSet>, f: impl FnOnce() -> Verdict) {
        self.run_at(rule, object, None, f)
    }

    /// [`Acc::run`] for a rule that may apply through detection (see [`mode_for`]).
    fn run_at(
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
        let verdict = f();
        let result = match &verdict {
            Verdict::Pass => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Unknown(_) => "unknown",
        };
        self.findings.results.push((rule, mode, result));
        match verdict {
            Verdict::Pass => {}
            Verdict::Fail(message) if mode == Mode::Enforce => {
                self.findings.violations.push(Finding {
                    rule,
                    mode,
                    message,
                })
            }
            Verdict::Fail(message) => self.findings.warnings.push(Finding {
                rule,
                mode,
                message,
            }),
            Verdict::Unknown(message) => self.findings.warnings.push(Finding {
                rule,
                mode: Mode::Warn,
                message: format!("not checked: {message}"),
            }),
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

/// Judges a request against the policy.
pub fn validate(review: &Review, policy: &Policy, lookups: &dyn Lookups) -> Findings {
    let mut acc = Acc {
        policy,
        findings: Findings::default(),
    };
    let ns = review.namespace;
    if policy.is_excluded(Some(ns)) {
        return acc.findings;
    }
    match review.subject {
        Subject::Delete { old } => {
            acc.run(RuleId::DeleteProtection, old, || {
                rules::delete_protection(old)
            });
        }
        Subject::Write { object, old } => {
            use rules::*;
            let o = Some(object);
            acc.run(RuleId::GoverningService, o, || {
                governing_service(object, ns, lookups)
            });
            acc.run(RuleId::SharedClaim, o, || shared_claim(object));
            acc.run(RuleId::HostpathSpread, o, || hostpath_spread(object));
            let q = quorum::of(object);
            let qm = q.detection_mode(policy.validation.quorum_detection);
            acc.run_at(RuleId::QuorumOdd, o, qm, || quorum_odd(object, &q));
            if let Some(old) = old {
                acc.run_at(RuleId::QuorumScaleDown, o, qm, || {
                    quorum_scale_down(object, replicas(old), &q)
                });
            }
            acc.run(RuleId::LocalStorageBinding, o, || {
                local_storage_binding(object, lookups)
            });
            acc.run(RuleId::ClaimAccessMode, o, || claim_access_mode(object));
            acc.run(RuleId::ClaimRetention, o, || claim_retention(object));
            acc.run(RuleId::ReadinessProbe, o, || readiness_probe(object));
            acc.run(RuleId::OrderedRoles, o, || ordered_roles(object));
            acc.run(RuleId::RoleSpec, o, || role_spec(object));
            acc.run(RuleId::DisruptionBudget, o, || {
                disruption_budget(object, ns, lookups)
            });
            acc.run(RuleId::SingleInstance, o, || single_instance(object));
        }
        Subject::Scale {
            name,
            replicas: n,
            old_replicas,
        } => {
            use rules::*;
            let replica_rules = [
                RuleId::SharedClaim,
                RuleId::HostpathSpread,
                RuleId::QuorumOdd,
                RuleId::QuorumScaleDown,
                RuleId::SingleInstance,
            ];
            match lookups.statefulset(ns, name) {
                Lookup::Found(cached) => {
                    let scaled = with_replicas(&cached, n);
                    let old_n = old_replicas.unwrap_or_else(|| replicas(&cached));
                    let o = Some(&*cached);
                    acc.run(RuleId::SharedClaim, o, || shared_claim(&scaled));
                    acc.run(RuleId::HostpathSpread, o, || hostpath_spread(&scaled));
                    let q = quorum::of(&cached);
                    let qm = q.detection_mode(policy.validation.quorum_detection);
                    acc.run_at(RuleId::QuorumOdd, o, qm, || quorum_odd(&scaled, &q));
                    acc.run_at(RuleId::QuorumScaleDown, o, qm, || {
                        quorum_scale_down(&scaled, old_n, &q)
                    });
                    acc.run(RuleId::SingleInstance, o, || single_instance(&scaled));
                }
                Lookup::Missing => {
                    for r in replica_rules {
                        acc.run(r, None, || {
                            Verdict::Unknown(format!("StatefulSet {ns}/{name} is not in the watch cache; scale not checked"))
                        });
                    }
                }
                Lookup::Unknown(why) => {
                    for r in replica_rules {
                        acc.run(r, None, || {
                            Verdict::Unknown(format!("scale of {name} not checked: {why}"))
                        });
                    }
                }
            }
        }
    }
    acc.findings
}
