//! Sharded nearest-neighbour search by inner product.
//!
//! Items are assigned to one of `S` shards by a hash of their id. A query
//! scatters to every shard (in parallel, on rayon's pool) and the partial
//! top-k lists are merged. The eligibility filter (region, deletions, seen) is
//! applied *during* each shard's search, so a filtered query still returns k
//! results whenever k eligible items exist.
//!
//! Deletes are soft: the entry is tombstoned. When a shard's tombstones pass
//! `rebuild_deleted_ratio`, [`ShardedIndex::rebuild_shard`] builds a fresh shard
//! from the live entries without blocking queries, replays the writes that
//! arrived meanwhile, and swaps it in atomically.
//!
//! [`FlatIndex`] is the exact index: tests and recall measurements compare
//! against it.

use std::collections::{BinaryHeap, HashMap};
use std::path::Path;
use std::sync::{Mutex, RwLock};

use rayon::prelude::*;

pub mod hnsw;
pub mod snapshot;

/// One search hit: item id and inner-product score.
pub type Hit = (u64, f32);

/// The eligibility test applied during search: item id and region mask.
pub type Filter<'a> = dyn Fn(u64, u32) -> bool + Sync + 'a;

/// A single shard's index.
pub trait VectorIndex: Send + Sync {
    /// Adds or replaces a vector with its region mask.
    fn add(&mut self, id: u64, v: &[f32], mask: u32);
    /// Adds or replaces many vectors (start-up loads and rebuilds); an
    /// implementation may insert them in parallel.
    fn bulk_add(&mut self, entries: Vec<(u64, Vec<f32>, u32)>) {
        for (id, v, mask) in entries {
            self.add(id, &v, mask);
        }
    }
    /// Soft-deletes a vector; unknown ids are ignored.
    fn remove(&mut self, id: u64);
    /// The best `k` live entries for which `filter(id, mask)` holds, best first.
    fn search(&self, q: &[f32], k: usize, filter: &Filter<'_>) -> Vec<Hit>;
    /// The best `k` live entries, best first, with no filter to call.
    fn search_unfiltered(&self, q: &[f32], k: usize) -> Vec<Hit> {
        self.search(q, k, &|_, _| true)
    }
    /// The shard's state as bytes for a snapshot file, or `None` if this kind
    /// of index is cheaper to rebuild than to save.
    fn snapshot(&self) -> Option<Result<Vec<u8>, String>> {
        None
    }
    /// Live entries.
    fn len(&self) -> usize;
    /// Tombstoned entries still taking space.
    fn deleted(&self) -> usize;
    /// Whether no live entries remain.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Min-heap entry ordered by score, then by id (the larger id loses ties).
#[derive(PartialEq)]
struct Worst(f32, u64);
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Worst {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        // Reversed: the heap's top is the worst hit kept so far.
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

/// Keeps the best `k` hits seen; ties go to the smaller id.
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
}

impl TopK {
    /// An empty collector.
    pub fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1) }
    }
    /// Offers a hit.
    pub fn push(&mut self, id: u64, score: f32) {
        if self.k == 0 || score.is_nan() {
            return;
        }
        if self.heap.len() < self.k {
            self.heap.push(Worst(score, id));
        } else if let Some(w) = self.heap.peek()
            && (score > w.0 || (score == w.0 && id < w.1))
        {
            self.heap.pop();
            self.heap.push(Worst(score, id));
        }
    }
    /// The hits, best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<Hit> = self.heap.into_iter().map(|Worst(s, id)| (id, s)).collect();
        sort_hits(&mut v);
        v
    }
}

/// Sorts hits best first (score descending, then id ascending).
pub fn sort_hits(v: &mut [Hit]) {
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The best `k` of the shards' hits.
fn merge(k: usize, parts: &[Vec<Hit>]) -> Vec<Hit> {
    let mut top = TopK::new(k);
    for &(id, score) in parts.iter().flatten() {
        top.push(id, score);
    }
    top.into_sorted()
}

/// Exact search by scanning every live vector.
#[derive(Debug, Clone)]
pub struct FlatIndex {
    dim: usize,
    ids: Vec<u64>,
    data: Vec<f32>,
    masks: Vec<u32>,
    live: Vec<bool>,
    slot: HashMap<u64, usize>,
    deleted: usize,
}

impl FlatIndex {
    /// An empty index of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ids: Vec::new(),
            data: Vec::new(),
            masks: Vec::new(),
            live: Vec::new(),
            slot: HashMap::new(),
            deleted: 0,
        }
    }
}

