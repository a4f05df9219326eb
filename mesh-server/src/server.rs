//! [`MeshServer`]: the builder, the accept loop and connection lifecycle (gRFC A36).
//!
//! The server subscribes to the Listener named by the bootstrap's
//! `server_listener_resource_name_template` (`%s` → the bound `ip:port`). Until a valid
//! Listener arrives it is NOT_SERVING: accepted connections are closed at once. Each new
//! connection is matched to a filter chain of the configuration in force at accept time
//! and keeps it for its life; when the configuration changes (or the server stops
//! serving) existing connections are drained gracefully with GOAWAY, their in-flight RPCs
//! given `drain_grace` to finish. A TLS connection is drained the same way when the
//! earlier of its two certificates (ours as presented, the client's) expires, and no
//! handshake presents an expired certificate of ours ([`crate::expiry`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{Request, Response};
use std::collections::BTreeMap;

use mesh_client::bootstrap::Bootstrap;
use mesh_client::config::{ConnectionInfo, RAW_BUFFER, TransportSocket};
use mesh_client::identity::{PeerTlsIdentity, ProviderRegistry};
use mesh_client::xds::{ServerConfig, ServerState, XdsClient};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::pb::health_server::HealthServer;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service};

use crate::expiry::{CertDeadline, Leaf, Presenting};
use crate::health::MeshHealth;
use crate::identity::PeerIdentity;
use crate::limits::Http2Limits;
use crate::request::CallTelemetry;
use crate::request::{AppService, ConnContext, ConnService};
use crate::stats::ServerStats;
use crate::status::ServingStatus;
use mesh_client::telemetry::Telemetry;

/// Why a server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MeshServerError {
    /// The bootstrap could not be read.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
    /// The bootstrap has no `server_listener_resource_name_template`.
    #[error(
        "the bootstrap has no server_listener_resource_name_template, so the server cannot know which Listener to ask for (Istio's is \"xds.istio.io/grpc/lds/inbound/%s\")"
    )]
    NoListenerTemplate,
    /// The xDS client could not be created.
    #[error("xDS client: {0}")]
    Xds(String),
    /// Binding or accepting failed.
    #[error("listening on {addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
}

type StatusCallback = Arc<dyn Fn(&ServingStatus) + Send + Sync>;
type LayerFn = Box<dyn FnOnce(AppService) -> AppService + Send>;

/// Builds and runs an xDS-managed server; mirrors `tonic::transport::Server::builder()`.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use mesh_server::MeshServer;
/// use xds_proto::helloworld::greeter_server::GreeterServer;
/// # #[derive(Default)] struct MyGreeter;
/// # #[tonic::async_trait]
/// # impl xds_proto::helloworld::greeter_server::Greeter for MyGreeter {
/// #     async fn say_hello(&self, r: tonic::Request<xds_proto::helloworld::HelloRequest>)
/// #         -> Result<tonic::Response<xds_proto::helloworld::HelloReply>, tonic::Status> { todo!() }
/// # }
/// MeshServer::builder()
///     .add_service(GreeterServer::new(MyGreeter::default()))
///     .serve("0.0.0.0:8080".parse()?) // waits for its Listener from xDS
///     .await?;
/// # Ok(()) }
/// ```
pub struct MeshServerBuilder {
    routes: RoutesBuilder,
    layers: Vec<LayerFn>,
    bootstrap: Option<Bootstrap>,
    limits: Http2Limits,
    on_status: Option<StatusCallback>,
    stats: Arc<ServerStats>,
    health: MeshHealth,
    serving: watch::Sender<bool>,
    telemetry: Option<Telemetry>,
    /// Names of the added services: A66 records calls to any other as `other`.
    services: Vec<&'static str>,
}

impl std::fmt::Debug for MeshServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshServerBuilder")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// An xDS-managed server; see [`MeshServer::builder`].
#[derive(Debug)]
pub struct MeshServer;

