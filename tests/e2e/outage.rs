//! Scenario `outage`: what an outage of stsguard stops, and what it repairs once back, with the
//! failure policies `stsguard webhooks` registers by default. A second `stsguard serve` of the
//! scenario's own, with webhook configurations of its own (`stsguard webhooks --url`, narrowed
//! to this scenario's namespace), is stopped and started again while the shared server keeps
//! serving the other scenarios:
//!
//! - up: a role-managed StatefulSet's pods get their role labels;
//! - down: a StatefulSet write is refused (`failurePolicy: Fail`, the policy is never bypassed),
//!   while a pod the StatefulSet controller recreates is created at once (`Ignore`), without its
//!   role label;
//! - back (same address): the pod gets its role label from the repair, and writes are admitted.

use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

use crate::harness::{Stsguard, eventually, say};
use crate::kube_util;
use crate::setup::Ctx;

const NS: &str = "e2e-outage";
const NAME: &str = "e2e-outage";

fn only_this_namespace() -> LabelSelector {
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![NS.into()]),
        }]),
        match_labels: None,
    }
}

fn serve(ctx: &Ctx, addr: &str) -> Stsguard {
    let certs = &ctx.certs;
    Stsguard::spawn(
        &[
            "serve",
            "--tls-cert",
            certs.join("tls.crt").to_str().unwrap(),
            "--tls-key",
            certs.join("tls.key").to_str().unwrap(),
            "--addr",
            addr,
            "--metrics-addr",
            "127.0.0.1:0",
            "--config",
            ctx.policy_path.to_str().unwrap(),
        ],
        &ctx.sa_kubeconfig,
        &ctx.work.join("stsguard-outage.pid"),
    )
}

async fn role_of(pods: &Api<Pod>, name: &str) -> Result<(String, Option<String>), String> {
    let p = pods.get(name).await.map_err(|e| e.to_string())?;
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let role = p
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("stsguard.io/role"))
        .cloned();
    Ok((uid, role))
}

pub async fn run(ctx: Arc<Ctx>) -> String {
    let client = ctx.client.clone();
    kube_util::create_namespace(&client, NS).await;
    let server = serve(&ctx, "127.0.0.1:0");
    let addr = server.addr;

    // The configurations `stsguard webhooks` prints, narrowed to this namespace.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["webhooks", "--name", NAME, "--url"])
        .arg(format!("https://{addr}"))
        .arg("--ca-file")
        .arg(ctx.certs.join("ca.crt"))
        .output()
        .unwrap();
    assert!(out.status.success(), "stsguard webhooks: {out:?}");
    let docs = stsguard::check::yaml_documents(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let pp = PostParams::default();
    for d in docs.into_iter().filter(|d| !d.is_null()) {
        if d["kind"] == "MutatingWebhookConfiguration" {
            let mut m: MutatingWebhookConfiguration = serde_json::from_value(d).unwrap();
            for w in m.webhooks.iter_mut().flatten() {
                w.namespace_selector = Some(only_this_namespace());
            }
            Api::<MutatingWebhookConfiguration>::all(client.clone())
                .create(&pp, &m)
                .await
                .unwrap();
        } else {
            let mut v: ValidatingWebhookConfiguration = serde_json::from_value(d).unwrap();
            for w in v.webhooks.iter_mut().flatten() {
                w.namespace_selector = Some(only_this_namespace());
            }
            Api::<ValidatingWebhookConfiguration>::all(client.clone())
                .create(&pp, &v)
                .await
                .unwrap();
        }
    }

    // Up: a role-managed StatefulSet (Parallel: both pods are created at once, no kubelet
    // needed); its pods get their role labels at creation.
    let mut db = kube_util::statefulset("db", 2, &[("stsguard.io/roles", "primary=0,replica=*")]);
    db.spec.as_mut().unwrap().pod_management_policy = Some("Parallel".into());
    let sts = Api::<StatefulSet>::namespaced(client.clone(), NS);
    eventually(
        "the StatefulSet to be admitted through both servers",
        30,
        || {
            let (sts, db) = (sts.clone(), db.clone());
            async move {
                sts.create(&PostParams::default(), &db)
                    .await
                    .map(|_| ())
                    .map_err(|e| kube_util::api_message(&e))
            }
        },
    )
    .await;
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    let (old_uid, _) = eventually("db-1 created with its role label", 30, || {
        let pods = pods.clone();
        async move {
            match role_of(&pods, "db-1").await? {
                (uid, Some(r)) if r == "replica" => Ok((uid, r)),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;

    // Down.
    let t = Instant::now();
    drop(server);
    let mut second = kube_util::statefulset("second", 1, &[]);
    second.metadata.namespace = Some(NS.into());
    let refused = eventually(
        "a StatefulSet write to be refused while stsguard is down",
        30,
        || {
            let (client, second) = (client.clone(), second.clone());
            async move {
                let r = kube_util::create_sts_raw(&client, NS, &second, true).await;
                if r.status >= 400 {
                    Ok(r.body["message"].as_str().unwrap_or_default().to_string())
                } else {
                    Err(format!("{} admitted", r.status))
                }
            }
        },
    )
    .await;
    assert!(
        refused.contains("failed calling webhook") && refused.contains(".stsguard.io"),
        "refused by the failure policy: {refused}"
    );
    // A pod the controller recreates does not wait for stsguard.
    pods.delete("db-1", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let unlabelled = eventually("db-1 recreated while stsguard is down", 60, || {
        let (pods, old_uid) = (pods.clone(), old_uid.clone());
        async move {
            match role_of(&pods, "db-1").await? {
                (uid, role) if uid != old_uid => Ok(role),
                _ => Err("not recreated yet".into()),
            }
        }
    })
    .await;
    assert_eq!(unlabelled, None, "created without stsguard: no role label");
    let down_for = t.elapsed();

    // Back, at the same address: the pod is repaired and writes are admitted again.
    let t = Instant::now();
    let back = serve(&ctx, &addr.to_string());
    eventually("db-1's role label added by the repair", 60, || {
        let pods = pods.clone();
        async move {
            match role_of(&pods, "db-1").await? {
                (_, Some(r)) if r == "replica" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    let repaired_in = t.elapsed();
    eventually("StatefulSet writes admitted again", 30, || {
        let (client, second) = (client.clone(), second.clone());
        async move {
            let r = kube_util::create_sts_raw(&client, NS, &second, true).await;
            if r.status == 201 {
                Ok(())
            } else {
                Err(format!("{} {}", r.status, r.body))
            }
        }
    })
    .await;
    let repairs = back.log_lines(
        "pod role repair: added the role label of a pod created while stsguard was not reachable",
    );
    assert_eq!(repairs.len(), 1, "one pod repaired: {repairs:?}");
    // Every managed pod carries its role now.
    let listed = pods
        .list(&ListParams::default().labels("stsguard.io/managed=true"))
        .await
        .unwrap();
    for p in &listed.items {
        assert!(
            p.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("stsguard.io/role")),
            "{:?}",
            p.metadata.name
        );
    }
    for n in [NAME] {
        let _ = Api::<MutatingWebhookConfiguration>::all(client.clone())
            .delete(n, &DeleteParams::default())
            .await;
        let _ = Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .delete(n, &DeleteParams::default())
            .await;
    }
    drop(back);
    let summary = format!(
        "stsguard down {:.1} s: StatefulSet write refused (Fail), pod recreated without waiting (Ignore); back: role label repaired in {:.1} s, writes admitted",
        down_for.as_secs_f64(),
        repaired_in.as_secs_f64()
    );
    say(format!("e2e outage: {summary}"));
    summary
}
