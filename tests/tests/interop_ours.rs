//! Interop row (ours, ours, mesh-control): our `interop-server` and `interop-client`
//! processes against mesh-control in process, checked through the client's
//! LoadBalancerStatsService the way gRPC's xDS test driver checks them.
//!
//! The binaries live in another package (`mesh-examples`), so `CARGO_BIN_EXE_*` is not
//! available here: the test finds them next to its own executable (`target/debug/`, the
//! parent of `deps/`) and first runs `cargo build -p mesh-examples --bins` once with the
//! cargo that runs the test (`env!("CARGO")`), so they are never stale. Set
//! `MESH_INTEROP_SKIP_BUILD=1` to skip that build (e.g. when it was just done).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mesh_control::{ControlPlane, MeshConfig, RunningControlPlane};
use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use xds_proto::grpc_testing::client_configure_request::{Metadata, RpcType};
use xds_proto::grpc_testing::load_balancer_stats_service_client::LoadBalancerStatsServiceClient;
use xds_proto::grpc_testing::xds_update_client_configure_service_client::XdsUpdateClientConfigureServiceClient;
use xds_proto::grpc_testing::{
    ClientConfigureRequest, LoadBalancerAccumulatedStatsRequest, LoadBalancerStatsRequest,
    LoadBalancerStatsResponse,
};

/// `target/debug`, after building the interop binaries there (once per test process).
fn bin_dir() -> PathBuf {
    mesh_tests::binaries::our_bin_dir().expect("our interop binaries")
}

/// Distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

fn bootstrap(cp: SocketAddr, node: &str) -> String {
    mesh_control::bootstrap_json(&cp.to_string(), node).to_string()
}

