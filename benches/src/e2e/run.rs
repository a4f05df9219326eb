//! The orchestrator of `mesh-bench` (issue 9): builds what the rows need first (the Go
//! program, certificates, bootstraps, the in-process mesh-control serving ADS), then runs
//! each row as a server process and a client process pinned to separate cores, collects
//! the client's `RESULT` lines and hands them to [`super::report`]. A row that cannot run
//! is reported with the reason and the bench goes on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use mesh_control::{ControlPlane, MeshConfig, RunningControlPlane};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::nginx::{self, Nginx};
use super::report::{Machine, Report, RowReport};
use super::workload::{Cell, CellResult, Timing, Workload};

/// The xDS target every mesh and grpc-go row dials.
pub const TARGET: &str = "xds:///bench.default:8080";

/// The rows, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Row {
    /// Raw TCP ping-pong: the floor.
    Tcp,
    /// Bare tonic `Channel` → tonic `Server`, plaintext (the baseline).
    Tonic,
    /// Bare tonic with rustls TLS (the TLS baseline).
    TonicTls,
    /// `MeshChannel` → `MeshServer`, plaintext, configured by mesh-control.
    Mesh,
    /// As `mesh`, with mTLS (SPIFFE certificates from mesh-control's dev CA, STRICT).
    MeshMtls,
    /// mTLS plus routing (header routes before the match), retries armed, retry budget,
    /// circuit breaker, RBAC, A66 metrics; tracing layer installed, sampling nothing.
    MeshAllTraceOff,
    /// As `mesh-all-trace-off`, sampling every span.
    MeshAllTraceOn,
    /// The bare tonic pair with two nginx `grpc_pass` proxies between them.
    Sidecar,
    /// grpc-go's xDS client and xDS server against the same mesh-control.
    GrpcGo,
}

impl Row {
    /// Every row.
    pub const ALL: [Row; 9] = [
        Row::Tcp,
        Row::Tonic,
        Row::TonicTls,
        Row::Mesh,
        Row::MeshMtls,
        Row::MeshAllTraceOff,
        Row::MeshAllTraceOn,
        Row::Sidecar,
        Row::GrpcGo,
    ];

    /// The row's name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Row::Tcp => "tcp",
            Row::Tonic => "tonic",
            Row::TonicTls => "tonic-tls",
            Row::Mesh => "mesh",
            Row::MeshMtls => "mesh-mtls",
            Row::MeshAllTraceOff => "mesh-all-trace-off",
            Row::MeshAllTraceOn => "mesh-all-trace-on",
            Row::Sidecar => "sidecar-nginx",
            Row::GrpcGo => "grpc-go-xds",
        }
    }

    /// What the row runs, for the table's legend.
    pub fn describe(self) -> &'static str {
        match self {
            Row::Tcp => "raw TCP ping-pong, same payloads, one connection per caller (the floor)",
            Row::Tonic => "bare tonic Channel -> tonic Server, plaintext (baseline)",
            Row::TonicTls => "bare tonic with rustls TLS, server-authenticated (TLS baseline)",
            Row::Mesh => "MeshChannel -> MeshServer, plaintext, config from mesh-control over ADS",
            Row::MeshMtls => "MeshChannel -> MeshServer, mTLS STRICT with SPIFFE SVIDs",
            Row::MeshAllTraceOff => {
                "mTLS + 8 header routes before the match, retries armed, retry budget, \
                 max_requests, RBAC, A66 metrics (Prometheus), tracing-opentelemetry sampling off"
            }
            Row::MeshAllTraceOn => "as mesh-all-trace-off, every span sampled (no exporter)",
            Row::Sidecar => {
                "bare tonic pair through two nginx grpc_pass proxies (client side, server side)"
            }
            Row::GrpcGo => "grpc-go 1.64 xDS client -> grpc-go xDS server, same mesh-control",
        }
    }

    /// The row its ratios are against.
    pub fn baseline(self) -> Row {
        match self {
            Row::MeshMtls | Row::MeshAllTraceOff | Row::MeshAllTraceOn => Row::TonicTls,
            _ => Row::Tonic,
        }
    }
}

