//! The user's recent interactions, and the model's target-attention block
//! that scores each candidate against them.
//!
//! The session embedding ([`crate::session`]) is an exponential moving
//! average: it keeps little of the order of what the user did and nothing of
//! which past item is relevant to which candidate. A [`History`] keeps the
//! last interactions themselves (newest first, at most [`MAX_HISTORY`]): the
//! item, its int8 embedding with its scale (as a bundle stores it), the kind of
//! signal and the time. It travels in the rank context (`EWCX` version 2).
//!
//! A model may carry a [`HistoryBlock`] (model format version 2): target
//! attention with the candidate as the query over the newest
//! [`HistoryBlock::length`] entries. For candidate `c` and entry `l` (0 =
//! newest), with `cos_l` the cosine of their int8 embeddings (exact integer
//! dot product over the product of the two norms, 0 when either is zero),
//! head `h` computes
//!
//! ```text
//! z_l = τ_h · cos_l + ((kind_bias_h[kind_l] + age_bias_h[bucket(age_l)]) + position_bias_h[l])
//! a_h = Σ_l exp(z_l − max z) · cos_l  /  Σ_l exp(z_l − max z)
//! ```
//!
//! with `bucket(age) = min(31, ⌊log2(age in seconds + 1)⌋)`. The `a_h` (0 for
//! an empty history) are appended to the MLP input. Every sum runs in entry
//! order and `exp` is [`math::exp_nonpositive_x4`] (its argument is never
//! positive), so the result is the same bits on every platform, as the rest
//! of the pipeline.

use alloc::vec::Vec;

use crate::math::{self, dot_i8};

/// Most entries a history holds.
pub const MAX_HISTORY: usize = 64;
/// Signal kinds a history entry can name (codes `0..KINDS`).
pub const KINDS: usize = 8;
/// Age buckets: `⌊log2(seconds + 1)⌋`, the last one open-ended (2^31 s ≈ 68 years).
pub const AGE_BUCKETS: usize = 32;
/// Most attention heads a model may have.
pub const MAX_HEADS: usize = 8;

/// The age bucket of an interaction at `at_ms` seen from `now_ms` (a future
/// time counts as age 0).
pub fn age_bucket(now_ms: u64, at_ms: u64) -> usize {
    let seconds = now_ms.saturating_sub(at_ms) / 1000;
    let log2 = (u64::BITS - 1 - (seconds + 1).leading_zeros()) as usize;
    log2.min(AGE_BUCKETS - 1)
}

/// Why a history entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum HistoryError {
    /// The embedding's dimension differs from the history's.
    #[error("history embedding has dimension {found}, the history has {expected}")]
    Dimension { expected: usize, found: usize },
    /// An empty embedding, or one longer than a bundle's.
    #[error("history embedding dimension {0} is not in 1..=1024")]
    BadDimension(usize),
    /// A kind code past [`KINDS`].
    #[error("history kind {0} is not below {KINDS}")]
    Kind(u8),
    /// A scale or embedding value that is negative, NaN or infinite.
    #[error("non-finite or negative value in a history entry")]
    NonFinite,
    /// [`History::push`] past [`MAX_HISTORY`].
    #[error("a history holds at most {MAX_HISTORY} entries")]
    Full,
    /// [`History::push`] of an entry newer than the one before it.
    #[error("history entries go newest first: {at_ms} is newer than the entry before it ({before_ms})")]
    Order { at_ms: u64, before_ms: u64 },
}

