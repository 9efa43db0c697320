//! The one cluster the scenario tests share: started by the first scenario that runs (etcd, the
//! control plane, stsguard and its webhooks: [`setup::setup`]), used by each scenario in its own
//! namespaces, and stopped when the test process exits (or earlier, when the `install` test
//! needs the machine for a control plane and a node of its own).

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crate::harness::{self, Cluster};
use crate::setup::{self, Ctx};

enum State {
    /// No cluster (none yet, or stopped for the `install` test).
    Down,
    Up {
        cluster: Cluster,
        ctx: Arc<Ctx>,
        /// Scenarios running on it now.
        users: usize,
    },
    /// It could not start, or its setup failed: every scenario reports the same.
    Failed(Failure),
}

#[derive(Clone)]
enum Failure {
    /// The cluster cannot start here (under `CI=true` a failure, else reported and passed over).
    Unavailable(String),
    /// The setup panicked: every scenario fails.
    Setup(String),
}

static STATE: Mutex<State> = Mutex::new(State::Down);
static IDLE: Condvar = Condvar::new();
/// A scenario failed: the cluster's logs are kept when it stops.
static FAILED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn state() -> MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The runtime of the shared cluster's clients (a kube client lives on the runtime it was made
/// on), with the signal hook: Ctrl-C or a TERM from CI stops the cluster and stsguard first.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.spawn(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            harness::say("e2e: signal: stopping the cluster and stsguard");
            harness::stop_everything();
            std::process::exit(130);
        });
        rt
    })
}

/// The cluster cannot start here although `K8S_BIN_DIR` asks for it: under CI, fail;
/// otherwise say why and pass.
pub fn unavailable(why: &str) {
    if harness::in_ci() {
        panic!("CI=true: K8S_BIN_DIR is set, so the end-to-end tests must run, but {why}");
    }
    harness::say(format!("e2e: DID NOT RUN (not under CI=true): {why}"));
}

/// Runs scenario `name` on the shared cluster (starting it if none runs), then the checks that
/// hold after any scenario ([`setup::final_checks`]). Without `K8S_BIN_DIR` it says loudly that
/// it did not run and passes.
pub fn scenario<F, Fut>(name: &str, run: F)
where
    F: FnOnce(Arc<Ctx>) -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    if let Err(why) = harness::k8s_bin_dir() {
        harness::say(format!(
            "e2e: DID NOT RUN: no Kubernetes binaries here: {why}. Scenario `{name}` against a \
             real API server was skipped; every test without a cluster ran."
        ));
        return;
    }
    let missing = harness::missing_prerequisites();
    if !missing.is_empty() {
        return unavailable(&format!("the cluster cannot start: {}", missing.join("; ")));
    }
    let ctx = match acquire() {
        Ok(ctx) => ctx,
        Err(Failure::Unavailable(why)) => return unavailable(&why),
        Err(Failure::Setup(why)) => panic!("e2e {name}: the shared cluster's setup failed: {why}"),
    };
    let rt = runtime();
    let t = Instant::now();
    let outcome = rt.block_on(rt.spawn(run(ctx.clone())));
    let checks = outcome.is_ok().then(|| {
        let ctx = ctx.clone();
        rt.block_on(rt.spawn(async move { setup::final_checks(&ctx).await }))
    });
    release();
    let failed = match (outcome, checks) {
        (Ok(summary), Some(Ok(()))) => {
            harness::say(format!(
                "e2e {name}: PASSED in {:.1} s: {summary}",
                t.elapsed().as_secs_f64()
            ));
            return;
        }
        (Err(e), _) | (_, Some(Err(e))) => e,
        (Ok(_), None) => unreachable!("the checks run after a scenario that passed"),
    };
    FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
    harness::say(format!(
        "e2e {name}: FAILED; stsguard's log (end):\n{}",
        harness::tail(&ctx.stsguard.log(), 40)
    ));
    match failed.try_into_panic() {
        Ok(p) => std::panic::resume_unwind(p),
        Err(e) => panic!("e2e {name}: {e}"),
    }
}

