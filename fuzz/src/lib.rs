//! Shared pieces of the mesh-client fuzz targets (issue 8): template xDS resources that
//! mesh-client's validators accept (gRFC A27, A28, A41), and the "template plus tail"
//! construction that lets byte-level fuzzing reach deep validation.
//!
//! Concatenated protobuf encodings decode as one merged message (singular fields: last one
//! wins; repeated fields: appended; sub-messages: merged). So
//! `decode(template.encode() ‖ fuzz bytes)` starts from a valid resource and lets the
//! fuzzer add, replace and extend any field, instead of having to find a valid Listener
//! from nothing.

// The templates use the deprecated header matcher forms too: control planes still send them.
#![allow(deprecated)]

use std::collections::HashMap;

use prost::Message;
use xds_proto::any::pack;
use xds_proto::envoy::envoy::config::cluster::v3::Cluster;
use xds_proto::envoy::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy,
};
use xds_proto::envoy::envoy::config::core::v3::{
    Address, AggregatedConfigSource, CidrRange, ConfigSource, Locality, SocketAddress, address,
    config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use xds_proto::envoy::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use xds_proto::envoy::envoy::config::listener::v3::{ApiListener, Filter, FilterChain, Listener};
use xds_proto::envoy::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac as RbacRules, permission, principal,
};
use xds_proto::envoy::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster, header_matcher::HeaderMatchSpecifier, route::Action,
    route_action::ClusterSpecifier, route_match::PathSpecifier, weighted_cluster::ClusterWeight,
};
use xds_proto::envoy::envoy::extensions::filters::http::rbac::v3::Rbac;
use xds_proto::envoy::envoy::extensions::filters::http::router::v3::Router;
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier,
    http_filter::ConfigType,
};
use xds_proto::envoy::envoy::r#type::matcher::v3::{
    PathMatcher, RegexMatcher, StringMatcher, path_matcher, string_matcher::MatchPattern,
};
use xds_proto::protobuf::{Any, UInt32Value};

/// Resource names the targets draw from: few, so responses hit subscriptions often.
pub const NAMES: [&str; 4] = [
    "a",
    "b",
    "xdstp://auth/envoy.config.listener.v3.Listener/c",
    "",
];

/// `NAMES[i % len]`.
pub fn name(i: u8) -> &'static str {
    NAMES[usize::from(i) % NAMES.len()]
}

/// Decodes `template ‖ tail` as a `T`: the template with the tail's fields merged in.
pub fn merged<T: Message + Default>(template: &T, tail: &[u8]) -> Result<T, prost::DecodeError> {
    let mut bytes = template.encode_to_vec();
    bytes.extend_from_slice(tail);
    T::decode(bytes.as_slice())
}

fn ads() -> Option<ConfigSource> {
    Some(ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    })
}

fn router() -> HttpFilter {
    HttpFilter {
        name: "router".into(),
        config_type: Some(ConfigType::TypedConfig(pack(&Router::default()))),
        ..Default::default()
    }
}

fn string_matcher(pattern: MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    }
}

fn header(name: &str, spec: HeaderMatchSpecifier, invert: bool) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        invert_match: invert,
        header_match_specifier: Some(spec),
        ..Default::default()
    }
}

fn regex(re: &str) -> RegexMatcher {
    RegexMatcher {
        regex: re.into(),
        ..Default::default()
    }
}

