//! The candidate-bundle format (versions 1 to 3): a builder that encodes and
//! a validated, zero-copy view that decodes.
//!
//! A bundle is what the origin ships and the caches keep: a few hundred to a
//! few thousand candidates, each with an int8 embedding and everything the
//! ranking pipeline reads. The layout is columnar so that JavaScript can view
//! each column as a typed array and upload it to the GPU unchanged.
//!
//! # Layout, versions 1 to 3
//! All integers and floats are little-endian. Offsets are from the start of
//! the bundle. Versions 1 and 2 differ only in the trailer's checksum;
//! version 3 is version 2 with the user's embedding (below).
//!
//! ## Header (128 bytes)
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic, `b"EWBUNDLE"` |
//! | 8 | `u16` | format version ([`VERSION`]); readers accept [`OLDEST_SUPPORTED_VERSION`]..=[`VERSION`] |
//! | 10 | `u16` | flags: bit 0 set = personal scope, clear = regional; bit 1 set = the user's embedding follows the rows (version 3, which must set it, and personal scope only); other bits must be 0 |
//! | 12 | `u32` | header length, 128 |
//! | 16 | `u32` | `n`, number of rows (≤ [`MAX_ROWS`]) |
//! | 20 | `u16` | `d`, embedding dimension (1..=[`MAX_DIM`]) |
//! | 22 | `u16` | `f`, features per row (≤ [`MAX_FEATURES`]) |
//! | 24 | `u8` | `s`, source slots per row (≤ [`MAX_SOURCES`]) |
//! | 25 | `u8` | region index the bundle was built for, 0..=31 ([`crate::region::REGION_ANY`] = none) |
//! | 26 | `u16` | reserved, 0 |
//! | 28 | `u8` | bitmask of sources that contributed |
//! | 29 | `u8` | bitmask of sources that failed or timed out |
//! | 30 | `u16` | reserved, 0 |
//! | 32 | `u64` | creation time, ms since the Unix epoch |
//! | 40 | `u64` | feature-schema hash ([`crate::feature_schema_hash`]) |
//! | 48 | `[u8; 32]` | sha256 digest of the model the bundle expects (all zero: any model) |
//! | 80 | `[u8; 48]` | reserved, 0 |
//!
//! ## Columns
//! In this order, each starting at a multiple of 8 bytes (zero padding between):
//!
//! | column | type | shape |
//! |---|---|---|
//! | item id | `u64` | `n` |
//! | embedding scale | `f32` (finite, ≥ 0) | `n` |
//! | retrieval score | `f32` (finite) | `n` |
//! | creator | `u32` | `n` |
//! | category | `u32` | `n` |
//! | region eligibility | `u32` bitmask (bit `r` = eligible in region `r`) | `n` |
//! | features | `f32` (finite), row-major | `n × f` |
//! | rank within each source | `u16`, row-major, [`NO_RANK`] = not retrieved by it | `n × s` |
//! | source bitmask | `u8` (bit `j` set ⇔ rank slot `j` is not [`NO_RANK`]) | `n` |
//! | embedding | `i8`, row-major, symmetric: value ≈ `q × scale` | `n × d` |
//! | user embedding (flag bit 1 only) | `f32` (finite) | `d` |
//!
//! ## The user's embedding (version 3)
//! A personal bundle may carry the long-term embedding of the user it was
//! built for (the origin's `base`), so that whoever ranks it (the edge's
//! refined frame, the browser, a kept copy ranked speculatively at the next
//! visit) blends the same query the origin would: a context without a base
//! ranks with the bundle's ([`crate::rank::Ranker`]). Only a personal bundle
//! may carry one, so no shared, cacheable bundle ever holds anyone's
//! embedding; and version 3 is written exactly when one is present, so a
//! bundle without it is still the version-2 bytes.
//!
//! ## Trailer (8 bytes)
//! A checksum of every byte before it, as `u32`, then `b"EWBE"`:
//! - version 1: CRC-32 (IEEE);
//! - version 2: the low 32 bits of XXH3-64 with seed 0.
//!
//! Version 2 exists for the wasm guest, which checks the checksum of every
//! bundle it is handed unless the host already did: wasm has no carry-less
//! multiply, so CRC-32 there is a table walk (about 120 µs for a 327 KB
//! bundle in wasmtime), where XXH3 runs on simd128's 64-bit lanes (about
//! 20 µs). Both detect a random corruption but for one chance in 2^32.
//!
//! **Compatibility.** This build reads all three versions and writes version
//! 2 by default ([`BundleBuilder::version`] writes version 1), version 3 only
//! for a bundle given a user embedding ([`BundleBuilder::user_embedding`]).
//! Readers before a version existed refuse it with `UnsupportedVersion`, so
//! a deployment upgrades its readers (edges, browser packages) before its
//! origin, or keeps the origin at the version they read (the origin's
//! `retrieval.bundle_version`: below 3, personal bundles carry no user
//! embedding).
//!
//! # Decoding guarantees
//! [`Bundle::decode`] accepts any byte string and returns a view or a typed
//! [`BundleError`]. It never panics and never allocates: every length field is
//! checked against the real length before anything is sliced.

