//! The sans-IO core of the ADS client: subscriptions, versions, nonces, ACK/NACK and
//! resource does-not-exist timers, for the state-of-the-world protocol and for delta xDS
//! (the incremental variant, `DeltaAggregatedResources`).
//!
//! Nothing here touches the network or a clock: the transport feeds responses and stream
//! events in, with the current time, and sends out the [`DiscoveryRequest`]s it gets back. So
//! every rule is a deterministic unit test. The rules followed:
//!
//! - gRFC A27: one ADS stream multiplexing all types; the node is sent only on the first
//!   request of a stream; every request carries the full list of subscribed names of its
//!   type; for LDS and CDS a previously received resource missing from a response has been
//!   deleted, for RDS and EDS absence means nothing; resources not subscribed are ignored;
//!   the 15 s does-not-exist timer.
//! - gRFC A46: a NACK carries the last ACKed version and the rejected nonce, but the valid
//!   resources of the rejected response are still used; invalid ones get an error.
//! - gRFC A57: does-not-exist timers run only while a stream is connected and only for
//!   resources not yet received; they restart on a new stream.
//! - gRFC A53: the `ignore_resource_deletion` server feature keeps a deleted LDS/CDS
//!   resource. (gRFC A88 later makes that the default and deprecates the feature; see
//!   [`ProtocolOptions`].)
//! - gRFC A88: data errors (a NACKed resource, an LDS/CDS deletion) keep the cached value
//!   unless the server has `fail_on_data_errors`, which discards it so the resource fails
//!   ([`ResourceEventKind::Dropped`], [`ResourceEventKind::DoesNotExist`]); a kept deletion
//!   is still reported ([`ResourceEventKind::DeletionIgnored`]) so CSDS can show it. With
//!   `resource_timer_is_transient_error` the does-not-exist timer runs 30 s and its expiry
//!   is a transient error ([`ResourceEventKind::TimedOut`]), not a deletion.
//! - xRFC TP3 through gRFC A88: a response's `resource_errors` (SotW and delta) are honoured
//!   unconditionally, as [`ResourceEventKind::ReceivedError`]; see "Errors from the server"
//!   below.
//!
//! Errors from the server (xRFC TP3, gRFC A88 "Support for Errors Provided by the xDS
//! server"). For each `resource_errors` entry naming a subscribed resource of the
//! response's type, its does-not-exist timer is cancelled and:
//!
//! - status `NOT_FOUND` or `PERMISSION_DENIED` is a data error: with no value held the
//!   resource fails with the server's status and message; with one, `fail_on_data_errors`
//!   (of the server in use) discards it so the resource fails, and without it the value
//!   stays in force (an ambient error, shown in CSDS as `RECEIVED_ERROR`);
//! - any other status is a transient error: with no value held the resource fails, with one
//!   it stays in force (an ambient error).
//!
//! These errors are the server's, not the response's: they never make the client NACK (the
//! response is ACKed unless one of its `resources` is invalid). As TP3 says, the server
//! sends an error once and the client remembers it until another error or the resource
//! itself arrives in `resources`, so in the state of the world an LDS or CDS resource under
//! a server error is not deleted by its absence from this or later responses. Errors for names not subscribed are ignored. An entry without a resource name
//! (or with an empty one) or without a status is logged (`warn`) and ignored, not NACKed:
//! it is the server's report, not one of the resources we validate, a NACK rejects the
//! response's resources (which may be fine) and could name no resource, and A88 ties NACKs
//! to resource validation only. (A88 says nothing of malformed entries.)
//! Should a name appear both in `resources` and in `resource_errors`, the resource wins (it
//! is what TP3 says ends an error).
//!
//! Delta xDS (Envoy's xDS protocol documentation, "Incremental xDS") is a second wire
//! encoding of the same state: the same watches, validation, events and timers, with the
//! `*_delta` twins of the stream methods ([`AdsState::on_connected_delta`],
//! [`AdsState::subscribe_delta`], [`AdsState::unsubscribe_delta`],
//! [`AdsState::on_delta_response`]). What differs is only what goes on the wire:
//!
//! - requests carry subscription changes (`resource_names_subscribe` /
//!   `resource_names_unsubscribe`), not the full name list; the first request of a type on
//!   a stream subscribes every name and lists in `initial_resource_versions` the version of
//!   each resource held, so the server does not resend unchanged ones;
//! - every resource carries its own version; responses carry only what changed, so absence
//!   means nothing and deletion is explicit (`removed_resources`, which for a resource never
//!   received also says it does not exist); `ignore_resource_deletion` keeps a removed
//!   resource held, as it does for SotW deletion (for every type, since delta removal is
//!   explicit for every type);
//! - an ACK or NACK carries only the nonce (and the error); a subscription change carries no
//!   nonce;
//! - names are always subscribed explicitly: this client never uses the wildcard.
//!
//! Like grpc-go, a response whose type URL is not one we know is neither ACKed nor NACKed
//! (we did not validate it, so we cannot call it valid or invalid): it is logged and dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use prost::Message;
use xds_proto::envoy::envoy::config::core::v3::Node;
use xds_proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    Resource as ResourceWrapper,
};
use xds_proto::envoy::google::rpc::Status;
use xds_proto::protobuf::Any;

use super::resource::{self, Resource, ResourceError, ResourceType, ValidationContext};

/// How long a subscribed resource may stay unanswered on a connected stream before it is
/// considered not to exist (gRFC A27, from the xDS protocol documentation).
pub const DOES_NOT_EXIST_TIMEOUT: Duration = Duration::from_secs(15);

/// The resource timer under the `resource_timer_is_transient_error` server feature
/// (gRFC A88): the server reports missing resources itself, so the timer only catches a
/// slow server.
pub const TRANSIENT_RESOURCE_TIMEOUT: Duration = Duration::from_secs(30);

/// `google.rpc.Code.INVALID_ARGUMENT`, the code of every NACK.
const INVALID_ARGUMENT: i32 = 3;
/// `google.rpc.Code.NOT_FOUND`: with [`PERMISSION_DENIED`], a server-reported data error.
const NOT_FOUND: i32 = 5;
/// `google.rpc.Code.PERMISSION_DENIED`: a server-reported data error (gRFC A88).
const PERMISSION_DENIED: i32 = 7;

/// Behaviour switches of the protocol core, from the xDS server's `server_features`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolOptions {
    /// `ignore_resource_deletion` (gRFC A53): an LDS or CDS resource missing from a response
    /// is kept (and the deletion logged) instead of reported as not existing.
    ///
    /// gRFC A88 makes ignoring deletions the default and deprecates this feature in favour
    /// of `fail_on_data_errors`, but gRPC keeps that new default behind
    /// `GRPC_EXPERIMENTAL_XDS_DATA_ERROR_HANDLING`; as gRPC releases do by default, a
    /// deletion is reported unless this is set (or `fail_on_data_errors`, which wins).
    pub ignore_resource_deletion: bool,
    /// `fail_on_data_errors` (gRFC A88): a data error (a NACKed resource, an LDS/CDS
    /// deletion) discards the cached value, so the resource fails, instead of leaving the
    /// last good value in force. Wins over `ignore_resource_deletion`.
    pub fail_on_data_errors: bool,
    /// `resource_timer_is_transient_error` (gRFC A88): an expired does-not-exist timer is a
    /// transient error (the server is slow), not proof that the resource does not exist.
    pub resource_timer_is_transient_error: bool,
    /// The does-not-exist timeout: [`DOES_NOT_EXIST_TIMEOUT`], or
    /// [`TRANSIENT_RESOURCE_TIMEOUT`] with `resource_timer_is_transient_error`.
    pub does_not_exist_timeout: Duration,
}

impl Default for ProtocolOptions {
    fn default() -> Self {
        ProtocolOptions {
            ignore_resource_deletion: false,
            fail_on_data_errors: false,
            resource_timer_is_transient_error: false,
            does_not_exist_timeout: DOES_NOT_EXIST_TIMEOUT,
        }
    }
}

impl ProtocolOptions {
    /// The options implied by a server's `server_features` list.
    pub fn from_server_features(features: &[String]) -> Self {
        use crate::bootstrap::{
            FEATURE_FAIL_ON_DATA_ERRORS, FEATURE_IGNORE_RESOURCE_DELETION,
            FEATURE_RESOURCE_TIMER_IS_TRANSIENT_ERROR,
        };
        let has = |name: &str| features.iter().any(|f| f == name);
        let transient = has(FEATURE_RESOURCE_TIMER_IS_TRANSIENT_ERROR);
        ProtocolOptions {
            ignore_resource_deletion: has(FEATURE_IGNORE_RESOURCE_DELETION),
            fail_on_data_errors: has(FEATURE_FAIL_ON_DATA_ERRORS),
            resource_timer_is_transient_error: transient,
            does_not_exist_timeout: if transient {
                TRANSIENT_RESOURCE_TIMEOUT
            } else {
                DOES_NOT_EXIST_TIMEOUT
            },
        }
    }
}

/// What happened to one subscribed resource.
#[derive(Debug, Clone)]
pub struct ResourceEvent {
    /// The resource type.
    pub ty: ResourceType,
    /// The resource name.
    pub name: String,
    /// What happened.
    pub kind: ResourceEventKind,
    /// The `version_info` of the response that said so (for delta xDS the resource's own
    /// version; empty for a does-not-exist timer or a removal), recorded by the cache for
    /// CSDS (gRFC A40).
    pub version: String,
    /// The resource as received (unwrapped from any `Resource` wrapper), for a
    /// [`ResourceEventKind::Changed`] event: CSDS dumps it as is (gRFC A40).
    pub raw: Option<Any>,
}

/// The kinds of [`ResourceEvent`].
#[derive(Debug, Clone)]
pub enum ResourceEventKind {
    /// A valid (new or repeated) value was received.
    Changed(Resource),
    /// The resource was NACKed; any previous good value stays in force (gRFC A46, A88).
    Error(String),
    /// The resource was NACKed under `fail_on_data_errors` (gRFC A88): any previous value
    /// is discarded and the resource fails with this error.
    Dropped(String),
    /// The resource was deleted (LDS/CDS) or its does-not-exist timer expired.
    DoesNotExist,
    /// The server deleted the resource (LDS/CDS) but the previous value stays in force
    /// (`ignore_resource_deletion`): an ambient error, for CSDS (gRFC A53, A88).
    DeletionIgnored,
    /// The resource timer expired under `resource_timer_is_transient_error` (gRFC A88): a
    /// transient error (the server is slow), with this message.
    TimedOut(String),
    /// The xDS server reported an error for the resource instead of sending it (xRFC TP3,
    /// gRFC A88), e.g. `the xDS server reported PERMISSION_DENIED: <its message>`. Any
    /// value held stays in force (an ambient error) unless `discard` is set: a data error
    /// (`NOT_FOUND`, `PERMISSION_DENIED`) under `fail_on_data_errors`, which discards it.
    /// Either way a resource with no value fails with `message`.
    ReceivedError {
        /// The server's status code name and message.
        message: String,
        /// Whether any value held is discarded (so the resource fails).
        discard: bool,
    },
}

/// The result of handling one response: the ACK or NACK to send and the resource events
/// (`R` is [`DeltaDiscoveryRequest`] for [`AdsState::on_delta_response`]).
#[derive(Debug)]
pub struct Outcome<R = DiscoveryRequest> {
    /// The requests to send, in order (at most one: the ACK or the NACK).
    pub requests: Vec<R>,
    /// What changed, for the subscribed resources of the response's type.
    pub updates: Vec<ResourceEvent>,
}

impl<R> Default for Outcome<R> {
    fn default() -> Self {
        Outcome {
            requests: Vec::new(),
            updates: Vec::new(),
        }
    }
}

/// Per-resource protocol state.
#[derive(Debug, Default)]
struct Watch {
    /// The response of some stream contained it (valid or not): no more timers.
    received: bool,
    /// The last received value was valid and has not been deleted since.
    has_value: bool,
    /// The does-not-exist timer fired: it is not restarted.
    timed_out: bool,
    /// The does-not-exist deadline, while the timer runs.
    deadline: Option<Instant>,
    /// The delta xDS version of the value held (empty after a SotW update, which has no
    /// per-resource version): sent back in `initial_resource_versions` on a new stream.
    version: String,
    /// The server reported an error for it (xRFC TP3) and has not sent it since: its
    /// absence from a SotW response is no deletion.
    server_error: bool,
}

