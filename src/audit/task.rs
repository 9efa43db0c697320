//! `stsguard serve`'s background audit: once the watch caches have synced, then every
//! `audit.interval` of the policy (read afresh each time: a reloaded policy applies at the next
//! run; `0s` pauses it), the StatefulSets of the cache are judged against the caches, one
//! namespace at a time: judge its StatefulSets, write its PolicyReports, drop both. No API
//! read; the work yields to reviews every few objects. Every replica records the gauges; the
//! replica holding the Lease also writes PolicyReports when `audit.policyReports` is on.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use super::lease::{self, Leadership};
use super::writer::Writer;
use crate::audit::metrics::AuditMetrics;
use crate::policy::Policy;
use crate::watch::WatchLookups;

/// How often a paused audit (`interval: 0s`) looks at the policy again.
const PAUSED_CHECK: Duration = Duration::from_secs(5);

/// Where the Lease lives and for how long it is held.
#[derive(Clone, Debug)]
pub struct Options {
    /// The server's own namespace (from `--lease-namespace`, `POD_NAMESPACE`, or the client's
    /// default namespace).
    pub lease_namespace: String,
    pub lease_duration: Duration,
}

/// Starts the background audit (inside a Tokio runtime). It ends when `stop` turns true, after
/// releasing the audit Lease if this replica holds it: await the handle (briefly) before exiting.
pub fn spawn(
    client: kube::Client,
    lookups: Arc<WatchLookups>,
    policy: Arc<ArcSwap<Policy>>,
    metrics: AuditMetrics,
    options: Options,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut election = None;
        let audit = run(
            client,
            lookups,
            policy,
            metrics,
            options,
            stop.clone(),
            &mut election,
        );
        let mut stopped = stop.clone();
        tokio::select! {
            _ = audit => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
        // The election sees `stop` too: it releases the Lease and ends.
        if let Some(e) = election {
            let _ = e.await;
        }
    })
}

async fn run(
    client: kube::Client,
    lookups: Arc<WatchLookups>,
    policy: Arc<ArcSwap<Policy>>,
    metrics: AuditMetrics,
    options: Options,
    stop: tokio::sync::watch::Receiver<bool>,
    election: &mut Option<tokio::task::JoinHandle<()>>,
) {
    while !lookups.synced() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut leadership: Option<Leadership> = None;
    let mut writer = Writer::new(client.clone());
    let mut was_leader = false;
    loop {
        let p = policy.load_full();
        if p.audit.interval.is_zero() {
            tokio::time::sleep(PAUSED_CHECK).await;
            continue;
        }
        if p.audit.policy_reports && leadership.is_none() {
            leadership = Some(elect(&client, &options, &stop, election).await);
        }
        let namespaces = match lookups.statefulset_namespaces() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "audit skipped");
                tokio::time::sleep(p.audit.interval).await;
                continue;
            }
        };
        // The replica holding the Lease writes, while PolicyReports are on.
        let electing = leadership.as_ref().filter(|_| p.audit.policy_reports);
        let writing = begin_writing(&mut writer, electing, &mut was_leader).await;
        let (totals, seconds) =
            audit_round(&lookups, &namespaces, &p, writing.then_some(&mut writer)).await;
        record(&metrics, &totals, seconds);
        if writing {
            finish_writing(&mut writer).await;
        }
        tokio::time::sleep(p.audit.interval).await;
    }
}

/// Starts the election of the replica that writes PolicyReports, and waits (at most 5 s) for its
/// first round.
async fn elect(
    client: &kube::Client,
    options: &Options,
    stop: &tokio::sync::watch::Receiver<bool>,
    election: &mut Option<tokio::task::JoinHandle<()>>,
) -> Leadership {
    let l = Leadership::default();
    let cfg = lease::Config {
        namespace: options.lease_namespace.clone(),
        identity: lease::identity(),
        duration: options.lease_duration,
    };
    tracing::info!(identity = %cfg.identity, lease = %format!("{}/{}", cfg.namespace, lease::NAME), "audit: PolicyReports on; electing the writer");
    *election = Some(tokio::spawn(lease::run(
        client.clone(),
        cfg,
        l.clone(),
        stop.clone(),
    )));
    l.first_round(Duration::from_secs(5)).await;
    l
}

/// Does this round write PolicyReports? Only the leader does; a new leader starts from what the
/// cluster holds (the writer is reset), and a writer that cannot begin retries next round.
async fn begin_writing(
    writer: &mut Writer,
    leadership: Option<&Leadership>,
    was_leader: &mut bool,
) -> bool {
    let Some(l) = leadership else {
        return false;
    };
    let leader = l.is_leader();
    if leader && !*was_leader {
        writer.reset();
    }
    *was_leader = leader;
    if !leader {
        return false;
    }
    match writer.begin().await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "PolicyReports not written; retrying at the next audit");
            writer.reset();
            false
        }
    }
}

/// One namespace at a time: judge its StatefulSets, write its reports (when `writer` is given),
/// drop both. Returns the totals and the seconds spent judging.
async fn audit_round(
    lookups: &WatchLookups,
    namespaces: &[String],
    p: &Policy,
    mut writer: Option<&mut Writer>,
) -> (super::Totals, f64) {
    let mut totals = super::Totals::default();
    let mut seconds = 0.0;
    for ns in namespaces {
        let started = Instant::now();
        let audit = match super::audit_namespace(lookups, ns, p).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(namespace = %ns, error = %e, "audit of the namespace skipped");
                continue;
            }
        };
        seconds += started.elapsed().as_secs_f64();
        totals.add(&audit);
        if let Some(w) = writer.as_deref_mut() {
            let results = audit.by_namespace().remove(ns.as_str()).unwrap_or_default();
            w.namespace(ns, &results).await;
        }
    }
    (totals, seconds)
}

/// The round's gauges and its log line.
fn record(metrics: &AuditMetrics, totals: &super::Totals, seconds: f64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    metrics.record_counts(&totals.violations, seconds, now);
    let violations: i64 = totals.violations.values().sum();
    tracing::info!(
        statefulsets = totals.objects,
        excluded = totals.excluded,
        violations,
        duration_ms = (seconds * 1000.0) as u64,
        "audit"
    );
}

/// Ends the round's writing: what is no longer found is deleted; the figures are logged.
async fn finish_writing(writer: &mut Writer) {
    let w = writer.finish().await;
    if w.applied > 0 || w.deleted > 0 {
        tracing::info!(
            applied = w.applied,
            unchanged = w.unchanged,
            deleted = w.deleted,
            failed = w.failed,
            "PolicyReports written"
        );
    }
}
