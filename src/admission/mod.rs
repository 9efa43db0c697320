//! AdmissionReview in, AdmissionReview out: read the review, hand the object to the pure cores
//! ([`crate::mutate`], [`crate::validate`]), write the answer. No I/O here.
//!
//! One `/mutate` review: [`crate::server`]`::handle` (the body) → [`answer`] (read, dispatch) →
//! `decide::mutate_request` (what the endpoint decides) → [`crate::mutate::mutate_with_patch`]
//! (the mutation, and [`crate::mutate::patch`] from a copy of what it can change) →
//! [`wire::encode`].
//!
//! Files: this one the answer (read, dispatch, conclude; the answers to reviews not evaluated or
//! past a bound; the summary the log line and metrics take); `decide.rs` what each endpoint
//! decides; `wire.rs` the review's JSON in and out; `decode.rs` an object straight into its
//! type; `routes.rs` which requests each endpoint judges.

mod decide;
mod decode;
pub mod routes;
pub mod wire;

use kube::core::admission::{AdmissionResponse, Operation};

use decide::{Decision, mutate_request, validate_request};
pub use decode::statefulset_from_str;
use wire::Request;
pub use wire::encode;

use crate::error::{Error, Result};
use crate::policy::{Mode, OnError, Policy, RuleId};
use crate::validate::{Lookups, RuleResult};

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

/// What became of a review (the `outcome` label).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReviewOutcome {
    #[default]
    Allowed,
    Denied,
    Patched,
    /// Not evaluated: answered per `onError`.
    Error,
    /// Not an AdmissionReview: HTTP 400.
    BadRequest,
}

impl ReviewOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewOutcome::Allowed => "allowed",
            ReviewOutcome::Denied => "denied",
            ReviewOutcome::Patched => "patched",
            ReviewOutcome::Error => "error",
            ReviewOutcome::BadRequest => "bad_request",
        }
    }
}

impl From<&Error> for ReviewOutcome {
    fn from(e: &Error) -> ReviewOutcome {
        match e {
            Error::BadReview(_) => ReviewOutcome::BadRequest,
            Error::NotEvaluated(_) | Error::Patch(_) => ReviewOutcome::Error,
            Error::PastBound(_) => ReviewOutcome::Denied,
        }
    }
}

/// What happened, for the log line and metrics.
#[derive(Clone, Debug, Default)]
pub struct ReviewSummary {
    pub uid: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub operation: &'static str,
    pub sub_resource: String,
    pub dry_run: bool,
    pub allowed: bool,
    pub patched: bool,
    pub warnings: usize,
    pub outcome: ReviewOutcome,
    /// Every rule evaluated, for metrics.
    pub rule_results: Vec<(RuleId, Mode, RuleResult)>,
}

impl ReviewSummary {
    /// What the request says of itself.
    fn of(req: &Request<'_>) -> ReviewSummary {
        ReviewSummary {
            uid: req.uid.clone(),
            kind: req.kind.kind.clone(),
            namespace: req.namespace.clone().unwrap_or_default(),
            name: req.name.clone(),
            operation: op_str(&req.operation),
            sub_resource: req.sub_resource.clone().unwrap_or_default(),
            dry_run: req.dry_run,
            ..Default::default()
        }
    }

    /// What the envelope of a review that was not read says of itself
    /// ([`wire::UidOnlyRequest`]).
    fn of_envelope(r: wire::UidOnlyRequest) -> ReviewSummary {
        ReviewSummary {
            kind: r.kind.and_then(|k| k.kind).unwrap_or_default(),
            namespace: r.namespace.unwrap_or_default(),
            name: r.name.unwrap_or_default(),
            operation: match r.operation.as_deref() {
                Some("CREATE") => "CREATE",
                Some("UPDATE") => "UPDATE",
                Some("DELETE") => "DELETE",
                Some("CONNECT") => "CONNECT",
                _ => "",
            },
            sub_resource: r.sub_resource.unwrap_or_default(),
            uid: r.uid,
            ..Default::default()
        }
    }

