//! Translation of a [`MeshConfig`] into xDS resources, named the way Istio names them for
//! proxyless gRPC (gRFC A27): per service port, a Listener and a RouteConfiguration
//! `{host}:{port}`, and Clusters / ClusterLoadAssignments `outbound|{port}|{subset}|{host}`;
//! per endpoint address, a server-side Listener `xds.istio.io/grpc/lds/inbound/{ip}:{port}`
//! (gRFC A36, A41; see [`crate::inbound`]). The clusters of `PERMISSIVE` and `STRICT`
//! services carry an mTLS transport socket expecting the service's SPIFFE ID (gRFC A29; see
//! [`crate::tls`]).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;

use xds_proto::any::pack;
use xds_proto::envoy::envoy::config::cluster::v3 as cluster;
use xds_proto::envoy::envoy::config::core::v3 as core;
use xds_proto::envoy::envoy::config::endpoint::v3 as endpoint;
use xds_proto::envoy::envoy::config::listener::v3 as listener;
use xds_proto::envoy::envoy::config::route::v3 as route;
use xds_proto::envoy::envoy::extensions::filters::http::fault::v3::HttpFault;
use xds_proto::envoy::envoy::extensions::filters::http::router::v3::Router;
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use xds_proto::envoy::envoy::r#type::matcher::v3 as matcher;
use xds_proto::envoy::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use xds_proto::protobuf::{Any, Duration as ProtoDuration, UInt32Value};
use xds_proto::type_url;

use crate::error::ConfigError;
use crate::inbound::inbound_listeners;
use crate::model::{Destination, HeaderMatch, Health, MeshConfig, Route, RouteMatch, Service};
use crate::tls::upstream_transport_socket;

/// The xDS resources for one configuration, by type URL, each as `(name, resource)`.
///
/// All four types (LDS, RDS, CDS, EDS) are present, possibly empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// A fingerprint of the resources (the control plane serves its own counter instead).
    pub version: String,
    /// Resources by type URL ([`xds_proto::type_url`]), in a stable order.
    pub resources: BTreeMap<&'static str, Vec<(String, Any)>>,
}

impl Snapshot {
    /// The resources of one type (empty when there are none).
    pub fn of_type(&self, type_url: &str) -> &[(String, Any)] {
        self.resources
            .get(type_url)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The resource of `type_url` called `name`.
    pub fn get(&self, type_url: &str, name: &str) -> Option<&Any> {
        self.of_type(type_url)
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, any)| any)
    }
}

/// The name of a service port's Listener and RouteConfiguration: `{host}:{port}`.
pub fn listener_name(host: &str, port: u16) -> String {
    format!("{host}:{port}")
}

/// The name of a cluster (and its ClusterLoadAssignment): `outbound|{port}|{subset}|{host}`,
/// with an empty subset for the whole service.
pub fn cluster_name(host: &str, port: u16, subset: Option<&str>) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or_default())
}

/// Translates a configuration into resources; validates it first.
///
/// LDS holds the client listeners (one per service port, in file order) followed by the
/// inbound listeners (one per distinct endpoint address).
pub fn translate(config: &MeshConfig) -> Result<Snapshot, ConfigError> {
    config.validate()?;
    let mut listeners = Vec::new();
    let mut routes = Vec::new();
    let mut clusters = Vec::new();
    let mut assignments = Vec::new();
    for service in &config.services {
        let name = listener_name(&service.name, service.port);
        let faults = service.routes.iter().any(|r| r.fault.is_some());
        listeners.push((name.clone(), pack(&api_listener(&name, faults))));
        routes.push((
            name.clone(),
            pack(&route_configuration(config, service, &name)?),
        ));
        let whole = std::iter::once((None, None));
        let subsets = service
            .subsets
            .iter()
            .map(|s| (Some(s.name.as_str()), Some(&s.labels)));
        // Clients dial PERMISSIVE and STRICT services with mTLS and expect their identity.
        let peer_identity = service.mtls.is_enabled().then(|| config.spiffe_id(service));
        for (subset, labels) in whole.chain(subsets) {
            let cluster = cluster_name(&service.name, service.port, subset);
            let mut c = eds_cluster(&cluster, peer_identity.as_deref());
            c.circuit_breakers = service.limits.as_ref().map(circuit_breakers);
            // gRFC A50: every cluster of the service (whole and subsets) gets the same.
            c.outlier_detection = service.outlier_detection.as_ref().map(|od| od.to_proto());
            clusters.push((cluster.clone(), pack(&c)));
            let cla = load_assignment(&cluster, service, labels)?;
            assignments.push((cluster, pack(&cla)));
        }
    }
    // After the client listeners, so their order does not depend on the endpoints.
    listeners.extend(inbound_listeners(config)?);
    let mut resources = BTreeMap::new();
    resources.insert(type_url::LISTENER, listeners);
    resources.insert(type_url::ROUTE_CONFIGURATION, routes);
    resources.insert(type_url::CLUSTER, clusters);
    resources.insert(type_url::CLUSTER_LOAD_ASSIGNMENT, assignments);
    let mut hasher = DefaultHasher::new();
    for (type_url, list) in &resources {
        type_url.hash(&mut hasher);
        for (name, any) in list {
            name.hash(&mut hasher);
            any.value.hash(&mut hasher);
        }
    }
    Ok(Snapshot {
        version: format!("{:016x}", hasher.finish()),
        resources,
    })
}

