//! Writing PolicyReports ([`super::reports`] builds them) to the cluster, one namespace at a
//! time: build its reports, write them, drop them. The writer keeps per namespace only what is on
//! the server: the report names and the hash of their results (annotation [`HASH_ANNOTATION`],
//! read back when listing, so also across restarts and leader changes). A namespace whose
//! results hash as written is not sent again, and its results keep their `timestamp` (when the
//! result was first seen). Objects go through kube's `DynamicObject` API.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;

use super::NamespaceResults;
use super::reports::{
    FirstSeen, HASH_ANNOTATION, MANAGED_BY, MANAGER, REPORT_BUDGET, api_resource, build,
    first_seen_of, is_part_name, results_hash,
};

/// What one audit's writes did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    /// PolicyReports applied (parts).
    pub applied: usize,
    /// Namespaces whose reports were already as wanted (not sent).
    pub unchanged: usize,
    /// PolicyReports deleted.
    pub deleted: usize,
    /// Namespaces whose reports could not be written or deleted (logged once per error).
    pub failed: usize,
}

/// Whether the PolicyReport CRD is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crd {
    Unknown,
    Missing,
    Present,
}

/// A namespace's reports on the server: their names and the hash of their results (`None` when
/// unknown or when the parts disagree: written again).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct OnServer {
    names: BTreeSet<String>,
    hash: Option<String>,
}

/// Writes the reports of successive audits, one namespace at a time: [`Writer::begin`],
/// [`Writer::namespace`] for each namespace with StatefulSets, [`Writer::finish`].
pub struct Writer {
    client: kube::Client,
    ar: ApiResource,
    budget: usize,
    on_server: BTreeMap<String, OnServer>,
    first_seen: BTreeMap<String, FirstSeen>,
    crd: Crd,
    /// When the reports were last listed (to find reports this writer did not write: left over
    /// by an earlier leader, or deleted by hand); every [`RESYNC`].
    listed: Option<Instant>,
    /// The last error per namespace, to log each once.
    failed: BTreeMap<String, String>,
    /// This run: namespaces seen, tallies, errors.
    seen: BTreeSet<String>,
    run: Written,
    failures: BTreeMap<String, String>,
}

/// How often the writer lists the reports to converge on what is there.
pub const RESYNC: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(
        "cannot list PolicyReports (the chart's ClusterRole grants list with audit.policyReports): {0}"
    )]
    List(kube::Error),
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

impl Writer {
    pub fn new(client: kube::Client) -> Self {
        Writer {
            client,
            ar: api_resource(),
            budget: REPORT_BUDGET,
            on_server: BTreeMap::new(),
            first_seen: BTreeMap::new(),
            crd: Crd::Unknown,
            listed: None,
            failed: BTreeMap::new(),
            seen: BTreeSet::new(),
            run: Written::default(),
            failures: BTreeMap::new(),
        }
    }

    /// Another budget of result bytes per report than [`REPORT_BUDGET`] (tests).
    pub fn with_budget(mut self, budget: usize) -> Self {
        self.budget = budget.max(1);
        self
    }

    /// Forget what was written: the next run lists what is there (on becoming the leader:
    /// another replica may have written in between).
    pub fn reset(&mut self) {
        self.on_server.clear();
        self.listed = None;
    }

