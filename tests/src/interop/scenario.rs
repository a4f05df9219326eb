//! The scenario file format: `tests/interop/scenarios/<name>/scenario.json` plus the Envoy
//! JSON resource files its steps serve. Adding a scenario is adding such a directory.
//!
//! Resource files are `{"resources": [<Envoy resource JSON with "@type">, ...]}`, with
//! `${...}` placeholders the harness fills in ([`Placeholders`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

use super::check::{AccumulatedCheck, StatsCheck};
use super::csds::CsdsCheck;
use super::probe::TlsProbe;

/// The xDS target the clients use unless a scenario says otherwise (`xds:///{target}`).
pub const DEFAULT_TARGET: &str = "interop.test:8080";

/// One scenario, as read from its `scenario.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The directory name; filled in by [`load_all`].
    #[serde(skip)]
    pub name: String,
    /// The scenario's directory; filled in by [`load_all`].
    #[serde(skip)]
    pub dir: PathBuf,
    /// What it checks, in a sentence (shown in the report).
    pub description: String,
    /// Free-form remarks (why a flag is set, what was left out); not interpreted.
    #[serde(default)]
    pub notes: Option<String>,
    /// How many test servers to start; they answer with hostnames `backend-0`, `backend-1`, …
    pub servers: usize,
    /// The client's target host:port (`xds:///{target}`), default [`DEFAULT_TARGET`].
    #[serde(default)]
    pub target: Option<String>,
    /// The client's flags.
    #[serde(default)]
    pub client: ClientFlags,
    /// Give every peer a SPIFFE certificate from a fresh mesh-control dev CA (Istio's file
    /// layout) and a bootstrap `certificate_providers` instance reading it, and run the
    /// clients with `--secure_mode=true`; enables the `${CERT_PROVIDER}`, `${CLIENT_SPIFFE_ID}`
    /// and `${SERVER_SPIFFE_ID}` placeholders ([`Placeholders`]) and `tls_probe` steps.
    #[serde(default)]
    pub mtls: bool,
    /// Run a second control plane of the row's kind as the secondary xDS server (gRFC A71):
    /// the client's bootstrap lists the primary, then the secondary; the servers' name only
    /// the secondary, which stays up, so only the client's fallback is under test. Enables
    /// `serve_secondary`, `stop_control_plane` and `start_control_plane` steps; the peers
    /// start after the first `serve` or `serve_secondary`.
    #[serde(default)]
    pub fallback: bool,
    /// Bound on the whole cell in seconds (default 60).
    #[serde(default)]
    pub time_limit_sec: Option<u64>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Cells known to fail, each with the reason and the failure text it must still show.
    #[serde(default)]
    pub expected_fail: Vec<ExpectedFail>,
}

/// The xDS interop client's flags (gRPC's `--qps`, `--rpc`, …).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientFlags {
    /// `--qps` (per channel, per RPC type).
    pub qps: u32,
    /// `--num_channels`.
    pub num_channels: u32,
    /// `--rpc`, e.g. `"UnaryCall"` or `"EmptyCall,UnaryCall"`.
    pub rpc: String,
    /// `--metadata`, e.g. `"EmptyCall:xds_md:empty_ytpme,UnaryCall:xds_md:unary_yranu"`.
    pub metadata: String,
    /// `--rpc_timeout` (Go duration syntax, e.g. `"5s"`); unset leaves the default (20 s).
    pub rpc_timeout: Option<String>,
    /// `--fail_on_failed_rpc`.
    pub fail_on_failed_rpc: bool,
}

impl Default for ClientFlags {
    fn default() -> Self {
        ClientFlags {
            qps: 100,
            num_channels: 1,
            rpc: "UnaryCall".into(),
            metadata: String::new(),
            rpc_timeout: None,
            fail_on_failed_rpc: false,
        }
    }
}

