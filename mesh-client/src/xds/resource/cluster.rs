//! CDS: validation of `Cluster` resources into [`config::Cluster`] (gRFC A27, A32, A37, A42,
//! A48, A52).
//!
//! Supported cluster types: EDS (the config source must be `ads` or `self`); LOGICAL_DNS
//! (A37: `load_assignment` with exactly one locality holding exactly one endpoint whose
//! socket address has a host, a port and no custom resolver, grpc-go's messages); and
//! `cluster_type` `envoy.clusters.aggregate` (A37: its `typed_config` must be an
//! `envoy.extensions.clusters.aggregate.v3.ClusterConfig` with a non-empty `clusters` list;
//! A75: the aggregate's own LB policy is ignored, not validated). Every other type (STATIC,
//! STRICT_DNS, ORIGINAL_DST, other custom types) is NACKed with "unsupported cluster type". The endpoint policy comes from `load_balancing_policy` when it is set
//! (A52: the first supported entry wins, NACK when none is supported or the chosen one is
//! invalid; nesting deeper than 16 NACKs), else from `lb_policy` with its `*_lb_config`:
//! ROUND_ROBIN; LEAST_REQUEST (A48: `choice_count` ≥ 2, capped at 10); RING_HASH (A42:
//! XX_HASH only, ring sizes ≤ 8M and min ≤ max, then capped at 4096). Beyond gRPC, our
//! typed extension `type.googleapis.com/mesh.lb.v1.PeakEwma` selects peak-EWMA P2C.
//! `client_side_weighted_round_robin` (A58) is not supported yet: inside
//! `load_balancing_policy` it is skipped like any unknown type. `lrs_server` must be `self`.
//! `transport_socket` (A29) must be an `UpstreamTlsContext`, validated by [`super::tls`];
//! `transport_socket_matches` NACKs (A29: not supported). `outlier_detection` follows A50
//! (`outlier_detection()`: durations valid and non-negative, percentages at most 100).

use prost::{Message, Name};
use xds_proto::envoy::envoy::config::cluster::v3::cluster::{
    LbConfig, ring_hash_lb_config::HashFunction as LegacyHashFunction,
};
use xds_proto::envoy::envoy::config::cluster::v3::{
    LoadBalancingPolicy,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy as LbPolicyProto},
};
use xds_proto::envoy::envoy::config::core::v3::{
    RoutingPriority, address::Address as AddressKind, config_source::ConfigSourceSpecifier,
    socket_address::PortSpecifier,
};
use xds_proto::envoy::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use xds_proto::envoy::envoy::extensions::clusters::aggregate::v3::ClusterConfig as AggregateClusterConfig;
use xds_proto::envoy::envoy::extensions::load_balancing_policies::{
    client_side_weighted_round_robin::v3::ClientSideWeightedRoundRobin,
    least_request::v3::LeastRequest,
    ring_hash::v3::{RingHash, ring_hash::HashFunction},
    round_robin::v3::RoundRobin,
    wrr_locality::v3::WrrLocality,
};

use std::time::Duration;

use super::ValidationContext;
use crate::balance::load::{DEFAULT_EWMA_DECAY, DEFAULT_RTT};
use crate::balance::ring_hash::{
    DEFAULT_MAX_RING, DEFAULT_MIN_RING, RING_SIZE_CAP, RING_SIZE_LIMIT,
};
use crate::balance::{DEFAULT_CHOICE_COUNT, MAX_CHOICE_COUNT};
use crate::config::{self, ClusterKind, LbPolicy};

/// The protobuf message validated here.
pub use xds_proto::envoy::envoy::config::cluster::v3::Cluster as ClusterProto;
use xds_proto::envoy::envoy::config::cluster::v3::OutlierDetection as OutlierDetectionProto;

/// gRFC A37: the custom cluster type of aggregate clusters.
const AGGREGATE_CLUSTER: &str = "envoy.clusters.aggregate";

/// A52: the recursion limit of LB policy conversion.
const MAX_LB_POLICY_DEPTH: usize = 16;

/// Validates a Cluster. Errors are field paths relative to the resource. `ctx` carries the
/// bootstrap's certificate provider instances (A29).
pub fn validate(c: &ClusterProto, ctx: &ValidationContext) -> Result<config::Cluster, String> {
    let kind = match &c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) if *t == DiscoveryType::Eds as i32 => {
            let eds = c.eds_cluster_config.as_ref();
            if !super::is_ads_or_self(eds.and_then(|e| e.eds_config.as_ref())) {
                return Err("eds_cluster_config.eds_config: must be ads or self".into());
            }
            let service_name = eds.map(|e| e.service_name.clone()).unwrap_or_default();
            // grpc-go: an xdstp:// cluster name requires an explicit service name.
            if service_name.is_empty() && c.name.starts_with("xdstp:") {
                return Err(
                    "eds_cluster_config.service_name: required with an xdstp: cluster name".into(),
                );
            }
            ClusterKind::Eds {
                service_name: if service_name.is_empty() {
                    c.name.clone()
                } else {
                    service_name
                },
            }
        }
        Some(ClusterDiscoveryType::Type(t)) if *t == DiscoveryType::LogicalDns as i32 => {
            let (host, port) = logical_dns_address(c).map_err(|e| format!("load_assignment{e}"))?;
            ClusterKind::LogicalDns { host, port }
        }
        Some(ClusterDiscoveryType::Type(t)) => {
            let name = DiscoveryType::try_from(*t)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| t.to_string());
            return Err(format!("type: unsupported cluster type {name}"));
        }
        Some(ClusterDiscoveryType::ClusterType(custom)) if custom.name == AGGREGATE_CLUSTER => {
            let clusters = aggregate_clusters(custom.typed_config.as_ref())
                .map_err(|e| format!("cluster_type.typed_config{e}"))?;
            ClusterKind::Aggregate { clusters }
        }
        Some(ClusterDiscoveryType::ClusterType(custom)) => {
            return Err(format!(
                "cluster_type: unsupported cluster type {:?}",
                custom.name
            ));
        }
        // An unset oneof reads as type STATIC.
        None => return Err("type: unsupported cluster type STATIC".into()),
    };
    let lb_policy = match (&kind, &c.load_balancing_policy) {
        // A75: an aggregate cluster's policy is ignored (Envoy requires CLUSTER_PROVIDED);
        // each underlying cluster is picked from with its own policy.
        (ClusterKind::Aggregate { .. }, _) => LbPolicy::RoundRobin,
        (_, Some(p)) => {
            load_balancing_policy(p, 0).map_err(|e| format!("load_balancing_policy{e}"))?
        }
        (_, None) => legacy_lb_policy(c)?,
    };
    // grpc-go: LRS must report over the ADS server's channel.
    if let Some(lrs) = &c.lrs_server
        && !matches!(
            lrs.config_source_specifier,
            Some(ConfigSourceSpecifier::Self_(_))
        )
    {
        return Err("lrs_server: must be self".into());
    }
    if !c.transport_socket_matches.is_empty() {
        return Err("transport_socket_matches: unsupported".into());
    }
    let tls = match &c.transport_socket {
        Some(ts) => {
            Some(super::tls::upstream(ts, ctx).map_err(|e| format!("transport_socket{e}"))?)
        }
        None => None,
    };
    // A32: the DEFAULT-priority threshold's max_requests (1024 applies when unset).
    let default_threshold = c.circuit_breakers.as_ref().and_then(|cb| {
        cb.thresholds
            .iter()
            .find(|t| t.priority == RoutingPriority::Default as i32)
    });
    let max_requests = default_threshold.and_then(|t| t.max_requests.map(|v| v.value));
    let retry_budget = default_threshold
        .and_then(|t| t.retry_budget.as_ref())
        .map(retry_budget)
        .transpose()
        .map_err(|e| format!("circuit_breakers.thresholds[DEFAULT].retry_budget.{e}"))?;
    let outlier_detection = match &c.outlier_detection {
        Some(od) => Some(outlier_detection(od).map_err(|e| format!("outlier_detection.{e}"))?),
        None => None,
    };
    Ok(config::Cluster {
        name: c.name.clone(),
        kind,
        lb_policy,
        max_requests,
        retry_budget,
        tls,
        outlier_detection,
    })
}

