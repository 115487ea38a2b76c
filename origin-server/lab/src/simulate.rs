//! `edgewise-lab simulate`: what A/B tests, interleaving and bandits cost on
//! MovieLens-100K, by simulation (issue 21's study).
//!
//! **The simulated users.** Every user with a held-out item visits; a visit
//! shows 10 items and each is clicked, independently, with probability
//! `truth(user, item) · bias(position)`. The truth is a model fitted on all
//! of the user's data: their ALS embedding folded in
//! ([`crate::train::als::FoldIn`]) from every interaction, held-out ones
//! included, against the trained item factors, and
//! `truth = 0.5 · clamp(user · item, 0, 1)`; `bias(p) = 1 / log2(p + 2)`.
//! The rankings they are shown are real: each user's top 10 from the
//! pipeline (the origin's candidates ranked by the core with the trained
//! model) and from a weaker variant (MF only, or popularity), as `eval`
//! computes them as of the user's held-out moment.
//!
//! **What is measured**, over `runs` runs with their own seeds:
//! * *users needed*: users arrive one at a time (drawn uniformly); an A/B
//!   test puts each in a variant by the core's sticky assignment (50/50) and
//!   reads the always-valid test ([`edgewise_experiments::Sequential`]) on
//!   per-impression clicks every `read_every` users; interleaving shows each
//!   user the team draft of both rankings ([`edgewise_core::experiment`]) and
//!   reads the same test on the per-user preference (+1 the pipeline wins,
//!   −1 the other, 0 a tie). Each stops when it calls one variant better at
//!   5%, or at `max_users`; a call is right when it names the variant whose
//!   lists get more expected clicks under the truth. (The truth is of the
//!   ALS family, so it can favour MF's lists over the pipeline's: the study
//!   measures how fast each method finds the better one, whichever it is);
//! * *regret*: over `visits` visits, Thompson sampling
//!   ([`edgewise_core::experiment::thompson`]) against a fixed 50/50 split,
//!   in expected clicks lost to the worse variant;
//! * *A/A*: both variants the pipeline, read every `read_every` users up to
//!   `aa_users`: the share of runs the sequential test and a fixed-horizon
//!   z-test read as often ever call significant.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use edgewise_core::experiment::{self, Arm, Assignment};
use edgewise_experiments::{Counts, Msprt, Sequential, z_test};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::eval::UserLists;
use crate::plot::{BarChart, LineChart, PlotError, Series};
use crate::train::UserEmbedder;
use edgewise_origin::store::Interaction;

/// Items per visit.
pub const SHOWN: usize = 10;
/// The truth's scale: a perfectly predicted item is clicked half the time at the top.
const TRUTH_SCALE: f64 = 0.5;

/// Settings of the study.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimOptions {
    /// Runs per measurement.
    pub runs: u32,
    /// The most users a test may take before it is given up.
    pub max_users: u32,
    /// Visits of the bandit comparison.
    pub visits: u32,
    /// Users per A/A test.
    pub aa_users: u32,
    /// Users between two reads of a test.
    pub read_every: u32,
    /// The mixture variance of the A/B tests' sequential test: the squared
    /// difference of per-impression click rates it is most sensitive to.
    pub tau2: f64,
    /// The same for interleaving, whose statistic is the mean preference in
    /// [−1, 1] (a larger scale than a difference of click rates).
    pub tau2_interleaving: f64,
    /// Seed of the first run.
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            runs: 200,
            max_users: 20_000,
            visits: 20_000,
            aa_users: 5_000,
            read_every: 20,
            tau2: 0.01 * 0.01,
            tau2_interleaving: 0.1 * 0.1,
            seed: 1,
        }
    }
}

impl SimOptions {
    /// The sequential tests at 5%: the A/B tests' and interleaving's; an
    /// error names a mixture variance that is not positive and finite.
    pub fn tests(&self) -> Result<(Msprt, Msprt), String> {
        let test = |tau2| Msprt::new(tau2, 0.05).map_err(|e| e.to_string());
        Ok((test(self.tau2)?, test(self.tau2_interleaving)?))
    }

    /// Checks the settings: positive runs and read interval, tests at least
    /// one read long, valid sequential tests.
    pub fn check(&self) -> Result<(), String> {
        self.tests()?;
        if self.runs == 0 || self.read_every == 0 || self.max_users < self.read_every || self.aa_users < self.read_every
        {
            return Err(format!(
                "runs ({}) and read_every ({}) must be positive, and max_users ({}) and aa_users ({}) at least read_every",
                self.runs, self.read_every, self.max_users, self.aa_users
            ));
        }
        Ok(())
    }
}

