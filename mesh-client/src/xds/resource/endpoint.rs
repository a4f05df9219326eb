//! EDS: validation of `ClusterLoadAssignment` resources into
//! [`config::ClusterLoadAssignment`] (gRFC A27; duplicate and priority checks as grpc-go).
//!
//! Localities with weight 0 or unset are ignored (A27). NACKed: a locality without
//! `locality`, a locality repeated within a priority, a sum of locality weights in a
//! priority above `u32::MAX`, priorities that are not contiguous from 0, an endpoint of
//! weight 0, an address that is not an IP with a numeric port, the same address twice.
//! `policy.overprovisioning_factor` is kept for gentle failover (Envoy semantics, beyond
//! gRPC, which ignores it); 0 is treated as unset rather than NACKed, as gRPC accepts any
//! value. `policy.drop_overloads` and `additional_addresses` are ignored for now. An endpoint's
//! `metadata.filter_metadata["envoy.lb"].hash_key` string is its ring-hash key (gRFC A76).

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use xds_proto::envoy::envoy::config::core::v3::{
    HealthStatus as HealthProto, address::Address as AddressKind, socket_address::PortSpecifier,
};
use xds_proto::envoy::envoy::config::endpoint::v3::{LbEndpoint, lb_endpoint::HostIdentifier};

