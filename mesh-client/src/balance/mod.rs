//! Endpoint pools and pickers: priority failover, then the cluster's endpoint-picking policy
//! within the chosen priority (gRFC A27 priority → locality weights → endpoint policy, A56
//! priority failover; policies: round robin, least request A48, ring hash A42/A76, and our
//! peak-EWMA power of two choices).
//!
//! A [`ClusterPool`] is an immutable snapshot built when the cluster or its endpoints change.
//! Picking is lock-free and allocation-free: the highest priority with a ready endpoint is
//! chosen and its picker runs over a precomputed structure (a weighted schedule, a ring) and
//! the endpoints' atomics (readiness, requests in flight, RTT estimate, see [`load`]).
//! Connectivity itself lives in [`crate::transport`]. With outlier detection (gRFC A50,
//! [`outlier`]), each endpoint also carries its address's ejection flag: an ejected endpoint
//! reads as TRANSIENT_FAILURE to every picker, and the guard of a pick counts the call.
//!
//! Gentle failover, beyond gRPC (which ignores the field): when the EDS resource sets
//! `policy.overprovisioning_factor`, traffic is spread over priorities as Envoy does. A
//! priority's health is `min(100%, factor × usable endpoints / endpoints)` (usable: EDS
//! health UNKNOWN or HEALTHY); priority 0 gets its health as its share of the load, each
//! next priority its health up to what is left, and if the healths sum to less than 100%
//! they are scaled up to fill it. A request starts at the priority its share draws and falls
//! back to the others (highest first) when none of its endpoints is ready. Without the
//! factor, failover is gRPC's: all traffic to the highest priority with a ready endpoint.
//! Locality weights are not scaled by locality health (Envoy does that only with
//! `locality_weighted_lb_config`).
//!
//! Aggregate clusters (gRFC A37, A75, [`ClusterPool::aggregate`]) concatenate their leaf
//! clusters' priorities; each priority keeps its leaf's picker, so the leaf's LB policy and
//! outlier detection apply within it, and a LOGICAL_DNS leaf's single priority picks the
//! first ready address in resolver order (`pick_first`). Unlike gRPC's pick_first, every
//! resolved address is connected at once and the first *ready* one in order wins, so an
//! earlier address that becomes ready later takes the traffic back. A priority that is
//! still CONNECTING does not hold traffic (there is no A56 failover timer): right after a
//! channel starts, the first RPCs may go to a lower priority whose connection was ready
//! first. Each endpoint knows whether its own priority runs WRR
//! ([`PoolEndpoint::wrr_penalty`]), so ORCA reports can be read per leaf of an aggregate.
//!
//! Deviation from gRPC's tree: gRPC runs `weighted_target` over localities and one child
//! policy per locality. We flatten a priority's localities into one endpoint list:
//! round robin gets weights `locality_weight × endpoint_weight / locality's endpoint weight
//! sum` (so each locality's share is its weight), ring hash gets `locality_weight ×
//! endpoint_weight` (exactly A42, which also flattens), and least request / peak EWMA
//! ignore weights (A48 does too) and sample across the whole priority instead of first
//! choosing a locality by weight.

mod least_request;
pub mod load;
pub mod outlier;
mod p2c_ewma;
pub mod ring_hash;
mod round_robin;
pub mod wrr;

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::Rng;

pub use least_request::{DEFAULT_CHOICE_COUNT, MAX_CHOICE_COUNT};
pub use load::{EndpointLoad, InFlightGuard, coarse_now_ns, now_ns};
pub use outlier::{OutlierDetector, OutlierRegistry};
pub use ring_hash::request_hash;

use crate::config::{ClusterLoadAssignment, LbPolicy};
use crate::transport::{ConnectionSet, ConnectivityState, EndpointConnection};

/// What the route decided that a picker may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext<'a> {
    /// The request hash from the route's `hash_policy` (gRFC A42); `None`: a ring-hash pool
    /// uses a random one.
    pub hash: Option<u64>,
    /// The request headers, for a ring hash with an A76 `request_hash_header`.
    pub headers: Option<&'a http::HeaderMap>,
}

/// The result of one priority's picker.
#[derive(Debug)]
enum Outcome<'a> {
    Picked(&'a PoolEndpoint),
    /// Wait: the endpoint this request belongs to is still connecting (ring hash).
    Queue,
    /// No endpoint of this priority is ready: try the next priority.
    NoneReady,
}

