//! MeshChannel: the drop-in tonic channel and its builder.

/// A channel to an xDS-managed target (in progress).
#[derive(Debug, Clone)]
pub struct MeshChannel {}

/// Builds a [`MeshChannel`].
#[derive(Debug)]
pub struct MeshChannelBuilder {}

/// Why a channel could not be built.
#[derive(Debug, thiserror::Error)]
pub enum MeshChannelError {
    /// The bootstrap could not be read.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}
