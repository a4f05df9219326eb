//! The `file_watcher` certificate provider (gRFC A29; `spiffe_trust_bundle_map_file` from
//! gRFC A87; the same plugin serves the xDS channel's mTLS in gRFC A65).
//!
//! The provider reads its files by path every `refresh_interval` (default 600 s), so any way
//! of replacing them works, atomic symlink swaps included. What it reads becomes one
//! immutable [`CertMaterial`], published through a `tokio::sync::watch` channel only when the
//! bytes changed. A read that fails (a file missing or unreadable, PEM or JSON that does not
//! parse, a private key that does not belong to the certificate) keeps the previous material
//! in force, is logged, and increments [`FileWatcherProvider::reload_failures`]; a later
//! refresh tries again. If the first load fails there is no material, so handshakes fail
//! until a refresh succeeds (gRFC A87).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

use super::bundle::TrustBundleMap;
use super::crypto_provider;
use crate::bootstrap::CertificateProviderConfig;

/// The plugin name this provider implements.
pub const PLUGIN_NAME: &str = "file_watcher";
/// The refresh interval when the config gives none (gRFC A29).
pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::from_secs(600);

/// The published material, or `None` before the first successful load.
pub type MaterialWatch = watch::Receiver<Option<Arc<CertMaterial>>>;

/// A `file_watcher` plugin config (the `config` object of a `certificate_providers` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileWatcherConfig {
    /// `certificate_file`: the identity certificate chain, PEM, leaf first.
    pub certificate_file: Option<PathBuf>,
    /// `private_key_file`: the identity private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub private_key_file: Option<PathBuf>,
    /// `ca_certificate_file`: root certificates, PEM. Ignored when
    /// `spiffe_trust_bundle_map_file` is set (gRFC A87).
    pub ca_certificate_file: Option<PathBuf>,
    /// `spiffe_trust_bundle_map_file`: a SPIFFE trust bundle map, JSON.
    pub spiffe_trust_bundle_map_file: Option<PathBuf>,
    /// `refresh_interval`.
    pub refresh_interval: Duration,
}

/// Errors of the certificate provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider config is not usable.
    #[error("certificate provider config: {0}")]
    Config(String),
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A file's contents are not what they should be.
    #[error("{path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error("private key {key} does not match the certificate {cert}: {reason}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Detail from rustls.
        reason: String,
    },
    /// `start` was called outside a tokio runtime.
    #[error("the file_watcher certificate provider needs a tokio runtime")]
    NoRuntime,
}

impl FileWatcherConfig {
    /// Reads a bootstrap `certificate_providers` entry; the plugin must be `file_watcher`.
    pub fn from_bootstrap(entry: &CertificateProviderConfig) -> Result<Self, ProviderError> {
        if entry.plugin_name != PLUGIN_NAME {
            return Err(ProviderError::Config(format!(
                "unsupported plugin_name {:?} (only {PLUGIN_NAME:?} is implemented)",
                entry.plugin_name
            )));
        }
        Self::from_json(&entry.config)
    }

    /// Reads the plugin's `config` object, validating it as gRPC does: the certificate and
    /// the key come together or not at all, and at least one of identity or roots is set.
    pub fn from_json(config: &serde_json::Value) -> Result<Self, ProviderError> {
        let empty = serde_json::Map::new();
        let object = match config {
            serde_json::Value::Object(object) => object,
            serde_json::Value::Null => &empty,
            _ => return Err(ProviderError::Config("config must be a JSON object".into())),
        };
        let path = |name: &str| -> Result<Option<PathBuf>, ProviderError> {
            match object.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if s.is_empty() => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(PathBuf::from(s))),
                Some(_) => Err(ProviderError::Config(format!("{name} must be a string"))),
            }
        };
        let refresh_interval = match object.get("refresh_interval") {
            None | Some(serde_json::Value::Null) => DEFAULT_REFRESH_INTERVAL,
            Some(serde_json::Value::String(s)) => parse_proto_duration(s)
                .map_err(|e| ProviderError::Config(format!("refresh_interval: {e}")))?,
            Some(_) => {
                return Err(ProviderError::Config(
                    "refresh_interval must be a duration string such as \"600s\"".into(),
                ));
            }
        };
        let config = Self {
            certificate_file: path("certificate_file")?,
            private_key_file: path("private_key_file")?,
            ca_certificate_file: path("ca_certificate_file")?,
            spiffe_trust_bundle_map_file: path("spiffe_trust_bundle_map_file")?,
            refresh_interval,
        };
        if config.certificate_file.is_some() != config.private_key_file.is_some() {
            return Err(ProviderError::Config(
                "certificate_file and private_key_file must be set together".into(),
            ));
        }
        if config.certificate_file.is_none()
            && config.ca_certificate_file.is_none()
            && config.spiffe_trust_bundle_map_file.is_none()
        {
            return Err(ProviderError::Config(
                "set certificate_file + private_key_file, ca_certificate_file, or spiffe_trust_bundle_map_file"
                    .into(),
            ));
        }
        Ok(config)
    }
}

