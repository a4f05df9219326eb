//! Per-request route and cluster selection (gRFC A28), with each route's policies resolved
//! ahead of time: timeout (A31), retry policy (A44), fault injection (A33).
//!
//! A [`RouteTable`] is compiled from one [`TargetConfig`] when it is published: the virtual
//! host is chosen once (by the target's authority, as gRPC does), each referenced cluster
//! gets one shared [`Upstream`] (endpoint pool, circuit breaker, retry budget), weighted
//! clusters become cumulative weights, an aggregate cluster's pool concatenates its leaf
//! clusters' priorities (gRFC A37, A75), and the HCM's fault filters are merged with the
//! route's and virtual host's overrides (A39). A request then costs one pass over the
//! routes and, for a split, one random number.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::{ClusterPool, OutlierRegistry, request_hash};
use crate::config::{
    ClusterConfig, ClusterKind, FaultInjection, FilterOverride, HashPolicy, HttpFilterConfig,
    LbPolicy, RetryBudgetConfig, RetryPolicy, RouteAction, RouteMatch, TargetConfig,
};
use crate::resilience::breaker::CircuitBreaker;
use crate::resilience::budget::RetryBudget;
use crate::transport::ConnectionSet;

/// The pools of a cluster's leaves (itself, or an aggregate's leaf clusters, gRFC A37/A75),
/// in priority order: each with its own TLS (never falling back to plaintext: a leaf whose
/// TLS settings cannot be met fails the whole cluster, with the reason), its own policy
/// (`pick_first` for LOGICAL_DNS) and its own outlier detector (gRFC A50, by leaf name).
fn leaf_pools(
    cc: &ClusterConfig,
    conns: &ConnectionSet,
    outliers: &OutlierRegistry,
) -> Result<Vec<ClusterPool>, String> {
    cc.leaf_clusters()
        .iter()
        .map(|leaf| {
            let c = &leaf.cluster;
            let tls = match &c.tls {
                None => None,
                Some(t) => Some(conns.tls_client(t)?),
            };
            let policy = match c.kind {
                ClusterKind::LogicalDns { .. } => &LbPolicy::PickFirst,
                _ => &c.lb_policy,
            };
            Ok(ClusterPool::build(
                &c.name,
                policy,
                &leaf.endpoints,
                conns,
                tls.as_ref(),
                c.outlier_detection
                    .as_ref()
                    .and_then(|od| outliers.detector(&c.name, od)),
            ))
        })
        .collect()
}

/// Where a route sends a request.
#[derive(Debug)]
enum Action {
    Forward {
        /// `(cumulative weight, cluster)`, ascending.
        clusters: Vec<(u64, ClusterTarget)>,
        total: u64,
        timeout: Option<Duration>,
        /// gRFC A42 request hash policies.
        hash_policy: Vec<HashPolicy>,
        /// The route's retry policy, else the virtual host's (gRFC A44).
        retry: Option<Arc<RetryPolicy>>,
        /// The fault filters in HCM order, with overrides applied (gRFC A33, A39).
        faults: Arc<[Arc<FaultInjection>]>,
    },
    Fail(Arc<str>),
}

/// A usable cluster: its endpoints and the limits that guard them.
#[derive(Debug)]
pub struct Upstream {
    /// The endpoint pool and picker.
    pub pool: ClusterPool,
    /// The cluster's circuit breaker (gRFC A32), shared process-wide.
    pub breaker: CircuitBreaker,
    /// The cluster's retry budget, shared process-wide.
    pub budget: RetryBudget,
}

/// A cluster as seen by routing: its pool, or why it cannot be used.
#[derive(Debug, Clone)]
pub enum ClusterTarget {
    /// A usable cluster.
    Pool(Arc<Upstream>),
    /// A cluster whose resources are missing or invalid (gRFC A74: only RPCs routed to it fail).
    Unavailable {
        /// The cluster name.
        name: Arc<str>,
        /// Why.
        reason: Arc<str>,
    },
}

#[derive(Debug)]
struct CompiledRoute {
    matcher: RouteMatch,
    action: Action,
}

