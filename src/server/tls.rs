//! TLS: PEM loading (PKCS#8, PKCS#1, SEC1 keys), a certificate resolver that can be swapped
//! while the server runs, and the rustls server config (TLS 1.2/1.3, ALPN h2 + http/1.1).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A serving certificate and what we know about it.
#[derive(Debug)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// notAfter, seconds since the epoch.
    pub not_after: i64,
    /// Serial number, hex.
    pub serial: String,
}

/// Builds a certified key from PEM text; checks the key matches the certificate.
pub fn load_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Loaded> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("certificate PEM: {e}"))?;
    if certs.is_empty() {
        anyhow::bail!("certificate PEM holds no CERTIFICATE block");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| anyhow::anyhow!("key PEM (PKCS#8, PKCS#1 or SEC1 expected): {e}"))?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow::anyhow!("unsupported private key: {e}"))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| anyhow::anyhow!("the key does not match the certificate: {e}"))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(ck.cert[0].as_ref())
        .map_err(|e| anyhow::anyhow!("certificate does not parse: {e}"))?;
    let not_after = parsed.validity().not_after.timestamp();
    let serial = parsed.raw_serial_as_string().replace(':', "");
    Ok(Loaded {
        key: Arc::new(ck),
        not_after,
        serial,
    })
}

/// Reads a certificate and key (regular files only, capped: `crate::files::read_file`). Blocking.
pub fn load_files(cert: &Path, key: &Path) -> anyhow::Result<Loaded> {
    let read = |p: &Path| {
        crate::files::read_file(p, crate::bounds::MAX_MOUNTED_FILE)
            .map_err(|e| anyhow::anyhow!("read {}: {e}", p.display()))
    };
    load_pem(&read(cert)?, &read(key)?)
}

/// Serves whatever certificate was stored last; new handshakes pick up a swap at once.
#[derive(Debug)]
pub struct SwappableCert {
    current: ArcSwap<Loaded>,
}

impl SwappableCert {
    pub fn new(initial: Loaded) -> Arc<Self> {
        Arc::new(SwappableCert {
            current: ArcSwap::from_pointee(initial),
        })
    }
    pub fn store(&self, l: Loaded) {
        self.current.store(Arc::new(l));
    }
    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().key.clone())
    }
}

/// The rustls config: TLS 1.2 and 1.3 only, ALPN h2 then http/1.1.
pub fn server_config(certs: Arc<SwappableCert>) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Where the certificate comes from, for reloads.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}
