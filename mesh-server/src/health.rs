//! `grpc.health.v1.Health` backed by the serving status (gRFC A36): `NOT_SERVING` until a
//! valid Listener is in force, `SERVING` while it is. Every service name added to the
//! server (and `""`, the whole server) reports the same status; other names are NOT_FOUND.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus as PbStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The health service of one [`crate::MeshServer`].
#[derive(Debug, Clone)]
pub struct MeshHealth {
    serving: watch::Receiver<bool>,
    services: Arc<std::sync::RwLock<BTreeSet<String>>>,
}

impl MeshHealth {
    pub(crate) fn new(serving: watch::Receiver<bool>) -> Self {
        MeshHealth {
            serving,
            services: Arc::new(std::sync::RwLock::new(BTreeSet::from([String::new()]))),
        }
    }

    pub(crate) fn register(&self, name: &str) {
        if let Ok(mut s) = self.services.write() {
            s.insert(name.to_string());
        }
    }

    fn known(&self, name: &str) -> bool {
        self.services
            .read()
            .map(|s| s.contains(name))
            .unwrap_or(false)
    }

    fn status(serving: bool) -> HealthCheckResponse {
        HealthCheckResponse {
            status: if serving {
                PbStatus::Serving as i32
            } else {
                PbStatus::NotServing as i32
            },
        }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> HealthServer<MeshHealth> {
        HealthServer::new(self)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for MeshHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        if !self.known(&request.get_ref().service) {
            return Err(Status::not_found("service not registered"));
        }
        Ok(Response::new(Self::status(*self.serving.borrow())))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        if !self.known(&request.get_ref().service) {
            return Err(Status::not_found("service not registered"));
        }
        let mut rx = self.serving.clone();
        let stream = async_stream_of(move |tx: tokio::sync::mpsc::Sender<_>| async move {
            loop {
                let serving = *rx.borrow_and_update();
                if tx.send(Ok(MeshHealth::status(serving))).await.is_err() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task; the task ends when the receiver is dropped.
fn async_stream_of<F, Fut>(f: F) -> WatchStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<HealthCheckResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
