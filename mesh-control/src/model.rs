//! The `mesh.yaml` model: services, their endpoints, subsets, routes, the server-side
//! authorization (RBAC, gRFC A41) of their endpoints and outlier detection (gRFC A50,
//! [`crate::outlier`]).
//!
//! This is the input of the control plane; [`crate::translate()`] turns it into xDS resources.
//! Unknown fields are rejected so that a typo (`prefx:`) is an error, not a silent default.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::spiffe::{DEFAULT_NAMESPACE, DEFAULT_TRUST_DOMAIN, spiffe_id};

/// A whole mesh: the services clients can dial as `xds:///{name}:{port}`.
///
/// ```
/// let config = mesh_control::MeshConfig::from_yaml(
///     "services:\n  - name: greeter.default\n    port: 8080\n    endpoints:\n      - address: 127.0.0.1:50051\n",
/// ).unwrap();
/// assert_eq!(config.services[0].endpoints.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// The SPIFFE trust domain of every workload's identity; default `cluster.local`.
    #[serde(
        default = "default_trust_domain",
        skip_serializing_if = "is_default_trust_domain"
    )]
    pub trust_domain: String,
    /// The services, each with one port. A host may be listed more than once with
    /// different ports.
    #[serde(default)]
    pub services: Vec<Service>,
}

impl Default for MeshConfig {
    /// No services, trust domain `cluster.local`.
    fn default() -> Self {
        MeshConfig {
            trust_domain: default_trust_domain(),
            services: Vec::new(),
        }
    }
}

fn default_trust_domain() -> String {
    DEFAULT_TRUST_DOMAIN.to_string()
}

fn is_default_trust_domain(trust_domain: &str) -> bool {
    trust_domain == DEFAULT_TRUST_DOMAIN
}

/// One service port: a host name, a port, its endpoints, subsets and routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The host name clients dial, e.g. `greeter.default`.
    pub name: String,
    /// The service port clients dial, e.g. `8080`.
    pub port: u16,
    /// The backends serving this service.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Named groups of endpoints selected by labels (like an Istio DestinationRule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Routes tried in order; empty means one route, prefix `/`, to the whole service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Who may call the service's endpoints: the RBAC policies of their inbound listeners.
    /// `None`: no RBAC filter, every request is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
    /// The peer-authentication mode of the service's endpoints (Istio's PeerAuthentication
    /// modes); it also decides whether clients dial them with mTLS. Default `DISABLE`.
    #[serde(default, skip_serializing_if = "MtlsMode::is_disable")]
    pub mtls: MtlsMode,
    /// The service account in the endpoints' SPIFFE ID; default: the short name (the part
    /// of `name` before the first dot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Circuit breaking and retry budget of the service's clusters (gRFC A32; like an Istio
    /// DestinationRule's `connectionPool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Outlier detection of the service's clusters (gRFC A50); `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<crate::outlier::OutlierDetection>,
}

/// Per-cluster limits, shared by every client process of the service's clusters.
///
/// ```yaml
/// limits:
///   max_requests: 100          # in flight per cluster, process-wide (default 1024)
///   retry_budget: { percent: 20, min_per_second: 10, interval: 10s }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// `circuit_breakers.thresholds[DEFAULT].max_requests`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// `circuit_breakers.thresholds[DEFAULT].retry_budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// A retry budget: retries may add `percent` % of the requests of the last `interval`,
/// plus `min_per_second` retries per second.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Envoy's `budget_percent` (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Envoy's `min_retry_concurrency`, read by our clients as retries per second (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_second: Option<u32>,
    /// Envoy's `budget_interval` (default 10 s).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub interval: Option<Duration>,
}

impl Service {
    /// A service with no endpoints, subsets or routes, mTLS `DISABLE`.
    pub fn new(name: impl Into<String>, port: u16) -> Service {
        Service {
            name: name.into(),
            port,
            endpoints: Vec::new(),
            subsets: Vec::new(),
            routes: Vec::new(),
            authorization: None,
            mtls: MtlsMode::Disable,
            service_account: None,
            limits: None,
            outlier_detection: None,
        }
    }

