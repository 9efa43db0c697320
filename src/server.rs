//! The HTTPS webhook server and the plain-HTTP metrics/health server.
//!
//! The HTTP layer only decodes, dispatches and encodes: [`crate::review::answer`] does the work.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::review::{self, Endpoint};
use crate::validate::Lookups;

/// Bodies over this are refused with 413: an UPDATE carries `object` and `oldObject`, each up to
/// the API server's 3 MiB.
pub const MAX_BODY: usize = 7 * 1024 * 1024;

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
}

impl AppState {
    pub fn new(policy: Policy, lookups: Arc<dyn Lookups>) -> Self {
        AppState {
            policy: Arc::new(ArcSwap::from_pointee(policy)),
            lookups,
            metrics: Arc::new(Metrics::new()),
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

async fn handle(endpoint: Endpoint, state: AppState, body: Bytes) -> Response {
    let start = Instant::now();
    let policy = state.policy.load();
    let result = review::answer(endpoint, &body, &policy, state.lookups.as_ref());
    let elapsed = start.elapsed();
    match result {
        Ok(answer) => {
            let s = &answer.summary;
            state
                .metrics
                .record(endpoint.as_str(), s, elapsed.as_secs_f64());
            tracing::info!(
                endpoint = endpoint.as_str(),
                uid = s.uid.as_str(),
                kind = s.kind.as_str(),
                namespace = s.namespace.as_str(),
                name = s.name.as_str(),
                operation = s.operation.as_str(),
                sub_resource = s.sub_resource.as_str(),
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
            tracing::warn!(endpoint = endpoint.as_str(), reason = %bad, "bad request");
            plain(StatusCode::BAD_REQUEST, bad.to_string())
        }
    }
}

/// The webhook routes. Public so tests can drive it with `oneshot`.
pub fn router(state: AppState, request_budget: Duration) -> Router {
    Router::new()
        .route(
            "/mutate",
            post(|State(s): State<AppState>, body: Bytes| handle(Endpoint::Mutate, s, body)),
        )
        .route(
            "/validate",
            post(|State(s): State<AppState>, body: Bytes| handle(Endpoint::Validate, s, body)),
        )
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "not found: POST /mutate or /validate".into(),
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_budget,
        ))
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

/// Connection-level limits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub handshake: Duration,
    pub header_read: Duration,
    /// After shutdown starts, how long in-flight requests may take.
    pub drain: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(5),
            header_read: Duration::from_secs(5),
            drain: Duration::from_secs(20),
        }
    }
}

/// Serves HTTPS on `listener` until `shutdown` resolves, then stops accepting and lets in-flight
/// connections finish (bounded by `timeouts.drain`).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(timeouts.handshake, acceptor.accept(tcp)).await
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
            let service = TowerToHyperService::new(app);
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header_read)
                .keep_alive(true);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(20)))
                .keep_alive_timeout(Duration::from_secs(10));
            let builder = if h2 {
                builder.http2_only()
            } else {
                builder.http1_only()
            };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
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

/// Serves the metrics router on plain HTTP until `shutdown` resolves.
pub async fn serve_plain(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "metrics server failed");
    }
}

/// Binds a TCP listener with a clear error.
pub async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the {what} address {addr}: {e}"))
}
