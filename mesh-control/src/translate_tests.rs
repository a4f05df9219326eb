//! Table-style tests of [`crate::translate()`] and [`MeshConfig::validate`]: resource names,
//! types, weights, subsets, the default route, and validation errors naming fields.

use xds_proto::any::unpack;
use xds_proto::envoy::envoy::config::cluster::v3::{Cluster, cluster};
use xds_proto::envoy::envoy::config::core::v3::{HealthStatus, config_source};
use xds_proto::envoy::envoy::config::endpoint::v3::{ClusterLoadAssignment, lb_endpoint};
use xds_proto::envoy::envoy::config::listener::v3::Listener;
use xds_proto::envoy::envoy::config::route::v3::{
    RouteConfiguration, header_matcher::HeaderMatchSpecifier, route, route_action,
    route_match::PathSpecifier,
};
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use xds_proto::envoy::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use xds_proto::type_url;

use crate::{MeshConfig, Snapshot, translate};

const GREETER: &str = r#"
services:
  - name: greeter.default
    port: 8080
    endpoints:
      - address: 127.0.0.1:50051
        labels: { version: v1 }
        locality: { region: r1, zone: z1 }
        weight: 3
      - address: 127.0.0.1:50052
        labels: { version: v1 }
        locality: { region: r1, zone: z2 }
        priority: 4
        health: draining
      - address: 127.0.0.1:50053
        labels: { version: v2 }
        locality: { region: r1, zone: z1 }
        health: unhealthy
    subsets:
      - name: v1
        labels: { version: v1 }
      - name: v2
        labels: { version: v2 }
    routes:
      - match:
          path: /helloworld.Greeter/SayHello
          headers:
            - { name: x-user, exact: alice }
            - { name: x-debug, present: true }
            - { name: x-id, regex: "[0-9]+" }
        destination: { subset: v2 }
        timeout: 1500ms
      - match:
          regex: "/helloworld\\..*"
        split:
          - { subset: v1, weight: 80 }
          - { service: other.default, weight: 20 }
  - name: other.default
    port: 9090
    endpoints:
      - address: "[::1]:7000"
"#;

fn snapshot(yaml: &str) -> Snapshot {
    translate(&MeshConfig::from_yaml(yaml).unwrap()).unwrap()
}

fn names(s: &Snapshot, t: &str) -> Vec<String> {
    s.of_type(t).iter().map(|(n, _)| n.clone()).collect()
}

fn route_config(s: &Snapshot, name: &str) -> RouteConfiguration {
    unpack(s.get(type_url::ROUTE_CONFIGURATION, name).unwrap()).unwrap()
}

fn cla(s: &Snapshot, name: &str) -> ClusterLoadAssignment {
    unpack(s.get(type_url::CLUSTER_LOAD_ASSIGNMENT, name).unwrap()).unwrap()
}

fn action(
    r: &xds_proto::envoy::envoy::config::route::v3::Route,
) -> &route_action::ClusterSpecifier {
    match &r.action {
        Some(route::Action::Route(a)) => a.cluster_specifier.as_ref().unwrap(),
        other => panic!("not a route action: {other:?}"),
    }
}

fn invalid(yaml: &str) -> String {
    MeshConfig::from_yaml(yaml).unwrap_err().to_string()
}

#[test]
fn resource_names_follow_istio() {
    let s = snapshot(GREETER);
    assert_eq!(
        names(&s, type_url::LISTENER),
        [
            "greeter.default:8080",
            "other.default:9090",
            "xds.istio.io/grpc/lds/inbound/127.0.0.1:50051",
            "xds.istio.io/grpc/lds/inbound/127.0.0.1:50052",
            "xds.istio.io/grpc/lds/inbound/127.0.0.1:50053",
            "xds.istio.io/grpc/lds/inbound/[::1]:7000",
        ]
    );
    // Inbound listeners carry their routes inline; RDS serves the client listeners only.
    assert_eq!(
        names(&s, type_url::ROUTE_CONFIGURATION),
        ["greeter.default:8080", "other.default:9090"]
    );
    let clusters = [
        "outbound|8080||greeter.default",
        "outbound|8080|v1|greeter.default",
        "outbound|8080|v2|greeter.default",
        "outbound|9090||other.default",
    ];
    assert_eq!(names(&s, type_url::CLUSTER), clusters);
    assert_eq!(names(&s, type_url::CLUSTER_LOAD_ASSIGNMENT), clusters);
    for (_, any) in s.of_type(type_url::CLUSTER) {
        assert_eq!(any.type_url, type_url::CLUSTER);
    }
}

