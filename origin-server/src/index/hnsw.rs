//! An HNSW shard backed by [hnswlib](https://github.com/nmslib/hnswlib)
//! through `edgewise-hnswlib` (the vendored C++ library, with runtime-picked
//! SIMD distance kernels).
//!
//! Inner-product metric, `f32` vectors. hnswlib's labels are dense *slots*
//! (0, 1, 2, …), not item ids: the slot's item id and region mask sit in two
//! plain vectors beside the graph. The eligibility filter runs inside
//! hnswlib's traversal for every candidate that would enter the result, so it
//! must be cheap: with slots it is two array reads, where keying by item id
//! would cost a hash lookup per candidate. Filtered queries still return `k`
//! results whenever `k` eligible entries exist.
//!
//! Replacing or removing an item tombstones its slot (hnswlib's `markDelete`:
//! the node keeps routing, searches skip it); the shard is rebuilt by
//! [`super::ShardedIndex::rebuild_shard`] once tombstones pass the configured
//! share.

use std::collections::HashMap;

use edgewise_hnswlib::{Hnsw, Params};
use rayon::prelude::*;

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

/// Inserts of at least this many vectors run in parallel.
const PARALLEL_FROM: usize = 256;

/// A slot whose item was replaced or removed.
const TOMBSTONE: u64 = u64::MAX;

/// Seed of hnswlib's level generator (its own default), so builds repeat.
const LEVEL_SEED: usize = 100;

/// One HNSW shard.
pub struct HnswIndex {
    graph: Hnsw,
    dim: usize,
    /// Item id per slot (`TOMBSTONE` once removed).
    ids: Vec<u64>,
    /// Region mask per slot.
    masks: Vec<u32>,
    /// Live item id → slot.
    slot_of: HashMap<u64, usize>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex").field("dim", &self.dim).field("live", &self.slot_of.len()).finish()
    }
}

impl HnswIndex {
    /// An empty shard for `dim`-dimensional vectors.
    pub fn new(dim: usize, p: HnswParams) -> Result<Self, String> {
        let params = Params { m: p.connectivity, ef_construction: p.expansion_add, seed: LEVEL_SEED };
        let mut graph = Hnsw::new(dim, 1024, params).map_err(|e| format!("cannot create an HNSW graph: {e}"))?;
        graph.set_ef(p.expansion_search);
        Ok(Self { graph, dim, ids: Vec::new(), masks: Vec::new(), slot_of: HashMap::new() })
    }

