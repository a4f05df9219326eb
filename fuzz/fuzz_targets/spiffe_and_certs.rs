//! Fuzz target: SPIFFE IDs (the SPIFFE ID standard), SPIFFE trust bundle maps (gRFC A87),
//! PEM identities and roots (gRFC A29 `file_watcher`), and DER peer certificates through the
//! peer-identity extraction and the SPIFFE verifiers (gRFC A29, A87).
//!
//! Input: the first byte selects what the rest is.
//! - `0`: a SPIFFE ID (UTF-8).
//! - `1`: a trust bundle map file (JSON).
//! - `2`: PEM: a chain and a private key, separated by a NUL byte (or a root file).
//! - `3`: DER certificates, each prefixed by its length (2 bytes, big endian): the peer's
//!   chain, leaf first; the last one is also used as the trusted root.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use mesh_client::identity::{
    Identity, PeerValidation, Roots, SanMatcher, SpiffeClientVerifier, SpiffeId,
    SpiffeServerVerifier, TrustBundleMap, peer_identity, spiffe,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => spiffe_id(rest),
        1 => {
            if let Ok(map) = TrustBundleMap::from_json(rest) {
                for (td, bundle) in map.iter() {
                    // Every key of an accepted map is a valid trust domain.
                    assert!(spiffe::validate_trust_domain(td).is_ok(), "{td:?}");
                    let _ = bundle.roots.len();
                }
                verify_chain(&chain_of(rest), Roots::SpiffeBundles(map));
            }
        }
        2 => {
            let (chain, key) = match rest.iter().position(|&b| b == 0) {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => (rest, rest),
            };
            let _ = Identity::from_pem(chain, key, Path::new("cert.pem"), Path::new("key.pem"));
            let _ = Roots::from_pem(chain, Path::new("roots.pem"));
        }
        _ => {
            let chain = chain_of(rest);
            if let Some(identity) = peer_identity(&chain)
                && let Some(id) = &identity.spiffe_id
            {
                // The identity's SPIFFE ID is its one URI SAN.
                assert_eq!(identity.cert.uri_sans, vec![id.to_string()]);
            }
            if let Some(root) = chain.last() {
                verify_chain(&chain, Roots::Certificates(vec![root.clone().into_owned()]));
            }
        }
    }
});

/// Splits `2-byte length ‖ DER` records; a short tail is dropped.
fn chain_of(mut data: &[u8]) -> Vec<CertificateDer<'static>> {
    let mut certs = Vec::new();
    while let [hi, lo, rest @ ..] = data {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let Some((der, tail)) = rest.split_at_checked(len) else {
            break;
        };
        certs.push(CertificateDer::from(der.to_vec()));
        data = tail;
        if certs.len() == 4 {
            break;
        }
    }
    certs
}

fn verify_chain(chain: &[CertificateDer<'static>], roots: Roots) {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return;
    };
    // Two policies: the SVID rules with a SAN matcher, and plain X.509 with none.
    let strict = PeerValidation::default().with_san(SanMatcher::exact_uri(
        "spiffe://cluster.local/ns/default/sa/greeter",
    ));
    let lax = PeerValidation {
        require_svid: false,
        ..PeerValidation::default()
    };
    // A fixed time (2033-05-18), inside the validity of the seed certificates.
    let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(2_000_000_000));
    let server_name = ServerName::try_from("greeter.default").expect("a valid DNS name");
    for policy in [strict, lax] {
        let server = SpiffeServerVerifier::new(&roots, policy.clone());
        let _ = server.verify_server_cert(leaf, intermediates, &server_name, &[], now);
        let client = SpiffeClientVerifier::new(&roots, policy, true);
        let _ = client.verify_client_cert(leaf, intermediates, now);
    }
}

fn spiffe_id(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = spiffe::validate_trust_domain(text);
    let Ok(id) = SpiffeId::parse(text) else {
        return;
    };
    // Parsing is exact: an accepted ID prints back as itself and parses again to itself.
    assert_eq!(id.to_string(), text);
    assert_eq!(SpiffeId::parse(&id.to_string()).as_ref(), Ok(&id));
    assert!(spiffe::validate_trust_domain(id.trust_domain()).is_ok());
    if let Some((ns, sa)) = id.istio_workload() {
        assert!(!ns.contains('/') && !sa.contains('/'));
    }
}
