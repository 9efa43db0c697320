//! kube client helpers: typed objects (k8s-openapi), and requests whose `Warning` headers the
//! test reads.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, ExecAction, Namespace, PodSpec, PodTemplateSpec, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};

pub async fn create_namespace(client: &Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// A minimal StatefulSet: `replicas` pods of one container labelled `app: <name>`, with a
/// readiness probe (so the readiness rule has nothing to say), governed by Service `<name>`.
pub fn statefulset(name: &str, replicas: i32, annotations: &[(&str, &str)]) -> StatefulSet {
    let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    StatefulSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(name.into()),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "app".into(),
                        image: Some("registry.invalid/app:1".into()),
                        env: Some(vec![EnvVar {
                            name: "MODE".into(),
                            value: Some("v1".into()),
                            ..Default::default()
                        }]),
                        readiness_probe: Some(Probe {
                            exec: Some(ExecAction {
                                command: Some(vec!["true".into()]),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A response read raw: HTTP status, JSON body, and the `Warning` headers' texts.
pub struct Raw {
    pub status: u16,
    pub body: serde_json::Value,
    pub warnings: Vec<String>,
}

/// The text of a `Warning: 299 - "text"` header value.
pub fn warning_text(header: &str) -> String {
    let t = header.trim();
    let t = t.strip_prefix("299 - ").unwrap_or(t);
    let t = t.strip_prefix('"').unwrap_or(t);
    let t = t.strip_suffix('"').unwrap_or(t);
    t.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// Sends a request built by kube's request builder (an `http::Request`, named here through
/// axum's re-export of the `http` crate) and keeps what kube's typed calls drop: the
/// `Warning` headers (admission warnings), with the status and body.
pub async fn send_raw(client: &Client, req: axum::http::Request<Vec<u8>>) -> Raw {
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("the API server answers");
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(warning_text)
        .collect();
    let bytes = resp.into_body().collect_bytes().await.expect("a body");
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Raw {
        status,
        body,
        warnings,
    }
}

/// CREATE of a StatefulSet, dry-run or not, with the warnings the API server sent back.
pub async fn create_sts_raw(client: &Client, ns: &str, sts: &StatefulSet, dry_run: bool) -> Raw {
    let api = Api::<StatefulSet>::namespaced(client.clone(), ns);
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    let req = kube::core::Request::new(api.resource_url())
        .create(&pp, serde_json::to_vec(sts).unwrap())
        .unwrap();
    send_raw(client, req).await
}

/// The rule ids (`[rule]` prefixes) of warnings, sorted and unique.
pub fn rule_ids(warnings: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = warnings
        .iter()
        .filter_map(|w| {
            // `StatefulSet ns/name: [id] message`: the id after the object.
            let rest = &w[w.find(": [")? + 3..];
            Some(rest[..rest.find(']')?].to_string())
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The message of a kube API error.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}
