//! Multi-source retrieval, and the plans (which sources, what share, what weight) behind each kind of bundle.
//!
//! A personalized request asks five sources for candidates, each with a
//! budget (a share of `k`) and a weight:
//!
//! | source | what | default budget | weight |
//! |---|---|---|---|
//! | collaborative | ANN on the user's embedding blended with the session | 50% | 1.0 |
//! | content | ANN on the user's content profile | 20% | 0.9 |
//! | trending | hottest items in the region | 10% | 0.7 |
//! | recent_similar | ANN around the user's last engaged items | 15% | 0.85 |
//! | creator | newest items of creators the user engaged with | 5% | 0.8 |
//!
//! Every source runs on the blocking pool under a deadline. A source that fails
//! or misses its deadline is dropped and reported (bundle header, `/metrics`).
//! Budgets it leaves unused (failed, or fewer results than its share) pass on to
//! the other sources in proportion to their shares ("water-filling"). Each
//! source is asked for twice its budget (at least 16, at most `k`), so it can
//! take over most of a failed source's share without making every request pay
//! for `k` results from every source.
//! If the fused list is still short (a cold start: no history), it is
//! back-filled with the region's `fresh` and then `popular` items, which carry
//! their own source slots, so every bundle is full whenever the catalogue
//! allows. Eligibility filters (seen, hidden, deleted, region) apply inside
//! every source.

use edgewise_core::Region;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::catalogue::Catalogue;
use crate::config::Config;
use crate::config::RetrievalConfig;

pub mod fusion;
use self::fusion::{Fused, fuse};
use crate::index::{Filter, Hit};
use crate::user::UserState;

/// Number of source slots in origin bundles (`edgewise_core::bundle::SOURCE_NAMES`).
pub const SLOTS: usize = 7;

/// A candidate source; its discriminant is its bundle source slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// ANN on the user's embedding.
    Collaborative = 0,
    /// ANN on the user's content profile.
    Content = 1,
    /// Regional trending.
    Trending = 2,
    /// ANN around recent items.
    RecentSimilar = 3,
    /// Engaged creators' newest items.
    Creator = 4,
    /// Newest eligible items.
    Fresh = 5,
    /// Most engaged items overall.
    Popular = 6,
}

impl Source {
    /// Every source, in slot order.
    pub const ALL: [Source; SLOTS] = [
        Source::Collaborative,
        Source::Content,
        Source::Trending,
        Source::RecentSimilar,
        Source::Creator,
        Source::Fresh,
        Source::Popular,
    ];
    /// The five personalized sources.
    pub const PERSONAL: [Source; 5] =
        [Source::Collaborative, Source::Content, Source::Trending, Source::RecentSimilar, Source::Creator];

    /// Bundle source slot.
    pub fn slot(self) -> usize {
        self as usize
    }

    /// Name (as in config keys, metrics labels and `SOURCE_NAMES`).
    pub fn name(self) -> &'static str {
        edgewise_core::bundle::SOURCE_NAMES[self.slot()]
    }
}

/// The personalized plan: the five sources with their configured budgets and weights.
pub fn personal_plan(cfg: &Config) -> Vec<(Source, f64, f64)> {
    Source::PERSONAL
        .iter()
        .map(|&s| {
            let share = cfg.retrieval.budgets.get(s.name()).copied().unwrap_or(0.0);
            let weight = cfg.retrieval.weights.get(s.name()).copied().unwrap_or(0.0);
            (s, share, weight)
        })
        .collect()
}

/// The regional plan: trending, fresh and popular.
pub const REGIONAL_PLAN: [(Source, f64, f64); 3] =
    [(Source::Trending, 0.5, 1.0), (Source::Fresh, 0.25, 0.6), (Source::Popular, 0.25, 0.8)];

/// The ids a request must not return (seen, hidden): a set probed for every
/// candidate a source visits, so hashed with per-process-seeded foldhash.
pub type Exclude = HashSet<u64, foldhash::fast::RandomState>;

/// Everything a source may read for one request.
pub struct Request {
    /// The catalogue.
    pub catalogue: Arc<Catalogue>,
    /// The user's state (`None`: unknown user, a cold start), shared, not copied.
    pub user: Option<Arc<UserState>>,
    /// The user's region; `None` for no region filter.
    pub region: Option<Region>,
    /// Time of the request.
    pub now_ms: u64,
    /// Collaborative query (base ⊕ session), if the user has one.
    pub query: Option<Vec<f32>>,
    /// Items that must not be returned (seen, hidden).
    pub exclude: Exclude,
    /// How many recent items seed `recent_similar`.
    pub recent_seeds: usize,
}

