//! The origin's HTTP API over a real socket: a server on 127.0.0.1:0 with its
//! own data directory, driven by reqwest.

use std::path::PathBuf;
use std::sync::Arc;

use edgewise_core::Digest;
use edgewise_core::bundle::{Bundle, SOURCE_NAMES, Scope};
use edgewise_core::synth;
use edgewise_http::auth::{TokenSpec, mint_hs256};
use edgewise_origin::{AppState, Config};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const DIM: usize = 16;

/// The user-token secret the test servers are configured with.
const SECRET: &str = "origin-api-test-secret-32-bytes-long";
const INGEST: &str = "ingest-secret";
const ADMIN: &str = "admin-secret";

/// A token for `user`, valid for five minutes.
fn tok(user: u64) -> String {
    mint_hs256(SECRET.as_bytes(), &TokenSpec::new(user, 300)).expect("a token mints")
}

struct Server {
    url: String,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Sends the ingest key (`X-Api-Key`) with every request.
    client: Client,
    /// Sends no credential.
    bare: Client,
}

impl Server {
    async fn start(cfg: Config) -> Self {
        let state = edgewise_origin::open(cfg).expect("store opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(edgewise_origin::serve(state.clone(), listener, async {
            let _ = rx.await;
        }));
        let st = state.clone();
        tokio::task::spawn_blocking(move || edgewise_origin::recover(&st, |_, _| {}))
            .await
            .expect("recovery task")
            .expect("recovery");
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("x-api-key", reqwest::header::HeaderValue::from_static(INGEST));
        let client = Client::builder().default_headers(h).build().expect("client");
        Self { url, state, stop: Some(tx), task: Some(task), client, bare: Client::new() }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server stops cleanly");
        }
    }

    fn u(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }
}

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ew-origin-{}-{name}-{}", std::process::id(), rand_suffix()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

fn config(dir: PathBuf) -> Config {
    let mut c = Config { data_dir: dir, ..Config::default() };
    c.index.dim = DIM;
    c.index.shards = 2;
    c.retrieval.default_k = 40;
    c.retrieval.deadline_ms = 2_000;
    c.auth.ingest_keys = vec![INGEST.into()];
    c.auth.admin_keys = vec![ADMIN.into()];
    c.auth.user_tokens.hmac_secrets = vec![SECRET.into()];
    c
}

/// 300 clustered items; ids 1000.., creators 0..30, every 10th item only in region 5.
fn items() -> Vec<Value> {
    let spec = synth::Spec {
        n: 300,
        dim: DIM as u16,
        n_features: 2,
        n_sources: 5,
        clusters: 6,
        creators: 30,
        regions: 8,
        seed: 3,
    };
    synth::item_embeddings(&spec)
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let mut v = json!({
                "id": 1000 + i as u64, "embedding": e, "creator": (i % 30) as u32, "categories": [(i % 6) as u32],
                "created_at": 1_700_000_000_000u64 + i as u64 * 1000, "features": {"popularity": (i % 7) as f64 / 7.0}
            });
            if i % 10 == 0 {
                v["regions"] = json!([5]);
            }
            v
        })
        .collect()
}

async fn put_items(s: &Server, body: &[Value]) -> Value {
    let r = s.client.put(s.u("/v1/items")).json(&body).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

/// User 3's `POST /v1/rank` (k 10 of 80 candidates): 200, ranked on
/// `ranked_on`, 10 items, every candidate's fate explained. Returns the body.
async fn rank_user_3(s: &Server, ranked_on: &str) -> Value {
    let r = s
        .client
        .post(s.u("/v1/rank"))
        .bearer_auth(tok(3))
        .json(&json!({"user": 3, "region": 1, "k": 10, "candidates": 80}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[edgewise_wire::headers::RANKED_ON], ranked_on);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["items"].as_array().expect("items").len(), 10);
    let explained: u64 = v["stages"].as_object().expect("stages").values().filter_map(Value::as_u64).sum();
    assert_eq!(explained, 80, "every candidate's fate is explained: {v}");
    v
}

async fn click_events(s: &Server, user: u64, items: impl Iterator<Item = u64>, prefix: &str) -> Value {
    let now = edgewise_origin::http::now_ms();
    let evs: Vec<Value> = items
        .enumerate()
        .map(|(n, it)| {
            json!({"event_id": format!("{prefix}-{n}"), "user": user, "item": it, "kind": "click", "time": now - 60_000 + n as u64, "region": 1})
        })
        .collect();
    let r = s.client.post(s.u("/v1/events")).json(&evs).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.expect("json")
}

#[tokio::test]
async fn items_round_trip_and_validation() {
    let s = Server::start(config(data_dir("items"))).await;
    let mut body = items()[..3].to_vec();
    body.push(json!({"id": 9, "embedding": [1.0, 2.0]}));
    let r = s.client.put(s.u("/v1/items")).json(&body).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["accepted"], 3);
    assert_eq!(v["results"][0]["status"], "created");
    assert_eq!(v["results"][3]["status"], "error");
    assert!(v["results"][3]["error"].as_str().expect("message").contains("dimension"), "{v}");

    // Again: updates. As NDJSON.
    let nd: String = items()[..2].iter().map(|v| format!("{v}\n")).collect();
    let r = s.client.put(s.u("/v1/items")).body(nd).send().await.expect("request");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["results"][1]["status"], "updated", "{v}");

    let got: Value = s.client.get(s.u("/v1/items/1001")).send().await.expect("request").json().await.expect("json");
    assert_eq!(got["id"], 1001);
    assert_eq!(got["embedding"].as_array().expect("array").len(), DIM);

    assert_eq!(s.client.delete(s.u("/v1/items/1001")).send().await.expect("request").status(), StatusCode::NO_CONTENT);
    assert_eq!(s.client.get(s.u("/v1/items/1001")).send().await.expect("request").status(), StatusCode::NOT_FOUND);
    assert_eq!(s.client.delete(s.u("/v1/items/1001")).send().await.expect("request").status(), StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test]
