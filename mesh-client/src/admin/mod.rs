//! The admin surface: what an operator asks a running process (gRFC A38's admin interface,
//! gRFC A40's CSDS).
//!
//! - [`Csds`]: `envoy.service.status.v3.ClientStatusDiscoveryService`, every resource of
//!   every xDS client with its status, version, last update and last NACK (gRFC A40), so
//!   `grpcdebug ADDR xds status` and `xds config` show this process's view.
//! - the gRPC health service (`grpc.health.v1.Health`, from `tonic-health`).
//! - [`status_text`]: the same facts as a short text page, served over HTTP/1.1 on a port of
//!   its own by [`serve_status_page`].
//!
//! Mount the services on an existing tonic server with [`services`], or run them on a port
//! of their own with [`serve_admin`] or [`AdminServer`]:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_client::admin::AdminServer;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("admin on {}", listener.local_addr()?);
//! AdminServer::builder()
//!     .all_clients()
//!     .serve_with_shutdown(listener, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

mod csds;
mod status_page;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

pub use csds::{Csds, CsdsServer, client_config};
pub use status_page::{serve_status_page, status_text, status_text_for};

use crate::xds::XdsClient;

/// HTTP/2 limits of the admin server (DESIGN §5: always explicit; an admin port needs few
/// streams).
const MAX_CONCURRENT_STREAMS: u32 = 64;
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
const MAX_LOCAL_ERROR_RESETS: usize = 256;
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);

/// Why the admin server stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding the address failed.
    #[error("admin server: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("admin server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The admin gRPC services for every shared xDS client of this process, to mount on a
/// tonic server of your own: CSDS, and the health service with its reporter (the overall
/// service `""` and CSDS are reported `SERVING` once [`HealthReporter::set_serving`] is
/// awaited for them, as [`serve_admin`] does).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let (csds, _reporter, health) = mesh_client::admin::services();
/// tonic::transport::Server::builder()
///     .add_service(csds)
///     .add_service(health)
///     .serve("127.0.0.1:50100".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
pub fn services() -> (CsdsServer, HealthReporter, HealthServer<impl Health>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    (Csds::all_clients().into_server(), reporter, health)
}

/// Serves CSDS for every shared xDS client, and the health service, on `listener` until
/// `shutdown` resolves. See [`AdminServer`] to choose the clients.
pub async fn serve_admin(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AdminError> {
    AdminServer::builder()
        .serve_with_shutdown(listener, shutdown)
        .await
}

/// A gRPC admin server: CSDS and health on a port of its own.
#[derive(Debug, Clone)]
pub struct AdminServer {
    csds: Csds,
}

/// Builds an [`AdminServer`]; by default it reports on every shared xDS client.
#[derive(Debug, Clone, Default)]
pub struct AdminServerBuilder {
    clients: Option<Vec<XdsClient>>,
}

impl AdminServer {
    /// A builder reporting on every shared xDS client unless clients are named.
    pub fn builder() -> AdminServerBuilder {
        AdminServerBuilder::default()
    }

    /// The CSDS service this server runs.
    pub fn csds(&self) -> &Csds {
        &self.csds
    }
}

impl AdminServerBuilder {
    /// Reports on this client (may be called more than once); without it, on all.
    pub fn with_client(mut self, client: XdsClient) -> Self {
        self.clients.get_or_insert_with(Vec::new).push(client);
        self
    }

    /// Reports on every shared client alive at each request (the default; forgets the
    /// clients named so far).
    pub fn all_clients(mut self) -> Self {
        self.clients = None;
        self
    }

    /// The server.
    pub fn build(self) -> AdminServer {
        AdminServer {
            csds: match self.clients {
                Some(clients) => Csds::for_clients(clients),
                None => Csds::all_clients(),
            },
        }
    }

    /// Binds `addr` and serves until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AdminError> {
        self.build().serve_with_shutdown(listener, shutdown).await
    }
}

impl AdminServer {
    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AdminError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<CsdsServer>().await;
        tonic::transport::Server::builder()
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .http2_max_header_list_size(MAX_HEADER_LIST_SIZE)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .max_connection_age(MAX_CONNECTION_AGE)
            .add_service(self.csds.into_server())
            .add_service(health)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_stream::StreamExt;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use xds_proto::envoy::envoy::admin::v3::ClientResourceStatus;
    use xds_proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
    use xds_proto::envoy::envoy::service::status::v3::client_config::GenericXdsConfig;
    use xds_proto::envoy::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
    use xds_proto::envoy::envoy::service::status::v3::{ClientStatusRequest, ClientStatusResponse};
    use xds_proto::type_url::{CLUSTER, LISTENER};

    use super::*;
    use crate::xds::fixtures::{self, NO_API_LISTENER};
    use crate::xds::resource::ResourceType;
    use crate::xds::test_server::{ServerStream, TestServer, WAIT};

