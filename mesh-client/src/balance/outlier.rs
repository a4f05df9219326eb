//! Outlier detection (gRFC A50): per-cluster call-result counters per endpoint address, an
//! interval sweep running the success-rate and failure-percentage algorithms, and ejection
//! with a growing ejection time.
//!
//! Hot path: a call's result is one `fetch_add` on its address's counter, and a picker reads
//! one `AtomicBool` per endpoint ([`AddressOutlier`]); an ejected endpoint looks
//! TRANSIENT_FAILURE to every policy (A50 "subchannel wrapper"), its connection stays up.
//! Everything else (the inactive bucket, ejection timestamps, multipliers, the seeded RNG)
//! lives behind a mutex that only the sweep and pool builds take.
//!
//! Call counter (A50, from Envoy): the active bucket is an `AtomicU64` holding successes in
//! the low and failures in the high 32 bits; the sweep's `swap(0)` zeroes it and moves its
//! content into the inactive bucket in one atomic step, so no call is lost or counted twice.
//!
//! Deviations, each deliberate:
//! - gRPC runs one detector per priority (A50 "Per-priority outlier detection"); we flatten
//!   priorities into one pool, so the detector spans the cluster, as the xDS spec defines it.
//! - The max-ejection check stops at `ejected% >= max_ejection_percent` (grpc-go's
//!   comparison; A50's text says `>`), so the limit is never exceeded; with no address
//!   ejected yet one can always be ejected, as Envoy documents.
//! - An address that is already ejected is not ejected again by the same sweep's algorithms
//!   (its counters are stale calls that were in flight when it was ejected).
//! - Each ejection counts in `mesh.client.outlier_detection.ejections` (labelled with the
//!   cluster) of the registry's [`Telemetry`]; un-ejections are not counted.
//! - The sweep interval is clamped to [`MIN_INTERVAL`]..=[`MAX_INTERVAL`], so an `interval`
//!   of 0 cannot spin and a huge one cannot overflow the timer.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::OutlierDetection;
use crate::telemetry::Telemetry;

/// The shortest sweep interval used, whatever the config says.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// The longest sweep interval used (timers are not meant for centuries; protobuf durations
/// go up to 10 000 years): a year without sweeps is no different in practice.
pub const MAX_INTERVAL: Duration = Duration::from_secs(365 * 24 * 3600);

const FAILURE: u64 = 1 << 32;
const LOW: u64 = (1 << 32) - 1;

/// The shared, lock-free part of one address's outlier state: its active call counter and
/// whether it is ejected.
#[derive(Debug, Default)]
pub struct AddressOutlier {
    /// Active bucket: successes in the low 32 bits, failures in the high 32 bits.
    calls: AtomicU64,
    ejected: AtomicBool,
}

impl AddressOutlier {
    /// Whether the address is currently ejected.
    pub fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Counts one finished call in the active bucket.
    pub fn record(&self, succeeded: bool) {
        self.calls
            .fetch_add(if succeeded { 1 } else { FAILURE }, Ordering::Relaxed);
    }

    /// Zeroes the active bucket and returns `(successes, failures)`.
    fn swap_bucket(&self) -> (u64, u64) {
        let v = self.calls.swap(0, Ordering::Relaxed);
        (v & LOW, v >> 32)
    }
}

/// The outcome slot of one call on an outlier-detected endpoint: record it once, when the
/// call's gRPC status is known. An outcome that is dropped unrecorded is not counted.
#[derive(Debug)]
#[must_use = "an outcome counts only when recorded"]
pub struct CallOutcome {
    address: Arc<AddressOutlier>,
}

impl CallOutcome {
    /// Records the call: `succeeded` is `grpc-status` OK (A50, as grpc-go counts it).
    pub fn record(self, succeeded: bool) {
        self.address.record(succeeded);
    }
}

impl CallOutcome {
    pub(crate) fn new(address: Arc<AddressOutlier>) -> Self {
        CallOutcome { address }
    }
}

