//! The `rpc-behavior` request metadata of gRPC's xDS interop server: a test driver tells
//! the server, per RPC, to sleep, hang, fail or succeed only on a given retry attempt.
//!
//! Each `rpc-behavior` value (the header may repeat) is a comma-separated list of
//! behaviours, applied in order:
//!
//! - `sleep-N`: wait N **seconds** (grpc-go and grpc-java both sleep seconds), then go on;
//! - `keep-open`: never answer (the RPC ends when the client cancels it); stops matching;
//! - `error-code-N`: fail with status code N; stops matching;
//! - `succeed-on-retry-attempt-N`: if `grpc-previous-rpc-attempts` is N, answer normally
//!   and stop matching; otherwise go on (`success-on-retry-attempt-N` is accepted too);
//! - `hostname=H <behaviour>`: apply `<behaviour>` only when H is this server's hostname.
//!
//! Unknown behaviours are ignored, as gRPC's servers do; a malformed number is
//! `INVALID_ARGUMENT`. A missing `grpc-previous-rpc-attempts` counts as 0 (a first attempt).

use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

/// The request metadata key carrying behaviours.
pub const RPC_BEHAVIOR_KEY: &str = "rpc-behavior";
/// The request metadata key gRPC sets on retries: how many attempts came before this one.
pub const PREVIOUS_ATTEMPTS_KEY: &str = "grpc-previous-rpc-attempts";

const HOSTNAME_PREFIX: &str = "hostname=";
const SLEEP_PREFIX: &str = "sleep-";
const KEEP_OPEN: &str = "keep-open";
const ERROR_CODE_PREFIX: &str = "error-code-";
const SUCCEED_ON_RETRY_PREFIXES: [&str; 2] =
    ["succeed-on-retry-attempt-", "success-on-retry-attempt-"];

/// How an RPC ends once its behaviours have been matched.
#[derive(Debug)]
pub enum Ending {
    /// Answer normally.
    Respond,
    /// Never answer.
    KeepOpen,
    /// Fail with this status.
    Fail(Status),
}

/// What the server does with one RPC: wait `delay`, then end as `ending`.
#[derive(Debug)]
pub struct Plan {
    /// Total time to sleep before ending (the sum of the matched `sleep-N`).
    pub delay: Duration,
    /// How the RPC ends.
    pub ending: Ending,
}

impl Plan {
    /// Carries the plan out: sleeps, then returns `Ok(())` to answer normally, an error
    /// status to fail, or never returns (`keep-open`).
    pub async fn execute(self) -> Result<(), Status> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        match self.ending {
            Ending::Respond => Ok(()),
            Ending::Fail(status) => Err(status),
            Ending::KeepOpen => std::future::pending().await,
        }
    }
}

/// Matches the request's behaviours against `hostname`; see the module docs.
pub fn plan(metadata: &MetadataMap, hostname: &str) -> Plan {
    let previous_attempts = match previous_attempts(metadata) {
        Ok(n) => n,
        Err(status) => return ended(Duration::ZERO, Ending::Fail(status)),
    };
    let values = metadata
        .get_all(RPC_BEHAVIOR_KEY)
        .iter()
        .filter_map(|v| v.to_str().ok());
    plan_values(values, hostname, previous_attempts)
}

fn ended(delay: Duration, ending: Ending) -> Plan {
    Plan { delay, ending }
}

fn previous_attempts(metadata: &MetadataMap) -> Result<u32, Status> {
    match metadata.get(PREVIOUS_ATTEMPTS_KEY) {
        None => Ok(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "invalid format for {PREVIOUS_ATTEMPTS_KEY} header: {v:?}"
                ))
            }),
    }
}

