//! A human-readable summary of a [`Snapshot`]: what `mesh-control validate` prints.

use std::fmt::Write;

use xds_proto::any::unpack;
use xds_proto::envoy::envoy::config::cluster::v3::Cluster;
use xds_proto::envoy::envoy::config::core::v3::{TransportSocket, transport_socket};
use xds_proto::envoy::envoy::config::endpoint::v3::ClusterLoadAssignment;
use xds_proto::envoy::envoy::config::listener::v3::{Listener, filter};
use xds_proto::envoy::envoy::config::rbac::v3::Rbac as RbacRules;
use xds_proto::envoy::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use xds_proto::envoy::envoy::extensions::filters::http::rbac::v3::{Rbac, RbacPerRoute};
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier, http_filter,
};
use xds_proto::envoy::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, UpstreamTlsContext, common_tls_context::ValidationContextType,
};
use xds_proto::envoy::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use xds_proto::type_url;

use crate::inbound::INBOUND_LISTENER_PREFIX;
use crate::model::MeshConfig;
use crate::rbac::RBAC_FILTER_NAME;
use crate::translate::Snapshot;

/// One line per service port: its mTLS mode and the SPIFFE ID its endpoints present,
/// `greeter.default:8080: mtls STRICT, identity spiffe://cluster.local/ns/default/sa/greeter`.
pub fn describe_services(config: &MeshConfig) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "services ({}), trust domain {}:",
        config.services.len(),
        config.trust_domain
    );
    for service in &config.services {
        let _ = writeln!(
            out,
            "  {}:{}: mtls {}, identity {}",
            service.name,
            service.port,
            service.mtls,
            config.spiffe_id(service)
        );
    }
    out
}