/// One simulated user: the click probability of each item they may be shown.
#[derive(Debug, Clone)]
pub struct SimUser {
    /// The pipeline's top 10.
    pub a: Vec<u64>,
    /// The other variant's top 10.
    pub b: Vec<u64>,
    truth: HashMap<u64, f64>,
}

impl SimUser {
    fn p(&self, item: u64, position: usize) -> f64 {
        self.truth.get(&item).copied().unwrap_or(0.0) / ((position + 2) as f64).log2()
    }

    /// Expected clicks of a visit showing `list`.
    fn expected(&self, list: &[u64]) -> f64 {
        list.iter().enumerate().map(|(i, &id)| self.p(id, i)).sum()
    }

    fn visit(&self, list: &[u64], rng: &mut impl Rng) -> u64 {
        list.iter().enumerate().filter(|&(i, &id)| rng.random_bool(self.p(id, i).clamp(0.0, 1.0))).count() as u64
    }
}

/// Each listed user's truth embedding: every interaction in `log` folded
/// in against the trained item factors (empty for a user without any).
pub fn truths(
    lists: &[UserLists],
    log: &HashMap<u64, Vec<Interaction>>,
    embedder: &UserEmbedder,
) -> Result<Vec<Vec<f32>>, String> {
    lists
        .iter()
        .map(|l| embedder.embed(log.get(&l.user).map_or(&[][..], Vec::as_slice)).map_err(|e| e.to_string()))
        .collect()
}

/// Builds the simulated users of one comparison: each user's lists (`b` by
/// `other`: `"mf"` or `"popularity"`) and the click probability of each
/// item in them, from the user's truth embedding (`truths`, in `lists`
/// order) and the item's (`embedding_of`).
pub fn users<'e>(
    lists: &[UserLists],
    other: &str,
    truths: &[Vec<f32>],
    embedding_of: impl Fn(u64) -> Option<&'e [f32]>,
) -> Result<Vec<SimUser>, String> {
    let mut out = Vec::with_capacity(lists.len());
    for (l, x) in lists.iter().zip(truths) {
        let b = match other {
            "mf" => &l.mf,
            "popularity" => &l.popularity,
            _ => return Err(format!("unknown variant {other:?}: mf or popularity")),
        };
        let truth = l
            .pipeline
            .iter()
            .chain(b)
            .filter_map(|&id| embedding_of(id).map(|e| (id, e)))
            .map(|(id, e)| {
                let dot: f64 = x.iter().zip(e).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                (id, TRUTH_SCALE * dot.clamp(0.0, 1.0))
            })
            .collect();
        out.push(SimUser { a: l.pipeline.clone(), b: b.clone(), truth });
    }
    Ok(out)
}

/// Median and quartiles of how many users a test needed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct UsersNeeded {
    /// Median (a run that never decided counts as `max_users`).
    pub median: f64,
    /// First quartile.
    pub p25: f64,
    /// Third quartile.
    pub p75: f64,
    /// Runs that called the better variant (by the truth's expected clicks) better within `max_users`.
    pub decided: u32,
    /// Runs that called the worse variant better.
    pub wrong: u32,
    /// Runs.
    pub runs: u32,
}

fn quartiles(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| xs.get(((xs.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN);
    (at(0.5), at(0.25), at(0.75))
}

/// One comparison's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The variant the pipeline is compared with.
    pub other: String,
    /// Expected clicks per visit, pipeline.
    pub clicks_per_visit_pipeline: f64,
    /// Expected clicks per visit, the other variant.
    pub clicks_per_visit_other: f64,
    /// Users an A/B test needed.
    pub ab: UsersNeeded,
    /// Users interleaving needed.
    pub interleaving: UsersNeeded,
    /// A/B's median over interleaving's.
    pub ab_over_interleaving: f64,
    /// Mean expected clicks lost by Thompson sampling over `visits` visits.
    pub thompson_regret: f64,
    /// Expected clicks lost by a fixed 50/50 split over the same visits.
    pub fifty_fifty_regret: f64,
    /// The pipeline's share of Thompson's visits, per tenth of the horizon (run 0).
    pub thompson_share_over_time: Vec<f64>,
}

/// The whole study.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Study {
    /// The settings.
    pub options: SimOptions,
    /// Simulated users.
    pub users: usize,
    /// The pipeline against MF only, and against popularity.
    pub comparisons: Vec<Comparison>,
    /// A/A runs whose sequential test was ever significant.
    pub aa_sequential_false_positives: f64,
    /// A/A runs whose fixed-horizon z-test, read as often, was ever significant.
    pub aa_fixed_horizon_false_positives: f64,
}

