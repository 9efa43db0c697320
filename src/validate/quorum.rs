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
//! Work is linear in the size of the pod template: each container's command, args and env values
//! are cut into tokens once, and each row has a fixed, small number of pieces of evidence.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Container;

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

/// Where a piece of evidence is looked for.
#[derive(Clone, Copy, Debug)]
pub enum Key {
    /// The image or the program alone.
    Identity,
    /// A command-line flag: `--name`, `-name`, `--name=v`, `--name v` (dashes as written here
    /// are shown in messages; one or two dashes match).
    Flag(&'static str),
    /// An environment variable of that name (its value: the literal `value`).
    Env(&'static str),
    /// A configuration setting: `name=v`, `name: v` or `name = v` in the command, args or an env
    /// value (configuration files passed in env), `-Ename=v`, or an env variable named like the
    /// setting (the Elasticsearch and OpenSearch images read those). A trailing `#` stands for a
    /// number (`server.#` matches `server.1`).
    Setting(&'static str),
    /// A bare word in the command or args (a subcommand such as `start`).
    Word(&'static str),
    /// Two words in a row in the command, args or an env value (`storage "raft"`).
    Pair(&'static str, &'static str),
}

/// What the value must be.
#[derive(Clone, Copy, Debug)]
pub enum Test {
    Present,
    /// The value contains one of these (case-insensitive), e.g. a role in a list.
    Contains(&'static [&'static str]),
    /// The value is known and contains none of these.
    Lacks(&'static [&'static str]),
    /// The value's first word is this (case-insensitive).
    Is(&'static str),
}

/// One piece of evidence.
#[derive(Clone, Copy, Debug)]
pub struct Ev {
    pub key: Key,
    pub test: Test,
}

/// One row of the signal table.
#[derive(Debug)]
pub struct Signal {
    pub system: &'static str,
    /// Image repository names (last path component, no tag or digest).
    pub images: &'static [&'static str],
    /// Program basenames (the command, or a word after `exec` in a shell script).
    pub programs: &'static [&'static str],
    /// Every group needs one of its evidence (earlier ones are named first).
    pub requires: &'static [&'static [Ev]],
    /// Any of these: not a voter (an explicit role without the voting one).
    pub unless: &'static [Ev],
    /// Whether `quorum-odd` applies (see [`Detection::odd`]).
    pub odd: bool,
}

const fn has(key: Key) -> Ev {
    Ev {
        key,
        test: Test::Present,
    }
}
const fn with(key: Key, needles: &'static [&'static str]) -> Ev {
    Ev {
        key,
        test: Test::Contains(needles),
    }
}
const fn without(key: Key, needles: &'static [&'static str]) -> Ev {
    Ev {
        key,
        test: Test::Lacks(needles),
    }
}
const fn is(key: Key, value: &'static str) -> Ev {
    Ev {
        key,
        test: Test::Is(value),
    }
}

use Key::*;

const CONTROLLER: &[&str] = &["controller"];
/// OpenSearch 2 renamed the role `master` to `cluster_manager`.
const MASTER: &[&str] = &["master", "cluster_manager"];