    /// What the answer says: allowed, patched, its warnings, and the outcome (`Error` for a
    /// review that was not evaluated).
    fn settle(&mut self, response: &AdmissionResponse, patched: bool, not_evaluated: bool) {
        self.allowed = response.allowed;
        self.patched = patched;
        self.warnings = response.warnings.as_ref().map_or(0, Vec::len);
        self.outcome = match (not_evaluated, response.allowed, patched) {
            (true, _, _) => ReviewOutcome::Error,
            (false, false, _) => ReviewOutcome::Denied,
            (false, true, true) => ReviewOutcome::Patched,
            (false, true, false) => ReviewOutcome::Allowed,
        };
    }
}

/// A review answered: the JSON body and its summary.
#[derive(Clone, Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub summary: ReviewSummary,
}

/// Answers one review body. `Err` is always [`Error::BadReview`] (HTTP 400): a review that
/// cannot be evaluated is answered per the policy's `onError`.
pub fn answer(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Answer> {
    answer_counted(
        endpoint,
        body,
        crate::bounds::count_review(body),
        policy,
        lookups,
    )
}

/// [`answer`] for a body whose JSON counts ([`crate::bounds::count_review`]) the caller has
/// already taken (the server does, to choose the review's lane): read, dispatch, conclude.
pub fn answer_counted(
    endpoint: Endpoint,
    body: &[u8],
    counts: crate::bounds::Nodes,
    policy: &Policy,
    lookups: &dyn Lookups,
) -> Result<Answer> {
    // A body past the bounds on work is not read: denied at /validate, unpatched at /mutate;
    // unless only the stored object takes it past them (see `object_within_bounds`).
    let mut old = wire::Old::Whole;
    if let Err(why) = crate::bounds::check_counts(counts) {
        if !object_within_bounds(body) {
            return past_bound_unread(endpoint, body, policy, &why);
        }
        old = wire::Old::Partial;
    }
    let req = match read_request(body, endpoint, old)? {
        Ok(req) => req,
        Err(why) => return unevaluated(body, policy, &why),
    };
    let mut summary = ReviewSummary::of(&req);
    let kind = subject_kind(&req.resource.resource, &req.kind.kind).to_string();
    let partial = old == wire::Old::Partial;
    let decided = match endpoint {
        _ if !judged(endpoint, &req, policy) => Ok(Decision::default()),
        // Whether the write changes the stored pod template is not known, and stsguard causes
        // no rollout of its own.
        Endpoint::Mutate if partial => Ok(Decision {
            warnings: vec![partial_old_note(endpoint)],
            ..Default::default()
        }),
        Endpoint::Mutate => mutate_request(req, policy),
        Endpoint::Validate => validate_request(req, policy, lookups).map(|mut d| {
            if partial {
                d.warnings.push(partial_old_note(endpoint));
            }
            d
        }),
    };
    if let (Ok(Decision { name: Some(n), .. }), true) = (&decided, summary.name.is_empty()) {
        summary.name = n.clone();
    }
    let object = crate::text::object(&kind, &summary.namespace, &summary.name);
    let (response, patch) = conclude(endpoint, decided, &object, policy, &mut summary);
    Ok(Answer {
        body: encode(&response, patch.as_ref()),
        summary,
    })
}

/// Is a body past a bound within them but for its stored object: an UPDATE or DELETE with an
/// `oldObject` whose `object` (none for a DELETE) is within every bound, counted as its share of
/// the review. Such a body is read with the stored object in part ([`wire::Old::Partial`]: its
/// metadata, for delete protection, and `spec.replicas`, for the quorum's scale-down: all that
/// validation reads of it), so that an object can always be changed or deleted: one stored past
/// a bound (before stsguard, or while its webhook was off), and one over half the bound, whose
/// UPDATE carries it twice (an annotation-only change such as lifting its protection included).
/// Linear in the body, nothing kept.
fn object_within_bounds(body: &[u8]) -> bool {
    let Ok(wire::ObjectPart { request: Some(r) }) = serde_json::from_slice(body) else {
        return false;
    };
    let within = |o: &serde_json::value::RawValue| {
        crate::bounds::check_counts(crate::bounds::count_review_object(o.get().as_bytes())).is_ok()
    };
    matches!(r.operation.as_deref(), Some("UPDATE" | "DELETE"))
        && r.old_object.is_some()
        && r.object.is_none_or(within)
}

/// What the answer says of a stored object read in part ([`object_within_bounds`]).
fn partial_old_note(endpoint: Endpoint) -> String {
    let rule = crate::bounds::RULE;
    let what = "the review is past stsguard's bounds with the stored object (request.oldObject)";
    match endpoint {
        Endpoint::Validate => format!(
            "[{rule}] {what}: only its metadata and spec.replicas were read; the request is judged on its object"
        ),
        Endpoint::Mutate => format!(
            "[{rule}] not mutated: {what}, so whether this write changes its pod template is not known, and stsguard causes no rollout of its own; once the object is within half the bounds, the next write that changes its pod template is mutated as usual"
        ),
    }
}

/// The review's request. `Err`: the body is not a review (HTTP 400). `Ok(Err(why))`: a review
/// whose request does not read (its object is not the kind it says, a field has the wrong
/// type): answered per the failure mode if the uid can be echoed ([`unevaluated`]).
fn read_request(
    body: &[u8],
    endpoint: Endpoint,
    old: wire::Old,
) -> Result<std::result::Result<Request<'_>, String>> {
    let review = match wire::read(body, endpoint, old) {
        Ok(r) => r,
        Err(e) if e.is_syntax() || e.is_eof() => {
            return Err(Error::BadReview(format!(
                "body is not JSON: {}",
                one_line(e)
            )));
        }
        Err(e) => return Ok(Err(format!("the request does not decode: {}", one_line(e)))),
    };
    check_envelope(&review.api_version, &review.kind)?;
    let Some(req) = review.request else {
        return Err(Error::BadReview("AdmissionReview has no request".into()));
    };
    if req.uid.is_empty() {
        return Err(Error::BadReview("request.uid is empty".into()));
    }
    Ok(Ok(req))
}

