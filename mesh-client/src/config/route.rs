//! Route configurations (RDS resources, gRFC A28): virtual hosts, routes, matchers, actions.

use std::time::Duration;

/// A validated RouteConfiguration.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// The resource name.
    pub name: String,
    /// Virtual hosts, in order.
    pub virtual_hosts: Vec<VirtualHost>,
}

/// A virtual host: a set of domains and the routes that apply to them.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualHost {
    /// Its name.
    pub name: String,
    /// Domain patterns: exact, `*.suffix`, `prefix.*` or `*`.
    pub domains: Vec<String>,
    /// Routes, matched in order; the first match wins.
    pub routes: Vec<Route>,
}

/// One route: a match and an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// What requests it matches.
    pub matcher: RouteMatch,
    /// What to do with them.
    pub action: RouteAction,
}

/// A route's match conditions; all must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteMatch {
    /// The path condition.
    pub path: PathMatcher,
    /// Whether prefix/path matching is case sensitive (default true; ignored for regex).
    pub case_sensitive: bool,
    /// Header conditions.
    pub headers: Vec<HeaderMatcher>,
    /// `runtime_fraction.default_value` as parts per million, if set.
    pub fraction_per_million: Option<u32>,
}

/// How a route matches the `:path`.
#[derive(Debug, Clone)]
pub enum PathMatcher {
    /// `prefix`.
    Prefix(String),
    /// `path`: the whole path.
    Path(String),
    /// `safe_regex`: the whole path must match.
    Regex(regex::Regex),
}

impl PartialEq for PathMatcher {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PathMatcher::Prefix(a), PathMatcher::Prefix(b)) => a == b,
            (PathMatcher::Path(a), PathMatcher::Path(b)) => a == b,
            (PathMatcher::Regex(a), PathMatcher::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// A header condition.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderMatcher {
    /// The header name, lower case.
    pub name: String,
    /// How the value is matched.
    pub kind: HeaderMatchKind,
    /// `invert_match`.
    pub invert: bool,
}

/// How a header's value is matched.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderMatchKind {
    /// `exact_match`.
    Exact(String),
    /// `safe_regex_match` (whole value).
    Regex(StringMatcher),
    /// `range_match`: the value parses as an integer in `[start, end)`.
    Range {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
    },
    /// `present_match`.
    Present(bool),
    /// `prefix_match`.
    Prefix(String),
    /// `suffix_match`.
    Suffix(String),
    /// `contains_match`.
    Contains(String),
    /// `string_match`.
    String(StringMatcher),
}

/// An Envoy `StringMatcher`.
#[derive(Debug, Clone)]
pub struct StringMatcher {
    /// The kind of match.
    pub kind: StringMatchKind,
    /// `ignore_case` (not applicable to regex).
    pub ignore_case: bool,
}

impl PartialEq for StringMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.ignore_case == other.ignore_case
            && match (&self.kind, &other.kind) {
                (StringMatchKind::Exact(a), StringMatchKind::Exact(b))
                | (StringMatchKind::Prefix(a), StringMatchKind::Prefix(b))
                | (StringMatchKind::Suffix(a), StringMatchKind::Suffix(b))
                | (StringMatchKind::Contains(a), StringMatchKind::Contains(b)) => a == b,
                (StringMatchKind::Regex(a), StringMatchKind::Regex(b)) => a.as_str() == b.as_str(),
                _ => false,
            }
    }
}

/// The kinds of `StringMatcher`.
#[derive(Debug, Clone)]
pub enum StringMatchKind {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `suffix`.
    Suffix(String),
    /// `contains`.
    Contains(String),
    /// `safe_regex`: the whole value must match.
    Regex(regex::Regex),
}

/// What a route does.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteAction {
    /// Forward to one of these clusters, chosen by weight.
    Forward {
        /// The clusters; a single `cluster` is one entry of weight 1.
        clusters: Vec<WeightedCluster>,
        /// `max_stream_duration.grpc_timeout_header_max` / `max_stream_duration` (gRFC A31).
        timeout: Option<Duration>,
    },
    /// `non_forwarding_action` (server side, gRFC A36).
    NonForwarding,
    /// Any other action: RPCs matching this route fail with UNAVAILABLE (gRFC A28).
    Unsupported,
}

/// One entry of `weighted_clusters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedCluster {
    /// The cluster name.
    pub name: String,
    /// Its weight (> 0).
    pub weight: u32,
}
