//! The one JSONPatch builder, used by the server and by `stsguard check`.
//!
//! A mutation only adds, so its patch only adds: `add` of a member an object does not have, or
//! `add` at an index of a list (an insertion). Never `replace`, never `remove`, never an `add`
//! onto a member the user set. Anything else the mutation did is an [`Error::Patch`].
//!
//! One exception, for values stsguard itself wrote: its markers on the pod template (the
//! `stsguard.io/managed` label, the `stsguard.io/*` annotation copies the Pod hook reads) and its
//! `stsguard-role` init container follow the StatefulSet's annotations, so an UPDATE that
//! changes those annotations `replace`s stsguard's own values there, and nowhere else.
//!
//! Only the parts the mutation can change are compared — the template's labels and annotations,
//! affinity, volumes, image pull secrets, init containers, each container's env and
//! volumeMounts; a Pod's labels and node selector — and of those only the fields that differ
//! (typed equality) are turned into JSON and diffed.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The patch from `before` to `after`, a mutation of it.
pub fn statefulset(before: &StatefulSet, after: &StatefulSet) -> Result<Patch> {
    add_only(
        &statefulset_parts(before, after)?,
        &statefulset_parts(after, before)?,
    )
}

/// The patch from `before` to `after`, a mutation of it.
pub fn pod(before: &Pod, after: &Pod) -> Result<Patch> {
    add_only(&pod_parts(before, after)?, &pod_parts(after, before)?)
}

/// The operations that turn `before` into `after` by adding only: members `before` lacks, and
/// list elements inserted. A list of the same length is compared element by element; in a
/// longer one, each element of `before` is found by equality, else by its `name`.
pub fn add_only(before: &Value, after: &Value) -> Result<Patch> {
    let mut ops = Vec::new();
    diff(&mut PointerBuf::new(), before, after, false, &mut ops)?;
    Ok(Patch(ops))
}

/// Is the member at `path` (in a StatefulSet) a value stsguard owns?
fn owned_member(path: &PointerBuf) -> bool {
    let p = path.as_str();
    p == "/spec/template/metadata/labels/stsguard.io~1managed"
        || p.starts_with("/spec/template/metadata/annotations/stsguard.io~1")
}

/// Is `v`, an element of the list at `path`, stsguard's role init container?
fn owned_element(path: &PointerBuf, v: &Value) -> bool {
    path.as_str() == "/spec/template/spec/initContainers"
        && v.get("name").and_then(Value::as_str) == Some(super::roles::INIT_CONTAINER)
}

fn add(path: &PointerBuf, value: &Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: path.clone(),
        value: value.clone(),
    })
}

/// `owned`: the value is stsguard's own (see the module's documentation): replaced as a whole.
fn diff(
    path: &mut PointerBuf,
    b: &Value,
    a: &Value,
    owned: bool,
    ops: &mut Vec<PatchOperation>,
) -> Result<()> {
    if b == a {
        return Ok(());
    }
    if owned {
        ops.push(PatchOperation::Replace(ReplaceOperation {
            path: path.clone(),
            value: a.clone(),
        }));
        return Ok(());
    }
    match (b, a) {
        (Value::Object(bm), Value::Object(am)) => {
            for (k, bv) in bm {
                let Some(av) = am.get(k) else {
                    return Err(Error::Patch(format!("remove {path}/{k}")));
                };
                path.push_back(k.as_str());
                let owned = owned_member(path);
                diff(path, bv, av, owned, ops)?;
                path.pop_back();
            }
            for (k, av) in am.iter().filter(|(k, _)| !bm.contains_key(*k)) {
                path.push_back(k.as_str());
                ops.push(add(path, av));
                path.pop_back();
            }
            Ok(())
        }
        (Value::Array(ba), Value::Array(aa)) if ba.len() == aa.len() => {
            // Nothing inserted: element by element.
            for (i, (bv, av)) in ba.iter().zip(aa).enumerate() {
                let owned = owned_element(path, bv);
                path.push_back(i);
                diff(path, bv, av, owned, ops)?;
                path.pop_back();
            }
            Ok(())
        }
        (Value::Array(ba), Value::Array(aa)) => {
            // Each element of `before`, in order, is found in `after`; what lies between is
            // inserted at its final index (the list then holds `after`'s elements before it).
            let mut next = 0;
            for (i, bv) in ba.iter().enumerate() {
                let rest = aa.get(next..).unwrap_or_default();
                let found = rest
                    .iter()
                    .position(|av| av == bv)
                    .or_else(|| rest.iter().position(|av| same_name(bv, av)));
                let Some(k) = found.map(|k| k + next) else {
                    return Err(Error::Patch(format!("remove {path}/{i}")));
                };
                for (x, av) in aa.iter().enumerate().take(k).skip(next) {
                    path.push_back(x);
                    ops.push(add(path, av));
                    path.pop_back();
                }
                let owned = owned_element(path, bv);
                path.push_back(k);
                diff(path, bv, &aa[k], owned, ops)?;
                path.pop_back();
                next = k + 1;
            }
            for (x, av) in aa.iter().enumerate().skip(next) {
                path.push_back(x);
                ops.push(add(path, av));
                path.pop_back();
            }
            Ok(())
        }
        _ => Err(Error::Patch(format!("replace {path}"))),
    }
}

