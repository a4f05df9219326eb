//! Our versions of gRPC's xDS interop test client and server (`interop-client`,
//! `interop-server`), built to behave like grpc-go's `interop/xds/client` and
//! `interop/xds/server` so the interop suite can pair them with other implementations.
//!
//! Server side: [`test_service`] (TestService honouring [`behavior`]'s `rpc-behavior`),
//! [`health`] (maintenance-port health and `XdsUpdateHealthService`). Client side:
//! [`rpc_config`] (what to send), [`sender`] (the paced send loop), [`stats`]
//! (`LoadBalancerStatsService`), [`configure`] (`XdsUpdateClientConfigureService`),
//! [`capture`] (header/trailer bookkeeping). Both: [`shutdown`].

pub mod behavior;
pub mod capture;
pub mod configure;
pub mod health;
pub mod rpc_config;
pub mod sender;
pub mod shutdown;
pub mod stats;
pub mod test_service;
