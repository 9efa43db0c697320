//! Every rule with a passing and a failing object, in each mode; UPDATE, Scale and
//! DELETE; object overrides; denials that list every violation.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::policy::{Mode, Policy, RuleId};
use stsguard::validate::lookups::StaticLookups;
use stsguard::validate::{Findings, NoLookups, Review, Subject, validate};

const BASE: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: ns}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - name: db
        image: db
        readinessProbe: {exec: {command: [ready]}}
"#;

fn sts(f: impl FnOnce(&mut serde_json::Value)) -> StatefulSet {
    let mut v: serde_json::Value = stsguard::yaml::from_str(BASE).unwrap();
    f(&mut v);
    serde_json::from_value(v).unwrap()
}

fn ann(v: &mut serde_json::Value, k: &str, val: &str) {
    let a = v["metadata"]
        .as_object_mut()
        .unwrap()
        .entry("annotations")
        .or_insert(serde_json::json!({}));
    a[k] = val.into();
}

fn y(s: &str) -> serde_json::Value {
    stsguard::yaml::from_str(s).unwrap()
}

/// A cluster where the base StatefulSet is fine: a headless Service, a PDB, a network StorageClass.
fn cluster() -> StaticLookups {
    StaticLookups {
        services: vec![Arc::new(stsguard::yaml::from_str(
            "{apiVersion: v1, kind: Service, metadata: {name: db, namespace: ns}, spec: {clusterIP: None, selector: {app: db}}}",
        ).unwrap())],
        classes: vec![
            Arc::new(stsguard::yaml::from_str("{apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {name: standard, annotations: {storageclass.kubernetes.io/is-default-class: 'true'}}, provisioner: pd.csi.storage.gke.io}").unwrap()),
            Arc::new(stsguard::yaml::from_str("{apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {name: local}, provisioner: kubernetes.io/no-provisioner, volumeBindingMode: Immediate}").unwrap()),
            Arc::new(stsguard::yaml::from_str("{apiVersion: storage.k8s.io/v1, kind: StorageClass, metadata: {name: local-wffc}, provisioner: kubernetes.io/no-provisioner, volumeBindingMode: WaitForFirstConsumer}").unwrap()),
        ],
        pdbs: vec![Arc::new(stsguard::yaml::from_str(
            "{apiVersion: policy/v1, kind: PodDisruptionBudget, metadata: {name: db, namespace: ns}, spec: {maxUnavailable: 1, selector: {matchLabels: {app: db}}}}",
        ).unwrap())],
        statefulsets: vec![],
        authoritative: true,
    }
}

/// Only `rule` on, in `mode`.
fn only(rule: RuleId, mode: Mode) -> Policy {
    let mut p = Policy::default();
    for r in RuleId::ALL {
        p.validation
            .rules
            .insert(*r, if *r == rule { mode } else { Mode::Off });
    }
    p
}

fn write(o: &StatefulSet, old: Option<&StatefulSet>, p: &Policy, l: &StaticLookups) -> Findings {
    validate(
        &Review {
            namespace: "ns",
            subject: Subject::Write { object: o, old },
        },
        p,
        l,
    )
}

/// The rule rejects the object (enforce): returns the message.
fn rejects(rule: RuleId, o: &StatefulSet) -> String {
    let f = write(o, None, &only(rule, Mode::Enforce), &cluster());
    assert!(!f.allowed(), "{rule} should reject");
    assert_eq!(f.violations.len(), 1);
    assert_eq!(f.violations[0].rule, rule);
    f.violations[0].message.clone()
}

fn accepts(rule: RuleId, o: &StatefulSet) {
    let f = write(o, None, &only(rule, Mode::Enforce), &cluster());
    assert!(
        f.allowed() && f.warnings.is_empty(),
        "{rule} should accept: {:?} {:?}",
        f.violations,
        f.warnings
    );
}

#[test]
fn the_base_object_passes_every_rule() {
    let f = write(&sts(|_| {}), None, &Policy::default(), &cluster());
    assert!(f.allowed() && f.warnings.is_empty(), "{f:?}");
    // Every rule of a write but the scale-down one (a CREATE has no old count).
    let writes = stsguard::validate::RULES
        .iter()
        .filter(|r| r.runs != stsguard::validate::Runs::OnDelete)
        .filter(|r| r.id != RuleId::QuorumScaleDown);
    let ran: Vec<RuleId> = f.results.iter().map(|r| r.0).collect();
    assert_eq!(
        ran,
        writes.map(|r| r.id).collect::<Vec<_>>(),
        "every CREATE rule ran: {:?}",
        f.results
    );
}

