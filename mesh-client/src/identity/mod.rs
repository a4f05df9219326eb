//! Workload identity for mTLS: SPIFFE IDs, certificate providers, rustls configs and the
//! verifiers that check a peer's SPIFFE identity.
//!
//! - [`spiffe`]: SPIFFE IDs, parsed as the SPIFFE ID standard says.
//! - [`bundle`]: SPIFFE trust bundle maps (gRFC A87).
//! - [`provider`]: the `file_watcher` certificate provider of the bootstrap's
//!   `certificate_providers` (gRFC A29, A65, A87), publishing [`CertMaterial`] through a
//!   `tokio::sync::watch` as files are replaced on disk.
//! - [`verify`]: rustls verifiers doing chain validation plus the SPIFFE checks of gRFC A87
//!   and the `match_subject_alt_names` SAN matching of gRFC A29 — and no hostname check, as
//!   gRPC's xDS credentials do none.
//! - [`config`]: `rustls::ClientConfig` / `ServerConfig` (ALPN `h2`) built from material,
//!   rebuilt when it changes, and [`PeerTlsIdentity`] extracted from a verified peer.
//!
//! ```no_run
//! # async fn run(bootstrap: mesh_client::bootstrap::Bootstrap) -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_client::identity::{FileWatcherProvider, PeerValidation, SanMatcher, watch_client_config};
//!
//! let Some(provider_config) = bootstrap.certificate_providers.get("default") else { return Ok(()) };
//! let provider = FileWatcherProvider::from_bootstrap(provider_config)?;
//! let policy = PeerValidation::default()
//!     .with_san(SanMatcher::exact_uri("spiffe://cluster.local/ns/default/sa/greeter"));
//! let configs = watch_client_config(Some(provider.subscribe()), provider.subscribe(), policy);
//! if let Some(config) = configs.borrow().clone() {
//!     let connector = tokio_rustls::TlsConnector::from(config);
//!     # let _ = connector;
//! }
//! # Ok(()) }
//! ```

pub mod bundle;
pub mod config;
pub mod provider;
pub mod registry;
pub mod spiffe;
pub mod verify;

#[cfg(test)]
mod tests;

use std::sync::{Arc, OnceLock};

pub use bundle::{BundleError, TrustBundle, TrustBundleMap};
pub use config::{
    PeerTlsIdentity, TlsConfigError, client_config, peer_identity, server_config,
    watch_client_config, watch_server_config,
};
pub use provider::{
    CertMaterial, FileWatcherConfig, FileWatcherProvider, Identity, MaterialWatch, ProviderError,
    Roots,
};
pub use registry::ProviderRegistry;
pub use spiffe::{SpiffeError, SpiffeId};
pub use verify::{
    IdentityError, PeerValidation, SanMatcher, SanType, SpiffeClientVerifier, SpiffeServerVerifier,
};

/// The rustls crypto provider the mesh uses: ring, or aws-lc-rs with the `aws-lc-rs`
/// feature. It is passed explicitly to every config, so the process-wide default (if an
/// application installs one) does not matter.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            #[cfg(feature = "aws-lc-rs")]
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            #[cfg(not(feature = "aws-lc-rs"))]
            let provider = rustls::crypto::ring::default_provider();
            Arc::new(provider)
        })
        .clone()
}
