//! The envelope every Edgewise binary format shares, written once.
//!
//! Five formats travel between the origin, the edge, the guest and the
//! browser: the candidate bundle (`EWBUNDLE`), the model (`EWMODEL\0`), the
//! session state (`EWSS`), the ranking context (`EWCX`) and the ranking result
//! (`EWRS`). Each starts with a magic and a version, and the ones that are
//! stored end with a 32-bit checksum of every byte before it, optionally
//! followed by an end magic. The checksum is CRC-32 (IEEE), except from the
//! version an envelope names in [`Envelope::xxh3_from`] on, where it is the
//! low 32 bits of XXH3-64 (seed 0): the candidate bundle's version 2, whose
//! checksum a wasm guest verifies about six times faster (wasm has no
//! carry-less multiply for CRC, and XXH3 is built from the 64-bit lanes
//! simd128 has). An [`Envelope`] describes one such format; it
//! writes and checks the magic, the version range and the trailer, and
//! [`Reader`] reads the body with every read bounds-checked. Every decoder
//! reports envelope and field problems as one [`FormatError`].

use alloc::vec::Vec;

/// What a format's framing looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// Name used in errors: `"bundle"`, `"model"`, `"session"`, `"context"`, `"result"`.
    pub name: &'static str,
    /// Magic at offset 0.
    pub magic: &'static [u8],
    /// The version this build writes.
    pub version: u16,
    /// The oldest version this build reads.
    pub oldest: u16,
    /// Width of the version field right after the magic.
    pub version_width: VersionWidth,
    /// Whether a 32-bit checksum of everything before it ends the encoding.
    pub crc: bool,
    /// The first version whose checksum is XXH3-64's low 32 bits rather than
    /// CRC-32 (`None`: every version uses CRC-32).
    pub xxh3_from: Option<u16>,
    /// An end magic after the checksum.
    pub end_magic: Option<[u8; 4]>,
}

/// How many bytes the version field takes (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionWidth {
    /// One byte (session, context, result).
    U8,
    /// Two bytes (bundle, model).
    U16,
}

impl VersionWidth {
    /// The width in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::U16 => 2,
        }
    }
}