impl MeshServer {
    /// Starts building a server.
    pub fn builder() -> MeshServerBuilder {
        let (serving, rx) = watch::channel(false);
        MeshServerBuilder {
            routes: RoutesBuilder::default(),
            layers: Vec::new(),
            bootstrap: None,
            limits: Http2Limits::default(),
            on_status: None,
            stats: Arc::new(ServerStats::default()),
            health: MeshHealth::new(rx),
            serving,
            telemetry: None,
            services: Vec::new(),
        }
    }
}

impl MeshServerBuilder {
    /// Adds a tonic service (a generated `XxxServer`).
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: Service<
                Request<tonic::body::Body>,
                Response = Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.health.register(S::NAME);
        self.services.push(S::NAME);
        self.routes.add_service(svc);
        self
    }

    /// Wraps every service in a tower layer (applied inside the mesh layers, so it sees
    /// only requests that routing and RBAC admitted).
    pub fn layer<L>(mut self, layer: L) -> Self
    where
        L: Layer<AppService> + Send + 'static,
        L::Service: Service<
                Request<tonic::body::Body>,
                Response = Response<tonic::body::Body>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<Request<tonic::body::Body>>>::Future: Send + 'static,
    {
        self.layers.push(Box::new(move |inner| {
            BoxCloneSyncService::new(layer.layer(inner))
        }));
        self
    }

    /// Uses this bootstrap instead of `GRPC_XDS_BOOTSTRAP` / `_CONFIG`.
    pub fn with_bootstrap(mut self, bootstrap: Bootstrap) -> Self {
        self.bootstrap = Some(bootstrap);
        self
    }

    /// HTTP/2 and connection limits (every one is explicit; see [`Http2Limits`]).
    pub fn with_limits(mut self, limits: Http2Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Called on every serving-status change.
    pub fn on_serving_status(mut self, f: impl Fn(&ServingStatus) + Send + Sync + 'static) -> Self {
        self.on_status = Some(Arc::new(f));
        self
    }

    /// Metrics (gRFC A66 `grpc.server.*`, RBAC shadow decisions), the handler span and
    /// trace-context extraction (default: [`Telemetry::global`]).
    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// The server's counters (RBAC decisions, shadow decisions, refusals).
    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    /// The `grpc.health.v1.Health` service reflecting the serving status, for a
    /// maintenance port that is not xDS-managed (it is also served on the main port while
    /// serving).
    pub fn health_service(&self) -> HealthServer<MeshHealth> {
        self.health.clone().into_server()
    }

    /// Binds `addr` and serves until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), MeshServerError> {
        self.serve_with_shutdown(addr, std::future::pending()).await
    }

    /// Binds `addr` and serves until `signal` completes, then drains.
    pub async fn serve_with_shutdown(
        self,
        addr: SocketAddr,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<(), MeshServerError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MeshServerError::Io {
                addr: addr.to_string(),
                source,
            })?;
        self.serve_with_incoming_shutdown(listener, signal).await
    }

    /// Serves on an already bound listener until the process ends.
    pub async fn serve_with_incoming(self, listener: TcpListener) -> Result<(), MeshServerError> {
        self.serve_with_incoming_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves on an already bound listener until `signal` completes, then drains.
    pub async fn serve_with_incoming_shutdown(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<(), MeshServerError> {
        let local = listener
            .local_addr()
            .map_err(|source| MeshServerError::Io {
                addr: "listener".into(),
                source,
            })?;
        let bootstrap = match self.bootstrap {
            Some(b) => b,
            None => Bootstrap::from_env().map_err(|e| MeshServerError::Bootstrap(e.to_string()))?,
        };
        let name = bootstrap
            .server_listener_resource_name(&local.to_string())
            .ok_or(MeshServerError::NoListenerTemplate)?;
        let client =
            XdsClient::shared(&bootstrap).map_err(|e| MeshServerError::Xds(e.to_string()))?;
        let node_id: Arc<str> = client.node_id().into();

        let mut routes = self.routes;
        routes.add_service(self.health.clone().into_server());
        let mut services = self.services;
        services.push(<HealthServer<MeshHealth> as NamedService>::NAME);
        let telemetry = CallTelemetry {
            telemetry: self.telemetry.unwrap_or_else(Telemetry::global),
            services: services.into(),
        };
        let mut app: AppService = BoxCloneSyncService::new(routes.routes().prepare());
        for layer in self.layers {
            app = layer(app);
        }

        let active: Arc<ArcSwapOption<Generation>> = Arc::new(ArcSwapOption::empty());
        let on_status = self.on_status;
        let serving_tx = self.serving;
        let set_status = move |status: &ServingStatus| {
            serving_tx.send_replace(status.is_serving());
            if let Some(cb) = &on_status {
                cb(status);
            }
        };
        set_status(&ServingStatus::NotServing {
            reason: format!("waiting for LDS \"{name}\""),
        });
        tracing::info!(%local, listener = %name, "xDS server waiting for its Listener");

        let watcher = tokio::spawn(apply_config(
            client.watch_server_listener(&name),
            ProviderRegistry::for_bootstrap(&bootstrap),
            local,
            name.clone(),
            active.clone(),
            set_status,
        ));
        let _watcher = AbortOnDrop(watcher);

        let limits = Arc::new(self.limits);
        let stats = self.stats;
        let mut signal = std::pin::pin!(signal);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut signal => break,
            };
            // Reap finished connection tasks so the set stays small.
            while conns.try_join_next().is_some() {}
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Accept errors (EMFILE, …) are transient: back off briefly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(generation) = active.load_full() else {
                ServerStats::inc(&stats.connections_refused);
                drop(stream);
                continue;
            };
            conns.spawn(handle_connection(
                stream,
                peer,
                local,
                generation,
                Shared {
                    app: app.clone(),
                    stats: stats.clone(),
                    node_id: node_id.clone(),
                    limits: limits.clone(),
                    telemetry: telemetry.clone(),
                },
                stop_rx.clone(),
            ));
        }
        // Shutdown: stop accepting, drain every connection.
        let _ = stop_tx.send(true);
        let grace = limits.drain_grace + Duration::from_secs(1);
        let _ =
            tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
        drop(client);
        Ok(())
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One configuration generation: connections accepted under it drain when it is replaced.
struct Generation {
    config: Arc<ServerConfig>,
    drain: watch::Sender<bool>,
    /// Per TLS filter chain (by name): its rustls configs, or why it cannot serve TLS.
    tls: BTreeMap<String, Result<TlsConfigs, String>>,
}

type TlsConfigs = watch::Receiver<Option<Arc<rustls::ServerConfig>>>;

/// What every connection of a server shares.
struct Shared {
    app: AppService,
    stats: Arc<ServerStats>,
    node_id: Arc<str>,
    limits: Arc<Http2Limits>,
    telemetry: CallTelemetry,
}

/// Sniffs, matches a filter chain, does TLS when the chain says so, and serves.
async fn handle_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    generation: Arc<Generation>,
    shared: Shared,
    stop: watch::Receiver<bool>,
) {
    let stats = &shared.stats;
    // One deadline from accept to the first HTTP/2 frame: sniffing, TLS, the preface.
    let deadline = tokio::time::Instant::now() + shared.limits.handshake_timeout;
    // A TLS connection starts with a handshake record (0x16): tell TLS from plaintext as
    // Istio's listeners do (`transport_protocol` "tls" vs "raw_buffer"), so one port can
    // serve both (PERMISSIVE).
    let mut first = [0u8; 1];
    let sniffed = tokio::time::timeout_at(deadline, stream.peek(&mut first)).await;
    let is_tls = match sniffed {
        Ok(Ok(1)) => first[0] == 0x16,
        _ => {
            ServerStats::inc(&stats.connections_refused);
            return;
        }
    };
    let info = ConnectionInfo {
        local: stream.local_addr().unwrap_or(local),
        peer,
        transport_protocol: Some(if is_tls { "tls" } else { RAW_BUFFER }),
    };
    let Some(chain) = generation.config.listener.select(&info) else {
        ServerStats::inc(&stats.connections_refused);
        tracing::debug!(%peer, "no filter chain matches; closing");
        return;
    };
    let _ = stream.set_nodelay(true);
    let mut cert_deadline = None;
    let (io, tls_peer): (Box<dyn Io>, Option<Option<PeerTlsIdentity>>) = match &chain.transport {
        TransportSocket::Plaintext => (Box::new(stream), None),
        TransportSocket::Tls(_) => {
            let config = match generation.tls.get(&chain.name) {
                Some(Ok(configs)) => configs.borrow().clone(),
                Some(Err(e)) => {
                    tracing::warn!(%peer, chain = %chain.name, error = %e, "filter chain cannot serve TLS; closing");
                    None
                }
                None => None,
            };
            let Some(config) = config else {
                // Never serve a TLS chain in plaintext.
                ServerStats::inc(&stats.connections_refused);
                return;
            };
            // This handshake's own resolver records the certificate we present (the
            // connection's lifetime) and refuses an expired one.
            let (config, presenting) = Presenting::wrap(&config);
            let accepted = tokio::time::timeout_at(
                deadline,
                tokio_rustls::TlsAcceptor::from(config).accept(stream),
            )
            .await;
            match accepted {
                Ok(Ok(tls)) => {
                    let certs = tls.get_ref().1.peer_certificates();
                    let identity = certs.and_then(mesh_client::identity::peer_identity);
                    cert_deadline = CertDeadline::earliest(
                        presenting.presented(),
                        certs.and_then(Leaf::of_chain),
                    );
                    (Box::new(tls), Some(identity))
                }
                Ok(Err(e)) => {
                    ServerStats::inc(&stats.tls_handshake_failures);
                    if let Some(why) = presenting.refusal() {
                        tracing::warn!(%peer, chain = %chain.name, error = %why, "TLS handshake refused");
                        return;
                    }
                    let why = mesh_client::identity::IdentityError::from_io(&e)
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| e.to_string());
                    tracing::info!(%peer, chain = %chain.name, error = %why, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    ServerStats::inc(&stats.tls_handshake_failures);
                    return;
                }
            }
        }
    };
    if let Some(d) = &cert_deadline
        && d.leaf.is_expired_at(std::time::SystemTime::now())
    {
        // Possible only at the very instant of expiry, or for a resumed TLS session
        // (resumption does not verify the peer's certificate again).
        ServerStats::inc(&stats.connections_expired);
        tracing::info!(%peer, certificate = %d.holder.as_str(), spiffe_id = %d.leaf.uri, serial = %d.leaf.serial_hex, not_after = %d.leaf.not_after, "{}; closing the TLS connection before serving it", d.describe());
        return;
    }
    ServerStats::inc(&stats.connections_accepted);
    let _open = OpenConnection::new(stats.clone());
    let spiffe_id = tls_peer
        .as_ref()
        .and_then(|p| p.as_ref())
        .and_then(|p| p.spiffe_id.as_ref())
        .map(|id| id.to_string());
    let mut ctx = ConnContext::new(
        chain,
        generation.config.routes_for(&chain.http.route_source),
        shared.app.clone(),
        PeerIdentity {
            addr: peer,
            local_addr: info.local,
            spiffe_id,
        },
        shared.stats.clone(),
        shared.node_id.clone(),
    );
    ctx.tls_peer = tls_peer.map(|p| p.map(|p| p.cert));
    ctx.telemetry = shared.telemetry.clone();
    let drain = generation.drain.subscribe();
    // The connection must not keep its generation alive: replacing the generation drops
    // it, which is what drains this connection.
    drop(generation);
    serve_connection(
        Box::new(crate::preface::PrefaceDeadline::new(io, deadline)),
        ConnService(Arc::new(ctx)),
        shared.limits.clone(),
        Lifetime {
            drain,
            stop,
            certificates: cert_deadline,
            peer,
            stats: shared.stats.clone(),
        },
    )
    .await;
}

