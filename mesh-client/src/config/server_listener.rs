//! Server-side listeners and the filter-chain match (gRFC A36 "xDS-enabled servers").
//!
//! A [`ServerListener`] is what an xDS-managed server serves on one listening address: a
//! list of [`FilterChain`]s, each holding the HttpConnectionManager (routes, HTTP filters)
//! and transport security for the connections it matches, plus an optional default chain.
//! [`ServerListener::select`] picks the chain for an accepted connection with Envoy's
//! most-specific-match algorithm as A36 restricts it.
//!
//! Deviations from A36, on purpose (see [`ServerListener::select`]): `transport_protocol`
//! matches the protocol sniffed from the first bytes (`tls` or `raw_buffer`), so Istio's
//! PERMISSIVE mode works, where gRPC only ever matches `raw_buffer`; and `destination_port`
//! matches the connection's local port, where gRPC never matches a chain that sets it.

use std::net::{IpAddr, SocketAddr};

use super::{Cidr, DownstreamTls, HttpConnectionManager};

/// A validated server-side Listener (LDS resource without `api_listener`, gRFC A36).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerListener {
    /// The resource name, e.g. `xds.istio.io/grpc/lds/inbound/0.0.0.0:8080`.
    pub name: String,
    /// `address.socket_address`: the server serves only if this is its listening address.
    pub address: SocketAddr,
    /// The filter chains; validation guarantees no two have overlapping matches.
    pub filter_chains: Vec<FilterChain>,
    /// Used when no chain matches; without it such connections are closed.
    pub default_filter_chain: Option<FilterChain>,
}

/// One filter chain: what a matching connection gets.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterChain {
    /// The chain's name (may be empty).
    pub name: String,
    /// When this chain applies (ignored for the default chain).
    pub matcher: FilterChainMatch,
    /// The HttpConnectionManager, the chain's only network filter.
    pub http: HttpConnectionManager,
    /// How the connection's bytes are carried.
    pub transport: TransportSocket,
}

/// The transport of a filter chain (gRFC A29).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSocket {
    /// No `transport_socket` (or `raw_buffer`): plaintext HTTP/2.
    Plaintext,
    /// A `DownstreamTlsContext`: TLS, or mTLS when it requires a client certificate.
    Tls(DownstreamTls),
}

/// Which connection sources a chain accepts (`FilterChainMatch.source_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SourceType {
    /// `ANY`.
    #[default]
    Any,
    /// `SAME_IP_OR_LOOPBACK`: the peer is this host (same IP as the local end, or loopback).
    SameIpOrLoopback,
    /// `EXTERNAL`: any other peer.
    External,
}

/// The validated `FilterChainMatch`. Empty lists and `None` mean "any".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FilterChainMatch {
    /// `destination_port`: the connection's local port.
    pub destination_port: Option<u32>,
    /// `prefix_ranges`: the connection's local (destination) address.
    pub prefix_ranges: Vec<Cidr>,
    /// `source_type`.
    pub source_type: SourceType,
    /// `source_prefix_ranges`: the peer address.
    pub source_prefix_ranges: Vec<Cidr>,
    /// `source_ports`: the peer port.
    pub source_ports: Vec<u32>,
    /// `server_names` (SNI). Never matches (A36): gRPC has no TLS inspector.
    pub server_names: Vec<String>,
    /// `transport_protocol`: `raw_buffer`, `tls`, or another name that never matches.
    pub transport_protocol: Option<String>,
    /// `application_protocols` (ALPN). Never matches (A36).
    pub application_protocols: Vec<String>,
}

/// What is known about an accepted connection when its filter chain is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionInfo<'a> {
    /// The local (destination) address of the connection.
    pub local: SocketAddr,
    /// The peer (source) address.
    pub peer: SocketAddr,
    /// The transport protocol sniffed from the first bytes: `"tls"` (a TLS ClientHello) or
    /// `"raw_buffer"`. `None` (not sniffed) is treated as `"raw_buffer"`, Envoy's default.
    pub transport_protocol: Option<&'a str>,
}

