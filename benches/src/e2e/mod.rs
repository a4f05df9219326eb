//! The end-to-end load bench `mesh-bench` (issue 9): unary and server-streaming gRPC over
//! loopback between a client process and a server process pinned to separate cores, for
//! the floor (raw TCP), the bare-tonic baselines, the mesh (MeshChannel + MeshServer under
//! mesh-control, gRFC A27 / A36), a sidecar model (two nginx proxies) and grpc-go's
//! proxyless xDS, all in one run; plus the client memory with many clusters configured
//! over xDS ([`memory`]).

pub mod memory;
pub mod nginx;
pub mod report;
pub mod roles;
pub mod run;
pub mod service;
pub mod tcp;
pub mod workload;
