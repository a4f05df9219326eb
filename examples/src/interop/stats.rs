//! The interop client's bookkeeping and its `grpc.testing.LoadBalancerStatsService`.
//!
//! `GetClientStats(num_rpcs, timeout_sec, metadata_keys)` registers a watcher over the
//! next `num_rpcs` RPCs *sent* (numbered when sent, not when answered, so slow backends
//! do not skew the distribution) and answers once they have all completed or after
//! `timeout_sec`, counting the ones still outstanding as failures. Each successful RPC
//! counts for the peer named by the server's `hostname` (header, else `SimpleResponse`);
//! an RPC that failed or named no peer is a failure. `metadata_keys` (case-insensitive,
//! `"*"` for all) selects the response metadata reported per peer in `metadatas_by_peer`.
//!
//! `GetClientAccumulatedStats` reports totals since start, keyed by `RpcType` name
//! (`UNARY_CALL`), with per-status-code counts in `stats_per_method`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tonic::{Code, Request, Response, Status};
use xds_proto::grpc_testing::load_balancer_accumulated_stats_response::MethodStats;
use xds_proto::grpc_testing::load_balancer_stats_response::{
    MetadataByPeer, MetadataEntry, MetadataType, RpcMetadata, RpcsByPeer,
};
use xds_proto::grpc_testing::load_balancer_stats_service_server::LoadBalancerStatsService;
use xds_proto::grpc_testing::{
    LoadBalancerAccumulatedStatsRequest, LoadBalancerAccumulatedStatsResponse,
    LoadBalancerStatsRequest, LoadBalancerStatsResponse,
};

use crate::interop::rpc_config::RpcKind;

/// A successful RPC: who answered and what metadata came back.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The server's hostname; empty when it sent none.
    pub hostname: String,
    /// Response metadata (ASCII entries), each with where it came from.
    pub metadata: Vec<(String, String, MetadataType)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Default)]
struct WatchState {
    remaining: i32,
    failures: i32,
    by_peer: HashMap<String, i32>,
    by_method: HashMap<String, HashMap<String, i32>>,
    metadata: HashMap<String, Vec<RpcMetadata>>,
}

#[derive(Debug)]
struct Watcher {
    start: u64,
    end: u64,
    /// Lower-cased keys to report; `None` reports all (`"*"`).
    keys: Option<Vec<String>>,
    report_metadata: bool,
    state: Mutex<WatchState>,
    done: Notify,
}

impl Watcher {
    fn record(&self, kind: RpcKind, outcome: &Result<Reply, Code>) {
        let mut s = lock(&self.state);
        if s.remaining <= 0 {
            return;
        }
        match outcome {
            Ok(reply) if !reply.hostname.is_empty() => {
                *s.by_peer.entry(reply.hostname.clone()).or_default() += 1;
                *s.by_method
                    .entry(kind.method().to_string())
                    .or_default()
                    .entry(reply.hostname.clone())
                    .or_default() += 1;
                if self.report_metadata {
                    let entries = reply
                        .metadata
                        .iter()
                        .filter(|(k, _, _)| self.wants(k))
                        .map(|(k, v, t)| MetadataEntry {
                            key: k.clone(),
                            value: v.clone(),
                            r#type: *t as i32,
                        })
                        .collect();
                    s.metadata
                        .entry(reply.hostname.clone())
                        .or_default()
                        .push(RpcMetadata { metadata: entries });
                }
            }
            _ => s.failures += 1,
        }
        s.remaining -= 1;
        if s.remaining == 0 {
            self.done.notify_one();
        }
    }

    fn wants(&self, key: &str) -> bool {
        match &self.keys {
            None => true,
            Some(keys) => keys.iter().any(|k| k.eq_ignore_ascii_case(key)),
        }
    }

