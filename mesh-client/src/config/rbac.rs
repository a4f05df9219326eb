//! Server-side RBAC authorization: the validated model of Envoy's RBAC HTTP filter and its
//! evaluation engine (gRFC A41; Envoy `envoy.config.rbac.v3` and
//! `envoy.extensions.filters.http.rbac.v3`).
//!
//! An [`Rbac`] holds the enforced `rules` and, beyond gRPC, the `shadow_rules` evaluated as a
//! dry run. [`Rbac::evaluate`] takes a [`RequestInfo`] and returns a [`Decision`]. It is pure:
//! no I/O, no locks, no allocation except when joining a multi-valued header.
//!
//! How gRPC maps Envoy's fields (gRFC A41), as implemented here:
//! - policies are tried in name order (Envoy keeps them in a sorted map); the first match
//!   names the decision;
//! - `url_path` is the `:path` without query or fragment (for gRPC, `/service/method`);
//!   `destination_ip`/`destination_port` are the connection's local address; `source_ip`,
//!   `direct_remote_ip` and `remote_ip` are all the peer address (no PROXY protocol, no XFF);
//! - `metadata` never matches (Envoy metadata has no gRPC equivalent), so an inverted one
//!   always matches; `requested_server_name` sees the empty string unless the caller supplies
//!   an SNI;
//! - `header` sees `:method`, `:authority` (aliased with `host`) and `:path`, the client's own
//!   `content-type`, binary headers in their base64 wire form, multiple values joined with
//!   `,`; hop-by-hop headers such as `te` are never visible;
//! - `authenticated` needs a TLS connection; with `principal_name`, the URI SANs are tried,
//!   else the DNS SANs, else the subject, else (no client certificate) the empty string.

use std::borrow::Cow;
use std::net::SocketAddr;

use super::route::joined_header_value;
use super::{Cidr, HeaderMatcher, StringMatcher};

/// A validated RBAC filter config (`envoy.extensions.filters.http.rbac.v3.RBAC`).
///
/// ```
/// use mesh_client::config::{Policy, Principal, Permission, Rbac, RbacAction, RbacRules, RequestInfo};
///
/// // Deny everything except calls to /pkg.Svc/Get.
/// let rbac = Rbac {
///     rules: Some(RbacRules::new(RbacAction::Allow, vec![(
///         "get-only".to_string(),
///         Policy {
///             permissions: vec![Permission::UrlPath(mesh_client::config::StringMatcher {
///                 kind: mesh_client::config::StringMatchKind::Exact("/pkg.Svc/Get".into()),
///                 ignore_case: false,
///             })],
///             principals: vec![Principal::Any],
///         },
///     )])),
///     shadow: None,
/// };
/// let headers = http::HeaderMap::new();
/// assert!(rbac.evaluate(&RequestInfo::new("/pkg.Svc/Get", &headers)).allowed);
/// assert!(!rbac.evaluate(&RequestInfo::new("/pkg.Svc/Put", &headers)).allowed);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rbac {
    /// The enforced rules. `None` when `rules` is absent, or its action is `LOG` (gRFC A41:
    /// the policy is then ignored as if RBAC were not configured): everything is allowed.
    pub rules: Option<RbacRules>,
    /// `shadow_rules`: evaluated and reported, never enforced.
    pub shadow: Option<RbacRules>,
}

/// One set of RBAC rules (`envoy.config.rbac.v3.RBAC`).
#[derive(Debug, Clone, PartialEq)]
pub struct RbacRules {
    /// What a matching policy means.
    pub action: RbacAction,
    /// The policies, by name, tried in this order; [`RbacRules::new`] sorts them by name.
    pub policies: Vec<(String, Policy)>,
}

/// `RBAC.Action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RbacAction {
    /// Allow-list: a request is allowed iff some policy matches.
    Allow,
    /// Deny-list: a request is denied iff some policy matches.
    Deny,
    /// Everything is allowed; the matching policy is only reported. gRFC A41 ignores enforced
    /// `LOG` rules entirely; it survives here only in shadow rules.
    Log,
}

/// A named role: matches when any permission AND any principal match.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// What the request does (OR). Empty never matches.
    pub permissions: Vec<Permission>,
    /// Who makes it (OR). Empty never matches.
    pub principals: Vec<Principal>,
}

