//! The annotation and label keys of the contract, and the one way to read an annotation:
//! trimmed, so `" true"` and `"true"` mean the same to mutation and validation. Each reader
//! checks the values it reads (a safety switch through [`switch`], a mode override through
//! [`rule_override`]); [`ignored`] finds the `stsguard.io/` annotations nobody reads.

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::StatefulSet;

use crate::policy::{Mode, RuleId};
use crate::text::quote;

/// Annotation and label keys (README.md "Annotations").
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
    /// On the pod template: what stsguard added there ([`crate::mutate::added`]).
    pub const ADDED: &str = "stsguard.io/added";
    /// Every key stsguard reads on a StatefulSet, but the two families below.
    pub const ON_STATEFULSET: &[&str] = &[
        MUTATE,
        ANTI_AFFINITY,
        TOPOLOGY_KEY,
        ORDINAL_ENV,
        ROLES,
        ROLE_CONFIG,
        ROLE_MOUNT_PATH,
        SERVER_ID_BASE,
        QUORUM,
        PROTECT,
        SINGLE_INSTANCE,
    ];
    /// The safety switches: `"true"` or `"false"`, anything else is refused on write.
    pub const SWITCHES: &[&str] = &[PROTECT, SINGLE_INSTANCE, QUORUM];
    pub const PREFIX: &str = "stsguard.io/";
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

/// A safety switch's value ([`keys::SWITCHES`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch<'a> {
    Unset,
    On,
    Off,
    /// Neither `"true"` nor `"false"` (e.g. `"True"`, `"yes"`): refused on write by the
    /// `safety-switch` rule, and read as on where it was stored before (fail closed).
    Invalid(&'a str),
}

impl Switch<'_> {
    /// On, or not understood: a switch never fails open.
    pub fn is_on(self) -> bool {
        matches!(self, Switch::On | Switch::Invalid(_))
    }
}

/// A safety switch of `sts`.
pub fn switch<'a>(sts: &'a StatefulSet, key: &str) -> Switch<'a> {
    match get(sts, key) {
        None => Switch::Unset,
        Some("true") => Switch::On,
        Some("false") => Switch::Off,
        Some(v) => Switch::Invalid(v),
    }
}

/// Does `key` (of a StatefulSet) decide what the mutation writes into the pod template? Changing
/// one of these is a reason to mutate an UPDATE that leaves the template as it is.
pub fn drives_template(key: &str) -> bool {
    matches!(
        key,
        keys::MUTATE
            | keys::ANTI_AFFINITY
            | keys::TOPOLOGY_KEY
            | keys::ORDINAL_ENV
            | keys::ROLES
            | keys::ROLE_CONFIG
            | keys::ROLE_MOUNT_PATH
            | keys::SERVER_ID_BASE
    ) || key.starts_with(keys::ROLE_NODE_SELECTOR_PREFIX)
}

/// The annotations of `sts` that decide its template ([`drives_template`]), as written.
pub fn template_drivers(sts: &StatefulSet) -> impl Iterator<Item = (&String, &String)> {
    stsguard_annotations(sts).filter(|(k, _)| drives_template(k))
}

/// The `stsguard.io/` annotations of `sts`, in key order (a range of the sorted map, not every
/// key).
fn stsguard_annotations(sts: &StatefulSet) -> impl Iterator<Item = (&String, &String)> {
    sts.metadata
        .annotations
        .iter()
        .flat_map(|a| {
            a.range::<str, _>((
                std::ops::Bound::Included(keys::PREFIX),
                std::ops::Bound::Unbounded,
            ))
        })
        .take_while(|(k, _)| k.starts_with(keys::PREFIX))
}

/// Unknown keys named one by one; the rest are counted (each costs a did-you-mean search).
const NAMED: usize = 3;
/// Keys longer than this get no did-you-mean (a search is quadratic in the key's length).
const SUGGEST_MAX: usize = 64;