/// What routing decided for one request.
#[derive(Debug)]
pub struct Selection<'a> {
    /// The chosen cluster.
    pub cluster: &'a ClusterTarget,
    /// The maximum call duration: the route's, else the HCM's (gRFC A31).
    pub timeout: Option<Duration>,
    /// The request hash from the route's `hash_policy` (gRFC A42), if any policy yielded one.
    pub hash: Option<u64>,
    /// The retry policy (gRFC A44), if any.
    pub retry: Option<&'a Arc<RetryPolicy>>,
    /// The fault filters that apply (gRFC A33), in order.
    pub faults: &'a Arc<[Arc<FaultInjection>]>,
}

/// The routes of one target, ready for per-request selection.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    /// Set when no virtual host matches the target: every RPC fails with this.
    no_virtual_host: Option<Arc<str>>,
    addresses: HashSet<SocketAddr>,
    /// Every cluster by name, so a retry can find its cluster in a newer table.
    by_name: BTreeMap<Arc<str>, ClusterTarget>,
}

impl RouteTable {
    /// Compiles `config` for requests whose authority is `authority`, creating or reusing
    /// endpoint connections in `conns` and clusters' outlier detectors (gRFC A50) in
    /// `outliers`, so that ejections survive config updates; clusters without a
    /// `retry_budget` get `default_budget`.
    pub fn build(
        config: &TargetConfig,
        authority: &str,
        conns: &ConnectionSet,
        default_budget: &RetryBudgetConfig,
        outliers: &OutlierRegistry,
    ) -> Self {
        let mut addresses = HashSet::new();
        let Some(vh) = config.route_config.find_virtual_host(authority) else {
            return RouteTable {
                routes: Vec::new(),
                no_virtual_host: Some(
                    format!(
                        "route_config \"{}\": no virtual host matches \"{authority}\"",
                        config.route_config.name
                    )
                    .into(),
                ),
                addresses,
                by_name: BTreeMap::new(),
            };
        };
        let mut pools: BTreeMap<&str, ClusterTarget> = BTreeMap::new();
        let mut target_for = |name: &str| -> ClusterTarget {
            if let Some(t) = pools.get(name) {
                return t.clone();
            }
            let t = match config.clusters.get(name) {
                Some(Ok(cc)) => match leaf_pools(cc, conns, outliers) {
                    Err(reason) => ClusterTarget::Unavailable {
                        name: name.into(),
                        reason: reason.into(),
                    },
                    Ok(mut leaves) => {
                        let pool = if cc.leaves.is_empty() && leaves.len() == 1 {
                            leaves.remove(0)
                        } else {
                            ClusterPool::aggregate(name, &cc.cluster.lb_policy, leaves)
                        };
                        addresses.extend(pool.endpoints().map(|e| e.addr()));
                        // gRFC A37 gives each leaf of an aggregate its own circuit breaker;
                        // here the breaker and the retry budget are the route target's (the
                        // aggregate's `max_requests`), shared process-wide by its name.
                        ClusterTarget::Pool(Arc::new(Upstream {
                            pool,
                            breaker: CircuitBreaker::for_cluster(name, cc.cluster.max_requests),
                            budget: RetryBudget::for_cluster(
                                name,
                                cc.cluster.retry_budget.unwrap_or(*default_budget),
                            ),
                        }))
                    }
                },
                Some(Err(reason)) => ClusterTarget::Unavailable {
                    name: name.into(),
                    reason: reason.as_str().into(),
                },
                None => ClusterTarget::Unavailable {
                    name: name.into(),
                    reason: "not part of the configuration".into(),
                },
            };
            if let Some((key, _)) = config.clusters.get_key_value(name) {
                pools.insert(key.as_str(), t.clone());
            }
            t
        };
        let http = &config.listener.http;
        let vh_retry = vh.retry_policy.clone().map(Arc::new);
        let routes = vh
            .routes
            .iter()
            .map(|r| {
                let action = match &r.action {
                    RouteAction::Forward {
                        clusters,
                        timeout,
                        hash_policy,
                        retry_policy,
                    } => {
                        let mut acc = 0u64;
                        let mut out = Vec::with_capacity(clusters.len());
                        for wc in clusters {
                            acc += u64::from(wc.weight);
                            out.push((acc, target_for(&wc.name)));
                        }
                        if acc == 0 {
                            Action::Fail("route has no cluster with a positive weight".into())
                        } else {
                            // A39: a route's override wins over its virtual host's, which
                            // wins over the filter's own config.
                            let faults: Vec<Arc<FaultInjection>> = http
                                .http_filters
                                .iter()
                                .filter_map(|f| {
                                    let HttpFilterConfig::Fault(base) = &f.config else {
                                        return None;
                                    };
                                    let over = r
                                        .filter_overrides
                                        .get(&f.name)
                                        .or_else(|| vh.filter_overrides.get(&f.name));
                                    Some(match over {
                                        Some(FilterOverride::Fault(o)) => o.clone(),
                                        _ => base.clone(),
                                    })
                                })
                                .collect();
                            Action::Forward {
                                clusters: out,
                                total: acc,
                                timeout: timeout.or(http.max_stream_duration),
                                hash_policy: hash_policy.clone(),
                                retry: retry_policy.clone().map(Arc::new).or(vh_retry.clone()),
                                faults: faults.into(),
                            }
                        }
                    }
                    RouteAction::NonForwarding => {
                        Action::Fail("matched a non-forwarding route".into())
                    }
                    RouteAction::Unsupported => {
                        Action::Fail("matched a route with an unsupported action".into())
                    }
                };
                CompiledRoute {
                    matcher: r.matcher.clone(),
                    action,
                }
            })
            .collect();
        let by_name = pools
            .into_iter()
            .map(|(name, t)| (Arc::<str>::from(name), t))
            .collect();
        RouteTable {
            routes,
            no_virtual_host: None,
            addresses,
            by_name,
        }
    }

