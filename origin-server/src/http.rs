//! The HTTP API (v1), built with axum.
//!
//! | route | what | who may call it ([`Access`]) |
//! |---|---|---|
//! | `GET /livez`, `GET /readyz` | liveness; readiness (the index is loaded) | anyone; outside admission |
//! | `GET /metrics` | Prometheus metrics | anyone; outside admission |
//! | `GET /openapi.json` | the OpenAPI 3.1 document ([`ApiDoc`]), generated from these handlers | anyone |
//! | `PUT /v1/items` | batch upsert, JSON array or NDJSON, a status per item | ingest key |
//! | `GET /v1/items/{id}`, `DELETE /v1/items/{id}` | one item | read / ingest key |
//! | `POST /v1/events` | batch of feedback events, idempotent by `event_id` | ingest key, or the user's token for their own events |
//! | `GET /v1/users/{id}/candidates?k=&region=` | personalized bundle, `private` | the user's token |
//! | `GET /v1/regions/{region}/bundle?k=` | regional bundle, `public, s-maxage, stale-while-revalidate, stale-if-error` | read |
//! | `GET /v1/bundles/{digest}` | a recently built regional bundle by sha256, `immutable` | read |
//! | `PUT /v1/models?rollout=stable\|canary&percent=` | registers a model artifact | admin key |
//! | `GET /v1/models/{digest}` | a model artifact, `immutable` | read |
//! | `PUT /v1/modules` | stores a guest module and its optional detached ed25519 signature | admin key |
//! | `GET /v1/modules/{digest}` | a guest module, `immutable`, signature in `X-Edgewise-Signature` | read |
//! | `GET /v1/models/current?user=` | the manifest, and the model this user gets (sticky canary) | read |
//! | `POST /v1/rank` | the refined ranking computed at the origin, with every stage explained | the user's token |
//!
//! "Read" routes are open unless `auth.read_keys` is set. The access rule is
//! checked on the headers before the body is read; then
//! [`edgewise_http::admission`] reads the body within `server.max_body_bytes`
//! (413), `server.body_read_timeout_ms` (408) and `server.body_budget_bytes`
//! (429), and takes a slot of `server.max_in_flight` (429 with `Retry-After`).
//!
//! Cacheable responses carry a strong ETag (the bundle's sha256; a compressed
//! representation gets its own, e.g. `"<sha>-gzip"`), answer `If-None-Match`
//! with 304, and carry `Vary: Accept-Encoding`, `Surrogate-Key` and `Cache-Tag`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use bytes::Bytes;
use edgewise_core::bundle::Scope;
use edgewise_core::session::SessionConfig;
use edgewise_http::admission::Admission;
use edgewise_http::auth::{Denied, ServiceKeys, UserClaims, UserTokens};
use serde::Deserialize;

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

/// Service keys by class (from `auth.*_keys`).
#[derive(Debug, Clone)]
pub struct Keys {
    /// `auth.ingest_keys`: item writes and any user's events. None configured: disabled.
    pub ingest: ServiceKeys,
    /// `auth.admin_keys`: model and module uploads. None configured: disabled.
    pub admin: ServiceKeys,
    /// `auth.read_keys`: non-personal reads. None configured: open.
    pub read: ServiceKeys,
}

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
    /// Service keys.
    pub keys: Keys,
    /// User-token verification.
    pub tokens: UserTokens,
    /// Body limits and the in-flight cap.
    pub admission: Admission,
    regional: moka::future::Cache<(u8, usize), Arc<Built>>,
    by_digest: moka::future::Cache<String, Arc<Built>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("items", &self.catalogue.len()).finish_non_exhaustive()
    }
}

