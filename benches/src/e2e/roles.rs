//! The two child-process roles of `mesh-bench` (the bench re-executes itself, pinned with
//! `taskset`): a server of one stack, and a client that drives every cell of a row against
//! it and prints one `RESULT {json}` line per cell. Their protocol with the orchestrator is
//! stdout lines: `LISTEN <addr>` once bound, `READY` once serving (for a MeshServer: once its
//! inbound Listener arrived, gRFC A36). Both exit when their stdin closes, so nothing
//! outlives the orchestrator.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use mesh_client::MeshChannel;
use mesh_client::bootstrap::Bootstrap;
use mesh_client::telemetry::Telemetry;
use mesh_client::telemetry::prometheus::PrometheusMetrics;
use mesh_server::MeshServer;
use opentelemetry::trace::TracerProvider as _;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tracing_subscriber::layer::{Layer as _, SubscriberExt};
use xds_proto::grpc_testing::test_service_client::TestServiceClient;
use xds_proto::grpc_testing::test_service_server::TestServiceServer;

use super::service::{BenchService, GrpcCaller};
use super::tcp::{self, TcpCaller};
use super::workload::{Cell, Timing, drive};

/// Which stack a role runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stack {
    /// Raw TCP ping-pong.
    Tcp,
    /// A bare tonic `Server` / `Channel`, plaintext.
    Tonic,
    /// A bare tonic `Server` / `Channel` with rustls TLS (server-authenticated).
    TonicTls,
    /// `MeshServer` / `MeshChannel` configured over xDS by the bootstrap's control plane.
    Mesh,
}

/// Tracing for the mesh stacks: none (no subscriber: spans are disabled callsites), or
/// tracing-opentelemetry into an SDK tracer that samples nothing or everything (spans are
/// built, then dropped: no exporter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tracing {
    /// No subscriber.
    None,
    /// OpenTelemetry layer, `Sampler::AlwaysOff`.
    SampledOff,
    /// OpenTelemetry layer, `Sampler::AlwaysOn`.
    SampledOn,
}

/// What both roles are told about the stack.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// The stack.
    #[arg(long, value_enum)]
    pub stack: Stack,
    /// Directory with `cert.pem`, `key.pem` and `root.pem` (tonic-tls).
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// The gRPC xDS bootstrap file (mesh).
    #[arg(long)]
    pub bootstrap: Option<PathBuf>,
    /// gRFC A66 metrics into a Prometheus registry (mesh); else OpenTelemetry's global
    /// MeterProvider, a no-op here.
    #[arg(long)]
    pub metrics: bool,
    /// Tracing (mesh).
    #[arg(long, value_enum, default_value = "none")]
    pub tracing: Tracing,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Keeps the telemetry pipelines of a role alive.
struct TelemetryGuard {
    telemetry: Option<Telemetry>,
    _metrics: Option<PrometheusMetrics>,
    _tracer: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

fn telemetry(args: &StackArgs) -> anyhow::Result<TelemetryGuard> {
    let tracer = match args.tracing {
        Tracing::None => None,
        Tracing::SampledOff | Tracing::SampledOn => {
            let sampler = if args.tracing == Tracing::SampledOn {
                opentelemetry_sdk::trace::Sampler::AlwaysOn
            } else {
                opentelemetry_sdk::trace::Sampler::AlwaysOff
            };
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_sampler(sampler)
                .build();
            let ours = tracing_subscriber::filter::filter_fn(|m| m.target().starts_with("mesh_"));
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(
                    tracing_opentelemetry::layer()
                        .with_tracer(provider.tracer("mesh-bench"))
                        .with_filter(ours),
                ),
            )?;
            Some(provider)
        }
    };
    if args.metrics {
        let metrics = PrometheusMetrics::new()?;
        Ok(TelemetryGuard {
            telemetry: Some(Telemetry::new(metrics.meter_provider())),
            _metrics: Some(metrics),
            _tracer: tracer,
        })
    } else {
        Ok(TelemetryGuard {
            telemetry: None,
            _metrics: None,
            _tracer: tracer,
        })
    }
}

