//! End-to-end gRFC A65: the xDS channel to mesh-control over TLS (`channel_creds` type
//! `tls`), the server certificate verified against `ca_certificate_file` and the
//! `server_uri` host name.

use mesh_examples::GreeterBackend;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use mesh_client::MeshChannel;
use mesh_client::bootstrap::Bootstrap;
use mesh_control::ca::{DevCa, IssueOptions};
use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::*;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;
use xds_proto::helloworld::greeter_client::GreeterClient;

/// A server-side TLS stream tonic can serve (tonic's own TLS features are off).
struct Tls(TlsStream<TcpStream>);

impl Connected for Tls {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Serves mesh-control's ADS over TLS on 127.0.0.1 with a `localhost` certificate from
/// `ca`, requiring a client certificate from `ca` when `mtls`; returns the port.
/// Handshake failures are dropped (the client sees them).
async fn serve_ads_over_tls(ca: &DevCa, config: MeshConfig, mtls: bool) -> u16 {
    let now = SystemTime::now();
    let leaf = ca
        .issue(&IssueOptions {
            uri_sans: vec![],
            dns_sans: vec!["localhost".into()],
            common_name: Some("localhost".into()),
            is_ca: false,
            key_cert_sign: false,
            not_before: now - Duration::from_secs(300),
            not_after: now + Duration::from_secs(24 * 3600),
        })
        .unwrap();
    let chain = CertificateDer::pem_slice_iter(leaf.cert_chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let provider = mesh_client::identity::crypto_provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if mtls {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.root_cert_der().to_vec()))
            .unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut server_config = builder.with_single_cert(chain, key).unwrap();
    server_config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));

    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Tls>>(16);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(Tls(tls))).await;
                    }
                    Ok(Err(e)) => tracing::info!("test ADS server: TLS handshake failed: {e}"),
                    Err(_) => tracing::info!("test ADS server: TLS handshake timed out"),
                }
            });
        }
    });
    let cp = ControlPlane::new(config).unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(cp.service())
            .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    port
}

fn tls_bootstrap(server_uri: &str, tls: serde_json::Value) -> Bootstrap {
    let json = serde_json::json!({
        "xds_servers": [{
            "server_uri": server_uri,
            "channel_creds": [{"type": "tls", "config": tls}],
            "server_features": ["xds_v3"]
        }],
        "node": {"id": "xds-tls", "cluster": "mesh-tests", "locality": {}}
    });
    Bootstrap::from_json(&json.to_string()).unwrap()
}

/// Connects `xds:///greeter.default:8080` through `bootstrap` (bounded: 5 s connect
/// timeout, 15 s overall).
async fn connect(bootstrap: Bootstrap) -> Result<MeshChannel, String> {
    tokio::time::timeout(
        Duration::from_secs(15),
        MeshChannel::builder("xds:///greeter.default:8080")
            .with_bootstrap(bootstrap)
            .with_connect_timeout(Duration::from_secs(5))
            .connect(),
    )
    .await
    .expect("connect() is bounded by its 5 s connect timeout")
    .map_err(|e| e.to_string())
}

/// 20 RPCs over `channel` succeed and reach both backends.
async fn twenty_rpcs(channel: MeshChannel) {
    let mut client = GreeterClient::new(channel);
    let counts = tokio::time::timeout(Duration::from_secs(15), spread(&mut client, 20))
        .await
        .expect("20 RPCs are bounded")
        .expect("20 RPCs succeed");
    assert_eq!(counts.values().sum::<usize>(), 20, "{counts:?}");
    assert_eq!(counts.len(), 2, "both backends serve: {counts:?}");
}

/// Backends, a CA, ADS over TLS from it, and a temp dir holding the CA's root.
async fn setup(mtls: bool) -> (Vec<GreeterBackend>, DevCa, u16, tempfile::TempDir) {
    let backends = start_backends(2).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let ca = DevCa::generate("cluster.local").unwrap();
    let config = MeshConfig::from_yaml(&greeter_yaml(&addrs)).unwrap();
    let port = serve_ads_over_tls(&ca, config, mtls).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root-cert.pem"), ca.root_cert_pem()).unwrap();
    (backends, ca, port, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_over_tls_verified_against_the_ca_file() {
    init_tracing();
    let (_backends, _ca, port, dir) = setup(false).await;
    let tls = serde_json::json!({"ca_certificate_file": dir.path().join("root-cert.pem")});
    let channel = connect(tls_bootstrap(&format!("localhost:{port}"), tls))
        .await
        .expect("MeshChannel connects over an xDS channel with TLS");
    twenty_rpcs(channel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_over_mtls_presents_the_client_certificate() {
    init_tracing();
    let (_backends, ca, port, dir) = setup(true).await;
    let client = ca
        .issue_svid("default", "xds-client", Duration::from_secs(24 * 3600))
        .unwrap();
    let (cert, key) = (
        dir.path().join("cert-chain.pem"),
        dir.path().join("key.pem"),
    );
    std::fs::write(&cert, &client.cert_chain_pem).unwrap();
    std::fs::write(&key, &client.key_pem).unwrap();
    let uri = format!("localhost:{port}");
    let ca_file = dir.path().join("root-cert.pem");

    let mtls = serde_json::json!({
        "ca_certificate_file": ca_file,
        "certificate_file": cert,
        "private_key_file": key,
        "refresh_interval": "60s",
    });
    let channel = connect(tls_bootstrap(&uri, mtls))
        .await
        .expect("MeshChannel connects over an xDS channel with mTLS");
    twenty_rpcs(channel).await;

    // Without a client certificate the server refuses the handshake.
    let message = connect(tls_bootstrap(
        &uri,
        serde_json::json!({"ca_certificate_file": ca_file}),
    ))
    .await
    .err()
    .unwrap_or_else(|| panic!("a server requiring a client certificate must refuse"));
    println!("connect() without a client certificate failed as it must: {message}");
    assert!(message.contains("greeter.default"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_over_tls_with_another_ca_fails_to_connect() {
    init_tracing();
    let (_backends, _ca, port, dir) = setup(false).await;
    let other = DevCa::generate("other.example").unwrap();
    let ca_file = dir.path().join("other-root-cert.pem");
    std::fs::write(&ca_file, other.root_cert_pem()).unwrap();
    let message = connect(tls_bootstrap(
        &format!("localhost:{port}"),
        serde_json::json!({"ca_certificate_file": ca_file}),
    ))
    .await
    .err()
    .unwrap_or_else(|| panic!("a server certificate from another CA must be refused"));
    println!("connect() failed as it must: {message}");
    assert!(message.contains("greeter.default"), "{message}");
    assert!(message.contains("invalid peer certificate"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ads_over_tls_checks_the_server_host_name() {
    init_tracing();
    let (_backends, _ca, port, dir) = setup(false).await;
    // The certificate is for `localhost`, not for the IP address.
    let message = connect(tls_bootstrap(
        &format!("127.0.0.1:{port}"),
        serde_json::json!({"ca_certificate_file": dir.path().join("root-cert.pem")}),
    ))
    .await
    .err()
    .unwrap_or_else(|| panic!("a certificate for another name must be refused"));
    println!("connect() to 127.0.0.1 failed as it must: {message}");
    assert!(message.contains("invalid peer certificate"), "{message}");
}