/// A RouteConfiguration using most route matching features: domains of each form, path
/// prefix / exact / regex, header matchers of each kind, weighted clusters.
pub fn route_config(name: &str) -> RouteConfiguration {
    let route =
        |path: PathSpecifier, headers: Vec<HeaderMatcher>, cluster: ClusterSpecifier| Route {
            r#match: Some(RouteMatch {
                path_specifier: Some(path),
                headers,
                ..Default::default()
            }),
            action: Some(Action::Route(RouteAction {
                cluster_specifier: Some(cluster),
                ..Default::default()
            })),
            ..Default::default()
        };
    let one = |c: &str| ClusterSpecifier::Cluster(c.into());
    let split = ClusterSpecifier::WeightedClusters(WeightedCluster {
        clusters: vec![
            ClusterWeight {
                name: "a".into(),
                weight: Some(UInt32Value { value: 80 }),
                ..Default::default()
            },
            ClusterWeight {
                name: "b".into(),
                weight: Some(UInt32Value { value: 20 }),
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let routes = vec![
        route(
            PathSpecifier::Path("/pkg.Svc/Get".into()),
            vec![header(
                "x-env",
                HeaderMatchSpecifier::StringMatch(string_matcher(
                    MatchPattern::Prefix("can".into()),
                    true,
                )),
                false,
            )],
            one("a"),
        ),
        route(
            PathSpecifier::SafeRegex(regex("/pkg\\.Svc/(Put|Del).*")),
            vec![header(
                "x-id-bin",
                HeaderMatchSpecifier::PresentMatch(true),
                true,
            )],
            split,
        ),
        route(
            PathSpecifier::Prefix("/pkg.".into()),
            vec![header(
                "x-n",
                HeaderMatchSpecifier::SafeRegexMatch(regex("[0-9]+")),
                false,
            )],
            one("b"),
        ),
        route(PathSpecifier::Prefix(String::new()), Vec::new(), one("a")),
    ];
    RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![
            VirtualHost {
                name: "exact".into(),
                domains: vec!["greeter.default:8080".into(), "*.svc".into()],
                routes: routes.clone(),
                ..Default::default()
            },
            VirtualHost {
                name: "any".into(),
                domains: vec!["greeter*".into(), "*".into()],
                routes,
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// A client Listener whose HttpConnectionManager takes `route` from RDS, with an RBAC
/// filter before the router (which a client ignores or NACKs, as gRPC does).
pub fn listener(name: &str, route: &str) -> Listener {
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: ads(),
            route_config_name: route.into(),
        })),
        http_filters: vec![router()],
        ..Default::default()
    };
    Listener {
        name: name.into(),
        api_listener: Some(ApiListener {
            api_listener: Some(pack(&hcm)),
        }),
        ..Default::default()
    }
}

/// A server Listener (gRFC A36): an address, one filter chain with an HCM carrying an
/// inline route configuration and the RBAC filter then the router.
pub fn server_listener(name: &str) -> Listener {
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::RouteConfig(route_config("inbound"))),
        http_filters: vec![
            HttpFilter {
                name: "rbac".into(),
                config_type: Some(ConfigType::TypedConfig(pack(&rbac()))),
                ..Default::default()
            },
            router(),
        ],
        ..Default::default()
    };
    Listener {
        name: name.into(),
        address: Some(socket_address("0.0.0.0", 8080)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "hcm".into(),
                config_type: Some(
                    xds_proto::envoy::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
                        pack(&hcm),
                    ),
                ),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn socket_address(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.into(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..Default::default()
        })),
    }
}

/// An EDS Cluster over ADS with round robin.
pub fn cluster(name: &str) -> Cluster {
    Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: ads(),
            service_name: String::new(),
        }),
        lb_policy: LbPolicy::RoundRobin as i32,
        ..Default::default()
    }
}

