//! Anti-affinity (docs/mutation.md): one podAntiAffinity term on the StatefulSet's own selector.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::added::{Added, Term};
use super::{Report, WarningId};
use crate::k8s::annotations::{self as ann, keys};
use crate::k8s::labels::selector_is_empty;
use crate::k8s::template::{is_equivalent, uses_host_path};
use crate::policy::{AntiAffinityMode, Policy};

/// The mode in force for this StatefulSet: annotation, else `required` for hostPath pods (unless
/// the policy turned anti-affinity off), else the policy default.
pub fn effective_mode(sts: &StatefulSet, policy: &Policy, report: &mut Report) -> AntiAffinityMode {
    let default = policy.mutation.anti_affinity.mode;
    let host_path = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(uses_host_path);
    let fallback = if host_path && default != AntiAffinityMode::None {
        AntiAffinityMode::Required
    } else {
        default
    };
    if let Some(v) = ann::get(sts, keys::ANTI_AFFINITY) {
        match AntiAffinityMode::parse(v) {
            Some(m) => return m,
            None => report.warn(
                WarningId::AnnotationInvalid,
                format!(
                    "{}: \"{}\" is not preferred|required|none; using {}",
                    keys::ANTI_AFFINITY,
                    crate::text::quote(v),
                    fallback.as_str()
                ),
            ),
        }
    }
    fallback
}

pub fn topology_key<'a>(sts: &'a StatefulSet, policy: &'a Policy, report: &mut Report) -> &'a str {
    match ann::get(sts, keys::TOPOLOGY_KEY) {
        Some(k) if crate::k8s::labels::is_qualified_name(k.trim()) => k.trim(),
        Some(k) => {
            report.warn(
                WarningId::AnnotationInvalid,
                format!(
                    "{}: \"{}\" is not a label key; using {}",
                    keys::TOPOLOGY_KEY,
                    crate::text::quote(k),
                    policy.mutation.anti_affinity.topology_key
                ),
            );
            &policy.mutation.anti_affinity.topology_key
        }
        None => &policy.mutation.anti_affinity.topology_key,
    }
}

/// The total weight of the pod's preferred pod affinity and anti-affinity terms other than
/// those equivalent to stsguard's (same topology key, selecting these pods).
fn other_soft_weight(affinity: Option<&Affinity>, key: &str, sts: &StatefulSet) -> i64 {
    let Some(a) = affinity else { return 0 };
    let affinity_terms = a.pod_affinity.as_ref().and_then(|p| {
        p.preferred_during_scheduling_ignored_during_execution
            .as_ref()
    });
    let anti_terms = a
        .pod_anti_affinity
        .as_ref()
        .and_then(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| !is_equivalent(&t.pod_affinity_term, key, sts));
    affinity_terms
        .into_iter()
        .flatten()
        .chain(anti_terms)
        .map(|t| i64::from(t.weight.max(0)))
        .sum()
}

/// stsguard's term as recorded, rebuilt on the StatefulSet's selector (which cannot change).
fn rebuilt(sts: &StatefulSet, t: &Term) -> Option<PodAffinityTerm> {
    Some(PodAffinityTerm {
        label_selector: Some(sts.spec.as_ref()?.selector.clone()),
        topology_key: t.topology_key.clone(),
        ..Default::default()
    })
}

/// Where stsguard's recorded term is in the template: (required?, index), the last equal term.
fn find(sts: &StatefulSet, t: &Term) -> Option<(bool, usize)> {
    let term = rebuilt(sts, t)?;
    let anti = sts
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .pod_anti_affinity
        .as_ref()?;
    if t.mode == AntiAffinityMode::Required.as_str() {
        let list = anti
            .required_during_scheduling_ignored_during_execution
            .as_ref()?;
        list.iter().rposition(|x| *x == term).map(|i| (true, i))
    } else {
        let list = anti
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()?;
        let weight = t.weight?;
        list.iter()
            .rposition(|x| x.weight == weight && x.pod_affinity_term == term)
            .map(|i| (false, i))
    }
}

/// Takes out the anti-affinity term stsguard added (the record's), leaving the user's.
pub fn take_out(sts: &mut StatefulSet, added: &mut Added, report: &mut Report) {
    let Some(t) = added.anti_affinity.take() else {
        return;
    };
    let Some((required, i)) = find(sts, &t) else {
        return;
    };
    let anti = sts
        .spec
        .as_mut()
        .and_then(|s| s.template.spec.as_mut())
        .and_then(|p| p.affinity.as_mut())
        .and_then(|a| a.pod_anti_affinity.as_mut());
    if let Some(anti) = anti {
        if required {
            if let Some(l) = anti
                .required_during_scheduling_ignored_during_execution
                .as_mut()
            {
                l.remove(i);
            }
        } else if let Some(l) = anti
            .preferred_during_scheduling_ignored_during_execution
            .as_mut()
        {
            l.remove(i);
        }
        report.removed(format!(
            "{} pod anti-affinity on {}",
            t.mode, t.topology_key
        ));
    }
}

