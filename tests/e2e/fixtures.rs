//! Scenario `fixtures`: every StatefulSet of `tests/fixtures/statefulsets` through the real
//! API server, each in its own namespace (`fx-<file>`), with its governing Service when the
//! fixture has one (`<name>.service.yaml`).
//!
//! - apps/v1: `kubectl apply` creates it; the API server calls both webhooks; the stored object
//!   carries stsguard's mutation exactly as `stsguard check` computes it for the same look-ups
//!   (the Service if any; no StorageClass, no PodDisruptionBudget), and kubectl prints exactly
//!   the warnings it computes. Then the unchanged manifest is applied again, client-side
//!   (`kubectl apply`) and server-side (kube `Patch::Apply`, forced once to take the fields over
//!   from kubectl, then again without force): `metadata.generation` must not move (no rollout).
//! - apps/v1beta1 (`legacy-*`): refused by the API server itself (the version is not served).
//! - Two edits of fixtures that enforced rules deny (a hostPath set with anti-affinity turned
//!   off, a pod volume on one shared claim): denied with stsguard's message, nothing stored.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PodAffinityTerm, PodTemplateSpec, Service};
use kube::api::{Api, Patch, PatchParams};
use stsguard::validate::lookups::StaticLookups;

use crate::harness::{contains, dns_label, eventually, fixture_statefulsets, say};
use crate::kube_util;
use crate::setup::Ctx;

const FIELD_MANAGER: &str = "e2e-ssa";
const HOSTNAME: &str = "kubernetes.io/hostname";

/// Replaces the namespace line of the top-level `metadata` block, if there is one, so that the
/// fixture lands in its own namespace (kubectl's `-n` refuses a manifest naming another). The
/// rest of the text is the fixture's, byte for byte.
fn in_namespace(text: &str, ns: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_meta = false;
    for line in text.split_inclusive('\n') {
        let top = !line.starts_with(' ') && !line.starts_with('#') && !line.trim().is_empty();
        if top {
            in_meta = line.trim_end() == "metadata:";
        } else if in_meta && line.starts_with("  namespace:") {
            out.push_str(&format!("  namespace: {ns}\n"));
            continue;
        }
        out.push_str(line);
    }
    out
}

fn parse(text: &str, what: &str) -> serde_json::Value {
    stsguard::check::yaml_documents(text)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .into_iter()
        .find(|d| !d.is_null())
        .unwrap_or_else(|| panic!("{what}: no document"))
}

/// Writes the fixture (and its Service) moved to `ns`; checks the move changed nothing else.
fn moved(path: &PathBuf, ns: &str, work: &std::path::Path) -> (PathBuf, serde_json::Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let new = in_namespace(&text, ns);
    let mut want = parse(&text, &path.display().to_string());
    let mut got = parse(&new, &path.display().to_string());
    for v in [&mut want, &mut got] {
        v["metadata"]["namespace"] = ns.into();
    }
    assert_eq!(
        want,
        got,
        "{}: moving it to {ns} changed more",
        path.display()
    );
    let file = work.join(format!(
        "{ns}-{}",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&file, new).unwrap();
    (file, got)
}

/// `spec.template` as JSON without what the API server rewrites in place: quantities
/// (`resources`, `sizeLimit`: "0.5" is stored as "500m") and zero values (`readOnly: false`,
/// dropped by Go's `omitempty`), for comparing what was sent with what was stored.
fn comparable(t: &PodTemplateSpec) -> serde_json::Value {
    fn zero(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Bool(b) => !b,
            serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(a) => a.is_empty(),
            serde_json::Value::Object(m) => m.is_empty(),
            serde_json::Value::Null => true,
        }
    }
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("resources");
                m.remove("sizeLimit");
                m.values_mut().for_each(strip);
                m.retain(|_, v| !zero(v));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(t).unwrap();
    strip(&mut v);
    v
}

/// Where `want` and `have` first differ (for a readable failure).
fn first_difference(want: &serde_json::Value, have: &serde_json::Value, at: &str) -> String {
    use serde_json::Value::*;
    match (want, have) {
        (Object(a), Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    None if !v.is_null() => return format!("{at}/{k} missing"),
                    Some(w) if !contains(v, w) => {
                        return first_difference(v, w, &format!("{at}/{k}"));
                    }
                    _ => {}
                }
            }
            format!("{at}: ?")
        }
        (Array(a), Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if !contains(x, y) {
                    return first_difference(x, y, &format!("{at}/{i}"));
                }
            }
            format!("{at}: order")
        }
        _ => format!("{at}: sent {want}, stored {have}"),
    }
}

