//! Writes the seed corpora of the fuzz targets: small valid bundles, models,
//! contexts, session states and rank inputs, made by `edgewise_core::synth`,
//! plus the committed golden files of every format version
//! (`core/tests/golden/v*/`). Starting from valid encodings is what lets the
//! fuzzer mutate structure rather than rediscover magic numbers.
//!
//! `cargo run --manifest-path core/fuzz/Cargo.toml --bin seeds [-- DIR]`
//! writes `DIR/<target>/seed-*` (default `core/fuzz/corpus`); `cargo xtask fuzz`
//! runs it first. The corpus is generated, never committed.

use std::io;
use std::path::{Path, PathBuf};

use edgewise_core::abi;
use edgewise_core::check;
use edgewise_core::model::Model;
use edgewise_core::rank::RankContext;
use edgewise_core::session::SessionState;
use edgewise_core::synth::{self, Spec};

/// Bytes of the bundle header's scope flags, region and model digest (see `edgewise_core::bundle`).
const FLAGS_AT: usize = 10;
const REGION_AT: usize = 25;
const DIGEST_AT: usize = 48;

fn specs() -> Vec<Spec> {
    let s = |n, dim, n_features, n_sources, creators, seed| Spec {
        n,
        dim,
        n_features,
        n_sources,
        clusters: 3,
        creators,
        regions: 4,
        seed,
    };
    vec![
        s(0, 1, 0, 0, 1, 1),
        s(1, 4, 2, 3, 1, 2),
        s(3, 8, 0, 5, 2, 3),
        s(6, 3, 1, 8, 2, 4),
        s(10, 16, 3, 5, 3, 5),
        s(24, 8, 2, 7, 5, 6),
    ]
}

/// The same model without the element-wise interaction inputs.
fn without_interaction(mut m: Model) -> Model {
    let old = m.input_dim();
    m.interaction = false;
    let new = m.input_dim();
    if let Some(l) = m.mlp.first_mut() {
        l.weights = l.weights.chunks(old).flat_map(|row| row[..new].to_vec()).collect();
        l.inputs = new;
    }
    m
}

/// Model variants for one spec: hidden layers, interaction, diversity settings.
fn models(spec: &Spec) -> Vec<Model> {
    let seed = spec.seed;
    let mut relevance_only = synth::model(spec, &[3], 4, seed);
    relevance_only.diversity.mmr_lambda = 1.0;
    relevance_only.diversity.creator_cap = 0;
    let mut novelty = synth::model(spec, &[], 100, seed + 1);
    novelty.diversity.mmr_lambda = 0.0;
    novelty.diversity.creator_cap = 1;
    vec![
        synth::model(spec, &[], 10, seed),
        synth::model(spec, &[4, 2], 3, seed),
        without_interaction(synth::model(spec, &[5], 8, seed)),
        relevance_only,
        novelty,
    ]
}

/// Context variants for one spec.
fn contexts(spec: &Spec) -> Vec<RankContext> {
    let now = 1_700_000_100_000;
    let plain = synth::context(spec, 5, now, spec.seed);
    let mut verified = synth::context(spec, 3, now, spec.seed + 7);
    verified.checksum_verified = true;
    verified.prerank_keep = 2;
    let mut anonymous = synth::context(spec, 100, now, spec.seed + 8);
    anonymous.base.clear();
    anonymous.session = SessionState::default();
    anonymous.seen.clear();
    let mut k0 = synth::context(spec, 0, now, spec.seed + 9);
    k0.region = edgewise_core::Region::new(1).ok();
    vec![plain, verified, anonymous, k0]
}

/// Bundle variants for one spec: personal (as `synth` writes it), regional for
/// region 1, one that names the model it expects, and one that carries its
/// user's embedding (version 3).
fn bundles(spec: &Spec, model: &[u8]) -> Vec<Vec<u8>> {
    let personal = synth::bundle(spec, 1_700_000_000_000);
    let mut regional = personal.clone();
    regional[FLAGS_AT] = 0;
    regional[REGION_AT] = 1;
    check::fix_bundle_crc(&mut regional);
    let mut pinned = personal.clone();
    pinned[DIGEST_AT..DIGEST_AT + 32].copy_from_slice(edgewise_core::model::digest(model).as_bytes());
    check::fix_bundle_crc(&mut pinned);
    let user: Vec<f32> = (0..spec.dim).map(|i| f32::from(i) * 0.25 - 1.0).collect();
    let carried = synth::with_user_embedding(&personal, &user);
    vec![personal, regional, pinned, carried]
}

fn encode(ctx: &RankContext) -> Vec<u8> {
    let mut out = Vec::new();
    abi::encode_context(ctx, &mut out);
    out
}

struct Corpus {
    root: PathBuf,
    written: usize,
}

impl Corpus {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("seed-{name}")), bytes)?;
        self.written += 1;
        Ok(())
    }

    fn bundle(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        for t in ["decode_bundle", "decode_bundle_raw", "decode_prechecked"] {
            self.put(t, name, bytes)?;
        }
        Ok(())
    }
}

fn golden_dirs(core: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(core.join("tests").join("golden"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn main() -> io::Result<()> {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = std::env::args_os().nth(1).map_or_else(|| fuzz_dir.join("corpus"), PathBuf::from);
    let mut c = Corpus { root, written: 0 };
    for (si, spec) in specs().iter().enumerate() {
        let models: Vec<Vec<u8>> =
            models(spec).iter().map(|m| m.encode().map_err(io::Error::other)).collect::<Result<_, _>>()?;
        let contexts: Vec<Vec<u8>> = contexts(spec).iter().map(encode).collect();
        let bundles = bundles(spec, &models[0]);
        for (bi, b) in bundles.iter().enumerate() {
            c.bundle(&format!("s{si}-b{bi}"), b)?;
        }
        for (mi, m) in models.iter().enumerate() {
            c.put("decode_model", &format!("s{si}-m{mi}"), m)?;
        }
        for (ci, ctx) in contexts.iter().enumerate() {
            c.put("decode_context", &format!("s{si}-c{ci}"), ctx)?;
        }
        let session = synth::context(spec, 1, 1_700_000_100_000, spec.seed).session;
        c.put("decode_context", &format!("s{si}-session"), &session.encode())?;
        // Rank inputs: each bundle variant with a model and a context, cycling through the variants.
        for (bi, b) in bundles.iter().enumerate() {
            for (mi, m) in models.iter().enumerate() {
                let ci = (bi + mi) % contexts.len();
                c.put("rank", &format!("s{si}-b{bi}-m{mi}-c{ci}"), &check::join_rank_input(b, m, &contexts[ci]))?;
            }
        }
    }
    let core = fuzz_dir.parent().map(Path::to_path_buf).unwrap_or_default();
    for dir in golden_dirs(&core)? {
        let v = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (b, m, ctx) = (
            std::fs::read(dir.join("bundle.ewb"))?,
            std::fs::read(dir.join("model.ewm"))?,
            std::fs::read(dir.join("context.ewcx"))?,
        );
        c.bundle(&format!("golden-{v}"), &b)?;
        c.put("decode_model", &format!("golden-{v}"), &m)?;
        c.put("decode_context", &format!("golden-{v}"), &ctx)?;
        c.put("rank", &format!("golden-{v}"), &check::join_rank_input(&b, &m, &ctx))?;
    }
    println!("wrote {} seed files under {}", c.written, c.root.display());
    Ok(())
}
