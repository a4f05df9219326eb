//! The ADS gRPC service: `StreamAggregatedResources` (state of the world) and
//! `DeltaAggregatedResources` (delta xDS) over the same snapshot. One task per stream drives
//! a per-stream protocol state (`stream.rs` for SotW, `delta.rs` for delta) from the
//! client's requests and from snapshot changes.
//!
//! A stream ends when the client goes away or when the control plane shuts down (the client
//! then sees `UNAVAILABLE`). Each stream's output is a bounded channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};
use xds_proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use xds_proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use xds_proto::type_url;

use crate::delta::{DeltaEvent, DeltaStreamState};
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
    pub(crate) counters: Arc<AdsCounters>,
}

/// What every stream of a control plane has exchanged, for [`crate::ControlPlane::stats`].
#[derive(Debug, Default)]
pub(crate) struct AdsCounters {
    sotw_streams: AtomicU64,
    delta_streams: AtomicU64,
    responses: AtomicU64,
    resources_sent: AtomicU64,
    removals_sent: AtomicU64,
    initial_resource_versions: AtomicU64,
}

impl AdsCounters {
    pub(crate) fn snapshot(&self) -> AdsStats {
        AdsStats {
            sotw_streams: self.sotw_streams.load(Ordering::Relaxed),
            delta_streams: self.delta_streams.load(Ordering::Relaxed),
            responses: self.responses.load(Ordering::Relaxed),
            resources_sent: self.resources_sent.load(Ordering::Relaxed),
            removals_sent: self.removals_sent.load(Ordering::Relaxed),
            initial_resource_versions: self.initial_resource_versions.load(Ordering::Relaxed),
        }
    }
}

/// Totals over every ADS stream a control plane has served (SotW and delta).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdsStats {
    /// State-of-the-world streams opened.
    pub sotw_streams: u64,
    /// Delta streams opened.
    pub delta_streams: u64,
    /// Responses sent.
    pub responses: u64,
    /// Resources sent in them (a SotW response counts each resource it carries).
    pub resources_sent: u64,
    /// Delta `removed_resources` entries sent.
    pub removals_sent: u64,
    /// Delta `initial_resource_versions` entries received: resources clients said they
    /// already held when their stream started.
    pub initial_resource_versions: u64,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Ok(self.spawn_stream::<StreamState>(request))
    }

    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Ok(self.spawn_stream::<DeltaStreamState>(request))
    }
}

impl AdsService {
    /// Spawns the task serving one stream of protocol `P`; returns its response stream.
    fn spawn_stream<P: StreamProtocol>(
        &self,
        request: Request<Streaming<P::Request>>,
    ) -> Response<ReceiverStream<Result<P::Response, Status>>> {
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown peer".to_string());
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let task = StreamTask::<P> {
            inbound,
            tx,
            resources: self.resources.clone(),
            stop: self.stop.clone(),
            generation: self.generation,
            peer,
            node: String::new(),
            counters: Arc::clone(&self.counters),
        };
        let opened = if P::DELTA {
            &self.counters.delta_streams
        } else {
            &self.counters.sotw_streams
        };
        opened.fetch_add(1, Ordering::Relaxed);
        let streams = Arc::clone(&self.streams);
        streams.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            task.run().await;
            streams.fetch_sub(1, Ordering::Relaxed);
        });
        Response::new(ReceiverStream::new(rx))
    }
}

/// One wire protocol of ADS: its messages, and how its per-stream state answers them.
trait StreamProtocol: Default + Send + 'static {
    /// What the client sends.
    type Request: prost::Message + Default + Send + 'static;
    /// What the server sends.
    type Response: Send + 'static;
    /// The protocol's name in logs.
    const NAME: &'static str;
    /// Whether this is delta xDS (for the stream counters).
    const DELTA: bool;

    /// The node of a request, when it carries one.
    fn node(req: &Self::Request) -> Option<&str>;
    /// Handles a request against the current resources; logs it; the responses owed.
    fn request(&mut self, node: &str, req: Self::Request, res: &Resources) -> Vec<Self::Response>;
    /// The responses owed after the resources changed.
    fn change(&mut self, res: &Resources) -> Vec<Self::Response>;
    /// Logs a response about to be sent.
    fn log_response(node: &str, resp: &Self::Response);
    /// How many resources and removals a response carries.
    fn carried(resp: &Self::Response) -> (usize, usize);
    /// How many `initial_resource_versions` a request carries.
    fn initial_versions(req: &Self::Request) -> usize;
}

struct StreamTask<P: StreamProtocol> {
    inbound: Streaming<P::Request>,
    tx: mpsc::Sender<Result<P::Response, Status>>,
    resources: watch::Receiver<Arc<Resources>>,
    stop: watch::Receiver<u64>,
    generation: u64,
    peer: String,
    node: String,
    counters: Arc<AdsCounters>,
}

/// What woke the stream task up.
enum Wake<R> {
    Stop,
    ClientGone,
    Request(Box<R>),
    Ended(Option<Status>),
    Changed,
    ServerGone,
}

