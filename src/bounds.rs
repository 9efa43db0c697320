//! The limits that keep one review's work and memory bounded, whatever the client sends.
//!
//! Each limit says where its number comes from. An object past a limit is not evaluated, and it
//! is not let through either: `/validate` denies it (rule id [`RULE`]), `/mutate` allows it
//! unpatched with a warning that says so, `stsguard check` and `stsguard audit` report a failing
//! finding. The same limits apply to objects from the watch cache (a Scale, a Namespace or claim
//! DELETE) and to the command line's input. The table users read: docs/bounds.md.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, PodSpec};

/// The rule id of a finding or denial past a bound.
pub const RULE: &str = "bounds";

/// Why an object is past a bound: which bound (with its number) and how to get under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastBound {
    /// What is over which bound, e.g. `the pod template has 300 containers, over stsguard's
    /// bound of 256`.
    pub what: String,
    /// How to get under it.
    pub fix: &'static str,
}

impl std::fmt::Display for PastBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.what, self.fix)
    }
}

/// The fix for a review or object with too much in it.
const FEWER: &str = "fix: make the object smaller (fewer containers, env entries, volumes; \
     docs/bounds.md)";

/// Bodies over this are refused with 413: an UPDATE carries `object` and `oldObject`, each up to
/// the API server's 3 MiB request limit.
pub const MAX_BODY: usize = 7 * 1024 * 1024;

/// JSON objects in one review body, not counting `object.metadata.managedFields` and
/// `oldObject.metadata.managedFields` (the decoder never reads those into a type). A JSON object becomes a typed struct of up to ~3 KiB (a `Volume`: 3,208 bytes; a
/// `Container`: 2,120), so `{}` — two bytes — can cost three thousand: this bounds that
/// amplification to ~13 MiB per review. The largest real StatefulSet review in the corpus
/// (argo-cd's application controller) has 775 objects with managedFields; an UPDATE has two
/// objects: 4,096 leaves room for StatefulSets twice that size.
pub const MAX_OBJECTS: usize = 4096;

/// Reviews with more JSON objects than this (as [`count_review`] counts them) go to the large
/// lane whatever their size: the work of a review grows with its objects (a pod template of 256
/// small containers is 28 KB and takes milliseconds; the answer to 200 of them is 262 KB). The
/// corpus's largest StatefulSet CREATE (argo-cd's application controller) holds 252: real
/// CREATEs stay ordinary; an UPDATE of a StatefulSet that large (two copies) goes to the large
/// lane, where it is answered as well, on the blocking pool.
pub const LANE_OBJECTS: usize = 256;

/// JSON values other than objects — strings, arrays and the elements after a comma — in one
/// review body, not counting the top-level `managedFields`. Each becomes at most a 32-byte
/// `String`, `Vec` or `serde_json::Value` (`""`, `[]` and `,0` are two bytes), so this bounds
/// that amplification to a few MiB; real reviews have a few thousand.
pub const MAX_STRINGS_AND_ARRAYS: usize = 131_072;

/// Containers and init containers in one pod template. Kubernetes sets no number; real pods have
/// a handful (the corpus: at most 5). Each container gets the identity variables and the role
/// mount, so this bounds the patch (~2,000 operations at most).
pub const MAX_CONTAINERS: usize = 256;

/// Entries of the lists a pod template and its claim templates hold (per container: `env`,
/// `envFrom`, `ports`, `volumeMounts`, `volumeDevices`, `args`, `command`; per pod: `volumes`,
/// `tolerations`, `hostAliases`, `imagePullSecrets`, `topologySpreadConstraints`; and
/// `volumeClaimTemplates`). Checked on typed objects, where the JSON counts above are not known:
/// objects from the watch cache and the command line. The same number as [`MAX_OBJECTS`]:
/// every such entry but an `args` or `command` string is a JSON object, so a review under that
/// bound is under this one unless it has thousands of arguments; real pods have tens.
pub const MAX_TEMPLATE_ENTRIES: usize = MAX_OBJECTS;

/// The most `stsguard check` reads, all files together: ten objects at the API server's 3 MiB
/// request limit, rounded up. Parsed YAML or JSON takes up to ~10 times its size in memory
/// (measured: 318 MB of JSON took 3.0 GiB), so this bounds the command to a few hundred MiB;
/// past it the command stops reading (a pipe or `/dev/zero` included) and fails.
pub const MAX_INPUT_BYTES: usize = 32 * 1024 * 1024;

