//! Trending counters: per region and item, an exponentially decaying sum of
//! engagement weights, folded in any order to the same value.

/// A trending-counter increment produced by an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendBump {
    /// Region.
    pub region: u8,
    /// Item.
    pub item: u64,
    /// Weight added at `at_ms`.
    pub weight: f64,
    /// Event time.
    pub at_ms: u64,
}

/// Folds an increment into an exponentially decaying counter `(score, at_ms)`.
///
/// The counter is kept at the time of its newest contribution; an older
/// increment is decayed to that time before it is added, a newer one decays the
/// counter first. Either way the result equals the sum of every increment
/// decayed to the counter's time, independent of arrival order.
pub fn trending_merge(current: Option<(f64, u64)>, bump: &TrendBump, half_life_ms: f64) -> (f64, u64) {
    let decay = |dt: u64| (-(dt as f64) / half_life_ms.max(1.0) * std::f64::consts::LN_2).exp();
    match current {
        None => (bump.weight, bump.at_ms),
        Some((score, at)) if bump.at_ms >= at => (score * decay(bump.at_ms - at) + bump.weight, bump.at_ms),
        Some((score, at)) => (score + bump.weight * decay(at - bump.at_ms), at),
    }
}

/// A counter's value at `now_ms`.
pub fn trending_value((score, at): (f64, u64), now_ms: u64, half_life_ms: f64) -> f64 {
    let dt = now_ms.saturating_sub(at) as f64;
    score * (-dt / half_life_ms.max(1.0) * std::f64::consts::LN_2).exp()
}

/// A counter's place in an order that does not depend on the time it is read
/// at: `value(now) = score · 2^(-(now - at) / half_life)`, so for positive
/// scores `log2(score) + at / half_life` orders counters as their values at any
/// `now` do (and for negative ones, the same key reversed; zero in between).
/// `(class, key)`, ascending = best first: class 0 positive (key negated),
/// 1 zero, 2 negative.
fn order_key((score, at): (f64, u64), half_life_ms: f64) -> (u8, f64) {
    let t = at as f64 / half_life_ms.max(1.0);
    if score > 0.0 {
        (0, -(score.log2() + t))
    } else if score == 0.0 {
        (1, 0.0)
    } else {
        (2, (-score).log2() + t)
    }
}

/// A total order on `f64` for the ordered set (keys are never NaN: scores are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f64);

impl Eq for Key {}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// How far past the `k`-th key the top-`k` read keeps looking (in `log2`
/// units): far beyond the keys' rounding error (about 1e-11 for times near
/// 2^41 ms) and wide enough that any counter beyond it has an `f32` value at
/// least four `f32` steps below the `k`-th's, so the exact top `k` by
/// (`f32` value, id) is always among those looked at.
const SLACK: f64 = 1.0 / (1u64 << 20) as f64;

/// One region's trending counters, with their time-invariant order, so the
/// top `k` at any time is read from the front instead of by decaying every
/// counter.
#[derive(Debug, Default, Clone)]
pub struct RegionCounters {
    counters: std::collections::HashMap<u64, (f64, u64)>,
    order: std::collections::BTreeSet<(u8, Key, u64)>,
    /// The latest counter time ever set: before it, values do not decay from
    /// every counter's time (a future counter is read at its own score), so the
    /// order does not hold and [`RegionCounters::top`] scans.
    max_at: u64,
}

impl RegionCounters {
    /// Sets item `id`'s counter.
    pub fn set(&mut self, id: u64, value: (f64, u64), half_life_ms: f64) {
        if !value.0.is_finite() {
            return;
        }
        if let Some(old) = self.counters.insert(id, value) {
            let (c, k) = order_key(old, half_life_ms);
            self.order.remove(&(c, Key(k), id));
        }
        let (c, k) = order_key(value, half_life_ms);
        self.order.insert((c, Key(k), id));
        self.max_at = self.max_at.max(value.1);
    }

    /// Item `id`'s counter.
    pub fn get(&self, id: u64) -> Option<(f64, u64)> {
        self.counters.get(&id).copied()
    }

