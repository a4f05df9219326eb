//! Circuit breaking (gRFC A32): at most `max_requests` requests in flight to a cluster,
//! counted across every channel in the process (default 1024). A request over the limit
//! fails with UNAVAILABLE, is counted as a drop, and is never retried.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use super::SharedRegistry;

/// gRFC A32's default `max_requests`.
pub const DEFAULT_MAX_REQUESTS: u32 = 1024;

/// The process-wide counters of one cluster.
#[derive(Debug, Default)]
pub struct BreakerCounters {
    in_flight: AtomicU32,
    drops: AtomicU64,
}

static COUNTERS: LazyLock<SharedRegistry<BreakerCounters>> = LazyLock::new(SharedRegistry::new);

/// The circuit breaker of one cluster, as the current config sets it.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    max_requests: u32,
    counters: Arc<BreakerCounters>,
}

/// One admitted request; dropping it frees its slot.
#[derive(Debug)]
pub struct BreakerGuard {
    counters: Arc<BreakerCounters>,
}

impl Drop for BreakerGuard {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl CircuitBreaker {
    /// The breaker of `cluster`, sharing its counters with every other channel in the
    /// process; `max_requests` `None` is A32's default of 1024.
    pub fn for_cluster(cluster: &str, max_requests: Option<u32>) -> Self {
        CircuitBreaker {
            max_requests: max_requests.unwrap_or(DEFAULT_MAX_REQUESTS),
            counters: COUNTERS.get_or_insert(cluster, BreakerCounters::default),
        }
    }

    /// Admits one request, or `None` (and counts a drop) when `max_requests` are in flight.
    pub fn try_acquire(&self) -> Option<BreakerGuard> {
        let admitted = self
            .counters
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_requests).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            Some(BreakerGuard {
                counters: self.counters.clone(),
            })
        } else {
            self.counters.drops.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// The limit.
    pub fn max_requests(&self) -> u32 {
        self.max_requests
    }

    /// Requests in flight to the cluster, process-wide.
    pub fn in_flight(&self) -> u32 {
        self.counters.in_flight.load(Ordering::Acquire)
    }

    /// Requests dropped by the breaker so far, process-wide.
    pub fn drops(&self) -> u64 {
        self.counters.drops.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_shared_across_instances() {
        let a = CircuitBreaker::for_cluster("breaker-test-cluster", Some(2));
        let b = CircuitBreaker::for_cluster("breaker-test-cluster", Some(2));
        let g1 = a.try_acquire().unwrap();
        let _g2 = b.try_acquire().unwrap();
        assert!(a.try_acquire().is_none());
        assert_eq!((a.in_flight(), a.drops()), (2, 1));
        drop(g1);
        assert!(b.try_acquire().is_some());
        let other = CircuitBreaker::for_cluster("breaker-test-other", None);
        assert_eq!((other.in_flight(), other.max_requests()), (0, 1024));
    }
}
