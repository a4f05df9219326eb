//! Type URLs of the xDS v3 resource types (gRFC A27).

/// `envoy.config.listener.v3.Listener` (LDS).
pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// `envoy.config.route.v3.RouteConfiguration` (RDS).
pub const ROUTE_CONFIGURATION: &str =
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// `envoy.config.cluster.v3.Cluster` (CDS).
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// `envoy.config.endpoint.v3.ClusterLoadAssignment` (EDS).
pub const CLUSTER_LOAD_ASSIGNMENT: &str =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// `envoy.service.discovery.v3.Resource`, the wrapper a server may put around a resource.
pub const RESOURCE_WRAPPER: &str = "type.googleapis.com/envoy.service.discovery.v3.Resource";
/// `envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager`.
pub const HTTP_CONNECTION_MANAGER: &str = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
/// `envoy.extensions.filters.http.router.v3.Router`.
pub const ROUTER: &str = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router";
/// `envoy.extensions.filters.http.rbac.v3.RBAC`.
pub const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
/// `envoy.extensions.filters.http.rbac.v3.RBACPerRoute`.
pub const RBAC_PER_ROUTE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute";
/// `envoy.extensions.filters.http.fault.v3.HTTPFault`.
pub const FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";
/// `envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext`.
pub const UPSTREAM_TLS_CONTEXT: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext";
/// `envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext`.
pub const DOWNSTREAM_TLS_CONTEXT: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext";
/// `udpa.type.v1.TypedStruct`.
pub const UDPA_TYPED_STRUCT: &str = "type.googleapis.com/udpa.type.v1.TypedStruct";
/// `xds.type.v3.TypedStruct`.
pub const XDS_TYPED_STRUCT: &str = "type.googleapis.com/xds.type.v3.TypedStruct";

/// The short name of a resource type for logs and errors (`LDS`, `RDS`, `CDS`, `EDS`).
pub fn short_name(type_url: &str) -> &'static str {
    match type_url {
        LISTENER => "LDS",
        ROUTE_CONFIGURATION => "RDS",
        CLUSTER => "CDS",
        CLUSTER_LOAD_ASSIGNMENT => "EDS",
        _ => "unknown",
    }
}