fn same_name(b: &Value, a: &Value) -> bool {
    let name = |v: &Value| v.get("name").and_then(Value::as_str).map(str::to_owned);
    name(b).is_some() && name(b) == name(a)
}

/// Puts `key: v` in `m` when `v` is set and differs from `other` (left out of both sides when
/// equal: it yields no operation).
fn put<T: Serialize + PartialEq>(
    m: &mut Map<String, Value>,
    key: &str,
    v: &Option<T>,
    other: Option<&Option<T>>,
) -> Result<()> {
    if let Some(x) = v {
        if other != Some(v) {
            m.insert(key.into(), to_value(x)?);
        }
    }
    Ok(())
}

fn to_value<T: Serialize>(x: &T) -> Result<Value> {
    serde_json::to_value(x).map_err(|e| Error::NotEvaluated(format!("serialising: {e}")))
}

/// Each container's env and volumeMounts where they differ from `other`'s (stsguard's role init
/// container whole: it may be brought up to date); the whole list when the two lists differ in
/// length.
fn containers(cs: &[Container], other: Option<&[Container]>) -> Result<Value> {
    match other {
        Some(o) if o.len() == cs.len() => {
            let mut out = Vec::with_capacity(cs.len());
            for (c, oc) in cs.iter().zip(o) {
                if c.name == super::roles::INIT_CONTAINER {
                    out.push(if c == oc { Value::Null } else { to_value(c)? });
                    continue;
                }
                let mut m = Map::new();
                put(&mut m, "env", &c.env, Some(&oc.env))?;
                let mounts = Some(&oc.volume_mounts);
                put(&mut m, "volumeMounts", &c.volume_mounts, mounts)?;
                out.push(Value::Object(m));
            }
            Ok(Value::Array(out))
        }
        _ => to_value(&cs),
    }
}

