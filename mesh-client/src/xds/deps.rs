//! The dependency manager: one target's LDS → RDS → CDS → EDS tree, published as one
//! immutable [`TargetConfig`] only once every resource it needs has resolved (gRFC A74).
//!
//! A task per target keeps one [`Subscription`] per resource the tree currently needs,
//! walks the tree again whenever one of them changes, subscribes to what became needed and
//! drops what no longer is (so a route change that stops referencing a cluster unsubscribes
//! it). The walk itself (`walk`) is a pure function of the resource states.
//!
//! Aggregate clusters (gRFC A37, A75) are followed recursively: each child is subscribed,
//! the graph is flattened depth first into its leaf (EDS and LOGICAL_DNS) clusters in
//! priority order, a cluster reached twice contributes once, a cycle or a graph deeper than
//! [`MAX_AGGREGATE_DEPTH`] is an error for the RPCs routed to the aggregate, and a child that
//! does not exist or was rejected is skipped (an aggregate left with no leaf is an error).
//! LOGICAL_DNS leaves are resolved here (A74) by one task per name (`DnsWatch`, tokio's
//! resolver, again every [`DNS_REFRESH_INTERVAL`]), stopped when no tree needs the name any
//! more; a failure after a good answer keeps the answer. A tree is complete only when every
//! leaf's endpoints (EDS resource or first DNS answer) are known.
//!
//! Publication rules: `Ready` only with the whole tree resolved (a cluster that does not
//! exist or was rejected is resolved, as an `Err` entry failing only the RPCs routed to it);
//! once `Ready`, a tree waiting for a newly referenced resource keeps the previous
//! configuration in force; LDS or RDS not existing or rejected (with no good value) is an
//! `Error` naming the resource; a NACKed update of a good resource keeps the good value
//! (gRFC A88 default).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::XdsError;
use super::client::{ResourceState, Subscription, XdsClient};
use super::resource::{Resource, ResourceType};
use crate::config::{
    ClusterConfig, ClusterKind, ClusterLoadAssignment, Endpoint, HealthStatus, LocalityEndpoints,
    LocalityName, RouteAction, RouteConfig, RouteSource, TargetConfig,
};

/// gRFC A37: how deep aggregate clusters may nest (as gRPC: a cluster at depth 16 fails).
pub const MAX_AGGREGATE_DEPTH: usize = 16;

/// How many walks one change may take: each new subscription can reveal a deeper level
/// (LDS → RDS → CDS (→ up to 16 aggregate levels) → EDS) when it is already cached; the
/// rest is margin.
const MAX_WALKS_PER_CHANGE: usize = MAX_AGGREGATE_DEPTH + 8;

/// The configuration state of one target.
#[derive(Debug, Clone)]
pub enum TargetState {
    /// Not every resource has arrived yet.
    Pending {
        /// The first missing resource, e.g. `LDS "greeter:8080"`.
        waiting_for: String,
    },
    /// The complete tree.
    Ready(Arc<TargetConfig>),
    /// The tree cannot be built: its listener or route configuration does not exist, was
    /// rejected with no good value, or has no virtual host for the target.
    Error {
        /// The resource at fault, e.g. `RDS "greeter-route"`.
        resource: String,
        /// What is wrong.
        message: String,
    },
}

/// Watches one target's configuration; dropping it unsubscribes everything it needed.
#[derive(Debug)]
pub struct TargetWatch {
    rx: watch::Receiver<TargetState>,
    task: tokio::task::JoinHandle<()>,
}

impl TargetWatch {
    /// The current state (a clone).
    pub fn borrow(&self) -> TargetState {
        self.rx.borrow().clone()
    }

    /// Waits until the state changes after the last `changed` (or the watch's creation).
    pub async fn changed(&mut self) -> Result<(), XdsError> {
        self.rx.changed().await.map_err(|_| XdsError::Closed)
    }
}

impl Drop for TargetWatch {
    fn drop(&mut self) {
        // Dropping the task drops its subscriptions.
        self.task.abort();
    }
}

type Key = (ResourceType, String);

/// `LDS "name"`.
fn label(ty: ResourceType, name: &str) -> String {
    format!("{} \"{name}\"", ty.short_name())
}

/// Starts the task of one target.
pub(crate) fn spawn(client: XdsClient, listener_name: &str) -> TargetWatch {
    let (tx, rx) = watch::channel(TargetState::Pending {
        waiting_for: label(ResourceType::Listener, listener_name),
    });
    let task = client.spawn(run(client.clone(), listener_name.to_string(), tx));
    TargetWatch { rx, task }
}

async fn run(client: XdsClient, listener_name: String, tx: watch::Sender<TargetState>) {
    let mut subs: BTreeMap<Key, Subscription> = BTreeMap::new();
    let mut resolvers: BTreeMap<DnsKey, DnsWatch> = BTreeMap::new();
    // Ends when the TargetWatch is dropped (the task is also aborted then).
    loop {
        let walk_now = |subs: &BTreeMap<Key, Subscription>,
                        resolvers: &BTreeMap<DnsKey, DnsWatch>| {
            walk(
                &listener_name,
                |ty, name| subs.get(&(ty, name.to_string())).map(Subscription::borrow),
                |host, port| {
                    resolvers
                        .get(&(host.to_string(), port))
                        .map(|r| r.rx.borrow().clone())
                },
            )
        };
        let mut result = walk_now(&subs, &resolvers);
        for _ in 0..MAX_WALKS_PER_CHANGE {
            let mut added = false;
            for key in &result.wanted {
                if !subs.contains_key(key) {
                    subs.insert(key.clone(), client.subscribe(key.0, &key.1));
                    added = true;
                }
            }
            for key in &result.dns {
                if !resolvers.contains_key(key) {
                    let r = DnsWatch::start(&client, &key.0, key.1, DNS_REFRESH_INTERVAL);
                    resolvers.insert(key.clone(), r);
                    added = true;
                }
            }
            if !added {
                break;
            }
            result = walk_now(&subs, &resolvers);
        }
        let wanted: BTreeSet<&Key> = result.wanted.iter().collect();
        subs.retain(|key, _| wanted.contains(key));
        // A LOGICAL_DNS name no longer needed stops being resolved.
        let wanted_dns: BTreeSet<&DnsKey> = result.dns.iter().collect();
        resolvers.retain(|key, _| wanted_dns.contains(key));
        publish(&tx, result.state);

        if subs.is_empty() {
            return;
        }
        let mut changes: Vec<std::pin::Pin<Box<dyn Future<Output = bool> + Send + '_>>> =
            Vec::with_capacity(subs.len() + resolvers.len());
        for s in subs.values_mut() {
            changes.push(Box::pin(async move { s.changed().await.is_ok() }));
        }
        for r in resolvers.values_mut() {
            changes.push(Box::pin(async move { r.rx.changed().await.is_ok() }));
        }
        tokio::select! {
            _ = tx.closed() => return,
            (ok, _, _) = futures::future::select_all(changes) => if !ok { return },
        }
    }
}