#[derive(Debug)]
enum Picker {
    RoundRobin(round_robin::RoundRobin),
    LeastRequest {
        choice_count: u32,
    },
    RingHash(ring_hash::Ring),
    PeakEwma,
    Wrr(wrr::Wrr),
    /// gRFC A37: a LOGICAL_DNS priority picks the first ready address, in resolver order.
    PickFirst,
}

/// One priority level's endpoints and its picker.
#[derive(Debug)]
struct PriorityPool {
    endpoints: Vec<PoolEndpoint>,
    picker: Picker,
}

/// An endpoint as its pool sees it: the connection and, under outlier detection (gRFC A50),
/// its address's ejection state. It derefs to the [`EndpointConnection`]; [`Self::state`],
/// [`Self::is_ready`] and [`Self::start_request`] take the ejection into account.
#[derive(Debug, Clone)]
pub struct PoolEndpoint {
    conn: EndpointConnection,
    outlier: Option<Arc<outlier::AddressOutlier>>,
    /// gRFC A58: the `error_utilization_penalty` of the WRR policy picking this endpoint;
    /// `None` under any other policy.
    wrr_penalty: Option<f32>,
}

impl std::ops::Deref for PoolEndpoint {
    type Target = EndpointConnection;

    fn deref(&self) -> &EndpointConnection {
        &self.conn
    }
}

impl PoolEndpoint {
    /// The connection.
    pub fn connection(&self) -> &EndpointConnection {
        &self.conn
    }

    /// The `error_utilization_penalty` when the endpoint's own priority picks with client-side
    /// WRR (gRFC A58), i.e. when its calls' ORCA reports should be read. Unlike
    /// [`ClusterPool::policy`], this is right for each leaf of an aggregate cluster (A75).
    pub fn wrr_penalty(&self) -> Option<f32> {
        self.wrr_penalty
    }

    /// Whether outlier detection has ejected the address (gRFC A50).
    pub fn is_ejected(&self) -> bool {
        self.outlier.as_ref().is_some_and(|o| o.is_ejected())
    }

    /// The connectivity the pickers see: TRANSIENT_FAILURE while ejected (A50), else the
    /// connection's.
    pub fn state(&self) -> ConnectivityState {
        if self.is_ejected() {
            ConnectivityState::TransientFailure
        } else {
            self.conn.state()
        }
    }

    /// Whether a picker may choose the endpoint now: READY and not ejected.
    pub fn is_ready(&self) -> bool {
        !self.is_ejected() && self.conn.is_ready()
    }

    /// As [`EndpointConnection::start_request`]; under outlier detection the guard also
    /// counts the call's result (see [`InFlightGuard::record_call`]).
    pub fn start_request(&self) -> InFlightGuard {
        self.conn
            .start_request()
            .with_outcome(self.outlier.clone().map(outlier::CallOutcome::new))
    }
}

/// The usable endpoints of one cluster, grouped by priority, and its policy.
#[derive(Debug)]
pub struct ClusterPool {
    name: Arc<str>,
    policy: LbPolicy,
    priorities: Vec<PriorityPool>,
    /// gRFC A50: the cluster's detector, kept alive (and its timer running) by its pools.
    outlier: Option<Arc<OutlierDetector>>,
    /// Gentle failover: cumulative per-mille load thresholds, one per priority; empty:
    /// always start at the highest priority.
    priority_loads: Vec<u32>,
    /// gRFC A75: an aggregate pool keeps its leaf clusters' detectors alive.
    leaf_outliers: Vec<Arc<OutlierDetector>>,
}

/// Per mille: the whole load.
const FULL_LOAD: u32 = 1000;

/// Why no endpoint could be picked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickError {
    /// The cluster has no usable (healthy) endpoint at all.
    NoEndpoints,
    /// Endpoints exist but none is ready; some are still connecting.
    Connecting,
    /// Every endpoint failed its last connection attempt.
    AllFailed {
        /// The last error seen on one of them.
        last_error: Option<String>,
    },
}

/// An endpoint of a priority, with what each policy needs of it.
#[derive(Debug)]
struct Member {
    conn: EndpointConnection,
    /// Round-robin weight (locality share split by endpoint weight).
    rr_weight: u64,
    /// Ring-hash weight (locality weight × endpoint weight, A42).
    ring_weight: u64,
    /// Ring-hash key: A76 `hash_key`, else the address.
    hash_key: String,
    /// gRFC A50: the address's outlier state, under outlier detection.
    outlier: Option<Arc<outlier::AddressOutlier>>,
}

