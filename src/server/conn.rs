//! Connections on both ports: the cap, TLS, HTTP/1 and HTTP/2 settings, and the watchdog that
//! closes a connection with no first request or no request in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

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
