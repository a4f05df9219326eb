//! Decoding and validation of xDS resources into [`crate::config`] values (gRFC A27, A28, A46).
//!
//! TEMPORARY STAND-IN: the real validators are being written in another branch with exactly
//! this API. This version only checks the type URL, decodes, and converts the minimum.

use std::sync::Arc;

use prost::Message;
use xds_proto::protobuf::Any;

use crate::config;

/// The four xDS resource types the client consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// LDS.
    Listener,
    /// RDS.
    RouteConfiguration,
    /// CDS.
    Cluster,
    /// EDS.
    ClusterLoadAssignment,
}

impl ResourceType {
    /// All types, in dependency order.
    pub const ALL: [ResourceType; 4] = [
        ResourceType::Listener,
        ResourceType::RouteConfiguration,
        ResourceType::Cluster,
        ResourceType::ClusterLoadAssignment,
    ];

    /// The type URL.
    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Listener => xds_proto::type_url::LISTENER,
            ResourceType::RouteConfiguration => xds_proto::type_url::ROUTE_CONFIGURATION,
            ResourceType::Cluster => xds_proto::type_url::CLUSTER,
            ResourceType::ClusterLoadAssignment => xds_proto::type_url::CLUSTER_LOAD_ASSIGNMENT,
        }
    }

    /// The type for a type URL.
    pub fn from_type_url(url: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// `LDS`, `RDS`, `CDS` or `EDS`.
    pub fn short_name(self) -> &'static str {
        xds_proto::type_url::short_name(self.type_url())
    }
}

/// A validated resource.
#[derive(Debug, Clone)]
pub enum Resource {
    /// LDS.
    Listener(Arc<config::Listener>),
    /// RDS.
    RouteConfig(Arc<config::RouteConfig>),
    /// CDS.
    Cluster(Arc<config::Cluster>),
    /// EDS.
    Endpoints(Arc<config::ClusterLoadAssignment>),
}

impl Resource {
    /// The resource name.
    pub fn name(&self) -> &str {
        match self {
            Resource::Listener(l) => &l.name,
            Resource::RouteConfig(r) => &r.name,
            Resource::Cluster(c) => &c.name,
            Resource::Endpoints(e) => &e.cluster_name,
        }
    }

    /// Its type.
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Resource::Listener(_) => ResourceType::Listener,
            Resource::RouteConfig(_) => ResourceType::RouteConfiguration,
            Resource::Cluster(_) => ResourceType::Cluster,
            Resource::Endpoints(_) => ResourceType::ClusterLoadAssignment,
        }
    }
}

/// Why a resource was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceError {
    /// The resource name, when it could be decoded.
    pub name: Option<String>,
    /// What is wrong, with a field path.
    pub message: String,
}

impl std::fmt::Display for ResourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "resource \"{n}\": {}", self.message),
            None => write!(f, "resource (unnamed): {}", self.message),
        }
    }
}

/// Decodes and validates one resource (STAND-IN: minimal conversion).
pub fn decode(ty: ResourceType, any: &Any) -> Result<Resource, ResourceError> {
    use xds_proto::envoy::envoy::config;
    let err = |name: Option<String>, m: &str| ResourceError {
        name,
        message: m.to_string(),
    };
    if any.type_url != ty.type_url() {
        return Err(err(None, "wrong type url"));
    }
    let bytes = any.value.as_slice();
    match ty {
        ResourceType::Listener => {
            let l = config::listener::v3::Listener::decode(bytes)
                .map_err(|e| err(None, &e.to_string()))?;
            if l.api_listener.is_none() {
                return Err(err(Some(l.name), "api_listener: missing"));
            }
            Ok(Resource::Listener(Arc::new(crate::config::Listener {
                name: l.name.clone(),
                http: crate::config::HttpConnectionManager {
                    route_source: crate::config::RouteSource::Rds(format!("{}-route", l.name)),
                    http_filters: vec![],
                    max_stream_duration: None,
                },
            })))
        }
        ResourceType::RouteConfiguration => {
            let r = config::route::v3::RouteConfiguration::decode(bytes)
                .map_err(|e| err(None, &e.to_string()))?;
            Ok(Resource::RouteConfig(Arc::new(crate::config::RouteConfig {
                name: r.name,
                virtual_hosts: vec![],
            })))
        }
        ResourceType::Cluster => {
            let c = config::cluster::v3::Cluster::decode(bytes)
                .map_err(|e| err(None, &e.to_string()))?;
            Ok(Resource::Cluster(Arc::new(crate::config::Cluster {
                name: c.name.clone(),
                kind: crate::config::ClusterKind::Eds {
                    service_name: c.name,
                },
                lb_policy: crate::config::LbPolicy::RoundRobin,
                max_requests: None,
            })))
        }
        ResourceType::ClusterLoadAssignment => {
            let e = config::endpoint::v3::ClusterLoadAssignment::decode(bytes)
                .map_err(|e| err(None, &e.to_string()))?;
            Ok(Resource::Endpoints(Arc::new(
                crate::config::ClusterLoadAssignment {
                    cluster_name: e.cluster_name,
                    localities: vec![],
                },
            )))
        }
    }
}
