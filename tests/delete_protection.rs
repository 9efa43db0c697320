//! Delete protection beyond the StatefulSet itself: Namespace and PersistentVolumeClaim DELETE
//! reviews, as a Kubernetes 1.28 API server sends them (the captured reviews of
//! `tests/fixtures/admission`: `object` null, `oldObject` the object, and for the claims the
//! namespace controller deletes by collection no `request.name`), through the HTTP router
//! (`oneshot`), with the StatefulSets in the server's own watch-cache stores.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use common::*;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::policy::{OnError, Policy};
use stsguard::server::{AppState, router};
use stsguard::validate::{Lookup, Lookups, NoLookups};
use stsguard::watch::WatchLookups;
use tower::ServiceExt;

/// A StatefulSet in namespace `cap` with one claim template `data`; `protect`: the value of
/// `stsguard.io/protect` (none: no annotation).
fn sts(name: &str, replicas: Option<i32>, protect: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "cap", "annotations": {}},
        "spec": {
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "i"}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
    });
    if let Some(n) = replicas {
        v["spec"]["replicas"] = n.into();
    }
    if let Some(p) = protect {
        v["metadata"]["annotations"]["stsguard.io/protect"] = p.into();
    }
    v
}

fn typed(objects: &[serde_json::Value]) -> Vec<StatefulSet> {
    objects
        .iter()
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect()
}

/// The server's look-ups (its watch-cache stores, filled once) holding `objects`.
fn caches(objects: &[serde_json::Value]) -> Arc<dyn Lookups> {
    WatchLookups::from_objects(vec![], vec![], vec![], typed(objects))
}

fn app(policy: Policy, lookups: Arc<dyn Lookups>) -> axum::Router {
    router(
        AppState::new(policy, lookups),
        std::time::Duration::from_secs(10),
    )
}

