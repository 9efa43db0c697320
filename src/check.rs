//! `stsguard check`: the server's mutation and validation, offline, over manifest files.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use serde::Serialize;

use crate::lookups::StaticLookups;
use crate::mutate::{self, pod::role_node_selector};
use crate::policy::Policy;
use crate::validate::{self, Finding, Review, Subject};

/// The result for one StatefulSet (the `--output json` element).
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    pub name: String,
    pub namespace: String,
    pub allowed: bool,
    pub violations: Vec<Finding>,
    pub warnings: Vec<String>,
    pub patch: json_patch::Patch,
    pub mutated: StatefulSet,
    #[serde(skip)]
    pub added: Vec<String>,
    /// Per role, where its pods go: (role, ordinals, node selector text).
    #[serde(skip)]
    pub placement: Vec<(String, String)>,
}

/// Bad input: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// Reads documents (YAML multi-doc or JSON; `-` is stdin). Lists are flattened.
pub fn read_documents(files: &[String]) -> Result<Vec<(String, serde_json::Value)>, BadInput> {
    let mut docs = Vec::new();
    for f in files {
        let text = if f == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| BadInput(format!("stdin: {e}")))?;
            s
        } else {
            std::fs::read_to_string(Path::new(f)).map_err(|e| BadInput(format!("{f}: {e}")))?
        };
        for v in yaml_documents(&text).map_err(|e| BadInput(format!("{f}: {e}")))? {
            flatten(v, f, &mut docs);
        }
    }
    Ok(docs)
}

/// Parses YAML (multi-document) or JSON text into JSON values, reading file modes the way
/// kubectl's YAML 1.1 parser does: an unquoted `defaultMode: 0755` is octal (493), where a
/// YAML 1.2 parser would keep the string "0755".
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut v: serde_json::Value =
            serde::Deserialize::deserialize(doc).map_err(|e| format!("document {}: {e}", i + 1))?;
        octal_modes(&mut v);
        out.push(v);
    }
    Ok(out)
}

fn octal_modes(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "defaultMode" || k == "mode" {
                    if let Some(n) = x
                        .as_str()
                        .filter(|s| s.len() > 1 && s.starts_with('0'))
                        .and_then(|s| i64::from_str_radix(s, 8).ok())
                    {
                        *x = n.into();
                        continue;
                    }
                }
                octal_modes(x);
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(octal_modes),
        _ => {}
    }
}

fn flatten(v: serde_json::Value, origin: &str, out: &mut Vec<(String, serde_json::Value)>) {
    if v.is_null() {
        return;
    }
    if v.get("kind")
        .and_then(|k| k.as_str())
        .is_some_and(|k| k.ends_with("List"))
    {
        if let Some(items) = v.get("items").and_then(|i| i.as_array()) {
            for item in items {
                flatten(item.clone(), origin, out);
            }
            return;
        }
    }
    out.push((origin.to_string(), v));
}

fn kind_of(v: &serde_json::Value) -> (&str, &str) {
    (
        v.get("apiVersion").and_then(|x| x.as_str()).unwrap_or(""),
        v.get("kind").and_then(|x| x.as_str()).unwrap_or(""),
    )
}

/// The outcome of a check run.
pub struct Run {
    pub checked: Vec<Checked>,
    /// Documents passed over, with the reason, for the report.
    pub skipped: Vec<String>,
}

fn typed<T: serde::de::DeserializeOwned>(
    origin: &str,
    v: serde_json::Value,
) -> Result<T, BadInput> {
    serde_json::from_value(v).map_err(|e| BadInput(format!("{origin}: {e}")))
}

/// Mutates and validates every apps/v1 StatefulSet of the documents.
pub fn run(docs: Vec<(String, serde_json::Value)>, policy: &Policy) -> Result<Run, BadInput> {
    let mut lookups = StaticLookups::default();
    let mut sets = Vec::new();
    let mut skipped = Vec::new();
    for (origin, v) in docs {
        match kind_of(&v) {
            ("apps/v1", "StatefulSet") => {
                sets.push((origin.clone(), typed::<StatefulSet>(&origin, v)?))
            }
            (api, "StatefulSet") => skipped.push(format!(
                "{origin}: StatefulSet {api} is not served since Kubernetes 1.16; use apps/v1"
            )),
            ("v1", "Service") => lookups.services.push(Arc::new(typed(&origin, v)?)),
            ("storage.k8s.io/v1", "StorageClass") => {
                lookups.classes.push(Arc::new(typed(&origin, v)?))
            }
            ("policy/v1", "PodDisruptionBudget") => lookups.pdbs.push(Arc::new(typed(&origin, v)?)),
            (_, "") => return Err(BadInput(format!("{origin}: a document has no kind"))),
            _ => {}
        }
    }
    let mut checked = Vec::new();
    for (_, sts) in sets {
        checked.push(check_one(&sts, policy, &lookups)?);
    }
    Ok(Run { checked, skipped })
}

/// Mutation then validation of one StatefulSet, as the API server would chain the hooks.
pub fn check_one(
    sts: &StatefulSet,
    policy: &Policy,
    lookups: &dyn crate::validate::Lookups,
) -> Result<Checked, BadInput> {
    let namespace = sts
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut sts = sts.clone();
    sts.metadata
        .namespace
        .get_or_insert_with(|| namespace.clone());
    let m = mutate::mutate(&sts, policy);
    let patch = mutate::patch_for(&sts, &m.object).map_err(|e| BadInput(e.to_string()))?;
    let findings = validate::validate(
        &Review {
            namespace: &namespace,
            subject: Subject::Write {
                object: &m.object,
                old: None,
            },
        },
        policy,
        lookups,
    );
    let mut warnings = m.report.warnings.clone();
    warnings.extend(findings.warning_lines());
    Ok(Checked {
        name: sts.metadata.name.clone().unwrap_or_default(),
        namespace,
        allowed: findings.allowed(),
        violations: findings.violations,
        warnings,
        patch,
        placement: placement(&m.object),
        mutated: m.object,
        added: m.report.added,
    })
}

/// Per role, the ordinals and where its pods will be placed.
pub fn placement(sts: &StatefulSet) -> Vec<(String, String)> {
    let Some(Ok(spec)) = mutate::roles::spec_of(sts) else {
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

/// The human report.
pub fn report(run: &Run) -> String {
    let mut s = String::new();
    for c in &run.checked {
        let verdict = if c.allowed { "allowed" } else { "DENIED" };
        s.push_str(&format!(
            "StatefulSet {}/{}: {verdict}\n",
            c.namespace, c.name
        ));
        if c.added.is_empty() {
            s.push_str("  mutation: nothing to add\n");
        } else {
            s.push_str(&format!(
                "  mutation ({} patch operations):\n",
                c.patch.0.len()
            ));
            for a in &c.added {
                s.push_str(&format!("    + {a}\n"));
            }
        }
        if !c.placement.is_empty() {
            s.push_str("  placement:\n");
            for (role, p) in &c.placement {
                s.push_str(&format!("    {role}: {p}\n"));
            }
        }
        for v in &c.violations {
            s.push_str(&format!("  DENY [{}] {}\n", v.rule, v.message));
        }
        for w in &c.warnings {
            s.push_str(&format!("  warn {w}\n"));
        }
    }
    for k in &run.skipped {
        s.push_str(&format!("skipped {k}\n"));
    }
    if run.checked.is_empty() {
        s.push_str("no apps/v1 StatefulSet in the input\n");
    }
    s
}
