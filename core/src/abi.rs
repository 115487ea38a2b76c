//! The guest C ABI of `edgewise_core.wasm`, documented in one place.
//!
//! The guest module (crate `edgewise-core-guest`) is this crate compiled to
//! `wasm32-unknown-unknown` with simd128. It has **zero imports** and exports
//! its linear memory as `memory` plus the functions below. All pointers and
//! lengths are `u32` offsets into that memory. The guest is single-threaded;
//! one call runs at a time.
//!
//! | export | signature | meaning |
//! |---|---|---|
//! | `ew_abi_version` | `() -> u32` | [`ABI_VERSION`]; a host refuses a module whose version it does not know |
//! | `ew_alloc` | `(len: u32) -> u32` | allocates `len` bytes (8-aligned); 0 if out of memory |
//! | `ew_free` | `(ptr: u32, len: u32)` | frees what `ew_alloc(len)` returned |
//! | `ew_load_model` | `(ptr: u32, len: u32) -> i32` | decodes and installs a [`crate::model`] artifact |
//! | `ew_rank` | `(bundle_ptr, bundle_len, ctx_ptr, ctx_len: u32) -> i32` | ranks a [`crate::bundle`] with a context encoded by [`encode_context`] |
//! | `ew_result_ptr` / `ew_result_len` | `() -> u32` | the last successful ranking, encoded by [`encode_result`] |
//! | `ew_load_bundle` (optional) | `(ptr: u32, len: u32, flags: u32) -> i32` | validates a bundle and keeps a copy of it; flags bit 0: the host verified its checksum (check structure only) |
//! | `ew_rank_loaded` (optional) | `(ctx_ptr: u32, ctx_len: u32) -> i32` | ranks the kept bundle with a context, exactly as `ew_rank` would rank it |
//! | `ew_error_ptr` / `ew_error_len` | `() -> u32` | UTF-8 message of the last failed call |
//!
//! Calls return a [`Status`] code: 0 for success, a positive code otherwise.
//! The result and error buffers stay valid until the next `ew_load_model` or `ew_rank`.
//!
//! A typical host: `ew_alloc` + write the model + `ew_load_model` once; then per
//! request `ew_alloc` (or reuse) + write bundle and context + `ew_rank` + read
//! `ew_result_*`. [`Engine`] is the code behind the exports, usable natively too.
//!
//! The two optional exports ([`OPTIONAL_EXPORTS`]) serve a host that ranks one
//! bundle for many requests (an edge ranks its region's bundle for every
//! user): `ew_load_bundle` once per bundle, then `ew_rank_loaded` with each
//! request's context, so the bundle is neither copied in nor validated again
//! per request. A host looks them up and uses `ew_rank` when a module lacks
//! them; the kept bundle survives `ew_load_model`.
//!
//! # Context encoding (`EWCX`, versions 1 and 2)
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 4]` | `b"EWCX"` |
//! | 4 | `u8` | version: 2 when the context carries a history, else 1 |
//! | 5 | `u8` | region index, 0..=31 ([`crate::region::REGION_ANY`] = no region filter) |
//! | 6 | `u16` | flags: bit 0 = the host verified the bundle's checksum, check structure only ([`crate::bundle::Bundle::decode_prechecked`]); other bits 0 |
//! | 8 | `u32` | `k` |
//! | 12 | `u32` | pre-rank keep override (0 = the model's) |
//! | 16 | `u64` | now, ms since the Unix epoch |
//! | 24 | `f32` | session share β in `[0, 1]` |
//! | 28 | `u16` | version 2: history entries `H` (1..=64); version 1: reserved, 0 |
//! | 30 | `u16` | version 2: history embedding dimension `E` (1..=1024); version 1: reserved, 0 |
//! | 32 | `u64` | session half-life, ms |
//! | 40 | `u32` | number of seen ids `S` |
//! | 44 | `u32` | number of blocked creators `B` |
//! | 48 | `u32` | base embedding length `D` (0 = anonymous) |
//! | 52 | `u32` | session-state length in bytes `L` (0 = none) |
//! | 56 | `u64 × S`, `u32 × B`, `f32 × D`, `L` bytes | seen ids, blocked creators, base embedding, [`crate::session`] state |
//! | … | `H × (24 + E)` bytes | version 2: the [`crate::history`], newest first; per entry `item u64, at_ms u64, scale f32, kind u8`, 3 zero bytes, `i8 × E` |
//!
//! The lengths must add up to exactly the context's length. A context without
//! a history is written as version 1, byte for byte what this format always
//! wrote; a version-2 context without one is refused, so every context has
//! exactly one encoding (and a host that predates version 2 reads every
//! context that has no history).
//!
//! # Result encoding (`EWRS`, version 1)
//! A 16-byte header — `b"EWRS"`, version `u8` = 1, model match `u8` (0: the bundle
//! accepts any model, 1: it expects the loaded one, 2: it expects another),
//! reserved `u16`, item count `u32`, row count `u32` — then 32 bytes per item
//! (`id u64, row u32, score f32, pre f32, main f32, mmr_penalty f32, mmr_score f32`)
//! and 16 bytes per bundle row (`outcome u8`, 3 zero bytes, `pre f32, main f32, calibrated f32`).
//! Two rankings are bit-identical exactly when their encodings are byte-identical.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::bundle::Bundle;
use crate::digest::Digest;
use crate::format::{Envelope, FormatError, VersionWidth, check_range, f32_at, u16_at, u32_at, u64_at};
use crate::model::{self, Model};
use crate::rank::{Outcome, RankContext, RankOutput, RankedItem, Ranker, RowExplain};
use crate::region::Region;

/// Version of the export set and encodings above.
pub const ABI_VERSION: u32 = 1;

/// Names of the functions every guest exports.
pub const EXPORTS: [&str; 9] = [
    "ew_abi_version",
    "ew_alloc",
    "ew_free",
    "ew_load_model",
    "ew_rank",
    "ew_result_ptr",
    "ew_result_len",
    "ew_error_ptr",
    "ew_error_len",
];

/// Exports a guest may have, which a host uses when present (see the module docs).
pub const OPTIONAL_EXPORTS: [&str; 2] = ["ew_load_bundle", "ew_rank_loaded"];

/// Status codes returned by the exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The model bytes are invalid.
    BadModel = 1,
    /// `ew_rank` was called before a model was loaded.
    NoModel = 2,
    /// The bundle bytes are invalid.
    BadBundle = 3,
    /// The context bytes are invalid.
    BadContext = 4,
    /// Bundle, model and context do not fit together.
    Incompatible = 5,
    /// A pointer/length pair lies outside the guest's memory.
    BadPointer = 6,
    /// `ew_rank_loaded` was called before a bundle was loaded.
    NoBundle = 7,
}

impl Status {
    /// The status with this code.
    pub fn from_code(c: i32) -> Option<Self> {
        Some(match c {
            0 => Self::Ok,
            1 => Self::BadModel,
            2 => Self::NoModel,
            3 => Self::BadBundle,
            4 => Self::BadContext,
            5 => Self::Incompatible,
            6 => Self::BadPointer,
            7 => Self::NoBundle,
            _ => return None,
        })
    }
}

/// How the `EWCX` context is framed: magic and a one-byte version, no trailer
/// (it never leaves the host's memory).
pub const CONTEXT: Envelope = Envelope {
    name: "context",
    magic: b"EWCX",
    version: 2,
    oldest: 1,
    version_width: VersionWidth::U8,
    crc: false,
    xxh3_from: None,
    end_magic: None,
};
/// How the `EWRS` result is framed: magic and a one-byte version, no trailer.
pub const RESULT: Envelope = Envelope {
    name: "result",
    magic: b"EWRS",
    version: 1,
    oldest: 1,
    version_width: VersionWidth::U8,
    crc: false,
    xxh3_from: None,
    end_magic: None,
};
const CTX_FIXED: usize = 56;
const RES_HEADER: usize = 16;
const ITEM_LEN: usize = 32;
const ROW_LEN: usize = 16;

/// Appends the `EWCX` encoding of `ctx` to `out`.
pub fn encode_context(ctx: &RankContext, out: &mut Vec<u8>) {
    let history = &ctx.history;
    CONTEXT.writing(if history.is_empty() { 1 } else { 2 }).write_head(out);
    out.push(Region::to_wire(ctx.region));
    out.extend_from_slice(&u16::from(ctx.checksum_verified).to_le_bytes());
    out.extend_from_slice(&ctx.k.to_le_bytes());
    out.extend_from_slice(&ctx.prerank_keep.to_le_bytes());
    out.extend_from_slice(&ctx.now_ms.to_le_bytes());
    out.extend_from_slice(&ctx.session_config.session_share.to_le_bytes());
    // A history holds at most 64 entries of at most 1024 values (`History` enforces both).
    out.extend_from_slice(&(history.len() as u16).to_le_bytes());
    out.extend_from_slice(&(history.dim() as u16).to_le_bytes());
    out.extend_from_slice(&ctx.session_config.half_life_ms.to_le_bytes());
    out.extend_from_slice(&(ctx.seen.len() as u32).to_le_bytes());
    out.extend_from_slice(&(ctx.blocked_creators.len() as u32).to_le_bytes());
    out.extend_from_slice(&(ctx.base.len() as u32).to_le_bytes());
    let session_len = if ctx.session.dim() > 0 { ctx.session.encoded_len() } else { 0 };
    out.extend_from_slice(&(session_len as u32).to_le_bytes());
    ctx.seen.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    ctx.blocked_creators.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    ctx.base.iter().for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
    if session_len > 0 {
        ctx.session.encode_into(out);
    }
    history.encode_entries(out);
}

/// Bytes per history entry in `EWCX` version 2, before the embedding.
const HISTORY_ENTRY_FIXED: u64 = crate::history::ENTRY_FIXED as u64;

/// Decodes an `EWCX` context into `ctx`, reusing its buffers. Never panics.
pub fn decode_context(b: &[u8], ctx: &mut RankContext) -> Result<(), FormatError> {
    let bad = |reason| CONTEXT.malformed(reason);
    CONTEXT.check_len(b, CTX_FIXED)?;
    let version = CONTEXT.check_head(b)?;
    if b[6] > 1 || b[7] != 0 {
        return Err(FormatError::UnknownFlags { format: CONTEXT.name, flags: u16_at(b, 6) });
    }
    let (h, e) = (u64::from(u16_at(b, 28)), u64::from(u16_at(b, 30)));
    if version < 2 {
        if let Some(i) = (28..32).find(|&i| b[i] != 0) {
            return Err(FormatError::ReservedNonZero { format: CONTEXT.name, offset: i });
        }
    } else {
        if h == 0 {
            return Err(bad("a version-2 context without a history (it is written as version 1)"));
        }
        check_range(CONTEXT.name, "history entries", h, 1, crate::history::MAX_HISTORY as u64)?;
        check_range(CONTEXT.name, "history dimension", e, 1, u64::from(crate::bundle::MAX_DIM))?;
    }
    let u32_at = |at: usize| u32_at(b, at);
    let u64_at = |at: usize| u64_at(b, at);
    let (s, bl, d, l) = (u32_at(40) as u64, u32_at(44) as u64, u32_at(48) as u64, u32_at(52) as u64);
    let expected = CTX_FIXED as u64 + 8 * s + 4 * bl + 4 * d + l + h * (HISTORY_ENTRY_FIXED + e);
    if expected != b.len() as u64 {
        return Err(bad("section lengths do not add up to the context length"));
    }
    let share = f32::from_bits(u32_at(24));
    if !(0.0..=1.0).contains(&share) {
        return Err(bad("session share is not in [0, 1]"));
    }
    ctx.region = Region::from_wire(b[5]).map_err(|_| bad("the region byte is neither 0..=31 nor 255 (any region)"))?;
    ctx.checksum_verified = b[6] & 1 != 0;
    ctx.k = u32_at(8);
    ctx.prerank_keep = u32_at(12);
    ctx.now_ms = u64_at(16);
    ctx.session_config =
        crate::session::SessionConfig { session_share: share, half_life_ms: u64_at(32), ..Default::default() };
    let mut at = CTX_FIXED;
    ctx.seen.clear();
    ctx.seen.extend(b[at..at + 8 * s as usize].chunks_exact(8).map(|c| {
        let mut x = [0u8; 8];
        x.copy_from_slice(c);
        u64::from_le_bytes(x)
    }));
    at += 8 * s as usize;
    ctx.blocked_creators.clear();
    ctx.blocked_creators
        .extend(b[at..at + 4 * bl as usize].chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    at += 4 * bl as usize;
    ctx.base.clear();
    ctx.base.extend(b[at..at + 4 * d as usize].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    at += 4 * d as usize;
    if ctx.base.iter().any(|x| !x.is_finite()) {
        return Err(bad("non-finite value in the base embedding"));
    }
    if l == 0 {
        ctx.session.reset();
    } else {
        let n = ctx.session.decode_from(&b[at..]).map_err(|_| bad("invalid session state"))?;
        if n as u64 != l {
            return Err(bad("session state length does not match its header"));
        }
        // The encoder writes no section for an empty (dimension-0) session, so
        // one here has a second encoding of the same context: refused, so that
        // every context has exactly one.
        if ctx.session.dim() == 0 {
            return Err(bad("a session section holds a dimension-0 state (an empty session has no section)"));
        }
    }
    at += l as usize;
    ctx.history.decode_entries(&b[at..], h as usize, e as usize, bad)?;
    Ok(())
}

/// How the bundle's expected model relates to the loaded one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelMatch {
    /// The bundle accepts any model.
    Any = 0,
    /// The bundle expects the loaded model.
    Match = 1,
    /// The bundle was built for another model.
    Mismatch = 2,
}

impl ModelMatch {
    /// How a bundle that `expected` a model relates to the `loaded` one.
    pub fn of(expected: Option<Digest>, loaded: Digest) -> Self {
        match expected {
            None => Self::Any,
            Some(d) if d == loaded => Self::Match,
            Some(_) => Self::Mismatch,
        }
    }
}

/// Appends the `EWRS` encoding of a ranking to `out`.
pub fn encode_result(r: &RankOutput, model_match: ModelMatch, out: &mut Vec<u8>) {
    RESULT.write_head(out);
    out.push(model_match as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(r.items.len() as u32).to_le_bytes());
    out.extend_from_slice(&(r.rows.len() as u32).to_le_bytes());
    for it in &r.items {
        out.extend_from_slice(&it.id.to_le_bytes());
        out.extend_from_slice(&it.row.to_le_bytes());
        for x in [it.score, it.pre_score, it.main_score, it.mmr_penalty, it.mmr_score] {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    for row in &r.rows {
        out.extend_from_slice(&[row.outcome as u8, 0, 0, 0]);
        for x in [row.pre_score, row.main_score, row.calibrated] {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
}

/// Decodes an `EWRS` result. Never panics.
pub fn decode_result(b: &[u8]) -> Result<(RankOutput, ModelMatch), FormatError> {
    let mut out = RankOutput::default();
    let model_match = decode_result_into(b, &mut out)?;
    Ok((out, model_match))
}

/// [`decode_result`] into `out`, reusing its buffers (a host that ranks in a
/// loop allocates nothing once they have grown). `out` is cleared first, and
/// left empty on an error. Never panics.
pub fn decode_result_into(b: &[u8], out: &mut RankOutput) -> Result<ModelMatch, FormatError> {
    out.items.clear();
    out.rows.clear();
    let r = decode_result_inner(b, out);
    if r.is_err() {
        out.items.clear();
        out.rows.clear();
    }
    r
}

fn decode_result_inner(b: &[u8], out: &mut RankOutput) -> Result<ModelMatch, FormatError> {
    let bad = |reason| RESULT.malformed(reason);
    RESULT.check_len(b, RES_HEADER)?;
    RESULT.check_head(b)?;
    let model_match = match b[5] {
        0 => ModelMatch::Any,
        1 => ModelMatch::Match,
        2 => ModelMatch::Mismatch,
        _ => return Err(bad("bad model-match code")),
    };
    let u32_at = |at: usize| u32_at(b, at);
    let f32_at = |at: usize| f32_at(b, at);
    let (ni, nr) = (u32_at(8) as u64, u32_at(12) as u64);
    if RES_HEADER as u64 + ITEM_LEN as u64 * ni + ROW_LEN as u64 * nr != b.len() as u64 {
        return Err(bad("counts do not match the length"));
    }
    let mut at = RES_HEADER;
    for _ in 0..ni {
        out.items.push(RankedItem {
            id: u64_at(b, at),
            row: u32_at(at + 8),
            score: f32_at(at + 12),
            pre_score: f32_at(at + 16),
            main_score: f32_at(at + 20),
            mmr_penalty: f32_at(at + 24),
            mmr_score: f32_at(at + 28),
        });
        at += ITEM_LEN;
    }
    for _ in 0..nr {
        let outcome = Outcome::from_code(b[at]).ok_or(bad("unknown outcome code"))?;
        out.rows.push(RowExplain {
            outcome,
            pre_score: f32_at(at + 4),
            main_score: f32_at(at + 8),
            calibrated: f32_at(at + 12),
        });
        at += ROW_LEN;
    }
    Ok(model_match)
}

/// Decodes the context into `ctx` and the bundle, for a loaded `model`; a
/// failure's message goes to `error`.
fn prepare<'b, 'm>(
    model: &'m Option<(Model, Digest)>,
    ctx: &mut RankContext,
    error: &mut String,
    bundle: &'b [u8],
    ctx_bytes: &[u8],
) -> Result<(Bundle<'b>, &'m (Model, Digest)), Status> {
    error.clear();
    let Some(model) = model.as_ref() else {
        error.push_str("no model loaded: call ew_load_model first");
        return Err(Status::NoModel);
    };
    if let Err(e) = decode_context(ctx_bytes, ctx) {
        let _ = write!(error, "invalid context: {e}");
        return Err(Status::BadContext);
    }
    let decoded = if ctx.checksum_verified { Bundle::decode_prechecked(bundle) } else { Bundle::decode(bundle) };
    match decoded {
        Ok(b) => Ok((b, model)),
        Err(e) => {
            let _ = write!(error, "invalid bundle: {e}");
            Err(Status::BadBundle)
        }
    }
}

/// The engine's buffers a ranking writes, borrowed apart from the bundle it reads.
struct Slots<'e> {
    ranker: &'e mut Ranker,
    out: &'e mut RankOutput,
    result: &'e mut Vec<u8>,
    error: &'e mut String,
}

impl Slots<'_> {
    /// Ranks `b` for `ctx` with the loaded model; encodes the result or the error.
    fn rank(
        self,
        (model, digest): &(Model, Digest),
        b: &Bundle<'_>,
        ctx: &RankContext,
        dots: Option<&[i32]>,
    ) -> Status {
        let model_match = ModelMatch::of(b.header().model_digest, *digest);
        let ranked = match dots {
            None => self.ranker.rank(model, b, ctx, self.out),
            Some(dots) => self.ranker.rank_with_dots(model, b, ctx, dots, self.out),
        };
        if let Err(e) = ranked {
            self.error.clear();
            let _ = write!(self.error, "cannot rank: {e}");
            return Status::Incompatible;
        }
        encode_result(self.out, model_match, self.result);
        self.error.clear();
        Status::Ok
    }
}

/// The state behind the guest's exports: a loaded model, a ranker with its
/// scratch space, and the last result or error.
#[derive(Debug, Default)]
pub struct Engine {
    model: Option<(Model, Digest)>,
    /// The bundle `load_bundle` kept, and its validated view's parts.
    loaded: Vec<u8>,
    loaded_parts: Option<crate::bundle::BundleParts>,
    ranker: Ranker,
    ctx: RankContext,
    out: RankOutput,
    result: Vec<u8>,
    error: String,
}

impl Engine {
    /// An engine with no model.
    pub fn new() -> Self {
        Self::default()
    }

    fn fail(&mut self, status: Status, what: &str, err: &dyn core::fmt::Display) -> Status {
        self.error.clear();
        let _ = write!(self.error, "{what}: {err}");
        status
    }

    /// Decodes and installs a model.
    pub fn load_model(&mut self, bytes: &[u8]) -> Status {
        self.result.clear();
        match Model::decode(bytes) {
            Ok(m) => {
                self.model = Some((m, model::digest(bytes)));
                self.error.clear();
                Status::Ok
            }
            Err(e) => self.fail(Status::BadModel, "invalid model", &e),
        }
    }

    /// The loaded model and its digest.
    pub fn model(&self) -> Option<&(Model, Digest)> {
        self.model.as_ref()
    }

    /// Ranks a bundle with an encoded context; on success the result is in [`result`](Self::result).
    pub fn rank(&mut self, bundle: &[u8], ctx: &[u8]) -> Status {
        self.rank_inner(bundle, ctx, None)
    }

    /// [`rank`](Self::rank) with the int8 dot products computed elsewhere (a
    /// GPU): `dots[i]` is the dot product of [`quantized_query`](Self::quantized_query)'s
    /// query with row `i` ([`Ranker::rank_with_dots`]). Same result, bit for bit.
    pub fn rank_with_dots(&mut self, bundle: &[u8], ctx: &[u8], dots: &[i32]) -> Status {
        self.rank_inner(bundle, ctx, Some(dots))
    }

    /// The quantised query a ranking of `bundle` for `ctx` scores rows
    /// against, after every check [`rank`](Self::rank) makes; on success it is
    /// in [`result`](Self::result) as `d` signed bytes.
    pub fn quantized_query(&mut self, bundle: &[u8], ctx: &[u8]) -> Status {
        self.result.clear();
        let (b, model) = match prepare(&self.model, &mut self.ctx, &mut self.error, bundle, ctx) {
            Ok(x) => x,
            Err(status) => return status,
        };
        match self.ranker.quantized_query(&model.0, &b, &self.ctx) {
            Ok((q, _)) => {
                self.result.extend(q.iter().map(|&x| x as u8));
                self.error.clear();
                Status::Ok
            }
            Err(e) => self.fail(Status::Incompatible, "cannot rank", &e),
        }
    }

    fn rank_inner(&mut self, bundle: &[u8], ctx: &[u8], dots: Option<&[i32]>) -> Status {
        self.result.clear();
        let (b, model) = match prepare(&self.model, &mut self.ctx, &mut self.error, bundle, ctx) {
            Ok(x) => x,
            Err(status) => return status,
        };
        let s =
            Slots { ranker: &mut self.ranker, out: &mut self.out, result: &mut self.result, error: &mut self.error };
        s.rank(model, &b, &self.ctx, dots)
    }

    /// Validates `bundle` (its structure, and its checksum unless
    /// `checksum_verified`) and keeps a copy for [`rank_loaded`](Self::rank_loaded),
    /// replacing the one kept before. A bundle that fails leaves none kept.
    pub fn load_bundle(&mut self, bundle: &[u8], checksum_verified: bool) -> Status {
        self.result.clear();
        self.loaded_parts = None;
        let decoded = if checksum_verified { Bundle::decode_prechecked(bundle) } else { Bundle::decode(bundle) };
        match decoded {
            Ok(b) => {
                let parts = b.parts();
                self.loaded.clear();
                self.loaded.extend_from_slice(bundle);
                self.loaded_parts = Some(parts);
                self.error.clear();
                Status::Ok
            }
            Err(e) => self.fail(Status::BadBundle, "invalid bundle", &e),
        }
    }

    /// Ranks the bundle [`load_bundle`](Self::load_bundle) kept with an
    /// encoded context: bit for bit what [`rank`](Self::rank) gives for that
    /// bundle and context (the context's checksum flag is ignored: the
    /// bundle was checked when it was loaded).
    pub fn rank_loaded(&mut self, ctx: &[u8]) -> Status {
        self.result.clear();
        self.error.clear();
        let Some(parts) = self.loaded_parts else {
            return self.set_error(Status::NoBundle, "no bundle loaded: call ew_load_bundle first");
        };
        let Some(model) = self.model.as_ref() else {
            return self.set_error(Status::NoModel, "no model loaded: call ew_load_model first");
        };
        if let Err(e) = decode_context(ctx, &mut self.ctx) {
            let _ = write!(self.error, "invalid context: {e}");
            return Status::BadContext;
        }
        let b = Bundle::from_parts(&self.loaded, parts);
        let s =
            Slots { ranker: &mut self.ranker, out: &mut self.out, result: &mut self.result, error: &mut self.error };
        s.rank(model, &b, &self.ctx, None)
    }

    /// The last ranking, `EWRS`-encoded (empty after a failure).
    pub fn result(&self) -> &[u8] {
        &self.result
    }

    /// The last error message (empty after a success).
    pub fn error(&self) -> &str {
        &self.error
    }

    /// Records a failure detected outside the engine (e.g. a bad pointer in the guest glue).
    pub fn set_error(&mut self, status: Status, msg: &str) -> Status {
        self.result.clear();
        self.error.clear();
        self.error.push_str(msg);
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decoding into a reused output gives `decode_result`'s value, and a
    /// bad encoding leaves the output empty.
    #[test]
    fn decode_result_into_reuses_and_clears() {
        let spec = crate::synth::Spec::new(200, 16, 3);
        let model = crate::synth::model(&spec, &[8], 100, 3).encode().expect("model");
        let bundle = crate::synth::bundle(&spec, 1_700_000_000_000);
        let mut e = Engine::new();
        assert_eq!(e.load_model(&model), Status::Ok);
        let mut out = RankOutput::default();
        for seed in 0..3 {
            let mut ctx = Vec::new();
            encode_context(&crate::synth::context(&spec, 5 + seed, 1_700_000_000_000, seed as u64), &mut ctx);
            assert_eq!(e.rank(&bundle, &ctx), Status::Ok, "{}", e.error());
            let (want, want_match) = decode_result(e.result()).expect("decodes");
            let m = decode_result_into(e.result(), &mut out).expect("decodes into");
            assert_eq!(m, want_match);
            assert_eq!(out.items.len(), want.items.len());
            let mut a = Vec::new();
            encode_result(&out, m, &mut a);
            assert_eq!(a, e.result(), "seed {seed}");
        }
        let mut bad = e.result().to_vec();
        bad.pop();
        assert!(decode_result_into(&bad, &mut out).is_err());
        assert!(out.items.is_empty() && out.rows.is_empty(), "a failed decode leaves nothing behind");
    }

    /// A kept bundle ranks to `rank`'s bytes for every context, survives a
    /// model reload, and is replaced (or dropped, by a bad one) by the next load.
    #[test]
    fn rank_loaded_is_rank() {
        let spec = crate::synth::Spec::new(300, 16, 9);
        let model = crate::synth::model(&spec, &[8], 100, 6).encode().expect("model");
        let other = crate::synth::Spec::new(120, 16, 10);
        let (bundle, bundle2) =
            (crate::synth::bundle(&spec, 1_700_000_000_000), crate::synth::bundle(&other, 1_700_000_000_000));
        let mut e = Engine::new();
        assert_eq!(e.rank_loaded(&[]), Status::NoBundle);
        assert!(e.error().contains("ew_load_bundle"), "{}", e.error());
        assert_eq!(e.load_bundle(&bundle, false), Status::Ok);
        let mut ctx = Vec::new();
        encode_context(&crate::synth::context(&spec, 10, 1_700_000_000_000, 1), &mut ctx);
        assert_eq!(e.rank_loaded(&ctx), Status::NoModel);
        assert_eq!(e.load_model(&model), Status::Ok);
        for seed in 0..6 {
            for (b, s) in [(&bundle, &spec), (&bundle2, &other)] {
                ctx.clear();
                let mut c = crate::synth::context(s, 10, 1_700_000_000_000, seed);
                c.checksum_verified = seed % 2 == 0;
                encode_context(&c, &mut ctx);
                assert_eq!(e.rank(b, &ctx), Status::Ok, "{}", e.error());
                let want = e.result().to_vec();
                assert_eq!(e.load_bundle(b, seed % 3 == 0), Status::Ok, "{}", e.error());
                assert_eq!(e.rank_loaded(&ctx), Status::Ok, "{}", e.error());
                assert_eq!(e.result(), &want[..], "seed {seed}");
                assert_eq!(e.load_model(&model), Status::Ok);
                assert_eq!(e.rank_loaded(&ctx), Status::Ok, "the bundle survives a model load");
                assert_eq!(e.result(), &want[..]);
            }
        }
        assert_eq!(e.rank_loaded(&ctx[1..]), Status::BadContext);
        let mut corrupt = bundle.clone();
        let n = corrupt.len();
        corrupt[n - 9] ^= 1;
        assert_eq!(e.load_bundle(&corrupt, false), Status::BadBundle);
        assert!(e.error().contains("checksum"), "{}", e.error());
        assert_eq!(e.rank_loaded(&ctx), Status::NoBundle, "a bad bundle leaves none kept");
    }

    /// The engine's split path (query out, dot products in) gives `rank`'s
    /// bytes, and refuses what `rank` refuses with the same status.
    #[test]
    fn rank_with_dots_through_the_engine_is_rank() {
        let spec = crate::synth::Spec::new(500, 24, 5);
        let model = crate::synth::model(&spec, &[8], 100, 6).encode().expect("model");
        let bundle = crate::synth::bundle(&spec, 1_700_000_000_000);
        let mut ctx = Vec::new();
        encode_context(&crate::synth::context(&spec, 10, 1_700_000_000_000, 7), &mut ctx);
        let mut e = Engine::new();
        assert_eq!(e.quantized_query(&bundle, &ctx), Status::NoModel);
        assert_eq!(e.load_model(&model), Status::Ok);
        assert_eq!(e.rank(&bundle, &ctx), Status::Ok, "{}", e.error());
        let want = e.result().to_vec();
        assert_eq!(e.quantized_query(&bundle, &ctx), Status::Ok, "{}", e.error());
        let q: Vec<i8> = e.result().iter().map(|&x| x as i8).collect();
        assert_eq!(q.len(), 24);
        let b = Bundle::decode(&bundle).expect("bundle");
        let dots: Vec<i32> = (0..b.len()).map(|i| crate::math::dot_i8(&q, b.embedding(i))).collect();
        assert_eq!(e.rank_with_dots(&bundle, &ctx, &dots), Status::Ok, "{}", e.error());
        assert_eq!(e.result(), &want[..]);
        assert_eq!(e.rank_with_dots(&bundle, &ctx, &dots[1..]), Status::Incompatible);
        assert!(e.error().contains("499 dot products"), "{}", e.error());
        assert_eq!(e.quantized_query(&bundle[1..], &ctx), Status::BadBundle);
        assert_eq!(e.quantized_query(&bundle, &ctx[1..]), Status::BadContext);
    }

    /// Found while making the `decode_context` fuzz target checksum-aware
    /// (and confirmed with it): a context whose session section holds a valid
    /// dimension-0 state decoded, but re-encoded without the section, so the
    /// decoder accepted a second encoding of one context.
    #[test]
    fn a_dimensionless_session_section_is_refused() {
        let bytes = include_bytes!("../fuzz/regressions/decode_context/context-with-dimensionless-session");
        let mut ctx = RankContext::default();
        let err = decode_context(bytes, &mut ctx).expect_err("non-canonical");
        assert!(matches!(err, FormatError::Malformed { reason, .. } if reason.contains("dimension-0")), "{err:?}");
        assert!(!crate::check::context_bytes(bytes), "the checker sees a refusal, not a panic");
    }

    fn with_history() -> RankContext {
        let mut ctx = RankContext::new(5, 10_000);
        ctx.base = alloc::vec![0.5, -0.25, 1.0];
        ctx.history.push(7, 9_000, 2, &[1.0, 0.5, -0.5]).expect("push");
        ctx.history.push(8, 4_000, 3, &[0.0, 0.0, 0.0]).expect("push");
        ctx
    }

    #[test]
    fn a_history_makes_a_version_2_context_and_round_trips() {
        let ctx = with_history();
        let mut bytes = Vec::new();
        encode_context(&ctx, &mut bytes);
        assert_eq!(bytes[4], 2);
        assert_eq!(bytes.len(), CTX_FIXED + 4 * 3 + 2 * (24 + 3));
        let mut back = RankContext::default();
        decode_context(&bytes, &mut back).expect("decodes");
        assert_eq!(back.history, ctx.history);
        assert!(crate::check::context_bytes(&bytes), "canonical");

        let mut none = ctx.clone();
        none.history.clear();
        let mut v1 = Vec::new();
        encode_context(&none, &mut v1);
        assert_eq!(v1[4], 1, "no history: version 1, as before");
        assert_eq!(&v1[28..32], &[0, 0, 0, 0]);
    }

    #[test]
    fn malformed_histories_are_refused_by_name() {
        let mut bytes = Vec::new();
        encode_context(&with_history(), &mut bytes);
        let refused = |b: &[u8]| {
            let mut ctx = RankContext::default();
            alloc::format!("{}", decode_context(b, &mut ctx).expect_err("refused"))
        };
        let entry = CTX_FIXED + 12;
        let mut b = bytes.clone();
        b[entry + 20] = 9;
        assert!(refused(&b).contains("kind"), "{}", refused(&b));
        let mut b = bytes.clone();
        b[entry + 21] = 1;
        assert!(refused(&b).contains("padding"));
        let mut b = bytes.clone();
        b[entry + 27 + 8..entry + 27 + 16].copy_from_slice(&20_000u64.to_le_bytes());
        assert!(refused(&b).contains("newest first"));
        let mut b = bytes.clone();
        b[entry + 16..entry + 20].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(refused(&b).contains("scale"));
        let mut b = bytes.clone();
        b[28] = 65;
        assert!(refused(&b).contains("history entries"), "{}", refused(&b));
        let mut b = bytes[..CTX_FIXED + 12].to_vec();
        b[28..32].copy_from_slice(&[0, 0, 0, 0]);
        assert!(refused(&b).contains("without a history"));
        let mut b = bytes.clone();
        b[4] = 1;
        assert!(refused(&b).contains("reserved") || refused(&b).contains("offset"), "{}", refused(&b));
        assert!(refused(&bytes[..bytes.len() - 1]).contains("lengths"));
    }
}