#[test]
fn governing_service() {
    let r = RuleId::GoverningService;
    accepts(r, &sts(|_| {}));
    assert!(
        rejects(r, &sts(|v| v["spec"]["serviceName"] = "nope".into()))
            .contains("no Service \"nope\"")
    );
    assert!(
        rejects(r, &sts(|v| v["spec"]["serviceName"] = "".into()))
            .contains("spec.serviceName is empty")
    );
    assert!(
        rejects(
            r,
            &sts(|v| v["spec"]["template"]["metadata"]["labels"]["app"] = "other".into())
        )
        .contains("selector does not match")
    );
    let mut l = cluster();
    l.services = vec![Arc::new(stsguard::yaml::from_str("{apiVersion: v1, kind: Service, metadata: {name: db, namespace: ns}, spec: {clusterIP: 10.0.0.1, selector: {app: db}}}").unwrap())];
    let f = write(&sts(|_| {}), None, &only(r, Mode::Enforce), &l);
    assert!(f.violations[0].message.contains("not headless"), "{f:?}");
    // A Service without a selector (hand-managed endpoints, e.g. Patroni) is accepted.
    l.services = vec![Arc::new(stsguard::yaml::from_str("{apiVersion: v1, kind: Service, metadata: {name: db, namespace: ns}, spec: {clusterIP: None}}").unwrap())];
    assert!(write(&sts(|_| {}), None, &only(r, Mode::Enforce), &l).allowed());
}

#[test]
fn shared_claim() {
    let r = RuleId::SharedClaim;
    let pvc = |v: &mut serde_json::Value| {
        v["spec"]["template"]["spec"]["volumes"] =
            y("[{name: data, persistentVolumeClaim: {claimName: shared}}]")
    };
    let m = rejects(r, &sts(pvc));
    assert!(
        m.contains("volumes[0] \"data\"") && m.contains("volumeClaimTemplates"),
        "{m}"
    );
    accepts(
        r,
        &sts(|v| {
            pvc(v);
            v["spec"]["replicas"] = 1.into();
        }),
    );
    accepts(
        r,
        &sts(|v| {
            v["spec"]["template"]["spec"]["volumes"] =
                y("[{name: data, persistentVolumeClaim: {claimName: fixtures, readOnly: true}}]")
        }),
    );
    // Named like a volumeClaimTemplate: the controller swaps in the per-pod claim.
    accepts(
        r,
        &sts(|v| {
            pvc(v);
            v["spec"]["volumeClaimTemplates"] =
                y("[{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce]}}]");
        }),
    );
}

#[test]
fn hostpath_spread() {
    let r = RuleId::HostpathSpread;
    let hp = |v: &mut serde_json::Value| {
        v["spec"]["template"]["spec"]["volumes"] = y("[{name: h, hostPath: {path: /x}}]")
    };
    assert!(rejects(r, &sts(hp)).contains("required anti-affinity on kubernetes.io/hostname"));
    accepts(
        r,
        &sts(|v| {
            hp(v);
            v["spec"]["replicas"] = 1.into();
        }),
    );
    accepts(
        r,
        &sts(|v| {
            hp(v);
            v["spec"]["template"]["spec"]["affinity"] = y(
                "{podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {app: db}}}]}}",
            );
        }),
    );
    // The mutation makes a hostPath set pass: validation runs after it.
    let m = stsguard::mutate::mutate(&sts(hp), &Policy::default());
    accepts(r, &m.object);
}

#[test]
fn quorum_odd() {
    let r = RuleId::QuorumOdd;
    let q = |n: i32| {
        sts(move |v| {
            ann(v, "stsguard.io/quorum", "true");
            v["spec"]["replicas"] = n.into();
        })
    };
    accepts(r, &q(3));
    accepts(r, &q(1));
    accepts(r, &q(0));
    assert!(rejects(r, &q(4)).contains("use 3 or 5"));
    accepts(r, &q(i32::MIN)); // invalid, left to the API server's validation; no overflow
    accepts(r, &sts(|v| v["spec"]["replicas"] = 4.into()));
}

