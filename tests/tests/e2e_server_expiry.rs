//! The server side of certificate expiry (issue 8; certificates from gRFC A29 `file_watcher`
//! providers): a MeshServer drains each accepted mTLS connection when the earlier of its
//! two certificates, the client's or its own, reaches `notAfter`, and never presents an
//! expired certificate of its own.
//!
//! The clients here are plain rustls + hyper HTTP/2 connections, which do not watch
//! certificate lifetimes themselves (MeshChannel does, and would close first), so whatever
//! ends them is the server. Certificates come from mesh-control's dev CA, valid for a few
//! seconds; every loop is bounded by a count and a time limit.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use mesh_client::MeshChannel;
use mesh_client::bootstrap::Bootstrap;
use mesh_client::identity::{CertMaterial, FileWatcherConfig, PeerValidation, client_config};
use mesh_control::ca::DevCa;
use mesh_control::{ControlPlane, RunningControlPlane};
use mesh_server::StatsSnapshot;
use mesh_tests::server::{MeshGreeter, strict_greeter_resources};
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;

const DAY: Duration = Duration::from_secs(24 * 3600);
/// How long the short-lived certificates last: enough to start everything and see RPCs
/// succeed.
const SHORT: Duration = Duration::from_secs(8);
/// The slack allowed on when the server acts, after the certificate's last valid second.
const SLACK: Duration = Duration::from_secs(2);

/// Everything the server logs, also printed (visible with `--nocapture`).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        print!("{}", String::from_utf8_lossy(buf));
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

impl Logs {
    /// The log lines that contain every one of `needles`.
    fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .map(str::to_owned)
            .collect()
    }
}

/// The process's log capture (one subscriber per test binary: both tests share it, and
/// tell their lines apart by certificate serial numbers).
fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn,mesh_server=info"))
            .with_ansi(false)
            .with_writer(logs.clone())
            .try_init();
        logs
    })
}

/// A hyper HTTP/2 sender as the service under a tonic client.
#[derive(Clone)]
struct H2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tonic::codegen::Service<http::Request<tonic::body::Body>> for H2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}

/// One plain mTLS connection: a greeter client on it, the task driving it (it ends when
/// the connection closes), and the serial of the certificate the server presented.
struct RawConn {
    client: GreeterClient<H2>,
    driver: tokio::task::JoinHandle<Result<(), String>>,
    server_serial: String,
    /// The client's address, as the server logs it (`peer=`).
    local: SocketAddr,
}

/// The material of a certificate directory in Istio's layout.
fn material(dir: &Path) -> CertMaterial {
    CertMaterial::load(
        &FileWatcherConfig::from_json(&serde_json::json!({
            "certificate_file": dir.join("cert-chain.pem"),
            "private_key_file": dir.join("key.pem"),
            "ca_certificate_file": dir.join("root-cert.pem"),
        }))
        .unwrap(),
    )
    .unwrap()
}

/// TCP, TLS with `client_dir`'s certificate (presented whatever its validity: the point
/// is what the server does with it), HTTP/2.
async fn raw_connect(addr: SocketAddr, client_dir: &Path) -> Result<RawConn, String> {
    let material = material(client_dir);
    let tls = client_config(Some(&material), &material, &PeerValidation::default())
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("tcp: {e}"))?;
    let local = tcp.local_addr().map_err(|e| format!("tcp: {e}"))?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let stream = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_string())?
    .map_err(|e| format!("TLS handshake: {e}"))?;
    let server_serial = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(mesh_client::identity::peer_identity)
        .map(|p| p.serial_hex)
        .unwrap_or_default();
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    let driver = tokio::spawn(async move { conn.await.map_err(|e| error_chain(&e)) });
    let origin: http::Uri = format!("https://{addr}").parse().unwrap();
    Ok(RawConn {
        client: GreeterClient::with_origin(H2(sender), origin),
        driver,
        server_serial,
        local,
    })
}

/// An error and its sources, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    for _ in 0..10 {
        let Some(s) = source else { break };
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

/// One SayHello, bounded; the reply or the error.
async fn hello<T>(client: &mut GreeterClient<T>, name: &str) -> Result<String, String>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<tonic::codegen::StdError>,
    T::ResponseBody: tonic::codegen::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as tonic::codegen::Body>::Error: Into<tonic::codegen::StdError> + Send,
{
    match tokio::time::timeout(
        Duration::from_secs(5),
        client.say_hello(HelloRequest { name: name.into() }),
    )
    .await
    {
        Ok(Ok(r)) => Ok(r.into_inner().message),
        Ok(Err(e)) => Err(format!("{:?}: {}", e.code(), e.message())),
        Err(_) => Err("timed out after 5 s".into()),
    }
}

