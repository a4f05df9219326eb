//! xDS-managed servers (gRFC A36, A39, A41).
//!
//! A tonic service author swaps `tonic::transport::Server::builder()` for
//! [`MeshServer::builder()`]: the server then takes its Listener, routes and authorization
//! policy from the control plane. It serves only while it has a valid Listener
//! ([`ServingStatus`], reflected by the `grpc.health.v1` service), matches each connection
//! to a filter chain, refuses non-canonical paths, applies RBAC (with shadow rules as a dry
//! run), and hands handlers the caller's [`PeerIdentity`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_server::MeshServer;
//! use xds_proto::helloworld::greeter_server::GreeterServer;
//! # #[derive(Default)] struct MyGreeter;
//! # #[tonic::async_trait]
//! # impl xds_proto::helloworld::greeter_server::Greeter for MyGreeter {
//! #     async fn say_hello(&self, r: tonic::Request<xds_proto::helloworld::HelloRequest>)
//! #         -> Result<tonic::Response<xds_proto::helloworld::HelloReply>, tonic::Status> { todo!() }
//! # }
//! MeshServer::builder()
//!     .add_service(GreeterServer::new(MyGreeter::default()))
//!     .serve("0.0.0.0:8080".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```

mod expiry;
mod health;
mod identity;
mod limits;
mod path;
mod preface;
mod request;
mod server;
mod stats;
mod status;

pub use health::MeshHealth;
pub use identity::PeerIdentity;
pub use limits::Http2Limits;
pub use path::{PathError, check_canonical_path};
pub use server::{MeshServer, MeshServerBuilder, MeshServerError};
pub use stats::{ServerStats, StatsSnapshot};
pub use status::ServingStatus;
