//! Endpoint pools and pickers: priority failover and weighted round robin across the
//! localities and endpoints of one cluster (gRFC A27: priority → locality weights →
//! round robin; gRFC A56 priority failover).
//!
//! A [`ClusterPool`] is an immutable snapshot built when endpoints change. Picking is
//! lock-free: the highest priority with a ready endpoint is chosen, then a precomputed
//! weighted schedule is walked from an atomic cursor, skipping endpoints that are not
//! ready. Connectivity itself lives in [`crate::transport`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::ClusterLoadAssignment;
use crate::transport::{ConnectionSet, ConnectivityState, EndpointConnection};

/// The largest schedule built for one priority; larger weight sums are scaled down.
const MAX_SCHEDULE: u64 = 4096;

/// One priority level's endpoints and its weighted schedule.
#[derive(Debug)]
struct PriorityPool {
    endpoints: Vec<EndpointConnection>,
    /// Indices into `endpoints`, interleaved by weight (smooth weighted round robin).
    schedule: Vec<usize>,
    cursor: AtomicUsize,
}

/// The usable endpoints of one cluster, grouped by priority.
#[derive(Debug)]
pub struct ClusterPool {
    name: Arc<str>,
    priorities: Vec<PriorityPool>,
}

/// Why no endpoint could be picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickError {
    /// The cluster has no usable (healthy) endpoint at all.
    NoEndpoints,
    /// Endpoints exist but none is ready; some are still connecting.
    Connecting,
    /// Every endpoint failed its last connection attempt.
    AllFailed {
        /// The last error seen on one of them.
        last_error: Option<String>,
    },
}

impl ClusterPool {
    /// Builds the pool of `cla`, reusing connections from `conns` by address.
    /// Endpoints that are not UNKNOWN/HEALTHY and localities of weight 0 are left out.
    pub fn build(name: &str, cla: &ClusterLoadAssignment, conns: &ConnectionSet) -> Self {
        let mut by_priority: std::collections::BTreeMap<u32, Vec<(EndpointConnection, u64)>> =
            Default::default();
        for loc in &cla.localities {
            if loc.weight == 0 {
                continue;
            }
            let usable: Vec<_> = loc
                .endpoints
                .iter()
                .filter(|e| e.health.is_usable() && e.weight > 0)
                .collect();
            if usable.is_empty() {
                continue;
            }
            // Locality weight is split across its endpoints in proportion to their weights,
            // so a locality's share of traffic is its weight (gRFC A27 weighted_target).
            let endpoint_total: u64 = usable.iter().map(|e| u64::from(e.weight)).sum();
            let entry = by_priority.entry(loc.priority).or_default();
            for e in usable {
                let w = u64::from(loc.weight) * u64::from(e.weight) * 1000 / endpoint_total.max(1);
                entry.push((conns.get_or_connect(e.address), w.max(1)));
            }
        }
        let priorities = by_priority
            .into_values()
            .map(|eps| {
                let weights: Vec<u64> = eps.iter().map(|(_, w)| *w).collect();
                let schedule = smooth_wrr_schedule(&weights);
                let start = rand::random::<u32>() as usize;
                PriorityPool {
                    endpoints: eps.into_iter().map(|(c, _)| c).collect(),
                    schedule,
                    cursor: AtomicUsize::new(start),
                }
            })
            .collect();
        ClusterPool {
            name: name.into(),
            priorities,
        }
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every endpoint connection of the pool, highest priority first.
    pub fn endpoints(&self) -> impl Iterator<Item = &EndpointConnection> {
        self.priorities.iter().flat_map(|p| p.endpoints.iter())
    }

    /// Picks a ready endpoint: the first priority that has one, weighted round robin
    /// within it.
    pub fn pick(&self) -> Result<&EndpointConnection, PickError> {
        if self.priorities.is_empty() {
            return Err(PickError::NoEndpoints);
        }
        for p in &self.priorities {
            let n = p.schedule.len();
            if n == 0 {
                continue;
            }
            let start = p.cursor.fetch_add(1, Ordering::Relaxed);
            for i in 0..n {
                let slot = (start.wrapping_add(i)) % n;
                if let Some(ep) = p.schedule.get(slot).and_then(|&idx| p.endpoints.get(idx))
                    && ep.is_ready()
                {
                    if i > 0 {
                        // Skip past the not-ready slots so the next pick does not repeat
                        // this endpoint.
                        p.cursor.fetch_add(i, Ordering::Relaxed);
                    }
                    return Ok(ep);
                }
            }
        }
        let mut any_pending = false;
        let mut last_error = None;
        for ep in self.endpoints() {
            match ep.state() {
                ConnectivityState::TransientFailure => {
                    if last_error.is_none() {
                        last_error = ep.last_error();
                    }
                }
                _ => any_pending = true,
            }
        }
        if any_pending {
            Err(PickError::Connecting)
        } else {
            Err(PickError::AllFailed { last_error })
        }
    }
}

/// An interleaved schedule in which index `i` appears in proportion to `weights[i]`
/// (nginx's smooth weighted round robin), at most [`MAX_SCHEDULE`] long.
fn smooth_wrr_schedule(weights: &[u64]) -> Vec<usize> {
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
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, c) in current.iter_mut().enumerate() {
            *c += w.get(i).copied().unwrap_or(0) as i64;
        }
        for (i, c) in current.iter().enumerate() {
            if current.get(best).is_some_and(|b| c > b) {
                best = i;
            }
        }
        if let Some(c) = current.get_mut(best) {
            *c -= total as i64;
        }
        out.push(best);
    }
    out
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
    fn empty_pool_reports_no_endpoints() {
        let pool = ClusterPool {
            name: "c".into(),
            priorities: vec![],
        };
        assert_eq!(pool.pick().err(), Some(PickError::NoEndpoints));
    }
}
