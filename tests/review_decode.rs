//! The request path decodes objects without metadata.managedFields (see
//! `review::without_managed_fields`): over every captured review in ../shared/fixtures/admission,
//! that equals k8s-openapi's own parse with managedFields removed.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use stsguard::review::{RawObject, without_managed_fields};

fn check<T: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(
    obj: &serde_json::Value,
    clear: impl Fn(&mut T),
) {
    let text = serde_json::to_string(obj).unwrap();
    let raw: RawObject = serde_json::from_str(&text).unwrap();
    let fast: T = without_managed_fields(&raw).unwrap();
    let mut plain: T = serde_json::from_value(obj.clone()).unwrap();
    clear(&mut plain);
    assert_eq!(fast, plain);
}

#[test]
fn same_objects_as_the_plain_parse() {
    let mut n = 0;
    for dir in [
        shared().join("admission"),
        shared().join("admission/corpus"),
    ] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let r = read_json(&p);
            for key in ["object", "oldObject"] {
                let o = &r["request"][key];
                match o["kind"].as_str() {
                    Some("StatefulSet") => {
                        check::<StatefulSet>(o, |s| s.metadata.managed_fields = None)
                    }
                    Some("Pod") => check::<Pod>(o, |s| s.metadata.managed_fields = None),
                    _ => continue,
                }
                n += 1;
            }
        }
    }
    assert!(n >= 80, "{n} objects");
}

#[test]
fn odd_metadata_is_still_read() {
    for text in [
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","managedFields":[{"manager":"x"}],"labels":{"a":"b"}}}"#,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"managedFields":[]}}"#,
        r#"{"apiVersion":"v1","kind":"Pod","metadata":{"annotations":{"x":"\"managedFields\""}}}"#,
        r#"{"apiVersion":"v1","kind":"Pod"}"#,
    ] {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        check::<Pod>(&v, |p| p.metadata.managed_fields = None);
    }
    // Not an object of the kind: an error, not a panic.
    let raw: RawObject = serde_json::from_str(r#"{"apiVersion":"v1","kind":"Service"}"#).unwrap();
    assert!(without_managed_fields::<Pod, false>(&raw).is_err());
    let raw: RawObject =
        serde_json::from_str(r#"{"apiVersion":"v1","kind":"Pod","metadata":7}"#).unwrap();
    assert!(without_managed_fields::<Pod, false>(&raw).is_err());
}

/// Every captured review file (as the API server sent them), with its parsed JSON.
fn captured_reviews() -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in [
        shared().join("admission"),
        shared().join("admission/corpus"),
    ] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json") {
                let body = std::fs::read(&p).unwrap();
                out.push((p, body));
            }
        }
    }
    out
}

/// The one-pass read (objects typed while the envelope is read, `RawObject<true>`) gives the
/// same objects as k8s-openapi's own parse without managedFields, and it is the path actually
/// taken for every StatefulSet and Pod the API server sent.
#[test]
fn one_pass_reads_the_same_objects() {
    use stsguard::decode::TypedObject;
    let mut n = 0;
    for (p, body) in captured_reviews() {
        #[derive(serde::Deserialize)]
        struct Env<'a> {
            #[serde(borrow)]
            request: std::collections::HashMap<&'a str, &'a serde_json::value::RawValue>,
        }
        let env: Env = serde_json::from_slice(&body).unwrap();
        for key in ["object", "oldObject"] {
            let Some(text) = env.request.get(key).map(|r| r.get()) else {
                continue;
            };
            let o: serde_json::Value = serde_json::from_str(text).unwrap();
            let kind = o["kind"].as_str().unwrap_or("");
            if !matches!(kind, "StatefulSet" | "Pod") {
                continue;
            }
            // The object's raw text as the API server wrote it (field order kept).
            let raw: RawObject<'_, true> = serde_json::from_str(text).unwrap();
            assert!(
                raw.was_typed(),
                "{}: {key} not read in one pass",
                p.display()
            );
            match raw.take_typed() {
                Some(TypedObject::StatefulSet(s)) => {
                    let mut plain: StatefulSet = serde_json::from_value(o.clone()).unwrap();
                    plain.metadata.managed_fields = None;
                    assert_eq!(*s, plain, "{}", p.display());
                }
                Some(TypedObject::Pod(pod)) => {
                    let mut plain: Pod = serde_json::from_value(o.clone()).unwrap();
                    plain.metadata.managed_fields = None;
                    assert_eq!(*pod, plain, "{}", p.display());
                }
                None => panic!("{}: typed object missing", p.display()),
            }
            n += 1;
        }
    }
    assert!(n >= 80, "{n} objects");
}

