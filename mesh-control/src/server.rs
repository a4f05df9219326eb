//! [`ControlPlane`]: the served resources and their updates, and the gRPC server that
//! serves them over ADS ([`ControlPlane::serve`], [`ControlPlane::start`],
//! [`RunningControlPlane`]).
//!
//! Every change bumps one global version (`"1"`, `"2"`, …) and is pushed to every connected
//! stream; each stream only receives the types whose content changed for it (state of the
//! world), or only the resources that changed or were removed (delta xDS).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::{info, warn};
use xds_proto::envoy::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use xds_proto::protobuf::Any;
use xds_proto::type_url;

use crate::ads::{AdsCounters, AdsService, AdsStats};
use crate::error::{ConfigError, ServeError};
use crate::model::MeshConfig;
use crate::stream::Resources;
use crate::translate::translate;

/// How long [`RunningControlPlane::shutdown`] waits for connections to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The resource types a [`MeshConfig`] produces (and [`ControlPlane::set_config`] replaces).
const MESH_TYPES: [&str; 4] = [
    type_url::LISTENER,
    type_url::ROUTE_CONFIGURATION,
    type_url::CLUSTER,
    type_url::CLUSTER_LOAD_ASSIGNMENT,
];

/// A development control plane: the resources it serves and the ADS streams served.
///
/// Cheap to clone; clones share state.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = mesh_control::MeshConfig::from_file("mesh.yaml")?;
/// let running = mesh_control::ControlPlane::start("127.0.0.1:0".parse()?, config).await?;
/// println!("ADS on {}", running.local_addr());
/// running.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ControlPlane {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    resources: watch::Sender<Arc<Resources>>,
    /// Shutdown generation; [`ControlPlane::shutdown`] bumps it.
    stop: watch::Sender<u64>,
    config: Mutex<Option<MeshConfig>>,
    streams: Arc<AtomicUsize>,
    counters: Arc<AdsCounters>,
}

impl ControlPlane {
    /// A control plane serving the translation of `config` at version `"1"`.
    pub fn new(config: MeshConfig) -> Result<ControlPlane, ConfigError> {
        let snapshot = translate(&config)?;
        let by_type = snapshot
            .resources
            .into_iter()
            .map(|(t, list)| (t.to_string(), list))
            .collect();
        let control = ControlPlane::with_resources(Resources {
            version: 1,
            by_type,
            errors: BTreeMap::new(),
        });
        *control.lock_config() = Some(config);
        Ok(control)
    }

    /// Raw mode: serves exactly these resources (by type URL), at version `"1"`; no
    /// `mesh.yaml` involved. Pass an empty map and use [`ControlPlane::set_resources`].
    pub fn raw<K: Into<String>>(
        resources: impl IntoIterator<Item = (K, Vec<(String, Any)>)>,
    ) -> ControlPlane {
        ControlPlane::with_resources(Resources {
            version: 1,
            by_type: resources.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            errors: BTreeMap::new(),
        })
    }

    /// Raw mode with no resources (same as `ControlPlane::raw` of an empty map).
    pub fn empty() -> ControlPlane {
        ControlPlane::raw(BTreeMap::<String, Vec<(String, Any)>>::new())
    }

    fn with_resources(resources: Resources) -> ControlPlane {
        ControlPlane {
            inner: Arc::new(Inner {
                resources: watch::Sender::new(Arc::new(resources)),
                stop: watch::Sender::new(0),
                config: Mutex::new(None),
                streams: Arc::new(AtomicUsize::new(0)),
                counters: Arc::default(),
            }),
        }
    }

