//! The feed: a speculative ranking at once, then a refined one.
//!
//! `GET|POST /v1/feed?user=&region=&k=&shown=&tenant=&refine=`
//!
//! 1. **Preliminary.** The regional bundle (from the cache) is ranked by the
//!    guest with the user's context: the POST body's session state and seen
//!    items.
//! 2. **Refined.** The personalized bundle is fetched from the origin (it is
//!    `private`, so the cache passes it through) and ranked by the guest.
//! 3. **Stable merge.** The first `shown` preliminary items keep their places
//!    ([`edgewise_core::merge::stable_merge`]); the rest comes from the refined
//!    ranking.
//! 4. **Responses.** With `Accept: application/x-ndjson`, two frames,
//!    preliminary then refined, each with its items, scores, timings, and the
//!    cache status and digest of its bundle. Otherwise one JSON document: the
//!    refined result if it is ready within the deadline (default 150 ms), else
//!    the preliminary one with `X-Edgewise-Feed: preliminary`.
//!    With `refine=false`, only the preliminary frame is computed and sent
//!    (one NDJSON frame, or JSON with `X-Edgewise-Feed: preliminary`): an
//!    instant first paint for a client that asks for the refined feed
//!    separately, served from the cache alone.
//! 5. **Fallbacks.** Origin down: the cache serves stale bundles
//!    (`stale-if-error`). Guest failure: the bundle's retrieval order, with
//!    `"ranked_by": "retrieval-order"` and the failure counted. Nothing cached
//!    and no origin: 503.
//!
//! Models are fetched through the cache by the digest the bundle names
//! (`/v1/models/{digest}`), or the origin's current manifest when the bundle
//! names none, and each is verified against its sha256 before it is used.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use edgewise_core::bundle::Bundle;
use edgewise_core::rank::RankContext;
use edgewise_core::session::SessionState;
use sha2::{Digest, Sha256};

use crate::cache::{Cache, CacheError, Served};
use crate::guest::{GuestError, GuestModule};
use crate::metrics::GuestMetrics;
use crate::pool::{InstanceMode, InstancePool};

/// Feed settings.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// How long a plain-JSON request waits for the refined result.
    pub refine_deadline: Duration,
    /// Candidates asked of the origin for each bundle.
    pub candidates: usize,
    /// How far a request's `now_ms` may be from the edge's clock.
    pub max_clock_skew: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self { refine_deadline: Duration::from_millis(150), candidates: 300, max_clock_skew: Duration::from_secs(3600) }
    }
}

/// The tenant a feed request uses when it names none.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant's guest module.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The compiled module and its instances.
    pub pool: Arc<InstancePool>,
    /// Where it came from: a file path or `origin:<digest>`.
    pub source: String,
}

/// How rankings get guest instances, and how many run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestOptions {
    /// Fresh or pooled instances.
    pub mode: InstanceMode,
    /// Idle instances kept per tenant (pooled mode).
    pub max_idle: usize,
    /// Rankings that run at once; later ones wait their turn. `0`: one per core.
    pub concurrency: usize,
}

impl Default for GuestOptions {
    fn default() -> Self {
        Self { mode: InstanceMode::Pooled, max_idle: 8, concurrency: 0 }
    }
}

impl GuestOptions {
    /// `concurrency` with `0` resolved to the number of cores.
    pub fn concurrency(&self) -> usize {
        if self.concurrency > 0 {
            self.concurrency
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }
}

/// The guest modules by tenant, and verified models.
pub struct Ranking {
    tenants: RwLock<HashMap<String, Tenant>>,
    /// The engine and limits new modules are compiled for (hot swaps).
    pub sandbox: Option<(wasmtime::Engine, crate::guest::Limits)>,
    /// Where compiled modules are cached on disk, if anywhere.
    pub compiled_cache: Option<crate::compiled::CompiledCache>,
    /// The key modules must be signed by, if any.
    pub public_key: Option<ed25519_dalek::VerifyingKey>,
    models: RwLock<HashMap<String, Arc<Vec<u8>>>>,
    /// Guest failures and timings (registered by the server's `/metrics`).
    pub metrics: GuestMetrics,
    options: GuestOptions,
    /// Permits for rankings running at once.
    slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Ranking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ranking").finish_non_exhaustive()
    }
}

