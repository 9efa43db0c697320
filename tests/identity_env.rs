//! The identity environment resolves to the pod's real identity, whatever the user's env list:
//! generated lists (the user's own definitions of the same names, references to them in every
//! order, `$$` escapes, stsguard's private names) go through the mutation, then through a
//! simulation of Kubernetes' expansion (a `$(VAR)` expands to the value of a variable defined
//! earlier in the list, `$$` is a `$`, anything unresolved stays as written). `POD_FQDN` and
//! `STS_PRIMARY_FQDN`, when stsguard injects them, must expand to the real names, every
//! reference in what stsguard injects must name a variable defined before it, and mutating the
//! result again must change nothing. 1,000 cases (PROPTEST_CASES overrides; CI runs 10,000).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector};
use proptest::prelude::*;
use stsguard::mutate::mutate;
use stsguard::policy::Policy;

const NAMES: &[&str] = &[
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_ORDINAL",
    "STATEFULSET_NAME",
    "STATEFULSET_SERVICE",
    "POD_FQDN",
    "STS_PRIMARY_FQDN",
    "STSGUARD_POD_NAME",
    "STSGUARD_POD_NAMESPACE",
    "A",
    "URL",
];

const VALUES: &[&str] = &[
    "tenant-a",
    "x",
    "",
    "$(POD_NAMESPACE)",
    "$(POD_NAME)",
    "$(POD_NAME)-$(A)",
    "http://$(POD_FQDN):2380",
    "$$(POD_NAME)",
    "$(STS_PRIMARY_FQDN)",
    "$(STSGUARD_POD_NAME)",
    "$(UNDEFINED)",
    "$(POD_NAME",
];

const FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "metadata.labels['apps.kubernetes.io/pod-index']",
];

fn env_var() -> impl Strategy<Value = EnvVar> {
    (
        prop::sample::select(NAMES),
        prop::option::of(prop::sample::select(VALUES)),
        prop::sample::select(FIELDS),
        prop::option::of(Just("v1")),
    )
        .prop_map(|(name, value, field, api)| match value {
            Some(v) => EnvVar {
                name: name.into(),
                value: Some(v.into()),
                value_from: None,
            },
            None => EnvVar {
                name: name.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: field.into(),
                        api_version: api.map(String::from),
                    }),
                    ..Default::default()
                }),
            },
        })
}

/// A container's list, possibly with the same name twice (the API server accepts it).
fn env_list() -> impl Strategy<Value = Option<Vec<EnvVar>>> {
    prop::option::of(prop::collection::vec(env_var(), 0..7))
}

/// The pod Kubernetes would create for ordinal `ordinal`.
struct Pod {
    name: String,
    namespace: String,
    ordinal: u32,
}

impl Pod {
    fn field(&self, path: &str) -> String {
        match path {
            "metadata.name" => self.name.clone(),
            "metadata.namespace" => self.namespace.clone(),
            "metadata.labels['apps.kubernetes.io/pod-index']" => self.ordinal.to_string(),
            _ => "node-1".into(),
        }
    }
}

/// Kubernetes' `$(VAR)` expansion (kubelet, third_party/forked/golang/expansion): `$$` is `$`,
/// `$(NAME)` is the value of NAME if defined, else stays as written; a `$` before anything else
/// stays.
fn expand(input: &str, defined: &BTreeMap<String, String>) -> String {
    let b = input.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let mut lit = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            match b[i + 1] {
                b'$' => {
                    out.push_str(&input[lit..i]);
                    out.push('$');
                    i += 2;
                    lit = i;
                    continue;
                }
                b'(' => {
                    if let Some(close) = input[i + 2..].find(')') {
                        out.push_str(&input[lit..i]);
                        let name = &input[i + 2..i + 2 + close];
                        match defined.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&input[i..i + 3 + close]),
                        }
                        i += 3 + close;
                        lit = i;
                        continue;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push_str(&input[lit..]);
    out
}

/// The container's environment as the kubelet builds it: each variable in order, its value
/// expanded over the ones before it.
fn environment(env: &[EnvVar], pod: &Pod) -> BTreeMap<String, String> {
    let mut defined = BTreeMap::new();
    for e in env {
        let v = match (&e.value, &e.value_from) {
            (Some(v), _) if !v.is_empty() => expand(v, &defined),
            (_, Some(src)) => src
                .field_ref
                .as_ref()
                .map(|f| pod.field(&f.field_path))
                .unwrap_or_default(),
            _ => String::new(),
        };
        defined.insert(e.name.clone(), v);
    }
    defined
}

/// The `$(NAME)` references of a value (after `$$` escapes).
fn references(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            rest = r;
        } else if let Some(r) = after.strip_prefix('(') {
            match r.find(')') {
                Some(c) => {
                    out.push(r[..c].to_string());
                    rest = &r[c + 1..];
                }
                None => break,
            }
        } else {
            rest = after;
        }
    }
    out
}

