//! `stsguard role-init`: the role-selection init container. Finds the pod's ordinal, picks its
//! role, and writes `role`, `ordinal`, `role.env` and the role's configuration files into the
//! shared emptyDir. Every write is atomic (temp file + rename): a restarted init container never
//! leaves half a file, and `role` is written last, after one `syncfs` of the output directory's
//! file system (not an fsync per file), so its presence means the rest is complete. A ConfigMap
//! key named as one of stsguard's own files (`role`, `ordinal`, `role.env`) is refused. `role.env`
//! is meant to be sourced by a shell: each value is single-quoted, so no value (a quote, a
//! newline, `$(...)`, `;`) can end its quotes.
//!
//! **What it reads.** `--config-dir` is a ConfigMap volume as kubelet lays it out: every key is a
//! symlink `key -> ..data/key`, and `..data` is a symlink to a timestamped directory
//! (`..2026_11_30_05_00_00.000000001`) beside it, swapped atomically when the ConfigMap changes.
//! A key is read only when it resolves (every symlink followed) to a regular file directly inside
//! the directory `..data` leads to, and `..data` must lead to a directory directly inside the
//! config dir. Without `..data` (a plain directory) a key must resolve to a regular file directly
//! inside the config dir. Anything else (a symlink to `/etc/passwd` or `../../x`, to a directory,
//! a FIFO, a device, a dangling link) is refused, and role-init **fails** (exit 1, one line naming
//! the key and where it leads) rather than skipping it: a silently missing configuration file
//! would start the workload with its defaults, while a failing init container shows in
//! `kubectl get pods` and its message says what to fix. Every key is checked, this role's or not,
//! so that all pods of the set fail alike. Entries whose names start with `..` (kubelet's own;
//! Kubernetes refuses such keys) are never copied.
//!
//! **Bounds.** The keys' files may total at most [`MAX_CONFIG_BYTES`] (1 MiB, Kubernetes' limit on
//! a ConfigMap's data); past it role-init fails. Substitution is one pass over each file: each `{`
//! is looked at once and the substituted values are not scanned again, so the work is linear in
//! the input plus the output. The output is counted before anything is written: past
//! [`MAX_OUTPUT_BYTES`] in all (8 MiB; a 1 MiB file of `{{primary_fqdn}}` grows by the FQDN's
//! length per 16 bytes) role-init fails and writes nothing. Each file is streamed into its temp
//! file, so memory holds the inputs (at most 1 MiB) and one write buffer. Measured time and memory,
//! and the init container's resources that follow: `docs/measurements/role-init-resources.md`.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::k8s::labels::ordinal_from_name;
use crate::k8s::roles::RoleSpec;

/// The most the ConfigMap's files may hold together: Kubernetes' limit on a ConfigMap's data
/// (`data` and `binaryData` values together, 1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The most role-init writes from the ConfigMap's files, in all, after substitution (8 MiB).
pub const MAX_OUTPUT_BYTES: u64 = 8 * 1024 * 1024;

/// The most keys the ConfigMap may hold. Kubernetes sets no number (only 1 MiB of data, which
/// fits ~100,000 one-byte keys); real role configurations have a handful of files. Each key is a
/// file role-init creates and renames (measured: docs/bounds.md), and every key is resolved and
/// checked, so the count bounds role-init's time; past it role-init fails and writes nothing.
pub const MAX_CONFIG_KEYS: usize = 1024;

/// The files role-init writes itself: a ConfigMap key of one of these names is refused (the
/// key would be overwritten, and a key `role` written first would say "complete" too early).
pub const OWN_FILES: [&str; 3] = ["role", "ordinal", "role.env"];

/// kubelet's link, in a ConfigMap volume, to the directory that holds the current data.
const DATA_LINK: &str = "..data";

/// The write buffer of each output file.
const WRITE_BUFFER: usize = 64 * 1024;

/// The inputs of role-init.
#[derive(Clone, Debug)]
pub struct Args {
    pub roles: String,
    pub out: PathBuf,
    pub config_dir: Option<PathBuf>,
    pub server_id_base: u64,
    pub cluster_domain: String,
}

