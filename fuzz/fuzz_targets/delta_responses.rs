//! Fuzz target: sequences of stream events and delta DiscoveryResponses into the sans-IO ADS
//! core on a delta stream, `xds::protocol::AdsState` (incremental xDS, gRFC A27/A53/A57 rules
//! for what is valid; gRFC A88 with xRFC TP3 `resource_errors`). Checked against a model:
//! no panic; subscribing or unsubscribing a
//! name sends exactly that change (no nonce) and only when connected and it is a change; a
//! new stream subscribes every name once per type with no nonce and offers in
//! `initial_resource_versions` only subscribed names; every response of a subscribed known
//! type gets exactly one request back, an ACK or a NACK (INVALID_ARGUMENT with a message),
//! carrying the response's nonce and no subscription change; unknown or unsubscribed types
//! get nothing; the node goes only on the first request of a stream; events name subscribed
//! resources, once; no timer runs while disconnected; a server-reported error event names
//! a usable `resource_errors` entry and discards a value only for
//! NOT_FOUND/PERMISSION_DENIED under `fail_on_data_errors`; a response without resources
//! (whatever its `resource_errors` and removals) is ACKed.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_client::xds::protocol::{AdsState, ProtocolOptions, ResourceEventKind};
use mesh_client::xds::resource::ResourceType;
use mesh_fuzz::Ty;
use prost::Message;
use xds_proto::envoy::envoy::config::core::v3::Node;
use xds_proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as ResourceWrapper,
};
use xds_proto::protobuf::Any;

/// What a delta resource's `resource` field holds.
#[derive(Arbitrary, Debug)]
enum Body {
    /// A valid template of the type (kind 4: a server Listener), possibly with fields
    /// merged in from `tail`.
    Template { kind: u8, tail: Vec<u8> },
    /// Bytes under a known type URL.
    Raw { ty: Ty, bytes: Vec<u8> },
    /// Anything.
    Any { type_url: String, bytes: Vec<u8> },
    /// No resource (a TTL heartbeat, or a broken server).
    Missing,
}

/// One resource of a delta response.
#[derive(Arbitrary, Debug)]
struct Res {
    /// The wrapper's name (may differ from the resource's own).
    name: u8,
    /// The resource's name inside the template.
    inner_name: u8,
    version: u8,
    body: Body,
}

impl Res {
    fn wrapper(&self) -> ResourceWrapper {
        let inner = mesh_fuzz::name(self.inner_name);
        let resource: Option<Any> = match &self.body {
            Body::Template { kind, tail } => Some(mesh_fuzz::template_any(*kind, inner, tail)),
            Body::Raw { ty, bytes } => Some(Any {
                type_url: ty.ty().type_url().into(),
                value: bytes.clone(),
            }),
            Body::Any { type_url, bytes } => Some(Any {
                type_url: type_url.clone(),
                value: bytes.clone(),
            }),
            Body::Missing => None,
        };
        ResourceWrapper {
            name: mesh_fuzz::name(self.name).into(),
            version: format!("r{}", self.version),
            resource,
            ..Default::default()
        }
    }
}

#[derive(Arbitrary, Debug)]
enum TypeUrl {
    Known(Ty),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Subscribe(Ty, u8),
    Unsubscribe(Ty, u8),
    Connect,
    Disconnect,
    Advance(u8),
    Response {
        type_url: TypeUrl,
        nonce: u8,
        resources: Vec<Res>,
        removed: Vec<u8>,
        /// xRFC TP3 entries: (name, status code, named, with a status).
        errors: Vec<(u8, u8, bool, bool)>,
    },
    /// A whole DeltaDiscoveryResponse from bytes.
    Encoded(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    ignore_resource_deletion: bool,
    fail_on_data_errors: bool,
    ops: Vec<Op>,
}

/// What the protocol core must have done, tracked independently.
struct Model {
    connected: bool,
    node_sent: bool,
    subscribed: BTreeMap<ResourceType, BTreeSet<String>>,
    fail_on_data_errors: bool,
}

impl Model {
    /// Checks the common fields of a request the core sent for `ty`.
    fn request(&mut self, req: &DeltaDiscoveryRequest, ty: ResourceType) {
        assert!(self.connected, "request sent while disconnected");
        assert_eq!(req.type_url, ty.type_url());
        assert_eq!(
            req.node.is_some(),
            !self.node_sent,
            "node only on a stream's first request"
        );
        self.node_sent = true;
    }

