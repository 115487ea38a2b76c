//! Writes randomized ranking cases for the npm package's Node tests: for each
//! case a bundle, a model, an `EWCX` context and the native core's `EWRS`
//! result, so the package's wasm build can be checked byte for byte.
//!
//! `cargo run -p edgewise-browser --example fixtures -- DIR [CASES]`; with
//! `--bench` instead of a count, the browser bench's inputs.
//! (`cargo xtask npm-test` runs it). Cases are drawn like the guest's
//! conformance cases: sizes, dimensions, features, sources, models with and
//! without interaction inputs, contexts with seen items, blocked creators,
//! regions and sessions.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use edgewise_core::abi::{self, ModelMatch};
use edgewise_core::bundle::Bundle;
use edgewise_core::model;
use edgewise_core::rank::{RankOutput, Ranker};
use edgewise_core::synth;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        bail!("usage: fixtures DIR [CASES | --bench]");
    };
    if args.get(1).map(String::as_str) == Some("--bench") {
        return bench(&dir);
    }
    let cases: usize = match args.get(1) {
        Some(n) => n.parse().with_context(|| format!("CASES must be a number, not {n:?}"))?,
        None => 200,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = Pcg64Mcg::seed_from_u64(0xED6E_0016);
    let now = 1_700_000_000_000u64;
    for c in 0..cases {
        let seed: u64 = rng.random();
        let n = if c % 10 == 0 { rng.random_range(1_000..6_000) } else { rng.random_range(1..800) };
        let dim = [8u16, 16, 64, 100, 256][rng.random_range(0..5)];
        let spec = synth::Spec {
            n,
            dim,
            n_features: rng.random_range(0..10),
            n_sources: rng.random_range(0..6),
            clusters: rng.random_range(1..20),
            creators: rng.random_range(1..300),
            regions: 8,
            seed,
        };
        let hidden: Vec<usize> = [32, 16, 8][..rng.random_range(0..3)].to_vec();
        let keep = rng.random_range(1..400);
        // One case in three has a history block and a history (its length and heads from the case number).
        let history = c % 3 == 1;
        let interaction = rng.random();
        let m = if history {
            synth::model_with_history(&spec, &hidden, keep, seed ^ 1, (c % 64 + 1) as u8, c % 8 + 1)
        } else {
            synth::model_with_interaction(&spec, &hidden, keep, seed ^ 1, interaction)
        };
        let model_bytes = m.encode().context("model encodes")?;
        let bundle_bytes = synth::bundle(&spec, now);
        let entries = if history { c % 70 } else { 0 };
        let ctx = synth::context_with_history(&spec, rng.random_range(0..50), now, seed ^ 2, entries);
        let bundle = Bundle::decode(&bundle_bytes).context("bundle decodes")?;
        let mut out = RankOutput::default();
        Ranker::new().rank(&m, &bundle, &ctx, &mut out).context("the native core ranks")?;
        let mut result = Vec::new();
        let model_match = ModelMatch::of(bundle.header().model_digest, model::digest(&model_bytes));
        abi::encode_result(&out, model_match, &mut result);
        let mut ctx_bytes = Vec::new();
        abi::encode_context(&ctx, &mut ctx_bytes);
        for (ext, bytes) in [("ewb", &bundle_bytes), ("ewm", &model_bytes), ("ewcx", &ctx_bytes), ("ewrs", &result)] {
            let p = dir.join(format!("case-{c:03}.{ext}"));
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    println!("{cases} cases written to {}", dir.display());
    Ok(())
}

/// The browser bench's inputs (`cargo xtask npm-bench`): `bench-N.{ewb,ewm,ewcx}`
/// for N = 300, 10k and 100k rows at d = 64, with a model that pre-ranks to
/// 300 and k = 50, like the native GPU bench.
fn bench(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let now = 1_700_000_000_000u64;
    for n in [300usize, 10_000, 100_000] {
        let spec = synth::Spec::new(n, 64, 0xB0 + n as u64);
        let model = synth::model(&spec, &[64, 32], 300, 7).encode().context("model encodes")?;
        let bundle = synth::bundle(&spec, now);
        let mut ctx = Vec::new();
        abi::encode_context(&synth::context(&spec, 50, now, 9), &mut ctx);
        for (ext, bytes) in [("ewb", &bundle), ("ewm", &model), ("ewcx", &ctx)] {
            let p = dir.join(format!("bench-{n}.{ext}"));
            std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        }
        println!("bench-{n}: {} rows, {} bytes", n, bundle.len());
    }
    Ok(())
}
