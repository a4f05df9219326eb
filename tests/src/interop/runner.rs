//! Runs the matrix: every scenario (in sequence) for every row, each cell bounded in time
//! with its processes killed on drop, then writes `target/interop/report.md`.
//!
//! Environment: `MESH_INTEROP_SCENARIOS=a,b` and `MESH_INTEROP_ROWS=grpc-go/*/*` select
//! cells; `MESH_INTEROP_ALLOW_MISSING=1` lets cells whose binary is missing not fail the
//! suite (they are still reported as MISSING); `MESH_INTEROP_VERBOSE=1` echoes every peer's
//! output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tonic::transport::Channel;
use xds_proto::grpc_testing::load_balancer_stats_service_client::LoadBalancerStatsServiceClient;

use super::control::ControlPlane;
use super::gobuild;
use super::peer::{self, Cp, Impl, Process, Row};
use super::scenario::{self, CpRole, Placeholders, Scenario, Step};

/// Bound on a client's stats port coming up.
const CLIENT_START: Duration = Duration::from_secs(20);

/// How one cell ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every step held.
    Pass,
    /// A step failed (or the cell timed out).
    Fail(String),
    /// Marked expected-fail and it still fails that way.
    ExpectedFail {
        /// The reason from the scenario file.
        reason: String,
        /// The failure observed.
        failure: String,
    },
    /// Marked expected-fail but passed, or failed some other way.
    ExpectedFailMismatch(String),
    /// A peer binary is missing.
    Missing(String),
}

impl Outcome {
    /// Whether this cell makes the suite fail.
    pub fn fails_suite(&self, allow_missing: bool) -> bool {
        match self {
            Outcome::Pass | Outcome::ExpectedFail { .. } => false,
            Outcome::Missing(_) => !allow_missing,
            Outcome::Fail(_) | Outcome::ExpectedFailMismatch(_) => true,
        }
    }
}

/// One cell's result.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The scenario.
    pub scenario: String,
    /// The row label.
    pub row: String,
    /// How it ended.
    pub outcome: Outcome,
    /// What each step observed, in order.
    pub observed: Vec<String>,
    /// The peers' output tails when it failed.
    pub logs: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Scenario names, in order.
    pub scenarios: Vec<(String, String)>,
    /// Row labels, in order.
    pub rows: Vec<String>,
    /// Every cell run.
    pub cells: Vec<Cell>,
    /// The markdown report.
    pub report: String,
    /// Where it was written.
    pub report_path: PathBuf,
    /// Whether missing binaries are tolerated.
    pub allow_missing: bool,
}

impl Suite {
    /// The cells that make the suite fail.
    pub fn failures(&self) -> Vec<&Cell> {
        self.cells
            .iter()
            .filter(|c| c.outcome.fails_suite(self.allow_missing))
            .collect()
    }
}

fn selected(filter: &Option<String>, label: &str, matches: impl Fn(&str, &str) -> bool) -> bool {
    match filter {
        None => true,
        Some(f) => f.split(',').any(|pat| matches(pat.trim(), label)),
    }
}

fn row_matches(pat: &str, label: &str) -> bool {
    scenario::ExpectedFail {
        row: pat.to_string(),
        reason: String::new(),
        failure_contains: String::new(),
    }
    .matches(label)
}

