//! The edge's HTTP server: the regional cache in front of the origin.
//!
//! | route | what | who may call it |
//! |---|---|---|
//! | `GET\|POST /v1/feed` | the speculative-then-refined feed ([`crate::feed`]) | anyone for an anonymous feed; with `user=` only that user's token |
//! | `GET /v1/...` | proxied to the origin through the [`crate::cache`]: regional bundles, immutable bundles, models, modules and items are stored as their `Cache-Control` allows | anyone (the origin's read key, if it needs one, is the edge's `origin.api_key`) |
//! | `GET /v1/users/{id}/...` | a user's own data, passed through with their token: never stored, never shared | that user's token, checked here and again at the origin |
//! | `PUT /admin/modules/{tenant}` | `{"digest": "<sha256>"}`: fetch that module from the origin, verify it, prove it can rank (a canary ranking), and swap it in for the tenant | an admin key; disabled when none is configured |
//! | `POST /admin/purge` | `{"surrogate_key": "region-4"}` drops every entry with that key | an admin key; disabled when none is configured |
//! | `/livez`, `/readyz` | liveness; readiness (JSON: every tenant can rank; the origin's last known state) | anyone; outside admission |
//! | `/metrics` | Prometheus ([`crate::metrics`]) | anyone; outside admission |
//!
//! Each route's access rule is checked on the headers before the body is
//! read; then [`edgewise_http::admission`] reads the body within its limits
//! (413, 408, 429) and takes a slot of the in-flight cap (429 with
//! `Retry-After`). Proxied paths must be plain (`[A-Za-z0-9._-]` segments, no
//! dot segments, no percent-encoding) and under a proxied prefix, so no
//! request reaches an origin path outside the public `/v1` API.
//!
//! Every proxied response carries `Age` and `X-Edgewise-Cache`
//! (`hit`, `miss`, `stale`, `revalidated`), and answers a matching
//! `If-None-Match` with 304.
//!
//! **Readiness.** `/readyz` is 503 while the default tenant has no module or
//! any tenant's last [`crate::pool::UNHEALTHY_AFTER`] rankings all failed.
//! The origin's reachability is reported (`"origin": "up" | "down" |
//! "unknown"`) but does not make the edge unready: a dead origin is shared by
//! every edge, and an edge still serves cached and stale bundles
//! (`stale-if-error`); taking all of them out of rotation would only turn a
//! degraded feed into none.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use edgewise_http::admission::{Admission, AdmissionConfig};
use edgewise_http::auth::{ServiceKeys, UserTokenConfig, UserTokens};
use edgewise_http::json_error;
use edgewise_http::serve::ServeOptions;

use crate::cache::{Cache, CacheError};
use crate::feed::{self, FeedBody, FeedConfig, FeedRequest, Ranking};
use crate::metrics::EdgeMetrics;

/// Who may call the server, and its connection and body limits.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Keys accepted on admin routes; empty: the admin routes are disabled.
    pub admin_keys: Vec<String>,
    /// How user tokens are verified (personal feeds, `/v1/users/…`).
    pub user_tokens: UserTokenConfig,
    /// Body limits and the in-flight cap.
    pub admission: AdmissionConfig,
    /// Connection limits.
    pub serve: ServeOptions,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            admin_keys: Vec::new(),
            user_tokens: UserTokenConfig::default(),
            admission: AdmissionConfig { max_in_flight: 1024, ..AdmissionConfig::default() },
            serve: ServeOptions::default(),
        }
    }
}

/// Why the server state could not be assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A metric could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The user-token configuration is not usable.
    #[error("{0}")]
    Tokens(#[from] edgewise_http::auth::TokenConfigError),
}

/// Shared server state.
#[derive(Debug)]
pub struct EdgeState {
    /// The regional cache.
    pub cache: Cache,
    /// Keys accepted on admin routes.
    pub admin: ServiceKeys,
    /// User-token verification.
    pub tokens: UserTokens,
    /// The guest and verified models.
    pub ranking: Arc<Ranking>,
    /// Feed settings.
    pub feed: FeedConfig,
    /// Metrics.
    pub metrics: EdgeMetrics,
    admission: Admission,
    serve: ServeOptions,
}

