//! rustls `ClientConfig` / `ServerConfig` for mesh mTLS (gRFC A29: identity and validation
//! material may come from different provider instances), rebuilt whenever a provider
//! publishes new material, and the verified peer's identity for RBAC (gRFC A41) and
//! `PeerIdentity`.
//!
//! Both configs offer ALPN `h2` only. The client config does no hostname check, so the
//! `ServerName` given to `TlsConnector::connect` is only sent as SNI.

use std::sync::Arc;

use rustls::sign::SingleCertAndKey;
use rustls::{ClientConfig, ServerConfig};
use rustls_pki_types::CertificateDer;
use tokio::sync::watch;
use x509_parser::x509::X509Name;

use super::crypto_provider;
use super::provider::{CertMaterial, MaterialWatch};
use super::spiffe::SpiffeId;
use super::verify::{PeerSans, PeerValidation, SpiffeClientVerifier, SpiffeServerVerifier};
use crate::config::PeerCertInfo;

/// Why a TLS config cannot be built from the material at hand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsConfigError {
    /// The validation provider has no roots (no `ca_certificate_file` nor bundle map).
    #[error("the validation certificate provider has no root certificates")]
    NoRoots,
    /// The identity provider has no certificate and key.
    #[error("the identity certificate provider has no certificate and key")]
    NoIdentity,
    /// `require_client_certificate` without a validation context (gRFC A29 NACKs it).
    #[error("require_client_certificate needs a validation context")]
    RequireWithoutValidation,
    /// rustls refused the configuration.
    #[error("rustls: {0}")]
    Rustls(String),
}

/// ALPN for gRPC: HTTP/2 only.
const ALPN_H2: &[u8] = b"h2";

/// A client config that presents `identity`'s certificate (if any) and verifies servers
/// against `validation`'s roots with `policy`.
pub fn client_config(
    identity: Option<&CertMaterial>,
    validation: &CertMaterial,
    policy: &PeerValidation,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let roots = validation.roots().ok_or(TlsConfigError::NoRoots)?;
    let verifier = Arc::new(SpiffeServerVerifier::new(roots, policy.clone()));
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(material) => {
            let id = material.identity().ok_or(TlsConfigError::NoIdentity)?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(
                id.certified_key().clone(),
            )))
        }
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A server config that presents `identity`'s certificate and, with `validation`, asks for
/// and verifies client certificates with `policy` (required when
/// `require_client_certificate`).
pub fn server_config(
    identity: &CertMaterial,
    validation: Option<&CertMaterial>,
    policy: &PeerValidation,
    require_client_certificate: bool,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let id = identity.identity().ok_or(TlsConfigError::NoIdentity)?;
    let builder = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
    let builder = match validation {
        None if require_client_certificate => {
            return Err(TlsConfigError::RequireWithoutValidation);
        }
        None => builder.with_no_client_auth(),
        Some(material) => {
            let roots = material.roots().ok_or(TlsConfigError::NoRoots)?;
            builder.with_client_cert_verifier(Arc::new(SpiffeClientVerifier::new(
                roots,
                policy.clone(),
                require_client_certificate,
            )))
        }
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(id.certified_key().clone())));
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Client configs kept up to date with the providers: a new config is published each time
/// either provider publishes material (`None` while a config cannot be built, e.g. before
/// the first load). Must be called inside a tokio runtime; the task ends when every
/// receiver of the result is dropped.
pub fn watch_client_config(
    identity: Option<MaterialWatch>,
    validation: MaterialWatch,
    policy: PeerValidation,
) -> watch::Receiver<Option<Arc<ClientConfig>>> {
    watch_configs(identity, Some(validation), move |identity, validation| {
        let validation = validation.flatten()?;
        match identity {
            Some(Some(id)) => client_config(Some(&id), &validation, &policy).ok(),
            Some(None) => None,
            None => client_config(None, &validation, &policy).ok(),
        }
    })
}

