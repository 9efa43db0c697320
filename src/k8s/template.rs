//! Reading a StatefulSet's pod template.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PodAffinityTerm, PodSpec};

use super::labels::{selector_is_empty, selector_matches};

/// Does the pod template mount a hostPath volume?
pub fn uses_host_path(spec: &PodSpec) -> bool {
    spec.volumes.iter().flatten().any(|v| v.host_path.is_some())
}

/// Is `term` equivalent to the one stsguard would add: same topology key, in the pods' own
/// namespace, and a selector that is the StatefulSet's or selects its pods?
pub fn is_equivalent(term: &PodAffinityTerm, topology_key: &str, sts: &StatefulSet) -> bool {
    if term.topology_key != topology_key
        || term.namespaces.as_ref().is_some_and(|n| !n.is_empty())
        || term.namespace_selector.is_some()
    {
        return false;
    }
    let Some(sel) = &term.label_selector else {
        return false;
    };
    let Some(spec) = &sts.spec else { return false };
    if *sel == spec.selector {
        return true;
    }
    let empty = Default::default();
    let labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .unwrap_or(&empty);
    !selector_is_empty(sel) && selector_matches(sel, labels)
}
