//! Feed latency under an open-loop load on loopback.
//!
//! One process runs a real origin (`edgewise-origin`'s library: 2,000 items of
//! dimension 64, a user's history, a registered model), the edge with the real
//! core guest in its sandbox, and the load generator. Requests are sent on a
//! fixed schedule (open loop), and each latency is measured from the moment the
//! request was *due*, so a slow server cannot hide its queueing (no coordinated
//! omission). Three paths:
//!
//! * `cache hit`: `refine=false`, the preliminary ranking alone — the regional
//!   bundle from the edge's cache, ranked by the guest; nothing reaches the
//!   origin;
//! * `first frame`: NDJSON, time to the preliminary frame while the edge also
//!   fetches and ranks the personalized bundle (so the origin's retrieval
//!   shares the two cores);
//! * `refined`: plain JSON, which waits for the personalized bundle from the
//!   origin and its ranking.
//!
//! Two edges run in front of the same origin: one with pooled guest
//! instances (reused, the model kept loaded), one with a fresh instance per
//! ranking; at each rate they are loaded in turn, so the comparison is side by
//! side. The second table gives, per edge, the instantiation time per request
//! and the guest time per ranking from the edge's own metrics.
//!
//! `cargo bench -p edgewise-conformance --bench feed [-- --seconds 3 --rates 100,250,500 --concurrency N --paths cache-hit,first-frame,refined]`
//! (it lives with the end-to-end tests because it needs a real origin; the edge
//! crate does not depend on the origin)
//! (`--concurrency`: rankings at once, `guest.concurrency`; default one per core;
//! `--paths`: which of the three paths to load, default all)

use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../tests/it/common.rs"]
mod common;

use common::{FIXTURE_CLOCK_SKEW, OriginFixture, USER_SECRET, serve_edge, user_tokens};
use edgewise_core::model::Model;
use edgewise_core::{Digest, Region};
use edgewise_edge::cache::Cache;
use edgewise_edge::feed::FeedConfig;
use edgewise_edge::guest::{self, GuestModule, Limits};
use edgewise_edge::pool::InstanceMode;
use edgewise_edge::server::{EdgeState, ServerSettings};
use edgewise_edge::tenants::{GuestOptions, Tenants};

/// 2,000 items of dimension 64, 20 clicks by user 7.
const FIXTURE: OriginFixture = OriginFixture {
    dim: 64,
    items: 2_000,
    creators: 97,
    clusters: 16,
    events: 20,
    stride: 17,
    shards: 0,
    hidden: 32,
    prerank_keep: 200,
    creator_cap: 3,
};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

/// The median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// An edge in front of `origin`, ranking with `mode` instances.
async fn edge(origin: &str, wasm: &[u8], mode: InstanceMode) -> anyhow::Result<(String, Arc<Tenants>)> {
    let limits = Limits::default();
    let engine = guest::sandboxed_engine(&limits)?;
    let concurrency = arg("--concurrency").and_then(|c| c.parse().ok()).unwrap_or(0);
    let options = GuestOptions { mode, concurrency, ..GuestOptions::default() };
    let module = GuestModule::sandboxed(&engine, wasm, limits)?;
    let tenants = Arc::new(Tenants::builder().default_module(module, "bench").options(options).build()?);
    let state = Arc::new(EdgeState::new(
        Cache::new(origin, 256 << 20, Duration::from_secs(5))?,
        tenants.clone(),
        FeedConfig {
            refine_deadline: Duration::from_millis(150),
            candidates: 300,
            max_clock_skew: FIXTURE_CLOCK_SKEW,
            ..FeedConfig::default()
        },
        ServerSettings { user_tokens: user_tokens(), ..ServerSettings::default() },
    )?);
    Ok((serve_edge(state).await?, tenants))
}