    /// The short name: the part of `name` before the first dot (`greeter` for
    /// `greeter.default`).
    pub fn short_name(&self) -> &str {
        self.name.split('.').next().unwrap_or(&self.name)
    }

    /// The namespace: the part of `name` after the first dot up to the next one
    /// (`prod` for `greeter.prod.svc.cluster.local`), `default` when there is none.
    pub fn namespace(&self) -> &str {
        match self.name.split('.').nth(1) {
            Some(ns) if !ns.is_empty() => ns,
            _ => DEFAULT_NAMESPACE,
        }
    }

    /// The service account: `service_account`, or the short name.
    pub fn service_account(&self) -> &str {
        self.service_account
            .as_deref()
            .unwrap_or_else(|| self.short_name())
    }

    /// The SPIFFE ID of the service's endpoints in `trust_domain`:
    /// `spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}`.
    ///
    /// ```
    /// let service = mesh_control::Service::new("greeter.prod", 8080);
    /// assert_eq!(
    ///     service.spiffe_id("cluster.local"),
    ///     "spiffe://cluster.local/ns/prod/sa/greeter"
    /// );
    /// ```
    pub fn spiffe_id(&self, trust_domain: &str) -> String {
        spiffe_id(trust_domain, self.namespace(), self.service_account())
    }
}

/// How a service's endpoints authenticate their peers, as Istio's PeerAuthentication
/// `mtls.mode`. In YAML: `DISABLE`, `PERMISSIVE` or `STRICT` (lower case is accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum MtlsMode {
    /// Plaintext only: the inbound listener has one plaintext chain and clients dial
    /// without TLS.
    #[default]
    #[serde(rename = "DISABLE", alias = "disable")]
    Disable,
    /// Both: the inbound listener tells mTLS from plaintext by sniffing the TLS
    /// ClientHello; clients dial with mTLS (as Istio's auto-mTLS does).
    #[serde(rename = "PERMISSIVE", alias = "permissive")]
    Permissive,
    /// mTLS only: the inbound listener requires a client certificate; clients dial with mTLS.
    #[serde(rename = "STRICT", alias = "strict")]
    Strict,
}

impl MtlsMode {
    /// Whether clients of the service dial it with mTLS (`PERMISSIVE` or `STRICT`).
    pub fn is_enabled(self) -> bool {
        !self.is_disable()
    }

    /// The YAML spelling: `DISABLE`, `PERMISSIVE` or `STRICT`.
    pub fn as_str(self) -> &'static str {
        match self {
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        }
    }

    // `&self` because serde's `skip_serializing_if` passes a reference.
    fn is_disable(&self) -> bool {
        *self == MtlsMode::Disable
    }
}

impl std::fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One backend address of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `ip:port`, e.g. `127.0.0.1:50051` or `[::1]:50051`.
    pub address: String,
    /// Labels used by subsets, e.g. `version: v1`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Where the endpoint runs; endpoints are grouped by locality and priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality: Option<Locality>,
    /// Load-balancing weight within its locality (at least 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Failover priority, 0 is the most preferred.
    #[serde(default)]
    pub priority: u32,
    /// Health status reported to clients.
    #[serde(default)]
    pub health: Health,
}

impl Endpoint {
    /// A healthy endpoint with weight 1, priority 0, no labels and no locality.
    pub fn new(address: impl Into<String>) -> Endpoint {
        Endpoint {
            address: address.into(),
            labels: BTreeMap::new(),
            locality: None,
            weight: 1,
            priority: 0,
            health: Health::Healthy,
        }
    }
}

fn default_weight() -> u32 {
    1
}

/// A locality (region / zone / sub-zone), as in Envoy's `core.v3.Locality`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locality {
    /// Region, e.g. `r1`.
    #[serde(default)]
    pub region: String,
    /// Zone within the region, e.g. `z1`.
    #[serde(default)]
    pub zone: String,
    /// Sub-zone within the zone.
    #[serde(default)]
    pub sub_zone: String,
}

