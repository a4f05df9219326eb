//! xDS fallback (gRFC A71): with the primary xDS server unreachable and nothing cached, the
//! client takes its configuration from the next server in the bootstrap; when the primary
//! comes back it switches back. The two control planes serve different endpoints, so the
//! traffic shows which one is in force.

use std::time::{Duration, Instant};

use mesh_client::bootstrap::Bootstrap;
use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::*;

fn two_servers(primary: std::net::SocketAddr, secondary: std::net::SocketAddr) -> Bootstrap {
    let server = |a: std::net::SocketAddr| {
        serde_json::json!({
            "server_uri": a.to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"]
        })
    };
    let json = serde_json::json!({
        "xds_servers": [server(primary), server(secondary)],
        "node": {"id": "fallback-test", "cluster": "mesh-tests", "locality": {}},
    });
    Bootstrap::from_json(&json.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_the_secondary_and_returns_to_the_primary() {
    init_tracing();
    let backends = start_backends(2).await;
    let primary_config = MeshConfig::from_yaml(&greeter_yaml(&[backends[0].addr])).unwrap();
    let secondary_config = MeshConfig::from_yaml(&greeter_yaml(&[backends[1].addr])).unwrap();
    // A free port for the primary, which is down when the client starts.
    let primary_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let secondary = ControlPlane::start(([127, 0, 0, 1], 0).into(), secondary_config)
        .await
        .unwrap();
    let mut client = greeter_client(two_servers(primary_addr, secondary.local_addr())).await;
    let counts = spread(&mut client, 20).await.unwrap();
    println!("primary down at start: {counts:?}");
    assert_eq!(
        counts.get("backend-2"),
        Some(&20),
        "config from the secondary"
    );

    let primary = ControlPlane::start(primary_addr, primary_config)
        .await
        .unwrap();
    let started = Instant::now();
    let mut switched = None;
    for _ in 0..200 {
        let counts = spread(&mut client, 5).await.unwrap();
        if counts.get("backend-1") == Some(&5) {
            switched = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = spread(&mut client, 20).await.unwrap();
    println!("primary back: config from the primary after {switched:?}; then {after:?}");
    assert!(switched.is_some(), "the client returned to the primary");
    assert_eq!(after.get("backend-1"), Some(&20));
    // The secondary is no longer used: its stream closed.
    let mut closed = false;
    for _ in 0..100 {
        if secondary.control().connected_streams() == 0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        closed,
        "the fallback stream is closed once the primary is back"
    );
    primary.shutdown().await;
    secondary.shutdown().await;
}

/// gRFC A71: when the primary fails but every subscribed resource is cached, the client
/// keeps its cached configuration and does not fall back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_fallback_while_everything_is_cached() {
    init_tracing();
    let backends = start_backends(2).await;
    let primary_config = MeshConfig::from_yaml(&greeter_yaml(&[backends[0].addr])).unwrap();
    let secondary_config = MeshConfig::from_yaml(&greeter_yaml(&[backends[1].addr])).unwrap();
    let primary = ControlPlane::start(([127, 0, 0, 1], 0).into(), primary_config)
        .await
        .unwrap();
    let secondary = ControlPlane::start(([127, 0, 0, 1], 0).into(), secondary_config)
        .await
        .unwrap();
    let mut client =
        greeter_client(two_servers(primary.local_addr(), secondary.local_addr())).await;
    assert_eq!(
        spread(&mut client, 10).await.unwrap().get("backend-1"),
        Some(&10)
    );
    primary.shutdown().await;
    // Several reconnect attempts to the primary fail meanwhile (backoff 1 s, 1.6 s, ...).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let counts = spread(&mut client, 20).await.unwrap();
    println!(
        "primary down, all cached: {counts:?}; streams on the secondary: {}",
        secondary.control().connected_streams()
    );
    assert_eq!(counts.get("backend-1"), Some(&20), "cached config in force");
    assert_eq!(secondary.control().connected_streams(), 0, "no fallback");
    secondary.shutdown().await;
}
