//! Client-side listeners: an `api_listener` holding an HttpConnectionManager (gRFC A27).

use std::sync::Arc;
use std::time::Duration;

use super::{FaultInjection, Rbac, RouteConfig};

/// A validated client-side Listener (LDS resource).
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    /// The resource name, e.g. `greeter.default:8080`.
    pub name: String,
    /// The HttpConnectionManager from `api_listener`.
    pub http: HttpConnectionManager,
}

/// The parts of an HttpConnectionManager that gRPC clients use.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConnectionManager {
    /// Where the routes come from.
    pub route_source: RouteSource,
    /// HTTP filters in order; the last one is always the router.
    pub http_filters: Vec<HttpFilter>,
    /// `common_http_protocol_options.max_stream_duration`, the default call timeout (gRFC A31).
    pub max_stream_duration: Option<Duration>,
}

/// How an HttpConnectionManager gets its route configuration.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteSource {
    /// `rds` with an `ads` config source: the RouteConfiguration of this name.
    Rds(String),
    /// `route_config`: inline.
    Inline(Arc<RouteConfig>),
}

/// One HTTP filter of an HttpConnectionManager.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFilter {
    /// The filter's instance name.
    pub name: String,
    /// The type URL of its typed config (after unwrapping TypedStruct).
    pub type_url: String,
    /// Its validated config.
    pub config: HttpFilterConfig,
}

/// The validated config of an HTTP filter we implement (gRFC A39).
#[derive(Debug, Clone, PartialEq)]
pub enum HttpFilterConfig {
    /// `envoy.extensions.filters.http.router.v3.Router` (the terminal filter).
    Router,
    /// `envoy.extensions.filters.http.rbac.v3.RBAC` (server side, gRFC A41).
    Rbac(Arc<Rbac>),
    /// `envoy.extensions.filters.http.fault.v3.HTTPFault` (client side, gRFC A33).
    Fault(Arc<FaultInjection>),
}
