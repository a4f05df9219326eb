//! The peers: which implementation plays client or server, where its binary is, how it is
//! started (flags, bootstrap), and a child process that keeps the tail of its output.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
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
}

impl Impl {
    /// `ours` or `grpc-go`.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Ours => "ours",
            Impl::GrpcGo => "grpc-go",
        }
    }

    /// The host the server binds and names its inbound Listener after: grpc-go's interop
    /// server listens on `:PORT` (tcp4, so `0.0.0.0`); ours on loopback.
    pub fn server_listen_host(self) -> &'static str {
        match self {
            Impl::Ours => "127.0.0.1",
            Impl::GrpcGo => "0.0.0.0",
        }
    }

    /// Extra server flags. grpc-go's server is xDS-managed (fetches its Listener) only
    /// with `--secure_mode=true` (xDS credentials, plaintext fallback); ours always is, and
    /// binds (and names its Listener after) [`Impl::server_listen_host`].
    fn server_extra_args(self) -> &'static [&'static str] {
        match self {
            Impl::Ours => &["--bind_host=127.0.0.1"],
            Impl::GrpcGo => &["--secure_mode=true"],
        }
    }

    /// The client binary, or why it is not there.
    pub fn client_binary(self) -> Result<PathBuf, String> {
        match self {
            Impl::Ours => ours("interop-client"),
            Impl::GrpcGo => gobuild::grpc_go_peers()
                .map(|p| p.client)
                .map_err(|e| format!("building grpc-go peers: {e:#}")),
        }
    }

    /// The server binary, or why it is not there.
    pub fn server_binary(self) -> Result<PathBuf, String> {
        match self {
            Impl::Ours => ours("interop-server"),
            Impl::GrpcGo => gobuild::grpc_go_peers()
                .map(|p| p.server)
                .map_err(|e| format!("building grpc-go peers: {e:#}")),
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

    /// The rows of the matrix: issue 4's four, and grpc-go against itself on
    /// go-control-plane as a sanity row for the harness and the resources.
    pub fn matrix() -> Vec<Row> {
        use Cp::*;
        use Impl::*;
        let row = |client, server, cp| Row { client, server, cp };
        vec![
            row(Ours, GrpcGo, GoControlPlane),
            row(GrpcGo, Ours, GoControlPlane),
            row(GrpcGo, GrpcGo, MeshControl),
            row(Ours, Ours, MeshControl),
            row(GrpcGo, GrpcGo, GoControlPlane),
        ]
    }
}

/// The bootstrap JSON every peer gets (through `GRPC_XDS_BOOTSTRAP_CONFIG`).
pub fn bootstrap(ads: SocketAddr, node_id: &str) -> String {
    serde_json::json!({
        "xds_servers": [{
            "server_uri": ads.to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": ["xds_v3"]
        }],
        "node": {"id": node_id, "cluster": "interop", "locality": {"region": "r1"}},
        "server_listener_resource_name_template": INBOUND_TEMPLATE
    })
    .to_string()
}

/// A free loopback port (bound and released; the peer binds it right after).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
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