    fn api(&self, ns: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), ns, &self.ar)
    }

    /// Starts a run: lists the reports on the server when due. `Ok(false)` when the PolicyReport
    /// CRD is not installed (said once in the log): nothing to write this run.
    pub async fn begin(&mut self) -> Result<bool, WriteError> {
        self.seen.clear();
        self.run = Written::default();
        self.failures.clear();
        if self.crd == Crd::Present && self.listed.is_some_and(|t| t.elapsed() < RESYNC) {
            return Ok(true);
        }
        let all: Api<DynamicObject> = Api::all_with(self.client.clone(), &self.ar);
        match all
            .list_metadata(&ListParams::default().labels(&format!("{MANAGED_BY}={MANAGER}")))
            .await
        {
            Ok(list) => {
                if self.crd != Crd::Present {
                    tracing::info!(
                        "PolicyReport CRD (policyreports.wgpolicyk8s.io/v1alpha2) found: writing PolicyReports"
                    );
                }
                self.crd = Crd::Present;
                self.listed = Some(Instant::now());
                let mut on_server: BTreeMap<String, OnServer> = BTreeMap::new();
                let mut hashes: BTreeMap<String, BTreeSet<Option<String>>> = BTreeMap::new();
                for o in list.items {
                    let (Some(ns), Some(name)) = (o.metadata.namespace, o.metadata.name) else {
                        continue;
                    };
                    if !is_part_name(&name) {
                        continue;
                    }
                    let hash = o
                        .metadata
                        .annotations
                        .and_then(|mut a| a.remove(HASH_ANNOTATION));
                    hashes.entry(ns.clone()).or_default().insert(hash);
                    on_server.entry(ns).or_default().names.insert(name);
                }
                for (ns, s) in &mut on_server {
                    let h = hashes.remove(ns).unwrap_or_default();
                    s.hash = match (h.len(), h.into_iter().next()) {
                        (1, Some(h)) => h,
                        _ => None,
                    };
                }
                self.on_server = on_server;
                Ok(true)
            }
            Err(e) if not_found(&e) => {
                if self.crd != Crd::Missing {
                    tracing::warn!(
                        "the PolicyReport CRD (policyreports.wgpolicyk8s.io, v1alpha2) is not installed: audit results go to the metrics only; install it (Kyverno and Policy Reporter ship it) to get PolicyReports"
                    );
                }
                self.crd = Crd::Missing;
                Ok(false)
            }
            Err(e) => Err(WriteError::List(e)),
        }
    }

    /// Deletes the reports `names` of `ns`; returns those left (not deleted).
    async fn delete(
        &mut self,
        ns: &str,
        names: impl IntoIterator<Item = String>,
    ) -> BTreeSet<String> {
        let api = self.api(ns);
        let mut left = BTreeSet::new();
        for name in names {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => self.run.deleted += 1,
                Err(e) if not_found(&e) => {}
                Err(e) => {
                    self.failures.insert(ns.to_string(), e.to_string());
                    left.insert(name);
                }
            }
        }
        left
    }

    /// Writes the reports of one namespace from its audit results: nothing when they hash as
    /// what is on the server, the reports deleted when it has no result left. Holds one
    /// namespace's reports at a time.
    pub async fn namespace(&mut self, ns: &str, results: &NamespaceResults<'_>) {
        self.seen.insert(ns.to_string());
        let server = self.on_server.remove(ns).unwrap_or_default();
        if !results.has_results() {
            self.first_seen.remove(ns);
            let left = self.delete(ns, server.names).await;
            if !left.is_empty() {
                self.on_server.insert(
                    ns.to_string(),
                    OnServer {
                        names: left,
                        hash: None,
                    },
                );
            }
            return;
        }
        let hash = results_hash(ns, results);
        if !server.names.is_empty() && server.hash.as_deref() == Some(hash.as_str()) {
            self.run.unchanged += 1;
            self.on_server.insert(ns.to_string(), server);
            return;
        }
        let mut first_seen = self.first_seen.remove(ns).unwrap_or_default();
        if first_seen.is_empty() {
            // A new writer (restart, new leader): the reports there hold when each result was
            // first seen.
            let api = self.api(ns);
            for name in &server.names {
                if let Ok(Some(o)) = api.get_opt(name).await {
                    if let Ok(v) = serde_json::to_value(&o) {
                        first_seen_of(&v, &mut first_seen);
                    }
                }
            }
        }
        let parts = build(ns, results, &mut first_seen, SystemTime::now(), self.budget);
        self.first_seen.insert(ns.to_string(), first_seen);
        let api = self.api(ns);
        let mut written = BTreeSet::new();
        let mut ok = true;
        for part in &parts {
            let name = part.name().to_string();
            match api
                .patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(part),
                )
                .await
            {
                Ok(_) => {
                    self.run.applied += 1;
                    written.insert(name);
                }
                Err(e) => {
                    // One namespace (e.g. being deleted) does not hold up the others.
                    if not_found(&e) {
                        self.listed = None; // the CRD may have gone: list again next time
                    }
                    self.failures.insert(ns.to_string(), e.to_string());
                    ok = false;
                }
            }
        }
        drop(parts);
        let stale: Vec<String> = server
            .names
            .iter()
            .filter(|n| !written.contains(*n))
            .cloned()
            .collect();
        let mut names = written;
        if ok {
            // Parts no longer needed (the namespace's results shrank).
            names.extend(self.delete(ns, stale).await);
        } else {
            names.extend(stale);
        }
        let hash = (ok && !names.is_empty()).then_some(hash);
        self.on_server
            .insert(ns.to_string(), OnServer { names, hash });
    }

    /// Ends a run: deletes the reports of namespaces the run did not see (no StatefulSet left),
    /// logs new errors once, and returns what the run did.
    pub async fn finish(&mut self) -> Written {
        let gone: Vec<String> = self
            .on_server
            .keys()
            .filter(|ns| !self.seen.contains(*ns))
            .cloned()
            .collect();
        for ns in gone {
            let names = self
                .on_server
                .remove(&ns)
                .map(|s| s.names)
                .unwrap_or_default();
            let left = self.delete(&ns, names).await;
            if !left.is_empty() {
                self.on_server.insert(
                    ns,
                    OnServer {
                        names: left,
                        hash: None,
                    },
                );
            }
        }
        let seen = &self.seen;
        self.first_seen.retain(|ns, _| seen.contains(ns));
        // Said once per namespace and error, not at every audit.
        for (ns, e) in &self.failures {
            if self.failed.get(ns) != Some(e) {
                tracing::warn!(namespace = %ns, error = %e, "PolicyReport not written; retrying at the next audit");
            }
        }
        self.run.failed = self.failures.len();
        self.failed = std::mem::take(&mut self.failures);
        std::mem::take(&mut self.run)
    }

    /// One whole audit's reports: begin, every namespace, finish. `Ok(None)` when the
    /// PolicyReport CRD is not installed.
    pub async fn write(&mut self, audit: &super::Audit) -> Result<Option<Written>, WriteError> {
        if !self.begin().await? {
            return Ok(None);
        }
        for (ns, results) in audit.by_namespace() {
            self.namespace(ns, &results).await;
        }
        Ok(Some(self.finish().await))
    }
}
