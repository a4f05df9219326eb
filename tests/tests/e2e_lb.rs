//! End-to-end load-balancing policies: MeshChannel against mesh-control serving raw Envoy
//! resources on loopback (gRFC A42 ring hash with a route header `hash_policy`).

use std::collections::{BTreeMap, BTreeSet};

use mesh_control::ControlPlane;
use mesh_tests::*;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;

fn ring_hash_yaml(ports: &[u16]) -> String {
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
    name: rh.default:9090
    apiListener:
      apiListener:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        rds: {{ configSource: {{ ads: {{}} }}, routeConfigName: rh-route }}
        httpFilters:
          - name: envoy.filters.http.router
            typedConfig: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  - "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
    name: rh-route
    virtualHosts:
      - name: rh
        domains: ["*"]
        routes:
          - match: {{ prefix: "" }}
            route:
              cluster: rh-cluster
              hashPolicy:
                - header: {{ headerName: x-user }}
  - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: rh-cluster
    type: EDS
    lbPolicy: RING_HASH
    edsClusterConfig: {{ edsConfig: {{ ads: {{}} }} }}
  - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
    clusterName: rh-cluster
    endpoints:
      - locality: {{ region: r1 }}
        loadBalancingWeight: 1
        lbEndpoints:
{eps}"#
    )
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