/// The health status of an endpoint, as sent in EDS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Receives traffic.
    #[default]
    Healthy,
    /// Receives no traffic.
    Unhealthy,
    /// Being drained; receives no new traffic.
    Draining,
    /// Unknown; gRPC clients treat it as healthy.
    Unknown,
}

/// A named group of a service's endpoints: those whose labels include all of `labels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    /// The subset name, used in cluster names `outbound|{port}|{subset}|{service}`.
    pub name: String,
    /// The labels an endpoint must carry (all of them) to be in the subset.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// One route: a request match and where matching requests go.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Which requests the route takes; the default matches everything (prefix `/`).
    #[serde(default)]
    pub r#match: RouteMatch,
    /// Weighted destinations; exclusive with `destination`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<WeightedDestination>,
    /// A single destination; exclusive with `split`. With neither, the whole service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Destination>,
    /// Maximum stream duration for matching requests (`2s`, `500ms`).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Retries of failed requests (gRFC A44).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Faults injected into matching requests (gRFC A33), for testing resilience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

/// A route's retry policy.
///
/// ```yaml
/// retries: { attempts: 3, on: [unavailable, cancelled], backoff: 25ms, max_backoff: 250ms }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Retries after the first attempt (`num_retries`, >= 1; clients cap attempts at 5).
    pub attempts: u32,
    /// The gRPC conditions retried: `cancelled`, `deadline-exceeded`, `internal`,
    /// `resource-exhausted`, `unavailable` (default `[unavailable]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<String>,
    /// Base backoff (default 25 ms).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub backoff: Option<Duration>,
    /// Maximum backoff (default 10 × base).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_backoff: Option<Duration>,
}

/// The retry conditions gRPC clients understand (gRFC A44).
pub const RETRY_CONDITIONS: [&str; 5] = [
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Fault injection on a route.
///
/// ```yaml
/// fault: { abort: { percent: 20, code: 14 }, delay: { percent: 10, duration: 50ms } }
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Abort a share of requests with a gRPC status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
    /// Delay a share of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
}

/// An injected abort.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultAbort {
    /// Share of requests, 0–100 (fractions allowed, in steps of 0.0001).
    pub percent: f64,
    /// The gRPC status code, 1–16.
    pub code: u32,
}

/// An injected delay.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultDelay {
    /// Share of requests, 0–100.
    pub percent: f64,
    /// How long (required).
    #[serde(
        default,
        with = "crate::duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration: Option<Duration>,
}

/// A request match: at most one of `prefix`, `path`, `regex` (none = prefix `/`), and
/// header matchers that must all match.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// Path prefix, e.g. `/helloworld.Greeter/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Exact path, e.g. `/helloworld.Greeter/SayHello`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// RE2 regular expression over the whole path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Header matchers; all must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// A header matcher: `name` and exactly one of `exact`, `prefix`, `suffix`, `regex`,
/// `present`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (lower case for HTTP/2), e.g. `x-user`.
    pub name: String,
    /// The value equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value ends with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// The whole value matches this RE2 regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// `true`: the header is present; `false`: it is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// Where a route sends requests: a subset of this service, another service, or both
/// (a subset of another service). All fields empty means the whole current service.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// Another service's name; default: the service the route belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// That service's port; default: its first listed port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A subset of the destination service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
}

/// One weighted entry of a route's `split`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedDestination {
    /// Another service's name; default: the service the route belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// That service's port; default: its first listed port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A subset of the destination service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Relative weight; entries may be 0 but the route's total must be positive.
    pub weight: u32,
}

impl WeightedDestination {
    /// The destination part, without the weight.
    pub fn destination(&self) -> Destination {
        Destination {
            service: self.service.clone(),
            port: self.port,
            subset: self.subset.clone(),
        }
    }
}

