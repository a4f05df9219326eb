//! Picker tests over fake endpoints (no network): distributions with fixed seeds and a
//! virtual-time simulation for the load-aware policies. Measured numbers are printed
//! (`cargo test -p mesh-client --lib balance -- --nocapture`).

use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::transport::{ConnectivityState, EndpointConnection};

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8 + 1], 8080))
}

fn member(i: usize, weight: u64) -> Member {
    Member {
        conn: EndpointConnection::test_ready(addr(i)),
        rr_weight: weight,
        ring_weight: weight,
        hash_key: addr(i).to_string(),
        outlier: None,
    }
}

fn pool(policy: LbPolicy, n: usize) -> ClusterPool {
    ClusterPool::from_priorities("c", &policy, vec![(0..n).map(|i| member(i, 1)).collect()])
}

fn index_of(pool: &ClusterPool, ep: &EndpointConnection) -> usize {
    pool.endpoints()
        .position(|e| e.addr() == ep.addr())
        .unwrap_or(usize::MAX)
}

fn ring_policy() -> LbPolicy {
    LbPolicy::RingHash {
        min_ring: 1024,
        max_ring: 4096,
        request_hash_header: None,
    }
}

#[test]
fn empty_pool_reports_no_endpoints() {
    let pool = ClusterPool::from_priorities("c", &LbPolicy::RoundRobin, vec![]);
    assert_eq!(
        pool.pick(&PickContext::default()).err(),
        Some(PickError::NoEndpoints)
    );
}

#[test]
fn round_robin_spreads_within_3_percent() {
    let pool = pool(LbPolicy::RoundRobin, 3);
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        let ep = pool.pick(&PickContext::default());
        if let Ok(ep) = ep {
            counts[index_of(&pool, ep)] += 1;
        }
    }
    println!("round robin, 3000 picks over 3 endpoints: {counts:?}");
    for c in counts {
        assert!((970..=1030).contains(&c), "{counts:?}");
    }
}

#[test]
fn round_robin_follows_weights_and_skips_not_ready() {
    let pool = ClusterPool::from_priorities(
        "c",
        &LbPolicy::RoundRobin,
        vec![vec![member(0, 3), member(1, 1), member(2, 1)]],
    );
    let mut counts = [0usize; 3];
    for _ in 0..5000 {
        if let Ok(ep) = pool.pick(&PickContext::default()) {
            counts[index_of(&pool, ep)] += 1;
        }
    }
    println!("round robin weights 3:1:1 over 5000 picks: {counts:?}");
    assert_eq!(counts, [3000, 1000, 1000]);
    if let Some(ep) = pool.endpoints().next() {
        ep.test_set_state(ConnectivityState::TransientFailure);
    }
    for _ in 0..100 {
        let ep = pool.pick(&PickContext::default());
        assert!(ep.is_ok_and(|e| e.addr() != addr(0)));
    }
}

#[test]
fn priorities_fail_over_to_the_first_with_a_ready_endpoint() {
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::LeastRequest { choice_count: 2 },
        ring_policy(),
        LbPolicy::PeakEwma {
            decay: DEFAULT_EWMA_DECAY_FOR_TESTS,
            default_rtt: Duration::from_millis(30),
        },
    ] {
        let p0 = vec![member(0, 1), member(1, 1)];
        let p1 = vec![member(2, 1)];
        let pool = ClusterPool::from_priorities("c", &policy, vec![p0, p1]);
        let mut rng = StdRng::seed_from_u64(1);
        let ctx = PickContext::default();
        let first = pool.pick_with(&ctx, &mut rng, 0).map(|e| e.addr());
        assert!(first.is_ok_and(|a| a != addr(2)), "{policy:?}");
        for ep in pool.endpoints().take(2) {
            ep.test_set_state(ConnectivityState::TransientFailure);
        }
        let next = pool.pick_with(&ctx, &mut rng, 0).map(|e| e.addr());
        assert_eq!(next, Ok(addr(2)), "{policy:?}");
        for ep in pool.endpoints() {
            ep.test_set_state(ConnectivityState::TransientFailure);
        }
        assert!(
            matches!(
                pool.pick_with(&ctx, &mut rng, 0),
                Err(PickError::AllFailed { .. })
            ),
            "{policy:?}"
        );
    }
}

const DEFAULT_EWMA_DECAY_FOR_TESTS: Duration = Duration::from_secs(10);

