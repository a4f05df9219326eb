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
//!   must not set `require_sni` or a strict OCSP policy and needs a `common_tls_context`.
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
use xds_proto::envoy::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, downstream_tls_context::OcspStaplePolicy,
};
use xds_proto::type_url;

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

/// Validates a server-side Listener. Errors are field paths relative to the resource.
pub fn validate(l: &ListenerProto) -> Result<config::ServerListener, String> {
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
        let chain = filter_chain(fc).map_err(|e| format!("filter_chains[{i}]{e}"))?;
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
        Some(fc) => Some(filter_chain(fc).map_err(|e| format!("default_filter_chain{e}"))?),
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
fn filter_chain(fc: &FilterChainProto) -> Result<FilterChain, String> {
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
    let http = super::listener::http_connection_manager(&hcm)
        .map_err(|e| format!(".filters[0].typed_config.{e}"))?;
    let transport = transport_socket(fc.transport_socket.as_ref())
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
            Ok(Cidr::new(ip, r.prefix_len.as_ref().map_or(0, |l| l.value)))
        })
        .collect()
}

/// `transport_socket` (A29). Errors start with the sub-path.
fn transport_socket(ts: Option<&TransportSocketProto>) -> Result<TransportSocket, String> {
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
            if tls.require_sni.as_ref().is_some_and(|v| v.value) {
                return Err(".typed_config.require_sni: must not be true".into());
            }
            if tls.ocsp_staple_policy != OcspStaplePolicy::LenientStapling as i32 {
                return Err(format!(
                    ".typed_config.ocsp_staple_policy: unsupported value {}, want LENIENT_STAPLING",
                    tls.ocsp_staple_policy
                ));
            }
            if tls.common_tls_context.is_none() {
                return Err(".typed_config.common_tls_context: missing".into());
            }
            Ok(TransportSocket::Tls {
                require_client_certificate: tls
                    .require_client_certificate
                    .as_ref()
                    .is_some_and(|v| v.value),
            })
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
