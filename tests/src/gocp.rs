//! A go-control-plane ADS server as a child process, for interop tests: proof that our client
//! accepts resources a control plane we did not write produces (DESIGN §7, Interop).
//!
//! The Go program lives in `tests/interop/go-control-plane/`; [`build_go_control_plane`]
//! builds it once per test process and [`GoControlPlane`] runs it. It is driven through its
//! stdin (`UPDATE <backends> [split]` → `VERSION n`) and exits when stdin closes, so it never
//! outlives the test. It serves state-of-the-world and delta ADS from one snapshot cache;
//! [`GoControlPlane::start_with`] can restrict it to one protocol, [`GoControlPlane::stats`]
//! says what its streams saw and [`GoControlPlane::restart`] closes every stream and serves
//! again on the same port with the same cache.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use mesh_tests::gocp::GoControlPlane;
//!
//! let backends = ["127.0.0.1:50051".parse()?, "127.0.0.1:50052".parse()?];
//! let mut cp = GoControlPlane::start("greeter.default", 8080, &backends, None).await?;
//! println!("ADS at {}", cp.addr());
//! cp.update(&backends[..1], Some((80, 20))).await?;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// How long the program may take to print `LISTENING` (it has been built already).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an `UPDATE` may take to be answered.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many stderr lines are kept to explain a failure.
const STDERR_TAIL: usize = 40;

/// The Go program's source directory.
fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/go-control-plane")
}

/// Where the binary goes: `$CARGO_TARGET_DIR/gocp/gocp`, else `<workspace>/target/gocp/gocp`.
fn binary_path() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir), // an absolute dir replaces the base
        None => workspace.join("target"),
    };
    target.join("gocp").join("gocp")
}

/// Fails clearly when `go` is missing, even if a built binary is cached: CI and every
/// developer must be able to rebuild it.
fn check_go() -> anyhow::Result<()> {
    match std::process::Command::new("go")
        .arg("version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!(
            "`go version` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "the `go` toolchain is not on PATH: the go-control-plane interop tests need Go \
             (1.26, see tests/interop/go-control-plane/go.mod); install it and re-run"
        ),
        Err(e) => Err(anyhow!(e).context("running `go version`")),
    }
}

fn build() -> anyhow::Result<PathBuf> {
    check_go()?;
    crate::interop::gobuild::go_build(&source_dir(), ".", &binary_path()).map_err(|e| anyhow!(e))
}

/// Builds the Go control plane (once per process; skipped when the binary is newer than its
/// sources) and returns the binary's path.
///
/// Fails with a message saying so when `go` is not installed.
pub fn build_go_control_plane() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| build().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

/// A running go-control-plane ADS server (`tests/interop/go-control-plane`).
///
/// Dropping it kills the process.
pub struct GoControlPlane {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    addr: SocketAddr,
    version: u64,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// Which ADS protocols the Go control plane serves (the other answers `UNIMPLEMENTED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocols {
    /// State of the world and delta (the default).
    #[default]
    Both,
    /// Only `StreamAggregatedResources`.
    SotwOnly,
    /// Only `DeltaAggregatedResources`.
    DeltaOnly,
}

impl Protocols {
    fn flag(self) -> &'static str {
        match self {
            Protocols::Both => "sotw,delta",
            Protocols::SotwOnly => "sotw",
            Protocols::DeltaOnly => "delta",
        }
    }
}

/// What the Go control plane's streams have seen (its `STATS` command), since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GoStats {
    /// State-of-the-world streams opened.
    pub sotw_streams: u64,
    /// Delta streams opened.
    pub delta_streams: u64,
    /// `initial_resource_versions` entries received on delta streams.
    pub initial_resource_versions: u64,
    /// Resources sent on delta streams.
    pub delta_resources_sent: u64,
    /// Delta NACKs received.
    pub delta_nacks: u64,
}

impl GoControlPlane {
    /// Builds (if needed) and starts the control plane serving `{service}:{port}` with the
    /// given backends, optionally split `v1`/`v2` by weight (even-indexed backends in v1,
    /// odd in v2). Resolves once it listens on an ephemeral loopback port.
    pub async fn start(
        service: &str,
        port: u16,
        backends: &[SocketAddr],
        split: Option<(u32, u32)>,
    ) -> anyhow::Result<Self> {
        Self::start_with_resources(service, port, backends, split, None).await
    }

    /// Like [`start`](Self::start), also serving the resources of a JSON file
    /// `{"resources": [<Envoy resource JSON with "@type">, ...]}`; a file resource replaces a
    /// generated one of the same type and name.
    pub async fn start_with_resources(
        service: &str,
        port: u16,
        backends: &[SocketAddr],
        split: Option<(u32, u32)>,
        resources: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Self::start_with(service, port, backends, split, resources, Protocols::Both).await
    }

    /// Like [`start_with_resources`](Self::start_with_resources), serving only `protocols`.
    pub async fn start_with(
        service: &str,
        port: u16,
        backends: &[SocketAddr],
        split: Option<(u32, u32)>,
        resources: Option<&Path>,
        protocols: Protocols,
    ) -> anyhow::Result<Self> {
        let bin = tokio::task::spawn_blocking(build_go_control_plane)
            .await
            .context("build task")??;
        let mut cmd = Command::new(&bin);
        cmd.arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--service")
            .arg(service)
            .arg("--port")
            .arg(port.to_string())
            .arg("--backends")
            .arg(backend_list(backends))
            .arg("--protocols")
            .arg(protocols.flag());
        if let Some((v1, v2)) = split {
            cmd.arg("--split").arg(format!("{v1},{v2}"));
        }
        if let Some(file) = resources {
            cmd.arg("--resources").arg(file);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin pipe"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout pipe"))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no stderr pipe"))?;

