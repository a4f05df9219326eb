//! Certificate lifetime of accepted TLS connections (certificates from gRFC A29 providers):
//! a connection lives no longer than the certificates it was authenticated with.
//!
//! Each handshake runs with a [`Presenting`] resolver around the filter chain's own: it
//! records the leaf this server presents, and refuses to present one that has expired (the
//! handshake then fails with an error naming the certificate, never a fallback to
//! plaintext). Once the handshake is done, [`CertDeadline::earliest`] is the earlier
//! expiry of that leaf and the verified peer leaf; at that instant the server drains the
//! connection (GOAWAY, in-flight streams get `drain_grace`), so neither a client whose
//! certificate expired nor a server whose own did keeps an old connection. New
//! connections always take the filter chain's current certificate, so rotation is
//! unaffected. The client side does the same (`mesh_client::transport`).
//!
//! X.509 `notAfter` has one-second resolution and is inclusive: a certificate is valid
//! through the whole second it names, and expired from the next (as webpki, which verifies
//! peers, decides it). That next second is the deadline used here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Whose certificate a deadline belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The certificate this server presented.
    Ours,
    /// The client's verified certificate.
    Peer,
}

impl Holder {
    /// How logs name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Holder::Ours => "ours",
            Holder::Peer => "peer",
        }
    }
}

/// What the logs say about one leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Leaf {
    /// The first URI SAN (the SPIFFE ID of an SVID), or `-`.
    pub(crate) uri: String,
    /// The serial number, lowercase hex.
    pub(crate) serial_hex: String,
    /// The first instant the certificate is no longer valid: one second past `notAfter`.
    pub(crate) expires_at: SystemTime,
    /// `notAfter` as the certificate states it.
    pub(crate) not_after: String,
}

impl Leaf {
    /// The leaf of a chain (leaf first); `None` if it does not parse.
    pub(crate) fn of_chain(chain: &[CertificateDer<'_>]) -> Option<Leaf> {
        let der = chain.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let not_after = cert.validity().not_after;
        let seconds = u64::try_from(not_after.timestamp()).ok()?;
        let expires_at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds + 1))?;
        let identity = mesh_client::identity::peer_identity(chain);
        let uri = identity
            .as_ref()
            .and_then(|i| i.cert.uri_sans.first().cloned())
            .unwrap_or_else(|| "-".to_owned());
        Some(Leaf {
            uri,
            serial_hex: cert
                .raw_serial()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            expires_at,
            not_after: not_after.to_string(),
        })
    }

    /// Whether the certificate has expired at `now`.
    pub(crate) fn is_expired_at(&self, now: SystemTime) -> bool {
        now >= self.expires_at
    }
}

/// When a TLS connection stops being trusted, and because of which certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertDeadline {
    /// Whose certificate expires first.
    pub(crate) holder: Holder,
    /// That certificate.
    pub(crate) leaf: Leaf,
}

impl CertDeadline {
    /// The earlier expiry of our presented leaf and the peer's (`None` without either).
    pub(crate) fn earliest(ours: Option<Leaf>, peer: Option<Leaf>) -> Option<CertDeadline> {
        let ours = ours.map(|leaf| CertDeadline {
            holder: Holder::Ours,
            leaf,
        });
        let peer = peer.map(|leaf| CertDeadline {
            holder: Holder::Peer,
            leaf,
        });
        match (ours, peer) {
            (Some(o), Some(p)) if p.leaf.expires_at < o.leaf.expires_at => Some(p),
            (Some(o), _) => Some(o),
            (None, p) => p,
        }
    }

    /// Resolves when the certificate expires (at once if it has).
    pub(crate) async fn reached(&self) {
        let left = self
            .leaf
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(left).await;
    }

    /// One line for the log: which certificate expired, when.
    pub(crate) fn describe(&self) -> String {
        let whose = match self.holder {
            Holder::Ours => "this server's own certificate",
            Holder::Peer => "the client's certificate",
        };
        format!(
            "{whose} {} (serial {}) expired at {} (notAfter)",
            self.leaf.uri, self.leaf.serial_hex, self.leaf.not_after
        )
    }
}

