//! Criterion: one pick by each picker (round robin, least request A48, ring hash A42,
//! peak EWMA, weighted round robin A58) over 10 / 1 000 / 10 000 READY endpoints.
//!
//! The pools come from `ClusterPool::for_bench` (mesh-client's `bench` feature): ready
//! endpoints with no connection behind them, so only the picker is timed. WRR has no ORCA
//! reports here, so it runs its equal-weight schedule. `pick_floor` times what a pick may
//! pay besides its picker: the thread-local random source, and the clock that peak EWMA and
//! WRR read (the coarse one; the precise `now_ns` for comparison).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mesh_client::balance::load::{DEFAULT_EWMA_DECAY, DEFAULT_RTT};
use mesh_client::balance::ring_hash::{DEFAULT_MIN_RING, RING_SIZE_CAP};
use mesh_client::balance::wrr::WrrParams;
use mesh_client::balance::{ClusterPool, DEFAULT_CHOICE_COUNT, PickContext};
use mesh_client::config::LbPolicy;

fn policies() -> Vec<(&'static str, LbPolicy)> {
    vec![
        ("round_robin", LbPolicy::RoundRobin),
        (
            "least_request",
            LbPolicy::LeastRequest {
                choice_count: DEFAULT_CHOICE_COUNT,
            },
        ),
        (
            "ring_hash",
            LbPolicy::RingHash {
                min_ring: DEFAULT_MIN_RING,
                max_ring: RING_SIZE_CAP,
                request_hash_header: None,
            },
        ),
        (
            "peak_ewma",
            LbPolicy::PeakEwma {
                decay: DEFAULT_EWMA_DECAY,
                default_rtt: DEFAULT_RTT,
            },
        ),
        (
            "wrr",
            LbPolicy::WeightedRoundRobin(WrrParams {
                blackout_period: Duration::from_secs(10),
                weight_expiration_period: Duration::from_secs(180),
                weight_update_period: Duration::from_secs(1),
                error_utilization_penalty: 1.0,
            }),
        ),
    ]
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (name, policy) in policies() {
        for n in [10usize, 1_000, 10_000] {
            let pool = ClusterPool::for_bench(&policy, n);
            // A different request hash each pick (what a ring-hash route's hash_policy
            // yields); the other pickers ignore it.
            let mut hash = 0x9e37_79b9_7f4a_7c15u64;
            group.bench_with_input(BenchmarkId::new(name, n), &pool, |b, pool| {
                b.iter(|| {
                    hash = hash.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let ctx = PickContext {
                        hash: Some(hash),
                        headers: None,
                    };
                    black_box(pool.pick(black_box(&ctx)).map(|e| e.addr()))
                })
            });
        }
    }
    group.finish();
}

/// What a pick may pay besides its picker: `ClusterPool::pick` takes the thread's random
/// source, and peak EWMA and WRR read the coarse clock (`coarse_now_ns`; `now_ns` is the
/// precise clock RTTs are timed with).
fn floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick_floor");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    group.bench_function("now_ns", |b| b.iter(mesh_client::balance::now_ns));
    group.bench_function("coarse_now_ns", |b| {
        b.iter(mesh_client::balance::coarse_now_ns)
    });
    group.bench_function("rand_rng_u32", |b| {
        b.iter(|| rand::Rng::random::<u32>(&mut rand::rng()))
    });
    group.finish();
}

criterion_group!(benches, floor, pick);
criterion_main!(benches);
