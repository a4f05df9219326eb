//! The `csds` step: asks the client's CSDS service (gRFC A40,
//! `envoy.service.status.v3.ClientStatusDiscoveryService` on its stats port, as grpc-go's
//! interop client serves it with its admin server) through our Go CSDS client
//! (`tests/interop/csds-go`, grpcdebug's `ADDR xds config`), and checks that every resource
//! is ACKED and that the listed types hold exactly the listed names (gRPC's `test_csds`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use super::gobuild;
use super::scenario::Placeholders;

/// Bound on one run of the Go CSDS client.
const RUN_TIMEOUT: Duration = Duration::from_secs(15);

/// A `csds` step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsdsCheck {
    /// Resource type (the type URL's last segment: `Listener`, `RouteConfiguration`,
    /// `Cluster`, `ClusterLoadAssignment`) → the names the client must report, each ACKED;
    /// a listed type must hold no other names. Names may use `${TARGET}`.
    pub acked: BTreeMap<String, Vec<String>>,
    /// Ask again until it holds, for at most this many seconds.
    #[serde(default)]
    pub within_sec: Option<u64>,
}

/// One resource as CSDS reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    /// The type URL's last segment.
    pub kind: String,
    /// The resource name.
    pub name: String,
    /// `ClientResourceStatus` name, e.g. `ACKED`.
    pub status: String,
}

impl CsdsCheck {
    /// Checks the step is well formed.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.acked.is_empty() {
            bail!("csds.acked lists no resource type");
        }
        Ok(())
    }

    /// Runs the Go CSDS client against `addr` once and compares: `Ok(observed)` when it
    /// holds, `Err(observed + why)` when not; an outer error when the client cannot run.
    pub async fn run_once(
        &self,
        addr: SocketAddr,
        ph: &Placeholders,
    ) -> anyhow::Result<Result<String, String>> {
        let bin = gobuild::csds_go()?;
        let child = tokio::process::Command::new(&bin)
            .arg(addr.to_string())
            .args(["xds", "config"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", bin.display()))?;
        let out = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("csds-go did not finish within {RUN_TIMEOUT:?}"))??;
        if !out.status.success() {
            return Ok(Err(format!(
                "csds-go {addr} xds config failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let seen = match parse_config(&String::from_utf8_lossy(&out.stdout)) {
            Ok(seen) => seen,
            Err(e) => return Ok(Err(format!("{e:#}"))),
        };
        self.compare(&seen, ph)
    }

    /// Compares what CSDS reported with the expectation.
    pub fn compare(
        &self,
        seen: &[Seen],
        ph: &Placeholders,
    ) -> anyhow::Result<Result<String, String>> {
        let observed = seen
            .iter()
            .map(|s| format!("{} {} {}", s.kind, s.name, s.status))
            .collect::<Vec<_>>()
            .join(", ");
        let observed = if observed.is_empty() {
            "no resources".to_string()
        } else {
            observed
        };
        let mut why = Vec::new();
        for s in seen.iter().filter(|s| s.status != "ACKED") {
            why.push(format!(
                "{} {} is {} (want ACKED)",
                s.kind, s.name, s.status
            ));
        }
        for (kind, names) in &self.acked {
            let want: BTreeSet<String> = names
                .iter()
                .map(|n| ph.apply(n))
                .collect::<anyhow::Result<_>>()?;
            let have: BTreeSet<String> = seen
                .iter()
                .filter(|s| &s.kind == kind)
                .map(|s| s.name.clone())
                .collect();
            for missing in want.difference(&have) {
                why.push(format!("{kind} {missing} not reported"));
            }
            for extra in have.difference(&want) {
                why.push(format!("{kind} {extra} reported but not expected"));
            }
        }
        Ok(if why.is_empty() {
            Ok(observed)
        } else {
            Err(format!("{observed}: {}", why.join("; ")))
        })
    }
}

/// Reads `csds-go … xds config` output (a `ClientStatusResponse` in proto-JSON): every
/// `genericXdsConfigs` entry of every client config. Resources reported only in the legacy
/// per-type fields are not read (grpc-go and ours both fill `genericXdsConfigs`).
pub fn parse_config(json: &str) -> anyhow::Result<Vec<Seen>> {
    let v: serde_json::Value = serde_json::from_str(json).context("csds-go output is not JSON")?;
    let configs = v
        .get("config")
        .and_then(|c| c.as_array())
        .ok_or_else(|| anyhow!("CSDS answer has no config"))?;
    let mut out = Vec::new();
    for cfg in configs {
        let generic = cfg
            .get("genericXdsConfigs")
            .and_then(|g| g.as_array())
            .map(Vec::as_slice)
            .unwrap_or_default();
        for g in generic {
            let field = |k: &str| g.get(k).and_then(|x| x.as_str()).unwrap_or_default();
            let type_url = field("typeUrl");
            out.push(Seen {
                kind: type_url.rsplit('.').next().unwrap_or(type_url).to_string(),
                name: field("name").to_string(),
                // proto-JSON leaves out the zero value, UNKNOWN.
                status: match field("clientStatus") {
                    "" => "UNKNOWN".to_string(),
                    s => s.to_string(),
                },
            });
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = r#"{"config": [{"node": {"id": "interop-client"},
      "genericXdsConfigs": [
        {"typeUrl": "type.googleapis.com/envoy.config.listener.v3.Listener",
         "name": "interop.test:8080", "versionInfo": "1", "clientStatus": "ACKED"},
        {"typeUrl": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
         "name": "interop-route", "clientStatus": "ACKED"},
        {"typeUrl": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
         "name": "cluster-a", "clientStatus": "NACKED"},
        {"typeUrl": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
         "name": "cluster-a"}
      ]}]}"#;

    #[test]
    fn csds_answers_parse_and_compare() {
        let seen = parse_config(ANSWER).unwrap();
        assert_eq!(seen.len(), 4);
        let eds = seen
            .iter()
            .find(|s| s.kind == "ClusterLoadAssignment")
            .unwrap();
        assert_eq!(eds.status, "UNKNOWN");
        let mut ph = Placeholders::default();
        ph.set("TARGET", "interop.test:8080");
        let check: CsdsCheck = serde_json::from_str(
            r#"{"acked": {"Listener": ["${TARGET}"], "RouteConfiguration": ["interop-route"],
                          "Cluster": ["cluster-a", "cluster-b"]}}"#,
        )
        .unwrap();
        check.validate().unwrap();
        let why = check.compare(&seen, &ph).unwrap().unwrap_err();
        assert!(why.contains("Cluster cluster-a is NACKED"), "{why}");
        assert!(
            why.contains("ClusterLoadAssignment cluster-a is UNKNOWN"),
            "{why}"
        );
        assert!(why.contains("Cluster cluster-b not reported"), "{why}");
        assert!(!why.contains("Listener interop.test:8080 not"), "{why}");
        assert!(!why.contains("Listener interop.test:8080 is"), "{why}");
        let good: Vec<Seen> = seen
            .into_iter()
            .map(|s| Seen {
                status: "ACKED".into(),
                ..s
            })
            .collect();
        let only_listener: CsdsCheck =
            serde_json::from_str(r#"{"acked": {"Listener": ["${TARGET}"]}}"#).unwrap();
        assert!(only_listener.compare(&good, &ph).unwrap().is_ok());
        assert!(parse_config("{}").is_err());
        assert!(
            serde_json::from_str::<CsdsCheck>(r#"{"acked": {}}"#)
                .unwrap()
                .validate()
                .is_err()
        );
    }
}
