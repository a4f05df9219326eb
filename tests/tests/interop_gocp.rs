//! Interop with go-control-plane (DESIGN §7): the resources a go-control-plane server sends
//! for an Istio-style proxyless service decode, and updates arrive as new versions.
//!
//! Needs the Go toolchain (`go` on PATH); without it the tests fail, saying so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use mesh_client::xds::resource::ResourceType;
use mesh_tests::gocp::{GoControlPlane, Protocols};
use prost::{Message, Name};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use xds_proto::envoy::envoy::config::cluster::v3::{Cluster, cluster};
use xds_proto::envoy::envoy::config::core::v3::{Node, address, socket_address};
use xds_proto::envoy::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use xds_proto::envoy::envoy::config::listener::v3::Listener;
use xds_proto::envoy::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager,
};
use xds_proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use xds_proto::protobuf::Any;
use xds_proto::type_url;

const SERVICE: &str = "greeter.default";
const PORT: u16 = 8080;
/// Bound on every single wait for the server.
const WAIT: Duration = Duration::from_secs(10);
/// Bound on how many responses we read while looking for one.
const MAX_RESPONSES: usize = 20;

/// A raw SotW ADS stream: subscribes, ACKs every response, hands back the one asked for.
struct Ads {
    tx: mpsc::Sender<DiscoveryRequest>,
    /// `None` only while [`Ads::connect`] opens the stream.
    responses: Option<Streaming<DiscoveryResponse>>,
    /// The names subscribed per type URL, repeated in every ACK.
    names: HashMap<String, Vec<String>>,
}

impl Ads {
    /// Opens the stream with a first subscription: grpc-go sends no response headers
    /// before the first response, so the stream only opens once a request is in flight.
    async fn connect(addr: SocketAddr, type_url: &str, names: &[&str]) -> anyhow::Result<Self> {
        let mut client = tokio::time::timeout(
            WAIT,
            AggregatedDiscoveryServiceClient::connect(format!("http://{addr}")),
        )
        .await
        .context("connecting to ADS: timed out")??;
        let (tx, rx) = mpsc::channel(16);
        let mut ads = Ads {
            tx,
            responses: None,
            names: HashMap::new(),
        };
        ads.subscribe(type_url, names).await?;
        let responses = tokio::time::timeout(
            WAIT,
            client.stream_aggregated_resources(ReceiverStream::new(rx)),
        )
        .await
        .context("opening the ADS stream: timed out")??
        .into_inner();
        ads.responses = Some(responses);
        Ok(ads)
    }

    async fn send(&self, req: DiscoveryRequest) -> anyhow::Result<()> {
        self.tx
            .send(req)
            .await
            .map_err(|_| anyhow!("ADS stream closed"))
    }

    async fn subscribe(&mut self, type_url: &str, names: &[&str]) -> anyhow::Result<()> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        self.names.insert(type_url.to_string(), names.clone());
        self.send(DiscoveryRequest {
            node: Some(Node {
                id: "test".into(),
                ..Default::default()
            }),
            type_url: type_url.to_string(),
            resource_names: names,
            ..Default::default()
        })
        .await
    }

    /// Reads responses (ACKing each) until one of `type_url` that `accept` takes arrives.
    async fn wait_for(
        &mut self,
        type_url: &str,
        mut accept: impl FnMut(&DiscoveryResponse) -> bool,
    ) -> anyhow::Result<DiscoveryResponse> {
        for _ in 0..MAX_RESPONSES {
            let responses = self.responses.as_mut().context("ADS stream not open")?;
            let resp = tokio::time::timeout(WAIT, responses.next())
                .await
                .with_context(|| format!("no {} response within {WAIT:?}", short(type_url)))?
                .ok_or_else(|| anyhow!("ADS stream ended"))??;
            self.send(DiscoveryRequest {
                version_info: resp.version_info.clone(),
                response_nonce: resp.nonce.clone(),
                type_url: resp.type_url.clone(),
                resource_names: self.names.get(&resp.type_url).cloned().unwrap_or_default(),
                ..Default::default()
            })
            .await?;
            if resp.type_url == type_url && accept(&resp) {
                return Ok(resp);
            }
        }
        bail!(
            "no matching {} response in {MAX_RESPONSES} responses",
            short(type_url)
        )
    }
}