#[test]
fn listener_is_an_api_listener_with_rds_over_ads() {
    let s = snapshot(GREETER);
    let l: Listener = unpack(s.get(type_url::LISTENER, "greeter.default:8080").unwrap()).unwrap();
    let any = l.api_listener.unwrap().api_listener.unwrap();
    assert_eq!(any.type_url, type_url::HTTP_CONNECTION_MANAGER);
    let hcm: HttpConnectionManager = unpack(&any).unwrap();
    let Some(RouteSpecifier::Rds(rds)) = hcm.route_specifier else {
        panic!("no rds");
    };
    assert_eq!(rds.route_config_name, "greeter.default:8080");
    let source = rds.config_source.unwrap();
    assert_eq!(source.resource_api_version, 2);
    assert!(matches!(
        source.config_source_specifier,
        Some(config_source::ConfigSourceSpecifier::Ads(_))
    ));
    assert_eq!(hcm.http_filters.len(), 1);
    assert_eq!(hcm.http_filters[0].name, "envoy.filters.http.router");
}

#[test]
fn default_route_and_domains() {
    let s = snapshot(
        "services:\n  - name: greeter.default\n    port: 8080\n  - name: solo\n    port: 1\n",
    );
    let rc = route_config(&s, "greeter.default:8080");
    let vh = &rc.virtual_hosts[0];
    assert_eq!(
        vh.domains,
        [
            "greeter.default",
            "greeter.default:8080",
            "greeter",
            "greeter:8080"
        ]
    );
    assert_eq!(vh.routes.len(), 1);
    let m = vh.routes[0].r#match.as_ref().unwrap();
    assert_eq!(m.path_specifier, Some(PathSpecifier::Prefix("/".into())));
    assert_eq!(
        action(&vh.routes[0]),
        &route_action::ClusterSpecifier::Cluster("outbound|8080||greeter.default".into())
    );
    // No dot: the short name is the name, listed once.
    assert_eq!(
        route_config(&s, "solo:1").virtual_hosts[0].domains,
        ["solo", "solo:1"]
    );
}