/// A podAntiAffinity term on the hostname that selects the pods (stsguard's, or the user's
/// equivalent one it kept).
fn spreads_over_nodes(t: &PodTemplateSpec) -> Option<&'static str> {
    let labels = t
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let anti = t
        .spec
        .as_ref()?
        .affinity
        .as_ref()?
        .pod_anti_affinity
        .as_ref()?;
    let selects = |term: &PodAffinityTerm| {
        term.topology_key == HOSTNAME
            && term
                .label_selector
                .as_ref()
                .is_some_and(|s| stsguard::k8s::labels::selector_matches(s, &labels))
    };
    if anti
        .required_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .any(selects)
    {
        return Some("required");
    }
    anti.preferred_during_scheduling_ignored_during_execution
        .iter()
        .flatten()
        .any(|w| selects(&w.pod_affinity_term))
        .then_some("preferred")
}

fn ordinal_env_everywhere(t: &PodTemplateSpec) -> Result<usize, String> {
    let spec = t.spec.as_ref().ok_or("no pod spec")?;
    let all: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    for c in &all {
        let names: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
        for want in [
            "POD_NAME",
            "POD_NAMESPACE",
            "POD_ORDINAL",
            "STATEFULSET_NAME",
        ] {
            if !names.contains(&want) {
                return Err(format!("container {} has no {want}: {names:?}", c.name));
            }
        }
    }
    Ok(all.len())
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// How many warnings stsguard answered the (non-dry-run) CREATE of `ns/name` with, per its log:
/// the mutating and the validating review (the largest, should one be called twice).
fn stsguard_create_warnings(ctx: &Ctx, ns: &str, name: &str) -> usize {
    let mut per_endpoint: BTreeMap<String, u64> = BTreeMap::new();
    for v in ctx.stsguard.log_lines("review") {
        if v["kind"] == "StatefulSet"
            && v["namespace"] == ns
            && v["name"] == name
            && v["operation"] == "CREATE"
            && v["dry_run"] == false
        {
            let e = per_endpoint
                .entry(v["endpoint"].as_str().unwrap_or("").to_string())
                .or_default();
            *e = (*e).max(v["warnings"].as_u64().unwrap_or(0));
        }
    }
    per_endpoint.values().sum::<u64>() as usize
}

struct Outcome {
    kind: &'static str,
    reapply_client: String,
}

async fn one_fixture(ctx: Arc<Ctx>, path: PathBuf) -> Outcome {
    let file = path.file_name().unwrap().to_string_lossy().to_string();
    let stem = file.trim_end_matches(".yaml");
    let ns = dns_label(&format!("fx-{stem}"));
    kube_util::create_namespace(&ctx.client, &ns).await;
    let original = parse(&std::fs::read_to_string(&path).unwrap(), &file);
    let legacy = original["apiVersion"] != "apps/v1";
    let svc_path = path.with_file_name(format!("{stem}.service.yaml"));
    let mut service = None;
    if svc_path.is_file() && !legacy {
        let (svc_file, svc) = moved(&svc_path, &ns, &ctx.work);
        let r = ctx
            .kubectl
            .run(&["apply", "-n", &ns, "-f", svc_file.to_str().unwrap()])
            .await;
        assert!(r.ok, "{file}: its Service was not created: {}", r.stderr);
        service = Some(svc);
    }
    let (sts_file, sts_json) = moved(&path, &ns, &ctx.work);
    let sts_file = sts_file.to_str().unwrap().to_string();
    let name = sts_json["metadata"]["name"].as_str().unwrap().to_string();
    let api = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns);

    let created = ctx
        .kubectl
        .run(&["apply", "-n", &ns, "-f", &sts_file])
        .await;
    if legacy {
        let version = original["apiVersion"].as_str().unwrap();
        assert!(
            !created.ok
                && created.errors().contains(&format!(
                    "no matches for kind \"StatefulSet\" in version \"{version}\""
                )),
            "{file}: a {version} StatefulSet must be refused by the API server: {created:?}"
        );
        assert!(
            api.list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty(),
            "{file}: nothing stored"
        );
        say(format!(
            "e2e fixtures: {file}: refused by the API server ({version} is not served), as expected"
        ));
        return Outcome {
            kind: "refused",
            reapply_client: String::new(),
        };
    }

    // What stsguard computes offline for the same object and look-ups.
    let typed: StatefulSet = serde_json::from_value(sts_json.clone())
        .unwrap_or_else(|e| panic!("{file}: not a StatefulSet: {e}"));
    let lookups = StaticLookups {
        services: service
            .iter()
            .map(|s| Arc::new(serde_json::from_value::<Service>(s.clone()).unwrap()))
            .collect(),
        authoritative: true,
        ..Default::default()
    };
    let expected = stsguard::check::check_one(&typed, &ctx.policy, &lookups).unwrap();
    if !expected.allowed {
        // Denied by an enforced rule (none is, with the chart's default policy): exactly the
        // violations stsguard computes, nothing stored.
        let errors = created.errors();
        assert!(
            !created.ok
                && errors.contains(
                    "admission webhook \"statefulsets.validate.stsguard.io\" denied the request"
                ),
            "{file}: stsguard check denies it, the API server stored it: {created:?}"
        );
        for v in &expected.violations {
            let line = format!("[{}] {}", v.rule, v.message);
            assert!(errors.contains(&line), "{file}: {line:?} not in {errors}");
        }
        assert!(api.get_opt(&name).await.unwrap().is_none(), "{file}");
        let rules: Vec<String> = expected
            .violations
            .iter()
            .map(|v| v.rule.to_string())
            .collect();
        say(format!(
            "e2e fixtures: {file}: denied by [{}] as stsguard check says, nothing stored",
            rules.join(", ")
        ));
        return Outcome {
            kind: "denied",
            reapply_client: String::new(),
        };
    }
    assert!(
        created.ok,
        "{file}: kubectl apply failed: {}",
        created.stderr
    );
    assert_eq!(
        created.stdout.trim(),
        format!("statefulset.apps/{name} created"),
        "{file}"
    );
    // The warnings: stsguard's are exactly the ones it computes offline; the API server may add
    // its own (e.g. a duplicate port definition), never with a stsguard rule id.
    let warnings = sorted(created.warnings());
    let want_warnings = sorted(expected.warnings.clone());
    let want = &want_warnings;
    for w in want {
        assert!(
            warnings.contains(w),
            "{file}: kubectl did not print stsguard's warning {w:?}: {warnings:?}"
        );
    }
    let own: Vec<&String> = warnings.iter().filter(|w| !want.contains(w)).collect();
    let sent = eventually(
        &format!("{file}: stsguard's review log lines"),
        5,
        || async {
            let n = stsguard_create_warnings(&ctx, &ns, &name);
            if n >= want.len() {
                Ok(n)
            } else {
                Err(format!("{n} logged"))
            }
        },
    )
    .await;
    assert_eq!(
        sent,
        want.len(),
        "{file}: stsguard answered the CREATE with other warnings than it computes; kubectl printed {warnings:?}"
    );
    for w in &own {
        assert!(
            !w.starts_with(&format!("StatefulSet {ns}/{name}: [")),
            "{file}: a stsguard warning it does not compute offline: {w}"
        );
        say(format!(
            "e2e fixtures: {file}: the API server's own warning: {w}"
        ));
    }

    // Stored with the mutation.
    let stored = api.get(&name).await.unwrap();
    let template = &stored.spec.as_ref().unwrap().template;
    let want = comparable(&expected.mutated.spec.as_ref().unwrap().template);
    let have = comparable(template);
    assert!(
        contains(&want, &have),
        "{file}: the stored pod template is not stsguard's mutation: {}",
        first_difference(&want, &have, "spec.template")
    );
    let containers = ordinal_env_everywhere(template)
        .unwrap_or_else(|e| panic!("{file}: stored without the ordinal env: {e}"));
    let spread = spreads_over_nodes(template).unwrap_or_else(|| {
        panic!("{file}: stored without a podAntiAffinity term on {HOSTNAME} selecting its pods")
    });
    let generation = stored.metadata.generation;
    assert_eq!(generation, Some(1), "{file}");

    // The same manifest again: client-side, then server-side (forced once, then as owner).
    let again = ctx
        .kubectl
        .run(&["apply", "-n", &ns, "-f", &sts_file])
        .await;
    assert!(again.ok, "{file}: re-apply failed: {}", again.stderr);
    let reapply_client = again
        .stdout
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .to_string();
    let after = api.get(&name).await.unwrap();
    assert_eq!(
        after.metadata.generation, generation,
        "{file}: kubectl apply of the unchanged manifest caused a rollout"
    );
    assert_eq!(after.spec, stored.spec, "{file}: client-side re-apply");
    for pp in [
        PatchParams::apply(FIELD_MANAGER).force(),
        PatchParams::apply(FIELD_MANAGER),
    ] {
        let forced = pp.force;
        let applied = api
            .patch(&name, &pp, &Patch::Apply(&sts_json))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{file}: server-side apply (force {forced}) failed: {}",
                    kube_util::api_message(&e)
                )
            });
        assert_eq!(
            applied.metadata.generation, generation,
            "{file}: server-side apply (force {forced}) of the unchanged manifest caused a rollout"
        );
        assert_eq!(
            applied.spec, stored.spec,
            "{file}: server-side apply (force {forced})"
        );
    }
    // The re-applies' UPDATE reviews: how many stsguard had to patch (fields of its mutation the
    // re-applied manifest took away).
    let repatched = ctx
        .stsguard
        .log_lines("review")
        .iter()
        .filter(|v| {
            v["endpoint"] == "mutate"
                && v["namespace"] == ns.as_str()
                && v["operation"] == "UPDATE"
                && v["patched"] == true
        })
        .count();
    say(format!(
        "e2e fixtures: {file}: created, admitted ({} stsguard warnings: {}), stored mutated (ordinal env in {containers} containers, {spread} anti-affinity), re-applied unchanged: kubectl \"{reapply_client}\", server-side x2 ({repatched} of 3 re-apply UPDATEs re-patched by stsguard), generation 1",
        want_warnings.len(),
        kube_util::rule_ids(&want_warnings).join(",")
    ));
    Outcome {
        kind: "stored",
        reapply_client,
    }
}