/// Why bytes are not a valid encoding of a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum FormatError {
    /// Shorter than the format's fixed parts.
    #[error("{format} too short: {len} bytes, at least {min} needed")]
    TooShort { format: &'static str, len: usize, min: usize },
    /// The bytes do not start with the format's magic.
    #[error("not an Edgewise {format} (bad magic)")]
    BadMagic { format: &'static str },
    /// A version this build cannot read.
    #[error("{format} version {found} is not supported (this build reads {oldest}..={newest})")]
    UnsupportedVersion {
        format: &'static str,
        /// Version in the bytes.
        found: u16,
        oldest: u16,
        newest: u16,
    },
    /// The end magic is wrong.
    #[error("bad {format} trailer magic")]
    BadTrailer { format: &'static str },
    /// The stored CRC-32 does not match the bytes.
    #[error("{format} checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { format: &'static str, stored: u32, computed: u32 },
    /// The header-length field is wrong for the version.
    #[error("{format} header length {found} is invalid (expected {expected})")]
    BadHeaderLen { format: &'static str, found: u32, expected: u32 },
    /// Flag bits the version does not define.
    #[error("unknown {format} flag bits {flags:#06x}")]
    UnknownFlags { format: &'static str, flags: u16 },
    /// A reserved or padding byte is not zero (every value has one encoding).
    #[error("{format}: reserved or padding byte at offset {offset} is not zero")]
    ReservedNonZero {
        format: &'static str,
        /// Offset of the byte.
        offset: usize,
    },
    /// A count or parameter outside its allowed range.
    #[error("{format}: {field} = {value} is out of range (allowed {min}..={max})")]
    OutOfRange { format: &'static str, field: &'static str, value: u64, min: u64, max: u64 },
    /// The length does not match the shape the header describes.
    #[error("{format} length is {actual} bytes but its header describes {expected}")]
    LengthMismatch {
        format: &'static str,
        /// Implied by the header.
        expected: u64,
        actual: u64,
    },
    /// The bytes ended inside a field.
    #[error("{format} truncated while reading {what}")]
    Truncated {
        format: &'static str,
        /// The field being read.
        what: &'static str,
    },
    /// Bytes after the last field.
    #[error("{format}: {extra} unexpected bytes after the last field")]
    TrailingBytes { format: &'static str, extra: usize },
    /// NaN or infinity where a finite value is required.
    #[error("{format}: non-finite value in {what}")]
    NonFinite { format: &'static str, what: &'static str },
    /// Any other rule of the format.
    #[error("malformed {format}: {reason}")]
    Malformed { format: &'static str, reason: &'static str },
}

impl Envelope {
    /// Bytes taken by the magic and the version.
    pub const fn head_len(&self) -> usize {
        self.magic.len() + self.version_width.bytes()
    }

    /// Bytes taken by the CRC and the end magic.
    pub const fn trailer_len(&self) -> usize {
        (if self.crc { 4 } else { 0 }) + if self.end_magic.is_some() { 4 } else { 0 }
    }

    /// An error about a rule of this format.
    pub const fn malformed(&self, reason: &'static str) -> FormatError {
        FormatError::Malformed { format: self.name, reason }
    }

    /// Fails unless `bytes` has at least `min` bytes.
    pub fn check_len(&self, bytes: &[u8], min: usize) -> Result<(), FormatError> {
        if bytes.len() < min { Err(FormatError::TooShort { format: self.name, len: bytes.len(), min }) } else { Ok(()) }
    }

    /// Checks the magic and the version; returns the version.
    pub fn check_head(&self, bytes: &[u8]) -> Result<u16, FormatError> {
        self.check_len(bytes, self.head_len())?;
        if !bytes.starts_with(self.magic) {
            return Err(FormatError::BadMagic { format: self.name });
        }
        // check_len above guaranteed the version field's bytes.
        let found = self.version_of(bytes).unwrap_or(0);
        if !(self.oldest..=self.version).contains(&found) {
            return Err(FormatError::UnsupportedVersion {
                format: self.name,
                found,
                oldest: self.oldest,
                newest: self.version,
            });
        }
        Ok(found)
    }

    /// Checks the end magic, if the format has one.
    pub fn check_end_magic(&self, bytes: &[u8]) -> Result<(), FormatError> {
        match self.end_magic {
            Some(m) if !bytes.ends_with(&m) => Err(FormatError::BadTrailer { format: self.name }),
            _ => Ok(()),
        }
    }

    /// The checksum of `body` in an encoding of `version`: CRC-32 (IEEE), or
    /// from [`Envelope::xxh3_from`] on the low 32 bits of XXH3-64 (seed 0).
    pub fn checksum(&self, version: u16, body: &[u8]) -> u32 {
        match self.xxh3_from {
            // The low half, by definition of the format.
            Some(from) if version >= from => xxhash_rust::xxh3::xxh3_64(body) as u32,
            _ => crc32fast::hash(body),
        }
    }

    /// The version field of `bytes` (whose head [`Envelope::check_head`] accepted, or at least long enough to hold it).
    fn version_of(&self, bytes: &[u8]) -> Option<u16> {
        let at = self.magic.len();
        match self.version_width {
            VersionWidth::U8 => bytes.get(at).map(|&v| u16::from(v)),
            VersionWidth::U16 => bytes.get(at..at + 2).map(|v| u16::from_le_bytes([v[0], v[1]])),
        }
    }

    /// Checks the checksum in the trailer against every byte before it (the
    /// algorithm the encoding's version field names).
    pub fn check_checksum(&self, bytes: &[u8]) -> Result<(), FormatError> {
        if !self.crc {
            return Ok(());
        }
        let body = bytes.len().checked_sub(self.trailer_len()).filter(|&b| b >= self.head_len());
        let (Some(body), Some(version)) = (body, self.version_of(bytes)) else {
            return Err(FormatError::TooShort {
                format: self.name,
                len: bytes.len(),
                min: self.head_len() + self.trailer_len(),
            });
        };
        let stored = u32_at(bytes, body);
        let computed = self.checksum(version, &bytes[..body]);
        if stored == computed {
            Ok(())
        } else {
            Err(FormatError::ChecksumMismatch { format: self.name, stored, computed })
        }
    }

    /// Rewrites the checksum in the trailer of `data` to match the bytes
    /// before it, by the algorithm of the version written in `data` (for
    /// fuzzing and property tests, so that mutations reach the checks behind
    /// the checksum). Returns whether it did: not for a format without a
    /// checksum, nor for bytes too short to hold a head and a trailer.
    pub fn reseal(&self, data: &mut [u8]) -> bool {
        let body = data.len().checked_sub(self.trailer_len()).filter(|&b| self.crc && b >= self.head_len());
        let (Some(body), Some(version)) = (body, self.version_of(data)) else {
            return false;
        };
        let sum = self.checksum(version, &data[..body]);
        data[body..body + 4].copy_from_slice(&sum.to_le_bytes());
        true
    }

    /// This envelope, writing `version` instead of the newest (readers of
    /// this build accept any version from `oldest` on).
    pub const fn writing(self, version: u16) -> Self {
        Self { version, ..self }
    }

    /// Appends the magic and the version this build writes; returns where the encoding starts.
    pub fn write_head(&self, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        out.extend_from_slice(self.magic);
        match self.version_width {
            // A one-byte format's version constant is below 256 (the envelope constants are ours).
            VersionWidth::U8 => out.push(u8::try_from(self.version).unwrap_or(u8::MAX)),
            VersionWidth::U16 => out.extend_from_slice(&self.version.to_le_bytes()),
        }
        start
    }

    /// Appends the trailer over the encoding that began at `start` (written
    /// by [`Envelope::write_head`], so of version `self.version`).
    pub fn write_trailer(&self, out: &mut Vec<u8>, start: usize) {
        if self.crc {
            let sum = self.checksum(self.version, &out[start..]);
            out.extend_from_slice(&sum.to_le_bytes());
        }
        if let Some(m) = self.end_magic {
            out.extend_from_slice(&m);
        }
    }

    /// A reader over `bytes[at..end]` that reports errors as this format's.
    pub fn reader<'a>(&self, bytes: &'a [u8], at: usize, end: usize) -> Reader<'a> {
        let end = end.min(bytes.len());
        Reader { b: &bytes[..end], at: at.min(end), format: self.name }
    }
}

/// Little-endian `u16` at `at`. The caller has checked the bounds.
#[inline]
pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Little-endian `u32` at `at`. The caller has checked the bounds.
#[inline]
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Little-endian `u64` at `at`. The caller has checked the bounds.
#[inline]
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Little-endian `f32` at `at`. The caller has checked the bounds.
#[inline]
pub(crate) fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_bits(u32_at(b, at))
}

/// Reads little-endian fields in order; every read is bounds-checked and fails
/// with [`FormatError::Truncated`] naming the field.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
    format: &'static str,
}

impl<'a> Reader<'a> {
    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], FormatError> {
        let truncated = FormatError::Truncated { format: self.format, what };
        let end = self.at.checked_add(n).ok_or(truncated.clone())?;
        let s = self.b.get(self.at..end).ok_or(truncated)?;
        self.at = end;
        Ok(s)
    }

    /// A byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.take(1, what)?[0])
    }

    /// A `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16_at(self.take(2, what)?, 0))
    }

    /// A `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32_at(self.take(4, what)?, 0))
    }

    /// A `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64_at(self.take(8, what)?, 0))
    }

    /// A finite `f32`.
    pub fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        let x = f32::from_bits(self.u32(what)?);
        if x.is_finite() { Ok(x) } else { Err(FormatError::NonFinite { format: self.format, what }) }
    }

    /// `count` finite `f32`s; the length is checked before anything is allocated.
    pub fn f32s(&mut self, count: usize, what: &'static str) -> Result<Vec<f32>, FormatError> {
        let n = count.checked_mul(4).ok_or(FormatError::Truncated { format: self.format, what })?;
        let bytes = self.take(n, what)?;
        let mut v = Vec::with_capacity(count);
        for c in bytes.chunks_exact(4) {
            let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if !x.is_finite() {
                return Err(FormatError::NonFinite { format: self.format, what });
            }
            v.push(x);
        }
        Ok(v)
    }

    /// Where the next read starts.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Fails unless every byte has been read.
    pub fn finish(&self) -> Result<(), FormatError> {
        match self.b.len() - self.at {
            0 => Ok(()),
            extra => Err(FormatError::TrailingBytes { format: self.format, extra }),
        }
    }
}

