//! Deterministic synthetic data: clustered catalogues, random models and user
//! contexts, for the demo, the benches and the tests (feature `synth`).
//!
//! Embeddings are drawn around `clusters` random unit centres, so nearest
//! neighbours, MMR and session updates behave as they do on real catalogues.
//! The same seed gives the same bytes on every platform (PCG64, `libm`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::bundle::{BundleBuilder, BundleHeader, Candidate, NO_RANK, Scope};
use crate::model::{Diversity, Layer, Model, Platt, PreRanker};
use crate::rank::RankContext;
use crate::region::{ALL_REGIONS, Region};
use crate::session::{SessionConfig, SessionState, Signal};

/// The shape of a synthetic catalogue.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Candidates.
    pub n: usize,
    /// Embedding dimension.
    pub dim: u16,
    /// Features per candidate.
    pub n_features: u16,
    /// Source slots.
    pub n_sources: u8,
    /// Embedding clusters.
    pub clusters: usize,
    /// Distinct creators.
    pub creators: u32,
    /// Regions (≤ 32) items may be restricted to.
    pub regions: u8,
    /// RNG seed.
    pub seed: u64,
}

impl Spec {
    /// The benchmark shape: `n` candidates of dimension `dim`, 8 features, 5 sources.
    pub fn new(n: usize, dim: u16, seed: u64) -> Self {
        Self { n, dim, n_features: 8, n_sources: 5, clusters: 16, creators: (n as u32 / 8).max(1), regions: 10, seed }
    }

    /// Feature names `f0`, `f1`, … of this spec.
    pub fn feature_names(&self) -> Vec<String> {
        (0..self.n_features).map(|i| format!("f{i}")).collect()
    }

    /// The schema hash of [`feature_names`](Self::feature_names).
    pub fn schema_hash(&self) -> u64 {
        crate::feature_schema_hash(&self.feature_names())
    }
}

fn normal(rng: &mut Pcg64Mcg) -> f32 {
    // Box–Muller with libm, so every platform draws the same numbers.
    let u1: f32 = rng.random::<f32>().max(1e-7);
    let u2: f32 = rng.random();
    libm::sqrtf(-2.0 * libm::logf(u1)) * libm::cosf(2.0 * core::f32::consts::PI * u2)
}

fn unit(rng: &mut Pcg64Mcg, d: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..d).map(|_| normal(rng)).collect();
    let n = libm::sqrtf(v.iter().map(|x| x * x).sum::<f32>()).max(1e-6);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Cluster centres of a spec (also used to place users).
pub fn centres(spec: &Spec) -> Vec<Vec<f32>> {
    let mut rng = Pcg64Mcg::seed_from_u64(spec.seed ^ 0xC0FFEE);
    (0..spec.clusters.max(1)).map(|_| unit(&mut rng, usize::from(spec.dim))).collect()
}

/// Float embeddings of the catalogue's items, in row order.
pub fn item_embeddings(spec: &Spec) -> Vec<Vec<f32>> {
    let c = centres(spec);
    let mut rng = Pcg64Mcg::seed_from_u64(spec.seed);
    let d = usize::from(spec.dim);
    (0..spec.n)
        .map(|i| {
            let centre = &c[i % c.len()];
            let mut v: Vec<f32> = centre.iter().map(|x| x + 0.35 * normal(&mut rng) / libm::sqrtf(d as f32)).collect();
            let n = libm::sqrtf(v.iter().map(|x| x * x).sum::<f32>()).max(1e-6);
            v.iter_mut().for_each(|x| *x /= n);
            v
        })
        .collect()
}

