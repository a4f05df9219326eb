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

use std::collections::HashSet;

use xds_proto::envoy::envoy::config::route::v3::{
    Route as RouteProto, RouteAction as RouteActionProto, route::Action,
    route_action::ClusterSpecifier, route_match::PathSpecifier,
};
use xds_proto::envoy::envoy::r#type::v3::fractional_percent::DenominatorType;

use super::matcher;
use crate::config::{self, PathMatcher, Route, RouteAction, RouteMatch, VirtualHost};

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
    Ok(Some(Route { matcher, action }))
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
    Ok(Some(RouteAction::Forward { clusters, timeout }))
}