#[test]
fn quorum_scale_down_on_update() {
    let q = |n: i32| {
        sts(move |v| {
            ann(v, "stsguard.io/quorum", "true");
            v["spec"]["replicas"] = n.into();
        })
    };
    let p = only(RuleId::QuorumScaleDown, Mode::Enforce);
    let f = write(&q(2), Some(&q(5)), &p, &cluster());
    assert!(!f.allowed());
    assert!(
        f.violations[0].message.contains("5 -> 2")
            && f.violations[0].message.contains("majority (3)"),
        "{f:?}"
    );
    for (old, new) in [(5, 3), (3, 2), (3, 0), (3, 5)] {
        assert!(
            write(&q(new), Some(&q(old)), &p, &cluster()).allowed(),
            "{old}->{new}"
        );
    }
    assert!(!write(&q(1), Some(&q(3)), &p, &cluster()).allowed());
    // Not on CREATE (no old object).
    assert!(write(&q(1), None, &p, &cluster()).allowed());
}

#[test]
fn local_storage_binding() {
    let r = RuleId::LocalStorageBinding;
    let vct = |class: Option<&str>| {
        let class = class.map(String::from);
        sts(move |v| {
            let mut t = y(
                "{metadata: {name: data}, spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}",
            );
            if let Some(c) = class {
                t["spec"]["storageClassName"] = c.into();
            }
            v["spec"]["volumeClaimTemplates"] = serde_json::json!([t]);
        })
    };
    let m = rejects(r, &vct(Some("local")));
    assert!(
        m.contains("volumeClaimTemplates[0]") && m.contains("WaitForFirstConsumer"),
        "{m}"
    );
    accepts(r, &vct(Some("local-wffc")));
    accepts(r, &vct(Some("standard")));
    accepts(r, &vct(None)); // the default class is a network one
    // Legacy annotation naming the class.
    let legacy = sts(|v| {
        v["spec"]["volumeClaimTemplates"] = y(
            "[{metadata: {name: d, annotations: {volume.beta.kubernetes.io/storage-class: local}}, spec: {accessModes: [ReadWriteOnce]}}]",
        )
    });
    rejects(r, &legacy);
}

#[test]
fn claim_access_mode_and_retention() {
    let rwx = sts(|v| {
        v["spec"]["volumeClaimTemplates"] =
            y("[{metadata: {name: d}, spec: {accessModes: [ReadWriteMany]}}]")
    });
    assert!(rejects(RuleId::ClaimAccessMode, &rwx).contains("accessModes asks ReadWriteMany"));
    accepts(
        RuleId::ClaimAccessMode,
        &sts(|v| {
            v["spec"]["volumeClaimTemplates"] =
                y("[{metadata: {name: d}, spec: {accessModes: [ReadWriteOnce]}}]")
        }),
    );
    let ret = |wd: &str| {
        let wd = wd.to_string();
        sts(move |v| {
            v["spec"]["volumeClaimTemplates"] =
                y("[{metadata: {name: d}, spec: {accessModes: [ReadWriteOnce]}}]");
            v["spec"]["persistentVolumeClaimRetentionPolicy"] =
                serde_json::json!({"whenDeleted": wd, "whenScaled": "Retain"});
        })
    };
    assert!(rejects(RuleId::ClaimRetention, &ret("Delete")).contains("whenDeleted: Delete"));
    accepts(RuleId::ClaimRetention, &ret("Retain"));
}

#[test]
fn protect_retention_finds_claims_that_would_go_with_a_protected_statefulset() {
    let with = |protect: Option<&str>, when_deleted: &str, templates: bool| {
        let (protect, when_deleted) = (protect.map(str::to_string), when_deleted.to_string());
        sts(move |v| {
            if let Some(p) = protect {
                ann(v, "stsguard.io/protect", &p);
            }
            if templates {
                v["spec"]["volumeClaimTemplates"] = y("[{metadata: {name: d}, spec: {}}]");
            }
            v["spec"]["persistentVolumeClaimRetentionPolicy"] =
                serde_json::json!({"whenDeleted": when_deleted, "whenScaled": "Delete"});
        })
    };
    assert_eq!(
        rejects(
            RuleId::ProtectRetention,
            &with(Some("true"), "Delete", true)
        ),
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Delete deletes the protected data; use Retain"
    );
    // A value neither "true" nor "false" protects (it fails closed), so it is found too.
    rejects(RuleId::ProtectRetention, &with(Some("yes"), "Delete", true));
    accepts(
        RuleId::ProtectRetention,
        &with(Some("true"), "Retain", true),
    );
    accepts(
        RuleId::ProtectRetention,
        &with(Some("false"), "Delete", true),
    );
    accepts(RuleId::ProtectRetention, &with(None, "Delete", true));
    // No claim templates: nothing to delete.
    accepts(
        RuleId::ProtectRetention,
        &with(Some("true"), "Delete", false),
    );
    // Its default is warn: allowed with the warning, next to claim-retention's.
    let f = write(
        &with(Some("true"), "Delete", true),
        None,
        &Policy::default(),
        &cluster(),
    );
    assert!(f.allowed(), "{f:?}");
    let rules: Vec<RuleId> = f.warnings.iter().map(|w| w.rule).collect();
    assert_eq!(rules, [RuleId::ClaimRetention, RuleId::ProtectRetention]);
    assert!(f.warning_lines().iter().all(|w| w.len() <= 120), "{f:?}");
}

