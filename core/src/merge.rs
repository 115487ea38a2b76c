//! Stable merging of a speculative (preliminary) ranking with a refined one,
//! and the agreement metrics between the two.
//!
//! The preliminary ranking is shown at once; when the refined ranking arrives,
//! the positions the user has already seen keep their items (nothing already
//! shown ever jumps), and the rest of the list is taken from the refined
//! ranking, without duplicates. If the refined ranking runs short, the
//! remaining preliminary items fill in after it.

use alloc::vec::Vec;

/// Merges into `out` (cleared first), returning at most `k` ids.
///
/// * `preliminary[..shown]` keep their positions (`shown` is clipped to `k` and to the list).
/// * The next positions come from `refined` in order, skipping ids already placed.
/// * Then the unshown preliminary items, in order, skipping ids already placed.
pub fn stable_merge(preliminary: &[u64], shown: usize, refined: &[u64], k: usize, out: &mut Vec<u64>) {
    out.clear();
    let shown = shown.min(k).min(preliminary.len());
    for &id in &preliminary[..shown] {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    for &id in refined.iter().chain(&preliminary[shown..]) {
        if out.len() >= k {
            break;
        }
        if !out.contains(&id) {
            out.push(id);
        }
    }
}

/// `|top_k(a) ∩ top_k(b)| / k`, in `[0, 1]`. Zero when `k` is 0.
pub fn overlap_at_k(a: &[u64], b: &[u64], k: usize) -> f32 {
    if k == 0 {
        return 0.0;
    }
    let (ta, tb) = (&a[..k.min(a.len())], &b[..k.min(b.len())]);
    let common = ta.iter().filter(|x| tb.contains(x)).count();
    common as f32 / k as f32
}

/// Kendall's τ between the orders two rankings give to the items they share.
///
/// `(concordant − discordant) / pairs` over every pair of shared items, in
/// `[−1, 1]`; `None` when fewer than two items are shared (τ is undefined).
/// Rankings are lists of distinct ids, so there are no ties.
pub fn kendall_tau(a: &[u64], b: &[u64]) -> Option<f64> {
    // Positions in `b` of the items of `a` that `b` also has, in `a`'s order.
    let mut pos: Vec<(u64, usize)> = b.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    pos.sort_unstable();
    let seq: Vec<usize> =
        a.iter().filter_map(|id| pos.binary_search_by_key(id, |&(x, _)| x).ok().map(|j| pos[j].1)).collect();
    let n = seq.len();
    if n < 2 {
        return None;
    }
    let mut concordant = 0i64;
    let mut discordant = 0i64;
    for i in 0..n {
        for j in i + 1..n {
            if seq[i] < seq[j] {
                concordant += 1;
            } else {
                discordant += 1;
            }
        }
    }
    let pairs = (n * (n - 1) / 2) as f64;
    Some((concordant - discordant) as f64 / pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    #[test]
    fn shown_items_keep_positions() {
        let mut out = Vec::new();
        stable_merge(&[1, 2, 3, 4], 2, &[9, 3, 1, 8], 5, &mut out);
        assert_eq!(out, vec![1, 2, 9, 3, 8]);
    }

    #[test]
    fn backfills_from_preliminary() {
        let mut out = Vec::new();
        stable_merge(&[1, 2, 3, 4], 1, &[5], 4, &mut out);
        assert_eq!(out, vec![1, 5, 2, 3]);
    }

    #[test]
    fn metrics_by_hand() {
        assert_eq!(overlap_at_k(&[1, 2, 3], &[3, 4, 1], 3), 2.0 / 3.0);
        assert_eq!(kendall_tau(&[1, 2, 3], &[1, 2, 3]), Some(1.0));
        assert_eq!(kendall_tau(&[1, 2, 3], &[3, 2, 1]), Some(-1.0));
        // shared 1,2,3; b orders them 1,3,2: pairs (1,2)+ (1,3)+ (2,3)- => 1/3
        assert_eq!(kendall_tau(&[1, 2, 3, 7], &[1, 9, 3, 2]), Some(1.0 / 3.0));
        assert_eq!(kendall_tau(&[1], &[1]), None);
    }

    fn distinct(max: usize) -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::btree_set(0u64..60, 0..max).prop_map(|s| s.into_iter().collect::<Vec<_>>()).prop_shuffle()
    }

    proptest! {
        #[test]
        fn merge_never_moves_a_shown_item(pre in distinct(30), refined in distinct(30), shown in 0usize..30, k in 0usize..40) {
            let mut out = Vec::new();
            stable_merge(&pre, shown, &refined, k, &mut out);
            let s = shown.min(k).min(pre.len());
            prop_assert_eq!(&out[..s], &pre[..s]);
            prop_assert!(out.len() <= k);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), out.len(), "no duplicates");
            // Every output id comes from one of the inputs, and the list is as full as it can be.
            prop_assert!(out.iter().all(|x| pre.contains(x) || refined.contains(x)));
            let mut union: Vec<u64> = pre.iter().chain(&refined).copied().collect();
            union.sort_unstable();
            union.dedup();
            prop_assert_eq!(out.len(), k.min(union.len()));
        }

        #[test]
        fn tau_is_symmetric_and_bounded(a in distinct(20), b in distinct(20)) {
            let t1 = kendall_tau(&a, &b);
            let t2 = kendall_tau(&b, &a);
            prop_assert_eq!(t1, t2);
            if let Some(t) = t1 { prop_assert!((-1.0..=1.0).contains(&t)); }
        }
    }
}