/// Drives `pool` with one request every `interval` of virtual time for `requests` requests;
/// endpoint `i` answers after `latency(i)`. Returns picks per endpoint.
fn simulate(
    pool: &ClusterPool,
    requests: usize,
    interval: u64,
    latency: impl Fn(usize) -> u64,
    seed: u64,
) -> Vec<usize> {
    let n = pool.endpoints().count();
    let mut counts = vec![0usize; n];
    let mut rng = StdRng::seed_from_u64(seed);
    let mut in_flight: Vec<(u64, InFlightGuard)> = Vec::new();
    let ctx = PickContext::default();
    for k in 0..requests {
        let now = k as u64 * interval;
        // Complete every request whose response is due.
        let mut i = 0;
        while i < in_flight.len() {
            if in_flight.get(i).is_some_and(|(due, _)| *due <= now) {
                let (due, guard) = in_flight.swap_remove(i);
                guard.complete_at(due);
            } else {
                i += 1;
            }
        }
        let Ok(ep) = pool.pick_with(&ctx, &mut rng, now) else {
            continue;
        };
        let idx = index_of(pool, ep);
        if let Some(c) = counts.get_mut(idx) {
            *c += 1;
        }
        in_flight.push((now + latency(idx), ep.load().start_at(now)));
    }
    counts
}

const MS: u64 = 1_000_000;

/// 10 endpoints, endpoint 0 answers in 100 ms, the others in 10 ms; 1000 requests/s.
fn slow_endpoint_share(policy: LbPolicy, seed: u64) -> f64 {
    let pool = pool(policy, 10);
    let counts = simulate(
        &pool,
        20_000,
        MS,
        |i| if i == 0 { 100 * MS } else { 10 * MS },
        seed,
    );
    let total: usize = counts.iter().sum();
    let share = counts.first().copied().unwrap_or(0) as f64 / total.max(1) as f64;
    println!(
        "{:?}: slow endpoint got {:.2} % ({} of {total}); picks {counts:?}",
        pool.policy(),
        share * 100.0,
        counts.first().copied().unwrap_or(0)
    );
    share
}

#[test]
fn least_request_avoids_a_10x_slower_endpoint() {
    let share = slow_endpoint_share(LbPolicy::LeastRequest { choice_count: 2 }, 7);
    assert!(share < 0.05, "{share}");
}

#[test]
fn peak_ewma_avoids_a_10x_slower_endpoint() {
    let share = slow_endpoint_share(
        LbPolicy::PeakEwma {
            decay: DEFAULT_EWMA_DECAY_FOR_TESTS,
            default_rtt: Duration::from_millis(30),
        },
        7,
    );
    assert!(share < 0.05, "{share}");
}

#[test]
fn least_request_choice_count_samples_that_many() {
    // Endpoint 0 is idle, the nine others have 5 requests in flight each: it wins a pick iff
    // one of the `c` samples (with replacement) hits it, so P = 1 - 0.9^c.
    for (c, expected) in [(2u32, 0.19f64), (3, 0.271), (10, 0.6513)] {
        let pool = pool(LbPolicy::LeastRequest { choice_count: c }, 10);
        let _busy: Vec<InFlightGuard> = pool
            .endpoints()
            .skip(1)
            .flat_map(|e| (0..5).map(|_| e.start_request()))
            .collect();
        let mut rng = StdRng::seed_from_u64(c.into());
        let picks = 20_000;
        let hits = (0..picks)
            .filter(|_| {
                pool.pick_with(&PickContext::default(), &mut rng, 0)
                    .is_ok_and(|e| e.addr() == addr(0))
            })
            .count();
        let got = hits as f64 / picks as f64;
        println!("choice_count {c}: idle endpoint picked {got:.4}, expected {expected:.4}");
        assert!((got - expected).abs() < 0.015, "choice_count {c}: {got}");
    }
}

fn key_owners(ring: &ring_hash::Ring, keys: usize) -> Vec<usize> {
    (0..keys)
        .map(|k| {
            ring.owner(ring_hash::hash_bytes(format!("user-{k}").as_bytes()))
                .unwrap_or(usize::MAX)
        })
        .collect()
}

fn ring_of(n: usize) -> ring_hash::Ring {
    let members: Vec<(String, u64)> = (0..n).map(|i| (addr(i).to_string(), 1)).collect();
    ring_hash::Ring::build(&members, 1024, 4096, None)
}

/// Keys whose owner changed, and how many of those went to the added backend.
fn moved_when_adding(n: usize, keys: usize) -> (usize, usize) {
    let before = key_owners(&ring_of(n), keys);
    let after = key_owners(&ring_of(n + 1), keys);
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    let to_new = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b && **b == n)
        .count();
    (moved, to_new)
}

