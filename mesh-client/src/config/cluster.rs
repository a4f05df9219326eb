//! Clusters (CDS resources, gRFC A27/A28; TLS per gRFC A29; LB policies per A42, A48, A52).

use std::time::Duration;

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
    /// `circuit_breakers.thresholds[DEFAULT].retry_budget`, if set; otherwise the channel's
    /// default budget applies.
    pub retry_budget: Option<RetryBudgetConfig>,
    /// `transport_socket` (gRFC A29): TLS to the cluster's endpoints; `None`: plaintext.
    pub tls: Option<UpstreamTls>,
}

/// A retry budget: retries may add at most `ratio` of the cluster's recent requests, plus a
/// floor of `min_retries_per_second` (Finagle's and linkerd2-proxy's budget; Envoy's
/// `retry_budget.budget_percent` sets the ratio).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries allowed per original request, in `0.0..=1.0` (Envoy's default: 20 %).
    pub ratio: f64,
    /// Retries always allowed per second, whatever the request rate.
    pub min_retries_per_second: u32,
    /// How long deposits count.
    pub ttl: Duration,
}

impl Default for RetryBudgetConfig {
    /// 20 % of requests, 10 per second, over 10 s (Finagle's defaults).
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: 0.2,
            min_retries_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
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

/// The endpoint-picking policy of a cluster, applied within the highest priority that has a
/// ready endpoint (gRFC A27/A56 priorities; A42, A48, A52 for the policies).
#[derive(Debug, Clone, PartialEq)]
pub enum LbPolicy {
    /// Weighted round robin across endpoints (`ROUND_ROBIN`, `round_robin`, optionally inside
    /// `wrr_locality`).
    RoundRobin,
    /// Power of `choice_count` random choices by fewest requests in flight (gRFC A48).
    LeastRequest {
        /// How many endpoints are sampled per pick, in `2..=10`.
        choice_count: u32,
    },
    /// Consistent hashing on a ring of endpoint hashes (gRFC A42, A76).
    RingHash {
        /// Smallest ring, after the client-side cap.
        min_ring: u64,
        /// Largest ring, after the client-side cap.
        max_ring: u64,
        /// gRFC A76: hash this request header instead of the route's `hash_policy`. Envoy's
        /// `RingHash` has no such field, so xDS leaves it `None` (as gRPC does).
        request_hash_header: Option<String>,
    },
    /// Client-side weighted round robin from ORCA load reports (gRFC A58, A51), inside
    /// `wrr_locality`.
    WeightedRoundRobin(crate::balance::wrr::WrrParams),
    /// Power of two choices by peak-EWMA latency × (in flight + 1), as linkerd2-proxy and
    /// Finagle do it (our extension `type.googleapis.com/mesh.lb.v1.PeakEwma`).
    PeakEwma {
        /// Time constant of the EWMA decay.
        decay: Duration,
        /// RTT assumed for an endpoint until its first response.
        default_rtt: Duration,
    },
}
