//! `stsguard audit`: `stsguard check` over the StatefulSets of a live cluster. The StatefulSets,
//! Services, PodDisruptionBudgets and StorageClasses are listed once (pages of 500) and answer
//! the look-ups as a Service or PDB in `check`'s input does; the findings, the report, the JSON
//! and the exit codes are `check`'s.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::check::{self, Run};
use crate::policy::Policy;
use crate::validate::lookups::StaticLookups;
use crate::validate::{Lookup, Lookups};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum AuditOutput {
    Report,
    Json,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// The namespace to audit (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Audit every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[arg(short, long, value_enum, default_value_t = AuditOutput::Report)]
    pub output: AuditOutput,
    /// Kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the in-cluster configuration).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Policy file, as for serve.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// A problem that stops the audit: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditError(String);

/// Look-ups from listed objects; a kind that could not be listed answers "unknown".
struct Listed {
    objects: StaticLookups,
    services: Option<String>,
    classes: Option<String>,
    pdbs: Option<String>,
}

impl Lookups for Listed {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Arc<Service>> {
        match &self.services {
            Some(why) => Lookup::Unknown(why.clone()),
            None => self.objects.service(namespace, name),
        }
    }
    fn storage_class(&self, name: Option<&str>) -> Lookup<Arc<StorageClass>> {
        match &self.classes {
            Some(why) => Lookup::Unknown(why.clone()),
            None => self.objects.storage_class(name),
        }
    }
    fn pdbs(&self, namespace: &str) -> Lookup<Vec<Arc<PodDisruptionBudget>>> {
        match &self.pdbs {
            Some(why) => Lookup::Unknown(why.clone()),
            None => self.objects.pdbs(namespace),
        }
    }
    fn statefulset(&self, namespace: &str, name: &str) -> Lookup<Arc<StatefulSet>> {
        self.objects.statefulset(namespace, name)
    }
    fn statefulsets_in(&self, namespace: &str) -> Lookup<Vec<Arc<StatefulSet>>> {
        self.objects.statefulsets_in(namespace)
    }
}

/// Lists every object of `api`, 500 per request.
/// Every object `api` lists, a page of [`PAGE`] at a time; more than `max` is an error (the
/// caller says what to do).
async fn list_all<K>(api: &Api<K>, max: usize) -> Result<Result<Vec<K>, usize>, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        if out.len() > max {
            return Ok(Err(max));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => params = params.continue_token(&c),
            None => return Ok(Ok(out)),
        }
    }
}

/// A list with no bound on its length (`usize::MAX`) always ends `Ok`.
fn unbounded<K>(r: Result<Vec<K>, usize>) -> Vec<K> {
    r.unwrap_or_default()
}

/// Objects per list call: each may be up to the API server's 3 MiB, so a page is bounded too.
const PAGE: u32 = 100;

fn api_for<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

fn explain(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "{} (forbidden: the kubeconfig's user needs list on it; see kubectl auth can-i)",
            s.message
        ),
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => other.to_string(),
    }
}

async fn client(args: &AuditArgs) -> Result<kube::Client, AuditError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| AuditError(format!("cannot read {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(|e| AuditError(format!("{}: {e}", path.display())))?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| AuditError(format!("kubeconfig: {e}")))?,
        None => kube::Config::infer().await.map_err(|e| {
            AuditError(format!(
                "no Kubernetes configuration ({e}); set KUBECONFIG or pass --kubeconfig"
            ))
        })?,
    };
    kube::Client::try_from(config).map_err(|e| AuditError(format!("a client: {e}")))
}

/// What was read from the cluster.
pub struct Cluster {
    pub statefulsets: Vec<StatefulSet>,
    lookups: Listed,
    /// The scope, for messages: `namespace X` or `all namespaces`.
    pub scope: String,
}

async fn read(args: &AuditArgs) -> Result<Cluster, AuditError> {
    let client = client(args).await?;
    let namespace = if args.all_namespaces {
        None
    } else {
        Some(
            args.namespace
                .clone()
                .unwrap_or_else(|| client.default_namespace().to_string()),
        )
    };
    let ns = namespace.as_deref();
    let scope = ns.map_or("all namespaces".to_string(), |n| format!("namespace {n}"));
    let max = crate::bounds::MAX_DOCUMENTS;
    let statefulsets = list_all(&api_for::<StatefulSet>(&client, ns), max)
        .await
        .map_err(|e| {
            AuditError(format!(
                "cannot list StatefulSets in {scope}: {}",
                explain(&e)
            ))
        })?
        .map_err(|max| {
            AuditError(format!(
                "over {max} StatefulSets in {scope} (stsguard's bound on one run, docs/bounds.md); audit one namespace at a time with --namespace"
            ))
        })?;
    let mut objects = StaticLookups {
        authoritative: true,
        ..Default::default()
    };
    let unknown = |kind: &str, e: kube::Error| {
        let why = format!("cannot list {kind}: {}", explain(&e));
        eprintln!("stsguard audit: {why}; its rules answer \"not checked\"");
        Some(why)
    };
    let services = match list_all(&api_for::<Service>(&client, ns), usize::MAX)
        .await
        .map(unbounded)
    {
        Ok(v) => {
            objects.services = v.into_iter().map(Arc::new).collect();
            None
        }
        Err(e) => unknown("Services", e),
    };
    let pdbs = match list_all(&api_for::<PodDisruptionBudget>(&client, ns), usize::MAX)
        .await
        .map(unbounded)
    {
        Ok(v) => {
            objects.pdbs = v.into_iter().map(Arc::new).collect();
            None
        }
        Err(e) => unknown("PodDisruptionBudgets", e),
    };
    let classes = match list_all(&Api::<StorageClass>::all(client.clone()), usize::MAX)
        .await
        .map(unbounded)
    {
        Ok(v) => {
            objects.classes = v.into_iter().map(Arc::new).collect();
            None
        }
        Err(e) => unknown("StorageClasses", e),
    };
    Ok(Cluster {
        statefulsets,
        lookups: Listed {
            objects,
            services,
            classes,
            pdbs,
        },
        scope,
    })
}

