//! The HTTPS webhook server and the plain-HTTP metrics/health server.
//!
//! The HTTP layer only decodes, dispatches and encodes: [`crate::admission::answer`] does the work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use tokio::net::TcpListener;
use tokio::time::timeout_at;

use crate::admission::{self, Endpoint};
use crate::error::Error;
use crate::policy::Policy;
use crate::server::metrics::Metrics;
use crate::text::cut;
use crate::validate::Lookups;

pub use crate::bounds::MAX_BODY;

mod conn;
mod gate;
pub mod metrics;
pub mod reload;
pub mod run;
pub mod tls;

pub use conn::{ClientAddr, Timeouts, serve_plain, serve_tls};
use gate::Held;
pub use gate::{
    ANSWER_CHUNK, CLIENT_SHARE_DIVISOR, Gate, HeldBody, INLINE_BODY, LANE_OBJECTS, LARGE_BODY,
    Lane, Limits,
};

/// Request fields in log lines and 400 reasons are cut to this many bytes.
pub const LOG_FIELD_MAX: usize = 256;

/// What `/readyz` reports.
#[derive(Default)]
pub struct Readiness {
    pub tls_bound: AtomicBool,
    pub shutting_down: AtomicBool,
    /// Have the watch caches synced? None: no caches (`--no-cluster`).
    pub caches: Option<Box<dyn Fn() -> bool + Send + Sync>>,
}

impl Readiness {
    pub fn ready(&self) -> Result<(), &'static str> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down");
        }
        if !self.tls_bound.load(Ordering::Acquire) {
            return Err("TLS listener not bound");
        }
        if self.caches.as_ref().is_some_and(|synced| !synced()) {
            return Err("watch caches not synced");
        }
        Ok(())
    }
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub policy: Arc<ArcSwap<Policy>>,
    pub lookups: Arc<dyn Lookups>,
    pub metrics: Arc<Metrics>,
    pub gate: Arc<Gate>,
}

impl AppState {
    /// The state with fresh metrics and the default limits (tests and benchmarks).
    pub fn new(policy: Policy, lookups: Arc<dyn Lookups>) -> Self {
        Self::with(policy, lookups, Arc::new(Metrics::new()), Limits::default())
    }

