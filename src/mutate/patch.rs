//! The one JSONPatch builder, used by the server and by `stsguard check`.
//!
//! A mutation only adds, so its patch only adds: `add` of a member an object does not have, or
//! `add` at an index of a list (an insertion). Never an `add` onto a member the user set, never
//! a `replace` or `remove` of anything the user wrote. Anything else the mutation did is an
//! [`Error::Patch`].
//!
//! The exception is what stsguard itself wrote ([`Owned`]): its markers on the pod template
//! (the `stsguard.io/managed` label, the `stsguard.io/*` annotations), its `stsguard-role` init
//! container, volumes and mounts, and what the template's record lists
//! ([`super::added::Added`]: identity variables per container, the anti-affinity term, the
//! image pull secrets). Those follow the StatefulSet's annotations: `replace`d when they change,
//! `remove`d when the annotation that added them goes.
//!
//! Only the parts the mutation can change are compared — the template's labels and annotations,
//! affinity, volumes, image pull secrets, init containers, each container's env and
//! volumeMounts; a Pod's labels and node selector — and of those only the fields that differ
//! (typed equality) are turned into JSON and diffed.

use std::collections::HashMap;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, ReplaceOperation};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Serialize;
use serde_json::{Map, Value};

use super::added::Added;
use super::roles::{CONFIG_VOLUME, INIT_CONTAINER, ROLE_VOLUME};
use crate::error::{Error, Result};

/// The patch from `before` to `after`, a mutation of it.
pub fn statefulset(before: &StatefulSet, after: &StatefulSet) -> Result<Patch> {
    diff_with(
        &statefulset_parts(before, after)?,
        statefulset_parts(after, before)?,
        &Owned::of(before)?,
    )
}

/// The patch from `before` to `after`, a mutation of it.
pub fn pod(before: &Pod, after: &Pod) -> Result<Patch> {
    diff_with(
        &pod_parts(before, after)?,
        pod_parts(after, before)?,
        &Owned::default(),
    )
}

/// The operations that turn `before` into `after` by adding only: members `before` lacks, and
/// list elements inserted. A list's elements are matched in order, by equality, else by their
/// `name`.
/// (`after` is copied: the server's paths hand theirs over, [`statefulset`] and [`pod`].)
pub fn add_only(before: &Value, after: &Value) -> Result<Patch> {
    diff_with(before, after.clone(), &Owned::default())
}

/// `after` is taken: what it holds moves into the operations, not copied.
fn diff_with(before: &Value, after: Value, owned: &Owned) -> Result<Patch> {
    let mut ops = Vec::new();
    let mut at = At {
        path: PointerBuf::new(),
        key: String::new(),
    };
    diff(&mut at, before, after, false, owned, &mut ops)?;
    Ok(Patch(ops))
}

/// What in a StatefulSet is stsguard's own: list elements by the list (its key, see [`At`]) and
/// their name or value. Members are stsguard's by their path ([`owned_member`]). The default
/// knows stsguard's own names only (see [`Owned::element`]).
#[derive(Default)]
pub struct Owned {
    lists: HashMap<String, Vec<Item>>,
}

enum Item {
    Name(String),
    Value(Value),
}

const TEMPLATE_SPEC: &str = "/spec/template/spec";

