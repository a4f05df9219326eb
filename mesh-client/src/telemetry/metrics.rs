//! The instruments and the [`Telemetry`] handle: gRFC A66 per-call instruments (names,
//! units, attributes, default buckets), gRFC A78 xDS client instruments, and the mesh's own
//! signals.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider};
use opentelemetry::{InstrumentationScope, KeyValue};

use super::xds;

/// Instrument names.
pub mod names {
    /// A66: RPC attempts started (`{attempt}`; grpc.method, grpc.target).
    pub const CLIENT_ATTEMPT_STARTED: &str = "grpc.client.attempt.started";
    /// A66: attempt duration including the pick (`s`; grpc.method, grpc.target, grpc.status).
    pub const CLIENT_ATTEMPT_DURATION: &str = "grpc.client.attempt.duration";
    /// A66: request message bytes per attempt (`By`).
    pub const CLIENT_ATTEMPT_SENT_SIZE: &str =
        "grpc.client.attempt.sent_total_compressed_message_size";
    /// A66: response message bytes per attempt (`By`).
    pub const CLIENT_ATTEMPT_RCVD_SIZE: &str =
        "grpc.client.attempt.rcvd_total_compressed_message_size";
    /// A66: call duration as the application sees it (`s`).
    pub const CLIENT_CALL_DURATION: &str = "grpc.client.call.duration";
    /// A66: calls started on the server (`{call}`; grpc.method).
    pub const SERVER_CALL_STARTED: &str = "grpc.server.call.started";
    /// A66: server call duration (`s`; grpc.method, grpc.status).
    pub const SERVER_CALL_DURATION: &str = "grpc.server.call.duration";
    /// A66: response message bytes per server call (`By`).
    pub const SERVER_CALL_SENT_SIZE: &str = "grpc.server.call.sent_total_compressed_message_size";
    /// A66: request message bytes per server call (`By`).
    pub const SERVER_CALL_RCVD_SIZE: &str = "grpc.server.call.rcvd_total_compressed_message_size";
    /// A78: whether the ADS stream works (`{bool}`; grpc.target, grpc.xds.server).
    pub const XDS_CONNECTED: &str = "grpc.xds_client.connected";
    /// A78: xDS server healthy → unhealthy transitions (`{failure}`).
    pub const XDS_SERVER_FAILURE: &str = "grpc.xds_client.server_failure";
    /// A78: valid resources received, even unchanged (`{resource}`; + grpc.xds.resource_type).
    pub const XDS_UPDATES_VALID: &str = "grpc.xds_client.resource_updates_valid";
    /// A78: invalid (NACKed) resources received (`{resource}`).
    pub const XDS_UPDATES_INVALID: &str = "grpc.xds_client.resource_updates_invalid";
    /// A78: subscribed resources by cache state (`{resource}`; grpc.target,
    /// grpc.xds.authority, grpc.xds.cache_state, grpc.xds.resource_type).
    pub const XDS_RESOURCES: &str = "grpc.xds_client.resources";
    /// Ours: seconds since the last accepted update of each resource type (`s`).
    pub const XDS_SECONDS_SINCE_UPDATE: &str = "mesh.xds_client.seconds_since_update";
    /// Ours: seconds since the control plane was last known reachable (`s`; 0 while the
    /// ADS stream is up): alert on staleness, not only on liveness.
    pub const XDS_SECONDS_SINCE_CONTACT: &str = "mesh.xds_client.seconds_since_contact";
    /// Ours: seconds until each certificate provider's identity certificate expires (`s`;
    /// negative once expired).
    pub const CERT_SECONDS_TO_EXPIRY: &str = "mesh.identity.certificate.seconds_to_expiry";
    /// Ours: RBAC shadow (dry-run) decisions (`{decision}`; mesh.rbac.filter,
    /// mesh.rbac.shadow_decision).
    pub const RBAC_SHADOW_DECISIONS: &str = "mesh.server.rbac.shadow_decisions";
    /// Ours: retries refused because the retry budget was exhausted (`{retry}`).
    pub const RETRY_BUDGET_EXHAUSTED: &str = "mesh.client.retry_budget.exhausted";
    /// Ours: outlier-detection ejections (`{ejection}`; mesh.cluster).
    pub const OUTLIER_EJECTIONS: &str = "mesh.client.outlier_detection.ejections";
    /// Ours: requests dropped by a circuit breaker (`{request}`; grpc.target, mesh.cluster).
    pub const CIRCUIT_BREAKER_DROPS: &str = "mesh.client.circuit_breaker.drops";
}

