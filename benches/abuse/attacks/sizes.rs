//! Attack family: sizes: many containers, concurrent 7 MB bodies over HTTP/1.1 and HTTP/2, and
//! `Expect: 100-continue` over the limit.

use super::*;

pub(crate) async fn containers(srv: &Server, cfg: &Cfg, n: usize) -> Outcome {
    let mut out = Outcome::default();
    let body = review_with_containers(n);
    let uid = base_review()["request"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let kb = body.len() / 1000;
    let Ok(mut c) = Conn::open(srv, false).await else {
        out.flag("cannot connect", true);
        return out;
    };
    let (t, r) = timed_post(&mut c, "/mutate?timeout=5s", body.clone(), cfg.req_timeout).await;
    let answered = r.as_ref().is_ok_and(|a| a.status == 200 && a.echoes(&uid));
    out.findings.push(
        Finding::new(
            format!("{n}-container review ({kb} KB) on /mutate answered in"),
            ms(t),
            ms(bounds::WEBHOOK_TIMEOUT),
            "ms",
        )
        .at_least(r.is_err()),
    );
    out.flag(
        format!(
            "/mutate: no HTTP 200 with the uid echoed ({})",
            status_text(&r)
        ),
        !answered,
    );
    if let Ok(a) = &r {
        out.note(format!(
            "/mutate answer: HTTP {}, {} bytes",
            a.status, a.size
        ));
        // Past the container bound: allowed with no patch and a warning that says so.
        if n > 256 {
            out.flag(
                format!("{n}-container /mutate answer carries a patch (past the bound)"),
                a.json().is_some_and(|v| !v["response"]["patch"].is_null()),
            );
        }
        if n >= 100_000 {
            out.check(
                format!("{n}-container /mutate answer size"),
                a.size as f64 / KIB as f64,
                64.0,
                "KiB",
            );
        }
    }
    if r.is_ok() {
        let (t, r) = timed_post(&mut c, "/validate?timeout=5s", body, cfg.req_timeout).await;
        out.findings.push(
            Finding::new(
                format!("{n}-container review on /validate answered in"),
                ms(t),
                ms(bounds::WEBHOOK_TIMEOUT),
                "ms",
            )
            .at_least(r.is_err()),
        );
        out.note(format!("/validate answer: {}", status_text(&r)));
        // Padding past a bound must not get an object through: denied, whatever onError says.
        if n > 256 {
            let denied = r.as_ref().ok().and_then(Answer::json).is_some_and(|v| {
                v["response"]["allowed"] == false
                    && v["response"]["status"]["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("[bounds]"))
            });
            out.flag(
                format!("{n}-container review not denied at /validate (a bypass by padding)"),
                !denied,
            );
        }
    }
    out
}

pub(crate) async fn big_bodies(srv: &Server, cfg: &Cfg, n: usize, h2: bool) -> Outcome {
    let mut out = Outcome::default();
    let body = review_of_size(7_000_000);
    let mut set = JoinSet::new();
    let shared = if h2 {
        match Conn::open(srv, true).await {
            Ok(c) => Some(c),
            Err(e) => {
                out.flag(format!("cannot open the h2 connection: {e}"), true);
                return out;
            }
        }
    } else {
        None
    };
    let start = Instant::now();
    for _ in 0..n {
        let body = body.clone();
        let limit = cfg.req_timeout;
        let (addr, tls) = (srv.addr, srv.tls_h1.clone());
        let stream = shared.as_ref().and_then(Conn::stream);
        set.spawn(async move {
            let mut c = match stream {
                Some(s) => s,
                None => match Conn::open_to(addr, &tls, false).await {
                    Ok(c) => c,
                    Err(e) => return (Duration::ZERO, Err(e)),
                },
            };
            timed_post(&mut c, "/mutate?timeout=5s", body, limit).await
        });
    }
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    while let Some(j) = set.join_next().await {
        let (t, r) = j.unwrap_or((Duration::ZERO, Err("task panicked".into())));
        slowest = slowest.max(t);
        let key = match &r {
            Ok(a) => format!("HTTP {}", a.status),
            Err(e) => e.chars().take(48).collect(),
        };
        *statuses.entry(key).or_default() += 1;
    }
    out.note(format!(
        "{n} × {} bytes{} in {:.1} s; slowest {:.1} s; answers: {:?}",
        body.len(),
        if h2 {
            " on one h2 connection"
        } else {
            " on HTTP/1.1 connections"
        },
        start.elapsed().as_secs_f64(),
        slowest.as_secs_f64(),
        statuses
    ));
    out
}

pub(crate) async fn expect_100(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    let len = 8 * MIB;
    let mut s = match tls_connect(srv.addr, srv.tls_h1.clone()).await {
        Ok(s) => s,
        Err(e) => {
            out.flag(format!("cannot connect: {e}"), true);
            return out;
        }
    };
    let head = format!(
        "POST /mutate?timeout=5s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    );
    let start = Instant::now();
    if let Err(e) = s.write_all(head.as_bytes()).await {
        out.flag(format!("write: {e}"), true);
        return out;
    }
    let _ = s.flush().await;
    // The first response head.
    let first = read_head(&mut s, Duration::from_secs(5)).await;
    let first_took = start.elapsed();
    let status = first.as_deref().and_then(status_of);
    out.flag(
        format!(
            "a 100 Continue before the answer to an 8 MiB Content-Length (first: {})",
            first
                .as_deref()
                .map(|h| h.lines().next().unwrap_or("").to_string())
                .unwrap_or_else(|| "nothing within 5 s".into())
        ),
        status == Some(100),
    );
    out.flag(
        "Content-Length 8 MiB with Expect: 100-continue not answered 413 at once",
        status != Some(413),
    );
    if status == Some(413) {
        out.note(format!("413 after {:.1} ms", ms(first_took)));
    }
    if status == Some(100) {
        // How much does the server read before it answers 413?
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0u64;
        let mut answered = None;
        let deadline = Instant::now() + cfg.req_timeout;
        while sent < len && Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(5), s.write_all(&chunk)).await {
                Ok(Ok(())) => sent += chunk.len() as u64,
                _ => break,
            }
            // Anything answered yet?
            if let Ok(Some(h)) = tokio::time::timeout(
                Duration::from_millis(1),
                read_head(&mut s, Duration::from_millis(1)),
            )
            .await
            {
                answered = Some(h);
                break;
            }
        }
        if answered.is_none() {
            answered = read_head(&mut s, Duration::from_secs(5)).await;
        }
        out.note(format!(
            "after the 100 Continue, {:.1} MiB sent before the answer {:?}",
            sent as f64 / MIB as f64,
            answered
                .as_deref()
                .map(|h| h.lines().next().unwrap_or("").to_string())
        ));
    }
    out
}
