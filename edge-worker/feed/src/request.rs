//! A feed request, parsed and checked exactly as the Rust edge does it
//! (`edge-worker/src/server.rs`'s guard and `strict_query`,
//! `edge-worker/src/feed/request.rs`): the same rules, the same order, the
//! same messages, so that a client cannot tell the two doors apart by their
//! refusals.

use std::collections::HashMap;

use base64::Engine as _;
use edgewise_core::Region;
use edgewise_core::rank::RankContext;
use edgewise_core::session::SessionState;

use crate::HttpError;

/// Most `seen` ids a feed request may carry (`edge-worker`'s `MAX_SEEN`).
pub const MAX_SEEN: usize = 10_000;
/// The region of a request that names none.
pub const DEFAULT_REGION: u8 = 0;
/// The tenant of a request that names none.
pub const DEFAULT_TENANT: &str = "default";
/// Longest `Authorization` header looked at.
pub const MAX_AUTHORIZATION_BYTES: usize = 8 << 10;

/// What the handler hands the feed: the raw pieces of the request.
#[derive(Debug, Default)]
pub struct Call {
    /// The query string, without `?`.
    pub query: Option<String>,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The `Accept` header.
    pub accept: Option<String>,
    /// The body of a POST (bounded already).
    pub body: Option<Vec<u8>>,
}

/// The user context a feed request carries (POST body), as `edge-worker`'s `FeedBody`.
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
    pub fn parse(bytes: &[u8]) -> Result<Self, HttpError> {
        serde_json::from_slice(bytes).map_err(|e| HttpError::bad(format!("invalid feed body: {e}")))
    }
}

/// A parsed feed request.
#[derive(Debug, Clone)]
pub struct FeedRequest {
    /// The user whose token the request carries (`None`: anonymous).
    pub user: Option<u64>,
    /// The region whose bundle is ranked.
    pub region: Region,
    /// Items to return.
    pub k: u32,
    /// Preliminary items the client shows before the refined frame.
    pub shown: usize,
    /// The tenant named (checked; every tenant ranks with the linked core).
    pub tenant: String,
    /// Whether to fetch and rank the personal bundle.
    pub refine: bool,
    /// The context both rankings use.
    pub ctx: RankContext,
}

/// Parses a query string as `serde_urlencoded` does (`+` is a space,
/// percent-escapes decoded, bad UTF-8 replaced), refusing a parameter given
/// twice.
pub fn strict_query(query: Option<&str>) -> Result<HashMap<String, String>, HttpError> {
    let mut map = HashMap::new();
    for piece in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
        let (k, v) = (form_decode(k), form_decode(v));
        if map.contains_key(&k) {
            return Err(HttpError::bad(format!("the query parameter {k:?} is given more than once")));
        }
        map.insert(k, v);
    }
    Ok(map)
}

/// `application/x-www-form-urlencoded` decoding of one name or value.
fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Bearer credential of an `Authorization` header (`edgewise_http::auth::bearer`).
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let v = authorization.filter(|v| v.len() <= MAX_AUTHORIZATION_BYTES)?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim()).filter(|t| !t.is_empty())
}

/// The guard's part: the `user` parameter and its token. A feed for a user
/// needs a token (401 without one); the origin checks it when the personal
/// bundle is fetched.
pub fn user_token(query: &HashMap<String, String>, authorization: Option<&str>) -> Result<Option<String>, HttpError> {
    match query.get("user") {
        None => Ok(None),
        Some(u) => match u.parse::<u64>() {
            Err(_) => Err(HttpError::bad(format!("user={u:?} is not a user id"))),
            Ok(_) => match bearer(authorization) {
                Some(t) => Ok(Some(t.to_string())),
                None => Err(HttpError::new(401, "this route needs the user's token (Authorization: Bearer <token>)")
                    .with("www-authenticate", "Bearer")),
            },
        },
    }
}

impl FeedRequest {
    /// Parses the query and body at the component's time `now_ms`; a
    /// `now_ms` in the body may differ from it by at most `max_skew_ms`.
    pub fn parse(
        query: &HashMap<String, String>,
        body: Option<FeedBody>,
        default_shown: usize,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<Self, HttpError> {
        let bad = |m: String| HttpError::bad(m);
        const KNOWN: [&str; 6] = ["user", "region", "k", "shown", "tenant", "refine"];
        // The Rust edge looks at a HashMap's keys in its own order; with two
        // unknown keys either may be named. Name the first in sorted order.
        let mut unknown: Vec<&String> = query.keys().filter(|k| !KNOWN.contains(&k.as_str())).collect();
        unknown.sort();
        if let Some(unknown) = unknown.first() {
            return Err(bad(format!("unknown query parameter {unknown:?} (known: {})", KNOWN.join(", "))));
        }
        let num = |name: &str| -> Result<Option<u64>, HttpError> {
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
        let now = match body.now_ms {
            None => now_ms,
            Some(t) if t.abs_diff(now_ms) <= max_skew_ms => t,
            Some(t) => {
                return Err(bad(format!(
                    "now_ms {t} is {} ms from the edge's clock; at most {max_skew_ms} ms are accepted (feed.max_clock_skew_ms)",
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
        } && user.is_some();
        let tenant = query.get("tenant").cloned().unwrap_or_else(|| DEFAULT_TENANT.to_string());
        if tenant.is_empty() || tenant.len() > 64 {
            return Err(bad("tenant must be 1 to 64 characters".into()));
        }
        Ok(FeedRequest { user, region, k, shown, tenant, refine, ctx })
    }
}
