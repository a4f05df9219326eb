//! What a scenario step asserts about the client's `LoadBalancerStatsService` answers, and
//! the code that asks and compares.
//!
//! Counts are written as small expressions ([`Expect`]): `"0"`, `">=1"`, `"<=5"`,
//! `"25±3"` (or `"25+-3"`), `"10..20"`, and shares of the total `"20%±5%"`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use tonic::transport::Channel;
use xds_proto::grpc_testing::load_balancer_stats_service_client::LoadBalancerStatsServiceClient;
use xds_proto::grpc_testing::{
    LoadBalancerAccumulatedStatsRequest, LoadBalancerAccumulatedStatsResponse,
    LoadBalancerStatsRequest, LoadBalancerStatsResponse,
};

/// An expected count: an inclusive range, either absolute or a share of a total.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    /// `min..=max` RPCs.
    Count(i64, i64),
    /// `min%..=max%` of the total.
    Share(f64, f64),
}

impl Expect {
    /// Parses an expectation (see the module doc).
    pub fn parse(text: &str) -> anyhow::Result<Expect> {
        let t = text.trim().replace("+-", "±");
        let num = |s: &str| -> anyhow::Result<f64> {
            s.trim()
                .trim_end_matches('%')
                .parse::<f64>()
                .map_err(|_| anyhow!("bad number {s:?} in expectation {text:?}"))
        };
        let (lo, hi, share) = if let Some(rest) = t.strip_prefix(">=") {
            (num(rest)?, f64::INFINITY, rest.trim().ends_with('%'))
        } else if let Some(rest) = t.strip_prefix("<=") {
            (0.0, num(rest)?, rest.trim().ends_with('%'))
        } else if let Some((a, b)) = t.split_once('±') {
            let (c, d) = (num(a)?, num(b)?);
            (c - d, c + d, a.trim().ends_with('%'))
        } else if let Some((a, b)) = t.split_once("..") {
            (num(a)?, num(b)?, a.trim().ends_with('%'))
        } else {
            let v = num(&t)?;
            (v, v, t.ends_with('%'))
        };
        Ok(if share {
            Expect::Share(lo, hi)
        } else {
            let hi = if hi.is_infinite() {
                i64::MAX
            } else {
                hi as i64
            };
            Expect::Count(lo as i64, hi)
        })
    }

    /// Whether `value` (out of `total`) satisfies it.
    pub fn holds(&self, value: i64, total: i64) -> bool {
        match *self {
            Expect::Count(lo, hi) => lo <= value && value <= hi,
            Expect::Share(lo, hi) => {
                let pct = if total == 0 {
                    0.0
                } else {
                    100.0 * value as f64 / total as f64
                };
                lo <= pct && pct <= hi
            }
        }
    }
}

fn parse_map(m: &BTreeMap<String, String>) -> anyhow::Result<()> {
    for v in m.values() {
        Expect::parse(v)?;
    }
    Ok(())
}

/// A `GetClientStats` check: the peers of the next `rpcs` RPCs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsCheck {
    /// `num_rpcs` to ask for.
    pub rpcs: u32,
    /// Peer hostname → expected count over all methods. Peers not listed must get none
    /// (when `peers` or `methods` is given).
    #[serde(default)]
    pub peers: BTreeMap<String, String>,
    /// Method (`"UnaryCall"`, `"EmptyCall"`) → peer → expected count; peers not listed for
    /// a listed method must get none of it.
    #[serde(default)]
    pub methods: BTreeMap<String, BTreeMap<String, String>>,
    /// Expected `num_failures` (default `"0"`).
    #[serde(default)]
    pub failures: Option<String>,
    /// Retry until the check holds, for at most this many seconds (for convergence after a
    /// change); without it the first answer must hold.
    #[serde(default)]
    pub within_sec: Option<u64>,
    /// Remember the per-peer counts under this name.
    #[serde(default)]
    pub record: Option<String>,
    /// The per-peer counts must equal those recorded under this name, ± `tolerance`.
    #[serde(default)]
    pub same_as: Option<String>,
    /// Allowed difference per peer for `same_as` (default 1).
    #[serde(default)]
    pub tolerance: Option<i64>,
}