/// One step of a scenario; exactly one field is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum Step {
    /// Serve exactly these resource files (paths relative to the scenario directory),
    /// replacing what was served before. The servers' default inbound Listeners are added
    /// unless a file defines a Listener of the same name.
    Serve(Vec<String>),
    /// Check the distribution of the next RPCs (`GetClientStats`).
    Check(StatsCheck),
    /// Check per-method results over a window (`GetClientAccumulatedStats` deltas).
    Accumulated(AccumulatedCheck),
    /// Stop these servers (by index).
    StopServers(Vec<usize>),
    /// Start these (stopped) servers again, on the same ports.
    StartServers(Vec<usize>),
    /// Wait this many milliseconds.
    SleepMs(u64),
    /// Dial a server's test port from the harness: plaintext and TLS without a client
    /// certificate must be refused, mTLS accepted with the server's SPIFFE ID (needs
    /// `mtls`).
    TlsProbe(TlsProbe),
    /// Ask the client's CSDS service (on its stats port) for its resources: every one
    /// ACKED, the listed types holding exactly the listed names.
    Csds(CsdsCheck),
    /// As `serve`, on the secondary control plane (needs `fallback`).
    ServeSecondary(Vec<String>),
    /// Stop a control plane (needs `fallback`); a `serve` to it meanwhile is kept for its
    /// restart.
    StopControlPlane(CpRole),
    /// Start a stopped control plane again on the same port, serving what it was last
    /// given (needs `fallback`).
    StartControlPlane(CpRole),
}

/// Which control plane of a `fallback` scenario a step is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CpRole {
    /// The first `xds_servers` entry.
    Primary,
    /// The second.
    Secondary,
}

/// The trust domain of the certificates of an `mtls` scenario.
pub const TRUST_DOMAIN: &str = "cluster.local";
/// The service account (SPIFFE ID `spiffe://cluster.local/ns/default/sa/<sa>`) of the client
/// in an `mtls` scenario.
pub const CLIENT_SA: &str = "interop-client";
/// The service account every server of an `mtls` scenario shares (each has its own key).
pub const SERVER_SA: &str = "interop-server";

/// `spiffe://cluster.local/ns/default/sa/{sa}`.
pub fn spiffe_id(sa: &str) -> String {
    format!("spiffe://{TRUST_DOMAIN}/ns/default/sa/{sa}")
}

/// A cell that is expected to fail, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFail {
    /// `client/server/control-plane`, each part an implementation name or `*`, e.g.
    /// `"grpc-go/*/mesh-control"`.
    pub row: String,
    /// Why it fails (a missing feature, a known bug with its issue).
    pub reason: String,
    /// Text the failure message must contain, so it keeps failing *that* way.
    pub failure_contains: String,
}

impl ExpectedFail {
    /// Whether this entry applies to the row labelled `client/server/cp`.
    pub fn matches(&self, row_label: &str) -> bool {
        let want: Vec<&str> = self.row.split('/').collect();
        let have: Vec<&str> = row_label.split('/').collect();
        want.len() == have.len() && want.iter().zip(&have).all(|(w, h)| *w == "*" || w == h)
    }
}

impl Scenario {
    /// The client's target host:port.
    pub fn target(&self) -> &str {
        self.target.as_deref().unwrap_or(DEFAULT_TARGET)
    }

    /// The cell's time bound.
    pub fn time_limit(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.time_limit_sec.unwrap_or(60))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.servers == 0 {
            bail!("servers must be at least 1");
        }
        let mut served = false;
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::ServeSecondary(_)
                | Step::StopControlPlane(_)
                | Step::StartControlPlane(_)
                    if !self.fallback =>
                {
                    bail!("steps[{i}]: needs \"fallback\": true");
                }
                Step::StopControlPlane(_) | Step::StartControlPlane(_) => {}
                Step::Serve(files) | Step::ServeSecondary(files) => {
                    served = true;
                    for f in files {
                        let path = self.dir.join(f);
                        if !path.is_file() {
                            bail!("steps[{i}]: resource file {} not found", path.display());
                        }
                    }
                }
                Step::StopServers(ids) | Step::StartServers(ids) => {
                    if let Some(bad) = ids.iter().find(|&&id| id >= self.servers) {
                        bail!("steps[{i}]: server {bad} out of range");
                    }
                }
                Step::Check(c) => c.validate().with_context(|| format!("steps[{i}]"))?,
                Step::Accumulated(c) => c.validate().with_context(|| format!("steps[{i}]"))?,
                Step::Csds(c) => c.validate().with_context(|| format!("steps[{i}]"))?,
                Step::SleepMs(_) => {}
                Step::TlsProbe(p) => {
                    if !self.mtls {
                        bail!("steps[{i}]: tls_probe needs \"mtls\": true");
                    }
                    if p.server >= self.servers {
                        bail!("steps[{i}]: server {} out of range", p.server);
                    }
                }
            }
            if i == 0 && !served && !self.fallback {
                bail!("the first step must be `serve`");
            }
        }
        Ok(())
    }
}

