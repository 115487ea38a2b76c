//! The HTTP API (v1), built with axum.
//!
//! | route | what |
//! |---|---|
//! | `GET /livez`, `GET /readyz` | liveness; readiness (the index is loaded) |
//! | `GET /metrics` | Prometheus metrics |
//! | `PUT /v1/items` | batch upsert, JSON array or NDJSON, a status per item (ingest key) |
//! | `GET /v1/items/{id}`, `DELETE /v1/items/{id}` | one item (delete needs the ingest key) |
//! | `POST /v1/events` | batch of feedback events, idempotent by `event_id` (ingest key) |
//! | `GET /v1/users/{id}/candidates?k=&region=` | personalized bundle, `private` |
//! | `GET /v1/regions/{region}/bundle?k=` | regional bundle, `public, s-maxage, stale-while-revalidate, stale-if-error` |
//! | `GET /v1/bundles/{digest}` | a recently built bundle by sha256, `immutable` |
//!
//! Cacheable responses carry a strong ETag (the bundle's sha256; a compressed
//! representation gets its own, e.g. `"<sha>-gzip"`), answer `If-None-Match`
//! with 304, and carry `Vary: Accept-Encoding`, `Surrogate-Key` and `Cache-Tag`.
//! Batch bodies larger than `server.max_body_bytes` get 413; past
//! `server.max_in_flight` concurrent requests the server answers 429 with
//! `Retry-After`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use bytes::Bytes;
use edgewise_core::bundle::Scope;
use edgewise_core::session::SessionConfig;
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::bundles::{self, Built};
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::error::ApiError;
use crate::item::{Item, split_batch};
use crate::metrics::Metrics;
use crate::sources::{self, Request as SourceRequest, Retrieved, Source};
use crate::store::{EventOutcome, Store};
use crate::user::{Event, trending_merge};

/// Media type of candidate bundles.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.edgewise.bundle";

/// Everything the handlers share.
pub struct AppState {
    /// Configuration.
    pub cfg: Config,
    /// Durable store.
    pub store: Store,
    /// In-memory catalogue and indexes.
    pub catalogue: Arc<Catalogue>,
    /// Metrics.
    pub metrics: Metrics,
    /// Set once start-up recovery finished.
    pub ready: AtomicBool,
    /// Session blending (the core's defaults).
    pub session: SessionConfig,
    /// sha256 of the current model (all zero until one is registered).
    pub model_digest: RwLock<[u8; 32]>,
    regional: moka::future::Cache<(u8, usize), Arc<Built>>,
    by_digest: moka::future::Cache<String, Arc<Built>>,
    in_flight: Arc<Semaphore>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("items", &self.catalogue.len()).finish_non_exhaustive()
    }
}

