//! stsguard: a Kubernetes admission webhook that makes StatefulSets safe and self-configuring.
//!
//! The core is pure: [`mutate::mutate`] and [`validate::validate`] take typed objects and the
//! [`policy::Policy`]; [`review`] decodes AdmissionReviews, dispatches and encodes; [`server`] is
//! the HTTPS layer.

pub mod certs;
pub mod check;
pub mod cli;
pub mod labels;
pub mod loadgen;
pub mod lookups;
pub mod metrics;
pub mod mutate;
pub mod policy;
pub mod reload;
pub mod review;
pub mod role_init;
pub mod roles;
pub mod server;
pub mod tls;
pub mod validate;
pub mod webhooks;

/// Installs rustls' ring crypto provider as the process default, once. Safe to call many times.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
