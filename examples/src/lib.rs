//! Shared pieces of the examples: the greeter service implementation and a helper that
//! runs it on a loopback listener.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};
use xds_proto::helloworld::greeter_server::{Greeter, GreeterServer};
use xds_proto::helloworld::{HelloReply, HelloRequest};

/// A greeter that says which backend answered: `Hello NAME from ID`.
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
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name} from {}", self.id),
        }))
    }
}

/// The backend id in a reply produced by [`NamedGreeter`].
pub fn backend_of(reply: &str) -> &str {
    reply.rsplit(" from ").next().unwrap_or(reply)
}

/// A greeter server running in the background on `addr` (port 0 picks one).
#[derive(Debug)]
pub struct GreeterBackend {
    /// The bound address.
    pub addr: SocketAddr,
    /// The backend id.
    pub id: String,
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
            shutdown: Some(tx),
            task,
        })
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
