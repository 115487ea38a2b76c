//! The ranking pipeline: integrity filter → pre-rank → main rank (MLP) →
//! calibrate → diversity (MMR + per-creator cap) → top k.
//!
//! [`Ranker`] owns every scratch buffer, so once it has seen a request of a
//! given size, ranking another of that size or smaller allocates nothing.
//!
//! # Stages
//! 1. **Integrity.** A row is dropped if its id is in the context's seen set, its
//!    creator is blocked, or its region mask excludes the context's region.
//! 2. **Pre-rank.** `pre = bias + w_dot·dot + w_retrieval·retrieval + Σ w_f·f + Σ w_s·[retrieved by s]`,
//!    where `dot` is the dequantised int8 dot product of the query and the item.
//!    The best `prerank_keep` rows go on (ties: lower row first).
//! 3. **Main rank.** The MLP of [`crate::model`] turns each survivor's input vector into a logit.
//! 4. **Calibrate.** `p = σ(a·logit + b)`.
//! 5. **Diversity.** Greedy maximal marginal relevance over the survivors:
//!    each step takes the row maximising `λ·p − (1−λ)·max_sim`, where `max_sim`
//!    is the largest cosine similarity to a row already taken, floored at 0 (a
//!    dissimilar row earns no bonus, and the first pick is by `p` alone); rows whose creator
//!    already has `creator_cap` rows in the list are skipped.
//! 6. **Top k.** Selection stops after `k` rows.
//!
//! Every number is computed in a fixed order ([`crate::math`]), so the output is
//! bit-identical on every platform.

use alloc::collections::binary_heap::PeekMut;
use alloc::vec::Vec;

use crate::bundle::Bundle;
pub use crate::context::RankContext;
use crate::context::{QueryError, blend_query};
use crate::math::{self, dot_i8, sortable};
use crate::model::Model;
use crate::region::Region;

mod mlp;
pub use mlp::{MLP_BATCH, mlp_forward, mlp_forward_batch};

/// What happened to a bundle row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// In the final list.
    Selected = 0,
    /// Filtered: the user has seen it.
    Seen = 1,
    /// Filtered: its creator is blocked.
    BlockedCreator = 2,
    /// Filtered: not eligible in the user's region.
    Region = 3,
    /// Dropped by the pre-ranker.
    PreRankCut = 4,
    /// Skipped because its creator reached the per-creator cap.
    CreatorCap = 5,
    /// Scored, but not in the top k.
    BelowTopK = 6,
}

impl Outcome {
    /// The outcome with this code.
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Self::Selected,
            1 => Self::Seen,
            2 => Self::BlockedCreator,
            3 => Self::Region,
            4 => Self::PreRankCut,
            5 => Self::CreatorCap,
            6 => Self::BelowTopK,
            _ => return None,
        })
    }
    /// A short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Selected => "selected",
            Self::Seen => "filtered: seen",
            Self::BlockedCreator => "filtered: blocked creator",
            Self::Region => "filtered: region",
            Self::PreRankCut => "cut at pre-rank",
            Self::CreatorCap => "cut by creator cap",
            Self::BelowTopK => "below top k",
        }
    }
}

/// Per-row explanation of every stage. Scores a row never reached are NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowExplain {
    /// Final outcome.
    pub outcome: Outcome,
    /// Pre-rank score.
    pub pre_score: f32,
    /// MLP logit.
    pub main_score: f32,
    /// Calibrated probability.
    pub calibrated: f32,
}

/// One item of the final list.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankedItem {
    /// Row in the bundle.
    pub row: u32,
    /// Item id.
    pub id: u64,
    /// Final score: the calibrated probability.
    pub score: f32,
    /// Pre-rank score.
    pub pre_score: f32,
    /// MLP logit.
    pub main_score: f32,
    /// `(1−λ)·max_sim` when the item was chosen.
    pub mmr_penalty: f32,
    /// `λ·score − mmr_penalty`, the value MMR maximised.
    pub mmr_score: f32,
}

