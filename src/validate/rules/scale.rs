//! The quorum rules: an odd size, and a scale-down that keeps a majority (with the path that does).

use super::*;

/// `q`: how the set is a quorum ([`super::quorum::of`]): annotated, detected, or not at all.
pub fn quorum_odd(sts: &StatefulSet, q: &Quorum) -> Verdict {
    let n = replicas(sts);
    // n <= 0: a full stop (or invalid, which the API server's own validation rejects).
    if n <= 0 || n % 2 == 1 {
        return Verdict::Pass;
    }
    match q {
        Quorum::No => Verdict::Pass,
        Quorum::Detected(d) if !d.odd => Verdict::Pass,
        Quorum::Detected(d) => {
            // An even group of n tolerates n/2 - 1 failures, like the odd one below it.
            let f = n / 2 - 1;
            Verdict::Fail(format!(
                "{} with {n} members tolerates {f} failure{}, like {}; use {} or {}",
                d.describe(),
                if f == 1 { "" } else { "s" },
                n - 1,
                n - 1,
                n + 1
            ))
        }
        Quorum::Annotated => Verdict::Fail(format!(
            "spec.replicas is {n}: a quorum set needs an odd count to survive a split; use {} or {}",
            n - 1,
            n + 1
        )),
    }
}

/// `old` is the replica count before this change; `q` as for [`quorum_odd`]. The message names
/// a path the quorum rules accept step by step ([`scale_down_path`]).
pub fn quorum_scale_down(sts: &StatefulSet, old: i32, q: &Quorum) -> Verdict {
    let n = replicas(sts);
    if *q == Quorum::No || n == 0 || n >= old {
        return Verdict::Pass;
    }
    let majority = old / 2 + 1;
    if n >= majority {
        return Verdict::Pass;
    }
    let odd = match q {
        Quorum::Detected(d) => d.odd,
        _ => true,
    };
    let path = scale_down_path(old, n, odd);
    let steps: Vec<String> = path.iter().map(i32::to_string).collect();
    let advice = if path.contains(&0) {
        format!(
            "no smaller size keeps one: scale {} (0 stops every member)",
            steps.join(" -> ")
        )
    } else {
        format!("scale {}, one step at a time", steps.join(" -> "))
    };
    Verdict::Fail(match q {
        Quorum::Detected(d) => format!(
            "{}: {old} -> {n} members drops below a majority ({majority}) at once; {advice}",
            d.describe()
        ),
        _ => format!(
            "spec.replicas {old} -> {n} drops below a majority ({majority}) of the quorum at once; {advice}"
        ),
    })
}

/// The sizes from `old` down to `n` (`0 < n < old`) that the quorum rules accept one after the
/// other: each step keeps a majority of the members before it (`quorum-scale-down`), at an odd
/// size when `odd` (`quorum-odd`: 7 -> 4 would be refused; the last size is the one asked for,
/// which `quorum-odd` judges on its own). Where no smaller size keeps a
/// majority (3 with `odd`, 2 without), the only accepted way down is a full stop: `old`, 0,
/// `n`. Every step at least halves the count: at most 32 steps.
pub fn scale_down_path(old: i32, n: i32, odd: bool) -> Vec<i32> {
    let mut path = vec![old];
    let mut c = old;
    while c > n {
        let majority = c / 2 + 1;
        if n >= majority {
            // The last step: `n` itself is the user's (quorum-odd judges it on its own).
            path.push(n);
            break;
        }
        let next = if odd && majority % 2 == 0 {
            majority + 1
        } else {
            majority
        };
        if next >= c {
            return vec![old, 0, n];
        }
        c = next;
        path.push(c);
    }
    path
}
