//! Weighted round robin (gRFC A27 `round_robin` under `weighted_target`, flattened): a smooth
//! weighted schedule (nginx's algorithm) precomputed at build time, walked from an atomic
//! cursor, skipping endpoints that are not ready.

use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::PoolEndpoint;

/// The largest schedule built for one priority; larger weight sums are scaled down.
pub(super) const MAX_SCHEDULE: u64 = 4096;

/// A precomputed weighted schedule and its cursor.
#[derive(Debug)]
pub(super) struct RoundRobin {
    /// Indices into the priority's endpoints, interleaved by weight.
    schedule: Vec<usize>,
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// A schedule for endpoints of these weights, starting at a random place so that many
    /// clients do not all start on the same endpoint.
    pub(super) fn new(weights: &[u64]) -> Self {
        RoundRobin {
            schedule: smooth_wrr_schedule(weights),
            cursor: AtomicUsize::new(rand::random::<u32>() as usize),
        }
    }

    /// The next ready endpoint in the schedule, if any is ready.
    pub(super) fn pick<'a>(&self, eps: &'a [PoolEndpoint]) -> Option<&'a PoolEndpoint> {
        let n = self.schedule.len();
        if n == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let slot = start.wrapping_add(i) % n;
            if let Some(ep) = self.schedule.get(slot).and_then(|&idx| eps.get(idx))
                && ep.is_ready()
            {
                if i > 0 {
                    // Skip past the not-ready slots so the next pick does not repeat this
                    // endpoint.
                    self.cursor.fetch_add(i, Ordering::Relaxed);
                }
                return Some(ep);
            }
        }
        None
    }
}

/// An interleaved schedule in which index `i` appears in proportion to `weights[i]`, at most
/// [`MAX_SCHEDULE`] long (or one slot per endpoint, if there are more).
///
/// Equal weights give `0, 1, …, n-1`. Otherwise each endpoint's `k`-th slot is due at
/// `(k + ½) / weight` and slots are laid out in order of their due times (earliest deadline
/// first, ties to the lower index), which spreads each endpoint's slots evenly as nginx's
/// smooth weighted round robin does, in O(slots × log endpoints) rather than nginx's
/// O(slots × endpoints): a 10 000-endpoint EDS update must not take a second.
pub(super) fn smooth_wrr_schedule(weights: &[u64]) -> Vec<usize> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd);
    let mut w: Vec<u64> = weights.iter().map(|x| x / g.max(1)).collect();
    let mut total: u64 = w.iter().sum();
    if total > MAX_SCHEDULE {
        let scale = total as f64 / MAX_SCHEDULE as f64;
        for x in &mut w {
            *x = ((*x as f64 / scale).round() as u64).max(1);
        }
        total = w.iter().sum();
    }
    if w.iter().all(|&x| Some(&x) == w.first()) {
        return (0..w.len()).collect();
    }
    let mut heap: BinaryHeap<Due> = w
        .iter()
        .enumerate()
        .map(|(idx, &weight)| Due {
            slot: 0,
            weight: weight.max(1),
            idx,
        })
        .collect();
    let mut out = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    while let Some(mut due) = heap.pop() {
        out.push(due.idx);
        due.slot += 1;
        if due.slot < due.weight {
            heap.push(due);
        }
    }
    out
}

/// An endpoint's next slot in [`smooth_wrr_schedule`]: slot `slot` of `weight` is due at
/// `(2 × slot + 1) / (2 × weight)`.
#[derive(Debug, PartialEq, Eq)]
struct Due {
    slot: u64,
    weight: u64,
    idx: usize,
}

impl Ord for Due {
    /// Reversed (the heap pops its greatest): the earliest due time, then the lowest index,
    /// is the greatest. Fractions are compared exactly, by cross-multiplying.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let mine = u128::from(2 * self.slot + 1) * u128::from(other.weight);
        let theirs = u128::from(2 * other.slot + 1) * u128::from(self.weight);
        theirs.cmp(&mine).then(other.idx.cmp(&self.idx))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_weights_give_plain_round_robin() {
        assert_eq!(smooth_wrr_schedule(&[5, 5, 5]), vec![0, 1, 2]);
    }

    #[test]
    fn weights_are_interleaved_and_proportional() {
        let s = smooth_wrr_schedule(&[3, 1]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 3);
        // Smooth: the heavy endpoint is not picked three times in a row at the start.
        assert_eq!(s, vec![0, 0, 1, 0]);
    }

    #[test]
    fn huge_weight_sums_are_scaled_down() {
        let s = smooth_wrr_schedule(&[1_000_000, 3_000_000, 7]);
        assert!(s.len() as u64 <= MAX_SCHEDULE + 3);
        let zeros = s.iter().filter(|&&i| i == 0).count() as f64;
        let ones = s.iter().filter(|&&i| i == 1).count() as f64;
        assert!((ones / zeros - 3.0).abs() < 0.05);
        assert!(s.contains(&2), "a tiny weight still gets a slot");
    }

    #[test]
    fn slots_are_spread_evenly() {
        // Each endpoint's slots are due at (k + ½) / weight: 1:2:4 over 7 slots.
        assert_eq!(smooth_wrr_schedule(&[1, 2, 4]), vec![2, 1, 2, 0, 2, 1, 2]);
        // More endpoints than MAX_SCHEDULE: weights scaled by 10 029 / 4 096, one slot each
        // at least.
        let mut weights = vec![1u64; 10_000];
        weights[0] = 30;
        let s = smooth_wrr_schedule(&weights);
        assert_eq!(s.len(), 9_999 + 12);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 12);
        let equal = smooth_wrr_schedule(&vec![7; 10_000]);
        assert!(equal.iter().copied().eq(0..10_000));
    }
}
