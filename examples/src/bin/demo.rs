//! The demo: mesh-control in process, three xDS-managed greeter backends (MeshServer), one
//! MeshChannel client.
//!
//! 1. Serves `greeter.default:8080` over ADS with three endpoints and sends 1000 RPCs:
//!    round robin spreads them evenly.
//! 2. Pushes an 80/20 split between subsets v1 and v2 and sends 1000 more.
//! 3. Shows server-side RBAC: a call the policy does not allow is denied, and a shadow
//!    (dry-run) rule reports what it would have denied without affecting the call.
//! 4. Pushes `mtls: STRICT`: every workload has a SPIFFE certificate from mesh-control's dev
//!    CA (Istio's file layout, read by the bootstrap's `file_watcher` provider); calls then
//!    run over mTLS and the demo prints the caller's and the callee's identities.
//! 5. Serves the OpenTelemetry metrics (gRFC A66, A78 and the mesh's own) as Prometheus
//!    text on `http://127.0.0.1:<port>/metrics` and prints a few lines of it.
//!
//! Exits non-zero if a spread is off by more than 5 points or RBAC misbehaves.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use mesh_client::MeshChannel;
use mesh_client::bootstrap::Bootstrap;
use mesh_control::{ControlPlane, MeshConfig};
use mesh_examples::{GreeterBackend, backend_of};
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;

const RPCS: usize = 1000;

