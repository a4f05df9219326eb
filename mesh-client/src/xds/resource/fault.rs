//! Validation of the `HTTPFault` filter config (gRFC A33) into [`config::FaultInjection`],
//! used both as an HCM filter and as a per-route override (A39: an override replaces the
//! filter's config).
//!
//! As in gRPC: `fixed_delay` or `header_delay`; an abort with `grpc_status`, `http_status`
//! (mapped to a gRPC code; 200 → UNKNOWN) or `header_abort`; `percentage` defaults to 0 %
//! (nothing injected); `max_active_faults` unset means unlimited. Envoy's other fields
//! (`headers`, `upstream_cluster`, `downstream_nodes`, `response_rate_limit`, the runtime
//! keys) are ignored. NACKed: a config that does not decode, an invalid `fixed_delay`, a
//! `percentage` with an unknown denominator, a `grpc_status` above 16.

use prost::Message;
use xds_proto::envoy::envoy::extensions::filters::common::fault::v3::fault_delay::FaultDelaySecifier;
use xds_proto::envoy::envoy::extensions::filters::http::fault::v3::{
    HttpFault, fault_abort::ErrorType,
};
use xds_proto::envoy::envoy::r#type::v3::FractionalPercent;
use xds_proto::envoy::envoy::r#type::v3::fractional_percent::DenominatorType;
use xds_proto::protobuf::Any;
use xds_proto::type_url;

use crate::config::{self, AbortKind, DelayKind, FaultAbort, FaultDelay, Fraction};

/// Decodes and validates an `HTTPFault` packed directly in `any`.
pub(crate) fn validate_any(any: &Any) -> Result<config::FaultInjection, String> {
    if any.type_url != type_url::FAULT {
        return Err("HTTPFault config must be packed directly, not in a TypedStruct".into());
    }
    let proto = HttpFault::decode(any.value.as_slice())
        .map_err(|e| format!("cannot decode HTTPFault: {e}"))?;
    validate(&proto)
}

/// Validates a decoded `HTTPFault`.
pub(crate) fn validate(f: &HttpFault) -> Result<config::FaultInjection, String> {
    let delay = match &f.delay {
        None => None,
        Some(d) => {
            let kind = match &d.fault_delay_secifier {
                Some(FaultDelaySecifier::FixedDelay(pd)) => DelayKind::Fixed(
                    super::duration(pd).map_err(|e| format!("delay.fixed_delay: {e}"))?,
                ),
                Some(FaultDelaySecifier::HeaderDelay(_)) => DelayKind::Header,
                // Envoy requires one; gRPC injects no delay without it.
                None => DelayKind::Fixed(std::time::Duration::ZERO),
            };
            Some(FaultDelay {
                kind,
                percentage: fraction(d.percentage.as_ref())
                    .map_err(|e| format!("delay.percentage: {e}"))?,
            })
        }
    };
    let abort = match &f.abort {
        None => None,
        Some(a) => {
            let kind = match a.error_type {
                Some(ErrorType::GrpcStatus(code)) => {
                    if code > 16 {
                        return Err(format!(
                            "abort.grpc_status: {code} is not a gRPC status code"
                        ));
                    }
                    Some(AbortKind::Grpc(code as i32))
                }
                Some(ErrorType::HttpStatus(status)) => {
                    Some(AbortKind::Grpc(config::grpc_code_for_http_status(status)))
                }
                Some(ErrorType::HeaderAbort(_)) => Some(AbortKind::Header),
                // No error type: nothing to abort with (Envoy requires one).
                None => None,
            };
            match kind {
                Some(kind) => Some(FaultAbort {
                    kind,
                    percentage: fraction(a.percentage.as_ref())
                        .map_err(|e| format!("abort.percentage: {e}"))?,
                }),
                None => None,
            }
        }
    };
    Ok(config::FaultInjection {
        delay,
        abort,
        max_active_faults: f.max_active_faults.map(|v| v.value),
    })
}

