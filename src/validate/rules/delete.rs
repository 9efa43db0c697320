//! Delete protection: what a protected StatefulSet keeps (itself, its namespace, its claims), and the retention that would let its data go.

use super::*;

/// How `stsguard.io/protect` reads where it keeps something (a DELETE, the retention rule): as
/// every safety switch, it fails closed ([`ann::Switch::is_on`]): a value neither `"true"` nor
/// `"false"` protects, and the message names it.
pub fn protection(sts: &StatefulSet) -> ann::Switch<'_> {
    ann::switch(sts, keys::PROTECT)
}

/// `its stsguard.io/protect: "yes" is neither "true" nor "false": read as "true"` for an
/// unclear value.
fn unclear_note(p: ann::Switch) -> Option<String> {
    match p {
        ann::Switch::Invalid(v) => Some(format!(
            "its {}: {:?} is neither \"true\" nor \"false\": read as \"true\"",
            keys::PROTECT,
            short(v).as_ref()
        )),
        _ => None,
    }
}

/// The command that lifts the protection of `names` (`--all` when `None`).
fn unprotect(ns: &str, names: Option<&[&str]>) -> String {
    let which = names.map_or("--all".to_string(), |n| n.join(" "));
    format!(
        "kubectl -n {ns} annotate sts {which} {}=false --overwrite",
        keys::PROTECT
    )
}

/// `delete-protection`: a StatefulSet whose `stsguard.io/protect` is not off ([`protection`])
/// keeps itself, its namespace (unless it is being deleted itself) and the claims it uses
/// ([`claim_use`]). For a namespace or a claim the verdict is this StatefulSet's part of the
/// message; [`held_message`] makes the whole one.
pub fn delete_protection(i: &Input) -> Verdict {
    let sts = i.object;
    let p = protection(sts);
    if !p.is_on() {
        return Verdict::Pass;
    }
    let name = name(sts);
    match i.deleted.unwrap_or(Deleted::StatefulSet) {
        Deleted::StatefulSet => Verdict::Fail(match p {
            ann::Switch::Invalid(v) => format!(
                "StatefulSet {name} is kept by {}: {:?}, which is neither \"true\" nor \"false\" (read as \"true\"); to delete it, first: {}",
                keys::PROTECT,
                short(v).as_ref(),
                unprotect(i.namespace, Some(&[name]))
            ),
            _ => format!(
                "StatefulSet {name} is protected by {}=true; to delete it, first: {}",
                keys::PROTECT,
                unprotect(i.namespace, Some(&[name]))
            ),
        }),
        // A StatefulSet being deleted goes anyway: its namespace may go with it.
        Deleted::Namespace if sts.metadata.deletion_timestamp.is_some() => Verdict::Pass,
        Deleted::Namespace => Verdict::Fail(match unclear_note(p) {
            Some(note) => format!("{name} ({note})"),
            None => name.to_string(),
        }),
        // Its claims stay kept while it is being deleted: they are what is at risk then (the
        // garbage collector deletes them under whenDeleted: Delete).
        Deleted::Claim(claim) => match claim_use(sts, claim) {
            Some(how) => Verdict::Fail(match unclear_note(p) {
                Some(note) => format!("{name} ({how}; {note})"),
                None => format!("{name} ({how})"),
            }),
            None => Verdict::Pass,
        },
    }
}

