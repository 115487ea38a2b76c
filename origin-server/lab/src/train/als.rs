//! Implicit-feedback matrix factorisation by alternating least squares
//! (Hu, Koren and Volinsky, "Collaborative Filtering for Implicit Feedback
//! Datasets", ICDM 2008).
//!
//! Every (user, item) pair has a preference `p` (1 if observed, else 0) and a
//! confidence `c` (the observation's weight, else 1). ALS minimises
//! `Σ c·(p − xᵤ·yᵢ)² + λ(Σ|xᵤ|² + Σ|yᵢ|²)` over all pairs by solving, in
//! turn, every user's and every item's `d×d` normal equations
//! `(YᵀY + Σᵢ (cᵤᵢ−1) yᵢyᵢᵀ + λI) xᵤ = Σᵢ cᵤᵢ yᵢ` exactly (Cholesky, nalgebra).
//! The `YᵀY` trick makes a sweep cost `O(nnz·d² + n·d³)` instead of touching
//! every pair. Rows are solved in parallel (rayon); each row's solve is
//! independent, so the result does not depend on the thread count.

use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlsParams {
    /// Factor dimension.
    pub dim: usize,
    /// Sweeps (users then items).
    pub epochs: usize,
    /// L2 regularisation λ.
    pub lambda: f32,
    /// Seed of the initial factors.
    pub seed: u64,
}

/// Why factorisation failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum AlsError {
    /// An observation points outside the matrix, or has a bad weight.
    #[error("observation {index}: {reason}")]
    BadObservation {
        /// Index in the input.
        index: usize,
        reason: String,
    },
    /// A normal-equation matrix was not positive definite (λ must be > 0).
    #[error("the normal equations of a row are not positive definite (is lambda > 0?)")]
    NotPositiveDefinite,
}

/// Learned factors, row-major: `users[u*dim..(u+1)*dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    /// Dimension.
    pub dim: usize,
    /// User factors.
    pub users: Vec<f32>,
    /// Item factors.
    pub items: Vec<f32>,
}

impl Factors {
    /// User `u`'s factor.
    pub fn user(&self, u: usize) -> &[f32] {
        &self.users[u * self.dim..(u + 1) * self.dim]
    }
    /// Item `i`'s factor.
    pub fn item(&self, i: usize) -> &[f32] {
        &self.items[i * self.dim..(i + 1) * self.dim]
    }
}

/// One observed pair: (user row, item row, confidence ≥ 1).
pub type Observation = (usize, usize, f32);

/// Factorises an `n_users × n_items` implicit matrix. `progress` is called after each sweep with its number.
pub fn fit(
    n_users: usize,
    n_items: usize,
    observations: &[Observation],
    p: AlsParams,
    mut progress: impl FnMut(usize),
) -> Result<Factors, AlsError> {
    let mut by_user: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n_users];
    let mut by_item: Vec<Vec<(usize, f32)>> = vec![Vec::new(); n_items];
    for (index, &(u, i, c)) in observations.iter().enumerate() {
        if u >= n_users || i >= n_items {
            return Err(AlsError::BadObservation {
                index,
                reason: format!("({u}, {i}) is outside {n_users}×{n_items}"),
            });
        }
        if !c.is_finite() || c < 1.0 {
            return Err(AlsError::BadObservation { index, reason: format!("confidence {c} must be finite and ≥ 1") });
        }
        by_user[u].push((i, c));
        by_item[i].push((u, c));
    }
    let d = p.dim;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(p.seed);
    let scale = 0.1 / (d as f32).sqrt();
    let mut init = |n: usize| -> Vec<f32> { (0..n * d).map(|_| rng.random_range(-scale..scale)).collect() };
    let mut users = init(n_users);
    let mut items = init(n_items);
    for epoch in 0..p.epochs {
        users = sweep(&by_user, &items, d, p.lambda)?;
        items = sweep(&by_item, &users, d, p.lambda)?;
        progress(epoch + 1);
    }
    Ok(Factors { dim: d, users, items })
}

