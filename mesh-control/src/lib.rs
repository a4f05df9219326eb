//! `mesh-control`: a small development control plane for the mesh.
//!
//! It reads a `mesh.yaml` ([`MeshConfig`]), translates it into xDS resources named the way
//! Istio names them for proxyless gRPC ([`translate()`]), and serves them over ADS v3, state
//! of the world or delta xDS ([`ControlPlane`]), to our Rust clients and to real gRPC
//! clients.
//! Servers get their inbound Listeners (gRFC A36) with RBAC (gRFC A41) from the same
//! translation ([`inbound_listener_name`]). Services may use mTLS with SPIFFE identities
//! ([`MtlsMode`], [`spiffe`], [`tls`]), with certificates from the development CA ([`ca`]).
//! [`bootstrap_json`] and [`bootstrap_json_with_certs`] write the matching gRPC bootstrap.

pub mod ads;
pub mod bootstrap;
pub mod ca;
mod delta;
pub mod describe;
pub mod duration;
pub mod envoy_json;
pub mod error;
pub mod inbound;
#[cfg(test)]
mod inbound_tests;
pub mod model;
#[cfg(test)]
mod mtls_tests;
pub mod outlier;
pub mod raw;
mod rbac;
pub mod reload;
pub mod server;
pub mod spiffe;
mod stream;
pub mod tls;
pub mod translate;
#[cfg(test)]
mod translate_tests;
mod validate;

pub use ads::AdsStats;
pub use bootstrap::{bootstrap_json, bootstrap_json_with_cert_refresh, bootstrap_json_with_certs};
pub use describe::{describe, describe_services};
pub use error::{ConfigError, ServeError};
pub use inbound::{inbound_listener_name, inbound_route_name};
pub use model::{
    Authorization, AuthorizationPolicy, AuthorizationRules, Destination, Endpoint, HeaderMatch,
    Health, Locality, MeshConfig, MtlsMode, PerRouteAuthorization, RbacAction, Route, RouteMatch,
    Service, Subset, WeightedDestination,
};
pub use outlier::OutlierDetection;
pub use server::{ControlPlane, RunningControlPlane};
pub use translate::{Snapshot, cluster_name, listener_name, translate};
