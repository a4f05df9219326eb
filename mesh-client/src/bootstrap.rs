//! The gRPC xDS bootstrap file: which xDS servers to talk to, and who this node is.
//!
//! The format is gRPC's, so one file serves gRPC and this mesh alike:
//! gRFC A27 (`xds_servers`, `channel_creds`, `node`), A30 (`server_features`), A29 / A36
//! (`certificate_providers`, `server_listener_resource_name_template`), A47 (federation:
//! `authorities`, `client_default_listener_resource_name_template`, `xdstp:` names),
//! A53 (`ignore_resource_deletion`), A65 (`tls` channel credentials) and A71 (the ordered
//! `xds_servers` list used for fallback).
//!
//! The bootstrap is read from the file named by `GRPC_XDS_BOOTSTRAP`, else from the inline
//! JSON in `GRPC_XDS_BOOTSTRAP_CONFIG` ([`Bootstrap::from_env`]), or given in code
//! ([`Bootstrap::from_json`], [`Bootstrap::from_file`]). As in gRPC, unknown fields are
//! ignored, and a JSON `null` counts as an absent field. Every error names the JSON path of
//! the offending field, e.g. `xds_servers[0].server_uri: missing`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde_json::{Map, Value};
use xds_proto::envoy::envoy::config::core::v3 as core;
use xds_proto::protobuf;

/// Environment variable naming the bootstrap file (takes precedence).
pub const BOOTSTRAP_PATH_ENV: &str = "GRPC_XDS_BOOTSTRAP";
/// Environment variable holding the bootstrap JSON itself.
pub const BOOTSTRAP_CONFIG_ENV: &str = "GRPC_XDS_BOOTSTRAP_CONFIG";

/// The `user_agent_name` sent in the xDS `Node`.
pub const USER_AGENT_NAME: &str = "mesh-client";

/// The `client_features` sent in the xDS `Node`: `xds.config.resource-in-sotw` (SotW
/// responses may wrap resources in `Resource`, per the xDS spec). Unlike gRPC (gRFC A27) we
/// do not send `envoy.lb.does_not_support_overprovisioning`: the client applies the EDS
/// overprovisioning factor itself (Envoy's gentle priority failover), so a control plane
/// must not compensate for it as well.
pub const CLIENT_FEATURES: [&str; 1] = ["xds.config.resource-in-sotw"];

/// Server feature: keep resources the server deletes (gRFC A53).
pub const FEATURE_IGNORE_RESOURCE_DELETION: &str = "ignore_resource_deletion";
/// Server feature: a data error (NACK, LDS/CDS deletion) discards the cached resource, so
/// RPCs fail, instead of keeping the last good value (gRFC A88).
pub const FEATURE_FAIL_ON_DATA_ERRORS: &str = "fail_on_data_errors";
/// Server feature: the server reports missing resources itself, so the resource timer is
/// 30 s and its expiry a transient error, not a deletion (gRFC A88).
pub const FEATURE_RESOURCE_TIMER_IS_TRANSIENT_ERROR: &str = "resource_timer_is_transient_error";
/// Server feature: the server is trusted with security-affecting config (gRFC A81).
pub const FEATURE_TRUSTED_XDS_SERVER: &str = "trusted_xds_server";
/// Server feature (ours; gRPC ignores server features it does not know): talk to this
/// server with delta xDS (`DeltaAggregatedResources`, the incremental protocol) instead of
/// state-of-the-world ADS. Chosen per `xds_servers` entry, so a fallback server (gRFC A71)
/// may speak either:
///
/// ```json
/// {"server_uri": "xds.example:15010", "channel_creds": [{"type": "insecure"}],
///  "server_features": ["xds_v3", "delta_ads"]}
/// ```
pub const FEATURE_DELTA_ADS: &str = "delta_ads";

/// The default `client_default_listener_resource_name_template` (gRFC A47).
const DEFAULT_CLIENT_TEMPLATE: &str = "%s";

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
    /// `mesh_cache_dir` (ours; gRPC ignores the field): where accepted resources are
    /// persisted, so a process can boot from them while its xDS server is unreachable
    /// ([`crate::xds::persist`]).
    pub cache_dir: Option<std::path::PathBuf>,
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
    /// `tls`, with its optional config (gRFC A65), as given (`Value::Null` when absent).
    ///
    /// The config has already been validated: `ca_certificate_file`, `certificate_file`,
    /// `private_key_file` are strings, the latter two set together, and `refresh_interval`
    /// is a protobuf JSON duration such as `"600s"`.
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
    /// `config`, as given (`Value::Null` when absent).
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

/// Where an xDS server lives, from its `server_uri` (see [`XdsServer::address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerAddress {
    /// A TCP endpoint: `host:port` or `dns:///host:port`. `host` keeps no IPv6 brackets.
    HostPort {
        /// Host name or IP literal.
        host: String,
        /// Port (443 when the URI gives none, as gRPC's DNS resolver does).
        port: u16,
    },
    /// A Unix domain socket: `unix:/path`, `unix:///path` or `unix:relative/path`.
    Unix(PathBuf),
}

/// Why a bootstrap could not be loaded, or a name could not be derived from it.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// Neither environment variable is set.
    #[error(
        "no xDS bootstrap: set {BOOTSTRAP_PATH_ENV} to the path of a bootstrap file, \
         or {BOOTSTRAP_CONFIG_ENV} to the bootstrap JSON"
    )]
    NotConfigured,
    /// The bootstrap file could not be read.
    #[error("cannot read xDS bootstrap file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The bootstrap is not valid JSON.
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A field is missing or invalid.
    #[error("{path}: {message}")]
    Invalid {
        /// JSON path of the field, e.g. `xds_servers[0].server_uri`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// An error in a bootstrap from a given origin (a file, an environment variable).
    #[error("xDS bootstrap from {origin}: {source}")]
    In {
        /// Where the bootstrap came from.
        origin: String,
        /// The error.
        #[source]
        source: Box<BootstrapError>,
    },
    /// A target or server URI cannot be mapped with this bootstrap.
    #[error("{uri:?}: {message}")]
    Name {
        /// The target, resource name or server URI.
        uri: String,
        /// What is wrong.
        message: String,
    },
}

impl BootstrapError {
    fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }

    fn name(uri: &str, message: impl Into<String>) -> Self {
        Self::Name {
            uri: uri.to_owned(),
            message: message.into(),
        }
    }

    fn within(self, origin: String) -> Self {
        Self::In {
            origin,
            source: Box::new(self),
        }
    }
}

