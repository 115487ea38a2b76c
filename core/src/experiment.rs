//! Experiments, decided the same way wherever they are evaluated: who is in
//! which variant ([`assign`]), two rankings of one bundle interleaved by
//! team draft ([`team_draft`], [`credit`]), and Thompson sampling over
//! variants ([`thompson`], [`thompson_shares`]).
//!
//! Every function here is a pure function of its inputs and a seed: the
//! hashes are XXH3-64, the random numbers a SplitMix64 stream, and the
//! floating point only IEEE additions, multiplications and divisions plus
//! `libm`'s `log`, `sqrt` and `cos` (the pure-Rust port, the same code on
//! every target), so the origin, the edges, the CDN adapters and the browser
//! (through the wasm core) agree bit for bit.
//!
//! # Assignment
//! A user falls in one of [`BUCKETS`] buckets per experiment, from a hash of
//! the experiment's salt and the user id. Two independent hashes decide:
//! whether the user is enrolled (bucket below the ramp, in basis points of
//! users) and, if so, which variant (the variants' allocations, in basis
//! points summing to [`BUCKETS`], laid end to end). So assignment is sticky
//! (the same user, salt and allocation always give the same answer), and
//! ramping up is monotone: a user enrolled at 5% is enrolled, in the same
//! variant, at 10%, 30%, 50% and 100%.
//!
//! # Team-draft interleaving
//! (Radlinski, Kurup and Joachims, "How does clickthrough data reflect
//! retrieval quality?", CIKM 2008.) Two teams, A and B, each with its own
//! ranking, pick in turns; the team with fewer picks goes next, and a coin
//! decides when they have picked as many. Each picks its highest-ranked item
//! not yet taken. A click credits the team that placed the item; the
//! ranking with more credited clicks wins the impression.
//!
//! # Thompson sampling
//! Each variant's click-through rate has a Beta(1 + clicks, 1 + non-clicks)
//! posterior; a draw from each posterior picks the variant with the highest
//! draw. Beta draws are two Gamma draws (Marsaglia and Tsang's method,
//! "A simple method for generating gamma variables", ACM TOMS 2000), their
//! normals from Box–Muller.

use alloc::vec::Vec;

/// Buckets of the sticky hash: ramps and allocations are in basis points of users.
pub const BUCKETS: u32 = 10_000;

/// The most variants an experiment may have.
pub const MAX_VARIANTS: usize = 16;

/// Why an allocation or a ramp is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum ExperimentError {
    /// No variant, or more than [`MAX_VARIANTS`].
    #[error("an experiment needs 1..={max} variants, not {found}")]
    VariantCount { found: usize, max: usize },
    /// The variants' allocations do not cover every enrolled user exactly once.
    #[error("the variants' allocations sum to {found} basis points, not 10000")]
    AllocationSum { found: u64 },
    /// A ramp above 100%.
    #[error("the ramp is {found} basis points, above 10000")]
    Ramp { found: u32 },
}

/// Which of the two hashes a bucket is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Enrolment: the bucket is compared with the ramp.
    Enrol = 0,
    /// The variant: the bucket is looked up in the allocations.
    Variant = 1,
}

/// `user`'s bucket (0..[`BUCKETS`]) for an experiment's `salt` at `stage`.
pub fn bucket(salt: u64, stage: Stage, user: u64) -> u32 {
    let mut b = [0u8; 17];
    b[..8].copy_from_slice(&salt.to_le_bytes());
    b[8] = stage as u8;
    b[9..].copy_from_slice(&user.to_le_bytes());
    (xxhash_rust::xxh3::xxh3_64(&b) % u64::from(BUCKETS)) as u32
}

/// Where a user is in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Assignment {
    /// Not enrolled (above the ramp): served as if there were no experiment.
    Outside,
    /// Enrolled in the variant with this index.
    Variant(u8),
}

