//! Index snapshot files: a shard's graph saved at shutdown, so the next start
//! loads it instead of rebuilding it (an HNSW build of 400k vectors takes
//! minutes; loading takes a second).
//!
//! A snapshot is only trusted when it provably matches the store. Every item
//! write transaction bumps the store's *item generation*, and a snapshot
//! records the generation it was taken at. A snapshot from another
//! generation (written before a crash, say), with another shard layout or
//! dimension, or whose checksum fails, is refused with a reason: the caller
//! warns and rebuilds the index from the store. A corrupt file never reaches
//! the index library.
//!
//! # Layout, version 2 (little-endian)
//! | offset | type | field |
//! |---|---|---|
//! | 0 | `[u8; 8]` | magic, `b"EWINDEX\0"` |
//! | 8 | `u32` | version ([`VERSION`]) |
//! | 12 | `u32` | shard number |
//! | 16 | `u32` | shard count |
//! | 20 | `u32` | vector dimension |
//! | 24 | `u64` | store item generation |
//! | 32 | `u64` | payload length `n` |
//! | 40 | `[u8; n]` | the shard's own payload ([`super::VectorIndex::snapshot`]) |
//! | 40 + n | `u32` | CRC-32 (IEEE) of every byte before it |
//! | 44 + n | `[u8; 4]` | `b"EWIE"` |

use std::io::Write;
use std::path::{Path, PathBuf};

/// Magic bytes at offset 0.
pub const MAGIC: [u8; 8] = *b"EWINDEX\0";
/// Magic bytes at the end.
pub const END_MAGIC: [u8; 4] = *b"EWIE";
/// The version this code writes and reads. Version 1 held USearch graphs;
/// version 2 holds hnswlib graphs, so a version-1 file is rebuilt, not parsed.
pub const VERSION: u32 = 2;
const HEADER: usize = 40;

/// What a snapshot must match to be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// Shard number.
    pub shard: u32,
    /// Shard count.
    pub shards: u32,
    /// Vector dimension.
    pub dim: u32,
    /// Store item generation.
    pub generation: u64,
}

/// Why a snapshot was not used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum SnapshotError {
    /// There is no snapshot file.
    #[error("{0}: no snapshot")]
    Missing(PathBuf),
    /// The file exists but is not a usable snapshot.
    #[error("{path}: {reason}")]
    Invalid {
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The snapshot is intact but was taken of other data.
    #[error("{path}: taken at store generation {found}, the store is at {expected} (written since)")]
    Stale {
        path: PathBuf,
        /// Generation in the file.
        found: u64,
        /// The store's generation.
        expected: u64,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Encodes a snapshot file.
pub fn encode(e: Expect, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + 8);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&e.shard.to_le_bytes());
    out.extend_from_slice(&e.shards.to_le_bytes());
    out.extend_from_slice(&e.dim.to_le_bytes());
    out.extend_from_slice(&e.generation.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Checks a snapshot file's bytes against what it must match; returns the payload.
pub fn decode<'a>(path: &Path, bytes: &'a [u8], want: Expect) -> Result<&'a [u8], SnapshotError> {
    let invalid = |reason: String| SnapshotError::Invalid { path: path.to_owned(), reason };
    if bytes.len() < HEADER + 8 {
        return Err(invalid(format!("{} bytes is too short for a snapshot", bytes.len())));
    }
    if bytes[..8] != MAGIC {
        return Err(invalid("not an index snapshot (bad magic)".into()));
    }
    let body_end = bytes.len() - 8;
    if bytes[body_end + 4..] != END_MAGIC {
        return Err(invalid("truncated (no end marker)".into()));
    }
    let (stored, actual) = (u32_at(bytes, body_end), crc32fast::hash(&bytes[..body_end]));
    if stored != actual {
        return Err(invalid(format!("checksum mismatch (stored {stored:08x}, computed {actual:08x}): corrupt")));
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err(invalid(format!("format version {version}; this build reads {VERSION}")));
    }
    let found = Expect {
        shard: u32_at(bytes, 12),
        shards: u32_at(bytes, 16),
        dim: u32_at(bytes, 20),
        generation: u64_at(bytes, 24),
    };
    if (found.shard, found.shards, found.dim) != (want.shard, want.shards, want.dim) {
        return Err(invalid(format!(
            "shard {} of {} with d = {}; expected shard {} of {} with d = {}",
            found.shard, found.shards, found.dim, want.shard, want.shards, want.dim
        )));
    }
    if found.generation != want.generation {
        return Err(SnapshotError::Stale { path: path.to_owned(), found: found.generation, expected: want.generation });
    }
    let len = u64_at(bytes, 32);
    if len != (body_end - HEADER) as u64 {
        return Err(invalid(format!("payload length {len} does not match the file")));
    }
    Ok(&bytes[HEADER..body_end])
}

/// The snapshot file of shard `shard` of `shards` of the index `name`.
pub fn path(dir: &Path, name: &str, shard: usize, shards: usize) -> PathBuf {
    dir.join(format!("{name}-{shard}-of-{shards}.ewix"))
}

/// Writes `bytes` to `path` atomically: a temporary file, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io { path: path.to_owned(), source };
    let tmp = path.with_extension("ewix.tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: Expect = Expect { shard: 1, shards: 2, dim: 8, generation: 42 };

    #[test]
    fn round_trip_and_every_refusal() {
        let p = Path::new("x.ewix");
        let bytes = encode(WANT, b"payload");
        assert_eq!(decode(p, &bytes, WANT).expect("valid"), b"payload");

        let stale = decode(p, &bytes, Expect { generation: 43, ..WANT }).expect_err("stale");
        assert!(matches!(stale, SnapshotError::Stale { found: 42, expected: 43, .. }), "{stale}");
        let other = decode(p, &bytes, Expect { shards: 3, ..WANT }).expect_err("layout");
        assert!(other.to_string().contains("expected shard 1 of 3"), "{other}");
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(p, &bad, WANT).is_err(), "a flipped byte at {i} was accepted");
        }
        for n in 0..bytes.len() {
            assert!(decode(p, &bytes[..n], WANT).is_err(), "a file cut at {n} was accepted");
        }
        let mut flipped = bytes.clone();
        flipped[HEADER] ^= 1;
        assert!(decode(p, &flipped, WANT).expect_err("corrupt").to_string().contains("checksum"));
    }
}
