//! Delta xDS end to end (issue 8 item 5): a MeshChannel whose bootstrap gives its xDS server
//! the `delta_ads` server feature gets its configuration from in-process mesh-control over
//! `DeltaAggregatedResources`. RPCs work; an update sends only the resource that changed; a
//! removal (`removed_resources`) is applied; after a control-plane restart the client's
//! `initial_resource_versions` spare the new server from resending anything, and RPCs and
//! updates keep working.

use std::collections::BTreeMap;
use std::time::Duration;

use mesh_client::xds::{ResourceStatus, XdsClient};
use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::*;
use xds_proto::helloworld::HelloRequest;
use xds_proto::protobuf::Any;
use xds_proto::type_url;

type ByType = BTreeMap<&'static str, Vec<(String, Any)>>;

/// The translated resources of the greeter service over `addrs`, by type URL.
fn resources(addrs: &[std::net::SocketAddr]) -> ByType {
    let config = MeshConfig::from_yaml(&greeter_yaml(addrs)).unwrap();
    mesh_control::translate(&config).unwrap().resources
}

fn of_type(all: &ByType, type_url: &str) -> Vec<(String, Any)> {
    all.get(type_url).cloned().unwrap_or_default()
}

/// Sends RPCs (at most `tries`, 50 ms apart) until 5 in a row all reach `backend`.
async fn wait_for_backend(
    client: &mut xds_proto::helloworld::greeter_client::GreeterClient<mesh_client::MeshChannel>,
    backend: &str,
    tries: usize,
) -> bool {
    for _ in 0..tries {
        if let Ok(counts) = spread(client, 5).await
            && counts.get(backend) == Some(&5)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_ads_update_removal_and_reconnect_with_initial_versions() {
    init_tracing();
    let backends = start_backends(2).await;
    let on_1 = resources(&[backends[0].addr]);
    let on_2 = resources(&[backends[1].addr]);
    let control = ControlPlane::raw(on_1.clone());
    let cp = control.listen(([127, 0, 0, 1], 0).into()).await.unwrap();
    let addr = cp.local_addr();
    let bootstrap = delta_bootstrap_for(addr, "delta-e2e");
    let mut client = greeter_client(bootstrap.clone()).await;

    // RPCs work.
    let counts = spread(&mut client, 10).await.unwrap();
    assert_eq!(counts.get("backend-1"), Some(&10), "{counts:?}");
    let first = control.stats();
    println!("after connect: {first:?}");
    assert_eq!((first.sotw_streams, first.delta_streams), (0, 1));
    assert_eq!(first.resources_sent, 4, "LDS, RDS, CDS and EDS, once each");
    assert_eq!(first.initial_resource_versions, 0);

    // An update: only the changed ClusterLoadAssignment goes out.
    control.set_resources(
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        of_type(&on_2, type_url::CLUSTER_LOAD_ASSIGNMENT),
    );
    assert!(
        wait_for_backend(&mut client, "backend-2", 200).await,
        "the endpoint update is applied"
    );
    let updated = control.stats();
    println!("after the EDS update: {updated:?}");
    assert_eq!(updated.resources_sent - first.resources_sent, 1);

    // A removal: the cluster goes away, RPCs fail on it, CSDS says so; it comes back.
    control.set_resources(type_url::CLUSTER, Vec::new());
    let mut failure = None;
    for _ in 0..200 {
        if let Err(e) = client.say_hello(HelloRequest { name: "x".into() }).await {
            failure = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failure = failure.expect("RPCs fail once the cluster is removed");
    println!("after the removal: {failure:?}");
    assert_eq!(failure.code(), tonic::Code::Unavailable, "{failure:?}");
    assert_eq!(control.stats().removals_sent, 1);
    let xds = XdsClient::shared(&bootstrap).unwrap();
    let cluster = xds
        .config_dump()
        .into_iter()
        .find(|d| d.resource_type == mesh_client::xds::resource::ResourceType::Cluster)
        .expect("the cluster is still subscribed");
    assert_eq!(cluster.status, ResourceStatus::DoesNotExist);
    control.set_resources(type_url::CLUSTER, of_type(&on_2, type_url::CLUSTER));
    assert!(
        wait_for_backend(&mut client, "backend-2", 200).await,
        "the cluster is back"
    );

    // Restart: a new control plane on the same port serving the same resources.
    let served: Vec<(String, Vec<(String, Any)>)> = [
        type_url::LISTENER,
        type_url::ROUTE_CONFIGURATION,
        type_url::CLUSTER,
        type_url::CLUSTER_LOAD_ASSIGNMENT,
    ]
    .into_iter()
    .map(|t| (t.to_string(), control.resources(t)))
    .collect();
    cp.shutdown().await;
    let restarted = ControlPlane::raw(served);
    let cp = restarted.listen(addr).await.unwrap();
    let mut resumed = None;
    for _ in 0..300 {
        let stats = restarted.stats();
        if stats.initial_resource_versions >= 4 {
            resumed = Some(stats);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resumed = resumed.expect("the client reconnects with its resource versions");
    println!("after the restart: {resumed:?}");
    assert_eq!(resumed.initial_resource_versions, 4);
    assert_eq!(
        resumed.resources_sent, 0,
        "nothing resent: the client holds every current version"
    );
    let counts = spread(&mut client, 10).await.unwrap();
    assert_eq!(counts.get("backend-2"), Some(&10), "{counts:?}");

    // And updates flow on the new stream.
    restarted.set_resources(
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        of_type(&on_1, type_url::CLUSTER_LOAD_ASSIGNMENT),
    );
    assert!(
        wait_for_backend(&mut client, "backend-1", 200).await,
        "an update after the restart is applied"
    );
    assert_eq!(restarted.stats().resources_sent, 1);
    cp.shutdown().await;
}

/// A SotW client and a delta client of the same control plane see the same configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sotw_and_delta_clients_share_one_control_plane() {
    init_tracing();
    let backends = start_backends(1).await;
    let cp = ControlPlane::raw(resources(&[backends[0].addr]))
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let mut sotw = greeter_client(bootstrap_for(cp.local_addr(), "sotw-client")).await;
    let mut delta = greeter_client(delta_bootstrap_for(cp.local_addr(), "delta-client")).await;
    for client in [&mut sotw, &mut delta] {
        let counts = spread(client, 5).await.unwrap();
        assert_eq!(counts.get("backend-1"), Some(&5), "{counts:?}");
    }
    assert_eq!(cp.control().connected_streams(), 2);
    cp.shutdown().await;
}

/// The protocol is chosen per server (gRFC A71 fallback): the primary speaks delta, the
/// secondary state of the world. With the primary down at start the client takes its
/// configuration from the secondary over SotW; when the primary returns it switches back
/// over delta, asking for everything (what it holds came from another server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_primary_and_sotw_fallback() {
    init_tracing();
    let backends = start_backends(2).await;
    let primary_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let secondary = ControlPlane::raw(resources(&[backends[1].addr]))
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let server = |a: std::net::SocketAddr, features: &[&str]| {
        serde_json::json!({
            "server_uri": a.to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": features,
        })
    };
    let json = serde_json::json!({
        "xds_servers": [
            server(primary_addr, &["xds_v3", "delta_ads"]),
            server(secondary.local_addr(), &["xds_v3"]),
        ],
        "node": {"id": "delta-fallback", "cluster": "mesh-tests", "locality": {}},
    });
    let bootstrap = mesh_client::bootstrap::Bootstrap::from_json(&json.to_string()).unwrap();
    let mut client = greeter_client(bootstrap).await;
    let counts = spread(&mut client, 10).await.unwrap();
    assert_eq!(counts.get("backend-2"), Some(&10), "{counts:?}");
    let on_secondary = secondary.control().stats();
    assert_eq!(
        (on_secondary.sotw_streams, on_secondary.delta_streams),
        (1, 0)
    );

    let primary = ControlPlane::raw(resources(&[backends[0].addr]))
        .listen(primary_addr)
        .await
        .unwrap();
    assert!(
        wait_for_backend(&mut client, "backend-1", 300).await,
        "back to the primary"
    );
    let on_primary = primary.control().stats();
    println!("primary back: {on_primary:?}");
    assert_eq!((on_primary.sotw_streams, on_primary.delta_streams), (0, 1));
    assert_eq!(on_primary.initial_resource_versions, 0);
    assert_eq!(on_primary.resources_sent, 4);
    primary.shutdown().await;
    secondary.shutdown().await;
}
