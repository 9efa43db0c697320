//! The rules about stsguard's own annotations: single-instance, safety switches that do not read, annotations the policy ignores.

use super::*;

pub fn single_instance(sts: &StatefulSet) -> Verdict {
    let n = replicas(sts);
    if ann::switch(sts, keys::SINGLE_INSTANCE).is_on() && n > 1 {
        Verdict::Fail(format!(
            "spec.replicas is {n} but {} is \"{}\": this workload cannot replicate; keep replicas at 1",
            keys::SINGLE_INSTANCE,
            ann::get(sts, keys::SINGLE_INSTANCE)
                .map(short)
                .unwrap_or_default()
        ))
    } else {
        Verdict::Pass
    }
}

/// The safety switches (`protect`, `single-instance`, `quorum`) are `"true"` or `"false"`: a
/// switch that is neither would leave the reader to guess, so it is refused on write, naming
/// the key, the value and the fix.
pub fn safety_switch(sts: &StatefulSet) -> Verdict {
    let bad: Vec<String> = keys::SWITCHES
        .iter()
        .filter_map(|key| match ann::switch(sts, key) {
            ann::Switch::Invalid(v) => Some(format!(
                "{key}: \"{}\" is not \"true\" or \"false\"; write \"true\" to turn it on, \"false\" to turn it off",
                short(v)
            )),
            _ => None,
        })
        .collect();
    if bad.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(bad.join("; "))
    }
}

/// `stsguard.io/` annotations that do nothing ([`ann::ignored`]): an unknown key, or a rule
/// override the policy does not take.
pub fn annotation_ignored(sts: &StatefulSet, policy: &Policy) -> Verdict {
    let allowed = policy.validation.allow_object_overrides;
    let ignored = ann::ignored(sts, allowed, |r| policy.mode(r));
    if ignored.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(ignored.join("; "))
    }
}
