//! The HTTPS webhook server and the plain-HTTP metrics/health server.
//!
//! The HTTP layer only decodes, dispatches and encodes: [`crate::review::answer`] does the work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::timeout_at;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::review::{self, Endpoint};
use crate::text::cut;
use crate::validate::Lookups;

pub use crate::bounds::MAX_BODY;

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
    pub fn new(policy: Policy, lookups: Arc<dyn Lookups>) -> Self {
        AppState {
            policy: Arc::new(ArcSwap::from_pointee(policy)),
            lookups,
            metrics: Arc::new(Metrics::new()),
            gate: Arc::new(Gate::new(Limits::default())),
        }
    }
}

/// Bounds on the work and memory of the reviews in flight together.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The budget of request bytes in flight: bodies being read plus reviews being evaluated,
    /// each counted before its body is read (from Content-Length) at [`Limits::COST_FACTOR`]
    /// times its size.
    pub inflight_bytes: usize,
    /// Reviews evaluated at once, on the blocking pool (never on the I/O workers).
    pub workers: usize,
    /// How long a request waits for the byte budget before it is turned away with 503.
    pub wait: Duration,
}

impl Limits {
    /// A review's memory is its body, the typed objects read from it (strings and maps: about
    /// the body's size again; structs: bounded by [`crate::bounds::MAX_OBJECTS`]), the mutated
    /// copy and the answer. Four times the body covers it; 64 KiB covers the small fixed part.
    pub const COST_FACTOR: usize = 4;
    pub const COST_BASE: usize = 64 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            inflight_bytes: 32 * 1024 * 1024,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            wait: Duration::from_secs(1),
        }
    }
}

/// Bodies up to this are evaluated where they arrive; larger ones on the blocking pool, under the
/// time budget. Real reviews are 5–50 KiB; the bounds keep the work of 64 KiB well under 1 ms.
pub const INLINE_BODY: usize = 64 * 1024;

/// Bodies over this are "large": they draw on their own share of the byte budget and may not take
/// the last evaluation slot, so a stream of large (hostile) bodies never queues ahead of ordinary
/// reviews (real reviews are 5–50 KiB).
pub const LARGE_BODY: usize = 256 * 1024;

/// The shared budgets: bytes in flight (in KiB permits, a quarter for ordinary bodies and the
/// rest for large ones) and evaluation slots (one of them never taken by a large review).
pub struct Gate {
    limits: Limits,
    small_kib: Arc<Semaphore>,
    large_kib: Arc<Semaphore>,
    small_total: u32,
    large_total: u32,
    workers: Arc<Semaphore>,
    large_workers: Arc<Semaphore>,
}

type Permit = tokio::sync::OwnedSemaphorePermit;

impl Gate {
    pub fn new(limits: Limits) -> Self {
        let total = (limits.inflight_bytes / 1024).clamp(64, u32::MAX as usize / 2) as u32;
        let small_total = (total / 4).max(1);
        let large_total = (total - small_total).max(1);
        let workers = limits.workers.max(1);
        Gate {
            small_kib: Arc::new(Semaphore::new(small_total as usize)),
            large_kib: Arc::new(Semaphore::new(large_total as usize)),
            small_total,
            large_total,
            workers: Arc::new(Semaphore::new(workers)),
            large_workers: Arc::new(Semaphore::new(workers.saturating_sub(1).max(1))),
            limits,
        }
    }

    fn is_large(len: Option<usize>) -> bool {
        len.is_none_or(|l| l > LARGE_BODY)
    }

    /// What a request of `len` bytes (None: not said, so the most a body may be) is charged, in
    /// KiB, from its share; never more than the whole share, so that any allowed body can run.
    fn charge(&self, len: Option<usize>) -> u32 {
        let share = if Self::is_large(len) {
            self.large_total
        } else {
            self.small_total
        };
        let len = len.unwrap_or(MAX_BODY).min(MAX_BODY);
        let bytes = len * Limits::COST_FACTOR + Limits::COST_BASE;
        (bytes.div_ceil(1024) as u32).min(share)
    }

    /// Grows what a request holds from its share (`large`: the large bodies' one) to `want_kib`
    /// (capped at the share), waiting at most `wait`. False: the budget stayed full.
    async fn grow(
        &self,
        large: bool,
        held: &mut Option<Permit>,
        want_kib: u32,
        wait: Duration,
    ) -> bool {
        let (pool, share) = if large {
            (&self.large_kib, self.large_total)
        } else {
            (&self.small_kib, self.small_total)
        };
        let have = held.as_ref().map_or(0, |p| p.num_permits() as u32);
        let want = want_kib.min(share);
        if want <= have {
            return true;
        }
        match tokio::time::timeout(wait, pool.clone().acquire_many_owned(want - have)).await {
            Ok(Ok(more)) => {
                match held {
                    Some(p) => p.merge(more),
                    None => *held = Some(more),
                }
                true
            }
            _ => false,
        }
    }

