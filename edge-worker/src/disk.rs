//! The regional cache's copy on disk, so that a restarted edge answers its
//! first requests as hits instead of sending every one to the origin (what
//! nginx's disk-backed `proxy_cache` does).
//!
//! Layout of `cache.dir`:
//!
//! | file | what |
//! |---|---|
//! | `objects/<sha256 of the key>` | one stored body, written to a temporary file and renamed into place (not synced: a body a crash loses or tears fails its check when read, and is dropped) |
//! | `index.ewci` | every entry's key, file, size, CRC-32, headers and times: a 16-byte header (`EWCI`, version, CRC-32 of the archive) and an `rkyv` archive |
//!
//! The index is written the same way (temporary file, fsync, rename) every
//! few seconds while entries change and when the edge shuts down. At start-up
//! it is read into an aligned buffer, its CRC checked, and the archive
//! validated by `bytecheck` and read in place (no deserialisation pass): a
//! truncated, bit-flipped or foreign index is discarded with a warning, never
//! trusted, and the edge starts empty. A body is read when a request first
//! asks for its key, and checked against the size and CRC the index holds;
//! a mismatch drops the entry. Files the index does not name (written after
//! the last index, before a crash) are removed at start-up. The bytes on disk
//! are bounded (`cache.disk_bytes`): the oldest entries go first.
//!
//! Times: an entry's age survives a restart through the wall clock (when it
//! was received, ms since the epoch), the only clock that does.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use rkyv::rancor::Error as RkyvError;
use rkyv::util::AlignedVec;

/// The index file's name in `cache.dir`.
pub const INDEX_FILE: &str = "index.ewci";
const MAGIC: &[u8; 4] = b"EWCI";
const VERSION: u32 = 1;
const HEADER: usize = 16;

/// Why the disk store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The index could not be encoded.
    #[error("cannot encode the cache index: {0}")]
    Encode(String),
    /// A stored body does not match its index entry.
    #[error("{path}: {why}")]
    Corrupt {
        /// The file.
        path: String,
        /// What did not match.
        why: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DiskError + '_ {
    move |source| DiskError::Io { path: path.display().to_string(), source }
}

/// One stored response, as the index records it.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Entry {
    /// The cache key (the origin path and query).
    pub key: String,
    /// The body's file name in `objects/`.
    pub file: String,
    /// The body's length.
    pub size: u64,
    /// The body's CRC-32 (IEEE).
    pub crc: u32,
    /// The stored headers, in order (a name may repeat).
    pub headers: Vec<(String, Vec<u8>)>,
    /// The origin's `Age` when received, in seconds.
    pub age_at_receipt_s: u64,
    /// When it was received or last revalidated, ms since the Unix epoch.
    pub received_unix_ms: u64,
}

impl Entry {
    /// The stored headers as a map (names or values that no longer parse are dropped).
    pub fn header_map(&self) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in &self.headers {
            if let (Ok(name), Ok(value)) =
                (reqwest::header::HeaderName::from_bytes(k.as_bytes()), reqwest::header::HeaderValue::from_bytes(v))
            {
                m.append(name, value);
            }
        }
        m
    }

    /// How long ago it was received, by the wall clock (zero if the clock went back).
    pub fn since_received(&self, now_unix_ms: u64) -> Duration {
        Duration::from_millis(now_unix_ms.saturating_sub(self.received_unix_ms))
    }
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct Index {
    entries: Vec<Entry>,
}

/// What [`DiskStore::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Entries the index named and the store kept.
    pub entries: usize,
    /// Bytes of bodies they hold.
    pub bytes: u64,
    /// Why the index was discarded, when it was.
    pub discarded: Option<String>,
    /// Files no entry named, removed.
    pub orphans_removed: usize,
    /// How long reading the index took.
    pub elapsed: Duration,
}

/// The cache's copy on disk.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    max_bytes: u64,
    entries: Mutex<Entries>,
    dirty: AtomicBool,
}

/// The entries and the bytes of bodies they hold, kept together.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, Entry>,
    bytes: u64,
}

impl Entries {
    fn get(&self, key: &str) -> Option<&Entry> {
        self.map.get(key)
    }