/// The user's last interactions, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    dim: usize,
    items: Vec<u64>,
    at_ms: Vec<u64>,
    kinds: Vec<u8>,
    scales: Vec<f32>,
    /// `len × dim` int8 embeddings.
    q: Vec<i8>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Embedding dimension (0 while empty).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Removes every entry (keeping the buffers).
    pub fn clear(&mut self) {
        self.dim = 0;
        self.items.clear();
        self.at_ms.clear();
        self.kinds.clear();
        self.scales.clear();
        self.q.clear();
    }

    /// Entry `l`'s item id.
    pub fn item(&self, l: usize) -> u64 {
        self.items[l]
    }

    /// Entry `l`'s time, ms since the Unix epoch.
    pub fn at_ms(&self, l: usize) -> u64 {
        self.at_ms[l]
    }

    /// Entry `l`'s kind code.
    pub fn kind(&self, l: usize) -> u8 {
        self.kinds[l]
    }

    /// Entry `l`'s embedding scale.
    pub fn scale(&self, l: usize) -> f32 {
        self.scales[l]
    }

    /// Entry `l`'s int8 embedding.
    pub fn embedding(&self, l: usize) -> &[i8] {
        &self.q[l * self.dim..(l + 1) * self.dim]
    }

    fn check(&self, at_ms: u64, kind: u8, dim: usize, scale: f32) -> Result<(), HistoryError> {
        if usize::from(kind) >= KINDS {
            return Err(HistoryError::Kind(kind));
        }
        if dim == 0 || dim > usize::from(crate::bundle::MAX_DIM) {
            return Err(HistoryError::BadDimension(dim));
        }
        if !self.is_empty() && dim != self.dim {
            return Err(HistoryError::Dimension { expected: self.dim, found: dim });
        }
        if !scale.is_finite() || scale < 0.0 {
            return Err(HistoryError::NonFinite);
        }
        if let Some(&before_ms) = self.at_ms.last()
            && at_ms > before_ms
        {
            return Err(HistoryError::Order { at_ms, before_ms });
        }
        if self.len() >= MAX_HISTORY {
            return Err(HistoryError::Full);
        }
        Ok(())
    }

    /// Appends an entry older than (or as old as) every entry held, already
    /// quantised (`embedding · scale` is the item's vector, as in a bundle).
    pub fn push_quantized(
        &mut self,
        item: u64,
        at_ms: u64,
        kind: u8,
        embedding: &[i8],
        scale: f32,
    ) -> Result<(), HistoryError> {
        self.check(at_ms, kind, embedding.len(), scale)?;
        self.dim = embedding.len();
        self.items.push(item);
        self.at_ms.push(at_ms);
        self.kinds.push(kind);
        self.scales.push(scale);
        self.q.extend_from_slice(embedding);
        Ok(())
    }

    /// [`History::push_quantized`] of a float embedding, quantised as a bundle quantises rows.
    pub fn push(&mut self, item: u64, at_ms: u64, kind: u8, embedding: &[f32]) -> Result<(), HistoryError> {
        let mut q = [0i8; crate::bundle::MAX_DIM as usize];
        let (n, scale) = quantize(embedding, &mut q)?;
        self.push_quantized(item, at_ms, kind, &q[..n], scale)
    }

    /// Records a new interaction: an earlier entry of the same item goes, the
    /// entry takes its place by time (newest first; the later of equal times
    /// first), and the oldest entries beyond `cap` (at most [`MAX_HISTORY`])
    /// are dropped. This is how a client keeps its history as the user acts.
    pub fn record(
        &mut self,
        item: u64,
        at_ms: u64,
        kind: u8,
        embedding: &[f32],
        cap: usize,
    ) -> Result<(), HistoryError> {
        let mut q = [0i8; crate::bundle::MAX_DIM as usize];
        let (n, scale) = quantize(embedding, &mut q)?;
        self.record_quantized(item, at_ms, kind, &q[..n], scale, cap)
    }

    /// [`History::record`] of an embedding already quantised (a bundle row's).
    /// A refusal leaves the history as it was.
    pub fn record_quantized(
        &mut self,
        item: u64,
        at_ms: u64,
        kind: u8,
        embedding: &[i8],
        scale: f32,
        cap: usize,
    ) -> Result<(), HistoryError> {
        // The entry on its own first: an entry too old to keep is still checked.
        History::new().check(at_ms, kind, embedding.len(), scale)?;
        if !self.is_empty() && embedding.len() != self.dim {
            return Err(HistoryError::Dimension { expected: self.dim, found: embedding.len() });
        }
        let at = self.at_ms.partition_point(|&t| t > at_ms);
        let cap = cap.min(MAX_HISTORY);
        let mut next = History { q: Vec::with_capacity(self.q.len() + embedding.len()), ..History::new() };
        let mut placed = false;
        for l in (0..self.len()).filter(|&l| self.items[l] != item) {
            if !placed && l >= at {
                next.push_quantized(item, at_ms, kind, embedding, scale)?;
                placed = true;
            }
            if next.len() == cap {
                break;
            }
            next.push_quantized(self.items[l], self.at_ms[l], self.kinds[l], self.embedding(l), self.scales[l])?;
        }
        if !placed && next.len() < cap {
            next.push_quantized(item, at_ms, kind, embedding, scale)?;
        }
        *self = next;
        Ok(())
    }
}

