//! The built `stsguard role-init` binary as a process, against a temp dir laid out like a mounted
//! ConfigMap (keys are symlinks into a `..data` directory), for ordinals 0-3 of a MySQL-like
//! primary/replica set; its failures: exit code and one clear line; and its hardening: keys that
//! lead outside the ConfigMap's data directory or to anything but a regular file are refused, the
//! input is bounded at 1 MiB and the substituted output at 8 MiB, and a refusal writes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The timestamped data directory of [`configmap`]; `..data` leads to it.
const TS: &str = "..2026_11_22_05_00_00.000000001";

/// kubelet's ConfigMap volume layout.
fn configmap(dir: &Path, files: &[(&str, &str)]) {
    let ts = TS;
    std::fs::create_dir_all(dir.join(ts)).unwrap();
    for (k, v) in files {
        std::fs::write(dir.join(ts).join(k), v).unwrap();
        std::os::unix::fs::symlink(format!("..data/{k}"), dir.join(k)).unwrap();
    }
    std::os::unix::fs::symlink(ts, dir.join("..data")).unwrap();
}

const PRIMARY: &str = "[mysqld]\nlog-bin\n";
const REPLICA: &str = "[mysqld]\nsuper-read-only\nreplicate-from={{primary_fqdn}}\n";
const COMMON: &str = "[mysqld]\nserver-id={{server_id}}\n# {{role}} {{ordinal}}\n";

fn role_init(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stsguard"));
    c.arg("role-init").args(args).env_clear();
    for (k, v) in env {
        c.env(k, v);
    }
    // A run that blocks (say, opening a FIFO) fails the test instead of hanging it.
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("role-init {args:?} did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn read_dir(p: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect()
}

struct Setup {
    _tmp: tempfile::TempDir,
    cfg: PathBuf,
    root: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    configmap(
        &cfg,
        &[
            ("primary.cnf", PRIMARY),
            ("replica.cnf", REPLICA),
            ("common.cnf", COMMON),
        ],
    );
    Setup {
        root: tmp.path().to_path_buf(),
        cfg,
        _tmp: tmp,
    }
}

fn args<'a>(out: &'a str, cfg: &'a str) -> Vec<&'a str> {
    vec![
        "--roles",
        "primary=0,replica=*",
        "--out",
        out,
        "--config-dir",
        cfg,
        "--server-id-base",
        "100",
    ]
}

#[test]
fn mysql_like_ordinals_0_to_3() {
    let s = setup();
    for ordinal in 0..4u32 {
        let out = s.root.join(format!("out{ordinal}"));
        std::fs::create_dir(&out).unwrap();
        let ord = ordinal.to_string();
        let env = [
            ("POD_ORDINAL", ord.as_str()),
            ("STATEFULSET_NAME", "mysql"),
            ("STATEFULSET_SERVICE", "mysql"),
            ("POD_NAMESPACE", "db"),
        ];
        let o = role_init(&env, &args(out.to_str().unwrap(), s.cfg.to_str().unwrap()));
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let files = read_dir(&out);
        let role = if ordinal == 0 { "primary" } else { "replica" };
        let mut names: Vec<&str> = files.keys().map(String::as_str).collect();
        names.sort();
        let mut want = vec![
            "common.cnf",
            "ordinal",
            "role",
            "role.env",
            if ordinal == 0 {
                "primary.cnf"
            } else {
                "replica.cnf"
            },
        ];
        want.sort();
        assert_eq!(
            names, want,
            "ordinal {ordinal}: no temp files, no dot entries, only this role's files"
        );
        assert_eq!(files["role"], format!("{role}\n"));
        assert_eq!(files["ordinal"], format!("{ordinal}\n"));
        assert_eq!(
            files["role.env"],
            format!(
                "STS_ROLE='{role}'\nSTS_ORDINAL='{ordinal}'\nSTS_SERVER_ID='{}'\nSTS_PRIMARY_FQDN='mysql-0.mysql.db.svc.cluster.local'\n",
                100 + ordinal
            )
        );
        assert_eq!(
            files["common.cnf"],
            format!(
                "[mysqld]\nserver-id={}\n# {role} {ordinal}\n",
                100 + ordinal
            )
        );
        if ordinal == 0 {
            assert_eq!(files["primary.cnf"], PRIMARY);
        } else {
            assert_eq!(
                files["replica.cnf"],
                "[mysqld]\nsuper-read-only\nreplicate-from=mysql-0.mysql.db.svc.cluster.local\n"
            );
        }
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(&format!("ordinal {ordinal} is {role}"))
        );
    }
}

