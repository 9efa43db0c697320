//! A small HTTPS load generator for the benchmarks and the fault test: HTTP/2 (or HTTP/1.1) over
//! TLS, N workers each with its own connection, closed loop or at a fixed total rate, optional
//! reconnects (new TLS handshakes), and a readiness watch that stops sending once the server
//! says it is not ready (as the endpoints controller would take it out of the Service).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// The tests' TLS client configurations (rustls only, no dev-dependency). The fault test loads
// this file beside `tests/common`, so there it is in the crate twice, which is harmless.
#[allow(clippy::duplicate_mod)]
#[path = "../../tests/common/tls.rs"]
mod tls;

#[derive(Clone, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    pub server_name: String,
    pub roots: Vec<CertificateDer<'static>>,
    pub path: String,
    pub body: Bytes,
    /// A byte string every good answer contains (e.g. the request uid).
    pub expect: Vec<u8>,
    pub duration: Duration,
    pub workers: usize,
    /// Total requests per second; None = as fast as the workers go.
    pub rate: Option<f64>,
    /// Open a new connection after this many requests per worker.
    pub reconnect_every: Option<u64>,
    /// Metrics address whose /readyz is watched: stop sending when it is not 200.
    pub ready_addr: Option<SocketAddr>,
    pub h2: bool,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub connections: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u32>,
    pub first_errors: Vec<String>,
    pub stopped_by_readiness: bool,
}

impl Report {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Latency percentile in microseconds (p in 0..=100).
    pub fn percentile(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    }
    pub fn summary(&self) -> String {
        format!(
            "requests {} ok {} failed {} connections {} in {:.1}s: {:.0} req/s, p50 {} us, p99 {} us, max {} us",
            self.sent,
            self.ok,
            self.failed,
            self.connections,
            self.elapsed.as_secs_f64(),
            self.rps(),
            self.percentile(50.0),
            self.percentile(99.0),
            self.latencies_us.iter().max().copied().unwrap_or(0)
        )
    }
}

enum Sender {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
}

async fn connect(o: &Options) -> Result<Sender, String> {
    let alpn: &[u8] = if o.h2 { b"h2" } else { b"http/1.1" };
    let cfg = tls::config_for(o.roots.iter().cloned(), &[alpn], rustls::DEFAULT_VERSIONS)?;
    let tcp = tokio::net::TcpStream::connect(o.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from(o.server_name.clone()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let io = TokioIo::new(tls);
    if o.h2 {
        let (s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| format!("h2: {e}"))?;
        tokio::spawn(conn);
        Ok(Sender::H2(s))
    } else {
        let (s, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("h1: {e}"))?;
        tokio::spawn(conn);
        Ok(Sender::H1(s))
    }
}

async fn one(sender: &mut Sender, o: &Options) -> Result<(), String> {
    let req = hyper::Request::post(o.path.as_str())
        .header("host", o.server_name.as_str())
        .header("content-type", "application/json")
        .body(Full::new(o.body.clone()))
        .map_err(|e| e.to_string())?;
    let resp = match sender {
        Sender::H2(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            s.send_request(req).await
        }
        Sender::H1(s) => {
            s.ready().await.map_err(|e| e.to_string())?;
            s.send_request(req).await
        }
    }
    .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    if status != 200 {
        return Err(format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    if !o.expect.is_empty()
        && !body
            .windows(o.expect.len())
            .any(|w| w == o.expect.as_slice())
    {
        return Err(format!(
            "unexpected answer: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    Ok(())
}

/// GET /readyz over plain HTTP; true when 200.
pub async fn ready(addr: SocketAddr) -> bool {
    let Ok(Ok(mut tcp)) =
        tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr)).await
    else {
        return false;
    };
    if tcp
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.read_to_end(&mut buf)).await;
    buf.starts_with(b"HTTP/1.1 200")
}

/// Runs the load; returns when the duration is over or the server stops being ready.
pub async fn run(o: Options) -> Report {
    let stop = Arc::new(AtomicBool::new(false));
    let by_readiness = Arc::new(AtomicBool::new(false));
    if let Some(addr) = o.ready_addr {
        let (stop, by_readiness) = (stop.clone(), by_readiness.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if !ready(addr).await {
                    by_readiness.store(true, Ordering::Relaxed);
                    stop.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }
    let start = Instant::now();
    let deadline = start + o.duration;
    let mut tasks = Vec::new();
    for w in 0..o.workers.max(1) {
        let o = o.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = Report::default();
            let interval = o
                .rate
                .map(|rate| Duration::from_secs_f64(o.workers as f64 / rate));
            // Spread the workers' first sends over one interval.
            let mut next = Instant::now()
                + interval
                    .map(|i| i.mul_f64(w as f64 / o.workers as f64))
                    .unwrap_or_default();
            let mut sender: Option<Sender> = None;
            let mut on_conn = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                if let Some(i) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += i;
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
                if o.reconnect_every.is_some_and(|n| on_conn >= n) {
                    sender = None;
                }
                if sender.is_none() {
                    match connect(&o).await {
                        Ok(s) => {
                            sender = Some(s);
                            on_conn = 0;
                            r.connections += 1;
                        }
                        Err(e) => {
                            if stop.load(Ordering::Relaxed) {
                                break;
                            }
                            r.sent += 1;
                            r.failed += 1;
                            if r.first_errors.len() < 5 {
                                r.first_errors.push(e);
                            }
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let t = Instant::now();
                r.sent += 1;
                on_conn += 1;
                let Some(s) = sender.as_mut() else { continue };
                match one(s, &o).await {
                    Ok(()) => {
                        r.ok += 1;
                        r.latencies_us
                            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    }
                    Err(e) => {
                        r.failed += 1;
                        sender = None;
                        if r.first_errors.len() < 5 {
                            r.first_errors.push(e);
                        }
                    }
                }
            }
            r
        }));
    }
    let mut total = Report::default();
    for t in tasks {
        if let Ok(r) = t.await {
            total.sent += r.sent;
            total.ok += r.ok;
            total.failed += r.failed;
            total.connections += r.connections;
            total.latencies_us.extend(r.latencies_us);
            for e in r.first_errors {
                if total.first_errors.len() < 5 {
                    total.first_errors.push(e);
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    total.elapsed = start.elapsed();
    total.stopped_by_readiness = by_readiness.load(Ordering::Relaxed);
    total
}