impl AppState {
    /// State over an open store and a (possibly still loading) catalogue.
    /// Fails when the user-token configuration cannot be used.
    pub fn new(
        cfg: Config,
        store: Store,
        catalogue: Arc<Catalogue>,
        metrics: Metrics,
    ) -> Result<Self, edgewise_http::auth::TokenConfigError> {
        fn weigh<K>(_: &K, b: &Arc<Built>) -> u32 {
            u32::try_from(b.bytes.len()).unwrap_or(u32::MAX)
        }
        let regional = moka::future::Cache::builder()
            .weigher(weigh::<(u8, usize)>)
            .max_capacity(cfg.cache.regional_cache_bytes)
            .time_to_live(Duration::from_secs(cfg.cache.regional_s_maxage.max(1)))
            .build();
        let by_digest =
            moka::future::Cache::builder().weigher(weigh::<String>).max_capacity(cfg.cache.bundle_cache_bytes).build();
        let a = &cfg.auth;
        let keys = Keys {
            ingest: ServiceKeys::new(&a.ingest_keys, "ingest", "auth.ingest_keys"),
            admin: ServiceKeys::new(&a.admin_keys, "admin", "auth.admin_keys"),
            read: ServiceKeys::new(&a.read_keys, "read", "auth.read_keys"),
        };
        let tokens = UserTokens::new(&a.user_tokens)?;
        let admission = Admission::new(cfg.server.admission(), metrics.http.clone());
        Ok(Self {
            cfg,
            store,
            catalogue,
            metrics,
            ready: AtomicBool::new(false),
            session: SessionConfig::default(),
            manifest: RwLock::new(Manifest::default()),
            models: Loaded::default(),
            keys,
            tokens,
            admission,
            regional,
            by_digest,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Who may call a route. Every `/v1` route and `/openapi.json` declares one
/// where it is mounted ([`app`]); the route guard checks it on the headers before
/// the body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (documentation).
    Open,
    /// Non-personal reads: anyone, or a read key when `auth.read_keys` is set.
    Read,
    /// An ingest key.
    Ingest,
    /// An admin key.
    Admin,
    /// A user token; the handler checks that its subject is the user the request is about.
    User,
    /// An ingest key (any user's events), or a user token (that user's own events only).
    IngestOrUser,
}

/// The caller the route guard admitted, in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// No credential was needed.
    Anonymous,
    /// A service key.
    Service,
    /// A user token.
    User(UserClaims),
}

impl Caller {
    /// Refuses unless the caller is a service, or the user `user` themself.
    pub fn may_act_for(&self, user: u64) -> Result<(), Denied> {
        match self {
            Caller::Service => Ok(()),
            Caller::User(c) => edgewise_http::auth::check_subject(c, user),
            Caller::Anonymous => Err(Denied::Missing("this route needs the user's token".into())),
        }
    }
}

/// Checks the route's [`Access`] on the headers, then hands the request to
/// admission (body limits, read timeout, in-flight cap).
async fn guard(State((st, access)): State<(Arc<AppState>, Access)>, mut req: Request, next: Next) -> Response {
    let h = req.headers();
    let caller = match access {
        Access::Open => Ok(Caller::Anonymous),
        Access::Read => st.keys.read.require_if_configured(h).map(|()| Caller::Anonymous),
        Access::Ingest => st.keys.ingest.require(h).map(|()| Caller::Service),
        Access::Admin => st.keys.admin.require(h).map(|()| Caller::Service),
        Access::User => st.tokens.from_headers(h).map(Caller::User),
        Access::IngestOrUser => {
            if st.keys.ingest.presented_by(h) {
                Ok(Caller::Service)
            } else if edgewise_http::auth::bearer(h).is_some() {
                st.tokens.from_headers(h).map(Caller::User)
            } else if h.contains_key(edgewise_http::auth::API_KEY_HEADER) {
                Err(Denied::Forbidden("the key is not an ingest key".into()))
            } else {
                Err(Denied::Missing(
                    "this route needs an ingest key (X-Api-Key) or the user's token (Authorization: Bearer)".into(),
                ))
            }
        }
    };
    match caller {
        Ok(c) => {
            req.extensions_mut().insert(c);
            st.admission.run(req, next).await
        }
        Err(d) => st.admission.deny(d),
    }
}

/// The caller [`guard`] admitted (a 500 if a route was mounted without a guard).
fn caller(req_caller: Option<axum::Extension<Caller>>) -> Result<Caller, ApiError> {
    req_caller.map(|axum::Extension(c)| c).ok_or_else(|| ApiError::internal("a route ran without its access guard"))
}

/// The router. Health routes (`/livez`, `/readyz`, `/metrics`) sit outside
/// admission and request logging, so they answer under any load; every other
/// route has its [`Access`] here.
pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.cfg.server.max_body_bytes;
    let g = |access| middleware::from_fn_with_state((state.clone(), access), guard);
    let api = Router::new()
        .route(
            "/openapi.json",
            get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }).route_layer(g(Access::Open)),
        )
        .route("/v1/items", put(put_items).route_layer(g(Access::Ingest)))
        .route(
            "/v1/items/{id}",
            get(get_item).route_layer(g(Access::Read)).merge(delete(delete_item).route_layer(g(Access::Ingest))),
        )
        .route("/v1/events", post(post_events).route_layer(g(Access::IngestOrUser)))
        .route("/v1/users/{id}/candidates", get(candidates).route_layer(g(Access::User)))
        .route("/v1/regions/{region}/bundle", get(regional_bundle).route_layer(g(Access::Read)))
        .route("/v1/bundles/{digest}", get(bundle_by_digest).route_layer(g(Access::Read)))
        .route("/v1/models", put(put_model).route_layer(g(Access::Admin)))
        .route("/v1/models/current", get(current_model).route_layer(g(Access::Read)))
        .route("/v1/models/{digest}", get(get_model).route_layer(g(Access::Read)))
        .route("/v1/modules", put(put_module).route_layer(g(Access::Admin)))
        .route("/v1/modules/{digest}", get(get_module).route_layer(g(Access::Read)))
        .route("/v1/rank", post(rank).route_layer(g(Access::User)))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(middleware::from_fn(representation_etag))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
                    tracing::info_span!("request", method = %req.method(), route, uri = %req.uri())
                })
                // A 5xx is not an error of this server's making when it is a 503 while loading;
                // internal errors log themselves at ERROR (`ApiError::internal`).
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .fallback(|| async { ApiError::not_found("no such route") });
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .with_state(state)
}

