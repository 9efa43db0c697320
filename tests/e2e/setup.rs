//! Installing stsguard into the cluster the way the chart does, but with the server as a local
//! process: the chart's ServiceAccount, ClusterRole(Binding), policy ConfigMap and webhook
//! configurations (rewritten to `clientConfig.url: https://127.0.0.1:<port>/...`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig, NamedAuthInfo};

use crate::harness::{self, KubectlRunner, Stsguard, eventually};
use crate::kube_util;

/// What the scenarios share.
pub struct Ctx {
    /// The cluster admin (system:masters).
    pub client: Client,
    pub kubectl: KubectlRunner,
    /// Scratch files (manifests written for kubectl).
    pub work: PathBuf,
    /// The policy the server runs with (the chart's ConfigMap).
    pub policy: stsguard::policy::Policy,
    pub stsguard: Stsguard,
    /// What another `stsguard serve` of a scenario's own needs: the serving certificate and
    /// key (`tls.crt`, `tls.key`, `ca.crt`), the policy file, and the kubeconfig with the
    /// chart's ServiceAccount token.
    pub certs: PathBuf,
    pub policy_path: PathBuf,
    pub sa_kubeconfig: PathBuf,
}

/// The release the chart is rendered as.
pub const RELEASE: &str = "stsguard";
pub const RELEASE_NS: &str = "stsguard-system";

pub async fn admin_client(kubeconfig: &std::path::Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("read the admin kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("a client config");
    Client::try_from(cfg).expect("a client")
}

fn of_kind<T: serde::de::DeserializeOwned>(docs: &[serde_json::Value], kind: &str) -> T {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("the chart renders no {kind}"));
    serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("the chart's {kind} is not a {kind}: {e}"))
}

/// Points every webhook of a configuration at `https://<addr><path>` instead of the Service.
fn to_url(cc: &mut WebhookClientConfig, addr: std::net::SocketAddr, ca_pem: &[u8]) {
    let svc = cc
        .service
        .take()
        .expect("the chart's webhooks call a Service");
    let path = svc.path.expect("the chart's webhooks name a path");
    assert!(
        path == "/mutate" || path == "/validate",
        "unexpected webhook path {path}"
    );
    assert_eq!(
        cc.ca_bundle.as_ref().map(|b| b.0.as_slice()),
        Some(ca_pem),
        "the chart's caBundle is the CA given with certs.secret.caBundle"
    );
    cc.url = Some(format!("https://{addr}{path}"));
}

