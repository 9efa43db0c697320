//! Scenario `protect`: delete protection keeps the data, not only the StatefulSet object. A
//! protected StatefulSet of 3 replicas with its claims, and beside it a ConfigMap, a Secret, a
//! Role and a Service: `kubectl delete namespace` is refused before the namespace controller
//! deletes anything, and every object stays; claim deletes are judged by ordinal and by name;
//! once unprotected, the namespace deletes completely (the namespace controller's claim deletes,
//! reviewed without a `request.name`, are allowed). Then a protected StatefulSet that is itself
//! being deleted: it does not hold its namespace, but its claim stays until it is gone.
//!
//! The pods select a node that does not exist, so they stay unscheduled: no kubelet has to
//! confirm their deletion, and the namespace can go.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Secret, Service, ServicePort, ServiceSpec, Volume,
    VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::harness::{eventually, say};
use crate::kube_util;
use crate::setup::Ctx;

const NS: &str = "e2e-protect";
/// The namespace of the StatefulSet that is being deleted.
const LEAVING_NS: &str = "e2e-protect-leaving";
const WEBHOOK: &str =
    "admission webhook \"delete-protection.validate.stsguard.io\" denied the request";

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    }
}

fn claim_spec() -> PersistentVolumeClaimSpec {
    PersistentVolumeClaimSpec {
        access_modes: Some(vec!["ReadWriteOnce".into()]),
        resources: Some(VolumeResourceRequirements {
            requests: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity("1Gi".into()),
            )])),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn claim(name: &str) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(name),
        spec: Some(claim_spec()),
        ..Default::default()
    }
}

/// `replicas` pods created at once (Parallel), each with claim `data-<name>-<ordinal>`, on a
/// node that does not exist; `extra_claim`: also mounted by name.
fn statefulset(
    name: &str,
    replicas: i32,
    protect: Option<&str>,
    extra_claim: Option<&str>,
) -> StatefulSet {
    let annotations: Vec<(&str, &str)> = protect
        .map(|p| vec![("stsguard.io/protect", p)])
        .unwrap_or_default();
    let mut sts = kube_util::statefulset(name, replicas, &annotations);
    let spec = sts.spec.as_mut().unwrap();
    spec.pod_management_policy = Some("Parallel".into());
    spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
        metadata: meta("data"),
        spec: Some(claim_spec()),
        ..Default::default()
    }]);
    let pod = spec.template.spec.as_mut().unwrap();
    pod.node_selector = Some(BTreeMap::from([(
        "e2e.stsguard.io/no-such-node".to_string(),
        "true".to_string(),
    )]));
    if let Some(c) = extra_claim {
        pod.volumes = Some(vec![Volume {
            name: "config".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.into(),
                read_only: Some(true),
            }),
            ..Default::default()
        }]);
    }
    sts
}

async fn wait_for_claims(claims: &Api<PersistentVolumeClaim>, names: &[String]) {
    eventually(
        &format!("the StatefulSet controller to create claims {names:?}"),
        60,
        || async {
            let mut missing = Vec::new();
            for n in names {
                if claims
                    .get_opt(n)
                    .await
                    .map_err(|e| e.to_string())?
                    .is_none()
                {
                    missing.push(n.clone());
                }
            }
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("missing {missing:?}"))
            }
        },
    )
    .await;
}

/// The claim exists and is not being deleted.
async fn claim_kept(claims: &Api<PersistentVolumeClaim>, name: &str) -> bool {
    claims
        .get_opt(name)
        .await
        .unwrap()
        .is_some_and(|c| c.metadata.deletion_timestamp.is_none())
}

