//! Canonical request paths: authorize exactly what the handler will see.
//!
//! gRPC methods are addressed as `/package.Service/Method`. Anything else is rejected
//! before routing or RBAC run, so that a policy written for `/pkg.Svc/Method` cannot be
//! bypassed with an equivalent spelling (`//`, `..`, percent-encoded separators, `;`
//! parameters, fragments, NUL or control bytes). Envoy normalizes such paths; a gRPC server
//! has no use for them, so we refuse them.

/// Why a `:path` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("non-canonical :path {path:?}: {reason}")]
pub struct PathError {
    /// The path as received (lossy for non-UTF-8 bytes).
    pub path: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Checks that `path` is exactly `/service/method` with no alternative spelling.
///
/// ```
/// use mesh_server::check_canonical_path;
/// assert!(check_canonical_path("/helloworld.Greeter/SayHello").is_ok());
/// assert!(check_canonical_path("/helloworld.Greeter/../admin.Admin/Drop").is_err());
/// assert!(check_canonical_path("/helloworld.Greeter%2FSayHello").is_err());
/// ```
pub fn check_canonical_path(path: &str) -> Result<(), PathError> {
    let err = |reason| {
        Err(PathError {
            path: path.to_string(),
            reason,
        })
    };
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return err("must start with '/'");
    }
    if let Some(b) = bytes.iter().find(|b| **b < 0x20 || **b == 0x7f) {
        return if *b == 0 {
            err("contains a NUL byte")
        } else {
            err("contains a control byte")
        };
    }
    if path.contains('%') {
        let lower = path.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return err("contains an encoded path separator (%2F or %5C)");
        }
        if lower.contains("%2e") {
            return err("contains an encoded dot (%2E)");
        }
        if lower.contains("%00") {
            return err("contains an encoded NUL (%00)");
        }
    }
    if path.contains('\\') {
        return err("contains a backslash");
    }
    if path.contains(';') {
        return err("contains ';' (path parameters)");
    }
    if path.contains('#') {
        return err("contains '#' (a fragment)");
    }
    if path.contains('?') {
        return err("contains a query");
    }
    if path.contains("//") {
        return err("contains an empty segment ('//')");
    }
    let rest = &path[1..];
    let mut segments = rest.split('/');
    let (Some(service), Some(method), None) = (segments.next(), segments.next(), segments.next())
    else {
        return err("must be /service/method");
    };
    for seg in [service, method] {
        if seg.is_empty() {
            return err("has an empty service or method");
        }
        if seg == "." || seg == ".." {
            return err("contains a '.' or '..' segment");
        }
    }
    if path.contains("/..") || path.contains("../") {
        return err("contains '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_pass() {
        for p in [
            "/helloworld.Greeter/SayHello",
            "/grpc.testing.TestService/UnaryCall",
            "/grpc.health.v1.Health/Check",
            "/Svc/M",
        ] {
            assert_eq!(check_canonical_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn every_alternative_spelling_is_rejected() {
        let rows: &[(&str, &str)] = &[
            ("helloworld.Greeter/SayHello", "must start with '/'"),
            ("", "must start with '/'"),
            (
                "/helloworld.Greeter/../admin/Drop",
                "must be /service/method",
            ),
            ("/../helloworld.Greeter", "contains a '.' or '..' segment"),
            ("/helloworld.Greeter/..", "contains a '.' or '..' segment"),
            ("/./SayHello", "contains a '.' or '..' segment"),
            ("/a../SayHello", "contains '..'"),
            (
                "//helloworld.Greeter/SayHello",
                "contains an empty segment ('//')",
            ),
            (
                "/helloworld.Greeter//SayHello",
                "contains an empty segment ('//')",
            ),
            (
                "/helloworld.Greeter%2FSayHello",
                "contains an encoded path separator (%2F or %5C)",
            ),
            (
                "/helloworld.Greeter%2fSayHello",
                "contains an encoded path separator (%2F or %5C)",
            ),
            (
                "/helloworld.Greeter%5CSayHello",
                "contains an encoded path separator (%2F or %5C)",
            ),
            (
                "/helloworld.Greeter/%2e%2e",
                "contains an encoded dot (%2E)",
            ),
            (
                "/helloworld.Greeter/Say%00Hello",
                "contains an encoded NUL (%00)",
            ),
            ("/helloworld.Greeter\\SayHello", "contains a backslash"),
            (
                "/helloworld.Greeter/SayHello;x=1",
                "contains ';' (path parameters)",
            ),
            (
                "/helloworld.Greeter/SayHello#frag",
                "contains '#' (a fragment)",
            ),
            ("/helloworld.Greeter/Say\0Hello", "contains a NUL byte"),
            (
                "/helloworld.Greeter/Say\u{1}Hello",
                "contains a control byte",
            ),
            ("/helloworld.Greeter/Say\tHello", "contains a control byte"),
            (
                "/helloworld.Greeter/Say\u{7f}Hello",
                "contains a control byte",
            ),
            ("/helloworld.Greeter/SayHello?x=1", "contains a query"),
            ("/helloworld.Greeter", "must be /service/method"),
            ("/helloworld.Greeter/", "has an empty service or method"),
            ("/a/b/c", "must be /service/method"),
        ];
        for (path, reason) in rows {
            let e = check_canonical_path(path).expect_err(path);
            assert_eq!(e.reason, *reason, "{path:?}");
        }
    }
}
