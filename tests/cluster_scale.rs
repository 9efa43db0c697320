//! The watch caches at cluster scale: what the projection keeps (every field delete protection
//! and the rules read), look-ups that read one namespace only, and the audit of a namespace from
//! the caches as the whole object judged by the webhook.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::json;
use stsguard::policy::{Policy, RuleId};
use stsguard::validate::{Lookup, Lookups, Review, Subject, validate};
use stsguard::watch::WatchLookups;

/// A protected StatefulSet as the API server sends it: managedFields, status, the
/// last-applied annotation, ordinals starting at 3, two replicas, a claim template `data`, a pod
/// volume mounting the claim `shared` by name, a retention policy.
fn protected(ns: &str, name: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {
            "name": name, "namespace": ns, "uid": format!("uid-{name}"),
            "resourceVersion": "42", "generation": 3,
            "labels": {"app": name},
            "annotations": {
                "stsguard.io/protect": "true",
                "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": \"copy\"}",
            },
            "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
        },
        "spec": {
            "replicas": 2,
            "ordinals": {"start": 3},
            "serviceName": name,
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "etcd", "image": "quay.io/coreos/etcd:v3.5.9",
                                    "command": ["etcd", "--initial-cluster-state=new"],
                                    "env": [{"name": "ETCD_NAME", "value": name}]}],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "cfg"}},
                        {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}},
                    ],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        },
        "status": {"replicas": 2, "readyReplicas": 2, "currentRevision": "r1", "updateRevision": "r1"},
    }))
    .unwrap()
}

fn pdb(ns: &str, name: &str, app: &str) -> PodDisruptionBudget {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "managedFields": [{"manager": "helm"}]},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": app}}},
        "status": {"currentHealthy": 3, "desiredHealthy": 2, "disruptionsAllowed": 1, "expectedPods": 3},
    }))
    .unwrap()
}

fn service(ns: &str, name: &str, app: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"x": "y"}},
        "spec": {"clusterIP": "None", "selector": {"app": app}, "ports": [{"port": 2379}]},
    }))
    .unwrap()
}

fn denied(l: &dyn Lookups, ns: &str, subject: Subject) -> Vec<String> {
    validate(
        &Review {
            namespace: ns,
            subject,
        },
        &Policy::default(),
        l,
    )
    .violations
    .into_iter()
    .filter(|f| f.rule == RuleId::DeleteProtection)
    .map(|f| f.message)
    .collect()
}

#[test]
fn a_cached_projected_statefulset_still_holds_its_namespace_and_its_claims() {
    let l = WatchLookups::from_objects(vec![], vec![], vec![], vec![protected("db", "etcd")]);
    let ns = denied(&*l, "db", Subject::DeleteNamespace);
    assert_eq!(ns.len(), 1, "the namespace delete is denied: {ns:?}");
    assert!(ns[0].contains("etcd"), "{ns:?}");
    // The claims of ordinals 3 and 4 (ordinals.start 3, replicas 2) are held, not 2 or 5.
    for claim in ["data-etcd-3", "data-etcd-4"] {
        let m = denied(&*l, "db", Subject::DeleteClaim { name: claim });
        assert_eq!(m.len(), 1, "{claim}: {m:?}");
        assert!(m[0].contains("volumeClaimTemplates[0] \"data\""), "{m:?}");
    }
    for claim in ["data-etcd-2", "data-etcd-5", "other"] {
        assert!(denied(&*l, "db", Subject::DeleteClaim { name: claim }).is_empty());
    }
    // The pod volume mounting a claim by name, at its index.
    let m = denied(&*l, "db", Subject::DeleteClaim { name: "shared" });
    assert!(
        m.first()
            .is_some_and(|m| m.contains("spec.template.spec.volumes[1] \"shared\"")),
        "{m:?}"
    );
    // Another namespace's delete does not see it.
    assert!(denied(&*l, "other", Subject::DeleteNamespace).is_empty());
}

#[test]
fn a_cached_statefulset_being_deleted_lets_its_namespace_go() {
    let mut s = protected("db", "etcd");
    s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-01-01T00:00:00Z".parse().unwrap(),
    ));
    let l = WatchLookups::from_objects(vec![], vec![], vec![], vec![s]);
    assert!(denied(&*l, "db", Subject::DeleteNamespace).is_empty());
    assert_eq!(
        denied(
            &*l,
            "db",
            Subject::DeleteClaim {
                name: "data-etcd-3"
            }
        )
        .len(),
        1,
        "its claims stay kept"
    );
}

