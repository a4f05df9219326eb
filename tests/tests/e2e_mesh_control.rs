//! End-to-end: MeshChannel against mesh-control over a real ADS stream on loopback.

use std::time::{Duration, Instant};

use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::*;

fn config(addrs: &[std::net::SocketAddr]) -> MeshConfig {
    MeshConfig::from_yaml(&greeter_yaml(addrs)).expect("valid mesh.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly_over_three_backends() {
    init_tracing();
    let backends = start_backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config(&addrs))
        .await
        .unwrap();
    let mut client = greeter_client(bootstrap_for(cp.local_addr(), "rr")).await;
    let counts = spread(&mut client, 300).await.unwrap();
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (id, n) in &counts {
        assert!((90..=110).contains(n), "{id} got {n} of 300: {counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_endpoint_receives_traffic_within_one_second_of_the_push() {
    init_tracing();
    let backends = start_backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config(&addrs[..2]))
        .await
        .unwrap();
    let mut client = greeter_client(bootstrap_for(cp.local_addr(), "new-endpoint")).await;
    let before = spread(&mut client, 20).await.unwrap();
    assert!(!before.contains_key("backend-3"));

    let pushed = Instant::now();
    cp.control().set_config(config(&addrs)).unwrap();
    let mut first_seen = None;
    // Bounded: at most 5 s or 5000 RPCs.
    for _ in 0..5000 {
        let got = spread(&mut client, 1).await.unwrap();
        if got.contains_key("backend-3") {
            first_seen = Some(pushed.elapsed());
            break;
        }
        if pushed.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let latency = first_seen.expect("backend-3 never received traffic");
    println!("new endpoint served its first RPC {latency:?} after the push");
    assert!(latency < Duration::from_secs(1), "took {latency:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_endpoint_under_load_fails_no_rpc() {
    init_tracing();
    let backends = start_backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config(&addrs))
        .await
        .unwrap();
    let client = greeter_client(bootstrap_for(cp.local_addr(), "remove-endpoint")).await;
    let load = Load::start(client, 8, 6000, Duration::from_secs(60));
    assert!(load.wait_for_ok(1000, Duration::from_secs(30)).await);
    cp.control().set_config(config(&addrs[..2])).unwrap();
    let at_removal = load.snapshot();
    assert!(
        load.wait_for_ok(at_removal.ok + 1500, Duration::from_secs(30))
            .await
    );
    let before_tail = load.snapshot();
    assert!(
        load.wait_for_ok(before_tail.ok + 300, Duration::from_secs(30))
            .await
    );
    let report = load.finish().await;
    println!("{report:?}");
    assert!(report.ok >= 2000, "only {} RPCs", report.ok);
    assert_eq!(report.failed, 0, "failures: {:?}", report.errors);
    // After the removal settled, backend-3 got nothing more.
    let b3_settled = before_tail
        .by_backend
        .get("backend-3")
        .copied()
        .unwrap_or(0);
    let b3_final = report.by_backend.get("backend-3").copied().unwrap_or(0);
    assert_eq!(
        b3_settled, b3_final,
        "backend-3 still received traffic after removal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_outage_serves_cached_config_then_recovers() {
    init_tracing();
    let backends = start_backends(3).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), config(&addrs[..2]))
        .await
        .unwrap();
    let cp_addr = cp.local_addr();
    let client = greeter_client(bootstrap_for(cp_addr, "outage")).await;
    let load = Load::start(client.clone(), 4, 1_000_000, Duration::from_secs(120));
    assert!(load.wait_for_ok(200, Duration::from_secs(30)).await);

    cp.shutdown().await;
    let down_at = load.snapshot();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let after_outage = load.snapshot();
    println!(
        "during 30 s without a control plane: {} ok, {} failed",
        after_outage.ok - down_at.ok,
        after_outage.failed - down_at.failed
    );
    assert_eq!(
        after_outage.failed, 0,
        "failures: {:?}",
        after_outage.errors
    );
    assert!(after_outage.ok - down_at.ok > 1000);

    // Restart on the same address with a third endpoint; the client must pick it up.
    let cp = ControlPlane::start(cp_addr, config(&addrs)).await.unwrap();
    let restarted = Instant::now();
    let mut seen = false;
    while restarted.elapsed() < Duration::from_secs(150) {
        let snap = load.snapshot();
        if snap.by_backend.contains_key("backend-3") {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = load.finish().await;
    println!(
        "change after restart reached the client after {:?}",
        restarted.elapsed()
    );
    assert!(
        seen,
        "backend-3 never received traffic after the restart: {report:?}"
    );
    assert_eq!(report.failed, 0, "failures: {:?}", report.errors);
    drop(cp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_times_out_naming_the_missing_listener() {
    init_tracing();
    let empty = MeshConfig::from_yaml("services: []").unwrap();
    let cp = ControlPlane::start(([127, 0, 0, 1], 0).into(), empty)
        .await
        .unwrap();
    let err = mesh_client::MeshChannel::builder("xds:///nothing.default:1234")
        .with_bootstrap(bootstrap_for(cp.local_addr(), "missing"))
        .with_connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nothing.default:1234"), "{err}");
    assert!(err.contains("missing"), "node id in: {err}");
}

/// mesh-control's raw mode serves resources written in Envoy's own proto-JSON/YAML form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mode_serves_envoy_yaml_resources() {
    init_tracing();
    let backends = start_backends(2).await;
    let eps: String = backends
        .iter()
        .map(|b| {
            format!(
                "          - endpoint: {{ address: {{ socketAddress: {{ address: 127.0.0.1, portValue: {} }} }} }}\n",
                b.addr.port()
            )
        })
        .collect();
    let yaml = format!(
        r#"resources:
  - "@type": type.googleapis.com/envoy.config.listener.v3.Listener
    name: raw.default:9090
    apiListener:
      apiListener:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        rds: {{ configSource: {{ ads: {{}} }}, routeConfigName: raw-route }}
        httpFilters:
          - name: envoy.filters.http.router
            typedConfig: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  - "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
    name: raw-route
    virtualHosts:
      - name: raw
        domains: ["*"]
        routes:
          - match: {{ prefix: "" }}
            route: {{ cluster: raw-cluster }}
  - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: raw-cluster
    type: EDS
    edsClusterConfig: {{ edsConfig: {{ ads: {{}} }} }}
  - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
    clusterName: raw-cluster
    endpoints:
      - locality: {{ region: r1 }}
        loadBalancingWeight: 1
        lbEndpoints:
{eps}"#
    );
    let resources = mesh_control::raw::parse_raw(&yaml, false).unwrap();
    let cp = ControlPlane::raw(resources)
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let channel = mesh_client::MeshChannel::builder("xds:///raw.default:9090")
        .with_bootstrap(bootstrap_for(cp.local_addr(), "raw"))
        .connect()
        .await
        .unwrap();
    let mut client = xds_proto::helloworld::greeter_client::GreeterClient::new(channel);
    let counts = spread(&mut client, 100).await.unwrap();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!(counts.values().sum::<usize>(), 100);
}
