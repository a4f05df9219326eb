//! Validation of a [`MeshConfig`]: every rule a translated resource relies on, checked up
//! front with an error naming the offending field.
//!
//! The rules keep the output acceptable to gRPC clients (gRFC A27/A28): unique listener and
//! cluster names, `ip:port` endpoints with weight ≥ 1, one path specifier per route, RE2
//! regexes that compile, split weights with a positive total, and destinations that exist.
//! For the inbound listeners (gRFC A36) and their RBAC filter (gRFC A41): policy names unique
//! per rule set, methods that are gRPC paths, CIDR ranges that parse, one path specifier per
//! `per_route` entry, and one authorization per endpoint address shared by several services.
//! For mTLS (gRFC A29): a SPIFFE trust domain, a `service_account` that is a SPIFFE path
//! segment, a name whose namespace and short name make a SPIFFE ID when the service uses
//! mTLS, and one mode per shared endpoint address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use crate::error::ConfigError;
use crate::model::{
    AuthorizationPolicy, Destination, HeaderMatch, MeshConfig, PerRouteAuthorization, Route,
    Service,
};
use crate::spiffe;

impl MeshConfig {
    /// Checks the whole configuration; the error names the first offending field, e.g.
    /// `services[1].routes[0].split[1].subset: no subset "v3" in service greeter.default`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !spiffe::is_trust_domain(&self.trust_domain) {
            return Err(ConfigError::invalid(
                "trust_domain",
                format!(
                    "{:?} is not a SPIFFE trust domain: 1 to 255 lowercase letters, digits, \
                     '.', '-' and '_' (e.g. cluster.local)",
                    self.trust_domain
                ),
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, service) in self.services.iter().enumerate() {
            let at = format!("services[{i}]");
            validate_service(service, &at)?;
            if !seen.insert((service.name.as_str(), service.port)) {
                return Err(ConfigError::invalid(
                    format!("{at}.port"),
                    format!(
                        "service {}:{} is listed twice; each name and port appears once",
                        service.name, service.port
                    ),
                ));
            }
        }
        for (i, service) in self.services.iter().enumerate() {
            for (j, route) in service.routes.iter().enumerate() {
                self.validate_route(service, route, &format!("services[{i}].routes[{j}]"))?;
            }
        }
        self.validate_shared_endpoints()
    }

