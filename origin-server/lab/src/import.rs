//! `edgewise-lab import movielens`: MovieLens-100K into the store.
//!
//! | MovieLens | Edgewise |
//! |---|---|
//! | movie | item: genres → categories, director → creator, release year → `created_at` and the `year` feature, rating count → the `popularity` feature; embeddings stay zero until `train` |
//! | movie title | the `titles` table (feeds and the demo show it) |
//! | user | a profile: region from the zip code's first digit, age, gender and occupation as context features |
//! | rating | an event at the rating's time: 5 stars → `like`, 4 → `click`, 1–3 → `skip` |
//!
//! Events go through the same path as `POST /v1/events` ([`edgewise_origin::store::Store::apply_events`]),
//! in time order, in batches of [`EVENT_BATCH`], so user state, the interaction
//! log and the trending counters are exactly what the API would have built.
//! Event ids are `ml100k:{user}:{item}`, so importing twice changes nothing.
//!
//! The import fixes the data directory's schema ([`movielens_schema`]), which
//! `serve`, `train` and `eval` then read from [`edgewise_origin::config::DATA_SCHEMA_FILE`].

use std::collections::HashMap;

use crate::movielens::{Dataset, GENRES};
use edgewise_origin::config::{Config, DataSchema};
use edgewise_origin::item::Item;
use edgewise_origin::store::{EventOutcome, Store};
use edgewise_origin::trending::trending_merge;
use edgewise_origin::user::{Event, EventKind, UserProfile};

/// Content-embedding dimension: one per genre, plus the release year.
pub const CONTENT_DIM: usize = GENRES.len() + 1;
/// Feature names of a MovieLens data directory, in bundle column order.
pub const FEATURES: [&str; 2] = ["popularity", "year"];
/// Events per store transaction.
pub const EVENT_BATCH: usize = 5_000;

/// The configuration a MovieLens data directory uses: `cfg` with the content
/// index on ([`CONTENT_DIM`]) and the [`FEATURES`] schema.
pub fn movielens_schema(cfg: &Config) -> Config {
    let mut c = cfg.clone();
    c.index.content_dim = CONTENT_DIM;
    c.features.names = FEATURES.iter().map(|s| (*s).to_string()).collect();
    c
}

/// Why an import could not run.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum ImportError {
    /// The data directory holds data of another schema.
    #[error("{0}")]
    Schema(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] edgewise_origin::store::StoreError),
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Items written.
    pub items: usize,
    /// Profiles written.
    pub users: usize,
    /// Events applied for the first time.
    pub events_applied: usize,
    /// Events already in the store (an earlier import).
    pub events_duplicate: usize,
}

/// The event a rating becomes.
pub fn rating_kind(stars: f32) -> EventKind {
    if stars >= 5.0 {
        EventKind::Like
    } else if stars >= 4.0 {
        EventKind::Click
    } else {
        EventKind::Skip
    }
}

/// Milliseconds since the Unix epoch of 1 January of `year` (0 before 1970:
/// `created_at` is unsigned).
pub fn year_start_ms(year: u16) -> u64 {
    // Days from 1970-01-01 to 1 January of `year` (Gregorian).
    let y = i64::from(year) - 1;
    let days = 365 * (y - 1969) + (y / 4 - 1969 / 4) - (y / 100 - 1969 / 100) + (y / 400 - 1969 / 400);
    u64::try_from(days * 86_400_000).unwrap_or(0)
}

