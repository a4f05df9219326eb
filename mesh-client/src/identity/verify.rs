//! rustls verifiers for mesh mTLS: chain validation, the SPIFFE checks of gRFC A87, and the
//! `match_subject_alt_names` SAN matching of gRFC A29. No hostname check is done: as in
//! gRPC's xDS credentials, the mesh identity is the SAN check.
//!
//! The order follows gRFC A87: (1) the leaf must be a well-formed X.509-SVID — exactly one
//! URI SAN holding a valid SPIFFE ID, and (stricter than gRPC) basicConstraints cA=false,
//! keyUsage with digitalSignature and without keyCertSign/cRLSign; (2) with a trust bundle
//! map, the roots are those of the SPIFFE ID's trust domain; (3) the chain must verify
//! against those roots (webpki); (4) the SANs must match one of the configured matchers
//! (none configured accepts any). SVID checks apply whenever a bundle map is in use, and
//! with plain CA roots unless [`PeerValidation::require_svid`] is turned off (gRPC's
//! behaviour). Every error names the identity presented and, for SAN mismatches, the
//! identities expected.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::provider::Roots;
use super::spiffe::SpiffeId;
use crate::config::{StringMatchKind, StringMatcher};

/// Which kind of SubjectAltName a [`SanMatcher`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SanType {
    /// Any SAN (Envoy's untyped `match_subject_alt_names`, which Istio sends): each of the
    /// URI, DNS, email and IP SANs is tried on its own.
    Any,
    /// URI SANs only (SPIFFE IDs).
    Uri,
    /// DNS SANs only; `exact` honours a `*.` wildcard in the SAN.
    Dns,
    /// Email (rfc822Name) SANs only.
    Email,
    /// IP address SANs only, as text.
    IpAddress,
}

/// One `match_subject_alt_names` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SanMatcher {
    /// The SAN kind it applies to.
    pub san_type: SanType,
    /// The string match.
    pub matcher: StringMatcher,
}

impl SanMatcher {
    /// Matches a URI SAN exactly, e.g. a SPIFFE ID.
    pub fn exact_uri(value: impl Into<String>) -> Self {
        Self::new(SanType::Uri, StringMatchKind::Exact(value.into()), false)
    }

    /// A matcher of `kind` for `san_type`.
    pub fn new(san_type: SanType, kind: StringMatchKind, ignore_case: bool) -> Self {
        Self {
            san_type,
            matcher: StringMatcher { kind, ignore_case },
        }
    }

    fn matches(&self, sans: &PeerSans) -> bool {
        let check = |values: &[String]| values.iter().any(|v| self.matcher.matches(v));
        let dns = || {
            sans.dns
                .iter()
                .any(|san| self.matcher.matches(san) || self.wildcard_dns_matches(san))
        };
        match self.san_type {
            SanType::Uri => check(&sans.uri),
            SanType::Dns => dns(),
            SanType::Email => check(&sans.email),
            SanType::IpAddress => check(&sans.ip),
            SanType::Any => check(&sans.uri) || dns() || check(&sans.email) || check(&sans.ip),
        }
    }

    /// A DNS SAN `*.example.com` covers exactly one label for an `exact` matcher.
    fn wildcard_dns_matches(&self, san: &str) -> bool {
        let (StringMatchKind::Exact(want), Some(suffix)) =
            (&self.matcher.kind, san.strip_prefix("*."))
        else {
            return false;
        };
        match want.split_once('.') {
            Some((label, rest)) if !label.is_empty() && !label.contains('*') => {
                rest.eq_ignore_ascii_case(suffix)
            }
            _ => false,
        }
    }
}

impl fmt::Display for SanMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.san_type {
            SanType::Any => {}
            SanType::Uri => f.write_str("uri ")?,
            SanType::Dns => f.write_str("dns ")?,
            SanType::Email => f.write_str("email ")?,
            SanType::IpAddress => f.write_str("ip ")?,
        }
        match &self.matcher.kind {
            StringMatchKind::Exact(s) => write!(f, "exact {s:?}")?,
            StringMatchKind::Prefix(s) => write!(f, "prefix {s:?}")?,
            StringMatchKind::Suffix(s) => write!(f, "suffix {s:?}")?,
            StringMatchKind::Contains(s) => write!(f, "contains {s:?}")?,
            StringMatchKind::Regex(re) => write!(f, "safe_regex {:?}", re.as_str())?,
        }
        if self.matcher.ignore_case {
            f.write_str(" (ignore_case)")?;
        }
        Ok(())
    }
}

/// How a peer's certificate is judged beyond the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerValidation {
    /// `match_subject_alt_names`: the peer must match at least one; empty accepts any.
    pub match_subject_alt_names: Vec<SanMatcher>,
    /// Require a well-formed X.509-SVID even with plain CA roots (default `true`; with a
    /// SPIFFE bundle map it is always required).
    pub require_svid: bool,
}

impl Default for PeerValidation {
    fn default() -> Self {
        Self {
            match_subject_alt_names: Vec::new(),
            require_svid: true,
        }
    }
}