impl EdgeState {
    /// Assembles the state and registers every metric.
    pub fn new(
        cache: Cache,
        ranking: Arc<Ranking>,
        feed: FeedConfig,
        settings: ServerSettings,
    ) -> Result<Self, StateError> {
        let metrics = EdgeMetrics::new(&cache.metrics, &ranking.metrics)?;
        Ok(Self {
            cache,
            admin: ServiceKeys::new(&settings.admin_keys, "admin", "server.admin_keys"),
            tokens: UserTokens::new(&settings.user_tokens)?,
            ranking,
            feed,
            admission: Admission::new(settings.admission, metrics.http.clone()),
            serve: settings.serve,
            metrics,
        })
    }
}

/// Serves the edge on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    state: Arc<EdgeState>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (opts, metrics) = (state.serve, state.metrics.http.clone());
    edgewise_http::serve::serve(listener, app(state), opts, metrics, shutdown).await
}

/// Who may call a route ([`guard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// An admin key.
    Admin,
    /// Anyone for an anonymous feed; the user's token with `user=`.
    Feed,
    /// Anyone for shared paths; the user's token under `/v1/users/{id}/`.
    Proxy,
}

/// What the guard learned about a feed request.
#[derive(Debug, Clone)]
struct FeedCall {
    query: HashMap<String, String>,
    /// The user's token, passed on to the origin for their bundle.
    token: Option<String>,
}

/// What the guard learned about a proxied request.
#[derive(Debug, Clone)]
struct ProxyCall {
    /// The origin path and query.
    target: String,
    /// The user's token, for a user's own path.
    token: Option<String>,
}

/// The router. Health routes sit outside admission, so they answer under any load.
pub fn app(state: Arc<EdgeState>) -> Router {
    let g = |access| middleware::from_fn_with_state((state.clone(), access), guard);
    let api = Router::new()
        .route("/admin/purge", post(purge).route_layer(g(Access::Admin)))
        .route("/admin/modules/{tenant}", axum::routing::put(put_module).route_layer(g(Access::Admin)))
        .route("/v1/feed", get(feed_route).post(feed_route).route_layer(g(Access::Feed)))
        .route("/v1/{*rest}", get(proxy).route_layer(g(Access::Proxy)))
        .layer(axum::extract::DefaultBodyLimit::max(state.admission.config().max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such route") });
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|State(st): State<Arc<EdgeState>>| async move { st.metrics.render() }))
        .merge(api)
        .with_state(state)
}

/// Checks the route's [`Access`] on the headers (and the path and query),
/// then hands the request to admission.
async fn guard(State((st, access)): State<(Arc<EdgeState>, Access)>, mut req: Request, next: Next) -> Response {
    let bearer = edgewise_http::auth::bearer(req.headers()).map(str::to_string);
    match access {
        Access::Admin => {
            if let Err(d) = st.admin.require(req.headers()) {
                return st.admission.deny(d);
            }
        }
        Access::Feed => {
            let query = match strict_query(req.uri().query()) {
                Ok(q) => q,
                Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
            };
            let token = match query.get("user").map(|u| u.parse::<u64>()) {
                None => None,
                Some(Err(_)) => {
                    return json_error(StatusCode::BAD_REQUEST, format!("user={:?} is not a user id", query["user"]));
                }
                Some(Ok(user)) => match st.tokens.require_user(req.headers(), user) {
                    Ok(_) => bearer.clone(),
                    Err(d) => return st.admission.deny(d),
                },
            };
            req.extensions_mut().insert(FeedCall { query, token });
        }
        Access::Proxy => {
            let path = req.uri().path();
            if let Err(e) = check_proxy_path(path) {
                return json_error(StatusCode::NOT_FOUND, e);
            }
            let target = req.uri().path_and_query().map_or_else(|| path.to_string(), ToString::to_string);
            let token = match personal_user(path) {
                None => None,
                Some(Err(e)) => return json_error(StatusCode::BAD_REQUEST, e),
                Some(Ok(user)) => match st.tokens.require_user(req.headers(), user) {
                    Ok(_) => bearer.clone(),
                    Err(d) => return st.admission.deny(d),
                },
            };
            req.extensions_mut().insert(ProxyCall { target, token });
        }
    }
    st.admission.run(req, next).await
}

