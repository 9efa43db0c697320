//! Reload on change: watches the *directories* of some files (a Kubernetes Secret or ConfigMap
//! volume swaps a `..data` symlink, so the file itself is never written) with notify, and checks
//! the files' contents periodically as a fallback. Calls `on_change` when the content of any
//! file differs from what was last seen.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

fn fingerprint(paths: &[PathBuf]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in paths {
        match std::fs::read(p) {
            Ok(bytes) => bytes.hash(&mut h),
            Err(e) => e.kind().to_string().hash(&mut h),
        }
    }
    h.finish()
}

fn watch_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Spawns the watcher; it runs until the runtime stops. `on_change` runs on a blocking thread.
pub fn spawn<F>(paths: Vec<PathBuf>, poll: Duration, on_change: F)
where
    F: Fn() + Send + Sync + 'static,
{
    let on_change = std::sync::Arc::new(on_change);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let mut dirs: Vec<PathBuf> = paths.iter().map(|p| watch_dir(p)).collect();
    dirs.sort();
    dirs.dedup();
    let watcher = {
        let tx = tx.clone();
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.try_send(());
            }
        })
    };
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
    tokio::spawn(async move {
        let _keep = watcher;
        let mut last = fingerprint(&paths);
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
            let now = fingerprint(&paths);
            if now != last {
                last = now;
                let f = on_change.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || f()).await {
                    tracing::error!(error = %e, "reload callback failed");
                }
            }
        }
    });
}
