//! Clusters (CDS resources, gRFC A27/A28; TLS per gRFC A29; LB policies per A42, A48, A52;
//! outlier detection per A50; aggregate and LOGICAL_DNS clusters per A37, A75).

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
    /// `outlier_detection` (gRFC A50); `None` when the field is unset.
    pub outlier_detection: Option<OutlierDetection>,
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
    /// `type: LOGICAL_DNS` (gRFC A37): the endpoints are the addresses `host` resolves to,
    /// as one priority and one locality, picked with `pick_first` semantics.
    LogicalDns {
        /// The host name (or address literal) of the cluster's single `load_assignment`
        /// endpoint.
        host: String,
        /// Its port.
        port: u16,
    },
    /// `cluster_type: envoy.clusters.aggregate` (gRFC A37, A75): the priority-ordered list of
    /// underlying clusters, never empty. The aggregate's own `lb_policy` is ignored (A75):
    /// each underlying cluster keeps its own policy, outlier detection and TLS.
    Aggregate {
        /// The underlying clusters, highest priority first.
        clusters: Vec<String>,
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
    /// The first ready endpoint in address order (gRPC's `pick_first`): what a LOGICAL_DNS
    /// cluster's priority uses whatever its `lb_policy` says (gRFC A37). Never produced by
    /// CDS validation.
    PickFirst,
    /// Power of two choices by peak-EWMA latency × (in flight + 1), as linkerd2-proxy and
    /// Finagle do it (our extension `type.googleapis.com/mesh.lb.v1.PeakEwma`).
    PeakEwma {
        /// Time constant of the EWMA decay.
        decay: Duration,
        /// RTT assumed for an endpoint until its first response.
        default_rtt: Duration,
    },
}

// ---- Outlier detection (gRFC A50) ----

/// `Cluster.outlier_detection` as gRFC A50 uses it: the interval sweep, ejection times and
/// the two supported algorithms (success rate, failure percentage). Every other Envoy field
/// (consecutive 5xx, gateway failures, local-origin splitting) is ignored, as in gRPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Time between ejection sweeps (default 10 s).
    pub interval: Duration,
    /// Base ejection time, multiplied by the address's ejection count (default 30 s).
    pub base_ejection_time: Duration,
    /// Longest ejection; the effective cap is `max(base_ejection_time, max_ejection_time)`
    /// (default 300 s).
    pub max_ejection_time: Duration,
    /// The largest share (%) of the cluster's addresses ejected at once (default 10; at least
    /// one address can always be ejected).
    pub max_ejection_percent: u32,
    /// Success-rate ejection; `None` when `enforcing_success_rate` is 0.
    pub success_rate: Option<SuccessRateEjection>,
    /// Failure-percentage ejection; `None` when `enforcing_failure_percentage` is 0 or unset.
    pub failure_percentage: Option<FailurePercentageEjection>,
}

impl OutlierDetection {
    /// Whether any algorithm is enabled. With neither, calls are not counted and no timer
    /// runs (A50's no-op config).
    pub fn is_enabled(&self) -> bool {
        self.success_rate.is_some() || self.failure_percentage.is_some()
    }
}

/// A50 success-rate ejection: an address whose success rate is below
/// `mean - stdev × stdev_factor / 1000` of the addresses with enough requests is ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuccessRateEjection {
    /// The stdev factor × 1000 (`success_rate_stdev_factor`, default 1900, i.e. 1.9).
    pub stdev_factor: u32,
    /// Chance (%) that a detected outlier is ejected (`enforcing_success_rate`, default 100).
    pub enforcement_percentage: u32,
    /// Addresses with enough requests needed to run (`success_rate_minimum_hosts`, default 5).
    pub minimum_hosts: u32,
    /// Requests in an interval for an address to count (`success_rate_request_volume`,
    /// default 100).
    pub request_volume: u32,
}

/// A50 failure-percentage ejection: an address whose failure percentage is above
/// `threshold` is ejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePercentageEjection {
    /// Failure percentage above which an address is an outlier
    /// (`failure_percentage_threshold`, default 85).
    pub threshold: u32,
    /// Chance (%) that a detected outlier is ejected (`enforcing_failure_percentage`).
    pub enforcement_percentage: u32,
    /// Addresses the cluster needs for the algorithm to run
    /// (`failure_percentage_minimum_hosts`, default 5).
    pub minimum_hosts: u32,
    /// Requests in an interval for an address to count (`failure_percentage_request_volume`,
    /// default 50).
    pub request_volume: u32,
}