async fn bad_input_on_every_route_is_a_4xx_with_a_message() {
    let mut cfg = config(data_dir("bad"));
    cfg.server.max_body_bytes = 4096;
    let s = Server::start(cfg).await;
    put_items(&s, &items()[..5]).await;
    let big = "x".repeat(10_000);
    let cases: Vec<(reqwest::Method, &str, Option<String>, StatusCode)> = vec![
        (reqwest::Method::PUT, "/v1/items", Some("{not json".into()), StatusCode::BAD_REQUEST),
        (reqwest::Method::PUT, "/v1/items", Some("[1,".into()), StatusCode::BAD_REQUEST),
        (reqwest::Method::PUT, "/v1/items", Some("".into()), StatusCode::BAD_REQUEST),
        (
            reqwest::Method::PUT,
            "/v1/items",
            Some(r#"[{"id": 1, "embedding": "nope"}]"#.into()),
            StatusCode::BAD_REQUEST,
        ),
        (reqwest::Method::PUT, "/v1/items", Some(big.clone()), StatusCode::PAYLOAD_TOO_LARGE),
        (reqwest::Method::GET, "/v1/items/abc", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/v1/items/-3", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::DELETE, "/v1/items/99999999999999999999999", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::POST, "/v1/events", Some(r#"[{"event_id": "a"}]"#.into()), StatusCode::BAD_REQUEST),
        (reqwest::Method::POST, "/v1/events", Some(big), StatusCode::PAYLOAD_TOO_LARGE),
        (reqwest::Method::GET, "/v1/users/x/candidates", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::POST, "/v1/rank", Some("[1, 2]".into()), StatusCode::BAD_REQUEST),
        (reqwest::Method::POST, "/v1/rank", Some("{\"user\": 1, \"k\": 0}".into()), StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/v1/users/1/candidates?k=0", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/v1/users/1/candidates?k=999999", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/v1/users/1/candidates?region=40", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/v1/users/1/candidates?colour=red", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/v1/regions/99/bundle", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/v1/regions/1/bundle?k=abc", None, StatusCode::BAD_REQUEST),
        (reqwest::Method::GET, "/v1/bundles/xyz", None, StatusCode::BAD_REQUEST),
        (
            reqwest::Method::GET,
            "/v1/bundles/0000000000000000000000000000000000000000000000000000000000000000",
            None,
            StatusCode::NOT_FOUND,
        ),
        (reqwest::Method::GET, "/v1/nope", None, StatusCode::NOT_FOUND),
        (reqwest::Method::POST, "/v1/items", Some("[]".into()), StatusCode::METHOD_NOT_ALLOWED),
    ];
    let mut checked = 0;
    for (method, path, body, want) in cases {
        let mut rb = s.client.request(method.clone(), s.u(path)).bearer_auth(tok(1));
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let r = rb.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert_eq!(status, want, "{method} {path}: {text}");
        assert!(status.is_client_error(), "{method} {path} answered {status}");
        if want != StatusCode::NOT_FOUND || path.starts_with("/v1/bundles") {
            assert!(!text.is_empty() || want == StatusCode::METHOD_NOT_ALLOWED, "{method} {path}: no message");
        }
        checked += 1;
    }
    println!("checked {checked} bad requests");
    s.stop().await;
}

#[tokio::test]
async fn events_are_idempotent_and_personalize_the_bundle() {
    let s = Server::start(config(data_dir("events"))).await;
    put_items(&s, &items()).await;
    // User 7 clicks items of cluster 0 (rows 0, 6, 12, ...).
    let clicked: Vec<u64> = (0..8).map(|n| 1000 + 6 * n + 6).collect();
    let v = click_events(&s, 7, clicked.iter().copied(), "u7").await;
    assert_eq!(v["accepted"], 8);
    assert!(v["results"].as_array().expect("array").iter().all(|r| r["status"] == "applied"));
    // Another user makes other items trend in region 1.
    click_events(&s, 8, (1101..1111).filter(|i| (i - 1000) % 10 != 0), "u8").await;
    let again = click_events(&s, 7, clicked.iter().copied(), "u7").await;
    assert!(again["results"].as_array().expect("array").iter().all(|r| r["status"] == "duplicate"), "{again}");

    let r =
        s.client.get(s.u("/v1/users/7/candidates?k=40&region=1")).bearer_auth(tok(7)).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, max-age=30");
    assert_eq!(r.headers()["content-type"], edgewise_origin::http::BUNDLE_MEDIA_TYPE);
    let bytes = r.bytes().await.expect("body");
    let b = Bundle::decode(&bytes).expect("a valid bundle");
    assert_eq!(b.header().scope, Scope::Personal);
    assert_eq!(b.len(), 40, "a full bundle");
    assert_eq!(b.header().feature_schema_hash, Config::default().schema_hash());
    for i in 0..b.len() {
        assert!(!clicked.contains(&b.id(i)), "seen items are filtered out");
        assert_ne!(b.region_mask(i) & (1 << 1), 0, "only items eligible in region 1");
    }
    let contributed = b.header().sources_contributed;
    for s in ["collaborative", "recent_similar", "creator", "trending"] {
        let slot = SOURCE_NAMES.iter().position(|n| *n == s).expect("slot");
        assert_ne!(contributed & (1 << slot), 0, "{s} contributed (mask {contributed:#b})");
    }
    // Collaborative retrieval found the clicked cluster: most top rows are from cluster 0.
    let top_cluster0 = (0..10).filter(|&i| (b.id(i) - 1000).is_multiple_of(6)).count();
    assert!(top_cluster0 >= 6, "only {top_cluster0} of the top 10 are from the engaged cluster");
    s.stop().await;
}

#[tokio::test]
async fn cold_start_still_gets_a_full_bundle() {
    let s = Server::start(config(data_dir("cold"))).await;
    put_items(&s, &items()).await;
    let r =
        s.client.get(s.u("/v1/users/424242/candidates?k=60")).bearer_auth(tok(424242)).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let bytes = r.bytes().await.expect("body");
    let b = Bundle::decode(&bytes).expect("bundle");
    assert_eq!(b.len(), 60);
    let fresh = SOURCE_NAMES.iter().position(|n| *n == "fresh").expect("slot");
    assert_ne!(b.header().sources_contributed & (1 << fresh), 0, "back-filled from fresh items");
    s.stop().await;
}

#[tokio::test]
async fn regional_bundle_cache_semantics() {
    let s = Server::start(config(data_dir("regional"))).await;
    put_items(&s, &items()).await;
    click_events(&s, 1, (1000..1020).map(|i| i + 1), "r").await;
    let r = s.client.get(s.u("/v1/regions/1/bundle")).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h["cache-control"], "public, max-age=0, s-maxage=60, stale-while-revalidate=30, stale-if-error=600");
    assert_eq!(h["vary"], "Accept-Encoding");
    let etag = h["etag"].to_str().expect("etag").to_string();
    assert!(etag.starts_with('"') && etag.len() == 66, "strong sha256 etag: {etag}");
    assert!(h["surrogate-key"].to_str().expect("key").contains("region-1"));
    assert!(h["cache-tag"].to_str().expect("tag").contains("bundle-regional"));
    let bytes = r.bytes().await.expect("body");
    let b = Bundle::decode(&bytes).expect("bundle");
    assert_eq!(b.header().scope, Scope::Regional);
    assert_eq!(b.len(), 50, "retrieval.default_k = 40, rounded up to the 50 bucket");

    // Revalidation.
    let r = s.client.get(s.u("/v1/regions/1/bundle")).header("if-none-match", &etag).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], etag.as_str());

    // A compressed representation has its own strong validator, and revalidates too.
    let r = s.client.get(s.u("/v1/regions/1/bundle")).header("accept-encoding", "gzip").send().await.expect("request");
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.headers()["etag"].to_str().expect("etag").to_string();
    assert_eq!(gz, format!("{}-gzip\"", etag.trim_end_matches('"')));
    let r = s
        .client
        .get(s.u("/v1/regions/1/bundle"))
        .header("accept-encoding", "gzip")
        .header("if-none-match", &gz)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], gz.as_str(), "the 304 names the representation a 200 would have sent");

    // The same bytes, immutable, by digest.
    let digest = etag.trim_matches('"');
    let r = s.client.get(s.u(&format!("/v1/bundles/{digest}"))).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(r.bytes().await.expect("body"), bytes);
    s.stop().await;
}

