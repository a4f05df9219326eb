//! LDS: validation of client-side `Listener` resources into [`config::Listener`]
//! (gRFC A27 api_listener, A39 HTTP filters, A31 max_stream_duration, A41 HCM fields).
//!
//! The Listener must have an `api_listener` holding an `HttpConnectionManager`. Its routes
//! come from `rds` over ADS (config source `ads` or `self`) or inline `route_config`
//! (validated as RDS). HTTP filters (A39): names non-empty and unique; unknown types NACK
//! unless `is_optional` (then dropped); the router must be present and last. The RBAC filter
//! (A41) is validated into [`config::HttpFilterConfig::Rbac`]; it runs on servers only, so a
//! client Listener NACKs a non-optional one and drops an optional one (as grpc-go and C-core
//! do). Server-side listeners (no `api_listener`) are mesh-server's concern and are NACKed
//! here.

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message;
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager as HcmProto, HttpFilter as HttpFilterProto,
    http_connection_manager::RouteSpecifier, http_filter::ConfigType,
};
use xds_proto::protobuf::Any;
use xds_proto::type_url;

use crate::config::{self, HttpConnectionManager, HttpFilter, HttpFilterConfig, RouteSource};

/// The protobuf message validated here.
pub use xds_proto::envoy::envoy::config::listener::v3::Listener as ListenerProto;

/// The parts of `udpa.type.v1.TypedStruct` / `xds.type.v3.TypedStruct` we read: both have
/// the real type URL as field 1 (the Struct value, field 2, is skipped on decode).
#[derive(Clone, PartialEq, prost::Message)]
struct TypedStruct {
    #[prost(string, tag = "1")]
    type_url: String,
}

/// Validates a client-side Listener. Errors are field paths relative to the resource.
pub fn validate(l: ListenerProto) -> Result<config::Listener, String> {
    let api = l
        .api_listener
        .as_ref()
        .ok_or("api_listener: missing (server-side listeners are not handled here)")?;
    let any = api
        .api_listener
        .as_ref()
        .ok_or("api_listener.api_listener: missing")?;
    if any.type_url != type_url::HTTP_CONNECTION_MANAGER {
        return Err(format!(
            "api_listener.api_listener: unexpected type {:?}, want HttpConnectionManager",
            any.type_url
        ));
    }
    let hcm = HcmProto::decode(any.value.as_slice())
        .map_err(|e| format!("api_listener.api_listener: cannot decode: {e}"))?;
    let mut http = http_connection_manager(&hcm).map_err(|e| format!("api_listener.{e}"))?;
    client_side_filters(&hcm, &mut http).map_err(|e| format!("api_listener.{e}"))?;
    Ok(config::Listener { name: l.name, http })
}

/// A39: a filter that does not run on this side NACKs the Listener unless optional (then it
/// is dropped), as in grpc-go and C-core. RBAC is server-side only (A41), fault injection
/// client-side only (A33).
fn side_filters(
    hcm: &HcmProto,
    http: &mut HttpConnectionManager,
    foreign: &str,
    why: &str,
) -> Result<(), String> {
    for (i, f) in hcm.http_filters.iter().enumerate() {
        let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
            continue;
        };
        if filter_type_url(any).as_deref() != Ok(foreign) {
            continue;
        }
        if !f.is_optional {
            return Err(format!("http_filters[{i}] ({:?}): {why}", f.name));
        }
        http.http_filters.retain(|kept| kept.name != f.name);
    }
    Ok(())
}

fn client_side_filters(hcm: &HcmProto, http: &mut HttpConnectionManager) -> Result<(), String> {
    side_filters(
        hcm,
        http,
        type_url::RBAC,
        "the RBAC filter is not supported on clients (gRFC A41)",
    )
}

