//! # edgewise-www
//!
//! The server of the Edgewise demo web app (`cargo xtask demo` starts it
//! beside the origin and an edge). It plays the part an application's own
//! backend plays in a real deployment; the Edgewise API itself stays at the
//! edge, which the page calls across origins (the edge's `server.cors_origins`).
//!
//! | route | what |
//! |---|---|
//! | `GET /…` | the page, from `www/static/` |
//! | `GET /pkg/edgewise/…` | the npm package `edgewise`, as built (the page imports it through an import map) |
//! | `GET /demo/config.json` | the edge's URL, the users the picker offers, the regions, `k` and the candidates per bundle |
//! | `GET /demo/catalogue.json` | every movie's title, year and genres (the page shows them; bundles carry ids) |
//! | `POST /demo/sign-in` | `{"user": 42}` → a short-lived user token, minted with the demo's HS256 secret |
//!
//! The sign-in route hands any MovieLens user's token to whoever asks: it is
//! the demo's stand-in for a login, so the server listens on loopback only
//! ([`check_listen`]). Its body is JSON of at most [`MAX_SIGN_IN_BYTES`], read
//! within [`BODY_READ_TIMEOUT`]; header reads time out in the shared
//! connection loop ([`edgewise_http::serve`]).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use edgewise_http::auth::{TokenSpec, mint_hs256};
use edgewise_http::json_error;
use edgewise_lab::movielens::{Dataset, GENRES, REGION_OUTSIDE_US};
use serde::Deserialize;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

/// Largest sign-in body accepted (413 beyond).
pub const MAX_SIGN_IN_BYTES: usize = 1024;
/// How long a client has to send a request body.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Lifetime of the tokens the sign-in route mints.
pub const TOKEN_TTL_S: u64 = 900;
/// The users the picker offers by default: a spread of regions, ages and tastes.
pub const DEFAULT_USERS: [u64; 6] = [1, 7, 42, 276, 405, 655];
/// Shortest HS256 secret accepted, in bytes (the origin's and the edge's rule).
pub const MIN_SECRET_BYTES: usize = 32;

/// The US postal regions (a zip code's first digit), and the rest of the world.
pub const REGION_NAMES: [&str; 11] = [
    "New England, New Jersey, Puerto Rico",
    "New York, Pennsylvania, Delaware",
    "Mid-Atlantic and the Carolinas",
    "Southeast",
    "Great Lakes: Indiana, Kentucky, Michigan, Ohio",
    "Upper Midwest",
    "Illinois, Missouri, Kansas, Nebraska",
    "South Central: Texas, Oklahoma, Louisiana, Arkansas",
    "Mountain West",
    "Pacific: California, Oregon, Washington, Alaska, Hawaii",
    "Outside the US",
];

