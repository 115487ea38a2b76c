//! Ranking cost, native against the guest in wasmtime, and bundle size against JSON.
//!
//! `cargo bench -p edgewise-edge --bench rank` (after `cargo xtask guest`, or
//! simply `cargo xtask bench`). For d = 64 and d = 256 it ranks 1,000
//! candidates with 8 features and 5 sources, pre-ranks to 200, runs a 2-layer
//! MLP (hidden 64 and 32) with the embedding interaction, applies MMR and the
//! creator cap, and returns the top 20. Native and guest run in alternating
//! rounds over the same requests, so machine noise hits both alike; the table
//! gives medians over rounds and the ratio of the medians.
//!
//! Both columns do the same request: bundle and context arrive as bytes, the
//! bundle is validated (checksum, every column), ranked, and the result is
//! encoded. "native" runs [`edgewise_core::abi::Engine`] compiled for the host;
//! "guest" runs the same code in wasmtime, plus the host-side work around the
//! call: copying bundle and context into guest memory and reading the result out.
//!
//! Each dimension is measured twice. "every request": the bundle's CRC-32 is
//! checked on every ranking. "once at ingest": the host verified the checksum
//! when the bundle entered its cache and the ranking checks structure only
//! (`Bundle::decode_prechecked`), which is how an edge ranks a cached regional
//! bundle for many users. Both sides always do the same work.

use std::time::Instant;

use edgewise_core::abi::{self, Engine, Status};
use edgewise_core::bundle::{Bundle, SOURCE_NAMES};
use edgewise_core::rank::{RankContext, RankOutput, Ranker};
use edgewise_core::synth;
use edgewise_edge::compiled::{CompiledCache, CompiledFrom};
use edgewise_edge::guest::{self, GuestModule};
use edgewise_edge::pool::{InstanceMode, InstancePool};
use serde_json::{Map, Value, json};

const N: usize = 1000;
const ROUNDS: usize = 41;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quartiles(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 4], v[3 * v.len() / 4])
}

/// The same candidates as a JSON array, the way a JSON API would ship them.
fn json_bytes(spec: &synth::Spec, bundle: &Bundle<'_>, quantized: bool) -> usize {
    let floats = synth::item_embeddings(spec);
    let rows: Vec<Value> = (0..bundle.len())
        .map(|i| {
            let mut sources = Map::new();
            for (j, name) in SOURCE_NAMES.iter().enumerate().take(usize::from(bundle.header().n_sources)) {
                if let Some(r) = bundle.source_rank(i, j) {
                    sources.insert((*name).to_string(), json!(r));
                }
            }
            let embedding =
                if quantized { json!({"scale": bundle.scale(i), "q": bundle.embedding(i)}) } else { json!(floats[i]) };
            json!({
                "id": bundle.id(i),
                "embedding": embedding,
                "features": bundle.features(i).collect::<Vec<f32>>(),
                "sources": sources,
                "creator": bundle.creator(i),
                "category": bundle.category(i),
                "region_mask": bundle.region_mask(i),
                "retrieval_score": bundle.retrieval_score(i),
            })
        })
        .collect();
    serde_json::to_vec(&Value::Array(rows)).map(|v| v.len()).unwrap_or(0)
}

struct Row {
    dim: u16,
    checksum: &'static str,
    native_us: f64,
    native_iqr: (f64, f64),
    guest_us: f64,
    guest_iqr: (f64, f64),
    ratio: f64,
    bundle_bpc: f64,
    json_bpc: f64,
    json_q_bpc: f64,
}

