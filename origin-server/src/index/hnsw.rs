//! An HNSW shard backed by [USearch](https://github.com/unum-cloud/usearch)
//! (the `usearch` crate: the C++ library with SIMD distance kernels).
//!
//! Inner-product metric, `f32` vectors. USearch's keys are dense *slots*
//! (0, 1, 2, …), not item ids: the slot's item id and region mask sit in two
//! plain vectors beside the graph. The eligibility filter runs inside USearch's
//! traversal (`filtered_search`) for every node it visits, so it must be cheap:
//! with slots it is two array reads, where keying by item id would cost a hash
//! lookup per visited node. Filtered queries still return `k` results whenever
//! `k` eligible entries exist.
//!
//! Replacing or removing an item tombstones its slot (USearch's own removal);
//! the shard is rebuilt by [`super::ShardedIndex::rebuild_shard`] once
//! tombstones pass the configured share.

use std::collections::HashMap;

use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::{Filter, Hit, VectorIndex, sort_hits};

/// HNSW parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Graph degree `M`.
    pub connectivity: usize,
    /// Beam width while inserting (`ef_construction`).
    pub expansion_add: usize,
    /// Beam width while searching (`ef`); a query for more than `ef` results uses `k`.
    pub expansion_search: usize,
}

/// Concurrent callers a shard supports: four per core plus headroom.
fn search_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from) * 4 + 16
}

/// Inserts of at least this many vectors run in parallel.
const PARALLEL_FROM: usize = 256;

/// A slot whose item was replaced or removed.
const TOMBSTONE: u64 = u64::MAX;

/// One HNSW shard.
pub struct HnswIndex {
    index: Index,
    dim: usize,
    /// Item id per slot (`TOMBSTONE` once removed).
    ids: Vec<u64>,
    /// Region mask per slot.
    masks: Vec<u32>,
    /// Live item id → slot.
    slot_of: HashMap<u64, u64>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex").field("dim", &self.dim).field("live", &self.slot_of.len()).finish()
    }
}

impl HnswIndex {
    /// An empty shard for `dim`-dimensional vectors.
    pub fn new(dim: usize, p: HnswParams) -> Result<Self, String> {
        let options = IndexOptions {
            dimensions: dim,
            metric: MetricKind::IP,
            quantization: ScalarKind::F32,
            connectivity: p.connectivity,
            expansion_add: p.expansion_add,
            expansion_search: p.expansion_search,
            multi: false,
        };
        let index = Index::new(&options).map_err(|e| format!("cannot create a USearch index: {e}"))?;
        Ok(Self { index, dim, ids: Vec::new(), masks: Vec::new(), slot_of: HashMap::new() })
    }

    /// The SIMD kernel family USearch picked for this CPU (e.g. `skylake`).
    pub fn acceleration(&self) -> String {
        self.index.hardware_acceleration()
    }

    /// Changes the search beam width `ef` (benchmarks sweep it).
    pub fn set_expansion_search(&self, ef: usize) {
        self.index.change_expansion_search(ef.max(1));
    }

    /// Makes room for `n` more slots.
    ///
    /// USearch also needs a slot per concurrent caller: a search beyond the
    /// reserved slots fails at once instead of waiting. Searches run on rayon's
    /// pool (one thread per core) and on the callers' threads, so reserve well
    /// above that.
    /// Capacity grows by half at a time, so single inserts do not reserve each time.
    fn reserve_more(&mut self, n: usize) {
        let need = self.ids.len() + n;
        if need <= self.index.capacity() {
            return;
        }
        let want = need.max(self.ids.len() + self.ids.len() / 2).max(1024);
        if let Err(e) = self.index.reserve_capacity_and_threads(want, search_threads()) {
            tracing::error!(error = %e, "USearch could not reserve capacity");
        }
    }

