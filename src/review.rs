//! AdmissionReview in, AdmissionReview out: decode, dispatch to the pure cores, encode.
//!
//! The HTTP layer hands the body here and writes back what comes out; nothing here does I/O.
//!
//! Decoding: kube's `AdmissionReview<T>` flattens its TypeMeta, which makes serde buffer the whole
//! body before decoding it (and `DynamicObject` flattens again). On the request path we read the
//! envelope into [`Request`] instead — kube's `GroupVersionKind`, `GroupVersionResource` and
//! `Operation` types, the objects kept as borrowed raw JSON — and parse the object once, straight
//! into its k8s-openapi type. The answer is kube's `AdmissionResponse`.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::{GroupVersionKind, GroupVersionResource};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::mutate;
use crate::policy::{Mode, OnError, Policy, RuleId};
use crate::validate::{self, Findings, Lookups, Review, Subject};

/// Which webhook was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Mutate,
    Validate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Mutate => "mutate",
            Endpoint::Validate => "validate",
        }
    }
}

/// A body that is not a v1 AdmissionReview: HTTP 400 with this one-line reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(pub String);

/// What happened, for the log line and metrics.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: String,
    pub sub_resource: String,
    pub dry_run: bool,
    pub allowed: bool,
    pub patched: bool,
    pub warnings: usize,
    /// "allowed", "denied", "patched" or "error" (not evaluable).
    pub outcome: &'static str,
    /// Rule results (rule, mode, result) for metrics.
    pub rule_results: Vec<(RuleId, Mode, &'static str)>,
}

/// A review answered: the JSON body and its summary.
#[derive(Clone, Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub summary: Summary,
}

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// The request of an AdmissionReview, objects left as raw JSON until dispatch picks their type.
///
/// With `NEW` (`OLD`), `object` (`oldObject`) is read straight into its type when it is a
/// StatefulSet or a Pod whose `apiVersion` and `kind` come first, as the API server writes them
/// (see [`RawObject`]).
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a, const NEW: bool = false, const OLD: bool = false> {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(borrow, default)]
    pub object: Option<RawObject<'a, NEW>>,
    #[serde(borrow, default)]
    pub old_object: Option<RawObject<'a, OLD>>,
}

/// A JSON object as its top-level fields, each left as borrowed raw JSON. Reading the envelope
/// splits the object this way in the same pass, so picking the type later costs no rescan.
///
/// With `TYPED`, a StatefulSet or Pod is instead read straight into its k8s-openapi type once
/// its `apiVersion` and `kind` have been read (one pass over the object); `fields` then holds
/// only the fields read before that.
#[derive(Default)]
pub struct RawObject<'a, const TYPED: bool = false> {
    pub fields: BTreeMap<Cow<'a, str>, &'a RawValue>,
    typed: std::cell::Cell<Option<crate::decode::TypedObject>>,
    was_typed: bool,
}

impl<'a, const TYPED: bool> RawObject<'a, TYPED> {
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.get(key).copied()
    }

    /// Was the object read typed? Its raw fields are then not all kept.
    pub fn was_typed(&self) -> bool {
        self.was_typed
    }

    /// The typed object read with the envelope, once.
    pub fn take_typed(&self) -> Option<crate::decode::TypedObject> {
        self.typed.take()
    }
}

impl<const TYPED: bool> std::fmt::Debug for RawObject<'_, TYPED> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawObject")
            .field("fields", &self.fields)
            .field("was_typed", &self.was_typed)
            .finish()
    }
}

