//! Scenario `scale`: the `statefulsets/scale` subresource (`kubectl scale`, and kube's
//! `patch_scale` as an autoscaler would) judged against the StatefulSet from stsguard's watch
//! cache (a Scale carries no annotations); delete protection one by one, through a
//! delete-collection and of the namespace; dry-run warnings reaching kubectl.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Namespace, PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::harness::{eventually, say};
use crate::kube_util;
use crate::setup::Ctx;

const NS: &str = "e2e-scale";

async fn replicas(api: &Api<StatefulSet>, name: &str) -> i32 {
    api.get(name)
        .await
        .unwrap()
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(1)
}

/// `kubectl scale`, dry-run first until stsguard's cache has the StatefulSet (an object it has
/// not seen yet is allowed with a "not in the watch cache" warning), then for real.
async fn kubectl_scale_denied(ctx: &Ctx, name: &str, to: i32, rule: &str) -> String {
    let target = format!("statefulset/{name}");
    let count = format!("--replicas={to}");
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let dry = eventually(
        &format!("a dry-run scale of {name} to {to} denied by [{rule}]"),
        20,
        || async {
            attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = ctx
                .kubectl
                .run(&["-n", NS, "scale", &target, &count, "--dry-run=server"])
                .await;
            if !r.ok && r.errors().contains(&format!("[{rule}]")) {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        },
    )
    .await;
    let real = ctx.kubectl.run(&["-n", NS, "scale", &target, &count]).await;
    let errors = real.errors();
    assert!(
        !real.ok
            && errors.contains(
                "admission webhook \"statefulsets.validate.stsguard.io\" denied the request"
            )
            && errors.contains(&format!("[{rule}]")),
        "kubectl scale {name} --replicas={to} must be denied by [{rule}]: {real:?}"
    );
    assert_eq!(
        dry.errors(),
        errors,
        "dry-run and real scale answered alike"
    );
    let n = attempts.into_inner();
    if n > 1 {
        // Before stsguard's cache had the StatefulSet, the scale was allowed with a warning.
        say(format!(
            "e2e scale: the dry-run scale of {name} was allowed {} time(s) before the watch cache had it",
            n - 1
        ));
    }
    errors
}

pub async fn run(ctx: Arc<Ctx>) -> String {
    let client = ctx.client.clone();
    kube_util::create_namespace(&client, NS).await;
    let api = Api::<StatefulSet>::namespaced(client.clone(), NS);
    let pp = PostParams::default();
    for sts in [
        kube_util::statefulset("quorum", 3, &[("stsguard.io/quorum", "true")]),
        kube_util::statefulset("single", 1, &[("stsguard.io/single-instance", "true")]),
        kube_util::statefulset("guarded", 1, &[("stsguard.io/protect", "true")]),
    ] {
        api.create(&pp, &sts).await.unwrap_or_else(|e| {
            panic!(
                "create {:?}: {}",
                sts.metadata.name,
                kube_util::api_message(&e)
            )
        });
    }
    let mut denials = Vec::new();

    // Quorum: 3 -> 4 is even (denied), 3 -> 5 is fine, 5 -> 1 drops below a majority at once.
    let e = kubectl_scale_denied(&ctx, "quorum", 4, "quorum-odd").await;
    assert!(e.contains("spec.replicas is 4"), "{e}");
    assert_eq!(
        replicas(&api, "quorum").await,
        3,
        "the denied scale changed nothing"
    );
    say(format!(
        "e2e scale: kubectl scale quorum 3 -> 4 denied: {}",
        e.trim()
    ));
    denials.push("quorum 3->4 [quorum-odd]");
    let ok = ctx
        .kubectl
        .run(&["-n", NS, "scale", "statefulset/quorum", "--replicas=5"])
        .await;
    assert!(ok.ok, "kubectl scale quorum 3 -> 5 is allowed: {ok:?}");
    assert_eq!(replicas(&api, "quorum").await, 5);
    let e = kubectl_scale_denied(&ctx, "quorum", 1, "quorum-scale-down").await;
    assert!(e.contains("majority (3)"), "{e}");
    assert_eq!(replicas(&api, "quorum").await, 5);
    say(format!(
        "e2e scale: kubectl scale quorum 5 -> 1 denied: {}",
        e.trim()
    ));
    denials.push("quorum 5->1 [quorum-scale-down]");

    // Single instance through the scale subresource with kube (as an autoscaler would).
    let to_two = Patch::Merge(serde_json::json!({"spec": {"replicas": 2}}));
    eventually("a dry-run patch of single's scale denied", 20, || async {
        match api
            .patch_scale("single", &PatchParams::default().dry_run(), &to_two)
            .await
        {
            Err(kube::Error::Api(s)) if s.message.contains("[single-instance]") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    match api
        .patch_scale("single", &PatchParams::default(), &to_two)
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{s:?}");
            assert!(
                s.message.contains("[single-instance]") && s.message.contains("spec.replicas is 2"),
                "{s:?}"
            );
            say(format!(
                "e2e scale: patch_scale single 1 -> 2 denied ({}): {}",
                s.code, s.message
            ));
        }
        other => panic!("scaling single to 2 must be denied by [single-instance]: {other:?}"),
    }
    assert_eq!(replicas(&api, "single").await, 1);
    denials.push("single 1->2 [single-instance]");

    // Delete protection: kubectl delete is denied, dry-run too; without the annotation it goes.
    let del = ctx
        .kubectl
        .run(&["-n", NS, "delete", "statefulset/guarded", "--wait=false"])
        .await;
    assert!(
        !del.ok && del.errors().contains("[delete-protection]"),
        "kubectl delete of a protected StatefulSet must be denied: {del:?}"
    );
    match api
        .delete("guarded", &DeleteParams::default().dry_run())
        .await
    {
        Err(kube::Error::Api(s)) => assert!(s.message.contains("[delete-protection]"), "{s:?}"),
        other => panic!("a dry-run delete of guarded must be denied: {other:?}"),
    }
    assert!(
        api.get_opt("guarded").await.unwrap().is_some(),
        "still there"
    );
    say(format!(
        "e2e scale: kubectl delete guarded denied: {}",
        del.errors().trim()
    ));
    denials.push("delete guarded [delete-protection]");
    let un = ctx
        .kubectl
        .run(&[
            "-n",
            NS,
            "annotate",
            "--overwrite",
            "statefulset/guarded",
            "stsguard.io/protect=false",
        ])
        .await;
    assert!(un.ok, "{un:?}");
    let del = ctx
        .kubectl
        .run(&["-n", NS, "delete", "statefulset/guarded", "--wait=false"])
        .await;
    assert!(del.ok, "unprotected, the delete is allowed: {del:?}");

    // DeleteCollection, and the namespace controller (which deletes through it): the API server
    // reviews each item. Kept: a protected StatefulSet with a claim template.
    let coll_ns = "e2e-scale-collection";
    kube_util::create_namespace(&client, coll_ns).await;
    let coll = Api::<StatefulSet>::namespaced(client.clone(), coll_ns);
    let mut kept = kube_util::statefulset("kept", 1, &[("stsguard.io/protect", "true")]);
    kept.spec.as_mut().unwrap().volume_claim_templates = Some(vec![PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("1Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    for sts in [kept, kube_util::statefulset("loose", 1, &[])] {
        coll.create(&pp, &sts).await.unwrap();
    }
    let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), coll_ns);
    eventually(
        "the StatefulSet controller to create claim data-kept-0",
        30,
        || async {
            match claims.get_opt("data-kept-0").await {
                Ok(Some(_)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    match coll
        .delete_collection(&DeleteParams::default(), &Default::default())
        .await
    {
        Err(kube::Error::Api(s)) => assert!(s.message.contains("[delete-protection]"), "{s:?}"),
        other => panic!("a delete-collection over a protected StatefulSet must fail: {other:?}"),
    }
    assert!(coll.get_opt("kept").await.unwrap().is_some(), "kept");
    // What happens to the others depends on the API server: it deletes the items in name order
    // with one worker (--delete-collection-workers=1) and stops at the first error.
    let loose = match coll.get_opt("loose").await.unwrap() {
        None => "deleted",
        Some(s) if s.metadata.deletion_timestamp.is_some() => "being deleted",
        Some(_) => "not deleted (the collection delete stopped at the denied item)",
    };
    say(format!(
        "e2e scale: delete-collection denied: the protected StatefulSet kept ([delete-protection]); the unprotected one: {loose}"
    ));
    denials.push("delete-collection [delete-protection]");
    // Its namespace: refused before the namespace controller deletes anything (the `protect`
    // scenario follows a namespace through).
    let namespaces = Api::<Namespace>::all(client.clone());
    match namespaces.delete(coll_ns, &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) => assert!(
            s.code == 403
                && s.message.contains(&format!(
                    "[delete-protection] namespace {coll_ns} holds protected StatefulSet kept;"
                )),
            "{s:?}"
        ),
        other => panic!("the namespace of a protected StatefulSet must not be deleted: {other:?}"),
    }
    let ns = namespaces.get(coll_ns).await.unwrap();
    assert!(ns.metadata.deletion_timestamp.is_none(), "not terminating");
    let claim = claims.get_opt("data-kept-0").await.unwrap();
    assert!(
        claim.is_some_and(|c| c.metadata.deletion_timestamp.is_none()),
        "the protected StatefulSet's claim data-kept-0 is kept"
    );
    say(format!(
        "e2e scale: namespace {coll_ns} delete refused ([delete-protection]); StatefulSet kept and its claim data-kept-0"
    ));
    denials.push("namespace delete [delete-protection]");

    // Dry-run warnings reach the client: kubectl prints them, and nothing is stored.
    let manifest = ctx.work.join("e2e-scale-web.json");
    std::fs::write(
        &manifest,
        serde_json::to_vec(&kube_util::statefulset("web", 2, &[])).unwrap(),
    )
    .unwrap();
    let dry = ctx
        .kubectl
        .run(&[
            "-n",
            NS,
            "apply",
            "--dry-run=server",
            "-f",
            manifest.to_str().unwrap(),
        ])
        .await;
    assert!(dry.ok, "{dry:?}");
    assert!(dry.stdout.contains("(server dry run)"), "{}", dry.stdout);
    let w = dry.warnings();
    assert_eq!(
        kube_util::rule_ids(&w),
        ["disruption-budget", "governing-service"],
        "kubectl shows stsguard's warnings for a dry run: {w:?}"
    );
    assert!(
        w.iter().any(|w| w
            == &format!("[governing-service] spec.serviceName: no Service \"web\" in {NS}; create one with clusterIP: None selecting the pods")),
        "{w:?}"
    );
    assert!(
        api.get_opt("web").await.unwrap().is_none(),
        "a dry run stores nothing"
    );
    say(format!(
        "e2e scale: kubectl apply --dry-run=server printed {} warnings: {:?}",
        w.len(),
        w
    ));
    let summary = format!(
        "{} denials ({}); allowed: quorum 3->5, delete once unprotected; dry-run warnings reach kubectl",
        denials.len(),
        denials.join(", ")
    );
    say(format!("e2e scale: {summary}"));
    summary
}