/// The origin, then one edge per instance mode; also the guest module's bytes.
async fn setup() -> anyhow::Result<(Vec<(InstanceMode, String, Arc<Tenants>)>, Vec<u8>)> {
    let origin = FIXTURE.start("bench-feed").await?;
    let path = guest::default_module_path();
    let wasm =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e} (run `cargo xtask guest`)", path.display()))?;
    let mut edges = Vec::new();
    for mode in [InstanceMode::Pooled, InstanceMode::Fresh] {
        let (url, ranking) = edge(&origin, &wasm, mode).await?;
        edges.push((mode, url, ranking));
    }
    Ok((edges, wasm))
}

/// The edge's regional bundle for region 0 (300 candidates), the digest of
/// the model it names, and that model's bytes.
async fn regional_bundle_and_model(client: &reqwest::Client, edge: &str) -> anyhow::Result<(Vec<u8>, Digest, Vec<u8>)> {
    let bundle = client.get(format!("{edge}/v1/regions/0/bundle?k=300")).send().await?.bytes().await?.to_vec();
    let digest = edgewise_core::bundle::Bundle::decode(&bundle)?
        .header()
        .model_digest
        .ok_or_else(|| anyhow::anyhow!("the regional bundle names no model"))?;
    let model_bytes =
        client.get(format!("{edge}{}", edgewise_wire::paths::model(&digest))).send().await?.bytes().await?.to_vec();
    Ok((bundle, digest, model_bytes))
}

/// The sequence-aware ranker's cost: the feed's regional bundle ranked with
/// the fixture's model and with the same model plus a history block (20
/// entries, 2 heads, the trained default) over a 20-entry history, natively
/// and by a sandboxed pooled guest with the bundle kept loaded, side by side.
async fn history_cost(client: &reqwest::Client, edge: &str, wasm: &[u8]) -> anyhow::Result<()> {
    use edgewise_core::bundle::Bundle;
    use edgewise_core::rank::{RankContext, RankOutput, Ranker};
    let (bundle, digest, model_bytes) = regional_bundle_and_model(client, edge).await?;
    let b = Bundle::decode(&bundle)?;
    let plain = Model::decode(&model_bytes)?;
    let with = edgewise_core::synth::with_history_block(plain.clone(), 20, 2, 7);
    let with_bytes = with.encode()?;
    let with_digest = Digest::of(&with_bytes);
    let mut ctx = RankContext::new(20, 1_700_000_000_000);
    ctx.region = Some(Region::new(0)?);
    ctx.checksum_verified = true;
    for l in 0..20.min(b.len()) {
        let row = (l * 7) % b.len();
        let at = ctx.now_ms - 60_000 * (l as u64 + 1);
        ctx.history.push_quantized(b.id(row), at, 1 + (l % 2) as u8, b.embedding(row), b.scale(row))?;
    }
    let limits = Limits::default();
    let engine = guest::sandboxed_engine(&limits)?;
    let pool = |_: ()| -> anyhow::Result<edgewise_edge::pool::InstancePool> {
        let module = GuestModule::sandboxed(&engine, wasm, limits)?;
        Ok(edgewise_edge::pool::InstancePool::new(module, InstanceMode::Pooled, 1))
    };
    let (plain_pool, with_pool) = (pool(())?, pool(())?);
    let bundle_digest = Digest::of(&bundle);
    let (mut ranker, mut out, mut guest_out) = (Ranker::new(), RankOutput::default(), RankOutput::default());
    // Both models rank the same bundle for the same context: bit-identical guest and native.
    for (m, bytes, d, p) in [(&plain, &model_bytes, digest, &plain_pool), (&with, &with_bytes, with_digest, &with_pool)]
    {
        ranker.rank(m, &b, &ctx, &mut out)?;
        p.rank_kept_into(d, bytes, &bundle, bundle_digest, &ctx, &mut guest_out)?;
        let encoded = |o: &RankOutput| {
            let mut v = Vec::new();
            edgewise_core::abi::encode_result(o, edgewise_core::abi::ModelMatch::Any, &mut v);
            v
        };
        anyhow::ensure!(encoded(&out) == encoded(&guest_out), "guest and native rank differently");
    }
    let mut times = vec![Vec::new(); 4];
    for round in 0..41 {
        let order: [usize; 4] = if round % 2 == 0 { [0, 1, 2, 3] } else { [3, 2, 1, 0] };
        for k in order {
            let t = Instant::now();
            for _ in 0..16 {
                match k {
                    0 => ranker.rank(&plain, &b, &ctx, &mut out)?,
                    1 => ranker.rank(&with, &b, &ctx, &mut out)?,
                    2 => {
                        plain_pool.rank_kept_into(
                            digest,
                            &model_bytes,
                            &bundle,
                            bundle_digest,
                            &ctx,
                            &mut guest_out,
                        )?;
                    }
                    _ => {
                        with_pool.rank_kept_into(
                            with_digest,
                            &with_bytes,
                            &bundle,
                            bundle_digest,
                            &ctx,
                            &mut guest_out,
                        )?;
                    }
                }
            }
            times[k].push(t.elapsed().as_secs_f64() * 1e6 / 16.0);
        }
    }
    let med: Vec<f64> = times.iter_mut().map(|v| median(v)).collect();
    println!(
        "\nthe sequence-aware ranker's cost on the same bundle ({} candidates), 20-entry history, median of 41 rounds of 16:",
        b.len()
    );
    println!("| model | native µs | guest µs (sandboxed, pooled, bundle kept) | guest / native |");
    println!("|---|---:|---:|---:|");
    println!("| the fixture's MLP | {:.0} | {:.0} | {:.2} |", med[0], med[2], med[2] / med[0]);
    println!("| + history block (20 entries, 2 heads) | {:.0} | {:.0} | {:.2} |", med[1], med[3], med[3] / med[1]);
    println!("| the block's cost | {:.0} | {:.0} | |", med[1] - med[0], med[3] - med[2]);
    Ok(())
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// `refine=false`: the preliminary ranking alone, served from the cache.
    CacheHit,
    /// NDJSON with refinement, timed to its first frame.
    FirstFrame,
    /// Plain JSON, which waits for the refined ranking.
    Refined,
}

