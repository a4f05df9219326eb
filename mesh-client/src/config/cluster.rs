//! Clusters (CDS resources, gRFC A27/A28; TLS per gRFC A29).

use super::UpstreamTls;

/// A validated Cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// The resource name, e.g. `outbound|8080||greeter.default`.
    pub name: String,
    /// How endpoints are discovered.
    pub kind: ClusterKind,
    /// The load-balancing policy for endpoints within a locality.
    pub lb_policy: LbPolicy,
    /// `circuit_breakers.thresholds[DEFAULT].max_requests` (gRFC A32), if set.
    pub max_requests: Option<u32>,
    /// `transport_socket` (gRFC A29): TLS to the cluster's endpoints; `None`: plaintext.
    pub tls: Option<UpstreamTls>,
}

/// How a cluster's endpoints are discovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterKind {
    /// Endpoints come from EDS over ADS.
    Eds {
        /// The ClusterLoadAssignment to subscribe to: `eds_cluster_config.service_name`, or
        /// the cluster name when that is empty.
        service_name: String,
    },
}

/// Endpoint load-balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    /// Weighted round robin across endpoints (`ROUND_ROBIN`).
    RoundRobin,
}