fn command(bin: &str, cp: SocketAddr, node: &str) -> Command {
    let mut cmd = Command::new(bin_dir().join(bin));
    cmd.env_remove("GRPC_XDS_BOOTSTRAP")
        .env("GRPC_XDS_BOOTSTRAP_CONFIG", bootstrap(cp, node))
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn connect(port: u16, limit: Duration) -> Channel {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(2));
        match endpoint.connect().await {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("port {port} never accepted: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// mesh-control, two interop servers (hostnames s1, s2) and one interop client.
struct Mesh {
    _cp: RunningControlPlane,
    children: Vec<Child>,
    stats: LoadBalancerStatsServiceClient<Channel>,
    configure: XdsUpdateClientConfigureServiceClient<Channel>,
}

impl Mesh {
    async fn start(client_args: &[&str]) -> Mesh {
        let ports = free_ports(5);
        let (servers, maint, stats_port) = (&ports[0..2], &ports[2..4], ports[4]);
        let mut yaml =
            String::from("services:\n  - name: server.default\n    port: 8080\n    endpoints:\n");
        for p in servers {
            yaml += &format!("      - address: 127.0.0.1:{p}\n");
        }
        let config = MeshConfig::from_yaml(&yaml).expect("valid mesh.yaml");
        let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config)
            .await
            .expect("control plane starts");
        let mut children = Vec::new();
        for (i, (port, m)) in servers.iter().zip(maint).enumerate() {
            let name = format!("s{}", i + 1);
            let child = command("interop-server", cp.local_addr(), &format!("server-{name}"))
                .args(["--port", &port.to_string()])
                .args(["--maintenance_port", &m.to_string()])
                .args(["--server_id", &name, "--host_name_override", &name])
                .args(["--bind_host", "127.0.0.1", "--secure_mode=false"])
                .spawn()
                .expect("spawn interop-server");
            children.push(child);
        }
        for m in maint {
            wait_serving(*m, Duration::from_secs(30)).await;
        }
        let client = command("interop-client", cp.local_addr(), "client")
            .args(["--server", "xds:///server.default:8080"])
            .args(["--qps", "50", "--num_channels", "1"])
            .args(["--stats_port", &stats_port.to_string()])
            .args(["--rpc_timeout", "5s"])
            .args(client_args)
            .spawn()
            .expect("spawn interop-client");
        children.push(client);
        let channel = connect(stats_port, Duration::from_secs(30)).await;
        Mesh {
            _cp: cp,
            children,
            stats: LoadBalancerStatsServiceClient::new(channel.clone()),
            configure: XdsUpdateClientConfigureServiceClient::new(channel),
        }
    }

    async fn stats(&mut self, num_rpcs: i32, timeout_sec: i32) -> LoadBalancerStatsResponse {
        let call = self.stats.get_client_stats(LoadBalancerStatsRequest {
            num_rpcs,
            timeout_sec,
            metadata_keys: vec!["hostname".into()],
        });
        tokio::time::timeout(Duration::from_secs(timeout_sec as u64 + 10), call)
            .await
            .expect("GetClientStats answers within its timeout")
            .expect("GetClientStats")
            .into_inner()
    }

    /// Waits (bounded) until a block of RPCs reaches both servers without failure.
    async fn warm_up(&mut self) {
        for _ in 0..10 {
            let s = self.stats(20, 10).await;
            if s.num_failures == 0 && s.rpcs_by_peer.len() == 2 {
                return;
            }
        }
        panic!("the client never reached both servers without failures");
    }

    async fn unary_metadata(&mut self, behavior: &str) {
        self.configure
            .configure(ClientConfigureRequest {
                types: vec![RpcType::UnaryCall as i32],
                metadata: vec![Metadata {
                    r#type: RpcType::UnaryCall as i32,
                    key: "rpc-behavior".into(),
                    value: behavior.into(),
                }],
                timeout_sec: 0,
            })
            .await
            .expect("Configure");
    }
}

async fn wait_serving(port: u16, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut health = HealthClient::new(connect(port, limit).await);
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status());
        if matches!(status, Ok(ServingStatus::Serving)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "maintenance port {port} never reported SERVING (last: {status:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// gRPC's ping_pong: every backend gets traffic, no RPC fails; with round robin over two
/// backends each gets about half of 100 RPCs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong() {
    mesh_tests::init_tracing();
    let mut mesh = Mesh::start(&[]).await;
    mesh.warm_up().await;
    let s = mesh.stats(100, 20).await;
    println!(
        "ping_pong: by peer {:?}, failures {}",
        s.rpcs_by_peer, s.num_failures
    );
    assert_eq!(s.num_failures, 0, "{s:?}");
    assert_eq!(s.rpcs_by_peer.values().sum::<i32>(), 100, "{s:?}");
    for host in ["s1", "s2"] {
        let n = s.rpcs_by_peer.get(host).copied().unwrap_or(0);
        assert!((40..=60).contains(&n), "{host} got {n} of 100: {s:?}");
    }
    let unary = &s.rpcs_by_method["UnaryCall"].rpcs_by_peer;
    assert_eq!(unary.values().sum::<i32>(), 100);
    // metadata_keys ["hostname"]: one entry per RPC, the header the server sent.
    let s1 = &s.metadatas_by_peer["s1"].rpc_metadata;
    assert_eq!(s1.len() as i32, s.rpcs_by_peer["s1"]);
    assert!(
        s1.iter()
            .all(|m| m.metadata.len() == 1 && m.metadata[0].value == "s1"),
        "{s1:?}"
    );
}

/// `rpc-behavior` set through Configure: `error-code-5` fails every RPC with NOT_FOUND;
/// `hostname=s1 error-code-5` fails only the RPCs that reach s1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_behavior_error_code_and_hostname_filter() {
    mesh_tests::init_tracing();
    let mut mesh = Mesh::start(&[]).await;
    mesh.warm_up().await;

    mesh.unary_metadata("error-code-5").await;
    let s = mesh.stats(50, 20).await;
    println!(
        "error-code-5: by peer {:?}, failures {}",
        s.rpcs_by_peer, s.num_failures
    );
    assert_eq!(s.num_failures, 50, "{s:?}");
    assert!(s.rpcs_by_peer.is_empty(), "{s:?}");
    let acc = mesh
        .stats
        .get_client_accumulated_stats(LoadBalancerAccumulatedStatsRequest {})
        .await
        .expect("GetClientAccumulatedStats")
        .into_inner();
    let unary = &acc.stats_per_method["UNARY_CALL"];
    assert!(unary.result.get(&5).copied().unwrap_or(0) >= 50, "{acc:?}");
    assert!(unary.result.get(&0).copied().unwrap_or(0) > 0, "{acc:?}");

    mesh.unary_metadata("hostname=s1 error-code-5").await;
    let s = mesh.stats(100, 20).await;
    println!(
        "hostname=s1 error-code-5: by peer {:?}, failures {}",
        s.rpcs_by_peer, s.num_failures
    );
    assert!(!s.rpcs_by_peer.contains_key("s1"), "{s:?}");
    let s2 = s.rpcs_by_peer.get("s2").copied().unwrap_or(0);
    assert_eq!(s2 + s.num_failures, 100, "{s:?}");
    assert!((40..=60).contains(&s2), "s2 got {s2} of 100: {s:?}");
}

/// `--fail_on_failed_rpc`: once an RPC has succeeded, the first failed one ends the client
/// with a non-zero exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_on_failed_rpc_exits_non_zero() {
    mesh_tests::init_tracing();
    let mut mesh = Mesh::start(&["--fail_on_failed_rpc"]).await;
    mesh.warm_up().await;
    mesh.unary_metadata("error-code-14").await;
    let client = mesh.children.last_mut().expect("the client process");
    let status = tokio::time::timeout(Duration::from_secs(20), client.wait())
        .await
        .expect("the client exits after a failed RPC")
        .expect("wait for the client");
    assert!(!status.success(), "exit status {status}");
}