/// The feed's own regional bundle and model, ranked natively and by a pooled
/// guest instance in alternating rounds: guest time against native.
async fn guest_against_native(
    client: &reqwest::Client,
    edge: &str,
    tenants: &Tenants,
    wasm: &[u8],
) -> anyhow::Result<()> {
    use edgewise_core::bundle::Bundle;
    use edgewise_core::rank::{RankContext, RankOutput, Ranker};
    let (bundle, digest, model_bytes) = regional_bundle_and_model(client, edge).await?;
    let b = Bundle::decode(&bundle)?;
    let model = Model::decode(&model_bytes)?;
    let pool = tenants.guest().ok_or_else(|| anyhow::anyhow!("no guest"))?;
    let mut ctx = RankContext::new(20, 1_700_000_000_000);
    ctx.region = Some(Region::new(0)?);
    ctx.checksum_verified = true;
    let (mut ranker, mut out) = (Ranker::new(), RankOutput::default());
    // The same guest without the sandbox (no epoch deadline, no pooling allocator).
    let plain_engine = guest::default_engine()?;
    let plain = edgewise_edge::pool::InstancePool::new(GuestModule::new(&plain_engine, wasm)?, InstanceMode::Pooled, 1);
    let bundle_digest = Digest::of(&bundle);
    // The edge's feed decodes into a reused output, as native ranks into one.
    let mut guest_out = RankOutput::default();
    let (mut native, mut guest, mut unsandboxed, mut sent) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..41 {
        let mut n = || -> anyhow::Result<f64> {
            let t = Instant::now();
            for _ in 0..16 {
                ranker.rank(&model, &b, &ctx, &mut out)?;
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / 16.0)
        };
        // As the edge ranks: the bundle kept loaded in the pooled instance.
        let mut g = || -> anyhow::Result<f64> {
            let t = Instant::now();
            for _ in 0..16 {
                std::hint::black_box(pool.rank_kept_into(
                    digest,
                    &model_bytes,
                    &bundle,
                    bundle_digest,
                    &ctx,
                    &mut guest_out,
                )?);
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / 16.0)
        };
        // The bundle copied in and validated on every call (`ew_rank`).
        let s = || -> anyhow::Result<f64> {
            let t = Instant::now();
            for _ in 0..16 {
                std::hint::black_box(pool.rank(digest, &model_bytes, &bundle, &ctx)?);
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / 16.0)
        };
        let u = || -> anyhow::Result<f64> {
            let t = Instant::now();
            for _ in 0..16 {
                std::hint::black_box(plain.rank_kept(digest, &model_bytes, &bundle, bundle_digest, &ctx)?);
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / 16.0)
        };
        if round % 2 == 0 {
            native.push(n()?);
            guest.push(g()?);
            sent.push(s()?);
            unsandboxed.push(u()?);
        } else {
            unsandboxed.push(u()?);
            sent.push(s()?);
            guest.push(g()?);
            native.push(n()?);
        }
    }
    let (n, g, u, s) = (median(&mut native), median(&mut guest), median(&mut unsandboxed), median(&mut sent));
    println!(
        "\nranking the feed's regional bundle ({} candidates, {} bytes), no load, median of 41 rounds of 16:",
        b.len(),
        bundle.len()
    );
    println!("| ranker | µs per ranking | against native |");
    println!("|---|---:|---:|");
    println!("| native | {n:.0} | 1.00 |");
    println!("| guest, no sandbox | {u:.0} | {:.2} |", u / n);
    println!(
        "| guest, sandboxed (epoch deadline, pooled instance, bundle kept loaded: the edge's path) | {g:.0} | {:.2} |",
        g / n
    );
    println!("| guest, sandboxed, bundle copied in and validated on every call | {s:.0} | {:.2} |", s / n);
    Ok(())
}