/// gRFC A37 as grpc-go reads it: the aggregate `ClusterConfig` in `cluster_type.typed_config`
/// must decode and list at least one cluster. Errors are relative to `typed_config`.
fn aggregate_clusters(any: Option<&xds_proto::protobuf::Any>) -> Result<Vec<String>, String> {
    let Some(any) = any else {
        return Err(
            ": not set (an envoy.extensions.clusters.aggregate.v3.ClusterConfig is required)"
                .into(),
        );
    };
    let want = AggregateClusterConfig::type_url();
    if any.type_url != want {
        return Err(format!(
            ": unexpected type {:?} (want {want:?})",
            any.type_url
        ));
    }
    let cfg = AggregateClusterConfig::decode(any.value.as_slice())
        .map_err(|e| format!(": cannot decode ClusterConfig: {e}"))?;
    if cfg.clusters.is_empty() {
        return Err(".clusters: aggregate cluster has empty clusters field".into());
    }
    Ok(cfg.clusters)
}

/// gRFC A37 as grpc-go reads a LOGICAL_DNS cluster: `load_assignment` has exactly one
/// locality with exactly one endpoint whose address is a socket address with a host, a
/// port, and no custom resolver. Errors are relative to `load_assignment`.
fn logical_dns_address(c: &ClusterProto) -> Result<(String, u16), String> {
    let Some(la) = &c.load_assignment else {
        return Err(": not present for LOGICAL_DNS cluster".into());
    };
    let [locality] = la.endpoints.as_slice() else {
        return Err(format!(
            ".endpoints: LOGICAL_DNS cluster must have exactly one locality, got {}",
            la.endpoints.len()
        ));
    };
    let [lb_endpoint] = locality.lb_endpoints.as_slice() else {
        return Err(format!(
            ".endpoints[0].lb_endpoints: locality for LOGICAL_DNS cluster must have exactly one endpoint, got {}",
            locality.lb_endpoints.len()
        ));
    };
    let at = ".endpoints[0].lb_endpoints[0]";
    let Some(HostIdentifier::Endpoint(endpoint)) = &lb_endpoint.host_identifier else {
        return Err(format!(
            "{at}.endpoint: endpoint for LOGICAL_DNS cluster not set"
        ));
    };
    let Some(AddressKind::SocketAddress(sa)) =
        endpoint.address.as_ref().and_then(|a| a.address.as_ref())
    else {
        return Err(format!(
            "{at}.endpoint.address.socket_address: socket address for endpoint for LOGICAL_DNS cluster not set"
        ));
    };
    let at = format!("{at}.endpoint.address.socket_address");
    if !sa.resolver_name.is_empty() {
        return Err(format!(
            "{at}.resolver_name: unexpected custom resolver name {:?}",
            sa.resolver_name
        ));
    }
    if sa.address.is_empty() {
        return Err(format!(
            "{at}.address: host for endpoint for LOGICAL_DNS cluster not set"
        ));
    }
    let port = match sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) if p != 0 => p,
        _ => {
            return Err(format!(
                "{at}.port_value: port for endpoint for LOGICAL_DNS cluster not set"
            ));
        }
    };
    let port =
        u16::try_from(port).map_err(|_| format!("{at}.port_value: {port} is not a valid port"))?;
    Ok((sa.address.clone(), port))
}

/// Envoy's `retry_budget`, read as our ratio budget: `budget_percent` (default 20 %) is the
/// ratio, `budget_interval` (default and 0: 10 s) the window, `min_retry_concurrency`
/// (default 3) the retries per second always allowed. gRPC ignores retry budgets; since we
/// enforce them, an out-of-range percentage is NACKed rather than guessed at.
fn retry_budget(
    b: &xds_proto::envoy::envoy::config::cluster::v3::circuit_breakers::thresholds::RetryBudget,
) -> Result<config::RetryBudgetConfig, String> {
    let default = config::RetryBudgetConfig::default();
    let ratio = match &b.budget_percent {
        None => default.ratio,
        Some(p) if (0.0..=100.0).contains(&p.value) => p.value / 100.0,
        Some(p) => return Err(format!("budget_percent: {} is not in [0, 100]", p.value)),
    };
    let ttl = match &b.budget_interval {
        None => default.ttl,
        Some(d) => {
            let d = super::duration(d).map_err(|e| format!("budget_interval: {e}"))?;
            if d.is_zero() { default.ttl } else { d }
        }
    };
    Ok(config::RetryBudgetConfig {
        ratio,
        min_retries_per_second: b.min_retry_concurrency.map(|v| v.value).unwrap_or(3),
        ttl,
    })
}

/// gRFC A58 as grpc-go reads it: unset durations take the defaults (blackout 10 s,
/// expiration 3 min, update period 1 s, raised to at least 100 ms); a negative
/// `error_utilization_penalty` NACKs (default 1.0). Out-of-band reporting is not
/// implemented: `enable_oob_load_report` is ignored and per-call reports are used.
fn client_side_wrr(w: &ClientSideWeightedRoundRobin) -> Result<LbPolicy, String> {
    let d = |v: &Option<xds_proto::protobuf::Duration>, name: &str, default: Duration| match v {
        None => Ok(default),
        Some(v) => super::duration(v).map_err(|e| format!("{name}: {e}")),
    };
    let penalty = w.error_utilization_penalty.map(|v| v.value).unwrap_or(1.0);
    if penalty.is_nan() || penalty < 0.0 {
        return Err(format!(
            "error_utilization_penalty: {penalty} must be non-negative"
        ));
    }
    Ok(LbPolicy::WeightedRoundRobin(
        crate::balance::wrr::WrrParams {
            blackout_period: d(
                &w.blackout_period,
                "blackout_period",
                Duration::from_secs(10),
            )?,
            weight_expiration_period: d(
                &w.weight_expiration_period,
                "weight_expiration_period",
                Duration::from_secs(180),
            )?,
            weight_update_period: d(
                &w.weight_update_period,
                "weight_update_period",
                Duration::from_secs(1),
            )?
            .max(Duration::from_millis(100)),
            error_utilization_penalty: penalty,
        },
    ))
}

// ---- Outlier detection (gRFC A50) ----

/// The largest `seconds` of a valid `google.protobuf.Duration` (10 000 years).
const MAX_PROTO_DURATION_SECS: i64 = 315_576_000_000;

