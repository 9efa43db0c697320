//! How the request path reads a review's object: straight into its k8s-openapi type while the
//! envelope is read, `metadata.managedFields` passed over, and the parts a patch adds under
//! checked to be objects. Over every captured review in tests/fixtures/admission (this test
//! tests/fixtures).

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::admission::{Endpoint, answer, statefulset_from_str};
use stsguard::policy::Policy;
use stsguard::validate::NoLookups;

/// Every captured review file (as the API server sent them).
fn captured_reviews() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [
        fixtures().join("admission"),
        fixtures().join("admission/corpus"),
    ] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    assert!(out.len() >= 40, "{} reviews", out.len());
    out
}

#[test]
fn same_objects_as_the_plain_parse_without_managed_fields() {
    let mut n = 0;
    for (name, body) in captured_reviews() {
        let r: serde_json::Value = serde_json::from_slice(&body).unwrap();
        for key in ["object", "oldObject"] {
            let o = &r["request"][key];
            if o["kind"] != "StatefulSet" {
                continue;
            }
            let read = statefulset_from_str(&o.to_string()).unwrap().unwrap();
            let mut plain: StatefulSet = serde_json::from_value(o.clone()).unwrap();
            assert!(plain.metadata.managed_fields.is_some(), "{name}");
            plain.metadata.managed_fields = None;
            assert_eq!(read, plain, "{name} {key}");
            n += 1;
        }
    }
    assert!(n >= 40, "{n} objects");
}

/// The review with `request.kind` moved after the objects: they are then kept raw and read once
/// the envelope is read.
fn kind_last(body: &[u8]) -> Vec<u8> {
    let mut r: serde_json::Value = serde_json::from_slice(body).unwrap();
    let request = r["request"].as_object_mut().unwrap();
    let kind = request.remove("kind").unwrap();
    let mut text = serde_json::to_string(&r).unwrap();
    // `request` is the last member of the review; its closing brace is the text's last but one.
    assert!(text.ends_with("}}"));
    text.truncate(text.len() - 2);
    text.push_str(&format!(r#","kind":{kind}}}}}"#));
    text.into_bytes()
}

/// The answer of `endpoint` to the review `v`, with the default policy and no look-ups.
fn answer_to(endpoint: Endpoint, v: &serde_json::Value) -> stsguard::admission::Answer {
    answer(
        endpoint,
        &serde_json::to_vec(v).unwrap(),
        &Policy::default(),
        &NoLookups("t".into()),
    )
    .unwrap()
}

fn answers(body: &[u8]) -> Vec<String> {
    let policy = Policy::default();
    let lookups = NoLookups("test".into());
    [Endpoint::Mutate, Endpoint::Validate]
        .into_iter()
        .map(|e| match answer(e, body, &policy, &lookups) {
            Ok(a) => String::from_utf8(a.body).unwrap(),
            Err(e) => format!("400 {e}"),
        })
        .collect()
}

#[test]
fn objects_before_their_kind_get_the_same_answers() {
    for (name, body) in captured_reviews() {
        let moved = kind_last(&body);
        assert!(
            String::from_utf8_lossy(&moved).find(r#""kind":{"#)
                > String::from_utf8_lossy(&moved).find(r#""object":"#),
            "{name}"
        );
        assert_eq!(answers(&body), answers(&moved), "{name}");
    }
}

/// A patch adds under a StatefulSet's `spec.template` and a Pod's `metadata` and `spec`: when
/// those are not objects in the request (k8s-openapi would read them as empty), the review is
/// answered per onError, naming the field, with no patch — in either field order.
#[test]
fn what_a_patch_adds_under_must_be_an_object() {
    let sts =
        read_json(&fixtures().join("admission/corpus/mysql-k8s-website.create.mutating.json"));
    let pod =
        read_json(&fixtures().join("admission/corpus/mysql-k8s-website.pod0.create.mutating.json"));
    let mut cases = Vec::new();
    let mut v = sts.clone();
    v["request"]["object"]["spec"]["template"] = serde_json::Value::Null;
    cases.push((v, "spec.template is not an object"));
    let mut v = sts.clone();
    v["request"]["object"]["spec"]
        .as_object_mut()
        .unwrap()
        .remove("template");
    cases.push((v, "spec.template is missing"));
    let mut v = pod.clone();
    v["request"]["object"]["spec"] = serde_json::Value::Null;
    cases.push((v, "spec is not an object"));
    let mut v = pod.clone();
    v["request"]["object"]["metadata"] = serde_json::Value::Null;
    cases.push((v, "metadata is not an object"));
    for (v, why) in cases {
        let body = serde_json::to_vec(&v).unwrap();
        for b in [body.clone(), kind_last(&body)] {
            let a = answer(
                Endpoint::Mutate,
                &b,
                &Policy::default(),
                &NoLookups("t".into()),
            )
            .unwrap();
            let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
            assert_eq!(out["response"]["uid"], v["request"]["uid"]);
            assert_eq!(out["response"]["allowed"], true);
            assert!(out["response"].get("patch").is_none(), "{why}");
            let warning = out["response"]["warnings"][0].as_str().unwrap_or("");
            assert!(warning.contains(why), "{why}: {warning}");
        }
    }
    // An empty template is an object: patched, and the patch applies.
    let mut v = sts.clone();
    v["request"]["object"]["spec"]["template"] = serde_json::json!({});
    let a = answer_to(Endpoint::Mutate, &v);
    let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    if let Some(p) = patch_of(&out) {
        let mut doc = v["request"]["object"].clone();
        apply_adds_only(&mut doc, &p).unwrap();
    }
}

/// A StatefulSet sent where a Scale is expected (and the other way round) is not evaluated, not
/// misread.
#[test]
fn an_object_of_another_kind_is_not_evaluated() {
    let sts =
        read_json(&fixtures().join("admission/corpus/mysql-k8s-website.create.mutating.json"));
    let mut v = sts.clone();
    v["request"]["subResource"] = "scale".into();
    v["request"]["operation"] = "UPDATE".into();
    let a = answer_to(Endpoint::Validate, &v);
    let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let warning = out["response"]["warnings"][0].as_str().unwrap_or("");
    assert!(
        warning.contains("is a StatefulSet, expected a Scale"),
        "{warning}"
    );
}

/// A review that is not evaluated is logged and counted for what its envelope says (kind,
/// namespace, name, operation) and what its answer says (the warning onError adds), as any other.
#[test]
fn a_review_not_evaluated_is_summarised_from_its_envelope_and_its_answer() {
    let mut v =
        read_json(&fixtures().join("admission/corpus/mysql-k8s-website.create.mutating.json"));
    v["request"]["object"]["spec"] = "not a spec".into();
    let a = answer_to(Endpoint::Validate, &v);
    let out: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    let s = &a.summary;
    assert_eq!(s.outcome.as_str(), "error", "{out}");
    assert_eq!(s.allowed, out["response"]["allowed"].as_bool().unwrap());
    assert_eq!(
        s.warnings,
        out["response"]["warnings"].as_array().map_or(0, Vec::len)
    );
    assert!(s.warnings > 0, "onError: allow says why: {out}");
    assert_eq!(s.kind, "StatefulSet");
    assert_eq!(s.operation, "CREATE");
    assert_eq!(s.uid, out["response"]["uid"].as_str().unwrap());
    assert_eq!(
        s.namespace,
        v["request"]["namespace"].as_str().unwrap_or("")
    );
}