/// The `stsguard.io/` annotations of `sts` that do nothing, each as a message naming the key,
/// the value and why: an unknown key (with the known key it is closest to), or an override
/// `stsguard.io/rule.<id>` that the policy does not allow, names no rule, has a value that is
/// not a mode, or would tighten the rule (overrides only relax). `mode` gives a rule's mode
/// before overrides; `allowed`: the policy allows object overrides. Work: linear in the
/// annotations, and a bounded search for the first few unknown keys.
pub fn ignored(sts: &StatefulSet, allowed: bool, mode: impl Fn(RuleId) -> Mode) -> Vec<String> {
    let mut out = Vec::new();
    let mut unknown = 0usize;
    for (key, value) in stsguard_annotations(sts) {
        let shown_key = quote(key);
        let shown = quote(value.trim());
        if let Some(id) = key.strip_prefix(keys::RULE_OVERRIDE_PREFIX) {
            let Some(rule) = RuleId::parse(id) else {
                let hint = closest(id, RuleId::ALL.iter().map(|r| r.as_str()))
                    .map(|c| format!(" (did you mean {c}?)"))
                    .unwrap_or_default();
                out.push(format!(
                    "{shown_key}: no rule \"{}\"{hint}: ignored",
                    quote(id)
                ));
                continue;
            };
            let base = mode(rule);
            let why = match Mode::parse(value) {
                None => format!("\"{shown}\" is not warn or off"),
                Some(_) if !allowed => {
                    "the policy does not allow object overrides (validation.allowObjectOverrides)"
                        .to_string()
                }
                Some(m) if m < base => {
                    format!("\"{shown}\" would tighten it; overrides only relax")
                }
                Some(_) => continue,
            };
            out.push(format!("{shown_key}: {why}: ignored, {rule} stays {base}"));
            continue;
        }
        if keys::ON_STATEFULSET.contains(&key.as_str())
            || key.starts_with(keys::ROLE_NODE_SELECTOR_PREFIX)
        {
            continue;
        }
        unknown += 1;
        if unknown > NAMED {
            continue;
        }
        let hint = (key.len() <= SUGGEST_MAX)
            .then(|| closest(key, suggestions(sts)))
            .flatten()
            .map(|c| format!("; did you mean {c}?"))
            .unwrap_or_default();
        out.push(format!(
            "{shown_key} is not a stsguard annotation: ignored{hint}"
        ));
    }
    if unknown > NAMED {
        out.push(format!(
            "{} more unknown stsguard.io/ annotations ignored",
            unknown - NAMED
        ));
    }
    out
}

/// The keys an unknown key may have meant: every key stsguard reads, an override for each rule,
/// and a node selector for each role the object names.
fn suggestions(sts: &StatefulSet) -> impl Iterator<Item = String> + '_ {
    let roles = crate::k8s::roles::spec_of(sts)
        .and_then(Result::ok)
        .map(|s| s.roles().into_iter().map(String::from).collect::<Vec<_>>())
        .unwrap_or_default();
    keys::ON_STATEFULSET
        .iter()
        .map(|k| k.to_string())
        .chain(
            RuleId::ALL
                .iter()
                .map(|r| format!("{}{}", keys::RULE_OVERRIDE_PREFIX, r.as_str())),
        )
        .chain(
            roles
                .into_iter()
                .take(8)
                .map(|r| format!("{}{r}", keys::ROLE_NODE_SELECTOR_PREFIX)),
        )
}

/// The candidate closest to `word` (edit distance, case-insensitive), when it is close: at most
/// 2 edits, 3 for words of 12 characters or more.
fn closest<S: AsRef<str>>(word: &str, candidates: impl Iterator<Item = S>) -> Option<String> {
    let word = word.to_ascii_lowercase();
    let name = word.strip_prefix(keys::PREFIX).unwrap_or(&word);
    let limit = if name.len() >= 12 { 3 } else { 2 };
    candidates
        .map(|c| {
            (
                strsim::levenshtein(&word, c.as_ref()),
                c.as_ref().to_string(),
            )
        })
        // 0: the same but for case, which is not the same key.
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
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
