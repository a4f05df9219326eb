//! Route configurations (RDS resources, gRFC A28): virtual hosts, routes, matchers, actions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{FaultInjection, Rbac};

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
    /// `typed_per_filter_config`: per-filter overrides for every route of this virtual host
    /// (gRFC A39); a route's own override wins.
    pub filter_overrides: FilterOverrides,
    /// `retry_policy` (gRFC A44): used by routes that have none of their own.
    pub retry_policy: Option<RetryPolicy>,
}

/// One route: a match and an action.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// What requests it matches.
    pub matcher: RouteMatch,
    /// What to do with them.
    pub action: RouteAction,
    /// `typed_per_filter_config`: per-filter overrides for this route (gRFC A39).
    pub filter_overrides: FilterOverrides,
}

/// Filter config overrides keyed by HTTP filter instance name (gRFC A39).
pub type FilterOverrides = BTreeMap<String, FilterOverride>;

/// A validated per-route override of one HTTP filter's config (gRFC A39).
#[derive(Debug, Clone, PartialEq)]
pub enum FilterOverride {
    /// `RBACPerRoute` (gRFC A41): `None` disables RBAC for the route (its `rbac` is absent).
    Rbac(Option<Arc<Rbac>>),
    /// `HTTPFault` (gRFC A33): replaces the filter's config for the route.
    Fault(Arc<FaultInjection>),
}

/// A retry policy (gRFC A44), already in gRPC's form (gRFC A6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The gRPC codes that are retried.
    pub retry_on: RetryOn,
    /// `num_retries + 1`, capped at 5 (gRFC A6 caps `maxAttempts` at 5).
    pub max_attempts: u32,
    /// `retry_back_off.base_interval` (default 25 ms): A6's `initialBackoff`.
    pub base_interval: Duration,
    /// `retry_back_off.max_interval` (default 10 × base): A6's `maxBackoff`.
    pub max_interval: Duration,
}

/// A set of gRPC status codes (`0..=16`), as a bit mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u32);

impl RetryOn {
    /// The set with `code` added (codes above 31 are ignored).
    pub fn with(self, code: i32) -> Self {
        match u32::try_from(code) {
            Ok(c) if c < 32 => RetryOn(self.0 | (1 << c)),
            _ => self,
        }
    }

    /// Whether `code` is in the set.
    pub fn contains(self, code: i32) -> bool {
        matches!(u32::try_from(code), Ok(c) if c < 32 && self.0 & (1 << c) != 0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
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
        /// `hash_policy` (gRFC A42): how the request hash for ring hash is computed.
        hash_policy: Vec<HashPolicy>,
        /// `retry_policy` (gRFC A44); `None`: the virtual host's applies.
        retry_policy: Option<RetryPolicy>,
    },
    /// `non_forwarding_action` (server side, gRFC A36).
    NonForwarding,
    /// Any other action: RPCs matching this route fail with UNAVAILABLE (gRFC A28).
    Unsupported,
}

/// One `hash_policy` entry of a route action (gRFC A42).
#[derive(Debug, Clone, PartialEq)]
pub struct HashPolicy {
    /// What is hashed.
    pub kind: HashPolicyKind,
    /// `terminal`: once a hash has been computed, later policies are skipped.
    pub terminal: bool,
}

/// What a [`HashPolicy`] hashes.
#[derive(Debug, Clone)]
pub enum HashPolicyKind {
    /// `header`: the header's value (several values joined with `,`), after the optional
    /// `regex_rewrite`; `-bin` headers never produce a hash (A28 header rules).
    Header {
        /// The header name, lower case.
        name: String,
        /// `regex_rewrite`: every match of the pattern is replaced by the substitution
        /// (already in the `regex` crate's `${1}` syntax).
        rewrite: Option<(regex::Regex, String)>,
    },
    /// `filter_state` with key `io.grpc.channel_id`: a random value fixed per channel.
    ChannelId,
    /// Any other policy (`cookie`, `connection_properties`, `query_parameter`, other
    /// `filter_state` keys): gRPC treats it as producing no hash, but its `terminal` counts.
    Ignored,
}

impl PartialEq for HashPolicyKind {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                HashPolicyKind::Header {
                    name: a,
                    rewrite: ra,
                },
                HashPolicyKind::Header {
                    name: b,
                    rewrite: rb,
                },
            ) => {
                a == b
                    && match (ra, rb) {
                        (None, None) => true,
                        (Some((x, s)), Some((y, t))) => x.as_str() == y.as_str() && s == t,
                        _ => false,
                    }
            }
            (HashPolicyKind::ChannelId, HashPolicyKind::ChannelId)
            | (HashPolicyKind::Ignored, HashPolicyKind::Ignored) => true,
            _ => false,
        }
    }
}