/// The filter chain's certificate resolver for one handshake: records the leaf presented,
/// and refuses an expired one.
#[derive(Debug)]
pub(crate) struct Presenting {
    inner: Arc<dyn ResolvesServerCert>,
    /// The last resolution: the leaf presented, or why none was.
    outcome: Mutex<Option<Result<Option<Leaf>, String>>>,
}

impl Presenting {
    /// A copy of `config` whose resolver is a new [`Presenting`] around its own, and that
    /// resolver (to read after the handshake).
    pub(crate) fn wrap(
        config: &rustls::ServerConfig,
    ) -> (Arc<rustls::ServerConfig>, Arc<Presenting>) {
        let presenting = Arc::new(Presenting {
            inner: config.cert_resolver.clone(),
            outcome: Mutex::new(None),
        });
        let mut config = config.clone();
        config.cert_resolver = presenting.clone();
        (Arc::new(config), presenting)
    }

    fn outcome(&self) -> Option<Result<Option<Leaf>, String>> {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The leaf presented in the handshake, if one was and it parses.
    pub(crate) fn presented(&self) -> Option<Leaf> {
        self.outcome().and_then(Result::ok).flatten()
    }

    /// Why the handshake presented no certificate because ours had expired.
    pub(crate) fn refusal(&self) -> Option<String> {
        self.outcome().and_then(Result::err)
    }
}

impl ResolvesServerCert for Presenting {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let key = self.inner.resolve(client_hello)?;
        let leaf = Leaf::of_chain(&key.cert);
        let (outcome, key) = match leaf {
            Some(leaf) if leaf.is_expired_at(SystemTime::now()) => (
                Err(format!(
                    "own certificate {} (serial {}) expired at {} (notAfter): refusing the \
                     TLS handshake rather than presenting it; renew the certificate files of \
                     the filter chain's identity provider",
                    leaf.uri, leaf.serial_hex, leaf.not_after
                )),
                None,
            ),
            leaf => (Ok(leaf), Some(key)),
        };
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
        key
    }

    fn only_raw_public_keys(&self) -> bool {
        self.inner.only_raw_public_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(serial: &str, expires_at: SystemTime) -> Leaf {
        Leaf {
            uri: format!("spiffe://td/ns/default/sa/{serial}"),
            serial_hex: serial.to_owned(),
            expires_at,
            not_after: "-".to_owned(),
        }
    }

    #[test]
    fn the_earlier_certificate_ends_the_connection() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let early = leaf("a1", t);
        let late = leaf("b2", t + Duration::from_secs(5));
        let d = CertDeadline::earliest(Some(early.clone()), Some(late.clone())).unwrap();
        assert_eq!((d.holder, d.leaf.serial_hex.as_str()), (Holder::Ours, "a1"));
        let d = CertDeadline::earliest(Some(late.clone()), Some(early.clone())).unwrap();
        assert_eq!((d.holder, d.leaf.serial_hex.as_str()), (Holder::Peer, "a1"));
        // A tie is ours: our own certificate is what the operator renews.
        let d = CertDeadline::earliest(Some(early.clone()), Some(early.clone())).unwrap();
        assert_eq!(d.holder, Holder::Ours);
        let d = CertDeadline::earliest(None, Some(late.clone())).unwrap();
        assert_eq!(d.holder, Holder::Peer);
        assert!(CertDeadline::earliest(None, None).is_none());
        assert!(
            d.describe()
                .starts_with("the client's certificate spiffe://td/ns/default/sa/b2 (serial b2)")
        );
    }

    #[test]
    fn not_after_is_inclusive_to_the_second() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_001);
        let l = leaf("c3", t);
        assert!(!l.is_expired_at(t - Duration::from_millis(1)));
        assert!(l.is_expired_at(t));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_deadline_is_reached_at_once() {
        let past = SystemTime::now() - Duration::from_secs(10);
        let d = CertDeadline::earliest(Some(leaf("d4", past)), None).unwrap();
        tokio::time::timeout(Duration::from_millis(1), d.reached())
            .await
            .unwrap();
    }
}
