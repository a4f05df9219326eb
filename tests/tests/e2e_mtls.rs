//! End-to-end mTLS with SPIFFE identities (gRFC A29, A87): certificates from mesh-control's
//! dev CA in Istio's file layout, read by the bootstrap's `file_watcher` provider; real
//! rustls handshakes between MeshChannel and MeshServer.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use mesh_client::MeshChannel;
use mesh_client::bootstrap::Bootstrap;
use mesh_control::ca::DevCa;
use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::server::*;
use mesh_tests::*;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;
use xds_proto::type_url;

/// Resources of one type: `(name, resource)`.
type Named = Vec<(String, xds_proto::protobuf::Any)>;
/// Resources by type URL.
type ByType = Vec<(String, Named)>;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn certs(ca: &DevCa, dir: &Path, sa: &str) -> String {
    let svid = ca.issue_svid("default", sa, DAY).unwrap();
    svid.write_istio_layout(dir).unwrap();
    svid.serial_hex
}

fn bootstrap(cp: SocketAddr, node: &str, certs: Option<&Path>, refresh: Duration) -> Bootstrap {
    let json = mesh_control::bootstrap::bootstrap_json_with_cert_refresh(
        &cp.to_string(),
        node,
        certs,
        refresh,
    );
    Bootstrap::from_json(&json.to_string()).unwrap()
}

/// Client resources for `service` (its own mTLS mode) pointing at `addr`; inbound
/// Listeners dropped (the server's comes from its own translation).
fn client_resources(
    service: &str,
    mode: &str,
    addr: SocketAddr,
) -> Vec<(String, Vec<(String, xds_proto::protobuf::Any)>)> {
    let yaml = format!(
        "services:\n  - name: {service}\n    port: 8080\n    mtls: {mode}\n    service_account: greeter\n    endpoints:\n      - address: {addr}\n"
    );
    let snap = mesh_control::translate(&MeshConfig::from_yaml(&yaml).unwrap()).unwrap();
    snap.resources
        .into_iter()
        .map(|(t, mut v)| {
            v.retain(|(n, _)| !n.starts_with("xds.istio.io/"));
            (t.to_string(), v)
        })
        .collect()
}

/// The server's inbound Listener for `mode`, with an optional authorization block.
fn inbound(
    mode: &str,
    addr: SocketAddr,
    authorization: &str,
) -> (String, xds_proto::protobuf::Any) {
    let yaml = format!(
        "services:\n  - name: greeter.default\n    port: 8080\n    mtls: {mode}\n    endpoints:\n      - address: {addr}\n{authorization}"
    );
    let snap = mesh_control::translate(&MeshConfig::from_yaml(&yaml).unwrap()).unwrap();
    let name = inbound_name(addr);
    let any = snap
        .get(type_url::LISTENER, &name)
        .expect("inbound listener")
        .clone();
    (name, any)
}

fn merge(
    sets: Vec<ByType>,
    server: (String, xds_proto::protobuf::Any),
) -> std::collections::BTreeMap<String, Named> {
    let mut out: std::collections::BTreeMap<String, Named> = Default::default();
    for set in sets {
        for (t, v) in set {
            out.entry(t).or_default().extend(v);
        }
    }
    out.entry(type_url::LISTENER.to_string())
        .or_default()
        .push(server);
    out
}

async fn hello(channel: &MeshChannel) -> Result<String, tonic::Status> {
    GreeterClient::new(channel.clone())
        .say_hello(HelloRequest { name: "m".into() })
        .await
        .map(|r| r.into_inner().message)
}

/// {plaintext client, mTLS client} × {DISABLE, PERMISSIVE, STRICT server}.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_matrix() {
    init_tracing();
    let ca = DevCa::generate("cluster.local").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server_dir, client_dir) = (dir.path().join("server"), dir.path().join("client"));
    certs(&ca, &server_dir, "greeter");
    certs(&ca, &client_dir, "caller");

    let mut table = Vec::new();
    for mode in ["DISABLE", "PERMISSIVE", "STRICT"] {
        let tcp = MeshGreeter::bind().await;
        let addr = tcp.local_addr().unwrap();
        let resources = merge(
            vec![
                client_resources("plain.default", "DISABLE", addr),
                client_resources("secure.default", "STRICT", addr),
            ],
            inbound(mode, addr, ""),
        );
        let cp = ControlPlane::raw(resources)
            .listen(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let server_boot = bootstrap(
            cp.local_addr(),
            &format!("srv-{mode}"),
            Some(&server_dir),
            Duration::from_secs(10),
        );
        let server = MeshGreeter::start(tcp, mode, server_boot).await;
        assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);

        let client_boot = bootstrap(
            cp.local_addr(),
            &format!("cli-{mode}"),
            Some(&client_dir),
            Duration::from_secs(10),
        );
        let plain = MeshChannel::builder("xds:///plain.default:8080")
            .with_bootstrap(client_boot.clone())
            .with_connect_timeout(Duration::from_secs(3))
            .connect()
            .await
            .unwrap();
        let secure = MeshChannel::builder("xds:///secure.default:8080")
            .with_bootstrap(client_boot)
            .with_connect_timeout(Duration::from_secs(3))
            .connect()
            .await
            .unwrap();
        let p = hello(&plain).await;
        let s = hello(&secure).await;
        println!(
            "{mode:<10} plaintext: {:?}",
            p.as_ref().map_err(|e| e.message().to_string())
        );
        println!(
            "{mode:<10} mTLS:      {:?}",
            s.as_ref().map_err(|e| e.message().to_string())
        );
        table.push((
            mode,
            p.is_ok(),
            s.is_ok(),
            s.err().map(|e| e.message().to_string()),
        ));
        server.stop().await;
    }
    let expected = [
        ("DISABLE", true, false),
        ("PERMISSIVE", true, true),
        ("STRICT", false, true),
    ];
    for ((mode, p, s, _), (m, ep, es)) in table.iter().zip(expected) {
        assert_eq!((*mode, *p, *s), (m, ep, es), "cell mismatch: {table:?}");
    }
}

