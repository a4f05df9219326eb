//! End-to-end xRFC TP3 per-resource errors from the xDS server (gRFC A88 "Support for Errors
//! Provided by the xDS server"): mesh-control reports errors in `resource_errors` over a
//! real ADS stream (state of the world, and delta for one client) to MeshChannels with and
//! without `fail_on_data_errors`. A cached cluster under PERMISSION_DENIED keeps serving by
//! default (CSDS `RECEIVED_ERROR` with the value) and fails with the server's message under
//! `fail_on_data_errors`; an unknown cluster under NOT_FOUND, and one never sent under
//! UNAVAILABLE (transient), fail at once with the server's error, not the 15 s timer's.

use std::time::{Duration, Instant};

use mesh_client::MeshChannel;
use mesh_client::bootstrap::Bootstrap;
use mesh_client::xds::XdsClient;
use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::*;
use xds_proto::envoy::envoy::admin::v3::ClientResourceStatus;
use xds_proto::envoy::google::rpc::Status;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;
use xds_proto::type_url;

const PERMISSION_DENIED: i32 = 7;
const NOT_FOUND: i32 = 5;
const UNAVAILABLE: i32 = 14;

/// Three services on the same backends; clients dial greeter, ghost and slow.
fn yaml(addrs: &[std::net::SocketAddr]) -> String {
    let mut y = String::from("services:\n");
    for service in ["greeter.default", "ghost.default", "slow.default"] {
        y += &format!("  - name: {service}\n    port: 8080\n    endpoints:\n");
        for a in addrs {
            y += &format!("      - address: {a}\n");
        }
    }
    y
}

fn status(code: i32, message: &str) -> Status {
    Status {
        code,
        message: message.into(),
        details: vec![],
    }
}

/// The cluster's CSDS row in `bootstrap`'s client, as the CSDS service reports it:
/// (client_status, value dumped, error_state details).
fn csds_row(bootstrap: &Bootstrap, name: &str) -> (ClientResourceStatus, bool, String) {
    let client = XdsClient::shared(bootstrap).unwrap();
    let config = mesh_client::admin::client_config(&client, true);
    let row = config
        .generic_xds_configs
        .iter()
        .find(|g| g.type_url == type_url::CLUSTER && g.name == name)
        .unwrap_or_else(|| panic!("{name} not in {config:?}"));
    (
        ClientResourceStatus::try_from(row.client_status).unwrap(),
        row.xds_config.is_some(),
        row.error_state
            .as_ref()
            .map(|e| e.details.clone())
            .unwrap_or_default(),
    )
}

/// `n` RPCs: how many failed, and their distinct `code: message`.
async fn failures(
    client: &mut GreeterClient<MeshChannel>,
    n: usize,
) -> (usize, std::collections::BTreeSet<String>) {
    let mut failed = 0;
    let mut messages = std::collections::BTreeSet::new();
    for _ in 0..n {
        if let Err(e) = client.say_hello(HelloRequest { name: "e".into() }).await {
            failed += 1;
            messages.insert(format!("{:?}: {}", e.code(), e.message()));
        }
    }
    (failed, messages)
}

