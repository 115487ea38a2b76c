//! `Cache-Control` as a shared cache reads it (RFC 9111 §5.2): the origin's
//! directives on bundles, models and manifests, parsed once for every edge
//! that stores them (the Rust edge's cache, the Fastly app's core cache).

use core::time::Duration;

/// The parsed `Cache-Control` of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheControl {
    /// `max-age`, seconds.
    pub max_age: Option<u64>,
    /// `s-maxage`, seconds.
    pub s_maxage: Option<u64>,
    /// `stale-while-revalidate`, seconds.
    pub stale_while_revalidate: Option<u64>,
    /// `stale-if-error`, seconds.
    pub stale_if_error: Option<u64>,
    /// `private`.
    pub private: bool,
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache`.
    pub no_cache: bool,
    /// `immutable`.
    pub immutable: bool,
}

impl CacheControl {
    /// Parses a header value; unknown directives are ignored, as RFC 9111 requires.
    pub fn parse(value: &str) -> Self {
        let mut cc = CacheControl::default();
        for part in value.split(',') {
            let part = part.trim();
            let (name, arg) = match part.split_once('=') {
                Some((n, a)) => (n.trim().to_ascii_lowercase(), Some(a.trim().trim_matches('"'))),
                None => (part.to_ascii_lowercase(), None),
            };
            let secs = arg.and_then(|a| a.parse::<u64>().ok());
            match name.as_str() {
                "max-age" => cc.max_age = secs,
                "s-maxage" => cc.s_maxage = secs,
                "stale-while-revalidate" => cc.stale_while_revalidate = secs,
                "stale-if-error" => cc.stale_if_error = secs,
                "private" => cc.private = true,
                "no-store" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "immutable" => cc.immutable = true,
                _ => {}
            }
        }
        cc
    }

    /// Whether a shared cache may store the response.
    pub fn storable(&self) -> bool {
        !self.private && !self.no_store && (self.s_maxage.is_some() || self.max_age.is_some() || self.no_cache)
    }

    /// The freshness lifetime for a shared cache.
    pub fn lifetime(&self) -> Duration {
        if self.no_cache {
            return Duration::ZERO;
        }
        Duration::from_secs(self.s_maxage.or(self.max_age).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_origins_directives() {
        let cc = CacheControl::parse("public, max-age=0, s-maxage=60, stale-while-revalidate=30, stale-if-error=600");
        assert_eq!(cc.s_maxage, Some(60));
        assert_eq!(cc.max_age, Some(0));
        assert_eq!(cc.lifetime(), Duration::from_secs(60), "s-maxage wins in a shared cache");
        assert_eq!((cc.stale_while_revalidate, cc.stale_if_error), (Some(30), Some(600)));
        assert!(cc.storable());
        let p = CacheControl::parse("private, max-age=30");
        assert!(p.private && !p.storable(), "a shared cache never stores private responses");
        let i = CacheControl::parse("public, max-age=31536000, immutable");
        assert!(i.immutable && i.storable());
        assert_eq!(i.lifetime(), Duration::from_secs(31_536_000));
        assert!(!CacheControl::parse("no-store, max-age=5").storable());
        let nc = CacheControl::parse("no-cache");
        assert!(nc.storable() && nc.lifetime().is_zero(), "no-cache: stored, always revalidated");
        assert!(!CacheControl::parse("").storable(), "no lifetime, no storing");
        assert_eq!(CacheControl::parse("MAX-AGE=\"7\", x-unknown=1").max_age, Some(7));
    }
}
