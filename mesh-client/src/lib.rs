//! The mesh runtime and its client side.
//!
//! `mesh-client` subscribes to the mesh control plane over xDS (Envoy's ADS protocol, v3),
//! validates what it receives into a protobuf-free model ([`config`]), and serves tonic and
//! hyper clients through [`MeshChannel`], a `tower::Service` that routes, balances and
//! connects every request according to that model, with no proxy hop.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_client::MeshChannel;
//! use xds_proto::helloworld::{greeter_client::GreeterClient, HelloRequest};
//!
//! // Reads the bootstrap named by GRPC_XDS_BOOTSTRAP, exactly like gRPC.
//! let channel = MeshChannel::builder("xds:///greeter.default:8080").connect().await?;
//! let mut client = GreeterClient::new(channel);
//! let reply = client.say_hello(HelloRequest { name: "mesh".into() }).await?;
//! println!("{}", reply.into_inner().message);
//! # Ok(()) }
//! ```

pub mod admin;
pub mod balance;
pub mod bootstrap;
mod channel;
pub mod config;
pub mod identity;
pub mod resilience;
pub mod route;
pub mod telemetry;
pub mod transport;
pub mod xds;

pub use channel::{MeshChannel, MeshChannelBuilder, MeshChannelError, ResponseBody};
