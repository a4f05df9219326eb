//! MeshChannel: the drop-in tonic channel and its builder.
//!
//! A [`MeshChannel`] is a plain `tower::Service<http::Request<B>>` over HTTP/2: generated
//! tonic clients take it unchanged, and so does any hyper or tower stack. Configuration
//! arrives over xDS ([`crate::xds`]); each complete tree (gRFC A74) is compiled into a
//! [`RouteTable`] and published with one `ArcSwap::store`. A request costs one `ArcSwap`
//! load, a route match, a weighted cluster pick and a lock-free endpoint pick; it never
//! waits on configuration unless no endpoint is ready yet.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use tokio::sync::Notify;

use crate::balance::{InFlightGuard, PickContext, PickError};
use crate::bootstrap::Bootstrap;
use crate::resilience::replay::{self, Replay, ReplayBody};
use crate::route::{ClusterTarget, RouteTable};
use crate::telemetry::{ClientBody, ClientCall, Telemetry};
use crate::transport::{ConnectSettings, ConnectionSet, RequestBody, Sender, error_chain};
use crate::xds::{TargetState, TargetWatch, XdsClient};

/// Boxed error returned by [`MeshChannel`]; mesh failures are a [`tonic::Status`] inside.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the channel currently believes.
#[derive(Debug)]
enum ChannelState {
    /// No complete config yet; the first missing resource.
    Pending(String),
    /// A complete config.
    Ready(RouteTable),
    /// The target's listener or route configuration does not exist or is invalid.
    Failed(String),
}

#[derive(Debug)]
struct Shared {
    state: ArcSwap<ChannelState>,
    /// Notified when the config is replaced.
    config_changed: Notify,
    conns: ConnectionSet,
    node_id: String,
    target: String,
    authority: Authority,
    /// How long a request may wait for config or a first ready endpoint.
    wait_limit: Duration,
    /// gRFC A42 `io.grpc.channel_id`: random, fixed for the channel's life.
    channel_id: u64,
    telemetry: Telemetry,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A channel to an xDS-managed target: a `Clone` tower service that tonic clients take
/// unchanged.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mesh_client::MeshChannel;
/// use xds_proto::helloworld::{greeter_client::GreeterClient, HelloRequest};
///
/// let channel = MeshChannel::builder("xds:///greeter.default:8080").connect().await?;
/// let mut client = GreeterClient::new(channel);
/// client.say_hello(HelloRequest { name: "you".into() }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MeshChannel {
    inner: Arc<Inner>,
}

/// Builds a [`MeshChannel`].
#[derive(Debug)]
pub struct MeshChannelBuilder {
    target: String,
    bootstrap: Option<Bootstrap>,
    connect_timeout: Duration,
    settings: ConnectSettings,
    telemetry: Option<Telemetry>,
}

/// Why a channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MeshChannelError {
    /// The bootstrap could not be read.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// The target is not an `xds:` URI we support.
    #[error("invalid target \"{target}\": {reason}")]
    InvalidTarget {
        /// The target.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// The xDS client could not be created.
    #[error("xDS client: {0}")]
    Xds(String),
    /// `connect()` gave up waiting for the first complete configuration.
    #[error(
        "target \"{target}\": no complete xDS configuration after {after:?}: waiting for {waiting_for} (xDS node \"{node_id}\")"
    )]
    Timeout {
        /// The target.
        target: String,
        /// The first missing resource.
        waiting_for: String,
        /// How long we waited.
        after: Duration,
        /// The node id sent to the control plane.
        node_id: String,
    },
    /// The control plane said the target's configuration does not exist or is invalid.
    #[error("target \"{target}\": {message} (xDS node \"{node_id}\")")]
    Config {
        /// The target.
        target: String,
        /// What is wrong.
        message: String,
        /// The node id sent to the control plane.
        node_id: String,
    },
}

impl MeshChannel {
    /// Starts building a channel to `target` (`xds:///name`).
    pub fn builder(target: impl Into<String>) -> MeshChannelBuilder {
        MeshChannelBuilder {
            target: target.into(),
            bootstrap: None,
            connect_timeout: Duration::from_secs(10),
            settings: ConnectSettings::default(),
            telemetry: None,
        }
    }

    /// The xDS node id this channel's client presents.
    pub fn node_id(&self) -> &str {
        &self.inner.shared.node_id
    }

