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
//! | `PUT/GET/DELETE /v1/experiments/{name}` | an experiment's definition, validated, durable ([`crate::experiments`]) | admin key |
//! | `GET /v1/users/{id}/experiments` | the running experiments and the user's variant in each | the user's token |
//!
//! "Read" routes are open unless `auth.read_keys` is set. The access rule is
//! checked on the headers before the body is read; then
//! [`edgewise_http::admission`] reads the body within `server.max_body_bytes`
//! (413), `server.body_read_timeout_ms` (408) and `server.body_budget_bytes`
//! (429), and takes a slot of `server.max_in_flight` (429 with `Retry-After`).
//!
//! One file per resource: `items`, `events`, `bundles`, `models` (models and
//! guest modules), `rank`, `experiments`; `access` holds the route guard and `openapi` the
//! document. This file holds the state, the router, the middleware and the
//! helpers the resources share.
//!
//! Cacheable responses carry a strong ETag (the bundle's sha256; a compressed
//! representation gets its own, e.g. `"<sha>-gzip"`), answer `If-None-Match`
//! with 304, and carry `Vary: Accept-Encoding`, `Surrogate-Key` and `Cache-Tag`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

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

use crate::bundles::Built;
use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::error::{ApiError, ErrorBody};
use crate::item::{Item, ItemJson, split_batch};
use crate::metrics::Metrics;
use crate::models::{Canary, Loaded, Manifest};
use crate::sources::{self, Request as SourceRequest, Retrieved, Source};
use crate::store::{EventOutcome, Store};
use crate::trending::trending_merge;
use crate::user::Event;
use edgewise_core::{Digest, Region};
use edgewise_wire::paths;

mod access;
mod bundles;
mod events;
mod experiments;
mod items;
mod models;
mod openapi;
mod rank;

pub use self::access::{Access, Caller};
pub use self::bundles::{REGIONAL_K_BUCKETS, regional_k};
pub use self::experiments::{ExperimentView, UserExperiment, UserExperiments};
pub use self::models::{ModelRegistered, ModuleStored, SIGNATURE_HEADER};
pub use self::openapi::{ApiDoc, BatchRefused, Binary};
pub use self::rank::{RankBody, RankResponse, RankedJson};
use self::{access::*, bundles::*, events::*, experiments::*, items::*, models::*, rank::*};

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
pub const BUNDLE_MEDIA_TYPE: &str = edgewise_wire::media::BUNDLE;

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
    /// The GPU path for `/v1/rank` (`rank.gpu = "auto"`); `None` when off.
    pub gpu: Option<std::sync::Mutex<edgewise_shaders::AnyRanker>>,
    regional: moka::future::Cache<(Region, usize), Arc<Built>>,
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
            .weigher(weigh::<(Region, usize)>)
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
        let gpu = match cfg.rank.gpu {
            crate::config::GpuSetting::Off => None,
            crate::config::GpuSetting::Auto => {
                // Without a GPU, keep no ranker: CPU rankings need no shared lock.
                match edgewise_shaders::AnyRanker::new(edgewise_shaders::Choice::Auto, &Default::default()) {
                    Ok(r) if r.gpu().is_some() => {
                        tracing::info!(path = %r.path(), "rank.gpu = \"auto\": /v1/rank ranks on this path");
                        Some(std::sync::Mutex::new(r))
                    }
                    Ok(r) => {
                        tracing::warn!(path = %r.path(), "rank.gpu = \"auto\": no GPU path, /v1/rank ranks on the CPU");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rank.gpu = \"auto\": no GPU path, /v1/rank ranks on the CPU");
                        None
                    }
                }
            }
        };
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
            gpu,
            regional,
            by_digest,
        })
    }
}

pub use edgewise_http::now_ms;

