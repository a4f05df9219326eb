//! Test fixtures: xDS resources, packed as `Any`, that the real validators of
//! [`super::resource`] accept (and one they reject), for the protocol, client and
//! dependency-manager tests.

use xds_proto::any::pack;
use xds_proto::envoy::envoy::config::cluster::v3::Cluster;
use xds_proto::envoy::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig, LbPolicy,
};
use xds_proto::envoy::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ConfigSource, Locality, SocketAddress, address,
    config_source::ConfigSourceSpecifier, socket_address::PortSpecifier,
};
use xds_proto::envoy::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};
use xds_proto::envoy::envoy::config::listener::v3::{ApiListener, Listener};
use xds_proto::envoy::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route::Action,
    route_action::ClusterSpecifier, route_match::PathSpecifier,
};
use xds_proto::envoy::envoy::extensions::filters::http::router::v3::Router;
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager::RouteSpecifier,
    http_filter::ConfigType,
};
use xds_proto::protobuf::{Any, UInt32Value};

/// The NACK message of [`listener_without_api_listener`] (without the `listener "name": `
/// prefix of the full error).
pub(crate) const NO_API_LISTENER: &str =
    "api_listener: missing (server-side listeners are not handled here)";

fn ads() -> Option<ConfigSource> {
    Some(ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    })
}

/// A client Listener: an HttpConnectionManager taking `route_config_name` from RDS over
/// ADS, with the router filter.
pub(crate) fn listener(name: &str, route_config_name: &str) -> Any {
    let hcm = HttpConnectionManager {
        route_specifier: Some(RouteSpecifier::Rds(Rds {
            config_source: ads(),
            route_config_name: route_config_name.into(),
        })),
        http_filters: vec![HttpFilter {
            name: "router".into(),
            config_type: Some(ConfigType::TypedConfig(pack(&Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    };
    pack(&Listener {
        name: name.into(),
        api_listener: Some(ApiListener {
            api_listener: Some(pack(&hcm)),
        }),
        ..Default::default()
    })
}

/// A Listener without `api_listener` (a server-side listener): NACKed by the client with
/// [`NO_API_LISTENER`].
pub(crate) fn listener_without_api_listener(name: &str) -> Any {
    pack(&Listener {
        name: name.into(),
        ..Default::default()
    })
}

/// A RouteConfiguration with one virtual host for `domains`, whose routes send each path
/// prefix to a cluster, in order.
pub(crate) fn route_config(name: &str, domains: &[&str], routes: &[(&str, &str)]) -> Any {
    let routes = routes
        .iter()
        .map(|(prefix, cluster)| Route {
            r#match: Some(RouteMatch {
                path_specifier: Some(PathSpecifier::Prefix(prefix.to_string())),
                ..Default::default()
            }),
            action: Some(Action::Route(RouteAction {
                cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    pack(&RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: format!("{name}-vh"),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes,
            ..Default::default()
        }],
        ..Default::default()
    })
}

/// A RouteConfiguration sending everything (prefix `""`) for any authority to `cluster`.
pub(crate) fn route_to(name: &str, cluster: &str) -> Any {
    route_config(name, &["*"], &[("", cluster)])
}

/// An EDS Cluster over ADS, ROUND_ROBIN; its EDS resource is `service_name`, or the
/// cluster's own name when empty.
pub(crate) fn eds_cluster(name: &str, service_name: &str) -> Any {
    pack(&Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: ads(),
            service_name: service_name.into(),
        }),
        lb_policy: LbPolicy::RoundRobin as i32,
        ..Default::default()
    })
}

/// An aggregate Cluster (gRFC A37) over `children`, highest priority first.
pub(crate) fn aggregate_cluster(name: &str, children: &[&str]) -> Any {
    use xds_proto::envoy::envoy::config::cluster::v3::cluster::CustomClusterType;
    use xds_proto::envoy::envoy::extensions::clusters::aggregate::v3::ClusterConfig;
    pack(&Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
            name: "envoy.clusters.aggregate".into(),
            typed_config: Some(pack(&ClusterConfig {
                clusters: children.iter().map(|c| c.to_string()).collect(),
            })),
        })),
        lb_policy: LbPolicy::ClusterProvided as i32,
        ..Default::default()
    })
}