/// Records latency per route.
async fn observe(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
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

#[utoipa::path(get, path = "/livez", tag = "health",
    responses((status = 200, description = "the process is alive", content_type = "text/plain", body = String)))]
async fn livez() -> &'static str {
    "ok"
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "the index is loaded", content_type = "text/plain", body = String),
        (status = 503, description = "still loading", content_type = "text/plain", body = String)))]
async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading").into_response()
    }
}

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
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
        (status = 400, body = BatchRefused, description = "no item accepted (a status per item), or the body is not JSON/NDJSON")),
    security(("api_key" = [])))]
async fn put_items(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    require_ready(&st)?;
    let now = now_ms();
    let Validated { mut results, valid, slots } = validate_batch(&body, |v| Item::from_json(v, &st.cfg, now))?;
    let accepted = valid.len();
    if accepted > 0 {
        let st2 = st.clone();
        let (valid, existed) = tokio::task::spawn_blocking(move || {
            let (items, titles): (Vec<Item>, Vec<Option<String>>) = valid.into_iter().unzip();
            let titled: Vec<(u64, String)> =
                items.iter().zip(&titles).filter_map(|(i, t)| t.clone().map(|t| (i.id, t))).collect();
            let existed = st2.store.put_items(&items).and_then(|e| {
                if !titled.is_empty() {
                    st2.store.put_titles(&titled)?;
                }
                Ok(e)
            });
            (items, existed)
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
    responses((status = 200, body = ItemJson, description = "the item, with its title when one is stored"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_item(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
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
async fn delete_item(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
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
    request_body(content = Vec<Event>, description = "a JSON array of events, or NDJSON; idempotent by event_id. With a user token, every event must be that user's (403 otherwise, nothing written)."),
    responses((status = 200, body = BatchResponse, description = "a status per event; at least one accepted"),
        (status = 400, body = BatchRefused, description = "no event accepted (a status per event), or the body is not JSON/NDJSON")),
    security(("api_key" = []), ("user_token" = [])))]
async fn post_events(
    State(st): State<Arc<AppState>>,
    who: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = caller(who)?;
    require_ready(&st)?;
    let (now, skew) = (now_ms(), st.cfg.ingest.max_future_ms);
    let Validated { mut results, valid, slots } = validate_batch(&body, |v| Event::from_json(v, now, skew))?;
    // A user token may only write that user's events: one stranger refuses the whole batch.
    for e in &valid {
        who.may_act_for(e.user)?;
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

/// The candidate counts regional bundles are built for. A request's `k` is
/// rounded up to the next one (capped at `retrieval.max_k`), so varying `k`
/// cannot fill the origin's bundle caches, and every cache on the way shares
/// the same few bundles per region.
pub const REGIONAL_K_BUCKETS: [usize; 12] = [50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000];

/// `k` rounded up to a [`REGIONAL_K_BUCKETS`] entry, at most `max_k`.
pub fn regional_k(k: usize, max_k: usize) -> usize {
    REGIONAL_K_BUCKETS.iter().copied().find(|&b| b >= k).unwrap_or(max_k).min(max_k)
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
            .map(|b| Built { owner: Some(user), ..b })
            .map_err(ApiError::internal)?,
    );
    st.metrics.rows_dropped.with_label_values(&["personal"]).inc_by(built.dropped as u64);
    // Addressable by digest too, but only with this user's token (`bundle_by_digest`).
    st.by_digest.insert(built.digest.clone(), built.clone()).await;
    Ok((state, retrieved, built, now))
}

fn dropped_names(r: &Retrieved) -> Vec<&'static str> {
    r.reports.iter().filter(|r| r.dropped.is_some()).map(|r| r.name).collect()
}

#[utoipa::path(get, path = "/v1/users/{id}/candidates", tag = "bundles",
    params(("id" = u64, Path, description = "user id"), ("k" = Option<usize>, Query, description = "candidates (default retrieval.default_k)"),
        ("region" = Option<u8>, Query, description = "the user's region, 0–31")),
    responses((status = 200, description = "a personalized candidate bundle (Cache-Control: private)", content_type = "application/vnd.edgewise.bundle", body = Binary),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody)),
    security(("user_token" = [])))]
async fn candidates(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    who: Option<axum::Extension<Caller>>,
    q: Result<Query<BundleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let user = parse_id(&user, "user id")?;
    caller(who)?.may_act_for(user)?;
    require_ready(&st)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
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
    request_body(description = "a model artifact (edgewise_core::model v1); the content type is not checked",
        content((Binary = "application/vnd.edgewise.model"), (Binary = "application/octet-stream"))),
    responses((status = 201, body = ModelRegistered, description = "registered; the digest and the manifest"), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
async fn put_model(
    State(st): State<Arc<AppState>>,
    q: Result<Query<ModelQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
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
    Ok((StatusCode::CREATED, axum::Json(ModelRegistered { digest, manifest: next })).into_response())
}

fn check_digest(d: &str) -> Result<(), ApiError> {
    if d.len() == 64 && d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(ApiError::bad_request("a digest is 64 lower-case hex digits (sha256)"))
    }
}

#[utoipa::path(get, path = "/v1/models/{digest}", tag = "models", params(("digest" = String, Path, description = "sha256, hex")),
    responses((status = 200, description = "the artifact (immutable)", content_type = "application/vnd.edgewise.model", body = Binary),
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
    request_body(description = "a core guest module (`edgewise_core.wasm` or a build of it: no imports, the guest ABI's exports); an optional detached ed25519 signature (base64) in X-Edgewise-Signature is stored with it and served to edges; the content type is not checked",
        content((Binary = "application/wasm"), (Binary = "application/octet-stream"))),
    responses((status = 201, body = ModuleStored, description = "stored; the digest and its URL"), (status = 400, body = ErrorBody, description = "a malformed signature header"),
        (status = 422, body = ErrorBody, description = "not a module an edge can run")),
    security(("api_key" = [])))]
async fn put_module(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let checked = body.clone();
    tokio::task::spawn_blocking(move || crate::models::check_guest_module(&checked))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("module refused: {e}")))?;
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
    Ok((StatusCode::CREATED, axum::Json(ModuleStored { digest, url })).into_response())
}

#[utoipa::path(get, path = "/v1/modules/{digest}", tag = "modules", params(("digest" = String, Path, description = "sha256, hex")),
    responses((status = 200, description = "the module (immutable), with its signature in X-Edgewise-Signature when one was stored", content_type = "application/wasm", body = Binary),
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
    responses((status = 200, body = CurrentModel, description = "the model this user gets, and the manifest"), (status = 400, body = ErrorBody),
        (status = 304, description = "If-None-Match matched"), (status = 404, body = ErrorBody)))]
