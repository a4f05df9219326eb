//! MeshChannel: the drop-in tonic channel and its builder.
//!
//! A [`MeshChannel`] is a plain `tower::Service<http::Request<B>>` over HTTP/2: generated
//! tonic clients take it unchanged, and so does any hyper or tower stack. Configuration
//! arrives over xDS ([`crate::xds`]); each complete tree (gRFC A74) is compiled into a
//! [`RouteTable`] and published with one `ArcSwap::store`. A request costs one `ArcSwap`
//! load, a route match, a weighted cluster pick and a lock-free endpoint pick; it never
//! waits on configuration unless no endpoint is ready yet.
//!
//! Around the attempts sit the route's policies ([`crate::resilience`]): fault injection
//! (gRFC A33) first, the call deadline (A31) over everything, and per attempt the cluster's
//! circuit breaker (A32); a Trailers-Only response or transport failure with a code in the
//! route's `retry_on` is retried (A44) after a jittered backoff, within the cluster's retry
//! budget, replaying the recorded body. A response with headers commits the call.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::balance::{InFlightGuard, PickContext, PickError};
use crate::bootstrap::Bootstrap;
use crate::config::{FaultInjection, RetryBudgetConfig, RetryPolicy};
use crate::resilience::breaker::BreakerGuard;
use crate::resilience::replay::{self, Replay, ReplayBody};
use crate::resilience::retry::{self, Backoff, Pushback};
use crate::resilience::{fault, timeout};
use crate::route::{ClusterTarget, RouteTable, Upstream};
use crate::telemetry::{ClientAttempt, ClientBody, ClientCall, Telemetry};
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
    /// The retry budget of clusters whose CDS resource sets none.
    default_budget: RetryBudgetConfig,
    /// Per-cluster outlier detectors (gRFC A50), kept across config updates.
    outliers: crate::balance::OutlierRegistry,
    /// The xDS client, for whether a failure came from the server or from not reaching it.
    xds: XdsClient,
    /// Metrics, spans and trace propagation ([`crate::telemetry`]).
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
    default_budget: RetryBudgetConfig,
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
            default_budget: RetryBudgetConfig::default(),
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

    /// The retry budget of clusters whose CDS resource sets no `retry_budget` (default: 20 %
    /// of requests plus 10 retries per second, over 10 s). Budgets are shared per cluster by
    /// every channel in the process.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mesh_client::{MeshChannel, config::RetryBudgetConfig};
    ///
    /// let builder = MeshChannel::builder("xds:///greeter.default:8080").with_retry_budget(
    ///     RetryBudgetConfig { ratio: 0.1, min_retries_per_second: 5, ttl: Duration::from_secs(10) },
    /// );
    /// # drop(builder);
    /// ```
    pub fn with_retry_budget(mut self, budget: RetryBudgetConfig) -> Self {
        self.default_budget = budget;
        self
    }

    /// Metrics, spans and trace propagation (default: [`Telemetry::global`]).
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Builds the channel and waits until its first complete configuration arrives. An
    /// error the xDS server reports (a NACKed or missing resource) ends the wait at once;
    /// while the server cannot be reached the wait goes on, up to the connect timeout.
    pub async fn connect(self) -> Result<MeshChannel, MeshChannelError> {
        let timeout = self.connect_timeout;
        let channel = self.connect_lazy()?;
        let shared = channel.inner.shared.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = shared.config_changed.notified();
            match &**shared.state.load() {
                ChannelState::Ready(_) => return Ok(channel),
                // A failure the server reported (NACK, does not exist) is final; one from
                // not reaching the server yet is waited out until the timeout, so a
                // process that starts before its control plane still comes up.
                ChannelState::Failed(message)
                    if shared.xds.heard_from_server()
                        || tokio::time::Instant::now() >= deadline =>
                {
                    return Err(MeshChannelError::Config {
                        target: shared.target.clone(),
                        message: message.clone(),
                        node_id: shared.node_id.clone(),
                    });
                }
                ChannelState::Failed(_) => {
                    let _ = tokio::time::timeout_at(deadline, notified).await;
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
        let telemetry = self.telemetry.unwrap_or_else(Telemetry::global);
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
            default_budget: self.default_budget,
            outliers: crate::balance::OutlierRegistry::new(telemetry.clone()),
            xds: client.clone(),
            telemetry,
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
                let table = RouteTable::build(
                    &config,
                    shared.authority.as_str(),
                    &shared.conns,
                    &shared.default_budget,
                    &shared.outliers,
                );
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

/// What routing decided for a call; fixed for the call's life (retries stay on the cluster).
struct Routed {
    upstream: Arc<Upstream>,
    hash: Option<u64>,
    retry: Option<Arc<RetryPolicy>>,
    faults: Arc<[Arc<FaultInjection>]>,
    timeout: Option<Duration>,
}

/// The outcome of trying to route a call now.
enum Route {
    Ready(Routed),
    Wait,
    Fail(tonic::Status),
}

/// The outcome of trying to pick an endpoint now.
enum Pick {
    Send(Picked),
    Wait,
    Fail(tonic::Status),
}

/// An endpoint picked for an attempt, with a live connection.
struct Picked {
    sender: Sender,
    addr: std::net::SocketAddr,
    /// The server's verified SPIFFE ID on that connection (mTLS).
    peer_identity: Option<Arc<String>>,
    in_flight: InFlightGuard,
    orca: Option<Orca>,
}

/// Where a weighted-round-robin cluster's endpoint takes its ORCA reports (gRFC A58).
#[derive(Debug, Clone)]
struct Orca {
    load: Arc<crate::balance::EndpointLoad>,
    penalty: f32,
}

/// What the call reports back about its endpoint when it ends: its result for outlier
/// detection (gRFC A50) and the server's ORCA load report (A51) for weighted round robin.
#[derive(Debug, Default)]
struct Feedback {
    outcome: Option<crate::balance::outlier::CallOutcome>,
    orca: Option<Orca>,
}

impl Feedback {
    /// The call ended with `status` (its `grpc-status`, trailers or Trailers-Only headers).
    fn finish(&mut self, status: Option<i32>, metadata: Option<&http::HeaderMap>) {
        if let Some(o) = self.outcome.take() {
            o.record(status == Some(0));
        }
        if let (Some(orca), Some(md)) = (self.orca.take(), metadata)
            && let Some(report) = md
                .get(xds_proto::orca::ORCA_TRAILER)
                .and_then(|v| decode_orca(v.as_bytes()))
        {
            orca.load
                .wrr()
                .record(&report, orca.penalty, crate::balance::now_ns());
        }
    }
}

/// Decodes a `-bin` metadata value (base64, padded or not) holding an OrcaLoadReport.
fn decode_orca(value: &[u8]) -> Option<xds_proto::orca::OrcaLoadReport> {
    use base64::Engine;
    let trimmed: Vec<u8> = value.iter().copied().filter(|b| *b != b'=').collect();
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .ok()?;
    prost::Message::decode(bytes.as_slice()).ok()
}

impl Shared {
    fn unavailable(&self, what: impl std::fmt::Display) -> tonic::Status {
        tonic::Status::unavailable(format!("{what} (xDS node \"{}\")", self.node_id))
    }

    fn route(&self, path: &str, headers: &http::HeaderMap) -> Route {
        let state = self.state.load();
        match &**state {
            ChannelState::Pending(_) => Route::Wait,
            ChannelState::Failed(e) => Route::Fail(self.unavailable(e)),
            ChannelState::Ready(table) => match table.select(path, headers, self.channel_id) {
                Err(e) => Route::Fail(self.unavailable(e)),
                Ok(sel) => match sel.cluster {
                    ClusterTarget::Unavailable { name, reason } => {
                        Route::Fail(self.unavailable(format!("cluster \"{name}\": {reason}")))
                    }
                    ClusterTarget::Pool(upstream) => Route::Ready(Routed {
                        upstream: upstream.clone(),
                        hash: sel.hash,
                        retry: sel.retry.cloned(),
                        faults: sel.faults.clone(),
                        timeout: sel.timeout,
                    }),
                },
            },
        }
    }

    /// The newest config's version of a cluster, when a config change replaced it.
    fn latest(&self, upstream: &Arc<Upstream>) -> Arc<Upstream> {
        if let ChannelState::Ready(table) = &**self.state.load()
            && let Some(ClusterTarget::Pool(newer)) = table.cluster(upstream.pool.name())
        {
            return newer.clone();
        }
        upstream.clone()
    }

    fn pick(&self, upstream: &Upstream, hash: Option<u64>, headers: &http::HeaderMap) -> Pick {
        let pool = &upstream.pool;
        match pool.pick(&PickContext {
            hash,
            headers: Some(headers),
        }) {
            Ok(ep) => match ep.sender() {
                Some(s) => {
                    // The endpoint's own priority knows whether it runs WRR (an aggregate's
                    // leaves may differ, gRFC A75).
                    let orca = ep.wrr_penalty().map(|penalty| Orca {
                        load: ep.load().clone(),
                        penalty,
                    });
                    Pick::Send(Picked {
                        sender: s,
                        addr: ep.addr(),
                        peer_identity: ep.peer_identity(),
                        in_flight: ep.start_request(),
                        orca,
                    })
                }
                None => Pick::Wait,
            },
            Err(PickError::Connecting) => Pick::Wait,
            Err(PickError::NoEndpoints) => Pick::Fail(self.unavailable(format!(
                "cluster \"{}\" has no healthy endpoints",
                pool.name()
            ))),
            Err(PickError::AllFailed { last_error }) => Pick::Fail(self.unavailable(format!(
                "cluster \"{}\": no endpoint is reachable{}",
                pool.name(),
                last_error
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            ))),
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
    fn request(&self, headers: &http::HeaderMap) -> Option<Request<RequestBody>> {
        let body = self.replay.body()?;
        let mut req = Request::new(RequestBody::new(body));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = headers.clone();
        Some(req)
    }
}

/// Waits (bounded by `deadline`) until the call can be routed.
async fn wait_for_route(
    shared: &Shared,
    path: &str,
    headers: &http::HeaderMap,
    deadline: tokio::time::Instant,
) -> Result<Routed, tonic::Status> {
    loop {
        let config = shared.config_changed.notified();
        match shared.route(path, headers) {
            Route::Ready(r) => return Ok(r),
            Route::Fail(status) => return Err(status),
            Route::Wait => {}
        }
        if tokio::time::timeout_at(deadline, config).await.is_err() {
            return Err(shared.unavailable(shared.pending_message()));
        }
    }
}

/// Picks an endpoint of the call's cluster until one is ready, the pick fails, or
/// `deadline` passes. A config change moves the call to the cluster's newest pool.
async fn wait_for_pick(
    shared: &Shared,
    upstream: &mut Arc<Upstream>,
    hash: Option<u64>,
    headers: &http::HeaderMap,
    deadline: tokio::time::Instant,
) -> Result<Picked, tonic::Status> {
    loop {
        let config = shared.config_changed.notified();
        let conns = shared.conns.changed().notified();
        match shared.pick(upstream, hash, headers) {
            Pick::Send(picked) => return Ok(picked),
            Pick::Fail(status) => return Err(status),
            Pick::Wait => {}
        }
        // Bounded: re-check at least every 100 ms, give up at the deadline.
        let step = tokio::time::Instant::now() + Duration::from_millis(100);
        tokio::select! {
            _ = config => *upstream = shared.latest(upstream),
            _ = conns => {}
            _ = tokio::time::sleep_until(step.min(deadline)) => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(shared.unavailable(shared.pending_message()));
        }
    }
}

/// One attempt: pick, send, and transparently re-send (at most
/// [`MAX_TRANSPARENT_RETRIES`] times) while the server never processed the request.
async fn attempt(
    shared: &Shared,
    upstream: &mut Arc<Upstream>,
    hash: Option<u64>,
    mut req: Request<RequestBody>,
    resend: &Resend,
    call: &ClientCall,
) -> Result<(Response<Incoming>, Feedback, ClientAttempt), tonic::Status> {
    let deadline = tokio::time::Instant::now() + shared.wait_limit;
    let mut picked = match shared.pick(upstream, hash, req.headers()) {
        Pick::Send(p) => p,
        Pick::Fail(status) => return Err(status),
        Pick::Wait => wait_for_pick(shared, upstream, hash, req.headers(), deadline).await?,
    };
    let mut transparent = 0;
    loop {
        // One span and A66 attempt per try, transparent ones included; the trace context
        // goes into the request headers.
        let addr = picked.addr;
        let tele = call.attempt_to(
            req.headers_mut(),
            addr,
            upstream.pool.name(),
            picked.peer_identity.as_deref().map(String::as_str),
        );
        let failure = match picked.sender.try_send_request(req).await {
            Ok(resp) => {
                // The call's result is known at its trailers: outlier detection (gRFC A50)
                // counts it there, through the response body.
                let mut in_flight = picked.in_flight;
                let feedback = Feedback {
                    outcome: in_flight.take_call_outcome(),
                    orca: picked.orca,
                };
                // Counts the request on its endpoint until the response headers arrive
                // (streaming bodies are not counted beyond that).
                in_flight.complete();
                return Ok((resp, feedback, tele));
            }
            Err(mut e) => match e.take_message() {
                // Never left the client: send it elsewhere.
                Some(unsent) => Ok((unsent, e.into_error())),
                None => {
                    let err = e.into_error();
                    // Reached the connection but the server never processed it
                    // (REFUSED_STREAM, above a graceful GOAWAY's last stream): replay it if
                    // it was recorded.
                    match replay::never_processed(&err)
                        .then(|| resend.request(&resend.headers))
                        .flatten()
                    {
                        Some(again) => Ok((again, err)),
                        None => Err(err),
                    }
                }
            },
        };
        tele.finish(tonic::Code::Unavailable, 0);
        match failure {
            Err(err) => {
                return Err(shared.unavailable(format!("endpoint {addr}: {}", error_chain(&err))));
            }
            Ok((again, err)) => {
                transparent += 1;
                shared.conns.connection_failed(addr);
                if transparent > MAX_TRANSPARENT_RETRIES {
                    return Err(shared.unavailable(format!(
                        "endpoint {addr}: {} (after {transparent} attempts the server never processed)",
                        error_chain(&err)
                    )));
                }
                tracing::trace!(%addr, transparent, "request not processed; picking again");
                req = again;
                picked = wait_for_pick(shared, upstream, hash, req.headers(), deadline).await?;
            }
        }
    }
}

/// The `grpc-status` of a Trailers-Only response (headers that end the stream).
fn trailers_only_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()
}

/// A committed call's response, or the final failure.
type CallResult = Result<(Response<ClientBody>, Option<BreakerGuard>, Feedback), tonic::Status>;

/// Runs a routed call's attempts (gRFC A44): each passes the circuit breaker, then is sent;
/// a failure before response headers with a retryable code is retried after backoff, within
/// `max_attempts` and the cluster's retry budget, while the body can be replayed.
async fn attempts(
    shared: &Shared,
    routed: &Routed,
    mut first: Option<Request<RequestBody>>,
    resend: &Resend,
    deadline: Option<tokio::time::Instant>,
    call: &ClientCall,
) -> CallResult {
    let policy = routed.retry.as_deref();
    let mut backoff = policy.map(Backoff::new);
    let mut upstream = routed.upstream.clone();
    upstream.budget.deposit();
    let mut tries: u32 = 0;
    loop {
        tries += 1;
        let mut headers = None;
        if tries > 1 || deadline.is_some() {
            let mut h = resend.headers.clone();
            if tries > 1 {
                h.insert(
                    retry::PREVIOUS_ATTEMPTS_HEADER,
                    http::HeaderValue::from(tries - 1),
                );
            }
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(tokio::time::Instant::now());
                if let Ok(v) = http::HeaderValue::try_from(timeout::format_grpc_timeout(left)) {
                    h.insert(timeout::GRPC_TIMEOUT, v);
                }
            }
            headers = Some(h);
        }
        let req = match (first.take(), headers) {
            (Some(mut req), Some(h)) => {
                *req.headers_mut() = h;
                req
            }
            (Some(req), None) => req,
            (None, h) => match resend.request(h.as_ref().unwrap_or(&resend.headers)) {
                Some(req) => req,
                None => unreachable_replay(shared)?,
            },
        };
        let Some(guard) = upstream.breaker.try_acquire() else {
            shared
                .telemetry
                .record_circuit_breaker_drop(&shared.target, upstream.pool.name());
            return Err(shared.unavailable(format!(
                "cluster \"{}\": {} requests in flight (max_requests); dropped by the circuit breaker",
                upstream.pool.name(),
                upstream.breaker.max_requests()
            )));
        };
        // The failure's code, and the pushback and response if it had one. A Trailers-Only
        // response that ends the call is observed (its telemetry finishes the call); one
        // that is retried only finishes its attempt.
        let (code, pushback, failure) =
            match attempt(shared, &mut upstream, routed.hash, req, resend, call).await {
                Ok((resp, mut feedback, tele)) => match trailers_only_status(resp.headers()) {
                    None => return Ok((tele.observe(call, resp), Some(guard), feedback)),
                    Some(code) => {
                        feedback.finish(Some(code), Some(resp.headers()));
                        if code == 0 {
                            return Ok((tele.observe(call, resp), None, Feedback::default()));
                        }
                        let pushback = retry::pushback(resp.headers());
                        (code, pushback, Ok((resp, tele)))
                    }
                },
                Err(status) => (status.code() as i32, Pushback::None, Err(status)),
            };
        drop(guard);
        let give_up = |failure: Result<(Response<Incoming>, ClientAttempt), tonic::Status>| {
            failure.map(|(resp, tele)| (tele.observe(call, resp), None, Feedback::default()))
        };
        let Some(policy) = policy.filter(|p| retry::retryable(p, code, tries)) else {
            return give_up(failure);
        };
        if !resend.replay.is_replayable() {
            // The body outgrew the replay buffer (or is still being sent): no retry.
            return give_up(failure);
        }
        if !upstream.budget.try_withdraw() {
            tracing::debug!(cluster = upstream.pool.name(), "retry budget exhausted");
            shared
                .telemetry
                .record_retry_budget_exhausted(&shared.target, upstream.pool.name());
            return give_up(failure);
        }
        let Some(wait) = backoff
            .as_mut()
            .and_then(|b| b.next(policy, pushback, rand::random::<f64>()))
        else {
            return give_up(failure);
        };
        if let Ok((_, tele)) = failure {
            tele.finish(tonic::Code::from(code), 0);
        }
        tracing::trace!(code, tries, ?wait, "retrying");
        tokio::time::sleep(wait).await;
        upstream = shared.latest(&upstream);
    }
}

/// A replay that vanished between the check and the use cannot happen (the recording is
/// finished and never shrinks); fail the call cleanly if it ever does.
fn unreachable_replay<T>(shared: &Shared) -> Result<T, tonic::Status> {
    Err(shared.unavailable("request body can no longer be replayed"))
}

/// A call: route (waiting for config if needed), fault injection, then the attempts, all
/// under the call's deadline.
async fn run_call(
    shared: Arc<Shared>,
    req: Request<RequestBody>,
    resend: Resend,
    call: ClientCall,
) -> Result<Response<ResponseBody>, BoxError> {
    let start = tokio::time::Instant::now();
    let app_timeout = req
        .headers()
        .get(timeout::GRPC_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(timeout::parse_grpc_timeout);
    let routed = match shared.route(req.uri().path(), req.headers()) {
        Route::Ready(r) => r,
        Route::Fail(status) => return Err(Box::new(status)),
        Route::Wait => {
            let mut wait = start + shared.wait_limit;
            if let Some(t) = app_timeout {
                wait = wait.min(start + t);
            }
            wait_for_route(&shared, req.uri().path(), req.headers(), wait).await?
        }
    };
    let limit = timeout::effective(app_timeout, routed.timeout);
    let deadline = limit.map(|t| start + t);
    let work = async {
        // gRFC A33: faults are decided and applied before any byte is sent.
        let mut _active = Vec::new();
        for f in routed.faults.iter() {
            let Some(injected) = fault::decide(f, req.headers(), rand::random::<u32>) else {
                continue;
            };
            if let Some(d) = injected.delay {
                tokio::time::sleep(d).await;
            }
            if let Some(code) = injected.abort {
                return Ok(FaultOr::Abort(code));
            }
            _active.push(injected);
        }
        drop(_active);
        attempts(&shared, &routed, Some(req), &resend, deadline, &call)
            .await
            .map(FaultOr::Call)
    };
    let outcome = match deadline {
        None => work.await,
        Some(d) => match tokio::time::timeout_at(d, work).await {
            Ok(r) => r,
            Err(_) => Err(deadline_exceeded(limit)),
        },
    };
    match outcome {
        Err(status) => Err(Box::new(status)),
        Ok(FaultOr::Abort(0)) => {
            call.finish(tonic::Code::Ok);
            Ok(ResponseBody::trailers_only_ok())
        }
        Ok(FaultOr::Abort(code)) => Err(Box::new(tonic::Status::new(
            tonic::Code::from(code),
            fault::ABORT_MESSAGE,
        ))),
        Ok(FaultOr::Call((resp, guard, feedback))) => {
            Ok(resp
                .map(|body| ResponseBody::new(body, deadline.map(|d| (d, limit)), guard, feedback)))
        }
    }
}

enum FaultOr<T> {
    Abort(i32),
    Call(T),
}

fn deadline_exceeded(limit: Option<Duration>) -> tonic::Status {
    tonic::Status::deadline_exceeded(format!(
        "call exceeded its deadline of {:?} (grpc-timeout / max_stream_duration)",
        limit.unwrap_or_default()
    ))
}

/// The response body of a [`MeshChannel`] call: the endpoint's HTTP/2 body, ended with
/// DEADLINE_EXCEEDED if the call's deadline passes while it streams. It holds the call's
/// circuit-breaker slot until it ends or is dropped.
pub struct ResponseBody {
    inner: Option<ClientBody>,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Option<Duration>)>,
    breaker: Option<BreakerGuard>,
    feedback: Feedback,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("ended", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    fn new(
        inner: ClientBody,
        deadline: Option<(tokio::time::Instant, Option<Duration>)>,
        breaker: Option<BreakerGuard>,
        feedback: Feedback,
    ) -> Self {
        ResponseBody {
            inner: Some(inner),
            deadline: deadline.map(|(d, limit)| (Box::pin(tokio::time::sleep_until(d)), limit)),
            breaker,
            feedback,
        }
    }

    /// A Trailers-Only response with status OK (an injected abort with code 0, gRFC A33).
    fn trailers_only_ok() -> Response<ResponseBody> {
        let mut resp = Response::new(ResponseBody {
            inner: None,
            deadline: None,
            breaker: None,
            feedback: Feedback::default(),
        });
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", http::HeaderValue::from_static("0"));
        resp
    }

    fn finish(&mut self) {
        self.inner = None;
        self.deadline = None;
        self.breaker = None;
    }
}

impl http_body::Body for ResponseBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if let Some((sleep, limit)) = &mut this.deadline
            && sleep.as_mut().poll(cx).is_ready()
        {
            let limit = *limit;
            this.finish();
            return Poll::Ready(Some(Err(Box::new(deadline_exceeded(limit)))));
        }
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // A transport failure mid-stream: the call failed (gRFC A50 counts it).
                this.feedback.finish(None, None);
                this.finish();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let status = trailers_only_status(trailers);
                    this.feedback.finish(status, Some(trailers));
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(http_body::Body::size_hint)
            .unwrap_or_else(|| http_body::SizeHint::with_exact(0))
    }
}

impl<B> tower_service::Service<Request<B>> for MeshChannel
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // No buffer: each endpoint's HTTP/2 connection applies its own stream limits.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let shared = self.inner.shared.clone();
        let (mut parts, body) = req.into_parts();
        let call = ClientCall::start(&shared.telemetry, &shared.target, parts.uri.path());
        let body = call.count_sent(body);
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
        // The call span; an error ends the call with its status, a response when its body
        // ends.
        call.clone()
            .instrument(Box::pin(run_call(shared, req, resend, call)))
    }
}