    fn response(&self) -> LoadBalancerStatsResponse {
        let s = lock(&self.state);
        LoadBalancerStatsResponse {
            rpcs_by_peer: s.by_peer.clone(),
            num_failures: s.failures + s.remaining,
            rpcs_by_method: s
                .by_method
                .iter()
                .map(|(m, peers)| {
                    (
                        m.clone(),
                        RpcsByPeer {
                            rpcs_by_peer: peers.clone(),
                        },
                    )
                })
                .collect(),
            metadatas_by_peer: s
                .metadata
                .iter()
                .map(|(peer, rpcs)| {
                    (
                        peer.clone(),
                        MetadataByPeer {
                            rpc_metadata: rpcs.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

#[derive(Debug, Default)]
struct Accumulated {
    started: HashMap<String, i32>,
    succeeded: HashMap<String, i32>,
    failed: HashMap<String, i32>,
    results: HashMap<String, HashMap<i32, i32>>,
}

#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    watchers: Vec<Arc<Watcher>>,
}

/// Every RPC's outcome, fed to the stats watchers and the accumulated totals.
#[derive(Debug, Default)]
pub struct StatsHub {
    registry: Mutex<Registry>,
    accumulated: Mutex<Accumulated>,
}

/// One sent RPC: the watchers interested in it. Finish it with [`Ticket::finish`].
#[derive(Debug)]
pub struct Ticket {
    kind: RpcKind,
    watchers: Vec<Arc<Watcher>>,
}

impl Ticket {
    /// Whether a watcher wants response metadata (so the caller collects it).
    pub fn wants_metadata(&self) -> bool {
        self.watchers.iter().any(|w| w.report_metadata)
    }

    /// Records the outcome: `Ok` for a reply, `Err(code)` for a failed RPC.
    pub fn finish(self, hub: &StatsHub, outcome: &Result<Reply, Code>) {
        for w in &self.watchers {
            w.record(self.kind, outcome);
        }
        let name = self.kind.type_name().to_string();
        let code = match outcome {
            Ok(_) => Code::Ok,
            Err(c) => *c,
        };
        let mut acc = lock(&hub.accumulated);
        *acc.results
            .entry(name.clone())
            .or_default()
            .entry(code as i32)
            .or_default() += 1;
        let counter = if outcome.is_ok() {
            &mut acc.succeeded
        } else {
            &mut acc.failed
        };
        *counter.entry(name).or_default() += 1;
    }
}

impl StatsHub {
    /// A new, empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// Numbers a new RPC of `kind` and counts it as started.
    pub fn start_rpc(&self, kind: RpcKind) -> Ticket {
        let watchers = {
            let mut r = lock(&self.registry);
            let id = r.next_id;
            r.next_id += 1;
            r.watchers
                .iter()
                .filter(|w| w.start <= id && id < w.end)
                .cloned()
                .collect()
        };
        *lock(&self.accumulated)
            .started
            .entry(kind.type_name().to_string())
            .or_default() += 1;
        Ticket { kind, watchers }
    }

    /// Waits for the next `num_rpcs` RPCs sent (at most `timeout`) and reports them.
    pub async fn client_stats(
        &self,
        num_rpcs: i32,
        timeout: Duration,
        metadata_keys: &[String],
    ) -> LoadBalancerStatsResponse {
        if num_rpcs <= 0 {
            return LoadBalancerStatsResponse::default();
        }
        let keys = if metadata_keys.iter().any(|k| k == "*") {
            None
        } else {
            Some(
                metadata_keys
                    .iter()
                    .map(|k| k.to_ascii_lowercase())
                    .collect(),
            )
        };
        let watcher = {
            let mut r = lock(&self.registry);
            let start = r.next_id;
            let w = Arc::new(Watcher {
                start,
                end: start + num_rpcs.unsigned_abs() as u64,
                keys,
                report_metadata: !metadata_keys.is_empty(),
                state: Mutex::new(WatchState {
                    remaining: num_rpcs,
                    ..Default::default()
                }),
                done: Notify::new(),
            });
            r.watchers.push(w.clone());
            w
        };
        let _ = tokio::time::timeout(timeout, watcher.done.notified()).await;
        lock(&self.registry)
            .watchers
            .retain(|w| !Arc::ptr_eq(w, &watcher));
        watcher.response()
    }

    /// Totals since the client started.
    #[allow(deprecated)] // the per-method maps are deprecated in the proto but still read
    pub fn accumulated(&self) -> LoadBalancerAccumulatedStatsResponse {
        let acc = lock(&self.accumulated);
        let mut per_method: HashMap<String, MethodStats> = HashMap::new();
        for (name, n) in &acc.started {
            per_method.entry(name.clone()).or_default().rpcs_started = *n;
        }
        for (name, results) in &acc.results {
            per_method.entry(name.clone()).or_default().result = results.clone();
        }
        LoadBalancerAccumulatedStatsResponse {
            num_rpcs_started_by_method: acc.started.clone(),
            num_rpcs_succeeded_by_method: acc.succeeded.clone(),
            num_rpcs_failed_by_method: acc.failed.clone(),
            stats_per_method: per_method,
        }
    }
}

/// `LoadBalancerStatsService` over a [`StatsHub`].
#[derive(Debug, Clone)]
pub struct StatsService {
    hub: Arc<StatsHub>,
}

impl StatsService {
    /// Serves `hub`'s stats.
    pub fn new(hub: Arc<StatsHub>) -> Self {
        StatsService { hub }
    }
}

#[tonic::async_trait]
impl LoadBalancerStatsService for StatsService {
    async fn get_client_stats(
        &self,
        request: Request<LoadBalancerStatsRequest>,
    ) -> Result<Response<LoadBalancerStatsResponse>, Status> {
        let req = request.into_inner();
        let timeout = Duration::from_secs(u64::from(req.timeout_sec.max(0).unsigned_abs()));
        Ok(Response::new(
            self.hub
                .client_stats(req.num_rpcs, timeout, &req.metadata_keys)
                .await,
        ))
    }

    async fn get_client_accumulated_stats(
        &self,
        _request: Request<LoadBalancerAccumulatedStatsRequest>,
    ) -> Result<Response<LoadBalancerAccumulatedStatsResponse>, Status> {
        Ok(Response::new(self.hub.accumulated()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(host: &str) -> Result<Reply, Code> {
        Ok(Reply {
            hostname: host.into(),
            metadata: vec![
                ("hostname".into(), host.into(), MetadataType::Initial),
                ("x-extra".into(), "1".into(), MetadataType::Trailing),
            ],
        })
    }

    #[tokio::test]
    async fn watcher_sees_only_the_next_rpcs_sent() {
        let hub = Arc::new(StatsHub::new());
        // Sent before the watcher: not counted.
        let early = hub.start_rpc(RpcKind::UnaryCall);
        let h = hub.clone();
        let stats = tokio::spawn(async move {
            h.client_stats(3, Duration::from_secs(5), &["Hostname".into()])
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let tickets: Vec<_> = (0..4).map(|_| hub.start_rpc(RpcKind::UnaryCall)).collect();
        early.finish(&hub, &ok("early"));
        let mut it = tickets.into_iter();
        it.next().unwrap().finish(&hub, &ok("a"));
        it.next().unwrap().finish(&hub, &Err(Code::NotFound));
        it.next().unwrap().finish(&hub, &ok("b"));
        it.next().unwrap().finish(&hub, &ok("late"));
        let resp = stats.await.unwrap();
        assert_eq!(resp.num_failures, 1);
        assert_eq!(resp.rpcs_by_peer.len(), 2, "{resp:?}");
        assert_eq!(resp.rpcs_by_method["UnaryCall"].rpcs_by_peer["a"], 1);
        let md = &resp.metadatas_by_peer["a"].rpc_metadata[0].metadata;
        assert_eq!(md.len(), 1);
        assert_eq!(md[0].key, "hostname");

        let acc = hub.accumulated();
        let unary = &acc.stats_per_method["UNARY_CALL"];
        assert_eq!(unary.rpcs_started, 5);
        assert_eq!(unary.result[&0], 4);
        assert_eq!(unary.result[&(Code::NotFound as i32)], 1);
    }

    #[tokio::test]
    async fn outstanding_rpcs_count_as_failures_at_the_timeout() {
        let hub = StatsHub::new();
        let resp = hub.client_stats(5, Duration::from_millis(50), &[]).await;
        assert_eq!(resp.num_failures, 5);
        assert!(resp.metadatas_by_peer.is_empty());
    }
}