/// The signal table: every system stsguard recognises, with the evidence it uses.
pub static SIGNALS: &[Signal] = &[
    Signal {
        system: "etcd",
        images: &["etcd"],
        programs: &["etcd"],
        requires: &[&[
            has(Flag("--initial-cluster")),
            has(Env("ETCD_INITIAL_CLUSTER")),
            has(Flag("--discovery-srv")),
            has(Env("ETCD_DISCOVERY_SRV")),
            has(Flag("--discovery")),
            has(Env("ETCD_DISCOVERY")),
        ]],
        unless: &[],
        odd: true,
    },
    Signal {
        // A ZooKeeper server in a StatefulSet is an ensemble member: the image alone counts.
        system: "zookeeper",
        images: &["zookeeper", "cp-zookeeper", "kubernetes-zookeeper", "k8szk"],
        programs: &["zkServer.sh", "zookeeper-server-start.sh"],
        requires: &[&[
            has(Env("ZOO_SERVERS")),
            has(Env("ZK_SERVERS")),
            has(Setting("server.#")),
            has(Identity),
        ]],
        unless: &[],
        odd: true,
    },
    Signal {
        // `-bootstrap-expect` is refused outside server mode, so it says "server" too.
        system: "consul",
        images: &["consul", "consul-enterprise"],
        programs: &["consul"],
        requires: &[&[
            has(Flag("-server")),
            has(Flag("-bootstrap-expect")),
            has(Setting("bootstrap_expect")),
            is(Setting("server"), "true"),
            has(Env("CONSUL_BOOTSTRAP_EXPECT")),
            is(Env("CONSUL_AGENT_MODE"), "server"),
        ]],
        unless: &[],
        odd: true,
    },
    Signal {
        // KRaft controllers vote; brokers and ZooKeeper-mode Kafka do not.
        system: "kafka",
        images: &["kafka", "cp-kafka", "cp-server", "kafka-native"],
        programs: &["kafka-server-start.sh"],
        requires: &[&[
            with(Env("KAFKA_CFG_PROCESS_ROLES"), CONTROLLER),
            with(Env("KAFKA_PROCESS_ROLES"), CONTROLLER),
            with(Setting("process.roles"), CONTROLLER),
        ]],
        unless: &[],
        odd: true,
    },
    Signal {
        // Master-eligible nodes vote. An explicit role list without master is a data,
        // ingest or coordinating node; without any role setting the node is master-eligible
        // (the default) and the evidence is a master bootstrap or quorum setting.
        system: "elasticsearch",
        images: &[
            "elasticsearch",
            "elasticsearch-oss",
            "docker-elasticsearch-kubernetes",
        ],
        programs: &["elasticsearch"],
        requires: &[&[
            with(Setting("node.roles"), MASTER),
            with(Env("ELASTICSEARCH_NODE_ROLES"), MASTER),
            is(Setting("node.master"), "true"),
            is(Env("NODE_MASTER"), "true"),
            is(Env("ELASTICSEARCH_NODE_TYPE"), "master"),
            has(Setting("cluster.initial_master_nodes")),
            has(Setting("discovery.zen.minimum_master_nodes")),
            has(Env("MINIMUM_MASTER_NODES")),
        ]],
        unless: &[
            without(Setting("node.roles"), MASTER),
            without(Env("ELASTICSEARCH_NODE_ROLES"), MASTER),
            is(Setting("node.master"), "false"),
            is(Env("NODE_MASTER"), "false"),
            without(Env("ELASTICSEARCH_NODE_TYPE"), &["master"]),
        ],
        odd: true,
    },
    Signal {
        system: "opensearch",
        images: &["opensearch"],
        programs: &["opensearch"],
        requires: &[&[
            with(Setting("node.roles"), MASTER),
            with(Env("OPENSEARCH_NODE_ROLES"), MASTER),
            is(Setting("node.master"), "true"),
            has(Setting("cluster.initial_master_nodes")),
            has(Setting("cluster.initial_cluster_manager_nodes")),
        ]],
        unless: &[
            without(Setting("node.roles"), MASTER),
            without(Env("OPENSEARCH_NODE_ROLES"), MASTER),
            is(Setting("node.master"), "false"),
        ],
        odd: true,
    },
    Signal {
        // JetStream's meta group is Raft; a plain NATS cluster (no JetStream) is a full mesh.
        system: "nats",
        images: &["nats"],
        programs: &["nats-server"],
        requires: &[
            &[has(Flag("--cluster_routes")), has(Flag("--routes"))],
            &[has(Flag("-js")), has(Flag("--jetstream"))],
        ],
        unless: &[],
        odd: true,
    },
    Signal {
        // Not the image alone: only configuration that makes a majority matter (quorum queues
        // by default, or pausing the minority on a partition).
        system: "rabbitmq",
        images: &["rabbitmq"],
        programs: &["rabbitmq-server"],
        requires: &[&[
            with(Setting("default_queue_type"), &["quorum"]),
            with(Setting("cluster_partition_handling"), &["pause_minority"]),
        ]],
        unless: &[],
        odd: true,
    },
    Signal {
        system: "cockroachdb",
        images: &["cockroach"],
        programs: &["cockroach"],
        requires: &[&[has(Word("start"))], &[has(Flag("--join"))]],
        unless: &[],
        odd: false,
    },
    Signal {
        // PD (TiDB's placement driver) is an embedded etcd.
        system: "tidb-pd",
        images: &["pd"],
        programs: &["pd-server"],
        requires: &[&[has(Flag("--initial-cluster")), has(Flag("--join"))]],
        unless: &[],
        odd: true,
    },
    Signal {
        system: "tikv",
        images: &["tikv"],
        programs: &["tikv-server"],
        requires: &[&[has(Flag("--pd")), has(Flag("--pd-endpoints"))]],
        unless: &[],
        odd: false,
    },
    Signal {
        // Integrated storage only; with Consul storage the quorum is Consul's.
        system: "vault",
        images: &["vault", "vault-enterprise"],
        programs: &["vault"],
        requires: &[&[
            has(Env("VAULT_RAFT_NODE_ID")),
            has(Env("VAULT_RAFT_PATH")),
            has(Pair("storage", "raft")),
        ]],
        unless: &[],
        odd: true,
    },
];

