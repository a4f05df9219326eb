//! `xds.data.orca.v3.OrcaLoadReport` (gRFC A51), the backend metrics a server sends in the
//! `endpoint-load-metrics-bin` trailer. envoy-types does not generate the `xds.data`
//! protos, so the message is declared here, field for field.

use std::collections::HashMap;

/// The trailer that carries a serialized [`OrcaLoadReport`] (gRFC A51).
pub const ORCA_TRAILER: &str = "endpoint-load-metrics-bin";

/// A per-call or out-of-band load report.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OrcaLoadReport {
    /// CPU utilization, normally in `[0, 1]` (may exceed 1 for burstable CPUs).
    #[prost(double, tag = "1")]
    pub cpu_utilization: f64,
    /// Memory utilization in `[0, 1]`.
    #[prost(double, tag = "2")]
    pub mem_utilization: f64,
    /// Deprecated integer queries per second.
    #[prost(uint64, tag = "3")]
    pub rps: u64,
    /// Per-request costs.
    #[prost(map = "string, double", tag = "4")]
    pub request_cost: HashMap<String, f64>,
    /// Named utilizations in `[0, 1]`.
    #[prost(map = "string, double", tag = "5")]
    pub utilization: HashMap<String, f64>,
    /// Queries per second.
    #[prost(double, tag = "6")]
    pub rps_fractional: f64,
    /// Errors per second.
    #[prost(double, tag = "7")]
    pub eps: f64,
    /// Application-specific metrics.
    #[prost(map = "string, double", tag = "8")]
    pub named_metrics: HashMap<String, f64>,
    /// Application utilization, preferred over `cpu_utilization` when set (gRFC A58).
    #[prost(double, tag = "9")]
    pub application_utilization: f64,
}
