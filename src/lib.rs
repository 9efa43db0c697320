//! stsguard: a Kubernetes admission webhook that makes StatefulSets safe and self-configuring.
//!
//! The core is pure: [`mutate::mutate`] and [`validate::validate`] take typed objects and the
//! [`policy::Policy`]; [`mutate::patch`] turns a mutation into a patch that only adds;
//! [`admission`] reads AdmissionReviews, dispatches and writes the answers; [`server`] is the
//! HTTPS layer.
//!
//! ```
//! use k8s_openapi::api::apps::v1::StatefulSet;
//! use stsguard::mutate::{mutate, patch};
//! use stsguard::policy::Policy;
//! use stsguard::validate::{validate, NoLookups, Review, Subject};
//!
//! let sts: StatefulSet = stsguard::yaml::from_str(r#"
//! apiVersion: apps/v1
//! kind: StatefulSet
//! metadata: {name: db, namespace: ns}
//! spec:
//!   replicas: 4
//!   serviceName: db
//!   selector: {matchLabels: {app: db}}
//!   template:
//!     metadata: {labels: {app: db}}
//!     spec: {containers: [{name: db, image: postgres}]}
//! "#)?;
//! let policy = Policy::default();
//! let m = mutate(&sts, &policy);
//! let pod = m.object.spec.as_ref().and_then(|s| s.template.spec.as_ref()).ok_or("no pod spec")?;
//! let env = pod.containers[0].env.clone().unwrap_or_default();
//! assert_eq!(env[0].name, "POD_NAME");
//! assert!(!patch::statefulset(&sts, &m.object)?.0.is_empty());
//! // Idempotent: mutating the result changes nothing.
//! assert!(patch::statefulset(&m.object, &mutate(&m.object, &policy).object)?.0.is_empty());
//!
//! let findings = validate(
//!     &Review { namespace: "ns", subject: Subject::Write { object: &m.object, old: None } },
//!     &policy,
//!     &NoLookups("no cluster".into()),
//! );
//! assert!(findings.allowed()); // warnings only: no readinessProbe, look-ups not checked
//! assert!(findings.warning_lines().iter().any(|w| w.starts_with("[readiness-probe]")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Every review, file and flag is input: outside the tests no unwrap, expect or panic, so a bad
// AdmissionReview answers with an error instead of taking the webhook down (clippy, -D warnings).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admission;
pub mod audit;
pub mod bounds;
pub mod certs;
pub mod check;
pub mod cli;
pub mod error;
pub mod files;
pub mod k8s;
pub mod mutate;
pub mod policy;
pub mod probe;
pub mod repair;
pub mod role_init;
pub mod server;
pub mod text;
pub mod validate;
pub mod watch;
pub mod webhooks;
pub mod yaml;

/// Installs rustls' ring crypto provider as the process default, once. Safe to call many times.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