/// The router. Health routes (`/livez`, `/readyz`, `/metrics`) sit outside
/// admission and request logging, so they answer under any load; every other
/// route has its [`Access`] here.
pub fn app(state: Arc<AppState>) -> Router {
    let body_limit = state.cfg.server.max_body_bytes;
    let g = |access| middleware::from_fn_with_state((state.clone(), access), guard);
    let api = Router::new()
        .route(
            paths::OPENAPI,
            get(|| async { axum::Json(<ApiDoc as utoipa::OpenApi>::openapi()) }).route_layer(g(Access::Open)),
        )
        .route(paths::ITEMS, put(put_items).route_layer(g(Access::Ingest)))
        .route(
            "/v1/items/{id}",
            get(get_item).route_layer(g(Access::Read)).merge(delete(delete_item).route_layer(g(Access::Ingest))),
        )
        .route(paths::EVENTS, post(post_events).route_layer(g(Access::IngestOrUser)))
        .route("/v1/users/{id}/candidates", get(candidates).route_layer(g(Access::User)))
        .route("/v1/regions/{region}/bundle", get(regional_bundle).route_layer(g(Access::Read)))
        .route("/v1/bundles/{digest}", get(bundle_by_digest).route_layer(g(Access::Read)))
        .route(paths::MODELS, put(put_model).route_layer(g(Access::Admin)))
        .route(paths::MODEL_CURRENT, get(current_model).route_layer(g(Access::Read)))
        .route("/v1/models/{digest}", get(get_model).route_layer(g(Access::Read)))
        .route(paths::MODULES, put(put_module).route_layer(g(Access::Admin)))
        .route("/v1/modules/{digest}", get(get_module).route_layer(g(Access::Read)))
        .route(paths::RANK, post(rank).route_layer(g(Access::User)))
        .route(
            "/v1/experiments/{name}",
            put(put_experiment)
                .merge(get(get_experiment))
                .merge(delete(delete_experiment))
                .route_layer(g(Access::Admin)),
        )
        .route("/v1/users/{id}/experiments", get(user_experiments).route_layer(g(Access::User)))
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
        .route(paths::LIVEZ, get(livez))
        .route(paths::READYZ, get(readyz))
        .route(paths::METRICS, get(metrics))
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
///
/// A 304 has no body and so no `Content-Encoding`: when the client's
/// `If-None-Match` named a coded representation (`"<tag>-gzip"`) that it
/// still accepts, the 304 carries that representation's ETag, the one a 200
/// would have carried (RFC 9110 §15.4.5), so a cache keeps its copy's tag.
async fn representation_etag(req: Request, next: Next) -> Response {
    let inm: Vec<String> = req
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let accepts: String = req
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let mut resp = next.run(req).await;
    if resp.status() == StatusCode::NOT_MODIFIED {
        let tag = resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let coding = tag.as_deref().and_then(|t| inm.iter().find_map(|h| edgewise_wire::etag::matched_coding(h, t)));
        if let (Some(tag), Some(coding)) = (tag, coding)
            && accepts.split(',').any(|a| a.split(';').next().is_some_and(|c| c.trim().eq_ignore_ascii_case(coding)))
            && let Ok(v) = HeaderValue::from_str(&edgewise_wire::etag::for_coding(&tag, coding))
        {
            resp.headers_mut().insert(header::ETAG, v);
        }
        return resp;
    }
    let coding = resp.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let (Some(coding), Some(tag)) = (coding, resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok())) {
        let tagged = edgewise_wire::etag::for_coding(tag, &coding);
        if let Ok(v) = HeaderValue::from_str(&tagged) {
            resp.headers_mut().insert(header::ETAG, v);
        }
    }
    resp
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
    ([(header::CONTENT_TYPE, edgewise_wire::media::PROMETHEUS)], st.metrics.render()).into_response()
}

fn require_ready(st: &AppState) -> Result<(), ApiError> {
    if st.ready.load(Ordering::Acquire) { Ok(()) } else { Err(ApiError::unavailable("the index is still loading")) }
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

/// The model digest `user` gets (`None`: the stable model).
fn model_for(st: &AppState, user: Option<u64>) -> Option<Digest> {
    st.manifest.read().unwrap_or_else(std::sync::PoisonError::into_inner).for_user(user)
}

fn check_digest(d: &str) -> Result<Digest, ApiError> {
    d.parse().map_err(|e| ApiError::bad_request(format!("{e} (a sha256)")))
}