fn statefulset(app: Option<Vec<EnvVar>>, init: Option<Vec<EnvVar>>, roles: bool) -> StatefulSet {
    let mut v = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "real-ns"},
        "spec": {
            "replicas": 3,
            "serviceName": "db-hl",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "app", "image": "db"}]}
            }
        }
    });
    if roles {
        v["metadata"]["annotations"] =
            serde_json::json!({"stsguard.io/roles": "primary=0,replica=*"});
    }
    let mut sts: StatefulSet = serde_json::from_value(v).unwrap_or_default();
    if let Some(pod) = sts.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        pod.containers[0].env = app;
        if init.is_some() {
            pod.init_containers = Some(vec![Container {
                name: "setup".into(),
                image: Some("busybox".into()),
                env: init,
                ..Default::default()
            }]);
        }
    }
    sts
}

fn user_defines(original: Option<&Container>, name: &str) -> bool {
    original
        .and_then(|c| c.env.as_ref())
        .is_some_and(|env| env.iter().any(|e| e.name == name))
}

proptest! {
    // PROPTEST_CASES overrides this; CI sets 10000.
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn injected_fqdns_expand_to_the_real_names(
        app in env_list(),
        init in env_list(),
        roles in any::<bool>(),
        ordinal in 0u32..3,
    ) {
        let policy = Policy::default();
        let sts = statefulset(app, init, roles);
        let m = mutate(&sts, &policy);
        let pod = Pod { name: format!("db-{ordinal}"), namespace: "real-ns".into(), ordinal };
        let fqdn = format!("db-{ordinal}.db-hl.real-ns.svc.cluster.local");
        let primary = "db-0.db-hl.real-ns.svc.cluster.local";
        let before = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let after = m.object.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let (Some(before), Some(after)) = (before, after) else {
            return Err(TestCaseError::fail("no pod spec"));
        };
        let originals: Vec<&Container> = before.init_containers.iter().flatten().chain(&before.containers).collect();
        for c in after.init_containers.iter().flatten().chain(&after.containers) {
            let original = originals.iter().find(|o| o.name == c.name).copied();
            let env = c.env.clone().unwrap_or_default();
            let defined = environment(&env, &pod);
            if !user_defines(original, "POD_FQDN") {
                prop_assert_eq!(defined.get("POD_FQDN"), Some(&fqdn), "container {}: {:?}", c.name, env);
            }
            if roles && !user_defines(original, "STS_PRIMARY_FQDN") {
                prop_assert_eq!(defined.get("STS_PRIMARY_FQDN").map(String::as_str), Some(primary), "container {}: {:?}", c.name, env);
            }
            // Every reference in what stsguard injected names a variable defined before it.
            let theirs = original.and_then(|o| o.env.clone()).unwrap_or_default();
            for (i, e) in env.iter().enumerate() {
                if theirs.contains(e) {
                    continue;
                }
                for r in references(e.value.as_deref().unwrap_or("")) {
                    prop_assert!(env[..i].iter().any(|d| d.name == r), "{} references {} before its definition: {:?}", e.name, r, env);
                }
            }
        }
        // Idempotent: the result mutated again is unchanged.
        let again = mutate(&m.object, &policy);
        let second = json_patch::diff(
            &serde_json::to_value(&m.object).map_err(|e| TestCaseError::fail(e.to_string()))?,
            &serde_json::to_value(&again.object).map_err(|e| TestCaseError::fail(e.to_string()))?,
        );
        prop_assert!(second.0.is_empty(), "second patch: {:?}", second);
    }
}