/// What the server does not keep (and a manifest would not have).
fn strip(sts: &mut StatefulSet) {
    sts.metadata.managed_fields = None;
    if let Some(a) = sts.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    sts.status = None;
}

/// Judges what was read, as `check` judges its input; progress on stderr every `every` objects.
pub fn judge(cluster: Cluster, policy: &Policy, every: usize) -> Result<Run, AuditError> {
    let total = cluster.statefulsets.len();
    let mut checked = Vec::with_capacity(total);
    let mut excluded = 0usize;
    for (i, mut sts) in cluster.statefulsets.into_iter().enumerate() {
        if every > 0 && i > 0 && i % every == 0 {
            eprintln!("stsguard audit: {i}/{total} StatefulSets checked");
        }
        if policy.is_excluded(sts.metadata.namespace.as_deref()) {
            excluded += 1;
            continue;
        }
        strip(&mut sts);
        let source = check::Source::Cluster {
            cluster: cluster.scope.clone(),
        };
        checked.push(
            check::check_object(source, &sts, policy, &cluster.lookups)
                .map_err(|e| AuditError(e.to_string()))?,
        );
    }
    if excluded > 0 {
        eprintln!(
            "stsguard audit: skipped {excluded} StatefulSet(s) in namespaces the policy excludes ({}): the webhook never sees them",
            policy.exclude_namespaces.join(", ")
        );
    }
    Ok(Run {
        checked,
        other_kinds: Default::default(),
    })
}

/// Said when `stsguard audit` runs without `--config`: not the installed policy.
const BUILT_IN_POLICY: &str = "stsguard audit: judging with the built-in policy (no --config), not the one installed in the cluster; to judge with that one, save it (the chart's ConfigMap <release fullname>-policy, e.g. kubectl -n stsguard get configmap stsguard-policy -o jsonpath='{.data.policy\\.yaml}' > policy.yaml) and pass --config policy.yaml";

/// `stsguard audit`; returns the exit code (as `check`: 0 allowed, 1 an enforced rule fails, 2
/// the cluster or the policy could not be read).
pub fn run(args: AuditArgs) -> i32 {
    let policy = match &args.config {
        Some(p) => match Policy::load(p) {
            Ok(policy) => {
                eprintln!("stsguard audit: judging with the policy in {}", p.display());
                policy
            }
            Err(e) => {
                eprintln!("stsguard audit: {e}");
                return 2;
            }
        },
        None => {
            eprintln!("{}", BUILT_IN_POLICY);
            Policy::default()
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("stsguard audit: cannot start the runtime: {e}");
            return 2;
        }
    };
    let cluster = match rt.block_on(read(&args)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("stsguard audit: {e}");
            return 2;
        }
    };
    let namespaces: std::collections::BTreeSet<&str> = cluster
        .statefulsets
        .iter()
        .filter_map(|s| s.metadata.namespace.as_deref())
        .collect();
    eprintln!(
        "stsguard audit: {} StatefulSet(s) in {} namespace(s) ({})",
        cluster.statefulsets.len(),
        namespaces.len(),
        cluster.scope
    );
    let scope = cluster.scope.clone();
    let run = match judge(cluster, &policy, 200) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stsguard audit: {e}");
            return 2;
        }
    };
    let out = match args.output {
        AuditOutput::Report => {
            if run.checked.is_empty() {
                // check's report would speak of its input.
                Ok(format!("no StatefulSet to audit in {scope}\n"))
            } else {
                Ok(check::report::render(&run.checked))
            }
        }
        AuditOutput::Json => check::report::json(&run.checked).map_err(|e| e.to_string()),
    };
    match out {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("stsguard audit: {e}");
            return 2;
        }
    }
    let denied = run.checked.iter().filter(|c| !c.allowed).count();
    eprintln!(
        "stsguard audit: {} checked, {} would be denied",
        run.checked.len(),
        denied
    );
    i32::from(denied > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A StatefulSet in the cluster past a bound (it got in before stsguard, or with its
    /// webhook off) is a failing finding of rule `bounds`, judged without being copied.
    #[test]
    fn a_listed_statefulset_past_a_bound_is_a_failing_finding() {
        let mut sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "big", "namespace": "ns"},
            "spec": {"selector": {}, "template": {"spec": {"containers": []}}}
        }))
        .unwrap();
        let spec = sts
            .spec
            .as_mut()
            .and_then(|s| s.template.spec.as_mut())
            .unwrap();
        spec.containers = (0..15_000)
            .map(|i| k8s_openapi::api::core::v1::Container {
                name: format!("c{i}"),
                ..Default::default()
            })
            .collect();
        let cluster = Cluster {
            statefulsets: vec![sts],
            lookups: Listed {
                objects: StaticLookups::default(),
                services: None,
                classes: None,
                pdbs: None,
            },
            scope: "namespace ns".into(),
        };
        let run = judge(cluster, &Policy::default(), 0).unwrap();
        let c = &run.checked[0];
        assert!(!c.allowed);
        assert_eq!(c.findings.len(), 1);
        assert_eq!(c.findings[0].rule.as_str(), "bounds");
        assert!(
            c.findings[0]
                .message
                .contains("15000 containers, over stsguard's bound of 256"),
            "{}",
            c.findings[0].message
        );
    }
}