    /// An evaluation slot for a body of `len` bytes, waiting until `deadline`.
    async fn worker(
        &self,
        len: usize,
        deadline: tokio::time::Instant,
    ) -> Option<(Permit, Option<Permit>)> {
        let large = if len > LARGE_BODY {
            Some(
                timeout_at(deadline, self.large_workers.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?,
            )
        } else {
            None
        };
        let slot = timeout_at(deadline, self.workers.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some((slot, large))
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

/// One review: the byte budget, the body, an evaluation slot, the evaluation off the I/O
/// workers, all under `budget`. The HTTP layer only decodes, dispatches and encodes.
async fn handle(endpoint: Endpoint, state: AppState, budget: Duration, req: Request) -> Response {
    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + budget);
    let gate = state.gate.clone();
    // Refused before anything is read, and so before any `100 Continue`.
    let len = content_length(req.headers());
    if len.is_some_and(|l| l > MAX_BODY) {
        state.metrics.reject("size");
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {MAX_BODY} bytes"),
        );
    }
    // The byte budget: bytes are counted as they arrive, before they are buffered (a client
    // that sends headers and no body holds nothing), and the review's evaluation (four times
    // the body) once the body is complete.
    let large = Gate::is_large(len);
    let wait = gate.limits.wait.min(budget);
    let mut held: Option<Permit> = None;
    let busy = |state: &AppState| {
        state.metrics.reject("bytes");
        let mut r = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "stsguard is at its bound on request bytes in flight; retry".into(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        r
    };
    let mut buf: Vec<u8> = Vec::with_capacity(len.unwrap_or(0).min(LARGE_BODY));
    let mut incoming = req.into_body();
    loop {
        let frame = match timeout_at(deadline, incoming.frame()).await {
            Err(_) => {
                state.metrics.reject("time");
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive within the review's time budget".into(),
                );
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("the body could not be read: {}", cut(&e.to_string(), 200)),
                );
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let total = buf.len() + data.len();
        if total > MAX_BODY {
            state.metrics.reject("size");
            return plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {MAX_BODY} bytes"),
            );
        }
        if !gate
            .grow(large, &mut held, total.div_ceil(1024) as u32, wait)
            .await
        {
            return busy(&state);
        }
        buf.extend_from_slice(&data);
    }
    let body = Bytes::from(buf);
    if !gate
        .grow(large, &mut held, gate.charge(Some(body.len())), wait)
        .await
    {
        return busy(&state);
    }
    let bytes = held;
    let policy = state.policy.load_full();
    let result = if body.len() <= INLINE_BODY {
        // An ordinary review: its work is bounded by its size to well under a millisecond, less
        // than handing it to another thread costs (measured: 25% of the throughput on two
        // cores), so it runs here, guarded against a panic.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            review::answer(endpoint, &body, &policy, state.lookups.as_ref())
        }));
        drop(bytes);
        match r {
            Ok(r) => Some(r),
            Err(_) => {
                tracing::error!("a review panicked");
                Some(unevaluated(body.clone(), policy.clone(), "internal error").await)
            }
        }
    } else {
        match gate.worker(body.len(), deadline).await {
            Some(worker) => {
                let (b, p, l) = (body.clone(), policy.clone(), state.lookups.clone());
                // The permits go with the work: a review past its budget still holds its slot and
                // its bytes until it ends (its work is bounded by its input).
                let task = tokio::task::spawn_blocking(move || {
                    let _held = (worker, bytes);
                    review::answer(endpoint, &b, &p, l.as_ref())
                });
                match timeout_at(deadline, task).await {
                    Ok(Ok(r)) => Some(r),
                    Ok(Err(panic)) => {
                        tracing::error!(error = %panic, "a review panicked");
                        Some(unevaluated(body.clone(), policy.clone(), "internal error").await)
                    }
                    Err(_) => None,
                }
            }
            None => None,
        }
    };
    let result = match result {
        Some(r) => r,
        None => {
            state.metrics.reject("time");
            let why = format!(
                "not evaluated within its {} ms time budget",
                budget.as_millis()
            );
            unevaluated(body, policy, &why).await
        }
    };
    let elapsed = start.elapsed();
    match result {
        Ok(answer) => {
            let s = &answer.summary;
            state
                .metrics
                .record(endpoint.as_str(), s, elapsed.as_secs_f64());
            tracing::info!(
                endpoint = endpoint.as_str(),
                uid = %cut(&s.uid, LOG_FIELD_MAX),
                kind = %cut(&s.kind, LOG_FIELD_MAX),
                namespace = %cut(&s.namespace, LOG_FIELD_MAX),
                name = %cut(&s.name, LOG_FIELD_MAX),
                operation = %cut(&s.operation, LOG_FIELD_MAX),
                sub_resource = %cut(&s.sub_resource, LOG_FIELD_MAX),
                dry_run = s.dry_run,
                allowed = s.allowed,
                patched = s.patched,
                warnings = s.warnings,
                outcome = s.outcome,
                latency_us = elapsed.as_micros() as u64,
                "review"
            );
            ([(header::CONTENT_TYPE, "application/json")], answer.body).into_response()
        }
        Err(bad) => {
            let s = review::Summary {
                outcome: "bad_request",
                ..Default::default()
            };
            state
                .metrics
                .record(endpoint.as_str(), &s, elapsed.as_secs_f64());
            let reason = cut(&bad.0, LOG_FIELD_MAX);
            tracing::warn!(endpoint = endpoint.as_str(), reason = %reason, "bad request");
            plain(StatusCode::BAD_REQUEST, reason.into_owned())
        }
    }
}