fn bench_dim(module: &GuestModule, dim: u16, prechecked: bool) -> Row {
    let spec = synth::Spec::new(N, dim, 11);
    let bundle_bytes = synth::bundle(&spec, 1_700_000_000_000);
    let bundle = Bundle::decode(&bundle_bytes).expect("bundle decodes");
    let model = synth::model(&spec, &[64, 32], 200, 11);
    let model_bytes = model.encode().expect("model encodes");
    let contexts: Vec<RankContext> = (0..32)
        .map(|s| RankContext { checksum_verified: prechecked, ..synth::context(&spec, 20, 1_700_000_000_000, 500 + s) })
        .collect();

    let mut ranker = Ranker::new();
    let mut out = RankOutput::default();
    let mut engine = Engine::new();
    assert_eq!(engine.load_model(&model_bytes), Status::Ok);
    let ctx_bytes: Vec<Vec<u8>> = contexts
        .iter()
        .map(|c| {
            let mut v = Vec::new();
            abi::encode_context(c, &mut v);
            v
        })
        .collect();
    let mut inst = module.instantiate().expect("instantiate");
    inst.load_model(&model_bytes).expect("load model");
    // Warm-up: sizes every buffer on both sides and checks they agree.
    for (ctx, cb) in contexts.iter().zip(&ctx_bytes) {
        ranker.rank(&model, &bundle, ctx, &mut out).expect("native");
        let (g, _) = inst.rank(&bundle_bytes, ctx).expect("guest");
        assert_eq!(
            g.items.iter().map(|i| i.id).collect::<Vec<_>>(),
            out.items.iter().map(|i| i.id).collect::<Vec<_>>()
        );
        assert_eq!(engine.rank(&bundle_bytes, cb), Status::Ok);
        assert_eq!(engine.result(), &inst.rank_raw(&bundle_bytes, cb).expect("guest")[..], "bit-identical");
    }
    let (mut native, mut guest) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let mut run_native = || {
            let t = Instant::now();
            for cb in &ctx_bytes {
                assert_eq!(engine.rank(&bundle_bytes, cb), Status::Ok);
                std::hint::black_box(engine.result());
            }
            t.elapsed().as_secs_f64() * 1e6 / contexts.len() as f64
        };
        let mut run_guest = || {
            let t = Instant::now();
            for cb in &ctx_bytes {
                std::hint::black_box(inst.rank_raw(&bundle_bytes, cb).expect("guest"));
            }
            t.elapsed().as_secs_f64() * 1e6 / contexts.len() as f64
        };
        if round % 2 == 0 {
            native.push(run_native());
            guest.push(run_guest());
        } else {
            guest.push(run_guest());
            native.push(run_native());
        }
    }
    let (native_us, guest_us) = (median(&mut native), median(&mut guest));
    Row {
        dim,
        checksum: if prechecked { "once at ingest" } else { "every request" },
        native_us,
        native_iqr: quartiles(&mut native),
        guest_us,
        guest_iqr: quartiles(&mut guest),
        ratio: guest_us / native_us,
        bundle_bpc: bundle_bytes.len() as f64 / N as f64,
        json_bpc: json_bytes(&spec, &bundle, false) as f64 / N as f64,
        json_q_bpc: json_bytes(&spec, &bundle, true) as f64 / N as f64,
    }
}

fn main() {
    let path = guest::default_module_path();
    if !path.exists() {
        eprintln!(
            "guest module not found at {}: run `cargo xtask guest` first (or `cargo xtask bench`)",
            path.display()
        );
        std::process::exit(2);
    }
    let engine = guest::default_engine().expect("engine");
    let module = GuestModule::from_file(&engine, &path).expect("guest module");
    let rows: Vec<Row> = [(64u16, false), (64, true), (256, false), (256, true)]
        .into_iter()
        .map(|(d, p)| bench_dim(&module, d, p))
        .collect();

    println!();
    println!("ranking 1,000 candidates → pre-rank 200 → MLP 64·32 → calibrate → MMR + creator cap → top 20");
    println!("(median over {ROUNDS} alternating rounds of 32 requests; IQR in brackets; guest = wasmtime 48, simd128)");
    println!();
    println!(
        "| d   | bundle checksum | native µs/req         | guest µs/req          | guest/native | bundle B/cand | JSON B/cand (f32) | bundle/JSON | JSON B/cand (int8) |"
    );
    println!(
        "|-----|-----------------|-----------------------|-----------------------|--------------|---------------|-------------------|-------------|--------------------|"
    );
    for r in &rows {
        println!(
            "| {:<3} | {:<15} | {:>7.1} [{:>6.1}–{:>6.1}] | {:>7.1} [{:>6.1}–{:>6.1}] | {:>12.2} | {:>13.1} | {:>17.1} | {:>11} | {:>18.1} |",
            r.dim,
            r.checksum,
            r.native_us,
            r.native_iqr.0,
            r.native_iqr.1,
            r.guest_us,
            r.guest_iqr.0,
            r.guest_iqr.1,
            r.ratio,
            r.bundle_bpc,
            r.json_bpc,
            format!("1/{:.1}", r.json_bpc / r.bundle_bpc),
            r.json_q_bpc,
        );
    }
    println!();
    println!(
        "targets: guest/native ≤ 1.3 at d = 256 with the checksum checked in the guest (\"every request\"); bundle ≤ 1/6 of JSON (f32) at d = 64"
    );

    // Instantiation per request in the sandbox: pooling allocator, InstancePre,
    // store limits, and the ABI checks GuestInstance makes (version call, export lookups).
    let limits = guest::Limits::default();
    let sandbox = guest::sandboxed_engine(&limits).expect("sandboxed engine");
    let bytes = std::fs::read(&path).expect("guest module");
    let pooled = GuestModule::sandboxed(&sandbox, &bytes, limits).expect("sandboxed module");
    let mut fresh = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let start = Instant::now();
        let inst = pooled.instantiate().expect("instantiate");
        fresh.push(start.elapsed().as_secs_f64() * 1e6);
        drop(inst);
    }
    fresh.sort_by(f64::total_cmp);
    println!();
    println!(
        "sandboxed instantiation (pooling allocator + InstancePre, 1,000 in a row): median {:.1} µs, p99 {:.1} µs (target ≤ 50 µs)",
        fresh[fresh.len() / 2],
        fresh[fresh.len() * 99 / 100]
    );

    instance_strategies(&pooled);
    compile_vs_disk(&sandbox, &bytes, limits);
}

