//! Certificates with rcgen: a CA and a serving certificate it signs, for `serve --dev` and
//! `stsguard certs`.

use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

/// PEM text of a CA and of a serving certificate and key it signed.
pub struct Bundle {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

fn serial() -> SerialNumber {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut bytes = Vec::with_capacity(16);
    bytes.extend_from_slice(&nanos.to_be_bytes());
    bytes.extend_from_slice(
        &(std::process::id() as u64 ^ COUNTER.fetch_add(1, Ordering::Relaxed)).to_be_bytes(),
    );
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x10; // no leading zero byte
    SerialNumber::from_slice(&bytes)
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days.max(1)));
}

/// Generates a CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn generate(common_name: &str, names: &[String], days: u32) -> anyhow::Result<Bundle> {
    let now = std::time::SystemTime::now();
    let day = std::time::Duration::from_secs(86_400);
    generate_valid(
        common_name,
        names,
        now - std::time::Duration::from_secs(3600),
        now + day * days.max(1),
    )
}

/// [`generate`] with the serving certificate valid from `not_before` to `not_after` (the CA is
/// valid from an hour ago for a year past `not_after`): an expired or a not yet valid
/// certificate for tests.
pub fn generate_valid(
    common_name: &str,
    names: &[String],
    not_before: std::time::SystemTime,
    not_after: std::time::SystemTime,
) -> anyhow::Result<Bundle> {
    let days = not_after
        .duration_since(std::time::SystemTime::now())
        .map_or(0, |d| d.as_secs() / 86_400);
    let days = u32::try_from(days).unwrap_or(u32::MAX);
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("stsguard CA for {common_name}"));
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.serial_number = Some(serial());
    validity(&mut ca, days.saturating_add(365));
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serial_number = Some(serial());
    params.not_before = time::OffsetDateTime::from(not_before);
    params.not_after = time::OffsetDateTime::from(not_after);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Bundle {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether the certificate `der` is valid at `now` (seconds since the epoch); if not, why, and
/// what to do.
pub fn check_validity(der: &[u8], now: i64) -> Result<(), String> {
    let (_, c) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let at = |t: i64| {
        jiff::Timestamp::from_second(t)
            .map_or_else(|_| format!("{t} s after 1970"), |t| t.to_string())
    };
    let (from, to) = (
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    );
    if now > to {
        return Err(format!(
            "the certificate (serial {}) expired at {} (notAfter): issue a new one (`stsguard certs`, or let cert-manager renew it) and write it in place",
            c.raw_serial_as_string().replace(':', ""),
            at(to)
        ));
    }
    if now < from {
        return Err(format!(
            "the certificate (serial {}) is not valid before {} (notBefore): the issuer's clock or this node's is off; it is loaded once valid",
            c.raw_serial_as_string().replace(':', ""),
            at(from)
        ));
    }
    Ok(())
}

/// The names a webhook Service's certificate must carry.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Writes a file; keys get mode 0600.
pub fn write_file(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(text.as_bytes())
}

/// `stsguard certs`: writes ca.crt, tls.crt and tls.key (0600) into `out`. The certificate is
/// valid for the Service's names and for `extra` (DNS names or IP addresses, e.g. `127.0.0.1`
/// for a webhook the API server reaches by URL).
pub fn write_bundle(
    out: &Path,
    service: &str,
    namespace: &str,
    extra: &[String],
    days: u32,
) -> anyhow::Result<Bundle> {
    std::fs::create_dir_all(out)?;
    let mut names = service_names(service, namespace);
    for n in extra {
        if n.parse::<std::net::IpAddr>().is_err() && !crate::k8s::labels::is_dns_subdomain(n) {
            anyhow::bail!("--san {n:?} is neither a DNS name nor an IP address");
        }
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    let b = generate(&format!("{service}.{namespace}.svc"), &names, days)?;
    write_file(&out.join("ca.crt"), &b.ca_pem, false)?;
    write_file(&out.join("tls.crt"), &b.cert_pem, false)?;
    write_file(&out.join("tls.key"), &b.key_pem, true)?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_loads_and_keys_match() -> Result<(), Box<dyn std::error::Error>> {
        let b = generate("x", &["localhost".into(), "127.0.0.1".into()], 1)?;
        let loaded = crate::server::tls::load_pem(b.cert_pem.as_bytes(), b.key_pem.as_bytes())?;
        assert!(!loaded.serial.is_empty());
        let other = generate("y", &["localhost".into()], 1)?;
        let err = crate::server::tls::load_pem(b.cert_pem.as_bytes(), other.key_pem.as_bytes())
            .unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        Ok(())
    }

    #[test]
    fn a_certificate_outside_its_validity_is_named_with_its_dates()
    -> Result<(), Box<dyn std::error::Error>> {
        use std::time::{Duration, SystemTime};
        let der = |b: &Bundle| -> Result<Vec<u8>, Box<dyn std::error::Error>> {
            let (_, pem) = x509_parser::pem::parse_x509_pem(b.cert_pem.as_bytes())?;
            Ok(pem.contents)
        };
        let now = SystemTime::now();
        let now_s = jiff::Timestamp::now().as_second();
        let day = Duration::from_secs(86_400);
        let names = ["localhost".to_string()];
        let good = generate("x", &names, 1)?;
        assert_eq!(check_validity(&der(&good)?, now_s), Ok(()));
        let expired = generate_valid("x", &names, now - 2 * day, now - day)?;
        let e = check_validity(&der(&expired)?, now_s).unwrap_err();
        assert!(e.contains("expired at") && e.contains("notAfter"), "{e}");
        let early = generate_valid("x", &names, now + day, now + 2 * day)?;
        let e = check_validity(&der(&early)?, now_s).unwrap_err();
        assert!(
            e.contains("not valid before") && e.contains("notBefore"),
            "{e}"
        );
        // Valid a day later.
        assert_eq!(check_validity(&der(&early)?, now_s + 86_400 + 60), Ok(()));
        Ok(())
    }

    #[test]
    fn extra_names_are_in_the_certificate() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("stsguard-certs-san-{}", std::process::id()));
        let extra = ["127.0.0.1".to_string(), "webhook.example".to_string()];
        let b = write_bundle(&dir, "svc", "ns", &extra, 1)?;
        let _ = std::fs::remove_dir_all(&dir);
        let (_, pem) = x509_parser::pem::parse_x509_pem(b.cert_pem.as_bytes())?;
        let cert = pem.parse_x509()?;
        let san = cert.subject_alternative_name()?.ok_or("no SAN")?;
        use x509_parser::extensions::GeneralName;
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(b.to_vec()),
                _ => {}
            }
        }
        assert!(dns.contains(&"svc.ns.svc".to_string()), "{dns:?}");
        assert!(dns.contains(&"webhook.example".to_string()), "{dns:?}");
        // 127.0.0.1 as an IP SAN (what a client checks an address against), not a DNS name.
        assert_eq!(ips, vec![vec![127, 0, 0, 1]]);
        assert!(!dns.contains(&"127.0.0.1".to_string()), "{dns:?}");
        assert!(write_bundle(&dir, "svc", "ns", &["not a name".into()], 1).is_err());
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