use crate::config::{self, Endpoint, HealthStatus, LocalityEndpoints, LocalityName};
use xds_proto::protobuf::value::Kind as ValueKind;

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
        // Sized up front: collecting a `Result` iterator grows the vector by doubling, and
        // the slack would live as long as the config.
        let mut endpoints = Vec::with_capacity(l.lb_endpoints.len());
        for (j, e) in l.lb_endpoints.iter().enumerate() {
            endpoints.push(
                endpoint(e, &mut seen_addrs).map_err(|m| at(format!("lb_endpoints[{j}].{m}")))?,
            );
        }
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
    let overprovisioning_factor = cla
        .policy
        .as_ref()
        .and_then(|p| p.overprovisioning_factor)
        .map(|f| f.value)
        .filter(|f| *f > 0);
    Ok(config::ClusterLoadAssignment {
        cluster_name: cla.cluster_name.clone(),
        localities,
        overprovisioning_factor,
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
    // gRFC A76: the ring-hash key from the `envoy.lb` metadata's `hash_key` string.
    let hash_key = e
        .metadata
        .as_ref()
        .and_then(|m| m.filter_metadata.get("envoy.lb"))
        .and_then(|s| s.fields.get("hash_key"))
        .and_then(|v| match &v.kind {
            Some(ValueKind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        });
    Ok(Endpoint {
        address,
        weight,
        health,
        hash_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClusterLoadAssignment;
    use crate::xds::resource::testing::{Expect, Expect::*, run};
    use crate::xds::resource::{Resource, ResourceType};
    use xds_proto::any::pack;
    use xds_proto::envoy::envoy::config::core::v3::{Address, Locality, SocketAddress};
    use xds_proto::envoy::envoy::config::endpoint::v3::{
        Endpoint as EndpointProto, LocalityLbEndpoints,
    };
    use xds_proto::protobuf::{Any, UInt32Value};

    fn ep(addr: &str, port: PortSpecifier) -> LbEndpoint {
        LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(EndpointProto {
                address: Some(Address {
                    address: Some(AddressKind::SocketAddress(SocketAddress {
                        address: addr.into(),
                        port_specifier: Some(port),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn ep4(addr: &str, port: u32) -> LbEndpoint {
        ep(addr, PortSpecifier::PortValue(port))
    }

    fn loc(
        zone: &str,
        weight: Option<u32>,
        priority: u32,
        eps: Vec<LbEndpoint>,
    ) -> LocalityLbEndpoints {
        LocalityLbEndpoints {
            locality: Some(Locality {
                region: "r".into(),
                zone: zone.into(),
                sub_zone: String::new(),
            }),
            load_balancing_weight: weight.map(|value| UInt32Value { value }),
            priority,
            lb_endpoints: eps,
            ..Default::default()
        }
    }

    fn cla(locs: Vec<LocalityLbEndpoints>) -> Any {
        pack(&ClusterLoadAssignmentProto {
            cluster_name: "e1".into(),
            endpoints: locs,
            ..Default::default()
        })
    }

    fn with_factor(factor: Option<u32>) -> Any {
        use xds_proto::envoy::envoy::config::endpoint::v3::cluster_load_assignment::Policy;
        pack(&ClusterLoadAssignmentProto {
            cluster_name: "e1".into(),
            endpoints: vec![loc("z1", Some(1), 0, vec![ep4("10.0.0.1", 80)])],
            policy: Some(Policy {
                overprovisioning_factor: factor.map(|value| UInt32Value { value }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn rows() -> Vec<(&'static str, Any, Expect<ClusterLoadAssignment>)> {
        vec![
            (
                // A27: localities with weights, endpoints with IP:port; weight defaults to 1.
                "basic",
                cla(vec![loc(
                    "z1",
                    Some(3),
                    0,
                    vec![ep4("10.0.0.1", 80), {
                        let mut e = ep4("10.0.0.2", 81);
                        e.load_balancing_weight = Some(UInt32Value { value: 5 });
                        e
                    }],
                )]),
                Accepted(|c| {
                    c.cluster_name == "e1"
                        && c.localities.len() == 1
                        && c.localities[0].weight == 3
                        && c.localities[0].locality.zone == "z1"
                        && c.localities[0].endpoints[0].address.to_string() == "10.0.0.1:80"
                        && c.localities[0].endpoints[0].weight == 1
                        && c.localities[0].endpoints[1].weight == 5
                        && c.localities[0].endpoints[0].health == HealthStatus::Unknown
                }),
            ),
            (
                // A27: IPv6 addresses.
                "ipv6",
                cla(vec![loc("z1", Some(1), 0, vec![ep4("::1", 8080)])]),
                Accepted(|c| c.localities[0].endpoints[0].address.to_string() == "[::1]:8080"),
            ),
            (
                // A27: a locality with weight 0 or unset is ignored.
                "locality weight 0",
                cla(vec![
                    loc("z0", Some(0), 0, vec![ep4("10.0.0.9", 80)]),
                    loc("zu", None, 0, vec![ep4("10.0.0.8", 80)]),
                    loc("z1", Some(1), 0, vec![ep4("10.0.0.1", 80)]),
                ]),
                Ignored("localities of weight 0", |c| {
                    c.localities.len() == 1 && c.localities[0].locality.zone == "z1"
                }),
            ),
            (
                // grpc-go: a locality without its name NACKs.
                "locality missing",
                cla(vec![LocalityLbEndpoints {
                    locality: None,
                    ..loc("z", Some(1), 0, vec![])
                }]),
                Nack("cluster_load_assignment \"e1\": endpoints[0].locality: missing"),
            ),
            (
                // grpc-go: an endpoint weight, if set, must be >= 1.
                "endpoint weight 0",
                cla(vec![loc(
                    "z1",
                    Some(1),
                    0,
                    vec![{
                        let mut e = ep4("10.0.0.1", 80);
                        e.load_balancing_weight = Some(UInt32Value { value: 0 });
                        e
                    }],
                )]),
                Nack("endpoints[0].lb_endpoints[0].load_balancing_weight: must be > 0"),
            ),
            (
                // A27: gRPC connects to IPs from EDS; a hostname is not an address.
                "hostname address",
                cla(vec![loc("z1", Some(1), 0, vec![ep4("backend.local", 80)])]),
                Nack(
                    "endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: \"backend.local\" is not an IP address",
                ),
            ),
            (
                // A27: only numeric ports.
                "named port",
                cla(vec![loc(
                    "z1",
                    Some(1),
                    0,
                    vec![ep("10.0.0.1", PortSpecifier::NamedPort("http".into()))],
                )]),
                Nack("socket_address.named_port: \"http\": named ports are not supported"),
            ),
            (
                // Ports above 65535 cannot be dialled.
                "port out of range",
                cla(vec![loc("z1", Some(1), 0, vec![ep4("10.0.0.1", 70_000)])]),
                Nack("socket_address.port_value: 70000 is out of range"),
            ),
            (
                // grpc-go: the same address twice in one resource NACKs.
                "duplicate address",
                cla(vec![
                    loc("z1", Some(1), 0, vec![ep4("10.0.0.1", 80)]),
                    loc("z2", Some(1), 0, vec![ep4("10.0.0.1", 80)]),
                ]),
                Nack(
                    "endpoints[1].lb_endpoints[0].endpoint.address: duplicate endpoint address 10.0.0.1:80",
                ),
            ),
            (
                // grpc-go: a locality may appear once per priority.
                "duplicate locality",
                cla(vec![
                    loc("z1", Some(1), 0, vec![ep4("10.0.0.1", 80)]),
                    loc("z1", Some(1), 0, vec![ep4("10.0.0.2", 80)]),
                ]),
                Nack("endpoints[1].locality: duplicate locality"),
            ),
            (
                // A52/grpc-go: the same locality at two priorities is fine.
                "same locality at two priorities",
                cla(vec![
                    loc("z1", Some(1), 0, vec![ep4("10.0.0.1", 80)]),
                    loc("z1", Some(1), 1, vec![ep4("10.0.0.2", 80)]),
                ]),
                Accepted(|c| c.localities.len() == 2 && c.localities[1].priority == 1),
            ),
            (
                // grpc-go: priorities must be contiguous from 0.
                "priority gap",
                cla(vec![
                    loc("z1", Some(1), 0, vec![ep4("10.0.0.1", 80)]),
                    loc("z2", Some(1), 2, vec![ep4("10.0.0.2", 80)]),
                ]),
                Nack("endpoints: priority 1 is missing"),
            ),
            (
                // grpc-go: the locality weights of a priority must fit in u32.
                "locality weight overflow",
                cla(vec![
                    loc("z1", Some(u32::MAX), 0, vec![ep4("10.0.0.1", 80)]),
                    loc("z2", Some(1), 0, vec![ep4("10.0.0.2", 80)]),
                ]),
                Nack(
                    "endpoints[1].load_balancing_weight: sum of locality weights at priority 0 exceeds u32::MAX",
                ),
            ),
            (
                // A27: health_status is carried; only UNKNOWN/HEALTHY are usable.
                "health status",
                cla(vec![loc(
                    "z1",
                    Some(1),
                    0,
                    vec![
                        {
                            let mut e = ep4("10.0.0.1", 80);
                            e.health_status = HealthProto::Draining as i32;
                            e
                        },
                        {
                            let mut e = ep4("10.0.0.2", 80);
                            e.health_status = HealthProto::Healthy as i32;
                            e
                        },
                    ],
                )]),
                Accepted(|c| {
                    c.localities[0].endpoints[0].health == HealthStatus::Draining
                        && !c.localities[0].endpoints[0].health.is_usable()
                        && c.localities[0].endpoints[1].health == HealthStatus::Healthy
                }),
            ),
            (
                // A27: an empty assignment is valid (the cluster simply has no endpoints).
                "empty",
                cla(vec![]),
                Accepted(|c| c.localities.is_empty() && c.overprovisioning_factor.is_none()),
            ),
            (
                // Envoy gentle failover: the factor is kept (gRPC ignores it).
                "overprovisioning factor kept",
                with_factor(Some(140)),
                Accepted(|c| c.overprovisioning_factor == Some(140)),
            ),
            (
                // 0 is not NACKed (gRPC accepts anything here): treated as unset.
                "overprovisioning factor 0 is unset",
                with_factor(Some(0)),
                Accepted(|c| c.overprovisioning_factor.is_none()),
            ),
            (
                "policy without a factor",
                with_factor(None),
                Accepted(|c| c.overprovisioning_factor.is_none()),
            ),
        ]
    }

    #[test]
    fn hash_key_from_envoy_lb_metadata_a76() {
        use xds_proto::envoy::envoy::config::core::v3::Metadata;
        use xds_proto::protobuf::{Struct, Value};
        let with_key = |v: Option<ValueKind>| {
            let mut e = ep4("10.0.0.1", 80);
            let mut fields = std::collections::BTreeMap::new();
            if let Some(kind) = v {
                fields.insert("hash_key".to_string(), Value { kind: Some(kind) });
            }
            let mut md = Metadata::default();
            md.filter_metadata.insert(
                "envoy.lb".into(),
                Struct {
                    fields: fields.into_iter().collect(),
                },
            );
            e.metadata = Some(md);
            endpoint(&e, &mut HashSet::new()).map(|e| e.hash_key)
        };
        assert_eq!(
            with_key(Some(ValueKind::StringValue("pod-0".into()))),
            Ok(Some("pod-0".into()))
        );
        // Empty, non-string or missing: the address is hashed.
        assert_eq!(
            with_key(Some(ValueKind::StringValue(String::new()))),
            Ok(None)
        );
        assert_eq!(with_key(Some(ValueKind::NumberValue(1.0))), Ok(None));
        assert_eq!(with_key(None), Ok(None));
    }

    #[test]
    fn eds_validation_table() {
        run(ResourceType::ClusterLoadAssignment, rows(), |r| match r {
            Resource::Endpoints(e) => Some(e),
            _ => None,
        });
    }
}