/// RBAC on a SPIFFE principal over real mTLS: one caller allowed, another denied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_on_spiffe_principal() {
    init_tracing();
    let ca = DevCa::generate("cluster.local").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server_dir, alice_dir, bob_dir) = (
        dir.path().join("s"),
        dir.path().join("a"),
        dir.path().join("b"),
    );
    certs(&ca, &server_dir, "greeter");
    certs(&ca, &alice_dir, "alice");
    certs(&ca, &bob_dir, "bob");
    let tcp = MeshGreeter::bind().await;
    let addr = tcp.local_addr().unwrap();
    let authz = "    authorization:\n      policies:\n        - name: only-alice\n          principals: [\"spiffe://cluster.local/ns/default/sa/alice\"]\n";
    let resources = merge(
        vec![client_resources("secure.default", "STRICT", addr)],
        inbound("STRICT", addr, authz),
    );
    let cp = ControlPlane::raw(resources)
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let server = MeshGreeter::start(
        tcp,
        "authz",
        bootstrap(
            cp.local_addr(),
            "srv",
            Some(&server_dir),
            Duration::from_secs(10),
        ),
    )
    .await;
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);
    let channel = |d: &Path, node: &str| {
        MeshChannel::builder("xds:///secure.default:8080")
            .with_bootstrap(bootstrap(
                cp.local_addr(),
                node,
                Some(d),
                Duration::from_secs(10),
            ))
            .connect()
    };
    let alice = channel(&alice_dir, "alice").await.unwrap();
    let bob = channel(&bob_dir, "bob").await.unwrap();
    assert_eq!(hello(&alice).await.unwrap(), "Hello m from authz");
    let denied = hello(&bob).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
    server.stop().await;
}

/// Certificates replaced on disk under continuous load: zero failed RPCs, and new
/// connections present the new certificate (asserted by serial number).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load() {
    init_tracing();
    let ca = DevCa::generate("cluster.local").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server_dir, client_dir) = (dir.path().join("s"), dir.path().join("c"));
    let first_serial = certs(&ca, &server_dir, "greeter");
    certs(&ca, &client_dir, "caller");
    let tcp = MeshGreeter::bind().await;
    let addr = tcp.local_addr().unwrap();
    let resources = merge(
        vec![client_resources("greeter.default", "STRICT", addr)],
        inbound("STRICT", addr, ""),
    );
    let cp = ControlPlane::raw(resources)
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let refresh = Duration::from_millis(200);
    let server = MeshGreeter::start(
        tcp,
        "rot",
        bootstrap(cp.local_addr(), "srv", Some(&server_dir), refresh),
    )
    .await;
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);
    assert_eq!(peer_serial(addr, &client_dir).await, first_serial);

    let client = greeter_client(bootstrap(
        cp.local_addr(),
        "cli",
        Some(&client_dir),
        refresh,
    ))
    .await;
    let load = Load::start(client, 4, 50_000, Duration::from_secs(60));
    assert!(load.wait_for_ok(300, Duration::from_secs(30)).await);
    let second_serial = certs(&ca, &server_dir, "greeter");
    assert_ne!(first_serial, second_serial);
    // New connections present the new certificate within a few refresh intervals.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if peer_serial(addr, &client_dir).await == second_serial {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server never presented the new certificate"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = load.ok_so_far();
    assert!(load.wait_for_ok(now + 300, Duration::from_secs(30)).await);
    let report = load.finish().await;
    println!(
        "rotation under load: {} ok, {} failed; serial {first_serial} -> {second_serial}",
        report.ok, report.failed
    );
    assert_eq!(report.failed, 0, "{:?}", report.errors);
    server.stop().await;
}

/// The serial number of the certificate the server presents on a new TLS connection.
async fn peer_serial(addr: SocketAddr, client_dir: &Path) -> String {
    use mesh_client::identity::{
        CertMaterial, FileWatcherConfig, PeerValidation, client_config, peer_identity,
    };
    let config = FileWatcherConfig::from_json(&serde_json::json!({
        "certificate_file": client_dir.join("cert-chain.pem"),
        "private_key_file": client_dir.join("key.pem"),
        "ca_certificate_file": client_dir.join("root-cert.pem"),
    }))
    .unwrap();
    let material = CertMaterial::load(&config).unwrap();
    let tls = client_config(Some(&material), &material, &PeerValidation::default()).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let certs = stream.get_ref().1.peer_certificates().unwrap().to_vec();
    peer_identity(&certs).unwrap().serial_hex
}
