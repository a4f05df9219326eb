//! The state of one ADS stream, state of the world (xDS protocol, gRFC A27), free of I/O:
//! it consumes `DiscoveryRequest`s and snapshot changes and says what to send.
//!
//! Per type URL it tracks the subscribed names (an empty list for LDS/CDS, or `*`, is a
//! wildcard), the nonce of the last response and the resources last sent, so that
//! - the first request of a type, and any change of its subscription, is answered;
//! - an ACK (current nonce, no `error_detail`) and a NACK (current nonce, `error_detail`)
//!   are answered with nothing (a NACKed update is not resent);
//! - a request carrying an older nonce is stale and ignored;
//! - a snapshot change resends a type only when what the stream would receive differs from
//!   what it was last sent;
//! - a subscribed name with an error set ([`crate::ControlPlane::set_resource_error`]) is
//!   not sent; every response of its type carries the error in `resource_errors` instead
//!   (xRFC TP3), until the error is cleared.

use std::collections::{BTreeMap, BTreeSet};

use xds_proto::envoy::envoy::service::discovery::v3::{
    DiscoveryRequest, DiscoveryResponse, ResourceError, ResourceName,
};
use xds_proto::envoy::google::rpc::Status;
use xds_proto::protobuf::Any;
use xds_proto::type_url;

/// The resources a control plane serves: a global version and resources by type URL.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Resources {
    /// Bumped on every change; sent as `version_info`.
    pub(crate) version: u64,
    /// `(name, resource)` by type URL.
    pub(crate) by_type: BTreeMap<String, Vec<(String, Any)>>,
    /// Per type URL, the names the server reports an error for (xRFC TP3) instead of
    /// sending them, with the error.
    pub(crate) errors: BTreeMap<String, BTreeMap<String, Status>>,
}

impl Resources {
    /// The error set for a name of a type, if any.
    pub(crate) fn error(&self, type_url: &str, name: &str) -> Option<&Status> {
        self.errors.get(type_url).and_then(|e| e.get(name))
    }

    /// The `resource_errors` for the names of a type that `wants` selects, in name order.
    pub(crate) fn errors_for(
        &self,
        type_url: &str,
        wants: impl Fn(&str) -> bool,
    ) -> Vec<ResourceError> {
        self.errors
            .get(type_url)
            .into_iter()
            .flatten()
            .filter(|(name, _)| wants(name))
            .map(|(name, status)| ResourceError {
                resource_name: Some(ResourceName {
                    name: name.clone(),
                    ..Default::default()
                }),
                error_detail: Some(status.clone()),
            })
            .collect()
    }
}

/// Which resources of one type a stream wants.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subscription {
    /// All of them.
    Wildcard,
    /// These names.
    Names(BTreeSet<String>),
}

impl Subscription {
    fn from_request(type_url: &str, names: &[String]) -> Subscription {
        // Legacy wildcard: an empty list means "all" only for the types that have no parent
        // resource naming them (LDS and CDS).
        let legacy =
            names.is_empty() && (type_url == type_url::LISTENER || type_url == type_url::CLUSTER);
        if legacy || names.iter().any(|n| n == "*") {
            Subscription::Wildcard
        } else {
            Subscription::Names(names.iter().cloned().collect())
        }
    }

    fn wants(&self, name: &str) -> bool {
        match self {
            Subscription::Wildcard => true,
            Subscription::Names(names) => names.contains(name),
        }
    }
}

#[derive(Debug)]
struct TypeState {
    subscription: Subscription,
    nonce: String,
    sent: Vec<Any>,
    /// The `resource_errors` last sent.
    sent_errors: Vec<ResourceError>,
}

/// What a request turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The first request of this type on the stream.
    Subscribed,
    /// The subscribed names changed.
    SubscriptionChanged,
    /// The client accepted the last response.
    Ack,
    /// The client rejected the last response with this message.
    Nack(String),
    /// The request answers an older response; ignored.
    Stale,
    /// The request is unusable (no type URL).
    Ignored(&'static str),
}

/// The result of handling one request.
#[derive(Debug)]
pub(crate) struct Handled {
    pub(crate) event: Event,
    pub(crate) response: Option<DiscoveryResponse>,
}

/// Protocol state of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    types: BTreeMap<String, TypeState>,
    responses: u64,
}

