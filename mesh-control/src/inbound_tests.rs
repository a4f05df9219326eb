//! Tests of the inbound listeners (gRFC A36) and their RBAC filter (gRFC A41): names and
//! addresses, the inline non-forwarding routes, the exact RBAC policy shapes, shadow rules,
//! per-route overrides, deterministic encoding, and validation errors naming fields.

use xds_proto::any::unpack;
use xds_proto::envoy::envoy::config::core::v3::{CidrRange, address, socket_address};
use xds_proto::envoy::envoy::config::listener::v3::{FilterChainMatch, Listener, filter};
use xds_proto::envoy::envoy::config::rbac::v3::{
    Permission, Policy, Principal, Rbac as RbacRules, permission, principal, rbac::Action,
};
use xds_proto::envoy::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteConfiguration, header_matcher::HeaderMatchSpecifier, route,
    route_match::PathSpecifier,
};
use xds_proto::envoy::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier, http_filter,
};
use xds_proto::envoy::envoy::r#type::matcher::v3::{
    PathMatcher, StringMatcher, path_matcher, string_matcher::MatchPattern,
};
use xds_proto::protobuf::UInt32Value;
use xds_proto::type_url;

use crate::{MeshConfig, Snapshot, inbound_listener_name, translate};

const AUTHZ: &str = r#"
services:
  - name: greeter.default
    port: 8080
    endpoints:
      - address: 127.0.0.1:50051
      - address: "[::1]:50052"
    authorization:
      action: allow
      policies:
        - name: z-callers-may-say-hello
          principals: ["spiffe://cluster.local/ns/default/sa/client"]
          methods: ["/helloworld.Greeter/SayHello", "/grpc.testing.TestService/*"]
          headers: [ { name: x-user, exact: alice } ]
        - name: a-local
          source_ips: ["127.0.0.1/32", "::1"]
        - name: m-both
          principals: ["spiffe://a", "spiffe://b"]
          source_ips: ["10.0.0.0/8"]
          headers: [ { name: x-debug, present: true } ]
      shadow:
        action: deny
        policies:
          - name: dry-run-deny-mallory
            headers: [ { name: x-user, exact: mallory } ]
      per_route:
        - path: /helloworld.Greeter/SayHello
          action: deny
          policies:
            - name: no-bob
              headers: [ { name: x-user, exact: bob } ]
        - prefix: /grpc.health.v1.Health/
          disabled: true
  - name: open.default
    port: 9090
    endpoints:
      - address: 127.0.0.1:7000
"#;

const GREETER_LDS: &str = "xds.istio.io/grpc/lds/inbound/127.0.0.1:50051";

fn snapshot(yaml: &str) -> Snapshot {
    translate(&MeshConfig::from_yaml(yaml).unwrap()).unwrap()
}

fn listener(s: &Snapshot, name: &str) -> Listener {
    unpack(s.get(type_url::LISTENER, name).unwrap()).unwrap()
}

/// The listener's only filter chain's HttpConnectionManager.
fn manager(l: &Listener) -> HttpConnectionManager {
    assert_eq!(l.filter_chains.len(), 1);
    let chain = &l.filter_chains[0];
    assert_eq!(chain.filters.len(), 1);
    let f = &chain.filters[0];
    assert_eq!(f.name, "envoy.filters.network.http_connection_manager");
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no typed_config");
    };
    assert_eq!(any.type_url, type_url::HTTP_CONNECTION_MANAGER);
    unpack(any).unwrap()
}

fn inline_routes(m: &HttpConnectionManager) -> &RouteConfiguration {
    match &m.route_specifier {
        Some(RouteSpecifier::RouteConfig(rc)) => rc,
        other => panic!("not inline: {other:?}"),
    }
}

fn rbac_filter(m: &HttpConnectionManager) -> Rbac {
    let f = &m.http_filters[0];
    assert_eq!(f.name, "envoy.filters.http.rbac");
    let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("no typed_config");
    };
    assert_eq!(any.type_url, type_url::RBAC);
    unpack(any).unwrap()
}