/// Counts a connection in [`ServerStats`]' open gauge while it lives.
struct OpenConnection(Arc<ServerStats>);

impl OpenConnection {
    fn new(stats: Arc<ServerStats>) -> Self {
        ServerStats::inc(&stats.connections_open);
        OpenConnection(stats)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        ServerStats::dec(&self.0.connections_open);
    }
}

/// What ends a served connection besides its peer: a new configuration generation
/// (`drain`), server shutdown (`stop`), the expiry of a certificate it was authenticated
/// with, and (in [`Http2Limits`]) its maximum age.
struct Lifetime {
    drain: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
    certificates: Option<CertDeadline>,
    peer: SocketAddr,
    stats: Arc<ServerStats>,
}

/// A connection's byte stream: TCP, or TLS over TCP.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Io for T {}

impl Drop for Generation {
    fn drop(&mut self) {
        let _ = self.drain.send(true);
    }
}

async fn apply_config(
    mut watch: mesh_client::xds::ServerWatch,
    identity: Arc<ProviderRegistry>,
    local: SocketAddr,
    name: String,
    active: Arc<ArcSwapOption<Generation>>,
    set_status: impl Fn(&ServingStatus),
) {
    let mut serving = false;
    loop {
        let next = match watch.borrow() {
            ServerState::Pending { .. } => None,
            ServerState::Ready(config) => {
                let addr = config.listener.address;
                let port_ok = addr.port() == local.port();
                let ip_ok = addr.ip().is_unspecified() || addr.ip() == local.ip();
                if port_ok && ip_ok {
                    Some(Ok(config))
                } else {
                    Some(Err(format!(
                        "LDS \"{name}\": address {addr} does not match the server's {local} (gRFC A36)"
                    )))
                }
            }
            ServerState::NotServing { reason } => Some(Err(reason)),
        };
        match next {
            None => {}
            Some(Ok(config)) => {
                let (drain, _) = watch::channel(false);
                let tls = config
                    .listener
                    .filter_chains
                    .iter()
                    .chain(config.listener.default_filter_chain.iter())
                    .filter_map(|fc| match &fc.transport {
                        TransportSocket::Tls(t) => Some((fc.name.clone(), identity.server_tls(t))),
                        TransportSocket::Plaintext => None,
                    })
                    .collect();
                // Storing drops the previous generation, which drains its connections.
                active.store(Some(Arc::new(Generation { config, drain, tls })));
                if !serving {
                    serving = true;
                    tracing::info!(listener = %name, "xDS server serving");
                    set_status(&ServingStatus::Serving);
                }
            }
            Some(Err(reason)) => {
                active.store(None);
                if serving {
                    tracing::warn!(listener = %name, %reason, "xDS server not serving");
                }
                serving = false;
                set_status(&ServingStatus::NotServing { reason });
            }
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

async fn serve_connection(
    stream: Box<dyn Io>,
    service: ConnService,
    limits: Arc<Http2Limits>,
    lifetime: Lifetime,
) {
    let Lifetime {
        mut drain,
        mut stop,
        certificates,
        peer,
        stats,
    } = lifetime;
    let builder = limits.builder();
    let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let age = async {
        match limits.max_connection_age {
            Some(a) => tokio::time::sleep(a).await,
            None => std::future::pending().await,
        }
    };
    let mut age = std::pin::pin!(age);
    let expiry = async {
        match &certificates {
            Some(d) => d.reached().await,
            None => std::future::pending().await,
        }
    };
    let mut expiry = std::pin::pin!(expiry);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        _ = drain.wait_for(|d| *d) => {}
        _ = stop.wait_for(|s| *s) => {}
        _ = &mut age => {}
        () = &mut expiry => {
            if let Some(d) = &certificates {
                ServerStats::inc(&stats.connections_expired);
                tracing::info!(
                    %peer,
                    certificate = %d.holder.as_str(),
                    spiffe_id = %d.leaf.uri,
                    serial = %d.leaf.serial_hex,
                    not_after = %d.leaf.not_after,
                    "{}; draining the TLS connection (GOAWAY)",
                    d.describe()
                );
            }
        }
    }
    // GOAWAY now; in-flight streams get the grace period.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.drain_grace, conn).await;
}
