//! Our xDS interop test client, flag-compatible with grpc-go's `interop/xds/client`.
//!
//! `interop-client --server xds:///server.default:8080 --stats_port 8081 --qps 100`
//!
//! Opens `--num_channels` MeshChannels to `--server` (bootstrap from `GRPC_XDS_BOOTSTRAP`
//! / `GRPC_XDS_BOOTSTRAP_CONFIG`) and sends, round robin over them, `--qps` RPCs per second
//! per channel of each `--rpc` type with its `--metadata`, each bounded by `--rpc_timeout`.
//! On `--stats_port` (plain tonic) it serves `LoadBalancerStatsService`,
//! `XdsUpdateClientConfigureService`, `grpc.health.v1.Health` and CSDS
//! (`envoy.service.status.v3.ClientStatusDiscoveryService`, gRFC A40, from
//! `mesh_client::admin`), as grpc-go's client serves its admin services there. With
//! `--fail_on_failed_rpc` it exits non-zero on the first failed RPC after one succeeded.
//! Ends on SIGTERM / Ctrl-C.
//!
//! `--secure_mode=true` is grpc-go's xDS client credentials with a plaintext fallback
//! (gRFC A29): a cluster whose CDS `transport_socket` carries an `UpstreamTlsContext` is
//! reached over TLS with the bootstrap's `certificate_providers` and its SAN matchers (and
//! SPIFFE verification, A87); one without is plaintext. MeshChannel always does exactly
//! that, so the flag changes nothing here. Difference from grpc-go: with
//! `--secure_mode=false` grpc-go uses insecure credentials and ignores the CDS security
//! config, while MeshChannel has no such switch and still honours it.
//!
//! Not supported: grpc-go's CSM observability and payload-size flags, channelz and
//! reflection.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgAction, Parser};
use mesh_client::MeshChannel;
use mesh_examples::interop::capture::CaptureHeaders;
use mesh_examples::interop::configure::ConfigureService;
use mesh_examples::interop::rpc_config;
use mesh_examples::interop::sender::{self, SendOptions};
use mesh_examples::interop::shutdown;
use mesh_examples::interop::stats::{StatsHub, StatsService};
use tokio::sync::watch;
use xds_proto::grpc_testing::load_balancer_stats_service_server::LoadBalancerStatsServiceServer;
use xds_proto::grpc_testing::test_service_client::TestServiceClient;
use xds_proto::grpc_testing::xds_update_client_configure_service_server::XdsUpdateClientConfigureServiceServer;

#[derive(Parser, Debug)]
#[command(about = "xDS interop test client (grpc-go compatible flags)")]
struct Args {
    /// The target, `xds:///name[:port]`.
    #[arg(long, default_value = "xds:///localhost:8080")]
    server: String,
    /// Port of the stats, configure and health services.
    #[arg(long = "stats_port", default_value_t = 8081)]
    stats_port: u16,
    /// RPCs per second per channel, for each RPC type.
    #[arg(long, default_value_t = 1)]
    qps: u32,
    /// Number of channels to the target.
    #[arg(long = "num_channels", default_value_t = 1)]
    num_channels: usize,
    /// RPC types to send, comma-separated: `UnaryCall`, `EmptyCall`.
    #[arg(long, default_value = "UnaryCall")]
    rpc: String,
    /// Metadata per RPC type: `EmptyCall:key1:value1,UnaryCall:key2:value2`.
    #[arg(long, default_value = "")]
    metadata: String,
    /// Per-RPC timeout (`20s`, `500ms`).
    #[arg(long = "rpc_timeout", default_value = "20s")]
    rpc_timeout: String,
    /// Exit non-zero on the first failed RPC after one has succeeded.
    #[arg(long = "fail_on_failed_rpc", action = ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true")]
    fail_on_failed_rpc: bool,
    /// Print every RPC's outcome on stdout.
    #[arg(long = "print_response", action = ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true")]
    print_response: bool,
    /// Take security from xDS (CDS `UpstreamTlsContext`, plaintext without one); MeshChannel
    /// always does, so `false` behaves the same (see the module docs).
    #[arg(long = "secure_mode", action = ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true")]
    secure_mode: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.num_channels == 0 {
        bail!("--num_channels must be at least 1");
    }
    if args.qps == 0 {
        bail!("--qps must be at least 1");
    }
    let rpc_timeout = mesh_control::duration::parse_duration(&args.rpc_timeout)
        .map_err(anyhow::Error::msg)
        .context("--rpc_timeout")?;
    let configs = rpc_config::from_flags(&args.rpc, &args.metadata).map_err(anyhow::Error::msg)?;
    let (configs_tx, configs_rx) = watch::channel(Arc::new(configs));
    let hub = Arc::new(StatsHub::new());
    let stop = shutdown::on_signal();

    let stats_addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, args.stats_port));
    let stats_listener = tokio::net::TcpListener::bind(stats_addr)
        .await
        .with_context(|| format!("binding --stats_port {stats_addr}"))?;
    let (_reporter, health) = tonic_health::server::health_reporter();
    let stats_server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .add_service(mesh_client::admin::Csds::all_clients().into_server())
            .add_service(LoadBalancerStatsServiceServer::new(StatsService::new(
                hub.clone(),
            )))
            .add_service(XdsUpdateClientConfigureServiceServer::new(
                ConfigureService::new(configs_tx),
            ))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(stats_listener),
                shutdown::wait(stop.clone()),
            ),
    );

    let mut clients = Vec::with_capacity(args.num_channels);
    for _ in 0..args.num_channels {
        // Lazy, like grpc-go's Dial: early RPCs wait for the first configuration (at most
        // the RPC timeout) and fail if it does not come.
        let channel = MeshChannel::builder(&args.server)
            .with_connect_timeout(rpc_timeout.max(Duration::from_secs(1)))
            .connect_lazy()
            .with_context(|| format!("channel to {}", args.server))?;
        clients.push(TestServiceClient::new(CaptureHeaders::new(channel)));
    }
    println!(
        "interop-client: {} channel(s) to {}, stats on {stats_addr}, secure_mode {}",
        args.num_channels, args.server, args.secure_mode
    );
    let options = SendOptions {
        qps: args.qps,
        rpc_timeout,
        fail_on_failed_rpc: args.fail_on_failed_rpc,
        print_response: args.print_response,
    };
    let result = sender::run(clients, configs_rx, hub, options, stop.clone()).await;
    stats_server.abort();
    result.map_err(anyhow::Error::msg)
}
