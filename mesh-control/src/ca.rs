//! A development certificate authority issuing SPIFFE X.509-SVIDs
//! (`spiffe://<trust domain>/ns/<ns>/sa/<sa>`) into the file layout Istio's agent writes
//! (`cert-chain.pem`, `key.pem`, `root-cert.pem`), for the `file_watcher` certificate provider
//! of gRFC A29 / A87.
//!
//! This is for development and tests, not production: the CA key sits in a plain file.
//! [`IssueOptions`] can also make deliberately *bad* certificates (wrong or extra SANs, a CA
//! leaf, expired, not yet valid), so the verifiers' negative paths are tested with real
//! certificates.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

/// The file name of the CA certificate in a CA directory (as Istio's plugged-in CA names it).
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// The file name of the CA private key in a CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// Istio's workload certificate chain file.
pub const CERT_CHAIN_FILE: &str = "cert-chain.pem";
/// Istio's workload private key file.
pub const KEY_FILE: &str = "key.pem";
/// Istio's root certificate file.
pub const ROOT_CERT_FILE: &str = "root-cert.pem";

/// How long a development CA certificate is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Backdating of `not_before`, for clock skew between processes.
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Errors of the development CA.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Certificate generation or parsing failed.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Bad input (a trust domain, a SAN, a CA directory that does not fit).
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(e: rcgen::Error) -> CaError {
    CaError::Certificate(e.to_string())
}

/// A development CA for one trust domain.
pub struct DevCa {
    trust_domain: String,
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa")
            .field("trust_domain", &self.trust_domain)
            .finish_non_exhaustive()
    }
}

/// What to put in a leaf certificate. [`IssueOptions::svid`] is a proper X.509-SVID; the
/// public fields let tests make broken ones.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// URI SANs (an SVID has exactly one, its SPIFFE ID).
    pub uri_sans: Vec<String>,
    /// DNS SANs (none in an SVID from this CA).
    pub dns_sans: Vec<String>,
    /// Subject common name.
    pub common_name: Option<String>,
    /// basicConstraints cA=true (forbidden in an SVID leaf).
    pub is_ca: bool,
    /// Add keyCertSign and cRLSign to keyUsage (forbidden in an SVID leaf).
    pub key_cert_sign: bool,
    /// Validity start.
    pub not_before: SystemTime,
    /// Validity end.
    pub not_after: SystemTime,
}

impl IssueOptions {
    /// A proper SVID for `spiffe://<trust_domain>/ns/<ns>/sa/<sa>`, valid from a few minutes
    /// ago (clock skew) for `validity`.
    pub fn svid(trust_domain: &str, ns: &str, sa: &str, validity: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            uri_sans: vec![format!("spiffe://{trust_domain}/ns/{ns}/sa/{sa}")],
            dns_sans: Vec::new(),
            common_name: None,
            is_ca: false,
            key_cert_sign: false,
            not_before: now.checked_sub(CLOCK_SKEW).unwrap_or(now),
            not_after: now.checked_add(validity).unwrap_or(now),
        }
    }
}

/// An issued leaf certificate with its key, all PEM.
#[derive(Debug, Clone)]
pub struct Svid {
    /// The certificate chain: the leaf (the CA is the root, so no intermediates follow).
    pub cert_chain_pem: String,
    /// The leaf's private key, PKCS#8.
    pub key_pem: String,
    /// The CA's root certificate.
    pub root_cert_pem: String,
    /// The leaf's serial number, lowercase hex.
    pub serial_hex: String,
    /// The first URI SAN (the SPIFFE ID for a proper SVID).
    pub uri: Option<String>,
}

