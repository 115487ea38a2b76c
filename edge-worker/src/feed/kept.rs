//! The personal bundles the edge keeps: per user, the bundle of their last
//! refined frame, so that their next preliminary frame is personal too.
//!
//! The preliminary frame ranks what the edge has at once. For a user with a
//! kept bundle that is the kept bundle's rows, then the regional bundle's
//! rows it lacks ([`edgewise_core::bundle::union`]), ranked with the
//! request's session and history and the user's embedding the kept bundle
//! carries (format version 3). The offline evaluation measures exactly this
//! set (`edgewise-lab eval`, the `speculative` variant).
//!
//! **Private.** An entry is written only from a bundle the origin served for
//! the user's own token, and read only by a feed request for that user,
//! whose token the edge has verified before the feed runs
//! (`server::guard`). Nothing here is ever served as a response: a kept
//! bundle only feeds a ranking for its user.
//!
//! **Bounded.** In bytes (moka's size-aware eviction, `feed.kept_bytes`; 0
//! keeps nothing) and in age (`feed.kept_max_age_s`, by the time it was kept
//! and by the bundle's own creation time against the request's clock). A
//! refined fetch the origin refuses (401, 403, 404: the token is no longer
//! good, or the user is gone) drops the user's entry.

use std::time::Duration;

use bytes::Bytes;
use edgewise_core::Bundle;
use edgewise_core::bundle::Scope;

use super::frame::BundleFacts;

/// One kept bundle.
#[derive(Debug, Clone)]
pub struct Kept {
    /// The bundle's bytes.
    pub bytes: Bytes,
    /// What the refined fetch learnt of them (checked: structure and checksum).
    pub facts: BundleFacts,
}

impl Kept {
    /// The bundle's creation time (its header), ms since the epoch.
    pub fn created_at_ms(&self) -> u64 {
        self.facts.header.map_or(0, |h| h.created_at_ms)
    }
}

/// The kept bundles, by user.
#[derive(Debug, Clone)]
pub struct KeptBundles {
    entries: Option<moka::sync::Cache<u64, Kept>>,
    max_age_ms: u64,
}

impl KeptBundles {
    /// Keeps at most `max_bytes` of bundles (0: none), each for at most `max_age`.
    pub fn new(max_bytes: u64, max_age: Duration) -> Self {
        let entries = (max_bytes > 0 && !max_age.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &u64, k: &Kept| u32::try_from(k.bytes.len()).unwrap_or(u32::MAX))
                .time_to_live(max_age)
                .build()
        });
        Self { entries, max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX) }
    }

    /// Keeps `bytes` as `user`'s bundle if `facts` (the bytes' own, computed
    /// when they were fetched) say it is a valid personal bundle; returns
    /// whether it did.
    pub fn keep(&self, user: u64, bytes: &Bytes, facts: BundleFacts) -> bool {
        let Some(entries) = &self.entries else { return false };
        if !facts.header.is_some_and(|h| h.scope == Scope::Personal) {
            return false;
        }
        entries.insert(user, Kept { bytes: bytes.clone(), facts });
        true
    }

    /// `user`'s kept bundle, if there is one no older than the age limit at `now_ms`.
    pub fn get(&self, user: u64, now_ms: u64) -> Option<Kept> {
        let kept = self.entries.as_ref()?.get(&user)?;
        (now_ms.saturating_sub(kept.created_at_ms()) <= self.max_age_ms).then_some(kept)
    }

    /// Drops `user`'s kept bundle.
    pub fn forget(&self, user: u64) {
        if let Some(entries) = &self.entries {
            entries.invalidate(&user);
        }
    }

    /// Users with a kept bundle (after pending evictions run).
    pub fn len(&self) -> u64 {
        self.entries.as_ref().map_or(0, |e| {
            e.run_pending_tasks();
            e.entry_count()
        })
    }

    /// Whether no bundle is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The local candidate set of a preliminary frame: `kept`'s rows, then the
