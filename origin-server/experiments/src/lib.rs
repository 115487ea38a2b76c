//! # edgewise-experiments
//!
//! The statistics behind an experiment report: per-variant click-through
//! rates with intervals ([`wilson`]), the relative lift of one variant over
//! another ([`lift`]), and two tests of "the variants differ":
//!
//! * [`z_test`]: the fixed-horizon two-proportion z-test. Its p-value is
//!   valid once, at a sample size fixed in advance. Read daily and stopped at
//!   the first p < 0.05, it declares far more A/A tests significant than 5%
//!   ("peeking"; the crate's tests measure it).
//! * [`Msprt`] and [`Sequential`]: the mixture sequential probability ratio
//!   test of Johari, Koomen, Pekelis and Walsh ("Always valid inference:
//!   continuous monitoring of A/B tests", Operations Research 70(3), 2022).
//!   Its p-value and interval are valid at every read, however often the
//!   report is read and whenever the experiment is stopped.
//!
//! Counts come from exposures (impressions that were shown) and clicks per
//! variant; the choice of what counts as an exposure is the caller's (the
//! experiment log's). Where the normal approximation has nothing to stand on
//! (no exposures, or a variance of zero) the tests answer `None`, never a
//! number that looks like evidence.
//!
//! The variant decisions themselves (assignment, interleaving, Thompson
//! sampling) are in `edgewise_core::experiment`, where every platform runs
//! the same code; this crate serves the origin's reports and the offline
//! study, which run in one place.

use serde::Serialize;

/// Exposures and clicks of one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    /// Impressions that were shown.
    pub exposures: u64,
    /// Of those, the ones clicked (at most `exposures`; more is read as `exposures`).
    pub clicks: u64,
}

impl Counts {
    /// The counts.
    pub fn new(exposures: u64, clicks: u64) -> Self {
        Self { exposures, clicks: clicks.min(exposures) }
    }

    /// The click-through rate; `None` without exposures.
    pub fn rate(&self) -> Option<f64> {
        (self.exposures > 0).then(|| self.clicks.min(self.exposures) as f64 / self.exposures as f64)
    }

    /// The variance of the rate's estimate, `p(1 − p)/n`; `None` without exposures.
    pub fn variance(&self) -> Option<f64> {
        self.rate().map(|p| p * (1.0 - p) / self.exposures as f64)
    }
}

/// The standard normal CDF.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / core::f64::consts::SQRT_2)
}

/// The z of a two-sided `1 − alpha` interval (1.96 for 0.05), by bisection
/// on [`normal_cdf`]; `alpha` in (0, 1).
pub fn z_of(alpha: f64) -> f64 {
    let target = 1.0 - alpha / 2.0;
    let (mut lo, mut hi) = (0.0f64, 40.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if normal_cdf(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A rate with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The point estimate.
    pub estimate: f64,
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
}

/// The click-through rate with its Wilson score interval at `1 − alpha`
/// (Wilson 1927: well behaved at rates near 0 and small counts, unlike the
/// normal interval); `None` without exposures.
pub fn wilson(c: Counts, alpha: f64) -> Option<Interval> {
    let p = c.rate()?;
    let n = c.exposures as f64;
    let z = z_of(alpha);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * libm::sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n));
    Some(Interval { estimate: p, low: (centre - half).max(0.0), high: (centre + half).min(1.0) })
}

/// The relative lift of `b` over `a`, `rate_b / rate_a − 1`, with a
/// delta-method interval at `1 − alpha` (on the log of the ratio, so it is
/// never below −100%); `None` when either rate is 0 or undefined.
pub fn lift(a: Counts, b: Counts, alpha: f64) -> Option<Interval> {
    let (pa, pb) = (a.rate()?, b.rate()?);
    if pa <= 0.0 || pb <= 0.0 {
        return None;
    }
    let ratio = pb / pa;
    // Var(log p̂) ≈ (1 − p)/(n p).
    let var = (1.0 - pa) / (a.exposures as f64 * pa) + (1.0 - pb) / (b.exposures as f64 * pb);
    let half = z_of(alpha) * libm::sqrt(var);
    let log_r = libm::log(ratio);
    Some(Interval { estimate: ratio - 1.0, low: libm::exp(log_r - half) - 1.0, high: libm::exp(log_r + half) - 1.0 })
}

/// The fixed-horizon two-sided two-proportion z-test (pooled variance) of
/// "the rates are equal": its p-value, valid for one read at a sample size
/// fixed in advance. `None` when either variant has no exposures or the
/// pooled rate is 0 or 1.
pub fn z_test(a: Counts, b: Counts) -> Option<f64> {
    let (pa, pb) = (a.rate()?, b.rate()?);
    let (na, nb) = (a.exposures as f64, b.exposures as f64);
    let pooled = (a.clicks + b.clicks) as f64 / (na + nb);
    let var = pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb);
    if var <= 0.0 {
        return None;
    }
    let z = (pb - pa) / libm::sqrt(var);
    Some(2.0 * (1.0 - normal_cdf(z.abs())))
}