/// A bundle of `spec.n` candidates. Item ids are `1_000_000 + row`.
pub fn bundle(spec: &Spec, created_at_ms: u64) -> Vec<u8> {
    let mut h = BundleHeader::new(spec.dim, spec.n_features, spec.n_sources);
    h.scope = Scope::Personal;
    h.created_at_ms = created_at_ms;
    h.feature_schema_hash = spec.schema_hash();
    h.sources_contributed = ((1u16 << spec.n_sources) - 1) as u8;
    // The constructor only fails on out-of-range shapes, which `Spec` callers control.
    let mut b = match BundleBuilder::new(h) {
        Ok(b) => b,
        Err(e) => panic!("synthetic spec out of range: {e}"),
    };
    let embs = item_embeddings(spec);
    let mut rng = Pcg64Mcg::seed_from_u64(spec.seed.wrapping_add(1));
    let mut next_rank = alloc::vec![0u16; usize::from(spec.n_sources)];
    for (i, e) in embs.iter().enumerate() {
        let features: Vec<f32> = (0..spec.n_features).map(|_| normal(&mut rng)).collect();
        let mut ranks = alloc::vec![NO_RANK; usize::from(spec.n_sources)];
        let mut any = false;
        for (j, r) in ranks.iter_mut().enumerate() {
            if rng.random::<f32>() < 0.4 {
                *r = next_rank[j];
                next_rank[j] = next_rank[j].saturating_add(1).min(NO_RANK - 1);
                any = true;
            }
        }
        if !any && spec.n_sources > 0 {
            ranks[0] = next_rank[0];
            next_rank[0] = next_rank[0].saturating_add(1).min(NO_RANK - 1);
        }
        let region_mask = if rng.random::<f32>() < 0.8 || spec.regions == 0 {
            ALL_REGIONS
        } else {
            Region::new(rng.random_range(0..spec.regions.min(32))).map_or(ALL_REGIONS, Region::mask)
        };
        let cand = Candidate {
            id: 1_000_000 + i as u64,
            embedding: e,
            features: &features,
            source_ranks: &ranks,
            creator: rng.random_range(0..spec.creators.max(1)),
            category: (i % spec.clusters.max(1)) as u32,
            region_mask,
            retrieval_score: rng.random::<f32>(),
        };
        if let Err(e) = b.push(&cand) {
            panic!("synthetic row rejected: {e}");
        }
    }
    b.finish()
}

/// `bundle` (a personal bundle's bytes) re-encoded to carry `user` as its
/// user's embedding (format version 3).
pub fn with_user_embedding(bundle: &[u8], user: &[f32]) -> Vec<u8> {
    let b = match crate::bundle::Bundle::decode(bundle) {
        Ok(b) => b,
        Err(e) => panic!("not a bundle: {e}"),
    };
    let built = BundleBuilder::new(*b.header()).and_then(|mut x| {
        let (mut f, mut r) = (Vec::new(), Vec::new());
        for i in 0..b.len() {
            x.push_quantized(&b.row(i, &mut f, &mut r))?;
        }
        x.user_embedding(user)?;
        Ok(x.finish())
    });
    match built {
        Ok(bytes) => bytes,
        Err(e) => panic!("user embedding refused: {e}"),
    }
}

/// A random model for `spec` with the given hidden widths (e.g. `[64, 32]`).
pub fn model(spec: &Spec, hidden: &[usize], prerank_keep: u32, seed: u64) -> Model {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut m = Model {
        feature_schema_hash: spec.schema_hash(),
        dim: spec.dim,
        n_features: spec.n_features,
        n_sources: spec.n_sources,
        interaction: true,
        prerank_keep,
        prerank: PreRanker {
            bias: 0.0,
            w_dot: 2.0,
            w_retrieval: 0.5,
            w_features: (0..spec.n_features).map(|_| 0.1 * normal(&mut rng)).collect(),
            w_sources: (0..spec.n_sources).map(|_| 0.1 * rng.random::<f32>()).collect(),
        },
        mlp: Vec::new(),
        calibration: Platt { a: 1.0, b: -0.5 },
        diversity: Diversity { mmr_lambda: 0.8, creator_cap: 2 },
        history: None,
    };
    let mut inputs = m.input_dim();
    for &w in hidden.iter().chain(&[1]) {
        let sd = libm::sqrtf(2.0 / inputs as f32);
        m.mlp.push(Layer {
            inputs,
            outputs: w,
            weights: (0..inputs * w).map(|_| sd * normal(&mut rng)).collect(),
            bias: (0..w).map(|_| 0.01 * normal(&mut rng)).collect(),
        });
        inputs = w;
    }
    // The interaction inputs carry the personal signal; make sure the MLP sees the dot product.
    if let Some(first) = m.mlp.first_mut() {
        for o in 0..first.outputs {
            first.weights[o * first.inputs] += 1.0;
        }
    }
    m
}

/// [`model`] without the interaction inputs when `interaction` is false: the
/// first layer then reads only the dot product, the pre-rank score, retrieval,
/// features and sources, with fixed weights. The conformance tests draw both
/// kinds.
pub fn model_with_interaction(spec: &Spec, hidden: &[usize], prerank_keep: u32, seed: u64, interaction: bool) -> Model {
    let mut m = model(spec, hidden, prerank_keep, seed);
    if !interaction {
        m.interaction = false;
        let inputs = m.input_dim();
        if let Some(first) = m.mlp.first_mut() {
            first.weights = (0..inputs * first.outputs).map(|i| ((i * 7919) % 101) as f32 / 101.0 - 0.5).collect();
            first.inputs = inputs;
        }
    }
    m
}