impl ClusterPool {
    /// Builds the pool of `cla` under `policy`, reusing connections from `conns` by address
    /// (and security settings: `tls` for mTLS clusters).
    /// Endpoints that are not UNKNOWN/HEALTHY and localities of weight 0 are left out.
    /// With `outlier` (gRFC A50), the detector's address map is synced to the pool's
    /// addresses and each endpoint carries its address's ejection state.
    pub fn build(
        name: &str,
        policy: &LbPolicy,
        cla: &ClusterLoadAssignment,
        conns: &ConnectionSet,
        tls: Option<&crate::transport::TlsClient>,
        outlier: Option<Arc<OutlierDetector>>,
    ) -> Self {
        let ring = matches!(policy, LbPolicy::RingHash { .. });
        let mut by_priority: BTreeMap<u32, Vec<Member>> = BTreeMap::new();
        // (endpoints, usable endpoints) per priority, for gentle failover.
        let mut counts: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
        for loc in &cla.localities {
            if loc.weight == 0 {
                continue;
            }
            let count = counts.entry(loc.priority).or_default();
            count.0 += loc.endpoints.iter().filter(|e| e.weight > 0).count() as u64;
            let usable: Vec<_> = loc
                .endpoints
                .iter()
                .filter(|e| e.health.is_usable() && e.weight > 0)
                .collect();
            count.1 += usable.len() as u64;
            if usable.is_empty() {
                continue;
            }
            // Locality weight is split across its endpoints in proportion to their weights,
            // so a locality's share of traffic is its weight (gRFC A27 weighted_target).
            let endpoint_total: u64 = usable.iter().map(|e| u64::from(e.weight)).sum();
            let entry = by_priority.entry(loc.priority).or_default();
            entry.reserve(usable.len());
            for e in usable {
                let w = u64::from(loc.weight) * u64::from(e.weight) * 1000 / endpoint_total.max(1);
                entry.push(Member {
                    conn: conns.get_or_connect_with(e.address, tls),
                    rr_weight: w.max(1),
                    ring_weight: u64::from(loc.weight) * u64::from(e.weight),
                    // Only a ring needs the key (formatting every address costs more than
                    // the rest of a member).
                    hash_key: if ring {
                        e.hash_key
                            .clone()
                            .filter(|k| !k.is_empty())
                            .unwrap_or_else(|| e.address.to_string())
                    } else {
                        String::new()
                    },
                    outlier: outlier.as_ref().map(|d| d.address(e.address)),
                });
            }
        }
        if let Some(d) = &outlier {
            d.retain(
                &by_priority
                    .values()
                    .flatten()
                    .map(|m| m.conn.addr())
                    .collect(),
            );
        }
        // Priorities without a usable endpoint have no pool (and health 0).
        let health: Vec<u32> = match cla.overprovisioning_factor {
            None => Vec::new(),
            Some(factor) => by_priority
                .keys()
                .map(|p| {
                    let (total, usable) = counts.get(p).copied().unwrap_or_default();
                    priority_health(factor, usable, total)
                })
                .collect(),
        };
        let mut pool = Self::from_priorities(name, policy, by_priority.into_values().collect());
        pool.priority_loads = cumulative(&priority_loads(&health));
        pool.outlier = outlier;
        pool
    }

    fn from_priorities(name: &str, policy: &LbPolicy, priorities: Vec<Vec<Member>>) -> Self {
        let priorities = priorities
            .into_iter()
            .map(|members| {
                let picker = match policy {
                    LbPolicy::RoundRobin => {
                        let weights: Vec<u64> = members.iter().map(|m| m.rr_weight).collect();
                        Picker::RoundRobin(round_robin::RoundRobin::new(&weights))
                    }
                    LbPolicy::LeastRequest { choice_count } => Picker::LeastRequest {
                        choice_count: (*choice_count).clamp(2, least_request::MAX_CHOICE_COUNT),
                    },
                    LbPolicy::RingHash {
                        min_ring,
                        max_ring,
                        request_hash_header,
                    } => {
                        let keys: Vec<(String, u64)> = members
                            .iter()
                            .map(|m| (m.hash_key.clone(), m.ring_weight))
                            .collect();
                        Picker::RingHash(ring_hash::Ring::build(
                            &keys,
                            *min_ring,
                            *max_ring,
                            request_hash_header.as_deref(),
                        ))
                    }
                    LbPolicy::WeightedRoundRobin(params) => Picker::Wrr(wrr::Wrr::new(*params)),
                    LbPolicy::PickFirst => Picker::PickFirst,
                    LbPolicy::PeakEwma { decay, default_rtt } => {
                        for m in &members {
                            m.conn.load().configure_ewma(*decay, *default_rtt);
                        }
                        Picker::PeakEwma
                    }
                };
                let wrr_penalty = match policy {
                    LbPolicy::WeightedRoundRobin(p) => Some(p.error_utilization_penalty),
                    _ => None,
                };
                // Not `into_iter().map().collect()`: that would reuse the members' (larger)
                // allocation for the snapshot, which lives as long as the pool.
                let mut endpoints = Vec::with_capacity(members.len());
                endpoints.extend(members.into_iter().map(|m| PoolEndpoint {
                    conn: m.conn,
                    outlier: m.outlier,
                    wrr_penalty,
                }));
                PriorityPool { endpoints, picker }
            })
            .collect();
        ClusterPool {
            name: name.into(),
            policy: policy.clone(),
            priorities,
            outlier: None,
            priority_loads: Vec::new(),
            leaf_outliers: Vec::new(),
        }
    }

