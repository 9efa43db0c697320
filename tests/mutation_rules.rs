//! One test per mutation decision, and /mutate over HTTPS for the captured CREATE,
//! UPDATE and DELETE reviews (tests/fixtures/admission).

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Affinity, Container, PodSpec};
use stsguard::mutate::{Mutation, mutate};

use common::full_diff as patch_for;
use stsguard::policy::Policy;

fn sts(yaml: &str) -> StatefulSet {
    stsguard::yaml::from_str(yaml).unwrap()
}

const BASE: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: ns}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: db
"#;

fn with(f: impl FnOnce(&mut StatefulSet)) -> StatefulSet {
    let mut s = sts(BASE);
    f(&mut s);
    s
}

fn pod(s: &StatefulSet) -> &PodSpec {
    s.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn affinity(m: &Mutation) -> Affinity {
    pod(&m.object).affinity.clone().unwrap_or_default()
}

fn run(s: &StatefulSet) -> Mutation {
    let m = mutate(s, &Policy::default());
    let again = mutate(&m.object, &Policy::default());
    assert!(
        patch_for(&m.object, &again.object).unwrap().0.is_empty(),
        "not idempotent"
    );
    m
}

fn annotate(s: &mut StatefulSet, k: &str, v: &str) {
    s.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(k.into(), v.into());
}

#[test]
fn default_is_one_preferred_term_on_the_selector() {
    let m = run(&sts(BASE));
    let anti = affinity(&m).pod_anti_affinity.unwrap();
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .is_none()
    );
    let pref = anti
        .preferred_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(pref.len(), 1);
    assert_eq!(pref[0].weight, 100);
    assert_eq!(
        pref[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    assert_eq!(
        pref[0].pod_affinity_term.label_selector.as_ref(),
        Some(&sts(BASE).spec.unwrap().selector)
    );
}

#[test]
fn host_path_makes_it_required() {
    let s = with(|s| {
        pod_mut(s).volumes = Some(vec![
            stsguard::yaml::from_str("{name: h, hostPath: {path: /var/data}}").unwrap(),
        ]);
    });
    let m = run(&s);
    let anti = affinity(&m).pod_anti_affinity.unwrap();
    assert_eq!(
        anti.required_during_scheduling_ignored_during_execution
            .unwrap()
            .len(),
        1
    );
    assert!(
        anti.preferred_during_scheduling_ignored_during_execution
            .is_none()
    );
    // An explicit annotation still wins.
    let mut s2 = s.clone();
    annotate(&mut s2, "stsguard.io/anti-affinity", "preferred");
    assert!(
        affinity(&run(&s2))
            .pod_anti_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .is_none()
    );
}

fn pod_mut(s: &mut StatefulSet) -> &mut PodSpec {
    s.spec.as_mut().unwrap().template.spec.as_mut().unwrap()
}

#[test]
fn an_equivalent_term_is_left_alone() {
    // Same topology key, a different selector that still selects the pods.
    let s = with(|s| {
        pod_mut(s).affinity = Some(
            stsguard::yaml::from_str(
                r#"
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
  - topologyKey: kubernetes.io/hostname
    labelSelector:
      matchExpressions: [{key: app, operator: In, values: [db, web]}]
"#,
            )
            .unwrap(),
        )
    });
    let m = run(&s);
    assert_eq!(
        pod(&m.object).affinity,
        pod(&s).affinity,
        "user term untouched, nothing added"
    );
    // A term on another topology key is not equivalent: ours is added, theirs kept first.
    let s = with(|s| {
        pod_mut(s).affinity = Some(
            stsguard::yaml::from_str(
                "podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: [{weight: 5, podAffinityTerm: {topologyKey: topology.kubernetes.io/zone, labelSelector: {matchLabels: {app: db}}}}]}",
            )
            .unwrap(),
        )
    });
    let pref = affinity(&run(&s))
        .pod_anti_affinity
        .unwrap()
        .preferred_during_scheduling_ignored_during_execution
        .unwrap();
    assert_eq!(pref.len(), 2);
    assert_eq!(pref[0].weight, 5);
    assert_eq!(
        pref[1].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );
    // A term whose selector does not select the pods (zk-k8s-website's mismatch) is not equivalent.
    let s = with(|s| {
        pod_mut(s).affinity = Some(
            stsguard::yaml::from_str(
                "podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: other}}}]}",
            )
            .unwrap(),
        )
    });
    let anti = affinity(&run(&s)).pod_anti_affinity.unwrap();
    assert_eq!(
        anti.required_during_scheduling_ignored_during_execution
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        anti.preferred_during_scheduling_ignored_during_execution
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn replicas_zero_one_and_unset_still_get_the_term() {
    for r in [Some(0), Some(1), None] {
        let s = with(|s| s.spec.as_mut().unwrap().replicas = r);
        let anti = affinity(&run(&s)).pod_anti_affinity.unwrap();
        assert_eq!(
            anti.preferred_during_scheduling_ignored_during_execution
                .unwrap()
                .len(),
            1,
            "replicas {r:?}"
        );
    }
}

#[test]
fn match_expressions_are_carried_into_the_term() {
    let s = with(|s| {
        s.spec.as_mut().unwrap().selector =
            stsguard::yaml::from_str("{matchLabels: {app: db}, matchExpressions: [{key: tier, operator: NotIn, values: [cache]}]}").unwrap();
    });
    let pref = affinity(&run(&s))
        .pod_anti_affinity
        .unwrap()
        .preferred_during_scheduling_ignored_during_execution
        .unwrap();
    let sel = pref[0].pod_affinity_term.label_selector.clone().unwrap();
    assert_eq!(sel.match_expressions.unwrap()[0].operator, "NotIn");
    assert_eq!(sel.match_labels.unwrap()["app"], "db");
}

#[test]
fn none_and_opt_outs() {
    let mut s = sts(BASE);
    annotate(&mut s, "stsguard.io/anti-affinity", "none");
    assert!(
        run(&s)
            .object
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .affinity
            .is_none()
    );
    let mut s = sts(BASE);
    annotate(&mut s, "stsguard.io/mutate", "false");
    assert!(patch_for(&s, &run(&s).object).unwrap().0.is_empty());
    let mut s = sts(BASE);
    annotate(&mut s, "stsguard.io/ordinal-env", "false");
    assert!(pod(&run(&s).object).containers[0].env.is_none());
    let mut s = sts(BASE);
    s.metadata.namespace = Some("kube-system".into());
    assert!(patch_for(&s, &run(&s).object).unwrap().0.is_empty());
}

fn env_names(c: &Container) -> Vec<String> {
    c.env.iter().flatten().map(|e| e.name.clone()).collect()
}

#[test]
fn identity_env_in_every_container_in_order() {
    let s = with(|s| {
        let p = pod_mut(s);
        p.init_containers = Some(vec![
            stsguard::yaml::from_str("{name: init, image: x}").unwrap(),
            stsguard::yaml::from_str("{name: sidecar, image: x, restartPolicy: Always}").unwrap(),
        ]);
    });
    let m = run(&s);
    let want = [
        "POD_NAME",
        "POD_NAMESPACE",
        "POD_ORDINAL",
        "STATEFULSET_NAME",
        "STATEFULSET_SERVICE",
        "POD_FQDN",
    ];
    let p = pod(&m.object);
    for c in p
        .containers
        .iter()
        .chain(p.init_containers.iter().flatten())
    {
        assert_eq!(env_names(c), want, "{}", c.name);
    }
    let e = &p.containers[0].env.as_ref().unwrap();
    assert_eq!(
        e[2].value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "metadata.labels['apps.kubernetes.io/pod-index']"
    );
    assert_eq!(
        e[5].value.as_deref(),
        Some("$(POD_NAME).db.$(POD_NAMESPACE).svc.cluster.local")
    );
    // clusterDomain from the policy
    let policy = Policy {
        cluster_domain: "corp.example".into(),
        ..Default::default()
    };
    let m = mutate(&s, &policy);
    assert!(
        pod(&m.object).containers[0].env.as_ref().unwrap()[5]
            .value
            .as_deref()
            .unwrap()
            .ends_with(".svc.corp.example")
    );
}

#[test]
fn a_name_the_user_defined_is_kept_with_a_warning() {
    let s = with(|s| {
        pod_mut(s).containers[0].env = Some(vec![
            stsguard::yaml::from_str("{name: POD_NAME, value: mine}").unwrap(),
        ]);
    });
    let m = run(&s);
    let env = pod(&m.object).containers[0].env.clone().unwrap();
    assert_eq!(env.iter().filter(|e| e.name == "POD_NAME").count(), 1);
    assert_eq!(env[0].value.as_deref(), Some("mine"));
    assert!(
        m.report
            .warnings
            .iter()
            .any(|w| w.contains("POD_NAME") && w.contains("kept")),
        "{:?}",
        m.report.warnings
    );
}

#[test]
fn a_user_var_referencing_ours_still_resolves() {
    // Kubernetes expands $(VAR) only from variables defined earlier in the list.
    let s = with(|s| {
        pod_mut(s).containers[0].env = Some(vec![
            stsguard::yaml::from_str("{name: FIRST, value: plain}").unwrap(),
            stsguard::yaml::from_str("{name: PEERS, value: 'http://$(POD_FQDN):2380'}").unwrap(),
            stsguard::yaml::from_str("{name: LAST, value: x}").unwrap(),
        ]);
    });
    let m = run(&s);
    let names = env_names(&pod(&m.object).containers[0]);
    let fqdn = names.iter().position(|n| n == "POD_FQDN").unwrap();
    let name = names.iter().position(|n| n == "POD_NAME").unwrap();
    let peers = names.iter().position(|n| n == "PEERS").unwrap();
    assert!(name < fqdn && fqdn < peers, "{names:?}");
    assert_eq!(
        names[0], "FIRST",
        "variables before the reference stay first: {names:?}"
    );
}

#[test]
fn no_service_name_skips_service_vars_with_a_warning() {
    let s = with(|s| s.spec.as_mut().unwrap().service_name = None);
    let m = run(&s);
    let names = env_names(&pod(&m.object).containers[0]);
    assert_eq!(
        names,
        [
            "POD_NAME",
            "POD_NAMESPACE",
            "POD_ORDINAL",
            "STATEFULSET_NAME"
        ]
    );
    assert!(m.report.warnings.iter().any(|w| w.contains("serviceName")));
}

#[test]
fn api_server_defaulting_does_not_cause_a_second_patch() {
    // The API server stores fieldRef.apiVersion: v1; an UPDATE carries it back.
    let m = run(&sts(BASE));
    let mut stored = serde_json::to_value(&m.object).unwrap();
    for e in stored["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
    {
        if let Some(f) = e.pointer_mut("/valueFrom/fieldRef") {
            f["apiVersion"] = "v1".into();
        }
    }
    let stored: StatefulSet = serde_json::from_value(stored).unwrap();
    let again = mutate(&stored, &Policy::default());
    assert!(patch_for(&stored, &again.object).unwrap().0.is_empty());
    assert!(
        again.report.warnings.is_empty(),
        "{:?}",
        again.report.warnings
    );
}

// ---- over HTTPS, with the captured reviews ----

async fn post(s: &TestServer, body: &serde_json::Value) -> serde_json::Value {
    let c = client(&s.ca_pem, true);
    let r = c
        .post(format!(
            "https://localhost:{}/mutate?timeout=5s",
            s.addr.port()
        ))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn ops(p: &json_patch::Patch) -> Vec<String> {
    p.0.iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect()
}

#[tokio::test]
async fn https_create_update_delete() {
    let s = start_default().await;
    let dir = fixtures().join("admission");
    let create = read_json(&dir.join("statefulset-CREATE.mutating.json"));
    let update = read_json(&dir.join("statefulset-UPDATE-apply.mutating.json"));
    let delete = read_json(&dir.join("statefulset-DELETE.mutating.json"));

    let c = post(&s, &create).await;
    assert_eq!(c["response"]["uid"], create["request"]["uid"]);
    let cp = patch_of(&c).expect("CREATE is patched");
    // The patch over HTTPS is exactly the core's diff for that object.
    let obj: StatefulSet = serde_json::from_value(create["request"]["object"].clone()).unwrap();
    let core = stsguard::mutate::patch::statefulset(&obj, &mutate(&obj, &Policy::default()).object)
        .unwrap();
    assert_eq!(ops(&cp), ops(&core));

    // UPDATE of the same user manifest (kubectl apply) over a stored object stsguard never
    // mutated (created before it): the template is unchanged, so nothing is added (no rollout
    // caused by stsguard).
    let u = post(&s, &update).await;
    assert_eq!(u["response"]["uid"], update["request"]["uid"]);
    assert!(patch_of(&u).is_none(), "{u}");
    // Over the mutated stored object, an UPDATE that sends the user's original template (a
    // replace) changes the template: mutated again, to the same template as stored.
    let mut created = create["request"]["object"].clone();
    json_patch::patch(&mut created, &cp).unwrap();
    let mut replace = update.clone();
    replace["request"]["oldObject"]["spec"]["template"] = created["spec"]["template"].clone();
    let up = patch_of(&post(&s, &replace).await).expect("a template change is mutated");
    assert_eq!(ops(&up), ops(&cp));
    let mut updated = update["request"]["object"].clone();
    json_patch::patch(&mut updated, &up).unwrap();
    assert_eq!(
        created["spec"]["template"]["spec"]["affinity"],
        updated["spec"]["template"]["spec"]["affinity"],
    );
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["env"],
        updated["spec"]["template"]["spec"]["containers"][0]["env"],
    );
    // An UPDATE whose object is already mutated (the stored object re-applied): no patch, no rollout.
    let mut again = update.clone();
    again["request"]["object"] = updated;
    assert!(patch_of(&post(&s, &again).await).is_none());

    // DELETE: allowed, never a patch.
    let d = post(&s, &delete).await;
    assert_eq!(d["response"]["uid"], delete["request"]["uid"]);
    assert_eq!(d["response"]["allowed"], true);
    assert!(d["response"].get("patch").is_none());
    assert!(d["response"].get("patchType").is_none());
}

/// Found by tests/fuzz.rs: k8s-openapi reads `template: null` as an empty template; a patch
/// adding under /spec/template would not apply to the JSON the API server holds.
#[test]
fn a_null_template_gets_no_patch() {
    let mut r = read_json(&local_fixture("admission/statefulset-CREATE.mutating.json"));
    for bad in [serde_json::Value::Null, serde_json::json!("x")] {
        r["request"]["object"]["spec"]["template"] = bad;
        let a = stsguard::admission::answer(
            stsguard::admission::Endpoint::Mutate,
            &serde_json::to_vec(&r).unwrap(),
            &Policy::default(),
            &stsguard::validate::NoLookups("t".into()),
        )
        .unwrap();
        let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert!(patch_of(&out).is_none());
        assert_eq!(out["response"]["allowed"], true);
        assert!(
            out["response"]["warnings"][0]
                .as_str()
                .unwrap()
                .contains("spec.template is not an object")
                || out["response"]["warnings"][0]
                    .as_str()
                    .unwrap()
                    .contains("expected PodTemplateSpec")
        );
    }
    r["request"]["object"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("template");
    let a = stsguard::admission::answer(
        stsguard::admission::Endpoint::Mutate,
        &serde_json::to_vec(&r).unwrap(),
        &Policy::default(),
        &stsguard::validate::NoLookups("t".into()),
    )
    .unwrap();
    assert!(patch_of(&serde_json::from_slice(&a.body).unwrap()).is_none());
}

#[test]
fn role_image_pull_secrets_only_where_the_user_set_none() {
    let mut policy = Policy::default();
    policy.mutation.roles.image_pull_secrets = vec!["registry-a".into()];
    let with_roles = with(|s| annotate(s, "stsguard.io/roles", "primary=0,replica=*"));
    let m = mutate(&with_roles, &policy);
    let secrets: Vec<String> = pod(&m.object)
        .image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(secrets, vec!["registry-a"]);
    // Idempotent, and the server's patch only adds and gives the mutated object.
    assert!(
        patch_for(&m.object, &mutate(&m.object, &policy).object)
            .unwrap()
            .0
            .is_empty()
    );
    let patch = stsguard::mutate::patch::statefulset(&with_roles, &m.object).unwrap();
    let mut doc = serde_json::to_value(&with_roles).unwrap();
    common::apply_adds_only(&mut doc, &patch).unwrap();
    assert_eq!(doc, serde_json::to_value(&m.object).unwrap());
    // The user's own secrets stay as they are.
    let mut own = with_roles.clone();
    own.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .image_pull_secrets = Some(vec![k8s_openapi::api::core::v1::LocalObjectReference {
        name: "mine".into(),
    }]);
    let m = mutate(&own, &policy);
    assert_eq!(
        pod(&m.object).image_pull_secrets,
        pod(&own).image_pull_secrets
    );
    // Without roles there is no role image: nothing added.
    let m = mutate(&sts(BASE), &policy);
    assert!(pod(&m.object).image_pull_secrets.is_none());
}

#[test]
fn a_system_role_mount_path_falls_back_to_the_policy_path() {
    let s = with(|s| {
        annotate(s, "stsguard.io/roles", "primary=0,replica=*");
        annotate(s, "stsguard.io/role-mount-path", "/usr/bin");
    });
    let m = run(&s);
    let mounts = pod(&m.object).containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default();
    assert!(
        mounts.iter().any(|v| v.mount_path == "/etc/stsguard"),
        "{mounts:?}"
    );
    assert!(!mounts.iter().any(|v| v.mount_path == "/usr/bin"));
}

/// Identity variables inserted before a user's variable are one `add` at an index each: the
/// user's own entries are never replaced or moved by the patch.
#[test]
fn inserted_variables_are_one_add_each() {
    let s = with(|s| {
        let c = &mut s
            .spec
            .as_mut()
            .unwrap()
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0];
        c.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "APP_URL".into(),
            value: Some("http://$(POD_NAME):8080".into()),
            ..Default::default()
        }]);
    });
    let m = mutate(&s, &Policy::default());
    let env = pod(&m.object).containers[0].env.clone().unwrap_or_default();
    let injected = env.len() - 1;
    assert!(injected >= 4, "{env:?}");
    assert_eq!(env.last().map(|e| e.name.as_str()), Some("APP_URL"));
    let patch = stsguard::mutate::patch::statefulset(&s, &m.object).unwrap();
    let env_ops: Vec<_> = patch
        .0
        .iter()
        .filter(|op| {
            serde_json::to_value(op).unwrap()["path"]
                .as_str()
                .unwrap_or("")
                .starts_with("/spec/template/spec/containers/0/env")
        })
        .collect();
    assert_eq!(
        env_ops.len(),
        injected,
        "{}",
        serde_json::to_string(&patch).unwrap()
    );
    let mut doc = serde_json::to_value(&s).unwrap();
    apply_adds_only(&mut doc, &patch).unwrap();
    assert_eq!(doc, serde_json::to_value(&m.object).unwrap());
}

/// A weaker preferred term of the user's is kept; the warning comes only where other preferred
/// pod (anti-)affinity terms can outweigh it, and its advice is one that changes the outcome:
/// a higher weight while one can win, else the required mode.
#[test]
fn a_kept_weaker_term_is_said_only_where_other_soft_terms_outweigh_it() {
    let with_affinity =
        |yaml: &str| with(|s| pod_mut(s).affinity = Some(stsguard::yaml::from_str(yaml).unwrap()));
    let ours = "{weight: 10, podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: db}}}}";
    let other = |w: i32| {
        format!(
            "{{weight: {w}, podAffinityTerm: {{topologyKey: topology.kubernetes.io/zone, labelSelector: {{matchLabels: {{app: db}}}}}}}}"
        )
    };
    let kept = |m: &Mutation| -> Vec<String> {
        m.report
            .notes
            .iter()
            .filter(|n| n.id == stsguard::mutate::WarningId::AntiAffinityKept)
            .map(|n| n.message.clone())
            .collect()
    };
    // Alone, or against lighter terms: nothing to say.
    for yaml in [
        format!("podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{ours}]}}"),
        format!(
            "podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{ours}, {}]}}",
            other(9)
        ),
    ] {
        let m = run(&with_affinity(&yaml));
        assert_eq!(kept(&m), Vec::<String>::new(), "{yaml}");
        assert_eq!(
            pod(&m.object).affinity,
            Some(stsguard::yaml::from_str(&yaml).unwrap())
        );
    }
    // Another anti-affinity term of 40 and a pod affinity term of 30 weigh 70: raise it past 70.
    let yaml = format!(
        "{{podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{ours}, {}]}}, podAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{}]}}}}",
        other(40),
        other(30)
    );
    let m = run(&with_affinity(&yaml));
    assert_eq!(
        kept(&m),
        [
            "podAntiAffinity term on kubernetes.io/hostname kept at weight 10; other preferred pod (anti-)affinity terms weigh 70: raise its weight above 70"
        ]
    );
    // Past the largest weight (100), no weight wins for sure: the required mode does.
    let yaml = format!(
        "{{podAntiAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{ours}]}}, podAffinity: {{preferredDuringSchedulingIgnoredDuringExecution: [{}, {}]}}}}",
        other(60),
        other(60)
    );
    let m = run(&with_affinity(&yaml));
    assert_eq!(
        kept(&m),
        [
            "podAntiAffinity term on kubernetes.io/hostname kept at weight 10; other preferred pod (anti-)affinity terms weigh 120: set stsguard.io/anti-affinity: required to spread for sure"
        ]
    );
}
