//! The xDS client: ADS protocol state, transport, resource validation, cache and watchers,
//! and the dependency manager that turns LDS→RDS→CDS→EDS into one [`crate::config::TargetConfig`].
//!
//! - [`protocol`]: the sans-IO ADS state machine (gRFC A27, A46, A53, A57).
//! - [`client`]: [`XdsClient`], the ADS stream task, the resource cache and [`Subscription`]s.
//! - [`deps`]: [`TargetWatch`], one listener's whole tree published at once (gRFC A74).
//! - [`server_watch`]: [`ServerWatch`], one server Listener and its route configurations (gRFC A36).
//! - [`resource`]: decoding and validation of each resource type.

pub mod client;
pub mod deps;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod persist;
pub mod protocol;
pub mod resource;
pub mod server_watch;
#[cfg(test)]
pub(crate) mod test_server;
mod transport;

pub use client::{
    ResourceDump, ResourceState, ResourceStatus, Subscription, UpdateError, XdsClient, live_clients,
};
pub use deps::{TargetState, TargetWatch};
pub use server_watch::{ServerConfig, ServerState, ServerWatch};

/// Why the xDS client could not be built or stopped working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XdsError {
    /// The bootstrap lists no xDS server.
    #[error("the bootstrap has no xds_servers: add one (gRFC A27)")]
    NoXdsServers,
    /// A `server_uri` this client cannot use.
    #[error("xDS server_uri {uri:?}: {reason}")]
    UnsupportedServerUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `channel_creds` this client cannot use yet.
    #[error("xDS channel_creds {0}")]
    UnsupportedChannelCreds(String),
    /// Connecting to the xDS server failed.
    #[error("xDS server {server}: {message}")]
    Transport {
        /// The `server_uri`.
        server: String,
        /// The cause.
        message: String,
    },
    /// The client was created outside a tokio runtime.
    #[error("the xDS client must be created inside a tokio runtime")]
    NoRuntime,
    /// The watched state is gone (the client task stopped).
    #[error("the xDS client has shut down")]
    Closed,
}
