//! The edge's HTTP server: the regional cache in front of the origin.
//!
//! | route | what | who may call it |
//! |---|---|---|
//! | `GET\|POST /v1/feed` | the speculative-then-refined feed ([`crate::feed`]) | anyone for an anonymous feed; with `user=` only that user's token |
//! | `GET /v1/...` | proxied to the origin through the [`crate::cache`]: regional bundles, immutable bundles, models, modules and items are stored as their `Cache-Control` allows | anyone (the origin's read key, if it needs one, is the edge's `origin.api_key`) |
//! | `GET /v1/users/{id}/...` | a user's own data, passed through with their token: never stored, never shared | that user's token, checked here and again at the origin |
//! | `POST /v1/events` | a user's interactions, passed to the origin with their token (never stored); the origin's answer comes back as it is | a user token, checked here (the origin checks that each event is that user's) |
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
//! (`hit`, `miss`, `stale`, `revalidated`), the origin's `Content-Type`,
//! `Cache-Control`, `ETag` and surrogate keys, and the Edgewise headers a
//! client may need (the module signature, the bundle digest, the dropped
//! sources); it answers a matching `If-None-Match` with 304
//! ([`edgewise_http::if_none_match`]).
//!
//! **Browsers.** With `server.cors_origins` set, pages from those origins
//! may call the edge (CORS): `GET` and `POST` with `Authorization`,
//! `Content-Type` and `If-None-Match`, and they can read the validators and
//! the Edgewise headers (`ETag`, `Age`, `X-Edgewise-Cache`, the bundle
//! digest, the feed frame). Preflights are answered before any route guard.
//!
//! **Readiness.** `/readyz` is 503 while the default tenant has no module or
//! any tenant's last [`crate::pool::UNHEALTHY_AFTER`] rankings all failed.
//! The origin's reachability is reported (`"origin": "up" | "down" |
//! "unknown"`) but does not make the edge unready: a dead origin is shared by
//! every edge, and an edge still serves cached and stale bundles
//! (`stale-if-error`); taking all of them out of rotation would only turn a
//! degraded feed into none.
//!
//! This module routes, guards and converts; the work is done below it: the
//! feed ([`crate::feed::Feed`]), module swaps ([`crate::tenants::Tenants`]),
//! the cache. Each handler returns its layer's error as an
//! [`AppError`], which becomes the status and JSON
//! error body.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use edgewise_http::admission::{Admission, AdmissionConfig};
use edgewise_http::auth::{ServiceKeys, UserTokenConfig, UserTokens};
use edgewise_http::serve::ServeOptions;
use edgewise_wire::{FrameKind, headers, media, paths};

use crate::cache::{Cache, CacheError};
use crate::config::EdgeConfig;
use crate::error::AppError;
use crate::feed::{Answer, Delivery, Feed, FeedBody, FeedConfig, FeedRequest};
use crate::metrics::EdgeMetrics;
use crate::tenants::{DEFAULT_TENANT, Tenants};

/// Who may call the server, and its connection and body limits.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Keys accepted on admin routes; empty: the admin routes are disabled.
    pub admin_keys: Vec<String>,
    /// How user tokens are verified (personal feeds, `/v1/users/…`).
    pub user_tokens: UserTokenConfig,
    /// Body limits and the in-flight cap.
    pub admission: AdmissionConfig,
    /// Connection limits: the header-read timeout, the most connections open at once.
    pub serve: ServeOptions,
    /// Web origins allowed to call from a browser (`["*"]`: any); empty: no CORS.
    pub cors_origins: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            admin_keys: Vec::new(),
            user_tokens: UserTokenConfig::default(),
            admission: AdmissionConfig { max_in_flight: 1024, ..AdmissionConfig::default() },
            serve: ServeOptions::default(),
            cors_origins: Vec::new(),
        }
    }
}

