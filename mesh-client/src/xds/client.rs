//! The xDS client: one ADS stream per xDS server shared by every subscription, a cache of
//! the last state of each resource, and watchers built on `tokio::sync::watch`
//! (gRFC A27; failure handling per gRFC A57; NACKed updates keep the last good value, gRFC
//! A46/A88).
//!
//! The protocol rules live in the sans-IO [`super::protocol`] core; this module only moves
//! bytes and time: a task per client connects (with `transport`), feeds the core
//! the responses, sends what it returns and publishes the resource events to the cache.
//! Each stream speaks state-of-the-world ADS or, for a server whose bootstrap entry has the
//! `delta_ads` server feature, delta xDS: only the wire encoding differs, the core's state,
//! the cache, CSDS, the persisted cache, the metrics and fallback are the same.
//! The task starts on the first subscription and ends when the client and all its
//! subscriptions are dropped.
//!
//! The cache also keeps what an operator needs to see what this process believes (gRFC A40,
//! CSDS): per resource its status, the version and time of the last accepted update, the
//! resource as received, and the last NACK. [`XdsClient::config_dump`] snapshots it; the
//! [`crate::admin`] module serves it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;
use xds_proto::envoy::envoy::config::core::v3 as core;
use xds_proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use xds_proto::protobuf::Any;

use super::XdsError;
use super::deps::{self, TargetWatch};
use super::protocol::{AdsState, ProtocolOptions, ResourceEvent, ResourceEventKind};
use super::resource::{Resource, ResourceType, ValidationContext};
use super::transport::{self, Backoff};
use crate::bootstrap::{Bootstrap, ChannelCreds, XdsServer};
use crate::telemetry::XdsClientStats;

/// The largest DiscoveryResponse accepted (LDS/CDS responses of big meshes exceed tonic's
/// 4 MiB default).
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What a subscriber knows about one resource.
#[derive(Debug, Clone)]
pub enum ResourceState {
    /// Subscribed; nothing received yet.
    Requested,
    /// The current valid value.
    Ready(Resource),
    /// The value still in force, but the last update of it was NACKed (gRFC A46/A88).
    ReadyWithError(Resource, String),
    /// No valid value yet: the resource was NACKed, or the xDS server could not be reached
    /// before it was received (gRFC A57).
    Error(String),
    /// The server deleted it (LDS/CDS) or did not send it in time (does-not-exist timer).
    DoesNotExist,
}

impl ResourceState {
    /// The value in force, if any (`Ready` or `ReadyWithError`).
    pub fn resource(&self) -> Option<&Resource> {
        match self {
            ResourceState::Ready(r) | ResourceState::ReadyWithError(r, _) => Some(r),
            _ => None,
        }
    }
}

/// A resource's synchronization status from the client's view (gRFC A40; the
/// `envoy.admin.v3.ClientResourceStatus` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceStatus {
    /// Subscribed; no update received yet (also while the xDS server is unreachable).
    Requested,
    /// Deleted by the server (LDS/CDS) or not received within the does-not-exist timeout.
    /// With a value (`raw`), the deletion was ignored and that value is still in force
    /// (`ignore_resource_deletion`; gRFC A88's `does_not_exist_but_cached`).
    DoesNotExist,
    /// Not received within the resource timer, under the `resource_timer_is_transient_error`
    /// server feature (gRFC A88): a transient error, not a deletion.
    Timeout,
    /// The last update of this resource was accepted (and ACKed).
    Acked,
    /// The last update of this resource was rejected (and NACKed); any earlier accepted
    /// value stays in force.
    Nacked,
    /// The xDS server reported an error for this resource (xRFC TP3, gRFC A88); the error
    /// says which. With a value (`raw`), that value is still in force (gRFC A88's
    /// `received_error_but_cached`); without one the resource fails (`received_error`).
    ReceivedError,
    /// Served from the persisted last-known-good cache ([`super::persist`]) because the xDS
    /// server could not be reached; stale until the server sends the resource. CSDS shows it
    /// as ACKED with an `error_state` saying so.
    Cached,
}

impl ResourceStatus {
    /// The status as CSDS spells it: `REQUESTED`, `DOES_NOT_EXIST`, `TIMEOUT`, `ACKED`,
    /// `NACKED`, `RECEIVED_ERROR` (and ours, `CACHED`).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceStatus::Requested => "REQUESTED",
            ResourceStatus::DoesNotExist => "DOES_NOT_EXIST",
            ResourceStatus::Timeout => "TIMEOUT",
            ResourceStatus::Acked => "ACKED",
            ResourceStatus::Nacked => "NACKED",
            ResourceStatus::ReceivedError => "RECEIVED_ERROR",
            ResourceStatus::Cached => "CACHED",
        }
    }
}

/// The last rejected update of a resource (CSDS `UpdateFailureState`, gRFC A40).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateError {
    /// The `version_info` of the rejected response.
    pub version: String,
    /// Why this resource was rejected (the validation error, as in the NACK).
    pub details: String,
    /// When the rejected response arrived.
    pub time: SystemTime,
}

/// One subscribed resource as the client sees it: a row of the CSDS config dump (gRFC A40).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceDump {
    /// The resource type.
    pub resource_type: ResourceType,
    /// The resource name.
    pub name: String,
    /// The synchronization status.
    pub status: ResourceStatus,
    /// The `version_info` of the response that carried the value in force (empty if none).
    pub version: String,
    /// When the value in force was received (`None` if none).
    pub last_updated: Option<SystemTime>,
    /// The value in force exactly as received (unwrapped from a `Resource` wrapper).
    pub raw: Option<Any>,
    /// The last rejected update, until an accepted one clears it.
    pub error: Option<UpdateError>,
}

/// A client of one xDS server, shared by every channel of a bootstrap. Cheap to clone.
#[derive(Clone)]
pub struct XdsClient {
    inner: Arc<Inner>,
}

struct Inner {
    bootstrap: Bootstrap,
    server: XdsServer,
    node: core::Node,
    /// Each `xds_servers` entry's protocol options (its `server_features`), in order: the
    /// server in use decides (gRFC A71 falls back to servers that may declare others).
    options: Vec<ProtocolOptions>,
    cache: Arc<Mutex<Cache>>,
    commands: mpsc::UnboundedSender<Command>,
    /// The receiving end, until the ADS task is spawned with it.
    pending_task: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    runtime: tokio::runtime::Handle,
    /// What the ADS stream has seen, for the A78 and staleness instruments.
    stats: Arc<XdsClientStats>,
}

impl std::fmt::Debug for XdsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsClient")
            .field("node_id", &self.inner.node.id)
            .field("server_uri", &self.inner.server.server_uri)
            .finish_non_exhaustive()
    }
}

/// The shared clients, by bootstrap.
type Registry = Mutex<Vec<(Bootstrap, Weak<Inner>)>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// Locks, ignoring poisoning: the guarded data stays consistent across our critical sections.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every live client made with [`XdsClient::shared`] in this process, in creation order (the
/// clients CSDS reports on when it serves the whole process, gRFC A40).
pub fn live_clients() -> Vec<XdsClient> {
    let mut clients = lock(registry());
    clients.retain(|(_, weak)| weak.strong_count() > 0);
    clients
        .iter()
        .filter_map(|(_, weak)| weak.upgrade())
        .map(|inner| XdsClient { inner })
        .collect()
}

impl XdsClient {
    /// One client per distinct bootstrap in the process, shared by every channel (cached in
    /// a static, Weak refs). Must be called inside a tokio runtime, like [`XdsClient::new`].
    pub fn shared(bootstrap: &Bootstrap) -> Result<XdsClient, XdsError> {
        let mut clients = lock(registry());
        clients.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(inner) = clients
            .iter()
            .filter(|(b, _)| b == bootstrap)
            .find_map(|(_, weak)| weak.upgrade())
        {
            return Ok(XdsClient { inner });
        }
        let client = XdsClient::new(bootstrap.clone())?;
        clients.push((bootstrap.clone(), Arc::downgrade(&client.inner)));
        Ok(client)
    }

