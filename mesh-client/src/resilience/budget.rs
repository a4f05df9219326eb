//! Retry budgets (ours; gRPC has none, Envoy's `retry_budget` limits concurrency): retries
//! to a cluster may add at most `ratio` of its requests over the last `ttl`, plus a reserve
//! of `min_retries_per_second × ttl`, so retries can never multiply the load of an outage.
//! This is Finagle's and linkerd2-proxy's budget. Every original request deposits `ratio`,
//! every retry withdraws 1; the window is ten buckets of atomics, so no lock per request.
//! Budgets are shared per cluster by every channel in the process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use super::SharedRegistry;
use crate::config::RetryBudgetConfig;

const BUCKETS: usize = 10;

#[derive(Debug, Default)]
struct Bucket {
    epoch: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// The shared state of one cluster's budget.
#[derive(Debug)]
pub struct BudgetState {
    config: RetryBudgetConfig,
    start: Instant,
    bucket_ms: u64,
    buckets: [Bucket; BUCKETS],
    exhausted: AtomicU64,
}

static BUDGETS: LazyLock<SharedRegistry<BudgetState>> = LazyLock::new(SharedRegistry::new);

/// A cluster's retry budget.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    state: Arc<BudgetState>,
}

impl RetryBudget {
    /// The budget of `cluster` under `config`, shared process-wide (a changed config starts a
    /// fresh window).
    pub fn for_cluster(cluster: &str, config: RetryBudgetConfig) -> Self {
        let key = format!(
            "{cluster}|{}|{}|{}",
            config.ratio,
            config.min_retries_per_second,
            config.ttl.as_millis()
        );
        RetryBudget {
            state: BUDGETS.get_or_insert(&key, || BudgetState::new(config)),
        }
    }

    /// A budget of its own (not shared), for tests.
    pub fn standalone(config: RetryBudgetConfig) -> Self {
        RetryBudget {
            state: Arc::new(BudgetState::new(config)),
        }
    }

    /// Records an original request.
    pub fn deposit(&self) {
        self.state.bucket().requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget; `false` (and counted as exhausted) when empty.
    pub fn try_withdraw(&self) -> bool {
        let s = &self.state;
        let (requests, retries) = s.window();
        let reserve = f64::from(s.config.min_retries_per_second) * s.config.ttl.as_secs_f64();
        let balance = s.config.ratio * requests as f64 + reserve - retries as f64;
        if balance >= 1.0 {
            s.bucket().retries.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            s.exhausted.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Retries refused so far because the budget was empty.
    pub fn exhausted(&self) -> u64 {
        self.state.exhausted.load(Ordering::Relaxed)
    }

    /// The budget's parameters.
    pub fn config(&self) -> &RetryBudgetConfig {
        &self.state.config
    }
}

impl BudgetState {
    fn new(config: RetryBudgetConfig) -> Self {
        let ttl_ms = u64::try_from(
            config
                .ttl
                .max(Duration::from_millis(BUCKETS as u64))
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        BudgetState {
            config,
            start: Instant::now(),
            bucket_ms: (ttl_ms / BUCKETS as u64).max(1),
            buckets: Default::default(),
            exhausted: AtomicU64::new(0),
        }
    }

    fn epoch(&self) -> u64 {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        ms / self.bucket_ms + 1
    }

    /// The current bucket, cleared first if it still holds an old epoch. Two threads racing
    /// on a rollover may lose a count or two: the budget is approximate by design.
    fn bucket(&self) -> &Bucket {
        let epoch = self.epoch();
        let b = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let seen = b.epoch.load(Ordering::Acquire);
        if seen != epoch
            && b.epoch
                .compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Requests and retries within the window.
    fn window(&self) -> (u64, u64) {
        let now = self.epoch();
        let mut out = (0, 0);
        for b in &self.buckets {
            let e = b.epoch.load(Ordering::Acquire);
            if e != 0 && e + (BUCKETS as u64) > now && e <= now {
                out.0 += b.requests.load(Ordering::Relaxed);
                out.1 += b.retries.load(Ordering::Relaxed);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_ratio_of_requests_plus_reserve() {
        let b = RetryBudget::standalone(RetryBudgetConfig {
            ratio: 0.2,
            min_retries_per_second: 1,
            ttl: Duration::from_secs(10),
        });
        // Reserve of 10, plus 20 % of 100 requests = 30 retries.
        for _ in 0..100 {
            b.deposit();
        }
        let allowed = (0..100).filter(|_| b.try_withdraw()).count();
        assert_eq!(allowed, 30);
        assert_eq!(b.exhausted(), 70);
        // Five more requests earn one more retry.
        for _ in 0..5 {
            b.deposit();
        }
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
    }

    #[test]
    fn zero_budget_allows_nothing() {
        let b = RetryBudget::standalone(RetryBudgetConfig {
            ratio: 0.0,
            min_retries_per_second: 0,
            ttl: Duration::from_secs(1),
        });
        b.deposit();
        assert!(!b.try_withdraw());
    }
}
