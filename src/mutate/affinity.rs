//! DESIGN.md Mutation 1: one podAntiAffinity term on the StatefulSet's own selector.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, PodSpec, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::{Report, WarningId};
use crate::k8s::annotations::{self as ann, keys};
use crate::k8s::labels::selector_is_empty;
use crate::k8s::template::{is_equivalent, uses_host_path};
use crate::policy::{AntiAffinityMode, Policy};

/// The mode in force for this StatefulSet: annotation, else `required` for hostPath pods (unless
/// the policy turned anti-affinity off), else the policy default.
pub fn effective_mode(sts: &StatefulSet, policy: &Policy, report: &mut Report) -> AntiAffinityMode {
    let default = policy.mutation.anti_affinity.mode;
    if let Some(v) = ann::get(sts, keys::ANTI_AFFINITY) {
        match AntiAffinityMode::parse(v) {
            Some(m) => return m,
            None => report.warn(
                WarningId::AnnotationInvalid,
                format!(
                    "{}: \"{v}\" is not preferred|required|none; using the default",
                    keys::ANTI_AFFINITY
                ),
            ),
        }
    }
    let host_path = sts
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .is_some_and(uses_host_path);
    if host_path && default != AntiAffinityMode::None {
        AntiAffinityMode::Required
    } else {
        default
    }
}

pub fn topology_key<'a>(sts: &'a StatefulSet, policy: &'a Policy, report: &mut Report) -> &'a str {
    match ann::get(sts, keys::TOPOLOGY_KEY) {
        Some(k) if crate::k8s::labels::is_qualified_name(k.trim()) => k.trim(),
        Some(k) => {
            report.warn(
                WarningId::AnnotationInvalid,
                format!(
                    "{}: \"{k}\" is not a label key; using the default",
                    keys::TOPOLOGY_KEY
                ),
            );
            &policy.mutation.anti_affinity.topology_key
        }
        None => &policy.mutation.anti_affinity.topology_key,
    }
}

pub fn apply(sts: &mut StatefulSet, policy: &Policy, report: &mut Report) {
    let mode = effective_mode(sts, policy, report);
    if mode == AntiAffinityMode::None {
        return;
    }
    let key = topology_key(sts, policy, report).to_string();
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
    let has_required = required.is_some_and(|ts| ts.iter().any(|t| is_equivalent(t, &key, sts)));
    // The strongest equivalent preferred term the user wrote.
    let preferred_weight = preferred.and_then(|ts| {
        ts.iter()
            .filter(|t| is_equivalent(&t.pod_affinity_term, &key, sts))
            .map(|t| t.weight)
            .max()
    });
    if has_required {
        return;
    }
    if mode == AntiAffinityMode::Preferred {
        if let Some(w) = preferred_weight {
            let ours = policy.mutation.anti_affinity.weight;
            if w < ours {
                report.warn(
                    WarningId::AntiAffinityKept,
                    format!(
                        "a preferred podAntiAffinity term on {key} for these pods has weight {w}: kept it (stsguard's is {ours}); raise its weight for a stronger spread"
                    ),
                );
            }
            return;
        }
    }
    let term = PodAffinityTerm {
        label_selector: Some(selector),
        topology_key: key.clone(),
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
                    weight: policy.mutation.anti_affinity.weight,
                });
            report.added(format!(
                "preferred pod anti-affinity on {key} (weight {})",
                policy.mutation.anti_affinity.weight
            ));
        }
    }
}
