//! Validation of the RBAC HTTP filter config (`envoy.extensions.filters.http.rbac.v3.RBAC`)
//! and its per-route override (`RBACPerRoute`) into [`config::Rbac`] (gRFC A41, A39).
//!
//! NACKed, as in gRPC: a policy with a CEL `condition` or `checked_condition`; a `header`
//! matcher (at any depth) on a `grpc-`-prefixed name or `:scheme`; a permission or principal
//! of a kind gRPC does not implement (`destination_port_range`, `matcher`, `uri_template`,
//! `sourced_metadata`, `filter_state`, `custom`) or with no rule at all; an unknown action;
//! invalid matchers (regex, string matcher) and CIDR ranges.
//!
//! Ignored: `rules` with action `LOG` (A41: as if RBAC were not configured; the policies are
//! still validated); `audit_logging_options` (gRFC A59, not implemented yet);
//! `*_stat_prefix`, `track_per_rule_stats`, `cel_config`; `matcher` and `shadow_matcher`
//! (gRPC reads only `rules`, so a filter with only `matcher` enforces nothing — as in grpc-go).
//! Beyond gRPC, `shadow_rules` are validated like `rules` and kept for dry-run evaluation
//! (a `LOG` action is kept there).

use std::net::IpAddr;

use xds_proto::envoy::envoy::config::core::v3::CidrRange;
use xds_proto::envoy::envoy::config::rbac::v3::{
    Permission as PermissionProto, Policy as PolicyProto, Principal as PrincipalProto,
    Rbac as RulesProto, permission::Rule, principal::Identifier, rbac::Action as ActionProto,
};
use xds_proto::envoy::envoy::config::route::v3::HeaderMatcher as HeaderMatcherProto;
use xds_proto::envoy::envoy::r#type::matcher::v3::{
    PathMatcher as PathMatcherProto, path_matcher::Rule as PathRule,
};

use super::matcher;
use crate::config::{self, Cidr, HeaderMatcher, Permission, Policy, Principal, RbacAction};

/// The filter config message validated here.
pub use xds_proto::envoy::envoy::extensions::filters::http::rbac::v3::Rbac as RbacProto;
/// The per-route override message validated here.
pub use xds_proto::envoy::envoy::extensions::filters::http::rbac::v3::RbacPerRoute as RbacPerRouteProto;

/// Validates an RBAC HTTP filter config. Errors are field paths relative to the config, e.g.
/// `rules.policies["p1"].permissions[0].header.name: ...`.
///
/// ```
/// use mesh_client::xds::resource::rbac::{validate_rbac, RbacProto};
///
/// // No rules: nothing is enforced.
/// let rbac = validate_rbac(&RbacProto::default()).unwrap();
/// assert!(rbac.rules.is_none() && rbac.shadow.is_none());
/// ```
pub fn validate_rbac(proto: &RbacProto) -> Result<config::Rbac, String> {
    let enforced = proto
        .rules
        .as_ref()
        .map(|r| rules(r).map_err(|e| format!("rules.{e}")))
        .transpose()?
        // A41: enforced LOG rules are ignored entirely.
        .filter(|r| r.action != RbacAction::Log);
    let shadow = proto
        .shadow_rules
        .as_ref()
        .map(|r| rules(r).map_err(|e| format!("shadow_rules.{e}")))
        .transpose()?;
    Ok(config::Rbac {
        rules: enforced,
        shadow,
    })
}

/// Validates an `RBACPerRoute` override: `Ok(None)` when its `rbac` is absent, which disables
/// RBAC for the route (Envoy, gRFC A41). Errors are paths relative to the override.
pub fn validate_rbac_per_route(proto: &RbacPerRouteProto) -> Result<Option<config::Rbac>, String> {
    proto
        .rbac
        .as_ref()
        .map(|r| validate_rbac(r).map_err(|e| format!("rbac.{e}")))
        .transpose()
}