/// Server-side authorization of a service's endpoints, translated into the RBAC HTTP filter
/// of their inbound listeners (gRFC A41).
///
/// With `action: allow` a request is allowed only when some policy matches (so no policies
/// denies everything); with `action: deny` it is denied when some policy matches.
///
/// ```
/// let yaml = r#"
/// services:
///   - name: greeter.default
///     port: 8080
///     endpoints: [ { address: "127.0.0.1:50051" } ]
///     authorization:
///       policies:
///         - name: local-hello
///           source_ips: ["127.0.0.1/32"]
///           methods: ["/helloworld.Greeter/SayHello"]
/// "#;
/// let config = mesh_control::MeshConfig::from_yaml(yaml).unwrap();
/// let authz = config.services[0].authorization.as_ref().unwrap();
/// assert_eq!(authz.action, mesh_control::RbacAction::Allow);
/// assert_eq!(authz.policies[0].name, "local-hello");
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// What a matching policy does; default `allow`.
    #[serde(default)]
    pub action: RbacAction,
    /// The policies; names are unique. The server evaluates them in name order.
    #[serde(default)]
    pub policies: Vec<AuthorizationPolicy>,
    /// Dry-run rules (Envoy's `shadow_rules`): evaluated and reported, never enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<AuthorizationRules>,
    /// Overrides for some methods, tried in order before the service-wide rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_route: Vec<PerRouteAuthorization>,
}

/// An action and its policies: the shape of [`Authorization::shadow`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRules {
    /// What a matching policy does; default `allow`.
    #[serde(default)]
    pub action: RbacAction,
    /// The policies; names are unique.
    #[serde(default)]
    pub policies: Vec<AuthorizationPolicy>,
}

/// The action of an RBAC rule set (Envoy `config.rbac.v3.RBAC.Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RbacAction {
    /// Allow the request when a policy matches; deny it otherwise.
    #[default]
    Allow,
    /// Deny the request when a policy matches; allow it otherwise.
    Deny,
}

/// One named RBAC policy: it matches a request when some principal matches (who) and the
/// permission matches (what).
///
/// - Who: `principals` (SPIFFE IDs of the authenticated peer, OR-ed) and `source_ips`
///   (CIDR ranges of the peer address, OR-ed); when both are set, the caller must match
///   both lists. Neither set: any caller.
/// - What: `methods` (OR-ed) and `headers` (AND-ed), both must match. Neither set: any request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// The policy name, unique within its rule set.
    pub name: String,
    /// Peer identities, matched exactly against the authenticated principal, e.g.
    /// `spiffe://cluster.local/ns/default/sa/client`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Peer address ranges, `ip/len` or a bare IP (a single address), e.g. `127.0.0.1/32`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    /// gRPC methods: an exact path `/pkg.Service/Method`, or a prefix with a trailing `*`
    /// (`/pkg.Service/*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Request header matchers; all must match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
}

/// Authorization for the requests whose path matches exactly one of `path` or `prefix`:
/// its own rules, or none at all with `disabled: true`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerRouteAuthorization {
    /// Exact request path, e.g. `/helloworld.Greeter/SayHello`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Path prefix, e.g. `/helloworld.Greeter/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// What a matching policy does; default `allow`. Not allowed with `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<RbacAction>,
    /// The policies; names are unique. Not allowed with `disabled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AuthorizationPolicy>,
    /// `true`: no authorization for these requests (an empty `RBACPerRoute`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
}

impl MeshConfig {
    /// Parses and validates a `mesh.yaml` document.
    pub fn from_yaml(text: &str) -> Result<MeshConfig, ConfigError> {
        let config: MeshConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a `mesh.yaml` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<MeshConfig, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        MeshConfig::from_yaml(&text)
    }

    /// Serializes back to YAML (round-trips through [`MeshConfig::from_yaml`]).
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml::to_string(self).map_err(|e| ConfigError::Parse(e.to_string()))
    }

    /// The SPIFFE ID of `service`'s endpoints in this mesh's trust domain.
    pub fn spiffe_id(&self, service: &Service) -> String {
        service.spiffe_id(&self.trust_domain)
    }

    /// The first listed service with this host name.
    pub fn find_service(&self, name: &str, port: Option<u16>) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.name == name && port.is_none_or(|p| p == s.port))
    }
}
