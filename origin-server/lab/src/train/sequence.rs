//! The sequence-aware main ranker: the core's history block
//! ([`edgewise_core::history`]) and the MLP after it, trained end to end with
//! `candle` (autodiff and AdamW), then exported into the core's model
//! artifact.
//!
//! The forward pass is the core's, written in tensors: per head, a softmax
//! over the newest `length` history entries of `τ·cos + kind bias + age
//! bias + position bias`, the weighted mean cosine as one more input, then a
//! ReLU MLP with one hidden layer over `[standardised base inputs, head
//! outputs]`. The cosines are computed exactly as the core computes them
//! (int8 embeddings, integer dot products), so the exported model scores
//! what the trainer scored up to float rounding ([`core_logits`] against
//! [`trainer_logits`]).
//!
//! Data comes in **contexts** (one user at one moment: the history and its
//! ages) and **rows** (one candidate in a context: its base inputs, its
//! cosine to each entry, its label). Every bias depends only on the context,
//! so it is computed once per context and gathered per row.

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use edgewise_core::history::{AGE_BUCKETS, Head, History, HistoryBlock, KINDS, age_bucket};
use edgewise_core::math::{dot_i8, sqrt};
use edgewise_core::model::{Layer, Model};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::ranker::Standardizer;

/// Training data: contexts and the rows ranked in them.
#[derive(Debug, Clone, Default)]
pub struct SeqData {
    /// Base inputs per row (the core's MLP input without the head outputs).
    pub width: usize,
    /// Entries read per context.
    pub length: usize,
    /// Per context and entry: kind code, age bucket, whether the entry exists.
    ctx_kind: Vec<u32>,
    ctx_age: Vec<u32>,
    ctx_mask: Vec<f32>,
    /// Per row: raw base inputs (`width` values).
    pub base: Vec<f32>,
    /// Per row: the cosine to each entry (`length` values, 0 past the history).
    cos: Vec<f32>,
    /// Per row: its context.
    pub ctx: Vec<u32>,
    /// Per row: the item.
    pub item: Vec<u64>,
    /// Per row: 1 for the positive, 0 for a negative.
    pub y: Vec<f32>,
}

/// An item's int8 embedding and its norm, as the core sees it in a bundle.
#[derive(Debug, Clone)]
pub struct Quantized {
    /// The embedding.
    pub q: Vec<i8>,
    /// `sqrt(q·q)`.
    pub norm: f32,
}

impl Quantized {
    /// Quantises `v` as a bundle row is quantised.
    pub fn new(v: &[f32]) -> Self {
        let mut q = vec![0i8; v.len()];
        edgewise_core::math::quantize_into(v, &mut q);
        let norm = sqrt(dot_i8(&q, &q) as f32);
        Quantized { q, norm }
    }
}

impl SeqData {
    /// Empty data for rows of `width` base inputs and histories read to `length` entries.
    pub fn new(width: usize, length: usize) -> Self {
        Self { width, length, ..Self::default() }
    }

    /// Contexts.
    pub fn contexts(&self) -> usize {
        self.ctx_mask.len() / self.length.max(1)
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Adds a context: `history` seen at `now_ms`. Returns its index.
    pub fn push_context(&mut self, history: &History, now_ms: u64) -> u32 {
        let id = self.contexts() as u32;
        for l in 0..self.length {
            if l < history.len() {
                self.ctx_kind.push(u32::from(history.kind(l)) % KINDS as u32);
                self.ctx_age.push(age_bucket(now_ms, history.at_ms(l)) as u32);
                self.ctx_mask.push(1.0);
            } else {
                self.ctx_kind.push(0);
                self.ctx_age.push(0);
                self.ctx_mask.push(0.0);
            }
        }
        id
    }

    /// Adds a row in context `ctx` (whose history is `history`): the
    /// candidate `item` with embedding `e`, raw base inputs `base`, label `y`.
    pub fn push_row(&mut self, ctx: u32, history: &History, item: u64, e: &Quantized, base: &[f32], y: f32) {
        debug_assert_eq!(base.len(), self.width);
        self.base.extend_from_slice(base);
        for l in 0..self.length {
            let c = if l < history.len() {
                let h = history.embedding(l);
                let den = e.norm * sqrt(dot_i8(h, h) as f32);
                if den == 0.0 { 0.0 } else { dot_i8(&e.q, h) as f32 / den }
            } else {
                0.0
            };
            self.cos.push(c);
        }
        self.ctx.push(ctx);
        self.item.push(item);
        self.y.push(y);
    }
}

/// Hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeqParams {
    /// Attention heads.
    pub heads: usize,
    /// Hidden units of the MLP.
    pub hidden: usize,
    /// Passes over the data (the best epoch on validation is kept).
    pub epochs: usize,
    /// AdamW step size.
    pub learning_rate: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Rows per step.
    pub batch: usize,
    /// Seed of initialisation and batch order.
    pub seed: u64,
}