    /// Every counter.
    pub fn iter(&self) -> impl Iterator<Item = (u64, (f64, u64))> + '_ {
        self.counters.iter().map(|(&id, &v)| (id, v))
    }

    /// Number of counters.
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The `k` best items that pass `keep` by (value at `now_ms` as `f32`
    /// descending, id ascending): exactly what [`RegionCounters::scan`]
    /// gives, reading only the front of the order. It scans instead where the
    /// order cannot decide: `now_ms` before a counter's time, or a `k`-th value
    /// that is zero, subnormal or infinite in `f32` (where values far apart in
    /// the order tie and the id decides).
    pub fn top(&self, now_ms: u64, k: usize, half_life_ms: f64, keep: impl Fn(u64) -> bool) -> Vec<(u64, f32)> {
        if k == 0 {
            return Vec::new();
        }
        if now_ms < self.max_at {
            return self.scan(now_ms, k, half_life_ms, keep);
        }
        let mut out: Vec<(u64, f32)> = Vec::with_capacity(k + 8);
        let mut boundary: Option<(u8, f64)> = None;
        for &(class, Key(key), id) in &self.order {
            // Past the k-th, only counters that could tie with it in f32 still count.
            if let Some((bc, bk)) = boundary
                && (class != bc || (key - bk).abs() > SLACK)
            {
                break;
            }
            if !keep(id) {
                continue;
            }
            let Some(&v) = self.counters.get(&id) else { continue };
            let value = trending_value(v, now_ms, half_life_ms) as f32;
            if value.is_nan() {
                continue;
            }
            out.push((id, value));
            if boundary.is_none() && out.len() == k {
                if !value.is_normal() {
                    return self.scan(now_ms, k, half_life_ms, keep);
                }
                boundary = Some((class, key));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        out
    }

    /// The reference for [`RegionCounters::top`]: every counter that passes
    /// `keep`, decayed to `now_ms`, the best `k`.
    pub fn scan(&self, now_ms: u64, k: usize, half_life_ms: f64, keep: impl Fn(u64) -> bool) -> Vec<(u64, f32)> {
        let mut top = crate::index::TopK::new(k);
        for (&id, &v) in &self.counters {
            if keep(id) {
                top.push(id, trending_value(v, now_ms, half_life_ms) as f32);
            }
        }
        top.into_sorted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(c: &RegionCounters, now: u64, k: usize, half: f64, keep: impl Fn(u64) -> bool) -> Vec<(u64, f32)> {
        c.scan(now, k, half, keep)
    }

    #[test]
    fn ties_in_f32_are_broken_by_id_as_the_scan_does() {
        let half = 6.0 * 3600.0 * 1000.0;
        let mut c = RegionCounters::default();
        let at = 1_700_000_000_000;
        // Values a hair apart (below f32 resolution) and exactly equal ones.
        for (id, s) in [(9u64, 1.0), (3, 1.0 + 1e-12), (5, 1.0 - 1e-12), (1, 0.5), (2, 0.0), (4, -0.25), (6, 0.0)] {
            c.set(id, (s, at), half);
        }
        // A counter so old that its value underflows f32, and one in the future.
        c.set(7, (1.0, at - 400 * 6 * 3600 * 1000), half);
        for now in [at, at + 1000, at + 10 * 3600 * 1000] {
            for k in 0..10 {
                assert_eq!(c.top(now, k, half, |_| true), naive(&c, now, k, half, |_| true), "k = {k}");
            }
        }
        assert_eq!(c.top(at, 3, half, |_| true).iter().map(|h| h.0).collect::<Vec<_>>(), [3, 5, 9]);
        c.set(8, (2.0, at + 5000), half);
        assert_eq!(c.top(at, 3, half, |_| true), naive(&c, at, 3, half, |_| true), "a counter in the future");
    }

    proptest! {
        #[test]
        fn the_top_k_equals_decaying_every_counter(
            bumps in proptest::collection::vec((0u64..300, -2.0f64..20.0, 0u64..5_000_000), 0..400),
            now_offset in 0u64..50_000_000,
            k in 0usize..60,
            keep_mod in 1u64..5,
            half_s in 1.0f64..100_000.0,
        ) {
            let half = half_s * 1000.0;
            let base = 1_700_000_000_000u64;
            let mut c = RegionCounters::default();
            for (id, w, at) in &bumps {
                let b = TrendBump { region: 0, item: *id, weight: *w, at_ms: base + at };
                let merged = trending_merge(c.get(*id), &b, half);
                c.set(*id, merged, half);
            }
            let now = base + now_offset;
            let keep = |id: u64| id % keep_mod != 1;
            prop_assert_eq!(c.top(now, k, half, keep), naive(&c, now, k, half, keep));
        }
    }
}