/// Does the webhook judge `req`: a route it handles, outside the excluded namespaces?
fn judged(endpoint: Endpoint, req: &Request<'_>, policy: &Policy) -> bool {
    routes::handles(
        endpoint,
        &req.resource.group,
        &req.resource.resource,
        req.sub_resource.as_deref(),
        op_str(&req.operation),
    ) && !policy.is_excluded(req.namespace.as_deref().or(
        // A Namespace's review names itself as its namespace; by name if a client leaves it out.
        (req.resource.resource == "namespaces").then_some(req.name.as_str()),
    ))
}

/// The response to a decided review, and its patch; what it was goes in `summary`. Past a
/// bound: [`past_bound`]; not evaluated: per `onError` ([`failure`]).
fn conclude(
    endpoint: Endpoint,
    decided: Result<Decision>,
    object: &str,
    policy: &Policy,
    summary: &mut ReviewSummary,
) -> (AdmissionResponse, Option<json_patch::Patch>) {
    let response = response_for(&summary.uid);
    let d = match decided.and_then(|mut d| d.not_evaluated.take().map_or(Ok(d), Err)) {
        Ok(d) => d,
        Err(Error::PastBound(why)) => {
            let response = past_bound(endpoint, response, object, &why);
            summary.settle(&response, false, false);
            return (response, None);
        }
        Err(e) => {
            let response = failure(response, object, &e.to_string(), policy);
            summary.settle(&response, false, true);
            return (response, None);
        }
    };
    let mut response = response;
    if !d.warnings.is_empty() {
        let about = |w: &String| crate::text::warning_about(object, w);
        response.warnings = Some(d.warnings.iter().map(about).collect());
    }
    if let Some(message) = d.denied {
        response = deny(response, message);
    }
    let patched = d.patch.as_ref().is_some_and(|p| !p.0.is_empty());
    summary.settle(&response, patched, false);
    summary.rule_results = d.rules;
    (response, d.patch)
}

/// Only the envelope of a review that is not read whole: its uid and what the request is about.
/// `Err` (HTTP 400): not even that reads; `why` the review was not read goes in the message.
fn read_envelope(body: &[u8], why: &dyn std::fmt::Display) -> Result<wire::UidOnlyRequest> {
    let u: wire::UidOnly = serde_json::from_slice(body).map_err(|e| {
        Error::BadReview(if e.is_syntax() || e.is_eof() {
            format!("body is not JSON: {}", one_line(e))
        } else {
            format!("body is not an AdmissionReview: {}", one_line(e))
        })
    })?;
    check_envelope(&u.api_version, &u.kind)?;
    u.request.filter(|r| !r.uid.is_empty()).ok_or_else(|| {
        Error::BadReview(format!(
            "AdmissionReview has no usable request ({})",
            one_line(why)
        ))
    })
}

