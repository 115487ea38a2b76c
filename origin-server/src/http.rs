//! The HTTP API (v1), built with axum.
//!
//! | route | what |
//! |---|---|
//! | `GET /livez`, `GET /readyz` | liveness; readiness (the index is loaded) |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /openapi.json` | the OpenAPI 3.1 document ([`ApiDoc`]), generated from these handlers |
//! | `PUT /v1/items` | batch upsert, JSON array or NDJSON, a status per item (ingest key) |
//! | `GET /v1/items/{id}`, `DELETE /v1/items/{id}` | one item (delete needs the ingest key) |
//! | `POST /v1/events` | batch of feedback events, idempotent by `event_id` (ingest key) |
//! | `GET /v1/users/{id}/candidates?k=&region=` | personalized bundle, `private` |
//! | `GET /v1/regions/{region}/bundle?k=` | regional bundle, `public, s-maxage, stale-while-revalidate, stale-if-error` |
//! | `GET /v1/bundles/{digest}` | a recently built bundle by sha256, `immutable` |
//! | `PUT /v1/models?rollout=stable\|canary&percent=` | registers a model artifact (admin key) |
//! | `GET /v1/models/{digest}` | a model artifact, `immutable` |
//! | `PUT /v1/modules` | stores a guest module and its optional detached ed25519 signature (admin key) |
//! | `GET /v1/modules/{digest}` | a guest module, `immutable`, signature in `X-Edgewise-Signature` |
//! | `GET /v1/models/current?user=` | the manifest, and the model this user gets (sticky canary) |
//! | `POST /v1/rank` | the refined ranking computed at the origin, with every stage explained |
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
use crate::error::{ApiError, ErrorBody};
use crate::item::{Item, ItemJson, split_batch};
use crate::metrics::Metrics;
use crate::models::{Canary, Loaded, Manifest, digest_bytes};
use crate::sources::{self, Request as SourceRequest, Retrieved, Source};
use crate::store::{EventOutcome, Store};
use crate::user::{Event, trending_merge};

/// The outcome of one record of a batch.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BatchResult {
    /// Position in the batch (0-based; NDJSON blank lines are not counted).
    pub index: usize,
    /// Item id (items).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Event id (events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// `created`, `updated`, `applied`, `duplicate` or `error`.
    pub status: &'static str,
    /// Why the record was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The response to a batch write: 200 if any record was accepted, else 400.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    /// Records written.
    pub accepted: usize,
    /// Records refused.
    pub rejected: usize,
    /// One entry per record, in order.
    pub results: Vec<BatchResult>,
}

impl BatchResult {
    fn error(index: usize, e: String) -> Self {
        Self { index, id: None, event_id: None, status: "error", error: Some(e) }
    }
}

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
    /// Which models are live.
    pub manifest: RwLock<Manifest>,
    /// Decoded models.
    pub models: Loaded,
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
            manifest: RwLock::new(Manifest::default()),
            models: Loaded::default(),
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
        .route("/openapi.json", get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }))
        .route("/v1/items", put(put_items))
        .route("/v1/items/{id}", get(get_item).delete(delete_item))
        .route("/v1/events", axum::routing::post(post_events))
        .route("/v1/users/{id}/candidates", get(candidates))
        .route("/v1/regions/{region}/bundle", get(regional_bundle))
        .route("/v1/bundles/{digest}", get(bundle_by_digest))
        .route("/v1/models", put(put_model))
        .route("/v1/models/current", get(current_model))
        .route("/v1/models/{digest}", get(get_model))
        .route("/v1/modules", put(put_module))
        .route("/v1/modules/{digest}", get(get_module))
        .route("/v1/rank", axum::routing::post(rank))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(middleware::from_fn(representation_etag))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
            tracing::info_span!("request", method = %req.method(), route, uri = %req.uri())
        }))
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

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "the index is loaded"), (status = 503, description = "still loading")))]
async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading").into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    st.metrics.index_items.set(st.catalogue.len() as i64);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

fn require_ready(st: &AppState) -> Result<(), ApiError> {
    if st.ready.load(Ordering::Acquire) { Ok(()) } else { Err(ApiError::unavailable("the index is still loading")) }
}

#[utoipa::path(put, path = "/v1/items", tag = "items",
    request_body(content = Vec<ItemJson>, description = "a JSON array of items, or NDJSON (one item per line)"),
    responses((status = 200, body = BatchResponse, description = "a status per item; at least one accepted"),
        (status = 400, body = BatchResponse, description = "no item accepted, or the body is not JSON/NDJSON"),
        (status = 401, body = ErrorBody), (status = 413, description = "body larger than server.max_body_bytes")),
    security(("api_key" = [])))]