async fn post(app: &axum::Router, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let body = serde_json::to_vec(body).unwrap();
    let req = axum::http::Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// Posts a review to `/validate`; checks what every answer must be (the uid echoed, no patch on
/// a DELETE) and returns the response.
async fn validate(app: &axum::Router, review: &serde_json::Value) -> serde_json::Value {
    let answer = post(app, "/validate", review).await;
    let r = answer["response"].clone();
    assert_eq!(r["uid"], review["request"]["uid"], "the uid is echoed");
    assert!(
        r.get("patch").is_none() && r.get("patchType").is_none(),
        "a DELETE is never patched: {r}"
    );
    r
}

fn message(r: &serde_json::Value) -> &str {
    r["status"]["message"].as_str().unwrap_or("")
}

fn warnings(r: &serde_json::Value) -> Vec<String> {
    r["warnings"]
        .as_array()
        .map(|w| w.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn namespace_delete() -> serde_json::Value {
    read_json(&local_fixture("admission/namespace-DELETE.validating.json"))
}

/// `kubectl delete pvc NAME` (the captured review, retargeted).
fn claim_delete(name: &str) -> serde_json::Value {
    let mut r = read_json(&local_fixture(
        "admission/persistentvolumeclaim-DELETE.validating.json",
    ));
    r["request"]["name"] = name.into();
    r["request"]["oldObject"]["metadata"]["name"] = name.into();
    r
}

/// The namespace controller's delete of claim NAME: no `request.name`.
fn claim_delete_by_collection(name: &str) -> serde_json::Value {
    let mut r = read_json(&local_fixture(
        "admission/persistentvolumeclaim-DELETE-by-namespace-controller.validating.json",
    ));
    assert!(
        r["request"].get("name").is_none(),
        "the captured review has no request.name"
    );
    r["request"]["oldObject"]["metadata"]["name"] = name.into();
    r
}

#[tokio::test]
async fn a_namespace_holding_a_protected_statefulset_is_not_deleted() {
    let app = app(
        Policy::default(),
        caches(&[
            sts("db", Some(3), Some("true")),
            sts("cache", Some(1), None),
            // Another namespace's protected StatefulSet holds only its own.
            {
                let mut other = sts("db", Some(3), Some("true"));
                other["metadata"]["namespace"] = "other".into();
                other
            },
        ]),
    );
    let r = validate(&app, &namespace_delete()).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["status"]["code"], 403);
    assert_eq!(
        message(&r),
        "stsguard denied the request: [delete-protection] namespace cap holds protected StatefulSet db; \
         to delete the namespace, first: kubectl -n cap annotate sts db stsguard.io/protect=false --overwrite"
    );
    // A dry run is judged the same, before anything is deleted.
    let mut dry = namespace_delete();
    dry["request"]["dryRun"] = true.into();
    let d = validate(&app, &dry).await;
    assert_eq!(d["allowed"], false);
    assert_eq!(message(&d), message(&r));
}

#[tokio::test]
async fn unprotected_or_terminating_statefulsets_do_not_hold_their_namespace_yet_claims_stay_kept()
{
    let mut terminating = sts("old", Some(3), Some("true"));
    terminating["metadata"]["deletionTimestamp"] = "2026-12-04T15:30:00Z".into();
    terminating["metadata"]["finalizers"] = serde_json::json!(["foregroundDeletion"]);
    let app = app(
        Policy::default(),
        caches(&[
            sts("plain", Some(3), None),
            sts("off", Some(3), Some("false")),
            sts("spaced", Some(3), Some(" false ")),
            terminating,
        ]),
    );
    let r = validate(&app, &namespace_delete()).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert!(warnings(&r).is_empty(), "{r}");
    // A protected StatefulSet being deleted still keeps its claims: they are what goes next (the
    // garbage collector deletes them under whenDeleted: Delete, the namespace controller after).
    let r = validate(&app, &claim_delete_by_collection("data-old-0")).await;
    assert_eq!(r["allowed"], false, "{r}");
    for free in ["data-plain-0", "data-off-0", "data-spaced-0"] {
        assert_eq!(
            validate(&app, &claim_delete_by_collection(free)).await["allowed"],
            true
        );
    }
    // Nothing at all in the namespace.
    let empty = self::app(Policy::default(), caches(&[]));
    assert_eq!(validate(&empty, &namespace_delete()).await["allowed"], true);
}

#[tokio::test]
async fn many_protected_statefulsets_are_named_by_the_first_few_and_counted() {
    let sets: Vec<serde_json::Value> = (0..1000)
        .rev()
        .map(|i| sts(&format!("s{i:04}"), Some(1), Some("true")))
        .collect();
    let app = app(Policy::default(), caches(&sets));
    let r = validate(&app, &namespace_delete()).await;
    assert_eq!(r["allowed"], false);
    let m = message(&r);
    assert!(
        m.contains(
            "namespace cap holds 1000 protected StatefulSets: s0000, s0001, s0002, s0003, s0004 and 995 more;"
        ),
        "{m}"
    );
    assert!(
        m.ends_with(
            "first: kubectl -n cap annotate sts --all stsguard.io/protect=false --overwrite"
        ),
        "{m}"
    );
    assert!(
        m.len() < 400,
        "the message does not grow with the namespace: {m}"
    );
}

/// Look-ups that count what the rules ask, over a fixed set of StatefulSets.
struct Counting {
    sets: Vec<Arc<StatefulSet>>,
    namespace_lists: AtomicUsize,
    others: AtomicUsize,
}

impl Lookups for Counting {
    fn service(&self, _: &str, _: &str) -> Lookup<Arc<k8s_openapi::api::core::v1::Service>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        Lookup::Missing
    }
    fn storage_class(
        &self,
        _: Option<&str>,
    ) -> Lookup<Arc<k8s_openapi::api::storage::v1::StorageClass>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        Lookup::Missing
    }
    fn pdbs(&self, _: &str) -> Lookup<Vec<Arc<k8s_openapi::api::policy::v1::PodDisruptionBudget>>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        Lookup::Missing
    }
    fn statefulset(&self, _: &str, _: &str) -> Lookup<Arc<StatefulSet>> {
        self.others.fetch_add(1, Ordering::Relaxed);
        Lookup::Missing
    }
    fn statefulsets_in(&self, namespace: &str) -> Lookup<Vec<Arc<StatefulSet>>> {
        assert_eq!(namespace, "cap");
        self.namespace_lists.fetch_add(1, Ordering::Relaxed);
        Lookup::Found(self.sets.clone())
    }
}

