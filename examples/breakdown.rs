//! Where the time of one review goes (a profiling aid; `cargo run --release --example breakdown`).
use std::time::Instant;

use k8s_openapi::api::apps::v1::StatefulSet;
use stsguard::policy::Policy;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn time<T>(name: &str, n: u32, mut f: impl FnMut() -> T) {
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    println!(
        "{name:40} {:8.1} us",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}

fn main() {
    let file = std::env::args()
        .nth(1)
        .unwrap_or("benches/mysql-k8s-website.create.mutating.json".into());
    let body = std::fs::read(file).unwrap();
    let n = 2000;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let obj = serde_json::to_string(&v["request"]["object"]).unwrap();
    time("floor: Value parse", n, || {
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()
    });
    time("floor: Value serialize", n, || {
        serde_json::to_vec(&v).unwrap()
    });
    time("skip parse (IgnoredAny)", n, || {
        serde_json::from_slice::<serde::de::IgnoredAny>(&body).unwrap()
    });
    time("typed StatefulSet parse", n, || {
        serde_json::from_str::<StatefulSet>(&obj).unwrap()
    });
    let mut nomf = v["request"]["object"].clone();
    nomf["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    let nomf = serde_json::to_string(&nomf).unwrap();
    println!(
        "object {} bytes, without managedFields {} bytes",
        obj.len(),
        nomf.len()
    );
    time("typed parse without managedFields", n, || {
        serde_json::from_str::<StatefulSet>(&nomf).unwrap()
    });
    let mut sts: StatefulSet = serde_json::from_str(&obj).unwrap();
    sts.metadata.managed_fields = None;
    let policy = Policy::default();
    time("clone", n, || sts.clone());
    time("mutate", n, || stsguard::mutate::mutate(&sts, &policy));
    let m = stsguard::mutate::mutate(&sts, &policy);
    time("patch::statefulset", n, || {
        stsguard::mutate::patch::statefulset(&sts, &m.object).unwrap()
    });
    let t0 = &sts.spec.as_ref().unwrap().template;
    let t1 = &m.object.spec.as_ref().unwrap().template;
    time("  to_value(template)", n, || {
        serde_json::to_value(t0).unwrap()
    });
    let (v0, v1) = (
        serde_json::to_value(t0).unwrap(),
        serde_json::to_value(t1).unwrap(),
    );
    time("  json_patch::diff", n, || json_patch::diff(&v0, &v1));
    let l = stsguard::validate::NoLookups("x".into());
    let r = stsguard::validate::Review {
        namespace: "ns",
        subject: stsguard::validate::Subject::Write {
            object: &sts,
            old: None,
        },
    };
    time("validate rules", n, || {
        stsguard::validate::validate(&r, &policy, &l)
    });
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Env<'a> {
        #[serde(borrow)]
        request: Req<'a>,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Req<'a> {
        uid: String,
        #[serde(borrow)]
        object: &'a serde_json::value::RawValue,
    }
    time("envelope with RawValue object", n, || {
        serde_json::from_slice::<Env>(&body)
            .unwrap()
            .request
            .uid
            .len()
    });
    let e: Env = serde_json::from_slice(&body).unwrap();
    time("typed parse of the RawValue", n, || {
        serde_json::from_str::<StatefulSet>(e.request.object.get()).unwrap()
    });
    time("typed parse skipping managedFields", n, || {
        stsguard::admission::statefulset_from_str(e.request.object.get()).unwrap()
    });
    time("mutate + patch", n, || {
        let m = stsguard::mutate::mutate(&sts, &policy);
        stsguard::mutate::patch::statefulset(&sts, &m.object).unwrap()
    });
    let patch = stsguard::mutate::patch::statefulset(&sts, &m.object).unwrap();
    let resp = kube::core::admission::AdmissionResponse::invalid("x");
    time("encode", n, || {
        stsguard::admission::encode(&resp, Some(&patch))
    });
    time("answer mutate", n, || {
        stsguard::admission::answer(stsguard::admission::Endpoint::Mutate, &body, &policy, &l)
            .unwrap()
    });
    time("answer validate", n, || {
        stsguard::admission::answer(stsguard::admission::Endpoint::Validate, &body, &policy, &l)
            .unwrap()
    });
}
