//! The shared budgets of the reviews in flight: bytes (counted as they arrive, then the review's
//! charge) and evaluation slots.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::timeout_at;

use crate::bounds::MAX_BODY;

/// Bounds on the work and memory of the reviews in flight together.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The budget of request bytes in flight: bodies being read plus reviews being evaluated,
    /// each counted before its body is read (from Content-Length) at [`Limits::COST_FACTOR`]
    /// times its size.
    pub inflight_bytes: usize,
    /// Reviews evaluated at once, on the blocking pool (never on the I/O workers).
    pub workers: usize,
    /// How long a request waits for the byte budget before it is turned away with 503.
    pub wait: Duration,
}

impl Limits {
    /// A review's memory is its body, the typed objects read from it (strings and maps: about
    /// the body's size again; structs: bounded by [`crate::bounds::MAX_OBJECTS`]), the mutated
    /// copy and the answer. Four times the body covers it; 64 KiB covers the small fixed part.
    pub const COST_FACTOR: usize = 4;
    pub const COST_BASE: usize = 64 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            inflight_bytes: 32 * 1024 * 1024,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            wait: Duration::from_secs(1),
        }
    }
}

/// Bodies up to this are evaluated where they arrive; larger ones on the blocking pool, under the
/// time budget. Real reviews are 5–50 KiB; the bounds keep the work of 64 KiB well under 1 ms.
pub const INLINE_BODY: usize = 64 * 1024;

/// Bodies over this are "large": they draw on their own share of the byte budget and may not take
/// the last evaluation slot, so a stream of large (hostile) bodies never queues ahead of ordinary
/// reviews (real reviews are 5–50 KiB).
pub const LARGE_BODY: usize = 256 * 1024;

/// The shared budgets: bytes in flight (in KiB permits, a quarter for ordinary bodies and the
/// rest for large ones) and evaluation slots (one of them never taken by a large review).
pub struct Gate {
    pub(crate) limits: Limits,
    small_kib: Arc<Semaphore>,
    large_kib: Arc<Semaphore>,
    small_total: u32,
    large_total: u32,
    workers: Arc<Semaphore>,
    large_workers: Arc<Semaphore>,
}

pub(crate) type Permit = tokio::sync::OwnedSemaphorePermit;

impl Gate {
    pub fn new(limits: Limits) -> Self {
        let total = (limits.inflight_bytes / 1024).clamp(64, u32::MAX as usize / 2) as u32;
        let small_total = (total / 4).max(1);
        let large_total = (total - small_total).max(1);
        let workers = limits.workers.max(1);
        Gate {
            small_kib: Arc::new(Semaphore::new(small_total as usize)),
            large_kib: Arc::new(Semaphore::new(large_total as usize)),
            small_total,
            large_total,
            workers: Arc::new(Semaphore::new(workers)),
            large_workers: Arc::new(Semaphore::new(workers.saturating_sub(1).max(1))),
            limits,
        }
    }

    pub(crate) fn is_large(len: Option<usize>) -> bool {
        len.is_none_or(|l| l > LARGE_BODY)
    }

    /// What a request of `len` bytes (None: not said, so the most a body may be) is charged, in
    /// KiB, from its share; never more than the whole share, so that any allowed body can run.
    pub(crate) fn charge(&self, len: Option<usize>) -> u32 {
        let share = if Self::is_large(len) {
            self.large_total
        } else {
            self.small_total
        };
        let len = len.unwrap_or(MAX_BODY).min(MAX_BODY);
        let bytes = len * Limits::COST_FACTOR + Limits::COST_BASE;
        (bytes.div_ceil(1024) as u32).min(share)
    }

    /// Grows what a request holds from its share (`large`: the large bodies' one) to `want_kib`
    /// (capped at the share), waiting at most `wait`. False: the budget stayed full.
    pub(crate) async fn grow(
        &self,
        large: bool,
        held: &mut Option<Permit>,
        want_kib: u32,
        wait: Duration,
    ) -> bool {
        let (pool, share) = if large {
            (&self.large_kib, self.large_total)
        } else {
            (&self.small_kib, self.small_total)
        };
        let have = held.as_ref().map_or(0, |p| p.num_permits() as u32);
        let want = want_kib.min(share);
        if want <= have {
            return true;
        }
        match tokio::time::timeout(wait, pool.clone().acquire_many_owned(want - have)).await {
            Ok(Ok(more)) => {
                match held {
                    Some(p) => p.merge(more),
                    None => *held = Some(more),
                }
                true
            }
            _ => false,
        }
    }

    /// An evaluation slot for a body of `len` bytes, waiting until `deadline`.
    pub(crate) async fn worker(
        &self,
        len: usize,
        deadline: tokio::time::Instant,
    ) -> Option<(Permit, Option<Permit>)> {
        let large = if len > LARGE_BODY {
            Some(
                timeout_at(deadline, self.large_workers.clone().acquire_owned())
                    .await
                    .ok()?
                    .ok()?,
            )
        } else {
            None
        };
        let slot = timeout_at(deadline, self.workers.clone().acquire_owned())
            .await
            .ok()?
            .ok()?;
        Some((slot, large))
    }
}
