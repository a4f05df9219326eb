//! The Client Status Discovery Service (`envoy.service.status.v3`) of gRFC A40: what the
//! xDS clients of this process currently believe, resource by resource.
//!
//! Each [`XdsClient`] becomes one `ClientConfig`: its node (from the bootstrap) and one
//! `GenericXdsConfig` per subscribed resource with its type URL, name, the version and time
//! of the accepted value, that value as received (the `Any`), its `client_status`
//! (`REQUESTED`, `DOES_NOT_EXIST`, `TIMEOUT`, `ACKED`, `NACKED`, `RECEIVED_ERROR`) and, after a rejected update, the
//! `error_state` (version, details, time). As A40 says, node matchers in the request are
//! ignored. Like grpc-go, `config_status` (the control plane's view) is left `UNKNOWN`.

use std::pin::Pin;
use std::time::SystemTime;

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use xds_proto::envoy::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use xds_proto::envoy::envoy::service::status::v3::client_config::GenericXdsConfig;
use xds_proto::envoy::envoy::service::status::v3::client_status_discovery_service_server::{
    ClientStatusDiscoveryService, ClientStatusDiscoveryServiceServer,
};
use xds_proto::envoy::envoy::service::status::v3::{
    ClientConfig, ClientStatusRequest, ClientStatusResponse,
};
use xds_proto::protobuf::Timestamp;

use crate::xds::{ResourceDump, ResourceStatus, XdsClient, live_clients};

/// The generated tonic server around [`Csds`], ready for `Server::add_service`.
pub type CsdsServer = ClientStatusDiscoveryServiceServer<Csds>;

/// Which clients a [`Csds`] reports on.
#[derive(Debug, Clone)]
enum Clients {
    /// Every shared client alive at the time of each request ([`live_clients`]).
    Process,
    /// These clients only.
    Only(Vec<XdsClient>),
}

/// The CSDS service (gRFC A40) over the xDS clients of this process or a chosen few.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mesh_client::admin::Csds;
///
/// tonic::transport::Server::builder()
///     .add_service(Csds::all_clients().into_server())
///     .serve("127.0.0.1:50100".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Csds {
    clients: Clients,
}

impl Csds {
    /// Reports on every shared [`XdsClient`] alive when a request arrives (those the
    /// channels and servers of this process use).
    pub fn all_clients() -> Self {
        Csds {
            clients: Clients::Process,
        }
    }

    /// Reports on these clients only.
    pub fn for_clients(clients: impl IntoIterator<Item = XdsClient>) -> Self {
        Csds {
            clients: Clients::Only(clients.into_iter().collect()),
        }
    }

    /// The clients a request would report on now.
    pub fn clients(&self) -> Vec<XdsClient> {
        match &self.clients {
            Clients::Process => live_clients(),
            Clients::Only(clients) => clients.clone(),
        }
    }

    /// The answer to one request: one `ClientConfig` per client. With
    /// `exclude_resource_contents` the resources' values are left out.
    pub fn client_status(&self, request: &ClientStatusRequest) -> ClientStatusResponse {
        let include_contents = !request.exclude_resource_contents;
        ClientStatusResponse {
            config: self
                .clients()
                .iter()
                .map(|client| client_config(client, include_contents))
                .collect(),
        }
    }

    /// Wraps this service in its generated tonic server.
    pub fn into_server(self) -> CsdsServer {
        ClientStatusDiscoveryServiceServer::new(self)
    }
}

/// One client's `ClientConfig`: its node and a `GenericXdsConfig` per subscribed resource.
pub fn client_config(client: &XdsClient, include_contents: bool) -> ClientConfig {
    ClientConfig {
        node: Some(client.node().clone()),
        generic_xds_configs: client
            .config_dump()
            .into_iter()
            .map(|dump| generic_xds_config(dump, include_contents))
            .collect(),
        ..Default::default()
    }
}

pub(super) fn generic_xds_config(dump: ResourceDump, include_contents: bool) -> GenericXdsConfig {
    GenericXdsConfig {
        type_url: dump.resource_type.type_url().to_string(),
        name: dump.name,
        version_info: dump.version,
        xds_config: dump.raw.filter(|_| include_contents),
        last_updated: dump.last_updated.and_then(timestamp),
        client_status: client_status(dump.status) as i32,
        error_state: dump.error.map(|e| UpdateFailureState {
            failed_configuration: None,
            last_update_attempt: timestamp(e.time),
            details: e.details,
            version_info: e.version,
        }),
        ..Default::default()
    }
}

fn client_status(status: ResourceStatus) -> ClientResourceStatus {
    match status {
        ResourceStatus::Requested => ClientResourceStatus::Requested,
        ResourceStatus::DoesNotExist => ClientResourceStatus::DoesNotExist,
        ResourceStatus::Timeout => ClientResourceStatus::Timeout,
        // CSDS has no "cached" status: a stale cached value is ACKED, its error_state says
        // it is stale and why.
        ResourceStatus::Acked | ResourceStatus::Cached => ClientResourceStatus::Acked,
        ResourceStatus::Nacked => ClientResourceStatus::Nacked,
        // xRFC TP3: the server's error is in error_state; a kept value is dumped with it.
        ResourceStatus::ReceivedError => ClientResourceStatus::ReceivedError,
    }
}

/// A wall-clock time as a protobuf `Timestamp` (`None` before 1970).
fn timestamp(time: SystemTime) -> Option<Timestamp> {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    Some(Timestamp {
        seconds: i64::try_from(since.as_secs()).ok()?,
        nanos: i32::try_from(since.subsec_nanos()).ok()?,
    })
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for Csds {
    type StreamClientStatusStream = ResponseStream;

    /// One response per request on the stream, each a fresh snapshot.
    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let csds = self.clone();
        let responses = request
            .into_inner()
            .map(move |req| req.map(|req| csds.client_status(&req)));
        Ok(Response::new(Box::pin(responses)))
    }

    async fn fetch_client_status(
        &self,
        request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        Ok(Response::new(self.client_status(request.get_ref())))
    }
}
