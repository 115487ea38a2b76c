//! The GPU path on a real Vulkan implementation, against the CPU core.
//!
//! CI has no GPU: these tests run on Mesa's lavapipe (Vulkan on the CPU),
//! which the README's test command installs (`mesa-vulkan-drivers`) and
//! selects (`WGPU_BACKEND=vulkan`). Without an adapter they fail, naming what
//! to install; they never skip. On a machine with a GPU they run on it.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use edgewise_core::abi::{self, ModelMatch};
use edgewise_core::bundle::{Bundle, BundleBuilder};
use edgewise_core::model::{self, Model};
use edgewise_core::rank::{RankContext, RankError, RankOutput, Ranker};
use edgewise_core::synth;
use edgewise_shaders::{AnyRanker, Choice, GpuError, GpuOptions, GpuRanker, PackedDot, Path};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const NOW: u64 = 1_700_000_000_000;

/// A GPU ranker on the machine's adapter, or a failure that says what is missing.
fn gpu(packed: PackedDot) -> GpuRanker {
    match GpuRanker::new(&GpuOptions { packed_dot: packed, ..GpuOptions::default() }) {
        Ok(g) => {
            println!("adapter: {}", g.adapter());
            g
        }
        Err(e) => panic!(
            "no GPU adapter ({e}). CI runs these tests on Mesa lavapipe: `apt-get install -y mesa-vulkan-drivers` \
             and `WGPU_BACKEND=vulkan` (the README's test command does both)"
        ),
    }
}

/// The `EWRS` bytes of a ranking.
fn encode(out: &RankOutput, bundle: &Bundle<'_>, model_bytes: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    abi::encode_result(out, ModelMatch::of(bundle.header().model_digest, model::digest(model_bytes)), &mut bytes);
    bytes
}

/// The core's `EWRS` bytes, or its error.
fn cpu(model: &Model, model_bytes: &[u8], bundle: &Bundle<'_>, ctx: &RankContext) -> Result<Vec<u8>, RankError> {
    let mut out = RankOutput::default();
    Ranker::new().rank(model, bundle, ctx, &mut out)?;
    Ok(encode(&out, bundle, model_bytes))
}

/// The GPU path's `EWRS` bytes: upload, then rank.
fn on_gpu(
    g: &mut GpuRanker,
    model: &Model,
    model_bytes: &[u8],
    bundle: Bundle<'_>,
    ctx: &RankContext,
) -> Result<Vec<u8>, GpuError> {
    let resident = g.upload(bundle)?;
    let mut out = RankOutput::default();
    g.rank(model, &resident, ctx, &mut out)?;
    Ok(encode(&out, resident.bundle(), model_bytes))
}

/// `bundle` with every row followed by a near twin: the same row under
/// another id, with one embedding lane moved by one step when `nudge`. The
/// twins tie, or nearly tie, on every score.
fn with_twins(bytes: &[u8], nudge: bool) -> Vec<u8> {
    let b = Bundle::decode(bytes).expect("bundle decodes");
    let mut out = BundleBuilder::new(*b.header()).expect("same header");
    let (mut f, mut r) = (Vec::new(), Vec::new());
    for i in 0..b.len() {
        let row = b.row(i, &mut f, &mut r);
        out.push_quantized(&row).expect("row");
        let mut emb = row.embedding.to_vec();
        if nudge {
            let lane = i % emb.len();
            emb[lane] = if emb[lane] == 127 { 126 } else { emb[lane] + 1 };
        }
        let twin = edgewise_core::bundle::QuantizedCandidate { id: row.id + 50_000_000, embedding: &emb, ..row };
        out.push_quantized(&twin).expect("twin");
    }
    out.finish()
}

#[test]
fn the_adapter_is_found_and_named() {
    let g = gpu(PackedDot::Auto);
    let a = g.adapter();
    assert!(!a.name.is_empty());
    assert!(g.max_chunk_bytes() <= edgewise_shaders::gpu::MAX_CHUNK_BYTES);
}