fn short(type_url: &str) -> &'static str {
    type_url::short_name(type_url)
}

/// The one resource of a response, decoded as `T`, after checking that our validator
/// (`mesh_client::xds::resource::decode`) accepts it.
fn only<T: Message + Name + Default>(resp: &DiscoveryResponse) -> anyhow::Result<T> {
    ensure!(
        resp.type_url == T::type_url(),
        "response type {} is not {}",
        resp.type_url,
        T::type_url()
    );
    let [any] = resp.resources.as_slice() else {
        bail!(
            "expected 1 {} resource, got {}",
            short(&resp.type_url),
            resp.resources.len()
        );
    };
    let ty = ResourceType::from_type_url(&resp.type_url)
        .ok_or_else(|| anyhow!("unknown type {}", resp.type_url))?;
    let validated = mesh_client::xds::resource::decode(ty, any)
        .map_err(|e| anyhow!("our validator rejects go-control-plane's resource: {e}"))?;
    let decoded = decode::<T>(any)?;
    ensure!(
        !validated.name().is_empty(),
        "validated resource has no name"
    );
    Ok(decoded)
}

fn decode<T: Message + Name + Default>(any: &Any) -> anyhow::Result<T> {
    xds_proto::any::unpack(any).map_err(|e| anyhow!("{}: {e}", T::full_name()))
}

fn endpoints(cla: &ClusterLoadAssignment) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for locality in &cla.endpoints {
        for lb in &locality.lb_endpoints {
            let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &lb.host_identifier else {
                continue;
            };
            let Some(address::Address::SocketAddress(sa)) =
                ep.address.as_ref().and_then(|a| a.address.as_ref())
            else {
                continue;
            };
            let Some(socket_address::PortSpecifier::PortValue(port)) = sa.port_specifier else {
                continue;
            };
            if let (Ok(ip), Ok(port)) = (sa.address.parse(), u16::try_from(port)) {
                out.push(SocketAddr::new(ip, port));
            }
        }
    }
    out.sort();
    out
}

fn addrs(ports: &[u16]) -> Vec<SocketAddr> {
    ports
        .iter()
        .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
        .collect()
}

