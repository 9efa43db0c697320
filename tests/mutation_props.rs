//! Property tests over generated StatefulSets with random existing affinity, env,
//! containers, init containers (native sidecars too), selectors, volumes and annotations.
//! The four corpus properties hold for each, and for the same objects after their annotations
//! changed (roles, node selectors, identity variables, anti-affinity, the mutation itself
//! removed or changed): stsguard takes out what it added and only that. CI runs 10,000 cases
//! (PROPTEST_CASES=10000).

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, HostPathVolumeSource,
    ObjectFieldSelector, PersistentVolumeClaimVolumeSource, PodAffinityTerm, PodAntiAffinity,
    PodSpec, PodTemplateSpec, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use proptest::prelude::*;
use stsguard::policy::{AntiAffinityMode, Policy};

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["app", "tier", "role", "x/y"]),
        prop::sample::select(vec!["a", "b", "db"]),
        0..3,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn expr() -> impl Strategy<Value = LabelSelectorRequirement> {
    (
        prop::sample::select(vec!["app", "tier", "zone"]),
        prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "db"]), 0..3),
    )
        .prop_map(|(k, op, vals)| LabelSelectorRequirement {
            key: k.into(),
            operator: op.into(),
            values: if op == "In" || op == "NotIn" {
                Some(vals.into_iter().map(String::from).collect())
            } else {
                None
            },
        })
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        labels(),
        prop::option::of(prop::collection::vec(expr(), 0..3)),
    )
        .prop_map(|(ml, me)| LabelSelector {
            match_labels: if ml.is_empty() { None } else { Some(ml) },
            match_expressions: me,
        })
}

fn env_var() -> impl Strategy<Value = EnvVar> {
    let names = prop::sample::select(vec![
        "POD_NAME",
        "POD_NAMESPACE",
        "POD_ORDINAL",
        "POD_FQDN",
        "STATEFULSET_NAME",
        "A",
        "B",
        "URL",
        "STS_PRIMARY_FQDN",
    ]);
    let values = prop::sample::select(vec![
        "x",
        "",
        "$(POD_NAME)",
        "http://$(POD_FQDN):80",
        "$(POD_ORDINAL)-$(A)",
        "$(NOPE)",
    ]);
    (names, values, any::<bool>()).prop_map(|(n, v, field)| {
        if field {
            EnvVar {
                name: n.into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".into(),
                        api_version: None,
                    }),
                    ..Default::default()
                }),
            }
        } else {
            EnvVar {
                name: n.into(),
                value: Some(v.into()),
                value_from: None,
            }
        }
    })
}

fn container(name: &'static str) -> impl Strategy<Value = Container> {
    (
        prop::option::of(prop::collection::vec(env_var(), 0..5)),
        prop::option::of(prop::sample::select(vec![
            "/etc/stsguard",
            "/data",
            "/etc/stsguard/",
        ])),
        prop::option::of(Just("Always".to_string())),
    )
        .prop_map(move |(env, mount, restart)| {
            // Unique env names, as the API requires.
            let env = env.map(|v| {
                let mut seen = std::collections::BTreeSet::new();
                v.into_iter()
                    .filter(|e| seen.insert(e.name.clone()))
                    .collect::<Vec<_>>()
            });
            Container {
                name: name.into(),
                image: Some("img".into()),
                env,
                volume_mounts: mount.map(|m| {
                    vec![VolumeMount {
                        name: "data".into(),
                        mount_path: m.into(),
                        ..Default::default()
                    }]
                }),
                restart_policy: restart,
                ..Default::default()
            }
        })
}

fn term() -> impl Strategy<Value = PodAffinityTerm> {
    (
        prop::option::of(selector()),
        prop::sample::select(vec![
            "kubernetes.io/hostname",
            "topology.kubernetes.io/zone",
        ]),
    )
        .prop_map(|(s, k)| PodAffinityTerm {
            label_selector: s,
            topology_key: k.into(),
            ..Default::default()
        })
}

fn affinity() -> impl Strategy<Value = Option<Affinity>> {
    prop::option::of(
        (
            prop::option::of(prop::collection::vec(term(), 0..2)),
            prop::option::of(prop::collection::vec((1..=100i32, term()), 0..2)),
            any::<bool>(),
        )
            .prop_map(|(req, pref, anti)| {
                let pref = pref.map(|v| {
                    v.into_iter()
                        .map(|(w, t)| WeightedPodAffinityTerm {
                            weight: w,
                            pod_affinity_term: t,
                        })
                        .collect()
                });
                Affinity {
                    pod_anti_affinity: anti.then_some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: req,
                        preferred_during_scheduling_ignored_during_execution: pref,
                    }),
                    ..Default::default()
                }
            }),
    )
}

