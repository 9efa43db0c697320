//! The role label of pods created while stsguard could not be reached.
//!
//! The pods webhook is registered with `failurePolicy: Ignore` so that pod creation never waits
//! for stsguard: a pod of a role-managed StatefulSet created during an outage (or whose review
//! timed out) starts without its `stsguard.io/role` label, and a Service that selects a role
//! misses it. This task adds the label once stsguard runs: a watch with the label selector
//! [`SELECTOR`] (managed, and no role label yet) hands it exactly those pods — the API server
//! filters, so nothing is cached and a labelled pod leaves the watch — and each gets the label
//! the Pod hook would have given it, through a merge patch carrying the pod's resourceVersion
//! (a pod changed in between is seen again). A role node selector cannot be added to a running
//! pod (a pod's nodeSelector is immutable): that is logged, with the fix (delete the pod; its
//! replacement is placed).

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::k8s::keys;
use crate::mutate::pod::mutate_pod;
use crate::policy::Policy;

/// Managed pods without a role label: the only pods the watch receives.
pub const SELECTOR: &str = "stsguard.io/managed=true,!stsguard.io/role";

/// What became of one pod (the `result` label of `stsguard_pod_role_repairs_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Repaired {
    /// The role label was added.
    Labelled,
    /// The pod carries no role stsguard can tell (no roles annotation, no ordinal): left alone.
    NoRole,
    /// The patch failed; the pod is tried again when the watch next sees it.
    Failed,
}

impl Repaired {
    pub fn as_str(self) -> &'static str {
        match self {
            Repaired::Labelled => "labelled",
            Repaired::NoRole => "no_role",
            Repaired::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct RepairLabels {
    pub result: &'static str,
}

/// What a pod created without stsguard lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    /// The role label value it should carry.
    pub role: String,
    /// Node selector pairs of its role it does not have (a running pod cannot get them).
    pub placement: Vec<(String, String)>,
}

/// What the Pod hook would have added to `pod` (a managed pod without a role label). `Err`:
/// why it has no role (the Pod hook's warning).
pub fn missing(pod: &Pod) -> Result<Missing, String> {
    let (out, report) = mutate_pod(pod);
    let role = out
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(keys::ROLE))
        .filter(|_| {
            pod.metadata
                .labels
                .as_ref()
                .is_none_or(|l| !l.contains_key(keys::ROLE))
        })
        .cloned()
        .ok_or_else(|| match report.warnings.first() {
            Some(w) => w.clone(),
            None => "no role to add".to_string(),
        })?;
    let had = pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    let placement = out
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .into_iter()
        .flatten()
        .filter(|(k, _)| had.is_none_or(|h| !h.contains_key(*k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Missing { role, placement })
}

/// Starts the repair (inside a Tokio runtime). `counts` is the repair counter family.
pub fn spawn(
    client: kube::Client,
    policy: Arc<ArcSwap<Policy>>,
    counts: Family<RepairLabels, Counter>,
) {
    tokio::spawn(run(client, policy, counts));
}

async fn run(
    client: kube::Client,
    policy: Arc<ArcSwap<Policy>>,
    counts: Family<RepairLabels, Counter>,
) {
    let api: Api<Pod> = Api::all(client.clone());
    let stream = watcher(api, watcher::Config::default().labels(SELECTOR)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut last_error: Option<String> = None;
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => p,
            Ok(_) => continue,
            Err(e) => {
                let e = e.to_string();
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "pod role repair: cannot watch pods (the ClusterRole grants list, watch and patch on pods); retrying");
                }
                last_error = Some(e);
                continue;
            }
        };
        last_error = None;
        let result = repair(&client, &policy.load(), &pod).await;
        if let Some(r) = result {
            counts
                .get_or_create(&RepairLabels { result: r.as_str() })
                .inc();
        }
    }
}

/// Labels one pod. None: not stsguard's to repair (an excluded namespace).
async fn repair(client: &kube::Client, policy: &Policy, pod: &Pod) -> Option<Repaired> {
    let ns = pod.metadata.namespace.as_deref()?;
    let name = pod.metadata.name.as_deref()?;
    if policy.is_excluded(Some(ns)) || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let what = match missing(pod) {
        Ok(m) => m,
        Err(why) => {
            tracing::warn!(namespace = %ns, pod = %name, reason = %crate::text::cut(&why, 200), "pod role repair: no role for this pod; left alone");
            return Some(Repaired::NoRole);
        }
    };
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": pod.metadata.resource_version,
            "labels": {keys::ROLE: what.role},
        }
    });
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(namespace = %ns, pod = %name, role = %what.role, "pod role repair: added the role label of a pod created while stsguard was not reachable");
            if !what.placement.is_empty() {
                let pairs: Vec<String> = what
                    .placement
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                tracing::warn!(namespace = %ns, pod = %name, role = %what.role, node_selector = %pairs.join(","), "pod role repair: this pod was created without its role's node selector, which a running pod cannot get; delete the pod to have it recreated and placed");
            }
            Some(Repaired::Labelled)
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => None,
        Err(e) => {
            tracing::warn!(namespace = %ns, pod = %name, error = %e, "pod role repair: cannot label the pod; tried again when the watch sees it next");
            Some(Repaired::Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: &[(&str, &str)], annotations: &[(&str, &str)], name: &str) -> Pod {
        let map = |p: &[(&str, &str)]| {
            Some(
                p.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )
        };
        let mut p = Pod::default();
        p.metadata.name = Some(name.into());
        p.metadata.labels = map(labels);
        p.metadata.annotations = map(annotations);
        p
    }

    #[test]
    fn a_pod_created_without_stsguard_gets_the_role_its_ordinal_has() {
        let roles = [(keys::ROLES, "primary=0,replica=*")];
        let p = pod(
            &[(keys::MANAGED, "true"), (keys::POD_INDEX, "0")],
            &roles,
            "db-0",
        );
        assert_eq!(missing(&p).map(|m| m.role), Ok("primary".to_string()));
        let p = pod(&[(keys::MANAGED, "true")], &roles, "db-2");
        assert_eq!(missing(&p).map(|m| m.role), Ok("replica".to_string()));
        // Its role's placement is reported, not added.
        let p = pod(
            &[(keys::MANAGED, "true")],
            &[
                (keys::ROLES, "primary=0,replica=*"),
                ("stsguard.io/role-node-selector.primary", "tier=big"),
            ],
            "db-0",
        );
        let m = missing(&p).unwrap();
        assert_eq!(m.placement, vec![("tier".to_string(), "big".to_string())]);
    }

    #[test]
    fn a_pod_without_roles_or_ordinal_or_with_a_role_already_is_left_alone() {
        let p = pod(&[(keys::MANAGED, "true")], &[], "db-0");
        assert!(missing(&p).is_err_and(|e| e.contains(keys::ROLES)));
        let p = pod(
            &[(keys::MANAGED, "true")],
            &[(keys::ROLES, "primary=0,replica=*")],
            "standalone",
        );
        assert!(missing(&p).is_err());
        let p = pod(
            &[(keys::MANAGED, "true"), (keys::ROLE, "mine")],
            &[(keys::ROLES, "primary=0,replica=*")],
            "db-0",
        );
        assert!(missing(&p).is_err(), "a role label already there is kept");
    }
}
