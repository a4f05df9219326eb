//! Endpoint connections: one HTTP/2 connection per endpoint, reconnecting.