/// Why the demo cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WwwError {
    /// The listen address is not a loopback one.
    #[error(
        "{0} is not a loopback address: the demo's sign-in route hands out any user's token, so it listens on 127.0.0.1 or ::1 only"
    )]
    NotLoopback(SocketAddr),
    /// The token secret is too short.
    #[error(
        "the token secret has {0} bytes; HS256 secrets need at least {MIN_SECRET_BYTES} (the origin and the edge refuse shorter ones)"
    )]
    ShortSecret(usize),
    /// A user the picker should offer is not in the data.
    #[error("user {0} is not a MovieLens-100K user (ids 1 to 943)")]
    UnknownUser(u64),
    /// A folder to serve is missing.
    #[error("{what} {path} is not a folder{hint}")]
    MissingDir {
        /// What it should hold.
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// How to make it.
        hint: &'static str,
    },
    /// The edge URL does not parse.
    #[error("--edge {0:?} is not an http(s) URL of the form scheme://host[:port]")]
    BadEdge(String),
    /// The page cannot be read.
    #[error("{path}: {source}")]
    Page {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Refuses a non-loopback listen address ([`WwwError::NotLoopback`]).
pub fn check_listen(addr: SocketAddr) -> Result<(), WwwError> {
    if addr.ip().is_loopback() { Ok(()) } else { Err(WwwError::NotLoopback(addr)) }
}

/// What the demo serves besides files.
#[derive(Debug)]
pub struct Demo {
    edge: String,
    config: Bytes,
    catalogue: Bytes,
    users: HashSet<u64>,
    secret: Vec<u8>,
}

/// Settings of [`Demo::new`].
#[derive(Debug, Clone)]
pub struct DemoSettings {
    /// The edge's base URL, as the page calls it.
    pub edge: String,
    /// The users the picker offers.
    pub users: Vec<u64>,
    /// Items per feed.
    pub k: u32,
    /// Candidates per bundle.
    pub candidates: u32,
    /// The HS256 secret the origin and the edge verify user tokens with.
    pub secret: Vec<u8>,
}

impl Demo {
    /// The config and catalogue documents, built once from the data.
    pub fn new(data: &Dataset, s: DemoSettings) -> Result<Self, WwwError> {
        if s.secret.len() < MIN_SECRET_BYTES {
            return Err(WwwError::ShortSecret(s.secret.len()));
        }
        let edge = normalise_edge(&s.edge)?;
        let mut ratings = std::collections::HashMap::<u64, u32>::new();
        for r in &data.ratings {
            *ratings.entry(r.user).or_default() += 1;
        }
        let mut users = Vec::new();
        for id in &s.users {
            let u = data.users.iter().find(|u| u.id == *id).ok_or(WwwError::UnknownUser(*id))?;
            users.push(serde_json::json!({
                "id": u.id, "age": u.age, "gender": u.gender.to_string(), "occupation": u.occupation,
                "region": u.region, "ratings": ratings.get(&u.id).copied().unwrap_or(0),
            }));
        }
        debug_assert_eq!(usize::from(REGION_OUTSIDE_US) + 1, REGION_NAMES.len());
        let regions: Vec<_> =
            REGION_NAMES.iter().enumerate().map(|(id, name)| serde_json::json!({"id": id, "name": name})).collect();
        let config = serde_json::json!({
            "edge": &edge, "k": s.k, "candidates": s.candidates, "users": users, "regions": regions,
        });
        let items: serde_json::Map<String, serde_json::Value> = data
            .movies
            .iter()
            .map(|m| {
                let genres: Vec<&str> = m.genres.iter().filter_map(|g| GENRES.get(*g as usize).copied()).collect();
                (m.id.to_string(), serde_json::json!({"title": m.title, "year": m.year, "genres": genres}))
            })
            .collect();
        let catalogue = serde_json::json!({ "items": items });
        Ok(Self {
            edge,
            config: Bytes::from(config.to_string()),
            catalogue: Bytes::from(catalogue.to_string()),
            users: data.users.iter().map(|u| u.id).collect(),
            secret: s.secret,
        })
    }
}

/// The edge URL with one trailing slash; only http and https.
/// `scheme://host[:port]/` only: no path, query or fragment, and nothing that
/// could break out of the Content-Security-Policy it is written into.
fn normalise_edge(edge: &str) -> Result<String, WwwError> {
    let e = edge.strip_suffix('/').unwrap_or(edge);
    let rest = e.strip_prefix("http://").or_else(|| e.strip_prefix("https://"));
    let host_ok = |h: &str| {
        !h.is_empty() && h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    };
    match rest {
        Some(host) if host_ok(host) => Ok(format!("{e}/")),
        _ => Err(WwwError::BadEdge(edge.to_string())),
    }
}

/// A folder to serve, checked to exist.
pub fn existing_dir(path: &Path, what: &'static str, hint: &'static str) -> Result<PathBuf, WwwError> {
    if path.is_dir() { Ok(path.to_path_buf()) } else { Err(WwwError::MissingDir { what, path: path.into(), hint }) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    user: u64,
}

/// `POST /demo/sign-in`: `{"user": N}` → `{"user", "token", "expiresInS"}`.
async fn sign_in(State(demo): State<Arc<Demo>>, headers: axum::http::HeaderMap, body: axum::body::Body) -> Response {
    // Only the page itself may sign in: a browser names the calling page's
    // origin (and, in current browsers, whether it is this site).
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin.is_some_and(|o| o != format!("http://{host}")) {
        return json_error(StatusCode::FORBIDDEN, "sign-in is for the demo page itself, not for other origins");
    }
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|s| s != "same-origin") {
        return json_error(StatusCode::FORBIDDEN, format!("sign-in from a {} request is refused", site.unwrap_or("?")));
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !json {
        return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the sign-in body must be application/json");
    }
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        json_error(StatusCode::PAYLOAD_TOO_LARGE, format!("the sign-in body is larger than {MAX_SIGN_IN_BYTES} bytes"))
    };
    if declared.is_some_and(|n| n > MAX_SIGN_IN_BYTES as u64) {
        return too_large();
    }
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, MAX_SIGN_IN_BYTES)).await {
        Err(_) => {
            return json_error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the sign-in body did not arrive within {} s", BODY_READ_TIMEOUT.as_secs()),
            );
        }
        Ok(Err(_)) => return too_large(),
        Ok(Ok(b)) => b,
    };
    let req: SignIn = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, format!("the sign-in body must be {{\"user\": N}}: {e}")),
    };
    if !demo.users.contains(&req.user) {
        return json_error(StatusCode::NOT_FOUND, format!("user {} is not a MovieLens-100K user", req.user));
    }
    match mint_hs256(&demo.secret, &TokenSpec::new(req.user, TOKEN_TTL_S)) {
        Ok(token) => {
            let body = serde_json::json!({"user": req.user, "token": token, "expiresInS": TOKEN_TTL_S});
            ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "minting a token failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "the token could not be minted")
        }
    }
}

fn json_doc(bytes: &Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json"), (header::CACHE_CONTROL, "no-cache")], bytes.clone()).into_response()
}

