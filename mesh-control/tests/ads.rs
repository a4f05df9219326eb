//! ADS server tests with a real tonic client over 127.0.0.1: subscribe, ACK, push, NACK,
//! RDS by name, raw resources, delta, client disconnect and shutdown. Every wait is bounded.

// Test helpers outside #[test] fns may panic: a failed wait is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mesh_control::{ControlPlane, MeshConfig, RunningControlPlane};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use xds_proto::envoy::envoy::config::core::v3::Node;
use xds_proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DiscoveryRequest, DiscoveryResponse,
};
use xds_proto::envoy::google::rpc::Status as RpcStatus;
use xds_proto::protobuf::Any;
use xds_proto::type_url;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(300);

/// The inbound listener of ONE's only endpoint.
const INBOUND_50051: &str = "xds.istio.io/grpc/lds/inbound/127.0.0.1:50051";

const ONE: &str = "services:
  - name: greeter.default
    port: 8080
    endpoints: [ { address: '127.0.0.1:50051' } ]
  - name: other.default
    port: 9090
";

struct Client {
    requests: mpsc::Sender<DiscoveryRequest>,
    responses: Streaming<DiscoveryResponse>,
}

impl Client {
    async fn connect(running: &RunningControlPlane) -> Client {
        let url = format!("http://{}", running.local_addr());
        let mut ads = tokio::time::timeout(WAIT, AggregatedDiscoveryServiceClient::connect(url))
            .await
            .unwrap()
            .unwrap();
        let (requests, rx) = mpsc::channel(16);
        let responses = tokio::time::timeout(
            WAIT,
            ads.stream_aggregated_resources(ReceiverStream::new(rx)),
        )
        .await
        .unwrap()
        .unwrap()
        .into_inner();
        Client {
            requests,
            responses,
        }
    }