#[tokio::test]
async fn concurrent_identical_regional_requests_are_coalesced() {
    let s = Server::start(config(data_dir("coalesce"))).await;
    put_items(&s, &items()).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (c, u) = (s.client.clone(), s.u("/v1/regions/3/bundle?k=77"));
        set.spawn(async move { c.get(u).send().await });
    }
    let mut etags = std::collections::HashSet::new();
    while let Some(r) = set.join_next().await {
        let r = r.expect("task").expect("request");
        assert_eq!(r.status(), StatusCode::OK);
        etags.insert(r.headers()["etag"].to_str().expect("etag").to_string());
    }
    assert_eq!(etags.len(), 1, "every response is the same bundle");
    let m = s.client.get(s.u("/metrics")).send().await.expect("request").text().await.expect("text");
    let misses = metric(&m, "edgewise_origin_bundle_cache_total{cache=\"regional\",result=\"miss\"}");
    let hits = metric(&m, "edgewise_origin_bundle_cache_total{cache=\"regional\",result=\"hit\"}");
    assert_eq!(misses, 1.0, "16 concurrent requests made one computation:\n{m}");
    assert_eq!(hits, 15.0);
    s.stop().await;
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_slow_source_is_dropped_and_reported() {
    let mut cfg = config(data_dir("drill"));
    cfg.retrieval.deadline_ms = 50;
    cfg.retrieval.drills.insert("collaborative".into(), edgewise_origin::config::Drill { delay_ms: 400, fail: false });
    cfg.retrieval.drills.insert("creator".into(), edgewise_origin::config::Drill { delay_ms: 0, fail: true });
    let s = Server::start(cfg).await;
    put_items(&s, &items()).await;
    click_events(&s, 9, (0..5).map(|n| 1000 + 6 * n), "d").await;
    let r = s.client.get(s.u("/v1/users/9/candidates?k=40")).bearer_auth(tok(9)).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-edgewise-sources-dropped"], "collaborative,creator");
    let bytes = r.bytes().await.expect("body");
    let b = Bundle::decode(&bytes).expect("bundle");
    assert_eq!(b.len(), 40, "the other sources' budgets grew to fill the bundle");
    let slot = |n: &str| SOURCE_NAMES.iter().position(|x| *x == n).expect("slot");
    assert_eq!(b.header().sources_timed_out, (1 << slot("collaborative")) | (1 << slot("creator")));
    assert_eq!(b.header().sources_contributed & (1 << slot("collaborative")), 0);
    let m = s.client.get(s.u("/metrics")).send().await.expect("request").text().await.expect("text");
    assert_eq!(
        metric(&m, "edgewise_origin_source_dropped_total{reason=\"deadline exceeded\",source=\"collaborative\"}"),
        1.0,
        "{m}"
    );
    s.stop().await;
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = data_dir("restart");
    let s = Server::start(config(dir.clone())).await;
    put_items(&s, &items()).await;
    click_events(&s, 5, [1003u64, 1004].into_iter(), "rs").await;
    s.stop().await;

    let s = Server::start(config(dir)).await;
    assert_eq!(s.state.catalogue.len(), 300);
    assert_eq!(s.client.get(s.u("/v1/items/1299")).send().await.expect("request").status(), StatusCode::OK);
    let again = click_events(&s, 5, [1003u64].into_iter(), "rs").await;
    assert_eq!(again["results"][0]["status"], "duplicate", "event ids survive a restart");
    let bytes = s
        .client
        .get(s.u("/v1/users/5/candidates?k=100"))
        .bearer_auth(tok(5))
        .send()
        .await
        .expect("request")
        .bytes()
        .await
        .expect("body");
    let b = Bundle::decode(&bytes).expect("bundle");
    assert!((0..b.len()).all(|i| b.id(i) != 1003 && b.id(i) != 1004), "the seen set survived");
    s.stop().await;
}

fn model_bytes(cfg: &Config, seed: u64) -> Vec<u8> {
    let spec =
        synth::Spec { n: 0, dim: DIM as u16, n_features: 2, n_sources: 7, clusters: 1, creators: 1, regions: 1, seed };
    let mut m = synth::model(&spec, &[16, 8], 100, seed);
    m.feature_schema_hash = cfg.schema_hash();
    m.encode().expect("model encodes")
}