/// Installs stsguard into the cluster whose admin kubeconfig is `kubeconfig` and whose folder is
/// `dir` ([`harness::Cluster`]).
pub async fn setup(kubeconfig: &std::path::Path, dir: &std::path::Path) -> Arc<Ctx> {
    let t = Instant::now();
    let client = admin_client(kubeconfig).await;
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let kubectl = KubectlRunner {
        kubeconfig: kubeconfig.to_path_buf(),
        cache_dir: work.join("kubectl-cache"),
    };

    // The serving certificate: `stsguard certs`, valid for 127.0.0.1 (the API server calls a URL).
    let certs = work.join("certs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["certs", "--service", RELEASE, "--namespace", RELEASE_NS])
        .args(["--days", "1", "--san", "127.0.0.1", "--out"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(out.status.success(), "stsguard certs: {out:?}");
    let ca_pem = std::fs::read(certs.join("ca.crt")).unwrap();

    // The chart, with the CA as caBundle (certs.mode=secret).
    let ca_set = format!("certs.secret.caBundle={}", certs.join("ca.crt").display());
    let docs = harness::helm_template(
        RELEASE,
        RELEASE_NS,
        &[
            "--set",
            "certs.mode=secret",
            "--set",
            "certs.secret.name=stsguard-tls",
            "--set-file",
            &ca_set,
            // The outage scenario's namespace is served by a server of its own only.
            "--set",
            "webhook.excludeNamespaces={e2e-outage}",
        ],
    );
    kube_util::create_namespace(&client, RELEASE_NS).await;
    let pp = PostParams::default();
    let sa: ServiceAccount = of_kind(&docs, "ServiceAccount");
    let sa_name = sa.metadata.name.clone().unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), RELEASE_NS)
        .create(&pp, &sa)
        .await
        .expect("create the chart's ServiceAccount");
    let role: ClusterRole = of_kind(&docs, "ClusterRole");
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &role)
        .await
        .expect("create the chart's ClusterRole");
    let binding: ClusterRoleBinding = of_kind(&docs, "ClusterRoleBinding");
    assert!(
        binding
            .subjects
            .iter()
            .flatten()
            .any(|s| s.kind == "ServiceAccount" && s.name == sa_name),
        "the chart binds its ClusterRole to its ServiceAccount"
    );
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .expect("create the chart's ClusterRoleBinding");
    let cm: ConfigMap = of_kind(&docs, "ConfigMap");
    let policy_text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("policy.yaml"))
        .expect("the chart's ConfigMap holds policy.yaml")
        .clone();
    let policy_path = work.join("policy.yaml");
    std::fs::write(&policy_path, &policy_text).unwrap();
    let policy = stsguard::policy::Policy::load(&policy_path).expect("the chart's policy loads");

    // The ServiceAccount's token (TokenRequest), in a kubeconfig for the stsguard process.
    let sa_kubeconfig = service_account_kubeconfig(
        &client,
        kubeconfig,
        (RELEASE_NS, sa_name.as_str()),
        None,
        &work,
        "stsguard",
    )
    .await;
    let user = format!("system:serviceaccount:{RELEASE_NS}:{sa_name}");

    // The server, as a process.
    let stsguard = Stsguard::spawn(
        &[
            "serve",
            "--tls-cert",
            certs.join("tls.crt").to_str().unwrap(),
            "--tls-key",
            certs.join("tls.key").to_str().unwrap(),
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
            "--config",
            policy_path.to_str().unwrap(),
        ],
        &sa_kubeconfig,
        &dir.join("stsguard.pid"),
    );
    // Ready = the four watch caches synced, with nothing but the chart's ClusterRole.
    let readyz = format!("http://{}/readyz", stsguard.metrics_addr);
    let http = reqwest::Client::new();
    eventually(
        "stsguard /readyz (watch caches synced with the chart's RBAC)",
        30,
        || {
            let (http, url) = (http.clone(), readyz.clone());
            async move {
                let r = http.get(&url).send().await.map_err(|e| e.to_string())?;
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                if status == 200 {
                    Ok(())
                } else {
                    Err(format!("{status} {text}"))
                }
            }
        },
    )
    .await;

    // What already runs before the webhooks exist, for the audit and adoption scenarios.
    crate::audit::seed(&client).await;
    crate::adoption::seed(&client).await;

    // The chart's webhook configurations, pointed at the process.
    let mut mutating: MutatingWebhookConfiguration = of_kind(&docs, "MutatingWebhookConfiguration");
    for w in mutating.webhooks.iter_mut().flatten() {
        to_url(&mut w.client_config, stsguard.addr, &ca_pem);
    }
    let mut validating: ValidatingWebhookConfiguration =
        of_kind(&docs, "ValidatingWebhookConfiguration");
    for w in validating.webhooks.iter_mut().flatten() {
        to_url(&mut w.client_config, stsguard.addr, &ca_pem);
    }
    Api::<MutatingWebhookConfiguration>::all(client.clone())
        .create(&pp, &mutating)
        .await
        .expect("create the chart's MutatingWebhookConfiguration");
    Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .create(&pp, &validating)
        .await
        .expect("create the chart's ValidatingWebhookConfiguration");

    // The API server picks configurations up asynchronously: wait until a dry-run CREATE comes
    // back mutated.
    kube_util::create_namespace(&client, "e2e-probe").await;
    let probe = kube_util::statefulset("probe", 1, &[]);
    eventually("the webhooks to be in effect", 30, || {
        let (client, probe) = (client.clone(), probe.clone());
        async move {
            let r = kube_util::create_sts_raw(&client, "e2e-probe", &probe, true).await;
            let sts: StatefulSet = serde_json::from_value(r.body.clone())
                .map_err(|e| format!("{} {e}: {}", r.status, r.body))?;
            let env = sts.spec.unwrap().template.spec.unwrap().containers[0]
                .env
                .clone()
                .unwrap_or_default();
            if env.iter().any(|e| e.name == "POD_NAME") {
                Ok(())
            } else {
                Err("not mutated yet".to_string())
            }
        }
    })
    .await;
    // The validating webhook denies too (an even quorum): both webhooks are called whichever
    // scenarios run ([`final_checks`]).
    let even = kube_util::statefulset("probe-even", 4, &[("stsguard.io/quorum", "true")]);
    let r = kube_util::create_sts_raw(&client, "e2e-probe", &even, true).await;
    assert!(
        r.status >= 400 && r.body.to_string().contains("quorum-odd"),
        "a dry-run create of an even quorum is denied by stsguard [quorum-odd]: {} {}",
        r.status,
        r.body
    );
    // The chart's namespaceSelector: the release's namespace and the policy's excluded ones are
    // never sent (namespaces carry kubernetes.io/metadata.name on a real API server).
    for ns in [RELEASE_NS, "kube-public"] {
        let r = kube_util::create_sts_raw(&client, ns, &probe, true).await;
        assert_eq!(r.status, 201, "dry-run create in {ns}: {}", r.body);
        let sts: StatefulSet = serde_json::from_value(r.body).unwrap();
        let env = sts.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap_or_default();
        assert!(
            !env.iter().any(|e| e.name == "POD_NAME") && r.warnings.is_empty(),
            "namespace {ns} is excluded by the chart, yet stsguard reviewed the StatefulSet: {env:?} {:?}",
            r.warnings
        );
    }
    harness::say(format!(
        "e2e: stsguard serving on https://{} (metrics http://{}) as {user}, webhooks from the chart registered (its excluded namespaces not sent), in {:.1} s",
        stsguard.addr,
        stsguard.metrics_addr,
        t.elapsed().as_secs_f64()
    ));
    Arc::new(Ctx {
        client,
        kubectl,
        work,
        policy,
        stsguard,
        certs,
        policy_path,
        sa_kubeconfig,
    })
}

