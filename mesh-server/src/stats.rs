//! Counters of a [`crate::MeshServer`]: RBAC decisions (enforced and shadow), refused
//! requests, and connections (accepted, refused, open, ended by certificate expiry). Cheap atomics, readable at any time through [`crate::MeshServerBuilder::stats`].

use std::sync::atomic::{AtomicU64, Ordering};

/// Server counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub(crate) rbac_allowed: AtomicU64,
    pub(crate) rbac_denied: AtomicU64,
    pub(crate) shadow_allowed: AtomicU64,
    pub(crate) shadow_denied: AtomicU64,
    pub(crate) bad_paths: AtomicU64,
    pub(crate) no_route: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) tls_handshake_failures: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_expired: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests RBAC allowed.
    pub rbac_allowed: u64,
    /// Requests RBAC denied (PERMISSION_DENIED).
    pub rbac_denied: u64,
    /// Shadow-rule decisions that would have allowed (the request was not affected).
    pub shadow_allowed: u64,
    /// Shadow-rule decisions that would have denied (the request was not affected).
    pub shadow_denied: u64,
    /// Requests refused for a non-canonical `:path` or authority.
    pub bad_paths: u64,
    /// Requests that matched no route, or a route that is not `non_forwarding_action`.
    pub no_route: u64,
    /// Connections closed at accept (not serving, or no filter chain matched).
    pub connections_refused: u64,
    /// Connections accepted and matched to a filter chain.
    pub connections_accepted: u64,
    /// TLS handshakes that failed (untrusted, wrong or expired client certificate,
    /// plaintext on a TLS-only chain, timeouts, this server's own certificate expired).
    pub tls_handshake_failures: u64,
    /// Connections open now (accepted and not yet closed).
    pub connections_open: u64,
    /// TLS connections drained (or closed before serving) because a certificate they were
    /// authenticated with, this server's or the client's, reached its `notAfter`.
    pub connections_expired: u64,
}

impl ServerStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            rbac_allowed: r(&self.rbac_allowed),
            rbac_denied: r(&self.rbac_denied),
            shadow_allowed: r(&self.shadow_allowed),
            shadow_denied: r(&self.shadow_denied),
            bad_paths: r(&self.bad_paths),
            no_route: r(&self.no_route),
            connections_refused: r(&self.connections_refused),
            connections_accepted: r(&self.connections_accepted),
            tls_handshake_failures: r(&self.tls_handshake_failures),
            connections_open: r(&self.connections_open),
            connections_expired: r(&self.connections_expired),
        }
    }

    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dec(c: &AtomicU64) {
        c.fetch_sub(1, Ordering::Relaxed);
    }
}