#[tokio::test]
async fn model_registry_canary_and_origin_ranking() {
    let cfg = config(data_dir("models"));
    let s = Server::start(cfg.clone()).await;
    let c = &s.client;

    // Keys: 401 with a challenge when missing, 403 when wrong.
    let r = s.bare.put(s.u("/v1/items")).json(&items()).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get("www-authenticate").is_some());
    let r = s.bare.put(s.u("/v1/items")).bearer_auth("wrong").json(&items()).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s.bare.put(s.u("/v1/items")).bearer_auth(INGEST).json(&items()).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let (m1, m2) = (model_bytes(&cfg, 1), model_bytes(&cfg, 2));
    assert_eq!(
        s.bare.put(s.u("/v1/models")).body(m1.clone()).send().await.expect("request").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.bare.put(s.u("/v1/models")).bearer_auth(INGEST).body(m1.clone()).send().await.expect("request").status(),
        StatusCode::FORBIDDEN,
        "an ingest key is not an admin key"
    );

    // No model yet.
    assert_eq!(c.get(s.u("/v1/models/current")).send().await.expect("request").status(), StatusCode::NOT_FOUND);
    let r = c.post(s.u("/v1/rank")).bearer_auth(tok(1)).json(&json!({"user": 1})).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Bad models are refused with the reason.
    let bad = c.put(s.u("/v1/models")).bearer_auth(ADMIN).body("junk").send().await.expect("request");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let mut other = cfg.clone();
    other.features.names = vec!["year".into(), "popularity".into()];
    let r = c.put(s.u("/v1/models")).bearer_auth(ADMIN).body(model_bytes(&other, 1)).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("text").contains("feature-schema hash"));

    // Stable, then a 50% canary.
    let r = c.put(s.u("/v1/models")).bearer_auth(ADMIN).body(m1.clone()).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let d1 = r.json::<Value>().await.expect("json")["digest"].as_str().expect("digest").to_string();
    let r = c
        .put(s.u("/v1/models?rollout=canary&percent=50"))
        .bearer_auth(ADMIN)
        .body(m2.clone())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let d2 = r.json::<Value>().await.expect("json")["digest"].as_str().expect("digest").to_string();

    let r = c.get(s.u(&format!("/v1/models/{d1}"))).send().await.expect("request");
    assert_eq!(r.headers()["cache-control"], "public, max-age=31536000, immutable");
    let etag = r.headers()["etag"].to_str().expect("etag").to_string();
    assert_eq!(r.bytes().await.expect("body").to_vec(), m1);
    let r = c.get(s.u(&format!("/v1/models/{d1}"))).header("if-none-match", etag).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    let mut on_canary = 0;
    for user in 0..200u64 {
        let v: Value = c
            .get(s.u(&format!("/v1/models/current?user={user}")))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        let d = v["digest"].as_str().expect("digest");
        assert!(d == d1 || d == d2);
        if d == d2 {
            on_canary += 1;
        }
        let again: Value = c
            .get(s.u(&format!("/v1/models/current?user={user}")))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        assert_eq!(again["digest"], v["digest"], "sticky per user");
        if user < 5 {
            // Personal bundles name the model their user gets.
            let bytes = c
                .get(s.u(&format!("/v1/users/{user}/candidates")))
                .bearer_auth(tok(user))
                .send()
                .await
                .expect("request")
                .bytes()
                .await
                .expect("body");
            let b = Bundle::decode(&bytes).expect("bundle");
            assert_eq!(b.header().model_digest.map(|m| m.to_hex()).as_deref(), Some(d));
        }
    }
    assert!((70..130).contains(&on_canary), "{on_canary} of 200 users on a 50% canary");

    // Ranking at the origin, explained.
    click_events(&s, 3, (0..4).map(|n| 1000 + 6 * n), "rank").await;
    // rank.gpu is off by default.
    let v = rank_user_3(&s, "cpu").await;
    assert_eq!(v["candidates"], 80);
    assert_eq!(v["stages"]["selected"], 10, "{v}");
    let first = &v["items"][0];
    for key in ["id", "score", "pre_score", "main_score", "mmr_penalty", "sources"] {
        assert!(!first[key].is_null(), "{key} missing in {first}");
    }
    for (body, want) in [
        (json!({"user": 3, "k": 0}), StatusCode::BAD_REQUEST),
        (json!({"user": 3, "region": 99}), StatusCode::BAD_REQUEST),
        (json!({"user": "x"}), StatusCode::BAD_REQUEST),
        (json!([3, 1]), StatusCode::BAD_REQUEST),
        (json!({"user": 4}), StatusCode::FORBIDDEN),
        (json!({"user": 3, "colour": 1}), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(
            c.post(s.u("/v1/rank")).bearer_auth(tok(3)).json(&body).send().await.expect("request").status(),
            want,
            "{body}"
        );
    }
    s.stop().await;

    // The manifest survives a restart; this time `/v1/rank` may use the GPU
    // (lavapipe in CI). The GPU path's bytes equal the core's (the
    // edgewise-shaders conformance tests); here: it is used and explains all.
    let mut gpu_cfg = cfg.clone();
    gpu_cfg.rank.gpu = edgewise_origin::config::GpuSetting::Auto;
    let s = Server::start(gpu_cfg).await;
    let v: Value = s.client.get(s.u("/v1/models/current")).send().await.expect("request").json().await.expect("json");
    assert_eq!(v["stable"], d1.as_str());
    assert_eq!(v["canary"]["digest"], d2.as_str());
    // rank.gpu = "auto" with an adapter.
    rank_user_3(&s, "gpu").await;
    s.stop().await;
}

#[tokio::test]
async fn deletes_trigger_background_rebuilds_and_never_resurface() {
    let s = Server::start(config(data_dir("rebuild"))).await;
    put_items(&s, &items()).await;
    for id in 1000..1120u64 {
        let r = s.client.delete(s.u(&format!("/v1/items/{id}"))).send().await.expect("request");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    // The rebuilds run in the background; wait for them to swap in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.state.catalogue.shards_to_rebuild(s.state.cfg.index.rebuild_deleted_ratio).is_empty() {
        assert!(std::time::Instant::now() < deadline, "rebuilds never finished");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s.state.catalogue.index.len(), 180);
    let bytes = s
        .client
        .get(s.u("/v1/users/77/candidates?k=200"))
        .bearer_auth(tok(77))
        .send()
        .await
        .expect("request")
        .bytes()
        .await
        .expect("body");
    let b = Bundle::decode(&bytes).expect("bundle");
    assert_eq!(b.len(), 180, "every live item, and only live items");
    assert!((0..b.len()).all(|i| b.id(i) >= 1120));
    s.stop().await;
}

/// Writes `head` on a new connection to `s` and returns what the server
/// answers within `wait` (everything up to the end of its response head).
async fn raw(s: &Server, head: &str, wait: std::time::Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(s.url.trim_start_matches("http://")).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(wait, async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&got).into_owned()
}

