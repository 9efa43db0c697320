//! Attack family: the byte budget and the lanes: answers a client never reads, and a neighbour
//! flooding just under the bounds.

use super::*;

/// 64 HTTP/2 connections from 127.0.0.2 with a stream receive window of 0, each with 32 streams
/// of a review whose answer is many times its size: the answers cannot be sent. Held 6 s.
pub(crate) async fn zero_window_answers(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    let (conns, streams) = (64usize, 32usize);
    let body = review_heavy(200);
    // The answer's size, read normally once.
    if let Ok(mut c) = Conn::open(srv, false).await {
        let (_, r) = timed_post(&mut c, "/mutate?timeout=5s", body.clone(), cfg.req_timeout).await;
        out.note(format!(
            "the review: {} bytes; its answer read normally: {}",
            body.len(),
            status_text(&r)
        ));
    }
    let heads: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let mut set = JoinSet::new();
    let start = Instant::now();
    for _ in 0..conns {
        let (addr, tls, body, heads) = (srv.addr, srv.tls_h2.clone(), body.clone(), heads.clone());
        set.spawn(async move {
            let tcp = match tcp_from(addr, 2).await {
                Ok(t) => t,
                Err(e) => {
                    *heads.lock().unwrap().entry(e).or_default() += 1;
                    return;
                }
            };
            let Ok(s) = tokio_rustls::TlsConnector::from(tls)
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
            else {
                *heads
                    .lock()
                    .unwrap()
                    .entry("TLS failed".into())
                    .or_default() += 1;
                return;
            };
            let Ok((send, conn)) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(0)
                .handshake::<_, ReqBody>(TokioIo::new(s))
                .await
            else {
                *heads
                    .lock()
                    .unwrap()
                    .entry("h2 handshake failed".into())
                    .or_default() += 1;
                return;
            };
            tokio::spawn(conn);
            let mut held = JoinSet::new();
            for _ in 0..streams {
                let mut send = send.clone();
                let (body, heads) = (body.clone(), heads.clone());
                held.spawn(async move {
                    let req = hyper::Request::post("/mutate?timeout=5s")
                        .header("host", "localhost")
                        .header("content-type", "application/json")
                        .body(Full::new(body))
                        .unwrap();
                    if send.ready().await.is_err() {
                        return None;
                    }
                    let key;
                    let resp = match send.send_request(req).await {
                        Ok(r) => {
                            key = format!("HTTP {}", r.status().as_u16());
                            Some(r)
                        }
                        Err(e) => {
                            key = e.to_string().chars().take(48).collect();
                            None
                        }
                    };
                    *heads.lock().unwrap().entry(key).or_default() += 1;
                    // Never read: the answer stays unsent.
                    resp
                });
            }
            let mut keep = Vec::new();
            while let Some(r) = held.join_next().await {
                keep.push(r);
            }
            tokio::time::sleep(Duration::from_secs(6)).await;
            drop(keep);
        });
    }
    let rss_at = |srv: &Server| srv.peak_rss().0;
    while set.join_next().await.is_some() {}
    out.note(format!(
        "{conns} × {streams} streams in {:.1} s; answer heads: {:?}; peak RSS {:.0} MiB",
        start.elapsed().as_secs_f64(),
        heads.lock().unwrap(),
        rss_at(srv)
    ));
    out
}

/// The probe's p99 bound while a neighbour floods (plus the p99 before): measured on two shared
/// cores with the lanes 8–14 ms; without them 43–108 ms.
pub(crate) const NEIGHBOUR_P99_MS: f64 = 30.0;

/// For 6 s, from 127.0.0.2: 8 clients sending 98 KB reviews of 4,000 objects and 8 sending
/// 28 KB reviews whose evaluation is heavy, each one after another on its own connection.
pub(crate) async fn neighbour_flood(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    let wide = review_many_objects(98_000, 3_990);
    let heavy = review_heavy(200);
    let stats: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let until = Instant::now() + Duration::from_secs(6);
    let mut set = JoinSet::new();
    for i in 0..16 {
        let body = if i % 2 == 0 {
            wide.clone()
        } else {
            heavy.clone()
        };
        let what = if i % 2 == 0 { "98 KB" } else { "28 KB heavy" };
        let (addr, tls, stats, limit) =
            (srv.addr, srv.tls_h1.clone(), stats.clone(), cfg.req_timeout);
        set.spawn(async move {
            let mut conn: Option<Conn> = None;
            while Instant::now() < until {
                if conn.is_none() {
                    let Ok(tcp) = tcp_from(addr, 2).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let Ok(s) = tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(ServerName::try_from("localhost").unwrap(), tcp)
                        .await
                    else {
                        continue;
                    };
                    let Ok((send, c)) =
                        hyper::client::conn::http1::handshake::<_, ReqBody>(TokioIo::new(s)).await
                    else {
                        continue;
                    };
                    tokio::spawn(c);
                    conn = Some(Conn::H1(send));
                }
                let c = conn.as_mut().unwrap();
                let (_, r) = timed_post(c, "/mutate?timeout=5s", body.clone(), limit).await;
                let key = match &r {
                    Ok(a) => format!("{what}: HTTP {}", a.status),
                    Err(e) => format!("{what}: {}", e.chars().take(40).collect::<String>()),
                };
                if r.is_err() {
                    conn = None;
                }
                *stats.lock().unwrap().entry(key).or_default() += 1;
            }
        });
    }
    while set.join_next().await.is_some() {}
    out.note(format!(
        "bodies {} and {} bytes; answers: {:?}",
        wide.len(),
        heavy.len(),
        stats.lock().unwrap()
    ));
    out
}
