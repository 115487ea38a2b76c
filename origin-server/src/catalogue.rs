//! The in-memory view of the catalogue that retrieval reads: every live item,
//! items per creator by recency, trending counters per region, and the ANN
//! indexes. It is rebuilt from the durable [`crate::store::Store`] at start-up
//! and updated after each acknowledged write.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use crate::config::{Config, IndexKind};
use crate::index::{Filter, Hit, ShardedIndex, TopK, poisoned};
use crate::item::Item;
use crate::trending::{RegionCounters, trending_value};

/// Items ordered newest first: (creation time, id).
type Recency = BTreeSet<(std::cmp::Reverse<u64>, u64)>;

/// The item map: ids are chosen by writers, so the hash is seeded per process.
type ItemMap = HashMap<u64, Live, foldhash::fast::RandomState>;

/// A live item, with the columns of its bundle row laid out once for every
/// bundle it goes into: the embedding quantised (exactly as
/// `BundleBuilder::push` would quantise it per bundle) and the features
/// resolved against the schema's defaults.
///
/// A bundle reads hundreds of rows scattered over the catalogue, so what it
/// costs is cache misses: the row's scalars sit in the map entry itself and
/// its two arrays are read side by side, where going through the item took
/// three dependent pointer hops per row.
#[derive(Debug)]
pub struct Live {
    item: Arc<Item>,
    /// The item's region mask, in the map entry: the sources' eligibility
    /// filter reads it for every candidate they visit (field access on a
    /// `Live` finds it before the item's own through `Deref`).
    region_mask: u32,
    /// `None` when the embedding or a resolved feature is not finite (data
    /// stored before values were bounded at ingest): no bundle carries it.
    row: Option<Row>,
}

/// What a bundle row reads of an item ([`Live::row`]).
#[derive(Debug)]
pub struct Row {
    /// The item's creator.
    pub creator: u32,
    /// Its first category (0 when it has none).
    pub category: u32,
    /// Its region eligibility mask.
    pub region_mask: u32,
    /// The int8 embedding's scale.
    pub scale: f32,
    /// The int8 embedding.
    pub embedding: Box<[i8]>,
    /// The features in schema order, missing values replaced by their defaults.
    pub features: Box<[f32]>,
}

impl Live {
    fn new(item: Arc<Item>, defaults: &[f32]) -> Self {
        let mut features = Vec::with_capacity(item.features.len());
        crate::config::FeatureConfig::resolve_into(&item.features, defaults, &mut features);
        let features = features.into_boxed_slice();
        let finite = item.embedding.iter().chain(features.iter()).all(|x| x.is_finite());
        let row = finite.then(|| {
            let mut embedding = vec![0i8; item.embedding.len()].into_boxed_slice();
            let scale = edgewise_core::math::quantize_into(&item.embedding, &mut embedding);
            Row {
                creator: item.creator,
                category: item.categories.first().copied().unwrap_or(0),
                region_mask: item.region_mask,
                scale,
                embedding,
                features,
            }
        });
        Live { region_mask: item.region_mask, item, row }
    }

    /// The item's bundle row, if every value in it is finite.
    #[inline]
    pub fn row(&self) -> Option<&Row> {
        self.row.as_ref()
    }
}

impl std::ops::Deref for Live {
    type Target = Item;

    fn deref(&self) -> &Item {
        &self.item
    }
}

/// A read view of the live items ([`Catalogue::read`]).
pub struct Items<'a>(std::sync::RwLockReadGuard<'a, ItemMap>);

impl Items<'_> {
    /// An item by id.
    #[inline]
    pub fn get(&self, id: u64) -> Option<&Live> {
        self.0.get(&id)
    }
}

/// Live items and the structures built over them.
#[derive(Debug)]
pub struct Catalogue {
    items: RwLock<ItemMap>,
    /// The feature schema's default values, which bundle rows resolve missing features to.
    defaults: Vec<f32>,
    /// creator → (created_at, id), iterated newest first.
    by_creator: RwLock<HashMap<u32, Recency, foldhash::fast::RandomState>>,
    /// All items by recency: (created_at, id), newest first.
    by_time: RwLock<Recency>,
    /// region → item → (decayed score, time of score), in their time-invariant order.
    trending: RwLock<HashMap<u8, RegionCounters>>,
    /// Item embeddings.
    pub index: ShardedIndex,
    /// Content embeddings (only when `index.content_dim > 0`).
    pub content: Option<ShardedIndex>,
    half_life_ms: f64,
}

