//! The `tls_probe` step: the harness itself dials a server's test port to prove what the
//! Listener's `DownstreamTlsContext` (gRFC A29) made of it, independently of the client under
//! test: plaintext is refused, TLS without a client certificate is refused
//! (`require_client_certificate`), and mTLS with the client's SVID is accepted by a server
//! presenting the expected SPIFFE ID (gRFC A87).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use mesh_client::identity::{
    CertMaterial, FileWatcherConfig, PeerValidation, client_config, peer_identity,
};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xds_proto::grpc_testing::Empty;
use xds_proto::grpc_testing::test_service_client::TestServiceClient;

/// Bound on each of the probe's connections.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP/2 client connection preface and an empty SETTINGS frame: what a gRPC client
/// writes first, so an accepting server answers with its own SETTINGS.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// A `tls_probe` step (the scenario must set `mtls`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsProbe {
    /// The server (by index) whose test port is dialled.
    pub server: usize,
}

impl TlsProbe {
    /// Runs the three probes against `addr`: `client_certs` is the client's Istio-layout
    /// directory, `server_id` the SPIFFE ID the server must present. Returns what was seen.
    pub async fn run(
        &self,
        addr: SocketAddr,
        client_certs: &Path,
        server_id: &str,
    ) -> anyhow::Result<String> {
        if plaintext_call(addr).await.is_ok() {
            bail!("a plaintext EmptyCall to {addr} succeeded: the server does not require TLS");
        }
        let material = load_material(client_certs)?;
        if let Ok((_, presented)) = tls_exchange(addr, None, &material).await {
            bail!(
                "TLS without a client certificate was accepted by {addr} (presenting \
                 {presented}): the server does not require client certificates"
            );
        }
        let (bytes, presented) = tls_exchange(addr, Some(&material), &material)
            .await
            .with_context(|| format!("mTLS with the client's certificate to {addr}"))?;
        if presented != server_id {
            bail!("the server presented {presented}, want {server_id}");
        }
        Ok(format!(
            "server {}: plaintext refused; TLS without client certificate refused; mTLS \
             accepted ({bytes} bytes of HTTP/2), server presented {presented}",
            self.server
        ))
    }
}

fn load_material(dir: &Path) -> anyhow::Result<CertMaterial> {
    let config = FileWatcherConfig::from_json(&serde_json::json!({
        "certificate_file": dir.join(mesh_control::ca::CERT_CHAIN_FILE),
        "private_key_file": dir.join(mesh_control::ca::KEY_FILE),
        "ca_certificate_file": dir.join(mesh_control::ca::ROOT_CERT_FILE),
    }))
    .map_err(|e| anyhow!("client certificates in {}: {e}", dir.display()))?;
    CertMaterial::load(&config).map_err(|e| anyhow!("loading {}: {e}", dir.display()))
}

/// A plaintext (h2c) EmptyCall; `Ok` if the server answered it.
async fn plaintext_call(addr: SocketAddr) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(PROBE_TIMEOUT)
        .timeout(PROBE_TIMEOUT)
        .connect()
        .await?;
    TestServiceClient::new(channel).empty_call(Empty {}).await?;
    Ok(())
}

/// A TLS handshake (presenting `identity`'s certificate if given), then the HTTP/2 preface;
/// `Ok((bytes read, the server's SPIFFE ID))` if the server answered with data.
async fn tls_exchange(
    addr: SocketAddr,
    identity: Option<&CertMaterial>,
    validation: &CertMaterial,
) -> anyhow::Result<(usize, String)> {
    let tls = client_config(identity, validation, &PeerValidation::default())
        .map_err(|e| anyhow!("client TLS config: {e}"))?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let mut stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let presented = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(peer_identity)
            .and_then(|p| p.spiffe_id)
            .map(|id| id.to_string())
            .unwrap_or_else(|| "no SPIFFE ID".into());
        stream.write_all(H2_PREFACE).await?;
        stream.flush().await?;
        let mut buf = [0u8; 64];
        let n = stream.read(&mut buf).await.context("reading the answer")?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        anyhow::Ok((n, presented))
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow!("no answer within {PROBE_TIMEOUT:?}"))?
}