    fn insert(&mut self, key: String, e: Entry) {
        self.bytes += e.size;
        if let Some(old) = self.map.insert(key, e) {
            self.bytes -= old.size;
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.map.remove(key)?;
        self.bytes -= e.size;
        Some(e)
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn values(&self) -> impl Iterator<Item = &Entry> {
        self.map.values()
    }
}

/// Now, in ms since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl DiskStore {
    /// Opens (or creates) the store in `dir`, holding at most `max_bytes` of bodies.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Self, OpenReport), DiskError> {
        let started = std::time::Instant::now();
        let objects = dir.join("objects");
        std::fs::create_dir_all(&objects).map_err(io(&objects))?;
        let mut report = OpenReport::default();
        let entries = match read_index(&dir.join(INDEX_FILE)) {
            Ok(list) => list,
            Err(why) => {
                report.discarded = why;
                Vec::new()
            }
        };
        let mut map = Entries { map: HashMap::with_capacity(entries.len()), bytes: 0 };
        for e in entries {
            map.insert(e.key.clone(), e);
        }
        report.bytes = map.bytes;
        // Bodies no entry names: written after the last index, or left by a crash mid-write.
        let named: std::collections::HashSet<&str> = map.values().map(|e| e.file.as_str()).collect();
        for f in std::fs::read_dir(&objects).map_err(io(&objects))? {
            let f = f.map_err(io(&objects))?;
            let name = f.file_name();
            if !named.contains(name.to_string_lossy().as_ref()) {
                let _ = std::fs::remove_file(f.path());
                report.orphans_removed += 1;
            }
        }
        report.entries = map.len();
        report.elapsed = started.elapsed();
        let store = Self { dir: dir.to_path_buf(), max_bytes, entries: Mutex::new(map), dirty: AtomicBool::new(false) };
        store.evict();
        Ok((store, report))
    }

    fn map(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The entry for `key`, if the store holds one.
    pub fn lookup(&self, key: &str) -> Option<Entry> {
        self.map().get(key).cloned()
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of bodies held.
    pub fn bytes(&self) -> u64 {
        self.map().bytes
    }

    /// `e`'s body, checked against its size and CRC; a mismatch drops the entry.
    pub fn read_body(&self, e: &Entry) -> Result<Bytes, DiskError> {
        let path = self.dir.join("objects").join(&e.file);
        let checked = std::fs::read(&path).map_err(io(&path)).and_then(|b| {
            if b.len() as u64 != e.size {
                Err(DiskError::Corrupt {
                    path: path.display().to_string(),
                    why: format!("{} bytes, not {}", b.len(), e.size),
                })
            } else if crc32fast::hash(&b) != e.crc {
                Err(DiskError::Corrupt { path: path.display().to_string(), why: "CRC-32 mismatch".into() })
            } else {
                Ok(Bytes::from(b))
            }
        });
        if checked.is_err() {
            self.remove(&e.key);
        }
        checked
    }

    /// Stores `body` (when it differs from what is held) and its metadata under `key`.
    pub fn put(
        &self,
        key: &str,
        body: &[u8],
        headers: &HeaderMap,
        age_at_receipt: Duration,
        received_unix_ms: u64,
    ) -> Result<(), DiskError> {
        let file = edgewise_core::Digest::of(key.as_bytes()).to_hex();
        let crc = crc32fast::hash(body);
        let same_body = self.lookup(key).is_some_and(|e| e.crc == crc && e.size == body.len() as u64);
        if !same_body {
            // Not synced: a body a crash loses or tears fails its size or CRC
            // check when it is read, and is dropped (it is only a cache).
            let path = self.dir.join("objects").join(&file);
            write_atomically(&path, &[body], false)?;
        }
        let entry = Entry {
            key: key.to_string(),
            file,
            size: body.len() as u64,
            crc,
            headers: headers.iter().map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec())).collect(),
            age_at_receipt_s: age_at_receipt.as_secs(),
            received_unix_ms,
        };
        self.map().insert(key.to_string(), entry);
        self.dirty.store(true, Ordering::Release);
        self.evict();
        Ok(())
    }