#[tokio::test]
async fn go_control_plane_resources_decode_and_update() -> anyhow::Result<()> {
    let backends = addrs(&[50051, 50052, 50053]);
    let mut cp = GoControlPlane::start(SERVICE, PORT, &backends, None).await?;
    let target = format!("{SERVICE}:{PORT}");
    let cluster_name = format!("outbound|{PORT}||{SERVICE}");

    // LDS: an api_listener whose HttpConnectionManager points at RDS over ADS.
    let mut ads = Ads::connect(cp.addr(), type_url::LISTENER, &[&target]).await?;
    let lds = ads.wait_for(type_url::LISTENER, |_| true).await?;
    let listener: Listener = only(&lds)?;
    assert_eq!(listener.name, target);
    let hcm: HttpConnectionManager = decode(
        listener
            .api_listener
            .as_ref()
            .and_then(|a| a.api_listener.as_ref())
            .context("listener has no api_listener")?,
    )?;
    let Some(http_connection_manager::RouteSpecifier::Rds(rds)) = &hcm.route_specifier else {
        bail!("HttpConnectionManager does not use RDS: {hcm:?}");
    };
    assert_eq!(rds.route_config_name, target);
    assert!(
        rds.config_source
            .as_ref()
            .is_some_and(|c| c.config_source_specifier.is_some()),
        "RDS config_source missing: {rds:?}"
    );
    let filters: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(filters, ["envoy.filters.http.router"]);

    // RDS: one virtual host for the service, "/" → the cluster.
    ads.subscribe(type_url::ROUTE_CONFIGURATION, &[&rds.route_config_name])
        .await?;
    let rds_resp = ads
        .wait_for(type_url::ROUTE_CONFIGURATION, |_| true)
        .await?;
    let routes: RouteConfiguration = only(&rds_resp)?;
    assert_eq!(routes.name, target);
    let [vhost] = routes.virtual_hosts.as_slice() else {
        bail!("expected one virtual host: {routes:?}");
    };
    assert_eq!(vhost.domains, [SERVICE.to_string(), target.clone()]);
    let action = vhost
        .routes
        .first()
        .and_then(|r| match &r.action {
            Some(route::Action::Route(a)) => a.cluster_specifier.as_ref(),
            _ => None,
        })
        .context("first route has no route action")?;
    assert_eq!(
        action,
        &route_action::ClusterSpecifier::Cluster(cluster_name.clone())
    );

    // CDS: an EDS cluster over ADS, round robin.
    ads.subscribe(type_url::CLUSTER, &[&cluster_name]).await?;
    let cds = ads.wait_for(type_url::CLUSTER, |_| true).await?;
    let cluster: Cluster = only(&cds)?;
    assert_eq!(cluster.name, cluster_name);
    assert_eq!(
        cluster.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    assert_eq!(cluster.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    let eds_name = cluster
        .eds_cluster_config
        .as_ref()
        .map(|e| e.service_name.clone())
        .context("cluster has no eds_cluster_config")?;
    assert_eq!(eds_name, cluster_name);

    // EDS: one locality with the three backends.
    ads.subscribe(type_url::CLUSTER_LOAD_ASSIGNMENT, &[&eds_name])
        .await?;
    let eds = ads
        .wait_for(type_url::CLUSTER_LOAD_ASSIGNMENT, |_| true)
        .await?;
    let cla: ClusterLoadAssignment = only(&eds)?;
    assert_eq!(cla.cluster_name, cluster_name);
    assert_eq!(cla.endpoints.len(), 1, "one locality: {cla:?}");
    assert_eq!(
        cla.endpoints[0]
            .locality
            .as_ref()
            .map(|l| l.region.as_str()),
        Some("r1")
    );
    assert_eq!(endpoints(&cla), backends);

    // Update to two backends: a new EDS version with exactly those arrives.
    let fewer = addrs(&[50061, 50062]);
    cp.update(&fewer, None).await?;
    assert_eq!(cp.version(), 2);
    let first_version = eds.version_info.clone();
    let eds2 = ads
        .wait_for(type_url::CLUSTER_LOAD_ASSIGNMENT, |r| {
            r.version_info != first_version
        })
        .await?;
    assert_eq!(eds2.version_info, cp.version().to_string());
    let cla2: ClusterLoadAssignment = only(&eds2)?;
    assert_eq!(cla2.cluster_name, cluster_name);
    assert_eq!(endpoints(&cla2), fewer);
    Ok(())
}

#[tokio::test]
async fn go_control_plane_weighted_split() -> anyhow::Result<()> {
    let backends = addrs(&[50071, 50072, 50073]);
    let cp = GoControlPlane::start(SERVICE, PORT, &backends, Some((80, 20))).await?;
    let target = format!("{SERVICE}:{PORT}");
    let v1 = format!("outbound|{PORT}|v1|{SERVICE}");
    let v2 = format!("outbound|{PORT}|v2|{SERVICE}");

    let mut ads = Ads::connect(cp.addr(), type_url::ROUTE_CONFIGURATION, &[&target]).await?;
    let rds = ads
        .wait_for(type_url::ROUTE_CONFIGURATION, |_| true)
        .await?;
    let routes: RouteConfiguration = only(&rds)?;
    let action = routes
        .virtual_hosts
        .first()
        .and_then(|v| v.routes.first())
        .and_then(|r| match &r.action {
            Some(route::Action::Route(a)) => a.cluster_specifier.as_ref(),
            _ => None,
        })
        .context("no route action")?;
    let route_action::ClusterSpecifier::WeightedClusters(weighted) = action else {
        bail!("expected weighted clusters, got {action:?}");
    };
    let split: Vec<(&str, Option<u32>)> = weighted
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight.as_ref().map(|w| w.value)))
        .collect();
    assert_eq!(split, [(v1.as_str(), Some(80)), (v2.as_str(), Some(20))]);

    // SotW CDS carries every cluster, whatever names were asked for.
    ads.subscribe(type_url::CLUSTER, &[&v1, &v2]).await?;
    let cds = ads.wait_for(type_url::CLUSTER, |_| true).await?;
    let mut names = cds
        .resources
        .iter()
        .map(|any| decode::<Cluster>(any).map(|c| c.name))
        .collect::<anyhow::Result<Vec<_>>>()?;
    names.sort();
    assert_eq!(names, [v1.clone(), v2.clone()]);

    ads.subscribe(type_url::CLUSTER_LOAD_ASSIGNMENT, &[&v1, &v2])
        .await?;
    let eds = ads
        .wait_for(type_url::CLUSTER_LOAD_ASSIGNMENT, |r| {
            r.resources.len() == 2
        })
        .await?;
    let mut by_cluster = HashMap::new();
    for any in &eds.resources {
        let cla: ClusterLoadAssignment = decode(any)?;
        by_cluster.insert(cla.cluster_name.clone(), endpoints(&cla));
    }
    // Backends alternate: [0] and [2] in v1, [1] in v2.
    assert_eq!(by_cluster.get(&v1), Some(&addrs(&[50071, 50073])));
    assert_eq!(by_cluster.get(&v2), Some(&addrs(&[50072])));
    Ok(())
}