/// `envoy.config.rbac.v3.Permission`: a condition on the action.
#[derive(Debug, Clone, PartialEq)]
pub enum Permission {
    /// `and_rules`: all match (an empty set matches).
    And(Vec<Permission>),
    /// `or_rules`: at least one matches.
    Or(Vec<Permission>),
    /// `not_rule`.
    Not(Box<Permission>),
    /// `any`: always matches.
    Any,
    /// `header`: a request header or pseudo-header (see the module docs for visibility).
    Header(HeaderMatcher),
    /// `url_path`: the path without query and fragment.
    UrlPath(StringMatcher),
    /// `destination_ip`: the connection's local address.
    DestinationIp(Cidr),
    /// `destination_port`: the connection's local port.
    DestinationPort(u32),
    /// `metadata`: never matches; matches always when `invert` is set (gRFC A41, grpc-go).
    Metadata {
        /// `MetadataMatcher.invert`.
        invert: bool,
    },
    /// `requested_server_name`: matched against the SNI, or `""` when there is none.
    RequestedServerName(StringMatcher),
}

/// `envoy.config.rbac.v3.Principal`: a condition on the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// `and_ids`: all match (an empty set matches).
    And(Vec<Principal>),
    /// `or_ids`: at least one matches.
    Or(Vec<Principal>),
    /// `not_id`.
    Not(Box<Principal>),
    /// `any`: always matches.
    Any,
    /// `authenticated`: a TLS connection; with a `principal_name`, the peer certificate's
    /// URI SANs, else DNS SANs, else subject, else `""` must match (gRFC A41).
    Authenticated(Option<StringMatcher>),
    /// `source_ip` (deprecated): the peer address.
    SourceIp(Cidr),
    /// `direct_remote_ip`: the peer address.
    DirectRemoteIp(Cidr),
    /// `remote_ip`: the peer address (no XFF, no PROXY protocol, gRFC A41).
    RemoteIp(Cidr),
    /// `header`: as [`Permission::Header`].
    Header(HeaderMatcher),
    /// `url_path`: as [`Permission::UrlPath`].
    UrlPath(StringMatcher),
    /// `metadata`: as [`Permission::Metadata`].
    Metadata {
        /// `MetadataMatcher.invert`.
        invert: bool,
    },
}

/// What the peer's TLS certificate says about it (gRFC A41 `authenticated.principal_name`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCertInfo {
    /// URI SubjectAltNames (type 6), e.g. SPIFFE IDs.
    pub uri_sans: Vec<String>,
    /// DNS SubjectAltNames (type 2).
    pub dns_sans: Vec<String>,
    /// The subject distinguished name, formatted per RFC 2253.
    pub subject: String,
}

/// How the connection is secured, as the `authenticated` principal sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PeerSecurity<'a> {
    /// No TLS: `authenticated` never matches.
    #[default]
    Plaintext,
    /// TLS, with the client certificate if one was presented.
    Tls(Option<&'a PeerCertInfo>),
}

/// The facts about one request that RBAC can match on.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// `:path`, e.g. `/pkg.Service/Method` (may carry a query for non-gRPC callers).
    pub path: &'a str,
    /// `:method`; gRPC requests are always `POST` (gRFC A41).
    pub method: &'a str,
    /// `:authority`, or `None` to fall back to the `host` header.
    pub authority: Option<&'a str>,
    /// The regular (non-pseudo) request headers.
    pub headers: &'a http::HeaderMap,
    /// The peer (remote) address of the connection.
    pub peer_addr: Option<SocketAddr>,
    /// The local address of the connection.
    pub local_addr: Option<SocketAddr>,
    /// TLS state and client certificate.
    pub security: PeerSecurity<'a>,
    /// The TLS SNI. gRPC hard-codes `""` here (gRFC A41); pass `None` for that behaviour.
    pub requested_server_name: Option<&'a str>,
}

impl<'a> RequestInfo<'a> {
    /// A `POST` to `path` with `headers`, no addresses, plaintext, no SNI; set the other
    /// fields directly.
    pub fn new(path: &'a str, headers: &'a http::HeaderMap) -> Self {
        RequestInfo {
            path,
            method: "POST",
            authority: None,
            headers,
            peer_addr: None,
            local_addr: None,
            security: PeerSecurity::Plaintext,
            requested_server_name: None,
        }
    }

    /// The value of header `name` (lower case) as RBAC sees it (gRFC A41), `None` if absent.
    fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        match name {
            ":path" => Some(Cow::Borrowed(self.path)),
            ":method" => Some(Cow::Borrowed(self.method)),
            // Envoy aliases `host` and `:authority`; both mean the request's authority.
            ":authority" | "host" => match self.authority {
                Some(a) => Some(Cow::Borrowed(a)),
                None => joined_header_value(self.headers, "host"),
            },
            // Hop-by-hop headers must never match (A41); only `te` can reach an HTTP/2
            // server, the rest make the request malformed, but hide them all.
            "te" | "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding"
            | "upgrade" => None,
            // No other pseudo-header is visible (`:scheme` matchers are NACKed).
            n if n.starts_with(':') => None,
            // Everything else as sent, `-bin` values in their base64 wire form.
            n => joined_header_value(self.headers, n),
        }
    }

    /// `url_path`: the path without query and fragment.
    fn url_path(&self) -> &'a str {
        let end = self.path.find(['?', '#']).unwrap_or(self.path.len());
        self.path.get(..end).unwrap_or(self.path)
    }

    fn header_matches(&self, m: &HeaderMatcher) -> bool {
        m.matches_value(self.header(&m.name).as_deref())
    }
}

