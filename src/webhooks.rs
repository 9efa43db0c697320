//! The webhook registrations stsguard serves, as typed Mutating/ValidatingWebhookConfigurations.
//! `stsguard webhooks` prints these; the Helm chart renders the same rules, and a test checks
//! that they agree with each other and with what the server routes.

use crate::admission::routes;
use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    ValidatingWebhook, ValidatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use crate::k8s::keys;

pub const MUTATE_PATH: &str = "/mutate";
pub const VALIDATE_PATH: &str = "/validate";
/// The Service port in front of the server's `--addr`.
pub const SERVICE_PORT: i32 = 443;

/// Namespaces every install excludes (the release's own namespace is added by the caller).
pub const ALWAYS_EXCLUDED: &[&str] = &["kube-system", "kube-node-lease"];

/// The cluster-scoped resources of the route tables; every other one is namespaced.
const CLUSTER_SCOPED: &[&str] = &["namespaces"];

fn rule(group: &str, resource: &str, ops: &[&str]) -> RuleWithOperations {
    let scope = match CLUSTER_SCOPED.contains(&resource) {
        true => "Cluster",
        false => "Namespaced",
    };
    RuleWithOperations {
        api_groups: Some(vec![group.to_string()]),
        api_versions: Some(vec!["v1".to_string()]),
        resources: Some(vec![resource.to_string()]),
        operations: Some(ops.iter().map(|s| s.to_string()).collect()),
        scope: Some(scope.to_string()),
    }
}

/// The delete-protection webhook's name.
pub const PROTECT_WEBHOOK: &str = "delete-protection.validate.stsguard.io";

/// The mutating webhooks: (name prefix, rules, pods-only objectSelector).
pub fn mutating_rules() -> Vec<(&'static str, Vec<RuleWithOperations>, bool)> {
    routes::MUTATE
        .iter()
        .map(|(g, r, ops)| (*r, vec![rule(g, r, ops)], *r == "pods"))
        .collect()
}

pub fn validating_rules() -> Vec<RuleWithOperations> {
    routes::VALIDATE
        .iter()
        .map(|(g, r, ops)| rule(g, r, ops))
        .collect()
}

/// The rules of the delete-protection webhook.
pub fn protect_rules() -> Vec<RuleWithOperations> {
    routes::PROTECT
        .iter()
        .map(|(g, r, ops)| rule(g, r, ops))
        .collect()
}

/// Where the API server reaches stsguard.
#[derive(Clone, Debug)]
pub enum Target {
    Service { name: String, namespace: String },
    Url(String),
}

pub struct Options {
    pub name: String,
    pub target: Target,
    pub ca_bundle: Vec<u8>,
    /// What the API server does with a StatefulSet write (and its scale, its delete) while it
    /// cannot reach stsguard: `Fail` refuses it (the policy is never bypassed), `Ignore` admits
    /// it unmutated and unjudged.
    pub failure_policy: String,
    /// The same for a Pod created by a role-managed StatefulSet. `Ignore` by default: pod
    /// creation never waits for stsguard; the role label is repaired once it is back
    /// ([`crate::repair`]).
    pub pods_failure_policy: String,
    /// The delete-protection webhook's (namespace and claim deletes).
    pub protect_failure_policy: String,
    pub timeout_seconds: i32,
    /// The namespaces the webhooks never see besides [`ALWAYS_EXCLUDED`] and the Service's own:
    /// the policy's `excludeNamespaces` and any more the caller names.
    pub exclude_namespaces: Vec<String>,
}

/// The default failure policies (see [`Options`]).
pub const FAILURE_POLICY: &str = "Fail";
pub const PODS_FAILURE_POLICY: &str = "Ignore";

fn client(o: &Options, path: &str) -> WebhookClientConfig {
    let ca = (!o.ca_bundle.is_empty()).then(|| ByteString(o.ca_bundle.clone()));
    match &o.target {
        Target::Service { name, namespace } => WebhookClientConfig {
            ca_bundle: ca,
            service: Some(ServiceReference {
                name: name.clone(),
                namespace: namespace.clone(),
                path: Some(path.to_string()),
                port: Some(SERVICE_PORT),
            }),
            url: None,
        },
        Target::Url(u) => WebhookClientConfig {
            ca_bundle: ca,
            service: None,
            url: Some(format!("{}{path}", u.trim_end_matches('/'))),
        },
    }
}

fn namespace_selector(o: &Options) -> LabelSelector {
    let mut excluded: Vec<String> = ALWAYS_EXCLUDED.iter().map(|s| s.to_string()).collect();
    if let Target::Service { namespace, .. } = &o.target {
        excluded.push(namespace.clone());
    }
    excluded.extend(o.exclude_namespaces.iter().cloned());
    excluded.sort();
    excluded.dedup();
    LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: "NotIn".into(),
            values: Some(excluded),
        }]),
        match_labels: None,
    }
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "stsguard".to_string(),
        )])),
        ..Default::default()
    }
}

pub fn mutating(o: &Options) -> MutatingWebhookConfiguration {
    let webhooks = mutating_rules()
        .into_iter()
        .map(|(what, rules, managed_pods)| MutatingWebhook {
            name: format!("{what}.mutate.stsguard.io"),
            admission_review_versions: vec!["v1".into()],
            client_config: client(o, MUTATE_PATH),
            failure_policy: Some(if managed_pods {
                o.pods_failure_policy.clone()
            } else {
                o.failure_policy.clone()
            }),
            side_effects: "None".into(),
            timeout_seconds: Some(o.timeout_seconds),
            reinvocation_policy: Some("IfNeeded".into()),
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(namespace_selector(o)),
            object_selector: managed_pods.then(|| LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    keys::MANAGED.to_string(),
                    "true".to_string(),
                )])),
                match_expressions: None,
            }),
            rules: Some(rules),
            match_conditions: None,
        })
        .collect();
    MutatingWebhookConfiguration {
        metadata: meta(&o.name),
        webhooks: Some(webhooks),
    }
}

pub fn validating(o: &Options) -> ValidatingWebhookConfiguration {
    // A Namespace is matched by the namespaceSelector on its own labels: the excluded
    // namespaces' own deletes are not sent either.
    let webhook = |name: &str, failure_policy: &str, rules| ValidatingWebhook {
        name: name.into(),
        admission_review_versions: vec!["v1".into()],
        client_config: client(o, VALIDATE_PATH),
        failure_policy: Some(failure_policy.into()),
        side_effects: "None".into(),
        timeout_seconds: Some(o.timeout_seconds),
        match_policy: Some("Equivalent".into()),
        namespace_selector: Some(namespace_selector(o)),
        object_selector: None,
        rules: Some(rules),
        match_conditions: None,
    };
    ValidatingWebhookConfiguration {
        metadata: meta(&o.name),
        webhooks: Some(vec![
            webhook(
                "statefulsets.validate.stsguard.io",
                &o.failure_policy,
                validating_rules(),
            ),
            webhook(PROTECT_WEBHOOK, &o.protect_failure_policy, protect_rules()),
        ]),
    }
}

/// Both configurations as one multi-document YAML.
pub fn render(o: &Options) -> anyhow::Result<String> {
    Ok(format!(
        "---\n{}---\n{}",
        crate::yaml::to_string_of(&mutating(o))?,
        crate::yaml::to_string_of(&validating(o))?
    ))
}
