//! AdmissionReview in, AdmissionReview out: decode, dispatch to the pure cores, encode.
//!
//! The HTTP layer hands the body here and writes back what comes out; nothing here does I/O.

use base64::Engine as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use serde::{Deserialize, Serialize};

use crate::mutate::{self, Report};
use crate::policy::{OnError, Policy};
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
    pub rule_results: Vec<(crate::policy::RuleId, crate::policy::Mode, &'static str)>,
}

/// A review answered: the JSON body and its summary.
#[derive(Clone, Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub summary: Summary,
}

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse<'a> {
    #[serde(flatten)]
    inner: &'a AdmissionResponse,
    /// The documented wire form: base64 of the JSONPatch document.
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: WireResponse<'a>,
}

/// Encodes a response; `patch` goes out base64-encoded with `patchType: JSONPatch`.
pub fn encode(response: &AdmissionResponse, patch: Option<&json_patch::Patch>) -> Vec<u8> {
    let patch = patch
        .filter(|p| !p.0.is_empty())
        .and_then(|p| serde_json::to_vec(p).ok());
    let wire = WireReview {
        api_version: API_VERSION,
        kind: KIND,
        response: WireResponse {
            inner: response,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch: patch.map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
        },
    };
    // Serialising these plain types cannot fail; fall back to a minimal allowed answer if it did.
    serde_json::to_vec(&wire).unwrap_or_else(|_| {
        format!(r#"{{"apiVersion":"{API_VERSION}","kind":"{KIND}","response":{{"uid":{},"allowed":true}}}}"#,
            serde_json::Value::String(response.uid.clone()))
        .into_bytes()
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<EnvelopeRequest>,
}

#[derive(Deserialize)]
struct EnvelopeRequest {
    uid: String,
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
    let s = e.to_string().replace('\n', " ");
    validate::short(&s)
}

fn op_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

fn decode<T: serde::de::DeserializeOwned>(obj: &DynamicObject) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::to_value(obj)?)
}

/// Answers one review body. `Err` is an HTTP 400.
pub fn answer(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Answer, BadReview> {
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            // A v1 review with a uid whose object we cannot decode is well-formed enough to
            // answer per the failure mode; anything else is a bad request.
            let env: Envelope = serde_json::from_slice(body).map_err(|e2| {
                BadReview(if e2.is_syntax() || e2.is_eof() {
                    format!("body is not JSON: {}", one_line(e2))
                } else {
                    format!("body is not an AdmissionReview: {}", one_line(e2))
                })
            })?;
            check_envelope(
                env.api_version.as_deref().unwrap_or(""),
                env.kind.as_deref().unwrap_or(""),
            )?;
            let Some(req) = env.request else {
                return Err(BadReview("AdmissionReview has no request".into()));
            };
            return Ok(undecodable(req.uid, one_line(e), policy));
        }
    };
    check_envelope(&review.types.api_version, &review.types.kind)?;
    let req: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| BadReview("AdmissionReview has no request".into()))?;
    if req.uid.is_empty() {
        return Err(BadReview("request.uid is empty".into()));
    }
    let mut summary = Summary {
        uid: req.uid.clone(),
        kind: req.kind.kind.clone(),
        namespace: req.namespace.clone().unwrap_or_default(),
        name: req.name.clone(),
        operation: op_str(&req.operation).to_string(),
        sub_resource: req.sub_resource.clone().unwrap_or_default(),
        dry_run: req.dry_run,
        ..Default::default()
    };
    let handled = crate::webhooks::handles(
        endpoint == Endpoint::Mutate,
        &req.resource.group,
        &req.resource.resource,
        req.sub_resource.as_deref(),
        op_str(&req.operation),
    );
    let result = match endpoint {
        _ if !handled => Ok(((AdmissionResponse::from(&req), Vec::new()), None)),
        Endpoint::Mutate => mutate_request(&req, policy),
        Endpoint::Validate => validate_request(&req, policy, lookups),
    };
    let (response, patch) = match result {
        Ok(r) => r,
        Err(why) => {
            summary.outcome = "error";
            let response = failure_response(AdmissionResponse::from(&req), &why, policy);
            summary.allowed = response.allowed;
            summary.warnings = response.warnings.as_ref().map_or(0, Vec::len);
            return Ok(Answer {
                body: encode(&response, None),
                summary,
            });
        }
    };
    let (response, patch, rule_results) = (response.0, patch, response.1);
    summary.allowed = response.allowed;
    summary.patched = patch.as_ref().is_some_and(|p| !p.0.is_empty());
    summary.warnings = response.warnings.as_ref().map_or(0, Vec::len);
    summary.rule_results = rule_results;
    summary.outcome = if !response.allowed {
        "denied"
    } else if summary.patched {
        "patched"
    } else {
        "allowed"
    };
    Ok(Answer {
        body: encode(&response, patch.as_ref()),
        summary,
    })
}

fn failure_response(response: AdmissionResponse, why: &str, policy: &Policy) -> AdmissionResponse {
    match policy.on_error {
        OnError::Allow => {
            let mut r = response;
            r.warnings = Some(vec![validate::short(&format!(
                "stsguard could not evaluate this request: {why}"
            ))]);
            r
        }
        OnError::Deny => deny(
            response,
            format!("stsguard could not evaluate this request: {why}"),
        ),
    }
}

