//! End-to-end aggregate and LOGICAL_DNS clusters (gRFC A37, A75, A74): MeshChannel against
//! mesh-control serving raw Envoy resources on loopback. The route targets an aggregate
//! cluster [EDS "primary", LOGICAL_DNS "secondary" = `localhost:<port>`]: traffic goes to the
//! EDS backends, fails over to the DNS backend when EDS has no endpoints or every EDS
//! backend is down, and comes back when they return.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mesh_client::MeshChannel;
use mesh_control::ControlPlane;
use mesh_examples::GreeterBackend;
use mesh_tests::*;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;
use xds_proto::type_url::CLUSTER_LOAD_ASSIGNMENT;

const TARGET: &str = "agg.default:9090";

fn lds_rds_cds(dns_port: u16) -> String {
    format!(
        r#"resources:
  - "@type": type.googleapis.com/envoy.config.listener.v3.Listener
    name: {TARGET}
    apiListener:
      apiListener:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        rds: {{ configSource: {{ ads: {{}} }}, routeConfigName: agg-route }}
        httpFilters:
          - name: envoy.filters.http.router
            typedConfig: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
  - "@type": type.googleapis.com/envoy.config.route.v3.RouteConfiguration
    name: agg-route
    virtualHosts:
      - name: agg
        domains: ["*"]
        routes:
          - match: {{ prefix: "" }}
            route: {{ cluster: agg }}
  - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: agg
    lbPolicy: CLUSTER_PROVIDED
    clusterType:
      name: envoy.clusters.aggregate
      typedConfig:
        "@type": type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig
        clusters: [primary, secondary]
  - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: primary
    type: EDS
    edsClusterConfig: {{ edsConfig: {{ ads: {{}} }} }}
  - "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
    name: secondary
    type: LOGICAL_DNS
    loadAssignment:
      clusterName: secondary
      endpoints:
        - lbEndpoints:
            - endpoint: {{ address: {{ socketAddress: {{ address: localhost, portValue: {dns_port} }} }} }}
"#
    )
}

/// The EDS resource of "primary" with these backends (none: no endpoints).
fn primary_cla(ports: &[u16]) -> Vec<(String, xds_proto::protobuf::Any)> {
    let eps: String = ports
        .iter()
        .map(|p| {
            format!(
                "          - endpoint: {{ address: {{ socketAddress: {{ address: 127.0.0.1, portValue: {p} }} }} }}\n"
            )
        })
        .collect();
    let yaml = if ports.is_empty() {
        r#"resources:
  - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
    clusterName: primary
"#
        .to_string()
    } else {
        format!(
            r#"resources:
  - "@type": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment
    clusterName: primary
    endpoints:
      - locality: {{ region: r1 }}
        loadBalancingWeight: 1
        lbEndpoints:
{eps}"#
        )
    };
    let mut parsed = mesh_control::raw::parse_raw(&yaml, false).unwrap();
    parsed.remove(CLUSTER_LOAD_ASSIGNMENT).unwrap()
}

