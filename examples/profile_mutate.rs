//! Runs /mutate's review path in a loop, for a profiler (valgrind --tool=callgrind), with the
//! server's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let file = std::env::args()
        .nth(1)
        .unwrap_or("benches/mysql-k8s-website.create.mutating.json".into());
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let body = std::fs::read(file).unwrap();
    let policy = stsguard::policy::Policy::default();
    let l = stsguard::validate::NoLookups("x".into());
    for _ in 0..n {
        std::hint::black_box(
            stsguard::admission::answer(stsguard::admission::Endpoint::Mutate, &body, &policy, &l)
                .unwrap(),
        );
    }
}
