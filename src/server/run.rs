//! `stsguard serve`: the listeners, the watch caches, reloads, the background audit and the
//! graceful stop, wired together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::policy::Policy;
use crate::server::metrics::Metrics;
use crate::server::tls::{self, SwappableCert};
use crate::server::{self, AppState, Readiness, Timeouts};
use crate::validate::{Lookups, NoLookups};
use crate::watch::WatchLookups;

pub fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<Policy> {
    match path {
        Some(p) => Ok(Policy::load(p)?),
        None => Ok(Policy::default()),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Policy file (YAML); built-in defaults without it. Reloaded when it changes.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Serving certificate (PEM). Reloaded when it changes.
    #[arg(long, requires = "tls_key", conflicts_with = "dev")]
    pub tls_cert: Option<PathBuf>,
    /// Serving key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert", conflicts_with = "dev")]
    pub tls_key: Option<PathBuf>,
    /// Development mode: generate a CA and a certificate for 127.0.0.1/localhost in memory.
    #[arg(long)]
    pub dev: bool,
    /// Where `--dev` writes its CA certificate.
    #[arg(long, default_value = "stsguard-dev-ca.pem")]
    pub dev_ca_file: PathBuf,
    /// HTTPS address of the webhook.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,
    /// Plain-HTTP address of /metrics, /healthz, /readyz.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// No Kubernetes API look-ups (automatic with --dev when no cluster config is found).
    #[arg(long)]
    pub no_cluster: bool,
    /// How often to re-read certificate and policy files besides the file watch (seconds).
    #[arg(long, default_value_t = 10)]
    pub reload_interval: u64,
    /// TLS handshake, HTTP header-read and first-request (HTTP/2 preface) timeout, on both
    /// ports (seconds).
    #[arg(long, default_value_t = 5)]
    pub io_timeout: u64,
    /// A connection with no request in flight for this long is closed (seconds).
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// Time budget of one review, from its first byte to its answer (seconds). Keep it below the
    /// webhooks' timeoutSeconds (the chart's default is 5): past it the review is answered per
    /// the policy's onError while the API server still waits.
    #[arg(long, default_value_t = 4)]
    pub request_timeout: u64,
    /// Open connections at most, per port (a quarter of them from one client address); at it a
    /// new connection closes the quietest open one, or is closed at once when none is quiet.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// Budget of request bytes in flight (bodies being read and reviews being evaluated), MiB.
    /// Past it a request waits up to a second, then gets 503.
    #[arg(long, default_value_t = 32)]
    pub max_inflight_mib: usize,
    /// Reviews evaluated at once (default: the number of CPUs).
    #[arg(long)]
    pub review_workers: Option<usize>,
    /// On SIGTERM, wait this long (not ready, still serving) before closing the listener (seconds).
    #[arg(long, default_value_t = 0)]
    pub shutdown_delay: u64,
    /// Then let in-flight requests finish for at most this long (seconds).
    #[arg(long, default_value_t = 20)]
    pub drain_timeout: u64,
    /// Namespace of the Lease that elects the one replica writing PolicyReports (default:
    /// POD_NAMESPACE, else the namespace of the kubeconfig context or the in-cluster one).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long the audit Lease holds without renewal before another replica takes over (seconds).
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
}

/// `stsguard serve`: reads the certificate and policy, starts the look-ups and the cluster tasks,
/// serves metrics and the webhook until the shutdown signal, then stops in order.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    // Read while the certificate is: each read waits for its files to settle.
    let policy_read = tokio::spawn(crate::server::reload::initial_policy(args.config.clone()));
    let metrics = Arc::new(Metrics::new());
    let (loaded, cert_read) = serving_certificate(&args).await?;
    metrics.cert_expiry.set(loaded.not_after);
    let (policy, policy_read) = policy_read.await??;
    let certs = SwappableCert::new(loaded);
    let interval = Duration::from_secs(args.reload_interval.max(1));
    if let (Some(c), Some(k)) = (args.tls_cert.clone(), args.tls_key.clone()) {
        let (certs, metrics) = (certs.clone(), metrics.clone());
        crate::server::reload::watch_certificate(c, k, interval, &cert_read, certs, metrics);
    }

    let mut readiness = Readiness::default();
    let (lookups, cluster) = look_ups(&args, &mut readiness).await?;
    let state = AppState::with(policy, lookups, metrics.clone(), limits(&args));
    // Turned true at the shutdown signal: the background audit stops and releases its Lease.
    let (audit_stop, audit_stop_rx) = tokio::sync::watch::channel(false);
    let audit_task = cluster.map(|(client, watch)| {
        spawn_cluster_tasks(&args, client, watch, &state, &metrics, audit_stop_rx)
    });
    if let Some(path) = args.config.clone() {
        let (policy, metrics) = (state.policy.clone(), metrics.clone());
        crate::server::reload::watch_policy(path, interval, &policy_read, policy, metrics);
    }
    let readiness = Arc::new(readiness);
    let timeouts = timeouts(&args, &metrics);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (metrics_local, metrics_task) =
        serve_metrics(&args, &metrics, &readiness, &timeouts, stop_rx).await?;

    let tls_config = Arc::new(tls::server_config(certs)?);
    let listener = server::bind(args.addr, "webhook").await?;
    let local = listener.local_addr()?;
    readiness
        .tls_bound
        .store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(addr = %local, metrics_addr = %metrics_local, startup_ms = started.elapsed().as_millis() as u64, "serving");

    let app = server::router(state, Duration::from_secs(args.request_timeout.max(1)));
    let shutdown = shutdown(
        readiness.clone(),
        Duration::from_secs(args.shutdown_delay),
        audit_stop,
    );
    server::serve_tls(listener, tls_config, app, timeouts, shutdown).await;
    if let Some(t) = audit_task {
        // The Lease's release is one API call: a bounded wait.
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), metrics_task).await;
    tracing::info!("stopped");
    Ok(())
}

