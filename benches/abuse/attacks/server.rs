//! The server under attack: `stsguard serve --dev --no-cluster` started by the tests' process
//! builder (`tests/common/process.rs`), with its log's line lengths counted and a watchdog on its
//! RSS (peak read from `/proc`, killed past `Cfg::rss_kill`).

use super::*;

/// Line lengths of the server's log (every line, however much of the text is kept).
#[derive(Default)]
pub(crate) struct LogStats {
    /// Length and first bytes of the line being read.
    cur: usize,
    cur_head: Vec<u8>,
    longest: usize,
    longest_head: String,
    over: usize,
    lines: usize,
}

/// The log text kept (the line figures cover all of it).
pub(crate) const LOG_KEEP: usize = 16 * 1024 * 1024;

impl LogStats {
    fn feed(&mut self, chunk: &[u8]) {
        for part in chunk.split_inclusive(|b| *b == b'\n') {
            let ends = part.last() == Some(&b'\n');
            let line = &part[..part.len() - usize::from(ends)];
            if self.cur_head.len() < 400 {
                let room = 400 - self.cur_head.len();
                self.cur_head
                    .extend_from_slice(&line[..line.len().min(room)]);
            }
            self.cur += line.len();
            if ends {
                self.end_line();
            }
        }
    }

    fn end_line(&mut self) {
        self.lines += 1;
        if self.cur as f64 > bounds::LOG_LINE_BYTES {
            self.over += 1;
        }
        if self.cur > self.longest {
            self.longest = self.cur;
            self.longest_head = String::from_utf8_lossy(&self.cur_head).into_owned();
        }
        self.cur = 0;
        self.cur_head.clear();
    }
}

/// Peak-RSS watchdog state.
#[derive(Default)]
pub(crate) struct Watch {
    peak_kib: AtomicU64,
    killed: AtomicBool,
    gone: AtomicBool,
    stop: AtomicBool,
}

pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// `stsguard serve --dev --no-cluster` on 127.0.0.1 with the given extra flags.
pub struct Server {
    proc: Proc,
    pub pid: u32,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub ca_pem: String,
    pub tls_h1: Arc<rustls::ClientConfig>,
    pub tls_h2: Arc<rustls::ClientConfig>,
    stats: Arc<Mutex<LogStats>>,
    watch: Arc<Watch>,
    watchdog: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start(cfg: &Cfg, extra: &[String]) -> Result<Server, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let ca_file = dir.path().join("ca.pem");
        let stats = Arc::new(Mutex::new(LogStats::default()));
        let sink = stats.clone();
        // As a user starts it: the caller's environment, minus a log filter.
        let proc = Launch::serve()
            .bin(&cfg.bin)
            .user_environment()
            .dev(&ca_file)
            .args(extra)
            .keep_log(LOG_KEEP)
            .tap(move |chunk| sink.lock().unwrap().feed(chunk))
            .try_spawn()?;
        let pid = proc.pid();
        let watch = Arc::new(Watch::default());
        let w = watch.clone();
        let limit_kib = cfg.rss_kill / KIB;
        let watchdog = std::thread::spawn(move || {
            while !w.stop.load(Ordering::Relaxed) {
                match proc_status_kib(pid, "VmHWM:") {
                    Some(hwm) => {
                        w.peak_kib.fetch_max(hwm, Ordering::Relaxed);
                    }
                    None => {
                        w.gone.store(true, Ordering::Relaxed);
                        break;
                    }
                }
                if proc_status_kib(pid, "VmRSS:").is_some_and(|r| r > limit_kib)
                    && !w.killed.swap(true, Ordering::Relaxed)
                {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let mut srv = Server {
            proc,
            pid,
            addr: "127.0.0.1:1".parse().unwrap(),
            metrics: "127.0.0.1:1".parse().unwrap(),
            ca_pem: String::new(),
            tls_h1: tls::config("", &[]),
            tls_h2: tls::config("", &[]),
            stats,
            watch,
            watchdog: Some(watchdog),
            _dir: dir,
        };
        let serving = srv.proc.serving_within(60)?;
        srv.addr = serving.addr;
        srv.metrics = serving.metrics_addr;
        srv.ca_pem = std::fs::read_to_string(&ca_file)
            .map_err(|e| format!("read the dev CA {}: {e}", ca_file.display()))?;
        srv.tls_h1 = tls::config(&srv.ca_pem, &[b"http/1.1"]);
        srv.tls_h2 = tls::config(&srv.ca_pem, &[b"h2"]);
        Ok(srv)
    }

    /// Peak RSS so far in MiB, and whether the watchdog killed the server.
    pub fn peak_rss(&self) -> (f64, bool) {
        if let Some(h) = proc_status_kib(self.pid, "VmHWM:") {
            self.watch.peak_kib.fetch_max(h, Ordering::Relaxed);
        }
        (
            self.watch.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0,
            self.watch.killed.load(Ordering::Relaxed),
        )
    }

    pub fn alive(&mut self) -> bool {
        self.proc.alive()
    }

    /// The longest log line, how many are over the bound, its first bytes, and the line count.
    pub(crate) fn log_stats(&self) -> (usize, usize, String, usize) {
        let l = self.stats.lock().unwrap();
        (l.longest, l.over, l.longest_head.clone(), l.lines)
    }

    /// The last `n` log lines, leaving out the probe's reviews.
    pub fn log_tail(&self, n: usize) -> String {
        let uid = probe_review().1;
        let log = self.proc.log();
        let other: Vec<&str> = log.lines().filter(|l| !l.contains(&uid)).collect();
        tail(&other.join("\n"), n)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.watch.stop.store(true, Ordering::Relaxed);
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
    }
}