#[test]
fn the_golden_v1_files_rank_to_the_committed_bytes_on_the_gpu() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/golden/v1");
    let read =
        |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("golden file {name} is missing: {e}"));
    let (b, m, c, want) = (read("bundle.ewb"), read("model.ewm"), read("context.ewcx"), read("result.ewrs"));
    let bundle = Bundle::decode(&b).expect("golden bundle");
    let model = Model::decode(&m).expect("golden model");
    let mut ctx = RankContext::default();
    abi::decode_context(&c, &mut ctx).expect("golden context");
    for packed in [PackedDot::Auto, PackedDot::Off] {
        let mut g = gpu(packed);
        let got = on_gpu(&mut g, &model, &m, bundle, &ctx).expect("GPU ranking");
        assert!(got == want, "the GPU path's EWRS differs from the committed golden result ({packed:?})");
    }
}

/// The conformance test of the contract: the GPU path's `EWRS` bytes equal
/// the core's, on randomized bundles, models and contexts (the generators of
/// the guest's conformance test), with tied and nearly tied twins, at every
/// dimension class and up to 100k rows, through both `dot4` variants.
#[test]
fn gpu_and_cpu_rankings_are_byte_identical() {
    let mut packed = gpu(PackedDot::Auto);
    let mut unpacked = gpu(PackedDot::Off);
    assert!(!unpacked.adapter().packed_dot);
    println!("packed dot products available: {}", packed.adapter().packed_dot);
    let mut runner = TestRunner::new(Config { cases: 300, failure_persistence: None, ..Config::default() });
    let strategy = (
        prop_oneof![8 => 1usize..1500, 2 => 1500usize..12_000],
        prop_oneof![3 => Just(8u16), 3 => Just(64u16), 3 => Just(256u16), 1 => 1u16..300],
        0u16..10,
        0u8..6,
        (1usize..20, 1u32..300, any::<u64>()),
        (0u32..50, 0usize..3, 1u32..400, any::<bool>()),
        0u8..3,
    );
    let compared = RefCell::new([0usize; 3]);
    let rows = Cell::new(0usize);
    let gpus = RefCell::new([&mut packed, &mut unpacked]);
    let case = |spec: synth::Spec, depth: usize, keep: u32, interaction: bool, k: u32, twins: u8| {
        let seed = spec.seed;
        let hidden: Vec<usize> = [32, 16, 8][..depth].to_vec();
        let model = synth::model_with_interaction(&spec, &hidden, keep, seed ^ 1, interaction);
        let model_bytes = model.encode().expect("model encodes");
        let mut bytes = synth::bundle(&spec, NOW);
        if twins > 0 {
            bytes = with_twins(&bytes, twins == 2);
        }
        let bundle = Bundle::decode(&bytes).expect("bundle");
        let ctx = synth::context(&spec, k, NOW, seed ^ 2);
        let want = cpu(&model, &model_bytes, &bundle, &ctx).expect("the core ranks");
        for g in gpus.borrow_mut().iter_mut() {
            let got = on_gpu(g, &model, &model_bytes, bundle, &ctx).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(got == want, "GPU ({}) and CPU differ for {:?}", g.adapter(), spec);
        }
        compared.borrow_mut()[usize::from(twins)] += 1;
        rows.set(rows.get() + bundle.len());
        Ok(())
    };
    runner
        .run(
            &strategy,
            |(n, dim, n_features, n_sources, (clusters, creators, seed), (k, depth, keep, inter), twins)| {
                let n = if twins > 0 { n.div_ceil(2) } else { n };
                let spec = synth::Spec { n, dim, n_features, n_sources, clusters, creators, regions: 8, seed };
                case(spec, depth, keep, inter, k, twins)
            },
        )
        .expect("byte-identical on every case");
    // The large end: 100k rows at each dimension class.
    for (dim, seed) in [(8u16, 11u64), (64, 12), (256, 13)] {
        let spec = synth::Spec::new(100_000, dim, seed);
        case(spec, 2, 300, true, 50, 0).expect("byte-identical at 100k rows");
    }
    let (compared, rows) = (compared.into_inner(), rows.get());
    let total: usize = compared.iter().sum();
    println!(
        "compared {total} rankings ({rows} rows) on both dot4 variants: {} plain, {} with tied twins, {} with near-tied twins; all byte-identical",
        compared[0], compared[1], compared[2]
    );
    assert_eq!(total, 303);
    assert!(compared[1] > 0 && compared[2] > 0, "tie cases ran");
}

