//! LDS: validation of client-side `Listener` resources into [`config::Listener`]
//! (gRFC A27 api_listener, A39 HTTP filters, A31 max_stream_duration, A41 HCM fields).
//!
//! The Listener must have an `api_listener` holding an `HttpConnectionManager`. Its routes
//! come from `rds` over ADS (config source `ads` or `self`) or inline `route_config`
//! (validated as RDS). HTTP filters (A39): names non-empty and unique; unknown types NACK
//! unless `is_optional` (then dropped); the router must be present and last. Server-side
//! listeners (no `api_listener`) are mesh-server's concern and are NACKed here.

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message;
use xds_proto::envoy::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager as HcmProto, HttpFilter as HttpFilterProto,
    http_connection_manager::RouteSpecifier, http_filter::ConfigType,
};
use xds_proto::protobuf::Any;
use xds_proto::type_url;

use crate::config::{self, HttpConnectionManager, HttpFilter, RouteSource};

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
    let http = http_connection_manager(&hcm).map_err(|e| format!("api_listener.{e}"))?;
    Ok(config::Listener { name: l.name, http })
}

fn http_connection_manager(hcm: &HcmProto) -> Result<HttpConnectionManager, String> {
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
fn filter_type_url(any: &Any) -> Result<String, String> {
    if any.type_url == type_url::UDPA_TYPED_STRUCT || any.type_url == type_url::XDS_TYPED_STRUCT {
        let ts = TypedStruct::decode(any.value.as_slice())
            .map_err(|e| format!("cannot decode TypedStruct: {e}"))?;
        return Ok(ts.type_url);
    }
    Ok(any.type_url.clone())
}

/// Filter types this client implements (A39). Only the router for now.
fn is_terminal_known(type_url: &str) -> Option<bool> {
    (type_url == type_url::ROUTER).then_some(true)
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
        let ty = match &f.config_type {
            Some(ConfigType::TypedConfig(any)) => filter_type_url(any).map_err(at)?,
            _ => String::new(),
        };
        let Some(terminal) = is_terminal_known(&ty) else {
            if f.is_optional {
                continue;
            }
            return Err(at(format!("unsupported filter type {ty:?}")));
        };
        out.push((
            HttpFilter {
                name: f.name.clone(),
                type_url: ty,
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
