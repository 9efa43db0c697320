//! Scenario `adoption`: a StatefulSet created before the webhooks exist (seeded by the setup)
//! is labelled and annotated afterwards without a rollout — its generation stays 1 and its pod
//! template as stored — and a change of its template adopts it in that same write. Then the
//! roles annotation, added and removed, takes back what it added, and a safety switch that is
//! neither "true" nor "false" is refused.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::harness::{eventually, say};
use crate::kube_util;
use crate::setup::Ctx;

const NS: &str = "e2e-adopt";
const NAME: &str = "db";

/// Before the webhooks exist: a plain StatefulSet stsguard never mutated.
pub async fn seed(client: &Client) {
    kube_util::create_namespace(client, NS).await;
    Api::<StatefulSet>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &kube_util::statefulset(NAME, 1, &[]),
        )
        .await
        .unwrap_or_else(|e| panic!("create {NS}/{NAME}: {e}"));
}

async fn get(ctx: &Ctx) -> StatefulSet {
    Api::<StatefulSet>::namespaced(ctx.client.clone(), NS)
        .get(NAME)
        .await
        .unwrap_or_else(|e| panic!("get {NS}/{NAME}: {e}"))
}

fn generation(s: &StatefulSet) -> i64 {
    s.metadata.generation.unwrap_or_default()
}

fn template(s: &StatefulSet) -> PodTemplateSpec {
    s.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// The names of the first container's variables, and of the init containers.
fn env_and_inits(s: &StatefulSet) -> (Vec<String>, Vec<String>) {
    let pod = template(s).spec.unwrap_or_default();
    let env = pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect();
    let inits = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    (env, inits)
}

/// stsguard's `/mutate` review log lines for UPDATEs of the StatefulSet.
fn mutate_updates(ctx: &Ctx) -> Vec<serde_json::Value> {
    ctx.stsguard
        .log_lines("review")
        .into_iter()
        .filter(|v| {
            v["endpoint"] == "mutate"
                && v["namespace"] == NS
                && v["name"] == NAME
                && v["operation"] == "UPDATE"
        })
        .collect()
}

async fn kubectl_ok(ctx: &Ctx, args: &[&str]) {
    let mut all = vec!["-n", NS];
    all.extend_from_slice(args);
    let r = ctx.kubectl.run(&all).await;
    assert!(r.ok, "kubectl {args:?}: {r:?}");
}

pub async fn run(ctx: Arc<Ctx>) -> String {
    let sts = format!("statefulset/{NAME}");
    let created = get(&ctx).await;
    assert_eq!(generation(&created), 1, "{created:?}");
    let (env, _) = env_and_inits(&created);
    assert!(
        !env.contains(&"POD_NAME".to_string()),
        "created before stsguard: {env:?}"
    );

    // A label and an annotation that drives no mutation: reviewed by stsguard, not patched.
    kubectl_ok(&ctx, &["label", &sts, "team=payments"]).await;
    kubectl_ok(&ctx, &["annotate", &sts, "stsguard.io/protect=true"]).await;
    let reviewed = eventually("stsguard's log lines of the two UPDATEs", 10, || async {
        let lines = mutate_updates(&ctx);
        if lines.len() >= 2 {
            Ok(lines)
        } else {
            Err(format!("{} logged", lines.len()))
        }
    })
    .await;
    assert!(
        reviewed.iter().all(|v| v["patched"] == false),
        "no UPDATE of an unchanged template is patched: {reviewed:?}"
    );
    let labelled = get(&ctx).await;
    assert_eq!(generation(&labelled), 1, "no rollout: {labelled:?}");
    assert_eq!(
        template(&labelled),
        template(&created),
        "the template as stored"
    );
    say(
        "e2e adoption: label and stsguard.io/protect on a StatefulSet created before stsguard: generation 1, template as stored",
    );

    // A change of the template adopts it, in the same write.
    kubectl_ok(
        &ctx,
        &[
            "patch",
            &sts,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"registry.invalid/app:2"}]"#,
        ],
    )
    .await;
    let adopted = get(&ctx).await;
    assert_eq!(generation(&adopted), 2, "one rollout, the user's");
    let (env, _) = env_and_inits(&adopted);
    assert!(env.contains(&"POD_NAME".to_string()), "adopted: {env:?}");
    let t = template(&adopted);
    let anns = t.metadata.and_then(|m| m.annotations).unwrap_or_default();
    assert!(anns.contains_key("stsguard.io/added"), "{anns:?}");
    let anti = t
        .spec
        .and_then(|p| p.affinity)
        .and_then(|a| a.pod_anti_affinity);
    assert!(anti.is_some(), "stsguard's anti-affinity term");

    // The roles, added, then removed: what they added goes in the same write.
    kubectl_ok(
        &ctx,
        &["annotate", &sts, "stsguard.io/roles=primary=0,replica=*"],
    )
    .await;
    let with_roles = get(&ctx).await;
    let (env, inits) = env_and_inits(&with_roles);
    assert_eq!(inits, ["stsguard-role"], "{with_roles:?}");
    assert!(env.contains(&"STS_PRIMARY_FQDN".to_string()), "{env:?}");
    kubectl_ok(&ctx, &["annotate", &sts, "stsguard.io/roles-"]).await;
    let without = get(&ctx).await;
    let (env, inits) = env_and_inits(&without);
    assert!(inits.is_empty(), "{without:?}");
    assert!(!env.contains(&"STS_PRIMARY_FQDN".to_string()), "{env:?}");
    assert!(env.contains(&"POD_NAME".to_string()), "{env:?}");
    let t = template(&without);
    let labels = t
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert!(!labels.contains_key("stsguard.io/managed"), "{labels:?}");
    let volumes = t.spec.and_then(|p| p.volumes).unwrap_or_default();
    assert!(
        volumes.iter().all(|v| v.name != "stsguard-role"),
        "{volumes:?}"
    );

    // A safety switch stsguard would have to guess at is refused.
    let r = ctx
        .kubectl
        .run(&[
            "-n",
            NS,
            "annotate",
            "--overwrite",
            &sts,
            "stsguard.io/protect=True",
        ])
        .await;
    let errors = r.errors();
    assert!(
        !r.ok
            && errors.contains(
                "[safety-switch] stsguard.io/protect: \"True\" is not \"true\" or \"false\""
            ),
        "{r:?}"
    );
    kubectl_ok(
        &ctx,
        &["annotate", "--overwrite", &sts, "stsguard.io/protect=false"],
    )
    .await;
    format!(
        "label and annotation: generation 1; template change: adopted (generation 2); roles added and removed (generation {}); protect=True refused",
        generation(&without)
    )
}
