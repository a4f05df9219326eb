//! Criterion: applying xDS updates (gRFC A27). EDS with 1 000 / 10 000 / 100 000 endpoints:
//! decode + validate (`xds::resource::decode`), and the whole apply (decode + build the
//! cluster's round-robin pool with `ClusterPool::build`, the endpoints' connections already
//! known: a steady-state update); at 1 000 / 10 000 also the build alone (round robin, ring
//! hash) and a first-sight build (a connection task spawned per endpoint). CDS: a
//! DiscoveryResponse of 1 000 / 10 000 clusters, from wire bytes to validated clusters.
//!
//! `ClusterPool::build` spawns connection tasks; it runs inside a current-thread tokio
//! runtime that is never driven, so no task runs and nothing is dialled.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use mesh_benches::micro;
use mesh_client::balance::ClusterPool;
use mesh_client::balance::ring_hash::{DEFAULT_MIN_RING, RING_SIZE_CAP};
use mesh_client::config::{ClusterLoadAssignment, LbPolicy};
use mesh_client::transport::{ConnectSettings, ConnectionSet};
use mesh_client::xds::resource::{Resource, ResourceType, decode};
use prost::Message;
use xds_proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;

fn decode_cla(any: &xds_proto::protobuf::Any) -> std::sync::Arc<ClusterLoadAssignment> {
    match decode(ResourceType::ClusterLoadAssignment, any) {
        Ok(Resource::Endpoints(cla)) => cla,
        other => panic!("the bench's EDS resource did not decode: {other:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().build() {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

fn eds(c: &mut Criterion) {
    let mut group = c.benchmark_group("eds");
    // Flat: the same iteration count per sample, so a 100 000-endpoint build (seconds)
    // runs 10 times, not 55.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let round_robin = LbPolicy::RoundRobin;
    let ring_hash = LbPolicy::RingHash {
        min_ring: DEFAULT_MIN_RING,
        max_ring: RING_SIZE_CAP,
        request_hash_header: None,
    };
    for n in [1_000usize, 10_000, 100_000] {
        // At 100 000 only decode and the whole apply run: a build there takes seconds
        // (build = apply - decode).
        let small = n <= 10_000;
        let any = micro::cla("backend", n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("decode", n), &any, |b, any| {
            b.iter(|| decode_cla(black_box(any)))
        });

        let cla = decode_cla(&any);
        let rt = runtime();
        let _enter = rt.enter();
        let conns = ConnectionSet::new(ConnectSettings::default());
        // Every endpoint's connection now exists: later builds reuse them.
        let first = ClusterPool::build("backend", &round_robin, &cla, &conns, None, None);
        assert_eq!(first.endpoints().count(), n);
        group.bench_with_input(BenchmarkId::new("apply_rr", n), &any, |b, any| {
            b.iter(|| {
                let cla = decode_cla(black_box(any));
                ClusterPool::build("backend", &round_robin, &cla, &conns, None, None)
            })
        });
        if !small {
            continue;
        }
        for (name, policy) in [("build_rr", &round_robin), ("build_ring_hash", &ring_hash)] {
            group.bench_with_input(BenchmarkId::new(name, n), &cla, |b, cla| {
                b.iter(|| ClusterPool::build("backend", policy, cla, &conns, None, None))
            });
        }
        // First sight of every endpoint: a fresh connection set (and runtime, whose queued
        // connection tasks are dropped untimed) per build.
        group.bench_with_input(BenchmarkId::new("build_rr_cold", n), &cla, |b, cla| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let rt = runtime();
                    let _enter = rt.enter();
                    let conns = ConnectionSet::new(ConnectSettings::default());
                    let start = Instant::now();
                    let pool = ClusterPool::build("backend", &round_robin, cla, &conns, None, None);
                    total += start.elapsed();
                    drop(pool);
                    drop(conns);
                }
                total
            })
        });
    }
    group.finish();
}

fn cds(c: &mut Criterion) {
    let mut group = c.benchmark_group("cds");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [1_000usize, 10_000] {
        let wire = micro::cds_response(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("decode_response", n), &wire, |b, wire| {
            b.iter(|| {
                let response = match DiscoveryResponse::decode(black_box(wire.as_slice())) {
                    Ok(r) => r,
                    Err(e) => panic!("CDS response: {e}"),
                };
                let clusters: Vec<Resource> = response
                    .resources
                    .iter()
                    .filter_map(|any| decode(ResourceType::Cluster, any).ok())
                    .collect();
                assert_eq!(clusters.len(), n);
                clusters
            })
        });
    }
    group.finish();
}

criterion_group!(benches, eds, cds);
criterion_main!(benches);
