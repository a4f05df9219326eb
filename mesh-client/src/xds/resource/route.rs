//! RDS: validation of `RouteConfiguration` resources into [`config::RouteConfig`]
//! (gRFC A28 routing and traffic splitting, A31 timeouts, A63 string matchers).
//!
//! What is NACKed: a route without `match` or path specifier, an unsupported path specifier
//! (`connect_matcher`, `path_separated_prefix`, `path_match_policy`, as in grpc-go), an
//! invalid regex, a bad header matcher, an empty `cluster`, `weighted_clusters` whose weights
//! sum to 0 or exceed `u32::MAX`, a non-optional unknown cluster specifier plugin. What is
//! ignored (the route is dropped): routes with `query_parameters`, routes whose action's
//! cluster specifier is `cluster_header`, unset, or an optional unsupported plugin. Other
//! actions (redirect, direct response, filter action) become [`RouteAction::Unsupported`].
//!
//! `hash_policy` (gRFC A42) becomes [`config::HashPolicy`]: `header` (NACK if its
//! `regex_rewrite` does not compile) and `filter_state` `io.grpc.channel_id`; other kinds are
//! kept as producing no hash.
//!
//! `typed_per_filter_config` on virtual hosts and routes (gRFC A39) becomes
//! [`config::FilterOverrides`]: `RBACPerRoute` (A41) is validated; any other type NACKs unless
//! wrapped in a `FilterConfig` with `is_optional` (then it is ignored).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use prost::{Message, Name};

use xds_proto::envoy::envoy::config::route::v3::{
    FilterConfig, Route as RouteProto, RouteAction as RouteActionProto, route::Action,
    route_action::ClusterSpecifier, route_action::HashPolicy as HashPolicyProto,
    route_action::hash_policy::PolicySpecifier, route_match::PathSpecifier,
};
use xds_proto::envoy::envoy::r#type::v3::fractional_percent::DenominatorType;
use xds_proto::protobuf::Any;
use xds_proto::type_url;

use super::matcher;
use crate::config::{
    self, FilterOverride, FilterOverrides, HashPolicyKind, PathMatcher, Route, RouteAction,
    RouteMatch, VirtualHost,
};

/// The protobuf message validated here.
pub use xds_proto::envoy::envoy::config::route::v3::RouteConfiguration as RouteConfigurationProto;

/// Validates a RouteConfiguration (RDS, or inline in a Listener). Errors are field paths
/// relative to the resource.
pub fn validate(rc: &RouteConfigurationProto) -> Result<config::RouteConfig, String> {
    // Cluster specifier plugins (gRFC A77/RLS): none is supported yet. A non-optional one is
    // NACKed; routes using an optional one are ignored.
    let mut plugins: HashSet<&str> = HashSet::new();
    for (i, p) in rc.cluster_specifier_plugins.iter().enumerate() {
        let ext = p.extension.as_ref();
        let name = ext.map(|e| e.name.as_str()).unwrap_or_default();
        if !p.is_optional {
            let ty = ext
                .and_then(|e| e.typed_config.as_ref())
                .map(|a| a.type_url.as_str())
                .unwrap_or_default();
            return Err(format!(
                "cluster_specifier_plugins[{i}]: unsupported plugin {name:?} of type {ty:?}"
            ));
        }
        plugins.insert(name);
    }
    let mut virtual_hosts = Vec::with_capacity(rc.virtual_hosts.len());
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let mut routes = Vec::with_capacity(vh.routes.len());
        for (j, r) in vh.routes.iter().enumerate() {
            if let Some(route) =
                route(r, &plugins).map_err(|e| format!("virtual_hosts[{i}].routes[{j}].{e}"))?
            {
                routes.push(route);
            }
        }
        virtual_hosts.push(VirtualHost {
            name: vh.name.clone(),
            domains: vh.domains.clone(),
            routes,
            filter_overrides: filter_overrides(&vh.typed_per_filter_config)
                .map_err(|e| format!("virtual_hosts[{i}].{e}"))?,
            retry_policy: vh
                .retry_policy
                .as_ref()
                .map(retry_policy)
                .transpose()
                .map_err(|e| format!("virtual_hosts[{i}].retry_policy.{e}"))?
                .flatten(),
        });
    }
    Ok(config::RouteConfig {
        name: rc.name.clone(),
        virtual_hosts,
    })
}