fn read(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

fn bootstrap(args: &StackArgs) -> anyhow::Result<Bootstrap> {
    let path = args
        .bootstrap
        .as_ref()
        .context("the mesh stack needs --bootstrap")?;
    Bootstrap::from_file(path).with_context(|| format!("bootstrap {}", path.display()))
}

/// Exits the process once stdin reaches its end (the orchestrator went away or is done).
fn exit_with_stdin() {
    tokio::spawn(async {
        use tokio::io::AsyncReadExt;
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while let Ok(n) = stdin.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

/// The server role: binds 127.0.0.1:0, prints `LISTEN`, serves, prints `READY`.
pub async fn serve(args: StackArgs) -> anyhow::Result<()> {
    exit_with_stdin();
    let guard = telemetry(&args)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("LISTEN {addr}");
    match args.stack {
        Stack::Tcp => {
            println!("READY");
            tcp::serve(listener).await?;
        }
        Stack::Tonic | Stack::TonicTls => {
            let mut server = tonic::transport::Server::builder();
            if args.stack == Stack::TonicTls {
                let dir = args
                    .tls_dir
                    .as_deref()
                    .context("tonic-tls needs --tls-dir")?;
                server = server.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(
                    read(dir, "cert.pem")?,
                    read(dir, "key.pem")?,
                )))?;
            }
            println!("READY");
            // TCP_NODELAY as tonic's own `serve(addr)` sets it: without it Nagle holds the
            // streamed messages back for the client's delayed ACK (~40 ms a call).
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |s| s.and_then(|s| s.set_nodelay(true).map(|()| s)),
            );
            server
                .add_service(TestServiceServer::new(BenchService))
                .serve_with_incoming(incoming)
                .await?;
        }
        Stack::Mesh => {
            let ready = std::sync::atomic::AtomicBool::new(false);
            let mut builder = MeshServer::builder()
                .with_bootstrap(bootstrap(&args)?)
                .on_serving_status(move |s| {
                    if s.is_serving() && !ready.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        println!("READY");
                    }
                })
                .add_service(TestServiceServer::new(BenchService));
            if let Some(t) = guard.telemetry.clone() {
                builder = builder.with_telemetry(t);
            }
            builder
                .serve_with_incoming_shutdown(listener, std::future::pending())
                .await?;
        }
    }
    drop(guard);
    Ok(())
}

/// What the client role is told besides the stack.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// The stack.
    #[command(flatten)]
    pub stack: StackArgs,
    /// The server (tcp, tonic, tonic-tls).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
    /// The xDS target (mesh).
    #[arg(long, default_value = "xds:///bench.default:8080")]
    pub target: String,
    /// Cells to run, in order (`unary-100B:1,stream-10x100B:64`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub cells: Vec<Cell>,
    /// Warm-up per cell, milliseconds.
    #[arg(long)]
    pub warmup_ms: u64,
    /// Measuring window per cell, milliseconds.
    #[arg(long)]
    pub duration_ms: u64,
}

/// The client role: connects once, runs each cell, prints `RESULT {json}` per cell.
pub async fn client(args: ClientArgs) -> anyhow::Result<()> {
    exit_with_stdin();
    let guard = telemetry(&args.stack)?;
    let timing = Timing {
        warmup: Duration::from_millis(args.warmup_ms),
        duration: Duration::from_millis(args.duration_ms),
    };
    let addr = || args.addr.context("this stack needs --addr");
    match args.stack.stack {
        Stack::Tcp => {
            let addr = addr()?;
            for cell in &args.cells {
                let mut callers = Vec::new();
                for _ in 0..cell.concurrency {
                    callers.push(Some(TcpCaller::connect(addr, cell.workload).await?));
                }
                let result = drive(*cell, timing, |i| {
                    callers
                        .get_mut(i)
                        .and_then(Option::take)
                        .ok_or_else(|| "no connection".to_string())
                })
                .await;
                print_result(&result)?;
            }
        }
        Stack::Tonic | Stack::TonicTls => {
            let addr = addr()?;
            let channel = if args.stack.stack == Stack::TonicTls {
                let dir = args
                    .stack
                    .tls_dir
                    .as_deref()
                    .context("tonic-tls needs --tls-dir")?;
                Endpoint::from_shared(format!("https://{addr}"))?
                    .tls_config(
                        ClientTlsConfig::new()
                            .ca_certificate(Certificate::from_pem(read(dir, "root.pem")?))
                            .domain_name("localhost"),
                    )?
                    .connect()
                    .await?
            } else {
                Endpoint::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?
            };
            for cell in &args.cells {
                let result = drive(*cell, timing, |_| {
                    GrpcCaller::new(TestServiceClient::new(channel.clone()), cell.workload)
                })
                .await;
                print_result(&result)?;
            }
        }
        Stack::Mesh => {
            let mut builder = MeshChannel::builder(args.target.clone())
                .with_bootstrap(bootstrap(&args.stack)?)
                .with_connect_timeout(Duration::from_secs(20));
            if let Some(t) = guard.telemetry.clone() {
                builder = builder.with_telemetry(t);
            }
            let channel = builder.connect().await?;
            for cell in &args.cells {
                let result = drive(*cell, timing, |_| {
                    GrpcCaller::new(TestServiceClient::new(channel.clone()), cell.workload)
                })
                .await;
                print_result(&result)?;
            }
        }
    }
    drop(guard);
    Ok(())
}

fn print_result(result: &super::workload::CellResult) -> anyhow::Result<()> {
    println!("RESULT {}", serde_json::to_string(result)?);
    Ok(())
}