impl StreamState {
    /// Handles a request against the current resources.
    pub(crate) fn on_request(&mut self, req: &DiscoveryRequest, res: &Resources) -> Handled {
        if req.type_url.is_empty() {
            return Handled {
                event: Event::Ignored("no type_url"),
                response: None,
            };
        }
        let wanted = Subscription::from_request(&req.type_url, &req.resource_names);
        let event = match self.types.get_mut(&req.type_url) {
            None => {
                self.types.insert(
                    req.type_url.clone(),
                    TypeState {
                        subscription: wanted,
                        nonce: String::new(),
                        sent: Vec::new(),
                        sent_errors: Vec::new(),
                    },
                );
                Event::Subscribed
            }
            Some(state) => {
                if !req.response_nonce.is_empty() && req.response_nonce != state.nonce {
                    return Handled {
                        event: Event::Stale,
                        response: None,
                    };
                }
                let changed = state.subscription != wanted;
                state.subscription = wanted;
                match &req.error_detail {
                    _ if changed || req.response_nonce.is_empty() => Event::SubscriptionChanged,
                    Some(status) => Event::Nack(status.message.clone()),
                    None => Event::Ack,
                }
            }
        };
        let response = match event {
            Event::Subscribed | Event::SubscriptionChanged => self.respond(&req.type_url, res),
            _ => None,
        };
        Handled { event, response }
    }

    /// The responses owed after the resources changed, one per type whose content for this
    /// stream differs from what it was last sent (CDS, EDS, LDS, RDS order).
    pub(crate) fn on_change(&mut self, res: &Resources) -> Vec<DiscoveryResponse> {
        let owed: Vec<String> = self
            .types
            .iter()
            .filter(|(type_url, state)| {
                selected(&state.subscription, type_url, res) != state.sent
                    || res.errors_for(type_url, |n| state.subscription.wants(n))
                        != state.sent_errors
            })
            .map(|(type_url, _)| type_url.clone())
            .collect();
        owed.iter()
            .filter_map(|type_url| self.respond(type_url, res))
            .collect()
    }

    fn respond(&mut self, type_url: &str, res: &Resources) -> Option<DiscoveryResponse> {
        let state = self.types.get_mut(type_url)?;
        self.responses += 1;
        let nonce = self.responses.to_string();
        let resources = selected(&state.subscription, type_url, res);
        let resource_errors = res.errors_for(type_url, |n| state.subscription.wants(n));
        state.nonce = nonce.clone();
        state.sent = resources.clone();
        state.sent_errors = resource_errors.clone();
        Some(DiscoveryResponse {
            version_info: res.version.to_string(),
            resources,
            type_url: type_url.to_string(),
            nonce,
            resource_errors,
            ..Default::default()
        })
    }
}

