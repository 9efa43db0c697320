//! Identity environment (docs/mutation.md): identity environment in every container and init container.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector};

use super::added::Added;
use super::{Report, WarningId};
use crate::k8s::keys;
use crate::policy::Policy;

fn field_ref(path: &str) -> Option<EnvVarSource> {
    Some(EnvVarSource {
        field_ref: Some(ObjectFieldSelector {
            field_path: path.to_string(),
            api_version: None,
        }),
        ..Default::default()
    })
}

fn var(name: &str, value: String) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value),
        value_from: None,
    }
}

/// stsguard's own name for the pod's name, defined just before an FQDN it injects when the
/// container's `POD_NAME` is not the pod's name at that point (the user's value is kept); with
/// `_2`, `_3`, … appended when the container uses the name for something else.
pub const PRIVATE_POD_NAME: &str = "STSGUARD_POD_NAME";
/// The same for the namespace, when the container's `POD_NAMESPACE` is not the pod's.
pub const PRIVATE_POD_NAMESPACE: &str = "STSGUARD_POD_NAMESPACE";

const NAME_FIELD: &str = "metadata.name";
const NAMESPACE_FIELD: &str = "metadata.namespace";

/// A piece of an injected FQDN.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    /// A reference to a variable holding the pod's name.
    PodName,
    /// A reference to a variable holding the pod's namespace.
    PodNamespace,
}

/// An injected variable whose value references the pod's name or namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fqdn {
    name: &'static str,
    parts: Vec<Part>,
}

impl Fqdn {
    /// The value, with `name_var` and `ns_var` as the variables referenced.
    fn value(&self, name_var: &str, ns_var: &str) -> String {
        let mut out = String::new();
        for p in &self.parts {
            let var = match p {
                Part::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                Part::PodName => name_var,
                Part::PodNamespace => ns_var,
            };
            out.push_str("$(");
            out.push_str(var);
            out.push(')');
        }
        out
    }
    fn needs(&self, part: &Part) -> bool {
        self.parts.contains(part)
    }
}

/// The variables to inject, in order: those with a fixed definition (field references and
/// literals), then the FQDNs built on the pod's name and namespace.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    fixed: Vec<EnvVar>,
    fqdns: Vec<Fqdn>,
}

impl Identity {
    pub fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.fqdns.is_empty()
    }
}

/// Reads the roles' `STS_PRIMARY_FQDN` template (`<name>-<N>.<service>.$(POD_NAMESPACE).svc.<domain>`).
fn fqdn_parts(template: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find("$(POD_NAMESPACE)") {
        if i > 0 {
            parts.push(Part::Text(rest[..i].to_string()));
        }
        parts.push(Part::PodNamespace);
        rest = &rest[i + "$(POD_NAMESPACE)".len()..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    parts
}

/// The variables to inject. `primary_fqdn` is set when roles are on.
pub fn identity_vars(
    sts: &StatefulSet,
    policy: &Policy,
    ordinal_env: bool,
    primary_fqdn: Option<String>,
    report: &mut Report,
) -> Identity {
    let mut out = Identity::default();
    let name = sts.metadata.name.clone().unwrap_or_default();
    let service = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let want_ns = ordinal_env || primary_fqdn.is_some();
    if ordinal_env {
        out.fixed.push(field_var("POD_NAME", NAME_FIELD));
    }
    if want_ns {
        out.fixed.push(field_var("POD_NAMESPACE", NAMESPACE_FIELD));
    }
    if ordinal_env {
        out.fixed.push(EnvVar {
            name: "POD_ORDINAL".into(),
            value: None,
            value_from: field_ref(&format!("metadata.labels['{}']", keys::POD_INDEX)),
        });
        if !name.is_empty() {
            out.fixed.push(var("STATEFULSET_NAME", name));
        }
        match &service {
            Some(svc) => {
                out.fixed.push(var("STATEFULSET_SERVICE", svc.clone()));
                out.fqdns.push(Fqdn {
                    name: "POD_FQDN",
                    parts: vec![
                        Part::PodName,
                        Part::Text(format!(".{svc}.")),
                        Part::PodNamespace,
                        Part::Text(format!(".svc.{}", policy.cluster_domain)),
                    ],
                });
            }
            None => report.warn(
                WarningId::NoServiceName,
                "spec.serviceName is empty: STATEFULSET_SERVICE and POD_FQDN not injected",
            ),
        }
    }
    if let Some(fqdn) = primary_fqdn {
        out.fqdns.push(Fqdn {
            name: "STS_PRIMARY_FQDN",
            parts: fqdn_parts(&fqdn),
        });
    }
    out
}

fn field_var(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: field_ref(path),
    }
}

/// Does `name`, as bound after `defs` (Kubernetes expands `$(VAR)` from the variables defined
/// before it in the list, a later definition of the same name replacing an earlier one), hold
/// the pod's field `path`?
fn holds<'a>(defs: impl DoubleEndedIterator<Item = &'a EnvVar>, name: &str, path: &str) -> bool {
    defs.rev()
        .find(|e| e.name == name)
        .is_some_and(|e| same_var(e, &field_var(name, path)))
}

