//! Decoding and validation of xDS resources into [`crate::config`] values.
//!
//! [`decode`] turns one `Any` from a DiscoveryResponse into a [`Resource`], applying the
//! validation rules gRPC's proxyless clients apply (gRFC A27, A28, A31, A39, A41, A52, A63):
//! what they NACK we NACK, what they ignore we ignore. An invalid resource whose name could
//! be read yields a [`ResourceError`] with that name, so the protocol layer can NACK that one
//! resource and accept the rest of the response (gRFC A46).
//!
//! One file per resource type: [`listener`] (LDS), [`route`] (RDS), [`cluster`] (CDS),
//! [`endpoint`] (EDS); [`matcher`] converts Envoy matchers shared by them. A Listener
//! without `api_listener` is a server's (gRFC A36) and goes to [`server_listener`]; [`tls`]
//! validates the TLS contexts of both (gRFC A29).
//!
//! Some rules need the bootstrap: a TLS context naming a certificate provider instance that
//! the bootstrap's `certificate_providers` lacks is NACKed (A29). [`decode_with`] takes that
//! knowledge as a [`ValidationContext`]; [`decode`] skips the check.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use prost::Message;
use xds_proto::envoy::envoy::service::discovery::v3::Resource as ResourceWrapper;
use xds_proto::protobuf::Any;
use xds_proto::type_url;

use crate::bootstrap::Bootstrap;
use crate::config;

pub mod cluster;
pub mod endpoint;
mod fault;
pub mod listener;
pub mod matcher;
pub mod rbac;
pub mod route;
pub mod server_listener;
pub mod tls;

/// The four xDS resource types of the client (gRFC A27).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// LDS: `envoy.config.listener.v3.Listener`.
    Listener,
    /// RDS: `envoy.config.route.v3.RouteConfiguration`.
    RouteConfiguration,
    /// CDS: `envoy.config.cluster.v3.Cluster`.
    Cluster,
    /// EDS: `envoy.config.endpoint.v3.ClusterLoadAssignment`.
    ClusterLoadAssignment,
}

impl ResourceType {
    /// Every type, in dependency order (LDS, RDS, CDS, EDS).
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Listener,
        ResourceType::RouteConfiguration,
        ResourceType::Cluster,
        ResourceType::ClusterLoadAssignment,
    ];

    /// The type URL of this resource type.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Listener => type_url::LISTENER,
            ResourceType::RouteConfiguration => type_url::ROUTE_CONFIGURATION,
            ResourceType::Cluster => type_url::CLUSTER,
            ResourceType::ClusterLoadAssignment => type_url::CLUSTER_LOAD_ASSIGNMENT,
        }
    }

    /// The resource type with this type URL, if it is one of ours.
    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// `LDS`, `RDS`, `CDS` or `EDS`, for logs.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Listener => "LDS",
            ResourceType::RouteConfiguration => "RDS",
            ResourceType::Cluster => "CDS",
            ResourceType::ClusterLoadAssignment => "EDS",
        }
    }

    /// The word used for this type in error messages (`listener`, `route_config`, ...).
    pub fn kind(self) -> &'static str {
        match self {
            ResourceType::Listener => "listener",
            ResourceType::RouteConfiguration => "route_config",
            ResourceType::Cluster => "cluster",
            ResourceType::ClusterLoadAssignment => "cluster_load_assignment",
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// A validated resource of any type.
#[derive(Debug, Clone)]
pub enum Resource {
    /// A Listener (LDS).
    Listener(Arc<config::Listener>),
    /// A RouteConfiguration (RDS).
    RouteConfig(Arc<config::RouteConfig>),
    /// A Cluster (CDS).
    Cluster(Arc<config::Cluster>),
    /// A ClusterLoadAssignment (EDS).
    Endpoints(Arc<config::ClusterLoadAssignment>),
    /// A server-side Listener (LDS without `api_listener`, gRFC A36).
    ServerListener(Arc<config::ServerListener>),
}

impl Resource {
    /// The resource name.
    pub fn name(&self) -> &str {
        match self {
            Resource::Listener(l) => &l.name,
            Resource::RouteConfig(r) => &r.name,
            Resource::Cluster(c) => &c.name,
            Resource::Endpoints(e) => &e.cluster_name,
            Resource::ServerListener(l) => &l.name,
        }
    }

    /// Its type.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Resource::Listener(_) | Resource::ServerListener(_) => ResourceType::Listener,
            Resource::RouteConfig(_) => ResourceType::RouteConfiguration,
            Resource::Cluster(_) => ResourceType::Cluster,
            Resource::Endpoints(_) => ResourceType::ClusterLoadAssignment,
        }
    }
}