/// Why a sequential test cannot be set up.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TestError {
    /// The mixture's variance must be positive and finite.
    #[error("the mixture variance tau^2 = {0} must be positive and finite")]
    Tau2(f64),
    /// The level must be in (0, 1).
    #[error("alpha = {0} must be in (0, 1)")]
    Alpha(f64),
}

/// The mixture SPRT for the difference of two rates, `θ = rate_b − rate_a`,
/// with a normal mixture `θ ~ N(0, τ²)` over the alternatives and the
/// normal approximation `θ̂ ~ N(θ, V)`, `V = p_a(1−p_a)/n_a + p_b(1−p_b)/n_b`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Msprt {
    /// The mixture's variance: the squared size of the differences the test
    /// is most sensitive to (any value keeps the test valid; a good one
    /// makes it faster).
    pub tau2: f64,
    /// The level: a true null is rejected at some read with probability at most `alpha`.
    pub alpha: f64,
}

/// One read of a sequential test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Read {
    /// `rate_b − rate_a` with its always-valid `1 − alpha` interval.
    pub difference: Interval,
    /// The mixture likelihood ratio against "no difference".
    pub likelihood_ratio: f64,
    /// This read's always-valid p-value, `min(1, 1/Λ)` (a [`Sequential`]
    /// keeps the running minimum over reads).
    pub p_value: f64,
}

impl Msprt {
    /// A test with mixture variance `tau2` at level `alpha`.
    pub fn new(tau2: f64, alpha: f64) -> Result<Self, TestError> {
        if !(tau2.is_finite() && tau2 > 0.0) {
            return Err(TestError::Tau2(tau2));
        }
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(TestError::Alpha(alpha));
        }
        Ok(Self { tau2, alpha })
    }

    /// `Λ(θ₀)`: the mixture likelihood ratio of the data against `θ = θ₀`,
    /// `sqrt(V/(V+τ²)) · exp(τ²(θ̂−θ₀)² / (2V(V+τ²)))`.
    fn ratio(&self, estimate: f64, v: f64, theta0: f64) -> f64 {
        let d = estimate - theta0;
        libm::sqrt(v / (v + self.tau2)) * libm::exp(self.tau2 * d * d / (2.0 * v * (v + self.tau2)))
    }

    /// The test read at these counts (`θ = rate_b − rate_a`); `None` when
    /// the normal approximation has nothing to stand on (no exposures, or a
    /// variance of zero).
    pub fn read(&self, a: Counts, b: Counts) -> Option<Read> {
        let (pa, pb) = (a.rate()?, b.rate()?);
        self.read_estimate(pb - pa, a.variance()? + b.variance()?)
    }

    /// The test of `θ = 0` read from any asymptotically normal estimate of
    /// `θ` and its variance `v` (for example a mean of per-user preferences
    /// and its squared standard error, as interleaving gives); `None` when
    /// `v` is not positive and finite.
    pub fn read_estimate(&self, estimate: f64, v: f64) -> Option<Read> {
        if v <= 0.0 || !v.is_finite() || !estimate.is_finite() {
            return None;
        }
        let lr = self.ratio(estimate, v, 0.0);
        // {θ₀ : Λ(θ₀) < 1/α}: (θ̂ − θ₀)² < 2V(V+τ²)/τ² · (ln(1/α) + ½ ln((V+τ²)/V)).
        let half = libm::sqrt(
            2.0 * v * (v + self.tau2) / self.tau2
                * (libm::log(1.0 / self.alpha) + 0.5 * libm::log((v + self.tau2) / v)),
        );
        Some(Read {
            difference: Interval { estimate, low: estimate - half, high: estimate + half },
            likelihood_ratio: lr,
            p_value: (1.0 / lr).min(1.0),
        })
    }
}

/// A sequential test read repeatedly: the always-valid p-value is the
/// running minimum of every read's, and the interval the running
/// intersection, so a report may be read as often as anyone likes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sequential {
    /// The test.
    pub test: Msprt,
    /// The always-valid p-value so far (1 before any read).
    pub p_value: f64,
    /// The always-valid interval of `rate_b − rate_a` so far (the whole line before any read).
    pub low: f64,
    /// Upper end of that interval.
    pub high: f64,
    /// Reads that had something to stand on.
    pub reads: u64,
}

impl Sequential {
    /// A test not read yet.
    pub fn new(test: Msprt) -> Self {
        Self { test, p_value: 1.0, low: f64::NEG_INFINITY, high: f64::INFINITY, reads: 0 }
    }