/// Per-type protocol state.
#[derive(Debug, Default)]
struct TypeState {
    /// The last ACKed `version_info` (survives stream loss).
    version: String,
    /// The nonce of the last response of this type on the current stream.
    nonce: String,
    /// The subscribed names.
    watches: BTreeMap<String, Watch>,
}

/// The ADS protocol state of one xDS server: feed it events, send what it returns.
#[derive(Debug)]
pub struct AdsState {
    node: Node,
    options: ProtocolOptions,
    /// What resource validation needs from the bootstrap (gRFC A29 provider instances).
    validation: ValidationContext,
    connected: bool,
    /// Whether the node was sent on the current stream.
    node_sent: bool,
    types: BTreeMap<ResourceType, TypeState>,
}

impl AdsState {
    /// A disconnected state with no subscriptions and default options.
    pub fn new(node: Node) -> Self {
        Self::with_options(node, ProtocolOptions::default())
    }

    /// Replaces the protocol options (another xDS server is in use); resources already
    /// received keep their state, timers armed from now on use the new timeout.
    pub fn set_options(&mut self, options: ProtocolOptions) {
        self.options = options;
    }

    /// A disconnected state with no subscriptions.
    pub fn with_options(node: Node, options: ProtocolOptions) -> Self {
        AdsState {
            node,
            options,
            validation: ValidationContext::default(),
            connected: false,
            node_sent: false,
            types: BTreeMap::new(),
        }
    }

    /// Validates resources with this context from now on (by default nothing from the
    /// bootstrap is checked; the client passes [`ValidationContext::from_bootstrap`]).
    pub fn with_validation_context(mut self, validation: ValidationContext) -> Self {
        self.validation = validation;
        self
    }

