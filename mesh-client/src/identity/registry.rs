//! Certificate provider instances of one bootstrap (gRFC A29), started once and shared, and
//! the TLS configs that xDS security settings (`UpstreamTlsContext`, `DownstreamTlsContext`)
//! turn into.
//!
//! A provider instance named by a cluster or filter chain is started on first use from the
//! bootstrap's `certificate_providers` entry and kept for the life of the process, so every
//! channel and server of the process shares one file watcher per instance.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rustls::{ClientConfig, ServerConfig};
use tokio::sync::watch;

use super::{FileWatcherProvider, PeerValidation, SanMatcher, SanType};
use crate::bootstrap::{Bootstrap, CertificateProviderConfig};
use crate::config::{self, DownstreamTls, UpstreamTls};

/// The started provider instances of one bootstrap.
#[derive(Debug)]
pub struct ProviderRegistry {
    configs: BTreeMap<String, CertificateProviderConfig>,
    started: Mutex<BTreeMap<String, Arc<FileWatcherProvider>>>,
}

type Registries = Mutex<
    Vec<(
        BTreeMap<String, CertificateProviderConfig>,
        Weak<ProviderRegistry>,
    )>,
>;

impl ProviderRegistry {
    /// The registry of `bootstrap`'s `certificate_providers`, shared by every caller with the
    /// same providers.
    pub fn for_bootstrap(bootstrap: &Bootstrap) -> Arc<ProviderRegistry> {
        static ALL: OnceLock<Registries> = OnceLock::new();
        let all = ALL.get_or_init(|| Mutex::new(Vec::new()));
        let mut all = match all.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        all.retain(|(_, w)| w.strong_count() > 0);
        if let Some(r) = all
            .iter()
            .find(|(c, _)| *c == bootstrap.certificate_providers)
            .and_then(|(_, w)| w.upgrade())
        {
            return r;
        }
        let r = Arc::new(ProviderRegistry {
            configs: bootstrap.certificate_providers.clone(),
            started: Mutex::new(BTreeMap::new()),
        });
        all.push((bootstrap.certificate_providers.clone(), Arc::downgrade(&r)));
        r
    }

    /// The provider `instance`, started on first use (inside a tokio runtime).
    pub fn get(&self, instance: &str) -> Result<Arc<FileWatcherProvider>, String> {
        let mut started = match self.started.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if let Some(p) = started.get(instance) {
            return Ok(p.clone());
        }
        let config = self.configs.get(instance).ok_or_else(|| {
            format!("certificate provider instance \"{instance}\" is not in the bootstrap's certificate_providers")
        })?;
        let provider = FileWatcherProvider::from_bootstrap(config)
            .map_err(|e| format!("certificate provider instance \"{instance}\": {e}"))?;
        let provider = Arc::new(provider);
        started.insert(instance.to_string(), provider.clone());
        Ok(provider)
    }

    /// Seconds until the identity certificate of each started instance expires (negative
    /// once expired), for the certificate-expiry signal.
    pub fn seconds_to_expiry(&self) -> Vec<(String, Option<i64>)> {
        let started = match self.started.lock() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        started
            .iter()
            .map(|(name, p)| (name.clone(), p.seconds_to_expiry()))
            .collect()
    }

    /// Client TLS configs for a cluster's `UpstreamTlsContext`, kept current as
    /// certificates rotate (`None` until the providers have material).
    pub fn client_tls(
        &self,
        tls: &UpstreamTls,
    ) -> Result<watch::Receiver<Option<Arc<ClientConfig>>>, String> {
        let roots = self.get(&tls.roots.instance_name)?;
        let identity = match &tls.identity {
            Some(i) => Some(self.get(&i.instance_name)?),
            None => None,
        };
        let policy = PeerValidation {
            match_subject_alt_names: tls.san_matchers.iter().map(san_matcher).collect(),
            ..PeerValidation::default()
        };
        Ok(super::watch_client_config(
            identity.map(|p| p.subscribe()),
            roots.subscribe(),
            policy,
        ))
    }

    /// Server TLS configs for a filter chain's `DownstreamTlsContext`.
    pub fn server_tls(
        &self,
        tls: &DownstreamTls,
    ) -> Result<watch::Receiver<Option<Arc<ServerConfig>>>, String> {
        let identity = self.get(&tls.identity.instance_name)?;
        let roots = match &tls.roots {
            Some(r) => Some(self.get(&r.instance_name)?),
            None => None,
        };
        Ok(super::watch_server_config(
            identity.subscribe(),
            roots.map(|p| p.subscribe()),
            PeerValidation::default(),
            tls.require_client_certificate,
        ))
    }
}

/// The verifier's SAN matcher for an xDS `match_subject_alt_names` entry.
fn san_matcher(m: &config::SanMatcher) -> SanMatcher {
    SanMatcher {
        san_type: match m.san_type {
            None => SanType::Any,
            Some(config::SanType::Dns) => SanType::Dns,
            Some(config::SanType::Uri) => SanType::Uri,
            Some(config::SanType::Email) => SanType::Email,
            Some(config::SanType::IpAddress) => SanType::IpAddress,
        },
        matcher: m.matcher.clone(),
    }
}
