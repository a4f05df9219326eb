//! The demo: mesh-control in process, three greeter backends, one MeshChannel client.
//!
//! 1. Serves `greeter.default:8080` over ADS with three endpoints and sends 1000 RPCs:
//!    round robin spreads them evenly.
//! 2. Pushes an 80/20 split between subsets v1 and v2 and sends 1000 more.
//!
//! Exits non-zero if a spread is off by more than 5 points.

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

fn mesh_yaml(backends: &[GreeterBackend], split: bool) -> String {
    let mut y =
        String::from("services:\n  - name: greeter.default\n    port: 8080\n    endpoints:\n");
    for (i, b) in backends.iter().enumerate() {
        y += &format!(
            "      - address: {}\n        labels: {{ version: v{} }}\n",
            b.addr,
            i + 1
        );
    }
    y += "    subsets:\n      - { name: v1, labels: { version: v1 } }\n      - { name: v2, labels: { version: v2 } }\n";
    if split {
        y += "    routes:\n      - match: { prefix: / }\n        split:\n          - { subset: v1, weight: 80 }\n          - { subset: v2, weight: 20 }\n";
    }
    y
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

    let mut backends = Vec::new();
    for i in 1..=3 {
        backends.push(
            GreeterBackend::start(([127, 0, 0, 1], 0).into(), &format!("backend-{i}")).await?,
        );
    }
    for b in &backends {
        println!("backend {} on {}", b.id, b.addr);
    }

    let config = MeshConfig::from_yaml(&mesh_yaml(&backends, false))?;
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config).await?;
    println!("mesh-control serving ADS on {}", cp.local_addr());

    let bootstrap = mesh_control::bootstrap_json(&cp.local_addr().to_string(), "demo-client");
    let bootstrap = Bootstrap::from_json(&bootstrap.to_string())?;
    let channel = MeshChannel::builder("xds:///greeter.default:8080")
        .with_bootstrap(bootstrap)
        .connect()
        .await?;
    let mut client = GreeterClient::new(channel);

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
        .set_config(MeshConfig::from_yaml(&mesh_yaml(&backends, true))?)?;
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

    drop(client);
    cp.shutdown().await;
    for b in backends {
        b.stop().await;
    }
    if ok1 && ok2 {
        println!("\ndemo ok");
        Ok(())
    } else {
        bail!("a spread was off by more than 5 points")
    }
}
