//! The rules about storage: claims per pod, hostPath, node-local volumes, access modes, the claims' retention.

use super::*;

pub fn shared_claim(sts: &StatefulSet) -> Verdict {
    let n = replicas(sts);
    if n <= 1 {
        return Verdict::Pass;
    }
    let Some(pod) = pod_spec(sts) else {
        return Verdict::Pass;
    };
    // A pod volume named like a volumeClaimTemplate is replaced by the per-pod claim by the
    // StatefulSet controller (cockroachdb's example relies on it): not shared.
    let templates: Vec<&str> = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .map(|v| {
            v.iter()
                .filter_map(|t| t.metadata.name.as_deref())
                .collect()
        })
        .unwrap_or_default();
    for (i, v) in pod.volumes.iter().flatten().enumerate() {
        if let Some(pvc) = &v.persistent_volume_claim {
            if pvc.read_only == Some(true) || templates.contains(&v.name.as_str()) {
                continue;
            }
            return Verdict::Fail(format!(
                "spec.template.spec.volumes[{i}] \"{}\" mounts PVC \"{}\": all {n} replicas would write it; use volumeClaimTemplates",
                v.name, pvc.claim_name
            ));
        }
    }
    Verdict::Pass
}

pub fn hostpath_spread(sts: &StatefulSet) -> Verdict {
    let n = replicas(sts);
    let Some(pod) = pod_spec(sts) else {
        return Verdict::Pass;
    };
    if n <= 1 || !uses_host_path(pod) {
        return Verdict::Pass;
    }
    let spread = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|ts| ts.iter().any(|t| is_equivalent(t, HOSTNAME, sts)));
    if spread {
        Verdict::Pass
    } else {
        Verdict::Fail(format!(
            "{n} replicas mount a hostPath: two on one node share it; use required anti-affinity on {HOSTNAME} ({}: required)",
            keys::ANTI_AFFINITY
        ))
    }
}

/// Provisioners of node-local volumes: their claims must bind where the pod lands.
fn is_local_provisioner(p: &str) -> bool {
    const LOCAL: &[&str] = &[
        "kubernetes.io/no-provisioner",
        "rancher.io/local-path",
        "openebs.io/local",
        "local.csi.openebs.io",
        "topolvm.io",
        "topolvm.cybozu.com",
        "lvm.csi.metal-stack.io",
        "hostpath.csi.k8s.io",
        "k8s.io/minikube-hostpath",
    ];
    LOCAL.contains(&p)
        || p.contains("local-path")
        || p.contains("local-volume")
        || p.contains("localpv")
}

pub fn local_storage_binding(sts: &StatefulSet, lookups: &dyn Lookups) -> Verdict {
    let Some(spec) = &sts.spec else {
        return Verdict::Pass;
    };
    for (i, vct) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let legacy = vct.metadata.annotations.as_ref().and_then(|a| {
            a.get("volume.beta.kubernetes.io/storage-class")
                .or_else(|| a.get("volume.alpha.kubernetes.io/storage-class"))
        });
        let class = vct
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref())
            .or(legacy.map(String::as_str));
        if class == Some("") {
            continue; // explicitly no class: pre-bound PVs
        }
        let shown = class.unwrap_or("(default)");
        match lookups.storage_class(class) {
            Lookup::Unknown(why) => {
                return Verdict::NotChecked(format!("StorageClass {shown} ({why})"));
            }
            Lookup::Missing => {}
            Lookup::Found(sc) => {
                let mode = sc.volume_binding_mode.as_deref().unwrap_or("Immediate");
                if is_local_provisioner(&sc.provisioner) && mode != "WaitForFirstConsumer" {
                    return Verdict::Fail(format!(
                        "spec.volumeClaimTemplates[{i}]: StorageClass \"{}\" ({}) binds {mode}; set volumeBindingMode: WaitForFirstConsumer",
                        sc.metadata.name.as_deref().unwrap_or(shown),
                        sc.provisioner
                    ));
                }
            }
        }
    }
    Verdict::Pass
}

pub fn claim_access_mode(sts: &StatefulSet) -> Verdict {
    let Some(spec) = &sts.spec else {
        return Verdict::Pass;
    };
    for (i, vct) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let modes = vct.spec.as_ref().and_then(|s| s.access_modes.as_ref());
        if modes.is_some_and(|m| m.iter().any(|m| m == "ReadWriteMany")) {
            return Verdict::Fail(format!(
                "spec.volumeClaimTemplates[{i}].spec.accessModes asks ReadWriteMany for per-pod data; use ReadWriteOnce"
            ));
        }
    }
    Verdict::Pass
}

pub fn claim_retention(sts: &StatefulSet) -> Verdict {
    let Some(p) = sts
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
    else {
        return Verdict::Pass;
    };
    let has_claims = sts
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .is_some_and(|v| !v.is_empty());
    for (field, v) in [
        ("whenDeleted", &p.when_deleted),
        ("whenScaled", &p.when_scaled),
    ] {
        if has_claims && v.as_deref() == Some("Delete") {
            return Verdict::Fail(format!(
                "spec.persistentVolumeClaimRetentionPolicy.{field}: Delete removes the data; use Retain"
            ));
        }
    }
    Verdict::Pass
}