/// Adds stsguard's anti-affinity term where no equivalent one is there; takes out the one it
/// added before when it is not the one it would add now (mode, topology key or weight changed,
/// or `none`). `added`: the record, kept up to date.
pub fn apply(sts: &mut StatefulSet, policy: &Policy, added: &mut Added, report: &mut Report) {
    let mode = effective_mode(sts, policy, report);
    let key = match mode {
        AntiAffinityMode::None => String::new(),
        _ => topology_key(sts, policy, report).to_string(),
    };
    let wanted = (mode != AntiAffinityMode::None).then(|| Term {
        mode: mode.as_str().to_string(),
        topology_key: key.clone(),
        weight: (mode == AntiAffinityMode::Preferred)
            .then_some(policy.mutation.anti_affinity.weight),
    });
    if let Some(t) = &added.anti_affinity {
        if Some(t) == wanted.as_ref() && find(sts, t).is_some() {
            return;
        }
        take_out(sts, added, report);
    }
    let Some(wanted) = wanted else {
        return;
    };
    let Some(spec) = sts.spec.as_ref() else {
        return;
    };
    let selector: LabelSelector = spec.selector.clone();
    if selector_is_empty(&selector) {
        report.warn(
            WarningId::AntiAffinityEmptySelector,
            "spec.selector is empty: no anti-affinity added (it would repel every pod of the namespace)",
        );
        return;
    }
    if users_term_suffices(sts, &key, mode, policy, report) {
        return;
    }
    add_term(
        sts,
        selector,
        &key,
        mode,
        policy.mutation.anti_affinity.weight,
        report,
    );
    added.anti_affinity = Some(wanted);
}

/// Does an equivalent term of the user's stand in for stsguard's? A required one always; a
/// preferred one when stsguard would add a preferred term too (kept, with a warning where its
/// lower weight truly weakens the spread).
fn users_term_suffices(
    sts: &StatefulSet,
    key: &str,
    mode: AntiAffinityMode,
    policy: &Policy,
    report: &mut Report,
) -> bool {
    let existing = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.affinity.as_ref());
    let anti = existing.and_then(|a| a.pod_anti_affinity.as_ref());
    let required = anti.and_then(|a| {
        a.required_during_scheduling_ignored_during_execution
            .as_ref()
    });
    let preferred = anti.and_then(|a| {
        a.preferred_during_scheduling_ignored_during_execution
            .as_ref()
    });
    let has_required = required.is_some_and(|ts| ts.iter().any(|t| is_equivalent(t, key, sts)));
    // The strongest equivalent preferred term the user wrote.
    let preferred_weight = preferred.and_then(|ts| {
        ts.iter()
            .filter(|t| is_equivalent(&t.pod_affinity_term, key, sts))
            .map(|t| t.weight)
            .max()
    });
    if has_required {
        return true;
    }
    if mode == AntiAffinityMode::Preferred {
        if let Some(w) = preferred_weight {
            // The scheduler normalises the inter-pod score over the nodes, so a lower weight
            // changes nothing on its own: it weakens the spread only against the pod's other
            // preferred pod (anti-)affinity terms, when they weigh as much as it or more.
            let others = other_soft_weight(existing, key, sts);
            if w < policy.mutation.anti_affinity.weight && others >= i64::from(w) {
                let fix = if others < 100 {
                    format!("raise its weight above {others}")
                } else {
                    format!("set {}: required to spread for sure", keys::ANTI_AFFINITY)
                };
                report.warn(
                    WarningId::AntiAffinityKept,
                    format!(
                        "podAntiAffinity term on {key} kept at weight {w}; other preferred pod (anti-)affinity terms weigh {others}: {fix}"
                    ),
                );
            }
            return true;
        }
    }
    false
}

/// stsguard's term, required or preferred at `weight`.
fn add_term(
    sts: &mut StatefulSet,
    selector: LabelSelector,
    key: &str,
    mode: AntiAffinityMode,
    weight: i32,
    report: &mut Report,
) {
    let term = PodAffinityTerm {
        label_selector: Some(selector),
        topology_key: key.to_string(),
        ..Default::default()
    };
    let Some(pod) = sts
        .spec
        .as_mut()
        .map(|s| s.template.spec.get_or_insert_with(PodSpec::default))
    else {
        return;
    };
    let anti = pod
        .affinity
        .get_or_insert_with(Affinity::default)
        .pod_anti_affinity
        .get_or_insert_with(PodAntiAffinity::default);
    match mode {
        AntiAffinityMode::Required => {
            anti.required_during_scheduling_ignored_during_execution
                .get_or_insert_with(Vec::new)
                .push(term);
            report.added(format!("required pod anti-affinity on {key}"));
        }
        _ => {
            anti.preferred_during_scheduling_ignored_during_execution
                .get_or_insert_with(Vec::new)
                .push(WeightedPodAffinityTerm {
                    pod_affinity_term: term,
                    weight,
                });
            report.added(format!(
                "preferred pod anti-affinity on {key} (weight {weight})"
            ));
        }
    }
}