impl DevCa {
    /// Generates a new CA (ECDSA P-256) for `trust_domain`.
    pub fn generate(trust_domain: &str) -> Result<Self, CaError> {
        check_trust_domain(trust_domain)?;
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "mesh-control development CA");
        dn.push(DnType::CommonName, format!("{trust_domain} root"));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{trust_domain}")
                .try_into()
                .map_err(cert_err)?,
        )];
        let now = SystemTime::now();
        params.not_before = OffsetDateTime::from(now.checked_sub(CLOCK_SKEW).unwrap_or(now));
        params.not_after = OffsetDateTime::from(now.checked_add(CA_VALIDITY).unwrap_or(now));
        let cert = params.self_signed(&key).map_err(cert_err)?;
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA saved by [`DevCa::save`] from `dir` (`ca-cert.pem`, `ca-key.pem`).
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let key_pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| CaError::Invalid(format!("{}: {e}", key_path.display())))?;
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| CaError::Invalid(format!("{}: {e}", cert_path.display())))?;
        let cert_der = pem.contents.clone();
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| CaError::Invalid(format!("{}: {e}", cert_path.display())))?;
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::Invalid(format!(
                "{} does not belong to {}",
                key_path.display(),
                cert_path.display()
            )));
        }
        let trust_domain = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .into_iter()
            .flat_map(|ext| ext.value.general_names.iter())
            .find_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri) => {
                    uri.strip_prefix("spiffe://").map(str::to_owned)
                }
                _ => None,
            })
            .ok_or_else(|| {
                CaError::Invalid(format!(
                    "{}: no spiffe://<trust domain> URI SAN",
                    cert_path.display()
                ))
            })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key).map_err(cert_err)?;
        Ok(Self {
            trust_domain,
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// Saves the CA certificate and key into `dir` (created if missing; the key file is
    /// made readable by its owner only).
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert_path = dir.join(CA_CERT_FILE);
        fs::write(&cert_path, &self.cert_pem).map_err(io_err(&cert_path))?;
        let key_path = dir.join(CA_KEY_FILE);
        write_private(&key_path, &self.issuer.key().serialize_pem())?;
        Ok(())
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The CA (root) certificate, PEM.
    pub fn root_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA (root) certificate, DER.
    pub fn root_cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Issues a proper X.509-SVID for `spiffe://<td>/ns/<ns>/sa/<sa>`, valid for `validity`:
    /// cA=false, keyUsage digitalSignature + keyEncipherment, extKeyUsage serverAuth +
    /// clientAuth, one URI SAN.
    pub fn issue_svid(&self, ns: &str, sa: &str, validity: Duration) -> Result<Svid, CaError> {
        self.issue(&IssueOptions::svid(&self.trust_domain, ns, sa, validity))
    }

    /// Issues a leaf certificate exactly as `options` say, with a fresh ECDSA P-256 key.
    pub fn issue(&self, options: &IssueOptions) -> Result<Svid, CaError> {
        let key = KeyPair::generate().map_err(cert_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.trust_domain.as_str());
        if let Some(cn) = &options.common_name {
            dn.push(DnType::CommonName, cn.as_str());
        }
        params.distinguished_name = dn;
        for uri in &options.uri_sans {
            params
                .subject_alt_names
                .push(SanType::URI(uri.clone().try_into().map_err(cert_err)?));
        }
        for dns in &options.dns_sans {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.clone().try_into().map_err(cert_err)?));
        }
        params.is_ca = if options.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if options.key_cert_sign {
            params.key_usages.push(KeyUsagePurpose::KeyCertSign);
            params.key_usages.push(KeyUsagePurpose::CrlSign);
        }
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = OffsetDateTime::from(options.not_before);
        params.not_after = OffsetDateTime::from(options.not_after);
        let cert = params.signed_by(&key, &self.issuer).map_err(cert_err)?;
        let serial_hex = x509_parser::parse_x509_certificate(cert.der())
            .map(|(_, c)| c.raw_serial_as_string().replace(':', ""))
            .unwrap_or_default();
        Ok(Svid {
            cert_chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            root_cert_pem: self.cert_pem.clone(),
            serial_hex,
            uri: options.uri_sans.first().cloned(),
        })
    }

    /// A SPIFFE trust bundle map (gRFC A87 `spiffe_trust_bundle_map_file`) holding the roots
    /// of `cas`, one trust domain each.
    pub fn spiffe_bundle_map_json(cas: &[&DevCa]) -> String {
        use base64::Engine as _;
        let mut domains = serde_json::Map::new();
        for ca in cas {
            let x5c = base64::engine::general_purpose::STANDARD.encode(&ca.cert_der);
            domains.insert(
                ca.trust_domain.clone(),
                serde_json::json!({
                    "spiffe_sequence": 1,
                    "keys": [{"kty": "EC", "use": "x509-svid", "x5c": [x5c]}],
                }),
            );
        }
        let map = serde_json::json!({ "trust_domains": domains });
        serde_json::to_string_pretty(&map).unwrap_or_default()
    }
}

impl Svid {
    /// Writes `cert-chain.pem`, `key.pem` and `root-cert.pem` into `dir`, swapping all three
    /// at once: on Unix the files are symlinks through `..data`, a symlink to a fresh
    /// directory that is replaced by one `rename` (the way Kubernetes updates mounted
    /// secrets), so a reader never sees a new certificate with an old key for long.
    pub fn write_istio_layout(&self, dir: &Path) -> Result<(), CaError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_layout(self, dir)
    }
}