/// Why a resource was rejected. `name` is set when the resource decoded far enough to be
/// named, so only that resource is NACKed (gRFC A46); `None` means the whole entry is
/// unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    /// The type of the rejected resource (selects the word in the message).
    pub kind: ResourceType,
    /// The resource name, when it could be decoded.
    pub name: Option<String>,
    /// What is wrong, as a field path and a reason, e.g.
    /// `virtual_hosts[0].routes[2].match.safe_regex: invalid regex: ...`.
    pub message: String,
}

impl fmt::Display for ResourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} {name:?}: {}", self.kind.kind(), self.message),
            None => write!(f, "{} (unnamed): {}", self.kind.kind(), self.message),
        }
    }
}

impl std::error::Error for ResourceError {}

/// What validation knows beyond the resource itself: the parts of the bootstrap some rules
/// depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationContext {
    /// The instance names of the bootstrap's `certificate_providers` (gRFC A29): a TLS
    /// context naming any other instance is NACKed. `None`: not checked (any name passes).
    pub cert_provider_instances: Option<BTreeSet<String>>,
}

impl ValidationContext {
    /// The context of a bootstrap: its `certificate_providers` instance names are checked.
    pub fn from_bootstrap(bootstrap: &Bootstrap) -> Self {
        Self::with_cert_provider_instances(bootstrap.certificate_providers.keys().cloned())
    }

    /// A context knowing exactly these certificate provider instances.
    ///
    /// ```
    /// use mesh_client::xds::resource::ValidationContext;
    /// let ctx = ValidationContext::with_cert_provider_instances(["default"]);
    /// assert!(ctx.check_cert_provider_instance("default").is_ok());
    /// assert!(ctx.check_cert_provider_instance("other").is_err());
    /// assert!(ValidationContext::default().check_cert_provider_instance("other").is_ok());
    /// ```
    pub fn with_cert_provider_instances<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ValidationContext {
            cert_provider_instances: Some(names.into_iter().map(Into::into).collect()),
        }
    }

    /// Whether a TLS context may name this certificate provider instance (A29). The error
    /// is a reason, without a field path.
    pub fn check_cert_provider_instance(&self, name: &str) -> Result<(), String> {
        match &self.cert_provider_instances {
            Some(known) if !known.contains(name) => Err(format!(
                "unknown certificate provider instance {name:?} (not in the bootstrap's \
                 certificate_providers)"
            )),
            _ => Ok(()),
        }
    }
}

/// Decodes and validates one resource of type `ty` from a DiscoveryResponse, without the
/// bootstrap checks of [`decode_with`] (certificate provider instances are not looked up).
///
/// Unwraps an `envoy.service.discovery.v3.Resource` wrapper if present, checks the type URL,
/// decodes the protobuf and validates it (see the per-type modules for the rules).
///
/// ```
/// use mesh_client::xds::resource::{decode, ResourceType};
/// use xds_proto::envoy::envoy::config::cluster::v3::Cluster;
///
/// // A Cluster without EDS configuration is NACKed, by name.
/// let any = xds_proto::any::pack(&Cluster { name: "c1".into(), ..Default::default() });
/// let err = decode(ResourceType::Cluster, &any).unwrap_err();
/// assert_eq!(err.name.as_deref(), Some("c1"));
/// assert!(err.to_string().starts_with("cluster \"c1\": "));
/// ```
pub fn decode(ty: ResourceType, any: &Any) -> Result<Resource, ResourceError> {
    decode_with(ty, any, &ValidationContext::default())
}

