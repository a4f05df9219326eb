//! Per-request route and cluster selection (gRFC A28).
