//! Review bodies: the repository's fixture review, and hostile ones built from it (annotations,
//! role specs, many containers, a given size or kind, heavy and many-object reviews).

use super::*;

pub fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/admission/statefulset-CREATE.mutating.json")
}

pub fn base_review() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture_path()).expect("tests/fixtures review");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// The fixture review with these annotations on the StatefulSet.
pub fn review_with_annotations(pairs: &[(&str, &str)]) -> Bytes {
    let mut v = base_review();
    let anns = &mut v["request"]["object"]["metadata"]["annotations"];
    if !anns.is_object() {
        *anns = serde_json::json!({});
    }
    for (k, val) in pairs {
        anns[*k] = (*val).into();
    }
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// `p=*,a=0-65,a=66-131,…` (`star_first`) or `p=0-65,a=66-131,…,a=N-`, about `target` bytes,
/// the spans contiguous and within the 1,000,000 ordinal limit (narrower spans when many).
pub fn roles_spans(target: usize, star_first: bool) -> String {
    let n = (target / 14).max(1) as u32;
    let width = (990_000 / n).clamp(1, 66);
    let mut s = String::with_capacity(target + 32);
    let mut next;
    if star_first {
        s.push_str("p=*");
        next = 0;
    } else {
        let _ = write!(s, "p=0-{}", width - 1);
        next = width;
    }
    while s.len() < target && next + width < 999_000 {
        let _ = write!(s, ",a={}-{}", next, next + width - 1);
        next += width;
    }
    if !star_first {
        let _ = write!(s, ",a={next}-");
    }
    s
}

/// `r0=0,r1=1,…,rN=N-`: every entry a role of its own, about `target` bytes.
pub fn roles_distinct(target: usize) -> String {
    let mut s = String::with_capacity(target + 32);
    let mut i = 0u32;
    while s.len() < target && i < 999_000 {
        let _ = write!(s, "r{i}={i},");
        i += 1;
    }
    let _ = write!(s, "r{i}={i}-");
    s
}

/// The fixture review whose pod template has `n` minimal containers.
pub fn review_with_containers(n: usize) -> Bytes {
    let mut v = base_review();
    let containers: Vec<serde_json::Value> = (0..n)
        .map(|i| serde_json::json!({"name": format!("c{i}"), "image": "i"}))
        .collect();
    v["request"]["object"]["spec"]["template"]["spec"]["containers"] = containers.into();
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// The fixture review padded to `size` bytes with one long annotation.
pub fn review_of_size(size: usize) -> Bytes {
    let base = review_with_annotations(&[("stsguard.test/pad", "")]).len();
    let pad = "p".repeat(size.saturating_sub(base));
    let b = review_with_annotations(&[("stsguard.test/pad", &pad)]);
    debug_assert_eq!(b.len(), size.max(base));
    b
}

/// A small review of a kind stsguard does not handle, with the given `request.kind.kind`.
pub fn review_of_kind(kind: &str, uid: &str, operation: &str) -> Bytes {
    Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "example.com", "version": "v1", "kind": kind},
                "resource": {"group": "example.com", "version": "v1", "resource": "widgets"},
                "name": "w",
                "namespace": "default",
                "operation": operation,
                "userInfo": {"username": "u"},
                "object": {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
            }
        }))
        .unwrap(),
    )
}

/// A small deterministic PRNG (xorshift64*), for random label values.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn word(&mut self, len: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| A[(self.next() % A.len() as u64) as usize] as char)
            .collect()
    }
}

/// A pod template of `n` containers, each with a few environment variables and a mount: a
/// review of about 28 KB for n = 200 whose mutation patch (identity variables and the role mount
/// in every container) is large.
pub fn review_heavy(n: usize) -> Bytes {
    let mut v = base_review();
    let containers: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("c{i}"),
                "image": "registry.example/app:1",
                "env": [{"name": "A", "value": "1"}],
                "volumeMounts": [{"name": "data", "mountPath": "/d"}]
            })
        })
        .collect();
    v["request"]["object"]["spec"]["template"]["spec"]["containers"] = containers.into();
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

/// A review of about `size` bytes holding about `objects` JSON objects (`{}` in a field no rule
/// reads), just under stsguard's bounds of 4,096 objects.
pub fn review_many_objects(size: usize, objects: usize) -> Bytes {
    let mut v = base_review();
    let base = serde_json::to_vec(&v).unwrap().len();
    let empties: Vec<serde_json::Value> = (0..objects).map(|_| serde_json::json!({})).collect();
    v["request"]["object"]["status"]["padding"] = empties.into();
    let now = serde_json::to_vec(&v).unwrap().len();
    let pad = "p".repeat(size.saturating_sub(now + 40).max(1));
    let _ = base;
    v["request"]["object"]["metadata"]["annotations"]["stsguard.test/pad"] = pad.into();
    Bytes::from(serde_json::to_vec(&v).unwrap())
}