/// The serving certificate: generated with its CA written out (`--dev`), or read from
/// `--tls-cert` and `--tls-key` (with the bytes read, which the reload compares against).
async fn serving_certificate(args: &ServeArgs) -> anyhow::Result<(tls::Loaded, Vec<Vec<u8>>)> {
    if args.dev {
        let b = crate::certs::generate(
            "localhost",
            &["127.0.0.1".into(), "localhost".into(), "::1".into()],
            30,
        )?;
        crate::certs::write_file(&args.dev_ca_file, &b.ca_pem, false).map_err(|e| {
            anyhow::anyhow!(
                "cannot write the dev CA to {}: {e}",
                args.dev_ca_file.display()
            )
        })?;
        let ca = std::fs::canonicalize(&args.dev_ca_file).unwrap_or(args.dev_ca_file.clone());
        tracing::info!(ca_file = %ca.display(), "dev mode: generated a CA and a serving certificate for 127.0.0.1 and localhost");
        return Ok((
            tls::load_pem(b.cert_pem.as_bytes(), b.key_pem.as_bytes())?,
            Vec::new(),
        ));
    }
    match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            crate::server::reload::initial_certificate(c.clone(), k.clone()).await
        }
        _ => anyhow::bail!(
            "give --tls-cert and --tls-key, or --dev for a generated development certificate"
        ),
    }
}

/// What the rules look up: nothing without a cluster, else the watch caches (readiness waits
/// for them to sync), returned with the client for the cluster tasks.
async fn look_ups(
    args: &ServeArgs,
    readiness: &mut Readiness,
) -> anyhow::Result<(Arc<dyn Lookups>, Option<(kube::Client, Arc<WatchLookups>)>)> {
    let no_cluster = args.no_cluster || (args.dev && kube::Config::infer().await.is_err());
    if no_cluster {
        tracing::info!("no cluster: look-up rules answer \"not checked\" and never deny");
        return Ok((
            Arc::new(NoLookups("no cluster (--no-cluster)".into())),
            None,
        ));
    }
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("no Kubernetes configuration ({e}); run in a cluster, set KUBECONFIG, or pass --no-cluster")
    })?;
    let w = WatchLookups::start(client.clone());
    let synced = w.clone();
    readiness.caches = Some(Box::new(move || synced.synced()));
    Ok((w.clone(), Some((client, w))))
}