fn sorted_names(rules: &RbacRules) -> Vec<&str> {
    let mut names: Vec<&str> = rules.policies.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

fn per_route(r: &Route) -> RbacPerRoute {
    assert_eq!(r.typed_per_filter_config.len(), 1);
    let any = &r.typed_per_filter_config["envoy.filters.http.rbac"];
    assert_eq!(any.type_url, type_url::RBAC_PER_ROUTE);
    unpack(any).unwrap()
}

fn exact(s: &str) -> Option<StringMatcher> {
    Some(StringMatcher {
        match_pattern: Some(MatchPattern::Exact(s.into())),
        ignore_case: false,
    })
}

fn perm(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}

fn id(identifier: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(identifier),
    }
}

fn url_path(pattern: MatchPattern) -> Permission {
    perm(permission::Rule::UrlPath(PathMatcher {
        rule: Some(path_matcher::Rule::Path(StringMatcher {
            match_pattern: Some(pattern),
            ignore_case: false,
        })),
    }))
}

fn header_exact(name: &str, value: &str) -> Permission {
    perm(permission::Rule::Header(HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value.into())),
            ignore_case: false,
        })),
        ..Default::default()
    }))
}

fn spiffe(name: &str) -> Principal {
    id(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: exact(name),
        },
    ))
}

fn cidr(ip: &str, len: u32) -> Principal {
    id(principal::Identifier::DirectRemoteIp(CidrRange {
        address_prefix: ip.into(),
        prefix_len: Some(UInt32Value { value: len }),
    }))
}

fn policy(rules: &RbacRules, name: &str) -> Policy {
    rules.policies.get(name).cloned().unwrap()
}

#[test]
fn one_inbound_listener_per_distinct_endpoint_address() {
    let s = snapshot(AUTHZ);
    let inbound: Vec<&str> = s
        .of_type(type_url::LISTENER)
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("xds.istio.io/"))
        .collect();
    assert_eq!(
        inbound,
        [
            GREETER_LDS,
            "xds.istio.io/grpc/lds/inbound/[::1]:50052",
            "xds.istio.io/grpc/lds/inbound/127.0.0.1:7000",
        ]
    );
    for (name, ip, port) in [
        (GREETER_LDS, "127.0.0.1", 50051),
        ("xds.istio.io/grpc/lds/inbound/[::1]:50052", "::1", 50052),
    ] {
        let l = listener(&s, name);
        assert_eq!(l.name, name);
        let Some(address::Address::SocketAddress(sa)) = l.address.unwrap().address else {
            panic!("no socket address");
        };
        assert_eq!(sa.address, ip);
        assert_eq!(
            sa.port_specifier,
            Some(socket_address::PortSpecifier::PortValue(port))
        );
    }
    assert_eq!(
        inbound_listener_name("127.0.0.1:50051"),
        GREETER_LDS,
        "the helper names what translation produces"
    );
}

#[test]
fn filter_chain_is_plaintext_with_inline_non_forwarding_routes() {
    let s = snapshot(AUTHZ);
    let l = listener(&s, GREETER_LDS);
    assert!(l.default_filter_chain.is_none());
    assert!(l.listener_filters.is_empty());
    assert!(l.use_original_dst.is_none());
    assert!(l.api_listener.is_none());
    let chain = &l.filter_chains[0];
    assert_eq!(chain.name, "inbound-plaintext");
    assert_eq!(chain.filter_chain_match, Some(FilterChainMatch::default()));
    assert!(chain.transport_socket.is_none());
    let m = manager(&l);
    let rc = inline_routes(&m);
    assert_eq!(rc.name, "inbound|50051||greeter.default");
    assert_eq!(rc.virtual_hosts.len(), 1);
    let vh = &rc.virtual_hosts[0];
    assert_eq!(vh.domains, ["*"]);
    let last = vh.routes.last().unwrap();
    assert_eq!(
        last.r#match.as_ref().unwrap().path_specifier,
        Some(PathSpecifier::Prefix("/".into()))
    );
    assert!(last.typed_per_filter_config.is_empty());
    for r in &vh.routes {
        assert!(
            matches!(r.action, Some(route::Action::NonForwardingAction(_))),
            "{r:?}"
        );
    }
    let filters: Vec<&str> = m.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        ["envoy.filters.http.rbac", "envoy.filters.http.router"]
    );
    let Some(http_filter::ConfigType::TypedConfig(router)) = &m.http_filters[1].config_type else {
        panic!("router has no typed_config");
    };
    assert_eq!(router.type_url, type_url::ROUTER);
}