/// Like [`decode`], with the bootstrap-dependent rules of `ctx` applied: a TLS context
/// naming a certificate provider instance `ctx` does not know is NACKed (gRFC A29).
pub fn decode_with(
    ty: ResourceType,
    any: &Any,
    ctx: &ValidationContext,
) -> Result<Resource, ResourceError> {
    let unnamed = |message: String| ResourceError {
        kind: ty,
        name: None,
        message,
    };
    let wrapped;
    let any = if any.type_url == type_url::RESOURCE_WRAPPER {
        let wrapper = ResourceWrapper::decode(any.value.as_slice())
            .map_err(|e| unnamed(format!("cannot decode Resource wrapper: {e}")))?;
        wrapped = wrapper
            .resource
            .ok_or_else(|| unnamed("Resource wrapper: resource: missing".to_string()))?;
        &wrapped
    } else {
        any
    };
    if any.type_url != ty.type_url() {
        return Err(unnamed(format!(
            "unexpected type {:?}, want {:?}",
            any.type_url,
            ty.type_url()
        )));
    }
    let bytes = any.value.as_slice();
    let decode_err = |e: prost::DecodeError| unnamed(format!("cannot decode: {e}"));
    let named = |name: String| {
        move |message: String| ResourceError {
            kind: ty,
            name: Some(name),
            message,
        }
    };
    match ty {
        ResourceType::Listener => {
            let msg = listener::ListenerProto::decode(bytes).map_err(decode_err)?;
            let name = msg.name.clone();
            if server_listener::is_server_listener(&msg) {
                return server_listener::validate(&msg, ctx)
                    .map(|l| Resource::ServerListener(Arc::new(l)))
                    .map_err(named(name));
            }
            listener::validate(msg)
                .map(|l| Resource::Listener(Arc::new(l)))
                .map_err(named(name))
        }
        ResourceType::RouteConfiguration => {
            let msg = route::RouteConfigurationProto::decode(bytes).map_err(decode_err)?;
            let name = msg.name.clone();
            route::validate(&msg)
                .map(|r| Resource::RouteConfig(Arc::new(r)))
                .map_err(named(name))
        }
        ResourceType::Cluster => {
            let msg = cluster::ClusterProto::decode(bytes).map_err(decode_err)?;
            let name = msg.name.clone();
            cluster::validate(&msg, ctx)
                .map(|c| Resource::Cluster(Arc::new(c)))
                .map_err(named(name))
        }
        ResourceType::ClusterLoadAssignment => {
            let msg = endpoint::ClusterLoadAssignmentProto::decode(bytes).map_err(decode_err)?;
            let name = msg.cluster_name.clone();
            endpoint::validate(&msg)
                .map(|e| Resource::Endpoints(Arc::new(e)))
                .map_err(named(name))
        }
    }
}

/// Converts a protobuf Duration; negative or out-of-range values are invalid.
pub(crate) fn duration(d: &xds_proto::protobuf::Duration) -> Result<std::time::Duration, String> {
    let secs = u64::try_from(d.seconds).map_err(|_| format!("negative duration {d:?}"))?;
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| format!("invalid nanos in duration {d:?}"))?;
    Ok(std::time::Duration::new(secs, nanos))
}

