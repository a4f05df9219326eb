//! A human-readable summary of a [`Snapshot`]: what `mesh-control validate` prints.

use std::fmt::Write;

use xds_proto::any::unpack;
use xds_proto::envoy::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_proto::envoy::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use xds_proto::type_url;

use crate::translate::Snapshot;

/// Lists the listeners, routes (match → clusters), clusters and endpoint counts.
pub fn describe(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let listeners = snapshot.of_type(type_url::LISTENER);
    let _ = writeln!(out, "listeners ({}):", listeners.len());
    for (name, _) in listeners {
        let _ = writeln!(out, "  {name}");
    }
    let routes = snapshot.of_type(type_url::ROUTE_CONFIGURATION);
    let _ = writeln!(out, "route configurations ({}):", routes.len());
    for (name, any) in routes {
        let _ = writeln!(out, "  {name}");
        let Ok(rc) = unpack::<RouteConfiguration>(any) else {
            continue;
        };
        for vh in &rc.virtual_hosts {
            let _ = writeln!(out, "    domains: {}", vh.domains.join(", "));
            for r in &vh.routes {
                let _ = writeln!(out, "    {} -> {}", route_match(r), route_target(r));
            }
        }
    }
    let clusters = snapshot.of_type(type_url::CLUSTER);
    let _ = writeln!(out, "clusters ({}):", clusters.len());
    for (name, _) in clusters {
        let (total, localities) = snapshot
            .get(type_url::CLUSTER_LOAD_ASSIGNMENT, name)
            .and_then(|any| unpack::<ClusterLoadAssignment>(any).ok())
            .map(|cla| {
                let total: usize = cla.endpoints.iter().map(|l| l.lb_endpoints.len()).sum();
                (total, cla.endpoints.len())
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {name}: {total} endpoint(s) in {localities} locality group(s)"
        );
    }
    out
}

fn route_match(r: &xds_proto::envoy::envoy::config::route::v3::Route) -> String {
    use xds_proto::envoy::envoy::config::route::v3::route_match::PathSpecifier;
    let Some(m) = &r.r#match else {
        return "(no match)".to_string();
    };
    let mut text = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => format!("prefix {p}"),
        Some(PathSpecifier::Path(p)) => format!("path {p}"),
        Some(PathSpecifier::SafeRegex(re)) => format!("regex {}", re.regex),
        _ => "(other path match)".to_string(),
    };
    for h in &m.headers {
        let _ = write!(text, " [header {}]", h.name);
    }
    text
}

fn route_target(r: &xds_proto::envoy::envoy::config::route::v3::Route) -> String {
    let Some(route::Action::Route(action)) = &r.action else {
        return "(non-forwarding)".to_string();
    };
    let mut text = match &action.cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(c)) => c.clone(),
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| {
                let weight = c.weight.as_ref().map(|w| w.value).unwrap_or_default();
                format!("{} ({weight})", c.name)
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "(other)".to_string(),
    };
    if let Some(d) = action
        .max_stream_duration
        .as_ref()
        .and_then(|m| m.max_stream_duration.as_ref())
    {
        let _ = write!(text, " timeout {}.{:03}s", d.seconds, d.nanos / 1_000_000);
    }
    text
}