/// The work of a namespace or claim DELETE: one look-up of the namespace's StatefulSets, then
/// each StatefulSet read once (no look-up per StatefulSet), whatever their number; the answer
/// for 1,000 StatefulSets is the one for 10 with the count changed.
#[tokio::test]
async fn a_delete_review_makes_one_look_up_whatever_the_namespace_holds() {
    for n in [10, 1000] {
        let sets: Vec<Arc<StatefulSet>> = typed(
            &(0..n)
                .map(|i| sts(&format!("s{i:04}"), Some(3), Some("true")))
                .collect::<Vec<_>>(),
        )
        .into_iter()
        .map(Arc::new)
        .collect();
        let counting = Arc::new(Counting {
            sets,
            namespace_lists: AtomicUsize::new(0),
            others: AtomicUsize::new(0),
        });
        let app = app(Policy::default(), counting.clone());
        let ns = validate(&app, &namespace_delete()).await;
        assert_eq!(ns["allowed"], false);
        assert!(
            message(&ns).contains(&format!("holds {n} protected StatefulSets")),
            "{}",
            message(&ns)
        );
        // The last StatefulSet's claim: every StatefulSet before it is passed over.
        let last = format!("data-s{:04}-2", n - 1);
        let claim = validate(&app, &claim_delete(&last)).await;
        assert_eq!(claim["allowed"], false, "{claim}");
        assert_eq!(counting.namespace_lists.load(Ordering::Relaxed), 2);
        assert_eq!(counting.others.load(Ordering::Relaxed), 0);
    }
}

#[tokio::test]
async fn claims_of_the_ordinals_in_use_are_kept_and_those_above_replicas_are_not() {
    let app = app(
        Policy::default(),
        caches(&[sts("db", Some(3), Some("true"))]),
    );
    // kubectl delete pvc data-db-2 (captured), and its dry run of data-db-0 (captured).
    let r = validate(
        &app,
        &read_json(&local_fixture(
            "admission/persistentvolumeclaim-DELETE.validating.json",
        )),
    )
    .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(
        message(&r),
        "stsguard denied the request: [delete-protection] PersistentVolumeClaim data-db-2 holds the data of \
         protected StatefulSet db (spec.volumeClaimTemplates[0] \"data\" of pod db-2; pods db-0..db-2 in use); \
         to delete it, first: kubectl -n cap annotate sts db stsguard.io/protect=false --overwrite"
    );
    let dry = validate(
        &app,
        &read_json(&local_fixture(
            "admission/persistentvolumeclaim-DELETE-dryrun-server.validating.json",
        )),
    )
    .await;
    assert_eq!(dry["allowed"], false, "{dry}");
    assert!(message(&dry).contains("PersistentVolumeClaim data-db-0 "));
    // The namespace controller's delete names the claim only in oldObject.
    let r = validate(
        &app,
        &read_json(&local_fixture(
            "admission/persistentvolumeclaim-DELETE-by-namespace-controller.validating.json",
        )),
    )
    .await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r)
            .contains("PersistentVolumeClaim data-db-0 holds the data of protected StatefulSet db"),
        "{}",
        message(&r)
    );
    for name in ["data-db-1", "data-db-2"] {
        let r = validate(&app, &claim_delete_by_collection(name)).await;
        assert_eq!(r["allowed"], false, "{name}: {r}");
    }
    // Left by a scale-down (and what the garbage collector deletes under whenScaled: Delete).
    for name in ["data-db-3", "data-db-5"] {
        for review in [claim_delete(name), claim_delete_by_collection(name)] {
            let r = validate(&app, &review).await;
            assert_eq!(r["allowed"], true, "{name}: {r}");
            assert!(warnings(&r).is_empty(), "{r}");
        }
    }
}

