//! The `stsguard` command line (clap): the commands, their flags, and the small adapters that
//! hand each command to its module (`serve` runs in [`crate::server::run`]).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "stsguard",
    version,
    about = "Kubernetes admission webhook that makes StatefulSets safe and self-configuring"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Json, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the webhook server.
    Serve(ServeArgs),
    /// Mutate and validate manifests offline, as the server would.
    Check(CheckArgs),
    /// Judge the StatefulSets of a live cluster as check judges files (output and exit codes
    /// as check).
    Audit(crate::audit::cli::AuditArgs),
    /// The role-selection init container's entry point.
    RoleInit(RoleInitArgs),
    /// Write a CA and a serving certificate for <service>.<namespace>.svc.
    Certs(CertsArgs),
    /// Print the Mutating/ValidatingWebhookConfiguration YAML.
    Webhooks(WebhooksArgs),
    /// Wait until the webhook answers through its Service, as the API server calls it (the
    /// chart's install hook: `helm install` returns once StatefulSet writes are admitted).
    Probe(ProbeArgs),
}

pub use crate::server::run::ServeArgs;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Report,
    Yaml,
    Patch,
    Json,
}

#[derive(Args, Debug)]
#[command(after_help = "Exit codes:
  0  every StatefulSet allowed (warnings may be printed)
  1  an enforced rule denies a StatefulSet
  2  bad input: not YAML/JSON, a duplicate key, a type error, or an object the API server
     refuses (e.g. a StatefulSet in apps/v1beta1 or apps/v1beta2); or a bad --config
  3  no apps/v1 StatefulSet in the input (0 with --allow-empty)")]
pub struct CheckArgs {
    /// Manifest files (YAML multi-doc or JSON); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<String>,
    /// report: findings per StatefulSet and a summary line; yaml: the mutated StatefulSets;
    /// patch: the JSONPatches; json: one object per StatefulSet with source, findings, patch
    /// and the mutated object.
    #[arg(short, long, value_enum, default_value_t = Output::Report)]
    pub output: Output,
    /// Policy file, as for serve.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Exit 0, not 3, when the input holds no apps/v1 StatefulSet.
    #[arg(long)]
    pub allow_empty: bool,
}

#[derive(Args, Debug)]
pub struct RoleInitArgs {
    /// Role spec, e.g. primary=0,replica=*.
    #[arg(long)]
    pub roles: String,
    /// Directory to write role, ordinal, role.env and the config files into.
    #[arg(long)]
    pub out: PathBuf,
    /// A mounted ConfigMap whose keys are copied (key <role>.<rest> only for that role).
    #[arg(long)]
    pub config_dir: Option<PathBuf>,
    /// STS_SERVER_ID = this + ordinal.
    #[arg(long, default_value_t = 0)]
    pub server_id_base: u64,
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
}

#[derive(Args, Debug)]
pub struct CertsArgs {
    #[arg(long, default_value = "stsguard")]
    pub service: String,
    #[arg(long, default_value = "stsguard")]
    pub namespace: String,
    #[arg(long, default_value = "certs/out")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// Another name the certificate is valid for: a DNS name or an IP address (e.g. 127.0.0.1
    /// for a webhook the API server reaches by URL). Repeatable.
    #[arg(long = "san", value_name = "NAME|IP")]
    pub san: Vec<String>,
}

