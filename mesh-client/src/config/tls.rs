//! Transport security of clusters and server filter chains (gRFC A29), validated from
//! `UpstreamTlsContext` / `DownstreamTlsContext` by [`crate::xds::resource`].
//!
//! gRPC obtains certificates only from certificate provider *instances* named in the
//! bootstrap's `certificate_providers` (A29), so the model holds provider instance names,
//! never key material: the identity module resolves them. Peer SANs are checked with
//! [`SanMatcher`]s (A29 `match_subject_alt_names`); with a SPIFFE trust bundle map (A87)
//! the SPIFFE checks come first and SAN matching after, as configured here.

use super::StringMatcher;

/// A certificate provider instance (`CertificateProviderPluginInstance`, or the older
/// `CertificateProviderInstance` that Istio and Traffic Director send), gRFC A29.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CertProviderInstance {
    /// The key in the bootstrap's `certificate_providers` map.
    pub instance_name: String,
    /// An opaque name passed to the provider (Istio: `default` for the identity, `ROOTCA`
    /// for the roots); may be empty.
    pub certificate_name: String,
}

/// Client-side TLS of a cluster (CDS `transport_socket` holding an `UpstreamTlsContext`).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamTls {
    /// The client's own certificate and key, for mTLS; `None`: TLS without a client
    /// certificate.
    pub identity: Option<CertProviderInstance>,
    /// The roots (or SPIFFE trust bundle map, A87) that verify the server. Required on the
    /// client (A29).
    pub roots: CertProviderInstance,
    /// The server certificate must have a SAN matching one of these; empty: any SAN.
    pub san_matchers: Vec<SanMatcher>,
    /// `sni`, when set: the server name to send (gRFC A101 draft; not yet used).
    pub sni: Option<String>,
}

/// Server-side TLS of a filter chain (LDS `transport_socket` holding a
/// `DownstreamTlsContext`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownstreamTls {
    /// The server's certificate and key. Required on the server (A29).
    pub identity: CertProviderInstance,
    /// The roots that verify client certificates; `None`: client certificates are not
    /// requested.
    pub roots: Option<CertProviderInstance>,
    /// `require_client_certificate`: mTLS. Validation guarantees `roots` is set when true.
    pub require_client_certificate: bool,
}

/// The kind of a Subject Alternative Name in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SanType {
    /// `dNSName`.
    Dns,
    /// `uniformResourceIdentifier` (where SPIFFE IDs live).
    Uri,
    /// `rfc822Name`.
    Email,
    /// `iPAddress`, in its textual form.
    IpAddress,
}

/// One entry of `match_subject_alt_names` (any SAN type) or `match_typed_subject_alt_names`
/// (one SAN type): an Envoy `StringMatcher` over the SAN's value.
#[derive(Debug, Clone, PartialEq)]
pub struct SanMatcher {
    /// The SAN type this matcher applies to; `None` (from `match_subject_alt_names`): DNS,
    /// URI, email and IP address SANs alike, as gRPC does.
    pub san_type: Option<SanType>,
    /// How the value is matched: exact, prefix, suffix, contains or safe_regex, with
    /// `ignore_case` (never for regex, gRFC A63).
    pub matcher: StringMatcher,
}

impl SanMatcher {
    /// Whether the SAN value matches, whatever its type.
    ///
    /// ```
    /// use mesh_client::config::{SanMatcher, StringMatchKind, StringMatcher};
    /// let m = SanMatcher {
    ///     san_type: None,
    ///     matcher: StringMatcher {
    ///         kind: StringMatchKind::Prefix("spiffe://cluster.local/ns/default/".into()),
    ///         ignore_case: false,
    ///     },
    /// };
    /// assert!(m.matches("spiffe://cluster.local/ns/default/sa/greeter"));
    /// assert!(!m.matches("spiffe://cluster.local/ns/other/sa/greeter"));
    /// ```
    pub fn matches(&self, value: &str) -> bool {
        self.matcher.matches(value)
    }

    /// Whether a SAN of type `san_type` with this value matches: the types must agree when
    /// the matcher is typed, so a DNS SAN never satisfies a URI matcher.
    pub fn matches_san(&self, san_type: SanType, value: &str) -> bool {
        self.san_type.is_none_or(|t| t == san_type) && self.matcher.matches(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StringMatchKind;

    fn m(san_type: Option<SanType>, kind: StringMatchKind, ignore_case: bool) -> SanMatcher {
        SanMatcher {
            san_type,
            matcher: StringMatcher { kind, ignore_case },
        }
    }

    #[test]
    fn san_matcher_kinds_and_types() {
        let id = "spiffe://cluster.local/ns/default/sa/greeter";
        let exact = m(None, StringMatchKind::Exact(id.into()), false);
        assert!(exact.matches(id) && !exact.matches("spiffe://cluster.local/ns/default"));
        let upper = m(None, StringMatchKind::Exact(id.to_uppercase()), true);
        assert!(upper.matches(id));
        let suffix = m(None, StringMatchKind::Suffix("/sa/greeter".into()), false);
        assert!(suffix.matches(id) && !suffix.matches("spiffe://x/sa/other"));
        let contains = m(
            None,
            StringMatchKind::Contains("/ns/default/".into()),
            false,
        );
        assert!(contains.matches(id));
        let re = regex::Regex::new(r"^(?:spiffe://[^/]+/ns/[^/]+/sa/greeter)$").unwrap();
        let regex = m(None, StringMatchKind::Regex(re), false);
        assert!(regex.matches(id) && !regex.matches(&format!("{id}x")));
        // A typed matcher never confuses SAN types; an untyped one takes any.
        let uri = m(Some(SanType::Uri), StringMatchKind::Exact(id.into()), false);
        assert!(uri.matches_san(SanType::Uri, id));
        assert!(!uri.matches_san(SanType::Dns, id));
        assert!(exact.matches_san(SanType::Dns, id));
    }
}