#[tokio::test]
async fn go_control_plane_serves_resources_file() -> anyhow::Result<()> {
    // The cluster from the file replaces the generated one (same name), as protojson.
    let cluster_name = format!("outbound|{PORT}||{SERVICE}");
    let file = tempfile::NamedTempFile::new()?;
    let json = serde_json::json!({
        "resources": [{
            "@type": type_url::CLUSTER,
            "name": cluster_name,
            "type": "EDS",
            "edsClusterConfig": { "edsConfig": { "ads": {} }, "serviceName": cluster_name },
            "lbPolicy": "ROUND_ROBIN",
            "circuitBreakers": { "thresholds": [{ "maxRequests": 77 }] }
        }]
    });
    std::fs::write(file.path(), serde_json::to_vec(&json)?)?;
    let cp = GoControlPlane::start_with_resources(
        SERVICE,
        PORT,
        &addrs(&[50081]),
        None,
        Some(file.path()),
    )
    .await?;

    let mut ads = Ads::connect(cp.addr(), type_url::CLUSTER, &[&cluster_name]).await?;
    let cds = ads.wait_for(type_url::CLUSTER, |_| true).await?;
    let cluster: Cluster = only(&cds)?;
    assert_eq!(cluster.name, cluster_name);
    assert_eq!(cluster.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    // Our validator reads the file-provided circuit breaker (gRFC A32).
    let any = cds.resources.first().context("no resource")?;
    let mesh_client::xds::resource::Resource::Cluster(validated) =
        mesh_client::xds::resource::decode(ResourceType::Cluster, any)?
    else {
        bail!("not a cluster");
    };
    assert_eq!(validated.max_requests, Some(77));
    Ok(())
}

/// MeshChannel against go-control-plane: round robin over three real greeter backends,
/// then an 80/20 split pushed by the Go control plane reaches the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_channel_works_against_go_control_plane() -> anyhow::Result<()> {
    mesh_tests::init_tracing();
    let backends = mesh_tests::start_backends(3).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let mut gocp = GoControlPlane::start(SERVICE, PORT, &addrs, None).await?;
    let bootstrap = mesh_tests::bootstrap_for(gocp.addr(), "gocp-client");
    let mut client = mesh_tests::greeter_client(bootstrap).await;

    let counts = mesh_tests::spread(&mut client, 300).await?;
    println!("go-control-plane, round robin: {counts:?}");
    ensure!(counts.len() == 3, "expected 3 backends, got {counts:?}");
    for (id, n) in &counts {
        ensure!((90..=110).contains(n), "{id} got {n} of 300: {counts:?}");
    }

    // The Go program puts backends[0] and [2] in subset v1 and [1] in v2.
    gocp.update(&addrs, Some((80, 20))).await?;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let c = mesh_tests::spread(&mut client, 1000).await?;
        let v2 = c.get("backend-2").copied().unwrap_or(0);
        if (150..=250).contains(&v2) {
            println!("go-control-plane, 80/20 split: {c:?}");
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "split never reached the client: {c:?}"
        );
    }
    Ok(())
}