/// When a certificate is first expired: one second past `notAfter` (which is inclusive, at
/// one-second resolution).
fn expired_from(dir: &Path) -> SystemTime {
    let not_after = material(dir).identity().unwrap().not_after();
    not_after + Duration::from_secs(1)
}

/// Sleeps until `t` (not at all if it has passed).
async fn sleep_until(t: SystemTime) {
    tokio::time::sleep(t.duration_since(SystemTime::now()).unwrap_or_default()).await;
}

/// How far `t` is past `reference`, signed, for the printout.
fn offset(t: SystemTime, reference: SystemTime) -> String {
    match t.duration_since(reference) {
        Ok(d) => format!("+{d:.2?}"),
        Err(e) => format!("-{:.2?}", e.duration()),
    }
}

/// Waits (bounded by `until`) for `conn`'s driver to end; when it did, if it did.
async fn closed_by(conn: &mut RawConn, until: SystemTime) -> Option<SystemTime> {
    let left = until.duration_since(SystemTime::now()).unwrap_or_default();
    match tokio::time::timeout(left, &mut conn.driver).await {
        Ok(_) => Some(SystemTime::now()),
        Err(_) => None,
    }
}

/// A STRICT mTLS MeshServer greeter `id` with certificates in `server_dir` (reread every
/// 200 ms), its control plane, which also serves the client resources of
/// `xds:///greeter.default:8080` pointing at it.
async fn strict_server(id: &str, server_dir: &Path) -> (RunningControlPlane, MeshGreeter) {
    let tcp = MeshGreeter::bind().await;
    let addr = tcp.local_addr().unwrap();
    let cp = ControlPlane::raw(strict_greeter_resources(addr))
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let server = MeshGreeter::start(
        tcp,
        id,
        bootstrap(cp.local_addr(), &format!("srv-{id}"), server_dir),
    )
    .await;
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);
    (cp, server)
}

fn bootstrap(cp: SocketAddr, node: &str, certs: &Path) -> Bootstrap {
    let json = mesh_control::bootstrap::bootstrap_json_with_cert_refresh(
        &cp.to_string(),
        node,
        Some(certs),
        Duration::from_millis(200),
    );
    Bootstrap::from_json(&json.to_string()).unwrap()
}

fn stats(server: &MeshGreeter) -> StatsSnapshot {
    server.stats.snapshot()
}

