//! The durable store: one redb database file in the data directory.
//!
//! redb commits with `Durability::Immediate` by default: when `commit`
//! returns, the data is on disk (fsync), so every write the API acknowledges
//! survives `kill -9`. Each API batch is one transaction: a batch is applied
//! entirely or not at all.
//!
//! | table | key | value |
//! |---|---|---|
//! | `items` | item id | postcard [`Item`] |
//! | `users` | user id | postcard [`UserState`] |
//! | `events` | event id | event time (ms): the idempotency record |
//! | `trending` | (region, item id) | (decayed score, time of the score in ms) |
//! | `models` | sha256 hex | model artifact bytes |
//! | `interactions` | (user, event time ms, item, kind) | nothing: the log of applied events, in user and time order |
//! | `profiles` | user id | postcard [`UserProfile`]: region and context features from an import |
//! | `titles` | item id | display title (imports that have one, e.g. MovieLens) |
//! | `modules` | sha256 hex | (guest module bytes, detached signature) served to edges |
//! | `meta` | key | bytes: the model manifest, the item generation |

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::item::Item;
use crate::trending::TrendBump;
use crate::user::{EventRecord, UserProfile, UserState};

const ITEMS: TableDefinition<u64, &[u8]> = TableDefinition::new("items");
const USERS: TableDefinition<u64, &[u8]> = TableDefinition::new("users");
const EVENTS: TableDefinition<&str, u64> = TableDefinition::new("events");
const TRENDING: TableDefinition<(u8, u64), (f64, u64)> = TableDefinition::new("trending");
const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
/// (user, event time in ms, item, kind code): the durable interaction log that training reads.
const INTERACTIONS: TableDefinition<(u64, u64, u64, u8), ()> = TableDefinition::new("interactions");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PROFILES: TableDefinition<u64, &[u8]> = TableDefinition::new("profiles");
const TITLES: TableDefinition<u64, &str> = TableDefinition::new("titles");
/// Guest modules by sha256 hex: (wasm bytes, detached signature as given, may be empty).
const MODULES: TableDefinition<&str, (&[u8], &str)> = TableDefinition::new("modules");
/// Experiment definitions (JSON) by name.
const EXPERIMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("experiments");

/// Store errors.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum StoreError {
    /// redb failed (I/O, corruption, a lock held by another process).
    #[error("store: {0}")]
    Db(String),
    /// A stored value could not be decoded.
    #[error("store: corrupt {table} record {key}: {reason}")]
    Corrupt { table: &'static str, key: String, reason: String },
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// `meta` key of the item generation (`u64`, little-endian).
const GENERATION: &str = "item_generation";

fn decode_generation(b: &[u8]) -> u64 {
    b.try_into().map_or(0, u64::from_le_bytes)
}

/// Bumps the item generation inside a write transaction.
fn bump_generation(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let mut meta = tx.open_table(META).map_err(db)?;
    let current = meta.get(GENERATION).map_err(db)?.map_or(0, |v| decode_generation(v.value()));
    meta.insert(GENERATION, current.wrapping_add(1).to_le_bytes().as_slice()).map_err(db)?;
    Ok(())
}

/// The open database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

/// A trending counter: (region, item) → (decayed score, time of the score in ms).
pub type TrendingEntry = ((u8, u64), (f64, u64));

/// One entry of the interaction log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interaction {
    /// User id.
    pub user: u64,
    /// Event time, ms since the Unix epoch.
    pub time_ms: u64,
    /// Item id.
    pub item: u64,
    /// Kind code ([`EventRecord::kind_code`]).
    pub kind: u8,
}

/// What applying one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// First time this event id was seen.
    Applied,
    /// The event id was already recorded; nothing changed.
    Duplicate,
}