    /// A fresh client (tests). Must be called inside a tokio runtime; spawns the ADS task
    /// lazily on first subscription.
    pub fn new(bootstrap: Bootstrap) -> Result<XdsClient, XdsError> {
        let options = bootstrap
            .xds_servers
            .iter()
            .map(|s| ProtocolOptions::from_server_features(&s.server_features))
            .collect();
        Self::with_server_options(bootstrap, options)
    }

    /// A fresh client with explicit protocol options for every server (tests shorten the
    /// timers).
    #[cfg(test)]
    pub(crate) fn with_options(
        bootstrap: Bootstrap,
        options: ProtocolOptions,
    ) -> Result<XdsClient, XdsError> {
        let options = vec![options; bootstrap.xds_servers.len()];
        Self::with_server_options(bootstrap, options)
    }

    /// A fresh client; `options[i]` applies while `xds_servers[i]` is in use.
    fn with_server_options(
        bootstrap: Bootstrap,
        options: Vec<ProtocolOptions>,
    ) -> Result<XdsClient, XdsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| XdsError::NoRuntime)?;
        // The primary; the task falls back to the others in order (gRFC A71).
        let server = bootstrap
            .xds_servers
            .first()
            .cloned()
            .ok_or(XdsError::NoXdsServers)?;
        transport::parse_server_uri(&server.server_uri)?;
        if let ChannelCreds::Tls(config) = &server.channel_creds {
            // gRFC A65: reject unusable tls config at creation, not on every reconnect.
            transport::tls_files(config)?;
        }
        let (commands, receiver) = mpsc::unbounded_channel();
        let node = bootstrap.node_proto();
        let cache = Cache::new(
            last_known_good(&bootstrap, &server),
            ValidationContext::from_bootstrap(&bootstrap),
        );
        Ok(XdsClient {
            inner: Arc::new(Inner {
                bootstrap,
                server,
                node,
                options,
                cache: Arc::new(Mutex::new(cache)),
                commands,
                pending_task: Mutex::new(Some(receiver)),
                runtime,
                stats: Arc::default(),
            }),
        })
    }

    /// Whether the xDS server has ever sent this client a resource. Until it has, resource
    /// errors are connection errors (the server is unreachable), which a caller waiting for
    /// its first configuration should wait out rather than report.
    pub fn heard_from_server(&self) -> bool {
        lock(&self.inner.cache).heard_from_server
    }

    /// What the ADS stream has seen (connection, updates, last contact): the data of the
    /// gRFC A78 and staleness instruments ([`crate::telemetry`]).
    pub fn stats(&self) -> &XdsClientStats {
        &self.inner.stats
    }

    /// The xDS node id, for error messages.
    pub fn node_id(&self) -> &str {
        &self.inner.node.id
    }

    /// The bootstrap this client was made from.
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.inner.bootstrap
    }

    /// The node this client identifies itself as (the bootstrap's, with the client's
    /// user agent and features), as sent to the xDS server.
    pub fn node(&self) -> &core::Node {
        &self.inner.node
    }

    /// The `server_uri` of the xDS server this client talks to.
    pub fn server_uri(&self) -> &str {
        &self.inner.server.server_uri
    }

    /// A snapshot of every subscribed resource, sorted by type (LDS, RDS, CDS, EDS) then
    /// name: the data of a CSDS config dump (gRFC A40).
    pub fn config_dump(&self) -> Vec<ResourceDump> {
        let cache = lock(&self.inner.cache);
        let mut out: Vec<ResourceDump> = cache
            .entries
            .iter()
            .map(|((ty, name), entry)| ResourceDump {
                resource_type: *ty,
                name: name.clone(),
                status: entry.meta.status,
                version: entry.meta.version.clone(),
                last_updated: entry.meta.last_updated,
                raw: entry.meta.raw.clone(),
                error: entry.meta.error.clone(),
            })
            .collect();
        drop(cache);
        out.sort_by(|a, b| (a.resource_type, &a.name).cmp(&(b.resource_type, &b.name)));
        out
    }

    /// Subscribe to one resource. Dropping the returned Subscription unsubscribes (when the
    /// last subscriber for that name drops).
    pub fn subscribe(&self, ty: ResourceType, name: &str) -> Subscription {
        let rx = {
            let mut cache = lock(&self.inner.cache);
            let key = (ty, name.to_string());
            if let Some(entry) = cache.entries.get_mut(&key) {
                entry.refs += 1;
                entry.tx.subscribe()
            } else {
                // While the server is unreachable, a resource it never sent us comes from the
                // last-known-good cache, if there is one.
                let (initial, meta) = cache
                    .offline
                    .clone()
                    .and_then(|why| cache.load_cached(ty, name, &why))
                    .unwrap_or_else(|| (ResourceState::Requested, Meta::default()));
                let (tx, rx) = watch::channel(initial);
                cache.entries.insert(key, Entry { tx, refs: 1, meta });
                // Sent under the cache lock so commands stay in the order of the refcounts.
                let _ = self
                    .inner
                    .commands
                    .send(Command::Subscribe(ty, name.to_string()));
                rx
            }
        };
        self.start_task();
        Subscription {
            client: self.clone(),
            ty,
            name: name.to_string(),
            rx,
        }
    }

    /// The dependency manager (gRFC A74): the whole configuration tree of one listener.
    pub fn watch_target(&self, listener_name: &str) -> TargetWatch {
        self.inner
            .stats
            .set_target(|| format!("xds:///{listener_name}"));
        deps::spawn(self.clone(), listener_name)
    }

    /// The server-side dependency manager (gRFC A36): one server Listener and the route
    /// configurations its filter chains name.
    pub fn watch_server_listener(&self, listener_name: &str) -> super::server_watch::ServerWatch {
        // gRFC A71/A78: a server's xDS client reports the target "#server".
        self.inner.stats.set_target(|| "#server".to_string());
        super::server_watch::spawn(self.clone(), listener_name)
    }

    /// Spawns the ADS task when first needed.
    fn start_task(&self) {
        let Some(commands) = lock(&self.inner.pending_task).take() else {
            return;
        };
        let task = AdsTask {
            servers: self.inner.bootstrap.xds_servers.clone(),
            current: 0,
            server: self.inner.server.clone(),
            options: self.inner.options.clone(),
            state: AdsState::with_options(
                self.inner.node.clone(),
                self.inner.options.first().cloned().unwrap_or_default(),
            )
            .with_validation_context(ValidationContext::from_bootstrap(&self.inner.bootstrap)),
            cache: self.inner.cache.clone(),
            commands,
            stats: self.inner.stats.clone(),
        };
        self.inner.runtime.spawn(task.run());
    }

    /// Spawns a task on the client's runtime.
    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.runtime.spawn(fut)
    }

    fn release(&self, ty: ResourceType, name: &str) {
        let mut cache = lock(&self.inner.cache);
        let key = (ty, name.to_string());
        let Some(entry) = cache.entries.get_mut(&key) else {
            return;
        };
        entry.refs = entry.refs.saturating_sub(1);
        if entry.refs == 0 {
            cache.entries.remove(&key);
            let _ = self
                .inner
                .commands
                .send(Command::Unsubscribe(ty, name.to_string()));
        }
    }
}

/// One subscriber's view of one resource; dropping it unsubscribes when it is the last.
pub struct Subscription {
    client: XdsClient,
    ty: ResourceType,
    name: String,
    rx: watch::Receiver<ResourceState>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("ty", &self.ty.short_name())
            .field("name", &self.name)
            .field("state", &*self.rx.borrow())
            .finish()
    }
}

impl Subscription {
    /// The resource type.
    pub fn resource_type(&self) -> ResourceType {
        self.ty
    }

    /// The resource name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current state (a clone).
    pub fn borrow(&self) -> ResourceState {
        self.rx.borrow().clone()
    }

