//! Checkers for arbitrary input, shared by the cargo-fuzz targets
//! (`core/fuzz/`) and the property tests.
//!
//! Each takes any byte string, runs the decoder, and when decoding succeeds
//! checks the invariants a valid value must have, panicking if one fails (a
//! panic here is a bug the fuzzer should report). The decoders themselves never
//! panic on any input.

use alloc::vec::Vec;

use crate::bundle::{self, Bundle, BundleError};
use crate::format::FormatError;
use crate::model::{Model, ModelError};
use crate::session::SessionState;

/// Decodes `data` as a bundle; on success, reads every cell and checks that the
/// canonical re-encoding reproduces `data` exactly.
pub fn bundle_bytes(data: &[u8]) -> Result<usize, BundleError> {
    let b = Bundle::decode(data)?;
    let mut sum = 0u64;
    for i in 0..b.len() {
        sum = sum.wrapping_add(b.id(i));
        assert!(b.scale(i).is_finite() && b.scale(i) >= 0.0);
        assert!(b.retrieval_score(i).is_finite());
        assert!(b.features(i).all(f32::is_finite));
        assert_eq!(b.embedding(i).len(), b.dim());
        let _ = (b.creator(i), b.category(i), b.region_mask(i), b.source_mask(i));
    }
    let _ = sum;
    if let Some(user) = b.user_embedding() {
        assert_eq!(b.header().scope, bundle::Scope::Personal);
        assert_eq!(user.filter(|x| x.is_finite()).count(), b.dim());
    }
    assert_eq!(bundle::reencode(&b), data, "decode/encode is not canonical");
    Ok(b.len())
}

/// Decodes `data` as a model; on success, checks it validates and re-encodes to `data`.
pub fn model_bytes(data: &[u8]) -> Result<Model, ModelError> {
    let m = Model::decode(data)?;
    assert_eq!(m.validate(), Ok(()));
    assert_eq!(m.encode().as_deref(), Ok(data), "decode/encode is not canonical");
    Ok(m)
}

/// Decodes `data` as a session state; on success, checks the re-encoding.
pub fn session_bytes(data: &[u8]) -> bool {
    match SessionState::decode(data) {
        Ok((s, n)) => {
            assert_eq!(s.encode(), data[..n].to_vec());
            true
        }
        Err(_) => false,
    }
}

/// Decodes `data` as a stored history (`EWHS`); one that decodes must
/// re-encode to the same bytes. Returns whether it decoded.
pub fn history_bytes(data: &[u8]) -> bool {
    match crate::history::History::decode(data) {
        Ok(h) => {
            assert_eq!(h.encode(), data, "a decoded history re-encodes to other bytes");
            true
        }
        Err(_) => false,
    }
}