impl<'de: 'a, 'a, const TYPED: bool> Deserialize<'de> for RawObject<'a, TYPED> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a, const TYPED: bool>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a, const TYPED: bool> serde::de::Visitor<'de> for ObjectVisitor<'a, TYPED> {
            type Value = RawObject<'a, TYPED>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                while let Some(key) = map.next_key::<crate::decode::Key<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    let head = key.0 == "kind" || key.0 == "apiVersion";
                    fields.push((key.0, value));
                    if let Some(kind) = head
                        .then(|| crate::decode::known_kind(&fields))
                        .flatten()
                        .filter(|_| TYPED)
                    {
                        let typed = crate::decode::typed_rest(kind, &fields, map)?;
                        return Ok(RawObject {
                            fields: shorten(fields),
                            typed: Some(typed).into(),
                            was_typed: true,
                        });
                    }
                }
                Ok(RawObject {
                    fields: shorten(fields),
                    ..Default::default()
                })
            }
        }
        fn shorten<'de: 'a, 'a>(
            fields: Vec<(Cow<'de, str>, &'de RawValue)>,
        ) -> BTreeMap<Cow<'a, str>, &'a RawValue> {
            fields
                .into_iter()
                .map(|(k, v)| (k as Cow<'a, str>, v as &'a RawValue))
                .collect()
        }
        d.deserialize_map(ObjectVisitor::<'a, TYPED>(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a, const NEW: bool, const OLD: bool> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow, default)]
    request: Option<Request<'a, NEW, OLD>>,
}

/// Just enough of an envelope to echo a uid when the request itself does not decode.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UidOnly {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<UidOnlyRequest>,
}

#[derive(Deserialize)]
struct UidOnlyRequest {
    uid: String,
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

/// kube's response for a uid: allowed, empty status.
fn response_for(uid: &str) -> AdmissionResponse {
    let mut r = AdmissionResponse::invalid("");
    r.uid = uid.to_string();
    r.allowed = true;
    r.result = Default::default();
    r
}

fn check_envelope(api_version: &str, kind: &str) -> Result<(), BadReview> {
    if kind != KIND {
        return Err(BadReview(format!(
            "expected kind AdmissionReview, got {:?}",
            crate::text::quote(kind)
        )));
    }
    if api_version != API_VERSION {
        return Err(BadReview(format!(
            "expected apiVersion {API_VERSION}, got {:?}",
            crate::text::quote(api_version)
        )));
    }
    Ok(())
}

fn one_line(e: impl std::fmt::Display) -> String {
    validate::short(&e.to_string().replace('\n', " "))
}

fn op_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The object as `T`: the one read typed with the envelope, else parsed from the raw fields.
fn typed<T: FromTyped, const TYPED: bool>(
    raw: &RawObject<'_, TYPED>,
    what: &str,
) -> Result<T, Why> {
    let object = if raw.was_typed() {
        // Read as another kind than dispatch expects, or taken already: the two-pass read.
        raw.take_typed().and_then(T::from_typed).ok_or(Why::Slow)?
    } else {
        without_managed_fields(raw)
            .map_err(|e| Why::Eval(format!("not a {what}: {}", one_line(e))))?
    };
    crate::bounds::check_pod(object.pod_spec())?;
    Ok(object)
}

/// The types an object may have been read as in one pass.
trait FromTyped: serde::de::DeserializeOwned {
    fn from_typed(t: crate::decode::TypedObject) -> Option<Self>;
    fn pod_spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec>;
}

impl FromTyped for StatefulSet {
    fn from_typed(t: crate::decode::TypedObject) -> Option<Self> {
        match t {
            crate::decode::TypedObject::StatefulSet(s) => Some(*s),
            _ => None,
        }
    }
    fn pod_spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.spec.as_ref()?.template.spec.as_ref()
    }
}

impl FromTyped for Pod {
    fn from_typed(t: crate::decode::TypedObject) -> Option<Self> {
        match t {
            crate::decode::TypedObject::Pod(p) => Some(*p),
            _ => None,
        }
    }
    fn pod_spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.spec.as_ref()
    }
}

/// Reads a Kubernetes object from its raw top-level fields, passing over
/// `metadata.managedFields` (see [`crate::decode`]).
pub fn without_managed_fields<T: serde::de::DeserializeOwned, const TYPED: bool>(
    raw: &RawObject<'_, TYPED>,
) -> serde_json::Result<T> {
    crate::decode::typed_from_fields(raw.fields.iter().map(|(k, v)| (k.as_ref(), *v)))
}

