//! The edge end to end over real sockets: a real origin (`edgewise-origin`'s
//! library, serving on 127.0.0.1) with items, a user's events and a
//! registered model, and the edge with the real core guest in front of it.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use edgewise_core::Region;
use edgewise_core::bundle::Bundle;
use edgewise_core::model::Model;
use edgewise_core::rank::{RankContext, RankOutput, Ranker};
use edgewise_edge::cache::Cache;
use edgewise_edge::feed::FeedConfig;
use edgewise_edge::guest::{self, GuestModule, Limits};
use edgewise_edge::server::{EdgeState, ServerSettings};
use edgewise_edge::tenants::Tenants;
use edgewise_http::admission::AdmissionConfig;
use edgewise_wire::ModelManifest;
use serde_json::{Value, json};

use crate::common::{
    FIXTURE_CLOCK_SKEW, NOW, SMALL as FIXTURE, USER_SECRET, hostile, serve_edge, user_token, user_tokens,
};

struct Rig {
    origin: String,
    edge: String,
    client: reqwest::Client,
    tenants: Arc<Tenants>,
}

/// The edge's admin key in these tests.
const EDGE_ADMIN: &str = "edge-admin";

/// The edge settings of the rigs: the fixture's user tokens and an admin key.
fn settings() -> ServerSettings {
    ServerSettings { admin_keys: vec![EDGE_ADMIN.into()], user_tokens: user_tokens(), ..ServerSettings::default() }
}

async fn rig(name: &str) -> Rig {
    rig_with(name, None, settings(), None, Limits::default()).await
}

/// A rig whose edge runs `module` (WAT-built bytes) instead of the real
/// guest. Its client sends user 7's token with every request.
async fn rig_with(
    name: &str,
    wasm: Option<Vec<u8>>,
    limits: ServerSettings,
    key: Option<VerifyingKey>,
    limits_sandbox: Limits,
) -> Rig {
    let origin = FIXTURE.start(&format!("feed-{name}")).await.expect("the origin starts with its data");
    let mut auth = reqwest::header::HeaderMap::new();
    auth.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {}", user_token(7))).expect("header"),
    );
    let client = reqwest::Client::builder().default_headers(auth).build().expect("client");

    let path = guest::default_module_path();
    let wasm = wasm.unwrap_or_else(|| {
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (build it with `cargo xtask guest`)", path.display()))
    });
    let engine = guest::sandboxed_engine(&limits_sandbox).expect("engine");
    let module = GuestModule::sandboxed(&engine, &wasm, limits_sandbox).expect("guest compiles");
    let tenants = Tenants::builder()
        .default_module(module, path.display().to_string())
        .sandbox(engine, limits_sandbox)
        .public_key(key)
        .build()
        .expect("metrics");
    let tenants = Arc::new(tenants);
    let state = Arc::new(
        EdgeState::new(
            Cache::new(&origin, 64 << 20, Duration::from_secs(5)).expect("cache"),
            tenants.clone(),
            FeedConfig {
                refine_deadline: Duration::from_secs(5),
                candidates: 100,
                max_clock_skew: FIXTURE_CLOCK_SKEW,
                ..FeedConfig::default()
            },
            limits,
        )
        .expect("state"),
    );
    let edge = serve_edge(state).await.expect("the edge listens");
    Rig { origin, edge, client, tenants }
}

/// The origin's current model.
async fn current_model(rig: &Rig) -> Model {
    let current: ModelManifest = rig
        .client
        .get(format!("{}{}", rig.origin, edgewise_wire::paths::MODEL_CURRENT))
        .send()
        .await
        .expect("m")
        .json()
        .await
        .expect("the model manifest");
    Model::decode(&origin_bytes(rig, &edgewise_wire::paths::model(&current.digest)).await).expect("model decodes")
}

/// Fetches the origin's bytes at `path` with the rig's client (user 7's token).
async fn origin_bytes(rig: &Rig, path: &str) -> Vec<u8> {
    let r = rig.client.get(format!("{}{path}", rig.origin)).send().await.expect("origin");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.bytes().await.expect("bytes").to_vec()
}

/// Ranks `bundle` natively with `model` and `ctx`: (id, score) per item.
fn rank_natively(model: &Model, bundle: &[u8], ctx: &RankContext) -> Vec<(u64, f32)> {
    let b = Bundle::decode(bundle).expect("decodes");
    let mut out = RankOutput::default();
    Ranker::new().rank(model, &b, ctx, &mut out).expect("native ranks");
    out.items.iter().map(|i| (i.id, i.score)).collect()
}

