//! Serving status (gRFC A36): a server serves only while it has a valid Listener.

/// Whether an xDS-managed server is serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServingStatus {
    /// A valid Listener is in force; connections are accepted.
    Serving,
    /// No valid Listener (not received yet, deleted, or unusable): connections are closed.
    NotServing {
        /// Why.
        reason: String,
    },
}

impl ServingStatus {
    /// Whether the server is serving.
    pub fn is_serving(&self) -> bool {
        matches!(self, ServingStatus::Serving)
    }
}