/// A protobuf JSON `Duration`: decimal seconds with an `s` suffix (`"600s"`, `"0.1s"`).
/// Zero means the default.
fn parse_proto_duration(text: &str) -> Result<Duration, String> {
    let number = text
        .strip_suffix('s')
        .ok_or_else(|| format!("{text:?} is not a duration such as \"600s\""))?;
    let seconds: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as \"600s\""))?;
    if seconds == 0.0 {
        return Ok(DEFAULT_REFRESH_INTERVAL);
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// A workload's own certificate: what it presents in handshakes.
#[derive(Debug, Clone)]
pub struct Identity {
    certified_key: Arc<CertifiedKey>,
    serial_hex: String,
    not_after: SystemTime,
    /// `notAfter` as the certificate states it, for messages.
    not_after_text: String,
    uri_sans: Vec<String>,
    cert_path: PathBuf,
}

impl Identity {
    /// Parses a PEM chain (leaf first) and a PEM private key, checking that the key belongs
    /// to the leaf. `cert_path`/`key_path` only name the files in errors.
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<Self, ProviderError> {
        let parse = |path: &Path, reason: String| ProviderError::Parse {
            path: path.to_path_buf(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| parse(cert_path, format!("bad PEM: {e}")))?;
        let Some(leaf) = chain.first() else {
            return Err(parse(cert_path, "no CERTIFICATE in the file".into()));
        };
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| parse(cert_path, format!("bad certificate: {e}")))?;
        let serial_hex = hex(cert.raw_serial());
        let not_after = unix_to_system(cert.validity().not_after.timestamp());
        let not_after_text = cert.validity().not_after.to_string();
        let uri_sans = super::verify::uri_sans(&cert);

        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| parse(key_path, format!("bad private key PEM: {e}")))?;
        let signing_key = crypto_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|e| parse(key_path, format!("unusable private key: {e}")))?;
        let certified_key = CertifiedKey::new(chain, signing_key);
        match certified_key.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                tracing::debug!(
                    key = %key_path.display(),
                    "cannot tell whether the private key matches the certificate"
                );
            }
            Err(e) => {
                return Err(ProviderError::KeyMismatch {
                    cert: cert_path.to_path_buf(),
                    key: key_path.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(Self {
            certified_key: Arc::new(certified_key),
            serial_hex,
            not_after,
            not_after_text,
            uri_sans,
            cert_path: cert_path.to_path_buf(),
        })
    }

    /// The chain and signing key, as rustls uses them.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// The leaf's serial number, lowercase hex without separators.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }

    /// The leaf's `notAfter`.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The leaf's URI SANs (its SPIFFE ID, for an SVID).
    pub fn uri_sans(&self) -> &[String] {
        &self.uri_sans
    }

    /// Seconds until `notAfter`; negative once expired.
    pub fn seconds_to_expiry(&self) -> i64 {
        seconds_between(SystemTime::now(), self.not_after)
    }

    /// The file the certificate was read from.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Whether the leaf has expired at `now` (X.509: valid through `notAfter` inclusive).
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        now > self.not_after
    }

    /// What to tell the user when this certificate has expired: which certificate (its
    /// SPIFFE ID, serial and file), when, and what to do.
    pub fn expired_message(&self) -> String {
        let who = self.uri_sans.first().map_or("", String::as_str);
        format!(
            "own identity certificate {who} (serial {}, {}) expired at {} (notAfter); \
             no TLS connection is made with it: renew the certificate file",
            self.serial_hex,
            self.cert_path.display(),
            self.not_after_text
        )
    }
}

