//! Leader election on a `coordination.k8s.io/v1` Lease, so that one replica of `stsguard serve`
//! writes PolicyReports: the replica holding the Lease renews it every third of its duration; the
//! others look every [`STANDBY_PERIOD`] (or that third, if shorter) and take it over once it has
//! not changed for a whole duration (judged on their own clock from when they saw it change, as
//! client-go does, so clock skew between nodes does not matter) or once it is released. The
//! holder releases it when it stops (a rolling restart): the holder is cleared, so another
//! replica takes over at its next look instead of waiting the duration out. Writes carry the
//! Lease's resourceVersion: of two replicas racing, one wins.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// The Lease's name, in the server's own namespace.
pub const NAME: &str = "stsguard-audit";

/// How often a replica that does not hold the Lease looks at it: how soon it takes over a
/// released Lease.
pub const STANDBY_PERIOD: Duration = Duration::from_secs(2);

/// Where and as whom to elect.
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub identity: String,
    pub duration: Duration,
}

/// This replica's identity: `POD_NAME` (the chart sets it), else the host name and process id.
pub fn identity() -> String {
    if let Ok(p) = std::env::var("POD_NAME") {
        if !p.is_empty() {
            return p;
        }
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!(
        "{}-{}",
        if host.is_empty() { "stsguard" } else { &host },
        std::process::id()
    )
}

/// The elector's state, shared with the audit task.
#[derive(Clone, Default)]
pub struct Leadership {
    leader: Arc<AtomicBool>,
    /// The first round is done (until then `is_leader` is false for want of an answer).
    decided: Arc<AtomicBool>,
}

impl Leadership {
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Waits until the first round is done, at most `limit`.
    pub async fn first_round(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.decided.load(Ordering::Acquire) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What this replica saw of the Lease last: its record and when it changed.
struct Observed {
    record: (Option<String>, Option<String>, Option<MicroTime>),
    at: Instant,
}

/// Runs the election until `stop` turns true (spawn it), then releases the Lease if this replica
/// holds it. `leadership` says whether this replica leads now.
pub async fn run(
    client: kube::Client,
    cfg: Config,
    leadership: Leadership,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let mut observed: Option<Observed> = None;
    let renew = (cfg.duration / 3).max(Duration::from_millis(500));
    let mut last_error: Option<String> = None;
    while !*stop.borrow() {
        let was = leadership.is_leader();
        let now_leader = match step(&api, &cfg, &mut observed).await {
            Ok(l) => {
                last_error = None;
                l
            }
            Err(e) => {
                let e = e.to_string();
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(lease = %format!("{}/{NAME}", cfg.namespace), error = %e, "audit lease: cannot read or write the Lease; not writing PolicyReports (the chart's Role grants get, create and update on leases in the release namespace)");
                }
                last_error = Some(e);
                false
            }
        };
        leadership.leader.store(now_leader, Ordering::Release);
        leadership.decided.store(true, Ordering::Release);
        if now_leader != was {
            if now_leader {
                tracing::info!(identity = %cfg.identity, lease = %format!("{}/{NAME}", cfg.namespace), "audit lease acquired: this replica writes the PolicyReports");
            } else {
                tracing::info!(identity = %cfg.identity, "audit lease lost: another replica writes the PolicyReports");
            }
        }
        let period = if now_leader {
            renew
        } else {
            renew.min(STANDBY_PERIOD)
        };
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => {}
        }
    }
    if leadership.leader.swap(false, Ordering::AcqRel) {
        match release(&api, &cfg).await {
            Ok(true) => {
                tracing::info!(identity = %cfg.identity, lease = %format!("{}/{NAME}", cfg.namespace), "audit lease released: another replica takes over at once")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, "audit lease: could not release it; another replica takes over once it expires")
            }
        }
    }
}

/// Gives the Lease up if this replica holds it: no holder, as client-go's release does, so the
/// next replica to look takes it. `Ok(false)`: it was not ours (any more).
async fn release(api: &Api<Lease>, cfg: &Config) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(NAME).await? else {
        return Ok(false);
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    lease.spec = Some(spec);
    match api.replace(NAME, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// One round: create, renew or take over the Lease. `Ok(true)`: this replica holds it.
async fn step(
    api: &Api<Lease>,
    cfg: &Config,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let seconds = i32::try_from(cfg.duration.as_secs().max(1)).unwrap_or(i32::MAX);
    let current = match api.get_opt(NAME).await? {
        Some(l) => l,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    namespace: Some(cfg.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(cfg.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
    };
    let spec = current.spec.clone().unwrap_or_default();
    let record = (
        spec.holder_identity.clone(),
        current.metadata.resource_version.clone(),
        spec.renew_time.clone(),
    );
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observed {
            record,
            at: Instant::now(),
        });
    }
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let mine = holder.as_deref() == Some(cfg.identity.as_str());
    let their_duration = Duration::from_secs(
        u64::try_from(spec.lease_duration_seconds.unwrap_or(seconds).max(1)).unwrap_or(1),
    );
    let expired = holder.is_none()
        || observed
            .as_ref()
            .is_some_and(|o| o.at.elapsed() >= their_duration);
    if !mine && !expired {
        return Ok(false);
    }
    let mut lease = current;
    let mut new_spec = spec.clone();
    new_spec.holder_identity = Some(cfg.identity.clone());
    new_spec.lease_duration_seconds = Some(seconds);
    new_spec.renew_time = Some(now());
    if !mine {
        new_spec.acquire_time = Some(now());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    lease.spec = Some(new_spec);
    // The resourceVersion read above: if another replica wrote in between, this fails (409).
    match api.replace(NAME, &PostParams::default(), &lease).await {
        Ok(l) => {
            let s = l.spec.unwrap_or_default();
            *observed = Some(Observed {
                record: (s.holder_identity, l.metadata.resource_version, s.renew_time),
                at: Instant::now(),
            });
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