/// The most objects (documents, and the items of `List` documents) `stsguard check` reads, and
/// the most StatefulSets `stsguard audit` judges in one run. A rendered chart has tens to
/// hundreds; 100,000 took 22.6 s and 2.6 GiB. `stsguard audit --namespace` splits a cluster that
/// holds more.
pub const MAX_DOCUMENTS: usize = 10_000;

/// Bytes read from a certificate, key or policy file. These files come from a Secret or a
/// ConfigMap, whose data the API server caps at 1 MiB (`MaxSecretSize`, and the same for a
/// ConfigMap): a larger file is not one Kubernetes mounted, and is refused, not read.
pub const MAX_MOUNTED_FILE: u64 = 1024 * 1024;

/// A file being written is caught by reading it twice this far apart ([`SETTLE_TRIES`] times at
/// most) and using it only when both reads agree. A judgement, not a measured figure: longer
/// than a writer copying a file piece by piece (an editor, `cp`, a shell redirect) leaves between
/// two pieces on a busy machine, short enough not to delay a reload noticeably.
pub const SETTLE_PAUSE_MS: u64 = 200;

/// Reads before giving up on a file that keeps changing (2 s at [`SETTLE_PAUSE_MS`]); the next
/// change or periodic check tries again.
pub const SETTLE_TRIES: u32 = 10;

/// The first limit `body` breaks.
pub fn check_body(body: &[u8]) -> Result<(), PastBound> {
    check_counts(count_review(body))
}

/// A review body's counts, as far as [`check_counts`] and the lane ([`LANE_OBJECTS`]) need them.
///
/// Most reviews are far below every bound, and for them the counts need not be exact: the bytes
/// that can open an object (`{`), or a string, an array or a value (`"`, `[`, `,`), anywhere in
/// the body, bound the counts from above in one pass the compiler vectorises (a tenth of the
/// exact count's cost on a typical review). When that upper bound is at most [`LANE_OBJECTS`]
/// objects and [`MAX_STRINGS_AND_ARRAYS`] others, it is returned: it decides the bounds and the
/// lane as the exact counts would. Otherwise — the pass stops as soon as the bound passes
/// [`LANE_OBJECTS`] objects — the exact count ([`count_nodes`], stopping past a bound).
pub fn count_review(body: &[u8]) -> Nodes {
    count_at(body, 0)
}

/// [`count_review`] of one object of a review (`request.object` or `request.oldObject`, as its
/// JSON text): its share of the review's counts, its own `metadata.managedFields` passed over as
/// the review's count passes it over.
pub fn count_review_object(json: &[u8]) -> Nodes {
    count_at(json, REVIEW_OBJECT_DEPTH)
}

/// The depth of a review's objects: inside the review (1) and its `request` (2).
const REVIEW_OBJECT_DEPTH: usize = 2;

fn count_at(json: &[u8], depth: usize) -> Nodes {
    match upper_bound(json, LANE_OBJECTS) {
        Some(upper) if upper.others <= MAX_STRINGS_AND_ARRAYS => upper,
        _ => count_nodes_at(json, depth, MAX_OBJECTS + 1, MAX_STRINGS_AND_ARRAYS + 1),
    }
}

// An upper bound under the lane's bound on objects is under the bound on objects too.
const _: () = assert!(LANE_OBJECTS <= MAX_OBJECTS);

/// Counts that are never below [`count_nodes`]' for the same body: every `{` byte, and every
/// `"`, `[` and `,` byte, strings and `managedFields` included (a string opens with a `"` of its
/// own; each of the others is one that [`count_nodes`] may count). `None` once the objects pass
/// `stop_objects`.
fn upper_bound(json: &[u8], stop_objects: usize) -> Option<Nodes> {
    let mut n = Nodes::default();
    // Per chunk in `u8` counters, which the compiler vectorises: 255 bytes cannot overflow them.
    for chunk in json.chunks(255) {
        let (mut objects, mut others) = (0u8, 0u8);
        for &b in chunk {
            objects += u8::from(b == b'{');
            others += u8::from(b == b'"' || b == b'[' || b == b',');
        }
        n.objects += usize::from(objects);
        n.others += usize::from(others);
        if n.objects > stop_objects {
            return None;
        }
    }
    Some(n)
}