/// Validates `Cluster.outlier_detection` (gRFC A50 "xDS Validation"): `interval`,
/// `base_ejection_time` and `max_ejection_time` must be valid, non-negative
/// `google.protobuf.Duration`s; `max_ejection_percent`, `enforcing_success_rate`,
/// `failure_percentage_threshold` and `enforcing_failure_percentage` must be at most 100.
/// Anything else NACKs nothing. Then (A50 "xDS Integration"): `enforcing_success_rate` of 0
/// disables success-rate ejection (unset means 100); `enforcing_failure_percentage` of 0 or
/// unset disables failure-percentage ejection; the disabled algorithm's other fields are
/// ignored, and so is every field A50 does not map (consecutive 5xx and gateway failures,
/// local-origin fields, jitter, monitors).
pub(crate) fn outlier_detection(
    od: &OutlierDetectionProto,
) -> Result<config::OutlierDetection, String> {
    let duration = |field: &str, d: Option<&xds_proto::protobuf::Duration>, default: Duration| {
        d.map_or(Ok(default), |d| {
            outlier_duration(d).map_err(|e| format!("{field}: {e}"))
        })
    };
    let percent = |field: &str, v: Option<u32>, default: u32| {
        let v = v.unwrap_or(default);
        if v > 100 {
            Err(format!("{field}: {v} is above 100"))
        } else {
            Ok(v)
        }
    };
    let value = |v: Option<xds_proto::protobuf::UInt32Value>| v.map(|v| v.value);
    let interval = duration("interval", od.interval.as_ref(), Duration::from_secs(10))?;
    let base_ejection_time = duration(
        "base_ejection_time",
        od.base_ejection_time.as_ref(),
        Duration::from_secs(30),
    )?;
    let max_ejection_time = duration(
        "max_ejection_time",
        od.max_ejection_time.as_ref(),
        Duration::from_secs(300),
    )?;
    let max_ejection_percent = percent("max_ejection_percent", value(od.max_ejection_percent), 10)?;
    let enforcing_success_rate = percent(
        "enforcing_success_rate",
        value(od.enforcing_success_rate),
        100,
    )?;
    let failure_threshold = percent(
        "failure_percentage_threshold",
        value(od.failure_percentage_threshold),
        85,
    )?;
    let enforcing_failure = percent(
        "enforcing_failure_percentage",
        value(od.enforcing_failure_percentage),
        0,
    )?;
    let success_rate = (enforcing_success_rate > 0).then(|| config::SuccessRateEjection {
        stdev_factor: value(od.success_rate_stdev_factor).unwrap_or(1900),
        enforcement_percentage: enforcing_success_rate,
        minimum_hosts: value(od.success_rate_minimum_hosts).unwrap_or(5),
        request_volume: value(od.success_rate_request_volume).unwrap_or(100),
    });
    let failure_percentage = (enforcing_failure > 0).then(|| config::FailurePercentageEjection {
        threshold: failure_threshold,
        enforcement_percentage: enforcing_failure,
        minimum_hosts: value(od.failure_percentage_minimum_hosts).unwrap_or(5),
        request_volume: value(od.failure_percentage_request_volume).unwrap_or(50),
    });
    Ok(config::OutlierDetection {
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent,
        success_rate,
        failure_percentage,
    })
}

/// A `google.protobuf.Duration` that obeys its documented range (|seconds| ≤ 315 576 000 000,
/// |nanos| < 10⁹) and is not negative (A50).
fn outlier_duration(d: &xds_proto::protobuf::Duration) -> Result<Duration, String> {
    if d.seconds > MAX_PROTO_DURATION_SECS {
        return Err(format!(
            "{}s is above the google.protobuf.Duration range",
            d.seconds
        ));
    }
    if d.seconds < 0 || d.nanos < 0 {
        return Err(format!(
            "negative duration (seconds {}, nanos {})",
            d.seconds, d.nanos
        ));
    }
    super::duration(d)
}

/// The legacy `lb_policy` enum with its `lb_config` (gRFC A42 RING_HASH, A48 LEAST_REQUEST).
fn legacy_lb_policy(c: &ClusterProto) -> Result<LbPolicy, String> {
    match LbPolicyProto::try_from(c.lb_policy) {
        Ok(LbPolicyProto::RoundRobin) => Ok(LbPolicy::RoundRobin),
        Ok(LbPolicyProto::LeastRequest) => {
            let count = match &c.lb_config {
                Some(LbConfig::LeastRequestLbConfig(l)) => l.choice_count.map(|v| v.value),
                _ => None,
            };
            least_request(count).map_err(|e| format!("least_request_lb_config.{e}"))
        }
        Ok(LbPolicyProto::RingHash) => {
            let cfg = match &c.lb_config {
                Some(LbConfig::RingHashLbConfig(r)) => Some(r),
                _ => None,
            };
            let function = cfg.map(|r| r.hash_function).unwrap_or_default();
            if function != LegacyHashFunction::XxHash as i32 {
                return Err(format!(
                    "ring_hash_lb_config.hash_function: unsupported hash function {} (only XX_HASH)",
                    LegacyHashFunction::try_from(function)
                        .map(|f| f.as_str_name().to_string())
                        .unwrap_or_else(|_| function.to_string())
                ));
            }
            ring_hash(
                cfg.and_then(|r| r.minimum_ring_size).map(|v| v.value),
                cfg.and_then(|r| r.maximum_ring_size).map(|v| v.value),
            )
            .map_err(|e| format!("ring_hash_lb_config.{e}"))
        }
        other => {
            let name = other
                .map(|p| p.as_str_name().to_string())
                .unwrap_or_else(|_| c.lb_policy.to_string());
            Err(format!(
                "lb_policy: unsupported policy {name} (ROUND_ROBIN, LEAST_REQUEST and RING_HASH are supported)"
            ))
        }
    }
}

/// A48: `choice_count` defaults to 2, must be at least 2, and is capped at 10.
fn least_request(choice_count: Option<u32>) -> Result<LbPolicy, String> {
    let n = choice_count.unwrap_or(DEFAULT_CHOICE_COUNT);
    if n < 2 {
        return Err(format!("choice_count: {n} is less than 2"));
    }
    Ok(LbPolicy::LeastRequest {
        choice_count: n.min(MAX_CHOICE_COUNT),
    })
}

/// A42: ring sizes default to 1024 and 8M; above 8M or min > max NACKs; both are then
/// capped at the client-side cap (4096).
fn ring_hash(min: Option<u64>, max: Option<u64>) -> Result<LbPolicy, String> {
    let min = min.unwrap_or(DEFAULT_MIN_RING);
    let max = max.unwrap_or(DEFAULT_MAX_RING);
    if min > RING_SIZE_LIMIT {
        return Err(format!(
            "minimum_ring_size: {min} is above the limit of {RING_SIZE_LIMIT}"
        ));
    }
    if max > RING_SIZE_LIMIT {
        return Err(format!(
            "maximum_ring_size: {max} is above the limit of {RING_SIZE_LIMIT}"
        ));
    }
    if min > max {
        return Err(format!(
            "minimum_ring_size: {min} is greater than maximum_ring_size {max}"
        ));
    }
    Ok(LbPolicy::RingHash {
        min_ring: min.clamp(1, RING_SIZE_CAP),
        max_ring: max.clamp(1, RING_SIZE_CAP),
        request_hash_header: None,
    })
}

/// Our peak-EWMA extension's config (`type.googleapis.com/mesh.lb.v1.PeakEwma`); an empty
/// value takes the defaults.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct PeakEwmaProto {
    /// EWMA decay time constant in nanoseconds; 0: 10 s.
    #[prost(uint64, tag = "1")]
    pub decay_ns: u64,
    /// RTT assumed before an endpoint's first response, in milliseconds; 0: 30 ms.
    #[prost(uint32, tag = "2")]
    pub default_rtt_ms: u32,
}

/// The type URL of [`PeakEwmaProto`].
pub const PEAK_EWMA_TYPE_URL: &str = "type.googleapis.com/mesh.lb.v1.PeakEwma";

/// The largest accepted `decay_ns` and `default_rtt_ms` (one hour).
const PEAK_EWMA_MAX: Duration = Duration::from_secs(3600);

fn peak_ewma(value: &[u8]) -> Result<LbPolicy, String> {
    let p = PeakEwmaProto::decode(value).map_err(|e| format!("cannot decode PeakEwma: {e}"))?;
    let decay = match p.decay_ns {
        0 => DEFAULT_EWMA_DECAY,
        n => Duration::from_nanos(n),
    };
    let default_rtt = match p.default_rtt_ms {
        0 => DEFAULT_RTT,
        n => Duration::from_millis(u64::from(n)),
    };
    if decay > PEAK_EWMA_MAX {
        return Err(format!("decay_ns: {decay:?} is above one hour"));
    }
    if default_rtt > PEAK_EWMA_MAX {
        return Err(format!("default_rtt_ms: {default_rtt:?} is above one hour"));
    }
    Ok(LbPolicy::PeakEwma { decay, default_rtt })
}