/// How the bench is run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Rows to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub rows: Vec<Row>,
    /// Workloads (default: all).
    #[arg(long, value_delimiter = ',')]
    pub workloads: Vec<Workload>,
    /// Concurrencies.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    pub concurrency: Vec<usize>,
    /// Warm-up per cell, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub warmup_ms: u64,
    /// Measuring window per cell, milliseconds.
    #[arg(long, default_value_t = 4000)]
    pub duration_ms: u64,
    /// Smoke test: 100 ms warm-up, 300 ms window (numbers meaningless).
    #[arg(long)]
    pub quick: bool,
    /// Where to write the JSON report (default: <workspace>/target/mesh-bench.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The client's CPU.
    #[arg(long, default_value_t = 0)]
    pub client_cpu: usize,
    /// The server's CPU.
    #[arg(long, default_value_t = 1)]
    pub server_cpu: usize,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    pub no_pin: bool,
}

/// `program` under `taskset -c cpu` when `cpu` is given (and taskset exists).
pub fn pinned(cpu: Option<usize>, program: &Path) -> tokio::process::Command {
    match cpu {
        Some(cpu) => {
            let mut cmd = tokio::process::Command::new("taskset");
            cmd.arg("-c").arg(cpu.to_string()).arg(program);
            cmd
        }
        None => tokio::process::Command::new(program),
    }
}

/// A child process speaking the role protocol: stdout lines, stderr into a log file, stdin
/// held open (it exits when stdin closes); killed on drop.
struct Proc {
    name: String,
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    log: PathBuf,
    _stdin: Option<tokio::process::ChildStdin>,
}

impl Proc {
    fn spawn(mut cmd: tokio::process::Command, name: &str, log: PathBuf) -> anyhow::Result<Proc> {
        let file = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(file)
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let stdin = child.stdin.take();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            name: name.to_string(),
            child,
            lines,
            log,
            _stdin: stdin,
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// The rest of the next line starting with `prefix` (others are skipped).
    async fn expect(&mut self, prefix: &str, limit: Duration) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return Ok(rest.trim().to_string());
                    }
                }
                Ok(None) => {
                    let status = self.child.wait().await.ok();
                    bail!(
                        "{} exited ({}) before printing {prefix}: {}",
                        self.name,
                        status.map(|s| s.to_string()).unwrap_or_default(),
                        self.log_tail()
                    );
                }
                Err(_) => bail!(
                    "{} printed no {prefix} within {limit:?}: {}",
                    self.name,
                    self.log_tail()
                ),
            }
        }
    }

    /// Every `RESULT` line until the process ends (bounded by `limit`), then its status.
    async fn results(mut self, limit: Duration) -> anyhow::Result<Vec<CellResult>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    if let Some(json) = line.strip_prefix("RESULT ") {
                        out.push(serde_json::from_str(json).with_context(|| {
                            format!("{} printed a bad RESULT line: {json}", self.name)
                        })?);
                    }
                }
                Ok(None) => break,
                Err(_) => bail!("{} did not finish within {limit:?}", self.name),
            }
        }
        let status = tokio::time::timeout_at(deadline, self.child.wait())
            .await
            .map_err(|_| anyhow!("{} did not exit", self.name))??;
        if !status.success() {
            bail!("{} failed ({status}): {}", self.name, self.log_tail());
        }
        Ok(out)
    }
}

/// Everything the rows share.
struct Bench {
    exe: PathBuf,
    dir: PathBuf,
    cp: RunningControlPlane,
    cells: Vec<Cell>,
    timing: Timing,
    client_cpu: Option<usize>,
    server_cpu: Option<usize>,
    nginx: Option<PathBuf>,
    go: Result<PathBuf, String>,
}

