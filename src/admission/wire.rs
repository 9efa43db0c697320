//! The AdmissionReview on the wire: the request read in one pass, the response written.
//!
//! kube's `AdmissionReview<T>` flattens its TypeMeta, which makes serde buffer the whole body
//! before decoding it. Here the envelope is read field by field into kube's `GroupVersionKind`,
//! `GroupVersionResource` and `Operation`, and the object straight into its k8s-openapi type
//! ([`super::decode`]) — chosen by `request.kind`, which the API server writes before the object.
//! An object that comes before its `kind` is kept as raw JSON and read the same way once the
//! envelope is read. The answer is kube's `AdmissionResponse`.

use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::{GroupVersionKind, GroupVersionResource};
use serde::Serialize;
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::decode::{Key, Kind, Object, ObjectSeed, object_from_str};
use crate::error::{Error, Result};

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// An AdmissionReview as read.
pub struct Review<'a> {
    pub api_version: String,
    pub kind: String,
    pub request: Option<Request<'a>>,
}

/// The request of an AdmissionReview.
pub struct Request<'a> {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    pub sub_resource: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub dry_run: bool,
    pub object: Slot<'a>,
    pub old_object: Slot<'a>,
}

/// An object of the request.
pub enum Slot<'a> {
    Absent,
    Read(Object),
    /// Came before the request's `kind` (or its kind is not one stsguard reads): read on demand
    /// (in part, when [`Old::Partial`] says so of an `oldObject`).
    Raw(&'a RawValue, bool),
}

impl Slot<'_> {
    /// The object as `kind`, `None` when there is none (`for_patch` as for [`ObjectSeed`]).
    pub fn take(self, kind: Kind, for_patch: bool, what: &str) -> Result<Option<Object>> {
        let object = match self {
            Slot::Absent => return Ok(None),
            Slot::Read(o) => o,
            Slot::Raw(raw, partial) => match object_from_str(
                ObjectSeed {
                    kind,
                    for_patch,
                    partial,
                },
                raw.get(),
            ) {
                Ok(Some(o)) => o,
                Ok(None) => return Ok(None),
                Err(e) => {
                    return Err(Error::NotEvaluated(format!(
                        "{what} is not a {}: {}",
                        kind.as_str(),
                        super::one_line(e)
                    )));
                }
            },
        };
        if object.kind() == kind {
            Ok(Some(object))
        } else {
            Err(Error::NotEvaluated(format!(
                "{what} is a {}, expected a {}",
                object.kind().as_str(),
                kind.as_str()
            )))
        }
    }
}

/// How a review's `oldObject` is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Old {
    Whole,
    /// Its `metadata` and `spec.replicas` only (what validation reads of a stored object), the
    /// rest passed over unread: the stored object of an UPDATE or DELETE whose review is past a
    /// bound while the request's `object` is not.
    Partial,
}

/// Reads a review for `endpoint`, `object` and `oldObject` (an UPDATE's `/mutate` compares the
/// two); at `/mutate` the object is read for a patch.
///
/// A body of valid UTF-8 (every body the API server sends) is checked once, whole, and read as
/// text: serde_json then does not check each string again, which is a tenth of a typical review's
/// read. Any other body is read as bytes, as before, where serde_json says what breaks and where.
pub fn read(body: &[u8], endpoint: super::Endpoint, old: Old) -> serde_json::Result<Review<'_>> {
    let seed = ReviewSeed {
        for_patch: endpoint == super::Endpoint::Mutate,
        old_partial: old == Old::Partial,
    };
    match std::str::from_utf8(body) {
        Ok(text) => read_from(serde_json::Deserializer::from_str(text), seed),
        Err(_) => read_from(serde_json::Deserializer::from_slice(body), seed),
    }
}

fn read_from<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    seed: ReviewSeed,
) -> serde_json::Result<Review<'de>> {
    let review = seed.deserialize(&mut de)?;
    de.end()?;
    Ok(review)
}

#[derive(Clone, Copy)]
struct ReviewSeed {
    for_patch: bool,
    old_partial: bool,
}