/// `YᵀY` of the fixed side's factors (`n × d`, row-major).
fn gram(other: &[f32], d: usize) -> DMatrix<f64> {
    let n_other = other.len() / d.max(1);
    let y = DMatrix::<f64>::from_fn(n_other, d, |r, c| f64::from(other[r * d + c]));
    y.transpose() * &y
}

/// One row's normal equations, solved: `obs` are (row of `other`, confidence) pairs.
fn solve_row(
    gram: &DMatrix<f64>,
    obs: &[(usize, f32)],
    other: &[f32],
    d: usize,
    lambda: f32,
) -> Result<Vec<f32>, AlsError> {
    // Σ (c−1)·y yᵀ as one product: rows √(c−1)·y stacked, times their transpose.
    let weighted = DMatrix::<f64>::from_fn(obs.len(), d, |k, r| {
        let (j, c) = obs[k];
        (f64::from(c) - 1.0).sqrt() * f64::from(other[j * d + r])
    });
    let mut a = gram + weighted.tr_mul(&weighted);
    let mut b = DVector::<f64>::zeros(d);
    for &(j, c) in obs {
        for (r, &y) in other[j * d..(j + 1) * d].iter().enumerate() {
            b[r] += f64::from(c) * f64::from(y);
        }
    }
    for r in 0..d {
        a[(r, r)] += f64::from(lambda);
    }
    let x = a.cholesky().ok_or(AlsError::NotPositiveDefinite)?.solve(&b);
    Ok(x.iter().map(|&v| v as f32).collect())
}

/// Solves every row of one side given the other side's factors.
fn sweep(rows: &[Vec<(usize, f32)>], other: &[f32], d: usize, lambda: f32) -> Result<Vec<f32>, AlsError> {
    let gram = gram(other, d);
    let solved: Result<Vec<Vec<f32>>, AlsError> =
        rows.par_iter().map(|obs| solve_row(&gram, obs, other, d, lambda)).collect();
    Ok(solved?.concat())
}

/// Fold-in: one user's factor against fixed item factors, exactly as a user
/// sweep of [`fit`] solves it. What the origin's embedding of a user would
/// have been with only the interactions it had seen by then.
#[derive(Debug, Clone)]
pub struct FoldIn {
    gram: DMatrix<f64>,
    items: Vec<f32>,
    dim: usize,
    lambda: f32,
}

impl FoldIn {
    /// Item factors (`n × dim`, row-major) and the λ they were fitted with.
    pub fn new(items: Vec<f32>, dim: usize, lambda: f32) -> Self {
        Self { gram: gram(&items, dim), items, dim, lambda }
    }

