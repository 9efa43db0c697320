//! Hostile input against a running `stsguard serve` process, over real TLS on 127.0.0.1.
//!
//! Shared by the bounds tests (`tests/abuse.rs`, which assert the bounds) and the bounds benchmark
//! (`benches/abuse/run.sh`, which prints the figures for any server binary, old or new). Every
//! attack runs against a fresh server process started as a user would start it (no environment
//! tweaks), while a probe sends an ordinary review every 20 ms on its own thread and connection;
//! the server's peak RSS (`VmHWM`) is read from `/proc`. Every loop here is bounded in count and
//! in time, and a watchdog kills the server when its RSS passes `Cfg::rss_kill`.
//!
//! By job: `server` (the process under attack), `client` (connections and requests), `bodies`
//! (hostile reviews), `probe`, `exposition` (the strict `/metrics` parser), `report` (findings
//! and bounds), `run` (the attacks by name, running one), and the attack families `roles`,
//! `sizes`, `connections`, `fields`, `lanes`. The server is started and TLS configured with the
//! tests' support (`tests/common`): the including crate declares `mod common;`.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::common::{Launch, Proc, tail, tls};

mod bodies;
mod client;
mod connections;
mod exposition;
mod fields;
mod lanes;
mod probe;
mod report;
mod roles;
mod run;
mod server;
mod sizes;

pub use bodies::*;
pub use client::*;
use connections::*;
pub use exposition::*;
use fields::*;
use lanes::*;
pub use probe::*;
pub use report::*;
use roles::*;
pub use run::*;
pub use server::*;
use sizes::*;

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;

/// The bounds the tests assert (see docs/operations.md, "Bounds").
pub mod bounds {
    use std::time::Duration;
    /// Peak RSS of the server through any attack.
    pub const PEAK_RSS_MIB: f64 = 128.0;
    /// p99 of the probe review during any attack (a failed or non-200 probe counts as slowest).
    pub const PROBE_P99_MS: f64 = 100.0;
    /// The 946 KB roles annotation is answered within this.
    pub const ROLES_MS: f64 = 100.0;
    /// Every stderr log line.
    pub const LOG_LINE_BYTES: f64 = 4096.0;
    /// A 400 answer's body (a reason cut to 256 bytes, plus its wording).
    pub const BAD_REQUEST_BODY_BYTES: f64 = 1024.0;
    /// The webhook's timeoutSeconds: a review the API server waits for longer is lost.
    pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
    /// Series of `stsguard_admission_requests` after 10,000 random kinds.
    pub const REQUEST_SERIES: f64 = 100.0;
    /// The whole `/metrics` answer after the label attacks.
    pub const METRICS_KIB: f64 = 256.0;
}

/// How an attack run is configured: the tests (new flags, small sizes where the bound is a
/// count) or the benchmark (the flags every stsguard has, the sizes of the original reports).
#[derive(Clone, Debug)]
pub struct Cfg {
    pub bin: PathBuf,
    /// Benchmark mode: only flags the old server has, the reported attack sizes.
    pub bench: bool,
    /// The watchdog kills the server past this RSS.
    pub rss_kill: u64,
    /// The longest a client waits for one hostile request.
    pub req_timeout: Duration,
    /// The longest one attack may run (after it, the server is killed).
    pub attack_timeout: Duration,
    /// The bound on the probe's p99 during an attack (plus the p99 just before it).
    pub probe_p99_ms: f64,
}

impl Cfg {
    pub fn test(bin: PathBuf) -> Cfg {
        Cfg {
            bin,
            bench: false,
            rss_kill: 1024 * MIB,
            req_timeout: Duration::from_secs(15),
            attack_timeout: Duration::from_secs(60),
            probe_p99_ms: bounds::PROBE_P99_MS,
        }
    }

    pub fn bench(bin: PathBuf) -> Cfg {
        Cfg {
            bin,
            bench: true,
            rss_kill: 3 * 1024 * MIB,
            req_timeout: Duration::from_secs(60),
            attack_timeout: Duration::from_secs(240),
            probe_p99_ms: bounds::PROBE_P99_MS,
        }
    }
}
