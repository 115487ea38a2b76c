//! The edge's HTTP server: the regional cache in front of the origin.
//!
//! | route | what |
//! |---|---|
//! | `GET\|POST /v1/feed` | the speculative-then-refined feed ([`crate::feed`]) |
//! | `GET /v1/...` | proxied to the origin through the [`crate::cache`]: regional bundles, immutable bundles and models are stored as their `Cache-Control` allows; personalized (`private`) bundles pass through and are never stored |
//! | `PUT /admin/modules/{tenant}` | `{"digest": "<sha256>"}`: fetch that module from the origin, verify it, and swap it in for the tenant (admin key) |
//! | `POST /admin/purge` | `{"surrogate_key": "region-4"}` drops every entry with that key (needs an admin key when one is configured) |
//! | `/livez`, `/readyz` | liveness; readiness (a guest module is loaded) |
//! | `/metrics` | Prometheus ([`crate::metrics`]) |
//!
//! Bodies over the limit get 413; past the cap on requests in flight, 429 with `Retry-After`.
//!
//! Every proxied response carries `Age` and `X-Edgewise-Cache`
//! (`hit`, `miss`, `stale`, `revalidated`), and answers a matching
//! `If-None-Match` with 304.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::cache::{Cache, CacheError};
use crate::feed::{self, FeedBody, FeedConfig, FeedRequest, Ranking};
use crate::metrics::EdgeMetrics;

/// Server limits.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Keys accepted on admin routes; empty: admin routes are open.
    pub admin_keys: Vec<String>,
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Requests served at once; beyond it, 429 with `Retry-After`.
    pub max_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self { admin_keys: Vec::new(), max_body_bytes: 1 << 20, max_in_flight: 1024 }
    }
}

/// Shared server state.
#[derive(Debug)]
pub struct EdgeState {
    /// The regional cache.
    pub cache: Cache,
    /// Keys accepted on admin routes; empty: admin routes are open.
    pub admin_keys: Vec<String>,
    /// The guest and verified models.
    pub ranking: Arc<Ranking>,
    /// Feed settings.
    pub feed: FeedConfig,
    /// Metrics.
    pub metrics: EdgeMetrics,
    max_body_bytes: usize,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl EdgeState {
    /// Assembles the state and registers every metric.
    pub fn new(
        cache: Cache,
        ranking: Arc<Ranking>,
        feed: FeedConfig,
        limits: ServerLimits,
    ) -> Result<Self, prometheus::Error> {
        let metrics = EdgeMetrics::new(&cache.metrics, &ranking.metrics)?;
        Ok(Self {
            cache,
            admin_keys: limits.admin_keys,
            ranking,
            feed,
            metrics,
            max_body_bytes: limits.max_body_bytes,
            in_flight: Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1))),
        })
    }
}