    /// The cluster of this name, if some route of this table uses it.
    pub fn cluster(&self, name: &str) -> Option<&ClusterTarget> {
        self.by_name.get(name)
    }

    /// Every endpoint address the table can send to.
    pub fn addresses(&self) -> &HashSet<SocketAddr> {
        &self.addresses
    }

    /// Every cluster target reachable from some route.
    pub fn clusters(&self) -> impl Iterator<Item = &ClusterTarget> {
        self.routes.iter().flat_map(|r| match &r.action {
            Action::Forward { clusters, .. } => clusters.iter().map(|(_, c)| c).collect(),
            Action::Fail(_) => Vec::new(),
        })
    }

    /// Selects the route and cluster for a request, and computes its hash (gRFC A42;
    /// `channel_id` is the channel's `io.grpc.channel_id`). The error says why the RPC must
    /// fail.
    pub fn select(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        channel_id: u64,
    ) -> Result<Selection<'_>, Arc<str>> {
        if let Some(e) = &self.no_virtual_host {
            return Err(e.clone());
        }
        let fraction = rand::random::<u32>() % 1_000_000;
        for r in &self.routes {
            if !r.matcher.matches(path, headers, fraction) {
                continue;
            }
            return match &r.action {
                Action::Fail(e) => Err(e.clone()),
                Action::Forward {
                    clusters,
                    total,
                    timeout,
                    hash_policy,
                    retry,
                    faults,
                } => {
                    let cluster = if clusters.len() == 1 {
                        clusters.first().map(|(_, c)| c)
                    } else {
                        let x = rand::random::<u64>() % total;
                        clusters.iter().find(|(acc, _)| x < *acc).map(|(_, c)| c)
                    };
                    match cluster {
                        Some(cluster) => Ok(Selection {
                            cluster,
                            timeout: *timeout,
                            hash: if hash_policy.is_empty() {
                                None
                            } else {
                                request_hash(hash_policy, headers, channel_id)
                            },
                            retry: retry.as_ref(),
                            faults,
                        }),
                        None => Err("route has no cluster".into()),
                    }
                }
            };
        }
        Err(format!("no route matches path \"{path}\"").into())
    }
}
