//! Connections on both ports: the caps (in all and per client address), reclaiming idle
//! connections when the cap is near, TLS, HTTP/1 and HTTP/2 settings, and the watchdog that
//! closes a connection with no first request, no request in flight, or a stalled answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
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
    /// A connection with requests in flight but no progress (no request begun or ended, no
    /// piece of an answer taken by the connection) for this long is closed: a client that
    /// stops reading its answers. Keep it above the review time budget.
    pub stall: Duration,
    /// After shutdown starts, how long in-flight requests may take.
    pub drain: Duration,
    /// Open connections at most. At the cap, a new connection closes a quiet one (no request in
    /// flight): one that never sent a request, oldest first, else the one quiet longest; with
    /// none quiet, the new connection is closed at once.
    pub max_connections: usize,
    /// Open connections from one client address at most (0: a quarter of `max_connections`).
    /// At it, a new connection from that address closes that address's quietest connection.
    pub max_per_client: usize,
    /// Counts the connections turned away by `max_connections` and `max_per_client`.
    pub rejected: Option<prometheus_client::metrics::counter::Counter>,
    /// Counts the quiet connections closed to make room for new ones.
    pub reclaimed: Option<prometheus_client::metrics::counter::Counter>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            handshake: Duration::from_secs(5),
            header_read: Duration::from_secs(5),
            idle: Duration::from_secs(60),
            stall: Duration::from_secs(15),
            drain: Duration::from_secs(20),
            max_connections: 512,
            max_per_client: 0,
            rejected: None,
            reclaimed: None,
        }
    }
}

impl Timeouts {
    fn per_client(&self) -> usize {
        if self.max_per_client == 0 {
            (self.max_connections / 4).max(1)
        } else {
            self.max_per_client
        }
    }
}

/// The address a request came from, in its extensions (for the per-client byte share).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

/// HTTP/2 windows and streams: what one connection may make the server buffer before a handler
/// reads it (a stream's window, and the connection's over all its streams), and the answers it
/// may hold: at most `H2_MAX_STREAMS` streams, each with at most `H2_SEND_BUFFER` queued for
/// sending beyond the answer's own (budgeted) bytes.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONN_WINDOW: u32 = 256 * 1024;
const H2_MAX_STREAMS: u32 = 32;
const H2_SEND_BUFFER: usize = super::gate::ANSWER_CHUNK;
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

/// One open connection, as the accept loop sees it.
struct Entry {
    ip: IpAddr,
    opened: Instant,
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

impl Entry {
    /// How quiet the connection is, least first: None when a request is in flight; else
    /// whether it has served a request (a connection that never has goes first: an API
    /// server's keep-alive connection outlasts a flood of sockets that send nothing) and since
    /// when it has had no request in flight.
    fn quiet_since(&self) -> Option<(bool, Instant)> {
        let a = &self.activity;
        if a.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let used = a.started.load(Ordering::Acquire) > 0;
        Some((
            used,
            self.opened + Duration::from_millis(a.last_ms.load(Ordering::Acquire)),
        ))
    }
}

/// The open connections: counted in all and per client address.
#[derive(Default)]
struct Registry {
    next: u64,
    conns: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, usize>,
}

/// What the accept loop decided for a new connection.
enum Admit {
    Yes,
    /// Yes, once this quiet connection is closed.
    Reclaim,
    No,
}

impl Registry {
    /// Admits a connection from `ip` within the caps: at a cap, the quietest connection (no
    /// request in flight, quiet longest) in all or from `ip` is told to close and leaves the
    /// count at once.
    fn admit(&mut self, ip: IpAddr, max: usize, per_client: usize) -> Admit {
        let mut how = Admit::Yes;
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= per_client {
            if !self.reclaim(Some(ip)) {
                return Admit::No;
            }
            how = Admit::Reclaim;
        }
        if self.conns.len() >= max {
            if !self.reclaim(None) {
                return Admit::No;
            }
            how = Admit::Reclaim;
        }
        how
    }

    fn reclaim(&mut self, from: Option<IpAddr>) -> bool {
        let victim = self
            .conns
            .iter()
            .filter(|(_, e)| from.is_none_or(|ip| e.ip == ip))
            .filter_map(|(id, e)| e.quiet_since().map(|q| (q, *id)))
            .min();
        match victim {
            Some((_, id)) => {
                if let Some(e) = self.remove(id) {
                    e.close.notify_one();
                }
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, e: Entry) -> u64 {
        self.next += 1;
        *self.per_ip.entry(e.ip).or_default() += 1;
        self.conns.insert(self.next, e);
        self.next
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&e.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&e.ip);
            }
        }
        Some(e)
    }
}

/// Takes a connection out of the registry when its task ends (unless reclaimed before).
struct Registered(Arc<Mutex<Registry>>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut r = self.0.lock().unwrap_or_else(|e| e.into_inner());
        r.remove(self.1);
    }
}

