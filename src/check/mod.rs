//! `stsguard check`: the server's mutation and validation, offline, over manifest files.
//!
//! [`read`] turns files into objects with their [`Source`]; [`run`] checks every apps/v1
//! StatefulSet against the look-ups the other objects answer; [`report`] prints a list of
//! [`Checked`] results (the same printer serves any source of StatefulSets, e.g. a cluster).

pub mod read;
pub mod report;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Serialize;
use serde_json::Value;

pub use read::{Input, read_documents, yaml_documents};
pub use report::render as report;

use crate::k8s::roles::role_node_selector;
use crate::mutate::{self, WarningId};
use crate::policy::{Mode, Policy, RuleId};
use crate::validate::lookups::StaticLookups;
use crate::validate::{self, Finding, Lookups, Outcome};

/// Exit code: every StatefulSet allowed.
pub const EXIT_ALLOWED: i32 = 0;
/// Exit code: an enforced rule denies a StatefulSet.
pub const EXIT_DENIED: i32 = 1;
/// Exit code: bad input (not YAML/JSON, a duplicate key, a type error, an object the API
/// server refuses such as an `apps/v1beta1|v1beta2` StatefulSet), or a bad policy file.
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code: the input holds no apps/v1 StatefulSet (0 with `--allow-empty`).
pub const EXIT_NO_STATEFULSET: i32 = 3;

/// Where a checked object came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Source {
    /// A document of a file (`-`: stdin).
    File {
        file: String,
        /// 1-based among the file's documents that hold something.
        document: usize,
        /// 1-based index in the document's `items` when the document is a `List`.
        #[serde(skip_serializing_if = "Option::is_none")]
        item: Option<usize>,
        /// The line where the document starts.
        #[serde(skip_serializing_if = "Option::is_none")]
        line: Option<usize>,
    },
    /// An object read from a cluster (the kubeconfig context's name, or `in-cluster`).
    Cluster { cluster: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File {
                file,
                document,
                item,
                line,
            } => {
                write!(f, "{file}: document {document}")?;
                if let Some(i) = item {
                    write!(f, " item {i}")?;
                }
                if let Some(l) = line {
                    write!(f, " (line {l})")?;
                }
                Ok(())
            }
            Source::Cluster { cluster } => write!(f, "cluster {cluster}"),
        }
    }
}

/// Which step said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Mutation,
    Validation,
}

/// What a `check` finding is about: a validation rule, a mutation warning, or the bound on one
/// object's work. Written as its id: `shared-claim`, `env-kept`, `bounds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    Validation(RuleId),
    Mutation(WarningId),
    /// Past a bound ([`crate::bounds`]): neither mutated nor judged by the rules.
    Bound,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Validation(id) => id.as_str(),
            Rule::Mutation(id) => id.as_str(),
            Rule::Bound => crate::bounds::RULE,
        }
    }

    /// The step that says it.
    pub fn stage(self) -> Stage {
        match self {
            Rule::Mutation(_) => Stage::Mutation,
            Rule::Validation(_) | Rule::Bound => Stage::Validation,
        }
    }
}

impl From<RuleId> for Rule {
    fn from(id: RuleId) -> Self {
        Rule::Validation(id)
    }
}

impl PartialEq<RuleId> for Rule {
    fn eq(&self, id: &RuleId) -> bool {
        *self == Rule::Validation(*id)
    }
}