#[cfg(unix)]
fn write_layout(svid: &Svid, dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::symlink;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let version = format!("..{nanos}");
    let version_dir = dir.join(&version);
    fs::create_dir(&version_dir).map_err(io_err(&version_dir))?;
    let chain = version_dir.join(CERT_CHAIN_FILE);
    fs::write(&chain, &svid.cert_chain_pem).map_err(io_err(&chain))?;
    write_private(&version_dir.join(KEY_FILE), &svid.key_pem)?;
    let root = version_dir.join(ROOT_CERT_FILE);
    fs::write(&root, &svid.root_cert_pem).map_err(io_err(&root))?;

    let data = dir.join("..data");
    let data_tmp = dir.join("..data_tmp");
    let _ = fs::remove_file(&data_tmp);
    symlink(&version, &data_tmp).map_err(io_err(&data_tmp))?;
    fs::rename(&data_tmp, &data).map_err(io_err(&data))?;

    for name in [CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE] {
        let link = dir.join(name);
        let target = Path::new("..data").join(name);
        if fs::read_link(&link).is_ok_and(|t| t == target) {
            continue;
        }
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        symlink(&target, &tmp).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &link).map_err(io_err(&link))?;
    }

    // Old versions are unreachable now; remove them.
    let entries = fs::read_dir(dir).map_err(io_err(dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_version = name
            .strip_prefix("..")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
        if is_version && name != version.as_str() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn write_layout(svid: &Svid, dir: &Path) -> Result<(), CaError> {
    for (name, contents) in [
        (CERT_CHAIN_FILE, &svid.cert_chain_pem),
        (KEY_FILE, &svid.key_pem),
        (ROOT_CERT_FILE, &svid.root_cert_pem),
    ] {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.tmp"));
        fs::write(&tmp, contents).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
    }
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> Result<(), CaError> {
    #[cfg(unix)]
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path))?;
        file.write_all(contents.as_bytes()).map_err(io_err(path))
    }
    #[cfg(not(unix))]
    {
        fs::write(path, contents).map_err(io_err(path))
    }
}

fn check_trust_domain(trust_domain: &str) -> Result<(), CaError> {
    if crate::spiffe::is_trust_domain(trust_domain) {
        Ok(())
    } else {
        Err(CaError::Invalid(format!(
            "{trust_domain:?} is not a SPIFFE trust domain (lowercase letters, digits, '.', '-', '_')"
        )))
    }
}

/// What `mesh-control ca issue` and `ca rotate` do: load the CA from `ca_dir` (with
/// `create`, generate and save one for `trust_domain` if the directory has none), issue an
/// SVID for `ns`/`sa` and write it into `out` in Istio's layout.
pub fn issue_to_dir(
    ca_dir: &Path,
    trust_domain: Option<&str>,
    ns: &str,
    sa: &str,
    validity: Duration,
    out: &Path,
    create: bool,
) -> Result<Svid, CaError> {
    let ca = if ca_dir.join(CA_CERT_FILE).exists() {
        let ca = DevCa::load(ca_dir)?;
        if let Some(td) = trust_domain.filter(|td| *td != ca.trust_domain()) {
            return Err(CaError::Invalid(format!(
                "the CA in {} is for trust domain {:?}, not {td:?}",
                ca_dir.display(),
                ca.trust_domain()
            )));
        }
        ca
    } else if create {
        let td = trust_domain.ok_or_else(|| {
            CaError::Invalid("give --trust-domain to create a new CA".to_string())
        })?;
        let ca = DevCa::generate(td)?;
        ca.save(ca_dir)?;
        ca
    } else {
        return Err(CaError::Invalid(format!(
            "no CA in {} (run `mesh-control ca issue` first)",
            ca_dir.display()
        )));
    };
    check_name("namespace", ns)?;
    check_name("service account", sa)?;
    let svid = ca.issue_svid(ns, sa, validity)?;
    svid.write_istio_layout(out)?;
    Ok(svid)
}

