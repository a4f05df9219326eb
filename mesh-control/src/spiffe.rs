//! SPIFFE IDs as this control plane writes them: `spiffe://{trust domain}/ns/{ns}/sa/{sa}`,
//! Istio's identity shape, with the character rules of the SPIFFE ID specification.

/// The trust domain used when `mesh.yaml` names none (Istio's default).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";

/// The namespace of a service whose name has no namespace part.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Whether `trust_domain` is a SPIFFE trust domain: 1 to 255 characters, each a lowercase
/// letter, a digit, `.`, `-` or `_`.
///
/// ```
/// assert!(mesh_control::spiffe::is_trust_domain("cluster.local"));
/// assert!(!mesh_control::spiffe::is_trust_domain("Cluster.Local"));
/// assert!(!mesh_control::spiffe::is_trust_domain("a/b"));
/// ```
pub fn is_trust_domain(trust_domain: &str) -> bool {
    !trust_domain.is_empty()
        && trust_domain.len() <= 255
        && trust_domain
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'))
}

/// Whether `segment` can be one path segment of a SPIFFE ID: not empty, not `.` or `..`,
/// and only ASCII letters, digits, `.`, `-` and `_`.
///
/// ```
/// assert!(mesh_control::spiffe::is_path_segment("greeter-v1"));
/// assert!(!mesh_control::spiffe::is_path_segment(""));
/// assert!(!mesh_control::spiffe::is_path_segment(".."));
/// assert!(!mesh_control::spiffe::is_path_segment("a@b"));
/// ```
pub fn is_path_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The SPIFFE ID of a workload: `spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}`.
///
/// ```
/// assert_eq!(
///     mesh_control::spiffe::spiffe_id("cluster.local", "default", "greeter"),
///     "spiffe://cluster.local/ns/default/sa/greeter"
/// );
/// ```
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}