impl Catalogue {
    /// An empty catalogue with the configured kind of index.
    pub fn new(cfg: &Config) -> Result<Self, String> {
        let shards = cfg.index.shard_count();
        let make = |dim: usize| match cfg.index.kind {
            IndexKind::Flat => Ok(ShardedIndex::flat(shards, dim)),
            IndexKind::Hnsw => ShardedIndex::hnsw(shards, dim, cfg.index.hnsw_params()),
        };
        let content = if cfg.index.content_dim > 0 { Some(make(cfg.index.content_dim)?) } else { None };
        Ok(Self::with_indexes(cfg, make(cfg.index.dim)?, content))
    }

    /// An empty catalogue over the given indexes.
    pub fn with_indexes(cfg: &Config, index: ShardedIndex, content: Option<ShardedIndex>) -> Self {
        Self {
            items: RwLock::default(),
            defaults: cfg.features.default_values(),
            by_creator: RwLock::default(),
            by_time: RwLock::default(),
            trending: RwLock::default(),
            index,
            content,
            half_life_ms: cfg.retrieval.trending_half_life_s * 1000.0,
        }
    }

    /// The indexes by snapshot name: `items`, and `content` when enabled.
    pub fn indexes(&self) -> Vec<(&'static str, &ShardedIndex)> {
        let mut v = vec![("items", &self.index)];
        if let Some(ci) = &self.content {
            v.push(("content", ci));
        }
        v
    }

    /// Adds many new items (start-up recovery into an empty catalogue; use
    /// [`upsert`](Self::upsert) to replace items). With `build_index`, every
    /// index shard is built from them, in parallel; without, the indexes
    /// were loaded from snapshots of exactly these items.
    pub fn bulk_upsert(&self, items: Vec<Item>, build_index: bool) {
        if build_index {
            let mut vectors = Vec::with_capacity(items.len());
            let mut contents = Vec::new();
            for it in &items {
                vectors.push((it.id, it.embedding.clone(), it.region_mask));
                if let Some(c) = &it.content {
                    contents.push((it.id, c.clone(), it.region_mask));
                }
            }
            self.index.bulk_add(vectors);
            if let Some(ci) = &self.content {
                ci.bulk_add(contents);
            }
        }
        let mut map = self.items.write().unwrap_or_else(poisoned);
        let mut by_creator = self.by_creator.write().unwrap_or_else(poisoned);
        let mut by_time = self.by_time.write().unwrap_or_else(poisoned);
        for it in items {
            let key = (std::cmp::Reverse(it.created_at_ms), it.id);
            by_creator.entry(it.creator).or_default().insert(key);
            by_time.insert(key);
            map.insert(it.id, Live::new(Arc::new(it), &self.defaults));
        }
    }

    /// Adds or replaces an item.
    pub fn upsert(&self, item: Item) {
        let item = Arc::new(item);
        if let Some(old) =
            self.items.write().unwrap_or_else(poisoned).insert(item.id, Live::new(item.clone(), &self.defaults))
        {
            self.unlink(&old);
        }
        self.index.add(item.id, &item.embedding, item.region_mask);
        if let (Some(ci), Some(c)) = (&self.content, &item.content) {
            ci.add(item.id, c, item.region_mask);
        }
        let key = (std::cmp::Reverse(item.created_at_ms), item.id);
        self.by_creator.write().unwrap_or_else(poisoned).entry(item.creator).or_default().insert(key);
        self.by_time.write().unwrap_or_else(poisoned).insert(key);
    }

    fn unlink(&self, old: &Item) {
        let key = (std::cmp::Reverse(old.created_at_ms), old.id);
        if let Some(set) = self.by_creator.write().unwrap_or_else(poisoned).get_mut(&old.creator) {
            set.remove(&key);
        }
        self.by_time.write().unwrap_or_else(poisoned).remove(&key);
    }

    /// Removes an item (soft delete in the indexes); returns whether it was there.
    pub fn remove(&self, id: u64) -> bool {
        let Some(old) = self.items.write().unwrap_or_else(poisoned).remove(&id) else { return false };
        self.unlink(&old);
        self.index.remove(id);
        if let Some(ci) = &self.content {
            ci.remove(id);
        }
        true
    }

    /// An item by id.
    pub fn get(&self, id: u64) -> Option<Arc<Item>> {
        self.items.read().unwrap_or_else(poisoned).get(&id).map(|l| l.item.clone())
    }