    /// Whether a complete configuration has been received.
    pub fn is_configured(&self) -> bool {
        matches!(**self.inner.shared.state.load(), ChannelState::Ready(_))
    }
}

/// Parses `xds:///name` (or `xds://authority/name`) into (authority, name).
fn parse_target(target: &str) -> Result<(String, String), String> {
    let rest = target
        .strip_prefix("xds://")
        .ok_or_else(|| "only xds:/// targets are supported".to_string())?;
    let (authority, name) = rest
        .split_once('/')
        .ok_or_else(|| "expected xds:///name".to_string())?;
    if name.is_empty() {
        return Err("the name after xds:/// is empty".into());
    }
    Ok((authority.to_string(), name.to_string()))
}

impl MeshChannelBuilder {
    /// Uses this bootstrap instead of reading `GRPC_XDS_BOOTSTRAP` / `_CONFIG`.
    pub fn with_bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.bootstrap = Some(bootstrap);
        self
    }

    /// How long `connect()` waits for the first complete config (default 10 s); also the
    /// longest a request waits for a first ready endpoint.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Endpoint connection settings (backoff, keepalive, limits).
    pub fn with_connect_settings(mut self, settings: ConnectSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Metrics, spans and trace propagation (default: [`Telemetry::global`]).
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Builds the channel and waits until its first complete configuration arrives.
    pub async fn connect(self) -> Result<MeshChannel, MeshChannelError> {
        let timeout = self.connect_timeout;
        let channel = self.connect_lazy()?;
        let shared = channel.inner.shared.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = shared.config_changed.notified();
            match &**shared.state.load() {
                ChannelState::Ready(_) => return Ok(channel),
                ChannelState::Failed(message) => {
                    return Err(MeshChannelError::Config {
                        target: shared.target.clone(),
                        message: message.clone(),
                        node_id: shared.node_id.clone(),
                    });
                }
                ChannelState::Pending(waiting_for) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return Err(MeshChannelError::Timeout {
                            target: shared.target.clone(),
                            waiting_for: waiting_for.clone(),
                            after: timeout,
                            node_id: shared.node_id.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Builds the channel without waiting for configuration; early requests wait for it
    /// (at most the connect timeout). Must be called inside a tokio runtime.
    pub fn connect_lazy(self) -> Result<MeshChannel, MeshChannelError> {
        let (_authority, name) =
            parse_target(&self.target).map_err(|reason| MeshChannelError::InvalidTarget {
                target: self.target.clone(),
                reason,
            })?;
        let bootstrap = match self.bootstrap {
            Some(b) => b,
            None => {
                Bootstrap::from_env().map_err(|e| MeshChannelError::Bootstrap(e.to_string()))?
            }
        };
        let listener_name = bootstrap
            .listener_resource_name(&self.target)
            .map_err(|e| MeshChannelError::InvalidTarget {
                target: self.target.clone(),
                reason: e.to_string(),
            })?;
        let authority: Authority = name.parse().map_err(|e| MeshChannelError::InvalidTarget {
            target: self.target.clone(),
            reason: format!("\"{name}\" is not a valid authority: {e}"),
        })?;
        let client =
            XdsClient::shared(&bootstrap).map_err(|e| MeshChannelError::Xds(e.to_string()))?;
        let watch = client.watch_target(&listener_name);
        let shared = Arc::new(Shared {
            state: ArcSwap::from_pointee(ChannelState::Pending(format!("LDS \"{listener_name}\""))),
            config_changed: Notify::new(),
            conns: ConnectionSet::new(self.settings)
                .with_identity(crate::identity::ProviderRegistry::for_bootstrap(&bootstrap)),
            node_id: client.node_id().to_string(),
            target: self.target,
            authority,
            wait_limit: self.connect_timeout,
            channel_id: rand::random(),
            telemetry: self.telemetry.unwrap_or_else(Telemetry::global),
        });
        let task = tokio::spawn(apply_updates(shared.clone(), watch, client)).abort_handle();
        Ok(MeshChannel {
            inner: Arc::new(Inner { shared, task }),
        })
    }
}

/// Compiles every published target config into a route table and swaps it in.
async fn apply_updates(shared: Arc<Shared>, mut watch: TargetWatch, _client: XdsClient) {
    loop {
        let next = match watch.borrow() {
            TargetState::Pending { waiting_for } => {
                // Keep serving a config we already have; only the first one is awaited.
                if matches!(**shared.state.load(), ChannelState::Ready(_)) {
                    None
                } else {
                    Some(ChannelState::Pending(waiting_for))
                }
            }
            TargetState::Ready(config) => {
                let table = RouteTable::build(&config, shared.authority.as_str(), &shared.conns);
                Some(ChannelState::Ready(table))
            }
            TargetState::Error { resource, message } => {
                Some(ChannelState::Failed(format!("{resource}: {message}")))
            }
        };
        if let Some(state) = next {
            let keep = match &state {
                ChannelState::Ready(t) => Some(t.addresses().clone()),
                ChannelState::Failed(_) => Some(Default::default()),
                ChannelState::Pending(_) => None,
            };
            shared.state.store(Arc::new(state));
            if let Some(keep) = keep {
                shared.conns.retain(&keep);
            }
            shared.config_changed.notify_waiters();
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// The outcome of trying to route a request now.
enum Pick {
    Send(Sender, std::net::SocketAddr, InFlightGuard),
    Wait,
    Fail(tonic::Status),
}

impl Shared {
    fn unavailable(&self, what: impl std::fmt::Display) -> tonic::Status {
        tonic::Status::unavailable(format!("{what} (xDS node \"{}\")", self.node_id))
    }

    fn pick(&self, path: &str, headers: &http::HeaderMap) -> Pick {
        let state = self.state.load();
        match &**state {
            ChannelState::Pending(_) => Pick::Wait,
            ChannelState::Failed(e) => Pick::Fail(self.unavailable(e)),
            ChannelState::Ready(table) => match table.select(path, headers, self.channel_id) {
                Err(e) => Pick::Fail(self.unavailable(e)),
                Ok(sel) => match sel.cluster {
                    ClusterTarget::Unavailable { name, reason } => {
                        Pick::Fail(self.unavailable(format!("cluster \"{name}\": {reason}")))
                    }
                    ClusterTarget::Pool(pool) => match pool.pick(&PickContext {
                        hash: sel.hash,
                        headers: Some(headers),
                    }) {
                        Ok(ep) => match ep.sender() {
                            Some(s) => Pick::Send(s, ep.addr(), ep.start_request()),
                            None => Pick::Wait,
                        },
                        Err(PickError::Connecting) => Pick::Wait,
                        Err(PickError::NoEndpoints) => Pick::Fail(self.unavailable(format!(
                            "cluster \"{}\" has no healthy endpoints",
                            pool.name()
                        ))),
                        Err(PickError::AllFailed { last_error }) => {
                            Pick::Fail(self.unavailable(format!(
                                "cluster \"{}\": no endpoint is reachable{}",
                                pool.name(),
                                last_error
                                    .map(|e| format!(" (last error: {e})"))
                                    .unwrap_or_default()
                            )))
                        }
                    },
                },
            },
        }
    }

    fn pending_message(&self) -> String {
        match &**self.state.load() {
            ChannelState::Pending(w) => format!("no xDS configuration yet, waiting for {w}"),
            _ => "no endpoint became ready".to_string(),
        }
    }
}

/// How many times a request that never left the client is re-picked (a connection that
/// received GOAWAY or closed between the pick and the send). Such retries are transparent:
/// the server never saw the request (gRFC A6 "transparent retry").
const MAX_TRANSPARENT_RETRIES: usize = 4;

/// What is needed to send a request again: its head and its recorded body.
struct Resend {
    method: http::Method,
    uri: Uri,
    headers: http::HeaderMap,
    replay: Replay,
}

impl Resend {
    fn request(&self) -> Option<Request<RequestBody>> {
        let body = self.replay.body()?;
        let mut req = Request::new(RequestBody::new(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        Some(req)
    }
}

async fn send(
    shared: Arc<Shared>,
    mut sender: Sender,
    mut addr: std::net::SocketAddr,
    // Counts the request on its endpoint until the response headers arrive (streaming
    // bodies are not counted beyond that).
    mut in_flight: InFlightGuard,
    mut req: Request<RequestBody>,
    resend: Resend,
    call: ClientCall,
) -> Result<Response<ClientBody>, BoxError> {
    let deadline = tokio::time::Instant::now() + shared.wait_limit;
    let mut attempt = 0;
    loop {
        let tele = call.attempt(req.headers_mut()); // telemetry: one span + A66 attempt per try
        tele.set_endpoint(addr); // telemetry:
        let failure = match sender.try_send_request(req).await {
            Ok(resp) => {
                in_flight.complete();
                return Ok(tele.observe(&call, resp)); // telemetry: body end finishes the call
            }
            Err(mut e) => match e.take_message() {
                // Never left the client: send it elsewhere.
                Some(unsent) => Ok((unsent, e.into_error())),
                None => {
                    let err = e.into_error();
                    // Reached the connection but the server never processed it (REFUSED_STREAM,
                    // above a graceful GOAWAY's last stream): replay it if it was recorded.
                    match replay::never_processed(&err)
                        .then(|| resend.request())
                        .flatten()
                    {
                        Some(again) => Ok((again, err)),
                        None => Err(err),
                    }
                }
            },
        };
        tele.finish(tonic::Code::Unavailable, 0); // telemetry: the attempt failed
        match failure {
            Err(err) => {
                return Err(Box::new(
                    shared.unavailable(format!("endpoint {addr}: {}", error_chain(&err))),
                ));
            }
            Ok((again, err)) => {
                attempt += 1;
                shared.conns.connection_failed(addr);
                if attempt > MAX_TRANSPARENT_RETRIES {
                    return Err(Box::new(shared.unavailable(format!(
                        "endpoint {addr}: {} (after {attempt} attempts the server never processed)",
                        error_chain(&err)
                    ))));
                }
                tracing::trace!(%addr, attempt, "request not processed; picking again");
                req = again;
                (sender, addr, in_flight) =
                    wait_for_pick(&shared, req.uri().path(), req.headers(), deadline).await?;
            }
        }
    }
}

/// Picks again until an endpoint is ready, the pick fails, or `deadline` passes.
async fn wait_for_pick(
    shared: &Shared,
    path: &str,
    headers: &http::HeaderMap,
    deadline: tokio::time::Instant,
) -> Result<(Sender, std::net::SocketAddr, InFlightGuard), BoxError> {
    loop {
        let config = shared.config_changed.notified();
        let conns = shared.conns.changed().notified();
        match shared.pick(path, headers) {
            Pick::Send(sender, addr, guard) => return Ok((sender, addr, guard)),
            Pick::Fail(status) => return Err(Box::new(status)),
            Pick::Wait => {}
        }
        // Bounded: re-check at least every 100 ms, give up at the deadline.
        let step = tokio::time::Instant::now() + Duration::from_millis(100);
        tokio::select! {
            _ = config => {}
            _ = conns => {}
            _ = tokio::time::sleep_until(step.min(deadline)) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            let msg = shared.pending_message();
            return Err(Box::new(shared.unavailable(msg)));
        }
    }
}

impl<B> tower_service::Service<Request<B>> for MeshChannel
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ClientBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // No buffer: each endpoint's HTTP/2 connection applies its own stream limits.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = self.inner.shared.clone();
        let (mut parts, body) = req.into_parts();
        let call = ClientCall::start(&shared.telemetry, &shared.target, parts.uri.path()); // telemetry:
        let body = call.count_sent(body); // telemetry:
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(shared.authority.clone());
        uri.path_and_query = parts.uri.path_and_query().cloned();
        if let Ok(u) = Uri::from_parts(uri) {
            parts.uri = u;
        }
        let (body, replay) = ReplayBody::new(RequestBody::new(body));
        let resend = Resend {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            replay,
        };
        let req = Request::from_parts(parts, RequestBody::new(body));
        let tele = call.clone(); // telemetry:
        call.instrument(match shared.pick(req.uri().path(), req.headers()) {
            Pick::Send(sender, addr, guard) => {
                Box::pin(send(shared, sender, addr, guard, req, resend, tele))
            }
            Pick::Fail(status) => Box::pin(async move { Err(Box::new(status) as BoxError) }),
            Pick::Wait => Box::pin(async move {
                let deadline = tokio::time::Instant::now() + shared.wait_limit;
                let (sender, addr, guard) =
                    wait_for_pick(&shared, req.uri().path(), req.headers(), deadline).await?;
                send(shared, sender, addr, guard, req, resend, tele).await
            }),
        }) // telemetry: the call span; an error ends the call with its status
    }
}