/// The first limit a review body's counts ([`count_review`]) break.
pub fn check_counts(n: Nodes) -> Result<(), PastBound> {
    if n.objects > MAX_OBJECTS {
        return Err(PastBound {
            what: format!(
                "the review holds more than {MAX_OBJECTS} JSON objects (stsguard's bound on work per review)"
            ),
            fix: FEWER,
        });
    }
    if n.others > MAX_STRINGS_AND_ARRAYS {
        return Err(PastBound {
            what: format!(
                "the review holds more than {MAX_STRINGS_AND_ARRAYS} JSON strings, arrays and values (stsguard's bound on work per review)"
            ),
            fix: FEWER,
        });
    }
    Ok(())
}

/// The JSON counts of one object read by the command line (a document or a `List` item), against
/// the same bounds as a review (`metadata.managedFields` not counted, as the server does not).
pub fn check_value(v: &serde_json::Value) -> Result<(), PastBound> {
    let mut n = Nodes::default();
    count_value(v, 0, &mut n);
    if n.objects > MAX_OBJECTS {
        return Err(PastBound {
            what: format!(
                "the object holds more than {MAX_OBJECTS} JSON objects (stsguard's bound on work per review)"
            ),
            fix: FEWER,
        });
    }
    if n.others > MAX_STRINGS_AND_ARRAYS {
        return Err(PastBound {
            what: format!(
                "the object holds more than {MAX_STRINGS_AND_ARRAYS} JSON strings, arrays and values (stsguard's bound on work per review)"
            ),
            fix: FEWER,
        });
    }
    Ok(())
}

/// Counts as [`count_nodes`] does, stopping past the bounds (no recursion past them either).
fn count_value(v: &serde_json::Value, depth: usize, n: &mut Nodes) {
    use serde_json::Value;
    if n.objects > MAX_OBJECTS || n.others > MAX_STRINGS_AND_ARRAYS {
        return;
    }
    match v {
        Value::Object(m) => {
            n.objects += 1;
            // Keys, and the commas between entries.
            n.others += 2 * m.len();
            for (k, v) in m {
                if depth == 1 && k == "managedFields" {
                    continue;
                }
                count_value(v, depth + 1, n);
            }
        }
        Value::Array(a) => {
            n.others += 1 + a.len();
            for v in a {
                count_value(v, depth + 1, n);
            }
        }
        Value::String(_) => n.others += 1,
        _ => {}
    }
}

fn containers(p: &PodSpec) -> usize {
    p.containers.len()
        + p.init_containers.as_ref().map_or(0, Vec::len)
        + p.ephemeral_containers.as_ref().map_or(0, Vec::len)
}

fn len<T>(v: &Option<Vec<T>>) -> usize {
    v.as_ref().map_or(0, Vec::len)
}

fn container_entries(c: &Container) -> usize {
    len(&c.env)
        + len(&c.env_from)
        + len(&c.ports)
        + len(&c.volume_mounts)
        + len(&c.volume_devices)
        + len(&c.args)
        + len(&c.command)
}

/// A pod's containers against [`MAX_CONTAINERS`], then its list entries against
/// [`MAX_TEMPLATE_ENTRIES`] (`extra`: entries counted outside the pod, e.g. claim templates).
/// Constant work for the first; at most [`MAX_CONTAINERS`] containers looked at for the second.
pub fn check_pod(pod: Option<&PodSpec>) -> Result<(), PastBound> {
    check_pod_with(pod, 0)
}

fn check_pod_with(pod: Option<&PodSpec>, extra: usize) -> Result<(), PastBound> {
    let n = pod.map_or(0, containers);
    if n > MAX_CONTAINERS {
        return Err(PastBound {
            what: format!(
                "the pod template has {n} containers, over stsguard's bound of {MAX_CONTAINERS}"
            ),
            fix: "fix: use at most 256 containers and init containers in one pod (docs/bounds.md)",
        });
    }
    let entries = extra
        + pod.map_or(0, |p| {
            let cs = p.containers.iter();
            let inits = p.init_containers.iter().flatten();
            let ephemeral = p.ephemeral_containers.iter().flatten().map(|e| {
                len(&e.env)
                    + len(&e.env_from)
                    + len(&e.ports)
                    + len(&e.volume_mounts)
                    + len(&e.volume_devices)
                    + len(&e.args)
                    + len(&e.command)
            });
            cs.chain(inits).map(container_entries).sum::<usize>()
                + ephemeral.sum::<usize>()
                + len(&p.volumes)
                + len(&p.tolerations)
                + len(&p.host_aliases)
                + len(&p.image_pull_secrets)
                + len(&p.topology_spread_constraints)
        });
    if entries > MAX_TEMPLATE_ENTRIES {
        return Err(PastBound {
            what: format!(
                "the pod template has {entries} env, port, mount, volume and other list entries, over stsguard's bound of {MAX_TEMPLATE_ENTRIES}"
            ),
            fix: FEWER,
        });
    }
    Ok(())
}