#[derive(Args, Debug)]
pub struct WebhooksArgs {
    /// PEM file of the CA that signed the serving certificate (`ca.crt` of `stsguard certs`):
    /// the API server trusts the webhook only through it.
    #[arg(long)]
    pub ca_file: PathBuf,
    #[arg(long, default_value = "stsguard")]
    pub service: String,
    #[arg(long, default_value = "stsguard")]
    pub namespace: String,
    /// Reach the webhook by URL instead of a Service (https only, e.g. https://host:8443).
    #[arg(long, conflicts_with_all = ["service", "namespace"])]
    pub url: Option<String>,
    #[arg(long, default_value = "stsguard")]
    pub name: String,
    /// While stsguard cannot be reached: Fail refuses StatefulSet writes, scales and deletes
    /// (the policy is never bypassed); Ignore admits them unmutated and unjudged.
    #[arg(long, default_value = crate::webhooks::FAILURE_POLICY, value_parser = ["Fail", "Ignore"])]
    pub failure_policy: String,
    /// The same for pods of role-managed StatefulSets. Ignore: pod creation never waits for
    /// stsguard; the role label is added once stsguard is back.
    #[arg(long, default_value = crate::webhooks::PODS_FAILURE_POLICY, value_parser = ["Fail", "Ignore"])]
    pub pods_failure_policy: String,
    /// The failure policy of the delete-protection webhook (Namespace and PersistentVolumeClaim
    /// deletes). Fail: while no stsguard answers, those deletes are refused, never let through
    /// unjudged.
    #[arg(long, default_value = "Fail", value_parser = ["Fail", "Ignore"])]
    pub protect_failure_policy: String,
    #[arg(long, default_value_t = 5)]
    pub timeout_seconds: i32,
    /// The policy file the server runs with: its `excludeNamespaces` are left out of the
    /// webhooks (without it, the built-in policy's: kube-system, kube-node-lease, kube-public).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// More namespaces to exclude (kube-system, kube-node-lease, the Service's namespace and the
    /// policy's excludeNamespaces always are).
    #[arg(long = "exclude-namespace")]
    pub exclude_namespaces: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ProbeArgs {
    /// The webhook's Service (reached at its ClusterIP, from `<SERVICE>_SERVICE_HOST`, else by
    /// its DNS name; the certificate must be valid for `<service>.<namespace>.svc`).
    #[arg(long, default_value = "stsguard")]
    pub service: String,
    #[arg(long, env = "POD_NAMESPACE", default_value = "stsguard")]
    pub namespace: String,
    #[arg(long, default_value_t = crate::webhooks::SERVICE_PORT as u16)]
    pub port: u16,
    /// Reach the webhook by URL instead (https://host:port).
    #[arg(long, conflicts_with_all = ["service", "port"])]
    pub url: Option<String>,
    /// PEM file of the CA the webhook configurations carry.
    #[arg(long, env = "STSGUARD_CA_FILE", required_unless_present = "ca_pem")]
    pub ca_file: Option<PathBuf>,
    /// The CA's PEM itself (the chart passes certs.secret.caBundle this way).
    #[arg(
        long,
        env = "STSGUARD_CA_PEM",
        hide_env_values = true,
        conflicts_with = "ca_file"
    )]
    pub ca_pem: Option<String>,
    /// Give up after this long (seconds): exit 1.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
}

/// `stsguard probe`; returns the exit code (0 answered, 1 not within the timeout, 2 bad input).
pub fn probe(args: ProbeArgs) -> i32 {
    let ca = match (&args.ca_file, &args.ca_pem) {
        (Some(p), _) => match crate::files::read_file(p, crate::bounds::MAX_MOUNTED_FILE) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("stsguard probe: cannot read --ca-file {}: {e}", p.display());
                return 2;
            }
        },
        (None, Some(pem)) => pem.clone().into_bytes(),
        (None, None) => {
            eprintln!("stsguard probe: give --ca-file or STSGUARD_CA_PEM");
            return 2;
        }
    };
    let target = match &args.url {
        Some(u) => match crate::probe::Target::url(u) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("stsguard probe: --url {e}");
                return 2;
            }
        },
        None => crate::probe::Target::service(&args.service, &args.namespace, args.port, |k| {
            std::env::var(k).ok()
        }),
    };
    crate::install_crypto_provider();
    let tls = match crate::probe::tls_client(&ca) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("stsguard probe: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stsguard probe: cannot start the runtime: {e}");
            return 1;
        }
    };
    let timeout = std::time::Duration::from_secs(args.timeout);
    match rt.block_on(crate::probe::wait(&target, tls, timeout)) {
        Ok(took) => {
            println!(
                "stsguard probe: the webhook answers at https://{} (certificate for {}) after {:.1} s",
                target.connect,
                target.server_name,
                took.as_secs_f64()
            );
            0
        }
        Err(e) => {
            eprintln!("stsguard probe: {e}");
            1
        }
    }
}

