//! LDS for servers: validation of server-side `Listener` resources (no `api_listener`)
//! into [`config::ServerListener`] (gRFC A36 "xDS-enabled servers", A29 transport socket,
//! A39 HTTP filters, A41 HCM fields).
//!
//! Rules (A36 "Resource Validation" unless noted):
//! - `listener_filters` must be empty; `use_original_dst` must not be `true`.
//! - `address` must be a TCP `socket_address` with an IP address and a `port_value`
//!   (the server compares it with its own listening address later).
//! - Every filter chain, and `default_filter_chain`, has exactly one network filter: an
//!   HttpConnectionManager, validated by the client's HCM rules
//!   ([`super::listener`]: A39 HTTP filters, `rds` over ADS or inline `route_config`, A41).
//!   Routes whose action is not `non_forwarding_action` are accepted: A36 fails the RPCs
//!   that match them with UNAVAILABLE, it does not NACK.
//! - `filter_chain_match` is normalized (CIDR lengths clamped to the family width, host bits
//!   cleared) and no two chains may share a matcher of the Cartesian-product expansion,
//!   including chains that can never match (`server_names`, `application_protocols`).
//! - `transport_socket` (A29): none or `raw_buffer` is plaintext; a `DownstreamTlsContext`
//!   is validated by [`super::tls`] (identity provider instance required, no `require_sni`,
//!   lenient OCSP only, `require_client_certificate` only with a validation context).
//! - No filter chains and no default chain NACKs (grpc-go: nothing could be served).
//! - `direct_source_prefix_ranges` NACKs: ignoring a match condition would widen the chain.
//!   `address_suffix` / `suffix_len` are ignored, as Envoy itself does not implement them.

use std::net::{IpAddr, SocketAddr};

use prost::Message;
use xds_proto::envoy::envoy::config::core::v3::{
    Address, CidrRange, TransportSocket as TransportSocketProto, address,
    socket_address::{PortSpecifier, Protocol},
    transport_socket,
};
use xds_proto::envoy::envoy::config::listener::v3::{
    FilterChain as FilterChainProto, FilterChainMatch as FilterChainMatchProto, filter,
    filter_chain_match::ConnectionSourceType,
};
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager as HcmProto;
use xds_proto::envoy::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use xds_proto::type_url;

use super::ValidationContext;
use super::listener::ListenerProto;
use crate::config::{self, Cidr, FilterChain, FilterChainMatch, SourceType, TransportSocket};

/// `envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer`: plaintext.
const RAW_BUFFER_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer";

/// Whether a Listener is a server-side one: no `api_listener`, but an address or filter
/// chains. Anything else goes to the client path (which NACKs a missing `api_listener`).
pub fn is_server_listener(l: &ListenerProto) -> bool {
    l.api_listener.is_none()
        && (l.address.is_some() || !l.filter_chains.is_empty() || l.default_filter_chain.is_some())
}

/// Validates a server-side Listener. Errors are field paths relative to the resource. `ctx`
/// carries the bootstrap's certificate provider instances (A29).
pub fn validate(
    l: &ListenerProto,
    ctx: &ValidationContext,
) -> Result<config::ServerListener, String> {
    if !l.listener_filters.is_empty() {
        return Err(format!(
            "listener_filters: must be empty, has {} entries",
            l.listener_filters.len()
        ));
    }
    if l.use_original_dst.as_ref().is_some_and(|v| v.value) {
        return Err("use_original_dst: must not be true".into());
    }
    let address = socket_address(l.address.as_ref()).map_err(|e| format!("address{e}"))?;
    let mut filter_chains = Vec::with_capacity(l.filter_chains.len());
    for (i, fc) in l.filter_chains.iter().enumerate() {
        let chain = filter_chain(fc, ctx).map_err(|e| format!("filter_chains[{i}]{e}"))?;
        if let Some(j) = filter_chains
            .iter()
            .position(|c: &FilterChain| overlaps(&c.matcher, &chain.matcher))
        {
            return Err(format!(
                "filter_chains[{i}]: duplicate filter chain match: multiple filter chains \
                 with the same match (overlaps filter_chains[{j}])"
            ));
        }
        filter_chains.push(chain);
    }
    let default_filter_chain = match &l.default_filter_chain {
        Some(fc) => Some(filter_chain(fc, ctx).map_err(|e| format!("default_filter_chain{e}"))?),
        None => None,
    };
    if filter_chains.is_empty() && default_filter_chain.is_none() {
        return Err("filter_chains: empty and no default_filter_chain".into());
    }
    Ok(config::ServerListener {
        name: l.name.clone(),
        address,
        filter_chains,
        default_filter_chain,
    })
}

