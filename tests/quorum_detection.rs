//! Quorum detection: consensus StatefulSets recognised from their image and arguments, judged by
//! `quorum-odd` and `quorum-scale-down` at `validation.quorumDetection`'s mode; replicated systems
//! that are not a quorum stay silent. The manifests below are shaped like the ones the popular
//! charts and operators write. The fixture test reads tests/fixtures/statefulsets.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::policy::{Mode, Policy, RuleId};
use stsguard::validate::lookups::StaticLookups;
use stsguard::validate::quorum::{self, Quorum};
use stsguard::validate::{Findings, NoLookups, Review, Subject, validate};

/// A StatefulSet `name` with `replicas` and the given pod spec (YAML).
fn sts(name: &str, replicas: i32, pod: &str) -> StatefulSet {
    let pod: serde_json::Value = stsguard::yaml::from_str(pod).unwrap();
    let v = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
        },
    });
    serde_json::from_value(v).unwrap()
}

fn with_replicas(s: &StatefulSet, n: i32) -> StatefulSet {
    let mut s = s.clone();
    s.spec.as_mut().unwrap().replicas = Some(n);
    s
}

fn annotated(s: &StatefulSet, k: &str, v: &str) -> StatefulSet {
    let mut s = s.clone();
    s.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(k.into(), v.into());
    s
}

/// Only the quorum rules on (at their defaults), detection at `detection`.
fn quorum_only(detection: Mode) -> Policy {
    let mut p = Policy::default();
    for r in RuleId::ALL {
        if !matches!(r, RuleId::QuorumOdd | RuleId::QuorumScaleDown) {
            p.validation.rules.insert(*r, Mode::Off);
        }
    }
    p.validation.quorum_detection = detection;
    p
}

fn write(o: &StatefulSet, old: Option<&StatefulSet>, p: &Policy) -> Findings {
    validate(
        &Review {
            namespace: "ns",
            subject: Subject::Write { object: o, old },
        },
        p,
        &NoLookups("test".into()),
    )
}

fn rules(f: &[stsguard::validate::Finding]) -> Vec<RuleId> {
    f.iter().map(|x| x.rule).collect()
}

// ---------------------------------------------------------------------------------------------
// Manifests of consensus systems, as their charts and operators write them.