/// The server-side counterpart of the client check: fault injection runs on clients only.
pub(crate) fn server_side_filters(
    hcm: &HcmProto,
    http: &mut HttpConnectionManager,
) -> Result<(), String> {
    side_filters(
        hcm,
        http,
        type_url::FAULT,
        "the fault injection filter is not supported on servers (gRFC A33)",
    )
}

pub(crate) fn http_connection_manager(hcm: &HcmProto) -> Result<HttpConnectionManager, String> {
    // A41: both must be unset on the client, else NACK.
    if hcm.xff_num_trusted_hops != 0 {
        return Err("xff_num_trusted_hops: must be unset or zero".into());
    }
    if !hcm.original_ip_detection_extensions.is_empty() {
        return Err("original_ip_detection_extensions: must be empty".into());
    }
    let route_source = match &hcm.route_specifier {
        Some(RouteSpecifier::Rds(rds)) => {
            // A27: the RouteConfiguration must come over the same ADS stream.
            if !super::is_ads_or_self(rds.config_source.as_ref()) {
                return Err("rds.config_source: must be ads or self".into());
            }
            if rds.route_config_name.is_empty() {
                return Err("rds.route_config_name: empty".into());
            }
            RouteSource::Rds(rds.route_config_name.clone())
        }
        Some(RouteSpecifier::RouteConfig(rc)) => RouteSource::Inline(Arc::new(
            super::route::validate(rc).map_err(|e| format!("route_config.{e}"))?,
        )),
        Some(RouteSpecifier::ScopedRoutes(_)) => {
            return Err("scoped_routes: unsupported route specifier".into());
        }
        None => return Err("route_specifier: missing (want rds or route_config)".into()),
    };
    // A31: the default timeout of every call; 0 means no limit.
    let max_stream_duration = match hcm
        .common_http_protocol_options
        .as_ref()
        .and_then(|o| o.max_stream_duration.as_ref())
    {
        Some(d) => Some(
            super::duration(d)
                .map_err(|e| format!("common_http_protocol_options.max_stream_duration: {e}"))?,
        ),
        None => None,
    }
    .filter(|d| !d.is_zero());
    Ok(HttpConnectionManager {
        route_source,
        http_filters: http_filters(&hcm.http_filters)?,
        max_stream_duration,
    })
}

/// The real type URL of a filter config, looking inside TypedStruct (A39).
pub(crate) fn filter_type_url(any: &Any) -> Result<String, String> {
    if any.type_url == type_url::UDPA_TYPED_STRUCT || any.type_url == type_url::XDS_TYPED_STRUCT {
        let ts = TypedStruct::decode(any.value.as_slice())
            .map_err(|e| format!("cannot decode TypedStruct: {e}"))?;
        return Ok(ts.type_url);
    }
    Ok(any.type_url.clone())
}

/// Filter types we implement (A39), and whether each is terminal: the router, RBAC
/// (A41, server side only; see [`validate`]) and fault injection (A33, client side).
fn is_terminal_known(type_url: &str) -> Option<bool> {
    match type_url {
        type_url::ROUTER => Some(true),
        type_url::RBAC | type_url::FAULT => Some(false),
        _ => None,
    }
}

/// The validated config of a known filter. RBAC must be packed directly: its rules cannot be
/// read from a TypedStruct (gRPC NACKs that too).
fn filter_config(ty: &str, any: Option<&Any>) -> Result<HttpFilterConfig, String> {
    if ty == type_url::RBAC {
        let any = any
            .filter(|a| a.type_url == type_url::RBAC)
            .ok_or("RBAC config must be packed directly, not in a TypedStruct")?;
        let proto = super::rbac::RbacProto::decode(any.value.as_slice())
            .map_err(|e| format!("cannot decode RBAC: {e}"))?;
        return Ok(HttpFilterConfig::Rbac(Arc::new(
            super::rbac::validate_rbac(&proto)?,
        )));
    }
    if ty == type_url::FAULT {
        let any = any.ok_or("HTTPFault: missing typed_config")?;
        return Ok(HttpFilterConfig::Fault(Arc::new(
            super::fault::validate_any(any)?,
        )));
    }
    Ok(HttpFilterConfig::Router)
}

