//! Test support shared by the integration tests, the end-to-end tests and the attack client
//! (`benches/abuse/attacks`): `mod common;` in a test, then `use common::*;`.
//!
//! - [`process`]: the `stsguard` binary as a process ([`Launch`] builds the command line,
//!   [`Proc`] waits for it to serve, reads its log and kills it on drop);
//! - [`client`]: the HTTPS client that posts reviews with the test CA, raw TLS connections;
//! - [`tls`]: every `rustls::ClientConfig` (shared with the load generator);
//! - [`wait`]: [`eventually`], the one poll-until-true-with-a-deadline;
//! - here: fixtures, JSON comparison ([`contains`]), patches, and a server in this process.
#![allow(dead_code)]

pub mod client;
pub mod process;
pub mod tls;
pub mod wait;

#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use process::{Launch, Proc, Serving, tail};
#[allow(unused_imports)]
pub use wait::eventually;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use stsguard::policy::Policy;
use stsguard::server::{self, AppState, Timeouts};
use stsguard::validate::{Lookups, NoLookups};

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

/// Every field of `orig` is in `result` unchanged: objects by key, arrays as an ordered
/// subsequence (stsguard may insert elements, and the API server defaults; neither may drop or
/// change one).
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
