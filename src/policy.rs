//! The policy: one type drives `/mutate`, `/validate` and `stsguard check`.
//!
//! Loaded from YAML (README.md "Policy file"), strictly: an unknown key or a bad value is an error
//! that names the key's path. Without a file the built-in defaults apply.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How a rule is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny the request.
    Enforce,
    /// Allow it with a warning.
    Warn,
    /// Do not evaluate the rule.
    Off,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Off => "off",
        }
    }
    /// Parses an object override annotation value.
    pub fn parse(s: &str) -> Option<Mode> {
        match s.trim() {
            "enforce" => Some(Mode::Enforce),
            "warn" => Some(Mode::Warn),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use crate::validate::rules::RuleId;

/// Anti-affinity mode (`stsguard.io/anti-affinity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AntiAffinityMode {
    Preferred,
    Required,
    None,
}

impl AntiAffinityMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preferred => "preferred",
            Self::Required => "required",
            Self::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "preferred" => Some(Self::Preferred),
            "required" => Some(Self::Required),
            "none" | "false" => Some(Self::None),
            _ => None,
        }
    }
}

/// What the webhook answers when it cannot evaluate a well-formed review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Allow the request with a warning (fail open).
    Allow,
    /// Deny the request (fail closed).
    Deny,
}

/// `excludeNamespaces`: the list as written (its order kept for messages and output; the file
/// format is a list), looked up through a hash set: every review asks, so the look-up is O(1)
/// whatever the list's length.
#[derive(Clone, Debug, Default)]
pub struct NamespaceSet {
    list: Vec<String>,
    set: HashSet<String>,
}

impl NamespaceSet {
    pub fn contains(&self, namespace: &str) -> bool {
        self.set.contains(namespace)
    }
}

impl From<Vec<String>> for NamespaceSet {
    fn from(list: Vec<String>) -> Self {
        let set = list.iter().cloned().collect();
        NamespaceSet { list, set }
    }
}

impl FromIterator<String> for NamespaceSet {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<_>>().into()
    }
}

impl std::ops::Deref for NamespaceSet {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.list
    }
}

impl PartialEq for NamespaceSet {
    fn eq(&self, other: &Self) -> bool {
        self.list == other.list
    }
}

impl Serialize for NamespaceSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.list.serialize(s)
    }
}

impl<'de> Deserialize<'de> for NamespaceSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<String>::deserialize(d).map(NamespaceSet::from)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Policy {
    pub cluster_domain: String,
    pub exclude_namespaces: NamespaceSet,
    /// A review that cannot be evaluated (object not decodable, internal error) is answered per this.
    pub on_error: OnError,
    pub mutation: MutationPolicy,
    pub validation: ValidationPolicy,
    pub audit: AuditPolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct MutationPolicy {
    pub anti_affinity: AntiAffinityPolicy,
    pub ordinal_env: bool,
    pub roles: RolesPolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AntiAffinityPolicy {
    pub mode: AntiAffinityMode,
    pub topology_key: String,
    pub weight: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct RolesPolicy {
    pub image: String,
    pub mount_path: String,
    /// Secrets for pulling `image`, added to a pod template that sets none of its own.
    pub image_pull_secrets: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ValidationPolicy {
    /// May an object's annotation `stsguard.io/rule.<id>: warn|off` relax a rule?
    pub allow_object_overrides: bool,
    /// The mode of the quorum rules for consensus systems recognised from their image and
    /// arguments (not annotated `stsguard.io/quorum`), never stricter than the rules' own.
    pub quorum_detection: Mode,
    /// Per-rule modes; rules not listed keep their default.
    pub rules: BTreeMap<RuleId, Mode>,
}

impl Default for ValidationPolicy {
    fn default() -> Self {
        ValidationPolicy {
            allow_object_overrides: false,
            // Detection can be wrong: it warns, naming the signal it used.
            quorum_detection: Mode::Warn,
            rules: BTreeMap::new(),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            cluster_domain: "cluster.local".into(),
            exclude_namespaces: vec![
                "kube-system".to_string(),
                "kube-node-lease".to_string(),
                "kube-public".to_string(),
            ]
            .into(),
            on_error: OnError::Allow,
            mutation: MutationPolicy::default(),
            validation: ValidationPolicy::default(),
            audit: AuditPolicy::default(),
        }
    }
}

impl Default for MutationPolicy {
    fn default() -> Self {
        MutationPolicy {
            anti_affinity: AntiAffinityPolicy::default(),
            ordinal_env: true,
            roles: RolesPolicy::default(),
        }
    }
}

impl Default for AntiAffinityPolicy {
    fn default() -> Self {
        AntiAffinityPolicy {
            mode: AntiAffinityMode::Preferred,
            topology_key: "kubernetes.io/hostname".into(),
            weight: 100,
        }
    }
}

impl Default for RolesPolicy {
    fn default() -> Self {
        RolesPolicy {
            image: "stsguard:latest".into(),
            mount_path: "/etc/stsguard".into(),
            image_pull_secrets: Vec::new(),
        }
    }
}

/// The background audit of `stsguard serve` (see [`crate::audit`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct AuditPolicy {
    /// Time between two audits over the watch caches, e.g. `30s`, `10m`, `1h 30m`; `0s`: off.
    #[serde(with = "duration_text")]
    pub interval: std::time::Duration,
    /// Write `wgpolicyk8s.io/v1alpha2` PolicyReports (one writer, elected through a Lease).
    pub policy_reports: bool,
}

impl Default for AuditPolicy {
    fn default() -> Self {
        AuditPolicy {
            interval: std::time::Duration::from_secs(600),
            policy_reports: false,
        }
    }
}

/// Durations written as text: `30s`, `10m`, `1h30m`, `1h 30m` (jiff's friendly format) or ISO
/// 8601 (`PT10M`); written back in the friendly format.
pub mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Parses a non-negative duration.
    pub fn parse(text: &str) -> Result<std::time::Duration, String> {
        let d: jiff::SignedDuration = text.trim().parse().map_err(|e| {
            format!("{text:?} is not a duration ({e}); write it as e.g. 30s, 10m or 1h")
        })?;
        std::time::Duration::try_from(d)
            .map_err(|_| format!("{text:?} is negative; use 0s to turn the audit off"))
    }

    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        let text = match jiff::SignedDuration::try_from(*d) {
            Ok(sd) => format!("{sd:#}"),
            Err(_) => format!("{}s", d.as_secs()),
        };
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A policy file that could not be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "policy file {path} is empty: write `{{}}` for the built-in defaults; an empty file is \
         also what a truncated or half-written one looks like, so it is not taken for them"
    )]
    Empty { path: String },
    #[error("policy file {path}: {key}: {message}")]
    Invalid {
        path: String,
        key: String,
        message: String,
    },
}

