//! The regional cache over real sockets: a scripted origin (axum on
//! 127.0.0.1) that counts its requests, and the edge server in front of it.
//! Each HTTP caching rule has its own test.
//!
//! Entries age by a [`ManualClock`] the tests advance, never by sleeping; an
//! origin request the test needs in flight is held at the origin's gate
//! ([`Script::hold`]) until the test lets it go, so no assertion depends on
//! how fast this machine is.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use edgewise_edge::cache::Cache;
use edgewise_edge::clock::ManualClock;
use edgewise_edge::server::{EdgeState, ServerSettings};
use edgewise_edge::tenants::Tenants;
use edgewise_http::auth::{TokenSpec, UserTokenConfig, mint_hs256};

/// The user-token secret the edge is configured with.
const SECRET: &str = "cache-test-secret-of-32-bytes-at-least";

fn token(user: u64) -> String {
    mint_hs256(SECRET.as_bytes(), &TokenSpec::new(user, 300)).expect("mint")
}

/// What the scripted origin answers.
struct Script {
    cache_control: Mutex<String>,
    surrogate: Mutex<String>,
    delay_ms: AtomicU64,
    /// Open (`true`): requests are answered; closed: they wait at the gate.
    gate: tokio::sync::watch::Sender<bool>,
    body_bytes: AtomicUsize,
    requests: AtomicU64,
    /// Every path the origin was asked for, with the `Authorization` it carried.
    seen: Mutex<Vec<(String, Option<String>)>>,
    conditional: AtomicU64,
    not_modified: AtomicU64,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            cache_control: Mutex::default(),
            surrogate: Mutex::default(),
            delay_ms: AtomicU64::default(),
            gate: tokio::sync::watch::Sender::new(true),
            body_bytes: AtomicUsize::default(),
            requests: AtomicU64::default(),
            seen: Mutex::default(),
            conditional: AtomicU64::default(),
            not_modified: AtomicU64::default(),
        }
    }
}

impl Script {
    /// Holds every origin request from now on at the gate.
    fn hold(&self) {
        self.gate.send_replace(false);
    }

    /// Lets the held requests (and later ones) through.
    fn release(&self) {
        self.gate.send_replace(true);
    }
}

async fn origin_handler(State(s): State<Arc<Script>>, req: Request) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let mut gate = s.gate.subscribe();
    let _ = gate.wait_for(|open| *open).await;
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let path = req.uri().path().to_string();
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    s.seen.lock().expect("lock").push((path.clone(), auth));
    let etag = format!("\"{}\"", path.len());
    let mut h = HeaderMap::new();
    let cc = s.cache_control.lock().expect("lock").clone();
    h.insert("cache-control", HeaderValue::from_str(&cc).expect("header"));
    h.insert("etag", HeaderValue::from_str(&etag).expect("header"));
    h.insert("content-type", HeaderValue::from_static("application/vnd.edgewise.bundle"));
    let sk = s.surrogate.lock().expect("lock").clone();
    if !sk.is_empty() {
        h.insert("surrogate-key", HeaderValue::from_str(&sk).expect("header"));
    }
    if let Some(inm) = req.headers().get("if-none-match") {
        s.conditional.fetch_add(1, Ordering::SeqCst);
        if inm.to_str().ok() == Some(etag.as_str()) {
            s.not_modified.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::NOT_MODIFIED, h).into_response();
        }
    }
    let n = s.body_bytes.load(Ordering::SeqCst);
    let mut body = format!("body of {path}").into_bytes();
    body.resize(body.len().max(n), b'.');
    (StatusCode::OK, h, body).into_response()
}

struct Setup {
    script: Arc<Script>,
    origin_task: tokio::task::JoinHandle<()>,
    edge: String,
    cache: Cache,
    clock: Arc<ManualClock>,
    client: reqwest::Client,
}