/// A StatefulSet's pod template and claim templates against [`MAX_CONTAINERS`] and
/// [`MAX_TEMPLATE_ENTRIES`]: bounded work whatever its size (a cached object may hold anything
/// the API server took).
pub fn check_statefulset(sts: &StatefulSet) -> Result<(), PastBound> {
    let spec = sts.spec.as_ref();
    let claims = spec.map_or(0, |s| len(&s.volume_claim_templates));
    check_pod_with(spec.and_then(|s| s.template.spec.as_ref()), claims)
}

/// What [`count_nodes`] counted, or ([`count_review`]) upper bounds on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Nodes {
    /// `{`
    pub objects: usize,
    /// Strings (keys and values), `[` and `,`.
    pub others: usize,
}

/// Counts the JSON objects (`{`) in `json` outside strings and outside the values of
/// `managedFields` keys, stopping once `stop` is reached.
pub fn count_objects(json: &[u8], stop: usize) -> usize {
    count_nodes(json, stop, usize::MAX).objects
}

/// The nesting depth at which the decoder passes over `managedFields`: the review (1), its
/// `request` (2), `object` or `oldObject` (3), their `metadata` (4).
const MANAGED_FIELDS_DEPTH: usize = 4;

/// Counts objects, and strings, arrays and commas, outside the values of `managedFields` keys
/// at the depth the decoder skips them ([`MANAGED_FIELDS_DEPTH`]; deeper ones, such as a pod
/// template's, are read into types and counted), stopping once either count passes its `stop`.
/// One pass: structure byte by byte, strings skipped with `memchr`. Not a validator: malformed
/// JSON gets some count and fails later in the parser.
pub fn count_nodes(json: &[u8], stop_objects: usize, stop_others: usize) -> Nodes {
    count_nodes_at(json, 0, stop_objects, stop_others)
}

