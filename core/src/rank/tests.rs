//! Unit tests of [`super`].

use super::*;
use crate::synth;
use alloc::vec;
use proptest::prelude::*;

proptest! {
    #[test]
    fn batched_mlp_is_bit_identical_to_the_reference(
        dim in 1u16..40, nf in 0u16..6, hidden in proptest::collection::vec(1usize..40, 0..3), seed in any::<u64>(),
        xs in proptest::collection::vec(-50.0f32..50.0, 4 * 200),
    ) {
        let spec = synth::Spec { n: 0, dim, n_features: nf, n_sources: 5, clusters: 1, creators: 1, regions: 1, seed };
        let model = synth::model(&spec, &hidden, 10, seed);
        let w = model.input_dim();
        let inputs: Vec<f32> = xs.iter().cycle().take(MLP_BATCH * w).copied().collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut batch = [0.0f32; MLP_BATCH];
        mlp_forward_batch(&model, &inputs, &mut a, &mut b, &mut batch);
        for (r, got) in batch.iter().enumerate() {
            let want = mlp_forward(&model, &inputs[r * w..(r + 1) * w], &mut a, &mut b);
            prop_assert_eq!(got.to_bits(), want.to_bits());
        }
    }
}

/// The eager greedy MMR the ranker's lazy form must match: a search pass
/// per pick, then a `max_sim` update pass over every candidate left, with
/// creators counted in a list searched linearly.
fn reference_diversify(
    cand: &[(f32, u32)],
    lambda: f32,
    cap: u32,
    bundle: &Bundle<'_>,
    k: usize,
    out: &mut RankOutput,
) {
    let n = cand.len();
    let norms: Vec<f32> = cand
        .iter()
        .map(|&(_, row)| {
            let e = bundle.embedding(row as usize);
            libm::sqrtf(dot_i8(e, e) as f32)
        })
        .collect();
    let (mut max_sim, mut taken) = (vec![0.0f32; n], vec![false; n]);
    let mut creators: Vec<(u32, u32)> = Vec::new();
    let count = |creators: &[(u32, u32)], c: u32| creators.iter().find(|(x, _)| *x == c).map_or(0, |(_, n)| *n);
    while out.items.len() < k {
        let mut best: Option<(usize, f32)> = None;
        for j in 0..n {
            if taken[j] || (cap > 0 && count(&creators, bundle.creator(cand[j].1 as usize)) >= cap) {
                continue;
            }
            let score = lambda * cand[j].0 - (1.0 - lambda) * max_sim[j];
            if best.is_none_or(|(_, b)| sortable(score) > sortable(b)) {
                best = Some((j, score));
            }
        }
        let Some((j, score)) = best else { break };
        taken[j] = true;
        let row = cand[j].1 as usize;
        let creator = bundle.creator(row);
        match creators.iter_mut().find(|(c, _)| *c == creator) {
            Some((_, c)) => *c += 1,
            None => creators.push((creator, 1)),
        }
        let r = &mut out.rows[row];
        r.outcome = Outcome::Selected;
        out.items.push(RankedItem {
            row: row as u32,
            id: bundle.id(row),
            score: r.calibrated,
            pre_score: r.pre_score,
            main_score: r.main_score,
            mmr_penalty: (1.0 - lambda) * max_sim[j],
            mmr_score: score,
        });
        if lambda < 1.0 {
            for t in 0..n {
                if !taken[t] {
                    let s = cosine(bundle.embedding(row), norms[j], bundle.embedding(cand[t].1 as usize), norms[t]);
                    if s > max_sim[t] {
                        max_sim[t] = s;
                    }
                }
            }
        }
    }
    for t in 0..n {
        let row = cand[t].1 as usize;
        if cap > 0 && !taken[t] && count(&creators, bundle.creator(row)) >= cap {
            out.rows[row].outcome = Outcome::CreatorCap;
        }
    }
}

/// Everything MMR decides, bit for bit.
fn decisions(out: &RankOutput) -> (Vec<[u64; 7]>, Vec<Outcome>) {
    let items = out
        .items
        .iter()
        .map(|i| {
            [
                u64::from(i.row),
                i.id,
                i.score.to_bits().into(),
                i.pre_score.to_bits().into(),
                i.main_score.to_bits().into(),
                i.mmr_penalty.to_bits().into(),
                i.mmr_score.to_bits().into(),
            ]
        })
        .collect();
    (items, out.rows.iter().map(|r| r.outcome).collect())
}

proptest! {
    #[test]
    fn lazy_mmr_matches_the_eager_reference(
        n in 1usize..120, creators in 1u32..12, dim in 1u16..24, seed in any::<u64>(),
        scores in proptest::collection::vec(prop_oneof![-3.0f32..3.0, Just(0.5f32), Just(-0.0f32)], 120),
        lambda in prop_oneof![0.0f32..=1.0, Just(1.0f32), Just(0.0f32)],
        cap in 0u32..4, k in 0usize..40, stride in 1usize..4,
    ) {
        let spec = synth::Spec { n, dim, n_features: 2, n_sources: 5, clusters: 3, creators, regions: 2, seed };
        let bytes = synth::bundle(&spec, 1);
        let bundle = Bundle::decode(&bytes).map_err(|e| TestCaseError::fail(alloc::format!("{e}")))?;
        let mut model = synth::model(&spec, &[4], 10, seed);
        model.diversity.mmr_lambda = lambda;
        model.diversity.creator_cap = cap;
        // Every `stride`-th row is a candidate, best first as the ranker leaves them.
        let mut cand: Vec<(f32, u32)> = (0..n).step_by(stride).map(|i| (scores[i], i as u32)).collect();
        cand.sort_unstable_by(best_first);
        let rows: Vec<RowExplain> = (0..n)
            .map(|i| RowExplain { outcome: Outcome::BelowTopK, pre_score: scores[i] / 2.0, main_score: -scores[i], calibrated: scores[i] })
            .collect();
        let mut want = RankOutput { items: Vec::new(), rows: rows.clone() };
        reference_diversify(&cand, lambda, cap, &bundle, k, &mut want);
        let mut ranker = Ranker::new();
        ranker.cand = cand;
        let mut got = RankOutput { items: Vec::new(), rows };
        ranker.diversify(&model, &bundle, k, &mut got);
        prop_assert_eq!(decisions(&got), decisions(&want));
    }
}

