//! The probe: an ordinary review every 20 ms, on its own thread, runtime and connection; its
//! latencies before the attack (the machine's noise) and during it.

use super::*;

/// The ordinary review the probe sends (the repository's fixture), compact, and its uid.
pub fn probe_review() -> (Bytes, String) {
    let v = base_review();
    let uid = v["request"]["uid"].as_str().unwrap().to_string();
    (Bytes::from(serde_json::to_vec(&v).unwrap()), uid)
}

#[derive(Debug, Default, Clone)]
pub struct ProbeStats {
    /// Before the attack: answered latencies, and failed probes (counted as slowest).
    pub baseline: Vec<Duration>,
    pub baseline_failed: usize,
    /// Answered (200, uid echoed) latencies.
    pub ok: Vec<Duration>,
    /// Failed probes: what happened.
    pub failed: Vec<String>,
    pub warmup_error: Option<String>,
}

impl ProbeStats {
    pub fn n(&self) -> usize {
        self.ok.len() + self.failed.len()
    }

    /// p99 in ms during the attack; a failed probe counts as infinitely slow.
    pub fn p99_ms(&self) -> f64 {
        p99(&self.ok, self.failed.len())
    }

    /// p99 in ms before the attack: the machine's own noise.
    pub fn baseline_p99_ms(&self) -> f64 {
        p99(&self.baseline, self.baseline_failed)
    }

    pub fn max_ok_ms(&self) -> f64 {
        self.ok
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .fold(0.0, f64::max)
    }

    pub fn summary(&self) -> String {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for f in &self.failed {
            *kinds.entry(f.clone()).or_default() += 1;
        }
        let failed: Vec<String> = kinds.iter().map(|(k, n)| format!("{n}× {k}")).collect();
        format!(
            "{} probes, {} failed{}; slowest answered {:.1} ms",
            self.n(),
            self.failed.len(),
            if failed.is_empty() {
                String::new()
            } else {
                format!(" ({})", failed.join("; "))
            },
            self.max_ok_ms()
        )
    }
}

/// p99 in ms of `ok` plus `failed` infinitely slow samples.
pub(crate) fn p99(ok: &[Duration], failed: usize) -> f64 {
    let n = ok.len() + failed;
    if n == 0 {
        return f64::INFINITY;
    }
    let mut v: Vec<f64> = ok.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    v.extend(std::iter::repeat_n(f64::INFINITY, failed));
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let idx = ((n as f64 * 0.99).ceil() as usize).clamp(1, n) - 1;
    v[idx]
}

pub struct Probe {
    stop: Arc<AtomicBool>,
    attacking: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<ProbeStats>>,
}

pub(crate) const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long the probe runs before the attack (its baseline).
pub(crate) const BASELINE: Duration = Duration::from_millis(1500);
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const PROBE_MIN: usize = 25;
pub(crate) const PROBE_MAX: usize = 20_000;

impl Probe {
    /// Starts probing once one probe has been answered (connection open, server warm).
    /// Its first probes (until [`Probe::attack_begins`]) are the baseline.
    pub fn start(srv: &Server) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let attacking = Arc::new(AtomicBool::new(false));
        let (addr, tls) = (srv.addr, srv.tls_h1.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (st, at) = (stop.clone(), attacking.clone());
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(probe_loop(addr, tls, st, at, ready_tx))
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(30));
        Probe {
            stop,
            attacking,
            handle: Some(handle),
        }
    }

    pub fn attack_begins(&self) {
        self.attacking.store(true, Ordering::Relaxed);
    }

    pub fn finish(mut self) -> ProbeStats {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .unwrap()
            .join()
            .unwrap_or_else(|_| ProbeStats {
                warmup_error: Some("the probe thread panicked".into()),
                ..Default::default()
            })
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) async fn probe_loop(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    stop: Arc<AtomicBool>,
    attacking: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<()>,
) -> ProbeStats {
    let (body, uid) = probe_review();
    let mut stats = ProbeStats::default();
    let mut conn: Option<Conn> = None;
    // Warm up: one answered probe, within 20 s.
    let warm_until = Instant::now() + Duration::from_secs(20);
    loop {
        if conn.is_none() {
            conn = Conn::open_to(addr, &tls, false).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match timed_post(c, "/mutate?timeout=5s", body.clone(), PROBE_TIMEOUT).await {
                (_, Ok(a)) if a.status == 200 && a.echoes(&uid) => break,
                (_, r) => {
                    stats.warmup_error = Some(match r {
                        Ok(a) => format!("HTTP {}", a.status),
                        Err(e) => e,
                    });
                    conn = None;
                }
            }
        }
        if Instant::now() > warm_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = ready.send(());
    let started = Instant::now();
    while stats.n() < PROBE_MAX && started.elapsed() < Duration::from_secs(600) {
        if stop.load(Ordering::Relaxed) && stats.n() >= PROBE_MIN {
            break;
        }
        let t = Instant::now();
        if conn.is_none() {
            match tokio::time::timeout(PROBE_TIMEOUT, Conn::open_to(addr, &tls, false)).await {
                Ok(Ok(c)) => conn = Some(c),
                Ok(Err(e)) => {
                    stats.failed.push(format!("reconnect failed: {e}"));
                    tokio::time::sleep(PROBE_EVERY).await;
                    continue;
                }
                Err(_) => {
                    stats.failed.push("reconnect timed out".into());
                    continue;
                }
            }
        }
        let c = conn.as_mut().unwrap();
        let baseline = !attacking.load(Ordering::Relaxed);
        let (_, r) = timed_post(c, "/mutate?timeout=5s", body.clone(), PROBE_TIMEOUT).await;
        if baseline {
            match r {
                Ok(a) if a.status == 200 && a.echoes(&uid) => stats.baseline.push(t.elapsed()),
                _ => {
                    stats.baseline_failed += 1;
                    conn = None;
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
            continue;
        }
        match r {
            Ok(a) if a.status == 200 && a.echoes(&uid) => stats.ok.push(t.elapsed()),
            Ok(a) => {
                stats.failed.push(format!("HTTP {}", a.status));
                conn = None;
            }
            Err(e) => {
                stats.failed.push(e);
                conn = None;
            }
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    stats
}