impl Policy {
    /// The mode in force for a rule, before object overrides.
    pub fn mode(&self, rule: RuleId) -> Mode {
        self.validation
            .rules
            .get(&rule)
            .copied()
            .unwrap_or_else(|| rule.default_mode())
    }

    pub fn is_excluded(&self, namespace: Option<&str>) -> bool {
        namespace.is_some_and(|ns| self.exclude_namespaces.contains(ns))
    }

    /// Parses and checks a policy document; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let invalid = |key: String, message: String| PolicyError::Invalid {
            path: origin.to_string(),
            key,
            message,
        };
        if text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        }) {
            return Err(PolicyError::Empty {
                path: origin.to_string(),
            });
        }
        let policy: Policy = crate::yaml::from_str(text).map_err(|e| {
            let key = if e.path.is_empty() {
                "(top level)".to_string()
            } else {
                e.path
            };
            let at = match e.column {
                Some(c) => format!("line {}, column {c}", e.line),
                None => format!("line {}", e.line),
            };
            invalid(key, format!("{} ({at})", e.message))
        })?;
        policy
            .check()
            .map_err(|(key, msg)| invalid(key.to_string(), msg))?;
        Ok(policy)
    }

    /// Reads a policy file (a regular file, capped: `crate::files::read_file`). Blocking.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bytes =
            crate::files::read_file(path, crate::bounds::MAX_MOUNTED_FILE).map_err(|source| {
                PolicyError::Read {
                    path: path.display().to_string(),
                    source,
                }
            })?;
        Self::from_file_bytes(&bytes, &path.display().to_string())
    }

    /// A policy file's bytes: UTF-8 YAML, not empty ([`Policy::from_yaml`]).
    pub fn from_file_bytes(bytes: &[u8], origin: &str) -> Result<Policy, PolicyError> {
        let text = std::str::from_utf8(bytes).map_err(|e| PolicyError::Read {
            path: origin.to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        Self::from_yaml(text, origin)
    }

    /// Checks values serde cannot: ranges and formats.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let w = self.mutation.anti_affinity.weight;
        if !(1..=100).contains(&w) {
            return Err((
                "mutation.antiAffinity.weight",
                format!("must be 1..100, got {w}"),
            ));
        }
        if self.mutation.anti_affinity.topology_key.trim().is_empty() {
            return Err((
                "mutation.antiAffinity.topologyKey",
                "must not be empty".into(),
            ));
        }
        if !crate::k8s::labels::is_qualified_name(&self.mutation.anti_affinity.topology_key) {
            return Err((
                "mutation.antiAffinity.topologyKey",
                format!(
                    "{:?} is not a valid label key",
                    self.mutation.anti_affinity.topology_key
                ),
            ));
        }
        if self.cluster_domain.is_empty()
            || !crate::k8s::labels::is_dns_subdomain(&self.cluster_domain)
        {
            return Err((
                "clusterDomain",
                format!("{:?} is not a DNS domain", self.cluster_domain),
            ));
        }
        if self.mutation.roles.image.trim().is_empty() {
            return Err(("mutation.roles.image", "must not be empty".into()));
        }
        if let Some(why) = crate::k8s::roles::mount_path_problem(&self.mutation.roles.mount_path) {
            return Err(("mutation.roles.mountPath", why));
        }
        for s in &self.mutation.roles.image_pull_secrets {
            if !crate::k8s::labels::is_dns_subdomain(s) {
                return Err((
                    "mutation.roles.imagePullSecrets",
                    format!("{s:?} is not a Secret name"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_exclude_list_keeps_its_file_format_and_is_looked_up_by_name()
    -> Result<(), Box<dyn std::error::Error>> {
        let names: Vec<String> = (0..240_000).map(|i| format!("ns-{i}")).collect();
        let yaml = format!("excludeNamespaces: [{}]\n", names.join(", "));
        let p = Policy::from_yaml(&yaml, "x")?;
        assert_eq!(&p.exclude_namespaces[..], &names[..], "order kept");
        assert!(p.is_excluded(Some("ns-0")));
        assert!(p.is_excluded(Some("ns-239999")));
        assert!(!p.is_excluded(Some("ns-240000")));
        assert!(!p.is_excluded(None));
        // Written back as the same list.
        let back: serde_json::Value = serde_json::to_value(&p)?;
        assert_eq!(back["excludeNamespaces"][239_999], "ns-239999");
        assert_eq!(
            back["excludeNamespaces"].as_array().map(Vec::len),
            Some(240_000)
        );
        Ok(())
    }

    #[test]
    fn an_empty_file_is_refused_and_an_empty_map_is_the_defaults()
    -> Result<(), Box<dyn std::error::Error>> {
        for empty in ["", "  \n", "# only a comment\n\n"] {
            let e = Policy::from_yaml(empty, "p.yaml").unwrap_err().to_string();
            assert!(e.contains("p.yaml is empty") && e.contains("`{}`"), "{e}");
        }
        assert_eq!(Policy::from_yaml("{}\n", "x")?, Policy::default());
        Ok(())
    }

    #[test]
    fn design_example_parses() -> Result<(), Box<dyn std::error::Error>> {
        let text = r#"
clusterDomain: cluster.local
excludeNamespaces: [kube-system, kube-node-lease, kube-public]
mutation:
  antiAffinity: {mode: preferred, topologyKey: kubernetes.io/hostname, weight: 100}
  ordinalEnv: true
  roles: {image: "stsguard:latest", mountPath: /etc/stsguard}
validation:
  allowObjectOverrides: false
  rules: {shared-claim: enforce, governing-service: warn}
"#;
        let p = Policy::from_yaml(text, "x")?;
        assert_eq!(p.mode(RuleId::SharedClaim), Mode::Enforce);
        assert_eq!(p.mode(RuleId::QuorumOdd), Mode::Enforce);
        assert_eq!(p.mode(RuleId::ClaimRetention), Mode::Warn);
        Ok(())
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Policy::from_yaml("mutation:\n  antiAfinity: {mode: required}\n", "p.yaml")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("mutation") && msg.contains("antiAfinity"),
            "{msg}"
        );
    }

    #[test]
    fn bad_rule_id_and_mode_are_named() {
        let e = Policy::from_yaml("validation:\n  rules: {no-such-rule: warn}\n", "p")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("validation.rules") && e.contains("no-such-rule"),
            "{e}"
        );
        let e = Policy::from_yaml("validation:\n  rules: {shared-claim: maybe}\n", "p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("validation.rules.shared-claim"), "{e}");
        let e = Policy::from_yaml("mutation:\n  antiAffinity: {weight: 500}\n", "p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mutation.antiAffinity.weight"), "{e}");
    }

    #[test]
    fn audit_section() -> Result<(), Box<dyn std::error::Error>> {
        use std::time::Duration;
        let p = Policy::default();
        assert_eq!(p.audit.interval, Duration::from_secs(600));
        assert!(!p.audit.policy_reports);
        let p = Policy::from_yaml("audit: {interval: 30s, policyReports: true}\n", "p")?;
        assert_eq!(p.audit.interval, Duration::from_secs(30));
        assert!(p.audit.policy_reports);
        for (text, secs) in [
            ("0s", 0),
            ("10m", 600),
            ("1h 30m", 5400),
            ("1h30m", 5400),
            ("PT2M", 120),
        ] {
            assert_eq!(
                duration_text::parse(text)?,
                Duration::from_secs(secs),
                "{text}"
            );
        }
        // Written back as text that reads back the same.
        let p = Policy::from_yaml("audit: {interval: 90m}\n", "p")?;
        let back = Policy::from_yaml(&crate::yaml::to_string_of(&p)?, "p")?;
        assert_eq!(back, p);
        for bad in ["10", "ten minutes", "-5m", "10x"] {
            let e = Policy::from_yaml(&format!("audit: {{interval: {bad:?}}}\n"), "p")
                .unwrap_err()
                .to_string();
            assert!(e.contains("audit.interval"), "{bad}: {e}");
        }
        let e = Policy::from_yaml("audit: {policyReport: true}\n", "p")
            .unwrap_err()
            .to_string();
        assert!(e.contains("policyReport"), "{e}");
        Ok(())
    }

    #[test]
    fn rule_ids_round_trip() {
        for r in RuleId::ALL {
            assert_eq!(RuleId::parse(r.as_str()), Some(*r));
        }
        let ids: std::collections::BTreeSet<&str> =
            RuleId::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(ids.len(), RuleId::ALL.len(), "ids are unique");
    }
}
