//! The edge's HTTP server: the regional cache in front of the origin.
//!
//! | route | what |
//! |---|---|
//! | `GET\|POST /v1/feed` | the speculative-then-refined feed ([`crate::feed`]) |
//! | `GET /v1/...` | proxied to the origin through the [`crate::cache`]: regional bundles, immutable bundles and models are stored as their `Cache-Control` allows; personalized (`private`) bundles pass through and are never stored |
//! | `POST /admin/purge` | `{"surrogate_key": "region-4"}` drops every entry with that key (needs an admin key when one is configured) |
//! | `/livez`, `/readyz` | liveness; readiness |
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
}

/// The router.
pub fn app(state: Arc<EdgeState>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/admin/purge", post(purge))
        .route("/v1/feed", get(feed_route).post(feed_route))
        .route("/v1/{*rest}", get(proxy))
        .with_state(state)
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

async fn purge(State(st): State<Arc<EdgeState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !st.admin_keys.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
        match given {
            None => {
                return error(StatusCode::UNAUTHORIZED, "this route needs an admin key (Authorization: Bearer KEY)");
            }
            Some(k) if !st.admin_keys.iter().any(|a| a == k) => {
                return error(StatusCode::FORBIDDEN, "the key is not an admin key");
            }
            Some(_) => {}
        }
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
    let refined =
        tokio::spawn(async move { feed::frame(&st2.cache, &st2.ranking, &personal_path, "refined", &ctx2).await });
    let prelim = feed::frame(&st.cache, &st.ranking, &regional_path, "preliminary", &req.ctx).await;
    let k = req.k as usize;
    if ndjson {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(2);
        let shown = req.shown;
        tokio::spawn(async move {
            let line = |v: &serde_json::Value| Bytes::from(format!("{v}\n"));
            let p = prelim.ok();
            match &p {
                Some(f) => {
                    let _ = tx.send(Ok(line(&serde_json::json!(f)))).await;
                }
                None => {
                    let _ = tx
                        .send(Ok(line(
                            &serde_json::json!({"frame": "preliminary", "error": "no regional bundle available"}),
                        )))
                        .await;
                }
            }
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
    let refined = match tokio::time::timeout(left, refined).await {
        Ok(Ok(Ok(f))) => Some(f),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "personalized bundle unavailable; answering with the preliminary ranking");
            None
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "refinement task failed");
            None
        }
        Err(_) => None,
    };
    match (prelim, refined) {
        (p, Some(mut f)) => {
            feed::merge_into(p.as_ref().ok(), &mut f, req.shown, k);
            axum::Json(f).into_response()
        }
        (Ok(p), None) => {
            ([(header::HeaderName::from_static("x-edgewise-feed"), "preliminary")], axum::Json(p)).into_response()
        }
        (Err(e), None) => error(StatusCode::SERVICE_UNAVAILABLE, format!("no bundle available: {e}")),
    }
}