async fn put_items(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.ingest_keys, &headers)?;
    require_ready(&st)?;
    let Validated { mut results, valid, slots } = validate_batch(&body, |v| Item::from_json(v, &st.cfg))?;
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
            results[slot] = BatchResult {
                index: slot,
                id: Some(item.id),
                event_id: None,
                status: if was { "updated" } else { "created" },
                error: None,
            };
            st.catalogue.upsert(item);
        }
        st.metrics.writes.with_label_values(&["item", "accepted"]).inc_by(accepted as u64);
    }
    let rejected = results.len() - accepted;
    st.metrics.writes.with_label_values(&["item", "rejected"]).inc_by(rejected as u64);
    let status = if accepted == 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::Json(BatchResponse { accepted, rejected, results })).into_response())
}

/// A batch body split and validated record by record.
struct Validated<T> {
    /// One slot per record; refused records carry their error already.
    results: Vec<BatchResult>,
    /// The valid records...
    valid: Vec<T>,
    /// ...and their positions in the batch.
    slots: Vec<usize>,
}

/// Splits a batch body and validates each record with `parse`.
fn validate_batch<T>(
    body: &[u8],
    parse: impl Fn(serde_json::Value) -> Result<T, String>,
) -> Result<Validated<T>, ApiError> {
    let records = split_batch(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut results = Vec::with_capacity(records.len());
    let (mut valid, mut slots) = (Vec::new(), Vec::new());
    for (n, r) in records.into_iter().enumerate() {
        match r.and_then(&parse) {
            Ok(x) => {
                slots.push(n);
                valid.push(x);
                // Overwritten with the write's outcome once it is committed.
                results.push(BatchResult::error(n, String::new()));
            }
            Err(e) => results.push(BatchResult::error(n, e)),
        }
    }
    Ok(Validated { results, valid, slots })
}

fn parse_id(s: &str, what: &str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| ApiError::bad_request(format!("{what} {s:?} is not an unsigned 64-bit integer")))
}

#[utoipa::path(get, path = "/v1/items/{id}", tag = "items", params(("id" = u64, Path, description = "item id")),
    responses((status = 200, body = ItemJson), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_item(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, &headers)?;
    let id = parse_id(&id, "item id")?;
    let item = st.catalogue.get(id).ok_or_else(|| ApiError::not_found(format!("item {id} does not exist")))?;
    let st2 = st.clone();
    let titles = tokio::task::spawn_blocking(move || st2.store.titles(&[id])).await.map_err(ApiError::internal)??;
    let mut json = item.to_json(&st.cfg);
    if let (Some(t), Some(obj)) = (titles.get(&id), json.as_object_mut()) {
        obj.insert("title".into(), serde_json::json!(t));
    }
    Ok(axum::Json(json).into_response())
}

#[utoipa::path(delete, path = "/v1/items/{id}", tag = "items", params(("id" = u64, Path, description = "item id")),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
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
    for (content, shard) in st.catalogue.shards_to_rebuild(st.cfg.index.rebuild_deleted_ratio) {
        let cat = st.catalogue.clone();
        tokio::task::spawn_blocking(move || {
            tracing::info!(shard, content, "rebuilding an index shard in the background");
            if cat.rebuild(content, shard) {
                tracing::info!(shard, content, "index shard rebuilt and swapped in");
            }
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = Vec<Event>, description = "a JSON array of events, or NDJSON; idempotent by event_id"),
    responses((status = 200, body = BatchResponse), (status = 400, body = BatchResponse), (status = 401, body = ErrorBody),
        (status = 413, description = "body too large")),
    security(("api_key" = [])))]
async fn post_events(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.ingest_keys, &headers)?;
    require_ready(&st)?;
    let Validated { mut results, valid, slots } = validate_batch(&body, Event::from_json)?;
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
            results[slot] =
                BatchResult { index: slot, id: None, event_id: Some(e.event_id.clone()), status, error: None };
        }
    }
    let rejected = results.len() - applied_count;
    st.metrics.writes.with_label_values(&["event", "rejected"]).inc_by(rejected as u64);
    let status = if applied_count == 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::Json(BatchResponse { accepted: applied_count, rejected, results })).into_response())
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

