//! Client-side fault injection (gRFC A33): the validated `HTTPFault` filter config.
//!
//! A fault is a delay before the RPC starts and/or an abort with a gRPC status, each applied
//! to a fraction of RPCs with its own random draw. Either may be "header controlled": then
//! the request's `x-envoy-fault-*` headers choose the delay or the status, and may lower
//! (never raise) the configured percentage.

use std::time::Duration;

/// A validated `envoy.extensions.filters.http.fault.v3.HTTPFault` (gRFC A33).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FaultInjection {
    /// Delay injection, if configured.
    pub delay: Option<FaultDelay>,
    /// Abort injection, if configured.
    pub abort: Option<FaultAbort>,
    /// `max_active_faults`: at most this many fault-injected RPCs at once in the process;
    /// `None` is unlimited.
    pub max_active_faults: Option<u32>,
}

/// Delay injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultDelay {
    /// How long.
    pub kind: DelayKind,
    /// Which fraction of RPCs.
    pub percentage: Fraction,
}

/// Where a delay's duration comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayKind {
    /// `fixed_delay`.
    Fixed(Duration),
    /// `header_delay`: the `x-envoy-fault-delay-request` header, in milliseconds.
    Header,
}

/// Abort injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultAbort {
    /// Which status.
    pub kind: AbortKind,
    /// Which fraction of RPCs.
    pub percentage: Fraction,
}

/// Where an abort's status comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// A gRPC status code (`grpc_status`, or `http_status` mapped as gRPC's
    /// HTTP-to-gRPC status table says). Code 0 (OK) ends the RPC at once with status OK.
    Grpc(i32),
    /// `header_abort`: `x-envoy-fault-abort-request` (HTTP status, mapped) or
    /// `x-envoy-fault-abort-grpc-request` (gRPC code).
    Header,
}

/// A `FractionalPercent`: `numerator / denominator`, numerator capped at the denominator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    /// The numerator, `<= denominator`.
    pub numerator: u32,
    /// 100, 10 000 or 1 000 000.
    pub denominator: u32,
}

impl Fraction {
    /// The fraction `numerator / denominator`, with the numerator capped.
    pub fn new(numerator: u32, denominator: u32) -> Self {
        Fraction {
            numerator: numerator.min(denominator),
            denominator,
        }
    }

    /// The same denominator with a header-supplied numerator, capped by this one (gRFC A33).
    pub fn lowered_to(self, numerator: u32) -> Self {
        Fraction {
            numerator: numerator.min(self.numerator),
            denominator: self.denominator,
        }
    }

    /// Whether a uniform draw in `0..denominator` falls inside the fraction.
    pub fn hit(self, draw: u32) -> bool {
        draw % self.denominator.max(1) < self.numerator
    }
}

/// Maps an HTTP status to a gRPC code (gRPC's `http-grpc-status-mapping.md`); 200 maps to
/// UNKNOWN, as a 200 without `grpc-status` would (gRFC A33).
pub fn grpc_code_for_http_status(status: u32) -> i32 {
    match status {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_caps_and_lowers() {
        let f = Fraction::new(150, 100);
        assert_eq!(f.numerator, 100);
        let f = Fraction::new(20, 100);
        assert_eq!(f.lowered_to(50).numerator, 20);
        assert_eq!(f.lowered_to(5).numerator, 5);
        assert!(f.hit(19) && !f.hit(20));
    }

    #[test]
    fn http_status_mapping() {
        assert_eq!(grpc_code_for_http_status(503), 14);
        assert_eq!(grpc_code_for_http_status(200), 2);
        assert_eq!(grpc_code_for_http_status(401), 16);
        assert_eq!(grpc_code_for_http_status(404), 12);
    }
}