/// Does `value`, after the variables `env`, expand to the FQDN `f`? It must be `f`'s text with
/// references to variables that hold the pod's name and namespace there.
fn resolves(f: &Fqdn, value: &str, env: &[EnvVar]) -> bool {
    let mut rest = value;
    for part in &f.parts {
        let path = match part {
            Part::Text(t) => match rest.strip_prefix(t.as_str()) {
                Some(r) => {
                    rest = r;
                    continue;
                }
                None => return false,
            },
            Part::PodName => NAME_FIELD,
            Part::PodNamespace => NAMESPACE_FIELD,
        };
        let Some((name, r)) = rest.strip_prefix("$(").and_then(|r| r.split_once(')')) else {
            return false;
        };
        if !holds(env.iter(), name, path) {
            return false;
        }
        rest = r;
    }
    rest.is_empty()
}

/// stsguard's own name for a building block: `base`, else `base_2`, `base_3`, … the first
/// name the container does not define (`taken`).
fn private_name(base: &str, taken: impl Fn(&str) -> bool) -> String {
    std::iter::once(base.to_string())
        .chain((2..).map(|i| format!("{base}_{i}")))
        .find(|n| !taken(n))
        .unwrap_or_else(|| base.to_string())
}

/// Does `value` reference `$(name)`? One pass over `value`.
fn references(value: &str, name: &str) -> bool {
    let mut rest = value;
    while let Some(i) = rest.find("$(") {
        rest = &rest[i + 2..];
        // The reference is `name` followed by `)`; otherwise go on from here (not from the next
        // `)`, which may be far away: every byte is looked at a bounded number of times).
        if rest.starts_with(name) && rest[name.len()..].starts_with(')') {
            return true;
        }
    }
    false
}

/// Injects the identity into one container. The missing variables go, in order, just before
/// the first user variable that references one of them (so `$(POD_NAME)` in a user value
/// resolves), else at the end. A name the container already defines differently is left alone,
/// with a warning. An FQDN references the pod's name and namespace through `POD_NAME` and
/// `POD_NAMESPACE` when those hold the pod's fields where it is inserted, else through
/// stsguard's own [`PRIVATE_POD_NAME`] / [`PRIVATE_POD_NAMESPACE`], defined just before it: what
/// stsguard injects never expands through a user's value, and every `$(VAR)` in it refers to a
/// variable defined earlier in the list. Returns the names it added.
pub fn inject(
    container: &mut Container,
    id: &Identity,
    what: &str,
    report: &mut Report,
) -> Vec<String> {
    let existing = container.env.as_deref().unwrap_or_default();
    let cname = container.name.clone();
    let kept = |report: &mut Report, name: &str| {
        report.warn(
            WarningId::EnvKept,
            format!("{what} \"{cname}\" defines {name} already: kept the user's value"),
        )
    };
    let mut block = Vec::new();
    for v in &id.fixed {
        match existing.iter().find(|e| e.name == v.name) {
            Some(e) if same_var(e, v) => {}
            Some(_) => kept(report, &v.name),
            None => block.push(v.clone()),
        }
    }
    let missing_fqdns: Vec<&Fqdn> = id
        .fqdns
        .iter()
        .filter(|f| !existing.iter().any(|e| e.name == f.name))
        .collect();
    let mut names_added = Vec::new();
    if !block.is_empty() || !missing_fqdns.is_empty() {
        let at = insertion_point(existing, &block, &missing_fqdns);
        add_fqdns(existing, at, &mut block, &missing_fqdns);
        if !block.is_empty() {
            let n = block.len();
            names_added = block.iter().map(|e| e.name.clone()).collect();
            container
                .env
                .get_or_insert_with(Vec::new)
                .splice(at..at, block);
            report.added(format!("{n} identity variables in {what} \"{cname}\""));
        }
    }
    // A definition of an FQDN's name the container has: quiet when it expands to the FQDN where
    // it is (stsguard's own from an earlier pass), else kept with a warning.
    let env = container.env.as_deref().unwrap_or_default();
    for f in &id.fqdns {
        if let Some(q) = env.iter().position(|e| e.name == f.name) {
            let e = &env[q];
            let fine = e.value_from.is_none()
                && e.value
                    .as_deref()
                    .is_some_and(|v| resolves(f, v, &env[..q]));
            if !fine {
                kept(report, f.name);
            }
        }
    }
    names_added
}

