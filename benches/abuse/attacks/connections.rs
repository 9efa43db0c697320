//! Attack family: connections: no HTTP/2 preface, idle and slow-header connections, idle sockets on
//! both ports from other addresses.

use super::*;

/// Opens a TLS connection with the given ALPN, optionally writes `send`, then waits until the
/// server closes it: the time from connect to close, or None when still open after `limit`.
pub(crate) async fn time_to_close(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    send: &[u8],
    limit: Duration,
) -> Result<Option<Duration>, String> {
    let start = Instant::now();
    let mut s = tls_connect(addr, tls).await?;
    if !send.is_empty() {
        s.write_all(send).await.map_err(|e| format!("write: {e}"))?;
        let _ = s.flush().await;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    Ok(r.ok().map(|_| start.elapsed()))
}

pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty SETTINGS frame.
pub(crate) const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

pub(crate) async fn prefaceless(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    let io_timeout = 2.0;
    let limit = if cfg.bench {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(10)
    };
    let bound = io_timeout + 1.5;
    let mut preface_settings = H2_PREFACE.to_vec();
    preface_settings.extend_from_slice(H2_SETTINGS);
    let cases: [(&str, Arc<rustls::ClientConfig>, Vec<u8>); 3] = [
        ("ALPN h2, no preface", srv.tls_h2.clone(), Vec::new()),
        (
            "ALPN h2, preface and SETTINGS, no request",
            srv.tls_h2.clone(),
            preface_settings,
        ),
        ("ALPN http/1.1, no request", srv.tls_h1.clone(), Vec::new()),
    ];
    let mut set = JoinSet::new();
    for (i, (_, tls, send)) in cases.iter().enumerate() {
        let (addr, tls, send) = (srv.addr, tls.clone(), send.clone());
        set.spawn(async move { (i, time_to_close(addr, tls, &send, limit).await) });
    }
    let mut results: Vec<Option<Result<Option<Duration>, String>>> = vec![None, None, None];
    while let Some(Ok((i, r))) = set.join_next().await {
        results[i] = Some(r);
    }
    for (i, (what, _, _)) in cases.iter().enumerate() {
        match results[i].take() {
            Some(Ok(Some(d))) => out.check(
                format!("{what}: closed by the server after (--io-timeout 2)"),
                d.as_secs_f64(),
                bound,
                "s",
            ),
            Some(Ok(None)) => out.findings.push(
                Finding::new(
                    format!("{what}: closed by the server after (--io-timeout 2)"),
                    limit.as_secs_f64(),
                    bound,
                    "s",
                )
                .at_least(true),
            ),
            Some(Err(e)) => out.flag(format!("{what}: {e}"), true),
            None => out.flag(format!("{what}: task failed"), true),
        }
    }
    out
}

pub(crate) async fn idle_connections(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    // Test: a cap of 64 and 200 connections. Benchmark: the default cap and 5,000 connections.
    let (n, cap) = if cfg.bench { (5_000, 512) } else { (200, 64) };
    let refuse_bound = 2.0;
    let handshake_limit = Duration::from_secs(3);
    let closed_at: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let mut holders = JoinSet::new();
    let mut refused: Vec<Duration> = Vec::new();
    let mut hanging = 0usize;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let start = Instant::now();
    let mut opening = JoinSet::new();
    let mut launched = 0;
    // 32 handshakes at a time.
    while launched < n || !opening.is_empty() {
        while launched < n && opening.len() < 32 {
            let (addr, tls) = (srv.addr, srv.tls_h2.clone());
            opening.spawn(async move {
                let t = Instant::now();
                let r = tokio::time::timeout(handshake_limit, tls_connect(addr, tls)).await;
                (t, r)
            });
            launched += 1;
        }
        let Some(Ok((t, r))) = opening.join_next().await else {
            continue;
        };
        match r {
            Err(_) => hanging += 1,
            Ok(Err(e)) => {
                refused.push(t.elapsed());
                *errors.entry(e.chars().take(60).collect()).or_default() += 1;
            }
            Ok(Ok(mut s)) => {
                let closed = closed_at.clone();
                holders.spawn(async move {
                    // Hold it; note when the server closes it.
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    closed.lock().unwrap().push(t.elapsed());
                });
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            out.note("stopped opening connections after 120 s");
            break;
        }
    }
    let opened_in = start.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rss = srv.peak_rss().0;
    let handshaken = holders.len();
    let closed = closed_at.lock().unwrap().clone();
    let open_now = handshaken - closed.len();
    // A connection served past the cap and then closed counts as refused.
    let slowest_refusal = refused
        .iter()
        .chain(closed.iter())
        .map(Duration::as_secs_f64)
        .fold(0.0, f64::max);
    out.check(
        format!("idle connections held open out of {n} (cap {cap}; the probe holds one more)"),
        open_now as f64,
        cap as f64,
        "",
    );
    out.check(
        format!(
            "connections past the cap left hanging (no handshake within {} s)",
            handshake_limit.as_secs()
        ),
        hanging as f64,
        0.0,
        "",
    );
    out.check(
        "slowest refusal of a connection past the cap",
        slowest_refusal,
        refuse_bound,
        "s",
    );
    out.note(format!(
        "{n} connections opened in {:.1} s: {handshaken} handshaken, {} closed by the server since, {} refused {:?}, {hanging} hanging; RSS then {rss:.1} MiB",
        opened_in.as_secs_f64(),
        closed.len(),
        refused.len(),
        errors
    ));
    holders.abort_all();
    while holders.join_next().await.is_some() {}
    out
}

pub(crate) async fn slow_headers(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    let n = if cfg.bench { 3_000 } else { 300 };
    let limit = if cfg.bench {
        Duration::from_secs(30)
    } else {
        Duration::from_secs(10)
    };
    let bound = 2.0 + 3.0;
    let mut set = JoinSet::new();
    let addr = srv.metrics;
    let start = Instant::now();
    for i in 0..n {
        set.spawn(async move {
            let t = Instant::now();
            let tcp = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(_)) => return Ok(Some(t.elapsed())), // refused: closed
                Err(_) => return Err("connect timed out"),
            };
            let (mut rd, mut wr) = tcp.into_split();
            let reader = async {
                let mut buf = [0u8; 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => return t.elapsed(),
                        Ok(_) => {}
                    }
                }
            };
            let writer = async {
                let _ = wr
                    .write_all(
                        format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{i}: ")
                            .as_bytes(),
                    )
                    .await;
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if wr.write_all(b"a").await.is_err() {
                        // The server closed it: wait for the reader to see it.
                        tokio::time::sleep(limit).await;
                    }
                }
            };
            tokio::select! {
                d = reader => Ok(Some(d)),
                _ = writer => Ok(None),
                _ = tokio::time::sleep(limit) => Ok(None),
            }
        });
    }
    let mut open = 0;
    let mut slowest: f64 = 0.0;
    let mut errors = 0;
    while let Some(j) = set.join_next().await {
        match j {
            Ok(Ok(Some(d))) => slowest = slowest.max(d.as_secs_f64()),
            Ok(Ok(None)) => open += 1,
            _ => errors += 1,
        }
    }
    out.check(
        format!(
            "slow-header connections still open after {} s (of {n})",
            limit.as_secs()
        ),
        open as f64,
        0.0,
        "",
    );
    out.findings.push(
        Finding::new(
            "slowest slow-header connection closed after (--io-timeout 2)",
            if open > 0 {
                limit.as_secs_f64()
            } else {
                slowest
            },
            bound,
            "s",
        )
        .at_least(open > 0),
    );
    if errors > 0 {
        out.note(format!("{errors} connections could not be opened"));
    }
    out.note(format!(
        "{n} slow connections over {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    out
}

/// 520 idle TCP sockets on the webhook port (from 127.0.0.2–6) and 70 keep-alive connections
/// on the metrics port (from 127.0.0.2–6), then, while they are held, 250 reviews each on a new
/// connection and 50 `/readyz` each on a new connection, from 127.0.0.1.
pub(crate) async fn idle_sockets_both_ports(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    let mut holders = JoinSet::new();
    let closed = Arc::new(AtomicU64::new(0));
    let mut open_failed = 0usize;
    for i in 0..520usize {
        let src = 2 + (i % 5) as u8;
        match tcp_from(srv.addr, src).await {
            Ok(mut tcp) => {
                let closed = closed.clone();
                holders.spawn(async move {
                    let mut b = [0u8; 64];
                    while let Ok(n) = tcp.read(&mut b).await {
                        if n == 0 {
                            break;
                        }
                    }
                    closed.fetch_add(1, Ordering::Relaxed);
                });
            }
            Err(_) => open_failed += 1,
        }
    }
    for i in 0..70usize {
        let src = 2 + (i % 5) as u8;
        let (addr, closed) = (srv.metrics, closed.clone());
        let Ok(tcp) = tcp_from(addr, src).await else {
            open_failed += 1;
            continue;
        };
        holders.spawn(async move {
            if let Ok((mut send, conn)) =
                hyper::client::conn::http1::handshake::<_, ReqBody>(TokioIo::new(tcp)).await
            {
                let req = hyper::Request::get("/healthz")
                    .header("host", "127.0.0.1")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let conn = tokio::spawn(conn);
                let _ = send.send_request(req).await;
                // Kept alive, never used again.
                let _ = conn.await;
            }
            closed.fetch_add(1, Ordering::Relaxed);
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut review_failed: BTreeMap<String, usize> = BTreeMap::new();
    let n_reviews = 250;
    let (body, uid) = probe_review();
    let mut reviews_ok = 0;
    for _ in 0..n_reviews {
        let r = match tokio::time::timeout(Duration::from_secs(5), Conn::open(srv, false)).await {
            Ok(Ok(mut c)) => {
                timed_post(&mut c, "/mutate?timeout=5s", body.clone(), cfg.req_timeout)
                    .await
                    .1
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err("connect timed out".into()),
        };
        match r {
            Ok(a) if a.status == 200 && a.echoes(&uid) => reviews_ok += 1,
            Ok(a) => {
                *review_failed
                    .entry(format!("HTTP {}", a.status))
                    .or_default() += 1
            }
            Err(e) => {
                *review_failed
                    .entry(e.chars().take(48).collect())
                    .or_default() += 1
            }
        }
    }
    let mut ready_failed: BTreeMap<String, usize> = BTreeMap::new();
    let n_ready = 50;
    let mut ready_ok = 0;
    for _ in 0..n_ready {
        match metrics_get_within(srv.metrics, "/readyz", Duration::from_secs(2)).await {
            Ok((200, _, _)) => ready_ok += 1,
            Ok((s, _, _)) => *ready_failed.entry(format!("HTTP {s}")).or_default() += 1,
            Err(e) => {
                *ready_failed
                    .entry(e.chars().take(48).collect())
                    .or_default() += 1
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.check(
        format!("reviews on a new connection that failed (of {n_reviews}: {review_failed:?})"),
        (n_reviews - reviews_ok) as f64,
        0.0,
        "",
    );
    out.check(
        format!("/readyz on a new connection that failed (of {n_ready}: {ready_failed:?})"),
        (n_ready - ready_ok) as f64,
        0.0,
        "",
    );
    out.note(format!(
        "590 sockets opened ({open_failed} failed to open), {} closed by the server meanwhile",
        closed.load(Ordering::Relaxed)
    ));
    holders.abort_all();
    while holders.join_next().await.is_some() {}
    out
}
