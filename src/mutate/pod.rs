//! Pod roles (docs/mutation.md): at Pod CREATE, the role label and the role's node selector.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec};

use super::{Report, WarningId};
use crate::k8s::keys;
use crate::k8s::labels::ordinal_from_name;
use crate::k8s::roles::{RoleSpec, role_node_selector};

/// The pod's ordinal: the `apps.kubernetes.io/pod-index` label, else the name's `-N` suffix.
pub fn pod_ordinal(pod: &Pod) -> Option<u32> {
    let labels = pod.metadata.labels.as_ref();
    if let Some(i) = labels
        .and_then(|l| l.get(keys::POD_INDEX))
        .and_then(|v| v.parse::<u32>().ok())
    {
        return Some(i);
    }
    pod.metadata.name.as_deref().and_then(ordinal_from_name)
}

pub fn is_managed(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(keys::MANAGED))
        .is_some_and(|v| v == "true")
}

/// Mutates a Pod at CREATE. Pods without the managed label are returned unchanged.
pub fn mutate_pod(pod: &Pod) -> (Pod, Report) {
    let mut report = Report::default();
    let mut out = pod.clone();
    if !is_managed(pod) {
        return (out, report);
    }
    let empty = BTreeMap::new();
    let anns = pod.metadata.annotations.as_ref().unwrap_or(&empty);
    let Some(spec_text) = crate::k8s::annotations::get(pod, keys::ROLES) else {
        report.warn(
            WarningId::PodNoRole,
            format!(
                "pod is labelled {} but carries no {} annotation: no role",
                keys::MANAGED,
                keys::ROLES
            ),
        );
        return (out, report);
    };
    let spec = match RoleSpec::parse(spec_text) {
        Ok(s) => s,
        Err(e) => {
            report.warn(
                WarningId::RolesInvalid,
                format!("role-spec: {e}; no role label"),
            );
            return (out, report);
        }
    };
    let Some(ordinal) = pod_ordinal(pod) else {
        report.warn(
            WarningId::PodNoRole,
            format!(
                "pod has no {} label and no -N name suffix: no role",
                keys::POD_INDEX
            ),
        );
        return (out, report);
    };
    let role = spec.role_for(ordinal).to_string();
    let labels = out.metadata.labels.get_or_insert_with(BTreeMap::new);
    match labels.get(keys::ROLE) {
        None => {
            labels.insert(keys::ROLE.into(), role.clone());
            report.added(format!("label {}={role}", keys::ROLE));
        }
        Some(v) if *v == role => {}
        Some(v) => report.warn(
            WarningId::PodLabelKept,
            format!(
                "pod has {}={v} already; ordinal {ordinal} is \"{role}\": kept {v}",
                keys::ROLE
            ),
        ),
    }
    match role_node_selector(anns, &role) {
        None => {}
        Some(Err(e)) => report.warn(
            WarningId::RolesInvalid,
            format!("role-spec: {}{role}: {e}", keys::ROLE_NODE_SELECTOR_PREFIX),
        ),
        Some(Ok(pairs)) => {
            let sel = out
                .spec
                .get_or_insert_with(PodSpec::default)
                .node_selector
                .get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                match sel.get(&k) {
                    None => {
                        report.added(format!("nodeSelector {k}={v} for role {role}"));
                        sel.insert(k, v);
                    }
                    Some(have) if *have == v => {}
                    Some(have) => report.warn(
                        WarningId::PodLabelKept,
                        format!("nodeSelector {k}={have} kept; role {role} asks {k}={v}"),
                    ),
                }
            }
        }
    }
    (out, report)
}
