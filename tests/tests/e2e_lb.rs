//! End-to-end load-balancing policies: MeshChannel against mesh-control serving raw Envoy
//! resources on loopback (gRFC A42 ring hash with a route header `hash_policy`).

use std::collections::{BTreeMap, BTreeSet};

use mesh_control::ControlPlane;
use mesh_tests::*;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;

/// Raw Envoy resources (proto-JSON YAML) for `{name}.default:9090`: one route to one EDS
/// cluster over `ports`; `route` is the route action's extra fields and `cluster` the
/// cluster's, each pre-indented.
fn lb_yaml(name: &str, route: &str, cluster: &str, ports: &[u16]) -> String {
    let eps: String = ports
        .iter()
        .map(|p| {
            format!(
                "          - endpoint: {{ address: {{ socketAddress: {{ address: 127.0.0.1, portValue: {p} }} }} }}\n"
            )
        })
        .collect();
    format!(
        r#"resources:
  - "@type": type.googleapis.com/envoy.config.listener.v3.Listener
    name: {name}.default:9090
    apiListener:
      apiListener:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        rds: {{ configSource: {{ ads: {{}} }}, routeConfigName: {name}-route }}
        httpFilters:
          - name: envoy.filters.http.router
            typedConfig: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  - "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
    name: {name}-route
    virtualHosts:
      - name: {name}
        domains: ["*"]
        routes:
          - match: {{ prefix: "" }}
            route:
              cluster: {name}-cluster
{route}  - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: {name}-cluster
    type: EDS
    edsClusterConfig: {{ edsConfig: {{ ads: {{}} }} }}
{cluster}  - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
    clusterName: {name}-cluster
    endpoints:
      - locality: {{ region: r1 }}
        loadBalancingWeight: 1
        lbEndpoints:
{eps}"#
    )
}

fn ring_hash_yaml(ports: &[u16]) -> String {
    let route = "              hashPolicy:\n                - header: { headerName: x-user }\n";
    lb_yaml("rh", route, "    lbPolicy: RING_HASH\n", ports)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_keeps_each_user_on_one_backend() {
    init_tracing();
    let backends = start_backends(4).await;
    let ports: Vec<u16> = backends.iter().map(|b| b.addr.port()).collect();
    let resources = mesh_control::raw::parse_raw(&ring_hash_yaml(&ports), false).unwrap();
    let cp = ControlPlane::raw(resources)
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let channel = mesh_client::MeshChannel::builder("xds:///rh.default:9090")
        .with_bootstrap(bootstrap_for(cp.local_addr(), "ring-hash"))
        .connect()
        .await
        .unwrap();
    let mut client = GreeterClient::new(channel);
    let mut owner: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for round in 0..10 {
        for u in 0..20 {
            let user = format!("user-{u}");
            let mut req = tonic::Request::new(HelloRequest {
                name: format!("{user}/{round}"),
            });
            req.metadata_mut()
                .insert("x-user", user.parse().expect("ascii header value"));
            let reply = client.say_hello(req).await.unwrap().into_inner().message;
            owner
                .entry(user)
                .or_default()
                .insert(mesh_examples::backend_of(&reply).to_string());
        }
    }
    let per_backend: BTreeMap<&str, usize> =
        owner.values().fold(BTreeMap::new(), |mut m, backends| {
            for b in backends {
                *m.entry(b.as_str()).or_insert(0) += 1;
            }
            m
        });
    println!("ring hash e2e: 20 users × 10 RPCs; users per backend: {per_backend:?}");
    for (user, backends) in &owner {
        assert_eq!(backends.len(), 1, "{user} went to {backends:?}");
    }
    assert!(
        per_backend.len() >= 3,
        "20 users should spread over the 4 backends: {per_backend:?}"
    );
}

fn wrr_yaml(ports: &[u16]) -> String {
    let cluster = r#"    loadBalancingPolicy:
      policies:
        - typedExtensionConfig:
            name: envoy.load_balancing_policies.wrr_locality
            typedConfig:
              "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.wrr_locality.v3.WrrLocality
              endpointPickingPolicy:
                policies:
                  - typedExtensionConfig:
                      name: envoy.load_balancing_policies.client_side_weighted_round_robin
                      typedConfig:
                        "@type": type.googleapis.com/envoy.extensions.load_balancing_policies.client_side_weighted_round_robin.v3.ClientSideWeightedRoundRobin
                        blackoutPeriod: 0s
                        weightUpdatePeriod: 0.1s
"#;
    lb_yaml("wrr", "", cluster, ports)
}

/// gRFC A58: the three backends report the same qps at CPU 0.1, 0.2 and 0.4 in their ORCA
/// trailers (A51), so their weights are 4 : 2 : 1 and so must be their traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_follows_orca_weights() {
    use mesh_tests::scripted::{Backend, Behaviour};
    use xds_proto::orca::OrcaLoadReport;
    init_tracing();
    let mut backends = Vec::new();
    for cpu in [0.1, 0.2, 0.4] {
        let b = Backend::start(Behaviour::Ok).await;
        *b.state.orca.lock().unwrap() = Some(OrcaLoadReport {
            rps_fractional: 100.0,
            cpu_utilization: cpu,
            ..Default::default()
        });
        backends.push(b);
    }
    let ports: Vec<u16> = backends.iter().map(|b| b.addr.port()).collect();
    let resources = mesh_control::raw::parse_raw(&wrr_yaml(&ports), false).unwrap();
    let cp = ControlPlane::raw(resources)
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let channel = mesh_client::MeshChannel::builder("xds:///wrr.default:9090")
        .with_bootstrap(bootstrap_for(cp.local_addr(), "wrr"))
        .connect()
        .await
        .unwrap();
    let mut client = GreeterClient::new(channel);
    let hello = || HelloRequest { name: "w".into() };
    let want = [4.0 / 7.0, 2.0 / 7.0, 1.0 / 7.0];
    let within = |got: &[u64], n: u64| {
        got.iter()
            .zip(want)
            .all(|(g, w)| ((*g as f64 / n as f64) - w).abs() / w <= 0.05)
    };
    // Warm up until the weights are in force: every backend has reported and the schedule
    // was rebuilt (every 100 ms). Bounded: at most 20 rounds of 300 RPCs.
    let mut rounds = 0;
    for _ in 0..20 {
        rounds += 1;
        let start: Vec<u64> = backends.iter().map(|b| b.calls()).collect();
        for _ in 0..300 {
            client.say_hello(hello()).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let got: Vec<u64> = backends
            .iter()
            .zip(&start)
            .map(|(b, was)| b.calls() - was)
            .collect();
        if rounds > 1 && within(&got, 300) {
            break;
        }
    }
    println!("WRR: weights in force after {rounds} warm-up rounds of 300 RPCs");
    let before: Vec<u64> = backends.iter().map(|b| b.calls()).collect();
    let n = 3000u64;
    for _ in 0..n {
        client.say_hello(hello()).await.unwrap();
    }
    let got: Vec<u64> = backends
        .iter()
        .zip(&before)
        .map(|(b, was)| b.calls() - was)
        .collect();
    let shares: Vec<String> = got
        .iter()
        .zip(want)
        .map(|(g, w)| {
            format!(
                "{:.1} % (want {:.1} %)",
                *g as f64 * 100.0 / n as f64,
                w * 100.0
            )
        })
        .collect();
    println!("WRR over ORCA weights 4:2:1, {n} RPCs: {got:?} = {shares:?}");
    for (g, w) in got.iter().zip(want) {
        let share = *g as f64 / n as f64;
        assert!((share - w).abs() / w <= 0.05, "{got:?} vs {want:?}");
    }
}
