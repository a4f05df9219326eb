//! Bytes per endpoint (issue 9's memory goal), counted by dhat's global allocator: the live
//! heap (`HeapStats::curr_bytes`) before and after each step of an EDS update of N endpoints
//! (gRFC A27): the decoded, validated ClusterLoadAssignment; the endpoint connections
//! created for it (state, load atomics and the connection task, not yet connected, so no
//! HTTP/2 or socket buffers); and the cluster's pool (round robin, ring hash). Not criterion:
//! it prints one table. `cargo bench -p mesh-benches --bench memory`.

use std::time::Duration;

use mesh_benches::micro;
use mesh_client::balance::ClusterPool;
use mesh_client::balance::ring_hash::{DEFAULT_MIN_RING, RING_SIZE_CAP};
use mesh_client::config::LbPolicy;
use mesh_client::transport::{ConnectSettings, ConnectionSet};
use mesh_client::xds::resource::{Resource, ResourceType, decode};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn live() -> usize {
    dhat::HeapStats::get().curr_bytes
}

fn live_blocks() -> usize {
    dhat::HeapStats::get().curr_blocks
}

fn per(bytes: usize, n: usize) -> f64 {
    bytes as f64 / n as f64
}

fn main() {
    // `cargo bench` passes `--bench`; a filter, if any, is ignored.
    let _profiler = dhat::Profiler::builder().testing().build();
    let rt = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    };
    // Connection tasks are spawned but never run: nothing is dialled.
    let _enter = rt.enter();
    println!(
        "bytes per endpoint (live heap, dhat allocator; sizes: EndpointConnection {} B, \
         config::Endpoint {} B)",
        std::mem::size_of::<mesh_client::transport::EndpointConnection>(),
        std::mem::size_of::<mesh_client::config::Endpoint>(),
    );
    println!(
        "{:>8}  {:>12}  {:>12}  {:>12}  {:>10}  {:>10}  {:>14}",
        "N", "decoded CLA", "connections", "conn allocs", "RR pool", "ring pool", "CLA+conn+RR"
    );
    for n in [1_000usize, 10_000] {
        let any = micro::cla("backend", n);
        let before = live();
        let cla = match decode(ResourceType::ClusterLoadAssignment, &any) {
            Ok(Resource::Endpoints(cla)) => cla,
            other => panic!("the bench's EDS resource did not decode: {other:?}"),
        };
        let cla_bytes = live() - before;

        let conns = ConnectionSet::new(ConnectSettings::default());
        let (before, blocks_before) = (live(), live_blocks());
        let first = ClusterPool::build("backend", &LbPolicy::RoundRobin, &cla, &conns, None, None);
        let (cold, cold_blocks) = (live() - before, live_blocks() - blocks_before);

        let (before, blocks_before) = (live(), live_blocks());
        let rr = ClusterPool::build("backend", &LbPolicy::RoundRobin, &cla, &conns, None, None);
        let rr_bytes = live() - before;
        let conn_bytes = cold.saturating_sub(rr_bytes);
        let conn_blocks = cold_blocks.saturating_sub(live_blocks() - blocks_before);

        let ring_policy = LbPolicy::RingHash {
            min_ring: DEFAULT_MIN_RING,
            max_ring: RING_SIZE_CAP,
            request_hash_header: None,
        };
        let before = live();
        let ring = ClusterPool::build("backend", &ring_policy, &cla, &conns, None, None);
        let ring_bytes = live() - before;

        println!(
            "{:>8}  {:>12.0}  {:>12.0}  {:>12.1}  {:>10.0}  {:>10.0}  {:>14.0}",
            n,
            per(cla_bytes, n),
            per(conn_bytes, n),
            per(conn_blocks, n),
            per(rr_bytes, n),
            per(ring_bytes, n),
            per(cla_bytes + conn_bytes + rr_bytes, n),
        );
        drop((ring, rr, first, conns, cla));
    }
    // Let the untouched connection tasks go with the runtime.
    drop(_enter);
    rt.shutdown_timeout(Duration::from_secs(1));
}