#[test]
fn clusters_are_eds_over_ads_round_robin() {
    let s = snapshot(GREETER);
    let c: Cluster = unpack(
        s.get(type_url::CLUSTER, "outbound|8080|v1|greeter.default")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    let eds = c.eds_cluster_config.unwrap();
    assert_eq!(eds.service_name, "outbound|8080|v1|greeter.default");
    assert!(matches!(
        eds.eds_config.unwrap().config_source_specifier,
        Some(config_source::ConfigSourceSpecifier::Ads(_))
    ));
    assert_eq!(c.lb_policy, cluster::LbPolicy::RoundRobin as i32);
    assert_eq!(c.connect_timeout.unwrap().seconds, 5);
}

#[test]
fn endpoints_grouped_by_priority_and_locality_with_weights() {
    let s = snapshot(GREETER);
    let all = cla(&s, "outbound|8080||greeter.default");
    assert_eq!(all.cluster_name, "outbound|8080||greeter.default");
    // (p0, z1) has 50051 and 50053; priority 4 becomes 1 (dense).
    assert_eq!(all.endpoints.len(), 2);
    assert_eq!(all.endpoints[0].priority, 0);
    assert_eq!(all.endpoints[0].locality.as_ref().unwrap().zone, "z1");
    assert_eq!(all.endpoints[0].lb_endpoints.len(), 2);
    assert_eq!(all.endpoints[0].load_balancing_weight.unwrap().value, 1);
    assert_eq!(all.endpoints[1].priority, 1);
    assert_eq!(all.endpoints[1].locality.as_ref().unwrap().zone, "z2");
    let first = &all.endpoints[0].lb_endpoints[0];
    assert_eq!(first.load_balancing_weight.unwrap().value, 3);
    let Some(lb_endpoint::HostIdentifier::Endpoint(ep)) = &first.host_identifier else {
        panic!("no endpoint");
    };
    let addr = format!("{:?}", ep.address);
    assert!(
        addr.contains("127.0.0.1") && addr.contains("50051"),
        "{addr}"
    );
}

#[test]
fn health_statuses_map() {
    let s = snapshot(GREETER);
    let all = cla(&s, "outbound|8080||greeter.default");
    let statuses: Vec<i32> = all
        .endpoints
        .iter()
        .flat_map(|l| l.lb_endpoints.iter().map(|e| e.health_status))
        .collect();
    assert_eq!(
        statuses,
        [
            HealthStatus::Healthy as i32,
            HealthStatus::Unhealthy as i32,
            HealthStatus::Draining as i32
        ]
    );
}

#[test]
fn subset_assignment_holds_only_matching_endpoints() {
    let s = snapshot(GREETER);
    let v2 = cla(&s, "outbound|8080|v2|greeter.default");
    assert_eq!(v2.endpoints.len(), 1);
    assert_eq!(v2.endpoints[0].lb_endpoints.len(), 1);
    let v1 = cla(&s, "outbound|8080|v1|greeter.default");
    let count: usize = v1.endpoints.iter().map(|l| l.lb_endpoints.len()).sum();
    assert_eq!(count, 2);
    // The subset only has priorities 0 and 4 → 0 and 1.
    assert_eq!(
        v1.endpoints.iter().map(|l| l.priority).collect::<Vec<_>>(),
        [0, 1]
    );
}

#[test]
fn split_becomes_weighted_clusters_with_default_port_of_other_service() {
    let s = snapshot(GREETER);
    let rc = route_config(&s, "greeter.default:8080");
    let r = &rc.virtual_hosts[0].routes[1];
    let route_action::ClusterSpecifier::WeightedClusters(w) = action(r) else {
        panic!("not weighted");
    };
    let got: Vec<(String, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.weight.unwrap().value))
        .collect();
    assert_eq!(
        got,
        [
            ("outbound|8080|v1|greeter.default".to_string(), 80),
            ("outbound|9090||other.default".to_string(), 20)
        ]
    );
    #[allow(deprecated)]
    let regex = match &r.r#match.as_ref().unwrap().path_specifier {
        Some(PathSpecifier::SafeRegex(re)) => {
            assert!(re.engine_type.is_some());
            re.regex.clone()
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(regex, "/helloworld\\..*");
}

#[test]
fn path_headers_destination_and_timeout() {
    let s = snapshot(GREETER);
    let rc = route_config(&s, "greeter.default:8080");
    let r = &rc.virtual_hosts[0].routes[0];
    let m = r.r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(PathSpecifier::Path("/helloworld.Greeter/SayHello".into()))
    );
    let Some(HeaderMatchSpecifier::StringMatch(exact)) = &m.headers[0].header_match_specifier
    else {
        panic!("exact");
    };
    assert_eq!(
        exact.match_pattern,
        Some(MatchPattern::Exact("alice".into()))
    );
    assert_eq!(
        m.headers[1].header_match_specifier,
        Some(HeaderMatchSpecifier::PresentMatch(true))
    );
    assert!(matches!(
        &m.headers[2].header_match_specifier,
        Some(HeaderMatchSpecifier::StringMatch(sm)) if matches!(sm.match_pattern, Some(MatchPattern::SafeRegex(_)))
    ));
    assert_eq!(
        action(r),
        &route_action::ClusterSpecifier::Cluster("outbound|8080|v2|greeter.default".into())
    );
    let Some(route::Action::Route(a)) = &r.action else {
        panic!()
    };
    let d = a.max_stream_duration.unwrap().max_stream_duration.unwrap();
    assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
}

#[test]
fn yaml_round_trips() {
    let config = MeshConfig::from_yaml(GREETER).unwrap();
    let again = MeshConfig::from_yaml(&config.to_yaml().unwrap()).unwrap();
    assert_eq!(config, again);
}

#[test]
fn translation_is_deterministic() {
    assert_eq!(snapshot(GREETER), snapshot(GREETER));
    assert_ne!(snapshot(GREETER).version, snapshot("services: []").version);
}