    /// Waits until the state changes: after the subscription was made (whose state then
    /// counts as seen) or the last `changed` returned.
    pub async fn changed(&mut self) -> Result<(), XdsError> {
        self.rx.changed().await.map_err(|_| XdsError::Closed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.client.release(self.ty, &self.name);
    }
}

/// The last state of every subscribed resource.
#[derive(Default)]
struct Cache {
    entries: HashMap<(ResourceType, String), Entry>,
    /// The persisted last-known-good resources, when the bootstrap names a cache dir.
    lkg: Option<super::persist::LastKnownGood>,
    /// To re-validate cached resources as the stream would.
    validation: ValidationContext,
    /// Set while no stream has delivered anything since the last connection error: the
    /// error, for the stale-state message.
    offline: Option<String>,
    /// Whether any stream has ever delivered a resource event.
    heard_from_server: bool,
}

/// The cache dir of the bootstrap, opened for this server and node; a dir that cannot be
/// created is logged and not used.
fn last_known_good(
    bootstrap: &Bootstrap,
    server: &XdsServer,
) -> Option<super::persist::LastKnownGood> {
    let dir = bootstrap.cache_dir.as_ref()?;
    match super::persist::LastKnownGood::open(dir, &server.server_uri, &bootstrap.node.id) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(error = %e, "xDS last-known-good cache disabled");
            None
        }
    }
}

struct Entry {
    tx: watch::Sender<ResourceState>,
    refs: usize,
    meta: Meta,
}

/// What CSDS reports of one resource besides its value (gRFC A40).
#[derive(Debug, Clone)]
struct Meta {
    status: ResourceStatus,
    version: String,
    last_updated: Option<SystemTime>,
    raw: Option<Any>,
    error: Option<UpdateError>,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            status: ResourceStatus::Requested,
            version: String::new(),
            last_updated: None,
            raw: None,
            error: None,
        }
    }
}

impl Meta {
    /// Records an event received at wall-clock time `at`.
    ///
    /// As grpc-go does, an accepted resource is ACKED with the version of its response even
    /// when other resources of that response were NACKed (gRFC A46 keeps it), and
    /// acceptance clears the error; a rejected one is NACKED and keeps the version, time
    /// and value of its last accepted update.
    fn record(
        &mut self,
        kind: &ResourceEventKind,
        version: String,
        raw: Option<Any>,
        at: SystemTime,
    ) {
        match kind {
            ResourceEventKind::Changed(_) => {
                *self = Meta {
                    status: ResourceStatus::Acked,
                    version,
                    last_updated: Some(at),
                    raw,
                    error: None,
                };
            }
            ResourceEventKind::Error(details) => {
                self.status = ResourceStatus::Nacked;
                self.error = Some(UpdateError {
                    version,
                    details: details.clone(),
                    time: at,
                });
            }
            ResourceEventKind::DoesNotExist => {
                *self = Meta {
                    status: ResourceStatus::DoesNotExist,
                    ..Meta::default()
                }
            }
            // gRFC A88: the value is gone (CSDS shows no xds_config), the error stays.
            ResourceEventKind::Dropped(details) => {
                *self = Meta {
                    status: ResourceStatus::Nacked,
                    error: Some(UpdateError {
                        version,
                        details: format!(
                            "{details} (fail_on_data_errors: the previous value was discarded)"
                        ),
                        time: at,
                    }),
                    ..Meta::default()
                }
            }
            // The value, its version and time stay; the status and error say it was deleted.
            ResourceEventKind::DeletionIgnored => {
                self.status = ResourceStatus::DoesNotExist;
                self.error = Some(UpdateError {
                    version,
                    details: "deleted by the xDS server; the previous value stays in force \
                              (ignore_resource_deletion)"
                        .to_string(),
                    time: at,
                });
            }
            ResourceEventKind::TimedOut(details) => {
                *self = Meta {
                    status: ResourceStatus::Timeout,
                    error: Some(UpdateError {
                        version,
                        details: details.clone(),
                        time: at,
                    }),
                    ..Meta::default()
                }
            }
            // xRFC TP3: a kept value (its version, time and raw form) stays dumped; a
            // discarded one goes, as for `Dropped`.
            ResourceEventKind::ReceivedError { message, discard } => {
                let error = Some(UpdateError {
                    version,
                    details: if *discard {
                        format!("{message} (fail_on_data_errors: the previous value was discarded)")
                    } else {
                        message.clone()
                    },
                    time: at,
                });
                if *discard {
                    *self = Meta {
                        status: ResourceStatus::ReceivedError,
                        error,
                        ..Meta::default()
                    }
                } else {
                    self.status = ResourceStatus::ReceivedError;
                    self.error = error;
                }
            }
        }
    }
}

impl Cache {
    /// Whether some subscribed resource has no value yet (gRFC A71's fallback condition).
    fn has_uncached(&self) -> bool {
        self.entries.values().any(|e| {
            matches!(
                *e.tx.borrow(),
                ResourceState::Requested | ResourceState::Error(_)
            )
        })
    }

    fn new(lkg: Option<super::persist::LastKnownGood>, validation: ValidationContext) -> Self {
        Cache {
            entries: HashMap::new(),
            lkg,
            validation,
            offline: None,
            heard_from_server: false,
        }
    }

    fn apply(&mut self, event: ResourceEvent, at: SystemTime) {
        self.offline = None;
        self.heard_from_server = true;
        let ResourceEvent {
            ty,
            name,
            kind,
            version,
            raw,
        } = event;
        if let Some(lkg) = &self.lkg {
            let written = match (&kind, &raw) {
                (ResourceEventKind::Changed(_), Some(raw)) => {
                    lkg.store(ty.type_url(), &name, &version, raw)
                }
                (
                    ResourceEventKind::DoesNotExist
                    | ResourceEventKind::Dropped(_)
                    | ResourceEventKind::ReceivedError { discard: true, .. },
                    _,
                ) => lkg.remove(ty.type_url(), &name),
                _ => Ok(()),
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "xDS last-known-good cache: write failed");
            }
        }
        let Some(entry) = self.entries.get_mut(&(ty, name)) else {
            return;
        };
        entry.meta.record(&kind, version, raw, at);
        entry.tx.send_if_modified(|state| next_state(state, kind));
    }

    /// The cached value of a resource, validated again, as a stale state; `None` (after a
    /// warning for a bad file) when there is none to use.
    fn load_cached(
        &self,
        ty: ResourceType,
        name: &str,
        why: &str,
    ) -> Option<(ResourceState, Meta)> {
        let lkg = self.lkg.as_ref()?;
        let cached = match lkg.load(ty.type_url(), name) {
            Ok(c) => c?,
            Err(e) => {
                tracing::warn!(error = %e, "xDS last-known-good cache: ignoring file");
                return None;
            }
        };
        let resource = match super::resource::decode_with(ty, &cached.raw, &self.validation) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    file = %cached.path.display(), error = %e,
                    "xDS last-known-good cache: cached resource no longer valid; ignored"
                );
                return None;
            }
        };
        tracing::warn!(
            resource = name, r#type = ty.type_url(), version = %cached.version,
            file = %cached.path.display(),
            "xDS server unreachable: serving the last-known-good resource from the cache (stale)"
        );
        let meta = Meta {
            status: ResourceStatus::Cached,
            version: cached.version.clone(),
            last_updated: std::fs::metadata(&cached.path)
                .and_then(|m| m.modified())
                .ok(),
            raw: Some(cached.raw),
            error: Some(UpdateError {
                version: cached.version,
                details: format!(
                    "stale: served from the last-known-good cache ({}) because the xDS server is unreachable: {why}",
                    cached.path.display()
                ),
                time: SystemTime::now(),
            }),
        };
        Some((ResourceState::Ready(resource), meta))
    }

    /// A57: the stream failed before any response: resources with no value get the error;
    /// resources with one keep it (the error is only logged, an ambient error).
    ///
    /// With a last-known-good cache, resources with no value are served from it instead
    /// (stale), and so are resources subscribed until a stream delivers again.
    fn connection_error(&mut self, message: &str) {
        self.offline = Some(message.to_string());
        let missing: Vec<(ResourceType, String)> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                matches!(
                    *e.tx.borrow(),
                    ResourceState::Requested | ResourceState::Error(_)
                )
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in missing {
            let cached = self.load_cached(key.0, &key.1, message);
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            match cached {
                Some((state, meta)) => {
                    entry.meta = meta;
                    entry.tx.send_replace(state);
                }
                None => {
                    entry.tx.send_if_modified(|state| match state {
                        ResourceState::Requested => {
                            *state = ResourceState::Error(message.to_string());
                            true
                        }
                        _ => false,
                    });
                }
            }
        }
    }
}

