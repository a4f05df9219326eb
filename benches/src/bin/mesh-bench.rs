//! `mesh-bench`: the end-to-end load bench of issue 9 (see `mesh_benches::e2e`). With no
//! subcommand it runs every row and prints the table:
//!
//! `cargo run -p mesh-benches --release --bin mesh-bench` (`-- --quick` for a smoke run,
//! `-- --rows tonic,mesh`, `-- memory` for the 1 000-cluster RSS measurement).
//! The `server`, `client` and `memory-client` subcommands are the roles the bench
//! re-executes itself as.

use clap::{Parser, Subcommand};
use mesh_benches::e2e::{memory, roles, run};

#[derive(Parser)]
#[command(about = "End-to-end gRPC bench: floor, bare tonic, mesh, sidecar, grpc-go xDS")]
struct Cli {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    bench: run::BenchArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// Client RSS with many clusters × endpoints configured over xDS.
    Memory(memory::MemoryArgs),
    /// (role) A server of one stack.
    #[command(hide = true)]
    Server(roles::StackArgs),
    /// (role) A client running cells against a server.
    #[command(hide = true)]
    Client(roles::ClientArgs),
    /// (role) The memory mode's client.
    #[command(hide = true)]
    MemoryClient(memory::MemoryClientArgs),
}

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.mode {
        None => {
            let report = runtime(2)?.block_on(run::run(cli.bench))?;
            let ran = report.rows.iter().filter(|r| r.skipped.is_none()).count();
            anyhow::ensure!(ran > 0, "no row ran");
            Ok(())
        }
        Some(Mode::Memory(args)) => runtime(2)?.block_on(memory::run(args)),
        // The roles watch stdin from a blocking thread: do not wait for it at exit.
        Some(Mode::Server(args)) => {
            let rt = runtime(args.threads)?;
            let result = rt.block_on(roles::serve(args));
            rt.shutdown_background();
            result
        }
        Some(Mode::Client(args)) => {
            let rt = runtime(args.stack.threads)?;
            let result = rt.block_on(roles::client(args));
            rt.shutdown_background();
            result
        }
        Some(Mode::MemoryClient(args)) => runtime(1)?.block_on(memory::client(args)),
    }
}