    fn resp(
        type_url: &str,
        version: &str,
        nonce: &str,
        resources: Vec<xds_proto::protobuf::Any>,
    ) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            resources,
            type_url: type_url.into(),
            nonce: nonce.into(),
            ..Default::default()
        }
    }

    /// A client with LDS `l1` ACKED at v1 then NACKED at v2, CDS `c1` ACKED at 7 and CDS
    /// `c2` still requested (the server never answers for it, the timer is 15 s).
    async fn populated(
        server: &mut TestServer,
        client: &XdsClient,
    ) -> (Vec<crate::xds::Subscription>, ServerStream) {
        let mut l1 = client.subscribe(ResourceType::Listener, "l1");
        let mut c1 = client.subscribe(ResourceType::Cluster, "c1");
        let c2 = client.subscribe(ResourceType::Cluster, "c2");
        let mut stream = server.next_stream().await;
        // One request per type (both sent on connect).
        stream.next_request().await;
        stream.next_request().await;
        stream.respond(resp(
            LISTENER,
            "v1",
            "n1",
            vec![fixtures::listener("l1", "r1")],
        ));
        stream.respond(resp(CLUSTER, "7", "n2", vec![fixtures::cluster("c1")]));
        for sub in [&mut l1, &mut c1] {
            let _ = tokio::time::timeout(WAIT, sub.changed()).await;
        }
        stream.next_request().await;
        stream.next_request().await;
        stream.respond(resp(
            LISTENER,
            "v2",
            "n3",
            vec![fixtures::listener_without_api_listener("l1")],
        ));
        let _ = tokio::time::timeout(WAIT, l1.changed()).await;
        stream.next_request().await;
        (vec![l1, c1, c2], stream)
    }

    fn find<'a>(resp: &'a ClientStatusResponse, name: &str) -> &'a GenericXdsConfig {
        let configs = resp
            .config
            .first()
            .map(|c| c.generic_xds_configs.as_slice())
            .unwrap_or_default();
        match configs.iter().find(|g| g.name == name) {
            Some(g) => g,
            None => panic!("{name} missing from {resp:?}"),
        }
    }

    #[tokio::test]
    async fn client_status_reports_each_resource_per_a40() {
        let mut server = TestServer::tcp().await;
        let client = XdsClient::new(server.bootstrap()).unwrap();
        let before = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let (_subs, _stream) = populated(&mut server, &client).await;
        let csds = Csds::for_clients([client.clone()]);
        let out = csds.client_status(&ClientStatusRequest::default());
        assert_eq!(out.config.len(), 1);
        let config = &out.config[0];
        let node = config.node.clone().unwrap_or_default();
        assert_eq!(
            (node.id.as_str(), node.cluster.as_str()),
            ("test-node", "test-cluster")
        );
        let names: Vec<_> = config
            .generic_xds_configs
            .iter()
            .map(|g| (g.type_url.as_str(), g.name.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![(LISTENER, "l1"), (CLUSTER, "c1"), (CLUSTER, "c2")]
        );

        let l1 = find(&out, "l1");
        assert_eq!(l1.client_status, ClientResourceStatus::Nacked as i32);
        assert_eq!(l1.version_info, "v1", "the accepted version stays");
        assert_eq!(
            l1.xds_config,
            Some(fixtures::listener("l1", "r1")),
            "the accepted value stays"
        );
        assert!(l1.last_updated.is_some_and(|t| t.seconds >= before));
        let error = l1.error_state.clone().unwrap_or_default();
        assert_eq!(
            (error.version_info.as_str(), error.details.as_str()),
            ("v2", NO_API_LISTENER)
        );
        assert!(
            error
                .last_update_attempt
                .is_some_and(|t| t.seconds >= before)
        );

        let c1 = find(&out, "c1");
        assert_eq!(c1.client_status, ClientResourceStatus::Acked as i32);
        assert_eq!(c1.version_info, "7");
        assert_eq!(c1.xds_config, Some(fixtures::cluster("c1")));
        assert!(c1.error_state.is_none());

        let c2 = find(&out, "c2");
        assert_eq!(c2.client_status, ClientResourceStatus::Requested as i32);
        assert_eq!(
            (
                c2.version_info.as_str(),
                c2.xds_config.is_none(),
                c2.last_updated.is_none()
            ),
            ("", true, true)
        );

        let lean = csds.client_status(&ClientStatusRequest {
            exclude_resource_contents: true,
            ..Default::default()
        });
        assert!(
            lean.config[0]
                .generic_xds_configs
                .iter()
                .all(|g| g.xds_config.is_none())
        );
        assert_eq!(find(&lean, "c1").version_info, "7");

        let text = status_text_for(&[client]);
        assert!(text.contains("xDS client node \"test-node\""), "{text}");
        assert!(text.contains("CDS c1 ACKED version \"7\""), "{text}");
        assert!(text.contains("CDS c2 REQUESTED\n"), "{text}");
        assert!(text.contains("LDS l1 NACKED version \"v1\""), "{text}");
        assert!(
            text.contains("rejected version \"v2\"") && text.contains(NO_API_LISTENER),
            "{text}"
        );
    }

    #[test]
    fn statuses_and_timestamps() {
        use crate::xds::ResourceStatus as S;
        let got: Vec<_> = [
            S::Requested,
            S::DoesNotExist,
            S::Acked,
            S::Nacked,
            S::ReceivedError,
        ]
        .into_iter()
        .map(|s| (s.as_str(), csds_status(s)))
        .collect();
        assert_eq!(
            got,
            vec![
                ("REQUESTED", ClientResourceStatus::Requested.as_str_name()),
                (
                    "DOES_NOT_EXIST",
                    ClientResourceStatus::DoesNotExist.as_str_name()
                ),
                ("ACKED", ClientResourceStatus::Acked.as_str_name()),
                ("NACKED", ClientResourceStatus::Nacked.as_str_name()),
                (
                    "RECEIVED_ERROR",
                    ClientResourceStatus::ReceivedError.as_str_name()
                ),
            ]
        );
    }

    fn csds_status(s: crate::xds::ResourceStatus) -> &'static str {
        let dump = crate::xds::ResourceDump {
            resource_type: ResourceType::Cluster,
            name: "c".into(),
            status: s,
            version: String::new(),
            last_updated: Some(SystemTime::UNIX_EPOCH + std::time::Duration::new(5, 7)),
            raw: None,
            error: None,
        };
        let g = csds::generic_xds_config(dump, true);
        assert_eq!(g.last_updated.map(|t| (t.seconds, t.nanos)), Some((5, 7)));
        ClientResourceStatus::try_from(g.client_status)
            .map(|s| s.as_str_name())
            .unwrap_or("?")
    }

    #[tokio::test]
    async fn admin_server_serves_fetch_stream_and_health() {
        let mut server = TestServer::tcp().await;
        let client = XdsClient::new(server.bootstrap()).unwrap();
        let (_subs, _stream) = populated(&mut server, &client).await;

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = tokio::spawn(
            AdminServer::builder()
                .with_client(client.clone())
                .serve_with_shutdown(listener, async {
                    let _ = stopped.await;
                }),
        );
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(WAIT)
            .timeout(WAIT)
            .connect()
            .await
            .unwrap();

        let mut csds = ClientStatusDiscoveryServiceClient::new(channel.clone());
        let fetched = csds
            .fetch_client_status(ClientStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            find(&fetched, "c1").client_status,
            ClientResourceStatus::Acked as i32
        );

        // Two requests on one stream: two answers.
        let requests = tokio_stream::iter([
            ClientStatusRequest::default(),
            ClientStatusRequest {
                exclude_resource_contents: true,
                ..Default::default()
            },
        ]);
        let mut answers = csds
            .stream_client_status(requests)
            .await
            .unwrap()
            .into_inner();
        let first = tokio::time::timeout(WAIT, answers.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(find(&first, "c1").xds_config.is_some());
        let second = tokio::time::timeout(WAIT, answers.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(find(&second, "c1").xds_config.is_none());

        let mut health = HealthClient::new(channel);
        for service in ["", "envoy.service.status.v3.ClientStatusDiscoveryService"] {
            let status = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner()
                .status;
            assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
        }

        let _ = stop.send(());
        let ended = tokio::time::timeout(WAIT, admin).await.unwrap().unwrap();
        assert!(ended.is_ok(), "{ended:?}");
    }

    #[tokio::test]
    async fn status_page_over_http1() {
        let mut server = TestServer::tcp().await;
        // Shared, so the page (which lists every shared client) shows it.
        let client = XdsClient::shared(&server.bootstrap()).unwrap();
        let (_subs, _stream) = populated(&mut server, &client).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let page = tokio::spawn(serve_status_page(listener, async {
            let _ = stopped.await;
        }));

        let get = |path: &'static str| async move {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.write_all(
                format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
            let mut out = String::new();
            tokio::time::timeout(WAIT, tcp.read_to_string(&mut out))
                .await
                .unwrap()
                .unwrap();
            out
        };
        let page_text = get("/status").await;
        assert!(page_text.starts_with("HTTP/1.1 200 OK"), "{page_text}");
        assert!(page_text.contains("text/plain"), "{page_text}");
        assert!(
            page_text.contains(&format!("server {}", server.uri)),
            "{page_text}"
        );
        assert!(page_text.contains("CDS c1 ACKED"), "{page_text}");
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));

        let _ = stop.send(());
        assert!(
            tokio::time::timeout(WAIT, page)
                .await
                .unwrap()
                .unwrap()
                .is_ok()
        );
    }
}