/// The scenarios directory, `tests/interop/scenarios`.
pub fn scenarios_dir() -> PathBuf {
    super::gobuild::tests_dir().join("interop/scenarios")
}

/// Loads every scenario (directories with a `scenario.json`, not starting with `_`), in
/// name order.
pub fn load_all(dir: &Path) -> anyhow::Result<Vec<Scenario>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !path.is_dir() || name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        out.push(load(&path).with_context(|| format!("scenario {name}"))?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Loads one scenario directory.
pub fn load(dir: &Path) -> anyhow::Result<Scenario> {
    let file = dir.join("scenario.json");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let mut scenario: Scenario =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    scenario.name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("bad scenario dir {}", dir.display()))?
        .to_string();
    scenario.dir = dir.to_path_buf();
    scenario.validate()?;
    Ok(scenario)
}

/// The values of the `${...}` placeholders in resource files.
///
/// | placeholder | value |
/// | --- | --- |
/// | `${TARGET}` | the client's target host:port |
/// | `${SERVER_HOST_i}` | the address clients dial for server `i` (`127.0.0.1`) |
/// | `${SERVER_PORT_i}` | server `i`'s test-service port |
/// | `${BACKEND_i}` | `127.0.0.1:{port}` of server `i` |
/// | `${SERVER_LISTEN_HOST_i}` | the host server `i` binds (`0.0.0.0` for grpc-go) |
/// | `${SERVER_LISTENER_i}` | server `i`'s inbound Listener name |
/// | `${CERT_PROVIDER}` | `mtls` only: the bootstrap's certificate provider instance name |
/// | `${CLIENT_SPIFFE_ID}` | `mtls` only: the client's SPIFFE ID ([`CLIENT_SA`]) |
/// | `${SERVER_SPIFFE_ID}` | `mtls` only: the servers' SPIFFE ID ([`SERVER_SA`]) |
#[derive(Debug, Clone, Default)]
pub struct Placeholders {
    values: BTreeMap<String, String>,
}

impl Placeholders {
    /// Sets `${key}`.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.values.insert(key.into(), value.into());
    }

    /// Replaces every `${KEY}` in `text`; an unknown placeholder is an error.
    pub fn apply(&self, text: &str) -> anyhow::Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| anyhow!("unterminated placeholder near {:?}", &rest[start..]))?;
            let key = &after[..end];
            let value = self
                .values
                .get(key)
                .ok_or_else(|| anyhow!("unknown placeholder ${{{key}}}"))?;
            out.push_str(value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_substitute_and_reject_unknown() {
        let mut p = Placeholders::default();
        p.set("SERVER_PORT_0", "1234");
        assert_eq!(
            p.apply(r#"{"port_value": ${SERVER_PORT_0}}"#).unwrap(),
            r#"{"port_value": 1234}"#
        );
        assert!(p.apply("${NOPE}").is_err());
    }

    #[test]
    fn every_scenario_loads_and_tls_probe_needs_mtls() {
        let all = load_all(&scenarios_dir()).unwrap();
        let security = all.iter().find(|s| s.name == "security").unwrap();
        assert!(security.mtls);
        let mut no_mtls = security.clone();
        no_mtls.mtls = false;
        let err = no_mtls.validate().unwrap_err().to_string();
        assert!(err.contains("tls_probe needs"), "{err}");
        assert_eq!(
            spiffe_id(CLIENT_SA),
            "spiffe://cluster.local/ns/default/sa/interop-client"
        );
    }

    #[test]
    fn expected_fail_rows_match_with_wildcards() {
        let e = ExpectedFail {
            row: "grpc-go/*/mesh-control".into(),
            reason: String::new(),
            failure_contains: String::new(),
        };
        assert!(e.matches("grpc-go/ours/mesh-control"));
        assert!(!e.matches("ours/ours/mesh-control"));
    }
}
