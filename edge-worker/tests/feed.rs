//! The edge end to end over real sockets: a real origin (`edgewise-origin`'s
//! library, serving on 127.0.0.1) with items, a user's events and a
//! registered model, and the edge with the real core guest in front of it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{NOW, OriginFixture, hostile, serve_edge};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use edgewise_core::bundle::Bundle;
use edgewise_core::model::Model;
use edgewise_core::rank::{RankContext, RankOutput, Ranker};
use edgewise_edge::cache::Cache;
use edgewise_edge::feed::{FeedConfig, Ranking};
use edgewise_edge::guest::{self, GuestModule, Limits};
use edgewise_edge::server::{EdgeState, ServerLimits};
use serde_json::{Value, json};

/// Small enough for many tests: 300 items of dimension 8.
const FIXTURE: OriginFixture = OriginFixture {
    dim: 8,
    items: 300,
    creators: 13,
    clusters: 4,
    events: 6,
    stride: 4,
    shards: 1,
    hidden: 4,
    prerank_keep: 100,
    creator_cap: 0,
};

struct Rig {
    origin: String,
    edge: String,
    client: reqwest::Client,
    ranking: Arc<Ranking>,
}

async fn rig(name: &str) -> Rig {
    rig_with(name, None, ServerLimits::default(), None, Limits::default()).await
}

/// A rig whose edge runs `module` (WAT-built bytes) instead of the real guest.
async fn rig_with(
    name: &str,
    wasm: Option<Vec<u8>>,
    limits: ServerLimits,
    key: Option<VerifyingKey>,
    limits_sandbox: Limits,
) -> Rig {
    let origin = FIXTURE.start(&format!("feed-{name}")).await.expect("the origin starts with its data");
    let client = reqwest::Client::new();

    let path = guest::default_module_path();
    let wasm = wasm.unwrap_or_else(|| {
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (build it with `cargo xtask guest`)", path.display()))
    });
    let engine = guest::sandboxed_engine(&limits_sandbox).expect("engine");
    let module = GuestModule::sandboxed(&engine, &wasm, limits_sandbox).expect("guest compiles");
    let mut ranking = Ranking::new(Some(module)).expect("metrics");
    ranking.sandbox = Some((engine, limits_sandbox));
    ranking.public_key = key;
    let ranking = Arc::new(ranking);
    let state = Arc::new(
        EdgeState::new(
            Cache::new(&origin, 64 << 20, Duration::from_secs(5)).expect("cache"),
            ranking.clone(),
            FeedConfig { refine_deadline: Duration::from_secs(5), candidates: 100 },
            limits,
        )
        .expect("state"),
    );
    let edge = serve_edge(state).await.expect("the edge listens");
    Rig { origin, edge, client, ranking }
}