impl<P: StreamProtocol> StreamTask<P> {
    async fn run(mut self) {
        let mut state = P::default();
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
                    debug!(node = %self.node, protocol = P::NAME, "ADS stream closed by shutdown");
                    return;
                }
                Wake::ClientGone => {
                    debug!(node = %self.node, "ADS stream dropped by the client");
                    return;
                }
                Wake::Ended(None) => {
                    info!(node = %self.node, peer = %self.peer, protocol = P::NAME, "ADS stream ended by the client");
                    return;
                }
                Wake::Ended(Some(status)) => {
                    info!(node = %self.node, peer = %self.peer, %status, "ADS stream failed");
                    return;
                }
                Wake::ServerGone => return,
                Wake::Request(req) => {
                    if self.node.is_empty()
                        && let Some(node) = P::node(&req)
                    {
                        self.node = node.to_string();
                        info!(node = %self.node, peer = %self.peer, protocol = P::NAME, "ADS stream opened");
                    }
                    let current = Arc::clone(&self.resources.borrow());
                    let initial = P::initial_versions(&req);
                    let responses = state.request(&self.node, *req, &current);
                    // Counted after what it caused, so a reader that sees the versions
                    // also sees the responses they led to.
                    self.count(&responses);
                    self.counters
                        .initial_resource_versions
                        .fetch_add(initial as u64, Ordering::Relaxed);
                    responses
                }
                Wake::Changed => {
                    let current = Arc::clone(&self.resources.borrow_and_update());
                    let responses = state.change(&current);
                    self.count(&responses);
                    responses
                }
            };
            for response in responses {
                P::log_response(&self.node, &response);
                tokio::select! {
                    sent = self.tx.send(Ok(response)) => if sent.is_err() { return },
                    _ = self.stop.wait_for(|g| *g != generation) => return,
                }
            }
        }
    }
}

impl<P: StreamProtocol> StreamTask<P> {
    fn count(&self, responses: &[P::Response]) {
        for response in responses {
            let (resources, removals) = P::carried(response);
            self.counters.responses.fetch_add(1, Ordering::Relaxed);
            self.counters
                .resources_sent
                .fetch_add(resources as u64, Ordering::Relaxed);
            self.counters
                .removals_sent
                .fetch_add(removals as u64, Ordering::Relaxed);
        }
    }
}

impl StreamProtocol for StreamState {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "sotw";
    const DELTA: bool = false;

    fn node(req: &DiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }

    fn request(
        &mut self,
        node: &str,
        req: DiscoveryRequest,
        res: &Resources,
    ) -> Vec<DiscoveryResponse> {
        let handled = self.on_request(&req, res);
        let kind = type_url::short_name(&req.type_url);
        match &handled.event {
            Event::Nack(message) => warn!(
                node,
                type_url = %req.type_url,
                version = %req.version_info,
                nonce = %req.response_nonce,
                "{kind} NACK: {message}"
            ),
            Event::Stale => {
                debug!(node, type_url = kind, nonce = %req.response_nonce, "stale request ignored")
            }
            Event::Ignored(why) => warn!(node, "request ignored: {why}"),
            Event::Ack => {
                debug!(node, type_url = kind, version = %req.version_info, "ACK")
            }
            Event::Subscribed | Event::SubscriptionChanged => {
                if let Some(status) = &req.error_detail {
                    warn!(node, type_url = %req.type_url, "{kind} NACK: {}", status.message);
                }
                debug!(node, type_url = kind, names = ?req.resource_names, "subscription");
            }
        }
        handled.response.into_iter().collect()
    }

    fn change(&mut self, res: &Resources) -> Vec<DiscoveryResponse> {
        self.on_change(res)
    }

    fn carried(resp: &DiscoveryResponse) -> (usize, usize) {
        (resp.resources.len(), 0)
    }

    fn initial_versions(_: &DiscoveryRequest) -> usize {
        0
    }

    fn log_response(node: &str, response: &DiscoveryResponse) {
        debug!(
            node,
            type_url = type_url::short_name(&response.type_url),
            version = %response.version_info,
            nonce = %response.nonce,
            resources = response.resources.len(),
            "sending"
        );
    }
}

impl StreamProtocol for DeltaStreamState {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";
    const DELTA: bool = true;

    fn node(req: &DeltaDiscoveryRequest) -> Option<&str> {
        req.node.as_ref().map(|n| n.id.as_str())
    }

    fn request(
        &mut self,
        node: &str,
        req: DeltaDiscoveryRequest,
        res: &Resources,
    ) -> Vec<DeltaDiscoveryResponse> {
        let handled = self.on_request(&req, res);
        let kind = type_url::short_name(&req.type_url);
        match &handled.event {
            DeltaEvent::Nack(message) => warn!(
                node,
                type_url = %req.type_url,
                nonce = %req.response_nonce,
                "{kind} delta NACK: {message}"
            ),
            DeltaEvent::Ignored(why) => warn!(node, "delta request ignored: {why}"),
            DeltaEvent::Ack => {
                debug!(node, type_url = kind, nonce = %req.response_nonce, "delta ACK")
            }
            DeltaEvent::Subscribed | DeltaEvent::SubscriptionChanged => debug!(
                node,
                type_url = kind,
                subscribe = ?req.resource_names_subscribe,
                unsubscribe = ?req.resource_names_unsubscribe,
                initial_versions = req.initial_resource_versions.len(),
                "delta subscription"
            ),
        }
        handled.response.into_iter().collect()
    }

    fn change(&mut self, res: &Resources) -> Vec<DeltaDiscoveryResponse> {
        self.on_change(res)
    }

    fn carried(resp: &DeltaDiscoveryResponse) -> (usize, usize) {
        (resp.resources.len(), resp.removed_resources.len())
    }

    fn initial_versions(req: &DeltaDiscoveryRequest) -> usize {
        req.initial_resource_versions.len()
    }

    fn log_response(node: &str, response: &DeltaDiscoveryResponse) {
        debug!(
            node,
            type_url = type_url::short_name(&response.type_url),
            system_version = %response.system_version_info,
            nonce = %response.nonce,
            resources = response.resources.len(),
            removed = response.removed_resources.len(),
            "sending delta"
        );
    }
}
