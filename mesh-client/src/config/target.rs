//! The complete configuration of one target (gRFC A74; aggregate clusters per A37, A75).

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
    /// Its endpoints: the EDS ClusterLoadAssignment; for a LOGICAL_DNS cluster, the
    /// resolved addresses as one priority and one locality (gRFC A37); for an aggregate
    /// cluster, every leaf's priorities concatenated in order (for display: pools are built
    /// from [`Self::leaves`]).
    pub endpoints: Arc<ClusterLoadAssignment>,
    /// For an aggregate cluster (gRFC A37, A75): its leaf (EDS and LOGICAL_DNS) clusters in
    /// priority order, depth first, each once, each with its own policy and endpoints.
    /// Empty for any other cluster.
    pub leaves: Vec<ClusterConfig>,
}

impl ClusterConfig {
    /// The clusters whose endpoints are picked from: the leaves of an aggregate cluster,
    /// else the cluster itself.
    pub fn leaf_clusters(&self) -> &[ClusterConfig] {
        if self.leaves.is_empty() {
            std::slice::from_ref(self)
        } else {
            &self.leaves
        }
    }
}