/// A ClusterLoadAssignment with one weighted locality of two endpoints.
pub fn endpoints(name: &str) -> ClusterLoadAssignment {
    let lb_endpoint = |ip: &str| LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
            address: Some(socket_address(ip, 80)),
            ..Default::default()
        })),
        load_balancing_weight: Some(UInt32Value { value: 2 }),
        ..Default::default()
    };
    ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            locality: Some(Locality {
                region: "region".into(),
                zone: "zone".into(),
                sub_zone: String::new(),
            }),
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            lb_endpoints: vec![lb_endpoint("10.0.0.1"), lb_endpoint("::1")],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An RBAC HTTP filter config (gRFC A41) with one policy per kind of permission and
/// principal, and shadow rules.
pub fn rbac() -> Rbac {
    let exact = |s: &str| string_matcher(MatchPattern::Exact(s.into()), false);
    let cidr = |ip: &str, len: u32| CidrRange {
        address_prefix: ip.into(),
        prefix_len: Some(UInt32Value { value: len }),
    };
    let perm = |rule: permission::Rule| Permission { rule: Some(rule) };
    let prin = |id: principal::Identifier| Principal {
        identifier: Some(id),
    };
    let mut policies = HashMap::new();
    policies.insert(
        "paths".to_string(),
        Policy {
            permissions: vec![
                perm(permission::Rule::UrlPath(PathMatcher {
                    rule: Some(path_matcher::Rule::Path(exact("/pkg.Svc/Get"))),
                })),
                perm(permission::Rule::NotRule(Box::new(perm(
                    permission::Rule::Header(header(
                        ":method",
                        HeaderMatchSpecifier::ExactMatch("POST".into()),
                        false,
                    )),
                )))),
            ],
            principals: vec![prin(principal::Identifier::Authenticated(
                principal::Authenticated {
                    principal_name: Some(string_matcher(
                        MatchPattern::Prefix("spiffe://cluster.local/".into()),
                        false,
                    )),
                },
            ))],
            ..Default::default()
        },
    );
    policies.insert(
        "network".to_string(),
        Policy {
            permissions: vec![perm(permission::Rule::AndRules(permission::Set {
                rules: vec![
                    perm(permission::Rule::DestinationIp(cidr("10.0.0.0", 8))),
                    perm(permission::Rule::DestinationPort(8080)),
                ],
            }))],
            principals: vec![prin(principal::Identifier::OrIds(principal::Set {
                ids: vec![
                    prin(principal::Identifier::RemoteIp(cidr("127.0.0.1", 32))),
                    prin(principal::Identifier::DirectRemoteIp(cidr("::1", 128))),
                    prin(principal::Identifier::Header(header(
                        "x-user",
                        HeaderMatchSpecifier::SafeRegexMatch(regex("adm.*")),
                        false,
                    ))),
                ],
            }))],
            ..Default::default()
        },
    );
    policies.insert(
        "any".to_string(),
        Policy {
            permissions: vec![perm(permission::Rule::Any(true))],
            principals: vec![prin(principal::Identifier::NotId(Box::new(prin(
                principal::Identifier::Any(true),
            ))))],
            ..Default::default()
        },
    );
    let rules = RbacRules {
        action: 0,
        policies,
        ..Default::default()
    };
    Rbac {
        rules: Some(rules.clone()),
        shadow_rules: Some(RbacRules { action: 1, ..rules }),
        ..Default::default()
    }
}

/// The template of each resource type, packed, by index: client Listener, RouteConfiguration,
/// Cluster, ClusterLoadAssignment, server Listener.
pub fn template_any(kind: u8, name: &str, tail: &[u8]) -> Any {
    fn pack_merged<T: Message + Default + prost::Name>(t: &T, tail: &[u8]) -> Any {
        let mut any = pack(t);
        any.value.extend_from_slice(tail);
        any
    }
    match kind % 5 {
        0 => pack_merged(&listener(name, "a"), tail),
        1 => pack_merged(&route_config(name), tail),
        2 => pack_merged(&cluster(name), tail),
        3 => pack_merged(&endpoints(name), tail),
        _ => pack_merged(&server_listener(name), tail),
    }
}

/// An xRFC TP3 `resource_errors` entry for `NAMES[name]` with status code `code % 20` (so
/// a few are out of the gRPC range), or, as servers may send, without a resource name or
/// without a status.
pub fn resource_error(
    name: u8,
    code: u8,
    named: bool,
    with_status: bool,
) -> xds_proto::envoy::envoy::service::discovery::v3::ResourceError {
    use xds_proto::envoy::envoy::service::discovery::v3::{ResourceError, ResourceName};
    ResourceError {
        resource_name: named.then(|| ResourceName {
            name: self::name(name).into(),
            ..Default::default()
        }),
        error_detail: with_status.then(|| xds_proto::envoy::google::rpc::Status {
            code: i32::from(code % 20),
            message: format!("fuzz error {code}"),
            details: Vec::new(),
        }),
    }
}

