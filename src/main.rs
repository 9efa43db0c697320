use clap::Parser;

// Admission reviews are allocation-heavy (every object is parsed into owned maps and strings);
// mimalloc makes that markedly cheaper than glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use stsguard::cli::{self, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => {
            stsguard::install_crypto_provider();
            init_tracing(cli.log_format);
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("stsguard serve: cannot start the runtime: {e}");
                    std::process::exit(1);
                }
            };
            match rt.block_on(cli::serve(args)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "stsguard serve failed");
                    eprintln!("stsguard serve: {e}");
                    1
                }
            }
        }
        Command::Check(args) => cli::check(args),
        Command::RoleInit(args) => cli::role_init(args),
        Command::Certs(args) => report(cli::certs(args), "certs"),
        Command::Webhooks(args) => report(cli::webhooks(args), "webhooks"),
    };
    std::process::exit(code);
}

fn report(r: anyhow::Result<()>, what: &str) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("stsguard {what}: {e}");
            2
        }
    }
}
