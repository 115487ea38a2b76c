//! Items: the catalogue entries, their JSON form and its validation, and
//! batch bodies (a JSON array or NDJSON) shared with events.
//!
//! ```json
//! {"id": 42, "embedding": [0.1, -0.3, ...], "creator": 7, "categories": [3, 9],
//!  "regions": [0, 4], "created_at": 1700000000000, "features": {"popularity": 0.8},
//!  "content_embedding": [...], "title": "Toy Story (1995)"}
//! ```
//!
//! `regions` (indices 0–31) may be omitted: the item is eligible everywhere.
//! `features` uses the configured names; an unknown name or a non-number is
//! refused, and a feature the item does not give is stored as missing and
//! takes the schema's default (`features.defaults`, which training sets to
//! the mean) wherever it is read. `content_embedding` is needed only when the
//! content index is enabled (`index.content_dim > 0`). Every embedding and
//! feature value must be at most `ingest.max_abs_value` in magnitude, and
//! `created_at` at most `ingest.max_future_ms` ahead of the server's clock.

use edgewise_core::Region;
use serde::{Deserialize, Serialize};

use crate::config::{Config, MISSING_FEATURE};

/// A catalogue item as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Item id.
    pub id: u64,
    /// Embedding (`index.dim` values).
    pub embedding: Vec<f32>,
    /// Content embedding (`index.content_dim` values), if the content index is on.
    pub content: Option<Vec<f32>>,
    /// Creator id.
    pub creator: u32,
    /// Category ids; the first is the bundle's category column.
    pub categories: Vec<u32>,
    /// Region eligibility bitmask (bit r = region r); all ones = everywhere.
    pub region_mask: u32,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// Feature values in schema order; [`MISSING_FEATURE`] (NaN) where the item gave none.
    pub features: Vec<f32>,
}

/// Longest title accepted, in bytes.
pub const MAX_TITLE_BYTES: usize = 512;

/// The JSON form of an item (`PUT /v1/items`, `GET /v1/items/{id}`).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemJson {
    /// Item id.
    pub id: u64,
    /// Embedding: exactly `index.dim` finite numbers, each at most `ingest.max_abs_value` in magnitude.
    pub embedding: Vec<f64>,
    /// Content embedding, `index.content_dim` numbers (only when the content index is on).
    #[serde(default)]
    pub content_embedding: Option<Vec<f64>>,
    /// Creator id.
    #[serde(default)]
    pub creator: u32,
    /// Category ids; the first is the bundle's category column.
    #[serde(default)]
    pub categories: Vec<u32>,
    /// Regions (0–31) the item may be shown in; omitted = everywhere.
    #[serde(default)]
    pub regions: Option<Vec<u8>>,
    /// Creation time, ms since the Unix epoch; at most `ingest.max_future_ms` ahead of the server's clock.
    #[serde(default)]
    pub created_at: u64,
    /// Feature values by configured name; a missing feature takes the schema's default.
    #[serde(default)]
    pub features: std::collections::BTreeMap<String, f64>,
    /// Display title (at most 512 bytes).
    #[serde(default)]
    pub title: Option<String>,
}

fn bounded_f32(v: &[f64], what: &str, max_abs: f64) -> Result<Vec<f32>, String> {
    v.iter()
        .enumerate()
        .map(|(i, &x)| {
            let y = x as f32;
            if !y.is_finite() {
                Err(format!("{what}[{i}] = {x} is not a finite f32"))
            } else if x.abs() > max_abs {
                Err(format!("{what}[{i}] = {x} exceeds ingest.max_abs_value = {max_abs} in magnitude"))
            } else {
                Ok(y)
            }
        })
        .collect()
}

/// Region indices to a mask; `None` = everywhere.
pub fn region_mask(regions: Option<&[u8]>) -> Result<u32, String> {
    match regions {
        None => Ok(edgewise_core::region::ALL_REGIONS),
        Some(rs) => {
            let mut m = 0u32;
            for &r in rs {
                m |= Region::new(r).map_err(|e| e.to_string())?.mask();
            }
            Ok(m)
        }
    }
}