/// A52: the first policy in the list that we support; unknown types are skipped, a
/// supported one that is invalid NACKs. Errors start with a path suffix (`.policies[0]...`).
/// Supported: `round_robin`, `wrr_locality` (its child picks endpoints; locality weights are
/// applied as always), `least_request` (A48), `ring_hash` (A42) and our `PeakEwma`.
/// `client_side_weighted_round_robin` (A58) is not supported yet, so it falls through to the
/// next entry.
fn load_balancing_policy(p: &LoadBalancingPolicy, depth: usize) -> Result<LbPolicy, String> {
    if depth >= MAX_LB_POLICY_DEPTH {
        return Err(": nested too deeply".into());
    }
    for (i, policy) in p.policies.iter().enumerate() {
        let Some(any) = policy
            .typed_extension_config
            .as_ref()
            .and_then(|t| t.typed_config.as_ref())
        else {
            continue;
        };
        let at = |e: String| format!(".policies[{i}].typed_extension_config.typed_config.{e}");
        let url = any.type_url.as_str();
        if url == RoundRobin::type_url() {
            return Ok(LbPolicy::RoundRobin);
        }
        if url == WrrLocality::type_url() {
            let wrr = WrrLocality::decode(any.value.as_slice())
                .map_err(|e| format!(".policies[{i}]: cannot decode WrrLocality: {e}"))?;
            let child = wrr
                .endpoint_picking_policy
                .as_ref()
                .ok_or_else(|| format!(".policies[{i}].endpoint_picking_policy: missing"))?;
            // Locality weighting is what we do anyway; the child picks endpoints.
            return load_balancing_policy(child, depth + 1)
                .map_err(|e| format!(".policies[{i}].endpoint_picking_policy{e}"));
        }
        if url == LeastRequest::type_url() {
            let lr = LeastRequest::decode(any.value.as_slice())
                .map_err(|e| format!(".policies[{i}]: cannot decode LeastRequest: {e}"))?;
            return least_request(lr.choice_count.map(|v| v.value)).map_err(at);
        }
        if url == RingHash::type_url() {
            let rh = RingHash::decode(any.value.as_slice())
                .map_err(|e| format!(".policies[{i}]: cannot decode RingHash: {e}"))?;
            // A52: DEFAULT_HASH and XX_HASH are XXH64; anything else NACKs.
            if rh.hash_function != HashFunction::DefaultHash as i32
                && rh.hash_function != HashFunction::XxHash as i32
            {
                return Err(at(format!(
                    "hash_function: unsupported hash function {} (only XX_HASH)",
                    HashFunction::try_from(rh.hash_function)
                        .map(|f| f.as_str_name().to_string())
                        .unwrap_or_else(|_| rh.hash_function.to_string())
                )));
            }
            return ring_hash(
                rh.minimum_ring_size.map(|v| v.value),
                rh.maximum_ring_size.map(|v| v.value),
            )
            .map_err(at);
        }
        if url == PEAK_EWMA_TYPE_URL {
            return peak_ewma(any.value.as_slice()).map_err(at);
        }
        if url == ClientSideWeightedRoundRobin::type_url() {
            let w = ClientSideWeightedRoundRobin::decode(any.value.as_slice()).map_err(|e| {
                format!(".policies[{i}]: cannot decode ClientSideWeightedRoundRobin: {e}")
            })?;
            return client_side_wrr(&w).map_err(at);
        }
    }
    Err(": no supported policy (round_robin, wrr_locality, least_request, ring_hash, mesh.lb.v1.PeakEwma)".into())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Cluster;
    use crate::xds::resource::testing::{Expect, Expect::*, run};
    use crate::xds::resource::{Resource, ResourceType};
    use xds_proto::any::pack;
    use xds_proto::envoy::envoy::config::cluster::v3::cluster::{
        LeastRequestLbConfig, RingHashLbConfig,
    };
    use xds_proto::envoy::envoy::config::cluster::v3::{
        CircuitBreakers, circuit_breakers::Thresholds, cluster::CustomClusterType,
        cluster::EdsClusterConfig, load_balancing_policy::Policy,
    };
    use xds_proto::envoy::envoy::config::core::v3::{
        Address, AggregatedConfigSource, ConfigSource, SocketAddress, TransportSocket,
        TypedExtensionConfig, config_source::ConfigSourceSpecifier,
    };
    use xds_proto::envoy::envoy::config::endpoint::v3::{
        ClusterLoadAssignment, Endpoint as EndpointProto, LbEndpoint, LocalityLbEndpoints,
    };
    use xds_proto::protobuf::{Any, Duration as PbDuration, UInt32Value, UInt64Value};

    fn legacy_ring(min: Option<u64>, max: Option<u64>, f: LegacyHashFunction) -> RingHashLbConfig {
        RingHashLbConfig {
            minimum_ring_size: min.map(|value| UInt64Value { value }),
            maximum_ring_size: max.map(|value| UInt64Value { value }),
            hash_function: f as i32,
        }
    }

    fn peak(p: PeakEwmaProto) -> Any {
        Any {
            type_url: PEAK_EWMA_TYPE_URL.into(),
            value: p.encode_to_vec(),
        }
    }

    fn source(s: ConfigSourceSpecifier) -> Option<ConfigSource> {
        Some(ConfigSource {
            config_source_specifier: Some(s),
            ..Default::default()
        })
    }

    pub(crate) fn eds() -> ClusterProto {
        ClusterProto {
            name: "c1".into(),
            cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
            eds_cluster_config: Some(EdsClusterConfig {
                eds_config: source(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
                service_name: String::new(),
            }),
            ..Default::default()
        }
    }

    fn with(f: impl FnOnce(&mut ClusterProto)) -> Any {
        let mut c = eds();
        f(&mut c);
        pack(&c)
    }

    fn dns_socket(host: &str, port: u32) -> SocketAddress {
        SocketAddress {
            address: host.into(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        }
    }

    fn set_dns_address(c: &mut ClusterProto, address: Option<AddressKind>) {
        if let Some(la) = c.load_assignment.as_mut()
            && let Some(HostIdentifier::Endpoint(e)) =
                la.endpoints[0].lb_endpoints[0].host_identifier.as_mut()
        {
            e.address = Some(Address { address });
        }
    }

    /// A LOGICAL_DNS cluster for db.example.com:5432, changed by `f`.
    fn dns(f: impl FnOnce(&mut ClusterProto)) -> Any {
        with(|c| {
            c.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::LogicalDns as i32));
            c.eds_cluster_config = None;
            c.load_assignment = Some(ClusterLoadAssignment {
                cluster_name: "c1".into(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: vec![LbEndpoint {
                        host_identifier: Some(HostIdentifier::Endpoint(EndpointProto {
                            address: Some(Address {
                                address: Some(AddressKind::SocketAddress(dns_socket(
                                    "db.example.com",
                                    5432,
                                ))),
                            }),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            });
            f(c);
        })
    }

    /// An aggregate cluster with this typed_config, and Envoy's CLUSTER_PROVIDED policy.
    fn aggregate(typed_config: Option<Any>) -> Any {
        with(|c| {
            c.cluster_discovery_type = Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
                name: "envoy.clusters.aggregate".into(),
                typed_config,
            }));
            c.eds_cluster_config = None;
            c.lb_policy = LbPolicyProto::ClusterProvided as i32;
        })
    }

    fn policies(anys: Vec<Any>) -> Option<LoadBalancingPolicy> {
        Some(LoadBalancingPolicy {
            policies: anys
                .into_iter()
                .map(|a| Policy {
                    typed_extension_config: Some(TypedExtensionConfig {
                        name: "p".into(),
                        typed_config: Some(a),
                    }),
                })
                .collect(),
        })
    }

    fn eds_name(c: &Cluster) -> &str {
        match &c.kind {
            ClusterKind::Eds { service_name } => service_name,
            _ => "",
        }
    }

    fn rows() -> Vec<(&'static str, Any, Expect<Cluster>)> {
        vec![
            (
                // A27: an EDS cluster over ADS; service_name defaults to the cluster name.
                "eds over ads",
                with(|_| {}),
                Accepted(|c| {
                    c.name == "c1"
                        && c.tls.is_none()
                        && eds_name(c) == "c1"
                        && c.lb_policy == LbPolicy::RoundRobin
                        && c.max_requests.is_none()
                }),
            ),
            (
                // A27: an explicit service_name is used.
                "explicit service_name",
                with(|c| {
                    if let Some(e) = c.eds_cluster_config.as_mut() {
                        e.service_name = "svc".into();
                    }
                }),
                Accepted(|c| eds_name(c) == "svc"),
            ),
            (
                // A27: eds_config must be ads or self.
                "eds_config not ads",
                with(|c| c.eds_cluster_config = None),
                Nack("cluster \"c1\": eds_cluster_config.eds_config: must be ads or self"),
            ),
            (
                // A27: eds_config `self` is accepted.
                "eds_config self",
                with(|c| {
                    if let Some(e) = c.eds_cluster_config.as_mut() {
                        e.eds_config = source(ConfigSourceSpecifier::Self_(Default::default()));
                    }
                }),
                Accepted(|c| eds_name(c) == "c1"),
            ),
            (
                // grpc-go: an xdstp: cluster name needs a service_name.
                "xdstp name without service_name",
                with(|c| c.name = "xdstp://auth/envoy.config.cluster.v3.Cluster/c1".into()),
                Nack("eds_cluster_config.service_name: required with an xdstp: cluster name"),
            ),
            (
                // A27: STATIC (also what an unset type reads as) is unsupported.
                "static",
                with(|c| c.cluster_discovery_type = None),
                Nack("type: unsupported cluster type STATIC"),
            ),
            (
                // A37: a LOGICAL_DNS cluster resolves its one endpoint's host and port.
                "logical dns",
                dns(|_| {}),
                Accepted(|c| {
                    c.kind
                        == ClusterKind::LogicalDns {
                            host: "db.example.com".into(),
                            port: 5432,
                        }
                }),
            ),
            (
                // A37 (grpc-go): LOGICAL_DNS needs a load_assignment.
                "logical dns without load_assignment",
                dns(|c| c.load_assignment = None),
                Nack("load_assignment: not present for LOGICAL_DNS cluster"),
            ),
            (
                // A37 (grpc-go): exactly one locality.
                "logical dns with two localities",
                dns(|c| {
                    if let Some(la) = c.load_assignment.as_mut() {
                        let l = la.endpoints[0].clone();
                        la.endpoints.push(l);
                    }
                }),
                Nack(
                    "load_assignment.endpoints: LOGICAL_DNS cluster must have exactly one locality, got 2",
                ),
            ),
            (
                // A37 (grpc-go): exactly one endpoint in the locality.
                "logical dns with no endpoint",
                dns(|c| {
                    if let Some(la) = c.load_assignment.as_mut() {
                        la.endpoints[0].lb_endpoints.clear();
                    }
                }),
                Nack(
                    "load_assignment.endpoints[0].lb_endpoints: locality for LOGICAL_DNS cluster must have exactly one endpoint, got 0",
                ),
            ),
            (
                // A37 (grpc-go): the endpoint must be set (not an endpoint_name).
                "logical dns endpoint name",
                dns(|c| {
                    if let Some(la) = c.load_assignment.as_mut() {
                        la.endpoints[0].lb_endpoints[0].host_identifier =
                            Some(HostIdentifier::EndpointName("e".into()));
                    }
                }),
                Nack(
                    "load_assignment.endpoints[0].lb_endpoints[0].endpoint: endpoint for LOGICAL_DNS cluster not set",
                ),
            ),
            (
                // A37 (grpc-go): the address must be a socket address.
                "logical dns pipe address",
                dns(|c| set_dns_address(c, Some(AddressKind::Pipe(Default::default())))),
                Nack(
                    "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address: socket address for endpoint for LOGICAL_DNS cluster not set",
                ),
            ),
            (
                // A37 (grpc-go): no custom resolver.
                "logical dns custom resolver",
                dns(|c| {
                    set_dns_address(
                        c,
                        Some(AddressKind::SocketAddress(SocketAddress {
                            resolver_name: "mine".into(),
                            ..dns_socket("db.example.com", 5432)
                        })),
                    )
                }),
                Nack(
                    "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.resolver_name: unexpected custom resolver name \"mine\"",
                ),
            ),
            (
                // A37 (grpc-go): the host must be set.
                "logical dns without host",
                dns(|c| set_dns_address(c, Some(AddressKind::SocketAddress(dns_socket("", 5432))))),
                Nack(
                    "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: host for endpoint for LOGICAL_DNS cluster not set",
                ),
            ),
            (
                // A37 (grpc-go): the port must be set (0 or a named port is not).
                "logical dns without port",
                dns(|c| {
                    set_dns_address(
                        c,
                        Some(AddressKind::SocketAddress(dns_socket("db.example.com", 0))),
                    )
                }),
                Nack(
                    "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: port for endpoint for LOGICAL_DNS cluster not set",
                ),
            ),
            (
                // A port beyond 65535 cannot be connected to.
                "logical dns port out of range",
                dns(|c| {
                    set_dns_address(
                        c,
                        Some(AddressKind::SocketAddress(dns_socket(
                            "db.example.com",
                            70000,
                        ))),
                    )
                }),
                Nack(
                    "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: 70000 is not a valid port",
                ),
            ),
            (
                // A37: an aggregate cluster lists its clusters in priority order; A75: its
                // lb_policy (Envoy's CLUSTER_PROVIDED) is ignored rather than NACKed.
                "aggregate",
                aggregate(Some(pack(&AggregateClusterConfig {
                    clusters: vec!["primary".into(), "secondary".into()],
                }))),
                Accepted(|c| {
                    c.kind
                        == ClusterKind::Aggregate {
                            clusters: vec!["primary".into(), "secondary".into()],
                        }
                }),
            ),
            (
                // A37 (grpc-go): an empty clusters list NACKs.
                "aggregate with no clusters",
                aggregate(Some(pack(&AggregateClusterConfig { clusters: vec![] }))),
                Nack(
                    "cluster_type.typed_config.clusters: aggregate cluster has empty clusters field",
                ),
            ),
            (
                // A37: the typed_config is required.
                "aggregate without typed_config",
                aggregate(None),
                Nack(
                    "cluster_type.typed_config: not set (an envoy.extensions.clusters.aggregate.v3.ClusterConfig is required)",
                ),
            ),
            (
                // A37: a typed_config of another type NACKs.
                "aggregate typed_config of another type",
                aggregate(Some(pack(&RoundRobin::default()))),
                Nack(
                    "cluster_type.typed_config: unexpected type \"type.googleapis.com/envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin\"",
                ),
            ),
            (
                // A37 (grpc-go): a typed_config that does not decode NACKs.
                "aggregate typed_config undecodable",
                aggregate(Some(Any {
                    type_url: AggregateClusterConfig::type_url(),
                    value: vec![0x0a, 0x05, b'a'],
                })),
                Nack("cluster_type.typed_config: cannot decode ClusterConfig"),
            ),
            (
                // A37: any other custom cluster type is unsupported.
                "unknown custom cluster type",
                with(|c| {
                    c.cluster_discovery_type =
                        Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
                            name: "envoy.clusters.redis".into(),
                            typed_config: None,
                        }))
                }),
                Nack("cluster_type: unsupported cluster type \"envoy.clusters.redis\""),
            ),
            (
                // A27: STRICT_DNS is unsupported (only LOGICAL_DNS is, A37).
                "strict dns",
                with(|c| {
                    c.cluster_discovery_type =
                        Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32))
                }),
                Nack("type: unsupported cluster type STRICT_DNS"),
            ),
            (
                // A42: legacy RING_HASH with defaults: 1024 / 8M, capped at 4096.
                "ring hash lb_policy defaults",
                with(|c| c.lb_policy = LbPolicyProto::RingHash as i32),
                Accepted(|c| {
                    c.lb_policy
                        == LbPolicy::RingHash {
                            min_ring: 1024,
                            max_ring: 4096,
                            request_hash_header: None,
                        }
                }),
            ),
            (
                // A42: legacy ring_hash_lb_config sizes are kept below the cap.
                "ring hash lb_config sizes",
                with(|c| {
                    c.lb_policy = LbPolicyProto::RingHash as i32;
                    c.lb_config = Some(LbConfig::RingHashLbConfig(legacy_ring(
                        Some(10),
                        Some(100),
                        LegacyHashFunction::XxHash,
                    )));
                }),
                Accepted(|c| {
                    matches!(
                        c.lb_policy,
                        LbPolicy::RingHash {
                            min_ring: 10,
                            max_ring: 100,
                            ..
                        }
                    )
                }),
            ),
            (
                // A42: only XX_HASH; MURMUR_HASH_2 NACKs.
                "ring hash murmur",
                with(|c| {
                    c.lb_policy = LbPolicyProto::RingHash as i32;
                    c.lb_config = Some(LbConfig::RingHashLbConfig(legacy_ring(
                        None,
                        None,
                        LegacyHashFunction::MurmurHash2,
                    )));
                }),
                Nack("ring_hash_lb_config.hash_function: unsupported hash function MURMUR_HASH_2"),
            ),
            (
                // A42: maximum_ring_size above 8M NACKs.
                "ring hash max above 8M",
                with(|c| {
                    c.lb_policy = LbPolicyProto::RingHash as i32;
                    c.lb_config = Some(LbConfig::RingHashLbConfig(legacy_ring(
                        None,
                        Some(8 * 1024 * 1024 + 1),
                        LegacyHashFunction::XxHash,
                    )));
                }),
                Nack("ring_hash_lb_config.maximum_ring_size: 8388609 is above the limit"),
            ),
            (
                // A42: minimum_ring_size above 8M NACKs.
                "ring hash min above 8M",
                with(|c| {
                    c.lb_policy = LbPolicyProto::RingHash as i32;
                    c.lb_config = Some(LbConfig::RingHashLbConfig(legacy_ring(
                        Some(8 * 1024 * 1024 + 1),
                        None,
                        LegacyHashFunction::XxHash,
                    )));
                }),
                Nack("ring_hash_lb_config.minimum_ring_size: 8388609 is above the limit"),
            ),
            (
                // A42: min > max NACKs.
                "ring hash min above max",
                with(|c| {
                    c.lb_policy = LbPolicyProto::RingHash as i32;
                    c.lb_config = Some(LbConfig::RingHashLbConfig(legacy_ring(
                        Some(200),
                        Some(100),
                        LegacyHashFunction::XxHash,
                    )));
                }),
                Nack("minimum_ring_size: 200 is greater than maximum_ring_size 100"),
            ),
            (
                // A42: sizes up to 8M are accepted and capped at 4096 on the client.
                "ring hash sizes capped",
                with(|c| {
                    c.lb_policy = LbPolicyProto::RingHash as i32;
                    c.lb_config = Some(LbConfig::RingHashLbConfig(legacy_ring(
                        Some(5000),
                        Some(8 * 1024 * 1024),
                        LegacyHashFunction::XxHash,
                    )));
                }),
                Accepted(|c| {
                    matches!(
                        c.lb_policy,
                        LbPolicy::RingHash {
                            min_ring: 4096,
                            max_ring: 4096,
                            ..
                        }
                    )
                }),
            ),
            (
                // A48: legacy LEAST_REQUEST defaults to choice_count 2.
                "least request default",
                with(|c| c.lb_policy = LbPolicyProto::LeastRequest as i32),
                Accepted(|c| c.lb_policy == LbPolicy::LeastRequest { choice_count: 2 }),
            ),
            (
                // A48: choice_count above 10 is capped at 10.
                "least request capped",
                with(|c| {
                    c.lb_policy = LbPolicyProto::LeastRequest as i32;
                    c.lb_config = Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                        choice_count: Some(UInt32Value { value: 50 }),
                        ..Default::default()
                    }));
                }),
                Accepted(|c| c.lb_policy == LbPolicy::LeastRequest { choice_count: 10 }),
            ),
            (
                // A48: choice_count below 2 NACKs.
                "least request choice_count 1",
                with(|c| {
                    c.lb_policy = LbPolicyProto::LeastRequest as i32;
                    c.lb_config = Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                        choice_count: Some(UInt32Value { value: 1 }),
                        ..Default::default()
                    }));
                }),
                Nack("least_request_lb_config.choice_count: 1 is less than 2"),
            ),
            (
                // A27/A52: other legacy policies (RANDOM, MAGLEV, ...) NACK.
                "random lb_policy",
                with(|c| c.lb_policy = LbPolicyProto::Random as i32),
                Nack("lb_policy: unsupported policy RANDOM"),
            ),
            (
                // A52: the typed LeastRequest extension, choice_count 3.
                "load_balancing_policy least_request",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&LeastRequest {
                        choice_count: Some(UInt32Value { value: 3 }),
                        ..Default::default()
                    })])
                }),
                Accepted(|c| c.lb_policy == LbPolicy::LeastRequest { choice_count: 3 }),
            ),
            (
                // A48 via A52: choice_count below 2 NACKs with its path.
                "load_balancing_policy least_request choice_count 0",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&LeastRequest {
                        choice_count: Some(UInt32Value { value: 0 }),
                        ..Default::default()
                    })])
                }),
                Nack(
                    "load_balancing_policy.policies[0].typed_extension_config.typed_config.choice_count: 0 is less than 2",
                ),
            ),
            (
                // A52: the typed RingHash extension (DEFAULT_HASH is XXH64).
                "load_balancing_policy ring_hash",
                with(|c| c.load_balancing_policy = policies(vec![pack(&RingHash::default())])),
                Accepted(|c| {
                    matches!(
                        c.lb_policy,
                        LbPolicy::RingHash {
                            min_ring: 1024,
                            max_ring: 4096,
                            ..
                        }
                    )
                }),
            ),
            (
                // A52/A42: the typed RingHash with MURMUR_HASH_2 NACKs.
                "load_balancing_policy ring_hash murmur",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&RingHash {
                        hash_function: HashFunction::MurmurHash2 as i32,
                        ..Default::default()
                    })])
                }),
                Nack("typed_config.hash_function: unsupported hash function MURMUR_HASH_2"),
            ),
            (
                // A52/A42: the typed RingHash with min > max NACKs.
                "load_balancing_policy ring_hash min above max",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&RingHash {
                        minimum_ring_size: Some(UInt64Value { value: 64 }),
                        maximum_ring_size: Some(UInt64Value { value: 8 }),
                        ..Default::default()
                    })])
                }),
                Nack("typed_config.minimum_ring_size: 64 is greater than maximum_ring_size 8"),
            ),
            (
                // A58: client_side_weighted_round_robin with its defaults.
                "load_balancing_policy cswrr defaults",
                with(|c| {
                    c.load_balancing_policy = policies(vec![
                        pack(&ClientSideWeightedRoundRobin::default()),
                        pack(&RingHash::default()),
                    ])
                }),
                Accepted(|c| {
                    c.lb_policy
                        == LbPolicy::WeightedRoundRobin(crate::balance::wrr::WrrParams {
                            blackout_period: Duration::from_secs(10),
                            weight_expiration_period: Duration::from_secs(180),
                            weight_update_period: Duration::from_secs(1),
                            error_utilization_penalty: 1.0,
                        })
                }),
            ),
            (
                // A58: the update period is at least 100 ms.
                "load_balancing_policy cswrr update period floor",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&ClientSideWeightedRoundRobin {
                        weight_update_period: Some(PbDuration {
                            seconds: 0,
                            nanos: 1_000_000,
                        }),
                        blackout_period: Some(PbDuration::default()),
                        ..Default::default()
                    })])
                }),
                Accepted(|c| match &c.lb_policy {
                    LbPolicy::WeightedRoundRobin(p) => {
                        p.weight_update_period == Duration::from_millis(100)
                            && p.blackout_period.is_zero()
                    }
                    _ => false,
                }),
            ),
            (
                // A58: a negative error_utilization_penalty is rejected.
                "load_balancing_policy cswrr negative penalty",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&ClientSideWeightedRoundRobin {
                        error_utilization_penalty: Some(xds_proto::protobuf::FloatValue {
                            value: -1.0,
                        }),
                        ..Default::default()
                    })])
                }),
                Nack("error_utilization_penalty: -1 must be non-negative"),
            ),
            (
                // Ours: PeakEwma with an empty value takes the defaults.
                "load_balancing_policy peak ewma defaults",
                with(|c| c.load_balancing_policy = policies(vec![peak(PeakEwmaProto::default())])),
                Accepted(|c| {
                    c.lb_policy
                        == LbPolicy::PeakEwma {
                            decay: Duration::from_secs(10),
                            default_rtt: Duration::from_millis(30),
                        }
                }),
            ),
            (
                // Ours: PeakEwma with its config.
                "load_balancing_policy peak ewma config",
                with(|c| {
                    c.load_balancing_policy = policies(vec![peak(PeakEwmaProto {
                        decay_ns: 2_000_000_000,
                        default_rtt_ms: 5,
                    })])
                }),
                Accepted(|c| {
                    c.lb_policy
                        == LbPolicy::PeakEwma {
                            decay: Duration::from_secs(2),
                            default_rtt: Duration::from_millis(5),
                        }
                }),
            ),
            (
                // Ours: PeakEwma with an absurd decay NACKs.
                "load_balancing_policy peak ewma decay too long",
                with(|c| {
                    c.load_balancing_policy = policies(vec![peak(PeakEwmaProto {
                        decay_ns: u64::MAX,
                        default_rtt_ms: 0,
                    })])
                }),
                Nack("typed_config.decay_ns:"),
            ),
            (
                // Ours: an undecodable PeakEwma NACKs (it is a supported type).
                "load_balancing_policy peak ewma garbage",
                with(|c| {
                    c.load_balancing_policy = policies(vec![Any {
                        type_url: PEAK_EWMA_TYPE_URL.into(),
                        value: vec![0xff, 0xff],
                    }])
                }),
                Nack("cannot decode PeakEwma"),
            ),
            (
                // A52: wrr_locality around least_request.
                "wrr_locality least_request",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&WrrLocality {
                        endpoint_picking_policy: policies(vec![pack(&LeastRequest::default())]),
                    })])
                }),
                Accepted(|c| c.lb_policy == LbPolicy::LeastRequest { choice_count: 2 }),
            ),
            (
                // A52: more than 16 levels of nesting NACK.
                "load_balancing_policy too deep",
                with(|c| {
                    let mut p = policies(vec![pack(&RoundRobin::default())]);
                    for _ in 0..17 {
                        p = policies(vec![pack(&WrrLocality {
                            endpoint_picking_policy: p,
                        })]);
                    }
                    c.load_balancing_policy = p;
                }),
                Nack("nested too deeply"),
            ),
            (
                // A52: load_balancing_policy with round_robin.
                "load_balancing_policy round_robin",
                with(|c| c.load_balancing_policy = policies(vec![pack(&RoundRobin::default())])),
                Accepted(|c| c.lb_policy == LbPolicy::RoundRobin),
            ),
            (
                // A52: load_balancing_policy wins over lb_policy; first supported entry is used.
                "load_balancing_policy skips unknown, wins over lb_policy",
                with(|c| {
                    c.lb_policy = LbPolicyProto::RingHash as i32;
                    c.load_balancing_policy = policies(vec![
                        Any {
                            type_url: "type.googleapis.com/acme.Lb".into(),
                            value: vec![],
                        },
                        pack(&RoundRobin::default()),
                    ]);
                }),
                Accepted(|c| c.lb_policy == LbPolicy::RoundRobin),
            ),
            (
                // A52: wrr_locality around round_robin.
                "wrr_locality round_robin",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&WrrLocality {
                        endpoint_picking_policy: policies(vec![pack(&RoundRobin::default())]),
                    })])
                }),
                Accepted(|c| c.lb_policy == LbPolicy::RoundRobin),
            ),
            (
                // A52: no supported policy in the list NACKs.
                "load_balancing_policy unsupported",
                with(|c| {
                    c.load_balancing_policy = policies(vec![Any {
                        type_url: "type.googleapis.com/acme.Lb".into(),
                        value: vec![],
                    }])
                }),
                Nack("load_balancing_policy: no supported policy"),
            ),
            (
                // A52: a supported wrapper with an unsupported child NACKs, with its path.
                "wrr_locality of unknown",
                with(|c| {
                    c.load_balancing_policy = policies(vec![pack(&WrrLocality {
                        endpoint_picking_policy: policies(vec![Any {
                            type_url: "type.googleapis.com/x.Unknown".into(),
                            value: vec![],
                        }]),
                    })])
                }),
                Nack(
                    "load_balancing_policy.policies[0].endpoint_picking_policy: no supported policy",
                ),
            ),
            (
                // grpc-go: lrs_server must be self.
                "lrs_server not self",
                with(|c| {
                    c.lrs_server = source(ConfigSourceSpecifier::Ads(AggregatedConfigSource {}))
                }),
                Nack("lrs_server: must be self"),
            ),
            (
                // grpc-go: lrs_server self is accepted.
                "lrs_server self",
                with(|c| c.lrs_server = source(ConfigSourceSpecifier::Self_(Default::default()))),
                Accepted(|c| c.name == "c1"),
            ),
            (
                // A29: a TLS transport socket needs its UpstreamTlsContext (more in tls.rs).
                "transport_socket without typed_config",
                with(|c| {
                    c.transport_socket = Some(TransportSocket {
                        name: "envoy.transport_sockets.tls".into(),
                        config_type: None,
                    })
                }),
                Nack("transport_socket.typed_config: missing"),
            ),
            (
                // A32: max_requests of the DEFAULT priority threshold.
                "circuit breaker",
                with(|c| {
                    c.circuit_breakers = Some(CircuitBreakers {
                        thresholds: vec![
                            Thresholds {
                                priority: RoutingPriority::High as i32,
                                max_requests: Some(UInt32Value { value: 7 }),
                                ..Default::default()
                            },
                            Thresholds {
                                priority: RoutingPriority::Default as i32,
                                max_requests: Some(UInt32Value { value: 42 }),
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    })
                }),
                Accepted(|c| c.max_requests == Some(42) && c.retry_budget.is_none()),
            ),
            (
                // Ours: Envoy's retry_budget, read as a ratio budget.
                "retry budget",
                with(|c| c.circuit_breakers = budget(Some(25.0), Some(5), None)),
                Accepted(|c| {
                    c.retry_budget
                        == Some(config::RetryBudgetConfig {
                            ratio: 0.25,
                            min_retries_per_second: 5,
                            ttl: Duration::from_secs(10),
                        })
                }),
            ),
            (
                "retry budget defaults",
                with(|c| c.circuit_breakers = budget(None, None, Some(3))),
                Accepted(|c| {
                    c.retry_budget
                        == Some(config::RetryBudgetConfig {
                            ratio: 0.2,
                            min_retries_per_second: 3,
                            ttl: Duration::from_secs(3),
                        })
                }),
            ),
            (
                "retry budget percent out of range",
                with(|c| c.circuit_breakers = budget(Some(120.0), None, None)),
                Nack(
                    "circuit_breakers.thresholds[DEFAULT].retry_budget.budget_percent: 120 is not in [0, 100]",
                ),
            ),
        ]
    }

    fn budget(
        percent: Option<f64>,
        min: Option<u32>,
        secs: Option<i64>,
    ) -> Option<CircuitBreakers> {
        use xds_proto::envoy::envoy::config::cluster::v3::circuit_breakers::thresholds::RetryBudget;
        use xds_proto::envoy::envoy::r#type::v3::Percent;
        Some(CircuitBreakers {
            thresholds: vec![Thresholds {
                priority: RoutingPriority::Default as i32,
                retry_budget: Some(RetryBudget {
                    budget_percent: percent.map(|value| Percent { value }),
                    min_retry_concurrency: min.map(|value| UInt32Value { value }),
                    budget_interval: secs.map(|seconds| PbDuration { seconds, nanos: 0 }),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    // ---- Outlier detection (gRFC A50) ----

    fn od(f: impl FnOnce(&mut OutlierDetectionProto)) -> Any {
        with(|c| {
            let mut od = OutlierDetectionProto::default();
            f(&mut od);
            c.outlier_detection = Some(od);
        })
    }

    fn u32v(value: u32) -> Option<UInt32Value> {
        Some(UInt32Value { value })
    }

    fn pb_duration(seconds: i64, nanos: i32) -> Option<xds_proto::protobuf::Duration> {
        Some(xds_proto::protobuf::Duration { seconds, nanos })
    }

    fn outlier(c: &Cluster) -> &config::OutlierDetection {
        c.outlier_detection.as_ref().unwrap()
    }

    fn outlier_rows() -> Vec<(&'static str, Any, Expect<Cluster>)> {
        vec![
            (
                // A50: no outlier_detection field, no detection (the no-op config).
                "outlier_detection unset",
                with(|_| {}),
                Accepted(|c| c.outlier_detection.is_none()),
            ),
            (
                // A50 defaults: interval 10 s, base 30 s, max 300 s, 10 %; success rate on
                // (enforcing_success_rate unset = 100) with factor 1900, 5 hosts, volume 100;
                // failure percentage off (enforcing_failure_percentage unset = 0).
                "outlier_detection defaults",
                od(|_| {}),
                Accepted(|c| {
                    let o = outlier(c);
                    o.interval == Duration::from_secs(10)
                        && o.base_ejection_time == Duration::from_secs(30)
                        && o.max_ejection_time == Duration::from_secs(300)
                        && o.max_ejection_percent == 10
                        && o.success_rate
                            == Some(config::SuccessRateEjection {
                                stdev_factor: 1900,
                                enforcement_percentage: 100,
                                minimum_hosts: 5,
                                request_volume: 100,
                            })
                        && o.failure_percentage.is_none()
                        && o.is_enabled()
                }),
            ),
            (
                // A50: every mapped field is taken as given (stdev factor stays × 1000).
                "outlier_detection all fields",
                od(|o| {
                    o.interval = pb_duration(1, 500_000_000);
                    o.base_ejection_time = pb_duration(2, 0);
                    o.max_ejection_time = pb_duration(3, 0);
                    o.max_ejection_percent = u32v(50);
                    o.success_rate_stdev_factor = u32v(1000);
                    o.enforcing_success_rate = u32v(40);
                    o.success_rate_minimum_hosts = u32v(3);
                    o.success_rate_request_volume = u32v(20);
                    o.failure_percentage_threshold = u32v(60);
                    o.enforcing_failure_percentage = u32v(70);
                    o.failure_percentage_minimum_hosts = u32v(2);
                    o.failure_percentage_request_volume = u32v(10);
                }),
                Accepted(|c| {
                    let o = outlier(c);
                    o.interval == Duration::from_millis(1500)
                        && o.base_ejection_time == Duration::from_secs(2)
                        && o.max_ejection_time == Duration::from_secs(3)
                        && o.max_ejection_percent == 50
                        && o.success_rate
                            == Some(config::SuccessRateEjection {
                                stdev_factor: 1000,
                                enforcement_percentage: 40,
                                minimum_hosts: 3,
                                request_volume: 20,
                            })
                        && o.failure_percentage
                            == Some(config::FailurePercentageEjection {
                                threshold: 60,
                                enforcement_percentage: 70,
                                minimum_hosts: 2,
                                request_volume: 10,
                            })
                }),
            ),
            (
                // A50: failure percentage with its defaults (85 %, 5 hosts, volume 50).
                "failure percentage defaults",
                od(|o| o.enforcing_failure_percentage = u32v(100)),
                Accepted(|c| {
                    outlier(c).failure_percentage
                        == Some(config::FailurePercentageEjection {
                            threshold: 85,
                            enforcement_percentage: 100,
                            minimum_hosts: 5,
                            request_volume: 50,
                        })
                }),
            ),
            (
                // A50: enforcing_success_rate 0 disables success rate; its fields are ignored.
                "enforcing_success_rate 0",
                od(|o| {
                    o.enforcing_success_rate = u32v(0);
                    o.success_rate_stdev_factor = u32v(5);
                }),
                Ignored("success_rate_*", |c| {
                    outlier(c).success_rate.is_none() && !outlier(c).is_enabled()
                }),
            ),
            (
                // A50: enforcing_failure_percentage 0 disables failure percentage.
                "enforcing_failure_percentage 0",
                od(|o| {
                    o.enforcing_failure_percentage = u32v(0);
                    o.failure_percentage_minimum_hosts = u32v(1);
                }),
                Ignored("failure_percentage_*", |c| {
                    outlier(c).failure_percentage.is_none()
                }),
            ),
            (
                // A50: the unsupported algorithms and fields are ignored.
                "consecutive 5xx ignored",
                od(|o| {
                    o.consecutive_5xx = u32v(1);
                    o.enforcing_consecutive_5xx = u32v(100);
                    o.consecutive_gateway_failure = u32v(1);
                    o.split_external_local_origin_errors = true;
                    o.max_ejection_time_jitter = pb_duration(-1, 0);
                }),
                Ignored("consecutive_5xx, gateway, local origin, jitter", |c| {
                    outlier(c).success_rate.is_some() && outlier(c).failure_percentage.is_none()
                }),
            ),
            (
                // A50: a percentage of exactly 100 is valid.
                "percentages of 100",
                od(|o| {
                    o.max_ejection_percent = u32v(100);
                    o.failure_percentage_threshold = u32v(100);
                    o.enforcing_failure_percentage = u32v(100);
                }),
                Accepted(|c| {
                    outlier(c).max_ejection_percent == 100
                        && outlier(c)
                            .failure_percentage
                            .is_some_and(|f| f.threshold == 100)
                }),
            ),
            (
                // A50: max_ejection_percent must be <= 100.
                "max_ejection_percent 101",
                od(|o| o.max_ejection_percent = u32v(101)),
                Nack("outlier_detection.max_ejection_percent: 101 is above 100"),
            ),
            (
                // A50: enforcing_success_rate must be <= 100.
                "enforcing_success_rate 101",
                od(|o| o.enforcing_success_rate = u32v(101)),
                Nack("outlier_detection.enforcing_success_rate: 101 is above 100"),
            ),
            (
                // A50: failure_percentage_threshold must be <= 100, even with the algorithm off.
                "failure_percentage_threshold 150",
                od(|o| o.failure_percentage_threshold = u32v(150)),
                Nack("outlier_detection.failure_percentage_threshold: 150 is above 100"),
            ),
            (
                // A50: enforcing_failure_percentage must be <= 100.
                "enforcing_failure_percentage 200",
                od(|o| o.enforcing_failure_percentage = u32v(200)),
                Nack("outlier_detection.enforcing_failure_percentage: 200 is above 100"),
            ),
            (
                // A50: durations must not be negative.
                "negative interval",
                od(|o| o.interval = pb_duration(-1, 0)),
                Nack("outlier_detection.interval: negative duration"),
            ),
            (
                // A50: negative nanos are negative too.
                "negative base_ejection_time nanos",
                od(|o| o.base_ejection_time = pb_duration(0, -5)),
                Nack("outlier_detection.base_ejection_time: negative duration"),
            ),
            (
                // A50: google.protobuf.Duration's range is ±315 576 000 000 s.
                "max_ejection_time out of range",
                od(|o| o.max_ejection_time = pb_duration(315_576_000_001, 0)),
                Nack("outlier_detection.max_ejection_time: 315576000001s is above"),
            ),
            (
                // google.protobuf.Duration: nanos must be below 10^9.
                "interval nanos out of range",
                od(|o| o.interval = pb_duration(1, 1_000_000_000)),
                Nack("outlier_detection.interval: invalid nanos"),
            ),
            (
                // A50: a zero duration is valid.
                "zero interval",
                od(|o| o.interval = pb_duration(0, 0)),
                Accepted(|c| outlier(c).interval == Duration::ZERO),
            ),
        ]
    }

    #[test]
    fn cds_outlier_detection_table() {
        run(ResourceType::Cluster, outlier_rows(), |r| match r {
            Resource::Cluster(c) => Some(c),
            _ => None,
        });
    }

    #[test]
    fn cds_validation_table() {
        run(ResourceType::Cluster, rows(), |r| match r {
            Resource::Cluster(c) => Some(c),
            _ => None,
        });
    }
}