impl Ranking {
    /// With `guest` as the default tenant's module (or none yet), and default [`GuestOptions`].
    pub fn new(guest: Option<GuestModule>) -> Result<Self, prometheus::Error> {
        Self::with_options(guest, GuestOptions::default())
    }

    /// With `guest` as the default tenant's module (or none yet).
    pub fn with_options(guest: Option<GuestModule>, options: GuestOptions) -> Result<Self, prometheus::Error> {
        let r = Self {
            tenants: RwLock::default(),
            sandbox: None,
            compiled_cache: None,
            public_key: None,
            models: RwLock::default(),
            metrics: GuestMetrics::new()?,
            slots: Arc::new(tokio::sync::Semaphore::new(options.concurrency())),
            options,
        };
        if let Some(g) = guest {
            r.swap(DEFAULT_TENANT, g, "startup".into());
        }
        Ok(r)
    }

    /// The default tenant's module.
    pub fn guest(&self) -> Option<Arc<InstancePool>> {
        self.guest_for(DEFAULT_TENANT)
    }

    /// A tenant's module and instances.
    pub fn guest_for(&self, tenant: &str) -> Option<Arc<InstancePool>> {
        self.tenants.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(tenant).map(|t| t.pool.clone())
    }

    /// The guest options.
    pub fn options(&self) -> GuestOptions {
        self.options
    }

    /// Every tenant, where its module came from, and whether it can rank
    /// (fewer than [`crate::pool::UNHEALTHY_AFTER`] failed rankings in a row).
    pub fn tenant_health(&self) -> Vec<(String, String, bool)> {
        let t = self.tenants.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut v: Vec<(String, String, bool)> =
            t.iter().map(|(k, v)| (k.clone(), v.source.clone(), v.pool.healthy())).collect();
        v.sort();
        v
    }

    /// Every tenant and where its module came from.
    pub fn tenants(&self) -> Vec<(String, String)> {
        self.tenant_health().into_iter().map(|(tenant, source, _)| (tenant, source)).collect()
    }

    /// Replaces (or adds) a tenant's module. Requests already ranking keep
    /// the module they started with (they hold its `Arc`); later ones get the
    /// new one. The old module's idle instances go with it.
    pub fn swap(&self, tenant: &str, module: GuestModule, source: String) {
        let pool = InstancePool::new(module, self.options.mode, self.options.max_idle);
        let t = Tenant { pool: Arc::new(pool), source };
        self.tenants.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(tenant.to_string(), t);
    }

    fn count_failure(&self, kind: &'static str) {
        self.metrics.failures.with_label_values(&[kind]).inc();
    }

    /// Failures of `kind` so far.
    pub fn failures(&self, kind: &str) -> u64 {
        self.metrics.failures.with_label_values(&[kind]).get()
    }
}

/// Most `seen` ids a feed request may carry.
pub const MAX_SEEN: usize = 10_000;

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
    /// Request time, ms since the epoch (default: now).
    #[serde(default)]
    pub now_ms: Option<u64>,
}

/// Why a feed request failed.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Bad request.
    #[error("{0}")]
    BadRequest(String),
    /// Neither bundle could be had.
    #[error("no bundle available: {0}")]
    Unavailable(String),
}

/// One ranked frame.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Frame {
    /// `preliminary` or `refined`.
    pub frame: &'static str,
    /// The ranked items: id and score.
    pub items: Vec<FrameItem>,
    /// `guest` or `retrieval-order` (after a guest failure).
    pub ranked_by: &'static str,
    /// Bundle digest (sha256 of its bytes).
    pub bundle_digest: String,
    /// How the cache served the bundle.
    pub bundle_cache: &'static str,
    /// Model digest used.
    pub model: String,
    /// Milliseconds: fetching the bundle, ranking it.
    pub timings_ms: Timings,
    /// The merged list (refined frame only): shown preliminary items keep their places.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<Vec<u64>>,
}

