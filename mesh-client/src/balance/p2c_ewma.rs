//! Power of two choices by peak-EWMA cost (beyond gRPC; as linkerd2-proxy and Finagle do it):
//! two distinct endpoints are sampled and the one with the lower
//! `rtt_estimate × (in_flight + 1)` wins. The estimate (see [`super::load`]) jumps to a
//! slower observation at once and decays toward faster ones, so a slow or stalling endpoint
//! is avoided quickly and retried only once its estimate has faded.

use rand::Rng;

use super::PoolEndpoint;
use super::first_ready_from;

/// Picks the cheaper of two distinct random endpoints at time `now` (ns).
pub(super) fn pick<'a, R: Rng + ?Sized>(
    eps: &'a [PoolEndpoint],
    now: u64,
    rng: &mut R,
) -> Option<&'a PoolEndpoint> {
    let n = eps.len();
    match n {
        0 => return None,
        1 => return eps.first().filter(|e| e.is_ready()),
        _ => {}
    }
    let a = rng.random_range(0..n);
    // A second index, different from the first (`a + 1 + r` is below `2n - 1`: one
    // subtraction wraps it, where `%` would cost a division).
    let b = a + 1 + rng.random_range(0..n - 1);
    let b = if b >= n { b - n } else { b };
    let ready = |i: usize| eps.get(i).filter(|e| e.is_ready());
    match (ready(a), ready(b)) {
        (Some(x), Some(y)) => Some(if y.load().cost(now) < x.load().cost(now) {
            y
        } else {
            x
        }),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => first_ready_from(eps, rng.random_range(0..n)),
    }
}