/// Applies an event; returns whether the state changed.
fn next_state(state: &mut ResourceState, kind: ResourceEventKind) -> bool {
    let next = match (&*state, kind) {
        (ResourceState::Ready(old), ResourceEventKind::Changed(new)) if same(old, &new) => {
            return false;
        }
        (_, ResourceEventKind::Changed(new)) => ResourceState::Ready(new),
        (
            ResourceState::Ready(old) | ResourceState::ReadyWithError(old, _),
            ResourceEventKind::Error(msg)
            | ResourceEventKind::ReceivedError {
                message: msg,
                discard: false,
            },
        ) => ResourceState::ReadyWithError(old.clone(), msg),
        (
            ResourceState::Error(old),
            ResourceEventKind::Error(msg)
            | ResourceEventKind::Dropped(msg)
            | ResourceEventKind::TimedOut(msg)
            | ResourceEventKind::ReceivedError { message: msg, .. },
        ) if *old == msg => return false,
        (
            _,
            ResourceEventKind::Error(msg)
            | ResourceEventKind::Dropped(msg)
            | ResourceEventKind::TimedOut(msg)
            | ResourceEventKind::ReceivedError { message: msg, .. },
        ) => ResourceState::Error(msg),
        // An ambient error (gRFC A88): the value in force stays; only CSDS shows it.
        (_, ResourceEventKind::DeletionIgnored) => return false,
        (ResourceState::DoesNotExist, ResourceEventKind::DoesNotExist) => return false,
        (_, ResourceEventKind::DoesNotExist) => ResourceState::DoesNotExist,
    };
    if let ResourceState::ReadyWithError(_, new) = &next
        && let ResourceState::ReadyWithError(_, old) = &*state
        && old == new
    {
        return false;
    }
    *state = next;
    true
}

/// Whether two values of a resource are equal (SotW servers resend unchanged resources).
fn same(a: &Resource, b: &Resource) -> bool {
    match (a, b) {
        (Resource::Listener(a), Resource::Listener(b)) => Arc::ptr_eq(a, b) || a == b,
        (Resource::RouteConfig(a), Resource::RouteConfig(b)) => Arc::ptr_eq(a, b) || a == b,
        (Resource::Cluster(a), Resource::Cluster(b)) => Arc::ptr_eq(a, b) || a == b,
        (Resource::Endpoints(a), Resource::Endpoints(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

enum Command {
    Subscribe(ResourceType, String),
    Unsubscribe(ResourceType, String),
}

/// How a stream attempt ended.
enum StreamEnd {
    /// Every client handle is gone.
    Shutdown,
    /// The connection or the stream failed.
    Failed { got_response: bool, error: String },
    /// On a fallback server, the primary became reachable again (gRFC A71).
    PrimaryBack,
}

/// How often a client on a fallback server checks whether the primary is back (gRFC A71).
const PRIMARY_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The task driving one ADS stream after another.
struct AdsTask {
    /// The bootstrap's `xds_servers` in order of preference (gRFC A71).
    servers: Vec<XdsServer>,
    /// Which of them this task uses now.
    current: usize,
    /// `servers[current]`.
    server: XdsServer,
    /// Each server's protocol options (from its `server_features`).
    options: Vec<ProtocolOptions>,
    state: AdsState,
    cache: Arc<Mutex<Cache>>,
    commands: mpsc::UnboundedReceiver<Command>,
    stats: Arc<XdsClientStats>,
}

/// Now, on tokio's clock (so `tokio::time::pause` drives the timers).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Sleeps until `deadline`, forever if none.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

impl AdsTask {
    /// Uses `servers[index]` for the next stream.
    fn switch_to(&mut self, index: usize) {
        if let Some(s) = self.servers.get(index) {
            if index != self.current {
                // Delta versions are the previous server's; another server may mean others.
                self.state.forget_resource_versions();
            }
            self.current = index;
            self.server = s.clone();
            if let Some(options) = self.options.get(index) {
                // gRFC A53/A88 switches are per server: the one in use decides.
                self.state.set_options(options.clone());
            }
        }
    }

    /// Runs streams until the client is dropped; each failed attempt backs off.
    async fn run(mut self) {
        let mut backoff = Backoff::new();
        // Ends only when every client handle is gone; each iteration is one stream attempt.
        loop {
            match self.run_stream().await {
                StreamEnd::Shutdown => break,
                StreamEnd::PrimaryBack => {
                    tracing::info!(
                        primary = %self.servers.first().map(|s| s.server_uri.as_str()).unwrap_or_default(),
                        fallback = %self.server.server_uri,
                        "primary xDS server reachable again; leaving the fallback (gRFC A71)"
                    );
                    self.stats.on_stream_failed(true);
                    self.state.on_disconnected();
                    self.switch_to(0);
                    backoff.reset();
                }
                StreamEnd::Failed {
                    got_response,
                    error,
                } => {
                    self.stats.on_stream_failed(got_response);
                    self.state.on_disconnected();
                    if got_response {
                        // A57: not an error (e.g. max connection age); retry at once.
                        tracing::info!(server = %self.server.server_uri, %error, "ADS stream closed; restarting");
                        backoff.reset();
                        continue;
                    }
                    let message = format!("xDS server {}: {error}", self.server.server_uri);
                    tracing::warn!(%message, "ADS stream failed before any response");
                    // gRFC A71: with a resource not cached yet, try the next server at once;
                    // with everything cached, keep serving the cache and retry the primary.
                    if self.current + 1 < self.servers.len() && lock(&self.cache).has_uncached() {
                        tracing::warn!(
                            next = %self.servers[self.current + 1].server_uri,
                            "falling back to the next xDS server (gRFC A71)"
                        );
                        self.switch_to(self.current + 1);
                        continue;
                    }
                    lock(&self.cache).connection_error(&message);
                    self.switch_to(0);
                    if !self.wait(backoff.next_delay()).await {
                        break;
                    }
                }
            }
        }
        tracing::debug!(server = %self.server.server_uri, "xDS client task stopped");
    }

    /// Waits out a backoff delay, still taking commands; false when the client is gone.
    async fn wait(&mut self, delay: std::time::Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd, None),
                    None => return false,
                },
            }
        }
    }

    fn command(&mut self, cmd: Command, tx: Option<&Outbox>) {
        match tx {
            Some(Outbox::Delta(tx)) => {
                let requests = match cmd {
                    Command::Subscribe(ty, name) => self.state.subscribe_delta(ty, &name, now()),
                    Command::Unsubscribe(ty, name) => self.state.unsubscribe_delta(ty, &name),
                };
                send_all(Some(tx), requests);
            }
            Some(Outbox::Sotw(tx)) => {
                let requests = match cmd {
                    Command::Subscribe(ty, name) => self.state.subscribe(ty, &name, now()),
                    Command::Unsubscribe(ty, name) => self.state.unsubscribe(ty, &name),
                };
                send_all(Some(tx), requests);
            }
            // Not connected: the core only records the change (no request is owed).
            None => {
                let _ = match cmd {
                    Command::Subscribe(ty, name) => self.state.subscribe(ty, &name, now()),
                    Command::Unsubscribe(ty, name) => self.state.unsubscribe(ty, &name),
                };
            }
        }
    }

    /// Feeds one response to the core: sends its ACK or NACK, publishes its events.
    fn response(&mut self, response: Inbound, tx: &Outbox) {
        let updates = match (response, tx) {
            (Inbound::Sotw(response), Outbox::Sotw(tx)) => {
                let outcome = self.state.on_response(response, now());
                send_all(Some(tx), outcome.requests);
                outcome.updates
            }
            (Inbound::Delta(response), Outbox::Delta(tx)) => {
                let outcome = self.state.on_delta_response(response, now());
                send_all(Some(tx), outcome.requests);
                outcome.updates
            }
            // A stream's two halves always use the same encoding.
            _ => Vec::new(),
        };
        self.events(updates);
    }

    fn events(&self, events: Vec<ResourceEvent>) {
        if events.is_empty() {
            return;
        }
        let at = SystemTime::now();
        let mut cache = lock(&self.cache);
        for event in events {
            match &event.kind {
                ResourceEventKind::Changed(_) => self.stats.on_valid(event.ty),
                ResourceEventKind::Error(_) | ResourceEventKind::Dropped(_) => {
                    self.stats.on_invalid(event.ty)
                }
                // A server-reported error is no resource received: neither valid nor invalid.
                ResourceEventKind::DoesNotExist
                | ResourceEventKind::DeletionIgnored
                | ResourceEventKind::TimedOut(_)
                | ResourceEventKind::ReceivedError { .. } => {}
            }
            cache.apply(event, at);
        }
    }

    async fn run_stream(&mut self) -> StreamEnd {
        let server = self.server.clone();
        let failed = |error: String| StreamEnd::Failed {
            got_response: false,
            error,
        };
        let connect = transport::connect(&server);
        tokio::pin!(connect);
        let channel = loop {
            tokio::select! {
                res = &mut connect => match res {
                    Ok(channel) => break channel,
                    Err(e) => return failed(e.to_string()),
                },
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd, None),
                    None => return StreamEnd::Shutdown,
                },
            }
        };

        // The first requests must be queued before the call is awaited: the call resolves
        // on the response headers, and a grpc-go server (go-control-plane) sends those only
        // with its first response, i.e. after it has seen a request.
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES);
        type Call = std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Inbox, tonic::Status>> + Send>,
        >;
        let (tx, call): (Outbox, Call) = if server.delta_ads() {
            let (tx, rx) = mpsc::unbounded_channel();
            send_all(Some(&tx), self.state.on_connected_delta(now()));
            let call = async move {
                let response = client
                    .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
                    .await?;
                Ok(Inbox::Delta(response.into_inner()))
            };
            (Outbox::Delta(tx), Box::pin(call))
        } else {
            let (tx, rx) = mpsc::unbounded_channel();
            send_all(Some(&tx), self.state.on_connected(now()));
            let call = async move {
                let response = client
                    .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
                    .await?;
                Ok(Inbox::Sotw(response.into_inner()))
            };
            (Outbox::Sotw(tx), Box::pin(call))
        };
        tokio::pin!(call);
        let mut stream = loop {
            let deadline = self.state.next_timer_deadline();
            tokio::select! {
                res = &mut call => match res {
                    Ok(inbox) => break inbox,
                    Err(status) => return failed(status_message(&status)),
                },
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd, Some(&tx)),
                    None => return StreamEnd::Shutdown,
                },
                _ = sleep_until(deadline) => {
                    let events = self.state.poll_timers(now());
                    self.events(events);
                }
            }
        };

        let mut got_response = false;
        // gRFC A71: on a fallback server, check now and then whether the primary is back.
        let primary = (self.current > 0)
            .then(|| self.servers.first().cloned())
            .flatten();
        let mut probe_at = primary
            .as_ref()
            .map(|_| tokio::time::Instant::now() + PRIMARY_PROBE_INTERVAL);
        type Probe = std::pin::Pin<
            Box<
                dyn std::future::Future<Output = Result<tonic::transport::Channel, XdsError>>
                    + Send,
            >,
        >;
        let mut probe: Option<Probe> = None;
        loop {
            let deadline = self.state.next_timer_deadline();
            tokio::select! {
                _ = sleep_until(probe_at.map(tokio::time::Instant::into_std)), if probe.is_none() && probe_at.is_some() => {
                    if let Some(p) = primary.clone() {
                        probe = Some(Box::pin(async move { transport::connect(&p).await }));
                    }
                }
                res = async {
                    match probe.as_mut() {
                        Some(p) => p.await,
                        None => std::future::pending().await,
                    }
                }, if probe.is_some() => {
                    probe = None;
                    match res {
                        Ok(_) => return StreamEnd::PrimaryBack,
                        Err(_) => probe_at = Some(tokio::time::Instant::now() + PRIMARY_PROBE_INTERVAL),
                    }
                }
                msg = stream.message() => match msg {
                    Ok(Some(response)) => {
                        got_response = true;
                        self.stats.on_response();
                        self.response(response, &tx);
                    }
                    Ok(None) => {
                        return StreamEnd::Failed {
                            got_response,
                            error: "stream closed by the server".to_string(),
                        };
                    }
                    Err(status) => {
                        return StreamEnd::Failed {
                            got_response,
                            error: status_message(&status),
                        };
                    }
                },
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.command(cmd, Some(&tx)),
                    None => return StreamEnd::Shutdown,
                },
                _ = sleep_until(deadline) => {
                    let events = self.state.poll_timers(now());
                    self.events(events);
                }
            }
        }
    }
}