/// The shared cluster's context, starting the cluster if none runs.
fn acquire() -> Result<Arc<Ctx>, Failure> {
    let mut s = state();
    if let State::Up { ctx, users, .. } = &mut *s {
        *users += 1;
        return Ok(ctx.clone());
    }
    if let State::Failed(f) = &*s {
        return Err(f.clone());
    }
    // Down: start it, holding the lock (other scenarios wait for it, not start their own).
    let bins = harness::k8s_bin_dir().unwrap_or_default();
    stsguard::install_crypto_provider();
    let rt = runtime();
    let cluster = match Cluster::start() {
        Ok(c) => c,
        Err(why) => {
            *s = State::Failed(Failure::Unavailable(why.clone()));
            return Err(Failure::Unavailable(why));
        }
    };
    harness::say(format!(
        "e2e: Kubernetes v{} control plane from {} up in {:.1} s ({})",
        harness::K8S_VERSION,
        bins.display(),
        cluster.started_in.as_secs_f64(),
        cluster.dir.display()
    ));
    register_stop_at_exit();
    let (kubeconfig, dir) = (cluster.kubeconfig.clone(), cluster.dir.clone());
    let setup = rt.block_on(rt.spawn(async move { setup::setup(&kubeconfig, &dir).await }));
    match setup {
        Ok(ctx) => {
            *s = State::Up {
                cluster,
                ctx: ctx.clone(),
                users: 1,
            };
            Ok(ctx)
        }
        Err(e) => {
            let why = panic_text(e);
            FAILED.store(true, std::sync::atomic::Ordering::Relaxed);
            cluster.finish(true);
            *s = State::Failed(Failure::Setup(why.clone()));
            Err(Failure::Setup(why))
        }
    }
}

fn release() {
    let mut s = state();
    if let State::Up { users, .. } = &mut *s {
        *users -= 1;
    }
    IDLE.notify_all();
}

fn panic_text(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(p) => p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into()),
        Err(e) => e.to_string(),
    }
}

/// Stops the shared cluster once no scenario uses it, and holds it down while the returned
/// guard lives (the `install` test's own control plane and node would not fit beside it on a
/// small machine). A scenario that comes later starts it again.
pub fn without_the_shared_cluster() -> Alone {
    let mut s = state();
    while matches!(&*s, State::Up { users, .. } if *users > 0) {
        s = IDLE.wait(s).unwrap_or_else(|e| e.into_inner());
    }
    if let Err(e) = stop(&mut s) {
        panic!("e2e: stopping the shared cluster: {e}");
    }
    Alone(s)
}

/// The shared cluster held down (see [`without_the_shared_cluster`]).
pub struct Alone(#[allow(dead_code)] MutexGuard<'static, State>);

/// Stops the cluster (and stsguard) and checks that nothing of it is left running.
fn stop(s: &mut State) -> Result<(), String> {
    let State::Up { cluster, ctx, .. } = std::mem::replace(s, State::Down) else {
        return Ok(());
    };
    // stsguard first (the context's processes), then the control plane.
    let pid = ctx.stsguard.pid();
    drop(ctx);
    harness::kill_stsguard(pid);
    let left = cluster.stop();
    let dir = cluster.dir.clone();
    cluster.finish(FAILED.load(std::sync::atomic::Ordering::Relaxed));
    let survivors = harness::processes_mentioning(&dir);
    if !left.is_empty() {
        return Err(format!("still running after cluster.sh stop: {left:?}"));
    }
    if !survivors.is_empty() {
        return Err(format!(
            "processes of the cluster in {} left behind: {survivors:?}",
            dir.display()
        ));
    }
    harness::say("e2e: cluster stopped, no etcd/apiserver process left");
    Ok(())
}

/// At exit (the test harness is done): stop the shared cluster. Something of it left running
/// fails the run (exit status 1), as the test that started it would have.
fn register_stop_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    extern "C" fn at_exit() {
        let mut s = state();
        if let Err(e) = stop(&mut s) {
            harness::say(format!("e2e: FAILED at exit: {e}"));
            // SAFETY: _exit ends the process at once; nothing runs after it.
            unsafe { libc::_exit(1) };
        }
    }
    ONCE.call_once(|| {
        // SAFETY: registers a plain function with no arguments.
        unsafe { libc::atexit(at_exit) };
    });
}