/// How `sts` uses the claim named `claim`, as a field path: the claim of one of its
/// volumeClaimTemplates for an ordinal in use (`spec.ordinals.start` up to, not including,
/// start + `spec.replicas`), or a pod volume mounting it by `claimName`. The claim of template
/// `t` for ordinal `n` is `t-<sts>-n` (both names may hold '-': each is matched exactly, and the
/// ordinal is read strictly, as the StatefulSet controller writes it), so a name that merely
/// looks alike is not used.
pub fn claim_use(sts: &StatefulSet, claim: &str) -> Option<String> {
    let spec = sts.spec.as_ref()?;
    let name = sts.metadata.name.as_deref()?;
    let start = i64::from(spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0));
    let end = start + i64::from(spec.replicas.unwrap_or(1));
    let templates = spec.volume_claim_templates.as_deref().unwrap_or_default();
    for (i, t) in templates.iter().enumerate() {
        let Some(template) = t.metadata.name.as_deref() else {
            continue;
        };
        let ordinal = claim
            .strip_prefix(template)
            .and_then(|r| r.strip_prefix('-'))
            .and_then(|r| r.strip_prefix(name))
            .and_then(|r| r.strip_prefix('-'))
            .and_then(strict_ordinal);
        if let Some(n) = ordinal.filter(|n| (start..end).contains(n)) {
            return Some(format!(
                "spec.volumeClaimTemplates[{i}] \"{template}\" of pod {name}-{n}; pods {name}-{start}..{name}-{} in use",
                end - 1
            ));
        }
    }
    let pod = spec.template.spec.as_ref()?;
    // A volume named like a volumeClaimTemplate is replaced by the pod's own claim. The names
    // are gathered once, and only for a StatefulSet with a volume that names the claim.
    let mut replaced: Option<HashSet<&str>> = None;
    for (i, v) in pod.volumes.iter().flatten().enumerate() {
        let mounts = v
            .persistent_volume_claim
            .as_ref()
            .is_some_and(|c| c.claim_name == claim);
        if !mounts {
            continue;
        }
        let replaced = replaced.get_or_insert_with(|| {
            templates
                .iter()
                .filter_map(|t| t.metadata.name.as_deref())
                .collect()
        });
        if !replaced.contains(v.name.as_str()) {
            return Some(format!(
                "spec.template.spec.volumes[{i}] \"{}\" mounts it",
                v.name
            ));
        }
    }
    None
}

/// An ordinal as the StatefulSet controller writes it (`%d` of a non-negative int32): ASCII
/// digits, no sign, no leading zero.
fn strict_ordinal(s: &str) -> Option<i64> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse::<i32>().ok().map(i64::from)
}

/// How many holders a message names; the rest are counted.
const NAMED_HOLDERS: usize = 5;

/// The message of a namespace or claim DELETE held by the StatefulSets `held` (name, and the
/// part [`delete_protection`] said of it; sorted by name, not empty): the first few named, the
/// rest counted, and the fix.
pub fn held_message(deleted: Deleted, ns: &str, held: &[(&str, String)]) -> String {
    let n = held.len();
    let mut listed = held
        .iter()
        .take(NAMED_HOLDERS)
        .map(|(_, part)| part.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    if n > NAMED_HOLDERS {
        listed.push_str(&format!(" and {} more", n - NAMED_HOLDERS));
    }
    let names: Vec<&str> = held.iter().map(|(name, _)| *name).collect();
    match deleted {
        Deleted::Namespace if n == 1 => format!(
            "namespace {ns} holds protected StatefulSet {listed}; to delete the namespace, first: {}",
            unprotect(ns, Some(&names))
        ),
        Deleted::Namespace => format!(
            "namespace {ns} holds {n} protected StatefulSets: {listed}; to delete the namespace, first: {}",
            unprotect(ns, None)
        ),
        Deleted::Claim(claim) => format!(
            "PersistentVolumeClaim {claim} holds the data of protected StatefulSet{} {listed}; to delete it, first: {}",
            if n == 1 { "" } else { "s" },
            unprotect(ns, Some(&names[..n.min(NAMED_HOLDERS)]))
        ),
        Deleted::StatefulSet => listed,
    }
}

/// `protect-retention`: a protected StatefulSet whose claims go with it once it is deleted.
pub fn protect_retention(sts: &StatefulSet) -> Verdict {
    let spec = sts.spec.as_ref();
    let deletes = spec
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref())
        .is_some_and(|p| p.when_deleted.as_deref() == Some("Delete"));
    let has_claims = spec
        .and_then(|s| s.volume_claim_templates.as_ref())
        .is_some_and(|v| !v.is_empty());
    if !protection(sts).is_on() || !deletes || !has_claims {
        return Verdict::Pass;
    }
    Verdict::Fail(
        "spec.persistentVolumeClaimRetentionPolicy.whenDeleted: Delete deletes the protected data; use Retain"
            .into(),
    )
}
