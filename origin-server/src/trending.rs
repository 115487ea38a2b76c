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
