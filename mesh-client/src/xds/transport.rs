//! The channel to an xDS server: `server_uri` parsing and connection (gRFC A27 bootstrap
//! `xds_servers`), and the reconnect backoff of the ADS stream (gRFC A57, with gRPC's
//! connection-backoff parameters), over plaintext or TLS/mTLS (gRFC A65 `tls` channel
//! credentials).
//!
//! With `tls`, the server certificate is verified as ordinary TLS does: chained to the
//! `ca_certificate_file` roots and matching the `server_uri` host name. The certificate
//! files are re-read on every connection attempt, so rotated files are picked up on
//! reconnect.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::client::WebPkiServerVerifier;
use rustls::sign::SingleCertAndKey;
use rustls_pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

use super::XdsError;
use crate::bootstrap::{ChannelCreds, XdsServer};
use crate::identity::crypto_provider;
use crate::identity::provider::{CertMaterial, FileWatcherConfig, Roots};

/// Connection timeout of one attempt (gRPC's minimum connect timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Where an xDS server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ServerAddr {
    /// `host:port` or `dns:///host:port`, as an `http://` URI.
    Tcp(String),
    /// `unix:/path` or `unix:///path`.
    Unix(String),
}

/// Parses a bootstrap `server_uri`.
pub(crate) fn parse_server_uri(uri: &str) -> Result<ServerAddr, XdsError> {
    let unsupported = |why: &str| XdsError::UnsupportedServerUri {
        uri: uri.to_string(),
        reason: why.to_string(),
    };
    if let Some(rest) = uri.strip_prefix("unix:") {
        // `unix:///path` has an empty authority; `unix:/path` none; `unix:path` is relative.
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.is_empty() {
            return Err(unsupported("empty unix socket path"));
        }
        return Ok(ServerAddr::Unix(path.to_string()));
    }
    let host_port = if let Some(rest) = uri.strip_prefix("dns:") {
        match rest.strip_prefix("///") {
            Some(hp) => hp,
            None if rest.starts_with("//") => {
                return Err(unsupported(
                    "a DNS authority (dns://authority/...) is not supported",
                ));
            }
            None => rest,
        }
    } else if uri.contains("://") {
        return Err(unsupported(
            "scheme not supported (use host:port, dns:///, unix:)",
        ));
    } else {
        uri
    };
    if host_port.is_empty() || host_port.contains('/') {
        return Err(unsupported("expected host:port"));
    }
    let http = format!("http://{host_port}");
    let parsed: Uri = http
        .parse()
        .map_err(|_| unsupported("not a valid host:port"))?;
    if parsed.port_u16().is_none() {
        return Err(unsupported("missing port"));
    }
    Ok(ServerAddr::Tcp(http))
}

/// Validates gRFC A65 `tls` channel-credentials config and returns the files it names.
///
/// There are no system roots in this build, so `ca_certificate_file` is required.
pub(crate) fn tls_files(config: &serde_json::Value) -> Result<FileWatcherConfig, XdsError> {
    let has_ca = config
        .get("ca_certificate_file")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_ca {
        return Err(XdsError::UnsupportedChannelCreds(
            "tls without ca_certificate_file is not supported (no system roots)".to_string(),
        ));
    }
    let mut files = FileWatcherConfig::from_json(config)
        .map_err(|e| XdsError::UnsupportedChannelCreds(format!("tls config: {e}")))?;
    // Not an A65 field: the xDS server is verified against ca_certificate_file only.
    files.spiffe_trust_bundle_map_file = None;
    Ok(files)
}

/// Reads the certificate files and builds the client TLS config: WebPKI verification
/// (with host name) against the CA file, the identity certificate if configured, ALPN h2.
pub(crate) fn tls_client_config(files: &FileWatcherConfig) -> Result<Arc<ClientConfig>, String> {
    let material = CertMaterial::load(files).map_err(|e| e.to_string())?;
    let Some(Roots::Certificates(certs)) = material.roots() else {
        return Err("tls: no root certificates (ca_certificate_file)".to_string());
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert.clone())
            .map_err(|e| format!("tls: unusable root certificate: {e}"))?;
    }
    let provider = crypto_provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("tls: server verifier: {e}"))?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_webpki_verifier(verifier);
    let mut config = match material.identity() {
        None => builder.with_no_client_auth(),
        Some(id) => builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(
            id.certified_key().clone(),
        ))),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Opens TCP to `uri`'s host and port and completes a TLS handshake verified for its host.