impl From<&EdgeConfig> for ServerSettings {
    fn from(cfg: &EdgeConfig) -> Self {
        let (admission, serve) = cfg.http_limits();
        Self {
            admin_keys: cfg.server.admin_keys.clone(),
            user_tokens: cfg.auth.user_tokens.clone(),
            admission,
            serve,
            cors_origins: cfg.server.cors_origins.clone(),
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
    /// `cors_origins` names something that is not a web origin.
    #[error("{0}")]
    Cors(#[from] crate::config::ConfigError),
}

/// The CORS layer for `origins` (`None` when empty).
fn cors_layer(origins: &[String]) -> Result<Option<tower_http::cors::CorsLayer>, crate::config::ConfigError> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return Ok(None);
    }
    crate::config::check_cors_origins(origins)?;
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Result<Vec<HeaderValue>, _> = origins.iter().map(|o| HeaderValue::from_str(o)).collect();
        AllowOrigin::list(list.map_err(|e| crate::config::ConfigError(format!("server.cors_origins: {e}")))?)
    };
    let exposed = [
        header::ETAG,
        header::AGE,
        header::RETRY_AFTER,
        HeaderName::from_static(headers::CACHE),
        HeaderName::from_static(headers::BUNDLE_DIGEST),
        HeaderName::from_static(headers::SOURCES_DROPPED),
        HeaderName::from_static(headers::FEED_FRAME),
        HeaderName::from_static(headers::SIGNATURE),
    ];
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::IF_NONE_MATCH])
            .expose_headers(exposed)
            .max_age(std::time::Duration::from_secs(600)),
    ))
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
    /// The tenants' guest modules.
    pub tenants: Arc<Tenants>,
    /// The feed, over the same cache and tenants.
    pub feed: Arc<Feed>,
    /// Every metric `/metrics` exports.
    pub metrics: EdgeMetrics,
    admission: Admission,
    serve: ServeOptions,
    cors: Option<tower_http::cors::CorsLayer>,
}