impl Bootstrap {
    /// Loads the bootstrap the way gRPC does: from the file named by `GRPC_XDS_BOOTSTRAP`,
    /// else from the JSON in `GRPC_XDS_BOOTSTRAP_CONFIG`. Empty variables count as unset.
    pub fn from_env() -> Result<Bootstrap, BootstrapError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`from_env`](Self::from_env) with an injectable environment, for tests and embedders.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Bootstrap, BootstrapError> {
        let set = |name: &str| lookup(name).filter(|v| !v.is_empty());
        if let Some(path) = set(BOOTSTRAP_PATH_ENV) {
            return Self::from_file(path);
        }
        if let Some(json) = set(BOOTSTRAP_CONFIG_ENV) {
            return Self::from_json(&json).map_err(|e| e.within(BOOTSTRAP_CONFIG_ENV.to_owned()));
        }
        Err(BootstrapError::NotConfigured)
    }

    /// Reads and parses a bootstrap file. Errors name the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Bootstrap, BootstrapError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| e.within(format!("file {}", path.display())))
    }

    /// Parses bootstrap JSON.
    ///
    /// ```
    /// use mesh_client::bootstrap::{Bootstrap, ChannelCreds};
    ///
    /// let bootstrap = Bootstrap::from_json(
    ///     r#"{
    ///         "xds_servers": [{
    ///             "server_uri": "istiod.istio-system.svc:15010",
    ///             "channel_creds": [{"type": "google_default"}, {"type": "insecure"}],
    ///             "server_features": ["xds_v3"]
    ///         }],
    ///         "node": {"id": "sidecar~10.0.0.1~app.default~default.svc.cluster.local"}
    ///     }"#,
    /// )?;
    /// assert_eq!(bootstrap.xds_servers[0].channel_creds, ChannelCreds::Insecure);
    /// assert_eq!(bootstrap.listener_resource_name("xds:///greeter:8080")?, "greeter:8080");
    ///
    /// let err = Bootstrap::from_json(r#"{"node": {}}"#).unwrap_err();
    /// assert_eq!(err.to_string(), "xds_servers: missing or empty");
    /// # Ok::<(), mesh_client::bootstrap::BootstrapError>(())
    /// ```
    pub fn from_json(json: &str) -> Result<Bootstrap, BootstrapError> {
        let root: Value = serde_json::from_str(json).map_err(BootstrapError::Json)?;
        let Value::Object(root) = root else {
            return Err(BootstrapError::invalid("<root>", "expected a JSON object"));
        };
        Self::from_object(&root)
    }

    fn from_object(root: &Map<String, Value>) -> Result<Bootstrap, BootstrapError> {
        let xds_servers = parse_servers(root, "", "xds_servers")?;
        if xds_servers.is_empty() {
            return Err(BootstrapError::invalid("xds_servers", "missing or empty"));
        }
        let node = match get_object(root, "", "node")? {
            Some(node) => parse_node(node)?,
            None => Node::default(),
        };
        let mut certificate_providers = BTreeMap::new();
        if let Some(providers) = get_object(root, "", "certificate_providers")? {
            for (name, entry) in providers {
                let path = format!("certificate_providers[{name:?}]");
                let entry = as_object(entry, &path)?;
                let plugin_name = get_string(entry, &path, "plugin_name")?
                    .ok_or_else(|| BootstrapError::invalid(join(&path, "plugin_name"), "missing"))?
                    .to_owned();
                let config = entry.get("config").cloned().unwrap_or(Value::Null);
                certificate_providers.insert(
                    name.clone(),
                    CertificateProviderConfig {
                        plugin_name,
                        config,
                    },
                );
            }
        }
        let server_listener_resource_name_template =
            get_string(root, "", "server_listener_resource_name_template")?.map(str::to_owned);
        let client_default_listener_resource_name_template =
            get_string(root, "", "client_default_listener_resource_name_template")?
                .unwrap_or(DEFAULT_CLIENT_TEMPLATE)
                .to_owned();
        let mut authorities = BTreeMap::new();
        if let Some(map) = get_object(root, "", "authorities")? {
            for (name, entry) in map {
                let path = format!("authorities[{name:?}]");
                authorities.insert(name.clone(), parse_authority(name, entry, &path)?);
            }
        }
        let cache_dir = get_string(root, "", "mesh_cache_dir")?
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from);
        Ok(Bootstrap {
            xds_servers,
            node,
            certificate_providers,
            server_listener_resource_name_template,
            client_default_listener_resource_name_template,
            authorities,
            cache_dir,
        })
    }

    /// The xDS `Node` to send on ADS streams: the bootstrap's node plus this client's
    /// `user_agent_name`, `user_agent_version` and `client_features` (gRFC A27).
    pub fn node_proto(&self) -> core::Node {
        let node = &self.node;
        core::Node {
            id: node.id.clone(),
            cluster: node.cluster.clone(),
            metadata: (!node.metadata.is_empty()).then(|| json_object_to_struct(&node.metadata)),
            locality: node.locality.as_ref().map(|l| core::Locality {
                region: l.region.clone(),
                zone: l.zone.clone(),
                sub_zone: l.sub_zone.clone(),
            }),
            user_agent_name: USER_AGENT_NAME.to_owned(),
            user_agent_version_type: Some(core::node::UserAgentVersionType::UserAgentVersion(
                env!("CARGO_PKG_VERSION").to_owned(),
            )),
            client_features: CLIENT_FEATURES.iter().map(|f| (*f).to_owned()).collect(),
            ..Default::default()
        }
    }

    /// The Listener resource name a client channel for `target` subscribes to (gRFC A47).
    ///
    /// `target` is an `xds:` URI: `xds:name`, `xds:///name` (no authority: the top-level
    /// `client_default_listener_resource_name_template`) or `xds://authority/name` (the
    /// authority's `client_listener_resource_name_template`, by default
    /// `xdstp://<authority>/envoy.config.listener.v3.Listener/%s`). Every `%s` is replaced
    /// with the name, percent-encoded when the template is an `xdstp:` name.
    pub fn listener_resource_name(&self, target: &str) -> Result<String, BootstrapError> {
        let rest = target
            .strip_prefix("xds:")
            .ok_or_else(|| BootstrapError::name(target, "not an xds: target"))?;
        let (authority, name) = match rest.strip_prefix("//") {
            Some(after) => match after.split_once('/') {
                Some((authority, name)) => (authority, name),
                None => (after, ""),
            },
            None => ("", rest.strip_prefix('/').unwrap_or(rest)),
        };
        if name.is_empty() {
            return Err(BootstrapError::name(
                target,
                "no service name in the target",
            ));
        }
        if authority.is_empty() {
            return Ok(expand_template(
                &self.client_default_listener_resource_name_template,
                name,
            ));
        }
        let entry = self.authorities.get(authority).ok_or_else(|| {
            BootstrapError::name(
                target,
                format!("authority {authority:?} is not in the bootstrap's authorities"),
            )
        })?;
        Ok(match &entry.client_listener_resource_name_template {
            Some(template) => expand_template(template, name),
            None => expand_template(
                &format!("xdstp://{authority}/envoy.config.listener.v3.Listener/%s"),
                name,
            ),
        })
    }

    /// The Listener resource name an xDS-enabled server listening on `address` (e.g.
    /// `0.0.0.0:8080`, `[::]:8080`) subscribes to, or `None` when the bootstrap has no
    /// `server_listener_resource_name_template` (gRFC A36, A47).
    pub fn server_listener_resource_name(&self, address: &str) -> Option<String> {
        self.server_listener_resource_name_template
            .as_deref()
            .map(|template| expand_template(template, address))
    }

    /// The xDS servers to fetch `resource_name` from, in order of preference (gRFC A47,
    /// A71): an `xdstp://authority/...` name uses that authority's servers (or the
    /// top-level ones if it lists none); any other name uses the top-level servers.
    pub fn xds_servers_for(&self, resource_name: &str) -> Result<&[XdsServer], BootstrapError> {
        let Some(rest) = resource_name.strip_prefix("xdstp://") else {
            return Ok(&self.xds_servers);
        };
        let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
        let entry = self.authorities.get(authority).ok_or_else(|| {
            BootstrapError::name(
                resource_name,
                format!("authority {authority:?} is not in the bootstrap's authorities"),
            )
        })?;
        if entry.xds_servers.is_empty() {
            Ok(&self.xds_servers)
        } else {
            Ok(&entry.xds_servers)
        }
    }
}