#[test]
fn ring_hash_keys_are_stable_and_move_little_when_a_backend_is_added() {
    let before = key_owners(&ring_of(4), 1000);
    assert_eq!(
        before,
        key_owners(&ring_of(4), 1000),
        "stable across rebuilds"
    );
    let mut per = [0usize; 4];
    for o in &before {
        if let Some(c) = per.get_mut(*o) {
            *c += 1;
        }
    }
    println!("ring hash: 1000 keys over 4 backends: {per:?}");
    for (n, keys) in [(4usize, 1000usize), (9, 1000), (19, 1000)] {
        let (moved, to_new) = moved_when_adding(n, keys);
        let share = 1.0 / (n + 1) as f64;
        println!(
            "ring hash {n} → {} backends: {moved} of {keys} keys moved, {to_new} of them to the new backend \
             (1/N + 5 % = {:.0}; A42 re-quantization bound 2/N + 5 % = {:.0})",
            n + 1,
            keys as f64 * (share + 0.05),
            keys as f64 * (2.0 * share + 0.05)
        );
        // The new backend takes its fair share and no more.
        assert!(
            (to_new as f64) <= keys as f64 * (share + 0.05),
            "{n}: {to_new}"
        );
        // A42's ring keeps about min_ring entries in total, so each old backend drops
        // ~1/(N+1) of its entries and their arcs move too: ~2/(N+1) keys move in all.
        assert!(
            (moved as f64) <= keys as f64 * (2.0 * share + 0.05),
            "{n}: {moved}"
        );
    }
}

#[test]
fn ring_size_follows_weights_and_bounds() {
    let members = vec![("a".to_string(), 3), ("b".to_string(), 1)];
    let ring = ring_hash::Ring::build(&members, 1024, 4096, None);
    assert_eq!(ring.len(), 1024);
    assert_eq!(ring.counts(2), vec![768, 256]);
    // The lightest endpoint needs a whole number of entries: 1:1000 needs 1001 entries
    // at least, but max_ring caps it.
    let members = vec![("a".to_string(), 1), ("b".to_string(), 1000)];
    assert_eq!(ring_hash::Ring::build(&members, 8, 500, None).len(), 500);
    assert_eq!(ring_hash::Ring::build(&members, 8, 4096, None).len(), 1001);
}

#[test]
fn ring_hash_pool_is_sticky_and_walks_past_failed_endpoints() {
    let pool = pool(ring_policy(), 4);
    let mut rng = StdRng::seed_from_u64(3);
    let hash = ring_hash::hash_bytes(b"user-42");
    let ctx = PickContext {
        hash: Some(hash),
        headers: None,
    };
    let owner = pool.pick_with(&ctx, &mut rng, 0).map(|e| e.addr());
    for _ in 0..50 {
        assert_eq!(pool.pick_with(&ctx, &mut rng, 0).map(|e| e.addr()), owner);
    }
    let owner_ep = pool.endpoints().find(|e| Ok(e.addr()) == owner);
    // Still connecting (never failed): the pick waits for its own endpoint.
    if let Some(ep) = owner_ep {
        ep.test_set_state(ConnectivityState::Connecting);
    }
    assert_eq!(
        pool.pick_with(&ctx, &mut rng, 0).err(),
        Some(PickError::Connecting)
    );
    // Failed: the next endpoint clockwise takes over, and keeps the key.
    if let Some(ep) = owner_ep {
        ep.test_set_state(ConnectivityState::TransientFailure);
    }
    let fallback = pool.pick_with(&ctx, &mut rng, 0).map(|e| e.addr());
    assert!(fallback.is_ok() && fallback != owner);
    assert_eq!(
        pool.pick_with(&ctx, &mut rng, 0).map(|e| e.addr()),
        fallback
    );
    // No hash: random, never waits on a connecting endpoint while another is ready.
    if let Some(ep) = owner_ep {
        ep.test_set_state(ConnectivityState::Connecting);
    }
    for _ in 0..50 {
        let got = pool.pick_with(&PickContext::default(), &mut rng, 0);
        assert!(got.is_ok_and(|e| Ok(e.addr()) != owner));
    }
}