/// One `envoy.config.rbac.v3.RBAC`.
fn rules(r: &RulesProto) -> Result<config::RbacRules, String> {
    let action = match ActionProto::try_from(r.action) {
        Ok(ActionProto::Allow) => RbacAction::Allow,
        Ok(ActionProto::Deny) => RbacAction::Deny,
        Ok(ActionProto::Log) => RbacAction::Log,
        Err(_) => return Err(format!("action: unknown action {}", r.action)),
    };
    // Sorted, so errors are deterministic and evaluation follows name order (Envoy).
    let mut names: Vec<&String> = r.policies.keys().collect();
    names.sort();
    let mut policies = Vec::with_capacity(names.len());
    for name in names {
        let Some(p) = r.policies.get(name) else {
            continue;
        };
        let p = policy(p).map_err(|e| format!("policies[{name:?}].{e}"))?;
        policies.push((name.clone(), p));
    }
    Ok(config::RbacRules::new(action, policies))
}

fn policy(p: &PolicyProto) -> Result<Policy, String> {
    // A41: CEL is not supported; a condition must NACK.
    if p.condition.is_some() {
        return Err("condition: CEL conditions are not supported (gRFC A41)".into());
    }
    if p.checked_condition.is_some() {
        return Err("checked_condition: CEL conditions are not supported (gRFC A41)".into());
    }
    let permissions = p
        .permissions
        .iter()
        .enumerate()
        .map(|(i, x)| permission(x).map_err(|e| format!("permissions[{i}].{e}")))
        .collect::<Result<_, _>>()?;
    let principals = p
        .principals
        .iter()
        .enumerate()
        .map(|(i, x)| principal(x).map_err(|e| format!("principals[{i}].{e}")))
        .collect::<Result<_, _>>()?;
    Ok(Policy {
        permissions,
        principals,
    })
}

fn permissions(rules: &[PermissionProto], at: &str) -> Result<Vec<Permission>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, x)| permission(x).map_err(|e| format!("{at}[{i}].{e}")))
        .collect()
}

fn principals(ids: &[PrincipalProto], at: &str) -> Result<Vec<Principal>, String> {
    ids.iter()
        .enumerate()
        .map(|(i, x)| principal(x).map_err(|e| format!("{at}[{i}].{e}")))
        .collect()
}

fn permission(p: &PermissionProto) -> Result<Permission, String> {
    #[allow(deprecated)] // `metadata` is deprecated in Envoy; gRPC still handles it (A41).
    Ok(match &p.rule {
        Some(Rule::AndRules(set)) => Permission::And(permissions(&set.rules, "and_rules.rules")?),
        Some(Rule::OrRules(set)) => Permission::Or(permissions(&set.rules, "or_rules.rules")?),
        Some(Rule::NotRule(inner)) => Permission::Not(Box::new(
            permission(inner).map_err(|e| format!("not_rule.{e}"))?,
        )),
        // Envoy and gRPC match `any` whatever its value.
        Some(Rule::Any(_)) => Permission::Any,
        Some(Rule::Header(h)) => Permission::Header(header(h).map_err(|e| format!("header.{e}"))?),
        Some(Rule::UrlPath(m)) => {
            Permission::UrlPath(url_path(m).map_err(|e| format!("url_path.{e}"))?)
        }
        Some(Rule::DestinationIp(c)) => {
            Permission::DestinationIp(cidr(c).map_err(|e| format!("destination_ip.{e}"))?)
        }
        Some(Rule::DestinationPort(port)) => Permission::DestinationPort(*port),
        Some(Rule::Metadata(m)) => Permission::Metadata { invert: m.invert },
        Some(Rule::RequestedServerName(m)) => Permission::RequestedServerName(
            matcher::string_matcher(m).map_err(|e| format!("requested_server_name.{e}"))?,
        ),
        Some(Rule::DestinationPortRange(_)) => return Err(unsupported("destination_port_range")),
        Some(Rule::Matcher(_)) => return Err(unsupported("matcher")),
        Some(Rule::UriTemplate(_)) => return Err(unsupported("uri_template")),
        Some(Rule::SourcedMetadata(_)) => return Err(unsupported("sourced_metadata")),
        None => return Err("rule: missing".into()),
    })
}

