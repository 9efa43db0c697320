//! The attacks by name, and running one: a fresh server, the probe's baseline, the attack under a
//! time limit, then the server-wide figures (peak RSS, probe p99, metrics, log lines).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    RolesStarFirst,
    RolesSpans,
    RolesNodeSelector,
    Containers5k,
    Containers100k,
    Bodies7MbHttp1x64,
    Bodies7MbH2x64,
    Bodies7MbH2x200,
    PrefacelessH2,
    IdleConnections,
    SlowHeadersMetrics,
    MetricLabels,
    HugeFields,
    Expect100Continue,
    ZeroWindowAnswers,
    IdleSocketsBothPorts,
    NeighbourFlood,
}

pub const ALL: &[Attack] = &[
    Attack::RolesStarFirst,
    Attack::RolesSpans,
    Attack::RolesNodeSelector,
    Attack::Containers5k,
    Attack::Containers100k,
    Attack::Bodies7MbHttp1x64,
    Attack::Bodies7MbH2x64,
    Attack::Bodies7MbH2x200,
    Attack::PrefacelessH2,
    Attack::IdleConnections,
    Attack::SlowHeadersMetrics,
    Attack::MetricLabels,
    Attack::HugeFields,
    Attack::Expect100Continue,
    Attack::ZeroWindowAnswers,
    Attack::IdleSocketsBothPorts,
    Attack::NeighbourFlood,
];

impl Attack {
    pub fn title(self) -> &'static str {
        match self {
            Attack::RolesStarFirst => {
                "stsguard.io/roles \"p=*,a=0-65,a=66-131,…\" (13 KB … 946 KB)"
            }
            Attack::RolesSpans => "stsguard.io/roles \"p=0-65,a=66-131,…,a=N-\" (13 KB … 946 KB)",
            Attack::RolesNodeSelector => {
                "stsguard.io/roles with a role per entry + role-node-selector, /validate (1.28 MB)"
            }
            Attack::Containers5k => "StatefulSet with 5,000 minimal containers (147 KB)",
            Attack::Containers100k => "StatefulSet with 100,000 containers (3 MB)",
            Attack::Bodies7MbHttp1x64 => "64 concurrent 7 MB bodies, HTTP/1.1",
            Attack::Bodies7MbH2x64 => "64 concurrent 7 MB bodies, 64 streams on one h2 connection",
            Attack::Bodies7MbH2x200 => {
                "200 concurrent 7 MB bodies, 200 streams on one h2 connection"
            }
            Attack::PrefacelessH2 => "TLS + ALPN h2, no HTTP/2 preface (and no request)",
            Attack::IdleConnections => "many idle preface-less h2 connections",
            Attack::SlowHeadersMetrics => "metrics port: headers one byte every 500 ms",
            Attack::MetricLabels => "review kinds: forged line, 10,000 random, one of 5 MiB",
            Attack::HugeFields => "5 MB uid, name, namespace, kinds, operation, subResource",
            Attack::Expect100Continue => "Expect: 100-continue with Content-Length 8 MiB",
            Attack::ZeroWindowAnswers => {
                "h2 receive window 0: 64 connections × 32 streams of a 28 KB review (a 262 KB answer)"
            }
            Attack::IdleSocketsBothPorts => {
                "520 idle TCP sockets on the webhook port, 70 keep-alive on the metrics port"
            }
            Attack::NeighbourFlood => {
                "a neighbour floods just under the bounds: 98 KB / 4,000-object and 28 KB heavy reviews"
            }
        }
    }

    /// Extra flags for the server.
    fn flags(self, cfg: &Cfg) -> Vec<String> {
        let f: &[&str] = match (self, cfg.bench) {
            (Attack::PrefacelessH2, _) => &["--io-timeout", "2"],
            (Attack::SlowHeadersMetrics, _) => &["--io-timeout", "2"],
            // The test keeps the idle connections from being closed by the preface timeout, so
            // that only the cap closes them.
            (Attack::IdleConnections, false) => &["--max-connections", "64", "--io-timeout", "30"],
            // The idle sockets are not closed by the handshake timeout during the attack: only
            // the caps decide (an attacker reopens them anyway).
            (Attack::IdleSocketsBothPorts, _) => &["--io-timeout", "30"],
            _ => &[],
        };
        f.iter().map(|s| s.to_string()).collect()
    }
}