/// What the dispatch decided.
#[derive(Default)]
struct Decision {
    denied: Option<String>,
    warnings: Vec<String>,
    patch: Option<json_patch::Patch>,
    rules: Vec<(RuleId, Mode, &'static str)>,
}

/// Answers one review body. `Err` is an HTTP 400.
pub fn answer(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Answer, BadReview> {
    // A body past the bounds on work is not evaluated (answered per onError).
    if let Err(why) = crate::bounds::check_body(body) {
        return unevaluated(body, policy, &why);
    }
    // First the one-pass read (the object typed as the envelope is read; /mutate never reads
    // oldObject); anything it cannot settle — a body that does not decode, an object whose raw
    // shape must be checked — is answered by the two-pass read, whose errors are the reference.
    let fast = match endpoint {
        Endpoint::Mutate => answer_with::<true, false>(endpoint, body, policy, lookups),
        Endpoint::Validate => answer_with::<true, true>(endpoint, body, policy, lookups),
    };
    match fast {
        Ok(a) => Ok(a),
        Err(_) => answer_two_pass(endpoint, body, policy, lookups),
    }
}

/// [`answer`] with the two-pass read only: every object kept as raw fields until dispatch picks
/// its type. The reference the one-pass read is tested against.
pub fn answer_two_pass(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Answer, BadReview> {
    answer_with::<false, false>(endpoint, body, policy, lookups).map_err(|r| match r {
        Reject::Bad(b) => b,
        Reject::Slow => BadReview("the review could not be read".into()),
    })
}

/// Not answered: a bad request (HTTP 400), or handed to the two-pass read.
enum Reject {
    Bad(BadReview),
    Slow,
}

impl From<BadReview> for Reject {
    fn from(b: BadReview) -> Self {
        Reject::Bad(b)
    }
}

/// Why a review was not decided: it cannot be evaluated (the failure mode applies), or the
/// one-pass read must hand it to the two-pass read.
enum Why {
    Eval(String),
    Slow,
}

impl From<String> for Why {
    fn from(s: String) -> Self {
        Why::Eval(s)
    }
}

impl From<&str> for Why {
    fn from(s: &str) -> Self {
        Why::Eval(s.to_string())
    }
}

/// [`answer`] with objects read typed in one pass (`NEW` for object, `OLD` for oldObject) or
/// not. `None`: hand over to the two-pass read (only when `NEW` or `OLD`).
fn answer_with<const NEW: bool, const OLD: bool>(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Answer, Reject> {
    let fast = NEW || OLD;
    let env: Envelope<NEW, OLD> = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(_) if fast => return Err(Reject::Slow),
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(BadReview(format!("body is not JSON: {}", one_line(e))).into());
        }
        Err(e) => {
            // A v1 review whose request does not decode, but that has a uid, is answered per the
            // failure mode (the API server needs the uid echoed); anything else is a bad request.
            return unevaluated(
                body,
                policy,
                &format!("the request does not decode: {}", one_line(e)),
            )
            .map_err(Reject::Bad);
        }
    };
    check_envelope(&env.api_version, &env.kind)?;
    let Some(req) = env.request else {
        return Err(BadReview("AdmissionReview has no request".into()).into());
    };
    if req.uid.is_empty() {
        return Err(BadReview("request.uid is empty".into()).into());
    }
    let op = op_str(&req.operation);
    let mut summary = Summary {
        uid: req.uid.clone(),
        kind: req.kind.kind.clone(),
        namespace: req.namespace.clone().unwrap_or_default(),
        name: req.name.clone(),
        operation: op.to_string(),
        sub_resource: req.sub_resource.clone().unwrap_or_default(),
        dry_run: req.dry_run,
        ..Default::default()
    };
    let mutating = endpoint == Endpoint::Mutate;
    let handled = crate::webhooks::handles(
        mutating,
        &req.resource.group,
        &req.resource.resource,
        req.sub_resource.as_deref(),
        op,
    ) && !policy.is_excluded(req.namespace.as_deref());
    let decided = match endpoint {
        _ if !handled => Ok(Decision::default()),
        Endpoint::Mutate => mutate_request(&req, policy),
        Endpoint::Validate => validate_request(&req, policy, lookups),
    };
    let mut response = response_for(&req.uid);
    let d = match decided {
        Ok(d) => d,
        Err(Why::Slow) => return Err(Reject::Slow),
        Err(Why::Eval(why)) => {
            let response = failure(response, &why, policy);
            summary.outcome = "error";
            summary.allowed = response.allowed;
            summary.warnings = response.warnings.as_ref().map_or(0, Vec::len);
            return Ok(Answer {
                body: encode(&response, None),
                summary,
            });
        }
    };
    if !d.warnings.is_empty() {
        response.warnings = Some(d.warnings.iter().map(|w| validate::short(w)).collect());
    }
    if let Some(message) = d.denied {
        response = deny(response, message);
    }
    summary.allowed = response.allowed;
    summary.patched = d.patch.as_ref().is_some_and(|p| !p.0.is_empty());
    summary.warnings = response.warnings.as_ref().map_or(0, Vec::len);
    summary.rule_results = d.rules;
    summary.outcome = if !response.allowed {
        "denied"
    } else if summary.patched {
        "patched"
    } else {
        "allowed"
    };
    Ok(Answer {
        body: encode(&response, d.patch.as_ref()),
        summary,
    })
}

/// The answer to a review that is not evaluated (it does not decode, it is past a bound, or its
/// time budget ran out): per the policy's `onError`, with `why` as a warning or the denial. Only
/// the envelope and the uid are read. `Err`: not even that reads (HTTP 400).
pub fn unevaluated(body: &[u8], policy: &Policy, why: &str) -> Result<Answer, BadReview> {
    let u: UidOnly = serde_json::from_slice(body).map_err(|e| {
        BadReview(if e.is_syntax() || e.is_eof() {
            format!("body is not JSON: {}", one_line(e))
        } else {
            format!("body is not an AdmissionReview: {}", one_line(e))
        })
    })?;
    check_envelope(&u.api_version, &u.kind)?;
    let Some(r) = u.request.filter(|r| !r.uid.is_empty()) else {
        return Err(BadReview(format!(
            "AdmissionReview has no usable request ({})",
            one_line(why)
        )));
    };
    let response = failure(response_for(&r.uid), why, policy);
    let summary = Summary {
        uid: r.uid,
        allowed: response.allowed,
        outcome: "error",
        ..Default::default()
    };
    Ok(Answer {
        body: encode(&response, None),
        summary,
    })
}

fn failure(response: AdmissionResponse, why: &str, policy: &Policy) -> AdmissionResponse {
    let message = format!("stsguard could not evaluate this request: {why}");
    match policy.on_error {
        OnError::Allow => {
            let mut r = response;
            r.warnings = Some(vec![validate::short(&message)]);
            r
        }
        OnError::Deny => deny(response, message),
    }
}

fn deny(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut r = response.deny(message);
    r.result.code = 403;
    r.result.reason = "Forbidden".into();
    r
}

fn mutate_request<const NEW: bool, const OLD: bool>(
    req: &Request<'_, NEW, OLD>,
    policy: &Policy,
) -> Result<Decision, Why> {
    let Some(raw) = req.object.as_ref() else {
        return Ok(Decision::default());
    };
    if req.resource.resource == "pods" {
        // The patch adds under /metadata and /spec: they must be objects in the JSON itself
        // (k8s-openapi reads a `null` required field as its default).
        if !raw.was_typed() && (!is_object(raw.get("metadata")) || !is_object(raw.get("spec"))) {
            return Err("the Pod's metadata or spec is not an object".into());
        }
        let pod: Pod = typed(raw, "Pod")?;
        // Read in one pass, a null or missing metadata or spec reads as its default: the
        // two-pass read checks the raw shape.
        if raw.was_typed() && (pod.metadata == Default::default() || pod.spec.is_none()) {
            return Err(Why::Slow);
        }
        let (out, report) = mutate::pod::mutate_pod(&pod);
        let patch = mutate::pod_patch(&pod, &out).map_err(one_line)?;
        return Ok(Decision {
            warnings: report.warnings,
            patch: Some(patch),
            ..Default::default()
        });
    }
    let mut sts: StatefulSet = typed(raw, "StatefulSet")?;
    // Every patch path is under /spec/template: it must be an object in the JSON itself, not
    // `null` or missing (which k8s-openapi reads as an empty template).
    if let Some(spec) = sts.spec.as_ref() {
        if raw.was_typed() {
            // Only an object reads as a template other than the default.
            if spec.template == Default::default() {
                return Err(Why::Slow);
            }
        } else if !template_is_object(raw) {
            return Err("spec.template is not an object".into());
        }
    }
    let (report, patch) = mutate::mutate_with_patch(&mut sts, policy).map_err(one_line)?;
    Ok(Decision {
        warnings: report.warnings,
        patch: Some(patch),
        ..Default::default()
    })
}

fn is_object(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|r| r.get().trim_start().starts_with('{'))
}

fn template_is_object<const TYPED: bool>(raw: &RawObject<'_, TYPED>) -> bool {
    #[derive(Deserialize)]
    struct SpecTemplate<'a> {
        #[serde(borrow, default)]
        template: Option<&'a RawValue>,
    }
    raw.get("spec")
        .and_then(|s| serde_json::from_str::<SpecTemplate>(s.get()).ok())
        .is_some_and(|s| is_object(s.template))
}