#[test]
fn rbac_rules_have_the_exact_policy_shapes() {
    let s = snapshot(AUTHZ);
    let rbac = rbac_filter(&manager(&listener(&s, GREETER_LDS)));
    let rules = rbac.rules.as_ref().unwrap();
    assert_eq!(rules.action, Action::Allow as i32);
    assert_eq!(
        sorted_names(rules),
        ["a-local", "m-both", "z-callers-may-say-hello"]
    );

    // Methods OR-ed (exact, and prefix for a trailing '*'), AND-ed with the headers.
    let hello = policy(rules, "z-callers-may-say-hello");
    assert_eq!(
        hello.permissions,
        [perm(permission::Rule::AndRules(permission::Set {
            rules: vec![
                perm(permission::Rule::OrRules(permission::Set {
                    rules: vec![
                        url_path(MatchPattern::Exact("/helloworld.Greeter/SayHello".into())),
                        url_path(MatchPattern::Prefix("/grpc.testing.TestService/".into())),
                    ],
                })),
                header_exact("x-user", "alice"),
            ],
        }))]
    );
    assert_eq!(
        hello.principals,
        [spiffe("spiffe://cluster.local/ns/default/sa/client")]
    );

    // No methods or headers: any request; source IPs OR-ed, a bare IP is a full-length range.
    let local = policy(rules, "a-local");
    assert_eq!(local.permissions, [perm(permission::Rule::Any(true))]);
    assert_eq!(local.principals, [cidr("127.0.0.1", 32), cidr("::1", 128)]);

    // Principals and source IPs both set: the caller must match both lists.
    let both = policy(rules, "m-both");
    assert_eq!(
        both.principals,
        [id(principal::Identifier::AndIds(principal::Set {
            ids: vec![
                id(principal::Identifier::OrIds(principal::Set {
                    ids: vec![spiffe("spiffe://a"), spiffe("spiffe://b")],
                })),
                id(principal::Identifier::OrIds(principal::Set {
                    ids: vec![cidr("10.0.0.0", 8)],
                })),
            ],
        }))]
    );
    assert_eq!(
        both.permissions,
        [perm(permission::Rule::AndRules(permission::Set {
            rules: vec![perm(permission::Rule::Header(HeaderMatcher {
                name: "x-debug".into(),
                header_match_specifier: Some(HeaderMatchSpecifier::PresentMatch(true)),
                ..Default::default()
            }))],
        }))]
    );
    assert!(both.condition.is_none() && both.checked_condition.is_none());
}

#[test]
fn shadow_rules_and_any_principal() {
    let s = snapshot(AUTHZ);
    let rbac = rbac_filter(&manager(&listener(&s, GREETER_LDS)));
    let shadow = rbac.shadow_rules.as_ref().unwrap();
    assert_eq!(shadow.action, Action::Deny as i32);
    assert_eq!(sorted_names(shadow), ["dry-run-deny-mallory"]);
    let mallory = policy(shadow, "dry-run-deny-mallory");
    assert_eq!(mallory.principals, [id(principal::Identifier::Any(true))]);
    assert_eq!(
        mallory.permissions,
        [perm(permission::Rule::AndRules(permission::Set {
            rules: vec![header_exact("x-user", "mallory")],
        }))]
    );
    // Without a shadow block there are no shadow rules; policies-free allow denies all.
    let bare = snapshot(
        "services: [ { name: a, port: 1, endpoints: [ { address: '127.0.0.1:1' } ], authorization: {} } ]",
    );
    let rbac = rbac_filter(&manager(&listener(
        &bare,
        "xds.istio.io/grpc/lds/inbound/127.0.0.1:1",
    )));
    assert!(rbac.shadow_rules.is_none());
    let rules = rbac.rules.unwrap();
    assert_eq!(rules.action, Action::Allow as i32);
    assert!(rules.policies.is_empty());
}

