//! Client memory with many clusters configured over xDS (issue 9): a client process opens
//! one `MeshChannel` per service (`xds:///svc-N.default:8080`, as a proxyless client of N
//! services would, sharing one ADS stream), mesh-control serving N services × E endpoints.
//! Its RSS (`/proc/self/status` VmRSS) is read before the first channel and once every
//! channel is configured and the endpoint connections have been attempted. Run once with
//! one endpoint per cluster and once with E, bytes per endpoint are the difference over the
//! added endpoints, and bytes per cluster what remains of the first run per cluster.
//!
//! Endpoints are distinct loopback addresses (`127.1.x.y:9`) where nothing listens: every
//! endpoint's connection is created and refused (then retried with backoff), so the
//! numbers hold config, pools and connection state but not established HTTP/2 buffers.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use mesh_client::MeshChannel;
use mesh_client::bootstrap::Bootstrap;
use mesh_control::{ControlPlane, MeshConfig};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The memory mode's options.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// Clusters (one service, one channel each).
    #[arg(long, default_value_t = 1000)]
    pub clusters: usize,
    /// Endpoints per cluster.
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// How long the client settles after the last channel is configured, milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub settle_ms: u64,
}

/// The client half (a child process): RSS before, channels, RSS after.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryClientArgs {
    /// The bootstrap file.
    #[arg(long)]
    pub bootstrap: PathBuf,
    /// Services `svc-0` … to open channels to.
    #[arg(long)]
    pub services: usize,
    /// Settle time, milliseconds.
    #[arg(long)]
    pub settle_ms: u64,
}

/// This process's resident set size, bytes (0 where /proc is missing).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The mesh.yaml of `clusters` services with `endpoints` endpoints each.
pub fn yaml(clusters: usize, endpoints: usize) -> String {
    let mut y = String::from("services:\n");
    let mut n: usize = 0;
    for c in 0..clusters {
        y += &format!("  - name: svc-{c}.default\n    port: 8080\n    endpoints:\n");
        for _ in 0..endpoints {
            y += &format!(
                "      - address: 127.1.{}.{}:9\n",
                (n >> 8) & 0xff,
                n & 0xff
            );
            n += 1;
        }
    }
    y
}

/// The client half.
pub async fn client(args: MemoryClientArgs) -> anyhow::Result<()> {
    let bootstrap = Bootstrap::from_file(&args.bootstrap)?;
    println!("RSS_BASELINE {}", rss_bytes());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.services {
        let b = bootstrap.clone();
        tasks.spawn(async move {
            MeshChannel::builder(format!("xds:///svc-{i}.default:8080"))
                .with_bootstrap(b)
                .with_connect_timeout(Duration::from_secs(60))
                .connect()
                .await
        });
    }
    let mut channels = Vec::with_capacity(args.services);
    while let Some(r) = tasks.join_next().await {
        channels.push(r??);
    }
    tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
    println!("RSS_CONFIGURED {}", rss_bytes());
    println!("CHANNELS {}", channels.len());
    drop(channels);
    Ok(())
}

/// One client run under `config`: (baseline RSS, configured RSS).
async fn measure(
    exe: &std::path::Path,
    bootstrap: &std::path::Path,
    services: usize,
    settle_ms: u64,
) -> anyhow::Result<(u64, u64)> {
    let mut child = tokio::process::Command::new(exe)
        .arg("memory-client")
        .arg("--bootstrap")
        .arg(bootstrap)
        .arg("--services")
        .arg(services.to_string())
        .arg("--settle-ms")
        .arg(settle_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the memory client")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut base, mut configured) = (None, None);
    let read = async {
        while let Some(line) = lines.next_line().await? {
            let mut parts = line.split_whitespace();
            let (key, value) = (
                parts.next(),
                parts.next().and_then(|v| v.parse::<u64>().ok()),
            );
            match key {
                Some("RSS_BASELINE") => base = value,
                Some("RSS_CONFIGURED") => configured = value,
                _ => {}
            }
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(Duration::from_secs(180), read)
        .await
        .context("the memory client did not finish within 180 s")??;
    let status = child.wait().await?;
    if !status.success() {
        bail!("the memory client failed ({status})");
    }
    match (base, configured) {
        (Some(b), Some(c)) => Ok((b, c)),
        _ => bail!("the memory client printed no RSS"),
    }
}

/// Runs the memory measurement and prints it.
pub async fn run(args: MemoryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clusters > 0 && args.endpoints > 1,
        "need clusters ≥ 1 and endpoints ≥ 2"
    );
    let exe = std::env::current_exe()?;
    let dir = std::env::temp_dir().join(format!("mesh-bench-mem-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cp = ControlPlane::empty()
        .listen(([127, 0, 0, 1], 0).into())
        .await?;
    let bootstrap = dir.join("bootstrap.json");
    std::fs::write(
        &bootstrap,
        mesh_control::bootstrap_json(&cp.local_addr().to_string(), "mem-client").to_string(),
    )?;
    let mut runs = Vec::new();
    for endpoints in [1, args.endpoints] {
        cp.control()
            .set_config(MeshConfig::from_yaml(&yaml(args.clusters, endpoints))?)?;
        let (base, configured) = measure(&exe, &bootstrap, args.clusters, args.settle_ms).await?;
        println!(
            "{} clusters × {endpoints} endpoints: RSS {:.1} MiB before the first channel, {:.1} MiB configured (+{:.1} MiB)",
            args.clusters,
            base as f64 / 1048576.0,
            configured as f64 / 1048576.0,
            (configured.saturating_sub(base)) as f64 / 1048576.0
        );
        runs.push((base, configured));
    }
    cp.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    let [(b1, c1), (b10, c10)] = runs[..] else {
        bail!("expected two runs");
    };
    let growth1 = c1 as f64 - b1 as f64;
    let growth10 = c10 as f64 - b10 as f64;
    let added = (args.clusters * (args.endpoints - 1)) as f64;
    let per_endpoint = (growth10 - growth1) / added;
    let per_cluster = growth1 / args.clusters as f64 - per_endpoint;
    println!(
        "bytes per endpoint: {per_endpoint:.0} (goal ≤ 300); bytes per cluster (channel, listener, route, cluster, pool; its endpoint excluded): {per_cluster:.0}"
    );
    println!(
        "{} clusters × {} endpoints in all: {:.1} MiB over the baseline",
        args.clusters,
        args.endpoints,
        growth10 / 1048576.0
    );
    Ok(())
}