/// Imports `ds` into `store`; `cfg` must be [`movielens_schema`]'s. `progress`
/// gets (events done, events total).
pub fn import_movielens(
    store: &Store,
    cfg: &Config,
    ds: &Dataset,
    mut progress: impl FnMut(u64, u64),
) -> Result<ImportReport, ImportError> {
    let schema = cfg.data_schema();
    match DataSchema::read(&cfg.data_dir).map_err(|e| ImportError::Schema(e.to_string()))? {
        Some(stored) if stored != schema => {
            return Err(ImportError::Schema(format!(
                "{} holds data with {stored}; MovieLens needs {schema}: use another --data-dir",
                cfg.data_dir.display()
            )));
        }
        Some(_) => {}
        None if store.item_count()? > 0 => {
            return Err(ImportError::Schema(format!(
                "{} already holds {} items of another import; use another --data-dir",
                cfg.data_dir.display(),
                store.item_count()?
            )));
        }
        None => schema.write(&cfg.data_dir).map_err(|e| ImportError::Schema(e.to_string()))?,
    }

    let mut count: HashMap<u64, f32> = HashMap::new();
    for r in &ds.ratings {
        *count.entry(r.item).or_default() += 1.0;
    }
    let known: Vec<u16> = ds.movies.iter().filter_map(|m| m.year).collect();
    let median_year = {
        let mut y = known.clone();
        y.sort_unstable();
        y.get(y.len() / 2).copied().unwrap_or(1990)
    };
    let slot = |name: &str| cfg.features.names.iter().position(|n| n == name);
    let (pop_slot, year_slot) = (slot("popularity"), slot("year"));
    let items: Vec<Item> = ds
        .movies
        .iter()
        .map(|m| {
            let mut features = vec![0.0; cfg.features.names.len()];
            if let Some(s) = pop_slot {
                features[s] = count.get(&m.id).copied().unwrap_or(0.0);
            }
            if let Some(s) = year_slot {
                // The one movie without a year gets the median, so it is not an outlier to the ranker.
                features[s] = f32::from(m.year.unwrap_or(median_year));
            }
            Item {
                id: m.id,
                embedding: vec![0.0; cfg.index.dim],
                content: None,
                creator: m.creator,
                categories: m.genres.clone(),
                region_mask: u32::MAX,
                created_at_ms: m.year.map_or(0, year_start_ms),
                features,
            }
        })
        .collect();
    store.put_items(&items)?;
    let titles: Vec<(u64, String)> = ds.movies.iter().map(|m| (m.id, m.title.clone())).collect();
    store.put_titles(&titles)?;
    let profiles: Vec<(u64, UserProfile)> = ds
        .users
        .iter()
        .map(|u| {
            let context = [
                ("age".to_string(), u.age.to_string()),
                ("gender".to_string(), u.gender.to_string()),
                ("occupation".to_string(), u.occupation.clone()),
            ]
            .into_iter()
            .collect();
            (u.id, UserProfile { region: Some(u.region), context })
        })
        .collect();
    store.put_profiles(&profiles)?;

    let region: HashMap<u64, u8> = ds.users.iter().map(|u| (u.id, u.region)).collect();
    let mut ratings = ds.ratings.clone();
    ratings.sort_by_key(|r| (r.time_s, r.user, r.item));
    let by_id: HashMap<u64, &Item> = items.iter().map(|i| (i.id, i)).collect();
    let session = edgewise_core::session::SessionConfig::default();
    let half_life = cfg.retrieval.trending_half_life_s * 1000.0;
    let total = ratings.len() as u64;
    let mut report = ImportReport { items: items.len(), users: profiles.len(), ..ImportReport::default() };
    for (n, chunk) in ratings.chunks(EVENT_BATCH).enumerate() {
        let events: Vec<Event> = chunk
            .iter()
            .map(|r| Event {
                event_id: format!("ml100k:{}:{}", r.user, r.item),
                user: r.user,
                item: r.item,
                kind: rating_kind(r.stars),
                time: r.time_s * 1000,
                region: region.get(&r.user).copied().unwrap_or(crate::movielens::REGION_OUTSIDE_US),
                dwell_ms: None,
            })
            .collect();
        let (outcomes, _) = store.apply_events(
            &events,
            |e, state| state.apply(e, by_id.get(&e.item).copied(), &session),
            |current, bump| trending_merge(current, bump, half_life),
        )?;
        for o in outcomes {
            match o {
                EventOutcome::Applied => report.events_applied += 1,
                EventOutcome::Duplicate => report.events_duplicate += 1,
            }
        }
        progress(((n + 1) * EVENT_BATCH).min(ratings.len()) as u64, total);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratings_map_to_kinds() {
        assert_eq!(rating_kind(5.0), EventKind::Like);
        assert_eq!(rating_kind(4.0), EventKind::Click);
        assert_eq!(rating_kind(3.0), EventKind::Skip);
        assert_eq!(rating_kind(1.0), EventKind::Skip);
    }

    #[test]
    fn year_starts_match_known_dates() {
        assert_eq!(year_start_ms(1970), 0);
        assert_eq!(year_start_ms(1971), 365 * 86_400_000);
        // 1998-01-01T00:00:00Z = 883612800 s.
        assert_eq!(year_start_ms(1998), 883_612_800_000);
        // 2000-01-01 = 946684800 s (a leap century).
        assert_eq!(year_start_ms(2000), 946_684_800_000);
        assert_eq!(year_start_ms(1950), 0, "before the epoch clamps to 0");
    }
}