/// Attribute (label) keys.
pub mod labels {
    /// A66: `pkg.Service/Method`, or `other` for methods the server does not register.
    pub const METHOD: &str = "grpc.method";
    /// A66: the status code name (`OK`, `UNAVAILABLE`, ...).
    pub const STATUS: &str = "grpc.status";
    /// A66/A78: the channel target (`xds:///name`); `#server` for a server's xDS client.
    pub const TARGET: &str = "grpc.target";
    /// A78: the xDS server URI.
    pub const XDS_SERVER: &str = "grpc.xds.server";
    /// A78: the resource type (`envoy.config.listener.v3.Listener`, ...).
    pub const XDS_RESOURCE_TYPE: &str = "grpc.xds.resource_type";
    /// A78: the xDS authority (`#old` for names that are not `xdstp:`).
    pub const XDS_AUTHORITY: &str = "grpc.xds.authority";
    /// A78: `requested`, `does_not_exist`, `acked`, `nacked`, `nacked_but_cached`.
    pub const XDS_CACHE_STATE: &str = "grpc.xds.cache_state";
    /// Ours: the cluster name.
    pub const CLUSTER: &str = "mesh.cluster";
    /// Ours: the certificate provider instance name.
    pub const CERT_PROVIDER: &str = "mesh.identity.provider";
    /// Ours: the RBAC filter instance name.
    pub const RBAC_FILTER: &str = "mesh.rbac.filter";
    /// Ours: `allow` or `deny`, what the shadow rules would have decided.
    pub const RBAC_SHADOW_DECISION: &str = "mesh.rbac.shadow_decision";
}

/// A66 latency buckets (seconds).
const LATENCY_BUCKETS: [f64; 41] = [
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005,
    0.006, 0.008, 0.01, 0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16,
    0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];

