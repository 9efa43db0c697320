//! The `stsguard` binary as a process: one builder for every test and benchmark that starts it.
//!
//! [`Launch`] holds the command line (the usual `serve` flags are methods, so they are written
//! once), [`Launch::spawn`] starts it with stderr collected, [`Proc::serving`] waits for the
//! `"message":"serving"` log line and reads the addresses from it, and dropping the [`Proc`]
//! kills the process.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::wait::{self, Not};

/// Reads every chunk of the server's stderr (besides the log kept by [`Proc`]).
pub type Tap = Box<dyn FnMut(&[u8]) + Send>;

/// How a `stsguard` process is started.
pub struct Launch {
    bin: PathBuf,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    tap: Option<Tap>,
    keep: usize,
}

impl Default for Launch {
    fn default() -> Self {
        Launch::new()
    }
}

impl Launch {
    /// This build's `stsguard`, logging at info, with no KUBECONFIG from the caller.
    pub fn new() -> Launch {
        Launch {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_stsguard")),
            args: Vec::new(),
            env: vec![
                ("RUST_LOG".into(), Some("info".into())),
                ("KUBECONFIG".into(), None),
            ],
            tap: None,
            keep: usize::MAX,
        }
    }

    /// `stsguard serve` on 127.0.0.1, both ports chosen by the system (read them with
    /// [`Proc::serving`]).
    pub fn serve() -> Launch {
        Launch::new().args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
    }

    /// `--dev --no-cluster --dev-ca-file CA`: a development certificate, its CA written to `ca`.
    pub fn dev(self, ca: &Path) -> Launch {
        self.args(["--dev", "--no-cluster", "--dev-ca-file"])
            .arg(ca)
    }

    /// `--tls-cert DIR/tls.crt --tls-key DIR/tls.key`.
    pub fn tls_in(self, dir: &Path) -> Launch {
        self.arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
    }

    /// `--no-cluster`.
    pub fn no_cluster(self) -> Launch {
        self.arg("--no-cluster")
    }

    /// Another binary (an older or a release stsguard).
    pub fn bin(mut self, bin: impl Into<PathBuf>) -> Launch {
        self.bin = bin.into();
        self
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Launch {
        self.args.push(a.into());
        self
    }

    pub fn args<A: Into<OsString>>(mut self, args: impl IntoIterator<Item = A>) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Launch {
        let k = k.into();
        self.env.retain(|(n, _)| *n != k);
        self.env.push((k, Some(v.into())));
        self
    }

    pub fn env_remove(mut self, k: impl Into<OsString>) -> Launch {
        let k = k.into();
        self.env.retain(|(n, _)| *n != k);
        self.env.push((k, None));
        self
    }

    /// The environment as the caller has it, minus a log filter (the server logs at info by
    /// default; the "serving" line is read from it): the server as a user starts it.
    pub fn user_environment(mut self) -> Launch {
        self.env.clear();
        self.env_remove("RUST_LOG")
    }

    /// Every chunk of stderr also goes to `tap`.
    pub fn tap(mut self, tap: impl FnMut(&[u8]) + Send + 'static) -> Launch {
        self.tap = Some(Box::new(tap));
        self
    }

    /// Keeps at most `bytes` of the log (a server under attack may write gigabytes).
    pub fn keep_log(mut self, bytes: usize) -> Launch {
        self.keep = bytes;
        self
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> String {
        std::iter::once(self.bin.as_os_str())
            .chain(self.args.iter().map(|a| a.as_os_str()))
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args).stdin(Stdio::null());
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd
    }

    /// Runs the process to its end (one that is expected to fail to start, say), output captured.
    pub fn output(self) -> std::process::Output {
        self.command()
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()))
    }

    /// Starts the process; `Err` says why it could not be run.
    pub fn try_spawn(self) -> Result<Proc, String> {
        let command_line = self.command_line();
        let mut child = self
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.bin.display()))?;
        let log = Arc::new(Mutex::new(Log::default()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let (sink, keep, mut tap) = (log.clone(), self.keep, self.tap);
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Some(t) = tap.as_mut() {
                    t(&buf[..n]);
                }
                let mut l = sink.lock().unwrap();
                if l.text.len() < keep {
                    let room = keep - l.text.len();
                    l.text
                        .push_str(&String::from_utf8_lossy(&buf[..n.min(room)]));
                }
            }
            sink.lock().unwrap().closed = true;
        });
        Ok(Proc {
            child,
            log,
            command_line,
        })
    }

    /// Starts the process (panics if it cannot be run).
    pub fn spawn(self) -> Proc {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"))
    }
}

#[derive(Default)]
struct Log {
    text: String,
    /// stderr is closed: the process is gone.
    closed: bool,
}

/// The addresses of the `"message":"serving"` log line.
#[derive(Clone, Copy, Debug)]
pub struct Serving {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
}

/// A running `stsguard` (see [`Launch`]); stderr is collected. Killed on drop.
pub struct Proc {
    pub child: Child,
    log: Arc<Mutex<Log>>,
    command_line: String,
}

impl Proc {
    /// `stsguard ARGS` as [`Launch::new`] starts it.
    pub fn spawn(args: &[&str]) -> Proc {
        Launch::new().args(args).spawn()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far (stderr: JSON lines).
    pub fn log(&self) -> String {
        self.log.lock().unwrap().text.clone()
    }

    /// The JSON log lines whose `message` is `msg`.
    pub fn log_lines(&self, msg: &str) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == msg)
            .collect()
    }

    /// Waits up to `secs` for the `"message":"serving"` line; `Err` if the process ends first
    /// or does not serve in time (with the end of its log).
    pub fn serving_within(&self, secs: u64) -> Result<Serving, String> {
        let what = format!("{} to log \"serving\"", self.command_line);
        wait::until_blocking(&what, secs, || {
            let (text, closed) = {
                let l = self.log.lock().unwrap();
                (l.text.clone(), l.closed)
            };
            let serving = text.lines().find_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).ok()?;
                (v["message"] == "serving").then_some(v)
            });
            if let Some(v) = serving {
                let parse = |f: &str| -> Result<SocketAddr, Not> {
                    v[f].as_str()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Not::Ever(format!("the serving line has no {f}: {v}")))
                };
                return Ok(Serving {
                    addr: parse("addr")?,
                    metrics_addr: parse("metrics_addr")?,
                });
            }
            let tail = tail(&text, 20);
            if closed {
                return Err(Not::Ever(format!(
                    "{} exited before serving:\n{tail}",
                    self.command_line
                )));
            }
            Err(Not::Yet(tail))
        })
    }

    /// The addresses once serving (30 s at most; panics otherwise).
    pub fn serving(&self) -> Serving {
        self.serving_within(30).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The webhook address, once serving.
    pub fn wait_serving(&self) -> SocketAddr {
        self.serving().addr
    }

    /// The metrics address, once serving.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.serving().metrics_addr
    }

    /// Waits up to 15 s for `text` in the log.
    pub async fn wait_log(&self, text: &str) {
        wait::eventually(&format!("{text:?} in the log"), 15, || async {
            let log = self.log();
            if log.contains(text) {
                Ok(())
            } else {
                Err(format!("the log:\n{log}"))
            }
        })
        .await
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal (`-TERM`, `-HUP`, …) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of `text`, each cut to 400 bytes.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| {
            if l.len() > 400 {
                let mut cut = 400;
                while !l.is_char_boundary(cut) {
                    cut -= 1;
                }
                format!("{}… ({} bytes)", &l[..cut], l.len())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
