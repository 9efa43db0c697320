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
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Request<'a> {
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
    pub object: Option<RawObject<'a>>,
    #[serde(borrow, default)]
    pub old_object: Option<RawObject<'a>>,
}

/// A JSON object as its top-level fields, each left as borrowed raw JSON. Reading the envelope
/// splits the object this way in the same pass, so picking the type later costs no rescan.
#[derive(Deserialize, Debug, Default)]
pub struct RawObject<'a>(#[serde(borrow)] pub BTreeMap<Cow<'a, str>, &'a RawValue>);

impl<'a> RawObject<'a> {
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.get(key).copied()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(borrow, default)]
    request: Option<Request<'a>>,
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
            "expected kind AdmissionReview, got {kind:?}"
        )));
    }
    if api_version != API_VERSION {
        return Err(BadReview(format!(
            "expected apiVersion {API_VERSION}, got {api_version:?}"
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

fn typed<T: serde::de::DeserializeOwned>(raw: &RawObject, what: &str) -> Result<T, String> {
    without_managed_fields(raw).map_err(|e| format!("not a {what}: {}", one_line(e)))
}

/// Reads a Kubernetes object from its raw top-level fields, passing over
/// `metadata.managedFields` (see [`crate::decode`]).
pub fn without_managed_fields<T: serde::de::DeserializeOwned>(
    raw: &RawObject,
) -> serde_json::Result<T> {
    crate::decode::typed_from_fields(raw.0.iter().map(|(k, v)| (k.as_ref(), *v)))
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
    let env: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(BadReview(format!("body is not JSON: {}", one_line(e))));
        }
        Err(e) => {
            // A v1 review whose request does not decode, but that has a uid, is answered per the
            // failure mode (the API server needs the uid echoed); anything else is a bad request.
            let u: UidOnly = serde_json::from_slice(body).map_err(|_| {
                BadReview(format!("body is not an AdmissionReview: {}", one_line(&e)))
            })?;
            check_envelope(&u.api_version, &u.kind)?;
            let Some(r) = u.request.filter(|r| !r.uid.is_empty()) else {
                return Err(BadReview(format!(
                    "AdmissionReview has no usable request: {}",
                    one_line(&e)
                )));
            };
            let response = failure(
                response_for(&r.uid),
                &format!("the request does not decode: {}", one_line(e)),
                policy,
            );
            let summary = Summary {
                uid: r.uid,
                allowed: response.allowed,
                outcome: "error",
                ..Default::default()
            };
            return Ok(Answer {
                body: encode(&response, None),
                summary,
            });
        }
    };
    check_envelope(&env.api_version, &env.kind)?;
    let Some(req) = env.request else {
        return Err(BadReview("AdmissionReview has no request".into()));
    };
    if req.uid.is_empty() {
        return Err(BadReview("request.uid is empty".into()));
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
        Err(why) => {
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

fn mutate_request(req: &Request, policy: &Policy) -> Result<Decision, String> {
    let Some(raw) = req.object.as_ref() else {
        return Ok(Decision::default());
    };
    if req.resource.resource == "pods" {
        // The patch adds under /metadata and /spec: they must be objects in the JSON itself
        // (k8s-openapi reads a `null` required field as its default).
        if !is_object(raw.get("metadata")) || !is_object(raw.get("spec")) {
            return Err("the Pod's metadata or spec is not an object".into());
        }
        let pod: Pod = typed(raw, "Pod")?;
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
    if sts.spec.is_some() && !template_is_object(raw) {
        return Err("spec.template is not an object".into());
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

fn template_is_object(raw: &RawObject) -> bool {
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

fn scale_replicas(raw: Option<&RawObject>) -> Option<i32> {
    serde_json::from_str::<ScaleSpec>(raw?.get("spec")?.get())
        .ok()?
        .replicas
}

fn validate_request(
    req: &Request,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Decision, String> {
    let namespace = req.namespace.as_deref().unwrap_or("");
    let sts = |raw: Option<&RawObject>| -> Result<Option<StatefulSet>, String> {
        raw.map(|r| typed(r, "StatefulSet")).transpose()
    };
    let findings: Findings = match (req.sub_resource.as_deref(), &req.operation) {
        (Some(_), _) => {
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