impl VectorIndex for FlatIndex {
    fn add(&mut self, id: u64, v: &[f32], mask: u32) {
        if v.len() != self.dim {
            return;
        }
        if let Some(&s) = self.slot.get(&id) {
            self.data[s * self.dim..(s + 1) * self.dim].copy_from_slice(v);
            self.masks[s] = mask;
            return;
        }
        self.slot.insert(id, self.ids.len());
        self.ids.push(id);
        self.data.extend_from_slice(v);
        self.masks.push(mask);
        self.live.push(true);
    }

    fn remove(&mut self, id: u64) {
        if let Some(s) = self.slot.remove(&id) {
            self.live[s] = false;
            self.deleted += 1;
        }
    }

    fn search(&self, q: &[f32], k: usize, filter: &Filter<'_>) -> Vec<Hit> {
        let mut top = TopK::new(k);
        if q.len() != self.dim {
            return Vec::new();
        }
        for (s, &id) in self.ids.iter().enumerate() {
            if self.live[s] && filter(id, self.masks[s]) {
                top.push(id, dot(q, &self.data[s * self.dim..(s + 1) * self.dim]));
            }
        }
        top.into_sorted()
    }

    fn len(&self) -> usize {
        self.slot.len()
    }

    fn deleted(&self) -> usize {
        self.deleted
    }
}

/// A write to replay onto a shard that was rebuilt while it happened.
#[derive(Debug, Clone)]
enum Op {
    Add(u64, Vec<f32>, u32),
    Remove(u64),
}

struct Slot {
    current: RwLock<Box<dyn VectorIndex>>,
    /// `Some` while a rebuild runs: the writes it must replay.
    pending: Mutex<Option<Vec<Op>>>,
}

/// Builds an empty shard index.
pub type Factory = dyn Fn() -> Box<dyn VectorIndex> + Send + Sync;
/// Builds a shard from its snapshot payload.
pub type Restorer = dyn Fn(&[u8]) -> Result<Box<dyn VectorIndex>, String> + Send + Sync;

/// `S` shards behind one search interface.
pub struct ShardedIndex {
    slots: Vec<Slot>,
    factory: Box<Factory>,
    restorer: Option<Box<Restorer>>,
    dim: usize,
}

impl std::fmt::Debug for ShardedIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedIndex").field("shards", &self.slots.len()).field("dim", &self.dim).finish()
    }
}

/// The shard an id belongs to (SplitMix64 finaliser, so sequential ids spread evenly).
pub fn shard_of(id: u64, shards: usize) -> usize {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % shards.max(1) as u64) as usize
}

pub(crate) fn poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    // A panic while holding a shard lock cannot leave the index half-written
    // in a way that breaks searching (writes are single calls), so carry on.
    e.into_inner()
}

impl ShardedIndex {
    /// `shards` empty shards made by `factory`, for vectors of dimension `dim`.
    pub fn new(shards: usize, dim: usize, factory: Box<Factory>) -> Self {
        let slots =
            (0..shards.max(1)).map(|_| Slot { current: RwLock::new(factory()), pending: Mutex::new(None) }).collect();
        Self { slots, factory, restorer: None, dim }
    }

    /// Exact (flat) shards.
    pub fn flat(shards: usize, dim: usize) -> Self {
        Self::new(shards, dim, Box::new(move || Box::new(FlatIndex::new(dim))))
    }

    /// HNSW (hnswlib) shards.
    pub fn hnsw(shards: usize, dim: usize, params: hnsw::HnswParams) -> Result<Self, String> {
        // Fail early, here, rather than inside the factory.
        hnsw::HnswIndex::new(dim, params)?;
        let mut me = Self::new(
            shards,
            dim,
            Box::new(move || match hnsw::HnswIndex::new(dim, params) {
                Ok(i) => Box::new(i) as Box<dyn VectorIndex>,
                Err(e) => {
                    tracing::error!(error = %e, "falling back to an exact shard");
                    Box::new(FlatIndex::new(dim))
                }
            }),
        );
        me.restorer = Some(Box::new(move |payload| {
            hnsw::HnswIndex::restore(dim, params, payload).map(|i| Box::new(i) as Box<dyn VectorIndex>)
        }));
        Ok(me)
    }