impl<'de> DeserializeSeed<'de> for ReviewSeed {
    type Value = Review<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Review<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ReviewSeed {
    type Value = Review<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an AdmissionReview object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Review<'de>, A::Error> {
        let mut review = Review {
            api_version: String::new(),
            kind: String::new(),
            request: None,
        };
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "apiVersion" => review.api_version = map.next_value()?,
                "kind" => review.kind = map.next_value()?,
                "request" => review.request = map.next_value_seed(RequestSeed(self))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(review)
    }
}

struct RequestSeed(ReviewSeed);

impl<'de> DeserializeSeed<'de> for RequestSeed {
    type Value = Option<Request<'de>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed {
    type Value = Option<Request<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an AdmissionRequest object")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut uid, mut kind, mut resource, mut operation) = (None, None, None, None);
        let (mut sub_resource, mut name, mut namespace, mut dry_run) = (None, None, None, None);
        let (mut object, mut old_object) = (Slot::Absent, Slot::Absent);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "uid" => uid = Some(map.next_value::<String>()?),
                "kind" => kind = Some(map.next_value::<GroupVersionKind>()?),
                "resource" => resource = Some(map.next_value::<GroupVersionResource>()?),
                "subResource" => sub_resource = map.next_value::<Option<String>>()?,
                "name" => name = map.next_value::<Option<String>>()?,
                "namespace" => namespace = map.next_value::<Option<String>>()?,
                "operation" => operation = Some(map.next_value::<Operation>()?),
                "dryRun" => dry_run = map.next_value::<Option<bool>>()?,
                // `/mutate` patches the object; `/validate` does not.
                "object" => object = slot(&mut map, kind.as_ref(), self.0.for_patch, false)?,
                "oldObject" => {
                    old_object = slot(&mut map, kind.as_ref(), false, self.0.old_partial)?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let missing = |field| A::Error::custom(format!("request.{field} is missing"));
        Ok(Some(Request {
            uid: uid.ok_or_else(|| missing("uid"))?,
            kind: kind.ok_or_else(|| missing("kind"))?,
            resource: resource.ok_or_else(|| missing("resource"))?,
            sub_resource,
            name: name.unwrap_or_default(),
            namespace,
            operation: operation.ok_or_else(|| missing("operation"))?,
            dry_run: dry_run.unwrap_or(false),
            object,
            old_object,
        }))
    }
}

/// An object read as the request's `kind` says when that is known and read by stsguard, else
/// kept raw.
fn slot<'de, A: MapAccess<'de>>(
    map: &mut A,
    kind: Option<&GroupVersionKind>,
    for_patch: bool,
    partial: bool,
) -> Result<Slot<'de>, A::Error> {
    Ok(match kind.and_then(Kind::of) {
        Some(kind) => map
            .next_value_seed(ObjectSeed {
                kind,
                for_patch,
                partial,
            })?
            .map_or(Slot::Absent, Slot::Read),
        None => map
            .next_value::<Option<&'de RawValue>>()?
            .map_or(Slot::Absent, |raw| Slot::Raw(raw, partial)),
    })
}

/// A review's `operation`, `object` and `oldObject` (unread), the rest passed over: where in a
/// body past a bound the excess is.
#[derive(serde::Deserialize)]
pub struct ObjectPart<'a> {
    #[serde(borrow)]
    pub request: Option<ObjectPartRequest<'a>>,
}

#[derive(serde::Deserialize)]
pub struct ObjectPartRequest<'a> {
    #[serde(default)]
    pub operation: Option<String>,
    #[serde(borrow, default)]
    pub object: Option<&'a RawValue>,
    #[serde(rename = "oldObject", borrow, default)]
    pub old_object: Option<&'a RawValue>,
}

/// Just enough of a review to echo its uid when the rest does not read.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UidOnly {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub request: Option<UidOnlyRequest>,
}

#[derive(serde::Deserialize)]
pub struct UidOnlyRequest {
    pub uid: String,
    /// What the request is about, for the warning; any part may be missing or null.
    #[serde(default)]
    pub kind: Option<KindOnly>,
    #[serde(default)]
    pub resource: Option<ResourceOnly>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "subResource")]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub operation: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct KindOnly {
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(serde::Deserialize)]
pub struct ResourceOnly {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub resource: Option<String>,
}