/// Regression (issue 13, defect 1): the origin read a whole 15 MiB body
/// before it checked the key, so keyless uploads could fill its memory. The
/// key is now checked on the headers: the 401 comes while the body is unsent,
/// and with `Expect: 100-continue` the client is never asked for it.
#[tokio::test]
async fn an_unauthenticated_upload_is_refused_before_its_body_is_read() {
    let s = Server::start(config(data_dir("early401"))).await;
    let wait = std::time::Duration::from_secs(2);
    let expect =
        raw(&s, "PUT /v1/items HTTP/1.1\r\nhost: t\r\ncontent-length: 15728640\r\nexpect: 100-continue\r\n\r\n", wait)
            .await;
    assert!(expect.starts_with("HTTP/1.1 401"), "{expect:?}");
    assert!(!expect.contains("100 Continue"), "the server never asked for the body: {expect:?}");
    assert!(expect.to_ascii_lowercase().contains("www-authenticate"), "{expect:?}");
    // Without Expect the answer still comes before a byte of the body is sent.
    let plain = raw(&s, "PUT /v1/items HTTP/1.1\r\nhost: t\r\ncontent-length: 15728640\r\n\r\n", wait).await;
    assert!(plain.starts_with("HTTP/1.1 401"), "{plain:?}");
    let wrong =
        raw(&s, "POST /v1/events HTTP/1.1\r\nhost: t\r\nx-api-key: nope\r\ncontent-length: 9000000\r\n\r\n", wait)
            .await;
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong:?}");
    // With the key, a declared length over the limit is refused before it is read too.
    let big = raw(
        &s,
        &format!("PUT /v1/items HTTP/1.1\r\nhost: t\r\nx-api-key: {INGEST}\r\ncontent-length: 99999999\r\nexpect: 100-continue\r\n\r\n"),
        wait,
    )
    .await;
    assert!(big.starts_with("HTTP/1.1 413"), "{big:?}");
    let m = s.client.get(s.u("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert_eq!(metric(&m, "edgewise_origin_requests_refused_total{reason=\"unauthorized\"}"), 2.0, "{m}");
    assert_eq!(metric(&m, "edgewise_origin_requests_refused_total{reason=\"forbidden\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "edgewise_origin_requests_refused_total{reason=\"body_too_large\"}"), 1.0, "{m}");
    s.stop().await;
}

/// Regression (issue 13, defect 2): 600 connections that sent headers and a
/// `Content-Length` but no body made the origin answer 429 to everyone,
/// `/livez` included. Stalled bodies now hold no slot of the in-flight cap,
/// slowloris headers are cut off by the header-read timeout, and health
/// routes are outside the cap altogether.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_stalled_clients_do_not_lock_anyone_out() {
    use tokio::io::AsyncWriteExt;
    let mut cfg = config(data_dir("slowloris"));
    cfg.server.max_in_flight = 32;
    cfg.server.header_read_timeout_ms = 5000;
    cfg.server.body_read_timeout_ms = 5000;
    let s = Server::start(cfg).await;
    put_items(&s, &items()).await;
    let addr = s.url.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    // 300 authenticated requests whose bodies never come (ingest writes and personal rankings)...
    for i in 0..300u64 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let head = if i % 2 == 0 {
            format!("PUT /v1/items HTTP/1.1\r\nhost: t\r\nx-api-key: {INGEST}\r\ncontent-length: 1000\r\n\r\n")
        } else {
            format!(
                "POST /v1/rank HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {}\r\ncontent-length: 1000\r\n\r\n",
                tok(i)
            )
        };
        c.write_all(head.as_bytes()).await.expect("write");
        stalled.push(c);
    }
    // ...and 200 that never finish their headers.
    for _ in 0..200 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        c.write_all(b"GET /v1/regions/1/bundle HTTP/1.1\r\nhost: t\r\nx-slow: ").await.expect("write");
        stalled.push(c);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for path in ["/livez", "/readyz", "/v1/regions/1/bundle", "/v1/items/1001"] {
        let r = s.client.get(s.u(path)).send().await.expect("answers");
        assert_eq!(r.status(), StatusCode::OK, "{path} during the stall");
    }
    let r = s.client.put(s.u("/v1/items")).json(&items()[..2]).send().await.expect("a write answers");
    assert_eq!(r.status(), StatusCode::OK, "a normal write during the stall");
    // Served during the stall, not after it: no stalled client has been cut off
    // yet (no wall-clock bound on the answers themselves, which a loaded
    // machine could break; the 5 s timeouts leave room).
    let m = s.client.get(s.u("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert_eq!(metric(&m, "edgewise_origin_slow_clients_total{phase=\"body\"}"), 0.0, "answered while stalled:\n{m}");
    // The timeouts then cut every stalled client off, and /metrics counts them.
    let mut m = String::new();
    for _ in 0..300 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        m = s.client.get(s.u("/metrics")).send().await.expect("metrics").text().await.expect("text");
        if metric(&m, "edgewise_origin_slow_clients_total{phase=\"body\"}") >= 300.0
            && metric(&m, "edgewise_origin_slow_clients_total{phase=\"headers\"}") >= 200.0
            && metric(&m, "edgewise_origin_connections_open") <= 2.0
        {
            break;
        }
    }
    assert_eq!(metric(&m, "edgewise_origin_slow_clients_total{phase=\"body\"}"), 300.0, "{m}");
    assert!(metric(&m, "edgewise_origin_slow_clients_total{phase=\"headers\"}") >= 200.0, "{m}");
    assert!(metric(&m, "edgewise_origin_connections_open") <= 2.0, "stalled connections are closed:\n{m}");
    drop(stalled);
    s.stop().await;
}

/// Regression (issue 13, defect 3): values like ±3e38 passed the finite
/// check, their inner products overflowed, the fusion turned every score
/// into NaN, and 47 of 60 users got a 500. Values are now bounded at ingest,
/// and rows stored before the bound are dropped from a bundle, never the request.
#[tokio::test]
async fn huge_embedding_values_are_refused_and_never_break_a_feed() {
    let s = Server::start(config(data_dir("huge"))).await;
    put_items(&s, &items()).await;
    let mut huge = items()[0].clone();
    huge["id"] = json!(9000);
    huge["embedding"] = json!((0..DIM).map(|i| if i % 2 == 0 { 3e38 } else { -3e38 }).collect::<Vec<f64>>());
    let r = s.client.put(s.u("/v1/items")).json(&vec![huge]).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert!(v["results"][0]["error"].as_str().is_some_and(|e| e.contains("ingest.max_abs_value")), "{v}");
    // Items stored before values were bounded (written past the API, as an old version would have).
    let planted: Vec<edgewise_origin::item::Item> = (0..20u64)
        .map(|i| edgewise_origin::item::Item {
            id: 9100 + i,
            embedding: (0..DIM).map(|d| if (d as u64 + i).is_multiple_of(2) { 3e38 } else { -3e38 }).collect(),
            content: None,
            creator: 1,
            categories: vec![0],
            region_mask: u32::MAX,
            created_at_ms: 1_700_000_000_000 + i,
            features: vec![3e38, 0.5],
        })
        .collect();
    s.state.store.put_items(&planted).expect("store");
    for it in planted {
        s.state.catalogue.upsert(it);
    }
    let model = model_bytes(&s.state.cfg, 1);
    let r = s.client.put(s.u("/v1/models")).bearer_auth(ADMIN).body(model).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    for user in 1..=12u64 {
        click_events(&s, user, [9100 + user, 1000 + user].into_iter(), &format!("h{user}")).await;
        let r = s.client.get(s.u(&format!("/v1/users/{user}/candidates?k=60"))).bearer_auth(tok(user)).send().await;
        assert_eq!(r.expect("request").status(), StatusCode::OK, "user {user}'s bundle");
        let r = s
            .client
            .post(s.u("/v1/rank"))
            .bearer_auth(tok(user))
            .json(&json!({"user": user, "k": 10, "candidates": 60}))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::OK, "user {user}'s ranking: {}", r.text().await.unwrap_or_default());
    }
    s.stop().await;
}