    /// Drops `key` and its body.
    pub fn remove(&self, key: &str) -> bool {
        let gone = self.map().remove(key);
        if let Some(e) = &gone {
            let _ = std::fs::remove_file(self.dir.join("objects").join(&e.file));
            self.dirty.store(true, Ordering::Release);
        }
        gone.is_some()
    }

    /// Drops every entry tagged `tag` (`Surrogate-Key` or `Cache-Tag`); returns their keys.
    pub fn purge(&self, tag: &str) -> Vec<String> {
        let doomed: Vec<String> = self
            .map()
            .values()
            .filter(|e| {
                e.headers.iter().any(|(k, v)| {
                    (k.eq_ignore_ascii_case(edgewise_wire::headers::SURROGATE_KEY)
                        || k.eq_ignore_ascii_case(edgewise_wire::headers::CACHE_TAG))
                        && String::from_utf8_lossy(v).split([' ', ',']).any(|t| t == tag)
                })
            })
            .map(|e| e.key.clone())
            .collect();
        for k in &doomed {
            self.remove(k);
        }
        doomed
    }

    /// The oldest entries out until the bodies fit `max_bytes`.
    fn evict(&self) {
        let mut map = self.map();
        if map.bytes <= self.max_bytes {
            return;
        }
        let mut by_age: Vec<(u64, String)> = map.values().map(|e| (e.received_unix_ms, e.key.clone())).collect();
        by_age.sort();
        for (_, key) in by_age {
            if map.bytes <= self.max_bytes {
                break;
            }
            if let Some(e) = map.remove(&key) {
                let _ = std::fs::remove_file(self.dir.join("objects").join(&e.file));
            }
        }
        self.dirty.store(true, Ordering::Release);
    }

    /// Writes the index when entries changed since the last write; returns whether it wrote.
    pub fn flush(&self) -> Result<bool, DiskError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let index = Index { entries: self.map().values().cloned().collect() };
        let archive = rkyv::to_bytes::<RkyvError>(&index).map_err(|e| DiskError::Encode(e.to_string()))?;
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(MAGIC);
        header[4..8].copy_from_slice(&VERSION.to_le_bytes());
        header[8..12].copy_from_slice(&crc32fast::hash(&archive).to_le_bytes());
        let written = write_atomically(&self.dir.join(INDEX_FILE), &[&header, &archive], true);
        if written.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        written.map(|()| true)
    }
}

/// The entries of the index at `path`; `Err(None)` when there is none,
/// `Err(Some(why))` when it cannot be trusted.
fn read_index(path: &Path) -> Result<Vec<Entry>, Option<String>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(format!("{}: {e}", path.display()))),
    };
    let mut bytes = AlignedVec::<16>::new();
    bytes.extend_from_reader(&mut file).map_err(|e| Some(format!("{}: {e}", path.display())))?;
    let why = |w: &str| Some(format!("{}: {w}; the index is discarded and the cache starts empty", path.display()));
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err(why("not an Edgewise cache index"));
    }
    let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if version != VERSION {
        return Err(why(&format!("index version {version}, this edge reads {VERSION}")));
    }
    let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let archive = &bytes[HEADER..];
    if crc32fast::hash(archive) != crc {
        return Err(why("CRC-32 mismatch (truncated or damaged)"));
    }
    let index = rkyv::access::<ArchivedIndex, RkyvError>(archive).map_err(|e| why(&format!("invalid archive: {e}")))?;
    let mut out = Vec::with_capacity(index.entries.len());
    for e in index.entries.iter() {
        let file = e.file.as_str();
        if file.len() != 64 || !file.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(why(&format!("entry {:?} names the file {file:?}", e.key.as_str())));
        }
        out.push(Entry {
            key: e.key.as_str().to_string(),
            file: file.to_string(),
            size: e.size.to_native(),
            crc: e.crc.to_native(),
            headers: e.headers.iter().map(|t| (t.0.as_str().to_string(), t.1.as_slice().to_vec())).collect(),
            age_at_receipt_s: e.age_at_receipt_s.to_native(),
            received_unix_ms: e.received_unix_ms.to_native(),
        });
    }
    Ok(out)
}

