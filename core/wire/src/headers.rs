//! Header names, lower case (as HTTP/2 and the `http` crate spell them).

/// A guest module's detached ed25519 signature, base64.
pub const SIGNATURE: &str = "x-edgewise-signature";
/// The sha256 of a bundle's bytes (hex), so a client can ask for it again by digest.
pub const BUNDLE_DIGEST: &str = "x-edgewise-bundle-digest";
/// Candidate sources that failed or timed out while a bundle was built.
pub const SOURCES_DROPPED: &str = "x-edgewise-sources-dropped";
/// How the edge cache served a response: `hit`, `miss`, `stale`, `revalidated` ([`crate::CacheStatus`]).
pub const CACHE: &str = "x-edgewise-cache";
/// Which frame a plain-JSON feed answer is: `preliminary` or `refined`.
pub const FEED_FRAME: &str = "x-edgewise-feed";
/// Purge keys (Fastly's name).
pub const SURROGATE_KEY: &str = "surrogate-key";
/// Purge keys (Cloudflare's name); carries the same keys as [`SURROGATE_KEY`].
pub const CACHE_TAG: &str = "cache-tag";
/// Which path ranked an origin ranking: `gpu` or `cpu` (the bytes are the same either way).
pub const RANKED_ON: &str = "x-edgewise-ranked-on";
/// A service key (the alternative to `Authorization: Bearer`).
pub const API_KEY: &str = "x-api-key";