fn settings() -> ServerSettings {
    ServerSettings {
        user_tokens: UserTokenConfig { hmac_secrets: vec![SECRET.into()], ..UserTokenConfig::default() },
        ..ServerSettings::default()
    }
}

async fn setup(cache_control: &str, cache_bytes: u64, admin_keys: Vec<String>) -> Setup {
    setup_with(cache_control, cache_bytes, ServerSettings { admin_keys, ..settings() }).await
}

async fn setup_with(cache_control: &str, cache_bytes: u64, limits: ServerSettings) -> Setup {
    setup_full(cache_control, cache_bytes, limits, None).await
}

async fn setup_full(
    cache_control: &str,
    cache_bytes: u64,
    limits: ServerSettings,
    disk: Option<Arc<edgewise_edge::disk::DiskStore>>,
) -> Setup {
    let script = Arc::new(Script::default());
    *script.cache_control.lock().expect("lock") = cache_control.to_string();
    let origin = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin_url = format!("http://{}", origin.local_addr().expect("addr"));
    let router =
        axum::Router::new().route("/v1/{*rest}", axum::routing::get(origin_handler)).with_state(script.clone());
    let origin_task = tokio::spawn(async move {
        let _ = axum::serve(origin, router).await;
    });
    let clock = Arc::new(ManualClock::new());
    let mut cache =
        Cache::new(&origin_url, cache_bytes, Duration::from_secs(2)).expect("cache").with_clock(clock.clone());
    if let Some(d) = disk {
        cache = cache.with_disk(d);
    }
    let tenants = Arc::new(Tenants::builder().build().expect("metrics"));
    let state = Arc::new(
        EdgeState::new(cache.clone(), tenants, edgewise_edge::feed::FeedConfig::default(), limits).expect("state"),
    );
    let edge = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let edge_url = format!("http://{}", edge.local_addr().expect("addr"));
    tokio::spawn(edgewise_edge::server::serve(state, edge, std::future::pending()));
    Setup { script, origin_task, edge: edge_url, cache, clock, client: reqwest::Client::new() }
}

