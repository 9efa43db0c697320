//! The rules about `stsguard.io/roles`: roles in ordinal order, and a role spec that reads.

use super::*;

pub fn ordered_roles(sts: &StatefulSet) -> Verdict {
    let parallel = sts
        .spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        == Some("Parallel");
    if ann::get(sts, keys::ROLES).is_some() && parallel {
        Verdict::Fail(format!(
            "{} with podManagementPolicy: Parallel: the {} may start last; use OrderedReady",
            keys::ROLES,
            spec_of(sts)
                .and_then(Result::ok)
                .map(|s| s.first_role().to_string())
                .unwrap_or("primary".into())
        ))
    } else {
        Verdict::Pass
    }
}

pub fn role_spec(sts: &StatefulSet) -> Verdict {
    let empty = BTreeMap::new();
    let anns = sts.metadata.annotations.as_ref().unwrap_or(&empty);
    let spec = match spec_of(sts) {
        Some(Ok(s)) => Some(s),
        Some(Err(e)) => return Verdict::Fail(format!("{}: {e}", keys::ROLES)),
        None => None,
    };
    if let Some(Err(e)) = server_id_base(sts) {
        return Verdict::Fail(e);
    }
    if let Some(why) = ann::get(sts, keys::ROLE_MOUNT_PATH).and_then(mount_path_problem) {
        return Verdict::Fail(format!("{}: {why}", keys::ROLE_MOUNT_PATH));
    }
    if let Some(cm) = ann::get(sts, keys::ROLE_CONFIG) {
        if !labels::is_dns_subdomain(cm) {
            return Verdict::Fail(format!(
                "{}: \"{}\" is not a ConfigMap name",
                keys::ROLE_CONFIG,
                short(cm)
            ));
        }
    }
    // The placement annotations sort together: a range over the prefix, not every key.
    for key in anns
        .range::<str, _>((
            std::ops::Bound::Included(keys::ROLE_NODE_SELECTOR_PREFIX),
            std::ops::Bound::Unbounded,
        ))
        .map(|(k, _)| k)
        .take_while(|k| k.starts_with(keys::ROLE_NODE_SELECTOR_PREFIX))
    {
        let Some(role) = key.strip_prefix(keys::ROLE_NODE_SELECTOR_PREFIX) else {
            continue;
        };
        let Some(spec) = &spec else {
            return Verdict::Fail(format!(
                "{key} is set but {} is not: add the roles",
                keys::ROLES
            ));
        };
        if !spec.has_role(role) {
            return Verdict::Fail(format!(
                "{}: role \"{}\" is not in {}",
                short(key),
                short(role),
                keys::ROLES
            ));
        }
        if let Some(Err(e)) = role_node_selector(anns, role) {
            return Verdict::Fail(format!("{key}: {e}"));
        }
    }
    Verdict::Pass
}