/// Fails with [`FormatError::OutOfRange`] unless `min <= value <= max`.
pub fn check_range(
    format: &'static str,
    field: &'static str,
    value: u64,
    min: u64,
    max: u64,
) -> Result<(), FormatError> {
    if value < min || value > max { Err(FormatError::OutOfRange { format, field, value, min, max }) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const TEST: Envelope = Envelope {
        name: "test",
        magic: b"EWTT",
        version: 3,
        oldest: 2,
        version_width: VersionWidth::U16,
        crc: true,
        xxh3_from: None,
        end_magic: Some(*b"EWTE"),
    };

    fn encode(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0xAA];
        let start = TEST.write_head(&mut out);
        out.extend_from_slice(body);
        TEST.write_trailer(&mut out, start);
        out.split_off(1)
    }

    #[test]
    fn round_trip_and_every_envelope_error() {
        let b = encode(&[1, 2, 3]);
        assert_eq!(b.len(), TEST.head_len() + 3 + TEST.trailer_len());
        assert_eq!(TEST.check_head(&b), Ok(3));
        assert_eq!(TEST.check_end_magic(&b), Ok(()));
        assert_eq!(TEST.check_checksum(&b), Ok(()));
        assert!(matches!(TEST.check_head(&b[..3]), Err(FormatError::TooShort { .. })));
        let mut m = b.clone();
        m[0] ^= 1;
        assert_eq!(TEST.check_head(&m), Err(FormatError::BadMagic { format: "test" }));
        let mut v = b.clone();
        v[4] = 1;
        assert!(matches!(
            TEST.check_head(&v),
            Err(FormatError::UnsupportedVersion { found: 1, oldest: 2, newest: 3, .. })
        ));
        let mut t = b.clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(TEST.check_end_magic(&t), Err(FormatError::BadTrailer { format: "test" }));
        let mut c = b.clone();
        c[6] ^= 1;
        assert!(matches!(TEST.check_checksum(&c), Err(FormatError::ChecksumMismatch { .. })));
        assert!(TEST.reseal(&mut c));
        assert_eq!(TEST.check_checksum(&c), Ok(()), "resealed");
        assert!(!TEST.reseal(&mut [0u8; 3]), "too short for a trailer");
    }

    #[test]
    fn reader_is_bounds_checked() {
        let b = [1u8, 0, 0, 0, 0, 0, 0x80, 0x7f];
        let mut r = TEST.reader(&b, 0, b.len());
        assert_eq!(r.u32("a"), Ok(1));
        assert_eq!(r.f32("b"), Err(FormatError::NonFinite { format: "test", what: "b" }));
        assert_eq!(r.u8("c"), Err(FormatError::Truncated { format: "test", what: "c" }));
        let mut r = TEST.reader(&b, 0, b.len());
        assert!(r.f32s(usize::MAX, "huge").is_err(), "an impossible count fails before allocating");
        assert_eq!(r.take(7, "x").map(<[u8]>::len), Ok(7));
        assert_eq!(r.finish(), Err(FormatError::TrailingBytes { format: "test", extra: 1 }));
        // A reader past the end reads nothing rather than panicking.
        let mut r = TEST.reader(&b, 100, 200);
        assert!(r.u8("y").is_err());
    }
}