#[test]
fn per_route_overrides_come_before_the_catch_all() {
    let s = snapshot(AUTHZ);
    let m = manager(&listener(&s, GREETER_LDS));
    let routes = &inline_routes(&m).virtual_hosts[0].routes;
    assert_eq!(routes.len(), 3);
    assert_eq!(
        routes[0].r#match.as_ref().unwrap().path_specifier,
        Some(PathSpecifier::Path("/helloworld.Greeter/SayHello".into()))
    );
    let deny = per_route(&routes[0]).rbac.unwrap();
    assert!(deny.shadow_rules.is_none());
    let rules = deny.rules.unwrap();
    assert_eq!(rules.action, Action::Deny as i32);
    assert_eq!(sorted_names(&rules), ["no-bob"]);
    assert_eq!(
        policy(&rules, "no-bob").permissions,
        [perm(permission::Rule::AndRules(permission::Set {
            rules: vec![header_exact("x-user", "bob")],
        }))]
    );
    assert_eq!(
        routes[1].r#match.as_ref().unwrap().path_specifier,
        Some(PathSpecifier::Prefix("/grpc.health.v1.Health/".into()))
    );
    // Disabled: an empty RBACPerRoute, no `rbac`.
    assert_eq!(per_route(&routes[1]), RbacPerRoute { rbac: None });
    assert_eq!(routes[2].name, "default");
}

#[test]
fn no_authorization_means_no_rbac_filter() {
    let s = snapshot(AUTHZ);
    let m = manager(&listener(
        &s,
        "xds.istio.io/grpc/lds/inbound/127.0.0.1:7000",
    ));
    let filters: Vec<&str> = m.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(filters, ["envoy.filters.http.router"]);
    let rc = inline_routes(&m);
    assert_eq!(rc.name, "inbound|7000||open.default");
    assert_eq!(rc.virtual_hosts[0].routes.len(), 1);
}

#[test]
fn policies_encode_in_name_order_every_time() {
    // The policy map is a HashMap in the generated types; encoding must not follow its order.
    let first = snapshot(AUTHZ);
    for _ in 0..20 {
        assert_eq!(snapshot(AUTHZ), first);
    }
}

#[test]
fn authorization_round_trips_through_yaml() {
    let config = MeshConfig::from_yaml(AUTHZ).unwrap();
    let again = MeshConfig::from_yaml(&config.to_yaml().unwrap()).unwrap();
    assert_eq!(config, again);
}