/// Regression (issue 13, defect 4): reads were open, so anyone could fetch
/// `/v1/users/1/candidates?k=5000` and read user 1's history from what it
/// left out. Every personalized route now needs that user's own token.
#[tokio::test]
async fn personal_routes_need_the_users_own_token() {
    // Secure by default: without a user-token key nothing personal is served.
    let mut unconfigured = config(data_dir("notokens"));
    unconfigured.auth.user_tokens = Default::default();
    let s = Server::start(unconfigured).await;
    for (method, path) in [(reqwest::Method::GET, "/v1/users/1/candidates?k=5000"), (reqwest::Method::POST, "/v1/rank")]
    {
        let r = s.bare.request(method.clone(), s.u(path)).json(&json!({"user": 1})).send().await.expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let body = r.text().await.expect("body");
        assert!(body.contains("auth.user_tokens.hmac_secrets"), "{path}: says how to configure one: {body}");
    }
    s.stop().await;

    let s = Server::start(config(data_dir("tokens"))).await;
    put_items(&s, &items()).await;
    click_events(&s, 1, [1001u64, 1002, 1003].into_iter(), "priv").await;
    let get = |token: Option<String>| {
        let mut r = s.bare.get(s.u("/v1/users/1/candidates?k=5000"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let expired =
        mint_hs256(SECRET.as_bytes(), &TokenSpec { issued_at: 1_000_000, ..TokenSpec::new(1, 600) }).expect("m");
    let forged = mint_hs256(b"some other application's secret key!!", &TokenSpec::new(1, 600)).expect("mint");
    let long_lived = mint_hs256(SECRET.as_bytes(), &TokenSpec::new(1, 30 * 86_400)).expect("mint");
    for (token, status, why) in [
        (None, StatusCode::UNAUTHORIZED, "user's token"),
        (Some(tok(2)), StatusCode::FORBIDDEN, "issued for user 2"),
        (Some(expired), StatusCode::UNAUTHORIZED, "expired"),
        (Some(forged), StatusCode::UNAUTHORIZED, "signature"),
        (Some(long_lived), StatusCode::UNAUTHORIZED, "at most 3600"),
        (Some(INGEST.to_string()), StatusCode::UNAUTHORIZED, "not a JWT"),
    ] {
        let r = get(token).await.expect("request");
        assert_eq!(r.status(), status, "{why}");
        let text = r.text().await.expect("body");
        assert!(text.contains(why), "{why}: {text}");
    }
    let r = get(Some(tok(1))).await.expect("request");
    assert_eq!(r.status(), StatusCode::OK, "the user's own token");
    let digest = r.headers()["x-edgewise-bundle-digest"].to_str().expect("digest").to_string();
    // The same bundle by digest: only for its user.
    let by_digest = |token: Option<String>| {
        let mut r = s.bare.get(s.u(&format!("/v1/bundles/{digest}")));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(by_digest(None).await.expect("r").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(by_digest(Some(tok(2))).await.expect("r").status(), StatusCode::FORBIDDEN);
    let r = by_digest(Some(tok(1))).await.expect("r");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, max-age=31536000, immutable");
    // A user's token writes that user's own events, and no one else's.
    let ev = |user: u64, id: &str| json!({"event_id": id, "user": user, "item": 1010, "kind": "click", "time": 1_700_000_000_000u64, "region": 1});
    let r = s.bare.post(s.u("/v1/events")).bearer_auth(tok(1)).json(&[ev(1, "own")]).send().await.expect("r");
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.bare.post(s.u("/v1/events")).bearer_auth(tok(1)).json(&[ev(1, "own2"), ev(2, "theirs")]).send().await;
    let r = r.expect("r");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "one stranger's event refuses the batch");
    let r = s.client.post(s.u("/v1/events")).json(&[ev(1, "own2")]).send().await.expect("r");
    assert_eq!(
        r.json::<Value>().await.expect("json")["results"][0]["status"],
        "applied",
        "the refused batch wrote nothing"
    );
    let r = s.bare.post(s.u("/v1/events")).json(&[ev(1, "anon")]).send().await.expect("r");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "events need a key or a token");
    s.stop().await;
}

/// Regression (issue 13, defect 6): one like dated year 3000 stayed first in
/// a region's trending bundle for good, an event at `u64::MAX` froze its
/// user's vectors, and an item created at `u64::MAX` stayed first in `fresh`.
#[tokio::test]
async fn times_from_the_far_future_are_refused() {
    let s = Server::start(config(data_dir("future"))).await;
    put_items(&s, &items()).await;
    let year_3000 = 32_503_680_000_000u64;
    let far = edgewise_origin::http::now_ms() + 3_600_000;
    for time in [year_3000, u64::MAX, far] {
        let e = json!([{"event_id": format!("f{time}"), "user": 3, "item": 1005, "kind": "like", "time": time, "region": 9}]);
        let r = s.client.post(s.u("/v1/events")).json(&e).send().await.expect("request");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "time {time}");
        let v: Value = r.json().await.expect("json");
        assert!(v["results"][0]["error"].as_str().is_some_and(|m| m.contains("ingest.max_future_ms")), "{v}");
    }
    let mut item = items()[0].clone();
    item["id"] = json!(7777);
    item["created_at"] = json!(u64::MAX);
    let r = s.client.put(s.u("/v1/items")).json(&vec![item]).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A little skew (a client clock a minute fast) is fine.
    let soon = edgewise_origin::http::now_ms() + 60_000;
    let e = json!([{"event_id": "soon", "user": 3, "item": 1005, "kind": "like", "time": soon, "region": 9}]);
    assert_eq!(s.client.post(s.u("/v1/events")).json(&e).send().await.expect("request").status(), StatusCode::OK);
    s.stop().await;
}

/// Regression (issue 13, defect 8): an item without `year` got 0 and topped
/// the feed. A missing feature now takes the schema's default (training
/// sets it to the mean), and the item keeps "missing" for later trainings.
#[tokio::test]
async fn a_missing_feature_takes_the_schemas_default() {
    let mut cfg = config(data_dir("defaults"));
    cfg.features.defaults.insert("popularity".into(), 0.42);
    let s = Server::start(cfg).await;
    let mut body = items()[..40].to_vec();
    for it in &mut body {
        it["features"] = json!({});
    }
    put_items(&s, &body).await;
    let got: Value = s.client.get(s.u("/v1/items/1001")).send().await.expect("request").json().await.expect("json");
    assert_eq!(got["features"], json!({}), "the item says what it was given");
    let bytes = s.client.get(s.u("/v1/regions/0/bundle?k=50")).send().await.expect("r").bytes().await.expect("body");
    let b = Bundle::decode(&bytes).expect("bundle");
    assert_eq!(b.len(), 36, "the 36 of the 40 items eligible in region 0");
    let pop = s.state.cfg.features.names.iter().position(|n| n == "popularity").expect("slot");
    assert!((0..b.len()).all(|i| b.feature(i, pop) == 0.42), "every row carries the default");
    s.stop().await;
}

/// Regression (issue 13, defect 11): the regional bundle cache was bounded by
/// entries, so varying `k` grew it without bound. `k` is now quantised to a
/// few buckets and the caches are bounded by bytes.
#[tokio::test]
async fn varying_k_cannot_fill_the_bundle_caches() {
    let s = Server::start(config(data_dir("kbuckets"))).await;
    put_items(&s, &items()).await;
    let mut etags = std::collections::HashSet::new();
    for k in 51..=100 {
        let r = s.client.get(s.u(&format!("/v1/regions/2/bundle?k={k}"))).send().await.expect("request");
        assert_eq!(r.status(), StatusCode::OK);
        etags.insert(r.headers()["etag"].to_str().expect("etag").to_string());
    }
    assert_eq!(etags.len(), 1, "50 values of k, one bundle (bucket 100)");
    let m = s.client.get(s.u("/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert_eq!(metric(&m, "edgewise_origin_bundle_cache_total{cache=\"regional\",result=\"miss\"}"), 1.0, "{m}");
    assert_eq!(edgewise_origin::http::regional_k(101, 5000), 200);
    assert_eq!(edgewise_origin::http::regional_k(4999, 1000), 1000, "capped at retrieval.max_k");
    s.stop().await;
}

/// The schemathesis release the contract test runs.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The `st` command of a virtualenv under the cache (`$EDGEWISE_CACHE`, else
/// `~/.cache/edgewise`) with schemathesis installed from PyPI on first use.
fn schemathesis() -> std::path::PathBuf {
    let cache = std::env::var_os("EDGEWISE_CACHE").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache").join("edgewise")
    });
    let venv = cache.join("schemathesis-4.32.5");
    let st = venv.join("bin").join("st");
    if !st.exists() {
        let run = |cmd: &mut std::process::Command, what: &str| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(out.status.success(), "{what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        };
        run(
            std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv (for schemathesis)",
        );
        run(
            std::process::Command::new(venv.join("bin").join("pip")).args(["install", "--quiet", SCHEMATHESIS]),
            "pip install schemathesis (from PyPI)",
        );
    }
    st
}

/// Regression (issue 13, defect 9): the OpenAPI document did not match the
/// responses (error bodies documented as batches, undocumented 401/429/503,
/// binary bodies as integer arrays, an undocumented `title`). schemathesis
/// now generates requests from `/openapi.json` and checks every response's
/// status, content type and JSON body against the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_match_the_openapi_document() {
    let st = tokio::task::spawn_blocking(schemathesis).await.expect("install task");
    let s = Server::start(config(data_dir("schemathesis"))).await;
    put_items(&s, &items()).await;
    click_events(&s, 1, (0..5).map(|n| 1000 + 6 * n), "st").await;
    let r = s.client.put(s.u("/v1/models")).bearer_auth(ADMIN).body(model_bytes(&s.state.cfg, 1)).send().await;
    assert_eq!(r.expect("model").status(), StatusCode::CREATED);
    // One credential per run, so that each run's "remove the credential"
    // checks remove the only one: the ingest key over the whole API (personal
    // routes must answer 401), the admin key over the uploads, and user 1's
    // token over the personal routes (other users' ids must answer 403).
    let runs: [(&str, String, &[&str]); 3] = [
        ("ingest key", format!("X-Api-Key: {INGEST}"), &[]),
        (
            "admin key",
            format!("X-Api-Key: {ADMIN}"),
            &["--include-method", "PUT", "--include-tag-regex", "models|modules"],
        ),
        ("user token", format!("Authorization: Bearer {}", tok(1)), &["--include-tag-regex", "bundles|ranking|events"]),
    ];
    let mut passed = 0;
    for (what, header, filter) in runs {
        let out = tokio::process::Command::new(&st)
            .args(["run", &s.u("/openapi.json"), "--checks", "all"])
            // Schema-valid data can still break rules the schema cannot state
            // (an embedding's length is the configured dimension; a token's
            // user is one user), so valid-looking requests may get a 4xx.
            .args(["--exclude-checks", "positive_data_acceptance"])
            // One worker: hypothesis's lambda descriptions call `ast.parse`,
            // which on CPython 3.11 fails at random when threads do it at once.
            .args(["--max-examples", "12", "--workers", "1", "--phases", "examples,coverage,fuzzing"])
            .args(["-H", &header])
            .args(filter)
            .env("NO_COLOR", "1")
            // schemathesis keeps a `.schemathesis/` folder in its working directory: not in the clone.
            .current_dir(std::env::temp_dir())
            .output()
            .await
            .expect("schemathesis runs");
        let report = String::from_utf8_lossy(&out.stdout);
        println!("== schemathesis with the {what}\n{report}");
        assert!(
            out.status.success(),
            "schemathesis ({what}) found responses the document does not describe:\n{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains(" generated"), "schemathesis ({what}) generated no test case:\n{report}");
        passed += 1;
    }
    assert_eq!(passed, 3);
    s.stop().await;
}

/// Issue 21: experiments are created, replaced, read and deleted with the
/// admin key, refused with the reason when invalid or overlapping, kept
/// across a restart, and each user's variant is the core's assignment.
#[tokio::test]
async fn experiments_are_validated_durable_and_assign_users_by_the_cores_rule() {
    let cfg = config(data_dir("experiments"));
    let s = Server::start(cfg.clone()).await;
    let now = edgewise_origin::http::now_ms();
    let url = |name: &str| s.u(&format!("/v1/experiments/{name}"));
    let put = |name: &'static str, body: Value| {
        let r = s.bare.put(url(name)).bearer_auth(ADMIN).json(&body);
        async move { r.send().await.expect("request") }
    };
    let ab = json!({
        "layer": "ranking",
        "variants": [{"name": "control", "percent": 50}, {"name": "wider", "percent": 50, "candidates": 300, "mmr_lambda": 0.7}],
        "ramp": [{"at_ms": now - 60_000, "percent": 30}, {"at_ms": now + 3_600_000, "percent": 100}],
        "start_ms": now - 60_000,
    });

    // Who may call it: the admin key only, checked before the body.
    assert_eq!(s.bare.put(url("ab")).json(&ab).send().await.expect("r").status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.client.put(url("ab")).json(&ab).send().await.expect("r").status(), StatusCode::FORBIDDEN);
    assert_eq!(s.bare.get(url("ab")).bearer_auth(INGEST).send().await.expect("r").status(), StatusCode::FORBIDDEN);

    let r = put("ab", ab.clone()).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    assert_eq!((v["phase"].as_str(), v["enrolled_percent"].as_f64()), (Some("running"), Some(30.0)), "{v}");
    let salt = v["experiment"]["salt"].as_u64().expect("a resolved salt");
    assert_eq!(salt, edgewise_origin::experiments::default_salt("ab"));
    assert_eq!(put("ab", ab.clone()).await.status(), StatusCode::OK, "a PUT of the same name replaces it");

    // Bad definitions: 400 naming the rule; an overlap on the layer: 409 naming the other experiment.
    let unknown_model = Digest::of(b"no such model").to_hex();
    for (body, want) in [
        (
            json!({"variants": [{"name": "a", "percent": 60}, {"name": "b", "percent": 30}], "start_ms": now}),
            "sum to 90, not 100",
        ),
        (
            json!({"variants": [{"name": "a", "percent": 100, "model": unknown_model}], "start_ms": now}),
            "not a registered model",
        ),
        (
            json!({"variants": [{"name": "a", "percent": 100}], "start_ms": now, "ramp": [{"at_ms": now, "percent": 50}, {"at_ms": now + 1, "percent": 10}]}),
            "never goes down",
        ),
        (json!({"variants": [{"name": "a", "percent": 100}], "start_ms": now, "stop_ms": now}), "after start_ms"),
        (
            json!({"variants": [{"name": "a", "percent": 100, "candidates": 100000}], "start_ms": now}),
            "candidates = 100000",
        ),
        (json!({"variants": [], "start_ms": now}), "1–16 variants"),
        (json!({"variants": [{"name": "a", "percent": 100}], "start_ms": now, "colour": "red"}), "unknown field"),
        (json!([1, 2]), "expected a JSON object"),
    ] {
        let r = put("bad", body).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{want}");
        let text = r.text().await.expect("body");
        assert!(text.contains(want), "{want}: {text}");
    }
    let r =
        put("other", json!({"layer": "ranking", "variants": [{"name": "a", "percent": 100}], "start_ms": now})).await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let e: Value = r.json().await.expect("json");
    assert!(
        e["error"].as_str().is_some_and(|m| m.contains("\"ab\"")),
        "the conflict names the running experiment: {e}"
    );
    assert_eq!(
        put("elsewhere", json!({"layer": "ui", "variants": [{"name": "a", "percent": 100}], "start_ms": now}))
            .await
            .status(),
        StatusCode::CREATED,
        "another layer is independent"
    );
    let bad_name = s.bare.put(url("Bad%20Name")).bearer_auth(ADMIN).json(&ab).send().await.expect("r");
    assert_eq!(bad_name.status(), StatusCode::BAD_REQUEST);

    // Each user's variant, with their own token, is the core's assignment.
    let alloc = [5_000u32, 5_000];
    let mut enrolled = 0;
    for user in 1..=150u64 {
        let r =
            s.bare.get(s.u(&format!("/v1/users/{user}/experiments"))).bearer_auth(tok(user)).send().await.expect("r");
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.expect("json");
        let ab =
            v["experiments"].as_array().expect("list").iter().find(|e| e["name"] == "ab").expect("ab runs").clone();
        let want = edgewise_core::experiment::assign(user, salt, 3_000, &alloc).expect("valid");
        let got = ab["index"].as_u64().map(|i| edgewise_core::experiment::Assignment::Variant(i as u8));
        assert_eq!(got.unwrap_or(edgewise_core::experiment::Assignment::Outside), want, "user {user}");
        enrolled += usize::from(got.is_some());
        if let Some(i) = ab["index"].as_u64() {
            assert_eq!(ab["variant"], ["control", "wider"][i as usize]);
        }
    }
    assert!((20..=70).contains(&enrolled), "about 30% of 150 users enrolled: {enrolled}");
    let r = s.bare.get(s.u("/v1/users/7/experiments")).bearer_auth(tok(8)).send().await.expect("r");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "another user's assignments need their token");

    // Durable: a restart keeps them; DELETE removes one.
    s.stop().await;
    let s = Server::start(cfg).await;
    let r = s.bare.get(s.u("/v1/experiments/ab")).bearer_auth(ADMIN).send().await.expect("r");
    assert_eq!(r.status(), StatusCode::OK, "kept across a restart");
    assert_eq!(r.json::<Value>().await.expect("json")["experiment"]["salt"], salt);
    let del = |name: &str| s.bare.delete(s.u(&format!("/v1/experiments/{name}"))).bearer_auth(ADMIN).send();
    assert_eq!(del("ab").await.expect("r").status(), StatusCode::NO_CONTENT);
    assert_eq!(del("ab").await.expect("r").status(), StatusCode::NOT_FOUND);
    let r = s.bare.get(s.u("/v1/experiments/ab")).bearer_auth(ADMIN).send().await.expect("r");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}