fn principal(p: &PrincipalProto) -> Result<Principal, String> {
    #[allow(deprecated)] // `source_ip` and `metadata` are deprecated; gRPC handles them (A41).
    Ok(match &p.identifier {
        Some(Identifier::AndIds(set)) => Principal::And(principals(&set.ids, "and_ids.ids")?),
        Some(Identifier::OrIds(set)) => Principal::Or(principals(&set.ids, "or_ids.ids")?),
        Some(Identifier::NotId(inner)) => Principal::Not(Box::new(
            principal(inner).map_err(|e| format!("not_id.{e}"))?,
        )),
        Some(Identifier::Any(_)) => Principal::Any,
        Some(Identifier::Authenticated(a)) => Principal::Authenticated(
            a.principal_name
                .as_ref()
                .map(|m| {
                    matcher::string_matcher(m)
                        .map_err(|e| format!("authenticated.principal_name.{e}"))
                })
                .transpose()?,
        ),
        Some(Identifier::SourceIp(c)) => {
            Principal::SourceIp(cidr(c).map_err(|e| format!("source_ip.{e}"))?)
        }
        Some(Identifier::DirectRemoteIp(c)) => {
            Principal::DirectRemoteIp(cidr(c).map_err(|e| format!("direct_remote_ip.{e}"))?)
        }
        Some(Identifier::RemoteIp(c)) => {
            Principal::RemoteIp(cidr(c).map_err(|e| format!("remote_ip.{e}"))?)
        }
        Some(Identifier::Header(h)) => {
            Principal::Header(header(h).map_err(|e| format!("header.{e}"))?)
        }
        Some(Identifier::UrlPath(m)) => {
            Principal::UrlPath(url_path(m).map_err(|e| format!("url_path.{e}"))?)
        }
        Some(Identifier::Metadata(m)) => Principal::Metadata { invert: m.invert },
        Some(Identifier::FilterState(_)) => return Err(unsupported("filter_state")),
        Some(Identifier::SourcedMetadata(_)) => return Err(unsupported("sourced_metadata")),
        Some(Identifier::Custom(_)) => return Err(unsupported("custom")),
        None => return Err("identifier: missing".into()),
    })
}

fn unsupported(field: &str) -> String {
    format!("{field}: not supported by gRPC RBAC (gRFC A41)")
}

/// A41: `grpc-` headers and `:scheme` are not matchable; such a matcher NACKs. HTTP/2 header
/// names are lower case and matchers match the lower-cased name, so the check is too.
fn header(h: &HeaderMatcherProto) -> Result<HeaderMatcher, String> {
    let name = h.name.to_ascii_lowercase();
    if name.starts_with("grpc-") {
        return Err(
            "name: header matchers on \"grpc-\"-prefixed headers are not allowed (gRFC A41)".into(),
        );
    }
    if name == ":scheme" {
        return Err("name: header matchers on \":scheme\" are not allowed (gRFC A41)".into());
    }
    matcher::header_matcher(h)
}

fn url_path(m: &PathMatcherProto) -> Result<config::StringMatcher, String> {
    match &m.rule {
        Some(PathRule::Path(s)) => matcher::string_matcher(s).map_err(|e| format!("path.{e}")),
        None => Err("rule: missing".into()),
    }
}

/// A `CidrRange`: an IPv4 or IPv6 address and a prefix length within its width (grpc-go
/// parses `address/len` and NACKs what does not parse).
fn cidr(c: &CidrRange) -> Result<Cidr, String> {
    let addr: IpAddr = c
        .address_prefix
        .parse()
        .map_err(|_| format!("address_prefix: invalid IP address {:?}", c.address_prefix))?;
    let len = c.prefix_len.map(|l| l.value).unwrap_or(0);
    Cidr::new(addr, len).map_err(|e| format!("prefix_len: {e}"))
}