/// [`count_nodes`] of JSON that sits at `depth` in a review.
fn count_nodes_at(json: &[u8], depth: usize, stop_objects: usize, stop_others: usize) -> Nodes {
    let mut n = Nodes::default();
    let mut i = 0;
    let mut depth = depth;
    // The span of the last string read outside a string, to recognise `"managedFields":`.
    let mut last_string: (usize, usize) = (0, 0);
    while i < json.len() && n.objects < stop_objects && n.others < stop_others {
        match json[i] {
            b'{' => {
                n.objects += 1;
                depth += 1;
                i += 1;
            }
            b'[' => {
                n.others += 1;
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b',' => {
                n.others += 1;
                i += 1;
            }
            b'"' => {
                n.others += 1;
                let end = string_end(json, i + 1);
                last_string = (i + 1, end);
                i = (end + 1).min(json.len());
            }
            b':' => {
                // Is the key just read the `managedFields` the decoder skips? Pass over its value.
                let (s, e) = last_string;
                i += 1;
                if depth == MANAGED_FIELDS_DEPTH
                    && e <= json.len()
                    && &json[s..e] == b"managedFields"
                {
                    i = value_end(json, i);
                }
                last_string = (0, 0);
            }
            _ => i += 1,
        }
    }
    n
}

/// The index of the closing quote of a string whose content starts at `i` (or `json.len()`).
fn string_end(json: &[u8], mut i: usize) -> usize {
    loop {
        match memchr::memchr2(b'"', b'\\', &json[i.min(json.len())..]) {
            None => return json.len(),
            Some(off) if json[i + off] == b'\\' => i += off + 2,
            Some(off) => return i + off,
        }
    }
}

/// The index just past the JSON value that starts (after white space) at `i`.
fn value_end(json: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < json.len() {
        match json[i] {
            b'"' => i = string_end(json, i + 1).saturating_add(1),
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                // Closing at depth 0 is the end of the enclosing object: not ours to pass.
                if depth == 0 {
                    return i;
                }
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return i;
                }
            }
            b',' if depth == 0 => return i,
            _ => i += 1,
        }
    }
    json.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_of_a_review_counts_its_share_of_the_review() {
        let object = br#"{"metadata":{"name":"a","managedFields":[{},{},{}]},"spec":{"template":{"metadata":{"managedFields":[{}]}}}}"#;
        let review = [
            br#"{"request":{"uid":"u","object":"#.as_slice(),
            object,
            br#"}}"#,
        ]
        .concat();
        let exact = |json: &[u8], depth| count_nodes_at(json, depth, usize::MAX, usize::MAX);
        // The object's own managedFields passed over, the template's counted, as in the review.
        assert_eq!(exact(object, REVIEW_OBJECT_DEPTH).objects, 6);
        // Counted as a review: its own managedFields counted, its template's passed over.
        assert_eq!(exact(object, 0).objects, 8);
        assert_eq!(exact(&review, 0).objects, 8);
        assert_eq!(
            exact(&review, 0).objects - exact(object, REVIEW_OBJECT_DEPTH).objects,
            2,
            "the review's own two objects"
        );
        // Past the quick count's reach (300 objects in its managedFields): the exact count, at
        // the object's depth, passes them over.
        let padded = format!(
            r#"{{"metadata":{{"name":"a","managedFields":[{}]}},"spec":{{"replicas":1}}}}"#,
            vec!["{}"; 300].join(",")
        );
        assert_eq!(count_review_object(padded.as_bytes()).objects, 3);
        assert_eq!(
            count_review(padded.as_bytes()).objects,
            303,
            "as a review: counted"
        );
    }

    #[test]
    fn counts_objects_outside_strings_and_managed_fields() {
        assert_eq!(count_objects(br#"{"a":{"b":"{{{"},"c":[{},{}]}"#, 100), 4);
        assert_eq!(
            count_nodes(br#"{"a":{"b":"{{{"},"c":[{},{}]}"#, 100, 100),
            Nodes {
                objects: 4,
                others: 7
            }
        );
        assert_eq!(count_objects(br#"{"a":"\"{\\","b":{}}"#, 100), 2);
        let with_mf = br#"{"request":{"object":{"metadata":{"managedFields":[{"f:x":{"f:y":{}}},{"a":"}"}],"name":"n"},"spec":{}}}}"#;
        assert_eq!(count_objects(with_mf, 100), 5);
        // A managedFields the decoder reads into types (a pod template's) is counted.
        let nested = br#"{"request":{"object":{"spec":{"template":{"metadata":{"managedFields":[{},{},{}]}}}}}}"#;
        assert_eq!(count_objects(nested, 100), 9);
        // A string that says managedFields but is a value, not a key: no skip.
        assert_eq!(count_objects(br#"{"k":"managedFields","x":{}}"#, 100), 2);
        // Stops early.
        assert_eq!(count_objects(&b"{}".repeat(1000), 10), 10);
        // Unterminated input: no panic.
        for s in [
            &b"{\"a"[..],
            b"{\"managedFields\":[{",
            b"\"\\",
            b"{\"managedFields\":",
        ] {
            let _ = count_objects(s, 100);
        }
    }

    /// Bodies whose strings hold the bytes that count (braces, quotes, commas, escapes), with a
    /// top-level managedFields, nested ones, and reviews at and around the lane's bound.
    fn tricky_bodies() -> Vec<Vec<u8>> {
        let mut out = vec![
            include_bytes!("../benches/argocd-controller-argo-cd.create.mutating.json").to_vec(),
            include_bytes!("../benches/mysql-k8s-website.create.mutating.json").to_vec(),
            br#"{"a":"\"{\\","b":{}}"#.to_vec(),
            br#"{"request":{"object":{"metadata":{"managedFields":[{"f:x":{"f:y":{}}},{"a":"}"}],"name":"n"},"spec":{}}}}"#.to_vec(),
            br#"{"k":"managedFields","x":{"s":"[[,,{{\"\"}}"}}"#.to_vec(),
            b"{\"a".to_vec(),
            b"\"\\".to_vec(),
            Vec::new(),
            // Past the bounds: the exact count decides, as before.
            format!(r#"{{"volumes":[{}{{}}]}}"#, "{},".repeat(MAX_OBJECTS)).into_bytes(),
            format!(r#"{{"args":[{}""]}}"#, "\"\",".repeat(MAX_STRINGS_AND_ARRAYS)).into_bytes(),
            format!(r#"{{"x":[{}0]}}"#, "0,".repeat(MAX_STRINGS_AND_ARRAYS)).into_bytes(),
        ];
        for n in [
            LANE_OBJECTS - 2,
            LANE_OBJECTS - 1,
            LANE_OBJECTS,
            LANE_OBJECTS + 1,
        ] {
            out.push(format!("{{\"a\":[{}]}}", vec!["{}"; n].join(",")).into_bytes());
            // The same objects, with as many braces hidden in a string.
            out.push(
                format!(
                    r#"{{"s":"{}","a":[{}]}}"#,
                    "{".repeat(n),
                    ["{}"; 8].join(",")
                )
                .into_bytes(),
            );
        }
        out
    }

    #[test]
    fn the_quick_count_is_never_below_the_exact_count_and_decides_the_same() {
        for body in tricky_bodies() {
            let exact = count_nodes(&body, usize::MAX, usize::MAX);
            let quick = upper_bound(&body, usize::MAX).unwrap_or_default();
            assert!(
                quick.objects >= exact.objects && quick.others >= exact.others,
                "{quick:?} < {exact:?} for {}",
                String::from_utf8_lossy(&body)
            );
            let counted = count_review(&body);
            assert_eq!(
                counted.objects > LANE_OBJECTS,
                exact.objects > LANE_OBJECTS,
                "lane of {}",
                String::from_utf8_lossy(&body)
            );
            assert_eq!(check_counts(counted), check_counts(exact));
        }
        // The quick count is used for a review with fewer `{` bytes than the lane's bound (the
        // mysql fixture has 251), the exact one where braces in a string or in managedFields
        // push the upper bound past it.
        let typical = include_bytes!("../benches/mysql-k8s-website.create.mutating.json");
        assert_eq!(
            Some(count_review(typical)),
            upper_bound(typical, LANE_OBJECTS)
        );
        let hidden = format!(r#"{{"s":"{}","a":{{}}}}"#, "{".repeat(LANE_OBJECTS));
        assert_eq!(count_review(hidden.as_bytes()).objects, 2);
    }

    proptest::proptest! {
        #[test]
        fn the_quick_count_is_never_below_the_exact_count_on_any_bytes(
            // Up to twice the lane's bound in `{` bytes, so both ways are taken.
            body in proptest::collection::vec(proptest::sample::select(
                b"{{{{}}[]\",:\\ amF".to_vec()), 0..2 * LANE_OBJECTS * 3),
        ) {
            let exact = count_nodes(&body, usize::MAX, usize::MAX);
            let quick = upper_bound(&body, usize::MAX).unwrap_or_default();
            proptest::prop_assert!(quick.objects >= exact.objects && quick.others >= exact.others);
            let counted = count_review(&body);
            proptest::prop_assert_eq!(counted.objects > LANE_OBJECTS, exact.objects > LANE_OBJECTS);
            proptest::prop_assert_eq!(check_counts(counted), check_counts(exact));
        }
    }

    #[test]
    fn real_reviews_are_far_below_the_bound() {
        let body = include_bytes!("../benches/argocd-controller-argo-cd.create.mutating.json");
        let n = count_objects(body, usize::MAX);
        assert!(n > 100 && n < MAX_OBJECTS / 4, "{n}");
        assert!(check_body(body).is_ok());
        let hostile = format!(r#"{{"volumes":[{}{{}}]}}"#, "{},".repeat(MAX_OBJECTS));
        assert!(
            check_body(hostile.as_bytes())
                .unwrap_err()
                .what
                .contains("JSON objects")
        );
        let strings = format!(
            r#"{{"args":[{}""]}}"#,
            "\"\",".repeat(MAX_STRINGS_AND_ARRAYS)
        );
        assert!(
            check_body(strings.as_bytes())
                .unwrap_err()
                .what
                .contains("strings, arrays")
        );
        let arrays = format!(r#"{{"x":[{}[]]}}"#, "[],".repeat(MAX_STRINGS_AND_ARRAYS));
        assert!(
            check_body(arrays.as_bytes())
                .unwrap_err()
                .what
                .contains("strings, arrays")
        );
        let numbers = format!(r#"{{"x":[{}0]}}"#, "0,".repeat(MAX_STRINGS_AND_ARRAYS));
        assert!(
            check_body(numbers.as_bytes())
                .unwrap_err()
                .what
                .contains("strings, arrays")
        );
        // The top-level managedFields, however large, is not counted.
        let mf = format!(
            r#"{{"request":{{"object":{{"metadata":{{"managedFields":[{}{{}}]}}}}}}}}"#,
            "{\"a\":[\"\"]},".repeat(50_000)
        );
        let n = count_nodes(mf.as_bytes(), usize::MAX, usize::MAX);
        assert_eq!(n.objects, 4);
        assert!(n.others < 10, "{n:?}");
    }
}
