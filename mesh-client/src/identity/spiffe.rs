//! SPIFFE IDs (`spiffe://<trust domain>/<path>`), parsed exactly as the SPIFFE ID standard
//! says, for the X.509-SVID checks of gRFC A87.
//!
//! The rules: the scheme is `spiffe`; the trust domain is non-empty, at most 255 bytes, of
//! lowercase letters, digits, `.`, `-` and `_` (so no port, userinfo, or upper case); the path
//! is empty or a sequence of `/segment`, each segment non-empty, of letters, digits, `.`, `-`
//! and `_`, and neither `.` nor `..`; no query, no fragment, no percent-encoding; at most
//! 2048 bytes in all.

use std::fmt;

/// The longest SPIFFE ID, in bytes, that the standard allows.
pub const MAX_SPIFFE_ID_LEN: usize = 2048;
/// The longest trust domain name, in bytes, that the standard allows.
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SCHEME: &str = "spiffe://";

/// A valid SPIFFE ID.
///
/// ```
/// use mesh_client::identity::SpiffeId;
///
/// let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/greeter")?;
/// assert_eq!(id.trust_domain(), "cluster.local");
/// assert_eq!(id.path(), "/ns/default/sa/greeter");
/// assert_eq!(id.to_string(), "spiffe://cluster.local/ns/default/sa/greeter");
/// assert!(SpiffeId::parse("spiffe://Cluster.local/ns/x").is_err());
/// # Ok::<(), mesh_client::identity::SpiffeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    trust_domain: String,
    path: String,
}

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeError {
    /// Empty input.
    #[error("SPIFFE ID is empty")]
    Empty,
    /// Longer than [`MAX_SPIFFE_ID_LEN`].
    #[error("SPIFFE ID is {0} bytes long; at most 2048 are allowed")]
    TooLong(usize),
    /// Does not start with `spiffe://`.
    #[error("SPIFFE ID must start with \"spiffe://\"")]
    WrongScheme,
    /// `spiffe://` followed by nothing or by `/`.
    #[error("SPIFFE ID has an empty trust domain")]
    EmptyTrustDomain,
    /// Longer than [`MAX_TRUST_DOMAIN_LEN`].
    #[error("SPIFFE trust domain is {0} bytes long; at most 255 are allowed")]
    TrustDomainTooLong(usize),
    /// A character outside `[a-z0-9._-]` in the trust domain (this covers ports, userinfo
    /// and upper case).
    #[error(
        "SPIFFE trust domain has the character {0:?}; only lowercase letters, digits, '.', '-' and '_' are allowed"
    )]
    BadTrustDomainChar(char),
    /// A query (`?`) or fragment (`#`).
    #[error("SPIFFE ID must not have a query or fragment")]
    QueryOrFragment,
    /// `//` or a trailing `/`.
    #[error("SPIFFE ID path has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("SPIFFE ID path has a '.' or '..' segment")]
    DotSegment,
    /// A character outside `[A-Za-z0-9._-]` in a path segment (this covers percent-encoding).
    #[error(
        "SPIFFE ID path has the character {0:?}; only letters, digits, '.', '-' and '_' are allowed"
    )]
    BadPathChar(char),
}

impl SpiffeId {
    /// Parses `text` as a SPIFFE ID, following the SPIFFE ID standard exactly.
    pub fn parse(text: &str) -> Result<Self, SpiffeError> {
        if text.is_empty() {
            return Err(SpiffeError::Empty);
        }
        if text.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeError::TooLong(text.len()));
        }
        let rest = text.strip_prefix(SCHEME).ok_or(SpiffeError::WrongScheme)?;
        if rest.contains(['?', '#']) {
            return Err(SpiffeError::QueryOrFragment);
        }
        let (trust_domain, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        validate_trust_domain(trust_domain)?;
        validate_path(path)?;
        Ok(Self {
            trust_domain: trust_domain.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The trust domain, e.g. `cluster.local`.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The path, e.g. `/ns/default/sa/greeter`; empty for a trust domain's own ID.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Istio's `(namespace, service account)` when the path is `/ns/<ns>/sa/<sa>`.
    pub fn istio_workload(&self) -> Option<(&str, &str)> {
        let mut segments = self.path.strip_prefix('/')?.split('/');
        match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }
}

/// Checks a trust domain name (as in a SPIFFE ID or a bundle map key).
pub fn validate_trust_domain(trust_domain: &str) -> Result<(), SpiffeError> {
    if trust_domain.is_empty() {
        return Err(SpiffeError::EmptyTrustDomain);
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeError::TrustDomainTooLong(trust_domain.len()));
    }
    match trust_domain
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(bad) => Err(SpiffeError::BadTrustDomainChar(bad)),
        None => Ok(()),
    }
}