/// Runs every selected scenario × row, writes the report and returns everything.
pub async fn run_suite() -> anyhow::Result<Suite> {
    let scenario_filter = std::env::var("MESH_INTEROP_SCENARIOS").ok();
    let row_filter = std::env::var("MESH_INTEROP_ROWS").ok();
    let allow_missing = std::env::var("MESH_INTEROP_ALLOW_MISSING").is_ok_and(|v| v == "1");
    let scenarios: Vec<Scenario> = scenario::load_all(&scenario::scenarios_dir())?
        .into_iter()
        .filter(|s| selected(&scenario_filter, &s.name, |p, l| p == l))
        .collect();
    let rows: Vec<Row> = Row::matrix()
        .into_iter()
        .filter(|r| selected(&row_filter, &r.label(), row_matches))
        .collect();
    if scenarios.is_empty() || rows.is_empty() {
        bail!("no scenario or no row selected");
    }
    let logs_dir = gobuild::interop_dir().join("logs");
    std::fs::create_dir_all(&logs_dir)?;
    let mut cells = Vec::new();
    for s in &scenarios {
        for row in rows.iter().filter(|r| r.runs(&s.name)) {
            let started = Instant::now();
            eprintln!("interop: {} × {} …", s.name, row.label());
            let mut cell = run_cell(s, *row).await;
            cell.elapsed = started.elapsed();
            eprintln!(
                "interop: {} × {}: {} in {:.1?}",
                s.name,
                row.label(),
                short(&cell.outcome),
                cell.elapsed
            );
            if !cell.logs.is_empty() {
                let file =
                    logs_dir.join(format!("{}__{}.log", s.name, row.label().replace('/', "_")));
                let _ = std::fs::write(&file, &cell.logs);
            }
            cells.push(cell);
        }
    }
    let mut suite = Suite {
        // Scenarios no selected row runs (rows limited to some scenarios) are left out.
        scenarios: scenarios
            .iter()
            .filter(|s| rows.iter().any(|r| r.runs(&s.name)))
            .map(|s| (s.name.clone(), s.description.clone()))
            .collect(),
        rows: rows.iter().map(Row::label).collect(),
        cells,
        report: String::new(),
        report_path: gobuild::interop_dir().join("report.md"),
        allow_missing,
    };
    suite.report = render_report(&suite);
    std::fs::write(&suite.report_path, &suite.report)
        .with_context(|| format!("writing {}", suite.report_path.display()))?;
    Ok(suite)
}

fn short(o: &Outcome) -> &'static str {
    match o {
        Outcome::Pass => "PASS",
        Outcome::Fail(_) => "FAIL",
        Outcome::ExpectedFail { .. } => "XFAIL",
        Outcome::ExpectedFailMismatch(_) => "XFAIL-MISMATCH",
        Outcome::Missing(_) => "MISSING",
    }
}

/// Runs one cell and applies the scenario's expected-fail marks.
pub async fn run_cell(s: &Scenario, row: Row) -> Cell {
    let label = row.label();
    let mut cell = Cell {
        scenario: s.name.clone(),
        row: label.clone(),
        outcome: Outcome::Pass,
        observed: Vec::new(),
        logs: String::new(),
        elapsed: Duration::ZERO,
    };
    for which in [row.client.client_binary(), row.server.server_binary()] {
        if let Err(e) = which {
            cell.outcome = Outcome::Missing(e);
            return cell;
        }
    }
    let mut run = CellRun {
        scenario: s,
        row,
        cp: None,
        secondary: None,
        servers: Vec::new(),
        client: None,
        observed: Vec::new(),
        dir: None,
        certs: None,
    };
    let result = match tokio::time::timeout(s.time_limit(), run.go()).await {
        Ok(r) => r,
        Err(_) => Err(anyhow!("cell did not finish within {:?}", s.time_limit())),
    };
    cell.observed = std::mem::take(&mut run.observed);
    let failure = result.err().map(|e| format!("{e:#}"));
    if failure.is_some() {
        cell.logs = run.logs();
    }
    let expected = s.expected_fail.iter().find(|e| e.matches(&label));
    cell.outcome = match (expected, failure) {
        (None, None) => Outcome::Pass,
        (None, Some(f)) => Outcome::Fail(f),
        (Some(e), Some(f)) if f.contains(&e.failure_contains) => Outcome::ExpectedFail {
            reason: e.reason.clone(),
            failure: f,
        },
        (Some(e), Some(f)) => Outcome::ExpectedFailMismatch(format!(
            "expected to fail with {:?} ({}), failed otherwise: {f}",
            e.failure_contains, e.reason
        )),
        (Some(e), None) => Outcome::ExpectedFailMismatch(format!(
            "marked expected-fail ({}) but passed: remove the mark",
            e.reason
        )),
    };
    cell
}

/// The longest an expected-fail cell's check waits for convergence (the scenarios give
/// 20–30 s; a client that lacks the feature does not converge in any time).
const XFAIL_CHECK_WITHIN: Duration = Duration::from_secs(10);

