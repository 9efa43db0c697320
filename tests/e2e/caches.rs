//! Scenario `caches`: stsguard's watch caches follow the real API server. A Service and a
//! PodDisruptionBudget created after stsguard started are seen by the next reviews (the
//! governing-service and disruption-budget warnings go away), and a deleted Service is missed
//! again. The reviews are dry-run CREATEs through kube's client, whose `Warning` headers the
//! test reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};

use crate::harness::{eventually, say};
use crate::kube_util;
use crate::setup::Ctx;

const NS: &str = "e2e-caches";

pub async fn run(ctx: Arc<Ctx>) -> String {
    let client = ctx.client.clone();
    kube_util::create_namespace(&client, NS).await;
    let web = kube_util::statefulset("web", 3, &[]);
    let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);

    let r = kube_util::create_sts_raw(&client, NS, &web, true).await;
    assert_eq!(r.status, 201, "dry-run create: {}", r.body);
    assert_eq!(
        kube_util::rule_ids(&r.warnings),
        ["disruption-budget", "governing-service"],
        "before the Service and the PDB exist: {:?}",
        r.warnings
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains(&format!("no Service \"web\" in {NS}"))),
        "{:?}",
        r.warnings
    );

    let t = Instant::now();
    let svc = Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(labels.clone()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let services = Api::<Service>::namespaced(client.clone(), NS);
    services.create(&PostParams::default(), &svc).await.unwrap();
    let pdb = PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<PodDisruptionBudget>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &pdb)
        .await
        .unwrap();
    eventually(
        "the Service and the PDB to be seen by stsguard's reviews",
        15,
        || {
            let (client, web) = (client.clone(), web.clone());
            async move {
                let r = kube_util::create_sts_raw(&client, NS, &web, true).await;
                if r.status == 201 && r.warnings.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{} {:?}", r.status, r.warnings))
                }
            }
        },
    )
    .await;
    let seen_in = t.elapsed();
    say(format!(
        "e2e caches: Service and PodDisruptionBudget created after start seen by the next review in {:.2} s (no warning left)",
        seen_in.as_secs_f64()
    ));

    // Deleted: the governing-service warning is back.
    let t = Instant::now();
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted Service to be missed again", 15, || {
        let (client, web) = (client.clone(), web.clone());
        async move {
            let r = kube_util::create_sts_raw(&client, NS, &web, true).await;
            if kube_util::rule_ids(&r.warnings) == ["governing-service"] {
                Ok(())
            } else {
                Err(format!("{:?}", r.warnings))
            }
        }
    })
    .await;
    let gone_in = t.elapsed();
    say(format!(
        "e2e caches: deleted Service missed again after {:.2} s",
        gone_in.as_secs_f64()
    ));
    format!(
        "watch caches follow the API server: created Service+PDB seen in {:.2} s, deleted Service in {:.2} s",
        seen_in.as_secs_f64(),
        gone_in.as_secs_f64()
    )
}