impl StatsCheck {
    /// Checks the expressions parse.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.rpcs == 0 {
            bail!("check.rpcs must be positive");
        }
        parse_map(&self.peers)?;
        for m in self.methods.values() {
            parse_map(m)?;
        }
        if let Some(f) = &self.failures {
            Expect::parse(f)?;
        }
        Ok(())
    }

    /// The `timeout_sec` to send: enough for `rpcs` at `qps` (summed over RPC types).
    fn timeout_sec(&self, qps: u32) -> i32 {
        (self.rpcs / qps.max(1)) as i32 * 2 + 5
    }

    /// Asks once and compares; `Ok(observed)` when it holds, `Err(observed + why)`.
    pub async fn run_once(
        &self,
        client: &mut LoadBalancerStatsServiceClient<Channel>,
        qps: u32,
        recorded: &BTreeMap<String, BTreeMap<String, i64>>,
    ) -> anyhow::Result<Result<(String, BTreeMap<String, i64>), String>> {
        let timeout = self.timeout_sec(qps);
        let resp = tokio::time::timeout(
            Duration::from_secs(timeout as u64 + 10),
            client.get_client_stats(LoadBalancerStatsRequest {
                num_rpcs: self.rpcs as i32,
                timeout_sec: timeout,
                ..Default::default()
            }),
        )
        .await
        .context("GetClientStats: no answer")?
        .context("GetClientStats")?
        .into_inner();
        Ok(self.compare(&resp, recorded))
    }

    fn compare(
        &self,
        resp: &LoadBalancerStatsResponse,
        recorded: &BTreeMap<String, BTreeMap<String, i64>>,
    ) -> Result<(String, BTreeMap<String, i64>), String> {
        let peers: BTreeMap<String, i64> = resp
            .rpcs_by_peer
            .iter()
            .map(|(k, v)| (k.clone(), i64::from(*v)))
            .collect();
        let mut observed = format_counts(&peers);
        let _ = write!(observed, " fail={}", resp.num_failures);
        for (method, by_peer) in &resp.rpcs_by_method {
            if self.methods.contains_key(method) {
                let m: BTreeMap<String, i64> = by_peer
                    .rpcs_by_peer
                    .iter()
                    .map(|(k, v)| (k.clone(), i64::from(*v)))
                    .collect();
                let _ = write!(observed, " {method}[{}]", format_counts(&m));
            }
        }
        let mut why = Vec::new();
        let total: i64 = peers.values().sum();
        if !self.peers.is_empty() || (self.methods.is_empty() && self.same_as.is_none()) {
            compare_counts("", &self.peers, &peers, total, &mut why);
        }
        for (method, want) in &self.methods {
            let got: BTreeMap<String, i64> = resp
                .rpcs_by_method
                .get(method)
                .map(|m| {
                    m.rpcs_by_peer
                        .iter()
                        .map(|(k, v)| (k.clone(), i64::from(*v)))
                        .collect()
                })
                .unwrap_or_default();
            let total: i64 = got.values().sum();
            compare_counts(&format!("{method} "), want, &got, total, &mut why);
        }
        let failures = self.failures.as_deref().unwrap_or("0");
        if let Ok(e) = Expect::parse(failures)
            && !e.holds(i64::from(resp.num_failures), i64::from(self.rpcs as i32))
        {
            why.push(format!(
                "num_failures {} (want {failures})",
                resp.num_failures
            ));
        }
        if let Some(name) = &self.same_as {
            let tol = self.tolerance.unwrap_or(1);
            match recorded.get(name) {
                None => why.push(format!("nothing recorded as {name:?}")),
                Some(before) => {
                    let keys: std::collections::BTreeSet<&String> =
                        before.keys().chain(peers.keys()).collect();
                    for k in keys {
                        let (a, b) = (
                            before.get(k).copied().unwrap_or(0),
                            peers.get(k).copied().unwrap_or(0),
                        );
                        if (a - b).abs() > tol {
                            why.push(format!("{k}: {b}, recorded {name} had {a} (±{tol})"));
                        }
                    }
                }
            }
        }
        if why.is_empty() {
            Ok((observed, peers))
        } else {
            Err(format!("{observed}: {}", why.join("; ")))
        }
    }
}

fn compare_counts(
    scope: &str,
    want: &BTreeMap<String, String>,
    got: &BTreeMap<String, i64>,
    total: i64,
    why: &mut Vec<String>,
) {
    for (peer, expr) in want {
        let n = got.get(peer).copied().unwrap_or(0);
        if let Ok(e) = Expect::parse(expr)
            && !e.holds(n, total)
        {
            why.push(format!("{scope}{peer}={n} (want {expr})"));
        }
    }
    for (peer, n) in got {
        if !want.contains_key(peer) && *n != 0 {
            why.push(format!("{scope}{peer}={n} (want 0: not listed)"));
        }
    }
}

