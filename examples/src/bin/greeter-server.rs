//! A greeter server: `greeter-server --port 50051 --id backend-1`.

use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 50051)]
    port: u16,
    /// Backend id echoed in replies.
    #[arg(long, default_value = "backend")]
    id: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let args = Args::parse();
    let backend =
        mesh_examples::GreeterBackend::start(([127, 0, 0, 1], args.port).into(), &args.id).await?;
    println!("greeter {} listening on {}", backend.id, backend.addr);
    tokio::signal::ctrl_c().await?;
    backend.stop().await;
    Ok(())
}
