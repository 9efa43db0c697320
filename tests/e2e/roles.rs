//! Scenario `roles`: roles end to end, with the real StatefulSet controller and scheduler.
//!
//! Two Node objects made by the test (tainted so that only this scenario's pods land on them),
//! one labelled `tier=big`; the test plays the kubelet: node heartbeats, pods bound to a node
//! marked Running and Ready through `pods/status`, and terminating pods removed. A StatefulSet
//! `db` of 3 with `stsguard.io/roles: primary=0,replica=*`, the primary placed on `tier=big`
//! nodes, and required anti-affinity:
//!
//! - the controller's own Pod CREATEs get `stsguard.io/role` (primary for db-0, replica else);
//! - db-0 lands on the big node, db-1 on the other, db-2 stays Pending (unschedulable: two
//!   nodes, three replicas that may not share one);
//! - scaled to 2, then a rolling update (an env value changes): the recreated pods keep their
//!   roles and places, and the StatefulSet rolled out exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    EnvVar, Node, NodeCondition, NodeSpec, NodeStatus, Pod, PodCondition, PodStatus, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};

use crate::harness::{eventually, say};
use crate::kube_util;
use crate::setup::Ctx;

const NS: &str = "e2e-roles";
const POOL: &str = "e2e.stsguard.io/pool";
const BIG: &str = "e2e-big";
const SMALL: &str = "e2e-small";
const ROLE: &str = "stsguard.io/role";
const MANAGER: &str = "e2e-roles";

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

fn node(name: &str, tier: Option<&str>) -> Node {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        (POOL.to_string(), "roles".to_string()),
    ]);
    if let Some(t) = tier {
        labels.insert("tier".into(), t.into());
    }
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: POOL.into(),
                value: Some("roles".into()),
                effect: "NoSchedule".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The kubelet's status report: Ready, with room for pods (also the heartbeat).