    /// The factor of a user with `obs`: (item row, confidence ≥ 1) pairs.
    pub fn user(&self, obs: &[(usize, f32)]) -> Result<Vec<f32>, AlsError> {
        let n = self.items.len() / self.dim.max(1);
        if let Some((index, &(i, c))) = obs.iter().enumerate().find(|(_, o)| o.0 >= n || !o.1.is_finite() || o.1 < 1.0)
        {
            return Err(AlsError::BadObservation { index, reason: format!("item row {i} of {n}, confidence {c}") });
        }
        solve_row(&self.gram, obs, &self.items, self.dim, self.lambda)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The full objective's gradient with respect to one user's factor,
    /// summed naively over every item (observed or not).
    fn naive_user_gradient(f: &Factors, u: usize, obs: &[Observation], lambda: f32, n_items: usize) -> Vec<f64> {
        let d = f.dim;
        let mut g = vec![0.0f64; d];
        for i in 0..n_items {
            let (p, c) = obs.iter().find(|o| o.0 == u && o.1 == i).map_or((0.0, 1.0), |o| (1.0, f64::from(o.2)));
            let pred: f64 = f.user(u).iter().zip(f.item(i)).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            for (k, gk) in g.iter_mut().enumerate() {
                *gk += -2.0 * c * (p - pred) * f64::from(f.item(i)[k]);
            }
        }
        for (k, gk) in g.iter_mut().enumerate() {
            *gk += 2.0 * f64::from(lambda) * f64::from(f.user(u)[k]);
        }
        g
    }

    fn observations() -> Vec<Observation> {
        // Two tastes: users 0–4 like items 0–5, users 5–9 like items 6–11.
        let mut obs = Vec::new();
        for u in 0..10 {
            for i in 0..12 {
                if (u < 5) == (i < 6) && (u + i) % 3 != 0 {
                    obs.push((u, i, 1.0 + 10.0 * ((u * 7 + i) % 4) as f32));
                }
            }
        }
        obs
    }

    /// Each user's (item, confidence) pairs.
    fn by_user(obs: &[Observation], users: usize) -> Vec<Vec<(usize, f32)>> {
        let mut out = vec![Vec::new(); users];
        for &(u, i, c) in obs {
            out[u].push((i, c));
        }
        out
    }

    #[test]
    fn user_factors_solve_the_full_objective_exactly() {
        let obs = observations();
        let p = AlsParams { dim: 4, epochs: 3, lambda: 0.5, seed: 7 };
        let f = fit(10, 12, &obs, p, |_| {}).expect("fit");
        // The last sweep solved items given users; solve users once more and check stationarity.
        let users = sweep(&by_user(&obs, 10), &f.items, 4, 0.5).expect("sweep");
        let f = Factors { users, ..f };
        for u in 0..10 {
            let g = naive_user_gradient(&f, u, &obs, 0.5, 12);
            assert!(g.iter().all(|x| x.abs() < 1e-3), "user {u}: gradient {g:?} is not zero");
        }
    }

    #[test]
    fn fold_in_solves_one_user_as_the_sweep_does() {
        let obs = observations();
        let p = AlsParams { dim: 4, epochs: 3, lambda: 0.5, seed: 7 };
        let f = fit(10, 12, &obs, p, |_| {}).expect("fit");
        let by_user = by_user(&obs, 10);
        let swept = sweep(&by_user, &f.items, 4, 0.5).expect("sweep");
        let fold = FoldIn::new(f.items.clone(), 4, 0.5);
        for (u, mine) in by_user.iter().enumerate() {
            assert_eq!(fold.user(mine).expect("solves"), swept[u * 4..(u + 1) * 4], "user {u}");
        }
        // Fewer interactions, another factor; bad rows are refused.
        assert_ne!(fold.user(&by_user[0][..1]).expect("solves"), swept[..4]);
        assert!(matches!(fold.user(&[(12, 2.0)]), Err(AlsError::BadObservation { index: 0, .. })));
        assert!(matches!(fold.user(&[(0, 2.0), (1, 0.5)]), Err(AlsError::BadObservation { index: 1, .. })));
    }

    #[test]
    fn factors_recover_the_two_tastes_deterministically() {
        let obs = observations();
        let p = AlsParams { dim: 4, epochs: 10, lambda: 0.1, seed: 1 };
        let f = fit(10, 12, &obs, p, |_| {}).expect("fit");
        assert_eq!(f, fit(10, 12, &obs, p, |_| {}).expect("fit"), "same seed, same factors");
        for u in 0..10 {
            let score = |i: usize| f.user(u).iter().zip(f.item(i)).map(|(a, b)| a * b).sum::<f32>();
            let mut ranked: Vec<usize> = (0..12).collect();
            ranked.sort_by(|&a, &b| score(b).total_cmp(&score(a)));
            let mine = |i: usize| (u < 5) == (i < 6);
            assert!(
                ranked[..4].iter().all(|&i| mine(i)),
                "user {u}: top items {:?} are not all of their taste",
                &ranked[..4]
            );
        }
    }

    #[test]
    fn bad_observations_are_refused() {
        let p = AlsParams { dim: 2, epochs: 1, lambda: 0.1, seed: 0 };
        assert!(matches!(fit(2, 2, &[(2, 0, 1.0)], p, |_| {}), Err(AlsError::BadObservation { index: 0, .. })));
        assert!(matches!(fit(2, 2, &[(0, 0, 0.5)], p, |_| {}), Err(AlsError::BadObservation { .. })));
        assert!(matches!(fit(2, 2, &[(0, 0, f32::NAN)], p, |_| {}), Err(AlsError::BadObservation { .. })));
    }
}