impl Default for SeqParams {
    fn default() -> Self {
        Self { heads: 2, hidden: 16, epochs: 30, learning_rate: 0.003, weight_decay: 1e-4, batch: 256, seed: 42 }
    }
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    /// candle failed.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Nothing to train on.
    #[error("{0}")]
    Input(String),
}

/// The trainable parameters.
struct Params {
    tau: Var,
    kind_bias: Var,
    age_bias: Var,
    pos_bias: Var,
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
}

impl Params {
    fn new(width: usize, length: usize, p: &SeqParams, dev: &Device) -> Result<Self, SeqError> {
        use rand::Rng;
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(p.seed);
        let inputs = width + p.heads;
        let mut uniform =
            |n: usize, bound: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-bound..bound)).collect() };
        let b1 = (6.0 / (inputs + p.hidden) as f32).sqrt();
        let b2 = (6.0 / (p.hidden + 1) as f32).sqrt();
        let var = |v: Vec<f32>, shape: &[usize]| -> Result<Var, SeqError> { Ok(Var::from_vec(v, shape, dev)?) };
        Ok(Params {
            // Heads start sharp to different degrees, biases at zero.
            tau: var((0..p.heads).map(|h| 2.0 + 4.0 * h as f32).collect(), &[p.heads])?,
            kind_bias: var(vec![0.0; p.heads * KINDS], &[p.heads, KINDS])?,
            age_bias: var(vec![0.0; p.heads * AGE_BUCKETS], &[p.heads, AGE_BUCKETS])?,
            pos_bias: var(vec![0.0; p.heads * length], &[p.heads, length])?,
            w1: var(uniform(p.hidden * inputs, b1), &[p.hidden, inputs])?,
            b1: var(vec![0.0; p.hidden], &[p.hidden])?,
            w2: var(uniform(p.hidden, b2), &[1, p.hidden])?,
            b2: var(vec![0.0; 1], &[1])?,
        })
    }

    fn vars(&self) -> Vec<Var> {
        [&self.tau, &self.kind_bias, &self.age_bias, &self.pos_bias, &self.w1, &self.b1, &self.w2, &self.b2]
            .into_iter()
            .cloned()
            .collect()
    }

    fn snapshot(&self) -> Result<Vec<Tensor>, SeqError> {
        Ok(self.vars().iter().map(|v| v.as_tensor().copy()).collect::<Result<_, _>>()?)
    }

    fn restore(&self, saved: &[Tensor]) -> Result<(), SeqError> {
        for (v, t) in self.vars().iter().zip(saved) {
            v.set(t)?;
        }
        Ok(())
    }
}

/// A data set as tensors: per context the one-hot kinds and ages and the
/// mask; per row the standardised base inputs, the cosines, the context.
struct Tensors {
    kind: Tensor,
    age: Tensor,
    mask: Tensor,
    has: Tensor,
    base: Tensor,
    cos: Tensor,
    ctx: Tensor,
    y: Tensor,
}

fn one_hot(codes: &[u32], classes: usize, rows: usize, length: usize, dev: &Device) -> Result<Tensor, SeqError> {
    let mut v = vec![0.0f32; codes.len() * classes];
    for (i, &c) in codes.iter().enumerate() {
        v[i * classes + (c as usize).min(classes - 1)] = 1.0;
    }
    Ok(Tensor::from_vec(v, (rows, length, classes), dev)?)
}