/// Delta xDS against go-control-plane's delta server (issue 8 item 5). The Go program serves
/// only `DeltaAggregatedResources` (state of the world answers UNIMPLEMENTED), so working
/// RPCs prove the MeshChannel speaks delta. An endpoint update arrives; after the Go server
/// closes every stream and serves again, the client resubscribes with its
/// `initial_resource_versions`, go-control-plane resends nothing unchanged, and RPCs and
/// updates keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_channel_over_delta_against_go_control_plane() -> anyhow::Result<()> {
    mesh_tests::init_tracing();
    let backends = mesh_tests::start_backends(2).await;
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.addr).collect();
    let mut gocp =
        GoControlPlane::start_with(SERVICE, PORT, &addrs[..1], None, None, Protocols::DeltaOnly)
            .await?;
    let bootstrap = mesh_tests::delta_bootstrap_for(gocp.addr(), "gocp-delta-client");
    let mut client = mesh_tests::greeter_client(bootstrap).await;
    let counts = mesh_tests::spread(&mut client, 20).await?;
    ensure!(counts.get("backend-1") == Some(&20), "{counts:?}");

    gocp.update(&addrs[1..], None).await?;
    ensure!(
        all_reach(&mut client, "backend-2").await?,
        "the endpoint update never reached the client"
    );
    let before = gocp.stats().await?;
    println!("go-control-plane delta, after an update: {before:?}");
    ensure!(
        before.sotw_streams == 0 && before.delta_streams >= 1,
        "{before:?}"
    );
    ensure!(before.delta_nacks == 0, "{before:?}");
    ensure!(before.initial_resource_versions == 0, "{before:?}");

    gocp.restart().await?;
    let mut resumed = None;
    for _ in 0..300 {
        let stats = gocp.stats().await?;
        if stats.initial_resource_versions >= 4 {
            resumed = Some(stats);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resumed =
        resumed.ok_or_else(|| anyhow!("no resubscription with initial_resource_versions"))?;
    let counts = mesh_tests::spread(&mut client, 20).await?;
    ensure!(counts.get("backend-2") == Some(&20), "{counts:?}");
    let after = gocp.stats().await?;
    println!("go-control-plane delta, after the restart: {after:?}");
    ensure!(
        after.initial_resource_versions == 4,
        "LDS, RDS, CDS, EDS: {after:?}"
    );
    ensure!(
        after.delta_resources_sent == resumed.delta_resources_sent
            && after.delta_resources_sent == before.delta_resources_sent,
        "go-control-plane resent unchanged resources: {before:?} then {after:?}"
    );

    gocp.update(&addrs[..1], None).await?;
    ensure!(
        all_reach(&mut client, "backend-1").await?,
        "an update after the restart never reached the client"
    );
    ensure!(gocp.stats().await?.delta_nacks == 0);
    Ok(())
}

/// Whether RPCs come to all reach `backend` (10 in a row), within [`WAIT`].
async fn all_reach(
    client: &mut xds_proto::helloworld::greeter_client::GreeterClient<mesh_client::MeshChannel>,
    backend: &str,
) -> anyhow::Result<bool> {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if mesh_tests::spread(client, 10).await?.get(backend) == Some(&10) {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}