#[tokio::test]
async fn replicas_default_to_one_and_ordinals_start_shifts_the_claims_in_use() {
    let mut shifted = sts("db", Some(3), Some("true"));
    shifted["spec"]["ordinals"] = serde_json::json!({"start": 2});
    let app = app(
        Policy::default(),
        caches(&[shifted, sts("one", None, Some("true"))]),
    );
    for (claim, kept) in [
        ("data-db-0", false),
        ("data-db-1", false),
        ("data-db-2", true),
        ("data-db-3", true),
        ("data-db-4", true),
        ("data-db-5", false),
        ("data-one-0", true),
        ("data-one-1", false),
    ] {
        let r = validate(&app, &claim_delete(claim)).await;
        assert_eq!(r["allowed"], !kept, "{claim}: {r}");
    }
    let r = validate(&app, &claim_delete("data-db-4")).await;
    assert!(
        message(&r).contains("of pod db-4; pods db-2..db-4 in use"),
        "{}",
        message(&r)
    );
}

#[tokio::test]
async fn a_claim_the_pod_template_mounts_by_name_is_kept() {
    let mut db = sts("db", Some(0), Some("true"));
    db["spec"]["template"]["spec"]["volumes"] = serde_json::json!([
        {"name": "config", "persistentVolumeClaim": {"claimName": "db-config", "readOnly": true}},
        // Named like a claim template: the controller replaces it with the pod's own claim.
        {"name": "data", "persistentVolumeClaim": {"claimName": "placeholder"}},
    ]);
    let app = app(Policy::default(), caches(&[db]));
    let r = validate(&app, &claim_delete("db-config")).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains(
            "PersistentVolumeClaim db-config holds the data of protected StatefulSet db \
             (spec.template.spec.volumes[0] \"config\" mounts it)"
        ),
        "{}",
        message(&r)
    );
    for free in ["placeholder", "data-db-0"] {
        let r = validate(&app, &claim_delete(free)).await;
        assert_eq!(r["allowed"], true, "{free}: {r}");
    }
}

#[tokio::test]
async fn every_claim_of_an_unprotected_statefulset_may_be_deleted() {
    let mut mounted = sts("web", Some(2), Some("false"));
    mounted["spec"]["template"]["spec"]["volumes"] = serde_json::json!([{"name": "shared", "persistentVolumeClaim": {"claimName": "web-shared"}}]);
    let app = app(
        Policy::default(),
        caches(&[sts("db", Some(3), None), mounted]),
    );
    for claim in ["data-db-0", "data-db-2", "data-web-1", "web-shared"] {
        let r = validate(&app, &claim_delete_by_collection(claim)).await;
        assert_eq!(r["allowed"], true, "{claim}: {r}");
    }
}