impl Store {
    /// Opens (or creates) `dir/edgewise.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("edgewise.redb");
        let database =
            Database::create(&path).map_err(|e| StoreError::Db(format!("opening {}: {e}", path.display())))?;
        let tx = database.begin_write().map_err(db)?;
        {
            tx.open_table(ITEMS).map_err(db)?;
            tx.open_table(USERS).map_err(db)?;
            tx.open_table(EVENTS).map_err(db)?;
            tx.open_table(TRENDING).map_err(db)?;
            tx.open_table(MODELS).map_err(db)?;
            tx.open_table(INTERACTIONS).map_err(db)?;
            tx.open_table(META).map_err(db)?;
            tx.open_table(PROFILES).map_err(db)?;
            tx.open_table(TITLES).map_err(db)?;
            tx.open_table(MODULES).map_err(db)?;
            tx.open_table(EXPERIMENTS).map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(Self { db: database })
    }

    /// Upserts items in one transaction; returns, per item, whether it existed before.
    pub fn put_items(&self, items: &[Item]) -> Result<Vec<bool>, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let mut existed = Vec::with_capacity(items.len());
        {
            let mut t = tx.open_table(ITEMS).map_err(db)?;
            for it in items {
                let bytes = postcard::to_allocvec(it).map_err(db)?;
                existed.push(t.insert(it.id, bytes.as_slice()).map_err(db)?.is_some());
            }
            bump_generation(&tx)?;
        }
        tx.commit().map_err(db)?;
        Ok(existed)
    }

    /// Deletes an item; returns whether it existed.
    pub fn delete_item(&self, id: u64) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let existed = tx.open_table(ITEMS).map_err(db)?.remove(id).map_err(db)?.is_some();
        if existed {
            bump_generation(&tx)?;
        }
        tx.commit().map_err(db)?;
        Ok(existed)
    }

    /// The item generation: it changes with every committed item write, so an
    /// index snapshot stamped with it matches the items exactly when it is equal.
    pub fn item_generation(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(META).map_err(db)?;
        Ok(t.get(GENERATION).map_err(db)?.map_or(0, |v| decode_generation(v.value())))
    }

    /// Number of items.
    pub fn item_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        tx.open_table(ITEMS).map_err(db)?.len().map_err(db)
    }

    /// Visits every item in id order (start-up recovery). `progress` is called every 10,000 items.
    pub fn for_each_item(&self, mut f: impl FnMut(Item), mut progress: impl FnMut(u64)) -> Result<(), StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(ITEMS).map_err(db)?;
        let mut n = 0u64;
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let item: Item = postcard::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                table: "items",
                key: k.value().to_string(),
                reason: e.to_string(),
            })?;
            f(item);
            n += 1;
            if n.is_multiple_of(10_000) {
                progress(n);
            }
        }
        progress(n);
        Ok(())
    }

    /// Reads one user's state.
    pub fn user(&self, id: u64) -> Result<Option<UserState>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(USERS).map_err(db)?;
        let Some(v) = t.get(id).map_err(db)? else { return Ok(None) };
        postcard::from_bytes(v.value()).map(Some).map_err(|e| StoreError::Corrupt {
            table: "users",
            key: id.to_string(),
            reason: e.to_string(),
        })
    }

    /// Applies a batch of events in one transaction.
    ///
    /// For each event whose id is not yet recorded, `apply` updates the user's
    /// state (a default one for a new user) and may return a trending bump,
    /// which `merge` folds into the stored counter. An id already recorded is
    /// a duplicate and changes nothing. Returns the outcome per event and the
    /// new value of every counter that changed.
    pub fn apply_events<E: EventRecord>(
        &self,
        events: &[E],
        mut apply: impl FnMut(&E, &mut UserState) -> Option<TrendBump>,
        merge: impl Fn(Option<(f64, u64)>, &TrendBump) -> (f64, u64),
    ) -> Result<(Vec<EventOutcome>, Vec<TrendingEntry>), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let mut outcomes = Vec::with_capacity(events.len());
        let mut bumped = std::collections::BTreeMap::new();
        {
            let mut ids = tx.open_table(EVENTS).map_err(db)?;
            let mut users = tx.open_table(USERS).map_err(db)?;
            let mut trending = tx.open_table(TRENDING).map_err(db)?;
            let mut log = tx.open_table(INTERACTIONS).map_err(db)?;
            let mut cache: std::collections::HashMap<u64, UserState> = std::collections::HashMap::new();
            for e in events {
                if ids.get(e.id()).map_err(db)?.is_some() {
                    outcomes.push(EventOutcome::Duplicate);
                    continue;
                }
                ids.insert(e.id(), e.time_ms()).map_err(db)?;
                log.insert((e.user(), e.time_ms(), e.item(), e.kind_code()), ()).map_err(db)?;
                let uid = e.user();
                let state = match cache.entry(uid) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        let state = match users.get(uid).map_err(db)? {
                            Some(v) => postcard::from_bytes(v.value()).map_err(|er| StoreError::Corrupt {
                                table: "users",
                                key: uid.to_string(),
                                reason: er.to_string(),
                            })?,
                            None => UserState::default(),
                        };
                        slot.insert(state)
                    }
                };
                if let Some(b) = apply(e, state) {
                    let key = (b.region, b.item);
                    let current = trending.get(key).map_err(db)?.map(|v| v.value());
                    let next = merge(current, &b);
                    trending.insert(key, next).map_err(db)?;
                    bumped.insert(key, next);
                }
                outcomes.push(EventOutcome::Applied);
            }
            for (uid, state) in &cache {
                let bytes = postcard::to_allocvec(state).map_err(db)?;
                users.insert(*uid, bytes.as_slice()).map_err(db)?;
            }
        }
        tx.commit().map_err(db)?;
        Ok((outcomes, bumped.into_iter().collect()))
    }

    /// Visits the interaction log in (user, time, item) order; returns how many entries there were.
    pub fn for_each_interaction(&self, mut f: impl FnMut(Interaction)) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(INTERACTIONS).map_err(db)?;
        let mut n = 0;
        for row in t.iter().map_err(db)? {
            let (k, _) = row.map_err(db)?;
            let (user, time_ms, item, kind) = k.value();
            f(Interaction { user, time_ms, item, kind });
            n += 1;
        }
        Ok(n)
    }

    /// The user's interactions, newest first, that `keep` accepts (by kind
    /// code), at most `n` of them: one range read of the log.
    pub fn last_interactions(
        &self,
        user: u64,
        n: usize,
        keep: impl Fn(u8) -> bool,
    ) -> Result<Vec<Interaction>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(INTERACTIONS).map_err(db)?;
        let mut out = Vec::new();
        for row in t.range((user, 0, 0, 0)..=(user, u64::MAX, u64::MAX, u8::MAX)).map_err(db)?.rev() {
            if out.len() >= n {
                break;
            }
            let (k, _) = row.map_err(db)?;
            let (user, time_ms, item, kind) = k.value();
            if keep(kind) {
                out.push(Interaction { user, time_ms, item, kind });
            }
        }
        Ok(out)
    }

    /// Every trending counter (start-up recovery).
    pub fn trending(&self) -> Result<Vec<TrendingEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(TRENDING).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            out.push((k.value(), v.value()));
        }
        Ok(out)
    }

    /// Stores a model artifact under its digest.
    pub fn put_model(&self, digest_hex: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        tx.open_table(MODELS).map_err(db)?.insert(digest_hex, bytes).map_err(db)?;
        tx.commit().map_err(db)
    }

    /// Reads a model artifact.
    pub fn model(&self, digest_hex: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(MODELS).map_err(db)?;
        Ok(t.get(digest_hex).map_err(db)?.map(|v| v.value().to_vec()))
    }

    /// Writes experiment `name`'s stored form; returns whether it replaced one.
    pub fn put_experiment(&self, name: &str, json: &[u8]) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let existed = tx.open_table(EXPERIMENTS).map_err(db)?.insert(name, json).map_err(db)?.is_some();
        tx.commit().map_err(db)?;
        Ok(existed)
    }

    /// Deletes experiment `name`; returns whether it existed.
    pub fn delete_experiment(&self, name: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let existed = tx.open_table(EXPERIMENTS).map_err(db)?.remove(name).map_err(db)?.is_some();
        tx.commit().map_err(db)?;
        Ok(existed)
    }

    /// Experiment `name`'s stored form.
    pub fn experiment(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(EXPERIMENTS).map_err(db)?;
        Ok(t.get(name).map_err(db)?.map(|v| v.value().to_vec()))
    }

    /// Every stored experiment: (name, stored form), by name.
    pub fn experiments(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(EXPERIMENTS).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Writes a metadata value.
    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        tx.open_table(META).map_err(db)?.insert(key, value).map_err(db)?;
        tx.commit().map_err(db)
    }

    /// Reads a metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(META).map_err(db)?;
        Ok(t.get(key).map_err(db)?.map(|v| v.value().to_vec()))
    }

    /// Stores a guest module and its detached signature (empty: none) under its digest.
    pub fn put_module(&self, digest_hex: &str, bytes: &[u8], signature: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        tx.open_table(MODULES).map_err(db)?.insert(digest_hex, (bytes, signature)).map_err(db)?;
        tx.commit().map_err(db)
    }

    /// A guest module and its signature (empty: none).
    pub fn module(&self, digest_hex: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(MODULES).map_err(db)?;
        Ok(t.get(digest_hex).map_err(db)?.map(|v| {
            let (b, s) = v.value();
            (b.to_vec(), s.to_string())
        }))
    }

    /// Every user state, in id order (training re-derives their vectors).
    pub fn users(&self) -> Result<Vec<(u64, UserState)>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(USERS).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let state = postcard::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                table: "users",
                key: k.value().to_string(),
                reason: e.to_string(),
            })?;
            out.push((k.value(), state));
        }
        Ok(out)
    }

    /// Replaces user states in one transaction.
    pub fn put_users(&self, users: &[(u64, UserState)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(USERS).map_err(db)?;
            for (id, state) in users {
                let bytes = postcard::to_allocvec(state).map_err(db)?;
                t.insert(*id, bytes.as_slice()).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// Upserts user profiles in one transaction.
    pub fn put_profiles(&self, profiles: &[(u64, UserProfile)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(PROFILES).map_err(db)?;
            for (id, p) in profiles {
                let bytes = postcard::to_allocvec(p).map_err(db)?;
                t.insert(*id, bytes.as_slice()).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// Every user profile, in id order.
    pub fn profiles(&self) -> Result<std::collections::BTreeMap<u64, UserProfile>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(PROFILES).map_err(db)?;
        let mut out = std::collections::BTreeMap::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let p = postcard::from_bytes(v.value()).map_err(|e| StoreError::Corrupt {
                table: "profiles",
                key: k.value().to_string(),
                reason: e.to_string(),
            })?;
            out.insert(k.value(), p);
        }
        Ok(out)
    }

    /// Upserts item titles in one transaction.
    pub fn put_titles(&self, titles: &[(u64, String)]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(TITLES).map_err(db)?;
            for (id, title) in titles {
                t.insert(*id, title.as_str()).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// The titles of `ids` that have one.
    pub fn titles(&self, ids: &[u64]) -> Result<std::collections::HashMap<u64, String>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(TITLES).map_err(db)?;
        let mut out = std::collections::HashMap::new();
        for &id in ids {
            if let Some(v) = t.get(id).map_err(db)? {
                out.insert(id, v.value().to_string());
            }
        }
        Ok(out)
    }
}

/// The history the ranker reads ([`edgewise_core::history`]): from a user's
/// interactions read newest first, the positive ones, at most
/// [`edgewise_core::history::MAX_HISTORY`], each with its item's embedding
/// (`embedding` returns `None` for an item the catalogue lacks; it is left out, as is one whose embedding is all zero).
/// Training, the offline evaluation and `POST /v1/rank` all build it here.
pub fn history_from_log<'a, 'e>(
    newest_first: impl IntoIterator<Item = &'a Interaction>,
    embedding: impl Fn(u64) -> Option<&'e [f32]>,
) -> edgewise_core::history::History {
    let mut out = edgewise_core::history::History::new();
    for i in newest_first {
        if out.len() == edgewise_core::history::MAX_HISTORY {
            break;
        }
        if !crate::user::EventKind::is_positive_code(i.kind) {
            continue;
        }
        let Some(e) = embedding(i.item) else { continue };
        if e.iter().all(|&x| x == 0.0) {
            continue;
        }
        // A refusal (a dimension that changed with a retrain, an entry out of
        // time order) leaves the entry out: the history is a hint, never an error.
        let _ = out.push(i.item, i.time_ms, i.kind, e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::{Event, EventKind};

    #[test]
    fn the_history_is_the_positive_log_newest_first_with_embeddings() {
        let ix = |item: u64, time_ms: u64, kind: EventKind| Interaction { user: 1, time_ms, item, kind: kind.code() };
        let log = [
            ix(3, 300, EventKind::Like),
            ix(2, 200, EventKind::Skip),
            ix(9, 150, EventKind::Click),
            ix(1, 100, EventKind::Dwell),
            ix(4, 50, EventKind::Click),
        ];
        let items: std::collections::HashMap<u64, std::sync::Arc<Item>> = [
            (3, item(3, vec![1.0, 0.0])),
            (2, item(2, vec![0.0, 1.0])),
            (1, item(1, vec![0.5, 0.5])),
            (4, item(4, vec![0.0, 0.0])),
        ]
        .into_iter()
        .map(|(id, it)| (id, std::sync::Arc::new(it)))
        .collect();
        let h = history_from_log(&log, |id| items.get(&id).map(|i| i.embedding.as_slice()));
        let got: Vec<(u64, u64, u8)> = (0..h.len()).map(|l| (h.item(l), h.at_ms(l), h.kind(l))).collect();
        // The skip is not positive, item 9 has no catalogue entry, item 4 no embedding.
        assert_eq!(got, vec![(3, 300, EventKind::Like.code()), (1, 100, EventKind::Dwell.code())]);
        assert_eq!(h.embedding(0), &[127, 0][..]);
    }

    fn item(id: u64, e: Vec<f32>) -> Item {
        Item {
            id,
            embedding: e,
            content: None,
            creator: 0,
            categories: vec![],
            region_mask: u32::MAX,
            created_at_ms: 0,
            features: vec![],
        }
    }

    #[test]
    fn last_interactions_reads_one_user_newest_first() {
        let dir = std::env::temp_dir().join(format!("edgewise-store-last-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = Store::open(&dir).expect("open");
        let ev = |id: &str, user: u64, item: u64, kind: EventKind, time: u64| Event {
            event_id: id.into(),
            user,
            item,
            kind,
            time,
            region: 0,
            dwell_ms: None,
        };
        let events = [
            ev("a", 1, 10, EventKind::Click, 100),
            ev("b", 1, 11, EventKind::Skip, 200),
            ev("c", 1, 12, EventKind::Like, 300),
            ev("d", 2, 13, EventKind::Like, 400),
            ev("e", 1, 14, EventKind::Click, 50),
        ];
        store.apply_events(&events, |_, _| None, |_, _| (0.0, 0)).expect("apply");
        let positive = EventKind::is_positive_code;
        let got: Vec<(u64, u64)> =
            store.last_interactions(1, 10, positive).expect("read").iter().map(|i| (i.item, i.time_ms)).collect();
        assert_eq!(got, vec![(12, 300), (10, 100), (14, 50)], "user 1's positives, newest first");
        assert_eq!(store.last_interactions(1, 2, positive).expect("read").len(), 2);
        assert!(store.last_interactions(3, 10, positive).expect("read").is_empty());
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