impl UidOnlyRequest {
    /// The request's object, named as [`crate::text::object`] names it.
    pub fn object(&self) -> String {
        let kind = self.kind.as_ref().and_then(|k| k.kind.as_deref());
        let resource = self.resource.as_ref().and_then(|r| r.resource.as_deref());
        let kind = super::subject_kind(resource.unwrap_or(""), kind.unwrap_or("object"));
        let (ns, name) = (self.namespace.as_deref(), self.name.as_deref());
        crate::text::object(kind, ns.unwrap_or(""), name.unwrap_or(""))
    }

    /// Whether `endpoint` judges this request at all (as [`super::routes::handles`] says),
    /// before the namespace exclusion.
    pub fn handled(&self, endpoint: super::Endpoint) -> bool {
        let r = self.resource.as_ref();
        super::routes::handles(
            endpoint,
            r.and_then(|r| r.group.as_deref()).unwrap_or(""),
            r.and_then(|r| r.resource.as_deref()).unwrap_or(""),
            self.sub_resource.as_deref(),
            self.operation.as_deref().unwrap_or(""),
        )
    }

    /// The namespace the exclusion list is matched against (a Namespace's review names itself).
    pub fn scope(&self) -> Option<&str> {
        let resource = self.resource.as_ref().and_then(|r| r.resource.as_deref());
        self.namespace.as_deref().or(match resource {
            Some("namespaces") => self.name.as_deref(),
            _ => None,
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: &'a AdmissionResponse,
}

/// Encodes a response; `patch` goes out base64-encoded with `patchType: JSONPatch` (kube's
/// `with_patch` would serialise the bytes as a number array).
///
/// The base64 text (which never needs escaping) is appended to the serialised review as the
/// response's last two fields, without a second pass through the JSON string escaper.
pub fn encode(response: &AdmissionResponse, patch: Option<&json_patch::Patch>) -> Vec<u8> {
    let wire = WireReview {
        api_version: API_VERSION,
        kind: KIND,
        response,
    };
    // Serialising these plain types cannot fail; fall back to a minimal allowed answer if it did.
    let Ok(mut out) = serde_json::to_vec(&wire) else {
        return format!(
            r#"{{"apiVersion":"{API_VERSION}","kind":"{KIND}","response":{{"uid":{},"allowed":true}}}}"#,
            serde_json::Value::String(response.uid.clone())
        )
        .into_bytes();
    };
    let Some(patch) = patch.filter(|p| !p.0.is_empty()) else {
        return out;
    };
    // `out` ends with the two closing braces of `response` and of the review.
    let Ok(json) = serde_json::to_vec(patch) else {
        return out;
    };
    if !out.ends_with(b"}}") {
        return out;
    }
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(json);
    out.truncate(out.len() - 2);
    out.reserve(b64.len() + 48);
    out.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
    out.extend_from_slice(b64.as_bytes());
    out.extend_from_slice(b"\"}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid_of(body: &[u8]) -> Option<String> {
        read(body, crate::admission::Endpoint::Validate, Old::Whole)
            .ok()?
            .request
            .map(|r| r.uid)
    }

    #[test]
    fn a_body_that_is_not_utf8_is_read_as_bytes_as_before() {
        let review = |extra: &[u8]| {
            let mut b =
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","x":""#.to_vec();
            b.extend_from_slice(extra);
            b.extend_from_slice(
                br#"","request":{"uid":"u1","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},"resource":{"group":"apps","version":"v1","resource":"statefulsets"},"name":"a","operation":"CREATE","userInfo":{}}}"#,
            );
            b
        };
        // Valid UTF-8: read as text.
        assert_eq!(uid_of(&review("é".as_bytes())).as_deref(), Some("u1"));
        // A byte that is not UTF-8 in a value passed over: read as bytes, as serde_json reads it.
        let invalid = review(b"\xff");
        assert!(std::str::from_utf8(&invalid).is_err());
        assert_eq!(uid_of(&invalid).as_deref(), Some("u1"));
        // In a string that is read: an error, not a panic.
        let mut bad_uid = review(b"");
        let at = bad_uid
            .windows(4)
            .position(|w| w == b"\"u1\"")
            .expect("the uid");
        bad_uid[at + 1] = 0xff;
        assert_eq!(uid_of(&bad_uid), None);
    }
}