/// Ranks the origin's copy of a bundle natively, with the same context.
async fn native(rig: &Rig, digest: &str, ctx: &RankContext) -> Vec<(u64, f32)> {
    let bytes = origin_bytes(rig, &format!("/v1/bundles/{digest}")).await;
    rank_natively(&current_model(rig).await, &bytes, ctx)
}

fn items(frame: &Value) -> Vec<(u64, f32)> {
    frame["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| (i["id"].as_u64().expect("id"), i["score"].as_f64().expect("score") as f32))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_equals_the_native_ranking_of_the_same_bundle_and_context() {
    let rig = rig("equal").await;
    let seen = vec![2u64, 3, 5];
    let body = json!({"seen": seen, "now_ms": NOW});
    let r =
        rig.client.post(format!("{}/v1/feed?user=7&region=0&k=10", rig.edge)).json(&body).send().await.expect("feed");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-edgewise-feed").is_none(), "the refined result arrived within the deadline");
    let f: Value = r.json().await.expect("json");
    assert_eq!(f["frame"], "refined");
    assert_eq!(f["ranked_by"], "guest");
    let got = items(&f);
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|(id, _)| !seen.contains(id)), "seen items are filtered");
    let mut ctx = RankContext::new(10, NOW);
    ctx.region = Region::new(0).ok();
    ctx.seen = seen.clone();
    let want = native(&rig, f["bundle_digest"].as_str().expect("digest"), &ctx).await;
    assert_eq!(got, want, "the guest at the edge ranks exactly as the native core");

    // A client's stored history (EWHS, base64) is read and ranked with, as natively.
    let mut with_history = ctx.clone();
    for l in 0..5u64 {
        let e: Vec<f32> = (0..64).map(|j| ((j as u64 * 7 + l * 13) % 11) as f32 - 5.0).collect();
        with_history.history.push(100 + l, NOW - 60_000 * (l + 1), 1, &e).expect("history entry");
    }
    use base64::Engine as _;
    let stored = base64::engine::general_purpose::STANDARD.encode(with_history.history.encode());
    let r = rig
        .client
        .post(format!("{}/v1/feed?user=7&region=0&k=10", rig.edge))
        .json(&json!({"seen": seen, "now_ms": NOW, "history": stored}))
        .send()
        .await
        .expect("feed");
    assert_eq!(r.status(), 200);
    let f: Value = r.json().await.expect("json");
    let want = native(&rig, f["bundle_digest"].as_str().expect("digest"), &with_history).await;
    assert_eq!(items(&f), want, "the feed ranks with the history the client sent");

    let counter = |name: &'static str| {
        let rig = &rig;
        async move {
            let m = rig.client.get(format!("{}/metrics", rig.edge)).send().await.expect("metrics");
            let text = m.text().await.expect("text");
            text.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        }
    };
    const REFINED: &str = "edgewise_edge_feeds_total{answer=\"refined\"}";
    const PRELIMINARY: &str = "edgewise_edge_feeds_total{answer=\"preliminary\"}";

    // NDJSON: two frames, and the shown preliminary items keep their places.
    let refined_before = counter(REFINED).await;
    let r = rig
        .client
        .post(format!("{}/v1/feed?user=7&region=0&k=10&shown=3", rig.edge))
        .header("accept", "application/x-ndjson")
        .json(&body)
        .send()
        .await
        .expect("feed");
    assert_eq!(r.headers()["content-type"], "application/x-ndjson");
    let text = r.text().await.expect("body");
    let frames: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON frame")).collect();
    assert_eq!(frames.len(), 2, "{text}");
    assert_eq!((frames[0]["frame"].as_str(), frames[1]["frame"].as_str()), (Some("preliminary"), Some("refined")));
    for f in &frames {
        assert!(f["bundle_cache"].is_string() && f["bundle_digest"].as_str().is_some_and(|d| d.len() == 64), "{f}");
        assert!(f["timings_ms"]["rank"].as_f64().is_some(), "{f}");
    }
    let pre: Vec<u64> = items(&frames[0]).iter().map(|i| i.0).collect();
    let merged: Vec<u64> =
        frames[1]["merged"].as_array().expect("merged").iter().map(|v| v.as_u64().expect("id")).collect();
    assert_eq!(&merged[..3], &pre[..3], "items already shown never jump");
    assert_eq!(merged.len(), 10);
    let uniq: std::collections::HashSet<_> = merged.iter().collect();
    assert_eq!(uniq.len(), 10, "no duplicates");
    assert_eq!(counter(REFINED).await, refined_before + 1, "a streamed answer is counted too");
    // The regional bundle came from the cache the second time.
    let r = rig.client.get(format!("{}/v1/feed?user=7&region=0&k=10", rig.edge)).send().await.expect("feed");
    assert_eq!(r.status(), 200);

    // refine=false: the preliminary ranking alone, from the cache, without a request to the origin.
    let origin_requests = || async {
        let m = rig.client.get(format!("{}/metrics", rig.edge)).send().await.expect("metrics");
        let text = m.text().await.expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix("edgewise_edge_origin_requests_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("the origin request counter")
    };
    let before = origin_requests().await;
    let preliminary_before = counter(PRELIMINARY).await;
    let r = rig
        .client
        .post(format!("{}/v1/feed?user=7&region=0&k=10&refine=false", rig.edge))
        .header("accept", "application/x-ndjson")
        .json(&body)
        .send()
        .await
        .expect("feed");
    let text = r.text().await.expect("body");
    let frames: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).expect("a JSON frame")).collect();
    assert_eq!(frames.len(), 1, "one frame: {text}");
    assert_eq!((frames[0]["frame"].as_str(), frames[0]["bundle_cache"].as_str()), (Some("preliminary"), Some("hit")));
    assert_eq!(items(&frames[0]).iter().map(|i| i.0).collect::<Vec<_>>(), pre, "the same preliminary ranking");
    assert_eq!(counter(PRELIMINARY).await, preliminary_before + 1, "a one-frame stream is a preliminary answer");
    let r = rig.client.get(format!("{}/v1/feed?user=7&region=0&k=10&refine=0", rig.edge)).send().await.expect("feed");
    assert_eq!(r.headers().get("x-edgewise-feed").and_then(|v| v.to_str().ok()), Some("preliminary"));
    assert_eq!(r.json::<Value>().await.expect("json")["frame"], "preliminary");
    assert_eq!(origin_requests().await, before, "refine=false never reaches the origin when the bundle is cached");
}