#[test]
fn unknown_subset_in_split_names_the_field() {
    let yaml = "services:
  - name: other.default
    port: 1
  - name: greeter.default
    port: 8080
    subsets: [ { name: v1, labels: { version: v1 } } ]
    routes:
      - split:
          - { subset: v1, weight: 1 }
          - { subset: v3, weight: 1 }
";
    assert_eq!(
        invalid(yaml),
        r#"services[1].routes[0].split[1].subset: no subset "v3" in service greeter.default"#
    );
}

#[test]
fn validation_errors_name_fields() {
    let cases = [
        (
            "services: [ { name: a, port: 1, endpoints: [ { address: localhost } ] } ]",
            "services[0].endpoints[0].address",
        ),
        (
            "services: [ { name: a, port: 1, endpoints: [ { address: '1.2.3.4:5', weight: 0 } ] } ]",
            "services[0].endpoints[0].weight",
        ),
        (
            "services: [ { name: a, port: 1 }, { name: a, port: 1 } ]",
            "services[1].port",
        ),
        ("services: [ { name: 'a|b', port: 1 } ]", "services[0].name"),
        ("services: [ { name: a, port: 0 } ]", "services[0].port"),
        (
            "services: [ { name: a, port: 1, subsets: [ { name: x }, { name: x } ] } ]",
            "services[0].subsets[1].name",
        ),
        (
            "services: [ { name: a, port: 1, routes: [ { match: { prefix: /, path: /x } } ] } ]",
            "services[0].routes[0].match",
        ),
        (
            "services: [ { name: a, port: 1, routes: [ { match: { path: x } } ] } ]",
            "services[0].routes[0].match.path",
        ),
        (
            "services: [ { name: a, port: 1, routes: [ { match: { regex: '(' } } ] } ]",
            "services[0].routes[0].match.regex",
        ),
        (
            "services: [ { name: a, port: 1, routes: [ { match: { headers: [ { name: h, exact: x, prefix: y } ] } } ] } ]",
            "services[0].routes[0].match.headers[0]",
        ),
        (
            "services: [ { name: a, port: 1, routes: [ { split: [ { weight: 0 } ] } ] } ]",
            "services[0].routes[0].split",
        ),
        (
            "services: [ { name: a, port: 1, routes: [ { split: [ { weight: 1 } ], destination: {} } ] } ]",
            "services[0].routes[0]",
        ),
        (
            "services: [ { name: a, port: 1, routes: [ { destination: { service: nope } } ] } ]",
            "services[0].routes[0].destination.service",
        ),
        (
            "services: [ { name: a, port: 1, routes: [ { destination: { service: a, port: 2 } } ] } ]",
            "services[0].routes[0].destination.port",
        ),
    ];
    for (yaml, field) in cases {
        let config: MeshConfig = serde_yaml::from_str(yaml).unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.field(), Some(field), "{yaml}: {err}");
        assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
        assert!(translate(&config).is_err());
    }
}

#[test]
fn parse_errors_reject_typos_and_bad_values() {
    let typo = invalid("services: [ { name: a, port: 1, routes: [ { match: { prefx: / } } ] } ]");
    assert!(typo.contains("prefx"), "{typo}");
    let health = invalid(
        "services: [ { name: a, port: 1, endpoints: [ { address: '1.1.1.1:1', health: sick } ] } ]",
    );
    assert!(health.contains("sick"), "{health}");
    let timeout = invalid("services: [ { name: a, port: 1, routes: [ { timeout: soon } ] } ]");
    assert!(timeout.contains("soon"), "{timeout}");
}

#[test]
fn example_file_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mesh.yaml");
    let config = MeshConfig::from_file(path).unwrap();
    let s = translate(&config).unwrap();
    assert_eq!(s.of_type(type_url::CLUSTER).len(), 3);
    assert_eq!(s.of_type(type_url::LISTENER).len(), 4);
    assert!(config.services[0].authorization.is_some());
    assert_eq!(
        cla(&s, "outbound|8080||greeter.default")
            .endpoints
            .iter()
            .map(|l| l.lb_endpoints.len())
            .sum::<usize>(),
        3
    );
}