/// Server configs kept up to date with the providers, as [`watch_client_config`].
pub fn watch_server_config(
    identity: MaterialWatch,
    validation: Option<MaterialWatch>,
    policy: PeerValidation,
    require_client_certificate: bool,
) -> watch::Receiver<Option<Arc<ServerConfig>>> {
    watch_configs(Some(identity), validation, move |identity, validation| {
        let identity = identity.flatten()?;
        match validation {
            Some(Some(v)) => {
                server_config(&identity, Some(&v), &policy, require_client_certificate).ok()
            }
            Some(None) => None,
            None => server_config(&identity, None, &policy, require_client_certificate).ok(),
        }
    })
}

type Latest = Option<Option<Arc<CertMaterial>>>;

/// Rebuilds with `build(identity, validation)` whenever either input changes. An absent
/// input is `None`; a present input without material yet is `Some(None)`.
fn watch_configs<C, F>(
    mut identity: Option<MaterialWatch>,
    mut validation: Option<MaterialWatch>,
    build: F,
) -> watch::Receiver<Option<Arc<C>>>
where
    C: Send + Sync + 'static,
    F: Fn(Latest, Latest) -> Option<Arc<C>> + Send + 'static,
{
    let current = |identity: &mut Option<MaterialWatch>, validation: &mut Option<MaterialWatch>| {
        let id: Latest = identity.as_mut().map(|rx| rx.borrow_and_update().clone());
        let val: Latest = validation.as_mut().map(|rx| rx.borrow_and_update().clone());
        (id, val)
    };
    let (id, val) = current(&mut identity, &mut validation);
    let (tx, rx) = watch::channel(build(id, val));
    tokio::spawn(async move {
        loop {
            let id_changed = async {
                match identity.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let val_changed = async {
                match validation.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let alive = tokio::select! {
                ok = id_changed => ok,
                ok = val_changed => ok,
                () = tx.closed() => return,
            };
            if !alive {
                // A provider was dropped; its last material stays, but nothing more comes.
                return;
            }
            let (id, val) = current(&mut identity, &mut validation);
            tx.send_replace(build(id, val));
        }
    });
    rx
}

/// What the handshake established about the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTlsIdentity {
    /// The peer's SPIFFE ID, if its certificate has exactly one URI SAN that is one.
    pub spiffe_id: Option<SpiffeId>,
    /// SANs and subject, for RBAC's `principal_name`.
    pub cert: PeerCertInfo,
    /// The leaf's serial number, lowercase hex.
    pub serial_hex: String,
}

/// The identity of a peer from its (already verified) chain, e.g.
/// `connection.peer_certificates()`. `None` without a certificate or if the leaf does not
/// parse.
pub fn peer_identity(chain: &[CertificateDer<'_>]) -> Option<PeerTlsIdentity> {
    let leaf = chain.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let sans = PeerSans::of(&cert);
    let spiffe_id = match sans.uri.as_slice() {
        [one] => SpiffeId::parse(one).ok(),
        _ => None,
    };
    Some(PeerTlsIdentity {
        spiffe_id,
        cert: PeerCertInfo {
            uri_sans: sans.uri,
            dns_sans: sans.dns,
            subject: rfc2253(cert.subject()),
        },
        serial_hex: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

/// A distinguished name as RFC 2253 writes it: last RDN first, `,` between RDNs, `+`
/// inside one, short names for the common attribute types, special characters escaped.
fn rfc2253(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type();
                    let key = match oid.to_id_string().as_str() {
                        "2.5.4.3" => "CN".to_owned(),
                        "2.5.4.7" => "L".to_owned(),
                        "2.5.4.8" => "ST".to_owned(),
                        "2.5.4.10" => "O".to_owned(),
                        "2.5.4.11" => "OU".to_owned(),
                        "2.5.4.6" => "C".to_owned(),
                        "2.5.4.9" => "STREET".to_owned(),
                        "0.9.2342.19200300.100.1.25" => "DC".to_owned(),
                        "0.9.2342.19200300.100.1.1" => "UID".to_owned(),
                        other => other.to_owned(),
                    };
                    let value = match attr.as_str() {
                        Ok(s) => escape_rfc2253(s),
                        Err(_) => format!(
                            "#{}",
                            attr.attr_value()
                                .data
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<String>()
                        ),
                    };
                    format!("{key}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2253_escaping() {
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253(" #x "), "\\ #x\\ ");
        assert_eq!(escape_rfc2253("#x"), "\\#x");
        assert_eq!(escape_rfc2253("plain"), "plain");
    }
}
