//! A feed request, parsed and checked: the query (`user`, `region`, `k`,
//! `shown`, `tenant`, `refine`) and the optional JSON body (seen items, the
//! session, the request time), into a [`FeedRequest`] with its
//! [`RankContext`]. Every refusal names the parameter and the rule it broke.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use edgewise_core::Region;
use edgewise_core::rank::RankContext;
use edgewise_core::session::SessionState;

use super::{FeedConfig, FeedError};
use crate::tenants::DEFAULT_TENANT;

/// Most `seen` ids a feed request may carry.
pub const MAX_SEEN: usize = 10_000;

/// The region of a request that names none.
pub const DEFAULT_REGION: u8 = 0;

/// The user context a feed request carries (POST body).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedBody {
    /// Items already seen.
    #[serde(default)]
    pub seen: Vec<u64>,
    /// The serialized session state (`EWSS`, base64).
    #[serde(default)]
    pub session: Option<String>,
    /// The user's recent interactions (`EWHS`, base64: [`edgewise_core::history`]),
    /// for a model with a history block.
    #[serde(default)]
    pub history: Option<String>,
    /// Request time, ms since the epoch (default: now).
    #[serde(default)]
    pub now_ms: Option<u64>,
}

impl FeedBody {
    /// Parses a POST body.
    pub fn parse(bytes: &[u8]) -> Result<Self, FeedError> {
        serde_json::from_slice(bytes).map_err(|e| FeedError::BadRequest(format!("invalid feed body: {e}")))
    }
}

/// A parsed feed request.
#[derive(Debug, Clone)]
pub struct FeedRequest {
    /// The user, whose token the request carries; `None`: an anonymous feed
    /// (the regional bundle ranked with the session the client sends).
    pub user: Option<u64>,
    /// The region whose bundle is ranked (region [`DEFAULT_REGION`] unless `region=` names one).
    pub region: Region,
    /// Items to return.
    pub k: u32,
    /// Preliminary items the client shows before the refined frame.
    pub shown: usize,
    /// Whose guest module ranks ([`DEFAULT_TENANT`] unless `tenant=` names one).
    pub tenant: String,
    /// Whether to fetch and rank the personalized bundle (`refine=false`:
    /// only the preliminary ranking, without contacting the origin when the
    /// regional bundle is cached).
    pub refine: bool,
    /// The context both rankings use.
    pub ctx: RankContext,
}

impl FeedRequest {
    /// Parses the query and body, at the edge's time `now_ms`: a `now_ms`
    /// in the body may differ from it by at most `max_skew`.
    pub fn parse(
        query: &HashMap<String, String>,
        body: Option<FeedBody>,
        default_shown: usize,
        now_ms: u64,
        max_skew: Duration,
    ) -> Result<Self, FeedError> {
        let bad = |m: String| FeedError::BadRequest(m);
        const KNOWN: [&str; 6] = ["user", "region", "k", "shown", "tenant", "refine"];
        if let Some(unknown) = query.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(bad(format!("unknown query parameter {unknown:?} (known: {})", KNOWN.join(", "))));
        }
        let num = |name: &str| -> Result<Option<u64>, FeedError> {
            query
                .get(name)
                .map(|v| v.parse::<u64>().map_err(|_| bad(format!("{name}={v:?} is not a number"))))
                .transpose()
        };
        let user = num("user")?;
        let region = match query.get("region") {
            None => Region::new(DEFAULT_REGION),
            Some(r) => r.parse::<Region>(),
        }
        .map_err(|e| bad(e.to_string()))?;
        let k = match num("k")? {
            None => 20,
            Some(k) if (1..=1000).contains(&k) => k as u32,
            Some(k) => return Err(bad(format!("k = {k} must be in 1..=1000"))),
        };
        let shown = num("shown")?.map_or(default_shown, |s| usize::try_from(s).unwrap_or(usize::MAX)).min(k as usize);
        let body = body.unwrap_or_default();
        let skew = u64::try_from(max_skew.as_millis()).unwrap_or(u64::MAX);
        let now = match body.now_ms {
            None => now_ms,
            Some(t) if t.abs_diff(now_ms) <= skew => t,
            Some(t) => {
                return Err(bad(format!(
                    "now_ms {t} is {} ms from the edge's clock; at most {skew} ms are accepted (feed.max_clock_skew_ms)",
                    t.abs_diff(now_ms)
                )));
            }
        };
        if body.seen.len() > MAX_SEEN {
            return Err(bad(format!("seen has {} ids; at most {MAX_SEEN}", body.seen.len())));
        }
        let mut ctx = RankContext::new(k, now);
        ctx.region = Some(region);
        ctx.seen = body.seen;
        let base64_field = |name: &str, v: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .map_err(|e| bad(format!("{name} is not base64: {e}")))
        };
        if let Some(s) = body.session {
            let bytes = base64_field("session", &s)?;
            let (state, _) = SessionState::decode(&bytes).map_err(|e| bad(format!("session: {e}")))?;
            ctx.session = state;
        }
        if let Some(h) = body.history {
            let bytes = base64_field("history", &h)?;
            ctx.history = edgewise_core::history::History::decode(&bytes).map_err(|e| bad(format!("history: {e}")))?;
        }
        let refine = match query.get("refine").map(String::as_str) {
            None | Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(v) => return Err(bad(format!("refine={v:?} must be true or false"))),
        } && user.is_some(); // An anonymous feed has no personal bundle to refine with.
        let tenant = query.get("tenant").cloned().unwrap_or_else(|| DEFAULT_TENANT.to_string());
        if tenant.is_empty() || tenant.len() > 64 {
            return Err(bad("tenant must be 1 to 64 characters".into()));
        }
        Ok(FeedRequest { user, region, k, shown, tenant, refine, ctx })
    }

    /// The origin paths of the two bundles: the regional one, and the user's
    /// own (none for an anonymous feed).
    pub fn bundle_paths(&self, cfg: &FeedConfig) -> (String, Option<String>) {
        (
            edgewise_wire::paths::regional_bundle(self.region, cfg.candidates),
            self.user.map(|u| edgewise_wire::paths::user_candidates(u, cfg.candidates, Some(self.region))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<FeedRequest, FeedError> {
        let q: HashMap<String, String> = q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        FeedRequest::parse(&q, None, 3, 1_700_000_000_000, Duration::from_secs(60))
    }

    #[test]
    fn regions_are_parsed_by_the_one_rule() {
        let r = parse(&[("user", "7"), ("region", "31")]).expect("valid");
        assert_eq!((r.region.get(), r.ctx.region.map(Region::get)), (31, Some(31)));
        assert_eq!(parse(&[]).expect("valid").region.get(), DEFAULT_REGION);
        for bad in ["32", "-1", "+1", "x", ""] {
            let e = parse(&[("region", bad)]).expect_err(bad).to_string();
            assert!(e.contains("region") && e.contains("0..=31"), "{bad}: {e}");
        }
    }

    #[test]
    fn paths_name_the_region_and_the_user() {
        let cfg = FeedConfig { candidates: 50, ..FeedConfig::default() };
        let r = parse(&[("user", "7"), ("region", "4")]).expect("valid");
        let (regional, personal) = r.bundle_paths(&cfg);
        assert_eq!(regional, "/v1/regions/4/bundle?k=50");
        assert_eq!(personal.as_deref(), Some("/v1/users/7/candidates?k=50&region=4"));
        let anon = parse(&[("refine", "true")]).expect("valid");
        assert!(!anon.refine && anon.bundle_paths(&cfg).1.is_none(), "an anonymous feed has nothing to refine with");
    }
}
