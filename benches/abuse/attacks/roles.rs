//! Attack family: role specs (spans, star first, a node selector per role) that must not be
//! quadratic.

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum RolesKind {
    StarFirst,
    Spans,
    NodeSelector,
}

pub(crate) fn roles_body(kind: RolesKind, size: usize) -> Bytes {
    match kind {
        RolesKind::StarFirst => {
            review_with_annotations(&[("stsguard.io/roles", &roles_spans(size, true))])
        }
        RolesKind::Spans => {
            review_with_annotations(&[("stsguard.io/roles", &roles_spans(size, false))])
        }
        RolesKind::NodeSelector => review_with_annotations(&[
            ("stsguard.io/roles", &roles_distinct(size)),
            ("stsguard.io/role-node-selector.r0", "disk=ssd"),
        ]),
    }
}

pub(crate) async fn roles(srv: &Server, cfg: &Cfg, kind: RolesKind) -> Outcome {
    let mut out = Outcome::default();
    let (sizes, path, bound): ([usize; 4], &str, f64) = match kind {
        RolesKind::NodeSelector => (
            [20_000, 80_000, 320_000, 1_280_000],
            "/validate?timeout=5s",
            // 1.28 MB against the 946 KB bound: proportionally more to read.
            bounds::ROLES_MS * 1.35,
        ),
        _ => (
            [13_000, 56_000, 237_000, 946_000],
            "/mutate?timeout=5s",
            bounds::ROLES_MS,
        ),
    };
    let uid = probe_review().1;
    // A fresh connection per measured request (opened before the clock starts): an idle
    // keep-alive connection may be closed by the server's timeouts while a slow one runs.
    let mut stalled = false;
    let mut timing = Vec::new();
    // The three smaller sizes once each, smallest first; once one is not answered the server is
    // stalled and the rest is skipped.
    for &size in &sizes[..3] {
        let body = roles_body(kind, size);
        let (t, r) = fresh_post(srv, path, body.clone(), cfg.req_timeout).await;
        timing.push(timing_text(body.len(), t, &r));
        if r.is_err() {
            stalled = true;
            break;
        }
    }
    // Three concurrent requests of the third size, in rounds for about 2 s (the probe runs).
    if !stalled {
        let body = roles_body(kind, sizes[2]);
        let start = Instant::now();
        let mut rounds = 0;
        let mut slowest = Duration::ZERO;
        let mut worst = String::new();
        while rounds < 10 && start.elapsed() < Duration::from_secs(2) && !stalled {
            let mut set = JoinSet::new();
            for _ in 0..3 {
                let (addr, tls, body) = (srv.addr, srv.tls_h1.clone(), body.clone());
                let limit = cfg.req_timeout;
                set.spawn(async move {
                    match Conn::open_to(addr, &tls, false).await {
                        Ok(mut c) => timed_post(&mut c, path, body, limit).await,
                        Err(e) => (Duration::ZERO, Err(e)),
                    }
                });
            }
            while let Some(Ok((t, r))) = set.join_next().await {
                if t > slowest {
                    slowest = t;
                    worst = status_text(&r);
                }
                stalled |= r.is_err();
            }
            rounds += 1;
        }
        out.note(format!(
            "3 concurrent {} KB requests × {rounds} rounds: slowest {:.1} ms ({worst})",
            body.len() / 1000,
            ms(slowest)
        ));
    }
    // The largest: the bound. Measured again (at most 3 times in all) only while a miss could
    // be noise (under 10× the bound).
    let body = roles_body(kind, sizes[3]);
    let label = format!(
        "{} KB roles annotation on {} answered in (best of up to 3)",
        body.len() / 1000,
        path.split('?').next().unwrap()
    );
    if stalled {
        out.findings
            .push(Finding::new(label, ms(cfg.req_timeout), bound, "ms").at_least(true));
        out.note(format!("{path}: {}", timing.join("; ")));
        return out;
    }
    let mut best = f64::INFINITY;
    let mut last = None;
    for i in 0..3 {
        let (t, r) = fresh_post(srv, path, body.clone(), cfg.req_timeout).await;
        if i == 0 {
            timing.push(timing_text(body.len(), t, &r));
        }
        best = best.min(ms(t));
        match r {
            Err(_) => {
                stalled = true;
                break;
            }
            Ok(a) => last = Some(a),
        }
        if best <= bound || best > 10.0 * bound {
            break;
        }
    }
    out.note(format!("{path}: {}", timing.join("; ")));
    out.findings
        .push(Finding::new(label, best, bound, "ms").at_least(stalled));
    if let Some(a) = &last {
        out.flag(
            format!(
                "largest not answered HTTP 200 with the uid echoed (HTTP {})",
                a.status
            ),
            !(a.status == 200 && a.echoes(&uid)),
        );
    }
    if stalled {
        return out;
    }
    // The verdict: spans past the documented limit are a role-spec violation on /validate.
    let Ok(mut c) = Conn::open(srv, false).await else {
        out.flag("cannot connect", true);
        return out;
    };
    let (t, r) = timed_post(&mut c, "/validate?timeout=5s", body, cfg.req_timeout).await;
    let verdict = r.as_ref().ok().and_then(|a| a.json()).map(|j| {
        let allowed = j["response"]["allowed"].as_bool();
        let msg = j["response"]["status"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        (allowed, msg)
    });
    let denied = matches!(&verdict, Some((Some(false), m)) if m.contains("role-spec"));
    out.flag(
        format!(
            "largest on /validate not denied as a role-spec violation (got {}, in {:.1} ms)",
            match &verdict {
                Some((a, m)) => format!(
                    "allowed={a:?} {:?}",
                    m.chars().take(160).collect::<String>()
                ),
                None => status_text(&r),
            },
            ms(t)
        ),
        !denied,
    );
    out
}