/// Accepts connections until `shutdown`, each admitted under the caps ([`register`]) and served
/// in its own task ([`connection`]); then drains them ([`drain`]).
async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let registry = Arc::new(Mutex::new(Registry::default()));
    let timeouts = Arc::new(timeouts);
    let mut tasks = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    while let Some((tcp, peer)) = accept(&listener, &mut shutdown).await {
        while tasks.try_join_next().is_some() {}
        let Some((registered, conn)) = register(&registry, peer, &timeouts) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tls, app, t, stop) = (tls.clone(), app.clone(), timeouts.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let _registered = registered;
            connection(tcp, tls, app, &t, &conn, stop).await;
        });
    }
    drop(listener);
    tracing::info!("stopped accepting; draining in-flight requests");
    let _ = stop_tx.send(true);
    drain(tasks, timeouts.drain).await;
}

/// The next connection, or `None` once `shutdown` resolves. A failed accept (out of file
/// descriptors, a reset before accept) is logged and retried after a pause.
async fn accept(
    listener: &TcpListener,
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// Admits a connection from `peer` under the connection caps (reclaiming a quiet one when full)
/// and registers it; `None`: closed at once, past the caps with nothing quiet to reclaim (a
/// client past the cap costs a file descriptor for microseconds).
fn register(
    registry: &Arc<Mutex<Registry>>,
    peer: SocketAddr,
    timeouts: &Timeouts,
) -> Option<(Registered, Conn)> {
    let (max, per_client) = (timeouts.max_connections.max(1), timeouts.per_client());
    let conn = Conn {
        peer,
        opened: Instant::now(),
        activity: Arc::new(Activity::default()),
        close: Arc::new(Notify::new()),
    };
    let mut r = registry.lock().unwrap_or_else(|e| e.into_inner());
    let how = r.admit(peer.ip(), max, per_client);
    let counter = match how {
        Admit::No => &timeouts.rejected,
        Admit::Reclaim => &timeouts.reclaimed,
        Admit::Yes => &None,
    };
    if let Some(c) = counter {
        c.inc();
    }
    if matches!(how, Admit::No) {
        tracing::debug!(%peer, "connection cap reached, no quiet connection: closed");
        return None;
    }
    let id = r.insert(Entry {
        ip: peer.ip(),
        opened: conn.opened,
        activity: conn.activity.clone(),
        close: conn.close.clone(),
    });
    Some((Registered(registry.clone(), id), conn))
}

/// One connection: its TLS handshake (bounded by `handshake`, given up when the connection is
/// reclaimed or the server stops), then HTTP/2 or HTTP/1 as ALPN says.
async fn connection(
    tcp: TcpStream,
    tls: Option<TlsAcceptor>,
    app: Router,
    t: &Timeouts,
    conn: &Conn,
    mut stop: watch::Receiver<bool>,
) {
    let Some(acceptor) = tls else {
        return serve_conn(tcp, false, app, t, conn, stop).await;
    };
    let peer = conn.peer;
    let handshake = tokio::time::timeout(t.handshake, acceptor.accept(tcp));
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = conn.close.notified() => return,
        _ = stopped(&mut stop) => return,
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    serve_conn(stream, h2, app, t, conn, stop).await
}

/// Waits for the connections' tasks to end, at most `limit`, then ends the rest.
async fn drain(mut tasks: JoinSet<()>, limit: Duration) {
    let drained =
        tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} }).await;
    match drained {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => {
            tracing::warn!("drain timed out; closing the remaining connections");
            tasks.shutdown().await;
        }
    }
}

/// One connection's identity and signals.
struct Conn {
    peer: SocketAddr,
    opened: Instant,
    activity: Arc<Activity>,
    close: Arc<Notify>,
}

/// What a connection's requests are doing, for its watchdog and the reclaimer.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    started: AtomicU64,
    /// When a request last began or ended or an answer's piece was taken, in ms since the
    /// connection opened.
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self, opened: Instant) {
        self.last_ms
            .store(opened.elapsed().as_millis() as u64, Ordering::Release);
    }
}

/// Marks a request in flight until its answer has been taken by the connection, or dropped
/// (also when the connection is dropped mid-request).
struct InFlight(Arc<Activity>, Instant);

