//! Translation of a service's [`Authorization`] into the RBAC HTTP filter of its inbound
//! listeners (gRFC A41): the filter config (`rules` + `shadow_rules`) and the per-route
//! overrides (`RBACPerRoute`).
//!
//! Policy shape, the one Istio generates: permissions are one `and_rules` of (an `or_rules` of
//! the methods' `url_path` matchers) and the header matchers, or `any` when the policy sets
//! neither; principals are the `authenticated` SPIFFE IDs, or the `direct_remote_ip` ranges,
//! or an `and_ids` of both (each an `or_ids`) when both are set, or `any` when neither is.
//!
//! Envoy's `config.rbac.v3.RBAC.policies` is a protobuf map, generated as a `HashMap` whose
//! iteration order, hence encoding, differs from one value to the next. Identical input must
//! encode to identical bytes (the snapshot version and "push only the types that changed"
//! compare bytes), so the messages holding that map are encoded through wire-identical
//! mirrors ([`SortedRules`] …) whose map is a `BTreeMap`: policies go out in name order.

use std::collections::BTreeMap;

use prost::Message;
use xds_proto::envoy::envoy::config::core::v3::CidrRange;
use xds_proto::envoy::envoy::config::rbac::v3::{
    Permission, Policy, Principal, permission, principal,
};
use xds_proto::envoy::envoy::r#type::matcher::v3::{
    PathMatcher, StringMatcher, path_matcher, string_matcher::MatchPattern,
};
use xds_proto::protobuf::{Any, UInt32Value};
use xds_proto::type_url;

use crate::model::{Authorization, AuthorizationPolicy, PerRouteAuthorization, RbacAction};
use crate::translate::header_matcher;
use crate::validate::parse_cidr;

/// The name of the RBAC HTTP filter, also the key of its per-route overrides.
pub(crate) const RBAC_FILTER_NAME: &str = "envoy.filters.http.rbac";

/// `envoy.config.rbac.v3.RBAC` with its policies in a `BTreeMap` (same field numbers).
#[derive(Clone, PartialEq, Message)]
struct SortedRules {
    /// `RBAC.Action` (an enum is an int32 on the wire).
    #[prost(int32, tag = "1")]
    action: i32,
    #[prost(btree_map = "string, message", tag = "2")]
    policies: BTreeMap<String, Policy>,
}

/// `envoy.extensions.filters.http.rbac.v3.RBAC` (same field numbers, the fields we set).
#[derive(Clone, PartialEq, Message)]
struct SortedFilter {
    #[prost(message, optional, tag = "1")]
    rules: Option<SortedRules>,
    #[prost(message, optional, tag = "2")]
    shadow_rules: Option<SortedRules>,
}

/// `envoy.extensions.filters.http.rbac.v3.RBACPerRoute` (same field numbers).
#[derive(Clone, PartialEq, Message)]
struct SortedPerRoute {
    #[prost(message, optional, tag = "2")]
    rbac: Option<SortedFilter>,
}

/// The RBAC filter's `typed_config`: `rules` and, when set, `shadow_rules`.
pub(crate) fn rbac_filter_config(authz: &Authorization) -> Result<Any, String> {
    let filter = SortedFilter {
        rules: Some(rules(authz.action, &authz.policies)?),
        shadow_rules: authz
            .shadow
            .as_ref()
            .map(|shadow| rules(shadow.action, &shadow.policies))
            .transpose()?,
    };
    Ok(Any {
        type_url: type_url::RBAC.to_string(),
        value: filter.encode_to_vec(),
    })
}

/// The `RBACPerRoute` of one `per_route` entry; empty (no `rbac`) when it is disabled.
pub(crate) fn rbac_per_route(entry: &PerRouteAuthorization) -> Result<Any, String> {
    let rbac = if entry.disabled {
        None
    } else {
        Some(SortedFilter {
            rules: Some(rules(entry.action.unwrap_or_default(), &entry.policies)?),
            shadow_rules: None,
        })
    };
    Ok(Any {
        type_url: type_url::RBAC_PER_ROUTE.to_string(),
        value: SortedPerRoute { rbac }.encode_to_vec(),
    })
}

fn rules(action: RbacAction, policies: &[AuthorizationPolicy]) -> Result<SortedRules, String> {
    use xds_proto::envoy::envoy::config::rbac::v3::rbac::Action;
    let action = match action {
        RbacAction::Allow => Action::Allow,
        RbacAction::Deny => Action::Deny,
    };
    let policies = policies
        .iter()
        .map(|p| Ok((p.name.clone(), policy(p)?)))
        .collect::<Result<_, String>>()?;
    Ok(SortedRules {
        action: action as i32,
        policies,
    })
}

fn policy(p: &AuthorizationPolicy) -> Result<Policy, String> {
    Ok(Policy {
        permissions: vec![permission(p)],
        principals: principals(p)?,
        ..Default::default()
    })
}

fn permission(p: &AuthorizationPolicy) -> Permission {
    use permission::{Rule, Set};
    let mut all = Vec::new();
    if !p.methods.is_empty() {
        let methods = p
            .methods
            .iter()
            .map(|m| Permission {
                rule: Some(Rule::UrlPath(method_matcher(m))),
            })
            .collect();
        all.push(Permission {
            rule: Some(Rule::OrRules(Set { rules: methods })),
        });
    }
    all.extend(p.headers.iter().map(|h| Permission {
        rule: Some(Rule::Header(header_matcher(h))),
    }));
    let rule = if all.is_empty() {
        Rule::Any(true)
    } else {
        Rule::AndRules(Set { rules: all })
    };
    Permission { rule: Some(rule) }
}

/// `/pkg.Svc/Method` is an exact path, `/pkg.Svc/*` the prefix `/pkg.Svc/`.
fn method_matcher(method: &str) -> PathMatcher {
    let pattern = match method.strip_suffix('*') {
        Some(prefix) => MatchPattern::Prefix(prefix.to_string()),
        None => MatchPattern::Exact(method.to_string()),
    };
    PathMatcher {
        rule: Some(path_matcher::Rule::Path(StringMatcher {
            match_pattern: Some(pattern),
            ignore_case: false,
        })),
    }
}

fn principals(p: &AuthorizationPolicy) -> Result<Vec<Principal>, String> {
    use principal::{Authenticated, Identifier, Set};
    let id = |identifier| Principal {
        identifier: Some(identifier),
    };
    let ids: Vec<Principal> = p
        .principals
        .iter()
        .map(|name| {
            id(Identifier::Authenticated(Authenticated {
                principal_name: Some(StringMatcher {
                    match_pattern: Some(MatchPattern::Exact(name.clone())),
                    ignore_case: false,
                }),
            }))
        })
        .collect();
    let ips = p
        .source_ips
        .iter()
        .map(|cidr| {
            let (ip, len) = parse_cidr(cidr)?;
            Ok(id(Identifier::DirectRemoteIp(CidrRange {
                address_prefix: ip.to_string(),
                prefix_len: Some(UInt32Value { value: len }),
            })))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(match (ids.is_empty(), ips.is_empty()) {
        (true, true) => vec![id(Identifier::Any(true))],
        (false, true) => ids,
        (true, false) => ips,
        (false, false) => vec![id(Identifier::AndIds(Set {
            ids: vec![
                id(Identifier::OrIds(Set { ids })),
                id(Identifier::OrIds(Set { ids: ips })),
            ],
        }))],
    })
}