/// The result of a ranking, reused across calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankOutput {
    /// The final list, best first.
    pub items: Vec<RankedItem>,
    /// One entry per bundle row.
    pub rows: Vec<RowExplain>,
}

/// Why a ranking could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum RankError {
    /// The bundle's features follow a different schema than the model's.
    #[error("feature schema mismatch: bundle {bundle:#018x}, model {model:#018x}")]
    SchemaMismatch {
        /// Bundle's hash.
        bundle: u64,
        /// Model's hash.
        model: u64,
    },
    /// Bundle and model disagree on a shape.
    #[error("bundle and model disagree on {what}: bundle {bundle}, model {model}")]
    Shape {
        what: &'static str,
        /// Bundle's value.
        bundle: usize,
        /// Model's value.
        model: usize,
    },
    /// The context's embeddings do not fit the bundle.
    #[error("{what} has dimension {found}, the bundle has {expected}")]
    QueryDimension { what: &'static str, expected: usize, found: usize },
    /// NaN or infinity in the context.
    #[error("non-finite value in the {what}")]
    NonFinite { what: &'static str },
    /// [`Ranker::rank_with_dots`] was given a different number of dot products than the bundle has rows.
    #[error("{found} dot products for a bundle of {expected} rows")]
    DotCount { expected: usize, found: usize },
}

/// The ranking pipeline with its reusable scratch space.
#[derive(Debug, Default, Clone)]
pub struct Ranker {
    query: Vec<f32>,
    /// The bundle's user embedding, for a context without a base.
    base: Vec<f32>,
    query_q: Vec<i8>,
    seen: Vec<u64>,
    blocked: Vec<u32>,
    cand: Vec<(f32, u32)>,
    /// Per bundle row: the int8 dot product with the query (set for the rows that pass the filter).
    dots: Vec<i32>,
    input: Vec<f32>,
    act_a: Vec<f32>,
    act_b: Vec<f32>,
    norms: Vec<f32>,
    max_sim: Vec<f32>,
    taken: Vec<bool>,
    /// `(creator, candidate)` pairs, sorted, to number the creators.
    creator_rows: Vec<(u32, u32)>,
    /// Dense creator index of each candidate.
    creator_of: Vec<u32>,
    /// Items picked so far, per dense creator index.
    creator_counts: Vec<u32>,
    /// Candidates picked so far, in order.
    picks: Vec<u32>,
    /// Per candidate: how many of `picks` its `max_sim` has seen.
    folded: Vec<u32>,
    /// Candidates waiting in MMR, under an upper bound of their value.
    heap: alloc::collections::BinaryHeap<u64>,
    /// The model's history block, prepared for the request.
    attention: crate::history::Attention,
}

/// A candidate waiting in MMR under `score`, the value it had when last
/// computed, packed so that plain `u64` order is the eager scan's order: the
/// high half is the [`sortable`] score (with `-0.0` equal to `0.0`, as `>` has
/// it) mapped to an unsigned integer that sorts like `f32::total_cmp`, and the
/// low half is the complement of the candidate index, so that of two equal
/// scores the lower index is the larger key.
fn pending(score: f32, candidate: u32) -> u64 {
    let bits = (sortable(score) + 0.0).to_bits();
    let ordered = if bits & 0x8000_0000 != 0 { !bits } else { bits | 0x8000_0000 };
    (u64::from(ordered) << 32) | u64::from(!candidate)
}

/// The candidate index of a [`pending`] key.
fn pending_candidate(key: u64) -> usize {
    !(key as u32) as usize
}

/// Orders `(score, row)` best first: higher score, then lower row.
fn best_first(a: &(f32, u32), b: &(f32, u32)) -> core::cmp::Ordering {
    sortable(b.0).total_cmp(&sortable(a.0)).then(a.1.cmp(&b.1))
}

/// Pre-rank score of row `i` given the quantised query and its scale.
pub fn prerank_score(model: &Model, bundle: &Bundle<'_>, i: usize, query_q: &[i8], query_scale: f32) -> f32 {
    prerank_from_dot(model, bundle, i, dot_i8(query_q, bundle.embedding(i)), query_scale)
}

/// Pre-rank score of row `i` from `dot`, the exact int8 dot product of the
/// quantised query and the row's embedding: [`prerank_score`] without the dot
/// product, bit for bit (the dot product is an integer, exact wherever it was
/// computed, and everything after it is the same f32 operations in the same
/// order).
#[inline]
pub fn prerank_from_dot(model: &Model, bundle: &Bundle<'_>, i: usize, dot: i32, query_scale: f32) -> f32 {
    let p = &model.prerank;
    let dot = dot as f32 * (query_scale * bundle.scale(i));
    let mut s = p.bias + p.w_dot * dot + p.w_retrieval * bundle.retrieval_score(i);
    for (w, f) in p.w_features.iter().zip(bundle.features(i)) {
        s += w * f;
    }
    let mask = bundle.source_mask(i);
    // Over every slot a bundle can have, in order: a constant trip count
    // compiles to straight-line code (in a sandboxed wasm engine, a loop
    // pays an epoch check per iteration). Slots past the model's are never
    // added, as when iterating over its weights.
    for j in 0..usize::from(crate::bundle::MAX_SOURCES) {
        if mask & (1 << j) != 0
            && let Some(w) = p.w_sources.get(j)
        {
            s += w;
        }
    }
    s
}

/// Appends row `i`'s MLP input vector (layout in [`crate::model`]) to `input`.
pub fn mlp_input(
    model: &Model,
    bundle: &Bundle<'_>,
    i: usize,
    query_q: &[i8],
    query_scale: f32,
    pre: f32,
    input: &mut Vec<f32>,
) {
    let dot = dot_i8(query_q, bundle.embedding(i));
    mlp_input_from_dot(model, bundle, i, query_q, query_scale, dot, pre, input);
}

/// [`mlp_input`] with the row's exact int8 dot product `dot` already known.
#[allow(clippy::too_many_arguments)] // the row, the query and the dot product: all needed, none optional
#[inline]
pub fn mlp_input_from_dot(
    model: &Model,
    bundle: &Bundle<'_>,
    i: usize,
    query_q: &[i8],
    query_scale: f32,
    dot: i32,
    pre: f32,
    input: &mut Vec<f32>,
) {
    let at = input.len();
    input.resize(at + model.input_dim(), 0.0);
    write_mlp_input(model, bundle, i, query_q, query_scale, dot, pre, &mut input[at..]);
}

/// Writes row `i`'s MLP input vector into `out` (`model.input_dim()` long):
/// what [`mlp_input_from_dot`] appends, written in place (the ranker's
/// batches reuse one buffer, with no length to keep up to date per value).
#[allow(clippy::too_many_arguments)] // as `mlp_input_from_dot`
#[inline]
fn write_mlp_input(
    model: &Model,
    bundle: &Bundle<'_>,
    i: usize,
    query_q: &[i8],
    query_scale: f32,
    dot: i32,
    pre: f32,
    out: &mut [f32],
) {
    let s = query_scale * bundle.scale(i);
    let (head, rest) = out.split_at_mut(3);
    head.copy_from_slice(&[dot as f32 * s, pre, bundle.retrieval_score(i)]);
    let (features, rest) = rest.split_at_mut(usize::from(model.n_features));
    for (o, f) in features.iter_mut().zip(bundle.features(i)) {
        *o = f;
    }
    let (sources, rest) = rest.split_at_mut(usize::from(model.n_sources));
    let mask = bundle.source_mask(i);
    for (j, o) in sources.iter_mut().enumerate() {
        *o = if mask & (1 << j) != 0 { 1.0 } else { 0.0 };
    }
    if model.interaction {
        for (o, (&a, &b)) in rest.iter_mut().zip(query_q.iter().zip(bundle.embedding(i))) {
            *o = (i32::from(a) * i32::from(b)) as f32 * s;
        }
    }
}

impl Ranker {
    /// A ranker with empty scratch space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Ranks `bundle` for `ctx` with `model`, writing into `out`.
    pub fn rank(
        &mut self,
        model: &Model,
        bundle: &Bundle<'_>,
        ctx: &RankContext,
        out: &mut RankOutput,
    ) -> Result<(), RankError> {
        self.rank_by(model, bundle, ctx, out, |q, i| dot_i8(q, bundle.embedding(i)))
    }

    /// The query [`rank`](Self::rank) would score `bundle` against for `ctx`:
    /// the blended query quantised to int8, and its scale. Checks everything
    /// `rank` checks first (schema, shapes, the context), with the same errors,
    /// so a host that computes the dot products elsewhere (a GPU) refuses bad
    /// input before doing any work.
    pub fn quantized_query(
        &mut self,
        model: &Model,
        bundle: &Bundle<'_>,
        ctx: &RankContext,
    ) -> Result<(&[i8], f32), RankError> {
        let query_scale = self.prepare(model, bundle, ctx)?;
        Ok((&self.query_q, query_scale))
    }

    /// [`rank`](Self::rank) with the int8 dot products computed elsewhere:
    /// `dots[i]` is the dot product of [`quantized_query`](Self::quantized_query)'s
    /// query and row `i`'s embedding. Integers are exact wherever they are
    /// computed, so with correct dot products the output is bit-identical to
    /// `rank`'s. The embeddings are still read for the MLP's interaction
    /// inputs and for diversity.
    pub fn rank_with_dots(
        &mut self,
        model: &Model,
        bundle: &Bundle<'_>,
        ctx: &RankContext,
        dots: &[i32],
        out: &mut RankOutput,
    ) -> Result<(), RankError> {
        if dots.len() != bundle.len() {
            out.items.clear();
            out.rows.clear();
            return Err(RankError::DotCount { expected: bundle.len(), found: dots.len() });
        }
        self.rank_by(model, bundle, ctx, out, |_, i| dots[i])
    }

    /// Checks that `model`, `bundle` and `ctx` fit together and builds the
    /// quantised query; returns its scale.
    fn prepare(&mut self, model: &Model, bundle: &Bundle<'_>, ctx: &RankContext) -> Result<f32, RankError> {
        let h = bundle.header();
        if h.feature_schema_hash != model.feature_schema_hash {
            return Err(RankError::SchemaMismatch { bundle: h.feature_schema_hash, model: model.feature_schema_hash });
        }
        let shape = |what, bundle: usize, model: usize| {
            if bundle == model { Ok(()) } else { Err(RankError::Shape { what, bundle, model }) }
        };
        shape("embedding dimension", bundle.dim(), usize::from(model.dim))?;
        shape("feature count", usize::from(h.n_features), usize::from(model.n_features))?;
        shape("source count", usize::from(h.n_sources), usize::from(model.n_sources))?;
        let d = bundle.dim();
        self.build_query(ctx, bundle, d)?;
        if let Some(block) = &model.history {
            if !ctx.history.is_empty() && ctx.history.dim() != d {
                return Err(RankError::QueryDimension { what: "history", expected: d, found: ctx.history.dim() });
            }
            self.attention.prepare(block, &ctx.history, ctx.now_ms);
        }
        Ok(math::quantize_into(&self.query, &mut self.query_q))
    }

    /// The pipeline, with row `i`'s int8 dot product given by `dot(query_q, i)`.
    #[inline(always)]
    fn rank_by(
        &mut self,
        model: &Model,
        bundle: &Bundle<'_>,
        ctx: &RankContext,
        out: &mut RankOutput,
        dot: impl Fn(&[i8], usize) -> i32,
    ) -> Result<(), RankError> {
        out.items.clear();
        out.rows.clear();
        let query_scale = self.prepare(model, bundle, ctx)?;

        // 1. Integrity filter.
        self.dots.clear();
        self.dots.resize(bundle.len(), 0);
        self.seen.clear();
        self.seen.extend_from_slice(&ctx.seen);
        self.seen.sort_unstable();
        self.blocked.clear();
        self.blocked.extend_from_slice(&ctx.blocked_creators);
        self.blocked.sort_unstable();
        self.cand.clear();
        let nan = f32::NAN;
        for i in 0..bundle.len() {
            let outcome = if self.seen.binary_search(&bundle.id(i)).is_ok() {
                Outcome::Seen
            } else if self.blocked.binary_search(&bundle.creator(i)).is_ok() {
                Outcome::BlockedCreator
            } else if !Region::allows(ctx.region, bundle.region_mask(i)) {
                Outcome::Region
            } else {
                // 2. Pre-rank.
                let d = dot(&self.query_q, i);
                self.dots[i] = d;
                let pre = prerank_from_dot(model, bundle, i, d, query_scale);
                self.cand.push((pre, i as u32));
                out.rows.push(RowExplain {
                    outcome: Outcome::PreRankCut,
                    pre_score: pre,
                    main_score: nan,
                    calibrated: nan,
                });
                continue;
            };
            out.rows.push(RowExplain { outcome, pre_score: nan, main_score: nan, calibrated: nan });
        }
        let keep = if ctx.prerank_keep > 0 { ctx.prerank_keep } else { model.prerank_keep } as usize;
        if self.cand.len() > keep {
            self.cand.select_nth_unstable_by(keep, best_first);
            self.cand.truncate(keep);
        }

        // 3–4. Main rank and calibration, MLP_BATCH candidates at a time.
        let width = model.input_dim();
        let mut logits = [0.0f32; MLP_BATCH];
        self.input.clear();
        self.input.resize(MLP_BATCH * width, 0.0);
        for start in (0..self.cand.len()).step_by(MLP_BATCH) {
            let end = (start + MLP_BATCH).min(self.cand.len());
            // A short last batch keeps the rows of the one before: they are
            // evaluated and ignored.
            for (c, row) in self.cand[start..end].iter().zip(self.input.chunks_exact_mut(width.max(1))) {
                let i = c.1 as usize;
                let (q, pre) = (&self.query_q, out.rows[i].pre_score);
                write_mlp_input(model, bundle, i, q, query_scale, self.dots[i], pre, row);
                if let Some(block) = &model.history {
                    let at = row.len() - block.heads.len();
                    self.attention.write(block, &ctx.history, bundle.embedding(i), &mut row[at..]);
                }
            }
            mlp_forward_batch(model, &self.input, &mut self.act_a, &mut self.act_b, &mut logits);
            for (c, &logit) in self.cand[start..end].iter_mut().zip(&logits) {
                let p = math::sigmoid(model.calibration.a * logit + model.calibration.b);
                let row = &mut out.rows[c.1 as usize];
                row.main_score = logit;
                row.calibrated = p;
                row.outcome = Outcome::BelowTopK;
                c.0 = p;
            }
        }
        self.cand.sort_unstable_by(best_first);

        // 5–6. Diversity and top k.
        self.diversify(model, bundle, ctx.k as usize, out);
        Ok(())
    }

    /// The blended query. Its base is the context's, or, for a context
    /// without one, the user embedding a personal bundle carries (so an edge
    /// or a browser ranking a user's bundle blends what the origin would).
    fn build_query(&mut self, ctx: &RankContext, bundle: &Bundle<'_>, d: usize) -> Result<(), RankError> {
        let base: &[f32] = match bundle.user_embedding() {
            Some(user) if ctx.base.is_empty() => {
                self.base.clear();
                self.base.extend(user);
                &self.base
            }
            _ => &ctx.base,
        };
        blend_query(base, &ctx.session, &ctx.session_config, ctx.now_ms, d, &mut self.query).map_err(|e| match e {
            QueryError::Dimension { what, expected, found } => RankError::QueryDimension { what, expected, found },
            QueryError::NonFinite(what) => RankError::NonFinite { what },
        })?;
        self.query_q.clear();
        self.query_q.resize(d, 0);
        Ok(())
    }

    /// Greedy MMR with the creator cap: `k` times, picks the candidate with the
    /// highest `λ·score − (1−λ)·max_sim` among those not taken and whose
    /// creator is under the cap (ties: the earlier candidate), where `max_sim`
    /// is its highest cosine to any earlier pick.
    ///
    /// Evaluated lazily (the "lazy greedy" of submodular maximisation): a
    /// candidate's `max_sim` only grows as picks are made, so the MMR value it
    /// had when last computed is an upper bound on its current one. Candidates
    /// wait in a max-heap under that bound; the top one has its `max_sim`
    /// brought up to date with the picks made since (exact: a maximum does not
    /// depend on the order it is taken in), and is picked if it is still on top,
    /// else pushed back under its new value. The heap orders equal values by
    /// candidate index, so ties go where the eager scan sends them. Results are
    /// bit-identical to the eager form (`tests::reference_diversify`), with far
    /// fewer cosines: most candidates never move up far enough to be looked at.
    /// Creators are mapped to dense indices up front, so the cap is an array
    /// lookup.
    // Kept out of line: inlined into `rank`, its loops lose their registers to
    // the rest of the pipeline (Cranelift spills the cosine accumulators).
    #[inline(never)]
    fn diversify(&mut self, model: &Model, bundle: &Bundle<'_>, k: usize, out: &mut RankOutput) {
        let lambda = model.diversity.mmr_lambda;
        let cap = model.diversity.creator_cap;
        let n = self.cand.len();
        self.norms.clear();
        for &(_, row) in &self.cand {
            let e = bundle.embedding(row as usize);
            self.norms.push(math::sqrt(dot_i8(e, e) as f32));
        }
        self.max_sim.clear();
        self.max_sim.resize(n, 0.0);
        self.folded.clear();
        self.folded.resize(n, 0);
        self.taken.clear();
        self.taken.resize(n, false);
        self.picks.clear();
        self.index_creators(bundle);
        let use_sim = lambda < 1.0;
        let mmr = |p: f32, max_sim: f32| lambda * p - (1.0 - lambda) * max_sim;
        self.heap.clear();
        self.heap.extend((0..n).map(|j| pending(mmr(self.cand[j].0, 0.0), j as u32)));
        while out.items.len() < k {
            let Some(mut top) = self.heap.peek_mut() else { break };
            let j = pending_candidate(*top);
            if cap > 0 && self.creator_counts[self.creator_of[j] as usize] >= cap {
                // A capped creator stays capped: drop the candidate for good.
                PeekMut::pop(top);
                continue;
            }
            if use_sim && (self.folded[j] as usize) < self.picks.len() {
                let max_sim =
                    fold(bundle, &self.cand, &self.norms, &self.picks[self.folded[j] as usize..], j, self.max_sim[j]);
                self.max_sim[j] = max_sim;
                self.folded[j] = self.picks.len() as u32;
                // Lowered in place: one sift down (when `top` is dropped)
                // instead of a pop and a push.
                *top = pending(mmr(self.cand[j].0, max_sim), j as u32);
                continue;
            }
            PeekMut::pop(top);
            self.taken[j] = true;
            self.picks.push(j as u32);
            self.creator_counts[self.creator_of[j] as usize] += 1;
            let row = self.cand[j].1 as usize;
            let r = &mut out.rows[row];
            r.outcome = Outcome::Selected;
            out.items.push(RankedItem {
                row: row as u32,
                id: bundle.id(row),
                score: r.calibrated,
                pre_score: r.pre_score,
                main_score: r.main_score,
                mmr_penalty: (1.0 - lambda) * self.max_sim[j],
                mmr_score: mmr(self.cand[j].0, self.max_sim[j]),
            });
        }
        if cap > 0 {
            for t in 0..n {
                if !self.taken[t] && self.creator_counts[self.creator_of[t] as usize] >= cap {
                    out.rows[self.cand[t].1 as usize].outcome = Outcome::CreatorCap;
                }
            }
        }
    }

    /// Fills `creator_of` with a dense index per candidate (equal creators,
    /// equal index) and zeroes `creator_counts`, one counter per creator.
    fn index_creators(&mut self, bundle: &Bundle<'_>) {
        self.creator_rows.clear();
        self.creator_rows.extend(self.cand.iter().enumerate().map(|(j, c)| (bundle.creator(c.1 as usize), j as u32)));
        self.creator_rows.sort_unstable();
        self.creator_of.clear();
        self.creator_of.resize(self.cand.len(), 0);
        self.creator_counts.clear();
        let mut last = None;
        for &(creator, j) in &self.creator_rows {
            if last != Some(creator) {
                last = Some(creator);
                self.creator_counts.push(0);
            }
            self.creator_of[j as usize] = (self.creator_counts.len() - 1) as u32;
        }
    }
}

/// Candidate `j`'s `max_sim` (`max_sim` when last folded) brought up to
/// date with `picks`, the picks made since.
///
/// Four picks at a time: their dot products with `j` in one
/// [`math::dot_i8_x4`], the cosines as one vector division, and a
/// running maximum per lane (a short last group repeats its first pick,
/// which cannot change a maximum). A cosine of a non-positive dot product
/// counts as 0: `max_sim` starts at 0 and only grows, so it could never
/// raise it (and a zero vector's zero dot product never divides by its
/// zero norm). No value is NaN, so the maximum is the same whatever order
/// it is taken in: bit for bit the scalar definition (`tests::reference_diversify`).
#[inline(always)]
fn fold(bundle: &Bundle<'_>, cand: &[(f32, u32)], norms: &[f32], picks: &[u32], j: usize, max_sim: f32) -> f32 {
    use wide::{CmpGt, f32x4, i32x4};
    let ej = bundle.embedding(cand[j].1 as usize);
    let nj = f32x4::splat(norms[j]);
    let mut m = f32x4::ZERO;
    // Whole groups of four go through `dot_i8_x4`; a last group of one or
    // two picks is cheaper one dot product at a time than four with repeats.
    let (groups, rest) = match picks.len() % 4 {
        r @ (1 | 2) => picks.split_at(picks.len() - r),
        _ => (picks, &[][..]),
    };
    let mut scalar = max_sim;
    for &p in rest {
        let p = p as usize;
        // A cosine of a non-positive dot product is at most 0 and never raises the maximum.
        let s = cosine(bundle.embedding(cand[p].1 as usize), norms[p], ej, norms[j]);
        if s > scalar {
            scalar = s;
        }
    }
    for group in groups.chunks(4) {
        let pick = |l: usize| group.get(l).copied().unwrap_or(group[0]) as usize;
        let rows: [&[i8]; 4] = core::array::from_fn(|l| bundle.embedding(cand[pick(l)].1 as usize));
        let norms = f32x4::from(core::array::from_fn::<f32, 4, _>(|l| norms[pick(l)]));
        let d = i32x4::from(math::dot_i8_x4(ej, rows));
        let s = d.round_float() / (norms * nj);
        let positive = bytemuck::cast::<i32x4, f32x4>(d.cmp_gt(i32x4::ZERO));
        m = m.max(positive.blend(s, f32x4::ZERO));
    }
    m.to_array().into_iter().fold(scalar, |a, b| if b > a { b } else { a })
}

/// Cosine similarity of two int8 rows from their exact dot product and norms
/// (the per-row scales cancel). Zero if either row is all zero.
pub fn cosine(a: &[i8], norm_a: f32, b: &[i8], norm_b: f32) -> f32 {
    math::cosine_of_dot(dot_i8(a, b), norm_a, norm_b)
}

#[cfg(test)]
mod tests;