/// One entry of `weighted_clusters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedCluster {
    /// The cluster name.
    pub name: String,
    /// Its weight (> 0).
    pub weight: u32,
}

/// The class of a virtual host domain pattern, best first (gRFC A27/A28, Envoy's
/// `VirtualHost.domains` semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum DomainClass {
    Exact,
    Suffix,
    Prefix,
    Universal,
}

/// How well `pattern` matches `host` (already lower case): `None` when it does not match.
/// A wildcard must match at least one character (`*.foo.com` does not match `foo.com`); a
/// `*` anywhere but first or last makes the pattern invalid, and it never matches.
fn domain_match(pattern: &str, host: &str) -> Option<DomainClass> {
    if pattern.is_empty() {
        return None;
    }
    if pattern == "*" {
        return Some(DomainClass::Universal);
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        if suffix.contains('*') {
            return None;
        }
        let ok = host.len() > suffix.len() && ends_with_ignore_case(host, suffix);
        return ok.then_some(DomainClass::Suffix);
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        if prefix.contains('*') {
            return None;
        }
        let ok = host.len() > prefix.len() && starts_with_ignore_case(host, prefix);
        return ok.then_some(DomainClass::Prefix);
    }
    if pattern.contains('*') {
        return None;
    }
    pattern
        .eq_ignore_ascii_case(host)
        .then_some(DomainClass::Exact)
}

fn starts_with_ignore_case(value: &str, prefix: &str) -> bool {
    value
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn ends_with_ignore_case(value: &str, suffix: &str) -> bool {
    value
        .len()
        .checked_sub(suffix.len())
        .and_then(|start| value.as_bytes().get(start..))
        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix.as_bytes()))
}

fn contains_ignore_case(value: &str, needle: &str) -> bool {
    needle.is_empty()
        || value
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

impl RouteConfig {
    /// The virtual host whose domains best match `authority` (gRFC A27/A28, Envoy semantics):
    /// an exact domain beats a suffix wildcard (`*.foo`), which beats a prefix wildcard
    /// (`foo.*`), which beats `*`; within a class the longest pattern wins, and on a tie the
    /// first virtual host. Matching is case-insensitive. `None` when nothing matches.
    ///
    /// ```
    /// use mesh_client::config::{RouteConfig, VirtualHost};
    ///
    /// let vh = |name: &str, domain: &str| VirtualHost {
    ///     name: name.into(),
    ///     domains: vec![domain.into()],
    ///     routes: vec![],
    ///     filter_overrides: Default::default(),
    ///     retry_policy: None,
    /// };
    /// let rc = RouteConfig {
    ///     name: "r".into(),
    ///     virtual_hosts: vec![vh("any", "*"), vh("suffix", "*.default:8080")],
    /// };
    /// assert_eq!(rc.find_virtual_host("greeter.default:8080").unwrap().name, "suffix");
    /// assert_eq!(rc.find_virtual_host("other").unwrap().name, "any");
    /// ```
    pub fn find_virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let mut best: Option<(DomainClass, usize, &VirtualHost)> = None;
        for vh in &self.virtual_hosts {
            for domain in &vh.domains {
                let Some(class) = domain_match(domain, authority) else {
                    continue;
                };
                let better = match best {
                    None => true,
                    Some((best_class, best_len, _)) => {
                        class < best_class || (class == best_class && domain.len() > best_len)
                    }
                };
                if better {
                    best = Some((class, domain.len(), vh));
                }
            }
        }
        best.map(|(_, _, vh)| vh)
    }
}

impl RouteMatch {
    /// Whether a request with this `:path` and these headers matches (gRFC A28): the path
    /// condition, every header condition, and, when a runtime fraction is set,
    /// `random_per_million < fraction` (the caller draws `random_per_million` uniformly from
    /// `0..1_000_000`).
    pub fn matches(&self, path: &str, headers: &http::HeaderMap, random_per_million: u32) -> bool {
        let path_ok = match &self.path {
            PathMatcher::Prefix(prefix) if self.case_sensitive => path.starts_with(prefix.as_str()),
            PathMatcher::Prefix(prefix) => starts_with_ignore_case(path, prefix),
            PathMatcher::Path(full) if self.case_sensitive => path == full,
            PathMatcher::Path(full) => path.eq_ignore_ascii_case(full),
            // Compiled anchored: a match is a full match. case_sensitive does not apply.
            PathMatcher::Regex(re) => re.is_match(path),
        };
        path_ok
            && self.headers.iter().all(|h| h.matches(headers))
            && self
                .fraction_per_million
                .is_none_or(|fraction| random_per_million < fraction)
    }
}