/// `address`: a TCP socket address with an IP and a port. Errors start with the sub-path.
fn socket_address(a: Option<&Address>) -> Result<SocketAddr, String> {
    let a = a.ok_or(": missing")?;
    let Some(address::Address::SocketAddress(sa)) = &a.address else {
        return Err(": want a socket_address".into());
    };
    if sa.protocol != Protocol::Tcp as i32 {
        return Err(format!(
            ".socket_address.protocol: want TCP, got {}",
            sa.protocol
        ));
    }
    let ip: IpAddr = sa.address.parse().map_err(|_| {
        format!(
            ".socket_address.address: {:?} is not an IP address",
            sa.address
        )
    })?;
    let port = match &sa.port_specifier {
        Some(PortSpecifier::PortValue(p)) => {
            u16::try_from(*p).map_err(|_| format!(".socket_address.port_value: {p} > 65535"))?
        }
        Some(PortSpecifier::NamedPort(_)) => {
            return Err(".socket_address.named_port: unsupported, want port_value".into());
        }
        None => return Err(".socket_address.port_value: missing".into()),
    };
    Ok(SocketAddr::new(ip, port))
}

/// One filter chain. Errors start with the sub-path (`.filters: ...`).
fn filter_chain(fc: &FilterChainProto, ctx: &ValidationContext) -> Result<FilterChain, String> {
    let matcher = match &fc.filter_chain_match {
        Some(m) => filter_chain_match(m).map_err(|e| format!(".filter_chain_match.{e}"))?,
        None => FilterChainMatch::default(),
    };
    let [f] = fc.filters.as_slice() else {
        return Err(format!(
            ".filters: want exactly one network filter (HttpConnectionManager), got {}",
            fc.filters.len()
        ));
    };
    let any = match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) => any,
        _ => return Err(".filters[0].typed_config: missing".into()),
    };
    if any.type_url != type_url::HTTP_CONNECTION_MANAGER {
        return Err(format!(
            ".filters[0] ({:?}): unsupported network filter type {:?}",
            f.name, any.type_url
        ));
    }
    let hcm = HcmProto::decode(any.value.as_slice())
        .map_err(|e| format!(".filters[0].typed_config: cannot decode: {e}"))?;
    let mut http = super::listener::http_connection_manager(&hcm)
        .map_err(|e| format!(".filters[0].typed_config.{e}"))?;
    super::listener::server_side_filters(&hcm, &mut http)
        .map_err(|e| format!(".filters[0].typed_config.{e}"))?;
    let transport = transport_socket(fc.transport_socket.as_ref(), ctx)
        .map_err(|e| format!(".transport_socket{e}"))?;
    Ok(FilterChain {
        name: fc.name.clone(),
        matcher,
        http,
        transport,
    })
}

fn filter_chain_match(m: &FilterChainMatchProto) -> Result<FilterChainMatch, String> {
    if !m.direct_source_prefix_ranges.is_empty() {
        return Err("direct_source_prefix_ranges: unsupported".into());
    }
    let source_type = match ConnectionSourceType::try_from(m.source_type) {
        Ok(ConnectionSourceType::Any) => SourceType::Any,
        Ok(ConnectionSourceType::SameIpOrLoopback) => SourceType::SameIpOrLoopback,
        Ok(ConnectionSourceType::External) => SourceType::External,
        Err(_) => return Err(format!("source_type: unknown value {}", m.source_type)),
    };
    Ok(FilterChainMatch {
        // As in grpc-go, a zero port is the same as none.
        destination_port: m
            .destination_port
            .as_ref()
            .map(|p| p.value)
            .filter(|p| *p != 0),
        prefix_ranges: cidrs(&m.prefix_ranges).map_err(|e| format!("prefix_ranges{e}"))?,
        source_type,
        source_prefix_ranges: cidrs(&m.source_prefix_ranges)
            .map_err(|e| format!("source_prefix_ranges{e}"))?,
        source_ports: m.source_ports.clone(),
        server_names: m.server_names.clone(),
        transport_protocol: Some(m.transport_protocol.clone()).filter(|p| !p.is_empty()),
        application_protocols: m.application_protocols.clone(),
    })
}