/// The sending half of the current ADS stream, in the encoding its server speaks.
enum Outbox {
    /// State-of-the-world `StreamAggregatedResources`.
    Sotw(mpsc::UnboundedSender<DiscoveryRequest>),
    /// Delta `DeltaAggregatedResources`.
    Delta(mpsc::UnboundedSender<DeltaDiscoveryRequest>),
}

/// The receiving half of the current ADS stream.
enum Inbox {
    Sotw(tonic::Streaming<DiscoveryResponse>),
    Delta(tonic::Streaming<DeltaDiscoveryResponse>),
}

/// One response, as received.
enum Inbound {
    Sotw(DiscoveryResponse),
    Delta(DeltaDiscoveryResponse),
}

impl Inbox {
    /// The next response; `None` when the server ended the stream.
    async fn message(&mut self) -> Result<Option<Inbound>, tonic::Status> {
        Ok(match self {
            Inbox::Sotw(s) => s.message().await?.map(Inbound::Sotw),
            Inbox::Delta(s) => s.message().await?.map(Inbound::Delta),
        })
    }
}

fn send_all<R>(tx: Option<&mpsc::UnboundedSender<R>>, requests: Vec<R>) {
    let Some(tx) = tx else { return };
    for request in requests {
        // A closed stream is noticed on the receive side.
        let _ = tx.send(request);
    }
}