/// What a peer's certificate is verified against.
#[derive(Debug, Clone)]
pub enum Roots {
    /// `ca_certificate_file`: one root set; standard X.509 verification.
    Certificates(Vec<CertificateDer<'static>>),
    /// `spiffe_trust_bundle_map_file`: roots per trust domain; SPIFFE verification.
    SpiffeBundles(TrustBundleMap),
}

impl Roots {
    /// Parses a PEM file of root certificates (at least one).
    pub fn from_pem(pem: &[u8], path: &Path) -> Result<Self, ProviderError> {
        let parse = |reason: String| ProviderError::Parse {
            path: path.to_path_buf(),
            reason,
        };
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| parse(format!("bad PEM: {e}")))?;
        if roots.is_empty() {
            return Err(parse("no CERTIFICATE in the file".into()));
        }
        for root in &roots {
            webpki::anchor_from_trusted_cert(root)
                .map_err(|e| parse(format!("not a usable root certificate: {e}")))?;
        }
        Ok(Self::Certificates(roots))
    }
}

/// One consistent snapshot of a provider's files. Immutable; replaced whole on reload.
#[derive(Debug, Clone)]
pub struct CertMaterial {
    identity: Option<Identity>,
    roots: Option<Roots>,
}

impl CertMaterial {
    /// Material from parts (for code that has certificates from elsewhere, and tests).
    pub fn new(identity: Option<Identity>, roots: Option<Roots>) -> Self {
        Self { identity, roots }
    }

    /// Reads and parses every file `config` names.
    pub fn load(config: &FileWatcherConfig) -> Result<Self, ProviderError> {
        FileBytes::read(config)?.parse(config)
    }

    /// The identity certificate and key, when the provider has them.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The roots, when the provider has them.
    pub fn roots(&self) -> Option<&Roots> {
        self.roots.as_ref()
    }
}

/// The raw file contents, compared between refreshes so unchanged files publish nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileBytes {
    cert: Option<Vec<u8>>,
    key: Option<Vec<u8>>,
    ca: Option<Vec<u8>>,
    bundle: Option<Vec<u8>>,
}

fn read(path: Option<&Path>) -> Result<Option<Vec<u8>>, ProviderError> {
    path.map(|path| {
        std::fs::read(path).map_err(|e| ProviderError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    })
    .transpose()
}

impl FileBytes {
    fn read(config: &FileWatcherConfig) -> Result<Self, ProviderError> {
        let bundle = read(config.spiffe_trust_bundle_map_file.as_deref())?;
        Ok(Self {
            cert: read(config.certificate_file.as_deref())?,
            key: read(config.private_key_file.as_deref())?,
            // gRFC A87: with a bundle map, ca_certificate_file is ignored.
            ca: match bundle {
                Some(_) => None,
                None => read(config.ca_certificate_file.as_deref())?,
            },
            bundle,
        })
    }

    fn parse(&self, config: &FileWatcherConfig) -> Result<CertMaterial, ProviderError> {
        let identity = match (
            &self.cert,
            &self.key,
            &config.certificate_file,
            &config.private_key_file,
        ) {
            (Some(cert), Some(key), Some(cert_path), Some(key_path)) => {
                Some(Identity::from_pem(cert, key, cert_path, key_path)?)
            }
            _ => None,
        };
        let roots = match (&self.bundle, &self.ca) {
            (Some(bundle), _) => {
                let path = config
                    .spiffe_trust_bundle_map_file
                    .clone()
                    .unwrap_or_default();
                Some(Roots::SpiffeBundles(
                    TrustBundleMap::from_json(bundle).map_err(|e| ProviderError::Parse {
                        path,
                        reason: e.to_string(),
                    })?,
                ))
            }
            (None, Some(ca)) => {
                let path = config.ca_certificate_file.clone().unwrap_or_default();
                Some(Roots::from_pem(ca, &path)?)
            }
            (None, None) => None,
        };
        Ok(CertMaterial { identity, roots })
    }
}

struct Shared {
    config: FileWatcherConfig,
    sender: watch::Sender<Option<Arc<CertMaterial>>>,
    last_seen: Mutex<Option<FileBytes>>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl Shared {
    /// One refresh: returns whether new material was published.
    fn refresh(&self) -> Result<bool, ProviderError> {
        let result = FileBytes::read(&self.config).and_then(|bytes| {
            let mut last = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
            if last.as_ref() == Some(&bytes) {
                return Ok(None);
            }
            // Remember bad bytes too, so one bad file is logged and counted once, not every
            // refresh; any change to any file is tried again.
            *last = Some(bytes.clone());
            bytes.parse(&self.config).map(Some)
        });
        match result {
            Ok(None) => Ok(false),
            Ok(Some(material)) => {
                let serial = material.identity().map(|i| i.serial_hex().to_owned());
                self.sender.send_replace(Some(Arc::new(material)));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    serial = serial.as_deref().unwrap_or("-"),
                    "certificate material loaded"
                );
                Ok(true)
            }
            Err(e) => {
                // An unreadable file may come back unchanged; forget it so the next refresh
                // reads again.
                if matches!(e, ProviderError::Read { .. }) {
                    *self.last_seen.lock().unwrap_or_else(|e| e.into_inner()) = None;
                }
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "certificate reload failed; keeping the previous material");
                Err(e)
            }
        }
    }
}

