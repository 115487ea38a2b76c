//! Turning fused candidates into candidate bundles (`edgewise_core::bundle`).

use edgewise_core::bundle::{
    BundleBuilder, BundleHeader, NO_RANK, PLAIN_VERSION, QuantizedCandidate, Scope, USER_VERSION,
};
use edgewise_core::{Digest, Region};

use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::sources::{Retrieved, SLOTS};

/// A built bundle and its content address.
#[derive(Debug, Clone)]
pub struct Built {
    /// Encoded bundle.
    pub bytes: bytes::Bytes,
    /// Lower-case hex sha256 of `bytes`.
    pub digest: String,
    /// Regional or personal.
    pub scope: Scope,
    /// Region the bundle was built for.
    pub region: Option<Region>,
    /// Rows.
    pub rows: usize,
    /// Rows left out for a non-finite value.
    pub dropped: usize,
    /// The user a personal bundle was built for (only they may read it).
    pub owner: Option<u64>,
    /// The bundle format version it is written in.
    pub version: u16,
}

/// Who a bundle is built for.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// Every user of a region: shared, publicly cacheable.
    Regional,
    /// One user, with their long-term embedding (empty: none yet). The
    /// bundle carries it (format version 3) when `retrieval.bundle_version`
    /// is 3, so whoever ranks the bundle blends the query the origin would.
    Personal {
        /// The user's `base` embedding.
        base: &'a [f32],
    },
}

impl Audience<'_> {
    /// The bundle scope.
    pub fn scope(self) -> Scope {
        match self {
            Self::Regional => Scope::Regional,
            Self::Personal { .. } => Scope::Personal,
        }
    }
}

/// Why a bundle could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build bundle: {0}")]
pub struct BuildError(String);