/// A fixture edited so that an enforced rule denies it.
async fn denied_variant(
    ctx: Arc<Ctx>,
    fixture: &str,
    rule: &str,
    edit: fn(&mut serde_json::Value),
) -> String {
    let path = fixture_statefulsets().join(fixture);
    let ns = dns_label(&format!("fx-denied-{rule}"));
    kube_util::create_namespace(&ctx.client, &ns).await;
    let mut doc = parse(&std::fs::read_to_string(&path).unwrap(), fixture);
    doc["metadata"]["namespace"] = ns.clone().into();
    edit(&mut doc);
    let typed: StatefulSet = serde_json::from_value(doc.clone()).unwrap();
    let expected = stsguard::check::check_one(
        &typed,
        &ctx.policy,
        &StaticLookups {
            authoritative: true,
            ..Default::default()
        },
    )
    .unwrap();
    let violations: Vec<String> = expected
        .violations
        .iter()
        .map(|f| f.rule.to_string())
        .collect();
    assert_eq!(violations, vec![rule.to_string()], "{fixture} edited");
    let file = ctx.work.join(format!("{ns}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let r = ctx
        .kubectl
        .run(&["apply", "-n", &ns, "-f", file.to_str().unwrap()])
        .await;
    let errors = r.errors();
    assert!(
        !r.ok
            && errors.contains(
                "admission webhook \"statefulsets.validate.stsguard.io\" denied the request"
            )
            && errors.contains(&format!("[{rule}] {}", expected.violations[0].message)),
        "{fixture} edited: must be denied by [{rule}]: {r:?}"
    );
    let name = doc["metadata"]["name"].as_str().unwrap();
    let api = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns);
    assert!(
        api.get_opt(name).await.unwrap().is_none(),
        "{fixture} edited: denied but stored"
    );
    say(format!(
        "e2e fixtures: {fixture} edited: denied by [{rule}] as stsguard check says, nothing stored"
    ));
    rule.to_string()
}

pub async fn run(ctx: Arc<Ctx>) -> String {
    let dir = fixture_statefulsets();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".yaml") && !n.ends_with(".service.yaml")
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 39,
        "expected the 39 fixtures of {}, found {}",
        dir.display(),
        files.len()
    );
    let outcomes: Vec<Outcome> = futures::stream::iter(files.clone())
        .map(|p| one_fixture(ctx.clone(), p))
        .buffer_unordered(4)
        .collect()
        .await;
    let denied = [
        denied_variant(
            ctx.clone(),
            "csi-hostpathplugin-csi-driver-host-path.yaml",
            "hostpath-spread",
            |d| {
                d["spec"]["replicas"] = 2.into();
                d["metadata"]["annotations"] =
                    serde_json::json!({"stsguard.io/anti-affinity": "none"});
            },
        )
        .await,
        denied_variant(ctx.clone(), "mysql-k8s-website.yaml", "shared-claim", |d| {
            let vols = &mut d["spec"]["template"]["spec"]["volumes"];
            vols.as_array_mut().unwrap().push(serde_json::json!(
                {"name": "shared", "persistentVolumeClaim": {"claimName": "shared"}}
            ));
        })
        .await,
    ];
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    let mut client_side: BTreeMap<String, usize> = BTreeMap::new();
    for o in &outcomes {
        *count.entry(o.kind).or_default() += 1;
        if o.kind == "stored" {
            *client_side.entry(o.reapply_client.clone()).or_default() += 1;
        }
    }
    let stored = count.get("stored").copied().unwrap_or(0);
    let refused = count.get("refused").copied().unwrap_or(0);
    let denied_as_is = count.get("denied").copied().unwrap_or(0);
    assert_eq!(stored + refused + denied_as_is, files.len());
    assert_eq!(refused, 3, "the three legacy-* fixtures are apps/v1beta1");
    let summary = format!(
        "{} fixtures: {} apps/v1: {stored} created, {stored} admitted, {stored} stored mutated, {denied_as_is} denied; {refused} apps/v1beta1 refused by the API server; edited fixtures denied: {}; rollouts on re-apply: 0 (client-side x{stored}: {client_side:?}; server-side x{})",
        files.len(),
        stored + denied_as_is,
        denied.join(", "),
        stored * 2
    );
    say(format!("e2e fixtures: {summary}"));
    summary
}