    async fn send(&self, type_url: &str, names: &[&str], version: &str, nonce: &str) {
        self.requests
            .send(DiscoveryRequest {
                node: Some(Node {
                    id: "test-node".into(),
                    ..Default::default()
                }),
                type_url: type_url.into(),
                resource_names: names.iter().map(|n| n.to_string()).collect(),
                version_info: version.into(),
                response_nonce: nonce.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn ack(&self, r: &DiscoveryResponse, names: &[&str]) {
        self.send(&r.type_url, names, &r.version_info, &r.nonce)
            .await;
    }

    async fn next(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(WAIT, self.responses.message())
            .await
            .expect("no response in time")
            .expect("stream failed")
            .expect("stream ended")
    }

    async fn quiet(&mut self) {
        if let Ok(got) = tokio::time::timeout(QUIET, self.responses.message()).await {
            panic!("expected nothing, got {got:?}");
        }
    }
}

async fn start(yaml: &str) -> RunningControlPlane {
    let config = MeshConfig::from_yaml(yaml).unwrap();
    ControlPlane::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn names(r: &DiscoveryResponse) -> Vec<String> {
    use prost::Message;
    r.resources
        .iter()
        .map(|any| {
            // Every xDS resource type used here has `name` (or `cluster_name`) as field 1.
            let named = NameOnly::decode(any.value.as_slice()).unwrap();
            named.name
        })
        .collect()
}

#[derive(Clone, PartialEq, prost::Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

#[tokio::test]
async fn lds_wildcard_then_ack_is_not_answered() {
    let running = start(ONE).await;
    let mut c = Client::connect(&running).await;
    c.send(type_url::LISTENER, &[], "", "").await;
    let r = c.next().await;
    assert_eq!(r.type_url, type_url::LISTENER);
    assert_eq!(r.version_info, "1");
    assert!(!r.nonce.is_empty());
    assert_eq!(
        names(&r),
        ["greeter.default:8080", "other.default:9090", INBOUND_50051]
    );
    c.ack(&r, &[]).await;
    c.quiet().await;
    running.shutdown().await;
}

#[tokio::test]
async fn set_config_pushes_only_changed_types_with_a_new_version() {
    let running = start(ONE).await;
    let mut c = Client::connect(&running).await;
    c.send(type_url::LISTENER, &[], "", "").await;
    let lds = c.next().await;
    c.ack(&lds, &[]).await;
    c.send(
        type_url::ROUTE_CONFIGURATION,
        &["greeter.default:8080"],
        "",
        "",
    )
    .await;
    let rds = c.next().await;
    c.ack(&rds, &["greeter.default:8080"]).await;
    c.quiet().await;

    // A route change: listeners stay the same, so only RDS is pushed.
    let mut config = MeshConfig::from_yaml(ONE).unwrap();
    config.services[0].routes = vec![mesh_control::Route {
        destination: Some(mesh_control::Destination {
            service: Some("other.default".into()),
            ..Default::default()
        }),
        ..Default::default()
    }];
    running.control().set_config(config).unwrap();
    let pushed = c.next().await;
    assert_eq!(pushed.type_url, type_url::ROUTE_CONFIGURATION);
    assert_eq!(pushed.version_info, "2");
    assert_ne!(pushed.nonce, rds.nonce);
    assert_ne!(pushed.resources, rds.resources);
    c.ack(&pushed, &["greeter.default:8080"]).await;
    c.quiet().await;

    // Removing a service changes LDS.
    let mut smaller = MeshConfig::from_yaml(ONE).unwrap();
    smaller.services.pop();
    running.control().set_config(smaller).unwrap();
    let lds2 = c.next().await;
    assert_eq!(lds2.type_url, type_url::LISTENER);
    assert_eq!(lds2.version_info, "3");
    assert_eq!(names(&lds2), ["greeter.default:8080", INBOUND_50051]);
    running.shutdown().await;
}

#[tokio::test]
async fn nack_is_logged_and_not_resent() {
    let running = start(ONE).await;
    let mut c = Client::connect(&running).await;
    c.send(type_url::CLUSTER, &[], "", "").await;
    let cds = c.next().await;
    assert_eq!(names(&cds).len(), 2);
    c.requests
        .send(DiscoveryRequest {
            type_url: type_url::CLUSTER.into(),
            response_nonce: cds.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: "cluster rejected by test".into(),
                details: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    c.quiet().await;
    // A stale request (old nonce) is ignored too.
    c.send(type_url::CLUSTER, &[], "", "not-a-nonce").await;
    c.quiet().await;
    running.shutdown().await;
}

#[tokio::test]
async fn rds_and_eds_subscribe_by_name() {
    let running = start(ONE).await;
    let mut c = Client::connect(&running).await;
    c.send(
        type_url::ROUTE_CONFIGURATION,
        &["other.default:9090", "missing:1"],
        "",
        "",
    )
    .await;
    let rds = c.next().await;
    assert_eq!(names(&rds), ["other.default:9090"]);
    c.send(
        type_url::CLUSTER_LOAD_ASSIGNMENT,
        &["outbound|8080||greeter.default"],
        "",
        "",
    )
    .await;
    let eds = c.next().await;
    assert_eq!(names(&eds), ["outbound|8080||greeter.default"]);
    // Adding a name is a subscription change and is answered.
    c.send(
        type_url::ROUTE_CONFIGURATION,
        &["other.default:9090", "greeter.default:8080"],
        &rds.version_info,
        &rds.nonce,
    )
    .await;
    let both = c.next().await;
    assert_eq!(both.type_url, type_url::ROUTE_CONFIGURATION);
    assert_eq!(names(&both), ["greeter.default:8080", "other.default:9090"]);
    running.shutdown().await;
}

#[tokio::test]
async fn raw_resources_of_any_type_are_served_and_pushed() {
    let control = ControlPlane::empty();
    let running = control
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut c = Client::connect(&running).await;
    let secret_type = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    c.send(secret_type, &["s1"], "", "").await;
    let first = c.next().await;
    assert!(first.resources.is_empty());
    c.ack(&first, &["s1"]).await;
    let any = Any {
        type_url: secret_type.into(),
        value: vec![0x0a, 0x02, b's', b'1'],
    };
    control.set_resources(secret_type, vec![("s1".into(), any.clone())]);
    let pushed = c.next().await;
    assert_eq!(pushed.resources, [any]);
    assert_eq!(pushed.version_info, control.version());
    running.shutdown().await;
}

#[tokio::test]
async fn delta_subscription_gets_only_the_named_resource() {
    let running = start(ONE).await;
    let url = format!("http://{}", running.local_addr());
    let mut ads = AggregatedDiscoveryServiceClient::connect(url)
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(1);
    tx.send(DeltaDiscoveryRequest {
        node: Some(Node {
            id: "delta-node".into(),
            ..Default::default()
        }),
        type_url: type_url::LISTENER.into(),
        resource_names_subscribe: vec!["greeter.default:8080".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut responses = tokio::time::timeout(
        WAIT,
        ads.delta_aggregated_resources(ReceiverStream::new(rx)),
    )
    .await
    .unwrap()
    .unwrap()
    .into_inner();
    let r = tokio::time::timeout(WAIT, responses.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.type_url, type_url::LISTENER);
    let got: Vec<&str> = r.resources.iter().map(|res| res.name.as_str()).collect();
    assert_eq!(got, ["greeter.default:8080"]);
    assert!(r.resources.iter().all(|res| !res.version.is_empty()));
    assert!(!r.nonce.is_empty());
    drop(tx);
    running.shutdown().await;
}

#[tokio::test]
async fn client_disconnect_ends_the_stream() {
    let running = start(ONE).await;
    let mut c = Client::connect(&running).await;
    c.send(type_url::LISTENER, &[], "", "").await;
    c.next().await;
    assert_eq!(running.control().connected_streams(), 1);
    drop(c);
    let mut closed = false;
    for _ in 0..100 {
        if running.control().connected_streams() == 0 {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "stream task still running after the client left");
    running.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_open_streams() {
    let running = start(ONE).await;
    let addr = running.local_addr();
    let mut c = Client::connect(&running).await;
    c.send(type_url::LISTENER, &[], "", "").await;
    c.next().await;
    tokio::time::timeout(WAIT, running.shutdown())
        .await
        .unwrap();
    let end = tokio::time::timeout(WAIT, c.responses.message())
        .await
        .expect("stream still open after shutdown");
    match end {
        Err(status) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status}"),
        Ok(None) => {}
        Ok(Some(r)) => panic!("unexpected response {r:?}"),
    }
    // Nothing accepts connections any more.
    let again = tokio::time::timeout(
        WAIT,
        AggregatedDiscoveryServiceClient::connect(format!("http://{addr}")),
    )
    .await
    .unwrap();
    assert!(again.is_err());
}

#[tokio::test]
async fn server_gets_its_inbound_listener_by_name() {
    use xds_proto::envoy::envoy::config::listener::v3::Listener;
    let running = start(
        "services:
  - name: greeter.default
    port: 8080
    endpoints: [ { address: '127.0.0.1:50051' }, { address: '127.0.0.1:50052' } ]
    authorization:
      policies: [ { name: local, source_ips: ['127.0.0.1/32'] } ]
",
    )
    .await;
    let mut c = Client::connect(&running).await;
    // What a server bound to 127.0.0.1:50051 asks for with Istio's bootstrap template.
    let name = mesh_control::inbound_listener_name("127.0.0.1:50051");
    assert_eq!(name, INBOUND_50051);
    c.send(
        type_url::LISTENER,
        &[&name, "xds.istio.io/grpc/lds/inbound/127.0.0.1:1"],
        "",
        "",
    )
    .await;
    let r = c.next().await;
    assert_eq!(r.type_url, type_url::LISTENER);
    assert_eq!(names(&r), [INBOUND_50051]);
    let listener: Listener = xds_proto::any::unpack(&r.resources[0]).unwrap();
    assert_eq!(listener.filter_chains.len(), 1);
    assert!(listener.api_listener.is_none());
    // The missing name stays subscribed (a server waits for it); the ACK keeps both.
    c.ack(&r, &[&name, "xds.istio.io/grpc/lds/inbound/127.0.0.1:1"])
        .await;
    c.quiet().await;
    running.shutdown().await;
}
