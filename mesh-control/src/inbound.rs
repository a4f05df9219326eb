//! Server-side (inbound) Listeners for xDS-managed servers (gRFC A36), named and shaped the
//! way Istio generates them for proxyless gRPC: one per endpoint address,
//! `xds.istio.io/grpc/lds/inbound/{ip}:{port}`, which is what a server subscribes to with the
//! bootstrap template `xds.istio.io/grpc/lds/inbound/%s` and its bound address.
//!
//! The filter chains follow the service's `mtls` mode (gRFC A29, Istio's inbound listeners):
//!
//! - `DISABLE`: one plaintext chain `inbound-plaintext` (empty match);
//! - `STRICT`: one chain `inbound-mtls` (empty match) with a DownstreamTlsContext that requires
//!   a client certificate, so a plaintext connection fails the TLS handshake;
//! - `PERMISSIVE`: `inbound-mtls` matching `transport_protocol: tls` with that context, and
//!   `inbound-plaintext` matching `transport_protocol: raw_buffer` without one; the server
//!   tells them apart by sniffing the TLS ClientHello.
//!
//! Every chain has the same HttpConnectionManager, with an inline RouteConfiguration:
//! `per_route` authorization overrides first, then a catch-all `/`, all with
//! `non_forwarding_action`; its HTTP filters are RBAC (gRFC A41, only when the service has an
//! `authorization` block; principals are matched against the peer's verified SPIFFE ID) and
//! the router.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use xds_proto::any::pack;
use xds_proto::envoy::envoy::config::listener::v3 as listener;
use xds_proto::envoy::envoy::config::route::v3 as route;
use xds_proto::envoy::envoy::extensions::filters::http::router::v3::Router;
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3 as hcm;
use xds_proto::protobuf::Any;

use crate::error::ConfigError;
use crate::model::{MeshConfig, MtlsMode, PerRouteAuthorization, Service};
use crate::rbac::{RBAC_FILTER_NAME, rbac_filter_config, rbac_per_route};
use crate::tls::downstream_transport_socket;
use crate::translate::socket_address;

/// The prefix of inbound listener names, Istio's `server_listener_resource_name_template`
/// without its `%s`.
pub const INBOUND_LISTENER_PREFIX: &str = "xds.istio.io/grpc/lds/inbound/";

/// The name of the plaintext filter chain of an inbound listener (`DISABLE`, `PERMISSIVE`).
pub const PLAINTEXT_FILTER_CHAIN: &str = "inbound-plaintext";

/// The name of the mTLS filter chain of an inbound listener (`PERMISSIVE`, `STRICT`).
pub const MTLS_FILTER_CHAIN: &str = "inbound-mtls";

/// The `filter_chain_match.transport_protocol` of the mTLS chain of a `PERMISSIVE` listener.
pub const TLS_TRANSPORT_PROTOCOL: &str = "tls";

/// The `filter_chain_match.transport_protocol` of the plaintext chain of a `PERMISSIVE`
/// listener.
pub const RAW_BUFFER_TRANSPORT_PROTOCOL: &str = "raw_buffer";

/// The inbound Listener name a server bound to `ip_port` subscribes to:
/// `xds.istio.io/grpc/lds/inbound/{ip_port}`.
///
/// Pass the address as gRPC formats it (a [`SocketAddr`]'s `Display`: IPv6 in brackets).
///
/// ```
/// assert_eq!(
///     mesh_control::inbound_listener_name("127.0.0.1:50051"),
///     "xds.istio.io/grpc/lds/inbound/127.0.0.1:50051"
/// );
/// let v6: std::net::SocketAddr = "[::1]:8080".parse().unwrap();
/// assert_eq!(
///     mesh_control::inbound_listener_name(&v6.to_string()),
///     "xds.istio.io/grpc/lds/inbound/[::1]:8080"
/// );
/// ```
pub fn inbound_listener_name(ip_port: &str) -> String {
    format!("{INBOUND_LISTENER_PREFIX}{ip_port}")
}

/// The name of the inline RouteConfiguration of an inbound listener listening on `port`
/// for `service`: `inbound|{port}||{service}`.
pub fn inbound_route_name(port: u16, service: &str) -> String {
    format!("inbound|{port}||{service}")
}

