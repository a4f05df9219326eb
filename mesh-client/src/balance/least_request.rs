//! Least request (gRFC A48): sample `choice_count` endpoints at random, with replacement, and
//! take the one with the fewest requests in flight (Envoy's "all weights equal" algorithm;
//! endpoint weights are ignored, as A48 says).
//!
//! A48 samples from the list of READY endpoints. Our snapshot holds every endpoint of the
//! priority and readiness is read per pick, so non-ready samples are discarded; if no sample
//! is ready the first ready endpoint from a random offset is taken. With every endpoint
//! ready this is exactly A48.

use rand::Rng;

use super::PoolEndpoint;
use super::first_ready_from;

/// The A48 default `choice_count`.
pub const DEFAULT_CHOICE_COUNT: u32 = 2;
/// The largest `choice_count` (A48 caps larger values to it).
pub const MAX_CHOICE_COUNT: u32 = 10;

/// Picks among `eps` by fewest requests in flight over `choice_count` random samples.
pub(super) fn pick<'a, R: Rng + ?Sized>(
    eps: &'a [PoolEndpoint],
    choice_count: u32,
    rng: &mut R,
) -> Option<&'a PoolEndpoint> {
    let n = eps.len();
    if n == 0 {
        return None;
    }
    let mut best: Option<(&PoolEndpoint, usize)> = None;
    for _ in 0..choice_count.max(1) {
        let Some(ep) = eps.get(rng.random_range(0..n)) else {
            continue;
        };
        if !ep.is_ready() {
            continue;
        }
        let load = ep.load().in_flight();
        if best.is_none_or(|(_, b)| load < b) {
            best = Some((ep, load));
        }
    }
    best.map(|(ep, _)| ep)
        .or_else(|| first_ready_from(eps, rng.random_range(0..n)))
}