impl FromStr for Bootstrap {
    type Err = BootstrapError;

    fn from_str(json: &str) -> Result<Self, Self::Err> {
        Self::from_json(json)
    }
}

impl XdsServer {
    /// Whether `server_features` contains `ignore_resource_deletion` (gRFC A53).
    pub fn ignore_resource_deletion(&self) -> bool {
        self.has_feature(FEATURE_IGNORE_RESOURCE_DELETION)
    }

    /// Whether `server_features` contains `fail_on_data_errors` (gRFC A88).
    pub fn fail_on_data_errors(&self) -> bool {
        self.has_feature(FEATURE_FAIL_ON_DATA_ERRORS)
    }

    /// Whether `server_features` contains `resource_timer_is_transient_error` (gRFC A88).
    pub fn resource_timer_is_transient_error(&self) -> bool {
        self.has_feature(FEATURE_RESOURCE_TIMER_IS_TRANSIENT_ERROR)
    }

    /// Whether `server_features` contains `trusted_xds_server` (gRFC A81).
    pub fn trusted_xds_server(&self) -> bool {
        self.has_feature(FEATURE_TRUSTED_XDS_SERVER)
    }

    /// Whether `server_features` contains `delta_ads` ([`FEATURE_DELTA_ADS`]): this server
    /// is spoken to with delta xDS.
    pub fn delta_ads(&self) -> bool {
        self.has_feature(FEATURE_DELTA_ADS)
    }

    /// Whether `server_features` contains `feature`.
    pub fn has_feature(&self, feature: &str) -> bool {
        self.server_features.iter().any(|f| f == feature)
    }

    /// Where to connect, from `server_uri`: `unix:` URIs name a socket path; `dns:` URIs
    /// (any DNS authority is ignored), `passthrough:///` URIs and bare `host[:port]` name a
    /// TCP endpoint (port 443 by default).
    pub fn address(&self) -> Result<ServerAddress, BootstrapError> {
        let uri = self.server_uri.as_str();
        if let Some(rest) = uri.strip_prefix("unix:") {
            // `unix:///p` and `unix:/p` are absolute, `unix:p` relative; `unix://p` is
            // not a valid form (gRPC rejects an authority in unix: URIs).
            let path = match rest.strip_prefix("//") {
                Some(p) if p.starts_with('/') => p,
                Some(_) => return Err(BootstrapError::name(uri, "unix: URI with an authority")),
                None => rest,
            };
            if path.is_empty() {
                return Err(BootstrapError::name(uri, "empty unix socket path"));
            }
            return Ok(ServerAddress::Unix(PathBuf::from(path)));
        }
        let host_port = if let Some(rest) = uri.strip_prefix("dns:") {
            match rest.strip_prefix("//") {
                Some(after) => after.split_once('/').map_or("", |(_, hp)| hp),
                None => rest,
            }
        } else if let Some(rest) = uri.strip_prefix("passthrough:") {
            rest.strip_prefix("///").unwrap_or(rest)
        } else {
            uri
        };
        parse_host_port(host_port).ok_or_else(|| BootstrapError::name(uri, "expected host:port"))
    }
}

/// Splits `host[:port]` / `[v6][:port]`; the port defaults to 443.
fn parse_host_port(s: &str) -> Option<ServerAddress> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => (s, None), // bare IPv6 literal
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => 443,
    };
    Some(ServerAddress::HostPort {
        host: host.to_owned(),
        port,
    })
}

/// Replaces every `%s` in `template` with `name`, percent-encoded for `xdstp:` templates.
fn expand_template(template: &str, name: &str) -> String {
    if template.starts_with("xdstp:") {
        template.replace("%s", &percent_encode_path(name))
    } else {
        template.replace("%s", name)
    }
}

/// Percent-encodes everything but the characters RFC 3986 §3.3 allows in a path
/// (unreserved, sub-delims, `:`, `@`, and `/`), as gRFC A47 requires.
fn percent_encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let allowed = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
            );
        if allowed {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- JSON walking with precise paths ----

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A present, non-null field.
fn field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn as_object<'a>(v: &'a Value, path: &str) -> Result<&'a Map<String, Value>, BootstrapError> {
    v.as_object()
        .ok_or_else(|| BootstrapError::invalid(path, "expected a JSON object"))
}

fn get_string<'a>(
    obj: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<&'a str>, BootstrapError> {
    field(obj, key)
        .map(|v| {
            v.as_str()
                .ok_or_else(|| BootstrapError::invalid(join(parent, key), "expected a string"))
        })
        .transpose()
}

fn get_object<'a>(
    obj: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, BootstrapError> {
    field(obj, key)
        .map(|v| as_object(v, &join(parent, key)))
        .transpose()
}

fn get_array<'a>(
    obj: &'a Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Option<&'a Vec<Value>>, BootstrapError> {
    field(obj, key)
        .map(|v| {
            v.as_array()
                .ok_or_else(|| BootstrapError::invalid(join(parent, key), "expected an array"))
        })
        .transpose()
}