#[test]
fn ordinal_from_the_hostname_and_a_restart_overwrites() {
    let s = setup();
    let out = s.root.join("out");
    std::fs::create_dir(&out).unwrap();
    let a = args(out.to_str().unwrap(), s.cfg.to_str().unwrap());
    let o = role_init(&[("HOSTNAME", "mysql-2")], &a);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(read_dir(&out)["role"], "replica\n");
    assert_eq!(read_dir(&out)["ordinal"], "2\n");
    // A restarted init container runs again over the same emptyDir.
    let o = role_init(&[("HOSTNAME", "mysql-2")], &a);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(read_dir(&out).len(), 5);
}

fn fails(o: &Output, needle: &str) {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout {} stderr {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("stsguard role-init: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in {err}");
}

#[test]
fn failures_exit_non_zero_with_one_clear_line() {
    let s = setup();
    let out = s.root.join("out");
    std::fs::create_dir(&out).unwrap();
    let (o, c) = (out.to_str().unwrap(), s.cfg.to_str().unwrap());

    // No ordinal: no POD_ORDINAL and a hostname without -N.
    fails(
        &role_init(&[("HOSTNAME", "mysql")], &args(o, c)),
        "cannot tell this pod's ordinal",
    );
    fails(
        &role_init(&[("POD_ORDINAL", "two")], &args(o, c)),
        "POD_ORDINAL=\"two\"",
    );
    // Bad spec: the bad part is quoted.
    let mut bad = args(o, c);
    bad[1] = "primary=0,replica=2-";
    fails(
        &role_init(&[("POD_ORDINAL", "0")], &bad),
        "ordinal 1 has no role",
    );
    // Missing config dir.
    let missing = s.root.join("nope");
    fails(
        &role_init(&[("POD_ORDINAL", "0")], &args(o, missing.to_str().unwrap())),
        "cannot read --config-dir",
    );
    // Output dir missing.
    fails(
        &role_init(
            &[("POD_ORDINAL", "0")],
            &args(s.root.join("absent").to_str().unwrap(), c),
        ),
        "is not a directory",
    );
    // Unwritable output dir (as root, permission bits do not stop writes: use /proc/1).
    let ro = s.root.join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let ro_path = if std::fs::write(ro.join("probe"), "x").is_ok() {
        PathBuf::from("/proc/1")
    } else {
        ro.clone()
    };
    fails(
        &role_init(&[("POD_ORDINAL", "0")], &args(ro_path.to_str().unwrap(), c)),
        "cannot write",
    );
    // Nothing half-written was left in the good output dir by the failures.
    assert!(read_dir(&out).is_empty());
}

const MYSQL_ENV: [(&str, &str); 4] = [
    ("POD_ORDINAL", "0"),
    ("STATEFULSET_NAME", "mysql"),
    ("STATEFULSET_SERVICE", "mysql"),
    ("POD_NAMESPACE", "db"),
];

/// Runs ordinal `ordinal` of the MySQL-like set over `cfg` into a fresh `out<n>` under `root`.
fn run_ordinal(root: &Path, cfg: &Path, ordinal: &str, extra: &[&str]) -> (Output, PathBuf) {
    let out = tempfile::tempdir_in(root).unwrap().keep();
    let mut env = MYSQL_ENV;
    env[0].1 = ordinal;
    let mut a = args(out.to_str().unwrap(), cfg.to_str().unwrap());
    a.extend_from_slice(extra);
    (role_init(&env, &a), out)
}

/// The key `key` of the `setup()` ConfigMap made a symlink to `target`.
fn add_link(s: &Setup, key: &str, target: &str) {
    std::os::unix::fs::symlink(target, s.cfg.join(key)).unwrap();
}

/// Every pod of the set refuses the ConfigMap, naming `key` and `needle`, and writes nothing.
fn refused_by_every_pod(s: &Setup, key: &str, needle: &str) {
    for ordinal in ["0", "1"] {
        let (o, out) = run_ordinal(&s.root, &s.cfg, ordinal, &[]);
        fails(&o, &format!("config key \"{key}\": "));
        fails(&o, needle);
        fails(&o, "refusing it");
        assert!(read_dir(&out).is_empty(), "ordinal {ordinal} wrote nothing");
    }
}

#[test]
fn a_key_leading_to_etc_passwd_is_refused() {
    let s = setup();
    add_link(&s, "evil.cnf", "/etc/passwd");
    refused_by_every_pod(&s, "evil.cnf", "leads to /etc/passwd, outside");
    // Another role's key is checked too: the primary does not copy it, and still refuses it.
    let s = setup();
    add_link(&s, "replica.passwd", "/etc/passwd");
    refused_by_every_pod(&s, "replica.passwd", "/etc/passwd");
}

#[test]
fn a_key_leading_out_of_the_config_dir_through_dotdot_is_refused() {
    let s = setup();
    std::fs::write(s.root.join("outside.cnf"), "secret {{role}}\n").unwrap();
    add_link(&s, "up.cnf", "../outside.cnf");
    refused_by_every_pod(&s, "up.cnf", "outside.cnf, outside");
    // Through `..data` and back up: the same file, the same refusal.
    let s = setup();
    std::fs::write(s.root.join("outside.cnf"), "secret\n").unwrap();
    add_link(&s, "up.cnf", "..data/../../outside.cnf");
    refused_by_every_pod(&s, "up.cnf", "outside.cnf, outside");
    // Into an older data directory beside the current one: not the ConfigMap as mounted now.
    let s = setup();
    let old = s.cfg.join("..2026_11_21_05_00_00.000000001");
    std::fs::create_dir(&old).unwrap();
    std::fs::write(old.join("stale.cnf"), "stale\n").unwrap();
    add_link(&s, "stale.cnf", "..2026_11_21_05_00_00.000000001/stale.cnf");
    refused_by_every_pod(&s, "stale.cnf", "outside");
}

#[test]
fn a_key_leading_to_a_directory_is_refused() {
    let s = setup();
    std::fs::create_dir(s.cfg.join(TS).join("conf.d")).unwrap();
    std::fs::write(s.cfg.join(TS).join("conf.d").join("x.cnf"), "x").unwrap();
    add_link(&s, "conf.d", "..data/conf.d");
    refused_by_every_pod(&s, "conf.d", "conf.d, a directory");
    let s = setup();
    add_link(&s, "etc", "/etc");
    refused_by_every_pod(&s, "etc", "leads to /etc, outside");
}

#[test]
fn a_fifo_a_device_or_a_dangling_key_is_refused_without_blocking() {
    let s = setup();
    let fifo = s.cfg.join(TS).join("pipe.cnf");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    add_link(&s, "pipe.cnf", "..data/pipe.cnf");
    // Opening the FIFO would block the run (no writer): the runner's deadline catches that.
    refused_by_every_pod(&s, "pipe.cnf", "a FIFO");

    let s = setup();
    add_link(&s, "null.cnf", "/dev/null");
    refused_by_every_pod(&s, "null.cnf", "leads to /dev/null, outside");

    let s = setup();
    add_link(&s, "gone.cnf", "..data/gone.cnf");
    refused_by_every_pod(&s, "gone.cnf", "does not resolve");
}

#[test]
fn the_data_link_must_lead_inside_the_config_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("common.cnf"), "x").unwrap();
    std::os::unix::fs::symlink(&elsewhere, cfg.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/common.cnf", cfg.join("common.cnf")).unwrap();
    let (o, out) = run_ordinal(tmp.path(), &cfg, "0", &[]);
    fails(&o, "..data leads to");
    fails(&o, "not a directory inside the config dir");
    assert!(read_dir(&out).is_empty());
}