fn status_message(status: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        out.push_str(": ");
        out.push_str(&transport::error_chain(source));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use xds_proto::envoy::envoy::service::discovery::v3::DiscoveryResponse;
    use xds_proto::type_url::{CLUSTER, LISTENER};

    use super::*;
    use crate::xds::fixtures::{self, NO_API_LISTENER};
    use crate::xds::test_server::{TestServer, WAIT, bootstrap_for};

    fn resp(
        type_url: &str,
        version: &str,
        nonce: &str,
        resources: Vec<xds_proto::protobuf::Any>,
    ) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            resources,
            type_url: type_url.into(),
            nonce: nonce.into(),
            ..Default::default()
        }
    }

    async fn next_change(sub: &mut Subscription) -> ResourceState {
        match tokio::time::timeout(WAIT, sub.changed()).await {
            Ok(Ok(())) => sub.borrow(),
            other => panic!("no change within {WAIT:?}: {other:?}"),
        }
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn subscribe_receive_ack_nack_and_late_subscriber() {
        let mut server = TestServer::tcp().await;
        let client = XdsClient::new(server.bootstrap()).unwrap();
        assert_eq!(client.node_id(), "test-node");
        let mut sub = client.subscribe(ResourceType::Listener, "l1");
        assert!(matches!(sub.borrow(), ResourceState::Requested));

        let mut stream = server.next_stream().await;
        let first = stream.next_request().await;
        assert_eq!(first.type_url, LISTENER);
        assert_eq!(first.resource_names, names(&["l1"]));
        assert_eq!(
            (first.version_info.as_str(), first.response_nonce.as_str()),
            ("", "")
        );
        let node = first.node.unwrap_or_default();
        assert_eq!(node.id, "test-node");
        assert_eq!(node.cluster, "test-cluster");
        assert_eq!(node.user_agent_name, "mesh-client");
        assert!(
            node.client_features
                .contains(&"xds.config.resource-in-sotw".to_string()),
            "the bootstrap's node, with client features: {node:?}"
        );

        stream.respond(resp(
            LISTENER,
            "v1",
            "n1",
            vec![fixtures::listener("l1", "r1")],
        ));
        match next_change(&mut sub).await {
            ResourceState::Ready(Resource::Listener(l)) => assert_eq!(l.name, "l1"),
            other => panic!("unexpected {other:?}"),
        }
        let ack = stream.next_request().await;
        assert_eq!(ack.resource_names, names(&["l1"]));
        assert_eq!(
            (ack.version_info.as_str(), ack.response_nonce.as_str()),
            ("v1", "n1")
        );
        assert!(ack.node.is_none() && ack.error_detail.is_none());

        // NACK: the good value stays in force.
        stream.respond(resp(
            LISTENER,
            "v2",
            "n2",
            vec![fixtures::listener_without_api_listener("l1")],
        ));
        match next_change(&mut sub).await {
            ResourceState::ReadyWithError(Resource::Listener(l), e) => {
                assert_eq!(l.name, "l1");
                assert_eq!(e, NO_API_LISTENER);
            }
            other => panic!("unexpected {other:?}"),
        }
        let nack = stream.next_request().await;
        assert_eq!(
            (nack.version_info.as_str(), nack.response_nonce.as_str()),
            ("v1", "n2")
        );
        let status = nack.error_detail.unwrap_or_default();
        assert_eq!(status.code, 3);
        assert_eq!(
            status.message,
            format!("listener \"l1\": {NO_API_LISTENER}")
        );

        // A late subscriber gets the cached state at once, and nothing is re-requested.
        let late = client.subscribe(ResourceType::Listener, "l1");
        assert!(matches!(late.borrow(), ResourceState::ReadyWithError(..)));
        stream.assert_quiet(Duration::from_millis(200)).await;

        // Unsubscribing happens when the last subscriber drops.
        drop(sub);
        stream.assert_quiet(Duration::from_millis(200)).await;
        drop(late);
        let unsub = stream.next_request().await;
        assert_eq!(unsub.type_url, LISTENER);
        assert!(unsub.resource_names.is_empty());
        assert_eq!(
            (unsub.version_info.as_str(), unsub.response_nonce.as_str()),
            ("v1", "n2")
        );
    }

    fn dump_of(client: &XdsClient, ty: ResourceType, name: &str) -> ResourceDump {
        match client
            .config_dump()
            .into_iter()
            .find(|d| d.resource_type == ty && d.name == name)
        {
            Some(d) => d,
            None => panic!("{name} not in the dump: {:?}", client.config_dump()),
        }
    }

    /// gRFC A40: the per-resource metadata CSDS reports, through subscribe, ACK, a NACK that
    /// also carries a valid resource (A46 keeps it), recovery, and does-not-exist.
    #[tokio::test]
    async fn config_dump_tracks_status_version_raw_value_and_nack_error() {
        let mut server = TestServer::tcp().await;
        let options = ProtocolOptions {
            does_not_exist_timeout: Duration::from_millis(300),
            ..ProtocolOptions::default()
        };
        let client = XdsClient::with_options(server.bootstrap(), options).unwrap();
        let mut l1 = client.subscribe(ResourceType::Listener, "l1");
        let mut l2 = client.subscribe(ResourceType::Listener, "l2");
        let d = dump_of(&client, ResourceType::Listener, "l1");
        assert_eq!(d.status, ResourceStatus::Requested);
        assert_eq!(
            (d.version.as_str(), d.last_updated, &d.raw, &d.error),
            ("", None, &None, &None)
        );

        let mut stream = server.next_stream().await;
        assert_eq!(
            stream.next_request().await.resource_names,
            names(&["l1", "l2"])
        );
        let before = SystemTime::now();
        let v1 = fixtures::listener("l1", "r1");
        stream.respond(resp(
            LISTENER,
            "v1",
            "n1",
            vec![v1.clone(), fixtures::listener("l2", "r2")],
        ));
        next_change(&mut l1).await;
        next_change(&mut l2).await;
        assert_eq!(stream.next_request().await.version_info, "v1", "ACK");
        let d = dump_of(&client, ResourceType::Listener, "l1");
        assert_eq!(
            (d.status, d.version.as_str()),
            (ResourceStatus::Acked, "v1")
        );
        assert_eq!(d.raw.as_ref(), Some(&v1), "the resource as received");
        assert!(d.last_updated.is_some_and(|t| t >= before));
        assert!(d.error.is_none());

        // v2: l1 invalid, l2 valid. l1 is NACKED and keeps v1; l2 is ACKED at v2.
        stream.respond(resp(
            LISTENER,
            "v2",
            "n2",
            vec![
                fixtures::listener_without_api_listener("l1"),
                fixtures::listener("l2", "r2-new"),
            ],
        ));
        next_change(&mut l1).await;
        next_change(&mut l2).await;
        assert!(stream.next_request().await.error_detail.is_some(), "NACK");
        let d = dump_of(&client, ResourceType::Listener, "l1");
        assert_eq!(
            (d.status, d.version.as_str()),
            (ResourceStatus::Nacked, "v1")
        );
        assert_eq!(d.raw.as_ref(), Some(&v1), "the accepted value stays");
        let error = d.error.clone().unwrap();
        assert_eq!(
            (error.version.as_str(), error.details.as_str()),
            ("v2", NO_API_LISTENER)
        );
        assert!(error.time >= d.last_updated.unwrap());
        let d2 = dump_of(&client, ResourceType::Listener, "l2");
        assert_eq!(
            (d2.status, d2.version.as_str()),
            (ResourceStatus::Acked, "v2")
        );
        assert_eq!(d2.raw, Some(fixtures::listener("l2", "r2-new")));

        // v3 fixes l1: ACKED again and the error is cleared.
        stream.respond(resp(
            LISTENER,
            "v3",
            "n3",
            vec![
                fixtures::listener("l1", "r1"),
                fixtures::listener("l2", "r2-new"),
            ],
        ));
        next_change(&mut l1).await;
        assert_eq!(stream.next_request().await.version_info, "v3", "ACK");
        let d = dump_of(&client, ResourceType::Listener, "l1");
        assert_eq!(
            (d.status, d.version.as_str()),
            (ResourceStatus::Acked, "v3")
        );
        assert!(d.error.is_none());
        assert_eq!(
            dump_of(&client, ResourceType::Listener, "l2").version,
            "v3",
            "an unchanged resource still takes the new version"
        );

        // A resource never sent: DOES_NOT_EXIST after the timer.
        let mut missing = client.subscribe(ResourceType::ClusterLoadAssignment, "e1");
        stream.next_request().await;
        assert!(matches!(
            next_change(&mut missing).await,
            ResourceState::DoesNotExist
        ));
        let d = dump_of(&client, ResourceType::ClusterLoadAssignment, "e1");
        assert_eq!(d.status, ResourceStatus::DoesNotExist);
        assert!(d.raw.is_none() && d.last_updated.is_none());

        // Sorted by type then name; an unsubscribed resource leaves the dump.
        let order: Vec<_> = client
            .config_dump()
            .into_iter()
            .map(|d| (d.resource_type, d.name))
            .collect();
        assert_eq!(
            order,
            vec![
                (ResourceType::Listener, "l1".to_string()),
                (ResourceType::Listener, "l2".to_string()),
                (ResourceType::ClusterLoadAssignment, "e1".to_string()),
            ]
        );
        drop(missing);
        assert_eq!(client.config_dump().len(), 2);
    }

    /// A57 turns a connection failure into an error for resources without a value, but for
    /// CSDS they are still only requested: nothing was received, nothing was NACKed.
    #[tokio::test]
    async fn config_dump_keeps_requested_when_the_server_is_unreachable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = XdsClient::new(bootstrap_for(&format!("127.0.0.1:{port}"))).unwrap();
        let mut sub = client.subscribe(ResourceType::Cluster, "c");
        assert!(matches!(
            next_change(&mut sub).await,
            ResourceState::Error(_)
        ));
        let d = dump_of(&client, ResourceType::Cluster, "c");
        assert_eq!(d.status, ResourceStatus::Requested);
        assert!(d.error.is_none());
    }

    #[tokio::test]
    async fn live_clients_lists_the_shared_clients() {
        let a = XdsClient::shared(&bootstrap_for("127.0.0.1:3")).unwrap();
        let listed = live_clients();
        assert!(listed.iter().any(|c| Arc::ptr_eq(&c.inner, &a.inner)));
        let weak = Arc::downgrade(&a.inner);
        drop((a, listed));
        assert_eq!(weak.strong_count(), 0);
        assert!(
            live_clients()
                .iter()
                .all(|c| c.server_uri() != "127.0.0.1:3"),
            "a dropped client is not listed"
        );
    }

    #[tokio::test]
    async fn reconnects_with_last_acked_version_and_keeps_cache() {
        let mut server = TestServer::tcp().await;
        let client = XdsClient::new(server.bootstrap()).unwrap();
        let mut sub = client.subscribe(ResourceType::Cluster, "c1");
        let mut stream = server.next_stream().await;
        stream.next_request().await;
        stream.respond(resp(CLUSTER, "7", "a", vec![fixtures::cluster("c1")]));
        assert!(matches!(
            next_change(&mut sub).await,
            ResourceState::Ready(_)
        ));
        let ack = stream.next_request().await;
        assert_eq!(ack.version_info, "7");

        stream.close();
        let mut stream2 = server.next_stream().await;
        let again = stream2.next_request().await;
        assert_eq!(again.type_url, CLUSTER);
        assert_eq!(again.resource_names, names(&["c1"]));
        assert_eq!(
            (again.version_info.as_str(), again.response_nonce.as_str()),
            ("7", "")
        );
        assert!(
            again.node.is_some(),
            "node on the first request of the new stream"
        );
        assert!(
            matches!(sub.borrow(), ResourceState::Ready(_)),
            "cache survives stream loss"
        );
        drop(stream);
    }

    #[tokio::test]
    async fn first_request_goes_out_before_response_headers() {
        // The server sends no headers until its first response, as grpc-go does.
        let mut server = TestServer::tcp_with_lazy_headers().await;
        let client = XdsClient::new(server.bootstrap()).unwrap();
        let mut sub = client.subscribe(ResourceType::Cluster, "c");
        let mut stream = server.next_stream().await;
        let first = stream.next_request().await;
        assert_eq!(
            (first.type_url.as_str(), first.resource_names.clone()),
            (CLUSTER, names(&["c"]))
        );
        assert!(first.node.is_some());
        // A subscription made while the headers are still pending goes out as well.
        let mut sub2 = client.subscribe(ResourceType::Cluster, "d");
        assert_eq!(
            stream.next_request().await.resource_names,
            names(&["c", "d"])
        );
        stream.respond(resp(
            CLUSTER,
            "1",
            "x",
            vec![fixtures::cluster("c"), fixtures::cluster("d")],
        ));
        for sub in [&mut sub, &mut sub2] {
            assert!(matches!(
                next_change(sub).await,
                ResourceState::Ready(Resource::Cluster(_))
            ));
        }
        let ack = stream.next_request().await;
        assert_eq!(
            (ack.version_info.as_str(), ack.response_nonce.as_str()),
            ("1", "x")
        );
    }

    #[tokio::test]
    async fn unix_socket_server_uri() {
        let mut server = TestServer::unix().await;
        assert!(server.uri.starts_with("unix:///"));
        let client = XdsClient::new(server.bootstrap()).unwrap();
        let mut sub = client.subscribe(ResourceType::Cluster, "c");
        let mut stream = server.next_stream().await;
        assert_eq!(stream.next_request().await.resource_names, names(&["c"]));
        stream.respond(resp(CLUSTER, "1", "x", vec![fixtures::cluster("c")]));
        assert!(matches!(
            next_change(&mut sub).await,
            ResourceState::Ready(Resource::Cluster(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_server_is_an_error_for_resources_without_value() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = XdsClient::new(bootstrap_for(&format!("127.0.0.1:{port}"))).unwrap();
        let mut sub = client.subscribe(ResourceType::Listener, "l");
        match next_change(&mut sub).await {
            ResourceState::Error(m) => assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn does_not_exist_timer_runs_on_a_connected_stream() {
        let mut server = TestServer::tcp().await;
        let options = ProtocolOptions {
            does_not_exist_timeout: Duration::from_millis(200),
            ..ProtocolOptions::default()
        };
        let client = XdsClient::with_options(server.bootstrap(), options).unwrap();
        let mut sub = client.subscribe(ResourceType::ClusterLoadAssignment, "missing");
        let mut stream = server.next_stream().await;
        stream.next_request().await;
        assert!(matches!(
            next_change(&mut sub).await,
            ResourceState::DoesNotExist
        ));
    }

    #[tokio::test]
    async fn task_ends_when_client_and_subscriptions_are_dropped() {
        let mut server = TestServer::tcp().await;
        let client = XdsClient::new(server.bootstrap()).unwrap();
        let sub = client.subscribe(ResourceType::Listener, "l");
        let mut stream = server.next_stream().await;
        stream.next_request().await;
        drop(client);
        stream.assert_quiet(Duration::from_millis(100)).await;
        // The subscription alone kept the task; now the stream ends (an unsubscribe request
        // may or may not make it out first).
        drop(sub);
        stream.wait_closed().await;
    }

    #[tokio::test]
    async fn shared_clients_are_per_bootstrap() {
        let a = XdsClient::shared(&bootstrap_for("127.0.0.1:1")).unwrap();
        let b = XdsClient::shared(&bootstrap_for("127.0.0.1:1")).unwrap();
        let c = XdsClient::shared(&bootstrap_for("127.0.0.1:2")).unwrap();
        assert!(Arc::ptr_eq(&a.inner, &b.inner));
        assert!(!Arc::ptr_eq(&a.inner, &c.inner));
        let weak = Arc::downgrade(&a.inner);
        drop((a, b));
        assert_eq!(
            weak.strong_count(),
            0,
            "the registry holds only weak references"
        );
        assert!(format!("{c:?}").contains("127.0.0.1:2"));
    }

    #[tokio::test]
    async fn rejected_bootstraps() {
        let with_tls = |config: serde_json::Value| {
            let mut b = bootstrap_for("127.0.0.1:1");
            b.xds_servers[0].channel_creds = ChannelCreds::Tls(config);
            XdsClient::new(b)
        };
        for no_ca in [
            serde_json::Value::Null,
            serde_json::json!({}),
            serde_json::json!({"certificate_file": "/c.pem", "private_key_file": "/k.pem"}),
        ] {
            assert!(
                matches!(with_tls(no_ca.clone()), Err(XdsError::UnsupportedChannelCreds(m)) if m.contains("ca_certificate_file") && m.contains("no system roots")),
                "{no_ca}"
            );
        }
        // Files are read on connect (so rotation works), not at creation.
        assert!(with_tls(serde_json::json!({"ca_certificate_file": "/ca.pem"})).is_ok());
        assert!(with_tls(serde_json::json!({"ca_certificate_file": "/ca.pem", "refresh_interval": "5s", "certificate_file": "/c.pem", "private_key_file": "/k.pem"})).is_ok());
        let mut none = bootstrap_for("127.0.0.1:1");
        none.xds_servers.clear();
        assert_eq!(XdsClient::new(none).err(), Some(XdsError::NoXdsServers));
        assert!(matches!(
            XdsClient::new(bootstrap_for("https://x:1")),
            Err(XdsError::UnsupportedServerUri { .. })
        ));
    }

    #[test]
    fn needs_a_runtime() {
        assert_eq!(
            XdsClient::new(bootstrap_for("127.0.0.1:1")).err(),
            Some(XdsError::NoRuntime)
        );
    }

    #[test]
    fn state_transitions() {
        let l = |n: &str| {
            Resource::Listener(Arc::new(crate::config::Listener {
                name: n.into(),
                http: crate::config::HttpConnectionManager {
                    route_source: crate::config::RouteSource::Rds("r".into()),
                    http_filters: vec![],
                    max_stream_duration: None,
                },
            }))
        };
        let mut s = ResourceState::Requested;
        assert!(next_state(&mut s, ResourceEventKind::Changed(l("a"))));
        assert!(
            !next_state(&mut s, ResourceEventKind::Changed(l("a"))),
            "equal value: no wake-up"
        );
        assert!(next_state(&mut s, ResourceEventKind::Error("bad".into())));
        assert!(matches!(&s, ResourceState::ReadyWithError(_, e) if e == "bad"));
        assert!(!next_state(&mut s, ResourceEventKind::Error("bad".into())));
        assert!(
            next_state(&mut s, ResourceEventKind::Changed(l("a"))),
            "a good update clears the error"
        );
        assert!(next_state(&mut s, ResourceEventKind::DoesNotExist));
        assert!(!next_state(&mut s, ResourceEventKind::DoesNotExist));
        assert!(next_state(&mut s, ResourceEventKind::Error("bad".into())));
        assert!(matches!(&s, ResourceState::Error(e) if e == "bad"));
    }

    /// gRFC A88's cache states, one row per event on a cached resource: what the watchers
    /// see and what CSDS reports.
    #[test]
    fn a88_cache_states() {
        let l = || {
            Resource::Listener(Arc::new(crate::config::Listener {
                name: "a".into(),
                http: crate::config::HttpConnectionManager {
                    route_source: crate::config::RouteSource::Rds("r".into()),
                    http_filters: vec![],
                    max_stream_duration: None,
                },
            }))
        };
        let raw = fixtures::listener("a", "r");
        let at = SystemTime::now();
        let cached = || {
            let mut state = ResourceState::Requested;
            let mut meta = Meta::default();
            let kind = ResourceEventKind::Changed(l());
            meta.record(&kind, "v1".into(), Some(raw.clone()), at);
            next_state(&mut state, kind);
            (state, meta)
        };
        // (event, watchers' state: Some(in force?) or None for no change, CSDS status,
        //  value still dumped, error details contain)
        let rows: Vec<(ResourceEventKind, Option<bool>, ResourceStatus, bool, &str)> = vec![
            (
                ResourceEventKind::Error("bad".into()),
                Some(true),
                ResourceStatus::Nacked,
                true,
                "bad",
            ),
            (
                ResourceEventKind::Dropped("bad".into()),
                Some(false),
                ResourceStatus::Nacked,
                false,
                "bad (fail_on_data_errors: the previous value was discarded)",
            ),
            (
                ResourceEventKind::DoesNotExist,
                Some(false),
                ResourceStatus::DoesNotExist,
                false,
                "",
            ),
            (
                ResourceEventKind::DeletionIgnored,
                None,
                ResourceStatus::DoesNotExist,
                true,
                "deleted by the xDS server; the previous value stays in force",
            ),
            // xRFC TP3: a server error keeps the value (an ambient error) ...
            (
                ResourceEventKind::ReceivedError {
                    message: "the xDS server reported PERMISSION_DENIED: no".into(),
                    discard: false,
                },
                Some(true),
                ResourceStatus::ReceivedError,
                true,
                "the xDS server reported PERMISSION_DENIED: no",
            ),
            // ... unless it is a data error under fail_on_data_errors.
            (
                ResourceEventKind::ReceivedError {
                    message: "the xDS server reported NOT_FOUND: gone".into(),
                    discard: true,
                },
                Some(false),
                ResourceStatus::ReceivedError,
                false,
                "the xDS server reported NOT_FOUND: gone (fail_on_data_errors: the previous \
                 value was discarded)",
            ),
        ];
        for (kind, in_force, status, dumped, details) in rows {
            let (mut state, mut meta) = cached();
            let label = format!("{kind:?}");
            meta.record(&kind, "v2".into(), None, at);
            let changed = next_state(&mut state, kind);
            match in_force {
                None => assert!(!changed, "{label}: no wake-up"),
                Some(f) => {
                    assert!(changed, "{label}");
                    assert_eq!(state.resource().is_some(), f, "{label}: {state:?}");
                }
            }
            assert_eq!(meta.status, status, "{label}");
            assert_eq!(meta.raw.is_some(), dumped, "{label}");
            assert_eq!(meta.version.is_empty(), !dumped, "{label}");
            match &meta.error {
                Some(e) => {
                    assert!(e.details.contains(details), "{label}: {e:?}");
                    assert_eq!(e.version, "v2", "{label}");
                }
                None => assert!(details.is_empty(), "{label}"),
            }
        }
        // The transient timer fires only for a resource never received.
        let mut state = ResourceState::Requested;
        let mut meta = Meta::default();
        let kind = ResourceEventKind::TimedOut("timeout: slow".into());
        meta.record(&kind, String::new(), None, at);
        assert!(next_state(&mut state, kind));
        assert!(matches!(&state, ResourceState::Error(m) if m == "timeout: slow"));
        assert_eq!(meta.status, ResourceStatus::Timeout);
        assert_eq!(meta.status.as_str(), "TIMEOUT");
        // A server error for a resource never received fails it, kept or not.
        for discard in [false, true] {
            let mut state = ResourceState::Requested;
            let mut meta = Meta::default();
            let message = "the xDS server reported UNAVAILABLE: later".to_string();
            let kind = ResourceEventKind::ReceivedError {
                message: message.clone(),
                discard,
            };
            meta.record(&kind, "v1".into(), None, at);
            assert!(next_state(&mut state, kind.clone()));
            assert!(matches!(&state, ResourceState::Error(m) if *m == message));
            assert!(
                !next_state(&mut state, kind),
                "the same error again: no wake-up"
            );
            assert_eq!(meta.status, ResourceStatus::ReceivedError);
            assert_eq!(meta.status.as_str(), "RECEIVED_ERROR");
            assert!(meta.raw.is_none());
            assert!(meta.error.is_some_and(|e| e.details.starts_with(&message)));
        }
    }

    /// `fail_on_data_errors` end to end through the client: a NACK of a cached listener
    /// fails it for the watchers and drops it from the config dump; a good update brings
    /// it back.
    #[tokio::test]
    async fn fail_on_data_errors_drops_a_nacked_resource() {
        let mut server = TestServer::tcp().await;
        let mut bootstrap = server.bootstrap();
        bootstrap.xds_servers[0]
            .server_features
            .push(crate::bootstrap::FEATURE_FAIL_ON_DATA_ERRORS.to_string());
        let client = XdsClient::new(bootstrap).unwrap();
        let mut sub = client.subscribe(ResourceType::Listener, "l1");
        let mut stream = server.next_stream().await;
        stream.next_request().await;
        stream.respond(resp(
            LISTENER,
            "v1",
            "n1",
            vec![fixtures::listener("l1", "r1")],
        ));
        assert!(matches!(
            next_change(&mut sub).await,
            ResourceState::Ready(_)
        ));
        stream.next_request().await;
        stream.respond(resp(
            LISTENER,
            "v2",
            "n2",
            vec![fixtures::listener_without_api_listener("l1")],
        ));
        match next_change(&mut sub).await {
            ResourceState::Error(e) => assert_eq!(e, NO_API_LISTENER),
            other => panic!("unexpected {other:?}"),
        }
        let nack = stream.next_request().await;
        assert_eq!(nack.version_info, "v1");
        assert!(nack.error_detail.is_some());
        let dump = client.config_dump();
        let l1 = dump.iter().find(|d| d.name == "l1").unwrap();
        assert_eq!(l1.status, ResourceStatus::Nacked);
        assert!(l1.raw.is_none() && l1.version.is_empty(), "{l1:?}");
        assert_eq!(l1.error.as_ref().map(|e| e.version.as_str()), Some("v2"));
        stream.respond(resp(
            LISTENER,
            "v3",
            "n3",
            vec![fixtures::listener("l1", "r1")],
        ));
        assert!(matches!(
            next_change(&mut sub).await,
            ResourceState::Ready(_)
        ));
    }
}
