//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use stsguard::policy::Policy;
use stsguard::server::{self, AppState, Timeouts};
use stsguard::validate::{Lookups, NoLookups};
use tokio::net::TcpStream;

/// `tests/fixtures`: the captured AdmissionReviews and the real-world StatefulSets
/// (`tests/fixtures/README.md` says where each came from).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn read_json(p: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

pub fn local_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A server running in this process on 127.0.0.1 with a fresh CA.
pub struct TestServer {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start_server(
    policy: Policy,
    lookups: Arc<dyn Lookups>,
    timeouts: Timeouts,
) -> TestServer {
    stsguard::install_crypto_provider();
    let b = stsguard::certs::generate("localhost", &["127.0.0.1".into(), "localhost".into()], 1)
        .unwrap();
    let loaded =
        stsguard::server::tls::load_pem(b.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap();
    let tls = Arc::new(
        stsguard::server::tls::server_config(stsguard::server::tls::SwappableCert::new(loaded))
            .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = server::router(AppState::new(policy, lookups), Duration::from_secs(10));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve_tls(
        listener,
        tls,
        app,
        timeouts,
        async move {
            let _ = rx.await;
        },
    ));
    TestServer {
        addr,
        ca_pem: b.ca_pem,
        shutdown: Some(tx),
        task,
    }
}

pub async fn start_default() -> TestServer {
    start_server(
        Policy::default(),
        Arc::new(NoLookups("test: no cluster".into())),
        Timeouts::default(),
    )
    .await
}

/// A reqwest client that trusts `ca_pem`, HTTP/2 only or HTTP/1.1 only.
pub fn client(ca_pem: &str, h2: bool) -> reqwest::Client {
    stsguard::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
    let b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(20));
    let b = if h2 {
        b.http2_prior_knowledge()
    } else {
        b.http1_only()
    };
    b.build().unwrap()
}

/// A rustls client config trusting `ca_pem`, with ALPN.
pub fn rustls_client(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    stsguard::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Arc::new(cfg)
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

/// Decodes a response review's base64 patch.
pub fn patch_of(review: &serde_json::Value) -> Option<json_patch::Patch> {
    use base64::Engine as _;
    let r = &review["response"];
    let p = r
        .get("patch")?
        .as_str()
        .expect("patch must be a base64 string");
    assert_eq!(r["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(p)
        .expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is a JSONPatch"))
}

/// The `stsguard` binary running as a process; stderr is collected.
pub struct Proc {
    pub child: Child,
    pub stderr: Arc<std::sync::Mutex<String>>,
}

impl Proc {
    pub fn spawn(args: &[&str]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stsguard"))
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("KUBECONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn stsguard");
        let stderr = Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Proc { child, stderr }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits for the JSON log line `"message":"serving"` and returns one of its address fields.
    pub fn serving_field(&self, field: &str) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for line in self.log().lines() {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    if v["message"] == "serving" {
                        return v[field].as_str().unwrap().parse().unwrap();
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "stsguard did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The webhook address, once serving.
    pub fn wait_serving(&self) -> SocketAddr {
        self.serving_field("addr")
    }

    /// The metrics address, once serving.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.serving_field("metrics_addr")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every field of `orig` is in `result` unchanged: objects by key, arrays as an ordered
/// subsequence (stsguard may insert elements, never drop or change one).
pub fn contains(orig: &serde_json::Value, result: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (orig, result) {
        // `annotations:` with nothing after it is null: the same as absent.
        (Null, _) => true,
        (Object(a), Object(b)) => a
            .iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| contains(v, w))),
        (Array(a), Array(b)) => {
            let mut j = 0;
            for x in a {
                while j < b.len() && !contains(x, &b[j]) {
                    j += 1;
                }
                if j == b.len() {
                    return false;
                }
                j += 1;
            }
            true
        }
        _ => orig == result,
    }
}

/// Field paths the typed StatefulSet ignores when it reads `v` (unknown to k8s-openapi).
pub fn ignored_fields(v: &serde_json::Value) -> Result<Vec<String>, String> {
    let mut ignored = Vec::new();
    let _: k8s_openapi::api::apps::v1::StatefulSet =
        serde_ignored::deserialize(v, |p| ignored.push(p.to_string()))
            .map_err(|e| e.to_string())?;
    Ok(ignored)
}

/// The apps/v1 StatefulSets of tests/fixtures/statefulsets, as (path, raw JSON), sorted.
pub fn apps_v1_statefulsets() -> Vec<(PathBuf, serde_json::Value)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures().join("statefulsets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.ends_with(".yaml") || name.ends_with(".service.yaml") {
            continue;
        }
        let v = stsguard::check::yaml_documents(&std::fs::read_to_string(&p).unwrap())
            .unwrap()
            .remove(0);
        if v["apiVersion"] == "apps/v1" && v["kind"] == "StatefulSet" {
            out.push((p, v));
        }
    }
    assert!(
        out.len() >= 30,
        "expected the 36 apps/v1 fixtures, found {}",
        out.len()
    );
    out
}

/// Sets annotations on a raw manifest (creating `metadata.annotations`, or replacing a `null` one).
pub fn annotate(raw: &mut serde_json::Value, pairs: &[(&str, &str)]) {
    let anns = &mut raw["metadata"]["annotations"];
    if !anns.is_object() {
        *anns = serde_json::json!({});
    }
    for (k, v) in pairs {
        anns[*k] = (*v).into();
    }
}

/// An HTTPS client that trusts only `ca_pem` and resolves `host` to `addr` (a Service name
/// served on 127.0.0.1).
pub fn client_resolving(ca_pem: &[u8], host: &str, addr: SocketAddr) -> reqwest::Client {
    stsguard::install_crypto_provider();
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .resolve(host, addr)
        .build()
        .unwrap()
}

/// The full JSON diff of two objects: the tests' yardstick for "mutating again changes nothing".
#[allow(dead_code)]
pub fn full_diff<T: serde::Serialize>(
    before: &T,
    after: &T,
) -> Result<json_patch::Patch, serde_json::Error> {
    Ok(json_patch::diff(
        &serde_json::to_value(before)?,
        &serde_json::to_value(after)?,
    ))
}

/// Applies `patch` to `doc` one operation at a time, checking that each only adds: an `add` of
/// a member its object does not have (or has as `null`), or an insertion into a list at an
/// index no greater than its length. `Err` names the first operation that is not.
#[allow(dead_code)]
pub fn apply_adds_only(
    doc: &mut serde_json::Value,
    patch: &json_patch::Patch,
) -> Result<(), String> {
    for op in &patch.0 {
        let json_patch::PatchOperation::Add(add) = op else {
            return Err(format!("not an add: {op}"));
        };
        let path = add.path.to_string();
        let (parent, last) = path.rsplit_once('/').ok_or(format!("bad path {path}"))?;
        let target = doc
            .pointer(parent)
            .ok_or(format!("{path}: parent {parent} does not exist"))?;
        match target {
            serde_json::Value::Object(m) => {
                let key = last.replace("~1", "/").replace("~0", "~");
                if m.get(&key).is_some_and(|v| !v.is_null()) {
                    return Err(format!("{path}: overwrites the user's value"));
                }
            }
            serde_json::Value::Array(a) => {
                let i: usize = last.parse().map_err(|_| format!("{path}: not an index"))?;
                if i > a.len() {
                    return Err(format!("{path}: past the end of the list"));
                }
            }
            _ => return Err(format!("{path}: parent is not an object or a list")),
        }
        json_patch::patch(doc, &json_patch::Patch(vec![op.clone()]))
            .map_err(|e| format!("{path}: does not apply: {e}"))?;
    }
    Ok(())
}
