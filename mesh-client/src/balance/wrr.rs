//! Client-side weighted round robin (gRFC A58) from per-call ORCA load reports (A51).
//!
//! Each endpoint's weight is `qps / (utilization + eps/qps × error_utilization_penalty)`
//! from its latest report (`application_utilization`, else `cpu_utilization`); a weight is
//! used only after the endpoint has reported for `blackout_period` and until it has not for
//! `weight_expiration_period`. Endpoints without a usable weight get the mean weight; with
//! fewer than two weights every endpoint weighs the same (round robin).
//!
//! Picking uses a static stride scheduler (the one gRPC's implementations use): weights are
//! scaled so the largest is `u16::MAX`, and a shared atomic sequence walks the endpoints,
//! accepting endpoint `i` in generation `g` when `(w_i × g + offset_i) mod MAX ≥ MAX − w_i`.
//! The scheduler is rebuilt at most every `weight_update_period`, by whichever pick finds it
//! stale; picks never lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::PoolEndpoint;

const MAX_WEIGHT: u64 = u16::MAX as u64;
/// `offset_i = i × OFFSET`: staggers equal weights (a large odd number, as gRPC uses).
const OFFSET: u64 = 9973;
/// Never-seen sentinel for `non_empty_since`.
const NEVER: u64 = u64::MAX;

/// The policy's parameters (gRFC A58 defaults: 10 s, 3 min, 1 s, 1.0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WrrParams {
    /// Reports must arrive this long before the weight is used.
    pub blackout_period: Duration,
    /// A weight not refreshed for this long is dropped.
    pub weight_expiration_period: Duration,
    /// How often the scheduler is rebuilt (at least 100 ms).
    pub weight_update_period: Duration,
    /// Penalty factor for the error rate `eps / qps`.
    pub error_utilization_penalty: f32,
}

/// One endpoint's weight state, shared with the calls that report on it.
#[derive(Debug)]
pub struct WrrWeight {
    weight_bits: AtomicU64,
    last_updated_ns: AtomicU64,
    non_empty_since_ns: AtomicU64,
}

impl Default for WrrWeight {
    fn default() -> Self {
        WrrWeight {
            weight_bits: AtomicU64::new(0f64.to_bits()),
            last_updated_ns: AtomicU64::new(0),
            non_empty_since_ns: AtomicU64::new(NEVER),
        }
    }
}

