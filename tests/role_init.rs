//! Issue 4: the built `stsguard role-init` binary as a process, against a temp dir laid out like
//! a mounted ConfigMap (keys are symlinks into a `..data` directory), for ordinals 0-3 of a
//! MySQL-like primary/replica set; and its failures: exit code and one clear line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// kubelet's ConfigMap volume layout.
fn configmap(dir: &Path, files: &[(&str, &str)]) {
    let ts = "..2026_11_22_05_00_00.000000001";
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
    c.output().unwrap()
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
                "STS_ROLE={role}\nSTS_ORDINAL={ordinal}\nSTS_SERVER_ID={}\nSTS_PRIMARY_FQDN=mysql-0.mysql.db.svc.cluster.local\n",
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