/// Origin paths the proxy passes on; everything else under `/v1` is the
/// origin's business alone (writes, `/metrics` and the like are never reachable).
const PROXIED: [&str; 6] = ["/v1/regions/", "/v1/bundles/", "/v1/models/", "/v1/modules/", "/v1/items/", "/v1/users/"];

/// Refuses any path a proxy could be tricked with: only `[A-Za-z0-9._-]`
/// segments (so no percent-encoding: `%2e%2e`, `%2f`, `%5c`), no empty, `.`
/// or `..` segment, and one of the [`PROXIED`] prefixes.
fn check_proxy_path(path: &str) -> Result<(), String> {
    let refuse = || Err(format!("{path:?} is not a path this edge proxies"));
    let Some(rest) = path.strip_prefix('/') else { return refuse() };
    for seg in rest.split('/') {
        if seg.is_empty()
            || seg == "."
            || seg == ".."
            || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return refuse();
        }
    }
    if PROXIED.iter().any(|p| path.starts_with(p)) { Ok(()) } else { refuse() }
}

/// For a path under `/v1/users/{id}/`, the user it belongs to.
fn personal_user(path: &str) -> Option<Result<u64, String>> {
    let rest = path.strip_prefix("/v1/users/")?;
    let id = rest.split('/').next().unwrap_or_default();
    Some(id.parse::<u64>().map_err(|_| format!("user id {id:?} is not an unsigned 64-bit integer")))
}

/// Parses a query string, refusing a parameter given twice (`user=1&user=2`
/// must not mean either).
fn strict_query(query: Option<&str>) -> Result<HashMap<String, String>, String> {
    let pairs: Vec<(String, String)> = match query {
        None | Some("") => Vec::new(),
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| format!("invalid query string: {e}"))?,
    };
    let mut map = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if map.contains_key(&k) {
            return Err(format!("the query parameter {k:?} is given more than once"));
        }
        map.insert(k, v);
    }
    Ok(map)
}

