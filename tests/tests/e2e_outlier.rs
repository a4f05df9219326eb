//! End-to-end outlier detection (gRFC A50): MeshChannel against mesh-control over a real ADS
//! stream on loopback, three real greeter backends of which one fails every call. The
//! failing backend is ejected within two intervals, stays ejected across a config update
//! that keeps the outlier config, and receives traffic again after the ejection time.
//! Measured numbers are printed (`-- --nocapture`).

use std::time::{Duration, Instant};

use mesh_control::{ControlPlane, MeshConfig};
use mesh_examples::{GreeterBackend, backend_of};
use mesh_tests::*;
use xds_proto::helloworld::HelloRequest;

const INTERVAL: Duration = Duration::from_millis(500);
const BASE_EJECTION: Duration = Duration::from_secs(3);
const FAILING: &str = "fail-3";

fn config(addrs: &[std::net::SocketAddr], route_timeout: bool) -> MeshConfig {
    let mut y = greeter_yaml(addrs);
    y += "    outlier_detection:\n      interval: 500ms\n      base_ejection_time: 3s\n      max_ejection_percent: 34\n      failure_percentage: { threshold: 50, minimum_hosts: 3, request_volume: 5 }\n";
    if route_timeout {
        // A route change: the pools are rebuilt, the outlier config is the same.
        y += "    routes:\n      - timeout: 5s\n";
    }
    MeshConfig::from_yaml(&y).expect("valid mesh.yaml")
}

/// One RPC; which backend handled it (`fail-3` for its UNAVAILABLE), or the error.
async fn call(
    client: &mut xds_proto::helloworld::greeter_client::GreeterClient<mesh_client::MeshChannel>,
    i: usize,
) -> Result<String, String> {
    match client
        .say_hello(HelloRequest {
            name: format!("od{i}"),
        })
        .await
    {
        Ok(r) => Ok(backend_of(&r.into_inner().message).to_string()),
        Err(s) if s.message().starts_with(FAILING) => Ok(FAILING.to_string()),
        Err(s) => Err(s.to_string()),
    }
}

/// Sends up to `max` RPCs (2 ms apart, at most `limit` in total) until `stop` holds for the
/// backend of one; returns the backends seen, with their send times, and whether it stopped.
async fn run_until(
    client: &mut xds_proto::helloworld::greeter_client::GreeterClient<mesh_client::MeshChannel>,
    max: usize,
    limit: Duration,
    mut stop: impl FnMut(&[(Instant, String)]) -> bool,
) -> (Vec<(Instant, String)>, bool) {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    for i in 0..max {
        if Instant::now() >= deadline {
            break;
        }
        let sent = Instant::now();
        match call(client, i).await {
            Ok(b) => seen.push((sent, b)),
            Err(e) => panic!("unexpected RPC error: {e}"),
        }
        if stop(&seen) {
            return (seen, true);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (seen, false)
}

fn share(seen: &[(Instant, String)]) -> String {
    let failing = seen.iter().filter(|(_, b)| b == FAILING).count();
    format!("{failing}/{} to {FAILING}", seen.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_backend_is_ejected_then_returns_after_the_ejection_time() {
    init_tracing();
    let mut backends = start_backends(2).await;
    backends.push(
        GreeterBackend::start(([127, 0, 0, 1], 0).into(), FAILING)
            .await
            .unwrap(),
    );
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config(&addrs, false))
        .await
        .unwrap();
    let mut client = greeter_client(bootstrap_for(cp.local_addr(), "outlier")).await;

    // Phase 1: until 30 RPCs in a row avoid the failing backend (round robin over three
    // would send it every third): it has been ejected.
    const STREAK: usize = 30;
    let start = Instant::now();
    let (before, ejected) = run_until(&mut client, 20_000, Duration::from_secs(10), |seen| {
        seen.iter().any(|(_, b)| b == FAILING)
            && seen.len() >= STREAK
            && seen.iter().rev().take(STREAK).all(|(_, b)| b != FAILING)
    })
    .await;
    assert!(ejected, "never ejected: {}", share(&before));
    let last_hit = before
        .iter()
        .rev()
        .find(|(_, b)| b == FAILING)
        .map(|(t, _)| *t)
        .unwrap();
    let first_hit = before
        .iter()
        .find(|(_, b)| b == FAILING)
        .map(|(t, _)| *t)
        .unwrap();
    let to_ejection = last_hit - first_hit;
    let pre = &before[..before.len() - STREAK];
    println!(
        "ejected {:?} after the first failure ({:?} after the first RPC); before ejection {}",
        to_ejection,
        last_hit - start,
        share(pre)
    );
    // The first sweep with 5 calls in its bucket ejects it: at most two intervals after
    // the first failure, plus scheduling slack.
    assert!(
        to_ejection <= 2 * INTERVAL + Duration::from_millis(500),
        "{to_ejection:?}"
    );
    assert!(
        pre.iter().filter(|(_, b)| b == FAILING).count() >= 5,
        "the request volume was reached"
    );

    // Phase 2: a config update that keeps the outlier config (a route timeout) rebuilds the
    // pools; the ejection holds: none of the next 100 RPCs reach the failing backend.
    cp.control().set_config(config(&addrs, true)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (during, _) = run_until(&mut client, 100, Duration::from_secs(2), |_| false).await;
    println!("while ejected (after a config update): {}", share(&during));
    assert!(
        during.iter().all(|(_, b)| b != FAILING),
        "{}",
        share(&during)
    );
    assert!(
        Instant::now() < last_hit + BASE_EJECTION,
        "phase 2 must end within the ejection time"
    );

    // Phase 3: after the ejection time (the first sweep at least 3 s after the ejection)
    // the failing backend receives traffic again.
    let (after, returned) = run_until(&mut client, 20_000, Duration::from_secs(10), |seen| {
        seen.last().is_some_and(|(_, b)| b == FAILING)
    })
    .await;
    assert!(returned, "never returned: {}", share(&after));
    let back_at = after.last().map(|(t, _)| *t).unwrap();
    let out_for = back_at - last_hit;
    println!(
        "returned {out_for:?} after its last RPC before ejection (base_ejection_time {BASE_EJECTION:?}); {} while out",
        share(&after)
    );
    // It was ejected after its last RPC was sent, so it cannot be back sooner than this.
    assert!(out_for >= BASE_EJECTION, "{out_for:?}");
    cp.shutdown().await;
}