impl PeerValidation {
    /// Adds a SAN matcher.
    pub fn with_san(mut self, matcher: SanMatcher) -> Self {
        self.match_subject_alt_names.push(matcher);
        self
    }
}

/// Why a peer certificate was rejected. Reaches the caller inside the handshake's
/// `io::Error`; [`IdentityError::from_io`] digs it out.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate does not parse.
    #[error("peer certificate does not parse: {0}")]
    Malformed(String),
    /// Not a well-formed X.509-SVID.
    #[error("peer certificate {presented} is not an X.509-SVID: {reason}")]
    NotSvid {
        /// The identity presented (its SANs).
        presented: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The bundle map has no bundle for the SPIFFE ID's trust domain.
    #[error(
        "peer certificate identity {presented} is from trust domain {trust_domain:?}, which has no SPIFFE trust bundle"
    )]
    UnknownTrustDomain {
        /// The SPIFFE ID presented.
        presented: String,
        /// Its trust domain.
        trust_domain: String,
    },
    /// The chain does not verify.
    #[error("peer certificate {presented} is not trusted: {reason}")]
    Untrusted {
        /// The identity presented.
        presented: String,
        /// Why (expired, unknown issuer, ...).
        reason: String,
    },
    /// No SAN matcher matched.
    #[error("peer certificate identity {presented} does not match any of [{expected}]")]
    SanMismatch {
        /// The identity presented.
        presented: String,
        /// The matchers, as text.
        expected: String,
    },
    /// The material has no roots to verify peers with.
    #[error("no root certificates to verify the peer with")]
    NoRoots,
}

// rustls shows `CertificateError::Other` with `{:?}`; make that the readable message.
impl fmt::Debug for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl IdentityError {
    /// The identity error behind a failed handshake's `io::Error`, if that is why it failed
    /// on this side.
    pub fn from_io(error: &std::io::Error) -> Option<&IdentityError> {
        let rustls_error = error.get_ref()?.downcast_ref::<rustls::Error>()?;
        match rustls_error {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<IdentityError>()
            }
            _ => None,
        }
    }

    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// The SANs of a certificate, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PeerSans {
    pub(crate) uri: Vec<String>,
    pub(crate) dns: Vec<String>,
    pub(crate) email: Vec<String>,
    pub(crate) ip: Vec<String>,
}

impl PeerSans {
    pub(crate) fn of(cert: &X509Certificate<'_>) -> Self {
        let mut sans = Self::default();
        let Ok(Some(ext)) = cert.subject_alternative_name() else {
            return sans;
        };
        for name in &ext.value.general_names {
            match name {
                GeneralName::URI(uri) => sans.uri.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => sans.dns.push((*dns).to_owned()),
                GeneralName::RFC822Name(email) => sans.email.push((*email).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*bytes)
                            .ok()
                            .map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    };
                    sans.ip.extend(ip);
                }
                _ => {}
            }
        }
        sans
    }

    /// How the peer is named in errors: its URI SANs, else its DNS SANs, else "with no SAN".
    fn presented(&self) -> String {
        let list = if !self.uri.is_empty() {
            &self.uri
        } else if !self.dns.is_empty() {
            &self.dns
        } else {
            return "(no URI or DNS SAN)".to_owned();
        };
        list.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub(crate) fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    PeerSans::of(cert).uri
}

