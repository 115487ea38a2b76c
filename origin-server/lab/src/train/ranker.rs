//! Training the core ranker: a logistic pre-ranker, an MLP main ranker and
//! Platt calibration, exported in the core's model format
//! ([`edgewise_core::model`]).
//!
//! Inputs are standardised for training (zero mean, unit variance per
//! column); the standardisation is then folded into the first layer's weights
//! and biases, so the exported model reads raw bundle values, exactly as the
//! core computes them. Input columns that are constant zero in training (the
//! retrieval score and the source flags, see [`super`]) get zero weights and
//! no gradient, so they have no effect at serving time either.
//!
//! Everything is deterministic for a seed: initialisation and mini-batch
//! order come from a seeded PCG, and the arithmetic is sequential.

use edgewise_core::model::{Layer, Platt};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// One labelled example: an input vector and 1 (engaged) or 0 (sampled negative).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Input values.
    pub x: Vec<f32>,
    /// Label, 0 or 1.
    pub y: f32,
}

/// Column statistics for standardisation.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// Means.
    pub mean: Vec<f32>,
    /// Standard deviations (1 for constant columns).
    pub std: Vec<f32>,
    /// Whether a column varies at all (a constant column is not an input).
    pub used: Vec<bool>,
}

impl Standardizer {
    /// Statistics of `examples`' columns.
    pub fn fit(examples: &[Example], width: usize) -> Self {
        let n = examples.len().max(1) as f64;
        let mut mean = vec![0.0f64; width];
        for e in examples {
            for (m, &v) in mean.iter_mut().zip(&e.x) {
                *m += f64::from(v) / n;
            }
        }
        let mut var = vec![0.0f64; width];
        for e in examples {
            for ((s, &v), m) in var.iter_mut().zip(&e.x).zip(&mean) {
                *s += (f64::from(v) - m).powi(2) / n;
            }
        }
        let used: Vec<bool> = var.iter().map(|&v| v > 1e-12).collect();
        Standardizer {
            mean: mean.iter().zip(&used).map(|(&m, &u)| if u { m as f32 } else { 0.0 }).collect(),
            std: var.iter().zip(&used).map(|(&v, &u)| if u { v.sqrt() as f32 } else { 1.0 }).collect(),
            used,
        }
    }

    /// Standardised copy of `x` (unused columns become 0).
    pub fn apply(&self, x: &[f32]) -> Vec<f32> {
        x.iter()
            .zip(&self.mean)
            .zip(&self.std)
            .zip(&self.used)
            .map(|(((&v, m), s), &u)| if u { (v - m) / s } else { 0.0 })
            .collect()
    }

