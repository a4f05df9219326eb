//! The state of one delta xDS stream (`DeltaAggregatedResources`, Envoy's incremental xDS
//! protocol), free of I/O: it consumes `DeltaDiscoveryRequest`s and snapshot changes and
//! says what to send. It serves the same snapshot as the state-of-the-world stream.
//!
//! Per type URL it tracks the subscription (names, or the wildcard: `*`, or the legacy empty
//! first request for LDS/CDS) and, per resource, the version the client holds: what this
//! stream sent it, or what it said it held in `initial_resource_versions` when it
//! (re)connected. So
//! - a response carries only resources whose version differs from the client's, and
//!   `removed_resources` for resources the client holds that are gone (or no longer
//!   wildcard-subscribed); nothing is sent when nothing differs;
//! - a reconnecting client that already holds the current versions gets nothing resent;
//! - an unsubscribed resource is forgotten, so subscribing it again sends it again;
//! - an ACK or a NACK is answered with nothing (a NACKed update is not resent: the client
//!   keeps its previous value and the server its record of what it sent);
//! - a subscribed name with an error set ([`crate::ControlPlane::set_resource_error`]) is
//!   neither sent nor removed: a response carries the error in `resource_errors` (xRFC TP3)
//!   whenever the errors for the subscribed names change, and the resource is sent again
//!   once the error is cleared.
//!
//! Resource versions are a hash of the serialized resource, so they are stable across
//! snapshots and control-plane restarts for unchanged resources.

use std::collections::{BTreeMap, BTreeSet};

use xds_proto::envoy::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
use xds_proto::type_url;

use crate::stream::Resources;

/// What one delta request turned out to be, for the log.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DeltaEvent {
    /// The first request of this type on the stream.
    Subscribed,
    /// A later request changing the subscription (no nonce).
    SubscriptionChanged,
    /// The client accepted the response with this nonce.
    Ack,
    /// The client rejected the response with this nonce, with this message.
    Nack(String),
    /// The request is unusable (no type URL).
    Ignored(&'static str),
}

/// The result of handling one delta request.
#[derive(Debug)]
pub(crate) struct DeltaHandled {
    pub(crate) event: DeltaEvent,
    pub(crate) response: Option<DeltaDiscoveryResponse>,
}

#[derive(Debug, Default)]
struct TypeState {
    wildcard: bool,
    names: BTreeSet<String>,
    /// Name → version the client holds.
    known: BTreeMap<String, String>,
    /// The `resource_errors` last sent.
    sent_errors: Vec<xds_proto::envoy::envoy::service::discovery::v3::ResourceError>,
}

impl TypeState {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// Protocol state of one delta stream.
#[derive(Debug, Default)]
pub(crate) struct DeltaStreamState {
    types: BTreeMap<String, TypeState>,
    responses: u64,
}

impl DeltaStreamState {
    /// Handles a request against the current resources.
    pub(crate) fn on_request(
        &mut self,
        req: &DeltaDiscoveryRequest,
        res: &Resources,
    ) -> DeltaHandled {
        if req.type_url.is_empty() {
            return DeltaHandled {
                event: DeltaEvent::Ignored("no type_url"),
                response: None,
            };
        }
        let first = !self.types.contains_key(&req.type_url);
        let state = self.types.entry(req.type_url.clone()).or_default();
        if first {
            // Legacy wildcard: a first request naming nothing, for the types no parent names.
            state.wildcard = req.resource_names_subscribe.is_empty()
                && (req.type_url == type_url::LISTENER || req.type_url == type_url::CLUSTER);
            state.known = req
                .initial_resource_versions
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
        }
        for name in &req.resource_names_subscribe {
            if name == "*" {
                state.wildcard = true;
            } else {
                state.names.insert(name.clone());
            }
        }
        for name in &req.resource_names_unsubscribe {
            if name == "*" {
                state.wildcard = false;
            } else {
                state.names.remove(name);
                state.known.remove(name);
            }
        }
        let changed =
            !req.resource_names_subscribe.is_empty() || !req.resource_names_unsubscribe.is_empty();
        let event = match (&req.error_detail, req.response_nonce.is_empty()) {
            _ if first => DeltaEvent::Subscribed,
            (Some(status), false) => DeltaEvent::Nack(status.message.clone()),
            (None, false) => DeltaEvent::Ack,
            (_, true) => DeltaEvent::SubscriptionChanged,
        };
        let response = if first || changed {
            self.respond(&req.type_url, res)
        } else {
            None
        };
        DeltaHandled { event, response }
    }

