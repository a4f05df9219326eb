//! An xDS-managed greeter server: `greeter-server --port 50051 --id backend-1`.
//!
//! Reads the bootstrap from `GRPC_XDS_BOOTSTRAP` (or `_CONFIG`) and serves once its inbound
//! Listener (`server_listener_resource_name_template`, e.g.
//! `xds.istio.io/grpc/lds/inbound/127.0.0.1:50051`) arrives; `--plain` serves without xDS.

use clap::Parser;
use mesh_client::bootstrap::Bootstrap;

#[derive(Parser)]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// Backend id echoed in replies.
    #[arg(long, default_value = "backend")]
    id: String,
    /// Serve plain tonic, without xDS.
    #[arg(long)]
    plain: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let args = Args::parse();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let backend = if args.plain {
        mesh_examples::GreeterBackend::start(addr, &args.id).await?
    } else {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        mesh_examples::GreeterBackend::start_mesh(listener, &args.id, Bootstrap::from_env()?)?
    };
    println!("greeter {} listening on {}", backend.id, backend.addr);
    tokio::signal::ctrl_c().await?;
    backend.stop().await;
    Ok(())
}
