//! `grpc.testing.XdsUpdateClientConfigureService`: lets a test driver change, at run time,
//! which RPCs the interop client sends, with which metadata and timeout.

use std::sync::Arc;

use tokio::sync::watch;
use tonic::{Request, Response, Status};
use xds_proto::grpc_testing::xds_update_client_configure_service_server::XdsUpdateClientConfigureService;
use xds_proto::grpc_testing::{ClientConfigureRequest, ClientConfigureResponse};

use crate::interop::rpc_config::{self, RpcConfig};

/// The RPCs the client sends, shared between the sender and `Configure`.
pub type SharedConfigs = watch::Sender<Arc<Vec<RpcConfig>>>;

/// `Configure` replaces the shared configs; the sender uses them from its next tick.
#[derive(Debug, Clone)]
pub struct ConfigureService {
    configs: SharedConfigs,
}

impl ConfigureService {
    /// Updates `configs` on each `Configure`.
    pub fn new(configs: SharedConfigs) -> Self {
        ConfigureService { configs }
    }
}

#[tonic::async_trait]
impl XdsUpdateClientConfigureService for ConfigureService {
    async fn configure(
        &self,
        request: Request<ClientConfigureRequest>,
    ) -> Result<Response<ClientConfigureResponse>, Status> {
        let configs =
            rpc_config::from_configure(request.get_ref()).map_err(Status::invalid_argument)?;
        tracing::info!(?configs, "client reconfigured");
        self.configs.send_replace(Arc::new(configs));
        Ok(Response::new(ClientConfigureResponse {}))
    }
}