use alloc::vec::Vec;

use crate::digest::Digest;
use crate::format::{Envelope, FormatError, VersionWidth, f32_at, u16_at, u32_at, u64_at};
use crate::math;
use crate::region::Region;

mod builder;
pub use builder::{BuildError, BundleBuilder, Candidate, QuantizedCandidate, reencode, union};

/// Magic bytes at offset 0.
pub const MAGIC: [u8; 8] = *b"EWBUNDLE";
/// The version a bundle without a user embedding is written in by default.
pub const PLAIN_VERSION: u16 = 2;
/// The version that carries the user's embedding, and only it.
pub const USER_VERSION: u16 = 3;
/// Magic bytes at the very end.
pub const END_MAGIC: [u8; 4] = *b"EWBE";
/// The version this code writes by default.
pub const VERSION: u16 = 3;
/// The oldest version this code still reads.
pub const OLDEST_SUPPORTED_VERSION: u16 = 1;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 128;
/// Length of the trailer (checksum + end magic).
pub const TRAILER_LEN: usize = 8;
/// Largest number of rows a bundle may carry.
pub const MAX_ROWS: u32 = 1 << 20;
/// Largest embedding dimension.
pub const MAX_DIM: u16 = 4096;
/// Largest number of features per row.
pub const MAX_FEATURES: u16 = 1024;
/// Largest number of source slots per row (the source bitmask is a `u8`).
pub const MAX_SOURCES: u8 = 8;
/// Rank value meaning "this source did not retrieve the item".
pub const NO_RANK: u16 = u16::MAX;
/// How the bundle format is framed: magic, version range, checksum (CRC-32 in
/// version 1, XXH3 from version 2) and end magic.
pub const ENVELOPE: Envelope = Envelope {
    name: "bundle",
    magic: &MAGIC,
    version: VERSION,
    oldest: OLDEST_SUPPORTED_VERSION,
    version_width: VersionWidth::U16,
    crc: true,
    xxh3_from: Some(2),
    end_magic: Some(END_MAGIC),
};

const FLAG_PERSONAL: u16 = 1;
const FLAG_USER: u16 = 2;
const ALIGN: u64 = 8;

/// Names of the source slots, in slot order: the five personalized candidate
/// sources, then `fresh` (newest eligible items) and `popular` (most engaged
/// overall), which fill regional bundles and back-fill cold starts.
pub const SOURCE_NAMES: [&str; 7] =
    ["collaborative", "content", "trending", "recent_similar", "creator", "fresh", "popular"];

/// Who a bundle is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Non-personalized, shared by every user of a region; publicly cacheable.
    Regional,
    /// Built for one user; must never be shared.
    Personal,
}

/// Everything a bundle says about itself besides its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleHeader {
    /// Format version of the bytes this header was read from (the builder writes [`VERSION`]).
    pub version: u16,
    /// Regional or personal.
    pub scope: Scope,
    /// Region the bundle was built for (`None`: any).
    pub region: Option<Region>,
    /// Embedding dimension.
    pub dim: u16,
    /// Features per row.
    pub n_features: u16,
    /// Source slots per row.
    pub n_sources: u8,
    /// Bitmask of sources that contributed candidates.
    pub sources_contributed: u8,
    /// Bitmask of sources that failed or ran past their deadline.
    pub sources_timed_out: u8,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Hash of the feature schema the feature columns follow.
    pub feature_schema_hash: u64,
    /// The model the bundle was built for (`None`: any).
    pub model_digest: Option<Digest>,
    /// Whether the user's embedding follows the rows (version 3, personal only).
    pub user_embedding: bool,
}