impl Item {
    /// Parses and validates one JSON item against the configuration, received
    /// at `now_ms`; returns the item and its title, if it gave one.
    pub fn from_json(value: serde_json::Value, cfg: &Config, now_ms: u64) -> Result<(Item, Option<String>), String> {
        if !value.is_object() {
            return Err("an item is a JSON object".into());
        }
        let j: ItemJson = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let max_abs = cfg.ingest.max_abs_value;
        if j.embedding.len() != cfg.index.dim {
            return Err(format!(
                "embedding has {} values, the index dimension is {}",
                j.embedding.len(),
                cfg.index.dim
            ));
        }
        let embedding = bounded_f32(&j.embedding, "embedding", max_abs)?;
        let content = match (cfg.index.content_dim, j.content_embedding) {
            (0, None) => None,
            (0, Some(_)) => {
                return Err("content_embedding given but the content index is disabled (index.content_dim = 0)".into());
            }
            (d, Some(c)) if c.len() == d => Some(bounded_f32(&c, "content_embedding", max_abs)?),
            (d, Some(c)) => return Err(format!("content_embedding has {} values, index.content_dim is {d}", c.len())),
            (_, None) => None,
        };
        let mut features = vec![MISSING_FEATURE; cfg.features.names.len()];
        for (name, value) in &j.features {
            let Some(slot) = cfg.features.names.iter().position(|n| n == name) else {
                return Err(format!("unknown feature {name:?} (the schema is {:?})", cfg.features.names));
            };
            let v = *value as f32;
            if !v.is_finite() {
                return Err(format!("feature {name:?} = {value} is not a finite f32"));
            }
            if value.abs() > max_abs {
                return Err(format!(
                    "feature {name:?} = {value} exceeds ingest.max_abs_value = {max_abs} in magnitude"
                ));
            }
            features[slot] = v;
        }
        let skew = cfg.ingest.max_future_ms;
        if j.created_at > now_ms.saturating_add(skew) {
            return Err(format!(
                "created_at {} is {} ms ahead of the server's clock; at most {skew} ms are accepted (ingest.max_future_ms)",
                j.created_at,
                j.created_at - now_ms
            ));
        }
        if let Some(t) = &j.title
            && t.len() > MAX_TITLE_BYTES
        {
            return Err(format!("title has {} bytes; at most {MAX_TITLE_BYTES}", t.len()));
        }
        let item = Item {
            id: j.id,
            embedding,
            content,
            creator: j.creator,
            categories: j.categories,
            region_mask: region_mask(j.regions.as_deref())?,
            created_at_ms: j.created_at,
            features,
        };
        Ok((item, j.title))
    }

    /// The JSON form (as `GET /v1/items/{id}` returns it, without the title):
    /// missing features are left out.
    pub fn to_json(&self, cfg: &Config) -> serde_json::Value {
        let regions: Option<Vec<u8>> = (self.region_mask != edgewise_core::region::ALL_REGIONS)
            .then(|| Region::in_mask(self.region_mask).map(Region::get).collect());
        let features: serde_json::Map<String, serde_json::Value> = cfg
            .features
            .names
            .iter()
            .zip(&self.features)
            .filter(|(_, v)| !v.is_nan())
            .map(|(n, v)| (n.clone(), serde_json::json!(v)))
            .collect();
        serde_json::json!({
            "id": self.id,
            "embedding": self.embedding,
            "content_embedding": self.content,
            "creator": self.creator,
            "categories": self.categories,
            "regions": regions,
            "created_at": self.created_at_ms,
            "features": features,
        })
    }

    /// Whether the item may be shown in `region` (`None`: no region filter).
    pub fn eligible_in(&self, region: Option<Region>) -> bool {
        Region::allows(region, self.region_mask)
    }
}

/// Why a batch body could not be split into records.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum BatchError {
    /// Neither a JSON array nor NDJSON.
    #[error("body is not a JSON array or NDJSON: {0}")]
    Syntax(String),
    /// No records.
    #[error("body holds no records")]
    Empty,
}