#[test]
fn relu_keeps_negative_zero_like_the_reference() {
    let spec = synth::Spec { n: 0, dim: 1, n_features: 0, n_sources: 0, clusters: 1, creators: 1, regions: 1, seed: 1 };
    let model = synth::model(&spec, &[3], 10, 1);
    let inputs = vec![-0.0f32; MLP_BATCH * model.input_dim()];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut batch = [0.0f32; MLP_BATCH];
    mlp_forward_batch(&model, &inputs, &mut a, &mut b, &mut batch);
    let want = mlp_forward(&model, &inputs[..model.input_dim()], &mut a, &mut b);
    assert_eq!(batch[0].to_bits(), want.to_bits());
}

proptest! {
    /// Ranking with dot products computed elsewhere is `rank`, bit for bit,
    /// when they are right; and `quantized_query` refuses what `rank` refuses.
    #[test]
    fn rank_with_dots_is_rank(n in 1usize..300, dim in 1u16..40, seed in any::<u64>(), keep in 1u32..100) {
        let spec = synth::Spec { n, dim, n_features: 3, n_sources: 4, clusters: 4, creators: 9, regions: 4, seed };
        let model = synth::model(&spec, &[8], keep, seed);
        let bytes = synth::bundle(&spec, 1_700_000_000_000);
        let bundle = Bundle::decode(&bytes).expect("synthetic bundle decodes");
        let ctx = synth::context(&spec, 10, 1_700_000_000_000, seed ^ 3);
        let mut ranker = Ranker::new();
        let mut want = RankOutput::default();
        ranker.rank(&model, &bundle, &ctx, &mut want).expect("ranks");
        let (q, _) = ranker.quantized_query(&model, &bundle, &ctx).expect("query");
        let q = q.to_vec();
        let dots: Vec<i32> = (0..n).map(|i| math::dot_i8(&q, bundle.embedding(i))).collect();
        let mut got = RankOutput::default();
        ranker.rank_with_dots(&model, &bundle, &ctx, &dots, &mut got).expect("ranks with dots");
        prop_assert_eq!(decisions(&got), decisions(&want));
        let bits = |o: &RankOutput| o.rows.iter().map(|r| [r.pre_score, r.main_score, r.calibrated].map(f32::to_bits)).collect::<Vec<_>>();
        prop_assert_eq!(bits(&got), bits(&want));

        let err = ranker.rank_with_dots(&model, &bundle, &ctx, &dots[1..], &mut got);
        prop_assert_eq!(err, Err(RankError::DotCount { expected: n, found: n - 1 }));
        prop_assert!(got.items.is_empty() && got.rows.is_empty());
        let mut other = model.clone();
        other.dim += 1;
        let refused = matches!(ranker.quantized_query(&other, &bundle, &ctx), Err(RankError::Shape { .. }));
        prop_assert!(refused, "a model of another dimension is refused");
    }
}

proptest! {
    /// A context without a base ranks with the user embedding a personal
    /// bundle carries, exactly as a context holding that base ranks the
    /// plain bundle; a context's own base goes first.
    #[test]
    fn a_bundles_user_embedding_stands_in_for_a_missing_base(n in 1usize..200, dim in 1u16..40, seed in any::<u64>()) {
        let spec = synth::Spec { n, dim, n_features: 3, n_sources: 4, clusters: 4, creators: 9, regions: 4, seed };
        let model = synth::model(&spec, &[8], 50, seed);
        let plain = synth::bundle(&spec, 1_700_000_000_000);
        let ctx = synth::context(&spec, 10, 1_700_000_000_000, seed ^ 5);
        let carried = synth::with_user_embedding(&plain, &ctx.base);
        let (plain, carried) = (Bundle::decode(&plain).expect("plain"), Bundle::decode(&carried).expect("v3"));
        let mut ranker = Ranker::new();
        let (mut want, mut got) = (RankOutput::default(), RankOutput::default());
        ranker.rank(&model, &plain, &ctx, &mut want).expect("ranks");
        let no_base = RankContext { base: Vec::new(), ..ctx.clone() };
        ranker.rank(&model, &carried, &no_base, &mut got).expect("ranks");
        prop_assert_eq!(decisions(&got), decisions(&want));

        // The context's base wins over the bundle's.
        let other = synth::with_user_embedding(&synth::bundle(&spec, 1_700_000_000_000), &vec![1.0; usize::from(dim)]);
        let other = Bundle::decode(&other).expect("v3");
        ranker.rank(&model, &other, &ctx, &mut got).expect("ranks");
        prop_assert_eq!(decisions(&got), decisions(&want));
    }
}