/// Polls (at most 100 × 50 ms) until `client`'s RPCs fail (`fail`) or succeed.
async fn until(client: &mut GreeterClient<MeshChannel>, fail: bool) -> bool {
    for _ in 0..100 {
        if (failures(client, 1).await.0 == 1) == fail {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A lazy channel to `target`; its first RPC (bounded by 20 s): how long it took and how
/// it failed, and the client, whose channel keeps the subscription (and so its CSDS row)
/// alive while the caller holds it.
async fn first_rpc(
    bootstrap: Bootstrap,
    target: &str,
) -> (
    Duration,
    Result<(), tonic::Status>,
    GreeterClient<MeshChannel>,
) {
    let started = Instant::now();
    let channel = MeshChannel::builder(target)
        .with_bootstrap(bootstrap)
        .connect_lazy()
        .unwrap();
    let mut client = GreeterClient::new(channel);
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        client.say_hello(HelloRequest { name: "f".into() }),
    )
    .await
    .expect("the first RPC ends within 20 s");
    (started.elapsed(), result.map(|_| ()), client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_reported_resource_errors() {
    init_tracing();
    let backends = start_backends(1).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let snapshot = mesh_control::translate(&MeshConfig::from_yaml(&yaml(&addrs)).unwrap()).unwrap();
    let clusters = snapshot.of_type(type_url::CLUSTER);
    let named = |service: &str| {
        clusters
            .iter()
            .find(|(n, _)| n.contains(service))
            .unwrap_or_else(|| panic!("no cluster for {service} in {clusters:?}"))
            .0
            .clone()
    };
    let (greeter, ghost, slow) = (named("greeter"), named("ghost"), named("slow"));
    // ghost's and slow's clusters are not served at all: the server reports errors instead.
    let mut resources = snapshot.resources.clone();
    if let Some(list) = resources.get_mut(type_url::CLUSTER) {
        list.retain(|(n, _)| *n == greeter);
    }
    let control = ControlPlane::raw(resources);
    let cp = control.listen(([127, 0, 0, 1], 0).into()).await.unwrap();

    let default_boot = bootstrap_with_features(cp.local_addr(), "tp3-default", &[]);
    let failing_boot =
        bootstrap_with_features(cp.local_addr(), "tp3-fail", &["fail_on_data_errors"]);
    let delta_boot = bootstrap_with_features(
        cp.local_addr(),
        "tp3-delta-fail",
        &["delta_ads", "fail_on_data_errors"],
    );
    let mut default = greeter_client(default_boot.clone()).await;
    let mut failing = greeter_client(failing_boot.clone()).await;
    let mut delta = greeter_client(delta_boot.clone()).await;
    for c in [&mut default, &mut failing, &mut delta] {
        assert_eq!(failures(c, 5).await.0, 0);
    }

    // 1. PERMISSION_DENIED for the cached cluster: a data error.
    let denied = "node may not read this cluster";
    control.set_resource_error(
        type_url::CLUSTER,
        &greeter,
        Some(status(PERMISSION_DENIED, denied)),
    );
    assert!(
        until(&mut failing, true).await,
        "fail_on_data_errors: the cluster stops serving"
    );
    assert!(
        until(&mut delta, true).await,
        "delta + fail_on_data_errors: the cluster stops serving"
    );
    let (failed, messages) = failures(&mut failing, 20).await;
    let (delta_failed, delta_messages) = failures(&mut delta, 20).await;
    let (default_failed, default_messages) = failures(&mut default, 20).await;
    let kept = csds_row(&default_boot, &greeter);
    let dropped = csds_row(&failing_boot, &greeter);
    let delta_dropped = csds_row(&delta_boot, &greeter);
    println!(
        "PERMISSION_DENIED of a cached cluster: default client {default_failed}/20 failed \
         {default_messages:?}, CSDS {kept:?}; fail_on_data_errors client {failed}/20 failed \
         {messages:?}, CSDS {dropped:?}; delta fail_on_data_errors client {delta_failed}/20 \
         failed {delta_messages:?}, CSDS {delta_dropped:?}"
    );
    assert_eq!(
        default_failed, 0,
        "by default the cached cluster keeps serving"
    );
    // The route layer names the failed cluster, then the resource and the server's error.
    let expected =
        format!("CDS \"{greeter}\": the xDS server reported PERMISSION_DENIED: {denied}");
    for (n, msgs) in [(failed, &messages), (delta_failed, &delta_messages)] {
        assert_eq!(n, 20);
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        let message = msgs.iter().next().unwrap();
        assert!(
            message.starts_with("Unavailable: ") && message.contains(&expected),
            "{message}"
        );
    }
    let server_says = format!("the xDS server reported PERMISSION_DENIED: {denied}");
    assert_eq!(
        (kept.0, kept.1),
        (ClientResourceStatus::ReceivedError, true)
    );
    assert_eq!(kept.2, server_says);
    for row in [&dropped, &delta_dropped] {
        assert_eq!((row.0, row.1), (ClientResourceStatus::ReceivedError, false));
        assert!(
            row.2.starts_with(&server_says) && row.2.contains("fail_on_data_errors"),
            "{row:?}"
        );
    }

    // The error cleared: the cluster is sent again and everyone serves.
    control.set_resource_error(type_url::CLUSTER, &greeter, None);
    assert!(until(&mut failing, false).await, "served again");
    assert!(until(&mut delta, false).await, "served again (delta)");
    assert_eq!(failures(&mut default, 5).await.0, 0);
    assert_eq!(
        csds_row(&default_boot, &greeter).0,
        ClientResourceStatus::Acked
    );

    // 2. NOT_FOUND for a cluster the server does not have: fails at once, with the
    // server's error (the does-not-exist timer would take 15 s and say otherwise).
    let not_found = "no cluster by that name";
    control.set_resource_error(
        type_url::CLUSTER,
        &ghost,
        Some(status(NOT_FOUND, not_found)),
    );
    let (took, result, _client) =
        first_rpc(default_boot.clone(), "xds:///ghost.default:8080").await;
    let e = result.expect_err("ghost has no cluster");
    println!(
        "NOT_FOUND for an unknown cluster: first RPC failed after {took:?}: {:?}: {}",
        e.code(),
        e.message()
    );
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message().contains(&format!(
            "CDS \"{ghost}\": the xDS server reported NOT_FOUND: {not_found}"
        )),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("does not exist"), "{}", e.message());
    assert!(
        took < mesh_client::xds::protocol::DOES_NOT_EXIST_TIMEOUT,
        "the server's error, not the timer: {took:?}"
    );
    let row = csds_row(&default_boot, &ghost);
    println!("  CSDS {row:?}");
    assert_eq!((row.0, row.1), (ClientResourceStatus::ReceivedError, false));

    // 3. UNAVAILABLE (transient) for a cluster never sent: fails with it, also at once.
    let later = "cluster store unreachable, try later";
    control.set_resource_error(type_url::CLUSTER, &slow, Some(status(UNAVAILABLE, later)));
    let (took, result, _client) = first_rpc(failing_boot.clone(), "xds:///slow.default:8080").await;
    let e = result.expect_err("slow has no cluster");
    println!(
        "UNAVAILABLE for an uncached cluster: first RPC failed after {took:?}: {:?}: {}",
        e.code(),
        e.message()
    );
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(
        e.message().contains(&format!(
            "CDS \"{slow}\": the xDS server reported UNAVAILABLE: {later}"
        )),
        "{}",
        e.message()
    );
    assert!(
        took < mesh_client::xds::protocol::DOES_NOT_EXIST_TIMEOUT,
        "{took:?}"
    );
    let row = csds_row(&failing_boot, &slow);
    println!("  CSDS {row:?}");
    assert_eq!((row.0, row.1), (ClientResourceStatus::ReceivedError, false));

    // The greeter target was untouched by the other clusters' errors.
    for c in [&mut default, &mut failing, &mut delta] {
        assert_eq!(failures(c, 5).await.0, 0);
    }
    cp.shutdown().await;
}