/// The usable `resource_errors` of a response as the client must read them (xRFC TP3):
/// by name, the first entry with a non-empty name and a status; its status code.
pub fn usable_resource_errors(
    errors: &[xds_proto::envoy::envoy::service::discovery::v3::ResourceError],
) -> std::collections::BTreeMap<String, i32> {
    let mut out = std::collections::BTreeMap::new();
    for e in errors {
        if let (Some(n), Some(s)) = (&e.resource_name, &e.error_detail)
            && !n.name.is_empty()
        {
            out.entry(n.name.clone()).or_insert(s.code);
        }
    }
    out
}

/// A resource type the ADS targets subscribe to.
#[derive(arbitrary::Arbitrary, Debug, Clone, Copy)]
pub enum Ty {
    Lds,
    Rds,
    Cds,
    Eds,
}

impl Ty {
    /// The mesh-client resource type.
    pub fn ty(self) -> mesh_client::xds::resource::ResourceType {
        use mesh_client::xds::resource::ResourceType;
        match self {
            Ty::Lds => ResourceType::Listener,
            Ty::Rds => ResourceType::RouteConfiguration,
            Ty::Cds => ResourceType::Cluster,
            Ty::Eds => ResourceType::ClusterLoadAssignment,
        }
    }
}

/// Checks the resource events of one response of type `ty` (SotW or delta) against the
/// model: each names a `subscribed` resource, once; a change carries its raw resource; an
/// invalid resource's error comes with a NACK (`nacked`); a server-reported error (xRFC
/// TP3) only for a usable `server_errors` entry, discarding the value exactly for a data
/// error (NOT_FOUND, PERMISSION_DENIED) under `fail_on_data_errors` (gRFC A88).
pub fn check_events(
    ty: mesh_client::xds::resource::ResourceType,
    events: &[mesh_client::xds::protocol::ResourceEvent],
    subscribed: Option<&std::collections::BTreeSet<String>>,
    nacked: bool,
    server_errors: &std::collections::BTreeMap<String, i32>,
    fail_on_data_errors: bool,
) {
    use mesh_client::xds::protocol::ResourceEventKind;
    let mut seen = std::collections::BTreeSet::new();
    for e in events {
        assert_eq!(e.ty, ty);
        assert!(seen.insert(e.name.clone()), "two events for {:?}", e.name);
        assert!(subscribed.is_some_and(|n| n.contains(&e.name)));
        match &e.kind {
            ResourceEventKind::Changed(r) => {
                assert_eq!(r.name(), e.name);
                assert_eq!(r.resource_type(), ty);
                assert!(
                    e.raw.is_some(),
                    "a change carries the raw resource for CSDS"
                );
            }
            // Only an invalid resource of the response gives these.
            ResourceEventKind::Error(message) | ResourceEventKind::Dropped(message) => {
                assert!(!message.is_empty());
                assert!(nacked, "an invalid resource NACKs the response");
            }
            // xRFC TP3: only for a usable resource_errors entry of this name; a data error
            // discards the value exactly under fail_on_data_errors. It may come with an ACK.
            ResourceEventKind::ReceivedError { message, discard } => {
                let code = server_errors.get(&e.name).unwrap_or_else(|| {
                    panic!("server error event for {:?} not in resource_errors", e.name)
                });
                assert!(message.starts_with("the xDS server reported "), "{message}");
                assert_eq!(
                    *discard,
                    matches!(code, 5 | 7) && fail_on_data_errors,
                    "discard only a data error under fail_on_data_errors"
                );
            }
            ResourceEventKind::DoesNotExist
            | ResourceEventKind::DeletionIgnored
            | ResourceEventKind::TimedOut(_) => {}
        }
    }
}
