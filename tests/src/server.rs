//! Support for xDS-managed server tests: hand-built server-side Listeners (served raw by
//! mesh-control), MeshServer greeters, health checks and raw HTTP/2 probes.

use std::net::SocketAddr;
use std::time::Duration;

use mesh_client::bootstrap::Bootstrap;
use mesh_server::{MeshServer, ServerStats};
use xds_proto::any::pack;
use xds_proto::envoy::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use xds_proto::envoy::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use xds_proto::envoy::envoy::config::route::v3::{
    NonForwardingAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route, route_match,
};
use xds_proto::envoy::envoy::extensions::filters::http::router::v3::Router;
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use xds_proto::protobuf::Any;

/// The inbound Listener name of a server bound to `addr` (Istio's template).
pub fn inbound_name(addr: SocketAddr) -> String {
    format!("xds.istio.io/grpc/lds/inbound/{addr}")
}

/// The mesh-control resources of a STRICT mTLS `greeter.default:8080` (service account
/// `greeter`) with its one endpoint at `addr`: the client's Listener, route, cluster and
/// endpoints, and the server's inbound Listener for `addr` only (served raw).
pub fn strict_greeter_resources(
    addr: SocketAddr,
) -> std::collections::BTreeMap<&'static str, Vec<(String, Any)>> {
    let yaml = format!(
        "services:\n  - name: greeter.default\n    port: 8080\n    mtls: STRICT\n    service_account: greeter\n    endpoints:\n      - address: {addr}\n"
    );
    let config = mesh_control::MeshConfig::from_yaml(&yaml).expect("a valid mesh.yaml");
    let mut resources = mesh_control::translate(&config)
        .expect("the mesh.yaml translates")
        .resources;
    let inbound = inbound_name(addr);
    if let Some(list) = resources.get_mut(xds_proto::type_url::LISTENER) {
        list.retain(|(n, _)| !n.starts_with("xds.istio.io/") || *n == inbound);
    }
    resources
}

/// A server-side Listener for `addr`: one plaintext filter chain whose inline route sends
/// every path to the server's services (`non_forwarding_action`), with `extra_filters`
/// (e.g. RBAC) before the router. `route_name` distinguishes versions.
pub fn inbound_listener(addr: SocketAddr, route_name: &str, extra_filters: Vec<HttpFilter>) -> Any {
    inbound_listener_with(addr, route_name, extra_filters, None)
}

