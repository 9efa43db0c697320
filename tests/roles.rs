//! Roles on a real StatefulSet, and the Pod CREATE hook on the captured pod
//! reviews. Reads tests/fixtures.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Container;
use stsguard::mutate::mutate;

use common::full_diff as patch_for;
use stsguard::admission::{Endpoint, answer};
use stsguard::policy::Policy;
use stsguard::validate::NoLookups;

fn mysql_with_roles() -> serde_json::Value {
    let text =
        std::fs::read_to_string(fixtures().join("statefulsets/mysql-k8s-website.yaml")).unwrap();
    let mut raw = stsguard::check::yaml_documents(&text).unwrap().remove(0);
    annotate(
        &mut raw,
        &[
            ("stsguard.io/roles", "primary=0,replica=*"),
            ("stsguard.io/role-config", "mysql"),
            ("stsguard.io/server-id-base", "100"),
        ],
    );
    raw
}

const OURS: &[&str] = &[
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_ORDINAL",
    "STATEFULSET_NAME",
    "STATEFULSET_SERVICE",
    "POD_FQDN",
    "STS_PRIMARY_FQDN",
];

/// A container with stsguard's additions taken out again.
fn without_ours(c: &Container) -> Container {
    let mut c = c.clone();
    if let Some(env) = c.env.as_mut() {
        env.retain(|e| !OURS.contains(&e.name.as_str()));
    }
    if let Some(m) = c.volume_mounts.as_mut() {
        m.retain(|m| m.name != "stsguard-role");
    }
    if c.env.as_ref().is_some_and(|e| e.is_empty()) {
        c.env = None;
    }
    c
}

#[test]
fn mysql_k8s_website_with_roles() {
    let raw = mysql_with_roles();
    let sts: StatefulSet = serde_json::from_value(raw.clone()).unwrap();
    let m = mutate(&sts, &Policy::default());
    assert!(m.report.warnings.is_empty(), "{:?}", m.report.warnings);
    let patch = stsguard::mutate::patch::statefulset(&sts, &m.object).unwrap();
    let mut doc = raw.clone();
    common::apply_adds_only(&mut doc, &patch)
        .expect("the patch only adds to the manifest as written");
    let out: StatefulSet = serde_json::from_value(doc.clone()).unwrap();
    assert!(
        patch_for(&out, &mutate(&out, &Policy::default()).object)
            .unwrap()
            .0
            .is_empty(),
        "second pass not empty"
    );
    assert!(contains(&raw, &doc));

    let before = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let tmpl = &out.spec.as_ref().unwrap().template;
    let pod = tmpl.spec.as_ref().unwrap();
    let inits = pod.init_containers.as_ref().unwrap();
    assert_eq!(
        inits[0].name, "stsguard-role",
        "stsguard-role is the first init container"
    );
    assert_eq!(inits.len(), 3);
    let ours = &inits[0];
    let args = ours.args.clone().unwrap();
    assert_eq!(
        args,
        [
            "role-init",
            "--roles",
            "primary=0,replica=*",
            "--out",
            "/etc/stsguard",
            "--config-dir",
            "/etc/stsguard-config",
            "--server-id-base",
            "100",
            "--cluster-domain",
            "cluster.local"
        ]
    );
    let sc = ours.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_ref().unwrap(),
        &["ALL"]
    );
    assert_eq!(sc.seccomp_profile.as_ref().unwrap().type_, "RuntimeDefault");
    assert!(ours.resources.as_ref().unwrap().limits.is_some());
    let rw = ours
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "stsguard-role")
        .unwrap();
    assert_eq!(rw.read_only, None, "read-write in the role init container");

    // Every other container, the existing init containers too, mounts the role volume read-only.
    for c in inits[1..].iter().chain(pod.containers.iter()) {
        let m = c
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "stsguard-role")
            .unwrap_or_else(|| panic!("{} lacks the mount", c.name));
        assert_eq!(
            (m.mount_path.as_str(), m.read_only),
            ("/etc/stsguard", Some(true)),
            "{}",
            c.name
        );
        let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
        assert!(env.contains(&"STS_PRIMARY_FQDN"), "{}: {env:?}", c.name);
    }
    let fqdn = pod.containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "STS_PRIMARY_FQDN")
        .unwrap();
    assert_eq!(
        fqdn.value.as_deref(),
        Some("mysql-0.mysql.$(POD_NAMESPACE).svc.cluster.local")
    );
    // The user's init containers are otherwise unchanged.
    for (orig, now) in before.init_containers.iter().flatten().zip(&inits[1..]) {
        assert_eq!(&without_ours(now), orig, "{}", orig.name);
    }
    // Volumes, label and annotation for the Pod CREATE hook.
    let vols: Vec<&str> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert!(
        vols.contains(&"stsguard-role") && vols.contains(&"stsguard-role-config"),
        "{vols:?}"
    );
    let cm = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "stsguard-role-config")
        .unwrap();
    assert_eq!(cm.config_map.as_ref().unwrap().name, "mysql");
    let meta = tmpl.metadata.as_ref().unwrap();
    assert_eq!(meta.labels.as_ref().unwrap()["stsguard.io/managed"], "true");
    assert_eq!(
        meta.annotations.as_ref().unwrap()["stsguard.io/roles"],
        "primary=0,replica=*"
    );
}