/// One inbound Listener per distinct endpoint address, in file order. An address listed by
/// several services gets one listener, from the first of them (validation has checked that
/// they agree on authorization and mTLS mode).
pub(crate) fn inbound_listeners(config: &MeshConfig) -> Result<Vec<(String, Any)>, ConfigError> {
    let mut seen = BTreeSet::new();
    let mut listeners = Vec::new();
    for (i, service) in config.services.iter().enumerate() {
        for (j, endpoint) in service.endpoints.iter().enumerate() {
            let address: SocketAddr = endpoint.address.parse().map_err(|_| {
                ConfigError::invalid(
                    format!("services[{i}].endpoints[{j}].address"),
                    format!("{:?} is not ip:port", endpoint.address),
                )
            })?;
            if !seen.insert(address) {
                continue;
            }
            let name = inbound_listener_name(&address.to_string());
            let listener = inbound_listener(&name, address, service).map_err(|message| {
                ConfigError::invalid(format!("services[{i}].authorization"), message)
            })?;
            listeners.push((name, pack(&listener)));
        }
    }
    Ok(listeners)
}

fn inbound_listener(
    name: &str,
    address: SocketAddr,
    service: &Service,
) -> Result<listener::Listener, String> {
    let route_config = inbound_route_config(address.port(), service)?;
    let mut http_filters = Vec::new();
    if let Some(authz) = &service.authorization {
        http_filters.push(hcm::HttpFilter {
            name: RBAC_FILTER_NAME.to_string(),
            config_type: Some(hcm::http_filter::ConfigType::TypedConfig(
                rbac_filter_config(authz)?,
            )),
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
        stat_prefix: "inbound".to_string(),
        route_specifier: Some(hcm::http_connection_manager::RouteSpecifier::RouteConfig(
            route_config,
        )),
        http_filters,
        ..Default::default()
    };
    let filters = vec![listener::Filter {
        name: "envoy.filters.network.http_connection_manager".to_string(),
        config_type: Some(listener::filter::ConfigType::TypedConfig(pack(&manager))),
    }];
    let chain = |name: &str, transport_protocol: &str, mtls: bool| listener::FilterChain {
        name: name.to_string(),
        filter_chain_match: Some(listener::FilterChainMatch {
            transport_protocol: transport_protocol.to_string(),
            ..Default::default()
        }),
        filters: filters.clone(),
        transport_socket: mtls.then(downstream_transport_socket),
        ..Default::default()
    };
    let filter_chains = match service.mtls {
        MtlsMode::Disable => vec![chain(PLAINTEXT_FILTER_CHAIN, "", false)],
        MtlsMode::Strict => vec![chain(MTLS_FILTER_CHAIN, "", true)],
        MtlsMode::Permissive => vec![
            chain(MTLS_FILTER_CHAIN, TLS_TRANSPORT_PROTOCOL, true),
            chain(PLAINTEXT_FILTER_CHAIN, RAW_BUFFER_TRANSPORT_PROTOCOL, false),
        ],
    };
    Ok(listener::Listener {
        name: name.to_string(),
        address: Some(socket_address(address)),
        filter_chains,
        ..Default::default()
    })
}

fn inbound_route_config(port: u16, service: &Service) -> Result<route::RouteConfiguration, String> {
    let per_route = service
        .authorization
        .as_ref()
        .map(|a| a.per_route.as_slice())
        .unwrap_or_default();
    let mut routes = per_route
        .iter()
        .enumerate()
        .map(|(k, entry)| per_route_entry(k, entry))
        .collect::<Result<Vec<_>, String>>()?;
    routes.push(route::Route {
        name: "default".to_string(),
        r#match: Some(route::RouteMatch {
            path_specifier: Some(route::route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(non_forwarding()),
        ..Default::default()
    });
    let name = inbound_route_name(port, &service.name);
    Ok(route::RouteConfiguration {
        name: name.clone(),
        virtual_hosts: vec![route::VirtualHost {
            name,
            domains: vec!["*".to_string()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn per_route_entry(index: usize, entry: &PerRouteAuthorization) -> Result<route::Route, String> {
    use route::route_match::PathSpecifier;
    let path_specifier = match (&entry.path, &entry.prefix) {
        (Some(path), _) => PathSpecifier::Path(path.clone()),
        (None, Some(prefix)) => PathSpecifier::Prefix(prefix.clone()),
        (None, None) => return Err(format!("per_route[{index}]: no path or prefix")),
    };
    Ok(route::Route {
        name: format!("per-route-{index}"),
        r#match: Some(route::RouteMatch {
            path_specifier: Some(path_specifier),
            ..Default::default()
        }),
        action: Some(non_forwarding()),
        typed_per_filter_config: [(RBAC_FILTER_NAME.to_string(), rbac_per_route(entry)?)]
            .into_iter()
            .collect(),
        ..Default::default()
    })
}

fn non_forwarding() -> route::route::Action {
    route::route::Action::NonForwardingAction(route::NonForwardingAction {})
}
