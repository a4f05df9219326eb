//! The cross-implementation xDS interop suite (issue 4, DESIGN §7): gRPC's xDS interop
//! scenarios (`doc/xds-test-descriptions.md` in grpc/grpc) run for a matrix of (client,
//! server, control plane) rows, with grpc-go's interop binaries and ours as peers and the
//! go-control-plane program or mesh-control serving the same Envoy JSON resources.
//!
//! See `tests/interop/README.md` for the layout and how to add a scenario.

pub mod check;
pub mod control;
pub mod csds;
pub mod gobuild;
pub mod peer;
pub mod probe;
pub mod runner;
pub mod scenario;
