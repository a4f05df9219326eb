//! Per-endpoint load signals for the load-aware pickers: the number of requests in flight
//! (gRFC A48 `active_requests`) and a peak-sensitive EWMA of response-headers latency (the
//! Finagle / linkerd2-proxy "peak EWMA" estimate).
//!
//! Both live in atomics on the endpoint's connection, so they survive pool rebuilds and are
//! shared by every cluster that uses the address (A48 keeps counters per policy instance; we
//! keep one per connection, which is the same thing when a connection belongs to one
//! cluster). The RTT estimate is an `f64` stored as bits in an `AtomicU64`; its update is a
//! compare-and-swap loop, and the estimate's timestamp is a separate atomic, so a race
//! between two completions can at worst apply one decay step with a slightly stale stamp.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Default EWMA decay (linkerd2-proxy's default): an observation's weight halves in ~7 s.
pub const DEFAULT_EWMA_DECAY: Duration = Duration::from_secs(10);
/// Default RTT assumed for an endpoint that has not answered yet.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// Nanoseconds since a process-wide epoch (monotonic).
pub fn now_ns() -> u64 {
    clock::now_ns()
}

/// [`now_ns`] read from the kernel's coarse clock: the time of the last timer tick (1–4 ms
/// behind at most on Linux, never ahead of [`now_ns`]), for a few nanoseconds instead of the
/// twenty or so a precise read costs on a VM. Pickers read it: a peak-EWMA decay measured in
/// seconds and a WRR rebuild period of at least 100 ms do not notice a tick's lag, while an
/// RTT (an [`InFlightGuard`]) is always timed with [`now_ns`]. Off Linux, it is [`now_ns`].
pub fn coarse_now_ns() -> u64 {
    clock::coarse_now_ns()
}

#[cfg(target_os = "linux")]
mod clock {
    use rustix::time::{ClockId, clock_gettime};
    use std::sync::OnceLock;

    fn read(id: ClockId) -> u64 {
        let t = clock_gettime(id);
        u64::try_from(t.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
    }

    /// CLOCK_MONOTONIC at the first read: both clocks count from it, so they share one
    /// timeline (the coarse clock is the precise one as of the last tick).
    fn epoch() -> u64 {
        static EPOCH: OnceLock<u64> = OnceLock::new();
        *EPOCH.get_or_init(|| read(ClockId::Monotonic))
    }

    pub(super) fn now_ns() -> u64 {
        let epoch = epoch();
        read(ClockId::Monotonic).saturating_sub(epoch)
    }

    pub(super) fn coarse_now_ns() -> u64 {
        let epoch = epoch();
        read(ClockId::MonotonicCoarse).saturating_sub(epoch)
    }
}

#[cfg(not(target_os = "linux"))]
mod clock {
    use std::sync::OnceLock;
    use std::time::Instant;

    pub(super) fn now_ns() -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = EPOCH.get_or_init(Instant::now);
        u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub(super) fn coarse_now_ns() -> u64 {
        now_ns()
    }
}

/// Load signals of one endpoint.
#[derive(Debug)]
pub struct EndpointLoad {
    in_flight: AtomicUsize,
    /// `f64` nanoseconds; 0 bits: no observation yet (the default RTT applies).
    rtt_ns: AtomicU64,
    /// When `rtt_ns` was last updated (see [`now_ns`]).
    stamp_ns: AtomicU64,
    decay_ns: AtomicU64,
    default_rtt_ns: AtomicU64,
    /// Client-side WRR weight from ORCA reports (gRFC A58).
    wrr: super::wrr::WrrWeight,
}

impl Default for EndpointLoad {
    fn default() -> Self {
        EndpointLoad {
            in_flight: AtomicUsize::new(0),
            rtt_ns: AtomicU64::new(0),
            stamp_ns: AtomicU64::new(0),
            decay_ns: AtomicU64::new(duration_ns(DEFAULT_EWMA_DECAY)),
            default_rtt_ns: AtomicU64::new(duration_ns(DEFAULT_RTT)),
            wrr: Default::default(),
        }
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl EndpointLoad {
    /// The endpoint's client-side WRR weight (gRFC A58).
    pub fn wrr(&self) -> &super::wrr::WrrWeight {
        &self.wrr
    }

    /// Requests currently in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Sets the EWMA parameters (done by a peak-EWMA pool when it is built; the last pool
    /// built wins when clusters sharing an address disagree).
    pub fn configure_ewma(&self, decay: Duration, default_rtt: Duration) {
        self.decay_ns
            .store(duration_ns(decay).max(1), Ordering::Relaxed);
        self.default_rtt_ns
            .store(duration_ns(default_rtt), Ordering::Relaxed);
    }

    /// Starts counting one request at time `now` (nanoseconds, see [`now_ns`]).
    pub fn start_at(self: &Arc<Self>, now: u64) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard {
            load: Arc::clone(self),
            start_ns: now,
            done: false,
            outcome: None,
        }
    }

    /// The RTT estimate (ns) at `now`: the stored EWMA decayed toward zero for the time since
    /// it was updated, so an endpoint that has not been tried for a while is tried again.
    pub fn rtt_estimate_ns(&self, now: u64) -> f64 {
        let bits = self.rtt_ns.load(Ordering::Relaxed);
        if bits == 0 {
            return self.default_rtt_ns.load(Ordering::Relaxed) as f64;
        }
        let elapsed = now.saturating_sub(self.stamp_ns.load(Ordering::Relaxed));
        f64::from_bits(bits) * self.decay_weight(elapsed)
    }

    /// Peak-EWMA cost at `now`: RTT estimate × (in flight + 1).
    pub fn cost(&self, now: u64) -> f64 {
        self.rtt_estimate_ns(now) * (self.in_flight() as f64 + 1.0)
    }

    fn decay_weight(&self, elapsed_ns: u64) -> f64 {
        let decay = self.decay_ns.load(Ordering::Relaxed).max(1) as f64;
        (-(elapsed_ns as f64) / decay).exp()
    }

    /// Records an RTT observation at `now`. A sample above the estimate replaces it (peak
    /// sensitivity); a lower one is blended in with a weight growing with the time since the
    /// last update. With `raise_only`, a lower sample is ignored (used for failed or
    /// cancelled requests, which must never make an endpoint look faster).
    fn observe(&self, rtt_ns: u64, now: u64, raise_only: bool) {
        let rtt = rtt_ns as f64;
        let elapsed = now.saturating_sub(self.stamp_ns.load(Ordering::Relaxed));
        let w = self.decay_weight(elapsed);
        let default = self.default_rtt_ns.load(Ordering::Relaxed) as f64;
        let result = self
            .rtt_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let next = if bits == 0 {
                    // The default only stands in until the first answer.
                    if raise_only && rtt <= default {
                        return None;
                    }
                    rtt
                } else if rtt > f64::from_bits(bits) {
                    rtt
                } else if raise_only {
                    return None;
                } else {
                    f64::from_bits(bits) * w + rtt * (1.0 - w)
                };
                // 0 bits mean "unset": keep a sub-nanosecond floor instead.
                Some(next.max(f64::MIN_POSITIVE).to_bits())
            });
        if result.is_ok() {
            self.stamp_ns.store(now, Ordering::Relaxed);
        }
    }
}