impl HeaderMatcher {
    /// Whether `headers` satisfy this condition (gRFC A28, as gRPC implements it):
    /// several values of one header are joined with `,`; binary headers (`-bin`) are never
    /// visible to matching (treated as absent); `content-type` is always `application/grpc`,
    /// as in gRPC C-core, since that is what every gRPC request carries. An absent header
    /// fails every matcher except `present_match`, whatever `invert_match` says (grpc-go).
    pub fn matches(&self, headers: &http::HeaderMap) -> bool {
        if self.name.ends_with("-bin") {
            self.matches_value(None)
        } else if self.name == "content-type" {
            self.matches_value(Some("application/grpc"))
        } else {
            self.matches_value(joined_header_value(headers, &self.name).as_deref())
        }
    }

    /// Whether an already looked-up header value satisfies this condition (`None`: the header
    /// is absent). An absent header fails every matcher except `present_match`, whatever
    /// `invert_match` says (grpc-go). Callers with their own header visibility rules (RBAC,
    /// gRFC A41) look the value up themselves and call this.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        if let HeaderMatchKind::Present(want) = self.kind {
            return (value.is_some() == want) != self.invert;
        }
        let Some(value) = value else {
            return false;
        };
        let matched = match &self.kind {
            HeaderMatchKind::Exact(s) => value == s,
            HeaderMatchKind::Regex(m) | HeaderMatchKind::String(m) => m.matches(value),
            HeaderMatchKind::Range { start, end } => {
                value.parse::<i64>().is_ok_and(|v| *start <= v && v < *end)
            }
            HeaderMatchKind::Present(_) => true,
            HeaderMatchKind::Prefix(s) => value.starts_with(s.as_str()),
            HeaderMatchKind::Suffix(s) => value.ends_with(s.as_str()),
            HeaderMatchKind::Contains(s) => value.contains(s.as_str()),
        };
        matched != self.invert
    }
}

/// All values of header `name`, joined with `,` (no added spaces), as gRPC matches
/// multi-valued headers (gRFC A28, A41); `None` when the header is absent.
pub(crate) fn joined_header_value<'h>(
    headers: &'h http::HeaderMap,
    name: &str,
) -> Option<std::borrow::Cow<'h, str>> {
    let mut values = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let first = values.next()?;
    let Some(second) = values.next() else {
        return Some(first);
    };
    let mut all = first.into_owned();
    for v in std::iter::once(second).chain(values) {
        all.push(',');
        all.push_str(&v);
    }
    Some(std::borrow::Cow::Owned(all))
}