fn undecodable(uid: String, why: String, policy: &Policy) -> Answer {
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.clone();
    response.allowed = true;
    response.result = Default::default();
    let response = failure_response(
        response,
        &format!("the object does not decode: {why}"),
        policy,
    );
    let summary = Summary {
        uid,
        allowed: response.allowed,
        outcome: "error",
        ..Default::default()
    };
    Answer {
        body: encode(&response, None),
        summary,
    }
}

fn deny(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut r = response.deny(message);
    r.result.code = 403;
    r.result.reason = "Forbidden".into();
    r
}

type Decided = (
    (
        AdmissionResponse,
        Vec<(crate::policy::RuleId, crate::policy::Mode, &'static str)>,
    ),
    Option<json_patch::Patch>,
);

fn with_warnings(mut r: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        r.warnings = Some(warnings.iter().map(|w| validate::short(w)).collect());
    }
    r
}

fn is_resource(req: &AdmissionRequest<DynamicObject>, group: &str, resource: &str) -> bool {
    req.resource.group == group && req.resource.resource == resource
}

/// The patch for a mutation, checked to apply to the object exactly as received.
fn checked_patch<T: Serialize>(
    received: &DynamicObject,
    before: &T,
    after: &T,
) -> Result<Option<json_patch::Patch>, String> {
    let patch = mutate::patch_for(before, after).map_err(one_line)?;
    if patch.0.is_empty() {
        return Ok(None);
    }
    let mut doc = serde_json::to_value(received).map_err(one_line)?;
    json_patch::patch(&mut doc, &patch)
        .map_err(|e| format!("internal: patch does not apply: {}", one_line(e)))?;
    Ok(Some(patch))
}

fn mutate_request(
    req: &AdmissionRequest<DynamicObject>,
    policy: &Policy,
) -> Result<Decided, String> {
    let response = AdmissionResponse::from(req);
    let none = |r| Ok(((r, Vec::new()), None));
    if req.sub_resource.is_some() || policy.is_excluded(req.namespace.as_deref()) {
        return none(response);
    }
    let Some(obj) = req.object.as_ref() else {
        return none(response);
    };
    if is_resource(req, "apps", "statefulsets")
        && matches!(req.operation, Operation::Create | Operation::Update)
    {
        let sts: StatefulSet =
            decode(obj).map_err(|e| format!("not a StatefulSet: {}", one_line(e)))?;
        let m = mutate::mutate(&sts, policy);
        let patch = checked_patch(obj, &sts, &m.object)?;
        return Ok((
            (with_warnings(response, m.report.warnings), Vec::new()),
            patch,
        ));
    }
    if is_resource(req, "", "pods") && req.operation == Operation::Create {
        let pod: Pod = decode(obj).map_err(|e| format!("not a Pod: {}", one_line(e)))?;
        let (out, report): (Pod, Report) = mutate::pod::mutate_pod(&pod);
        let patch = checked_patch(obj, &pod, &out)?;
        return Ok((
            (with_warnings(response, report.warnings), Vec::new()),
            patch,
        ));
    }
    none(response)
}

fn replicas_of(obj: Option<&DynamicObject>) -> Option<i32> {
    let v = obj?.data.get("spec")?.get("replicas")?.as_i64()?;
    i32::try_from(v).ok()
}

fn validate_request(
    req: &AdmissionRequest<DynamicObject>,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Decided, String> {
    let response = AdmissionResponse::from(req);
    if !is_resource(req, "apps", "statefulsets") {
        return Ok(((response, Vec::new()), None));
    }
    let namespace = req.namespace.as_deref().unwrap_or("");
    let decode_opt = |o: Option<&DynamicObject>| -> Result<Option<StatefulSet>, String> {
        o.map(|o| decode(o).map_err(|e| format!("not a StatefulSet: {}", one_line(e))))
            .transpose()
    };
    let findings: Findings = match (req.sub_resource.as_deref(), &req.operation) {
        (None, Operation::Create | Operation::Update) => {
            let Some(object) = decode_opt(req.object.as_ref())? else {
                return Err("the request has no object".into());
            };
            let old = if req.operation == Operation::Update {
                decode_opt(req.old_object.as_ref())?
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
        (None, Operation::Delete) => {
            let old = decode_opt(req.old_object.as_ref())?;
            validate::validate(
                &Review {
                    namespace,
                    subject: Subject::Delete { old: old.as_ref() },
                },
                policy,
                lookups,
            )
        }
        (Some("scale"), Operation::Update) => {
            let Some(n) = replicas_of(req.object.as_ref()) else {
                return Err("the Scale object has no spec.replicas".into());
            };
            let subject = Subject::Scale {
                name: &req.name,
                replicas: n,
                old_replicas: replicas_of(req.old_object.as_ref()),
            };
            validate::validate(&Review { namespace, subject }, policy, lookups)
        }
        _ => Findings::default(),
    };
    let results = findings.results.clone();
    let response = with_warnings(response, findings.warning_lines());
    let response = if findings.allowed() {
        response
    } else {
        deny(response, findings.denial())
    };
    Ok(((response, results), None))
}