/// Quantises `embedding` into `q` as a bundle quantises a row; returns its
/// dimension and scale.
fn quantize(embedding: &[f32], q: &mut [i8; crate::bundle::MAX_DIM as usize]) -> Result<(usize, f32), HistoryError> {
    if embedding.iter().any(|x| !x.is_finite()) {
        return Err(HistoryError::NonFinite);
    }
    let n = embedding.len();
    if n == 0 || n > q.len() {
        return Err(HistoryError::BadDimension(n));
    }
    Ok((n, math::quantize_into(embedding, &mut q[..n])))
}

/// Magic bytes of a stored history (`EWHS`).
pub const MAGIC: [u8; 4] = *b"EWHS";
/// How a stored history is framed: magic, a one-byte version, CRC-32 at the end.
pub const ENVELOPE: crate::format::Envelope = crate::format::Envelope {
    name: "history",
    magic: &MAGIC,
    version: 1,
    oldest: 1,
    version_width: crate::format::VersionWidth::U8,
    crc: true,
    xxh3_from: None,
    end_magic: None,
};
/// Header: magic, version, a zero byte, entries `u16`, dimension `u16`, two zero bytes.
const HEADER_LEN: usize = 12;
/// Per entry before the embedding: item `u64`, time `u64`, scale `f32`, kind `u8`, three zero bytes.
pub(crate) const ENTRY_FIXED: usize = 24;

impl History {
    /// The stored form (`EWHS`, what a client keeps between requests and
    /// sends with them): the 12-byte header (`b"EWHS"`, version 1, a zero
    /// byte, entries `u16`, dimension `u16`, two zero bytes), the entries as
    /// in an `EWCX` context (newest first: item `u64`, time `u64`, scale
    /// `f32`, kind `u8`, three zero bytes, `i8 × dimension`), then CRC-32.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.len() * (ENTRY_FIXED + self.dim) + 4);
        let start = ENVELOPE.write_head(&mut out);
        out.push(0);
        out.extend_from_slice(&(self.len() as u16).to_le_bytes());
        out.extend_from_slice(&(self.dim as u16).to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        self.encode_entries(&mut out);
        ENVELOPE.write_trailer(&mut out, start);
        out
    }

    /// Appends the entries (the part `EWCX` and `EWHS` share).
    pub(crate) fn encode_entries(&self, out: &mut Vec<u8>) {
        for l in 0..self.len() {
            out.extend_from_slice(&self.items[l].to_le_bytes());
            out.extend_from_slice(&self.at_ms[l].to_le_bytes());
            out.extend_from_slice(&self.scales[l].to_le_bytes());
            out.extend_from_slice(&[self.kinds[l], 0, 0, 0]);
            out.extend(self.embedding(l).iter().map(|&x| x as u8));
        }
    }

