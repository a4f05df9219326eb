//! Retry decisions (gRFC A44, with A6's rules): which statuses are retried, how long to back
//! off, and what the server's `grpc-retry-pushback-ms` says.
//!
//! A call is retried only before it commits, i.e. when the attempt failed without response
//! headers (a Trailers-Only response or a transport error); once headers arrive the call is
//! committed and never retried. The n-th retry waits a random time in
//! `0..min(base × 2^(n-1), max)` (A6's full jitter, backoff multiplier 2 as A44 fixes it).
//! A pushback of `N` ms replaces that wait (and restarts the backoff sequence); a negative or
//! malformed pushback stops retrying.

use std::time::Duration;

use crate::config::RetryPolicy;

/// The trailer a server uses to ask for a specific retry delay, or for no retry (A6).
pub const PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// The header telling the server how many attempts preceded this one (A6).
pub const PREVIOUS_ATTEMPTS_HEADER: &str = "grpc-previous-rpc-attempts";

/// What the server's pushback says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushback {
    /// No pushback: use the policy's backoff.
    None,
    /// Retry after exactly this long.
    After(Duration),
    /// Do not retry.
    Stop,
}

/// Reads `grpc-retry-pushback-ms` from a Trailers-Only response's headers.
pub fn pushback(headers: &http::HeaderMap) -> Pushback {
    match headers.get(PUSHBACK_HEADER) {
        None => Pushback::None,
        Some(v) => match v.to_str().ok().and_then(|s| s.trim().parse::<i64>().ok()) {
            Some(ms) if ms >= 0 => Pushback::After(Duration::from_millis(ms as u64)),
            _ => Pushback::Stop,
        },
    }
}

/// The backoff state of one call.
#[derive(Debug, Clone)]
pub struct Backoff {
    next_max: Duration,
}

impl Backoff {
    /// The sequence for `policy`.
    pub fn new(policy: &RetryPolicy) -> Self {
        Backoff {
            next_max: policy.base_interval,
        }
    }

    /// The wait before the next retry, given a uniform `draw` in `[0, 1)` and the pushback.
    pub fn next(
        &mut self,
        policy: &RetryPolicy,
        pushback: Pushback,
        draw: f64,
    ) -> Option<Duration> {
        match pushback {
            Pushback::Stop => None,
            Pushback::After(d) => {
                self.next_max = policy.base_interval;
                Some(d)
            }
            Pushback::None => {
                let wait = self.next_max.mul_f64(draw.clamp(0.0, 1.0));
                self.next_max = self.next_max.saturating_mul(2).min(policy.max_interval);
                Some(wait)
            }
        }
    }
}

/// Whether `code` is retried by `policy` and another attempt is allowed after `attempts`.
pub fn retryable(policy: &RetryPolicy, code: i32, attempts: u32) -> bool {
    attempts < policy.max_attempts && policy.retry_on.contains(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RetryOn;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retry_on: RetryOn::default().with(14),
            max_attempts: 3,
            base_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(300),
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let p = policy();
        let mut b = Backoff::new(&p);
        let waits: Vec<_> = (0..4)
            .map(|_| b.next(&p, Pushback::None, 0.5).unwrap())
            .collect();
        assert_eq!(
            waits,
            [50, 100, 150, 150].map(Duration::from_millis).to_vec()
        );
        // Pushback replaces the wait and restarts the sequence.
        assert_eq!(
            b.next(&p, Pushback::After(Duration::from_millis(7)), 0.5),
            Some(Duration::from_millis(7))
        );
        assert_eq!(
            b.next(&p, Pushback::None, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(b.next(&p, Pushback::Stop, 0.5), None);
    }

    #[test]
    fn codes_and_attempts() {
        let p = policy();
        assert!(retryable(&p, 14, 1) && retryable(&p, 14, 2));
        assert!(!retryable(&p, 14, 3), "max_attempts reached");
        assert!(!retryable(&p, 13, 1), "INTERNAL is not in retry_on");
    }

    #[test]
    fn pushback_parsing() {
        let mut h = http::HeaderMap::new();
        assert_eq!(pushback(&h), Pushback::None);
        h.insert(PUSHBACK_HEADER, "250".parse().unwrap());
        assert_eq!(pushback(&h), Pushback::After(Duration::from_millis(250)));
        h.insert(PUSHBACK_HEADER, "-1".parse().unwrap());
        assert_eq!(pushback(&h), Pushback::Stop);
        h.insert(PUSHBACK_HEADER, "soon".parse().unwrap());
        assert_eq!(pushback(&h), Pushback::Stop);
    }
}
