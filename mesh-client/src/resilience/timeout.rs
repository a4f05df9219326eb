//! Call deadlines (gRFC A31): the application's `grpc-timeout`, capped by the route's
//! `max_stream_duration` (`grpc_timeout_header_max` preferred) or else the HCM's. The
//! channel enforces the deadline across every attempt, the backoff and the response body,
//! and sends the remaining time as `grpc-timeout` on each attempt.

use std::time::Duration;

/// The header that carries the deadline (gRPC over HTTP/2).
pub const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (`H M S m u n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `d` as a `grpc-timeout` value in the finest unit that fits in 8 digits.
pub fn format_grpc_timeout(d: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let ns = d.as_nanos();
    for (div, unit) in [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
    ] {
        // Round up so the server's deadline is never earlier than ours.
        let v = ns.div_ceil(div);
        if v <= MAX {
            return format!("{v}{unit}");
        }
    }
    format!("{}H", (ns.div_ceil(3_600_000_000_000)).min(MAX))
}

/// The call's timeout: the smaller of the application's and the configured maximum.
pub fn effective(app: Option<Duration>, max: Option<Duration>) -> Option<Duration> {
    match (app, max) {
        (Some(a), Some(m)) => Some(a.min(m)),
        (a, m) => a.or(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_round_trip() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("123456789m"), None, "9 digits");
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(format_grpc_timeout(Duration::from_millis(1500)), "1500000u");
        assert_eq!(format_grpc_timeout(Duration::from_secs(1000)), "1000000m");
        assert_eq!(format_grpc_timeout(Duration::from_nanos(5)), "5n");
        let d = Duration::from_millis(12_345);
        assert_eq!(parse_grpc_timeout(&format_grpc_timeout(d)), Some(d));
    }

    #[test]
    fn smaller_wins() {
        let s = Duration::from_secs;
        assert_eq!(effective(Some(s(5)), Some(s(1))), Some(s(1)));
        assert_eq!(effective(Some(s(1)), Some(s(5))), Some(s(1)));
        assert_eq!(effective(None, Some(s(5))), Some(s(5)));
        assert_eq!(effective(None, None), None);
    }
}