/// Lists the client listeners, the inbound (server) listeners with their filter chains
/// (plaintext or mTLS) and RBAC policy names, routes (match → clusters), clusters with their
/// endpoint counts and, for mTLS, the identity they expect.
pub fn describe(snapshot: &Snapshot) -> String {
    let mut out = String::new();
    let (inbound, client): (Vec<_>, Vec<_>) = snapshot
        .of_type(type_url::LISTENER)
        .iter()
        .partition(|(name, _)| name.starts_with(INBOUND_LISTENER_PREFIX));
    let _ = writeln!(out, "listeners ({}):", client.len());
    for (name, _) in client {
        let _ = writeln!(out, "  {name}");
    }
    let _ = writeln!(out, "inbound listeners ({}):", inbound.len());
    for (name, any) in inbound {
        let _ = writeln!(out, "  {name}");
        if let Ok(listener) = unpack::<Listener>(any) {
            describe_inbound(&mut out, &listener);
        }
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
        let mtls = snapshot
            .get(type_url::CLUSTER, name)
            .and_then(|any| unpack::<Cluster>(any).ok())
            .and_then(|c| c.transport_socket)
            .map(|ts| format!(", {}", upstream_summary(&ts)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {name}: {total} endpoint(s) in {localities} locality group(s){mtls}"
        );
    }
    out
}

/// The inline route name, the RBAC rules and the per-route overrides of each filter chain.
fn describe_inbound(out: &mut String, listener: &Listener) {
    for chain in &listener.filter_chains {
        let manager = chain.filters.iter().find_map(|f| match &f.config_type {
            Some(filter::ConfigType::TypedConfig(any)) => unpack::<HttpConnectionManager>(any).ok(),
            _ => None,
        });
        let Some(manager) = manager else {
            continue;
        };
        let rbac = manager
            .http_filters
            .iter()
            .find_map(|f| match &f.config_type {
                Some(http_filter::ConfigType::TypedConfig(any)) if f.name == RBAC_FILTER_NAME => {
                    unpack::<Rbac>(any).ok()
                }
                _ => None,
            });
        let route_name = match &manager.route_specifier {
            Some(RouteSpecifier::RouteConfig(rc)) => rc.name.as_str(),
            _ => "(not inline)",
        };
        let transport = match &chain.transport_socket {
            None => "plaintext".to_string(),
            Some(ts) => downstream_summary(ts),
        };
        let protocol = chain
            .filter_chain_match
            .as_ref()
            .map(|m| m.transport_protocol.as_str())
            .filter(|p| !p.is_empty())
            .map(|p| format!(" (transport_protocol {p})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    chain {}{protocol}: {transport}, routes {route_name}",
            chain.name
        );
        match rbac {
            None => {
                let _ = writeln!(out, "    rbac: none (every request allowed)");
            }
            Some(rbac) => {
                let _ = writeln!(out, "    rbac: {}", rules_summary(rbac.rules.as_ref()));
                if let Some(shadow) = rbac.shadow_rules.as_ref() {
                    let _ = writeln!(out, "    rbac shadow: {}", rules_summary(Some(shadow)));
                }
            }
        }
        let Some(RouteSpecifier::RouteConfig(rc)) = &manager.route_specifier else {
            continue;
        };
        for r in rc.virtual_hosts.iter().flat_map(|vh| &vh.routes) {
            let Some(any) = r.typed_per_filter_config.get(RBAC_FILTER_NAME) else {
                continue;
            };
            let summary = match unpack::<RbacPerRoute>(any) {
                Ok(RbacPerRoute { rbac: None }) => "disabled".to_string(),
                Ok(RbacPerRoute { rbac: Some(rbac) }) => rules_summary(rbac.rules.as_ref()),
                Err(e) => format!("(unreadable: {e})"),
            };
            let _ = writeln!(out, "    rbac for {}: {summary}", route_match(r));
        }
    }
}

/// `allow [a, b]`: the action and the sorted policy names.
fn rules_summary(rules: Option<&RbacRules>) -> String {
    use xds_proto::envoy::envoy::config::rbac::v3::rbac::Action;
    let Some(rules) = rules else {
        return "no rules".to_string();
    };
    let action = match Action::try_from(rules.action) {
        Ok(Action::Allow) => "allow",
        Ok(Action::Deny) => "deny",
        Ok(Action::Log) => "log",
        Err(_) => "(unknown action)",
    };
    let mut names: Vec<&str> = rules.policies.keys().map(String::as_str).collect();
    names.sort_unstable();
    format!("{action} [{}]", names.join(", "))
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

/// `mtls, expects spiffe://…`: a cluster's TLS context and its SAN matchers.
// match_subject_alt_names is deprecated in Envoy; it is what the translation writes.
#[allow(deprecated)]
fn upstream_summary(ts: &TransportSocket) -> String {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        return format!("transport socket {} (no config)", ts.name);
    };
    let Ok(tls) = unpack::<UpstreamTlsContext>(any) else {
        return format!("transport socket {} ({})", ts.name, any.type_url);
    };
    let sans: Vec<String> = match tls
        .common_tls_context
        .and_then(|c| c.validation_context_type)
    {
        Some(ValidationContextType::CombinedValidationContext(c)) => c
            .default_validation_context
            .map(|v| v.match_subject_alt_names)
            .unwrap_or_default(),
        Some(ValidationContextType::ValidationContext(v)) => v.match_subject_alt_names,
        _ => Vec::new(),
    }
    .iter()
    .map(|m| match &m.match_pattern {
        Some(MatchPattern::Exact(s)) => s.clone(),
        other => format!("{other:?}"),
    })
    .collect();
    if sans.is_empty() {
        "mtls, any identity".to_string()
    } else {
        format!("mtls, expects {}", sans.join(" or "))
    }
}

/// `mtls (client certificate required)`: a filter chain's TLS context.
fn downstream_summary(ts: &TransportSocket) -> String {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &ts.config_type else {
        return format!("transport socket {} (no config)", ts.name);
    };
    match unpack::<DownstreamTlsContext>(any) {
        Ok(tls) if tls.require_client_certificate.is_some_and(|b| b.value) => {
            "mtls (client certificate required)".to_string()
        }
        Ok(_) => "tls (no client certificate)".to_string(),
        Err(_) => format!("transport socket {} ({})", ts.name, any.type_url),
    }
}