#[test]
fn example_file_is_valid_with_its_mtls_lines_uncommented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mesh.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut uncommented = text.clone();
    for line in [
        "# trust_domain: cluster.local",
        "# mtls: PERMISSIVE",
        "# service_account: greeter",
    ] {
        assert!(uncommented.contains(line), "{line:?} not in the example");
        uncommented = uncommented.replace(line, line.trim_start_matches("# "));
    }
    let config = MeshConfig::from_yaml(&uncommented).unwrap();
    assert_eq!(config.services[0].mtls, crate::MtlsMode::Permissive);
    assert_eq!(
        config.spiffe_id(&config.services[0]),
        "spiffe://cluster.local/ns/default/sa/greeter"
    );
    let s = translate(&config).unwrap();
    for (name, any) in s.of_type(type_url::CLUSTER) {
        let c: xds_proto::envoy::envoy::config::cluster::v3::Cluster =
            xds_proto::any::unpack(any).unwrap();
        assert!(c.transport_socket.is_some(), "{name}");
    }
}

#[test]
fn retries_faults_and_limits_translate() {
    let s = snapshot(
        r#"
services:
  - name: greeter.default
    port: 8080
    endpoints: [{ address: 127.0.0.1:50051 }]
    limits:
      max_requests: 7
      retry_budget: { percent: 25, min_per_second: 2, interval: 5s }
    routes:
      - retries: { attempts: 2, on: [unavailable, internal], backoff: 10ms }
        fault: { abort: { percent: 20, code: 14 }, delay: { percent: 0.5, duration: 50ms } }
"#,
    );
    let rc = route_config(&s, "greeter.default:8080");
    let r = &rc.virtual_hosts[0].routes[0];
    let Some(route::Action::Route(ra)) = &r.action else {
        panic!("not a route action");
    };
    let rp = ra.retry_policy.as_ref().unwrap();
    assert_eq!(rp.retry_on, "unavailable,internal");
    assert_eq!(rp.num_retries.unwrap().value, 2);
    let backoff = rp.retry_back_off.as_ref().unwrap();
    assert_eq!(backoff.base_interval.unwrap().nanos, 10_000_000);
    use xds_proto::envoy::envoy::extensions::filters::http::fault::v3::HttpFault;
    let fault: HttpFault =
        unpack(&r.typed_per_filter_config[crate::translate::FAULT_FILTER]).unwrap();
    let abort = fault.abort.unwrap();
    assert_eq!(abort.percentage.unwrap().numerator, 200_000);
    assert_eq!(fault.delay.unwrap().percentage.unwrap().numerator, 5_000);
    // The listener carries the fault filter before the router.
    let (_, l) = &s.resources[type_url::LISTENER][0];
    let l: Listener = unpack(l).unwrap();
    let hcm: HttpConnectionManager =
        unpack(l.api_listener.unwrap().api_listener.as_ref().unwrap()).unwrap();
    let names: Vec<_> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        ["envoy.filters.http.fault", "envoy.filters.http.router"]
    );
    let (_, c) = &s.resources[type_url::CLUSTER][0];
    let c: Cluster = unpack(c).unwrap();
    let t = &c.circuit_breakers.unwrap().thresholds[0];
    assert_eq!(t.max_requests.unwrap().value, 7);
    let b = t.retry_budget.unwrap();
    assert_eq!(b.budget_percent.unwrap().value, 25.0);
    assert_eq!(b.budget_interval.unwrap().seconds, 5);
}

#[test]
fn bad_retries_and_faults_are_named() {
    let base =
        "services:\n  - name: g.default\n    port: 80\n    endpoints: [{ address: 127.0.0.1:1 }]\n";
    let e = invalid(&format!(
        "{base}    routes:\n      - retries: {{ attempts: 0 }}\n"
    ));
    assert!(e.contains("retries.attempts"), "{e}");
    let e = invalid(&format!(
        "{base}    routes:\n      - retries: {{ attempts: 1, on: [5xx] }}\n"
    ));
    assert!(e.contains("retries.on[0]") && e.contains("\"5xx\""), "{e}");
    let e = invalid(&format!(
        "{base}    routes:\n      - fault: {{ abort: {{ percent: 120, code: 14 }} }}\n"
    ));
    assert!(e.contains("fault.abort.percent"), "{e}");
    let e = invalid(&format!(
        "{base}    routes:\n      - fault: {{ abort: {{ percent: 10, code: 0 }} }}\n"
    ));
    assert!(e.contains("fault.abort.code"), "{e}");
    let e = invalid(&format!("{base}    limits: {{ max_requests: 0 }}\n"));
    assert!(e.contains("limits.max_requests"), "{e}");
}