impl InFlight {
    fn begin(a: Arc<Activity>, opened: Instant) -> Self {
        a.in_flight.fetch_add(1, Ordering::AcqRel);
        a.started.fetch_add(1, Ordering::AcqRel);
        a.touch(opened);
        InFlight(a, opened)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch(self.1);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body that keeps its request in flight until its end, and marks progress with
/// every piece the connection takes.
struct Tracked {
    inner: Body,
    guard: Option<InFlight>,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            std::task::Poll::Ready(None) | std::task::Poll::Ready(Some(Err(_))) => {
                self.guard = None;
            }
            std::task::Poll::Ready(Some(Ok(_))) => {
                if let Some(g) = &self.guard {
                    g.0.touch(g.1);
                }
                if self.inner.is_end_stream() {
                    self.guard = None;
                }
            }
            std::task::Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves once the server stops.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Why a connection should close.
#[derive(Debug, PartialEq, Eq)]
enum Close {
    NoFirstRequest,
    Idle,
    Stalled,
    Reclaimed,
}

/// Resolves when the connection should close: no first request within `header_read` (a TLS or
/// TCP connection that never sends a request, an HTTP/2 client without a preface), no request
/// in flight for `idle`, or requests in flight with no progress for `stall`.
async fn watchdog(a: &Activity, t: &Timeouts, opened: Instant) -> Close {
    let mut check_at = opened + t.header_read;
    loop {
        tokio::time::sleep_until(tokio::time::Instant::from_std(check_at)).await;
        let now = Instant::now();
        let last = opened + Duration::from_millis(a.last_ms.load(Ordering::Acquire));
        if a.in_flight.load(Ordering::Acquire) > 0 {
            if now >= last + t.stall {
                return Close::Stalled;
            }
            check_at = (last + t.stall).min(now + t.header_read);
            continue;
        }
        if a.started.load(Ordering::Acquire) == 0 {
            return Close::NoFirstRequest;
        }
        if now >= last + t.idle {
            return Close::Idle;
        }
        check_at = last + t.idle;
    }
}

/// How long a connection told to close may take to finish what is in flight (an idle one has
/// nothing; a stalled one is dropped).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

async fn serve_conn<IO>(
    io: IO,
    h2: bool,
    app: Router,
    t: &Timeouts,
    c: &Conn,
    mut stop: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (opened, peer) = (c.opened, c.peer);
    let a = c.activity.clone();
    let client = ClientAddr(peer.ip());
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let guard = InFlight::begin(a.clone(), opened);
        let app = app.clone();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(client);
        async move {
            let r = app.oneshot(req).await;
            r.map(|resp| {
                resp.map(|inner| {
                    Body::new(Tracked {
                        inner,
                        guard: Some(guard),
                    })
                })
            })
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
        .max_send_buf_size(H2_SEND_BUFFER)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    let why = tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            return;
        }
        why = watchdog(&c.activity, t, opened) => why,
        _ = c.close.notified() => Close::Reclaimed,
        _ = stopped(&mut stop) => {
            // Shutdown: what is in flight finishes (the server bounds the whole drain).
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
            return;
        }
    };
    tracing::debug!(%peer, why = ?why, "closing the connection");
    if why == Close::Stalled {
        // Its answers are not being read: dropped, with their budget.
        return;
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ip: &str, opened: Instant, started: u64, in_flight: usize) -> Entry {
        let a = Activity::default();
        a.started.store(started, Ordering::Release);
        a.in_flight.store(in_flight, Ordering::Release);
        Entry {
            ip: ip.parse().unwrap(),
            opened,
            activity: Arc::new(a),
            close: Arc::new(Notify::new()),
        }
    }

    #[test]
    fn at_the_cap_a_socket_that_never_sent_a_request_is_closed_before_a_keep_alive_one() {
        let t0 = Instant::now() - Duration::from_secs(10);
        let mut r = Registry::default();
        let keep_alive = r.insert(entry("10.0.0.1", t0, 5, 0));
        let busy = r.insert(entry("10.0.0.2", t0, 1, 1));
        let silent = r.insert(entry("10.0.0.3", t0 + Duration::from_secs(5), 0, 0));
        assert!(matches!(
            r.admit("10.0.0.9".parse().unwrap(), 3, 3),
            Admit::Reclaim
        ));
        assert!(
            !r.conns.contains_key(&silent),
            "the silent socket went first"
        );
        assert!(r.conns.contains_key(&keep_alive) && r.conns.contains_key(&busy));
        assert!(matches!(
            r.admit("10.0.0.9".parse().unwrap(), 2, 3),
            Admit::Reclaim
        ));
        assert!(
            !r.conns.contains_key(&keep_alive),
            "then the quiet keep-alive one"
        );
        assert!(
            matches!(r.admit("10.0.0.9".parse().unwrap(), 1, 3), Admit::No),
            "a request in flight is never cut"
        );
    }

    #[test]
    fn at_its_own_cap_a_client_closes_only_its_own_connections() {
        let t0 = Instant::now() - Duration::from_secs(10);
        let mut r = Registry::default();
        let other = r.insert(entry("10.0.0.1", t0, 0, 0));
        let own = r.insert(entry("10.0.0.2", t0 + Duration::from_secs(1), 0, 0));
        assert!(matches!(
            r.admit("10.0.0.2".parse().unwrap(), 10, 1),
            Admit::Reclaim
        ));
        assert!(r.conns.contains_key(&other) && !r.conns.contains_key(&own));
        let _busy = r.insert(entry("10.0.0.2", t0, 1, 1));
        assert!(matches!(
            r.admit("10.0.0.2".parse().unwrap(), 10, 1),
            Admit::No
        ));
        assert_eq!(r.per_ip.len(), 2);
    }
}