/// One route; `Ok(None)` when gRPC ignores it.
fn route(r: &RouteProto, plugins: &HashSet<&str>) -> Result<Option<Route>, String> {
    let m = r.r#match.as_ref().ok_or("match: missing")?;
    // A28: gRPC never matches query parameters, so such a route can never match.
    if !m.query_parameters.is_empty() {
        return Ok(None);
    }
    let path = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => PathMatcher::Prefix(p.clone()),
        Some(PathSpecifier::Path(p)) => PathMatcher::Path(p.clone()),
        Some(PathSpecifier::SafeRegex(re)) => PathMatcher::Regex(
            matcher::compile_regex(re).map_err(|e| format!("match.safe_regex: {e}"))?,
        ),
        // grpc-go NACKs every other path specifier ("unrecognized path specifier").
        Some(PathSpecifier::ConnectMatcher(_)) => {
            return Err("match.connect_matcher: unsupported path specifier".into());
        }
        Some(PathSpecifier::PathSeparatedPrefix(_)) => {
            return Err("match.path_separated_prefix: unsupported path specifier".into());
        }
        Some(PathSpecifier::PathMatchPolicy(_)) => {
            return Err("match.path_match_policy: unsupported path specifier".into());
        }
        None => return Err("match.path_specifier: missing".into()),
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(k, h)| matcher::header_matcher(h).map_err(|e| format!("match.headers[{k}].{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    // A28: only default_value is used. An unset default_value is 0% (as grpc-go reads it).
    let fraction_per_million = m.runtime_fraction.as_ref().map(|f| {
        let d = f.default_value.unwrap_or_default();
        let scale: u64 = match DenominatorType::try_from(d.denominator) {
            Ok(DenominatorType::Hundred) => 10_000,
            Ok(DenominatorType::TenThousand) => 100,
            // MILLION, and (as in grpc-go) an unknown value: taken as parts per million.
            Ok(DenominatorType::Million) | Err(_) => 1,
        };
        // A numerator above the denominator is capped at 100%.
        u32::try_from((u64::from(d.numerator) * scale).min(1_000_000)).unwrap_or(1_000_000)
    });
    let matcher = RouteMatch {
        path,
        case_sensitive: m.case_sensitive.is_none_or(|b| b.value),
        headers,
        fraction_per_million,
    };
    let action = match &r.action {
        Some(Action::Route(ra)) => match route_action(ra, plugins)? {
            Some(a) => a,
            None => return Ok(None),
        },
        Some(Action::NonForwardingAction(_)) => RouteAction::NonForwarding,
        // A28: any other action makes matching RPCs fail.
        Some(Action::Redirect(_) | Action::DirectResponse(_) | Action::FilterAction(_)) | None => {
            RouteAction::Unsupported
        }
    };
    Ok(Some(Route {
        matcher,
        action,
        filter_overrides: filter_overrides(&r.typed_per_filter_config)?,
    }))
}

/// `typed_per_filter_config` (gRFC A39), keyed by filter instance name. A value may be
/// wrapped in `envoy.config.route.v3.FilterConfig`, whose `is_optional` lets us skip a type we
/// do not know; an unknown non-optional type NACKs. Only `RBACPerRoute` (A41) is supported.
fn filter_overrides(map: &HashMap<String, Any>) -> Result<FilterOverrides, String> {
    let mut out = FilterOverrides::new();
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    for name in names {
        let Some(any) = map.get(name) else {
            continue;
        };
        let at = |e: String| format!("typed_per_filter_config[{name:?}]: {e}");
        let (any, optional) = if any.type_url == FilterConfig::type_url() {
            let fc = FilterConfig::decode(any.value.as_slice())
                .map_err(|e| at(format!("cannot decode FilterConfig: {e}")))?;
            (fc.config.unwrap_or_default(), fc.is_optional)
        } else {
            (any.clone(), false)
        };
        let ty = super::listener::filter_type_url(&any).map_err(at)?;
        match ty.as_str() {
            type_url::RBAC_PER_ROUTE => {
                if any.type_url != type_url::RBAC_PER_ROUTE {
                    return Err(at(
                        "RBACPerRoute must be packed directly, not in a TypedStruct".into(),
                    ));
                }
                let proto = super::rbac::RbacPerRouteProto::decode(any.value.as_slice())
                    .map_err(|e| at(format!("cannot decode RBACPerRoute: {e}")))?;
                let rbac = super::rbac::validate_rbac_per_route(&proto).map_err(at)?;
                out.insert(name.clone(), FilterOverride::Rbac(rbac.map(Arc::new)));
            }
            // A33: an HTTPFault override replaces the filter's config.
            type_url::FAULT => {
                let fault = super::fault::validate_any(&any).map_err(at)?;
                out.insert(name.clone(), FilterOverride::Fault(Arc::new(fault)));
            }
            // A filter we know, with a config that is not its override type.
            type_url::RBAC | type_url::ROUTER => {
                return Err(at(format!("{ty:?} is not a per-route override type")));
            }
            _ if optional => {}
            _ => return Err(at(format!("unsupported filter override type {ty:?}"))),
        }
    }
    Ok(out)
}

/// A `route` action; `Ok(None)` when the route is to be ignored.
fn route_action(
    ra: &RouteActionProto,
    plugins: &HashSet<&str>,
) -> Result<Option<RouteAction>, String> {
    let clusters = match &ra.cluster_specifier {
        Some(ClusterSpecifier::Cluster(name)) => {
            if name.is_empty() {
                return Err("route.cluster: empty cluster name".into());
            }
            vec![config::WeightedCluster {
                name: name.clone(),
                weight: 1,
            }]
        }
        Some(ClusterSpecifier::WeightedClusters(wc)) => {
            // A28 as implemented by gRPC today: entries of weight 0 are skipped,
            // total_weight is ignored, the sum must be in 1..=u32::MAX.
            let mut total: u64 = 0;
            let mut out = Vec::with_capacity(wc.clusters.len());
            for (k, c) in wc.clusters.iter().enumerate() {
                let weight = c.weight.map(|w| w.value).unwrap_or(0);
                if weight == 0 {
                    continue;
                }
                if c.name.is_empty() {
                    return Err(format!(
                        "route.weighted_clusters.clusters[{k}].name: empty cluster name"
                    ));
                }
                total += u64::from(weight);
                if total > u64::from(u32::MAX) {
                    return Err("route.weighted_clusters: sum of weights exceeds u32::MAX".into());
                }
                out.push(config::WeightedCluster {
                    name: c.name.clone(),
                    weight,
                });
            }
            if total == 0 {
                return Err("route.weighted_clusters: sum of weights is 0".into());
            }
            out
        }
        Some(ClusterSpecifier::ClusterSpecifierPlugin(name)) => {
            if plugins.contains(name.as_str()) {
                // An optional plugin we do not support: the route is ignored.
                return Ok(None);
            }
            return Err(format!(
                "route.cluster_specifier_plugin: {name:?} is not in cluster_specifier_plugins"
            ));
        }
        // A28: cluster_header, an inline plugin, or nothing: the route is ignored.
        Some(
            ClusterSpecifier::ClusterHeader(_) | ClusterSpecifier::InlineClusterSpecifierPlugin(_),
        )
        | None => return Ok(None),
    };
    // A31: grpc_timeout_header_max is preferred over max_stream_duration; 0 means no limit.
    let timeout = match ra.max_stream_duration.as_ref().and_then(|m| {
        m.grpc_timeout_header_max
            .as_ref()
            .or(m.max_stream_duration.as_ref())
    }) {
        Some(d) => Some(super::duration(d).map_err(|e| format!("route.max_stream_duration: {e}"))?),
        None => None,
    }
    .filter(|d| !d.is_zero());
    let hash_policy = ra
        .hash_policy
        .iter()
        .enumerate()
        .map(|(k, h)| hash_policy(h).map_err(|e| format!("route.hash_policy[{k}].{e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let retry_policy = ra
        .retry_policy
        .as_ref()
        .map(retry_policy)
        .transpose()
        .map_err(|e| format!("route.retry_policy.{e}"))?
        .flatten();
    Ok(Some(RouteAction::Forward {
        clusters,
        timeout,
        hash_policy,
        retry_policy,
    }))
}

/// gRFC A44: `retry_on` keeps only the gRPC conditions (`cancelled`, `deadline-exceeded`,
/// `internal`, `resource-exhausted`, `unavailable`); none left means no policy (`Ok(None)`).
/// `num_retries` defaults to 1 and must be >= 1; `retry_back_off.base_interval` must be set
/// and > 0 when `retry_back_off` is (default 25 ms), `max_interval` > 0 (default 10 × base).
/// Everything else (per_try_timeout, hedging, host predicates) is ignored.
fn retry_policy(
    rp: &xds_proto::envoy::envoy::config::route::v3::RetryPolicy,
) -> Result<Option<config::RetryPolicy>, String> {
    let mut retry_on = config::RetryOn::default();
    for cond in rp.retry_on.split(',') {
        let code = match cond.trim().to_ascii_lowercase().as_str() {
            "cancelled" => 1,
            "deadline-exceeded" => 4,
            "internal" => 13,
            "resource-exhausted" => 8,
            "unavailable" => 14,
            _ => continue,
        };
        retry_on = retry_on.with(code);
    }
    let num_retries = match rp.num_retries {
        None => 1,
        Some(n) if n.value >= 1 => n.value,
        Some(n) => return Err(format!("num_retries: {} must be >= 1", n.value)),
    };
    let (base_interval, max_interval) =
        match &rp.retry_back_off {
            None => (Duration::from_millis(25), Duration::from_millis(250)),
            Some(b) => {
                let base = match &b.base_interval {
                    None => return Err("retry_back_off.base_interval: missing".into()),
                    Some(d) => super::duration(d)
                        .map_err(|e| format!("retry_back_off.base_interval: {e}"))?,
                };
                if base.is_zero() {
                    return Err("retry_back_off.base_interval: must be > 0".into());
                }
                let max = match &b.max_interval {
                    None => base.saturating_mul(10),
                    Some(d) => super::duration(d)
                        .map_err(|e| format!("retry_back_off.max_interval: {e}"))?,
                };
                if max.is_zero() {
                    return Err("retry_back_off.max_interval: must be > 0".into());
                }
                (base, max.max(base))
            }
        };
    if retry_on.is_empty() {
        return Ok(None);
    }
    Ok(Some(config::RetryPolicy {
        retry_on,
        max_attempts: num_retries.saturating_add(1).min(5),
        base_interval,
        max_interval,
    }))
}

/// One `hash_policy` entry (gRFC A42): `header` (with an optional `regex_rewrite`, whose
/// regex must compile) and `filter_state` with key `io.grpc.channel_id` are supported; every
/// other kind is kept as [`HashPolicyKind::Ignored`] (it yields no hash, but its `terminal`
/// still counts), where Envoy would reject it.
fn hash_policy(h: &HashPolicyProto) -> Result<config::HashPolicy, String> {
    let kind = match &h.policy_specifier {
        Some(PolicySpecifier::Header(hd)) if !hd.header_name.is_empty() => {
            let rewrite = match &hd.regex_rewrite {
                Some(rw) => {
                    let pattern = rw
                        .pattern
                        .as_ref()
                        .ok_or("header.regex_rewrite.pattern: missing")?;
                    let re = regex::RegexBuilder::new(&pattern.regex)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| {
                            format!(
                                "header.regex_rewrite.pattern: invalid regex {:?}: {}",
                                pattern.regex,
                                e.to_string()
                                    .split_whitespace()
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            )
                        })?;
                    Some((re, envoy_substitution(&rw.substitution)))
                }
                None => None,
            };
            HashPolicyKind::Header {
                name: hd.header_name.to_ascii_lowercase(),
                rewrite,
            }
        }
        Some(PolicySpecifier::FilterState(fs)) if fs.key == "io.grpc.channel_id" => {
            HashPolicyKind::ChannelId
        }
        _ => HashPolicyKind::Ignored,
    };
    Ok(config::HashPolicy {
        kind,
        terminal: h.terminal,
    })
}

/// Envoy's (RE2) substitution syntax, `\1` for a capture group, in the `regex` crate's
/// syntax (`${1}`), with a literal `$` escaped.
fn envoy_substitution(sub: &str) -> String {
    let mut out = String::with_capacity(sub.len());
    let mut chars = sub.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '$' => out.push_str("$$"),
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HeaderMatchKind, RouteConfig, StringMatchKind};
    use crate::xds::resource::testing::{Expect, Expect::*, run};
    use crate::xds::resource::{Resource, ResourceType};
    use std::time::Duration;
    use xds_proto::any::pack;
    use xds_proto::envoy::envoy::config::core::v3::{
        RuntimeFractionalPercent, TypedExtensionConfig,
    };
    use xds_proto::envoy::envoy::config::rbac::v3::{
        Permission, Policy, Principal, Rbac as RulesProto, permission, principal,
    };
    use xds_proto::envoy::envoy::config::route::v3::{
        ClusterSpecifierPlugin, HeaderMatcher, NonForwardingAction, QueryParameterMatcher,
        RedirectAction, RetryPolicy as RetryPolicyProto, RouteMatch as RouteMatchProto,
        VirtualHost as VhProto, WeightedCluster, header_matcher::HeaderMatchSpecifier,
        retry_policy::RetryBackOff, route_action::MaxStreamDuration,
        weighted_cluster::ClusterWeight,
    };
    use xds_proto::envoy::envoy::extensions::filters::http::rbac::v3::{
        Rbac as RbacProto, RbacPerRoute,
    };
    use xds_proto::envoy::envoy::r#type::matcher::v3::{
        RegexMatcher, StringMatcher, string_matcher::MatchPattern,
    };
    use xds_proto::envoy::envoy::r#type::v3::{FractionalPercent, Int64Range};
    use xds_proto::protobuf::{Any, BoolValue, Duration as PbDuration, UInt32Value};

    fn prefix_match(p: &str) -> RouteMatchProto {
        RouteMatchProto {
            path_specifier: Some(PathSpecifier::Prefix(p.into())),
            ..Default::default()
        }
    }

    fn to_cluster(c: &str) -> Option<Action> {
        Some(Action::Route(RouteActionProto {
            cluster_specifier: Some(ClusterSpecifier::Cluster(c.into())),
            ..Default::default()
        }))
    }

    fn route_with(m: Option<RouteMatchProto>, action: Option<Action>) -> RouteProto {
        RouteProto {
            r#match: m,
            action,
            ..Default::default()
        }
    }

    fn rc_of(routes: Vec<RouteProto>) -> RouteConfigurationProto {
        RouteConfigurationProto {
            name: "r1".into(),
            virtual_hosts: vec![VhProto {
                name: "vh".into(),
                domains: vec!["*".into()],
                routes,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn any_of(routes: Vec<RouteProto>) -> Any {
        pack(&rc_of(routes))
    }

    fn with_match(f: impl FnOnce(&mut RouteMatchProto)) -> Any {
        let mut m = prefix_match("/");
        f(&mut m);
        any_of(vec![route_with(Some(m), to_cluster("c1"))])
    }

    fn with_action(ra: RouteActionProto) -> Any {
        any_of(vec![route_with(
            Some(prefix_match("/")),
            Some(Action::Route(ra)),
        )])
    }

    fn header(name: &str, spec: HeaderMatchSpecifier) -> HeaderMatcher {
        HeaderMatcher {
            name: name.into(),
            header_match_specifier: Some(spec),
            ..Default::default()
        }
    }

    fn regex(r: &str) -> RegexMatcher {
        RegexMatcher {
            regex: r.into(),
            ..Default::default()
        }
    }

    fn weighted(ws: &[(&str, Option<u32>)]) -> RouteActionProto {
        RouteActionProto {
            cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: ws
                    .iter()
                    .map(|(n, w)| ClusterWeight {
                        name: n.to_string(),
                        weight: w.map(|value| UInt32Value { value }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn fraction(numerator: u32, d: DenominatorType) -> Any {
        with_match(|m| {
            m.runtime_fraction = Some(RuntimeFractionalPercent {
                default_value: Some(FractionalPercent {
                    numerator,
                    denominator: d as i32,
                }),
                ..Default::default()
            })
        })
    }

    fn routes(rc: &RouteConfig) -> &[Route] {
        rc.virtual_hosts
            .first()
            .map(|v| v.routes.as_slice())
            .unwrap_or_default()
    }

    fn first(rc: &RouteConfig) -> Option<&Route> {
        routes(rc).first()
    }

    fn forward(rc: &RouteConfig) -> Option<(&[config::WeightedCluster], Option<Duration>)> {
        match first(rc).map(|r| &r.action) {
            Some(RouteAction::Forward {
                clusters, timeout, ..
            }) => Some((clusters, *timeout)),
            _ => None,
        }
    }

    fn plugin(name: &str, optional: bool) -> ClusterSpecifierPlugin {
        ClusterSpecifierPlugin {
            extension: Some(TypedExtensionConfig {
                name: name.into(),
                typed_config: Some(Any {
                    type_url: "type.googleapis.com/grpc.lookup.v1.RouteLookupClusterSpecifier"
                        .into(),
                    value: vec![],
                }),
            }),
            is_optional: optional,
        }
    }

    fn to_plugin(name: &str) -> Option<Action> {
        Some(Action::Route(RouteActionProto {
            cluster_specifier: Some(ClusterSpecifier::ClusterSpecifierPlugin(name.into())),
            ..Default::default()
        }))
    }

    #[allow(deprecated)]
    fn rows() -> Vec<(&'static str, Any, Expect<RouteConfig>)> {
        vec![
            (
                // A28: prefix + cluster is the basic route.
                "prefix to cluster",
                any_of(vec![route_with(
                    Some(prefix_match("/svc/")),
                    to_cluster("c1"),
                )]),
                Accepted(|rc| {
                    rc.name == "r1"
                        && rc.virtual_hosts[0].domains == ["*"]
                        && first(rc).is_some_and(|r| {
                            r.matcher.path == PathMatcher::Prefix("/svc/".into())
                                && r.matcher.case_sensitive
                        })
                        && forward(rc).is_some_and(|(c, t)| {
                            c[0].name == "c1" && c[0].weight == 1 && t.is_none()
                        })
                }),
            ),
            (
                // A28: routes keep their order (first match wins).
                "route order is kept",
                any_of(vec![
                    route_with(Some(prefix_match("/a")), to_cluster("a")),
                    route_with(Some(prefix_match("/b")), to_cluster("b")),
                ]),
                Accepted(|rc| {
                    routes(rc).len() == 2
                        && routes(rc)[1].matcher.path == PathMatcher::Prefix("/b".into())
                }),
            ),
            (
                // A28: `path` is a full-path match.
                "path matcher",
                with_match(|m| m.path_specifier = Some(PathSpecifier::Path("/s/M".into()))),
                Accepted(|rc| {
                    first(rc).is_some_and(|r| r.matcher.path == PathMatcher::Path("/s/M".into()))
                }),
            ),
            (
                // A28: safe_regex is compiled as a full match.
                "safe_regex path",
                with_match(|m| m.path_specifier = Some(PathSpecifier::SafeRegex(regex("/s/.*")))),
                Accepted(|rc| {
                    first(rc).is_some_and(|r| matches!(&r.matcher.path, PathMatcher::Regex(re) if re.is_match("/s/x") && !re.is_match("/t/s/x")))
                }),
            ),
            (
                // A28: an invalid safe_regex NACKs.
                "invalid safe_regex",
                with_match(|m| m.path_specifier = Some(PathSpecifier::SafeRegex(regex("(")))),
                Nack(
                    "route_config \"r1\": virtual_hosts[0].routes[0].match.safe_regex: invalid regex",
                ),
            ),
            (
                // A28: RE2 has no backreferences; such a pattern is invalid.
                "backreference regex",
                with_match(|m| m.path_specifier = Some(PathSpecifier::SafeRegex(regex(r"(a)\1")))),
                Nack("match.safe_regex: invalid regex"),
            ),
            (
                // A28: no match → NACK.
                "match missing",
                any_of(vec![route_with(None, to_cluster("c1"))]),
                Nack("virtual_hosts[0].routes[0].match: missing"),
            ),
            (
                // A28: no path specifier → NACK.
                "path specifier missing",
                with_match(|m| m.path_specifier = None),
                Nack("match.path_specifier: missing"),
            ),
            (
                // grpc-go: path_separated_prefix is an unrecognized path specifier → NACK.
                "path_separated_prefix",
                with_match(|m| {
                    m.path_specifier = Some(PathSpecifier::PathSeparatedPrefix("/a".into()))
                }),
                Nack("match.path_separated_prefix: unsupported path specifier"),
            ),
            (
                // A28: query_parameters → the whole route is ignored.
                "query_parameters",
                any_of(vec![
                    route_with(
                        Some(RouteMatchProto {
                            query_parameters: vec![QueryParameterMatcher {
                                name: "q".into(),
                                ..Default::default()
                            }],
                            ..prefix_match("/")
                        }),
                        to_cluster("c1"),
                    ),
                    route_with(Some(prefix_match("/")), to_cluster("c2")),
                ]),
                Ignored("route with query_parameters", |rc| {
                    routes(rc).len() == 1 && forward(rc).is_some_and(|(c, _)| c[0].name == "c2")
                }),
            ),
            (
                // A28 (current grpc): case_sensitive=false makes prefix/path case-insensitive.
                "case_sensitive false",
                with_match(|m| m.case_sensitive = Some(BoolValue { value: false })),
                Accepted(|rc| first(rc).is_some_and(|r| !r.matcher.case_sensitive)),
            ),
            (
                // A28: header matchers; names are lower-cased.
                "exact and range header matchers",
                with_match(|m| {
                    m.headers = vec![
                        header("X-A", HeaderMatchSpecifier::ExactMatch("v".into())),
                        header(
                            "x-n",
                            HeaderMatchSpecifier::RangeMatch(Int64Range { start: 1, end: 5 }),
                        ),
                        header("x-p", HeaderMatchSpecifier::PresentMatch(true)),
                    ];
                    m.headers[0].invert_match = true;
                }),
                Accepted(|rc| {
                    first(rc).is_some_and(|r| {
                        let h = &r.matcher.headers;
                        h.len() == 3
                            && h[0].name == "x-a"
                            && h[0].invert
                            && h[0].kind == HeaderMatchKind::Exact("v".into())
                            && h[1].kind == HeaderMatchKind::Range { start: 1, end: 5 }
                            && h[2].kind == HeaderMatchKind::Present(true)
                    })
                }),
            ),
            (
                // A28: an invalid safe_regex_match NACKs.
                "invalid header regex",
                with_match(|m| {
                    m.headers = vec![header(
                        "x-a",
                        HeaderMatchSpecifier::SafeRegexMatch(regex("[")),
                    )]
                }),
                Nack("virtual_hosts[0].routes[0].match.headers[0].safe_regex_match: invalid regex"),
            ),
            (
                // gRPC C-core: a range whose end is below its start NACKs.
                "reversed range",
                with_match(|m| {
                    m.headers = vec![header(
                        "x-n",
                        HeaderMatchSpecifier::RangeMatch(Int64Range { start: 5, end: 1 }),
                    )]
                }),
                Nack("match.headers[0].range_match: end 1 is smaller than start 5"),
            ),
            (
                // A63: string_match with ignore_case.
                "string_match ignore_case",
                with_match(|m| {
                    m.headers = vec![header(
                        "x-a",
                        HeaderMatchSpecifier::StringMatch(StringMatcher {
                            ignore_case: true,
                            match_pattern: Some(MatchPattern::Prefix("AB".into())),
                        }),
                    )]
                }),
                Accepted(|rc| {
                    first(rc).is_some_and(|r| matches!(&r.matcher.headers[0].kind,
                    HeaderMatchKind::String(s) if s.ignore_case && matches!(&s.kind, StringMatchKind::Prefix(p) if p == "AB")))
                }),
            ),
            (
                // A63: a StringMatcher without a pattern is invalid.
                "string_match without pattern",
                with_match(|m| {
                    m.headers = vec![header(
                        "x-a",
                        HeaderMatchSpecifier::StringMatch(StringMatcher::default()),
                    )]
                }),
                Nack("match.headers[0].string_match.match_pattern: missing"),
            ),
            (
                // A63: an invalid regex inside string_match NACKs.
                "string_match invalid regex",
                with_match(|m| {
                    m.headers = vec![header(
                        "x-a",
                        HeaderMatchSpecifier::StringMatch(StringMatcher {
                            ignore_case: false,
                            match_pattern: Some(MatchPattern::SafeRegex(regex("a{"))),
                        }),
                    )]
                }),
                Nack("match.headers[0].string_match.safe_regex: invalid regex"),
            ),
            (
                // A28: runtime_fraction default_value: 25/HUNDRED = 250000 per million.
                "runtime_fraction hundred",
                fraction(25, DenominatorType::Hundred),
                Accepted(|rc| {
                    first(rc).is_some_and(|r| r.matcher.fraction_per_million == Some(250_000))
                }),
            ),
            (
                // A28: a numerator above the denominator is capped at 100%.
                "runtime_fraction capped",
                fraction(20_000, DenominatorType::TenThousand),
                Accepted(|rc| {
                    first(rc).is_some_and(|r| r.matcher.fraction_per_million == Some(1_000_000))
                }),
            ),
            (
                // A28: weighted_clusters; weight-0 entries are skipped, total_weight ignored.
                "weighted clusters",
                with_action(RouteActionProto {
                    cluster_specifier: weighted(&[
                        ("a", Some(3)),
                        ("zero", Some(0)),
                        ("b", Some(1)),
                    ])
                    .cluster_specifier,
                    ..Default::default()
                }),
                Accepted(|rc| {
                    forward(rc).is_some_and(|(c, _)| {
                        c.len() == 2 && c[0].name == "a" && c[0].weight == 3 && c[1].name == "b"
                    })
                }),
            ),
            (
                // A28: the sum of weights must be > 0.
                "weighted clusters sum 0",
                with_action(weighted(&[("a", Some(0)), ("b", None)])),
                Nack("virtual_hosts[0].routes[0].route.weighted_clusters: sum of weights is 0"),
            ),
            (
                // A28 / grpc-go: a sum above u32::MAX NACKs.
                "weighted clusters overflow",
                with_action(weighted(&[("a", Some(u32::MAX)), ("b", Some(1))])),
                Nack("route.weighted_clusters: sum of weights exceeds u32::MAX"),
            ),
            (
                // A28: the cluster name must be non-empty.
                "empty cluster name",
                any_of(vec![route_with(Some(prefix_match("/")), to_cluster(""))]),
                Nack("routes[0].route.cluster: empty cluster name"),
            ),
            (
                // A28: cluster_header → the route is ignored.
                "cluster_header",
                with_action(RouteActionProto {
                    cluster_specifier: Some(ClusterSpecifier::ClusterHeader("x-cluster".into())),
                    ..Default::default()
                }),
                Ignored("route with cluster_header", |rc| routes(rc).is_empty()),
            ),
            (
                // A31: grpc_timeout_header_max is preferred over max_stream_duration.
                "timeout prefers grpc_timeout_header_max",
                with_action(RouteActionProto {
                    max_stream_duration: Some(MaxStreamDuration {
                        max_stream_duration: Some(PbDuration {
                            seconds: 9,
                            nanos: 0,
                        }),
                        grpc_timeout_header_max: Some(PbDuration {
                            seconds: 2,
                            nanos: 500,
                        }),
                        ..Default::default()
                    }),
                    ..to_cluster_action("c1")
                }),
                Accepted(|rc| forward(rc).is_some_and(|(_, t)| t == Some(Duration::new(2, 500)))),
            ),
            (
                // A31: max_stream_duration alone.
                "timeout from max_stream_duration",
                with_action(RouteActionProto {
                    max_stream_duration: Some(MaxStreamDuration {
                        max_stream_duration: Some(PbDuration {
                            seconds: 9,
                            nanos: 0,
                        }),
                        ..Default::default()
                    }),
                    ..to_cluster_action("c1")
                }),
                Accepted(|rc| forward(rc).is_some_and(|(_, t)| t == Some(Duration::from_secs(9)))),
            ),
            (
                // A28: redirect (any non-route action) → RPCs fail, route kept.
                "redirect is unsupported",
                any_of(vec![route_with(
                    Some(prefix_match("/")),
                    Some(Action::Redirect(RedirectAction::default())),
                )]),
                Accepted(|rc| first(rc).is_some_and(|r| r.action == RouteAction::Unsupported)),
            ),
            (
                // A36: non_forwarding_action (server side).
                "non_forwarding_action",
                any_of(vec![route_with(
                    Some(prefix_match("/")),
                    Some(Action::NonForwardingAction(NonForwardingAction {})),
                )]),
                Accepted(|rc| first(rc).is_some_and(|r| r.action == RouteAction::NonForwarding)),
            ),
            (
                // RLS-in-xDS (A28 update): a non-optional unknown plugin NACKs.
                "non-optional cluster specifier plugin",
                pack(&RouteConfigurationProto {
                    cluster_specifier_plugins: vec![plugin("rls", false)],
                    ..rc_of(vec![route_with(Some(prefix_match("/")), to_plugin("rls"))])
                }),
                Nack("cluster_specifier_plugins[0]: unsupported plugin \"rls\""),
            ),
            (
                // RLS-in-xDS: routes to an optional unsupported plugin are ignored.
                "optional cluster specifier plugin",
                pack(&RouteConfigurationProto {
                    cluster_specifier_plugins: vec![plugin("rls", true)],
                    ..rc_of(vec![route_with(Some(prefix_match("/")), to_plugin("rls"))])
                }),
                Ignored("route to optional plugin", |rc| routes(rc).is_empty()),
            ),
            (
                // RLS-in-xDS: a route naming an undeclared plugin NACKs.
                "undeclared cluster specifier plugin",
                any_of(vec![route_with(Some(prefix_match("/")), to_plugin("nope"))]),
                Nack(
                    "route.cluster_specifier_plugin: \"nope\" is not in cluster_specifier_plugins",
                ),
            ),
            (
                // A44: only gRPC conditions count; num_retries + 1 attempts; default backoff.
                "retry policy",
                with_action(RouteActionProto {
                    retry_policy: Some(retry("5xx, Unavailable ,cancelled", Some(2), None)),
                    ..to_cluster_action("c1")
                }),
                Accepted(|rc| {
                    retry_of(rc).is_some_and(|p| {
                        p.max_attempts == 3
                            && p.retry_on.contains(14)
                            && p.retry_on.contains(1)
                            && !p.retry_on.contains(13)
                            && p.base_interval == Duration::from_millis(25)
                            && p.max_interval == Duration::from_millis(250)
                    })
                }),
            ),
            (
                // A44: no supported condition: no retry policy at all.
                "retry_on without grpc codes",
                with_action(RouteActionProto {
                    retry_policy: Some(retry("5xx,reset", Some(2), None)),
                    ..to_cluster_action("c1")
                }),
                Accepted(|rc| retry_of(rc).is_none()),
            ),
            (
                // A6: maxAttempts above 5 is treated as 5.
                "num_retries capped",
                with_action(RouteActionProto {
                    retry_policy: Some(retry("unavailable", Some(10), None)),
                    ..to_cluster_action("c1")
                }),
                Accepted(|rc| retry_of(rc).is_some_and(|p| p.max_attempts == 5)),
            ),
            (
                "num_retries 0",
                with_action(RouteActionProto {
                    retry_policy: Some(retry("unavailable", Some(0), None)),
                    ..to_cluster_action("c1")
                }),
                Nack("route.retry_policy.num_retries: 0 must be >= 1"),
            ),
            (
                "backoff without base_interval",
                with_action(RouteActionProto {
                    retry_policy: Some(retry("unavailable", None, Some((None, Some(1))))),
                    ..to_cluster_action("c1")
                }),
                Nack("route.retry_policy.retry_back_off.base_interval: missing"),
            ),
            (
                "backoff base 0",
                with_action(RouteActionProto {
                    retry_policy: Some(retry("unavailable", None, Some((Some(0), None)))),
                    ..to_cluster_action("c1")
                }),
                Nack("route.retry_policy.retry_back_off.base_interval: must be > 0"),
            ),
            (
                "backoff base, max defaults to 10x",
                with_action(RouteActionProto {
                    retry_policy: Some(retry("unavailable", None, Some((Some(100), None)))),
                    ..to_cluster_action("c1")
                }),
                Accepted(|rc| {
                    retry_of(rc).is_some_and(|p| {
                        p.max_attempts == 2 && p.max_interval == Duration::from_secs(1)
                    })
                }),
            ),
            (
                // A44: the virtual host's policy is kept for routes without one.
                "virtual host retry policy",
                pack(&RouteConfigurationProto {
                    virtual_hosts: vec![VhProto {
                        name: "vh".into(),
                        domains: vec!["*".into()],
                        routes: vec![route_with(
                            Some(prefix_match("/")),
                            Some(Action::Route(to_cluster_action("c1"))),
                        )],
                        retry_policy: Some(retry("internal", None, None)),
                        ..Default::default()
                    }],
                    ..rc_of(vec![])
                }),
                Accepted(|rc| {
                    rc.virtual_hosts[0]
                        .retry_policy
                        .as_ref()
                        .is_some_and(|p| p.retry_on.contains(13))
                        && retry_of(rc).is_none()
                }),
            ),
        ]
    }

    fn retry(
        on: &str,
        n: Option<u32>,
        backoff_ms: Option<(Option<u64>, Option<u64>)>,
    ) -> RetryPolicyProto {
        let ms = |v: u64| PbDuration {
            seconds: (v / 1000) as i64,
            nanos: ((v % 1000) * 1_000_000) as i32,
        };
        RetryPolicyProto {
            retry_on: on.into(),
            num_retries: n.map(|value| UInt32Value { value }),
            retry_back_off: backoff_ms.map(|(base, max)| RetryBackOff {
                base_interval: base.map(ms),
                max_interval: max.map(ms),
            }),
            ..Default::default()
        }
    }

    fn retry_of(rc: &RouteConfig) -> Option<&config::RetryPolicy> {
        match first(rc).map(|r| &r.action) {
            Some(RouteAction::Forward { retry_policy, .. }) => retry_policy.as_ref(),
            _ => None,
        }
    }

    fn per_route(rbac: Option<RbacProto>) -> Any {
        pack(&RbacPerRoute { rbac })
    }

    /// An RBAC config with one ALLOW policy "p1" on a header named `header`.
    fn rbac_on_header(header: &str) -> RbacProto {
        RbacProto {
            rules: Some(RulesProto {
                policies: [(
                    "p1".to_string(),
                    Policy {
                        permissions: vec![Permission {
                            rule: Some(permission::Rule::Header(HeaderMatcher {
                                name: header.into(),
                                header_match_specifier: Some(HeaderMatchSpecifier::PresentMatch(
                                    true,
                                )),
                                ..Default::default()
                            })),
                        }],
                        principals: vec![Principal {
                            identifier: Some(principal::Identifier::Any(true)),
                        }],
                        ..Default::default()
                    },
                )]
                .into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn unknown_any() -> Any {
        Any {
            type_url: "type.googleapis.com/acme.Override".into(),
            value: vec![],
        }
    }

    fn wrapped(config: Any, is_optional: bool) -> Any {
        pack(&FilterConfig {
            config: Some(config),
            is_optional,
            ..Default::default()
        })
    }

    /// A route config whose only route has these per-filter overrides.
    fn route_overrides(entries: Vec<(&str, Any)>) -> Any {
        let mut r = route_with(Some(prefix_match("/")), to_cluster("c1"));
        r.typed_per_filter_config = entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        any_of(vec![r])
    }

    /// A route config whose virtual host has these per-filter overrides.
    fn vh_overrides(entries: Vec<(&str, Any)>) -> Any {
        let mut rc = rc_of(vec![route_with(Some(prefix_match("/")), to_cluster("c1"))]);
        if let Some(vh) = rc.virtual_hosts.first_mut() {
            vh.typed_per_filter_config = entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
        }
        pack(&rc)
    }

    fn route_override<'a>(rc: &'a RouteConfig, name: &str) -> Option<&'a FilterOverride> {
        first(rc).and_then(|r| r.filter_overrides.get(name))
    }

    fn override_rows() -> Vec<(&'static str, Any, Expect<RouteConfig>)> {
        vec![
            (
                // A41 + A39: RBACPerRoute on a route, keyed by the filter instance name.
                "RBACPerRoute on a route",
                route_overrides(vec![("rbac", per_route(Some(rbac_on_header("x-a"))))]),
                Accepted(|rc| {
                    matches!(route_override(rc, "rbac"),
                        Some(FilterOverride::Rbac(Some(r))) if r.rules.as_ref().is_some_and(|x| x.policies.len() == 1))
                }),
            ),
            (
                // Envoy RBACPerRoute: rbac absent → RBAC disabled for the route.
                "empty RBACPerRoute disables",
                route_overrides(vec![("rbac", per_route(None))]),
                Accepted(|rc| {
                    matches!(route_override(rc, "rbac"), Some(FilterOverride::Rbac(None)))
                }),
            ),
            (
                // A39: on a virtual host, inside a FilterConfig wrapper.
                "RBACPerRoute on a virtual host in FilterConfig",
                vh_overrides(vec![("authz", wrapped(per_route(None), false))]),
                Accepted(|rc| {
                    matches!(
                        rc.virtual_hosts[0].filter_overrides.get("authz"),
                        Some(FilterOverride::Rbac(None))
                    ) && first(rc).is_some_and(|r| r.filter_overrides.is_empty())
                }),
            ),
            (
                // A39: an unknown, non-optional override type NACKs.
                "unknown override",
                route_overrides(vec![("acme", unknown_any())]),
                Nack(
                    "virtual_hosts[0].routes[0].typed_per_filter_config[\"acme\"]: unsupported filter override type \"type.googleapis.com/acme.Override\"",
                ),
            ),
            (
                // A39: FilterConfig{is_optional: false} around an unknown type NACKs too.
                "unknown override, FilterConfig not optional",
                vh_overrides(vec![("acme", wrapped(unknown_any(), false))]),
                Nack(
                    "virtual_hosts[0].typed_per_filter_config[\"acme\"]: unsupported filter override type",
                ),
            ),
            (
                // A39: FilterConfig{is_optional: true} lets an unknown type be ignored.
                "unknown optional override",
                route_overrides(vec![("acme", wrapped(unknown_any(), true))]),
                Ignored("optional unknown override", |rc| {
                    first(rc).is_some_and(|r| r.filter_overrides.is_empty())
                }),
            ),
            (
                // A41 via A39: an invalid override NACKs the RouteConfiguration, with its path.
                "invalid RBACPerRoute",
                route_overrides(vec![("rbac", per_route(Some(rbac_on_header("grpc-x"))))]),
                Nack(
                    "routes[0].typed_per_filter_config[\"rbac\"]: rbac.rules.policies[\"p1\"].permissions[0].header.name: header matchers on \"grpc-\"-prefixed headers are not allowed (gRFC A41)",
                ),
            ),
            (
                // grpc-go: a filter's own config type is not an override config.
                "RBAC (not per-route) as override",
                route_overrides(vec![("rbac", wrapped(pack(&RbacProto::default()), true))]),
                Nack("is not a per-route override type"),
            ),
        ]
    }

    #[test]
    fn rds_filter_override_table() {
        run(
            ResourceType::RouteConfiguration,
            override_rows(),
            |r| match r {
                Resource::RouteConfig(rc) => Some(rc),
                _ => None,
            },
        );
    }

    fn to_cluster_action(c: &str) -> RouteActionProto {
        RouteActionProto {
            cluster_specifier: Some(ClusterSpecifier::Cluster(c.into())),
            ..Default::default()
        }
    }

    #[test]
    fn rds_validation_table() {
        run(ResourceType::RouteConfiguration, rows(), |r| match r {
            Resource::RouteConfig(rc) => Some(rc),
            _ => None,
        });
    }

    fn hashing(policies: Vec<HashPolicyProto>) -> Any {
        let mut ra = to_cluster_action("c1");
        ra.hash_policy = policies;
        with_action(ra)
    }

    fn header_policy(name: &str, rewrite: Option<(&str, &str)>, terminal: bool) -> HashPolicyProto {
        use xds_proto::envoy::envoy::config::route::v3::route_action::hash_policy::Header;
        use xds_proto::envoy::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
        HashPolicyProto {
            terminal,
            policy_specifier: Some(PolicySpecifier::Header(Header {
                header_name: name.into(),
                regex_rewrite: rewrite.map(|(p, sub)| RegexMatchAndSubstitute {
                    pattern: Some(regex(p)),
                    substitution: sub.into(),
                }),
            })),
        }
    }

    fn filter_state(key: &str) -> HashPolicyProto {
        use xds_proto::envoy::envoy::config::route::v3::route_action::hash_policy::FilterState;
        HashPolicyProto {
            terminal: false,
            policy_specifier: Some(PolicySpecifier::FilterState(FilterState {
                key: key.into(),
            })),
        }
    }

    fn hash_policies(rc: &RouteConfig) -> &[config::HashPolicy] {
        match first(rc).map(|r| &r.action) {
            Some(RouteAction::Forward { hash_policy, .. }) => hash_policy,
            _ => &[],
        }
    }

    fn hash_policy_rows() -> Vec<(&'static str, Any, Expect<RouteConfig>)> {
        use xds_proto::envoy::envoy::config::route::v3::route_action::hash_policy::{
            ConnectionProperties, QueryParameter,
        };
        vec![
            (
                // A42: a header policy; the name is lower-cased; terminal is kept.
                "header",
                hashing(vec![header_policy("X-User", None, true)]),
                Accepted(|rc| {
                    hash_policies(rc)
                        == [config::HashPolicy {
                            kind: HashPolicyKind::Header {
                                name: "x-user".into(),
                                rewrite: None,
                            },
                            terminal: true,
                        }]
                }),
            ),
            (
                // A42: regex_rewrite; Envoy's \\1 becomes ${1}.
                "header with regex_rewrite",
                hashing(vec![header_policy(
                    "x-user",
                    Some(("^(\\w+)-.*$", "\\1")),
                    false,
                )]),
                Accepted(|rc| {
                    matches!(hash_policies(rc).first(), Some(config::HashPolicy {
                        kind: HashPolicyKind::Header { rewrite: Some((re, sub)), .. },
                        ..
                    }) if re.replace_all("alice-1", sub.as_str()) == "alice")
                }),
            ),
            (
                // A42: an invalid rewrite regex NACKs with its path.
                "header with invalid regex_rewrite",
                hashing(vec![header_policy("x-user", Some(("(", "x")), false)]),
                Nack("route.hash_policy[0].header.regex_rewrite.pattern: invalid regex"),
            ),
            (
                // A42: filter_state io.grpc.channel_id is supported.
                "channel id",
                hashing(vec![filter_state("io.grpc.channel_id")]),
                Accepted(|rc| {
                    hash_policies(rc).first().map(|p| &p.kind) == Some(&HashPolicyKind::ChannelId)
                }),
            ),
            (
                // A42: other filter_state keys, connection_properties and query_parameter
                // yield no hash (kept, as their terminal counts), never NACK.
                "unsupported kinds are ignored",
                hashing(vec![
                    filter_state("other.key"),
                    HashPolicyProto {
                        terminal: true,
                        policy_specifier: Some(PolicySpecifier::ConnectionProperties(
                            ConnectionProperties { source_ip: true },
                        )),
                    },
                    HashPolicyProto {
                        terminal: false,
                        policy_specifier: Some(PolicySpecifier::QueryParameter(QueryParameter {
                            name: "q".into(),
                        })),
                    },
                ]),
                Accepted(|rc| {
                    hash_policies(rc).len() == 3
                        && hash_policies(rc)
                            .iter()
                            .all(|p| p.kind == HashPolicyKind::Ignored)
                        && hash_policies(rc).get(1).is_some_and(|p| p.terminal)
                }),
            ),
        ]
    }

    #[test]
    fn rds_hash_policy_table() {
        run(
            ResourceType::RouteConfiguration,
            hash_policy_rows(),
            |r| match r {
                Resource::RouteConfig(rc) => Some(rc),
                _ => None,
            },
        );
    }

    #[test]
    fn envoy_substitution_syntax() {
        assert_eq!(envoy_substitution("\\1-\\2"), "${1}-${2}");
        assert_eq!(envoy_substitution("$x\\\\y\\z"), "$$x\\y\\z");
    }
}