#[test]
fn ring_hash_request_hash_header_a76() {
    let policy = LbPolicy::RingHash {
        min_ring: 1024,
        max_ring: 4096,
        request_hash_header: Some("x-key".into()),
    };
    let pool = pool(policy, 8);
    let mut rng = StdRng::seed_from_u64(5);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-key", http::HeaderValue::from_static("alice"));
    let ctx = PickContext {
        // The route's hash is ignored when the header is configured.
        hash: Some(1),
        headers: Some(&headers),
    };
    let first = pool.pick_with(&ctx, &mut rng, 0).map(|e| e.addr());
    let mut seen = std::collections::HashSet::new();
    for i in 0..50 {
        assert_eq!(pool.pick_with(&ctx, &mut rng, 0).map(|e| e.addr()), first);
        let ctx2 = PickContext {
            hash: Some(i),
            headers: Some(&headers),
        };
        seen.insert(pool.pick_with(&ctx2, &mut rng, 0).map(|e| e.addr()).ok());
    }
    assert_eq!(seen.len(), 1);
    // Without the header: a random endpoint per pick.
    let empty = http::HeaderMap::new();
    let ctx = PickContext {
        hash: None,
        headers: Some(&empty),
    };
    let spread: std::collections::HashSet<_> = (0..200)
        .filter_map(|_| pool.pick_with(&ctx, &mut rng, 0).ok().map(|e| e.addr()))
        .collect();
    assert!(spread.len() > 4, "{}", spread.len());
}

#[test]
fn route_hash_policy_a42() {
    use crate::config::{HashPolicy, HashPolicyKind};
    let header = |name: &str, terminal: bool| HashPolicy {
        kind: HashPolicyKind::Header {
            name: name.into(),
            rewrite: None,
        },
        terminal,
    };
    let mut h = http::HeaderMap::new();
    h.insert("x-user", http::HeaderValue::from_static("alice"));
    h.insert("x-tenant", http::HeaderValue::from_static("t1"));
    h.insert("x-id-bin", http::HeaderValue::from_static("AAAA"));
    let alice = ring_hash::hash_bytes(b"alice");
    let t1 = ring_hash::hash_bytes(b"t1");
    assert_eq!(request_hash(&[header("x-user", false)], &h, 9), Some(alice));
    // Combined: rotl(hash, 1) ^ next.
    assert_eq!(
        request_hash(&[header("x-user", false), header("x-tenant", false)], &h, 9),
        Some(alice.rotate_left(1) ^ t1)
    );
    // terminal stops once a hash exists; a missing header yields nothing and does not stop.
    assert_eq!(
        request_hash(&[header("x-user", true), header("x-tenant", false)], &h, 9),
        Some(alice)
    );
    assert_eq!(
        request_hash(&[header("x-none", true), header("x-tenant", false)], &h, 9),
        Some(t1)
    );
    // -bin headers and ignored kinds yield nothing; the channel id is the channel's.
    assert_eq!(request_hash(&[header("x-id-bin", false)], &h, 9), None);
    let ignored = HashPolicy {
        kind: HashPolicyKind::Ignored,
        terminal: false,
    };
    assert_eq!(request_hash(&[ignored], &h, 9), None);
    let chan = HashPolicy {
        kind: HashPolicyKind::ChannelId,
        terminal: false,
    };
    assert_eq!(request_hash(&[chan], &h, 9), Some(9));
    // regex_rewrite: the rewritten value is hashed.
    let rw = HashPolicy {
        kind: HashPolicyKind::Header {
            name: "x-user".into(),
            rewrite: regex::Regex::new("^a(l)ice$")
                .ok()
                .map(|r| (r, "b${1}ob".to_string())),
        },
        terminal: false,
    };
    assert_eq!(
        request_hash(&[rw], &h, 9),
        Some(ring_hash::hash_bytes(b"blob"))
    );
}

