//! The shared budgets of the reviews in flight: bytes (counted as they arrive, then the review's
//! charge, then its answer until the answer's last byte is handed to the connection) and
//! evaluation slots, in two lanes: ordinary reviews and large ones.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::timeout_at;

use crate::bounds::MAX_BODY;

/// Bounds on the work and memory of the reviews in flight together.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The budget of request bytes in flight: bodies being read, reviews being evaluated (each
    /// charged [`Limits::COST_FACTOR`] times its body) and answers not yet written.
    pub inflight_bytes: usize,
    /// Large reviews evaluated at once, on the blocking pool (never on the I/O workers); one
    /// less than this (at least one) so that a CPU stays for the ordinary reviews.
    pub workers: usize,
    /// How long a request waits for the byte budget before it is turned away with 503.
    pub wait: Duration,
}

impl Limits {
    /// A review's memory is its body, the typed objects read from it (strings and maps: about
    /// the body's size again; structs: bounded by [`crate::bounds::MAX_OBJECTS`]), the mutated
    /// copy and the answer. Four times the body covers it; 64 KiB covers the small fixed part.
    /// An answer larger than that (a patch for many containers) is charged its own size.
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

/// Bodies up to this are ordinary (when they also hold at most [`LANE_OBJECTS`] objects): they
/// are evaluated where they arrive, on the I/O workers. Real reviews are 5–50 KiB (the corpus's
/// largest StatefulSet CREATE is 25 KB); the bounds keep the work of 64 KiB well under 1 ms.
pub const INLINE_BODY: usize = 64 * 1024;

/// The ordinary lane's bound on objects: [`crate::bounds::LANE_OBJECTS`].
pub use crate::bounds::LANE_OBJECTS;

/// Reads of bodies larger than this are not preallocated in full (they grow as bytes arrive).
pub const LARGE_BODY: usize = 256 * 1024;

/// The answer is handed to the connection in pieces of this size, so that at most about one
/// piece per stream sits in the connection's send buffer outside the byte budget.
pub const ANSWER_CHUNK: usize = 16 * 1024;

/// One client address may hold at most this fraction (1/n) of a lane's byte budget: a client
/// that never reads its answers (an HTTP/2 window of zero) or floods just under the bounds
/// cannot take the whole lane from the others. A request past its client's share gets 503 at
/// once (it does not wait for the budget). Half, not less: the API servers of a cluster may
/// all reach stsguard from one address (a proxy, a node's address), and they must still be able
/// to use most of it.
pub const CLIENT_SHARE_DIVISOR: u32 = 2;

/// The two lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Ordinary,
    Large,
}

impl Lane {
    /// The lane a request's body is read in, from its Content-Length. A body that does not say
    /// (chunked) starts ordinary: it is charged the bytes that have arrived, and the read moves
    /// it to the large lane once it passes [`INLINE_BODY`].
    pub fn of_length(len: Option<usize>) -> Lane {
        if len.is_some_and(|l| l > INLINE_BODY) {
            Lane::Large
        } else {
            Lane::Ordinary
        }
    }

    /// The lane of a whole body of `len` bytes with these counts
    /// ([`crate::bounds::count_review`], which the evaluation reuses): large past
    /// [`INLINE_BODY`] bytes or [`LANE_OBJECTS`] objects.
    pub fn of_body(len: usize, counts: crate::bounds::Nodes) -> Lane {
        if len > INLINE_BODY || counts.objects > LANE_OBJECTS {
            Lane::Large
        } else {
            Lane::Ordinary
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Ordinary => "ordinary",
            Lane::Large => "large",
        }
    }
}

/// A lane's byte budget (KiB permits), whole and per client address.
struct Bytes {
    kib: Arc<Semaphore>,
    total: u32,
    per_client: u32,
    clients: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// Client entries kept before the unused ones are dropped.
const CLIENTS_KEPT: usize = 1024;

impl Bytes {
    fn new(total: u32) -> Bytes {
        Bytes {
            kib: Arc::new(Semaphore::new(total as usize)),
            total,
            per_client: (total / CLIENT_SHARE_DIVISOR).max(1),
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, ip: IpAddr) -> Arc<Semaphore> {
        let mut m = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= CLIENTS_KEPT && !m.contains_key(&ip) {
            // An entry no permit holds (only the map does) has its whole share free.
            m.retain(|_, s| Arc::strong_count(s) > 1);
        }
        m.entry(ip)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_client as usize)))
            .clone()
    }
}

/// What a request holds of its lane's byte budget: the lane's permits and its client's.
#[derive(Default)]
pub struct Held {
    lane: Option<Permit>,
    client: Option<Permit>,
    large: bool,
}

impl Held {
    pub fn kib(&self) -> u32 {
        self.lane.as_ref().map_or(0, |p| p.num_permits() as u32)
    }

    /// Gives back all but `kib`.
    fn shrink_to(&mut self, kib: u32) {
        for p in [&mut self.lane, &mut self.client].into_iter().flatten() {
            let have = p.num_permits();
            if have > kib as usize {
                drop(p.split(have - kib as usize));
            }
        }
    }
}

