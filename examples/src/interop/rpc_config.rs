//! What the interop client sends: the RPC types, their metadata and timeout, from the
//! command line (`--rpc UnaryCall,EmptyCall`, `--metadata EmptyCall:k1:v1,UnaryCall:k2:v2`)
//! or from `XdsUpdateClientConfigureService.Configure` at run time.

use std::time::Duration;

use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};
use xds_proto::grpc_testing::ClientConfigureRequest;
use xds_proto::grpc_testing::client_configure_request::RpcType;

/// One of the two RPCs the interop client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RpcKind {
    /// `TestService/EmptyCall`.
    EmptyCall,
    /// `TestService/UnaryCall`.
    UnaryCall,
}

impl RpcKind {
    /// The method name (`"UnaryCall"`), the key of `rpcs_by_method`.
    pub fn method(self) -> &'static str {
        match self {
            RpcKind::EmptyCall => "EmptyCall",
            RpcKind::UnaryCall => "UnaryCall",
        }
    }

    /// The `RpcType` name (`"UNARY_CALL"`), the key of the accumulated stats.
    pub fn type_name(self) -> &'static str {
        self.rpc_type().as_str_name()
    }

    fn rpc_type(self) -> RpcType {
        match self {
            RpcKind::EmptyCall => RpcType::EmptyCall,
            RpcKind::UnaryCall => RpcType::UnaryCall,
        }
    }

    fn from_method(name: &str) -> Option<RpcKind> {
        match name {
            "EmptyCall" => Some(RpcKind::EmptyCall),
            "UnaryCall" => Some(RpcKind::UnaryCall),
            _ => None,
        }
    }

    fn from_rpc_type(value: i32) -> Option<RpcKind> {
        match RpcType::try_from(value).ok()? {
            RpcType::EmptyCall => Some(RpcKind::EmptyCall),
            RpcType::UnaryCall => Some(RpcKind::UnaryCall),
        }
    }
}

/// How to send one kind of RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcConfig {
    /// Which RPC.
    pub kind: RpcKind,
    /// Request metadata, in order.
    pub metadata: Vec<(AsciiMetadataKey, AsciiMetadataValue)>,
    /// Overrides `--rpc_timeout` when set.
    pub timeout: Option<Duration>,
}

impl RpcConfig {
    fn new(kind: RpcKind) -> Self {
        RpcConfig {
            kind,
            metadata: Vec::new(),
            timeout: None,
        }
    }
}

fn pair(key: &str, value: &str) -> Result<(AsciiMetadataKey, AsciiMetadataValue), String> {
    let k = AsciiMetadataKey::from_bytes(key.as_bytes())
        .map_err(|_| format!("invalid metadata key {key:?}"))?;
    let v = AsciiMetadataValue::try_from(value)
        .map_err(|_| format!("invalid metadata value {value:?} for key {key:?}"))?;
    Ok((k, v))
}

/// Parses `--rpc` and `--metadata` into one config per RPC type, in `--rpc` order.
///
/// `rpc` is a comma-separated list of `EmptyCall` / `UnaryCall` (empty: `UnaryCall`);
/// `metadata` a comma-separated list of `Type:key:value[:key:value…]`, entries for types
/// not in `rpc` being ignored (as grpc-go does).
pub fn from_flags(rpc: &str, metadata: &str) -> Result<Vec<RpcConfig>, String> {
    let mut configs = Vec::new();
    for name in rpc.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let kind = RpcKind::from_method(name).ok_or_else(|| {
            format!("unsupported RPC type {name:?} (want EmptyCall or UnaryCall)")
        })?;
        if !configs.iter().any(|c: &RpcConfig| c.kind == kind) {
            configs.push(RpcConfig::new(kind));
        }
    }
    if configs.is_empty() {
        configs.push(RpcConfig::new(RpcKind::UnaryCall));
    }
    for entry in metadata.split(',').filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = entry.split(':').collect();
        if parts.len() < 3 || parts.len() % 2 != 1 {
            return Err(format!(
                "invalid metadata {entry:?}, want Type:key:value (e.g. EmptyCall:key1:value1)"
            ));
        }
        let kind = RpcKind::from_method(parts[0])
            .ok_or_else(|| format!("unsupported RPC type {:?} in --metadata", parts[0]))?;
        let Some(config) = configs.iter_mut().find(|c| c.kind == kind) else {
            continue;
        };
        for kv in parts[1..].chunks(2) {
            config.metadata.push(pair(kv[0], kv[1])?);
        }
    }
    Ok(configs)
}

/// The configs a `Configure` request asks for: one per listed type, with the metadata of
/// that type and `timeout_sec` (0: keep `--rpc_timeout`).
pub fn from_configure(request: &ClientConfigureRequest) -> Result<Vec<RpcConfig>, String> {
    let timeout = (request.timeout_sec > 0)
        .then(|| Duration::from_secs(u64::from(request.timeout_sec.unsigned_abs())));
    let mut configs: Vec<RpcConfig> = Vec::new();
    for &t in &request.types {
        let kind = RpcKind::from_rpc_type(t).ok_or_else(|| format!("unsupported RPC type {t}"))?;
        if !configs.iter().any(|c| c.kind == kind) {
            configs.push(RpcConfig {
                timeout,
                ..RpcConfig::new(kind)
            });
        }
    }
    for md in &request.metadata {
        let Some(kind) = RpcKind::from_rpc_type(md.r#type) else {
            continue;
        };
        if let Some(config) = configs.iter_mut().find(|c| c.kind == kind) {
            config.metadata.push(pair(&md.key, &md.value)?);
        }
    }
    Ok(configs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_proto::grpc_testing::client_configure_request::Metadata;

    #[test]
    fn flags_default_to_unary_call() {
        let c = from_flags("", "").unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, RpcKind::UnaryCall);
    }

    #[test]
    fn flags_attach_metadata_per_type() {
        let c = from_flags(
            "EmptyCall,UnaryCall",
            "EmptyCall:xds_md:empty_ytpme,UnaryCall:a:1:b:2,UnaryCall:c:3",
        )
        .unwrap();
        assert_eq!(c[0].kind, RpcKind::EmptyCall);
        assert_eq!(c[0].metadata.len(), 1);
        assert_eq!(c[0].metadata[0].0.as_str(), "xds_md");
        let keys: Vec<_> = c[1].metadata.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }

    #[test]
    fn flags_reject_bad_input() {
        assert!(from_flags("StreamingCall", "").is_err());
        assert!(from_flags("UnaryCall", "UnaryCall:k").is_err());
        // Metadata for a type that is not sent is ignored.
        assert!(
            from_flags("UnaryCall", "EmptyCall:k:v").unwrap()[0]
                .metadata
                .is_empty()
        );
    }

    #[test]
    fn configure_request_maps_types_metadata_and_timeout() {
        let req = ClientConfigureRequest {
            types: vec![RpcType::UnaryCall as i32],
            metadata: vec![
                Metadata {
                    r#type: RpcType::UnaryCall as i32,
                    key: "rpc-behavior".into(),
                    value: "error-code-5".into(),
                },
                Metadata {
                    r#type: RpcType::EmptyCall as i32,
                    key: "ignored".into(),
                    value: "x".into(),
                },
            ],
            timeout_sec: 3,
        };
        let c = from_configure(&req).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, RpcKind::UnaryCall);
        assert_eq!(c[0].metadata.len(), 1);
        assert_eq!(c[0].timeout, Some(Duration::from_secs(3)));
        assert!(
            from_configure(&ClientConfigureRequest {
                types: vec![7],
                ..Default::default()
            })
            .is_err()
        );
    }
}
