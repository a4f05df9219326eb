//! The peers: which implementation plays client or server, where its binary is, how it is
//! started (flags, bootstrap), and a child process that keeps the tail of its output.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::gobuild;

/// Lines of stdout/stderr kept per process to explain a failure.
const LOG_TAIL: usize = 40;

/// Istio's inbound listener name template, used in every bootstrap.
pub const INBOUND_TEMPLATE: &str = "xds.istio.io/grpc/lds/inbound/%s";

/// An implementation of the xDS interop client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Impl {
    /// This project's `interop-client` / `interop-server` (package mesh-examples).
    Ours,
    /// grpc-go's `interop/xds/client` and `interop/xds/server`.
    GrpcGo,
    /// Python grpcio (gRPC C-core): `tests/interop/python/xds_interop_client.py`, run in a
    /// venv the harness makes ([`python_venv`]). A client only.
    PythonGrpcio,
}

/// A control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cp {
    /// The go-control-plane program (`tests/interop/go-control-plane`).
    GoControlPlane,
    /// mesh-control in raw mode, in process.
    MeshControl,
}

/// One (client, server, control plane) combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Which client.
    pub client: Impl,
    /// Which server(s).
    pub server: Impl,
    /// Which control plane.
    pub cp: Cp,
    /// The only scenarios this row runs (by name); `None` runs every scenario.
    pub scenarios: Option<&'static [&'static str]>,
}

impl Impl {
    /// `ours`, `grpc-go` or `python`.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::GrpcGo => "grpc-go",
            Impl::PythonGrpcio => "python",
        }
    }

    /// The host the server binds and names its inbound Listener after: grpc-go's interop
    /// server listens on `:PORT` (tcp4, so `0.0.0.0`); ours on loopback.
    pub fn server_listen_host(self) -> &'static str {
        match self {
            Impl::Ours | Impl::PythonGrpcio => "127.0.0.1",
            Impl::GrpcGo => "0.0.0.0",
        }
    }

    /// Extra server flags. grpc-go's server is xDS-managed (fetches its Listener) only
    /// with `--secure_mode=true` (xDS credentials, plaintext fallback); ours always is, and
    /// gets `--secure_mode=true` for the same layout (TestService on the xDS port only), and
    /// binds (and names its Listener after) [`Impl::server_listen_host`].
    fn server_extra_args(self) -> &'static [&'static str] {
        match self {
            Impl::Ours => &["--bind_host=127.0.0.1", "--secure_mode=true"],
            Impl::GrpcGo => &["--secure_mode=true"],
            Impl::PythonGrpcio => &[],
        }
    }

    /// The client binary, or why it is not there.
    pub fn client_binary(self) -> Result<PathBuf, String> {
        self.client_command().map(|(bin, _)| bin)
    }

    /// The client program and the arguments that come before its flags (for Python, the
    /// venv's interpreter and the script), or why it is not there.
    pub fn client_command(self) -> Result<(PathBuf, Vec<String>), String> {
        match self {
            Impl::Ours => ours("interop-client").map(|bin| (bin, Vec::new())),
            Impl::GrpcGo => gobuild::grpc_go_peers()
                .map(|p| (p.client, Vec::new()))
                .map_err(|e| format!("building grpc-go peers: {e:#}")),
            Impl::PythonGrpcio => {
                let script = python_dir().join("xds_interop_client.py");
                if !script.is_file() {
                    return Err(format!("missing script {}", script.display()));
                }
                let python = python_venv().map_err(|e| format!("python venv: {e:#}"))?;
                Ok((python, vec!["-u".into(), script.display().to_string()]))
            }
        }
    }

    /// The client's RPC timeout flag for a Go duration (`"5s"`, `"500ms"`): grpc-go and ours
    /// take `--rpc_timeout=5s`, the Python client `--rpc_timeout_sec=5`.
    pub fn rpc_timeout_arg(self, go_duration: &str) -> anyhow::Result<String> {
        match self {
            Impl::Ours | Impl::GrpcGo => Ok(format!("--rpc_timeout={go_duration}")),
            Impl::PythonGrpcio => {
                let d = go_duration.trim();
                let (number, scale) = if let Some(n) = d.strip_suffix("ms") {
                    (n, 0.001)
                } else if let Some(n) = d.strip_suffix('s') {
                    (n, 1.0)
                } else if let Some(n) = d.strip_suffix('m') {
                    (n, 60.0)
                } else {
                    bail!("rpc_timeout {go_duration:?}: want a number with ms, s or m");
                };
                let secs: f64 = number
                    .parse()
                    .map_err(|_| anyhow!("rpc_timeout {go_duration:?} is not a duration"))?;
                Ok(format!("--rpc_timeout_sec={}", secs * scale))
            }
        }
    }

    /// The server binary, or why it is not there.
    pub fn server_binary(self) -> Result<PathBuf, String> {
        match self {
            Impl::Ours => ours("interop-server"),
            Impl::GrpcGo => gobuild::grpc_go_peers()
                .map(|p| p.server)
                .map_err(|e| format!("building grpc-go peers: {e:#}")),
            Impl::PythonGrpcio => Err("python grpcio is a client only here (no server)".into()),
        }
    }
}

