//! Turning fused candidates into candidate bundles (`edgewise_core::bundle`).

use edgewise_core::bundle::{BundleBuilder, BundleHeader, Candidate, NO_RANK, Scope};
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
/// [`Built::dropped`].
pub fn build(
    cfg: &Config,
    cat: &Catalogue,
    retrieved: &Retrieved,
    scope: Scope,
    region: Option<Region>,
    now_ms: u64,
    model_digest: Option<Digest>,
) -> Result<Built, BuildError> {
    let dim = u16::try_from(cfg.index.dim).map_err(|_| BuildError("index.dim does not fit u16".into()))?;
    let nf = u16::try_from(cfg.features.names.len()).map_err(|_| BuildError("too many features".into()))?;
    let mut h = BundleHeader::new(dim, nf, SLOTS as u8);
    h.scope = scope;
    h.region = region;
    h.created_at_ms = now_ms;
    h.feature_schema_hash = cfg.schema_hash();
    h.model_digest = model_digest;
    h.sources_contributed = retrieved.contributed;
    h.sources_timed_out = retrieved.timed_out;
    let mut b = BundleBuilder::new(h).map_err(|e| BuildError(e.to_string()))?;
    let mut ranks = [NO_RANK; SLOTS];
    let defaults = cfg.features.default_values();
    let mut features = Vec::with_capacity(defaults.len());
    let mut dropped = 0;
    for row in &retrieved.rows {
        let Some(item) = cat.get(row.id) else { continue };
        for (slot, r) in ranks.iter_mut().zip(&row.ranks) {
            *slot = r.unwrap_or(NO_RANK);
        }
        cfg.features.resolve_into(&item.features, &defaults, &mut features);
        let retrieval_score = row.score as f32;
        if !retrieval_score.is_finite()
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
            retrieval_score,
        })
        .map_err(|e| BuildError(format!("item {}: {e}", item.id)))?;
    }
    let rows = b.len();
    let bytes = b.finish();
    let digest = Digest::of(&bytes).to_hex();
    Ok(Built { bytes: bytes.into(), digest, scope, region, rows, dropped, owner: None })
}