/// A user context: a base embedding near a cluster, a session with a few
/// interactions, some seen items and blocked creators.
pub fn context(spec: &Spec, k: u32, now_ms: u64, seed: u64) -> RankContext {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let c = centres(spec);
    let d = usize::from(spec.dim);
    let home = &c[rng.random_range(0..c.len())];
    let base: Vec<f32> = home.iter().map(|x| x + 0.2 * normal(&mut rng) / libm::sqrtf(d as f32)).collect();
    let cfg = SessionConfig::default();
    let mut session = SessionState::new(d);
    let embs = if spec.n > 0 { item_embeddings(spec) } else { Vec::new() };
    let events = rng.random_range(0..6);
    for e in 0..events {
        if embs.is_empty() {
            break;
        }
        let item = &embs[rng.random_range(0..embs.len())];
        let signal = match rng.random_range(0..4) {
            0 => Signal::Click,
            1 => Signal::Like,
            2 => Signal::Skip,
            _ => Signal::Dwell { ms: rng.random_range(1_000..40_000) },
        };
        let _ = session.observe(&cfg, signal, item, now_ms.saturating_sub(60_000) + e * 1_000);
    }
    let seen = (0..rng.random_range(0..20)).map(|_| 1_000_000 + rng.random_range(0..spec.n.max(1) as u64)).collect();
    let blocked = (0..rng.random_range(0..3)).map(|_| rng.random_range(0..spec.creators.max(1))).collect();
    RankContext {
        now_ms,
        k,
        region: if rng.random::<f32>() < 0.5 {
            Region::new(rng.random_range(0..spec.regions.clamp(1, 32))).ok()
        } else {
            None
        },
        seen,
        blocked_creators: blocked,
        base,
        session,
        session_config: cfg,
        prerank_keep: 0,
        checksum_verified: false,
        history: crate::history::History::new(),
    }
}

/// [`context`] with a history of `entries` interactions with catalogue items
/// (newest first, a second apart, kinds drawn from click, like, skip, dwell).
pub fn context_with_history(spec: &Spec, k: u32, now_ms: u64, seed: u64, entries: usize) -> RankContext {
    let mut ctx = context(spec, k, now_ms, seed);
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x4157);
    let embs = if spec.n > 0 { item_embeddings(spec) } else { Vec::new() };
    for l in 0..entries.min(crate::history::MAX_HISTORY) {
        if embs.is_empty() {
            break;
        }
        let row = rng.random_range(0..embs.len());
        let kind = [1u8, 2, 3, 5][rng.random_range(0..4)];
        let at = now_ms.saturating_sub(rng.random_range(0..10_000) + 1_000 * l as u64 * 37);
        let at = at.min(if l == 0 { u64::MAX } else { ctx.history.at_ms(l - 1) });
        let _ = ctx.history.push(1_000_000 + row as u64, at, kind, &embs[row]);
    }
    ctx
}

/// [`model`] with a history block of `heads` heads over `length` entries
/// ([`with_history_block`]).
pub fn model_with_history(
    spec: &Spec,
    hidden: &[usize],
    prerank_keep: u32,
    seed: u64,
    length: u8,
    heads: usize,
) -> Model {
    with_history_block(model(spec, hidden, prerank_keep, seed), length, heads, seed)
}

/// `m` with a history block of `heads` heads over `length` entries (random
/// parameters drawn from `seed`), its first layer widened with `heads`
/// inputs of fixed weights.
pub fn with_history_block(mut m: Model, length: u8, heads: usize, seed: u64) -> Model {
    use crate::history::{Head, HistoryBlock};
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x4ead5);
    m.history = Some(HistoryBlock {
        length,
        heads: (0..heads)
            .map(|_| Head {
                temperature: rng.random_range(0.0..8.0),
                kind_bias: core::array::from_fn(|_| rng.random_range(-1.0..1.0)),
                age_bias: core::array::from_fn(|_| rng.random_range(-1.0..1.0)),
                position_bias: (0..length).map(|_| rng.random_range(-1.0..1.0)).collect(),
            })
            .collect(),
    });
    let inputs = m.input_dim();
    if let Some(first) = m.mlp.first_mut() {
        let old = first.inputs;
        let mut w = Vec::with_capacity(inputs * first.outputs);
        for o in 0..first.outputs {
            w.extend_from_slice(&first.weights[o * old..(o + 1) * old]);
            w.extend((0..inputs - old).map(|j| if (o + j) % 2 == 0 { 1.5 } else { -1.0 }));
        }
        first.weights = w;
        first.inputs = inputs;
    }
    m
}