/// What role-init decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub role: String,
    pub ordinal: u32,
    pub server_id: u64,
    pub primary_fqdn: String,
}

/// The environment role-init reads (the mutation injects it).
pub fn env_from_process() -> BTreeMap<String, String> {
    [
        "POD_ORDINAL",
        "HOSTNAME",
        "STATEFULSET_NAME",
        "STATEFULSET_SERVICE",
        "POD_NAMESPACE",
    ]
    .iter()
    .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
    .collect()
}

fn hostname(env: &BTreeMap<String, String>) -> Option<String> {
    env.get("HOSTNAME")
        .cloned()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|h| !h.is_empty())
        })
}

/// Decides the identity from the spec and the environment.
pub fn identity(args: &Args, env: &BTreeMap<String, String>) -> Result<Identity, String> {
    let spec = RoleSpec::parse(&args.roles).map_err(|e| format!("invalid --roles: {e}"))?;
    let host = hostname(env);
    let ordinal = match env.get("POD_ORDINAL").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(v) => v.parse::<u32>().map_err(|_| format!("POD_ORDINAL={v:?} is not a number"))?,
        None => host.as_deref().and_then(ordinal_from_name).ok_or_else(|| {
            format!(
                "cannot tell this pod's ordinal: POD_ORDINAL is unset and the hostname {:?} has no -N suffix",
                host.as_deref().unwrap_or("")
            )
        })?,
    };
    let role = spec.role_for(ordinal).to_string();
    let server_id = args
        .server_id_base
        .checked_add(u64::from(ordinal))
        .ok_or("--server-id-base + ordinal overflows")?;
    let sts_name = env
        .get("STATEFULSET_NAME")
        .cloned()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            host.as_deref()
                .and_then(|h| h.rsplit_once('-'))
                .map(|(n, _)| n.to_string())
        });
    let primary_fqdn = match (
        sts_name,
        env.get("STATEFULSET_SERVICE").filter(|s| !s.is_empty()),
        env.get("POD_NAMESPACE").filter(|s| !s.is_empty()),
    ) {
        (Some(name), Some(svc), Some(ns)) => {
            format!(
                "{name}-{}.{svc}.{ns}.svc.{}",
                spec.primary_ordinal(),
                args.cluster_domain
            )
        }
        _ => String::new(),
    };
    Ok(Identity {
        role,
        ordinal,
        server_id,
        primary_fqdn,
    })
}

/// Writes `dir/name` atomically: `fill` writes the contents into a temp file beside it, which is
/// then renamed over `name` (`sync`: synced first).
fn write_atomic_with(
    dir: &Path,
    name: &str,
    sync: bool,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), String> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.stsguard-tmp"));
    let res = (|| -> std::io::Result<()> {
        // A temp file left by a killed run is replaced, never written through: `create_new`
        // does not follow a symlink.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(WRITE_BUFFER, file);
        fill(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        if sync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &target)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", target.display())
    })
}

/// Writes `contents` to `dir/name` atomically (`sync`: synced before the rename).
fn write_atomic(dir: &Path, name: &str, sync: bool, contents: &[u8]) -> Result<(), String> {
    write_atomic_with(dir, name, sync, |w| w.write_all(contents))
}

/// `value` as one shell word: single-quoted, each `'` written as `'\''`. Inside single quotes a
/// POSIX shell takes every character as itself (newline, `$`, `;`, `` ` ``, `\`), so sourcing
/// the line sets the variable to exactly `value` and runs nothing.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// The contents of `role.env`: one `NAME='value'` line per variable.
pub fn env_file(id: &Identity) -> String {
    let server_id = id.server_id.to_string();
    let ordinal = id.ordinal.to_string();
    [
        ("STS_ROLE", id.role.as_str()),
        ("STS_ORDINAL", ordinal.as_str()),
        ("STS_SERVER_ID", server_id.as_str()),
        ("STS_PRIMARY_FQDN", id.primary_fqdn.as_str()),
    ]
    .iter()
    .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
    .collect()
}