    /// Reads the counts as they are now; returns the running p-value.
    pub fn observe(&mut self, a: Counts, b: Counts) -> f64 {
        let read = self.test.read(a, b);
        self.observe_read(read)
    }

    /// Takes a read of [`Msprt::read_estimate`] (`None`: nothing to stand
    /// on, which changes nothing); returns the running p-value.
    pub fn observe_read(&mut self, read: Option<Read>) -> f64 {
        if let Some(r) = read {
            self.p_value = self.p_value.min(r.p_value);
            self.low = self.low.max(r.difference.low);
            self.high = self.high.min(r.difference.high);
            self.reads += 1;
        }
        self.p_value
    }

    /// Whether the variants differ at the test's level.
    pub fn significant(&self) -> bool {
        self.p_value <= self.test.alpha
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn the_normal_helpers_have_their_textbook_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-15);
        assert!((normal_cdf(1.959_963_984_540_054) - 0.975).abs() < 1e-12);
        assert!((z_of(0.05) - 1.959_963_984_540_054).abs() < 1e-9);
        assert!((z_of(0.01) - 2.575_829_303_548_901).abs() < 1e-9);
    }

    #[test]
    fn wilson_and_the_z_test_match_worked_examples() {
        // 0 of 10: the Wilson 95% interval is [0, 0.2775].
        let w = wilson(Counts::new(10, 0), 0.05).expect("rate");
        assert_eq!((w.estimate, w.low), (0.0, 0.0));
        assert!((w.high - 0.277_53).abs() < 1e-4, "{w:?}");
        // 81 of 263: [0.2553, 0.3662] (Newcombe 1998, example c... as commonly tabulated).
        let w = wilson(Counts::new(263, 81), 0.05).expect("rate");
        assert!((w.low - 0.2553).abs() < 5e-4 && (w.high - 0.3662).abs() < 5e-4, "{w:?}");
        // 45/500 against 65/500: pooled 0.11, se = sqrt(0.11·0.89·2/500) = 0.019789,
        // z = 0.04/0.019789 = 2.0213, two-sided p = 2(1 − Φ(2.0213)) = 0.0432.
        let p = z_test(Counts::new(500, 45), Counts::new(500, 65)).expect("p");
        assert!((p - 0.0432).abs() < 2e-4, "{p}");
        assert_eq!(z_test(Counts::new(500, 45), Counts::new(500, 45)), Some(1.0));
        assert_eq!(z_test(Counts::new(0, 0), Counts::new(5, 1)), None);
        assert_eq!(z_test(Counts::new(5, 0), Counts::new(5, 0)), None, "a pooled rate of 0 has no variance");
        let l = lift(Counts::new(1000, 100), Counts::new(1000, 120), 0.05).expect("lift");
        assert!((l.estimate - 0.2).abs() < 1e-12 && l.low < 0.2 && l.high > 0.2 && l.low > -1.0, "{l:?}");
        assert_eq!(lift(Counts::new(10, 0), Counts::new(10, 1), 0.05), None);
        assert_eq!(Counts::new(3, 9), Counts { exposures: 3, clicks: 3 }, "clicks above exposures are capped");
    }

    /// The mixture likelihood ratio by quadrature: ∫ N(θ̂; θ, V) N(θ; 0, τ²) dθ / N(θ̂; 0, V),
    /// each point's terms taken in logs so that nothing underflows.
    fn reference_ratio(estimate: f64, v: f64, tau2: f64) -> f64 {
        let log_pdf = |x: f64, mean: f64, var: f64| {
            -(x - mean) * (x - mean) / (2.0 * var) - 0.5 * libm::log(2.0 * core::f64::consts::PI * var)
        };
        // The integrand is concentrated around the posterior mean, with the
        // posterior's standard deviation: integrate 12 of those either side.
        let centre = estimate * tau2 / (v + tau2);
        let span = 12.0 * libm::sqrt(v * tau2 / (v + tau2));
        let steps = 200_000;
        let h = 2.0 * span / f64::from(steps);
        let null = log_pdf(estimate, 0.0, v);
        (0..steps)
            .map(|i| {
                let theta = centre - span + (f64::from(i) + 0.5) * h;
                libm::exp(log_pdf(estimate, theta, v) + log_pdf(theta, 0.0, tau2) - null) * h
            })
            .sum()
    }

    proptest! {
        // Each case integrates 200,000 points.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_closed_form_ratio_is_the_mixture_integral(
            na in 50u64..5_000, nb in 50u64..5_000, pa in 0.05f64..0.5, delta in -0.04f64..0.04, tau in 0.002f64..0.1,
        ) {
            // Differences of the size A/B tests see (larger ones overflow Λ to
            // infinity, whose p-value 0 is right but has nothing to compare).
            let pb = pa + delta;
            let (a, b) = (Counts::new(na, (pa * na as f64) as u64), Counts::new(nb, (pb * nb as f64) as u64));
            prop_assume!(a.clicks > 0 && b.clicks > 0);
            let t = Msprt::new(tau * tau, 0.05).expect("valid");
            let r = t.read(a, b).expect("a read");
            let v = a.variance().expect("v") + b.variance().expect("v");
            let want = reference_ratio(r.difference.estimate, v, tau * tau);
            prop_assert!((r.likelihood_ratio / want - 1.0).abs() < 1e-4, "{} vs {}", r.likelihood_ratio, want);
            // The interval holds the estimate, and Λ at its ends is 1/α.
            prop_assert!(r.difference.low < r.difference.estimate && r.difference.estimate < r.difference.high);
            let at_end = t.ratio(r.difference.estimate, v, r.difference.high);
            prop_assert!((at_end * 0.05 - 1.0).abs() < 1e-6, "{}", at_end);
        }
    }

    #[test]
    fn bad_settings_and_empty_counts_are_refused() {
        assert_eq!(Msprt::new(0.0, 0.05), Err(TestError::Tau2(0.0)));
        assert!(matches!(Msprt::new(f64::NAN, 0.05), Err(TestError::Tau2(_))));
        assert_eq!(Msprt::new(1e-4, 1.0), Err(TestError::Alpha(1.0)));
        let t = Msprt::new(1e-4, 0.05).expect("valid");
        assert_eq!(t.read(Counts::new(0, 0), Counts::new(10, 2)), None);
        assert_eq!(t.read(Counts::new(10, 0), Counts::new(10, 0)), None, "no variance, no evidence");
        let mut s = Sequential::new(t);
        assert_eq!(s.observe(Counts::new(0, 0), Counts::new(0, 0)), 1.0);
        assert_eq!(s.reads, 0);
    }

    /// Runs `runs` simulated A/A tests of `users` exposures per variant, all
    /// with click probability `p`, read every `every` exposures: the share of
    /// runs the sequential test and the repeatedly read z-test ever call
    /// significant at 5%.
    fn aa_false_positives(runs: u32, users: u32, every: u32, p: f64, seed: u64) -> (f64, f64) {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let test = Msprt::new(0.01 * 0.01, 0.05).expect("valid");
        let (mut seq_fp, mut naive_fp) = (0u32, 0u32);
        for _ in 0..runs {
            let (mut a, mut b) = (Counts::default(), Counts::default());
            let mut s = Sequential::new(test);
            let mut naive = false;
            for i in 1..=users {
                a.exposures += 1;
                b.exposures += 1;
                a.clicks += u64::from(rng.random_bool(p));
                b.clicks += u64::from(rng.random_bool(p));
                if i % every == 0 {
                    s.observe(a, b);
                    naive |= z_test(a, b).is_some_and(|pv| pv < 0.05);
                }
            }
            seq_fp += u32::from(s.significant());
            naive_fp += u32::from(naive);
        }
        (f64::from(seq_fp) / f64::from(runs), f64::from(naive_fp) / f64::from(runs))
    }

    #[test]
    fn peeking_breaks_the_z_test_and_not_the_sequential_one() {
        // 400 A/A runs of 4000 exposures per variant at a 10% click rate, read every 100.
        let (sequential, naive) = aa_false_positives(400, 4_000, 100, 0.1, 7);
        println!("A/A false positives read 40 times: sequential {sequential:.3}, fixed-horizon z-test {naive:.3}");
        assert!(sequential < 0.10, "the sequential test's false-positive rate {sequential} must stay near 5%");
        assert!(naive > 0.10, "a z-test read 40 times calls {naive} of A/A tests significant");
        assert!(naive > 2.0 * sequential.max(0.01));
    }

    #[test]
    fn a_real_difference_is_found_and_its_interval_covers_it() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        let test = Msprt::new(0.01 * 0.01, 0.05).expect("valid");
        let mut s = Sequential::new(test);
        let (mut a, mut b) = (Counts::default(), Counts::default());
        let mut found_at = None;
        for i in 1..=40_000u32 {
            a.exposures += 1;
            b.exposures += 1;
            a.clicks += u64::from(rng.random_bool(0.10));
            b.clicks += u64::from(rng.random_bool(0.12));
            if i % 100 == 0 && s.observe(a, b) <= 0.05 && found_at.is_none() {
                found_at = Some(i);
            }
        }
        let at = found_at.expect("a 10% → 12% difference is found within 40000 exposures per variant");
        println!("found at {at} exposures per variant; interval [{:.4}, {:.4}]", s.low, s.high);
        assert!(s.low < 0.02 && 0.02 < s.high, "the always-valid interval covers the true difference");
        assert!(s.low > 0.0, "and excludes no difference");
    }
}