    fn expect(&self, shard: usize, generation: u64) -> snapshot::Expect {
        snapshot::Expect { shard: shard as u32, shards: self.slots.len() as u32, dim: self.dim as u32, generation }
    }

    /// Whether this kind of index is saved to snapshots (exact shards are not).
    pub fn snapshots_supported(&self) -> bool {
        self.restorer.is_some()
    }

    /// Saves every shard to `dir` as `{name}-{i}-of-{S}.ewix`, stamped with the
    /// store's item `generation`; returns the bytes written. Other snapshot
    /// files of `name` (another shard count) are removed.
    pub fn save_snapshots(&self, dir: &Path, name: &str, generation: u64) -> Result<u64, snapshot::SnapshotError> {
        if !self.snapshots_supported() {
            return Ok(0);
        }
        std::fs::create_dir_all(dir).map_err(|source| snapshot::SnapshotError::Io { path: dir.to_owned(), source })?;
        let mut written = 0u64;
        let mut keep = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let path = snapshot::path(dir, name, i, self.slots.len());
            let payload = slot.current.read().unwrap_or_else(poisoned).snapshot();
            let Some(payload) = payload else { continue };
            let payload = payload.map_err(|reason| snapshot::SnapshotError::Invalid { path: path.clone(), reason })?;
            let bytes = snapshot::encode(self.expect(i, generation), &payload);
            snapshot::write_atomic(&path, &bytes)?;
            written += bytes.len() as u64;
            keep.push(path);
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let p = e.path();
                let ours = p.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with(&format!("{name}-")));
                if ours && !keep.contains(&p) {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        Ok(written)
    }