/// gRFC A50: an address that failed its calls is ejected at the next sweep and skipped by
/// every policy (it reads as TRANSIENT_FAILURE); the guards of picks count the calls.
#[tokio::test(start_paused = true)]
async fn ejected_endpoints_are_skipped_by_every_policy() {
    use crate::config::{FailurePercentageEjection, OutlierDetection};
    let od = OutlierDetection {
        interval: Duration::from_secs(1),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(300),
        max_ejection_percent: 50,
        success_rate: None,
        failure_percentage: Some(FailurePercentageEjection {
            threshold: 50,
            enforcement_percentage: 100,
            minimum_hosts: 3,
            request_volume: 10,
        }),
    };
    for policy in [
        LbPolicy::RoundRobin,
        LbPolicy::LeastRequest { choice_count: 2 },
        ring_policy(),
        LbPolicy::PeakEwma {
            decay: DEFAULT_EWMA_DECAY_FOR_TESTS,
            default_rtt: Duration::from_millis(30),
        },
    ] {
        let registry = OutlierRegistry::default();
        let detector = registry.detector("c", &od).unwrap();
        let members = (0..3)
            .map(|i| Member {
                outlier: Some(detector.address(addr(i))),
                ..member(i, 1)
            })
            .collect();
        let mut pool = ClusterPool::from_priorities("c", &policy, vec![members]);
        pool.outlier = Some(detector);
        // Endpoint 0 fails every call, the others succeed; the guards count them.
        let mut rng = StdRng::seed_from_u64(3);
        for ep in pool.endpoints() {
            for _ in 0..20 {
                let mut guard = ep.start_request();
                if ep.addr() != addr(0) {
                    guard.record_call(true);
                    guard.complete();
                }
                // Endpoint 0's guard is dropped unrecorded: a failure.
            }
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let ejected: Vec<bool> = pool.endpoints().map(|e| e.is_ejected()).collect();
        assert_eq!(ejected, [true, false, false], "{policy:?}");
        assert_eq!(
            pool.endpoints().next().map(|e| e.state()),
            Some(ConnectivityState::TransientFailure)
        );
        let ctx = PickContext::default();
        for i in 0..300u64 {
            let hashed = PickContext {
                hash: Some(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                ..ctx
            };
            let ep = pool.pick_with(&hashed, &mut rng, 0).map(|e| e.addr());
            assert!(
                ep.as_ref().is_ok_and(|a| *a != addr(0)),
                "{policy:?}: {ep:?}"
            );
        }
    }
}

#[test]
fn priority_health_is_the_usable_share_times_the_factor() {
    assert_eq!(priority_health(140, 3, 3), 1000);
    assert_eq!(priority_health(140, 1, 3), 466);
    assert_eq!(priority_health(100, 1, 2), 500);
    assert_eq!(priority_health(140, 0, 3), 0);
    assert_eq!(priority_health(140, 0, 0), 0);
}

#[test]
fn priority_loads_follow_envoy() {
    // Healthy primary: everything to it.
    assert_eq!(priority_loads(&[1000, 1000]), vec![1000, 0]);
    // A third of the primary left at factor 1.4: 46.6 % stays, the rest spills over.
    assert_eq!(priority_loads(&[466, 1000]), vec![466, 534]);
    // Healths summing below 100 % are scaled up: 28 % + 28 % -> 50 / 50.
    assert_eq!(priority_loads(&[280, 280]), vec![500, 500]);
    // Rounding remainder to the first loaded priority.
    assert_eq!(priority_loads(&[333, 333, 333]), vec![334, 333, 333]);
    assert_eq!(priority_loads(&[0, 0]), Vec::<u32>::new());
    assert_eq!(cumulative(&[466, 534]), vec![466, 1000]);
}

#[test]
fn gentle_failover_spreads_by_priority_load() {
    // gentle_failover's shape: one usable endpoint left of 3 in priority 0, 2 in priority 1,
    // factor 140: 46.6 % to priority 0 (measured over 3000 picks, fixed seed).
    let p0 = vec![member(0, 1)];
    let p1 = vec![member(1, 1), member(2, 1)];
    let mut pool = ClusterPool::from_priorities("c", &LbPolicy::RoundRobin, vec![p0, p1]);
    pool.priority_loads = cumulative(&priority_loads(&[priority_health(140, 1, 3), 1000]));
    let mut rng = StdRng::seed_from_u64(7);
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        if let Ok(ep) = pool.pick_with(&PickContext::default(), &mut rng, 0) {
            counts[index_of(&pool, ep)] += 1;
        }
    }
    println!("gentle failover, 3000 picks (p0: 1 endpoint, p1: 2): {counts:?}");
    assert!((1308..=1488).contains(&counts[0]), "{counts:?}");
    assert!((700..=900).contains(&counts[1]), "{counts:?}");
    assert!((700..=900).contains(&counts[2]), "{counts:?}");
    // The drawn priority not ready: the others are tried, highest first.
    pool.endpoints()
        .next()
        .unwrap()
        .test_set_state(ConnectivityState::TransientFailure);
    for _ in 0..100 {
        let ep = pool
            .pick_with(&PickContext::default(), &mut rng, 0)
            .unwrap();
        assert_ne!(ep.addr(), addr(0));
    }
}

#[tokio::test]
async fn build_counts_unhealthy_endpoints_into_priority_health() {
    use crate::config::{Endpoint, HealthStatus, LocalityEndpoints, LocalityName};
    let ep = |i: usize, health| Endpoint {
        address: SocketAddr::from(([127, 0, 0, 1], 1 + i as u16)),
        weight: 1,
        health,
        hash_key: None,
    };
    let locality = |priority, endpoints| LocalityEndpoints {
        locality: LocalityName {
            zone: format!("z{priority}"),
            ..Default::default()
        },
        weight: 1,
        priority,
        endpoints,
    };
    let mut cla = ClusterLoadAssignment {
        cluster_name: "c".into(),
        localities: vec![
            locality(
                0,
                vec![
                    ep(0, HealthStatus::Unhealthy),
                    ep(1, HealthStatus::Unhealthy),
                    ep(2, HealthStatus::Healthy),
                ],
            ),
            locality(
                1,
                vec![ep(3, HealthStatus::Unknown), ep(4, HealthStatus::Unknown)],
            ),
        ],
        overprovisioning_factor: Some(140),
    };
    let conns = ConnectionSet::new(Default::default());
    let pool = ClusterPool::build("c", &LbPolicy::RoundRobin, &cla, &conns, None, None);
    assert_eq!(pool.priority_loads, vec![466, 1000]);
    assert_eq!(pool.endpoints().count(), 3);
    // Without the factor: gRPC's failover, no loads.
    cla.overprovisioning_factor = None;
    let pool = ClusterPool::build("c", &LbPolicy::RoundRobin, &cla, &conns, None, None);
    assert!(pool.priority_loads.is_empty());
}

/// gRFC A37/A75: an aggregate pool is its leaves' priorities in order, each picking with
/// its own leaf's policy: round robin over the EDS leaf, the first ready address of the
/// LOGICAL_DNS leaf (pick_first); the DNS leaf takes over only when the EDS leaf has no
/// ready endpoint, and gives the traffic back when one returns.
#[test]
fn aggregate_pool_concatenates_leaf_priorities_with_their_own_policies() {
    let eds = ClusterPool::from_priorities(
        "eds",
        &LbPolicy::RoundRobin,
        vec![vec![member(0, 1), member(1, 1)]],
    );
    let dns = ClusterPool::from_priorities(
        "dns",
        &LbPolicy::PickFirst,
        vec![vec![member(2, 1), member(3, 1), member(4, 1)]],
    );
    let wrr = ClusterPool::from_priorities(
        "wrr",
        &LbPolicy::WeightedRoundRobin(wrr::WrrParams {
            blackout_period: Duration::from_secs(10),
            weight_expiration_period: Duration::from_secs(180),
            weight_update_period: Duration::from_secs(1),
            error_utilization_penalty: 0.5,
        }),
        vec![vec![member(5, 1)]],
    );
    let agg = ClusterPool::aggregate("agg", &LbPolicy::RoundRobin, vec![eds, dns, wrr]);
    assert_eq!(agg.name(), "agg");
    let penalties: Vec<Option<f32>> = agg.endpoints().map(|e| e.wrr_penalty()).collect();
    assert_eq!(
        penalties,
        [None, None, None, None, None, Some(0.5)],
        "each leaf's own policy (A75)"
    );
    let picks = |n: usize| {
        let mut counts = [0usize; 6];
        for _ in 0..n {
            if let Ok(ep) = agg.pick(&PickContext::default()) {
                counts[index_of(&agg, ep)] += 1;
            }
        }
        counts
    };
    let healthy = picks(1000);
    println!("aggregate, EDS healthy, 1000 picks: {healthy:?}");
    assert_eq!(healthy, [500, 500, 0, 0, 0, 0]);

    let eps: Vec<&PoolEndpoint> = agg.endpoints().collect();
    eps[0].test_set_state(ConnectivityState::TransientFailure);
    eps[1].test_set_state(ConnectivityState::Connecting);
    eps[2].test_set_state(ConnectivityState::TransientFailure);
    let failed_over = picks(1000);
    println!("aggregate, EDS down, first DNS address down, 1000 picks: {failed_over:?}");
    assert_eq!(
        failed_over,
        [0, 0, 0, 1000, 0, 0],
        "pick_first: the first ready address"
    );

    eps[1].test_set_state(ConnectivityState::Ready);
    assert_eq!(picks(100), [0, 100, 0, 0, 0, 0], "back to the EDS leaf");
}