/// The personalized plan: the five sources with their configured budgets and weights.
pub fn personal_plan(cfg: &Config) -> Vec<(Source, f64, f64)> {
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

/// The model digest `user` gets (`None`: the stable model).
fn model_for(st: &AppState, user: Option<u64>) -> Option<String> {
    st.manifest.read().unwrap_or_else(std::sync::PoisonError::into_inner).for_user(user).map(str::to_owned)
}

/// Retrieval and bundle building for one user (shared by `/candidates` and `/rank`).
async fn personal_bundle(
    st: &Arc<AppState>,
    user: u64,
    region: Option<u8>,
    k: usize,
) -> Result<(Option<crate::user::UserState>, Retrieved, Arc<Built>, u64), ApiError> {
    let now = now_ms();
    let st2 = st.clone();
    let state = tokio::task::spawn_blocking(move || st2.store.user(user)).await.map_err(ApiError::internal)??;
    let exclude = state.as_ref().map(|u| u.seen.iter().chain(&u.hidden).copied().collect()).unwrap_or_default();
    let query = state.as_ref().and_then(|u| u.query(&st.session, now, st.cfg.index.dim));
    let req = Arc::new(SourceRequest {
        catalogue: st.catalogue.clone(),
        user: state.clone(),
        region,
        now_ms: now,
        query,
        exclude,
        recent_seeds: st.cfg.retrieval.recent_seeds,
    });
    let retrieved =
        sources::retrieve(req, &personal_plan(&st.cfg), k, &st.cfg.retrieval, &[Source::Fresh, Source::Popular]).await;
    record_sources(st, &retrieved);
    let digest = model_for(st, Some(user)).and_then(|d| digest_bytes(&d)).unwrap_or([0; 32]);
    let built = Arc::new(
        bundles::build(&st.cfg, &st.catalogue, &retrieved, Scope::Personal, region, now, digest)
            .map_err(ApiError::internal)?,
    );
    st.by_digest.insert(built.digest.clone(), built.clone()).await;
    Ok((state, retrieved, built, now))
}

fn dropped_names(r: &Retrieved) -> Vec<&'static str> {
    r.reports.iter().filter(|r| r.dropped.is_some()).map(|r| r.name).collect()
}

#[utoipa::path(get, path = "/v1/users/{id}/candidates", tag = "bundles",
    params(("id" = u64, Path, description = "user id"), ("k" = Option<usize>, Query, description = "candidates (default retrieval.default_k)"),
        ("region" = Option<u8>, Query, description = "the user's region, 0–31")),
    responses((status = 200, description = "a personalized candidate bundle (Cache-Control: private)", content_type = "application/vnd.edgewise.bundle", body = Vec<u8>),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody)))]
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
    let (_, retrieved, built, _) = personal_bundle(&st, user, region, k).await?;
    let cc = format!("private, max-age={}", st.cfg.cache.personal_max_age);
    let mut resp = bundle_response(&built, &cc, &headers);
    if let Ok(v) = HeaderValue::from_str(&dropped_names(&retrieved).join(",")) {
        resp.headers_mut().insert("x-edgewise-sources-dropped", v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelQuery {
    rollout: Option<String>,
    percent: Option<String>,
}

#[utoipa::path(put, path = "/v1/models", tag = "models",
    params(("rollout" = Option<String>, Query, description = "stable (default) or canary"), ("percent" = Option<u8>, Query, description = "canary share, 1–100")),
    request_body(content = Vec<u8>, content_type = "application/vnd.edgewise.model", description = "a model artifact (edgewise_core::model v1)"),
    responses((status = 201, description = "registered; returns the digest and the manifest"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn put_model(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<ModelQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if st.cfg.auth.admin_keys.is_empty() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "model uploads are disabled: configure auth.admin_keys"));
    }
    check_key(&st.cfg.auth.admin_keys, &headers)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let model =
        edgewise_core::model::Model::decode(&body).map_err(|e| ApiError::bad_request(format!("invalid model: {e}")))?;
    let cfg = &st.cfg;
    let mismatch = |what: &str, model: String, want: String| {
        Err(ApiError::bad_request(format!("the model's {what} is {model}, the catalogue's is {want}")))
    };
    if model.feature_schema_hash != cfg.schema_hash() {
        return mismatch(
            "feature-schema hash",
            format!("{:#018x}", model.feature_schema_hash),
            format!("{:#018x} (features {:?})", cfg.schema_hash(), cfg.features.names),
        );
    }
    if usize::from(model.dim) != cfg.index.dim {
        return mismatch("embedding dimension", model.dim.to_string(), cfg.index.dim.to_string());
    }
    if usize::from(model.n_sources) != sources::SLOTS {
        return mismatch("source-slot count", model.n_sources.to_string(), sources::SLOTS.to_string());
    }
    let digest = edgewise_core::model::digest_hex(&edgewise_core::model::digest(&body));
    let mut next = st.manifest.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    match q.rollout.as_deref().unwrap_or("stable") {
        "stable" => {
            if q.percent.is_some() {
                return Err(ApiError::bad_request("percent only applies to rollout=canary"));
            }
            next.stable = Some(digest.clone());
            if next.canary.as_ref().is_some_and(|c| c.digest == digest) {
                next.canary = None;
            }
        }
        "canary" => {
            let percent = match q.percent.as_deref().map(str::parse::<u8>) {
                Some(Ok(p)) if (1..=100).contains(&p) => p,
                _ => return Err(ApiError::bad_request("rollout=canary needs percent=1..100")),
            };
            next.canary = Some(Canary { digest: digest.clone(), percent });
        }
        other => return Err(ApiError::bad_request(format!("rollout={other:?} must be stable or canary"))),
    }
    let manifest_json = serde_json::to_vec(&next).map_err(ApiError::internal)?;
    let (st2, d2) = (st.clone(), digest.clone());
    tokio::task::spawn_blocking(move || {
        st2.store.put_model(&d2, &body)?;
        st2.store.put_meta("manifest", &manifest_json)
    })
    .await
    .map_err(ApiError::internal)??;
    *st.manifest.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next.clone();
    // Bundles built before now name the old model; rebuild regional ones on next request.
    st.regional.invalidate_all();
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({"digest": digest, "manifest": next}))).into_response())
}