impl BundleHeader {
    /// A header for a bundle with the given shape, everything else zero/regional.
    pub fn new(dim: u16, n_features: u16, n_sources: u8) -> Self {
        Self {
            version: PLAIN_VERSION,
            scope: Scope::Regional,
            region: None,
            dim,
            n_features,
            n_sources,
            sources_contributed: 0,
            sources_timed_out: 0,
            created_at_ms: 0,
            feature_schema_hash: 0,
            model_digest: None,
            user_embedding: false,
        }
    }
}

/// Why a byte string is not a valid bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum BundleError {
    /// The envelope or a header field is wrong.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A float that must be finite is NaN or infinite.
    #[error("non-finite value in column {column}, row {row}")]
    NonFinite { column: &'static str, row: u32 },
    /// An embedding scale is negative.
    #[error("negative embedding scale in row {row}")]
    NegativeScale { row: u32 },
    /// The source bitmask disagrees with the source ranks, or names a slot that does not exist.
    #[error("source bitmask and source ranks disagree in row {row}")]
    SourceMismatch { row: u32 },
}

/// Byte ranges of every column, for hosts that view them directly (JS typed arrays, GPU uploads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnLayout {
    /// `u64 × n`.
    pub ids: (usize, usize),
    /// `f32 × n`.
    pub scales: (usize, usize),
    /// `f32 × n`.
    pub retrieval: (usize, usize),
    /// `u32 × n`.
    pub creator: (usize, usize),
    /// `u32 × n`.
    pub category: (usize, usize),
    /// `u32 × n`.
    pub region_mask: (usize, usize),
    /// `f32 × n × f`.
    pub features: (usize, usize),
    /// `u16 × n × s`.
    pub source_ranks: (usize, usize),
    /// `u8 × n`.
    pub source_mask: (usize, usize),
    /// `i8 × n × d`.
    pub embeddings: (usize, usize),
    /// `f32 × d`: the user's embedding; an empty range when there is none.
    pub user: (usize, usize),
    /// Total length including the trailer.
    pub total: usize,
}

/// Column placement in u64 arithmetic (the last is the user's embedding,
/// empty without one); `None` on overflow.
fn layout_u64(n: u64, dim: u64, nf: u64, ns: u64, user: bool) -> Option<[(u64, u64); 11]> {
    let sizes = [
        n.checked_mul(8)?,
        n.checked_mul(4)?,
        n.checked_mul(4)?,
        n.checked_mul(4)?,
        n.checked_mul(4)?,
        n.checked_mul(4)?,
        n.checked_mul(nf)?.checked_mul(4)?,
        n.checked_mul(ns)?.checked_mul(2)?,
        n,
        n.checked_mul(dim)?,
        if user { dim.checked_mul(4)? } else { 0 },
    ];
    let mut out = [(0u64, 0u64); 11];
    let mut at = HEADER_LEN as u64;
    for (slot, size) in out.iter_mut().zip(sizes) {
        at = at.checked_add(ALIGN - 1)? / ALIGN * ALIGN;
        let end = at.checked_add(size)?;
        *slot = (at, end);
        at = end;
    }
    Some(out)
}

fn total_len_u64(cols: &[(u64, u64); 11]) -> Option<u64> {
    cols[10].1.checked_add(ALIGN - 1).map(|x| x / ALIGN * ALIGN)?.checked_add(TRAILER_LEN as u64)
}

fn check_range(field: &'static str, value: u64, min: u64, max: u64) -> Result<(), (&'static str, u64, u64, u64)> {
    if value < min || value > max { Err((field, value, min, max)) } else { Ok(()) }
}