/// The call outcome readable from response headers: a non-200 HTTP status or a
/// `grpc-status` other than 0 is a failure (Trailers-Only responses carry it here).
///
/// Limitation: a normal response carries its `grpc-status` in the trailers, which this
/// cannot see, so it counts as a success here; record from the trailers to count those.
///
/// ```
/// let ok = http::Response::builder().status(200).body(()).unwrap();
/// assert!(mesh_client::balance::outlier::succeeded_at_headers(&ok));
/// let failed = http::Response::builder().header("grpc-status", "14").body(()).unwrap();
/// assert!(!mesh_client::balance::outlier::succeeded_at_headers(&failed));
/// ```
pub fn succeeded_at_headers<B>(response: &http::Response<B>) -> bool {
    response.status() == http::StatusCode::OK
        && response
            .headers()
            .get("grpc-status")
            .is_none_or(|v| v.as_bytes() == b"0")
}

/// One address's sweep-side state (A50's map entry).
#[derive(Debug)]
struct Entry {
    shared: Arc<AddressOutlier>,
    /// The inactive bucket: `(successes, failures)` of the last interval.
    inactive: (u64, u64),
    /// When the address was last ejected; `None`: not ejected.
    ejected_at: Option<Instant>,
    /// The ejection time multiplier, starting at 0.
    multiplier: u32,
}

impl Entry {
    fn volume(&self) -> u64 {
        self.inactive.0 + self.inactive.1
    }
}

/// The detector's state and algorithms, driven by an explicit clock (`now`) and a seeded RNG
/// so that every rule is a deterministic unit test.
#[derive(Debug)]
struct Core {
    config: OutlierDetection,
    /// Ordered, so that the algorithms (and their random draws) visit addresses in a fixed
    /// order.
    entries: BTreeMap<SocketAddr, Entry>,
    rng: StdRng,
    /// When the last sweep ran (or the detector started).
    timer_start: Instant,
    /// Where ejections are counted, and the cluster they are counted for.
    telemetry: Telemetry,
    cluster: String,
}

impl Core {
    fn new(config: OutlierDetection, now: Instant, seed: u64) -> Self {
        Core {
            config,
            entries: BTreeMap::new(),
            rng: StdRng::seed_from_u64(seed),
            timer_start: now,
            telemetry: Telemetry::disabled(),
            cluster: String::new(),
        }
    }

    /// Counts this core's ejections in `telemetry`, for `cluster`.
    fn counting(mut self, cluster: &str, telemetry: Telemetry) -> Self {
        self.cluster = cluster.to_string();
        self.telemetry = telemetry;
        self
    }

    /// The shared state of `addr`, creating its entry (not ejected, counters zero).
    fn address(&mut self, addr: SocketAddr) -> Arc<AddressOutlier> {
        self.entries
            .entry(addr)
            .or_insert_with(|| Entry {
                shared: Arc::default(),
                inactive: (0, 0),
                ejected_at: None,
                multiplier: 0,
            })
            .shared
            .clone()
    }

    /// Drops the entries of addresses no longer in the cluster (A50 address update).
    fn retain(&mut self, keep: &HashSet<SocketAddr>) {
        self.entries.retain(|a, _| keep.contains(a));
    }

    fn next_sweep(&self) -> Instant {
        self.timer_start + self.config.interval.clamp(MIN_INTERVAL, MAX_INTERVAL)
    }

    fn ejected_count(&self) -> usize {
        self.entries
            .values()
            .filter(|e| e.ejected_at.is_some())
            .count()
    }

    /// A50: stop ejecting once this share of the addresses is ejected.
    fn at_max_ejection(&self) -> bool {
        let total = self.entries.len() as u64;
        self.ejected_count() as u64 * 100 >= u64::from(self.config.max_ejection_percent) * total
    }

    fn eject(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(e) = self.entries.get_mut(&addr) {
            e.ejected_at = Some(now);
            e.multiplier = e.multiplier.saturating_add(1);
            e.shared.ejected.store(true, Ordering::Relaxed);
            tracing::debug!(%addr, multiplier = e.multiplier, "outlier detection: ejected");
            self.telemetry.record_outlier_ejection(&self.cluster);
        }
    }

    /// The interval timer's work (A50 steps 1–5).
    fn sweep(&mut self, now: Instant) {
        self.timer_start = now;
        for e in self.entries.values_mut() {
            e.inactive = e.shared.swap_bucket();
        }
        if self.config.success_rate.is_some() {
            self.success_rate(now);
        }
        if self.config.failure_percentage.is_some() {
            self.failure_percentage(now);
        }
        let base = self.config.base_ejection_time;
        let cap = base.max(self.config.max_ejection_time);
        for (addr, e) in &mut self.entries {
            match e.ejected_at {
                None => e.multiplier = e.multiplier.saturating_sub(1),
                Some(at) => {
                    let time = base.saturating_mul(e.multiplier).min(cap);
                    if at.checked_add(time).is_some_and(|end| now >= end) {
                        e.ejected_at = None;
                        e.shared.ejected.store(false, Ordering::Relaxed);
                        tracing::debug!(%addr, "outlier detection: returned to service");
                    }
                }
            }
        }
    }