fn ads_config_source() -> core::ConfigSource {
    core::ConfigSource {
        resource_api_version: core::ApiVersion::V3 as i32,
        config_source_specifier: Some(core::config_source::ConfigSourceSpecifier::Ads(
            core::AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

/// The name of the fault filter in client listeners; routes override its (empty) config.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// A client-side (API) listener whose HttpConnectionManager fetches its routes over RDS;
/// with `faults`, a fault filter that injects nothing unless a route overrides it (A33).
fn api_listener(name: &str, faults: bool) -> listener::Listener {
    let mut http_filters = Vec::new();
    if faults {
        http_filters.push(hcm::HttpFilter {
            name: FAULT_FILTER.to_string(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(pack(
                &HttpFault::default(),
            ))),
            ..Default::default()
        });
    }
    http_filters.push(hcm::HttpFilter {
        name: "envoy.filters.http.router".to_string(),
        config_type: Some(hcm::http_filter::ConfigType::TypedConfig(pack(
            &Router::default(),
        ))),
        ..Default::default()
    });
    let manager = hcm::HttpConnectionManager {
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::Rds(
            hcm::Rds {
                config_source: Some(ads_config_source()),
                route_config_name: name.to_string(),
            },
        )),
        http_filters,
        ..Default::default()
    };
    listener::Listener {
        name: name.to_string(),
        api_listener: Some(listener::ApiListener {
            api_listener: Some(pack(&manager)),
        }),
        ..Default::default()
    }
}

fn route_configuration(
    config: &MeshConfig,
    service: &Service,
    name: &str,
) -> Result<route::RouteConfiguration, ConfigError> {
    let host = service.name.as_str();
    let short = host.split('.').next().unwrap_or(host);
    let mut domains = Vec::new();
    for domain in [
        host.to_string(),
        format!("{host}:{}", service.port),
        short.to_string(),
        format!("{short}:{}", service.port),
    ] {
        if !domains.contains(&domain) {
            domains.push(domain);
        }
    }
    let routes = if service.routes.is_empty() {
        vec![route::Route {
            name: "default".to_string(),
            r#match: Some(route_match(&RouteMatch::default())),
            action: Some(route::route::Action::Route(route::RouteAction {
                cluster_specifier: Some(route::route_action::ClusterSpecifier::Cluster(
                    cluster_name(host, service.port, None),
                )),
                ..Default::default()
            })),
            ..Default::default()
        }]
    } else {
        service
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| route_entry(config, service, r, i))
            .collect::<Result<_, _>>()?
    };
    Ok(route::RouteConfiguration {
        name: name.to_string(),
        virtual_hosts: vec![route::VirtualHost {
            name: name.to_string(),
            domains,
            routes,
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn route_entry(
    config: &MeshConfig,
    service: &Service,
    r: &Route,
    index: usize,
) -> Result<route::Route, ConfigError> {
    use route::route_action::ClusterSpecifier;
    let specifier = if r.split.is_empty() {
        let destination = r.destination.clone().unwrap_or_default();
        ClusterSpecifier::Cluster(resolve(config, service, &destination, index)?)
    } else {
        let clusters = r
            .split
            .iter()
            .map(|entry| {
                Ok(route::weighted_cluster::ClusterWeight {
                    name: resolve(config, service, &entry.destination(), index)?,
                    weight: Some(UInt32Value {
                        value: entry.weight,
                    }),
                    ..Default::default()
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        ClusterSpecifier::WeightedClusters(route::WeightedCluster {
            clusters,
            ..Default::default()
        })
    };
    let max_stream_duration = r.timeout.map(|t| route::route_action::MaxStreamDuration {
        max_stream_duration: Some(proto_duration(t)),
        ..Default::default()
    });
    let mut typed_per_filter_config = std::collections::HashMap::new();
    if let Some(f) = &r.fault {
        typed_per_filter_config.insert(FAULT_FILTER.to_string(), pack(&http_fault(f)));
    }
    Ok(route::Route {
        name: format!("route-{index}"),
        r#match: Some(route_match(&r.r#match)),
        action: Some(route::route::Action::Route(route::RouteAction {
            cluster_specifier: Some(specifier),
            max_stream_duration,
            retry_policy: r.retries.as_ref().map(retry_policy),
            ..Default::default()
        })),
        typed_per_filter_config,
        ..Default::default()
    })
}

fn retry_policy(r: &crate::model::Retries) -> route::RetryPolicy {
    let on = if r.on.is_empty() {
        "unavailable".to_string()
    } else {
        r.on.join(",")
    };
    route::RetryPolicy {
        retry_on: on,
        num_retries: Some(UInt32Value { value: r.attempts }),
        retry_back_off: r.backoff.map(|base| route::retry_policy::RetryBackOff {
            base_interval: Some(proto_duration(base)),
            max_interval: r.max_backoff.map(proto_duration),
        }),
        ..Default::default()
    }
}

/// A percentage as a fraction of a million (Envoy's finest denominator).
fn per_million(percent: f64) -> FractionalPercent {
    FractionalPercent {
        numerator: (percent * 10_000.0).round().clamp(0.0, 1_000_000.0) as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    }
}

fn http_fault(f: &crate::model::Fault) -> HttpFault {
    use xds_proto::envoy::envoy::extensions::filters::common::fault::v3 as common;
    use xds_proto::envoy::envoy::extensions::filters::http::fault::v3 as fault;
    HttpFault {
        abort: f.abort.as_ref().map(|a| fault::FaultAbort {
            error_type: Some(fault::fault_abort::ErrorType::GrpcStatus(a.code)),
            percentage: Some(per_million(a.percent)),
            ..Default::default()
        }),
        delay: f.delay.as_ref().map(|d| common::FaultDelay {
            fault_delay_secifier: d
                .duration
                .map(|t| common::fault_delay::FaultDelaySecifier::FixedDelay(proto_duration(t))),
            percentage: Some(per_million(d.percent)),
        }),
        ..Default::default()
    }
}

fn circuit_breakers(l: &crate::model::Limits) -> cluster::CircuitBreakers {
    use cluster::circuit_breakers::{Thresholds, thresholds::RetryBudget};
    cluster::CircuitBreakers {
        thresholds: vec![Thresholds {
            max_requests: l.max_requests.map(|value| UInt32Value { value }),
            retry_budget: l.retry_budget.as_ref().map(|b| RetryBudget {
                budget_percent: b
                    .percent
                    .map(|value| xds_proto::envoy::envoy::r#type::v3::Percent { value }),
                min_retry_concurrency: b.min_per_second.map(|value| UInt32Value { value }),
                budget_interval: b.interval.map(proto_duration),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The cluster a destination names; validation has already checked that it exists.
fn resolve(
    config: &MeshConfig,
    service: &Service,
    destination: &Destination,
    index: usize,
) -> Result<String, ConfigError> {
    let host = destination.service.as_deref().unwrap_or(&service.name);
    let port = match (destination.port, &destination.service) {
        (Some(port), _) => port,
        (None, None) => service.port,
        (None, Some(_)) => config
            .find_service(host, None)
            .map(|s| s.port)
            .ok_or_else(|| {
                ConfigError::invalid(
                    format!("routes[{index}]"),
                    format!("no service named {host:?}"),
                )
            })?,
    };
    Ok(cluster_name(host, port, destination.subset.as_deref()))
}

fn route_match(m: &RouteMatch) -> route::RouteMatch {
    use route::route_match::PathSpecifier;
    let path_specifier = if let Some(path) = &m.path {
        PathSpecifier::Path(path.clone())
    } else if let Some(regex) = &m.regex {
        PathSpecifier::SafeRegex(regex_matcher(regex))
    } else {
        PathSpecifier::Prefix(m.prefix.clone().unwrap_or_else(|| "/".to_string()))
    };
    route::RouteMatch {
        path_specifier: Some(path_specifier),
        headers: m.headers.iter().map(header_matcher).collect(),
        ..Default::default()
    }
}

pub(crate) fn header_matcher(h: &HeaderMatch) -> route::HeaderMatcher {
    use matcher::string_matcher::MatchPattern;
    use route::header_matcher::HeaderMatchSpecifier;
    let string = |pattern| {
        HeaderMatchSpecifier::StringMatch(matcher::StringMatcher {
            match_pattern: Some(pattern),
            ..Default::default()
        })
    };
    let specifier = if let Some(v) = &h.exact {
        string(MatchPattern::Exact(v.clone()))
    } else if let Some(v) = &h.prefix {
        string(MatchPattern::Prefix(v.clone()))
    } else if let Some(v) = &h.suffix {
        string(MatchPattern::Suffix(v.clone()))
    } else if let Some(v) = &h.regex {
        string(MatchPattern::SafeRegex(regex_matcher(v)))
    } else {
        HeaderMatchSpecifier::PresentMatch(h.present.unwrap_or(true))
    };
    route::HeaderMatcher {
        name: h.name.clone(),
        header_match_specifier: Some(specifier),
        ..Default::default()
    }
}

/// Older clients require the (deprecated) explicit `google_re2 {}` engine, so it is set.
#[allow(deprecated)]
fn regex_matcher(regex: &str) -> matcher::RegexMatcher {
    matcher::RegexMatcher {
        regex: regex.to_string(),
        engine_type: Some(matcher::regex_matcher::EngineType::GoogleRe2(
            matcher::regex_matcher::GoogleRe2::default(),
        )),
    }
}

fn proto_duration(d: std::time::Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or_default(),
    }
}

/// An EDS cluster; with `peer_identity`, its connections use mTLS and the endpoints must
/// present that SPIFFE ID.
fn eds_cluster(name: &str, peer_identity: Option<&str>) -> cluster::Cluster {
    cluster::Cluster {
        transport_socket: peer_identity.map(upstream_transport_socket),
        name: name.to_string(),
        cluster_discovery_type: Some(cluster::cluster::ClusterDiscoveryType::Type(
            cluster::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::cluster::EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            service_name: name.to_string(),
        }),
        lb_policy: cluster::cluster::LbPolicy::RoundRobin as i32,
        connect_timeout: Some(ProtoDuration {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    }
}

/// Endpoints grouped by (priority, locality); each locality has weight 1 and each endpoint
/// its own weight. Priorities are renumbered densely (0, 1, …) per cluster, because gRPC
/// NACKs an assignment with a gap, and a subset may select only some priorities.
fn load_assignment(
    cluster_name: &str,
    service: &Service,
    labels: Option<&BTreeMap<String, String>>,
) -> Result<endpoint::ClusterLoadAssignment, ConfigError> {
    let selected: Vec<_> = service
        .endpoints
        .iter()
        .filter(|e| labels.is_none_or(|want| want.iter().all(|(k, v)| e.labels.get(k) == Some(v))))
        .collect();
    let priorities: BTreeSet<u32> = selected.iter().map(|e| e.priority).collect();
    let mut groups: BTreeMap<(u32, crate::model::Locality), Vec<endpoint::LbEndpoint>> =
        BTreeMap::new();
    for e in selected {
        let address: SocketAddr = e.address.parse().map_err(|_| {
            ConfigError::invalid(
                format!("service {}: endpoint address", service.name),
                format!("{:?} is not ip:port", e.address),
            )
        })?;
        let dense = priorities
            .iter()
            .position(|p| *p == e.priority)
            .unwrap_or(0);
        let priority = u32::try_from(dense).unwrap_or(u32::MAX);
        let lb = endpoint::LbEndpoint {
            health_status: health_status(e.health) as i32,
            load_balancing_weight: Some(UInt32Value { value: e.weight }),
            host_identifier: Some(endpoint::lb_endpoint::HostIdentifier::Endpoint(
                endpoint::Endpoint {
                    address: Some(socket_address(address)),
                    ..Default::default()
                },
            )),
            ..Default::default()
        };
        groups
            .entry((priority, e.locality.clone().unwrap_or_default()))
            .or_default()
            .push(lb);
    }
    let endpoints = groups
        .into_iter()
        .map(
            |((priority, locality), lb_endpoints)| endpoint::LocalityLbEndpoints {
                locality: Some(core::Locality {
                    region: locality.region,
                    zone: locality.zone,
                    sub_zone: locality.sub_zone,
                }),
                lb_endpoints,
                load_balancing_weight: Some(UInt32Value { value: 1 }),
                priority,
                ..Default::default()
            },
        )
        .collect();
    Ok(endpoint::ClusterLoadAssignment {
        cluster_name: cluster_name.to_string(),
        endpoints,
        ..Default::default()
    })
}

pub(crate) fn socket_address(address: SocketAddr) -> core::Address {
    core::Address {
        address: Some(core::address::Address::SocketAddress(core::SocketAddress {
            address: address.ip().to_string(),
            port_specifier: Some(core::socket_address::PortSpecifier::PortValue(u32::from(
                address.port(),
            ))),
            ..Default::default()
        })),
    }
}

fn health_status(health: Health) -> core::HealthStatus {
    match health {
        Health::Healthy => core::HealthStatus::Healthy,
        Health::Unhealthy => core::HealthStatus::Unhealthy,
        Health::Draining => core::HealthStatus::Draining,
        Health::Unknown => core::HealthStatus::Unknown,
    }
}
