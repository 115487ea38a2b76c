//! The real-time session embedding.
//!
//! Every interaction moves the session embedding at once, on the device or
//! edge where it happened, so the next ranking already reflects it. The state
//! is small (one `f32` vector plus a few counters) and has a compact,
//! checksummed encoding so a browser or an edge can keep it and send it along.
//!
//! # Model
//! * Each [`Signal`] has a signed weight `w` ([`SessionConfig`]): click, like
//!   and long dwell (weighted by dwell time) pull towards the item; skip and
//!   hide push away. Impressions and short dwells are neutral.
//! * The session vector is a bias-corrected exponential moving average:
//!   `a = min(α·|w|, 1)`, `ema ← (1−a)·ema + a·sign(w)·item`, `mass ← (1−a)·mass + a`.
//!   `ema / mass` is then a recency-weighted average of the signed item
//!   embeddings: the newest interaction weighs most, older ones fade geometrically.
//! * The query the ranker uses blends it with the base (long-term) user embedding:
//!   `q = (1−β)·base + β·session`, with `β = 0.3` by default (a 70/30 blend),
//!   and `β` decaying with the time since the last interaction (half-life
//!   [`SessionConfig::half_life_ms`]), so a stale session fades back to the base.
//!   With no base embedding (an anonymous user), the session vector is the query.
//!
//! Time is an input (`now_ms`): the module never reads a clock.

use alloc::vec::Vec;

use crate::format::{Envelope, FormatError, VersionWidth, check_range, f32_at, u16_at, u32_at, u64_at};

/// One interaction with an item.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum Signal {
    /// The item was shown. Neutral.
    Impression,
    /// The item was opened.
    Click,
    /// The item was liked.
    Like,
    /// The item was scrolled past.
    Skip,
    /// The user asked not to see the item.
    Hide,
    /// The item stayed on screen for this many milliseconds.
    Dwell {
        /// Dwell time in ms.
        ms: u32,
    },
}

/// Tunables of the session model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionConfig {
    /// EMA step size α per unit of signal weight.
    pub alpha: f32,
    /// Share β of the session vector in the blended query (0.3: a 70/30 blend).
    pub session_share: f32,
    /// Half-life of β after the last interaction.
    pub half_life_ms: u64,
    /// Weight of a click.
    pub w_click: f32,
    /// Weight of a like.
    pub w_like: f32,
    /// Weight of a skip (negative).
    pub w_skip: f32,
    /// Weight of a hide (negative).
    pub w_hide: f32,
    /// Dwell shorter than this is neutral.
    pub dwell_min_ms: u32,
    /// Dwell of this length weighs 1; longer dwell weighs proportionally more, up to `dwell_max_weight`.
    pub dwell_ref_ms: u32,
    /// Cap on the weight of a dwell.
    pub dwell_max_weight: f32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            alpha: 0.3,
            session_share: 0.3,
            half_life_ms: 30 * 60 * 1000,
            w_click: 1.0,
            w_like: 1.5,
            w_skip: -0.3,
            w_hide: -1.0,
            dwell_min_ms: 3_000,
            dwell_ref_ms: 15_000,
            dwell_max_weight: 2.0,
        }
    }
}

impl SessionConfig {
    /// Signed weight of a signal.
    pub fn weight(&self, s: Signal) -> f32 {
        match s {
            Signal::Impression => 0.0,
            Signal::Click => self.w_click,
            Signal::Like => self.w_like,
            Signal::Skip => self.w_skip,
            Signal::Hide => self.w_hide,
            Signal::Dwell { ms } if ms < self.dwell_min_ms => 0.0,
            Signal::Dwell { ms } => (ms as f32 / self.dwell_ref_ms.max(1) as f32).min(self.dwell_max_weight),
        }
    }
}

/// Why a session could not be updated or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum SessionError {
    /// The item embedding has the wrong length.
    #[error("item embedding has {found} values, the session has dimension {expected}")]
    Dimension { expected: usize, found: usize },
    /// NaN or infinity in an input.
    #[error("non-finite value in {what}")]
    NonFinite { what: &'static str },
    /// Encoded state is malformed.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Encoded-state magic.
pub const MAGIC: [u8; 4] = *b"EWSS";
/// Encoded-state version.
pub const VERSION: u8 = 1;
/// Largest session dimension.
pub const MAX_DIM: usize = crate::bundle::MAX_DIM as usize;
/// How the session encoding is framed: magic, one-byte version, CRC-32 (no end magic).
pub const ENVELOPE: Envelope = Envelope {
    name: "session",
    magic: &MAGIC,
    version: VERSION as u16,
    oldest: 1,
    version_width: VersionWidth::U8,
    crc: true,
    xxh3_from: None,
    end_magic: None,
};
const FIXED_LEN: usize = 4 + 1 + 1 + 2 + 4 + 8 + 4 + 4; // magic, version, reserved, dim, events, last, mass, crc

/// The session state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionState {
    ema: Vec<f32>,
    mass: f32,
    events: u32,
    last_ms: u64,
}