/// Our binaries, built by cargo (package mesh-examples) into `<target>/debug/` on first use
/// ([`crate::binaries::our_bin_dir`]).
fn ours(name: &str) -> Result<PathBuf, String> {
    let path = crate::binaries::our_bin_dir()?.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!("missing binary {}", path.display()))
    }
}

impl Cp {
    /// `go-control-plane` or `mesh-control`.
    pub fn name(self) -> &'static str {
        match self {
            Cp::GoControlPlane => "go-control-plane",
            Cp::MeshControl => "mesh-control",
        }
    }
}

impl Row {
    /// `client/server/control-plane`, e.g. `grpc-go/ours/go-control-plane`.
    pub fn label(&self) -> String {
        format!(
            "{}/{}/{}",
            self.client.name(),
            self.server.name(),
            self.cp.name()
        )
    }

    /// Whether this row runs the scenario named `scenario`.
    pub fn runs(&self, scenario: &str) -> bool {
        self.scenarios.is_none_or(|names| names.contains(&scenario))
    }

    /// The rows of the matrix: issue 4's four, grpc-go against itself on go-control-plane
    /// as a sanity row for the harness and the resources, and Python grpcio as the client
    /// against mesh-control for the basic scenarios ([`PYTHON_SCENARIOS`]).
    pub fn matrix() -> Vec<Row> {
        use Cp::*;
        use Impl::*;
        let row = |client, server, cp| Row {
            client,
            server,
            cp,
            scenarios: None,
        };
        let only = |client, server, cp, scenarios| Row {
            client,
            server,
            cp,
            scenarios: Some(scenarios),
        };
        vec![
            row(Ours, GrpcGo, GoControlPlane),
            row(GrpcGo, Ours, GoControlPlane),
            row(GrpcGo, GrpcGo, MeshControl),
            row(Ours, Ours, MeshControl),
            row(GrpcGo, GrpcGo, GoControlPlane),
            only(PythonGrpcio, Ours, MeshControl, PYTHON_SCENARIOS),
            only(PythonGrpcio, GrpcGo, MeshControl, PYTHON_SCENARIOS),
        ]
    }
}

/// The scenarios the Python grpcio rows run (issue 4: "the basic scenarios", issue 5's
/// `security`, and issue 6's resilience scenarios, which need only `--metadata` and the
/// accumulated stats). Not `csds`: the Python client serves no CSDS.
pub const PYTHON_SCENARIOS: &[&str] = &[
    "ping_pong",
    "round_robin",
    "security",
    "circuit_breaking",
    "timeout",
    "fault_injection",
    "retry",
    "outlier_detection",
];

/// `tests/interop/python`: the Python client and its `requirements.txt`.
pub fn python_dir() -> PathBuf {
    gobuild::tests_dir().join("interop/python")
}

/// Bound on `python3 -m venv` and on `pip install` (each).
const VENV_TIMEOUT: Duration = Duration::from_secs(600);

/// The interpreter of `<target>/interop/python-venv`, a venv with
/// `tests/interop/python/requirements.txt` installed: made once per process, and kept
/// across runs while the requirements it was made from (`requirements.installed` in it)
/// are unchanged. Needs `python3` (with its `venv` module) and PyPI.
pub fn python_venv() -> anyhow::Result<PathBuf> {
    static MADE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MADE.get_or_init(|| make_venv().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e: String| anyhow!(e))
}