fn selected(subscription: &Subscription, type_url: &str, res: &Resources) -> Vec<Any> {
    res.by_type
        .get(type_url)
        .into_iter()
        .flatten()
        .filter(|(name, _)| subscription.wants(name) && res.error(type_url, name).is_none())
        .map(|(_, any)| any.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(version: u64, listeners: &[&str], routes: &[&str]) -> Resources {
        let any = |t: &str, n: &str| {
            (
                n.to_string(),
                Any {
                    type_url: t.to_string(),
                    value: n.as_bytes().to_vec(),
                },
            )
        };
        let mut by_type = BTreeMap::new();
        by_type.insert(
            type_url::LISTENER.to_string(),
            listeners
                .iter()
                .map(|n| any(type_url::LISTENER, n))
                .collect(),
        );
        by_type.insert(
            type_url::ROUTE_CONFIGURATION.to_string(),
            routes
                .iter()
                .map(|n| any(type_url::ROUTE_CONFIGURATION, n))
                .collect(),
        );
        Resources {
            version,
            by_type,
            errors: BTreeMap::new(),
        }
    }

    fn req(type_url: &str, names: &[&str], nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names: names.iter().map(|n| n.to_string()).collect(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn wildcard_lds_then_ack_then_change() {
        let mut s = StreamState::default();
        let r1 = res(1, &["a:1", "b:2"], &[]);
        let h = s.on_request(&req(type_url::LISTENER, &[], ""), &r1);
        assert_eq!(h.event, Event::Subscribed);
        let resp = h.response.unwrap();
        assert_eq!(resp.resources.len(), 2);
        assert_eq!(resp.version_info, "1");
        let ack = s.on_request(&req(type_url::LISTENER, &[], &resp.nonce), &r1);
        assert_eq!(ack.event, Event::Ack);
        assert!(ack.response.is_none());
        // Same content under a new version: nothing owed.
        assert!(s.on_change(&res(2, &["a:1", "b:2"], &[])).is_empty());
        let pushed = s.on_change(&res(3, &["a:1"], &[]));
        assert_eq!(pushed.len(), 1);
        assert_eq!(pushed[0].version_info, "3");
        assert_ne!(pushed[0].nonce, resp.nonce);
    }

    #[test]
    fn rds_by_name_nack_and_stale() {
        let mut s = StreamState::default();
        let r = res(1, &[], &["r1", "r2"]);
        let h = s.on_request(&req(type_url::ROUTE_CONFIGURATION, &["r2"], ""), &r);
        let resp = h.response.unwrap();
        assert_eq!(resp.resources.len(), 1);
        assert_eq!(resp.resources[0].value, b"r2");
        let mut nack = req(type_url::ROUTE_CONFIGURATION, &["r2"], &resp.nonce);
        nack.error_detail = Some(Status {
            code: 3,
            message: "bad route".into(),
            details: vec![],
        });
        let h = s.on_request(&nack, &r);
        assert_eq!(h.event, Event::Nack("bad route".into()));
        assert!(h.response.is_none());
        let stale = s.on_request(&req(type_url::ROUTE_CONFIGURATION, &["r1"], "old"), &r);
        assert_eq!(stale.event, Event::Stale);
        let changed = s.on_request(
            &req(type_url::ROUTE_CONFIGURATION, &["r1", "r2"], &resp.nonce),
            &r,
        );
        assert_eq!(changed.event, Event::SubscriptionChanged);
        assert_eq!(changed.response.unwrap().resources.len(), 2);
    }

    #[test]
    fn empty_rds_names_are_not_a_wildcard() {
        let mut s = StreamState::default();
        let r = res(1, &[], &["r1"]);
        let h = s.on_request(&req(type_url::ROUTE_CONFIGURATION, &[], ""), &r);
        assert!(h.response.unwrap().resources.is_empty());
        let h = s.on_request(&req(type_url::ROUTE_CONFIGURATION, &["*"], "1"), &r);
        assert_eq!(h.response.unwrap().resources.len(), 1);
    }

    #[test]
    fn request_without_type_is_ignored() {
        let mut s = StreamState::default();
        let h = s.on_request(&req("", &[], ""), &res(1, &[], &[]));
        assert!(matches!(h.event, Event::Ignored(_)));
        assert!(h.response.is_none());
    }

    fn with_error(mut r: Resources, type_url: &str, name: &str, code: i32) -> Resources {
        r.errors.entry(type_url.to_string()).or_default().insert(
            name.to_string(),
            Status {
                code,
                message: format!("{name}: code {code}"),
                details: vec![],
            },
        );
        r
    }

    fn error_names(resp: &DiscoveryResponse) -> Vec<&str> {
        resp.resource_errors
            .iter()
            .filter_map(|e| e.resource_name.as_ref().map(|n| n.name.as_str()))
            .collect()
    }

    /// xRFC TP3: a name in error is withheld and its error sent in every response of the
    /// type (subscribed names only); clearing it sends the resource again.
    #[test]
    fn resource_errors_replace_the_resource_until_cleared() {
        let mut s = StreamState::default();
        let r1 = with_error(
            with_error(
                res(1, &[], &["r1", "r2"]),
                type_url::ROUTE_CONFIGURATION,
                "r1",
                7,
            ),
            type_url::ROUTE_CONFIGURATION,
            "other",
            5,
        );
        let resp = s
            .on_request(&req(type_url::ROUTE_CONFIGURATION, &["r1", "r2"], ""), &r1)
            .response
            .unwrap();
        let sent: Vec<&[u8]> = resp.resources.iter().map(|a| a.value.as_slice()).collect();
        assert_eq!(sent, [b"r2".as_slice()]);
        assert_eq!(error_names(&resp), ["r1"]);
        let status = resp.resource_errors[0].error_detail.as_ref().unwrap();
        assert_eq!((status.code, status.message.as_str()), (7, "r1: code 7"));
        // Same state again: nothing owed. r2 changes: the error rides along.
        let r2 = with_error(
            res(2, &[], &["r1", "r2"]),
            type_url::ROUTE_CONFIGURATION,
            "r1",
            7,
        );
        assert!(s.on_change(&r2).is_empty());
        let r3 = with_error(
            res(3, &[], &["r1", "r2=x"]),
            type_url::ROUTE_CONFIGURATION,
            "r1",
            7,
        );
        let pushed = s.on_change(&r3);
        assert_eq!(error_names(&pushed[0]), ["r1"]);
        // Cleared: r1 is sent again, with no error.
        let pushed = s.on_change(&res(4, &[], &["r1", "r2"]));
        assert_eq!(pushed[0].resources.len(), 2);
        assert!(pushed[0].resource_errors.is_empty());
    }
}