/// Guest cost per ranking with a fresh instance each time (instantiate, load
/// the model, rank) against a pooled instance that keeps the model loaded
/// (rank only), alternating rounds of the same requests.
fn instance_strategies(module: &GuestModule) {
    let spec = synth::Spec::new(300, 64, 21);
    let bundle = synth::bundle(&spec, 1_700_000_000_000);
    let model = synth::model(&spec, &[64, 32], 200, 21).encode().expect("model");
    let digest = edgewise_core::model::digest(&model);
    let contexts: Vec<RankContext> = (0..32).map(|s| synth::context(&spec, 20, 1_700_000_000_000, 900 + s)).collect();
    let fresh = InstancePool::new(module.clone(), InstanceMode::Fresh, 0);
    let pooled = InstancePool::new(module.clone(), InstanceMode::Pooled, 4);
    let run = |pool: &InstancePool| {
        let t = Instant::now();
        for c in &contexts {
            std::hint::black_box(pool.rank(digest, &model, &bundle, c).expect("rank"));
        }
        t.elapsed().as_secs_f64() * 1e6 / contexts.len() as f64
    };
    run(&fresh);
    run(&pooled);
    let (mut f, mut p) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            f.push(run(&fresh));
            p.push(run(&pooled));
        } else {
            p.push(run(&pooled));
            f.push(run(&fresh));
        }
    }
    let (fm, pm) = (median(&mut f), median(&mut p));
    println!();
    println!("guest instances, 300 candidates d = 64 (a feed bundle), median over {ROUNDS} alternating rounds of 32:");
    println!("| instances | per ranking µs | what each ranking does |");
    println!("|---|---:|---|");
    println!("| fresh  | {fm:.1} | instantiate + load the model + rank |");
    println!("| pooled | {pm:.1} | rank (the instance kept its model) |");
    println!("pooled is {:.1}× faster per ranking", fm / pm);
}

/// Compiling the guest with Cranelift against loading it from the on-disk cache.
fn compile_vs_disk(engine: &wasmtime::Engine, wasm: &[u8], limits: guest::Limits) {
    let dir = std::env::temp_dir().join(format!("ew-bench-compiled-{}", std::process::id()));
    let (mut compile, mut disk) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(&dir);
        let cache = CompiledCache::open(&dir).expect("cache dir");
        let t = Instant::now();
        let (_, from) = GuestModule::sandboxed_cached(engine, wasm, limits, Some(&cache)).expect("compile");
        compile.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(from, CompiledFrom::Compiled);
        let t = Instant::now();
        let (_, from) = GuestModule::sandboxed_cached(engine, wasm, limits, Some(&cache)).expect("load");
        disk.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(from, CompiledFrom::Disk);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (c, d) = (median(&mut compile), median(&mut disk));
    println!();
    println!(
        "guest module load: compile {c:.1} ms, from the on-disk compiled cache {d:.2} ms ({:.0}× faster; median of 5)",
        c / d
    );
}