    /// The state as `serve` builds it: the metrics it also exposes, the limits from its flags.
    pub fn with(
        policy: Policy,
        lookups: Arc<dyn Lookups>,
        metrics: Arc<Metrics>,
        limits: Limits,
    ) -> Self {
        AppState {
            policy: Arc::new(ArcSwap::from_pointee(policy)),
            lookups,
            metrics,
            gate: Arc::new(Gate::new(limits)),
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text + "\n",
    )
        .into_response()
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// One review, under `budget`: [`read_body`] (the body under the byte budget, and its lane),
/// [`evaluate`] (inline or on the blocking pool), then [`respond`] (the answer keeps its share of
/// the budget until it is written, the metrics and the log line).
async fn handle(endpoint: Endpoint, state: AppState, budget: Duration, req: Request) -> Response {
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + budget);
    let client = req.extensions().get::<ClientAddr>().map(|c| c.0);
    let wait = state.gate.limits.wait.min(budget);
    let read = match read_body(&state, req, client, deadline, wait).await {
        Ok(read) => read,
        Err(refused) => return refused,
    };
    let lane = read.lane;
    let (result, mut held) = evaluate(endpoint, &state, read, deadline, budget).await;
    // The answer keeps what it costs until its last byte is handed to the connection, however
    // slowly the client reads it; an answer the budget cannot hold is not kept waiting. Its wait
    // may go past the review's budget: the answer per `onError` to a review that ran out of time
    // holds nothing yet, and the webhook's `timeoutSeconds` leaves it that second.
    if let Ok(answer) = &result {
        let want = state.gate.answer_charge(lane, answer.body.len(), client);
        if !state.gate.resize(lane, client, &mut held, want, wait).await {
            return busy(&state);
        }
    }
    respond(endpoint, &state, result, held, start.elapsed())
}

/// 503 with `Retry-After`: the byte budget is full.
fn busy(state: &AppState) -> Response {
    state.metrics.reject("bytes");
    let mut r = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        "stsguard is at its bound on request bytes in flight; retry".into(),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// A body read under the byte budget.
struct ReadBody {
    body: Bytes,
    /// Its JSON counts, taken once for its lane and its bounds; `None` for a body large by its
    /// size alone (counted on the pool).
    counts: Option<crate::bounds::Nodes>,
    lane: Lane,
    /// What it holds of the budget.
    held: Held,
}

/// Reads the body under the byte budget: bytes are counted as they arrive, before they are
/// buffered (a client that sends headers and no body holds nothing), and the review's evaluation
/// (four times the body) once the body is complete. Returns it, or the answer that refuses it
/// (413 before anything is read, and so before any `100 Continue`; 408, 400, 503).
async fn read_body(
    state: &AppState,
    req: Request,
    client: Option<std::net::IpAddr>,
    deadline: tokio::time::Instant,
    wait: Duration,
) -> Result<ReadBody, Response> {
    let gate = &state.gate;
    let too_large = |state: &AppState| {
        state.metrics.reject("size");
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {MAX_BODY} bytes"),
        )
    };
    let len = content_length(req.headers());
    if len.is_some_and(|l| l > MAX_BODY) {
        return Err(too_large(state));
    }
    let mut lane = Lane::of_length(len);
    let mut held = Held::default();
    // Allocated once the first bytes are in the budget, not before: a request waiting for the
    // budget holds no buffer.
    let mut buf: Vec<u8> = Vec::new();
    let mut incoming = req.into_body();
    loop {
        let frame = match timeout_at(deadline, incoming.frame()).await {
            Err(_) => {
                state.metrics.reject("time");
                return Err(plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive within the review's time budget".into(),
                ));
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(plain(
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {}", cut(&e.to_string(), 200)),
                ));
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = buf.len() + data.len();
        if total > MAX_BODY {
            return Err(too_large(state));
        }
        if total > INLINE_BODY {
            lane = Lane::Large;
        }
        if !gate
            .grow(
                lane,
                client,
                &mut held,
                total.div_ceil(1024) as u32,
                until(deadline, wait),
            )
            .await
        {
            return Err(busy(state));
        }
        if buf.capacity() == 0 {
            buf.reserve_exact(len.unwrap_or(0).min(LARGE_BODY).max(data.len()));
        }
        buf.extend_from_slice(&data);
    }
    drop(incoming);
    let body = Bytes::from(buf);
    // A short body with many objects is as much work as a long one: the large lane.
    let mut counts = None;
    if lane == Lane::Ordinary {
        let n = crate::bounds::count_review(&body);
        lane = Lane::of_body(body.len(), n);
        counts = Some(n);
    }
    let charge = gate.charge(lane, Some(body.len()), client);
    if !gate
        .grow(lane, client, &mut held, charge, until(deadline, wait))
        .await
    {
        return Err(busy(state));
    }
    Ok(ReadBody {
        body,
        counts,
        lane,
        held,
    })
}

/// The answer to a read review: inline for an ordinary one, on the blocking pool for a large
/// one; past the time budget (or after a panic), the answer per `onError`. What the review holds
/// of the budget comes back with the answer.
async fn evaluate(
    endpoint: Endpoint,
    state: &AppState,
    read: ReadBody,
    deadline: tokio::time::Instant,
    budget: Duration,
) -> (crate::error::Result<admission::Answer>, Held) {
    let ReadBody {
        body,
        counts,
        lane,
        held,
    } = read;
    let policy = state.policy.load_full();
    let result = match (lane, counts) {
        (Lane::Ordinary, Some(counts)) => {
            // An ordinary review: its work is bounded by its size and objects to well under a
            // millisecond, less than handing it to another thread costs (measured: 25% of the
            // throughput on two cores), so it runs here, guarded against a panic.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                admission::answer_counted(endpoint, &body, counts, &policy, state.lookups.as_ref())
            }));
            match r {
                Ok(r) => Some((r, held)),
                Err(_) => {
                    tracing::error!("a review panicked");
                    let r = unevaluated(body.clone(), policy.clone(), "internal error").await;
                    Some((r, held))
                }
            }
        }
        _ => match state.gate.worker(deadline).await {
            Some(worker) => {
                let (b, p, l) = (body.clone(), policy.clone(), state.lookups.clone());
                // The permits go with the work: a review past its budget still holds its slot and
                // its bytes until it ends (its work is bounded by its input); they come back with
                // the answer, which keeps the bytes until it is written.
                let task = tokio::task::spawn_blocking(move || {
                    let r = admission::answer(endpoint, &b, &p, l.as_ref());
                    drop(worker);
                    (r, held)
                });
                match timeout_at(deadline, task).await {
                    Ok(Ok(r)) => Some(r),
                    Ok(Err(panic)) => {
                        tracing::error!(error = %panic, "a review panicked");
                        let r = unevaluated(body.clone(), policy.clone(), "internal error").await;
                        Some((r, Held::default()))
                    }
                    Err(_) => None,
                }
            }
            None => None,
        },
    };
    match result {
        Some(r) => r,
        None => {
            state.metrics.reject("time");
            let why = format!(
                "not evaluated within its {} ms time budget",
                budget.as_millis()
            );
            (unevaluated(body, policy, &why).await, Held::default())
        }
    }
}