    /// Replaces every shard with its snapshot in `dir`, all or nothing: if any
    /// shard's file is missing, stale, corrupt or of another layout, nothing
    /// changes and the reason is returned (the caller rebuilds instead).
    pub fn load_snapshots(&self, dir: &Path, name: &str, generation: u64) -> Result<(), snapshot::SnapshotError> {
        let Some(restore) = &self.restorer else {
            return Err(snapshot::SnapshotError::Missing(dir.join(name)));
        };
        let mut loaded = Vec::with_capacity(self.slots.len());
        for i in 0..self.slots.len() {
            let path = snapshot::path(dir, name, i, self.slots.len());
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(snapshot::SnapshotError::Missing(path));
                }
                Err(source) => return Err(snapshot::SnapshotError::Io { path, source }),
            };
            let payload = snapshot::decode(&path, &bytes, self.expect(i, generation))?;
            loaded.push(restore(payload).map_err(|reason| snapshot::SnapshotError::Invalid { path, reason })?);
        }
        for (slot, shard) in self.slots.iter().zip(loaded) {
            *slot.current.write().unwrap_or_else(poisoned) = shard;
        }
        Ok(())
    }

    /// Adds many vectors at once, building every shard in parallel.
    pub fn bulk_add(&self, entries: Vec<(u64, Vec<f32>, u32)>) {
        let mut parts: Vec<Vec<(u64, Vec<f32>, u32)>> = (0..self.slots.len()).map(|_| Vec::new()).collect();
        for e in entries {
            parts[shard_of(e.0, self.slots.len())].push(e);
        }
        self.slots.par_iter().zip(parts).for_each(|(slot, part)| {
            let _pending = slot.pending.lock().unwrap_or_else(poisoned);
            slot.current.write().unwrap_or_else(poisoned).bulk_add(part);
        });
    }

    /// Empties every shard.
    pub fn clear(&self) {
        for slot in &self.slots {
            *slot.current.write().unwrap_or_else(poisoned) = (self.factory)();
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.slots.len()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Adds or replaces a vector with its region mask.
    pub fn add(&self, id: u64, v: &[f32], mask: u32) {
        self.write(id, Op::Add(id, v.to_vec(), mask));
    }

    /// Soft-deletes a vector.
    pub fn remove(&self, id: u64) {
        self.write(id, Op::Remove(id));
    }

    fn write(&self, id: u64, op: Op) {
        let slot = &self.slots[shard_of(id, self.slots.len())];
        let mut pending = slot.pending.lock().unwrap_or_else(poisoned);
        let mut cur = slot.current.write().unwrap_or_else(poisoned);
        match &op {
            Op::Add(id, v, m) => cur.add(*id, v, *m),
            Op::Remove(id) => cur.remove(*id),
        }
        if let Some(log) = pending.as_mut() {
            log.push(op);
        }
    }

    /// Scatter-gather search: the best `k` entries with `filter(id, mask)` over all shards.
    pub fn search(&self, q: &[f32], k: usize, filter: &Filter<'_>) -> Vec<Hit> {
        self.gather(k, |shard| shard.search(q, k, filter))
    }

    /// [`search`](Self::search) for several queries at once: each (query,
    /// shard) pair is one parallel task, rather than a parallel loop over the
    /// queries each running its own over the shards. Returns each query's
    /// best `k`, exactly as `search` would.
    pub fn search_many(&self, queries: &[&[f32]], k: usize, filter: &Filter<'_>) -> Vec<Vec<Hit>> {
        let shards = self.slots.len();
        let parts: Vec<Vec<Hit>> = (0..queries.len() * shards)
            .into_par_iter()
            .map(|t| {
                let (q, s) = (queries[t / shards], &self.slots[t % shards]);
                s.current.read().unwrap_or_else(poisoned).search(q, k, filter)
            })
            .collect();
        parts.chunks(shards.max(1)).map(|per_shard| merge(k, per_shard)).collect()
    }

    /// Scatter-gather search with no filter.
    pub fn search_unfiltered(&self, q: &[f32], k: usize) -> Vec<Hit> {
        self.gather(k, |shard| shard.search_unfiltered(q, k))
    }

    /// Runs `search` on every shard in parallel and merges the best `k`.
    fn gather(&self, k: usize, search: impl Fn(&dyn VectorIndex) -> Vec<Hit> + Sync) -> Vec<Hit> {
        let parts: Vec<Vec<Hit>> =
            self.slots.par_iter().map(|s| search(s.current.read().unwrap_or_else(poisoned).as_ref())).collect();
        merge(k, &parts)
    }

    /// Live entries over all shards.
    pub fn len(&self) -> usize {
        self.slots.iter().map(|s| s.current.read().unwrap_or_else(poisoned).len()).sum()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shards whose share of tombstones is above `ratio` and that are not being rebuilt already.
    pub fn shards_needing_rebuild(&self, ratio: f64) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| {
                if self.slots[i].pending.lock().unwrap_or_else(poisoned).is_some() {
                    return false;
                }
                let cur = self.slots[i].current.read().unwrap_or_else(poisoned);
                let total = cur.len() + cur.deleted();
                total > 0 && cur.deleted() as f64 / total as f64 > ratio
            })
            .collect()
    }

    /// Rebuilds shard `i` from `live()` (the current live entries of that shard)
    /// while queries keep reading the old one, then swaps the new one in.
    ///
    /// `live` is called after the write log is opened, so every write is either
    /// in the snapshot, in the log, or both (replaying is idempotent). Returns
    /// `false` (and does nothing) if that shard is already being rebuilt.
    pub fn rebuild_shard(&self, i: usize, live: impl FnOnce() -> Vec<(u64, Vec<f32>, u32)>) -> bool {
        let Some(slot) = self.slots.get(i) else { return false };
        {
            let mut pending = slot.pending.lock().unwrap_or_else(poisoned);
            if pending.is_some() {
                return false;
            }
            *pending = Some(Vec::new());
        }
        let mut fresh = (self.factory)();
        let shards = self.slots.len();
        fresh.bulk_add(live().into_iter().filter(|e| shard_of(e.0, shards) == i).collect());
        let mut pending = slot.pending.lock().unwrap_or_else(poisoned);
        for op in pending.take().unwrap_or_default() {
            match op {
                Op::Add(id, v, m) => fresh.add(id, &v, m),
                Op::Remove(id) => fresh.remove(id),
            }
        }
        *slot.current.write().unwrap_or_else(poisoned) = fresh;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vecs(n: usize, dim: usize, seed: u64) -> Vec<(u64, Vec<f32>)> {
        let mut x = seed | 1;
        (0..n as u64)
            .map(|id| {
                let v = (0..dim)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % 2001) as f32 / 1000.0 - 1.0
                    })
                    .collect();
                (id * 7 + 3, v)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn sharded_equals_single_shard_on_the_exact_index(n in 0usize..400, shards in 1usize..7, k in 0usize..40, seed in any::<u64>(), modulo in 1u64..5) {
            let data = vecs(n, 8, seed);
            let single = ShardedIndex::flat(1, 8);
            let sharded = ShardedIndex::flat(shards, 8);
            for (id, v) in &data {
                single.add(*id, v, (*id % 32) as u32);
                sharded.add(*id, v, (*id % 32) as u32);
            }
            let q = &vecs(1, 8, seed ^ 99)[0].1;
            let filter = |id: u64, mask: u32| !id.is_multiple_of(modulo) && mask == (id % 32) as u32;
            prop_assert_eq!(sharded.search(q, k, &filter), single.search(q, k, &filter));
            // The filter is applied during search: k results whenever k eligible items exist.
            let eligible = data.iter().filter(|(id, _)| filter(*id, (*id % 32) as u32)).count();
            prop_assert_eq!(sharded.search(q, k, &filter).len(), k.min(eligible));
        }

        #[test]
        fn flat_top_k_equals_sort_and_truncate(n in 0usize..300, k in 0usize..50, seed in any::<u64>()) {
            let data = vecs(n, 5, seed);
            let mut idx = FlatIndex::new(5);
            for (id, v) in &data {
                idx.add(*id, v, 0);
            }
            let q = &vecs(1, 5, !seed)[0].1;
            let mut want: Vec<Hit> = data.iter().map(|(id, v)| (*id, dot(q, v))).collect();
            sort_hits(&mut want);
            want.truncate(k);
            prop_assert_eq!(idx.search(q, k, &|_, _| true), want);
        }
    }

    #[test]
    fn deletes_and_rebuild_keep_answers() {
        let data = vecs(200, 4, 5);
        let idx = ShardedIndex::flat(3, 4);
        for (id, v) in &data {
            idx.add(*id, v, 1);
        }
        for (id, _) in data.iter().take(120) {
            idx.remove(*id);
        }
        let q = vec![1.0, 0.5, -0.5, 0.25];
        let before = idx.search(&q, 10, &|_, _| true);
        assert!(before.iter().all(|(id, _)| data[120..].iter().any(|(d, _)| d == id)), "deleted items never come back");
        let to_rebuild = idx.shards_needing_rebuild(0.2);
        assert!(!to_rebuild.is_empty());
        for s in to_rebuild {
            assert!(idx.rebuild_shard(s, || data[120..].iter().map(|(id, v)| (*id, v.clone(), 1)).collect()));
        }
        assert_eq!(idx.shards_needing_rebuild(0.2), Vec::<usize>::new());
        assert_eq!(idx.search(&q, 10, &|_, _| true), before);
        assert_eq!(idx.len(), 80);
    }

    #[test]
    fn writes_during_a_rebuild_are_replayed() {
        let idx = ShardedIndex::flat(1, 2);
        idx.add(1, &[1.0, 0.0], 1);
        idx.add(2, &[0.0, 1.0], 1);
        idx.remove(2);
        idx.rebuild_shard(0, || {
            // A write lands while the new shard is being built from a snapshot...
            idx.add(3, &[5.0, 5.0], 1);
            // ...and a second rebuild of the same shard is refused meanwhile.
            assert!(!idx.rebuild_shard(0, Vec::new));
            assert!(idx.shards_needing_rebuild(0.0).is_empty());
            vec![(1, vec![1.0, 0.0], 1)]
        });
        let hits = idx.search(&[1.0, 1.0], 5, &|_, _| true);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![3, 1]);
    }
}
