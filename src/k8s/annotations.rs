//! The annotation and label keys of the contract (DESIGN.md), and the one way to read an
//! annotation: trimmed, so `" true"` and `"true"` mean the same to mutation and validation.

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::StatefulSet;

/// Annotation and label keys of the contract (DESIGN.md).
pub mod keys {
    pub const ANTI_AFFINITY: &str = "stsguard.io/anti-affinity";
    pub const TOPOLOGY_KEY: &str = "stsguard.io/topology-key";
    pub const ORDINAL_ENV: &str = "stsguard.io/ordinal-env";
    pub const MUTATE: &str = "stsguard.io/mutate";
    pub const ROLES: &str = "stsguard.io/roles";
    pub const ROLE_CONFIG: &str = "stsguard.io/role-config";
    pub const ROLE_MOUNT_PATH: &str = "stsguard.io/role-mount-path";
    pub const SERVER_ID_BASE: &str = "stsguard.io/server-id-base";
    pub const ROLE_NODE_SELECTOR_PREFIX: &str = "stsguard.io/role-node-selector.";
    pub const MANAGED: &str = "stsguard.io/managed";
    pub const ROLE: &str = "stsguard.io/role";
    pub const QUORUM: &str = "stsguard.io/quorum";
    pub const PROTECT: &str = "stsguard.io/protect";
    pub const SINGLE_INSTANCE: &str = "stsguard.io/single-instance";
    pub const RULE_OVERRIDE_PREFIX: &str = "stsguard.io/rule.";
    /// Set by the StatefulSet controller on every pod (Kubernetes >= 1.28).
    pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
}

/// An annotation of `object`, trimmed.
pub fn get<
    'a,
    K: Resource
        + k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
>(
    object: &'a K,
    key: &str,
) -> Option<&'a str> {
    object
        .metadata()
        .annotations
        .as_ref()?
        .get(key)
        .map(|v| v.trim())
}

/// A `true`/`false` annotation (`none` reads as false). `Err`: another value, as a warning.
pub fn flag(sts: &StatefulSet, key: &str) -> Result<Option<bool>, String> {
    match get(sts, key) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") | Some("none") => Ok(Some(false)),
        Some(v) => Err(format!(
            "{key}: \"{}\" is not \"true\" or \"false\"",
            crate::text::quote(v)
        )),
    }
}

/// `stsguard.io/rule.<id>` on the object.
pub fn rule_override<'a>(sts: &'a StatefulSet, rule: &str) -> Option<&'a str> {
    let anns = sts.metadata.annotations.as_ref()?;
    // One lookup without building the key for objects with no override at all.
    anns.range(keys::RULE_OVERRIDE_PREFIX.to_string()..)
        .take_while(|(k, _)| k.starts_with(keys::RULE_OVERRIDE_PREFIX))
        .find(|(k, _)| &k[keys::RULE_OVERRIDE_PREFIX.len()..] == rule)
        .map(|(_, v)| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn sts(pairs: &[(&str, &str)]) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                annotations: Some(
                    pairs
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn values_are_trimmed_and_flags_parsed() {
        let s = sts(&[
            (keys::MUTATE, " false "),
            (keys::PROTECT, "yes"),
            ("stsguard.io/rule.quorum-odd", " warn"),
        ]);
        assert_eq!(get(&s, keys::MUTATE), Some("false"));
        assert_eq!(flag(&s, keys::MUTATE), Ok(Some(false)));
        assert_eq!(flag(&s, keys::ROLES), Ok(None));
        assert!(flag(&s, keys::PROTECT).is_err_and(|e| e.contains("\"yes\"")));
        assert_eq!(rule_override(&s, "quorum-odd"), Some("warn"));
        assert_eq!(rule_override(&s, "quorum"), None);
    }
}