async fn connect_tls(
    uri: Uri,
    files: Arc<FileWatcherConfig>,
) -> Result<TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>, std::io::Error> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let host = uri
        .host()
        .ok_or_else(|| invalid(format!("{uri}: no host")))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_string();
    let port = uri
        .port_u16()
        .ok_or_else(|| invalid(format!("{uri}: no port")))?;
    let config = tls_client_config(&files).map_err(std::io::Error::other)?;
    let name = ServerName::try_from(host.clone())
        .map_err(|e| invalid(format!("{host:?} is not a TLS server name: {e}")))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        tcp.set_nodelay(true)?;
        // Flattened (an io::Error wrapping a rustls::Error shows the cause twice in chains).
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| std::io::Error::other(format!("TLS handshake with {host:?}: {e}")))
    };
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS connect timed out")
        })??;
    Ok(TokioIo::new(tls))
}

/// Connects to an xDS server (channel ready, in gRFC A57 terms, when this returns).
pub(crate) async fn connect(server: &XdsServer) -> Result<Channel, XdsError> {
    let tls = match &server.channel_creds {
        ChannelCreds::Insecure => None,
        ChannelCreds::Tls(config) => Some(Arc::new(tls_files(config)?)),
    };
    let transport_err = |e: tonic::transport::Error| XdsError::Transport {
        server: server.server_uri.clone(),
        message: error_chain(&e),
    };
    match (parse_server_uri(&server.server_uri)?, tls) {
        (ServerAddr::Tcp(uri), None) => {
            let endpoint = Endpoint::from_shared(uri)
                .map_err(transport_err)?
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true);
            endpoint.connect().await.map_err(transport_err)
        }
        (ServerAddr::Tcp(uri), Some(files)) => {
            // The scheme stays `http`: TLS is done by the connector, not by tonic.
            let endpoint = Endpoint::from_shared(uri)
                .map_err(transport_err)?
                .connect_timeout(CONNECT_TIMEOUT);
            let connector = tower::service_fn(move |uri: Uri| connect_tls(uri, files.clone()));
            endpoint
                .connect_with_connector(connector)
                .await
                .map_err(transport_err)
        }
        (ServerAddr::Unix(_), Some(_)) => Err(XdsError::UnsupportedChannelCreds(
            "tls over a unix: server_uri is not supported".to_string(),
        )),
        (ServerAddr::Unix(path), None) => {
            // The URI is required by tonic but unused by the connector.
            let endpoint =
                Endpoint::from_static("http://localhost").connect_timeout(CONNECT_TIMEOUT);
            let connector = tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            });
            endpoint
                .connect_with_connector(connector)
                .await
                .map_err(transport_err)
        }
    }
}

pub(crate) use crate::transport::error_chain;

