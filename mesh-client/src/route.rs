//! Per-request route and cluster selection (gRFC A28).
//!
//! A [`RouteTable`] is compiled from one [`TargetConfig`] when it is published: the virtual
//! host is chosen once (by the target's authority, as gRPC does), each referenced cluster
//! gets one shared [`ClusterPool`], and weighted clusters become cumulative weights. A
//! request then costs one pass over the routes and, for a split, one random number.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::balance::{ClusterPool, OutlierRegistry, request_hash};
use crate::config::{HashPolicy, RouteAction, RouteMatch, TargetConfig};
use crate::transport::ConnectionSet;

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
    },
    Fail(Arc<str>),
}

/// A cluster as seen by routing: its pool, or why it cannot be used.
#[derive(Debug, Clone)]
pub enum ClusterTarget {
    /// A usable cluster.
    Pool(Arc<ClusterPool>),
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
    /// The route's timeout, if any (gRFC A31).
    pub timeout: Option<Duration>,
    /// The request hash from the route's `hash_policy` (gRFC A42), if any policy yielded one.
    pub hash: Option<u64>,
}

/// The routes of one target, ready for per-request selection.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<CompiledRoute>,
    /// Set when no virtual host matches the target: every RPC fails with this.
    no_virtual_host: Option<Arc<str>>,
    addresses: HashSet<SocketAddr>,
}

impl RouteTable {
    /// Compiles `config` for requests whose authority is `authority`, creating or reusing
    /// endpoint connections in `conns` and clusters' outlier detectors (gRFC A50) in
    /// `outliers`, so that ejections survive config updates.
    pub fn build(
        config: &TargetConfig,
        authority: &str,
        conns: &ConnectionSet,
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
            };
        };
        let mut pools: BTreeMap<&str, ClusterTarget> = BTreeMap::new();
        let mut target_for = |name: &str| -> ClusterTarget {
            if let Some(t) = pools.get(name) {
                return t.clone();
            }
            let t = match config.clusters.get(name) {
                Some(Ok(cc)) => {
                    // Never fall back to plaintext: a TLS cluster whose settings cannot be
                    // met fails the RPCs routed to it, with the reason.
                    let tls = match &cc.cluster.tls {
                        None => Ok(None),
                        Some(t) => conns.tls_client(t).map(Some),
                    };
                    match tls {
                        Err(reason) => ClusterTarget::Unavailable {
                            name: name.into(),
                            reason: reason.into(),
                        },
                        Ok(tls) => {
                            let pool = ClusterPool::build(
                                name,
                                &cc.cluster.lb_policy,
                                &cc.endpoints,
                                conns,
                                tls.as_ref(),
                                cc.cluster
                                    .outlier_detection
                                    .as_ref()
                                    .and_then(|od| outliers.detector(name, od)),
                            );
                            addresses.extend(pool.endpoints().map(|e| e.addr()));
                            ClusterTarget::Pool(Arc::new(pool))
                        }
                    }
                }
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
        let routes = vh
            .routes
            .iter()
            .map(|r| {
                let action = match &r.action {
                    RouteAction::Forward {
                        clusters,
                        timeout,
                        hash_policy,
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
                            Action::Forward {
                                clusters: out,
                                total: acc,
                                timeout: *timeout,
                                hash_policy: hash_policy.clone(),
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
        RouteTable {
            routes,
            no_virtual_host: None,
            addresses,
        }
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
                        }),
                        None => Err("route has no cluster".into()),
                    }
                }
            };
        }
        Err(format!("no route matches path \"{path}\"").into())
    }
}
