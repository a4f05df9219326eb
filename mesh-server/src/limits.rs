//! HTTP/2 limits, always set explicitly.
//!
//! tonic's server defaults leave concurrent streams and locally reset streams unbounded;
//! a server in a mesh takes traffic from every caller, so each limit has a value here and
//! can be changed on the builder.

use std::time::Duration;

/// The HTTP/2 and connection limits of a [`crate::MeshServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http2Limits {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` advertised to clients.
    pub max_concurrent_streams: u32,
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` advertised to clients (bytes).
    pub max_header_list_size: u32,
    /// `SETTINGS_MAX_FRAME_SIZE` (bytes).
    pub max_frame_size: u32,
    /// `SETTINGS_INITIAL_WINDOW_SIZE` for each stream (bytes).
    pub initial_stream_window_size: u32,
    /// Initial connection-level flow-control window (bytes).
    pub initial_connection_window_size: u32,
    /// Streams reset by the client before the server saw them, kept before the
    /// connection is closed (the "rapid reset" guard, CVE-2023-44487).
    pub max_pending_accept_reset_streams: usize,
    /// Streams the server itself reset because of protocol errors, before closing the
    /// connection.
    pub max_local_error_reset_streams: usize,
    /// Interval of server keepalive pings (`None`: no pings).
    pub keepalive_interval: Option<Duration>,
    /// How long to wait for a keepalive ping's ack.
    pub keepalive_timeout: Duration,
    /// Connections older than this are drained with GOAWAY (`None`: no limit). This is what
    /// moves long-lived clients onto new configuration and new certificates.
    pub max_connection_age: Option<Duration>,
    /// How long a draining connection may keep running its in-flight RPCs.
    pub drain_grace: Duration,
}

impl Default for Http2Limits {
    fn default() -> Self {
        Http2Limits {
            max_concurrent_streams: 1024,
            max_header_list_size: 16 * 1024,
            max_frame_size: 16 * 1024,
            initial_stream_window_size: 1024 * 1024,
            initial_connection_window_size: 2 * 1024 * 1024,
            max_pending_accept_reset_streams: 32,
            max_local_error_reset_streams: 256,
            keepalive_interval: Some(Duration::from_secs(2 * 60 * 60)),
            keepalive_timeout: Duration::from_secs(20),
            max_connection_age: Some(Duration::from_secs(30 * 60)),
            drain_grace: Duration::from_secs(30),
        }
    }
}

impl Http2Limits {
    pub(crate) fn builder(
        &self,
    ) -> hyper::server::conn::http2::Builder<hyper_util::rt::TokioExecutor> {
        let mut b = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
        b.timer(hyper_util::rt::TokioTimer::new())
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_header_list_size(self.max_header_list_size)
            .max_frame_size(self.max_frame_size)
            .initial_stream_window_size(self.initial_stream_window_size)
            .initial_connection_window_size(self.initial_connection_window_size)
            .max_pending_accept_reset_streams(self.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(self.max_local_error_reset_streams)
            .keep_alive_interval(self.keepalive_interval)
            .keep_alive_timeout(self.keepalive_timeout);
        b
    }
}
