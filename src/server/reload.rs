//! Reloads that never make things worse (docs/reload.md).
//!
//! The certificate and the policy are watched the same way: notify watches the files'
//! *directories* (a Kubernetes Secret or ConfigMap volume swaps a `..data` symlink, so the file
//! itself is never written), and a periodic check backs it up. Every read runs on a blocking
//! thread, opens regular files only ([`read_file`](crate::files::read_file)) and waits until the files stop changing
//! ([`read_settled`]). New contents go through an `apply` function that loads them or refuses
//! them; a refusal keeps what is in force, is logged at error level and counted in
//! `stsguard_reloads_total{what,result="error"}`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};

use crate::bounds::{MAX_MOUNTED_FILE, SETTLE_PAUSE_MS, SETTLE_TRIES};
use crate::files::read_file;
use crate::policy::Policy;
use crate::server::metrics::Metrics;
use crate::server::tls::{self, Loaded, SwappableCert};

/// Reads `paths` ([`read_file`], capped at [`MAX_MOUNTED_FILE`]) until two consecutive reads
/// `pause` apart agree, `tries` reads at most: a file caught half-way through a write is not
/// returned. Blocking: call it on a blocking thread.
pub fn read_settled_with(
    paths: &[PathBuf],
    pause: Duration,
    tries: u32,
) -> Result<Vec<Vec<u8>>, String> {
    let mut last = read_all(paths)?;
    for _ in 1..tries.max(2) {
        std::thread::sleep(pause);
        let now = read_all(paths)?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Err(format!(
        "{} kept changing over {} reads {} ms apart: is it still being written? Write it elsewhere \
         and rename it into place (a Kubernetes volume does so); the next change is read again",
        names(paths),
        tries.max(2),
        pause.as_millis()
    ))
}

/// Reads `paths` once ([`read_file`], capped at [`MAX_MOUNTED_FILE`]).
fn read_all(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    paths
        .iter()
        .map(|p| read_file(p, MAX_MOUNTED_FILE).map_err(|e| format!("{}: {e}", p.display())))
        .collect()
}

/// [`read_settled_with`] with the pause and tries of [`crate::bounds`].
pub fn read_settled(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, String> {
    read_settled_with(paths, Duration::from_millis(SETTLE_PAUSE_MS), SETTLE_TRIES)
}

/// A read taking longer than this is logged: a file system that hangs (a network volume) stalls
/// the reloads, never the webhook, and the log says so. Far above a settled read's 2 s at most.
const SLOW_READ: Duration = Duration::from_secs(10);

/// Runs `f` on a blocking thread and waits for it; a warning naming `files` if it takes over
/// `slow`.
async fn off_runtime<T: Send + 'static>(
    files: String,
    slow: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let mut job = tokio::task::spawn_blocking(f);
    let got = match tokio::time::timeout(slow, &mut job).await {
        Ok(got) => got,
        Err(_) => {
            tracing::warn!(files = %files, after_s = slow.as_secs(), "reading the files is taking long (a hung file system?); reloads wait for it, the webhook does not");
            job.await
        }
    };
    got.map_err(|e| format!("the file read stopped: {e}"))
}

/// [`read_settled`] on a blocking thread.
pub async fn read_settled_off_runtime(paths: Vec<PathBuf>) -> Result<Vec<Vec<u8>>, String> {
    off_runtime(names(&paths), SLOW_READ, move || read_settled(&paths))
        .await
        .and_then(|r| r)
}

fn names(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn fingerprint<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

fn watch_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// One check of the watched files, decided on a blocking thread.
enum Reread {
    /// The contents in force: nothing to do.
    Same,
    /// New contents, loaded; a line for the log.
    Loaded(u64, String),
    /// Not loaded (unreadable, still changing, or refused by `apply`): why, and a key that is the
    /// same for the same refusal, so that it is logged and counted once.
    Refused(u64, String),
}

/// Loads new contents of the files, in `paths` order, or says why not.
pub type Apply = dyn Fn(&[Vec<u8>]) -> Result<String, String> + Send + Sync;

/// Watches `paths` and hands changed contents to `apply`. `loaded` is what is in force now (read
/// at start). A refusal is logged and counted once (per distinct files and reason) and retried
/// quietly at every check: a certificate that is not valid yet is loaded once it is. Runs until
/// the runtime stops. `what` is the metric's label, `noun` what the log calls it.
pub fn spawn(
    what: &'static str,
    noun: &'static str,
    paths: Vec<PathBuf>,
    poll: Duration,
    loaded: &[Vec<u8>],
    metrics: Arc<Metrics>,
    apply: Arc<Apply>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let mut dirs: Vec<PathBuf> = paths.iter().map(|p| watch_dir(p)).collect();
    dirs.sort();
    dirs.dedup();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.try_send(());
        }
    });
    let watcher = match watcher {
        Ok(mut w) => {
            for d in &dirs {
                if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory; relying on the periodic check");
                }
            }
            Some(w)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no file watcher; relying on the periodic check");
            None
        }
    };
    let mut in_force = fingerprint(loaded);
    tokio::spawn(async move {
        let _keep = watcher;
        let mut reported: Option<u64> = None;
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the files were just read
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                got = rx.recv() => {
                    if got.is_none() { return; }
                    // Let a burst of events (a symlink swap is several) settle.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    while rx.try_recv().is_ok() {}
                }
            }
            let (paths2, apply) = (paths.clone(), apply.clone());
            let outcome = off_runtime(names(&paths), SLOW_READ, move || {
                // The files in force, read once: no need to wait for them to settle.
                if read_all(&paths2).is_ok_and(|c| fingerprint(&c) == in_force) {
                    return Reread::Same;
                }
                match read_settled(&paths2) {
                    Err(why) => Reread::Refused(fingerprint(&why), why),
                    Ok(c) if fingerprint(&c) == in_force => Reread::Same,
                    Ok(c) => match apply(&c) {
                        Ok(line) => Reread::Loaded(fingerprint(&c), line),
                        Err(why) => Reread::Refused(fingerprint(&(&c, &why)), why),
                    },
                }
            })
            .await
            .unwrap_or_else(|e| Reread::Refused(0, e));
            match outcome {
                Reread::Same => reported = None,
                Reread::Loaded(fp, line) => {
                    in_force = fp;
                    reported = None;
                    tracing::info!(what, files = %names(&paths), detail = %line, "{noun} reloaded");
                    metrics.reload(what, true);
                }
                Reread::Refused(key, why) => {
                    if reported != Some(key) {
                        reported = Some(key);
                        tracing::error!(what, files = %names(&paths), error = %why, "new {noun} refused; keeping the old one");
                        metrics.reload(what, false);
                    }
                }
            }
        }
    });
}