#[tokio::test]
async fn a_claim_name_that_merely_looks_alike_is_allowed() {
    // Names with '-' in both the template and the StatefulSet: "data-db-x-0" is db-x's, not db's.
    let mut dashed = sts("db-x", Some(1), Some("true"));
    dashed["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] = "my-data".into();
    let app = app(
        Policy::default(),
        caches(&[sts("db", Some(3), Some("true")), dashed]),
    );
    for claim in [
        "data-db-00",
        "data-db-01",
        "data-db-+1",
        "data-db--1",
        "data-db-1x",
        "data-db-1 ",
        "data-db-",
        "data-db",
        "datadb-0",
        "data-db0",
        "xdata-db-0",
        "data-db-x-0",
        "data-db-99999999999999999999",
        "my-data-db-0",
        "my-data-db-x-1",
        "data-dB-0",
    ] {
        let r = validate(&app, &claim_delete(claim)).await;
        assert_eq!(
            r["allowed"], true,
            "{claim:?} only looks like a kept claim: {r}"
        );
    }
    let r = validate(&app, &claim_delete("my-data-db-x-0")).await;
    assert_eq!(r["allowed"], false, "{r}");
    assert!(
        message(&r).contains(
            "protected StatefulSet db-x (spec.volumeClaimTemplates[0] \"my-data\" of pod db-x-0"
        ),
        "{}",
        message(&r)
    );
}

#[tokio::test]
async fn a_protect_value_neither_true_nor_false_keeps_and_is_named_with_the_fix() {
    let app = app(
        Policy::default(),
        caches(&[
            sts("db", Some(3), Some("yes")),
            sts("web", Some(1), Some("")),
        ]),
    );
    let r = validate(&app, &namespace_delete()).await;
    assert_eq!(r["allowed"], false);
    assert_eq!(
        message(&r),
        "stsguard denied the request: [delete-protection] namespace cap holds 2 protected StatefulSets: \
         db (its stsguard.io/protect: \"yes\" is neither \"true\" nor \"false\": read as \"true\"), \
         web (its stsguard.io/protect: \"\" is neither \"true\" nor \"false\": read as \"true\"); \
         to delete the namespace, first: kubectl -n cap annotate sts --all stsguard.io/protect=false --overwrite"
    );
    let r = validate(&app, &claim_delete("data-db-1")).await;
    assert_eq!(r["allowed"], false);
    assert!(
        message(&r).contains("pods db-0..db-2 in use; its stsguard.io/protect: \"yes\" is neither"),
        "{}",
        message(&r)
    );
    // The StatefulSet's own DELETE (the captured review of `web`, annotated).
    let mut del = read_json(&local_fixture(
        "admission/statefulset-DELETE.validating.json",
    ));
    del["request"]["oldObject"]["metadata"]["annotations"]["stsguard.io/protect"] = "True".into();
    let r = validate(&app, &del).await;
    assert_eq!(r["allowed"], false);
    let ns = del["request"]["namespace"].as_str().unwrap();
    assert_eq!(
        message(&r),
        format!(
            "stsguard denied the request: [delete-protection] StatefulSet web is kept by stsguard.io/protect: \"True\", \
             which is neither \"true\" nor \"false\" (read as \"true\"); to delete it, first: \
             kubectl -n {ns} annotate sts web stsguard.io/protect=false --overwrite"
        )
    );
}

#[tokio::test]
async fn a_review_the_caches_cannot_answer_follows_on_error_and_says_so() {
    let unsynced: Arc<dyn Lookups> =
        Arc::new(NoLookups("StatefulSet watch cache not synced".into()));
    let allow = app(Policy::default(), unsynced.clone());
    let deny = app(
        Policy {
            on_error: OnError::Deny,
            ..Default::default()
        },
        unsynced,
    );
    for (review, object) in [
        (namespace_delete(), "Namespace cap"),
        (
            claim_delete_by_collection("data-db-0"),
            "PersistentVolumeClaim cap/data-db-0",
        ),
    ] {
        let r = validate(&allow, &review).await;
        assert_eq!(r["allowed"], true, "onError: allow: {r}");
        assert_eq!(
            warnings(&r),
            [format!(
                "{object}: stsguard could not evaluate this request: [delete-protection] not checked: \
              the StatefulSets of namespace cap (StatefulSet watch cache not synced)"
            )]
        );
        let r = validate(&deny, &review).await;
        assert_eq!(r["allowed"], false, "onError: deny: {r}");
        assert_eq!(
            message(&r),
            "stsguard could not evaluate this request: [delete-protection] not checked: \
             the StatefulSets of namespace cap (StatefulSet watch cache not synced)"
        );
    }
}

#[tokio::test]
async fn excluded_namespaces_and_a_rule_turned_off_keep_nothing() {
    let protected = caches(&[sts("db", Some(3), Some("true"))]);
    let excluded = app(
        Policy {
            exclude_namespaces: vec!["cap".to_string()].into(),
            ..Default::default()
        },
        protected.clone(),
    );
    // The Namespace's review names the namespace itself as its namespace.
    for review in [namespace_delete(), claim_delete("data-db-0")] {
        let r = validate(&excluded, &review).await;
        assert_eq!(r["allowed"], true, "{r}");
        assert!(warnings(&r).is_empty(), "excluded: not judged at all: {r}");
    }
    let off = app(
        Policy::from_yaml("validation: {rules: {delete-protection: off}}", "t").unwrap(),
        protected.clone(),
    );
    for review in [namespace_delete(), claim_delete("data-db-0")] {
        assert_eq!(validate(&off, &review).await["allowed"], true);
    }
    let warn = app(
        Policy::from_yaml("validation: {rules: {delete-protection: warn}}", "t").unwrap(),
        protected,
    );
    let r = validate(&warn, &namespace_delete()).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(
        warnings(&r),
        [
            "Namespace cap: [delete-protection] namespace cap holds protected StatefulSet db; to delete \
          the namespace, first: kubectl -n cap annotate sts db stsguard.io/protect=false --overwrite"
        ]
    );
}

#[tokio::test]
async fn each_statefulset_holds_at_its_own_mode_when_overrides_are_allowed() {
    let mut relaxed = sts("relaxed", Some(1), Some("true"));
    relaxed["metadata"]["annotations"]["stsguard.io/rule.delete-protection"] = "warn".into();
    let mut off = sts("off", Some(1), Some("true"));
    off["metadata"]["annotations"]["stsguard.io/rule.delete-protection"] = "off".into();
    let sets = caches(&[relaxed, off]);
    let allowing = Policy::from_yaml("validation: {allowObjectOverrides: true}", "t").unwrap();
    let app_ = app(allowing, sets.clone());
    let r = validate(&app_, &namespace_delete()).await;
    assert_eq!(r["allowed"], true, "{r}");
    let w = warnings(&r);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(
            "Namespace cap: [delete-protection] namespace cap holds protected StatefulSet relaxed;"
        ),
        "{w:?}"
    );
    // Without allowObjectOverrides the annotations relax nothing.
    let strict = app(Policy::default(), sets);
    let r = validate(&strict, &namespace_delete()).await;
    assert_eq!(r["allowed"], false);
    assert!(message(&r).contains("holds 2 protected StatefulSets: off, relaxed;"));
}

/// The log line of a claim the namespace controller deletes by collection names the claim (the
/// review carries no `request.name`), and its counted kind is one of the fixed set.
#[test]
fn the_summary_names_a_claim_deleted_by_collection() {
    let lookups = caches(&[sts("db", Some(3), Some("true"))]);
    let body = serde_json::to_vec(&claim_delete_by_collection("data-db-1")).unwrap();
    let a = stsguard::admission::answer(
        stsguard::admission::Endpoint::Validate,
        &body,
        &Policy::default(),
        &*lookups,
    )
    .unwrap();
    let s = &a.summary;
    assert_eq!(
        (s.kind.as_str(), s.namespace.as_str(), s.name.as_str()),
        ("PersistentVolumeClaim", "cap", "data-db-1")
    );
    assert_eq!((s.operation, s.allowed), ("DELETE", false));
    assert_eq!(
        stsguard::server::metrics::kind_label(&s.kind),
        "PersistentVolumeClaim"
    );
    assert_eq!(
        stsguard::server::metrics::kind_label("Namespace"),
        "Namespace"
    );
}