    /// A read view of every live item: one lock for many lookups (a bundle's
    /// rows), instead of a lock and a reference count per item. Writers wait
    /// while it is held, so hold it for one computation only.
    pub fn read(&self) -> Items<'_> {
        Items(self.items.read().unwrap_or_else(poisoned))
    }

    /// Number of live items.
    pub fn len(&self) -> usize {
        self.items.read().unwrap_or_else(poisoned).len()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Live item embeddings with their region masks, for an index rebuild.
    pub fn live_vectors(&self, content: bool) -> Vec<(u64, Vec<f32>, u32)> {
        let items = self.items.read().unwrap_or_else(poisoned);
        items
            .values()
            .filter_map(|it| {
                let v = if content { it.content.clone()? } else { it.embedding.clone() };
                Some((it.id, v, it.region_mask))
            })
            .collect()
    }

    /// Shards (of the item index, or of the content index when `true`) whose
    /// tombstones passed `ratio` and that are not being rebuilt yet.
    pub fn shards_to_rebuild(&self, ratio: f64) -> Vec<(bool, usize)> {
        let mut v: Vec<(bool, usize)> =
            self.index.shards_needing_rebuild(ratio).into_iter().map(|s| (false, s)).collect();
        if let Some(ci) = &self.content {
            v.extend(ci.shards_needing_rebuild(ratio).into_iter().map(|s| (true, s)));
        }
        v
    }

    /// Rebuilds one shard from the live items; `false` if it was already being rebuilt.
    pub fn rebuild(&self, content: bool, shard: usize) -> bool {
        match (content, &self.content) {
            (false, _) => self.index.rebuild_shard(shard, || self.live_vectors(false)),
            (true, Some(ci)) => ci.rebuild_shard(shard, || self.live_vectors(true)),
            (true, None) => false,
        }
    }

    /// Sets a trending counter (after the store committed it).
    pub fn set_trending(&self, region: u8, item: u64, value: (f64, u64)) {
        self.trending.write().unwrap_or_else(poisoned).entry(region).or_default().set(item, value, self.half_life_ms);
    }

    /// The `k` hottest items in `region` at `now_ms` with `filter(id)`.
    pub fn trending(&self, region: u8, now_ms: u64, k: usize, filter: &Filter<'_>) -> Vec<Hit> {
        let t = self.trending.read().unwrap_or_else(poisoned);
        let items = self.items.read().unwrap_or_else(poisoned);
        let keep = |id: u64| items.get(&id).is_some_and(|it| filter(id, it.region_mask));
        t.get(&region).map(|m| m.top(now_ms, k, self.half_life_ms, keep)).unwrap_or_default()
    }

    /// The `k` most engaged items over all regions at `now_ms` with `filter(id)`.
    pub fn popular(&self, now_ms: u64, k: usize, filter: &Filter<'_>) -> Vec<Hit> {
        let t = self.trending.read().unwrap_or_else(poisoned);
        let items = self.items.read().unwrap_or_else(poisoned);
        let mut sum: HashMap<u64, f64> = HashMap::new();
        for m in t.values() {
            for (id, v) in m.iter() {
                *sum.entry(id).or_default() += trending_value(v, now_ms, self.half_life_ms);
            }
        }
        let mut top = TopK::new(k);
        for (id, s) in sum {
            if items.get(&id).is_some_and(|it| filter(id, it.region_mask)) {
                top.push(id, s as f32);
            }
        }
        top.into_sorted()
    }

    /// The `k` newest items with `filter(id)`; the score is the creation time in hours.
    pub fn fresh(&self, k: usize, filter: &Filter<'_>) -> Vec<Hit> {
        let by_time = self.by_time.read().unwrap_or_else(poisoned);
        let items = self.items.read().unwrap_or_else(poisoned);
        by_time
            .iter()
            .filter(|(_, id)| items.get(id).is_some_and(|it| filter(*id, it.region_mask)))
            .take(k)
            .map(|(std::cmp::Reverse(t), id)| (*id, (*t as f64 / 3.6e6) as f32))
            .collect()
    }

    /// The newest items of `creators` (taken in the given order of preference), `k` in all.
    pub fn newest_by_creators(&self, creators: &[u32], k: usize, filter: &Filter<'_>) -> Vec<Hit> {
        let by_creator = self.by_creator.read().unwrap_or_else(poisoned);
        let items = self.items.read().unwrap_or_else(poisoned);
        let mut lists: Vec<_> = creators.iter().filter_map(|c| by_creator.get(c)).map(|s| s.iter()).collect();
        let mut out = Vec::new();
        // Round-robin over creators so one prolific creator does not take the whole budget.
        let mut rank = 0usize;
        while out.len() < k && !lists.is_empty() {
            lists.retain_mut(|it| {
                if out.len() >= k {
                    return false;
                }
                for (_, id) in it.by_ref() {
                    if items.get(id).is_some_and(|item| filter(*id, item.region_mask)) {
                        out.push((*id, -(rank as f32)));
                        rank += 1;
                        return true;
                    }
                }
                false
            });
        }
        out
    }
}
