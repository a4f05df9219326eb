//! Ring hash (gRFC A42, with the picker of A61/A76 and A76's endpoint `hash_key` and
//! `request_hash_header`), and the request hash computed from a route's `hash_policy`.
//!
//! The ring is built once per priority when the pool is built, as Envoy and gRPC build it:
//! each endpoint gets a number of entries in proportion to its weight (locality weight ×
//! endpoint weight, A42), such that the lightest endpoint has a whole number of entries and
//! the ring has at least `min_ring` and at most `max_ring` entries. An entry's hash is
//! XXH64 (seed 0) of `"{key}_{n}"`, where the key is the endpoint's A76 `hash_key` or else
//! its address (`ip:port`, IPv6 in brackets). A request's hash selects the first entry at
//! or after it, clockwise.
//!
//! Deviation: gRPC's ring_hash connects lazily, driven by picks; our connections are all
//! kept warm by [`crate::transport`], so IDLE is rare and never needs a pick to trigger it.
//! An endpoint that is CONNECTING after a failure is treated as still failed (A42's sticky
//! TRANSIENT_FAILURE), read from its last error on this not-ready path only.

use http::HeaderMap;
use rand::Rng;
use xxhash_rust::xxh64::xxh64;

use super::Outcome;
use super::PoolEndpoint;
use crate::config::{HashPolicy, HashPolicyKind};
use crate::transport::ConnectivityState;

/// Default `minimum_ring_size` (A42).
pub const DEFAULT_MIN_RING: u64 = 1024;
/// Default `maximum_ring_size` in xDS (Envoy's default; A42 keeps it, then caps it).
pub const DEFAULT_MAX_RING: u64 = 8 * 1024 * 1024;
/// Ring sizes above this are NACKed (A42, as Envoy).
pub const RING_SIZE_LIMIT: u64 = 8 * 1024 * 1024;
/// The client-side cap on both ring sizes (A42: "the default cap is 4096").
pub const RING_SIZE_CAP: u64 = 4096;

/// XXH64 with seed 0, the hash of A42.
pub fn hash_bytes(b: &[u8]) -> u64 {
    xxh64(b, 0)
}

/// The request hash of a route's `hash_policy` (gRFC A42): each policy that yields a hash is
/// folded in as `hash = rotl(hash, 1) ^ policy_hash`; a `terminal` policy stops the walk
/// once some hash exists. `None` when no policy yields one (the picker then uses a random
/// hash). `channel_id` is the channel's `io.grpc.channel_id`.
pub fn request_hash(policies: &[HashPolicy], headers: &HeaderMap, channel_id: u64) -> Option<u64> {
    let mut hash: Option<u64> = None;
    for p in policies {
        let h = match &p.kind {
            HashPolicyKind::Header { name, rewrite } if !name.ends_with("-bin") => {
                crate::config::joined_header_value(headers, name).map(|v| match rewrite {
                    Some((re, sub)) => hash_bytes(re.replace_all(&v, sub.as_str()).as_bytes()),
                    None => hash_bytes(v.as_bytes()),
                })
            }
            HashPolicyKind::Header { .. } | HashPolicyKind::Ignored => None,
            HashPolicyKind::ChannelId => Some(channel_id),
        };
        if let Some(h) = h {
            hash = Some(match hash {
                Some(prev) => prev.rotate_left(1) ^ h,
                None => h,
            });
        }
        if p.terminal && hash.is_some() {
            break;
        }
    }
    hash
}

/// One priority's ring.
#[derive(Debug)]
pub(super) struct Ring {
    /// `(hash, endpoint index)`, sorted by hash.
    entries: Vec<(u64, usize)>,
    /// A76: hash this header's value instead of the route's hash.
    request_hash_header: Option<http::HeaderName>,
}