    /// Loads a shard from [`VectorIndex::snapshot`]'s payload (already
    /// checked against its checksum by [`super::snapshot::decode`]).
    pub fn restore(dim: usize, p: HnswParams, payload: &[u8]) -> Result<Self, String> {
        let mut me = Self::new(dim, p)?;
        let n = payload
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("payload too short")?;
        let graph_at = n.checked_mul(12).and_then(|b| b.checked_add(8)).filter(|&e| e <= payload.len());
        let graph_at = graph_at.ok_or_else(|| format!("payload too short for {n} slots"))?;
        let (ids, masks) = payload[8..graph_at].split_at(n * 8);
        me.ids = ids.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
        me.masks = masks.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default())).collect();
        me.slot_of =
            me.ids.iter().enumerate().filter(|(_, id)| **id != TOMBSTONE).map(|(s, id)| (*id, s as u64)).collect();
        me.index.load_from_buffer(&payload[graph_at..]).map_err(|e| format!("USearch cannot load the graph: {e}"))?;
        if me.index.dimensions() != dim {
            return Err(format!("the graph has d = {}, expected {dim}", me.index.dimensions()));
        }
        // Loading sets the parameters the graph was built with; searches use the configured ones.
        me.index.change_expansion_add(p.expansion_add);
        me.index.change_expansion_search(p.expansion_search);
        let capacity = me.index.capacity().max(me.ids.len());
        me.index
            .reserve_capacity_and_threads(capacity, search_threads())
            .map_err(|e| format!("USearch cannot reserve search threads: {e}"))?;
        Ok(me)
    }

    /// Tombstones the live slot of `id`, if any.
    fn retire(&mut self, id: u64) {
        if let Some(slot) = self.slot_of.remove(&id) {
            let _ = self.index.remove(slot);
            self.ids[slot as usize] = TOMBSTONE;
        }
    }

    /// Maps USearch matches (slot, `1 − dot`) to hits, best first.
    fn hits(&self, m: usearch::ffi::Matches) -> Vec<Hit> {
        let mut hits: Vec<Hit> = m
            .keys
            .into_iter()
            .zip(m.distances)
            .filter_map(|(slot, d)| {
                let id = *self.ids.get(usize::try_from(slot).ok()?)?;
                (id != TOMBSTONE).then_some((id, 1.0 - d))
            })
            .collect();
        sort_hits(&mut hits);
        hits
    }
}

impl VectorIndex for HnswIndex {
    fn add(&mut self, id: u64, v: &[f32], mask: u32) {
        self.bulk_add(vec![(id, v.to_vec(), mask)]);
    }