#[test]
fn changing_the_roles_annotation_updates_our_copies() {
    let raw = mysql_with_roles();
    let sts: StatefulSet = serde_json::from_value(raw).unwrap();
    let mut stored = mutate(&sts, &Policy::default()).object;
    stored
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("stsguard.io/roles".into(), "primary=0-1,replica=*".into());
    let m = mutate(&stored, &Policy::default());
    let t = &m.object.spec.as_ref().unwrap().template;
    assert_eq!(
        t.metadata.as_ref().unwrap().annotations.as_ref().unwrap()["stsguard.io/roles"],
        "primary=0-1,replica=*"
    );
    let args = t.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(args[2], "primary=0-1,replica=*");
    assert!(
        patch_for(&m.object, &mutate(&m.object, &Policy::default()).object)
            .unwrap()
            .0
            .is_empty()
    );
}

#[test]
fn an_invalid_spec_is_not_applied_and_is_a_warning() {
    let mut raw = mysql_with_roles();
    raw["metadata"]["annotations"]["stsguard.io/roles"] = "primary=0,replica=2-".into();
    let sts: StatefulSet = serde_json::from_value(raw).unwrap();
    let m = mutate(&sts, &Policy::default());
    assert!(
        m.report
            .warnings
            .iter()
            .any(|w| w.contains("ordinal 1 has no role")),
        "{:?}",
        m.report.warnings
    );
    let inits = m
        .object
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .init_containers
        .unwrap();
    assert!(inits.iter().all(|c| c.name != "stsguard-role"));
}

// ---- Pod CREATE ----