/// How the quorum rules see `sts`: the annotation first (`"true"` forces them, `"false"` turns
/// detection off), then detection.
pub fn of(sts: &StatefulSet) -> Quorum {
    match ann::get(sts, keys::QUORUM) {
        Some("true") => Quorum::Annotated,
        Some("false") => Quorum::No,
        _ => detect(sts).map_or(Quorum::No, Quorum::Detected),
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

/// The repository name of an image reference: `quay.io/coreos/etcd:v3.5` → `etcd`,
/// `registry:5000/x/kafka@sha256:…` → `kafka`.
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Src {
    /// The command or args.
    Arg,
    /// An env variable's value.
    Env,
}

/// A word of a command line, script or configuration text.
#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    text: &'a str,
    /// The rest of the line after the word.
    after: &'a str,
    src: Src,
    /// In command position: the first word of a line, after `;`, `&`, `|`, `(` or after
    /// `exec`/`then`/`do`/`else`.
    command: bool,
}

fn is_sep(b: u8) -> bool {
    b.is_ascii_whitespace() || b"\"'`()[]{};|&<>\\".contains(&b)
}

/// Cuts `s` into words, line by line. Separators are ASCII, so every cut is a char boundary.
fn lex<'a>(s: &'a str, src: Src, first_is_command: bool, out: &mut Vec<Tok<'a>>) {
    // A one-word element is an argv entry; an element with spaces is a script or a config file.
    let script = s.bytes().any(|b| b.is_ascii_whitespace());
    for (n, line) in s.lines().enumerate() {
        let bytes = line.as_bytes();
        let mut command = script || (n == 0 && first_is_command);
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if is_sep(b) {
                if b";|&(".contains(&b) {
                    command = true;
                }
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !is_sep(bytes[i]) {
                i += 1;
            }
            let text = &line[start..i];
            out.push(Tok {
                text,
                after: &line[i..],
                src,
                command,
            });
            command = matches!(text, "exec" | "then" | "do" | "else");
        }
    }
}

/// The value after `=`, `:` or a space: a `[…]` list, a quoted string, or up to a comment or the
/// end of the line.
fn value_extent(rest: &str) -> &str {
    let r = bounded(rest).trim_start();
    if let Some(list) = r.strip_prefix('[') {
        return list.split(']').next().unwrap_or(list);
    }
    for q in ['"', '\''] {
        if let Some(quoted) = r.strip_prefix(q) {
            return quoted.split(q).next().unwrap_or(quoted);
        }
    }
    let end = r.find(['#', '}', ';']).unwrap_or(r.len());
    r[..end].trim_end().trim_end_matches(',')
}

fn first_word(v: &str) -> &str {
    let v = v.trim_start_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
    let end = v
        .find(|c: char| c.is_whitespace() || matches!(c, ',' | '"' | '\'' | '}' | ']'))
        .unwrap_or(v.len());
    &v[..end]
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.as_bytes()
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// `name` with a trailing `#` matches `prefix` + digits.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('#') {
        Some(prefix) => name
            .strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())),
        None => name == pattern,
    }
}

impl Test {
    fn holds(self, value: Option<&str>) -> bool {
        match self {
            Test::Present => true,
            Test::Contains(ns) => value.is_some_and(|v| ns.iter().any(|n| contains_ci(v, n))),
            Test::Lacks(ns) => value.is_some_and(|v| !ns.iter().any(|n| contains_ci(v, n))),
            Test::Is(x) => value.is_some_and(|v| first_word(v).eq_ignore_ascii_case(x)),
        }
    }
}

/// One container, cut into words once.
struct Facts<'f> {
    c: &'f Container,
    toks: &'f [Tok<'f>],
}

/// Values longer than this are judged on their start: a role list or a flag value is short, and
/// the bound keeps repeated keys on one long line linear.
const MAX_VALUE: usize = 512;

fn bounded(s: &str) -> &str {
    if s.len() <= MAX_VALUE {
        return s;
    }
    let mut end = MAX_VALUE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A setting's name and where its value starts, if the word is `name=v`, `name:` or is
/// followed by `=`/`:` (`name = v`, `"name": v`).
fn setting_parts<'f>(t: &Tok<'f>) -> Option<(&'f str, SettingValue<'f>)> {
    let text = t.text.strip_prefix("-E").unwrap_or(t.text);
    if text.starts_with('-') {
        return None;
    }
    if let Some((n, v)) = text.split_once('=') {
        // `name="a,b"`: the quote cut the word; the value follows.
        return Some((
            n,
            if v.is_empty() {
                SettingValue::Rest(t.after)
            } else {
                SettingValue::Word(v)
            },
        ));
    }
    if let Some(n) = text.strip_suffix(':') {
        return Some((n, SettingValue::Rest(t.after)));
    }
    let rest = t.after.trim_start_matches([' ', '\t', '"', '\'']);
    rest.strip_prefix(['=', ':'])
        .map(|v| (text, SettingValue::Rest(v)))
}