    /// Whether a stream is up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The subscribed names of a type, sorted.
    pub fn subscribed(&self, ty: ResourceType) -> Vec<String> {
        self.types
            .get(&ty)
            .map(|t| t.watches.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds a subscription. Returns the request to send when connected and the name is new.
    pub fn subscribe(
        &mut self,
        ty: ResourceType,
        name: &str,
        now: Instant,
    ) -> Vec<DiscoveryRequest> {
        if self.add_watch(ty, name, now) {
            vec![self.request(ty, None)]
        } else {
            Vec::new()
        }
    }

    /// Adds a subscription on a delta stream: the request subscribing the name when
    /// connected and the name is new.
    pub fn subscribe_delta(
        &mut self,
        ty: ResourceType,
        name: &str,
        now: Instant,
    ) -> Vec<DeltaDiscoveryRequest> {
        if self.add_watch(ty, name, now) {
            let mut req = self.delta_request(ty);
            req.resource_names_subscribe = vec![name.to_string()];
            vec![req]
        } else {
            Vec::new()
        }
    }

    /// Adds the watch of a new name; whether a request is owed (new and connected).
    fn add_watch(&mut self, ty: ResourceType, name: &str, now: Instant) -> bool {
        let timeout = self.options.does_not_exist_timeout;
        let connected = self.connected;
        let state = self.types.entry(ty).or_default();
        if state.watches.contains_key(name) {
            return false;
        }
        let mut watch = Watch::default();
        if connected {
            watch.deadline = Some(now + timeout);
        }
        state.watches.insert(name.to_string(), watch);
        connected
    }

    /// Removes a subscription. Returns the request to send when connected and the name was
    /// subscribed; unsubscribing the last name of a type sends an empty name list.
    pub fn unsubscribe(&mut self, ty: ResourceType, name: &str) -> Vec<DiscoveryRequest> {
        if self.remove_watch(ty, name) {
            vec![self.request(ty, None)]
        } else {
            Vec::new()
        }
    }

    /// Removes a subscription on a delta stream: the request unsubscribing the name when
    /// connected and the name was subscribed.
    pub fn unsubscribe_delta(
        &mut self,
        ty: ResourceType,
        name: &str,
    ) -> Vec<DeltaDiscoveryRequest> {
        if self.remove_watch(ty, name) {
            let mut req = self.delta_request(ty);
            req.resource_names_unsubscribe = vec![name.to_string()];
            vec![req]
        } else {
            Vec::new()
        }
    }

    /// Removes the watch of a name; whether a request is owed (it was there and connected).
    fn remove_watch(&mut self, ty: ResourceType, name: &str) -> bool {
        let Some(state) = self.types.get_mut(&ty) else {
            return false;
        };
        state.watches.remove(name).is_some() && self.connected
    }

    /// A new stream is up (and its channel ready, gRFC A57): returns the requests that
    /// re-subscribe every type with subscriptions, with the last ACKed version and no nonce,
    /// and starts the timers of resources not yet received.
    pub fn on_connected(&mut self, now: Instant) -> Vec<DiscoveryRequest> {
        let types = self.start_stream(now);
        types.into_iter().map(|ty| self.request(ty, None)).collect()
    }

    /// A new delta stream is up: like [`AdsState::on_connected`], with one request per type
    /// subscribing every name and carrying in `initial_resource_versions` the version of
    /// each resource held (the server then sends only what differs).
    pub fn on_connected_delta(&mut self, now: Instant) -> Vec<DeltaDiscoveryRequest> {
        let types = self.start_stream(now);
        types
            .into_iter()
            .map(|ty| {
                let mut req = self.delta_request(ty);
                if let Some(state) = self.types.get(&ty) {
                    req.resource_names_subscribe = state.watches.keys().cloned().collect();
                    req.initial_resource_versions = state
                        .watches
                        .iter()
                        .filter(|(_, w)| w.has_value && !w.version.is_empty())
                        .map(|(name, w)| (name.clone(), w.version.clone()))
                        .collect();
                }
                req
            })
            .collect()
    }

    /// Forgets the delta versions of the resources held, so the next delta stream asks for
    /// every resource again: the client calls it when it moves to another xDS server, whose
    /// versions need not mean the same.
    pub fn forget_resource_versions(&mut self) {
        for state in self.types.values_mut() {
            for watch in state.watches.values_mut() {
                watch.version.clear();
            }
        }
    }

    /// Marks the stream connected, clears nonces, starts the timers of resources not yet
    /// received; returns the types with subscriptions, in order.
    fn start_stream(&mut self, now: Instant) -> Vec<ResourceType> {
        self.connected = true;
        self.node_sent = false;
        let timeout = self.options.does_not_exist_timeout;
        let mut types = Vec::new();
        for (ty, state) in &mut self.types {
            state.nonce.clear();
            if state.watches.is_empty() {
                continue;
            }
            for watch in state.watches.values_mut() {
                if !watch.received && !watch.timed_out {
                    watch.deadline = Some(now + timeout);
                }
            }
            types.push(*ty);
        }
        types
    }

    /// The stream is gone: stops all timers (gRFC A57). Cached state is kept.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.node_sent = false;
        for state in self.types.values_mut() {
            state.nonce.clear();
            for watch in state.watches.values_mut() {
                watch.deadline = None;
            }
        }
    }

    /// Handles one response: validates its resources, updates state and returns the ACK or
    /// NACK with the events for the subscribed resources.
    pub fn on_response(&mut self, resp: DiscoveryResponse, _now: Instant) -> Outcome {
        let Some(ty) = ResourceType::from_type_url(&resp.type_url) else {
            tracing::warn!(
                type_url = %resp.type_url,
                "xDS response for an unknown resource type ignored (neither ACKed nor NACKed)"
            );
            return Outcome::default();
        };
        let fail_on_data_errors = self.options.fail_on_data_errors;
        let ignore_deletion = self.options.ignore_resource_deletion && !fail_on_data_errors;
        let Some(state) = self.types.get_mut(&ty) else {
            tracing::warn!(
                type_url = %resp.type_url,
                "xDS response for a resource type never subscribed ignored"
            );
            return Outcome::default();
        };
        state.nonce = resp.nonce.clone();

        let version = &resp.version_info;
        let mut parsed = parse_resources(
            ty,
            resp.resources
                .iter()
                .map(|any| (decode_one(ty, any, &self.validation), version.clone())),
        );
        let server_errors = server_errors(ty, &resp.resource_errors);
        let updates = apply_parsed(
            ty,
            state,
            &mut parsed,
            &server_errors,
            Absence::Implied,
            DataErrors {
                ignore_deletion,
                fail_on_data_errors,
            },
            version,
        );

        let request = match nack_status(&parsed) {
            None => {
                state.version = resp.version_info.clone();
                tracing::debug!(
                    ty = ty.short_name(),
                    version = %resp.version_info,
                    nonce = %resp.nonce,
                    "ACK"
                );
                self.request(ty, None)
            }
            Some(status) => {
                tracing::warn!(
                    ty = ty.short_name(),
                    version = %resp.version_info,
                    nonce = %resp.nonce,
                    error = %status.message,
                    "NACK"
                );
                self.request(ty, Some(status))
            }
        };
        Outcome {
            requests: vec![request],
            updates,
        }
    }

    /// Handles one delta response: validates its resources, applies its removals, updates
    /// the per-resource versions and returns the ACK or NACK with the events for the
    /// subscribed resources (the same events [`AdsState::on_response`] gives for the same
    /// change).
    pub fn on_delta_response(
        &mut self,
        resp: DeltaDiscoveryResponse,
        _now: Instant,
    ) -> Outcome<DeltaDiscoveryRequest> {
        let Some(ty) = ResourceType::from_type_url(&resp.type_url) else {
            tracing::warn!(
                type_url = %resp.type_url,
                "delta xDS response for an unknown resource type ignored (neither ACKed nor NACKed)"
            );
            return Outcome::default();
        };
        let fail_on_data_errors = self.options.fail_on_data_errors;
        let ignore_deletion = self.options.ignore_resource_deletion && !fail_on_data_errors;
        let Some(state) = self.types.get_mut(&ty) else {
            tracing::warn!(
                type_url = %resp.type_url,
                "delta xDS response for a resource type never subscribed ignored"
            );
            return Outcome::default();
        };
        state.nonce = resp.nonce.clone();

        let mut parsed = parse_resources(
            ty,
            resp.resources.iter().map(|wrapper| {
                (
                    decode_wrapped(ty, wrapper.clone(), &self.validation),
                    wrapper.version.clone(),
                )
            }),
        );
        let removed: BTreeSet<String> = resp
            .removed_resources
            .iter()
            .cloned()
            .chain(resp.removed_resource_names.iter().map(|n| n.name.clone()))
            .collect();
        let server_errors = server_errors(ty, &resp.resource_errors);
        let updates = apply_parsed(
            ty,
            state,
            &mut parsed,
            &server_errors,
            Absence::Removed(&removed),
            DataErrors {
                ignore_deletion,
                fail_on_data_errors,
            },
            "",
        );

        let nack = nack_status(&parsed);
        match &nack {
            None => tracing::debug!(
                ty = ty.short_name(),
                system_version = %resp.system_version_info,
                nonce = %resp.nonce,
                "delta ACK"
            ),
            Some(status) => tracing::warn!(
                ty = ty.short_name(),
                system_version = %resp.system_version_info,
                nonce = %resp.nonce,
                error = %status.message,
                "delta NACK"
            ),
        }
        let mut request = self.delta_request(ty);
        request.response_nonce = resp.nonce;
        request.error_detail = nack;
        Outcome {
            requests: vec![request],
            updates,
        }
    }

    /// Fires the does-not-exist timers due at `now`.
    pub fn poll_timers(&mut self, now: Instant) -> Vec<ResourceEvent> {
        let transient = self.options.resource_timer_is_transient_error;
        let timeout = self.options.does_not_exist_timeout;
        let mut events = Vec::new();
        for (ty, state) in &mut self.types {
            for (name, watch) in &mut state.watches {
                if watch.deadline.is_some_and(|d| d <= now) {
                    watch.deadline = None;
                    watch.timed_out = true;
                    let kind = if transient {
                        let message = format!(
                            "timeout: not received from the xDS server within {}s \
                             (resource_timer_is_transient_error: the server is slow or \
                             unable to send it)",
                            timeout.as_secs()
                        );
                        tracing::warn!(resource = %name, ty = ty.short_name(), "{message}");
                        ResourceEventKind::TimedOut(message)
                    } else {
                        tracing::warn!(
                            resource = %name,
                            ty = ty.short_name(),
                            "xDS resource not received in time: does not exist"
                        );
                        ResourceEventKind::DoesNotExist
                    };
                    events.push(ResourceEvent {
                        ty: *ty,
                        name: name.clone(),
                        kind,
                        version: String::new(),
                        raw: None,
                    });
                }
            }
        }
        events
    }

    /// The earliest running does-not-exist deadline.
    pub fn next_timer_deadline(&self) -> Option<Instant> {
        self.types
            .values()
            .flat_map(|t| t.watches.values())
            .filter_map(|w| w.deadline)
            .min()
    }

    /// The request for a type's current state; carries the node if it is the first of the
    /// stream.
    fn request(&mut self, ty: ResourceType, error_detail: Option<Status>) -> DiscoveryRequest {
        let node = if self.node_sent {
            None
        } else {
            self.node_sent = true;
            Some(self.node.clone())
        };
        let (version_info, response_nonce, resource_names) = match self.types.get(&ty) {
            Some(s) => (
                s.version.clone(),
                s.nonce.clone(),
                s.watches.keys().cloned().collect(),
            ),
            None => Default::default(),
        };
        DiscoveryRequest {
            version_info,
            node,
            resource_names,
            type_url: ty.type_url().to_string(),
            response_nonce,
            error_detail,
            ..Default::default()
        }
    }

    /// An empty delta request of a type; carries the node if it is the first of the stream.
    fn delta_request(&mut self, ty: ResourceType) -> DeltaDiscoveryRequest {
        let node = if self.node_sent {
            None
        } else {
            self.node_sent = true;
            Some(self.node.clone())
        };
        DeltaDiscoveryRequest {
            node,
            type_url: ty.type_url().to_string(),
            initial_resource_versions: HashMap::new(),
            ..Default::default()
        }
    }
}

/// What a response says about the subscribed resources it does not carry.
enum Absence<'a> {
    /// State of the world: for LDS and CDS, a resource held and missing from the response
    /// has been deleted (unless an unnamed resource failed to decode: it may be that one).
    Implied,
    /// Delta: absence means nothing; these names were removed (or do not exist).
    Removed(&'a BTreeSet<String>),
}

/// What a data error does to a cached resource (gRFC A53, A88), from the server's features.
#[derive(Debug, Clone, Copy)]
struct DataErrors {
    /// Keep a deleted resource (`ignore_resource_deletion`, unless `fail_on_data_errors`).
    ignore_deletion: bool,
    /// A NACKed resource loses its cached value (`fail_on_data_errors`).
    fail_on_data_errors: bool,
}

/// Applies validated resources and the server's errors to the watches of one type: the
/// resource events, in name order. `removal_version` is the version recorded with a
/// deletion or a server error.
fn apply_parsed(
    ty: ResourceType,
    state: &mut TypeState,
    parsed: &mut Parsed,
    server_errors: &BTreeMap<String, Status>,
    absence: Absence<'_>,
    data_errors: DataErrors,
    removal_version: &str,
) -> Vec<ResourceEvent> {
    let delta = matches!(absence, Absence::Removed(_));
    let mut updates = Vec::new();
    for (name, watch) in &mut state.watches {
        let mut raw = None;
        let mut version = removal_version.to_string();
        let event = if let Some((message, v)) = parsed.errors.get(name) {
            watch.received = true;
            watch.deadline = None;
            watch.server_error = false;
            version = v.clone();
            if data_errors.fail_on_data_errors {
                // gRFC A88: the cached value goes; a later absence is no deletion.
                watch.has_value = false;
                watch.version.clear();
                Some(ResourceEventKind::Dropped(message.clone()))
            } else {
                Some(ResourceEventKind::Error(message.clone()))
            }
        } else if let Some((res, any, v)) = parsed.valid.remove(name) {
            // Taken out: what stays in `valid` afterwards is what nobody subscribed.
            watch.received = true;
            watch.has_value = true;
            watch.deadline = None;
            watch.server_error = false;
            watch.version = if delta { v.clone() } else { String::new() };
            raw = Some(any);
            version = v;
            Some(ResourceEventKind::Changed(res))
        } else if let Some(status) = server_errors.get(name) {
            // xRFC TP3 (gRFC A88): the timer stops; a data error under
            // fail_on_data_errors discards the value, anything else keeps what is held.
            watch.received = true;
            watch.deadline = None;
            watch.server_error = true;
            let discard = is_data_error(status.code) && data_errors.fail_on_data_errors;
            if discard {
                watch.has_value = false;
                watch.version.clear();
            }
            let message = server_error_message(status);
            tracing::warn!(
                resource = %name,
                ty = ty.short_name(),
                discard,
                "xDS server error for a subscribed resource: {message}"
            );
            Some(ResourceEventKind::ReceivedError { message, discard })
        } else if match absence {
            Absence::Implied => {
                deletion_applies(ty)
                    && watch.has_value
                    && !watch.server_error
                    && parsed.unnamed_errors == 0
            }
            Absence::Removed(names) => names.contains(name),
        } {
            if data_errors.ignore_deletion && watch.has_value {
                tracing::warn!(
                    resource = %name,
                    ty = ty.short_name(),
                    "xDS resource deleted by the server; kept (ignore_resource_deletion)"
                );
                Some(ResourceEventKind::DeletionIgnored)
            } else {
                // A delta removal of a resource never received says it does not exist.
                watch.received = true;
                watch.deadline = None;
                watch.has_value = false;
                watch.server_error = false;
                watch.version.clear();
                Some(ResourceEventKind::DoesNotExist)
            }
        } else {
            None
        };
        if let Some(kind) = event {
            updates.push(ResourceEvent {
                ty,
                name: name.clone(),
                kind,
                version,
                raw,
            });
        }
    }
    for name in parsed.valid.keys() {
        tracing::debug!(resource = %name, ty = ty.short_name(), "unsubscribed resource ignored");
    }
    updates
}

/// The usable `resource_errors` of a response (xRFC TP3), by resource name: an entry
/// without a name or without a status is logged and ignored (never NACKed: see the module
/// documentation); of two entries for one name the first counts.
fn server_errors(
    ty: ResourceType,
    errors: &[xds_proto::envoy::envoy::service::discovery::v3::ResourceError],
) -> BTreeMap<String, Status> {
    let mut out = BTreeMap::new();
    for (i, error) in errors.iter().enumerate() {
        let name = error
            .resource_name
            .as_ref()
            .map(|n| n.name.as_str())
            .filter(|n| !n.is_empty());
        let (Some(name), Some(status)) = (name, error.error_detail.as_ref()) else {
            tracing::warn!(
                ty = ty.short_name(),
                index = i,
                has_name = name.is_some(),
                has_status = error.error_detail.is_some(),
                "xDS response: resource_errors entry without a resource name or a status \
                 ignored (not NACKed)"
            );
            continue;
        };
        out.entry(name.to_string())
            .or_insert_with(|| status.clone());
    }
    out
}

/// Whether a server-reported status is a data error (gRFC A88): `NOT_FOUND` or
/// `PERMISSION_DENIED`; any other code is a transient error.
fn is_data_error(code: i32) -> bool {
    matches!(code, NOT_FOUND | PERMISSION_DENIED)
}

/// How a server-reported error reads in CSDS and in failing RPCs:
/// `the xDS server reported PERMISSION_DENIED: <message>`.
fn server_error_message(status: &Status) -> String {
    let code = if (0..=16).contains(&status.code) {
        crate::telemetry::status_name(tonic::Code::from_i32(status.code)).to_string()
    } else {
        format!("status code {}", status.code)
    };
    if status.message.is_empty() {
        format!("the xDS server reported {code}")
    } else {
        format!("the xDS server reported {code}: {}", status.message)
    }
}

/// The `error_detail` of the NACK a response deserves, `None` for an ACK.
fn nack_status(parsed: &Parsed) -> Option<Status> {
    (!parsed.nack_messages.is_empty()).then(|| Status {
        code: INVALID_ARGUMENT,
        message: parsed.nack_messages.join("; "),
        details: Vec::new(),
    })
}

/// Whether absence from a response means deletion for this type (gRFC A27: LDS and CDS
/// servers send every subscribed resource in every response).
fn deletion_applies(ty: ResourceType) -> bool {
    matches!(ty, ResourceType::Listener | ResourceType::Cluster)
}

/// The resources of one response, validated.
#[derive(Default)]
struct Parsed {
    /// Each valid resource with the `Any` it was decoded from (unwrapped) and its version.
    valid: BTreeMap<String, (Resource, Any, String)>,
    /// Error message and version per named invalid resource.
    errors: BTreeMap<String, (String, String)>,
    /// Invalid resources whose name could not be found: then deletion is not inferred,
    /// since the missing resource may be the unreadable one.
    unnamed_errors: usize,
    /// One message per problem, in response order, for the NACK.
    nack_messages: Vec<String>,
}

/// Collects decoded resources (each with its version), NACKing duplicate names.
fn parse_resources(
    ty: ResourceType,
    decoded: impl Iterator<Item = (Result<(Resource, Any), ResourceError>, String)>,
) -> Parsed {
    let mut parsed = Parsed::default();
    let mut seen = BTreeSet::new();
    let mut duplicates = BTreeSet::new();
    for (result, version) in decoded {
        let name = match &result {
            Ok((res, _)) => Some(res.name().to_string()),
            Err(e) => e.name.clone(),
        };
        let Some(name) = name else {
            if let Err(e) = result {
                parsed.nack_messages.push(e.to_string());
            }
            parsed.unnamed_errors += 1;
            continue;
        };
        if !seen.insert(name.clone()) {
            parsed.valid.remove(&name);
            if duplicates.insert(name.clone()) {
                let e = ResourceError {
                    kind: ty,
                    name: Some(name.clone()),
                    message: "duplicate resource name in response".to_string(),
                };
                parsed.nack_messages.push(e.to_string());
                parsed.errors.entry(name).or_insert((e.message, version));
            }
            continue;
        }
        match result {
            Ok((res, any)) => {
                parsed.valid.insert(name, (res, any, version));
            }
            Err(e) => {
                parsed.nack_messages.push(e.to_string());
                parsed.errors.insert(name, (e.message, version));
            }
        }
    }
    parsed
}

/// Decodes one resource, unwrapping an `envoy.service.discovery.v3.Resource` wrapper;
/// returns it with the (unwrapped) `Any` it came from.
fn decode_one(
    ty: ResourceType,
    any: &Any,
    ctx: &ValidationContext,
) -> Result<(Resource, Any), ResourceError> {
    if any.type_url != xds_proto::type_url::RESOURCE_WRAPPER {
        return resource::decode_with(ty, any, ctx).map(|res| (res, any.clone()));
    }
    let wrapper = ResourceWrapper::decode(any.value.as_slice()).map_err(|e| ResourceError {
        kind: ty,
        name: None,
        message: format!("Resource wrapper: {e}"),
    })?;
    decode_wrapped(ty, wrapper, ctx)
}

/// Decodes the resource of a `Resource` wrapper (every resource of a delta response is one);
/// errors name the resource by the wrapper's name when the resource has none.
fn decode_wrapped(
    ty: ResourceType,
    wrapper: ResourceWrapper,
    ctx: &ValidationContext,
) -> Result<(Resource, Any), ResourceError> {
    let name = (!wrapper.name.is_empty()).then(|| wrapper.name.clone());
    let inner = wrapper.resource.ok_or_else(|| ResourceError {
        kind: ty,
        name: name.clone(),
        message: "Resource wrapper: resource: missing".to_string(),
    })?;
    match resource::decode_with(ty, &inner, ctx) {
        Ok(res) => Ok((res, inner)),
        Err(e) => Err(ResourceError {
            kind: e.kind,
            name: e.name.or(name),
            message: e.message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::fixtures::{self, NO_API_LISTENER};
    use xds_proto::any::pack;
    use xds_proto::type_url::{CLUSTER, CLUSTER_LOAD_ASSIGNMENT, LISTENER, ROUTE_CONFIGURATION};

    const LDS: ResourceType = ResourceType::Listener;
    const RDS: ResourceType = ResourceType::RouteConfiguration;
    const CDS: ResourceType = ResourceType::Cluster;
    const EDS: ResourceType = ResourceType::ClusterLoadAssignment;
    const SECS_15: Duration = Duration::from_secs(15);

    fn node() -> Node {
        Node {
            id: "node-1".into(),
            ..Default::default()
        }
    }

    fn listener(name: &str) -> Any {
        fixtures::listener(name, &format!("{name}-route"))
    }

    /// A client Listener without api_listener: the real validator NACKs it.
    fn bad_listener(name: &str) -> Any {
        fixtures::listener_without_api_listener(name)
    }

    /// The NACK message of `bad_listener(name)`.
    fn bad_listener_error(name: &str) -> String {
        format!("listener \"{name}\": {NO_API_LISTENER}")
    }

    fn garbage(type_url: &str) -> Any {
        Any {
            type_url: type_url.into(),
            value: vec![0xff, 0xff, 0xff],
        }
    }

    fn route(name: &str) -> Any {
        fixtures::route_to(name, "c")
    }

    fn cluster(name: &str) -> Any {
        fixtures::cluster(name)
    }

    fn cla(name: &str) -> Any {
        fixtures::endpoints(name, &["10.0.0.1:80"])
    }

    fn resp(type_url: &str, version: &str, nonce: &str, resources: Vec<Any>) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: version.into(),
            resources,
            type_url: type_url.into(),
            nonce: nonce.into(),
            ..Default::default()
        }
    }

    /// The exact request expected.
    struct Want<'a> {
        type_url: &'a str,
        names: &'a [&'a str],
        version: &'a str,
        nonce: &'a str,
        node: bool,
        error: Option<&'a str>,
    }