/// The one failing finding of an object past a bound ([`Rule::Bound`]), as `check`, `stsguard
/// audit` and the background audit report it.
pub fn past_bound_finding(why: &crate::bounds::PastBound) -> Finding<Rule> {
    Finding {
        rule: Rule::Bound,
        mode: Mode::Enforce,
        outcome: Outcome::Fail,
        message: format!("not evaluated: {why}"),
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl From<Finding<RuleId>> for Finding<Rule> {
    fn from(f: Finding<RuleId>) -> Self {
        Finding {
            rule: Rule::Validation(f.rule),
            mode: f.mode,
            outcome: f.outcome,
            message: f.message,
        }
    }
}

/// A finding as `--output json` writes it: the finding, then its stage.
#[derive(Serialize)]
struct Staged<'a> {
    #[serde(flatten)]
    finding: &'a Finding<Rule>,
    stage: Stage,
}

fn staged<S: serde::Serializer>(findings: &[Finding<Rule>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(findings.iter().map(|finding| Staged {
        finding,
        stage: finding.rule.stage(),
    }))
}

/// The result for one StatefulSet (the `--output json` element).
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    pub source: Source,
    pub kind: &'static str,
    pub name: String,
    pub namespace: String,
    pub allowed: bool,
    /// Failed enforced rules, mutation warnings, then the other rule findings (warned rules, and
    /// rules not checked), each with its [`Stage`] in the JSON.
    #[serde(serialize_with = "staged")]
    pub findings: Vec<Finding<Rule>>,
    /// The JSONPatch the server would answer.
    pub patch: json_patch::Patch,
    /// The object after the mutation.
    pub mutated: StatefulSet,
    /// Enforced rules that failed.
    #[serde(skip)]
    pub violations: Vec<Finding<RuleId>>,
    /// The warnings the server would answer, as it words them.
    #[serde(skip)]
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub added: Vec<String>,
    /// What the mutation takes out again (stsguard's own values, an annotation removed).
    #[serde(skip)]
    pub removed: Vec<String>,
    /// Per role, where its pods go: (role, ordinals, node selector text).
    #[serde(skip)]
    pub placement: Vec<(String, String)>,
    /// The object exists already (read from a cluster, or a manifest with `metadata.uid`): it
    /// is judged as it runs, and the mutation is what its next pod template change adds.
    #[serde(skip)]
    pub existing: bool,
}

impl Checked {
    /// The findings with this outcome.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.findings
            .iter()
            .filter(|f| f.outcome == outcome)
            .count()
    }
}

/// Bad input: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

/// `Kind ns/name` as far as the object says.
fn describe(kind: &str, v: &Value) -> String {
    match (
        str_at(v, &["metadata", "namespace"]),
        str_at(v, &["metadata", "name"]),
    ) {
        (Some(ns), Some(n)) => format!("{kind} {ns}/{n}"),
        (None, Some(n)) => format!("{kind} {n}"),
        _ => kind.to_string(),
    }
}

/// Reads an object into its type; a type error names the source, the object and the field path.
fn typed<T: serde::de::DeserializeOwned>(
    source: &Source,
    kind: &str,
    v: Value,
) -> Result<T, BadInput> {
    let what = describe(kind, &v);
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // kubectl reads YAML 1.1: an unquoted yes/no/on/off is a boolean, 0755 an octal number.
        let hint = if inner.starts_with("invalid type: boolean")
            || ((inner.starts_with("invalid type: integer")
                || inner.starts_with("invalid type: floating point"))
                && inner.contains("expected a string"))
        {
            "; kubectl reads an unquoted yes, no, on, off, true, false or number as that type: quote the value"
        } else {
            ""
        };
        BadInput(format!("{source}: {what}: {path}: {inner}{hint}"))
    })
}

/// The outcome of a check run.
pub struct Run {
    pub checked: Vec<Checked>,
    /// The kinds of the other objects, with their counts (for the message on an input without
    /// StatefulSets).
    pub other_kinds: BTreeMap<String, usize>,
}

impl Run {
    /// The exit code: [`EXIT_NO_STATEFULSET`] (or 0 with `allow_empty`) when nothing was
    /// checked, [`EXIT_DENIED`] when a StatefulSet is denied, else [`EXIT_ALLOWED`].
    pub fn exit_code(&self, allow_empty: bool) -> i32 {
        if self.checked.is_empty() {
            if allow_empty {
                EXIT_ALLOWED
            } else {
                EXIT_NO_STATEFULSET
            }
        } else if self.checked.iter().all(|c| c.allowed) {
            EXIT_ALLOWED
        } else {
            EXIT_DENIED
        }
    }

    /// What the input held instead of StatefulSets, for the message on stderr.
    pub fn nothing_checked(&self) -> String {
        if self.other_kinds.is_empty() {
            "no apps/v1 StatefulSet in the input: it holds no object at all".to_string()
        } else {
            let kinds: Vec<String> = self
                .other_kinds
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            format!(
                "no apps/v1 StatefulSet in the input, only {}",
                kinds.join(", ")
            )
        }
    }
}