async fn current_model(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    q: Result<Query<CurrentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let user = q.user.as_deref().map(|u| parse_id(u, "user id")).transpose()?;
    let manifest = st.manifest.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let Some(chosen) = manifest.for_user(user).map(str::to_owned) else {
        return Err(ApiError::not_found("no model is registered yet (PUT /v1/models)"));
    };
    let body = serde_json::to_vec(&CurrentModel {
        url: format!("/v1/models/{chosen}"),
        digest: chosen,
        stable: manifest.stable,
        canary: manifest.canary,
    })
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
    info(title = "Edgewise origin API", description = "Catalogue, events, candidate bundles, models and ranking. \
        Service keys (api_key: `X-Api-Key` or `Authorization: Bearer`) guard ingest and admin routes; \
        personalized routes need the user's own token (user_token: a short-lived JWT whose sub is the user id). \
        Every error has a JSON body `{\"error\": ...}`, except 414 and 431, which the HTTP layer sends without one."),
    paths(livez, readyz, metrics, put_items, get_item, delete_item, post_events, candidates, regional_bundle, bundle_by_digest,
        put_model, get_model, current_model, put_module, get_module, rank),
    components(schemas(ItemJson, Event, crate::user::EventKind, BatchResponse, BatchResult, BatchRefused, ErrorBody, RankBody,
        RankResponse, RankedJson, Manifest, Canary, CurrentModel, ModelRegistered, ModuleStored)),
    modifiers(&SecuritySchemes, &CommonResponses)
)]
pub struct ApiDoc;