/// The outcome of [`Rbac::evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'r> {
    /// Whether the enforced rules let the request through.
    pub allowed: bool,
    /// The first policy (by name) of the enforced rules that matched, if any.
    pub matched_policy: Option<&'r str>,
    /// The dry-run result of `shadow_rules`, when configured.
    pub shadow: Option<ShadowDecision<'r>>,
}

/// What the shadow rules would have decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowDecision<'r> {
    /// Whether the shadow rules would allow the request.
    pub allowed: bool,
    /// The first shadow policy (by name) that matched, if any.
    pub matched_policy: Option<&'r str>,
}

impl Rbac {
    /// Decides `req` (gRFC A41): with no enforced rules everything is allowed; `ALLOW` lets
    /// through exactly the requests some policy matches, `DENY` exactly those none matches.
    /// Shadow rules are evaluated the same way and only reported.
    pub fn evaluate(&self, req: &RequestInfo<'_>) -> Decision<'_> {
        let (allowed, matched_policy) = match &self.rules {
            Some(rules) => rules.evaluate(req),
            None => (true, None),
        };
        let shadow = self.shadow.as_ref().map(|rules| {
            let (allowed, matched_policy) = rules.evaluate(req);
            ShadowDecision {
                allowed,
                matched_policy,
            }
        });
        Decision {
            allowed,
            matched_policy,
            shadow,
        }
    }
}

impl RbacRules {
    /// Rules with `policies` sorted by name, the order they are tried in (Envoy).
    pub fn new(action: RbacAction, mut policies: Vec<(String, Policy)>) -> Self {
        policies.sort_by(|a, b| a.0.cmp(&b.0));
        RbacRules { action, policies }
    }

    /// The first policy, in order, that matches `req`.
    pub fn matching_policy(&self, req: &RequestInfo<'_>) -> Option<&str> {
        self.policies
            .iter()
            .find(|(_, p)| p.matches(req))
            .map(|(name, _)| name.as_str())
    }

    /// `(allowed, matched policy)` under this action.
    fn evaluate(&self, req: &RequestInfo<'_>) -> (bool, Option<&str>) {
        let matched = self.matching_policy(req);
        let allowed = match self.action {
            RbacAction::Allow => matched.is_some(),
            RbacAction::Deny => matched.is_none(),
            RbacAction::Log => true,
        };
        (allowed, matched)
    }
}

impl Policy {
    /// Whether some permission and some principal match `req`.
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        self.permissions.iter().any(|p| p.matches(req))
            && self.principals.iter().any(|p| p.matches(req))
    }
}

impl Permission {
    /// Whether this permission matches `req`.
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        match self {
            Permission::And(rules) => rules.iter().all(|r| r.matches(req)),
            Permission::Or(rules) => rules.iter().any(|r| r.matches(req)),
            Permission::Not(rule) => !rule.matches(req),
            Permission::Any => true,
            Permission::Header(m) => req.header_matches(m),
            Permission::UrlPath(m) => m.matches(req.url_path()),
            Permission::DestinationIp(cidr) => {
                req.local_addr.is_some_and(|a| cidr.contains(a.ip()))
            }
            Permission::DestinationPort(port) => {
                req.local_addr.is_some_and(|a| u32::from(a.port()) == *port)
            }
            Permission::Metadata { invert } => *invert,
            Permission::RequestedServerName(m) => {
                m.matches(req.requested_server_name.unwrap_or(""))
            }
        }
    }
}

impl Principal {
    /// Whether this principal matches `req`.
    pub fn matches(&self, req: &RequestInfo<'_>) -> bool {
        match self {
            Principal::And(ids) => ids.iter().all(|p| p.matches(req)),
            Principal::Or(ids) => ids.iter().any(|p| p.matches(req)),
            Principal::Not(id) => !id.matches(req),
            Principal::Any => true,
            Principal::Authenticated(name) => authenticated(name.as_ref(), req.security),
            Principal::SourceIp(cidr)
            | Principal::DirectRemoteIp(cidr)
            | Principal::RemoteIp(cidr) => req.peer_addr.is_some_and(|a| cidr.contains(a.ip())),
            Principal::Header(m) => req.header_matches(m),
            Principal::UrlPath(m) => m.matches(req.url_path()),
            Principal::Metadata { invert } => *invert,
        }
    }
}

