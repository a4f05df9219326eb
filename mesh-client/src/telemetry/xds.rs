//! xDS client signals: the gRFC A78 instruments (`grpc.xds_client.*`) and the mesh's
//! staleness gauges (seconds since the last accepted update per type, since the last
//! contact with the control plane) and certificate seconds-to-expiry.
//!
//! The ADS task only bumps atomics in [`XdsClientStats`]; the observable instruments read
//! them, over every live shared [`crate::xds::XdsClient`], when a reader collects.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableCounter, ObservableGauge};

use super::metrics::{labels, names};
use crate::xds::resource::ResourceType;
use crate::xds::{ResourceStatus, XdsClient, live_clients};

fn index(ty: ResourceType) -> usize {
    match ty {
        ResourceType::Listener => 0,
        ResourceType::RouteConfiguration => 1,
        ResourceType::Cluster => 2,
        ResourceType::ClusterLoadAssignment => 3,
    }
}

/// What one xDS client's ADS stream has seen; read by the A78 and staleness instruments.
#[derive(Debug)]
pub struct XdsClientStats {
    created: Instant,
    target: OnceLock<String>,
    connected: AtomicBool,
    /// An ADS stream is open and has delivered a response.
    stream_up: AtomicBool,
    healthy: AtomicBool,
    server_failures: AtomicU64,
    valid: [AtomicU64; 4],
    invalid: [AtomicU64; 4],
    last_update: Mutex<[Option<Instant>; 4]>,
    last_contact: Mutex<Option<Instant>>,
}

