//! Endpoints (EDS ClusterLoadAssignment resources, gRFC A27).

use std::net::SocketAddr;

/// A validated ClusterLoadAssignment.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterLoadAssignment {
    /// The resource name (a cluster's EDS service name).
    pub cluster_name: String,
    /// Localities, in the order received; each knows its priority.
    pub localities: Vec<LocalityEndpoints>,
    /// `policy.overprovisioning_factor` in percent (Envoy's gentle failover, see
    /// [`crate::balance`]); `None` when unset or 0: gRPC's all-or-nothing priority failover
    /// (Envoy's default of 140 is not assumed, as gRPC clients ignore the field).
    pub overprovisioning_factor: Option<u32>,
}

/// The endpoints of one locality at one priority.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalityEndpoints {
    /// Region / zone / sub-zone.
    pub locality: LocalityName,
    /// `load_balancing_weight` (must be > 0; localities with weight 0 are dropped).
    pub weight: u32,
    /// Priority (0 is the highest).
    pub priority: u32,
    /// The endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// A locality's name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LocalityName {
    /// Region.
    pub region: String,
    /// Zone.
    pub zone: String,
    /// Sub-zone.
    pub sub_zone: String,
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Its address.
    pub address: SocketAddr,
    /// `load_balancing_weight`, 1 when unset.
    pub weight: u32,
    /// Health as reported by the control plane.
    pub health: HealthStatus,
    /// gRFC A76: the ring-hash key, from `metadata.filter_metadata["envoy.lb"].hash_key`;
    /// `None`: the address is hashed.
    pub hash_key: Option<String>,
}

/// Endpoint health status from EDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// `UNKNOWN`: used.
    Unknown,
    /// `HEALTHY`: used.
    Healthy,
    /// `UNHEALTHY`: not used.
    Unhealthy,
    /// `DRAINING`: not used.
    Draining,
    /// `TIMEOUT`: not used.
    Timeout,
    /// `DEGRADED`: not used.
    Degraded,
}

impl HealthStatus {
    /// Whether gRPC sends traffic to an endpoint in this state (only UNKNOWN and HEALTHY).
    pub fn is_usable(self) -> bool {
        matches!(self, HealthStatus::Unknown | HealthStatus::Healthy)
    }
}
