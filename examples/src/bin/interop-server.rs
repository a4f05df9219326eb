//! Our xDS interop test server, flag-compatible with grpc-go's `interop/xds/server`.
//!
//! `interop-server --port 8080 --maintenance_port 8081 --server_id s1`
//!
//! - `--port`: an xDS-managed [`MeshServer`] (bootstrap from `GRPC_XDS_BOOTSTRAP` /
//!   `GRPC_XDS_BOOTSTRAP_CONFIG`, which must carry `server_listener_resource_name_template`)
//!   serving `grpc.testing.TestService` with the `rpc-behavior` metadata.
//! - `--maintenance_port`: plain tonic serving `grpc.health.v1.Health` (SERVING while the
//!   xDS port serves and the driver's toggle is on) and `XdsUpdateHealthService`; with
//!   `--secure_mode=false` also TestService.
//!
//! `--secure_mode=true` is grpc-go's layout with xDS server credentials and a plaintext
//! fallback (gRFC A29): the test service only on the xDS-managed `--port`, whose filter
//! chain's `DownstreamTlsContext` (certificates from the bootstrap's
//! `certificate_providers`) decides TLS, mTLS or plaintext; the maintenance port serves no
//! TestService, so nothing reaches it around the Listener's security. `--port` and
//! `--maintenance_port` must differ in both modes.
//!
//! Differences from grpc-go: with `--secure_mode=false` grpc-go serves everything on
//! `--port` with a plain, not xDS-managed server and no TLS; we keep `--port` xDS-managed
//! (so the Listener's `DownstreamTlsContext` is honoured in both modes, there being no
//! "insecure credentials" switch on [`MeshServer`]) and add TestService to the maintenance
//! port. `--bind_host` is ours: the address to bind (the Listener name is
//! `…/inbound/<bind_host>:<port>`); without it `--address_type` picks the wildcard (`ipv4`:
//! 0.0.0.0, `ipv6` / `ipv4_ipv6`: `[::]`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, bail};
use clap::{ArgAction, Parser};
use mesh_examples::interop::health::{HealthToggle, drive_health};
use mesh_examples::interop::shutdown;
use mesh_examples::interop::test_service::InteropTestService;
use mesh_server::{MeshServer, ServingStatus};
use tokio::sync::watch;
use tonic::server::NamedService;
use xds_proto::grpc_testing::test_service_server::TestServiceServer;
use xds_proto::grpc_testing::xds_update_health_service_server::XdsUpdateHealthServiceServer;

#[derive(Parser, Debug)]
#[command(about = "xDS interop test server (grpc-go compatible flags)")]
struct Args {
    /// Port of the xDS-managed TestService.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of the maintenance services (health, XdsUpdateHealthService, TestService).
    #[arg(long = "maintenance_port", default_value_t = 8081)]
    maintenance_port: u16,
    /// Server id reported in `SimpleResponse.server_id`.
    #[arg(long = "server_id", default_value = "rust_server")]
    server_id: String,
    /// grpc-go's secure layout: TestService only on the xDS-managed `--port` (security
    /// from the Listener's `DownstreamTlsContext`), maintenance services on their own.
    #[arg(long = "secure_mode", action = ArgAction::Set, num_args = 0..=1,
          default_value_t = false, default_missing_value = "true")]
    secure_mode: bool,
    /// The hostname to report instead of the machine's.
    #[arg(long = "host_name_override")]
    host_name_override: Option<String>,
    /// `ipv4` (default), `ipv6` or `ipv4_ipv6`: which wildcard address to bind.
    #[arg(long = "address_type")]
    address_type: Option<String>,
    /// Bind this address instead of a wildcard (e.g. 127.0.0.1).
    #[arg(long = "bind_host")]
    bind_host: Option<IpAddr>,
}

fn bind_ip(args: &Args) -> anyhow::Result<IpAddr> {
    if let Some(ip) = args.bind_host {
        return Ok(ip);
    }
    Ok(match args.address_type.as_deref() {
        None | Some("") | Some("ipv4") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some("ipv6") | Some("ipv4_ipv6") => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        Some(other) => bail!("--address_type {other:?}: want ipv4, ipv6 or ipv4_ipv6"),
    })
}

fn hostname(args: &Args) -> anyhow::Result<String> {
    if let Some(h) = args.host_name_override.as_ref().filter(|h| !h.is_empty()) {
        return Ok(h.clone());
    }
    if let Ok(h) = std::env::var("HOSTNAME").map(|h| h.trim().to_string())
        && !h.is_empty()
    {
        return Ok(h);
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .context("cannot read the hostname; pass --host_name_override")?;
    Ok(h.trim().to_string())
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
    if args.port != 0 && args.port == args.maintenance_port {
        bail!("--port and --maintenance_port must differ (the test port is xDS-managed)");
    }
    let ip = bind_ip(&args)?;
    let service = InteropTestService {
        hostname: hostname(&args)?,
        server_id: args.server_id.clone(),
    };
    let stop = shutdown::on_signal();

    let test_addr = SocketAddr::new(ip, args.port);
    let test_listener = tokio::net::TcpListener::bind(test_addr)
        .await
        .with_context(|| format!("binding --port {test_addr}"))?;
    let maint_addr = SocketAddr::new(ip, args.maintenance_port);
    let maint_listener = tokio::net::TcpListener::bind(maint_addr)
        .await
        .with_context(|| format!("binding --maintenance_port {maint_addr}"))?;

    let (serving_tx, serving_rx) = watch::channel(false);
    let server = MeshServer::builder()
        .add_service(TestServiceServer::new(service.clone()))
        .on_serving_status(move |status| {
            match status {
                ServingStatus::Serving => tracing::info!("xDS serving status: SERVING"),
                ServingStatus::NotServing { reason } => {
                    tracing::info!("xDS serving status: NOT_SERVING ({reason})")
                }
            }
            serving_tx.send_replace(status.is_serving());
        });

    let toggle = HealthToggle::new();
    let (reporter, health) = tonic_health::server::health_reporter();
    let names = vec![
        String::new(),
        <TestServiceServer<InteropTestService> as NamedService>::NAME.to_string(),
    ];
    let health_task = tokio::spawn(drive_health(
        reporter,
        names,
        serving_rx,
        toggle.subscribe(),
    ));

    println!(
        "interop-server {} ({}) test port {test_addr}, maintenance port {maint_addr}, \
         secure_mode {}",
        service.server_id, service.hostname, args.secure_mode
    );
    let maint_stop = stop.clone();
    let maintenance_test_service = (!args.secure_mode).then(|| TestServiceServer::new(service));
    let maintenance = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(XdsUpdateHealthServiceServer::new(toggle))
        .add_optional_service(maintenance_test_service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(maint_listener),
            shutdown::wait(maint_stop),
        );
    let test = server.serve_with_incoming_shutdown(test_listener, shutdown::wait(stop));
    let (test, maintenance) = tokio::join!(test, maintenance);
    health_task.abort();
    test.context("xDS test server")?;
    maintenance.context("maintenance server")?;
    Ok(())
}
