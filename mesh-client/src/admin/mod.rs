//! The admin surface: what an operator asks a running process (gRFC A38's admin interface,
//! gRFC A40's CSDS).
//!
//! - [`Csds`]: `envoy.service.status.v3.ClientStatusDiscoveryService`, every resource of
//!   every xDS client with its status, version, last update and last NACK (gRFC A40), so
//!   `grpcdebug ADDR xds status` and `xds config` show this process's view.
//! - the gRPC health service (`grpc.health.v1.Health`, from `tonic-health`).
//! - [`status_text`]: the same facts as a short text page, served over HTTP/1.1 on a port of
//!   its own by [`serve_status_page`].
//!
//! Mount the services on an existing tonic server with [`services`], or run them on a port
//! of their own with [`serve_admin`] or [`AdminServer`]:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_client::admin::AdminServer;
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("admin on {}", listener.local_addr()?);
//! AdminServer::builder()
//!     .all_clients()
//!     .serve_with_shutdown(listener, async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

mod csds;
mod status_page;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

pub use csds::{Csds, CsdsServer, client_config};
pub use status_page::{serve_status_page, status_text, status_text_for};

use crate::xds::XdsClient;

/// HTTP/2 limits of the admin server (DESIGN §5: always explicit; an admin port needs few
/// streams).
const MAX_CONCURRENT_STREAMS: u32 = 64;
const MAX_PENDING_ACCEPT_RESETS: usize = 20;
const MAX_LOCAL_ERROR_RESETS: usize = 256;
const MAX_HEADER_LIST_SIZE: u32 = 16 * 1024;
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(30 * 60);

/// Why the admin server stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Binding the address failed.
    #[error("admin server: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("admin server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The admin gRPC services for every shared xDS client of this process, to mount on a
/// tonic server of your own: CSDS, and the health service with its reporter (the overall
/// service `""` and CSDS are reported `SERVING` once [`HealthReporter::set_serving`] is
/// awaited for them, as [`serve_admin`] does).
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let (csds, _reporter, health) = mesh_client::admin::services();
/// tonic::transport::Server::builder()
///     .add_service(csds)
///     .add_service(health)
///     .serve("127.0.0.1:50100".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
pub fn services() -> (CsdsServer, HealthReporter, HealthServer<impl Health>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    (Csds::all_clients().into_server(), reporter, health)
}

/// Serves CSDS for every shared xDS client, and the health service, on `listener` until
/// `shutdown` resolves. See [`AdminServer`] to choose the clients.
pub async fn serve_admin(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AdminError> {
    AdminServer::builder()
        .serve_with_shutdown(listener, shutdown)
        .await
}

/// A gRPC admin server: CSDS and health on a port of its own.
#[derive(Debug, Clone)]
pub struct AdminServer {
    csds: Csds,
}

/// Builds an [`AdminServer`]; by default it reports on every shared xDS client.
#[derive(Debug, Clone, Default)]
pub struct AdminServerBuilder {
    clients: Option<Vec<XdsClient>>,
}

impl AdminServer {
    /// A builder reporting on every shared xDS client unless clients are named.
    pub fn builder() -> AdminServerBuilder {
        AdminServerBuilder::default()
    }

    /// The CSDS service this server runs.
    pub fn csds(&self) -> &Csds {
        &self.csds
    }
}

impl AdminServerBuilder {
    /// Reports on this client (may be called more than once); without it, on all.
    pub fn with_client(mut self, client: XdsClient) -> Self {
        self.clients.get_or_insert_with(Vec::new).push(client);
        self
    }

    /// Reports on every shared client alive at each request (the default; forgets the
    /// clients named so far).
    pub fn all_clients(mut self) -> Self {
        self.clients = None;
        self
    }

    /// The server.
    pub fn build(self) -> AdminServer {
        AdminServer {
            csds: match self.clients {
                Some(clients) => Csds::for_clients(clients),
                None => Csds::all_clients(),
            },
        }
    }

    /// Binds `addr` and serves until the process ends.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        self.serve_with_shutdown(listener, std::future::pending())
            .await
    }

    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AdminError> {
        self.build().serve_with_shutdown(listener, shutdown).await
    }
}

impl AdminServer {
    /// Serves on `listener` until `shutdown` resolves.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), AdminError> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<CsdsServer>().await;
        tonic::transport::Server::builder()
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
            .http2_max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
            .http2_max_header_list_size(MAX_HEADER_LIST_SIZE)
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .max_connection_age(MAX_CONNECTION_AGE)
            .add_service(self.csds.into_server())
            .add_service(health)
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    }
}
