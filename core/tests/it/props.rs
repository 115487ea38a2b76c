//! Property tests of the ranking pipeline and the formats against naive references.

use edgewise_core::bundle::{Bundle, BundleBuilder, BundleHeader, Candidate, NO_RANK};
use edgewise_core::model::Model;
use edgewise_core::rank::{Outcome, RankContext, RankOutput, Ranker, cosine};
use edgewise_core::{abi, check, synth};
use proptest::prelude::*;

fn spec_strategy() -> impl Strategy<Value = synth::Spec> {
    (0usize..300, 1u16..40, 0u16..6, 0u8..6, 1usize..8, 1u32..40, any::<u64>()).prop_map(
        |(n, dim, n_features, n_sources, clusters, creators, seed)| synth::Spec {
            n,
            dim,
            n_features,
            n_sources,
            clusters,
            creators,
            regions: 4,
            seed,
        },
    )
}

fn rank(model: &Model, bytes: &[u8], ctx: &RankContext) -> RankOutput {
    let b = Bundle::decode(bytes).expect("synthetic bundle decodes");
    let mut out = RankOutput::default();
    Ranker::new().rank(model, &b, ctx, &mut out).expect("ranking succeeds");
    out
}

/// Rows that reached the main ranker, best first (calibrated desc, row asc).
fn main_ranked(out: &RankOutput) -> Vec<(f32, usize)> {
    let mut v: Vec<(f32, usize)> = out
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.outcome, Outcome::Selected | Outcome::BelowTopK | Outcome::CreatorCap))
        .map(|(i, r)| (r.calibrated, i))
        .collect();
    v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    v
}