/// Publishes a walk's state: a pending tree never replaces a ready one (gRFC A74).
fn publish(tx: &watch::Sender<TargetState>, state: TargetState) {
    tx.send_if_modified(|current| match (&*current, state) {
        (TargetState::Ready(_), TargetState::Pending { .. }) => false,
        (TargetState::Pending { waiting_for: a }, TargetState::Pending { waiting_for: b })
            if *a == b =>
        {
            false
        }
        (_, next) => {
            *current = next;
            true
        }
    });
}

/// The result of one walk over the tree.
#[derive(Debug, Clone)]
pub(crate) struct Walk {
    /// Every resource the tree needs now, in walk order, without duplicates.
    pub(crate) wanted: Vec<Key>,
    /// Every LOGICAL_DNS name the tree needs resolved now (gRFC A37).
    pub(crate) dns: Vec<DnsKey>,
    /// The state of the target given the resources seen.
    pub(crate) state: TargetState,
}

/// A resource's state as the walk sees it.
enum Resolved {
    Pending,
    Failed(String),
    Ready(Resource),
}

fn resolve(state: Option<ResourceState>) -> Resolved {
    match state {
        None | Some(ResourceState::Requested) => Resolved::Pending,
        Some(ResourceState::Ready(r) | ResourceState::ReadyWithError(r, _)) => Resolved::Ready(r),
        Some(ResourceState::Error(message)) => Resolved::Failed(message),
        Some(ResourceState::DoesNotExist) => Resolved::Failed("does not exist".to_string()),
    }
}

/// Walks a target's tree over the resource states given by `lookup` (`None`: not
/// subscribed yet, i.e. pending).
pub(crate) fn walk(
    listener_name: &str,
    lookup: impl Fn(ResourceType, &str) -> Option<ResourceState>,
    dns: impl Fn(&str, u16) -> Option<DnsState>,
) -> Walk {
    let mut wanted: Vec<Key> = Vec::new();
    let want = |ty: ResourceType, name: &str, wanted: &mut Vec<Key>| {
        let key = (ty, name.to_string());
        if !wanted.contains(&key) {
            wanted.push(key);
        }
    };
    let done = |wanted: Vec<Key>, state: TargetState| Walk {
        wanted,
        dns: Vec::new(),
        state,
    };
    let wrong_type = |resource: String| TargetState::Error {
        resource,
        message: "unexpected resource type".to_string(),
    };

    let lds = label(ResourceType::Listener, listener_name);
    want(ResourceType::Listener, listener_name, &mut wanted);
    let listener = match resolve(lookup(ResourceType::Listener, listener_name)) {
        Resolved::Pending => return done(wanted, TargetState::Pending { waiting_for: lds }),
        Resolved::Failed(message) => {
            return done(
                wanted,
                TargetState::Error {
                    resource: lds,
                    message,
                },
            );
        }
        Resolved::Ready(Resource::Listener(l)) => l,
        Resolved::Ready(_) => return done(wanted, wrong_type(lds)),
    };

    let (route_label, route_config): (String, Arc<RouteConfig>) = match &listener.http.route_source
    {
        RouteSource::Inline(rc) => (lds, rc.clone()),
        RouteSource::Rds(name) => {
            let rds = label(ResourceType::RouteConfiguration, name);
            want(ResourceType::RouteConfiguration, name, &mut wanted);
            match resolve(lookup(ResourceType::RouteConfiguration, name)) {
                Resolved::Pending => {
                    return done(wanted, TargetState::Pending { waiting_for: rds });
                }
                Resolved::Failed(message) => {
                    return done(
                        wanted,
                        TargetState::Error {
                            resource: rds,
                            message,
                        },
                    );
                }
                Resolved::Ready(Resource::RouteConfig(rc)) => (rds, rc),
                Resolved::Ready(_) => return done(wanted, wrong_type(rds)),
            }
        }
    };

    let Some(vhost) = route_config.find_virtual_host(listener_name) else {
        return done(
            wanted,
            TargetState::Error {
                resource: route_label,
                message: format!("no virtual host matches the authority \"{listener_name}\""),
            },
        );
    };
    let cluster_names: BTreeSet<&str> = vhost
        .routes
        .iter()
        .filter_map(|r| match &r.action {
            RouteAction::Forward { clusters, .. } => Some(clusters),
            _ => None,
        })
        .flatten()
        .map(|wc| wc.name.as_str())
        .collect();

    let mut graph = Graph {
        lookup: &lookup,
        dns: &dns,
        wanted,
        dns_wanted: Vec::new(),
        first_pending: None,
    };
    let mut clusters = BTreeMap::new();
    for name in cluster_names {
        let mut seen = BTreeSet::new();
        let mut path = Vec::new();
        match graph.node(name, 0, &mut seen, &mut path) {
            Node::Pending => {}
            Node::Fatal(message) => {
                clusters.insert(name.to_string(), Err(message));
            }
            Node::Leaves(leaves) => {
                clusters.insert(name.to_string(), graph.top_level(name, leaves));
            }
        }
    }
    let Graph {
        wanted,
        dns_wanted,
        first_pending,
        ..
    } = graph;
    let state = match first_pending {
        Some(waiting_for) => TargetState::Pending { waiting_for },
        None => TargetState::Ready(Arc::new(TargetConfig {
            listener,
            route_config,
            clusters,
        })),
    };
    Walk {
        wanted,
        dns: dns_wanted,
        state,
    }
}

/// What one cluster of the graph (gRFC A37) contributes.
enum Node {
    /// Some resource below it has not arrived (recorded in `Graph::first_pending`).
    Pending,
    /// Its leaf clusters, in priority order: itself for an EDS or LOGICAL_DNS cluster; none
    /// for a child that was already visited or does not exist / was rejected.
    Leaves(Vec<ClusterConfig>),
    /// An error that fails the whole top-level cluster (depth, cycle, or a failed
    /// top-level resource).
    Fatal(String),
}

/// The walk over the clusters of one target: what it needs and the first thing missing.
struct Graph<'a> {
    lookup: &'a dyn Fn(ResourceType, &str) -> Option<ResourceState>,
    dns: &'a dyn Fn(&str, u16) -> Option<DnsState>,
    wanted: Vec<Key>,
    dns_wanted: Vec<DnsKey>,
    first_pending: Option<String>,
}