/// The router.
pub fn app(state: Arc<EdgeState>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|State(st): State<Arc<EdgeState>>| async move { st.metrics.render() }))
        .route("/admin/purge", post(purge))
        .route("/admin/modules/{tenant}", axum::routing::put(put_module))
        .route("/v1/feed", get(feed_route).post(feed_route))
        .route("/v1/{*rest}", get(proxy))
        .layer(axum::extract::DefaultBodyLimit::max(state.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn readyz(State(st): State<Arc<EdgeState>>) -> Response {
    if st.ranking.guest().is_some() {
        "ready".into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "no guest module is loaded")
    }
}

/// Caps requests in flight (429 with `Retry-After` beyond the cap) and records latency per route.
async fn observe(State(st): State<Arc<EdgeState>>, req: Request, next: axum::middleware::Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let Ok(_permit) = st.in_flight.clone().try_acquire_owned() else {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "too many requests in flight; retry shortly");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    st.metrics.http_seconds.with_label_values(&[&route, resp.status().as_str()]).observe(start.elapsed().as_secs_f64());
    resp
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn proxy(State(st): State<Arc<EdgeState>>, req: Request) -> Response {
    let path = req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), ToString::to_string);
    let served = match st.cache.get(&path).await {
        Ok(s) => s,
        Err(CacheError::Upstream { status, body }) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            return (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        }
        Err(e @ CacheError::Origin(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let r = &served.response;
    let mut headers = HeaderMap::new();
    let mut set = |name: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            headers.insert(name, v);
        }
    };
    set(header::AGE, &served.age_secs.to_string());
    set(header::HeaderName::from_static("x-edgewise-cache"), served.status.as_str());
    set(header::CACHE_CONTROL, &r.cache_control_raw);
    if let Some(ct) = &r.content_type {
        set(header::CONTENT_TYPE, ct);
    }
    if !r.surrogate_keys.is_empty() {
        set(header::HeaderName::from_static("surrogate-key"), &r.surrogate_keys.join(" "));
    }
    if let Some(sig) = &r.signature {
        set(header::HeaderName::from_static("x-edgewise-signature"), sig);
    }
    if let Some(etag) = &r.etag {
        set(header::ETAG, etag);
        let matches = req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        if matches {
            return (StatusCode::NOT_MODIFIED, headers).into_response();
        }
    }
    (StatusCode::OK, headers, r.body.clone()).into_response()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeBody {
    surrogate_key: String,
}

/// `Some(response)` when the request lacks a valid admin key.
fn refuse_without_admin_key(st: &EdgeState, headers: &HeaderMap) -> Option<Response> {
    if st.admin_keys.is_empty() {
        return None;
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        None => Some(error(StatusCode::UNAUTHORIZED, "this route needs an admin key (Authorization: Bearer KEY)")),
        Some(k) if !st.admin_keys.iter().any(|a| a == k) => {
            Some(error(StatusCode::FORBIDDEN, "the key is not an admin key"))
        }
        Some(_) => None,
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleBody {
    digest: String,
}

/// Replaces a tenant's module with one fetched from the origin by digest and
/// verified (sha256; ed25519 when a public key is configured). In-flight
/// requests finish on the old module.
async fn put_module(
    State(st): State<Arc<EdgeState>>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = refuse_without_admin_key(&st, &headers) {
        return r;
    }
    if tenant.is_empty() || tenant.len() > 64 {
        return error(StatusCode::BAD_REQUEST, "tenant must be 1 to 64 characters");
    }
    let b: ModuleBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"digest\": \"<sha256 hex>\"}}: {e}")),
    };
    let Some((engine, limits)) = st.ranking.sandbox.clone() else {
        return error(
            StatusCode::CONFLICT,
            "this edge was started without a sandbox engine; modules cannot be swapped",
        );
    };
    let bytes = match crate::modules::fetch_verified(&st.cache, &b.digest, st.ranking.public_key.as_ref()).await {
        Ok(b) => b,
        Err(e @ crate::modules::ModuleError::Fetch { .. }) => return error(StatusCode::BAD_GATEWAY, e.to_string()),
        Err(e) => {
            tracing::warn!(tenant, error = %e, "module refused");
            return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        }
    };
    let cache = st.ranking.compiled_cache.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        crate::guest::GuestModule::sandboxed_cached(&engine, &bytes, limits, cache.as_ref())
    })
    .await;
    match compiled {
        Ok(Ok((module, _))) => {
            st.ranking.swap(&tenant, module, format!("origin:{}", b.digest));
            tracing::info!(tenant, digest = b.digest, "module swapped in");
            axum::Json(serde_json::json!({"tenant": tenant, "digest": b.digest})).into_response()
        }
        Ok(Err(e)) => error(StatusCode::UNPROCESSABLE_ENTITY, format!("module {} does not load: {e}", b.digest)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("compiling the module failed: {e}")),
    }
}