/// [`review::unevaluated`] off the I/O workers (it reads the envelope for the uid).
async fn unevaluated(
    body: Bytes,
    policy: Arc<Policy>,
    why: &str,
) -> Result<review::Answer, review::BadReview> {
    let why = why.to_string();
    tokio::task::spawn_blocking(move || review::unevaluated(&body, &policy, &why))
        .await
        .unwrap_or_else(|_| Err(review::BadReview("the review could not be read".into())))
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

/// Connection-level limits, the same on both ports.
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// The TLS handshake.
    pub handshake: Duration,
    /// HTTP/1 headers, and the first request on a connection (the HTTP/2 preface with it).
    pub header_read: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle: Duration,
    /// After shutdown starts, how long in-flight requests may take.
    pub drain: Duration,
    /// Open connections at most; past it a new connection is closed at once.
    pub max_connections: usize,
    /// Counts the connections turned away by `max_connections`.
    pub rejected: Option<prometheus_client::metrics::counter::Counter>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(5),
            header_read: Duration::from_secs(5),
            idle: Duration::from_secs(60),
            drain: Duration::from_secs(20),
            max_connections: 512,
            rejected: None,
        }
    }
}

/// HTTP/2 windows and streams: what one connection may make the server buffer before a handler
/// reads it (a stream's window, and the connection's over all its streams).
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONN_WINDOW: u32 = 256 * 1024;
const H2_MAX_STREAMS: u32 = 32;
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Serves HTTPS on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// connections finish (bounded by `timeouts.drain`).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve(
        listener,
        Some(TlsAcceptor::from(tls)),
        app,
        timeouts,
        shutdown,
    )
    .await
}

/// Serves `app` on plain HTTP (the metrics port) with the same connection limits.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve(listener, None, app, timeouts, shutdown).await
}

async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(timeouts.max_connections.max(1)));
    let timeouts = Arc::new(timeouts);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            // Closed at once: a client past the cap costs a file descriptor for microseconds.
            if let Some(c) = &timeouts.rejected {
                c.inc();
            }
            tracing::debug!(%peer, "connection cap reached: closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tls, app, t) = (tls.clone(), app.clone(), timeouts.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let opened = Instant::now();
            match tls {
                None => serve_conn(tcp, false, app, &t, watcher, opened).await,
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(t.handshake, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    serve_conn(stream, h2, app, &t, watcher, opened).await
                }
            }
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    match tokio::time::timeout(timeouts.drain, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("drain timed out; closing the remaining connections"),
    }
}

/// What a connection's requests are doing, for its watchdog.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// When the last request began or ended, in ms since the connection opened.
    last_ms: AtomicU64,
}

/// Marks a request in flight until dropped (also when the connection is dropped mid-request).
struct InFlight(Arc<Activity>, Instant);

impl InFlight {
    fn begin(a: Arc<Activity>, opened: Instant) -> Self {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        a.started.fetch_add(1, Ordering::AcqRel);
        a.last_ms
            .store(opened.elapsed().as_millis() as u64, Ordering::Release);
        InFlight(a, opened)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_ms
            .store(self.1.elapsed().as_millis() as u64, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Resolves when the connection should close: no first request within `header_read` (a TLS or
/// TCP connection that never sends a request, an HTTP/2 client without a preface), or no request
/// in flight for `idle`.
async fn watchdog(a: &Activity, t: &Timeouts, opened: Instant) {
    let mut check_at = opened + t.header_read;
    loop {
        tokio::time::sleep_until(tokio::time::Instant::from_std(check_at)).await;
        let now = Instant::now();
        if a.in_flight.load(Ordering::Acquire) > 0 {
            check_at = now + t.header_read;
            continue;
        }
        if a.started.load(Ordering::Acquire) == 0 {
            return;
        }
        let quiet_since = opened + Duration::from_millis(a.last_ms.load(Ordering::Acquire));
        if now >= quiet_since + t.idle {
            return;
        }
        check_at = quiet_since + t.idle;
    }
}

async fn serve_conn<IO>(
    io: IO,
    h2: bool,
    app: Router,
    t: &Timeouts,
    watcher: hyper_util::server::graceful::Watcher,
    opened: Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    let a = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let guard = InFlight::begin(a.clone(), opened);
        let app = app.clone();
        async move {
            let r = app.oneshot(req.map(Body::new)).await;
            drop(guard);
            r
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(t.header_read)
        .max_buf_size(MAX_HEADER_BYTES.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = watcher.watch(
        builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned(),
    );
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!(error = %e, "connection ended with an error");
        },
        _ = watchdog(&activity, t, opened) => {
            tracing::debug!("connection closed: no request within the header timeout, or idle");
        }
    }
}

/// Binds a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the {what} address {addr}: {e}"))
}