pub async fn run(ctx: Arc<Ctx>) -> String {
    let client = ctx.client.clone();
    let pp = PostParams::default();
    kube_util::create_namespace(&client, NS).await;
    let sets = Api::<StatefulSet>::namespaced(client.clone(), NS);
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), NS);
    let namespaces = Api::<Namespace>::all(client.clone());

    // What lives beside the data: created before the StatefulSets, so they hold nothing.
    claims.create(&pp, &claim("kept-config")).await.unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(
            &pp,
            &ConfigMap {
                metadata: meta("settings"),
                data: Some(BTreeMap::from([(
                    "mode".to_string(),
                    "primary".to_string(),
                )])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(
            &pp,
            &Secret {
                metadata: meta("credentials"),
                string_data: Some(BTreeMap::from([(
                    "password".to_string(),
                    "e2e".to_string(),
                )])),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    Api::<Role>::namespaced(client.clone(), NS)
        .create(
            &pp,
            &Role {
                metadata: meta("reader"),
                rules: Some(vec![PolicyRule {
                    api_groups: Some(vec!["".into()]),
                    resources: Some(vec!["configmaps".into()]),
                    verbs: vec!["get".into()],
                    ..Default::default()
                }]),
            },
        )
        .await
        .unwrap();
    Api::<Service>::namespaced(client.clone(), NS)
        .create(
            &pp,
            &Service {
                metadata: meta("kept"),
                spec: Some(ServiceSpec {
                    cluster_ip: Some("None".into()),
                    selector: Some(BTreeMap::from([("app".to_string(), "kept".to_string())])),
                    ports: Some(vec![ServicePort {
                        port: 5432,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for sts in [
        statefulset("kept", 3, Some("true"), Some("kept-config")),
        statefulset("loose", 1, None, None),
    ] {
        sets.create(&pp, &sts).await.unwrap_or_else(|e| {
            panic!(
                "create {:?}: {}",
                sts.metadata.name,
                kube_util::api_message(&e)
            )
        });
    }
    let kept_claims: Vec<String> = (0..3).map(|i| format!("data-kept-{i}")).collect();
    wait_for_claims(&claims, &kept_claims).await;
    wait_for_claims(&claims, &["data-loose-0".to_string()]).await;
    // Claims that are no pod's: above the replicas (as a scale-down leaves them), and a name
    // that only looks like a kept one.
    for name in ["data-kept-5", "data-kept-01"] {
        claims.create(&pp, &claim(name)).await.unwrap();
    }

    // 1. The namespace: refused at the door, dry run first (until stsguard's cache has the
    //    StatefulSet, a delete would be answered per onError: the dry run finds out safely).
    let dry = eventually(
        "a dry-run delete of the namespace refused by [delete-protection]",
        20,
        || async {
            let r = ctx
                .kubectl
                .run(&["delete", "namespace", NS, "--dry-run=server"])
                .await;
            if !r.ok && r.errors().contains("[delete-protection]") {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        },
    )
    .await;
    let del = ctx
        .kubectl
        .run(&["delete", "namespace", NS, "--wait=false"])
        .await;
    let errors = del.errors();
    assert!(
        !del.ok
            && errors.contains(WEBHOOK)
            && errors.contains(&format!(
                "[delete-protection] namespace {NS} holds protected StatefulSet kept; to delete the namespace, first: kubectl -n {NS} annotate sts kept stsguard.io/protect=false --overwrite"
            )),
        "kubectl delete namespace must be refused: {del:?}"
    );
    assert_eq!(
        dry.errors(),
        errors,
        "dry run and real delete answered alike"
    );
    say(format!(
        "e2e protect: kubectl delete namespace {NS} refused: {}",
        errors.trim()
    ));
    // Nothing was deleted.
    let ns = namespaces.get(NS).await.unwrap();
    assert!(
        ns.metadata.deletion_timestamp.is_none()
            && ns.status.and_then(|s| s.phase).as_deref() == Some("Active"),
        "the namespace is not terminating"
    );
    for name in kept_claims
        .iter()
        .map(String::as_str)
        .chain(["data-loose-0", "kept-config"])
    {
        assert!(claim_kept(&claims, name).await, "claim {name} kept");
    }
    assert!(sets.get_opt("kept").await.unwrap().is_some());
    assert!(
        Api::<ConfigMap>::namespaced(client.clone(), NS)
            .get_opt("settings")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<Secret>::namespaced(client.clone(), NS)
            .get_opt("credentials")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<Role>::namespaced(client.clone(), NS)
            .get_opt("reader")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        Api::<Service>::namespaced(client.clone(), NS)
            .get_opt("kept")
            .await
            .unwrap()
            .is_some()
    );

    // 2. Claims: the ones in use and the one mounted by name are kept (dry run too); the others go.
    for name in ["data-kept-0", "data-kept-2", "kept-config"] {
        let r = ctx
            .kubectl
            .run(&["-n", NS, "delete", "pvc", name, "--wait=false"])
            .await;
        assert!(
            !r.ok
                && r.errors().contains(WEBHOOK)
                && r.errors().contains(&format!(
                    "[delete-protection] PersistentVolumeClaim {name} holds the data of protected StatefulSet kept ("
                )),
            "kubectl delete pvc {name} must be refused: {r:?}"
        );
        assert!(claim_kept(&claims, name).await, "{name} kept");
    }
    let r = ctx
        .kubectl
        .run(&["-n", NS, "delete", "pvc", "data-kept-1", "--dry-run=server"])
        .await;
    assert!(!r.ok && r.errors().contains("[delete-protection]"), "{r:?}");
    say(format!(
        "e2e protect: kubectl delete pvc data-kept-1 --dry-run=server refused: {}",
        r.errors().trim()
    ));
    for name in ["data-kept-5", "data-kept-01", "data-loose-0"] {
        let r = ctx
            .kubectl
            .run(&["-n", NS, "delete", "pvc", name, "--wait=false"])
            .await;
        assert!(r.ok, "kubectl delete pvc {name} is allowed: {r:?}");
    }
    // A scale-down frees the claim of the ordinal it removes (once stsguard's cache has it).
    let r = ctx
        .kubectl
        .run(&["-n", NS, "scale", "statefulset/kept", "--replicas=2"])
        .await;
    assert!(r.ok, "{r:?}");
    eventually(
        "the claim of the removed ordinal, data-kept-2, to be deletable",
        20,
        || async {
            let r = ctx
                .kubectl
                .run(&["-n", NS, "delete", "pvc", "data-kept-2", "--wait=false"])
                .await;
            if r.ok { Ok(()) } else { Err(format!("{r:?}")) }
        },
    )
    .await;
    assert!(claim_kept(&claims, "data-kept-1").await);

    // 3. Unprotected, the namespace deletes completely; the namespace controller's claim deletes
    //    (no request.name) are reviewed and allowed.
    let r = ctx
        .kubectl
        .run(&[
            "-n",
            NS,
            "annotate",
            "--overwrite",
            "statefulset/kept",
            "stsguard.io/protect=false",
        ])
        .await;
    assert!(r.ok, "{r:?}");
    eventually(
        "a dry-run delete of the unprotected namespace allowed",
        20,
        || async {
            let r = ctx
                .kubectl
                .run(&["delete", "namespace", NS, "--dry-run=server"])
                .await;
            if r.ok { Ok(()) } else { Err(format!("{r:?}")) }
        },
    )
    .await;
    let r = ctx
        .kubectl
        .run(&["delete", "namespace", NS, "--wait=false"])
        .await;
    assert!(r.ok, "unprotected, the namespace delete is allowed: {r:?}");
    let t = std::time::Instant::now();
    eventually("the namespace to be gone completely", 120, || async {
        match namespaces.get_opt(NS).await.map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(ns) => Err(format!("{:?}", ns.status)),
        }
    })
    .await;
    let gone_secs = t.elapsed().as_secs_f64();
    let by_collection: Vec<serde_json::Value> = ctx
        .stsguard
        .log_lines("review")
        .into_iter()
        .filter(|v| {
            v["kind"] == "PersistentVolumeClaim"
                && v["namespace"] == NS
                && v["operation"] == "DELETE"
                && v["name"] == "data-kept-1"
        })
        .collect();
    assert!(
        by_collection.iter().any(|v| v["allowed"] == true),
        "stsguard reviewed and allowed the namespace controller's delete of data-kept-1: {by_collection:?}"
    );
    say(format!(
        "e2e protect: unprotected, namespace {NS} deleted completely in {gone_secs:.1} s"
    ));

    // 4. A protected StatefulSet being deleted (a finalizer keeps it): it does not hold its
    //    namespace, but its claim stays until the StatefulSet is gone.
    kube_util::create_namespace(&client, LEAVING_NS).await;
    let leaving_sets = Api::<StatefulSet>::namespaced(client.clone(), LEAVING_NS);
    let leaving_claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), LEAVING_NS);
    let mut leaving = statefulset("leaving", 1, None, None);
    leaving.metadata.finalizers = Some(vec!["e2e.stsguard.io/hold".into()]);
    leaving_sets.create(&pp, &leaving).await.unwrap();
    wait_for_claims(&leaving_claims, &["data-leaving-0".to_string()]).await;
    leaving_sets
        .delete("leaving", &DeleteParams::default())
        .await
        .unwrap();
    let r = ctx
        .kubectl
        .run(&[
            "-n",
            LEAVING_NS,
            "annotate",
            "statefulset/leaving",
            "stsguard.io/protect=true",
        ])
        .await;
    assert!(r.ok, "{r:?}");
    // stsguard's cache has it once the claim is held.
    eventually(
        "the claim of the protected, terminating StatefulSet held",
        20,
        || async {
            let r = ctx
                .kubectl
                .run(&[
                    "-n",
                    LEAVING_NS,
                    "delete",
                    "pvc",
                    "data-leaving-0",
                    "--dry-run=server",
                ])
                .await;
            if !r.ok && r.errors().contains("[delete-protection]") {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        },
    )
    .await;
    let r = ctx
        .kubectl
        .run(&["delete", "namespace", LEAVING_NS, "--wait=false"])
        .await;
    assert!(
        r.ok,
        "a StatefulSet being deleted does not hold its namespace: {r:?}"
    );
    let why = eventually(
        "the namespace controller to report the claim it may not delete",
        60,
        || async {
            let ns = namespaces
                .get(LEAVING_NS)
                .await
                .map_err(|e| e.to_string())?;
            ns.status
                .unwrap_or_default()
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "NamespaceDeletionContentFailure" && c.status == "True")
                .and_then(|c| c.message.clone())
                .filter(|m| m.contains("[delete-protection]"))
                .ok_or_else(|| "no content failure yet".to_string())
        },
    )
    .await;
    assert!(
        claim_kept(&leaving_claims, "data-leaving-0").await,
        "the claim stays while its protected StatefulSet is there"
    );
    say(format!(
        "e2e protect: namespace {LEAVING_NS} terminating, data-leaving-0 kept: {why}"
    ));
    // The StatefulSet goes (its finalizer removed): nothing holds the claim, the namespace goes.
    leaving_sets
        .patch(
            "leaving",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    eventually("the terminating namespace to be gone", 120, || async {
        match namespaces
            .get_opt(LEAVING_NS)
            .await
            .map_err(|e| e.to_string())?
        {
            None => Ok(()),
            Some(ns) => Err(format!("{:?}", ns.status)),
        }
    })
    .await;

    let summary = format!(
        "namespace delete refused with every object kept; claims in use and mounted kept, others \
         and a scaled-down one deleted; unprotected namespace gone in {gone_secs:.1} s; a \
         terminating protected StatefulSet held its claim, not its namespace"
    );
    say(format!("e2e protect: {summary}"));
    summary
}