    impl<'a> Want<'a> {
        fn new(type_url: &'a str, names: &'a [&'a str]) -> Self {
            Want {
                type_url,
                names,
                version: "",
                nonce: "",
                node: false,
                error: None,
            }
        }
        fn version(mut self, v: &'a str) -> Self {
            self.version = v;
            self
        }
        fn nonce(mut self, n: &'a str) -> Self {
            self.nonce = n;
            self
        }
        fn node(mut self) -> Self {
            self.node = true;
            self
        }
        fn error(mut self, e: &'a str) -> Self {
            self.error = Some(e);
            self
        }
    }

    #[track_caller]
    fn assert_req(got: &DiscoveryRequest, want: Want<'_>) {
        let expected = DiscoveryRequest {
            version_info: want.version.into(),
            node: want.node.then(node),
            resource_names: strings(want.names),
            type_url: want.type_url.into(),
            response_nonce: want.nonce.into(),
            error_detail: nack_detail(want.error),
            ..Default::default()
        };
        assert_eq!(got, &expected);
    }

    /// The one request (SotW or delta) in `reqs`.
    #[track_caller]
    fn single<R: std::fmt::Debug>(reqs: Vec<R>) -> R {
        assert_eq!(reqs.len(), 1, "expected exactly one request: {reqs:?}");
        reqs.into_iter().next().unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The `error_detail` of a NACK: INVALID_ARGUMENT with `message`.
    fn nack_detail(message: Option<&str>) -> Option<Status> {
        message.map(|m| Status {
            code: 3,
            message: m.into(),
            details: vec![],
        })
    }

    fn connected(t0: Instant) -> AdsState {
        let mut s = AdsState::new(node());
        assert!(s.on_connected(t0).is_empty());
        s
    }

    /// A connected state subscribed to `names` of `ty`, the subscription requests drained.
    fn subscribed(t0: Instant, ty: ResourceType, names: &[&str]) -> AdsState {
        let mut s = connected(t0);
        for n in names {
            s.subscribe(ty, n, t0);
        }
        s
    }

    fn kinds(events: &[ResourceEvent]) -> Vec<(String, &'static str)> {
        events
            .iter()
            .map(|e| {
                let k = match &e.kind {
                    ResourceEventKind::Changed(_) => "changed",
                    ResourceEventKind::Error(_) => "error",
                    ResourceEventKind::Dropped(_) => "dropped",
                    ResourceEventKind::DoesNotExist => "does-not-exist",
                    ResourceEventKind::DeletionIgnored => "deletion-ignored",
                    ResourceEventKind::TimedOut(_) => "timed-out",
                    ResourceEventKind::ReceivedError { discard: false, .. } => "received-error",
                    ResourceEventKind::ReceivedError { discard: true, .. } => {
                        "received-error-discard"
                    }
                };
                (format!("{} {}", e.ty.short_name(), e.name), k)
            })
            .collect()
    }

    fn ev(s: &str, k: &'static str) -> (String, &'static str) {
        (s.to_string(), k)
    }

    // --- node ---

    #[test]
    fn node_only_on_first_request_of_stream() {
        let t0 = Instant::now();
        let mut s = connected(t0);
        assert_req(
            &single(s.subscribe(LDS, "a", t0)),
            Want::new(LISTENER, &["a"]).node(),
        );
        assert_req(
            &single(s.subscribe(CDS, "c", t0)),
            Want::new(CLUSTER, &["c"]),
        );
        assert_req(
            &single(s.subscribe(LDS, "b", t0)),
            Want::new(LISTENER, &["a", "b"]),
        );
    }

    #[test]
    fn node_sent_again_on_new_stream() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        s.on_disconnected();
        let reqs = s.on_connected(t0);
        assert_req(&single(reqs), Want::new(LISTENER, &["a"]).node());
        assert_req(
            &single(s.subscribe(LDS, "b", t0)),
            Want::new(LISTENER, &["a", "b"]),
        );
    }

    // --- subscribe / unsubscribe ---

    #[test]
    fn subscribe_while_disconnected_sends_nothing_until_connected() {
        let t0 = Instant::now();
        let mut s = AdsState::new(node());
        assert!(s.subscribe(CDS, "c2", t0).is_empty());
        assert!(s.subscribe(LDS, "l", t0).is_empty());
        assert!(s.subscribe(CDS, "c1", t0).is_empty());
        let reqs = s.on_connected(t0);
        assert_eq!(reqs.len(), 2);
        assert_req(&reqs[0], Want::new(LISTENER, &["l"]).node());
        assert_req(&reqs[1], Want::new(CLUSTER, &["c1", "c2"]));
    }