fn ab_run(users: &[SimUser], test: Msprt, o: &SimOptions, run: u64) -> (f64, Option<bool>) {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(o.seed.wrapping_mul(1_000_003).wrapping_add(run));
    let mut s = Sequential::new(test);
    let (mut a, mut b) = (Counts::default(), Counts::default());
    for n in 1..=o.max_users {
        let id = rng.random::<u64>();
        let u = &users[rng.random_range(0..users.len())];
        match experiment::assign(id, run, experiment::BUCKETS, &[5_000, 5_000]) {
            Ok(Assignment::Variant(0)) => {
                a.exposures += SHOWN as u64;
                a.clicks += u.visit(&u.a, &mut rng);
            }
            _ => {
                b.exposures += SHOWN as u64;
                b.clicks += u.visit(&u.b, &mut rng);
            }
        }
        if n % o.read_every == 0 && s.observe(a, b) <= 0.05 {
            // θ = rate_b − rate_a: the interval excludes 0; below it, the pipeline is better.
            return (f64::from(n), Some(s.high < 0.0));
        }
    }
    (f64::from(o.max_users), None)
}

fn interleaving_run(users: &[SimUser], test: Msprt, o: &SimOptions, run: u64) -> (f64, Option<bool>) {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(o.seed.wrapping_mul(2_000_003).wrapping_add(run));
    let mut s = Sequential::new(test);
    let (mut sum, mut sq) = (0.0f64, 0.0f64);
    let mut merged = Vec::new();
    let mut clicked = Vec::new();
    for n in 1..=o.max_users {
        let u = &users[rng.random_range(0..users.len())];
        experiment::team_draft(&u.a, &u.b, SHOWN, rng.random::<u64>(), &mut merged);
        clicked.clear();
        for (i, &(id, _)) in merged.iter().enumerate() {
            if rng.random_bool(u.p(id, i).clamp(0.0, 1.0)) {
                clicked.push(id);
            }
        }
        let x = match experiment::credit(&merged, &clicked).2 {
            experiment::Preference::A => 1.0,
            experiment::Preference::B => -1.0,
            experiment::Preference::Tie => 0.0,
        };
        sum += x;
        sq += x * x;
        if n % o.read_every == 0 {
            let m = f64::from(n);
            let mean = sum / m;
            let var = (sq - m * mean * mean) / (m - 1.0).max(1.0);
            if s.observe_read(test.read_estimate(mean, var / m)) <= 0.05 {
                return (m, Some(s.low > 0.0));
            }
        }
    }
    (f64::from(o.max_users), None)
}

/// `results`: per run, the users it took and whether it called the pipeline
/// better (`None`: undecided); `pipeline_better`: what the truth says.
fn needed(results: Vec<(f64, Option<bool>)>, pipeline_better: bool) -> UsersNeeded {
    let runs = results.len() as u32;
    let decided = results.iter().filter(|r| r.1 == Some(pipeline_better)).count() as u32;
    let wrong = results.iter().filter(|r| r.1 == Some(!pipeline_better)).count() as u32;
    let (median, p25, p75) = quartiles(results.into_iter().map(|r| r.0).collect());
    UsersNeeded { median, p25, p75, decided, wrong, runs }
}

/// Thompson sampling's expected regret over `o.visits` visits (and the
/// pipeline's share per tenth of the horizon).
fn thompson_run(users: &[SimUser], mu: [f64; 2], o: &SimOptions, run: u64) -> (f64, Vec<f64>) {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(o.seed.wrapping_mul(3_000_017).wrapping_add(run));
    let best = mu[0].max(mu[1]);
    let mut arms = [Arm::default(); 2];
    let (mut regret, mut shares, mut chose_a) = (0.0, Vec::new(), 0u32);
    let tenth = (o.visits / 10).max(1);
    for t in 0..o.visits {
        let k = experiment::thompson(&arms, rng.random::<u64>()).unwrap_or(0);
        let u = &users[rng.random_range(0..users.len())];
        let list = if k == 0 { &u.a } else { &u.b };
        arms[k].exposures += SHOWN as u64;
        arms[k].clicks += u.visit(list, &mut rng);
        regret += best - mu[k];
        chose_a += u32::from(k == 0);
        if (t + 1) % tenth == 0 {
            shares.push(f64::from(chose_a) / f64::from(tenth));
            chose_a = 0;
        }
    }
    (regret, shares)
}

