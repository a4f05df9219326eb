//! The dependency manager: one target's LDS → RDS → CDS → EDS tree, published as one
//! immutable [`TargetConfig`] only once every resource it needs has resolved (gRFC A74).
//!
//! A task per target keeps one [`Subscription`] per resource the tree currently needs,
//! walks the tree again whenever one of them changes, subscribes to what became needed and
//! drops what no longer is (so a route change that stops referencing a cluster unsubscribes
//! it). The walk itself ([`walk`]) is a pure function of the resource states.
//!
//! Publication rules: `Ready` only with the whole tree resolved (a cluster that does not
//! exist or was rejected is resolved, as an `Err` entry failing only the RPCs routed to it);
//! once `Ready`, a tree waiting for a newly referenced resource keeps the previous
//! configuration in force; LDS or RDS not existing or rejected (with no good value) is an
//! `Error` naming the resource; a NACKed update of a good resource keeps the good value
//! (gRFC A88 default).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::watch;

use super::XdsError;
use super::client::{ResourceState, Subscription, XdsClient};
use super::resource::{Resource, ResourceType};
use crate::config::{
    ClusterConfig, ClusterKind, RouteAction, RouteConfig, RouteSource, TargetConfig, VirtualHost,
};

/// How many walks one change may take: each new subscription can reveal a deeper level
/// (LDS → RDS → CDS → EDS) when it is already cached, so 4 suffice; the rest is margin.
const MAX_WALKS_PER_CHANGE: usize = 8;

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
    // Ends when the TargetWatch is dropped (the task is also aborted then).
    loop {
        let mut result = walk(&listener_name, |ty, name| {
            subs.get(&(ty, name.to_string())).map(Subscription::borrow)
        });
        for _ in 0..MAX_WALKS_PER_CHANGE {
            let mut added = false;
            for key in &result.wanted {
                if !subs.contains_key(key) {
                    subs.insert(key.clone(), client.subscribe(key.0, &key.1));
                    added = true;
                }
            }
            if !added {
                break;
            }
            result = walk(&listener_name, |ty, name| {
                subs.get(&(ty, name.to_string())).map(Subscription::borrow)
            });
        }
        let wanted: BTreeSet<&Key> = result.wanted.iter().collect();
        subs.retain(|key, _| wanted.contains(key));
        publish(&tx, result.state);

        if subs.is_empty() {
            return;
        }
        let changed = futures::future::select_all(subs.values_mut().map(|s| Box::pin(s.changed())));
        tokio::select! {
            _ = tx.closed() => return,
            (res, _, _) = changed => if res.is_err() { return },
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
) -> Walk {
    let mut wanted: Vec<Key> = Vec::new();
    let want = |ty: ResourceType, name: &str, wanted: &mut Vec<Key>| {
        let key = (ty, name.to_string());
        if !wanted.contains(&key) {
            wanted.push(key);
        }
    };
    let done = |wanted: Vec<Key>, state: TargetState| Walk { wanted, state };
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

    let Some(vhost) = find_virtual_host(&route_config, listener_name) else {
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

    let mut first_pending: Option<String> = None;
    let mut clusters = BTreeMap::new();
    for name in cluster_names {
        let cds = label(ResourceType::Cluster, name);
        want(ResourceType::Cluster, name, &mut wanted);
        let cluster = match resolve(lookup(ResourceType::Cluster, name)) {
            Resolved::Pending => {
                first_pending.get_or_insert(cds);
                continue;
            }
            Resolved::Failed(message) => {
                clusters.insert(name.to_string(), Err(format!("{cds}: {message}")));
                continue;
            }
            Resolved::Ready(Resource::Cluster(c)) => c,
            Resolved::Ready(_) => {
                clusters.insert(
                    name.to_string(),
                    Err(format!("{cds}: unexpected resource type")),
                );
                continue;
            }
        };
        let entry = match &cluster.kind {
            ClusterKind::Eds { service_name } => {
                let eds = label(ResourceType::ClusterLoadAssignment, service_name);
                want(
                    ResourceType::ClusterLoadAssignment,
                    service_name,
                    &mut wanted,
                );
                match resolve(lookup(ResourceType::ClusterLoadAssignment, service_name)) {
                    Resolved::Pending => {
                        first_pending.get_or_insert(eds);
                        continue;
                    }
                    Resolved::Failed(message) => Err(format!("{eds}: {message}")),
                    Resolved::Ready(Resource::Endpoints(endpoints)) => Ok(ClusterConfig {
                        cluster: cluster.clone(),
                        endpoints,
                    }),
                    Resolved::Ready(_) => Err(format!("{eds}: unexpected resource type")),
                }
            }
        };
        clusters.insert(name.to_string(), entry);
    }
    if let Some(waiting_for) = first_pending {
        return done(wanted, TargetState::Pending { waiting_for });
    }
    done(
        wanted,
        TargetState::Ready(Arc::new(TargetConfig {
            listener,
            route_config,
            clusters,
        })),
    )
}

/// The virtual host for an authority: exact domain, then `*.suffix`, then `prefix.*`, then
/// `*`; the longest pattern wins within a kind, the first virtual host on a tie (gRFC A28).
// TODO: use `RouteConfig::find_virtual_host` once the config owner adds it.
fn find_virtual_host<'a>(rc: &'a RouteConfig, authority: &str) -> Option<&'a VirtualHost> {
    let host = authority.to_ascii_lowercase();
    let mut best: Option<((u8, usize), &VirtualHost)> = None;
    for vh in &rc.virtual_hosts {
        for domain in &vh.domains {
            let Some(rank) = domain_rank(&domain.to_ascii_lowercase(), &host) else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| rank > *b) {
                best = Some((rank, vh));
            }
        }
    }
    best.map(|(_, vh)| vh)
}

/// How well a domain pattern matches a host: (kind, pattern length), higher is better.
fn domain_rank(pattern: &str, host: &str) -> Option<(u8, usize)> {
    if pattern == "*" {
        return Some((0, 1));
    }
    if let Some(suffix) = pattern.strip_prefix('*') {
        return (host.len() > suffix.len() && host.ends_with(suffix)).then_some((2, pattern.len()));
    }
    if let Some(prefix) = pattern.strip_suffix('*') {
        return (host.len() > prefix.len() && host.starts_with(prefix))
            .then_some((1, pattern.len()));
    }
    (pattern == host).then_some((3, pattern.len()))
}
