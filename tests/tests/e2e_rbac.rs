//! End-to-end RBAC (gRFC A41): mesh.yaml authorization → mesh-control inbound Listener →
//! MeshServer enforcement, called through MeshChannel.

use std::time::Duration;

use mesh_client::MeshChannel;
use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::server::*;
use mesh_tests::*;
use tonic::Code;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;

struct Rig {
    _cp: mesh_control::RunningControlPlane,
    server: MeshGreeter,
    channel: MeshChannel,
}

/// Everything the servers log at info and above, for asserting shadow-decision logs.
static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "warn,mesh_server::rbac::shadow=info",
        ))
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init();
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

async fn rig(authorization: &str) -> Rig {
    capture_logs();
    let listener = MeshGreeter::bind().await;
    let addr = listener.local_addr().unwrap();
    let yaml = format!(
        "{}    authorization:\n{authorization}",
        greeter_yaml(&[addr])
    );
    let config = MeshConfig::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config)
        .await
        .unwrap();
    let server = MeshGreeter::start(
        listener,
        "rbac",
        server_bootstrap(cp.local_addr(), "srv", false),
    )
    .await;
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);
    let channel = MeshChannel::builder("xds:///greeter.default:8080")
        .with_bootstrap(bootstrap_for(cp.local_addr(), "rbac-client"))
        .connect()
        .await
        .unwrap();
    Rig {
        _cp: cp,
        server,
        channel,
    }
}

async fn hello(channel: &MeshChannel, user: Option<&str>) -> Result<String, (Code, String)> {
    let mut req = tonic::Request::new(HelloRequest { name: "r".into() });
    if let Some(u) = user {
        req.metadata_mut().insert("x-user", u.parse().unwrap());
    }
    GreeterClient::new(channel.clone())
        .say_hello(req)
        .await
        .map(|r| r.into_inner().message)
        .map_err(|s| (s.code(), s.message().to_string()))
}

async fn health(channel: &MeshChannel) -> Result<(), (Code, String)> {
    tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
        .map_err(|s| (s.code(), s.message().to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_by_method() {
    let r = rig("      action: allow\n      policies:\n        - name: hello-only\n          methods: [\"/helloworld.Greeter/SayHello\"]\n").await;
    assert!(hello(&r.channel, None).await.is_ok());
    let denied = health(&r.channel).await.unwrap_err();
    assert_eq!(denied.0, Code::PermissionDenied, "{denied:?}");
    assert!(denied.1.contains("RBAC"), "{denied:?}");
    let s = r.server.stats.snapshot();
    assert_eq!((s.rbac_allowed, s.rbac_denied), (1, 1), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_by_header() {
    let r = rig("      policies:\n        - name: alice\n          headers: [{ name: x-user, exact: alice }]\n").await;
    assert_eq!(
        hello(&r.channel, Some("alice")).await.unwrap(),
        "Hello r from rbac"
    );
    assert_eq!(
        hello(&r.channel, Some("bob")).await.unwrap_err().0,
        Code::PermissionDenied
    );
    assert_eq!(
        hello(&r.channel, None).await.unwrap_err().0,
        Code::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_policy() {
    let r = rig("      action: deny\n      policies:\n        - name: no-mallory\n          methods: [\"/helloworld.Greeter/*\"]\n          headers: [{ name: x-user, exact: mallory }]\n").await;
    let denied = hello(&r.channel, Some("mallory")).await.unwrap_err();
    assert_eq!(denied.0, Code::PermissionDenied);
    assert!(
        denied.1.contains("no-mallory"),
        "names the policy: {denied:?}"
    );
    assert!(hello(&r.channel, Some("alice")).await.is_ok());
    assert!(
        health(&r.channel).await.is_ok(),
        "DENY only denies what matches"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_route_override() {
    // Deny-all (ALLOW with no policies), but SayHello's route disables RBAC and health's
    // route has its own policy requiring x-user: ops.
    let r = rig("      action: allow\n      policies: []\n      per_route:\n        - path: /helloworld.Greeter/SayHello\n          disabled: true\n        - prefix: /grpc.health.v1.Health/\n          action: allow\n          policies:\n            - name: ops\n              headers: [{ name: x-user, exact: ops }]\n").await;
    assert!(
        hello(&r.channel, None).await.is_ok(),
        "RBAC disabled for SayHello"
    );
    assert_eq!(
        health(&r.channel).await.unwrap_err().0,
        Code::PermissionDenied
    );
    let mut h = tonic_health::pb::health_client::HealthClient::new(r.channel.clone());
    let mut req = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    req.metadata_mut().insert("x-user", "ops".parse().unwrap());
    assert!(
        h.check(req).await.is_ok(),
        "the per-route policy allows ops"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_rule_is_counted_but_not_enforced() {
    let r = rig("      action: allow\n      policies:\n        - name: anyone\n          methods: [\"/helloworld.Greeter/SayHello\"]\n      shadow:\n        action: deny\n        policies:\n          - name: would-deny-mallory\n            headers: [{ name: x-user, exact: mallory }]\n").await;
    assert!(
        hello(&r.channel, Some("mallory")).await.is_ok(),
        "shadow rules never deny"
    );
    assert!(hello(&r.channel, Some("alice")).await.is_ok());
    let s = r.server.stats.snapshot();
    assert_eq!(s.shadow_denied, 1, "{s:?}");
    assert_eq!(s.shadow_allowed, 1, "{s:?}");
    assert_eq!(s.rbac_denied, 0, "{s:?}");
    let logs = logs();
    assert!(
        logs.contains("RBAC shadow decision") && logs.contains("would-deny-mallory"),
        "the shadow decision is logged: {logs}"
    );
}
