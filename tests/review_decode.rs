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
    assert!(without_managed_fields::<Pod>(&raw).is_err());
    let raw: RawObject =
        serde_json::from_str(r#"{"apiVersion":"v1","kind":"Pod","metadata":7}"#).unwrap();
    assert!(without_managed_fields::<Pod>(&raw).is_err());
}
