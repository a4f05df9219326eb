//! `mesh-control`: the development control plane binary.
//!
//! - `serve --config mesh.yaml [--listen 127.0.0.1:18000]` (or `--raw FILE|DIR`): serves ADS
//!   and hot-reloads the file when it changes;
//! - `bootstrap --node ID [--server ADDR] [--certs DIR [--refresh-interval 10s]] [--out FILE]`:
//!   writes a gRPC bootstrap, with `--certs` one whose `file_watcher` certificate provider
//!   reads the SVID `ca issue` wrote into DIR;
//! - `validate mesh.yaml`: checks a file and prints what it would serve, with each service's
//!   mTLS mode and SPIFFE ID;
//! - `ca issue --trust-domain TD --ns NS --sa SA --out DIR [--ca-dir DIR]`: issues a SPIFFE
//!   SVID from the development CA (created on first use) into Istio's file layout;
//! - `ca rotate --ns NS --sa SA --out DIR [--ca-dir DIR]`: replaces it with a fresh one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mesh_control::raw::load_raw;
use mesh_control::reload::{self, Source};
use mesh_control::{
    ControlPlane, MeshConfig, bootstrap_json_with_cert_refresh, describe, describe_services,
    translate,
};
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
        /// Add the `file_watcher` certificate provider `default` reading Istio's file layout
        /// (`cert-chain.pem`, `key.pem`, `root-cert.pem`) in this directory, for mTLS.
        #[arg(long)]
        certs: Option<PathBuf>,
        /// How often the certificate provider rereads the files (with `--certs`).
        #[arg(long, default_value = "10s", requires = "certs",
              value_parser = mesh_control::duration::parse_duration)]
        refresh_interval: Duration,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Write the bootstrap Istio's agent writes for a proxyless workload at this IP
        /// (node id `sidecar~IP~NODE.NS~NS.svc.cluster.local`, `GENERATOR: grpc`, ...):
        /// `--node` is then the workload name and `--server` istiod's plaintext xDS address.
        #[arg(long, value_name = "IP")]
        istio: Option<std::net::IpAddr>,
        /// The workload's namespace (with `--istio`).
        #[arg(long, default_value = "default", requires = "istio")]
        namespace: String,
    },
    /// Check a mesh.yaml and print what it would serve, changing nothing.
    Validate {
        /// The mesh.yaml to check.
        config: PathBuf,
    },
    /// The development certificate authority (SPIFFE SVIDs in Istio's file layout).
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Issue an SVID `spiffe://<td>/ns/<ns>/sa/<sa>` into `--out` (`cert-chain.pem`,
    /// `key.pem`, `root-cert.pem`), creating the CA in `--ca-dir` if it has none.
    Issue {
        /// The trust domain (must match the CA's if the CA exists).
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        #[command(flatten)]
        target: CaTarget,
    },
    /// Replace the SVID in `--out` with a freshly issued one (new key, new serial), atomically.
    Rotate {
        #[command(flatten)]
        target: CaTarget,
    },
}

#[derive(Debug, clap::Args)]
struct CaTarget {
    /// The workload's namespace.
    #[arg(long)]
    ns: String,
    /// The workload's service account.
    #[arg(long)]
    sa: String,
    /// The directory to write the workload's files into.
    #[arg(long)]
    out: PathBuf,
    /// Where the CA's own certificate and key live (kept apart from workload files).
    #[arg(long, default_value = "mesh-ca")]
    ca_dir: PathBuf,
    /// How long the SVID is valid (e.g. 24h, 90m).
    #[arg(long, default_value = "24h", value_parser = mesh_control::duration::parse_duration)]
    validity: Duration,
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
        Command::Bootstrap {
            node,
            server,
            certs,
            refresh_interval,
            out,
            istio,
            namespace,
        } => {
            let mut json = bootstrap_json_with_cert_refresh(
                &server,
                &node,
                certs.as_deref(),
                refresh_interval,
            );
            if let Some(ip) = istio {
                json["node"] =
                    mesh_control::bootstrap::IstioNode::new(ip, &node, &namespace).node_json();
            }
            write_json(&json, out)
        }
        Command::Validate { config } => validate(config),
        Command::Ca { command } => ca(command),
    }
}

fn ca(command: CaCommand) -> ExitCode {
    let (trust_domain, target, create) = match command {
        CaCommand::Issue {
            trust_domain,
            target,
        } => (Some(trust_domain), target, true),
        CaCommand::Rotate { target } => (None, target, false),
    };
    match mesh_control::ca::issue_to_dir(
        &target.ca_dir,
        trust_domain.as_deref(),
        &target.ns,
        &target.sa,
        target.validity,
        &target.out,
        create,
    ) {
        Ok(svid) => {
            println!(
                "issued {} (serial {}) into {}; CA in {}",
                svid.uri.as_deref().unwrap_or("?"),
                svid.serial_hex,
                target.out.display(),
                target.ca_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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

fn write_json(json: &serde_json::Value, out: Option<PathBuf>) -> ExitCode {
    let text = match serde_json::to_string_pretty(json) {
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
    let result = MeshConfig::from_file(&path)
        .and_then(|config| translate(&config).map(|snapshot| (config, snapshot)));
    match result {
        Ok((config, snapshot)) => {
            println!("{}: valid", path.display());
            print!("{}", describe_services(&config));
            print!("{}", describe(&snapshot));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