        // Forward the program's log through eprintln! so the test harness captures it (shown
        // only for failing tests), and keep the tail for error messages.
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL)));
        let tail = stderr_tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[gocp] {line}");
                if let Ok(mut t) = tail.lock() {
                    if t.len() == STDERR_TAIL {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            }
        });

        let mut cp = GoControlPlane {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            version: 1,
            stderr_tail,
        };
        let line = cp
            .next_line(START_TIMEOUT)
            .await
            .context("waiting for LISTENING")?;
        let addr = line
            .strip_prefix("LISTENING ")
            .ok_or_else(|| anyhow!("expected `LISTENING <addr>`, got {line:?}"))?;
        cp.addr = addr
            .parse()
            .with_context(|| format!("bad LISTENING address {addr:?}"))?;
        Ok(cp)
    }

    /// The ADS server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The snapshot version now served (1 at start, +1 per [`update`](Self::update)); every
    /// resource type carries it as `version_info`.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Publishes a new snapshot with these backends and split; resolves once the program has
    /// set it in its cache (clients then receive it).
    pub async fn update(
        &mut self,
        backends: &[SocketAddr],
        split: Option<(u32, u32)>,
    ) -> anyhow::Result<()> {
        let mut cmd = format!("UPDATE {}", backend_list_or_dash(backends));
        if let Some((v1, v2)) = split {
            cmd.push_str(&format!(" {v1},{v2}"));
        }
        cmd.push('\n');
        self.stdin
            .write_all(cmd.as_bytes())
            .await
            .context("writing UPDATE")?;
        self.stdin.flush().await.context("writing UPDATE")?;
        let line = self
            .next_line(UPDATE_TIMEOUT)
            .await
            .context("waiting for VERSION")?;
        let version = line
            .strip_prefix("VERSION ")
            .ok_or_else(|| anyhow!("UPDATE answered {line:?}"))?;
        self.version = version
            .parse()
            .with_context(|| format!("bad VERSION {version:?}"))?;
        Ok(())
    }

    /// Asks the program what its streams have seen.
    pub async fn stats(&mut self) -> anyhow::Result<GoStats> {
        let line = self.command("STATS").await?;
        let fields = line
            .strip_prefix("STATS ")
            .ok_or_else(|| anyhow!("STATS answered {line:?}"))?;
        let mut stats = GoStats::default();
        for field in fields.split_whitespace() {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| anyhow!("bad STATS field {field:?}"))?;
            let value: u64 = value
                .parse()
                .with_context(|| format!("bad STATS value {field:?}"))?;
            match key {
                "sotw_streams" => stats.sotw_streams = value,
                "delta_streams" => stats.delta_streams = value,
                "initial_resource_versions" => stats.initial_resource_versions = value,
                "delta_resources_sent" => stats.delta_resources_sent = value,
                "delta_nacks" => stats.delta_nacks = value,
                _ => {}
            }
        }
        Ok(stats)
    }

    /// Closes every ADS stream (the gRPC server stops) and serves again on the same
    /// address with the same snapshot cache; resolves once it listens again.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let line = self.command("RESTART").await?;
        let addr = line
            .strip_prefix("LISTENING ")
            .ok_or_else(|| anyhow!("RESTART answered {line:?}"))?;
        ensure!(
            addr == self.addr.to_string(),
            "restarted on {addr}, not {}",
            self.addr
        );
        Ok(())
    }

    /// Sends one command line and reads its one-line answer.
    async fn command(&mut self, command: &str) -> anyhow::Result<String> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .with_context(|| format!("writing {command}"))?;
        self.stdin
            .flush()
            .await
            .with_context(|| format!("writing {command}"))?;
        self.next_line(UPDATE_TIMEOUT)
            .await
            .with_context(|| format!("waiting for the answer to {command}"))
    }

    /// The next stdout line, or an error carrying the program's recent stderr.
    async fn next_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let result = match tokio::time::timeout(timeout, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => return Ok(line),
            Ok(Ok(None)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                    .await
                    .map(|s| s.map(|s| s.to_string()));
                anyhow!("the control plane closed stdout (exit: {status:?})")
            }
            Ok(Err(e)) => anyhow!(e).context("reading the control plane's stdout"),
            Err(_) => anyhow!("no answer within {timeout:?}"),
        };
        Err(anyhow!(
            "{result:#}\nrecent control-plane stderr:\n{}",
            self.stderr_tail()
        ))
    }

    fn stderr_tail(&self) -> String {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for GoControlPlane {
    fn drop(&mut self) {
        // kill_on_drop would do it too; be explicit, the process must not outlive the test.
        let _ = self.child.start_kill();
    }
}

fn backend_list(backends: &[SocketAddr]) -> String {
    backends
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn backend_list_or_dash(backends: &[SocketAddr]) -> String {
    if backends.is_empty() {
        "-".to_string()
    } else {
        backend_list(backends)
    }
}