fn volumes() -> impl Strategy<Value = Option<Vec<Volume>>> {
    prop::option::of(prop::collection::vec(
        prop::sample::select(vec!["empty", "host", "pvc", "role"]).prop_map(|k| match k {
            "empty" => Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
            "host" => Volume {
                name: "host".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/var/x".into(),
                    type_: None,
                }),
                ..Default::default()
            },
            "pvc" => Volume {
                name: "claim".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: "c".into(),
                    read_only: None,
                }),
                ..Default::default()
            },
            // A user volume that collides with stsguard's name.
            _ => Volume {
                name: "stsguard-role".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/r".into(),
                    type_: None,
                }),
                ..Default::default()
            },
        }),
        0..3,
    ))
    .prop_map(|v| {
        v.map(|v| {
            let mut seen = std::collections::BTreeSet::new();
            v.into_iter()
                .filter(|x| seen.insert(x.name.clone()))
                .collect()
        })
    })
}

fn annotations() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    let pick = |k: &'static str, vals: Vec<&'static str>| {
        prop::option::of(prop::sample::select(vals))
            .prop_map(move |v| v.map(|v| (k.to_string(), v.to_string())))
    };
    (
        pick(
            "stsguard.io/anti-affinity",
            vec!["preferred", "required", "none", "bogus"],
        ),
        pick("stsguard.io/ordinal-env", vec!["true", "false", "maybe"]),
        pick(
            "stsguard.io/roles",
            vec![
                "primary=0,replica=*",
                "a=0-1,b=2-",
                "bad=",
                "replica=*,primary=0",
            ],
        ),
        pick("stsguard.io/role-config", vec!["cfg", ""]),
        pick(
            "stsguard.io/topology-key",
            vec!["topology.kubernetes.io/zone", "Bad Key"],
        ),
        pick("stsguard.io/mutate", vec!["true", "false"]),
        pick(
            "stsguard.io/role-node-selector.primary",
            vec!["node-class=big", "bad"],
        ),
    )
        .prop_map(|(a, b, c, d, e, f, g)| {
            let m: BTreeMap<String, String> = [a, b, c, d, e, f, g].into_iter().flatten().collect();
            if m.is_empty() { None } else { Some(m) }
        })
}