fn check_shape(h: &BundleHeader) -> Result<(), (&'static str, u64, u64, u64)> {
    check_range("dim", u64::from(h.dim), 1, u64::from(MAX_DIM))?;
    check_range("n_features", u64::from(h.n_features), 0, u64::from(MAX_FEATURES))?;
    check_range("n_sources", u64::from(h.n_sources), 0, u64::from(MAX_SOURCES))?;
    Ok(())
}

/// A validated view's header, row count and layout ([`Bundle::parts`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BundleParts {
    header: BundleHeader,
    n: usize,
    layout: ColumnLayout,
}

/// A validated, zero-copy view of a bundle.
#[derive(Debug, Clone, Copy)]
pub struct Bundle<'a> {
    header: BundleHeader,
    n: usize,
    layout: ColumnLayout,
    bytes: &'a [u8],
}

impl<'a> Bundle<'a> {
    /// Validates `bytes` (checksum and structure) and returns a view over them.
    /// Never panics, never allocates.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, BundleError> {
        Self::decode_inner(bytes, true)
    }

    /// Validates everything but the checksum. For a host that ran
    /// [`verify_checksum`] once when the bytes arrived (an edge cache, say) and
    /// then ranks the same bundle many times. Still never panics on any input:
    /// only corruption that keeps the structure valid goes unnoticed.
    pub fn decode_prechecked(bytes: &'a [u8]) -> Result<Self, BundleError> {
        Self::decode_inner(bytes, false)
    }

    fn decode_inner(bytes: &'a [u8], check_crc: bool) -> Result<Self, BundleError> {
        let format = ENVELOPE.name;
        ENVELOPE.check_len(bytes, HEADER_LEN + TRAILER_LEN)?;
        // From here on every fixed header offset is < 128 <= len.
        let version = ENVELOPE.check_head(bytes)?;
        let flags = u16_at(bytes, 10);
        if flags & !(FLAG_PERSONAL | FLAG_USER) != 0 {
            return Err(FormatError::UnknownFlags { format, flags }.into());
        }
        let user = flags & FLAG_USER != 0;
        if user != (version == USER_VERSION) {
            return Err(ENVELOPE
                .malformed("flag bit 1 (the user's embedding) is set exactly in version 3, and only there")
                .into());
        }
        if user && flags & FLAG_PERSONAL == 0 {
            return Err(ENVELOPE.malformed("a regional bundle carries a user's embedding").into());
        }
        let header_len = u32_at(bytes, 12);
        if header_len as usize != HEADER_LEN {
            return Err(FormatError::BadHeaderLen { format, found: header_len, expected: HEADER_LEN as u32 }.into());
        }
        for offset in [26usize, 27, 30, 31].into_iter().chain(80..HEADER_LEN) {
            if bytes[offset] != 0 {
                return Err(FormatError::ReservedNonZero { format, offset }.into());
            }
        }
        let n = u32_at(bytes, 16);
        let mut model_digest = [0u8; 32];
        model_digest.copy_from_slice(&bytes[48..80]);
        let region = Region::from_wire(bytes[25])
            .map_err(|_| ENVELOPE.malformed("the region byte is neither 0..=31 nor 255 (any region)"))?;
        let header = BundleHeader {
            version,
            scope: if flags & FLAG_PERSONAL != 0 { Scope::Personal } else { Scope::Regional },
            region,
            dim: u16_at(bytes, 20),
            n_features: u16_at(bytes, 22),
            n_sources: bytes[24],
            sources_contributed: bytes[28],
            sources_timed_out: bytes[29],
            created_at_ms: u64_at(bytes, 32),
            feature_schema_hash: u64_at(bytes, 40),
            model_digest: Digest::from_wire(model_digest),
            user_embedding: user,
        };
        let oor = |(field, value, min, max)| FormatError::OutOfRange { format, field, value, min, max };
        check_range("n_rows", u64::from(n), 0, u64::from(MAX_ROWS)).map_err(oor)?;
        check_shape(&header).map_err(oor)?;
        let cols = layout_u64(
            u64::from(n),
            u64::from(header.dim),
            u64::from(header.n_features),
            u64::from(header.n_sources),
            user,
        );
        let expected = cols.as_ref().and_then(total_len_u64).unwrap_or(u64::MAX);
        if expected != bytes.len() as u64 {
            return Err(FormatError::LengthMismatch { format, expected, actual: bytes.len() as u64 }.into());
        }
        // expected == len, so every column end fits in usize and inside `bytes`.
        let cols = cols.unwrap_or([(0, 0); 11]);
        let r = |i: usize| (cols[i].0 as usize, cols[i].1 as usize);
        let total = bytes.len();
        ENVELOPE.check_end_magic(bytes)?;
        if check_crc {
            ENVELOPE.check_checksum(bytes)?;
        }
        let layout = ColumnLayout {
            ids: r(0),
            scales: r(1),
            retrieval: r(2),
            creator: r(3),
            category: r(4),
            region_mask: r(5),
            features: r(6),
            source_ranks: r(7),
            source_mask: r(8),
            embeddings: r(9),
            user: r(10),
            total,
        };
        // Padding between columns must be zero, so every valid bundle has one encoding.
        for c in 0..cols.len() {
            let gap_end = cols.get(c + 1).map_or(total - TRAILER_LEN, |next| next.0 as usize);
            if let Some(offset) = (cols[c].1 as usize..gap_end).find(|&o| bytes[o] != 0) {
                return Err(FormatError::ReservedNonZero { format, offset }.into());
            }
        }
        let view = Bundle { header, n: n as usize, layout, bytes };
        view.validate_rows()?;
        Ok(view)
    }

    fn validate_rows(&self) -> Result<(), BundleError> {
        if self.user_embedding().is_some_and(|mut e| e.any(|x| !x.is_finite())) {
            return Err(BundleError::NonFinite { column: "user embedding", row: 0 });
        }
        let ns = usize::from(self.header.n_sources);
        for i in 0..self.n {
            let row = i as u32;
            let s = self.scale(i);
            if !s.is_finite() {
                return Err(BundleError::NonFinite { column: "scale", row });
            }
            if s < 0.0 {
                return Err(BundleError::NegativeScale { row });
            }
            if !self.retrieval_score(i).is_finite() {
                return Err(BundleError::NonFinite { column: "retrieval", row });
            }
            if self.features(i).any(|x| !x.is_finite()) {
                return Err(BundleError::NonFinite { column: "features", row });
            }
            let mask = self.source_mask(i);
            if ns < 8 && mask >> ns != 0 {
                return Err(BundleError::SourceMismatch { row });
            }
            for j in 0..ns {
                let present = self.source_rank(i, j).is_some();
                if present != (mask & (1 << j) != 0) {
                    return Err(BundleError::SourceMismatch { row });
                }
            }
        }
        Ok(())
    }

    /// What a view holds besides its bytes, to rebuild it over the same
    /// bytes later ([`Bundle::from_parts`]) without validating them again.
    pub(crate) fn parts(&self) -> BundleParts {
        BundleParts { header: self.header, n: self.n, layout: self.layout }
    }

    /// The view [`Bundle::parts`] came from, over `bytes`: the caller keeps
    /// the very bytes that were validated (a changed byte is never read out
    /// of bounds, every accessor slices with checks, but it is not validated).
    pub(crate) fn from_parts(bytes: &'a [u8], parts: BundleParts) -> Self {
        Self { header: parts.header, n: parts.n, layout: parts.layout, bytes }
    }

    /// The header.
    pub fn header(&self) -> &BundleHeader {
        &self.header
    }
    /// Where each column lies in the bytes.
    pub fn layout(&self) -> &ColumnLayout {
        &self.layout
    }
    /// The bytes this view reads.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
    /// Number of rows.
    #[inline]
    pub fn len(&self) -> usize {
        self.n
    }
    /// Whether the bundle has no rows.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    /// Embedding dimension.
    #[inline]
    pub fn dim(&self) -> usize {
        usize::from(self.header.dim)
    }

    // Row accessors. Each panics if `i >= self.len()`, like slice indexing.

    /// Item id of row `i`.
    #[inline]
    pub fn id(&self, i: usize) -> u64 {
        u64_at(self.bytes, self.layout.ids.0 + 8 * i)
    }
    /// Embedding scale of row `i`.
    #[inline]
    pub fn scale(&self, i: usize) -> f32 {
        f32_at(self.bytes, self.layout.scales.0 + 4 * i)
    }
    /// Retrieval score of row `i`.
    #[inline]
    pub fn retrieval_score(&self, i: usize) -> f32 {
        f32_at(self.bytes, self.layout.retrieval.0 + 4 * i)
    }
    /// Creator of row `i`.
    #[inline]
    pub fn creator(&self, i: usize) -> u32 {
        u32_at(self.bytes, self.layout.creator.0 + 4 * i)
    }
    /// Category of row `i`.
    #[inline]
    pub fn category(&self, i: usize) -> u32 {
        u32_at(self.bytes, self.layout.category.0 + 4 * i)
    }
    /// Region eligibility mask of row `i`.
    #[inline]
    pub fn region_mask(&self, i: usize) -> u32 {
        u32_at(self.bytes, self.layout.region_mask.0 + 4 * i)
    }
    /// Feature values of row `i`.
    #[inline]
    pub fn features(&self, i: usize) -> impl Iterator<Item = f32> + 'a {
        let nf = usize::from(self.header.n_features);
        let start = self.layout.features.0 + 4 * nf * i;
        self.bytes[start..start + 4 * nf].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    }
    /// Feature `j` of row `i`.
    pub fn feature(&self, i: usize, j: usize) -> f32 {
        let nf = usize::from(self.header.n_features);
        assert!(j < nf, "feature index out of range");
        f32_at(self.bytes, self.layout.features.0 + 4 * (nf * i + j))
    }
    /// Source bitmask of row `i`.
    #[inline]
    pub fn source_mask(&self, i: usize) -> u8 {
        self.bytes[self.layout.source_mask.0 + i]
    }
    /// Rank of row `i` within source slot `j`, if that source retrieved it.
    pub fn source_rank(&self, i: usize, j: usize) -> Option<u16> {
        let ns = usize::from(self.header.n_sources);
        assert!(j < ns, "source slot out of range");
        let r = u16_at(self.bytes, self.layout.source_ranks.0 + 2 * (ns * i + j));
        (r != NO_RANK).then_some(r)
    }
    /// int8 embedding of row `i`.
    #[inline]
    pub fn embedding(&self, i: usize) -> &'a [i8] {
        let d = self.dim();
        let start = self.layout.embeddings.0 + d * i;
        bytemuck::cast_slice(&self.bytes[start..start + d])
    }

    /// The embedding of the user a personal bundle was built for, when it
    /// carries one (version 3): `dim` finite values.
    pub fn user_embedding(&self) -> Option<impl Iterator<Item = f32> + 'a> {
        let (start, end) = self.layout.user;
        self.header
            .user_embedding
            .then(|| self.bytes[start..end].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
    }

    /// Row `i` as a [`QuantizedCandidate`], with its features and ranks copied into the given buffers.
    pub fn row<'b>(&self, i: usize, features: &'b mut Vec<f32>, ranks: &'b mut Vec<u16>) -> QuantizedCandidate<'b>
    where
        'a: 'b,
    {
        features.clear();
        features.extend(self.features(i));
        ranks.clear();
        ranks.extend((0..usize::from(self.header.n_sources)).map(|j| self.source_rank(i, j).unwrap_or(NO_RANK)));
        QuantizedCandidate {
            id: self.id(i),
            embedding: self.embedding(i),
            scale: self.scale(i),
            features,
            source_ranks: ranks,
            creator: self.creator(i),
            category: self.category(i),
            region_mask: self.region_mask(i),
            retrieval_score: self.retrieval_score(i),
        }
    }
}

/// Checks the trailer's checksum against the bytes before it (CRC-32 or
/// XXH3, as the version field says), and nothing else but the length and
/// the head (a string shorter than a header and trailer is `TooShort`).
pub fn verify_checksum(bytes: &[u8]) -> Result<(), BundleError> {
    ENVELOPE.check_len(bytes, HEADER_LEN + TRAILER_LEN)?;
    ENVELOPE.check_head(bytes)?;
    Ok(ENVELOPE.check_checksum(bytes)?)
}

#[cfg(test)]
mod tests;