/// A captured pod-0 CREATE review, made a managed pod with the given index.
fn pod_review(
    file: &str,
    index: Option<u32>,
    managed: bool,
    extra: &[(&str, &str)],
) -> serde_json::Value {
    let mut r = read_json(&fixtures().join("admission/corpus").join(file));
    let obj = &mut r["request"]["object"];
    let base = obj["metadata"]["name"]
        .as_str()
        .unwrap()
        .trim_end_matches("-0")
        .to_string();
    if let Some(i) = index {
        obj["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = i.to_string().into();
        obj["metadata"]["name"] = format!("{base}-{i}").into();
    } else {
        obj["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("apps.kubernetes.io/pod-index");
    }
    if managed {
        let obj = &mut r["request"]["object"];
        obj["metadata"]["labels"]["stsguard.io/managed"] = "true".into();
        let anns = obj["metadata"]
            .as_object_mut()
            .unwrap()
            .entry("annotations")
            .or_insert(serde_json::json!({}));
        anns["stsguard.io/roles"] = "primary=0,replica=*".into();
        for (k, v) in extra {
            anns[*k] = (*v).into();
        }
    }
    if let Some(i) = index {
        r["request"]["name"] = format!("{base}-{i}").into();
    }
    r
}

fn mutate_review(r: &serde_json::Value) -> (serde_json::Value, Option<serde_json::Value>) {
    let a = answer(
        Endpoint::Mutate,
        &serde_json::to_vec(r).unwrap(),
        &Policy::default(),
        &NoLookups("t".into()),
    )
    .unwrap();
    let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(out["response"]["uid"], r["request"]["uid"]);
    assert_eq!(out["response"]["allowed"], true);
    let patched = patch_of(&out).map(|p| {
        let mut doc = r["request"]["object"].clone();
        json_patch::patch(&mut doc, &p).expect("pod patch applies");
        doc
    });
    (out, patched)
}

fn pod0_files() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixtures().join("admission/corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".pod0.create.mutating.json"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "{v:?}");
    v
}

#[test]
fn pod_create_gets_its_role_label() {
    for f in pod0_files() {
        for (index, role) in [
            (Some(0), "primary"),
            (Some(2), "replica"),
            (None, "primary"),
        ] {
            // index None: no pod-index label; the name's -0 suffix decides.
            let r = pod_review(&f, index, true, &[]);
            let (_, doc) = mutate_review(&r);
            let doc = doc.unwrap_or_else(|| panic!("{f} {index:?}: no patch"));
            assert_eq!(
                doc["metadata"]["labels"]["stsguard.io/role"], role,
                "{f} {index:?}"
            );
            assert!(contains(&r["request"]["object"], &doc));
            // Second pass: nothing more.
            let mut again = r.clone();
            again["request"]["object"] = doc;
            assert!(
                mutate_review(&again).1.is_none(),
                "{f}: second pass patched"
            );
        }
        // Not managed: untouched.
        let (out, doc) = mutate_review(&pod_review(&f, Some(0), false, &[]));
        assert!(doc.is_none(), "{f}: unmanaged pod patched");
        assert!(out["response"].get("warnings").is_none());
    }
}

#[tokio::test]
async fn pod_create_over_https() {
    let s = start_default().await;
    let r = pod_review(
        "mysql-k8s-website.pod0.create.mutating.json",
        Some(1),
        true,
        &[],
    );
    let out: serde_json::Value = client(&s.ca_pem, true)
        .post(format!(
            "https://localhost:{}/mutate?timeout=5s",
            s.addr.port()
        ))
        .json(&r)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut doc = r["request"]["object"].clone();
    json_patch::patch(&mut doc, &patch_of(&out).unwrap()).unwrap();
    assert_eq!(doc["metadata"]["labels"]["stsguard.io/role"], "replica");
}

// ---- Role placement ----

#[test]
fn role_node_selectors_at_pod_create() {
    let f = "mysql-k8s-website.pod0.create.mutating.json";
    let sel = [(
        "stsguard.io/role-node-selector.primary",
        "node-class=big,disk=ssd",
    )];
    // pod-index 0: the primary's selector, created where there was none.
    let r = pod_review(f, Some(0), true, &sel);
    assert!(r["request"]["object"]["spec"].get("nodeSelector").is_none());
    let (out, doc) = mutate_review(&r);
    let doc = doc.unwrap();
    assert_eq!(
        doc["spec"]["nodeSelector"],
        serde_json::json!({"node-class": "big", "disk": "ssd"})
    );
    assert!(out["response"].get("warnings").is_none());
    let mut again = r.clone();
    again["request"]["object"] = doc;
    assert!(mutate_review(&again).1.is_none(), "second pass patched");
    // pod-index 1: a replica; no selector for replicas, so none added.
    let (_, doc) = mutate_review(&pod_review(f, Some(1), true, &sel));
    assert!(doc.unwrap()["spec"].get("nodeSelector").is_none());
    // The replica's own selector.
    let both = [
        sel[0],
        ("stsguard.io/role-node-selector.replica", "node-class=small"),
    ];
    let (_, doc) = mutate_review(&pod_review(f, Some(1), true, &both));
    assert_eq!(
        doc.unwrap()["spec"]["nodeSelector"],
        serde_json::json!({"node-class": "small"})
    );
    // A pod with its own conflicting nodeSelector keeps it, gets the other pairs, and a warning.
    let mut r = pod_review(f, Some(0), true, &sel);
    r["request"]["object"]["spec"]["nodeSelector"] = serde_json::json!({"node-class": "gpu"});
    let (out, doc) = mutate_review(&r);
    let doc = doc.unwrap();
    assert_eq!(
        doc["spec"]["nodeSelector"],
        serde_json::json!({"node-class": "gpu", "disk": "ssd"})
    );
    let w = out["response"]["warnings"].as_array().unwrap();
    assert!(
        w.iter()
            .any(|w| w.as_str().unwrap().contains("node-class=gpu kept")),
        "{w:?}"
    );
    let mut again = r.clone();
    again["request"]["object"] = doc;
    assert!(mutate_review(&again).1.is_none(), "second pass patched");
}

#[test]
fn statefulset_mutation_copies_the_placement_annotations() {
    let mut raw = mysql_with_roles();
    raw["metadata"]["annotations"]["stsguard.io/role-node-selector.primary"] =
        "node-class=big".into();
    let sts: StatefulSet = serde_json::from_value(raw).unwrap();
    let m = mutate(&sts, &Policy::default());
    let anns = m
        .object
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(
        anns["stsguard.io/role-node-selector.primary"],
        "node-class=big"
    );
    assert!(
        patch_for(&m.object, &mutate(&m.object, &Policy::default()).object)
            .unwrap()
            .0
            .is_empty()
    );
    let placement = stsguard::check::placement(&m.object);
    assert_eq!(
        placement,
        vec![
            (
                "primary".to_string(),
                "ordinals 0: nodes with node-class=big".to_string()
            ),
            ("replica".to_string(), "ordinals 1,2: any node".to_string()),
        ]
    );
}

#[test]
fn validate_denies_bad_placement_annotations_quoting_them() {
    let base =
        read_json(&fixtures().join("admission/corpus/mysql-k8s-website.create.validating.json"));
    for (key, value, quoted) in [
        (
            "stsguard.io/role-node-selector.leader",
            "node-class=big",
            "\"leader\"",
        ),
        (
            "stsguard.io/role-node-selector.primary",
            "node-class=Big Box",
            "\"Big Box\"",
        ),
        (
            "stsguard.io/role-node-selector.primary",
            "-bad-=x",
            "\"-bad-\"",
        ),
    ] {
        let mut r = base.clone();
        let anns = r["request"]["object"]["metadata"]
            .as_object_mut()
            .unwrap()
            .entry("annotations")
            .or_insert(serde_json::json!({}));
        anns["stsguard.io/roles"] = "primary=0,replica=*".into();
        anns[key] = value.into();
        let a = answer(
            Endpoint::Validate,
            &serde_json::to_vec(&r).unwrap(),
            &Policy::default(),
            &NoLookups("t".into()),
        )
        .unwrap();
        let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(out["response"]["allowed"], false, "{key}={value}");
        let msg = out["response"]["status"]["message"].as_str().unwrap();
        assert!(msg.contains("[role-spec]") && msg.contains(quoted), "{msg}");
        assert_eq!(out["response"]["status"]["code"], 403);
    }
}

/// An UPDATE that changes the roles of an already-mutated StatefulSet: stsguard's own copies on
/// the template and its init container's arguments follow, by `replace` of exactly those values;
/// everything else in the patch still only adds, and the patched object is the mutation.
#[test]
fn changed_roles_replace_only_stsguards_own_values() {
    let raw = mysql_with_roles();
    let sts: StatefulSet = serde_json::from_value(raw).unwrap();
    let stored = mutate(&sts, &Policy::default()).object;
    let mut update = stored.clone();
    update.metadata.annotations.as_mut().unwrap().insert(
        "stsguard.io/roles".into(),
        "primary=0,replica=1-8,spare=9-".into(),
    );
    let m = mutate(&update, &Policy::default());
    let patch = stsguard::mutate::patch::statefulset(&update, &m.object).unwrap();
    let mut doc = serde_json::to_value(&update).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(doc, serde_json::to_value(&m.object).unwrap());
    let replaced: Vec<String> = patch
        .0
        .iter()
        .filter_map(|op| match op {
            json_patch::PatchOperation::Add(_) => None,
            json_patch::PatchOperation::Replace(r) => Some(r.path.to_string()),
            other => panic!("neither add nor replace: {other}"),
        })
        .collect();
    assert_eq!(
        replaced,
        [
            "/spec/template/metadata/annotations/stsguard.io~1roles",
            "/spec/template/spec/initContainers/0",
        ],
        "{}",
        serde_json::to_string(&patch).unwrap()
    );
    let init = &m
        .object
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .init_containers;
    let args = init.as_ref().unwrap()[0]
        .args
        .clone()
        .unwrap_or_default()
        .join(" ");
    assert!(args.contains("spare=9"), "{args}");
}