impl Default for XdsClientStats {
    fn default() -> Self {
        XdsClientStats {
            created: Instant::now(),
            target: OnceLock::new(),
            connected: AtomicBool::new(false),
            stream_up: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            server_failures: AtomicU64::new(0),
            valid: Default::default(),
            invalid: Default::default(),
            last_update: Mutex::new([None; 4]),
            last_contact: Mutex::new(None),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl XdsClientStats {
    /// Sets the A78 `grpc.target` of this client if none is set yet: the first channel
    /// target that used it, or `#server` (a shared client reports its first user).
    pub(crate) fn set_target(&self, target: impl FnOnce() -> String) {
        if self.target.get().is_none() {
            let _ = self.target.set(target());
        }
    }

    /// The A78 `grpc.target` label.
    pub fn target(&self) -> &str {
        self.target.get().map(String::as_str).unwrap_or("")
    }

    /// A message arrived from the control plane.
    pub(crate) fn on_response(&self) {
        *lock(&self.last_contact) = Some(Instant::now());
        self.connected.store(true, Ordering::Relaxed);
        self.stream_up.store(true, Ordering::Relaxed);
        self.healthy.store(true, Ordering::Relaxed);
    }

    /// The stream ended; without any response it is a server failure (gRFC A57, A78).
    pub(crate) fn on_stream_failed(&self, got_response: bool) {
        if self.stream_up.swap(false, Ordering::Relaxed) {
            // The control plane was reachable until now.
            *lock(&self.last_contact) = Some(Instant::now());
        }
        if got_response {
            // A57: a stream that saw a response ending is not a failure of the server.
            return;
        }
        self.connected.store(false, Ordering::Relaxed);
        if self.healthy.swap(false, Ordering::Relaxed) {
            self.server_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A resource of `ty` was received and accepted.
    pub(crate) fn on_valid(&self, ty: ResourceType) {
        if let Some(c) = self.valid.get(index(ty)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(t) = lock(&self.last_update).get_mut(index(ty)) {
            *t = Some(Instant::now());
        }
    }

    /// A resource of `ty` was received and rejected.
    pub(crate) fn on_invalid(&self, ty: ResourceType) {
        if let Some(c) = self.invalid.get(index(ty)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether the ADS stream currently works (A78 `connected`).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Healthy → unhealthy transitions of the xDS server (A78 `server_failure`).
    pub fn server_failures(&self) -> u64 {
        self.server_failures.load(Ordering::Relaxed)
    }

    /// Seconds since the control plane was last known reachable: 0 while an ADS stream
    /// that has delivered a response is open; otherwise since that stream ended (since the
    /// client was created if none ever did).
    pub fn seconds_since_contact(&self) -> f64 {
        if self.stream_up.load(Ordering::Relaxed) {
            return 0.0;
        }
        let since = lock(&self.last_contact).unwrap_or(self.created);
        since.elapsed().as_secs_f64()
    }

    /// Seconds since the last accepted update of a `ty` resource; `None` before the first.
    pub fn seconds_since_update(&self, ty: ResourceType) -> Option<f64> {
        let at = lock(&self.last_update).get(index(ty)).copied().flatten()?;
        Some(at.elapsed().as_secs_f64())
    }
}

/// `grpc.xds.resource_type`: the type URL without its `type.googleapis.com/` prefix.
/// The `grpc.xds.cache_state` label of a resource (gRFC A78, with gRFC A88's values for a
/// kept deletion, a transient timeout and a server-reported error): from its CSDS status
/// and whether a value is still cached (dumped).
fn cache_state(status: ResourceStatus, cached: bool) -> &'static str {
    match status {
        ResourceStatus::Requested => "requested",
        ResourceStatus::DoesNotExist if cached => "does_not_exist_but_cached",
        ResourceStatus::DoesNotExist => "does_not_exist",
        ResourceStatus::Timeout => "timeout",
        ResourceStatus::Acked => "acked",
        ResourceStatus::Nacked if cached => "nacked_but_cached",
        ResourceStatus::Nacked => "nacked",
        // xRFC TP3: the server sent an error for the resource (gRFC A88).
        ResourceStatus::ReceivedError if cached => "received_error_but_cached",
        ResourceStatus::ReceivedError => "received_error",
        // Ours: served stale from the last-known-good cache on disk.
        ResourceStatus::Cached => "cached",
    }
}

fn type_name(ty: ResourceType) -> &'static str {
    let url = ty.type_url();
    url.rsplit_once('/').map(|(_, n)| n).unwrap_or(url)
}

/// `grpc.xds.authority` of a resource name (gRFC A47): `#old` unless `xdstp://auth/...`.
fn authority(name: &str) -> String {
    match name.strip_prefix("xdstp://") {
        Some(rest) => rest.split('/').next().unwrap_or_default().to_string(),
        None => "#old".to_string(),
    }
}

fn base(client: &XdsClient) -> [KeyValue; 2] {
    [
        KeyValue::new(labels::TARGET, client.stats().target().to_string()),
        KeyValue::new(labels::XDS_SERVER, client.server_uri().to_string()),
    ]
}

fn with_type(client: &XdsClient, ty: ResourceType) -> [KeyValue; 3] {
    let [a, b] = base(client);
    [
        a,
        b,
        KeyValue::new(labels::XDS_RESOURCE_TYPE, type_name(ty)),
    ]
}

/// The observable instruments, reading every live shared xDS client.
pub(super) type Observed = (
    ObservableGauge<i64>,
    ObservableCounter<u64>,
    ObservableCounter<u64>,
    ObservableCounter<u64>,
    ObservableGauge<i64>,
    ObservableGauge<f64>,
    ObservableGauge<f64>,
    ObservableGauge<i64>,
);

pub(super) fn register(meter: &Meter) -> Observed {
    let connected = meter
        .i64_observable_gauge(names::XDS_CONNECTED)
        .with_unit("{bool}")
        .with_description(
            "Whether or not the xDS client currently has a working ADS stream to the xDS server.",
        )
        .with_callback(|o| {
            for c in live_clients() {
                o.observe(i64::from(c.stats().connected()), &base(&c));
            }
        })
        .build();
    let failures = meter
        .u64_observable_counter(names::XDS_SERVER_FAILURE)
        .with_unit("{failure}")
        .with_description("A counter of xDS servers going from healthy to unhealthy.")
        .with_callback(|o| {
            for c in live_clients() {
                o.observe(c.stats().server_failures(), &base(&c));
            }
        })
        .build();
    let valid = meter
        .u64_observable_counter(names::XDS_UPDATES_VALID)
        .with_unit("{resource}")
        .with_description(
            "A counter of resources received that were considered valid, even if unchanged.",
        )
        .with_callback(|o| {
            for c in live_clients() {
                for ty in ResourceType::ALL {
                    let n = c.stats().valid[index(ty)].load(Ordering::Relaxed);
                    o.observe(n, &with_type(&c, ty));
                }
            }
        })
        .build();
    let invalid = meter
        .u64_observable_counter(names::XDS_UPDATES_INVALID)
        .with_unit("{resource}")
        .with_description("A counter of resources received that were considered invalid.")
        .with_callback(|o| {
            for c in live_clients() {
                for ty in ResourceType::ALL {
                    let n = c.stats().invalid[index(ty)].load(Ordering::Relaxed);
                    o.observe(n, &with_type(&c, ty));
                }
            }
        })
        .build();
    let resources = meter
        .i64_observable_gauge(names::XDS_RESOURCES)
        .with_unit("{resource}")
        .with_description("Number of xDS resources.")
        .with_callback(|o| {
            for c in live_clients() {
                let mut counts: std::collections::BTreeMap<(ResourceType, String, &str), i64> =
                    Default::default();
                for r in c.config_dump() {
                    let state = cache_state(r.status, r.raw.is_some());
                    *counts
                        .entry((r.resource_type, authority(&r.name), state))
                        .or_default() += 1;
                }
                for ((ty, auth, state), n) in counts {
                    o.observe(
                        n,
                        &[
                            KeyValue::new(labels::TARGET, c.stats().target().to_string()),
                            KeyValue::new(labels::XDS_AUTHORITY, auth),
                            KeyValue::new(labels::XDS_CACHE_STATE, state),
                            KeyValue::new(labels::XDS_RESOURCE_TYPE, type_name(ty)),
                        ],
                    );
                }
            }
        })
        .build();
    let since_update = meter
        .f64_observable_gauge(names::XDS_SECONDS_SINCE_UPDATE)
        .with_unit("s")
        .with_description("Seconds since the last accepted update of each resource type.")
        .with_callback(|o| {
            for c in live_clients() {
                for ty in ResourceType::ALL {
                    if let Some(s) = c.stats().seconds_since_update(ty) {
                        o.observe(s, &with_type(&c, ty));
                    }
                }
            }
        })
        .build();
    let since_contact = meter
        .f64_observable_gauge(names::XDS_SECONDS_SINCE_CONTACT)
        .with_unit("s")
        .with_description("Seconds since the control plane was last known reachable (0 while the ADS stream is up).")
        .with_callback(|o| {
            for c in live_clients() {
                o.observe(c.stats().seconds_since_contact(), &base(&c));
            }
        })
        .build();
    let expiry = meter
        .i64_observable_gauge(names::CERT_SECONDS_TO_EXPIRY)
        .with_unit("s")
        .with_description("Seconds until each certificate provider's identity certificate expires.")
        .with_callback(|o| {
            let mut seen = std::collections::BTreeSet::new();
            for c in live_clients() {
                let registry = crate::identity::ProviderRegistry::for_bootstrap(c.bootstrap());
                for (instance, secs) in registry.seconds_to_expiry() {
                    if let Some(secs) = secs
                        && seen.insert(instance.clone())
                    {
                        o.observe(secs, &[KeyValue::new(labels::CERT_PROVIDER, instance)]);
                    }
                }
            }
        })
        .build();
    (
        connected,
        failures,
        valid,
        invalid,
        resources,
        since_update,
        since_contact,
        expiry,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a88_cache_state_labels() {
        let rows = [
            (
                ResourceStatus::ReceivedError,
                true,
                "received_error_but_cached",
            ),
            (ResourceStatus::ReceivedError, false, "received_error"),
            (ResourceStatus::Nacked, true, "nacked_but_cached"),
            (ResourceStatus::Nacked, false, "nacked"),
            (
                ResourceStatus::DoesNotExist,
                true,
                "does_not_exist_but_cached",
            ),
            (ResourceStatus::DoesNotExist, false, "does_not_exist"),
            (ResourceStatus::Timeout, false, "timeout"),
            (ResourceStatus::Acked, true, "acked"),
            (ResourceStatus::Requested, false, "requested"),
        ];
        for (status, cached, label) in rows {
            assert_eq!(
                cache_state(status, cached),
                label,
                "{status:?} cached={cached}"
            );
        }
    }
}