#[test]
fn readiness_probe_and_ordered_roles() {
    let no_probe = |v: &mut serde_json::Value| {
        v["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("readinessProbe")
            .map(|_| ())
            .unwrap_or(())
    };
    assert!(
        rejects(RuleId::ReadinessProbe, &sts(no_probe))
            .contains("containers[0] \"db\" has no readinessProbe")
    );
    accepts(
        RuleId::ReadinessProbe,
        &sts(|v| {
            no_probe(v);
            v["spec"]["podManagementPolicy"] = "Parallel".into();
        }),
    );
    let roles = |v: &mut serde_json::Value| ann(v, "stsguard.io/roles", "primary=0,replica=*");
    assert!(
        rejects(
            RuleId::OrderedRoles,
            &sts(|v| {
                roles(v);
                v["spec"]["podManagementPolicy"] = "Parallel".into();
            })
        )
        .contains("the primary may start last")
    );
    accepts(RuleId::OrderedRoles, &sts(roles));
}

#[test]
fn role_spec_quotes_the_bad_part() {
    let r = RuleId::RoleSpec;
    let with = |pairs: &'static [(&'static str, &'static str)]| {
        sts(move |v| {
            for (k, val) in pairs {
                ann(v, k, val)
            }
        })
    };
    accepts(
        r,
        &with(&[
            ("stsguard.io/roles", "primary=0,replica=*"),
            ("stsguard.io/role-node-selector.primary", "node-class=big"),
        ]),
    );
    assert!(
        rejects(r, &with(&[("stsguard.io/roles", "primary=0,replica=0-")]))
            .contains("\"primary=0\" and \"replica=0-\" overlap")
    );
    let m = rejects(
        r,
        &with(&[
            ("stsguard.io/roles", "primary=0,replica=*"),
            ("stsguard.io/role-node-selector.leader", "a=b"),
        ]),
    );
    assert!(m.contains("role \"leader\" is not in"), "{m}");
    let m = rejects(
        r,
        &with(&[
            ("stsguard.io/roles", "primary=0,replica=*"),
            (
                "stsguard.io/role-node-selector.primary",
                "node-class=Big Box",
            ),
        ]),
    );
    assert!(m.contains("\"Big Box\""), "{m}");
    assert!(
        rejects(
            r,
            &with(&[("stsguard.io/role-node-selector.primary", "a=b")])
        )
        .contains("is not")
    );
    assert!(
        rejects(
            r,
            &with(&[
                ("stsguard.io/roles", "primary=0,replica=*"),
                ("stsguard.io/server-id-base", "ten")
            ])
        )
        .contains("\"ten\"")
    );
}

#[test]
fn role_mount_path_refuses_system_paths() {
    let r = RuleId::RoleSpec;
    let at = |path: &'static str| {
        sts(move |v| {
            ann(v, "stsguard.io/roles", "primary=0,replica=*");
            ann(v, "stsguard.io/role-mount-path", path);
        })
    };
    accepts(r, &at("/etc/stsguard"));
    accepts(r, &at("/var/lib/mysql-role"));
    for bad in [
        "/",
        "/bin",
        "/usr",
        "/usr/local/bin",
        "/etc",
        "/etc/",
        "/lib64",
        "/proc/self",
        "/sys",
        "/dev/shm",
        "/var/run/secrets",
        "/var/run/secrets/kubernetes.io",
        "//etc",
        "/etc/stsguard/../../usr",
        "relative/path",
    ] {
        let m = rejects(r, &at(bad));
        assert!(m.contains("stsguard.io/role-mount-path"), "{bad}: {m}");
    }
}

#[test]
fn disruption_budget() {
    let r = RuleId::DisruptionBudget;
    accepts(r, &sts(|_| {}));
    assert!(
        rejects(
            r,
            &sts(|v| v["spec"]["template"]["metadata"]["labels"]["app"] = "x".into())
        )
        .contains("no PodDisruptionBudget selects")
    );
    accepts(
        r,
        &sts(|v| {
            v["spec"]["template"]["metadata"]["labels"]["app"] = "x".into();
            v["spec"]["replicas"] = 1.into();
        }),
    );
}