impl Owned {
    /// stsguard's own values in `sts`: its names, and what the template's record lists.
    pub fn of(sts: &StatefulSet) -> Result<Owned> {
        let mut o = Owned::default();
        let added = Added::of(sts);
        let name = |n: &str| Item::Name(n.to_string());
        let pod = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        if let Some(pod) = pod {
            let lists = [
                ("containers", &pod.containers[..]),
                (
                    "initContainers",
                    pod.init_containers.as_deref().unwrap_or_default(),
                ),
            ];
            for (list, cs) in lists {
                for c in cs {
                    if let Some(env) = added.env_of(&c.name) {
                        let key = format!("{TEMPLATE_SPEC}/{list}/[{}]/env", c.name);
                        o.lists.insert(key, env.iter().map(|n| name(n)).collect());
                    }
                }
            }
        }
        o.lists.insert(
            format!("{TEMPLATE_SPEC}/imagePullSecrets"),
            added.image_pull_secrets.iter().map(|n| name(n)).collect(),
        );
        if let (Some(t), Some(spec)) = (&added.anti_affinity, &sts.spec) {
            let term = k8s_openapi::api::core::v1::PodAffinityTerm {
                label_selector: Some(spec.selector.clone()),
                topology_key: t.topology_key.clone(),
                ..Default::default()
            };
            let anti = format!("{TEMPLATE_SPEC}/affinity/podAntiAffinity");
            let (list, value) = match t.weight {
                Some(weight) => (
                    "preferredDuringSchedulingIgnoredDuringExecution",
                    to_value(&k8s_openapi::api::core::v1::WeightedPodAffinityTerm {
                        pod_affinity_term: term,
                        weight,
                    })?,
                ),
                None => (
                    "requiredDuringSchedulingIgnoredDuringExecution",
                    to_value(&term)?,
                ),
            };
            o.lists
                .insert(format!("{anti}/{list}"), vec![Item::Value(value)]);
        }
        Ok(o)
    }

    /// Is `v`, an element of the list at `key`, stsguard's own? By its name: the role init
    /// container, the role volumes, a container's mount of the role volume; else as listed.
    fn element(&self, key: &str, v: &Value) -> bool {
        let named = |names: &[&str]| {
            v.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| names.contains(&n))
        };
        if let Some(rest) = key.strip_prefix(TEMPLATE_SPEC) {
            let by_name = match rest {
                "/initContainers" => named(&[INIT_CONTAINER]),
                "/volumes" => named(&[ROLE_VOLUME, CONFIG_VOLUME]),
                r if r.ends_with("/volumeMounts") => named(&[ROLE_VOLUME]),
                _ => false,
            };
            if by_name {
                return true;
            }
        }
        self.lists.get(key).is_some_and(|items| {
            items.iter().any(|i| match i {
                Item::Name(n) => v.get("name").and_then(Value::as_str) == Some(n.as_str()),
                Item::Value(x) => x == v,
            })
        })
    }
}

/// Is the member at `path` (in a StatefulSet) a value stsguard owns?
fn owned_member(path: &PointerBuf) -> bool {
    let p = path.as_str();
    p == "/spec/template/metadata/labels/stsguard.io~1managed"
        || p.starts_with("/spec/template/metadata/annotations/stsguard.io~1")
}

/// Where the diff is: the JSON pointer of the operations, and the key [`Owned`] knows a list
/// by, where a list element with a `name` is `[name]` (its index changes as elements come and
/// go; its name does not).
struct At {
    path: PointerBuf,
    key: String,
}

impl At {
    fn push(&mut self, member: &str) -> usize {
        let len = self.key.len();
        self.path.push_back(member);
        self.key.push('/');
        self.key.push_str(member);
        len
    }
    fn push_element(&mut self, index: usize, v: &Value) -> usize {
        let len = self.key.len();
        self.path.push_back(index);
        match v.get("name").and_then(Value::as_str) {
            Some(n) => {
                self.key.push_str("/[");
                self.key.push_str(n);
                self.key.push(']');
            }
            None => {
                self.key.push_str(&format!("/{index}"));
            }
        }
        len
    }
    fn pop(&mut self, len: usize) {
        self.path.pop_back();
        self.key.truncate(len);
    }
}

fn add(path: &PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: path.clone(),
        value,
    })
}

fn remove(path: &PointerBuf) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path: path.clone() })
}