#[derive(Deserialize)]
struct ScaleSpec {
    #[serde(default)]
    replicas: Option<i32>,
}

fn scale_replicas<const TYPED: bool>(raw: Option<&RawObject<'_, TYPED>>) -> Option<i32> {
    serde_json::from_str::<ScaleSpec>(raw?.get("spec")?.get())
        .ok()?
        .replicas
}

fn validate_request<const NEW: bool, const OLD: bool>(
    req: &Request<'_, NEW, OLD>,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Decision, Why> {
    let namespace = req.namespace.as_deref().unwrap_or("");
    fn sts<const TYPED: bool>(
        raw: Option<&RawObject<'_, TYPED>>,
    ) -> Result<Option<StatefulSet>, Why> {
        raw.map(|r| typed(r, "StatefulSet")).transpose()
    }
    let findings: Findings = match (req.sub_resource.as_deref(), &req.operation) {
        (Some(_), _) => {
            // A Scale is never read typed; anything else here goes to the two-pass read.
            if req.object.as_ref().is_some_and(RawObject::was_typed)
                || req.old_object.as_ref().is_some_and(RawObject::was_typed)
            {
                return Err(Why::Slow);
            }
            let Some(n) = scale_replicas(req.object.as_ref()) else {
                return Err("the Scale object has no spec.replicas".into());
            };
            let subject = Subject::Scale {
                name: &req.name,
                replicas: n,
                old_replicas: scale_replicas(req.old_object.as_ref()),
            };
            validate::validate(&Review { namespace, subject }, policy, lookups)
        }
        (None, Operation::Delete) => {
            let old = sts(req.old_object.as_ref())?;
            validate::validate(
                &Review {
                    namespace,
                    subject: Subject::Delete { old: old.as_ref() },
                },
                policy,
                lookups,
            )
        }
        (None, _) => {
            let Some(object) = sts(req.object.as_ref())? else {
                return Err("the request has no object".into());
            };
            let old = if req.operation == Operation::Update {
                sts(req.old_object.as_ref())?
            } else {
                None
            };
            let review = Review {
                namespace,
                subject: Subject::Write {
                    object: &object,
                    old: old.as_ref(),
                },
            };
            validate::validate(&review, policy, lookups)
        }
    };
    Ok(Decision {
        denied: (!findings.allowed()).then(|| findings.denial()),
        warnings: findings.warning_lines(),
        patch: None,
        rules: findings.results,
    })
}