#[test]
fn delete_protection() {
    let p = only(RuleId::DeleteProtection, Mode::Enforce);
    let protected = sts(|v| ann(v, "stsguard.io/protect", "true"));
    let f = validate(
        &Review {
            namespace: "ns",
            subject: Subject::Delete {
                old: Some(&protected),
            },
        },
        &p,
        &cluster(),
    );
    assert!(!f.allowed());
    assert!(f.violations[0].message.contains("stsguard.io/protect=true"));
    let plain = sts(|_| {});
    assert!(
        validate(
            &Review {
                namespace: "ns",
                subject: Subject::Delete { old: Some(&plain) }
            },
            &p,
            &cluster()
        )
        .allowed()
    );
    assert!(
        validate(
            &Review {
                namespace: "ns",
                subject: Subject::Delete { old: None }
            },
            &p,
            &cluster()
        )
        .allowed()
    );
}

#[test]
fn single_instance() {
    let r = RuleId::SingleInstance;
    let s = |n: i32| {
        sts(move |v| {
            ann(v, "stsguard.io/single-instance", "true");
            v["spec"]["replicas"] = n.into();
        })
    };
    accepts(r, &s(1));
    assert!(rejects(r, &s(2)).contains("keep replicas at 1"));
}

/// For every rule, a failing request; checked in each mode.
#[test]
fn every_rule_in_every_mode() {
    let pvc = sts(|v| {
        v["spec"]["template"]["spec"]["volumes"] =
            y("[{name: d, persistentVolumeClaim: {claimName: c}}]")
    });
    let quorum = |n: i32| {
        sts(move |v| {
            ann(v, "stsguard.io/quorum", "true");
            v["spec"]["replicas"] = n.into();
        })
    };
    type Case = (RuleId, Box<dyn Fn(&Policy) -> Findings>);
    let cases: Vec<Case> = vec![
        (
            RuleId::GoverningService,
            Box::new(|p| {
                write(
                    &sts(|v| v["spec"]["serviceName"] = "x".into()),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::SharedClaim,
            Box::new(move |p| write(&pvc, None, p, &cluster())),
        ),
        (
            RuleId::HostpathSpread,
            Box::new(|p| {
                write(
                    &sts(|v| {
                        v["spec"]["template"]["spec"]["volumes"] =
                            y("[{name: h, hostPath: {path: /x}}]")
                    }),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::QuorumOdd,
            Box::new(move |p| write(&quorum(4), None, p, &cluster())),
        ),
        (
            RuleId::QuorumScaleDown,
            Box::new(move |p| write(&quorum(1), Some(&quorum(5)), p, &cluster())),
        ),
        (
            RuleId::LocalStorageBinding,
            Box::new(|p| {
                write(
                    &sts(|v| {
                        v["spec"]["volumeClaimTemplates"] =
                            y("[{metadata: {name: d}, spec: {storageClassName: local}}]")
                    }),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::ClaimAccessMode,
            Box::new(|p| {
                write(
                    &sts(|v| {
                        v["spec"]["volumeClaimTemplates"] =
                            y("[{metadata: {name: d}, spec: {accessModes: [ReadWriteMany]}}]")
                    }),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::ClaimRetention,
            Box::new(|p| {
                write(
                    &sts(|v| {
                        v["spec"]["volumeClaimTemplates"] = y("[{metadata: {name: d}, spec: {}}]");
                        v["spec"]["persistentVolumeClaimRetentionPolicy"] =
                            y("{whenScaled: Delete}");
                    }),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::ReadinessProbe,
            Box::new(|p| {
                write(
                    &sts(|v| {
                        v["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
                            serde_json::Value::Null
                    }),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::OrderedRoles,
            Box::new(|p| {
                write(
                    &sts(|v| {
                        ann(v, "stsguard.io/roles", "a=*");
                        v["spec"]["podManagementPolicy"] = "Parallel".into();
                    }),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::RoleSpec,
            Box::new(|p| {
                write(
                    &sts(|v| ann(v, "stsguard.io/roles", "a=1")),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::DisruptionBudget,
            Box::new(|p| {
                write(
                    &sts(|v| v["spec"]["template"]["metadata"]["labels"]["x"] = "y".into()),
                    None,
                    p,
                    &StaticLookups {
                        pdbs: vec![],
                        ..cluster()
                    },
                )
            }),
        ),
        (
            RuleId::DeleteProtection,
            Box::new(|p| {
                let o = sts(|v| ann(v, "stsguard.io/protect", "true"));
                validate(
                    &Review {
                        namespace: "ns",
                        subject: Subject::Delete { old: Some(&o) },
                    },
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::ProtectRetention,
            Box::new(|p| {
                write(
                    &sts(|v| {
                        ann(v, "stsguard.io/protect", "true");
                        v["spec"]["volumeClaimTemplates"] = y("[{metadata: {name: d}, spec: {}}]");
                        v["spec"]["persistentVolumeClaimRetentionPolicy"] =
                            y("{whenDeleted: Delete}");
                    }),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::SingleInstance,
            Box::new(|p| {
                write(
                    &sts(|v| ann(v, "stsguard.io/single-instance", "true")),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::SafetySwitch,
            Box::new(|p| {
                write(
                    &sts(|v| ann(v, "stsguard.io/protect", "True")),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
        (
            RuleId::AnnotationIgnored,
            Box::new(|p| {
                write(
                    &sts(|v| ann(v, "stsguard.io/protected", "true")),
                    None,
                    p,
                    &cluster(),
                )
            }),
        ),
    ];
    assert_eq!(cases.len(), RuleId::ALL.len(), "a case for every rule");
    for (rule, run) in &cases {
        let f = run(&only(*rule, Mode::Enforce));
        assert_eq!(
            f.violations.iter().map(|v| v.rule).collect::<Vec<_>>(),
            vec![*rule],
            "{rule} enforce: {f:?}"
        );
        assert!(f.denial().contains(&format!("[{rule}]")));
        let f = run(&only(*rule, Mode::Warn));
        assert!(f.allowed(), "{rule} warn");
        assert_eq!(
            f.warnings.iter().map(|v| v.rule).collect::<Vec<_>>(),
            vec![*rule],
            "{rule} warn: {f:?}"
        );
        assert!(f.warning_lines()[0].starts_with(&format!("[{rule}] ")));
        assert!(f.warning_lines()[0].len() <= 256);
        let f = run(&only(*rule, Mode::Off));
        assert!(
            f.allowed() && f.warnings.is_empty() && f.results.is_empty(),
            "{rule} off: {f:?}"
        );
    }
}

#[test]
fn unknown_lookups_warn_and_never_deny() {
    let mut p = Policy::default();
    for r in RuleId::ALL {
        p.validation.rules.insert(*r, Mode::Enforce);
    }
    let o = sts(|v| {
        v["spec"]["volumeClaimTemplates"] =
            y("[{metadata: {name: d}, spec: {storageClassName: local}}]")
    });
    let f = validate(
        &Review {
            namespace: "ns",
            subject: Subject::Write {
                object: &o,
                old: None,
            },
        },
        &p,
        &NoLookups("cache not synced".into()),
    );
    assert!(f.allowed(), "{f:?}");
    let rules: Vec<RuleId> = f.warnings.iter().map(|w| w.rule).collect();
    assert_eq!(
        rules,
        vec![
            RuleId::GoverningService,
            RuleId::LocalStorageBinding,
            RuleId::DisruptionBudget
        ]
    );
    assert!(
        f.warnings
            .iter()
            .all(|w| w.message.contains("cache not synced"))
    );
}

#[test]
fn a_denial_lists_every_violation() {
    let o = sts(|v| {
        ann(v, "stsguard.io/quorum", "true");
        v["spec"]["replicas"] = 4.into();
        v["spec"]["template"]["spec"]["volumes"] =
            y("[{name: d, persistentVolumeClaim: {claimName: c}}]");
    });
    let f = write(&o, None, &Policy::default(), &cluster());
    let d = f.denial();
    assert!(
        d.contains("[shared-claim]") && d.contains("[quorum-odd]"),
        "{d}"
    );
}

#[test]
fn object_overrides_only_when_allowed_and_only_relax() {
    let o = sts(|v| {
        v["spec"]["template"]["spec"]["volumes"] =
            y("[{name: d, persistentVolumeClaim: {claimName: c}}]");
        ann(v, "stsguard.io/rule.shared-claim", "warn");
        ann(v, "stsguard.io/rule.readiness-probe", "enforce");
        v["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = serde_json::Value::Null;
    });
    let mut p = Policy::default();
    assert!(
        !write(&o, None, &p, &cluster()).allowed(),
        "overrides ignored by default"
    );
    p.validation.allow_object_overrides = true;
    let f = write(&o, None, &p, &cluster());
    assert!(f.allowed(), "shared-claim relaxed to warn: {f:?}");
    let warned: Vec<RuleId> = f.warnings.iter().map(|w| w.rule).collect();
    assert!(
        warned.contains(&RuleId::SharedClaim) && warned.contains(&RuleId::ReadinessProbe),
        "readiness-probe not tightened: {warned:?}"
    );
}

#[test]
fn scale_requests_judge_the_cached_statefulset() {
    let cached = sts(|v| {
        ann(v, "stsguard.io/quorum", "true");
        v["spec"]["replicas"] = 3.into();
    });
    let l = StaticLookups {
        statefulsets: vec![Arc::new(cached)],
        ..cluster()
    };
    let scale = |n: i32, old: Option<i32>| {
        validate(
            &Review {
                namespace: "ns",
                subject: Subject::Scale {
                    name: "db",
                    replicas: n,
                    old_replicas: old,
                },
            },
            &Policy::default(),
            &l,
        )
    };
    assert!(!scale(4, Some(3)).allowed());
    assert!(scale(5, Some(3)).allowed());
    assert!(!scale(1, Some(3)).allowed());
    // 3 -> 2 keeps a majority but is even: quorum-odd, not quorum-scale-down.
    let f = scale(2, Some(3));
    assert_eq!(
        f.violations.iter().map(|v| v.rule).collect::<Vec<_>>(),
        vec![RuleId::QuorumOdd]
    );
    // Not in the cache: "unknown" warnings, allowed.
    let f = validate(
        &Review {
            namespace: "ns",
            subject: Subject::Scale {
                name: "other",
                replicas: 4,
                old_replicas: Some(3),
            },
        },
        &Policy::default(),
        &l,
    );
    assert!(f.allowed() && !f.warnings.is_empty());
}

/// Every advised scale-down path, for every count up to 64 and every smaller target, is accepted
/// step by step by the quorum rules: each step keeps a majority (`quorum-scale-down`), and where
/// the set needs odd sizes every intermediate size is odd (`quorum-odd`).
#[test]
fn every_advised_scale_down_path_is_accepted_step_by_step() {
    use stsguard::validate::Verdict;
    use stsguard::validate::quorum::Quorum;
    use stsguard::validate::rules::{quorum_odd, quorum_scale_down, scale_down_path};
    let base = sts(|_| {});
    let at = |n: i32| {
        let mut s = base.clone();
        s.spec.as_mut().unwrap().replicas = Some(n);
        s
    };
    for odd in [true, false] {
        for old in 2..=64 {
            for target in 1..old {
                let path = scale_down_path(old, target, odd);
                assert_eq!(path.first(), Some(&old));
                assert_eq!(path.last(), Some(&target));
                assert!(path.len() <= 34, "{path:?}");
                for (i, step) in path.windows(2).enumerate() {
                    let (from, to) = (step[0], step[1]);
                    assert!(to < from || from == 0, "{path:?} does not go down");
                    assert_eq!(
                        quorum_scale_down(&at(to), from, &Quorum::Annotated),
                        Verdict::Pass,
                        "{old} -> {target} ({odd}): step {from} -> {to} of {path:?}"
                    );
                    let last = i + 2 == path.len();
                    if odd && !last {
                        assert_eq!(
                            quorum_odd(&at(to), &Quorum::Annotated),
                            Verdict::Pass,
                            "{path:?}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(scale_down_path(9, 3, true), [9, 5, 3]);
    assert_eq!(scale_down_path(3, 1, true), [3, 0, 1]);
    assert_eq!(scale_down_path(4, 1, false), [4, 0, 1]);
    assert_eq!(scale_down_path(i32::MAX, 1, true).len(), 3);
}

/// A safety switch is `"true"` or `"false"`; anything else is refused on write, naming the key,
/// the value and the fix. Where such a value was stored before, the rules read it as on.
#[test]
fn safety_switches_accept_only_true_or_false() {
    let r = RuleId::SafetySwitch;
    for key in [
        "stsguard.io/protect",
        "stsguard.io/single-instance",
        "stsguard.io/quorum",
    ] {
        for ok in ["true", "false", " true "] {
            accepts(r, &sts(|v| ann(v, key, ok)));
        }
        for bad in ["True", "yes", "1", "", "on"] {
            let m = rejects(r, &sts(|v| ann(v, key, bad)));
            assert_eq!(
                m,
                format!(
                    "{key}: \"{bad}\" is not \"true\" or \"false\"; write \"true\" to turn it on, \"false\" to turn it off"
                )
            );
        }
    }
    // Two bad switches: both named.
    let m = rejects(
        r,
        &sts(|v| {
            ann(v, "stsguard.io/protect", "yes");
            ann(v, "stsguard.io/quorum", "no");
        }),
    );
    assert!(
        m.contains("stsguard.io/protect: \"yes\"") && m.contains("stsguard.io/quorum: \"no\""),
        "{m}"
    );
    // Fail closed where it is read: "yes" keeps a single instance single and a quorum odd.
    let f = write(
        &sts(|v| ann(v, "stsguard.io/single-instance", "yes")),
        None,
        &only(RuleId::SingleInstance, Mode::Enforce),
        &cluster(),
    );
    assert!(!f.allowed(), "{f:?}");
    let f = write(
        &sts(|v| {
            ann(v, "stsguard.io/quorum", "Yes");
            v["spec"]["replicas"] = 4.into();
        }),
        None,
        &only(RuleId::QuorumOdd, Mode::Enforce),
        &cluster(),
    );
    assert!(!f.allowed(), "{f:?}");
}

/// `stsguard.io/` annotations that do nothing are said, each with its key and value: an unknown
/// key (with the key it is closest to), and a rule override the policy does not allow, that
/// names no rule, whose value is not a mode, or that would tighten the rule.
#[test]
fn annotations_that_do_nothing_are_said() {
    let r = RuleId::AnnotationIgnored;
    let said = |pairs: &[(&str, &str)], overrides: bool| -> String {
        let o = sts(|v| pairs.iter().for_each(|(k, val)| ann(v, k, val)));
        let mut p = only(r, Mode::Warn);
        p.validation.allow_object_overrides = overrides;
        p.validation.rules.insert(RuleId::QuorumOdd, Mode::Enforce);
        p.validation
            .rules
            .insert(RuleId::ReadinessProbe, Mode::Warn);
        let f = write(&o, None, &p, &cluster());
        assert!(f.allowed());
        f.warnings
            .iter()
            .filter(|w| w.rule == r)
            .map(|w| w.message.clone())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    for (key, meant) in [
        ("stsguard.io/protected", "stsguard.io/protect"),
        ("stsguard.io/Quorum", "stsguard.io/quorum"),
        ("stsguard.io/rule-quorum-odd", "stsguard.io/rule.quorum-odd"),
        ("stsguard.io/ordinal_env", "stsguard.io/ordinal-env"),
    ] {
        assert_eq!(
            said(&[(key, "true")], false),
            format!("{key} is not a stsguard annotation: ignored; did you mean {meant}?")
        );
    }
    assert_eq!(
        said(&[("stsguard.io/colour", "blue")], false),
        "stsguard.io/colour is not a stsguard annotation: ignored"
    );
    assert_eq!(
        said(&[("stsguard.io/rule.quorum-odd", "off")], false),
        "stsguard.io/rule.quorum-odd: the policy does not allow object overrides (validation.allowObjectOverrides): ignored, quorum-odd stays enforce"
    );
    assert_eq!(said(&[("stsguard.io/rule.quorum-odd", "off")], true), "");
    assert_eq!(
        said(&[("stsguard.io/rule.quorum-odd", "disabled")], true),
        "stsguard.io/rule.quorum-odd: \"disabled\" is not warn or off: ignored, quorum-odd stays enforce"
    );
    assert_eq!(
        said(&[("stsguard.io/rule.quorum-od", "off")], true),
        "stsguard.io/rule.quorum-od: no rule \"quorum-od\" (did you mean quorum-odd?): ignored"
    );
    assert_eq!(
        said(&[("stsguard.io/rule.readiness-probe", "enforce")], true),
        "stsguard.io/rule.readiness-probe: \"enforce\" would tighten it; overrides only relax: ignored, readiness-probe stays warn"
    );
    // Every key stsguard reads passes, and so does a node selector of any role.
    let known = [
        ("stsguard.io/mutate", "true"),
        ("stsguard.io/roles", "primary=0,replica=*"),
        ("stsguard.io/role-node-selector.primary", "a=b"),
        ("stsguard.io/protect", "true"),
        ("stsguard.io/topology-key", "kubernetes.io/hostname"),
        ("other.io/x", "y"),
    ];
    assert_eq!(said(&known, false), "");
    // Many unknown keys: three named, the rest counted; the work stays small.
    let many: Vec<(String, String)> = (0..5000)
        .map(|i| {
            (
                format!("stsguard.io/{}{i}", "k".repeat(200)),
                "v".to_string(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let m = said(&refs, false);
    assert!(
        m.contains("4997 more unknown stsguard.io/ annotations ignored"),
        "{}",
        &m[m.len() - 80..]
    );
}