/// Counts one request as in flight on an endpoint until dropped (RAII). Call
/// [`InFlightGuard::complete`] when the response headers arrive to record the RTT; dropping
/// it without completing (an error, a cancelled call) only ever raises the RTT estimate.
///
/// ```
/// # use std::sync::Arc;
/// use mesh_client::balance::EndpointLoad;
/// let load = Arc::new(EndpointLoad::default());
/// let guard = load.start_at(0);
/// assert_eq!(load.in_flight(), 1);
/// guard.complete_at(5_000_000); // 5 ms later
/// assert_eq!(load.in_flight(), 0);
/// ```
#[derive(Debug)]
#[must_use = "the request stops being counted when the guard is dropped"]
pub struct InFlightGuard {
    load: Arc<EndpointLoad>,
    start_ns: u64,
    done: bool,
    /// gRFC A50: where the call's result is counted, when the cluster has outlier detection.
    outcome: Option<super::outlier::CallOutcome>,
}

impl InFlightGuard {
    /// Attaches the endpoint's outlier-detection counter (gRFC A50).
    pub(crate) fn with_outcome(mut self, outcome: Option<super::outlier::CallOutcome>) -> Self {
        self.outcome = outcome;
        self
    }

    /// gRFC A50: records the call's result for outlier detection (`succeeded`: grpc-status
    /// OK); only the first record counts, and nothing happens without outlier detection.
    /// A guard dropped before [`InFlightGuard::complete`] without a record counts as a
    /// failure (the call failed or was cancelled before its response headers, as grpc-go
    /// counts it); a completed guard never recorded counts nothing.
    pub fn record_call(&mut self, succeeded: bool) {
        if let Some(o) = self.outcome.take() {
            o.record(succeeded);
        }
    }

    /// Takes the call's outlier-detection outcome slot, to record it later (at the
    /// trailers); the guard then records nothing itself.
    pub fn take_call_outcome(&mut self) -> Option<super::outlier::CallOutcome> {
        self.outcome.take()
    }

    /// The response headers arrived now: records the RTT and stops counting the request.
    pub fn complete(self) {
        self.complete_at(now_ns());
    }

    /// As [`InFlightGuard::complete`], at time `now` (nanoseconds, see [`now_ns`]).
    pub fn complete_at(mut self, now: u64) {
        self.done = true;
        self.load
            .observe(now.saturating_sub(self.start_ns), now, false);
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.load.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.done {
            self.record_call(false);
            let now = now_ns();
            self.load
                .observe(now.saturating_sub(self.start_ns), now, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn peaks_are_taken_at_once_and_decay_slowly() {
        let load = Arc::new(EndpointLoad::default());
        load.configure_ewma(Duration::from_secs(1), Duration::from_millis(10));
        assert_eq!(load.rtt_estimate_ns(0), 10.0 * MS as f64);
        load.start_at(0).complete_at(100 * MS);
        assert_eq!(load.rtt_estimate_ns(100 * MS), 100.0 * MS as f64);
        // A fast sample 1 ms after the peak barely moves the estimate (0.1 % weight).
        load.start_at(100 * MS).complete_at(101 * MS);
        let e = load.rtt_estimate_ns(101 * MS);
        assert!(e > 97.0 * MS as f64 && e < 100.0 * MS as f64, "{e}");
        // Unused for 5 decay periods, the estimate fades toward zero.
        assert!(load.rtt_estimate_ns(5101 * MS) < 1.0 * MS as f64);
    }

    #[test]
    fn failures_only_raise_and_guards_count_in_flight() {
        let load = Arc::new(EndpointLoad::default());
        let a = load.start_at(0);
        let b = load.start_at(0);
        assert_eq!(load.in_flight(), 2);
        assert_eq!(load.cost(0), 3.0 * DEFAULT_RTT.as_nanos() as f64);
        a.complete_at(MS);
        load.observe(0, 2 * MS, true);
        assert!(load.rtt_estimate_ns(2 * MS) > 0.9 * MS as f64);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }
}