#[test]
fn kubelet_layout_during_an_update_is_read_and_hidden_entries_are_not_copied() {
    let s = setup();
    // What kubelet leaves around while it swaps in new data: the next timestamped directory and
    // `..data_tmp`. Neither is a key.
    let next = s.cfg.join("..2026_11_30_05_00_00.000000002");
    std::fs::create_dir(&next).unwrap();
    std::fs::write(next.join("common.cnf"), "next\n").unwrap();
    std::os::unix::fs::symlink("..2026_11_30_05_00_00.000000002", s.cfg.join("..data_tmp"))
        .unwrap();
    let (o, out) = run_ordinal(&s.root, &s.cfg, "1", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let files = read_dir(&out);
    assert_eq!(
        files.keys().map(String::as_str).collect::<Vec<_>>(),
        ["common.cnf", "ordinal", "replica.cnf", "role", "role.env"]
    );
    // The current data, not the next.
    assert_eq!(
        files["common.cnf"],
        "[mysqld]\nserver-id=101\n# replica 1\n"
    );
}

#[test]
fn a_plain_directory_is_read_and_its_links_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    std::fs::write(cfg.join("common.cnf"), COMMON).unwrap();
    std::fs::write(cfg.join("real-replica"), REPLICA).unwrap();
    // A link to a file beside it is the same directory's file.
    std::os::unix::fs::symlink("real-replica", cfg.join("replica.cnf")).unwrap();
    let (o, out) = run_ordinal(tmp.path(), &cfg, "2", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let files = read_dir(&out);
    assert_eq!(
        files["replica.cnf"],
        "[mysqld]\nsuper-read-only\nreplicate-from=mysql-0.mysql.db.svc.cluster.local\n"
    );
    assert_eq!(files["real-replica"], files["replica.cnf"]);
    // A sub-directory is not a key; a link out is refused.
    std::fs::create_dir(cfg.join("sub")).unwrap();
    let (o, _) = run_ordinal(tmp.path(), &cfg, "2", &[]);
    fails(&o, "config key \"sub\": ");
    fails(&o, "a directory");
    std::fs::remove_dir(cfg.join("sub")).unwrap();
    std::fs::write(tmp.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink("../secret", cfg.join("leak")).unwrap();
    let (o, out) = run_ordinal(tmp.path(), &cfg, "2", &[]);
    fails(&o, "config key \"leak\": ");
    fails(&o, "secret, outside");
    assert!(read_dir(&out).is_empty());
}

const MIB: usize = 1024 * 1024;

/// A kubelet-layout ConfigMap of the three files with these sizes (filler text).
fn sized(common: usize, primary: usize, replica: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    let (c, p, r) = ("c".repeat(common), "p".repeat(primary), "r".repeat(replica));
    configmap(
        &cfg,
        &[("common.cnf", &c), ("primary.cnf", &p), ("replica.cnf", &r)],
    );
    Setup {
        root: tmp.path().to_path_buf(),
        cfg,
        _tmp: tmp,
    }
}

#[test]
fn a_configmap_of_1_mib_is_read_and_one_byte_more_is_refused() {
    // Exactly Kubernetes' limit, over three keys: every pod reads it.
    let s = sized(MIB / 2, MIB / 2 - 100, 100);
    for ordinal in ["0", "1"] {
        let (o, out) = run_ordinal(&s.root, &s.cfg, ordinal, &[]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let files = read_dir(&out);
        assert_eq!(files["common.cnf"].len(), MIB / 2);
    }
    // One byte more in the replica's file: the primary refuses the ConfigMap too (the whole
    // ConfigMap is bounded, not only what one role reads), and writes nothing.
    let s = sized(MIB / 2, MIB / 2 - 100, 101);
    for ordinal in ["0", "1"] {
        let (o, out) = run_ordinal(&s.root, &s.cfg, ordinal, &[]);
        fails(&o, "hold 1048577 bytes, over 1048576 (1 MiB");
        assert!(read_dir(&out).is_empty());
    }
    // One file of 1 MiB + 1 byte.
    let s = sized(MIB + 1, 0, 0);
    let (o, out) = run_ordinal(&s.root, &s.cfg, "1", &[]);
    fails(&o, "hold 1048577 bytes");
    assert!(read_dir(&out).is_empty());
}

#[test]
fn placeholder_heavy_output_is_bounded_at_8_mib() {
    // 65536 `{{primary_fqdn}}` = 1 MiB in; with a 128-byte FQDN, exactly 8 MiB out.
    let domain_for = |fqdn_len: usize| "d".repeat(fqdn_len - "mysql-0.mysql.db.svc.".len());
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    configmap(&cfg, &[("common.cnf", &"{{primary_fqdn}}".repeat(65536))]);
    let d128 = domain_for(128);
    let (o, out) = run_ordinal(tmp.path(), &cfg, "1", &["--cluster-domain", &d128]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let written = std::fs::read(out.join("common.cnf")).unwrap();
    assert_eq!(written.len(), 8 * MIB);
    let fqdn = format!("mysql-0.mysql.db.svc.{d128}");
    assert!(written.chunks(128).all(|c| c == fqdn.as_bytes()));
    std::fs::remove_dir_all(&out).unwrap();

    // One byte more per placeholder: 8 MiB + 64 KiB. Refused, naming the key, nothing written.
    let d129 = domain_for(129);
    let (o, out) = run_ordinal(tmp.path(), &cfg, "1", &["--cluster-domain", &d129]);
    fails(&o, "config key \"common.cnf\": ");
    fails(&o, "over 8388608 bytes (8 MiB)");
    fails(&o, "{{primary_fqdn}} is 129 bytes");
    assert!(read_dir(&out).is_empty());

    // The bound is on all files together: two files of 512 KiB in, 4 MiB out each at 128 bytes
    // per placeholder, are at the bound; at 129 bytes each file alone is under it, both are not.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir(&cfg).unwrap();
    let half = "{{primary_fqdn}}".repeat(32768);
    configmap(&cfg, &[("a.cnf", &half), ("b.cnf", &half)]);
    let (o, out) = run_ordinal(tmp.path(), &cfg, "1", &["--cluster-domain", &d128]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::metadata(out.join("b.cnf")).unwrap().len(), 4 << 20);
    let (o, out) = run_ordinal(tmp.path(), &cfg, "1", &["--cluster-domain", &d129]);
    fails(&o, "config key \"b.cnf\": ");
    fails(&o, "over 8388608 bytes");
    assert!(read_dir(&out).is_empty(), "a.cnf was not written either");
}

#[test]
fn binary_files_are_copied_as_they_are() {
    let s = setup();
    let bin: &[u8] = b"\xff\xfe{{role}}\x00{{ordinal}}";
    std::fs::write(s.cfg.join(TS).join("blob.bin"), bin).unwrap();
    add_link(&s, "blob.bin", "..data/blob.bin");
    let (o, out) = run_ordinal(&s.root, &s.cfg, "0", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(out.join("blob.bin")).unwrap(), bin);
    assert_eq!(
        std::fs::read_to_string(out.join("common.cnf")).unwrap(),
        "[mysqld]\nserver-id=100\n# primary 0\n"
    );
}

#[test]
fn a_left_over_temp_link_is_replaced_not_written_through() {
    let s = setup();
    let out = s.root.join("out");
    std::fs::create_dir(&out).unwrap();
    let victim = s.root.join("victim");
    std::fs::write(&victim, "keep\n").unwrap();
    std::os::unix::fs::symlink(&victim, out.join(".common.cnf.stsguard-tmp")).unwrap();
    let a = args(out.to_str().unwrap(), s.cfg.to_str().unwrap());
    let o = role_init(&MYSQL_ENV, &a);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep\n");
    let files = read_dir(&out);
    assert_eq!(
        files["common.cnf"],
        "[mysqld]\nserver-id=100\n# primary 0\n"
    );
    assert!(!out.join(".common.cnf.stsguard-tmp").exists());
}

/// A value with a quote, a newline, `$(...)`, backticks and `;` (here a service name, which a
/// pod's environment may carry as anything): sourcing `role.env` sets the variable to exactly
/// that value and runs nothing.
#[test]
fn role_env_values_are_quoted_so_that_sourcing_runs_nothing() {
    let s = setup();
    let out = s.root.join("out");
    std::fs::create_dir(&out).unwrap();
    let marker = s.root.join("ran");
    let evil = format!(
        "x';touch {m}1;'$(touch {m}2)`touch {m}3`;touch {m}4\nSTS_ROLE=evil\ntouch {m}5 \\",
        m = marker.display()
    );
    let env = [
        ("POD_ORDINAL", "1"),
        ("STATEFULSET_NAME", "mysql"),
        ("STATEFULSET_SERVICE", evil.as_str()),
        ("POD_NAMESPACE", "db"),
    ];
    let o = role_init(&env, &args(out.to_str().unwrap(), s.cfg.to_str().unwrap()));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let script = format!(
        ". {}/role.env && printf '%s|%s' \"$STS_ROLE\" \"$STS_PRIMARY_FQDN\"",
        out.display()
    );
    let sourced = Command::new("sh").arg("-c").arg(&script).output().unwrap();
    assert!(sourced.status.success(), "{sourced:?}");
    assert_eq!(
        String::from_utf8_lossy(&sourced.stdout),
        format!("replica|mysql-0.{evil}.db.svc.cluster.local")
    );
    for i in 1..=5 {
        let m = format!("{}{i}", marker.display());
        assert!(!Path::new(&m).exists(), "sourcing role.env ran `touch {m}`");
    }
}

/// A key named as one of role-init's own files would be overwritten, and a key `role` (written
/// first) would say "complete" before the rest is written: refused, naming the key and the fix.
#[test]
fn a_configmap_key_named_as_a_file_of_role_init_is_refused() {
    for own in ["role", "ordinal", "role.env"] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("config");
        std::fs::create_dir(&cfg).unwrap();
        configmap(&cfg, &[("common.cnf", COMMON), (own, "primary\n")]);
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let o = role_init(
            &MYSQL_ENV,
            &args(out.to_str().unwrap(), cfg.to_str().unwrap()),
        );
        fails(
            &o,
            &format!("config key \"{own}\": role-init writes {own} itself"),
        );
        fails(&o, "rename the key");
        assert!(read_dir(&out).is_empty(), "{own}: nothing written");
    }
}

/// Past the bound on keys (1,024) role-init refuses the ConfigMap before reading a file; at the
/// bound it writes every key.
#[test]
fn a_configmap_with_more_keys_than_the_bound_is_refused() {
    for (n, ok) in [(1024usize, true), (1025, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tmp.path().join("config");
        std::fs::create_dir(&cfg).unwrap();
        let names: Vec<String> = (0..n).map(|i| format!("k{i:05}.conf")).collect();
        let files: Vec<(&str, &str)> = names.iter().map(|k| (k.as_str(), "x\n")).collect();
        configmap(&cfg, &files);
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let o = role_init(
            &MYSQL_ENV,
            &args(out.to_str().unwrap(), cfg.to_str().unwrap()),
        );
        if ok {
            assert_eq!(
                o.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(
                read_dir(&out).len(),
                n + 3,
                "every key, role, ordinal, role.env"
            );
        } else {
            fails(&o, "holds more than 1024 keys (stsguard's bound");
            assert!(read_dir(&out).is_empty(), "nothing written");
        }
    }
}