async fn readyz(State(st): State<Arc<EdgeState>>) -> Response {
    let tenants = st.ranking.tenant_health();
    let has_default = tenants.iter().any(|(t, _, _)| t == feed::DEFAULT_TENANT);
    let unhealthy: Vec<&str> = tenants.iter().filter(|(_, _, ok)| !ok).map(|(t, _, _)| t.as_str()).collect();
    let ready = has_default && unhealthy.is_empty();
    let origin = match st.cache.origin_up() {
        None => "unknown",
        Some(true) => "up",
        Some(false) => "down",
    };
    let body = serde_json::json!({
        "ready": ready,
        "tenants": tenants.iter().map(|(t, src, ok)| (t.clone(), serde_json::json!({"module": src, "can_rank": ok})))
            .collect::<serde_json::Map<_, _>>(),
        "origin": origin,
        "reason": if !has_default { Some("no guest module is loaded for the default tenant".to_string()) }
            else if !unhealthy.is_empty() { Some(format!("tenants whose last rankings all failed: {}", unhealthy.join(", "))) }
            else { None },
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

/// Records latency per route.
async fn observe(State(st): State<Arc<EdgeState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let start = std::time::Instant::now();
    let resp = next.run(req).await;
    st.metrics.http_seconds.with_label_values(&[&route, resp.status().as_str()]).observe(start.elapsed().as_secs_f64());
    resp
}

/// The answer to a request the origin could not serve. The detail (which
/// names the origin's address) goes to the log, not to the client.
fn origin_failure(e: CacheError, what: &str) -> Response {
    match e {
        CacheError::Upstream { status, body } => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        CacheError::Origin(detail) => {
            tracing::warn!(what, error = %detail, "origin unavailable");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the origin is unavailable and nothing usable is cached for {what}"),
            )
        }
    }
}

async fn proxy(State(st): State<Arc<EdgeState>>, call: Option<axum::Extension<ProxyCall>>, req: Request) -> Response {
    let Some(axum::Extension(call)) = call else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "a route ran without its access guard");
    };
    let served = match &call.token {
        Some(t) => st.cache.pass_through(&call.target, t).await,
        None => st.cache.get(&call.target).await,
    };
    let served = match served {
        Ok(s) => s,
        Err(e) => return origin_failure(e, req.uri().path()),
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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleBody {
    digest: String,
}

/// Replaces a tenant's module with one fetched from the origin by digest,
/// verified (sha256; ed25519 when a public key is configured), compiled, and
/// proven by a canary ranking. In-flight requests finish on the old module;
/// a module that fails any step is refused with 422 and the old one keeps serving.
async fn put_module(
    State(st): State<Arc<EdgeState>>,
    axum::extract::Path(tenant): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    if tenant.is_empty() || tenant.len() > 64 {
        return json_error(StatusCode::BAD_REQUEST, "tenant must be 1 to 64 characters");
    }
    let b: ModuleBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return json_error(StatusCode::BAD_REQUEST, format!("expected {{\"digest\": \"<sha256 hex>\"}}: {e}"));
        }
    };
    let Some((engine, limits)) = st.ranking.sandbox.clone() else {
        return json_error(
            StatusCode::CONFLICT,
            "this edge was started without a sandbox engine; modules cannot be swapped",
        );
    };
    let bytes = match crate::modules::fetch_verified(&st.cache, &b.digest, st.ranking.public_key.as_ref()).await {
        Ok(b) => b,
        Err(crate::modules::ModuleError::Fetch { digest, source: CacheError::Upstream { status, .. } }) => {
            return json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("module {digest} is not available from the origin (it answered {status})"),
            );
        }
        Err(crate::modules::ModuleError::Fetch { digest, source }) => {
            tracing::warn!(tenant, digest, error = %source, "module fetch failed");
            return json_error(
                StatusCode::BAD_GATEWAY,
                format!("module {digest} could not be fetched: the origin is unavailable"),
            );
        }
        Err(e) => {
            tracing::warn!(tenant, error = %e, "module refused");
            return json_error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        }
    };
    let cache = st.ranking.compiled_cache.clone();
    let compiled = tokio::task::spawn_blocking(move || {
        let (module, _) = crate::guest::GuestModule::sandboxed_cached(&engine, &bytes, limits, cache.as_ref())?;
        module.canary()?;
        Ok::<_, crate::guest::GuestError>(module)
    })
    .await;
    match compiled {
        Ok(Ok(module)) => {
            st.ranking.swap(&tenant, module, format!("origin:{}", b.digest));
            tracing::info!(tenant, digest = b.digest, "module swapped in");
            axum::Json(serde_json::json!({"tenant": tenant, "digest": b.digest})).into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(tenant, digest = b.digest, error = %e, "module refused");
            json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("module {} cannot rank: {e}", b.digest))
        }
        Err(e) => {
            tracing::error!(error = %e, "module check task failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "checking the module failed")
        }
    }
}

async fn purge(State(st): State<Arc<EdgeState>>, body: Bytes) -> Response {
    let b: PurgeBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("expected {{\"surrogate_key\": \"...\"}}: {e}")),
    };
    if b.surrogate_key.is_empty() {
        return json_error(StatusCode::BAD_REQUEST, "surrogate_key is empty");
    }
    let n = st.cache.purge(&b.surrogate_key);
    tracing::info!(key = b.surrogate_key, purged = n, "purge");
    axum::Json(serde_json::json!({ "purged": n })).into_response()
}