/// Checks variant allocations (basis points of enrolled users): 1..=[`MAX_VARIANTS`]
/// of them, summing to [`BUCKETS`].
pub fn check_allocations(allocations_bp: &[u32]) -> Result<(), ExperimentError> {
    if allocations_bp.is_empty() || allocations_bp.len() > MAX_VARIANTS {
        return Err(ExperimentError::VariantCount { found: allocations_bp.len(), max: MAX_VARIANTS });
    }
    let sum: u64 = allocations_bp.iter().map(|&a| u64::from(a)).sum();
    if sum != u64::from(BUCKETS) {
        return Err(ExperimentError::AllocationSum { found: sum });
    }
    Ok(())
}

/// The assignment of `user` to the experiment salted `salt`, enrolling
/// `ramp_bp` basis points of users and splitting them by `allocations_bp`.
pub fn assign(user: u64, salt: u64, ramp_bp: u32, allocations_bp: &[u32]) -> Result<Assignment, ExperimentError> {
    check_allocations(allocations_bp)?;
    if ramp_bp > BUCKETS {
        return Err(ExperimentError::Ramp { found: ramp_bp });
    }
    if bucket(salt, Stage::Enrol, user) >= ramp_bp {
        return Ok(Assignment::Outside);
    }
    let b = bucket(salt, Stage::Variant, user);
    let mut end = 0u32;
    for (i, &a) in allocations_bp.iter().enumerate() {
        end += a;
        if b < end {
            // i < MAX_VARIANTS = 16.
            return Ok(Assignment::Variant(i as u8));
        }
    }
    // The allocations sum to BUCKETS > b, so the loop returned.
    Ok(Assignment::Variant((allocations_bp.len() - 1) as u8))
}

/// The team that placed an interleaved item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Team {
    /// Ranking A.
    A,
    /// Ranking B.
    B,
}

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014): the stream every draw here comes from.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw in the open interval (0, 1): 53 random bits, centred.
    pub fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A standard normal draw (Box–Muller, the cosine branch).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.open01(), self.open01());
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * core::f64::consts::PI * u2)
    }
}

/// Merges rankings `a` and `b` (best first) by team draft into at most `k`
/// items, writing `(item, team)` pairs into `out` (cleared first). The coin
/// for the turns where both teams have picked as many items is drawn from
/// `seed`. An item both rankings hold is placed once, by the team that
/// picks it first; a team whose ranking has nothing left lets the other
/// pick. Duplicates within one ranking are skipped.
pub fn team_draft(a: &[u64], b: &[u64], k: usize, seed: u64, out: &mut Vec<(u64, Team)>) {
    out.clear();
    let mut coins = SplitMix64::new(seed);
    let (mut ia, mut ib, mut na, mut nb) = (0usize, 0usize, 0usize, 0usize);
    let taken = |out: &[(u64, Team)], id: u64| out.iter().any(|&(x, _)| x == id);
    while out.len() < k {
        while ia < a.len() && taken(out, a[ia]) {
            ia += 1;
        }
        while ib < b.len() && taken(out, b[ib]) {
            ib += 1;
        }
        let (a_left, b_left) = (ia < a.len(), ib < b.len());
        let a_turn = match (a_left, b_left) {
            (false, false) => break,
            (true, false) => true,
            (false, true) => false,
            (true, true) => na < nb || (na == nb && coins.next_u64() & 1 == 0),
        };
        if a_turn {
            out.push((a[ia], Team::A));
            na += 1;
        } else {
            out.push((b[ib], Team::B));
            nb += 1;
        }
    }
}

/// Which ranking an interleaved impression prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preference {
    /// A's items got more clicks.
    A,
    /// B's items got more clicks.
    B,
    /// As many, or none.
    Tie,
}

/// Credits each click on `interleaved` to the team that placed the item
/// (clicks on other items, and repeated clicks, count nothing): A's clicks,
/// B's clicks, and the preference.
pub fn credit(interleaved: &[(u64, Team)], clicked: &[u64]) -> (u32, u32, Preference) {
    let (mut ca, mut cb) = (0u32, 0u32);
    for (i, &(item, team)) in interleaved.iter().enumerate() {
        // An item is placed once; count it once however often it was clicked.
        if clicked.contains(&item) && !interleaved[..i].iter().any(|&(x, _)| x == item) {
            match team {
                Team::A => ca += 1,
                Team::B => cb += 1,
            }
        }
    }
    let p = match ca.cmp(&cb) {
        core::cmp::Ordering::Greater => Preference::A,
        core::cmp::Ordering::Less => Preference::B,
        core::cmp::Ordering::Equal => Preference::Tie,
    };
    (ca, cb, p)
}