fn check_name(what: &str, name: &str) -> Result<(), CaError> {
    if crate::spiffe::is_path_segment(name) {
        Ok(())
    } else {
        Err(CaError::Invalid(format!(
            "{what} {name:?} cannot be a SPIFFE path segment (letters, digits, '.', '-', '_')"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;

    fn parse_pem(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .unwrap()
            .1
            .contents
    }

    #[test]
    fn ca_issues_proper_svid() {
        let ca = DevCa::generate("cluster.local").unwrap();
        let svid = ca
            .issue_svid("default", "greeter", Duration::from_secs(3600))
            .unwrap();
        let der = parse_pem(&svid.cert_chain_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let sans: Vec<String> = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::URI(u) => format!("uri:{u}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, ["uri:spiffe://cluster.local/ns/default/sa/greeter"]);
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(!bc.ca);
        let ku = cert.key_usage().unwrap().unwrap().value;
        assert!(ku.digital_signature() && ku.key_encipherment());
        assert!(!ku.key_cert_sign() && !ku.crl_sign());
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        assert_eq!(
            cert.issuer().to_string(),
            x509_parser::parse_x509_certificate(ca.root_cert_der())
                .unwrap()
                .1
                .subject()
                .to_string()
        );
        assert!(!svid.serial_hex.is_empty());
    }

    #[test]
    fn ca_save_load_round_trip_issues_under_same_root() {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::generate("cluster.local").unwrap();
        ca.save(dir.path()).unwrap();
        let loaded = DevCa::load(dir.path()).unwrap();
        assert_eq!(loaded.trust_domain(), "cluster.local");
        assert_eq!(loaded.root_cert_der(), ca.root_cert_der());
        let svid = loaded
            .issue_svid("ns1", "sa1", Duration::from_secs(60))
            .unwrap();
        assert_eq!(svid.root_cert_pem, ca.root_cert_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(dir.path().join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn ca_load_rejects_foreign_key() {
        let dir = tempfile::tempdir().unwrap();
        DevCa::generate("a.example")
            .unwrap()
            .save(dir.path())
            .unwrap();
        let other = tempfile::tempdir().unwrap();
        DevCa::generate("a.example")
            .unwrap()
            .save(other.path())
            .unwrap();
        fs::copy(other.path().join(CA_KEY_FILE), dir.path().join(CA_KEY_FILE)).unwrap();
        let err = DevCa::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn ca_rejects_bad_trust_domain_and_names() {
        assert!(DevCa::generate("Cluster.local").is_err());
        let dir = tempfile::tempdir().unwrap();
        let err = issue_to_dir(
            &dir.path().join("ca"),
            Some("cluster.local"),
            "default",
            "a/b",
            Duration::from_secs(60),
            &dir.path().join("out"),
            true,
        )
        .unwrap_err();
        assert!(err.to_string().contains("service account"), "{err}");
    }

    #[test]
    fn ca_issue_then_rotate_swaps_istio_layout() {
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        let out = dir.path().join("certs");
        let day = Duration::from_secs(86400);
        let err = issue_to_dir(&ca_dir, None, "default", "greeter", day, &out, false).unwrap_err();
        assert!(err.to_string().contains("no CA"), "{err}");
        let first = issue_to_dir(
            &ca_dir,
            Some("cluster.local"),
            "default",
            "greeter",
            day,
            &out,
            true,
        )
        .unwrap();
        assert!(ca_dir.join(CA_KEY_FILE).exists());
        assert!(
            !out.join(CA_KEY_FILE).exists(),
            "CA key stays out of the workload dir"
        );
        let read = |name: &str| fs::read_to_string(out.join(name)).unwrap();
        assert_eq!(read(CERT_CHAIN_FILE), first.cert_chain_pem);
        assert_eq!(read(KEY_FILE), first.key_pem);
        assert_eq!(read(ROOT_CERT_FILE), first.root_cert_pem);

        let second = issue_to_dir(&ca_dir, None, "default", "greeter", day, &out, false).unwrap();
        assert_ne!(first.serial_hex, second.serial_hex);
        assert_eq!(read(CERT_CHAIN_FILE), second.cert_chain_pem);
        assert_eq!(read(KEY_FILE), second.key_pem);
        assert_eq!(second.root_cert_pem, first.root_cert_pem);
        let versions = fs::read_dir(&out)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy().into_owned();
                name.starts_with("..") && name != "..data"
            })
            .count();
        assert!(versions <= 1, "old versions are cleaned up");

        let err = issue_to_dir(&ca_dir, Some("other.td"), "d", "g", day, &out, true).unwrap_err();
        assert!(err.to_string().contains("not \"other.td\""), "{err}");
    }

    #[test]
    fn ca_bad_cert_knobs() {
        let ca = DevCa::generate("cluster.local").unwrap();
        let now = SystemTime::now();
        let mut options = IssueOptions::svid("cluster.local", "d", "s", Duration::from_secs(60));
        options.is_ca = true;
        options.key_cert_sign = true;
        options.uri_sans.push("https://example.com/x".into());
        options.dns_sans.push("greeter.default.svc".into());
        options.not_before = now - Duration::from_secs(7200);
        options.not_after = now - Duration::from_secs(3600);
        let svid = ca.issue(&options).unwrap();
        let der = parse_pem(&svid.cert_chain_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
        assert!(cert.key_usage().unwrap().unwrap().value.key_cert_sign());
        assert_eq!(
            cert.subject_alternative_name()
                .unwrap()
                .unwrap()
                .value
                .general_names
                .len(),
            3
        );
        assert!(!cert.validity().is_valid());
    }
}