async fn feed_route(
    State(st): State<Arc<EdgeState>>,
    call: Option<axum::Extension<FeedCall>>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(axum::Extension(call)) = call else {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, "a route ran without its access guard");
    };
    let ndjson =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/x-ndjson"));
    let parsed = if method == axum::http::Method::POST && !body.is_empty() {
        match serde_json::from_slice::<FeedBody>(&body) {
            Ok(b) => Some(b),
            Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("invalid feed body: {e}")),
        }
    } else {
        None
    };
    let req = match FeedRequest::parse(
        &call.query,
        parsed,
        if ndjson { 3 } else { 0 },
        edgewise_http::now_ms(),
        st.feed.max_clock_skew,
    ) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let start = std::time::Instant::now();
    let (regional_path, personal_path) = feed::paths(&req, &st.feed);
    let mut refined = match (req.refine, personal_path, call.token) {
        (true, Some(path), Some(token)) => {
            let (st2, ctx2, tenant2) = (st.clone(), req.ctx.clone(), req.tenant.clone());
            Some(tokio::spawn(async move {
                feed::frame(&st2.cache, &st2.ranking, &path, Some(&token), "refined", &ctx2, &tenant2).await
            }))
        }
        _ => None,
    };
    let prelim = feed::frame(&st.cache, &st.ranking, &regional_path, None, "preliminary", &req.ctx, &req.tenant).await;
    let k = req.k as usize;
    if ndjson {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(2);
        let shown = req.shown;
        let st2 = st.clone();
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
            let Some(refined) = refined else {
                st2.metrics.feeds.with_label_values(&[if p.is_some() { "preliminary" } else { "unavailable" }]).inc();
                return;
            };
            let (r, answer) = match refined.await {
                Ok(Ok(mut f)) => {
                    feed::merge_into(p.as_ref(), &mut f, shown, k);
                    (serde_json::json!(f), "refined")
                }
                Ok(Err(e)) => (serde_json::json!({"frame": "refined", "error": frame_error(&e)}), "preliminary"),
                Err(e) => (serde_json::json!({"frame": "refined", "error": e.to_string()}), "preliminary"),
            };
            st2.metrics.feeds.with_label_values(&[answer]).inc();
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
            tracing::warn!(error = %e, "no bundle for the feed");
            json_error(StatusCode::SERVICE_UNAVAILABLE, format!("no bundle available: {}", frame_error(&e)))
        }
    }
}

/// A frame's failure as the client sees it: the origin's own answer for a
/// 4xx (an expired token, say), a generic line for an unreachable origin.
fn frame_error(e: &CacheError) -> String {
    match e {
        CacheError::Upstream { status, body } => format!("the origin answered {status}: {body}"),
        CacheError::Origin(_) => "the origin is unavailable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_proxied_paths_pass() {
        for ok in ["/v1/regions/4/bundle", "/v1/models/current", "/v1/bundles/abc123", "/v1/users/7/candidates"] {
            assert_eq!(check_proxy_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "/v1/%2e%2e/metrics",
            "/v1/../metrics",
            "/v1/./regions/4/bundle",
            "/v1/regions/4/../../metrics",
            "/v1/regions//bundle",
            "/v1/regions/%2F/bundle",
            "/v1/regions/a%5cb",
            "/v1/events",
            "/v1/items",
            "/v1/openapi.json",
            "/v1/regions/4/bundle/",
            "/metrics",
        ] {
            assert!(check_proxy_path(bad).is_err(), "{bad} must be refused");
        }
    }

    #[test]
    fn duplicate_query_parameters_are_refused() {
        assert!(strict_query(Some("user=1&user=2")).expect_err("twice").contains("\"user\""));
        let q = strict_query(Some("user=1&k=5")).expect("valid");
        assert_eq!((q["user"].as_str(), q["k"].as_str()), ("1", "5"));
        assert!(strict_query(None).expect("none").is_empty());
    }

    #[test]
    fn personal_paths_name_their_user() {
        assert_eq!(personal_user("/v1/users/42/candidates"), Some(Ok(42)));
        assert!(matches!(personal_user("/v1/users/x/candidates"), Some(Err(_))));
        assert_eq!(personal_user("/v1/regions/1/bundle"), None);
    }
}
