//! Strong ETags over a digest, and `If-None-Match` matching.
//!
//! An entity's ETag is its digest in quotes. A compressed representation gets
//! its own strong tag, `"<digest>-<coding>"` (RFC 9110 §8.8.3: strong
//! validators differ between representations), and `If-None-Match` with any
//! representation's tag, or `*`, matches the entity: the weak comparison
//! RFC 9110 §13.1.2 prescribes for `If-None-Match`.

use alloc::format;
use alloc::string::String;

/// Content codings a representation tag may carry.
pub const CODINGS: [&str; 4] = ["gzip", "br", "zstd", "deflate"];

/// The strong ETag of an entity named `tag` (usually a digest's hex): `"<tag>"`.
pub fn strong(tag: &str) -> String {
    format!("\"{tag}\"")
}

/// The ETag of `etag`'s representation in content coding `coding`: `"<tag>-<coding>"`.
pub fn for_coding(etag: &str, coding: &str) -> String {
    format!("{}-{coding}\"", etag.trim_end_matches('"'))
}

/// The entity tag an ETag names, without quotes, `W/` or a coding suffix.
fn entity(t: &str) -> &str {
    let t = t.trim();
    let t = t.strip_prefix("W/").unwrap_or(t).trim_matches('"');
    CODINGS.iter().find_map(|c| t.strip_suffix(c).and_then(|s| s.strip_suffix('-'))).unwrap_or(t)
}

/// Whether an `If-None-Match` header value matches the entity tagged `tag`
/// (in any representation). The one place this header is parsed.
pub fn if_none_match(header: &str, tag: &str) -> bool {
    let tag = entity(tag);
    header.split(',').any(|t| t.trim() == "*" || (!t.trim().is_empty() && entity(t) == tag))
}

/// The content coding of the representation an `If-None-Match` value names
/// for the entity tagged `tag` (`"<tag>-gzip"` → `gzip`), when one of its
/// tags does: a 304 then carries that representation's ETag, the one a 200
/// to the same request would have carried (RFC 9110 §15.4.5).
pub fn matched_coding<'h>(header: &'h str, tag: &str) -> Option<&'h str> {
    let tag = entity(tag);
    header.split(',').find_map(|t| {
        let bare = t.trim();
        let bare = bare.strip_prefix("W/").unwrap_or(bare).trim_matches('"');
        CODINGS.iter().find_map(|c| {
            let coded = bare.strip_suffix(c)?.strip_suffix('-')?;
            (coded == tag).then_some(*c)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_coded_tag_names_its_coding() {
        assert_eq!(matched_coding("\"x\", \"abc-gzip\"", "\"abc\""), Some("gzip"));
        assert_eq!(matched_coding("W/\"abc-br\"", "abc"), Some("br"));
        assert_eq!(matched_coding("\"abc\"", "abc"), None, "the identity representation");
        assert_eq!(matched_coding("\"abd-gzip\"", "abc"), None, "another entity");
        assert_eq!(matched_coding("*", "abc"), None);
    }

    #[test]
    fn matching() {
        let d = "abc";
        assert!(if_none_match("\"abc\"", d));
        assert!(if_none_match("W/\"abc\"", d));
        assert!(if_none_match("\"x\", \"abc-gzip\"", d));
        assert!(if_none_match("*", d));
        assert!(!if_none_match("\"abcd\"", d));
        assert!(!if_none_match("", d));
        assert!(!if_none_match("\"ab\"", d));
        // The tag may be given quoted too, in any representation.
        assert!(if_none_match("\"abc\"", "\"abc-br\""));
        assert_eq!(for_coding(&strong(d), "gzip"), "\"abc-gzip\"");
    }
}
