//! Quorum detection: which StatefulSets run a consensus group (Raft, ZAB, Paxos-like) whose voters
//! are the StatefulSet's own pods, read from what the manifest already says — the container image
//! and the arguments or environment that make the process join a quorum. The quorum rules
//! (`quorum-odd`, `quorum-scale-down`) judge such a set without `stsguard.io/quorum: "true"`, at
//! the policy's `validation.quorumDetection` mode.
//!
//! Every signal is in [`SIGNALS`], one row per system. A container is recognised by its image's
//! repository name (the last path component, without registry, tag or digest) or by the program
//! it runs (the basename of the command, or of a word after `exec` in a shell script); then every
//! group of the row's `requires` needs one piece of evidence, and none of `unless` may hold (an
//! explicit non-voting role). Replicated systems that are not a quorum of their own pods (Redis,
//! PostgreSQL, MySQL, Cassandra, Kafka brokers, MongoDB, Galera) have no row: silence is the
//! conservative answer there.
//!
//! Three parts: this module (what the rules see: [`of`], [`detect`]), `signals.rs` (the table
//! and its vocabulary) and `evidence.rs` (a container read into tokens and looked up).
//!
//! Work is linear in the size of the pod template: each container's command, args and env values
//! are cut into tokens once, and each row has a fixed, small number of pieces of evidence.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Container;

mod evidence;
mod signals;

pub use evidence::image_name;
use evidence::{Facts, Src, Tok, basename, label, lex};
pub use signals::{Ev, Key, SIGNALS, Signal, Test};

use crate::k8s::annotations::{self as ann, keys};
use crate::policy::Mode;
use crate::text::cut;

/// What the quorum rules judge a StatefulSet as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quorum {
    /// `stsguard.io/quorum: "true"`: the rules at their configured mode.
    Annotated,
    /// A consensus system recognised from the pod template: the rules at the mode of
    /// `validation.quorumDetection`, never stricter than their own.
    Detected(Detection),
    /// Not a quorum set as far as stsguard can tell, or `stsguard.io/quorum: "false"`.
    No,
}

impl Quorum {
    /// The mode a detection caps the quorum rules at (`None`: the rules' own mode applies).
    pub fn detection_mode(&self, quorum_detection: Mode) -> Option<Mode> {
        match self {
            Quorum::Detected(_) => Some(quorum_detection),
            Quorum::Annotated | Quorum::No => None,
        }
    }
}

/// A recognised consensus system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The system's name, as in [`SIGNALS`].
    pub system: &'static str,
    /// The container that showed it.
    pub container: String,
    /// The evidence, as written in the manifest (e.g. `--initial-cluster`,
    /// `KAFKA_CFG_PROCESS_ROLES=controller`, `image zookeeper`).
    pub signal: String,
    /// Whether the member count is the voter count, so `quorum-odd` applies. False for multi-Raft
    /// stores (CockroachDB, TiKV): each range has its own replicas, whatever the node count, so
    /// only `quorum-scale-down` applies.
    pub odd: bool,
}

impl Detection {
    /// `etcd (container etcd: --initial-cluster)`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} (container {}: {})",
            self.system,
            cut(&self.container, 63),
            self.signal
        )
    }
}

/// How the quorum rules see `sts`: the annotation first (`"true"` forces them, `"false"` turns
/// detection off), then detection.
pub fn of(sts: &StatefulSet) -> Quorum {
    match ann::switch(sts, keys::QUORUM) {
        // A value that is neither (refused on write by `safety-switch`) reads as on: fail closed.
        ann::Switch::On | ann::Switch::Invalid(_) => Quorum::Annotated,
        ann::Switch::Off => Quorum::No,
        ann::Switch::Unset => detect(sts).map_or(Quorum::No, Quorum::Detected),
    }
}

/// The first container (in order) that shows a consensus system, whatever the annotations say.
pub fn detect(sts: &StatefulSet) -> Option<Detection> {
    let pod = sts.spec.as_ref()?.template.spec.as_ref()?;
    let mut toks = Vec::new();
    pod.containers
        .iter()
        .find_map(|c| detect_container(c, &mut toks))
}

fn detect_container<'a>(c: &'a Container, toks: &mut Vec<Tok<'a>>) -> Option<Detection> {
    let image = c.image.as_deref().map(image_name).unwrap_or("");
    toks.clear();
    let argv = c.command.iter().flatten().chain(c.args.iter().flatten());
    for (i, a) in argv.enumerate() {
        lex(a, Src::Arg, i == 0, toks);
    }
    let programs: Vec<&str> = toks
        .iter()
        .filter(|t| t.command)
        .map(|t| basename(t.text))
        .collect();
    for e in c.env.iter().flatten() {
        if let Some(v) = &e.value {
            lex(v, Src::Env, false, toks);
        }
    }
    let facts = Facts {
        c,
        toks: toks.as_slice(),
    };
    for s in SIGNALS {
        let identity = if s.images.iter().any(|i| i.eq_ignore_ascii_case(image)) {
            format!("image {image}")
        } else if let Some(p) = programs.iter().find(|p| s.programs.contains(p)) {
            format!("command {p}")
        } else {
            continue;
        };
        if s.unless
            .iter()
            .any(|ev| facts.find(ev.key, ev.test).is_some())
        {
            continue;
        }
        let mut shown = Vec::new();
        let all = s.requires.iter().all(|group| {
            group.iter().any(|ev| {
                let found = match ev.key {
                    Key::Identity => Some(identity.clone()),
                    _ => facts.find(ev.key, ev.test).map(|v| label(*ev, v)),
                };
                found.map(|l| shown.push(l)).is_some()
            })
        });
        if all {
            return Some(Detection {
                system: s.system,
                container: c.name.clone(),
                signal: if shown.is_empty() {
                    identity
                } else {
                    shown.join(" ")
                },
                odd: s.odd,
            });
        }
    }
    None
}