    fn lock_config(&self) -> std::sync::MutexGuard<'_, Option<MeshConfig>> {
        self.inner
            .config
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Translates `config`, bumps the version and pushes the result to every connected
    /// stream. On error nothing changes. Raw resources of other types are kept.
    pub fn set_config(&self, config: MeshConfig) -> Result<(), ConfigError> {
        let snapshot = translate(&config)?;
        let mut version = 0;
        self.inner.resources.send_modify(|current| {
            let mut next = Resources::clone(current);
            for t in MESH_TYPES {
                next.by_type.remove(t);
            }
            for (t, list) in &snapshot.resources {
                next.by_type.insert(t.to_string(), list.clone());
            }
            next.version += 1;
            version = next.version;
            *current = Arc::new(next);
        });
        *self.lock_config() = Some(config);
        info!(
            version,
            listeners = snapshot.of_type(type_url::LISTENER).len(),
            clusters = snapshot.of_type(type_url::CLUSTER).len(),
            "pushing new configuration"
        );
        Ok(())
    }

    /// Replaces every resource of one type (raw push), bumps the version and pushes it.
    /// Serves any type URL, not only the four `mesh.yaml` produces.
    pub fn set_resources(&self, type_url: &str, resources: Vec<(String, Any)>) {
        self.inner.resources.send_modify(|current| {
            let mut next = Resources::clone(current);
            next.by_type.insert(type_url.to_string(), resources);
            next.version += 1;
            *current = Arc::new(next);
        });
    }

    /// Sets (`Some`) or clears (`None`) the error this server reports for one resource
    /// (xRFC TP3 `resource_errors`), bumps the version and pushes it. Works in raw mode and
    /// with a `mesh.yaml` alike, for any type URL.
    ///
    /// While an error is set, a stream subscribed to `name` (by name or wildcard) is not
    /// sent the resource, even if it is served: every state-of-the-world response of that
    /// type carries the error in `resource_errors` instead, and a delta stream gets one
    /// response carrying it (delta responses carry the `resource_errors` of the stream's
    /// subscribed names whenever they change; the resource is neither sent nor removed).
    /// Clearing the error sends the resource again, if served. Streams not subscribed to
    /// `name` see nothing of it. (TP3 only requires a server to send an error once; the
    /// state-of-the-world repetition is harmless, clients remember errors until the
    /// resource comes back.)
    ///
    /// ```no_run
    /// # fn demo(control: &mesh_control::ControlPlane) {
    /// use xds_proto::envoy::google::rpc::Status;
    /// let denied = Status { code: 7, message: "no access".into(), details: vec![] };
    /// control.set_resource_error(xds_proto::type_url::CLUSTER, "c1", Some(denied));
    /// control.set_resource_error(xds_proto::type_url::CLUSTER, "c1", None);
    /// # }
    /// ```
    pub fn set_resource_error(
        &self,
        type_url: &str,
        name: &str,
        error: Option<xds_proto::envoy::google::rpc::Status>,
    ) {
        self.inner.resources.send_modify(|current| {
            let mut next = Resources::clone(current);
            let of_type = next.errors.entry(type_url.to_string()).or_default();
            match error {
                Some(status) => {
                    of_type.insert(name.to_string(), status);
                }
                None => {
                    of_type.remove(name);
                }
            }
            if of_type.is_empty() {
                next.errors.remove(type_url);
            }
            next.version += 1;
            *current = Arc::new(next);
        });
    }

    /// Replaces every resource of every type at once (raw files), bumps the version.
    pub(crate) fn replace_all(&self, by_type: BTreeMap<String, Vec<(String, Any)>>) {
        self.inner.resources.send_modify(|current| {
            *current = Arc::new(Resources {
                version: current.version + 1,
                by_type,
                errors: current.errors.clone(),
            });
        });
    }

    /// The version currently served (`version_info` of the next responses).
    pub fn version(&self) -> String {
        self.inner.resources.borrow().version.to_string()
    }

    /// The configuration last applied with [`ControlPlane::new`] or
    /// [`ControlPlane::set_config`] (`None` in raw mode).
    pub fn config(&self) -> Option<MeshConfig> {
        self.lock_config().clone()
    }