    /// The SIMD distance kernel picked for this CPU (e.g. `avx512f`).
    pub fn acceleration(&self) -> &'static str {
        self.graph.kernel()
    }

    /// Changes the search beam width `ef` (benchmarks sweep it).
    pub fn set_expansion_search(&mut self, ef: usize) {
        self.graph.set_ef(ef);
    }

    /// Makes room for `n` more slots. Capacity grows by half at a time, so
    /// single inserts do not reallocate the graph each time.
    fn reserve_more(&mut self, n: usize) -> Result<(), String> {
        let need = self.ids.len() + n;
        if need <= self.graph.capacity() {
            return Ok(());
        }
        let want = need.max(self.ids.len() + self.ids.len() / 2).max(1024);
        self.graph.reserve(want).map_err(|e| format!("cannot grow the HNSW graph to {want}: {e}"))
    }

    /// Loads a shard from [`VectorIndex::snapshot`]'s payload (already
    /// checked against its checksum by [`super::snapshot::decode`]).
    pub fn restore(dim: usize, p: HnswParams, payload: &[u8]) -> Result<Self, String> {
        let n = payload
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or("payload too short")?;
        let graph_at = n.checked_mul(12).and_then(|b| b.checked_add(8)).filter(|&e| e <= payload.len());
        let graph_at = graph_at.ok_or_else(|| format!("payload too short for {n} slots"))?;
        let (ids, masks) = payload[8..graph_at].split_at(n * 8);
        let ids: Vec<u64> = ids.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect();
        let masks = masks.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default())).collect();
        let mut graph = Hnsw::load(dim, &payload[graph_at..]).map_err(|e| format!("cannot load the graph: {e}"))?;
        // Fewer is possible (a refused insert leaves its slot out of the graph); more is not.
        if graph.len() > n {
            return Err(format!("the graph holds {} slots, the payload {n}", graph.len()));
        }
        // The graph keeps the degree and ef_construction it was built with; searches use the configured ef.
        graph.set_ef(p.expansion_search);
        let slot_of = ids.iter().enumerate().filter(|(_, id)| **id != TOMBSTONE).map(|(s, id)| (*id, s)).collect();
        Ok(Self { graph, dim, ids, masks, slot_of })
    }

    /// Tombstones the live slot of `id`, if any.
    fn retire(&mut self, id: u64) {
        if let Some(slot) = self.slot_of.remove(&id) {
            if let Err(e) = self.graph.mark_deleted(slot) {
                tracing::error!(slot, error = %e, "hnswlib could not delete a slot");
            }
            self.ids[slot] = TOMBSTONE;
        }
    }

    /// Maps hnswlib's results (slot, `1 − dot`) to hits, best first.
    fn hits(&self, found: Vec<(usize, f32)>) -> Vec<Hit> {
        let mut hits: Vec<Hit> = found
            .into_iter()
            .filter_map(|(slot, d)| {
                let id = *self.ids.get(slot)?;
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

    /// Inserts on rayon's pool: hnswlib's graph takes concurrent inserts.
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
        if let Err(e) = self.reserve_more(entries.len()) {
            tracing::error!(error = %e, vectors = entries.len(), "the HNSW shard cannot take these vectors");
            return;
        }
        let mut placed = Vec::with_capacity(entries.len());
        for (id, v, mask) in entries {
            self.retire(id);
            let slot = self.ids.len();
            self.ids.push(id);
            self.masks.push(mask);
            self.slot_of.insert(id, slot);
            placed.push((slot, v));
        }
        let failed: Vec<usize> = {
            let inserter = self.graph.inserter();
            let insert = |(slot, v): &(usize, Vec<f32>)| match inserter.add(*slot, v) {
                Ok(()) => None,
                Err(e) => {
                    tracing::error!(slot, error = %e, "hnswlib refused a vector");
                    Some(*slot)
                }
            };
            // A few vectors (an API upsert) go in on this thread; a bulk load fans out on rayon.
            if placed.len() < PARALLEL_FROM {
                placed.iter().filter_map(insert).collect()
            } else {
                placed.par_iter().filter_map(insert).collect()
            }
        };
        for slot in failed {
            let id = std::mem::replace(&mut self.ids[slot], TOMBSTONE);
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
        let keep = |slot: usize| match (ids.get(slot), masks.get(slot)) {
            (Some(&id), Some(&m)) => id != TOMBSTONE && filter(id, m),
            _ => false,
        };
        match self.graph.search_filtered(q, k, keep) {
            Ok(found) => self.hits(found),
            Err(e) => {
                tracing::error!(error = %e, "HNSW search failed");
                Vec::new()
            }
        }
    }

    fn search_unfiltered(&self, q: &[f32], k: usize) -> Vec<Hit> {
        if k == 0 || q.len() != self.dim || self.slot_of.is_empty() {
            return Vec::new();
        }
        match self.graph.search(q, k) {
            Ok(found) => self.hits(found),
            Err(e) => {
                tracing::error!(error = %e, "HNSW search failed");
                Vec::new()
            }
        }
    }

    fn snapshot(&self) -> Option<Result<Vec<u8>, String>> {
        let mut out = Vec::with_capacity(8 + self.ids.len() * 12);
        out.extend_from_slice(&(self.ids.len() as u64).to_le_bytes());
        self.ids.iter().for_each(|id| out.extend_from_slice(&id.to_le_bytes()));
        self.masks.iter().for_each(|m| out.extend_from_slice(&m.to_le_bytes()));
        Some(self.graph.save_into(&mut out).map(|()| out).map_err(|e| format!("cannot save the HNSW graph: {e}")))
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

    /// Many threads search one shard at once (USearch, used before hnswlib,
    /// refused searches beyond its reserved thread slots).
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
