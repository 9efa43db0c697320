//! Safe over the whole life of a StatefulSet, through the router with review bodies in the API
//! server's shape (the captured ones in tests/fixtures/admission): scale to zero and back,
//! updates that do not touch the pod template, annotations that are not understood, advice
//! that leads somewhere, annotations removed, warnings that name their object.

mod common;

use std::sync::Arc;

use axum::body::Body;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::policy::{OnError, Policy};
use stsguard::server::{AppState, router};
use stsguard::validate::Lookups;
use stsguard::validate::lookups::StaticLookups;
use tower::ServiceExt;

use common::*;

fn fixture(name: &str) -> serde_json::Value {
    read_json(&local_fixture(&format!("admission/{name}")))
}

/// Posts `review` to `path` through the router and returns the answer.
async fn post(
    path: &str,
    review: &serde_json::Value,
    policy: &Policy,
    lookups: Arc<dyn Lookups>,
) -> serde_json::Value {
    let app = router(
        AppState::new(policy.clone(), lookups),
        std::time::Duration::from_secs(5),
    );
    let resp = app
        .oneshot(
            axum::http::Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(review).unwrap()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let out: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        out["response"]["uid"], review["request"]["uid"],
        "uid echoed"
    );
    out
}

fn warnings(answer: &serde_json::Value) -> Vec<String> {
    answer["response"]["warnings"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn message(answer: &serde_json::Value) -> String {
    answer["response"]["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn deny_on_error() -> Policy {
    Policy {
        on_error: OnError::Deny,
        ..Policy::default()
    }
}

/// The StatefulSet `cap/db` of the captured reviews, as the watch cache holds it, with extra
/// annotations and `replicas`.
fn cached_db(annotations: &[(&str, &str)], replicas: i32) -> Arc<StatefulSet> {
    let mut raw =
        fixture("statefulset-UPDATE-label-only.validating.json")["request"]["oldObject"].clone();
    annotate(&mut raw, annotations);
    raw["spec"]["replicas"] = replicas.into();
    Arc::new(serde_json::from_value(raw).unwrap())
}

fn cache_of(sets: Vec<Arc<StatefulSet>>) -> Arc<dyn Lookups> {
    Arc::new(StaticLookups {
        statefulsets: sets,
        authoritative: true,
        ..Default::default()
    })
}

// ---- scale to zero ----

/// `kubectl scale --replicas=0` sends a Scale whose `spec` is `{}` (autoscaling/v1 omits
/// `replicas: 0`): a full stop, allowed by every rule, also under `onError: deny` and for a
/// quorum set (0 is allowed by quorum-odd and quorum-scale-down).
#[tokio::test]
async fn a_scale_without_spec_replicas_is_a_scale_to_zero_and_is_allowed_under_on_error_deny() {
    let review = fixture("statefulset-scale-to-zero.validating.json");
    assert_eq!(review["request"]["object"]["spec"], serde_json::json!({}));
    for annotations in [
        vec![],
        vec![("stsguard.io/quorum", "true")],
        vec![("stsguard.io/single-instance", "true")],
    ] {
        let cache = cache_of(vec![cached_db(&annotations, 3)]);
        let a = post("/validate", &review, &deny_on_error(), cache).await;
        assert_eq!(a["response"]["allowed"], true, "{annotations:?}: {a}");
        assert!(
            warnings(&a).is_empty(),
            "{annotations:?}: {:?}",
            warnings(&a)
        );
    }
}

/// Back from zero: the old Scale's `spec` is `{}`, so the old count is 0 and a scale-up is no
/// scale-down; the new count is judged as any other (2 is even for a quorum).
#[tokio::test]
async fn a_scale_from_zero_reads_the_old_count_as_zero() {
    let review = fixture("statefulset-scale-from-zero.validating.json");
    assert_eq!(
        review["request"]["oldObject"]["spec"],
        serde_json::json!({})
    );
    let plain = cache_of(vec![cached_db(&[], 0)]);
    let a = post("/validate", &review, &deny_on_error(), plain).await;
    assert_eq!(a["response"]["allowed"], true, "{a}");
    let quorum = cache_of(vec![cached_db(&[("stsguard.io/quorum", "true")], 0)]);
    let a = post("/validate", &review, &deny_on_error(), quorum).await;
    assert_eq!(a["response"]["allowed"], false);
    let m = message(&a);
    assert!(
        m.contains("[quorum-odd]") && !m.contains("[quorum-scale-down]"),
        "{m}"
    );
    // A Scale request without any object is still not evaluated: denied under onError: deny.
    let mut none = review.clone();
    none["request"]["object"] = serde_json::Value::Null;
    let a = post(
        "/validate",
        &none,
        &deny_on_error(),
        cache_of(vec![cached_db(&[], 0)]),
    )
    .await;
    assert_eq!(a["response"]["allowed"], false);
    assert!(message(&a).contains("has no object"), "{}", message(&a));
}

// ---- scale-down advice ----

/// A Scale review of `cap/db` from `old` to `new` replicas, in the API server's shape (the
/// captured scale to zero, its counts changed; 0 is `spec: {}` as the API server sends it).
fn scale_review(old: i32, new: i32) -> serde_json::Value {
    let mut r = fixture("statefulset-scale-to-zero.validating.json");
    let spec = |n: i32| match n {
        0 => serde_json::json!({}),
        n => serde_json::json!({ "replicas": n }),
    };
    r["request"]["object"]["spec"] = spec(new);
    r["request"]["oldObject"]["spec"] = spec(old);
    r
}

/// The sizes of the advice's path, `a -> b -> c`, in the order given.
fn advised_path(message: &str) -> Vec<i32> {
    let Some((_, rest)) = message.rsplit_once("scale ") else {
        return Vec::new();
    };
    let path: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || " ->".contains(*c))
        .collect();
    path.split("->")
        .map(|n| n.trim().parse().unwrap_or(-1))
        .collect()
}

/// An annotated quorum scaled down past a majority in one step is denied, and the denial names
/// a path; followed literally, Scale request by Scale request against the cache as it then is,
/// every step is allowed (3 -> 2 would be denied by quorum-odd: no advice goes through an even
/// size).
#[tokio::test]
async fn the_advised_scale_down_path_is_allowed_at_each_step() {
    let quorum = [("stsguard.io/quorum", "true")];
    for (old, target) in [(3, 1), (5, 1), (7, 3), (9, 3), (9, 1), (25, 3)] {
        let cache = cache_of(vec![cached_db(&quorum, old)]);
        let a = post(
            "/validate",
            &scale_review(old, target),
            &Policy::default(),
            cache,
        )
        .await;
        assert_eq!(a["response"]["allowed"], false, "{old} -> {target}");
        let m = message(&a);
        assert!(m.contains("[quorum-scale-down]"), "{m}");
        let path = advised_path(&m);
        assert!(path.len() >= 2, "{old} -> {target}: no path in {m}");
        assert_eq!((path[0], path[path.len() - 1]), (old, target), "{m}");
        for step in path.windows(2) {
            let (from, to) = (step[0], step[1]);
            let cache = cache_of(vec![cached_db(&quorum, from)]);
            let a = post(
                "/validate",
                &scale_review(from, to),
                &Policy::default(),
                cache,
            )
            .await;
            assert_eq!(
                a["response"]["allowed"],
                true,
                "{old} -> {target}: step {from} -> {to} of {path:?} is denied: {}",
                message(&a)
            );
        }
    }
    // 3 -> 1: no smaller size keeps a majority of 3 at an odd count; the path is a full stop.
    let a = post(
        "/validate",
        &scale_review(3, 1),
        &Policy::default(),
        cache_of(vec![cached_db(&quorum, 3)]),
    )
    .await;
    assert_eq!(advised_path(&message(&a)), [3, 0, 1], "{}", message(&a));
}

// ---- warnings ----

/// kubectl prints identical warnings once: each of stsguard's names its object, so two
/// StatefulSets with the same finding read as two. On both hooks, for writes, Scales, Pods and
/// requests stsguard could not evaluate.
#[tokio::test]
async fn every_warning_names_its_object() {
    let none: Arc<dyn Lookups> = Arc::new(stsguard::validate::NoLookups("no cluster".into()));
    let policy = Policy::default();
    let mut seen = Vec::new();
    for (ns, name) in [("default", "web"), ("cap", "db")] {
        for (path, file) in [
            ("/mutate", "statefulset-CREATE.mutating.json"),
            ("/validate", "statefulset-CREATE.validating.json"),
        ] {
            let mut r = fixture(file);
            r["request"]["namespace"] = ns.into();
            r["request"]["name"] = name.into();
            r["request"]["object"]["metadata"]["namespace"] = ns.into();
            r["request"]["object"]["metadata"]["name"] = name.into();
            // An identity variable of the user's: a mutation warning too.
            r["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["env"] =
                serde_json::json!([{"name": "POD_NAMESPACE", "value": "tenant-a"}]);
            let a = post(path, &r, &policy, none.clone()).await;
            let w = warnings(&a);
            assert!(!w.is_empty(), "{path} {ns}/{name}: {a}");
            for line in &w {
                assert!(
                    line.starts_with(&format!("StatefulSet {ns}/{name}: [")),
                    "{path}: {line}"
                );
                assert!(line.len() <= 250, "{line}");
            }
            seen.extend(w);
        }
    }
    let unique: std::collections::BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no two warnings alike: {seen:?}");
    // A Scale names the StatefulSet it scales.
    let a = post("/validate", &scale_review(3, 4), &policy, none.clone()).await;
    let w = warnings(&a);
    assert!(
        !w.is_empty() && w.iter().all(|l| l.starts_with("StatefulSet cap/db: [")),
        "{w:?}"
    );
    // A Pod names the pod.
    let mut pod = fixture("pod-CREATE-by-statefulset-controller.mutating.json");
    let labels = &mut pod["request"]["object"]["metadata"]["labels"];
    labels["stsguard.io/managed"] = "true".into();
    let a = post("/mutate", &pod, &policy, none.clone()).await;
    let w = warnings(&a);
    assert!(
        !w.is_empty()
            && w.iter()
                .all(|l| l.starts_with("Pod default/web-0: [pod-no-role]")),
        "{w:?}"
    );
    // A review stsguard cannot evaluate (its object is not a StatefulSet) says which it was.
    let mut bad = fixture("statefulset-CREATE.validating.json");
    bad["request"]["object"]["spec"] = "x".into();
    let a = post("/validate", &bad, &policy, none).await;
    let w = warnings(&a);
    assert!(
        w.len() == 1 && w[0].starts_with("StatefulSet default/web: stsguard could not evaluate"),
        "{w:?}"
    );
}

// ---- annotations ----

/// `stsguard.io/protect: "True"` would protect nothing while looking like it does: the write
/// that sets it is denied, the message naming the key, the value and the fix. The same for the
/// other switches; other `stsguard.io/` annotations that do nothing are warnings.
#[tokio::test]
async fn a_safety_switch_that_is_not_true_or_false_is_denied_naming_key_and_value() {
    let base = fixture("statefulset-UPDATE-label-only.validating.json");
    let none: Arc<dyn Lookups> = Arc::new(stsguard::validate::NoLookups("no cluster".into()));
    for (key, value) in [
        ("stsguard.io/protect", "True"),
        ("stsguard.io/protect", "yes"),
        ("stsguard.io/single-instance", "1"),
        ("stsguard.io/quorum", "on"),
    ] {
        let mut r = base.clone();
        annotate(&mut r["request"]["object"], &[(key, value)]);
        let a = post("/validate", &r, &Policy::default(), none.clone()).await;
        assert_eq!(a["response"]["allowed"], false, "{key}: {value}");
        assert_eq!(a["response"]["status"]["code"], 403);
        // (A single instance at 3 replicas is also refused: the switch reads as on.)
        let m = message(&a);
        assert!(
            m.starts_with("stsguard denied the request: ")
                && m.contains(&format!(
                    "[safety-switch] {key}: \"{value}\" is not \"true\" or \"false\"; write \"true\" to turn it on, \"false\" to turn it off"
                )),
            "{m}"
        );
    }
    // A typo of a key, and an override the policy does not allow: allowed, said.
    let mut r = base.clone();
    annotate(
        &mut r["request"]["object"],
        &[
            ("stsguard.io/protected", "true"),
            ("stsguard.io/rule.delete-protection", "off"),
        ],
    );
    let a = post("/validate", &r, &Policy::default(), none.clone()).await;
    assert_eq!(a["response"]["allowed"], true);
    let w = warnings(&a);
    let ignored: Vec<&String> = w
        .iter()
        .filter(|l| l.starts_with("StatefulSet cap/db: [annotation-ignored] "))
        .collect();
    assert_eq!(ignored.len(), 1, "{w:?}");
    assert!(
        ignored[0].contains("stsguard.io/protected is not a stsguard annotation: ignored; did you mean stsguard.io/protect?")
            && ignored[0].contains("stsguard.io/rule.delete-protection: the policy does not allow object overrides"),
        "{}",
        ignored[0]
    );
    // A value the mutation does not understand: a warning naming the key, the value and what
    // was used instead.
    let mut r = fixture("statefulset-CREATE.mutating.json");
    annotate(
        &mut r["request"]["object"],
        &[
            ("stsguard.io/ordinal-env", "yes"),
            ("stsguard.io/anti-affinity", "soft"),
        ],
    );
    let a = post("/mutate", &r, &Policy::default(), none).await;
    let w = warnings(&a);
    for want in [
        "StatefulSet default/web: [annotation-invalid] stsguard.io/ordinal-env: \"yes\" is not \"true\" or \"false\"; using true",
        "StatefulSet default/web: [annotation-invalid] stsguard.io/anti-affinity: \"soft\" is not preferred|required|none; using preferred",
    ] {
        assert!(w.iter().any(|l| l == want), "{want}\n{w:?}");
    }
}

// ---- no rollout caused by stsguard ----

/// The paths a patch writes.
fn patch_paths(answer: &serde_json::Value) -> Vec<String> {
    patch_of(answer)
        .map(|p| {
            p.0.iter()
                .map(|op| {
                    serde_json::to_value(op).unwrap()["path"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `kubectl label sts db team=payments` on a StatefulSet created before stsguard: the template
/// is as stored, so it stays so (a patch would bump the generation and roll the database's
/// pods). So does an annotation that drives no mutation (`protect`, `quorum`). A change of the
/// template, or of an annotation that drives the mutation, adopts it: the patch applies to the
/// object as sent.
#[tokio::test]
async fn an_update_that_leaves_the_template_alone_gets_no_template_patch() {
    let none: Arc<dyn Lookups> = Arc::new(stsguard::validate::NoLookups("no cluster".into()));
    let policy = Policy::default();
    let label = fixture("statefulset-UPDATE-label-only.mutating.json");
    let req = &label["request"];
    assert_eq!(
        req["object"]["spec"]["template"],
        req["oldObject"]["spec"]["template"]
    );
    assert_ne!(
        req["object"]["metadata"]["labels"],
        req["oldObject"]["metadata"]["labels"]
    );
    let a = post("/mutate", &label, &policy, none.clone()).await;
    assert_eq!(a["response"]["allowed"], true);
    assert!(patch_of(&a).is_none(), "{a}");
    assert!(warnings(&a).is_empty(), "{:?}", warnings(&a));
    // Annotations that drive no mutation: no patch either.
    let mut r = label.clone();
    annotate(
        &mut r["request"]["object"],
        &[
            ("stsguard.io/quorum", "false"),
            ("stsguard.io/rule.claim-retention", "off"),
        ],
    );
    assert!(patch_of(&post("/mutate", &r, &policy, none.clone()).await).is_none());
    // The same object as a CREATE would be mutated: the patch above is withheld, not empty.
    let mut create = label.clone();
    create["request"]["operation"] = "CREATE".into();
    create["request"]["oldObject"] = serde_json::Value::Null;
    assert!(patch_of(&post("/mutate", &create, &policy, none.clone()).await).is_some());
    // A template change (a new image): adopted in the same write, the patch applies.
    let mut bump = label.clone();
    bump["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        "registry.example/db:2".into();
    let a = post("/mutate", &bump, &policy, none.clone()).await;
    let patch = patch_of(&a).expect("a template change is mutated");
    let mut doc = bump["request"]["object"].clone();
    apply_adds_only(&mut doc, &patch).unwrap();
    let env = &doc["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .is_some_and(|e| e.iter().any(|v| v["name"] == "POD_NAME")),
        "{env}"
    );
    assert!(
        doc["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_object(),
        "{doc}"
    );
    // An annotation that drives the mutation (identity variables off): adopted, without them.
    let mut drive = label.clone();
    annotate(
        &mut drive["request"]["object"],
        &[("stsguard.io/ordinal-env", "false")],
    );
    let a = post("/mutate", &drive, &policy, none.clone()).await;
    let paths = patch_paths(&a);
    assert!(paths.iter().any(|p| p.contains("/affinity")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("/env")), "{paths:?}");
    // The validating hook judges the object as it is stored: allowed.
    let label = fixture("statefulset-UPDATE-label-only.validating.json");
    let a = post("/validate", &label, &policy, none).await;
    assert_eq!(a["response"]["allowed"], true, "{a}");
}

// ---- removing an annotation removes what it added ----

/// The captured CREATE of the MySQL example, with roles, a role ConfigMap and a node selector
/// for the primary; its first container defines its own `POD_NAME` (as stsguard would), and
/// the pod has an anti-affinity term of its own.
fn mysql_create() -> serde_json::Value {
    let mut r = fixture("corpus/mysql-k8s-website.create.mutating.json");
    let o = &mut r["request"]["object"];
    annotate(
        o,
        &[
            ("stsguard.io/roles", "primary=0,replica=*"),
            ("stsguard.io/role-config", "mysql"),
            ("stsguard.io/role-node-selector.primary", "node-class=big"),
        ],
    );
    let spec = &mut o["spec"]["template"]["spec"];
    spec["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}));
    spec["affinity"] = serde_json::json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 30, "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "mysql"}}}}
    ]}});
    r
}

/// An UPDATE of `stored` (the object as the API server keeps it) whose StatefulSet annotations
/// are changed by `edit`, as `kubectl apply` sends it: the template as stored.
fn update_of(
    create: &serde_json::Value,
    stored: &serde_json::Value,
    edit: impl Fn(&mut serde_json::Value),
) -> serde_json::Value {
    let mut r = create.clone();
    r["request"]["operation"] = "UPDATE".into();
    r["request"]["oldObject"] = stored.clone();
    let mut object = stored.clone();
    edit(&mut object["metadata"]["annotations"]);
    r["request"]["object"] = object;
    r
}

/// Posts a `/mutate` review and applies its patch (json-patch) to the object sent.
async fn mutated(review: &serde_json::Value) -> (serde_json::Value, json_patch::Patch) {
    let none: Arc<dyn Lookups> = Arc::new(stsguard::validate::NoLookups("no cluster".into()));
    let a = post("/mutate", review, &Policy::default(), none).await;
    assert_eq!(a["response"]["allowed"], true, "{a}");
    let patch = patch_of(&a).unwrap_or_default();
    let mut doc = review["request"]["object"].clone();
    json_patch::patch(&mut doc, &patch).unwrap_or_else(|e| panic!("the patch does not apply: {e}"));
    (doc, patch)
}

fn env_names(c: &serde_json::Value) -> Vec<String> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

fn containers(o: &serde_json::Value) -> Vec<serde_json::Value> {
    let spec = &o["spec"]["template"]["spec"];
    let all = spec["initContainers"].as_array().into_iter().flatten();
    all.chain(spec["containers"].as_array().into_iter().flatten())
        .cloned()
        .collect()
}

/// Removing `stsguard.io/roles` (with its ConfigMap and node selector) removes, in the same
/// write, what they added: the role init container, its volumes and mounts,
/// `STS_PRIMARY_FQDN`, the `stsguard.io/managed` pod label and the annotation copies. The
/// identity variables and the anti-affinity stay (their annotations did not change), and so
/// does everything of the user's: its own `POD_NAME` and anti-affinity term.
#[tokio::test]
async fn removing_the_roles_removes_what_they_added_and_nothing_of_the_users() {
    let create = mysql_create();
    let (stored, _) = mutated(&create).await;
    let init_names = |o: &serde_json::Value| -> Vec<String> {
        o["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        init_names(&stored),
        ["stsguard-role", "init-mysql", "clone-mysql"]
    );
    let labels = &stored["spec"]["template"]["metadata"]["labels"];
    assert_eq!(labels["stsguard.io/managed"], "true");

    let update = update_of(&create, &stored, |a| {
        let a = a.as_object_mut().unwrap();
        a.remove("stsguard.io/roles");
        a.remove("stsguard.io/role-config");
        a.remove("stsguard.io/role-node-selector.primary");
    });
    let (after, patch) = mutated(&update).await;
    let t = &after["spec"]["template"];
    assert_eq!(
        init_names(&after),
        ["init-mysql", "clone-mysql"],
        "{patch:?}"
    );
    let volumes: Vec<&str> = t["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(volumes, ["conf", "config-map"]);
    for c in containers(&after) {
        let mounts = c["volumeMounts"].as_array().into_iter().flatten();
        assert!(mounts.clone().all(|m| m["name"] != "stsguard-role"), "{c}");
        let env = env_names(&c);
        assert!(!env.contains(&"STS_PRIMARY_FQDN".to_string()), "{env:?}");
        assert!(env.contains(&"POD_ORDINAL".to_string()), "{env:?}");
    }
    assert!(t["metadata"]["labels"].get("stsguard.io/managed").is_none());
    let anns = t["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(
        anns.keys().all(|k| k == "stsguard.io/added"),
        "only the record stays: {anns:?}"
    );
    // The user's own POD_NAME (the same definition as stsguard's) and term are still there.
    let mysql = &t["spec"]["containers"][0];
    assert_eq!(
        env_names(mysql).iter().filter(|n| *n == "POD_NAME").count(),
        1
    );
    assert_eq!(
        create["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["env"][1],
        mysql["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "POD_NAME")
            .cloned()
            .unwrap()
    );
    let preferred = &t["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"];
    assert_eq!(
        preferred.as_array().map(Vec::len),
        Some(2),
        "the user's and stsguard's"
    );
    assert_eq!(preferred[0]["weight"], 30);
    // Every field the user wrote is unchanged.
    let mut user = create["request"]["object"].clone();
    user["metadata"] = after["metadata"].clone();
    assert!(contains(&user, &after), "a user field changed");
    // Mutating the result again changes nothing; it is allowed.
    let again = update_of(&create, &after, |_| {});
    let mut again_changed = again.clone();
    again_changed["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["image"] =
        "mysql:5.7.44".into();
    assert!(
        patch_of(
            &post(
                "/mutate",
                &again_changed,
                &Policy::default(),
                Arc::new(stsguard::validate::NoLookups("t".into()))
            )
            .await
        )
        .is_none()
    );
    let mut validate = update.clone();
    validate["request"]["object"] = after.clone();
    let a = post(
        "/validate",
        &validate,
        &Policy::default(),
        Arc::new(stsguard::validate::NoLookups("t".into())),
    )
    .await;
    assert_eq!(a["response"]["allowed"], true, "{}", message(&a));
}

/// Removing a role's node selector removes its copy on the template, and only that: one
/// `remove`. `ordinal-env: "false"` removes the identity variables stsguard added but the
/// user's own `POD_NAME`, and keeps what the roles need. `mutate: "false"` removes everything
/// stsguard added: the template is the user's again.
#[tokio::test]
async fn each_annotation_takes_back_what_it_added() {
    let create = mysql_create();
    let (stored, _) = mutated(&create).await;
    // A node selector.
    let update = update_of(&create, &stored, |a| {
        a.as_object_mut()
            .unwrap()
            .remove("stsguard.io/role-node-selector.primary");
    });
    let (after, patch) = mutated(&update).await;
    let ops: Vec<String> = patch
        .0
        .iter()
        .map(|op| serde_json::to_string(op).unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            r#"{"op":"remove","path":"/spec/template/metadata/annotations/stsguard.io~1role-node-selector.primary"}"#
        ]
    );
    assert!(
        after["spec"]["template"]["metadata"]["annotations"]
            .get("stsguard.io/roles")
            .is_some()
    );
    // The identity variables.
    let update = update_of(&create, &stored, |a| {
        a["stsguard.io/ordinal-env"] = "false".into()
    });
    let (after, _) = mutated(&update).await;
    for c in containers(&after) {
        let env = env_names(&c);
        for gone in [
            "POD_ORDINAL",
            "STATEFULSET_NAME",
            "STATEFULSET_SERVICE",
            "POD_FQDN",
        ] {
            assert!(!env.contains(&gone.to_string()), "{} {env:?}", c["name"]);
        }
        // The roles still need the namespace and the primary's name.
        assert!(
            env.contains(&"STS_PRIMARY_FQDN".to_string()),
            "{} {env:?}",
            c["name"]
        );
        let pod_name = env.contains(&"POD_NAME".to_string());
        assert_eq!(
            pod_name,
            c["name"] == "mysql",
            "only the user's POD_NAME: {} {env:?}",
            c["name"]
        );
    }
    // The whole mutation.
    let update = update_of(&create, &stored, |a| {
        a["stsguard.io/mutate"] = "false".into()
    });
    let (after, _) = mutated(&update).await;
    let user = &create["request"]["object"]["spec"]["template"];
    assert_eq!(
        pruned(&after["spec"]["template"]),
        pruned(user),
        "the template is the user's again"
    );
}

/// JSON without empty lists, empty objects and nulls (the API server drops them).
fn pruned(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), pruned(v)))
                .filter(|(_, v)| {
                    !v.is_null() && v != &serde_json::json!({}) && v != &serde_json::json!([])
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(pruned).collect()),
        x => x.clone(),
    }
}