/// One item of a frame.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FrameItem {
    /// Item id.
    pub id: u64,
    /// Calibrated score (the retrieval score after a guest failure).
    pub score: f32,
}

/// Frame timings.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Timings {
    /// Getting the bundle (cache or origin).
    pub fetch: f64,
    /// Ranking it.
    pub rank: f64,
}

/// A parsed feed request.
#[derive(Debug, Clone)]
pub struct FeedRequest {
    /// The user, whose token the request carries; `None`: an anonymous feed
    /// (the regional bundle ranked with the session the client sends).
    pub user: Option<u64>,
    /// Region.
    pub region: u8,
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
    /// The context.
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
        let region = match num("region")? {
            None => 0,
            Some(r) if r < 32 => r as u8,
            Some(r) => return Err(bad(format!("region {r} is out of range (0..=31)"))),
        };
        let k = match num("k")? {
            None => 20,
            Some(k) if (1..=1000).contains(&k) => k as u32,
            Some(k) => return Err(bad(format!("k = {k} must be in 1..=1000"))),
        };
        let shown = num("shown")?.map_or(default_shown, |s| s as usize).min(k as usize);
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
        ctx.region = region;
        ctx.seen = body.seen;
        if let Some(s) = body.session {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|e| bad(format!("session is not base64: {e}")))?;
            let (state, _) = SessionState::decode(&bytes).map_err(|e| bad(format!("session: {e}")))?;
            ctx.session = state;
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
}

fn hex(d: &[u8; 32]) -> String {
    edgewise_core::model::digest_hex(d)
}

/// Fetches and verifies the model `digest` (or the current one when `digest` is all zero).
async fn model_for(cache: &Cache, ranking: &Ranking, digest: [u8; 32]) -> Result<(String, Arc<Vec<u8>>), String> {
    let digest = if digest == [0; 32] {
        let m = cache.get("/v1/models/current").await.map_err(|e| format!("model manifest: {e}"))?;
        let v: serde_json::Value =
            serde_json::from_slice(&m.response.body).map_err(|e| format!("model manifest is not JSON: {e}"))?;
        v["digest"].as_str().ok_or("the origin has no current model")?.to_string()
    } else {
        hex(&digest)
    };
    if let Some(m) = ranking.models.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&digest) {
        return Ok((digest, m.clone()));
    }
    let served = cache.get(&format!("/v1/models/{digest}")).await.map_err(|e| format!("model {digest}: {e}"))?;
    let actual = hex(&Sha256::digest(&served.response.body).into());
    if actual != digest {
        return Err(format!("model {digest} failed verification: its sha256 is {actual}"));
    }
    let bytes = Arc::new(served.response.body.to_vec());
    ranking.models.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(digest.clone(), bytes.clone());
    Ok((digest, bytes))
}

/// The bundle's rows in retrieval order (the fallback ranking), seen items removed.
pub fn retrieval_order(bundle: &[u8], ctx: &RankContext) -> Vec<FrameItem> {
    let Ok(b) = Bundle::decode(bundle) else { return Vec::new() };
    let mut rows: Vec<FrameItem> = (0..b.len())
        .filter(|&i| !ctx.seen.contains(&b.id(i)))
        .filter(|&i| edgewise_core::bundle::region_eligible(b.region_mask(i), ctx.region))
        .map(|i| FrameItem { id: b.id(i), score: b.retrieval_score(i) })
        .collect();
    rows.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    rows.truncate(ctx.k as usize);
    rows
}

