//! The interop client's send loop: on every tick of a ticker at `qps × num_channels`
//! ticks per second it sends one RPC of each configured type on the next channel (round
//! robin), each in its own task bounded by its timeout, and feeds the outcomes to the
//! [`StatsHub`]. This is grpc-go's pacing: `--qps` is per channel and per RPC type.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mesh_client::MeshChannel;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Status};
use xds_proto::grpc_testing::load_balancer_stats_response::MetadataType;
use xds_proto::grpc_testing::test_service_client::TestServiceClient;
use xds_proto::grpc_testing::{Empty, SimpleRequest};

use crate::interop::capture::{CaptureHeaders, InitialHeaders};
use crate::interop::rpc_config::{RpcConfig, RpcKind};
use crate::interop::stats::{Reply, StatsHub};
use crate::interop::test_service::HOSTNAME_HEADER;

/// A TestService client over a header-capturing [`MeshChannel`].
pub type InteropClient = TestServiceClient<CaptureHeaders<MeshChannel>>;

/// How the send loop behaves.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// RPCs per second per channel (and per RPC type).
    pub qps: u32,
    /// Per-RPC timeout unless the config sets one.
    pub rpc_timeout: Duration,
    /// End the loop with an error on the first failed RPC after one has succeeded.
    pub fail_on_failed_rpc: bool,
    /// Print every outcome on stdout.
    pub print_response: bool,
}

/// Sends until `stop` turns true; `Err` when `fail_on_failed_rpc` tripped.
pub async fn run(
    clients: Vec<InteropClient>,
    configs: watch::Receiver<Arc<Vec<RpcConfig>>>,
    hub: Arc<StatsHub>,
    options: SendOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    if clients.is_empty() {
        return Err("no channels (--num_channels must be at least 1)".into());
    }
    let per_second = u64::from(options.qps.max(1)) * clients.len() as u64;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_second));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let succeeded = Arc::new(AtomicBool::new(false));
    let (fatal_tx, mut fatal_rx) = mpsc::channel::<String>(1);
    let mut tasks = JoinSet::new();
    let mut next = 0usize;
    loop {
        tokio::select! {
            r = stop.wait_for(|s| *s) => {
                let _ = r;
                return Ok(());
            }
            Some(failure) = fatal_rx.recv() => return Err(failure),
            _ = ticker.tick() => {}
        }
        let current = configs.borrow().clone();
        let client = clients[next].clone();
        next = (next + 1) % clients.len();
        for config in current.iter() {
            let ticket = hub.start_rpc(config.kind);
            let wants_metadata = ticket.wants_metadata();
            let mut client = client.clone();
            let config = config.clone();
            let timeout = config.timeout.unwrap_or(options.rpc_timeout);
            let hub = hub.clone();
            let succeeded = succeeded.clone();
            let fatal_tx = fatal_tx.clone();
            let options = options.clone();
            tasks.spawn(async move {
                let outcome = one_rpc(&mut client, &config, timeout, wants_metadata).await;
                let recorded = outcome.as_ref().map_err(Status::code).cloned();
                ticket.finish(&hub, &recorded);
                match &outcome {
                    Ok(reply) => {
                        succeeded.store(true, Ordering::Relaxed);
                        if options.print_response {
                            print_reply(config.kind, reply);
                        }
                    }
                    Err(status) => {
                        if options.print_response {
                            println!("RPC {:?}, failed with {status}", config.kind.method());
                        }
                        if options.fail_on_failed_rpc && succeeded.load(Ordering::Relaxed) {
                            let _ = fatal_tx
                                .try_send(format!("RPC {} failed: {status}", config.kind.method()));
                        }
                    }
                }
            });
        }
        while tasks.try_join_next().is_some() {}
    }
}

fn print_reply(kind: RpcKind, reply: &Reply) {
    match kind {
        // grpc-go's format (drivers grep stdout for it); the peer address is not known
        // behind a MeshChannel, so it is left out.
        RpcKind::UnaryCall => println!("Greeting: Hello world, this is {}", reply.hostname),
        RpcKind::EmptyCall => println!("RPC \"EmptyCall\", from host {}", reply.hostname),
    }
}

async fn one_rpc(
    client: &mut InteropClient,
    config: &RpcConfig,
    timeout: Duration,
    wants_metadata: bool,
) -> Result<Reply, Status> {
    let call = async {
        match config.kind {
            RpcKind::UnaryCall => {
                let mut request = Request::new(SimpleRequest {
                    fill_server_id: true,
                    ..Default::default()
                });
                prepare(&mut request, config, timeout);
                let response = client.unary_call(request).await?;
                let (metadata, message, extensions) = response.into_parts();
                Ok::<_, Status>((
                    metadata,
                    extensions.get::<InitialHeaders>().cloned(),
                    message.hostname,
                ))
            }
            RpcKind::EmptyCall => {
                let mut request = Request::new(Empty {});
                prepare(&mut request, config, timeout);
                let response = client.empty_call(request).await?;
                let (metadata, _, extensions) = response.into_parts();
                Ok((
                    metadata,
                    extensions.get::<InitialHeaders>().cloned(),
                    String::new(),
                ))
            }
        }
    };
    let (metadata, initial, body_hostname) = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| Status::new(Code::DeadlineExceeded, "client-side RPC timeout"))??;
    let hostname = metadata
        .get(HOSTNAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or(body_hostname);
    let metadata = if wants_metadata {
        entries(&metadata, initial.as_ref())
    } else {
        Vec::new()
    };
    Ok(Reply { hostname, metadata })
}

fn prepare<T>(request: &mut Request<T>, config: &RpcConfig, timeout: Duration) {
    request.set_timeout(timeout);
    for (k, v) in &config.metadata {
        request.metadata_mut().append(k.clone(), v.clone());
    }
}

/// The ASCII response metadata, each entry typed INITIAL when it arrived in the headers.
fn entries(
    merged: &MetadataMap,
    initial: Option<&InitialHeaders>,
) -> Vec<(String, String, MetadataType)> {
    let mut out = Vec::new();
    for (key, value) in merged.clone().into_headers().iter() {
        let Ok(v) = value.to_str() else { continue };
        let kind = match initial {
            Some(h) if h.0.get_all(key).iter().any(|x| x == value) => MetadataType::Initial,
            Some(_) => MetadataType::Trailing,
            None => MetadataType::Unknown,
        };
        out.push((key.as_str().to_string(), v.to_string(), kind));
    }
    out
}