/// Mutates and validates every apps/v1 StatefulSet of the input; Services, StorageClasses and
/// PodDisruptionBudgets in it answer the look-ups. Input the API server would refuse is an error.
pub fn run<D: Into<Input>>(docs: Vec<D>, policy: &Policy) -> Result<Run, BadInput> {
    let mut lookups = StaticLookups::default();
    let mut sets = Vec::new();
    let mut other_kinds = BTreeMap::new();
    let mut numbered: BTreeMap<String, usize> = BTreeMap::new();
    for d in docs {
        let Input { mut source, value } = d.into();
        if let Source::File { file, document, .. } = &mut source {
            let n = numbered.entry(file.clone()).or_default();
            if *document == 0 {
                *n += 1;
                *document = *n;
            } else {
                *n = *document;
            }
        }
        let api = str_at(&value, &["apiVersion"]).unwrap_or("").to_string();
        let kind = str_at(&value, &["kind"]).unwrap_or("").to_string();
        match (api.as_str(), kind.as_str()) {
            ("apps/v1", "StatefulSet") => match crate::bounds::check_value(&value) {
                Ok(()) => {
                    let sts: StatefulSet = typed(&source, &kind, value)?;
                    sets.push((source, Ok(sts)));
                }
                // Not read into a type: only its name is kept.
                Err(why) => {
                    let mut sts = StatefulSet::default();
                    let name = str_at(&value, &["metadata", "name"]).map(str::to_string);
                    let ns = str_at(&value, &["metadata", "namespace"]).map(str::to_string);
                    sts.metadata.name = name;
                    sts.metadata.namespace = ns;
                    sets.push((source, Err((sts, why))));
                }
            },
            (api, "StatefulSet") => {
                return Err(BadInput(format!(
                    "{source}: {}: apiVersion {api}: the API server has not served StatefulSets in {api} since Kubernetes 1.16; use apps/v1 (and set spec.selector, which apps/v1 requires)",
                    describe(&kind, &value)
                )));
            }
            ("v1", "Service") => lookups
                .services
                .push(Arc::new(typed(&source, &kind, value)?)),
            ("storage.k8s.io/v1", "StorageClass") => lookups
                .classes
                .push(Arc::new(typed(&source, &kind, value)?)),
            ("policy/v1", "PodDisruptionBudget") => {
                lookups.pdbs.push(Arc::new(typed(&source, &kind, value)?))
            }
            (_, "") | ("", _) => {
                return Err(BadInput(format!(
                    "{source}: the object has no {}: every Kubernetes object needs apiVersion and kind",
                    if kind.is_empty() {
                        "kind"
                    } else {
                        "apiVersion"
                    }
                )));
            }
            _ => *other_kinds.entry(kind).or_insert(0) += 1,
        }
    }
    for (k, n) in [
        ("Service", lookups.services.len()),
        ("StorageClass", lookups.classes.len()),
        ("PodDisruptionBudget", lookups.pdbs.len()),
    ] {
        if n > 0 {
            other_kinds.insert(k.to_string(), n);
        }
    }
    let mut checked = Vec::new();
    for (source, sts) in sets {
        checked.push(match sts {
            Ok(sts) => check_object(source, &sts, policy, &lookups)?,
            Err((sts, why)) => past_bound(source, sts, why),
        });
    }
    Ok(Run {
        checked,
        other_kinds,
    })
}