/// A running `file_watcher` provider instance. Dropping it stops the refresh task; the
/// receivers it handed out keep the last material.
pub struct FileWatcherProvider {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FileWatcherProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcherProvider")
            .field("config", &self.shared.config)
            .field("reload_failures", &self.reload_failures())
            .finish_non_exhaustive()
    }
}

impl FileWatcherProvider {
    /// Starts a provider from a bootstrap `certificate_providers` entry.
    pub fn from_bootstrap(entry: &CertificateProviderConfig) -> Result<Self, ProviderError> {
        Self::start(FileWatcherConfig::from_bootstrap(entry)?)
    }

    /// Loads the files once now (a failure is logged and counted, and leaves no material)
    /// and starts refreshing every `refresh_interval` on the current tokio runtime.
    pub fn start(config: FileWatcherConfig) -> Result<Self, ProviderError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ProviderError::NoRuntime)?;
        let interval = config.refresh_interval;
        let (sender, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            config,
            sender,
            last_seen: Mutex::new(None),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        });
        let _ = shared.refresh();
        let weak = Arc::downgrade(&shared);
        let task = handle.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let refreshed = tokio::task::spawn_blocking(move || {
                    let _ = shared.refresh();
                })
                .await;
                if refreshed.is_err() {
                    return;
                }
            }
        });
        Ok(Self { shared, task })
    }

    /// The current material (`None` until a load has succeeded).
    pub fn current(&self) -> Option<Arc<CertMaterial>> {
        self.shared.sender.borrow().clone()
    }

    /// A receiver that sees every new material.
    pub fn subscribe(&self) -> MaterialWatch {
        self.shared.sender.subscribe()
    }

    /// Re-reads the files now, as a refresh would: `Ok(true)` if new material was
    /// published, `Ok(false)` if nothing changed.
    pub fn refresh_now(&self) -> Result<bool, ProviderError> {
        self.shared.refresh()
    }

    /// The config this instance runs with.
    pub fn config(&self) -> &FileWatcherConfig {
        &self.shared.config
    }

    /// How many loads failed (the first load included).
    pub fn reload_failures(&self) -> u64 {
        self.shared.reload_failures.load(Ordering::Relaxed)
    }

    /// How many times new material was published.
    pub fn reloads(&self) -> u64 {
        self.shared.reloads.load(Ordering::Relaxed)
    }

    /// Seconds until the current identity certificate expires (negative once expired);
    /// `None` without an identity certificate. The certificate-expiry signal of the issue.
    pub fn seconds_to_expiry(&self) -> Option<i64> {
        self.current()?.identity().map(Identity::seconds_to_expiry)
    }
}

impl Drop for FileWatcherProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_to_system(seconds: i64) -> SystemTime {
    let magnitude = Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH
            .checked_add(magnitude)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    } else {
        SystemTime::UNIX_EPOCH
            .checked_sub(magnitude)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

fn seconds_between(from: SystemTime, to: SystemTime) -> i64 {
    match to.duration_since(from) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}