impl Tensors {
    fn new(d: &SeqData, s: &Standardizer, dev: &Device) -> Result<Self, SeqError> {
        let (c, n, l) = (d.contexts(), d.rows(), d.length);
        let base: Vec<f32> = d.base.chunks_exact(d.width.max(1)).flat_map(|x| s.apply(x)).collect();
        let has: Vec<f32> =
            d.ctx_mask.chunks_exact(l.max(1)).map(|m| if m.iter().any(|&x| x > 0.0) { 1.0 } else { 0.0 }).collect();
        Ok(Tensors {
            kind: one_hot(&d.ctx_kind, KINDS, c, l, dev)?,
            age: one_hot(&d.ctx_age, AGE_BUCKETS, c, l, dev)?,
            mask: Tensor::from_slice(&d.ctx_mask, (c, l), dev)?,
            has: Tensor::from_vec(has, (c, 1), dev)?,
            base: Tensor::from_vec(base, (n, d.width), dev)?,
            cos: Tensor::from_slice(&d.cos, (n, l), dev)?,
            ctx: Tensor::from_slice(&d.ctx, n, dev)?,
            y: Tensor::from_slice(&d.y, n, dev)?,
        })
    }
}

/// Logits of `rows` (indices into `t`'s rows).
fn forward(p: &Params, t: &Tensors, rows: &Tensor, heads: usize) -> Result<Tensor, SeqError> {
    let (c, l, _) = t.kind.dims3()?;
    // Per context: [C, L, H] biases by kind and age, then [C, H, L] with the position bias.
    let kind = t.kind.reshape((c * l, KINDS))?.matmul(&p.kind_bias.as_tensor().t()?)?;
    let age = t.age.reshape((c * l, AGE_BUCKETS))?.matmul(&p.age_bias.as_tensor().t()?)?;
    let bias = (kind + age)?.reshape((c, l, heads))?.transpose(1, 2)?.broadcast_add(p.pos_bias.as_tensor())?;
    // Entries past the history get a logit of -1e9: a weight of exactly 0.
    let neg = t.mask.affine(1e9, -1e9)?.unsqueeze(1)?;
    let bias = bias.broadcast_add(&neg)?;
    let ctx = t.ctx.index_select(rows, 0)?;
    let bias = bias.index_select(&ctx, 0)?;
    let has = t.has.index_select(&ctx, 0)?;
    let cos = t.cos.index_select(rows, 0)?.unsqueeze(1)?;
    let z = cos.broadcast_mul(&p.tau.as_tensor().reshape((1, heads, 1))?)?.broadcast_add(&bias)?;
    let w = candle_nn::ops::softmax(&z, 2)?;
    let a = w.broadcast_mul(&cos)?.sum(2)?.broadcast_mul(&has)?;
    let x = Tensor::cat(&[&t.base.index_select(rows, 0)?, &a], 1)?;
    let h = x.matmul(&p.w1.as_tensor().t()?)?.broadcast_add(p.b1.as_tensor())?.relu()?;
    let logit = h.matmul(&p.w2.as_tensor().t()?)?.broadcast_add(p.b2.as_tensor())?;
    Ok(logit.squeeze(1)?)
}

