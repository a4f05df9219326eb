//! The two steerable control planes behind one interface: the go-control-plane program
//! (fed the rendered Envoy JSON through its `RESOURCES <file>` stdin command) and
//! mesh-control in raw mode (fed the same JSON converted to protobuf by `json2pb`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use xds_proto::protobuf::Any;
use xds_proto::type_url;

use super::gobuild;
use super::peer::Cp;

/// Bound on the go-control-plane program's start and on each of its answers.
const GOCP_WAIT: Duration = Duration::from_secs(30);
/// Bound on one json2pb run.
const JSON2PB_WAIT: Duration = Duration::from_secs(30);

/// A running control plane of either kind; dropping it stops it.
pub enum ControlPlane {
    /// The go-control-plane program.
    Go(Box<GoCp>),
    /// mesh-control, in process.
    Mesh {
        /// The served control plane.
        running: mesh_control::RunningControlPlane,
        /// The types served so far, so a step that drops a type clears it.
        types: BTreeSet<String>,
    },
}

impl ControlPlane {
    /// Starts one, serving nothing yet.
    pub async fn start(kind: Cp) -> anyhow::Result<ControlPlane> {
        Self::start_at(kind, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts one on `addr` (port 0: any), serving nothing yet.
    pub async fn start_at(kind: Cp, addr: SocketAddr) -> anyhow::Result<ControlPlane> {
        match kind {
            Cp::GoControlPlane => Ok(ControlPlane::Go(Box::new(GoCp::start(addr).await?))),
            Cp::MeshControl => {
                let running = mesh_control::ControlPlane::empty()
                    .listen(addr)
                    .await
                    .context("starting mesh-control")?;
                Ok(ControlPlane::Mesh {
                    running,
                    types: BTreeSet::new(),
                })
            }
        }
    }

    /// Stops it and waits until its port is free.
    pub async fn stop(self) {
        match self {
            ControlPlane::Go(mut g) => {
                let _ = g._child.kill().await;
            }
            ControlPlane::Mesh { running, .. } => running.shutdown().await,
        }
    }

    /// The ADS address.
    pub fn addr(&self) -> SocketAddr {
        match self {
            ControlPlane::Go(g) => g.addr,
            ControlPlane::Mesh { running, .. } => running.local_addr(),
        }
    }

    /// Serves exactly the resources of `file` (`{"resources": [...]}`, Envoy JSON).
    pub async fn serve(&mut self, file: &Path) -> anyhow::Result<String> {
        match self {
            ControlPlane::Go(g) => g.resources(file).await,
            ControlPlane::Mesh { running, types } => {
                let by_type = json_to_protobuf(file).await?;
                // Make before break: endpoints and clusters before the routes and listeners
                // that point at them.
                let order = [
                    type_url::CLUSTER_LOAD_ASSIGNMENT,
                    type_url::CLUSTER,
                    type_url::ROUTE_CONFIGURATION,
                    type_url::LISTENER,
                ];
                let mut all: Vec<String> = order.iter().map(|s| s.to_string()).collect();
                for t in by_type.keys().chain(types.iter()) {
                    if !all.contains(t) {
                        all.push(t.clone());
                    }
                }
                for t in all {
                    let list = by_type.get(&t).cloned().unwrap_or_default();
                    if list.is_empty() && !types.contains(&t) {
                        continue;
                    }
                    running.control().set_resources(&t, list);
                }
                *types = by_type.keys().cloned().collect();
                Ok(format!("version {}", running.control().version()))
            }
        }
    }

    /// The control plane's recent log lines (go-control-plane only).
    pub fn log_tail(&self) -> Option<String> {
        match self {
            ControlPlane::Go(g) => Some(format!(
                "--- go-control-plane: last stderr ---\n{}",
                g.stderr_tail
                    .lock()
                    .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                    .unwrap_or_default()
            )),
            ControlPlane::Mesh { .. } => None,
        }
    }
}

/// One line of json2pb's output.
#[derive(Deserialize)]
struct PbLine {
    type_url: String,
    name: String,
    value_base64: String,
}

/// Runs json2pb on `file`: resources by type URL, as `(name, Any)`.
pub async fn json_to_protobuf(file: &Path) -> anyhow::Result<BTreeMap<String, Vec<(String, Any)>>> {
    let bin = tokio::task::spawn_blocking(gobuild::json2pb)
        .await
        .context("json2pb build task")??;
    let out = tokio::time::timeout(
        JSON2PB_WAIT,
        Command::new(&bin)
            .arg(file)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("json2pb timed out")?
    .context("running json2pb")?;
    if !out.status.success() {
        bail!(
            "json2pb {} failed ({}): {}",
            file.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut by_type: BTreeMap<String, Vec<(String, Any)>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.trim().is_empty() {
            continue;
        }
        let l: PbLine = serde_json::from_str(line).context("parsing json2pb output")?;
        let value = base64::engine::general_purpose::STANDARD
            .decode(&l.value_base64)
            .context("json2pb value_base64")?;
        by_type.entry(l.type_url.clone()).or_default().push((
            l.name,
            Any {
                type_url: l.type_url,
                value,
            },
        ));
    }
    Ok(by_type)
}

/// The go-control-plane program, started with no generated resources and steered with
/// `RESOURCES <file>`.
pub struct GoCp {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl GoCp {
    async fn start(listen: SocketAddr) -> anyhow::Result<GoCp> {
        let bin = tokio::task::spawn_blocking(crate::gocp::build_go_control_plane)
            .await
            .context("build task")??;
        let mut child = Command::new(&bin)
            .args([
                "--listen",
                &listen.to_string(),
                "--service",
                "",
                "--ads-hold=false",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let verbose = std::env::var_os("MESH_INTEROP_VERBOSE").is_some();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if verbose {
                    eprintln!("[gocp] {line}");
                }
                if let Ok(mut t) = tail.lock() {
                    if t.len() == 40 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });
        let mut cp = GoCp {
            _child: child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr_tail,
        };
        let line = cp.next_line().await?;
        let addr = line
            .strip_prefix("LISTENING ")
            .ok_or_else(|| anyhow!("go-control-plane said {line:?}, not LISTENING"))?;
        cp.addr = addr.parse().context("LISTENING address")?;
        Ok(cp)
    }

    async fn resources(&mut self, file: &Path) -> anyhow::Result<String> {
        let cmd = format!("RESOURCES {}\n", file.display());
        self.stdin.write_all(cmd.as_bytes()).await?;
        self.stdin.flush().await?;
        let line = self.next_line().await?;
        if !line.starts_with("VERSION ") {
            bail!("go-control-plane answered {line:?}");
        }
        Ok(line.to_lowercase())
    }

    async fn next_line(&mut self) -> anyhow::Result<String> {
        match tokio::time::timeout(GOCP_WAIT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => bail!("go-control-plane closed its stdout"),
            Ok(Err(e)) => Err(anyhow!(e).context("reading go-control-plane")),
            Err(_) => bail!("go-control-plane did not answer within {GOCP_WAIT:?}"),
        }
    }
}