/// The page's Content-Security-Policy: nothing from anywhere but this server
/// and the edge (so a CDN asset could not slip in), wasm allowed to compile,
/// and of inline scripts only those the page ships (`hashes`: the import map).
fn csp(edge: &str, hashes: &[String]) -> String {
    let edge = edge.trim_end_matches('/');
    let inline: String = hashes.iter().map(|h| format!(" 'sha256-{h}'")).collect();
    format!(
        "default-src 'self'; script-src 'self'{inline} 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self' {edge}; worker-src 'self'; object-src 'none'; base-uri 'none'; \
         frame-ancestors 'none'"
    )
}

/// The base64 sha256 of each inline `<script>` (one without `src`) in `html`.
fn inline_script_hashes(html: &str) -> Vec<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find("<script") {
        let Some(open_end) = rest[at..].find('>').map(|i| at + i + 1) else { break };
        let Some(close) = rest[open_end..].find("</script>").map(|i| open_end + i) else { break };
        if !rest[at..open_end].contains("src=") {
            let digest = sha2::Sha256::digest(&rest.as_bytes()[open_end..close]);
            out.push(base64::engine::general_purpose::STANDARD.encode(digest));
        }
        rest = &rest[close + "</script>".len()..];
    }
    out
}

/// Answers 421 to a request whose `Host` is not this server's loopback
/// address: a hostile page that rebinds its own name to 127.0.0.1 cannot
/// reach the sign-in route through it.
async fn loopback_host(
    State(hosts): State<Arc<Vec<String>>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if hosts.iter().any(|h| h == host) {
        next.run(req).await
    } else {
        json_error(StatusCode::MISDIRECTED_REQUEST, format!("this demo answers to {} only", hosts.join(", ")))
    }
}

/// The router for a server on loopback port `port`: files from `static_dir`
/// at `/` and from `package_dir` at `/pkg/edgewise/`, and the demo's routes.
pub fn app(demo: Arc<Demo>, static_dir: &Path, package_dir: &Path, port: u16) -> Result<Router, WwwError> {
    let index = static_dir.join("index.html");
    let html = std::fs::read_to_string(&index).map_err(|source| WwwError::Page { path: index.clone(), source })?;
    let policy = HeaderValue::from_str(&csp(&demo.edge, &inline_script_hashes(&html)))
        .map_err(|_| WwwError::BadEdge(demo.edge.clone()))?;
    let hosts = Arc::new(vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")]);
    let files = ServeDir::new(static_dir).append_index_html_on_directories(true);
    Ok(Router::new()
        .route("/demo/config.json", get(|State(d): State<Arc<Demo>>| async move { json_doc(&d.config) }))
        .route("/demo/catalogue.json", get(|State(d): State<Arc<Demo>>| async move { json_doc(&d.catalogue) }))
        .route("/demo/sign-in", post(sign_in))
        .nest_service("/pkg/edgewise", ServeDir::new(package_dir))
        .fallback_service(files)
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, policy))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(axum::middleware::from_fn_with_state(hosts, loopback_host))
        .with_state(demo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_http_urls() {
        assert!(check_listen("127.0.0.1:8080".parse().expect("addr")).is_ok());
        assert!(check_listen("[::1]:8080".parse().expect("addr")).is_ok());
        assert!(matches!(check_listen("0.0.0.0:8080".parse().expect("addr")), Err(WwwError::NotLoopback(_))));
        assert_eq!(normalise_edge("http://127.0.0.1:8081").ok().as_deref(), Some("http://127.0.0.1:8081/"));
        assert_eq!(normalise_edge("https://edge.example/").ok().as_deref(), Some("https://edge.example/"));
        for bad in ["ftp://x", "http://", "127.0.0.1:8081", "http://a b"] {
            assert!(matches!(normalise_edge(bad), Err(WwwError::BadEdge(_))), "{bad}");
        }
    }

    #[test]
    fn the_policy_names_the_edge_and_the_pages_own_inline_scripts_only() {
        let html = r#"<script type="importmap">{"imports":{}}</script><script type="module" src="app.js"></script>"#;
        let hashes = inline_script_hashes(html);
        assert_eq!(hashes.len(), 1, "the import map, not the external script");
        let p = csp("http://127.0.0.1:9/", &hashes);
        assert!(p.contains("connect-src 'self' http://127.0.0.1:9;"), "{p}");
        assert!(p.contains(&format!("script-src 'self' 'sha256-{}' 'wasm-unsafe-eval';", hashes[0])), "{p}");
        assert!(!p.contains("script-src 'self' 'unsafe-inline'"), "no inline script but the page's own: {p}");
        assert!(!p.contains("https:"), "no scheme-wide source: {p}");
        for bad in ["http://a;script-src *", "http://a/path", "http://a?q", "http://a#f", "http://a'b"] {
            assert!(normalise_edge(bad).is_err(), "{bad}");
        }
    }
}