    #[test]
    fn subscribe_sends_full_sorted_name_list() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, EDS, &["m"]);
        let req = single(s.subscribe(EDS, "b", t0));
        assert_req(&req, Want::new(CLUSTER_LOAD_ASSIGNMENT, &["b", "m"]));
        let req = single(s.subscribe(EDS, "z", t0));
        assert_req(&req, Want::new(CLUSTER_LOAD_ASSIGNMENT, &["b", "m", "z"]));
    }

    #[test]
    fn subscribing_twice_sends_nothing() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, RDS, &["r"]);
        assert!(s.subscribe(RDS, "r", t0).is_empty());
        assert_eq!(s.subscribed(RDS), vec!["r".to_string()]);
    }

    #[test]
    fn unsubscribe_sends_remaining_names() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["a", "b", "c"]);
        let req = single(s.unsubscribe(CDS, "b"));
        assert_req(&req, Want::new(CLUSTER, &["a", "c"]));
    }

    #[test]
    fn unsubscribing_last_name_sends_empty_list() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, RDS, &["r"]);
        let req = single(s.unsubscribe(RDS, "r"));
        assert_req(&req, Want::new(ROUTE_CONFIGURATION, &[]));
    }

    #[test]
    fn unsubscribing_unknown_name_sends_nothing() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, RDS, &["r"]);
        assert!(s.unsubscribe(RDS, "x").is_empty());
        assert!(s.unsubscribe(EDS, "x").is_empty());
    }

    #[test]
    fn unsubscribe_while_disconnected_sends_nothing_and_is_not_resubscribed() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["a", "b"]);
        s.on_disconnected();
        assert!(s.unsubscribe(CDS, "a").is_empty());
        assert!(s.unsubscribe(CDS, "b").is_empty());
        assert!(
            s.on_connected(t0).is_empty(),
            "a type without names is not re-sent"
        );
    }

    // --- ACK ---

    #[test]
    fn ack_carries_response_version_and_nonce() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        let out = s.on_response(resp(LISTENER, "v1", "n1", vec![listener("a")]), t0);
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a"]).version("v1").nonce("n1"),
        );
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "changed")]);
    }

    #[test]
    fn ack_lists_current_subscriptions_not_response_names() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["a", "b"]);
        let out = s.on_response(
            resp(CLUSTER, "7", "x", vec![cluster("a"), cluster("other")]),
            t0,
        );
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER, &["a", "b"]).version("7").nonce("x"),
        );
    }

    #[test]
    fn later_subscription_request_carries_acked_version_and_last_nonce() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["a"]);
        s.on_response(resp(CLUSTER, "v1", "n1", vec![cluster("a")]), t0);
        let req = single(s.subscribe(CDS, "b", t0));
        assert_req(
            &req,
            Want::new(CLUSTER, &["a", "b"]).version("v1").nonce("n1"),
        );
        let req = single(s.unsubscribe(CDS, "a"));
        assert_req(&req, Want::new(CLUSTER, &["b"]).version("v1").nonce("n1"));
    }

    #[test]
    fn ack_after_all_unsubscribed_has_empty_list() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, EDS, &["e"]);
        s.unsubscribe(EDS, "e");
        let out = s.on_response(
            resp(CLUSTER_LOAD_ASSIGNMENT, "v2", "n2", vec![cla("e")]),
            t0,
        );
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER_LOAD_ASSIGNMENT, &[])
                .version("v2")
                .nonce("n2"),
        );
        assert!(out.updates.is_empty());
    }

    // --- NACK ---

    #[test]
    fn nack_carries_last_acked_version_and_rejected_nonce() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        s.on_response(resp(LISTENER, "v1", "n1", vec![listener("a")]), t0);
        let out = s.on_response(resp(LISTENER, "v2", "n2", vec![bad_listener("a")]), t0);
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a"])
                .version("v1")
                .nonce("n2")
                .error(&bad_listener_error("a")),
        );
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "error")]);
        match &out.updates[0].kind {
            ResourceEventKind::Error(m) => assert_eq!(m, NO_API_LISTENER),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn first_response_nacked_has_empty_version() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        let out = s.on_response(resp(LISTENER, "v1", "n1", vec![bad_listener("a")]), t0);
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a"])
                .nonce("n1")
                .error(&bad_listener_error("a")),
        );
    }

    #[test]
    fn unknown_certificate_provider_instance_nacks_with_the_bootstrap_context() {
        // gRFC A29: a TLS context naming an instance the bootstrap lacks is NACKed; the
        // other resources of the response are still used (A46).
        use crate::xds::resource::tls::tests::tls_cluster;
        let t0 = Instant::now();
        let mut s = AdsState::new(node())
            .with_validation_context(ValidationContext::with_cert_provider_instances(["default"]));
        assert!(s.on_connected(t0).is_empty());
        s.subscribe(ResourceType::Cluster, "good", t0);
        s.subscribe(ResourceType::Cluster, "bad", t0);
        let out = s.on_response(
            resp(
                CLUSTER,
                "v1",
                "n1",
                vec![tls_cluster("good", "default"), tls_cluster("bad", "vault")],
            ),
            t0,
        );
        let nack = single(out.requests);
        let message = nack.error_detail.map(|e| e.message).unwrap_or_default();
        assert!(
            message.starts_with("cluster \"bad\": transport_socket.typed_config.common_tls_context.tls_certificate_provider_instance.instance_name: unknown certificate provider instance \"vault\""),
            "{message}"
        );
        assert_eq!(
            kinds(&out.updates),
            vec![ev("CDS bad", "error"), ev("CDS good", "changed")]
        );
    }

    #[test]
    fn nack_still_delivers_valid_resources_of_the_response() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a", "b", "c"]);
        let out = s.on_response(
            resp(
                LISTENER,
                "v1",
                "n1",
                vec![listener("a"), bad_listener("b"), listener("c")],
            ),
            t0,
        );
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a", "b", "c"])
                .nonce("n1")
                .error(&bad_listener_error("b")),
        );
        assert_eq!(
            kinds(&out.updates),
            vec![
                ev("LDS a", "changed"),
                ev("LDS b", "error"),
                ev("LDS c", "changed")
            ]
        );
    }

    #[test]
    fn nack_message_names_every_bad_resource_in_order() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a", "b"]);
        let out = s.on_response(
            resp(
                LISTENER,
                "v1",
                "n1",
                vec![bad_listener("b"), garbage(LISTENER), bad_listener("a")],
            ),
            t0,
        );
        let req = single(out.requests);
        let msg = req
            .error_detail
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_default();
        let parts: Vec<&str> = msg.split("; ").collect();
        assert_eq!(parts.len(), 3, "{msg}");
        assert_eq!(parts[0], bad_listener_error("b"));
        assert!(
            parts[1].starts_with("listener (unnamed): cannot decode: "),
            "{msg}"
        );
        assert_eq!(parts[2], bad_listener_error("a"));
        assert_eq!(req.version_info, "");
        assert_eq!(req.response_nonce, "n1");
        assert_eq!(req.error_detail.map(|e| e.code), Some(3));
    }

    #[test]
    fn undecodable_resource_is_nacked() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c"]);
        s.on_response(resp(CLUSTER, "v1", "n1", vec![cluster("c")]), t0);
        let out = s.on_response(resp(CLUSTER, "v2", "n2", vec![garbage(CLUSTER)]), t0);
        let req = single(out.requests);
        assert_eq!(req.version_info, "v1");
        assert_eq!(req.response_nonce, "n2");
        assert_eq!(req.resource_names, vec!["c".to_string()]);
        assert!(req.node.is_none());
        let status = req.error_detail.unwrap_or_default();
        assert_eq!(status.code, 3);
        assert!(
            status
                .message
                .starts_with("cluster (unnamed): cannot decode: "),
            "{}",
            status.message
        );
        assert!(
            out.updates.is_empty(),
            "no name, no event, and no deletion inferred"
        );
    }

    #[test]
    fn wrong_type_inside_response_is_nacked() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c"]);
        let out = s.on_response(resp(CLUSTER, "v1", "n1", vec![listener("c")]), t0);
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER, &["c"]).nonce("n1").error(&format!(
                "cluster (unnamed): unexpected type {LISTENER:?}, want {CLUSTER:?}"
            )),
        );
    }

    #[test]
    fn duplicate_names_in_one_response_are_nacked() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c", "d"]);
        let out = s.on_response(
            resp(
                CLUSTER,
                "v1",
                "n1",
                vec![cluster("c"), cluster("d"), cluster("c")],
            ),
            t0,
        );
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER, &["c", "d"])
                .nonce("n1")
                .error("cluster \"c\": duplicate resource name in response"),
        );
        assert_eq!(
            kinds(&out.updates),
            vec![ev("CDS c", "error"), ev("CDS d", "changed")]
        );
    }

    #[test]
    fn version_after_nack_then_ack() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        s.on_response(resp(LISTENER, "v1", "n1", vec![bad_listener("a")]), t0);
        let out = s.on_response(resp(LISTENER, "v2", "n2", vec![listener("a")]), t0);
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a"]).version("v2").nonce("n2"),
        );
    }

    // --- unknown / unsubscribed ---

    #[test]
    fn unknown_type_url_is_neither_acked_nor_nacked() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        let url = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
        let out = s.on_response(resp(url, "v1", "n1", vec![garbage(url)]), t0);
        assert!(out.requests.is_empty());
        assert!(out.updates.is_empty());
        // And it did not disturb the LDS nonce.
        assert_req(
            &single(s.subscribe(LDS, "b", t0)),
            Want::new(LISTENER, &["a", "b"]),
        );
    }

    #[test]
    fn never_subscribed_type_is_ignored() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        let out = s.on_response(resp(CLUSTER, "v1", "n1", vec![cluster("c")]), t0);
        assert!(out.requests.is_empty());
        assert!(out.updates.is_empty());
    }

    #[test]
    fn unsubscribed_resources_are_ignored_and_acked() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        let out = s.on_response(
            resp(LISTENER, "v1", "n1", vec![listener("x"), listener("a")]),
            t0,
        );
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a"]).version("v1").nonce("n1"),
        );
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "changed")]);
    }

    // --- SotW deletion ---

    #[test]
    fn lds_resource_missing_from_response_is_deleted() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a", "b"]);
        s.on_response(
            resp(LISTENER, "v1", "n1", vec![listener("a"), listener("b")]),
            t0,
        );
        let out = s.on_response(resp(LISTENER, "v2", "n2", vec![listener("b")]), t0);
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a", "b"]).version("v2").nonce("n2"),
        );
        assert_eq!(
            kinds(&out.updates),
            vec![ev("LDS a", "does-not-exist"), ev("LDS b", "changed")]
        );
    }

    #[test]
    fn cds_empty_response_deletes_every_cached_cluster() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["a", "b"]);
        s.on_response(
            resp(CLUSTER, "v1", "n1", vec![cluster("a"), cluster("b")]),
            t0,
        );
        let out = s.on_response(resp(CLUSTER, "v2", "n2", vec![]), t0);
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER, &["a", "b"]).version("v2").nonce("n2"),
        );
        assert_eq!(
            kinds(&out.updates),
            vec![ev("CDS a", "does-not-exist"), ev("CDS b", "does-not-exist")]
        );
    }

    #[test]
    fn deletion_is_reported_once() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["a"]);
        s.on_response(resp(CLUSTER, "v1", "n1", vec![cluster("a")]), t0);
        s.on_response(resp(CLUSTER, "v2", "n2", vec![]), t0);
        let out = s.on_response(resp(CLUSTER, "v3", "n3", vec![]), t0);
        assert!(out.updates.is_empty());
    }

    #[test]
    fn rds_and_eds_absence_is_not_deletion() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, RDS, &["r1", "r2"]);
        s.subscribe(EDS, "e1", t0);
        s.subscribe(EDS, "e2", t0);
        s.on_response(
            resp(
                ROUTE_CONFIGURATION,
                "v1",
                "n1",
                vec![route("r1"), route("r2")],
            ),
            t0,
        );
        s.on_response(
            resp(
                CLUSTER_LOAD_ASSIGNMENT,
                "v1",
                "n2",
                vec![cla("e1"), cla("e2")],
            ),
            t0,
        );
        let out = s.on_response(resp(ROUTE_CONFIGURATION, "v2", "n3", vec![route("r2")]), t0);
        assert_eq!(kinds(&out.updates), vec![ev("RDS r2", "changed")]);
        let out = s.on_response(resp(CLUSTER_LOAD_ASSIGNMENT, "v2", "n4", vec![]), t0);
        assert!(out.updates.is_empty());
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER_LOAD_ASSIGNMENT, &["e1", "e2"])
                .version("v2")
                .nonce("n4"),
        );
    }

    #[test]
    fn ignore_resource_deletion_keeps_the_resource() {
        let t0 = Instant::now();
        let opts = ProtocolOptions::from_server_features(&["ignore_resource_deletion".to_string()]);
        assert!(opts.ignore_resource_deletion);
        let mut s = AdsState::with_options(node(), opts);
        s.on_connected(t0);
        s.subscribe(LDS, "a", t0);
        s.on_response(resp(LISTENER, "v1", "n1", vec![listener("a")]), t0);
        let out = s.on_response(resp(LISTENER, "v2", "n2", vec![]), t0);
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "deletion-ignored")]);
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a"]).version("v2").nonce("n2"),
        );
    }

    // --- gRFC A88 data errors ---

    fn a88(features: &[&str]) -> ProtocolOptions {
        let features: Vec<String> = features.iter().map(|f| f.to_string()).collect();
        ProtocolOptions::from_server_features(&features)
    }

    #[test]
    fn a88_server_features_are_read() {
        let none = a88(&["xds_v3"]);
        assert!(!none.fail_on_data_errors && !none.resource_timer_is_transient_error);
        assert_eq!(none.does_not_exist_timeout, SECS_15);
        let both = a88(&["fail_on_data_errors", "resource_timer_is_transient_error"]);
        assert!(both.fail_on_data_errors && both.resource_timer_is_transient_error);
        assert_eq!(both.does_not_exist_timeout, Duration::from_secs(30));
    }

    /// Rows: (server features, what a NACK of a cached resource does, what its deletion
    /// does). A88: a data error keeps the cached value by default and drops it with
    /// fail_on_data_errors, which also wins over ignore_resource_deletion; a deletion without
    /// either feature is reported (A53's default, as gRPC releases do by default).
    #[test]
    fn a88_data_errors_on_a_cached_resource() {
        let rows: [(&[&str], &str, &str); 5] = [
            (&[], "error", "does-not-exist"),
            (&["ignore_resource_deletion"], "error", "deletion-ignored"),
            (&["fail_on_data_errors"], "dropped", "does-not-exist"),
            (
                &["fail_on_data_errors", "ignore_resource_deletion"],
                "dropped",
                "does-not-exist",
            ),
            (
                &["resource_timer_is_transient_error"],
                "error",
                "does-not-exist",
            ),
        ];
        for (features, on_nack, on_delete) in rows {
            let t0 = Instant::now();
            let mut s = AdsState::with_options(node(), a88(features));
            s.on_connected(t0);
            s.subscribe(LDS, "a", t0);
            s.on_response(resp(LISTENER, "v1", "n1", vec![listener("a")]), t0);
            let out = s.on_response(resp(LISTENER, "v2", "n2", vec![bad_listener("a")]), t0);
            assert_eq!(
                kinds(&out.updates),
                vec![ev("LDS a", on_nack)],
                "{features:?}"
            );
            match &out.updates[0].kind {
                ResourceEventKind::Error(m) | ResourceEventKind::Dropped(m) => {
                    assert_eq!(m, NO_API_LISTENER)
                }
                other => panic!("{other:?}"),
            }
            // The NACK is the same whatever the features.
            let nack = single(out.requests);
            assert_eq!(nack.version_info, "v1");
            assert_eq!(
                nack.error_detail.map(|d| d.message),
                Some(bad_listener_error("a"))
            );

            let mut s = AdsState::with_options(node(), a88(features));
            s.on_connected(t0);
            s.subscribe(CDS, "c", t0);
            s.on_response(resp(CLUSTER, "v1", "n1", vec![cluster("c")]), t0);
            let out = s.on_response(resp(CLUSTER, "v2", "n2", vec![]), t0);
            assert_eq!(
                kinds(&out.updates),
                vec![ev("CDS c", on_delete)],
                "{features:?}"
            );
        }
    }

    #[test]
    fn a88_dropped_resource_missing_later_is_not_a_deletion() {
        let t0 = Instant::now();
        let mut s = AdsState::with_options(node(), a88(&["fail_on_data_errors"]));
        s.on_connected(t0);
        s.subscribe(LDS, "a", t0);
        s.on_response(resp(LISTENER, "v1", "n1", vec![listener("a")]), t0);
        s.on_response(resp(LISTENER, "v2", "n2", vec![bad_listener("a")]), t0);
        let out = s.on_response(resp(LISTENER, "v3", "n3", vec![]), t0);
        assert!(out.updates.is_empty(), "{:?}", kinds(&out.updates));
        // And a valid value brings it back.
        let out = s.on_response(resp(LISTENER, "v4", "n4", vec![listener("a")]), t0);
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "changed")]);
    }

    #[test]
    fn a88_nack_of_an_uncached_resource_is_an_error_either_way() {
        for features in [&[][..], &["fail_on_data_errors"][..]] {
            let t0 = Instant::now();
            let mut s = AdsState::with_options(node(), a88(features));
            s.on_connected(t0);
            s.subscribe(LDS, "a", t0);
            let out = s.on_response(resp(LISTENER, "v1", "n1", vec![bad_listener("a")]), t0);
            assert_eq!(out.updates.len(), 1);
            assert!(
                matches!(
                    &out.updates[0].kind,
                    ResourceEventKind::Error(m) | ResourceEventKind::Dropped(m)
                        if m == NO_API_LISTENER
                ),
                "{:?}",
                out.updates[0].kind
            );
            assert_eq!(s.next_timer_deadline(), None, "received: no timer");
        }
    }

    #[test]
    fn a88_transient_resource_timer_runs_30s_and_times_out() {
        let t0 = Instant::now();
        let mut s = AdsState::with_options(node(), a88(&["resource_timer_is_transient_error"]));
        s.on_connected(t0);
        s.subscribe(CDS, "c", t0);
        assert_eq!(s.next_timer_deadline(), Some(t0 + Duration::from_secs(30)));
        assert!(s.poll_timers(t0 + SECS_15).is_empty(), "not at 15 s");
        let fired = s.poll_timers(t0 + Duration::from_secs(30));
        assert_eq!(kinds(&fired), vec![ev("CDS c", "timed-out")]);
        match &fired[0].kind {
            ResourceEventKind::TimedOut(m) => {
                assert!(
                    m.contains("not received from the xDS server within 30s"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        // Not restarted on a new stream (gRFC A57), as for the does-not-exist timer.
        s.on_disconnected();
        s.on_connected(t0 + Duration::from_secs(31));
        assert_eq!(s.next_timer_deadline(), None);
    }

    #[test]
    fn not_yet_received_resource_missing_from_response_is_not_deleted() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        s.on_response(resp(LISTENER, "v1", "n1", vec![listener("a")]), t0);
        s.subscribe(LDS, "b", t0);
        // A response racing the subscription of "b".
        let out = s.on_response(resp(LISTENER, "v1", "n2", vec![listener("a")]), t0);
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "changed")]);
        assert!(
            s.next_timer_deadline().is_some(),
            "b still waits for its timer"
        );
    }

    #[test]
    fn nacked_resource_is_not_deleted() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        s.on_response(resp(LISTENER, "v1", "n1", vec![listener("a")]), t0);
        let out = s.on_response(resp(LISTENER, "v2", "n2", vec![bad_listener("a")]), t0);
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "error")]);
    }

    #[test]
    fn unnamed_error_suppresses_deletion() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["a"]);
        s.on_response(resp(CLUSTER, "v1", "n1", vec![cluster("a")]), t0);
        let out = s.on_response(resp(CLUSTER, "v2", "n2", vec![garbage(CLUSTER)]), t0);
        assert!(out.updates.is_empty());
    }

    // --- does-not-exist timer ---

    #[test]
    fn timer_fires_15s_after_subscription_is_sent() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c"]);
        assert_eq!(s.next_timer_deadline(), Some(t0 + SECS_15));
        assert!(
            s.poll_timers(t0 + SECS_15 - Duration::from_millis(1))
                .is_empty()
        );
        let events = s.poll_timers(t0 + SECS_15);
        assert_eq!(kinds(&events), vec![ev("CDS c", "does-not-exist")]);
        assert_eq!(s.next_timer_deadline(), None);
        assert!(s.poll_timers(t0 + SECS_15 * 2).is_empty(), "fires once");
    }

    #[test]
    fn receiving_the_resource_cancels_its_timer() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c", "d"]);
        s.on_response(
            resp(CLUSTER, "v1", "n1", vec![cluster("c")]),
            t0 + Duration::from_secs(1),
        );
        let events = s.poll_timers(t0 + SECS_15);
        assert_eq!(kinds(&events), vec![ev("CDS d", "does-not-exist")]);
    }

    #[test]
    fn nacked_resource_cancels_its_timer() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        s.on_response(resp(LISTENER, "v1", "n1", vec![bad_listener("a")]), t0);
        assert_eq!(s.next_timer_deadline(), None);
    }

    #[test]
    fn no_timer_while_disconnected() {
        let t0 = Instant::now();
        let mut s = AdsState::new(node());
        s.subscribe(LDS, "a", t0);
        assert_eq!(s.next_timer_deadline(), None);
        assert!(s.poll_timers(t0 + SECS_15 * 10).is_empty());
        let t1 = t0 + Duration::from_secs(100);
        s.on_connected(t1);
        assert_eq!(s.next_timer_deadline(), Some(t1 + SECS_15));
    }

    #[test]
    fn disconnect_stops_timers_and_reconnect_restarts_them() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a"]);
        s.on_disconnected();
        assert_eq!(s.next_timer_deadline(), None);
        assert!(s.poll_timers(t0 + SECS_15).is_empty());
        let t1 = t0 + Duration::from_secs(20);
        s.on_connected(t1);
        assert_eq!(s.next_timer_deadline(), Some(t1 + SECS_15));
        assert_eq!(
            kinds(&s.poll_timers(t1 + SECS_15)),
            vec![ev("LDS a", "does-not-exist")]
        );
    }

    #[test]
    fn reconnect_does_not_restart_timers_of_received_resources() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a", "b"]);
        s.on_response(resp(LISTENER, "v1", "n1", vec![listener("a")]), t0);
        s.on_disconnected();
        let t1 = t0 + Duration::from_secs(1);
        s.on_connected(t1);
        assert_eq!(
            kinds(&s.poll_timers(t1 + SECS_15)),
            vec![ev("LDS b", "does-not-exist")]
        );
    }

    #[test]
    fn configurable_timeout() {
        let t0 = Instant::now();
        let opts = ProtocolOptions {
            does_not_exist_timeout: Duration::from_millis(100),
            ..ProtocolOptions::default()
        };
        let mut s = AdsState::with_options(node(), opts);
        s.on_connected(t0);
        s.subscribe(EDS, "e", t0);
        assert_eq!(
            s.next_timer_deadline(),
            Some(t0 + Duration::from_millis(100))
        );
    }

    // --- reconnect ---

    #[test]
    fn reconnect_resends_every_type_with_last_acked_version_and_no_nonce() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["b", "a"]);
        s.subscribe(CDS, "c", t0);
        s.subscribe(EDS, "e", t0);
        s.on_response(
            resp(LISTENER, "l1", "n1", vec![listener("a"), listener("b")]),
            t0,
        );
        s.on_response(resp(CLUSTER, "c1", "n2", vec![cluster("c")]), t0);
        // A NACKed CDS update: the version to resume from stays c1.
        s.on_response(resp(CLUSTER, "c2", "n3", vec![garbage(CLUSTER)]), t0);
        s.on_disconnected();
        assert!(!s.is_connected());
        let reqs = s.on_connected(t0);
        assert!(s.is_connected());
        assert_eq!(reqs.len(), 3);
        assert_req(
            &reqs[0],
            Want::new(LISTENER, &["a", "b"]).version("l1").node(),
        );
        assert_req(&reqs[1], Want::new(CLUSTER, &["c"]).version("c1"));
        assert_req(&reqs[2], Want::new(CLUSTER_LOAD_ASSIGNMENT, &["e"]));
    }

    #[test]
    fn cached_state_survives_stream_loss() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["a"]);
        s.on_response(resp(CLUSTER, "v1", "n1", vec![cluster("a")]), t0);
        s.on_disconnected();
        s.on_connected(t0);
        // Still known to have a value: its absence now is a deletion.
        let out = s.on_response(resp(CLUSTER, "v2", "n4", vec![]), t0);
        assert_eq!(kinds(&out.updates), vec![ev("CDS a", "does-not-exist")]);
    }

    // --- wrapper ---

    #[test]
    fn resource_wrapper_is_unwrapped() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c"]);
        let wrapped = pack(&ResourceWrapper {
            name: "c".into(),
            resource: Some(cluster("c")),
            ..Default::default()
        });
        assert_eq!(wrapped.type_url, xds_proto::type_url::RESOURCE_WRAPPER);
        let out = s.on_response(resp(CLUSTER, "v1", "n1", vec![wrapped]), t0);
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER, &["c"]).version("v1").nonce("n1"),
        );
        assert_eq!(kinds(&out.updates), vec![ev("CDS c", "changed")]);
        // CSDS (gRFC A40) dumps the resource itself, not its wrapper.
        let got: Vec<_> = out
            .updates
            .iter()
            .map(|e| (e.version.as_str(), e.raw.clone()))
            .collect();
        assert_eq!(got, vec![("v1", Some(cluster("c")))]);
    }

    #[test]
    fn events_carry_the_response_version_and_raw_value_only_when_valid() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a", "b"]);
        let out = s.on_response(
            resp(LISTENER, "v7", "n1", vec![listener("a"), bad_listener("b")]),
            t0,
        );
        let got: Vec<_> = out
            .updates
            .iter()
            .map(|e| (e.name.as_str(), e.version.as_str(), e.raw.clone()))
            .collect();
        assert_eq!(
            got,
            vec![("a", "v7", Some(listener("a"))), ("b", "v7", None)]
        );
        let mut timer = connected(t0);
        timer.subscribe(EDS, "e", t0);
        let fired = timer.poll_timers(t0 + SECS_15);
        assert_eq!(
            fired
                .iter()
                .map(|e| (e.version.as_str(), e.raw.is_none()))
                .collect::<Vec<_>>(),
            vec![("", true)]
        );
    }

    #[test]
    fn empty_resource_wrapper_is_nacked_by_name() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c"]);
        let wrapped = pack(&ResourceWrapper {
            name: "c".into(),
            ..Default::default()
        });
        let out = s.on_response(resp(CLUSTER, "v1", "n1", vec![wrapped]), t0);
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER, &["c"])
                .nonce("n1")
                .error("cluster \"c\": Resource wrapper: resource: missing"),
        );
        assert_eq!(kinds(&out.updates), vec![ev("CDS c", "error")]);
    }

    // --- delta xDS ---

    fn wrapped(name: &str, version: &str, resource: Any) -> ResourceWrapper {
        ResourceWrapper {
            name: name.into(),
            version: version.into(),
            resource: Some(resource),
            ..Default::default()
        }
    }

    fn delta_resp(
        type_url: &str,
        nonce: &str,
        resources: Vec<ResourceWrapper>,
        removed: &[&str],
    ) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: "sys".into(),
            resources,
            type_url: type_url.into(),
            removed_resources: removed.iter().map(|s| s.to_string()).collect(),
            nonce: nonce.into(),
            ..Default::default()
        }
    }

    /// The exact delta request expected.
    #[derive(Default)]
    struct WantDelta<'a> {
        subscribe: &'a [&'a str],
        unsubscribe: &'a [&'a str],
        initial: &'a [(&'a str, &'a str)],
        nonce: &'a str,
        node: bool,
        error: Option<&'a str>,
    }

    #[track_caller]
    fn assert_delta(got: &DeltaDiscoveryRequest, type_url: &str, want: WantDelta<'_>) {
        let expected = DeltaDiscoveryRequest {
            node: want.node.then(node),
            type_url: type_url.into(),
            resource_names_subscribe: strings(want.subscribe),
            resource_names_unsubscribe: strings(want.unsubscribe),
            initial_resource_versions: want
                .initial
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            response_nonce: want.nonce.into(),
            error_detail: nack_detail(want.error),
            ..Default::default()
        };
        assert_eq!(got, &expected);
    }

    /// A state on a delta stream subscribed to `names` of `ty`, the requests drained.
    fn delta_subscribed(t0: Instant, ty: ResourceType, names: &[&str]) -> AdsState {
        let mut s = AdsState::new(node());
        assert!(s.on_connected_delta(t0).is_empty());
        for n in names {
            s.subscribe_delta(ty, n, t0);
        }
        s
    }

    #[test]
    fn delta_connect_subscribes_every_name_once_with_the_node() {
        let t0 = Instant::now();
        let mut s = AdsState::new(node());
        s.subscribe(CDS, "c2", t0);
        s.subscribe(LDS, "l", t0);
        s.subscribe(CDS, "c1", t0);
        let reqs = s.on_connected_delta(t0);
        assert_eq!(reqs.len(), 2);
        let want = |subscribe, node| WantDelta {
            subscribe,
            node,
            ..Default::default()
        };
        assert_delta(&reqs[0], LISTENER, want(&["l"], true));
        assert_delta(&reqs[1], CLUSTER, want(&["c1", "c2"], false));
        assert_eq!(s.next_timer_deadline(), Some(t0 + SECS_15));
    }

    #[test]
    fn delta_subscription_changes_carry_only_the_change_and_no_nonce() {
        let t0 = Instant::now();
        let mut s = AdsState::new(node());
        s.on_connected_delta(t0);
        let first = single(s.subscribe_delta(EDS, "a", t0));
        assert_delta(
            &first,
            CLUSTER_LOAD_ASSIGNMENT,
            WantDelta {
                subscribe: &["a"],
                node: true,
                ..Default::default()
            },
        );
        s.on_delta_response(
            delta_resp(
                CLUSTER_LOAD_ASSIGNMENT,
                "n1",
                vec![wrapped("a", "1", cla("a"))],
                &[],
            ),
            t0,
        );
        let sub = single(s.subscribe_delta(EDS, "b", t0));
        assert_delta(
            &sub,
            CLUSTER_LOAD_ASSIGNMENT,
            WantDelta {
                subscribe: &["b"],
                ..Default::default()
            },
        );
        assert!(
            s.subscribe_delta(EDS, "b", t0).is_empty(),
            "already subscribed"
        );
        let unsub = single(s.unsubscribe_delta(EDS, "a"));
        assert_delta(
            &unsub,
            CLUSTER_LOAD_ASSIGNMENT,
            WantDelta {
                unsubscribe: &["a"],
                ..Default::default()
            },
        );
        assert!(s.unsubscribe_delta(EDS, "a").is_empty(), "not subscribed");
        let mut offline = AdsState::new(node());
        assert!(offline.subscribe_delta(EDS, "x", t0).is_empty());
        assert!(offline.unsubscribe_delta(EDS, "x").is_empty());
    }

    #[test]
    fn delta_ack_carries_the_nonce_and_events_the_resource_version() {
        let t0 = Instant::now();
        let mut s = delta_subscribed(t0, LDS, &["a", "b"]);
        let out = s.on_delta_response(
            delta_resp(
                LISTENER,
                "n1",
                vec![
                    wrapped("a", "va1", listener("a")),
                    wrapped("x", "vx", listener("x")),
                ],
                &[],
            ),
            t0,
        );
        assert_delta(
            &single(out.requests),
            LISTENER,
            WantDelta {
                nonce: "n1",
                ..Default::default()
            },
        );
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "changed")]);
        let got: Vec<_> = out
            .updates
            .iter()
            .map(|e| (e.version.as_str(), e.raw.clone()))
            .collect();
        assert_eq!(
            got,
            vec![("va1", Some(listener("a")))],
            "unwrapped, own version"
        );
        // Absence from a delta response means nothing, even for LDS.
        let out = s.on_delta_response(
            delta_resp(
                LISTENER,
                "n2",
                vec![wrapped("b", "vb1", listener("b"))],
                &[],
            ),
            t0,
        );
        assert_eq!(kinds(&out.updates), vec![ev("LDS b", "changed")]);
        assert_eq!(s.next_timer_deadline(), None);
    }

    #[test]
    fn delta_nack_carries_the_error_and_keeps_the_valid_resources() {
        let t0 = Instant::now();
        let mut s = delta_subscribed(t0, LDS, &["a", "b"]);
        let out = s.on_delta_response(
            delta_resp(
                LISTENER,
                "n1",
                vec![
                    wrapped("a", "va1", listener("a")),
                    wrapped("b", "vb1", bad_listener("b")),
                    ResourceWrapper {
                        name: "c".into(),
                        version: "vc".into(),
                        ..Default::default()
                    },
                ],
                &[],
            ),
            t0,
        );
        let message = format!(
            "{}; listener \"c\": Resource wrapper: resource: missing",
            bad_listener_error("b")
        );
        assert_delta(
            &single(out.requests),
            LISTENER,
            WantDelta {
                nonce: "n1",
                error: Some(&message),
                ..Default::default()
            },
        );
        assert_eq!(
            kinds(&out.updates),
            vec![ev("LDS a", "changed"), ev("LDS b", "error")]
        );
        let versions: Vec<_> = out.updates.iter().map(|e| e.version.as_str()).collect();
        assert_eq!(versions, ["va1", "vb1"], "the rejected version, for CSDS");
    }

    #[test]
    fn delta_removal_deletes_any_type_and_answers_unknown_names() {
        let t0 = Instant::now();
        let mut s = delta_subscribed(t0, RDS, &["r1", "r2", "r3"]);
        s.on_delta_response(
            delta_resp(
                ROUTE_CONFIGURATION,
                "n1",
                vec![
                    wrapped("r1", "1", route("r1")),
                    wrapped("r2", "1", route("r2")),
                ],
                &[],
            ),
            t0,
        );
        assert_eq!(s.next_timer_deadline(), Some(t0 + SECS_15), "r3 waits");
        // r1 removed; r3 (never received) said not to exist; "zz" is not subscribed.
        let out = s.on_delta_response(
            delta_resp(ROUTE_CONFIGURATION, "n2", vec![], &["r1", "r3", "zz"]),
            t0,
        );
        assert_delta(
            &single(out.requests),
            ROUTE_CONFIGURATION,
            WantDelta {
                nonce: "n2",
                ..Default::default()
            },
        );
        assert_eq!(
            kinds(&out.updates),
            vec![
                ev("RDS r1", "does-not-exist"),
                ev("RDS r3", "does-not-exist")
            ]
        );
        assert!(
            out.updates
                .iter()
                .all(|e| e.version.is_empty() && e.raw.is_none())
        );
        assert_eq!(s.next_timer_deadline(), None, "r3's timer is cancelled");
        // removed_resource_names counts as well.
        let mut resp = delta_resp(ROUTE_CONFIGURATION, "n3", vec![], &[]);
        resp.removed_resource_names = vec![
            xds_proto::envoy::envoy::service::discovery::v3::ResourceName {
                name: "r2".into(),
                ..Default::default()
            },
        ];
        let out = s.on_delta_response(resp, t0);
        assert_eq!(kinds(&out.updates), vec![ev("RDS r2", "does-not-exist")]);
    }

    #[test]
    fn delta_removal_respects_ignore_resource_deletion() {
        let t0 = Instant::now();
        let opts = ProtocolOptions::from_server_features(&["ignore_resource_deletion".to_string()]);
        let mut s = AdsState::with_options(node(), opts);
        s.on_connected_delta(t0);
        s.subscribe_delta(CDS, "c", t0);
        s.subscribe_delta(CDS, "d", t0);
        s.on_delta_response(
            delta_resp(CLUSTER, "n1", vec![wrapped("c", "1", cluster("c"))], &[]),
            t0,
        );
        let out = s.on_delta_response(delta_resp(CLUSTER, "n2", vec![], &["c", "d"]), t0);
        assert_eq!(
            kinds(&out.updates),
            vec![
                ev("CDS c", "deletion-ignored"),
                ev("CDS d", "does-not-exist")
            ],
            "c is kept (and said so, for CSDS); d never had a value"
        );
    }

    #[test]
    fn delta_reconnect_sends_initial_resource_versions_of_held_resources() {
        let t0 = Instant::now();
        let mut s = delta_subscribed(t0, CDS, &["a", "b", "c", "d"]);
        s.subscribe_delta(LDS, "l", t0);
        s.on_delta_response(
            delta_resp(
                CLUSTER,
                "n1",
                vec![
                    wrapped("a", "a1", cluster("a")),
                    wrapped("b", "b1", cluster("b")),
                    wrapped("c", "c1", cluster("c")),
                ],
                &[],
            ),
            t0,
        );
        // b's update is NACKed (b1 stays held), c is removed, d never arrived.
        s.on_delta_response(
            delta_resp(
                CLUSTER,
                "n2",
                vec![wrapped("b", "b2", garbage(CLUSTER))],
                &["c"],
            ),
            t0,
        );
        s.on_disconnected();
        let reqs = s.on_connected_delta(t0);
        assert_eq!(reqs.len(), 2);
        assert_delta(
            &reqs[0],
            LISTENER,
            WantDelta {
                subscribe: &["l"],
                node: true,
                ..Default::default()
            },
        );
        assert_delta(
            &reqs[1],
            CLUSTER,
            WantDelta {
                subscribe: &["a", "b", "c", "d"],
                initial: &[("a", "a1"), ("b", "b1")],
                ..Default::default()
            },
        );
        // Unchanged resources are not resent: timers run only for those never received.
        assert_eq!(
            kinds(&s.poll_timers(t0 + SECS_15)),
            vec![ev("LDS l", "does-not-exist"), ev("CDS d", "does-not-exist")]
        );
        // Another server: versions are forgotten, values are kept.
        s.on_disconnected();
        s.forget_resource_versions();
        let reqs = s.on_connected_delta(t0);
        assert!(reqs.iter().all(|r| r.initial_resource_versions.is_empty()));
        // A SotW update of a resource has no per-resource version to send back.
        s.on_disconnected();
        s.on_connected(t0);
        s.on_response(resp(CLUSTER, "v9", "s1", vec![cluster("a")]), t0);
        s.on_disconnected();
        s.on_connected_delta(t0);
        s.on_delta_response(
            delta_resp(CLUSTER, "n3", vec![wrapped("b", "b3", cluster("b"))], &[]),
            t0,
        );
        s.on_disconnected();
        let reqs = s.on_connected_delta(t0);
        assert_eq!(
            reqs[1].initial_resource_versions,
            [("b".to_string(), "b3".to_string())].into_iter().collect()
        );
    }

    #[test]
    fn delta_unknown_and_unsubscribed_types_are_ignored() {
        let t0 = Instant::now();
        let mut s = delta_subscribed(t0, LDS, &["a"]);
        let url = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
        let out = s.on_delta_response(delta_resp(url, "n1", vec![], &["a"]), t0);
        assert!(out.requests.is_empty() && out.updates.is_empty());
        let out = s.on_delta_response(
            delta_resp(CLUSTER, "n1", vec![wrapped("c", "1", cluster("c"))], &[]),
            t0,
        );
        assert!(out.requests.is_empty() && out.updates.is_empty());
    }

    #[test]
    fn delta_and_sotw_give_the_same_events_for_the_same_changes() {
        let t0 = Instant::now();
        let mut sotw = subscribed(t0, CDS, &["a", "b"]);
        let mut delta = delta_subscribed(t0, CDS, &["a", "b"]);
        let sotw_events = [
            sotw.on_response(
                resp(CLUSTER, "1", "n1", vec![cluster("a"), cluster("b")]),
                t0,
            ),
            sotw.on_response(
                resp(CLUSTER, "2", "n2", vec![cluster("a"), garbage(CLUSTER)]),
                t0,
            ),
            sotw.on_response(resp(CLUSTER, "3", "n3", vec![cluster("b")]), t0),
        ]
        .map(|o| kinds(&o.updates));
        let delta_events = [
            delta.on_delta_response(
                delta_resp(
                    CLUSTER,
                    "n1",
                    vec![
                        wrapped("a", "1", cluster("a")),
                        wrapped("b", "1", cluster("b")),
                    ],
                    &[],
                ),
                t0,
            ),
            delta.on_delta_response(
                delta_resp(CLUSTER, "n2", vec![wrapped("a", "1", cluster("a"))], &[]),
                t0,
            ),
            delta.on_delta_response(
                delta_resp(CLUSTER, "n3", vec![wrapped("b", "1", cluster("b"))], &["a"]),
                t0,
            ),
        ]
        .map(|o| kinds(&o.updates));
        assert_eq!(sotw_events, delta_events);
    }

    // --- xRFC TP3 resource errors (gRFC A88) ---

    /// A `resource_errors` entry for `name` with `code` and `message`.
    fn resource_error(
        name: &str,
        code: i32,
        message: &str,
    ) -> xds_proto::envoy::envoy::service::discovery::v3::ResourceError {
        use xds_proto::envoy::envoy::service::discovery::v3::{ResourceError, ResourceName};
        ResourceError {
            resource_name: Some(ResourceName {
                name: name.into(),
                ..Default::default()
            }),
            error_detail: Some(Status {
                code,
                message: message.into(),
                details: vec![],
            }),
        }
    }

    /// A SotW response carrying `resources` and these `resource_errors`.
    fn resp_with_errors(
        type_url: &str,
        version: &str,
        nonce: &str,
        resources: Vec<Any>,
        errors: Vec<xds_proto::envoy::envoy::service::discovery::v3::ResourceError>,
    ) -> DiscoveryResponse {
        DiscoveryResponse {
            resource_errors: errors,
            ..resp(type_url, version, nonce, resources)
        }
    }

    /// The message of a ReceivedError event.
    #[track_caller]
    fn received_message(event: &ResourceEvent) -> &str {
        match &event.kind {
            ResourceEventKind::ReceivedError { message, .. } => message,
            other => panic!("not a server error: {other:?}"),
        }
    }

    const UNAVAILABLE: i32 = 14;

    /// Every row of A88's xRFC TP3 table: (status, cached, fail_on_data_errors) → the event.
    /// A data error (NOT_FOUND, PERMISSION_DENIED) discards a value only under
    /// fail_on_data_errors; any other status never does; an uncached resource fails either
    /// way (the cache turns a ReceivedError without a value into a failure). Every response
    /// is ACKed, and the timer of an uncached resource is cancelled.
    #[test]
    fn tp3_table_every_row() {
        let rows: [(i32, &str, bool, bool, &str); 12] = [
            (NOT_FOUND, "NOT_FOUND", false, false, "received-error"),
            (
                NOT_FOUND,
                "NOT_FOUND",
                false,
                true,
                "received-error-discard",
            ),
            (NOT_FOUND, "NOT_FOUND", true, false, "received-error"),
            (NOT_FOUND, "NOT_FOUND", true, true, "received-error-discard"),
            (
                PERMISSION_DENIED,
                "PERMISSION_DENIED",
                false,
                false,
                "received-error",
            ),
            (
                PERMISSION_DENIED,
                "PERMISSION_DENIED",
                false,
                true,
                "received-error-discard",
            ),
            (
                PERMISSION_DENIED,
                "PERMISSION_DENIED",
                true,
                false,
                "received-error",
            ),
            (
                PERMISSION_DENIED,
                "PERMISSION_DENIED",
                true,
                true,
                "received-error-discard",
            ),
            (UNAVAILABLE, "UNAVAILABLE", false, false, "received-error"),
            (UNAVAILABLE, "UNAVAILABLE", false, true, "received-error"),
            (UNAVAILABLE, "UNAVAILABLE", true, false, "received-error"),
            (UNAVAILABLE, "UNAVAILABLE", true, true, "received-error"),
        ];
        for (code, code_name, cached, fail, want) in rows {
            let t0 = Instant::now();
            let features: &[&str] = if fail { &["fail_on_data_errors"] } else { &[] };
            let mut s = AdsState::with_options(node(), a88(features));
            s.on_connected(t0);
            s.subscribe(CDS, "c", t0);
            if cached {
                s.on_response(resp(CLUSTER, "v1", "n1", vec![cluster("c")]), t0);
            } else {
                assert_eq!(s.next_timer_deadline(), Some(t0 + SECS_15));
            }
            let out = s.on_response(
                resp_with_errors(
                    CLUSTER,
                    "v2",
                    "n2",
                    vec![],
                    vec![resource_error("c", code, "no access to c")],
                ),
                t0,
            );
            let row = format!("{code_name} cached={cached} fail_on_data_errors={fail}");
            assert_eq!(kinds(&out.updates), vec![ev("CDS c", want)], "{row}");
            assert_eq!(
                received_message(&out.updates[0]),
                format!("the xDS server reported {code_name}: no access to c"),
                "{row}"
            );
            assert_eq!(out.updates[0].version, "v2", "{row}");
            // An ACK of v2, never a NACK.
            assert_req(
                &single(out.requests),
                Want::new(CLUSTER, &["c"]).version("v2").nonce("n2"),
            );
            assert_eq!(s.next_timer_deadline(), None, "{row}: timer cancelled");
            assert!(
                s.poll_timers(t0 + SECS_15 + SECS_15).is_empty(),
                "{row}: no does-not-exist later"
            );
        }
    }

    #[test]
    fn tp3_error_cancels_the_timer_and_it_is_not_restarted_on_reconnect() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a", "b"]);
        let out = s.on_response(
            resp_with_errors(
                LISTENER,
                "",
                "n1",
                vec![],
                vec![resource_error("a", NOT_FOUND, "")],
            ),
            t0,
        );
        assert_eq!(kinds(&out.updates), vec![ev("LDS a", "received-error")]);
        assert_eq!(
            received_message(&out.updates[0]),
            "the xDS server reported NOT_FOUND"
        );
        // Only b's timer still runs.
        let fired = s.poll_timers(t0 + SECS_15);
        assert_eq!(kinds(&fired), vec![ev("LDS b", "does-not-exist")]);
        s.on_disconnected();
        s.on_connected(t0 + SECS_15);
        assert_eq!(s.next_timer_deadline(), None);
    }

    /// The error persists across responses (SotW absence of an LDS/CDS resource under an
    /// error is no deletion) until the resource is sent again, which clears it; after that
    /// its absence is a deletion again.
    #[test]
    fn tp3_error_persists_until_the_resource_comes_back() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c", "d"]);
        s.on_response(
            resp(CLUSTER, "v1", "n1", vec![cluster("c"), cluster("d")]),
            t0,
        );
        // c in error and absent: no deletion on top of the error.
        let out = s.on_response(
            resp_with_errors(
                CLUSTER,
                "v2",
                "n2",
                vec![cluster("d")],
                vec![resource_error("c", PERMISSION_DENIED, "denied")],
            ),
            t0,
        );
        assert_eq!(
            kinds(&out.updates),
            vec![ev("CDS c", "received-error"), ev("CDS d", "changed")]
        );
        // A later response with neither c nor its error: still no deletion.
        let out = s.on_response(resp(CLUSTER, "v3", "n3", vec![cluster("d")]), t0);
        assert_eq!(kinds(&out.updates), vec![ev("CDS d", "changed")]);
        // c comes back: the error is over.
        let out = s.on_response(
            resp(CLUSTER, "v4", "n4", vec![cluster("c"), cluster("d")]),
            t0,
        );
        assert_eq!(
            kinds(&out.updates),
            vec![ev("CDS c", "changed"), ev("CDS d", "changed")]
        );
        // Now its absence is a deletion again.
        let out = s.on_response(resp(CLUSTER, "v5", "n5", vec![cluster("d")]), t0);
        assert_eq!(
            kinds(&out.updates),
            vec![ev("CDS c", "does-not-exist"), ev("CDS d", "changed")]
        );
    }

    /// Server errors never NACK; an invalid resource in the same response still does, and
    /// the NACK names only it.
    #[test]
    fn tp3_errors_are_acked_but_invalid_resources_still_nack() {
        let t0 = Instant::now();
        let mut s = subscribed(t0, LDS, &["a", "b"]);
        let out = s.on_response(
            resp_with_errors(
                LISTENER,
                "v1",
                "n1",
                vec![bad_listener("b")],
                vec![resource_error("a", UNAVAILABLE, "backend down")],
            ),
            t0,
        );
        assert_eq!(
            kinds(&out.updates),
            vec![ev("LDS a", "received-error"), ev("LDS b", "error")]
        );
        assert_req(
            &single(out.requests),
            Want::new(LISTENER, &["a", "b"])
                .nonce("n1")
                .error(&bad_listener_error("b")),
        );
    }

    /// Errors for names not subscribed, without a name, or without a status are ignored
    /// (ACKed, no event); a resource sent together with an error for it wins.
    #[test]
    fn tp3_unusable_and_unsubscribed_errors_are_ignored() {
        use xds_proto::envoy::envoy::service::discovery::v3::ResourceError as Tp3Error;
        let t0 = Instant::now();
        let mut s = subscribed(t0, CDS, &["c", "d"]);
        let mut no_status = resource_error("c", NOT_FOUND, "x");
        no_status.error_detail = None;
        let mut empty_name = resource_error("", NOT_FOUND, "x");
        empty_name.resource_name = Some(Default::default());
        let no_name = Tp3Error {
            resource_name: None,
            ..resource_error("c", NOT_FOUND, "x")
        };
        let out = s.on_response(
            resp_with_errors(
                CLUSTER,
                "v1",
                "n1",
                vec![cluster("d")],
                vec![
                    resource_error("other", NOT_FOUND, "x"),
                    no_status,
                    empty_name,
                    no_name,
                    resource_error("d", NOT_FOUND, "x"),
                ],
            ),
            t0,
        );
        assert_eq!(kinds(&out.updates), vec![ev("CDS d", "changed")]);
        assert_req(
            &single(out.requests),
            Want::new(CLUSTER, &["c", "d"]).version("v1").nonce("n1"),
        );
        // c's timer still runs: nothing usable was said about it.
        assert_eq!(s.next_timer_deadline(), Some(t0 + SECS_15));
    }

    /// RDS/EDS: the same rules (absence never meant deletion there anyway).
    #[test]
    fn tp3_applies_to_every_type() {
        let t0 = Instant::now();
        for (ty, type_url) in [
            (LDS, LISTENER),
            (RDS, ROUTE_CONFIGURATION),
            (CDS, CLUSTER),
            (EDS, CLUSTER_LOAD_ASSIGNMENT),
        ] {
            let mut s = subscribed(t0, ty, &["x"]);
            let out = s.on_response(
                resp_with_errors(
                    type_url,
                    "v1",
                    "n1",
                    vec![],
                    vec![resource_error("x", NOT_FOUND, "gone")],
                ),
                t0,
            );
            let want = format!("{} x", ty.short_name());
            assert_eq!(kinds(&out.updates), vec![(want, "received-error")]);
            assert_eq!(single(out.requests).error_detail, None);
        }
    }

    #[test]
    fn tp3_delta_errors_follow_the_same_rules() {
        let t0 = Instant::now();
        for fail in [false, true] {
            let features: &[&str] = if fail { &["fail_on_data_errors"] } else { &[] };
            let mut s = AdsState::with_options(node(), a88(features));
            s.on_connected_delta(t0);
            s.subscribe_delta(CDS, "c", t0);
            s.subscribe_delta(CDS, "u", t0);
            s.on_delta_response(
                delta_resp(CLUSTER, "n1", vec![wrapped("c", "1", cluster("c"))], &[]),
                t0,
            );
            let mut r = delta_resp(CLUSTER, "n2", vec![], &[]);
            r.resource_errors = vec![
                resource_error("c", PERMISSION_DENIED, "denied"),
                resource_error("u", UNAVAILABLE, "later"),
            ];
            let out = s.on_delta_response(r, t0);
            let want_c = if fail {
                "received-error-discard"
            } else {
                "received-error"
            };
            assert_eq!(
                kinds(&out.updates),
                vec![ev("CDS c", want_c), ev("CDS u", "received-error")],
                "fail_on_data_errors={fail}"
            );
            assert_eq!(
                received_message(&out.updates[0]),
                "the xDS server reported PERMISSION_DENIED: denied"
            );
            // ACK: the nonce and no error.
            assert_delta(
                &single(out.requests),
                CLUSTER,
                WantDelta {
                    nonce: "n2",
                    ..Default::default()
                },
            );
            assert_eq!(s.next_timer_deadline(), None, "u's timer cancelled");
            // A discarded value is not offered back on reconnect; a kept one is.
            s.on_disconnected();
            let req = single(s.on_connected_delta(t0));
            let held: Vec<&String> = req.initial_resource_versions.keys().collect();
            if fail {
                assert!(held.is_empty(), "{held:?}");
            } else {
                assert_eq!(held, vec!["c"]);
            }
            // The resource again clears the error.
            let out = s.on_delta_response(
                delta_resp(CLUSTER, "n3", vec![wrapped("c", "2", cluster("c"))], &[]),
                t0,
            );
            assert_eq!(kinds(&out.updates), vec![ev("CDS c", "changed")]);
        }
    }
}