impl AppState {
    /// State over an open store and a (possibly still loading) catalogue.
    pub fn new(cfg: Config, store: Store, catalogue: Arc<Catalogue>, metrics: Metrics) -> Self {
        let regional = moka::future::Cache::builder()
            .max_capacity(1024)
            .time_to_live(Duration::from_secs(cfg.cache.regional_s_maxage.max(1)))
            .build();
        let by_digest = moka::future::Cache::builder()
            .weigher(|_: &String, b: &Arc<Built>| u32::try_from(b.bytes.len()).unwrap_or(u32::MAX))
            .max_capacity(cfg.cache.bundle_cache_bytes)
            .build();
        let in_flight = Arc::new(Semaphore::new(cfg.server.max_in_flight.max(1)));
        Self {
            cfg,
            store,
            catalogue,
            metrics,
            ready: AtomicBool::new(false),
            session: SessionConfig::default(),
            model_digest: RwLock::new([0; 32]),
            regional,
            by_digest,
            in_flight,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The router.
pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.cfg.server.max_body_bytes;
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/items", put(put_items))
        .route("/v1/items/{id}", get(get_item).delete(delete_item))
        .route("/v1/events", axum::routing::post(post_events))
        .route("/v1/users/{id}/candidates", get(candidates))
        .route("/v1/regions/{region}/bundle", get(regional_bundle))
        .route("/v1/bundles/{digest}", get(bundle_by_digest))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(middleware::from_fn(representation_etag))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Records latency per route and caps requests in flight (429 beyond the cap).
async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let Ok(_permit) = st.in_flight.clone().try_acquire_owned() else {
        let mut r =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too many requests in flight; retry shortly").into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let start = Instant::now();
    let resp = next.run(req).await;
    st.metrics.http_seconds.with_label_values(&[&route, resp.status().as_str()]).observe(start.elapsed().as_secs_f64());
    resp
}

/// Gives each content-coding its own strong ETag (`"<tag>-gzip"`), as RFC 9110
/// requires of strong validators for different representations.
async fn representation_etag(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let coding = resp.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let (Some(coding), Some(tag)) = (coding, resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok())) {
        let tagged = format!("{}-{coding}\"", tag.trim_end_matches('"'));
        if let Ok(v) = HeaderValue::from_str(&tagged) {
            resp.headers_mut().insert(header::ETAG, v);
        }
    }
    resp
}

/// Whether `If-None-Match` matches the entity `digest` (in any representation).
pub fn etag_matches(headers: &HeaderMap, digest: &str) -> bool {
    let Some(v) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    v.split(',').map(str::trim).any(|t| {
        if t == "*" {
            return true;
        }
        let t = t.strip_prefix("W/").unwrap_or(t).trim_matches('"');
        let base = ["-gzip", "-br", "-zstd", "-deflate"].iter().find_map(|s| t.strip_suffix(s)).unwrap_or(t);
        base == digest
    })
}

fn check_key(keys: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
    if keys.is_empty() {
        return Ok(());
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        Some(k) if keys.iter().any(|x| x == k) => Ok(()),
        Some(_) => Err(ApiError::unauthorized("the API key is not valid for this route")),
        None => Err(ApiError::unauthorized("this route needs an API key (Authorization: Bearer <key>)")),
    }
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading").into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    st.metrics.index_items.set(st.catalogue.len() as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

fn require_ready(st: &AppState) -> Result<(), ApiError> {
    if st.ready.load(Ordering::Acquire) { Ok(()) } else { Err(ApiError::unavailable("the index is still loading")) }
}

async fn put_items(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.ingest_keys, &headers)?;
    require_ready(&st)?;
    let records = split_batch(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(records.len());
    let mut valid = Vec::new();
    let mut slots = Vec::new();
    for (n, r) in records.into_iter().enumerate() {
        match r.and_then(|v| Item::from_json(v, &st.cfg)) {
            Ok(item) => {
                slots.push(n);
                valid.push(item);
                results.push(serde_json::Value::Null);
            }
            Err(e) => results.push(serde_json::json!({"index": n, "status": "error", "error": e})),
        }
    }
    let accepted = valid.len();
    if accepted > 0 {
        let st2 = st.clone();
        let (valid, existed) = tokio::task::spawn_blocking(move || {
            let existed = st2.store.put_items(&valid);
            (valid, existed)
        })
        .await
        .map_err(ApiError::internal)?;
        let existed = existed?;
        for ((item, slot), was) in valid.into_iter().zip(slots).zip(existed) {
            results[slot] =
                serde_json::json!({"index": slot, "id": item.id, "status": if was { "updated" } else { "created" }});
            st.catalogue.upsert(item);
        }
        st.metrics.writes.with_label_values(&["item", "accepted"]).inc_by(accepted as u64);
    }
    let rejected = results.len() - accepted;
    st.metrics.writes.with_label_values(&["item", "rejected"]).inc_by(rejected as u64);
    let status = if accepted == 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::Json(serde_json::json!({"accepted": accepted, "rejected": rejected, "results": results})))
        .into_response())
}

fn parse_id(s: &str, what: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("{what} {s:?} is not an unsigned 64-bit integer")))
}

async fn get_item(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, &headers)?;
    let id = parse_id(&id, "item id")?;
    let item = st.catalogue.get(id).ok_or_else(|| ApiError::not_found(format!("item {id} does not exist")))?;
    Ok(axum::Json(item.to_json(&st.cfg)).into_response())
}

