//! Fault injection on the client (gRFC A33): decides, before any byte of the RPC is sent,
//! whether to delay it and whether to abort it, each with its own random draw, honouring the
//! `x-envoy-fault-*` headers for header-controlled faults and the process-wide
//! `max_active_faults`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::config::{AbortKind, DelayKind, FaultInjection, grpc_code_for_http_status};

/// Fault-injected RPCs in progress, process-wide (gRFC A33's active-faults gauge).
static ACTIVE_FAULTS: AtomicU32 = AtomicU32::new(0);

const DELAY_HEADER: &str = "x-envoy-fault-delay-request";
const DELAY_PERCENT_HEADER: &str = "x-envoy-fault-delay-request-percentage";
const ABORT_HTTP_HEADER: &str = "x-envoy-fault-abort-request";
const ABORT_GRPC_HEADER: &str = "x-envoy-fault-abort-grpc-request";
const ABORT_PERCENT_HEADER: &str = "x-envoy-fault-abort-request-percentage";

/// The message of an injected abort (as grpc-go words it).
pub const ABORT_MESSAGE: &str = "RPC terminated due to fault injection";

/// The faults chosen for one RPC. While it lives it counts as an active fault.
#[derive(Debug)]
pub struct Injected {
    /// Wait this long before the RPC starts.
    pub delay: Option<Duration>,
    /// Then end it with this gRPC code.
    pub abort: Option<i32>,
    _active: ActiveFault,
}

#[derive(Debug)]
struct ActiveFault;

impl Drop for ActiveFault {
    fn drop(&mut self) {
        ACTIVE_FAULTS.fetch_sub(1, Ordering::AcqRel);
    }
}

fn header<T: std::str::FromStr>(headers: &http::HeaderMap, name: &str) -> Option<T> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Decides the faults of one RPC under `fault`, drawing uniform numbers from `draw` (one
/// per feature). `None`: nothing injected (including when `max_active_faults` is reached).
pub fn decide(
    fault: &FaultInjection,
    headers: &http::HeaderMap,
    mut draw: impl FnMut() -> u32,
) -> Option<Injected> {
    let delay = fault.delay.as_ref().and_then(|d| {
        let (duration, pct) = match d.kind {
            DelayKind::Fixed(t) => (Some(t), d.percentage),
            DelayKind::Header => (
                header::<u64>(headers, DELAY_HEADER).map(Duration::from_millis),
                match header::<u32>(headers, DELAY_PERCENT_HEADER) {
                    Some(n) => d.percentage.lowered_to(n),
                    None => d.percentage,
                },
            ),
        };
        let duration = duration.filter(|t| !t.is_zero())?;
        pct.hit(draw()).then_some(duration)
    });
    let abort = fault.abort.as_ref().and_then(|a| {
        let (code, pct) = match a.kind {
            AbortKind::Grpc(c) => (Some(c), a.percentage),
            AbortKind::Header => (
                header::<u32>(headers, ABORT_HTTP_HEADER)
                    .map(grpc_code_for_http_status)
                    .or_else(|| {
                        header::<i32>(headers, ABORT_GRPC_HEADER).filter(|c| (0..=16).contains(c))
                    }),
                match header::<u32>(headers, ABORT_PERCENT_HEADER) {
                    Some(n) => a.percentage.lowered_to(n),
                    None => a.percentage,
                },
            ),
        };
        let code = code?;
        pct.hit(draw()).then_some(code)
    });
    if delay.is_none() && abort.is_none() {
        return None;
    }
    let limit = fault.max_active_faults.unwrap_or(u32::MAX);
    ACTIVE_FAULTS
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .ok()?;
    Some(Injected {
        delay,
        abort,
        _active: ActiveFault,
    })
}

/// Fault-injected RPCs in progress in the process.
pub fn active_faults() -> u32 {
    ACTIVE_FAULTS.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FaultAbort, FaultDelay, Fraction};

    /// The active-fault gauge is process-wide: tests that inject run one at a time.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn abort_header(pct: u32) -> FaultInjection {
        FaultInjection {
            abort: Some(FaultAbort {
                kind: AbortKind::Header,
                percentage: Fraction::new(pct, 100),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn fixed_faults_follow_their_percentages_independently() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let f = FaultInjection {
            delay: Some(FaultDelay {
                kind: DelayKind::Fixed(Duration::from_millis(5)),
                percentage: Fraction::new(20, 100),
            }),
            abort: Some(FaultAbort {
                kind: AbortKind::Grpc(14),
                percentage: Fraction::new(5, 100),
            }),
            max_active_faults: None,
        };
        let h = http::HeaderMap::new();
        let (mut delays, mut aborts, mut any) = (0, 0, 0);
        for _ in 0..10_000 {
            if let Some(i) = decide(&f, &h, || rng.random_range(0..100)) {
                any += 1;
                delays += usize::from(i.delay.is_some());
                aborts += usize::from(i.abort.is_some());
            }
        }
        // Independent draws: 20 %, 5 %, and 1 - 0.8 × 0.95 = 24 % affected.
        assert!((1_850..2_150).contains(&delays), "{delays}");
        assert!((420..580).contains(&aborts), "{aborts}");
        assert!((2_250..2_550).contains(&any), "{any}");
    }

    #[test]
    fn header_controlled_abort_and_cap() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut h = http::HeaderMap::new();
        assert!(
            decide(&abort_header(100), &h, || 0).is_none(),
            "no header, no abort"
        );
        h.insert(ABORT_GRPC_HEADER, "3".parse().unwrap());
        assert_eq!(decide(&abort_header(100), &h, || 0).unwrap().abort, Some(3));
        h.insert(ABORT_HTTP_HEADER, "503".parse().unwrap());
        assert_eq!(
            decide(&abort_header(100), &h, || 0).unwrap().abort,
            Some(14),
            "HTTP header first"
        );
        // The header may lower the percentage, never raise it.
        h.insert(ABORT_PERCENT_HEADER, "10".parse().unwrap());
        assert!(decide(&abort_header(100), &h, || 10).is_none());
        assert!(decide(&abort_header(100), &h, || 9).is_some());
        h.insert(ABORT_PERCENT_HEADER, "90".parse().unwrap());
        assert!(decide(&abort_header(50), &h, || 60).is_none());
        h.insert(ABORT_PERCENT_HEADER, "junk".parse().unwrap());
        assert!(
            decide(&abort_header(50), &h, || 10).is_some(),
            "invalid header ignored"
        );
    }

    #[test]
    fn max_active_faults_limits_concurrent_faults() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut f = abort_header(100);
        f.max_active_faults = Some(1);
        let mut h = http::HeaderMap::new();
        h.insert(ABORT_GRPC_HEADER, "3".parse().unwrap());
        let first = decide(&f, &h, || 0).unwrap();
        assert!(decide(&f, &h, || 0).is_none(), "limit reached");
        drop(first);
        assert!(decide(&f, &h, || 0).is_some());
    }
}
