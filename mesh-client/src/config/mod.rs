//! The validated, protobuf-free configuration model.
//!
//! Everything downstream of xDS validation ([`crate::xds::resource`]) speaks only these
//! types: they are cheap to share (`Arc`), immutable once built, and carry no protobuf. A
//! [`TargetConfig`] is the complete tree one channel needs (gRFC A74): its listener, its
//! route configuration and every cluster its routes can reach, with their endpoints.

mod cidr;
mod cluster;
mod endpoint;
mod fault;
mod listener;
mod rbac;
mod route;
mod server_listener;
mod target;
mod tls;

pub use cidr::{Cidr, PrefixTooLong};
pub use cluster::{Cluster, ClusterKind, LbPolicy, RetryBudgetConfig};
pub use cluster::{FailurePercentageEjection, OutlierDetection, SuccessRateEjection};
pub use endpoint::{
    ClusterLoadAssignment, Endpoint, HealthStatus, LocalityEndpoints, LocalityName,
};
pub use fault::{
    AbortKind, DelayKind, FaultAbort, FaultDelay, FaultInjection, Fraction,
    grpc_code_for_http_status,
};
pub use listener::HttpFilterConfig;
pub use listener::{HttpConnectionManager, HttpFilter, Listener, RouteSource};
pub use rbac::{
    Decision, PeerCertInfo, PeerSecurity, Permission, Policy, Principal, Rbac, RbacAction,
    RbacRules, RequestInfo, ShadowDecision,
};
pub(crate) use route::joined_header_value;
pub use route::{FilterOverride, FilterOverrides};
pub use route::{
    HashPolicy, HashPolicyKind, HeaderMatchKind, HeaderMatcher, PathMatcher, RetryOn, RetryPolicy,
    Route, RouteAction, RouteConfig, RouteMatch, StringMatchKind, StringMatcher, VirtualHost,
    WeightedCluster,
};
pub use server_listener::{
    ConnectionInfo, FilterChain, FilterChainMatch, RAW_BUFFER, ServerListener, SourceType,
    TransportSocket,
};
pub use target::{ClusterConfig, TargetConfig};
pub use tls::{CertProviderInstance, DownstreamTls, SanMatcher, SanType, UpstreamTls};