async fn report_node(client: &Client, name: &str) -> Result<(), kube::Error> {
    let room: BTreeMap<String, Quantity> = [("cpu", "4"), ("memory", "8Gi"), ("pods", "110")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.into())))
        .collect();
    let status = Node {
        status: Some(NodeStatus {
            capacity: Some(room.clone()),
            allocatable: Some(room),
            conditions: Some(vec![NodeCondition {
                type_: "Ready".into(),
                status: "True".into(),
                reason: Some("KubeletReady".into()),
                message: Some("the end-to-end test plays kubelet".into()),
                last_heartbeat_time: Some(now()),
                last_transition_time: Some(now()),
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<Node>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .map(|_| ())
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn running_and_ready() -> Pod {
    let cond = |t: &str| PodCondition {
        type_: t.into(),
        status: "True".into(),
        last_transition_time: Some(now()),
        ..Default::default()
    };
    Pod {
        status: Some(PodStatus {
            phase: Some("Running".into()),
            start_time: Some(now()),
            conditions: Some(
                ["PodScheduled", "Initialized", "ContainersReady", "Ready"]
                    .into_iter()
                    .map(cond)
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The fake kubelet: node heartbeats every 10 s, pods bound to a node marked Running and Ready,
/// terminating pods removed (a kubelet confirms a deletion with a zero grace period).
struct Kubelet {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    /// uid -> (pod name, role label) of every pod seen.
    seen: Arc<std::sync::Mutex<BTreeMap<String, (String, String)>>>,
}

impl Kubelet {
    fn start(client: Client) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<std::sync::Mutex<BTreeMap<String, (String, String)>>> = Default::default();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let task = tokio::spawn(async move {
            let pods = Api::<Pod>::namespaced(client.clone(), NS);
            let mut beat = Instant::now() - Duration::from_secs(60);
            while !stop2.load(Ordering::Relaxed) {
                if beat.elapsed() > Duration::from_secs(10) {
                    for n in [BIG, SMALL] {
                        if let Err(e) = report_node(&client, n).await {
                            say(format!("e2e roles: kubelet: node {n} status: {e}"));
                        }
                    }
                    beat = Instant::now();
                }
                let list = match pods.list(&ListParams::default()).await {
                    Ok(l) => l.items,
                    Err(_) => Vec::new(),
                };
                for p in list {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let uid = p.metadata.uid.clone().unwrap_or_default();
                    let role = p
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(ROLE))
                        .cloned()
                        .unwrap_or_default();
                    seen2
                        .lock()
                        .unwrap()
                        .entry(uid.clone())
                        .or_insert((name.clone(), role));
                    if p.metadata.deletion_timestamp.is_some() {
                        let dp = DeleteParams {
                            grace_period_seconds: Some(0),
                            preconditions: Some(Preconditions {
                                uid: Some(uid),
                                resource_version: None,
                            }),
                            ..Default::default()
                        };
                        let _ = pods.delete(&name, &dp).await;
                    } else if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                        && !is_ready(&p)
                    {
                        let _ = pods
                            .patch_status(
                                &name,
                                &PatchParams::default(),
                                &Patch::Merge(&running_and_ready()),
                            )
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Kubelet { stop, task, seen }
    }

    async fn stop(self) -> BTreeMap<String, (String, String)> {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        self.seen.lock().unwrap().clone()
    }
}

fn db(replicas: i32, mode: &str) -> StatefulSet {
    let mut s = kube_util::statefulset(
        "db",
        replicas,
        &[
            ("stsguard.io/roles", "primary=0,replica=*"),
            ("stsguard.io/role-node-selector.primary", "tier=big"),
            ("stsguard.io/anti-affinity", "required"),
        ],
    );
    let pod = s.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
    pod.tolerations = Some(vec![Toleration {
        key: Some(POOL.into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }]);
    pod.containers[0].env = Some(vec![EnvVar {
        name: "MODE".into(),
        value: Some(mode.into()),
        ..Default::default()
    }]);
    s
}

fn label<'a>(p: &'a Pod, key: &str) -> Option<&'a str> {
    p.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

fn node_of(p: &Pod) -> Option<&str> {
    p.spec.as_ref()?.node_name.as_deref()
}

fn scheduled_condition(p: &Pod) -> Option<&PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
}

/// db-0 Ready on the big node as primary, db-1 Ready on the other as replica (the recreated
/// ones when `revision` is given), with stsguard's init container and node selector.
fn check_placed(
    pods: &BTreeMap<String, Pod>,
    revision: Option<&str>,
    image: &str,
) -> Result<(), String> {
    for (name, role, node) in [("db-0", "primary", BIG), ("db-1", "replica", SMALL)] {
        let p = pods.get(name).ok_or(format!("{name} not created yet"))?;
        if let Some(rev) = revision {
            if label(p, "controller-revision-hash") != Some(rev) {
                return Err(format!("{name} not updated yet"));
            }
        }
        if !is_ready(p) {
            return Err(format!("{name} not ready yet (node {:?})", node_of(p)));
        }
        assert_eq!(label(p, ROLE), Some(role), "{name}: role label");
        assert_eq!(node_of(p), Some(node), "{name}: placed on the wrong node");
        let spec = p.spec.as_ref().unwrap();
        let selector = spec.node_selector.clone().unwrap_or_default();
        assert_eq!(
            selector.get("tier").map(String::as_str),
            (role == "primary").then_some("big"),
            "{name}: the role's node selector"
        );
        let init = spec.init_containers.as_ref().and_then(|c| c.first());
        assert_eq!(
            init.map(|c| (c.name.as_str(), c.image.as_deref())),
            Some(("stsguard-role", Some(image))),
            "{name}: the role init container (the chart's image) comes first"
        );
        // The primary's FQDN, the namespace left to the kubelet's $(VAR) expansion: POD_NAMESPACE
        // must then be defined before it in the same container.
        let env = spec.containers[0].env.clone().unwrap_or_default();
        let at = |n: &str| env.iter().position(|e| e.name == n);
        let (Some(ns_at), Some(fqdn_at)) = (at("POD_NAMESPACE"), at("STS_PRIMARY_FQDN")) else {
            panic!("{name}: POD_NAMESPACE and STS_PRIMARY_FQDN: {env:?}");
        };
        assert!(
            ns_at < fqdn_at,
            "{name}: POD_NAMESPACE after STS_PRIMARY_FQDN: {env:?}"
        );
        assert_eq!(
            env[ns_at]
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .map(|f| f.field_path.as_str()),
            Some("metadata.namespace"),
            "{name}: POD_NAMESPACE"
        );
        assert_eq!(
            env[fqdn_at].value.as_deref(),
            Some("db-0.db.$(POD_NAMESPACE).svc.cluster.local"),
            "{name}: STS_PRIMARY_FQDN"
        );
    }
    Ok(())
}

async fn pods_by_name(client: &Client) -> BTreeMap<String, Pod> {
    Api::<Pod>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn run(ctx: Arc<Ctx>) -> String {
    let client = ctx.client.clone();
    let image = ctx.policy.mutation.roles.image.clone();
    assert_eq!(
        image, "stsguard:0.1.0",
        "the chart's policy names its own image"
    );
    kube_util::create_namespace(&client, NS).await;
    let nodes = Api::<Node>::all(client.clone());
    for (n, tier) in [(BIG, Some("big")), (SMALL, None)] {
        nodes
            .create(&PostParams::default(), &node(n, tier))
            .await
            .unwrap_or_else(|e| panic!("create node {n}: {e}"));
    }
    let kubelet = Kubelet::start(client.clone());
    eventually(
        "the nodes to be Ready and untainted but for the pool",
        30,
        || {
            let nodes = nodes.clone();
            async move {
                for n in [BIG, SMALL] {
                    let node = nodes.get(n).await.map_err(|e| e.to_string())?;
                    let taints: Vec<String> = node
                        .spec
                        .and_then(|s| s.taints)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| t.key)
                        .collect();
                    if taints != [POOL] {
                        return Err(format!("{n} taints {taints:?}"));
                    }
                }
                Ok(())
            }
        },
    )
    .await;

    let api = Api::<StatefulSet>::namespaced(client.clone(), NS);
    api.patch(
        "db",
        &PatchParams::apply(MANAGER),
        &Patch::Apply(&db(3, "v1")),
    )
    .await
    .unwrap_or_else(|e| panic!("create db: {}", kube_util::api_message(&e)));
    let t = Instant::now();
    let first = eventually(
        "db-0 and db-1 Running and Ready, db-2 unschedulable",
        120,
        || {
            let (client, image) = (client.clone(), image.clone());
            async move {
                let pods = pods_by_name(&client).await;
                check_placed(&pods, None, &image)?;
                let p2 = pods.get("db-2").ok_or("db-2 not created yet")?;
                let cond = scheduled_condition(p2).ok_or("db-2 not tried by the scheduler yet")?;
                if cond.status != "False" || cond.reason.as_deref() != Some("Unschedulable") {
                    return Err(format!("db-2: {cond:?}"));
                }
                Ok(pods)
            }
        },
    )
    .await;
    let p2 = &first["db-2"];
    assert_eq!(label(p2, ROLE), Some("replica"), "db-2: role label");
    assert_eq!(node_of(p2), None, "db-2 must not be bound");
    let why = scheduled_condition(p2)
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        why.contains("anti-affinity"),
        "db-2 is unschedulable for another reason: {why}"
    );
    say(format!(
        "e2e roles: db-0 primary on {BIG} (tier=big), db-1 replica on {SMALL}, db-2 replica Pending ({why}) after {:.1} s",
        t.elapsed().as_secs_f64()
    ));

    // Scale to 2 through the scale subresource (allowed: no quorum), then a rolling update.
    api.patch_scale(
        "db",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 2}})),
    )
    .await
    .unwrap_or_else(|e| panic!("scale db to 2: {}", kube_util::api_message(&e)));
    eventually("db-2 to go", 60, || {
        let client = client.clone();
        async move {
            let pods = pods_by_name(&client).await;
            if pods.contains_key("db-2") {
                Err("db-2 still there".to_string())
            } else {
                Ok(())
            }
        }
    })
    .await;
    let before: BTreeSet<String> = ["db-0", "db-1"]
        .iter()
        .map(|n| first[*n].metadata.uid.clone().unwrap())
        .collect();
    let updated = api
        .patch(
            "db",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&db(2, "v2")),
        )
        .await
        .unwrap_or_else(|e| panic!("update db: {}", kube_util::api_message(&e)));
    assert_eq!(
        updated.metadata.generation,
        Some(3),
        "created, scaled, updated: generation 3"
    );
    let t = Instant::now();
    let rolled = eventually("the rolling update to finish", 120, || {
        let (client, api, image) = (client.clone(), api.clone(), image.clone());
        async move {
            let sts = api.get("db").await.map_err(|e| e.to_string())?;
            let st = sts.status.clone().unwrap_or_default();
            let rev = st.update_revision.clone().unwrap_or_default();
            if st.observed_generation != Some(3)
                || st.current_revision.as_deref() != Some(rev.as_str())
                || st.updated_replicas != Some(2)
                || st.ready_replicas != Some(2)
            {
                return Err(format!("status {st:?}"));
            }
            let pods = pods_by_name(&client).await;
            check_placed(&pods, Some(&rev), &image)?;
            Ok((sts, pods))
        }
    })
    .await;
    let (sts, pods) = rolled;
    assert_eq!(sts.metadata.generation, Some(3), "one rollout only");
    for n in ["db-0", "db-1"] {
        let p = &pods[n];
        assert!(
            !before.contains(p.metadata.uid.as_ref().unwrap()),
            "{n} was not recreated"
        );
        let env = p.spec.as_ref().unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default();
        assert!(
            env.iter()
                .any(|e| e.name == "MODE" && e.value.as_deref() == Some("v2")),
            "{n}: the new template"
        );
    }
    say(format!(
        "e2e roles: rolling update done in {:.1} s: db-0 primary on {BIG}, db-1 replica on {SMALL}, roles kept",
        t.elapsed().as_secs_f64()
    ));
    let seen = kubelet.stop().await;
    let mut per_role: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, role) in seen.values() {
        per_role
            .entry(if role.is_empty() {
                "(none)".into()
            } else {
                role.clone()
            })
            .or_default()
            .push(name.clone());
    }
    assert!(
        !per_role.contains_key("(none)"),
        "pods created without a role label: {per_role:?}"
    );
    let counts: Vec<String> = per_role
        .iter()
        .map(|(r, p)| format!("{r} {} ({})", p.len(), p.join(",")))
        .collect();
    let summary = format!(
        "pods labelled per role: {}; primary placed by tier=big, replica Pending under required anti-affinity, roles kept through a rolling update",
        counts.join(", ")
    );
    say(format!("e2e roles: {summary}"));
    summary
}