/// CIDR ranges, normalized (A36): an absent `prefix_len` is 0, longer than the family is
/// clamped, host bits are cleared.
fn cidrs(ranges: &[CidrRange]) -> Result<Vec<Cidr>, String> {
    ranges
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let ip: IpAddr = r.address_prefix.parse().map_err(|_| {
                format!(
                    "[{i}].address_prefix: {:?} is not an IP address",
                    r.address_prefix
                )
            })?;
            Ok(Cidr::clamped(
                ip,
                r.prefix_len.as_ref().map_or(0, |l| l.value),
            ))
        })
        .collect()
}

/// `transport_socket` (A29). Errors start with the sub-path.
fn transport_socket(
    ts: Option<&TransportSocketProto>,
    ctx: &ValidationContext,
) -> Result<TransportSocket, String> {
    let Some(ts) = ts else {
        return Ok(TransportSocket::Plaintext);
    };
    let any = match &ts.config_type {
        Some(transport_socket::ConfigType::TypedConfig(any)) => any,
        None => return Err(".typed_config: missing".into()),
    };
    match any.type_url.as_str() {
        RAW_BUFFER_TYPE_URL => Ok(TransportSocket::Plaintext),
        type_url::DOWNSTREAM_TLS_CONTEXT => {
            let tls = DownstreamTlsContext::decode(any.value.as_slice())
                .map_err(|e| format!(".typed_config: cannot decode: {e}"))?;
            super::tls::downstream(ts, &tls, ctx).map(TransportSocket::Tls)
        }
        other => Err(format!(
            ".typed_config: unsupported transport socket type {other:?}"
        )),
    }
}

/// Whether two normalized matchers share a conjunction of their Cartesian-product
/// expansion (A36): every field's value sets intersect, an absent field being a value of
/// its own (so an absent CIDR and a `/0` differ).
fn overlaps(a: &FilterChainMatch, b: &FilterChainMatch) -> bool {
    a.destination_port == b.destination_port
        && a.transport_protocol == b.transport_protocol
        && a.source_type == b.source_type
        && intersects(&a.prefix_ranges, &b.prefix_ranges)
        && intersects(&a.source_prefix_ranges, &b.source_prefix_ranges)
        && intersects(&a.source_ports, &b.source_ports)
        && intersects(&a.server_names, &b.server_names)
        && intersects(&a.application_protocols, &b.application_protocols)
}

