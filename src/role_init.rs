//! `stsguard role-init`: the role-selection init container. Finds the pod's ordinal, picks its
//! role, and writes `role`, `ordinal`, `role.env` and the role's configuration files into the
//! shared emptyDir. Every write is atomic (temp file + rename): a restarted init container never
//! leaves half a file.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::labels::ordinal_from_name;
use crate::roles::RoleSpec;

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

/// Writes `contents` to `dir/name` atomically.
fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<(), String> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.stsguard-tmp"));
    let res = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", target.display())
    })
}

fn substitute(text: &str, id: &Identity) -> String {
    text.replace("{{role}}", &id.role)
        .replace("{{ordinal}}", &id.ordinal.to_string())
        .replace("{{server_id}}", &id.server_id.to_string())
        .replace("{{primary_fqdn}}", &id.primary_fqdn)
}

/// The ConfigMap keys that apply to `role`, as (key, path). Reads a ConfigMap volume as kubelet
/// lays it out: keys are symlinks into `..data`; entries starting with `..` are skipped.
pub fn config_files(
    dir: &Path,
    role: &str,
    roles: &[&str],
) -> Result<Vec<(String, PathBuf)>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read --config-dir {}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| format!("cannot read --config-dir {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        let path = entry.path();
        if !path.is_file() {
            continue;
        }
        let applies = match name.split_once('.') {
            Some((prefix, _)) if roles.contains(&prefix) => prefix == role,
            _ => true,
        };
        if applies {
            out.push((name, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Runs role-init; returns what it decided, or one line saying what failed.
pub fn run(args: &Args, env: &BTreeMap<String, String>) -> Result<Identity, String> {
    let id = identity(args, env)?;
    let spec = RoleSpec::parse(&args.roles).map_err(|e| format!("invalid --roles: {e}"))?;
    if !args.out.is_dir() {
        return Err(format!("--out {} is not a directory", args.out.display()));
    }
    let files = match &args.config_dir {
        Some(dir) => config_files(dir, &id.role, &spec.roles())?,
        None => Vec::new(),
    };
    for (key, path) in &files {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let contents = match String::from_utf8(text) {
            Ok(t) => substitute(&t, &id).into_bytes(),
            Err(e) => e.into_bytes(), // binary: copied as is
        };
        write_atomic(&args.out, key, &contents)?;
    }
    let env_file = format!(
        "STS_ROLE={}\nSTS_ORDINAL={}\nSTS_SERVER_ID={}\nSTS_PRIMARY_FQDN={}\n",
        id.role, id.ordinal, id.server_id, id.primary_fqdn
    );
    write_atomic(&args.out, "role.env", env_file.as_bytes())?;
    write_atomic(&args.out, "ordinal", format!("{}\n", id.ordinal).as_bytes())?;
    // `role` last: its presence means the rest is complete.
    write_atomic(&args.out, "role", format!("{}\n", id.role).as_bytes())?;
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

    #[test]
    fn substitutes() {
        let id = Identity {
            role: "r".into(),
            ordinal: 3,
            server_id: 103,
            primary_fqdn: "p".into(),
        };
        assert_eq!(
            substitute(
                "{{role}}/{{ordinal}}/{{server_id}}/{{primary_fqdn}}/{{other}}",
                &id
            ),
            "r/3/103/p/{{other}}"
        );
    }
}