/// Polls `done` every 10 ms until it holds; panics after 30 s, naming `what`.
/// For events that happen in the background (a revalidation, a connection
/// cut off); the bound only matters when the event never comes.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Setup {
    async fn get(&self, path: &str) -> (StatusCode, String, String, Option<u64>) {
        self.get_as(path, None).await
    }
    async fn get_as(&self, path: &str, token: Option<&str>) -> (StatusCode, String, String, Option<u64>) {
        let mut r = self.client.get(format!("{}{path}", self.edge));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.expect("edge answers");
        let status = r.status();
        let cache = r.headers().get("x-edgewise-cache").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let age = r.headers().get("age").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let body = r.text().await.expect("body");
        (status, cache, body, age)
    }
    fn origin_requests(&self) -> u64 {
        self.script.requests.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn a_fresh_entry_is_a_hit_with_its_age() {
    let s = setup("public, max-age=0, s-maxage=60", 1 << 20, vec![]).await;
    let (st, how, body, _) = s.get("/v1/regions/4/bundle").await;
    assert_eq!((st, how.as_str(), body.as_str()), (StatusCode::OK, "miss", "body of /v1/regions/4/bundle"));
    s.clock.advance(Duration::from_millis(1100));
    let (st, how, body2, age) = s.get("/v1/regions/4/bundle").await;
    assert_eq!((st, how.as_str()), (StatusCode::OK, "hit"), "s-maxage, not max-age=0, rules a shared cache");
    assert_eq!(body2, body);
    assert_eq!(age, Some(1), "Age counts the time in the cache");
    assert_eq!(s.origin_requests(), 1);
}

#[tokio::test]
async fn a_stale_entry_is_served_while_one_request_revalidates() {
    let s = setup("public, s-maxage=1, stale-while-revalidate=30", 1 << 20, vec![]).await;
    s.get("/v1/regions/1/bundle").await;
    s.clock.advance(Duration::from_millis(1100));
    // The origin holds every request until released: a stale copy that waited
    // for the revalidation would never arrive (and the timeout would say so).
    s.script.hold();
    let stale = tokio::time::timeout(Duration::from_secs(30), s.get("/v1/regions/1/bundle")).await;
    let (st, how, ..) = stale.expect("the stale copy does not wait for the origin");
    assert_eq!((st, how.as_str()), (StatusCode::OK, "stale"));
    let (_, how2, ..) = s.get("/v1/regions/1/bundle").await;
    assert_eq!(how2, "stale", "still stale while the one revalidation runs");
    s.script.release();
    eventually("the background revalidation", || async { s.get("/v1/regions/1/bundle").await.1 == "hit" }).await;
    assert_eq!(s.origin_requests(), 2, "one background revalidation for both stale requests");
    assert_eq!(s.script.conditional.load(Ordering::SeqCst), 1, "the revalidation is conditional (If-None-Match)");
    let (_, how3, ..) = s.get("/v1/regions/1/bundle").await;
    assert_eq!(how3, "hit", "fresh again after the revalidation");
}

#[tokio::test]
async fn stale_if_error_covers_a_stopped_origin_and_nothing_else() {
    let s = setup("public, s-maxage=1, stale-if-error=60", 1 << 20, vec![]).await;
    s.get("/v1/regions/2/bundle").await;
    *s.script.cache_control.lock().expect("lock") = "public, s-maxage=1".into();
    s.get("/v1/regions/3/bundle").await;
    s.origin_task.abort();
    s.clock.advance(Duration::from_millis(1100));
    let (st, how, body, _) = s.get("/v1/regions/2/bundle").await;
    assert_eq!((st, how.as_str(), body.as_str()), (StatusCode::OK, "stale", "body of /v1/regions/2/bundle"));
    let (st, ..) = s.get("/v1/regions/3/bundle").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "without stale-if-error an expired copy is not served");
    let (st, _, body, _) = s.get("/v1/regions/9/bundle").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "nothing cached: a clear 503");
    assert!(body.contains("origin is unavailable"), "{body}");
}