fn http_filters(filters: &[HttpFilterProto]) -> Result<Vec<HttpFilter>, String> {
    let mut seen = HashSet::new();
    let mut out: Vec<(HttpFilter, bool)> = Vec::with_capacity(filters.len());
    for (i, f) in filters.iter().enumerate() {
        let at = |e: String| format!("http_filters[{i}] ({:?}): {e}", f.name);
        if f.name.is_empty() {
            return Err(format!("http_filters[{i}].name: empty"));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(at("duplicate filter name".into()));
        }
        // A config_discovery (ECDS) filter has no typed_config: it is unknown to us.
        let any = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => Some(any),
            _ => None,
        };
        let ty = any
            .map(filter_type_url)
            .transpose()
            .map_err(at)?
            .unwrap_or_default();
        let Some(terminal) = is_terminal_known(&ty) else {
            if f.is_optional {
                continue;
            }
            return Err(at(format!("unsupported filter type {ty:?}")));
        };
        let config = filter_config(&ty, any).map_err(at)?;
        out.push((
            HttpFilter {
                name: f.name.clone(),
                type_url: ty,
                config,
            },
            terminal,
        ));
    }
    // A39: a terminal filter must be last, and the last must be terminal.
    let Some((last, last_terminal)) = out.last() else {
        return Err("http_filters: empty (the router filter is required)".into());
    };
    if let Some((f, _)) = out.iter().rev().skip(1).find(|(_, terminal)| *terminal) {
        return Err(format!(
            "http_filters: terminal filter {:?} is not the last filter",
            f.name
        ));
    }
    if !last_terminal {
        return Err(format!(
            "http_filters: last filter {:?} is not a terminal filter (the router must be last)",
            last.name
        ));
    }
    Ok(out.into_iter().map(|(f, _)| f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Listener;
    use crate::xds::resource::testing::{Expect, Expect::*, run};
    use crate::xds::resource::{Resource, ResourceType};
    use std::time::Duration;
    use xds_proto::any::pack;
    use xds_proto::envoy::envoy::config::core::v3::{
        AggregatedConfigSource, ApiConfigSource, ConfigSource, HttpProtocolOptions,
        config_source::ConfigSourceSpecifier,
    };
    use xds_proto::envoy::envoy::config::listener::v3::ApiListener;
    use xds_proto::envoy::envoy::config::rbac::v3::{
        Permission, Policy, Principal, Rbac as RulesProto, permission, principal,
    };
    use xds_proto::envoy::envoy::config::route::v3::RouteConfiguration;
    use xds_proto::envoy::envoy::extensions::filters::http::rbac::v3::Rbac as RbacProto;
    use xds_proto::envoy::envoy::extensions::filters::http::router::v3::Router;
    use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
        Rds, ScopedRoutes,
    };
    use xds_proto::protobuf::Duration as PbDuration;

    fn ads() -> Option<ConfigSource> {
        Some(ConfigSource {
            config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
            ..Default::default()
        })
    }

    fn filter(name: &str, any: Any, optional: bool) -> HttpFilterProto {
        HttpFilterProto {
            name: name.into(),
            is_optional: optional,
            config_type: Some(ConfigType::TypedConfig(any)),
            ..Default::default()
        }
    }

    fn router() -> HttpFilterProto {
        filter("router", pack(&Router::default()), false)
    }

    fn unknown(name: &str, optional: bool) -> HttpFilterProto {
        filter(
            name,
            Any {
                type_url: "type.googleapis.com/acme.Unknown".into(),
                value: vec![],
            },
            optional,
        )
    }

    fn hcm() -> HcmProto {
        HcmProto {
            route_specifier: Some(RouteSpecifier::Rds(Rds {
                config_source: ads(),
                route_config_name: "r1".into(),
            })),
            http_filters: vec![router()],
            ..Default::default()
        }
    }

    fn listener_any(api: Option<Any>) -> Any {
        pack(&ListenerProto {
            name: "L1".into(),
            api_listener: Some(ApiListener { api_listener: api }),
            ..Default::default()
        })
    }

    fn with(f: impl FnOnce(&mut HcmProto)) -> Any {
        let mut h = hcm();
        f(&mut h);
        listener_any(Some(pack(&h)))
    }

    /// `TypedStruct { type_url: <url> }`, encoded by hand (field 1, length-delimited).
    fn typed_struct(wrapper: &str, url: &str) -> Any {
        Any {
            type_url: wrapper.into(),
            value: TypedStruct {
                type_url: url.into(),
            }
            .encode_to_vec(),
        }
    }

    fn names(l: &Listener) -> Vec<&str> {
        l.http
            .http_filters
            .iter()
            .map(|f| f.name.as_str())
            .collect()
    }

    fn rows() -> Vec<(&'static str, Any, Expect<Listener>)> {
        vec![
            (
                // A27: api_listener → HCM with rds over ADS, router last.
                "rds over ads",
                with(|_| {}),
                Accepted(|l| {
                    l.name == "L1"
                        && l.http.route_source == RouteSource::Rds("r1".into())
                        && l.http.http_filters
                            == [HttpFilter {
                                name: "router".into(),
                                type_url: type_url::ROUTER.into(),
                                config: HttpFilterConfig::Router,
                            }]
                        && l.http.max_stream_duration.is_none()
                }),
            ),
            (
                // A27: rds config_source `self` is accepted too.
                "rds over self",
                with(|h| {
                    if let Some(RouteSpecifier::Rds(r)) = &mut h.route_specifier {
                        r.config_source = Some(ConfigSource {
                            config_source_specifier: Some(ConfigSourceSpecifier::Self_(
                                Default::default(),
                            )),
                            ..Default::default()
                        });
                    }
                }),
                Accepted(|l| matches!(l.http.route_source, RouteSource::Rds(_))),
            ),
            (
                // A27: a client Listener must have api_listener.
                "api_listener missing",
                pack(&ListenerProto {
                    name: "L1".into(),
                    ..Default::default()
                }),
                Nack("listener \"L1\": api_listener: missing"),
            ),
            (
                // A27: api_listener must hold an HttpConnectionManager.
                "api_listener wrong type",
                listener_any(Some(pack(&Router::default()))),
                Nack("api_listener.api_listener: unexpected type"),
            ),
            (
                // A27: the RDS config source must be ads or self.
                "rds config_source not ads",
                with(|h| {
                    if let Some(RouteSpecifier::Rds(r)) = &mut h.route_specifier {
                        r.config_source = Some(ConfigSource {
                            config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                                ApiConfigSource::default(),
                            )),
                            ..Default::default()
                        });
                    }
                }),
                Nack("api_listener.rds.config_source: must be ads or self"),
            ),
            (
                // grpc-go: an empty route_config_name NACKs.
                "rds empty name",
                with(|h| {
                    if let Some(RouteSpecifier::Rds(r)) = &mut h.route_specifier {
                        r.route_config_name.clear();
                    }
                }),
                Nack("api_listener.rds.route_config_name: empty"),
            ),
            (
                // A27: inline route_config is validated as RDS.
                "inline route_config",
                with(|h| {
                    h.route_specifier = Some(RouteSpecifier::RouteConfig(RouteConfiguration {
                        name: "inline".into(),
                        ..Default::default()
                    }))
                }),
                Accepted(
                    |l| matches!(&l.http.route_source, RouteSource::Inline(rc) if rc.name == "inline"),
                ),
            ),
            (
                // A27: an invalid inline route_config NACKs the Listener, with its path.
                "invalid inline route_config",
                with(|h| {
                    let mut rc = RouteConfiguration::default();
                    rc.virtual_hosts.push(Default::default());
                    rc.virtual_hosts[0].routes.push(Default::default());
                    h.route_specifier = Some(RouteSpecifier::RouteConfig(rc));
                }),
                Nack("api_listener.route_config.virtual_hosts[0].routes[0].match: missing"),
            ),
            (
                // A27: rds or route_config is required.
                "no route specifier",
                with(|h| h.route_specifier = None),
                Nack("api_listener.route_specifier: missing"),
            ),
            (
                // A27: scoped_routes is not supported.
                "scoped routes",
                with(|h| {
                    h.route_specifier = Some(RouteSpecifier::ScopedRoutes(ScopedRoutes::default()))
                }),
                Nack("api_listener.scoped_routes: unsupported route specifier"),
            ),
            (
                // A39: the router is required.
                "no filters",
                with(|h| h.http_filters.clear()),
                Nack("http_filters: empty"),
            ),
            (
                // A39: the last filter must be terminal.
                "router missing",
                with(|h| {
                    h.http_filters = vec![
                        unknown("opt", true),
                        filter(
                            "x",
                            typed_struct(
                                type_url::XDS_TYPED_STRUCT,
                                "type.googleapis.com/acme.Other",
                            ),
                            true,
                        ),
                    ]
                }),
                Nack("http_filters: empty"),
            ),
            (
                // A39: a terminal filter must be last.
                "filter after router",
                with(|h| {
                    h.http_filters =
                        vec![router(), filter("router2", pack(&Router::default()), false)]
                }),
                Nack("http_filters: terminal filter \"router\" is not the last filter"),
            ),
            (
                // A39: unknown optional filters are ignored.
                "unknown optional filter",
                with(|h| h.http_filters.insert(0, unknown("opt", true))),
                Ignored("optional unknown filter", |l| names(l) == ["router"]),
            ),
            (
                // A39: unknown non-optional filters NACK.
                "unknown filter",
                with(|h| h.http_filters.insert(0, unknown("acme", false))),
                Nack(
                    "http_filters[0] (\"acme\"): unsupported filter type \"type.googleapis.com/acme.Unknown\"",
                ),
            ),
            (
                // A39: filter names are unique.
                "duplicate filter names",
                with(|h| h.http_filters.insert(0, unknown("router", true))),
                Nack("http_filters[1] (\"router\"): duplicate filter name"),
            ),
            (
                // A39: filter names are non-empty.
                "empty filter name",
                with(|h| h.http_filters[0].name.clear()),
                Nack("http_filters[0].name: empty"),
            ),
            (
                // A39: the type is read inside a udpa TypedStruct.
                "router in udpa TypedStruct",
                with(|h| {
                    h.http_filters = vec![filter(
                        "router",
                        typed_struct(type_url::UDPA_TYPED_STRUCT, type_url::ROUTER),
                        false,
                    )]
                }),
                Accepted(|l| l.http.http_filters[0].type_url == type_url::ROUTER),
            ),
            (
                // A39: an unknown type inside an xds TypedStruct is still unknown.
                "unknown in xds TypedStruct",
                with(|h| {
                    h.http_filters.insert(
                        0,
                        filter(
                            "ts",
                            typed_struct(
                                type_url::XDS_TYPED_STRUCT,
                                "type.googleapis.com/acme.Other",
                            ),
                            false,
                        ),
                    )
                }),
                Nack(
                    "http_filters[0] (\"ts\"): unsupported filter type \"type.googleapis.com/acme.Other\"",
                ),
            ),
            (
                // A31: common_http_protocol_options.max_stream_duration.
                "max_stream_duration",
                with(|h| {
                    h.common_http_protocol_options = Some(HttpProtocolOptions {
                        max_stream_duration: Some(PbDuration {
                            seconds: 3,
                            nanos: 0,
                        }),
                        ..Default::default()
                    })
                }),
                Accepted(|l| l.http.max_stream_duration == Some(Duration::from_secs(3))),
            ),
            (
                // A39/A41: RBAC is server-side only; non-optional on a client NACKs (grpc-go).
                "RBAC filter on a client",
                with(|h| {
                    h.http_filters
                        .insert(0, filter("rbac", pack(&RbacProto::default()), false))
                }),
                Nack(
                    "api_listener.http_filters[0] (\"rbac\"): the RBAC filter is not supported on clients (gRFC A41)",
                ),
            ),
            (
                // A39: an optional filter unsupported on clients is dropped.
                "optional RBAC filter on a client",
                with(|h| {
                    h.http_filters
                        .insert(0, filter("rbac", pack(&RbacProto::default()), true))
                }),
                Ignored("optional RBAC filter", |l| names(l) == ["router"]),
            ),
            (
                // A41: xff_num_trusted_hops must be zero.
                "xff_num_trusted_hops",
                with(|h| h.xff_num_trusted_hops = 1),
                Nack("api_listener.xff_num_trusted_hops: must be unset or zero"),
            ),
        ]
    }

    fn rbac_filter(rules: Option<RulesProto>) -> HttpFilterProto {
        filter(
            "rbac",
            pack(&RbacProto {
                rules,
                ..Default::default()
            }),
            false,
        )
    }

    fn allow_any(name: &str) -> RulesProto {
        RulesProto {
            policies: [(
                name.to_string(),
                Policy {
                    permissions: vec![Permission {
                        rule: Some(permission::Rule::Any(true)),
                    }],
                    principals: vec![Principal {
                        identifier: Some(principal::Identifier::Any(true)),
                    }],
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn hcm_with_rbac_and_router_carries_the_config() {
        // A39 + A41: [rbac, router] is valid HCM filter config (as a server listener has it).
        let h = HcmProto {
            http_filters: vec![rbac_filter(Some(allow_any("p1"))), router()],
            ..hcm()
        };
        let http = http_connection_manager(&h).unwrap();
        assert_eq!(names_of(&http), ["rbac", "router"]);
        match &http.http_filters[0].config {
            HttpFilterConfig::Rbac(r) => {
                let rules = r.rules.as_ref().unwrap();
                assert_eq!(rules.action, config::RbacAction::Allow);
                assert_eq!(rules.policies[0].0, "p1");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(http.http_filters[0].type_url, type_url::RBAC);
        assert_eq!(http.http_filters[1].config, HttpFilterConfig::Router);
    }

    #[test]
    fn invalid_rbac_filter_config_nacks_with_its_path() {
        // A39: a filter config validation failure NACKs the Listener.
        let mut rules = allow_any("p1");
        if let Some(p) = rules.policies.get_mut("p1") {
            p.condition = Some(Default::default());
        }
        let h = HcmProto {
            http_filters: vec![rbac_filter(Some(rules)), router()],
            ..hcm()
        };
        let err = http_connection_manager(&h).unwrap_err();
        assert_eq!(
            err,
            "http_filters[0] (\"rbac\"): rules.policies[\"p1\"].condition: CEL conditions are not supported (gRFC A41)"
        );
        // grpc-go: RBAC config inside a TypedStruct cannot be read → NACK.
        let h = HcmProto {
            http_filters: vec![
                filter(
                    "rbac",
                    typed_struct(type_url::XDS_TYPED_STRUCT, type_url::RBAC),
                    false,
                ),
                router(),
            ],
            ..hcm()
        };
        let err = http_connection_manager(&h).unwrap_err();
        assert!(err.contains("must be packed directly"), "{err}");
    }

    fn names_of(http: &HttpConnectionManager) -> Vec<&str> {
        http.http_filters.iter().map(|f| f.name.as_str()).collect()
    }

    #[test]
    fn lds_validation_table() {
        run(ResourceType::Listener, rows(), |r| match r {
            Resource::Listener(l) => Some(l),
            _ => None,
        });
    }
}