/// `owned`: the value is stsguard's own (see the module's documentation): replaced as a whole.
/// `a` is taken: its parts move into the operations.
fn diff(
    at: &mut At,
    b: &Value,
    a: Value,
    owned: bool,
    o: &Owned,
    ops: &mut Vec<PatchOperation>,
) -> Result<()> {
    if *b == a {
        return Ok(());
    }
    if owned {
        ops.push(PatchOperation::Replace(ReplaceOperation {
            path: at.path.clone(),
            value: a,
        }));
        return Ok(());
    }
    match (b, a) {
        (Value::Object(bm), Value::Object(mut am)) => {
            for (k, bv) in bm {
                let len = at.push(k);
                let owned = owned_member(&at.path);
                match am.remove(k) {
                    Some(av) => diff(at, bv, av, owned, o, ops)?,
                    None if owned => ops.push(remove(&at.path)),
                    None => return Err(Error::Patch(format!("remove {}", at.path))),
                }
                at.pop(len);
            }
            // What is left of `after`'s members: those `before` lacks, in their order (the map
            // is a BTreeMap: serde_json's `preserve_order` is off, and `remove` keeps the order).
            for (k, av) in am {
                let len = at.push(&k);
                ops.push(add(&at.path, av));
                at.pop(len);
            }
            Ok(())
        }
        (Value::Array(ba), Value::Array(aa))
            if ba.len() == aa.len()
                && ba.iter().zip(&aa).all(|(b, a)| b == a || same_name(b, a)) =>
        {
            // Nothing inserted or taken out: element by element.
            for (i, (bv, av)) in ba.iter().zip(aa).enumerate() {
                let owned = o.element(&at.key, bv);
                let len = at.push_element(i, bv);
                diff(at, bv, av, owned, o, ops)?;
                at.pop(len);
            }
            Ok(())
        }
        (Value::Array(ba), Value::Array(aa)) => list(at, ba, aa, o, ops),
        _ => Err(Error::Patch(format!("replace {}", at.path))),
    }
}