/// The placeholders and what they stand for.
type Values = [(&'static [u8], Vec<u8>); 4];

fn values(id: &Identity) -> Values {
    [
        (b"{{role}}", id.role.as_bytes().to_vec()),
        (b"{{ordinal}}", id.ordinal.to_string().into_bytes()),
        (b"{{server_id}}", id.server_id.to_string().into_bytes()),
        (b"{{primary_fqdn}}", id.primary_fqdn.as_bytes().to_vec()),
    ]
}

/// Feeds `emit` the pieces of `text` with the placeholders substituted, in order. One pass: each
/// `{` is looked at once (against four short names), and the substituted values are not scanned
/// again, so the work is linear in `text` plus the output.
fn substitute_with<E>(
    text: &[u8],
    values: &Values,
    mut emit: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let mut copied = 0;
    for at in memchr::memchr_iter(b'{', text) {
        if at < copied {
            continue; // inside a placeholder just substituted
        }
        let rest = &text[at..];
        if let Some((name, value)) = values.iter().find(|(name, _)| rest.starts_with(name)) {
            emit(&text[copied..at])?;
            emit(value)?;
            copied = at + name.len();
        }
    }
    emit(&text[copied..])
}

/// The length of `text` once substituted, without building it.
fn substituted_len(text: &[u8], values: &Values) -> u64 {
    let mut n = 0u64;
    let _ = substitute_with(text, values, |piece| {
        n += piece.len() as u64;
        Ok::<(), std::convert::Infallible>(())
    });
    n
}

#[cfg(test)]
fn substitute(text: &str, id: &Identity) -> String {
    let mut out = Vec::new();
    let _ = substitute_with(text.as_bytes(), &values(id), |piece| {
        out.extend_from_slice(piece);
        Ok::<(), std::convert::Infallible>(())
    });
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory every key must resolve into: where `..data` leads when the config dir has one
/// (kubelet's layout), else the config dir itself. `root` is the config dir, canonical.
fn data_dir(dir: &Path, root: &Path) -> Result<PathBuf, String> {
    let link = root.join(DATA_LINK);
    match std::fs::symlink_metadata(&link) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(root.to_path_buf()),
        Err(e) => Err(format!("cannot read {}: {e}", link.display())),
        Ok(_) => {
            let target = std::fs::canonicalize(&link).map_err(|e| {
                format!(
                    "--config-dir {}: {DATA_LINK} does not resolve ({e}); refusing to read it",
                    dir.display()
                )
            })?;
            if target.parent() != Some(root) || !target.is_dir() {
                return Err(format!(
                    "--config-dir {}: {DATA_LINK} leads to {}, not a directory inside the config \
                     dir; refusing to read it",
                    dir.display(),
                    target.display()
                ));
            }
            Ok(target)
        }
    }
}

fn kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn refused(key: &str, why: String) -> String {
    format!(
        "config key {key:?}: {why}; refusing it (only the mounted ConfigMap's own files are read)"
    )
}

/// Resolves the key `key` at `path` to the regular file it stands for, directly inside `base`;
/// returns that file (no symlinks left in its path) and its size.
fn resolve_key(key: &str, path: &Path, base: &Path) -> Result<(PathBuf, u64), String> {
    let real = std::fs::canonicalize(path)
        .map_err(|e| refused(key, format!("{} does not resolve ({e})", path.display())))?;
    if real.parent() != Some(base) {
        return Err(refused(
            key,
            format!("it leads to {}, outside {}", real.display(), base.display()),
        ));
    }
    let meta = std::fs::metadata(&real)
        .map_err(|e| refused(key, format!("cannot read {} ({e})", real.display())))?;
    if !meta.file_type().is_file() {
        return Err(refused(
            key,
            format!("it leads to {}, {}", real.display(), kind(meta.file_type())),
        ));
    }
    Ok((real, meta.len()))
}

fn too_big(what: &str, total: u64) -> String {
    format!(
        "{what} hold {total} bytes, over {MAX_CONFIG_BYTES} (1 MiB, Kubernetes' limit on a \
         ConfigMap's data); refusing them"
    )
}

/// The ConfigMap keys that apply to `role`, as (key, the file it resolves to), sorted by key.
/// Every key is checked (see the module doc: a key that leads outside the ConfigMap's data
/// directory, or to anything but a regular file, is an error naming it), and the files must total
/// at most [`MAX_CONFIG_BYTES`]. Entries starting with `..` are kubelet's and are passed over.
pub fn config_files(
    dir: &Path,
    role: &str,
    roles: &[&str],
) -> Result<Vec<(String, PathBuf)>, String> {
    let cannot = |e: std::io::Error| format!("cannot read --config-dir {}: {e}", dir.display());
    let root = std::fs::canonicalize(dir).map_err(cannot)?;
    let base = data_dir(dir, &root)?;
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(&root).map_err(cannot)? {
        let entry = entry.map_err(cannot)?;
        let key = entry.file_name().to_string_lossy().into_owned();
        if key.starts_with("..") {
            continue;
        }
        if keys.len() == MAX_CONFIG_KEYS {
            return Err(format!(
                "--config-dir {} holds more than {MAX_CONFIG_KEYS} keys (stsguard's bound on \
                 role-init's work, docs/bounds.md); refusing them: put fewer, larger files in \
                 the ConfigMap",
                dir.display()
            ));
        }
        if OWN_FILES.contains(&key.as_str()) {
            return Err(refused(
                &key,
                format!(
                    "role-init writes {key} itself (the pod's {}); rename the key",
                    match key.as_str() {
                        "role" => "role, written last to say the rest is complete",
                        "ordinal" => "ordinal",
                        _ => "identity variables",
                    }
                ),
            ));
        }
        keys.push((key, entry.path()));
    }
    keys.sort();
    let roles: HashSet<&str> = roles.iter().copied().collect();
    let mut total = 0u64;
    let mut out = Vec::new();
    for (key, path) in keys {
        let (real, len) = resolve_key(&key, &path, &base)?;
        total = total.saturating_add(len);
        let applies = match key.split_once('.') {
            Some((prefix, _)) if roles.contains(prefix) => prefix == role,
            _ => true,
        };
        if applies {
            out.push((key, real));
        }
    }
    if total > MAX_CONFIG_BYTES {
        return Err(too_big(
            &format!("the files of --config-dir {}", dir.display()),
            total,
        ));
    }
    Ok(out)
}

/// Reads the file of `key` at `path`, at most `limit` bytes; checks that what was opened is a
/// regular file (the path was checked before; this closes the gap between check and open).
fn read_bounded(key: &str, path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let cannot =
        |e: std::io::Error| format!("config key {key:?}: cannot read {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.file_type().is_file() {
        return Err(refused(
            key,
            format!("{} is {}", path.display(), kind(meta.file_type())),
        ));
    }
    let mut buf = Vec::with_capacity(usize::try_from(meta.len().min(limit)).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(cannot)?;
    Ok(buf)
}

/// The files of `dir` that apply to this pod, read, as (key, contents, is UTF-8 text), after
/// checking the bounds of the module doc.
fn load(
    dir: &Path,
    id: &Identity,
    spec: &RoleSpec,
    values: &Values,
) -> Result<Vec<(String, Vec<u8>, bool)>, String> {
    let files = config_files(dir, &id.role, &spec.roles())?;
    let (mut read, mut written) = (0u64, 0u64);
    let mut inputs = Vec::with_capacity(files.len());
    for (key, path) in files {
        let bytes = read_bounded(&key, &path, MAX_CONFIG_BYTES - read)?;
        read += bytes.len() as u64;
        if read > MAX_CONFIG_BYTES {
            // The files grew since they were checked.
            return Err(too_big("the configuration files read", read));
        }
        let text = std::str::from_utf8(&bytes).is_ok(); // binary: copied as is
        written += if text {
            substituted_len(&bytes, values)
        } else {
            bytes.len() as u64
        };
        if written > MAX_OUTPUT_BYTES {
            return Err(format!(
                "config key {key:?}: the configuration files come to over {MAX_OUTPUT_BYTES} bytes \
                 (8 MiB) with the placeholders substituted ({{{{primary_fqdn}}}} is {} bytes \
                 here); refusing to write them",
                id.primary_fqdn.len()
            ));
        }
        inputs.push((key, bytes, text));
    }
    Ok(inputs)
}

/// [`load`], again when kubelet swapped `..data` to an updated ConfigMap while it ran (keys then
/// lead into the new directory, or the old one is gone): a few times, then its error stands.
fn load_retrying(
    dir: &Path,
    id: &Identity,
    spec: &RoleSpec,
    values: &Values,
) -> Result<Vec<(String, Vec<u8>, bool)>, String> {
    let data = || std::fs::canonicalize(dir.join(DATA_LINK)).ok();
    let mut attempts = 1;
    loop {
        let before = data();
        match load(dir, id, spec, values) {
            Err(_) if attempts < 3 && data() != before => attempts += 1,
            r => return r,
        }
    }
}

/// Runs role-init; returns what it decided, or one line saying what failed.
pub fn run(args: &Args, env: &BTreeMap<String, String>) -> Result<Identity, String> {
    let id = identity(args, env)?;
    let spec = RoleSpec::parse(&args.roles).map_err(|e| format!("invalid --roles: {e}"))?;
    if !args.out.is_dir() {
        return Err(format!("--out {} is not a directory", args.out.display()));
    }
    // Everything is read, and the output counted, before anything is written: a refused
    // ConfigMap leaves the output directory as it was.
    let values = values(&id);
    let inputs = match &args.config_dir {
        Some(dir) => load_retrying(dir, &id, &spec, &values)?,
        None => Vec::new(),
    };
    for (key, bytes, text) in &inputs {
        write_atomic_with(&args.out, key, false, |w| {
            if *text {
                substitute_with(bytes, &values, |piece| w.write_all(piece))
            } else {
                w.write_all(bytes)
            }
        })?;
    }
    write_atomic(&args.out, "role.env", false, env_file(&id).as_bytes())?;
    write_atomic(
        &args.out,
        "ordinal",
        false,
        format!("{}\n", id.ordinal).as_bytes(),
    )?;
    // One sync of everything written so far, then `role`, synced: its presence means the rest
    // is complete, also after a crash.
    let out = std::fs::File::open(&args.out)
        .map_err(|e| format!("cannot open --out {}: {e}", args.out.display()))?;
    rustix::fs::syncfs(&out)
        .map_err(|e| format!("cannot sync --out {}: {e}", args.out.display()))?;
    write_atomic(&args.out, "role", true, format!("{}\n", id.role).as_bytes())?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Args {
        Args {
            roles: "primary=0,replica=*".into(),
            out: PathBuf::from("/nonexistent"),
            config_dir: None,
            server_id_base: 100,
            cluster_domain: "cluster.local".into(),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn identity_from_ordinal_or_hostname() -> Result<(), Box<dyn std::error::Error>> {
        let id = identity(
            &args(),
            &env(&[
                ("POD_ORDINAL", "2"),
                ("STATEFULSET_NAME", "mysql"),
                ("STATEFULSET_SERVICE", "mysql"),
                ("POD_NAMESPACE", "db"),
            ]),
        )?;
        assert_eq!(
            id,
            Identity {
                role: "replica".into(),
                ordinal: 2,
                server_id: 102,
                primary_fqdn: "mysql-0.mysql.db.svc.cluster.local".into()
            }
        );
        let id = identity(&args(), &env(&[("HOSTNAME", "my-sql-0")]))?;
        assert_eq!(
            (id.role.as_str(), id.ordinal, id.primary_fqdn.as_str()),
            ("primary", 0, "")
        );
        assert!(
            identity(&args(), &env(&[("POD_ORDINAL", "x")]))
                .unwrap_err()
                .contains("POD_ORDINAL")
        );
        Ok(())
    }

    fn id(fqdn: &str) -> Identity {
        Identity {
            role: "r".into(),
            ordinal: 3,
            server_id: 103,
            primary_fqdn: fqdn.into(),
        }
    }

    #[test]
    fn substitutes() {
        let id = id("p");
        assert_eq!(
            substitute(
                "{{role}}/{{ordinal}}/{{server_id}}/{{primary_fqdn}}/{{other}}",
                &id
            ),
            "r/3/103/p/{{other}}"
        );
        // Near misses stay as written; a brace before a placeholder is kept.
        for (text, want) in [
            ("", ""),
            ("{", "{"),
            ("{{", "{{"),
            ("{{role}", "{{role}"),
            ("{{ROLE}}", "{{ROLE}}"),
            ("{ {role}}", "{ {role}}"),
            ("{{{role}}", "{r"),
            ("{{{{role}}}}", "{{r}}"),
            ("}}{{role}}{{", "}}r{{"),
            ("{{role}}{{role}}", "rr"),
            ("x{{ordinal}}y{{server_id}}z", "x3y103z"),
            ("ü{{role}}ü", "ürü"),
        ] {
            assert_eq!(substitute(text, &id), want, "{text:?}");
        }
    }

    #[test]
    fn substituted_values_are_not_substituted_again() {
        // One pass: a value that looks like a placeholder is written as it is.
        let id = id("{{role}}{{ordinal}}");
        assert_eq!(
            substitute("{{primary_fqdn}} {{role}}", &id),
            "{{role}}{{ordinal}} r"
        );
    }

    #[test]
    fn substituted_len_is_the_written_length() {
        let id = id("mysql-0.mysql.db.svc.cluster.local");
        let v = values(&id);
        for text in [
            "",
            "plain",
            "{{primary_fqdn}}",
            "{{{role}}}{{ordinal}}{{server_id}}{{",
            &"{{primary_fqdn}}".repeat(1000),
            &"{".repeat(1000),
        ] {
            assert_eq!(
                substituted_len(text.as_bytes(), &v),
                substitute(text, &id).len() as u64,
                "{text:?}"
            );
        }
        // 1 MiB of placeholders: the counted length is exact, no output is built.
        let big = "{{primary_fqdn}}".repeat(65536);
        assert_eq!(substituted_len(big.as_bytes(), &v), 65536 * 34);
    }

    #[test]
    fn data_link_must_stay_inside_the_config_dir() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        let cfg = tmp.path().join("cfg");
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&cfg)?;
        std::fs::create_dir_all(&elsewhere)?;
        std::fs::write(elsewhere.join("a.cnf"), "x")?;
        std::os::unix::fs::symlink("../elsewhere", cfg.join("..data"))?;
        std::os::unix::fs::symlink("..data/a.cnf", cfg.join("a.cnf"))?;
        let e = config_files(&cfg, "primary", &["primary"]).unwrap_err();
        assert!(
            e.contains("..data leads to") && e.contains("elsewhere"),
            "{e}"
        );
        Ok(())
    }

    #[test]
    fn with_data_a_plain_file_beside_it_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        // In kubelet's layout every key is a link into `..data`; a regular file at the top is
        // not the ConfigMap's.
        let tmp = tempfile::tempdir()?;
        let cfg = tmp.path();
        std::fs::create_dir(cfg.join("..2026_11_30_05_00_00.000000001"))?;
        std::os::unix::fs::symlink("..2026_11_30_05_00_00.000000001", cfg.join("..data"))?;
        std::fs::write(cfg.join("stray.cnf"), "x")?;
        let e = config_files(cfg, "primary", &["primary"]).unwrap_err();
        assert!(
            e.starts_with("config key \"stray.cnf\": it leads to"),
            "{e}"
        );
        assert!(e.contains("outside"), "{e}");
        Ok(())
    }

    #[test]
    fn role_prefixes_pick_the_files() -> Result<(), Box<dyn std::error::Error>> {
        let tmp = tempfile::tempdir()?;
        for k in [
            "primary.cnf",
            "replica.cnf",
            "common.cnf",
            "primaryx.cnf",
            "noext",
        ] {
            std::fs::write(tmp.path().join(k), k)?;
        }
        let keys = |role| -> Result<Vec<String>, String> {
            Ok(config_files(tmp.path(), role, &["primary", "replica"])?
                .into_iter()
                .map(|(k, _)| k)
                .collect())
        };
        assert_eq!(
            keys("primary")?,
            ["common.cnf", "noext", "primary.cnf", "primaryx.cnf"]
        );
        assert_eq!(
            keys("replica")?,
            ["common.cnf", "noext", "primaryx.cnf", "replica.cnf"]
        );
        Ok(())
    }
}