/// `answer` (one pass where it can) and `answer_two_pass` (the reference) give byte-identical
/// answers on every captured review, on both endpoints, and on reviews whose objects the one
/// pass cannot settle (null template or metadata, kind after the body, duplicate keys, a
/// Pod without spec, a StatefulSet sent to the scale subresource).
#[test]
fn one_pass_answers_equal_the_two_pass_answers() {
    use stsguard::policy::Policy;
    use stsguard::review::{Endpoint, answer, answer_two_pass};
    let policy = Policy::default();
    let lookups = stsguard::validate::NoLookups("test".into());
    let same = |name: &str, body: &[u8]| {
        for e in [Endpoint::Mutate, Endpoint::Validate] {
            let fast = answer(e, body, &policy, &lookups);
            let slow = answer_two_pass(e, body, &policy, &lookups);
            match (fast, slow) {
                (Ok(f), Ok(s)) => {
                    assert_eq!(
                        String::from_utf8_lossy(&f.body),
                        String::from_utf8_lossy(&s.body),
                        "{name} {e:?}"
                    );
                    assert_eq!(f.summary.outcome, s.summary.outcome, "{name} {e:?}");
                }
                (Err(f), Err(s)) => assert_eq!(f.0, s.0, "{name} {e:?}"),
                (f, s) => panic!(
                    "{name} {e:?}: {:?} vs {:?}",
                    f.map(|a| a.summary),
                    s.map(|a| a.summary)
                ),
            }
        }
    };
    let reviews = captured_reviews();
    assert!(reviews.len() >= 40, "{} reviews", reviews.len());
    for (p, body) in &reviews {
        same(&p.display().to_string(), body);
    }
    // Objects the one pass hands over: spliced into the captured StatefulSet and Pod reviews.
    let sts = read_json(&shared().join("admission/corpus/mysql-k8s-website.create.mutating.json"));
    let pod =
        read_json(&shared().join("admission/corpus/mysql-k8s-website.pod0.create.mutating.json"));
    let text = |v: &serde_json::Value| serde_json::to_string(v).unwrap();
    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut v = sts.clone();
    v["request"]["object"]["spec"]["template"] = serde_json::Value::Null;
    cases.push(("template null", text(&v)));
    let mut v = sts.clone();
    v["request"]["object"]["spec"]["template"] = serde_json::json!({});
    cases.push(("template empty", text(&v)));
    let mut v = sts.clone();
    v["request"]["object"]["metadata"] = serde_json::Value::Null;
    cases.push(("metadata null", text(&v)));
    let mut v = pod.clone();
    v["request"]["object"]["spec"] = serde_json::Value::Null;
    cases.push(("pod spec null", text(&v)));
    let mut v = pod.clone();
    v["request"]["object"]["metadata"] = serde_json::json!({});
    cases.push(("pod metadata empty", text(&v)));
    // kind last: serde_json's map keeps insertion order only with preserve_order, so move it by text.
    let body = text(&sts)
        .replacen(r#""kind":"StatefulSet","#, "", 1)
        .replacen(r#""status":"#, r#""kind":"StatefulSet","status":"#, 1);
    assert!(body.contains(r#""kind":"StatefulSet","status":"#), "{body}");
    cases.push(("kind after the body", body));
    let body = text(&sts).replacen(
        r#""kind":"StatefulSet","#,
        r#""kind":"StatefulSet","metadata":{"name":"first"},"#,
        1,
    );
    cases.push(("duplicate metadata", body));
    let body = text(&sts).replacen(
        r#""kind":"StatefulSet","#,
        r#""kind":"StatefulSet","kind":"StatefulSet","#,
        1,
    );
    cases.push(("duplicate kind", body));
    let body = text(&sts).replacen(r#""managedFields":"#, r#""managedFields":7,"x":"#, 1);
    cases.push(("odd managedFields", body));
    let mut v = sts.clone();
    v["request"]["subResource"] = "scale".into();
    v["request"]["resource"]["resource"] = "statefulsets".into();
    v["request"]["operation"] = "UPDATE".into();
    cases.push(("StatefulSet on the scale subresource", text(&v)));
    for (name, body) in &cases {
        same(name, body.as_bytes());
    }
}