/// A Gamma(`shape`, 1) draw, `shape` > 0 and finite (Marsaglia–Tsang; for
/// `shape` < 1, a Gamma(`shape` + 1) draw times `u^(1/shape)`). A draw that
/// the method rejects 64 times in a row (probability below 10⁻⁸⁰) returns
/// the mode's neighbourhood `d`, so the loop is bounded.
pub fn gamma(shape: f64, rng: &mut SplitMix64) -> f64 {
    if shape < 1.0 {
        let g = gamma(shape + 1.0, rng);
        return g * libm::pow(rng.open01(), 1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / libm::sqrt(9.0 * d);
    for _ in 0..64 {
        let x = rng.normal();
        let t = 1.0 + c * x;
        if t <= 0.0 {
            continue;
        }
        let v = t * t * t;
        let u = rng.open01();
        if libm::log(u) < 0.5 * x * x + d - d * v + d * libm::log(v) {
            return d * v;
        }
    }
    d
}

/// A Beta(`a`, `b`) draw (`a`, `b` > 0): `x / (x + y)` for Gamma draws `x`, `y`.
pub fn beta(a: f64, b: f64, rng: &mut SplitMix64) -> f64 {
    let x = gamma(a, rng);
    let y = gamma(b, rng);
    if x + y > 0.0 { x / (x + y) } else { 0.5 }
}

/// Clicks and exposures of one variant, as the bandit's posterior reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arm {
    /// Exposures that were clicked.
    pub clicks: u64,
    /// Exposures.
    pub exposures: u64,
}

impl Arm {
    /// The posterior's parameters: Beta(1 + clicks, 1 + exposures − clicks)
    /// (clicks above exposures count as exposures).
    pub fn posterior(&self) -> (f64, f64) {
        let clicks = self.clicks.min(self.exposures);
        (1.0 + clicks as f64, 1.0 + (self.exposures - clicks) as f64)
    }
}

/// One Thompson-sampling decision for `seed`: the arm whose posterior draw
/// is highest (the first on ties); `None` without arms.
pub fn thompson(arms: &[Arm], seed: u64) -> Option<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut best: Option<(usize, f64)> = None;
    for (i, arm) in arms.iter().enumerate() {
        let (a, b) = arm.posterior();
        let x = beta(a, b, &mut rng);
        if best.is_none_or(|(_, y)| x > y) {
            best = Some((i, x));
        }
    }
    best.map(|(i, _)| i)
}

