//! EDS: validation of `ClusterLoadAssignment` resources into
//! [`config::ClusterLoadAssignment`] (gRFC A27; duplicate and priority checks as grpc-go).
//!
//! Localities with weight 0 or unset are ignored (A27). NACKed: a locality without
//! `locality`, a locality repeated within a priority, a sum of locality weights in a
//! priority above `u32::MAX`, priorities that are not contiguous from 0, an endpoint of
//! weight 0, an address that is not an IP with a numeric port, the same address twice.
//! `policy.drop_overloads` and `additional_addresses` are ignored for now.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use xds_proto::envoy::envoy::config::core::v3::{
    HealthStatus as HealthProto, address::Address as AddressKind, socket_address::PortSpecifier,
};
use xds_proto::envoy::envoy::config::endpoint::v3::{LbEndpoint, lb_endpoint::HostIdentifier};

use crate::config::{self, Endpoint, HealthStatus, LocalityEndpoints, LocalityName};

/// The protobuf message validated here.
pub use xds_proto::envoy::envoy::config::endpoint::v3::ClusterLoadAssignment as ClusterLoadAssignmentProto;

/// Validates a ClusterLoadAssignment. Errors are field paths relative to the resource.
pub fn validate(cla: &ClusterLoadAssignmentProto) -> Result<config::ClusterLoadAssignment, String> {
    let mut localities = Vec::with_capacity(cla.endpoints.len());
    let mut weight_sums: BTreeMap<u32, u64> = BTreeMap::new();
    let mut seen_localities: HashSet<(u32, LocalityName)> = HashSet::new();
    let mut seen_addrs: HashSet<SocketAddr> = HashSet::new();
    for (i, l) in cla.endpoints.iter().enumerate() {
        let at = |e: String| format!("endpoints[{i}].{e}");
        let loc = l
            .locality
            .as_ref()
            .ok_or_else(|| at("locality: missing".into()))?;
        let weight = l.load_balancing_weight.map(|w| w.value).unwrap_or(0);
        if weight == 0 {
            continue;
        }
        let sum = weight_sums.entry(l.priority).or_default();
        *sum += u64::from(weight);
        if *sum > u64::from(u32::MAX) {
            return Err(at(format!(
                "load_balancing_weight: sum of locality weights at priority {} exceeds u32::MAX",
                l.priority
            )));
        }
        let name = LocalityName {
            region: loc.region.clone(),
            zone: loc.zone.clone(),
            sub_zone: loc.sub_zone.clone(),
        };
        if !seen_localities.insert((l.priority, name.clone())) {
            return Err(at(format!(
                "locality: duplicate locality {name:?} at priority {}",
                l.priority
            )));
        }
        let endpoints = l
            .lb_endpoints
            .iter()
            .enumerate()
            .map(|(j, e)| {
                endpoint(e, &mut seen_addrs).map_err(|m| at(format!("lb_endpoints[{j}].{m}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        localities.push(LocalityEndpoints {
            locality: name,
            weight,
            priority: l.priority,
            endpoints,
        });
    }
    // grpc-go: priorities must be 0..n with no gaps.
    for (expected, priority) in weight_sums.keys().enumerate() {
        if u32::try_from(expected).ok() != Some(*priority) {
            return Err(format!(
                "endpoints: priority {expected} is missing (priorities must be contiguous from 0)"
            ));
        }
    }
    Ok(config::ClusterLoadAssignment {
        cluster_name: cla.cluster_name.clone(),
        localities,
    })
}

fn endpoint(e: &LbEndpoint, seen: &mut HashSet<SocketAddr>) -> Result<Endpoint, String> {
    // grpc-go: if set, the weight must be at least 1.
    let weight = match e.load_balancing_weight {
        Some(w) if w.value == 0 => return Err("load_balancing_weight: must be > 0".into()),
        Some(w) => w.value,
        None => 1,
    };
    let ep = match &e.host_identifier {
        Some(HostIdentifier::Endpoint(ep)) => ep,
        Some(HostIdentifier::EndpointName(_)) => {
            return Err("endpoint_name: named endpoints are not supported".into());
        }
        None => return Err("endpoint: missing".into()),
    };
    let sa = match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(AddressKind::SocketAddress(sa)) => sa,
        Some(_) => return Err("endpoint.address: must be a socket_address".into()),
        None => return Err("endpoint.address: missing".into()),
    };
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        format!(
            "endpoint.address.socket_address.address: {:?} is not an IP address",
            sa.address
        )
    })?;
    let port = match &sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(*p).map_err(|_| {
            format!("endpoint.address.socket_address.port_value: {p} is out of range")
        })?,
        Some(PortSpecifier::NamedPort(n)) => {
            return Err(format!(
                "endpoint.address.socket_address.named_port: {n:?}: named ports are not supported"
            ));
        }
        None => return Err("endpoint.address.socket_address.port_value: missing".into()),
    };
    let address = SocketAddr::new(ip, port);
    if !seen.insert(address) {
        return Err(format!(
            "endpoint.address: duplicate endpoint address {address}"
        ));
    }
    let health = match HealthProto::try_from(e.health_status) {
        Ok(HealthProto::Unknown) => HealthStatus::Unknown,
        Ok(HealthProto::Healthy) => HealthStatus::Healthy,
        Ok(HealthProto::Unhealthy) => HealthStatus::Unhealthy,
        Ok(HealthProto::Draining) => HealthStatus::Draining,
        Ok(HealthProto::Timeout) => HealthStatus::Timeout,
        Ok(HealthProto::Degraded) => HealthStatus::Degraded,
        // A value from a newer API: gRPC only uses UNKNOWN and HEALTHY, so never use it.
        Err(_) => HealthStatus::Unhealthy,
    };
    Ok(Endpoint {
        address,
        weight,
        health,
    })
}