    /// A50 success-rate algorithm.
    fn success_rate(&mut self, now: Instant) {
        let Some(cfg) = self.config.success_rate else {
            return;
        };
        let volume = u64::from(cfg.request_volume);
        let rates: Vec<(SocketAddr, f64, bool)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.volume() >= volume && e.volume() > 0)
            .map(|(a, e)| {
                (
                    *a,
                    e.inactive.0 as f64 / e.volume() as f64,
                    e.ejected_at.is_some(),
                )
            })
            .collect();
        if rates.is_empty() || rates.len() < cfg.minimum_hosts as usize {
            return;
        }
        let n = rates.len() as f64;
        let mean = rates.iter().map(|(_, r, _)| r).sum::<f64>() / n;
        let variance = rates
            .iter()
            .map(|(_, r, _)| (r - mean).powi(2))
            .sum::<f64>()
            / n;
        let required = mean - variance.sqrt() * (f64::from(cfg.stdev_factor) / 1000.0);
        for (addr, rate, ejected) in rates {
            if self.at_max_ejection() {
                return;
            }
            if !ejected
                && rate < required
                && self.rng.random_range(0..100u32) < cfg.enforcement_percentage
            {
                self.eject(addr, now);
            }
        }
    }

    /// A50 failure-percentage algorithm.
    fn failure_percentage(&mut self, now: Instant) {
        let Some(cfg) = self.config.failure_percentage else {
            return;
        };
        if self.entries.len() < cfg.minimum_hosts as usize {
            return;
        }
        let volume = u64::from(cfg.request_volume);
        let candidates: Vec<(SocketAddr, f64, bool)> = self
            .entries
            .iter()
            .map(|(a, e)| {
                let pct = if e.volume() == 0 {
                    0.0
                } else {
                    e.inactive.1 as f64 * 100.0 / e.volume() as f64
                };
                (*a, pct, e.volume() >= volume && e.ejected_at.is_none())
            })
            .collect();
        for (addr, pct, eligible) in candidates {
            if self.at_max_ejection() {
                return;
            }
            if eligible
                && pct > f64::from(cfg.threshold)
                && self.rng.random_range(0..100u32) < cfg.enforcement_percentage
            {
                self.eject(addr, now);
            }
        }
    }
}

