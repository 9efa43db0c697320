//! The rules about a set's service and availability: its governing Service, readiness probes, a PodDisruptionBudget.

use super::*;

pub fn governing_service(sts: &StatefulSet, ns: &str, lookups: &dyn Lookups) -> Verdict {
    let Some(svc) = sts
        .spec
        .as_ref()
        .and_then(|s| s.service_name.as_deref())
        .filter(|s| !s.is_empty())
    else {
        return Verdict::Fail(
            "spec.serviceName is empty: pods get no stable DNS names; name a headless Service"
                .into(),
        );
    };
    match lookups.service(ns, svc) {
        Lookup::Unknown(why) => Verdict::NotChecked(format!("Service {ns}/{svc} ({why})")),
        Lookup::Missing => Verdict::Fail(format!(
            "spec.serviceName: no Service \"{svc}\" in {ns}; create one with clusterIP: None selecting the pods"
        )),
        Lookup::Found(s) => {
            let spec = s.spec.clone().unwrap_or_default();
            if spec.cluster_ip.as_deref() != Some("None") {
                return Verdict::Fail(format!(
                    "spec.serviceName: Service \"{svc}\" is not headless; set its clusterIP: None"
                ));
            }
            match spec.selector.filter(|s| !s.is_empty()) {
                // No selector: endpoints managed by hand (Patroni, Spilo): nothing to compare.
                None => Verdict::Pass,
                Some(sel) => {
                    let labels = pod_labels(sts);
                    if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                        Verdict::Pass
                    } else {
                        Verdict::Fail(format!(
                            "spec.serviceName: Service \"{svc}\" selector does not match the pod labels; align them"
                        ))
                    }
                }
            }
        }
    }
}

pub fn readiness_probe(sts: &StatefulSet) -> Verdict {
    let Some(spec) = &sts.spec else {
        return Verdict::Pass;
    };
    if spec
        .pod_management_policy
        .as_deref()
        .unwrap_or("OrderedReady")
        != "OrderedReady"
    {
        return Verdict::Pass;
    }
    let Some(pod) = pod_spec(sts) else {
        return Verdict::Pass;
    };
    match pod
        .containers
        .iter()
        .position(|c| c.readiness_probe.is_none())
    {
        None => Verdict::Pass,
        Some(i) => Verdict::Fail(format!(
            "spec.template.spec.containers[{i}] \"{}\" has no readinessProbe: OrderedReady ordering means nothing; add one",
            pod.containers[i].name
        )),
    }
}

pub fn disruption_budget(sts: &StatefulSet, ns: &str, lookups: &dyn Lookups) -> Verdict {
    if replicas(sts) <= 1 {
        return Verdict::Pass;
    }
    let labels = pod_labels(sts);
    match lookups.pdbs(ns) {
        Lookup::Unknown(why) => Verdict::NotChecked(format!("PodDisruptionBudgets ({why})")),
        Lookup::Missing => Verdict::Fail(no_pdb(sts)),
        Lookup::Found(pdbs) => {
            let selected = pdbs.iter().any(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| selector_matches(sel, &labels))
            });
            if selected {
                Verdict::Pass
            } else {
                Verdict::Fail(no_pdb(sts))
            }
        }
    }
}

fn no_pdb(sts: &StatefulSet) -> String {
    format!(
        "no PodDisruptionBudget selects the pods of {}: a drain may evict them all; add one",
        name(sts)
    )
}