impl EdgeState {
    /// Assembles the state and registers every metric.
    pub fn new(
        cache: Cache,
        tenants: Arc<Tenants>,
        feed: FeedConfig,
        settings: ServerSettings,
    ) -> Result<Self, StateError> {
        let metrics = EdgeMetrics::new(&cache.metrics, tenants.metrics())?;
        let feed =
            Arc::new(Feed::new(cache.clone(), tenants.clone(), feed, metrics.feeds.clone(), metrics.kept.clone()));
        Ok(Self {
            cache,
            admin: ServiceKeys::new(&settings.admin_keys, "admin", "server.admin_keys"),
            tokens: UserTokens::new(&settings.user_tokens)?,
            tenants,
            feed,
            admission: Admission::new(settings.admission, metrics.http.clone()),
            serve: settings.serve,
            cors: cors_layer(&settings.cors_origins)?,
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
    /// A user token (`POST /v1/events`).
    User,
}

/// A request the guard admitted with a verified user token, passed on as is.
#[derive(Debug, Clone)]
struct UserCall {
    token: String,
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
        .route(paths::ADMIN_PURGE, post(purge).route_layer(g(Access::Admin)))
        .route(&paths::admin_module("{tenant}"), put(put_module).route_layer(g(Access::Admin)))
        .route(paths::FEED, get(feed_route).post(feed_route).route_layer(g(Access::Feed)))
        .route(paths::EVENTS, post(events).route_layer(g(Access::User)))
        .route("/v1/{*rest}", get(proxy).route_layer(g(Access::Proxy)))
        .layer(axum::extract::DefaultBodyLimit::max(state.admission.config().max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .fallback(|| async { AppError::NotFound("no such route".into()) });
    let router = Router::new()
        .route(paths::LIVEZ, get(|| async { "ok" }))
        .route(paths::READYZ, get(readyz))
        .route(
            paths::METRICS,
            get(|State(st): State<Arc<EdgeState>>| async move {
                ([(header::CONTENT_TYPE, media::PROMETHEUS)], st.metrics.render())
            }),
        )
        .merge(api);
    // Outermost, so a preflight is answered before any guard asks for a token.
    let cors = state.cors.clone();
    let router = router.with_state(state);
    match cors {
        Some(c) => router.layer(c),
        None => router,
    }
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
                Err(e) => return e.into_response(),
            };
            let token = match query.get("user").map(|u| (u, u.parse::<u64>())) {
                None => None,
                Some((u, Err(_))) => {
                    return AppError::BadRequest(format!("user={u:?} is not a user id")).into_response();
                }
                Some((_, Ok(user))) => match st.tokens.require_user(req.headers(), user) {
                    Ok(_) => bearer.clone(),
                    Err(d) => return st.admission.deny(d),
                },
            };
            req.extensions_mut().insert(FeedCall { query, token });
        }
        Access::User => match st.tokens.from_headers(req.headers()) {
            Ok(_) => {
                let token = bearer.clone().unwrap_or_default();
                req.extensions_mut().insert(UserCall { token });
            }
            Err(d) => return st.admission.deny(d),
        },
        Access::Proxy => {
            let path = req.uri().path();
            if let Err(e) = check_proxy_path(path) {
                return e.into_response();
            }
            let target = req.uri().path_and_query().map_or_else(|| path.to_string(), ToString::to_string);
            let token = match personal_user(path) {
                None => None,
                Some(Err(e)) => return e.into_response(),
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

/// Refuses any path a proxy could be tricked with: only `[A-Za-z0-9._-]`
/// segments (so no percent-encoding: `%2e%2e`, `%2f`, `%5c`), no empty, `.`
/// or `..` segment, and one of the [`paths::PROXIED`] prefixes, so that
/// writes, `/metrics` and the like are the origin's business alone.
fn check_proxy_path(path: &str) -> Result<(), AppError> {
    let refuse = || Err(AppError::NotFound(format!("{path:?} is not a path this edge proxies")));
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
    if paths::PROXIED.iter().any(|p| path.starts_with(p)) { Ok(()) } else { refuse() }
}

/// For a path under `/v1/users/{id}/`, the user it belongs to.
fn personal_user(path: &str) -> Option<Result<u64, AppError>> {
    let rest = path.strip_prefix(edgewise_wire::paths::USERS)?;
    let id = rest.split('/').next().unwrap_or_default();
    Some(
        id.parse::<u64>()
            .map_err(|_| AppError::BadRequest(format!("user id {id:?} is not an unsigned 64-bit integer"))),
    )
}

/// Parses a query string, refusing a parameter given twice (`user=1&user=2`
/// must not mean either).
fn strict_query(query: Option<&str>) -> Result<HashMap<String, String>, AppError> {
    let pairs: Vec<(String, String)> = match query {
        None | Some("") => Vec::new(),
        Some(q) => {
            serde_urlencoded::from_str(q).map_err(|e| AppError::BadRequest(format!("invalid query string: {e}")))?
        }
    };
    let mut map = HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if map.contains_key(&k) {
            return Err(AppError::BadRequest(format!("the query parameter {k:?} is given more than once")));
        }
        map.insert(k, v);
    }
    Ok(map)
}

async fn readyz(State(st): State<Arc<EdgeState>>) -> Response {
    let tenants = st.tenants.tenant_health();
    let has_default = tenants.iter().any(|t| t.tenant == DEFAULT_TENANT);
    let unhealthy: Vec<&str> = tenants.iter().filter(|t| !t.can_rank).map(|t| t.tenant.as_str()).collect();
    let ready = has_default && unhealthy.is_empty();
    let origin = match st.cache.origin_up() {
        None => "unknown",
        Some(true) => "up",
        Some(false) => "down",
    };
    let body = serde_json::json!({
        "ready": ready,
        "tenants": tenants.iter()
            .map(|t| (t.tenant.clone(), serde_json::json!({"module": t.source, "can_rank": t.can_rank})))
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

/// The answer to a request the origin could not serve: its own client error,
/// or a 503 whose detail (which names the origin's address) goes to the log,
/// not to the client.
fn origin_failure(e: CacheError, what: &str) -> AppError {
    match e {
        CacheError::Upstream { status, body } => AppError::Upstream { status, body },
        CacheError::Origin(detail) => {
            tracing::warn!(what, error = %detail, "origin unavailable");
            AppError::Unavailable(format!("the origin is unavailable and nothing usable is cached for {what}"))
        }
    }
}

/// The origin's end-to-end headers a proxied response passes on. The rest
/// (`Date`, `Server`, `Vary`, ...) describe the origin's answer, not the edge's.
const PASSED_ON: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    HeaderName::from_static(headers::SIGNATURE),
    HeaderName::from_static(headers::BUNDLE_DIGEST),
    HeaderName::from_static(headers::SOURCES_DROPPED),
];

async fn proxy(
    State(st): State<Arc<EdgeState>>,
    call: Option<axum::Extension<ProxyCall>>,
    req: Request,
) -> Result<Response, AppError> {
    let Some(axum::Extension(call)) = call else {
        return Err(AppError::Internal {
            public: "a route ran without its access guard",
            detail: req.uri().to_string(),
        });
    };
    let served = match &call.token {
        Some(t) => st.cache.pass_through(&call.target, t).await,
        None => st.cache.get(&call.target).await,
    };
    let served = served.map_err(|e| origin_failure(e, req.uri().path()))?;
    let r = &served.response;
    let mut out = HeaderMap::new();
    let mut set = |name: HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            out.insert(name, v);
        }
    };
    set(header::AGE, &served.age_secs.to_string());
    set(HeaderName::from_static(headers::CACHE), served.status.as_str());
    for name in PASSED_ON {
        if let Some(v) = r.header(name.as_str()) {
            set(name, v);
        }
    }
    if !r.surrogate_keys.is_empty() {
        set(HeaderName::from_static(headers::SURROGATE_KEY), &r.surrogate_keys.join(" "));
    }
    if let Some(etag) = r.etag() {
        set(header::ETAG, etag);
        if edgewise_http::if_none_match(req.headers(), etag) {
            return Ok((StatusCode::NOT_MODIFIED, out).into_response());
        }
    }
    Ok((StatusCode::OK, out, r.body.clone()).into_response())
}

/// Passes a user's events to the origin with their token. The origin checks
/// each event's user against the token and answers per event; its status
/// and body come back unchanged (a 5xx as 502, so a client retries).
async fn events(
    State(st): State<Arc<EdgeState>>,
    call: Option<axum::Extension<UserCall>>,
    request_headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let Some(axum::Extension(call)) = call else {
        return Err(AppError::Internal { public: "a route ran without its access guard", detail: "events".into() });
    };
    let kind = request_headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let (status, kind, body) = st
        .cache
        .post_through(paths::EVENTS, &call.token, kind, body)
        .await
        .map_err(|e| origin_failure(e, paths::EVENTS))?;
    let status = match StatusCode::from_u16(status) {
        Ok(s) if !s.is_server_error() => s,
        _ => StatusCode::BAD_GATEWAY,
    };
    let mut out = HeaderMap::new();
    if let Some(v) = kind.and_then(|k| HeaderValue::from_str(&k).ok()) {
        out.insert(header::CONTENT_TYPE, v);
    }
    Ok((status, out, body).into_response())
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

/// Replaces a tenant's module with one fetched from the origin by digest
/// ([`Tenants::install_from_origin`]). In-flight requests finish on the old
/// module; a module that fails any step is refused with 422 and the old one
/// keeps serving.
async fn put_module(
    State(st): State<Arc<EdgeState>>,
    Path(tenant): Path<String>,
    body: Bytes,
) -> Result<Response, AppError> {
    if tenant.is_empty() || tenant.len() > 64 {
        return Err(AppError::BadRequest("tenant must be 1 to 64 characters".into()));
    }
    let b: ModuleBody = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("expected {{\"digest\": \"<sha256 hex>\"}}: {e}")))?;
    let digest = crate::modules::parse_digest(&b.digest)?;
    if let Err(e) = st.tenants.install_from_origin(&st.cache, &tenant, digest).await {
        tracing::warn!(tenant, %digest, error = %e, "module refused");
        return Err(e.into());
    }
    tracing::info!(tenant, %digest, "module swapped in");
    Ok(axum::Json(serde_json::json!({"tenant": tenant, "digest": digest})).into_response())
}

async fn purge(State(st): State<Arc<EdgeState>>, body: Bytes) -> Result<Response, AppError> {
    let b: PurgeBody = serde_json::from_slice(&body)
        .map_err(|e| AppError::BadRequest(format!("expected {{\"surrogate_key\": \"...\"}}: {e}")))?;
    if b.surrogate_key.is_empty() {
        return Err(AppError::BadRequest("surrogate_key is empty".into()));
    }
    let n = st.cache.purge(&b.surrogate_key);
    tracing::info!(key = b.surrogate_key, purged = n, "purge");
    Ok(axum::Json(serde_json::json!({ "purged": n })).into_response())
}

async fn feed_route(
    State(st): State<Arc<EdgeState>>,
    call: Option<axum::Extension<FeedCall>>,
    method: axum::http::Method,
    request_headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AppError> {
    let Some(axum::Extension(call)) = call else {
        return Err(AppError::Internal { public: "a route ran without its access guard", detail: "feed".into() });
    };
    let ndjson =
        request_headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(media::NDJSON));
    let delivery = if ndjson { Delivery::Ndjson } else { Delivery::Json };
    let parsed =
        if method == axum::http::Method::POST && !body.is_empty() { Some(FeedBody::parse(&body)?) } else { None };
    let req = FeedRequest::parse(
        &call.query,
        parsed,
        delivery.default_shown(),
        edgewise_http::now_ms(),
        st.feed.config().max_clock_skew,
    )?;
    Ok(match st.feed.answer(req, call.token, delivery).await? {
        Answer::Stream(lines) => ([(header::CONTENT_TYPE, media::NDJSON)], Body::from_stream(lines)).into_response(),
        Answer::Frame(f) if f.frame == FrameKind::Preliminary => {
            ([(HeaderName::from_static(headers::FEED_FRAME), FrameKind::Preliminary.as_str())], axum::Json(f))
                .into_response()
        }
        Answer::Frame(f) => axum::Json(f).into_response(),
    })
}

// How each lower layer's error is answered: the layers below know nothing of
// HTTP statuses; this is the one place that maps them.

impl From<crate::feed::FeedError> for AppError {
    fn from(e: crate::feed::FeedError) -> Self {
        match e {
            crate::feed::FeedError::BadRequest(m) => AppError::BadRequest(m),
            e @ crate::feed::FeedError::Unavailable(_) => AppError::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::modules::ModuleError> for AppError {
    /// A module the origin does not have, or one that fails a check, is the
    /// caller's problem (422); an origin that cannot be reached is not (502).
    fn from(e: crate::modules::ModuleError) -> Self {
        match e {
            crate::modules::ModuleError::Fetch {
                digest,
                source: crate::cache::CacheError::Upstream { status, .. },
            } => AppError::Unprocessable(format!(
                "module {digest} is not available from the origin (it answered {status})"
            )),
            crate::modules::ModuleError::Fetch { digest, source: crate::cache::CacheError::Origin(_) } => {
                AppError::BadGateway(format!("module {digest} could not be fetched: the origin is unavailable"))
            }
            other => AppError::Unprocessable(other.to_string()),
        }
    }
}

impl From<crate::tenants::SwapError> for AppError {
    fn from(e: crate::tenants::SwapError) -> Self {
        match e {
            crate::tenants::SwapError::NoSandbox => AppError::Conflict(e.to_string()),
            crate::tenants::SwapError::Module(m) => m.into(),
            e @ crate::tenants::SwapError::CannotRank { .. } => AppError::Unprocessable(e.to_string()),
            crate::tenants::SwapError::Task(detail) => {
                AppError::Internal { public: "checking the module failed", detail }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_proxied_paths_pass() {
        for ok in ["/v1/regions/4/bundle", "/v1/models/current", "/v1/bundles/abc123", "/v1/users/7/candidates"] {
            assert!(check_proxy_path(ok).is_ok(), "{ok}");
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
            let e = check_proxy_path(bad).expect_err(bad);
            assert_eq!(e.status(), StatusCode::NOT_FOUND, "{bad} must be refused");
        }
    }

    #[test]
    fn duplicate_query_parameters_are_refused() {
        assert!(strict_query(Some("user=1&user=2")).expect_err("twice").to_string().contains("\"user\""));
        let q = strict_query(Some("user=1&k=5")).expect("valid");
        assert_eq!((q["user"].as_str(), q["k"].as_str()), ("1", "5"));
        assert!(strict_query(None).expect("none").is_empty());
    }

    #[test]
    fn personal_paths_name_their_user() {
        assert!(matches!(personal_user("/v1/users/42/candidates"), Some(Ok(42))));
        assert!(matches!(personal_user("/v1/users/x/candidates"), Some(Err(AppError::BadRequest(_)))));
        assert!(personal_user("/v1/regions/1/bundle").is_none());
    }
}