/// The transport protocol of a connection that was not sniffed (Envoy's default).
pub const RAW_BUFFER: &str = "raw_buffer";

impl ServerListener {
    /// The filter chain for a connection, or `None` if the connection must be closed.
    ///
    /// Envoy's most-specific match (gRFC A36): the criteria are applied in order, and at
    /// each step only the candidates that match most specifically go on, without
    /// backtracking; if none is left the default chain is used.
    ///
    /// 1. `destination_port` equal to the local port beats no port; other ports never match.
    /// 2. `prefix_ranges`: the longest prefix containing the local address beats shorter
    ///    ones, any prefix beats none.
    /// 3. `transport_protocol` equal to the sniffed protocol beats none.
    /// 4. `source_type`: a matching `SAME_IP_OR_LOOPBACK` / `EXTERNAL` beats `ANY`.
    /// 5. `source_prefix_ranges`: longest match, as in 2, on the peer address.
    /// 6. `source_ports` containing the peer port beats none.
    ///
    /// Chains with `server_names` or `application_protocols` never match (A36: gRPC has no
    /// listener filters to find them) and are left out before step 1. Validation rejects
    /// overlapping matchers, so at most one chain survives the six steps.
    ///
    /// ```
    /// use mesh_client::config::{ConnectionInfo, ServerListener};
    /// let l = ServerListener {
    ///     name: "l".into(),
    ///     address: "0.0.0.0:8080".parse().unwrap(),
    ///     filter_chains: vec![],
    ///     default_filter_chain: None,
    /// };
    /// let conn = ConnectionInfo {
    ///     local: "10.0.0.1:8080".parse().unwrap(),
    ///     peer: "10.0.0.2:40000".parse().unwrap(),
    ///     transport_protocol: None,
    /// };
    /// assert!(l.select(&conn).is_none());
    /// ```
    pub fn select(&self, conn: &ConnectionInfo<'_>) -> Option<&FilterChain> {
        let local = conn.local.ip().to_canonical();
        let peer = conn.peer.ip().to_canonical();
        let protocol = conn.transport_protocol.unwrap_or(RAW_BUFFER);
        let mut candidates: Vec<&FilterChain> = self
            .filter_chains
            .iter()
            .filter(|c| c.matcher.server_names.is_empty())
            .filter(|c| c.matcher.application_protocols.is_empty())
            .collect();
        // Each step scores a chain: None = no match, higher = more specific.
        let steps: [Step<'_>; 6] = [
            &|m| match m.destination_port {
                None => Some(0),
                Some(p) => (p == u32::from(conn.local.port())).then_some(1),
            },
            &|m| longest_prefix(&m.prefix_ranges, local),
            &|m| match m.transport_protocol.as_deref() {
                None => Some(0),
                Some(p) => (p == protocol).then_some(1),
            },
            &|m| match m.source_type {
                SourceType::Any => Some(0),
                SourceType::SameIpOrLoopback => (peer == local || peer.is_loopback()).then_some(1),
                SourceType::External => (peer != local && !peer.is_loopback()).then_some(1),
            },
            &|m| longest_prefix(&m.source_prefix_ranges, peer),
            &|m| {
                if m.source_ports.is_empty() {
                    Some(0)
                } else {
                    m.source_ports
                        .contains(&u32::from(conn.peer.port()))
                        .then_some(1)
                }
            },
        ];
        for score in steps {
            let best = candidates.iter().filter_map(|c| score(&c.matcher)).max();
            let Some(best) = best else {
                candidates.clear();
                break;
            };
            candidates.retain(|c| score(&c.matcher) == Some(best));
        }
        candidates
            .first()
            .copied()
            .or(self.default_filter_chain.as_ref())
    }
}