    /// The responses owed after the resources changed: one per type with something the
    /// client does not hold yet or holds and should not (CDS, EDS, LDS, RDS order).
    pub(crate) fn on_change(&mut self, res: &Resources) -> Vec<DeltaDiscoveryResponse> {
        let type_urls: Vec<String> = self.types.keys().cloned().collect();
        type_urls
            .iter()
            .filter_map(|type_url| self.respond(type_url, res))
            .collect()
    }

    /// The response bringing the client's view of one type up to date, if it is not.
    fn respond(&mut self, type_url: &str, res: &Resources) -> Option<DeltaDiscoveryResponse> {
        let state = self.types.get_mut(type_url)?;
        let current: BTreeMap<&str, &xds_proto::protobuf::Any> = res
            .by_type
            .get(type_url)
            .into_iter()
            .flatten()
            .filter(|(name, _)| state.wants(name))
            .map(|(name, any)| (name.as_str(), any))
            .collect();
        let resource_errors = res.errors_for(type_url, |n| state.wants(n));
        let errors_changed = resource_errors != state.sent_errors;
        state.sent_errors = resource_errors.clone();
        let mut resources = Vec::new();
        for (name, any) in &current {
            if res.error(type_url, name).is_some() {
                // Withheld; forgotten, so that it is sent again once the error is cleared.
                state.known.remove(*name);
                continue;
            }
            let version = resource_version(any);
            if state.known.get(*name) != Some(&version) {
                state.known.insert(name.to_string(), version.clone());
                resources.push(Resource {
                    name: name.to_string(),
                    version,
                    resource: Some((*any).clone()),
                    ..Default::default()
                });
            }
        }
        let removed: Vec<String> = state
            .known
            .keys()
            .filter(|name| {
                !current.contains_key(name.as_str()) && res.error(type_url, name).is_none()
            })
            .cloned()
            .collect();
        for name in &removed {
            state.known.remove(name);
        }
        if resources.is_empty() && removed.is_empty() && !errors_changed {
            return None;
        }
        self.responses += 1;
        Some(DeltaDiscoveryResponse {
            system_version_info: res.version.to_string(),
            resources,
            type_url: type_url.to_string(),
            removed_resources: removed,
            nonce: self.responses.to_string(),
            resource_errors,
            ..Default::default()
        })
    }
}

/// The version of a resource: a hash (64-bit FNV-1a, hex) of its type URL and bytes, equal
/// for equal resources in any snapshot and any process.
pub(crate) fn resource_version(any: &xds_proto::protobuf::Any) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in any
        .type_url
        .as_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(any.value.iter())
    {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_proto::envoy::google::rpc::Status;
    use xds_proto::protobuf::Any;

    fn any(t: &str, body: &str) -> Any {
        Any {
            type_url: t.to_string(),
            value: body.as_bytes().to_vec(),
        }
    }

    /// Resources with `version`, listeners and routes given as `name` or `name=body`.
    fn res(version: u64, listeners: &[&str], routes: &[&str]) -> Resources {
        let list = |t: &str, items: &[&str]| {
            items
                .iter()
                .map(|item| {
                    let (name, body) = item.split_once('=').unwrap_or((item, item));
                    (name.to_string(), any(t, body))
                })
                .collect::<Vec<_>>()
        };
        let mut by_type = BTreeMap::new();
        by_type.insert(
            type_url::LISTENER.to_string(),
            list(type_url::LISTENER, listeners),
        );
        by_type.insert(
            type_url::ROUTE_CONFIGURATION.to_string(),
            list(type_url::ROUTE_CONFIGURATION, routes),
        );
        Resources {
            version,
            by_type,
            errors: BTreeMap::new(),
        }
    }

    fn req(type_url: &str, subscribe: &[&str], unsubscribe: &[&str]) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
            resource_names_unsubscribe: unsubscribe.iter().map(|n| n.to_string()).collect(),
            ..Default::default()
        }
    }

    fn ack(type_url: &str, nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: type_url.to_string(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        }
    }

    fn names(resp: &DeltaDiscoveryResponse) -> Vec<&str> {
        resp.resources.iter().map(|r| r.name.as_str()).collect()
    }

    const RDS: &str = type_url::ROUTE_CONFIGURATION;
    const LDS: &str = type_url::LISTENER;

    #[test]
    fn subscribe_ack_change_sends_only_what_changed() {
        let mut s = DeltaStreamState::default();
        let r1 = res(1, &[], &["a", "b", "c"]);
        let h = s.on_request(&req(RDS, &["a", "b"], &[]), &r1);
        assert_eq!(h.event, DeltaEvent::Subscribed);
        let resp = h.response.unwrap();
        assert_eq!(names(&resp), ["a", "b"]);
        assert_eq!(resp.system_version_info, "1");
        assert_eq!(resp.resources[0].version, resource_version(&any(RDS, "a")));
        let h = s.on_request(&ack(RDS, &resp.nonce), &r1);
        assert_eq!(h.event, DeltaEvent::Ack);
        assert!(h.response.is_none());
        // Same content under a new version: nothing owed.
        assert!(s.on_change(&res(2, &[], &["a", "b", "c"])).is_empty());
        // b changes, c (not subscribed) changes: only b.
        let pushed = s.on_change(&res(3, &[], &["a", "b=b2", "c=c2"]));
        assert_eq!(pushed.len(), 1);
        assert_eq!(names(&pushed[0]), ["b"]);
        assert!(pushed[0].removed_resources.is_empty());
        assert_ne!(pushed[0].nonce, resp.nonce);
        // a is removed.
        let pushed = s.on_change(&res(4, &[], &["b=b2"]));
        assert_eq!(pushed.len(), 1);
        assert!(pushed[0].resources.is_empty());
        assert_eq!(pushed[0].removed_resources, ["a"]);
        // a comes back.
        let pushed = s.on_change(&res(5, &[], &["a", "b=b2"]));
        assert_eq!(names(&pushed[0]), ["a"]);
    }

    #[test]
    fn subscription_changes_send_only_the_new_names() {
        let mut s = DeltaStreamState::default();
        let r = res(1, &[], &["a", "b"]);
        s.on_request(&req(RDS, &["a"], &[]), &r);
        let h = s.on_request(&req(RDS, &["b"], &[]), &r);
        assert_eq!(h.event, DeltaEvent::SubscriptionChanged);
        assert_eq!(names(&h.response.unwrap()), ["b"]);
        let h = s.on_request(&req(RDS, &[], &["a"]), &r);
        assert!(h.response.is_none(), "unsubscribing sends nothing");
        // Subscribing again sends it again: it was forgotten.
        let h = s.on_request(&req(RDS, &["a"], &[]), &r);
        assert_eq!(names(&h.response.unwrap()), ["a"]);
        // A name that does not exist: nothing to send.
        let h = s.on_request(&req(RDS, &["zz"], &[]), &r);
        assert!(h.response.is_none());
    }

    #[test]
    fn initial_resource_versions_are_not_resent() {
        let mut s = DeltaStreamState::default();
        let r = res(7, &[], &["a", "b=b2", "c"]);
        let mut first = req(RDS, &["a", "b", "c", "gone"], &[]);
        first.initial_resource_versions = [
            ("a".to_string(), resource_version(&any(RDS, "a"))),
            ("b".to_string(), resource_version(&any(RDS, "b-old"))),
            ("gone".to_string(), "x".to_string()),
        ]
        .into_iter()
        .collect();
        let resp = s.on_request(&first, &r).response.unwrap();
        assert_eq!(names(&resp), ["b", "c"], "a is up to date");
        assert_eq!(resp.removed_resources, ["gone"]);
        // All up to date: a reconnect sends nothing at all.
        let mut s = DeltaStreamState::default();
        let mut first = req(RDS, &["a"], &[]);
        first.initial_resource_versions = [("a".to_string(), resource_version(&any(RDS, "a")))]
            .into_iter()
            .collect();
        assert!(s.on_request(&first, &r).response.is_none());
    }

    #[test]
    fn wildcard_lds() {
        let mut s = DeltaStreamState::default();
        let resp = s
            .on_request(&req(LDS, &[], &[]), &res(1, &["l1", "l2"], &[]))
            .response
            .unwrap();
        assert_eq!(names(&resp), ["l1", "l2"]);
        let pushed = s.on_change(&res(2, &["l2", "l3"], &[]));
        assert_eq!(names(&pushed[0]), ["l3"]);
        assert_eq!(pushed[0].removed_resources, ["l1"]);
        // An empty first RDS request is not a wildcard; `*` is.
        let mut s = DeltaStreamState::default();
        assert!(
            s.on_request(&req(RDS, &[], &[]), &res(1, &[], &["r"]))
                .response
                .is_none()
        );
        let resp = s
            .on_request(&req(RDS, &["*"], &[]), &res(1, &[], &["r"]))
            .response
            .unwrap();
        assert_eq!(names(&resp), ["r"]);
    }

    #[test]
    fn nack_is_not_answered_and_not_resent() {
        let mut s = DeltaStreamState::default();
        let r = res(1, &[], &["a"]);
        let resp = s.on_request(&req(RDS, &["a"], &[]), &r).response.unwrap();
        let mut nack = ack(RDS, &resp.nonce);
        nack.error_detail = Some(Status {
            code: 3,
            message: "bad route".into(),
            details: vec![],
        });
        let h = s.on_request(&nack, &r);
        assert_eq!(h.event, DeltaEvent::Nack("bad route".into()));
        assert!(h.response.is_none());
        assert!(s.on_change(&res(2, &[], &["a"])).is_empty());
    }

    #[test]
    fn request_without_type_is_ignored() {
        let mut s = DeltaStreamState::default();
        let h = s.on_request(&req("", &["a"], &[]), &res(1, &[], &[]));
        assert!(matches!(h.event, DeltaEvent::Ignored(_)));
        assert!(h.response.is_none());
    }

    #[test]
    fn versions_are_stable_and_content_addressed() {
        let a = any(RDS, "a");
        assert_eq!(resource_version(&a), resource_version(&a.clone()));
        assert_ne!(resource_version(&a), resource_version(&any(RDS, "b")));
        assert_ne!(resource_version(&a), resource_version(&any(LDS, "a")));
        assert_eq!(resource_version(&a).len(), 16);
    }

    /// xRFC TP3 on a delta stream: the error is sent once per change, the resource is
    /// neither sent nor removed while it stands, and is sent again when it is cleared.
    #[test]
    fn resource_errors_on_a_delta_stream() {
        let errored = |version: u64, code: i32| {
            let mut r = res(version, &[], &["a", "b"]);
            r.errors.entry(RDS.to_string()).or_default().insert(
                "a".to_string(),
                Status {
                    code,
                    message: "denied".into(),
                    details: vec![],
                },
            );
            r
        };
        let mut s = DeltaStreamState::default();
        let r1 = res(1, &[], &["a", "b"]);
        let resp = s
            .on_request(&req(RDS, &["a", "b"], &[]), &r1)
            .response
            .unwrap();
        assert_eq!(names(&resp), ["a", "b"]);
        // a gets an error: one response with the error, no removal.
        let pushed = s.on_change(&errored(2, 7));
        assert_eq!(pushed.len(), 1);
        assert!(pushed[0].resources.is_empty());
        assert!(pushed[0].removed_resources.is_empty());
        assert_eq!(pushed[0].resource_errors.len(), 1);
        assert_eq!(
            pushed[0].resource_errors[0]
                .resource_name
                .as_ref()
                .unwrap()
                .name,
            "a"
        );
        // Unchanged: nothing. Another code: sent again.
        assert!(s.on_change(&errored(3, 7)).is_empty());
        assert_eq!(s.on_change(&errored(4, 14)).len(), 1);
        // Cleared: a is sent again.
        let pushed = s.on_change(&res(5, &[], &["a", "b"]));
        assert_eq!(names(&pushed[0]), ["a"]);
        assert!(pushed[0].resource_errors.is_empty());
    }
}