fn format_counts(m: &BTreeMap<String, i64>) -> String {
    if m.is_empty() {
        return "no peers".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Expected per-method results over a window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodExpect {
    /// RPCs that ended OK.
    #[serde(default)]
    pub ok: Option<String>,
    /// RPCs that ended with any other status.
    #[serde(default)]
    pub failed: Option<String>,
    /// Status code (number, e.g. `"7"` for PERMISSION_DENIED) → count.
    #[serde(default)]
    pub codes: BTreeMap<String, String>,
}

/// A `GetClientAccumulatedStats` check: the change of `stats_per_method` over a window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccumulatedCheck {
    /// The window, in milliseconds.
    pub window_ms: u64,
    /// RpcType name (`"UNARY_CALL"`, `"EMPTY_CALL"`) → expectations.
    pub methods: BTreeMap<String, MethodExpect>,
    /// Retry (new windows) until it holds, for at most this many seconds.
    #[serde(default)]
    pub within_sec: Option<u64>,
    /// RpcType name → RPCs in flight at the end of the window: started − succeeded − failed
    /// (the `num_rpcs_*_by_method` totals, as gRPC's circuit-breaking test reads them).
    #[serde(default)]
    pub in_flight: BTreeMap<String, String>,
}

/// Per method: status code → count.
type Results = BTreeMap<String, BTreeMap<i32, i64>>;

/// One `GetClientAccumulatedStats` answer: results per method, and RPCs in flight per
/// method.
struct Snapshot {
    results: Results,
    in_flight: BTreeMap<String, i64>,
}

/// Started − succeeded − failed per method, from the (deprecated but still sent) totals.
#[allow(deprecated)]
fn in_flight(resp: &LoadBalancerAccumulatedStatsResponse) -> BTreeMap<String, i64> {
    resp.num_rpcs_started_by_method
        .iter()
        .map(|(m, started)| {
            let done = |map: &std::collections::HashMap<String, i32>| {
                i64::from(map.get(m).copied().unwrap_or(0))
            };
            let n = i64::from(*started)
                - done(&resp.num_rpcs_succeeded_by_method)
                - done(&resp.num_rpcs_failed_by_method);
            (m.clone(), n)
        })
        .collect()
}

impl AccumulatedCheck {
    /// Checks the expressions parse.
    pub fn validate(&self) -> anyhow::Result<()> {
        for m in self.methods.values() {
            for e in m.ok.iter().chain(m.failed.iter()).chain(m.codes.values()) {
                Expect::parse(e)?;
            }
            for code in m.codes.keys() {
                code.parse::<i32>()
                    .map_err(|_| anyhow!("status code {code:?} is not a number"))?;
            }
        }
        parse_map(&self.in_flight)?;
        if self.methods.is_empty() && self.in_flight.is_empty() {
            bail!("accumulated: nothing to check (no methods, no in_flight)");
        }
        Ok(())
    }

    async fn snapshot(
        client: &mut LoadBalancerStatsServiceClient<Channel>,
    ) -> anyhow::Result<Snapshot> {
        let resp: LoadBalancerAccumulatedStatsResponse = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_client_accumulated_stats(LoadBalancerAccumulatedStatsRequest {}),
        )
        .await
        .context("GetClientAccumulatedStats: no answer")?
        .context("GetClientAccumulatedStats")?
        .into_inner();
        let in_flight = in_flight(&resp);
        let results = resp
            .stats_per_method
            .into_iter()
            .map(|(m, s)| {
                (
                    m,
                    s.result
                        .into_iter()
                        .map(|(c, n)| (c, i64::from(n)))
                        .collect(),
                )
            })
            .collect();
        Ok(Snapshot { results, in_flight })
    }

    /// Measures one window and compares.
    pub async fn run_once(
        &self,
        client: &mut LoadBalancerStatsServiceClient<Channel>,
    ) -> anyhow::Result<Result<String, String>> {
        let before = Self::snapshot(client).await?;
        tokio::time::sleep(Duration::from_millis(self.window_ms)).await;
        let after = Self::snapshot(client).await?;
        Ok(self.compare(&before.results, &after))
    }

    /// Compares the window from `before` to `after`: `Ok(observed)` or `Err(observed + why)`.
    fn compare(&self, before: &Results, after_snapshot: &Snapshot) -> Result<String, String> {
        let after = &after_snapshot.results;
        let mut observed = Vec::new();
        let mut why = Vec::new();
        for (method, want) in &self.methods {
            let empty = BTreeMap::new();
            let a = after.get(method).unwrap_or(&empty);
            let b = before.get(method).unwrap_or(&empty);
            let delta: BTreeMap<i32, i64> = a
                .iter()
                .map(|(c, n)| (*c, n - b.get(c).copied().unwrap_or(0)))
                .filter(|(_, n)| *n != 0)
                .collect();
            let ok = delta.get(&0).copied().unwrap_or(0);
            let failed: i64 = delta.iter().filter(|(c, _)| **c != 0).map(|(_, n)| n).sum();
            let total = ok + failed;
            let codes = delta
                .iter()
                .map(|(c, n)| format!("{c}:{n}"))
                .collect::<Vec<_>>()
                .join(",");
            observed.push(format!(
                "{method} ok={ok} failed={failed} codes={{{codes}}}"
            ));
            let mut expect = |label: &str, expr: &Option<String>, n: i64| {
                if let Some(expr) = expr
                    && let Ok(e) = Expect::parse(expr)
                    && !e.holds(n, total)
                {
                    why.push(format!("{method} {label}={n} (want {expr})"));
                }
            };
            expect("ok", &want.ok, ok);
            expect("failed", &want.failed, failed);
            for (code, expr) in &want.codes {
                let c: i32 = code.parse().unwrap_or(-1);
                expect(
                    &format!("code {code}"),
                    &Some(expr.clone()),
                    delta.get(&c).copied().unwrap_or(0),
                );
            }
        }
        for (method, expr) in &self.in_flight {
            let n = after_snapshot.in_flight.get(method).copied().unwrap_or(0);
            observed.push(format!("{method} in_flight={n}"));
            if let Ok(e) = Expect::parse(expr)
                && !e.holds(n, n)
            {
                why.push(format!("{method} in_flight={n} (want {expr})"));
            }
        }
        let observed = observed.join("; ");
        if why.is_empty() {
            Ok(observed)
        } else {
            Err(format!("{observed}: {}", why.join("; ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_parse() {
        assert_eq!(Expect::parse("0").unwrap(), Expect::Count(0, 0));
        assert_eq!(Expect::parse(">=1").unwrap(), Expect::Count(1, i64::MAX));
        assert_eq!(Expect::parse("25±3").unwrap(), Expect::Count(22, 28));
        assert_eq!(Expect::parse("25+-3").unwrap(), Expect::Count(22, 28));
        assert_eq!(Expect::parse("10..20").unwrap(), Expect::Count(10, 20));
        assert_eq!(Expect::parse("20%±5%").unwrap(), Expect::Share(15.0, 25.0));
        assert!(Expect::Share(15.0, 25.0).holds(200, 1000));
        assert!(!Expect::Share(15.0, 25.0).holds(300, 1000));
        assert!(Expect::parse("lots").is_err());
    }

    #[test]
    #[allow(deprecated)]
    fn in_flight_is_started_minus_finished() {
        let check: AccumulatedCheck = serde_json::from_str(
            r#"{"window_ms": 100, "methods": {"UNARY_CALL": {"ok": "0", "codes": {"14": ">=5"}}},
                "in_flight": {"UNARY_CALL": "10"}}"#,
        )
        .unwrap();
        check.validate().unwrap();
        let resp = LoadBalancerAccumulatedStatsResponse {
            num_rpcs_started_by_method: [("UNARY_CALL".to_string(), 50)].into(),
            num_rpcs_failed_by_method: [("UNARY_CALL".to_string(), 38)].into(),
            num_rpcs_succeeded_by_method: [("UNARY_CALL".to_string(), 2)].into(),
            ..Default::default()
        };
        let before: Results = [("UNARY_CALL".to_string(), [(0, 2), (14, 30)].into())].into();
        let mut after = Snapshot {
            results: [("UNARY_CALL".to_string(), [(0, 2), (14, 38)].into())].into(),
            in_flight: in_flight(&resp),
        };
        let seen = check.compare(&before, &after).unwrap();
        assert!(seen.contains("in_flight=10"), "{seen}");
        after.in_flight.insert("UNARY_CALL".into(), 11);
        let why = check.compare(&before, &after).unwrap_err();
        assert!(why.contains("in_flight=11 (want 10)"), "{why}");
        let empty: AccumulatedCheck =
            serde_json::from_str(r#"{"window_ms": 100, "methods": {}}"#).unwrap();
        assert!(empty.validate().is_err());
    }
}