#[derive(Clone, Copy)]
enum SettingValue<'f> {
    /// The value is the rest of the word.
    Word(&'f str),
    /// The value starts the rest of the line.
    Rest(&'f str),
}

impl<'f> SettingValue<'f> {
    fn get(self) -> &'f str {
        match self {
            SettingValue::Word(w) => w,
            SettingValue::Rest(r) => value_extent(bounded(r)),
        }
    }
}

impl<'f> Facts<'f> {
    fn env(&self) -> impl Iterator<Item = (&'f str, Option<&'f str>)> + use<'f> {
        self.c
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.as_str(), e.value.as_deref()))
    }

    /// The first value of `key` in this container that satisfies `test` (inner None: present
    /// without a readable value, e.g. `valueFrom`); None when there is none.
    fn find(&self, key: Key, test: Test) -> Option<Option<&'f str>> {
        let ok = |v: Option<&'f str>| test.holds(v).then_some(v);
        match key {
            Identity => None,
            Env(name) => self
                .env()
                .filter(|(n, _)| *n == name)
                .find_map(|(_, v)| ok(v))
                .or_else(|| {
                    // `export NAME=value` in a script.
                    self.toks
                        .iter()
                        .filter(|t| t.src == Src::Arg)
                        .filter_map(|t| t.text.split_once('='))
                        .filter(|(n, _)| *n == name)
                        .find_map(|(_, v)| ok(Some(v)))
                }),
            Flag(flag) => {
                let want = flag.trim_start_matches('-');
                self.toks.iter().enumerate().find_map(|(i, t)| {
                    if t.src != Src::Arg || !t.text.starts_with('-') {
                        return None;
                    }
                    let body = t.text.strip_prefix("--").unwrap_or(&t.text[1..]);
                    let (name, value) = match body.split_once('=') {
                        Some((n, v)) => (n, Some(v)),
                        None => (
                            body,
                            self.toks
                                .get(i + 1)
                                .filter(|n| n.src == Src::Arg && !n.text.starts_with('-'))
                                .map(|n| n.text),
                        ),
                    };
                    if name == want { ok(value) } else { None }
                })
            }
            Word(w) => self
                .toks
                .iter()
                .filter(|t| t.src == Src::Arg && t.text == w)
                .find_map(|_| ok(None)),
            Pair(a, b) => self.toks.iter().enumerate().find_map(|(i, t)| {
                if t.text != a {
                    return None;
                }
                let next = self.toks[i + 1..]
                    .iter()
                    .take(2)
                    .find(|n| !matches!(n.text, ":" | "="));
                if next.is_some_and(|n| n.text == b && n.src == t.src) {
                    ok(None)
                } else {
                    None
                }
            }),
            Setting(name) => self
                .env()
                .filter(|(n, _)| name_matches(name, n))
                .find_map(|(_, v)| ok(v))
                .or_else(|| {
                    self.toks.iter().find_map(|t| {
                        let (n, v) = setting_parts(t)?;
                        if name_matches(name, n) {
                            ok(Some(v.get()))
                        } else {
                            None
                        }
                    })
                }),
        }
    }
}

/// How a piece of evidence reads in a message: the key, and the value that made it count.
fn label(ev: Ev, value: Option<&str>) -> String {
    let key = match ev.key {
        Identity => return String::new(),
        Setting(k) => k.replace('#', "N"),
        Flag(k) | Env(k) | Word(k) => k.to_string(),
        Pair(a, b) => return format!("{a} \"{b}\""),
    };
    let Some(v) = value.map(str::trim) else {
        return key;
    };
    match ev.test {
        Test::Present | Test::Lacks(_) => key,
        Test::Is(x) => format!("{key}={x}"),
        // A short list as written; else the word that holds the role.
        Test::Contains(_)
            if v.len() <= 40 && !v.contains(|c: char| c.is_whitespace() || "\"'".contains(c)) =>
        {
            format!("{key}={v}")
        }
        Test::Contains(ns) => {
            let w = first_word(v);
            match ns.iter().find(|n| contains_ci(v, n)) {
                Some(_) if ns.iter().any(|n| contains_ci(w, n)) => format!("{key}={}", cut(w, 40)),
                Some(n) => format!("{key}=…{n}…"),
                None => key,
            }
        }
    }
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
                    Identity => Some(identity.clone()),
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