#[test]
fn authorization_validation_errors_name_fields() {
    let service = |authz: &str| {
        format!(
            "services: [ {{ name: a, port: 1, endpoints: [ {{ address: '127.0.0.1:1' }} ], authorization: {authz} }} ]"
        )
    };
    let cases = [
        (
            service("{ policies: [ { name: p, methods: [ x ] } ] }"),
            "services[0].authorization.policies[0].methods[0]",
        ),
        (
            service("{ policies: [ { name: p }, { name: q, methods: [ /ok, 'a/b' ] } ] }"),
            "services[0].authorization.policies[1].methods[1]",
        ),
        (
            service("{ policies: [ { name: p, methods: [ '/a*/b' ] } ] }"),
            "services[0].authorization.policies[0].methods[0]",
        ),
        (
            service("{ policies: [ { name: p }, { name: p } ] }"),
            "services[0].authorization.policies[1].name",
        ),
        (
            service("{ policies: [ { name: '' } ] }"),
            "services[0].authorization.policies[0].name",
        ),
        (
            service("{ policies: [ { name: p, principals: [ '' ] } ] }"),
            "services[0].authorization.policies[0].principals[0]",
        ),
        (
            service("{ policies: [ { name: p, source_ips: [ 127.0.0.1/33 ] } ] }"),
            "services[0].authorization.policies[0].source_ips[0]",
        ),
        (
            service("{ policies: [ { name: p, source_ips: [ localhost ] } ] }"),
            "services[0].authorization.policies[0].source_ips[0]",
        ),
        (
            service("{ policies: [ { name: p, headers: [ { name: h } ] } ] }"),
            "services[0].authorization.policies[0].headers[0]",
        ),
        (
            service("{ shadow: { policies: [ { name: s }, { name: s } ] } }"),
            "services[0].authorization.shadow.policies[1].name",
        ),
        (
            service("{ per_route: [ { path: /a, prefix: /b } ] }"),
            "services[0].authorization.per_route[0]",
        ),
        (
            service("{ per_route: [ { action: deny } ] }"),
            "services[0].authorization.per_route[0]",
        ),
        (
            service("{ per_route: [ { prefix: x } ] }"),
            "services[0].authorization.per_route[0].prefix",
        ),
        (
            service("{ per_route: [ { path: /a }, { path: /a } ] }"),
            "services[0].authorization.per_route[1].path",
        ),
        (
            service("{ per_route: [ { path: /a, disabled: true, policies: [ { name: p } ] } ] }"),
            "services[0].authorization.per_route[0].policies",
        ),
        (
            service("{ per_route: [ { path: /a, disabled: true, action: deny } ] }"),
            "services[0].authorization.per_route[0].action",
        ),
        (
            service("{ per_route: [ { path: /a, policies: [ { name: p, methods: [ m ] } ] } ] }"),
            "services[0].authorization.per_route[0].policies[0].methods[0]",
        ),
        (
            "services: [ { name: a, port: 1, endpoints: [ { address: '127.0.0.1:1' } ], authorization: {} }, { name: b, port: 2, endpoints: [ { address: '127.0.0.1:2' }, { address: '127.0.0.1:1' } ] } ]".to_string(),
            "services[1].endpoints[1].address",
        ),
    ];
    for (yaml, field) in cases {
        let config: MeshConfig = serde_yaml::from_str(&yaml).unwrap();
        let err = config.validate().unwrap_err();
        assert_eq!(err.field(), Some(field), "{yaml}: {err}");
        assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
        assert!(translate(&config).is_err());
    }
    let message = MeshConfig::from_yaml(&service("{ policies: [ { name: p, methods: [ x ] } ] }"))
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(
            r#"services[0].authorization.policies[0].methods[0]: "x" must start with "/""#
        ),
        "{message}"
    );
    // Unknown fields and actions are parse errors.
    assert!(MeshConfig::from_yaml(&service("{ actoin: deny }")).is_err());
    assert!(MeshConfig::from_yaml(&service("{ action: log }")).is_err());
}

#[test]
fn services_sharing_an_address_with_the_same_authorization_share_its_listener() {
    let s = snapshot(
        "services:
  - { name: a, port: 1, endpoints: [ { address: '127.0.0.1:1' } ], authorization: { action: deny } }
  - { name: b, port: 2, endpoints: [ { address: '127.0.0.1:1' } ], authorization: { action: deny } }
",
    );
    let inbound: Vec<&str> = s
        .of_type(type_url::LISTENER)
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("xds.istio.io/"))
        .collect();
    assert_eq!(inbound, ["xds.istio.io/grpc/lds/inbound/127.0.0.1:1"]);
    // The first service listing the address names the listener's routes.
    let m = manager(&listener(&s, "xds.istio.io/grpc/lds/inbound/127.0.0.1:1"));
    assert_eq!(inline_routes(&m).name, "inbound|1||a");
}