#[tokio::test]
async fn an_expired_entry_is_revalidated_with_a_304() {
    let s = setup("public, s-maxage=1", 1 << 20, vec![]).await;
    s.get("/v1/bundles/abc").await;
    s.clock.advance(Duration::from_millis(1100));
    let (st, how, body, age) = s.get("/v1/bundles/abc").await;
    assert_eq!((st, how.as_str(), body.as_str()), (StatusCode::OK, "revalidated", "body of /v1/bundles/abc"));
    assert_eq!(age, Some(0), "a revalidated copy is as new as the 304");
    assert_eq!(s.script.not_modified.load(Ordering::SeqCst), 1, "the origin answered 304, not the body");
    let (_, how, ..) = s.get("/v1/bundles/abc").await;
    assert_eq!(how, "hit");
    // A client's own If-None-Match gets a 304 from the edge.
    let etag = format!("\"{}\"", "/v1/bundles/abc".len());
    let r =
        s.client.get(format!("{}/v1/bundles/abc", s.edge)).header("if-none-match", etag).send().await.expect("edge");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn private_bundles_are_never_stored_or_shared() {
    let s = setup("private, max-age=30", 1 << 20, vec![]).await;
    let (t1, t2) = (token(1), token(2));
    let (_, how1, b1, _) = s.get_as("/v1/users/1/candidates?k=10", Some(&t1)).await;
    let (_, how2, b2, _) = s.get_as("/v1/users/2/candidates?k=10", Some(&t2)).await;
    let (_, how3, b3, _) = s.get_as("/v1/users/1/candidates?k=10", Some(&t1)).await;
    assert_eq!((how1.as_str(), how2.as_str(), how3.as_str()), ("miss", "miss", "miss"));
    assert!(b1.contains("/users/1/") && b2.contains("/users/2/") && b3 == b1, "each user gets their own bundle");
    assert_eq!(s.origin_requests(), 3, "a private response is never served from the shared cache");
    assert_eq!(s.cache.len(), 0, "and never stored");
    let seen = s.script.seen.lock().expect("lock").clone();
    assert_eq!(seen[0].1.as_deref(), Some(format!("Bearer {t1}").as_str()), "the user's own token goes to the origin");
    assert_eq!(seen[1].1.as_deref(), Some(format!("Bearer {t2}").as_str()));
}

/// Regression (issue 13, defect 4, at the edge): a user's bundle was readable
/// by anyone through the edge. Now the edge checks the token itself, before
/// anything reaches the origin.
#[tokio::test]
async fn a_users_bundle_needs_that_users_token_at_the_edge() {
    let s = setup("private, max-age=30", 1 << 20, vec![]).await;
    let (st, ..) = s.get("/v1/users/1/candidates?k=5000").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "no token");
    let (st, _, body, _) = s.get_as("/v1/users/1/candidates", Some(&token(2))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "another user's token: {body}");
    let expired =
        mint_hs256(SECRET.as_bytes(), &TokenSpec { issued_at: 1_000, ..TokenSpec::new(1, 60) }).expect("mint");
    let (st, _, body, _) = s.get_as("/v1/users/1/candidates", Some(&expired)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(body.contains("expired"), "{body}");
    let forged = mint_hs256(b"not the edge's secret, but 32 bytes long", &TokenSpec::new(1, 60)).expect("mint");
    assert_eq!(s.get_as("/v1/users/1/candidates", Some(&forged)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.get_as("/v1/users/x/candidates", Some(&token(1))).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(s.origin_requests(), 0, "nothing reached the origin");
    assert_eq!(s.get_as("/v1/users/1/candidates", Some(&token(1))).await.0, StatusCode::OK);
}

/// Regression (issue 13, defect 7): `/v1/%2e%2e/metrics` reached the origin's
/// `/metrics` through the proxy. Paths are now checked before anything is
/// fetched: no dot segments, no percent-encoding, only proxied prefixes.
#[tokio::test]
async fn the_proxy_never_leaves_the_public_v1_api() {
    let s = setup("public, s-maxage=60", 1 << 20, vec![]).await;
    for (path, want) in [
        ("/v1/%2e%2e/metrics", 404),
        ("/v1/%2E%2E/metrics", 404),
        ("/v1/../metrics", 404),
        ("/v1/regions/%2f..%2fmetrics", 404),
        // The edge's own route for a user's events takes POST only.
        ("/v1/events", 405),
        ("/v1/regions/1/./bundle", 404),
    ] {
        // reqwest normalises dot segments, so send the raw request line.
        let status = raw_get(&s.edge, path).await;
        assert_eq!(status, want, "{path} must not be proxied");
    }
    assert_eq!(s.origin_requests(), 0, "nothing reached the origin");
    assert_eq!(s.get("/v1/regions/1/bundle").await.0, StatusCode::OK);
}

/// Sends `GET path` exactly as written and returns the status code.
async fn raw_get(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out);
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Regression (issue 13, defect 10): the 503 for a dead origin named the
/// origin's internal URL.
#[tokio::test]
async fn a_dead_origin_is_reported_without_its_address() {
    let mut s = setup("public, s-maxage=60", 1 << 20, vec![]).await;
    s.origin_task.abort();
    let _ = (&mut s.origin_task).await;
    let (st, _, body, _) = s.get("/v1/regions/3/bundle").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("origin is unavailable"), "{body}");
    assert!(!body.contains("127.0.0.1") && !body.contains("http://"), "the origin's address leaked: {body}");
    let ready = s.client.get(format!("{}/readyz", s.edge)).send().await.expect("edge");
    let v: serde_json::Value = ready.json().await.expect("JSON");
    assert_eq!(v["origin"], "down", "{v}");
}

/// A feed with nothing cached and no origin: 503 for JSON, an error line for
/// NDJSON, neither naming the origin, and both counted as unavailable.
#[tokio::test]
async fn a_feed_with_nothing_cached_and_no_origin_is_unavailable() {
    let mut s = setup("public, s-maxage=60", 1 << 20, vec![]).await;
    s.origin_task.abort();
    let _ = (&mut s.origin_task).await;
    let r = s.client.get(format!("{}/v1/feed?region=1&k=5", s.edge)).send().await.expect("edge answers");
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = r.text().await.expect("body");
    assert!(body.contains("no bundle available") && body.contains("origin is unavailable"), "{body}");
    assert!(!body.contains("127.0.0.1"), "the origin's address leaked: {body}");
    let r = s
        .client
        .get(format!("{}/v1/feed?region=1&k=5", s.edge))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("edge answers");
    assert_eq!(r.status(), StatusCode::OK, "a stream starts before its frames are known");
    let lines: Vec<serde_json::Value> =
        r.text().await.expect("body").lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (lines[0]["frame"].as_str(), lines[0]["error"].as_str()),
        (Some("preliminary"), Some("no regional bundle available"))
    );
    let m = s.client.get(format!("{}/metrics", s.edge)).send().await.expect("metrics").text().await.expect("text");
    assert_eq!(metric(&m, "edgewise_edge_feeds_total{answer=\"unavailable\"}"), 2.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_misses_make_one_origin_request() {
    let s = setup("public, s-maxage=60", 1 << 20, vec![]).await;
    s.script.delay_ms.store(200, Ordering::SeqCst);
    let s = Arc::new(s);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let s = s.clone();
        set.spawn(async move { s.get("/v1/regions/5/bundle").await });
    }
    let results = set.join_all().await;
    assert!(results.iter().all(|r| r.0 == StatusCode::OK && r.2 == "body of /v1/regions/5/bundle"));
    assert_eq!(s.origin_requests(), 1, "20 concurrent misses, 1 origin request");
    let misses = results.iter().filter(|r| r.1 == "miss").count();
    assert_eq!(misses, 1, "the others are served from the one fetch");
}

#[tokio::test]
async fn purge_by_surrogate_key_needs_the_admin_key() {
    let s = setup("public, s-maxage=60", 1 << 20, vec!["sekrit".into()]).await;
    *s.script.surrogate.lock().expect("lock") = "bundle-regional region-4".into();
    s.get("/v1/regions/4/bundle").await;
    *s.script.surrogate.lock().expect("lock") = "bundle-regional region-6".into();
    s.get("/v1/regions/6/bundle").await;
    let purge = |key: Option<&str>, body: &str| {
        let mut r = s.client.post(format!("{}/admin/purge", s.edge)).body(body.to_string());
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    // The same rule as the origin's: 401 with a challenge when missing, 403 when wrong.
    let missing = purge(None, r#"{"surrogate_key":"region-4"}"#).await.expect("edge");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().get("www-authenticate").is_some(), "a 401 carries a challenge");
    assert_eq!(
        purge(Some("nope"), r#"{"surrogate_key":"region-4"}"#).await.expect("edge").status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(purge(Some("sekrit"), r#"{"key":"region-4"}"#).await.expect("edge").status(), StatusCode::BAD_REQUEST);
    let r = purge(Some("sekrit"), r#"{"surrogate_key":"region-4"}"#).await.expect("edge");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<serde_json::Value>().await.expect("json")["purged"], 1);
    assert_eq!(s.get("/v1/regions/4/bundle").await.1, "miss", "purged");
    assert_eq!(s.get("/v1/regions/6/bundle").await.1, "hit", "other keys stay");
}

#[tokio::test]
async fn memory_is_bounded_by_bytes_least_recently_used_first() {
    let s = setup("public, s-maxage=60", 8 * 1024, vec![]).await;
    s.script.body_bytes.store(2000, Ordering::SeqCst);
    for i in 0..3 {
        s.get(&format!("/v1/bundles/{i}")).await;
    }
    assert_eq!(s.get("/v1/bundles/0").await.1, "hit", "touch 0 so that 1 is the least recently used");
    for i in 3..6 {
        s.get(&format!("/v1/bundles/{i}")).await;
    }
    assert!(s.cache.bytes() <= 8 * 1024, "{} bytes held", s.cache.bytes());
    assert_eq!(s.get("/v1/bundles/5").await.1, "hit", "the newest stays");
    assert_eq!(s.get("/v1/bundles/1").await.1, "miss", "the least recently used went first");
}

#[tokio::test]
async fn past_the_in_flight_cap_the_edge_answers_429_with_retry_after() {
    let mut limits = settings();
    limits.admission.max_in_flight = 1;
    let s = setup_with("public, s-maxage=60", 1 << 20, limits).await;
    s.script.hold();
    let (client, slow_url) = (s.client.clone(), format!("{}/v1/regions/1/bundle", s.edge));
    let slow = tokio::spawn(async move { client.get(slow_url).send().await.expect("edge answers").status() });
    // Once the slow request reaches the origin it holds the only slot.
    eventually("the slow request reaching the origin", || async { s.origin_requests() == 1 }).await;
    let r = s.client.get(format!("{}/v1/regions/2/bundle", s.edge)).send().await.expect("edge answers");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: serde_json::Value = r.json().await.expect("JSON error body");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("too many requests")), "{body}");
    s.script.release();
    assert_eq!(slow.await.expect("task"), StatusCode::OK, "the request in flight is unaffected");
    // The slot is free again.
    let (st, how, _, _) = s.get("/v1/regions/1/bundle").await;
    assert_eq!((st, how.as_str()), (StatusCode::OK, "hit"));
    assert_eq!(s.origin_requests(), 1, "the refused request never reached the origin");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Regression (issue 13, defect 2, at the edge): 1,100 connections that sent
/// headers and a `Content-Length` but no body made the edge answer 429 to
/// everyone, `/livez` included. A stalled body now holds no slot of the
/// in-flight cap, headers that never finish are cut off, and health routes
/// are outside the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_stalled_clients_do_not_lock_anyone_out_of_the_edge() {
    use tokio::io::AsyncWriteExt;
    let mut limits = settings();
    limits.admission.max_in_flight = 32;
    // Long enough that the stall is certainly still on while the requests below are served.
    let stall = Duration::from_secs(5);
    limits.admission.body_timeout = stall;
    limits.serve.header_read_timeout = stall;
    let s = setup_with("public, s-maxage=60", 1 << 20, limits).await;
    let addr = s.edge.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    // 400 anonymous feed requests whose bodies never come (the feed needs no credential)...
    for _ in 0..400 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        c.write_all(b"POST /v1/feed?region=1 HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n")
            .await
            .expect("write");
        stalled.push(c);
    }
    // ...and 200 that never finish their headers.
    for _ in 0..200 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        c.write_all(b"GET /v1/regions/1/bundle HTTP/1.1\r\nhost: t\r\nx-slow: ").await.expect("write");
        stalled.push(c);
    }
    let metrics = || async {
        s.client.get(format!("{}/metrics", s.edge)).send().await.expect("metrics").text().await.expect("text")
    };
    for path in ["/livez", "/readyz", "/metrics", "/v1/regions/1/bundle"] {
        let r = s.client.get(format!("{}{path}", s.edge)).send().await.expect("answers");
        assert_ne!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{path} during the stall");
    }
    let m = metrics().await;
    assert_eq!(metric(&m, "edgewise_edge_slow_clients_total{phase=\"body\"}"), 0.0, "the stall was still on:\n{m}");
    assert_eq!(metric(&m, "edgewise_edge_slow_clients_total{phase=\"headers\"}"), 0.0, "the stall was still on:\n{m}");
    eventually("the stalled clients being cut off", || async {
        let m = metrics().await;
        metric(&m, "edgewise_edge_slow_clients_total{phase=\"body\"}") == 400.0
            && metric(&m, "edgewise_edge_slow_clients_total{phase=\"headers\"}") >= 200.0
            && metric(&m, "edgewise_edge_connections_open") <= 2.0
    })
    .await;
    let m = metrics().await;
    assert_eq!(metric(&m, "edgewise_edge_slow_clients_total{phase=\"body\"}"), 400.0, "{m}");
    assert!(metric(&m, "edgewise_edge_slow_clients_total{phase=\"headers\"}") >= 200.0, "{m}");
    assert!(metric(&m, "edgewise_edge_connections_open") <= 2.0, "stalled connections are closed:\n{m}");
    drop(stalled);
}

/// Opens the disk store in `dir` and an edge in front of a fresh origin with it.
async fn setup_disk(
    dir: &std::path::Path,
) -> (Setup, Arc<edgewise_edge::disk::DiskStore>, edgewise_edge::disk::OpenReport) {
    let (disk, report) = edgewise_edge::disk::DiskStore::open(dir, 64 << 20).expect("the disk store opens");
    let disk = Arc::new(disk);
    let s = setup_full("public, s-maxage=300", 1 << 20, settings(), Some(disk.clone())).await;
    (s, disk, report)
}

#[tokio::test]
async fn a_restarted_edge_answers_from_its_disk_cache_and_distrusts_a_damaged_index() {
    let dir = std::env::temp_dir().join(format!("ew-edge-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let paths: Vec<String> = (1..=3).map(|r| format!("/v1/regions/{r}/bundle")).collect();

    // First life: three misses, written to disk.
    let (s, disk, report) = setup_disk(&dir).await;
    assert_eq!((report.entries, report.discarded.clone()), (0, None));
    for p in &paths {
        assert_eq!(s.get(p).await.1, "miss");
    }
    eventually("the three bodies are on disk", || {
        let d = disk.clone();
        async move { d.len() == 3 }
    })
    .await;
    assert!(s.cache.flush_disk().expect("the index is written"));
    s.origin_task.abort();

    // Second life, in front of a new origin: every first request is a hit, the origin sees none.
    let (s, _disk, report) = setup_disk(&dir).await;
    assert_eq!((report.entries, report.discarded.clone()), (3, None), "{report:?}");
    for p in &paths {
        let (st, how, body, age) = s.get(p).await;
        assert_eq!((st, how.as_str(), body), (StatusCode::OK, "hit", format!("body of {p}")));
        assert!(age.is_some_and(|a| a < 300), "the age survives the restart: {age:?}");
    }
    assert_eq!(s.origin_requests(), 0, "a warm restart sends nothing to the origin");
    s.origin_task.abort();

    // A damaged index is discarded with its reason; the edge starts empty and asks the origin.
    let index = dir.join(edgewise_edge::disk::INDEX_FILE);
    let mut bytes = std::fs::read(&index).expect("index");
    let at = bytes.len() - 9;
    bytes[at] ^= 0x04;
    std::fs::write(&index, &bytes).expect("write");
    let (s, _disk, report) = setup_disk(&dir).await;
    assert_eq!(report.entries, 0);
    assert!(report.discarded.as_deref().is_some_and(|w| w.contains("CRC-32")), "{report:?}");
    assert_eq!(report.orphans_removed, 3, "the bodies it named are removed too");
    assert_eq!(s.get(&paths[0]).await.1, "miss");
    assert_eq!(s.origin_requests(), 1);
    // A truncated one likewise.
    std::fs::write(&index, &bytes[..bytes.len() / 2]).expect("write");
    let (_s, _disk, report) = setup_disk(&dir).await;
    assert!(report.discarded.is_some(), "{report:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