    /// The pool of an aggregate cluster (gRFC A37, A75): the `leaves`' priorities
    /// concatenated in order, each priority keeping the picker of the leaf it came from
    /// (its LB policy, its outlier detection). A pick takes the first priority with a ready
    /// endpoint, so traffic fails over from one leaf cluster to the next. `policy` is only
    /// reported by [`Self::policy`] (A75 ignores the aggregate's own policy).
    pub fn aggregate(name: &str, policy: &LbPolicy, leaves: Vec<ClusterPool>) -> Self {
        let mut priorities = Vec::new();
        let mut leaf_outliers = Vec::new();
        for leaf in leaves {
            priorities.extend(leaf.priorities);
            leaf_outliers.extend(leaf.outlier);
            leaf_outliers.extend(leaf.leaf_outliers);
        }
        ClusterPool {
            name: name.into(),
            policy: policy.clone(),
            priorities,
            outlier: None,
            priority_loads: Vec::new(),
            leaf_outliers,
        }
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoint-picking policy.
    pub fn policy(&self) -> &LbPolicy {
        &self.policy
    }

    /// Every endpoint of the pool, highest priority first.
    pub fn endpoints(&self) -> impl Iterator<Item = &PoolEndpoint> {
        self.priorities.iter().flat_map(|p| p.endpoints.iter())
    }

    /// The cluster's outlier detector (gRFC A50), if it has one.
    pub fn outlier_detector(&self) -> Option<&Arc<OutlierDetector>> {
        self.outlier.as_ref()
    }

    /// Picks a ready endpoint: the first priority that has one, the cluster's policy within
    /// it. Call [`PoolEndpoint::start_request`] on the result and keep the guard until
    /// the response headers arrive, so the load-aware policies see the request.
    ///
    /// Only the policies that need the time (peak EWMA, WRR) read it, from the coarse clock
    /// ([`coarse_now_ns`]): a precise read would cost about as much as the rest of the pick.
    pub fn pick(&self, ctx: &PickContext<'_>) -> Result<&PoolEndpoint, PickError> {
        self.pick_with(ctx, &mut rand::rng(), CoarseClock)
    }

    /// [`ClusterPool::pick`] with a given random source and clock (a `u64` is a fixed time
    /// in ns, see [`now_ns`]).
    fn pick_with<R: Rng + ?Sized, C: PickClock>(
        &self,
        ctx: &PickContext<'_>,
        rng: &mut R,
        clock: C,
    ) -> Result<&PoolEndpoint, PickError> {
        if self.priorities.is_empty() {
            return Err(PickError::NoEndpoints);
        }
        let start = if self.priority_loads.is_empty() {
            0
        } else {
            let draw = rng.random_range(0..FULL_LOAD);
            self.priority_loads
                .iter()
                .position(|&upto| draw < upto)
                .unwrap_or(0)
        };
        let order =
            std::iter::once(start).chain((0..self.priorities.len()).filter(|&i| i != start));
        for p in order.filter_map(|i| self.priorities.get(i)) {
            let eps = p.endpoints.as_slice();
            let outcome = match &p.picker {
                Picker::RoundRobin(rr) => rr.pick(eps).into(),
                Picker::LeastRequest { choice_count } => {
                    least_request::pick(eps, *choice_count, rng).into()
                }
                Picker::PeakEwma => p2c_ewma::pick(eps, clock.now(), rng).into(),
                Picker::Wrr(w) => w.pick(eps, clock.now()).into(),
                Picker::RingHash(ring) => ring.pick(eps, ctx.hash, ctx.headers, rng),
                Picker::PickFirst => eps.iter().find(|e| e.is_ready()).into(),
            };
            match outcome {
                Outcome::Picked(ep) => return Ok(ep),
                Outcome::Queue => return Err(PickError::Connecting),
                Outcome::NoneReady => {}
            }
        }
        let mut any_pending = false;
        let mut last_error = None;
        for ep in self.endpoints() {
            match ep.state() {
                ConnectivityState::TransientFailure => {
                    if last_error.is_none() {
                        last_error = if ep.is_ejected() {
                            Some("ejected by outlier detection".to_string())
                        } else {
                            ep.last_error()
                        };
                    }
                }
                _ => any_pending = true,
            }
        }
        if any_pending {
            Err(PickError::Connecting)
        } else {
            Err(PickError::AllFailed { last_error })
        }
    }
}

/// Where a pick reads the time, and only when its policy needs it.
trait PickClock {
    fn now(&self) -> u64;
}

/// The coarse clock ([`coarse_now_ns`]).
struct CoarseClock;

impl PickClock for CoarseClock {
    fn now(&self) -> u64 {
        coarse_now_ns()
    }
}

/// A fixed time (tests).
impl PickClock for u64 {
    fn now(&self) -> u64 {
        *self
    }
}

impl<'a> From<Option<&'a PoolEndpoint>> for Outcome<'a> {
    fn from(ep: Option<&'a PoolEndpoint>) -> Self {
        ep.map_or(Outcome::NoneReady, Outcome::Picked)
    }
}