/// Writes the certificates (tonic TLS: a `localhost` server certificate; mesh: SVIDs for
/// the bench service and its client) and the bootstraps into `dir`.
fn write_credentials(dir: &Path, cp: SocketAddr) -> anyhow::Result<()> {
    use mesh_control::ca::{DevCa, IssueOptions};
    let ca = DevCa::generate("cluster.local")?;
    let validity = Duration::from_secs(24 * 3600);
    let mut opts = IssueOptions::svid("cluster.local", "default", "tls", validity);
    opts.uri_sans.clear();
    opts.dns_sans = vec!["localhost".to_string()];
    opts.common_name = Some("localhost".to_string());
    let tls = ca.issue(&opts)?;
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir)?;
    std::fs::write(tls_dir.join("cert.pem"), &tls.cert_chain_pem)?;
    std::fs::write(tls_dir.join("key.pem"), &tls.key_pem)?;
    std::fs::write(tls_dir.join("root.pem"), &tls.root_cert_pem)?;
    ca.issue_svid("default", "bench", validity)?
        .write_istio_layout(&dir.join("certs/server"))?;
    ca.issue_svid("default", "bench-client", validity)?
        .write_istio_layout(&dir.join("certs/client"))?;
    let uri = cp.to_string();
    for (file, node, certs) in [
        ("client.json", "bench-client", Some("certs/client")),
        ("server.json", "bench-server", Some("certs/server")),
        ("go-client.json", "go-bench-client", None),
        ("go-server.json", "go-bench-server", None),
    ] {
        let certs = certs.map(|c| dir.join(c));
        let json = mesh_control::bootstrap_json_with_certs(&uri, node, certs.as_deref());
        std::fs::write(dir.join(file), serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

/// The mesh.yaml of a row: one service `bench.default:8080` on `addr`.
pub fn mesh_yaml(addr: SocketAddr, mtls: bool, everything: bool) -> String {
    let mut y = format!(
        "services:\n  - name: bench.default\n    port: 8080\n    mtls: {}\n    service_account: bench\n    endpoints:\n      - address: {addr}\n        labels: {{ version: v1 }}\n",
        if mtls { "STRICT" } else { "DISABLE" }
    );
    if everything {
        y += "    subsets:\n      - { name: v1, labels: { version: v1 } }\n    routes:\n";
        for i in 0..8 {
            y += &format!(
                "      - match: {{ prefix: /grpc.testing.TestService/, headers: [{{ name: x-tenant, exact: t{i} }}] }}\n        destination: {{ subset: v1 }}\n"
            );
        }
        y += "      - match: { prefix: / }\n        destination: { subset: v1 }\n        timeout: 30s\n        retries: { attempts: 2, on: [unavailable], backoff: 25ms }\n";
        y += "    limits:\n      max_requests: 4096\n      retry_budget: { percent: 20, min_per_second: 10, interval: 10s }\n";
        y += "    authorization:\n      action: allow\n      policies:\n        - name: bench-client\n          principals: [\"spiffe://cluster.local/ns/default/sa/bench-client\"]\n";
    }
    y
}

impl Bench {
    fn log(&self, row: Row, role: &str) -> PathBuf {
        self.dir.join(format!("{}-{role}.log", row.name()))
    }

    fn cells_arg(&self) -> String {
        self.cells
            .iter()
            .map(Cell::spec)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Bound on a client run: every cell, plus slack for connecting.
    fn client_limit(&self) -> Duration {
        (self.timing.warmup + self.timing.duration + Duration::from_secs(35))
            * self.cells.len() as u32
            + Duration::from_secs(30)
    }

    fn role(
        &self,
        cpu: Option<usize>,
        role: &str,
        stack: &str,
        extra: &[String],
    ) -> tokio::process::Command {
        let mut cmd = pinned(cpu, &self.exe);
        cmd.arg(role).arg("--stack").arg(stack).args(extra);
        cmd
    }

    async fn server(
        &self,
        row: Row,
        stack: &str,
        extra: &[String],
    ) -> anyhow::Result<(Proc, SocketAddr)> {
        let cmd = self.role(self.server_cpu, "server", stack, extra);
        let mut proc = Proc::spawn(
            cmd,
            &format!("{} server", row.name()),
            self.log(row, "server"),
        )?;
        let addr = proc.expect("LISTEN ", Duration::from_secs(30)).await?;
        let addr = addr
            .parse()
            .with_context(|| format!("server printed a bad address {addr:?}"))?;
        Ok((proc, addr))
    }

    async fn client(
        &self,
        row: Row,
        stack: &str,
        extra: &[String],
    ) -> anyhow::Result<Vec<CellResult>> {
        let mut args = extra.to_vec();
        args.extend([
            "--cells".to_string(),
            self.cells_arg(),
            "--warmup-ms".to_string(),
            self.timing.warmup.as_millis().to_string(),
            "--duration-ms".to_string(),
            self.timing.duration.as_millis().to_string(),
        ]);
        let cmd = self.role(self.client_cpu, "client", stack, &args);
        Proc::spawn(
            cmd,
            &format!("{} client", row.name()),
            self.log(row, "client"),
        )?
        .results(self.client_limit())
        .await
    }

    fn configure(&self, yaml: &str) -> anyhow::Result<()> {
        let config = MeshConfig::from_yaml(yaml)?;
        self.cp.control().set_config(config)?;
        Ok(())
    }

    async fn row(&self, row: Row) -> anyhow::Result<Vec<CellResult>> {
        let tls = vec![
            "--tls-dir".to_string(),
            self.dir.join("tls").display().to_string(),
        ];
        match row {
            Row::Tcp | Row::Tonic | Row::TonicTls => {
                let stack = match row {
                    Row::Tcp => "tcp",
                    Row::Tonic => "tonic",
                    _ => "tonic-tls",
                };
                let (mut server, addr) = self.server(row, stack, &tls).await?;
                server.expect("READY", Duration::from_secs(30)).await?;
                let mut extra = tls.clone();
                extra.extend(["--addr".to_string(), addr.to_string()]);
                self.client(row, stack, &extra).await
            }
            Row::Mesh | Row::MeshMtls | Row::MeshAllTraceOff | Row::MeshAllTraceOn => {
                let mtls = row != Row::Mesh;
                let everything = matches!(row, Row::MeshAllTraceOff | Row::MeshAllTraceOn);
                let mut extra = Vec::new();
                if everything {
                    extra.push("--metrics".to_string());
                    extra.push("--tracing".to_string());
                    extra.push(
                        if row == Row::MeshAllTraceOn {
                            "sampled-on"
                        } else {
                            "sampled-off"
                        }
                        .to_string(),
                    );
                }
                let boot = |f: &str| {
                    vec![
                        "--bootstrap".to_string(),
                        self.dir.join(f).display().to_string(),
                    ]
                };
                let mut server_args = boot("server.json");
                server_args.extend(extra.clone());
                let (mut server, addr) = self.server(row, "mesh", &server_args).await?;
                self.configure(&mesh_yaml(addr, mtls, everything))?;
                server.expect("READY", Duration::from_secs(30)).await?;
                let mut client_args = boot("client.json");
                client_args.extend(extra);
                client_args.extend(["--target".to_string(), TARGET.to_string()]);
                self.client(row, "mesh", &client_args).await
            }
            Row::Sidecar => {
                let nginx = self
                    .nginx
                    .as_deref()
                    .ok_or_else(|| anyhow!(nginx::INSTALL_HINT))?;
                let (mut server, addr) = self.server(row, "tonic", &[]).await?;
                server.expect("READY", Duration::from_secs(30)).await?;
                let server_side = Nginx::start(
                    nginx,
                    &self.dir.join("nginx-server"),
                    free_port()?,
                    addr,
                    self.server_cpu,
                )
                .await?;
                let client_side = Nginx::start(
                    nginx,
                    &self.dir.join("nginx-client"),
                    free_port()?,
                    server_side.listen,
                    self.client_cpu,
                )
                .await?;
                let results = self
                    .client(
                        row,
                        "tonic",
                        &["--addr".to_string(), client_side.listen.to_string()],
                    )
                    .await;
                client_side.stop().await;
                server_side.stop().await;
                results
            }
            Row::GrpcGo => {
                let go = self.go.as_ref().map_err(|e| anyhow!("{e}"))?;
                let mut cmd = pinned(self.server_cpu, go);
                cmd.arg("-mode")
                    .arg("server")
                    .env("GRPC_XDS_BOOTSTRAP", self.dir.join("go-server.json"));
                let mut server = Proc::spawn(cmd, "grpc-go server", self.log(row, "server"))?;
                let addr: SocketAddr = server
                    .expect("LISTEN ", Duration::from_secs(30))
                    .await?
                    .parse()?;
                self.configure(&mesh_yaml(addr, false, false))?;
                server.expect("READY", Duration::from_secs(30)).await?;
                let mut cmd = pinned(self.client_cpu, go);
                cmd.arg("-mode")
                    .arg("client")
                    .arg("-target")
                    .arg(TARGET)
                    .arg("-cells")
                    .arg(self.cells_arg())
                    .arg("-warmup_ms")
                    .arg(self.timing.warmup.as_millis().to_string())
                    .arg("-duration_ms")
                    .arg(self.timing.duration.as_millis().to_string())
                    .env("GRPC_XDS_BOOTSTRAP", self.dir.join("go-client.json"));
                Proc::spawn(cmd, "grpc-go client", self.log(row, "client"))?
                    .results(self.client_limit())
                    .await
            }
        }
    }
}

/// A loopback port free right now (bound, then released).
fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

/// `<workspace>/target`, or `$CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    mesh_tests::interop::gobuild::target_dir()
}

/// Builds `benches/go-xds-bench` into `<target>/mesh-bench/go-xds-bench` (skipped when up
/// to date).
pub async fn build_go() -> Result<PathBuf, String> {
    let module = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("go-xds-bench");
    let out = target_dir().join("mesh-bench").join("go-xds-bench");
    tokio::task::spawn_blocking(move || mesh_tests::interop::gobuild::go_build(&module, ".", &out))
        .await
        .map_err(|e| e.to_string())?
}

/// Runs the bench: every row, every cell, the table on stdout, the JSON report on disk.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let rows = if args.rows.is_empty() {
        Row::ALL.to_vec()
    } else {
        args.rows.clone()
    };
    let workloads = if args.workloads.is_empty() {
        Workload::ALL.to_vec()
    } else {
        args.workloads.clone()
    };
    let mut cells = Vec::new();
    for w in &workloads {
        for c in &args.concurrency {
            anyhow::ensure!(*c > 0, "concurrency must be at least 1");
            cells.push(Cell {
                workload: *w,
                concurrency: *c,
            });
        }
    }
    let timing = if args.quick {
        Timing {
            warmup: Duration::from_millis(100),
            duration: Duration::from_millis(300),
        }
    } else {
        Timing {
            warmup: Duration::from_millis(args.warmup_ms),
            duration: Duration::from_millis(args.duration_ms),
        }
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = std::process::Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let pin = !args.no_pin && taskset && cpus > args.client_cpu.max(args.server_cpu);
    if !args.no_pin && !pin {
        eprintln!(
            "note: not pinning (taskset {}, {cpus} CPUs): client and server share cores",
            if taskset {
                "found"
            } else {
                "missing: apt-get install util-linux"
            }
        );
    }
    let dir = std::env::temp_dir().join(format!("mesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let go = if rows.contains(&Row::GrpcGo) {
        eprintln!("building benches/go-xds-bench (go build; first time downloads grpc-go) ...");
        build_go().await
    } else {
        Err("not selected".to_string())
    };
    let cp = ControlPlane::empty()
        .listen(([127, 0, 0, 1], 0).into())
        .await?;
    write_credentials(&dir, cp.local_addr())?;
    let bench = Bench {
        exe: std::env::current_exe()?,
        dir: dir.clone(),
        cp,
        cells,
        timing,
        client_cpu: pin.then_some(args.client_cpu),
        server_cpu: pin.then_some(args.server_cpu),
        nginx: nginx::find(),
        go,
    };
    let mut machine = Machine::now(cpus, pin.then_some((args.client_cpu, args.server_cpu)));
    let mut reports = Vec::new();
    for row in rows {
        eprintln!("row {} ...", row.name());
        let started = std::time::Instant::now();
        let (cells, skipped) = match bench.row(row).await {
            Ok(cells) => (cells, None),
            Err(e) => {
                let why = format!("{e:#}");
                eprintln!("row {} skipped: {why}", row.name());
                (Vec::new(), Some(why))
            }
        };
        eprintln!("row {} done in {:.0?}", row.name(), started.elapsed());
        reports.push(RowReport {
            row: row.name().to_string(),
            description: row.describe().to_string(),
            baseline: row.baseline().name().to_string(),
            skipped,
            cells,
        });
    }
    bench.cp.shutdown().await;
    machine.finish();
    let report = Report {
        machine,
        warmup_ms: timing.warmup.as_millis() as u64,
        duration_ms: timing.duration.as_millis() as u64,
        rows: reports,
    };
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| target_dir().join("mesh-bench.json"));
    if let Some(parent) = json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    println!("{}", report.table());
    println!("JSON: {}", json.display());
    let _ = std::fs::remove_dir_all(&dir);
    Ok(report)
}
