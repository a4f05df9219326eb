//! Benchmarks. `telemetry-cost` (src/bin) measures the throughput cost of telemetry
//! (gRFC A66 metrics, spans, W3C propagation) over a real loopback MeshChannel → MeshServer
//! pair. The criterion micro-benchmarks (`benches/`: picks, route matching, EDS/CDS
//! decode and pool builds, bytes per endpoint) take their inputs from [`micro`]. The
//! end-to-end load bench `mesh-bench` (src/bin) lives in [`e2e`].

pub mod e2e;
pub mod micro;