/// O(n²·k) MMR: recomputes every candidate's max similarity to the whole selected set at each step.
fn mmr_reference(b: &Bundle<'_>, ranked: &[(f32, usize)], lambda: f32, cap: u32, k: usize) -> Vec<usize> {
    let norm = |r: usize| {
        let e = b.embedding(r);
        libm::sqrtf(edgewise_core::math::dot_i8(e, e) as f32)
    };
    let mut selected: Vec<usize> = Vec::new();
    while selected.len() < k {
        let mut best: Option<(usize, f32)> = None;
        for &(p, r) in ranked {
            if selected.contains(&r) {
                continue;
            }
            let same_creator = selected.iter().filter(|&&s| b.creator(s) == b.creator(r)).count() as u32;
            if cap > 0 && same_creator >= cap {
                continue;
            }
            let mut max_sim = 0.0f32;
            for &s in &selected {
                max_sim = max_sim.max(cosine(b.embedding(r), norm(r), b.embedding(s), norm(s)));
            }
            let score = lambda * p - (1.0 - lambda) * max_sim;
            if best.is_none_or(|(_, bs)| score > bs) {
                best = Some((r, score));
            }
        }
        match best {
            Some((r, _)) => selected.push(r),
            None => break,
        }
    }
    selected
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn top_k_equals_sort_and_truncate(spec in spec_strategy(), k in 0u32..60, seed in any::<u64>()) {
        let mut model = synth::model(&spec, &[8, 4], 1_000_000, seed);
        model.diversity.mmr_lambda = 1.0;
        model.diversity.creator_cap = 0;
        let bytes = synth::bundle(&spec, 0);
        let ctx = synth::context(&spec, k, 1_000_000, seed);
        let out = rank(&model, &bytes, &ctx);
        let want: Vec<usize> = main_ranked(&out).into_iter().map(|(_, r)| r).take(k as usize).collect();
        let got: Vec<usize> = out.items.iter().map(|i| i.row as usize).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn prerank_keeps_the_top_n(spec in spec_strategy(), keep in 1u32..100, seed in any::<u64>()) {
        let model = synth::model(&spec, &[4], keep, seed);
        let bytes = synth::bundle(&spec, 0);
        let ctx = synth::context(&spec, 10, 1_000_000, seed);
        let out = rank(&model, &bytes, &ctx);
        let mut eligible: Vec<(f32, usize)> = out.rows.iter().enumerate()
            .filter(|(_, r)| !matches!(r.outcome, Outcome::Seen | Outcome::BlockedCreator | Outcome::Region))
            .map(|(i, r)| (r.pre_score, i)).collect();
        eligible.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut want: Vec<usize> = eligible.into_iter().take(keep as usize).map(|(_, i)| i).collect();
        want.sort_unstable();
        let got: Vec<usize> = out.rows.iter().enumerate()
            .filter(|(_, r)| matches!(r.outcome, Outcome::Selected | Outcome::BelowTopK | Outcome::CreatorCap))
            .map(|(i, _)| i).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn mmr_matches_quadratic_reference(spec in spec_strategy(), k in 0u32..30, lambda in 0.0f32..=1.0, cap in 0u32..4, seed in any::<u64>()) {
        let mut model = synth::model(&spec, &[8], 80, seed);
        model.diversity.mmr_lambda = lambda;
        model.diversity.creator_cap = cap;
        let bytes = synth::bundle(&spec, 0);
        let b = Bundle::decode(&bytes).expect("decodes");
        let ctx = synth::context(&spec, k, 1_000_000, seed);
        let out = rank(&model, &bytes, &ctx);
        let want = mmr_reference(&b, &main_ranked(&out), lambda, cap, k as usize);
        let got: Vec<usize> = out.items.iter().map(|i| i.row as usize).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn integrity_filter_is_exact(spec in spec_strategy(), seed in any::<u64>()) {
        let model = synth::model(&spec, &[4], 50, seed);
        let bytes = synth::bundle(&spec, 0);
        let b = Bundle::decode(&bytes).expect("decodes");
        let ctx = synth::context(&spec, 20, 1_000_000, seed);
        let out = rank(&model, &bytes, &ctx);
        for (i, r) in out.rows.iter().enumerate() {
            let seen = ctx.seen.contains(&b.id(i));
            let blocked = ctx.blocked_creators.contains(&b.creator(i));
            let region = ctx.region.is_some_and(|r| (b.region_mask(i) >> r.get()) & 1 == 0);
            let want = if seen { Some(Outcome::Seen) } else if blocked { Some(Outcome::BlockedCreator) } else if region { Some(Outcome::Region) } else { None };
            match want {
                Some(o) => prop_assert_eq!(r.outcome, o),
                None => prop_assert!(!matches!(r.outcome, Outcome::Seen | Outcome::BlockedCreator | Outcome::Region)),
            }
        }
        for it in &out.items {
            prop_assert!(!ctx.seen.contains(&it.id));
        }
    }

    #[test]
    fn bundle_roundtrip(spec in spec_strategy()) {
        let bytes = synth::bundle(&spec, 42);
        prop_assert_eq!(check::bundle_bytes(&bytes), Ok(spec.n));
    }

    #[test]
    fn bundle_roundtrip_arbitrary_rows(rows in proptest::collection::vec((any::<u64>(), proptest::collection::vec(-100.0f32..100.0, 3), -1e6f32..1e6, any::<u32>(), any::<u32>(), any::<u32>(), proptest::option::of(0u16..1000)), 0..50)) {
        let mut b = BundleBuilder::new(BundleHeader::new(3, 1, 2)).expect("header");
        for (id, e, f, creator, category, mask, r) in &rows {
            b.push(&Candidate { id: *id, embedding: e, features: &[*f], source_ranks: &[r.unwrap_or(NO_RANK), 1], creator: *creator, category: *category, region_mask: *mask, retrieval_score: *f }).expect("push");
        }
        let bytes = b.finish();
        let v = Bundle::decode(&bytes).expect("decode");
        for (i, (id, _, f, creator, _, mask, r)) in rows.iter().enumerate() {
            prop_assert_eq!(v.id(i), *id);
            prop_assert_eq!(v.feature(i, 0), *f);
            prop_assert_eq!(v.creator(i), *creator);
            prop_assert_eq!(v.region_mask(i), *mask);
            prop_assert_eq!(v.source_rank(i, 0), *r);
        }
        prop_assert_eq!(check::bundle_bytes(&bytes), Ok(rows.len()));
    }

    #[test]
    fn model_roundtrip(spec in spec_strategy(), hidden in proptest::collection::vec(1usize..24, 0..4), keep in 1u32..500, seed in any::<u64>()) {
        let m = synth::model(&spec, &hidden, keep, seed);
        let bytes = m.encode().expect("encodes");
        let back = check::model_bytes(&bytes).expect("decodes");
        prop_assert_eq!(back, m);
    }

    /// With a history block and a history, every row's MLP input (the
    /// attention outputs included) matches the straight-from-the-definition
    /// reference, and the guest's engine returns the same bytes
    /// (`check::rank_bytes` asserts both, and the rest of the invariants).
    #[test]
    fn history_attention_matches_the_reference(
        spec in spec_strategy(), entries in 0usize..70, length in 1u8..=64, heads in 1usize..=8,
        k in 0u32..30, seed in any::<u64>(),
    ) {
        let model = synth::model_with_history(&spec, &[8, 4], 200, seed, length, heads);
        let bundle = synth::bundle(&spec, 0);
        let ctx = synth::context_with_history(&spec, k, 5_000_000, seed, entries);
        let mut ctx_bytes = Vec::new();
        abi::encode_context(&ctx, &mut ctx_bytes);
        prop_assert!(check::context_bytes(&ctx_bytes));
        let model_bytes = model.encode().expect("encodes");
        prop_assert!(check::rank_bytes(&bundle, &model_bytes, &ctx_bytes).is_some());
        let stored = ctx.history.encode();
        prop_assert!(check::history_bytes(&stored));
        prop_assert_eq!(edgewise_core::history::History::decode(&stored).expect("decodes"), ctx.history);
    }

    /// A model without a history block ranks a context with a history
    /// exactly as it ranks the same context without one.
    #[test]
    fn a_model_without_the_block_ignores_the_history(spec in spec_strategy(), entries in 1usize..20, seed in any::<u64>()) {
        let model = synth::model(&spec, &[8], 200, seed);
        let bytes = synth::bundle(&spec, 0);
        let with = synth::context_with_history(&spec, 10, 5_000_000, seed, entries);
        let mut without = with.clone();
        without.history.clear();
        let encoded = |out: &RankOutput| {
            let mut v = Vec::new();
            abi::encode_result(out, abi::ModelMatch::Any, &mut v);
            v
        };
        prop_assert_eq!(encoded(&rank(&model, &bytes, &with)), encoded(&rank(&model, &bytes, &without)));
    }

    #[test]
    fn context_roundtrip(spec in spec_strategy(), k in any::<u32>(), seed in any::<u64>(), verified in any::<bool>()) {
        let mut ctx = synth::context(&spec, k, 5_000_000, seed);
        ctx.checksum_verified = verified;
        let mut bytes = Vec::new();
        abi::encode_context(&ctx, &mut bytes);
        prop_assert!(check::context_bytes(&bytes));
        let mut back = RankContext::default();
        abi::decode_context(&bytes, &mut back).expect("decodes");
        prop_assert_eq!(back.checksum_verified, verified);
        prop_assert_eq!(back.seen, ctx.seen);
        prop_assert_eq!(back.base, ctx.base);
        prop_assert_eq!(back.session, ctx.session);
        prop_assert!(back.history.is_empty());
    }
}

/// The history changes the ranking: the attention outputs reach the MLP.
#[test]
fn the_history_moves_scores() {
    let spec = synth::Spec::new(200, 16, 5);
    let model = synth::model_with_history(&spec, &[8], 200, 5, 16, 2);
    let bytes = synth::bundle(&spec, 0);
    let with = synth::context_with_history(&spec, 10, 5_000_000, 5, 12);
    assert_eq!(with.history.len(), 12);
    let mut without = with.clone();
    without.history.clear();
    let (a, b) = (rank(&model, &bytes, &with), rank(&model, &bytes, &without));
    let moved = a.rows.iter().zip(&b.rows).filter(|(x, y)| x.main_score.to_bits() != y.main_score.to_bits()).count();
    assert!(moved > 100, "only {moved} of 200 scores moved");
}

fn small_bundle() -> Vec<u8> {
    synth::bundle(
        &synth::Spec { n: 12, dim: 8, n_features: 3, n_sources: 5, clusters: 3, creators: 4, regions: 4, seed: 1 },
        7,
    )
}

fn small_model() -> Vec<u8> {
    let spec =
        synth::Spec { n: 12, dim: 8, n_features: 3, n_sources: 5, clusters: 3, creators: 4, regions: 4, seed: 1 };
    synth::model(&spec, &[4, 3], 10, 1).encode().expect("encodes")
}

proptest! {
    // The acceptance bar: at least 10,000 cases of hostile bytes per decoder and kind.
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn bundle_decoder_never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = check::bundle_bytes(&data);
    }

    #[test]
    fn bundle_decoder_rejects_every_truncation(cut in 0usize..10_000) {
        let b = small_bundle();
        let cut = cut % b.len();
        prop_assert!(check::bundle_bytes(&b[..cut]).is_err());
    }

    #[test]
    fn bundle_decoder_survives_mutations(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), fix in any::<bool>()) {
        let mut b = small_bundle();
        for (at, v) in &edits {
            let n = b.len();
            b[at % n] = *v;
        }
        if fix {
            check::fix_bundle_crc(&mut b);
        }
        let _ = check::bundle_bytes(&b);
    }

    #[test]
    fn model_decoder_never_panics_on_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = check::model_bytes(&data);
    }

    #[test]
    fn model_decoder_rejects_every_truncation(cut in 0usize..10_000) {
        let b = small_model();
        let cut = cut % b.len();
        prop_assert!(check::model_bytes(&b[..cut]).is_err());
    }

    #[test]
    fn model_decoder_survives_mutations(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), fix in any::<bool>()) {
        let mut b = small_model();
        for (at, v) in &edits {
            let n = b.len();
            b[at % n] = *v;
        }
        if fix {
            check::fix_model_crc(&mut b);
        }
        let _ = check::model_bytes(&b);
    }

    #[test]
    fn context_and_session_decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = check::context_bytes(&data);
        let _ = check::session_bytes(&data);
    }
}