/// Writes the answer (its body keeps `held` until it is sent), or 400 for a body that is not a
/// review; records the metrics and logs one line either way.
fn respond(
    endpoint: Endpoint,
    state: &AppState,
    result: crate::error::Result<admission::Answer>,
    held: Held,
    elapsed: Duration,
) -> Response {
    match result {
        Ok(answer) => {
            let s = &answer.summary;
            state
                .metrics
                .record(endpoint.as_str(), s, elapsed.as_secs_f64());
            tracing::info!(
                endpoint = endpoint.as_str(),
                uid = &*cut(&s.uid, LOG_FIELD_MAX),
                kind = &*cut(&s.kind, LOG_FIELD_MAX),
                namespace = &*cut(&s.namespace, LOG_FIELD_MAX),
                name = &*cut(&s.name, LOG_FIELD_MAX),
                operation = s.operation,
                sub_resource = &*cut(&s.sub_resource, LOG_FIELD_MAX),
                dry_run = s.dry_run,
                allowed = s.allowed,
                patched = s.patched,
                warnings = s.warnings,
                outcome = s.outcome.as_str(),
                latency_us = elapsed.as_micros() as u64,
                "review"
            );
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::new(HeldBody::new(answer.body, held)),
            )
                .into_response()
        }
        Err(bad) => {
            let s = admission::ReviewSummary {
                outcome: admission::ReviewOutcome::from(&bad),
                ..Default::default()
            };
            state
                .metrics
                .record(endpoint.as_str(), &s, elapsed.as_secs_f64());
            let reason = bad.to_string();
            let reason = cut(&reason, LOG_FIELD_MAX);
            tracing::warn!(endpoint = endpoint.as_str(), reason = %reason, "bad request");
            plain(StatusCode::BAD_REQUEST, reason.into_owned())
        }
    }
}

/// [`admission::unevaluated`] off the I/O workers (it reads the envelope for the uid).
async fn unevaluated(
    body: Bytes,
    policy: Arc<Policy>,
    why: &str,
) -> crate::error::Result<admission::Answer> {
    let why = why.to_string();
    tokio::task::spawn_blocking(move || admission::unevaluated(&body, &policy, &why))
        .await
        .unwrap_or_else(|_| Err(Error::BadReview("the review could not be read".into())))
}

/// The webhook routes. Public so tests can drive it with `oneshot`. `request_budget` bounds each
/// review from its first byte to its answer; past it the review is answered per `onError`.
pub fn router(state: AppState, request_budget: Duration) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(move |State(s): State<AppState>, req: Request| {
                handle(Endpoint::Mutate, s, request_budget, req)
            }),
        )
        .route(
            "/validate",
            post(move |State(s): State<AppState>, req: Request| {
                handle(Endpoint::Validate, s, request_budget, req)
            }),
        )
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "not found: POST /mutate or /validate".into(),
            )
        })
        .with_state(state)
}

/// `/healthz`, `/readyz`, `/metrics` (plain HTTP).
pub fn metrics_router(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let r = readiness.clone();
                async move {
                    match r.ready() {
                        Ok(()) => plain(StatusCode::OK, "ready".into()),
                        Err(why) => {
                            plain(StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}"))
                        }
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
}

/// Binds a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the {what} address {addr}: {e}"))
}

/// A wait for the byte budget while the body is read, never past the review's deadline: a
/// review that waited per frame could otherwise be answered after the API server gave up.
fn until(deadline: tokio::time::Instant, wait: Duration) -> Duration {
    wait.min(deadline.saturating_duration_since(tokio::time::Instant::now()))
}
