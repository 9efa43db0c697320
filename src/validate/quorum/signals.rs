//! The signal table: what each consensus system looks like in a manifest, one row per system,
//! and the vocabulary its rows are written in. Adding a system is one row here (and its cases in
//! `tests/quorum_detection.rs`).

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