fn make_venv() -> anyhow::Result<PathBuf> {
    let requirements_path = python_dir().join("requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_path)
        .with_context(|| format!("reading {}", requirements_path.display()))?;
    let venv = gobuild::interop_dir().join("python-venv");
    let up_to_date = |dir: &Path| {
        dir.join("bin/python").is_file()
            && std::fs::read_to_string(dir.join("requirements.installed")).ok()
                == Some(requirements.clone())
    };
    if up_to_date(&venv) {
        return Ok(venv.join("bin/python"));
    }
    match std::process::Command::new("python3")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => bail!("`python3 --version` failed ({})", o.status),
        Err(e) => bail!(
            "`python3` is needed for the Python grpcio interop rows (python/*/*; \
             MESH_INTEROP_ROWS selects rows): {e}"
        ),
    }
    // Made beside the final name and renamed (a venv run as `bin/python -m …` does not
    // mind), so a concurrent process never uses a half-installed one.
    let tmp = gobuild::interop_dir().join(format!("python-venv.tmp.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(gobuild::interop_dir())?;
    let started = Instant::now();
    let made = (|| {
        run_bounded(
            std::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&tmp),
            "python3 -m venv (on Debian/Ubuntu the venv module is package python3-venv)",
        )?;
        run_bounded(
            std::process::Command::new(tmp.join("bin/python"))
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--no-input",
                    "-r",
                ])
                .arg(&requirements_path),
            "pip install -r tests/interop/python/requirements.txt (needs PyPI)",
        )?;
        std::fs::write(tmp.join("requirements.installed"), &requirements)?;
        anyhow::Ok(())
    })();
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&venv);
    if let Err(e) = std::fs::rename(&tmp, &venv) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !up_to_date(&venv) {
            bail!("moving {} to {}: {e}", tmp.display(), venv.display());
        }
    }
    eprintln!(
        "interop: made {} in {:.1?}",
        venv.display(),
        started.elapsed()
    );
    Ok(venv.join("bin/python"))
}

