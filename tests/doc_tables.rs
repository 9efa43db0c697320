//! The reference pages' tables are the code's: the mutation warning ids of `docs/check.md` are
//! `WarningId::ALL`, and the quorum signal table of `docs/quorum.md` names, per system, the images,
//! programs and evidence of `SIGNALS`.

use std::collections::BTreeSet;

use stsguard::mutate::WarningId;
use stsguard::validate::quorum::{Ev, Key, SIGNALS};

fn repo(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The rows of the Markdown table whose header row starts with `header`, as trimmed cells.
fn table(doc: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table headed {header:?}");
    lines
        .skip(1) // the |---| row
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// The backticked words of a cell: `` `etcd`, `cp-kafka` `` → etcd, cp-kafka.
fn ticked(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every variant, so that a new one fails to compile here until it is listed in `ALL`.
fn in_all(w: WarningId) -> bool {
    match w {
        WarningId::AnnotationInvalid
        | WarningId::NoSpec
        | WarningId::NoServiceName
        | WarningId::EnvKept
        | WarningId::AntiAffinityKept
        | WarningId::AntiAffinityEmptySelector
        | WarningId::RolesInvalid
        | WarningId::VolumeKept
        | WarningId::MountKept
        | WarningId::PodLabelKept
        | WarningId::PodNoRole => WarningId::ALL.contains(&w),
    }
}

#[test]
fn the_check_page_lists_exactly_the_mutation_warning_ids() {
    assert!(WarningId::ALL.into_iter().all(in_all));
    let rows = table(&repo("docs/check.md"), "| id | the mutation");
    let listed: Vec<String> = rows
        .iter()
        .map(|r| r[0].trim_matches('`').to_string())
        .collect();
    let ids: BTreeSet<String> = WarningId::ALL
        .iter()
        .map(|w| w.as_str().to_string())
        .collect();
    assert_eq!(listed.len(), ids.len(), "each id listed once: {listed:?}");
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), ids);
}

fn names(evs: &[Ev]) -> Vec<String> {
    evs.iter()
        .filter_map(|e| match e.key {
            Key::Identity => None,
            Key::Flag(n) | Key::Env(n) | Key::Word(n) => Some(n.to_string()),
            // `server.#` is written `server.N` on the page.
            Key::Setting(n) => Some(n.replace('#', "N")),
            // As the messages show it: `storage "raft"`.
            Key::Pair(a, b) => Some(format!("{a} \"{b}\"")),
        })
        .collect()
}

#[test]
fn the_quorum_page_has_one_row_per_signal_with_its_images_programs_and_evidence() {
    let rows = table(&repo("docs/quorum.md"), "| system |");
    assert_eq!(rows.len(), SIGNALS.len(), "one row per system");
    for s in SIGNALS {
        let row = rows
            .iter()
            .find(|r| r[0].split_whitespace().next() == Some(s.system))
            .unwrap_or_else(|| panic!("no row for {}", s.system));
        let (images, programs) = row[1]
            .split_once(" / ")
            .unwrap_or_else(|| panic!("{}: `images / programs`: {:?}", s.system, row[1]));
        let want = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(ticked(images), want(s.images), "{}: images", s.system);
        assert_eq!(ticked(programs), want(s.programs), "{}: programs", s.system);
        let evidence = &row[2];
        for n in s.requires.iter().flat_map(|g| names(g)) {
            assert!(
                evidence.contains(&n),
                "{}: evidence {n:?} not on the page",
                s.system
            );
        }
        for n in names(s.unless) {
            assert!(
                evidence.contains(&n),
                "{}: exclusion {n:?} not on the page",
                s.system
            );
        }
        assert_eq!(
            evidence.contains("`quorum-scale-down` only"),
            !s.odd,
            "{}: whether quorum-odd applies",
            s.system
        );
    }
}

#[test]
fn the_readmes_check_example_is_what_check_prints() {
    let readme = repo("README.md");
    let start = readme
        .find("$ stsguard check -f mysql-k8s-website.yaml\n")
        .expect("the README's check example");
    let block = &readme[start..];
    let block = &block[block.find('\n').unwrap() + 1..];
    let shown = &block[..block.find("```").expect("the example's end")];
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stsguard"))
        .args(["check", "-f", "mysql-k8s-website.yaml"])
        .current_dir(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/statefulsets"),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), shown);
}
