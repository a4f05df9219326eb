//! HTTP/2 limits, always set explicitly (RFC 9113 SETTINGS and connection lifetime).
//!
//! tonic's server defaults leave concurrent streams and locally reset streams unbounded;
//! a server in a mesh takes traffic from every caller, so each limit has a value here and
//! can be changed on the builder.
//!
//! # Hardened defaults
//!
//! | Limit | Default | Guards against |
//! |---|---|---|
//! | `max_concurrent_streams` | 1024 | stream floods |
//! | `max_header_list_size` | 16 KiB | header-list floods (answered 431, then GOAWAY) |
//! | `max_frame_size` | 16 KiB | oversized frames |
//! | `initial_stream_window_size` / `_connection_` | 1 MiB / 2 MiB | DATA beyond the window (GOAWAY `FLOW_CONTROL_ERROR`) |
//! | `max_pending_accept_reset_streams` | 32 | rapid reset, CVE-2023-44487 (GOAWAY `ENHANCE_YOUR_CALM`) |
//! | `max_local_error_reset_streams` | 256 | peers provoking endless stream errors |
//! | `keepalive_interval` / `_timeout` | 2 h / 20 s | dead peers |
//! | `max_connection_age` / `drain_grace` | 30 min / 30 s | connections pinned to old config or certificates |
//! | `handshake_timeout` | 10 s | slowloris: connections that never finish TLS or the preface |
//!
//! CONTINUATION floods (CVE-2024-27316 class) are cut off by the HTTP/2 codec itself
//! (GOAWAY `ENHANCE_YOUR_CALM` once a header block exceeds what `max_header_list_size`
//! allows); gRPC messages are capped by tonic's 4 MiB `max_decoding_message_size`
//! (`OUT_OF_RANGE`). `tests/tests/e2e_h2_abuse.rs` runs each attack against these defaults.

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
    /// How long a new connection has, from accept, to finish its TLS handshake (if any)
    /// and send the HTTP/2 client preface and the header of its first frame; a connection
    /// that has not is closed. This is the slowloris guard: without it a peer that opens
    /// a TCP connection and sends a byte or two holds the connection until
    /// `max_connection_age`.
    pub handshake_timeout: Duration,
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
            handshake_timeout: Duration::from_secs(10),
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
