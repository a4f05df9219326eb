//! The interop server's maintenance-port health: `grpc.health.v1.Health` reporting
//! SERVING only while **both** the xDS serving status of the main port is SERVING (gRFC
//! A36, fed by `MeshServerBuilder::on_serving_status`) **and** the test driver's toggle,
//! flipped by `grpc.testing.XdsUpdateHealthService` (`SetServing` / `SetNotServing`), is on.
//! The toggle starts on.
//!
//! grpc-go's maintenance port reports SERVING from the start and only follows the toggle;
//! ours also waits for a valid Listener, so "SERVING on the maintenance port" means the
//! test port really serves. `SendHookRequest` is UNIMPLEMENTED.

use tokio::sync::watch;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use xds_proto::grpc_testing::xds_update_health_service_server::XdsUpdateHealthService;
use xds_proto::grpc_testing::{Empty, HookRequest, HookResponse};

/// `XdsUpdateHealthService`: flips the driver's health toggle.
#[derive(Debug, Clone)]
pub struct HealthToggle {
    on: watch::Sender<bool>,
}

impl HealthToggle {
    /// A toggle that starts on (SERVING as far as the driver is concerned).
    pub fn new() -> Self {
        HealthToggle {
            on: watch::Sender::new(true),
        }
    }

    /// Follows the toggle.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.on.subscribe()
    }
}

impl Default for HealthToggle {
    fn default() -> Self {
        Self::new()
    }
}

#[tonic::async_trait]
impl XdsUpdateHealthService for HealthToggle {
    async fn set_serving(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.on.send_replace(true);
        Ok(Response::new(Empty {}))
    }

    async fn set_not_serving(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        self.on.send_replace(false);
        Ok(Response::new(Empty {}))
    }

    async fn send_hook_request(
        &self,
        _request: Request<HookRequest>,
    ) -> Result<Response<HookResponse>, Status> {
        Err(Status::unimplemented("SendHookRequest"))
    }
}

/// Keeps `reporter`'s status of each of `services` (use `""` for the whole server) at
/// SERVING exactly while `serving` and `toggle` are both true. Returns when either sender
/// is dropped.
pub async fn drive_health(
    reporter: HealthReporter,
    services: Vec<String>,
    mut serving: watch::Receiver<bool>,
    mut toggle: watch::Receiver<bool>,
) {
    loop {
        let up = *serving.borrow_and_update() && *toggle.borrow_and_update();
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for name in &services {
            reporter.set_service_status(name, status).await;
        }
        tokio::select! {
            r = serving.changed() => if r.is_err() { return },
            r = toggle.changed() => if r.is_err() { return },
        }
    }
}