impl Request {
    fn filter(&self) -> impl Fn(u64, u32) -> bool + Sync + '_ {
        move |id, mask| Region::allows(self.region, mask) && !self.exclude.contains(&id)
    }

    /// Runs one source for up to `n` results.
    pub fn run(&self, source: Source, n: usize) -> Vec<Hit> {
        let filter = self.filter();
        let f: &Filter<'_> = &filter;
        let cat = &self.catalogue;
        match source {
            Source::Collaborative => self.query.as_ref().map_or_else(Vec::new, |q| cat.index.search(q, n, f)),
            Source::Content => match (&cat.content, &self.user) {
                (Some(ci), Some(u)) if u.content.len() == ci.dim() => ci.search(&u.content, n, f),
                _ => Vec::new(),
            },
            Source::Trending => match self.region {
                Some(r) => cat.trending(r.get(), self.now_ms, n, f),
                None => cat.popular(self.now_ms, n, f),
            },
            Source::RecentSimilar => {
                let Some(u) = &self.user else { return Vec::new() };
                let seeds: Vec<Arc<crate::item::Item>> =
                    u.recent.iter().take(self.recent_seeds).filter_map(|(id, _)| cat.get(*id)).collect();
                // Every (seed, shard) search runs in parallel; the merge (best
                // score per id, then the hits' order) does not depend on which ends first.
                let queries: Vec<&[f32]> = seeds.iter().map(|s| &s.embedding[..]).collect();
                let found = cat.index.search_many(&queries, n, f);
                let mut best: HashMap<u64, f32, foldhash::fast::RandomState> =
                    HashMap::with_capacity_and_hasher(n * found.len(), Default::default());
                for hits in found {
                    for (id, s) in hits {
                        let e = best.entry(id).or_insert(f32::NEG_INFINITY);
                        *e = e.max(s);
                    }
                }
                let mut hits: Vec<Hit> = best.into_iter().collect();
                crate::index::sort_hits(&mut hits);
                hits.truncate(n);
                hits
            }
            Source::Creator => {
                let Some(u) = &self.user else { return Vec::new() };
                let creators: Vec<u32> = u.creators.iter().map(|&(c, _)| c).collect();
                cat.newest_by_creators(&creators, n, f)
            }
            Source::Fresh => cat.fresh(n, f),
            Source::Popular => cat.popular(self.now_ms, n, f),
        }
    }
}

/// How each source fared.
#[derive(Debug, Clone, Default)]
pub struct SourceReport {
    /// Source name.
    pub name: &'static str,
    /// Results it returned.
    pub returned: usize,
    /// Results used after budgeting.
    pub used: usize,
    /// Wall time.
    pub elapsed: Duration,
    /// Why it was dropped, if it was.
    pub dropped: Option<&'static str>,
}

/// The fused candidates of one request.
#[derive(Debug, Clone, Default)]
pub struct Retrieved {
    /// Candidates, best first, at most `k`.
    pub rows: Vec<Fused>,
    /// Bitmask of slots that contributed rows.
    pub contributed: u8,
    /// Bitmask of slots that failed or missed their deadline.
    pub timed_out: u8,
    /// Per-source details.
    pub reports: Vec<SourceReport>,
}

/// Splits `k` over sources by share, then passes every unused unit of budget
/// on to sources that still have results, in proportion to their shares.
pub fn water_fill(k: usize, shares: &[f64], available: &[usize]) -> Vec<usize> {
    let total: f64 = shares.iter().sum();
    let mut eff: Vec<usize> =
        shares.iter().map(|s| if total > 0.0 { (k as f64 * s / total + 1e-9).floor() as usize } else { 0 }).collect();
    // Hand out the rounding remainder by share.
    let mut left = k.saturating_sub(eff.iter().sum());
    loop {
        let mut spare = left;
        for (e, &a) in eff.iter_mut().zip(available) {
            if *e > a {
                spare += *e - a;
                *e = a;
            }
        }
        let open: Vec<usize> = (0..eff.len()).filter(|&i| eff[i] < available[i]).collect();
        if spare == 0 || open.is_empty() {
            return eff;
        }
        let open_share: f64 = open.iter().map(|&i| shares[i].max(1e-9)).sum();
        let mut given = 0;
        for &i in &open {
            // The epsilon absorbs float error in the shares (0.2 / 1.0000000000000002 < 0.2).
            let add = ((spare as f64) * shares[i].max(1e-9) / open_share + 1e-9).floor() as usize;
            eff[i] += add;
            given += add;
        }
        if given == 0 {
            // Less spare than open sources: one unit each, in share order.
            let mut order = open.clone();
            order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]).then(a.cmp(&b)));
            for &i in order.iter().take(spare) {
                eff[i] += 1;
                given += 1;
            }
        }
        left = spare - given;
    }
}