/// Where the identity block goes: just before the first user variable that references one of
/// its names (so that `$(POD_FQDN)` there resolves), else last.
fn insertion_point(existing: &[EnvVar], block: &[EnvVar], fqdns: &[&Fqdn]) -> usize {
    let names: Vec<&str> = block
        .iter()
        .map(|v| v.name.as_str())
        .chain(fqdns.iter().map(|f| f.name))
        .collect();
    existing
        .iter()
        .position(|e| {
            e.value
                .as_deref()
                .is_some_and(|val| names.iter().any(|n| references(val, n)))
        })
        .unwrap_or(existing.len())
}

/// The FQDN variables appended to `block`, each built on a pod-name and pod-namespace variable
/// that holds the pod's own at `at`: the public one when it does, else stsguard's private one
/// (added to the block, renamed past any name the container uses).
fn add_fqdns(existing: &[EnvVar], at: usize, block: &mut Vec<EnvVar>, fqdns: &[&Fqdn]) {
    // Each name's last definition before the insertion point, and every name defined: read
    // once, so that the work stays linear in the list (a list may define many names).
    let last_before: HashMap<&str, &EnvVar> = existing[..at]
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let all_names: HashSet<&str> = existing.iter().map(|e| e.name.as_str()).collect();
    for f in fqdns {
        let pick = |block: &mut Vec<EnvVar>, public: &str, private: &str, path: &str| {
            // The binding at the end of the block (a handful of variables), else before it.
            let bound = |n: &str, block: &Vec<EnvVar>| {
                let def = block
                    .iter()
                    .rev()
                    .find(|e| e.name == n)
                    .or_else(|| last_before.get(n).copied());
                def.is_some_and(|e| same_var(e, &field_var(n, path)))
            };
            if bound(public, block) {
                return public.to_string();
            }
            let name = private_name(private, |n| {
                !bound(n, block) && (all_names.contains(n) || block.iter().any(|e| e.name == n))
            });
            if !bound(&name, block) {
                block.push(field_var(&name, path));
            }
            name
        };
        let name_var = if f.needs(&Part::PodName) {
            pick(block, "POD_NAME", PRIVATE_POD_NAME, NAME_FIELD)
        } else {
            String::new()
        };
        let ns_var = if f.needs(&Part::PodNamespace) {
            pick(
                block,
                "POD_NAMESPACE",
                PRIVATE_POD_NAMESPACE,
                NAMESPACE_FIELD,
            )
        } else {
            String::new()
        };
        block.push(var(f.name, f.value(&name_var, &ns_var)));
    }
}