/// Splits a batch body into JSON values: a JSON array, or one JSON object per
/// line (NDJSON). A line that is not JSON becomes an `Err` entry with its line
/// number, so the other records still go through.
pub fn split_batch(body: &[u8]) -> Result<Vec<Result<serde_json::Value, String>>, BatchError> {
    let text = std::str::from_utf8(body).map_err(|e| BatchError::Syntax(format!("not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    let records = if trimmed.starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(text).map_err(|e| BatchError::Syntax(e.to_string()))?;
        values.into_iter().map(Ok).collect()
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", n + 1)))
            .collect::<Vec<_>>()
    };
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> Config {
        let mut c = Config::default();
        c.index.dim = 3;
        c
    }

    #[test]
    fn valid_item_round_trips() {
        let c = cfg();
        let v = json!({"id": 5, "embedding": [0.5, -1, 2], "creator": 2, "categories": [4], "regions": [1, 3],
                       "created_at": 99, "features": {"popularity": 0.25}, "title": "Five"});
        let (item, title) = Item::from_json(v, &c, 1_000).expect("valid");
        assert_eq!(title.as_deref(), Some("Five"));
        assert_eq!(item.region_mask, 0b1010);
        assert_eq!(item.features[0], 0.25);
        assert!(item.features[1].is_nan(), "a feature the item does not give is stored as missing");
        let json = item.to_json(&c);
        assert_eq!(json["features"], json!({"popularity": 0.25}), "missing features are left out");
        assert!(
            item.eligible_in(Region::new(3).ok()) && !item.eligible_in(Region::new(0).ok()) && item.eligible_in(None)
        );
        let (again, _) = Item::from_json(json.clone(), &c, 1_000).expect("round trip");
        assert_eq!(again.to_json(&c), json);
    }

    #[test]
    fn invalid_items_say_why() {
        let c = cfg();
        let cases = [
            (json!({"id": 1, "embedding": [1, 2]}), "dimension is 3"),
            (json!({"id": 1, "embedding": [1, 2, 1e300]}), "not a finite f32"),
            (json!({"id": 1, "embedding": [1, 2, 3e38]}), "exceeds ingest.max_abs_value"),
            (json!({"id": 1, "embedding": [1, -2e6, 3]}), "exceeds ingest.max_abs_value"),
            (
                json!({"id": 1, "embedding": [1, 2, 3], "features": {"popularity": 3e38}}),
                "exceeds ingest.max_abs_value",
            ),
            (json!({"id": 1, "embedding": [1, 2, 3], "features": {"color": 1}}), "unknown feature"),
            (json!({"id": 1, "embedding": [1, 2, 3], "features": {"popularity": "high"}}), "invalid type"),
            (json!({"id": 1, "embedding": [1, 2, 3], "colour": 1}), "unknown field"),
            (json!({"id": 1, "embedding": [1, 2, 3], "regions": [40]}), "out of range"),
            (json!({"id": -1, "embedding": [1, 2, 3]}), "invalid value"),
            (json!({"id": 1, "embedding": [1, 2, 3], "created_at": u64::MAX}), "ahead of the server's clock"),
            (
                json!({"id": 1, "embedding": [1, 2, 3], "created_at": 32_503_680_000_000u64}),
                "ahead of the server's clock",
            ),
            (json!({"id": 1, "embedding": [1, 2, 3], "title": "x".repeat(600)}), "at most 512"),
            (json!([1, [1, 2, 3]]), "JSON object"),
        ];
        for (v, want) in cases {
            let err = Item::from_json(v.clone(), &c, 1_700_000_000_000).expect_err("invalid");
            assert!(err.contains(want), "{v}: {err}");
        }
    }

    #[test]
    fn batches_split_as_array_or_ndjson() {
        assert_eq!(split_batch(b"[{\"a\":1},{\"b\":2}]").expect("array").len(), 2);
        let recs = split_batch(b"{\"a\":1}\n\nnot json\n{\"b\":2}\n").expect("ndjson");
        assert_eq!(recs.len(), 3);
        assert!(recs[1].as_ref().expect_err("bad line").starts_with("line 3"));
        assert!(matches!(split_batch(b"[1,"), Err(BatchError::Syntax(_))));
        assert!(matches!(split_batch(b"  \n"), Err(BatchError::Empty)));
    }
}