    fn names(&self, ty: ResourceType) -> Vec<String> {
        self.subscribed
            .get(&ty)
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

fuzz_target!(|input: Input| {
    let node = Node {
        id: "node-1".into(),
        ..Default::default()
    };
    let options = ProtocolOptions {
        ignore_resource_deletion: input.ignore_resource_deletion,
        fail_on_data_errors: input.fail_on_data_errors,
        ..ProtocolOptions::default()
    };
    let mut state = AdsState::with_options(node, options);
    let mut model = Model {
        connected: false,
        node_sent: false,
        subscribed: BTreeMap::new(),
        fail_on_data_errors: input.fail_on_data_errors,
    };
    let mut now = Instant::now();
    for op in input.ops.into_iter().take(64) {
        match op {
            Op::Subscribe(ty, name) => {
                let (ty, name) = (ty.ty(), mesh_fuzz::name(name));
                let new = model
                    .subscribed
                    .entry(ty)
                    .or_default()
                    .insert(name.to_string());
                let reqs = state.subscribe_delta(ty, name, now);
                assert_eq!(reqs.len(), usize::from(new && model.connected));
                for r in &reqs {
                    model.request(r, ty);
                    assert_eq!(r.resource_names_subscribe, [name]);
                    assert!(r.resource_names_unsubscribe.is_empty());
                    assert!(r.response_nonce.is_empty(), "a subscription is no ACK");
                    assert!(r.error_detail.is_none());
                }
            }
            Op::Unsubscribe(ty, name) => {
                let (ty, name) = (ty.ty(), mesh_fuzz::name(name));
                let was = model
                    .subscribed
                    .get_mut(&ty)
                    .is_some_and(|n| n.remove(name));
                let reqs = state.unsubscribe_delta(ty, name);
                assert_eq!(reqs.len(), usize::from(was && model.connected));
                for r in &reqs {
                    model.request(r, ty);
                    assert_eq!(r.resource_names_unsubscribe, [name]);
                    assert!(r.resource_names_subscribe.is_empty());
                    assert!(r.response_nonce.is_empty());
                }
            }
            Op::Connect => {
                if model.connected {
                    state.on_disconnected();
                }
                model.connected = true;
                model.node_sent = false;
                let reqs = state.on_connected_delta(now);
                let types: Vec<ResourceType> = model
                    .subscribed
                    .iter()
                    .filter(|(_, names)| !names.is_empty())
                    .map(|(ty, _)| *ty)
                    .collect();
                assert_eq!(reqs.len(), types.len(), "one request per subscribed type");
                for (r, ty) in reqs.iter().zip(types) {
                    model.request(r, ty);
                    assert!(r.response_nonce.is_empty(), "no nonce on a new stream");
                    assert_eq!(r.resource_names_subscribe, model.names(ty));
                    for (name, version) in &r.initial_resource_versions {
                        assert!(
                            model.subscribed[&ty].contains(name),
                            "initial version of {name:?}, which is not subscribed"
                        );
                        assert!(!version.is_empty());
                    }
                }
            }
            Op::Disconnect => {
                state.on_disconnected();
                model.connected = false;
                assert_eq!(
                    state.next_timer_deadline(),
                    None,
                    "timers stop with the stream"
                );
            }
            Op::Advance(secs) => {
                now += Duration::from_secs(u64::from(secs));
                let events = state.poll_timers(now);
                if !model.connected {
                    assert!(events.is_empty(), "timer fired while disconnected");
                }
                for e in &events {
                    assert!(matches!(
                        e.kind,
                        ResourceEventKind::DoesNotExist | ResourceEventKind::TimedOut(_)
                    ));
                    assert!(
                        model
                            .subscribed
                            .get(&e.ty)
                            .is_some_and(|n| n.contains(&e.name))
                    );
                }
                if let Some(d) = state.next_timer_deadline() {
                    assert!(d > now, "a due timer was not fired");
                }
            }
            Op::Response {
                type_url,
                nonce,
                resources,
                removed,
                errors,
            } => {
                let resp = DeltaDiscoveryResponse {
                    system_version_info: "sys".into(),
                    resources: resources.iter().take(8).map(Res::wrapper).collect(),
                    type_url: match type_url {
                        TypeUrl::Known(ty) => ty.ty().type_url().into(),
                        TypeUrl::Other(url) => url,
                    },
                    removed_resources: removed
                        .iter()
                        .take(8)
                        .map(|n| mesh_fuzz::name(*n).to_string())
                        .collect(),
                    nonce: format!("n{nonce}"),
                    resource_errors: errors
                        .iter()
                        .take(8)
                        .map(|&(name, code, named, with_status)| {
                            mesh_fuzz::resource_error(name, code, named, with_status)
                        })
                        .collect(),
                    ..Default::default()
                };
                respond(&mut state, &mut model, resp, now);
            }
            Op::Encoded(bytes) => {
                if let Ok(resp) = DeltaDiscoveryResponse::decode(bytes.as_slice()) {
                    respond(&mut state, &mut model, resp, now);
                }
            }
        }
        assert_eq!(state.is_connected(), model.connected);
        for ty in ResourceType::ALL {
            assert_eq!(state.subscribed(ty), model.names(ty));
        }
    }
});

fn respond(state: &mut AdsState, model: &mut Model, resp: DeltaDiscoveryResponse, now: Instant) {
    // The transport delivers responses only on a live stream.
    if !model.connected {
        return;
    }
    let ty = ResourceType::from_type_url(&resp.type_url);
    let nonce = resp.nonce.clone();
    let server_errors = mesh_fuzz::usable_resource_errors(&resp.resource_errors);
    let no_resources = resp.resources.is_empty();
    let outcome = state.on_delta_response(resp, now);
    // A type never subscribed is dropped; so is an unknown type.
    let Some(ty) = ty.filter(|ty| model.subscribed.contains_key(ty)) else {
        assert!(outcome.requests.is_empty() && outcome.updates.is_empty());
        return;
    };
    let [req] = outcome.requests.as_slice() else {
        panic!("{} requests for one response", outcome.requests.len());
    };
    model.request(req, ty);
    assert_eq!(
        req.response_nonce, nonce,
        "the request answers the response's nonce"
    );
    assert!(
        req.resource_names_subscribe.is_empty() && req.resource_names_unsubscribe.is_empty(),
        "an ACK or NACK changes no subscription"
    );
    assert!(req.initial_resource_versions.is_empty());
    if let Some(status) = &req.error_detail {
        assert_eq!(status.code, 3, "NACKs are INVALID_ARGUMENT");
        assert!(!status.message.is_empty(), "a NACK says why");
        assert!(!no_resources, "resource_errors alone never NACK");
    }
    mesh_fuzz::check_events(
        ty,
        &outcome.updates,
        model.subscribed.get(&ty),
        req.error_detail.is_some(),
        &server_errors,
        model.fail_on_data_errors,
    );
}