/// The answer to a review that is not evaluated (it does not decode, an internal error, or its
/// time budget ran out): per the policy's `onError`, with `why` as a warning or the denial. Only
/// the envelope and the uid are read ([`read_envelope`]). `Err`: not even that reads (HTTP 400).
pub fn unevaluated(body: &[u8], policy: &Policy, why: &str) -> Result<Answer> {
    let r = read_envelope(body, &why)?;
    let response = failure(response_for(&r.uid), &r.object(), why, policy);
    let mut summary = ReviewSummary::of_envelope(r);
    summary.settle(&response, false, true);
    Ok(Answer {
        body: encode(&response, None),
        summary,
    })
}

/// The answer to a review whose body is past a bound ([`crate::bounds::check_body`]): only the
/// envelope is read (the uid, what the request is about). A request the webhook does not judge,
/// or in an excluded namespace, is allowed as any other; else [`past_bound`]. `Err`: not even
/// the envelope reads (HTTP 400).
fn past_bound_unread(
    endpoint: Endpoint,
    body: &[u8],
    policy: &Policy,
    why: &crate::bounds::PastBound,
) -> Result<Answer> {
    let r = read_envelope(body, why)?;
    let judged = r.handled(endpoint) && !policy.is_excluded(r.scope());
    let response = match judged {
        true => past_bound(endpoint, response_for(&r.uid), &r.object(), why),
        false => response_for(&r.uid),
    };
    let mut summary = ReviewSummary::of_envelope(r);
    summary.settle(&response, false, false);
    Ok(Answer {
        body: encode(&response, None),
        summary,
    })
}

/// An object past a bound on work is judged neither way by the rules, and not let through as
/// an error either (`onError` would let any author skip every rule by padding): `/validate`
/// denies it naming the object, the bound and the fix; `/mutate` allows it with no patch and a
/// warning that it was not mutated and why.
fn past_bound(
    endpoint: Endpoint,
    response: AdmissionResponse,
    object: &str,
    why: &crate::bounds::PastBound,
) -> AdmissionResponse {
    let rule = crate::bounds::RULE;
    match endpoint {
        Endpoint::Validate => deny(
            response,
            format!("stsguard denied the request: [{rule}] {object}: {why}"),
        ),
        Endpoint::Mutate => {
            let mut r = response;
            let line = format!("[{rule}] not mutated: {why}");
            r.warnings = Some(vec![crate::text::warning_about(object, &line)]);
            r
        }
    }
}

/// kube's response for a uid: allowed, empty status.
fn response_for(uid: &str) -> AdmissionResponse {
    let mut r = AdmissionResponse::invalid("");
    r.uid = uid.to_string();
    r.allowed = true;
    r.result = Default::default();
    r
}

fn check_envelope(api_version: &str, kind: &str) -> Result<()> {
    if kind != wire::KIND {
        return Err(Error::BadReview(format!(
            "expected kind AdmissionReview, got {:?}",
            crate::text::quote(kind)
        )));
    }
    if api_version != wire::API_VERSION {
        return Err(Error::BadReview(format!(
            "expected apiVersion {}, got {:?}",
            wire::API_VERSION,
            crate::text::quote(api_version)
        )));
    }
    Ok(())
}

fn one_line(e: impl std::fmt::Display) -> String {
    crate::text::warning(&e.to_string().replace('\n', " "))
}

fn op_str(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The kind a request is about, as kubectl users name it: a Scale is of a StatefulSet.
pub(crate) fn subject_kind<'a>(resource: &str, kind: &'a str) -> &'a str {
    match resource {
        "statefulsets" => "StatefulSet",
        "pods" => "Pod",
        _ => kind,
    }
}

/// `object`: the request's object, named as [`crate::text::object`] names it.
fn failure(
    response: AdmissionResponse,
    object: &str,
    why: &str,
    policy: &Policy,
) -> AdmissionResponse {
    let message = format!("stsguard could not evaluate this request: {why}");
    match policy.on_error {
        OnError::Allow => {
            let mut r = response;
            r.warnings = Some(vec![crate::text::warning_about(object, &message)]);
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