/// One step of the match: scores a chain's matcher, `None` if it does not match.
type Step<'a> = &'a dyn Fn(&FilterChainMatch) -> Option<u32>;

/// Scores a prefix list against `ip`: `Some(0)` for an empty list (the fallback), the
/// longest matching length + 1 otherwise, `None` if no range contains `ip`.
fn longest_prefix(ranges: &[Cidr], ip: IpAddr) -> Option<u32> {
    if ranges.is_empty() {
        return Some(0);
    }
    ranges
        .iter()
        .filter(|c| c.contains(ip))
        .map(|c| u32::from(c.prefix_len()) + 1)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteSource;

    fn chain(name: &str, matcher: FilterChainMatch) -> FilterChain {
        FilterChain {
            name: name.into(),
            matcher,
            http: HttpConnectionManager {
                route_source: RouteSource::Rds("r".into()),
                http_filters: vec![],
                max_stream_duration: None,
            },
            transport: TransportSocket::Plaintext,
        }
    }

    fn cidr(s: &str) -> Cidr {
        let (ip, len) = s.split_once('/').unwrap();
        Cidr::clamped(ip.parse().unwrap(), len.parse().unwrap())
    }

    fn ports(p: u32) -> FilterChainMatch {
        FilterChainMatch {
            destination_port: Some(p),
            ..Default::default()
        }
    }

    fn dst(ranges: &[&str]) -> FilterChainMatch {
        FilterChainMatch {
            prefix_ranges: ranges.iter().map(|r| cidr(r)).collect(),
            ..Default::default()
        }
    }

    fn src(ranges: &[&str]) -> FilterChainMatch {
        FilterChainMatch {
            source_prefix_ranges: ranges.iter().map(|r| cidr(r)).collect(),
            ..Default::default()
        }
    }

    fn source_type(t: SourceType) -> FilterChainMatch {
        FilterChainMatch {
            source_type: t,
            ..Default::default()
        }
    }

    fn protocol(p: &str) -> FilterChainMatch {
        FilterChainMatch {
            transport_protocol: Some(p.into()),
            ..Default::default()
        }
    }

    fn any() -> FilterChainMatch {
        FilterChainMatch::default()
    }

    /// A connection `peer` → `local`, with the sniffed protocol.
    fn conn(local: &str, peer: &str, tp: Option<&'static str>) -> ConnectionInfo<'static> {
        ConnectionInfo {
            local: local.parse().unwrap(),
            peer: peer.parse().unwrap(),
            transport_protocol: tp,
        }
    }

    struct Row {
        rule: &'static str,
        chains: Vec<(&'static str, FilterChainMatch)>,
        default: bool,
        conn: ConnectionInfo<'static>,
        want: Option<&'static str>,
    }

    fn rows() -> Vec<Row> {
        let c = |local, peer| conn(local, peer, None);
        vec![
            Row {
                rule: "destination_port equal to the local port beats no port",
                chains: vec![
                    ("none", any()),
                    ("8080", ports(8080)),
                    ("9090", ports(9090)),
                ],
                default: false,
                conn: c("10.0.0.1:8080", "10.0.0.2:5000"),
                want: Some("8080"),
            },
            Row {
                rule: "destination_port of another port never matches",
                chains: vec![("9090", ports(9090))],
                default: true,
                conn: c("10.0.0.1:8080", "10.0.0.2:5000"),
                want: Some("default"),
            },
            Row {
                rule: "prefix_ranges: the longest matching prefix wins; no prefix is the fallback",
                chains: vec![
                    ("none", any()),
                    ("/8", dst(&["10.0.0.0/8"])),
                    ("/24", dst(&["192.168.0.0/16", "10.0.0.0/24"])),
                    ("/28-miss", dst(&["10.0.0.128/28"])),
                ],
                default: false,
                conn: c("10.0.0.1:8080", "10.0.0.2:5000"),
                want: Some("/24"),
            },
            Row {
                rule: "prefix_ranges: no prefix matches → the chain without prefix",
                chains: vec![("none", any()), ("/8", dst(&["10.0.0.0/8"]))],
                default: false,
                conn: c("172.16.0.1:8080", "10.0.0.2:5000"),
                want: Some("none"),
            },
            Row {
                rule: "prefix_ranges: IPv6 longest match; a v4 /0 does not match v6",
                chains: vec![
                    ("v4-any", dst(&["0.0.0.0/0"])),
                    ("v6/32", dst(&["2001:db8::/32"])),
                    ("v6/64", dst(&["2001:db8:0:1::/64"])),
                ],
                default: false,
                conn: c("[2001:db8:0:1::5]:8080", "[2001:db8::9]:5000"),
                want: Some("v6/64"),
            },
            Row {
                rule: "prefix_ranges: an IPv4-mapped IPv6 local address matches IPv4 ranges",
                chains: vec![("v4", dst(&["10.0.0.0/8"]))],
                default: false,
                conn: c("[::ffff:10.0.0.1]:8080", "[::ffff:10.0.0.2]:5000"),
                want: Some("v4"),
            },
            Row {
                rule: "source_type SAME_IP_OR_LOOPBACK: peer ip == local ip beats ANY",
                chains: vec![
                    ("any", any()),
                    ("same", source_type(SourceType::SameIpOrLoopback)),
                    ("external", source_type(SourceType::External)),
                ],
                default: false,
                conn: c("10.0.0.1:8080", "10.0.0.1:5000"),
                want: Some("same"),
            },
            Row {
                rule: "source_type SAME_IP_OR_LOOPBACK: a loopback peer",
                chains: vec![
                    ("any", any()),
                    ("same", source_type(SourceType::SameIpOrLoopback)),
                    ("external", source_type(SourceType::External)),
                ],
                default: false,
                conn: c("[::1]:8080", "[::1]:5000"),
                want: Some("same"),
            },
            Row {
                rule: "source_type EXTERNAL: another host",
                chains: vec![
                    ("any", any()),
                    ("same", source_type(SourceType::SameIpOrLoopback)),
                    ("external", source_type(SourceType::External)),
                ],
                default: false,
                conn: c("10.0.0.1:8080", "10.0.0.9:5000"),
                want: Some("external"),
            },
            Row {
                rule: "source_type: a non-matching specific type falls back to ANY",
                chains: vec![
                    ("any", any()),
                    ("same", source_type(SourceType::SameIpOrLoopback)),
                ],
                default: false,
                conn: c("10.0.0.1:8080", "10.0.0.9:5000"),
                want: Some("any"),
            },
            Row {
                rule: "source_prefix_ranges: the longest matching prefix wins",
                chains: vec![
                    ("none", any()),
                    ("/16", src(&["10.1.0.0/16"])),
                    ("/24", src(&["10.1.2.0/24"])),
                ],
                default: false,
                conn: c("10.0.0.1:8080", "10.1.2.3:5000"),
                want: Some("/24"),
            },
            Row {
                rule: "source_ports: an exact port beats none; other ports never match",
                chains: vec![
                    ("none", any()),
                    (
                        "5000",
                        FilterChainMatch {
                            source_ports: vec![4000, 5000],
                            ..Default::default()
                        },
                    ),
                    (
                        "6000",
                        FilterChainMatch {
                            source_ports: vec![6000],
                            ..Default::default()
                        },
                    ),
                ],
                default: false,
                conn: c("10.0.0.1:8080", "10.0.0.2:5000"),
                want: Some("5000"),
            },
            Row {
                rule: "transport_protocol: a sniffed TLS ClientHello selects the tls chain (PERMISSIVE)",
                chains: vec![("mtls", protocol("tls")), ("plain", protocol("raw_buffer"))],
                default: false,
                conn: conn("10.0.0.1:8080", "10.0.0.2:5000", Some("tls")),
                want: Some("mtls"),
            },
            Row {
                rule: "transport_protocol: plaintext selects raw_buffer (PERMISSIVE)",
                chains: vec![("mtls", protocol("tls")), ("plain", protocol("raw_buffer"))],
                default: false,
                conn: conn("10.0.0.1:8080", "10.0.0.2:5000", Some("raw_buffer")),
                want: Some("plain"),
            },
            Row {
                rule: "transport_protocol: not sniffed is raw_buffer; exact beats empty",
                chains: vec![("empty", any()), ("plain", protocol("raw_buffer"))],
                default: false,
                conn: c("10.0.0.1:8080", "10.0.0.2:5000"),
                want: Some("plain"),
            },
            Row {
                rule: "transport_protocol: STRICT (tls only) with a plaintext peer → default",
                chains: vec![("mtls", protocol("tls"))],
                default: true,
                conn: c("10.0.0.1:8080", "10.0.0.2:5000"),
                want: Some("default"),
            },
            Row {
                rule: "no backtracking: the most specific prefix fails later → default, not the /8",
                chains: vec![
                    ("/8", dst(&["10.0.0.0/8"])),
                    (
                        "/24-same",
                        FilterChainMatch {
                            prefix_ranges: vec![cidr("10.0.0.0/24")],
                            source_type: SourceType::SameIpOrLoopback,
                            ..Default::default()
                        },
                    ),
                ],
                default: true,
                conn: c("10.0.0.1:8080", "10.9.9.9:5000"),
                want: Some("default"),
            },
            Row {
                rule: "server_names / application_protocols never match (A36) and are pruned",
                chains: vec![
                    (
                        "sni",
                        FilterChainMatch {
                            prefix_ranges: vec![cidr("10.0.0.0/24")],
                            server_names: vec!["a.example".into()],
                            ..Default::default()
                        },
                    ),
                    (
                        "alpn",
                        FilterChainMatch {
                            application_protocols: vec!["h2".into()],
                            ..Default::default()
                        },
                    ),
                    ("/8", dst(&["10.0.0.0/8"])),
                ],
                default: false,
                conn: c("10.0.0.1:8080", "10.0.0.2:5000"),
                want: Some("/8"),
            },
            Row {
                rule: "no chain matches → default_filter_chain",
                chains: vec![("/8", dst(&["10.0.0.0/8"]))],
                default: true,
                conn: c("192.168.0.1:8080", "10.0.0.2:5000"),
                want: Some("default"),
            },
            Row {
                rule: "no chain matches and no default → None (close the connection)",
                chains: vec![("/8", dst(&["10.0.0.0/8"]))],
                default: false,
                conn: c("192.168.0.1:8080", "10.0.0.2:5000"),
                want: None,
            },
        ]
    }

    #[test]
    fn filter_chain_selection_table() {
        let mut failures = Vec::new();
        for row in rows() {
            let listener = ServerListener {
                name: "l".into(),
                address: "0.0.0.0:8080".parse().unwrap(),
                filter_chains: row.chains.into_iter().map(|(n, m)| chain(n, m)).collect(),
                default_filter_chain: row.default.then(|| chain("default", any())),
            };
            let got = listener.select(&row.conn).map(|c| c.name.as_str());
            if got != row.want {
                failures.push(format!("{}: got {got:?}, want {:?}", row.rule, row.want));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn cidr_normalization() {
        // A36: prefix_len clamped to the family width, host bits ignored.
        assert_eq!(cidr("10.1.2.3/40"), cidr("10.1.2.3/32"));
        assert_eq!(cidr("10.1.2.3/16"), cidr("10.1.0.0/16"));
        assert_eq!(cidr("2001:db8::1/200").prefix_len(), 128);
        assert_eq!(cidr("2001:db8::1/0").to_string(), "::/0");
        assert!(cidr("0.0.0.0/0").contains("1.2.3.4".parse().unwrap()));
        assert!(!cidr("0.0.0.0/0").contains("::1".parse().unwrap()));
    }
}