/// The byte budget and the review workers from the flags.
fn limits(args: &ServeArgs) -> server::Limits {
    let mut limits = server::Limits {
        inflight_bytes: args.max_inflight_mib.max(8) * 1024 * 1024,
        ..Default::default()
    };
    if let Some(w) = args.review_workers {
        limits.workers = w.max(1);
    }
    limits
}

/// The webhook listener's connection timeouts and caps from the flags.
fn timeouts(args: &ServeArgs, metrics: &Metrics) -> Timeouts {
    Timeouts {
        handshake: Duration::from_secs(args.io_timeout.max(1)),
        header_read: Duration::from_secs(args.io_timeout.max(1)),
        idle: Duration::from_secs(args.idle_timeout.max(1)),
        // A review's answer is ready within its budget; a client that then takes nothing of it
        // for another I/O timeout has stopped reading.
        stall: Duration::from_secs(args.request_timeout.max(1) + args.io_timeout.max(1)),
        drain: Duration::from_secs(args.drain_timeout),
        max_connections: args.max_connections.max(1),
        rejected: Some(
            metrics
                .rejected
                .get_or_create(&crate::server::metrics::RejectLabels {
                    bound: "connections",
                })
                .clone(),
        ),
        reclaimed: Some(metrics.reclaimed.clone()),
        ..Default::default()
    }
}

/// With a cluster: the pod role-label repair watch and the background audit (its handle, to let
/// it release its Lease at shutdown).
fn spawn_cluster_tasks(
    args: &ServeArgs,
    client: kube::Client,
    watch: Arc<WatchLookups>,
    state: &AppState,
    metrics: &Metrics,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let options = crate::audit::task::Options {
        lease_namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string()),
        lease_duration: Duration::from_secs(args.lease_duration.max(1)),
    };
    crate::repair::spawn(
        client.clone(),
        state.policy.clone(),
        metrics.pod_role_repairs.clone(),
    );
    crate::audit::task::spawn(
        client,
        watch,
        state.policy.clone(),
        metrics.audit.clone(),
        options,
        stop,
    )
}

/// The metrics and probes listener, plain HTTP, until `stop`: its address and its task.
async fn serve_metrics(
    args: &ServeArgs,
    metrics: &Arc<Metrics>,
    readiness: &Arc<Readiness>,
    timeouts: &Timeouts,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = server::bind(args.metrics_addr, "metrics").await?;
    let local = listener.local_addr()?;
    let app = server::metrics_router(metrics.clone(), readiness.clone());
    // Prometheus holds one or two connections; the kubelet's probes open a new one each time
    // (and, at the cap, close the quietest other one).
    let timeouts = Timeouts {
        max_connections: 64,
        max_per_client: 16,
        ..timeouts.clone()
    };
    let mut stop = stop;
    let task = tokio::spawn(server::serve_plain(listener, app, timeouts, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    Ok((local, task))
}

/// Waits for the shutdown signal, then: not ready any more, the audit told to stop (the other
/// replica takes the Lease over now, not once it expires), and `delay` before the listener closes.
async fn shutdown(
    readiness: Arc<Readiness>,
    delay: Duration,
    audit_stop: tokio::sync::watch::Sender<bool>,
) {
    shutdown_signal().await;
    readiness
        .shutting_down
        .store(true, std::sync::atomic::Ordering::Release);
    let _ = audit_stop.send(true);
    tracing::info!(
        delay_s = delay.as_secs(),
        "shutdown signal: not ready any more"
    );
    tokio::time::sleep(delay).await;
}