/// A priority's health in per mille (Envoy): `factor` percent × `usable / total`, capped at
/// the whole; 0 for an empty priority.
fn priority_health(factor: u32, usable: u64, total: u64) -> u32 {
    if total == 0 {
        return 0;
    }
    let h = u64::from(factor) * 10 * usable / total;
    u32::try_from(h.min(u64::from(FULL_LOAD))).unwrap_or(FULL_LOAD)
}

/// Envoy's priority loads (per mille) from the priorities' healths: each priority takes its
/// health, up to what the higher ones left; healths summing to less than the whole are scaled
/// up to fill it, and a rounding remainder goes to the first loaded priority. All healths 0
/// (or none): empty, i.e. gRPC's failover.
fn priority_loads(health: &[u32]) -> Vec<u32> {
    let total = health
        .iter()
        .map(|&h| u64::from(h))
        .sum::<u64>()
        .min(u64::from(FULL_LOAD));
    if total == 0 {
        return Vec::new();
    }
    let mut left = FULL_LOAD;
    let mut loads: Vec<u32> = health
        .iter()
        .map(|&h| {
            let scaled = u64::from(h) * u64::from(FULL_LOAD) / total;
            let load = u32::try_from(scaled).unwrap_or(FULL_LOAD).min(left);
            left -= load;
            load
        })
        .collect();
    if let Some(first) = loads.iter_mut().find(|l| **l > 0) {
        *first += left;
    }
    loads
}

/// Running sums of `loads`.
fn cumulative(loads: &[u32]) -> Vec<u32> {
    loads
        .iter()
        .scan(0u32, |sum, &l| {
            *sum += l;
            Some(*sum)
        })
        .collect()
}

/// The first ready endpoint at or after `start`, wrapping around.
fn first_ready_from(eps: &[PoolEndpoint], start: usize) -> Option<&PoolEndpoint> {
    let n = eps.len();
    (0..n)
        .filter_map(|i| eps.get((start + i) % n))
        .find(|e| e.is_ready())
}

/// Bench support (`bench` feature, for `mesh-benches` only): not part of the API.
#[cfg(feature = "bench")]
impl ClusterPool {
    /// A one-priority pool of `n` READY endpoints of weight 1 with no connection behind
    /// them (addresses 127.x.y.z:8080), picking with `policy`, so criterion can time picks.
    #[doc(hidden)]
    pub fn for_bench(policy: &LbPolicy, n: usize) -> Self {
        let members = (0..n)
            .map(|i| {
                let ip = u32::try_from(i).unwrap_or(u32::MAX) & 0x00ff_ffff;
                let addr =
                    std::net::SocketAddr::from((std::net::Ipv4Addr::from(0x7f00_0000 | ip), 8080));
                Member {
                    conn: EndpointConnection::test_ready(addr),
                    rr_weight: 1,
                    ring_weight: 1,
                    hash_key: addr.to_string(),
                    outlier: None,
                }
            })
            .collect();
        Self::from_priorities("bench", policy, vec![members])
    }
}

#[cfg(test)]
mod tests;