/// A LOGICAL_DNS Cluster (gRFC A37) resolving `host:port`.
pub(crate) fn dns_cluster(name: &str, host: &str, port: u32) -> Any {
    pack(&Cluster {
        name: name.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::LogicalDns as i32)),
        lb_policy: LbPolicy::RoundRobin as i32,
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(Address {
                            address: Some(address::Address::SocketAddress(SocketAddress {
                                address: host.into(),
                                port_specifier: Some(PortSpecifier::PortValue(port)),
                                ..Default::default()
                            })),
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// An EDS Cluster whose EDS resource has the cluster's name.
pub(crate) fn cluster(name: &str) -> Any {
    eds_cluster(name, "")
}

/// A ClusterLoadAssignment with one locality of weight 1 holding these `ip:port`
/// endpoints.
pub(crate) fn endpoints(name: &str, addrs: &[&str]) -> Any {
    let lb_endpoints = addrs
        .iter()
        .map(|a| {
            let addr: std::net::SocketAddr = a.parse().expect("fixture address is ip:port");
            LbEndpoint {
                host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                    address: Some(Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: addr.ip().to_string(),
                            port_specifier: Some(PortSpecifier::PortValue(u32::from(addr.port()))),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                })),
                ..Default::default()
            }
        })
        .collect();
    pack(&ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            locality: Some(Locality {
                region: "region".into(),
                zone: "zone".into(),
                sub_zone: String::new(),
            }),
            load_balancing_weight: Some(UInt32Value { value: 1 }),
            lb_endpoints,
            ..Default::default()
        }],
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterKind, RouteAction as Action, RouteSource};
    use crate::xds::resource::{Resource, ResourceType, decode};

    #[test]
    fn fixtures_pass_the_real_validators() {
        match decode(ResourceType::Listener, &listener("l", "r")) {
            Ok(Resource::Listener(l)) => {
                assert_eq!(l.name, "l");
                assert_eq!(l.http.route_source, RouteSource::Rds("r".into()));
            }
            other => panic!("{other:?}"),
        }
        match decode(
            ResourceType::RouteConfiguration,
            &route_config("r", &["svc"], &[("/a/", "ca"), ("", "cb")]),
        ) {
            Ok(Resource::RouteConfig(rc)) => {
                let vh = rc.find_virtual_host("svc").expect("vhost for svc");
                let clusters: Vec<_> = vh
                    .routes
                    .iter()
                    .map(|r| match &r.action {
                        Action::Forward { clusters, .. } => clusters[0].name.clone(),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(clusters, ["ca", "cb"]);
            }
            other => panic!("{other:?}"),
        }
        match decode(ResourceType::Cluster, &eds_cluster("c", "svc-c")) {
            Ok(Resource::Cluster(c)) => {
                assert_eq!(c.name, "c");
                assert_eq!(
                    c.kind,
                    ClusterKind::Eds {
                        service_name: "svc-c".into()
                    }
                );
            }
            other => panic!("{other:?}"),
        }
        match decode(
            ResourceType::ClusterLoadAssignment,
            &endpoints("e", &["10.0.0.1:80", "[::1]:81"]),
        ) {
            Ok(Resource::Endpoints(e)) => {
                let addrs: Vec<_> = e.localities[0]
                    .endpoints
                    .iter()
                    .map(|e| e.address.to_string())
                    .collect();
                assert_eq!(addrs, ["10.0.0.1:80", "[::1]:81"]);
            }
            other => panic!("{other:?}"),
        }
        let err = decode(ResourceType::Listener, &listener_without_api_listener("l"))
            .expect_err("NACKed");
        assert_eq!(
            err.to_string(),
            format!("listener \"l\": {NO_API_LISTENER}")
        );
    }
}
