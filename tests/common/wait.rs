//! Waiting for something to become true, with a deadline: the one polling loop of the tests
//! (async [`eventually`], and [`until_blocking`] for code outside a runtime).

use std::time::{Duration, Instant};

/// How often a wait of `secs` seconds polls: a hundredth of it, between 10 and 200 ms.
fn every(secs: u64) -> Duration {
    (Duration::from_secs(secs) / 100).clamp(Duration::from_millis(10), Duration::from_millis(200))
}

fn timed_out(what: &str, secs: u64, last: &str) -> String {
    format!("timed out after {secs} s waiting for {what}; last: {last}")
}

/// Polls `f` until it returns `Ok`, or panics with `what` and the last `Err` after `secs`.
pub async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => panic!("{}", timed_out(what, secs, &last)),
            Err(_) => tokio::time::sleep(every(secs)).await,
        }
    }
}

/// Why a blocking wait has no answer yet: `Yet` (poll again) or `Ever` (give up now).
pub enum Not {
    Yet(String),
    Ever(String),
}

/// [`eventually`] outside a runtime, sleeping the thread, and without panicking: `Err` says
/// what `f` gave up with, or that `secs` went by (and the last state).
pub fn until_blocking<T>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> Result<T, Not>,
) -> Result<T, String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(Not::Ever(why)) => return Err(why),
            Err(Not::Yet(last)) if Instant::now() >= deadline => {
                return Err(timed_out(what, secs, &last));
            }
            Err(Not::Yet(_)) => std::thread::sleep(every(secs)),
        }
    }
}