struct SecuritySchemes;
impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "a service key (ingest, admin or read); `Authorization: Bearer KEY` works too",
            ))),
        );
        comps.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("the user's token: HS256 or EdDSA, sub = user id, exp and iat required"))
                    .build(),
            ),
        );
    }
}

/// The statuses every guarded route can answer, added to each operation so
/// the document says what the server really sends: 401/403 from the access
/// check, 408/413/429 from admission, 503 while the index loads, 500.
struct CommonResponses;
impl utoipa::Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        /// Routes that wait for start-up recovery.
        const NEED_READY: [&str; 6] = [
            "/v1/items",
            "/v1/items/{id}",
            "/v1/events",
            "/v1/users/{id}/candidates",
            "/v1/regions/{region}/bundle",
            "/v1/rank",
        ];
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") && path != "/openapi.json" {
                continue;
            }
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                let r = &mut op.responses.responses;
                let mut add = |code: &str, what: &str| {
                    r.entry(code.to_string()).or_insert_with(|| error(what).into());
                };
                add("401", "a credential is missing or invalid (WWW-Authenticate says which)");
                add("403", "the credential does not allow this route, or the route is disabled");
                add("408", "the request body did not arrive within server.body_read_timeout_ms");
                add("413", "the request body is larger than server.max_body_bytes");
                add("429", "too many requests in flight or bodies being received; Retry-After says when to retry");
                add("500", "an internal error (logged)");
                if NEED_READY.contains(&path.as_str()) {
                    add("503", "the index is still loading");
                }
            }
        }
    }
}

#[utoipa::path(post, path = "/v1/rank", tag = "ranking", request_body = RankBody,
    responses((status = 200, body = RankResponse, description = "the ranking with every stage explained"), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "no model registered")),
    security(("user_token" = [])))]
async fn rank(
    State(st): State<Arc<AppState>>,
    who: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = caller(who)?;
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid rank request: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request("invalid rank request: expected a JSON object like {\"user\": 42}"));
    }
    let b: RankBody =
        serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid rank request: {e}")))?;
    who.may_act_for(b.user)?;
    require_ready(&st)?;
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
    let items: Vec<RankedJson> = out
        .items
        .iter()
        .map(|it| {
            let mask = bundle.source_mask(it.row as usize);
            RankedJson {
                id: it.id,
                title: titles.get(&it.id).cloned(),
                score: it.score,
                pre_score: it.pre_score,
                main_score: it.main_score,
                mmr_penalty: it.mmr_penalty,
                retrieval_score: bundle.retrieval_score(it.row as usize),
                sources: names.iter().enumerate().filter(|(j, _)| mask & (1 << j) != 0).map(|(_, n)| *n).collect(),
            }
        })
        .collect();
    let mut stages = std::collections::BTreeMap::new();
    for r in &out.rows {
        *stages.entry(r.outcome.as_str()).or_insert(0u32) += 1;
    }
    Ok(axum::Json(RankResponse {
        user: b.user,
        model: digest,
        bundle: built.digest.clone(),
        candidates: bundle.len(),
        sources_dropped: dropped_names(&retrieved),
        stages,
        items,
    })
    .into_response())
}