/// Runs `plan` (source, share, weight) for `k` candidates under `deadline`,
/// applying drills, budgets, fusion and back-fill.
pub async fn retrieve(
    req: Arc<Request>,
    plan: &[(Source, f64, f64)],
    k: usize,
    cfg: &RetrievalConfig,
    backfill: &[Source],
) -> Retrieved {
    let deadline = Duration::from_millis(cfg.deadline_ms);
    let total_share: f64 = plan.iter().map(|p| p.1).sum();
    // Every source on the blocking pool at once, all under one deadline from
    // now; each measures its own time from now too (its wait for a thread
    // included). One hop per source: no async task around each.
    let started = Instant::now();
    let until = tokio::time::Instant::from_std(started + deadline);
    let mut tasks = Vec::with_capacity(plan.len());
    for &(source, share, _) in plan {
        let budget = if total_share > 0.0 { (k as f64 * share / total_share).ceil() as usize } else { k };
        let ask = (2 * budget).max(16).min(k);
        let req = req.clone();
        let drill = cfg.drills.get(source.name()).cloned().unwrap_or_default();
        tasks.push(tokio::task::spawn_blocking(move || {
            if drill.delay_ms > 0 {
                std::thread::sleep(Duration::from_millis(drill.delay_ms));
            }
            let r = if drill.fail { Err("failed (drill)") } else { Ok(req.run(source, ask)) };
            (r, started.elapsed())
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(match tokio::time::timeout_at(until, t).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => (Err("panicked"), started.elapsed()),
            Err(_) => (Err("deadline exceeded"), started.elapsed()),
        });
    }
    let mut out = Retrieved::default();
    let available: Vec<usize> = results.iter().map(|(r, _)| r.as_ref().map_or(0, Vec::len)).collect();
    let shares: Vec<f64> = plan.iter().map(|p| p.1).collect();
    let budgets = water_fill(k, &shares, &available);
    let mut lists = Vec::new();
    for ((&(source, _, _), (r, elapsed)), &budget) in plan.iter().zip(results).zip(&budgets) {
        let mut report = SourceReport { name: source.name(), elapsed, ..Default::default() };
        match r {
            Ok(mut hits) => {
                report.returned = hits.len();
                hits.truncate(budget);
                report.used = hits.len();
                lists.push((source, hits));
            }
            Err(why) => {
                report.dropped = Some(why);
                out.timed_out |= 1 << source.slot();
            }
        }
        out.reports.push(report);
    }
    let weights: std::collections::HashMap<Source, f64> = plan.iter().map(|p| (p.0, p.2)).collect();
    let mut rows = fuse(&lists, |s| weights.get(&s).copied().unwrap_or(0.0));
    rows.truncate(k);
    // Back-fill a short list (cold start, sparse region) with its own provenance.
    for &source in backfill {
        if rows.len() >= k {
            break;
        }
        let have: HashSet<u64> = rows.iter().map(|r| r.id).collect();
        let hits: Vec<Hit> = req
            .run(source, k + have.len())
            .into_iter()
            .filter(|(id, _)| !have.contains(id))
            .take(k - rows.len())
            .collect();
        let floor = rows.last().map_or(0.0, |r| r.score);
        for (rank, (id, _)) in hits.into_iter().enumerate() {
            let mut ranks = [None; SLOTS];
            ranks[source.slot()] = Some(u16::try_from(rank).unwrap_or(u16::MAX - 1));
            // Back-filled rows rank below every fused row, in their source's order.
            rows.push(Fused { id, score: floor * 0.5 / (1.0 + rank as f64), ranks });
        }
    }
    for r in &rows {
        for (slot, rank) in r.ranks.iter().enumerate() {
            if rank.is_some() {
                out.contributed |= 1 << slot;
            }
        }
    }
    out.rows = rows;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn water_fill_by_hand() {
        // Seed budgets for k = 100, everybody has plenty.
        assert_eq!(water_fill(100, &[0.5, 0.2, 0.1, 0.15, 0.05], &[100; 5]), vec![50, 20, 10, 15, 5]);
        // Collaborative failed (0 available): its 50 go to the others by share.
        let b = water_fill(100, &[0.5, 0.2, 0.1, 0.15, 0.05], &[0, 100, 100, 100, 100]);
        assert_eq!(b[0], 0);
        assert_eq!(b.iter().sum::<usize>(), 100);
        assert_eq!(b, vec![0, 40, 20, 30, 10]);
        // Cold start: only trending has anything.
        assert_eq!(water_fill(100, &[0.5, 0.2, 0.1, 0.15, 0.05], &[0, 0, 300, 0, 0]), vec![0, 0, 100, 0, 0]);
    }

    proptest! {
        #[test]
        fn water_fill_uses_all_it_can_and_never_overdraws(k in 0usize..2000, shares in proptest::collection::vec(0.0f64..1.0, 1..7), seed in any::<u64>()) {
            let available: Vec<usize> = shares.iter().enumerate().map(|(i, _)| ((seed >> (i * 7)) % 800) as usize).collect();
            let b = water_fill(k, &shares, &available);
            for (x, a) in b.iter().zip(&available) {
                prop_assert!(x <= a);
            }
            prop_assert_eq!(b.iter().sum::<usize>(), k.min(available.iter().sum()));
        }
    }
}