/// Why `l` is not to be served now, if it is outside its validity.
fn validity(l: &Loaded) -> Result<(), String> {
    let now = jiff::Timestamp::now().as_second();
    match l.key.cert.first() {
        Some(c) => crate::certs::check_validity(c.as_ref(), now),
        None => Err("the certificate PEM holds no certificate".into()),
    }
}

/// The serving certificate at start, read like a reload (off the runtime, regular files, settled).
/// A certificate outside its validity is still served, with an error logged: the API server
/// refuses it either way, and a running server reloads the good one once it is written
/// (docs/reload.md). Returns the files' contents for [`watch_certificate`].
pub async fn initial_certificate(
    cert: PathBuf,
    key: PathBuf,
) -> anyhow::Result<(Loaded, Vec<Vec<u8>>)> {
    let files = read_settled_off_runtime(vec![cert.clone(), key.clone()])
        .await
        .map_err(|e| anyhow::anyhow!("the serving certificate: {e}"))?;
    let l = tls::load_pem(&files[0], &files[1]).map_err(|e| {
        anyhow::anyhow!(
            "the serving certificate {} with key {}: {e}",
            cert.display(),
            key.display()
        )
    })?;
    if let Err(why) = validity(&l) {
        tracing::error!(files = %names(&[cert, key]), error = %why, "the serving certificate is not valid now: the API server will refuse it; serving it until a valid one is written");
    }
    Ok((l, files))
}