/// Encodes `retrieved` as a bundle. Rows whose item was deleted meanwhile are
/// skipped, and so are rows with a value a bundle cannot carry (a non-finite
/// retrieval score, embedding or feature: data stored before values were
/// bounded at ingest): one bad row never costs the request. Missing features
/// take the schema's defaults. The number of rows dropped is in
/// [`Built::dropped`]. A user embedding of another dimension than the index's
/// (stored before a re-dimensioning) is left out.
pub fn build(
    cfg: &Config,
    cat: &Catalogue,
    retrieved: &Retrieved,
    audience: Audience<'_>,
    region: Option<Region>,
    now_ms: u64,
    model_digest: Option<Digest>,
) -> Result<Built, BuildError> {
    let dim = u16::try_from(cfg.index.dim).map_err(|_| BuildError("index.dim does not fit u16".into()))?;
    let nf = u16::try_from(cfg.features.names.len()).map_err(|_| BuildError("too many features".into()))?;
    let scope = audience.scope();
    let mut h = BundleHeader::new(dim, nf, SLOTS as u8);
    h.scope = scope;
    h.region = region;
    h.created_at_ms = now_ms;
    h.feature_schema_hash = cfg.schema_hash();
    h.model_digest = model_digest;
    h.sources_contributed = retrieved.contributed;
    h.sources_timed_out = retrieved.timed_out;
    let plain = cfg.retrieval.bundle_version.min(PLAIN_VERSION);
    let mut b = BundleBuilder::new(h).and_then(|b| b.version(plain)).map_err(|e| BuildError(e.to_string()))?;
    let user = match audience {
        Audience::Personal { base }
            if cfg.retrieval.bundle_version >= USER_VERSION
                && base.len() == cfg.index.dim
                && base.iter().all(|x| x.is_finite()) =>
        {
            Some(base)
        }
        _ => None,
    };
    if let Some(base) = user {
        b.user_embedding(base).map_err(|e| BuildError(format!("user embedding: {e}")))?;
    }
    let version = if user.is_some() { USER_VERSION } else { plain };
    let mut ranks = [NO_RANK; SLOTS];
    let mut dropped = 0;
    let items = cat.read();
    for row in &retrieved.rows {
        let Some(item) = items.get(row.id) else { continue };
        for (slot, r) in ranks.iter_mut().zip(&row.ranks) {
            *slot = r.unwrap_or(NO_RANK);
        }
        let retrieval_score = row.score as f32;
        // The row was laid out when the item entered the catalogue: embedding
        // quantised, features resolved (`None`: it holds a non-finite value).
        let Some(r) = item.row().filter(|_| retrieval_score.is_finite()) else {
            dropped += 1;
            continue;
        };
        b.push_quantized(&QuantizedCandidate {
            id: row.id,
            embedding: &r.embedding,
            scale: r.scale,
            features: &r.features,
            source_ranks: &ranks,
            creator: r.creator,
            category: r.category,
            region_mask: r.region_mask,
            retrieval_score,
        })
        .map_err(|e| BuildError(format!("item {}: {e}", row.id)))?;
    }
    drop(items);
    let rows = b.len();
    let bytes = b.finish();
    let digest = Digest::of(&bytes).to_hex();
    Ok(Built { bytes: bytes.into(), digest, scope, region, rows, dropped, owner: None, version })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IndexKind;
    use crate::item::Item;
    use crate::sources::fusion::Fused;
    use edgewise_core::bundle::Candidate;
    use proptest::prelude::*;

    /// The reference: every row quantised as it is pushed (`BundleBuilder::push`).
    fn reference(cfg: &Config, items: &[Item], rows: &[Fused], now_ms: u64) -> (Vec<u8>, usize) {
        let mut h = BundleHeader::new(cfg.index.dim as u16, cfg.features.names.len() as u16, SLOTS as u8);
        h.scope = Scope::Personal;
        h.created_at_ms = now_ms;
        h.feature_schema_hash = cfg.schema_hash();
        h.sources_contributed = 1;
        let mut b = BundleBuilder::new(h).expect("header");
        let defaults = cfg.features.default_values();
        let mut dropped = 0;
        for row in rows {
            let Some(item) = items.iter().find(|i| i.id == row.id) else { continue };
            let mut features = Vec::new();
            crate::config::FeatureConfig::resolve_into(&item.features, &defaults, &mut features);
            let ranks: Vec<u16> = row.ranks.iter().map(|r| r.unwrap_or(NO_RANK)).collect();
            let score = row.score as f32;
            if !score.is_finite()
                || !features.iter().all(|v| v.is_finite())
                || !item.embedding.iter().all(|v| v.is_finite())
            {
                dropped += 1;
                continue;
            }
            b.push(&Candidate {
                id: item.id,
                embedding: &item.embedding,
                features: &features,
                source_ranks: &ranks,
                creator: item.creator,
                category: item.categories.first().copied().unwrap_or(0),
                region_mask: item.region_mask,
                retrieval_score: score,
            })
            .expect("push");
        }
        (b.finish(), dropped)
    }

    proptest! {
        #[test]
        fn prequantised_rows_encode_the_bytes_pushing_floats_does(
            embs in proptest::collection::vec(proptest::collection::vec(-4.0f32..4.0, 8), 1..30),
            poison in proptest::collection::vec(0usize..40, 0..4),
            scores in proptest::collection::vec(-1.0f64..1.0, 30),
        ) {
            let mut cfg = Config::default();
            cfg.index.dim = 8;
            cfg.index.kind = IndexKind::Flat;
            cfg.index.shards = 1;
            let names = cfg.features.names.len();
            let mut items: Vec<Item> = embs
                .iter()
                .enumerate()
                .map(|(i, e)| Item {
                    id: i as u64 * 3 + 1,
                    embedding: e.clone(),
                    content: None,
                    creator: i as u32 % 5,
                    categories: vec![i as u32 % 7],
                    region_mask: u32::MAX,
                    created_at_ms: 1_700_000_000_000 + i as u64,
                    features: (0..names).map(|j| (i + j) as f32 / 10.0).collect(),
                })
                .collect();
            // Some rows carry a non-finite value, which drops them on both paths.
            for &p in &poison {
                if let Some(it) = items.get_mut(p) {
                    it.embedding[p % 8] = f32::NAN;
                }
            }
            let cat = Catalogue::new(&cfg).expect("catalogue");
            cat.bulk_upsert(items.clone(), true);
            let mut rows: Vec<Fused> = items
                .iter()
                .zip(&scores)
                .map(|(it, &s)| Fused { id: it.id, score: s, ranks: [Some(0), None, None, None, None, None, None] })
                .collect();
            rows.push(Fused { id: 999_999, score: 0.5, ranks: [None; SLOTS] });
            let retrieved = Retrieved { rows: rows.clone(), contributed: 1, ..Default::default() };
            let built = build(&cfg, &cat, &retrieved, Audience::Personal { base: &[] }, None, 42, None).expect("builds");
            let (bytes, dropped) = reference(&cfg, &items, &rows, 42);
            prop_assert_eq!(built.dropped, dropped);
            prop_assert_eq!(&built.bytes[..], &bytes[..]);
        }
    }

    #[test]
    fn writes_the_configured_bundle_version() {
        let mut cfg = Config::default();
        cfg.index.dim = 4;
        cfg.index.kind = IndexKind::Flat;
        cfg.index.shards = 1;
        let cat = Catalogue::new(&cfg).expect("catalogue");
        let names = cfg.features.names.len();
        cat.bulk_upsert(
            vec![Item {
                id: 7,
                embedding: vec![0.5, -0.25, 1.0, 0.0],
                content: None,
                creator: 1,
                categories: vec![2],
                region_mask: u32::MAX,
                created_at_ms: 1_700_000_000_000,
                features: vec![0.5; names],
            }],
            true,
        );
        let retrieved = Retrieved {
            rows: vec![Fused { id: 7, score: 0.5, ranks: [Some(0), None, None, None, None, None, None] }],
            contributed: 1,
            ..Default::default()
        };
        let mut bodies = Vec::new();
        for version in [2, 1] {
            cfg.retrieval.bundle_version = version;
            let built = build(&cfg, &cat, &retrieved, Audience::Regional, None, 42, None).expect("builds");
            assert_eq!(built.version, version);
            let b = edgewise_core::bundle::Bundle::decode(&built.bytes).expect("decodes");
            assert_eq!(b.header().version, version);
            assert_eq!(b.id(0), 7);
            bodies.push(built.bytes);
        }
        assert_eq!(cfg.retrieval.bundle_version, 1);
        let body = bodies[0].len() - edgewise_core::bundle::TRAILER_LEN;
        assert_eq!(bodies[0][10..body], bodies[1][10..body], "the versions differ in the checksum only");

        // Version 3 (the default): a personal bundle carries its user's
        // embedding; a regional one, or a user without one, is version 2.
        assert_eq!(Config::default().retrieval.bundle_version, 3, "version 3 by default");
        cfg.retrieval.bundle_version = 3;
        let base = [0.25, -0.5, 1.0, 2.0];
        let personal =
            build(&cfg, &cat, &retrieved, Audience::Personal { base: &base }, None, 42, None).expect("builds");
        let b = edgewise_core::bundle::Bundle::decode(&personal.bytes).expect("decodes");
        assert_eq!((personal.version, b.header().version, personal.scope), (3, 3, Scope::Personal));
        assert_eq!(b.user_embedding().map(Iterator::collect::<Vec<f32>>), Some(base.to_vec()));
        for (audience, what) in [
            (Audience::Regional, "a regional bundle"),
            (Audience::Personal { base: &[] }, "a user without an embedding"),
            (Audience::Personal { base: &[1.0, 2.0] }, "an embedding of another dimension"),
            (Audience::Personal { base: &[f32::NAN, 0.0, 0.0, 0.0] }, "a non-finite embedding"),
        ] {
            let built = build(&cfg, &cat, &retrieved, audience, None, 42, None).expect("builds");
            let b = edgewise_core::bundle::Bundle::decode(&built.bytes).expect("decodes");
            assert_eq!((built.version, b.header().version), (2, 2), "{what}");
            assert!(b.user_embedding().is_none(), "{what}");
        }
        cfg.retrieval.bundle_version = 2;
        let plain = build(&cfg, &cat, &retrieved, Audience::Personal { base: &base }, None, 42, None).expect("builds");
        assert_eq!(plain.version, 2, "below version 3, no user embedding");
    }
}