/// [`check_object`] of an object whose source does not matter (tests).
pub fn check_one(
    sts: &StatefulSet,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Checked, BadInput> {
    let source = Source::File {
        file: "-".into(),
        document: 1,
        item: None,
        line: None,
    };
    check_object(source, sts, policy, lookups)
}

/// Mutation then validation of one StatefulSet, as the API server would chain the hooks at its
/// creation. An object that exists already (from a cluster, or a manifest with `metadata.uid`)
/// is judged as it is stored, as the API server judges a write that leaves its pod template
/// alone; its mutation is what adopting it adds, at its next pod template change (stsguard
/// causes no rollout by itself).
pub fn check_object(
    source: Source,
    sts: &StatefulSet,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Checked, BadInput> {
    // Checked before anything is copied: constant work whatever the object's size.
    if let Err(why) = crate::bounds::check_statefulset(sts) {
        let only_meta = StatefulSet {
            metadata: sts.metadata.clone(),
            ..Default::default()
        };
        return Ok(past_bound(source, only_meta, why));
    }
    let namespace = sts
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut sts = sts.clone();
    sts.metadata
        .namespace
        .get_or_insert_with(|| namespace.clone());
    let existing = matches!(source, Source::Cluster { .. }) || sts.metadata.uid.is_some();
    let m = mutate::mutate(&sts, policy);
    let patch = mutate::patch::statefulset(&sts, &m.object).map_err(|e| BadInput(e.to_string()))?;
    let found = validate::judge_object(
        if existing { &sts } else { &m.object },
        &namespace,
        policy,
        lookups,
    );
    let mut findings: Vec<Finding<Rule>> =
        Vec::with_capacity(found.violations.len() + m.report.notes.len() + found.warnings.len());
    findings.extend(found.violations.iter().cloned().map(Finding::from));
    findings.extend(m.report.notes.iter().map(|w| Finding {
        rule: Rule::Mutation(w.id),
        mode: Mode::Warn,
        outcome: Outcome::Warn,
        message: w.message.clone(),
    }));
    findings.extend(found.warnings.iter().cloned().map(Finding::from));
    // As the server words them: each names its object.
    let object = crate::text::object(
        "StatefulSet",
        &namespace,
        sts.metadata.name.as_deref().unwrap_or(""),
    );
    let warnings = (m.report.warnings.iter())
        .chain(&found.warning_lines())
        .map(|w| crate::text::warning_about(&object, w))
        .collect();
    Ok(Checked {
        source,
        kind: "StatefulSet",
        name: sts.metadata.name.clone().unwrap_or_default(),
        namespace,
        allowed: found.allowed(),
        findings,
        violations: found.violations,
        warnings,
        patch,
        placement: placement(&m.object),
        mutated: m.object,
        added: m.report.added,
        removed: m.report.removed,
        existing,
    })
}

/// A StatefulSet past a bound on work ([`crate::bounds`]): neither mutated nor judged by the
/// rules, and denied as the server denies it: one failing finding, [`Rule::Bound`].
fn past_bound(source: Source, sts: StatefulSet, why: crate::bounds::PastBound) -> Checked {
    let namespace = sts
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = sts.metadata.name.clone().unwrap_or_default();
    let finding = past_bound_finding(&why);
    let object = crate::text::object("StatefulSet", &namespace, &name);
    Checked {
        source,
        kind: "StatefulSet",
        name,
        namespace,
        allowed: false,
        warnings: vec![crate::text::warning_about(
            &object,
            &format!("[{}] {}", crate::bounds::RULE, finding.message),
        )],
        findings: vec![finding],
        patch: json_patch::Patch(Vec::new()),
        mutated: sts,
        violations: Vec::new(),
        added: Vec::new(),
        removed: Vec::new(),
        placement: Vec::new(),
        existing: false,
    }
}

/// Per role, the ordinals and where its pods will be placed.
pub fn placement(sts: &StatefulSet) -> Vec<(String, String)> {
    let Some(Ok(spec)) = crate::k8s::roles::spec_of(sts) else {
        return Vec::new();
    };
    let anns = sts.metadata.annotations.clone().unwrap_or_default();
    let replicas = sts
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0) as u32;
    spec.roles()
        .into_iter()
        .map(|role| {
            // Listed up to a bound: `replicas` may be anything.
            const SHOWN: u32 = 64;
            let mut ords: Vec<String> = (0..replicas.min(SHOWN))
                .filter(|o| spec.role_for(*o) == role)
                .map(|o| o.to_string())
                .collect();
            if replicas > SHOWN
                && (spec.role_for(SHOWN) == role || spec.role_for(replicas - 1) == role)
            {
                ords.push(format!("… (of {replicas})"));
            }
            let ords = if ords.is_empty() {
                "no pod at this replica count".to_string()
            } else {
                format!("ordinals {}", ords.join(","))
            };
            let place = match role_node_selector(&anns, role) {
                None => "any node".to_string(),
                Some(Ok(pairs)) => {
                    let p: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("nodes with {}", p.join(","))
                }
                Some(Err(e)) => format!("invalid node selector: {e}"),
            };
            (role.to_string(), format!("{ords}: {place}"))
        })
        .collect()
}
