//! SPIFFE trust bundle maps (gRFC A87): the `spiffe_trust_bundle_map_file` of the
//! `file_watcher` certificate provider, one root certificate set per trust domain.
//!
//! The file is `{"trust_domains": {"<td>": <SPIFFE bundle>}}`, each bundle a JWK set as the
//! SPIFFE Trust Domain and Bundle standard defines it. As gRFC A87 says, only `keys` and
//! `spiffe_sequence` are read, and of each key only `kty`, `use` and `x5c`; keys whose `use`
//! is `jwt-svid` are skipped; and a problem in any entry rejects the whole map (rather than
//! skipping the entry), so a half-read map never replaces a good one.

use std::collections::BTreeMap;

use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use super::spiffe::validate_trust_domain;

/// The root certificates of one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    /// The X.509 roots (the `x5c` of every `x509-svid` key), DER.
    pub roots: Vec<CertificateDer<'static>>,
    /// `spiffe_sequence`, when given.
    pub sequence: Option<u64>,
}

/// A SPIFFE trust bundle map: trust domain name → its bundle.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrustBundleMap {
    bundles: BTreeMap<String, TrustBundle>,
}

/// Why a trust bundle map was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not JSON of the expected shape.
    #[error("SPIFFE trust bundle map is not valid JSON of the bundle map shape: {0}")]
    Json(String),
    /// A trust domain key that is not a valid SPIFFE trust domain.
    #[error("SPIFFE trust bundle map: trust domain {name:?}: {reason}")]
    TrustDomain {
        /// The key as written.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A bad key entry.
    #[error("SPIFFE trust bundle map: trust domain {trust_domain:?}: keys[{index}]: {reason}")]
    Key {
        /// The trust domain holding the key.
        trust_domain: String,
        /// The key's index in `keys`.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct MapJson {
    trust_domains: BTreeMap<String, BundleJson>,
}

#[derive(Deserialize)]
struct BundleJson {
    #[serde(default)]
    keys: Vec<KeyJson>,
    #[serde(default)]
    spiffe_sequence: Option<u64>,
}

#[derive(Deserialize)]
struct KeyJson {
    #[serde(default)]
    kty: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    x5c: Vec<String>,
}

impl TrustBundleMap {
    /// Parses a bundle map file's contents.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let map: MapJson =
            serde_json::from_slice(bytes).map_err(|e| BundleError::Json(e.to_string()))?;
        let mut bundles = BTreeMap::new();
        for (name, bundle) in map.trust_domains {
            validate_trust_domain(&name).map_err(|e| BundleError::TrustDomain {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            let mut roots = Vec::new();
            for (index, key) in bundle.keys.iter().enumerate() {
                let bad = |reason: String| BundleError::Key {
                    trust_domain: name.clone(),
                    index,
                    reason,
                };
                match key.use_.as_deref() {
                    Some("x509-svid") => {}
                    Some("jwt-svid") => continue,
                    Some(other) => return Err(bad(format!("unsupported \"use\" {other:?}"))),
                    None => return Err(bad("\"use\" is missing".into())),
                }
                if key.kty.as_deref().is_none_or(str::is_empty) {
                    return Err(bad("\"kty\" is missing".into()));
                }
                let [cert] = key.x5c.as_slice() else {
                    return Err(bad(format!(
                        "an x509-svid key must have exactly one x5c certificate; it has {}",
                        key.x5c.len()
                    )));
                };
                let der = base64::engine::general_purpose::STANDARD
                    .decode(cert.as_bytes())
                    .map_err(|e| bad(format!("x5c[0] is not base64: {e}")))?;
                let der = CertificateDer::from(der);
                webpki::anchor_from_trusted_cert(&der)
                    .map_err(|e| bad(format!("x5c[0] is not a usable root certificate: {e}")))?;
                roots.push(der);
            }
            bundles.insert(
                name,
                TrustBundle {
                    roots,
                    sequence: bundle.spiffe_sequence,
                },
            );
        }
        Ok(Self { bundles })
    }

    /// The bundle of `trust_domain`, if the map has one.
    pub fn get(&self, trust_domain: &str) -> Option<&TrustBundle> {
        self.bundles.get(trust_domain)
    }

    /// Every trust domain with its bundle, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TrustBundle)> {
        self.bundles.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many trust domains the map has (an empty map is valid).
    pub fn len(&self) -> usize {
        self.bundles.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_control::ca::DevCa;

    fn b64(der: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(der)
    }

    #[test]
    fn parses_per_trust_domain_roots() {
        let a = DevCa::generate("a.example").unwrap();
        let b = DevCa::generate("b.example").unwrap();
        let json = format!(
            r#"{{"trust_domains": {{
                "a.example": {{"spiffe_sequence": 7, "spiffe_refresh_hint": 60, "keys": [
                    {{"kty": "EC", "use": "x509-svid", "x5c": ["{}"], "crv": "P-256"}},
                    {{"kty": "EC", "use": "jwt-svid", "kid": "k1"}}
                ]}},
                "b.example": {{"keys": [{{"kty": "EC", "use": "x509-svid", "x5c": ["{}"]}}]}},
                "empty.example": {{"keys": []}}
            }}}}"#,
            b64(a.root_cert_der()),
            b64(b.root_cert_der())
        );
        let map = TrustBundleMap::from_json(json.as_bytes()).unwrap();
        assert_eq!(map.len(), 3);
        let bundle = map.get("a.example").unwrap();
        assert_eq!(bundle.sequence, Some(7));
        assert_eq!(bundle.roots.len(), 1);
        assert_eq!(bundle.roots[0].as_ref(), a.root_cert_der());
        assert_eq!(
            map.get("b.example").unwrap().roots[0].as_ref(),
            b.root_cert_der()
        );
        assert!(map.get("empty.example").unwrap().roots.is_empty());
        assert!(map.get("c.example").is_none());
        // The dev CA writes the same format.
        let written = DevCa::spiffe_bundle_map_json(&[&a, &b]);
        let map = TrustBundleMap::from_json(written.as_bytes()).unwrap();
        assert_eq!(
            map.get("b.example").unwrap().roots[0].as_ref(),
            b.root_cert_der()
        );
    }

    #[test]
    fn empty_map_is_valid() {
        let map = TrustBundleMap::from_json(br#"{"trust_domains": {}}"#).unwrap();
        assert!(map.is_empty());
    }

    #[test]
    fn rejects_whole_map_on_any_bad_entry() {
        let a = DevCa::generate("a.example").unwrap();
        let good = b64(a.root_cert_der());
        let rows = [
            ("not json".to_string(), "not valid JSON"),
            (r#"{"keys": []}"#.to_string(), "not valid JSON"),
            (
                r#"{"trust_domains": {"A.example": {"keys": []}}}"#.to_string(),
                "trust domain \"A.example\"",
            ),
            (
                format!(
                    r#"{{"trust_domains": {{"a.example": {{"keys": [{{"kty":"EC","use":"x509-svid","x5c":["{good}","{good}"]}}]}}}}}}"#
                ),
                "exactly one x5c certificate; it has 2",
            ),
            (
                r#"{"trust_domains": {"a.example": {"keys": [{"kty":"EC","use":"x509-svid","x5c":["!!"]}]}}}"#
                    .to_string(),
                "not base64",
            ),
            (
                r#"{"trust_domains": {"a.example": {"keys": [{"kty":"EC","use":"x509-svid","x5c":["AAAA"]}]}}}"#
                    .to_string(),
                "not a usable root certificate",
            ),
            (
                format!(
                    r#"{{"trust_domains": {{"a.example": {{"keys": [{{"kty":"EC","x5c":["{good}"]}}]}}}}}}"#
                ),
                "\"use\" is missing",
            ),
            (
                format!(
                    r#"{{"trust_domains": {{"a.example": {{"keys": [{{"use":"x509-svid","x5c":["{good}"]}}]}}}}}}"#
                ),
                "\"kty\" is missing",
            ),
        ];
        for (json, want) in rows {
            let err = TrustBundleMap::from_json(json.as_bytes()).unwrap_err();
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
    }
}
