//! Inputs for the criterion micro-benchmarks (issue 9): packed EDS, CDS and RDS resources of
//! a chosen size, built as a control plane would send them (gRFC A27 resource shapes, A28
//! route matchers). Addresses are 127.x.y.z: nothing is ever dialled.

use std::net::{Ipv4Addr, SocketAddr};

use prost::Message;
use xds_proto::any::pack;
use xds_proto::envoy::envoy::config::cluster::v3 as cluster;
use xds_proto::envoy::envoy::config::core::v3 as core;
use xds_proto::envoy::envoy::config::endpoint::v3 as endpoint;
use xds_proto::envoy::envoy::config::route::v3 as route;
use xds_proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
use xds_proto::envoy::envoy::r#type::matcher::v3 as matcher;
use xds_proto::protobuf::{Any, Duration as ProtoDuration, UInt32Value};
use xds_proto::type_url;

/// Endpoints per locality in [`cla`].
pub const ENDPOINTS_PER_LOCALITY: usize = 100;

/// The address of endpoint `i`: 127.x.y.z:8080, distinct for `i < 2^24`.
pub fn endpoint_addr(i: usize) -> SocketAddr {
    let low = u32::try_from(i).unwrap_or(u32::MAX) & 0x00ff_ffff;
    SocketAddr::from((Ipv4Addr::from(0x7f00_0000 | low), 8080))
}

fn socket_address(addr: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// A ClusterLoadAssignment for `cluster_name` with `n` HEALTHY endpoints of weight 1, in
/// localities of [`ENDPOINTS_PER_LOCALITY`] (weight 1, priority 0), packed in an `Any`.
pub fn cla(cluster_name: &str, n: usize) -> Any {
    let endpoints = (0..n)
        .collect::<Vec<_>>()
        .chunks(ENDPOINTS_PER_LOCALITY)
        .enumerate()
        .map(|(l, chunk)| endpoint::LocalityLbEndpoints {
            locality: Some(core::Locality {
                region: "region-1".to_string(),
                zone: format!("zone-{l}"),
                sub_zone: String::new(),
            }),
            lb_endpoints: chunk
                .iter()
                .map(|&i| endpoint::LbEndpoint {
                    health_status: core::HealthStatus::Healthy as i32,
                    load_balancing_weight: Some(UInt32Value { value: 1 }),
                    host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                        endpoint::Endpoint {
                            address: Some(socket_address(endpoint_addr(i))),
                            ..Default::default()
                        },
                    )),
                    ..Default::default()
                })
                .collect(),
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            priority: 0,
            ..Default::default()
        })
        .collect();
    pack(&endpoint::ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints,
        ..Default::default()
    })
}

fn ads() -> core::ConfigSource {
    core::ConfigSource {
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource::default(),
        )),
        resource_api_version: core::ApiVersion::V3 as i32,
        ..Default::default()
    }
}

/// An EDS cluster as a mesh control plane sends it: ADS config source, round robin,
/// a connect timeout and a circuit breaker threshold.
pub fn eds_cluster(name: &str) -> cluster::Cluster {
    cluster::Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: name.to_string(),
        }),
        lb_policy: cluster::cluster::LbPolicy::RoundRobin as i32,
        connect_timeout: Some(ProtoDuration {
            seconds: 5,
            nanos: 0,
        }),
        circuit_breakers: Some(cluster::CircuitBreakers {
            thresholds: vec![cluster::circuit_breakers::Thresholds {
                max_requests: Some(UInt32Value { value: 1024 }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The wire bytes of a CDS DiscoveryResponse with `n` EDS clusters (`cluster-0` …).
pub fn cds_response(n: usize) -> Vec<u8> {
    DiscoveryResponse {
        version_info: "1".to_string(),
        resources: (0..n)
            .map(|i| pack(&eds_cluster(&format!("cluster-{i}"))))
            .collect(),
        type_url: type_url::CLUSTER.to_string(),
        nonce: "n1".to_string(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// How the routes of [`route_config`] match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Route `i`: prefix `/svc{i}.Api/`, exact header `x-tenant: tenant-{i}` and a
    /// present `x-request-id`.
    Header,
    /// Route `i`: safe-regex path `/svc{i}\.Api/(Get|List)[A-Za-z]*` and safe-regex header
    /// `x-version: v{i}\.[0-9]+`.
    Regex,
}

fn string_header(
    name: &str,
    pattern: matcher::string_matcher::MatchPattern,
) -> route::HeaderMatcher {
    route::HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(route::header_matcher::HeaderMatchSpecifier::StringMatch(
            matcher::StringMatcher {
                match_pattern: Some(pattern),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

fn regex(re: String) -> matcher::RegexMatcher {
    matcher::RegexMatcher {
        regex: re,
        ..Default::default()
    }
}

/// A RouteConfiguration `routes` with three virtual hosts (`other-a`, `other-b`, then
/// `svc.example.com` with `n` routes of `kind` and no catch-all), packed in an `Any`.
pub fn route_config(n: usize, kind: RouteKind) -> Any {
    use matcher::string_matcher::MatchPattern;
    let routes = (0..n)
        .map(|i| {
            let (path, headers) = match kind {
                RouteKind::Header => (
                    route::route_match::PathSpecifier::Prefix(format!("/svc{i}.Api/")),
                    vec![
                        string_header("x-tenant", MatchPattern::Exact(format!("tenant-{i}"))),
                        route::HeaderMatcher {
                            name: "x-request-id".to_string(),
                            header_match_specifier: Some(
                                route::header_matcher::HeaderMatchSpecifier::PresentMatch(true),
                            ),
                            ..Default::default()
                        },
                    ],
                ),
                RouteKind::Regex => (
                    route::route_match::PathSpecifier::SafeRegex(regex(format!(
                        r"/svc{i}\.Api/(Get|List)[A-Za-z]*"
                    ))),
                    vec![string_header(
                        "x-version",
                        MatchPattern::SafeRegex(regex(format!(r"v{i}\.[0-9]+"))),
                    )],
                ),
            };
            route::Route {
                name: format!("r{i}"),
                r#match: Some(route::RouteMatch {
                    path_specifier: Some(path),
                    headers,
                    ..Default::default()
                }),
                action: Some(route::route::Action::Route(route::RouteAction {
                    cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                        format!("cluster-{i}"),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }
        })
        .collect();
    let vh = |name: &str, domains: &[&str], routes| route::VirtualHost {
        name: name.to_string(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        ..Default::default()
    };
    pack(&route::RouteConfiguration {
        name: "routes".to_string(),
        virtual_hosts: vec![
            vh("other-a", &["a.example.com", "*.a.example.com"], Vec::new()),
            vh("other-b", &["b.example.com"], Vec::new()),
            vh("svc", &["svc.example.com", "svc.example.com:8080"], routes),
        ],
        ..Default::default()
    })
}

/// The `:path` and headers of a request that matches only route `i` of
/// [`route_config`]`(_, kind)`.
pub fn request_for(i: usize, kind: RouteKind) -> (String, http::HeaderMap) {
    let mut headers = http::HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = http::HeaderValue::try_from(value) {
            headers.insert(name, v);
        }
    };
    put("content-type", "application/grpc".to_string());
    put("x-request-id", "0f3e5a7c".to_string());
    match kind {
        RouteKind::Header => put("x-tenant", format!("tenant-{i}")),
        RouteKind::Regex => put("x-version", format!("v{i}.3")),
    }
    (format!("/svc{i}.Api/GetThing"), headers)
}
