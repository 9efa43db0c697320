//! Clients of the server on 127.0.0.1: the HTTPS client that posts reviews (reqwest, trusting
//! only the test CA), and raw TLS connections for looking at the handshake itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

/// The HTTPS client for reviews: trusts only `ca_pem`, HTTP/2 only or HTTP/1.1 only.
pub fn client(ca_pem: &str, h2: bool) -> reqwest::Client {
    let b = builder(ca_pem.as_bytes()).timeout(Duration::from_secs(20));
    let b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().unwrap()
}

/// The same client resolving `host` to `addr` (a Service name served on 127.0.0.1).
pub fn client_resolving(ca_pem: &[u8], host: &str, addr: SocketAddr) -> reqwest::Client {
    builder(ca_pem).resolve(host, addr).build().unwrap()
}

fn builder(ca_pem: &[u8]) -> reqwest::ClientBuilder {
    stsguard::install_crypto_provider();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
}

/// A rustls client config trusting `ca_pem`, with ALPN.
pub fn rustls_client(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    super::tls::config(ca_pem, alpn)
}

/// Opens a TLS connection to `addr` as `name` (resolved to `addr`).
pub async fn tls_connect(
    addr: SocketAddr,
    name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(cfg);
    connector
        .connect(ServerName::try_from(name.to_string()).unwrap(), tcp)
        .await
}

/// The serial (hex) of the certificate a TLS connection was served.
pub fn peer_serial(s: &tokio_rustls::client::TlsStream<TcpStream>) -> String {
    let certs = s.get_ref().1.peer_certificates().unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(certs[0].as_ref()).unwrap();
    c.raw_serial_as_string().replace(':', "")
}

/// The serial (hex) of the first certificate in a PEM bundle.
pub fn serial_of(pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    c.raw_serial_as_string().replace(':', "")
}