impl StringMatcher {
    /// Whether `value` matches (Envoy `StringMatcher`, gRFC A63): `ignore_case` folds ASCII
    /// case for exact/prefix/suffix/contains; a regex must match the whole value.
    pub fn matches(&self, value: &str) -> bool {
        match &self.kind {
            StringMatchKind::Exact(s) if self.ignore_case => value.eq_ignore_ascii_case(s),
            StringMatchKind::Exact(s) => value == s,
            StringMatchKind::Prefix(s) if self.ignore_case => starts_with_ignore_case(value, s),
            StringMatchKind::Prefix(s) => value.starts_with(s.as_str()),
            StringMatchKind::Suffix(s) if self.ignore_case => ends_with_ignore_case(value, s),
            StringMatchKind::Suffix(s) => value.ends_with(s.as_str()),
            StringMatchKind::Contains(s) if self.ignore_case => contains_ignore_case(value, s),
            StringMatchKind::Contains(s) => value.contains(s.as_str()),
            StringMatchKind::Regex(re) => re.is_match(value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue};

    fn full(p: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{p})$")).unwrap()
    }

    fn vh(name: &str, domains: &[&str]) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes: vec![],
            filter_overrides: Default::default(),
            retry_policy: None,
        }
    }

    fn rc(vhs: Vec<VirtualHost>) -> RouteConfig {
        RouteConfig {
            name: "r".into(),
            virtual_hosts: vhs,
        }
    }

    fn found(rc: &RouteConfig, host: &str) -> Option<String> {
        rc.find_virtual_host(host).map(|v| v.name.clone())
    }

    #[test]
    fn domain_classes_in_order() {
        let rc = rc(vec![
            vh("any", &["*"]),
            vh("prefix", &["foo.*"]),
            vh("suffix", &["*.bar.com"]),
            vh("exact", &["foo.bar.com"]),
        ]);
        assert_eq!(found(&rc, "foo.bar.com").as_deref(), Some("exact"));
        assert_eq!(found(&rc, "baz.bar.com").as_deref(), Some("suffix"));
        assert_eq!(found(&rc, "foo.baz").as_deref(), Some("prefix"));
        assert_eq!(found(&rc, "other").as_deref(), Some("any"));
    }

    #[test]
    fn longest_wildcard_wins_within_class() {
        let rc = rc(vec![vh("short", &["*.com"]), vh("long", &["*.bar.com"])]);
        assert_eq!(found(&rc, "a.bar.com").as_deref(), Some("long"));
        let rc2 = rc_prefix();
        assert_eq!(found(&rc2, "foo.bar.x").as_deref(), Some("long"));
    }

    fn rc_prefix() -> RouteConfig {
        rc(vec![vh("short", &["foo.*"]), vh("long", &["foo.bar.*"])])
    }

    #[test]
    fn wildcard_must_match_something_and_case_is_ignored() {
        let rc = rc(vec![
            vh("suffix", &["*.bar.com"]),
            vh("exact", &["Greeter:8080"]),
        ]);
        assert_eq!(found(&rc, ".bar.com"), None);
        assert_eq!(found(&rc, "bar.com"), None);
        assert_eq!(found(&rc, "A.BAR.COM").as_deref(), Some("suffix"));
        assert_eq!(found(&rc, "greeter:8080").as_deref(), Some("exact"));
    }

    #[test]
    fn invalid_patterns_never_match_and_ties_go_to_first() {
        let rc = rc(vec![
            vh("bad", &["fo*o", ""]),
            vh("first", &["*"]),
            vh("second", &["*"]),
        ]);
        assert_eq!(found(&rc, "foo").as_deref(), Some("first"));
        assert_eq!(
            found(&super::tests::rc(vec![vh("bad", &["f*o"])]), "foo"),
            None
        );
    }

    fn rm(path: PathMatcher, case_sensitive: bool) -> RouteMatch {
        RouteMatch {
            path,
            case_sensitive,
            headers: vec![],
            fraction_per_million: None,
        }
    }

    #[test]
    fn path_matching() {
        let h = HeaderMap::new();
        let p = rm(PathMatcher::Prefix("/svc/".into()), true);
        assert!(p.matches("/svc/M", &h, 0));
        assert!(!p.matches("/SVC/M", &h, 0));
        let p = rm(PathMatcher::Prefix("/svc/".into()), false);
        assert!(p.matches("/SVC/M", &h, 0));
        let p = rm(PathMatcher::Path("/svc/M".into()), true);
        assert!(p.matches("/svc/M", &h, 0));
        assert!(!p.matches("/svc/M2", &h, 0));
        assert!(!p.matches("/svc/m", &h, 0));
        let p = rm(PathMatcher::Path("/svc/M".into()), false);
        assert!(p.matches("/SVC/m", &h, 0));
        let p = rm(PathMatcher::Regex(full("/svc/.*")), true);
        assert!(p.matches("/svc/M", &h, 0));
        assert!(!p.matches("/x/svc/M", &h, 0), "regex is a full match");
        let p = rm(PathMatcher::Prefix(String::new()), true);
        assert!(p.matches("/anything", &h, 0));
    }

    #[test]
    fn runtime_fraction() {
        let h = HeaderMap::new();
        let mut p = rm(PathMatcher::Prefix("/".into()), true);
        p.fraction_per_million = Some(250_000);
        assert!(p.matches("/a", &h, 249_999));
        assert!(!p.matches("/a", &h, 250_000));
        p.fraction_per_million = Some(0);
        assert!(!p.matches("/a", &h, 0));
    }

    fn hm(name: &str, kind: HeaderMatchKind, invert: bool) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            kind,
            invert,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn header_matchers() {
        let h = headers(&[
            ("x-a", "one"),
            ("x-a", "two"),
            ("x-n", "42"),
            ("x-t-bin", "AAA"),
        ]);
        // A28: multiple values are joined with ",".
        assert!(hm("x-a", HeaderMatchKind::Exact("one,two".into()), false).matches(&h));
        assert!(!hm("x-a", HeaderMatchKind::Exact("one".into()), false).matches(&h));
        assert!(hm("x-a", HeaderMatchKind::Prefix("one,".into()), false).matches(&h));
        assert!(hm("x-a", HeaderMatchKind::Suffix(",two".into()), false).matches(&h));
        assert!(hm("x-a", HeaderMatchKind::Contains("e,t".into()), false).matches(&h));
        assert!(hm("x-n", HeaderMatchKind::Range { start: 40, end: 43 }, false).matches(&h));
        assert!(!hm("x-n", HeaderMatchKind::Range { start: 40, end: 42 }, false).matches(&h));
        assert!(!hm("x-a", HeaderMatchKind::Range { start: 0, end: 9 }, false).matches(&h));
        let re = StringMatcher {
            kind: StringMatchKind::Regex(full("o.e,.*")),
            ignore_case: false,
        };
        assert!(hm("x-a", HeaderMatchKind::Regex(re.clone()), false).matches(&h));
        assert!(!hm("x-n", HeaderMatchKind::Regex(re), false).matches(&h));
        // Invert flips a present header's result ...
        assert!(hm("x-a", HeaderMatchKind::Exact("one".into()), true).matches(&h));
        // ... but an absent header fails whatever the inversion (grpc-go).
        assert!(!hm("x-missing", HeaderMatchKind::Exact("v".into()), true).matches(&h));
        assert!(!hm("x-missing", HeaderMatchKind::Exact("v".into()), false).matches(&h));
        // present_match, with and without invert.
        assert!(hm("x-a", HeaderMatchKind::Present(true), false).matches(&h));
        assert!(hm("x-missing", HeaderMatchKind::Present(false), false).matches(&h));
        assert!(hm("x-missing", HeaderMatchKind::Present(true), true).matches(&h));
        assert!(!hm("x-a", HeaderMatchKind::Present(true), true).matches(&h));
    }

    #[test]
    fn binary_headers_are_invisible_and_content_type_is_grpc() {
        let h = headers(&[
            ("x-t-bin", "AAA"),
            ("content-type", "application/grpc+proto"),
        ]);
        assert!(!hm("x-t-bin", HeaderMatchKind::Present(true), false).matches(&h));
        assert!(hm("x-t-bin", HeaderMatchKind::Present(false), false).matches(&h));
        assert!(!hm("x-t-bin", HeaderMatchKind::Exact("AAA".into()), false).matches(&h));
        let ct = hm(
            "content-type",
            HeaderMatchKind::Exact("application/grpc".into()),
            false,
        );
        assert!(ct.matches(&h));
        assert!(ct.matches(&HeaderMap::new()));
    }

    #[test]
    fn route_match_needs_all_headers() {
        let h = headers(&[("x-a", "1")]);
        let mut p = rm(PathMatcher::Prefix("/".into()), true);
        p.headers = vec![
            hm("x-a", HeaderMatchKind::Exact("1".into()), false),
            hm("x-b", HeaderMatchKind::Present(true), false),
        ];
        assert!(!p.matches("/m", &h, 0));
        p.headers.pop();
        assert!(p.matches("/m", &h, 0));
    }

    fn sm(kind: StringMatchKind, ignore_case: bool) -> StringMatcher {
        StringMatcher { kind, ignore_case }
    }

    #[test]
    fn string_matcher() {
        use StringMatchKind::*;
        assert!(sm(Exact("Abc".into()), false).matches("Abc"));
        assert!(!sm(Exact("Abc".into()), false).matches("abc"));
        assert!(sm(Exact("Abc".into()), true).matches("aBC"));
        assert!(sm(Prefix("ab".into()), false).matches("abc"));
        assert!(sm(Prefix("AB".into()), true).matches("abc"));
        assert!(!sm(Prefix("abcd".into()), true).matches("abc"));
        assert!(sm(Suffix("bc".into()), false).matches("abc"));
        assert!(sm(Suffix("BC".into()), true).matches("abc"));
        assert!(!sm(Suffix("BC".into()), false).matches("abc"));
        assert!(sm(Contains("b".into()), false).matches("abc"));
        assert!(sm(Contains("B".into()), true).matches("abc"));
        assert!(sm(Contains(String::new()), true).matches(""));
        assert!(!sm(Contains("x".into()), true).matches("abc"));
        assert!(sm(Regex(full("a.c")), false).matches("abc"));
        assert!(!sm(Regex(full("a.c")), false).matches("xabc"));
        // Multi-byte input must not panic in the byte-wise case folding.
        assert!(!sm(Prefix("é".into()), true).matches("e"));
        assert!(sm(Suffix("é".into()), true).matches("café"));
    }
}