#[test]
fn a_chunked_column_ranks_the_same() {
    let mut g = GpuRanker::new(&GpuOptions { max_chunk_bytes: 4096, ..GpuOptions::default() }).expect("adapter");
    for (n, dim) in [(1000usize, 64u16), (777, 30), (64, 4096)] {
        let spec = synth::Spec::new(n, dim, n as u64);
        let model = synth::model(&spec, &[16], 200, 5);
        let m = model.encode().expect("model");
        let bytes = synth::bundle(&spec, NOW);
        let bundle = Bundle::decode(&bytes).expect("bundle");
        let ctx = synth::context(&spec, 20, NOW, 9);
        let resident = g.upload(bundle).expect("upload");
        let rows_per_chunk = (4096 / usize::from(dim).div_ceil(4) / 4).max(1);
        assert_eq!(resident.chunks(), n.div_ceil(rows_per_chunk), "n {n}, d {dim}");
        let mut out = RankOutput::default();
        g.rank(&model, &resident, &ctx, &mut out).expect("rank");
        assert!(encode(&out, &bundle, &m) == cpu(&model, &m, &bundle, &ctx).expect("cpu"), "n {n}, d {dim}");
        // The scan alone, with extreme lanes: exact against the core's integer dot product.
        let query: Vec<i8> = (0..usize::from(dim)).map(|j| [-128i8, 127, -1, 0, 1, -127][j % 6]).collect();
        let mut dots = Vec::new();
        g.dot_products(&resident, &query, &mut dots).expect("scan");
        let want: Vec<i32> = (0..n).map(|i| edgewise_core::math::dot_i8(&query, bundle.embedding(i))).collect();
        assert_eq!(dots, want, "n {n}, d {dim}");
        let short = g.dot_products(&resident, &query[1..], &mut dots).expect_err("a query of another dimension");
        assert!(matches!(short, GpuError::Refused(RankError::QueryDimension { .. })), "{short:?}");
        println!("n {n}, d {dim}: {} chunks, byte-identical", resident.chunks());
    }
}

/// Re-ranking a resident bundle creates no buffers, bind groups or
/// pipelines, by this crate's count and by wgpu's own live-object counters.
#[test]
fn steady_state_creates_no_gpu_objects() {
    let mut g = gpu(PackedDot::Auto);
    let spec = synth::Spec::new(5000, 64, 3);
    let model = synth::model(&spec, &[32, 16], 300, 4);
    let m = model.encode().expect("model");
    let bytes = synth::bundle(&spec, NOW);
    let bundle = Bundle::decode(&bytes).expect("bundle");
    let resident = g.upload(bundle).expect("upload");
    let mut out = RankOutput::default();
    let ctx0 = synth::context(&spec, 20, NOW, 0);
    g.rank(&model, &resident, &ctx0, &mut out).expect("warm-up");
    let (before, live) = (g.created(), g.live_counters());
    for seed in 1..=25u64 {
        let ctx = synth::context(&spec, 20, NOW + seed, seed);
        g.rank(&model, &resident, &ctx, &mut out).expect("rank");
        assert!(encode(&out, &bundle, &m) == cpu(&model, &m, &bundle, &ctx).expect("cpu"));
    }
    let (after, live_after) = (g.created(), g.live_counters());
    assert_eq!(before, after, "steady state created GPU objects");
    let hal = |c: &edgewise_shaders::wgpu::InternalCounters| {
        [
            c.hal.buffers.read(),
            c.hal.bind_groups.read(),
            c.hal.compute_pipelines.read(),
            c.hal.shader_modules.read(),
            c.hal.buffer_memory.read(),
        ]
    };
    assert_eq!(hal(&live), hal(&live_after), "wgpu's live objects changed in steady state");
    println!(
        "25 rankings: {before:?} created before and after; live (buffers, bind groups, pipelines, modules, buffer bytes) {:?}",
        hal(&live_after)
    );
}

