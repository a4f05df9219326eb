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

#[cfg(test)]
mod tests {
    use super::*;
    use xds_proto::envoy::envoy::config::rbac::v3::{
        permission::Set as PermissionSet, principal::Authenticated,
    };
    use xds_proto::envoy::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
    use xds_proto::envoy::envoy::r#type::matcher::v3::{
        FilterStateMatcher, MetadataMatcher, RegexMatcher, StringMatcher as StringMatcherProto,
        string_matcher::MatchPattern,
    };
    use xds_proto::envoy::envoy::r#type::v3::Int32Range;
    use xds_proto::envoy::google::api::expr::v1alpha1::{CheckedExpr, Expr};
    use xds_proto::protobuf::UInt32Value;

    fn any_perm() -> PermissionProto {
        PermissionProto {
            rule: Some(Rule::Any(true)),
        }
    }

    fn any_id() -> PrincipalProto {
        PrincipalProto {
            identifier: Some(Identifier::Any(true)),
        }
    }

    fn header_perm(name: &str) -> PermissionProto {
        PermissionProto {
            rule: Some(Rule::Header(HeaderMatcherProto {
                name: name.into(),
                header_match_specifier: Some(HeaderMatchSpecifier::PresentMatch(true)),
                ..Default::default()
            })),
        }
    }

    fn cidr_range(addr: &str, len: Option<u32>) -> CidrRange {
        CidrRange {
            address_prefix: addr.into(),
            prefix_len: len.map(|value| UInt32Value { value }),
        }
    }

    fn exact(s: &str) -> StringMatcherProto {
        StringMatcherProto {
            match_pattern: Some(MatchPattern::Exact(s.into())),
            ignore_case: false,
        }
    }

    fn pol(permissions: Vec<PermissionProto>, principals: Vec<PrincipalProto>) -> PolicyProto {
        PolicyProto {
            permissions,
            principals,
            ..Default::default()
        }
    }

    fn rules_of(action: ActionProto, policies: Vec<(&str, PolicyProto)>) -> RulesProto {
        RulesProto {
            action: action as i32,
            policies: policies
                .into_iter()
                .map(|(n, p)| (n.to_string(), p))
                .collect(),
            ..Default::default()
        }
    }

    /// An RBAC filter whose enforced rules are ALLOW with policy "p1".
    fn with_policy(p: PolicyProto) -> RbacProto {
        RbacProto {
            rules: Some(rules_of(ActionProto::Allow, vec![("p1", p)])),
            ..Default::default()
        }
    }

    fn with_perm(p: PermissionProto) -> RbacProto {
        with_policy(pol(vec![p], vec![any_id()]))
    }

    fn with_id(p: PrincipalProto) -> RbacProto {
        with_policy(pol(vec![any_perm()], vec![p]))
    }

    enum Want {
        Ok(fn(&config::Rbac) -> bool),
        Nack(&'static str),
    }

    fn first_perm(r: &config::Rbac) -> Option<&Permission> {
        r.rules.as_ref()?.policies.first()?.1.permissions.first()
    }

    fn first_id(r: &config::Rbac) -> Option<&Principal> {
        r.rules.as_ref()?.policies.first()?.1.principals.first()
    }

    #[allow(deprecated)]
    fn rows() -> Vec<(&'static str, RbacProto, Want)> {
        use Want::*;
        vec![
            (
                // Envoy RBAC.rules: absent → no enforcement.
                "empty filter config",
                RbacProto::default(),
                Ok(|r| r.rules.is_none() && r.shadow.is_none()),
            ),
            (
                // Envoy: policies by name, tried in name order.
                "policies sorted by name",
                RbacProto {
                    rules: Some(rules_of(
                        ActionProto::Deny,
                        vec![
                            ("b", pol(vec![any_perm()], vec![any_id()])),
                            ("a", pol(vec![any_perm()], vec![any_id()])),
                        ],
                    )),
                    ..Default::default()
                },
                Ok(|r| {
                    r.rules.as_ref().is_some_and(|x| {
                        x.action == RbacAction::Deny
                            && x.policies.iter().map(|p| p.0.as_str()).eq(["a", "b"])
                    })
                }),
            ),
            (
                // A41: action LOG → the policy is ignored, as if RBAC were not configured.
                "LOG rules ignored",
                RbacProto {
                    rules: Some(rules_of(
                        ActionProto::Log,
                        vec![("p1", pol(vec![any_perm()], vec![any_id()]))],
                    )),
                    ..Default::default()
                },
                Ok(|r| r.rules.is_none()),
            ),
            (
                // A41: CEL NACKs; LOG rules are still validated.
                "CEL in LOG rules",
                RbacProto {
                    rules: Some(rules_of(
                        ActionProto::Log,
                        vec![(
                            "p1",
                            PolicyProto {
                                condition: Some(Expr::default()),
                                ..pol(vec![any_perm()], vec![any_id()])
                            },
                        )],
                    )),
                    ..Default::default()
                },
                Nack("rules.policies[\"p1\"].condition: CEL conditions are not supported"),
            ),
            (
                // A41: Policy.condition must NACK.
                "condition",
                with_policy(PolicyProto {
                    condition: Some(Expr::default()),
                    ..pol(vec![any_perm()], vec![any_id()])
                }),
                Nack(
                    "rules.policies[\"p1\"].condition: CEL conditions are not supported (gRFC A41)",
                ),
            ),
            (
                // A41: Policy.checked_condition must NACK.
                "checked_condition",
                with_policy(PolicyProto {
                    checked_condition: Some(CheckedExpr::default()),
                    ..pol(vec![any_perm()], vec![any_id()])
                }),
                Nack("rules.policies[\"p1\"].checked_condition: CEL conditions are not supported"),
            ),
            (
                // A41: a header matcher on a grpc- header NACKs.
                "grpc- permission header",
                with_perm(header_perm("grpc-timeout")),
                Nack(
                    "rules.policies[\"p1\"].permissions[0].header.name: header matchers on \"grpc-\"-prefixed headers are not allowed (gRFC A41)",
                ),
            ),
            (
                // A41: ... or on :scheme, in a Principal too.
                ":scheme principal header",
                with_id(PrincipalProto {
                    identifier: match header_perm(":scheme").rule {
                        Some(Rule::Header(h)) => Some(Identifier::Header(h)),
                        _ => None,
                    },
                }),
                Nack(
                    "rules.policies[\"p1\"].principals[0].header.name: header matchers on \":scheme\" are not allowed",
                ),
            ),
            (
                // A41 (C-core reading): the check applies at any depth, case-insensitively.
                "nested upper-case grpc- header",
                with_perm(PermissionProto {
                    rule: Some(Rule::AndRules(PermissionSet {
                        rules: vec![
                            any_perm(),
                            PermissionProto {
                                rule: Some(Rule::NotRule(Box::new(header_perm("GRPC-Encoding")))),
                            },
                        ],
                    })),
                }),
                Nack(
                    "permissions[0].and_rules.rules[1].not_rule.header.name: header matchers on \"grpc-\"",
                ),
            ),
            (
                // A41: other headers, incl. pseudo-headers, are fine.
                ":authority header accepted",
                with_perm(header_perm(":authority")),
                Ok(
                    |r| matches!(first_perm(r), Some(Permission::Header(h)) if h.name == ":authority"),
                ),
            ),
            (
                // grpc-go/C-core: an unimplemented permission kind NACKs.
                "destination_port_range",
                with_perm(PermissionProto {
                    rule: Some(Rule::DestinationPortRange(Int32Range { start: 1, end: 2 })),
                }),
                Nack("permissions[0].destination_port_range: not supported by gRPC RBAC"),
            ),
            (
                // grpc-go: an unset rule is an unsupported permission → NACK.
                "permission without rule",
                with_perm(PermissionProto { rule: None }),
                Nack("rules.policies[\"p1\"].permissions[0].rule: missing"),
            ),
            (
                // grpc-go: an unimplemented principal kind NACKs.
                "filter_state principal",
                with_id(PrincipalProto {
                    identifier: Some(Identifier::FilterState(FilterStateMatcher::default())),
                }),
                Nack("principals[0].filter_state: not supported by gRPC RBAC"),
            ),
            (
                // A41 url_path; A28 regex rules: an invalid regex NACKs.
                "url_path invalid regex",
                with_perm(PermissionProto {
                    rule: Some(Rule::UrlPath(PathMatcherProto {
                        rule: Some(PathRule::Path(StringMatcherProto {
                            match_pattern: Some(MatchPattern::SafeRegex(RegexMatcher {
                                regex: "(".into(),
                                ..Default::default()
                            })),
                            ignore_case: false,
                        })),
                    })),
                }),
                Nack("permissions[0].url_path.path.safe_regex: invalid regex"),
            ),
            (
                // grpc-go: a CidrRange that does not parse NACKs.
                "bad cidr address",
                with_perm(PermissionProto {
                    rule: Some(Rule::DestinationIp(cidr_range("10.0.0", Some(8)))),
                }),
                Nack("permissions[0].destination_ip.address_prefix: invalid IP address \"10.0.0\""),
            ),
            (
                // grpc-go: a prefix longer than the address NACKs.
                "cidr prefix too long",
                with_id(PrincipalProto {
                    identifier: Some(Identifier::SourceIp(cidr_range("10.0.0.0", Some(33)))),
                }),
                Nack("principals[0].source_ip.prefix_len: prefix_len 33 exceeds 32"),
            ),
            (
                // CidrRange: prefix_len defaults to 0; host bits are cleared.
                "cidr defaults",
                with_id(PrincipalProto {
                    identifier: Some(Identifier::RemoteIp(cidr_range("2001:db8::1", None))),
                }),
                Ok(
                    |r| matches!(first_id(r), Some(Principal::RemoteIp(c)) if c.prefix_len() == 0 && c.addr().to_string() == "::"),
                ),
            ),
            (
                // grpc-go: an action outside ALLOW/DENY/LOG NACKs.
                "unknown action",
                RbacProto {
                    rules: Some(RulesProto {
                        action: 7,
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Nack("rules.action: unknown action 7"),
            ),
            (
                // A41: metadata is accepted and never matches (invert kept).
                "metadata accepted",
                with_perm(PermissionProto {
                    rule: Some(Rule::Metadata(MetadataMatcher {
                        invert: true,
                        ..Default::default()
                    })),
                }),
                Ok(|r| matches!(first_perm(r), Some(Permission::Metadata { invert: true }))),
            ),
            (
                // A41: requested_server_name is accepted (matched against "").
                "requested_server_name accepted",
                with_perm(PermissionProto {
                    rule: Some(Rule::RequestedServerName(exact(""))),
                }),
                Ok(|r| matches!(first_perm(r), Some(Permission::RequestedServerName(_)))),
            ),
            (
                // A63: a StringMatcher without a pattern NACKs, in principal_name too.
                "principal_name without pattern",
                with_id(PrincipalProto {
                    identifier: Some(Identifier::Authenticated(Authenticated {
                        principal_name: Some(StringMatcherProto::default()),
                    })),
                }),
                Nack("principals[0].authenticated.principal_name.match_pattern: missing"),
            ),
            (
                // A41: authenticated without principal_name is any TLS peer.
                "authenticated without name",
                with_id(PrincipalProto {
                    identifier: Some(Identifier::Authenticated(Authenticated {
                        principal_name: None,
                    })),
                }),
                Ok(|r| matches!(first_id(r), Some(Principal::Authenticated(None)))),
            ),
            (
                // Beyond gRPC: shadow_rules are validated like rules, with their own path.
                "shadow rules validated",
                RbacProto {
                    shadow_rules: Some(rules_of(
                        ActionProto::Deny,
                        vec![("s1", pol(vec![header_perm("grpc-x")], vec![any_id()]))],
                    )),
                    ..Default::default()
                },
                Nack("shadow_rules.policies[\"s1\"].permissions[0].header.name"),
            ),
            (
                // Beyond gRPC: LOG shadow rules are kept (they only report).
                "shadow LOG kept",
                RbacProto {
                    shadow_rules: Some(rules_of(
                        ActionProto::Log,
                        vec![("s1", pol(vec![any_perm()], vec![any_id()]))],
                    )),
                    ..Default::default()
                },
                Ok(|r| {
                    r.rules.is_none()
                        && r.shadow
                            .as_ref()
                            .is_some_and(|s| s.action == RbacAction::Log)
                }),
            ),
        ]
    }

    #[test]
    fn rbac_validation_table() {
        let rows = rows();
        assert!(rows.len() >= 12);
        let mut failures = Vec::new();
        for (name, proto, want) in rows {
            match (want, validate_rbac(&proto)) {
                (Want::Ok(check), Ok(r)) if check(&r) => {}
                (Want::Ok(_), Ok(r)) => failures.push(format!("{name}: check failed on {r:?}")),
                (Want::Nack(msg), Err(e)) if e.contains(msg) => {}
                (Want::Nack(msg), Err(e)) => {
                    failures.push(format!("{name}: message {e:?} lacks {msg:?}"))
                }
                (Want::Nack(msg), Ok(r)) => {
                    failures.push(format!("{name}: accepted {r:?}, want NACK {msg:?}"))
                }
                (Want::Ok(_), Err(e)) => failures.push(format!("{name}: NACKed: {e}")),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn per_route_override() {
        // Envoy RBACPerRoute.rbac: absent → RBAC disabled for the route.
        assert_eq!(
            validate_rbac_per_route(&RbacPerRouteProto::default()),
            Result::Ok(None)
        );
        let on = validate_rbac_per_route(&RbacPerRouteProto {
            rbac: Some(with_perm(any_perm())),
        });
        assert!(matches!(on, Result::Ok(Some(r)) if r.rules.is_some()));
        let err = validate_rbac_per_route(&RbacPerRouteProto {
            rbac: Some(with_perm(header_perm("grpc-x"))),
        });
        assert!(
            matches!(&err, Err(e) if e.starts_with("rbac.rules.policies[\"p1\"].permissions[0].header.name")),
            "{err:?}"
        );
    }
}