    /// Folds the standardisation into a layer that was trained on standardised
    /// inputs: the result computes the same outputs from raw inputs.
    pub fn fold(&self, layer: &Layer) -> Layer {
        let mut out = layer.clone();
        for o in 0..layer.outputs {
            let row = &mut out.weights[o * layer.inputs..(o + 1) * layer.inputs];
            let mut shift = 0.0f32;
            for (k, w) in row.iter_mut().enumerate() {
                if self.used[k] {
                    *w /= self.std[k];
                    shift += *w * self.mean[k];
                } else {
                    *w = 0.0;
                }
            }
            out.bias[o] -= shift;
        }
        out
    }
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MlpParams {
    /// Hidden layer widths (empty: logistic regression).
    pub hidden: &'static [usize],
    /// Passes over the data.
    pub epochs: usize,
    /// Adam step size.
    pub learning_rate: f32,
    /// L2 weight decay.
    pub l2: f32,
    /// Mini-batch size.
    pub batch: usize,
    /// Seed of initialisation and batch order.
    pub seed: u64,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Forward pass; returns every layer's activations (input first, the logit last).
pub fn forward(layers: &[Layer], x: &[f32]) -> Vec<Vec<f32>> {
    let mut acts = vec![x.to_vec()];
    for (l, layer) in layers.iter().enumerate() {
        let input = &acts[acts.len() - 1];
        let mut out = layer.bias.clone();
        for (o, v) in out.iter_mut().enumerate() {
            let row = &layer.weights[o * layer.inputs..(o + 1) * layer.inputs];
            *v += row.iter().zip(input).map(|(w, a)| w * a).sum::<f32>();
            if l + 1 < layers.len() {
                *v = v.max(0.0);
            }
        }
        acts.push(out);
    }
    acts
}

/// The logit of one input.
pub fn logit(layers: &[Layer], x: &[f32]) -> f32 {
    forward(layers, x).last().and_then(|a| a.first().copied()).unwrap_or(0.0)
}

/// Adds the gradient of the logistic loss of one example to `grads`; returns the loss.
pub fn backward(layers: &[Layer], x: &[f32], y: f32, grads: &mut [Layer]) -> f32 {
    let acts = forward(layers, x);
    let z = acts[acts.len() - 1][0];
    let p = sigmoid(z);
    let loss = -(y * p.max(1e-7).ln() + (1.0 - y) * (1.0 - p).max(1e-7).ln());
    let mut delta = vec![p - y];
    for l in (0..layers.len()).rev() {
        let layer = &layers[l];
        let input = &acts[l];
        let g = &mut grads[l];
        for (o, &d) in delta.iter().enumerate() {
            g.bias[o] += d;
            for (k, &a) in input.iter().enumerate() {
                g.weights[o * layer.inputs + k] += d * a;
            }
        }
        if l > 0 {
            let mut next = vec![0.0f32; layer.inputs];
            for (o, &d) in delta.iter().enumerate() {
                for (k, n) in next.iter_mut().enumerate() {
                    *n += d * layer.weights[o * layer.inputs + k];
                }
            }
            // ReLU derivative of the layer below.
            for (n, &a) in next.iter_mut().zip(input) {
                if a <= 0.0 {
                    *n = 0.0;
                }
            }
            delta = next;
        }
    }
    loss
}

fn zeros_like(layers: &[Layer]) -> Vec<Layer> {
    layers
        .iter()
        .map(|l| Layer {
            inputs: l.inputs,
            outputs: l.outputs,
            weights: vec![0.0; l.weights.len()],
            bias: vec![0.0; l.outputs],
        })
        .collect()
}

/// Trains an MLP (logistic output) on standardised inputs; `used` marks the
/// input columns that may get weight. Returns the layers and the mean training
/// loss of the last epoch. `progress` is called after every epoch.
pub fn train_mlp(
    examples: &[Example],
    used: &[bool],
    p: MlpParams,
    mut progress: impl FnMut(usize, f32),
) -> (Vec<Layer>, f32) {
    let width = used.len();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(p.seed);
    let mut sizes = vec![width];
    sizes.extend_from_slice(p.hidden);
    sizes.push(1);
    let mut layers: Vec<Layer> = sizes
        .windows(2)
        .enumerate()
        .map(|(l, w)| {
            let (inputs, outputs) = (w[0], w[1]);
            let bound = (6.0 / (inputs + outputs) as f32).sqrt();
            let weights = (0..inputs * outputs)
                .map(|k| if l == 0 && !used[k % inputs] { 0.0 } else { rng.random_range(-bound..bound) })
                .collect();
            Layer { inputs, outputs, weights, bias: vec![0.0; outputs] }
        })
        .collect();
    let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
    let mut m = zeros_like(&layers);
    let mut v = zeros_like(&layers);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    let mut step = 0i32;
    let mut last_loss = 0.0;
    for epoch in 0..p.epochs {
        order.shuffle(&mut rng);
        let mut total = 0.0f64;
        for chunk in order.chunks(p.batch.max(1)) {
            let mut g = zeros_like(&layers);
            for &e in chunk {
                total += f64::from(backward(&layers, &examples[e].x, examples[e].y, &mut g));
            }
            step += 1;
            let n = chunk.len() as f32;
            let (c1, c2) = (1.0 - b1.powi(step), 1.0 - b2.powi(step));
            for (l, layer) in layers.iter_mut().enumerate() {
                let params = layer.weights.iter_mut().chain(layer.bias.iter_mut());
                let grads = g[l].weights.iter().chain(&g[l].bias);
                let (ml, vl) = (&mut m[l], &mut v[l]);
                let ms = ml.weights.iter_mut().chain(ml.bias.iter_mut());
                let vs = vl.weights.iter_mut().chain(vl.bias.iter_mut());
                for (k, (((w, &gr), mk), vk)) in params.zip(grads).zip(ms).zip(vs).enumerate() {
                    if l == 0 && k < layer.inputs * layer.outputs && !used[k % layer.inputs] {
                        continue;
                    }
                    let gr = gr / n + p.l2 * *w;
                    *mk = b1 * *mk + (1.0 - b1) * gr;
                    *vk = b2 * *vk + (1.0 - b2) * gr * gr;
                    *w -= p.learning_rate * (*mk / c1) / ((*vk / c2).sqrt() + eps);
                }
            }
        }
        last_loss = (total / examples.len().max(1) as f64) as f32;
        progress(epoch + 1, last_loss);
    }
    (layers, last_loss)
}

/// Fits Platt scaling `p = σ(a·logit + b)` to (logit, label) pairs by Newton's method.
pub fn fit_platt(pairs: &[(f32, f32)]) -> Platt {
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for &(z, y) in pairs {
            let z = f64::from(z);
            let p = 1.0 / (1.0 + (-(a * z + b)).exp());
            let d = p - f64::from(y);
            ga += d * z;
            gb += d;
            let w = p * (1.0 - p);
            haa += w * z * z;
            hab += w * z;
            hbb += w;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-9 {
            break;
        }
    }
    if a.is_finite() && b.is_finite() { Platt { a: a as f32, b: b as f32 } } else { Platt { a: 1.0, b: 0.0 } }
}

/// Area under the ROC curve of (score, label) pairs (ties count half).
pub fn auc(pairs: &[(f32, f32)]) -> f64 {
    let mut v: Vec<(f32, f32)> = pairs.to_vec();
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos, mut i) = (0.0f64, 0.0f64, 0usize);
    while i < v.len() {
        let mut j = i;
        while j < v.len() && v[j].0 == v[i].0 {
            j += 1;
        }
        let avg_rank = (i + j + 1) as f64 / 2.0;
        for e in &v[i..j] {
            if e.1 > 0.5 {
                rank_sum += avg_rank;
                pos += 1.0;
            }
        }
        i = j;
    }
    let neg = v.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 { 0.5 } else { (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Vec<Layer> {
        vec![
            Layer { inputs: 3, outputs: 2, weights: vec![0.3, -0.2, 0.5, 0.1, 0.4, -0.6], bias: vec![0.05, -0.1] },
            Layer { inputs: 2, outputs: 1, weights: vec![0.7, -0.3], bias: vec![0.2] },
        ]
    }

    #[test]
    fn backward_matches_finite_differences() {
        let x = [0.5f32, -1.0, 2.0];
        for y in [0.0f32, 1.0] {
            let layers = tiny();
            let mut g = zeros_like(&layers);
            backward(&layers, &x, y, &mut g);
            let loss = |ls: &[Layer]| {
                let p = sigmoid(logit(ls, &x));
                -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
            };
            for l in 0..layers.len() {
                for k in 0..layers[l].weights.len() {
                    let h = 1e-3;
                    let mut plus = layers.clone();
                    plus[l].weights[k] += h;
                    let mut minus = layers.clone();
                    minus[l].weights[k] -= h;
                    let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
                    assert!(
                        (numeric - g[l].weights[k]).abs() < 2e-3,
                        "layer {l} weight {k}: {numeric} vs {}",
                        g[l].weights[k]
                    );
                }
            }
        }
    }

    #[test]
    fn folding_the_standardisation_keeps_outputs() {
        let examples: Vec<Example> =
            (0..20).map(|i| Example { x: vec![i as f32, 1000.0 + (i * i) as f32, 0.0], y: 0.0 }).collect();
        let s = Standardizer::fit(&examples, 3);
        assert_eq!(s.used, vec![true, true, false]);
        let layer = tiny().remove(0);
        let folded = s.fold(&layer);
        for e in &examples {
            let a = forward(std::slice::from_ref(&layer), &s.apply(&e.x)).remove(1);
            let b = forward(std::slice::from_ref(&folded), &e.x).remove(1);
            // ReLU is applied only between layers, so a single layer is affine.
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-3 * (1.0 + p.abs()), "{p} vs {q}");
            }
        }
        let mut x = examples[3].x.clone();
        let before = forward(std::slice::from_ref(&folded), &x).remove(1);
        x[2] = 123.0;
        assert_eq!(forward(std::slice::from_ref(&folded), &x).remove(1), before, "an unused column has no effect");
    }

    #[test]
    fn training_learns_a_separable_rule_deterministically() {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(3);
        let examples: Vec<Example> = (0..400)
            .map(|_| {
                let (a, b) = (rng.random_range(-1.0f32..1.0), rng.random_range(-1.0f32..1.0));
                Example { x: vec![a, b, 0.0], y: if a * a + b * b < 0.5 { 1.0 } else { 0.0 } }
            })
            .collect();
        let p = MlpParams { hidden: &[16], epochs: 60, learning_rate: 0.02, l2: 0.0, batch: 32, seed: 9 };
        let used = [true, true, false];
        let (layers, loss) = train_mlp(&examples, &used, p, |_, _| {});
        assert_eq!(train_mlp(&examples, &used, p, |_, _| {}).0, layers, "same seed, same weights");
        let pairs: Vec<(f32, f32)> = examples.iter().map(|e| (logit(&layers, &e.x), e.y)).collect();
        assert!(auc(&pairs) > 0.97, "auc {} (loss {loss})", auc(&pairs));
        assert!(
            layers[0].weights.iter().skip(2).step_by(3).all(|&w| w == 0.0),
            "the unused column stays at zero weight"
        );
    }

    #[test]
    fn platt_recovers_a_known_calibration() {
        let mut pairs = Vec::new();
        for k in 0..2000 {
            let z = (k as f32 / 2000.0) * 8.0 - 4.0;
            let p = sigmoid(0.5 * z - 1.0);
            // Deterministic labels with frequency p: a low-discrepancy sequence.
            let u = ((k as f64 * 0.618_033_988_75) % 1.0) as f32;
            pairs.push((z, if u < p { 1.0 } else { 0.0 }));
        }
        let c = fit_platt(&pairs);
        assert!((c.a - 0.5).abs() < 0.1 && (c.b + 1.0).abs() < 0.15, "{c:?}");
    }

    #[test]
    fn auc_of_known_orders() {
        assert_eq!(auc(&[(0.1, 0.0), (0.9, 1.0)]), 1.0);
        assert_eq!(auc(&[(0.9, 0.0), (0.1, 1.0)]), 0.0);
        assert_eq!(auc(&[(0.5, 0.0), (0.5, 1.0)]), 0.5);
    }
}
