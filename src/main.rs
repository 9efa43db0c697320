#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

use clap::Parser;

// Admission reviews are allocation-heavy (every object is parsed into owned maps and strings);
// mimalloc makes that markedly cheaper than glibc malloc. It is built with eager arena commit off
// (.cargo/config.toml): memory is committed as it is used.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use stsguard::cli::{self, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// Logs go to stderr through a background thread (`tracing_appender::non_blocking`), so a slow log
/// reader never stalls a review, and the lines of a burst go out in one write. Up to `LOG_QUEUE`
/// lines wait; beyond that new lines are dropped rather than block a review. Each line is at most
/// `LOG_LINE_MAX` bytes (request fields are cut to 256 bytes before they are logged; a longer
/// line is replaced by a notice), so the queue holds at most `LOG_QUEUE * LOG_LINE_MAX` = 8 MiB.
/// The guard flushes what is queued when dropped: keep it until the process exits.
const LOG_QUEUE: usize = 1024;
const LOG_LINE_MAX: usize = 8 * 1024;

/// Caps every write (one log line) at `LOG_LINE_MAX` bytes.
struct Capped<W>(W);

impl<W: std::io::Write> std::io::Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() <= LOG_LINE_MAX {
            return self.0.write(buf);
        }
        let notice = format!(
            "{{\"level\":\"WARN\",\"message\":\"a log line of {} bytes was dropped (over {LOG_LINE_MAX})\"}}\n",
            buf.len()
        );
        self.0.write_all(notice.as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

struct CappedMake(tracing_appender::non_blocking::NonBlocking);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CappedMake {
    type Writer = Capped<tracing_appender::non_blocking::NonBlocking>;
    fn make_writer(&'a self) -> Self::Writer {
        Capped(self.0.clone())
    }
}

fn init_tracing(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .thread_name("stsguard-log")
        .buffered_lines_limit(LOG_QUEUE)
        .finish(std::io::BufWriter::with_capacity(
            16 * 1024,
            std::io::stderr(),
        ));
    let writer = CappedMake(writer);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Serve(args) => {
            stsguard::install_crypto_provider();
            let log = init_tracing(cli.log_format);
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
            let code = match rt.block_on(stsguard::server::run::serve(args)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "stsguard serve failed");
                    eprintln!("stsguard serve: {e}");
                    1
                }
            };
            drop(log); // flushes the queued log lines before `exit`
            code
        }
        Command::Check(args) => cli::check(args),
        Command::Audit(args) => {
            stsguard::install_crypto_provider();
            stsguard::audit::cli::run(args)
        }
        Command::RoleInit(args) => cli::role_init(args),
        Command::Certs(args) => report(cli::certs(args), "certs"),
        Command::Webhooks(args) => report(cli::webhooks(args), "webhooks"),
        Command::Probe(args) => cli::probe(args),
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