/// rows of the regional bundle (`regional`, with `regional_facts`) it lacks,
/// and the facts of the result: the header the merge wrote, and the
/// regional bundle's digest, which the frame names. `None` when the regional
/// bundle is not a valid bundle or the two disagree in shape or feature
/// schema (after a retrain, say): the regional bundle is then ranked alone.
pub fn merged(kept: &Kept, regional: &[u8], regional_facts: BundleFacts, now_ms: u64) -> Option<(Bytes, BundleFacts)> {
    // Both were fully checked when they were fetched.
    regional_facts.header?;
    let k = Bundle::decode_prechecked(&kept.bytes).ok()?;
    let g = Bundle::decode_prechecked(regional).ok()?;
    let union = match edgewise_core::bundle::union(&k, &g, now_ms) {
        Ok(u) => u,
        Err(e) => {
            tracing::debug!(error = %e, "the kept bundle does not merge with the regional one");
            return None;
        }
    };
    // The union is written by the core's builder: valid, with a right checksum.
    let header = Bundle::decode_prechecked(&union).ok().map(|b| *b.header());
    Some((union.into(), BundleFacts { digest: regional_facts.digest, header }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_core::Digest;
    use edgewise_core::bundle::{BundleBuilder, BundleHeader, Candidate};

    fn bundle(scope: Scope, ids: &[u64], created_at_ms: u64, n_features: u16) -> Bytes {
        let mut h = BundleHeader::new(2, n_features, 1);
        h.scope = scope;
        h.created_at_ms = created_at_ms;
        let mut b = BundleBuilder::new(h).expect("header");
        let features = vec![0.5; usize::from(n_features)];
        for &id in ids {
            b.push(&Candidate {
                id,
                embedding: &[0.5, -0.5],
                features: &features,
                source_ranks: &[0],
                creator: 0,
                category: 0,
                region_mask: u32::MAX,
                retrieval_score: 0.5,
            })
            .expect("row");
        }
        if scope == Scope::Personal {
            b.user_embedding(&[1.0, 0.0]).expect("user");
        }
        b.finish().into()
    }

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn keeps_valid_personal_bundles_only_and_forgets() {
        let kept = KeptBundles::new(1 << 20, Duration::from_secs(3600));
        let personal = bundle(Scope::Personal, &[1, 2], NOW, 0);
        let regional = bundle(Scope::Regional, &[1], NOW, 0);
        assert!(kept.keep(7, &personal, BundleFacts::of(&personal)));
        assert!(!kept.keep(8, &regional, BundleFacts::of(&regional)), "a regional bundle");
        let mut corrupt = personal.to_vec();
        corrupt[200] ^= 1;
        let corrupt = Bytes::from(corrupt);
        assert!(!kept.keep(9, &corrupt, BundleFacts::of(&corrupt)), "a bundle whose checksum fails");
        assert_eq!(kept.get(7, NOW).map(|k| k.facts.digest), Some(Digest::of(&personal)));
        assert!(kept.get(8, NOW).is_none() && kept.get(9, NOW).is_none());
        assert_eq!(kept.len(), 1);
        kept.forget(7);
        assert!(kept.get(7, NOW).is_none());
        let off = KeptBundles::new(0, Duration::from_secs(3600));
        assert!(
            !off.keep(7, &personal, BundleFacts::of(&personal)) && off.get(7, NOW).is_none(),
            "0 bytes keeps nothing"
        );
    }

    #[test]
    fn an_old_bundle_is_not_used() {
        let kept = KeptBundles::new(1 << 20, Duration::from_secs(60));
        let b = bundle(Scope::Personal, &[1], NOW, 0);
        assert!(kept.keep(7, &b, BundleFacts::of(&b)));
        assert!(kept.get(7, NOW + 60_000).is_some(), "60 s old: still young enough");
        assert!(kept.get(7, NOW + 60_001).is_none(), "older than the limit by its creation time");
    }

    #[test]
    fn the_byte_bound_evicts() {
        let b = bundle(Scope::Personal, &[1, 2, 3], NOW, 0);
        let kept = KeptBundles::new(3 * b.len() as u64, Duration::from_secs(3600));
        for user in 0..50 {
            kept.keep(user, &b, BundleFacts::of(&b));
        }
        assert!(kept.len() <= 3, "{} bundles kept in room for 3", kept.len());
    }

    #[test]
    fn merged_is_the_kept_rows_then_the_regional_ones_it_lacks() {
        let k = bundle(Scope::Personal, &[5, 1], NOW, 0);
        let kept = Kept { facts: BundleFacts::of(&k), bytes: k };
        let regional = bundle(Scope::Regional, &[1, 2, 3], NOW, 0);
        let (m, facts) = merged(&kept, &regional, BundleFacts::of(&regional), NOW + 1).expect("merges");
        assert_eq!(facts.digest, Digest::of(&regional), "the frame names the regional bundle");
        assert_eq!(facts.header.map(|h| h.scope), Some(Scope::Personal));
        let m = Bundle::decode(&m).expect("a valid bundle");
        assert_eq!((0..m.len()).map(|i| m.id(i)).collect::<Vec<_>>(), [5, 1, 2, 3]);
        assert_eq!(m.user_embedding().map(Iterator::collect::<Vec<f32>>), Some(vec![1.0, 0.0]));
        let other_schema = bundle(Scope::Regional, &[1], NOW, 2);
        let other_facts = BundleFacts::of(&other_schema);
        assert!(
            merged(&kept, &other_schema, other_facts, NOW).is_none(),
            "a retrained schema: the regional bundle alone"
        );
        assert!(merged(&kept, b"junk", BundleFacts::of(b"junk"), NOW).is_none());
    }
}