#[test]
fn bad_input_is_refused_before_gpu_work_with_the_cores_error() {
    let mut g = gpu(PackedDot::Auto);
    let spec = synth::Spec::new(300, 32, 1);
    let model = synth::model(&spec, &[8], 100, 2);
    let bytes = synth::bundle(&spec, NOW);
    let bundle = Bundle::decode(&bytes).expect("bundle");
    let resident = g.upload(bundle).expect("upload");
    let mut out = RankOutput::default();
    let created = g.created();

    let mut other = model.clone();
    other.feature_schema_hash ^= 1;
    let want =
        Ranker::new().rank(&other, &bundle, &synth::context(&spec, 5, NOW, 1), &mut out).expect_err("core refuses");
    let got = g.rank(&other, &resident, &synth::context(&spec, 5, NOW, 1), &mut out).expect_err("GPU path refuses");
    assert!(matches!(&got, GpuError::Refused(e) if *e == want), "{got:?}");

    let mut ctx = synth::context(&spec, 5, NOW, 1);
    ctx.base[0] = f32::NAN;
    let got = g.rank(&model, &resident, &ctx, &mut out).expect_err("NaN in the context");
    assert!(matches!(got, GpuError::Refused(RankError::NonFinite { .. })), "{got:?}");
    assert_eq!(g.created(), created);

    // A bundle uploaded elsewhere is refused, and the ranker still works.
    let mut h = gpu(PackedDot::Off);
    let foreign = h.upload(bundle).expect("upload");
    assert!(matches!(g.rank(&model, &foreign, &ctx, &mut out), Err(GpuError::ForeignBundle)));
    let ctx = synth::context(&spec, 5, NOW, 1);
    g.rank(&model, &resident, &ctx, &mut out).expect("still ranks");

    let bad = GpuRanker::new(&GpuOptions { max_chunk_bytes: 100, ..GpuOptions::default() }).expect_err("options");
    assert!(matches!(bad, GpuError::Options(_)), "{bad:?}");
    let bad = GpuRanker::new(&GpuOptions { timeout: Duration::ZERO, ..GpuOptions::default() }).expect_err("options");
    assert!(matches!(bad, GpuError::Options(_)), "{bad:?}");
}

/// With no adapter (forced through the options), `auto` ranks on the CPU and
/// reports the fallback; `gpu` is an error; `cpu` never looks.
#[test]
fn without_an_adapter_auto_falls_back_to_the_cpu_and_says_so() {
    let none = GpuOptions { backends: Some(edgewise_shaders::wgpu::Backends::empty()), ..GpuOptions::default() };
    let spec = synth::Spec::new(800, 64, 7);
    let model = synth::model(&spec, &[16], 200, 8);
    let m = model.encode().expect("model");
    let bytes = synth::bundle(&spec, NOW);
    let bundle = Bundle::decode(&bytes).expect("bundle");
    let ctx = synth::context(&spec, 20, NOW, 9);
    let want = cpu(&model, &m, &bundle, &ctx).expect("cpu");

    let mut auto = AnyRanker::new(Choice::Auto, &none).expect("auto never fails for want of a GPU");
    assert!(matches!(auto.path(), Path::Cpu { fallback: Some(GpuError::NoAdapter { .. }) }), "{}", auto.path());
    let prepared = auto.prepare(bundle).expect("prepare");
    let mut out = RankOutput::default();
    let path = auto.rank(&model, &prepared, &ctx, &mut out).expect("ranks on the CPU");
    println!("auto without an adapter: {path}");
    assert!(matches!(path, Path::Cpu { fallback: Some(GpuError::NoAdapter { .. }) }));
    assert!(encode(&out, &bundle, &m) == want);

    let err = AnyRanker::new(Choice::Gpu, &none).expect_err("gpu without an adapter");
    assert!(matches!(err, GpuError::NoAdapter { .. }), "{err:?}");

    let mut cpu_only = AnyRanker::new(Choice::Cpu, &none).expect("cpu");
    let prepared = cpu_only.prepare(bundle).expect("prepare");
    let path = cpu_only.rank(&model, &prepared, &ctx, &mut out).expect("cpu");
    assert!(matches!(path, Path::Cpu { fallback: None }));
    assert!(encode(&out, &bundle, &m) == want);

    // With the adapter, `auto` takes the GPU, with the same bytes.
    let mut auto = AnyRanker::new(Choice::Auto, &GpuOptions::default()).expect("auto");
    let prepared = auto.prepare(bundle).expect("prepare");
    let path = auto.rank(&model, &prepared, &ctx, &mut out).expect("gpu");
    println!("auto with an adapter: {path}");
    assert!(matches!(path, Path::Gpu { .. }), "{path}");
    assert!(encode(&out, &bundle, &m) == want);
    assert_eq!("auto".parse::<Choice>(), Ok(Choice::Auto));
    assert!("fast".parse::<Choice>().unwrap_err().contains("\"auto\", \"gpu\" or \"cpu\""));
}