/// One request; returns its latency from `due`.
async fn one(client: &reqwest::Client, edge: &str, path: Path, due: Instant) -> Option<f64> {
    let refine = if path == Path::CacheHit { "&refine=false" } else { "" };
    let first_frame = path == Path::FirstFrame;
    let url = format!("{edge}/v1/feed?user=7&region=0&k=20{refine}");
    let mut req = client.get(url);
    if first_frame {
        req = req.header("accept", "application/x-ndjson");
    }
    let mut resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    if first_frame {
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.ok()? {
            buf.extend_from_slice(&chunk);
            if buf.contains(&b'\n') {
                return Some(due.elapsed().as_secs_f64() * 1e3);
            }
        }
        None
    } else {
        resp.bytes().await.ok()?;
        Some(due.elapsed().as_secs_f64() * 1e3)
    }
}

/// A client whose every request is user 7's own, with user 7's token.
fn user_client() -> reqwest::Client {
    let token = edgewise_http::auth::mint_hs256(USER_SECRET.as_bytes(), &edgewise_http::auth::TokenSpec::new(7, 3000))
        .unwrap_or_default();
    let mut auth = reqwest::header::HeaderMap::new();
    if let Ok(v) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
        auth.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::Client::builder().pool_max_idle_per_host(512).default_headers(auth).build().unwrap_or_default()
}

async fn run(edge: &str, rate: u32, seconds: f64, path: Path) -> (Vec<f64>, usize) {
    let client = user_client();
    let n = (f64::from(rate) * seconds) as u32;
    let start = Instant::now() + Duration::from_millis(50);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let due = start + Duration::from_secs_f64(f64::from(i) / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let (c, e) = (client.clone(), edge.to_string());
        set.spawn(async move { one(&c, &e, path, due).await });
    }
    let results = set.join_all().await;
    let errors = results.iter().filter(|r| r.is_none()).count();
    let mut lat: Vec<f64> = results.into_iter().flatten().collect();
    lat.sort_by(f64::total_cmp);
    (lat, errors)
}

