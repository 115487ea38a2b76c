//! Choosing, from the GPU's f32 pre-rank scores, a superset of the rows the
//! CPU core's pre-ranker keeps.
//!
//! # Why a superset, and how wide
//! The CPU core keeps the `keep` eligible rows with the highest pre-rank
//! score (ties: the lower row). The GPU computes the same expression in f32,
//! but WGSL does not promise the CPU's bits: addition and multiplication are
//! correctly rounded, yet an implementation may reassociate sums and fuse
//! `a*b+c`, and may flush subnormals to zero (WGSL §15.7 "Floating Point
//! Evaluation"). Division, `exp` and the other functions with looser accuracy
//! are not used. So both the CPU's score `p` and the GPU's score `g` of a row
//! are within the classic bound of the real-valued expression `s`:
//!
//! - the score has `k` terms `t` (the bias, the dot-product term, the retrieval
//!   term, one per feature, one per source that retrieved the row); the dot
//!   term takes 4 roundings (the i32 → f32 conversion of the exact dot product
//!   and three products), every other term at most 1, and the sum `k − 1`
//!   additions; in any order, with or without fused multiply-adds (which only
//!   remove roundings), `|p − s| ≤ γ(n)·Σ|t|` with `n = k + 3` and
//!   `γ(n) = n·u / (1 − n·u)`, `u = 2⁻²⁴` (Higham, *Accuracy and Stability of
//!   Numerical Algorithms*, §3–4);
//! - flushing a subnormal loses at most 2⁻¹²⁶ per operation: `n·2⁻¹²⁶` more.
//!
//! Hence `|p − g| ≤ 2·(γ(n)·Σ|t| + n·2⁻¹²⁶)`. The GPU also returns its f32
//! `Σ|t|` (`mag`), itself within `γ(n)·Σ|t|` of the real one, so
//! `Σ|t| ≤ mag / (1 − γ(n))`. [`margin`] is that bound, with `n = k + 8` for
//! slack.
//!
//! # Why the superset holds every kept row
//! Let `E` be the largest margin among eligible rows and `t` the `keep`-th
//! highest GPU score among them. The `keep` rows with GPU score ≥ `t` have CPU
//! scores ≥ `t − E`, so the CPU's `keep`-th highest score is ≥ `t − E`; every
//! row the CPU keeps has a CPU score at least that, hence a GPU score
//! ≥ `t − 2E`. [`select`] returns every eligible row with GPU score ≥ `t − 2E`.
//! A non-finite GPU score or magnitude voids the argument: then every eligible
//! row is returned. The property tests below check the selection against the
//! CPU core's own scores with GPU errors pushed to the bound.

/// The unit roundoff of f32.
const U: f64 = 1.0 / 16_777_216.0;

/// The bound on `|CPU score − GPU score|` for a row whose GPU-computed sum of
/// term magnitudes is `mag`, with `terms` terms (see the module docs).
pub fn margin(mag: f32, terms: usize) -> f64 {
    let n = (terms + 8) as f64;
    let gamma = n * U / (1.0 - n * U);
    2.0 * (gamma * f64::from(mag) / (1.0 - gamma) + n * f64::powi(2.0, -126))
}

/// The number of terms of a row's pre-rank score: the bias, the dot term, the
/// retrieval term, every feature and every source slot (an upper bound: a
/// source that did not retrieve the row adds nothing).
pub fn terms(n_features: usize, n_sources: usize) -> usize {
    3 + n_features + n_sources
}