impl SessionState {
    /// An empty session of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        Self { ema: alloc::vec![0.0; dim], mass: 0.0, events: 0, last_ms: 0 }
    }
    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.ema.len()
    }
    /// Number of non-neutral interactions observed.
    pub fn events(&self) -> u32 {
        self.events
    }
    /// Time of the last non-neutral interaction.
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }
    /// Whether no interaction has moved the session yet.
    pub fn is_empty(&self) -> bool {
        self.mass == 0.0
    }

    /// Observes an interaction with an item whose embedding is `item`.
    ///
    /// An event older than the last one observed still counts, but does not move
    /// the session's clock back (out-of-order delivery never rewinds time).
    pub fn observe(
        &mut self,
        cfg: &SessionConfig,
        signal: Signal,
        item: &[f32],
        now_ms: u64,
    ) -> Result<(), SessionError> {
        if item.len() != self.ema.len() {
            return Err(SessionError::Dimension { expected: self.ema.len(), found: item.len() });
        }
        if item.iter().any(|x| !x.is_finite()) {
            return Err(SessionError::NonFinite { what: "item embedding" });
        }
        self.apply(cfg, signal, item.iter().copied(), now_ms);
        Ok(())
    }

    /// Observes an interaction with an item given as an int8 row and its scale,
    /// as a bundle stores it ([`crate::bundle::Bundle::embedding`]); no allocation.
    pub fn observe_quantized(
        &mut self,
        cfg: &SessionConfig,
        signal: Signal,
        item: &[i8],
        scale: f32,
        now_ms: u64,
    ) -> Result<(), SessionError> {
        if item.len() != self.ema.len() {
            return Err(SessionError::Dimension { expected: self.ema.len(), found: item.len() });
        }
        if !scale.is_finite() {
            return Err(SessionError::NonFinite { what: "item embedding scale" });
        }
        self.apply(cfg, signal, item.iter().map(|&q| f32::from(q) * scale), now_ms);
        Ok(())
    }

    fn apply(&mut self, cfg: &SessionConfig, signal: Signal, item: impl Iterator<Item = f32>, now_ms: u64) {
        let w = cfg.weight(signal);
        if w == 0.0 || !w.is_finite() {
            return;
        }
        let a = (cfg.alpha * libm::fabsf(w)).clamp(0.0, 1.0);
        let sign = if w > 0.0 { 1.0 } else { -1.0 };
        for (e, x) in self.ema.iter_mut().zip(item) {
            *e = (1.0 - a) * *e + a * sign * x;
        }
        self.mass = (1.0 - a) * self.mass + a;
        self.events = self.events.saturating_add(1);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Current share β of the session in the blend, after time decay.
    pub fn share(&self, cfg: &SessionConfig, now_ms: u64) -> f32 {
        if self.is_empty() {
            return 0.0;
        }
        let age = now_ms.saturating_sub(self.last_ms) as f32;
        let half = cfg.half_life_ms.max(1) as f32;
        cfg.session_share.clamp(0.0, 1.0) * libm::exp2f(-age / half)
    }

    /// The unnormalised embedding average and its mass (the blend in [`crate::context`] reads them).
    pub(crate) fn parts(&self) -> (&[f32], f32) {
        (&self.ema, self.mass)
    }

    /// Length of [`encode_into`](Self::encode_into)'s output.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + 4 * self.ema.len()
    }

    /// Appends the compact encoding: `EWSS`, version, 0, dim u16, events u32,
    /// last_ms u64, mass f32, `dim` × f32, CRC-32 of all that.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = ENVELOPE.write_head(out);
        out.push(0);
        out.extend_from_slice(&(self.ema.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.events.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
        out.extend_from_slice(&self.mass.to_le_bytes());
        self.ema.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        ENVELOPE.write_trailer(out, start);
    }

    /// The encoding as a new vector.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut v);
        v
    }

    /// Decodes into `self`, reusing its buffer. Returns the number of bytes read.
    /// On error `self` is left empty.
    pub fn decode_from(&mut self, b: &[u8]) -> Result<usize, SessionError> {
        let r = self.decode_inner(b);
        if r.is_err() {
            self.reset();
        }
        r
    }

    /// Empties the state to dimension 0, keeping its buffer for reuse.
    pub fn reset(&mut self) {
        self.ema.clear();
        self.mass = 0.0;
        self.events = 0;
        self.last_ms = 0;
    }

    fn decode_inner(&mut self, b: &[u8]) -> Result<usize, SessionError> {
        let format = ENVELOPE.name;
        ENVELOPE.check_len(b, FIXED_LEN)?;
        ENVELOPE.check_head(b)?;
        if b[5] != 0 {
            return Err(FormatError::ReservedNonZero { format, offset: 5 }.into());
        }
        let dim = u16_at(b, 6);
        check_range(format, "dim", u64::from(dim), 0, MAX_DIM as u64)?;
        let len = FIXED_LEN + 4 * usize::from(dim);
        let encoded = b.get(..len).ok_or(FormatError::Truncated { format, what: "session embedding" })?;
        ENVELOPE.check_checksum(encoded)?;
        self.events = u32_at(b, 8);
        self.last_ms = u64_at(b, 12);
        self.mass = f32_at(b, 20);
        if !self.mass.is_finite() || !(0.0..=1.0).contains(&self.mass) {
            return Err(ENVELOPE.malformed("mass is not in [0, 1]").into());
        }
        let mut r = ENVELOPE.reader(encoded, 24, len - 4);
        self.ema.clear();
        for _ in 0..dim {
            self.ema.push(r.f32("session embedding")?);
        }
        Ok(len)
    }

    /// Decodes a fresh state.
    pub fn decode(b: &[u8]) -> Result<(Self, usize), SessionError> {
        let mut s = Self::default();
        let n = s.decode_from(b)?;
        Ok((s, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_into(s: &SessionState, cfg: &SessionConfig, base: Option<&[f32]>, now: u64, out: &mut [f32]) {
        let mut q = Vec::new();
        crate::context::blend_query(base.unwrap_or(&[]), s, cfg, now, s.dim(), &mut q).expect("query");
        out.copy_from_slice(&q);
    }

    #[test]
    fn click_pulls_towards_item_and_skip_pushes_away() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new(2);
        s.observe(&cfg, Signal::Click, &[1.0, 0.0], 10).expect("observe");
        let mut q = [0.0f32; 2];
        query_into(&s, &cfg, None, 10, &mut q);
        assert_eq!(q, [1.0, 0.0]);
        s.observe(&cfg, Signal::Skip, &[0.0, 1.0], 20).expect("observe");
        query_into(&s, &cfg, None, 20, &mut q);
        assert!(q[0] > 0.0 && q[1] < 0.0, "{q:?}");
    }

    #[test]
    fn blend_is_70_30_then_decays() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new(1);
        s.observe(&cfg, Signal::Like, &[1.0], 1_000).expect("observe");
        let mut q = [0.0f32];
        query_into(&s, &cfg, Some(&[0.0]), 1_000, &mut q);
        assert!((q[0] - 0.3).abs() < 1e-6, "{q:?}");
        query_into(&s, &cfg, Some(&[0.0]), 1_000 + cfg.half_life_ms, &mut q);
        assert!((q[0] - 0.15).abs() < 1e-6, "{q:?}");
    }

    #[test]
    fn neutral_signals_do_nothing() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new(2);
        s.observe(&cfg, Signal::Impression, &[1.0, 1.0], 5).expect("observe");
        s.observe(&cfg, Signal::Dwell { ms: 500 }, &[1.0, 1.0], 5).expect("observe");
        assert!(s.is_empty());
        assert!(cfg.weight(Signal::Dwell { ms: 30_000 }) > cfg.weight(Signal::Dwell { ms: 15_000 }));
    }

    #[test]
    fn recency_weighting() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new(2);
        s.observe(&cfg, Signal::Click, &[1.0, 0.0], 1).expect("observe");
        s.observe(&cfg, Signal::Click, &[0.0, 1.0], 2).expect("observe");
        let mut q = [0.0f32; 2];
        query_into(&s, &cfg, None, 2, &mut q);
        assert!(q[1] > q[0], "newest interaction weighs most: {q:?}");
    }

    #[test]
    fn out_of_order_never_rewinds_clock() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new(1);
        s.observe(&cfg, Signal::Click, &[1.0], 100).expect("observe");
        s.observe(&cfg, Signal::Click, &[1.0], 50).expect("observe");
        assert_eq!(s.last_ms(), 100);
    }

    #[test]
    fn quantized_rows_match_dequantized_floats() {
        let cfg = SessionConfig::default();
        let (q, scale) = ([10i8, -127, 64], 0.01f32);
        let f: alloc::vec::Vec<f32> = q.iter().map(|&x| f32::from(x) * scale).collect();
        let mut a = SessionState::new(3);
        let mut b = SessionState::new(3);
        a.observe(&cfg, Signal::Like, &f, 9).expect("observe");
        b.observe_quantized(&cfg, Signal::Like, &q, scale, 9).expect("observe");
        assert_eq!(a, b);
        assert!(b.observe_quantized(&cfg, Signal::Like, &q[..2], scale, 9).is_err());
        assert!(b.observe_quantized(&cfg, Signal::Like, &q, f32::NAN, 9).is_err());
    }

    #[test]
    fn encode_roundtrip_and_errors() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new(3);
        s.observe(&cfg, Signal::Like, &[0.5, -0.5, 0.25], 42).expect("observe");
        let b = s.encode();
        assert_eq!(b.len(), s.encoded_len());
        let (d, n) = SessionState::decode(&b).expect("decode");
        assert_eq!((d, n), (s.clone(), b.len()));
        let mut bad = b.clone();
        bad[24] ^= 1;
        assert!(matches!(
            SessionState::decode(&bad),
            Err(SessionError::Format(FormatError::ChecksumMismatch { format: "session", .. }))
        ));
        assert!(SessionState::decode(&b[..b.len() - 1]).is_err());
        assert!(s.observe(&cfg, Signal::Click, &[1.0], 1).is_err());
        assert!(s.observe(&cfg, Signal::Click, &[1.0, f32::NAN, 0.0], 1).is_err());
    }
}