/// After each scenario (they hold whichever ran): no watch failed for lack of a permission, both
/// webhooks were called, no review came from an excluded namespace or could not be read; and
/// what the server counted so far.
pub async fn final_checks(ctx: &Ctx) {
    let failures = ctx.stsguard.log_lines("watch failed; retrying");
    let forbidden: Vec<&serde_json::Value> = failures
        .iter()
        .filter(|v| {
            let e = v["error"].as_str().unwrap_or("").to_lowercase();
            e.contains("forbidden") || e.contains("403")
        })
        .collect();
    assert!(
        forbidden.is_empty(),
        "stsguard's watches were refused (the chart's ClusterRole lacks a verb): {forbidden:?}"
    );
    let metrics = reqwest::Client::new()
        .get(format!("http://{}/metrics", ctx.stsguard.metrics_addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("stsguard /metrics")
        .text()
        .await
        .unwrap();
    let mut by_outcome: std::collections::BTreeMap<String, f64> = Default::default();
    let mut detail: std::collections::BTreeMap<String, f64> = Default::default();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("stsguard_admission_requests_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").unwrap_or((rest, "0"));
        let get = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let n = value.trim().parse::<f64>().unwrap_or(0.0);
        *by_outcome
            .entry(format!("{} {}", get("endpoint"), get("outcome")))
            .or_default() += n;
        *detail
            .entry(format!(
                "{} {} {} {}",
                get("endpoint"),
                get("kind"),
                get("operation"),
                get("outcome")
            ))
            .or_default() += n;
    }
    harness::say(format!(
        "e2e: reviews answered by stsguard (endpoint outcome: count): {by_outcome:?}"
    ));
    harness::say(format!(
        "e2e: reviews by endpoint, kind, operation, outcome: {detail:?}"
    ));
    assert!(
        by_outcome.keys().any(|k| k == "mutate patched")
            && by_outcome.keys().any(|k| k == "validate denied"),
        "the API server called both webhooks: {by_outcome:?}"
    );
    let excluded: Vec<serde_json::Value> = ctx
        .stsguard
        .log_lines("review")
        .into_iter()
        .filter(|v| v["namespace"] == RELEASE_NS || v["namespace"] == "kube-public")
        .collect();
    assert!(
        excluded.is_empty(),
        "the API server sent reviews from namespaces the chart excludes: {excluded:?}"
    );
    let bad = ctx.stsguard.log_lines("bad request");
    assert!(
        bad.is_empty(),
        "the API server sent reviews stsguard could not read: {bad:?}"
    );
}

/// A kubeconfig for the cluster that authenticates as ServiceAccount `sa_namespace/sa` (a
/// TokenRequest's token in `WORK/STEM.token`), written to `WORK/STEM.kubeconfig`; `namespace`:
/// the contexts' namespace. The server run with it has exactly the chart's RBAC.
pub async fn service_account_kubeconfig(
    client: &kube::Client,
    admin_kubeconfig: &std::path::Path,
    (sa_namespace, sa): (&str, &str),
    namespace: Option<&str>,
    work: &std::path::Path,
    stem: &str,
) -> std::path::PathBuf {
    let tr = Api::<ServiceAccount>::namespaced(client.clone(), sa_namespace)
        .create_token_request(
            sa,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("a token for the ServiceAccount");
    let token = tr.status.expect("a TokenRequest status").token;
    let token_file = work.join(format!("{stem}.token"));
    std::fs::write(&token_file, &token).unwrap();
    let mut kc = Kubeconfig::read_from(admin_kubeconfig).unwrap();
    let user = format!("system:serviceaccount:{sa_namespace}:{sa}");
    kc.auth_infos = vec![NamedAuthInfo {
        name: user.clone(),
        auth_info: Some(AuthInfo {
            token_file: Some(token_file.display().to_string()),
            ..Default::default()
        }),
        other: Default::default(),
    }];
    for c in &mut kc.contexts {
        if let Some(ctx) = c.context.as_mut() {
            ctx.user = Some(user.clone());
            if let Some(ns) = namespace {
                ctx.namespace = Some(ns.into());
            }
        }
    }
    let path = work.join(format!("{stem}.kubeconfig"));
    std::fs::write(&path, stsguard::yaml::to_string_of(&kc).unwrap()).unwrap();
    path
}