impl Graph<'_> {
    fn want(&mut self, ty: ResourceType, name: &str) {
        let key = (ty, name.to_string());
        if !self.wanted.contains(&key) {
            self.wanted.push(key);
        }
    }

    fn pending(&mut self, what: String) -> Node {
        self.first_pending.get_or_insert(what);
        Node::Pending
    }

    /// Resolves cluster `name` at `depth` (0: referenced by a route). `seen` holds every
    /// cluster already visited in this top-level cluster's graph (each contributes once);
    /// `path` the aggregate clusters from the top down to here (a repeat is a cycle).
    ///
    /// A top-level cluster that does not exist or was rejected, or whose endpoints failed,
    /// is an error for the RPCs routed to it (gRFC A74). Below an aggregate, a child that
    /// does not exist or was rejected is skipped, and a leaf whose EDS or DNS resolution
    /// failed has no endpoints (so the next priority takes the traffic), as grpc-go's
    /// dependency manager does.
    fn node(
        &mut self,
        name: &str,
        depth: usize,
        seen: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Node {
        let cds = label(ResourceType::Cluster, name);
        if path.iter().any(|p| p == name) {
            return Node::Fatal(format!(
                "aggregate cluster graph has a cycle: {} -> {name}",
                path.join(" -> ")
            ));
        }
        if depth >= MAX_AGGREGATE_DEPTH {
            return Node::Fatal(format!(
                "aggregate cluster graph exceeds max depth ({MAX_AGGREGATE_DEPTH})"
            ));
        }
        if !seen.insert(name.to_string()) {
            return Node::Leaves(Vec::new());
        }
        self.want(ResourceType::Cluster, name);
        let cluster = match resolve((self.lookup)(ResourceType::Cluster, name)) {
            Resolved::Pending => return self.pending(cds),
            Resolved::Failed(message) if depth == 0 => {
                return Node::Fatal(format!("{cds}: {message}"));
            }
            Resolved::Failed(_) => return Node::Leaves(Vec::new()),
            Resolved::Ready(Resource::Cluster(c)) => c,
            Resolved::Ready(_) if depth == 0 => {
                return Node::Fatal(format!("{cds}: unexpected resource type"));
            }
            Resolved::Ready(_) => return Node::Leaves(Vec::new()),
        };
        let leaf = |endpoints: Arc<ClusterLoadAssignment>| {
            Node::Leaves(vec![ClusterConfig {
                cluster: cluster.clone(),
                endpoints,
                leaves: Vec::new(),
            }])
        };
        let no_endpoints = |name: &str| {
            Arc::new(ClusterLoadAssignment {
                cluster_name: name.to_string(),
                overprovisioning_factor: None,
                localities: Vec::new(),
            })
        };
        match &cluster.kind {
            ClusterKind::Eds { service_name } => {
                let eds = label(ResourceType::ClusterLoadAssignment, service_name);
                self.want(ResourceType::ClusterLoadAssignment, service_name);
                match resolve((self.lookup)(
                    ResourceType::ClusterLoadAssignment,
                    service_name,
                )) {
                    Resolved::Pending => self.pending(eds),
                    Resolved::Ready(Resource::Endpoints(endpoints)) => leaf(endpoints),
                    Resolved::Failed(message) if depth == 0 => {
                        Node::Fatal(format!("{eds}: {message}"))
                    }
                    Resolved::Ready(_) if depth == 0 => {
                        Node::Fatal(format!("{eds}: unexpected resource type"))
                    }
                    Resolved::Failed(_) | Resolved::Ready(_) => leaf(no_endpoints(service_name)),
                }
            }
            ClusterKind::LogicalDns { host, port } => {
                let key = (host.clone(), *port);
                let what = dns_label(host, *port);
                if !self.dns_wanted.contains(&key) {
                    self.dns_wanted.push(key);
                }
                match (self.dns)(host, *port) {
                    None | Some(DnsState::Pending) => self.pending(what),
                    Some(DnsState::Resolved(addrs)) => leaf(Arc::new(dns_endpoints(name, &addrs))),
                    Some(DnsState::Failed(message)) if depth == 0 => {
                        Node::Fatal(format!("{what}: {message}"))
                    }
                    Some(DnsState::Failed(_)) => leaf(no_endpoints(name)),
                }
            }
            ClusterKind::Aggregate { clusters: children } => {
                path.push(name.to_string());
                let mut leaves = Vec::new();
                let mut pending = false;
                for child in children {
                    match self.node(child, depth + 1, seen, path) {
                        Node::Pending => pending = true,
                        Node::Leaves(l) => leaves.extend(l),
                        fatal @ Node::Fatal(_) => {
                            path.pop();
                            return fatal;
                        }
                    }
                }
                path.pop();
                if pending {
                    Node::Pending
                } else {
                    Node::Leaves(leaves)
                }
            }
        }
    }

    /// The entry of a top-level cluster whose graph resolved to `leaves`.
    fn top_level(&self, name: &str, leaves: Vec<ClusterConfig>) -> Result<ClusterConfig, String> {
        let cds = label(ResourceType::Cluster, name);
        let cluster = match resolve((self.lookup)(ResourceType::Cluster, name)) {
            Resolved::Ready(Resource::Cluster(c)) => c,
            _ => return Err(format!("{cds}: not available")),
        };
        if !matches!(cluster.kind, ClusterKind::Aggregate { .. }) {
            return leaves
                .into_iter()
                .next()
                .ok_or_else(|| format!("{cds}: no endpoints resolved"));
        }
        if leaves.is_empty() {
            return Err(format!(
                "{cds}: aggregate cluster graph has no leaf clusters (every underlying cluster is missing, invalid or repeated)"
            ));
        }
        // For display: every leaf's priorities, one after the other (gRFC A37).
        let mut localities = Vec::new();
        let mut offset = 0u32;
        for leaf in &leaves {
            let levels = leaf
                .endpoints
                .localities
                .iter()
                .map(|l| l.priority.saturating_add(1))
                .max()
                .unwrap_or(0);
            localities.extend(leaf.endpoints.localities.iter().map(|l| LocalityEndpoints {
                priority: l.priority.saturating_add(offset),
                ..l.clone()
            }));
            offset = offset.saturating_add(levels);
        }
        Ok(ClusterConfig {
            cluster,
            endpoints: Arc::new(ClusterLoadAssignment {
                cluster_name: name.to_string(),
                overprovisioning_factor: None,
                localities,
            }),
            leaves,
        })
    }
}

/// `DNS "host:port"`.
fn dns_label(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("DNS \"[{host}]:{port}\"")
    } else {
        format!("DNS \"{host}:{port}\"")
    }
}

/// A LOGICAL_DNS cluster's endpoints (gRFC A37): one priority, one locality with empty
/// fields, every resolved address in resolver order.
fn dns_endpoints(cluster: &str, addrs: &[SocketAddr]) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        overprovisioning_factor: None,
        localities: vec![LocalityEndpoints {
            locality: LocalityName::default(),
            weight: 1,
            priority: 0,
            endpoints: addrs
                .iter()
                .map(|a| Endpoint {
                    address: *a,
                    weight: 1,
                    health: HealthStatus::Unknown,
                    hash_key: None,
                })
                .collect(),
        }],
    }
}

// ---- LOGICAL_DNS resolution (gRFC A37, A74: owned by the dependency manager) ----

/// A LOGICAL_DNS name: host and port.
pub(crate) type DnsKey = (String, u16);

/// How often a LOGICAL_DNS name is resolved again.
pub const DNS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// How long one resolution may take before it counts as failed.
const DNS_TIMEOUT: Duration = Duration::from_secs(10);

/// What the resolver of one LOGICAL_DNS name has found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DnsState {
    /// No answer yet.
    Pending,
    /// The addresses, in resolver order, without duplicates. A later failure keeps them.
    Resolved(Vec<SocketAddr>),
    /// Resolution failed and nothing was ever resolved.
    Failed(String),
}