/// The live state of one cell; dropping it kills everything.
struct CellRun<'a> {
    scenario: &'a Scenario,
    row: Row,
    cp: Option<CpSlot>,
    /// The secondary xDS server of a `fallback` scenario.
    secondary: Option<CpSlot>,
    servers: Vec<ServerSlot>,
    client: Option<Process>,
    observed: Vec<String>,
    dir: Option<tempfile::TempDir>,
    certs: Option<CellCerts>,
}

/// The Istio-layout certificate directories of an `mtls` cell.
struct CellCerts {
    client: PathBuf,
    servers: Vec<PathBuf>,
}

/// Issues the client's and each server's SVID from a fresh dev CA into `dir/certs/`.
fn issue_certs(dir: &Path, servers: usize) -> anyhow::Result<CellCerts> {
    let ca = mesh_control::ca::DevCa::generate(scenario::TRUST_DOMAIN)?;
    let validity = Duration::from_secs(24 * 3600);
    let issue = |sa: &str, sub: &str| -> anyhow::Result<PathBuf> {
        let out = dir.join("certs").join(sub);
        std::fs::create_dir_all(&out)?;
        ca.issue_svid("default", sa, validity)?
            .write_istio_layout(&out)?;
        Ok(out)
    };
    Ok(CellCerts {
        client: issue(scenario::CLIENT_SA, "client")?,
        servers: (0..servers)
            .map(|i| issue(scenario::SERVER_SA, &format!("server-{i}")))
            .collect::<anyhow::Result<_>>()?,
    })
}

/// A control plane of the cell, which a `fallback` scenario may stop and start again on
/// the same port.
struct CpSlot {
    kind: Cp,
    addr: std::net::SocketAddr,
    running: Option<ControlPlane>,
    /// The last file served, served again on a restart.
    last: Option<PathBuf>,
}

impl CpSlot {
    async fn start(kind: Cp) -> anyhow::Result<CpSlot> {
        let cp = ControlPlane::start(kind).await?;
        Ok(CpSlot {
            kind,
            addr: cp.addr(),
            running: Some(cp),
            last: None,
        })
    }

    async fn serve(&mut self, file: &Path) -> anyhow::Result<String> {
        self.last = Some(file.to_path_buf());
        match &mut self.running {
            Some(cp) => cp.serve(file).await,
            None => Ok("kept for its restart (stopped)".into()),
        }
    }

    async fn stop(&mut self) {
        if let Some(cp) = self.running.take() {
            cp.stop().await;
        }
    }

    async fn restart(&mut self) -> anyhow::Result<String> {
        if self.running.is_some() {
            return Ok("already running".into());
        }
        let mut cp = ControlPlane::start_at(self.kind, self.addr).await?;
        let v = match &self.last {
            Some(f) => cp.serve(f).await?,
            None => "serving nothing yet".into(),
        };
        self.running = Some(cp);
        Ok(v)
    }
}

struct ServerSlot {
    hostname: String,
    port: u16,
    maintenance_port: u16,
    process: Option<Process>,
}

