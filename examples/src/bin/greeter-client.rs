//! A greeter client over MeshChannel: reads the bootstrap from `GRPC_XDS_BOOTSTRAP`.
//!
//! `greeter-client --target xds:///greeter.default:8080 --count 10`

use clap::Parser;
use mesh_client::MeshChannel;
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;

#[derive(Parser)]
struct Args {
    /// The xDS target.
    #[arg(long, default_value = "xds:///greeter.default:8080")]
    target: String,
    /// Number of RPCs.
    #[arg(long, default_value_t = 10)]
    count: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt::init();
    let args = Args::parse();
    let channel = MeshChannel::builder(&args.target).connect().await?;
    let mut client = GreeterClient::new(channel);
    for i in 0..args.count {
        let reply = client
            .say_hello(HelloRequest {
                name: format!("call-{i}"),
            })
            .await?;
        println!("{}", reply.into_inner().message);
    }
    Ok(())
}