/// A/A runs: the share the sequential test, and the z-test read as often, call significant.
fn aa(users: &[SimUser], test: Msprt, o: &SimOptions) -> (f64, f64) {
    let (mut seq, mut naive) = (0u32, 0u32);
    for run in 0..o.runs {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(o.seed.wrapping_mul(4_000_037).wrapping_add(u64::from(run)));
        let mut s = Sequential::new(test);
        let (mut a, mut b) = (Counts::default(), Counts::default());
        let mut fired = false;
        for n in 1..=o.aa_users {
            let u = &users[rng.random_range(0..users.len())];
            let side = if rng.random_bool(0.5) { &mut a } else { &mut b };
            side.exposures += SHOWN as u64;
            side.clicks += u.visit(&u.a, &mut rng);
            if n % o.read_every == 0 {
                s.observe(a, b);
                fired |= z_test(a, b).is_some_and(|p| p < 0.05);
            }
        }
        seq += u32::from(s.significant());
        naive += u32::from(fired);
    }
    (f64::from(seq) / f64::from(o.runs.max(1)), f64::from(naive) / f64::from(o.runs.max(1)))
}

/// Runs the study on simulated users per comparison (`("mf", users)`, …);
/// `progress(done, total)` after each measurement.
pub fn study(
    comparisons: &[(&str, Vec<SimUser>)],
    o: &SimOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<Study, String> {
    o.check()?;
    if comparisons.is_empty() {
        return Err("no comparison to simulate".into());
    }
    let (ab_test, il_test) = o.tests()?;
    let total = comparisons.len() as u64 * 3 + 1;
    let mut done = 0;
    let mut out = Vec::new();
    let mut simulated = 0;
    for (other, users) in comparisons {
        if users.is_empty() {
            return Err(format!("no simulated users for {other}"));
        }
        simulated = users.len();
        let n = users.len() as f64;
        let mu = [
            users.iter().map(|u| u.expected(&u.a)).sum::<f64>() / n,
            users.iter().map(|u| u.expected(&u.b)).sum::<f64>() / n,
        ];
        let pipeline_better = mu[0] > mu[1];
        let ab = needed((0..o.runs).map(|r| ab_run(users, ab_test, o, u64::from(r))).collect(), pipeline_better);
        done += 1;
        progress(done, total);
        let il =
            needed((0..o.runs).map(|r| interleaving_run(users, il_test, o, u64::from(r))).collect(), pipeline_better);
        done += 1;
        progress(done, total);
        let bandit_runs = (o.runs / 10).max(1);
        let runs: Vec<(f64, Vec<f64>)> = (0..bandit_runs).map(|r| thompson_run(users, mu, o, u64::from(r))).collect();
        done += 1;
        progress(done, total);
        out.push(Comparison {
            other: (*other).to_string(),
            clicks_per_visit_pipeline: mu[0],
            clicks_per_visit_other: mu[1],
            ab_over_interleaving: ab.median / il.median,
            ab,
            interleaving: il,
            thompson_regret: runs.iter().map(|r| r.0).sum::<f64>() / f64::from(bandit_runs),
            fifty_fifty_regret: f64::from(o.visits) * (mu[0] - mu[1]).abs() / 2.0,
            thompson_share_over_time: runs.first().map(|r| r.1.clone()).unwrap_or_default(),
        });
    }
    let (seq, naive) = aa(comparisons.first().map_or(&[][..], |c| c.1.as_slice()), ab_test, o);
    progress(done + 1, total);
    Ok(Study {
        options: *o,
        users: simulated,
        comparisons: out,
        aa_sequential_false_positives: seq,
        aa_fixed_horizon_false_positives: naive,
    })
}

impl Study {
    /// The study as Markdown tables.
    pub fn table(&self) -> String {
        let mut t = format!(
            "{} simulated users, {} runs, read every {} users, at most {} users per test\n\n\
             | pipeline against | clicks/visit (pipeline, other) | A/B users (median [q1, q3]; right, wrong of runs) | interleaving users | A/B ÷ interleaving | Thompson regret | 50/50 regret |\n\
             |---|---|---|---|---:|---:|---:|\n",
            self.users, self.options.runs, self.options.read_every, self.options.max_users
        );
        for c in &self.comparisons {
            let u = |n: &UsersNeeded| {
                format!("{:.0} [{:.0}, {:.0}]; {}, {} of {}", n.median, n.p25, n.p75, n.decided, n.wrong, n.runs)
            };
            t.push_str(&format!(
                "| {} | {:.3}, {:.3} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
                c.other,
                c.clicks_per_visit_pipeline,
                c.clicks_per_visit_other,
                u(&c.ab),
                u(&c.interleaving),
                c.ab_over_interleaving,
                c.thompson_regret,
                c.fifty_fifty_regret
            ));
        }
        t.push_str(&format!(
            "\nA/A tests read {} times: significant in {:.1}% of runs with the sequential test, {:.1}% with the fixed-horizon z-test\n",
            self.options.aa_users / self.options.read_every,
            100.0 * self.aa_sequential_false_positives,
            100.0 * self.aa_fixed_horizon_false_positives
        ));
        t
    }

    /// Writes one PNG per result into `dir`.
    pub fn plots(&self, dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
        let mut paths = Vec::new();
        let users = BarChart {
            title: "Users needed to call the better variant at 5% (median)".into(),
            y_label: "users".into(),
            bars: self
                .comparisons
                .iter()
                .flat_map(|c| {
                    [
                        (format!("A/B vs {}", c.other), c.ab.median),
                        (format!("interleaving vs {}", c.other), c.interleaving.median),
                    ]
                })
                .collect(),
        };
        paths.push(dir.join("users_needed.png"));
        users.write_png(&paths[0])?;
        let regret = BarChart {
            title: format!("Expected clicks lost over {} visits", self.options.visits),
            y_label: "clicks".into(),
            bars: self
                .comparisons
                .iter()
                .flat_map(|c| {
                    [
                        (format!("Thompson vs {}", c.other), c.thompson_regret),
                        (format!("50/50 vs {}", c.other), c.fifty_fifty_regret),
                    ]
                })
                .collect(),
        };
        paths.push(dir.join("regret.png"));
        regret.write_png(&paths[1])?;
        let share = LineChart {
            title: "Thompson sampling: the pipeline's share of visits".into(),
            x_label: "tenth of the horizon".into(),
            y_label: "share".into(),
            log_x: false,
            log_y: false,
            series: self
                .comparisons
                .iter()
                .map(|c| Series {
                    label: format!("vs {}", c.other),
                    points: c.thompson_share_over_time.iter().enumerate().map(|(i, &s)| ((i + 1) as f64, s)).collect(),
                })
                .collect(),
        };
        paths.push(dir.join("thompson_share.png"));
        share.write_png(&paths[2])?;
        let aa = BarChart {
            title: format!(
                "A/A tests called significant, read {} times",
                self.options.aa_users / self.options.read_every
            ),
            y_label: "share of runs".into(),
            bars: vec![
                ("sequential (mSPRT)".into(), self.aa_sequential_false_positives),
                ("fixed-horizon z-test".into(), self.aa_fixed_horizon_false_positives),
            ],
        };
        paths.push(dir.join("aa_false_positives.png"));
        aa.write_png(&paths[3])?;
        Ok(paths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(a: &[u64], b: &[u64], pa: f64, pb: f64) -> SimUser {
        let truth = a.iter().map(|&i| (i, pa)).chain(b.iter().map(|&i| (i, pb))).collect();
        SimUser { a: a.to_vec(), b: b.to_vec(), truth }
    }

    #[test]
    fn a_clearly_better_ranking_is_found_and_interleaving_needs_fewer_users() {
        let users: Vec<SimUser> = (0..50u64)
            .map(|u| user(&[u * 100, u * 100 + 1, u * 100 + 2], &[u * 100 + 50, u * 100 + 51], 0.3, 0.1))
            .collect();
        let o = SimOptions {
            runs: 20,
            max_users: 3_000,
            visits: 2_000,
            aa_users: 1_000,
            read_every: 10,
            ..SimOptions::default()
        };
        let s = study(&[("weak", users)], &o, |_, _| {}).expect("study");
        let c = &s.comparisons[0];
        assert!(c.clicks_per_visit_pipeline > c.clicks_per_visit_other);
        assert_eq!((c.ab.wrong, c.interleaving.wrong), (0, 0));
        assert!(c.interleaving.median < c.ab.median, "{c:?}");
        assert!(c.thompson_regret < c.fifty_fifty_regret, "{c:?}");
        assert!(s.aa_sequential_false_positives <= 0.10);
        assert!(study(&[("weak", Vec::new())], &o, |_, _| {}).is_err());
        assert!(study(&[], &o, |_, _| {}).is_err(), "nothing to simulate is an error, not a panic");
        let bad = SimOptions { read_every: 0, ..o };
        assert!(study(&[], &bad, |_, _| {}).is_err());
    }
}