/// Is `name` one of stsguard's private names ([`PRIVATE_POD_NAME`], [`PRIVATE_POD_NAMESPACE`],
/// with `_2`, `_3`, … appended)?
fn is_private(name: &str) -> bool {
    [PRIVATE_POD_NAME, PRIVATE_POD_NAMESPACE]
        .iter()
        .any(|base| {
            name == *base
                || name
                    .strip_prefix(base)
                    .and_then(|r| r.strip_prefix('_'))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Before [`inject`]: takes out of `container` the variables stsguard added there (`recorded`)
/// that it would not add now: not wanted any more (identity variables off, roles gone), or no
/// longer what it writes (`STS_PRIMARY_FQDN` after the roles moved the primary), then its
/// private names that nothing references any more. What the user defined is never touched.
/// Returns the names removed.
pub fn take_out(
    container: &mut Container,
    id: &Identity,
    recorded: &BTreeSet<String>,
) -> Vec<String> {
    let Some(env) = container.env.as_mut() else {
        return Vec::new();
    };
    let stale = |i: usize, e: &EnvVar, env: &[EnvVar]| -> bool {
        if !recorded.contains(&e.name) || is_private(&e.name) {
            return false;
        }
        if let Some(v) = id.fixed.iter().find(|v| v.name == e.name) {
            return !same_var(e, v);
        }
        if let Some(f) = id.fqdns.iter().find(|f| f.name == e.name) {
            return e.value_from.is_some()
                || !e
                    .value
                    .as_deref()
                    .is_some_and(|v| resolves(f, v, &env[..i]));
        }
        true
    };
    let mut removed = Vec::new();
    let mut i = 0;
    while i < env.len() {
        if stale(i, &env[i], env) {
            removed.push(env.remove(i).name);
        } else {
            i += 1;
        }
    }
    // stsguard's private names that no remaining value references.
    let mut i = 0;
    while i < env.len() {
        let e = &env[i];
        let referenced = || {
            env.iter()
                .filter_map(|o| o.value.as_deref())
                .any(|v| references(v, &e.name))
        };
        if recorded.contains(&e.name) && is_private(&e.name) && !referenced() {
            removed.push(env.remove(i).name);
        } else {
            i += 1;
        }
    }
    removed
}

/// Equal once the API server's defaulting (`fieldRef.apiVersion: v1`) is accounted for.
pub fn same_var(a: &EnvVar, b: &EnvVar) -> bool {
    fn norm(v: &EnvVar) -> EnvVar {
        let mut v = v.clone();
        if let Some(f) = v.value_from.as_mut().and_then(|s| s.field_ref.as_mut()) {
            f.api_version.get_or_insert_with(|| "v1".to_string());
        }
        if v.value.as_deref() == Some("") {
            v.value = None;
        }
        v
    }
    a == b || norm(a) == norm(b)
}

/// Brings every container's identity variables to `vars`: what stsguard added and would not
/// add now is taken out ([`take_out`]), what is missing injected ([`inject`]); `added` records
/// what stsguard's variables are afterwards.
pub fn apply(sts: &mut StatefulSet, vars: &Identity, added: &mut Added, report: &mut Report) {
    let Some(pod) = sts.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    let mut record = BTreeMap::new();
    let inits = pod.init_containers.iter_mut().flatten();
    let all = inits
        .map(|c| (c, "init container"))
        .chain(pod.containers.iter_mut().map(|c| (c, "container")));
    for (c, what) in all {
        let recorded = added.env.remove(&c.name).unwrap_or_default();
        let removed = take_out(c, vars, &recorded);
        if !removed.is_empty() {
            report.removed(format!(
                "{} identity variables from {what} \"{}\"",
                removed.len(),
                c.name
            ));
        }
        let mut ours: BTreeSet<String> = recorded
            .into_iter()
            .filter(|n| !removed.contains(n) && c.env.iter().flatten().any(|e| &e.name == n))
            .collect();
        if !vars.is_empty() {
            ours.extend(inject(c, vars, what, report));
        }
        if !ours.is_empty() {
            record.insert(c.name.clone(), ours);
        }
    }
    // Containers gone from the template take their entries with them.
    added.env = record;
}

#[cfg(test)]
mod tests {
    use super::references;

    #[test]
    fn finds_references() {
        assert!(references("http://$(POD_NAME):80", "POD_NAME"));
        assert!(references("$(A)$(POD_FQDN)", "POD_FQDN"));
        assert!(!references("$(POD_NAMESPACE)", "POD_NAME"));
        assert!(!references("$(POD_NAME", "POD_NAME"));
        assert!(!references("$(POD_NAMEX)", "POD_NAME"));
        assert!(references("$($(POD_NAME)", "POD_NAME"));
    }
}