/// A list whose elements were inserted or taken out. Each of the user's elements of `before`,
/// in order, is found in `after` (by equality, else by its name); stsguard's own are kept where
/// they are found unchanged, else taken out. The removals come first, from the last; then what
/// lies between the elements kept is inserted at its final index (the list then holds
/// `after`'s elements before it). Linear in the lists but for a search per element changed.
fn list(
    at: &mut At,
    ba: &[Value],
    mut aa: Vec<Value>,
    o: &Owned,
    ops: &mut Vec<PatchOperation>,
) -> Result<()> {
    // The user's elements first: each is in `after`, in the same order (by equality, else by
    // name); none may go.
    let owned: Vec<bool> = ba.iter().map(|bv| o.element(&at.key, bv)).collect();
    let mut found = vec![None; ba.len()];
    let mut next = 0;
    for (i, bv) in ba.iter().enumerate().filter(|(i, _)| !owned[*i]) {
        let rest = aa.get(next..).unwrap_or_default();
        let k = rest
            .iter()
            .position(|av| av == bv)
            .or_else(|| rest.iter().position(|av| same_name(bv, av)));
        let Some(k) = k else {
            return Err(Error::Patch(format!("remove {}/{i}", at.path)));
        };
        found[i] = Some(next + k);
        next += k + 1;
    }
    // Then stsguard's own: kept where it is found unchanged between its neighbours' places,
    // else taken out (its new value, if any, is inserted where the mutation put it).
    let mut upper = vec![aa.len(); ba.len()];
    let mut bound = aa.len();
    for i in (0..ba.len()).rev() {
        upper[i] = bound;
        if let Some(k) = found[i] {
            bound = k;
        }
    }
    let mut lower = 0;
    for (i, bv) in ba.iter().enumerate() {
        if owned[i] {
            let range = aa.get(lower..upper[i]).unwrap_or_default();
            found[i] = range.iter().position(|av| av == bv).map(|k| lower + k);
        }
        if let Some(k) = found[i] {
            lower = k + 1;
        }
    }
    for i in (0..ba.len()).rev().filter(|i| found[*i].is_none()) {
        at.path.push_back(i);
        ops.push(remove(&at.path));
        at.path.pop_back();
    }
    // Each of `after`'s elements is taken once, in order, into an operation.
    let mut next = 0;
    for (bv, k) in ba.iter().zip(&found) {
        let Some(k) = *k else { continue };
        for (x, av) in aa.iter_mut().enumerate().take(k).skip(next) {
            at.path.push_back(x);
            ops.push(add(&at.path, std::mem::take(av)));
            at.path.pop_back();
        }
        let owned = o.element(&at.key, bv);
        let len = at.push_element(k, bv);
        let av = aa.get_mut(k).map(std::mem::take).unwrap_or_default();
        diff(at, bv, av, owned, o, ops)?;
        at.pop(len);
        next = k + 1;
    }
    for (x, av) in aa.into_iter().enumerate().skip(next) {
        at.path.push_back(x);
        ops.push(add(&at.path, av));
        at.path.pop_back();
    }
    Ok(())
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

/// Each container's name, and its env and volumeMounts where they differ from `other`'s
/// (stsguard's role init container whole: it may be brought up to date); the whole list when the
/// two lists differ in length.
fn containers(cs: &[Container], other: Option<&[Container]>) -> Result<Value> {
    match other {
        Some(o) if o.len() == cs.len() => {
            let mut out = Vec::with_capacity(cs.len());
            for (c, oc) in cs.iter().zip(o) {
                if c.name == super::roles::INIT_CONTAINER {
                    out.push(if c == oc { Value::Null } else { to_value(c)? });
                    continue;
                }
                // The name (the same on both sides) tells the container to [`Owned`].
                let mut m = Map::new();
                m.insert("name".into(), Value::String(c.name.clone()));
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
            // stsguard's anti-affinity term is on the selector ([`Owned::of`]).
            selector: spec.selector.clone(),
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
    fn removes_only_what_stsguard_owns() -> Result<()> {
        let before = json!({"spec": {"template": {
            "metadata": {"labels": {"app": "db", "stsguard.io/managed": "true"},
                         "annotations": {"stsguard.io/roles": "p=0,r=*", "user": "u"}},
            "spec": {
                "initContainers": [{"name": "stsguard-role"}, {"name": "x"}],
                "volumes": [{"name": "data"}, {"name": "stsguard-role", "emptyDir": {}}],
                "containers": [{"name": "db", "volumeMounts": [{"name": "stsguard-role"}, {"name": "data"}]}]
            }
        }}});
        let after = json!({"spec": {"template": {
            "metadata": {"labels": {"app": "db"}, "annotations": {"user": "u"}},
            "spec": {
                "initContainers": [{"name": "x"}],
                "volumes": [{"name": "data"}],
                "containers": [{"name": "db", "volumeMounts": [{"name": "data"}]}]
            }
        }}});
        let p = add_only(&before, &after)?;
        assert!(
            p.0.iter().all(|op| matches!(op, PatchOperation::Remove(_))),
            "{p:?}"
        );
        assert_eq!(apply(&before, &p), after);
        // The user's own: never.
        for (path, value) in [
            ("/spec/template/metadata/labels/app", None),
            ("/spec/template/metadata/annotations/user", None),
            ("/spec/template/spec/initContainers/1", None),
            ("/spec/template/spec/volumes/0", None),
            ("/spec/template/spec/containers/0/volumeMounts/1", None),
            ("/spec/template/metadata/annotations/user", Some(json!("v"))),
        ] {
            let mut user = before.clone();
            let ptr = json_patch::jsonptr::PointerBuf::parse(path).unwrap();
            let op = match value {
                None => PatchOperation::Remove(RemoveOperation { path: ptr }),
                Some(v) => PatchOperation::Replace(ReplaceOperation {
                    path: ptr,
                    value: v,
                }),
            };
            json_patch::patch(&mut user, &[op]).unwrap();
            assert!(add_only(&before, &user).is_err(), "{path}");
        }
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