fn check_digest(d: &str) -> Result<(), ApiError> {
    if d.len() == 64 && d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(ApiError::bad_request("a digest is 64 lower-case hex digits (sha256)"))
    }
}

#[utoipa::path(get, path = "/v1/models/{digest}", tag = "models", params(("digest" = String, Path, description = "sha256, hex")),
    responses((status = 200, description = "the artifact (immutable)", content_type = "application/vnd.edgewise.model", body = Vec<u8>),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_model(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    stored_artifact(st, &headers, digest, "model", "application/vnd.edgewise.model", |store, d| {
        Ok(store.model(d)?.map(|bytes| (bytes, None)))
    })
    .await
}

/// `GET` of a stored immutable artifact: checks the read key and the digest,
/// loads it on the blocking pool with `load` (bytes and optional signature),
/// and answers with [`immutable_artifact`], or 404 naming the `kind`.
async fn stored_artifact(
    st: Arc<AppState>,
    headers: &HeaderMap,
    digest: String,
    kind: &'static str,
    content_type: &'static str,
    load: impl FnOnce(&crate::store::Store, &str) -> Result<Option<(Vec<u8>, Option<String>)>, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, headers)?;
    check_digest(&digest)?;
    let (st2, d2) = (st.clone(), digest.clone());
    let found = tokio::task::spawn_blocking(move || load(&st2.store, &d2)).await.map_err(ApiError::internal)??;
    let (bytes, signature) = found.ok_or_else(|| ApiError::not_found(format!("{kind} {digest} is not stored")))?;
    Ok(immutable_artifact(headers, &digest, kind, content_type, bytes, signature.as_deref()))
}

/// An immutable, content-addressed artifact response: a year's `max-age`,
/// the digest as strong ETag (304 on `If-None-Match`), and surrogate keys
/// `<kind> <kind>-<digest>`; `signature` goes out in `X-Edgewise-Signature`.
fn immutable_artifact(
    headers: &HeaderMap,
    digest: &str,
    kind: &str,
    content_type: &'static str,
    bytes: Vec<u8>,
    signature: Option<&str>,
) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{kind} {kind}-{digest}")) {
        h.insert("surrogate-key", v.clone());
        h.insert("cache-tag", v);
    }
    if let Some(v) = signature.filter(|s| !s.is_empty()).and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(SIGNATURE_HEADER, v);
    }
    if etag_matches(headers, digest) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (StatusCode::OK, h, bytes).into_response()
}

/// The header that carries a guest module's detached ed25519 signature (base64).
pub const SIGNATURE_HEADER: &str = "x-edgewise-signature";

