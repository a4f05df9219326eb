//! End-to-end xDS data-error handling (gRFC A88, with A53's `ignore_resource_deletion`):
//! three MeshChannels on one mesh-control ADS server, differing only in their bootstrap's
//! `server_features`, see a cached cluster NACKed and then deleted. By default a NACK keeps
//! the cached cluster serving; `fail_on_data_errors` drops it so RPCs fail with the NACK's
//! error; `ignore_resource_deletion` keeps a deleted cluster, which CSDS then shows as
//! DOES_NOT_EXIST with its value.

use std::time::Duration;

use mesh_client::bootstrap::Bootstrap;
use mesh_client::xds::{ResourceStatus, XdsClient};
use mesh_control::{ControlPlane, MeshConfig};
use mesh_tests::*;
use prost::Message;
use xds_proto::envoy::envoy::config::cluster::v3::Cluster;
use xds_proto::envoy::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use xds_proto::helloworld::HelloRequest;
use xds_proto::protobuf::Any;
use xds_proto::type_url;

/// The cluster's dump row in `bootstrap`'s client: (status, value dumped, error details).
fn cluster_row(bootstrap: &Bootstrap, name: &str) -> (ResourceStatus, bool, String) {
    let client = XdsClient::shared(bootstrap).unwrap();
    let dump = client.config_dump();
    let row = dump
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} not in {dump:?}"));
    (
        row.status,
        row.raw.is_some(),
        row.error
            .as_ref()
            .map(|e| e.details.clone())
            .unwrap_or_default(),
    )
}

/// `n` RPCs: how many failed, and their distinct messages.
async fn failures(
    client: &mut xds_proto::helloworld::greeter_client::GreeterClient<mesh_client::MeshChannel>,
    n: usize,
) -> (usize, std::collections::BTreeSet<String>) {
    let mut failed = 0;
    let mut messages = std::collections::BTreeSet::new();
    for _ in 0..n {
        if let Err(e) = client.say_hello(HelloRequest { name: "d".into() }).await {
            failed += 1;
            messages.insert(format!("{:?}: {}", e.code(), e.message()));
        }
    }
    (failed, messages)
}

/// One greeter backend behind a raw mesh-control ADS server on loopback: the backend, the
/// control (to change resources), the running server, and the greeter's cluster (name and
/// resource).
async fn greeter_on_raw_control() -> (
    Vec<mesh_examples::GreeterBackend>,
    ControlPlane,
    mesh_control::RunningControlPlane,
    String,
    Any,
) {
    let backends = start_backends(1).await;
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let snapshot =
        mesh_control::translate(&MeshConfig::from_yaml(&greeter_yaml(&addrs)).unwrap()).unwrap();
    let control = ControlPlane::raw(snapshot.resources.clone());
    let cp = control.listen(([127, 0, 0, 1], 0).into()).await.unwrap();
    let (cluster_name, good) = snapshot.of_type(type_url::CLUSTER)[0].clone();
    (backends, control, cp, cluster_name, good)
}

