//! DESIGN.md Mutation 2: identity environment in every container and init container.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector};

use super::Report;
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

/// The block of variables to inject, in order. `primary_fqdn` is set when roles are on.
pub fn identity_vars(
    sts: &StatefulSet,
    policy: &Policy,
    ordinal_env: bool,
    primary_fqdn: Option<String>,
    report: &mut Report,
) -> Vec<EnvVar> {
    let mut out = Vec::new();
    let name = sts.metadata.name.clone().unwrap_or_default();
    let service = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let want_ns = ordinal_env || primary_fqdn.is_some();
    if ordinal_env {
        out.push(EnvVar {
            name: "POD_NAME".into(),
            value: None,
            value_from: field_ref("metadata.name"),
        });
    }
    if want_ns {
        out.push(EnvVar {
            name: "POD_NAMESPACE".into(),
            value: None,
            value_from: field_ref("metadata.namespace"),
        });
    }
    if ordinal_env {
        out.push(EnvVar {
            name: "POD_ORDINAL".into(),
            value: None,
            value_from: field_ref(&format!("metadata.labels['{}']", keys::POD_INDEX)),
        });
        if !name.is_empty() {
            out.push(var("STATEFULSET_NAME", name));
        }
        match &service {
            Some(svc) => {
                out.push(var("STATEFULSET_SERVICE", svc.clone()));
                out.push(var(
                    "POD_FQDN",
                    format!(
                        "$(POD_NAME).{svc}.$(POD_NAMESPACE).svc.{}",
                        policy.cluster_domain
                    ),
                ));
            }
            None => report
                .warn("spec.serviceName is empty: STATEFULSET_SERVICE and POD_FQDN not injected"),
        }
    }
    if let Some(fqdn) = primary_fqdn {
        out.push(var("STS_PRIMARY_FQDN", fqdn));
    }
    out
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

/// Injects `vars` into one container: the missing ones go, in order, just before the first user
/// variable that references any of them (so `$(POD_NAME)` in a user value resolves), else at the
/// end. A name the container already defines differently is left alone, with a warning.
pub fn inject(container: &mut Container, vars: &[EnvVar], what: &str, report: &mut Report) {
    let existing = container.env.as_deref().unwrap_or_default();
    let mut missing = Vec::new();
    for v in vars {
        match existing.iter().find(|e| e.name == v.name) {
            Some(e) if same_var(e, v) => {}
            Some(_) => report.warn(format!(
                "{what} \"{}\" defines {} already: kept the user's value",
                container.name, v.name
            )),
            None => missing.push(v.clone()),
        }
    }
    if missing.is_empty() {
        return;
    }
    let env = container.env.get_or_insert_with(Vec::new);
    let at = env
        .iter()
        .position(|e| {
            e.value
                .as_deref()
                .is_some_and(|val| vars.iter().any(|v| references(val, &v.name)))
        })
        .unwrap_or(env.len());
    let n = missing.len();
    env.splice(at..at, missing);
    report.added(format!(
        "{n} identity variables in {what} \"{}\"",
        container.name
    ));
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

pub fn apply(sts: &mut StatefulSet, vars: &[EnvVar], report: &mut Report) {
    if vars.is_empty() {
        return;
    }
    let Some(pod) = sts.spec.as_mut().and_then(|s| s.template.spec.as_mut()) else {
        return;
    };
    for c in pod.init_containers.iter_mut().flatten() {
        inject(c, vars, "init container", report);
    }
    for c in pod.containers.iter_mut() {
        inject(c, vars, "container", report);
    }
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