    /// The resources of one type currently served.
    pub fn resources(&self, type_url: &str) -> Vec<(String, Any)> {
        self.inner
            .resources
            .borrow()
            .by_type
            .get(type_url)
            .cloned()
            .unwrap_or_default()
    }

    /// The number of ADS streams currently open.
    pub fn connected_streams(&self) -> usize {
        self.inner.streams.load(Ordering::Relaxed)
    }

    /// Totals over every ADS stream served so far, state of the world and delta: responses,
    /// resources and removals sent, `initial_resource_versions` received.
    pub fn stats(&self) -> AdsStats {
        self.inner.counters.snapshot()
    }

    /// The ADS service, to mount in a tonic server of your own. Its streams end when
    /// [`ControlPlane::shutdown`] is called.
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<AdsService> {
        AggregatedDiscoveryServiceServer::new(AdsService {
            resources: self.inner.resources.subscribe(),
            stop: self.inner.stop.subscribe(),
            generation: *self.inner.stop.borrow(),
            streams: Arc::clone(&self.inner.streams),
            counters: Arc::clone(&self.inner.counters),
        })
    }

    /// Ends every [`ControlPlane::serve`] running and every ADS stream open so far (clients
    /// see `UNAVAILABLE`). The control plane can be served again afterwards.
    pub fn shutdown(&self) {
        self.inner.stop.send_modify(|g| *g += 1);
    }

    /// Serves ADS on `listener` until [`ControlPlane::shutdown`] (or
    /// [`RunningControlPlane::shutdown`]) is called.
    pub async fn serve(&self, listener: TcpListener) -> Result<(), ServeError> {
        let mut stop = self.inner.stop.subscribe();
        let generation = *stop.borrow_and_update();
        let service = self.service();
        let incoming = TcpListenerStream::new(listener);
        tonic::transport::Server::builder()
            .max_concurrent_streams(Some(128))
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|g| *g != generation).await;
            })
            .await?;
        Ok(())
    }

    /// Binds `addr` (`127.0.0.1:0` picks a free port), serves `config` there in a spawned
    /// task, and returns the handle.
    pub async fn start(
        addr: SocketAddr,
        config: MeshConfig,
    ) -> Result<RunningControlPlane, ServeError> {
        ControlPlane::new(config)?.listen(addr).await
    }

    /// Binds `addr` and serves this control plane (for instance a raw one) in a spawned task.
    pub async fn listen(&self, addr: SocketAddr) -> Result<RunningControlPlane, ServeError> {
        let bind_error = |source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let control = self.clone();
        let task = tokio::spawn(async move { control.serve(listener).await });
        info!(%local_addr, "ADS server listening");
        Ok(RunningControlPlane {
            local_addr,
            control: self.clone(),
            task: Some(task),
        })
    }
}

/// A control plane served in a background task. Dropping it shuts it down too.
#[derive(Debug)]
pub struct RunningControlPlane {
    local_addr: SocketAddr,
    control: ControlPlane,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl RunningControlPlane {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The control plane, to push updates.
    pub fn control(&self) -> &ControlPlane {
        &self.control
    }

    /// Stops accepting connections and ends every open ADS stream (clients see
    /// `UNAVAILABLE`), then waits (at most 5 s) for the server to finish.
    pub async fn shutdown(mut self) {
        self.control.shutdown();
        if let Some(mut task) = self.task.take() {
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => warn!("ADS server ended with an error: {e}"),
                Ok(Err(e)) => warn!("ADS server task failed: {e}"),
                Err(_) => {
                    warn!("ADS server did not stop within {SHUTDOWN_GRACE:?}; aborting it");
                    task.abort();
                }
            }
        }
    }

    /// Waits until the server ends on its own (after a shutdown or an error).
    pub async fn wait(mut self) -> Result<(), ServeError> {
        match self.task.take() {
            Some(task) => task.await.map_err(|e| ServeError::Task(e.to_string()))?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningControlPlane {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.control.shutdown();
        }
    }
}