fn fraction(p: Option<&FractionalPercent>) -> Result<Fraction, String> {
    let Some(p) = p else {
        return Ok(Fraction::new(0, 100));
    };
    let denominator = match DenominatorType::try_from(p.denominator) {
        Ok(DenominatorType::Hundred) => 100,
        Ok(DenominatorType::TenThousand) => 10_000,
        Ok(DenominatorType::Million) => 1_000_000,
        Err(_) => return Err(format!("unknown denominator {}", p.denominator)),
    };
    Ok(Fraction::new(p.numerator, denominator))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use xds_proto::any::pack;
    use xds_proto::envoy::envoy::extensions::filters::common::fault::v3::{
        FaultDelay as DelayProto, fault_delay::HeaderDelay,
    };
    use xds_proto::envoy::envoy::extensions::filters::http::fault::v3::{
        FaultAbort as AbortProto, fault_abort::HeaderAbort,
    };
    use xds_proto::protobuf::{Duration as PbDuration, UInt32Value};

    fn pct(n: u32, d: DenominatorType) -> Option<FractionalPercent> {
        Some(FractionalPercent {
            numerator: n,
            denominator: d as i32,
        })
    }

    fn abort(e: ErrorType, n: u32) -> Option<AbortProto> {
        Some(AbortProto {
            error_type: Some(e),
            percentage: pct(n, DenominatorType::Hundred),
            ..Default::default()
        })
    }

    /// One row per gRFC A33 rule.
    #[test]
    fn fault_validation_table() {
        let fixed = |s: i64, n: i32| {
            Some(DelayProto {
                fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(PbDuration {
                    seconds: s,
                    nanos: n,
                })),
                percentage: pct(500_000, DenominatorType::Million),
            })
        };
        let rows: Vec<(&str, HttpFault, Result<config::FaultInjection, &str>)> = vec![
            (
                "fixed delay, percentage of a million",
                HttpFault {
                    delay: fixed(1, 0),
                    ..Default::default()
                },
                Ok(config::FaultInjection {
                    delay: Some(FaultDelay {
                        kind: DelayKind::Fixed(Duration::from_secs(1)),
                        percentage: Fraction::new(500_000, 1_000_000),
                    }),
                    ..Default::default()
                }),
            ),
            (
                "header delay, no percentage is 0 %",
                HttpFault {
                    delay: Some(DelayProto {
                        fault_delay_secifier: Some(FaultDelaySecifier::HeaderDelay(HeaderDelay {})),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Ok(config::FaultInjection {
                    delay: Some(FaultDelay {
                        kind: DelayKind::Header,
                        percentage: Fraction::new(0, 100),
                    }),
                    ..Default::default()
                }),
            ),
            (
                "http_status mapped (503 -> UNAVAILABLE), max_active_faults",
                HttpFault {
                    abort: abort(ErrorType::HttpStatus(503), 20),
                    max_active_faults: Some(UInt32Value { value: 7 }),
                    ..Default::default()
                },
                Ok(config::FaultInjection {
                    abort: Some(FaultAbort {
                        kind: AbortKind::Grpc(14),
                        percentage: Fraction::new(20, 100),
                    }),
                    max_active_faults: Some(7),
                    ..Default::default()
                }),
            ),
            (
                "http_status 200 -> UNKNOWN",
                HttpFault {
                    abort: abort(ErrorType::HttpStatus(200), 100),
                    ..Default::default()
                },
                Ok(config::FaultInjection {
                    abort: Some(FaultAbort {
                        kind: AbortKind::Grpc(2),
                        percentage: Fraction::new(100, 100),
                    }),
                    ..Default::default()
                }),
            ),
            (
                "header abort, numerator above denominator capped",
                HttpFault {
                    abort: abort(ErrorType::HeaderAbort(HeaderAbort {}), 250),
                    ..Default::default()
                },
                Ok(config::FaultInjection {
                    abort: Some(FaultAbort {
                        kind: AbortKind::Header,
                        percentage: Fraction::new(100, 100),
                    }),
                    ..Default::default()
                }),
            ),
            (
                "grpc_status above 16",
                HttpFault {
                    abort: abort(ErrorType::GrpcStatus(17), 10),
                    ..Default::default()
                },
                Err("abort.grpc_status: 17 is not a gRPC status code"),
            ),
            (
                "negative fixed delay",
                HttpFault {
                    delay: fixed(-1, 0),
                    ..Default::default()
                },
                Err("delay.fixed_delay: "),
            ),
            (
                "unknown denominator",
                HttpFault {
                    abort: Some(AbortProto {
                        error_type: Some(ErrorType::GrpcStatus(3)),
                        percentage: Some(FractionalPercent {
                            numerator: 1,
                            denominator: 9,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Err("abort.percentage: unknown denominator 9"),
            ),
        ];
        for (name, proto, want) in rows {
            let got = validate_any(&pack(&proto));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{name}"),
                (Err(g), Err(w)) => assert!(g.starts_with(w), "{name}: {g}"),
                (g, w) => panic!("{name}: got {g:?}, want {w:?}"),
            }
        }
    }
}