/// `cluster` as a STATIC cluster, which gRPC does not support: a NACK.
fn as_static(cluster: &Any) -> Any {
    let mut bad = Cluster::decode(cluster.value.as_slice()).unwrap();
    bad.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
    Any {
        type_url: type_url::CLUSTER.to_string(),
        value: bad.encode_to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_errors_with_and_without_fail_on_data_errors() {
    init_tracing();
    let (_backend, control, cp, cluster_name, good) = greeter_on_raw_control().await;

    let default_boot = bootstrap_with_features(cp.local_addr(), "a88-default", &[]);
    let failing_boot =
        bootstrap_with_features(cp.local_addr(), "a88-fail", &["fail_on_data_errors"]);
    let keeping_boot =
        bootstrap_with_features(cp.local_addr(), "a88-keep", &["ignore_resource_deletion"]);
    let mut default = greeter_client(default_boot.clone()).await;
    let mut failing = greeter_client(failing_boot.clone()).await;
    let mut keeping = greeter_client(keeping_boot.clone()).await;
    for c in [&mut default, &mut failing, &mut keeping] {
        assert_eq!(failures(c, 5).await.0, 0);
    }

    // A NACK: the same cluster as STATIC, which gRPC does not support.
    control.set_resources(
        type_url::CLUSTER,
        vec![(cluster_name.clone(), as_static(&good))],
    );
    let mut dropped = false;
    for _ in 0..100 {
        if failing
            .say_hello(HelloRequest { name: "w".into() })
            .await
            .is_err()
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        dropped,
        "fail_on_data_errors: the NACKed cluster stops serving"
    );
    let (failed, messages) = failures(&mut failing, 20).await;
    let (default_failed, _) = failures(&mut default, 20).await;
    let (keeping_failed, _) = failures(&mut keeping, 20).await;
    let rows = [
        ("default", cluster_row(&default_boot, &cluster_name)),
        (
            "fail_on_data_errors",
            cluster_row(&failing_boot, &cluster_name),
        ),
    ];
    println!(
        "NACK of a cached cluster: fail_on_data_errors client {failed}/20 failed {messages:?}; \
         default client {default_failed}/20; ignore_resource_deletion client {keeping_failed}/20; \
         CSDS {rows:?}"
    );
    assert_eq!(failed, 20);
    assert_eq!(messages.len(), 1, "{messages:?}");
    let message = messages.iter().next().unwrap();
    assert!(
        message.starts_with("Unavailable: ")
            && message.contains(&cluster_name)
            && message.contains("unsupported cluster type STATIC"),
        "{message}"
    );
    assert_eq!(
        default_failed, 0,
        "by default the cached cluster stays in force"
    );
    assert_eq!(keeping_failed, 0);
    // CSDS: NACKED either way; the value is dumped only where it is still in force.
    let (status, dumped, details) = &rows[0].1;
    assert_eq!((*status, *dumped), (ResourceStatus::Nacked, true));
    assert!(
        details.contains("unsupported cluster type STATIC"),
        "{details}"
    );
    let (status, dumped, details) = &rows[1].1;
    assert_eq!((*status, *dumped), (ResourceStatus::Nacked, false));
    assert!(details.contains("fail_on_data_errors"), "{details}");

    // The good cluster again: everyone serves.
    control.set_resources(type_url::CLUSTER, vec![(cluster_name.clone(), good)]);
    let mut back = false;
    for _ in 0..100 {
        if failures(&mut failing, 1).await.0 == 0 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the fail_on_data_errors client serves again");

    // A deletion: dropped by default (A53) and with fail_on_data_errors; kept with
    // ignore_resource_deletion, which CSDS shows as DOES_NOT_EXIST with the value.
    control.set_resources(type_url::CLUSTER, Vec::new());
    let mut deleted = false;
    for _ in 0..100 {
        if failures(&mut default, 1).await.0 == 1 && failures(&mut failing, 1).await.0 == 1 {
            deleted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(deleted, "the deletion reaches both clients");
    let (keeping_failed, _) = failures(&mut keeping, 20).await;
    let kept = cluster_row(&keeping_boot, &cluster_name);
    let gone = cluster_row(&default_boot, &cluster_name);
    println!(
        "deletion: ignore_resource_deletion {keeping_failed}/20 failed, CSDS {kept:?}; default CSDS {gone:?}"
    );
    assert_eq!(keeping_failed, 0);
    assert_eq!((kept.0, kept.1), (ResourceStatus::DoesNotExist, true));
    assert!(kept.2.contains("ignore_resource_deletion"), "{kept:?}");
    assert_eq!((gone.0, gone.1), (ResourceStatus::DoesNotExist, false));
    cp.shutdown().await;
}

/// The data-error rules are those of the xDS server in use: a client whose primary (no
/// features) is down runs on its fallback server (gRFC A71), which declares
/// `fail_on_data_errors`, so a NACK there drops the cached cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_in_use_decides_the_data_error_rules() {
    init_tracing();
    let (_backend, control, secondary, cluster_name, good) = greeter_on_raw_control().await;
    // The primary is down: a port nothing listens on.
    let primary = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let json = serde_json::json!({
        "xds_servers": [
            {"server_uri": primary.to_string(), "channel_creds": [{"type": "insecure"}],
             "server_features": ["xds_v3"]},
            {"server_uri": secondary.local_addr().to_string(), "channel_creds": [{"type": "insecure"}],
             "server_features": ["xds_v3", "fail_on_data_errors"]},
        ],
        "node": {"id": "a88-fallback", "cluster": "mesh-tests"}
    });
    let boot = Bootstrap::from_json(&json.to_string()).unwrap();
    let mut client = greeter_client(boot.clone()).await;
    assert_eq!(
        failures(&mut client, 5).await.0,
        0,
        "served by the fallback"
    );

    control.set_resources(
        type_url::CLUSTER,
        vec![(cluster_name.clone(), as_static(&good))],
    );
    let mut nacked = false;
    for _ in 0..100 {
        if cluster_row(&boot, &cluster_name).0 == ResourceStatus::Nacked {
            nacked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(nacked, "the client NACKed the STATIC cluster");
    let (failed, messages) = failures(&mut client, 20).await;
    let row = cluster_row(&boot, &cluster_name);
    println!(
        "NACK on the fallback server (fail_on_data_errors): {failed}/20 failed {messages:?}; CSDS {row:?}"
    );
    assert_eq!(
        failed, 20,
        "the fallback server's fail_on_data_errors applies"
    );
    assert_eq!((row.0, row.1), (ResourceStatus::Nacked, false));
    secondary.shutdown().await;
}
