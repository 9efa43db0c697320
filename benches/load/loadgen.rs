//! Load generator CLI (benches/run.sh uses it): HTTPS with HTTP/2 to a webhook, prints one
//! summary line and, with --json, a JSON line.
mod client;

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value = "localhost")]
    name: String,
    /// PEM file(s) of the CA(s) to trust.
    #[arg(long, required = true)]
    ca: Vec<String>,
    #[arg(long)]
    body: String,
    #[arg(long, default_value = "/mutate?timeout=5s")]
    path: String,
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    #[arg(long, default_value_t = 16)]
    workers: usize,
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long)]
    reconnect_every: Option<u64>,
    #[arg(long)]
    ready_addr: Option<SocketAddr>,
    #[arg(long)]
    http1: bool,
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() {
    stsguard::install_crypto_provider();
    let a = Args::parse();
    let mut roots = Vec::new();
    for f in &a.ca {
        let pem = std::fs::read(f).expect("read CA");
        roots.extend(CertificateDer::pem_slice_iter(&pem).map(|c| c.expect("CA PEM")));
    }
    let body = std::fs::read(&a.body).expect("read body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("body is JSON");
    let uid = v["request"]["uid"].as_str().unwrap_or_default().to_string();
    let r = client::run(client::Options {
        addr: a.addr,
        server_name: a.name,
        roots,
        path: a.path,
        body: body.into(),
        expect: uid.into_bytes(),
        duration: Duration::from_secs_f64(a.seconds),
        workers: a.workers,
        rate: a.rate,
        reconnect_every: a.reconnect_every,
        ready_addr: a.ready_addr,
        h2: !a.http1,
    })
    .await;
    println!("{}", r.summary());
    for e in &r.first_errors {
        println!("  error: {e}");
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({"sent": r.sent, "ok": r.ok, "failed": r.failed, "rps": r.rps(), "p50_us": r.percentile(50.0),
                "p99_us": r.percentile(99.0), "connections": r.connections, "stopped_by_readiness": r.stopped_by_readiness})
        );
    }
}