/// A lost device is an error, never a panic: the GPU ranker says so on every
/// later call, and `auto` falls back to the CPU with the same bytes, reports
/// why, and stays on the CPU.
#[test]
fn a_lost_device_is_reported_and_auto_falls_back() {
    let spec = synth::Spec::new(600, 64, 21);
    let model = synth::model(&spec, &[16], 200, 22);
    let m = model.encode().expect("model");
    let bytes = synth::bundle(&spec, NOW);
    let bundle = Bundle::decode(&bytes).expect("bundle");
    let ctx = synth::context(&spec, 20, NOW, 23);
    let want = cpu(&model, &m, &bundle, &ctx).expect("cpu");
    let mut out = RankOutput::default();

    let mut g = gpu(PackedDot::Auto);
    let resident = g.upload(bundle).expect("upload");
    g.destroy();
    let lost = g.rank(&model, &resident, &ctx, &mut out).expect_err("the device is gone");
    assert!(matches!(lost, GpuError::DeviceLost { .. }), "{lost:?}");
    let again = g.upload(bundle).expect_err("still gone");
    assert!(matches!(again, GpuError::Unusable(_)), "{again:?}");
    assert!(g.dot_products(&resident, &[0; 64], &mut Vec::new()).is_err());

    let mut auto = AnyRanker::new(Choice::Auto, &GpuOptions::default()).expect("auto");
    let prepared = auto.prepare(bundle).expect("prepare");
    auto.gpu_mut().expect("a GPU under auto on this machine").destroy();
    let path = auto.rank(&model, &prepared, &ctx, &mut out).expect("falls back");
    println!("after losing the device: {path}");
    assert!(matches!(path, Path::Cpu { fallback: Some(GpuError::DeviceLost { .. }) }), "{path}");
    assert!(encode(&out, &bundle, &m) == want);
    assert!(auto.gpu().is_none(), "auto stays on the CPU");
    let prepared = auto.prepare(bundle).expect("prepare");
    let path = auto.rank(&model, &prepared, &ctx, &mut out).expect("cpu");
    assert!(matches!(path, Path::Cpu { fallback: Some(GpuError::DeviceLost { .. }) }), "{path}");
    assert!(encode(&out, &bundle, &m) == want);

    // Under `gpu` the failure is returned, not hidden.
    let mut forced = AnyRanker::new(Choice::Gpu, &GpuOptions::default()).expect("gpu");
    let prepared = forced.prepare(bundle).expect("prepare");
    forced.gpu_mut().expect("gpu").destroy();
    let err = forced.rank(&model, &prepared, &ctx, &mut out).expect_err("gpu only");
    assert!(matches!(err, GpuError::DeviceLost { .. }), "{err:?}");
}
