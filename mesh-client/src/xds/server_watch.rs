//! The server-side dependency manager (gRFC A36): one server Listener and every
//! RouteConfiguration its filter chains name over RDS, published together as one
//! immutable [`ServerConfig`].
//!
//! Rules: nothing is published until the Listener and all of its RDS names have resolved;
//! once published, a newly referenced RDS name that has not arrived yet keeps the previous
//! configuration in force; an RDS name that does not exist or was rejected resolves as an
//! `Err` entry, which fails only the RPCs on the filter chains that use it (A36). The
//! Listener not existing (deletion, unless the server feature `ignore_resource_deletion`
//! is set, which the protocol core handles) or rejected with no good value is
//! [`ServerState::NotServing`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::watch;

use super::XdsError;
use super::client::{ResourceState, Subscription, XdsClient};
use super::resource::{Resource, ResourceType};
use crate::config::{RouteConfig, RouteSource, ServerListener};

/// One server's complete configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The Listener.
    pub listener: Arc<ServerListener>,
    /// Every RouteConfiguration named by a filter chain over RDS, by name; `Err` when it
    /// does not exist or was rejected.
    pub route_configs: BTreeMap<String, Result<Arc<RouteConfig>, String>>,
}

impl ServerConfig {
    /// The route configuration a filter chain's HttpConnectionManager uses.
    pub fn routes_for(&self, source: &RouteSource) -> Result<Arc<RouteConfig>, String> {
        match source {
            RouteSource::Inline(rc) => Ok(rc.clone()),
            RouteSource::Rds(name) => match self.route_configs.get(name) {
                Some(Ok(rc)) => Ok(rc.clone()),
                Some(Err(e)) => Err(format!("RDS \"{name}\": {e}")),
                None => Err(format!("RDS \"{name}\": not received")),
            },
        }
    }
}

/// The serving state of one xDS-managed server.
#[derive(Debug, Clone)]
pub enum ServerState {
    /// Waiting for the Listener (or its route configurations).
    Pending {
        /// The first missing resource.
        waiting_for: String,
    },
    /// A complete configuration.
    Ready(Arc<ServerConfig>),
    /// The Listener does not exist or is unusable.
    NotServing {
        /// Why.
        reason: String,
    },
}

/// Watches one server Listener; dropping it unsubscribes everything.
#[derive(Debug)]
pub struct ServerWatch {
    rx: watch::Receiver<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerWatch {
    /// The current state (a clone).
    pub fn borrow(&self) -> ServerState {
        self.rx.borrow().clone()
    }

    /// Waits until the state changes after the last `changed` (or the watch's creation).
    pub async fn changed(&mut self) -> Result<(), XdsError> {
        self.rx.changed().await.map_err(|_| XdsError::Closed)
    }
}

impl Drop for ServerWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn spawn(client: XdsClient, listener_name: &str) -> ServerWatch {
    let (tx, rx) = watch::channel(ServerState::Pending {
        waiting_for: format!("LDS \"{listener_name}\""),
    });
    let task = client.spawn(run(client.clone(), listener_name.to_string(), tx));
    ServerWatch { rx, task }
}

async fn run(client: XdsClient, listener_name: String, tx: watch::Sender<ServerState>) {
    let mut lds = client.subscribe(ResourceType::Listener, &listener_name);
    let mut rds: BTreeMap<String, Subscription> = BTreeMap::new();
    loop {
        let (state, wanted) = evaluate(&listener_name, &lds.borrow(), &mut |name| {
            rds.get(name).map(Subscription::borrow)
        });
        let mut added = false;
        for name in &wanted {
            if !rds.contains_key(name) {
                rds.insert(
                    name.clone(),
                    client.subscribe(ResourceType::RouteConfiguration, name),
                );
                added = true;
            }
        }
        rds.retain(|name, _| wanted.contains(name));
        if added {
            // Newly subscribed names may already be cached: look again before publishing.
            let (state, _) = evaluate(&listener_name, &lds.borrow(), &mut |name| {
                rds.get(name).map(Subscription::borrow)
            });
            publish(&tx, state);
        } else {
            publish(&tx, state);
        }
        type Changed<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), XdsError>> + Send + 'a>>;
        // select_all needs at least one future: a never-ready one stands in for "no RDS".
        let mut waits: Vec<Changed<'_>> = vec![Box::pin(futures::future::pending())];
        waits.extend(
            rds.values_mut()
                .map(|s| Box::pin(s.changed()) as Changed<'_>),
        );
        let rds_changed = futures::future::select_all(waits);
        tokio::select! {
            _ = tx.closed() => return,
            r = lds.changed() => if r.is_err() { return },
            (r, _, _) = rds_changed => if r.is_err() { return },
        }
    }
}

fn publish(tx: &watch::Sender<ServerState>, state: ServerState) {
    tx.send_if_modified(|current| match (&*current, state) {
        (ServerState::Ready(_), ServerState::Pending { .. }) => false,
        (ServerState::Pending { waiting_for: a }, ServerState::Pending { waiting_for: b })
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

/// The server's state given the Listener's state and a lookup of RDS states, and the RDS
/// names it needs.
fn evaluate(
    listener_name: &str,
    lds: &ResourceState,
    rds: &mut dyn FnMut(&str) -> Option<ResourceState>,
) -> (ServerState, BTreeSet<String>) {
    let listener = match lds {
        ResourceState::Requested => {
            return (
                ServerState::Pending {
                    waiting_for: format!("LDS \"{listener_name}\""),
                },
                BTreeSet::new(),
            );
        }
        ResourceState::DoesNotExist => {
            return (
                ServerState::NotServing {
                    reason: format!("LDS \"{listener_name}\" does not exist"),
                },
                BTreeSet::new(),
            );
        }
        ResourceState::Error(e) => {
            return (
                ServerState::NotServing {
                    reason: format!("LDS \"{listener_name}\": {e}"),
                },
                BTreeSet::new(),
            );
        }
        ResourceState::Ready(r) | ResourceState::ReadyWithError(r, _) => match r {
            Resource::ServerListener(l) => l.clone(),
            _ => {
                return (
                    ServerState::NotServing {
                        reason: format!(
                            "LDS \"{listener_name}\" is a client (api_listener) Listener, not a server Listener"
                        ),
                    },
                    BTreeSet::new(),
                );
            }
        },
    };
    let wanted: BTreeSet<String> = listener
        .filter_chains
        .iter()
        .chain(listener.default_filter_chain.iter())
        .filter_map(|fc| match &fc.http.route_source {
            RouteSource::Rds(name) => Some(name.clone()),
            RouteSource::Inline(_) => None,
        })
        .collect();
    let mut route_configs = BTreeMap::new();
    for name in &wanted {
        let entry = match rds(name) {
            None | Some(ResourceState::Requested) => {
                return (
                    ServerState::Pending {
                        waiting_for: format!("RDS \"{name}\""),
                    },
                    wanted,
                );
            }
            Some(ResourceState::Ready(Resource::RouteConfig(rc)))
            | Some(ResourceState::ReadyWithError(Resource::RouteConfig(rc), _)) => Ok(rc),
            Some(ResourceState::Ready(_)) | Some(ResourceState::ReadyWithError(..)) => {
                Err("not a RouteConfiguration".to_string())
            }
            Some(ResourceState::Error(e)) => Err(e),
            Some(ResourceState::DoesNotExist) => Err("does not exist".to_string()),
        };
        route_configs.insert(name.clone(), entry);
    }
    (
        ServerState::Ready(Arc::new(ServerConfig {
            listener,
            route_configs,
        })),
        wanted,
    )
}
