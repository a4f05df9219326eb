//! Benchmarks. `telemetry-cost` (src/bin) measures the throughput cost of telemetry
//! (gRFC A66 metrics, spans, W3C propagation) over a real loopback MeshChannel → MeshServer
//! pair; criterion micro-benchmarks and the end-to-end load bench come with the
//! performance issue.