prop_compose! {
    fn statefulset()(
        sel in selector(),
        extra in labels(),
        template_matches in any::<bool>(),
        replicas in prop::option::of(prop::sample::select(vec![0, 1, 2, 3])),
        service in prop::option::of(prop::sample::select(vec!["svc", ""])),
        c1 in container("app"),
        c2 in prop::option::of(container("sidecar")),
        i1 in prop::option::of(container("init")),
        i2 in prop::option::of(container("native-sidecar")),
        aff in affinity(),
        vols in volumes(),
        anns in annotations(),
        name in prop::sample::select(vec!["db", "my-sql"]),
    ) -> StatefulSet {
        let mut tl = extra;
        if template_matches {
            tl.extend(sel.match_labels.clone().unwrap_or_default());
        }
        let containers: Vec<Container> = std::iter::once(c1).chain(c2).map(|mut c| { c.restart_policy = None; c }).collect();
        let inits: Vec<Container> = i1.into_iter().map(|mut c| { c.restart_policy = None; c }).chain(i2).collect();
        StatefulSet {
            metadata: ObjectMeta { name: Some(name.into()), namespace: Some("ns".into()), annotations: anns, ..Default::default() },
            spec: Some(StatefulSetSpec {
                replicas,
                selector: sel,
                service_name: service.map(String::from),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: if tl.is_empty() { None } else { Some(tl) }, ..Default::default() }),
                    spec: Some(PodSpec {
                        containers,
                        init_containers: if inits.is_empty() { None } else { Some(inits) },
                        affinity: aff,
                        volumes: vols,
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::sample::select(vec![
            AntiAffinityMode::Preferred,
            AntiAffinityMode::Required,
            AntiAffinityMode::None,
        ]),
        any::<bool>(),
    )
        .prop_map(|(mode, env)| {
            let mut p = Policy::default();
            p.mutation.anti_affinity.mode = mode;
            p.mutation.ordinal_env = env;
            p
        })
}

/// How the user changes the annotations of a mutated StatefulSet.
#[derive(Clone, Debug)]
enum Change {
    Remove(&'static str),
    Set(&'static str, &'static str),
}

fn changes() -> impl Strategy<Value = Vec<Change>> {
    let one = prop_oneof![
        Just(Change::Remove("stsguard.io/roles")),
        Just(Change::Remove("stsguard.io/role-node-selector.primary")),
        Just(Change::Remove("stsguard.io/role-config")),
        Just(Change::Remove("stsguard.io/anti-affinity")),
        Just(Change::Set("stsguard.io/ordinal-env", "false")),
        Just(Change::Set("stsguard.io/ordinal-env", "true")),
        Just(Change::Set("stsguard.io/mutate", "false")),
        Just(Change::Set("stsguard.io/anti-affinity", "none")),
        Just(Change::Set("stsguard.io/anti-affinity", "required")),
        Just(Change::Set(
            "stsguard.io/topology-key",
            "topology.kubernetes.io/zone"
        )),
        Just(Change::Set("stsguard.io/roles", "primary=0-1,replica=*")),
        Just(Change::Set("stsguard.io/role-mount-path", "/etc/roles")),
    ];
    prop::collection::vec(one, 1..4)
}

fn with_changes(sts: &StatefulSet, changes: &[Change]) -> StatefulSet {
    let mut s = sts.clone();
    let anns = s.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for c in changes {
        match c {
            Change::Remove(k) => {
                anns.remove(*k);
            }
            Change::Set(k, v) => {
                anns.insert(k.to_string(), v.to_string());
            }
        }
    }
    s
}

/// JSON without empty lists, empty objects and nulls (the API server drops them): a template
/// from which stsguard took out what it added equals the user's up to these.
fn pruned(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), pruned(v)))
                .filter(|(_, v)| {
                    !matches!(v, Value::Null)
                        && v != &serde_json::json!({})
                        && v != &serde_json::json!([])
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(pruned).collect()),
        x => x.clone(),
    }
}

/// What stsguard's mutation amounts to, order aside: per container its variables' names (but
/// stsguard's private helper names, which depend on where the block went) and mounts, the init
/// containers, volumes, affinity terms, template labels and annotations (but the record).
fn shape(s: &StatefulSet) -> serde_json::Value {
    let t = &s.spec.as_ref().unwrap().template;
    let pod = t.spec.clone().unwrap_or_default();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let containers: Vec<serde_json::Value> = pod
        .init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .map(|c| {
            let env = c
                .env
                .iter()
                .flatten()
                .map(|e| e.name.clone())
                .filter(|n| !n.starts_with("STSGUARD_POD_"));
            let mounts = c.volume_mounts.iter().flatten().map(|m| format!("{}:{}", m.name, m.mount_path));
            serde_json::json!({"name": c.name, "env": sorted(env.collect()), "mounts": sorted(mounts.collect())})
        })
        .collect();
    let terms = |v: serde_json::Value| {
        sorted(
            v.as_array()
                .into_iter()
                .flatten()
                .map(|x| x.to_string())
                .collect(),
        )
    };
    let affinity = serde_json::to_value(&pod.affinity).unwrap();
    let anti = &affinity["podAntiAffinity"];
    let mut anns = t
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    anns.remove("stsguard.io/added");
    serde_json::json!({
        "containers": containers,
        "volumes": sorted(pod.volumes.iter().flatten().map(|v| v.name.clone()).collect()),
        "preferred": terms(anti["preferredDuringSchedulingIgnoredDuringExecution"].clone()),
        "required": terms(anti["requiredDuringSchedulingIgnoredDuringExecution"].clone()),
        "labels": t.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default(),
        "annotations": anns,
        "pullSecrets": serde_json::to_value(&pod.image_pull_secrets).unwrap(),
    })
}

proptest! {
    // PROPTEST_CASES overrides this; CI sets 10000.
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn mutation_properties(sts in statefulset(), policy in policy()) {
        let raw = serde_json::to_value(&sts).unwrap();
        let m = stsguard::mutate::mutate(&sts, &policy);
        let patch = stsguard::mutate::patch::statefulset(&sts, &m.object)
            .map_err(|e| TestCaseError::fail(format!("no add-only patch: {e}")))?;
        // 1. the patch applies to the object as sent, and only adds (no replace, no remove, no
        // add onto a member the user set; list insertions at an index)
        let mut doc = raw.clone();
        common::apply_adds_only(&mut doc, &patch).map_err(TestCaseError::fail)?;
        // The server's path (mutation in place, a copy of only what it can change) gives the
        // same object and the same patch.
        let mut in_place = sts.clone();
        let (_, server_patch) = stsguard::mutate::mutate_with_patch(&mut in_place, None, &policy)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&in_place, &m.object);
        prop_assert_eq!(&server_patch, &patch);
        prop_assert_eq!(&doc, &serde_json::to_value(&m.object).unwrap());
        // 2. the result reads strictly as a StatefulSet
        let ignored = ignored_fields(&doc).map_err(TestCaseError::fail)?;
        prop_assert!(ignored.is_empty(), "unknown fields {:?}", ignored);
        // 3. idempotent
        let typed: StatefulSet = serde_json::from_value(doc.clone()).unwrap();
        let again = stsguard::mutate::mutate(&typed, &policy);
        let second = common::full_diff(&typed, &again.object).unwrap();
        prop_assert!(second.0.is_empty(), "second patch: {}", serde_json::to_string(&second).unwrap());
        // 4. every user field unchanged
        prop_assert!(contains(&raw, &doc), "a user field changed");
        // and the injected variables come before any user variable that references them
        for c in typed.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers.iter() {
            let env = c.env.clone().unwrap_or_default();
            for (i, e) in env.iter().enumerate() {
                for name in ["POD_NAME", "POD_ORDINAL", "POD_FQDN"] {
                    if e.value.as_deref().is_some_and(|v| v.contains(&format!("$({name})"))) {
                        if let Some(j) = env.iter().position(|d| d.name == name) {
                            let injected = !sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers.iter()
                                .find(|o| o.name == c.name).unwrap().env.iter().flatten().any(|o| o.name == name);
                            if injected {
                                prop_assert!(j < i, "{} injected after {} which references it", name, e.name);
                            }
                        }
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// A mutated StatefulSet whose annotations then change: the patch builds (removing or
    /// replacing only stsguard's own values, else it refuses), applies, and gives the mutation;
    /// the mutation is idempotent; every field of the user's is still there; the result is what
    /// a first mutation with the new annotations gives, order aside; and with
    /// `mutate: "false"` the template is the user's again.
    #[test]
    fn removal_properties(sts in statefulset(), policy in policy(), change in changes()) {
        let stored = stsguard::mutate::mutate(&sts, &policy).object;
        let update = with_changes(&stored, &change);
        let m = stsguard::mutate::mutate(&update, &policy);
        let patch = stsguard::mutate::patch::statefulset(&update, &m.object)
            .map_err(|e| TestCaseError::fail(format!("no patch: {e}")))?;
        let mut doc = serde_json::to_value(&update).unwrap();
        json_patch::patch(&mut doc, &patch)
            .map_err(|e| TestCaseError::fail(format!("the patch does not apply: {e}")))?;
        prop_assert_eq!(&doc, &serde_json::to_value(&m.object).unwrap());
        // The server's path gives the same patch (the annotations changed: mutated).
        let mut in_place = update.clone();
        let (_, server_patch) = stsguard::mutate::mutate_with_patch(&mut in_place, Some(&stored), &policy)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&server_patch, &patch);
        let again = stsguard::mutate::mutate(&m.object, &policy);
        let second = common::full_diff(&m.object, &again.object).unwrap();
        prop_assert!(second.0.is_empty(), "second patch: {}", serde_json::to_string(&second).unwrap());
        let user = with_changes(&sts, &change);
        prop_assert!(contains(&serde_json::to_value(&user).unwrap(), &doc), "a user field changed");
        let fresh = stsguard::mutate::mutate(&user, &policy).object;
        prop_assert_eq!(shape(&m.object), shape(&fresh));
        let off = change.iter().rev().find_map(|c| match c {
            Change::Set("stsguard.io/mutate", v) => Some(*v == "false"),
            _ => None,
        });
        if off == Some(true) {
            let template = |s: &StatefulSet| pruned(&serde_json::to_value(&s.spec.as_ref().unwrap().template).unwrap());
            prop_assert_eq!(template(&m.object), template(&user));
        }
    }
}