/// `authenticated` (gRFC A41): URI SANs if any, else DNS SANs if any, else the subject; with
/// no client certificate, the empty string.
fn authenticated(name: Option<&StringMatcher>, security: PeerSecurity<'_>) -> bool {
    let PeerSecurity::Tls(cert) = security else {
        return false;
    };
    let Some(name) = name else {
        return true;
    };
    let Some(cert) = cert else {
        return name.matches("");
    };
    if !cert.uri_sans.is_empty() {
        return cert.uri_sans.iter().any(|s| name.matches(s));
    }
    if !cert.dns_sans.is_empty() {
        return cert.dns_sans.iter().any(|s| name.matches(s));
    }
    name.matches(&cert.subject)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderMatchKind, PrefixTooLong, StringMatchKind};
    use http::{HeaderMap, HeaderValue};

    /// An owned request, so table rows can build one and borrow it as a [`RequestInfo`].
    #[derive(Default)]
    struct Req {
        path: &'static str,
        authority: Option<&'static str>,
        headers: Vec<(&'static str, &'static str)>,
        peer: Option<&'static str>,
        local: Option<&'static str>,
        /// `None`: plaintext; `Some(None)`: TLS without a client cert.
        tls: Option<Option<PeerCertInfo>>,
        sni: Option<&'static str>,
    }

    impl Req {
        fn run<'r>(&self, rbac: &'r Rbac) -> Decision<'r> {
            let mut headers = HeaderMap::new();
            for (k, v) in &self.headers {
                headers.append(*k, HeaderValue::from_static(v));
            }
            let info = RequestInfo {
                path: if self.path.is_empty() {
                    "/pkg.Svc/Get"
                } else {
                    self.path
                },
                authority: self.authority,
                peer_addr: self.peer.map(|a| a.parse().unwrap()),
                local_addr: self.local.map(|a| a.parse().unwrap()),
                security: match &self.tls {
                    None => PeerSecurity::Plaintext,
                    Some(cert) => PeerSecurity::Tls(cert.as_ref()),
                },
                requested_server_name: self.sni,
                ..RequestInfo::new("", &headers)
            };
            rbac.evaluate(&info)
        }
    }

    fn req() -> Req {
        Req::default()
    }

    fn exact(s: &str) -> StringMatcher {
        StringMatcher {
            kind: StringMatchKind::Exact(s.into()),
            ignore_case: false,
        }
    }

    fn prefix(s: &str, ignore_case: bool) -> StringMatcher {
        StringMatcher {
            kind: StringMatchKind::Prefix(s.into()),
            ignore_case,
        }
    }

    fn hdr(name: &str, kind: HeaderMatchKind, invert: bool) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            kind,
            invert,
        }
    }

    fn hexact(name: &str, v: &str) -> HeaderMatcher {
        hdr(name, HeaderMatchKind::Exact(v.into()), false)
    }

    fn cidr(a: &str, len: u32) -> Cidr {
        Cidr::new(a.parse().unwrap(), len).unwrap()
    }

    fn cert(uri: &[&str], dns: &[&str], subject: &str) -> Option<Option<PeerCertInfo>> {
        Some(Some(PeerCertInfo {
            uri_sans: uri.iter().map(|s| s.to_string()).collect(),
            dns_sans: dns.iter().map(|s| s.to_string()).collect(),
            subject: subject.into(),
        }))
    }

    fn policy(permissions: Vec<Permission>, principals: Vec<Principal>) -> Policy {
        Policy {
            permissions,
            principals,
        }
    }

    /// A policy on this permission, for any principal.
    fn perm(p: Permission) -> Policy {
        policy(vec![p], vec![Principal::Any])
    }

    /// A policy on this principal, for any permission.
    fn princ(p: Principal) -> Policy {
        policy(vec![Permission::Any], vec![p])
    }

    fn rules(action: RbacAction, policies: Vec<(&str, Policy)>) -> RbacRules {
        RbacRules::new(
            action,
            policies
                .into_iter()
                .map(|(n, p)| (n.to_string(), p))
                .collect(),
        )
    }

    fn allow(policies: Vec<(&str, Policy)>) -> Rbac {
        Rbac {
            rules: Some(rules(RbacAction::Allow, policies)),
            shadow: None,
        }
    }

    fn deny(policies: Vec<(&str, Policy)>) -> Rbac {
        Rbac {
            rules: Some(rules(RbacAction::Deny, policies)),
            shadow: None,
        }
    }

    /// ALLOW with the single policy "p": allowed iff `p` matches.
    fn only(p: Policy) -> Rbac {
        allow(vec![("p", p)])
    }

    const Y: Option<&str> = Some("p");

    /// `(row, rule it checks, config, request, allowed, matched policy)`.
    type Row = (
        &'static str,
        &'static str,
        Rbac,
        Req,
        bool,
        Option<&'static str>,
    );

    fn rows() -> Vec<Row> {
        use HeaderMatchKind as K;
        use Permission as P;
        use Principal as I;
        vec![
            // --- actions and policy selection ---
            (
                "no rules allows",
                "Envoy RBAC.rules: absent → no enforcement",
                Rbac::default(),
                req(),
                true,
                None,
            ),
            (
                "ALLOW, no policies denies",
                "Envoy RBAC.rules: set but empty → all denied",
                allow(vec![]),
                req(),
                false,
                None,
            ),
            (
                "DENY, no policies allows",
                "Envoy RBAC.Action DENY: block-list",
                deny(vec![]),
                req(),
                true,
                None,
            ),
            (
                "ALLOW match allows",
                "Envoy RBAC.Action ALLOW: safe-list",
                only(perm(P::Any)),
                req(),
                true,
                Y,
            ),
            (
                "ALLOW no match denies",
                "Envoy RBAC.Action ALLOW: the rest are denied",
                only(perm(P::DestinationPort(1))),
                req(),
                false,
                None,
            ),
            (
                "DENY match denies",
                "Envoy RBAC.Action DENY",
                deny(vec![("p", perm(P::Any))]),
                req(),
                false,
                Y,
            ),
            (
                "DENY no match allows",
                "Envoy RBAC.Action DENY: the rest are allowed",
                deny(vec![("p", perm(P::DestinationPort(1)))]),
                req(),
                true,
                None,
            ),
            (
                "first by name wins",
                "Envoy: policies are a sorted map",
                allow(vec![("b", perm(P::Any)), ("a", perm(P::Any))]),
                req(),
                true,
                Some("a"),
            ),
            (
                "later name when first fails",
                "Envoy: policies tried in name order",
                allow(vec![
                    ("a", perm(P::DestinationPort(1))),
                    ("z", perm(P::Any)),
                ]),
                req(),
                true,
                Some("z"),
            ),
            (
                "permission without principal",
                "Envoy Policy: a permission AND a principal",
                only(policy(vec![P::Any], vec![I::Not(Box::new(I::Any))])),
                req(),
                false,
                None,
            ),
            (
                "no permissions never matches",
                "Envoy Policy: permissions are ORed (none → false)",
                only(policy(vec![], vec![I::Any])),
                req(),
                false,
                None,
            ),
            // --- and / or / not / any ---
            (
                "and: all match",
                "Envoy Permission.and_rules",
                only(perm(P::And(vec![
                    P::Any,
                    P::UrlPath(prefix("/pkg.", false)),
                ]))),
                req(),
                true,
                Y,
            ),
            (
                "and: one fails",
                "Envoy Permission.and_rules",
                only(perm(P::And(vec![P::Any, P::DestinationPort(9)]))),
                req(),
                false,
                None,
            ),
            (
                "and: empty matches",
                "grpc-go andMatcher: vacuous truth",
                only(perm(P::And(vec![]))),
                req(),
                true,
                Y,
            ),
            (
                "or: one matches",
                "Envoy Permission.or_rules",
                only(perm(P::Or(vec![P::DestinationPort(9), P::Any]))),
                req(),
                true,
                Y,
            ),
            (
                "not any",
                "Envoy Permission.not_rule",
                only(perm(P::Not(Box::new(P::Any)))),
                req(),
                false,
                None,
            ),
            (
                "not not header, nested in or",
                "Envoy Permission.not_rule (nesting)",
                only(perm(P::Or(vec![P::Not(Box::new(P::Not(Box::new(
                    P::Header(hexact("x-a", "1")),
                ))))]))),
                Req {
                    headers: vec![("x-a", "1")],
                    ..req()
                },
                true,
                Y,
            ),
            (
                "principal and/or/not",
                "Envoy Principal.and_ids/or_ids/not_id",
                only(princ(I::And(vec![
                    I::Or(vec![I::Not(Box::new(I::Any)), I::Any]),
                    I::Any,
                ]))),
                req(),
                true,
                Y,
            ),
            // --- headers (A41) ---
            (
                "header exact",
                "A41 header ↔ metadata",
                only(perm(P::Header(hexact("x-user", "alice")))),
                Req {
                    headers: vec![("x-user", "alice")],
                    ..req()
                },
                true,
                Y,
            ),
            (
                "header prefix",
                "Envoy HeaderMatcher.prefix_match",
                only(perm(P::Header(hdr(
                    "x-user",
                    K::Prefix("al".into()),
                    false,
                )))),
                Req {
                    headers: vec![("x-user", "alice")],
                    ..req()
                },
                true,
                Y,
            ),
            (
                "header present, absent",
                "Envoy HeaderMatcher.present_match",
                only(perm(P::Header(hdr("x-user", K::Present(true), false)))),
                req(),
                false,
                None,
            ),
            (
                "header present inverted, absent",
                "Envoy invert_match on present_match",
                only(perm(P::Header(hdr("x-user", K::Present(true), true)))),
                req(),
                true,
                Y,
            ),
            (
                "header exact inverted, absent",
                "grpc-go: an absent header fails even inverted",
                only(perm(P::Header(hdr("x-user", K::Exact("a".into()), true)))),
                req(),
                false,
                None,
            ),
            (
                "header exact inverted, other value",
                "Envoy invert_match",
                only(perm(P::Header(hdr("x-user", K::Exact("a".into()), true)))),
                Req {
                    headers: vec![("x-user", "b")],
                    ..req()
                },
                true,
                Y,
            ),
            (
                "multi-valued joined with comma",
                "A41: values joined with ',' (no spaces)",
                only(perm(P::Header(hexact("x-a", "1,2")))),
                Req {
                    headers: vec![("x-a", "1"), ("x-a", "2")],
                    ..req()
                },
                true,
                Y,
            ),
            (
                ":path is the full path",
                "A41: :path is matchable",
                only(perm(P::Header(hexact(":path", "/s/M?q=1")))),
                Req {
                    path: "/s/M?q=1",
                    ..req()
                },
                true,
                Y,
            ),
            (
                ":method is POST",
                "A41: :method hard-coded POST",
                only(perm(P::Header(hexact(":method", "POST")))),
                req(),
                true,
                Y,
            ),
            (
                "host aliases :authority",
                "A41: :authority and Host are equivalent",
                only(perm(P::Header(hexact("host", "svc:8080")))),
                Req {
                    authority: Some("svc:8080"),
                    ..req()
                },
                true,
                Y,
            ),
            (
                ":authority falls back to host",
                "A41: Host renamed to :authority",
                only(perm(P::Header(hexact(":authority", "svc")))),
                Req {
                    headers: vec![("host", "svc")],
                    ..req()
                },
                true,
                Y,
            ),
            (
                "te never matches",
                "A41: hop-by-hop headers must not match",
                only(perm(P::Header(hdr("te", K::Present(true), false)))),
                Req {
                    headers: vec![("te", "trailers")],
                    ..req()
                },
                false,
                None,
            ),
            (
                "client content-type",
                "A41: the client's Content-Type, not hard-coded",
                only(perm(P::Header(hexact(
                    "content-type",
                    "application/grpc+proto",
                )))),
                Req {
                    headers: vec![("content-type", "application/grpc+proto")],
                    ..req()
                },
                true,
                Y,
            ),
            (
                "binary header in base64",
                "A41: binary headers in base64 form",
                only(perm(P::Header(hexact("x-id-bin", "AAEC")))),
                Req {
                    headers: vec![("x-id-bin", "AAEC")],
                    ..req()
                },
                true,
                Y,
            ),
            (
                "principal header",
                "A41 Principal.header: same as Permission",
                only(princ(I::Header(hexact("x-user", "bob")))),
                Req {
                    headers: vec![("x-user", "bob")],
                    ..req()
                },
                true,
                Y,
            ),
            // --- url_path, destination, metadata, SNI ---
            (
                "url_path exact without query",
                "Envoy PathMatcher: query stripped; A41 full method",
                only(perm(P::UrlPath(exact("/pkg.Svc/Get")))),
                Req {
                    path: "/pkg.Svc/Get?x=1",
                    ..req()
                },
                true,
                Y,
            ),
            (
                "url_path prefix ignore_case",
                "Envoy StringMatcher.ignore_case",
                only(perm(P::UrlPath(prefix("/PKG.", true)))),
                req(),
                true,
                Y,
            ),
            (
                "principal url_path",
                "A41 Principal.url_path",
                only(princ(I::UrlPath(exact("/other/M")))),
                req(),
                false,
                None,
            ),
            (
                "destination_port match",
                "A41: local port",
                only(perm(P::DestinationPort(8080))),
                Req {
                    local: Some("10.0.0.1:8080"),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "destination_port mismatch",
                "A41: local port",
                only(perm(P::DestinationPort(8080))),
                Req {
                    local: Some("10.0.0.1:9090"),
                    ..req()
                },
                false,
                None,
            ),
            (
                "destination_ip in cidr",
                "A41: local address",
                only(perm(P::DestinationIp(cidr("10.0.0.0", 8)))),
                Req {
                    local: Some("10.9.8.7:80"),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "destination_ip without local addr",
                "A41: local address unknown → no match",
                only(perm(P::DestinationIp(cidr("0.0.0.0", 0)))),
                req(),
                false,
                None,
            ),
            (
                "metadata never matches",
                "A41: metadata never matches",
                only(perm(P::Metadata { invert: false })),
                req(),
                false,
                None,
            ),
            (
                "inverted metadata always matches",
                "grpc-go: inverted metadata → always",
                only(princ(I::Metadata { invert: true })),
                req(),
                true,
                Y,
            ),
            (
                "requested_server_name accepts empty",
                "A41: requested_server_name is \"\"",
                only(perm(P::RequestedServerName(exact("")))),
                req(),
                true,
                Y,
            ),
            (
                "requested_server_name non-empty",
                "A41: requested_server_name is \"\"",
                only(perm(P::RequestedServerName(exact("svc")))),
                req(),
                false,
                None,
            ),
            (
                "requested_server_name with SNI",
                "Envoy: TLS SNI (beyond gRPC)",
                only(perm(P::RequestedServerName(exact("svc")))),
                Req {
                    sni: Some("svc"),
                    ..req()
                },
                true,
                Y,
            ),
            // --- authenticated (A41 steps 1-4) ---
            (
                "authenticated, plaintext",
                "A41: authenticated needs TLS",
                only(princ(I::Authenticated(None))),
                req(),
                false,
                None,
            ),
            (
                "authenticated, TLS without cert",
                "A41: unset principal_name matches any TLS",
                only(princ(I::Authenticated(None))),
                Req {
                    tls: Some(None),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "principal_name, no cert, \"\" matcher",
                "A41 step 4: no cert → \"\"",
                only(princ(I::Authenticated(Some(exact(""))))),
                Req {
                    tls: Some(None),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "principal_name, no cert",
                "A41 step 4: no cert → \"\"",
                only(princ(I::Authenticated(Some(prefix("spiffe://", false))))),
                Req {
                    tls: Some(None),
                    ..req()
                },
                false,
                None,
            ),
            (
                "principal_name, plaintext \"\" matcher",
                "grpc-go: no TLS → never",
                only(princ(I::Authenticated(Some(exact(""))))),
                req(),
                false,
                None,
            ),
            (
                "principal_name URI SAN",
                "A41 step 1: URI SANs",
                only(princ(I::Authenticated(Some(exact(
                    "spiffe://td/ns/a/sa/b",
                ))))),
                Req {
                    tls: cert(&["spiffe://x", "spiffe://td/ns/a/sa/b"], &["a.svc"], "CN=a"),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "URI SANs shadow DNS SANs",
                "A41 step 2: DNS only if no URI SAN",
                only(princ(I::Authenticated(Some(exact("a.svc"))))),
                Req {
                    tls: cert(&["spiffe://x"], &["a.svc"], "CN=a"),
                    ..req()
                },
                false,
                None,
            ),
            (
                "principal_name DNS SAN",
                "A41 step 2: DNS SANs",
                only(princ(I::Authenticated(Some(exact("a.svc"))))),
                Req {
                    tls: cert(&[], &["b.svc", "a.svc"], "CN=a"),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "SANs shadow the subject",
                "A41 step 3: subject only if no SAN",
                only(princ(I::Authenticated(Some(exact("CN=a"))))),
                Req {
                    tls: cert(&[], &["a.svc"], "CN=a"),
                    ..req()
                },
                false,
                None,
            ),
            (
                "principal_name subject",
                "A41 step 3: RFC 2253 subject",
                only(princ(I::Authenticated(Some(exact("CN=a,O=acme"))))),
                Req {
                    tls: cert(&[], &[], "CN=a,O=acme"),
                    ..req()
                },
                true,
                Y,
            ),
            // --- peer address ---
            (
                "source_ip v4 cidr",
                "A41: source_ip is the peer address",
                only(princ(I::SourceIp(cidr("192.168.1.0", 24)))),
                Req {
                    peer: Some("192.168.1.77:5000"),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "source_ip v4 outside",
                "A41: source_ip is the peer address",
                only(princ(I::SourceIp(cidr("192.168.1.0", 24)))),
                Req {
                    peer: Some("192.168.2.1:5000"),
                    ..req()
                },
                false,
                None,
            ),
            (
                "source_ip v6 cidr",
                "A41: source_ip (IPv6)",
                only(princ(I::SourceIp(cidr("2001:db8::", 32)))),
                Req {
                    peer: Some("[2001:db8:1::5]:5000"),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "v4-mapped peer vs v4 cidr",
                "dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d",
                only(princ(I::DirectRemoteIp(cidr("10.0.0.0", 8)))),
                Req {
                    peer: Some("[::ffff:10.1.2.3]:5000"),
                    ..req()
                },
                true,
                Y,
            ),
            (
                "v6 peer vs v4 cidr",
                "CidrRange: families never cross",
                only(princ(I::RemoteIp(cidr("0.0.0.0", 0)))),
                Req {
                    peer: Some("[2001:db8::1]:5000"),
                    ..req()
                },
                false,
                None,
            ),
            (
                "remote_ip is the peer",
                "A41: remote_ip = direct_remote_ip",
                only(princ(I::RemoteIp(cidr("127.0.0.1", 32)))),
                Req {
                    peer: Some("127.0.0.1:1"),
                    ..req()
                },
                true,
                Y,
            ),
        ]
    }

    #[test]
    fn engine_table() {
        let rows = rows();
        assert!(rows.len() >= 35, "{} rows", rows.len());
        let mut failures = Vec::new();
        for (name, rule, rbac, req, allowed, policy) in &rows {
            let d = req.run(rbac);
            if d.allowed != *allowed || d.matched_policy != *policy || d.shadow.is_some() {
                failures.push(format!(
                    "{name} ({rule}): got {d:?}, want allowed={allowed} policy={policy:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn shadow_rules_are_reported_not_enforced() {
        let hit = || vec![("s", perm(Permission::Any))];
        let miss = || vec![("s", perm(Permission::DestinationPort(1)))];
        let cases: Vec<(&str, Rbac, Decision<'static>)> = vec![
            (
                // Beyond gRPC (Envoy shadow_rules): a DENY shadow over no enforced rules.
                "shadow deny, no rules",
                Rbac {
                    rules: None,
                    shadow: Some(rules(RbacAction::Deny, hit())),
                },
                Decision {
                    allowed: true,
                    matched_policy: None,
                    shadow: Some(ShadowDecision {
                        allowed: false,
                        matched_policy: Some("s"),
                    }),
                },
            ),
            (
                // Envoy: shadow rules never change the enforced decision.
                "shadow allow misses, rules allow",
                Rbac {
                    rules: Some(rules(RbacAction::Allow, vec![("p", perm(Permission::Any))])),
                    shadow: Some(rules(RbacAction::Allow, miss())),
                },
                Decision {
                    allowed: true,
                    matched_policy: Some("p"),
                    shadow: Some(ShadowDecision {
                        allowed: false,
                        matched_policy: None,
                    }),
                },
            ),
            (
                // Envoy: enforced DENY still denies whatever the shadow says.
                "rules deny, shadow allows",
                Rbac {
                    rules: Some(rules(RbacAction::Deny, vec![("p", perm(Permission::Any))])),
                    shadow: Some(rules(RbacAction::Allow, hit())),
                },
                Decision {
                    allowed: false,
                    matched_policy: Some("p"),
                    shadow: Some(ShadowDecision {
                        allowed: true,
                        matched_policy: Some("s"),
                    }),
                },
            ),
            (
                // Envoy Action LOG: all allowed, the match is only reported.
                "shadow log",
                Rbac {
                    rules: None,
                    shadow: Some(rules(RbacAction::Log, hit())),
                },
                Decision {
                    allowed: true,
                    matched_policy: None,
                    shadow: Some(ShadowDecision {
                        allowed: true,
                        matched_policy: Some("s"),
                    }),
                },
            ),
        ];
        for (name, rbac, want) in &cases {
            assert_eq!(&req().run(rbac), want, "{name}");
        }
    }

    #[test]
    fn cidr_masks_and_bounds() {
        let c = cidr("10.1.2.3", 16);
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert_eq!(c.prefix_len(), 16);
        assert!(cidr("0.0.0.0", 0).contains("255.255.255.255".parse().unwrap()));
        assert!(cidr("::", 0).contains("::1".parse().unwrap()));
        assert!(cidr("2001:db8::1", 128).contains("2001:db8::1".parse().unwrap()));
        assert!(!cidr("2001:db8::1", 128).contains("2001:db8::2".parse().unwrap()));
        assert_eq!(
            Cidr::new("1.2.3.4".parse().unwrap(), 33),
            Err(PrefixTooLong {
                prefix_len: 33,
                max: 32
            })
        );
        assert!(Cidr::new("::".parse().unwrap(), u32::MAX).is_err());
    }
}