async fn delete_item(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.ingest_keys, &headers)?;
    require_ready(&st)?;
    let id = parse_id(&id, "item id")?;
    let st2 = st.clone();
    let existed =
        tokio::task::spawn_blocking(move || st2.store.delete_item(id)).await.map_err(ApiError::internal)??;
    st.catalogue.remove(id);
    if !existed {
        return Err(ApiError::not_found(format!("item {id} does not exist")));
    }
    let ratio = st.cfg.index.rebuild_deleted_ratio;
    for shard in st.catalogue.index.shards_needing_rebuild(ratio) {
        let cat = st.catalogue.clone();
        tokio::task::spawn_blocking(move || {
            tracing::info!(shard, "rebuilding index shard in the background");
            cat.index.rebuild_shard(shard, || cat.live_vectors(false));
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn post_events(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.ingest_keys, &headers)?;
    require_ready(&st)?;
    let records = split_batch(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(records.len());
    let mut valid = Vec::new();
    let mut slots = Vec::new();
    for (n, r) in records.into_iter().enumerate() {
        match r.and_then(Event::from_json) {
            Ok(e) => {
                slots.push(n);
                valid.push(e);
                results.push(serde_json::Value::Null);
            }
            Err(e) => results.push(serde_json::json!({"index": n, "status": "error", "error": e})),
        }
    }
    let applied_count = valid.len();
    if applied_count > 0 {
        let st2 = st.clone();
        let half_life = st.cfg.retrieval.trending_half_life_s * 1000.0;
        let (valid, r) = tokio::task::spawn_blocking(move || {
            let cat = st2.catalogue.clone();
            let session = st2.session;
            let r = st2.store.apply_events(
                &valid,
                |e, state| state.apply(e, cat.get(e.item).as_deref(), &session),
                |cur, b| trending_merge(cur, b, half_life),
            );
            (valid, r)
        })
        .await
        .map_err(ApiError::internal)?;
        let (outcomes, bumped) = r?;
        for ((region, item), v) in bumped {
            st.catalogue.set_trending(region, item, v);
        }
        for ((e, slot), o) in valid.iter().zip(slots).zip(outcomes) {
            let status = if o == EventOutcome::Applied { "applied" } else { "duplicate" };
            st.metrics.writes.with_label_values(&["event", status]).inc();
            results[slot] = serde_json::json!({"index": slot, "event_id": e.event_id, "status": status});
        }
    }
    let rejected = results.len() - applied_count;
    st.metrics.writes.with_label_values(&["event", "rejected"]).inc_by(rejected as u64);
    let status = if applied_count == 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::Json(serde_json::json!({"accepted": applied_count, "rejected": rejected, "results": results})))
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleQuery {
    k: Option<String>,
    region: Option<String>,
}

fn parse_k(k: Option<&str>, cfg: &Config) -> Result<usize, ApiError> {
    let Some(k) = k else { return Ok(cfg.retrieval.default_k) };
    match k.parse::<usize>() {
        Ok(k) if (1..=cfg.retrieval.max_k).contains(&k) => Ok(k),
        _ => Err(ApiError::bad_request(format!("k={k:?} must be an integer in 1..={}", cfg.retrieval.max_k))),
    }
}

fn parse_region(r: &str) -> Result<u8, ApiError> {
    match r.parse::<u8>() {
        Ok(r) if r < 32 => Ok(r),
        _ => Err(ApiError::bad_request(format!("region {r:?} must be an integer in 0..=31"))),
    }
}

fn record_sources(st: &AppState, r: &Retrieved) {
    for rep in &r.reports {
        st.metrics.source_seconds.with_label_values(&[rep.name]).observe(rep.elapsed.as_secs_f64());
        st.metrics.source_used.with_label_values(&[rep.name]).inc_by(rep.used as u64);
        if let Some(why) = rep.dropped {
            tracing::warn!(source = rep.name, reason = why, "source dropped");
            st.metrics.source_dropped.with_label_values(&[rep.name, why]).inc();
        }
    }
}

fn bundle_response(built: &Built, cache_control: &str, headers: &HeaderMap) -> Response {
    let etag = format!("\"{}\"", built.digest);
    let region = built.region.map_or_else(|| "any".to_string(), |r| r.to_string());
    let scope = if built.scope == Scope::Personal { "personal" } else { "regional" };
    let keys = format!("bundle bundle-{scope} region-{region} bundle-format-{}", edgewise_core::bundle::VERSION);
    let mut h = HeaderMap::new();
    let mut put = |name: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    put(header::ETAG, &etag);
    put(header::CACHE_CONTROL, cache_control);
    put(header::VARY, "Accept-Encoding");
    put(header::HeaderName::from_static("surrogate-key"), &keys);
    put(header::HeaderName::from_static("cache-tag"), &keys.replace(' ', ","));
    put(header::HeaderName::from_static("x-edgewise-bundle-digest"), &built.digest);
    if etag_matches(headers, &built.digest) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    put(header::CONTENT_TYPE, BUNDLE_MEDIA_TYPE);
    (StatusCode::OK, h, Body::from(built.bytes.clone())).into_response()
}

fn personal_plan(cfg: &Config) -> Vec<(Source, f64, f64)> {
    Source::PERSONAL
        .iter()
        .map(|&s| {
            let share = cfg.retrieval.budgets.get(s.name()).copied().unwrap_or(0.0);
            let weight = cfg.retrieval.weights.get(s.name()).copied().unwrap_or(0.0);
            (s, share, weight)
        })
        .collect()
}

/// The regional plan: trending, fresh and popular.
pub const REGIONAL_PLAN: [(Source, f64, f64); 3] =
    [(Source::Trending, 0.5, 1.0), (Source::Fresh, 0.25, 0.6), (Source::Popular, 0.25, 0.8)];

async fn candidates(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    q: Result<Query<BundleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, &headers)?;
    require_ready(&st)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let user = parse_id(&user, "user id")?;
    let k = parse_k(q.k.as_deref(), &st.cfg)?;
    let region = q.region.as_deref().map(parse_region).transpose()?;
    let now = now_ms();
    let st2 = st.clone();
    let state = tokio::task::spawn_blocking(move || st2.store.user(user)).await.map_err(ApiError::internal)??;
    let exclude = state.as_ref().map(|u| u.seen.iter().chain(&u.hidden).copied().collect()).unwrap_or_default();
    let query = state.as_ref().and_then(|u| u.query(&st.session, now, st.cfg.index.dim));
    let req = Arc::new(SourceRequest {
        catalogue: st.catalogue.clone(),
        user: state,
        region,
        now_ms: now,
        query,
        exclude,
        recent_seeds: st.cfg.retrieval.recent_seeds,
    });
    let retrieved =
        sources::retrieve(req, &personal_plan(&st.cfg), k, &st.cfg.retrieval, &[Source::Fresh, Source::Popular]).await;
    record_sources(&st, &retrieved);
    let digest = *st.model_digest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
    let built = Arc::new(
        bundles::build(&st.cfg, &st.catalogue, &retrieved, Scope::Personal, region, now, digest)
            .map_err(ApiError::internal)?,
    );
    st.by_digest.insert(built.digest.clone(), built.clone()).await;
    let cc = format!("private, max-age={}", st.cfg.cache.personal_max_age);
    let mut resp = bundle_response(&built, &cc, &headers);
    let dropped: Vec<&str> = retrieved.reports.iter().filter(|r| r.dropped.is_some()).map(|r| r.name).collect();
    if let Ok(v) = HeaderValue::from_str(&dropped.join(",")) {
        resp.headers_mut().insert("x-edgewise-sources-dropped", v);
    }
    Ok(resp)
}

async fn regional_bundle(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(region): Path<String>,
    q: Result<Query<BundleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, &headers)?;
    require_ready(&st)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if q.region.is_some() {
        return Err(ApiError::bad_request("the region is part of the path; drop the region query parameter"));
    }
    let region = parse_region(&region)?;
    let k = parse_k(q.k.as_deref(), &st.cfg)?;
    let st2 = st.clone();
    // Concurrent identical requests share one computation (moka coalesces them).
    let entry = st
        .regional
        .entry((region, k))
        .or_try_insert_with(async move {
            let now = now_ms();
            let req = Arc::new(SourceRequest {
                catalogue: st2.catalogue.clone(),
                user: None,
                region: Some(region),
                now_ms: now,
                query: None,
                exclude: Default::default(),
                recent_seeds: 0,
            });
            let retrieved = sources::retrieve(req, &REGIONAL_PLAN, k, &st2.cfg.retrieval, &[Source::Fresh]).await;
            record_sources(&st2, &retrieved);
            let digest = *st2.model_digest.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let built =
                bundles::build(&st2.cfg, &st2.catalogue, &retrieved, Scope::Regional, Some(region), now, digest)?;
            Ok::<_, bundles::BuildError>(Arc::new(built))
        })
        .await
        .map_err(|e| ApiError::internal(e.as_ref()))?;
    let result = if entry.is_fresh() { "miss" } else { "hit" };
    st.metrics.cache.with_label_values(&["regional", result]).inc();
    let built = entry.into_value();
    st.by_digest.insert(built.digest.clone(), built.clone()).await;
    let c = &st.cfg.cache;
    let cc = format!(
        "public, max-age=0, s-maxage={}, stale-while-revalidate={}, stale-if-error={}",
        c.regional_s_maxage, c.stale_while_revalidate, c.stale_if_error
    );
    Ok(bundle_response(&built, &cc, &headers))
}

async fn bundle_by_digest(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, &headers)?;
    if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ApiError::bad_request("a bundle digest is 64 lower-case hex digits (sha256)"));
    }
    let Some(built) = st.by_digest.get(&digest).await else {
        st.metrics.cache.with_label_values(&["digest", "miss"]).inc();
        return Err(ApiError::not_found(format!("bundle {digest} is unknown or has expired from the bundle cache")));
    };
    st.metrics.cache.with_label_values(&["digest", "hit"]).inc();
    let cc = if built.scope == Scope::Personal {
        "private, max-age=31536000, immutable"
    } else {
        "public, max-age=31536000, immutable"
    };
    Ok(bundle_response(&built, cc, &headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_parsing() {
        let mut h = HeaderMap::new();
        let d = "ab".repeat(32);
        assert!(!etag_matches(&h, &d));
        for v in [format!("\"{d}\""), format!("W/\"{d}\""), format!("\"x\", \"{d}-gzip\""), "*".to_string()] {
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&v).expect("header"));
            assert!(etag_matches(&h, &d), "{v}");
        }
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(!etag_matches(&h, &d));
    }
}