/// Sends `n` sequential RPCs; counts replies per backend and failures.
async fn count(client: &mut GreeterClient<MeshChannel>, n: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for i in 0..n {
        let reply = client
            .say_hello(HelloRequest {
                name: format!("agg-{i}"),
            })
            .await;
        let key = match reply {
            Ok(r) => mesh_examples::backend_of(&r.into_inner().message).to_string(),
            Err(s) => format!("error {:?}", s.code()),
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// Sends RPCs (at most 400, 50 ms apart, about 20 s) until one is answered by a backend
/// in `want`; returns how many RPCs that took.
async fn until_served_by(client: &mut GreeterClient<MeshChannel>, want: &[&str]) -> usize {
    for i in 1..=400 {
        if let Ok(r) = client
            .say_hello(HelloRequest {
                name: "probe".into(),
            })
            .await
            && want.contains(&mesh_examples::backend_of(&r.get_ref().message))
        {
            return i;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no RPC reached {want:?} within 400 attempts");
}

#[track_caller]
fn assert_only(phase: &str, counts: &BTreeMap<String, usize>, allowed: &[&str], n: usize) {
    println!("aggregate e2e, {phase}: {n} RPCs -> {counts:?}");
    let total: usize = counts
        .iter()
        .filter(|(k, _)| allowed.contains(&k.as_str()))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        total, n,
        "{phase}: every RPC must reach {allowed:?}: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregate_fails_over_from_eds_to_logical_dns_and_back() {
    init_tracing();
    let mut primary = start_backends(2).await;
    let primary_addrs: Vec<SocketAddr> = primary.iter().map(|b| b.addr).collect();
    let primary_ports: Vec<u16> = primary_addrs.iter().map(|a| a.port()).collect();
    let dns_backend = GreeterBackend::start(([127, 0, 0, 1], 0).into(), "dns-backend")
        .await
        .unwrap();

    let mut resources =
        mesh_control::raw::parse_raw(&lds_rds_cds(dns_backend.addr.port()), false).unwrap();
    resources.insert(
        CLUSTER_LOAD_ASSIGNMENT.to_string(),
        primary_cla(&primary_ports),
    );
    let cp = ControlPlane::raw(resources)
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let channel = MeshChannel::builder(format!("xds:///{TARGET}"))
        .with_bootstrap(bootstrap_for(cp.local_addr(), "aggregate"))
        .with_connect_timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap();
    let mut client = GreeterClient::new(channel);
    let n = 200;
    let eds = ["backend-1", "backend-2"];
    let dns = ["dns-backend"];

    // 1. The EDS cluster (priority 0 of the aggregate) takes everything. Right after
    // connect, an RPC may go to the DNS leaf if its connection is ready before the EDS
    // ones (no A56 failover timer holds a CONNECTING priority), so wait until both EDS
    // backends have answered before counting.
    let warmup = until_served_by(&mut client, &["backend-1"]).await
        + until_served_by(&mut client, &["backend-2"]).await;
    println!("aggregate e2e: {warmup} warm-up RPC(s) until both EDS backends answered");
    let c = count(&mut client, n).await;
    assert_only("EDS healthy", &c, &eds, n);
    assert!(
        c.contains_key("backend-1") && c.contains_key("backend-2"),
        "round robin within the EDS leaf: {c:?}"
    );

    // 2. EDS with no endpoints: failover to the LOGICAL_DNS leaf.
    cp.control()
        .set_resources(CLUSTER_LOAD_ASSIGNMENT, primary_cla(&[]));
    let probes = until_served_by(&mut client, &dns).await;
    let c = count(&mut client, n).await;
    println!("aggregate e2e: DNS took over after {probes} probe RPC(s)");
    assert_only("EDS empty", &c, &dns, n);

    // 3. The endpoints return: back to the primary.
    cp.control()
        .set_resources(CLUSTER_LOAD_ASSIGNMENT, primary_cla(&primary_ports));
    let probes = until_served_by(&mut client, &eds).await;
    let c = count(&mut client, n).await;
    println!("aggregate e2e: EDS took back after {probes} probe RPC(s)");
    assert_only("EDS endpoints back", &c, &eds, n);

    // 4. Every EDS backend stops: failover to DNS (RPCs in flight at the stop may fail).
    for b in primary.drain(..) {
        b.stop().await;
    }
    let probes = until_served_by(&mut client, &dns).await;
    let c = count(&mut client, n).await;
    println!("aggregate e2e: DNS took over from stopped backends after {probes} probe RPC(s)");
    assert_only("EDS backends stopped", &c, &dns, n);

    // 5. They come back on the same ports: back to the primary once reconnected.
    for (i, addr) in primary_addrs.iter().enumerate() {
        primary.push(
            GreeterBackend::start(*addr, &format!("backend-{}", i + 1))
                .await
                .unwrap(),
        );
    }
    let probes = until_served_by(&mut client, &eds).await;
    // Both must be reconnected before the count is all-primary; the second may lag.
    let c = count(&mut client, n).await;
    println!("aggregate e2e: EDS took back from restarted backends after {probes} probe RPC(s)");
    assert_only("EDS backends restarted", &c, &eds, n);
}