/// `POST /v1/rank`'s answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RankResponse {
    /// The user.
    pub user: u64,
    /// The model that ranked (sha256).
    pub model: String,
    /// The personalized bundle that was ranked (sha256).
    pub bundle: String,
    /// Candidates in it.
    pub candidates: usize,
    /// Candidate sources that failed or missed their deadline.
    pub sources_dropped: Vec<&'static str>,
    /// How many candidates ended at each stage (`selected`, `seen`, `region`, `prerank_cut`, …).
    pub stages: std::collections::BTreeMap<&'static str, u32>,
    /// The ranking, best first.
    pub items: Vec<RankedJson>,
}

/// One ranked item, with the scores of every stage.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RankedJson {
    /// Item id.
    pub id: u64,
    /// Its title, when one is stored.
    pub title: Option<String>,
    /// Calibrated score.
    pub score: f32,
    /// Pre-rank score.
    pub pre_score: f32,
    /// The MLP's logit.
    pub main_score: f32,
    /// What diversity (MMR) took off.
    pub mmr_penalty: f32,
    /// The fused retrieval score.
    pub retrieval_score: f32,
    /// The candidate sources that found it.
    pub sources: Vec<&'static str>,
}

/// Raw bytes: a candidate bundle, a model artifact or a guest module.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("raw bytes"))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// A 400 from a batch route: per-record results when the body was a batch
/// but no record was accepted, or an error when it was not a batch at all.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchRefused {
    /// No record was accepted; each says why.
    Records(BatchResponse),
    /// The body is not a JSON array or NDJSON.
    Body(ErrorBody),
}

/// `PUT /v1/modules`' answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ModuleStored {
    /// The module's sha256.
    pub digest: String,
    /// Where edges fetch it.
    pub url: String,
}

/// `PUT /v1/models`' answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ModelRegistered {
    /// The model's sha256.
    pub digest: String,
    /// The models live now.
    pub manifest: Manifest,
}

/// `GET /v1/models/current`'s answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CurrentModel {
    /// The model this user (or, without `user`, everyone on stable) gets.
    pub digest: String,
    /// Where to fetch it.
    pub url: String,
    /// The stable model.
    pub stable: Option<String>,
    /// The canary, if one is rolling out.
    pub canary: Option<Canary>,
}

#[utoipa::path(get, path = "/v1/regions/{region}/bundle", tag = "bundles",
    params(("region" = u8, Path, description = "region, 0–31"), ("k" = Option<usize>, Query, description = "candidates")),
    responses((status = 200, description = "a regional bundle (public, s-maxage, stale-while-revalidate, stale-if-error); k is rounded up to the next of 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000", content_type = "application/vnd.edgewise.bundle", body = Binary),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody)))]
async fn regional_bundle(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(region): Path<String>,
    q: Result<Query<BundleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_ready(&st)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if q.region.is_some() {
        return Err(ApiError::bad_request("the region is part of the path; drop the region query parameter"));
    }
    let region = parse_region(&region)?;
    // Cache keys are quantised: a k between buckets gets the next bucket's bundle.
    let k = regional_k(parse_k(q.k.as_deref(), &st.cfg)?, st.cfg.retrieval.max_k);
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
            st2.metrics.rows_dropped.with_label_values(&["regional"]).inc_by(built.dropped as u64);
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
    responses((status = 200, description = "the bundle (immutable); a personal one only with its user's token", content_type = "application/vnd.edgewise.bundle", body = Binary),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn bundle_by_digest(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    let Some(built) = st.by_digest.get(&digest).await else {
        st.metrics.cache.with_label_values(&["digest", "miss"]).inc();
        return Err(ApiError::not_found(format!("bundle {digest} is unknown or has expired from the bundle cache")));
    };
    // A personal bundle is its user's alone: the same token rule as `/v1/users/{id}/candidates`.
    let cc = match built.owner {
        Some(owner) => {
            st.tokens.require_user(&headers, owner)?;
            "private, max-age=31536000, immutable"
        }
        None => "public, max-age=31536000, immutable",
    };
    st.metrics.cache.with_label_values(&["digest", "hit"]).inc();
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