    /// An endpoint address gets one inbound listener, so the services listing the same
    /// address must agree on its authorization.
    fn validate_shared_endpoints(&self) -> Result<(), ConfigError> {
        let mut first: BTreeMap<SocketAddr, usize> = BTreeMap::new();
        for (i, service) in self.services.iter().enumerate() {
            for (j, endpoint) in service.endpoints.iter().enumerate() {
                let Ok(address) = endpoint.address.parse::<SocketAddr>() else {
                    continue;
                };
                let owner = *first.entry(address).or_insert(i);
                let Some(other) = self.services.get(owner) else {
                    continue;
                };
                if owner != i && other.mtls != service.mtls {
                    return Err(ConfigError::invalid(
                        format!("services[{i}].mtls"),
                        format!(
                            "{} differs from {} of services[{owner}] ({}:{}), which also lists \
                             the endpoint {address}; one server address has one inbound \
                             listener, so give both services the same mtls mode",
                            service.mtls, other.mtls, other.name, other.port
                        ),
                    ));
                }
                if owner != i && other.authorization != service.authorization {
                    return Err(ConfigError::invalid(
                        format!("services[{i}].endpoints[{j}].address"),
                        format!(
                            "{address} is also an endpoint of services[{owner}] ({}:{}) with a \
                             different authorization; one server address has one inbound \
                             listener, so give both services the same authorization",
                            other.name, other.port
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_route(
        &self,
        service: &Service,
        route: &Route,
        at: &str,
    ) -> Result<(), ConfigError> {
        let m = &route.r#match;
        let specifiers = [&m.prefix, &m.path, &m.regex]
            .iter()
            .filter(|s| s.is_some())
            .count();
        if specifiers > 1 {
            return Err(ConfigError::invalid(
                format!("{at}.match"),
                "set at most one of prefix, path and regex",
            ));
        }
        if let Some(prefix) = &m.prefix
            && !prefix.is_empty()
            && !prefix.starts_with('/')
        {
            return Err(ConfigError::invalid(
                format!("{at}.match.prefix"),
                format!(
                    "{prefix:?} must start with '/' (gRPC paths look like /pkg.Service/Method)"
                ),
            ));
        }
        if let Some(path) = &m.path
            && !path.starts_with('/')
        {
            return Err(ConfigError::invalid(
                format!("{at}.match.path"),
                format!("{path:?} must start with '/' (e.g. /helloworld.Greeter/SayHello)"),
            ));
        }
        if let Some(regex) = &m.regex {
            check_regex(regex, &format!("{at}.match.regex"))?;
        }
        for (k, header) in m.headers.iter().enumerate() {
            validate_header(header, &format!("{at}.match.headers[{k}]"))?;
        }
        if let Some(r) = &route.retries {
            if r.attempts == 0 {
                return Err(ConfigError::invalid(
                    format!("{at}.retries.attempts"),
                    "must be at least 1 (the retries after the first attempt)",
                ));
            }
            for (k, on) in r.on.iter().enumerate() {
                if !crate::model::RETRY_CONDITIONS.contains(&on.as_str()) {
                    return Err(ConfigError::invalid(
                        format!("{at}.retries.on[{k}]"),
                        format!(
                            "{on:?} is not one of {}",
                            crate::model::RETRY_CONDITIONS.join(", ")
                        ),
                    ));
                }
            }
            if r.backoff.is_some_and(|b| b.is_zero()) || r.max_backoff.is_some_and(|b| b.is_zero())
            {
                return Err(ConfigError::invalid(
                    format!("{at}.retries"),
                    "backoff and max_backoff must be > 0",
                ));
            }
        }
        if let Some(f) = &route.fault {
            let pct_ok = |p: f64| (0.0..=100.0).contains(&p);
            if let Some(a) = &f.abort {
                if !pct_ok(a.percent) {
                    return Err(ConfigError::invalid(
                        format!("{at}.fault.abort.percent"),
                        format!("{} is not in [0, 100]", a.percent),
                    ));
                }
                if !(1..=16).contains(&a.code) {
                    return Err(ConfigError::invalid(
                        format!("{at}.fault.abort.code"),
                        format!("{} is not a gRPC error code (1-16)", a.code),
                    ));
                }
            }
            if let Some(d) = &f.delay {
                if !pct_ok(d.percent) {
                    return Err(ConfigError::invalid(
                        format!("{at}.fault.delay.percent"),
                        format!("{} is not in [0, 100]", d.percent),
                    ));
                }
                if d.duration.is_none() {
                    return Err(ConfigError::invalid(
                        format!("{at}.fault.delay.duration"),
                        "missing (e.g. 50ms)",
                    ));
                }
            }
        }
        if !route.split.is_empty() && route.destination.is_some() {
            return Err(ConfigError::invalid(
                at.to_string(),
                "set either split or destination, not both",
            ));
        }
        if let Some(destination) = &route.destination {
            self.validate_destination(service, destination, &format!("{at}.destination"))?;
        }
        let mut total: u64 = 0;
        for (k, entry) in route.split.iter().enumerate() {
            let entry_at = format!("{at}.split[{k}]");
            self.validate_destination(service, &entry.destination(), &entry_at)?;
            total += u64::from(entry.weight);
        }
        if !route.split.is_empty() {
            if total == 0 {
                return Err(ConfigError::invalid(
                    format!("{at}.split"),
                    "the weights sum to 0; at least one weight must be positive",
                ));
            }
            if total > u64::from(u32::MAX) {
                return Err(ConfigError::invalid(
                    format!("{at}.split"),
                    format!("the weights sum to {total}, more than {}", u32::MAX),
                ));
            }
        }
        Ok(())
    }

    fn validate_destination(
        &self,
        service: &Service,
        destination: &Destination,
        at: &str,
    ) -> Result<(), ConfigError> {
        let target = match &destination.service {
            None => {
                if destination.port.is_some_and(|p| p != service.port) {
                    // The port of another entry of the same host.
                    self.find_service(&service.name, destination.port)
                        .ok_or_else(|| no_port(at, &service.name, destination.port))?
                } else {
                    service
                }
            }
            Some(name) => match self.find_service(name, destination.port) {
                Some(target) => target,
                None if self.find_service(name, None).is_some() => {
                    return Err(no_port(at, name, destination.port));
                }
                None => {
                    return Err(ConfigError::invalid(
                        format!("{at}.service"),
                        format!("no service named {name:?}"),
                    ));
                }
            },
        };
        if let Some(subset) = &destination.subset
            && !target.subsets.iter().any(|s| &s.name == subset)
        {
            return Err(ConfigError::invalid(
                format!("{at}.subset"),
                format!("no subset {subset:?} in service {}", target.name),
            ));
        }
        Ok(())
    }
}

fn no_port(at: &str, name: &str, port: Option<u16>) -> ConfigError {
    ConfigError::invalid(
        format!("{at}.port"),
        format!("service {name} has no port {}", port.unwrap_or_default()),
    )
}

fn validate_service(service: &Service, at: &str) -> Result<(), ConfigError> {
    check_name(&service.name, &format!("{at}.name"))?;
    if service.port == 0 {
        return Err(ConfigError::invalid(
            format!("{at}.port"),
            "must be 1..=65535",
        ));
    }
    if let Some(limits) = &service.limits {
        if limits.max_requests == Some(0) {
            return Err(ConfigError::invalid(
                format!("{at}.limits.max_requests"),
                "must be at least 1",
            ));
        }
        if let Some(p) = limits.retry_budget.as_ref().and_then(|b| b.percent)
            && !(0.0..=100.0).contains(&p)
        {
            return Err(ConfigError::invalid(
                format!("{at}.limits.retry_budget.percent"),
                format!("{p} is not in [0, 100]"),
            ));
        }
    }
    for (j, endpoint) in service.endpoints.iter().enumerate() {
        let ep_at = format!("{at}.endpoints[{j}]");
        if endpoint.address.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid(
                format!("{ep_at}.address"),
                format!(
                    "{:?} is not ip:port (e.g. 127.0.0.1:50051)",
                    endpoint.address
                ),
            ));
        }
        if endpoint.weight == 0 {
            return Err(ConfigError::invalid(
                format!("{ep_at}.weight"),
                "must be at least 1",
            ));
        }
    }
    validate_identity(service, at)?;
    if let Some(od) = &service.outlier_detection {
        od.validate(&format!("{at}.outlier_detection"))?;
    }
    let mut names = BTreeSet::new();
    for (j, subset) in service.subsets.iter().enumerate() {
        let sub_at = format!("{at}.subsets[{j}].name");
        check_name(&subset.name, &sub_at)?;
        if !names.insert(subset.name.as_str()) {
            return Err(ConfigError::invalid(
                sub_at,
                format!("subset {:?} is defined twice", subset.name),
            ));
        }
    }
    if let Some(authz) = &service.authorization {
        let authz_at = format!("{at}.authorization");
        validate_policies(&authz.policies, &authz_at)?;
        if let Some(shadow) = &authz.shadow {
            validate_policies(&shadow.policies, &format!("{authz_at}.shadow"))?;
        }
        let mut matches = BTreeSet::new();
        for (j, entry) in authz.per_route.iter().enumerate() {
            let entry_at = format!("{authz_at}.per_route[{j}]");
            let key = validate_per_route(entry, &entry_at)?;
            if !matches.insert(key.clone()) {
                return Err(ConfigError::invalid(
                    format!("{entry_at}.{}", key.0),
                    format!(
                        "{} {:?} is listed twice; the second entry would never match",
                        key.0, key.1
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The parts of the service's SPIFFE ID must be SPIFFE path segments: an explicit
/// `service_account` always, the namespace and the default service account (both taken
/// from `name`) when the service uses mTLS.
fn validate_identity(service: &Service, at: &str) -> Result<(), ConfigError> {
    const SEGMENT: &str = "letters, digits, '.', '-' and '_', not \".\" or \"..\"";
    if let Some(sa) = &service.service_account {
        if sa.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.service_account"),
                "must not be empty (remove it to use the service's short name)",
            ));
        }
        if !spiffe::is_path_segment(sa) {
            return Err(ConfigError::invalid(
                format!("{at}.service_account"),
                format!("{sa:?} cannot be part of a SPIFFE ID; use {SEGMENT}"),
            ));
        }
    }
    if !service.mtls.is_enabled() {
        return Ok(());
    }
    let namespace = service.namespace();
    if !spiffe::is_path_segment(namespace) {
        return Err(ConfigError::invalid(
            format!("{at}.name"),
            format!(
                "the namespace {namespace:?} (after the first '.') cannot be part of the SPIFFE \
                 ID that mtls: {} needs; use {SEGMENT}",
                service.mtls
            ),
        ));
    }
    if service.service_account.is_none() && !spiffe::is_path_segment(service.short_name()) {
        return Err(ConfigError::invalid(
            format!("{at}.name"),
            format!(
                "the short name {:?} (before the first '.') cannot be the service account of \
                 the SPIFFE ID that mtls: {} needs; set service_account or use {SEGMENT}",
                service.short_name(),
                service.mtls
            ),
        ));
    }
    Ok(())
}

/// Checks one `per_route` entry and returns its match (`("path" | "prefix", value)`).
fn validate_per_route(
    entry: &PerRouteAuthorization,
    at: &str,
) -> Result<(&'static str, String), ConfigError> {
    let key = match (&entry.path, &entry.prefix) {
        (Some(path), None) => ("path", path.clone()),
        (None, Some(prefix)) => ("prefix", prefix.clone()),
        _ => {
            return Err(ConfigError::invalid(
                at,
                "set exactly one of path and prefix",
            ));
        }
    };
    if !key.1.starts_with('/') {
        return Err(ConfigError::invalid(
            format!("{at}.{}", key.0),
            format!(
                "{:?} must start with \"/\" (gRPC paths look like /pkg.Service/Method)",
                key.1
            ),
        ));
    }
    if entry.disabled {
        if entry.action.is_some() {
            return Err(ConfigError::invalid(
                format!("{at}.action"),
                "a disabled entry has no action; remove it or `disabled: true`",
            ));
        }
        if !entry.policies.is_empty() {
            return Err(ConfigError::invalid(
                format!("{at}.policies"),
                "a disabled entry has no policies; remove them or `disabled: true`",
            ));
        }
    }
    validate_policies(&entry.policies, at)?;
    Ok(key)
}

/// Checks the policies of one rule set; `at` is the path of the set's owner.
fn validate_policies(policies: &[AuthorizationPolicy], at: &str) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    for (k, policy) in policies.iter().enumerate() {
        let policy_at = format!("{at}.policies[{k}]");
        if policy.name.is_empty() {
            return Err(ConfigError::invalid(
                format!("{policy_at}.name"),
                "must not be empty",
            ));
        }
        if !names.insert(policy.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{policy_at}.name"),
                format!("policy {:?} is defined twice", policy.name),
            ));
        }
        for (m, principal) in policy.principals.iter().enumerate() {
            if principal.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{policy_at}.principals[{m}]"),
                    "must not be empty (e.g. spiffe://cluster.local/ns/default/sa/client)",
                ));
            }
        }
        for (m, cidr) in policy.source_ips.iter().enumerate() {
            parse_cidr(cidr).map_err(|message| {
                ConfigError::invalid(format!("{policy_at}.source_ips[{m}]"), message)
            })?;
        }
        for (m, method) in policy.methods.iter().enumerate() {
            check_method(method).map_err(|message| {
                ConfigError::invalid(format!("{policy_at}.methods[{m}]"), message)
            })?;
        }
        for (m, header) in policy.headers.iter().enumerate() {
            validate_header(header, &format!("{policy_at}.headers[{m}]"))?;
        }
    }
    Ok(())
}

/// A method is an exact gRPC path or a prefix ending in one `*`.
fn check_method(method: &str) -> Result<(), String> {
    if !method.starts_with('/') {
        return Err(format!(
            "{method:?} must start with \"/\" (e.g. /helloworld.Greeter/SayHello or /helloworld.Greeter/*)"
        ));
    }
    let body = method.strip_suffix('*').unwrap_or(method);
    if body.contains('*') {
        return Err(format!(
            "{method:?}: '*' is only allowed as the last character (a prefix match)"
        ));
    }
    Ok(())
}

/// Parses `ip/len` or a bare `ip` (its full length) into the address and prefix length.
pub(crate) fn parse_cidr(cidr: &str) -> Result<(IpAddr, u32), String> {
    let (ip, len) = match cidr.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (cidr, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{cidr:?} is not ip/len (e.g. 127.0.0.1/32 or ::1/128)"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => len
            .parse::<u32>()
            .ok()
            .filter(|len| *len <= max)
            .ok_or_else(|| format!("{cidr:?}: the prefix length must be 0..={max}"))?,
    };
    Ok((ip, len))
}

/// Host and subset names end up inside `outbound|{port}|{subset}|{host}` and `{host}:{port}`.
fn check_name(name: &str, at: &str) -> Result<(), ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(at, "must not be empty"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| matches!(c, '|' | ':' | '/' | '*') || c.is_whitespace() || c.is_control())
    {
        return Err(ConfigError::invalid(
            at,
            format!("{name:?} contains {bad:?}; use letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

fn validate_header(header: &HeaderMatch, at: &str) -> Result<(), ConfigError> {
    if header.name.is_empty() {
        return Err(ConfigError::invalid(
            format!("{at}.name"),
            "must not be empty",
        ));
    }
    let kinds = [
        header.exact.is_some(),
        header.prefix.is_some(),
        header.suffix.is_some(),
        header.regex.is_some(),
        header.present.is_some(),
    ]
    .iter()
    .filter(|set| **set)
    .count();
    if kinds != 1 {
        return Err(ConfigError::invalid(
            at,
            format!(
                "header {:?}: set exactly one of exact, prefix, suffix, regex, present",
                header.name
            ),
        ));
    }
    if let Some(regex) = &header.regex {
        check_regex(regex, &format!("{at}.regex"))?;
    }
    Ok(())
}

/// Rust's `regex` syntax is close to RE2's (both are linear-time, no backreferences), so a
/// pattern it rejects would be NACKed by clients too.
fn check_regex(regex: &str, at: &str) -> Result<(), ConfigError> {
    regex::Regex::new(regex)
        .map(|_| ())
        .map_err(|e| ConfigError::invalid(at, format!("invalid regex: {e}")))
}
