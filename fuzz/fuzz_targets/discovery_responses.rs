//! Fuzz target: sequences of stream events and DiscoveryResponses into the sans-IO ADS
//! core, `xds::protocol::AdsState` (gRFC A27, A46, A53, A57, A88 with xRFC TP3
//! `resource_errors`). Checked against a model:
//! no panic; every response of a subscribed known type gets exactly one request back, an
//! ACK (carrying the response's version) or a NACK (carrying the last ACKed version, code
//! INVALID_ARGUMENT and a message), with the response's nonce and the full subscribed name
//! list; unknown or unsubscribed types get nothing; ACKed versions change only on ACK; the
//! node goes only on the first request of a stream; events name subscribed resources, once;
//! no timer runs while disconnected; a server-reported error event names a usable
//! `resource_errors` entry and discards a value only for NOT_FOUND/PERMISSION_DENIED under
//! `fail_on_data_errors`; a response without resources (whatever its `resource_errors`) is
//! ACKed.
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
    DiscoveryRequest, DiscoveryResponse, Resource as ResourceWrapper,
};
use xds_proto::protobuf::Any;

/// One resource of a response.
#[derive(Arbitrary, Debug)]
enum Res {
    /// A valid template of the type (kind 4: a server Listener), possibly with fields
    /// merged in from `tail`.
    Template { kind: u8, name: u8, tail: Vec<u8> },
    /// The same, wrapped in a discovery `Resource`.
    Wrapped { kind: u8, name: u8 },
    /// Bytes under a known type URL.
    Raw { ty: Ty, bytes: Vec<u8> },
    /// Anything.
    Any { type_url: String, bytes: Vec<u8> },
}

impl Res {
    fn any(&self) -> Any {
        match self {
            Res::Template { kind, name, tail } => {
                mesh_fuzz::template_any(*kind, mesh_fuzz::name(*name), tail)
            }
            Res::Wrapped { kind, name } => xds_proto::any::pack(&ResourceWrapper {
                name: mesh_fuzz::name(*name).into(),
                resource: Some(mesh_fuzz::template_any(*kind, mesh_fuzz::name(*name), &[])),
                ..Default::default()
            }),
            Res::Raw { ty, bytes } => Any {
                type_url: ty.ty().type_url().into(),
                value: bytes.clone(),
            },
            Res::Any { type_url, bytes } => Any {
                type_url: type_url.clone(),
                value: bytes.clone(),
            },
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
        version: u8,
        nonce: u8,
        resources: Vec<Res>,
        /// xRFC TP3 entries: (name, status code, named, with a status).
        errors: Vec<(u8, u8, bool, bool)>,
    },
    /// A whole DiscoveryResponse from bytes.
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
    acked: BTreeMap<ResourceType, String>,
    fail_on_data_errors: bool,
}

impl Model {
    /// Checks a request the core sent for `ty`.
    fn request(&mut self, req: &DiscoveryRequest, ty: ResourceType) {
        assert!(self.connected, "request sent while disconnected");
        assert_eq!(req.type_url, ty.type_url());
        assert_eq!(
            req.node.is_some(),
            !self.node_sent,
            "node only on a stream's first request"
        );
        self.node_sent = true;
        let names: Vec<String> = self
            .subscribed
            .get(&ty)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        assert_eq!(req.resource_names, names, "full subscribed name list");
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
        acked: BTreeMap::new(),
        fail_on_data_errors: input.fail_on_data_errors,
    };
    let start = Instant::now();
    let mut now = start;
    for op in input.ops.into_iter().take(64) {
        match op {
            Op::Subscribe(ty, name) => {
                let (ty, name) = (ty.ty(), mesh_fuzz::name(name));
                let new = model
                    .subscribed
                    .entry(ty)
                    .or_default()
                    .insert(name.to_string());
                let reqs = state.subscribe(ty, name, now);
                assert_eq!(reqs.len(), usize::from(new && model.connected));
                for r in &reqs {
                    model.request(r, ty);
                    assert!(r.error_detail.is_none());
                }
            }
            Op::Unsubscribe(ty, name) => {
                let (ty, name) = (ty.ty(), mesh_fuzz::name(name));
                let was = model
                    .subscribed
                    .get_mut(&ty)
                    .is_some_and(|n| n.remove(name));
                let reqs = state.unsubscribe(ty, name);
                assert_eq!(reqs.len(), usize::from(was && model.connected));
                for r in &reqs {
                    model.request(r, ty);
                }
            }
            Op::Connect => {
                if model.connected {
                    state.on_disconnected();
                }
                model.connected = true;
                model.node_sent = false;
                let reqs = state.on_connected(now);
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
                    let acked = model.acked.get(&ty).cloned().unwrap_or_default();
                    assert_eq!(
                        r.version_info, acked,
                        "resubscribe with the last ACKed version"
                    );
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
                    assert!(matches!(e.kind, ResourceEventKind::DoesNotExist));
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
                version,
                nonce,
                resources,
                errors,
            } => {
                let resp = DiscoveryResponse {
                    version_info: format!("v{version}"),
                    resources: resources.iter().take(8).map(Res::any).collect(),
                    type_url: match type_url {
                        TypeUrl::Known(ty) => ty.ty().type_url().into(),
                        TypeUrl::Other(url) => url,
                    },
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
                if let Ok(resp) = DiscoveryResponse::decode(bytes.as_slice()) {
                    respond(&mut state, &mut model, resp, now);
                }
            }
        }
        assert_eq!(state.is_connected(), model.connected);
        for ty in ResourceType::ALL {
            let names: Vec<String> = model
                .subscribed
                .get(&ty)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            assert_eq!(state.subscribed(ty), names);
        }
    }
});

fn respond(state: &mut AdsState, model: &mut Model, resp: DiscoveryResponse, now: Instant) {
    // The transport delivers responses only on a live stream.
    if !model.connected {
        return;
    }
    let ty = ResourceType::from_type_url(&resp.type_url);
    let version = resp.version_info.clone();
    let nonce = resp.nonce.clone();
    let server_errors = mesh_fuzz::usable_resource_errors(&resp.resource_errors);
    let no_resources = resp.resources.is_empty();
    let outcome = state.on_response(resp, now);
    // A type never subscribed is dropped; so is an unknown type (grpc-go).
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
    let acked = model.acked.entry(ty).or_default();
    match &req.error_detail {
        None => {
            assert_eq!(
                req.version_info, version,
                "an ACK carries the response's version"
            );
            *acked = version.clone();
        }
        Some(status) => {
            assert_eq!(
                &req.version_info, acked,
                "a NACK carries the last ACKed version"
            );
            assert_eq!(status.code, 3, "NACKs are INVALID_ARGUMENT");
            assert!(!status.message.is_empty(), "a NACK says why");
            assert!(!no_resources, "resource_errors alone never NACK");
        }
    }
    for e in &outcome.updates {
        assert_eq!(e.version, version);
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