    /// Reads `count` entries of dimension `dim` from `b` (exactly that many
    /// bytes) into `self`, cleared first. Never panics.
    pub(crate) fn decode_entries(
        &mut self,
        b: &[u8],
        count: usize,
        dim: usize,
        bad: impl Fn(&'static str) -> crate::format::FormatError,
    ) -> Result<(), crate::format::FormatError> {
        self.clear();
        let entry = ENTRY_FIXED + dim;
        if count > MAX_HISTORY {
            return Err(bad("more than 64 history entries"));
        }
        if count > 0 && (dim == 0 || dim > usize::from(crate::bundle::MAX_DIM)) {
            return Err(bad("the history's dimension is not in 1..=1024"));
        }
        if count == 0 && dim != 0 {
            return Err(bad("an empty history names a dimension"));
        }
        if b.len() != count * entry {
            return Err(bad("the history's length does not match its entry count"));
        }
        for c in b.chunks_exact(entry.max(1)).take(count) {
            let item = crate::format::u64_at(c, 0);
            let at_ms = crate::format::u64_at(c, 8);
            let scale = crate::format::f32_at(c, 16);
            if c[21..24] != [0, 0, 0] {
                return Err(bad("a history entry's padding is not zero"));
            }
            let q: &[i8] = bytemuck::cast_slice(&c[ENTRY_FIXED..]);
            self.push_quantized(item, at_ms, c[20], q, scale).map_err(|e| {
                bad(match e {
                    HistoryError::Order { .. } => "history entries are not newest first",
                    HistoryError::Kind(_) => "a history entry's kind is not below 8",
                    _ => "a history entry's scale is negative or not finite",
                })
            })?;
        }
        Ok(())
    }

    /// Decodes a stored history (`EWHS`). Never panics.
    pub fn decode(b: &[u8]) -> Result<Self, crate::format::FormatError> {
        let bad = |reason| ENVELOPE.malformed(reason);
        ENVELOPE.check_len(b, HEADER_LEN + ENVELOPE.trailer_len())?;
        ENVELOPE.check_head(b)?;
        ENVELOPE.check_checksum(b)?;
        if b[5] != 0 || b[10] != 0 || b[11] != 0 {
            return Err(bad("the history header's reserved bytes are not zero"));
        }
        let count = usize::from(crate::format::u16_at(b, 6));
        let dim = usize::from(crate::format::u16_at(b, 8));
        let mut h = History::new();
        h.decode_entries(&b[HEADER_LEN..b.len() - ENVELOPE.trailer_len()], count, dim, bad)?;
        Ok(h)
    }
}

/// One attention head's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    /// `τ`: how sharply the head prefers the most similar entries.
    pub temperature: f32,
    /// Added to an entry's logit by its kind code.
    pub kind_bias: [f32; KINDS],
    /// Added by its age bucket ([`age_bucket`]).
    pub age_bias: [f32; AGE_BUCKETS],
    /// Added by its position, newest first ([`HistoryBlock::length`] values).
    pub position_bias: Vec<f32>,
}

/// The model's history block: target attention over the newest `length` entries.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryBlock {
    /// Entries read, newest first (1..=[`MAX_HISTORY`]).
    pub length: u8,
    /// Heads (1..=[`MAX_HEADS`]); each adds one MLP input.
    pub heads: Vec<Head>,
}

/// The per-request part of the attention, prepared once per ranking and
/// reused across rankings (no allocation once its buffers have grown).
#[derive(Debug, Clone, Default)]
pub struct Attention {
    /// Entries attended to: `min(length, history.len())`.
    n: usize,
    /// Per entry: the norm of its int8 embedding.
    norms: Vec<f32>,
    /// Per head and entry: the logit's bias part.
    bias: Vec<f32>,
    /// Per entry: the candidate's cosine.
    cos: Vec<f32>,
    /// Per entry: the current head's logit, then its weight.
    z: Vec<f32>,
}

impl Attention {
    /// Prepares the attention of `block` over `history` at `now_ms`.
    pub fn prepare(&mut self, block: &HistoryBlock, history: &History, now_ms: u64) {
        let n = usize::from(block.length).min(history.len());
        self.n = n;
        self.norms.clear();
        self.norms.extend((0..n).map(|l| {
            let e = history.embedding(l);
            math::sqrt(dot_i8(e, e) as f32)
        }));
        self.bias.clear();
        for head in &block.heads {
            self.bias.extend((0..n).map(|l| {
                let kind = head.kind_bias[usize::from(history.kind(l)) % KINDS];
                let age = head.age_bias[age_bucket(now_ms, history.at_ms(l))];
                (kind + age) + head.position_bias[l]
            }));
        }
        self.cos.clear();
        self.cos.resize(n, 0.0);
        self.z.clear();
        self.z.resize(n, 0.0);
    }