/// A copy of what the mutation can change in `s` and nothing else: [`statefulset`] from it
/// gives the same patch as from `s` itself, at the cost of copying only those parts (the
/// property tests check it).
pub fn changeable(s: &StatefulSet) -> StatefulSet {
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    let Some(spec) = &s.spec else {
        return StatefulSet::default();
    };
    let t = &spec.template;
    let template = PodTemplateSpec {
        metadata: t.metadata.as_ref().map(|m| ObjectMeta {
            labels: m.labels.clone(),
            annotations: m.annotations.clone(),
            ..Default::default()
        }),
        spec: t.spec.as_ref().map(|p| PodSpec {
            affinity: p.affinity.clone(),
            volumes: p.volumes.clone(),
            image_pull_secrets: p.image_pull_secrets.clone(),
            init_containers: p.init_containers.clone(),
            containers: p
                .containers
                .iter()
                .map(|c| Container {
                    name: c.name.clone(),
                    env: c.env.clone(),
                    volume_mounts: c.volume_mounts.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    StatefulSet {
        spec: Some(StatefulSetSpec {
            template,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What the mutation can change in `s`, as JSON, where it differs from `o`. A member is present
/// only where `s` has it, so every path of the patch exists in the object.
fn statefulset_parts(s: &StatefulSet, o: &StatefulSet) -> Result<Value> {
    let Some(spec) = &s.spec else {
        return Ok(Value::Object(Map::new()));
    };
    let ot = o.spec.as_ref().map(|s| &s.template);
    let mut template = Map::new();
    if let Some(m) = &spec.template.metadata {
        let om = ot.and_then(|t| t.metadata.as_ref());
        let mut meta = Map::new();
        put(&mut meta, "labels", &m.labels, om.map(|m| &m.labels))?;
        put(
            &mut meta,
            "annotations",
            &m.annotations,
            om.map(|m| &m.annotations),
        )?;
        template.insert("metadata".into(), Value::Object(meta));
    }
    if let Some(p) = &spec.template.spec {
        let op = ot.and_then(|t| t.spec.as_ref());
        let mut pod = Map::new();
        put(&mut pod, "affinity", &p.affinity, op.map(|p| &p.affinity))?;
        put(&mut pod, "volumes", &p.volumes, op.map(|p| &p.volumes))?;
        let secrets = op.map(|p| &p.image_pull_secrets);
        put(&mut pod, "imagePullSecrets", &p.image_pull_secrets, secrets)?;
        let ocs = op.map(|p| &p.containers[..]);
        pod.insert("containers".into(), containers(&p.containers, ocs)?);
        let oinit = op.and_then(|p| p.init_containers.as_deref());
        if let Some(init) = p.init_containers.as_deref().filter(|i| Some(*i) != oinit) {
            pod.insert("initContainers".into(), containers(init, oinit)?);
        }
        template.insert("spec".into(), Value::Object(pod));
    }
    let mut spec = Map::new();
    spec.insert("template".into(), Value::Object(template));
    let mut root = Map::new();
    root.insert("spec".into(), Value::Object(spec));
    Ok(Value::Object(root))
}

/// What the Pod mutation can change: `metadata.labels` and `spec.nodeSelector`.
fn pod_parts(p: &Pod, o: &Pod) -> Result<Value> {
    let mut meta = Map::new();
    put(
        &mut meta,
        "labels",
        &p.metadata.labels,
        Some(&o.metadata.labels),
    )?;
    let mut root = Map::new();
    root.insert("metadata".into(), Value::Object(meta));
    if let Some(spec) = &p.spec {
        let mut m = Map::new();
        let other = o.spec.as_ref().map(|s| &s.node_selector);
        put(&mut m, "nodeSelector", &spec.node_selector, other)?;
        root.insert("spec".into(), Value::Object(m));
    }
    Ok(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(before: &Value, patch: &Patch) -> Value {
        let mut doc = before.clone();
        json_patch::patch(&mut doc, patch)
            .map_err(|e| e.to_string())
            .ok();
        doc
    }

    fn adds_only(p: &Patch) -> bool {
        p.0.iter().all(|op| matches!(op, PatchOperation::Add(_)))
    }

    #[test]
    fn inserts_at_an_index_without_touching_what_follows() -> Result<()> {
        let before = json!({"env": [{"name": "USER", "value": "x"}]});
        let after = json!({"env": [
            {"name": "A"}, {"name": "B"}, {"name": "C"}, {"name": "D"}, {"name": "E"},
            {"name": "USER", "value": "x"}
        ]});
        let p = add_only(&before, &after)?;
        assert_eq!(p.0.len(), 5);
        assert!(adds_only(&p));
        assert_eq!(apply(&before, &p), after);
        Ok(())
    }

    #[test]
    fn an_inserted_element_and_a_changed_one() -> Result<()> {
        let before = json!({"init": [{"name": "a", "env": [{"name": "U"}]}]});
        let after = json!({"init": [
            {"name": "role"},
            {"name": "a", "env": [{"name": "POD_NAME"}, {"name": "U"}]}
        ]});
        let p = add_only(&before, &after)?;
        assert!(adds_only(&p));
        assert_eq!(p.0.len(), 2);
        assert_eq!(apply(&before, &p), after);
        Ok(())
    }

    #[test]
    fn replaces_only_what_stsguard_owns() -> Result<()> {
        let before = json!({"spec": {"template": {
            "metadata": {"annotations": {"stsguard.io/roles": "primary=0,replica=*", "user": "u"}},
            "spec": {"initContainers": [{"name": "stsguard-role", "args": ["--roles", "a"]}, {"name": "x", "args": ["a"]}]}
        }}});
        let mut after = before.clone();
        after["spec"]["template"]["metadata"]["annotations"]["stsguard.io/roles"] =
            json!("p=0,r=*");
        after["spec"]["template"]["spec"]["initContainers"][0]["args"] = json!(["--roles", "b"]);
        let p = add_only(&before, &after)?;
        assert_eq!(apply(&before, &p), after);
        let paths: Vec<String> =
            p.0.iter()
                .map(|op| match op {
                    PatchOperation::Replace(r) => r.path.to_string(),
                    other => format!("not a replace: {other}"),
                })
                .collect();
        assert_eq!(
            paths,
            [
                "/spec/template/metadata/annotations/stsguard.io~1roles",
                "/spec/template/spec/initContainers/0",
            ]
        );
        // The user's own annotation and init container are not stsguard's.
        let mut user = before.clone();
        user["spec"]["template"]["metadata"]["annotations"]["user"] = json!("v");
        assert!(add_only(&before, &user).is_err());
        let mut user = before.clone();
        user["spec"]["template"]["spec"]["initContainers"][1]["args"] = json!(["y"]);
        assert!(add_only(&before, &user).is_err());
        Ok(())
    }

    #[test]
    fn refuses_to_replace_or_remove() {
        for (b, a) in [
            (json!({"a": 1}), json!({"a": 2})),
            (json!({"a": 1}), json!({})),
            (json!({"l": [{"name": "x"}]}), json!({"l": []})),
            (json!({"l": [1, 2]}), json!({"l": [2, 1]})),
            (json!({"a": {}}), json!({"a": []})),
        ] {
            assert!(
                matches!(add_only(&b, &a), Err(Error::Patch(_))),
                "{b} -> {a}"
            );
        }
    }
}
