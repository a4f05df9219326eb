//! `mesh-control`: the development control plane binary.
//!
//! - `serve --config mesh.yaml [--listen 127.0.0.1:18000]` (or `--raw FILE|DIR`): serves ADS
//!   and hot-reloads the file when it changes;
//! - `bootstrap --node ID [--server ADDR] [--out FILE]`: writes a gRPC bootstrap;
//! - `validate mesh.yaml`: checks a file and prints what it would serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mesh_control::raw::load_raw;
use mesh_control::reload::{self, Source};
use mesh_control::{ControlPlane, MeshConfig, bootstrap_json, describe, translate};
use tracing::{error, info};

/// A small development xDS control plane for proxyless gRPC meshes.
#[derive(Debug, Parser)]
#[command(name = "mesh-control", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve ADS (xDS v3, state of the world), reloading the file when it changes.
    Serve {
        /// The mesh.yaml to serve.
        #[arg(long, conflicts_with = "raw", required_unless_present = "raw")]
        config: Option<PathBuf>,
        /// Serve raw resources from a file or directory instead
        /// (`{"resources":[{"type_url","name","value_base64"}]}`).
        #[arg(long)]
        raw: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:18000")]
        listen: SocketAddr,
    },
    /// Write a gRPC xDS bootstrap JSON pointing at this control plane.
    Bootstrap {
        /// The client's node id.
        #[arg(long)]
        node: String,
        /// The control plane address (`host:port`).
        #[arg(long, default_value = "127.0.0.1:18000")]
        server: String,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a mesh.yaml and print what it would serve, changing nothing.
    Validate {
        /// The mesh.yaml to check.
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            raw,
            listen,
        } => {
            init_logging();
            serve(config, raw, listen).await
        }
        Command::Bootstrap { node, server, out } => bootstrap(&node, &server, out),
        Command::Validate { config } => validate(config),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

async fn serve(config: Option<PathBuf>, raw: Option<PathBuf>, listen: SocketAddr) -> ExitCode {
    let (path, source) = match (config, raw) {
        (Some(path), _) => (path, Source::Mesh),
        (None, Some(path)) => (path, Source::Raw),
        (None, None) => {
            error!("give --config mesh.yaml or --raw FILE|DIR");
            return ExitCode::FAILURE;
        }
    };
    let loaded = match source {
        Source::Mesh => MeshConfig::from_file(&path).and_then(ControlPlane::new),
        Source::Raw => load_raw(&path).map(ControlPlane::raw),
    };
    let control = match loaded {
        Ok(control) => control,
        Err(e) => {
            error!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let running = match control.listen(listen).await {
        Ok(running) => running,
        Err(e) => {
            error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    info!(
        address = %running.local_addr(),
        version = %control.version(),
        path = %path.display(),
        "serving; Ctrl-C stops"
    );
    tokio::select! {
        () = reload::watch(control.clone(), path, source, reload::POLL_INTERVAL) => {}
        signal = tokio::signal::ctrl_c() => {
            if let Err(e) = signal {
                error!("cannot listen for Ctrl-C: {e}");
            }
        }
    }
    info!("shutting down");
    running.shutdown().await;
    ExitCode::SUCCESS
}

fn bootstrap(node: &str, server: &str, out: Option<PathBuf>) -> ExitCode {
    let json = bootstrap_json(server, node);
    let text = match serde_json::to_string_pretty(&json) {
        Ok(text) => text + "\n",
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match std::fs::write(&path, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
    }
}

fn validate(path: PathBuf) -> ExitCode {
    let result = MeshConfig::from_file(&path).and_then(|config| translate(&config));
    match result {
        Ok(snapshot) => {
            println!("{}: valid", path.display());
            print!("{}", describe(&snapshot));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
