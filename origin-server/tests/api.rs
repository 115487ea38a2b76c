//! The origin's HTTP API over a real socket: a server on 127.0.0.1:0 with its
//! own data directory, driven by reqwest.

use std::path::PathBuf;
use std::sync::Arc;

use edgewise_core::bundle::{Bundle, SOURCE_NAMES, Scope};
use edgewise_core::synth;
use edgewise_origin::{AppState, Config};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const DIM: usize = 16;

struct Server {
    url: String,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    client: Client,
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
        Self { url, state, stop: Some(tx), task: Some(task), client: Client::new() }
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

async fn click_events(s: &Server, user: u64, items: impl Iterator<Item = u64>, prefix: &str) -> Value {
    let now = edgewise_origin::http::now_ms();
    let evs: Vec<Value> = items
        .enumerate()
        .map(|(n, it)| {
            json!({"event_id": format!("{prefix}-{n}"), "user": user, "item": it, "kind": "click", "time": now - 60_000 + n as u64, "region": 1})
        })
        .collect();
    // Servers without ingest keys accept any key; the auth test configures this one.
    let r = s.client.post(s.u("/v1/events")).bearer_auth("ingest-secret").json(&evs).send().await.expect("request");
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
        let mut rb = s.client.request(method.clone(), s.u(path));
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

    let r = s.client.get(s.u("/v1/users/7/candidates?k=40&region=1")).send().await.expect("request");
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
    let r = s.client.get(s.u("/v1/users/424242/candidates?k=60")).send().await.expect("request");
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
    assert_eq!(b.len(), 40);

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
    let r = s.client.get(s.u("/v1/users/9/candidates?k=40")).send().await.expect("request");
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
    let bytes =
        s.client.get(s.u("/v1/users/5/candidates?k=100")).send().await.expect("request").bytes().await.expect("body");
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
    let mut cfg = config(data_dir("models"));
    cfg.auth.admin_keys = vec!["admin-secret".into()];
    cfg.auth.ingest_keys = vec!["ingest-secret".into()];
    let s = Server::start(cfg.clone()).await;
    let c = &s.client;

    // Keys.
    let r = c.put(s.u("/v1/items")).json(&items()).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.put(s.u("/v1/items")).bearer_auth("ingest-secret").json(&items()).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let (m1, m2) = (model_bytes(&cfg, 1), model_bytes(&cfg, 2));
    assert_eq!(
        c.put(s.u("/v1/models")).body(m1.clone()).send().await.expect("request").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        c.put(s.u("/v1/models")).bearer_auth("ingest-secret").body(m1.clone()).send().await.expect("request").status(),
        StatusCode::UNAUTHORIZED
    );

    // No model yet.
    assert_eq!(c.get(s.u("/v1/models/current")).send().await.expect("request").status(), StatusCode::NOT_FOUND);
    let r = c.post(s.u("/v1/rank")).json(&json!({"user": 1})).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::CONFLICT);

    // Bad models are refused with the reason.
    let bad = c.put(s.u("/v1/models")).bearer_auth("admin-secret").body("junk").send().await.expect("request");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let mut other = cfg.clone();
    other.features.names = vec!["year".into(), "popularity".into()];
    let r = c
        .put(s.u("/v1/models"))
        .bearer_auth("admin-secret")
        .body(model_bytes(&other, 1))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.expect("text").contains("feature-schema hash"));

    // Stable, then a 50% canary.
    let r = c.put(s.u("/v1/models")).bearer_auth("admin-secret").body(m1.clone()).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::CREATED);
    let d1 = r.json::<Value>().await.expect("json")["digest"].as_str().expect("digest").to_string();
    let r = c
        .put(s.u("/v1/models?rollout=canary&percent=50"))
        .bearer_auth("admin-secret")
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
                .send()
                .await
                .expect("request")
                .bytes()
                .await
                .expect("body");
            let b = Bundle::decode(&bytes).expect("bundle");
            assert_eq!(edgewise_core::model::digest_hex(&b.header().model_digest), d);
        }
    }
    assert!((70..130).contains(&on_canary), "{on_canary} of 200 users on a 50% canary");

    // Ranking at the origin, explained.
    click_events(&s, 3, (0..4).map(|n| 1000 + 6 * n), "rank").await;
    let r = c
        .post(s.u("/v1/rank"))
        .bearer_auth("ingest-secret")
        .json(&json!({"user": 3, "region": 1, "k": 10, "candidates": 80}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["items"].as_array().expect("items").len(), 10);
    assert_eq!(v["candidates"], 80);
    assert_eq!(v["stages"]["selected"], 10, "{v}");
    let explained: u64 = v["stages"].as_object().expect("stages").values().filter_map(Value::as_u64).sum();
    assert_eq!(explained, 80, "every candidate's fate is explained: {v}");
    let first = &v["items"][0];
    for key in ["id", "score", "pre_score", "main_score", "mmr_penalty", "sources"] {
        assert!(!first[key].is_null(), "{key} missing in {first}");
    }
    for (body, want) in [
        (json!({"user": 3, "k": 0}), StatusCode::BAD_REQUEST),
        (json!({"user": 3, "region": 99}), StatusCode::BAD_REQUEST),
        (json!({"user": "x"}), StatusCode::BAD_REQUEST),
        (json!({"user": 3, "colour": 1}), StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(c.post(s.u("/v1/rank")).json(&body).send().await.expect("request").status(), want, "{body}");
    }
    s.stop().await;

    // The manifest survives a restart.
    let s = Server::start(cfg).await;
    let v: Value = s.client.get(s.u("/v1/models/current")).send().await.expect("request").json().await.expect("json");
    assert_eq!(v["stable"], d1.as_str());
    assert_eq!(v["canary"]["digest"], d2.as_str());
    s.stop().await;
}

#[tokio::test]
async fn deletes_trigger_background_rebuilds_and_never_resurface() {
    let s = Server::start(config(data_dir("rebuild"))).await;
    put_items(&s, &items()).await;
    for id in 1000..1120u64 {
        let r = s
            .client
            .delete(s.u(&format!("/v1/items/{id}")))
            .bearer_auth("ingest-secret")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    // The rebuilds run in the background; wait for them to swap in.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.state.catalogue.shards_to_rebuild(s.state.cfg.index.rebuild_deleted_ratio).is_empty() {
        assert!(std::time::Instant::now() < deadline, "rebuilds never finished");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(s.state.catalogue.index.len(), 180);
    let bytes =
        s.client.get(s.u("/v1/users/77/candidates?k=200")).send().await.expect("request").bytes().await.expect("body");
    let b = Bundle::decode(&bytes).expect("bundle");
    assert_eq!(b.len(), 180, "every live item, and only live items");
    assert!((0..b.len()).all(|i| b.id(i) >= 1120));
    s.stop().await;
}