/// Whether a ConfigSource points at the ADS stream (`ads` or `self`), the only sources gRPC
/// clients accept for RDS, EDS and LRS (gRFC A27).
pub(crate) fn is_ads_or_self(
    source: Option<&xds_proto::envoy::envoy::config::core::v3::ConfigSource>,
) -> bool {
    use xds_proto::envoy::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
    matches!(
        source.and_then(|s| s.config_source_specifier.as_ref()),
        Some(ConfigSourceSpecifier::Ads(_) | ConfigSourceSpecifier::Self_(_))
    )
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared helpers for the validation tables.

    use super::*;

    /// What a table row expects.
    pub(crate) enum Expect<T> {
        /// Accepted, and the check holds.
        Accepted(fn(&T) -> bool),
        /// Accepted with the named part ignored (dropped); the check proves it.
        Ignored(&'static str, fn(&T) -> bool),
        /// NACKed with a message containing this.
        Nack(&'static str),
    }

    /// Runs one table of `(row name, resource, expectation)`.
    pub(crate) fn run<T>(
        ty: ResourceType,
        rows: Vec<(&'static str, Any, Expect<T>)>,
        get: fn(Resource) -> Option<Arc<T>>,
    ) {
        run_with(ty, &ValidationContext::default(), rows, get)
    }

    /// Runs one table with a validation context.
    pub(crate) fn run_with<T>(
        ty: ResourceType,
        ctx: &ValidationContext,
        rows: Vec<(&'static str, Any, Expect<T>)>,
        get: fn(Resource) -> Option<Arc<T>>,
    ) {
        let mut failures = Vec::new();
        for (name, any, expect) in rows {
            let got = decode_with(ty, &any, ctx);
            match (expect, got) {
                (Expect::Accepted(check), Ok(r)) => match get(r) {
                    Some(v) if check(&v) => {}
                    _ => failures.push(format!("{name}: check failed")),
                },
                (Expect::Ignored(part, check), Ok(r)) => match get(r) {
                    Some(v) if check(&v) => {}
                    _ => failures.push(format!("{name}: {part} was not ignored")),
                },
                (Expect::Nack(want), Err(e)) => {
                    let msg = e.to_string();
                    if !msg.contains(want) {
                        failures.push(format!("{name}: message {msg:?} lacks {want:?}"));
                    }
                }
                (Expect::Nack(want), Ok(r)) => {
                    failures.push(format!("{name}: accepted {r:?}, want NACK {want:?}"))
                }
                (_, Err(e)) => failures.push(format!("{name}: NACKed: {e}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_proto::any::pack;
    use xds_proto::envoy::envoy::config::endpoint::v3::ClusterLoadAssignment;

    #[test]
    fn resource_types_round_trip() {
        for ty in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(ty.type_url()), Some(ty));
        }
        assert_eq!(
            ResourceType::from_type_url(type_url::RESOURCE_WRAPPER),
            None
        );
        assert_eq!(ResourceType::Cluster.short_name(), "CDS");
    }

    fn cla_any() -> Any {
        pack(&ClusterLoadAssignment {
            cluster_name: "e1".into(),
            ..Default::default()
        })
    }

    #[test]
    fn unwraps_the_resource_wrapper() {
        // A27/xDS: a server may wrap each resource in envoy.service.discovery.v3.Resource.
        let wrapped = pack(&ResourceWrapper {
            name: "e1".into(),
            resource: Some(cla_any()),
            ..Default::default()
        });
        let r = decode(ResourceType::ClusterLoadAssignment, &wrapped).unwrap();
        assert_eq!(r.name(), "e1");
        assert_eq!(r.resource_type(), ResourceType::ClusterLoadAssignment);
        let empty = pack(&ResourceWrapper::default());
        let err = decode(ResourceType::ClusterLoadAssignment, &empty).unwrap_err();
        assert_eq!(err.name, None);
        assert!(err.message.contains("resource: missing"), "{err}");
    }

    #[test]
    fn type_mismatch_and_garbage_are_unnamed() {
        let err = decode(ResourceType::Cluster, &cla_any()).unwrap_err();
        assert_eq!(err.name, None);
        assert!(
            err.to_string()
                .starts_with("cluster (unnamed): unexpected type"),
            "{err}"
        );
        let garbage = Any {
            type_url: type_url::CLUSTER.into(),
            value: vec![0xff, 0xff, 0xff],
        };
        let err = decode(ResourceType::Cluster, &garbage).unwrap_err();
        assert_eq!(err.name, None);
        assert!(err.message.starts_with("cannot decode"), "{err}");
    }

    #[test]
    fn display_names_kind_and_resource() {
        let e = ResourceError {
            kind: ResourceType::Listener,
            name: Some("L1".into()),
            message: "api_listener: missing".into(),
        };
        assert_eq!(e.to_string(), "listener \"L1\": api_listener: missing");
    }

    #[test]
    fn invalid_durations() {
        use xds_proto::protobuf::Duration as PbDuration;
        assert!(
            duration(&PbDuration {
                seconds: -1,
                nanos: 0
            })
            .is_err()
        );
        assert!(
            duration(&PbDuration {
                seconds: 1,
                nanos: 1_000_000_000
            })
            .is_err()
        );
        assert_eq!(
            duration(&PbDuration {
                seconds: 1,
                nanos: 5
            }),
            Ok(std::time::Duration::new(1, 5))
        );
    }
}
