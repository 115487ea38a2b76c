//! Route paths. Builders take validated values ([`Region`], [`Digest`]), so a
//! path built here is always one the servers accept.

use alloc::format;
use alloc::string::String;

use edgewise_core::{Digest, Region};

/// Liveness.
pub const LIVEZ: &str = "/livez";
/// Readiness.
pub const READYZ: &str = "/readyz";
/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// The origin's OpenAPI document.
pub const OPENAPI: &str = "/openapi.json";
/// Item batch upserts (origin).
pub const ITEMS: &str = "/v1/items";
/// Feedback events (origin).
pub const EVENTS: &str = "/v1/events";
/// Model uploads (origin).
pub const MODELS: &str = "/v1/models";
/// The model manifest (origin, cached by the edge).
pub const MODEL_CURRENT: &str = "/v1/models/current";
/// Guest module uploads (origin).
pub const MODULES: &str = "/v1/modules";
/// The origin-side refined ranking.
pub const RANK: &str = "/v1/rank";
/// The prefix of a user's own routes (`/v1/users/{id}/…`), which need that user's token.
pub const USERS: &str = "/v1/users/";
/// The edge's feed.
pub const FEED: &str = "/v1/feed";
/// The edge's purge route.
pub const ADMIN_PURGE: &str = "/admin/purge";

/// The path prefixes the edge passes to the origin (through its cache).
pub const PROXIED: [&str; 6] =
    ["/v1/regions/", "/v1/bundles/", "/v1/models/", "/v1/modules/", "/v1/items/", "/v1/users/"];

/// `GET /v1/regions/{region}/bundle?k=`: the regional bundle.
pub fn regional_bundle(region: Region, k: usize) -> String {
    format!("/v1/regions/{region}/bundle?k={k}")
}

/// `GET /v1/users/{user}/candidates?k=[&region=]`: a user's personal bundle.
pub fn user_candidates(user: u64, k: usize, region: Option<Region>) -> String {
    match region {
        Some(r) => format!("/v1/users/{user}/candidates?k={k}&region={r}"),
        None => format!("/v1/users/{user}/candidates?k={k}"),
    }
}

/// `GET /v1/bundles/{digest}`.
pub fn bundle(digest: &Digest) -> String {
    format!("/v1/bundles/{digest}")
}

/// `GET /v1/models/{digest}`.
pub fn model(digest: &Digest) -> String {
    format!("/v1/models/{digest}")
}

/// `GET /v1/modules/{digest}`.
pub fn module(digest: &Digest) -> String {
    format!("/v1/modules/{digest}")
}

/// `PUT /admin/modules/{tenant}` (edge).
pub fn admin_module(tenant: &str) -> String {
    format!("/admin/modules/{tenant}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_use_the_prefixes_the_edge_proxies() {
        let r = Region::new(4).ok();
        let d = Digest::of(b"x");
        for p in [
            regional_bundle(Region::new(4).expect("region"), 100),
            user_candidates(7, 50, r),
            bundle(&d),
            model(&d),
            module(&d),
        ] {
            assert!(PROXIED.iter().any(|x| p.starts_with(x)), "{p}");
        }
        assert_eq!(user_candidates(7, 50, None), "/v1/users/7/candidates?k=50");
        assert_eq!(user_candidates(7, 50, r), "/v1/users/7/candidates?k=50&region=4");
    }
}