/// Parses an `xds_servers` list (possibly empty or absent).
fn parse_servers(
    obj: &Map<String, Value>,
    parent: &str,
    key: &str,
) -> Result<Vec<XdsServer>, BootstrapError> {
    let base = join(parent, key);
    let Some(list) = get_array(obj, parent, key)? else {
        return Ok(Vec::new());
    };
    list.iter()
        .enumerate()
        .map(|(i, v)| parse_server(v, &format!("{base}[{i}]")))
        .collect()
}

fn parse_server(v: &Value, path: &str) -> Result<XdsServer, BootstrapError> {
    let obj = as_object(v, path)?;
    let server_uri = match get_string(obj, path, "server_uri")? {
        None => return Err(BootstrapError::invalid(join(path, "server_uri"), "missing")),
        Some("") => return Err(BootstrapError::invalid(join(path, "server_uri"), "empty")),
        Some(uri) => uri.to_owned(),
    };
    let creds_path = join(path, "channel_creds");
    let creds = get_array(obj, path, "channel_creds")?
        .filter(|c| !c.is_empty())
        .ok_or_else(|| BootstrapError::invalid(&creds_path, "missing or empty"))?;
    let mut chosen = None;
    let mut seen = Vec::new();
    for (i, entry) in creds.iter().enumerate() {
        let entry_path = format!("{creds_path}[{i}]");
        let entry = as_object(entry, &entry_path)?;
        let ty = get_string(entry, &entry_path, "type")?
            .ok_or_else(|| BootstrapError::invalid(join(&entry_path, "type"), "missing"))?;
        // gRFC A27: the client stops at the first type it supports.
        let parsed = match ty {
            "insecure" => ChannelCreds::Insecure,
            "tls" => {
                let config = entry.get("config").cloned().unwrap_or(Value::Null);
                validate_tls_config(&config, &join(&entry_path, "config"))?;
                ChannelCreds::Tls(config)
            }
            other => {
                seen.push(format!("{other:?}"));
                continue;
            }
        };
        chosen = Some(parsed);
        break;
    }
    let channel_creds = chosen.ok_or_else(|| {
        BootstrapError::invalid(
            &creds_path,
            format!(
                "no supported type (supported: \"insecure\", \"tls\"; found: {})",
                seen.join(", ")
            ),
        )
    })?;
    // Unknown entries are ignored, whatever their JSON type (gRPC's bootstrap format doc).
    let server_features = get_array(obj, path, "server_features")?
        .map(|list| {
            list.iter()
                .filter_map(|f| f.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(XdsServer {
        server_uri,
        channel_creds,
        server_features,
    })
}

/// Validates the `tls` channel-credentials config of gRFC A65.
fn validate_tls_config(config: &Value, path: &str) -> Result<(), BootstrapError> {
    if config.is_null() {
        return Ok(());
    }
    let obj = as_object(config, path)?;
    for key in [
        "ca_certificate_file",
        "certificate_file",
        "private_key_file",
    ] {
        get_string(obj, path, key)?;
    }
    let cert = get_string(obj, path, "certificate_file")?.is_some();
    let key = get_string(obj, path, "private_key_file")?.is_some();
    if cert && !key {
        return Err(BootstrapError::invalid(
            join(path, "private_key_file"),
            "required when certificate_file is set",
        ));
    }
    if key && !cert {
        return Err(BootstrapError::invalid(
            join(path, "certificate_file"),
            "required when private_key_file is set",
        ));
    }
    if let Some(interval) = get_string(obj, path, "refresh_interval")?
        && !is_json_duration(interval)
    {
        return Err(BootstrapError::invalid(
            join(path, "refresh_interval"),
            format!("{interval:?} is not a duration like \"600s\""),
        ));
    }
    Ok(())
}

/// Whether `s` is a non-negative protobuf JSON `Duration` (`"600s"`, `"1.5s"`).
fn is_json_duration(s: &str) -> bool {
    let Some(num) = s.strip_suffix('s') else {
        return false;
    };
    let (secs, frac) = num.split_once('.').unwrap_or((num, "0"));
    !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
        && !frac.is_empty()
        && frac.len() <= 9
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn parse_node(obj: &Map<String, Value>) -> Result<Node, BootstrapError> {
    let id = get_string(obj, "node", "id")?
        .unwrap_or_default()
        .to_owned();
    let cluster = get_string(obj, "node", "cluster")?
        .unwrap_or_default()
        .to_owned();
    let locality = get_object(obj, "node", "locality")?
        .map(|loc| -> Result<_, BootstrapError> {
            let part = |key| {
                get_string(loc, "node.locality", key).map(|s| s.unwrap_or_default().to_owned())
            };
            Ok(crate::config::LocalityName {
                region: part("region")?,
                zone: part("zone")?,
                sub_zone: part("sub_zone")?,
            })
        })
        .transpose()?;
    let metadata = get_object(obj, "node", "metadata")?
        .cloned()
        .unwrap_or_default();
    Ok(Node {
        id,
        cluster,
        locality,
        metadata,
    })
}

fn parse_authority(name: &str, v: &Value, path: &str) -> Result<Authority, BootstrapError> {
    let empty = Map::new();
    let obj = if v.is_null() {
        &empty
    } else {
        as_object(v, path)?
    };
    let template = get_string(obj, path, "client_listener_resource_name_template")?;
    if let Some(template) = template {
        let prefix = format!("xdstp://{name}/");
        if !template.starts_with(&prefix) {
            return Err(BootstrapError::invalid(
                join(path, "client_listener_resource_name_template"),
                format!("{template:?} must start with {prefix:?} (gRFC A47)"),
            ));
        }
    }
    Ok(Authority {
        client_listener_resource_name_template: template.map(str::to_owned),
        xds_servers: parse_servers(obj, path, "xds_servers")?,
    })
}

// ---- JSON → google.protobuf.Struct ----

fn json_object_to_struct(obj: &Map<String, Value>) -> protobuf::Struct {
    protobuf::Struct {
        fields: obj
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect::<HashMap<_, _>>(),
    }
}

fn json_to_value(v: &Value) -> protobuf::Value {
    use protobuf::value::Kind;
    let kind = match v {
        Value::Null => Kind::NullValue(protobuf::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::BoolValue(*b),
        // Every serde_json number (without arbitrary_precision) converts to f64.
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(protobuf::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(obj) => Kind::StructValue(json_object_to_struct(obj)),
    };
    protobuf::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What Istio's pilot-agent writes for a proxyless gRPC workload.
    const ISTIO: &str = r#"{
      "xds_servers": [{
        "server_uri": "unix:///etc/istio/proxy/XDS",
        "channel_creds": [{"type": "insecure"}],
        "server_features": ["xds_v3"]
      }],
      "node": {
        "id": "sidecar~10.0.0.1~greeter-abc.default~default.svc.cluster.local",
        "metadata": {
          "ANNOTATIONS": {"inject.istio.io/templates": "grpc-agent", "proxy.istio.io/config": "{\"holdApplicationUntilProxyStarts\": true}"},
          "APP_CONTAINERS": "greeter",
          "CLUSTER_ID": "Kubernetes",
          "ENVOY_PROMETHEUS_PORT": 15090,
          "ENVOY_STATUS_PORT": 15021,
          "GENERATOR": "grpc",
          "INSTANCE_IPS": "10.0.0.1",
          "INTERCEPTION_MODE": "REDIRECT",
          "ISTIO_PROXY_SHA": "8f2e5fcd",
          "ISTIO_VERSION": "1.22.0",
          "LABELS": {"app": "greeter", "security.istio.io/tlsMode": "istio", "service.istio.io/canonical-name": "greeter"},
          "MESH_ID": "cluster.local",
          "NAME": "greeter-abc",
          "NAMESPACE": "default",
          "OWNER": "kubernetes://apis/apps/v1/namespaces/default/deployments/greeter",
          "PILOT_SAN": ["istiod.istio-system.svc"],
          "PLATFORM_METADATA": {},
          "POD_PORTS": "[{\"name\":\"grpc\",\"containerPort\":8080,\"protocol\":\"TCP\"}]",
          "PROXY_CONFIG": {"binaryPath": "/usr/local/bin/envoy", "concurrency": 2, "discoveryAddress": "istiod.istio-system.svc:15012", "holdApplicationUntilProxyStarts": true, "tracing": {"zipkin": {"address": "zipkin.istio-system:9411"}}},
          "SERVICE_ACCOUNT": "default",
          "WORKLOAD_NAME": "greeter",
          "SIDECAR_ENABLED": null
        },
        "locality": {},
        "UserAgentVersionType": null
      },
      "certificate_providers": {
        "default": {
          "plugin_name": "file_watcher",
          "config": {
            "certificate_file": "/var/lib/istio/data/cert-chain.pem",
            "private_key_file": "/var/lib/istio/data/key.pem",
            "ca_certificate_file": "/var/lib/istio/data/root-cert.pem",
            "refresh_interval": "900s"
          }
        }
      },
      "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s"
    }"#;

    fn minimal() -> serde_json::Value {
        json!({"xds_servers": [{"server_uri": "xds.example.com:443",
                                "channel_creds": [{"type": "insecure"}]}]})
    }

    fn parse(v: &serde_json::Value) -> Result<Bootstrap, BootstrapError> {
        Bootstrap::from_json(&v.to_string())
    }

    #[test]
    fn istio_proxyless_bootstrap_parses_unchanged() {
        let b = Bootstrap::from_json(ISTIO).unwrap();
        assert_eq!(b.xds_servers.len(), 1);
        let s = &b.xds_servers[0];
        assert_eq!(s.server_uri, "unix:///etc/istio/proxy/XDS");
        assert_eq!(s.channel_creds, ChannelCreds::Insecure);
        assert_eq!(s.server_features, ["xds_v3"]);
        assert!(!s.ignore_resource_deletion());
        assert_eq!(
            s.address().unwrap(),
            ServerAddress::Unix("/etc/istio/proxy/XDS".into())
        );
        assert_eq!(
            b.node.id,
            "sidecar~10.0.0.1~greeter-abc.default~default.svc.cluster.local"
        );
        assert_eq!(b.node.cluster, "");
        assert_eq!(b.node.locality, Some(Default::default()));
        assert_eq!(b.node.metadata["GENERATOR"], "grpc");
        assert_eq!(b.node.metadata["LABELS"]["app"], "greeter");
        assert_eq!(b.node.metadata["PROXY_CONFIG"]["concurrency"], 2);
        let cp = &b.certificate_providers["default"];
        assert_eq!(cp.plugin_name, "file_watcher");
        assert_eq!(cp.config["refresh_interval"], "900s");
        assert_eq!(
            b.server_listener_resource_name("0.0.0.0:8080").as_deref(),
            Some("xds.istio.io/grpc/lds/inbound/0.0.0.0:8080")
        );
        assert_eq!(b.client_default_listener_resource_name_template, "%s");
        assert!(b.authorities.is_empty());
        assert_eq!(
            b.listener_resource_name("xds:///greeter.default.svc.cluster.local:8080")
                .unwrap(),
            "greeter.default.svc.cluster.local:8080"
        );
    }

    #[test]
    fn invalid_bootstraps_name_the_field() {
        let server = |s: serde_json::Value| json!({"xds_servers": [s]});
        let with = |key: &str, v: serde_json::Value| {
            let mut b = minimal();
            b[key] = v;
            b
        };
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            (
                "no xds_servers",
                json!({"node": {}}),
                "xds_servers: missing or empty",
            ),
            (
                "empty xds_servers",
                json!({"xds_servers": []}),
                "xds_servers: missing or empty",
            ),
            (
                "xds_servers not a list",
                json!({"xds_servers": {}}),
                "xds_servers: expected an array",
            ),
            (
                "server not an object",
                json!({"xds_servers": ["a:1"]}),
                "xds_servers[0]: expected a JSON object",
            ),
            (
                "missing server_uri",
                server(json!({"channel_creds": [{"type": "insecure"}]})),
                "xds_servers[0].server_uri: missing",
            ),
            (
                "empty server_uri",
                server(json!({"server_uri": "", "channel_creds": [{"type": "insecure"}]})),
                "xds_servers[0].server_uri: empty",
            ),
            (
                "server_uri not a string",
                server(json!({"server_uri": 7, "channel_creds": [{"type": "insecure"}]})),
                "xds_servers[0].server_uri: expected a string",
            ),
            (
                "no channel_creds",
                server(json!({"server_uri": "a:1"})),
                "xds_servers[0].channel_creds: missing or empty",
            ),
            (
                "only unsupported creds",
                server(
                    json!({"server_uri": "a:1", "channel_creds": [{"type": "google_default"}, {"type": "alts"}]}),
                ),
                "xds_servers[0].channel_creds: no supported type (supported: \"insecure\", \"tls\"; found: \"google_default\", \"alts\")",
            ),
            (
                "creds without type",
                server(json!({"server_uri": "a:1", "channel_creds": [{"config": {}}]})),
                "xds_servers[0].channel_creds[0].type: missing",
            ),
            (
                "tls cert without key",
                server(
                    json!({"server_uri": "a:1", "channel_creds": [{"type": "tls", "config": {"certificate_file": "/c.pem"}}]}),
                ),
                "xds_servers[0].channel_creds[0].config.private_key_file: required when certificate_file is set",
            ),
            (
                "tls bad refresh_interval",
                server(
                    json!({"server_uri": "a:1", "channel_creds": [{"type": "tls", "config": {"refresh_interval": "10m"}}]}),
                ),
                "xds_servers[0].channel_creds[0].config.refresh_interval: \"10m\" is not a duration",
            ),
            (
                "node not an object",
                with("node", json!("n")),
                "node: expected a JSON object",
            ),
            (
                "node.id not a string",
                with("node", json!({"id": 1})),
                "node.id: expected a string",
            ),
            (
                "locality zone not a string",
                with("node", json!({"locality": {"zone": 3}})),
                "node.locality.zone: expected a string",
            ),
            (
                "metadata not an object",
                with("node", json!({"metadata": []})),
                "node.metadata: expected a JSON object",
            ),
            (
                "provider without plugin_name",
                with("certificate_providers", json!({"default": {"config": {}}})),
                "certificate_providers[\"default\"].plugin_name: missing",
            ),
            (
                "template not a string",
                with("client_default_listener_resource_name_template", json!(1)),
                "client_default_listener_resource_name_template: expected a string",
            ),
            (
                "authority template for another authority",
                with(
                    "authorities",
                    json!({"a.example.com": {"client_listener_resource_name_template": "xdstp://b.example.com/envoy.config.listener.v3.Listener/%s"}}),
                ),
                "authorities[\"a.example.com\"].client_listener_resource_name_template: \"xdstp://b.example.com/envoy.config.listener.v3.Listener/%s\" must start with \"xdstp://a.example.com/\"",
            ),
            (
                "authority template not xdstp",
                with(
                    "authorities",
                    json!({"a": {"client_listener_resource_name_template": "%s"}}),
                ),
                "must start with \"xdstp://a/\"",
            ),
            (
                "authority server without uri",
                with(
                    "authorities",
                    json!({"a": {"xds_servers": [{"channel_creds": [{"type": "insecure"}]}]}}),
                ),
                "authorities[\"a\"].xds_servers[0].server_uri: missing",
            ),
            (
                "root not an object",
                json!([1]),
                "<root>: expected a JSON object",
            ),
        ];
        for (name, input, want) in cases {
            match parse(&input) {
                Ok(b) => panic!("{name}: parsed, want error {want:?}: {b:?}"),
                Err(e) => {
                    let got = e.to_string();
                    assert!(got.contains(want), "{name}: got {got:?}, want {want:?}");
                }
            }
        }
    }

    #[test]
    fn invalid_json_is_an_error() {
        for input in ["", "{", "{\"xds_servers\": [}", "not json"] {
            let err = Bootstrap::from_json(input).unwrap_err();
            assert!(matches!(err, BootstrapError::Json(_)), "{input:?}: {err:?}");
            assert!(err.to_string().starts_with("invalid JSON: "), "{err}");
        }
    }

    #[test]
    fn first_supported_channel_creds_is_chosen() {
        let cases = [
            (
                json!([{"type": "insecure"}, {"type": "tls"}]),
                ChannelCreds::Insecure,
            ),
            (
                json!([{"type": "google_default"}, {"type": "tls"}, {"type": "insecure"}]),
                ChannelCreds::Tls(serde_json::Value::Null),
            ),
            (
                json!([{"type": "xds"}, {"type": "tls", "config": {"ca_certificate_file": "/ca.pem"}}]),
                ChannelCreds::Tls(json!({"ca_certificate_file": "/ca.pem"})),
            ),
            // Entries after the chosen one are not looked at.
            (
                json!([{"type": "insecure"}, {"type": "tls", "config": 3}]),
                ChannelCreds::Insecure,
            ),
        ];
        for (creds, want) in cases {
            let b = parse(&json!({"xds_servers": [{"server_uri": "a:1", "channel_creds": creds}]}))
                .unwrap();
            assert_eq!(b.xds_servers[0].channel_creds, want, "{creds}");
        }
    }

    #[test]
    fn tls_creds_with_full_config() {
        let cfg = json!({"ca_certificate_file": "/ca.pem", "certificate_file": "/c.pem",
                         "private_key_file": "/k.pem", "refresh_interval": "1.5s"});
        let b = parse(
            &json!({"xds_servers": [{"server_uri": "dns:///xds.example.com:443",
            "channel_creds": [{"type": "tls", "config": cfg}]}]}),
        )
        .unwrap();
        assert_eq!(b.xds_servers[0].channel_creds, ChannelCreds::Tls(cfg));
    }

    #[test]
    fn delta_ads_is_chosen_per_server() {
        let b = parse(&json!({"xds_servers": [
            {"server_uri": "a:1", "channel_creds": [{"type": "insecure"}],
             "server_features": ["xds_v3", "delta_ads"]},
            {"server_uri": "b:1", "channel_creds": [{"type": "insecure"}],
             "server_features": ["xds_v3"]}
        ]}))
        .unwrap();
        let delta: Vec<bool> = b.xds_servers.iter().map(XdsServer::delta_ads).collect();
        assert_eq!(delta, [true, false]);
    }

    #[test]
    fn a88_server_features() {
        let b = parse(&json!({
            "xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "insecure"}],
                             "server_features": ["fail_on_data_errors", "resource_timer_is_transient_error"]}],
            "node": {"id": "n"}
        }))
        .unwrap();
        let s = &b.xds_servers[0];
        assert!(s.fail_on_data_errors());
        assert!(s.resource_timer_is_transient_error());
        assert!(!s.ignore_resource_deletion());
    }

    #[test]
    fn unknown_fields_and_nulls_are_ignored() {
        let b = parse(&json!({
            "xds_servers": [{"server_uri": "a:1", "channel_creds": [{"type": "insecure", "extra": 1}],
                             "server_features": ["ignore_resource_deletion", 5, {"x": 1}, "trusted_xds_server"],
                             "call_creds": [{"type": "jwt_token_file"}], "future": true}],
            "node": {"id": "n", "user_agent_name": "ignored", "cluster": null},
            "certificate_providers": null,
            "authorities": null,
            "something_new": {"nested": [1, 2]}
        }))
        .unwrap();
        let s = &b.xds_servers[0];
        assert_eq!(
            s.server_features,
            ["ignore_resource_deletion", "trusted_xds_server"]
        );
        assert!(s.ignore_resource_deletion());
        assert!(!s.delta_ads());
        assert!(s.trusted_xds_server());
        assert!(!s.fail_on_data_errors() && !s.resource_timer_is_transient_error());
        assert_eq!(b.node.id, "n");
        assert_eq!(b.node.cluster, "");
        assert_eq!(b.node.locality, None);
        assert!(b.certificate_providers.is_empty());
        assert!(b.authorities.is_empty());
    }

    #[test]
    fn multiple_servers_keep_their_order() {
        let b = parse(&json!({"xds_servers": [
            {"server_uri": "primary:443", "channel_creds": [{"type": "insecure"}]},
            {"server_uri": "fallback:443", "channel_creds": [{"type": "insecure"}]}]}))
        .unwrap();
        let uris: Vec<_> = b
            .xds_servers
            .iter()
            .map(|s| s.server_uri.as_str())
            .collect();
        assert_eq!(uris, ["primary:443", "fallback:443"]);
    }

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn env_file_takes_precedence_over_inline_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bootstrap.json");
        let from_file = json!({"xds_servers": [{"server_uri": "from-file:1", "channel_creds": [{"type": "insecure"}]}]});
        std::fs::write(&path, from_file.to_string()).unwrap();
        let inline = json!({"xds_servers": [{"server_uri": "inline:1", "channel_creds": [{"type": "insecure"}]}]})
            .to_string();
        let path_str = path.to_str().unwrap();

        let vars = [
            (BOOTSTRAP_PATH_ENV, path_str),
            (BOOTSTRAP_CONFIG_ENV, inline.as_str()),
        ];
        let b = Bootstrap::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(b.xds_servers[0].server_uri, "from-file:1");

        let vars = [(BOOTSTRAP_CONFIG_ENV, inline.as_str())];
        let b = Bootstrap::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(b.xds_servers[0].server_uri, "inline:1");

        // An empty variable counts as unset.
        let vars = [
            (BOOTSTRAP_PATH_ENV, ""),
            (BOOTSTRAP_CONFIG_ENV, inline.as_str()),
        ];
        let b = Bootstrap::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(b.xds_servers[0].server_uri, "inline:1");
    }

    #[test]
    fn env_unset_names_both_variables() {
        let err = Bootstrap::from_lookup(lookup(&[])).unwrap_err();
        assert!(matches!(err, BootstrapError::NotConfigured));
        let msg = err.to_string();
        assert!(msg.contains("GRPC_XDS_BOOTSTRAP "), "{msg}");
        assert!(msg.contains("GRPC_XDS_BOOTSTRAP_CONFIG"), "{msg}");
    }

    #[test]
    fn env_errors_say_where_the_bootstrap_came_from() {
        let vars = [(BOOTSTRAP_CONFIG_ENV, "{\"node\": {}}")];
        let msg = Bootstrap::from_lookup(lookup(&vars))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "xDS bootstrap from GRPC_XDS_BOOTSTRAP_CONFIG: xds_servers: missing or empty"
        );
    }

    #[test]
    fn unreadable_file_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let err = Bootstrap::from_file(&missing).unwrap_err();
        assert!(matches!(err, BootstrapError::Read { .. }));
        assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");

        // Via the environment too.
        let vars = [(BOOTSTRAP_PATH_ENV, missing.to_str().unwrap())];
        let err = Bootstrap::from_lookup(lookup(&vars)).unwrap_err();
        assert!(err.to_string().contains(missing.to_str().unwrap()), "{err}");

        // Invalid content is reported with the file name.
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"xds_servers\": [{}]}").unwrap();
        let msg = Bootstrap::from_file(&bad).unwrap_err().to_string();
        assert!(msg.contains(bad.to_str().unwrap()), "{msg}");
        assert!(msg.ends_with("xds_servers[0].server_uri: missing"), "{msg}");
    }

    #[test]
    fn from_str_matches_from_json() {
        let text = minimal().to_string();
        let a: Bootstrap = text.parse().unwrap();
        assert_eq!(a, Bootstrap::from_json(&text).unwrap());
    }

    #[test]
    fn authorities_parse_and_default_to_top_level_servers() {
        let b = parse(&json!({
            "xds_servers": [{"server_uri": "top:443", "channel_creds": [{"type": "insecure"}]}],
            "client_default_listener_resource_name_template": "xdstp://xds.example.com/envoy.config.listener.v3.Listener/grpc/client/%s?project=1",
            "authorities": {
                "xds.example.com": {
                    "client_listener_resource_name_template": "xdstp://xds.example.com/envoy.config.listener.v3.Listener/grpc/client/%s"
                },
                "other.example.com": {
                    "xds_servers": [{"server_uri": "other:443", "channel_creds": [{"type": "insecure"}]}]
                },
                "empty": {},
                "": {}
            }
        }))
        .unwrap();
        assert_eq!(b.authorities.len(), 4);
        let other = &b.authorities["other.example.com"];
        assert_eq!(other.client_listener_resource_name_template, None);
        assert_eq!(other.xds_servers[0].server_uri, "other:443");

        let servers = |name: &str| -> Vec<String> {
            b.xds_servers_for(name)
                .unwrap()
                .iter()
                .map(|s| s.server_uri.clone())
                .collect()
        };
        assert_eq!(servers("plain-name"), ["top:443"]);
        assert_eq!(
            servers("xdstp://xds.example.com/envoy.config.listener.v3.Listener/x"),
            ["top:443"]
        );
        assert_eq!(
            servers("xdstp://other.example.com/envoy.config.cluster.v3.Cluster/c"),
            ["other:443"]
        );
        assert_eq!(
            servers("xdstp:///envoy.config.cluster.v3.Cluster/c"),
            ["top:443"]
        );
        let err = b
            .xds_servers_for("xdstp://unknown.example.com/envoy.config.listener.v3.Listener/x")
            .unwrap_err();
        assert!(err.to_string().contains("\"unknown.example.com\""), "{err}");
    }

    #[test]
    fn listener_resource_names() {
        let b = parse(&json!({
            "xds_servers": [{"server_uri": "top:443", "channel_creds": [{"type": "insecure"}]}],
            "authorities": {
                "xds.example.com": {
                    "client_listener_resource_name_template": "xdstp://xds.example.com/envoy.config.listener.v3.Listener/grpc/client/%s?id=1"
                },
                "bare.example.com": {}
            }
        }))
        .unwrap();
        let xdstp_default = {
            let mut v = minimal();
            v["client_default_listener_resource_name_template"] =
                json!("xdstp://xds.example.com/envoy.config.listener.v3.Listener/%s");
            v["authorities"] = json!({"xds.example.com": {}});
            parse(&v).unwrap()
        };
        let plain_default = {
            let mut v = minimal();
            v["client_default_listener_resource_name_template"] = json!("prefix/%s/suffix/%s");
            parse(&v).unwrap()
        };
        let cases: Vec<(&Bootstrap, &str, Result<&str, &str>)> = vec![
            (&b, "xds:///greeter:8080", Ok("greeter:8080")),
            (&b, "xds:greeter:8080", Ok("greeter:8080")),
            (&b, "xds:///a b", Ok("a b")), // old-style names are not encoded
            (
                &b,
                "xds://xds.example.com/greeter:8080",
                Ok(
                    "xdstp://xds.example.com/envoy.config.listener.v3.Listener/grpc/client/greeter:8080?id=1",
                ),
            ),
            (
                &b,
                "xds://bare.example.com/svc/with space%?#",
                Ok(
                    "xdstp://bare.example.com/envoy.config.listener.v3.Listener/svc/with%20space%25%3F%23",
                ),
            ),
            (
                &b,
                "xds://unknown.example.com/greeter",
                Err("authority \"unknown.example.com\" is not in the bootstrap"),
            ),
            (&b, "xds:///", Err("no service name")),
            (&b, "dns:///greeter:8080", Err("not an xds: target")),
            (
                &xdstp_default,
                "xds:///greeter:8080",
                Ok("xdstp://xds.example.com/envoy.config.listener.v3.Listener/greeter:8080"),
            ),
            (
                &xdstp_default,
                "xds:///ünï",
                Ok("xdstp://xds.example.com/envoy.config.listener.v3.Listener/%C3%BCn%C3%AF"),
            ),
            (&plain_default, "xds:///svc", Ok("prefix/svc/suffix/svc")),
        ];
        for (bootstrap, target, want) in cases {
            match (bootstrap.listener_resource_name(target), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{target}"),
                (Err(e), Err(want)) => {
                    assert!(e.to_string().contains(want), "{target}: {e}")
                }
                (got, want) => panic!("{target}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn server_listener_name_is_encoded_for_xdstp_templates() {
        let mut v = minimal();
        v["server_listener_resource_name_template"] =
            json!("xdstp://xds.example.com/envoy.config.listener.v3.Listener/grpc/server/%s");
        let b = parse(&v).unwrap();
        assert_eq!(
            b.server_listener_resource_name("[::]:8080").as_deref(),
            Some(
                "xdstp://xds.example.com/envoy.config.listener.v3.Listener/grpc/server/%5B::%5D:8080"
            )
        );
        assert_eq!(
            parse(&minimal())
                .unwrap()
                .server_listener_resource_name("0.0.0.0:1"),
            None
        );
    }

    #[test]
    fn node_proto_conversion() {
        use protobuf::value::Kind;
        let mut v = minimal();
        v["node"] = json!({
            "id": "node-1",
            "cluster": "cluster-1",
            "locality": {"region": "us-east1", "zone": "us-east1-b", "sub_zone": "rack7"},
            "metadata": {"s": "x", "n": 1.5, "b": true, "z": null,
                         "l": [1, "two"], "o": {"inner": {"deep": false}}}
        });
        let node = parse(&v).unwrap().node_proto();
        assert_eq!(node.id, "node-1");
        assert_eq!(node.cluster, "cluster-1");
        let loc = node.locality.clone().unwrap();
        assert_eq!(
            (
                loc.region.as_str(),
                loc.zone.as_str(),
                loc.sub_zone.as_str()
            ),
            ("us-east1", "us-east1-b", "rack7")
        );
        assert_eq!(node.user_agent_name, "mesh-client");
        assert_eq!(
            node.user_agent_version_type,
            Some(core::node::UserAgentVersionType::UserAgentVersion(
                env!("CARGO_PKG_VERSION").to_owned()
            ))
        );
        assert_eq!(node.client_features, ["xds.config.resource-in-sotw"]);
        let md = node.metadata.unwrap().fields;
        let kind = |k: &str| md[k].kind.clone().unwrap();
        assert_eq!(kind("s"), Kind::StringValue("x".into()));
        assert_eq!(kind("n"), Kind::NumberValue(1.5));
        assert_eq!(kind("b"), Kind::BoolValue(true));
        assert_eq!(kind("z"), Kind::NullValue(0));
        let Kind::ListValue(list) = kind("l") else {
            panic!("l")
        };
        assert_eq!(list.values[0].kind, Some(Kind::NumberValue(1.0)));
        assert_eq!(list.values[1].kind, Some(Kind::StringValue("two".into())));
        let Kind::StructValue(o) = kind("o") else {
            panic!("o")
        };
        let Some(Kind::StructValue(inner)) = &o.fields["inner"].kind else {
            panic!("inner")
        };
        assert_eq!(inner.fields["deep"].kind, Some(Kind::BoolValue(false)));
    }

    #[test]
    fn node_proto_of_an_empty_node() {
        let node = parse(&minimal()).unwrap().node_proto();
        assert_eq!(node.id, "");
        assert_eq!(node.metadata, None);
        assert_eq!(node.locality, None);
        assert_eq!(node.user_agent_name, "mesh-client");
    }

    #[test]
    fn server_addresses() {
        let server = |uri: &str| XdsServer {
            server_uri: uri.to_owned(),
            channel_creds: ChannelCreds::Insecure,
            server_features: vec![],
        };
        let hp = |h: &str, p| ServerAddress::HostPort {
            host: h.to_owned(),
            port: p,
        };
        let cases: Vec<(&str, Option<ServerAddress>)> = vec![
            (
                "istiod.istio-system.svc:15010",
                Some(hp("istiod.istio-system.svc", 15010)),
            ),
            (
                "dns:///xds.example.com:443",
                Some(hp("xds.example.com", 443)),
            ),
            (
                "dns://8.8.8.8/xds.example.com:18000",
                Some(hp("xds.example.com", 18000)),
            ),
            ("dns:xds.example.com", Some(hp("xds.example.com", 443))),
            (
                "trafficdirector.googleapis.com",
                Some(hp("trafficdirector.googleapis.com", 443)),
            ),
            ("[::1]:18000", Some(hp("::1", 18000))),
            ("passthrough:///10.0.0.1:15010", Some(hp("10.0.0.1", 15010))),
            (
                "unix:///etc/istio/proxy/XDS",
                Some(ServerAddress::Unix("/etc/istio/proxy/XDS".into())),
            ),
            (
                "unix:/tmp/xds.sock",
                Some(ServerAddress::Unix("/tmp/xds.sock".into())),
            ),
            (
                "unix:relative.sock",
                Some(ServerAddress::Unix("relative.sock".into())),
            ),
            ("unix://host/tmp/x", None),
            ("unix:", None),
            ("host:notaport", None),
            (":443", None),
        ];
        for (uri, want) in cases {
            assert_eq!(server(uri).address().ok(), want, "{uri}");
        }
    }

    #[test]
    fn json_durations() {
        for ok in ["0s", "900s", "1.5s", "0.000000001s"] {
            assert!(is_json_duration(ok), "{ok}");
        }
        for bad in [
            "",
            "s",
            "10",
            "10m",
            "-1s",
            "1.s",
            ".5s",
            "1.0000000001s",
            "1e3s",
        ] {
            assert!(!is_json_duration(bad), "{bad}");
        }
    }
}
