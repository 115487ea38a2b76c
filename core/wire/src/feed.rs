//! The feed's frames: `GET|POST /v1/feed` answers with one JSON frame, or
//! streams them as NDJSON (preliminary, then refined).

use alloc::string::String;
use alloc::vec::Vec;

use edgewise_core::rank::RankContext;
use edgewise_core::{Bundle, Digest, Region};

/// Which step of the two-step feed a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    /// The speculative ranking of the regional bundle.
    Preliminary,
    /// The ranking of the user's own bundle, merged so shown items keep their places.
    Refined,
}

impl FrameKind {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Preliminary => "preliminary",
            Self::Refined => "refined",
        }
    }
}

/// What ordered a frame's items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RankedBy {
    /// The core guest module.
    Guest,
    /// The bundle's retrieval order, after the guest failed.
    RetrievalOrder,
}

/// One ranked frame.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Frame {
    /// Preliminary or refined.
    pub frame: FrameKind,
    /// The ranked items.
    pub items: Vec<FrameItem>,
    /// What ordered them.
    pub ranked_by: RankedBy,
    /// sha256 of the bundle's bytes.
    pub bundle_digest: Digest,
    /// How the edge cache served the bundle.
    pub bundle_cache: CacheStatus,
    /// The model used; absent when none could be loaded (the items are then in
    /// retrieval order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Digest>,
    /// Milliseconds spent.
    pub timings_ms: Timings,
    /// The merged list (refined frame only): shown preliminary items keep their places.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<Vec<u64>>,
    /// Preliminary frame only: the user's personal bundle the edge kept from
    /// their last refined frame, whose rows were ranked first, then the
    /// rows of `bundle_digest`'s bundle it lacks (`core::bundle::union`).
    /// When it equals `bundle_digest`, the kept bundle was ranked alone
    /// (the regional one could not be had).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_bundle: Option<Digest>,
}

/// An NDJSON line in place of a frame that could not be produced (the other
/// frame of the stream may still arrive).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameFailure {
    /// Which frame failed.
    pub frame: FrameKind,
    /// Why, naming the problem.
    pub error: String,
}

/// How the edge cache served a response (the `X-Edgewise-Cache` header, and
/// [`Frame::bundle_cache`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// Fresh from the cache.
    Hit,
    /// Fetched from the origin (stored if its `Cache-Control` allows).
    Miss,
    /// Served stale while one background request revalidates, or because the origin failed.
    Stale,
    /// The origin confirmed the stored copy (304) before it was served.
    Revalidated,
}

impl CacheStatus {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Stale => "stale",
            Self::Revalidated => "revalidated",
        }
    }
}

/// One item of a frame.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FrameItem {
    /// Item id.
    pub id: u64,
    /// Calibrated score (the retrieval score after a guest failure).
    pub score: f32,
}

/// The bundle's rows in retrieval order, the fallback ranking every edge
/// answers with when its guest or model fails: seen items and items not
/// shown in the request's region removed, best retrieval score first (ties
/// by id), at most `k`.
pub fn retrieval_order(b: &Bundle<'_>, ctx: &RankContext) -> Vec<FrameItem> {
    let mut rows: Vec<FrameItem> = (0..b.len())
        .filter(|&i| !ctx.seen.contains(&b.id(i)))
        .filter(|&i| Region::allows(ctx.region, b.region_mask(i)))
        .map(|i| FrameItem { id: b.id(i), score: b.retrieval_score(i) })
        .collect();
    rows.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    rows.truncate(ctx.k as usize);
    rows
}

impl Frame {
    /// Sets `merged` on this (refined) frame: the stable merge
    /// ([`edgewise_core::merge::stable_merge`]) of `prelim`'s items, of which
    /// the first `shown` keep their places, with this frame's, at most `k`.
    pub fn merge_after(&mut self, prelim: Option<&Frame>, shown: usize, k: usize) {
        let p: Vec<u64> = prelim.map(|f| f.items.iter().map(|i| i.id).collect()).unwrap_or_default();
        let r: Vec<u64> = self.items.iter().map(|i| i.id).collect();
        let mut out = Vec::new();
        edgewise_core::merge::stable_merge(&p, shown, &r, k, &mut out);
        self.merged = Some(out);
    }
}

/// Where a frame's time went.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timings {
    /// Getting the bundle (cache or origin).
    pub fetch: f64,
    /// Ranking it.
    pub rank: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_json_names_are_stable() {
        let f = Frame {
            frame: FrameKind::Refined,
            items: alloc::vec![FrameItem { id: 3, score: 0.5 }],
            ranked_by: RankedBy::RetrievalOrder,
            bundle_digest: Digest::of(b"bundle"),
            bundle_cache: CacheStatus::Hit,
            model: None,
            timings_ms: Timings { fetch: 1.0, rank: 2.0 },
            merged: None,
            kept_bundle: None,
        };
        let j = serde_json::to_value(&f).expect("json");
        assert_eq!(j["frame"], "refined");
        assert_eq!(j["ranked_by"], "retrieval-order");
        assert_eq!(j["bundle_cache"], "hit");
        assert!(j.get("merged").is_none() && j.get("model").is_none());
        assert_eq!(j["bundle_digest"].as_str().map(str::len), Some(64));
        let back: Frame = serde_json::from_value(j).expect("parse");
        assert_eq!(back, f);
    }
}