#[utoipa::path(put, path = "/v1/modules", tag = "modules",
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "a core guest module (`edgewise_core.wasm` or a build of it); an optional detached ed25519 signature (base64) in X-Edgewise-Signature is stored with it and served to edges"),
    responses((status = 201, description = "stored; returns the digest and its URL"), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
async fn put_module(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    if st.cfg.auth.admin_keys.is_empty() {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "module uploads are disabled: configure auth.admin_keys"));
    }
    check_key(&st.cfg.auth.admin_keys, &headers)?;
    if !body.starts_with(b"\0asm") {
        return Err(ApiError::bad_request("not a WebAssembly module (the body does not start with \\0asm)"));
    }
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => String::new(),
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError::bad_request("X-Edgewise-Signature is not ASCII"))?;
            if s.is_empty() || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
                return Err(ApiError::bad_request("X-Edgewise-Signature must be base64 (an ed25519 signature)"));
            }
            s.to_string()
        }
    };
    let digest = edgewise_core::model::digest_hex(&<sha2::Sha256 as sha2::Digest>::digest(&body).into());
    let (st2, d2) = (st.clone(), digest.clone());
    tokio::task::spawn_blocking(move || st2.store.put_module(&d2, &body, &signature))
        .await
        .map_err(ApiError::internal)??;
    let url = format!("/v1/modules/{digest}");
    Ok((StatusCode::CREATED, axum::Json(serde_json::json!({"digest": digest, "url": url}))).into_response())
}