/// Writes `parts` to a temporary file beside `path` (synced first when `sync`)
/// and renames it into place: a reader sees the old file or the new one, whole.
fn write_atomically(path: &Path, parts: &[&[u8]], sync: bool) -> Result<(), DiskError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        for p in parts {
            f.write_all(p)?;
        }
        if sync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ew-disk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn headers(tag: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("cache-control", "public, s-maxage=60".parse().expect("value"));
        h.insert("surrogate-key", format!("bundle {tag}").parse().expect("value"));
        h
    }

    #[test]
    fn entries_survive_a_reopen_and_bodies_are_checked() {
        let d = dir("reopen");
        let (s, r) = DiskStore::open(&d, 1 << 20).expect("open");
        assert_eq!((r.entries, r.discarded.clone()), (0, None));
        s.put("/v1/regions/3/bundle", b"three", &headers("region-3"), Duration::from_secs(2), 1_000).expect("put");
        s.put("/v1/regions/4/bundle", b"four", &headers("region-4"), Duration::ZERO, 2_000).expect("put");
        assert!(s.flush().expect("flush"));
        assert!(!s.flush().expect("flush"), "nothing changed since");
        drop(s);
        let (s, r) = DiskStore::open(&d, 1 << 20).expect("reopen");
        assert_eq!((r.entries, r.bytes, r.orphans_removed), (2, 9, 0));
        let e = s.lookup("/v1/regions/3/bundle").expect("kept");
        assert_eq!(s.read_body(&e).expect("body").as_ref(), b"three");
        assert_eq!((e.age_at_receipt_s, e.received_unix_ms), (2, 1_000));
        assert_eq!(e.header_map().get("surrogate-key").map(|v| v.as_bytes()), Some(&b"bundle region-3"[..]));
        // A body changed on disk behind the index's back is refused and dropped.
        let four = s.lookup("/v1/regions/4/bundle").expect("kept");
        std::fs::write(d.join("objects").join(&four.file), b"FOUR").expect("write");
        assert!(matches!(s.read_body(&four), Err(DiskError::Corrupt { .. })));
        assert!(s.lookup("/v1/regions/4/bundle").is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_or_foreign_index_is_discarded_and_orphans_removed() {
        let d = dir("damaged");
        let (s, _) = DiskStore::open(&d, 1 << 20).expect("open");
        s.put("/a", b"aaaa", &headers("a"), Duration::ZERO, 1).expect("put");
        s.flush().expect("flush");
        drop(s);
        let index = d.join(INDEX_FILE);
        let good = std::fs::read(&index).expect("index");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() - 7].to_vec()),
            ("bit-flipped", {
                let mut b = good.clone();
                let at = b.len() / 2;
                b[at] ^= 0x10;
                b
            }),
            ("foreign", b"<html>not an index</html>".to_vec()),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            std::fs::write(&index, &bytes).expect("write");
            let (s, r) = DiskStore::open(&d, 1 << 20).expect("the store still opens");
            assert_eq!(s.len(), 0, "{what}");
            assert!(r.discarded.as_deref().is_some_and(|w| w.contains("discarded")), "{what}: {r:?}");
        }
        assert_eq!(std::fs::read_dir(d.join("objects")).expect("dir").count(), 0, "the orphaned body is gone");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn bytes_are_bounded_oldest_first_and_purges_follow_tags() {
        let d = dir("bound");
        let (s, _) = DiskStore::open(&d, 10).expect("open");
        s.put("/old", b"1234", &headers("x"), Duration::ZERO, 1).expect("put");
        s.put("/mid", b"1234", &headers("y"), Duration::ZERO, 2).expect("put");
        s.put("/new", b"1234", &headers("x"), Duration::ZERO, 3).expect("put");
        assert!(s.lookup("/old").is_none(), "the oldest went");
        assert_eq!(s.bytes(), 8);
        assert_eq!(s.purge("x"), vec!["/new".to_string()]);
        assert!(s.lookup("/mid").is_some());
        let _ = std::fs::remove_dir_all(&d);
    }
}