impl WrrWeight {
    /// Applies one load report (A58 `UpdateWeight`); reports without qps or utilization are
    /// ignored.
    pub fn record(&self, report: &xds_proto::orca::OrcaLoadReport, penalty: f32, now: u64) {
        let qps = report.rps_fractional;
        let mut utilization = if report.application_utilization > 0.0 {
            report.application_utilization
        } else {
            report.cpu_utilization
        };
        if utilization > 0.0 && qps > 0.0 {
            utilization += report.eps / qps * f64::from(penalty);
        }
        let weight = if utilization > 0.0 {
            qps / utilization
        } else {
            0.0
        };
        if !(weight.is_finite() && weight > 0.0) {
            return;
        }
        let _ = self.non_empty_since_ns.compare_exchange(
            NEVER,
            now,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.last_updated_ns.store(now, Ordering::Release);
        self.weight_bits.store(weight.to_bits(), Ordering::Release);
    }

    /// The weight to use now (A58 `GetWeight`): 0 while blacked out or after expiry.
    pub fn get(&self, params: &WrrParams, now: u64) -> f64 {
        let since = self.non_empty_since_ns.load(Ordering::Acquire);
        if since == NEVER {
            return 0.0;
        }
        let last = self.last_updated_ns.load(Ordering::Acquire);
        if now.saturating_sub(last) >= ns(params.weight_expiration_period) {
            self.non_empty_since_ns.store(NEVER, Ordering::Release);
            return 0.0;
        }
        if !params.blackout_period.is_zero()
            && now.saturating_sub(since) < ns(params.blackout_period)
        {
            return 0.0;
        }
        f64::from_bits(self.weight_bits.load(Ordering::Acquire))
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A built schedule: indices of ready endpoints and their scaled weights.
#[derive(Debug, Default)]
struct Schedule {
    members: Vec<(usize, u64)>,
}

/// The picker of one priority.
#[derive(Debug)]
pub(super) struct Wrr {
    params: WrrParams,
    schedule: ArcSwap<Schedule>,
    next_build_ns: AtomicU64,
    seq: AtomicU64,
}

impl Wrr {
    pub(super) fn new(params: WrrParams) -> Self {
        Wrr {
            params,
            schedule: ArcSwap::from_pointee(Schedule::default()),
            next_build_ns: AtomicU64::new(0),
            seq: AtomicU64::new(rand::random::<u32>().into()),
        }
    }

    fn rebuild(&self, eps: &[PoolEndpoint], now: u64) {
        let ready: Vec<(usize, f64)> = eps
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_ready())
            .map(|(i, e)| (i, e.load().wrr().get(&self.params, now)))
            .collect();
        self.schedule.store(Arc::new(Schedule {
            members: scale(&ready),
        }));
    }

    pub(super) fn pick<'a>(&self, eps: &'a [PoolEndpoint], now: u64) -> Option<&'a PoolEndpoint> {
        let due = self.next_build_ns.load(Ordering::Acquire);
        if now >= due
            && self
                .next_build_ns
                .compare_exchange(
                    due,
                    now.saturating_add(ns(self.params.weight_update_period)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.rebuild(eps, now);
        }
        let schedule = self.schedule.load();
        if let Some(i) = stride_pick(&schedule.members, &self.seq)
            && let Some(ep) = eps.get(i)
            && ep.is_ready()
        {
            return Some(ep);
        }
        // The schedule is empty or stale (an endpoint changed state): rebuild at the next
        // pick and serve this one from any ready endpoint.
        self.next_build_ns.store(0, Ordering::Release);
        super::first_ready_from(eps, self.seq.fetch_add(1, Ordering::Relaxed) as usize)
    }
}

/// Scales weights so the largest is [`MAX_WEIGHT`]; zero weights take the mean of the others;
/// with fewer than two non-zero weights all are equal.
fn scale(weights: &[(usize, f64)]) -> Vec<(usize, u64)> {
    let known: Vec<f64> = weights.iter().map(|w| w.1).filter(|w| *w > 0.0).collect();
    if known.len() < 2 {
        return weights.iter().map(|(i, _)| (*i, MAX_WEIGHT)).collect();
    }
    let mean = known.iter().sum::<f64>() / known.len() as f64;
    let max = known.iter().copied().fold(0.0, f64::max);
    weights
        .iter()
        .map(|&(i, w)| {
            let w = if w > 0.0 { w } else { mean };
            (
                i,
                ((w / max * MAX_WEIGHT as f64).round() as u64).clamp(1, MAX_WEIGHT),
            )
        })
        .collect()
}

/// One pick of the static stride scheduler: bounded, since the largest weight is accepted
/// in every generation.
fn stride_pick(members: &[(usize, u64)], seq: &AtomicU64) -> Option<usize> {
    let n = members.len() as u64;
    if n == 0 {
        return None;
    }
    // Every endpoint of maximal weight accepts each generation: at most n × (MAX / min)
    // steps would be the worst case; in practice a couple of passes. Bound it anyway.
    for _ in 0..(n * 64) {
        let s = seq.fetch_add(1, Ordering::Relaxed);
        let k = s % n;
        let generation = s / n;
        let (idx, w) = *members.get(k as usize)?;
        let offset = k.wrapping_mul(OFFSET) % MAX_WEIGHT;
        if (w.wrapping_mul(generation).wrapping_add(offset)) % MAX_WEIGHT >= MAX_WEIGHT - w {
            return Some(idx);
        }
    }
    members.first().map(|m| m.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(qps: f64, cpu: f64) -> xds_proto::orca::OrcaLoadReport {
        xds_proto::orca::OrcaLoadReport {
            rps_fractional: qps,
            cpu_utilization: cpu,
            ..Default::default()
        }
    }

    fn params(blackout: u64) -> WrrParams {
        WrrParams {
            blackout_period: Duration::from_secs(blackout),
            weight_expiration_period: Duration::from_secs(180),
            weight_update_period: Duration::from_secs(1),
            error_utilization_penalty: 1.0,
        }
    }

    #[test]
    fn weight_follows_a58_formula_blackout_and_expiry() {
        let w = WrrWeight::default();
        let s = 1_000_000_000;
        w.record(&report(100.0, 0.5), 1.0, s);
        assert_eq!(w.get(&params(0), s), 200.0);
        assert_eq!(w.get(&params(10), 5 * s), 0.0, "blacked out for 10 s");
        assert_eq!(w.get(&params(10), 11 * s), 200.0, "blackout over");
        assert_eq!(w.get(&params(10), 200 * s), 0.0, "expired");
        // After expiry, the blackout starts again with the next report.
        w.record(&report(100.0, 0.5), 1.0, 201 * s);
        assert_eq!(w.get(&params(10), 202 * s), 0.0);
        assert_eq!(w.get(&params(10), 212 * s), 200.0);
        // The error penalty: 100 qps, 0.5 cpu, 10 eps, penalty 1 → 100 / 0.6.
        let w = WrrWeight::default();
        let mut r = report(100.0, 0.5);
        r.eps = 10.0;
        w.record(&r, 1.0, s);
        assert!((w.get(&params(0), s) - 100.0 / 0.6).abs() < 1e-9);
        // Application utilization wins over CPU; reports without qps are ignored.
        let w = WrrWeight::default();
        r = report(100.0, 0.5);
        r.application_utilization = 0.25;
        w.record(&r, 0.0, s);
        assert_eq!(w.get(&params(0), s), 400.0);
        w.record(&report(0.0, 0.5), 0.0, 2 * s);
        assert_eq!(w.get(&params(0), 2 * s), 400.0);
    }

    #[test]
    fn stride_scheduler_follows_weights() {
        let members = scale(&[(0, 1.0), (1, 2.0), (2, 4.0), (3, 0.0)]);
        // The unknown weight takes the mean (7/3).
        let seq = AtomicU64::new(12345);
        let mut counts = [0usize; 4];
        let n = 93_000;
        for _ in 0..n {
            counts[stride_pick(&members, &seq).unwrap()] += 1;
        }
        let total_w = 1.0 + 2.0 + 4.0 + 7.0 / 3.0;
        for (i, w) in [1.0, 2.0, 4.0, 7.0 / 3.0].iter().enumerate() {
            let want = n as f64 * w / total_w;
            let got = counts[i] as f64;
            assert!(
                (got - want).abs() / want < 0.01,
                "{i}: {got} vs {want}: {counts:?}"
            );
        }
        // Fewer than two weights: plain round robin.
        assert!(
            scale(&[(0, 5.0), (1, 0.0)])
                .iter()
                .all(|m| m.1 == MAX_WEIGHT)
        );
    }
}
