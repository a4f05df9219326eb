//! Shared pieces of the examples: the greeter service implementation and a helper that
//! runs it on a loopback listener.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};
use xds_proto::helloworld::greeter_server::{Greeter, GreeterServer};
use xds_proto::helloworld::{HelloReply, HelloRequest};

/// A greeter that says which backend answered: `Hello NAME from ID`. A name of
/// `sleep-<ms>` delays the reply, for timeout tests; `whoami` answers with the caller's
/// address and, over mTLS, its SPIFFE ID, from the [`mesh_server::PeerIdentity`] extension.
/// A backend whose id starts with `fail-` answers every call with `UNAVAILABLE: {id} is
/// failing` (a Trailers-Only response), for outlier-detection tests.
#[derive(Debug, Clone)]
pub struct NamedGreeter {
    /// The backend's id, echoed in every reply.
    pub id: String,
}

#[tonic::async_trait]
impl Greeter for NamedGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let peer = request
            .extensions()
            .get::<mesh_server::PeerIdentity>()
            .cloned();
        if self.id.starts_with("fail-") {
            return Err(Status::unavailable(format!("{} is failing", self.id)));
        }
        let name = request.into_inner().name;
        if name == "whoami" {
            let who = match &peer {
                Some(p) => match &p.spiffe_id {
                    Some(id) => format!("{} ({id})", p.addr),
                    None => p.addr.to_string(),
                },
                None => "unknown".to_string(),
            };
            return Ok(Response::new(HelloReply {
                message: format!("Hello {who} from {}", self.id),
            }));
        }
        // `sleep-<ms>` makes the call slow, for timeout tests (bounded to 60 s).
        if let Some(ms) = name
            .strip_prefix("sleep-")
            .and_then(|m| m.parse::<u64>().ok())
        {
            tokio::time::sleep(std::time::Duration::from_millis(ms.min(60_000))).await;
        }
        Ok(Response::new(HelloReply {
            message: format!("Hello {name} from {}", self.id),
        }))
    }
}

/// The backend id in a reply produced by [`NamedGreeter`].
pub fn backend_of(reply: &str) -> &str {
    reply.rsplit(" from ").next().unwrap_or(reply)
}

/// A greeter server running in the background: plain tonic ([`GreeterBackend::start`]) or
/// xDS-managed by [`mesh_server::MeshServer`] ([`GreeterBackend::start_mesh`]).
#[derive(Debug)]
pub struct GreeterBackend {
    /// The bound address.
    pub addr: SocketAddr,
    /// The backend id.
    pub id: String,
    /// The MeshServer's counters (xDS-managed backends only).
    pub stats: Option<std::sync::Arc<mesh_server::ServerStats>>,
    serving: Option<tokio::sync::watch::Receiver<bool>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl GreeterBackend {
    /// Binds and starts serving.
    pub async fn start(addr: SocketAddr, id: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let svc = GreeterServer::new(NamedGreeter { id: id.to_string() });
        let task = tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(GreeterBackend {
            addr,
            id: id.to_string(),
            stats: None,
            serving: None,
            shutdown: Some(tx),
            task,
        })
    }

    /// Starts an xDS-managed greeter ([`mesh_server::MeshServer`]) on a bound listener; it
    /// serves once its inbound Listener arrives from the control plane named by `bootstrap`.
    pub fn start_mesh(
        listener: tokio::net::TcpListener,
        id: &str,
        bootstrap: mesh_client::bootstrap::Bootstrap,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (serving_tx, serving_rx) = tokio::sync::watch::channel(false);
        let builder = mesh_server::MeshServer::builder()
            .with_bootstrap(bootstrap)
            .on_serving_status(move |s| {
                serving_tx.send_replace(s.is_serving());
            })
            .add_service(GreeterServer::new(NamedGreeter { id: id.to_string() }));
        let stats = builder.stats();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let name = id.to_string();
        let task = tokio::spawn(async move {
            let served = builder
                .serve_with_incoming_shutdown(listener, async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(backend = %name, error = %e, "MeshServer failed");
            }
        });
        Ok(GreeterBackend {
            addr,
            id: id.to_string(),
            stats: Some(stats),
            serving: Some(serving_rx),
            shutdown: Some(tx),
            task,
        })
    }

    /// Waits (at most `limit`) until an xDS-managed backend is serving; plain backends
    /// always are.
    pub async fn wait_serving(&self, limit: std::time::Duration) -> bool {
        let Some(mut rx) = self.serving.clone() else {
            return true;
        };
        tokio::time::timeout(limit, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops accepting, lets in-flight RPCs finish, and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for GreeterBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub mod interop;
