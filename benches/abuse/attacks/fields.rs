//! Attack family: hostile field values: metric labels (forged, random, huge kinds) and huge request
//! fields in the log.

use super::*;

pub(crate) async fn metric_labels(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    let forged = "X\"} 1\nstsguard_fake_metric{evil=\"1";
    let Ok(conn) = Conn::open(srv, true).await else {
        out.flag("cannot open an h2 connection", true);
        return out;
    };
    // The forged kind, on both endpoints.
    for path in ["/mutate", "/validate"] {
        let mut c = conn.stream().unwrap();
        let (_, r) = timed_post(
            &mut c,
            path,
            review_of_kind(forged, "forged", "CREATE"),
            cfg.req_timeout,
        )
        .await;
        out.note(format!("forged kind on {path}: {}", status_text(&r)));
    }
    // 10,000 random kinds, 32 at a time on one h2 connection.
    let n = 10_000;
    let start = Instant::now();
    let mut set = JoinSet::new();
    let mut rng = Rng::new(0x5eed);
    let mut sent = 0;
    let mut failed = 0;
    while sent < n || !set.is_empty() {
        while sent < n && set.len() < 32 {
            let mut c = conn.stream().unwrap();
            let body = review_of_kind(&rng.word(12), &format!("u{sent}"), "CREATE");
            let path = if sent % 2 == 0 {
                "/mutate"
            } else {
                "/validate"
            };
            let limit = cfg.req_timeout;
            set.spawn(async move { timed_post(&mut c, path, body, limit).await.1.is_ok() });
            sent += 1;
        }
        if let Some(j) = set.join_next().await {
            if !j.unwrap_or(false) {
                failed += 1;
            }
        }
        if start.elapsed() > cfg.attack_timeout / 2 {
            out.note(format!(
                "stopped after {sent} random kinds ({:.0} s)",
                start.elapsed().as_secs_f64()
            ));
            set.abort_all();
            break;
        }
    }
    out.note(format!(
        "{sent} random kinds in {:.1} s ({failed} not answered)",
        start.elapsed().as_secs_f64()
    ));
    // One kind of 5 MiB.
    let huge = "K".repeat(5 * MIB as usize);
    let mut c = conn.stream().unwrap();
    let (_, r) = timed_post(
        &mut c,
        "/validate",
        review_of_kind(&huge, "huge", "CREATE"),
        cfg.req_timeout,
    )
    .await;
    out.note(format!("5 MiB kind: {}", status_text(&r)));
    drop(huge);
    match metrics_get(srv.metrics, "/metrics").await {
        Ok((_, ct, body)) => {
            let x = parse_exposition(&String::from_utf8_lossy(&body), ct.contains("openmetrics"));
            out.check(
                "series of stsguard_admission_requests",
                x.series_of("stsguard_admission_requests") as f64,
                bounds::REQUEST_SERIES,
                "",
            );
            let kinds = x.label_values("kind");
            out.check(
                format!(
                    "distinct kind label values (e.g. {:?})",
                    kinds
                        .iter()
                        .take(5)
                        .map(|k| k.chars().take(40).collect::<String>())
                        .collect::<Vec<_>>()
                ),
                kinds.len() as f64,
                16.0,
                "",
            );
            out.check(
                "/metrics size",
                body.len() as f64 / KIB as f64,
                bounds::METRICS_KIB,
                "KiB",
            );
        }
        Err(e) => out.flag(format!("/metrics: {e}"), true),
    }
    out
}

pub(crate) async fn huge_fields(srv: &Server, cfg: &Cfg) -> Outcome {
    let mut out = Outcome::default();
    let big = "x".repeat(5_000_000);
    let base = base_review();
    let mut cases: Vec<(&str, serde_json::Value)> = Vec::new();
    let mut set_field = |what: &'static str, f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = base.clone();
        f(&mut v);
        cases.push((what, v));
    };
    set_field("request.uid", &|v| {
        v["request"]["uid"] = big.as_str().into()
    });
    set_field("request.name", &|v| {
        v["request"]["name"] = big.as_str().into()
    });
    set_field("request.namespace", &|v| {
        v["request"]["namespace"] = big.as_str().into()
    });
    set_field("request.kind.kind", &|v| {
        v["request"]["kind"]["kind"] = big.as_str().into()
    });
    set_field("request.operation", &|v| {
        v["request"]["operation"] = big.as_str().into()
    });
    set_field("request.subResource", &|v| {
        v["request"]["subResource"] = big.as_str().into()
    });
    set_field("kind (envelope)", &|v| v["kind"] = big.as_str().into());
    set_field("apiVersion (envelope)", &|v| {
        v["apiVersion"] = big.as_str().into()
    });
    let Ok(mut c) = Conn::open(srv, false).await else {
        out.flag("cannot connect", true);
        return out;
    };
    let mut largest_400 = 0usize;
    let mut answers = Vec::new();
    for (what, v) in cases {
        let body = Bytes::from(serde_json::to_vec(&v).unwrap());
        let (t, r) = timed_post(&mut c, "/mutate?timeout=5s", body, cfg.req_timeout).await;
        if let Ok(a) = &r {
            if a.status == 400 {
                largest_400 = largest_400.max(a.size);
            }
        } else if let Ok(n) = Conn::open(srv, false).await {
            c = n;
        }
        answers.push(format!("{what}: {} in {:.0} ms", status_text(&r), ms(t)));
    }
    out.check(
        "largest HTTP 400 body",
        largest_400 as f64,
        bounds::BAD_REQUEST_BODY_BYTES,
        "bytes",
    );
    out.note(answers.join("; "));
    out
}