impl Ring {
    /// Builds the ring of endpoints given as `(hash key, weight)`, index-aligned with the
    /// priority's endpoints. Weights of 0 count as 1.
    pub(super) fn build(
        members: &[(String, u64)],
        min_ring: u64,
        max_ring: u64,
        request_hash_header: Option<&str>,
    ) -> Self {
        let request_hash_header =
            request_hash_header.and_then(|h| http::HeaderName::from_bytes(h.as_bytes()).ok());
        let total: f64 = members.iter().map(|(_, w)| (*w).max(1) as f64).sum();
        if members.is_empty() || total <= 0.0 {
            return Ring {
                entries: Vec::new(),
                request_hash_header,
            };
        }
        let max_ring = max_ring.max(1);
        let min_ring = min_ring.clamp(1, max_ring);
        let min_norm = members
            .iter()
            .map(|(_, w)| (*w).max(1) as f64 / total)
            .fold(f64::INFINITY, f64::min);
        // Scale so the lightest endpoint gets a whole number of entries, within the bounds.
        let scale = ((min_norm * min_ring as f64).ceil() / min_norm).min(max_ring as f64);
        let mut entries = Vec::with_capacity(scale.ceil() as usize);
        let mut current = 0.0f64;
        let mut target = 0.0f64;
        for (idx, (key, w)) in members.iter().enumerate() {
            target += scale * ((*w).max(1) as f64 / total);
            let mut n = 0u64;
            // The epsilon absorbs float error, which would otherwise add an entry past
            // `max_ring` now and then.
            while current + 1e-9 < target {
                entries.push((hash_bytes(format!("{key}_{n}").as_bytes()), idx));
                n += 1;
                current += 1.0;
            }
        }
        entries.sort_unstable();
        Ring {
            entries,
            request_hash_header,
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries per endpoint index.
    #[cfg(test)]
    pub(super) fn counts(&self, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for (_, i) in &self.entries {
            if let Some(x) = c.get_mut(*i) {
                *x += 1;
            }
        }
        c
    }

    /// The endpoint index owning `hash` when every endpoint is ready.
    #[cfg(test)]
    pub(super) fn owner(&self, hash: u64) -> Option<usize> {
        let first = self.entries.partition_point(|(h, _)| *h < hash) % self.entries.len().max(1);
        self.entries.get(first).map(|(_, i)| *i)
    }

    /// Picks for a request: its hash is the A76 header's if configured, else `hash` (from the
    /// route), else random. Walking clockwise from the hash, the first READY endpoint wins;
    /// with a request-specific hash, meeting an endpoint that is still connecting (and has not
    /// failed) first queues the pick, so the request keeps its endpoint; with a random hash
    /// not-ready entries are just skipped (A76).
    pub(super) fn pick<'a, R: Rng + ?Sized>(
        &self,
        eps: &'a [PoolEndpoint],
        hash: Option<u64>,
        headers: Option<&HeaderMap>,
        rng: &mut R,
    ) -> Outcome<'a> {
        let len = self.entries.len();
        if len == 0 {
            return Outcome::NoneReady;
        }
        let hash = match (&self.request_hash_header, headers) {
            (Some(name), Some(h)) => crate::config::joined_header_value(h, name.as_str())
                .filter(|v| !v.is_empty())
                .map(|v| hash_bytes(v.as_bytes())),
            (Some(_), None) => None,
            (None, _) => hash,
        };
        let (hash, random) = match hash {
            Some(h) => (h, false),
            None => (rng.random::<u64>(), true),
        };
        // Clockwise from the first entry at or after the hash, wrapping around once (no
        // division per step: the walk is most of a pick).
        let first = self.entries.partition_point(|(h, _)| *h < hash);
        let (before, after) = self.entries.split_at_checked(first).unwrap_or_default();
        let mut pending = false;
        for (_, idx) in after.iter().chain(before) {
            let Some(ep) = eps.get(*idx) else {
                continue;
            };
            match ep.state() {
                ConnectivityState::Ready => return Outcome::Picked(ep),
                ConnectivityState::TransientFailure => {}
                ConnectivityState::Idle | ConnectivityState::Connecting => {
                    if ep.last_error().is_none() {
                        if !random {
                            return Outcome::Queue;
                        }
                        pending = true;
                    }
                }
            }
        }
        if pending {
            Outcome::Queue
        } else {
            Outcome::NoneReady
        }
    }
}