/// The X.509-SVID leaf rules (stricter than gRPC on the extensions).
pub(crate) fn check_svid(
    cert: &X509Certificate<'_>,
    sans: &PeerSans,
) -> Result<SpiffeId, IdentityError> {
    let not_svid = |reason: String| IdentityError::NotSvid {
        presented: sans.presented(),
        reason,
    };
    let id = match sans.uri.as_slice() {
        [] => {
            return Err(not_svid(
                "it has no URI SAN; an X.509-SVID has exactly one, a SPIFFE ID".into(),
            ));
        }
        [one] => SpiffeId::parse(one)
            .map_err(|e| not_svid(format!("URI SAN {one:?} is not a valid SPIFFE ID: {e}")))?,
        many => {
            return Err(not_svid(format!(
                "it has {} URI SANs; an X.509-SVID has exactly one",
                many.len()
            )));
        }
    };
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            return Err(not_svid(
                "it is a CA certificate (basicConstraints cA=true); a leaf SVID must have cA=false"
                    .into(),
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(not_svid(format!("bad basicConstraints: {e}"))),
    }
    match cert.key_usage() {
        Ok(Some(ku)) => {
            if !ku.value.digital_signature() {
                return Err(not_svid("keyUsage lacks digitalSignature".into()));
            }
            if ku.value.key_cert_sign() || ku.value.crl_sign() {
                return Err(not_svid(
                    "keyUsage has keyCertSign or cRLSign, which a leaf SVID must not".into(),
                ));
            }
        }
        Ok(None) => return Err(not_svid("it has no keyUsage extension".into())),
        Err(e) => return Err(not_svid(format!("bad keyUsage: {e}"))),
    }
    Ok(id)
}

/// Roots ready for webpki.
#[derive(Debug)]
enum TrustStore {
    Roots(Vec<TrustAnchor<'static>>),
    Bundles(BTreeMap<String, Vec<TrustAnchor<'static>>>),
}

fn anchors(roots: &[CertificateDer<'static>]) -> Vec<TrustAnchor<'static>> {
    roots
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .map(|anchor| anchor.to_owned())
        .collect()
}

impl TrustStore {
    fn new(roots: &Roots) -> Self {
        match roots {
            Roots::Certificates(certs) => Self::Roots(anchors(certs)),
            Roots::SpiffeBundles(map) => Self::Bundles(
                map.iter()
                    .map(|(td, bundle)| (td.to_owned(), anchors(&bundle.roots)))
                    .collect(),
            ),
        }
    }
}

/// The part both verifiers share.
#[derive(Debug)]
struct PeerVerifier {
    trust: TrustStore,
    policy: PeerValidation,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PeerVerifier {
    fn new(roots: &Roots, policy: PeerValidation) -> Self {
        Self {
            trust: TrustStore::new(roots),
            policy,
            algorithms: super::crypto_provider().signature_verification_algorithms,
        }
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: KeyUsage,
    ) -> Result<(), IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|e| IdentityError::Malformed(e.to_string()))?;
        let sans = PeerSans::of(&cert);
        let bundles = matches!(self.trust, TrustStore::Bundles(_));
        let spiffe_id = if bundles || self.policy.require_svid {
            Some(check_svid(&cert, &sans)?)
        } else {
            None
        };
        let anchors = match (&self.trust, &spiffe_id) {
            (TrustStore::Roots(anchors), _) => anchors.as_slice(),
            (TrustStore::Bundles(map), Some(id)) => {
                map.get(id.trust_domain())
                    .map(Vec::as_slice)
                    .ok_or_else(|| IdentityError::UnknownTrustDomain {
                        presented: format!("{:?}", id.to_string()),
                        trust_domain: id.trust_domain().to_owned(),
                    })?
            }
            (TrustStore::Bundles(_), None) => return Err(IdentityError::NoRoots),
        };
        let ee = EndEntityCert::try_from(end_entity)
            .map_err(|e| IdentityError::Malformed(format!("{e:?}")))?;
        ee.verify_for_usage(
            self.algorithms.all,
            anchors,
            intermediates,
            now,
            usage,
            None,
            None,
        )
        .map_err(|e| IdentityError::Untrusted {
            presented: sans.presented(),
            reason: chain_reason(&e, &cert),
        })?;
        let matchers = &self.policy.match_subject_alt_names;
        if !matchers.is_empty() && !matchers.iter().any(|m| m.matches(&sans)) {
            return Err(IdentityError::SanMismatch {
                presented: sans.presented(),
                expected: matchers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }
}

fn chain_reason(error: &webpki::Error, cert: &X509Certificate<'_>) -> String {
    let validity = cert.validity();
    match error {
        webpki::Error::CertExpired { .. } => {
            format!("it expired at {} (notAfter)", validity.not_after)
        }
        webpki::Error::CertNotValidYet { .. } => {
            format!("it is not valid until {} (notBefore)", validity.not_before)
        }
        webpki::Error::UnknownIssuer => {
            format!(
                "its issuer {:?} is not a trusted root",
                cert.issuer().to_string()
            )
        }
        webpki::Error::InvalidSignatureForPublicKey => format!(
            "its issuer {:?} is not a trusted root (a root of that name exists, but its key did not sign this certificate)",
            cert.issuer().to_string()
        ),
        webpki::Error::CaUsedAsEndEntity => "it is a CA certificate used as a leaf".into(),
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "its extendedKeyUsage does not allow this side of TLS".into()
        }
        other => format!("{other:?}"),
    }
}

/// The client side's verifier of servers (a `rustls::client::danger::ServerCertVerifier`).
#[derive(Debug)]
pub struct SpiffeServerVerifier {
    inner: PeerVerifier,
}

impl SpiffeServerVerifier {
    /// Verifies servers against `roots` with `policy`.
    pub fn new(roots: &Roots, policy: PeerValidation) -> Self {
        Self {
            inner: PeerVerifier::new(roots, policy),
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify(end_entity, intermediates, now, KeyUsage::server_auth())
            .map_err(IdentityError::into_rustls)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.inner.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.inner.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algorithms.supported_schemes()
    }
}

/// The server side's verifier of clients (a `rustls::server::danger::ClientCertVerifier`).
#[derive(Debug)]
pub struct SpiffeClientVerifier {
    inner: PeerVerifier,
    require_client_certificate: bool,
}

impl SpiffeClientVerifier {
    /// Verifies clients against `roots` with `policy`; with `require_client_certificate`
    /// off, a client without a certificate is let through (a presented one is still
    /// verified).
    pub fn new(roots: &Roots, policy: PeerValidation, require_client_certificate: bool) -> Self {
        Self {
            inner: PeerVerifier::new(roots, policy),
            require_client_certificate,
        }
    }
}

impl ClientCertVerifier for SpiffeClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.require_client_certificate
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify(end_entity, intermediates, now, KeyUsage::client_auth())
            .map_err(IdentityError::into_rustls)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.inner.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.inner.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.algorithms.supported_schemes()
    }
}
