//! `stsguard probe`: wait until the webhook answers the way the API server calls it — over TLS to
//! its Service, trusted through the CA the webhook configurations carry — by posting an
//! AdmissionReview stsguard allows unexamined (a ConfigMap CREATE) to `/validate` until the answer
//! echoes its uid.
//!
//! The chart runs it as a `post-install,post-upgrade` hook Job: Helm returns from
//! `helm install` (with or without `--wait`) only once a replica serves through the Service's
//! address — after the endpoints controller and the node's service proxy have caught up with the
//! new pods — so the next command's StatefulSet writes are admitted instead of refused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// One attempt's own bound: connection, handshake and answer.
const ATTEMPT: Duration = Duration::from_secs(5);
/// Between two attempts.
const PAUSE: Duration = Duration::from_millis(500);

/// Where to reach the webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `host:port` to connect to.
    pub connect: String,
    /// The name the certificate must be valid for (the API server checks `<svc>.<ns>.svc`).
    pub server_name: String,
}

impl Target {
    /// A Service, as the API server reaches it: its ClusterIP (from the `<SERVICE>_SERVICE_HOST`
    /// variable Kubernetes sets in pods started after the Service; else the Service's DNS name),
    /// with the certificate checked for `<service>.<namespace>.svc`.
    pub fn service(
        service: &str,
        namespace: &str,
        port: u16,
        env: impl Fn(&str) -> Option<String>,
    ) -> Target {
        let server_name = format!("{service}.{namespace}.svc");
        let var = format!(
            "{}_SERVICE_HOST",
            service.to_ascii_uppercase().replace('-', "_")
        );
        let host = env(&var)
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| server_name.clone());
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]") // an IPv6 ClusterIP
        } else {
            host
        };
        Target {
            connect: format!("{host}:{port}"),
            server_name,
        }
    }

    /// An `https://host[:port]` URL.
    pub fn url(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url}: give an https:// URL"))?;
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                match p.parse::<u16>() {
                    Ok(p) => (h.to_string(), p),
                    Err(_) => (authority.to_string(), 443),
                }
            }
            _ => (authority.to_string(), 443),
        };
        Ok(Target {
            connect: format!("{host}:{port}"),
            server_name: host.trim_start_matches('[').trim_end_matches(']').into(),
        })
    }
}

/// A TLS client trusting only the PEM CA(s) in `ca_pem`.
pub fn tls_client(ca_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| format!("the CA is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the CA certificate is not usable: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no CA certificate in the PEM given".into());
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn review(uid: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "resource": {"group": "", "version": "v1", "resource": "configmaps"},
            "requestKind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "requestResource": {"group": "", "version": "v1", "resource": "configmaps"},
            "name": "stsguard-probe",
            "namespace": "default",
            "operation": "CREATE",
            "userInfo": {"username": "stsguard-probe"},
            "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stsguard-probe"}},
            "oldObject": null,
            "dryRun": true,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
    .to_string()
    .into_bytes()
}

/// One attempt: `Ok` once the webhook answered a review with its uid.
pub async fn once(target: &Target, tls: Arc<rustls::ClientConfig>) -> Result<(), String> {
    let uid = format!("stsguard-probe-{}", std::process::id());
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect(&target.connect)
            .await
            .map_err(|e| format!("connect {}: {e}", target.connect))?;
        let name = ServerName::try_from(target.server_name.clone())
            .map_err(|e| format!("{}: {e}", target.server_name))?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {}: {e}", target.server_name))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::post("/validate?timeout=5s")
            .header("host", &target.server_name)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(review(&uid))))
            .map_err(|e| e.to_string())?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("HTTP: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "HTTP {status}: {}",
                crate::text::cut(&String::from_utf8_lossy(&body), 200)
            ));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        if v["response"]["uid"] != uid.as_str() {
            return Err("the answer does not echo the review's uid".into());
        }
        Ok(())
    };
    tokio::time::timeout(ATTEMPT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", ATTEMPT.as_secs())))
}

/// Tries until the webhook answers or `timeout` passes; says how it went on stderr. `Ok`: the
/// time it took.
pub async fn wait(
    target: &Target,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        match once(target, tls.clone()).await {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() >= timeout => {
                return Err(format!(
                    "the webhook at https://{} (certificate for {}) did not answer within {} s; last: {e}",
                    target.connect,
                    target.server_name,
                    timeout.as_secs()
                ));
            }
            Err(e) => {
                if said.elapsed() >= Duration::from_secs(5) {
                    eprintln!("stsguard probe: waiting for the webhook: {e}");
                    said = Instant::now();
                }
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_is_reached_at_its_cluster_ip_with_the_certificate_of_its_dns_name() {
        let env = |k: &str| (k == "STSGUARD_WEBHOOK_SERVICE_HOST").then(|| "10.96.4.7".to_string());
        assert_eq!(
            Target::service("stsguard-webhook", "sys", 443, env),
            Target {
                connect: "10.96.4.7:443".into(),
                server_name: "stsguard-webhook.sys.svc".into()
            }
        );
        assert_eq!(
            Target::service("hook", "sys", 443, |_| None).connect,
            "hook.sys.svc:443"
        );
        let v6 = |_: &str| Some("fd00::1".to_string());
        assert_eq!(
            Target::service("hook", "sys", 443, v6).connect,
            "[fd00::1]:443"
        );
        assert_eq!(
            Target::url("https://127.0.0.1:8443/x"),
            Ok(Target {
                connect: "127.0.0.1:8443".into(),
                server_name: "127.0.0.1".into()
            })
        );
        assert_eq!(Target::url("https://h").unwrap().connect, "h:443");
        assert!(Target::url("http://h").is_err());
    }
}