/// Runs one attack against a fresh server: the attack's own figures, then peak RSS, probe p99,
/// the longest log line and a strict read of `/metrics`.
pub async fn run(attack: Attack, cfg: &Cfg) -> Report {
    let mut srv = match Server::start(cfg, &attack.flags(cfg)) {
        Ok(s) => s,
        Err(e) => {
            let mut out = Outcome::default();
            out.flag(format!("server start failed: {e}"), true);
            return Report {
                attack,
                outcome: out,
                peak_rss_mib: 0.0,
                rss_killed: false,
                probe: ProbeStats::default(),
                log_tail: String::new(),
            };
        }
    };
    let probe = Probe::start(&srv);
    // The probe's baseline: the machine's noise before the attack.
    tokio::time::sleep(BASELINE).await;
    probe.attack_begins();
    let started = Instant::now();
    let mut out =
        match tokio::time::timeout(cfg.attack_timeout, run_attack(attack, &srv, cfg)).await {
            Ok(o) => o,
            Err(_) => {
                let mut o = Outcome::default();
                o.check(
                    "attack duration (not finished: the server is stalled)",
                    cfg.attack_timeout.as_secs_f64(),
                    cfg.attack_timeout.as_secs_f64(),
                    "s",
                );
                o.findings.last_mut().unwrap().over = true;
                o
            }
        };
    let took = started.elapsed();
    let stats = probe.finish();
    let (peak, killed) = srv.peak_rss();
    out.findings.insert(
        0,
        Finding::new("server peak RSS (VmHWM)", peak, bounds::PEAK_RSS_MIB, "MiB").at_least(killed),
    );
    if killed {
        out.note(format!(
            "the watchdog killed the server at RSS > {} MiB",
            cfg.rss_kill / MIB
        ));
    }
    // The bound allows for the machine's own noise: the p99 of the same probe just before.
    let base = stats.baseline_p99_ms();
    let allowance = if base.is_finite() { base } else { 0.0 };
    out.findings.insert(
        1,
        Finding::new(
            format!(
                "probe review p99 during the attack ({}), bound {} ms + the p99 before the attack ({base:.1} ms over {} probes)",
                stats.summary(),
                cfg.probe_p99_ms,
                stats.baseline.len() + stats.baseline_failed
            ),
            stats.p99_ms(),
            cfg.probe_p99_ms + allowance,
            "ms",
        ),
    );
    if attack == Attack::NeighbourFlood {
        // The neighbour's reviews run in their own lane: an ordinary review keeps its latency,
        // not merely the general bound.
        out.findings.push(Finding::new(
            format!(
                "probe review p99 during the neighbour's flood, bound {NEIGHBOUR_P99_MS} ms + the p99 before ({base:.1} ms)"
            ),
            stats.p99_ms(),
            NEIGHBOUR_P99_MS + allowance,
            "ms",
        ));
    }
    if let Some(e) = &stats.warmup_error {
        out.note(format!("probe warm-up: {e}"));
    }
    if srv.alive() {
        check_metrics(&srv, &mut out).await;
    } else if !killed {
        out.flag("the server exited during the attack", true);
    }
    // Let the log thread drain what the server wrote last.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (longest, over, head, lines) = srv.log_stats();
    out.findings.push(Finding::new(
        format!(
            "longest stderr log line ({lines} lines, {over} over the bound{})",
            if over > 0 {
                format!("; it starts {head:?}")
            } else {
                String::new()
            }
        ),
        longest as f64,
        bounds::LOG_LINE_BYTES,
        "bytes",
    ));
    out.note(format!("attack took {:.1} s", took.as_secs_f64()));
    let log_tail = srv.log_tail(10);
    drop(srv);
    Report {
        attack,
        outcome: out,
        peak_rss_mib: peak,
        rss_killed: killed,
        probe: stats,
        log_tail,
    }
}

pub(crate) async fn run_attack(attack: Attack, srv: &Server, cfg: &Cfg) -> Outcome {
    match attack {
        Attack::RolesStarFirst => roles(srv, cfg, RolesKind::StarFirst).await,
        Attack::RolesSpans => roles(srv, cfg, RolesKind::Spans).await,
        Attack::RolesNodeSelector => roles(srv, cfg, RolesKind::NodeSelector).await,
        Attack::Containers5k => containers(srv, cfg, 5_000).await,
        Attack::Containers100k => containers(srv, cfg, 100_000).await,
        Attack::Bodies7MbHttp1x64 => big_bodies(srv, cfg, 64, false).await,
        Attack::Bodies7MbH2x64 => big_bodies(srv, cfg, 64, true).await,
        Attack::Bodies7MbH2x200 => big_bodies(srv, cfg, 200, true).await,
        Attack::PrefacelessH2 => prefaceless(srv, cfg).await,
        Attack::IdleConnections => idle_connections(srv, cfg).await,
        Attack::SlowHeadersMetrics => slow_headers(srv, cfg).await,
        Attack::MetricLabels => metric_labels(srv, cfg).await,
        Attack::HugeFields => huge_fields(srv, cfg).await,
        Attack::Expect100Continue => expect_100(srv, cfg).await,
        Attack::ZeroWindowAnswers => zero_window_answers(srv, cfg).await,
        Attack::IdleSocketsBothPorts => idle_sockets_both_ports(srv, cfg).await,
        Attack::NeighbourFlood => neighbour_flood(srv, cfg).await,
    }
}