pub(crate) type Permit = tokio::sync::OwnedSemaphorePermit;

/// The shared budgets: bytes in flight (in KiB permits, a quarter for ordinary reviews and the
/// rest for large ones, each at most [`CLIENT_SHARE_DIVISOR`]⁻¹ per client address) and the
/// large lane's evaluation slots. Ordinary reviews are evaluated inline and take no slot.
pub struct Gate {
    pub(crate) limits: Limits,
    ordinary: Bytes,
    large: Bytes,
    workers: Arc<Semaphore>,
}

impl Gate {
    pub fn new(limits: Limits) -> Self {
        let total = (limits.inflight_bytes / 1024).clamp(64, u32::MAX as usize / 2) as u32;
        let small_total = (total / 4).max(1);
        let large_total = (total - small_total).max(1);
        Gate {
            ordinary: Bytes::new(small_total),
            large: Bytes::new(large_total),
            workers: Arc::new(Semaphore::new(
                limits.workers.max(1).saturating_sub(1).max(1),
            )),
            limits,
        }
    }

    fn bytes(&self, lane: Lane) -> &Bytes {
        match lane {
            Lane::Ordinary => &self.ordinary,
            Lane::Large => &self.large,
        }
    }

    /// The most a request of `lane` may hold, in KiB.
    fn share(&self, lane: Lane, client: Option<IpAddr>) -> u32 {
        let b = self.bytes(lane);
        if client.is_some() {
            b.per_client
        } else {
            b.total
        }
    }

    /// What a review of `len` bytes (None: not said, so the most a body may be) is charged, in
    /// KiB, in `lane`; never more than a client's share, so that any allowed body can run.
    pub(crate) fn charge(&self, lane: Lane, len: Option<usize>, client: Option<IpAddr>) -> u32 {
        let len = len.unwrap_or(MAX_BODY).min(MAX_BODY);
        let bytes = len * Limits::COST_FACTOR + Limits::COST_BASE;
        (bytes.div_ceil(1024) as u32).min(self.share(lane, client))
    }

    /// What an answer of `len` bytes is charged while it is written, in KiB.
    pub(crate) fn answer_charge(&self, lane: Lane, len: usize, client: Option<IpAddr>) -> u32 {
        ((len + Limits::COST_BASE).div_ceil(1024) as u32).min(self.share(lane, client))
    }

    /// Grows what a request holds in `lane` to `want_kib` (capped at its share), waiting at most
    /// `wait`. Moving to another lane takes the new lane's permits before it gives back the
    /// old ones. False: the budget stayed full (what was held is kept).
    pub(crate) async fn grow(
        &self,
        lane: Lane,
        client: Option<IpAddr>,
        held: &mut Held,
        want_kib: u32,
        wait: Duration,
    ) -> bool {
        let large = lane == Lane::Large;
        let share = self.share(lane, client);
        if held.lane.is_some() && held.large != large {
            let want = want_kib.max(held.kib()).min(share).max(1);
            let Some((l, c)) = self.take(lane, client, want, wait).await else {
                return false;
            };
            *held = Held {
                lane: Some(l),
                client: c,
                large,
            };
            return true;
        }
        held.large = large;
        let want = want_kib.min(share);
        let have = held.kib();
        if want <= have {
            return true;
        }
        let Some((l, c)) = self.take(lane, client, want - have, wait).await else {
            return false;
        };
        match &mut held.lane {
            Some(p) => p.merge(l),
            None => held.lane = Some(l),
        }
        if let Some(c) = c {
            match &mut held.client {
                Some(p) => p.merge(c),
                None => held.client = Some(c),
            }
        }
        true
    }

    /// `kib` more of `lane`'s budget and of the client's share of it, within `wait`.
    async fn take(
        &self,
        lane: Lane,
        client: Option<IpAddr>,
        kib: u32,
        wait: Duration,
    ) -> Option<(Permit, Option<Permit>)> {
        let b = self.bytes(lane);
        // The client's share first, and without waiting: a client past its share is turned
        // away at once (its requests, waiting, would hold the frames they have read).
        let c = match client {
            Some(ip) => Some(b.client(ip).try_acquire_many_owned(kib).ok()?),
            None => None,
        };
        let l = tokio::time::timeout(wait, b.kib.clone().acquire_many_owned(kib))
            .await
            .ok()?
            .ok()?;
        Some((l, c))
    }

    /// Sets what a request holds to `kib`: gives back the excess, or grows (waiting at most
    /// `wait`). False: the budget stayed full.
    pub(crate) async fn resize(
        &self,
        lane: Lane,
        client: Option<IpAddr>,
        held: &mut Held,
        kib: u32,
        wait: Duration,
    ) -> bool {
        let kib = kib.min(self.share(lane, client));
        if kib <= held.kib() {
            held.shrink_to(kib);
            return true;
        }
        self.grow(lane, client, held, kib, wait).await
    }