/// A66 size buckets (bytes).
const SIZE_BUCKETS: [f64; 14] = [
    0.0,
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

/// The number of gRPC status codes (`OK` = 0 to `UNAUTHENTICATED` = 16).
const STATUS_CODES: i32 = 17;

/// The A66 attribute sets of one method (and, on a client, one target), built once: the
/// attributes of the `started` counter, and the same followed by `grpc.status` for each
/// status code. A call records with slices it borrows: no label vector is built, no
/// `Arc<str>` reference count touched, per call.
pub(crate) struct LabelSet {
    base: Box<[KeyValue]>,
    by_status: Box<[Box<[KeyValue]>]>,
}

impl LabelSet {
    fn new(base: Vec<KeyValue>) -> LabelSet {
        let by_status = (0..STATUS_CODES)
            .map(|c| {
                let mut attrs = base.clone();
                let name = super::status_name(tonic::Code::from(c));
                attrs.push(KeyValue::new(labels::STATUS, name));
                attrs.into_boxed_slice()
            })
            .collect();
        LabelSet {
            base: base.into_boxed_slice(),
            by_status,
        }
    }

    /// The attributes without a status (`grpc.method`, then `grpc.target` on a client).
    pub(crate) fn base(&self) -> &[KeyValue] {
        &self.base
    }

    /// The `grpc.method` value.
    pub(crate) fn method(&self) -> &str {
        match self.base.first().map(|kv| &kv.value) {
            Some(opentelemetry::Value::String(s)) => s.as_str(),
            _ => "",
        }
    }

    /// The attributes followed by `grpc.status` = `code`.
    pub(crate) fn with_status(&self, code: tonic::Code) -> &[KeyValue] {
        self.by_status.get(code as usize).map_or(&self.base, |s| s)
    }
}

/// Values built once per key and shared (lock-free lookups; bounded: past
/// [`Interned::MAX`] keys a miss builds a value that is not kept).
pub(crate) struct Interned<V> {
    map: ArcSwap<HashMap<Box<str>, Arc<V>>>,
}

impl<V> Default for Interned<V> {
    fn default() -> Self {
        Interned {
            map: ArcSwap::default(),
        }
    }
}

impl<V> Interned<V> {
    const MAX: usize = 1024;

    /// The value of `key`, built by `make` the first time.
    pub(crate) fn get(&self, key: &str, make: impl FnOnce() -> V) -> Arc<V> {
        if let Some(v) = self.map.load().get(key) {
            return v.clone();
        }
        let v = Arc::new(make());
        if self.map.load().len() < Self::MAX {
            self.map.rcu(|m| {
                let mut m = HashMap::clone(m);
                // A racing insert of the same key wins: keep its value, drop ours.
                m.entry(key.into()).or_insert_with(|| v.clone());
                m
            });
            if let Some(kept) = self.map.load().get(key) {
                return kept.clone();
            }
        }
        v
    }
}

/// The instruments of one `MeterProvider`.
pub(crate) struct Instruments {
    /// Client attribute sets by target, then method.
    client_labels: Interned<Interned<LabelSet>>,
    /// Server attribute sets by method.
    server_labels: Interned<LabelSet>,
    pub client_attempt_started: Counter<u64>,
    pub client_attempt_duration: Histogram<f64>,
    pub client_attempt_sent: Histogram<u64>,
    pub client_attempt_rcvd: Histogram<u64>,
    pub client_call_duration: Histogram<f64>,
    pub server_call_started: Counter<u64>,
    pub server_call_duration: Histogram<f64>,
    pub server_call_sent: Histogram<u64>,
    pub server_call_rcvd: Histogram<u64>,
    pub rbac_shadow: Counter<u64>,
    pub retry_budget_exhausted: Counter<u64>,
    pub outlier_ejections: Counter<u64>,
    pub circuit_breaker_drops: Counter<u64>,
    // Observable instruments report from their callbacks; kept so they live as long as we do.
    _observed: xds::Observed,
}

fn latency(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(LATENCY_BUCKETS.to_vec())
        .build()
}

fn size(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<u64> {
    meter
        .u64_histogram(name)
        .with_unit("By")
        .with_description(description)
        .with_boundaries(SIZE_BUCKETS.to_vec())
        .build()
}

impl Instruments {
    /// The attribute sets of client calls to `method` on the channel to `target`.
    pub(crate) fn client_labels(&self, target: &str, method: &str) -> Arc<LabelSet> {
        self.client_labels
            .get(target, Interned::default)
            .get(method, || {
                LabelSet::new(vec![
                    KeyValue::new(labels::METHOD, Arc::<str>::from(method)),
                    KeyValue::new(labels::TARGET, Arc::<str>::from(target)),
                ])
            })
    }

    /// The attribute sets of server calls to `method`.
    pub(crate) fn server_labels(&self, method: &str) -> Arc<LabelSet> {
        self.server_labels.get(method, || {
            LabelSet::new(vec![KeyValue::new(
                labels::METHOD,
                Arc::<str>::from(method),
            )])
        })
    }

    fn new(meter: &Meter) -> Instruments {
        use names::*;
        Instruments {
            client_labels: Interned::default(),
            server_labels: Interned::default(),
            client_attempt_started: meter
                .u64_counter(CLIENT_ATTEMPT_STARTED)
                .with_unit("{attempt}")
                .with_description("The total number of RPC attempts started, including those that have not completed.")
                .build(),
            client_attempt_duration: latency(
                meter,
                CLIENT_ATTEMPT_DURATION,
                "End-to-end time taken to complete an RPC attempt including the time it takes to pick a subchannel.",
            ),
            client_attempt_sent: size(
                meter,
                CLIENT_ATTEMPT_SENT_SIZE,
                "Total bytes (compressed but not encrypted) sent across all request messages per RPC attempt.",
            ),
            client_attempt_rcvd: size(
                meter,
                CLIENT_ATTEMPT_RCVD_SIZE,
                "Total bytes (compressed but not encrypted) received across all response messages per RPC attempt.",
            ),
            client_call_duration: latency(
                meter,
                CLIENT_CALL_DURATION,
                "End-to-end time to complete an RPC from the application's perspective.",
            ),
            server_call_started: meter
                .u64_counter(SERVER_CALL_STARTED)
                .with_unit("{call}")
                .with_description("The total number of RPCs started, including those that have not completed.")
                .build(),
            server_call_duration: latency(
                meter,
                SERVER_CALL_DURATION,
                "End-to-end time an RPC takes from the server transport's perspective.",
            ),
            server_call_sent: size(
                meter,
                SERVER_CALL_SENT_SIZE,
                "Total bytes (compressed but not encrypted) sent across all response messages per RPC.",
            ),
            server_call_rcvd: size(
                meter,
                SERVER_CALL_RCVD_SIZE,
                "Total bytes (compressed but not encrypted) received across all request messages per RPC.",
            ),
            rbac_shadow: meter
                .u64_counter(RBAC_SHADOW_DECISIONS)
                .with_unit("{decision}")
                .with_description("RBAC shadow (dry-run) decisions; the requests were not affected.")
                .build(),
            retry_budget_exhausted: meter
                .u64_counter(RETRY_BUDGET_EXHAUSTED)
                .with_unit("{retry}")
                .with_description("Retries not made because the retry budget was exhausted.")
                .build(),
            outlier_ejections: meter
                .u64_counter(OUTLIER_EJECTIONS)
                .with_unit("{ejection}")
                .with_description("Endpoints ejected by outlier detection.")
                .build(),
            circuit_breaker_drops: meter
                .u64_counter(CIRCUIT_BREAKER_DROPS)
                .with_unit("{request}")
                .with_description("Requests failed fast by a circuit breaker.")
                .build(),
            _observed: xds::register(meter),
        }
    }
}

/// The telemetry of a channel or server: the instruments of one OpenTelemetry
/// `MeterProvider`, or nothing ([`Telemetry::disabled`]). Cheap to clone.
#[derive(Clone)]
pub struct Telemetry {
    pub(crate) inner: Option<Arc<Instruments>>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::global()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("mesh-client")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

impl Telemetry {
    /// Instruments of OpenTelemetry's global `MeterProvider` as it is at the first call
    /// (set it with `opentelemetry::global::set_meter_provider` before building channels
    /// and servers). The default of the builders. Spans go to whatever `tracing`
    /// subscriber is installed.
    pub fn global() -> Telemetry {
        static GLOBAL: OnceLock<Telemetry> = OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                Telemetry::from_meter(&opentelemetry::global::meter_with_scope(scope()))
            })
            .clone()
    }

    /// Instruments of `provider` (for example an SDK `MeterProvider` with a Prometheus or
    /// in-memory reader). Build one per provider and clone it: each one also registers the
    /// observable xDS instruments, which read every live shared xDS client.
    ///
    /// (gRFC A66 asks implementations not to fall back on a global `MeterProvider`; the
    /// builders default to [`Telemetry::global`] on purpose, which records nothing until
    /// the application installs one.)
    pub fn new<P: MeterProvider + ?Sized>(provider: &P) -> Telemetry {
        Telemetry::from_meter(&provider.meter_with_scope(scope()))
    }

    /// Instruments of `meter`.
    pub fn from_meter(meter: &Meter) -> Telemetry {
        Telemetry {
            inner: Some(Arc::new(Instruments::new(meter))),
        }
    }

    /// No metrics, no spans, no trace propagation.
    pub fn disabled() -> Telemetry {
        Telemetry { inner: None }
    }

    /// Whether anything is recorded.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// Counts a retry refused because `cluster`'s retry budget was exhausted.
    pub fn record_retry_budget_exhausted(&self, target: &str, cluster: &str) {
        if let Some(i) = &self.inner {
            i.retry_budget_exhausted.add(
                1,
                &[
                    KeyValue::new(labels::TARGET, target.to_string()),
                    KeyValue::new(labels::CLUSTER, cluster.to_string()),
                ],
            );
        }
    }

    /// Counts an outlier-detection ejection of an endpoint of `cluster`.
    pub fn record_outlier_ejection(&self, cluster: &str) {
        if let Some(i) = &self.inner {
            i.outlier_ejections
                .add(1, &[KeyValue::new(labels::CLUSTER, cluster.to_string())]);
        }
    }

    /// Counts a request failed fast by `cluster`'s circuit breaker.
    pub fn record_circuit_breaker_drop(&self, target: &str, cluster: &str) {
        if let Some(i) = &self.inner {
            i.circuit_breaker_drops.add(
                1,
                &[
                    KeyValue::new(labels::TARGET, target.to_string()),
                    KeyValue::new(labels::CLUSTER, cluster.to_string()),
                ],
            );
        }
    }

    /// Counts an RBAC shadow decision of `filter` (`allowed`: what the shadow rules would
    /// have decided).
    pub fn record_rbac_shadow(&self, filter: &str, allowed: bool) {
        if let Some(i) = &self.inner {
            i.rbac_shadow.add(
                1,
                &[
                    KeyValue::new(labels::RBAC_FILTER, filter.to_string()),
                    KeyValue::new(
                        labels::RBAC_SHADOW_DECISION,
                        if allowed { "allow" } else { "deny" },
                    ),
                ],
            );
        }
    }
}