/// (a) The client's certificate expires while it is connected. Before `notAfter` its RPCs
/// succeed, one in flight across the instant included; within the slack after it, the
/// server has drained the connection (one expiry, no open connection, one log line naming
/// the client's certificate); a new connection with the expired certificate fails its
/// handshake at the server, so RPCs fail, and never in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_expires_while_connected() {
    let logs = logs();
    let ca = DevCa::generate("cluster.local").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server_dir, client_dir) = (dir.path().join("server"), dir.path().join("client"));
    ca.issue_svid("default", "greeter", DAY)
        .unwrap()
        .write_istio_layout(&server_dir)
        .unwrap();
    let client_svid = ca.issue_svid("default", "caller", SHORT).unwrap();
    client_svid.write_istio_layout(&client_dir).unwrap();
    let expired = expired_from(&client_dir);

    let (cp, server) = strict_server("a", &server_dir).await;
    let mut conn = raw_connect(server.addr, &client_dir).await.unwrap();
    let who = hello(&mut conn.client, "whoami").await.unwrap();
    assert!(
        who.contains("spiffe://cluster.local/ns/default/sa/caller"),
        "{who}"
    );
    assert_eq!(stats(&server).connections_open, 1);
    let base = stats(&server);
    assert!(
        SystemTime::now() + Duration::from_secs(2) < expired,
        "setup took too long"
    );

    // RPCs until shortly before the expiry, then one that is in flight across it.
    let mut before_ok = 0;
    for i in 0..10_000 {
        if SystemTime::now() + Duration::from_millis(800) > expired {
            break;
        }
        hello(&mut conn.client, &format!("before-{i}"))
            .await
            .unwrap();
        before_ok += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut in_flight_client = conn.client.clone();
    let in_flight = tokio::spawn(async move { hello(&mut in_flight_client, "sleep-1200").await });
    let closed = closed_by(&mut conn, expired + SLACK).await;
    let in_flight = in_flight.await.unwrap();
    let after = stats(&server);
    let after_rpc = hello(&mut conn.client, "after").await;

    // A new connection with the expired certificate.
    let failures_before = after.tls_handshake_failures;
    // In TLS 1.3 the client's side of the handshake ends before the server has checked
    // its certificate, so the server's alert arrives on the connection.
    let retry = match raw_connect(server.addr, &client_dir).await {
        Ok(mut c) => match hello(&mut c.client, "retry").await {
            Ok(_) => Ok(()),
            Err(e) => {
                let conn = match tokio::time::timeout(Duration::from_secs(2), c.driver).await {
                    Ok(Ok(Err(why))) => why,
                    other => format!("{other:?}"),
                };
                Err(format!("{e}; the connection: {conn}"))
            }
        },
        Err(e) => Err(e),
    };
    let mut refused = stats(&server);
    for _ in 0..50 {
        if refused.tls_handshake_failures > failures_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        refused = stats(&server);
    }
    let drained = logs.lines_with(&[&client_svid.serial_hex, "draining the TLS connection"]);
    let rejected = logs.lines_with(&["TLS handshake failed", "expired"]);
    println!(
        "(a) client certificate (serial {}) expiring while connected: {before_ok} RPCs before, all ok; \
         in-flight RPC across the expiry: {in_flight:?}; connection closed by the server at expiry{}; \
         server: expired {} -> {}, open {} -> {}; RPC on the old connection: {after_rpc:?}; \
         reconnect with the expired certificate: {retry:?} (server handshake failures {} -> {})",
        client_svid.serial_hex,
        closed
            .map(|t| offset(t, expired))
            .unwrap_or_else(|| " never".into()),
        base.connections_expired,
        after.connections_expired,
        base.connections_open,
        after.connections_open,
        failures_before,
        refused.tls_handshake_failures,
    );
    println!("(a) server log: {drained:?}");
    println!("(a) server log: {rejected:?}");
    assert!(before_ok > 10, "RPCs before the expiry: {before_ok}");
    assert!(
        in_flight.is_ok(),
        "the in-flight RPC finishes: {in_flight:?}"
    );
    assert!(
        closed.is_some(),
        "the server closed the connection within {SLACK:?} of the expiry"
    );
    assert_eq!(after.connections_expired - base.connections_expired, 1);
    assert_eq!(after.connections_open, 0);
    assert!(after_rpc.is_err(), "{after_rpc:?}");
    assert!(retry.is_err(), "an expired client certificate is refused");
    assert_eq!(refused.tls_handshake_failures - failures_before, 1);
    assert_eq!(refused.connections_accepted, after.connections_accepted);
    assert_eq!(drained.len(), 1, "{drained:?}");
    assert!(
        drained[0].contains("the client's certificate spiffe://cluster.local/ns/default/sa/caller")
            && drained[0].contains("certificate=peer"),
        "{drained:?}"
    );
    server.stop().await;
    cp.shutdown().await;
}