    /// An evaluation slot of the large lane, waiting until `deadline`.
    pub(crate) async fn worker(&self, deadline: tokio::time::Instant) -> Option<Permit> {
        timeout_at(deadline, self.workers.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }
}

/// An answer that holds its review's byte budget until its last piece has been handed to the
/// connection (or the connection drops it): an answer waiting on a client's flow control stays
/// counted. Handed out in [`ANSWER_CHUNK`] pieces so the connection buffers at most about one.
pub struct HeldBody {
    data: axum::body::Bytes,
    held: Option<Held>,
}

impl HeldBody {
    pub fn new(data: impl Into<axum::body::Bytes>, held: Held) -> Self {
        HeldBody {
            data: data.into(),
            held: Some(held),
        }
    }
}

impl hyper::body::Body for HeldBody {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.data.is_empty() {
            self.held = None;
            return std::task::Poll::Ready(None);
        }
        let n = self.data.len().min(ANSWER_CHUNK);
        let piece = self.data.split_to(n);
        if self.data.is_empty() {
            self.held = None;
        }
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    fn gate(mib: usize) -> Gate {
        Gate::new(Limits {
            inflight_bytes: mib * 1024 * 1024,
            workers: 2,
            wait: Duration::from_millis(50),
        })
    }

    fn count(body: &[u8]) -> crate::bounds::Nodes {
        crate::bounds::count_review(body)
    }

    #[test]
    fn a_short_body_with_many_objects_goes_to_the_large_lane() {
        let few = format!("{{\"a\":[{}]}}", vec!["1"; 1000].join(","));
        assert_eq!(
            Lane::of_body(few.len(), count(few.as_bytes())),
            Lane::Ordinary
        );
        let many = format!("{{\"a\":[{}]}}", vec!["{}"; LANE_OBJECTS].join(","));
        assert!(many.len() < 4096);
        assert_eq!(
            Lane::of_body(many.len(), count(many.as_bytes())),
            Lane::Large
        );
        let spaces = vec![b' '; INLINE_BODY + 1];
        assert_eq!(Lane::of_body(spaces.len(), count(&spaces)), Lane::Large);
        // Chunked: read in the ordinary lane until it passes INLINE_BODY.
        assert_eq!(Lane::of_length(None), Lane::Ordinary);
        assert_eq!(Lane::of_length(Some(INLINE_BODY)), Lane::Ordinary);
        assert_eq!(Lane::of_length(Some(INLINE_BODY + 1)), Lane::Large);
    }

    #[tokio::test]
    async fn one_client_holds_at_most_half_a_lane_and_another_still_gets_in() {
        let g = gate(8); // ordinary lane: 2 MiB, 1 MiB per client
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut first = Held::default();
        assert!(
            g.grow(Lane::Ordinary, Some(a), &mut first, 1024, g.limits.wait)
                .await
        );
        assert_eq!(first.kib(), 1024);
        let mut more = Held::default();
        assert!(
            !g.grow(Lane::Ordinary, Some(a), &mut more, 1, g.limits.wait)
                .await,
            "past its share"
        );
        let mut other = Held::default();
        assert!(
            g.grow(Lane::Ordinary, Some(b), &mut other, 1024, g.limits.wait)
                .await
        );
        drop(first);
        assert!(
            g.grow(Lane::Ordinary, Some(a), &mut more, 512, g.limits.wait)
                .await
        );
    }

    #[tokio::test]
    async fn the_answer_holds_its_bytes_until_its_last_piece_is_taken() {
        let g = gate(8);
        let mut held = Held::default();
        assert!(
            g.grow(Lane::Ordinary, None, &mut held, 2048, g.limits.wait)
                .await
        );
        let mut body = HeldBody::new(vec![b'x'; 3 * ANSWER_CHUNK + 1], held);
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut pieces = 0;
        loop {
            let free = g.ordinary.kib.available_permits();
            match std::pin::Pin::new(&mut body).poll_frame(&mut cx) {
                std::task::Poll::Ready(Some(Ok(f))) => {
                    assert!(f.into_data().unwrap().len() <= ANSWER_CHUNK);
                    pieces += 1;
                    if pieces < 4 {
                        assert_eq!(free, 0, "still held before piece {pieces}");
                    }
                }
                _ => break,
            }
        }
        assert_eq!(pieces, 4);
        assert!(body.is_end_stream());
        assert_eq!(
            g.ordinary.kib.available_permits(),
            2048,
            "released at the end"
        );
    }

    #[tokio::test]
    async fn moving_to_the_large_lane_gives_back_the_ordinary_bytes() {
        let g = gate(8);
        let mut held = Held::default();
        assert!(
            g.grow(Lane::Ordinary, None, &mut held, 100, g.limits.wait)
                .await
        );
        assert!(
            g.grow(Lane::Large, None, &mut held, 300, g.limits.wait)
                .await
        );
        assert_eq!(held.kib(), 300);
        assert_eq!(g.ordinary.kib.available_permits(), 2048);
        assert!(
            g.resize(Lane::Large, None, &mut held, 10, g.limits.wait)
                .await
        );
        assert_eq!(g.large.kib.available_permits(), 6144 - 10);
    }
}