/// POSTs a feed request asking for NDJSON; its frames.
async fn ndjson(request: reqwest::RequestBuilder, body: &Value) -> Vec<Value> {
    let r = request.header("accept", "application/x-ndjson").json(body).send().await.expect("feed");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    text.lines().map(|l| serde_json::from_str(l).expect("a JSON frame")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_kept_bundle_makes_their_next_preliminary_frame_personal() {
    let rig = rig("kept").await;
    let body = json!({"seen": [2, 3], "now_ms": NOW});
    let url = format!("{}/v1/feed?user=7&region=0&k=10", rig.edge);
    let first = ndjson(rig.client.post(&url), &body).await;
    assert_eq!(first.len(), 2);
    assert!(first[0].get("kept_bundle").is_none(), "nothing kept before the user's first refined frame: {}", first[0]);
    let personal = first[1]["bundle_digest"].as_str().expect("digest").to_string();

    let second = ndjson(rig.client.post(&url), &body).await;
    let pre = &second[0];
    assert_eq!(pre["kept_bundle"].as_str(), Some(personal.as_str()), "the last refined bundle is kept: {pre}");
    assert_eq!(pre["bundle_digest"], first[0]["bundle_digest"], "merged with the same regional bundle");
    // The edge ranked the kept rows, then the regional ones they lack, with
    // the user's embedding the kept bundle carries: natively the same.
    let kept = origin_bytes(&rig, &format!("/v1/bundles/{personal}")).await;
    let regional =
        origin_bytes(&rig, &edgewise_wire::paths::regional_bundle(Region::new(0).expect("region"), 100)).await;
    let (k, g) = (Bundle::decode(&kept).expect("kept"), Bundle::decode(&regional).expect("regional"));
    assert!(k.user_embedding().is_some(), "a personal bundle carries its user's embedding");
    let local = edgewise_core::bundle::union(&k, &g, NOW).expect("union");
    let mut ctx = RankContext::new(10, NOW);
    ctx.region = Region::new(0).ok();
    ctx.seen = vec![2, 3];
    let want = rank_natively(&current_model(&rig).await, &local, &ctx);
    assert_eq!(items(pre), want, "the preliminary frame ranks the kept bundle merged with the regional one");

    // Another user gets nothing of user 7's: their first preliminary frame keeps nothing.
    let other = reqwest::Client::new();
    let url8 = format!("{}/v1/feed?user=8&region=0&k=10", rig.edge);
    let frames8 = ndjson(other.post(url8).bearer_auth(user_token(8)), &body).await;
    let first8 = frames8.first().expect("a frame");
    assert!(first8.get("kept_bundle").is_none(), "user 8 never sees user 7's kept bundle: {first8}");
    // And an anonymous feed never ranks a kept bundle.
    let anon = other.get(format!("{}/v1/feed?region=0&k=10", rig.edge)).send().await.expect("feed");
    assert!(anon.json::<Value>().await.expect("json").get("kept_bundle").is_none());

    let metrics = rig.client.get(format!("{}/metrics", rig.edge)).send().await.expect("m").text().await.expect("t");
    let count = |outcome: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("edgewise_edge_feed_kept_bundles_total{{outcome=\"{outcome}\"}} ")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!((count("merged"), count("stored"), count("none")), (1, 3, 2), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feed_requests_get_a_4xx_that_names_the_problem() {
    let rig = rig("bad").await;
    for (q, body, want) in [
        ("user=x", None, "not a user id"),
        ("user=7&user=8", None, "more than once"),
        ("user=7&colour=red", None, "unknown query parameter"),
        ("user=7&region=40", None, "region"),
        ("user=7&k=0", None, "k = 0"),
        ("user=7&refine=maybe", None, "refine"),
        ("user=7", Some("{\"seen\": \"no\"}"), "invalid feed body"),
        ("user=7", Some("{\"session\": \"!!\"}"), "base64"),
        ("user=7", Some("{\"history\": \"!!\"}"), "history is not base64"),
        ("user=7", Some("{\"history\": \"AAAA\"}"), "history: "),
        ("user=7", Some("[1, 2]"), "invalid feed body"),
        // A request time 56 years from the edge's clock (issue 13, defect 6 at the edge).
        ("user=7", Some("{\"now_ms\": 1}"), "feed.max_clock_skew_ms"),
    ] {
        let mut r = rig.client.post(format!("{}/v1/feed?{q}", rig.edge));
        if let Some(b) = body {
            r = r.header("content-type", "application/json").body(b);
        }
        let r = r.send().await.expect("edge answers");
        assert_eq!(r.status(), 400, "{q}");
        let text = r.text().await.expect("body");
        assert!(text.contains(want), "{q}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_guest_fails_only_its_ranking_and_the_feed_falls_back() {
    let cases = [
        ("loop", "(loop $l (br $l)) i32.const 0", "deadline"),
        ("grow", "(loop $l (drop (memory.grow (i32.const 16))) (br $l)) i32.const 0", "deadline"),
        ("trap", "unreachable", "trap"),
    ];
    for (name, body, kind) in cases {
        let rig = rig_with(name, Some(hostile(body)), settings(), None, Limits::default()).await;
        for round in 0..2 {
            let start = std::time::Instant::now();
            let r = rig
                .client
                .post(format!("{}/v1/feed?user=7&region=0&k=10", rig.edge))
                .json(&json!({"seen": [2], "now_ms": NOW}))
                .send()
                .await
                .expect("the edge answers");
            assert_eq!(r.status(), 200, "{name}: the feed still answers");
            let f: Value = r.json().await.expect("json");
            assert_eq!(f["ranked_by"], "retrieval-order", "{name}: {f}");
            let got = items(&f);
            assert_eq!(got.len(), 10, "{name}");
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "{name}: retrieval order: {got:?}");
            // The guest's 10 ms deadline and the fallback keep this far below the
            // bound, which only proves the feed did not hang on the guest.
            assert!(start.elapsed() < Duration::from_secs(10), "{name} round {round}: took {:?}", start.elapsed());
        }
        assert!(rig.tenants.failures(kind) >= 2, "{name}: failures are counted as {kind}");
        let metrics = rig.client.get(format!("{}/metrics", rig.edge)).send().await.expect("m").text().await.expect("t");
        assert!(metrics.contains(&format!("edgewise_edge_guest_failures_total{{kind=\"{kind}\"}}")), "{metrics}");
        assert!(metrics.contains("edgewise_edge_cache_hit_ratio"), "{metrics}");
        // Regression (issue 13, defect 5): /readyz said ready while every feed fell back.
        let ready = rig.client.get(format!("{}/readyz", rig.edge)).send().await.expect("readyz");
        assert_eq!(ready.status(), 503, "{name}: a tenant that cannot rank makes the edge unready");
        let v: Value = ready.json().await.expect("json");
        assert_eq!(v["tenants"]["default"]["can_rank"], false, "{name}: {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_gets_413() {
    let limits =
        ServerSettings { admission: AdmissionConfig { max_body_bytes: 1024, ..settings().admission }, ..settings() };
    let rig = rig_with("limits", None, limits, None, Limits::default()).await;
    let seen: Vec<u64> = (0..1000).collect();
    let r = rig
        .client
        .post(format!("{}/v1/feed?user=7", rig.edge))
        .json(&json!({"seen": seen}))
        .send()
        .await
        .expect("edge answers");
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.expect("a JSON error body");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("1024")), "{v}");
    let ready = rig.client.get(format!("{}/readyz", rig.edge)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200, "ready: a module is loaded");
    let v: Value = ready.json().await.expect("json");
    assert_eq!((v["ready"].as_bool(), v["tenants"]["default"]["can_rank"].as_bool()), (Some(true), Some(true)), "{v}");
}

/// The real guest with a custom section appended: the same code under another digest.
fn variant(tag: &str) -> Vec<u8> {
    let path = guest::default_module_path();
    let mut wasm =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (build it with `cargo xtask guest`)", path.display()));
    let name = format!("edgewise-test-{tag}");
    let mut payload = vec![name.len() as u8];
    payload.extend(name.as_bytes());
    payload.extend(b"payload");
    wasm.push(0); // custom section id
    wasm.push(payload.len() as u8); // LEB128, < 128
    wasm.extend(payload);
    wasm
}

async fn upload(rig: &Rig, wasm: &[u8], signer: Option<&SigningKey>) -> String {
    let (status, body) = try_upload(rig, wasm, signer).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).expect("json")["digest"].as_str().expect("digest").to_string()
}

async fn try_upload(rig: &Rig, wasm: &[u8], signer: Option<&SigningKey>) -> (u16, String) {
    let mut r = rig.client.put(format!("{}/v1/modules", rig.origin)).bearer_auth("admin").body(wasm.to_vec());
    if let Some(k) = signer {
        use base64::Engine as _;
        r = r.header("x-edgewise-signature", base64::engine::general_purpose::STANDARD.encode(k.sign(wasm).to_bytes()));
    }
    let r = r.send().await.expect("upload");
    (r.status().as_u16(), r.text().await.expect("body"))
}

async fn swap(rig: &Rig, tenant: &str, digest: &str) -> (u16, String) {
    let r = rig
        .client
        .put(format!("{}/admin/modules/{tenant}", rig.edge))
        .bearer_auth(EDGE_ADMIN)
        .json(&json!({"digest": digest}))
        .send()
        .await
        .expect("edge answers");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_come_from_the_origin_verified_and_swap_under_load() {
    let operator = SigningKey::from_bytes(&[9; 32]);
    // A generous deadline: this test is about swapping, and a loaded CI machine must not turn
    // rankings into deadline fallbacks.
    let generous = Limits { deadline: Duration::from_secs(5), ..Limits::default() };
    let rig = rig_with("modules", None, settings(), Some(operator.verifying_key()), generous).await;
    let a = upload(&rig, &variant("a"), Some(&operator)).await;
    let b = upload(&rig, &variant("b"), Some(&operator)).await;
    let unsigned = upload(&rig, &variant("c"), None).await;
    let forged = upload(&rig, &variant("d"), Some(&SigningKey::from_bytes(&[1; 32]))).await;

    let (st, body) = swap(&rig, "default", &unsigned).await;
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("not signed"), "{body}");
    let (st, body) = swap(&rig, "default", &forged).await;
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("bad signature"), "{body}");
    // Regression (issue 13, defect 10): an unknown digest was a 502, as if the origin had failed.
    let (st, body) = swap(&rig, "default", &"0".repeat(64)).await;
    assert_eq!(st, 422, "an unknown module: {body}");
    assert!(body.contains("not available from the origin"), "{body}");
    let (st, body) = swap(&rig, "default", "nothex").await;
    assert_eq!(st, 422, "{body}");

    // A load runs while the module is swapped back and forth; no request fails.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for w in 0..4u64 {
        let (client, edge, stop) = (rig.client.clone(), rig.edge.clone(), stop.clone());
        load.spawn(async move {
            let mut done = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || done < 5 {
                let r = client
                    .post(format!("{edge}/v1/feed?user=7&region=0&k=10"))
                    .json(&json!({"seen": [w], "now_ms": NOW}))
                    .send()
                    .await
                    .expect("the edge answers");
                assert_eq!(r.status(), 200);
                let f: Value = r.json().await.expect("json");
                assert_eq!(f["ranked_by"], "guest", "every request is ranked by a guest: {f}");
                done += 1;
            }
            done
        });
    }
    for round in 0..10 {
        let d = if round % 2 == 0 { &a } else { &b };
        let (st, body) = swap(&rig, "default", d).await;
        assert_eq!(st, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let served: u32 = load.join_all().await.into_iter().sum();
    assert!(served >= 20, "the load ran: {served} requests");
    assert_eq!(rig.tenants.tenants(), vec![("default".to_string(), format!("origin:{b}"))]);

    // Another tenant gets its own module.
    let (st, _) = swap(&rig, "tenant-2", &a).await;
    assert_eq!(st, 200);
    let r = rig.client.get(format!("{}/v1/feed?user=7&k=5&tenant=tenant-2", rig.edge)).send().await.expect("feed");
    assert_eq!(r.json::<Value>().await.expect("json")["ranked_by"], "guest");
}

/// Regression (issue 13, defect 4, at the edge): a personal feed was anyone's
/// to read. Anonymous feeds stay open; a user's feed needs that user's token,
/// checked at the edge before anything reaches the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_feeds_are_open_and_personal_ones_need_the_users_token() {
    let rig = rig("tokens").await;
    let anon = reqwest::Client::new();
    let r = anon.get(format!("{}/v1/feed?region=0&k=5", rig.edge)).send().await.expect("feed");
    assert_eq!(r.status(), 200, "an anonymous feed needs no token");
    let f: Value = r.json().await.expect("json");
    assert_eq!((f["frame"].as_str(), f["ranked_by"].as_str()), (Some("preliminary"), Some("guest")), "{f}");
    let r = anon
        .get(format!("{}/v1/feed?k=5", rig.edge))
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .expect("feed");
    assert_eq!(r.text().await.expect("body").lines().count(), 1, "an anonymous feed has no refined frame");

    let origin_requests = || async {
        let text = anon.get(format!("{}/metrics", rig.edge)).send().await.expect("m").text().await.expect("t");
        text.lines()
            .find_map(|l| l.strip_prefix("edgewise_edge_origin_requests_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("the origin request counter")
    };
    let before = origin_requests().await;
    let expired = edgewise_http::auth::mint_hs256(
        USER_SECRET.as_bytes(),
        &edgewise_http::auth::TokenSpec { issued_at: 1_000, ..edgewise_http::auth::TokenSpec::new(7, 60) },
    )
    .expect("mint");
    let forged = edgewise_http::auth::mint_hs256(
        b"a secret the edge has never heard of!!",
        &edgewise_http::auth::TokenSpec::new(7, 60),
    )
    .expect("mint");
    for (token, status, why) in [
        (None, 401, "missing"),
        (Some(user_token(8)), 403, "issued for user 8"),
        (Some(expired), 401, "expired"),
        (Some(forged), 401, "signature"),
        (Some("not-a-jwt".to_string()), 401, "not a JWT"),
    ] {
        let mut r = anon.get(format!("{}/v1/feed?user=7&region=0&k=5", rig.edge));
        if let Some(t) = &token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.expect("feed");
        assert_eq!(r.status(), status, "{why}");
        if status == 401 {
            assert!(r.headers().get("www-authenticate").is_some(), "{why}: a 401 carries a challenge");
        }
        let body = r.text().await.expect("body");
        if why != "missing" {
            assert!(body.contains(why), "{why}: {body}");
        }
    }
    assert_eq!(origin_requests().await, before, "refused requests never reach the origin");
    let r = anon.get(format!("{}/v1/feed?user=7&region=0&k=5", rig.edge)).bearer_auth(user_token(7)).send().await;
    let f: Value = r.expect("feed").json().await.expect("json");
    assert_eq!(f["frame"], "refined", "the user's own token gets the refined feed: {f}");
}

/// Regression (issue 13, defect 5): without `--admin-key` the admin routes were
/// open, and a swap accepted a module that could never rank.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_disabled_without_a_key_and_a_swap_must_rank() {
    let open =
        rig_with("noadmin", None, ServerSettings { admin_keys: vec![], ..settings() }, None, Limits::default()).await;
    for (method, path, body) in [
        ("PUT", "/admin/modules/default", json!({"digest": "0".repeat(64)})),
        ("POST", "/admin/purge", json!({"surrogate_key": "x"})),
    ] {
        let r = open
            .client
            .request(method.parse().expect("method"), format!("{}{path}", open.edge))
            .bearer_auth("anything")
            .json(&body)
            .send()
            .await
            .expect("edge answers");
        assert_eq!(r.status(), 403, "{method} {path}");
        assert!(r.text().await.expect("body").contains("server.admin_keys"), "{method} {path}: says how to enable it");
    }

    let rig = rig("canary").await;
    // The origin refuses modules an edge could never run.
    let (st, body) = try_upload(&rig, &wat::parse_str("(module)").expect("wat"), None).await;
    assert_eq!(st, 422, "a module without the guest's exports: {body}");
    // One that has every export but traps when it ranks passes the origin's checks; the edge's canary refuses it.
    let trapping = upload(&rig, &hostile("unreachable"), None).await;
    let (st, body) = swap(&rig, "default", &trapping).await;
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("cannot rank"), "{body}");
    let ready = rig.client.get(format!("{}/readyz", rig.edge)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200, "the old module keeps serving");
    let r = rig.client.get(format!("{}/v1/feed?user=7&k=5", rig.edge)).send().await.expect("feed");
    assert_eq!(r.json::<Value>().await.expect("json")["ranked_by"], "guest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_passes_a_users_events_to_the_origin_and_lets_listed_pages_call_it() {
    let page = "http://app.example:8080";
    let rig = rig_with(
        "events",
        None,
        ServerSettings { cors_origins: vec![page.into()], ..settings() },
        None,
        Limits::default(),
    )
    .await;
    let anon = reqwest::Client::new();
    let url = format!("{}{}", rig.edge, edgewise_wire::paths::EVENTS);
    let event = |id: &str, user: u64| {
        format!(r#"{{"event_id":"{id}","user":{user},"item":5,"kind":"like","time":{NOW},"region":0}}"#) + "\n"
    };

    // No token: refused at the edge, before the origin is asked.
    let r = anon.post(&url).body(event("x1", 7)).send().await.expect("post");
    assert_eq!(r.status(), 401, "{}", r.text().await.unwrap_or_default());

    // User 7's token: applied once, then a duplicate (the origin's idempotency, through the edge).
    for want in ["applied", "duplicate"] {
        let r = rig
            .client
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .body(event("edge-e1", 7))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["results"][0]["status"], want, "{v}");
    }

    // Another user's event under user 7's token: the origin refuses it, and the edge says so.
    let r = rig.client.post(&url).body(event("edge-e2", 8)).send().await.expect("post");
    assert_eq!(r.status(), 403, "{}", r.text().await.unwrap_or_default());

    // A listed page's preflight is answered without a token; its reads expose the validators.
    let pre = anon
        .request(reqwest::Method::OPTIONS, format!("{}/v1/regions/0/bundle?k=50", rig.edge))
        .header("origin", page)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization, if-none-match")
        .send()
        .await
        .expect("preflight");
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(pre.headers()["access-control-allow-origin"], page);
    let allowed = pre.headers()["access-control-allow-headers"].to_str().expect("ascii").to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("if-none-match"), "{allowed}");
    let got =
        anon.get(format!("{}/v1/regions/0/bundle?k=50", rig.edge)).header("origin", page).send().await.expect("bundle");
    assert!(got.status().is_success());
    let exposed = got.headers()["access-control-expose-headers"].to_str().expect("ascii").to_ascii_lowercase();
    for h in ["etag", "x-edgewise-cache", "x-edgewise-bundle-digest"] {
        assert!(exposed.contains(h), "{h} in {exposed}");
    }
    // A page that is not listed gets no CORS grant.
    let other = anon
        .get(format!("{}/v1/regions/0/bundle?k=50", rig.edge))
        .header("origin", "http://evil.example")
        .send()
        .await
        .expect("bundle");
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