/// (b) The server's own certificate expires while two clients are connected: both
/// connections are drained at `notAfter` (an RPC in flight across it finishes); while the
/// certificate stays expired the server refuses handshakes rather than present it, saying
/// why in its log; once its files are renewed, the clients reconnect (a MeshChannel by
/// itself) and RPCs succeed again, with the new certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_expires_while_clients_are_connected() {
    let logs = logs();
    let ca = DevCa::generate("cluster.local").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (server_dir, client_dir) = (dir.path().join("server"), dir.path().join("client"));
    let server_svid = ca.issue_svid("default", "greeter", SHORT).unwrap();
    server_svid.write_istio_layout(&server_dir).unwrap();
    ca.issue_svid("default", "caller", DAY)
        .unwrap()
        .write_istio_layout(&client_dir)
        .unwrap();
    let expired = expired_from(&server_dir);

    let (cp, server) = strict_server("b", &server_dir).await;
    let mut conns = Vec::new();
    for _ in 0..2 {
        let mut c = raw_connect(server.addr, &client_dir).await.unwrap();
        assert_eq!(c.server_serial, server_svid.serial_hex);
        hello(&mut c.client, "first").await.unwrap();
        conns.push(c);
    }
    let mesh = MeshChannel::builder("xds:///greeter.default:8080")
        .with_bootstrap(bootstrap(cp.local_addr(), "cli-b", &client_dir))
        .with_connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut mesh = GreeterClient::new(mesh);
    hello(&mut mesh, "first").await.unwrap();
    assert!(
        SystemTime::now() + Duration::from_secs(2) < expired,
        "setup took too long"
    );
    let base = stats(&server);

    let mut in_flight_client = conns[0].client.clone();
    sleep_until(expired - Duration::from_millis(600)).await;
    let in_flight = tokio::spawn(async move { hello(&mut in_flight_client, "sleep-1000").await });
    let mut closed = Vec::new();
    for c in conns.iter_mut() {
        closed.push(closed_by(c, expired + SLACK).await);
    }
    let in_flight = in_flight.await.unwrap();
    let after = stats(&server);

    // While the certificate stays expired, a new handshake is refused.
    let failures_before = stats(&server).tls_handshake_failures;
    let while_expired = raw_connect(server.addr, &client_dir).await.map(|_| ());
    let refusals = logs.lines_with(&[&server_svid.serial_hex, "refusing the TLS handshake"]);

    // Renewed: new connections present the new certificate and RPCs succeed.
    let renewed = ca.issue_svid("default", "greeter", DAY).unwrap();
    renewed.write_istio_layout(&server_dir).unwrap();
    let mut reconnected = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for _ in 0..2 {
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reconnect after renewal"
            );
            if let Ok(mut c) = raw_connect(server.addr, &client_dir).await
                && hello(&mut c.client, "again").await.is_ok()
            {
                reconnected.push(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The MeshChannel reconnects on its own (its backoff is at most a few seconds in).
    let mut mesh_back = Err(String::new());
    for _ in 0..300 {
        mesh_back = hello(&mut mesh, "again").await;
        if mesh_back.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = stats(&server);
    let drained: Vec<Vec<String>> = conns
        .iter()
        .map(|c| {
            logs.lines_with(&[
                &server_svid.serial_hex,
                "draining the TLS connection",
                &format!("peer={}", c.local),
            ])
        })
        .collect();
    println!(
        "(b) server certificate (serial {}) expiring with 2 clients connected: in-flight RPC across \
         the expiry: {in_flight:?}; connections closed at expiry{:?}; server: expired {} -> {}, \
         open (raw clients and MeshChannel) {} -> {}; handshake while expired: {while_expired:?} \
         (server handshake failures {} -> {}); after renewal (serial {}): {} raw clients \
         reconnected presenting serials {:?}, MeshChannel: {mesh_back:?}, open {}",
        server_svid.serial_hex,
        closed
            .iter()
            .map(|c| c
                .map(|t| offset(t, expired))
                .unwrap_or_else(|| "never".into()))
            .collect::<Vec<_>>(),
        base.connections_expired,
        after.connections_expired,
        base.connections_open,
        after.connections_open,
        failures_before,
        end.tls_handshake_failures,
        renewed.serial_hex,
        reconnected.len(),
        reconnected
            .iter()
            .map(|c| c.server_serial.as_str())
            .collect::<Vec<_>>(),
        end.connections_open,
    );
    println!("(b) server log: {drained:?}");
    println!("(b) server log: {:?}", refusals.first());
    assert!(
        in_flight.is_ok(),
        "the in-flight RPC finishes: {in_flight:?}"
    );
    assert!(
        closed.iter().all(Option::is_some),
        "both connections closed within {SLACK:?} of the expiry: {closed:?}"
    );
    // Each raw client's connection was drained once, for our certificate. (The
    // MeshChannel closes its own connection at the server certificate's notAfter too, so
    // whether the server also counts one for it depends on who is first.)
    assert!(after.connections_expired - base.connections_expired >= 2);
    assert_eq!(after.connections_open, 0);
    for lines in &drained {
        assert_eq!(lines.len(), 1, "{drained:?}");
        assert!(
            lines[0].contains("certificate=ours")
                && lines[0].contains(
                    "this server's own certificate spiffe://cluster.local/ns/default/sa/greeter"
                ),
            "{drained:?}"
        );
    }
    assert!(
        while_expired.is_err(),
        "an expired server certificate is never presented"
    );
    assert!(end.tls_handshake_failures > failures_before);
    assert!(
        !refusals.is_empty(),
        "the server logs why it refuses handshakes"
    );
    assert!(
        refusals.iter().all(|l| l
            .contains("own certificate spiffe://cluster.local/ns/default/sa/greeter")
            && l.contains("expired at")),
        "{refusals:?}"
    );
    assert_eq!(reconnected.len(), 2);
    assert!(
        reconnected
            .iter()
            .all(|c| c.server_serial == renewed.serial_hex)
    );
    assert!(mesh_back.is_ok(), "{mesh_back:?}");
    assert_eq!(end.connections_open, 3);
    server.stop().await;
    cp.shutdown().await;
}