fn main() -> anyhow::Result<()> {
    let seconds: f64 = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let rates: Vec<u32> = arg("--rates")
        .unwrap_or_else(|| "100,250,500".into())
        .split(',')
        .map(|r| r.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("--rates: {e}"))?;
    let paths: Vec<Path> = arg("--paths")
        .unwrap_or_else(|| "cache-hit,first-frame,refined".into())
        .split(',')
        .map(|p| match p.trim() {
            "cache-hit" => Ok(Path::CacheHit),
            "first-frame" => Ok(Path::FirstFrame),
            "refined" => Ok(Path::Refined),
            other => Err(anyhow::anyhow!("--paths: unknown path {other:?} (cache-hit, first-frame, refined)")),
        })
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let (edges, wasm) = setup().await?;
        let client = user_client();
        for (_, edge, _) in &edges {
            for _ in 0..20 {
                one(&client, edge, Path::FirstFrame, Instant::now()).await;
            }
        }
        println!("feed latency, open loop on loopback, {seconds} s per rate (ms from when each request was due)");
        println!("guest instances: pooled (reused, model kept loaded) and fresh (one per ranking), run in turn\n");
        println!("| path | instances | rate (req/s) | requests | p50 ms | p99 ms | max ms | errors |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        // The floor: one request at a time, nothing else running.
        for (mode, edge, tenants) in &edges {
            let metrics = tenants.metrics();
            let before = (metrics.rank_seconds.get_sample_sum(), metrics.rank_seconds.get_sample_count());
            let mut lat = Vec::new();
            for _ in 0..300 {
                lat.extend(one(&client, edge, Path::CacheHit, Instant::now()).await);
            }
            lat.sort_by(f64::total_cmp);
            let m = &metrics.rank_seconds;
            let guest_us = (m.get_sample_sum() - before.0) / (m.get_sample_count() - before.1).max(1) as f64 * 1e6;
            println!(
                "| cache hit, one at a time (guest {guest_us:.0} µs per ranking) | {mode:?} | - | {} | {:.2} | {:.2} | {:.2} | {} |",
                lat.len(),
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                lat.last().copied().unwrap_or(f64::NAN),
                300 - lat.len()
            );
        }
        for &rate in &rates {
            for (name, path) in [
                ("cache hit (refine=false)", Path::CacheHit),
                ("first frame (NDJSON, refining)", Path::FirstFrame),
                ("refined (JSON, origin)", Path::Refined),
            ]
            .into_iter()
            .filter(|(_, p)| paths.contains(p))
            {
                for (mode, edge, _) in &edges {
                    let (lat, errors) = run(edge, rate, seconds, path).await;
                    println!(
                        "| {name} | {mode:?} | {rate} | {} | {:.2} | {:.2} | {:.2} | {errors} |",
                        lat.len() + errors,
                        percentile(&lat, 0.5),
                        percentile(&lat, 0.99),
                        lat.last().copied().unwrap_or(f64::NAN)
                    );
                }
            }
        }
        println!();
        println!("| instances | rankings | instantiations | instantiation µs per request | mean µs per instantiation | model loads | guest µs per ranking |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for (mode, _, tenants) in &edges {
            let m = tenants.metrics();
            let rankings = m.rank_seconds.get_sample_count().max(1) as f64;
            let inst = &m.instantiate_seconds;
            println!(
                "| {mode:?} | {} | {} | {:.1} | {:.1} | {} | {:.0} |",
                m.rank_seconds.get_sample_count(),
                inst.get_sample_count(),
                inst.get_sample_sum() / rankings * 1e6,
                inst.get_sample_sum() / inst.get_sample_count().max(1) as f64 * 1e6,
                m.model_loads.get(),
                m.rank_seconds.get_sample_sum() / rankings * 1e6,
            );
        }
        guest_against_native(&client, &edges[0].1, &edges[0].2, &wasm).await?;
        history_cost(&client, &edges[0].1, &wasm).await?;
        println!("\n(the same for 1,000 candidates at d = 64 and 256, and idle instantiation: `cargo xtask bench`)");
        Ok(())
    })
}