async fn purge(State(st): State<Arc<EdgeState>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refuse_without_admin_key(&st, &headers) {
        return r;
    }
    let b: PurgeBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("expected {{\"surrogate_key\": \"...\"}}: {e}")),
    };
    if b.surrogate_key.is_empty() {
        return error(StatusCode::BAD_REQUEST, "surrogate_key is empty");
    }
    let n = st.cache.purge(&b.surrogate_key);
    tracing::info!(key = b.surrogate_key, purged = n, "purge");
    axum::Json(serde_json::json!({ "purged": n })).into_response()
}

async fn feed_route(
    State(st): State<Arc<EdgeState>>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ndjson =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/x-ndjson"));
    let parsed = if method == axum::http::Method::POST && !body.is_empty() {
        match serde_json::from_slice::<FeedBody>(&body) {
            Ok(b) => Some(b),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid feed body: {e}")),
        }
    } else {
        None
    };
    let req = match FeedRequest::parse(&query, parsed, if ndjson { 3 } else { 0 }) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let start = std::time::Instant::now();
    let (regional_path, personal_path) = feed::paths(&req, &st.feed);
    let st2 = st.clone();
    let ctx2 = req.ctx.clone();
    let tenant2 = req.tenant.clone();
    let mut refined = req.refine.then(|| {
        tokio::spawn(
            async move { feed::frame(&st2.cache, &st2.ranking, &personal_path, "refined", &ctx2, &tenant2).await },
        )
    });
    let prelim = feed::frame(&st.cache, &st.ranking, &regional_path, "preliminary", &req.ctx, &req.tenant).await;
    let k = req.k as usize;
    if ndjson {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(2);
        let shown = req.shown;
        tokio::spawn(async move {
            let line = |v: &serde_json::Value| Bytes::from(format!("{v}\n"));
            let p = prelim.ok();
            let first = match &p {
                Some(f) => serde_json::json!(f),
                None => serde_json::json!({"frame": "preliminary", "error": "no regional bundle available"}),
            };
            if tx.send(Ok(line(&first))).await.is_err() {
                // The client is gone: stop the refinement too.
                if let Some(r) = &refined {
                    r.abort();
                }
                return;
            }
            let Some(refined) = refined else { return };
            let r = match refined.await {
                Ok(Ok(mut f)) => {
                    feed::merge_into(p.as_ref(), &mut f, shown, k);
                    serde_json::json!(f)
                }
                Ok(Err(e)) => serde_json::json!({"frame": "refined", "error": e.to_string()}),
                Err(e) => serde_json::json!({"frame": "refined", "error": e.to_string()}),
            };
            let _ = tx.send(Ok(line(&r))).await;
        });
        let body = axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
        return ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response();
    }
    let left = st.feed.refine_deadline.saturating_sub(start.elapsed());
    let refined = match refined.as_mut() {
        None => None,
        Some(handle) => match tokio::time::timeout(left, &mut *handle).await {
            Ok(Ok(Ok(f))) => Some(f),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "personalized bundle unavailable; answering with the preliminary ranking");
                None
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "refinement task failed");
                None
            }
            Err(_) => {
                // Past the deadline the answer is preliminary; the refinement
                // would only load the origin for nobody.
                handle.abort();
                None
            }
        },
    };
    match (prelim, refined) {
        (p, Some(mut f)) => {
            st.metrics.feeds.with_label_values(&["refined"]).inc();
            feed::merge_into(p.as_ref().ok(), &mut f, req.shown, k);
            axum::Json(f).into_response()
        }
        (Ok(p), None) => {
            st.metrics.feeds.with_label_values(&["preliminary"]).inc();
            ([(header::HeaderName::from_static("x-edgewise-feed"), "preliminary")], axum::Json(p)).into_response()
        }
        (Err(e), None) => {
            st.metrics.feeds.with_label_values(&["unavailable"]).inc();
            error(StatusCode::SERVICE_UNAVAILABLE, format!("no bundle available: {e}"))
        }
    }
}