/// One LOGICAL_DNS name's resolver task; dropping it stops the task.
#[derive(Debug)]
struct DnsWatch {
    rx: watch::Receiver<DnsState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DnsWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DnsWatch {
    fn start(client: &XdsClient, host: &str, port: u16, every: Duration) -> Self {
        let (tx, rx) = watch::channel(DnsState::Pending);
        let task = client.spawn(resolve_periodically(host.to_string(), port, tx, every));
        DnsWatch { rx, task }
    }
}

/// Resolves `host:port` with tokio's resolver now and every `every`, until the receiver
/// is gone. A failure after a good answer keeps the good answer (as grpc-go does).
async fn resolve_periodically(
    host: String,
    port: u16,
    tx: watch::Sender<DnsState>,
    every: Duration,
) {
    loop {
        let result =
            match tokio::time::timeout(DNS_TIMEOUT, tokio::net::lookup_host((host.as_str(), port)))
                .await
            {
                Ok(Ok(addrs)) => {
                    let mut unique: Vec<SocketAddr> = Vec::new();
                    for a in addrs {
                        if !unique.contains(&a) {
                            unique.push(a);
                        }
                    }
                    if unique.is_empty() {
                        Err("resolved to no addresses".to_string())
                    } else {
                        Ok(unique)
                    }
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {DNS_TIMEOUT:?}")),
            };
        if let Err(e) = &result {
            tracing::debug!(host, port, error = %e, "LOGICAL_DNS resolution failed");
        }
        tx.send_if_modified(|current| {
            let next = match result {
                Ok(addrs) => DnsState::Resolved(addrs),
                Err(_) if matches!(current, DnsState::Resolved(_)) => return false,
                Err(e) => DnsState::Failed(e),
            };
            if *current == next {
                false
            } else {
                *current = next;
                true
            }
        });
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::config::{
        Cluster, HttpConnectionManager, LbPolicy, Listener, PathMatcher, Route, RouteMatch,
        VirtualHost, WeightedCluster,
    };
    use crate::xds::fixtures;
    use crate::xds::test_server::{ServerStream, TestServer, WAIT};
    use xds_proto::envoy::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
    use xds_proto::protobuf::Any;
    use xds_proto::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

    const LDS: ResourceType = ResourceType::Listener;
    const RDS: ResourceType = ResourceType::RouteConfiguration;
    const CDS: ResourceType = ResourceType::Cluster;
    const EDS: ResourceType = ResourceType::ClusterLoadAssignment;

    fn listener(name: &str, source: RouteSource) -> Resource {
        Resource::Listener(Arc::new(Listener {
            name: name.into(),
            http: HttpConnectionManager {
                route_source: source,
                http_filters: vec![],
                max_stream_duration: None,
            },
        }))
    }

    fn forward(clusters: &[&str]) -> Route {
        Route {
            matcher: RouteMatch {
                path: PathMatcher::Prefix("/".into()),
                case_sensitive: true,
                headers: vec![],
                fraction_per_million: None,
            },
            action: RouteAction::Forward {
                clusters: clusters
                    .iter()
                    .map(|c| WeightedCluster {
                        name: c.to_string(),
                        weight: 1,
                    })
                    .collect(),
                timeout: None,
                hash_policy: Vec::new(),
                retry_policy: None,
            },
            filter_overrides: Default::default(),
        }
    }

    fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
        VirtualHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes,
            filter_overrides: Default::default(),
            retry_policy: None,
        }
    }

    fn route_config(name: &str, vhosts: Vec<VirtualHost>) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            virtual_hosts: vhosts,
        }
    }

    fn cluster(name: &str, service: &str) -> Resource {
        Resource::Cluster(Arc::new(Cluster {
            name: name.into(),
            kind: ClusterKind::Eds {
                service_name: service.into(),
            },
            lb_policy: LbPolicy::RoundRobin,
            max_requests: None,
            retry_budget: None,
            tls: None,
            outlier_detection: None,
        }))
    }

    fn cluster_of(name: &str, kind: ClusterKind) -> Resource {
        let Resource::Cluster(c) = cluster(name, name) else {
            unreachable!()
        };
        Resource::Cluster(Arc::new(Cluster {
            kind,
            ..(*c).clone()
        }))
    }

    fn aggregate(name: &str, children: &[&str]) -> Resource {
        cluster_of(
            name,
            ClusterKind::Aggregate {
                clusters: children.iter().map(|c| c.to_string()).collect(),
            },
        )
    }

    fn dns_cluster(name: &str, host: &str, port: u16) -> Resource {
        cluster_of(
            name,
            ClusterKind::LogicalDns {
                host: host.into(),
                port,
            },
        )
    }

    fn cla(name: &str) -> Resource {
        Resource::Endpoints(Arc::new(ClusterLoadAssignment {
            cluster_name: name.into(),
            localities: vec![],
            overprovisioning_factor: None,
        }))
    }

    #[derive(Default)]
    struct World(HashMap<Key, ResourceState>, HashMap<DnsKey, DnsState>);

    impl World {
        fn set(&mut self, ty: ResourceType, name: &str, state: ResourceState) -> &mut Self {
            self.0.insert((ty, name.to_string()), state);
            self
        }
        fn ready(&mut self, r: Resource) -> &mut Self {
            let ty = r.resource_type();
            let name = r.name().to_string();
            self.set(ty, &name, ResourceState::Ready(r))
        }
        fn walk(&self, listener: &str) -> Walk {
            walk(
                listener,
                |ty, name| self.0.get(&(ty, name.to_string())).cloned(),
                |host, port| self.1.get(&(host.to_string(), port)).cloned(),
            )
        }
        fn dns(&mut self, host: &str, port: u16, state: DnsState) -> &mut Self {
            self.1.insert((host.to_string(), port), state);
            self
        }
    }

    /// L → RDS "r" → vhost for "svc" → clusters a (weighted with b) and b → EDS ea, eb.
    fn full_world() -> World {
        let mut w = World::default();
        w.ready(listener("svc", RouteSource::Rds("r".into())))
            .ready(Resource::RouteConfig(Arc::new(route_config(
                "r",
                vec![
                    vhost("other", &["other"], vec![forward(&["x"])]),
                    vhost(
                        "mine",
                        &["svc"],
                        vec![forward(&["b", "a"]), forward(&["a"])],
                    ),
                ],
            ))))
            .ready(cluster("a", "ea"))
            .ready(cluster("b", "eb"))
            .ready(cla("ea"))
            .ready(cla("eb"));
        w
    }

    fn keys(v: &[(ResourceType, &str)]) -> Vec<Key> {
        v.iter().map(|(t, n)| (*t, n.to_string())).collect()
    }

    #[track_caller]
    fn assert_pending(walk: &Walk, want: &str) {
        match &walk.state {
            TargetState::Pending { waiting_for } => assert_eq!(waiting_for, want),
            other => panic!("expected pending on {want}, got {other:?}"),
        }
    }

    #[track_caller]
    fn assert_error(walk: &Walk, want_resource: &str, want_message: &str) {
        match &walk.state {
            TargetState::Error { resource, message } => {
                assert_eq!(
                    (resource.as_str(), message.as_str()),
                    (want_resource, want_message)
                );
            }
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[track_caller]
    fn ready(walk: &Walk) -> Arc<TargetConfig> {
        match &walk.state {
            TargetState::Ready(cfg) => cfg.clone(),
            other => panic!("expected ready, got {other:?}"),
        }
    }

    #[test]
    fn nothing_yet_waits_for_the_listener() {
        let w = World::default().walk("svc");
        assert_pending(&w, "LDS \"svc\"");
        assert_eq!(w.wanted, keys(&[(LDS, "svc")]));
    }

    #[test]
    fn listener_then_waits_for_its_route_config() {
        let mut world = World::default();
        world.ready(listener("svc", RouteSource::Rds("r".into())));
        let w = world.walk("svc");
        assert_pending(&w, "RDS \"r\"");
        assert_eq!(w.wanted, keys(&[(LDS, "svc"), (RDS, "r")]));
    }

    #[test]
    fn full_tree_is_ready_with_every_referenced_cluster() {
        let w = full_world().walk("svc");
        let cfg = ready(&w);
        assert_eq!(cfg.listener.name, "svc");
        assert_eq!(cfg.route_config.name, "r");
        assert_eq!(
            cfg.clusters.keys().collect::<Vec<_>>(),
            vec!["a", "b"],
            "x is another vhost's"
        );
        for (name, eds) in [("a", "ea"), ("b", "eb")] {
            let entry = cfg.clusters.get(name).and_then(|c| c.as_ref().ok());
            assert_eq!(entry.map(|c| c.endpoints.cluster_name.as_str()), Some(eds));
        }
        assert_eq!(
            w.wanted,
            keys(&[
                (LDS, "svc"),
                (RDS, "r"),
                (CDS, "a"),
                (EDS, "ea"),
                (CDS, "b"),
                (EDS, "eb")
            ])
        );
    }

    #[test]
    fn missing_cluster_or_endpoints_keeps_it_pending_naming_the_first() {
        let mut world = full_world();
        world.0.remove(&(CDS, "b".to_string()));
        world.set(EDS, "ea", ResourceState::Requested);
        let w = world.walk("svc");
        assert_pending(&w, "EDS \"ea\"");
        // Every level is still requested in parallel.
        assert_eq!(
            w.wanted,
            keys(&[
                (LDS, "svc"),
                (RDS, "r"),
                (CDS, "a"),
                (EDS, "ea"),
                (CDS, "b")
            ])
        );
    }

    #[test]
    fn failed_clusters_resolve_as_errors() {
        let mut world = full_world();
        world.set(CDS, "a", ResourceState::DoesNotExist);
        world.set(EDS, "eb", ResourceState::Error("bad endpoint".into()));
        let w = world.walk("svc");
        let cfg = ready(&w);
        assert_eq!(
            cfg.clusters.get("a").cloned().map(|r| r.err()),
            Some(Some("CDS \"a\": does not exist".to_string()))
        );
        assert_eq!(
            cfg.clusters.get("b").cloned().map(|r| r.err()),
            Some(Some("EDS \"eb\": bad endpoint".to_string()))
        );
        assert!(
            !w.wanted.contains(&(EDS, "ea".to_string())),
            "no EDS for a missing cluster"
        );
    }

    #[test]
    fn listener_or_route_config_failure_is_a_target_error() {
        let mut world = World::default();
        world.set(LDS, "svc", ResourceState::DoesNotExist);
        assert_error(&world.walk("svc"), "LDS \"svc\"", "does not exist");
        world.set(
            LDS,
            "svc",
            ResourceState::Error("api_listener: missing".into()),
        );
        assert_error(&world.walk("svc"), "LDS \"svc\"", "api_listener: missing");
        let mut world = full_world();
        world.set(RDS, "r", ResourceState::DoesNotExist);
        let w = world.walk("svc");
        assert_error(&w, "RDS \"r\"", "does not exist");
        assert_eq!(
            w.wanted,
            keys(&[(LDS, "svc"), (RDS, "r")]),
            "clusters are released"
        );
    }

    #[test]
    fn nacked_update_of_a_good_resource_keeps_the_good_value() {
        let mut world = full_world();
        let good = world
            .0
            .get(&(RDS, "r".to_string()))
            .and_then(|s| s.resource().cloned());
        let Some(good) = good else {
            panic!("no route config")
        };
        world.set(
            RDS,
            "r",
            ResourceState::ReadyWithError(good, "bad regex".into()),
        );
        assert_eq!(ready(&world.walk("svc")).clusters.len(), 2);
    }

    #[test]
    fn inline_route_config() {
        let mut world = World::default();
        let rc = route_config("inline", vec![vhost("v", &["*"], vec![forward(&["a"])])]);
        world
            .ready(listener("svc", RouteSource::Inline(Arc::new(rc))))
            .ready(cluster("a", "a"))
            .ready(cla("a"));
        let w = world.walk("svc");
        assert_eq!(ready(&w).route_config.name, "inline");
        assert_eq!(w.wanted, keys(&[(LDS, "svc"), (CDS, "a"), (EDS, "a")]));
    }

    #[test]
    fn no_matching_virtual_host_is_an_error() {
        let mut world = World::default();
        world
            .ready(listener("svc", RouteSource::Rds("r".into())))
            .ready(Resource::RouteConfig(Arc::new(route_config(
                "r",
                vec![vhost("v", &["other"], vec![])],
            ))));
        assert_error(
            &world.walk("svc"),
            "RDS \"r\"",
            "no virtual host matches the authority \"svc\"",
        );
    }

    #[test]
    fn route_change_drops_a_cluster_from_the_wanted_set() {
        let mut world = full_world();
        world.ready(Resource::RouteConfig(Arc::new(route_config(
            "r",
            vec![vhost("mine", &["svc"], vec![forward(&["a"])])],
        ))));
        let w = world.walk("svc");
        assert_eq!(ready(&w).clusters.keys().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(
            w.wanted,
            keys(&[(LDS, "svc"), (RDS, "r"), (CDS, "a"), (EDS, "ea")])
        );
    }

    /// The walk selects the virtual host with `RouteConfig::find_virtual_host`; these are
    /// the cases a target's authority relies on.
    #[test]
    fn virtual_host_domain_matching() {
        let rc = route_config(
            "r",
            vec![
                vhost("any", &["*"], vec![]),
                vhost("prefix", &["foo.*"], vec![]),
                vhost("short-suffix", &["*.com"], vec![]),
                vhost("suffix", &["*.example.com"], vec![]),
                vhost("exact", &["Api.Example.com"], vec![]),
                vhost("exact-dup", &["api.example.com"], vec![]),
            ],
        );
        let pick = |a: &str| rc.find_virtual_host(a).map(|v| v.name.clone());
        assert_eq!(
            pick("api.example.com").as_deref(),
            Some("exact"),
            "exact, case-insensitive, first wins"
        );
        assert_eq!(
            pick("www.example.com").as_deref(),
            Some("suffix"),
            "longest suffix"
        );
        assert_eq!(
            pick("foo.com").as_deref(),
            Some("short-suffix"),
            "suffix beats prefix"
        );
        assert_eq!(pick("foo.bar").as_deref(), Some("prefix"));
        assert_eq!(pick("elsewhere").as_deref(), Some("any"));
        let none = route_config("r", vec![vhost("v", &["*.example.com"], vec![])]);
        assert!(
            none.find_virtual_host(".example.com").is_none(),
            "a wildcard matches at least one character"
        );
    }

    #[test]
    fn pending_never_replaces_ready() {
        let (tx, rx) = watch::channel(TargetState::Pending {
            waiting_for: "LDS \"svc\"".into(),
        });
        publish(&tx, full_world().walk("svc").state);
        assert!(matches!(*rx.borrow(), TargetState::Ready(_)));
        publish(
            &tx,
            TargetState::Pending {
                waiting_for: "CDS \"new\"".into(),
            },
        );
        assert!(matches!(*rx.borrow(), TargetState::Ready(_)));
        publish(
            &tx,
            TargetState::Error {
                resource: "LDS \"svc\"".into(),
                message: "does not exist".into(),
            },
        );
        assert!(matches!(*rx.borrow(), TargetState::Error { .. }));
    }

    /// L → RDS "r" → every request to cluster `top`.
    fn world_to(top: &str) -> World {
        let mut w = World::default();
        w.ready(listener("svc", RouteSource::Rds("r".into())))
            .ready(Resource::RouteConfig(Arc::new(route_config(
                "r",
                vec![vhost("mine", &["svc"], vec![forward(&[top])])],
            ))));
        w
    }

    fn cla_with(name: &str, addrs: &[&str]) -> Resource {
        Resource::Endpoints(Arc::new(ClusterLoadAssignment {
            cluster_name: name.into(),
            overprovisioning_factor: None,
            localities: vec![LocalityEndpoints {
                locality: LocalityName::default(),
                weight: 1,
                priority: 0,
                endpoints: addrs
                    .iter()
                    .map(|a| Endpoint {
                        address: a.parse().unwrap(),
                        weight: 1,
                        health: HealthStatus::Unknown,
                        hash_key: None,
                    })
                    .collect(),
            }],
        }))
    }

    #[track_caller]
    fn leaf_names(cfg: &TargetConfig, top: &str) -> Vec<String> {
        match cfg.clusters.get(top) {
            Some(Ok(c)) => c.leaves.iter().map(|l| l.cluster.name.clone()).collect(),
            other => panic!("cluster {top} not ready: {other:?}"),
        }
    }

    #[track_caller]
    fn cluster_error(w: &Walk, top: &str) -> String {
        match ready(w).clusters.get(top) {
            Some(Err(e)) => e.clone(),
            other => panic!("cluster {top} is not an error: {other:?}"),
        }
    }

    /// gRFC A37: an aggregate [EDS, LOGICAL_DNS] resolves to its two leaves in order; its
    /// endpoints are the EDS priorities followed by the DNS addresses as the next priority.
    #[test]
    fn aggregate_of_eds_and_dns() {
        let mut world = world_to("agg");
        world
            .ready(aggregate("agg", &["primary", "secondary"]))
            .ready(cluster("primary", "primary-eds"))
            .ready(cla_with("primary-eds", &["10.0.0.1:80"]))
            .ready(dns_cluster("secondary", "db.example.com", 5432));
        let w = world.walk("svc");
        assert_pending(&w, "DNS \"db.example.com:5432\"");
        assert_eq!(w.dns, vec![("db.example.com".to_string(), 5432)]);

        world.dns(
            "db.example.com",
            5432,
            DnsState::Resolved(vec![
                "10.1.0.1:5432".parse().unwrap(),
                "10.1.0.2:5432".parse().unwrap(),
            ]),
        );
        let w = world.walk("svc");
        let cfg = ready(&w);
        assert_eq!(leaf_names(&cfg, "agg"), ["primary", "secondary"]);
        let Some(Ok(agg)) = cfg.clusters.get("agg") else {
            panic!()
        };
        let prio: Vec<(u32, Vec<String>)> = agg
            .endpoints
            .localities
            .iter()
            .map(|l| {
                (
                    l.priority,
                    l.endpoints.iter().map(|e| e.address.to_string()).collect(),
                )
            })
            .collect();
        assert_eq!(
            prio,
            vec![
                (0, vec!["10.0.0.1:80".to_string()]),
                (
                    1,
                    vec!["10.1.0.1:5432".to_string(), "10.1.0.2:5432".to_string()]
                )
            ]
        );
        assert_eq!(
            w.wanted,
            keys(&[
                (LDS, "svc"),
                (RDS, "r"),
                (CDS, "agg"),
                (CDS, "primary"),
                (EDS, "primary-eds"),
                (CDS, "secondary")
            ])
        );
        assert!(
            !cfg.clusters.contains_key("primary"),
            "a leaf has no top-level entry of its own (A74)"
        );
    }

    /// gRFC A37: aggregates nest; a cluster reached twice (a diamond) contributes once, at
    /// its first position.
    #[test]
    fn nested_aggregates_flatten_depth_first_once_each() {
        let mut world = world_to("agg");
        world
            .ready(aggregate("agg", &["inner", "c", "a"]))
            .ready(aggregate("inner", &["a", "b"]))
            .ready(cluster("a", "a"))
            .ready(cluster("b", "b"))
            .ready(cluster("c", "c"))
            .ready(cla("a"))
            .ready(cla("b"))
            .ready(cla("c"));
        let cfg = ready(&world.walk("svc"));
        assert_eq!(leaf_names(&cfg, "agg"), ["a", "b", "c"]);
    }

    /// A cycle fails the RPCs routed to the aggregate, naming the path.
    #[test]
    fn aggregate_cycle_is_an_error_for_its_cluster() {
        let mut world = world_to("agg");
        world
            .ready(aggregate("agg", &["b", "c"]))
            .ready(aggregate("b", &["agg"]))
            .ready(cluster("c", "c"))
            .ready(cla("c"));
        let w = world.walk("svc");
        assert_eq!(
            cluster_error(&w, "agg"),
            "aggregate cluster graph has a cycle: agg -> b -> agg"
        );
    }

    /// gRFC A37 (as gRPC): 16 levels of clusters are fine, a 17th fails the aggregate.
    #[test]
    fn aggregate_depth_limit() {
        for (levels, ok) in [
            (MAX_AGGREGATE_DEPTH, true),
            (MAX_AGGREGATE_DEPTH + 1, false),
        ] {
            let mut world = world_to("c0");
            for i in 0..levels - 1 {
                world.ready(aggregate(&format!("c{i}"), &[&format!("c{}", i + 1)]));
            }
            let last = format!("c{}", levels - 1);
            world.ready(cluster(&last, &last)).ready(cla(&last));
            let w = world.walk("svc");
            if ok {
                assert_eq!(leaf_names(&ready(&w), "c0"), [last]);
            } else {
                assert_eq!(
                    cluster_error(&w, "c0"),
                    "aggregate cluster graph exceeds max depth (16)"
                );
            }
        }
    }

    /// A child that does not exist or was rejected is skipped; with no leaf left, the
    /// aggregate fails the RPCs routed to it (grpc-go's dependency manager).
    #[test]
    fn missing_or_invalid_children_are_skipped() {
        let mut world = world_to("agg");
        world
            .ready(aggregate("agg", &["gone", "bad", "p"]))
            .set(CDS, "gone", ResourceState::DoesNotExist)
            .set(CDS, "bad", ResourceState::Error("type: unsupported".into()))
            .ready(cluster("p", "p"))
            .ready(cla("p"));
        let w = world.walk("svc");
        assert_eq!(leaf_names(&ready(&w), "agg"), ["p"]);
        assert!(!w.wanted.contains(&(EDS, "gone".to_string())));

        world.set(CDS, "p", ResourceState::DoesNotExist);
        let w = world.walk("svc");
        assert!(
            cluster_error(&w, "agg")
                .starts_with("CDS \"agg\": aggregate cluster graph has no leaf clusters"),
            "{:?}",
            cluster_error(&w, "agg")
        );
    }

    /// Below an aggregate, failed endpoint resolution (EDS or DNS) leaves the leaf with no
    /// endpoints, so the next priority takes the traffic; at the top level it is an error.
    #[test]
    fn failed_leaf_endpoints_under_an_aggregate_are_empty() {
        let mut world = world_to("agg");
        world
            .ready(aggregate("agg", &["p", "d"]))
            .ready(cluster("p", "p"))
            .set(EDS, "p", ResourceState::DoesNotExist)
            .ready(dns_cluster("d", "nowhere.invalid", 80))
            .dns(
                "nowhere.invalid",
                80,
                DnsState::Failed("no such host".into()),
            );
        let cfg = ready(&world.walk("svc"));
        let Some(Ok(agg)) = cfg.clusters.get("agg") else {
            panic!()
        };
        assert_eq!(leaf_names(&cfg, "agg"), ["p", "d"]);
        assert!(agg.leaves.iter().all(|l| l.endpoints.localities.is_empty()));

        let mut world = world_to("d");
        world.ready(dns_cluster("d", "nowhere.invalid", 80)).dns(
            "nowhere.invalid",
            80,
            DnsState::Failed("no such host".into()),
        );
        assert_eq!(
            cluster_error(&world.walk("svc"), "d"),
            "DNS \"nowhere.invalid:80\": no such host"
        );
    }

    /// The resolver task answers with tokio's resolver and stops once nobody listens.
    #[tokio::test]
    async fn dns_resolver_task_resolves_and_stops() {
        let (tx, mut rx) = watch::channel(DnsState::Pending);
        let task = tokio::spawn(resolve_periodically(
            "127.0.0.1".into(),
            4242,
            tx,
            Duration::from_millis(20),
        ));
        tokio::time::timeout(WAIT, rx.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            *rx.borrow(),
            DnsState::Resolved(vec!["127.0.0.1:4242".parse().unwrap()])
        );
        drop(rx);
        tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    }

    /// Waits until the target's state satisfies `pred` (checking the current state first).
    async fn wait_for(
        w: &mut TargetWatch,
        what: &str,
        pred: impl Fn(&TargetState) -> bool,
    ) -> TargetState {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let state = w.borrow();
            if pred(&state) {
                return state;
            }
            match tokio::time::timeout_at(deadline, w.changed()).await {
                Ok(Ok(())) => {}
                other => panic!("target not {what} within {WAIT:?} ({other:?}); last {state:?}"),
            }
        }
    }

    async fn wait_ready(w: &mut TargetWatch, clusters: &[&str]) -> Arc<TargetConfig> {
        let want: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
        match wait_for(w, "ready", |s| {
            matches!(s, TargetState::Ready(cfg) if cfg.clusters.keys().cloned().collect::<Vec<_>>() == want)
        })
        .await
        {
            TargetState::Ready(cfg) => cfg,
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Reads requests until the last request of each listed type names exactly the listed
    /// resources; returns every request read.
    async fn until_subscribed(
        stream: &mut ServerStream,
        want: &[(&str, &[&str])],
    ) -> Vec<DiscoveryRequest> {
        let mut last: HashMap<String, Vec<String>> = HashMap::new();
        let mut seen = Vec::new();
        while !want.iter().all(|(ty, names)| {
            last.get(*ty)
                .is_some_and(|got| got.iter().map(String::as_str).eq(names.iter().copied()))
        }) {
            let r = stream.next_request().await;
            last.insert(r.type_url.clone(), r.resource_names.clone());
            seen.push(r);
        }
        seen
    }

    /// The ACK of response `nonce` (version `version`) is among `reqs`.
    #[track_caller]
    fn assert_acked(reqs: &[DiscoveryRequest], type_url: &str, version: &str, nonce: &str) {
        assert!(
            reqs.iter().any(|r| r.type_url == type_url
                && r.version_info == version
                && r.response_nonce == nonce
                && r.error_detail.is_none()),
            "no ACK of {type_url} {version}/{nonce} in {reqs:#?}"
        );
    }

    fn resp(type_url: &str, version: &str, nonce: &str, resources: Vec<Any>) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            type_url: type_url.into(),
            nonce: nonce.into(),
            resources,
            ..Default::default()
        }
    }

    fn addresses(cfg: &TargetConfig, cluster: &str) -> Vec<String> {
        let Some(Ok(c)) = cfg.clusters.get(cluster) else {
            panic!("cluster {cluster} not ready in {cfg:?}")
        };
        c.endpoints
            .localities
            .iter()
            .flat_map(|l| &l.endpoints)
            .map(|e| e.address.to_string())
            .collect()
    }

    /// gRFC A74 end to end: the test server serves L → R → C → E (valid resources); the
    /// target becomes Ready with every cluster and its endpoints; a route change that stops
    /// referencing a cluster publishes a new Ready without it and unsubscribes its CDS and
    /// EDS resources on the wire.
    #[tokio::test]
    async fn target_watch_end_to_end_with_a_route_change() {
        let mut server = TestServer::tcp().await;
        let client = XdsClient::new(server.bootstrap()).unwrap();
        let mut target = client.watch_target("svc");
        assert!(
            matches!(target.borrow(), TargetState::Pending { waiting_for } if waiting_for == "LDS \"svc\"")
        );

        let mut stream = server.next_stream().await;
        let lds = stream.next_request().await;
        assert_eq!(
            (lds.type_url.as_str(), lds.resource_names.clone()),
            (LISTENER, vec!["svc".to_string()])
        );
        assert!(lds.node.is_some());

        // LDS → RDS.
        stream.respond(resp(
            LISTENER,
            "1",
            "n1",
            vec![fixtures::listener("svc", "svc-route")],
        ));
        let reqs = until_subscribed(&mut stream, &[(ROUTE_CONFIGURATION, &["svc-route"])]).await;
        assert_acked(&reqs, LISTENER, "1", "n1");
        wait_for(&mut target, "waiting for RDS", |s| {
            matches!(s, TargetState::Pending { waiting_for } if waiting_for == "RDS \"svc-route\"")
        })
        .await;

        // RDS → CDS: the virtual host for "svc" routes to ca and cb.
        let two_clusters =
            fixtures::route_config("svc-route", &["svc"], &[("/svc.A/", "ca"), ("", "cb")]);
        stream.respond(resp(ROUTE_CONFIGURATION, "1", "n2", vec![two_clusters]));
        let reqs = until_subscribed(&mut stream, &[(CLUSTER, &["ca", "cb"])]).await;
        assert_acked(&reqs, ROUTE_CONFIGURATION, "1", "n2");

        // CDS → EDS: cb's endpoints are under its service name.
        stream.respond(resp(
            CLUSTER,
            "1",
            "n3",
            vec![
                fixtures::cluster("ca"),
                fixtures::eds_cluster("cb", "cb-eds"),
            ],
        ));
        let reqs =
            until_subscribed(&mut stream, &[(CLUSTER_LOAD_ASSIGNMENT, &["ca", "cb-eds"])]).await;
        assert_acked(&reqs, CLUSTER, "1", "n3");
        assert!(
            matches!(target.borrow(), TargetState::Pending { .. }),
            "not ready without endpoints: {:?}",
            target.borrow()
        );

        // EDS: the whole tree is there.
        stream.respond(resp(
            CLUSTER_LOAD_ASSIGNMENT,
            "1",
            "n4",
            vec![
                fixtures::endpoints("ca", &["10.0.0.1:8080"]),
                fixtures::endpoints("cb-eds", &["10.0.0.2:8080", "10.0.0.3:8080"]),
            ],
        ));
        let cfg = wait_ready(&mut target, &["ca", "cb"]).await;
        assert_eq!(cfg.listener.name, "svc");
        assert_eq!(cfg.route_config.name, "svc-route");
        assert_eq!(addresses(&cfg, "ca"), ["10.0.0.1:8080"]);
        assert_eq!(addresses(&cfg, "cb"), ["10.0.0.2:8080", "10.0.0.3:8080"]);
        assert_acked(
            &[stream.next_request().await],
            CLUSTER_LOAD_ASSIGNMENT,
            "1",
            "n4",
        );

        // The route stops referencing ca: a new Ready without it, and ca's CDS and EDS
        // subscriptions are removed (each request lists the remaining names).
        let one_cluster = fixtures::route_config("svc-route", &["svc"], &[("", "cb")]);
        stream.respond(resp(ROUTE_CONFIGURATION, "2", "n5", vec![one_cluster]));
        let reqs = until_subscribed(
            &mut stream,
            &[(CLUSTER, &["cb"]), (CLUSTER_LOAD_ASSIGNMENT, &["cb-eds"])],
        )
        .await;
        assert_acked(&reqs, ROUTE_CONFIGURATION, "2", "n5");
        let unsubscribe = |ty: &str| {
            reqs.iter()
                .find(|r| r.type_url == ty)
                .map(|r| (r.version_info.as_str(), r.response_nonce.as_str()))
        };
        // An unsubscription keeps the type's last ACKed version and nonce.
        assert_eq!(unsubscribe(CLUSTER), Some(("1", "n3")));
        assert_eq!(unsubscribe(CLUSTER_LOAD_ASSIGNMENT), Some(("1", "n4")));
        assert_eq!(reqs.len(), 3, "ACK + two unsubscriptions: {reqs:#?}");
        let cfg = wait_ready(&mut target, &["cb"]).await;
        assert_eq!(addresses(&cfg, "cb"), ["10.0.0.2:8080", "10.0.0.3:8080"]);
        stream.assert_quiet(Duration::from_millis(100)).await;

        // Dropping the watch unsubscribes everything it needed.
        drop(target);
        let reqs = until_subscribed(
            &mut stream,
            &[
                (LISTENER, &[]),
                (ROUTE_CONFIGURATION, &[]),
                (CLUSTER, &[]),
                (CLUSTER_LOAD_ASSIGNMENT, &[]),
            ],
        )
        .await;
        assert_eq!(reqs.len(), 4, "{reqs:#?}");
        stream.assert_quiet(Duration::from_millis(100)).await;
    }

    /// gRFC A37/A74 over the wire: an aggregate [EDS, LOGICAL_DNS] subscribes to its
    /// children and the EDS leaf's endpoints, resolves the DNS leaf, and is Ready with both
    /// leaves; once the route stops using it, its children are unsubscribed.
    #[tokio::test]
    async fn target_watch_follows_an_aggregate_to_eds_and_dns() {
        let mut server = TestServer::tcp().await;
        let client = XdsClient::new(server.bootstrap()).unwrap();
        let mut target = client.watch_target("svc");
        let mut stream = server.next_stream().await;
        stream.next_request().await;
        stream.respond(resp(
            LISTENER,
            "1",
            "n1",
            vec![fixtures::listener("svc", "svc-route")],
        ));
        until_subscribed(&mut stream, &[(ROUTE_CONFIGURATION, &["svc-route"])]).await;
        stream.respond(resp(
            ROUTE_CONFIGURATION,
            "1",
            "n2",
            vec![fixtures::route_config(
                "svc-route",
                &["svc"],
                &[("", "agg")],
            )],
        ));
        until_subscribed(&mut stream, &[(CLUSTER, &["agg"])]).await;
        stream.respond(resp(
            CLUSTER,
            "1",
            "n3",
            vec![fixtures::aggregate_cluster("agg", &["ca", "dns"])],
        ));
        until_subscribed(&mut stream, &[(CLUSTER, &["agg", "ca", "dns"])]).await;
        stream.respond(resp(
            CLUSTER,
            "2",
            "n4",
            vec![
                fixtures::aggregate_cluster("agg", &["ca", "dns"]),
                fixtures::cluster("ca"),
                fixtures::dns_cluster("dns", "127.0.0.1", 4443),
            ],
        ));
        until_subscribed(&mut stream, &[(CLUSTER_LOAD_ASSIGNMENT, &["ca"])]).await;
        stream.respond(resp(
            CLUSTER_LOAD_ASSIGNMENT,
            "1",
            "n5",
            vec![fixtures::endpoints("ca", &["10.0.0.1:8080"])],
        ));
        let cfg = wait_ready(&mut target, &["agg"]).await;
        assert_eq!(leaf_names(&cfg, "agg"), ["ca", "dns"]);
        assert_eq!(addresses(&cfg, "agg"), ["10.0.0.1:8080", "127.0.0.1:4443"]);

        stream.respond(resp(
            ROUTE_CONFIGURATION,
            "2",
            "n6",
            vec![fixtures::route_config("svc-route", &["svc"], &[("", "ca")])],
        ));
        until_subscribed(&mut stream, &[(CLUSTER, &["ca"])]).await;
        let cfg = wait_ready(&mut target, &["ca"]).await;
        assert_eq!(addresses(&cfg, "ca"), ["10.0.0.1:8080"]);
    }
}