/// Rows (ascending) that contain the CPU pre-ranker's `keep` best eligible rows.
///
/// `pre` and `mag` are the GPU's per-row score and magnitude sum, `eligible`
/// says which rows passed the integrity filter (same length).
pub fn select(pre: &[f32], mag: &[f32], eligible: &[bool], keep: usize, terms: usize) -> Vec<u32> {
    let rows = || (0..pre.len().min(mag.len()).min(eligible.len())).filter(|&i| eligible[i]);
    let all = || rows().map(|i| i as u32).collect::<Vec<u32>>();
    let count = rows().count();
    if keep == 0 {
        return Vec::new();
    }
    if count <= keep || rows().any(|i| !pre[i].is_finite() || !mag[i].is_finite()) {
        return all();
    }
    let mut scores: Vec<f32> = rows().map(|i| pre[i]).collect();
    let (_, t, _) = scores.select_nth_unstable_by(keep - 1, |a, b| b.total_cmp(a));
    let t = f64::from(*t);
    let e = rows().map(|i| margin(mag[i], terms)).fold(0.0f64, f64::max);
    let floor = t - 2.0 * e;
    rows().filter(|&i| f64::from(pre[i]) >= floor).map(|i| i as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_core::bundle::{Bundle, BundleBuilder, BundleHeader, Candidate, NO_RANK};
    use edgewise_core::model::Model;
    use edgewise_core::{math, rank, synth};
    use proptest::prelude::*;

    /// The CPU core's pre-rank scores and each row's real-valued terms.
    fn cpu(model: &Model, b: &Bundle<'_>, query: &[f32]) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let mut q = vec![0i8; b.dim()];
        let qs = math::quantize_into(query, &mut q);
        let p = &model.prerank;
        let (mut exact, mut real, mut mags) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..b.len() {
            exact.push(rank::prerank_score(model, b, i, &q, qs));
            let dot = f64::from(math::dot_i8(&q, b.embedding(i)));
            let mut ts = vec![
                f64::from(p.bias),
                f64::from(p.w_dot) * dot * f64::from(qs) * f64::from(b.scale(i)),
                f64::from(p.w_retrieval) * f64::from(b.retrieval_score(i)),
            ];
            ts.extend(p.w_features.iter().zip(b.features(i)).map(|(w, f)| f64::from(*w) * f64::from(f)));
            let mask = b.source_mask(i);
            ts.extend(p.w_sources.iter().enumerate().filter(|(j, _)| mask & (1 << j) != 0).map(|(_, w)| f64::from(*w)));
            real.push(ts.iter().sum());
            mags.push(ts.iter().map(|t| t.abs()).sum());
        }
        (exact, real, mags)
    }

    /// The exact CPU top `keep` among eligible rows: highest score, then lower row.
    fn cpu_top(exact: &[f32], eligible: &[bool], keep: usize) -> Vec<u32> {
        let mut rows: Vec<u32> = (0..exact.len() as u32).filter(|&i| eligible[i as usize]).collect();
        rows.sort_by(|&a, &b| exact[b as usize].total_cmp(&exact[a as usize]).then(a.cmp(&b)));
        rows.truncate(keep);
        rows
    }

    /// A GPU that errs as far as the bound allows: each score pushed by up to
    /// `γ·Σ|t|` from the real value (direction from `push`), its magnitude
    /// sum understated by the same relative amount.
    fn gpu(real: &[f64], mags: &[f64], terms: usize, push: &[i8]) -> (Vec<f32>, Vec<f32>) {
        let n = (terms + 3) as f64;
        let gamma = n * U / (1.0 - n * U);
        let pre = real.iter().zip(mags).zip(push).map(|((r, m), p)| (r + f64::from(*p) * gamma * m) as f32).collect();
        let mag = mags.iter().map(|m| (m * (1.0 - gamma)) as f32).collect();
        (pre, mag)
    }

    fn check(bytes: &[u8], model: &Model, query: &[f32], keep: usize, eligible: &[bool], push: &[i8]) -> usize {
        let b = Bundle::decode(bytes).expect("bundle");
        let (exact, real, mags) = cpu(model, &b, query);
        let k = terms(usize::from(b.header().n_features), usize::from(b.header().n_sources));
        let (pre, mag) = gpu(&real, &mags, k, push);
        let chosen = select(&pre, &mag, eligible, keep, k);
        for r in cpu_top(&exact, eligible, keep) {
            assert!(chosen.binary_search(&r).is_ok(), "row {r} of the CPU's top {keep} is missing from {chosen:?}");
        }
        assert!(chosen.windows(2).all(|w| w[0] < w[1]), "ascending, no duplicates");
        chosen.len()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn the_superset_holds_the_cpu_top_keep(
            n in 1usize..400, dim in prop::sample::select(vec![8u16, 64]), keep in 1usize..120,
            seed in any::<u64>(), pushes in proptest::collection::vec(-1i8..=1, 400), elig in proptest::collection::vec(prop::bool::weighted(0.9), 400)
        ) {
            let spec = synth::Spec { n, dim, n_features: 3, n_sources: 5, clusters: 4, creators: 8, regions: 4, seed };
            let bytes = synth::bundle(&spec, 1);
            let model = synth::model(&spec, &[4], keep as u32, seed);
            let query: Vec<f32> = (0..usize::from(dim)).map(|j| ((j as f32) * 0.37 + seed as f32 * 1e-9).sin()).collect();
            check(&bytes, &model, &query, keep, &elig[..n], &pushes[..n]);
        }

        /// Near-ties: rows whose scores differ by a few ULP (identical
        /// embeddings and features, retrieval scores one ULP apart), and exact
        /// ties broken by row index.
        #[test]
        fn near_ties_are_kept(n in 2usize..300, keep in 1usize..100, base in -5.0f32..5.0, pushes in proptest::collection::vec(-1i8..=1, 300)) {
            let mut h = BundleHeader::new(8, 2, 2);
            h.n_sources = 2;
            let mut bld = BundleBuilder::new(h).expect("header");
            let emb = [0.5f32, -0.25, 0.125, 1.0, -1.0, 0.75, 0.0, 0.3];
            let mut r = base;
            for i in 0..n {
                if i % 3 != 0 {
                    r = f32::from_bits(r.to_bits().wrapping_add(1));
                }
                bld.push(&Candidate {
                    id: i as u64, embedding: &emb, features: &[1.5, -2.0], source_ranks: &[0, NO_RANK],
                    creator: 1, category: 0, region_mask: u32::MAX, retrieval_score: r,
                }).expect("row");
            }
            let bytes = bld.finish();
            let spec = synth::Spec { n: 1, dim: 8, n_features: 2, n_sources: 2, clusters: 1, creators: 1, regions: 1, seed: 3 };
            let model = synth::model(&spec, &[4], keep as u32, 3);
            let chosen = check(&bytes, &model, &emb, keep, &vec![true; n], &pushes[..n]);
            prop_assert!(chosen >= keep.min(n));
        }
    }

    #[test]
    fn degenerate_inputs() {
        assert!(select(&[1.0, 2.0], &[1.0, 1.0], &[true, true], 0, 5).is_empty());
        assert_eq!(select(&[1.0, 2.0], &[1.0, 1.0], &[true, false], 5, 5), vec![0], "fewer eligible rows than keep");
        assert_eq!(select(&[f32::NAN, 2.0, 3.0], &[1.0; 3], &[true; 3], 1, 5), vec![0, 1, 2], "non-finite: all");
        // Far-apart scores: only the best survives.
        assert_eq!(select(&[1.0, 100.0, 2.0], &[1.0, 100.0, 2.0], &[true; 3], 1, 5), vec![1]);
        assert!(margin(1.0, 10) > 0.0 && margin(1.0, 10) < 1e-5);
    }
}
