//! Merging the candidate sources' lists into one.
//!
//! Each source returns a ranked list. Scores are first min-max normalised to
//! `[0, 1]` within each list, because sources score on different scales
//! (inner products, decayed counts, timestamps). Then, for an item at 1-based
//! rank `r` in a source of weight `w`:
//!
//! `contribution = (0.7 · score + 0.3 · 1/(60 + r)) · w`
//!
//! Contributions add up over sources, and an item found by `c > 1` sources is
//! multiplied by `1 + 0.1·c`. Duplicates collapse into one row that remembers
//! its rank in every source. Ties break by item id.

use std::collections::HashMap;

use super::{SLOTS, Source};
use crate::index::Hit;

/// Reciprocal-rank-fusion constant.
pub const RRF_K: f64 = 60.0;

/// One fused candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    /// Item id.
    pub id: u64,
    /// Fused score.
    pub score: f64,
    /// 0-based rank within each source slot, if the source found it.
    pub ranks: [Option<u16>; SLOTS],
}

/// Fuses per-source ranked lists (each best first) with per-source weights.
pub fn fuse(lists: &[(Source, Vec<Hit>)], weight: impl Fn(Source) -> f64) -> Vec<Fused> {
    let mut acc: HashMap<u64, (f64, u32, [Option<u16>; SLOTS])> = HashMap::new();
    for (source, hits) in lists {
        let w = weight(*source);
        // A non-finite score (an overflowed inner product) says nothing about
        // the item: the row is dropped, so it cannot turn every other
        // normalised score into NaN. Ranks stay those of the source's list.
        let (lo, hi) = hits
            .iter()
            .filter(|h| h.1.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), h| (lo.min(f64::from(h.1)), hi.max(f64::from(h.1))));
        for (r, &(id, s)) in hits.iter().enumerate() {
            if !s.is_finite() {
                continue;
            }
            // In f64: `hi - lo` of two finite f32s cannot overflow here.
            let norm = if hi > lo { (f64::from(s) - lo) / (hi - lo) } else { 1.0 };
            let rrf = 1.0 / (RRF_K + (r + 1) as f64);
            let e = acc.entry(id).or_insert((0.0, 0, [None; SLOTS]));
            if e.2[source.slot()].is_none() {
                e.0 += (norm * 0.7 + rrf * 0.3) * w;
                e.1 += 1;
                e.2[source.slot()] = Some(u16::try_from(r).unwrap_or(u16::MAX - 1));
            }
        }
    }
    let mut out: Vec<Fused> = acc
        .into_iter()
        .map(|(id, (mut score, count, ranks))| {
            if count > 1 {
                score *= 1.0 + 0.1 * f64::from(count);
            }
            Fused { id, score, ranks }
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_and_huge_scores_never_make_the_fusion_nan() {
        let lists = vec![
            (Source::Collaborative, vec![(1, f32::INFINITY), (2, 3e38), (3, -3e38), (4, f32::NAN), (5, 0.5)]),
            (Source::Trending, vec![(5, 1.0)]),
        ];
        let out = fuse(&lists, |_| 1.0);
        assert!(out.iter().all(|f| f.score.is_finite()), "{out:?}");
        let ids: Vec<u64> = out.iter().map(|f| f.id).collect();
        assert!(!ids.contains(&1) && !ids.contains(&4), "non-finite rows are dropped: {ids:?}");
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn fusion_by_hand() {
        let lists = vec![
            (Source::Collaborative, vec![(1, 0.9), (2, 0.5), (3, 0.1)]),
            (Source::Trending, vec![(3, 10.0), (4, 5.0)]),
        ];
        let out = fuse(&lists, |s| if s == Source::Collaborative { 1.0 } else { 0.7 });
        let get = |id| out.iter().find(|f| f.id == id).expect("present").clone();
        // Item 1: top of collaborative, score 1.0 after normalisation.
        assert!((get(1).score - (0.7 + 0.3 / 61.0)).abs() < 1e-12);
        // Item 3: last in collaborative (0.0), first in trending (1.0), found twice: ×1.2.
        let want3 = ((0.3 / 63.0) + (0.7 + 0.3 / 61.0) * 0.7) * 1.2;
        assert!((get(3).score - want3).abs() < 1e-12);
        assert_eq!(get(3).ranks[Source::Collaborative.slot()], Some(2));
        assert_eq!(get(3).ranks[Source::Trending.slot()], Some(0));
        assert_eq!(out.len(), 4, "duplicates collapse");
        assert_eq!(out[0].id, 1);
    }
}
