//! Envoy resources in Envoy's own proto-JSON (or YAML) form, as written in Envoy's docs and
//! by `istioctl proxy-config -o json`: `{"@type": "type.googleapis.com/...", ...}`.
//!
//! Conversion goes through the descriptor set of the Envoy API that `envoy-types` ships
//! ([`xds_proto::ENVOY_DESCRIPTOR_SET`]), so every Envoy type, nested `Any`s included, is
//! understood without hand-written mappings.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use xds_proto::protobuf::Any;

use crate::error::ConfigError;

fn pool() -> Result<&'static DescriptorPool, ConfigError> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(xds_proto::ENVOY_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| ConfigError::Raw(format!("the Envoy descriptor set does not decode: {e}")))
}

/// Converts one resource in proto-JSON form (with `@type`) to `(name, Any)`. `field` names
/// it in errors (e.g. `resources[2]`).
pub fn resource_from_json(
    value: &serde_json::Value,
    field: &str,
) -> Result<(String, Any), ConfigError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ConfigError::invalid(field, "expected an object"))?;
    let type_url = obj
        .get("@type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| ConfigError::invalid(format!("{field}.@type"), "missing"))?;
    let full_name = type_url.rsplit('/').next().unwrap_or(type_url);
    let desc = pool()?.get_message_by_name(full_name).ok_or_else(|| {
        ConfigError::invalid(
            format!("{field}.@type"),
            format!("unknown type \"{type_url}\""),
        )
    })?;
    let mut body = obj.clone();
    body.remove("@type");
    let msg = DynamicMessage::deserialize(desc, serde_json::Value::Object(body))
        .map_err(|e| ConfigError::invalid(field, e.to_string()))?;
    let name_field = if full_name == "envoy.config.endpoint.v3.ClusterLoadAssignment" {
        "cluster_name"
    } else {
        "name"
    };
    let name = msg
        .get_field_by_name(name_field)
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ConfigError::invalid(format!("{field}.{name_field}"), "missing"))?;
    Ok((
        name,
        Any {
            type_url: type_url.to_string(),
            value: msg.encode_to_vec(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_proto::envoy::envoy::config::cluster::v3::Cluster;

    #[test]
    fn a_cluster_with_a_nested_any_converts() {
        let json = serde_json::json!({
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": "outbound|8080||greeter.default",
            "type": "EDS",
            "edsClusterConfig": { "edsConfig": { "ads": {} } },
            "connectTimeout": "5s",
            "circuitBreakers": { "thresholds": [{ "maxRequests": 7 }] },
            "transportSocket": {
                "name": "envoy.transport_sockets.tls",
                "typedConfig": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": "greeter"
                }
            }
        });
        let (name, any) = resource_from_json(&json, "resources[0]").unwrap();
        assert_eq!(name, "outbound|8080||greeter.default");
        let c: Cluster = xds_proto::any::unpack(&any).unwrap();
        assert_eq!(c.connect_timeout.unwrap().seconds, 5);
        assert_eq!(
            c.circuit_breakers.unwrap().thresholds[0]
                .max_requests
                .unwrap()
                .value,
            7
        );
        let ts = c.transport_socket.unwrap();
        assert_eq!(ts.name, "envoy.transport_sockets.tls");
    }

    #[test]
    fn errors_name_the_field() {
        let no_type = serde_json::json!({ "name": "x" });
        let e = resource_from_json(&no_type, "resources[3]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("resources[3].@type"), "{e}");
        let unknown = serde_json::json!({ "@type": "type.googleapis.com/nope.Nope", "name": "x" });
        let e = resource_from_json(&unknown, "resources[0]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown type"), "{e}");
        let bad_field = serde_json::json!({
            "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            "name": "c", "noSuchField": 1
        });
        let e = resource_from_json(&bad_field, "resources[0]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("resources[0]"), "{e}");
        let unnamed =
            serde_json::json!({ "@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster" });
        let e = resource_from_json(&unnamed, "resources[0]")
            .unwrap_err()
            .to_string();
        assert!(e.contains("resources[0].name: missing"), "{e}");
    }
}