/// Exponential backoff for ADS stream attempts: 1 s base, ×1.6, ±20 % jitter, 120 s cap.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const BASE: Duration = Duration::from_secs(1);
    const MULTIPLIER: f64 = 1.6;
    const JITTER: f64 = 0.2;
    const MAX: Duration = Duration::from_secs(120);

    /// A fresh backoff.
    pub(crate) fn new() -> Self {
        Backoff { next: Self::BASE }
    }

    /// Back to the base delay (after a stream that received a response).
    pub(crate) fn reset(&mut self) {
        self.next = Self::BASE;
    }

    /// The delay before the next attempt, jittered with `unit` in `[0, 1)`.
    pub(crate) fn next_delay_with(&mut self, unit: f64) -> Duration {
        let base = self.next;
        let grown = base.as_secs_f64() * Self::MULTIPLIER;
        self.next = Duration::from_secs_f64(grown.min(Self::MAX.as_secs_f64()));
        let factor = 1.0 + Self::JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        Duration::from_secs_f64(base.as_secs_f64() * factor)
    }

    /// The delay before the next attempt.
    pub(crate) fn next_delay(&mut self) -> Duration {
        self.next_delay_with(rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_uri_forms() {
        let tcp = |s: &str| Ok(ServerAddr::Tcp(s.to_string()));
        let unix = |s: &str| Ok(ServerAddr::Unix(s.to_string()));
        assert_eq!(
            parse_server_uri("localhost:18000"),
            tcp("http://localhost:18000")
        );
        assert_eq!(
            parse_server_uri("dns:///istiod.istio-system.svc:15010"),
            tcp("http://istiod.istio-system.svc:15010")
        );
        assert_eq!(parse_server_uri("dns:host:1"), tcp("http://host:1"));
        assert_eq!(parse_server_uri("[::1]:8080"), tcp("http://[::1]:8080"));
        assert_eq!(
            parse_server_uri("unix:/tmp/xds.sock"),
            unix("/tmp/xds.sock")
        );
        assert_eq!(
            parse_server_uri("unix:///tmp/xds.sock"),
            unix("/tmp/xds.sock")
        );
        assert_eq!(
            parse_server_uri("unix:relative.sock"),
            unix("relative.sock")
        );
    }

    #[test]
    fn bad_server_uris() {
        for bad in [
            "",
            "localhost",
            "dns://8.8.8.8/host:1",
            "https://host:1",
            "unix:",
            "host:1/path",
            "xds:///foo",
        ] {
            let err = parse_server_uri(bad).err();
            assert!(
                matches!(&err, Some(XdsError::UnsupportedServerUri { uri, .. }) if uri == bad),
                "{bad:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn tls_files_need_a_ca_and_are_read_per_config() {
        let err =
            tls_files(&serde_json::json!({"certificate_file": "/c", "private_key_file": "/k"}));
        assert!(
            matches!(&err, Err(XdsError::UnsupportedChannelCreds(m)) if m.contains("no system roots")),
            "{err:?}"
        );
        let files = tls_files(&serde_json::json!({
            "ca_certificate_file": "/nonexistent/ca.pem",
            "spiffe_trust_bundle_map_file": "/ignored.json",
        }));
        let files = match files {
            Ok(files) => files,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(files.spiffe_trust_bundle_map_file, None);
        let err = tls_client_config(&files).err().unwrap_or_default();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let ca = mesh_control::ca::DevCa::generate("cluster.local").unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.root_cert_pem()).unwrap();
        let files = tls_files(&serde_json::json!({"ca_certificate_file": ca_file}));
        let config = files
            .map_err(|e| e.to_string())
            .and_then(|f| tls_client_config(&f));
        match config {
            Ok(config) => assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]),
            Err(e) => panic!("{e}"),
        }
        std::fs::write(&ca_file, "not pem").unwrap();
        let files = tls_files(&serde_json::json!({"ca_certificate_file": ca_file}));
        let err = files
            .map_err(|e| e.to_string())
            .and_then(|f| tls_client_config(&f));
        assert!(err.is_err(), "a CA file without certificates is refused");
    }

    #[test]
    fn backoff_grows_jitters_caps_and_resets() {
        let mut b = Backoff::new();
        assert_eq!(b.next_delay_with(0.5), Duration::from_secs(1));
        assert_eq!(b.next_delay_with(0.5), Duration::from_secs_f64(1.6));
        let third = b.next_delay_with(0.0);
        assert!((third.as_secs_f64() - 2.56 * 0.8).abs() < 1e-9, "{third:?}");
        for _ in 0..30 {
            b.next_delay_with(0.5);
        }
        assert_eq!(b.next_delay_with(0.5), Duration::from_secs(120));
        assert_eq!(b.next_delay_with(1.0), Duration::from_secs(144));
        b.reset();
        assert_eq!(b.next_delay_with(0.5), Duration::from_secs(1));
        let random = b.next_delay();
        assert!(random >= Duration::from_secs_f64(1.28) && random <= Duration::from_secs_f64(1.92));
    }
}