#[test]
fn the_cache_keeps_the_whole_spec_for_the_audit_and_drops_what_nothing_reads() {
    let l = WatchLookups::from_objects(vec![], vec![], vec![], vec![protected("db", "etcd")]);
    let Lookup::Found(whole) = l.statefulset("db", "etcd") else {
        panic!("found");
    };
    let mut want = protected("db", "etcd");
    assert_eq!(
        whole.spec, want.spec,
        "the audit and Scale reviews judge the whole spec"
    );
    assert!(whole.status.is_none());
    assert!(whole.metadata.managed_fields.is_none());
    assert!(whole.metadata.resource_version.is_none());
    let anns = whole.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        anns.get("stsguard.io/protect").map(String::as_str),
        Some("true")
    );
    assert!(!anns.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(whole.metadata.labels, want.metadata.labels.take());
    assert_eq!(whole.metadata.uid.as_deref(), Some("uid-etcd"));
    // What delete protection reads of the namespace: the small view.
    let Lookup::Found(held) = l.statefulsets_in("db") else {
        panic!("found");
    };
    let spec = held[0].spec.clone().unwrap_or_default();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.ordinals.and_then(|o| o.start), Some(3));
    assert_eq!(
        spec.persistent_volume_claim_retention_policy
            .and_then(|p| p.when_deleted)
            .as_deref(),
        Some("Delete")
    );
    let pod = spec.template.spec.unwrap_or_default();
    assert!(
        pod.containers.is_empty(),
        "no containers in the delete view"
    );
    assert_eq!(pod.volumes.map(|v| v.len()), Some(2));
}

#[test]
fn look_ups_read_only_their_namespace() {
    // 200 PDBs in other namespaces selecting the same labels: none of them counts.
    let mut pdbs: Vec<PodDisruptionBudget> = (0..200)
        .map(|i| pdb(&format!("ns-{i}"), "etcd", "etcd"))
        .collect();
    let mut s = protected("db", "etcd");
    s.metadata.annotations = None;
    let services = vec![
        service("db", "etcd", "etcd"),
        service("web", "etcd", "etcd"),
    ];
    let l = WatchLookups::from_objects(services.clone(), vec![], pdbs.clone(), vec![s.clone()]);
    let Lookup::Found(in_db) = l.pdbs("db") else {
        panic!("synced")
    };
    assert!(in_db.is_empty());
    let Lookup::Found(in_7) = l.pdbs("ns-7") else {
        panic!("synced")
    };
    assert_eq!(in_7.len(), 1);
    assert_eq!(in_7[0].metadata.namespace.as_deref(), Some("ns-7"));
    assert!(in_7[0].status.is_none() && in_7[0].metadata.managed_fields.is_none());
    let audited = stsguard::audit::audit(&[Arc::new(s.clone())], &Policy::default(), &*l);
    let rules: Vec<_> = audited.objects[0].results.iter().map(|r| r.rule).collect();
    assert!(
        rules.contains(&RuleId::DisruptionBudget.into()),
        "{rules:?}"
    );
    assert!(
        !rules.contains(&RuleId::GoverningService.into()),
        "{rules:?}"
    );
    // The same PDB in the StatefulSet's namespace: the rule passes.
    pdbs.push(pdb("db", "etcd", "etcd"));
    let l = WatchLookups::from_objects(services, vec![], pdbs, vec![s.clone()]);
    let audited = stsguard::audit::audit(&[Arc::new(s)], &Policy::default(), &*l);
    assert!(
        audited.objects[0]
            .results
            .iter()
            .all(|r| r.rule != RuleId::DisruptionBudget),
        "{:?}",
        audited.objects[0].results
    );
    assert!(matches!(l.service("web", "etcd"), Lookup::Found(_)));
    assert!(matches!(l.service("db", "nope"), Lookup::Missing));
    assert_eq!(l.counts(), (2, 0, 201, 1));
}

#[tokio::test]
async fn the_audit_of_a_namespace_from_the_caches_judges_as_the_audit_of_the_objects() {
    let sets: Vec<StatefulSet> = ["a", "b", "c"]
        .iter()
        .flat_map(|ns| (0..3).map(move |i| protected(ns, &format!("etcd-{i}"))))
        .collect();
    let l = WatchLookups::from_objects(vec![], vec![], vec![], sets.clone());
    assert_eq!(l.statefulset_namespaces().unwrap(), ["a", "b", "c"]);
    let policy = Policy::default();
    let from_cache = stsguard::audit::audit_namespace(&l, "b", &policy)
        .await
        .unwrap();
    let direct: Vec<Arc<StatefulSet>> = sets
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some("b"))
        .map(Arc::new)
        .collect();
    let want = stsguard::audit::audit(&direct, &policy, &*l);
    assert_eq!(from_cache, want);
    assert_eq!(from_cache.objects.len(), 3);
    assert!(
        from_cache.objects[0]
            .results
            .iter()
            .any(|r| r.rule == RuleId::ReadinessProbe && r.message.contains("\"etcd\"")),
        "the rules saw the containers: {:?}",
        from_cache.objects[0].results
    );
}