fn intersects<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    (a.is_empty() && b.is_empty()) || a.iter().any(|x| b.contains(x))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{RouteAction, RouteSource, ServerListener};
    use crate::xds::resource::testing::{Expect, Expect::*, run};
    use crate::xds::resource::{Resource, ResourceType};
    use xds_proto::any::pack;
    use xds_proto::envoy::envoy::config::core::v3::{
        AggregatedConfigSource, ApiConfigSource, ConfigSource, SocketAddress,
        config_source::ConfigSourceSpecifier,
    };
    use xds_proto::envoy::envoy::config::listener::v3::{Filter, ListenerFilter};
    use xds_proto::envoy::envoy::config::route::v3::{
        NonForwardingAction, Route, RouteConfiguration, RouteMatch, VirtualHost, route,
        route_match::PathSpecifier,
    };
    use xds_proto::envoy::envoy::extensions::filters::http::router::v3::Router;
    use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpFilter, Rds, http_connection_manager::RouteSpecifier, http_filter,
    };
    use xds_proto::envoy::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
    use xds_proto::envoy::envoy::extensions::transport_sockets::tls::v3::CommonTlsContext;
    use xds_proto::protobuf::{Any, BoolValue, UInt32Value};

    const NAME: &str = "xds.istio.io/grpc/lds/inbound/0.0.0.0:8080";

    fn router() -> HttpFilter {
        HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack(
                &Router::default(),
            ))),
            ..Default::default()
        }
    }

    /// Istio's inbound route: every RPC, `non_forwarding_action`.
    fn inbound_routes(action: route::Action) -> RouteConfiguration {
        RouteConfiguration {
            name: "inbound|8080||".into(),
            virtual_hosts: vec![VirtualHost {
                name: "inbound|http|8080".into(),
                domains: vec!["*".into()],
                routes: vec![Route {
                    r#match: Some(RouteMatch {
                        path_specifier: Some(PathSpecifier::Prefix("/".into())),
                        ..Default::default()
                    }),
                    action: Some(action),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn hcm() -> HcmProto {
        HcmProto {
            route_specifier: Some(RouteSpecifier::RouteConfig(inbound_routes(
                route::Action::NonForwardingAction(NonForwardingAction {}),
            ))),
            http_filters: vec![router()],
            ..Default::default()
        }
    }

    fn hcm_filter(h: &HcmProto) -> Filter {
        Filter {
            name: "envoy.filters.network.http_connection_manager".into(),
            config_type: Some(filter::ConfigType::TypedConfig(pack(h))),
        }
    }

    /// istiod's proxyless inbound mTLS context: the older provider-instance fields, `default`
    /// for both, certificate names `default` and `ROOTCA`.
    fn tls(require_client_certificate: bool) -> TransportSocketProto {
        TransportSocketProto {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(pack(
                &DownstreamTlsContext {
                    common_tls_context: Some(crate::xds::resource::tls::tests::istio_common(
                        vec![],
                    )),
                    require_client_certificate: Some(BoolValue {
                        value: require_client_certificate,
                    }),
                    ..Default::default()
                },
            ))),
        }
    }

    fn chain(name: &str, m: Option<FilterChainMatchProto>) -> FilterChainProto {
        FilterChainProto {
            name: name.into(),
            filter_chain_match: m,
            filters: vec![hcm_filter(&hcm())],
            ..Default::default()
        }
    }

    fn transport(p: &str) -> Option<FilterChainMatchProto> {
        Some(FilterChainMatchProto {
            transport_protocol: p.into(),
            ..Default::default()
        })
    }

    fn cidr(prefix: &str, len: Option<u32>) -> CidrRange {
        CidrRange {
            address_prefix: prefix.into(),
            prefix_len: len.map(|value| UInt32Value { value }),
        }
    }

    fn dst(ranges: Vec<CidrRange>) -> Option<FilterChainMatchProto> {
        Some(FilterChainMatchProto {
            prefix_ranges: ranges,
            ..Default::default()
        })
    }

    fn socket(ip: &str, port: u32) -> Option<Address> {
        Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        })
    }

    /// Shaped like istiod's proxyless inbound listener in PERMISSIVE mode: an mTLS chain
    /// (`transport_protocol: tls`), a plaintext one (`raw_buffer`), and a default chain.
    pub(crate) fn istio() -> ListenerProto {
        let mut mtls = chain("inbound-mtls", transport("tls"));
        mtls.transport_socket = Some(tls(true));
        ListenerProto {
            name: NAME.into(),
            address: socket("0.0.0.0", 8080),
            filter_chains: vec![mtls, chain("inbound-plaintext", transport("raw_buffer"))],
            default_filter_chain: Some(chain("default", None)),
            ..Default::default()
        }
    }

    fn with(f: impl FnOnce(&mut ListenerProto)) -> Any {
        let mut l = istio();
        f(&mut l);
        pack(&l)
    }

    /// Replaces the chains with ones of these matchers.
    fn chains(ms: Vec<Option<FilterChainMatchProto>>) -> Any {
        with(|l| {
            l.filter_chains = ms.into_iter().map(|m| chain("c", m)).collect();
        })
    }

    fn first_hcm(l: &mut ListenerProto, f: impl FnOnce(&mut HcmProto)) {
        let mut h = hcm();
        f(&mut h);
        if let Some(c) = l.filter_chains.first_mut() {
            c.filters = vec![hcm_filter(&h)];
        }
    }

    fn rows() -> Vec<(&'static str, Any, Expect<ServerListener>)> {
        vec![
            (
                // A36: the server listener as istiod sends it; A29: the tls chain is mTLS.
                "istio permissive inbound listener",
                pack(&istio()),
                Accepted(|l| {
                    let [mtls, plain] = l.filter_chains.as_slice() else {
                        return false;
                    };
                    l.name == NAME
                        && l.address == "0.0.0.0:8080".parse().unwrap()
                        && mtls.matcher.transport_protocol.as_deref() == Some("tls")
                        && matches!(&mtls.transport, TransportSocket::Tls(t)
                            if t.require_client_certificate
                                && t.identity.instance_name == "default"
                                && t.roots.as_ref().is_some_and(|r| r.certificate_name == "ROOTCA"))
                        && plain.matcher.transport_protocol.as_deref() == Some("raw_buffer")
                        && plain.transport == TransportSocket::Plaintext
                        && l.default_filter_chain
                            .as_ref()
                            .is_some_and(|d| d.name == "default")
                        && matches!(&mtls.http.route_source, RouteSource::Inline(rc)
                            if rc.virtual_hosts[0].routes[0].action == RouteAction::NonForwarding)
                }),
            ),
            (
                // A36: a route action other than non_forwarding_action fails RPCs, no NACK.
                "route action other than non_forwarding",
                with(|l| {
                    first_hcm(l, |h| {
                        h.route_specifier = Some(RouteSpecifier::RouteConfig(inbound_routes(
                            route::Action::Redirect(Default::default()),
                        )))
                    })
                }),
                Accepted(|l| {
                    matches!(&l.filter_chains[0].http.route_source, RouteSource::Inline(rc)
                        if rc.virtual_hosts[0].routes[0].action == RouteAction::Unsupported)
                }),
            ),
            (
                // A36: rds is allowed; A27: its config source must be ADS.
                "rds over ads",
                with(|l| {
                    first_hcm(l, |h| {
                        h.route_specifier = Some(RouteSpecifier::Rds(Rds {
                            config_source: Some(ConfigSource {
                                config_source_specifier: Some(ConfigSourceSpecifier::Ads(
                                    AggregatedConfigSource {},
                                )),
                                ..Default::default()
                            }),
                            route_config_name: "inbound-routes".into(),
                        }))
                    })
                }),
                Accepted(|l| {
                    l.filter_chains[0].http.route_source
                        == RouteSource::Rds("inbound-routes".into())
                }),
            ),
            (
                // A27 (via the shared HCM rules): rds from a non-ADS source NACKs.
                "rds not over ads",
                with(|l| {
                    first_hcm(l, |h| {
                        h.route_specifier = Some(RouteSpecifier::Rds(Rds {
                            config_source: Some(ConfigSource {
                                config_source_specifier: Some(
                                    ConfigSourceSpecifier::ApiConfigSource(
                                        ApiConfigSource::default(),
                                    ),
                                ),
                                ..Default::default()
                            }),
                            route_config_name: "r".into(),
                        }))
                    })
                }),
                Nack(
                    "listener \"xds.istio.io/grpc/lds/inbound/0.0.0.0:8080\": filter_chains[0].filters[0].typed_config.rds.config_source: must be ads or self",
                ),
            ),
            (
                // A39: the HCM's http_filters need the router last.
                "hcm without router",
                with(|l| first_hcm(l, |h| h.http_filters.clear())),
                Nack("filter_chains[0].filters[0].typed_config.http_filters: empty"),
            ),
            (
                // A41: xff_num_trusted_hops must be zero on servers too.
                "hcm xff_num_trusted_hops",
                with(|l| first_hcm(l, |h| h.xff_num_trusted_hops = 2)),
                Nack("filter_chains[0].filters[0].typed_config.xff_num_trusted_hops"),
            ),
            (
                // A36: listener_filters must be empty.
                "listener_filters",
                with(|l| {
                    l.listener_filters = vec![ListenerFilter {
                        name: "envoy.filters.listener.tls_inspector".into(),
                        ..Default::default()
                    }]
                }),
                Nack("listener_filters: must be empty, has 1 entries"),
            ),
            (
                // A36: use_original_dst must not be true.
                "use_original_dst true",
                with(|l| l.use_original_dst = Some(BoolValue { value: true })),
                Nack("use_original_dst: must not be true"),
            ),
            (
                // A36: use_original_dst false is fine.
                "use_original_dst false",
                with(|l| l.use_original_dst = Some(BoolValue { value: false })),
                Accepted(|l| l.filter_chains.len() == 2),
            ),
            (
                // A36: the address is a socket address; missing NACKs.
                "address missing",
                with(|l| l.address = None),
                Nack("address: missing"),
            ),
            (
                // A36: the address is an IP, compared with the listening address.
                "address hostname",
                with(|l| l.address = socket("localhost", 8080)),
                Nack("address.socket_address.address: \"localhost\" is not an IP address"),
            ),
            (
                // A36: IPv6 listener address.
                "address ipv6",
                with(|l| l.address = socket("::", 8080)),
                Accepted(|l| l.address == "[::]:8080".parse().unwrap()),
            ),
            (
                // A36: port_value is required (named ports cannot match a listening port).
                "address named port",
                with(|l| {
                    if let Some(Address {
                        address: Some(address::Address::SocketAddress(sa)),
                    }) = &mut l.address
                    {
                        sa.port_specifier = Some(PortSpecifier::NamedPort("grpc".into()));
                    }
                }),
                Nack("address.socket_address.named_port: unsupported"),
            ),
            (
                // A36: a TCP socket address.
                "address udp",
                with(|l| {
                    if let Some(Address {
                        address: Some(address::Address::SocketAddress(sa)),
                    }) = &mut l.address
                    {
                        sa.protocol = Protocol::Udp as i32;
                    }
                }),
                Nack("address.socket_address.protocol: want TCP"),
            ),
            (
                // A36: exactly one network filter.
                "no network filters",
                with(|l| l.filter_chains[1].filters.clear()),
                Nack("filter_chains[1].filters: want exactly one network filter"),
            ),
            (
                // A36: exactly one network filter (no filters after the HCM).
                "two network filters",
                with(|l| {
                    let f = hcm_filter(&hcm());
                    l.filter_chains[1].filters.push(f);
                }),
                Nack(
                    "filter_chains[1].filters: want exactly one network filter (HttpConnectionManager), got 2",
                ),
            ),
            (
                // A36: the only supported network filter is the HCM.
                "unknown network filter",
                with(|l| {
                    l.filter_chains[0].filters = vec![Filter {
                        name: "tcp_proxy".into(),
                        config_type: Some(filter::ConfigType::TypedConfig(Any {
                            type_url: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy".into(),
                            value: vec![],
                        })),
                    }]
                }),
                Nack(
                    "filter_chains[0].filters[0] (\"tcp_proxy\"): unsupported network filter type",
                ),
            ),
            (
                // A36: default_filter_chain is validated like the others.
                "invalid default chain",
                with(|l| {
                    if let Some(d) = &mut l.default_filter_chain {
                        d.filters.clear();
                    }
                }),
                Nack("default_filter_chain.filters: want exactly one network filter"),
            ),
            (
                // A36: identical matchers make the most-specific match ambiguous.
                "duplicate matchers",
                chains(vec![
                    transport("tls"),
                    transport("raw_buffer"),
                    transport("tls"),
                ]),
                Nack(
                    "filter_chains[2]: duplicate filter chain match: multiple filter chains with the same match (overlaps filter_chains[0])",
                ),
            ),
            (
                // A36: duplicates are found after normalization (host bits, clamped len).
                "duplicate after cidr normalization",
                chains(vec![
                    dst(vec![cidr("10.1.2.3", Some(16))]),
                    dst(vec![cidr("10.1.0.0", Some(16))]),
                ]),
                Nack("filter_chains[1]: duplicate filter chain match"),
            ),
            (
                // A36: the Cartesian-product expansions overlap on one conjunction.
                "duplicate in the cartesian product",
                chains(vec![
                    dst(vec![
                        cidr("192.168.0.0", Some(24)),
                        cidr("10.1.0.0", Some(16)),
                    ]),
                    dst(vec![cidr("10.1.0.0", Some(16))]),
                ]),
                Nack("filter_chains[1]: duplicate filter chain match"),
            ),
            (
                // A36: chains that can never match are still checked for duplicates.
                "duplicate never-matching chains",
                chains(vec![
                    Some(FilterChainMatchProto {
                        server_names: vec!["a.example".into()],
                        ..Default::default()
                    }),
                    Some(FilterChainMatchProto {
                        server_names: vec!["b.example".into(), "a.example".into()],
                        ..Default::default()
                    }),
                ]),
                Nack("filter_chains[1]: duplicate filter chain match"),
            ),
            (
                // A36: a /0 CIDR is not the same as no CIDR; an absent prefix_len is 0.
                "cidr /0 differs from unset",
                chains(vec![dst(vec![cidr("0.0.0.0", None)]), None]),
                Accepted(|l| {
                    l.filter_chains[0].matcher.prefix_ranges[0].prefix_len() == 0
                        && l.filter_chains[1].matcher.prefix_ranges.is_empty()
                }),
            ),
            (
                // A36: prefix_len beyond the family width is clamped, not NACKed.
                "prefix_len clamped",
                chains(vec![dst(vec![
                    cidr("10.0.0.1", Some(40)),
                    cidr("::1", Some(300)),
                ])]),
                Accepted(|l| {
                    let r = &l.filter_chains[0].matcher.prefix_ranges;
                    r[0].prefix_len() == 32 && r[1].prefix_len() == 128
                }),
            ),
            (
                // A36: a CidrRange address must be an IP.
                "bad address_prefix",
                chains(vec![Some(FilterChainMatchProto {
                    source_prefix_ranges: vec![cidr("not-an-ip", Some(8))],
                    ..Default::default()
                })]),
                Nack(
                    "filter_chains[0].filter_chain_match.source_prefix_ranges[0].address_prefix: \"not-an-ip\" is not an IP address",
                ),
            ),
            (
                // A36: source_type is one of the three known values.
                "unknown source_type",
                chains(vec![Some(FilterChainMatchProto {
                    source_type: 7,
                    ..Default::default()
                })]),
                Nack("filter_chains[0].filter_chain_match.source_type: unknown value 7"),
            ),
            (
                // Ours: ignoring direct_source_prefix_ranges would widen the chain.
                "direct_source_prefix_ranges",
                chains(vec![Some(FilterChainMatchProto {
                    direct_source_prefix_ranges: vec![cidr("10.0.0.0", Some(8))],
                    ..Default::default()
                })]),
                Nack(
                    "filter_chains[0].filter_chain_match.direct_source_prefix_ranges: unsupported",
                ),
            ),
            (
                // grpc-go: nothing could ever be served.
                "no chains and no default",
                with(|l| {
                    l.filter_chains.clear();
                    l.default_filter_chain = None;
                }),
                Nack("filter_chains: empty and no default_filter_chain"),
            ),
            (
                // A36: only a default chain is enough.
                "only a default chain",
                with(|l| l.filter_chains.clear()),
                Accepted(|l| l.filter_chains.is_empty() && l.default_filter_chain.is_some()),
            ),
            (
                // A29: a raw_buffer transport socket is plaintext.
                "raw_buffer transport socket",
                with(|l| {
                    l.filter_chains[1].transport_socket = Some(TransportSocketProto {
                        name: "envoy.transport_sockets.raw_buffer".into(),
                        config_type: Some(transport_socket::ConfigType::TypedConfig(pack(
                            &RawBuffer {},
                        ))),
                    })
                }),
                Accepted(|l| l.filter_chains[1].transport == TransportSocket::Plaintext),
            ),
            (
                // A29: other transport sockets NACK.
                "unknown transport socket",
                with(|l| {
                    l.filter_chains[1].transport_socket = Some(TransportSocketProto {
                        name: "alts".into(),
                        config_type: Some(transport_socket::ConfigType::TypedConfig(Any {
                            type_url: "type.googleapis.com/acme.Alts".into(),
                            value: vec![],
                        })),
                    })
                }),
                Nack(
                    "filter_chains[1].transport_socket.typed_config: unsupported transport socket type \"type.googleapis.com/acme.Alts\"",
                ),
            ),
            (
                // A29: require_sni NACKs (gRPC servers do not select certificates by SNI).
                "tls require_sni",
                with(|l| {
                    l.filter_chains[0].transport_socket = Some(TransportSocketProto {
                        name: "envoy.transport_sockets.tls".into(),
                        config_type: Some(transport_socket::ConfigType::TypedConfig(pack(
                            &DownstreamTlsContext {
                                common_tls_context: Some(CommonTlsContext::default()),
                                require_sni: Some(BoolValue { value: true }),
                                ..Default::default()
                            },
                        ))),
                    })
                }),
                Nack(
                    "filter_chains[0].transport_socket.typed_config.require_sni: must not be true",
                ),
            ),
        ]
    }

    #[test]
    fn server_lds_validation_table() {
        run(ResourceType::Listener, rows(), |r| match r {
            Resource::ServerListener(l) => Some(l),
            _ => None,
        });
    }

    #[test]
    fn dispatch_by_shape() {
        // A Listener with api_listener stays on the client path (A27), even with chains.
        let mut client = istio();
        client.api_listener = Some(Default::default());
        assert!(!is_server_listener(&client));
        // Neither api_listener nor address/chains: the client path NACKs it (A27).
        assert!(!is_server_listener(&ListenerProto::default()));
        assert!(is_server_listener(&istio()));
    }
}
