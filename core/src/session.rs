//! The real-time session embedding.
//!
//! Every interaction moves the session embedding at once, on the device or
//! edge where it happened, so the next ranking already reflects it. The state
//! is small (one `f32` vector plus a few counters) and has a compact,
//! checksummed encoding so a browser or an edge can keep it and send it along.
//!
//! # Model (seed 001, "Bottleneck 3")
//! * Each [`Signal`] has a signed weight `w` ([`SessionConfig`]): click, like
//!   and long dwell (weighted by dwell time) pull towards the item; skip and
//!   hide push away. Impressions and short dwells are neutral.
//! * The session vector is a bias-corrected exponential moving average:
//!   `a = min(α·|w|, 1)`, `ema ← (1−a)·ema + a·sign(w)·item`, `mass ← (1−a)·mass + a`.
//!   `ema / mass` is then a recency-weighted average of the signed item
//!   embeddings: the newest interaction weighs most, older ones fade geometrically.
//! * The query the ranker uses blends it with the base (long-term) user embedding:
//!   `q = (1−β)·base + β·session`, with `β = 0.3` by default (seed 001's 70/30),
//!   and `β` decaying with the time since the last interaction (half-life
//!   [`SessionConfig::half_life_ms`]), so a stale session fades back to the base.
//!   With no base embedding (an anonymous user), the session vector is the query.
//!
//! Time is an input (`now_ms`): the module never reads a clock.

use alloc::vec::Vec;

/// One interaction with an item.
#[derive(Debug, Clone, Copy, PartialEq)]
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
    /// Share β of the session vector in the blended query (0.3 = seed 001's 70/30).
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
pub enum SessionError {
    /// The item embedding has the wrong length.
    #[error("item embedding has {found} values, the session has dimension {expected}")]
    Dimension {
        /// Session dimension.
        expected: usize,
        /// Given.
        found: usize,
    },
    /// NaN or infinity in an input.
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Which input.
        what: &'static str,
    },
    /// Encoded state is malformed.
    #[error("malformed session state: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
}

/// Encoded-state magic.
pub const MAGIC: [u8; 4] = *b"EWSS";
/// Encoded-state version.
pub const VERSION: u8 = 1;
/// Largest session dimension.
pub const MAX_DIM: usize = crate::bundle::MAX_DIM as usize;
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

    /// Writes the blended query vector into `out` (length = [`dim`](Self::dim)).
    ///
    /// `base` is the long-term user embedding, or `None` for an anonymous user.
    /// A `base` of the wrong length is ignored.
    pub fn query_into(&self, cfg: &SessionConfig, base: Option<&[f32]>, now_ms: u64, out: &mut [f32]) {
        let base = base.filter(|b| b.len() == self.ema.len());
        let inv_mass = if self.mass > 0.0 { 1.0 / self.mass } else { 0.0 };
        match base {
            Some(b) => {
                let beta = self.share(cfg, now_ms);
                for ((o, &e), &x) in out.iter_mut().zip(&self.ema).zip(b) {
                    *o = (1.0 - beta) * x + beta * e * inv_mass;
                }
            }
            None => {
                for (o, &e) in out.iter_mut().zip(&self.ema) {
                    *o = e * inv_mass;
                }
            }
        }
    }

    /// Length of [`encode_into`](Self::encode_into)'s output.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + 4 * self.ema.len()
    }

    /// Appends the compact encoding: `EWSS`, version, 0, dim u16, events u32,
    /// last_ms u64, mass f32, `dim` × f32, CRC-32 of all that.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(0);
        out.extend_from_slice(&(self.ema.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.events.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
        out.extend_from_slice(&self.mass.to_le_bytes());
        self.ema.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
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
        let bad = |reason| SessionError::Malformed { reason };
        if b.len() < FIXED_LEN {
            return Err(bad("too short"));
        }
        if b[..4] != MAGIC {
            return Err(bad("bad magic"));
        }
        if b[4] != VERSION {
            return Err(bad("unsupported version"));
        }
        if b[5] != 0 {
            return Err(bad("reserved byte is not zero"));
        }
        let dim = usize::from(u16::from_le_bytes([b[6], b[7]]));
        if dim > MAX_DIM {
            return Err(bad("dimension too large"));
        }
        let len = FIXED_LEN + 4 * dim;
        let body = b.get(..len - 4).ok_or(bad("truncated"))?;
        let crc_bytes = b.get(len - 4..len).ok_or(bad("truncated"))?;
        let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
        if crc32fast::hash(body) != stored {
            return Err(bad("checksum mismatch"));
        }
        let f = |at: usize| f32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        self.events = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let mut last = [0u8; 8];
        last.copy_from_slice(&b[12..20]);
        self.last_ms = u64::from_le_bytes(last);
        self.mass = f(20);
        if !self.mass.is_finite() || !(0.0..=1.0).contains(&self.mass) {
            return Err(bad("mass out of range"));
        }
        self.ema.clear();
        for i in 0..dim {
            let x = f(24 + 4 * i);
            if !x.is_finite() {
                return Err(bad("non-finite embedding value"));
            }
            self.ema.push(x);
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

    #[test]
    fn click_pulls_towards_item_and_skip_pushes_away() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new(2);
        s.observe(&cfg, Signal::Click, &[1.0, 0.0], 10).expect("observe");
        let mut q = [0.0f32; 2];
        s.query_into(&cfg, None, 10, &mut q);
        assert_eq!(q, [1.0, 0.0]);
        s.observe(&cfg, Signal::Skip, &[0.0, 1.0], 20).expect("observe");
        s.query_into(&cfg, None, 20, &mut q);
        assert!(q[0] > 0.0 && q[1] < 0.0, "{q:?}");
    }

    #[test]
    fn blend_is_70_30_then_decays() {
        let cfg = SessionConfig::default();
        let mut s = SessionState::new(1);
        s.observe(&cfg, Signal::Like, &[1.0], 1_000).expect("observe");
        let mut q = [0.0f32];
        s.query_into(&cfg, Some(&[0.0]), 1_000, &mut q);
        assert!((q[0] - 0.3).abs() < 1e-6, "{q:?}");
        s.query_into(&cfg, Some(&[0.0]), 1_000 + cfg.half_life_ms, &mut q);
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
        s.query_into(&cfg, None, 2, &mut q);
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
        assert_eq!(SessionState::decode(&bad), Err(SessionError::Malformed { reason: "checksum mismatch" }));
        assert!(SessionState::decode(&b[..b.len() - 1]).is_err());
        assert!(s.observe(&cfg, Signal::Click, &[1.0], 1).is_err());
        assert!(s.observe(&cfg, Signal::Click, &[1.0, f32::NAN, 0.0], 1).is_err());
    }
}