/// The share of traffic Thompson sampling gives each arm: the fraction of
/// `draws` decisions (seeds `seed`, `seed + 1`, …) each arm wins.
pub fn thompson_shares(arms: &[Arm], draws: u32, seed: u64) -> Vec<f64> {
    let mut wins = alloc::vec![0u32; arms.len()];
    for d in 0..draws {
        if let Some(i) = thompson(arms, seed.wrapping_add(u64::from(d))) {
            wins[i] += 1;
        }
    }
    wins.iter().map(|&w| if draws == 0 { 0.0 } else { f64::from(w) / f64::from(draws) }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;

    /// Team draft as the paper states it, written without index bookkeeping:
    /// each turn recomputes both teams' best untaken items from scratch.
    fn reference_team_draft(a: &[u64], b: &[u64], k: usize, seed: u64) -> Vec<(u64, Team)> {
        let mut out: Vec<(u64, Team)> = Vec::new();
        let mut coins = SplitMix64::new(seed);
        loop {
            if out.len() >= k {
                break;
            }
            let has = |id: &u64| out.iter().any(|(x, _)| x == id);
            let next_a = a.iter().find(|id| !has(id)).copied();
            let next_b = b.iter().find(|id| !has(id)).copied();
            let count = |t: Team| out.iter().filter(|(_, x)| *x == t).count();
            let pick = match (next_a, next_b) {
                (None, None) => break,
                (Some(x), None) => (x, Team::A),
                (None, Some(y)) => (y, Team::B),
                (Some(x), Some(y)) => {
                    let (na, nb) = (count(Team::A), count(Team::B));
                    if na < nb || (na == nb && coins.next_u64() & 1 == 0) { (x, Team::A) } else { (y, Team::B) }
                }
            };
            out.push(pick);
        }
        out
    }

    proptest! {
        #[test]
        fn team_draft_matches_the_reference_and_keeps_its_promises(
            a in proptest::collection::vec(0u64..40, 0..30),
            b in proptest::collection::vec(0u64..40, 0..30),
            k in 0usize..50,
            seed in any::<u64>(),
        ) {
            let mut got = Vec::new();
            team_draft(&a, &b, k, seed, &mut got);
            prop_assert_eq!(&got, &reference_team_draft(&a, &b, k, seed));
            // No item twice; as many as asked for, or every distinct item.
            let mut ids: Vec<u64> = got.iter().map(|p| p.0).collect();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), got.len());
            let mut all: Vec<u64> = a.iter().chain(&b).copied().collect();
            all.sort_unstable();
            all.dedup();
            prop_assert_eq!(got.len(), k.min(all.len()));
            // Each team's items keep their ranking's order.
            for (team, list) in [(Team::A, &a), (Team::B, &b)] {
                let pos: Vec<usize> = got
                    .iter()
                    .filter(|p| p.1 == team)
                    .map(|p| list.iter().position(|&x| x == p.0).expect("a team places only its own items"))
                    .collect();
                prop_assert!(pos.windows(2).all(|w| w[0] < w[1]), "{:?}", pos);
            }
        }

        #[test]
        fn assignment_is_sticky_and_ramping_up_never_moves_anyone(
            user in any::<u64>(), salt in any::<u64>(), r1 in 0u32..=10_000, r2 in 0u32..=10_000,
            split in 0u32..=10_000,
        ) {
            let alloc = [split, BUCKETS - split];
            let (lo, hi) = (r1.min(r2), r1.max(r2));
            let at_lo = assign(user, salt, lo, &alloc).expect("valid");
            let at_hi = assign(user, salt, hi, &alloc).expect("valid");
            prop_assert_eq!(at_lo, assign(user, salt, lo, &alloc).expect("valid"), "sticky");
            if at_lo != Assignment::Outside {
                prop_assert_eq!(at_lo, at_hi, "enrolled at {} stays in the same variant at {}", lo, hi);
            }
            prop_assert_eq!(assign(user, salt, BUCKETS, &alloc).expect("valid") == Assignment::Outside, false);
            prop_assert_eq!(assign(user, salt, 0, &alloc).expect("valid"), Assignment::Outside);
        }
    }

    #[test]
    fn allocations_split_users_as_asked() {
        let alloc = [2_000, 3_000, 5_000];
        let mut counts = [0u32; 4];
        for user in 0..100_000u64 {
            match assign(user, 42, 5_000, &alloc).expect("valid") {
                Assignment::Outside => counts[3] += 1,
                Assignment::Variant(i) => counts[usize::from(i)] += 1,
            }
        }
        // Half enrolled, then 20/30/50 of those; within 1.5% of each count.
        for (got, want) in counts.iter().zip([10_000.0, 15_000.0, 25_000.0, 50_000.0]) {
            assert!((f64::from(*got) - want).abs() < want * 0.015 + 300.0, "{counts:?}");
        }
        // Another salt: another, independent split.
        let moved = (0..10_000u64)
            .filter(|&u| assign(u, 42, 10_000, &alloc).ok() != assign(u, 43, 10_000, &alloc).ok())
            .count();
        assert!(moved > 4_000, "{moved} of 10000 users changed variant with the salt");
    }

    #[test]
    fn bad_allocations_and_ramps_are_refused_by_name() {
        assert_eq!(assign(1, 1, 100, &[]), Err(ExperimentError::VariantCount { found: 0, max: MAX_VARIANTS }));
        assert_eq!(assign(1, 1, 100, &[5_000, 4_000]), Err(ExperimentError::AllocationSum { found: 9_000 }));
        assert_eq!(assign(1, 1, 100, &[u32::MAX, 1]), Err(ExperimentError::AllocationSum { found: 1 << 32 }));
        assert_eq!(assign(1, 1, 10_001, &[10_000]), Err(ExperimentError::Ramp { found: 10_001 }));
        assert!(matches!(check_allocations(&[625; 17]), Err(ExperimentError::VariantCount { found: 17, .. })));
        assert_eq!(check_allocations(&[625; 16]), Ok(()));
    }

    #[test]
    fn credit_counts_each_teams_clicked_items_once() {
        let il = vec![(1, Team::A), (5, Team::B), (2, Team::A), (6, Team::B)];
        assert_eq!(credit(&il, &[5, 6, 6, 99]), (0, 2, Preference::B));
        assert_eq!(credit(&il, &[1]), (1, 0, Preference::A));
        assert_eq!(credit(&il, &[1, 5]), (1, 1, Preference::Tie));
        assert_eq!(credit(&il, &[]), (0, 0, Preference::Tie));
    }

    #[test]
    fn draws_have_their_distributions_moments() {
        let mut rng = SplitMix64::new(7);
        let n = 40_000;
        for shape in [0.5, 1.0, 2.5, 30.0] {
            let xs: Vec<f64> = (0..n).map(|_| gamma(shape, &mut rng)).collect();
            let mean = xs.iter().sum::<f64>() / f64::from(n);
            let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / f64::from(n);
            // Gamma(k, 1): mean k, variance k; the mean's standard error is sqrt(k/n).
            assert!((mean - shape).abs() < 5.0 * libm::sqrt(shape / f64::from(n)), "shape {shape}: mean {mean}");
            assert!((var - shape).abs() < 0.1 * shape, "shape {shape}: variance {var}");
        }
        let xs: Vec<f64> = (0..n).map(|_| beta(3.0, 7.0, &mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / f64::from(n);
        assert!((mean - 0.3).abs() < 0.005, "Beta(3, 7) mean {mean}");
        assert!(xs.iter().all(|x| (0.0..=1.0).contains(x)));
    }

    /// P(X > Y) for X ~ Beta(a1, b1), Y ~ Beta(a2, b2), integer shapes:
    /// numerically, on a fine grid of X's density times Y's CDF.
    fn p_greater(a1: f64, b1: f64, a2: f64, b2: f64) -> f64 {
        let steps = 20_000;
        let pdf = |a: f64, b: f64, x: f64| {
            let ln_b = libm::lgamma(a) + libm::lgamma(b) - libm::lgamma(a + b);
            libm::exp((a - 1.0) * libm::log(x) + (b - 1.0) * libm::log(1.0 - x) - ln_b)
        };
        let h = 1.0 / f64::from(steps);
        let (mut cdf_y, mut p) = (0.0, 0.0);
        for i in 0..steps {
            let x = (f64::from(i) + 0.5) * h;
            cdf_y += pdf(a2, b2, x) * h;
            p += pdf(a1, b1, x) * cdf_y * h;
        }
        p
    }

    #[test]
    fn thompson_gives_each_arm_its_probability_of_being_best_and_is_deterministic() {
        let arms = [Arm { clicks: 12, exposures: 100 }, Arm { clicks: 18, exposures: 100 }];
        let shares = thompson_shares(&arms, 20_000, 1);
        let want = p_greater(19.0, 83.0, 13.0, 89.0);
        assert!((shares[1] - want).abs() < 0.015, "share of the better arm {} against P(best) {want}", shares[1]);
        assert!((shares[0] + shares[1] - 1.0).abs() < 1e-12);
        assert_eq!(thompson_shares(&arms, 500, 9), thompson_shares(&arms, 500, 9), "same seed, same shares");
        assert_eq!(thompson(&[], 1), None);
        assert_eq!(thompson(&[Arm::default()], 1), Some(0));
        // Clicks above exposures are read as exposures, never a negative count.
        assert_eq!(Arm { clicks: 9, exposures: 3 }.posterior(), (4.0, 1.0));
    }
}
