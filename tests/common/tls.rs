//! TLS client configurations for talking to the server on 127.0.0.1: the one place the tests,
//! the attack client and the load generator (`benches/load/client.rs`, a binary without the
//! dev-dependencies: this file uses rustls only) build a `rustls::ClientConfig`.
#![allow(dead_code)]

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Trusts exactly `roots`, speaks `versions` (TLS 1.3 and 1.2: `rustls::DEFAULT_VERSIONS`),
/// offers `alpn`.
pub fn config_for(
    roots: impl IntoIterator<Item = CertificateDer<'static>>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r).map_err(|e| format!("CA certificate: {e}"))?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(ring())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The certificates of a PEM bundle (panics on a bad one: a test's own CA).
pub fn pem_certs(ca_pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(ca_pem.as_bytes())
        .map(|c| c.expect("CA PEM"))
        .collect()
}

/// Trusts the CA(s) in `ca_pem`, offers `alpn`.
pub fn config(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    config_for(pem_certs(ca_pem), alpn, rustls::DEFAULT_VERSIONS).expect("a client config")
}

/// Accepts any certificate (to read what is served when it would not verify, e.g. expired).
pub fn config_trusting_anything() -> Arc<rustls::ClientConfig> {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{ServerName, UnixTime};
    #[derive(Debug)]
    struct Any;
    impl ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
    let cfg = rustls::ClientConfig::builder_with_provider(ring())
        .with_safe_default_protocol_versions()
        .expect("ring's default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Any))
        .with_no_client_auth();
    Arc::new(cfg)
}