fn validate_path(path: &str) -> Result<(), SpiffeError> {
    if path.is_empty() {
        return Ok(());
    }
    // `path` starts with '/', so the first split item is the empty string before it.
    for segment in path.split('/').skip(1) {
        if segment.is_empty() {
            return Err(SpiffeError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeError::DotSegment);
        }
        if let Some(bad) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
        {
            return Err(SpiffeError::BadPathChar(bad));
        }
    }
    Ok(())
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}{}", self.trust_domain, self.path)
    }
}

impl std::str::FromStr for SpiffeId {
    type Err = SpiffeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An input and the trust domain and path it parses to, or its error.
    type Row<'a> = (&'a str, Result<(&'a str, &'a str), SpiffeError>);

    #[test]
    fn parse_table() {
        let long_path = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN));
        let max_ok = format!("spiffe://td/{}", "a".repeat(MAX_SPIFFE_ID_LEN - 12));
        let long_td = format!("spiffe://{}/x", "a".repeat(256));
        let rows: Vec<Row<'_>> = vec![
            (
                "spiffe://cluster.local/ns/default/sa/greeter",
                Ok(("cluster.local", "/ns/default/sa/greeter")),
            ),
            ("spiffe://example.org", Ok(("example.org", ""))),
            ("spiffe://a_b-c.9/X.y-Z_0", Ok(("a_b-c.9", "/X.y-Z_0"))),
            ("spiffe://td/...", Ok(("td", "/..."))),
            (max_ok.as_str(), Ok(("td", &max_ok[11..]))),
            ("", Err(SpiffeError::Empty)),
            ("http://cluster.local/ns/x", Err(SpiffeError::WrongScheme)),
            ("SPIFFE://cluster.local/ns/x", Err(SpiffeError::WrongScheme)),
            ("spiffe:/cluster.local/ns/x", Err(SpiffeError::WrongScheme)),
            ("spiffe://", Err(SpiffeError::EmptyTrustDomain)),
            ("spiffe:///ns/x", Err(SpiffeError::EmptyTrustDomain)),
            (
                "spiffe://Cluster.local/ns/x",
                Err(SpiffeError::BadTrustDomainChar('C')),
            ),
            (
                "spiffe://cluster.local:8080/ns/x",
                Err(SpiffeError::BadTrustDomainChar(':')),
            ),
            (
                "spiffe://user@cluster.local/ns/x",
                Err(SpiffeError::BadTrustDomainChar('@')),
            ),
            (
                "spiffe://cluster.local/ns/x?a=b",
                Err(SpiffeError::QueryOrFragment),
            ),
            (
                "spiffe://cluster.local/ns/x#frag",
                Err(SpiffeError::QueryOrFragment),
            ),
            ("spiffe://cluster.local/", Err(SpiffeError::EmptySegment)),
            ("spiffe://cluster.local//x", Err(SpiffeError::EmptySegment)),
            ("spiffe://cluster.local/ns/", Err(SpiffeError::EmptySegment)),
            ("spiffe://cluster.local/./x", Err(SpiffeError::DotSegment)),
            ("spiffe://cluster.local/a/..", Err(SpiffeError::DotSegment)),
            (
                "spiffe://cluster.local/a%20b",
                Err(SpiffeError::BadPathChar('%')),
            ),
            (
                "spiffe://cluster.local/a b",
                Err(SpiffeError::BadPathChar(' ')),
            ),
            (
                "spiffe://cluster.local/caf\u{e9}",
                Err(SpiffeError::BadPathChar('\u{e9}')),
            ),
            (
                long_path.as_str(),
                Err(SpiffeError::TooLong(long_path.len())),
            ),
            (long_td.as_str(), Err(SpiffeError::TrustDomainTooLong(256))),
        ];
        assert!(rows.len() >= 15);
        for (input, want) in rows {
            let got = SpiffeId::parse(input);
            match want {
                Ok((td, path)) => {
                    let id = got.unwrap_or_else(|e| panic!("{input:?}: {e}"));
                    assert_eq!(id.trust_domain(), td, "{input:?}");
                    assert_eq!(id.path(), path, "{input:?}");
                    assert_eq!(id.to_string(), input, "round trip");
                }
                Err(e) => assert_eq!(got, Err(e), "{input:?}"),
            }
        }
    }

    #[test]
    fn istio_workload() {
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/greeter").unwrap();
        assert_eq!(id.istio_workload(), Some(("default", "greeter")));
        let id = SpiffeId::parse("spiffe://cluster.local/ns/default/sa/greeter/x").unwrap();
        assert_eq!(id.istio_workload(), None);
        let id = SpiffeId::parse("spiffe://cluster.local").unwrap();
        assert_eq!(id.istio_workload(), None);
    }
}