/// Fetches one bundle and ranks it. With `token` the bundle is a user's own
/// (fetched with their token, never cached); without, a shared one through the cache.
pub async fn frame(
    cache: &Cache,
    ranking: &Arc<Ranking>,
    path: &str,
    token: Option<&str>,
    name: &'static str,
    ctx: &RankContext,
    tenant: &str,
) -> Result<Frame, CacheError> {
    let t0 = Instant::now();
    let served: Served = match token {
        Some(t) => cache.pass_through(path, t).await?,
        None => cache.get(path).await?,
    };
    let fetch = t0.elapsed().as_secs_f64() * 1e3;
    let bundle = served.response.body.clone();
    // Checked once per stored bundle, not once per request: its sha256, and
    // the full structure and CRC-32 check, so the guest checks structure only.
    let facts = served.response.facts();
    let bundle_digest = facts.sha256.clone();
    let checksum_verified = facts.bundle_model.is_some();
    let t1 = Instant::now();
    let header_digest = facts.bundle_model.unwrap_or([0; 32]);
    let model = model_for(cache, ranking, header_digest).await;
    let (items, ranked_by, model_name) = match (model, ranking.guest_for(tenant)) {
        (Ok((digest, bytes)), Some(guest)) => {
            let guest_health = guest.clone();
            let ctx2 = RankContext { checksum_verified, ..ctx.clone() };
            let b2 = bundle.clone();
            let m = ranking.metrics.clone();
            let d2 = digest.clone();
            // The semaphore is never closed, so acquiring only waits.
            let permit = ranking.slots.clone().acquire_owned().await;
            let r = tokio::task::spawn_blocking(move || -> Result<Vec<FrameItem>, GuestError> {
                let _permit = permit;
                let t = Instant::now();
                let r = guest.rank(&d2, &bytes, &b2, &ctx2);
                m.rank_seconds.observe(t.elapsed().as_secs_f64());
                let r = r?;
                match r.instantiated {
                    Some(d) => {
                        m.instantiate_seconds.observe(d.as_secs_f64());
                        m.instances.with_label_values(&["new"]).inc();
                    }
                    None => m.instances.with_label_values(&["reused"]).inc(),
                }
                if r.model_loaded {
                    m.model_loads.inc();
                }
                Ok(r.output.items.iter().map(|i| FrameItem { id: i.id, score: i.score }).collect())
            })
            .await;
            match r {
                Ok(Ok(items)) => {
                    guest_health.record(true);
                    (items, "guest", digest)
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, kind = e.kind(), "guest ranking failed; falling back to retrieval order");
                    ranking.count_failure(e.kind());
                    guest_health.record(false);
                    (retrieval_order(&bundle, ctx), "retrieval-order", digest)
                }
                Err(e) => {
                    tracing::error!(error = %e, "ranking task failed; falling back to retrieval order");
                    ranking.count_failure("panic");
                    guest_health.record(false);
                    (retrieval_order(&bundle, ctx), "retrieval-order", digest)
                }
            }
        }
        (Err(e), _) => {
            tracing::warn!(error = %e, "no usable model; falling back to retrieval order");
            ranking.count_failure("model");
            (retrieval_order(&bundle, ctx), "retrieval-order", String::new())
        }
        (Ok((digest, _)), None) => {
            ranking.count_failure("no-module");
            (retrieval_order(&bundle, ctx), "retrieval-order", digest)
        }
    };
    Ok(Frame {
        frame: name,
        items,
        ranked_by,
        bundle_digest,
        bundle_cache: served.status.as_str(),
        model: model_name,
        timings_ms: Timings { fetch, rank: t1.elapsed().as_secs_f64() * 1e3 },
        merged: None,
    })
}

/// The origin paths of the two bundles: the regional one, and the user's own
/// (none for an anonymous feed).
pub fn paths(r: &FeedRequest, cfg: &FeedConfig) -> (String, Option<String>) {
    (
        format!("/v1/regions/{}/bundle?k={}", r.region, cfg.candidates),
        r.user.map(|u| format!("/v1/users/{u}/candidates?k={}&region={}", cfg.candidates, r.region)),
    )
}

/// Adds the stable merge of `prelim` and `refined` to `refined`.
pub fn merge_into(prelim: Option<&Frame>, refined: &mut Frame, shown: usize, k: usize) {
    let p: Vec<u64> = prelim.map(|f| f.items.iter().map(|i| i.id).collect()).unwrap_or_default();
    let r: Vec<u64> = refined.items.iter().map(|i| i.id).collect();
    let mut out = Vec::new();
    edgewise_core::merge::stable_merge(&p, shown, &r, k, &mut out);
    refined.merged = Some(out);
}
