//! End-to-end: xDS-managed servers (mesh-server) against mesh-control over real ADS.

use std::time::Duration;

use mesh_control::ControlPlane;
use mesh_tests::server::*;
use mesh_tests::*;
use xds_proto::type_url;

/// gRFC A36: NOT_SERVING and no RPC until the Listener arrives; then SERVING; the
/// Listener removed → NOT_SERVING again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_serves_only_with_a_listener() {
    init_tracing();
    let cp = ControlPlane::empty().listen(([127, 0, 0, 1], 0).into()).await.unwrap();
    let listener = MeshGreeter::bind().await;
    let addr = listener.local_addr().unwrap();
    let server = MeshGreeter::start(listener, "s1", server_bootstrap(cp.local_addr(), "srv-1", false)).await;

    assert_eq!(server.health().await, "NOT_SERVING");
    let refused = direct_hello(addr).await;
    assert!(refused.is_err(), "an RPC was served without a Listener: {refused:?}");

    cp.control().set_resources(
        type_url::LISTENER,
        vec![(inbound_name(addr), inbound_listener(addr, "r1", vec![]))],
    );
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);
    assert_eq!(direct_hello(addr).await.unwrap(), "Hello direct from s1");

    cp.control().set_resources(type_url::LISTENER, vec![]);
    assert!(server.wait_health("NOT_SERVING", Duration::from_secs(10)).await);
    let after = direct_hello(addr).await;
    assert!(after.is_err(), "served after the Listener was deleted: {after:?}");
    assert!(server.stats.snapshot().connections_refused >= 2);
    server.stop().await;
}

/// gRFC A53: with `ignore_resource_deletion` a deleted Listener keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ignore_resource_deletion_keeps_serving() {
    init_tracing();
    let cp = ControlPlane::empty().listen(([127, 0, 0, 1], 0).into()).await.unwrap();
    let listener = MeshGreeter::bind().await;
    let addr = listener.local_addr().unwrap();
    cp.control().set_resources(
        type_url::LISTENER,
        vec![(inbound_name(addr), inbound_listener(addr, "r1", vec![]))],
    );
    let server = MeshGreeter::start(listener, "s2", server_bootstrap(cp.local_addr(), "srv-2", true)).await;
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);

    cp.control().set_resources(type_url::LISTENER, vec![]);
    // Give the deletion time to arrive, then check the server still serves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.health().await, "SERVING");
    assert_eq!(direct_hello(addr).await.unwrap(), "Hello direct from s2");
    server.stop().await;
}

/// A listener update under load: existing connections drain (GOAWAY) and no RPC fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_update_under_load_fails_no_rpc() {
    init_tracing();
    let listener = MeshGreeter::bind().await;
    let addr = listener.local_addr().unwrap();
    // Client-side resources for greeter.default:8080 → this server, plus its inbound Listener.
    let snapshot = mesh_control::translate(
        &mesh_control::MeshConfig::from_yaml(&greeter_yaml(&[addr])).unwrap(),
    )
    .unwrap();
    let control = ControlPlane::raw(snapshot.resources.clone());
    let mut listeners: Vec<_> = snapshot.of_type(type_url::LISTENER).to_vec();
    listeners.retain(|(n, _)| !n.starts_with("xds.istio.io/"));
    let with_inbound = |route: &str| {
        let mut l = listeners.clone();
        l.push((inbound_name(addr), inbound_listener(addr, route, vec![])));
        l
    };
    control.set_resources(type_url::LISTENER, with_inbound("v1"));
    let cp = control.listen(([127, 0, 0, 1], 0).into()).await.unwrap();
    let server = MeshGreeter::start(listener, "s3", server_bootstrap(cp.local_addr(), "srv-3", false)).await;
    assert!(server.wait_health("SERVING", Duration::from_secs(10)).await);

    let client = greeter_client(bootstrap_for(cp.local_addr(), "client-3")).await;
    let load = Load::start(client, 8, 20_000, Duration::from_secs(60));
    assert!(load.wait_for_ok(500, Duration::from_secs(30)).await);
    for v in 2..=4 {
        control.set_resources(type_url::LISTENER, with_inbound(&format!("v{v}")));
        let now = load.ok_so_far();
        assert!(load.wait_for_ok(now + 500, Duration::from_secs(30)).await);
    }
    let report = load.finish().await;
    println!("listener updates under load: {report:?}");
    assert!(report.ok >= 2000, "{report:?}");
    assert_eq!(report.failed, 0, "failures: {:?}", report.errors);
    server.stop().await;
}
