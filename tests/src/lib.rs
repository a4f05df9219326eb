//! Test support: greeter backends, mesh-control and MeshChannel clients on loopback, and a
//! bounded load generator; [`gocp`] runs the go-control-plane interop program.

pub mod binaries;
pub mod gocp;
pub mod h2raw;
pub mod istio;
pub mod scripted;
pub mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mesh_client::MeshChannel;
use mesh_client::bootstrap::Bootstrap;
use mesh_examples::{GreeterBackend, backend_of};
use xds_proto::helloworld::HelloRequest;
use xds_proto::helloworld::greeter_client::GreeterClient;

/// Installs a tracing subscriber once (honours `RUST_LOG`).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Starts `n` greeter backends named `backend-1` … on 127.0.0.1 ephemeral ports.
pub async fn start_backends(n: usize) -> Vec<GreeterBackend> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(
            GreeterBackend::start(([127, 0, 0, 1], 0).into(), &format!("backend-{i}"))
                .await
                .expect("bind backend"),
        );
    }
    out
}

/// A mesh.yaml with one service `greeter.default:8080` over these backend addresses.
pub fn greeter_yaml(addrs: &[std::net::SocketAddr]) -> String {
    let mut y =
        String::from("services:\n  - name: greeter.default\n    port: 8080\n    endpoints:\n");
    for a in addrs {
        y += &format!("      - address: {a}\n");
    }
    y
}

/// A bootstrap pointing at an ADS server on `addr`.
pub fn bootstrap_for(addr: std::net::SocketAddr, node_id: &str) -> Bootstrap {
    bootstrap_with_features(addr, node_id, &[])
}

/// A bootstrap pointing at an ADS server on `addr` that speaks delta xDS to it (the
/// `delta_ads` server feature).
pub fn delta_bootstrap_for(addr: std::net::SocketAddr, node_id: &str) -> Bootstrap {
    bootstrap_with_features(addr, node_id, &["delta_ads"])
}

/// A bootstrap pointing at an ADS server on `addr` whose `server_features` are `xds_v3`
/// and `features` (e.g. `fail_on_data_errors`, gRFC A88).
pub fn bootstrap_with_features(
    addr: std::net::SocketAddr,
    node_id: &str,
    features: &[&str],
) -> Bootstrap {
    let mut all = vec!["xds_v3"];
    all.extend_from_slice(features);
    let json = serde_json::json!({
        "xds_servers": [{
            "server_uri": addr.to_string(),
            "channel_creds": [{"type": "insecure"}],
            "server_features": all
        }],
        "node": {"id": node_id, "cluster": "mesh-tests", "locality": {}}
    });
    Bootstrap::from_json(&json.to_string()).expect("bootstrap parses")
}

/// Connects a greeter client to `xds:///greeter.default:8080` through `bootstrap`.
pub async fn greeter_client(bootstrap: Bootstrap) -> GreeterClient<MeshChannel> {
    let channel = MeshChannel::builder("xds:///greeter.default:8080")
        .with_bootstrap(bootstrap)
        .with_connect_timeout(Duration::from_secs(20))
        .connect()
        .await
        .expect("MeshChannel connects");
    GreeterClient::new(channel)
}

/// Sends `n` sequential RPCs and counts replies per backend id.
pub async fn spread(
    client: &mut GreeterClient<MeshChannel>,
    n: usize,
) -> Result<BTreeMap<String, usize>, tonic::Status> {
    let mut counts = BTreeMap::new();
    for i in 0..n {
        let reply = client
            .say_hello(HelloRequest {
                name: format!("t{i}"),
            })
            .await?;
        let msg = reply.into_inner().message;
        *counts.entry(backend_of(&msg).to_string()).or_insert(0) += 1;
    }
    Ok(counts)
}

/// Results of a [`Load`] run.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Successful RPCs.
    pub ok: u64,
    /// Failed RPCs.
    pub failed: u64,
    /// Successful RPCs per backend id.
    pub by_backend: BTreeMap<String, u64>,
    /// The first few failures.
    pub errors: Vec<String>,
}

/// Continuous load from `concurrency` workers, bounded by a count and a time limit.
pub struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    report: Arc<Mutex<LoadReport>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the load; every worker stops after `max_rpcs / concurrency` RPCs or `max_time`.
    pub fn start(
        client: GreeterClient<MeshChannel>,
        concurrency: usize,
        max_rpcs: u64,
        max_time: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let deadline = tokio::time::Instant::now() + max_time;
        let per_worker = max_rpcs / concurrency as u64;
        let tasks = (0..concurrency)
            .map(|w| {
                let mut client = client.clone();
                let stop = stop.clone();
                let ok = ok.clone();
                let report = report.clone();
                tokio::spawn(async move {
                    for i in 0..per_worker {
                        if stop.load(Ordering::Relaxed) || tokio::time::Instant::now() > deadline {
                            break;
                        }
                        let r = client
                            .say_hello(HelloRequest {
                                name: format!("w{w}-{i}"),
                            })
                            .await;
                        {
                            let mut rep = report.lock().unwrap();
                            match r {
                                Ok(reply) => {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                    rep.ok += 1;
                                    let msg = reply.into_inner().message;
                                    *rep.by_backend
                                        .entry(backend_of(&msg).to_string())
                                        .or_insert(0) += 1;
                                }
                                Err(e) => {
                                    rep.failed += 1;
                                    if rep.errors.len() < 5 {
                                        rep.errors.push(e.to_string());
                                    }
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            report,
            tasks,
        }
    }

    /// Successful RPCs so far.
    pub fn ok_so_far(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// A copy of the report so far.
    pub fn snapshot(&self) -> LoadReport {
        self.report.lock().unwrap().clone()
    }

    /// Waits (bounded by `limit`) until at least `n` RPCs succeeded.
    pub async fn wait_for_ok(&self, n: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.ok_so_far() < n {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops the workers and returns the final report.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
        }
        self.report.lock().unwrap().clone()
    }
}
pub mod interop;
