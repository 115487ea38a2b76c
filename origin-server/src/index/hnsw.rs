//! An HNSW shard backed by [USearch](https://github.com/unum-cloud/usearch)
//! (the `usearch` crate: the C++ library with SIMD distance kernels).
//!
//! Inner-product metric, `f32` vectors, one vector per key. The region mask of
//! each key is kept beside the graph, and the eligibility filter runs inside
//! USearch's traversal (`filtered_search`), so filtered queries still return
//! `k` results when `k` eligible entries exist. Removal is USearch's own
//! tombstone; the shard is rebuilt by [`super::ShardedIndex::rebuild_shard`]
//! once tombstones pass the configured share.

use std::collections::HashMap;

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

/// One HNSW shard.
pub struct HnswIndex {
    index: Index,
    dim: usize,
    masks: HashMap<u64, u32>,
    /// Slots taken in USearch, live or tombstoned.
    slots: usize,
    deleted: usize,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex").field("dim", &self.dim).field("live", &self.masks.len()).finish()
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
        Ok(Self { index, dim, masks: HashMap::new(), slots: 0, deleted: 0 })
    }

    /// Reserves room for `n` more entries (bulk loads call this once).
    ///
    /// USearch also needs a slot per concurrent caller: a search beyond the
    /// reserved slots fails at once instead of waiting. Searches run on rayon's
    /// pool (one thread per core) and on the callers' threads, so reserve well
    /// above that.
    pub fn reserve_more(&mut self, n: usize) {
        let want = self.slots + n;
        if want > self.index.capacity()
            && let Err(e) = self.index.reserve_capacity_and_threads(want, search_threads())
        {
            tracing::error!(error = %e, "USearch could not reserve capacity");
        }
    }
}

impl VectorIndex for HnswIndex {
    fn add(&mut self, id: u64, v: &[f32], mask: u32) {
        if v.len() != self.dim {
            return;
        }
        if self.masks.remove(&id).is_some() {
            let _ = self.index.remove(id);
            self.deleted += 1;
        }
        if self.slots + 1 > self.index.capacity() {
            self.reserve_more((self.slots / 2).max(1024));
        }
        match self.index.add(id, v) {
            Ok(()) => {
                self.slots += 1;
                self.masks.insert(id, mask);
            }
            Err(e) => tracing::error!(id, error = %e, "USearch refused a vector"),
        }
    }

    fn remove(&mut self, id: u64) {
        if self.masks.remove(&id).is_some() {
            let _ = self.index.remove(id);
            self.deleted += 1;
        }
    }

    fn search(&self, q: &[f32], k: usize, filter: &Filter<'_>) -> Vec<Hit> {
        if k == 0 || q.len() != self.dim || self.masks.is_empty() {
            return Vec::new();
        }
        let keep = |key: u64| self.masks.get(&key).is_some_and(|&m| filter(key, m));
        match self.index.filtered_search(q, k, keep) {
            Ok(m) => {
                // USearch's IP distance is `1 − dot`.
                let mut hits: Vec<Hit> = m.keys.into_iter().zip(m.distances).map(|(id, d)| (id, 1.0 - d)).collect();
                sort_hits(&mut hits);
                hits
            }
            Err(e) => {
                tracing::error!(error = %e, "USearch search failed");
                Vec::new()
            }
        }
    }

    fn len(&self) -> usize {
        self.masks.len()
    }

    fn deleted(&self) -> usize {
        self.deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: USearch refuses searches beyond its reserved thread slots,
    /// which showed up as empty results under concurrency.
    #[test]
    fn concurrent_searches_all_get_results() {
        let mut idx =
            HnswIndex::new(4, HnswParams { connectivity: 8, expansion_add: 32, expansion_search: 32 }).expect("index");
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
}