/// Decodes `data` as an `EWCX` context; a context that decodes must re-encode
/// to the same bytes (one encoding per context). Returns whether it decoded.
pub fn context_bytes(data: &[u8]) -> bool {
    let mut ctx = crate::rank::RankContext::default();
    match crate::abi::decode_context(data, &mut ctx) {
        Ok(()) => {
            let mut again = Vec::new();
            crate::abi::encode_context(&ctx, &mut again);
            assert_eq!(again, data);
            true
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------
// Structure-aware fuzzing: checksum fix-ups, the checksum-free bundle path and
// the rank path.
//
// A mutated byte string almost never carries a matching CRC-32, so a fuzzer
// that feeds raw bytes to the decoders stops at the checksum. The fix-ups below
// recompute each format's checksum in place first, so that mutations reach the
// structure checks and, for the rank path, the pipeline itself.
// ---------------------------------------------------------------------------

/// Offset of the first variable section of an `EWCX` context (its fixed part;
/// see the table in [`crate::abi`]).
const CONTEXT_FIXED_LEN: usize = 56;

/// Overwrites the CRC-32 in the trailer of a bundle-shaped byte string with the
/// CRC of everything before the trailer (the layout of [`crate::bundle`]).
/// Returns whether it did: strings shorter than the decoder's minimum are left alone.
pub fn fix_bundle_crc(data: &mut [u8]) -> bool {
    data.len() >= bundle::HEADER_LEN + bundle::TRAILER_LEN && bundle::ENVELOPE.reseal(data)
}

/// Overwrites the CRC-32 in the trailer of a model-shaped byte string
/// (the layout of [`crate::model`]). Returns whether it did.
pub fn fix_model_crc(data: &mut [u8]) -> bool {
    let model = crate::model::ENVELOPE;
    data.len() >= crate::model::HEADER_LEN + model.trailer_len() && model.reseal(data)
}

/// Overwrites the CRC-32 of an `EWSS` session state at the start of `data`,
/// placed where the state's dimension field says it ends. Returns whether it did.
pub fn fix_session_crc(data: &mut [u8]) -> bool {
    let fixed = SessionState::new(0).encoded_len();
    if data.len() < fixed {
        return false;
    }
    let dim = usize::from(u16::from_le_bytes([data[6], data[7]]));
    let len = fixed + 4 * dim;
    if dim > crate::session::MAX_DIM || data.len() < len {
        return false;
    }
    crate::session::ENVELOPE.reseal(&mut data[..len])
}

/// Fixes the CRC of the session state inside an `EWCX` context, found where the
/// context's section counts place it. Returns whether it did.
pub fn fix_context_crc(data: &mut [u8]) -> bool {
    if data.len() < CONTEXT_FIXED_LEN {
        return false;
    }
    let u32_at = |at: usize| u64::from(u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]));
    let at = CONTEXT_FIXED_LEN as u64 + 8 * u32_at(40) + 4 * u32_at(44) + 4 * u32_at(48);
    match usize::try_from(at).ok().and_then(|at| data.get_mut(at..)) {
        Some(session) => fix_session_crc(session),
        None => false,
    }
}

/// Reads every cell of a decoded bundle and checks what the format promises of each.
fn check_cells(b: &Bundle<'_>) {
    let h = b.header();
    assert!(b.dim() >= 1 && b.dim() <= usize::from(bundle::MAX_DIM));
    assert!(h.n_features <= bundle::MAX_FEATURES && h.n_sources <= bundle::MAX_SOURCES);
    let l = b.layout();
    let cols = [
        l.ids,
        l.scales,
        l.retrieval,
        l.creator,
        l.category,
        l.region_mask,
        l.features,
        l.source_ranks,
        l.source_mask,
        l.embeddings,
    ];
    let mut at = bundle::HEADER_LEN;
    for (start, end) in cols {
        assert!(start % 8 == 0 && start >= at && start <= end, "column layout out of order");
        at = end;
    }
    assert_eq!(l.total, b.as_bytes().len());
    assert!(at + bundle::TRAILER_LEN <= l.total);
    let ns = usize::from(h.n_sources);
    let (mut f, mut r) = (Vec::new(), Vec::new());
    for i in 0..b.len() {
        let s = b.scale(i);
        assert!(s.is_finite() && s >= 0.0);
        assert!(b.retrieval_score(i).is_finite());
        assert!(b.features(i).all(f32::is_finite));
        assert_eq!(b.features(i).count(), usize::from(h.n_features));
        assert_eq!(b.embedding(i).len(), b.dim());
        let mask = b.source_mask(i);
        for j in 0..ns {
            assert_eq!(b.source_rank(i, j).is_some(), mask & (1 << j) != 0, "source mask and ranks disagree");
        }
        assert!(ns >= 8 || mask >> ns == 0, "source mask names a slot that does not exist");
        let row = b.row(i, &mut f, &mut r);
        assert_eq!(
            (row.id, row.creator, row.category, row.region_mask),
            (b.id(i), b.creator(i), b.category(i), b.region_mask(i))
        );
    }
}

/// [`bundle_bytes`] after [`fix_bundle_crc`]: mutations reach the structure
/// checks. Also checks that the checksum-free decoder agrees with the full one
/// on bytes whose checksum is right.
pub fn bundle_bytes_fixed_crc(data: &[u8]) -> Result<usize, BundleError> {
    let mut fixed = data.to_vec();
    fix_bundle_crc(&mut fixed);
    let full = bundle_bytes(&fixed);
    let pre = Bundle::decode_prechecked(&fixed).map(|b| b.len());
    assert_eq!(full, pre, "decode and decode_prechecked disagree on bytes with a correct checksum");
    full
}

/// Decodes `data` with [`Bundle::decode_prechecked`] (no checksum); on success
/// reads every cell, and checks that the canonical re-encoding reproduces `data`
/// up to the stored CRC, and exactly when that CRC is right. Checks too that the
/// full decoder agrees: it accepts exactly the bytes whose checksum is right, and
/// rejects what the prechecked one rejects, with the same error or a checksum one.
pub fn bundle_prechecked_bytes(data: &[u8]) -> Result<usize, BundleError> {
    let crc_ok = bundle::verify_checksum(data).is_ok();
    let b = match Bundle::decode_prechecked(data) {
        Ok(b) => b,
        Err(e) => {
            match Bundle::decode(data) {
                Ok(_) => panic!("decode accepts what decode_prechecked rejects ({e})"),
                Err(full) => assert!(
                    full == e || matches!(full, BundleError::Format(FormatError::ChecksumMismatch { .. })),
                    "decode_prechecked says {e}, decode says {full}"
                ),
            }
            return Err(e);
        }
    };
    check_cells(&b);
    let again = bundle::reencode(&b);
    let n = data.len();
    assert_eq!(again.len(), n, "re-encoding changed the length");
    let crc = n - bundle::TRAILER_LEN..n - bundle::TRAILER_LEN + 4;
    assert_eq!(again[..crc.start], data[..crc.start], "decode_prechecked/encode is not canonical");
    assert_eq!(again[crc.end..], data[crc.end..], "trailer magic not reproduced");
    assert_eq!(again == data, crc_ok, "the re-encoding's CRC disagrees with verify_checksum");
    match Bundle::decode(data) {
        Ok(full) => {
            assert!(crc_ok, "decode accepted a bad checksum");
            assert_eq!(full.len(), b.len());
            assert_eq!(full.header(), b.header());
            assert_eq!(full.layout(), b.layout());
        }
        Err(e) => assert!(
            !crc_ok && matches!(e, BundleError::Format(FormatError::ChecksumMismatch { .. })),
            "decode says {e}"
        ),
    }
    Ok(b.len())
}

/// [`model_bytes`] after [`fix_model_crc`].
pub fn model_bytes_fixed_crc(data: &[u8]) -> Result<Model, ModelError> {
    let mut fixed = data.to_vec();
    fix_model_crc(&mut fixed);
    model_bytes(&fixed)
}

/// [`session_bytes`] after [`fix_session_crc`].
pub fn session_bytes_fixed_crc(data: &[u8]) -> bool {
    let mut fixed = data.to_vec();
    fix_session_crc(&mut fixed);
    session_bytes(&fixed)
}

/// [`history_bytes`] after rewriting the history's CRC-32 to match.
pub fn history_bytes_fixed_crc(data: &[u8]) -> bool {
    let mut fixed = data.to_vec();
    crate::history::ENVELOPE.reseal(&mut fixed);
    history_bytes(&fixed)
}

/// [`context_bytes`] after [`fix_context_crc`].
pub fn context_bytes_fixed_crc(data: &[u8]) -> bool {
    let mut fixed = data.to_vec();
    fix_context_crc(&mut fixed);
    context_bytes(&fixed)
}

/// Joins a bundle, a model and a context into one fuzz input for
/// [`rank_input`]: `u32` bundle length, `u32` model length (little-endian),
/// the bundle, the model, then the context to the end.
pub fn join_rank_input(bundle: &[u8], model: &[u8], context: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + bundle.len() + model.len() + context.len());
    out.extend_from_slice(&(bundle.len() as u32).to_le_bytes());
    out.extend_from_slice(&(model.len() as u32).to_le_bytes());
    out.extend_from_slice(bundle);
    out.extend_from_slice(model);
    out.extend_from_slice(context);
    out
}