/// Reloads the serving certificate when its files change; refuses a pair whose key does not
/// match or whose certificate is outside its validity.
pub fn watch_certificate(
    cert: PathBuf,
    key: PathBuf,
    poll: Duration,
    loaded: &[Vec<u8>],
    certs: Arc<SwappableCert>,
    metrics: Arc<Metrics>,
) {
    let m = metrics.clone();
    let apply = move |files: &[Vec<u8>]| -> Result<String, String> {
        let (c, k) = match files {
            [c, k] => (c, k),
            _ => return Err("expected a certificate and a key".into()),
        };
        let l = tls::load_pem(c, k).map_err(|e| e.to_string())?;
        validity(&l)?;
        let line = format!("serial {}, notAfter {}", l.serial, l.not_after);
        m.cert_expiry.set(l.not_after);
        certs.store(l);
        Ok(line)
    };
    spawn(
        "certificate",
        "serving certificate",
        vec![cert, key],
        poll,
        loaded,
        metrics,
        Arc::new(apply),
    );
}

/// The policy at start: the file's (read like a reload), else the built-in defaults. Returns the
/// file's contents for [`watch_policy`].
pub async fn initial_policy(path: Option<PathBuf>) -> anyhow::Result<(Policy, Vec<Vec<u8>>)> {
    let Some(path) = path else {
        return Ok((Policy::default(), Vec::new()));
    };
    let files = read_settled_off_runtime(vec![path.clone()])
        .await
        .map_err(|e| anyhow::anyhow!("the policy file: {e}"))?;
    let origin = path.display().to_string();
    let policy = Policy::from_file_bytes(&files[0], &origin)?;
    Ok((policy, files))
}

/// Reloads the policy when its file changes; an empty, unreadable or invalid file keeps the
/// policy in force.
pub fn watch_policy(
    path: PathBuf,
    poll: Duration,
    loaded: &[Vec<u8>],
    policy: Arc<ArcSwap<Policy>>,
    metrics: Arc<Metrics>,
) {
    let origin = path.display().to_string();
    let apply = move |files: &[Vec<u8>]| -> Result<String, String> {
        let text = files.first().ok_or("no policy file read")?;
        let p = Policy::from_file_bytes(text, &origin).map_err(|e| e.to_string())?;
        policy.store(Arc::new(p));
        Ok(format!("{} bytes", text.len()))
    };
    spawn(
        "policy",
        "policy",
        vec![path],
        poll,
        loaded,
        metrics,
        Arc::new(apply),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_read_is_waited_for_not_dropped() {
        let got = off_runtime("f".into(), Duration::from_millis(10), || {
            std::thread::sleep(Duration::from_millis(100));
            7
        })
        .await;
        assert_eq!(got, Ok(7));
    }

    #[test]
    fn a_file_over_the_cap_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("policy.yaml");
        std::fs::write(&p, vec![b'#'; 11])?;
        let e = read_file(&p, 10).unwrap_err().to_string();
        assert!(e.contains("over 10 bytes"), "{e}");
        assert_eq!(read_file(&p, 11)?.len(), 11);
        Ok(())
    }

    #[test]
    fn a_file_still_being_written_is_not_returned() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("policy.yaml");
        std::fs::write(&p, "onError: deny\n")?;
        let pause = Duration::from_millis(100);
        assert_eq!(
            read_settled_with(std::slice::from_ref(&p), pause, 5)?,
            vec![b"onError: deny\n".to_vec()]
        );
        // A writer appending more often than the reads' pause: no two reads agree.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::OpenOptions::new().append(true).open(&p)?;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    f.write_all(b"#")?;
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::io::Result::Ok(())
            })
        };
        let got = read_settled_with(std::slice::from_ref(&p), pause, 5);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().map_err(|_| "writer panicked")??;
        let e = got.unwrap_err();
        assert!(e.contains("kept changing over 5 reads"), "{e}");
        Ok(())
    }
}
