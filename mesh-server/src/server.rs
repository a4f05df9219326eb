//! [`MeshServer`]: the builder, the accept loop and connection lifecycle (gRFC A36).
//!
//! The server subscribes to the Listener named by the bootstrap's
//! `server_listener_resource_name_template` (`%s` → the bound `ip:port`). Until a valid
//! Listener arrives it is NOT_SERVING: accepted connections are closed at once. Each new
//! connection is matched to a filter chain of the configuration in force at accept time
//! and keeps it for its life; when the configuration changes (or the server stops
//! serving) existing connections are drained gracefully with GOAWAY, their in-flight RPCs
//! given `drain_grace` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{Request, Response};
use mesh_client::bootstrap::Bootstrap;
use mesh_client::config::{ConnectionInfo, RAW_BUFFER, TransportSocket};
use mesh_client::xds::{ServerConfig, ServerState, XdsClient};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::pb::health_server::HealthServer;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service};

use crate::health::MeshHealth;
use crate::identity::PeerIdentity;
use crate::limits::Http2Limits;
use crate::request::{AppService, ConnContext, ConnService};
use crate::stats::ServerStats;
use crate::status::ServingStatus;

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
            let info = ConnectionInfo {
                local: stream.local_addr().unwrap_or(local),
                peer,
                transport_protocol: Some(RAW_BUFFER),
            };
            let Some(chain) = generation.config.listener.select(&info) else {
                ServerStats::inc(&stats.connections_refused);
                tracing::debug!(%peer, "no filter chain matches; closing");
                drop(stream);
                continue;
            };
            if !matches!(chain.transport, TransportSocket::Plaintext) {
                // Never serve a TLS filter chain in plaintext: until TLS is wired here,
                // such connections are refused.
                ServerStats::inc(&stats.connections_refused);
                tracing::warn!(%peer, chain = %chain.name, "filter chain requires TLS, which this server cannot provide yet; closing");
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            ServerStats::inc(&stats.connections_accepted);
            let ctx = ConnContext::new(
                chain,
                generation.config.routes_for(&chain.http.route_source),
                app.clone(),
                PeerIdentity {
                    addr: peer,
                    local_addr: info.local,
                    spiffe_id: None,
                },
                stats.clone(),
                node_id.clone(),
            );
            conns.spawn(serve_connection(
                stream,
                ConnService(Arc::new(ctx)),
                limits.clone(),
                generation.drain.subscribe(),
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
}

impl Drop for Generation {
    fn drop(&mut self) {
        let _ = self.drain.send(true);
    }
}

async fn apply_config(
    mut watch: mesh_client::xds::ServerWatch,
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
                // Storing drops the previous generation, which drains its connections.
                active.store(Some(Arc::new(Generation { config, drain })));
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
    stream: tokio::net::TcpStream,
    service: ConnService,
    limits: Arc<Http2Limits>,
    mut drain: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
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
    }
    // GOAWAY now; in-flight streams get the grace period.
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(limits.drain_grace, conn).await;
}