#[derive(Debug)]
struct Shared {
    core: Mutex<Core>,
    /// Wakes the timer task when the interval changes.
    reconfigured: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Core> {
        // The core holds no invariant a panicking sweep could break halfway in a harmful way.
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The outlier detector of one cluster: its address map and the interval timer task, which
/// stops when the detector is dropped (with the last pool that uses it).
#[derive(Debug)]
pub struct OutlierDetector {
    shared: Arc<Shared>,
    task: tokio::task::AbortHandle,
}

impl Drop for OutlierDetector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OutlierDetector {
    /// Starts a detector for `config` with its timer (must be called in a tokio runtime).
    /// `seed` seeds the enforcement-percentage draws.
    pub fn start(config: OutlierDetection, seed: u64) -> Self {
        Self::start_counting(config, seed, "", Telemetry::disabled())
    }

    /// Like [`OutlierDetector::start`], counting each ejection in `telemetry`'s
    /// `mesh.client.outlier_detection.ejections` with `cluster` as its `mesh.cluster`.
    pub fn start_counting(
        config: OutlierDetection,
        seed: u64,
        cluster: &str,
        telemetry: Telemetry,
    ) -> Self {
        let core = Core::new(config, Instant::now(), seed).counting(cluster, telemetry);
        let shared = Arc::new(Shared {
            core: Mutex::new(core),
            reconfigured: Notify::new(),
        });
        let task = tokio::spawn(run_timer(shared.clone())).abort_handle();
        OutlierDetector { shared, task }
    }

    /// The shared state of `addr` (created, not ejected, if new).
    pub fn address(&self, addr: SocketAddr) -> Arc<AddressOutlier> {
        self.shared.lock().address(addr)
    }

    /// Keeps only these addresses' entries (A50: the cluster's address list changed).
    pub fn retain(&self, keep: &HashSet<SocketAddr>) {
        self.shared.lock().retain(keep);
    }

    /// The config in force.
    pub fn config(&self) -> OutlierDetection {
        self.shared.lock().config.clone()
    }

    /// Applies a changed config, keeping the ejection state and counters (A50): the next
    /// sweep comes `interval` after the previous one.
    fn reconfigure(&self, config: &OutlierDetection) {
        let mut core = self.shared.lock();
        if core.config != *config {
            core.config = config.clone();
            drop(core);
            self.shared.reconfigured.notify_one();
        }
    }

    /// The addresses currently ejected.
    pub fn ejected(&self) -> Vec<SocketAddr> {
        let core = self.shared.lock();
        core.entries
            .iter()
            .filter(|(_, e)| e.ejected_at.is_some())
            .map(|(a, _)| *a)
            .collect()
    }
}

async fn run_timer(shared: Arc<Shared>) {
    loop {
        let reconfigured = shared.reconfigured.notified();
        let next = shared.lock().next_sweep();
        tokio::select! {
            _ = tokio::time::sleep_until(next) => shared.lock().sweep(Instant::now()),
            _ = reconfigured => {}
        }
    }
}

/// The outlier detectors of one channel, by cluster name, so that pools rebuilt on a config
/// update share their cluster's detector and its ejection state. Entries are weak: a
/// detector lives as long as some pool holds it.
#[derive(Debug)]
pub struct OutlierRegistry {
    detectors: Mutex<HashMap<String, Weak<OutlierDetector>>>,
    /// Where the detectors count their ejections.
    telemetry: Telemetry,
}

impl Default for OutlierRegistry {
    /// A registry whose detectors count nothing.
    fn default() -> Self {
        OutlierRegistry::new(Telemetry::disabled())
    }
}

impl OutlierRegistry {
    /// A registry whose detectors count their ejections in `telemetry`.
    pub fn new(telemetry: Telemetry) -> Self {
        OutlierRegistry {
            detectors: Mutex::default(),
            telemetry,
        }
    }

    /// The detector of `cluster` under `config`: the existing one (reconfigured if the config
    /// changed), or a new one. `None` when `config` enables no algorithm (A50's no-op
    /// config: no counting, no timer; a detector dropped this way un-ejects everything).
    pub fn detector(
        &self,
        cluster: &str,
        config: &OutlierDetection,
    ) -> Option<Arc<OutlierDetector>> {
        if !config.is_enabled() {
            return None;
        }
        let mut map = self.detectors.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, d| d.strong_count() > 0);
        if let Some(d) = map.get(cluster).and_then(Weak::upgrade) {
            d.reconfigure(config);
            return Some(d);
        }
        let d = Arc::new(OutlierDetector::start_counting(
            config.clone(),
            rand::random(),
            cluster,
            self.telemetry.clone(),
        ));
        map.insert(cluster.to_string(), Arc::downgrade(&d));
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FailurePercentageEjection, SuccessRateEjection};

    fn addr(i: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], 8000 + i))
    }

    fn config() -> OutlierDetection {
        OutlierDetection {
            interval: Duration::from_secs(1),
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(25),
            max_ejection_percent: 100,
            success_rate: None,
            failure_percentage: None,
        }
    }

    fn failure_pct(threshold: u32, hosts: u32, volume: u32) -> Option<FailurePercentageEjection> {
        Some(FailurePercentageEjection {
            threshold,
            enforcement_percentage: 100,
            minimum_hosts: hosts,
            request_volume: volume,
        })
    }

    fn success_rate(factor: u32, hosts: u32, volume: u32) -> Option<SuccessRateEjection> {
        Some(SuccessRateEjection {
            stdev_factor: factor,
            enforcement_percentage: 100,
            minimum_hosts: hosts,
            request_volume: volume,
        })
    }

    /// A core over `n` addresses, with their shared states.
    fn core(config: OutlierDetection, n: u16) -> (Core, Vec<Arc<AddressOutlier>>, Instant) {
        let t0 = Instant::now();
        let mut c = Core::new(config, t0, 7);
        let shared = (0..n).map(|i| c.address(addr(i))).collect();
        (c, shared, t0)
    }

    /// Records `ok` successes and `failed` failures on `a`.
    fn calls(a: &AddressOutlier, ok: u32, failed: u32) {
        for _ in 0..ok {
            a.record(true);
        }
        for _ in 0..failed {
            a.record(false);
        }
    }

    fn ejected(shared: &[Arc<AddressOutlier>]) -> Vec<bool> {
        shared.iter().map(|a| a.is_ejected()).collect()
    }

    #[test]
    fn buckets_swap_each_interval() {
        let (mut c, s, t0) = core(config(), 1);
        calls(&s[0], 3, 2);
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(c.entries[&addr(0)].inactive, (3, 2));
        calls(&s[0], 1, 0);
        c.sweep(t0 + Duration::from_secs(2));
        assert_eq!(
            c.entries[&addr(0)].inactive,
            (1, 0),
            "the old bucket is zeroed"
        );
        c.sweep(t0 + Duration::from_secs(3));
        assert_eq!(c.entries[&addr(0)].inactive, (0, 0));
    }

    #[test]
    fn failure_percentage_ejects_above_threshold_only() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 3, 10);
        let (mut c, s, t0) = core(cfg, 4);
        calls(&s[0], 0, 10); // 100 % failures
        calls(&s[1], 5, 5); // exactly 50 %: not above the threshold
        calls(&s[2], 0, 9); // below the request volume
        calls(&s[3], 10, 0);
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(ejected(&s), [true, false, false, false]);
    }

    #[test]
    fn failure_percentage_needs_minimum_hosts() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 5, 1);
        let (mut c, s, t0) = core(cfg, 4);
        calls(&s[0], 0, 10);
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(ejected(&s), [false; 4], "4 hosts < minimum_hosts 5");
    }

    #[test]
    fn success_rate_ejects_below_mean_minus_stdev_times_factor() {
        let mut cfg = config();
        // Factor 1000 = 1.0 stdev. Rates 1, 1, 1, 1, 0.5: mean 0.9, stdev 0.2, threshold 0.7.
        cfg.success_rate = success_rate(1000, 5, 10);
        let (mut c, s, t0) = core(cfg.clone(), 5);
        for a in &s[..4] {
            calls(a, 10, 0);
        }
        calls(&s[4], 5, 5);
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(ejected(&s), [false, false, false, false, true]);

        // Factor 2500 = 2.5 stdev: threshold 0.4, nobody is an outlier.
        cfg.success_rate = success_rate(2500, 5, 10);
        let (mut c, s, t0) = core(cfg, 5);
        for a in &s[..4] {
            calls(a, 10, 0);
        }
        calls(&s[4], 5, 5);
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(ejected(&s), [false; 5]);
    }

    #[test]
    fn success_rate_counts_only_hosts_with_request_volume() {
        let mut cfg = config();
        cfg.success_rate = success_rate(1000, 5, 10);
        let (mut c, s, t0) = core(cfg, 5);
        for a in &s[..4] {
            calls(a, 10, 0);
        }
        calls(&s[4], 1, 8); // 9 < request volume 10: only 4 hosts qualify, below 5
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(ejected(&s), [false; 5]);
    }

    #[test]
    fn max_ejection_percent_limits_ejections_but_one_is_always_allowed() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 1, 1);
        cfg.max_ejection_percent = 50;
        let (mut c, s, t0) = core(cfg.clone(), 4);
        for a in &s {
            calls(a, 0, 10);
        }
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(ejected(&s).iter().filter(|e| **e).count(), 2, "50 % of 4");

        cfg.max_ejection_percent = 0;
        let (mut c, s, t0) = core(cfg, 4);
        for a in &s {
            calls(a, 0, 10);
        }
        c.sweep(t0 + Duration::from_secs(1));
        // 0 ejected is already >= 0 %: nothing is ejected with a max of 0.
        assert_eq!(ejected(&s), [false; 4]);
    }

    #[test]
    fn max_ejection_percent_10_still_ejects_one_of_three() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 1, 1);
        cfg.max_ejection_percent = 10;
        let (mut c, s, t0) = core(cfg, 3);
        for a in &s {
            calls(a, 0, 10);
        }
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(ejected(&s), [true, false, false]);
    }

    #[test]
    fn enforcement_percentage_is_a_seeded_draw() {
        let mut cfg = config();
        cfg.failure_percentage = Some(FailurePercentageEjection {
            threshold: 50,
            enforcement_percentage: 30,
            minimum_hosts: 1,
            request_volume: 1,
        });
        cfg.max_ejection_percent = 100;
        let run = |cfg: &OutlierDetection, seed: u64| {
            let t0 = Instant::now();
            let mut c = Core::new(cfg.clone(), t0, seed);
            let s: Vec<_> = (0..200).map(|i| c.address(addr(i))).collect();
            for a in &s {
                calls(a, 0, 1);
            }
            c.sweep(t0 + Duration::from_secs(1));
            s.iter().filter(|a| a.is_ejected()).count()
        };
        let (a, b) = (run(&cfg, 1), run(&cfg, 1));
        println!("enforcement 30 %: {a} of 200 outliers ejected (seed 1)");
        assert_eq!(a, b, "same seed, same draws");
        assert!((40..=80).contains(&a), "{a}");

        cfg.failure_percentage = Some(FailurePercentageEjection {
            threshold: 50,
            enforcement_percentage: 0,
            minimum_hosts: 1,
            request_volume: 1,
        });
        assert_eq!(run(&cfg, 1), 0, "enforcement 0 never ejects");
    }

    #[test]
    fn ejection_time_grows_with_the_multiplier_and_is_capped() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 1, 1);
        // base 10 s, max 25 s: ejections last 10 s, 20 s, then 25 s (capped).
        let (mut c, s, t0) = core(cfg, 2);
        let mut t = t0;
        let mut durations = Vec::new();
        for _ in 0..3 {
            calls(&s[0], 0, 5);
            calls(&s[1], 5, 0);
            t += Duration::from_secs(1);
            c.sweep(t);
            assert!(s[0].is_ejected());
            let at = t;
            let mut secs = 0;
            while s[0].is_ejected() && secs < 100 {
                t += Duration::from_secs(1);
                secs += 1;
                calls(&s[1], 5, 0);
                c.sweep(t);
            }
            durations.push((t - at).as_secs());
        }
        assert_eq!(durations, [10, 20, 25]);
        assert!(!s[1].is_ejected());
    }

    #[test]
    fn healthy_intervals_decrement_the_multiplier() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 1, 1);
        let (mut c, s, t0) = core(cfg, 2);
        calls(&s[0], 0, 5);
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(c.entries[&addr(0)].multiplier, 1);
        // Returned after 10 s; the sweep that un-ejects does not decrement yet.
        c.sweep(t0 + Duration::from_secs(11));
        assert!(!s[0].is_ejected());
        assert_eq!(c.entries[&addr(0)].multiplier, 1);
        c.sweep(t0 + Duration::from_secs(12));
        assert_eq!(c.entries[&addr(0)].multiplier, 0);
        c.sweep(t0 + Duration::from_secs(13));
        assert_eq!(c.entries[&addr(0)].multiplier, 0, "never below 0");
    }

    #[test]
    fn removed_addresses_lose_their_entry() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 1, 1);
        let (mut c, s, t0) = core(cfg, 2);
        calls(&s[0], 0, 5);
        c.sweep(t0 + Duration::from_secs(1));
        assert_eq!(c.ejected_count(), 1);
        c.retain(&HashSet::from([addr(1)]));
        assert_eq!(c.entries.len(), 1);
        assert_eq!(c.ejected_count(), 0);
        // Re-added, the address starts fresh.
        let again = c.address(addr(0));
        assert!(!again.is_ejected());
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_sweeps_each_interval_and_stops_with_the_detector() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 1, 1);
        let registry = OutlierRegistry::default();
        let d = registry.detector("c", &cfg).unwrap();
        let bad = d.address(addr(0));
        let good = d.address(addr(1));
        calls(&bad, 0, 10);
        calls(&good, 10, 0);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(bad.is_ejected(), "ejected at the first sweep");
        // The same config returns the same detector: the ejection is kept.
        let again = registry.detector("c", &cfg).unwrap();
        assert!(Arc::ptr_eq(&d, &again));
        assert_eq!(again.ejected(), [addr(0)]);
        // A changed config keeps the state too.
        let mut longer = cfg.clone();
        longer.interval = Duration::from_secs(2);
        let changed = registry.detector("c", &longer).unwrap();
        assert!(Arc::ptr_eq(&d, &changed));
        assert_eq!(changed.config().interval, Duration::from_secs(2));
        assert!(bad.is_ejected());
        // Un-ejected at the first sweep at least 10 s after the ejection.
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(!bad.is_ejected());
        // A no-op config has no detector; dropping the last handle stops the timer.
        let mut off = cfg.clone();
        off.failure_percentage = None;
        assert!(registry.detector("c", &off).is_none());
        let timer_state = Arc::downgrade(&d.shared);
        drop((d, again, changed));
        for _ in 0..10 {
            if timer_state.strong_count() == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(timer_state.strong_count(), 0, "the timer task ended");
        // A new detector starts from scratch.
        let fresh = registry.detector("c", &cfg).unwrap();
        assert!(fresh.ejected().is_empty());
    }

    /// The ejections `mesh.client.outlier_detection.ejections` counted for `cluster`.
    fn ejections_counted(
        provider: &opentelemetry_sdk::metrics::SdkMeterProvider,
        exporter: &opentelemetry_sdk::metrics::InMemoryMetricExporter,
        cluster: &str,
    ) -> u64 {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        exporter.reset();
        provider.force_flush().unwrap();
        let mut total = 0;
        for rm in exporter.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                for m in sm
                    .metrics()
                    .filter(|m| m.name() == crate::telemetry::names::OUTLIER_EJECTIONS)
                {
                    if let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() {
                        for p in sum.data_points() {
                            let labels: Vec<_> = p
                                .attributes()
                                .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                                .collect();
                            assert_eq!(labels, [("mesh.cluster".to_string(), cluster.to_string())]);
                            total += p.value();
                        }
                    }
                }
            }
        }
        total
    }

    #[tokio::test(start_paused = true)]
    async fn each_real_ejection_is_counted_once_for_its_cluster() {
        use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader};
        let exporter = InMemoryMetricExporter::default();
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let registry = OutlierRegistry::new(Telemetry::new(&provider));
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 1, 10);
        let d = registry.detector("c", &cfg).unwrap();
        let bad = d.address(addr(0));
        let good = d.address(addr(1));
        calls(&bad, 0, 10);
        calls(&good, 10, 0);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(bad.is_ejected());
        assert_eq!(ejections_counted(&provider, &exporter, "c"), 1);
        // Sweeps that keep it ejected, or that return it to service, count nothing.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            !bad.is_ejected(),
            "returned after the 10 s base ejection time"
        );
        assert_eq!(ejections_counted(&provider, &exporter, "c"), 1);
        // Failing again, it is ejected (and counted) again.
        calls(&bad, 0, 10);
        calls(&good, 10, 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(bad.is_ejected());
        assert_eq!(ejections_counted(&provider, &exporter, "c"), 2);
        // A registry without telemetry counts nothing and still ejects.
        let quiet = OutlierRegistry::default().detector("c", &cfg).unwrap();
        let a = quiet.address(addr(0));
        calls(&a, 0, 10);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(a.is_ejected());
        assert_eq!(ejections_counted(&provider, &exporter, "c"), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn extreme_durations_do_not_overflow() {
        let mut cfg = config();
        cfg.failure_percentage = failure_pct(50, 1, 1);
        cfg.interval = Duration::from_secs(315_576_000_000);
        let d = OutlierDetector::start(cfg.clone(), 1);
        let a = d.address(addr(0));
        calls(&a, 0, 5);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!a.is_ejected(), "no sweep yet");
        // A sweep with a 10 000-year ejection time never returns the address, nor panics.
        cfg.interval = Duration::from_secs(1);
        cfg.base_ejection_time = Duration::from_secs(315_576_000_000);
        cfg.max_ejection_time = cfg.base_ejection_time;
        let (mut c, s, t0) = core(cfg, 1);
        calls(&s[0], 0, 5);
        c.sweep(t0 + Duration::from_secs(1));
        c.sweep(t0 + Duration::from_secs(2));
        assert!(s[0].is_ejected());
    }

    #[test]
    fn headers_outcome() {
        let r = |status: u16, grpc: Option<&str>| {
            let mut b = http::Response::builder().status(status);
            if let Some(g) = grpc {
                b = b.header("grpc-status", g);
            }
            succeeded_at_headers(&b.body(()).unwrap())
        };
        assert!(r(200, None));
        assert!(r(200, Some("0")));
        assert!(!r(200, Some("14")));
        assert!(!r(503, None));
    }
}
