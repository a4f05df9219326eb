//! CDS: validation of `Cluster` resources into [`config::Cluster`] (gRFC A27, A32, A37, A52).
//!
//! This slice supports EDS clusters only: aggregate and logical-DNS clusters (A37) and every
//! other type are NACKed with "unsupported cluster type". The EDS config source must be
//! `ads` or `self`. The endpoint policy must be ROUND_ROBIN, either as `lb_policy` or, when
//! `load_balancing_policy` is set (A52, which then wins), as the first supported entry of
//! `round_robin` or `wrr_locality` around `round_robin`. `lrs_server` must be `self`. TLS
//! (`transport_socket`, A29) is NACKed until the security work lands.

use prost::{Message, Name};
use xds_proto::envoy::envoy::config::cluster::v3::{
    LoadBalancingPolicy,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbPolicy as LbPolicyProto},
};
use xds_proto::envoy::envoy::config::core::v3::RoutingPriority;
use xds_proto::envoy::envoy::extensions::load_balancing_policies::{
    round_robin::v3::RoundRobin, wrr_locality::v3::WrrLocality,
};

use crate::config::{self, ClusterKind, LbPolicy};

/// The protobuf message validated here.
pub use xds_proto::envoy::envoy::config::cluster::v3::Cluster as ClusterProto;

/// A52: the recursion limit of LB policy conversion.
const MAX_LB_POLICY_DEPTH: usize = 16;

/// Validates a Cluster. Errors are field paths relative to the resource.
pub fn validate(c: &ClusterProto) -> Result<config::Cluster, String> {
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
        Some(ClusterDiscoveryType::Type(t)) => {
            let name = DiscoveryType::try_from(*t)
                .map(|d| d.as_str_name().to_string())
                .unwrap_or_else(|_| t.to_string());
            let hint = if name == "LOGICAL_DNS" {
                " (logical DNS clusters are not supported yet)"
            } else {
                ""
            };
            return Err(format!("type: unsupported cluster type {name}{hint}"));
        }
        Some(ClusterDiscoveryType::ClusterType(custom)) => {
            let hint = if custom.name == "envoy.clusters.aggregate" {
                " (aggregate clusters are not supported yet)"
            } else {
                ""
            };
            return Err(format!(
                "cluster_type: unsupported cluster type {:?}{hint}",
                custom.name
            ));
        }
        // An unset oneof reads as type STATIC.
        None => return Err("type: unsupported cluster type STATIC".into()),
    };
    let lb_policy = match &c.load_balancing_policy {
        Some(p) => load_balancing_policy(p, 0).map_err(|e| format!("load_balancing_policy{e}"))?,
        None => match LbPolicyProto::try_from(c.lb_policy) {
            Ok(LbPolicyProto::RoundRobin) => LbPolicy::RoundRobin,
            other => {
                let name = other
                    .map(|p| p.as_str_name().to_string())
                    .unwrap_or_else(|_| c.lb_policy.to_string());
                return Err(format!(
                    "lb_policy: unsupported policy {name} (only ROUND_ROBIN is supported yet)"
                ));
            }
        },
    };
    // grpc-go: LRS must report over the ADS server's channel.
    if let Some(lrs) = &c.lrs_server {
        if !matches!(
            lrs.config_source_specifier,
            Some(xds_proto::envoy::envoy::config::core::v3::config_source::ConfigSourceSpecifier::Self_(_))
        ) {
            return Err("lrs_server: must be self".into());
        }
    }
    if !c.transport_socket_matches.is_empty() {
        return Err("transport_socket_matches: unsupported".into());
    }
    if c.transport_socket.is_some() {
        return Err("transport_socket: TLS is not supported yet".into());
    }
    // A32: the DEFAULT-priority threshold's max_requests (1024 applies when unset).
    let max_requests = c.circuit_breakers.as_ref().and_then(|cb| {
        cb.thresholds
            .iter()
            .find(|t| t.priority == RoutingPriority::Default as i32)
            .and_then(|t| t.max_requests.map(|v| v.value))
    });
    Ok(config::Cluster {
        name: c.name.clone(),
        kind,
        lb_policy,
        max_requests,
    })
}

/// A52: the first policy in the list that we support; unknown types are skipped, a
/// supported one that is invalid NACKs. Errors start with a path suffix (`.policies[0]...`).
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
        if any.type_url == RoundRobin::type_url() {
            return Ok(LbPolicy::RoundRobin);
        }
        if any.type_url == WrrLocality::type_url() {
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
    }
    Err(": no supported policy (only round_robin, optionally inside wrr_locality, is supported yet)".into())
}