/// `stsguard check`; returns the exit code (see [`crate::check::EXIT_ALLOWED`] and the others).
pub fn check(args: CheckArgs) -> i32 {
    use crate::check::{self, EXIT_BAD_INPUT, report};
    let policy = match crate::server::run::load_policy(args.config.as_ref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stsguard check: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let run = match check::read_documents(&args.files).and_then(|d| check::run(d, &policy)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stsguard check: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    if run.checked.is_empty() {
        eprintln!(
            "stsguard check: {}{}",
            run.nothing_checked(),
            if args.allow_empty {
                ""
            } else {
                " (exit code 3; --allow-empty makes it 0)"
            }
        );
    }
    let out = match args.output {
        Output::Report => Ok(report::render(&run.checked)),
        Output::Yaml => report::yaml(&run.checked),
        Output::Patch => report::patches(&run.checked),
        Output::Json => report::json(&run.checked),
    };
    match out {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("stsguard check: {e}");
            return EXIT_BAD_INPUT;
        }
    }
    run.exit_code(args.allow_empty)
}

/// `stsguard role-init`; returns the exit code.
pub fn role_init(args: RoleInitArgs) -> i32 {
    let a = crate::role_init::Args {
        roles: args.roles,
        out: args.out,
        config_dir: args.config_dir,
        server_id_base: args.server_id_base,
        cluster_domain: args.cluster_domain,
    };
    match crate::role_init::run(&a, &crate::role_init::env_from_process()) {
        Ok(id) => {
            println!(
                "stsguard role-init: ordinal {} is {} (server id {})",
                id.ordinal, id.role, id.server_id
            );
            0
        }
        Err(e) => {
            eprintln!("stsguard role-init: {e}");
            1
        }
    }
}

/// `stsguard certs`.
pub fn certs(args: CertsArgs) -> anyhow::Result<()> {
    crate::certs::write_bundle(
        &args.out,
        &args.service,
        &args.namespace,
        &args.san,
        args.days,
    )?;
    println!(
        "wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key (0600) for {1}.{2}.svc{3}",
        args.out.display(),
        args.service,
        args.namespace,
        args.san
            .iter()
            .map(|n| format!(", {n}"))
            .collect::<String>()
    );
    Ok(())
}

/// `stsguard webhooks`.
pub fn webhooks(args: WebhooksArgs) -> anyhow::Result<()> {
    let policy = crate::server::run::load_policy(args.config.as_ref())?;
    let ca_bundle = crate::files::read_file(&args.ca_file, crate::bounds::MAX_MOUNTED_FILE)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read --ca-file {}: {e} (the CA that signed the serving certificate: ca.crt \
             of `stsguard certs`)",
                args.ca_file.display()
            )
        })?;
    if !String::from_utf8_lossy(&ca_bundle).contains("-----BEGIN CERTIFICATE-----") {
        anyhow::bail!(
            "--ca-file {} holds no PEM certificate: give the CA's certificate (ca.crt of `stsguard certs`)",
            args.ca_file.display()
        );
    }
    let target = match args.url {
        Some(u) if !u.starts_with("https://") => anyhow::bail!(
            "--url {}: the API server calls webhooks over HTTPS only; give an https:// URL",
            crate::text::quote(&u)
        ),
        Some(u) => crate::webhooks::Target::Url(u),
        None => crate::webhooks::Target::Service {
            name: args.service,
            namespace: args.namespace,
        },
    };
    let mut exclude_namespaces = policy.exclude_namespaces.to_vec();
    exclude_namespaces.extend(args.exclude_namespaces);
    let o = crate::webhooks::Options {
        name: args.name,
        target,
        ca_bundle,
        failure_policy: args.failure_policy,
        pods_failure_policy: args.pods_failure_policy,
        protect_failure_policy: args.protect_failure_policy,
        timeout_seconds: args.timeout_seconds,
        exclude_namespaces,
    };
    print!("{}", crate::webhooks::render(&o)?);
    Ok(())
}