/// Ranks the origin's copy of a bundle natively, with the same context.
async fn native(rig: &Rig, digest: &str, ctx: &RankContext) -> Vec<(u64, f32)> {
    let bundle = rig.client.get(format!("{}/v1/bundles/{digest}", rig.origin)).send().await.expect("bundle");
    assert!(bundle.status().is_success(), "the origin still holds bundle {digest}");
    let bytes = bundle.bytes().await.expect("bytes");
    let b = Bundle::decode(&bytes).expect("decodes");
    let current: Value = rig
        .client
        .get(format!("{}/v1/models/current", rig.origin))
        .send()
        .await
        .expect("m")
        .json()
        .await
        .expect("json");
    let m = rig
        .client
        .get(format!("{}/v1/models/{}", rig.origin, current["digest"].as_str().expect("digest")))
        .send()
        .await
        .expect("model")
        .bytes()
        .await
        .expect("bytes");
    let model = Model::decode(&m).expect("model decodes");
    let mut out = RankOutput::default();
    Ranker::new().rank(&model, &b, ctx, &mut out).expect("native ranks");
    out.items.iter().map(|i| (i.id, i.score)).collect()
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
    ctx.region = 0;
    ctx.seen = seen.clone();
    let want = native(&rig, f["bundle_digest"].as_str().expect("digest"), &ctx).await;
    assert_eq!(got, want, "the guest at the edge ranks exactly as the native core");

    // NDJSON: two frames, and the shown preliminary items keep their places.
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
    let r = rig.client.get(format!("{}/v1/feed?user=7&region=0&k=10&refine=0", rig.edge)).send().await.expect("feed");
    assert_eq!(r.headers().get("x-edgewise-feed").and_then(|v| v.to_str().ok()), Some("preliminary"));
    assert_eq!(r.json::<Value>().await.expect("json")["frame"], "preliminary");
    assert_eq!(origin_requests().await, before, "refine=false never reaches the origin when the bundle is cached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_feed_requests_get_a_4xx_that_names_the_problem() {
    let rig = rig("bad").await;
    for (q, body, want) in [
        ("region=0", None, "user"),
        ("user=x", None, "not a number"),
        ("user=1&region=40", None, "region"),
        ("user=1&k=0", None, "k = 0"),
        ("user=1&refine=maybe", None, "refine"),
        ("user=1", Some("{\"seen\": \"no\"}"), "invalid feed body"),
        ("user=1", Some("{\"session\": \"!!\"}"), "base64"),
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
        let rig = rig_with(name, Some(hostile(body)), ServerLimits::default(), None, Limits::default()).await;
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
            assert!(start.elapsed() < Duration::from_secs(2), "{name} round {round}: took {:?}", start.elapsed());
        }
        assert!(rig.ranking.failures(kind) >= 2, "{name}: failures are counted as {kind}");
        let metrics = rig.client.get(format!("{}/metrics", rig.edge)).send().await.expect("m").text().await.expect("t");
        assert!(metrics.contains(&format!("edgewise_edge_guest_failures_total{{kind=\"{kind}\"}}")), "{metrics}");
        assert!(metrics.contains("edgewise_edge_cache_hit_ratio"), "{metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_gets_413() {
    let rig = rig_with(
        "limits",
        None,
        ServerLimits { max_body_bytes: 1024, ..ServerLimits::default() },
        None,
        Limits::default(),
    )
    .await;
    let seen: Vec<u64> = (0..1000).collect();
    let r = rig
        .client
        .post(format!("{}/v1/feed?user=7", rig.edge))
        .json(&json!({"seen": seen}))
        .send()
        .await
        .expect("edge answers");
    assert_eq!(r.status(), 413);
    let ready = rig.client.get(format!("{}/readyz", rig.edge)).send().await.expect("readyz");
    assert_eq!(ready.status(), 200, "ready: a module is loaded");
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
    let mut r = rig.client.put(format!("{}/v1/modules", rig.origin)).bearer_auth("admin").body(wasm.to_vec());
    if let Some(k) = signer {
        use base64::Engine as _;
        r = r.header("x-edgewise-signature", base64::engine::general_purpose::STANDARD.encode(k.sign(wasm).to_bytes()));
    }
    let r = r.send().await.expect("upload");
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.expect("json")["digest"].as_str().expect("digest").to_string()
}

async fn swap(rig: &Rig, tenant: &str, digest: &str) -> (u16, String) {
    let r = rig
        .client
        .put(format!("{}/admin/modules/{tenant}", rig.edge))
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
    let rig = rig_with("modules", None, ServerLimits::default(), Some(operator.verifying_key()), generous).await;
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
    let (st, body) = swap(&rig, "default", &"0".repeat(64)).await;
    assert_eq!(st, 502, "an unknown module: {body}");
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
    assert_eq!(rig.ranking.tenants(), vec![("default".to_string(), format!("origin:{b}"))]);

    // Another tenant gets its own module.
    let (st, _) = swap(&rig, "tenant-2", &a).await;
    assert_eq!(st, 200);
    let r = rig.client.get(format!("{}/v1/feed?user=7&k=5&tenant=tenant-2", rig.edge)).send().await.expect("feed");
    assert_eq!(r.json::<Value>().await.expect("json")["ranked_by"], "guest");
}