/// Runs `cmd` to completion within [`VENV_TIMEOUT`], its output in a log file (so a full pipe
/// cannot stall it) that the error quotes.
fn run_bounded(cmd: &mut std::process::Command, what: &str) -> anyhow::Result<()> {
    let log_path = gobuild::interop_dir().join(format!("python-venv.{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("running {what}"))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > VENV_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{what} did not finish within {VENV_TIMEOUT:?} (log: {})",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    if !status.success() {
        bail!("{what} failed ({status}):\n{text}");
    }
    Ok(())
}

/// The bootstrap JSON every peer gets (through `GRPC_XDS_BOOTSTRAP_CONFIG`); with `certs`
/// (an Istio-layout directory) also the `file_watcher` certificate provider instance
/// [`mesh_control::tls::CERT_PROVIDER_INSTANCE`] reading it, as Istio's agent writes it.
pub fn bootstrap(ads: SocketAddr, node_id: &str, certs: Option<&Path>) -> String {
    bootstrap_servers(&[ads], node_id, certs)
}

/// As [`bootstrap`], with these xDS servers in order (gRFC A71: primary first, then the
/// fallbacks).
pub fn bootstrap_servers(ads: &[SocketAddr], node_id: &str, certs: Option<&Path>) -> String {
    let servers: Vec<_> = ads
        .iter()
        .map(|a| {
            serde_json::json!({
                "server_uri": a.to_string(),
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"]
            })
        })
        .collect();
    let mut b = serde_json::json!({
        "xds_servers": servers,
        "node": {"id": node_id, "cluster": "interop", "locality": {"region": "r1"}},
        "server_listener_resource_name_template": INBOUND_TEMPLATE
    });
    if let (Some(dir), Some(object)) = (certs, b.as_object_mut()) {
        let provider = mesh_control::bootstrap::file_watcher_provider(
            dir,
            mesh_control::bootstrap::DEFAULT_REFRESH_INTERVAL,
        );
        object.insert(
            "certificate_providers".into(),
            serde_json::json!({ mesh_control::tls::CERT_PROVIDER_INSTANCE: provider }),
        );
    }
    b.to_string()
}

/// A free loopback port (bound and released; the peer binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    // The kernel may hand the same ephemeral port out again once it is released, so two
    // calls in a row could collide (a server's port and its maintenance port): never give
    // out a port twice in this process.
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..64 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
        let port = l.local_addr()?.port();
        let mut given = GIVEN
            .lock()
            .map_err(|_| anyhow::anyhow!("port registry poisoned"))?;
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
    anyhow::bail!("no fresh free port after 64 tries")
}

/// A peer process; dropping it kills it.
pub struct Process {
    /// What it is, for logs: `client`, `server backend-0`.
    pub role: String,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    /// Spawns `bin args…` with the bootstrap in its environment, capturing its output.
    pub fn spawn(
        role: &str,
        bin: &PathBuf,
        args: &[String],
        bootstrap: &str,
    ) -> anyhow::Result<Process> {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("GRPC_XDS_BOOTSTRAP_CONFIG", bootstrap)
            .env_remove("GRPC_XDS_BOOTSTRAP")
            // Keep error messages inside the log tail instead of backtraces.
            .env("RUST_BACKTRACE", "0")
            .env("RUST_LIB_BACKTRACE", "0")
            .env(
                "GRPC_GO_LOG_SEVERITY_LEVEL",
                std::env::var("GRPC_GO_LOG_SEVERITY_LEVEL").unwrap_or_else(|_| "warning".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {role} {}", bin.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(LOG_TAIL)));
        let verbose = std::env::var_os("MESH_INTEROP_VERBOSE").is_some();
        if let Some(out) = child.stdout.take() {
            keep_tail(out, role, "out", tail.clone(), verbose);
        }
        if let Some(err) = child.stderr.take() {
            keep_tail(err, role, "err", tail.clone(), verbose);
        }
        Ok(Process {
            role: role.to_string(),
            child,
            tail,
        })
    }

    /// Starts a server: `--port --maintenance_port --server_id --host_name_override`.
    pub fn server(
        which: Impl,
        hostname: &str,
        port: u16,
        maintenance_port: u16,
        bootstrap: &str,
    ) -> anyhow::Result<Process> {
        let bin = which.server_binary().map_err(|e| anyhow!(e))?;
        let mut args = vec![
            format!("--port={port}"),
            format!("--maintenance_port={maintenance_port}"),
            format!("--server_id={hostname}"),
            format!("--host_name_override={hostname}"),
        ];
        args.extend(which.server_extra_args().iter().map(|s| s.to_string()));
        Process::spawn(
            &format!("{} server {hostname}", which.name()),
            &bin,
            &args,
            bootstrap,
        )
    }

    /// Whether it has exited (and how).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// Kills it and waits (bounded) for it to go.
    pub async fn stop(&mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// The last lines it printed, for a failure report.
    pub fn log_tail(&mut self) -> String {
        let exit = self
            .exited()
            .map(|s| format!(" (exited: {s})"))
            .unwrap_or_default();
        let lines = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        format!("--- {}{exit}: last output ---\n{lines}", self.role)
    }
}

fn keep_tail(
    stream: impl AsyncRead + Unpin + Send + 'static,
    role: &str,
    which: &'static str,
    tail: Arc<Mutex<VecDeque<String>>>,
    verbose: bool,
) {
    let role = role.to_string();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if verbose {
                eprintln!("[{role} {which}] {line}");
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == LOG_TAIL {
                    t.pop_front();
                }
                t.push_back(format!("[{which}] {line}"));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_rows_run_only_their_scenarios() {
        let python: Vec<Row> = Row::matrix()
            .into_iter()
            .filter(|r| r.client == Impl::PythonGrpcio)
            .collect();
        assert_eq!(python.len(), 2);
        for r in &python {
            assert_eq!(r.cp, Cp::MeshControl);
            assert!(r.runs("ping_pong") && r.runs("round_robin"));
            assert!(!r.runs("traffic_splitting") && !r.runs("csds"));
        }
        assert!(Row::matrix()[0].runs("traffic_splitting"));
        assert!(Impl::PythonGrpcio.server_binary().is_err());
    }

    #[test]
    fn rpc_timeout_flags() {
        assert_eq!(
            Impl::Ours.rpc_timeout_arg("5s").unwrap(),
            "--rpc_timeout=5s"
        );
        let py = Impl::PythonGrpcio;
        assert_eq!(py.rpc_timeout_arg("5s").unwrap(), "--rpc_timeout_sec=5");
        assert_eq!(
            py.rpc_timeout_arg("500ms").unwrap(),
            "--rpc_timeout_sec=0.5"
        );
        assert_eq!(py.rpc_timeout_arg("2m").unwrap(), "--rpc_timeout_sec=120");
        assert!(py.rpc_timeout_arg("5").is_err());
    }
}