    /// Writes the heads' outputs for the candidate with int8 embedding `item`
    /// into `out` (one value per head), from the history [`prepare`](Self::prepare) saw.
    pub fn write(&mut self, block: &HistoryBlock, history: &History, item: &[i8], out: &mut [f32]) {
        let n = self.n;
        if n == 0 {
            out.iter_mut().for_each(|o| *o = 0.0);
            return;
        }
        let norm = math::sqrt(dot_i8(item, item) as f32);
        // Integer dot products four entries at a time (exact in any grouping).
        let mut l = 0;
        while l + 4 <= n {
            let rows = core::array::from_fn(|j| history.embedding(l + j));
            for (j, d) in math::dot_i8_x4(item, rows).into_iter().enumerate() {
                self.cos[l + j] = math::cosine_of_dot(d, norm, self.norms[l + j]);
            }
            l += 4;
        }
        for l in l..n {
            self.cos[l] = math::cosine_of_dot(dot_i8(item, history.embedding(l)), norm, self.norms[l]);
        }
        for ((head, bias), o) in block.heads.iter().zip(self.bias.chunks_exact(n)).zip(out.iter_mut()) {
            let mut max = f32::NEG_INFINITY;
            for ((z, &c), &b) in self.z.iter_mut().zip(&self.cos).zip(bias) {
                *z = head.temperature * c + b;
                if *z > max {
                    max = *z;
                }
            }
            // The weights, four at a time; the sums in entry order.
            let (mut num, mut den) = (0.0f32, 0.0f32);
            for (zs, cs) in self.z.chunks(4).zip(self.cos.chunks(4)) {
                let x: [f32; 4] = core::array::from_fn(|j| zs.get(j).map_or(0.0, |z| z - max));
                let w = math::exp_nonpositive_x4(x);
                for (w, &c) in w.iter().zip(cs) {
                    num += w * c;
                    den += w;
                }
            }
            // `den` ≥ 1: the largest logit contributes exp(0) = 1.
            *o = num / den;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn the_stored_form_round_trips_and_refuses_damage() {
        let mut h = History::new();
        assert_eq!(History::decode(&h.encode()), Ok(History::new()), "an empty history");
        h.push(7, 9_000, 2, &[1.0, 0.5, -0.5]).expect("push");
        h.push(8, 4_000, 3, &[0.0, 0.0, 0.0]).expect("push");
        let bytes = h.encode();
        assert_eq!(bytes.len(), 12 + 2 * (24 + 3) + 4);
        assert_eq!(History::decode(&bytes), Ok(h.clone()));
        assert!(crate::check::history_bytes(&bytes), "canonical");
        let refused = |mut b: alloc::vec::Vec<u8>, fix: bool| {
            if fix {
                ENVELOPE.reseal(&mut b);
            }
            alloc::format!("{}", History::decode(&b).expect_err("refused"))
        };
        let mut b = bytes.clone();
        b[12 + 20] = 8;
        assert!(refused(b, true).contains("kind"));
        let mut b = bytes.clone();
        b[12 + 27 + 8..12 + 27 + 16].copy_from_slice(&10_000u64.to_le_bytes());
        assert!(refused(b, true).contains("newest first"));
        let mut b = bytes.clone();
        b[6] = 3;
        assert!(refused(b, true).contains("length"));
        let mut b = bytes.clone();
        b[11] = 1;
        assert!(refused(b, true).contains("reserved"));
        let mut b = bytes.clone();
        b[12] ^= 1;
        assert!(refused(b, false).contains("checksum"));
        assert!(History::decode(&bytes[..10]).is_err());
    }

    #[test]
    fn age_buckets_are_log2_seconds() {
        assert_eq!(age_bucket(0, 0), 0);
        assert_eq!(age_bucket(999, 0), 0);
        assert_eq!(age_bucket(1000, 0), 1);
        assert_eq!(age_bucket(3000, 0), 2);
        assert_eq!(age_bucket(0, 5000), 0, "the future counts as now");
        assert_eq!(age_bucket(u64::MAX, 0), AGE_BUCKETS - 1);
    }

    #[test]
    fn push_checks_order_kind_dimension_and_size() {
        let mut h = History::new();
        h.push(1, 100, 2, &[1.0, 0.5]).expect("first");
        assert_eq!(h.push(2, 200, 1, &[1.0, 0.5]), Err(HistoryError::Order { at_ms: 200, before_ms: 100 }));
        assert_eq!(h.push(2, 50, 9, &[1.0, 0.5]), Err(HistoryError::Kind(9)));
        assert_eq!(h.push(2, 50, 1, &[1.0]), Err(HistoryError::Dimension { expected: 2, found: 1 }));
        assert_eq!(h.push(2, 50, 1, &[f32::NAN, 0.0]), Err(HistoryError::NonFinite));
        for t in 0..MAX_HISTORY as u64 - 1 {
            h.push(10 + t, 50 - t.min(50), 1, &[0.0, 1.0]).expect("fits");
        }
        assert_eq!(h.push(99, 0, 1, &[0.0, 1.0]), Err(HistoryError::Full));
        assert_eq!(h.embedding(0), &[127, 64][..]);
    }

    #[test]
    fn record_keeps_newest_first_without_duplicates_under_the_cap() {
        let mut h = History::new();
        h.record(1, 10, 1, &[1.0, 0.0], 3).expect("record");
        h.record(2, 20, 1, &[0.0, 1.0], 3).expect("record");
        h.record(3, 15, 2, &[1.0, 1.0], 3).expect("late event");
        let items: Vec<u64> = (0..h.len()).map(|l| h.item(l)).collect();
        assert_eq!(items, vec![2, 3, 1]);
        h.record(1, 30, 2, &[1.0, 0.0], 3).expect("again");
        let items: Vec<u64> = (0..h.len()).map(|l| h.item(l)).collect();
        assert_eq!(items, vec![1, 2, 3], "the item moved to the front, not added twice");
        h.record(4, 40, 1, &[0.5, 0.5], 3).expect("over the cap");
        let items: Vec<u64> = (0..h.len()).map(|l| h.item(l)).collect();
        assert_eq!(items, vec![4, 1, 2], "the oldest went");
        assert_eq!(h.record(5, 50, 1, &[1.0], 3), Err(HistoryError::Dimension { expected: 2, found: 1 }));
        let mut old = History::new();
        old.record(1, 10, 1, &[1.0, 0.0], 2).expect("record");
        old.record(2, 5, 1, &[1.0, 0.0], 2).expect("older than everything, still under the cap");
        assert_eq!(old.item(1), 2);
        old.record(3, 1, 1, &[1.0, 0.0], 2).expect("older than everything, over the cap: dropped");
        assert_eq!((old.len(), old.item(0), old.item(1)), (2, 1, 2));
    }

    fn block(length: u8, heads: usize) -> HistoryBlock {
        HistoryBlock {
            length,
            heads: (0..heads)
                .map(|h| Head {
                    temperature: 2.0 + h as f32,
                    kind_bias: core::array::from_fn(|k| k as f32 * 0.1),
                    age_bias: core::array::from_fn(|a| -(a as f32) * 0.05),
                    position_bias: (0..length).map(|p| -(f32::from(p)) * 0.2).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn attention_is_a_weighted_mean_of_cosines() {
        let mut h = History::new();
        h.push(1, 2000, 1, &[1.0, 0.0]).expect("push");
        h.push(2, 1000, 2, &[0.0, 1.0]).expect("push");
        h.push(3, 0, 2, &[-1.0, 0.0]).expect("push");
        let b = block(2, 2);
        let mut a = Attention::default();
        a.prepare(&b, &h, 5000);
        let mut out = [9.0f32; 2];
        a.write(&b, &h, &[127, 0], &mut out);
        // Only the two newest entries: cosines 1 and 0.
        for (head, o) in b.heads.iter().zip(out) {
            let z0 = head.temperature + (head.kind_bias[1] + head.age_bias[age_bucket(5000, 2000)]);
            let z1 = (head.kind_bias[2] + head.age_bias[age_bucket(5000, 1000)]) + head.position_bias[1];
            let (w0, w1) = (math::exp_nonpositive(z0 - z0.max(z1)), math::exp_nonpositive(z1 - z0.max(z1)));
            assert!((o - w0 / (w0 + w1)).abs() < 1e-6, "{o}");
            assert!(o > 0.5 && o < 1.0);
        }
        a.prepare(&b, &History::new(), 5000);
        a.write(&b, &History::new(), &[127, 0], &mut out);
        assert_eq!(out, [0.0, 0.0], "no history: zeros");
        a.prepare(&b, &h, 5000);
        a.write(&b, &h, &[0, 0], &mut out);
        assert_eq!(out, [0.0, 0.0], "a zero candidate has cosine 0 with everything");
    }
}
