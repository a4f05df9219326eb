//! Conversion of Envoy matchers (`RegexMatcher`, `StringMatcher`, route `HeaderMatcher`)
//! into the [`crate::config`] model (gRFC A28, A63).

use xds_proto::envoy::envoy::config::route::v3::HeaderMatcher as HeaderMatcherProto;
use xds_proto::envoy::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use xds_proto::envoy::envoy::r#type::matcher::v3::{
    RegexMatcher, StringMatcher as StringMatcherProto, string_matcher::MatchPattern,
};

use crate::config::{HeaderMatchKind, HeaderMatcher, StringMatchKind, StringMatcher};

/// Compiles a `safe_regex` so that a match is a full match (`^(?:regex)$`), as Envoy
/// requires. Rust's `regex` has RE2's semantics (no backreferences or lookaround, linear
/// time); `max_program_size` is ignored (gRFC A28) but our own size bound applies.
/// Errors read `invalid regex: ...`.
pub fn compile_regex(m: &RegexMatcher) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(&format!("^(?:{})$", m.regex))
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("invalid regex {:?}: {}", m.regex, one_line(&e.to_string())))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Converts an Envoy `StringMatcher` (gRFC A63). An unset pattern or a `custom` matcher is
/// invalid. Errors are relative paths such as `safe_regex: invalid regex ...`.
pub fn string_matcher(m: &StringMatcherProto) -> Result<StringMatcher, String> {
    let kind = match &m.match_pattern {
        Some(MatchPattern::Exact(s)) => StringMatchKind::Exact(s.clone()),
        Some(MatchPattern::Prefix(s)) => StringMatchKind::Prefix(s.clone()),
        Some(MatchPattern::Suffix(s)) => StringMatchKind::Suffix(s.clone()),
        Some(MatchPattern::Contains(s)) => StringMatchKind::Contains(s.clone()),
        Some(MatchPattern::SafeRegex(re)) => {
            StringMatchKind::Regex(compile_regex(re).map_err(|e| format!("safe_regex: {e}"))?)
        }
        Some(MatchPattern::Custom(c)) => {
            return Err(format!("custom: unsupported string matcher {:?}", c.name));
        }
        None => return Err("match_pattern: missing".to_string()),
    };
    Ok(StringMatcher {
        kind,
        // A63: ignore_case does not apply to safe_regex.
        ignore_case: m.ignore_case && !matches!(m.match_pattern, Some(MatchPattern::SafeRegex(_))),
    })
}

/// Converts a route `HeaderMatcher` (gRFC A28, A63). Errors are relative paths such as
/// `safe_regex_match: invalid regex ...`.
// The `*_match` fields are deprecated in favour of string_match, but control planes still
// send them and gRPC honours them (A28).
#[allow(deprecated)]
pub fn header_matcher(h: &HeaderMatcherProto) -> Result<HeaderMatcher, String> {
    let kind = match &h.header_match_specifier {
        Some(HeaderMatchSpecifier::ExactMatch(s)) => HeaderMatchKind::Exact(s.clone()),
        Some(HeaderMatchSpecifier::SafeRegexMatch(re)) => HeaderMatchKind::Regex(StringMatcher {
            kind: StringMatchKind::Regex(
                compile_regex(re).map_err(|e| format!("safe_regex_match: {e}"))?,
            ),
            ignore_case: false,
        }),
        Some(HeaderMatchSpecifier::RangeMatch(r)) => {
            // grpc-go accepts any range (an empty one never matches); gRPC C-core NACKs an
            // end below the start. A reversed range is certainly a control-plane bug, so we
            // follow C-core and say so.
            if r.end < r.start {
                return Err(format!(
                    "range_match: end {} is smaller than start {}",
                    r.end, r.start
                ));
            }
            HeaderMatchKind::Range {
                start: r.start,
                end: r.end,
            }
        }
        Some(HeaderMatchSpecifier::PresentMatch(p)) => HeaderMatchKind::Present(*p),
        Some(HeaderMatchSpecifier::PrefixMatch(s)) => HeaderMatchKind::Prefix(s.clone()),
        Some(HeaderMatchSpecifier::SuffixMatch(s)) => HeaderMatchKind::Suffix(s.clone()),
        Some(HeaderMatchSpecifier::ContainsMatch(s)) => HeaderMatchKind::Contains(s.clone()),
        Some(HeaderMatchSpecifier::StringMatch(sm)) => {
            HeaderMatchKind::String(string_matcher(sm).map_err(|e| format!("string_match.{e}"))?)
        }
        None => return Err("header_match_specifier: missing".to_string()),
    };
    Ok(HeaderMatcher {
        // HTTP/2 header names are lower case; matching is by the lower-cased name.
        name: h.name.to_ascii_lowercase(),
        kind,
        invert: h.invert_match,
    })
}
