//! The ADS gRPC service (`StreamAggregatedResources`, state of the world): one task per
//! stream drives a per-stream protocol state (see `stream.rs`) from the client's requests and from
//! snapshot changes. Delta xDS is not implemented yet (`UNIMPLEMENTED`).
//!
//! A stream ends when the client goes away or when the control plane shuts down (the client
//! then sees `UNAVAILABLE`). Each stream's output is a bounded channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};
use xds_proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use xds_proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use xds_proto::type_url;

use crate::stream::{Event, Resources, StreamState};

/// Responses buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 16;

/// The `AggregatedDiscoveryService` implementation behind [`crate::ControlPlane::service`].
#[derive(Debug, Clone)]
pub struct AdsService {
    pub(crate) resources: watch::Receiver<Arc<Resources>>,
    /// Shutdown generation: streams end when it moves past `generation`.
    pub(crate) stop: watch::Receiver<u64>,
    pub(crate) generation: u64,
    pub(crate) streams: Arc<AtomicUsize>,
}

type Outbound = Result<DiscoveryResponse, Status>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ReceiverStream<Outbound>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown peer".to_string());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let task = StreamTask {
            inbound,
            tx,
            resources: self.resources.clone(),
            stop: self.stop.clone(),
            generation: self.generation,
            peer,
            node: String::new(),
        };
        let streams = Arc::clone(&self.streams);
        streams.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            task.run().await;
            streams.fetch_sub(1, Ordering::Relaxed);
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not implemented by mesh-control yet; use state of the world ADS",
        ))
    }
}

struct StreamTask {
    inbound: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Outbound>,
    resources: watch::Receiver<Arc<Resources>>,
    stop: watch::Receiver<u64>,
    generation: u64,
    peer: String,
    node: String,
}

/// What woke the stream task up.
enum Wake {
    Stop,
    ClientGone,
    Request(Box<DiscoveryRequest>),
    Ended(Option<Status>),
    Changed,
    ServerGone,
}

impl StreamTask {
    async fn run(mut self) {
        let mut state = StreamState::default();
        self.resources.borrow_and_update();
        let generation = self.generation;
        loop {
            let wake = tokio::select! {
                _ = self.stop.wait_for(|g| *g != generation) => Wake::Stop,
                _ = self.tx.closed() => Wake::ClientGone,
                message = self.inbound.message() => match message {
                    Ok(Some(req)) => Wake::Request(Box::new(req)),
                    Ok(None) => Wake::Ended(None),
                    Err(status) => Wake::Ended(Some(status)),
                },
                changed = self.resources.changed() => match changed {
                    Ok(()) => Wake::Changed,
                    Err(_) => Wake::ServerGone,
                },
            };
            let responses = match wake {
                Wake::Stop => {
                    // Best effort: the client should learn the server went away, not that
                    // the stream finished normally.
                    let _ = self
                        .tx
                        .try_send(Err(Status::unavailable("mesh-control is shutting down")));
                    debug!(node = %self.node, "ADS stream closed by shutdown");
                    return;
                }
                Wake::ClientGone => {
                    debug!(node = %self.node, "ADS stream dropped by the client");
                    return;
                }
                Wake::Ended(None) => {
                    info!(node = %self.node, peer = %self.peer, "ADS stream ended by the client");
                    return;
                }
                Wake::Ended(Some(status)) => {
                    info!(node = %self.node, peer = %self.peer, %status, "ADS stream failed");
                    return;
                }
                Wake::ServerGone => return,
                Wake::Request(req) => self.on_request(&mut state, *req),
                Wake::Changed => {
                    let current = Arc::clone(&self.resources.borrow_and_update());
                    state.on_change(&current)
                }
            };
            for response in responses {
                debug!(
                    node = %self.node,
                    type_url = type_url::short_name(&response.type_url),
                    version = %response.version_info,
                    nonce = %response.nonce,
                    resources = response.resources.len(),
                    "sending"
                );
                tokio::select! {
                    sent = self.tx.send(Ok(response)) => if sent.is_err() { return },
                    _ = self.stop.wait_for(|g| *g != generation) => return,
                }
            }
        }
    }
    fn on_request(
        &mut self,
        state: &mut StreamState,
        req: DiscoveryRequest,
    ) -> Vec<DiscoveryResponse> {
        if self.node.is_empty()
            && let Some(node) = &req.node
        {
            self.node = node.id.clone();
            info!(node = %self.node, peer = %self.peer, "ADS stream opened");
        }
        let current = Arc::clone(&self.resources.borrow());
        let handled = state.on_request(&req, &current);
        let kind = type_url::short_name(&req.type_url);
        match &handled.event {
            Event::Nack(message) => warn!(
                node = %self.node,
                type_url = %req.type_url,
                version = %req.version_info,
                nonce = %req.response_nonce,
                "{kind} NACK: {message}"
            ),
            Event::Stale => {
                debug!(node = %self.node, type_url = kind, nonce = %req.response_nonce, "stale request ignored")
            }
            Event::Ignored(why) => warn!(node = %self.node, "request ignored: {why}"),
            Event::Ack => {
                debug!(node = %self.node, type_url = kind, version = %req.version_info, "ACK")
            }
            Event::Subscribed | Event::SubscriptionChanged => {
                if let Some(status) = &req.error_detail {
                    warn!(node = %self.node, type_url = %req.type_url, "{kind} NACK: {}", status.message);
                }
                debug!(node = %self.node, type_url = kind, names = ?req.resource_names, "subscription");
            }
        }
        handled.response.into_iter().collect()
    }
}