/// The cases of the report that found it: a user's `POD_NAMESPACE=tenant-a` is kept, and the
/// FQDN still names the pod's real namespace; a user variable referencing `$(POD_NAMESPACE)`
/// before the user's own `POD_NAME` no longer leaves `$(POD_NAME)` unexpanded.
#[test]
fn a_user_namespace_or_a_late_pod_name_does_not_bend_the_fqdn() {
    let var = |n: &str, v: &str| EnvVar {
        name: n.into(),
        value: Some(v.into()),
        value_from: None,
    };
    let field = |n: &str, path: &str| EnvVar {
        name: n.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    };
    let pod = Pod {
        name: "db-1".into(),
        namespace: "real-ns".into(),
        ordinal: 1,
    };
    for env in [
        vec![var("POD_NAMESPACE", "tenant-a")],
        vec![
            var("LOG_PREFIX", "$(POD_NAMESPACE)"),
            field("POD_NAME", "metadata.name"),
        ],
        vec![var("POD_NAME", "mine"), var("POD_NAMESPACE", "tenant-a")],
    ] {
        let m = mutate(
            &statefulset(Some(env.clone()), None, true),
            &Policy::default(),
        );
        let got = m
            .object
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers[0].env.clone())
            .unwrap_or_default();
        let defined = environment(&got, &pod);
        assert_eq!(
            defined.get("POD_FQDN").map(String::as_str),
            Some("db-1.db-hl.real-ns.svc.cluster.local"),
            "{got:?}"
        );
        assert_eq!(
            defined.get("STS_PRIMARY_FQDN").map(String::as_str),
            Some("db-0.db-hl.real-ns.svc.cluster.local"),
            "{got:?}"
        );
        // The user's values are kept, with a warning that has its id.
        for e in &env {
            assert!(got.contains(e), "{e:?} kept: {got:?}");
        }
        if env.iter().any(|e| e.value.as_deref() == Some("tenant-a")) {
            assert!(
                m.report
                    .warnings
                    .iter()
                    .any(|w| w.starts_with("[env-kept]") && w.contains("POD_NAMESPACE")),
                "{:?}",
                m.report.warnings
            );
        }
    }
}

#[test]
fn the_simulation_expands_as_kubernetes_does() {
    let d: BTreeMap<String, String> = [("A".to_string(), "x".to_string())].into();
    assert_eq!(expand("$(A)-$(B)", &d), "x-$(B)");
    assert_eq!(expand("$$(A)", &d), "$(A)");
    assert_eq!(expand("$(A", &d), "$(A");
    assert_eq!(expand("a$b$", &d), "a$b$");
    assert_eq!(references("$(A)$$(B)$(C"), vec!["A".to_string()]);
}

/// A list that takes stsguard's private names many times over still costs linear work: the next
/// free name is found without rescanning the list for each candidate.
#[test]
fn many_taken_private_names_stay_linear() {
    let n = 20_000;
    let mut env: Vec<EnvVar> = (2..n)
        .map(|i| EnvVar {
            name: format!("STSGUARD_POD_NAMESPACE_{i}"),
            value: Some("x".into()),
            value_from: None,
        })
        .collect();
    env.push(EnvVar {
        name: "STSGUARD_POD_NAMESPACE".into(),
        value: Some("x".into()),
        value_from: None,
    });
    env.push(EnvVar {
        name: "POD_NAMESPACE".into(),
        value: Some("tenant-a".into()),
        value_from: None,
    });
    let t = std::time::Instant::now();
    let m = mutate(&statefulset(Some(env), None, false), &Policy::default());
    assert!(
        t.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t.elapsed()
    );
    let got = m
        .object
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers[0].env.clone())
        .unwrap_or_default();
    let pod = Pod {
        name: "db-0".into(),
        namespace: "real-ns".into(),
        ordinal: 0,
    };
    assert_eq!(
        environment(&got, &pod).get("POD_FQDN").map(String::as_str),
        Some("db-0.db-hl.real-ns.svc.cluster.local")
    );
    assert!(
        got.iter()
            .any(|e| e.name == format!("STSGUARD_POD_NAMESPACE_{n}"))
    );
}