/// Mean logistic loss, computed stably: `softplus(x) − y·x`.
fn bce(logit: &Tensor, y: &Tensor) -> Result<Tensor, SeqError> {
    let softplus = (logit.relu()? + logit.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?;
    Ok((softplus - (logit * y)?)?.mean_all()?)
}

fn all_logits(p: &Params, t: &Tensors, n: usize, heads: usize, dev: &Device) -> Result<Vec<f32>, SeqError> {
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(8_192) {
        let end = (start + 8_192).min(n);
        let rows = Tensor::arange(start as u32, end as u32, dev)?;
        out.extend(forward(p, t, &rows, heads)?.to_vec1::<f32>()?);
    }
    Ok(out)
}

/// NDCG@10 of the positive row of each context among all its rows, ranked
/// by score (ties: lower item id first, as the evaluation breaks them).
pub fn ndcg_at_10(d: &SeqData, scores: &[f32]) -> f64 {
    let mut by_ctx: Vec<Vec<usize>> = vec![Vec::new(); d.contexts()];
    for (r, &c) in d.ctx.iter().enumerate() {
        by_ctx[c as usize].push(r);
    }
    let (mut sum, mut n) = (0.0, 0usize);
    for rows in &by_ctx {
        let Some(&pos) = rows.iter().find(|&&r| d.y[r] > 0.5) else { continue };
        n += 1;
        let better = rows
            .iter()
            .filter(|&&r| {
                r != pos && (scores[r] > scores[pos] || (scores[r] == scores[pos] && d.item[r] < d.item[pos]))
            })
            .count();
        if better < 10 {
            sum += 1.0 / ((better + 2) as f64).log2();
        }
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// What training produced.
#[derive(Debug, Clone)]
pub struct Trained {
    /// The history block.
    pub block: HistoryBlock,
    /// The MLP, reading raw inputs (standardisation folded in).
    pub layers: Vec<Layer>,
    /// Validation NDCG@10 after each epoch.
    pub valid_ndcg: Vec<f64>,
    /// The epoch kept (1-based).
    pub best_epoch: usize,
    /// Mean training loss of each epoch.
    pub loss: Vec<f32>,
}

/// Trains on `train` and keeps the epoch with the best NDCG@10 on `valid`
/// (whose contexts each hold one positive and every candidate it competes
/// with). `progress(epoch, loss, valid_ndcg)` after each epoch.
pub fn train(
    train: &SeqData,
    valid: &SeqData,
    p: &SeqParams,
    mut progress: impl FnMut(usize, f32, f64),
) -> Result<Trained, SeqError> {
    if train.rows() == 0 || train.contexts() == 0 {
        return Err(SeqError::Input("no training rows for the sequence ranker".into()));
    }
    if train.width != valid.width || train.length != valid.length {
        return Err(SeqError::Input("training and validation data differ in shape".into()));
    }
    let dev = Device::Cpu;
    let examples: Vec<super::ranker::Example> =
        train.base.chunks_exact(train.width.max(1)).map(|x| super::ranker::Example { x: x.to_vec(), y: 0.0 }).collect();
    let s = Standardizer::fit(&examples, train.width);
    let (tt, vt) = (Tensors::new(train, &s, &dev)?, Tensors::new(valid, &s, &dev)?);
    let params = Params::new(train.width, train.length, p, &dev)?;
    let mut opt = AdamW::new(
        params.vars(),
        ParamsAdamW { lr: p.learning_rate, weight_decay: p.weight_decay, ..ParamsAdamW::default() },
    )?;
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(p.seed ^ 0x0b5e55ed);
    let mut order: Vec<u32> = (0..train.rows() as u32).collect();
    let (mut best, mut best_epoch, mut saved) = (f64::NEG_INFINITY, 0, params.snapshot()?);
    let (mut valid_ndcg, mut losses) = (Vec::new(), Vec::new());
    for epoch in 1..=p.epochs {
        order.shuffle(&mut rng);
        let mut total = 0.0f64;
        for chunk in order.chunks(p.batch.max(1)) {
            let rows = Tensor::from_slice(chunk, chunk.len(), &dev)?;
            let logit = forward(&params, &tt, &rows, p.heads)?;
            let loss = bce(&logit, &tt.y.index_select(&rows, 0)?)?;
            opt.backward_step(&loss)?;
            total += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
        }
        let loss = (total / train.rows() as f64) as f32;
        let ndcg = ndcg_at_10(valid, &all_logits(&params, &vt, valid.rows(), p.heads, &dev)?);
        progress(epoch, loss, ndcg);
        valid_ndcg.push(ndcg);
        losses.push(loss);
        if ndcg > best {
            (best, best_epoch, saved) = (ndcg, epoch, params.snapshot()?);
        }
    }
    params.restore(&saved)?;
    let (block, layers) = export(&params, &s, train.width, train.length, p)?;
    Ok(Trained { block, layers, valid_ndcg, best_epoch, loss: losses })
}

fn export(
    p: &Params,
    s: &Standardizer,
    width: usize,
    length: usize,
    sp: &SeqParams,
) -> Result<(HistoryBlock, Vec<Layer>), SeqError> {
    let tau = p.tau.as_tensor().to_vec1::<f32>()?;
    let kind = p.kind_bias.as_tensor().to_vec2::<f32>()?;
    let age = p.age_bias.as_tensor().to_vec2::<f32>()?;
    let pos = p.pos_bias.as_tensor().to_vec2::<f32>()?;
    let heads = (0..sp.heads)
        .map(|h| Head {
            temperature: tau[h],
            kind_bias: core::array::from_fn(|k| kind[h][k]),
            age_bias: core::array::from_fn(|a| age[h][a]),
            position_bias: pos[h].clone(),
        })
        .collect();
    let length = u8::try_from(length).map_err(|_| SeqError::Input("history length does not fit a byte".into()))?;
    let inputs = width + sp.heads;
    let first = Layer {
        inputs,
        outputs: sp.hidden,
        weights: p.w1.as_tensor().flatten_all()?.to_vec1::<f32>()?,
        bias: p.b1.as_tensor().to_vec1::<f32>()?,
    };
    // The head outputs are not standardised: identity statistics for their columns.
    let full = Standardizer {
        mean: s.mean.iter().copied().chain(std::iter::repeat_n(0.0, sp.heads)).collect(),
        std: s.std.iter().copied().chain(std::iter::repeat_n(1.0, sp.heads)).collect(),
        used: s.used.iter().copied().chain(std::iter::repeat_n(true, sp.heads)).collect(),
    };
    let second = Layer {
        inputs: sp.hidden,
        outputs: 1,
        weights: p.w2.as_tensor().flatten_all()?.to_vec1::<f32>()?,
        bias: p.b2.as_tensor().to_vec1::<f32>()?,
    };
    Ok((HistoryBlock { length, heads }, vec![full.fold(&first), second]))
}

/// The trainer's logits for `d`'s rows from exported parts, through the same
/// tensors as training (to compare with [`core_logits`]).
pub fn trainer_logits(t: &Trained, d: &SeqData) -> Result<Vec<f32>, SeqError> {
    let dev = Device::Cpu;
    let heads = t.block.heads.len();
    let identity = Standardizer { mean: vec![0.0; d.width], std: vec![1.0; d.width], used: vec![true; d.width] };
    let tensors = Tensors::new(d, &identity, &dev)?;
    let first = &t.layers[0];
    let second = &t.layers[1];
    let var = |v: Vec<f32>, shape: &[usize]| -> Result<Var, SeqError> { Ok(Var::from_vec(v, shape, &dev)?) };
    let p = Params {
        tau: var(t.block.heads.iter().map(|h| h.temperature).collect(), &[heads])?,
        kind_bias: var(t.block.heads.iter().flat_map(|h| h.kind_bias).collect(), &[heads, KINDS])?,
        age_bias: var(t.block.heads.iter().flat_map(|h| h.age_bias).collect(), &[heads, AGE_BUCKETS])?,
        pos_bias: var(
            t.block.heads.iter().flat_map(|h| h.position_bias.clone()).collect(),
            &[heads, usize::from(t.block.length)],
        )?,
        w1: var(first.weights.clone(), &[first.outputs, first.inputs])?,
        b1: var(first.bias.clone(), &[first.outputs])?,
        w2: var(second.weights.clone(), &[1, second.inputs])?,
        b2: var(second.bias.clone(), &[1])?,
    };
    all_logits(&p, &tensors, d.rows(), heads, &dev)
}

/// The core's logits for the first `rows` rows of `d` with `model` (the
/// exported history block and MLP), through the core's own attention and
/// MLP: row `r`'s history and time are `contexts[d.ctx[r]]`, its candidate's
/// int8 embedding is `embedding(d.item[r])`.
pub fn core_logits<'e>(
    model: &Model,
    d: &SeqData,
    contexts: &[(History, u64)],
    rows: usize,
    embedding: impl Fn(u64) -> &'e [i8],
) -> Vec<f32> {
    let heads = model.history.as_ref().map_or(0, |b| b.heads.len());
    let mut attention = edgewise_core::history::Attention::default();
    let (mut a, mut b, mut input) = (Vec::new(), Vec::new(), Vec::new());
    let mut prepared = None;
    (0..rows.min(d.rows()))
        .map(|r| {
            let c = d.ctx[r] as usize;
            let (history, now) = &contexts[c];
            input.clear();
            input.extend_from_slice(&d.base[r * d.width..(r + 1) * d.width]);
            input.resize(d.width + heads, 0.0);
            if let Some(block) = &model.history {
                if prepared != Some(c) {
                    attention.prepare(block, history, *now);
                    prepared = Some(c);
                }
                attention.write(block, history, embedding(d.item[r]), &mut input[d.width..]);
            }
            edgewise_core::rank::mlp_forward(model, &input, &mut a, &mut b)
        })
        .collect()
}

/// The largest difference between two lists of logits, over their common prefix.
pub fn max_gap(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_core::model::{Diversity, Platt, PreRanker};
    use rand::Rng;

    /// A task only the history can solve: each context's positive is the
    /// candidate closest to the user's newest entry; the base input is noise.
    fn task(contexts: usize, candidates: usize, seed: u64) -> (SeqData, Vec<(History, u64)>, Vec<Quantized>) {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let dim = 8;
        let items: Vec<Vec<f32>> =
            (0..200).map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
        let q: Vec<Quantized> = items.iter().map(|v| Quantized::new(v)).collect();
        let mut d = SeqData::new(2, 6);
        let mut ctxs = Vec::new();
        for _ in 0..contexts {
            let now = 10_000_000u64;
            let mut h = History::new();
            for l in 0..rng.random_range(1..6u64) {
                let it = rng.random_range(0..items.len());
                h.push(it as u64, now - 1000 * (l + 1) * 60, 1 + (l % 2) as u8, &items[it]).expect("push");
            }
            let c = d.push_context(&h, now);
            let newest = &q[h.item(0) as usize];
            let pool: Vec<usize> = (0..candidates).map(|_| rng.random_range(0..items.len())).collect();
            let cos = |i: usize| dot_i8(&q[i].q, &newest.q) as f32 / (q[i].norm * newest.norm);
            let best = pool.iter().copied().fold(pool[0], |b, i| if cos(i) > cos(b) { i } else { b });
            for (k, &i) in pool.iter().enumerate() {
                let y = if i == best && pool[..k].iter().all(|&j| j != best) { 1.0 } else { 0.0 };
                d.push_row(c, &h, i as u64 + 1000 * k as u64, &q[i], &[rng.random_range(-1.0..1.0), 0.5], y);
            }
            ctxs.push((h, now));
        }
        (d, ctxs, q)
    }

    #[test]
    fn learns_from_the_history_and_the_core_scores_what_it_trained() {
        let (train_data, _, _) = task(400, 12, 1);
        let (valid, contexts, q) = task(60, 12, 2);
        let p = SeqParams { epochs: 25, learning_rate: 0.01, ..SeqParams::default() };
        let t = train(&train_data, &valid, &p, |_, _, _| {}).expect("trains");
        let best = t.valid_ndcg[t.best_epoch - 1];
        assert!(best > 0.8, "validation NDCG@10 {best} (by epoch: {:?})", t.valid_ndcg);
        assert!(t.loss.last() < t.loss.first(), "the loss falls: {:?}", t.loss);

        // The exported model through the core: attention, then the MLP.
        let model = Model {
            feature_schema_hash: 0,
            dim: 8,
            n_features: 0,
            n_sources: 0,
            interaction: false,
            prerank_keep: 100,
            prerank: PreRanker { bias: 0.0, w_dot: 0.0, w_retrieval: 0.0, w_features: vec![], w_sources: vec![] },
            mlp: t.layers.clone(),
            calibration: Platt { a: 1.0, b: 0.0 },
            diversity: Diversity { mmr_lambda: 1.0, creator_cap: 0 },
            history: Some(t.block.clone()),
        };
        let core_logits = core_logits(&model, &valid, &contexts, valid.rows(), |id| &q[(id % 1000) as usize].q);
        let trainer = trainer_logits(&t, &valid).expect("trainer logits");
        let diff = max_gap(&core_logits, &trainer);
        assert!(diff < 1e-4, "the core's logits differ from the trainer's by {diff}");
        assert_eq!(ndcg_at_10(&valid, &core_logits), ndcg_at_10(&valid, &trainer));
    }

    #[test]
    fn refuses_empty_or_mismatched_data() {
        let p = SeqParams::default();
        assert!(train(&SeqData::new(2, 4), &SeqData::new(2, 4), &p, |_, _, _| {}).is_err());
        let (d, _, _) = task(3, 4, 3);
        assert!(train(&d, &SeqData::new(3, 6), &p, |_, _, _| {}).is_err());
    }
}