/// Server-side authorization for every backend: only SayHello is allowed; a shadow rule
/// would deny callers sending `x-user: mallory`.
const AUTHORIZATION: &str = "    authorization:
      action: allow
      policies:
        - name: greeter-callers
          methods: [\"/helloworld.Greeter/SayHello\"]
      shadow:
        action: deny
        policies:
          - name: would-deny-mallory
            headers: [{ name: x-user, exact: mallory }]
";

fn mesh_yaml(backends: &[std::net::SocketAddr], split: bool) -> String {
    mesh_yaml_with(backends, split, "DISABLE")
}

fn mesh_yaml_with(backends: &[std::net::SocketAddr], split: bool, mtls: &str) -> String {
    let mut y = format!(
        "services:\n  - name: greeter.default\n    port: 8080\n    mtls: {mtls}\n    service_account: greeter\n    endpoints:\n"
    );
    for (i, addr) in backends.iter().enumerate() {
        y += &format!(
            "      - address: {addr}\n        labels: {{ version: v{} }}\n",
            i + 1
        );
    }
    y += "    subsets:\n      - { name: v1, labels: { version: v1 } }\n      - { name: v2, labels: { version: v2 } }\n";
    if split {
        y += "    routes:\n      - match: { prefix: / }\n        split:\n          - { subset: v1, weight: 80 }\n          - { subset: v2, weight: 20 }\n";
    }
    y + AUTHORIZATION
}

async fn spread(
    client: &mut GreeterClient<MeshChannel>,
    n: usize,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let reply = client
            .say_hello(HelloRequest {
                name: format!("demo-{i}"),
            })
            .await
            .context("RPC failed")?;
        let msg = reply.into_inner().message;
        *counts.entry(backend_of(&msg).to_string()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Prints the spread and checks each backend's share against `expected` (percent).
fn report(title: &str, counts: &BTreeMap<String, usize>, expected: &[(&str, f64)]) -> bool {
    println!("\n{title}");
    println!(
        "  {:<12} {:>6} {:>8} {:>9}",
        "backend", "RPCs", "share", "expected"
    );
    let total: usize = counts.values().sum();
    let mut ok = true;
    for (id, want) in expected {
        let got = counts.get(*id).copied().unwrap_or(0);
        let share = 100.0 * got as f64 / total.max(1) as f64;
        let good = (share - want).abs() <= 5.0;
        ok &= good;
        println!(
            "  {id:<12} {got:>6} {share:>7.1}% {want:>8.1}%  {}",
            if good {
                "ok"
            } else {
                "OFF BY MORE THAN 5 POINTS"
            }
        );
    }
    for (id, got) in counts {
        if !expected.iter().any(|(e, _)| e == id) {
            ok = false;
            println!("  {id:<12} {got:>6}  unexpected backend");
        }
    }
    ok
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    // Metrics: every channel and server of the demo uses the global MeterProvider, here one
    // feeding a Prometheus registry served on a loopback port.
    let metrics = mesh_client::telemetry::prometheus::PrometheusMetrics::new()?;
    opentelemetry::global::set_meter_provider(metrics.meter_provider().clone());
    let metrics_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let metrics_addr = metrics_listener.local_addr()?;
    let metrics_task = tokio::spawn(metrics.clone().serve(metrics_listener));
    println!("metrics (Prometheus text) on http://{metrics_addr}/metrics");

    // Bind first, so the control plane knows the backends' addresses.
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    }
    let addrs: Vec<_> = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<_, _>>()?;

    let config = MeshConfig::from_yaml(&mesh_yaml(&addrs, false))?;
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config).await?;
    println!("mesh-control serving ADS on {}", cp.local_addr());

    // Every workload gets a SPIFFE certificate now (used once mTLS is switched on).
    let ca = mesh_control::ca::DevCa::generate("cluster.local")?;
    let certs = std::env::temp_dir().join(format!("mesh-demo-{}", std::process::id()));
    let issue = |dir: &std::path::Path, sa: &str| -> anyhow::Result<()> {
        ca.issue_svid("default", sa, Duration::from_secs(3600))?
            .write_istio_layout(dir)?;
        Ok(())
    };
    issue(&certs.join("client"), "demo-client")?;
    issue(&certs.join("greeter"), "greeter")?;
    let with_certs = |node: &str, dir: &std::path::Path| {
        mesh_control::bootstrap::bootstrap_json_with_certs(
            &cp.local_addr().to_string(),
            node,
            Some(dir),
        )
    };
    let bootstrap =
        Bootstrap::from_json(&with_certs("demo-client", &certs.join("client")).to_string())?;
    let mut backends = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let node = with_certs(&format!("demo-backend-{}", i + 1), &certs.join("greeter"));
        let b = GreeterBackend::start_mesh(
            listener,
            &format!("backend-{}", i + 1),
            Bootstrap::from_json(&node.to_string())?,
        )?;
        if !b.wait_serving(Duration::from_secs(10)).await {
            bail!("backend {} never received its inbound Listener", b.id);
        }
        println!(
            "backend {} on {}: serving (xDS-managed, RBAC on)",
            b.id, b.addr
        );
        backends.push(b);
    }

    let channel = MeshChannel::builder("xds:///greeter.default:8080")
        .with_bootstrap(bootstrap)
        .connect()
        .await?;
    let mut client = GreeterClient::new(channel.clone());

    let counts = spread(&mut client, RPCS).await?;
    let third = 100.0 / 3.0;
    let ok1 = report(
        &format!("{RPCS} RPCs, round robin over 3 endpoints:"),
        &counts,
        &[
            ("backend-1", third),
            ("backend-2", third),
            ("backend-3", third),
        ],
    );

    println!("\npushing an 80/20 split between subsets v1 (backend-1) and v2 (backend-2) ...");
    cp.control()
        .set_config(MeshConfig::from_yaml(&mesh_yaml(&addrs, true))?)?;
    // Wait until the new routes are in force: backend-3 is in neither subset.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let probe = spread(&mut client, 30).await?;
        if !probe.contains_key("backend-3") {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("the 80/20 split did not reach the client within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts = spread(&mut client, RPCS).await?;
    let ok2 = report(
        &format!("{RPCS} RPCs, 80/20 split:"),
        &counts,
        &[("backend-1", 80.0), ("backend-2", 20.0)],
    );

    let ok3 = rbac_demo(&channel, &backends).await?;

    println!("\npushing mtls: STRICT (SPIFFE certificates from mesh-control's dev CA) ...");
    cp.control()
        .set_config(MeshConfig::from_yaml(&mesh_yaml_with(
            &addrs, true, "STRICT",
        ))?)?;
    let ok4 = mtls_demo(&channel).await;
    let _ = std::fs::remove_dir_all(&certs);
    let ok5 = metrics_demo(metrics_addr).await;
    metrics_task.abort();

    drop(client);
    drop(channel);
    for b in backends {
        b.stop().await;
    }
    // Let the xDS clients' tasks (aborted as their owners dropped) wind down before the
    // control plane goes away, so they do not log a reconnect attempt.
    tokio::time::sleep(Duration::from_millis(100)).await;
    cp.shutdown().await;
    if ok1 && ok2 && ok3 && ok4 && ok5 {
        println!("\ndemo ok");
        Ok(())
    } else {
        bail!(
            "a spread was off by more than 5 points, or RBAC, mTLS or the metrics endpoint did not behave"
        )
    }
}

/// Shows a denied call and a shadow decision; true if both behaved.
async fn rbac_demo(channel: &MeshChannel, backends: &[GreeterBackend]) -> anyhow::Result<bool> {
    let client = GreeterClient::new(channel.clone());
    println!("\nserver-side RBAC (policy: only /helloworld.Greeter/SayHello is allowed):");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let denied = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    let denied_ok = match &denied {
        Err(s) if s.code() == tonic::Code::PermissionDenied => {
            println!(
                "  /grpc.health.v1.Health/Check  -> {:?}: {}",
                s.code(),
                s.message()
            );
            true
        }
        other => {
            println!("  /grpc.health.v1.Health/Check  -> unexpected: {other:?}");
            false
        }
    };
    let shadow_before: u64 = shadow_denied(backends);
    let mut req = tonic::Request::new(HelloRequest {
        name: "mallory".into(),
    });
    req.metadata_mut().insert("x-user", "mallory".parse()?);
    let reply = client.clone().say_hello(req).await;
    let shadow_after: u64 = shadow_denied(backends);
    let shadow_ok = reply.is_ok() && shadow_after == shadow_before + 1;
    match reply {
        Ok(r) => println!(
            "  SayHello with x-user: mallory -> OK ({}); shadow rule \"would-deny-mallory\" would have denied it (shadow denials: {shadow_before} -> {shadow_after})",
            r.into_inner().message
        ),
        Err(s) => println!("  SayHello with x-user: mallory -> unexpected {s:?}"),
    }
    Ok(denied_ok && shadow_ok)
}

fn shadow_denied(backends: &[GreeterBackend]) -> u64 {
    backends
        .iter()
        .filter_map(|b| b.stats.as_ref())
        .map(|s| s.snapshot().shadow_denied)
        .sum()
}

/// Waits (bounded) until calls run over mTLS, then prints both identities.
async fn mtls_demo(channel: &MeshChannel) -> bool {
    let mut client = GreeterClient::new(channel.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    // While the switch propagates, plaintext connections are drained and refused: retry.
    while tokio::time::Instant::now() < deadline {
        if let Ok(reply) = client
            .say_hello(HelloRequest {
                name: "whoami".into(),
            })
            .await
        {
            let msg = reply.into_inner().message;
            if msg.contains("spiffe://") {
                println!("  callee saw the caller as:  {msg}");
                println!(
                    "  callee identity required by the caller (CDS SAN matcher, checked in the handshake): spiffe://cluster.local/ns/default/sa/greeter"
                );
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("  calls never ran over mTLS");
    false
}

/// Fetches `/metrics` over plain HTTP/1.1 and prints a few lines; true if the A66 and A78
/// instruments are there.
async fn metrics_demo(addr: std::net::SocketAddr) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    println!("\nGET http://{addr}/metrics (a few lines):");
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
            .await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        Ok::<_, std::io::Error>(text)
    };
    let text = match tokio::time::timeout(Duration::from_secs(5), fetch).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            println!("  fetch failed: {e}");
            return false;
        }
        Err(_) => {
            println!("  fetch timed out");
            return false;
        }
    };
    let wanted = [
        "grpc_client_attempt_started",
        "grpc_client_call_duration_seconds_count",
        "grpc_server_call_started",
        "grpc_xds_client_connected",
        "mesh_xds_client_seconds_since_contact",
        "mesh_server_rbac_shadow_decisions",
        "mesh_identity_certificate_seconds_to_expiry",
    ];
    let mut shown = 0;
    for prefix in wanted {
        // Prefer the greeter's calls, the client's xDS view and the shadow denials.
        let lines = || text.lines().filter(|l| l.starts_with(prefix));
        let preferred = ["SayHello", "\"deny\"", "grpc_target=\"xds:///"]
            .iter()
            .find_map(|p| lines().find(|l| l.contains(p)));
        if let Some(line) = preferred.or_else(|| lines().next()) {
            println!("  {line}");
            shown += 1;
        }
    }
    shown >= 4
}