/// (case, system, signal, manifest at 3 replicas, whether quorum-odd applies)
fn quorum_cases() -> Vec<(&'static str, &'static str, &'static str, StatefulSet, bool)> {
    vec![
        (
            "bitnami/etcd chart",
            "etcd",
            "ETCD_INITIAL_CLUSTER",
            sts(
                "etcd",
                3,
                r#"
containers:
- name: etcd
  image: docker.io/bitnami/etcd:3.5.17-debian-12-r0
  env:
  - {name: BITNAMI_DEBUG, value: "false"}
  - name: MY_POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - {name: ETCDCTL_API, value: "3"}
  - {name: ETCD_ON_K8S, value: "yes"}
  - {name: ETCD_START_FROM_SNAPSHOT, value: "no"}
  - {name: ETCD_NAME, value: "$(MY_POD_NAME)"}
  - {name: ETCD_DATA_DIR, value: /bitnami/etcd/data}
  - {name: ETCD_ADVERTISE_CLIENT_URLS, value: "http://$(MY_POD_NAME).etcd-headless.ns.svc.cluster.local:2379"}
  - {name: ETCD_LISTEN_CLIENT_URLS, value: "http://0.0.0.0:2379"}
  - {name: ETCD_INITIAL_ADVERTISE_PEER_URLS, value: "http://$(MY_POD_NAME).etcd-headless.ns.svc.cluster.local:2380"}
  - {name: ETCD_LISTEN_PEER_URLS, value: "http://0.0.0.0:2380"}
  - {name: ETCD_INITIAL_CLUSTER_TOKEN, value: etcd-cluster-k8s}
  - {name: ETCD_INITIAL_CLUSTER_STATE, value: new}
  - {name: ETCD_INITIAL_CLUSTER, value: "etcd-0=http://etcd-0.etcd-headless.ns.svc.cluster.local:2380,etcd-1=http://etcd-1.etcd-headless.ns.svc.cluster.local:2380,etcd-2=http://etcd-2.etcd-headless.ns.svc.cluster.local:2380"}
  - {name: ETCD_CLUSTER_DOMAIN, value: etcd-headless.ns.svc.cluster.local}
  ports: [{name: client, containerPort: 2379}, {name: peer, containerPort: 2380}]
"#,
            ),
            true,
        ),
        (
            "etcd flags (coreos image)",
            "etcd",
            "--initial-cluster",
            sts(
                "etcd",
                3,
                r#"
containers:
- name: etcd
  image: quay.io/coreos/etcd:v3.5.9
  command: [/usr/local/bin/etcd]
  args:
  - --name=$(POD_NAME)
  - --data-dir=/var/run/etcd
  - --listen-peer-urls=http://0.0.0.0:2380
  - --initial-advertise-peer-urls=http://$(POD_NAME).etcd:2380
  - --initial-cluster-token=etcd-cluster-1
  - --initial-cluster
  - etcd-0=http://etcd-0.etcd:2380,etcd-1=http://etcd-1.etcd:2380,etcd-2=http://etcd-2.etcd:2380
  - --initial-cluster-state=new
  env:
  - name: POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
"#,
            ),
            true,
        ),
        (
            "etcd in a shell script (registry.k8s.io image, digest)",
            "etcd",
            "--initial-cluster",
            sts(
                "etcd",
                3,
                r#"
containers:
- name: etcd
  image: registry.k8s.io/etcd@sha256:29901446ff08461789b7cd8565fc5b538134e58f81ca1f50fd65d0371cf6571e
  command:
  - /bin/sh
  - -ec
  - |
    PEERS=""
    for i in $(seq 0 2); do PEERS="${PEERS}${PEERS:+,}etcd-${i}=http://etcd-${i}.etcd:2380"; done
    exec etcd --name ${HOSTNAME} \
      --listen-peer-urls http://0.0.0.0:2380 \
      --initial-cluster ${PEERS} \
      --data-dir /var/run/etcd/default.etcd
"#,
            ),
            true,
        ),
        (
            "bitnami/zookeeper chart",
            "zookeeper",
            "ZOO_SERVERS",
            sts(
                "zk",
                3,
                r#"
containers:
- name: zookeeper
  image: docker.io/bitnami/zookeeper:3.9.1-debian-11-r2
  command: [/scripts/setup.sh]
  env:
  - {name: BITNAMI_DEBUG, value: "false"}
  - {name: ZOO_DATA_LOG_DIR, value: ""}
  - {name: ZOO_PORT_NUMBER, value: "2181"}
  - {name: ZOO_TICK_TIME, value: "2000"}
  - {name: ZOO_SERVERS, value: "zk-0.zk-headless.ns.svc.cluster.local:2888:3888::1 zk-1.zk-headless.ns.svc.cluster.local:2888:3888::2 zk-2.zk-headless.ns.svc.cluster.local:2888:3888::3"}
  - {name: ZOO_ENABLE_AUTH, value: "no"}
  - name: POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
"#,
            ),
            true,
        ),
        (
            "official zookeeper image, server.N in ZOO_SERVERS",
            "zookeeper",
            "ZOO_SERVERS",
            sts(
                "zk",
                3,
                r#"
containers:
- name: zk
  image: zookeeper:3.8.3
  env:
  - {name: ZOO_MY_ID, value: "1"}
  - {name: ZOO_SERVERS, value: "server.1=zk-0.zk:2888:3888;2181 server.2=zk-1.zk:2888:3888;2181 server.3=zk-2.zk:2888:3888;2181"}
"#,
            ),
            true,
        ),
        (
            "zookeeper from a kafka image, config in env",
            "zookeeper",
            "server.N",
            sts(
                "zk",
                3,
                r#"
containers:
- name: zookeeper
  image: example.com/platform/streams:2.8
  command: [sh, -c, 'echo "$ZK_CONFIG" > /tmp/zk.properties && exec bin/zookeeper-server-start.sh /tmp/zk.properties']
  env:
  - name: ZK_CONFIG
    value: |
      dataDir=/var/lib/zookeeper
      clientPort=2181
      server.1=zk-0.zk:2888:3888
      server.2=zk-1.zk:2888:3888
      server.3=zk-2.zk:2888:3888
"#,
            ),
            true,
        ),
        (
            "confluent cp-zookeeper (image alone)",
            "zookeeper",
            "image cp-zookeeper",
            sts(
                "zk",
                3,
                r#"
containers:
- name: cp-zookeeper-server
  image: confluentinc/cp-zookeeper:7.5.0
  env:
  - {name: ZOOKEEPER_CLIENT_PORT, value: "2181"}
  - {name: ZOOKEEPER_SERVER_ID, value: "1"}
"#,
            ),
            true,
        ),
        (
            "hashicorp/consul chart server",
            "consul",
            "-server",
            sts(
                "consul-server",
                3,
                r#"
containers:
- name: consul
  image: hashicorp/consul:1.17.0
  env:
  - name: ADVERTISE_IP
    valueFrom: {fieldRef: {fieldPath: status.podIP}}
  - {name: CONSUL_DISABLE_PERM_MGMT, value: "true"}
  command:
  - /bin/sh
  - -ec
  - |
    cp /consul/config/extra-from-values.json /consul/extra-config/extra-from-values.json
    exec /usr/local/bin/docker-entrypoint.sh consul agent \
      -advertise="${ADVERTISE_IP}" \
      -bind=0.0.0.0 \
      -bootstrap-expect=3 \
      -client=0.0.0.0 \
      -config-dir=/consul/config \
      -datacenter=dc1 \
      -data-dir=/consul/data \
      -domain=consul \
      -retry-join="consul-server-0.consul-server.ns.svc:8301" \
      -server
"#,
            ),
            true,
        ),
        (
            "consul -bootstrap-expect in args",
            "consul",
            "-bootstrap-expect",
            sts(
                "consul",
                3,
                r#"
containers:
- name: consul
  image: consul:1.4.0
  args: [agent, -advertise=$(POD_IP), -bootstrap-expect=3, -config-file=/etc/consul/config/server.json]
"#,
            ),
            true,
        ),
        (
            "consul with its config as JSON in CONSUL_LOCAL_CONFIG",
            "consul",
            "bootstrap_expect",
            sts(
                "consul",
                3,
                r#"
containers:
- name: consul
  image: consul:1.15
  args: [agent]
  env:
  - {name: CONSUL_LOCAL_CONFIG, value: '{"datacenter": "dc1", "bootstrap_expect": 3, "server": true}'}
"#,
            ),
            true,
        ),
        (
            "bitnami/kafka controller-only",
            "kafka",
            "KAFKA_CFG_PROCESS_ROLES=controller",
            sts(
                "kafka-controller",
                3,
                r#"
containers:
- name: kafka
  image: docker.io/bitnami/kafka:3.7.0-debian-12-r0
  env:
  - {name: BITNAMI_DEBUG, value: "false"}
  - {name: KAFKA_HEAP_OPTS, value: "-Xmx1024m -Xms1024m"}
  - {name: KAFKA_KRAFT_CLUSTER_ID, valueFrom: {secretKeyRef: {name: kafka-kraft-cluster-id, key: kafka-kraft-cluster-id}}}
  - {name: KAFKA_CFG_PROCESS_ROLES, value: controller}
  - {name: KAFKA_CFG_CONTROLLER_QUORUM_VOTERS, value: "0@kafka-controller-0.kafka-controller-headless:9093,1@kafka-controller-1.kafka-controller-headless:9093,2@kafka-controller-2.kafka-controller-headless:9093"}
  - {name: KAFKA_CFG_CONTROLLER_LISTENER_NAMES, value: CONTROLLER}
"#,
            ),
            true,
        ),
        (
            "apache/kafka combined mode",
            "kafka",
            "KAFKA_PROCESS_ROLES=broker,controller",
            sts(
                "kafka",
                3,
                r#"
containers:
- name: kafka
  image: apache/kafka:3.7.0
  env:
  - {name: KAFKA_NODE_ID, value: "1"}
  - {name: KAFKA_PROCESS_ROLES, value: "broker,controller"}
  - {name: KAFKA_CONTROLLER_QUORUM_VOTERS, value: "1@kafka-0.kafka:9093,2@kafka-1.kafka:9093,3@kafka-2.kafka:9093"}
"#,
            ),
            true,
        ),
        (
            "kafka --override process.roles",
            "kafka",
            "process.roles=controller",
            sts(
                "kraft",
                3,
                r#"
containers:
- name: controller
  image: example.com/ops/kafka:3.6.1
  command: [sh, -c, "exec kafka-server-start.sh /etc/kafka/kraft/controller.properties --override node.id=${HOSTNAME##*-} --override process.roles=controller"]
"#,
            ),
            true,
        ),
        (
            "elastic/elasticsearch chart master",
            "elasticsearch",
            "node.roles=master,",
            sts(
                "es-master",
                3,
                r#"
containers:
- name: elasticsearch
  image: docker.elastic.co/elasticsearch/elasticsearch:8.5.1
  env:
  - name: node.name
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - {name: cluster.initial_master_nodes, value: "es-master-0,es-master-1,es-master-2,"}
  - {name: node.roles, value: "master,"}
  - {name: discovery.seed_hosts, value: es-master-headless}
  - {name: cluster.name, value: elasticsearch}
  - {name: network.host, value: 0.0.0.0}
  - {name: ES_JAVA_OPTS, value: "-Xmx1g -Xms1g"}
"#,
            ),
            true,
        ),
        (
            "bitnami/elasticsearch master",
            "elasticsearch",
            "ELASTICSEARCH_NODE_ROLES=master",
            sts(
                "es-master",
                3,
                r#"
containers:
- name: elasticsearch
  image: docker.io/bitnami/elasticsearch:8.11.1-debian-11-r0
  env:
  - {name: ELASTICSEARCH_IS_DEDICATED_NODE, value: "yes"}
  - {name: ELASTICSEARCH_NODE_ROLES, value: master}
  - {name: ELASTICSEARCH_CLUSTER_NAME, value: elastic}
  - {name: ELASTICSEARCH_CLUSTER_HOSTS, value: "es-master-hl.ns.svc.cluster.local,es-data-hl.ns.svc.cluster.local,"}
  - {name: ELASTICSEARCH_TOTAL_NODES, value: "5"}
"#,
            ),
            true,
        ),
        (
            "elasticsearch -E flags",
            "elasticsearch",
            "node.roles=master,data",
            sts(
                "es",
                3,
                r#"
containers:
- name: es
  image: elasticsearch:7.17.15
  command: [bin/elasticsearch]
  args: ["-Enode.roles=master,data", -Ediscovery.seed_hosts=es-headless]
"#,
            ),
            true,
        ),
        (
            "opensearch chart (cluster_manager)",
            "opensearch",
            "node.roles=cluster_manager",
            sts(
                "opensearch-cluster-master",
                3,
                r#"
containers:
- name: opensearch
  image: opensearchproject/opensearch:2.11.0
  env:
  - name: node.name
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - {name: cluster.initial_master_nodes, value: "opensearch-cluster-master-0,opensearch-cluster-master-1,opensearch-cluster-master-2,"}
  - {name: discovery.seed_hosts, value: opensearch-cluster-master-headless}
  - {name: cluster.name, value: opensearch-cluster}
  - {name: network.host, value: 0.0.0.0}
  - {name: node.roles, value: "cluster_manager,ingest,data,remote_cluster_client,"}
"#,
            ),
            true,
        ),
        (
            "nats JetStream cluster (--cluster_routes, -js)",
            "nats",
            "--cluster_routes -js",
            sts(
                "nats",
                3,
                r#"
containers:
- name: nats
  image: nats:2.10.7-alpine
  args:
  - --cluster_name=nats
  - --cluster=nats://0.0.0.0:6222
  - --cluster_routes=nats://nats-0.nats:6222,nats://nats-1.nats:6222,nats://nats-2.nats:6222
  - -js
  - --store_dir=/data
"#,
            ),
            true,
        ),
        (
            "nats-server --routes --jetstream",
            "nats",
            "--routes --jetstream",
            sts(
                "nats",
                3,
                r#"
containers:
- name: nats
  image: example.com/nats-custom:1
  command: [nats-server, --routes, "nats://nats-0.nats:6222,nats://nats-1.nats:6222", --jetstream]
"#,
            ),
            true,
        ),
        (
            "rabbitmq pausing the minority",
            "rabbitmq",
            "cluster_partition_handling=pause_minority",
            sts(
                "rabbitmq",
                3,
                r#"
containers:
- name: rabbitmq
  image: rabbitmq:3.12-management
  command:
  - sh
  - -c
  - "echo 'cluster_partition_handling = pause_minority' >> /etc/rabbitmq/conf.d/20-partitions.conf; exec docker-entrypoint.sh rabbitmq-server"
"#,
            ),
            true,
        ),
        (
            "cockroachdb chart (start --join)",
            "cockroachdb",
            "start --join",
            sts(
                "cockroachdb",
                3,
                r#"
containers:
- name: db
  image: cockroachdb/cockroach:v23.1.11
  env:
  - {name: STATEFULSET_NAME, value: cockroachdb}
  - {name: STATEFULSET_FQDN, value: cockroachdb.ns.svc.cluster.local}
  command:
  - /bin/bash
  - -ecx
  - exec /cockroach/cockroach start --join=${STATEFULSET_NAME}-0.${STATEFULSET_FQDN}:26257,${STATEFULSET_NAME}-1.${STATEFULSET_FQDN}:26257,${STATEFULSET_NAME}-2.${STATEFULSET_FQDN}:26257 --advertise-host=$(hostname).${STATEFULSET_FQDN} --logtostderr=INFO --insecure --http-port=8080 --port=26257 --cache=25% --max-sql-memory=25%
"#,
            ),
            false,
        ),
        (
            "tidb pd",
            "tidb-pd",
            "--initial-cluster",
            sts(
                "pd",
                3,
                r#"
containers:
- name: pd
  image: pingcap/pd:v7.5.0
  command: [/pd-server, --name=$(POD_NAME), --data-dir=/data, --initial-cluster=pd-0=http://pd-0.pd:2380,pd-1=http://pd-1.pd:2380,pd-2=http://pd-2.pd:2380]
"#,
            ),
            true,
        ),
        (
            "tikv",
            "tikv",
            "--pd",
            sts(
                "tikv",
                3,
                r#"
containers:
- name: tikv
  image: pingcap/tikv:v7.5.0
  command: [/tikv-server, --pd=pd:2379, --addr=0.0.0.0:20160, --data-dir=/data]
"#,
            ),
            false,
        ),
        (
            "hashicorp/vault chart with raft",
            "vault",
            "VAULT_RAFT_NODE_ID",
            sts(
                "vault",
                3,
                r#"
containers:
- name: vault
  image: hashicorp/vault:1.15.2
  command: [/bin/sh, -ec]
  args:
  - |
    cp /vault/config/extraconfig-from-values.hcl /tmp/storageconfig.hcl;
    /usr/local/bin/docker-entrypoint.sh vault server -config=/tmp/storageconfig.hcl
  env:
  - name: VAULT_K8S_POD_NAME
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
  - {name: VAULT_ADDR, value: "http://127.0.0.1:8200"}
  - name: VAULT_RAFT_NODE_ID
    valueFrom: {fieldRef: {fieldPath: metadata.name}}
"#,
            ),
            true,
        ),
        (
            "vault storage \"raft\" in VAULT_LOCAL_CONFIG",
            "vault",
            "storage \"raft\"",
            sts(
                "vault",
                3,
                r#"
containers:
- name: vault
  image: vault:1.13.3
  args: [server]
  env:
  - name: VAULT_LOCAL_CONFIG
    value: |
      storage "raft" {
        path = "/vault/data"
      }
      listener "tcp" { address = "0.0.0.0:8200" }
"#,
            ),
            true,
        ),
    ]
}

/// Replicated systems that are not a quorum of their own pods, and near misses of the ones that
/// are: (case, manifest).
fn silent_cases() -> Vec<(&'static str, StatefulSet)> {
    vec![
        (
            "bitnami/redis replicas",
            sts(
                "redis-replicas",
                4,
                r#"
containers:
- name: redis
  image: docker.io/bitnami/redis:7.2.3-debian-11-r2
  command: [/bin/bash]
  args: [-c, /opt/bitnami/scripts/start-scripts/start-replica.sh]
  env:
  - {name: REDIS_REPLICATION_MODE, value: replica}
  - {name: REDIS_MASTER_HOST, value: redis-master-0.redis-headless.ns.svc.cluster.local}
  - {name: REDIS_MASTER_PORT_NUMBER, value: "6379"}
"#,
            ),
        ),
        (
            "redis with sentinel sidecar and a zookeeper-exporter-like sidecar",
            sts(
                "redis",
                4,
                r#"
containers:
- name: redis
  image: redis:7.2
  command: [redis-server, /data/conf/redis.conf]
- name: sentinel
  image: redis:7.2
  command: [redis-sentinel, /data/conf/sentinel.conf]
- name: exporter
  image: example.com/zookeeper-exporter:1.0
"#,
            ),
        ),
        (
            "bitnami/postgresql read replicas",
            sts(
                "pg-read",
                4,
                r#"
containers:
- name: postgresql
  image: docker.io/bitnami/postgresql:16.1.0-debian-11-r15
  env:
  - {name: POSTGRES_REPLICATION_MODE, value: slave}
  - {name: POSTGRES_MASTER_HOST, value: pg-primary}
  - {name: POSTGRES_CLUSTER_APP_NAME, value: my_application}
"#,
            ),
        ),
        (
            "mysql replicas",
            sts(
                "mysql",
                4,
                r#"
containers:
- name: mysql
  image: mysql:8.0
  args: [--server-id=2, --log-bin=mysql-bin, --relay-log=relay-bin, --read-only=ON]
"#,
            ),
        ),
        (
            "cassandra",
            sts(
                "cassandra",
                4,
                r#"
containers:
- name: cassandra
  image: cassandra:4.1
  env:
  - {name: CASSANDRA_SEEDS, value: "cassandra-0.cassandra.ns.svc.cluster.local"}
  - {name: CASSANDRA_CLUSTER_NAME, value: K8Demo}
"#,
            ),
        ),
        (
            "bitnami/kafka broker-only (voters named elsewhere)",
            sts(
                "kafka-broker",
                4,
                r#"
containers:
- name: kafka
  image: docker.io/bitnami/kafka:3.7.0-debian-12-r0
  env:
  - {name: KAFKA_CFG_PROCESS_ROLES, value: broker}
  - {name: KAFKA_CFG_CONTROLLER_QUORUM_VOTERS, value: "0@kafka-controller-0.kafka-controller-headless:9093"}
  - {name: KAFKA_CFG_CONTROLLER_LISTENER_NAMES, value: CONTROLLER}
"#,
            ),
        ),
        (
            "kafka in ZooKeeper mode",
            sts(
                "kafka",
                4,
                r#"
containers:
- name: kafka
  image: confluentinc/cp-kafka:7.5.0
  env:
  - {name: KAFKA_ZOOKEEPER_CONNECT, value: "zk-0.zk:2181,zk-1.zk:2181,zk-2.zk:2181"}
  - {name: KAFKA_BROKER_ID, value: "1"}
"#,
            ),
        ),
        (
            "bitnami/mongodb replica set",
            sts(
                "mongodb",
                4,
                r#"
containers:
- name: mongodb
  image: docker.io/bitnami/mongodb:7.0.4-debian-11-r0
  env:
  - {name: MONGODB_REPLICA_SET_MODE, value: secondary}
  - {name: MONGODB_INITIAL_PRIMARY_HOST, value: mongodb-0.mongodb-headless}
  - {name: MONGODB_REPLICA_SET_NAME, value: rs0}
"#,
            ),
        ),
        (
            "mongod --replSet",
            sts(
                "mongo",
                2,
                r#"
containers:
- name: mongo
  image: mongo:7.0
  command: [mongod, --replSet, rs0, --bind_ip_all]
"#,
            ),
        ),
        (
            "elasticsearch data nodes (explicit role without master)",
            sts(
                "es-data",
                4,
                r#"
containers:
- name: elasticsearch
  image: docker.elastic.co/elasticsearch/elasticsearch:8.5.1
  env:
  - {name: node.roles, value: "data,data_content,data_hot,ingest,"}
  - {name: discovery.seed_hosts, value: es-master-headless}
  - {name: cluster.initial_master_nodes, value: "es-master-0,es-master-1,es-master-2,"}
"#,
            ),
        ),
        (
            "elasticsearch coordinating-only node (empty roles)",
            sts(
                "es-coord",
                2,
                r#"
containers:
- name: elasticsearch
  image: docker.elastic.co/elasticsearch/elasticsearch:8.5.1
  env:
  - {name: node.roles, value: ""}
  - {name: discovery.seed_hosts, value: es-master-headless}
"#,
            ),
        ),
        (
            "elasticsearch with seed hosts only",
            sts(
                "es",
                2,
                r#"
containers:
- name: elasticsearch
  image: docker.elastic.co/elasticsearch/elasticsearch:8.5.1
  env:
  - {name: discovery.seed_hosts, value: es-headless}
"#,
            ),
        ),
        (
            "consul client agent",
            sts(
                "consul-client",
                2,
                r#"
containers:
- name: consul
  image: hashicorp/consul:1.17.0
  args: [agent, "-retry-join=consul-server-0.consul-server", -data-dir=/consul/data]
"#,
            ),
        ),
        (
            "nats cluster without JetStream",
            sts(
                "nats",
                4,
                r#"
containers:
- name: nats
  image: nats:2.10
  args: [--cluster_name=nats, "--routes=nats://nats-0.nats:6222,nats://nats-1.nats:6222"]
"#,
            ),
        ),
        (
            "rabbitmq without quorum configuration",
            sts(
                "rabbitmq",
                4,
                r#"
containers:
- name: rabbitmq
  image: docker.io/bitnami/rabbitmq:3.12.10-debian-11-r1
  env:
  - {name: RABBITMQ_FORCE_BOOT, value: "no"}
  - {name: RABBITMQ_NODE_TYPE, value: stats}
  - {name: RABBITMQ_USE_LONGNAME, value: "true"}
  - {name: RABBITMQ_PLUGINS, value: "rabbitmq_management, rabbitmq_peer_discovery_k8s"}
"#,
            ),
        ),
        (
            "vault on consul storage",
            sts(
                "vault",
                2,
                r#"
containers:
- name: vault
  image: hashicorp/vault:1.15.2
  args: [server]
  env:
  - name: VAULT_LOCAL_CONFIG
    value: 'storage "consul" { address = "consul:8500" }'
"#,
            ),
        ),
        (
            "a single etcd without a cluster",
            sts(
                "etcd",
                2,
                r#"
containers:
- name: etcd
  image: quay.io/coreos/etcd:v3.5.9
  command: [etcd, --data-dir=/data, --initial-cluster-state=new, --initial-cluster-token=x]
"#,
            ),
        ),
        (
            "etcd words in another program's script",
            sts(
                "patroni",
                4,
                r#"
containers:
- name: patroni
  image: example.com/patroni:3.2
  command: [sh, -c, "echo uses etcd --initial-cluster elsewhere; exec patroni /etc/patroni.yml"]
"#,
            ),
        ),
        (
            "cockroach single node",
            sts(
                "crdb",
                2,
                r#"
containers:
- name: db
  image: cockroachdb/cockroach:v23.1.11
  args: [start-single-node, --insecure]
"#,
            ),
        ),
    ]
}

#[test]
fn consensus_systems_are_detected_with_the_signal_they_show() {
    for (case, system, signal, s, odd) in quorum_cases() {
        let d = quorum::detect(&s).unwrap_or_else(|| panic!("{case}: not detected"));
        assert_eq!(d.system, system, "{case}");
        assert_eq!(d.signal, signal, "{case}");
        assert_eq!(d.odd, odd, "{case}");
        assert_eq!(quorum::of(&s), Quorum::Detected(d), "{case}");
    }
}

#[test]
fn replicated_but_not_quorum_systems_stay_silent() {
    for (case, s) in silent_cases() {
        assert_eq!(quorum::detect(&s), None, "{case}");
        let f = write(&s, None, &quorum_only(Mode::Enforce));
        assert!(
            f.violations.is_empty() && f.warnings.is_empty(),
            "{case}: {f:?}"
        );
        // Scaling down by more than half is no concern of the quorum rules either.
        let f = write(
            &with_replicas(&s, 1),
            Some(&with_replicas(&s, 5)),
            &quorum_only(Mode::Enforce),
        );
        assert!(f.allowed() && f.warnings.is_empty(), "{case}: {f:?}");
    }
}

#[test]
fn even_sizes_warn_odd_sizes_pass() {
    let p = quorum_only(Mode::Warn);
    for (case, system, signal, s, odd) in quorum_cases() {
        for n in [1, 3, 5] {
            let f = write(&with_replicas(&s, n), None, &p);
            assert!(f.allowed() && f.warnings.is_empty(), "{case} at {n}: {f:?}");
        }
        let f = write(&with_replicas(&s, 4), None, &p);
        assert!(f.allowed(), "{case}: warn never denies");
        if !odd {
            assert!(
                f.warnings.is_empty(),
                "{case}: the node count of a multi-Raft store is not its voter count: {f:?}"
            );
            continue;
        }
        assert_eq!(rules(&f.warnings), vec![RuleId::QuorumOdd], "{case}");
        let w = &f.warnings[0];
        assert_eq!(w.mode, Mode::Warn);
        let container = &s
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .name;
        assert_eq!(
            w.message,
            format!(
                "{system} (container {container}: {signal}) with 4 members tolerates 1 failure, like 3; use 3 or 5"
            ),
            "{case}"
        );
        assert!(
            f.warning_lines()[0].len() <= 200,
            "{}",
            f.warning_lines()[0]
        );
        let f = write(&with_replicas(&s, 2), None, &p);
        assert!(
            f.warnings[0]
                .message
                .ends_with("with 2 members tolerates 0 failures, like 1; use 1 or 3"),
            "{case}: {f:?}"
        );
    }
}

fn etcd() -> StatefulSet {
    quorum_cases().remove(0).3
}

#[test]
fn the_policy_decides_what_detection_does() {
    let four = with_replicas(&etcd(), 4);
    // Default: warn, naming the signal.
    let f = write(&four, None, &Policy::default());
    assert!(f.allowed());
    assert!(
        f.warning_lines().iter().any(|w| w
            == "[quorum-odd] etcd (container etcd: ETCD_INITIAL_CLUSTER) with 4 members tolerates 1 failure, like 3; use 3 or 5"),
        "{:?}",
        f.warning_lines()
    );
    // enforce: a denial.
    let f = write(&four, None, &quorum_only(Mode::Enforce));
    assert_eq!(rules(&f.violations), vec![RuleId::QuorumOdd]);
    assert_eq!(f.violations[0].mode, Mode::Enforce);
    assert!(f.denial().contains("[quorum-odd] etcd (container etcd"));
    // off: not evaluated at all.
    let f = write(&four, None, &quorum_only(Mode::Off));
    assert!(f.allowed() && f.warnings.is_empty(), "{f:?}");
    assert!(
        !f.results.iter().any(|(r, _, _)| *r == RuleId::QuorumOdd),
        "not evaluated: {:?}",
        f.results
    );
    // Never stricter than the rule's own mode.
    let mut p = quorum_only(Mode::Enforce);
    p.validation.rules.insert(RuleId::QuorumOdd, Mode::Warn);
    let f = write(&four, None, &p);
    assert!(f.allowed());
    assert_eq!(rules(&f.warnings), vec![RuleId::QuorumOdd]);
    p.validation.rules.insert(RuleId::QuorumOdd, Mode::Off);
    let f = write(&four, None, &p);
    assert!(
        f.allowed() && f.warnings.is_empty() && f.results.is_empty(),
        "{f:?}"
    );
    // An object override relaxes a detected rule like any other, when the policy allows it.
    let mut p = quorum_only(Mode::Enforce);
    p.validation.allow_object_overrides = true;
    let relaxed = annotated(&four, "stsguard.io/rule.quorum-odd", "off");
    assert!(write(&relaxed, None, &p).warnings.is_empty());
    let tighter = annotated(&four, "stsguard.io/rule.quorum-odd", "enforce");
    let mut p = quorum_only(Mode::Warn);
    p.validation.allow_object_overrides = true;
    assert!(
        write(&tighter, None, &p).allowed(),
        "an override never tightens"
    );
}

#[test]
fn the_annotation_forces_or_turns_off() {
    let four = with_replicas(&etcd(), 4);
    // "true": the rule at its configured mode (enforce), whatever quorumDetection says.
    for detection in [Mode::Warn, Mode::Off] {
        let f = write(
            &annotated(&four, "stsguard.io/quorum", "true"),
            None,
            &quorum_only(detection),
        );
        assert_eq!(rules(&f.violations), vec![RuleId::QuorumOdd], "{detection}");
        assert!(f.violations[0].message.contains("use 3 or 5"));
    }
    // "false": no detection for this object, even under enforce.
    let off = annotated(&four, "stsguard.io/quorum", "false");
    assert_eq!(quorum::of(&off), Quorum::No);
    let f = write(&off, None, &quorum_only(Mode::Enforce));
    assert!(f.allowed() && f.warnings.is_empty(), "{f:?}");
    let f = write(
        &with_replicas(&off, 1),
        Some(&with_replicas(&off, 5)),
        &quorum_only(Mode::Enforce),
    );
    assert!(f.allowed() && f.warnings.is_empty(), "{f:?}");
    // Anything else is refused on write (`safety-switch`); stored before, it reads as "true":
    // a safety switch fails closed.
    let other = annotated(&four, "stsguard.io/quorum", "maybe");
    assert_eq!(quorum::of(&other), Quorum::Annotated);
}

#[test]
fn scale_down_of_a_detected_quorum_on_update() {
    let p = quorum_only(Mode::Warn);
    let e = etcd();
    let f = write(&with_replicas(&e, 2), Some(&with_replicas(&e, 5)), &p);
    assert!(f.allowed());
    assert_eq!(
        rules(&f.warnings),
        vec![RuleId::QuorumOdd, RuleId::QuorumScaleDown]
    );
    assert_eq!(
        f.warnings[1].message,
        "etcd (container etcd: ETCD_INITIAL_CLUSTER): 5 -> 2 members drops below a majority (3) at once; scale 5 -> 3 -> 2, one step at a time"
    );
    assert!(
        write(&with_replicas(&e, 3), Some(&with_replicas(&e, 5)), &p)
            .warnings
            .is_empty()
    );
    // A multi-Raft store: no parity rule, but losing most nodes at once loses ranges.
    let crdb = quorum_cases()
        .into_iter()
        .find(|c| c.1 == "cockroachdb")
        .unwrap()
        .3;
    let f = write(&with_replicas(&crdb, 2), Some(&with_replicas(&crdb, 5)), &p);
    assert_eq!(rules(&f.warnings), vec![RuleId::QuorumScaleDown], "{f:?}");
    assert!(
        f.warnings[0]
            .message
            .starts_with("cockroachdb (container db: start --join): 5 -> 2")
    );
    let f = write(
        &with_replicas(&crdb, 2),
        Some(&with_replicas(&crdb, 5)),
        &quorum_only(Mode::Enforce),
    );
    assert_eq!(rules(&f.violations), vec![RuleId::QuorumScaleDown]);
}

#[test]
fn scale_requests_judge_the_cached_detected_statefulset() {
    let cached = etcd(); // 3 replicas, no annotation
    let l = StaticLookups {
        statefulsets: vec![Arc::new(cached)],
        authoritative: true,
        ..Default::default()
    };
    let scale = |n: i32, old: i32, p: &Policy| {
        validate(
            &Review {
                namespace: "ns",
                subject: Subject::Scale {
                    name: "etcd",
                    replicas: n,
                    old_replicas: Some(old),
                },
            },
            p,
            &l,
        )
    };
    let f = scale(4, 3, &Policy::default());
    assert!(f.allowed(), "{f:?}");
    assert_eq!(rules(&f.warnings), vec![RuleId::QuorumOdd]);
    assert!(
        f.warnings[0]
            .message
            .contains("etcd (container etcd: ETCD_INITIAL_CLUSTER) with 4 members"),
        "{f:?}"
    );
    let enforce = quorum_only(Mode::Enforce);
    let f = scale(4, 3, &enforce);
    assert!(!f.allowed());
    assert_eq!(rules(&f.violations), vec![RuleId::QuorumOdd]);
    assert!(scale(5, 3, &enforce).allowed());
    let f = scale(1, 3, &enforce);
    assert_eq!(rules(&f.violations), vec![RuleId::QuorumScaleDown]);
    assert!(scale(4, 3, &quorum_only(Mode::Off)).warnings.is_empty());
}

#[test]
fn check_reports_detection_the_same_way() {
    let doc = serde_json::to_value(with_replicas(&etcd(), 4)).unwrap();
    let run = stsguard::check::run(vec![("etcd.yaml".into(), doc)], &Policy::default()).unwrap();
    let c = &run.checked[0];
    assert!(c.allowed, "warn by default");
    assert!(
        c.warnings.iter().any(|w| w.starts_with(&format!(
            "StatefulSet ns/{}: [quorum-odd] etcd (container etcd: ETCD_INITIAL_CLUSTER) with 4 members tolerates 1 failure",
            c.name
        ))),
        "{:?}",
        c.warnings
    );
    let p = Policy::from_yaml("validation:\n  quorumDetection: enforce\n", "p").unwrap();
    let doc = serde_json::to_value(with_replicas(&etcd(), 4)).unwrap();
    let run = stsguard::check::run(vec![("etcd.yaml".into(), doc)], &p).unwrap();
    assert!(!run.checked[0].allowed);
}

#[test]
fn policy_key_parses_and_bad_values_are_named() {
    assert_eq!(Policy::default().validation.quorum_detection, Mode::Warn);
    for (v, m) in [
        ("warn", Mode::Warn),
        ("enforce", Mode::Enforce),
        ("off", Mode::Off),
    ] {
        let p = Policy::from_yaml(&format!("validation:\n  quorumDetection: {v}\n"), "p").unwrap();
        assert_eq!(p.validation.quorum_detection, m);
    }
    let e = Policy::from_yaml("validation:\n  quorumDetection: maybe\n", "p")
        .unwrap_err()
        .to_string();
    assert!(e.contains("validation.quorumDetection"), "{e}");
}

#[test]
fn image_names_drop_registry_tag_and_digest() {
    for (image, name) in [
        ("quay.io/coreos/etcd:v3.5", "etcd"),
        ("bitnami/etcd", "etcd"),
        ("registry.k8s.io/etcd:3.5.9-0", "etcd"),
        ("localhost:5000/team/zookeeper@sha256:abc", "zookeeper"),
        ("kafka", "kafka"),
        ("gcr.io/a/b/c/cockroach:v1@sha256:def", "cockroach"),
    ] {
        assert_eq!(quorum::image_name(image), name, "{image}");
    }
}

/// Detection is linear in the pod template: many containers, long env lists and a long script
/// with repeated keys on one line.
#[test]
fn detection_is_linear_in_input_size() {
    let line = "node.master: maybe ".repeat(100_000); // 1.9 MB on one line
    let env: Vec<serde_json::Value> = (0..5_000)
        .map(|i| serde_json::json!({"name": format!("V{i}"), "value": "node.roles= x: y = z"}))
        .collect();
    let mut containers = vec![serde_json::json!({
        "name": "es", "image": "elasticsearch:8.5.1",
        "command": ["sh", "-c", line], "env": env,
    })];
    for i in 0..200 {
        containers.push(serde_json::json!({
            "name": format!("side{i}"), "image": "elasticsearch:8.5.1",
            "args": ["--a", "b", "-Ex=y"], "env": [{"name": "cluster.initial_master_nodes"}],
        }));
    }
    let pod = serde_json::json!({ "containers": containers });
    let s = sts("big", 4, &serde_json::to_string(&pod).unwrap());
    let t = Instant::now();
    let d = quorum::detect(&s);
    let took = t.elapsed();
    // The first container shows no master signal; a sidecar with the bootstrap setting does.
    assert_eq!(d.map(|d| d.container), Some("side0".to_string()));
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

// ---------------------------------------------------------------------------------------------
// The real-world fixtures.

/// Every apps/v1 fixture through `stsguard check` (its Service file answering the look-up), with
/// detection off and at its default (warn): findings change only on the detected quorum sets.
#[test]
fn fixtures_get_no_new_finding_unless_detected() {
    let dir = common::fixtures().join("statefulsets");
    let mut off = Policy::default();
    off.validation.quorum_detection = Mode::Off;
    let warn = Policy::default();
    let mut detected = BTreeMap::new();
    let mut changed = BTreeMap::new();
    for (path, raw) in common::apps_v1_statefulsets() {
        let name = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".yaml")
            .to_string();
        let typed: StatefulSet = serde_json::from_value(raw.clone()).unwrap();
        if let Some(d) = quorum::detect(&typed) {
            detected.insert(name.clone(), format!("{}: {}", d.system, d.signal));
        }
        let mut docs = vec![(name.clone(), raw)];
        let svc = dir.join(format!("{name}.service.yaml"));
        if svc.exists() {
            let text = std::fs::read_to_string(&svc).unwrap();
            for v in stsguard::check::yaml_documents(&text).unwrap() {
                docs.push((name.clone(), v));
            }
        }
        let a = stsguard::check::run(docs.clone(), &off).unwrap();
        let b = stsguard::check::run(docs, &warn).unwrap();
        let (a, b) = (&a.checked[0], &b.checked[0]);
        assert_eq!(a.violations, b.violations, "{name}: warn never denies");
        let new: Vec<&String> = b
            .warnings
            .iter()
            .filter(|w| !a.warnings.contains(w))
            .collect();
        assert!(
            a.warnings.iter().all(|w| b.warnings.contains(w)),
            "{name}: detection takes nothing away"
        );
        if !new.is_empty() {
            changed.insert(name, new.into_iter().cloned().collect::<Vec<_>>());
        }
    }
    eprintln!("detected: {detected:#?}\nnew findings: {changed:#?}");
    let expect: BTreeMap<String, String> = [
        ("cockroachdb-k8s-examples", "cockroachdb: start --join"),
        ("consul-consul-on-kubernetes", "consul: -bootstrap-expect"),
        (
            "elasticsearch-logging-k8s-addons",
            "elasticsearch: MINIMUM_MASTER_NODES",
        ),
        ("etcd-k8s-e2e", "etcd: --initial-cluster"),
        (
            "pzoo-yolean-kubernetes-kafka",
            "zookeeper: command zookeeper-server-start.sh",
        ),
        ("zk-k8s-website", "zookeeper: image kubernetes-zookeeper"),
        ("zoo-k8s-e2e", "zookeeper: command zkServer.sh"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(detected, expect);
    // Only the 2-node Elasticsearch (both master-eligible) is even; every other detected set
    // runs 3.
    let expect_changed: BTreeMap<String, Vec<String>> = [(
        "elasticsearch-logging-k8s-addons".to_string(),
        vec![
            "StatefulSet logging/elasticsearch-logging: [quorum-odd] elasticsearch (container elasticsearch-logging: MINIMUM_MASTER_NODES) with 2 members tolerates 0 failures, like 1; use 1 or 3"
                .to_string(),
        ],
    )]
    .into_iter()
    .collect();
    assert_eq!(changed, expect_changed);
}

/// The apps/v1beta1 fixtures (`stsguard check` passes them over) read as apps/v1.
#[test]
fn legacy_fixtures_detection() {
    let dir = common::fixtures().join("statefulsets");
    let mut found = BTreeMap::new();
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("legacy-") || name.ends_with(".service.yaml") {
            continue;
        }
        let mut v = stsguard::check::yaml_documents(&std::fs::read_to_string(&p).unwrap())
            .unwrap()
            .remove(0);
        v["apiVersion"] = "apps/v1".into();
        if v["spec"].get("selector").is_none() {
            v["spec"]["selector"] = serde_json::json!({}); // optional in apps/v1beta1
        }
        let s: StatefulSet = serde_json::from_value(v).unwrap();
        n += 1;
        if let Some(d) = quorum::detect(&s) {
            found.insert(name, format!("{}: {}", d.system, d.signal));
        }
    }
    assert_eq!(n, 3, "legacy kafka, mongo and zookeeper");
    // Kafka on ZooKeeper and a MongoDB replica set stay silent.
    assert_eq!(
        found,
        [(
            "legacy-zk-contrib.yaml".to_string(),
            "zookeeper: image k8szk".to_string()
        )]
        .into_iter()
        .collect()
    );
}

/// The chart's `policy.validation.quorumDetection` reaches the server's policy; a bad value is
/// refused by the chart's schema.
#[test]
fn chart_passes_quorum_detection() {
    use std::process::Command;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let local = root.join(".tools/bin/helm");
    let helm = if local.exists() {
        local
    } else {
        std::path::PathBuf::from("helm")
    };
    let chart = root.join("charts/stsguard");
    let render = |set: &str| {
        Command::new(&helm)
            .args(["template", "t", chart.to_str().unwrap(), "--set", set])
            .output()
            .expect("helm is not installed: run .ci/install-tools.sh")
    };
    let out = render("policy.validation.quorumDetection=enforce");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = stsguard::check::yaml_documents(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("the policy ConfigMap");
    let p = Policy::from_yaml(cm["data"]["policy.yaml"].as_str().unwrap(), "chart").unwrap();
    assert_eq!(p.validation.quorum_detection, Mode::Enforce);
    assert!(
        !render("policy.validation.quorumDetection=sometimes")
            .status
            .success()
    );
}