    /// Inserts on rayon's pool: USearch's graph takes concurrent inserts.
    fn bulk_add(&mut self, entries: Vec<(u64, Vec<f32>, u32)>) {
        // The last entry of an id wins. Dropping the earlier ones here matters: retiring a
        // slot that is not in the graph yet would leave it there, live, once inserted.
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        let mut entries: Vec<(u64, Vec<f32>, u32)> =
            entries.into_iter().rev().filter(|e| e.1.len() == self.dim && seen.insert(e.0)).collect();
        entries.reverse();
        if entries.is_empty() {
            return;
        }
        self.reserve_more(entries.len());
        let mut placed = Vec::with_capacity(entries.len());
        for (id, v, mask) in entries {
            self.retire(id);
            let slot = self.ids.len() as u64;
            self.ids.push(id);
            self.masks.push(mask);
            self.slot_of.insert(id, slot);
            placed.push((slot, v));
        }
        let index = &self.index;
        let insert = |(slot, v): &(u64, Vec<f32>)| match index.add(*slot, v) {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(slot, error = %e, "USearch refused a vector");
                Some(*slot)
            }
        };
        // A few vectors (an API upsert) go in on this thread; a bulk load fans out on rayon.
        let failed: Vec<u64> = if placed.len() < PARALLEL_FROM {
            placed.iter().filter_map(insert).collect()
        } else {
            placed.par_iter().filter_map(insert).collect()
        };
        for slot in failed {
            let id = std::mem::replace(&mut self.ids[slot as usize], TOMBSTONE);
            self.slot_of.remove(&id);
        }
    }

    fn remove(&mut self, id: u64) {
        self.retire(id);
    }

    fn search(&self, q: &[f32], k: usize, filter: &Filter<'_>) -> Vec<Hit> {
        if k == 0 || q.len() != self.dim || self.slot_of.is_empty() {
            return Vec::new();
        }
        let (ids, masks) = (&self.ids, &self.masks);
        let keep = |slot: u64| {
            let s = slot as usize;
            match (ids.get(s), masks.get(s)) {
                (Some(&id), Some(&m)) => id != TOMBSTONE && filter(id, m),
                _ => false,
            }
        };
        match self.index.filtered_search(q, k, keep) {
            Ok(m) => self.hits(m),
            Err(e) => {
                tracing::error!(error = %e, "USearch search failed");
                Vec::new()
            }
        }
    }

    fn search_unfiltered(&self, q: &[f32], k: usize) -> Vec<Hit> {
        if k == 0 || q.len() != self.dim || self.slot_of.is_empty() {
            return Vec::new();
        }
        match self.index.search(q, k) {
            Ok(m) => self.hits(m),
            Err(e) => {
                tracing::error!(error = %e, "USearch search failed");
                Vec::new()
            }
        }
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>, String>> {
        let graph = self.index.serialized_length();
        let mut out = Vec::with_capacity(8 + self.ids.len() * 12 + graph);
        out.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        self.ids.iter().for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
        self.masks.iter().for_each(|m| out.extend_from_slice(&m.to_le_bytes()));
        let at = out.len();
        out.resize(at + graph, 0);
        Some(self.index.save_to_buffer(&mut out[at..]).map(|()| out).map_err(|e| format!("USearch cannot save: {e}")))
    }

    fn len(&self) -> usize {
        self.slot_of.len()
    }

    fn deleted(&self) -> usize {
        self.ids.len() - self.slot_of.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> HnswParams {
        HnswParams { connectivity: 8, expansion_add: 32, expansion_search: 32 }
    }

    /// Regression: USearch refuses searches beyond its reserved thread slots,
    /// which showed up as empty results under concurrency.
    #[test]
    fn concurrent_searches_all_get_results() {
        let mut idx = HnswIndex::new(4, params()).expect("index");
        for id in 0..500u64 {
            let v = [(id % 7) as f32, (id % 11) as f32, (id % 13) as f32, 1.0];
            idx.add(id, &v, u32::MAX);
        }
        let idx = &idx;
        std::thread::scope(|s| {
            for t in 0..32 {
                s.spawn(move || {
                    for _ in 0..20 {
                        let hits = idx.search(&[1.0, t as f32, 2.0, 1.0], 10, &|_, _| true);
                        assert_eq!(hits.len(), 10, "a concurrent search came back short");
                    }
                });
            }
        });
    }

    #[test]
    fn a_snapshot_restores_the_same_answers() {
        let mut idx = HnswIndex::new(3, params()).expect("index");
        idx.bulk_add(
            (0..300u64).map(|id| (id, vec![(id % 17) as f32, (id % 5) as f32, 1.0], (id % 3) as u32)).collect(),
        );
        idx.remove(7);
        idx.add(8, &[100.0, 0.0, 0.0], 2);
        let payload = idx.snapshot().expect("supported").expect("saved");
        let back = HnswIndex::restore(3, params(), &payload).expect("restores");
        assert_eq!((back.len(), back.deleted()), (idx.len(), idx.deleted()));
        for q in [[1.0, 0.0, 0.0], [0.0, 1.0, 0.5], [-1.0, 2.0, 0.1]] {
            let f = |id: u64, m: u32| m != 1 && id.is_multiple_of(2);
            assert_eq!(back.search(&q, 10, &f), idx.search(&q, 10, &f));
            assert_eq!(back.search_unfiltered(&q, 10), idx.search_unfiltered(&q, 10));
        }
        assert!(HnswIndex::restore(3, params(), &payload[..20]).is_err(), "a cut payload is refused");
    }

    /// Regression: an id given twice in one batch left its first slot live in the graph.
    #[test]
    fn a_batch_that_repeats_an_id_keeps_the_last_vector_only() {
        let mut idx = HnswIndex::new(2, params()).expect("index");
        idx.bulk_add(vec![(1, vec![1.0, 0.0], 1), (2, vec![0.0, 1.0], 1), (1, vec![-1.0, 0.0], 1)]);
        assert_eq!((idx.len(), idx.deleted()), (2, 0));
        let hits = idx.search_unfiltered(&[1.0, 0.0], 2);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(hits[1].1, -1.0, "item 1 is found with its last vector");
    }

    #[test]
    fn replaced_and_removed_items_keep_their_ids_straight() {
        let mut idx = HnswIndex::new(2, params()).expect("index");
        idx.bulk_add((0..200u64).map(|id| (id * 10, vec![id as f32, 1.0], 1 << (id % 2))).collect());
        assert_eq!(idx.len(), 200);
        // Replace item 1990 (the best match for a query along x) with a vector along -x.
        idx.add(1990, &[-500.0, 1.0], 1);
        idx.remove(1980);
        assert_eq!((idx.len(), idx.deleted()), (199, 2));
        let hits = idx.search(&[1.0, 0.0], 3, &|_, _| true);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1970, 1960, 1950]);
        assert_eq!(idx.search_unfiltered(&[1.0, 0.0], 3), hits);
        let worst = idx.search(&[-1.0, 0.0], 1, &|_, _| true);
        assert_eq!(worst[0].0, 1990, "the replacement is found under its id");
        // The filter sees item ids and region masks, not slots.
        let odd = idx.search(&[1.0, 0.0], 2, &|id, mask| mask == 0b10 && id % 20 == 10);
        assert_eq!(odd.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1970, 1950]);
    }
}
