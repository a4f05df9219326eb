//! Fuzz target: the RBAC engine (gRFC A41). An RBAC filter config, decoded from the input
//! (merged into a template using every kind of permission and principal, or whole), is
//! validated with `validate_rbac` and, when accepted, evaluated against an arbitrary request
//! (path, method, authority, headers, addresses, TLS peer, SNI). Checked: no panic; the
//! decision follows the action (ALLOW: allowed iff a policy matched; DENY: iff none did);
//! the reported policy exists and matches; evaluation is deterministic; `not_rule` negates.
#![no_main]

use std::net::SocketAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mesh_client::config::{
    PeerCertInfo, PeerSecurity, Permission, Principal, RbacAction, RbacRules, RequestInfo,
};
use mesh_client::xds::resource::rbac::{
    RbacPerRouteProto, RbacProto, validate_rbac, validate_rbac_per_route,
};
use prost::Message;

#[derive(Arbitrary, Debug)]
enum Security {
    Plaintext,
    TlsWithoutCert,
    Tls {
        uri_sans: Vec<String>,
        dns_sans: Vec<String>,
        subject: String,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    whole: bool,
    path: String,
    method: String,
    authority: Option<String>,
    headers: Vec<(String, String)>,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    security: Security,
    sni: Option<String>,
    /// The protobuf bytes: the RBAC config (or its tail).
    proto: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let proto = if input.whole {
        RbacProto::decode(input.proto.as_slice())
    } else {
        mesh_fuzz::merged(&mesh_fuzz::rbac(), &input.proto)
    };
    if let Ok(per_route) = RbacPerRouteProto::decode(input.proto.as_slice()) {
        let _ = validate_rbac_per_route(&per_route);
    }
    let Ok(proto) = proto else {
        return;
    };
    let Ok(rbac) = validate_rbac(&proto) else {
        return;
    };

    let mut headers = http::HeaderMap::new();
    for (name, value) in input.headers.iter().take(16) {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    let cert;
    let security = match &input.security {
        Security::Plaintext => PeerSecurity::Plaintext,
        Security::TlsWithoutCert => PeerSecurity::Tls(None),
        Security::Tls {
            uri_sans,
            dns_sans,
            subject,
        } => {
            cert = PeerCertInfo {
                uri_sans: uri_sans.clone(),
                dns_sans: dns_sans.clone(),
                subject: subject.clone(),
            };
            PeerSecurity::Tls(Some(&cert))
        }
    };
    let req = RequestInfo {
        path: &input.path,
        method: &input.method,
        authority: input.authority.as_deref(),
        headers: &headers,
        peer_addr: input.peer,
        local_addr: input.local,
        security,
        requested_server_name: input.sni.as_deref(),
    };

    let decision = rbac.evaluate(&req);
    assert_eq!(decision, rbac.evaluate(&req), "evaluation is deterministic");
    match &rbac.rules {
        None => assert!(decision.allowed && decision.matched_policy.is_none()),
        Some(rules) => {
            check_rules(rules, decision.allowed, decision.matched_policy, &req);
        }
    }
    match (&rbac.shadow, &decision.shadow) {
        (None, None) => {}
        (Some(rules), Some(shadow)) => {
            check_rules(rules, shadow.allowed, shadow.matched_policy, &req)
        }
        _ => panic!("shadow decision present iff shadow rules are"),
    }
});

fn check_rules(rules: &RbacRules, allowed: bool, matched: Option<&str>, req: &RequestInfo<'_>) {
    match rules.action {
        RbacAction::Allow => assert_eq!(allowed, matched.is_some()),
        RbacAction::Deny => assert_eq!(allowed, matched.is_none()),
        RbacAction::Log => assert!(allowed),
    }
    // The reported policy is the first (by name) that matches.
    let first = rules.policies.iter().find(|(_, p)| p.matches(req));
    assert_eq!(first.map(|(n, _)| n.as_str()), matched);
    assert!(
        rules.policies.windows(2).all(|w| w[0].0 <= w[1].0),
        "policies sorted by name"
    );
    for (_, policy) in &rules.policies {
        for p in &policy.permissions {
            assert_eq!(
                Permission::Not(Box::new(p.clone())).matches(req),
                !p.matches(req)
            );
        }
        for p in &policy.principals {
            assert_eq!(
                Principal::Not(Box::new(p.clone())).matches(req),
                !p.matches(req)
            );
        }
    }
}
