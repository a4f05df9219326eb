//! The xDS client: ADS protocol state, transport, resource validation, cache and watchers,
//! and the dependency manager that turns LDS→RDS→CDS→EDS into one [`crate::config::TargetConfig`].

pub mod protocol;
pub mod resource;