/// [`plan`] over raw header values (testable without a request).
pub fn plan_values<'a>(
    values: impl Iterator<Item = &'a str>,
    hostname: &str,
    previous_attempts: u32,
) -> Plan {
    let mut delay = Duration::ZERO;
    for raw in values.flat_map(|v| v.split(',')) {
        let mut behavior = raw.trim();
        if behavior.is_empty() {
            continue;
        }
        if let Some(rest) = behavior.strip_prefix(HOSTNAME_PREFIX) {
            let mut parts = rest.split(' ').filter(|p| !p.is_empty());
            let (Some(host), Some(inner)) = (parts.next(), parts.next()) else {
                return ended(delay, invalid(raw, "hostname=<string> <behavior>"));
            };
            if host != hostname {
                continue;
            }
            behavior = inner;
        }
        if let Some(n) = behavior.strip_prefix(SLEEP_PREFIX) {
            match n.parse::<u64>() {
                Ok(secs) => delay += Duration::from_secs(secs),
                Err(_) => return ended(delay, invalid(behavior, "sleep-<int>")),
            }
        } else if behavior == KEEP_OPEN {
            return ended(delay, Ending::KeepOpen);
        } else if let Some(n) = behavior.strip_prefix(ERROR_CODE_PREFIX) {
            return match n.parse::<i32>() {
                Ok(0) => ended(delay, Ending::Respond),
                Ok(code) => ended(
                    delay,
                    Ending::Fail(Status::new(
                        Code::from(code),
                        format!("rpc failed as per the rpc-behavior header value: {behavior}"),
                    )),
                ),
                Err(_) => ended(delay, invalid(behavior, "error-code-<int>")),
            };
        } else if let Some(n) = SUCCEED_ON_RETRY_PREFIXES
            .iter()
            .find_map(|p| behavior.strip_prefix(p))
        {
            match n.parse::<u32>() {
                Ok(want) if want == previous_attempts => return ended(delay, Ending::Respond),
                Ok(_) => {}
                Err(_) => {
                    return ended(delay, invalid(behavior, "succeed-on-retry-attempt-<int>"));
                }
            }
        }
    }
    ended(delay, Ending::Respond)
}

fn invalid(value: &str, want: &str) -> Ending {
    Ending::Fail(Status::invalid_argument(format!(
        "invalid format for rpc-behavior header {value:?}, must be '{want}'"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[&str], host: &str, attempts: u32) -> Plan {
        plan_values(values.iter().copied(), host, attempts)
    }

    fn code(p: &Plan) -> Option<Code> {
        match &p.ending {
            Ending::Fail(s) => Some(s.code()),
            _ => None,
        }
    }

    #[test]
    fn no_behavior_responds() {
        let p = run(&[], "h", 0);
        assert!(matches!(p.ending, Ending::Respond));
        assert!(p.delay.is_zero());
    }

    #[test]
    fn error_code_fails_with_that_code() {
        assert_eq!(code(&run(&["error-code-5"], "h", 0)), Some(Code::NotFound));
        assert_eq!(
            code(&run(&["error-code-14"], "h", 0)),
            Some(Code::Unavailable)
        );
    }

    #[test]
    fn sleeps_add_up_and_matching_goes_on() {
        let p = run(&["sleep-1,sleep-2", "error-code-4"], "h", 0);
        assert_eq!(p.delay, Duration::from_secs(3));
        assert_eq!(code(&p), Some(Code::DeadlineExceeded));
    }

    #[test]
    fn keep_open_stops_matching() {
        let p = run(&["keep-open,error-code-5"], "h", 0);
        assert!(matches!(p.ending, Ending::KeepOpen));
    }

    #[test]
    fn hostname_prefix_applies_only_to_that_host() {
        assert_eq!(
            code(&run(&["hostname=s1 error-code-5"], "s1", 0)),
            Some(Code::NotFound)
        );
        assert!(matches!(
            run(&["hostname=s1 error-code-5"], "s2", 0).ending,
            Ending::Respond
        ));
        assert_eq!(
            code(&run(&["hostname=s1"], "s1", 0)),
            Some(Code::InvalidArgument)
        );
    }

    #[test]
    fn succeed_on_retry_attempt_matches_previous_attempts() {
        let values = ["succeed-on-retry-attempt-2,error-code-14"];
        assert_eq!(code(&run(&values, "h", 0)), Some(Code::Unavailable));
        assert_eq!(code(&run(&values, "h", 1)), Some(Code::Unavailable));
        assert!(matches!(run(&values, "h", 2).ending, Ending::Respond));
        let alias = ["success-on-retry-attempt-1,error-code-14"];
        assert!(matches!(run(&alias, "h", 1).ending, Ending::Respond));
    }

    #[test]
    fn malformed_numbers_are_invalid_argument() {
        for v in ["sleep-x", "error-code-", "succeed-on-retry-attempt-z"] {
            assert_eq!(code(&run(&[v], "h", 0)), Some(Code::InvalidArgument), "{v}");
        }
    }

    #[test]
    fn unknown_behaviors_are_ignored() {
        assert!(matches!(run(&["dance, ,"], "h", 0).ending, Ending::Respond));
    }

    #[test]
    fn bad_previous_attempts_header_is_invalid_argument() {
        let mut md = MetadataMap::new();
        md.insert(PREVIOUS_ATTEMPTS_KEY, "abc".parse().unwrap());
        assert!(matches!(plan(&md, "h").ending, Ending::Fail(_)));
    }
}