#[utoipa::path(get, path = "/v1/modules/{digest}", tag = "modules", params(("digest" = String, Path, description = "sha256, hex")),
    responses((status = 200, description = "the module (immutable), with its signature in X-Edgewise-Signature when one was stored", content_type = "application/wasm", body = Vec<u8>),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_module(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    stored_artifact(st, &headers, digest, "module", "application/wasm", |store, d| {
        Ok(store.module(d)?.map(|(bytes, signature)| (bytes, Some(signature))))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CurrentQuery {
    user: Option<String>,
}

#[utoipa::path(get, path = "/v1/models/current", tag = "models",
    params(("user" = Option<u64>, Query, description = "the user; picks stable or canary by a sticky hash")),
    responses((status = 200, description = "digest, url, stable and canary"), (status = 404, body = ErrorBody)))]
async fn current_model(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<CurrentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, &headers)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let user = q.user.as_deref().map(|u| parse_id(u, "user id")).transpose()?;
    let manifest = st.manifest.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let Some(chosen) = manifest.for_user(user).map(str::to_owned) else {
        return Err(ApiError::not_found("no model is registered yet (PUT /v1/models)"));
    };
    let body = serde_json::to_vec(&serde_json::json!({
        "digest": chosen,
        "url": format!("/v1/models/{chosen}"),
        "stable": manifest.stable,
        "canary": manifest.canary,
    }))
    .map_err(ApiError::internal)?;
    let etag = edgewise_core::model::digest_hex(&<sha2::Sha256 as sha2::Digest>::digest(&body).into());
    let mut h = HeaderMap::new();
    let cc = if user.is_some() { "private, max-age=60" } else { "public, max-age=60" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert("surrogate-key", HeaderValue::from_static("model-manifest"));
    h.insert("cache-tag", HeaderValue::from_static("model-manifest"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        h.insert(header::ETAG, v);
    }
    if etag_matches(&headers, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok((StatusCode::OK, h, body).into_response())
}

/// A request for the refined ranking computed at the origin.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RankBody {
    /// User id.
    pub user: u64,
    /// The user's region, 0–31.
    #[serde(default)]
    pub region: Option<u8>,
    /// Items to return, 1–1000 (default 20).
    #[serde(default)]
    pub k: Option<u32>,
    /// Candidates to retrieve and rank (default retrieval.default_k).
    #[serde(default)]
    pub candidates: Option<usize>,
}

/// The OpenAPI document, generated from the handler annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Edgewise origin API", description = "Catalogue, events, candidate bundles, models and ranking."),
    paths(readyz, metrics, put_items, get_item, delete_item, post_events, candidates, regional_bundle, bundle_by_digest,
        put_model, get_model, current_model, put_module, get_module, rank),
    components(schemas(ItemJson, Event, crate::user::EventKind, BatchResponse, BatchResult, ErrorBody, RankBody, Manifest, Canary)),
    modifiers(&ApiKeyScheme)
)]
pub struct ApiDoc;

struct ApiKeyScheme;
impl utoipa::Modify for ApiKeyScheme {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[utoipa::path(post, path = "/v1/rank", tag = "ranking", request_body = RankBody,
    responses((status = 200, description = "the ranking with every stage explained"), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "no model registered")))]
async fn rank(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, &headers)?;
    require_ready(&st)?;
    let b: RankBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid rank request: {e}")))?;
    let k = b.k.unwrap_or(20);
    if !(1..=1000).contains(&k) {
        return Err(ApiError::bad_request("k must be in 1..=1000"));
    }
    let n = b.candidates.unwrap_or(st.cfg.retrieval.default_k);
    if !(1..=st.cfg.retrieval.max_k).contains(&n) {
        return Err(ApiError::bad_request(format!("candidates must be in 1..={}", st.cfg.retrieval.max_k)));
    }
    if let Some(r) = b.region
        && r >= 32
    {
        return Err(ApiError::bad_request("region must be in 0..=31"));
    }
    let Some(digest) = model_for(&st, Some(b.user)) else {
        return Err(ApiError::new(StatusCode::CONFLICT, "no model is registered yet (PUT /v1/models)"));
    };
    let st2 = st.clone();
    let d2 = digest.clone();
    let model = tokio::task::spawn_blocking(move || st2.models.get(&d2, || st2.store.model(&d2).ok().flatten()))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::internal(format!("registered model {digest} cannot be loaded")))?;
    let (user, retrieved, built, now) = personal_bundle(&st, b.user, b.region, n).await?;
    let bundle = edgewise_core::bundle::Bundle::decode(&built.bytes).map_err(ApiError::internal)?;
    let mut ctx = edgewise_core::rank::RankContext::new(k, now);
    ctx.region = b.region.unwrap_or(edgewise_core::bundle::REGION_ANY);
    if let Some(u) = &user {
        ctx.seen = u.seen.iter().chain(&u.hidden).copied().collect();
        if u.base.len() == st.cfg.index.dim {
            ctx.base = u.base.clone();
        }
        if let Some(s) = u.session_state().filter(|s| s.dim() == st.cfg.index.dim) {
            ctx.session = s;
        }
    }
    let mut out = edgewise_core::rank::RankOutput::default();
    edgewise_core::rank::Ranker::new()
        .rank(&model, &bundle, &ctx, &mut out)
        .map_err(|e| ApiError::internal(format!("ranking failed: {e}")))?;
    let names = edgewise_core::bundle::SOURCE_NAMES;
    let ids: Vec<u64> = out.items.iter().map(|it| it.id).collect();
    let st2 = st.clone();
    let titles = tokio::task::spawn_blocking(move || st2.store.titles(&ids)).await.map_err(ApiError::internal)??;
    let items: Vec<serde_json::Value> = out
        .items
        .iter()
        .map(|it| {
            let mask = bundle.source_mask(it.row as usize);
            let sources: Vec<&str> = names.iter().enumerate().filter(|(j, _)| mask & (1 << j) != 0).map(|(_, n)| *n).collect();
            serde_json::json!({
                "id": it.id, "title": titles.get(&it.id), "score": it.score, "pre_score": it.pre_score, "main_score": it.main_score,
                "mmr_penalty": it.mmr_penalty, "retrieval_score": bundle.retrieval_score(it.row as usize), "sources": sources,
            })
        })
        .collect();
    let mut outcomes = std::collections::BTreeMap::new();
    for r in &out.rows {
        *outcomes.entry(r.outcome.as_str()).or_insert(0u32) += 1;
    }
    Ok(axum::Json(serde_json::json!({
        "user": b.user,
        "model": digest,
        "bundle": built.digest,
        "candidates": bundle.len(),
        "sources_dropped": dropped_names(&retrieved),
        "stages": outcomes,
        "items": items,
    }))
    .into_response())
}

#[utoipa::path(get, path = "/v1/regions/{region}/bundle", tag = "bundles",
    params(("region" = u8, Path, description = "region, 0–31"), ("k" = Option<usize>, Query, description = "candidates")),
    responses((status = 200, description = "a regional bundle (public, s-maxage, stale-while-revalidate, stale-if-error)", content_type = "application/vnd.edgewise.bundle", body = Vec<u8>),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody)))]
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
            let digest = model_for(&st2, None).and_then(|d| digest_bytes(&d)).unwrap_or([0; 32]);
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

#[utoipa::path(get, path = "/v1/bundles/{digest}", tag = "bundles", params(("digest" = String, Path, description = "sha256, hex")),
    responses((status = 200, description = "the bundle (immutable)", content_type = "application/vnd.edgewise.bundle", body = Vec<u8>),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn bundle_by_digest(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_key(&st.cfg.auth.read_keys, &headers)?;
    check_digest(&digest)?;
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
