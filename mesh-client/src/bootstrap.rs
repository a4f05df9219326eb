//! The gRPC xDS bootstrap file (gRFC A27, A47, A65, A71).
//!
//! Read from the file named by `GRPC_XDS_BOOTSTRAP`, else from the inline JSON in
//! `GRPC_XDS_BOOTSTRAP_CONFIG`, or given in code. (Parser: in progress.)

use std::collections::BTreeMap;

/// A parsed bootstrap.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    /// `xds_servers`, in order of preference (gRFC A71); never empty.
    pub xds_servers: Vec<XdsServer>,
    /// `node`.
    pub node: Node,
    /// `certificate_providers`: instance name → plugin config.
    pub certificate_providers: BTreeMap<String, CertificateProviderConfig>,
    /// `server_listener_resource_name_template`.
    pub server_listener_resource_name_template: Option<String>,
    /// `client_default_listener_resource_name_template` (default `%s`).
    pub client_default_listener_resource_name_template: String,
    /// `authorities` (gRFC A47).
    pub authorities: BTreeMap<String, Authority>,
}

/// One xDS server.
#[derive(Debug, Clone, PartialEq)]
pub struct XdsServer {
    /// `server_uri`: `host:port`, `dns:///host:port`, or `unix:/path` / `unix:///path`.
    pub server_uri: String,
    /// The first supported entry of `channel_creds`.
    pub channel_creds: ChannelCreds,
    /// `server_features`, e.g. `xds_v3`, `ignore_resource_deletion`.
    pub server_features: Vec<String>,
}

/// Channel credentials for talking to an xDS server.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelCreds {
    /// `insecure`.
    Insecure,
    /// `tls`, with its optional config.
    Tls(serde_json::Value),
}

/// The `node` of the bootstrap.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// `id`.
    pub id: String,
    /// `cluster`.
    pub cluster: String,
    /// `locality`.
    pub locality: Option<crate::config::LocalityName>,
    /// `metadata` (a JSON object, sent as a protobuf Struct).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// One `certificate_providers` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateProviderConfig {
    /// `plugin_name`, e.g. `file_watcher`.
    pub plugin_name: String,
    /// `config`, as given.
    pub config: serde_json::Value,
}

/// One `authorities` entry (gRFC A47).
#[derive(Debug, Clone, PartialEq)]
pub struct Authority {
    /// `client_listener_resource_name_template`.
    pub client_listener_resource_name_template: Option<String>,
    /// `xds_servers`; empty means the top-level ones.
    pub xds_servers: Vec<XdsServer>,
}