/// Splits what [`join_rank_input`] wrote into (bundle, model, context). Lengths
/// past the end are cut to what is there, so every input splits somehow.
pub fn split_rank_input(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    if data.len() < 8 {
        return (&[], &[], data);
    }
    let len = |at: usize| u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]) as usize;
    let rest = &data[8..];
    let (bundle, rest) = rest.split_at(len(0).min(rest.len()));
    let (model, context) = rest.split_at(len(4).min(rest.len()));
    (bundle, model, context)
}

/// The rank path on one fuzz input: splits it ([`split_rank_input`]), fixes the
/// bundle's, the model's and the context's session checksums, and runs
/// [`rank_bytes`]. Returns the number of items ranked, if ranking ran.
pub fn rank_input(data: &[u8]) -> Option<usize> {
    let (b, m, c) = split_rank_input(data);
    let (mut b, mut m, mut c) = (b.to_vec(), m.to_vec(), c.to_vec());
    fix_bundle_crc(&mut b);
    fix_model_crc(&mut m);
    fix_context_crc(&mut c);
    rank_bytes(&b, &m, &c)
}

fn same_f32(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// The order the ranker uses for `(score, row)` pairs: higher score first (NaN
/// last), then lower row.
fn best_first(a: &(f32, u32), b: &(f32, u32)) -> core::cmp::Ordering {
    use crate::math::sortable;
    sortable(b.0).total_cmp(&sortable(a.0)).then(a.1.cmp(&b.1))
}

/// Ranks `bundle` for the `EWCX` context `context` with `model`, when all three
/// decode, and checks the output against what [`crate::rank`] documents:
///
/// - one explanation per bundle row; each row's outcome follows from the
///   context's seen ids, blocked creators and region; filtered rows carry no
///   scores; exactly `min(keep, unfiltered)` rows pass the pre-ranker, and no
///   row cut there scores better than one kept;
/// - at most `k` items, distinct rows, each `Selected`, with the id, scores and
///   calibration of its row; fewer than `k` only when every other candidate was
///   cut by the creator cap; no creator above its cap; MMR values never rise
///   down the list;
/// - pre-rank scores, MLP logits and calibrated scores equal, bit for bit, the
///   single-candidate reference functions ([`crate::rank::prerank_score`],
///   [`crate::rank::mlp_forward`], [`crate::math::sigmoid`]);
/// - the `EWRS` encoding decodes and re-encodes to the same bytes; a second
///   ranking with the same (warm) ranker gives the same bytes; and the guest's
///   [`crate::abi::Engine`] returns exactly those bytes (or the matching status
///   code when something does not decode or fit).
///
/// Returns the number of items, if ranking ran.
pub fn rank_bytes(bundle_bytes: &[u8], model_bytes: &[u8], context: &[u8]) -> Option<usize> {
    use crate::abi::{self, Engine, ModelMatch, Status};
    use crate::rank::{RankContext, RankOutput, Ranker};

    let mut engine = Engine::new();
    let model = Model::decode(model_bytes);
    let loaded = engine.load_model(model_bytes);
    assert_eq!(loaded == Status::Ok, model.is_ok(), "Engine::load_model disagrees with Model::decode");
    let mut ctx = RankContext::default();
    let ctx_ok = abi::decode_context(context, &mut ctx).is_ok();
    let decoded = if ctx_ok && ctx.checksum_verified {
        Bundle::decode_prechecked(bundle_bytes)
    } else {
        Bundle::decode(bundle_bytes)
    };
    let status = engine.rank(bundle_bytes, context);
    let Ok(model) = model else {
        assert_eq!(status, Status::NoModel);
        return None;
    };
    if !ctx_ok {
        assert_eq!(status, Status::BadContext);
        return None;
    }
    let b = match decoded {
        Ok(b) => b,
        Err(_) => {
            assert_eq!(status, Status::BadBundle);
            return None;
        }
    };
    let mut ranker = Ranker::new();
    let mut out = RankOutput::default();
    if ranker.rank(&model, &b, &ctx, &mut out).is_err() {
        assert_eq!(status, Status::Incompatible, "{}", engine.error());
        return None;
    }
    assert_eq!(status, Status::Ok, "the engine failed where the ranker did not: {}", engine.error());
    check_ranking(&model, &b, &ctx, &out);

    // Encodings: the result round-trips, a warm ranker repeats itself, the engine agrees.
    let model_match = ModelMatch::of(b.header().model_digest, crate::model::digest(model_bytes));
    let mut encoded = Vec::new();
    abi::encode_result(&out, model_match, &mut encoded);
    let (back, back_match) = match abi::decode_result(&encoded) {
        Ok(x) => x,
        Err(e) => panic!("an encoded result does not decode: {e}"),
    };
    assert_eq!(back_match, model_match);
    let mut again = Vec::new();
    abi::encode_result(&back, back_match, &mut again);
    assert_eq!(again, encoded, "the result encoding does not round-trip");
    let mut warm = RankOutput::default();
    assert!(ranker.rank(&model, &b, &ctx, &mut warm).is_ok());
    again.clear();
    abi::encode_result(&warm, model_match, &mut again);
    assert_eq!(again, encoded, "a second ranking with the same ranker differs");
    assert_eq!(engine.result(), &encoded[..], "the engine's result differs from the ranker's");
    Some(out.items.len())
}

/// The history block's outputs for one candidate, straight from the
/// definition in [`crate::history`] (no prepared state, nothing reused).
pub fn reference_attention(
    block: &crate::history::HistoryBlock,
    h: &crate::history::History,
    now_ms: u64,
    item: &[i8],
    out: &mut [f32],
) {
    use crate::math::{dot_i8, sqrt};
    let n = usize::from(block.length).min(h.len());
    let norm = sqrt(dot_i8(item, item) as f32);
    let cos: Vec<f32> = (0..n)
        .map(|l| {
            let e = h.embedding(l);
            let den = norm * sqrt(dot_i8(e, e) as f32);
            if den == 0.0 { 0.0 } else { dot_i8(item, e) as f32 / den }
        })
        .collect();
    for (head, o) in block.heads.iter().zip(out.iter_mut()) {
        if n == 0 {
            *o = 0.0;
            continue;
        }
        let z: Vec<f32> = (0..n)
            .map(|l| {
                let bias = (head.kind_bias[usize::from(h.kind(l))]
                    + head.age_bias[crate::history::age_bucket(now_ms, h.at_ms(l))])
                    + head.position_bias[l];
                head.temperature * cos[l] + bias
            })
            .collect();
        let max = z.iter().fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        let (mut num, mut den) = (0.0f32, 0.0f32);
        for (zl, cl) in z.iter().zip(&cos) {
            let w = crate::math::exp_nonpositive(zl - max);
            num += w * cl;
            den += w;
        }
        *o = num / den;
    }
}

/// The output invariants of [`rank_bytes`] for one successful ranking.
fn check_ranking(model: &Model, b: &Bundle<'_>, ctx: &crate::rank::RankContext, out: &crate::rank::RankOutput) {
    use crate::math::{self, sortable};
    use crate::rank::{self, Outcome};

    let n = b.len();
    assert_eq!(out.rows.len(), n, "one explanation per bundle row");
    let k = ctx.k as usize;
    assert!(out.items.len() <= k, "more than k items");

    // The query, as the ranker builds it.
    let d = b.dim();
    let mut query = Vec::new();
    if let Err(e) = crate::context::blend_query(&ctx.base, &ctx.session, &ctx.session_config, ctx.now_ms, d, &mut query)
    {
        panic!("the ranker accepted a context whose query cannot be built: {e}");
    }
    let mut query_q = alloc::vec![0i8; d];
    let query_scale = math::quantize_into(&query, &mut query_q);

    // 1. Integrity filter and 2. pre-rank.
    let mut seen = ctx.seen.clone();
    seen.sort_unstable();
    let mut blocked = ctx.blocked_creators.clone();
    blocked.sort_unstable();
    let (mut kept, mut cut) = (Vec::new(), Vec::new());
    let (mut a, mut z, mut input) = (Vec::new(), Vec::new(), Vec::new());
    let cal = model.calibration;
    for (i, r) in out.rows.iter().enumerate() {
        let filtered = if seen.binary_search(&b.id(i)).is_ok() {
            Some(Outcome::Seen)
        } else if blocked.binary_search(&b.creator(i)).is_ok() {
            Some(Outcome::BlockedCreator)
        } else if !crate::region::Region::allows(ctx.region, b.region_mask(i)) {
            Some(Outcome::Region)
        } else {
            None
        };
        if let Some(o) = filtered {
            assert_eq!(r.outcome, o, "row {i}: wrong filter outcome");
            assert!(r.pre_score.is_nan() && r.main_score.is_nan() && r.calibrated.is_nan());
            continue;
        }
        let pre = rank::prerank_score(model, b, i, &query_q, query_scale);
        assert!(same_f32(pre, r.pre_score), "row {i}: pre-rank score differs from the reference");
        if r.outcome == Outcome::PreRankCut {
            assert!(r.main_score.is_nan() && r.calibrated.is_nan());
            cut.push((r.pre_score, i as u32));
            continue;
        }
        assert!(
            matches!(r.outcome, Outcome::Selected | Outcome::BelowTopK | Outcome::CreatorCap),
            "row {i}: unexpected outcome {:?}",
            r.outcome
        );
        kept.push((r.pre_score, i as u32));
        // 3–4. Main rank and calibration, against the single-candidate reference.
        input.clear();
        rank::mlp_input(model, b, i, &query_q, query_scale, pre, &mut input);
        if let Some(block) = &model.history {
            let at = input.len() - block.heads.len();
            reference_attention(block, &ctx.history, ctx.now_ms, b.embedding(i), &mut input[at..]);
        }
        let logit = rank::mlp_forward(model, &input, &mut a, &mut z);
        assert!(same_f32(logit, r.main_score), "row {i}: batched MLP differs from the reference");
        let p = math::sigmoid(cal.a * logit + cal.b);
        assert!(same_f32(p, r.calibrated), "row {i}: calibration differs");
        assert!(p.is_nan() || (0.0..=1.0).contains(&p));
    }
    let keep = if ctx.prerank_keep > 0 { ctx.prerank_keep } else { model.prerank_keep } as usize;
    assert_eq!(kept.len(), (kept.len() + cut.len()).min(keep), "wrong number of rows past the pre-ranker");
    let worst_kept = kept.iter().max_by(|x, y| best_first(x, y));
    let best_cut = cut.iter().min_by(|x, y| best_first(x, y));
    if let (Some(w), Some(c)) = (worst_kept, best_cut) {
        assert_eq!(best_first(w, c), core::cmp::Ordering::Less, "the pre-ranker cut a better row than it kept");
    }

    // 5–6. Diversity and top k.
    let lambda = model.diversity.mmr_lambda;
    let cap = model.diversity.creator_cap;
    let mut rows_taken = alloc::vec![false; n];
    let mut creators: Vec<u32> = Vec::new();
    let mut last_mmr = f32::INFINITY;
    for (pos, it) in out.items.iter().enumerate() {
        let row = it.row as usize;
        assert!(row < n, "item row out of range");
        assert!(!rows_taken[row], "row {row} selected twice");
        rows_taken[row] = true;
        let r = &out.rows[row];
        assert_eq!(r.outcome, Outcome::Selected);
        assert_eq!(it.id, b.id(row));
        assert!(same_f32(it.score, r.calibrated) && same_f32(it.pre_score, r.pre_score));
        assert!(same_f32(it.main_score, r.main_score));
        assert!(it.mmr_penalty.is_finite() && it.mmr_penalty >= 0.0, "bad MMR penalty {}", it.mmr_penalty);
        if pos == 0 {
            assert_eq!(it.mmr_penalty, 0.0, "the first pick has no similarity penalty");
        }
        assert!(same_f32(it.mmr_score, lambda * it.score - it.mmr_penalty), "MMR value inconsistent");
        assert!(sortable(it.mmr_score) <= sortable(last_mmr), "MMR values rose down the list");
        last_mmr = it.mmr_score;
        creators.push(b.creator(row));
    }
    let selected = out.rows.iter().filter(|r| r.outcome == Outcome::Selected).count();
    assert_eq!(selected, out.items.len(), "Selected rows and items disagree");
    creators.sort_unstable();
    let count = |c: u32| creators.iter().filter(|&&x| x == c).count();
    if cap > 0 {
        for c in creators.chunk_by(|x, y| x == y) {
            assert!(c.len() <= cap as usize, "creator {} has {} items, cap {cap}", c[0], c.len());
        }
    }
    for (i, r) in out.rows.iter().enumerate() {
        match r.outcome {
            Outcome::CreatorCap => {
                assert!(cap > 0 && count(b.creator(i)) >= cap as usize, "row {i}: capped below the cap");
            }
            Outcome::BelowTopK => {
                assert_eq!(out.items.len(), k, "row {i} left out though fewer than k items were picked");
                assert!(cap == 0 || count(b.creator(i)) < cap as usize, "row {i}: should be marked capped");
            }
            _ => {}
        }
    }
    if cap == 0 {
        assert_eq!(out.items.len(), k.min(kept.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    fn spec() -> synth::Spec {
        synth::Spec { n: 9, dim: 6, n_features: 2, n_sources: 3, clusters: 2, creators: 3, regions: 4, seed: 3 }
    }

    #[test]
    fn bundle_crc_fixup_lets_mutations_reach_the_row_checks() {
        let mut b = synth::bundle(&spec(), 1);
        let at = Bundle::decode(&b).expect("valid").layout().retrieval.0;
        b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(matches!(bundle_bytes(&b), Err(BundleError::Format(FormatError::ChecksumMismatch { .. }))));
        let want = Err(BundleError::NonFinite { column: "retrieval", row: 0 });
        assert_eq!(bundle_bytes_fixed_crc(&b), want);
        assert_eq!(bundle_prechecked_bytes(&b), want);
        assert!(!fix_bundle_crc(&mut [0u8; 10]));
    }

    #[test]
    fn prechecked_accepts_a_bad_crc_and_nothing_else() {
        let mut b = synth::bundle(&spec(), 1);
        assert_eq!(bundle_prechecked_bytes(&b), Ok(9));
        let n = b.len();
        b[n - 8] ^= 1;
        assert_eq!(bundle_prechecked_bytes(&b), Ok(9));
        assert!(bundle_bytes(&b).is_err());
        assert_eq!(bundle_bytes_fixed_crc(&b), Ok(9));
    }

    #[test]
    fn model_crc_fixup_reaches_the_range_checks() {
        let mut m = synth::model(&spec(), &[3], 5, 1).encode().expect("encodes");
        m[32..36].copy_from_slice(&0u32.to_le_bytes()); // prerank_keep = 0
        assert!(matches!(model_bytes(&m), Err(ModelError::Format(FormatError::ChecksumMismatch { .. }))));
        assert!(matches!(
            model_bytes_fixed_crc(&m),
            Err(ModelError::Format(FormatError::OutOfRange { field: "prerank_keep", .. }))
        ));
    }

    #[test]
    fn context_crc_fixup_reaches_the_session() {
        let mut ctx = synth::context(&spec(), 4, 1_000_000, 5);
        let cfg = ctx.session_config;
        let item = [0.5, -0.25, 0.125, 1.0, 0.0, -1.0];
        ctx.session = SessionState::new(item.len());
        ctx.session.observe(&cfg, crate::session::Signal::Click, &item, 999_000).expect("same dimension");
        assert!(!ctx.session.is_empty());
        let mut c = Vec::new();
        crate::abi::encode_context(&ctx, &mut c);
        assert!(context_bytes(&c) && context_bytes_fixed_crc(&c));
        let last = c.len() - 5; // the session's last embedding value
        c[last] ^= 0x01;
        assert!(!context_bytes(&c));
        assert!(context_bytes_fixed_crc(&c));
        let session = ctx.session.encode();
        let mut s = session.clone();
        s[8] ^= 1; // events
        assert!(!session_bytes(&s) && session_bytes_fixed_crc(&s));
    }

    #[test]
    fn rank_inputs_split_and_rank() {
        let s = spec();
        let b = synth::bundle(&s, 1);
        let m = synth::model(&s, &[4], 6, 2).encode().expect("encodes");
        let mut c = Vec::new();
        crate::abi::encode_context(&synth::context(&s, 3, 1_000_000, 7), &mut c);
        let joined = join_rank_input(&b, &m, &c);
        assert_eq!(split_rank_input(&joined), (&b[..], &m[..], &c[..]));
        let items = rank_bytes(&b, &m, &c).expect("all three decode and fit");
        assert!((1..=3).contains(&items));
        assert_eq!(rank_input(&joined), Some(items));
        // A broken model stops the path before ranking, and the engine agrees.
        assert_eq!(rank_bytes(&b, &m[..m.len() - 1], &c), None);
        assert_eq!(split_rank_input(&[1, 2]), (&[][..], &[][..], &[1u8, 2][..]));
        let mut long = joined.clone();
        long[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(split_rank_input(&long).0.len(), joined.len() - 8);
    }
}