/// As [`inbound_listener`], with the HCM's `common_http_protocol_options.max_stream_duration`.
pub fn inbound_listener_with(
    addr: SocketAddr,
    route_name: &str,
    extra_filters: Vec<HttpFilter>,
    max_stream_duration: Option<Duration>,
) -> Any {
    let route = Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::NonForwardingAction(NonForwardingAction {})),
        ..Default::default()
    };
    let mut http_filters = extra_filters;
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(
            &Router::default(),
        ))),
        ..Default::default()
    });
    let hcm = HttpConnectionManager {
        stat_prefix: "inbound".into(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: route_name.into(),
                virtual_hosts: vec![VirtualHost {
                    name: "inbound".into(),
                    domains: vec!["*".into()],
                    routes: vec![route],
                    ..Default::default()
                }],
                ..Default::default()
            },
        )),
        http_filters,
        common_http_protocol_options: max_stream_duration.map(|d| {
            xds_proto::envoy::envoy::config::core::v3::HttpProtocolOptions {
                max_stream_duration: Some(xds_proto::protobuf::Duration {
                    seconds: d.as_secs() as i64,
                    nanos: d.subsec_nanos() as i32,
                }),
                ..Default::default()
            }
        }),
        ..Default::default()
    };
    let listener = Listener {
        name: inbound_name(addr),
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: addr.ip().to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                    addr.port(),
                ))),
                ..Default::default()
            })),
        }),
        filter_chains: vec![FilterChain {
            name: "inbound-plaintext".into(),
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    pack(&listener)
}

/// A bootstrap for an xDS-managed server (with the inbound template), optionally with
/// `ignore_resource_deletion`.
pub fn server_bootstrap(cp: SocketAddr, node_id: &str, ignore_deletion: bool) -> Bootstrap {
    let mut features = vec!["xds_v3"];
    if ignore_deletion {
        features.push("ignore_resource_deletion");
    }
    let json = serde_json::json!({
        "xds_servers": [{
            "server_uri": cp.to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": features,
        }],
        "node": {"id": node_id, "cluster": "mesh-tests"},
        "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s"
    });
    Bootstrap::from_json(&json.to_string()).expect("bootstrap parses")
}

/// A greeter served by [`MeshServer`] on an already bound listener, plus a maintenance
/// port serving health (not xDS-managed).
pub struct MeshGreeter {
    /// The xDS-managed address.
    pub addr: SocketAddr,
    /// The maintenance (health) address.
    pub maintenance: SocketAddr,
    /// Counters.
    pub stats: std::sync::Arc<ServerStats>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    maint_task: tokio::task::JoinHandle<()>,
}

impl MeshGreeter {
    /// Binds 127.0.0.1:0 and returns the listener, so the test can configure its Listener
    /// resource before the server starts.
    pub async fn bind() -> tokio::net::TcpListener {
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind")
    }

    /// Starts serving `id`'s greeter on `listener` under `bootstrap`.
    pub async fn start(listener: tokio::net::TcpListener, id: &str, bootstrap: Bootstrap) -> Self {
        Self::start_with_limits(listener, id, bootstrap, mesh_server::Http2Limits::default()).await
    }

    /// As [`MeshGreeter::start`], with explicit HTTP/2 limits.
    pub async fn start_with_limits(
        listener: tokio::net::TcpListener,
        id: &str,
        bootstrap: Bootstrap,
        limits: mesh_server::Http2Limits,
    ) -> Self {
        let addr = listener.local_addr().expect("addr");
        let builder = MeshServer::builder()
            .with_bootstrap(bootstrap)
            .with_limits(limits)
            .add_service(xds_proto::helloworld::greeter_server::GreeterServer::new(
                mesh_examples::NamedGreeter { id: id.to_string() },
            ));
        let stats = builder.stats();
        let health = builder.health_service();
        let maint = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let maintenance = maint.local_addr().expect("addr");
        let maint_task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(maint))
                .await;
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let r = builder
                .serve_with_incoming_shutdown(listener, async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = r {
                eprintln!("MeshServer ended: {e}");
            }
        });
        MeshGreeter {
            addr,
            maintenance,
            stats,
            shutdown: Some(tx),
            task,
            maint_task,
        }
    }

    /// The health status reported on the maintenance port (`SERVING` / `NOT_SERVING`).
    pub async fn health(&self) -> String {
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{}", self.maintenance))
                .expect("uri")
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await
                .expect("maintenance port connects");
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        let resp = client
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health check");
        match resp.into_inner().status() {
            tonic_health::pb::health_check_response::ServingStatus::Serving => "SERVING".into(),
            tonic_health::pb::health_check_response::ServingStatus::NotServing => {
                "NOT_SERVING".into()
            }
            other => format!("{other:?}"),
        }
    }

    /// Waits (bounded) until health reports `want`.
    pub async fn wait_health(&self, want: &str, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.health().await == want {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(40), &mut self.task).await;
        self.maint_task.abort();
    }
}

impl Drop for MeshGreeter {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.maint_task.abort();
    }
}

/// One SayHello over a fresh plain tonic connection (no mesh on the client side).
pub async fn direct_hello(addr: SocketAddr) -> Result<String, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut client = xds_proto::helloworld::greeter_client::GreeterClient::new(channel);
    client
        .say_hello(xds_proto::helloworld::HelloRequest {
            name: "direct".into(),
        })
        .await
        .map(|r| r.into_inner().message)
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// Opens a raw HTTP/2 connection to `addr`, sends the client preface and an empty
/// SETTINGS frame, and returns the parameters of the server's first SETTINGS frame.
pub async fn server_settings(addr: SocketAddr) -> std::io::Result<Vec<(u16, u32)>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await?;
    s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await?;
    let read = async {
        let mut header = [0u8; 9];
        s.read_exact(&mut header).await?;
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        if header[3] != 4 {
            return Err(std::io::Error::other(format!(
                "first frame has type {}, not SETTINGS",
                header[3]
            )));
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).await?;
        Ok(payload
            .chunks_exact(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .map_err(|_| std::io::Error::other("no SETTINGS within 5 s"))?
}

/// A raw mesh-control serving one inbound Listener (built by `listener` for the server's
/// address) and a [`MeshGreeter`] `id` that is already SERVING under it.
pub async fn serving_greeter(
    id: &str,
    ignore_deletion: bool,
    listener: impl Fn(SocketAddr) -> Any,
) -> (mesh_control::RunningControlPlane, MeshGreeter) {
    let cp = mesh_control::ControlPlane::empty()
        .listen(([127, 0, 0, 1], 0).into())
        .await
        .expect("control plane starts");
    let tcp = MeshGreeter::bind().await;
    let addr = tcp.local_addr().expect("addr");
    cp.control().set_resources(
        xds_proto::type_url::LISTENER,
        vec![(inbound_name(addr), listener(addr))],
    );
    let node = format!("srv-{id}");
    let server = MeshGreeter::start(
        tcp,
        id,
        server_bootstrap(cp.local_addr(), &node, ignore_deletion),
    )
    .await;
    assert!(
        server.wait_health("SERVING", Duration::from_secs(10)).await,
        "{id} never became SERVING"
    );
    (cp, server)
}
