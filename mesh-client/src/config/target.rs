//! The complete configuration of one target (gRFC A74).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Cluster, ClusterLoadAssignment, Listener, RouteConfig};

/// One target's whole tree, published as a unit: a target never sees a half-updated tree.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// The Listener.
    pub listener: Arc<Listener>,
    /// Its route configuration (from RDS or inline).
    pub route_config: Arc<RouteConfig>,
    /// Every cluster the routes of the selected virtual host reference, by name. A cluster
    /// whose resources are missing or invalid has an error, which fails only the RPCs
    /// routed to it.
    pub clusters: BTreeMap<String, Result<ClusterConfig, String>>,
}

/// A cluster together with its endpoints.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The Cluster.
    pub cluster: Arc<Cluster>,
    /// Its ClusterLoadAssignment.
    pub endpoints: Arc<ClusterLoadAssignment>,
}