impl CellRun<'_> {
    async fn go(&mut self) -> anyhow::Result<()> {
        let s = self.scenario;
        let dir = tempfile::tempdir().context("temp dir")?;
        let dir_path = dir.path().to_path_buf();
        self.dir = Some(dir);
        let primary = CpSlot::start(self.row.cp).await?;
        let mut client_ads = vec![primary.addr];
        // The servers are not under test in a fallback scenario: they use the secondary,
        // which stays up.
        let mut ads = primary.addr;
        self.cp = Some(primary);
        if s.fallback {
            let secondary = CpSlot::start(self.row.cp)
                .await
                .context("starting the secondary control plane")?;
            client_ads.push(secondary.addr);
            ads = secondary.addr;
            self.secondary = Some(secondary);
        }

        // A cell marked expected-fail only has to show that it still fails: its checks get
        // at most XFAIL_CHECK_WITHIN instead of waiting out the scenario's convergence time.
        let label = self.row.label();
        let expect_fail = s.expected_fail.iter().any(|e| e.matches(&label));
        let within = |sec: Option<u64>| {
            let d = Duration::from_secs(sec.unwrap_or(0));
            if expect_fail {
                d.min(XFAIL_CHECK_WITHIN)
            } else {
                d
            }
        };

        let mut ph = Placeholders::default();
        ph.set("TARGET", s.target());
        if s.mtls {
            self.certs = Some(issue_certs(&dir_path, s.servers).context("issuing certificates")?);
            ph.set("CERT_PROVIDER", mesh_control::tls::CERT_PROVIDER_INSTANCE);
            ph.set("CLIENT_SPIFFE_ID", scenario::spiffe_id(scenario::CLIENT_SA));
            ph.set("SERVER_SPIFFE_ID", scenario::spiffe_id(scenario::SERVER_SA));
        }
        for i in 0..s.servers {
            let slot = ServerSlot {
                hostname: format!("backend-{i}"),
                port: peer::free_port()?,
                maintenance_port: peer::free_port()?,
                process: None,
            };
            let host = self.row.server.server_listen_host();
            ph.set(format!("SERVER_HOST_{i}"), "127.0.0.1");
            ph.set(format!("SERVER_PORT_{i}"), slot.port.to_string());
            ph.set(format!("BACKEND_{i}"), format!("127.0.0.1:{}", slot.port));
            ph.set(format!("SERVER_LISTEN_HOST_{i}"), host);
            ph.set(
                format!("SERVER_LISTENER_{i}"),
                inbound_name(host, slot.port),
            );
            self.servers.push(slot);
        }
        let stats_port = peer::free_port()?;
        let mut stats: Option<LoadBalancerStatsServiceClient<Channel>> = None;
        let mut recorded = BTreeMap::new();

        for (i, step) in s.steps.iter().enumerate() {
            let step_label = format!("step {} ({})", i + 1, step_name(step));
            let result: anyhow::Result<()> = async {
                match step {
                    Step::Serve(files) | Step::ServeSecondary(files) => {
                        let rendered =
                            render(s, files, &ph, &self.servers, self.row.server, &dir_path, i)?;
                        let cp = match step {
                            Step::ServeSecondary(_) => self.secondary.as_mut(),
                            _ => self.cp.as_mut(),
                        }
                        .ok_or_else(|| anyhow!("no control plane"))?;
                        let v = cp.serve(&rendered).await?;
                        self.observed
                            .push(format!("{step_label}: {} → {v}", files.join(" + ")));
                        if stats.is_none() {
                            for idx in 0..self.servers.len() {
                                self.start_server(idx, ads)?;
                            }
                            // Like the interop framework's backend health checks: traffic
                            // starts once every backend reports SERVING (bounded).
                            for server in &self.servers {
                                wait_healthy(server.maintenance_port, Duration::from_secs(20))
                                    .await;
                            }
                            self.start_client(&client_ads, stats_port)?;
                            stats = Some(self.connect_stats(stats_port).await?);
                        }
                    }
                    Step::Check(check) => {
                        let client = stats.as_mut().ok_or_else(|| anyhow!("no client yet"))?;
                        let qps = s.client.qps * s.client.rpc.split(',').count() as u32;
                        let deadline = Instant::now() + within(check.within_sec);
                        let mut tries = 0;
                        loop {
                            tries += 1;
                            match check.run_once(client, qps, &recorded).await? {
                                Ok((obs, peers)) => {
                                    self.observed.push(format!("{step_label}: {obs}"));
                                    if let Some(name) = &check.record {
                                        recorded.insert(name.clone(), peers);
                                    }
                                    break;
                                }
                                Err(why) if Instant::now() < deadline => {
                                    tracing::debug!(tries, "{step_label}: not yet: {why}");
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                                Err(why) => {
                                    self.observed.push(format!("{step_label}: {why}"));
                                    bail!("failed after {tries} tries: {why}");
                                }
                            }
                        }
                    }
                    Step::Accumulated(check) => {
                        let client = stats.as_mut().ok_or_else(|| anyhow!("no client yet"))?;
                        let deadline = Instant::now() + within(check.within_sec);
                        loop {
                            match check.run_once(client).await? {
                                Ok(obs) => {
                                    self.observed.push(format!("{step_label}: {obs}"));
                                    break;
                                }
                                Err(_) if Instant::now() < deadline => {}
                                Err(why) => {
                                    self.observed.push(format!("{step_label}: {why}"));
                                    bail!("failed: {why}");
                                }
                            }
                        }
                    }
                    Step::StopServers(ids) => {
                        for &idx in ids {
                            if let Some(mut p) = self.servers[idx].process.take() {
                                p.stop().await;
                            }
                        }
                        self.observed.push(format!("{step_label}: stopped {ids:?}"));
                    }
                    Step::StartServers(ids) => {
                        for &idx in ids {
                            self.start_server(idx, ads)?;
                        }
                        self.observed.push(format!("{step_label}: started {ids:?}"));
                    }
                    Step::SleepMs(ms) => tokio::time::sleep(Duration::from_millis(*ms)).await,
                    Step::StopControlPlane(role) | Step::StartControlPlane(role) => {
                        let cp = match role {
                            CpRole::Primary => self.cp.as_mut(),
                            CpRole::Secondary => self.secondary.as_mut(),
                        }
                        .ok_or_else(|| anyhow!("no {role:?} control plane"))?;
                        if matches!(step, Step::StopControlPlane(_)) {
                            cp.stop().await;
                            self.observed
                                .push(format!("{step_label}: {role:?} stopped"));
                        } else {
                            let v = cp.restart().await?;
                            self.observed
                                .push(format!("{step_label}: {role:?} started → {v}"));
                        }
                    }
                    Step::Csds(check) => {
                        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], stats_port));
                        let deadline = Instant::now() + within(check.within_sec);
                        loop {
                            match check.run_once(addr, &ph).await? {
                                Ok(obs) => {
                                    self.observed.push(format!("{step_label}: {obs}"));
                                    break;
                                }
                                Err(_) if Instant::now() < deadline => {
                                    tokio::time::sleep(Duration::from_millis(500)).await;
                                }
                                Err(why) => {
                                    self.observed.push(format!("{step_label}: {why}"));
                                    bail!("failed: {why}");
                                }
                            }
                        }
                    }
                    Step::TlsProbe(probe) => {
                        let certs = self
                            .certs
                            .as_ref()
                            .ok_or_else(|| anyhow!("tls_probe without mtls certificates"))?;
                        let port = self.servers[probe.server].port;
                        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
                        let seen = probe
                            .run(
                                addr,
                                &certs.client,
                                &scenario::spiffe_id(scenario::SERVER_SA),
                            )
                            .await?;
                        self.observed.push(format!("{step_label}: {seen}"));
                    }
                }
                Ok(())
            }
            .await;
            result.with_context(|| step_label.clone())?;
            if let Some(c) = self.client.as_mut()
                && let Some(status) = c.exited()
            {
                bail!("{step_label}: the client exited ({status})");
            }
        }
        Ok(())
    }

    fn start_server(&mut self, idx: usize, ads: std::net::SocketAddr) -> anyhow::Result<()> {
        let certs = self.certs.as_ref().and_then(|c| c.servers.get(idx));
        let boot = peer::bootstrap(
            ads,
            &format!("interop-server-{idx}"),
            certs.map(|p| p.as_path()),
        );
        let slot = &mut self.servers[idx];
        slot.process = Some(Process::server(
            self.row.server,
            &slot.hostname,
            slot.port,
            slot.maintenance_port,
            &boot,
        )?);
        Ok(())
    }

    fn start_client(
        &mut self,
        ads: &[std::net::SocketAddr],
        stats_port: u16,
    ) -> anyhow::Result<()> {
        let f = &self.scenario.client;
        let (bin, mut args) = self.row.client.client_command().map_err(|e| anyhow!(e))?;
        args.extend([
            format!("--server=xds:///{}", self.scenario.target()),
            format!("--stats_port={stats_port}"),
            format!("--qps={}", f.qps),
            format!("--num_channels={}", f.num_channels),
            format!("--rpc={}", f.rpc),
            format!("--fail_on_failed_rpc={}", f.fail_on_failed_rpc),
        ]);
        if !f.metadata.is_empty() {
            args.push(format!("--metadata={}", f.metadata));
        }
        if let Some(t) = &f.rpc_timeout {
            args.push(self.row.client.rpc_timeout_arg(t)?);
        }
        if self.scenario.mtls {
            args.push("--secure_mode=true".into());
        }
        let client_certs = self.certs.as_ref().map(|c| c.client.as_path());
        let boot = peer::bootstrap_servers(ads, "interop-client", client_certs);
        self.client = Some(Process::spawn(
            &format!("{} client", self.row.client.name()),
            &bin,
            &args,
            &boot,
        )?);
        Ok(())
    }

    async fn connect_stats(
        &mut self,
        port: u16,
    ) -> anyhow::Result<LoadBalancerStatsServiceClient<Channel>> {
        let deadline = Instant::now() + CLIENT_START;
        loop {
            if let Some(c) = self.client.as_mut()
                && let Some(status) = c.exited()
            {
                bail!("the client exited before serving stats ({status})");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .connect()
                    .await
                    .context("connecting to the client's stats port")?;
                return Ok(LoadBalancerStatsServiceClient::new(channel));
            }
            if Instant::now() > deadline {
                bail!("the client's stats port {port} did not open within {CLIENT_START:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&mut self) -> String {
        let mut out = String::new();
        if let Some(c) = self.client.as_mut() {
            let _ = writeln!(out, "{}", c.log_tail());
        }
        for s in &mut self.servers {
            if let Some(p) = s.process.as_mut() {
                let _ = writeln!(out, "{}", p.log_tail());
            }
        }
        if let Some(t) = self
            .cp
            .as_ref()
            .and_then(|c| c.running.as_ref())
            .and_then(ControlPlane::log_tail)
        {
            let _ = writeln!(out, "{t}");
        }
        out
    }
}

fn step_name(step: &Step) -> &'static str {
    match step {
        Step::Serve(_) => "serve",
        Step::Check(_) => "check",
        Step::Accumulated(_) => "accumulated",
        Step::StopServers(_) => "stop_servers",
        Step::StartServers(_) => "start_servers",
        Step::SleepMs(_) => "sleep_ms",
        Step::TlsProbe(_) => "tls_probe",
        Step::Csds(_) => "csds",
        Step::ServeSecondary(_) => "serve_secondary",
        Step::StopControlPlane(_) => "stop_control_plane",
        Step::StartControlPlane(_) => "start_control_plane",
    }
}

/// The inbound Listener name a server bound to `host:port` asks for.
fn inbound_name(host: &str, port: u16) -> String {
    peer::INBOUND_TEMPLATE.replace("%s", &format!("{host}:{port}"))
}

const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// Renders a serve step: the files' resources with placeholders filled in, plus each
/// server's default inbound Listener (`_shared/inbound_listener.json`) unless a file
/// defines one of that name; written to `dir/step-{i}.json`.
fn render(
    s: &Scenario,
    files: &[String],
    ph: &Placeholders,
    servers: &[ServerSlot],
    server_impl: Impl,
    dir: &Path,
    i: usize,
) -> anyhow::Result<PathBuf> {
    let mut resources: Vec<serde_json::Value> = Vec::new();
    for f in files {
        let path = s.dir.join(f);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let text = ph
            .apply(&text)
            .with_context(|| format!("in {}", path.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let list = v
            .get("resources")
            .and_then(|r| r.as_array())
            .ok_or_else(|| anyhow!("{}: no \"resources\" array", path.display()))?;
        resources.extend(list.iter().cloned());
    }
    let template_path = scenario::scenarios_dir().join("_shared/inbound_listener.json");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    for slot in servers {
        let host = server_impl.server_listen_host();
        let name = inbound_name(host, slot.port);
        let defined = resources.iter().any(|r| {
            r.get("@type").and_then(|t| t.as_str()) == Some(LISTENER_TYPE)
                && r.get("name").and_then(|n| n.as_str()) == Some(name.as_str())
        });
        if defined {
            continue;
        }
        let mut p = Placeholders::default();
        p.set("LISTENER_NAME", &name);
        p.set("LISTEN_HOST", host);
        p.set("LISTEN_PORT", slot.port.to_string());
        let v: serde_json::Value = serde_json::from_str(&p.apply(&template)?)
            .with_context(|| format!("parsing {}", template_path.display()))?;
        resources.push(v);
    }
    let out = dir.join(format!("step-{i}.json"));
    std::fs::write(
        &out,
        serde_json::to_vec_pretty(&serde_json::json!({ "resources": resources }))?,
    )?;
    Ok(out)
}

fn cell_text(c: &Cell) -> String {
    let last = c.observed.last().map(|o| {
        // Drop the "step N (kind): " prefix in the table; the details keep it.
        o.split_once("): ").map(|(_, r)| r).unwrap_or(o).to_string()
    });
    let text = match &c.outcome {
        Outcome::Pass => format!("PASS: {}", last.unwrap_or_default()),
        Outcome::Fail(f) => format!("**FAIL**: {f}"),
        Outcome::ExpectedFail { reason, .. } => format!("XFAIL ({reason})"),
        Outcome::ExpectedFailMismatch(m) => format!("**XFAIL MISMATCH**: {m}"),
        Outcome::Missing(m) if m.starts_with("missing ") => {
            // The table names the binary; the details give the path and how to build it.
            let bin = m
                .split_whitespace()
                .find(|w| w.contains('/'))
                .and_then(|p| p.rsplit('/').next())
                .unwrap_or(m);
            format!("MISSING binary `{bin}`")
        }
        // A peer that could not be built or installed: the start of why.
        Outcome::Missing(m) => {
            let first = m.lines().next().unwrap_or_default();
            let cut: String = first.chars().take(120).collect();
            let more = if cut.len() < m.len() { "…" } else { "" };
            format!("MISSING: {cut}{more}")
        }
    };
    text.replace('|', "\\|").replace('\n', " ")
}

fn render_report(s: &Suite) -> String {
    let mut out = String::from("# xDS interop report\n\n");
    let _ = writeln!(
        out,
        "Columns are client/server/control plane. Generated by \
         `cargo test -p mesh-tests --test interop_suite`; `-`: the row does not run that \
         scenario.\n"
    );
    let _ = write!(out, "| scenario |");
    for r in &s.rows {
        let _ = write!(out, " {r} |");
    }
    let _ = write!(out, "\n| --- |");
    for _ in &s.rows {
        let _ = write!(out, " --- |");
    }
    out.push('\n');
    for (name, _) in &s.scenarios {
        let _ = write!(out, "| {name} |");
        for r in &s.rows {
            let text = s
                .cells
                .iter()
                .find(|c| &c.scenario == name && &c.row == r)
                .map(cell_text)
                .unwrap_or_else(|| "-".into());
            let _ = write!(out, " {text} |");
        }
        out.push('\n');
    }
    let total: Duration = s.cells.iter().map(|c| c.elapsed).sum();
    let _ = writeln!(
        out,
        "\n{} cells, {} failing the suite, {:.0?} in cells.\n\n## Details\n",
        s.cells.len(),
        s.failures().len(),
        total
    );
    for (name, description) in &s.scenarios {
        let _ = writeln!(out, "### {name}\n\n{description}\n");
        for c in s.cells.iter().filter(|c| &c.scenario == name) {
            let _ = writeln!(
                out,
                "- **{}** ({:.1?}): {}",
                c.row,
                c.elapsed,
                short(&c.outcome)
            );
            for o in &c.observed {
                let _ = writeln!(out, "  - {o}");
            }
            match &c.outcome {
                Outcome::Fail(f) | Outcome::ExpectedFailMismatch(f) | Outcome::Missing(f) => {
                    let _ = writeln!(out, "  - {}", f.replace('\n', " "));
                }
                Outcome::ExpectedFail { reason, failure } => {
                    let _ = writeln!(
                        out,
                        "  - expected: {reason}; still fails with: {}",
                        failure.replace('\n', " ")
                    );
                }
                Outcome::Pass => {}
            }
        }
        out.push('\n');
    }
    out
}

/// Waits (at most `limit`) until the `grpc.health.v1` service on `127.0.0.1:port` reports
/// SERVING; a server that never does is left to fail the scenario's checks.
async fn wait_healthy(port: u16, limit: Duration) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let endpoint =
            match tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")) {
                Ok(e) => e
                    .connect_timeout(Duration::from_secs(1))
                    .timeout(Duration::from_secs(1)),
                Err(_) => return,
            };
        if let Ok(channel) = endpoint.connect().await {
            let serving = HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .is_ok_and(|r| r.into_inner().status() == ServingStatus::Serving);
            if serving {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
