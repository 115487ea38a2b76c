//! `edgewise-lab train`: embeddings, content embeddings and the ranker,
//! from the interaction log in the store.
//!
//! 1. **Split** ([`split`]): each user's last positive interaction is held out
//!    (the evaluation's test item); training never sees it.
//! 2. **Ranker data**: a further [`TrainOptions::ranker_holdout`] positives per
//!    user are held out of a first factorisation; each becomes a positive
//!    example, with [`TrainOptions::negatives`] uniformly sampled items the user
//!    never touched as negatives. Their inputs are computed the way the core
//!    computes them at serving time, from the user's replayed state (base
//!    embedding blended with the session) as of the example's time. The ranker
//!    thus learns from scores the embeddings were not fitted on.
//! 3. **Ranker** ([`ranker`]): a logistic pre-ranker on (dot, features), then
//!    an MLP on (dot, pre-score, features), then Platt scaling fitted on a
//!    validation slice of the users (their rollout bucket < 20). The retrieval
//!    score and source flags get zero weight: the score of an item does not
//!    depend on which source found it, so "the ranker scores every item" (the
//!    evaluation's brute force) is well defined.
//! 4. **Embeddings** ([`als`]): implicit ALS on the whole training split; item
//!    factors become item embeddings and user factors the users' base
//!    embeddings. Observed pairs get confidence `1 + alpha·w`, with `w` by kind
//!    (like 1, click 0.8, dwell 0.5, skip [`TrainOptions::skip_weight`]).
//! 5. **Content embeddings** ([`content_embedding`]): categories (genres) and the
//!    creation year, for the content source.
//! 6. **Write**: items (embeddings, content, the `popularity` feature counted
//!    on the training split), users (base from ALS; session and content profile
//!    replayed over their whole history with the new vectors), the model
//!    artifact, registered as the stable model.

pub mod als;
pub mod ranker;
pub mod sequence;
pub mod split;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use edgewise_core::model::{Diversity, Model, PreRanker};
use edgewise_core::session::SessionConfig;
use rand::{Rng, SeedableRng};

use edgewise_origin::config::Config;
use edgewise_origin::item::Item;
use edgewise_origin::models::Manifest;
use edgewise_origin::sources::SLOTS;
use edgewise_origin::store::{Interaction, Store};
use edgewise_origin::user::EventKind;
use ranker::{Example, MlpParams, Standardizer};
use split::{Held, Split, replay};

/// Training options (`edgewise-lab train` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// Embedding dimension.
    pub dim: usize,
    /// ALS sweeps.
    pub epochs: usize,
    /// ALS regularisation.
    pub lambda: f32,
    /// ALS confidence scale.
    pub alpha: f32,
    /// Confidence weight of a skip (a rating below 4 is still a watch).
    pub skip_weight: f32,
    /// Positives per user held out of the first factorisation for ranker examples.
    pub ranker_holdout: usize,
    /// Sampled negatives per positive example.
    pub negatives: usize,
    /// MLP passes.
    pub ranker_epochs: usize,
    /// How many candidates the exported model's pre-ranker keeps.
    pub prerank_keep: u32,
    /// History entries the ranker's attention reads (1..=64).
    pub history_length: usize,
    /// Attention heads (1..=8).
    pub heads: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            dim: 64,
            epochs: 15,
            lambda: 5.0,
            alpha: 20.0,
            skip_weight: 0.3,
            ranker_holdout: 2,
            negatives: 16,
            ranker_epochs: 30,
            prerank_keep: 300,
            history_length: 20,
            heads: 2,
            seed: 42,
        }
    }
}

/// Why training failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum TrainError {
    /// Nothing to train on, or options out of range.
    #[error("{0}")]
    Input(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] edgewise_origin::store::StoreError),
    /// Factorisation failed.
    #[error(transparent)]
    Als(#[from] als::AlsError),
    /// The trained model does not encode.
    #[error("the trained model is invalid: {0}")]
    Model(#[from] edgewise_core::model::ModelError),
    /// The sequence ranker's training failed.
    #[error(transparent)]
    Sequence(#[from] sequence::SeqError),
}

/// A training step, for progress reporting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// The first factorisation (ranker data): sweeps done of total.
    RankerEmbeddings(usize, usize),
    /// Ranker epochs done of total, the epoch's mean loss and the validation NDCG@10.
    Ranker(usize, usize, f32, f64),
    /// The final factorisation: sweeps done of total.
    Embeddings(usize, usize),
    /// Writing items and users.
    Writing,
}

/// How interactions became the factorisation's observations, and its λ:
/// what a fold-in ([`als::FoldIn`]) needs to embed a user as training would.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Factorisation {
    /// L2 regularisation λ.
    pub lambda: f32,
    /// Confidence scale: an observed pair's confidence is `1 + alpha·w`.
    pub alpha: f32,
    /// The weight `w` of a skip (a like is 1).
    pub skip_weight: f32,
}

impl Factorisation {
    /// The observations of one user's `interactions` (any order): the best
    /// weight per item, as `(row, confidence)` sorted by row, for the items
    /// `row_of` knows.
    pub fn observations(
        &self,
        interactions: &[Interaction],
        row_of: impl Fn(u64) -> Option<usize>,
    ) -> Vec<(usize, f32)> {
        let mut best: HashMap<usize, f32> = HashMap::new();
        for i in interactions {
            let w = confidence_weight(i.kind, self.skip_weight);
            if let (Some(r), true) = (row_of(i.item), w > 0.0) {
                let e = best.entry(r).or_insert(0.0);
                *e = e.max(w);
            }
        }
        let mut obs: Vec<(usize, f32)> = best.into_iter().map(|(r, w)| (r, 1.0 + self.alpha * w)).collect();
        obs.sort_by_key(|o| o.0);
        obs
    }
}

/// A user's embedding as training would fit it from given interactions: the
/// fold-in ([`als::FoldIn`]) of their observations against the trained item
/// factors, with the factorisation's settings. `eval` embeds users as of an
/// earlier moment with it, `simulate` its truth from all their data.
#[derive(Debug)]
pub struct UserEmbedder {
    row_of: HashMap<u64, usize>,
    fold: als::FoldIn,
    f: Factorisation,
}

impl UserEmbedder {
    /// Over the trained item embeddings (`(id, embedding)`; rows in id order,
    /// an embedding of another length read as zeros padded or cut to `dim`).
    pub fn new<'i>(items: impl IntoIterator<Item = (u64, &'i [f32])>, dim: usize, f: Factorisation) -> Self {
        let mut items: Vec<(u64, &[f32])> = items.into_iter().collect();
        items.sort_by_key(|i| i.0);
        let row_of = items.iter().enumerate().map(|(r, i)| (i.0, r)).collect();
        let factors = items.iter().flat_map(|(_, e)| (0..dim).map(|j| e.get(j).copied().unwrap_or(0.0))).collect();
        Self { row_of, fold: als::FoldIn::new(factors, dim, f.lambda), f }
    }

    /// The embedding of a user with `interactions` (empty: no observation among them).
    pub fn embed(&self, interactions: &[Interaction]) -> Result<Vec<f32>, als::AlsError> {
        let obs = self.f.observations(interactions, |id| self.row_of.get(&id).copied());
        if obs.is_empty() { Ok(Vec::new()) } else { self.fold.user(&obs) }
    }
}

/// The training report the last `train` stored; an error naming what to run without one.
pub fn stored_report(store: &Store) -> Result<TrainReport, TrainError> {
    match store.meta(REPORT_KEY)? {
        Some(r) => serde_json::from_slice(&r).map_err(|e| {
            TrainError::Input(format!("the stored training report is unreadable ({e}): run `edgewise-lab train` again"))
        }),
        None => Err(TrainError::Input("no training report is stored: run `edgewise-lab train` first".into())),
    }
}

/// What training produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// Items embedded.
    pub items: usize,
    /// Users with a base embedding.
    pub users: usize,
    /// Interactions in the training split.
    pub train_interactions: usize,
    /// Users with a held-out test item.
    pub test_users: usize,
    /// Ranker examples (positives and negatives).
    pub ranker_examples: usize,
    /// Ranker AUC on the validation split (each user's second-to-last
    /// positive against every item they had not touched).
    pub ranker_validation_auc: f64,
    /// Pre-ranker AUC on the same rows.
    pub prerank_validation_auc: f64,
    /// The ranker's NDCG@10 on the validation split, at the epoch kept.
    #[serde(default)]
    pub ranker_validation_ndcg: f64,
    /// The epoch early stopping kept (1-based).
    #[serde(default)]
    pub ranker_best_epoch: usize,
    /// History entries the model's attention reads.
    #[serde(default)]
    pub history_length: usize,
    /// Largest difference between the trainer's logit and the core's for
    /// the same validation rows, with the exported model.
    #[serde(default)]
    pub export_max_logit_diff: f32,
    /// Registered model digest.
    pub model_digest: String,
    /// Model artifact size.
    pub model_bytes: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Seed.
    pub seed: u64,
    /// The default of each feature: its mean over the items that give it
    /// (the caller records it in the data directory's schema).
    #[serde(default)]
    pub feature_defaults: std::collections::BTreeMap<String, f64>,
    /// The factorisation's settings (for `eval`'s fold-in).
    pub factorisation: Factorisation,
}

/// The meta key under which the last training report is stored.
pub const REPORT_KEY: &str = "train_report";

fn confidence_weight(kind: u8, skip_weight: f32) -> f32 {
    match EventKind::from_code(kind) {
        Some(EventKind::Like) => 1.0,
        Some(EventKind::Click) => 0.8,
        Some(EventKind::Dwell) => 0.5,
        Some(EventKind::Skip) => skip_weight,
        _ => 0.0,
    }
}

/// Dense row numbers for ids.
struct Rows {
    ids: Vec<u64>,
    of: HashMap<u64, usize>,
}

impl Rows {
    fn new(ids: impl IntoIterator<Item = u64>) -> Self {
        let mut ids: Vec<u64> = ids.into_iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        ids.shrink_to_fit();
        let of = ids.iter().enumerate().map(|(r, &id)| (id, r)).collect();
        Rows { ids, of }
    }
}

fn observations(split: &Split, users: &Rows, items: &Rows, o: &TrainOptions) -> Vec<als::Observation> {
    let f = Factorisation { lambda: o.lambda, alpha: o.alpha, skip_weight: o.skip_weight };
    let mut obs = Vec::new();
    for (user, interactions) in &split.train {
        let Some(&u) = users.of.get(user) else { continue };
        let mine = f.observations(interactions, |id| items.of.get(&id).copied());
        obs.extend(mine.into_iter().map(|(i, c)| (u, i, c)));
    }
    obs.sort_by_key(|&(u, i, _)| (u, i));
    obs
}

/// Positive interactions per item in a split.
fn popularity(split: &Split) -> HashMap<u64, f32> {
    let mut c = HashMap::new();
    for i in split.train_interactions() {
        if split::is_positive(i.kind) {
            *c.entry(i.item).or_insert(0.0) += 1.0;
        }
    }
    c
}

/// An item's content embedding (`dim` values): a multi-hot of its categories
/// below `dim − 1`, scaled to unit length, and the creation year (centred on
/// 1990, one unit per 25 years) in the last slot; the whole vector is then
/// normalised. `None` when `dim` is 0.
pub fn content_embedding(item: &Item, year: f32, dim: usize) -> Option<Vec<f32>> {
    if dim == 0 {
        return None;
    }
    let mut v = vec![0.0f32; dim];
    let cats: Vec<usize> = item.categories.iter().map(|&c| c as usize).filter(|&c| c < dim - 1).collect();
    for &c in &cats {
        v[c] = 1.0 / (cats.len() as f32).sqrt();
    }
    v[dim - 1] = (year - 1990.0) / 25.0;
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    Some(v)
}

fn year_of(item: &Item, year_slot: Option<usize>) -> f32 {
    match year_slot.and_then(|s| item.features.get(s)) {
        Some(&y) if y > 0.0 => y,
        _ => 1970.0 + item.created_at_ms as f32 / (365.25 * 86_400_000.0),
    }
}

/// Items with embeddings from `f`, the popularity feature from `pop`, and content embeddings.
fn embed_items(
    base: &[Item],
    rows: &Rows,
    f: &als::Factors,
    pop: &HashMap<u64, f32>,
    cfg: &Config,
) -> HashMap<u64, Arc<Item>> {
    let slot = |n: &str| cfg.features.names.iter().position(|x| x == n);
    let (pop_slot, year_slot) = (slot("popularity"), slot("year"));
    base.iter()
        .map(|it| {
            let mut it = it.clone();
            if let Some(&r) = rows.of.get(&it.id) {
                it.embedding = f.item(r).to_vec();
            } else {
                it.embedding = vec![0.0; f.dim];
            }
            if let Some(s) = pop_slot {
                it.features[s] = pop.get(&it.id).copied().unwrap_or(0.0).ln_1p();
            }
            it.content = content_embedding(&it, year_of(&it, year_slot), cfg.index.content_dim);
            (it.id, Arc::new(it))
        })
        .collect()
}

/// The mean of each feature over the items that give it (the configured
/// default, else 0, where none does).
fn feature_means(items: &[Item], cfg: &Config) -> std::collections::BTreeMap<String, f64> {
    let names = &cfg.features.names;
    let mut sums = vec![(0.0f64, 0u64); names.len()];
    for it in items {
        for (j, v) in it.features.iter().enumerate() {
            if let Some(acc) = sums.get_mut(j)
                && !v.is_nan()
            {
                acc.0 += f64::from(*v);
                acc.1 += 1;
            }
        }
    }
    names
        .iter()
        .zip(sums)
        .map(|(n, (sum, count))| {
            let mean =
                if count > 0 { sum / count as f64 } else { cfg.features.defaults.get(n).copied().unwrap_or(0.0) };
            (n.clone(), mean)
        })
        .collect()
}

/// Replaces every missing feature of `items` with the mean of the items that
/// give it; returns which slots were missing, by item id.
fn resolve_missing_features(items: &mut [Item], cfg: &Config) -> HashMap<u64, Vec<usize>> {
    let means = feature_means(items, cfg);
    let values: Vec<f32> = cfg.features.names.iter().map(|n| means.get(n).copied().unwrap_or(0.0) as f32).collect();
    let mut missing: HashMap<u64, Vec<usize>> = HashMap::new();
    for it in items.iter_mut() {
        for (j, v) in it.features.iter_mut().enumerate() {
            if v.is_nan() {
                *v = values.get(j).copied().unwrap_or(0.0);
                missing.entry(it.id).or_default().push(j);
            }
        }
    }
    missing
}

/// The core's MLP input vector for one (query, item), as [`edgewise_core::rank::mlp_input`]
/// lays it out, with no retrieval score and no source flags.
fn input(query: &[f32], item: &Item, pre: f32) -> Vec<f32> {
    let dot: f32 = query.iter().zip(&item.embedding).map(|(a, b)| a * b).sum();
    let mut x = Vec::with_capacity(3 + item.features.len() + SLOTS);
    x.extend([dot, pre, 0.0]);
    x.extend(&item.features);
    x.extend([0.0; SLOTS]);
    x
}

/// Every interacted item per user (train and test), for negative sampling.
fn touched(log: &[Interaction]) -> HashMap<u64, HashSet<u64>> {
    let mut t: HashMap<u64, HashSet<u64>> = HashMap::new();
    for i in log {
        t.entry(i.user).or_default().insert(i.item);
    }
    t
}

/// The user's ranking query at `now_ms`: the replayed session blended with `base`.
pub fn query_at(
    state: &edgewise_origin::user::UserState,
    session: &SessionConfig,
    now_ms: u64,
    dim: usize,
) -> Vec<f32> {
    state.query(session, now_ms, dim).unwrap_or_else(|| vec![0.0; dim])
}

/// The user's ranking query just before `held`, as serving would have it:
/// `before` (every earlier interaction, earlier held-out positives included)
/// replayed, and the base embedding from `f`, the factorisation that did not
/// see the held-out positives.
fn query_before(
    before: &[Interaction],
    held: &Held,
    items: &HashMap<u64, Arc<Item>>,
    user_rows: &Rows,
    f: &als::Factors,
    session: &SessionConfig,
) -> Vec<f32> {
    let mut state = replay(before, items, session);
    if let Some(&r) = user_rows.of.get(&held.user) {
        state.base = f.user(r).to_vec();
    }
    query_at(&state, session, held.time_ms, f.dim)
}

/// Builds ranker examples for the held positives.
#[allow(clippy::too_many_arguments)]
fn ranker_examples(
    held: &[Held],
    full: &Split,
    items: &HashMap<u64, Arc<Item>>,
    ids: &[u64],
    user_rows: &Rows,
    f: &als::Factors,
    touched: &HashMap<u64, HashSet<u64>>,
    o: &TrainOptions,
) -> Vec<(u64, Vec<f32>, Vec<u64>)> {
    // (user, query, [the positive, then its negatives]).
    let session = SessionConfig::default();
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(o.seed ^ 0x5eed);
    let mut out = Vec::new();
    for h in held {
        let q = query_before(full.before(h), h, items, user_rows, f, &session);
        let none = HashSet::new();
        let seen = touched.get(&h.user).unwrap_or(&none);
        let mut group = vec![h.item];
        let mut tries = 0;
        while group.len() < 1 + o.negatives && tries < 100 * o.negatives {
            tries += 1;
            let j = ids[rng.random_range(0..ids.len())];
            if !seen.contains(&j) {
                group.push(j);
            }
        }
        out.push((h.user, q, group));
    }
    out
}

/// Trains everything and writes it to the store. `cfg` is the data
/// directory's configuration; the result's configuration has `o.dim` as its
/// dimension (the caller records it as the new schema when it changed).
pub fn train(
    store: &Store,
    cfg: &Config,
    o: &TrainOptions,
    mut step: impl FnMut(Step),
) -> Result<TrainReport, TrainError> {
    if o.dim == 0 || o.dim > usize::from(edgewise_core::bundle::MAX_DIM) {
        return Err(TrainError::Input(format!("--dim {} must be in 1..={}", o.dim, edgewise_core::bundle::MAX_DIM)));
    }
    if o.epochs == 0 || o.ranker_epochs == 0 {
        return Err(TrainError::Input("--epochs and --ranker-epochs must be at least 1".into()));
    }
    if !(1..=edgewise_core::history::MAX_HISTORY).contains(&o.history_length) {
        return Err(TrainError::Input(format!(
            "--history-length {} must be in 1..={}",
            o.history_length,
            edgewise_core::history::MAX_HISTORY
        )));
    }
    if !(1..=edgewise_core::history::MAX_HEADS).contains(&o.heads) {
        return Err(TrainError::Input(format!(
            "--heads {} must be in 1..={}",
            o.heads,
            edgewise_core::history::MAX_HEADS
        )));
    }
    let mut base_items = Vec::new();
    store.for_each_item(|i| base_items.push(i), |_| {})?;
    if base_items.is_empty() {
        return Err(TrainError::Input(format!(
            "{} holds no items: import data first (edgewise-lab import movielens)",
            cfg.data_dir.display()
        )));
    }
    // Missing features take the mean of the items that have them, in
    // training and (recorded as `features.defaults`) in serving.
    let missing = resolve_missing_features(&mut base_items, cfg);
    let mut log = Vec::new();
    store.for_each_interaction(|i| log.push(i))?;
    if log.is_empty() {
        return Err(TrainError::Input("the store holds no interactions: import events first".into()));
    }
    let split = Split::leave_last_out(log.iter().copied());
    let item_rows = Rows::new(base_items.iter().map(|i| i.id));
    let touched = touched(&log);

    // Validation: each user's last training positive (the second-to-last
    // positive overall) chooses the epoch and the hyper-parameters; the test
    // item is never read here.
    let (for_ranker, valid_held) = split.holdout(1);
    // Ranker data from a factorisation that has seen neither the examples nor the validation items.
    let (inner, held) = for_ranker.holdout(o.ranker_holdout);
    let inner_users = Rows::new(inner.train.keys().copied());
    let als_params = als::AlsParams { dim: o.dim, epochs: o.epochs, lambda: o.lambda, seed: o.seed };
    let f_inner = als::fit(
        inner_users.ids.len(),
        item_rows.ids.len(),
        &observations(&inner, &inner_users, &item_rows, o),
        als_params,
        |e| step(Step::RankerEmbeddings(e, o.epochs)),
    )?;
    let items_inner = embed_items(&base_items, &item_rows, &f_inner, &popularity(&inner), cfg);
    let groups = ranker_examples(&held, &split, &items_inner, &item_rows.ids, &inner_users, &f_inner, &touched, o);
    let n_features = cfg.features.names.len();
    // Pre-ranker: logistic regression on (dot, features).
    let mut pre_examples = Vec::new();
    for (_, q, group) in &groups {
        for (k, &id) in group.iter().enumerate() {
            let Some(item) = items_inner.get(&id) else { continue };
            pre_examples.push(Example { x: input(q, item, 0.0), y: if k == 0 { 1.0 } else { 0.0 } });
        }
    }
    if pre_examples.is_empty() {
        return Err(TrainError::Input("no user has enough positive interactions to train the ranker".into()));
    }
    let width = pre_examples[0].x.len();
    let pre_cols: Vec<bool> = (0..width).map(|c| c == 0 || (3..3 + n_features).contains(&c)).collect();
    let mut s_pre = Standardizer::fit(&pre_examples, width);
    for (u, &keep) in s_pre.used.iter_mut().zip(&pre_cols) {
        *u &= keep;
    }
    let std_pre: Vec<Example> = pre_examples.iter().map(|e| Example { x: s_pre.apply(&e.x), y: e.y }).collect();
    let lr = MlpParams { hidden: &[], epochs: 30, learning_rate: 0.05, l2: 1e-4, batch: 256, seed: o.seed };
    let (pre_layers, _) = ranker::train_mlp(&std_pre, &s_pre.used, lr, |_, _| {});
    let pre_layer = s_pre.fold(&pre_layers[0]);
    let pre_score = |x: &[f32]| -> f32 { ranker::logit(std::slice::from_ref(&pre_layer), x) };
    // The main ranker's rows: (dot, pre, features), each in its user's context.
    let base_input = |q: &[f32], item: &Item| {
        let mut x = input(q, item, 0.0);
        x[1] = pre_score(&x);
        x
    };
    let quantized: HashMap<u64, sequence::Quantized> =
        items_inner.iter().map(|(&id, it)| (id, sequence::Quantized::new(&it.embedding))).collect();
    let length = o.history_length;
    let mut train_rows = sequence::SeqData::new(width, length);
    for ((_, q, group), h) in groups.iter().zip(&held) {
        let history = split::history_of(split.before(h), &items_inner);
        let c = train_rows.push_context(&history, h.time_ms);
        for (k, id) in group.iter().enumerate() {
            let (Some(item), Some(e)) = (items_inner.get(id), quantized.get(id)) else { continue };
            train_rows.push_row(c, &history, *id, e, &base_input(q, item), if k == 0 { 1.0 } else { 0.0 });
        }
    }
    // Validation rows: every item the user had not touched, as the evaluation ranks them.
    let session = SessionConfig::default();
    let mut valid_rows = sequence::SeqData::new(width, length);
    let mut valid_contexts = Vec::new();
    for v in &valid_held {
        let before = split.before(v);
        let q = query_before(before, v, &items_inner, &inner_users, &f_inner, &session);
        let seen: HashSet<u64> = before.iter().map(|i| i.item).collect();
        let entries = split::history_of(before, &items_inner);
        let c = valid_rows.push_context(&entries, v.time_ms);
        for id in &item_rows.ids {
            let (Some(item), Some(e)) = (items_inner.get(id), quantized.get(id)) else { continue };
            if seen.contains(id) {
                continue;
            }
            valid_rows.push_row(c, &entries, *id, e, &base_input(&q, item), if *id == v.item { 1.0 } else { 0.0 });
        }
        valid_contexts.push((entries, v.time_ms));
    }
    let sp =
        sequence::SeqParams { heads: o.heads, epochs: o.ranker_epochs, seed: o.seed, ..sequence::SeqParams::default() };
    let trained = sequence::train(&train_rows, &valid_rows, &sp, |e, loss, ndcg| {
        step(Step::Ranker(e, o.ranker_epochs, loss, ndcg));
    })?;
    let valid_logits = sequence::trainer_logits(&trained, &valid_rows)?;
    let valid_pairs: Vec<(f32, f32)> = valid_logits.iter().copied().zip(valid_rows.y.iter().copied()).collect();
    let pre_pairs: Vec<(f32, f32)> =
        valid_rows.base.chunks_exact(width).zip(&valid_rows.y).map(|(x, &y)| (x[1], y)).collect();
    let calibration = ranker::fit_platt(&valid_pairs);
    let model = Model {
        feature_schema_hash: cfg.schema_hash(),
        dim: u16::try_from(o.dim).map_err(|_| TrainError::Input("dim does not fit u16".into()))?,
        n_features: u16::try_from(n_features).map_err(|_| TrainError::Input("too many features".into()))?,
        n_sources: SLOTS as u8,
        interaction: false,
        prerank_keep: o.prerank_keep,
        prerank: PreRanker {
            bias: pre_layer.bias[0],
            w_dot: pre_layer.weights[0],
            w_retrieval: 0.0,
            w_features: pre_layer.weights[3..3 + n_features].to_vec(),
            w_sources: vec![0.0; SLOTS],
        },
        mlp: trained.layers.clone(),
        calibration,
        diversity: Diversity { mmr_lambda: 1.0, creator_cap: 0 },
        history: Some(trained.block.clone()),
    };
    // The core scores what the trainer scored: the exported model through
    // the core's attention and MLP, on the validation rows of the first users.
    let checked = valid_rows.ctx.iter().take_while(|&&c| c < 50).count();
    let core = sequence::core_logits(&model, &valid_rows, &valid_contexts, checked, |id| &quantized[&id].q);
    let export_diff = sequence::max_gap(&core, &valid_logits);
    if export_diff.is_nan() || export_diff > 1e-3 {
        return Err(TrainError::Input(format!(
            "the exported model scores differ from the trainer's by up to {export_diff} (a bug in the export)"
        )));
    }
    let bytes = model.encode()?;
    let digest = edgewise_core::Digest::of(&bytes);

    // Final embeddings on the whole training split.
    let users = Rows::new(split.train.keys().copied());
    let f = als::fit(
        users.ids.len(),
        item_rows.ids.len(),
        &observations(&split, &users, &item_rows, o),
        als_params,
        |e| step(Step::Embeddings(e, o.epochs)),
    )?;
    step(Step::Writing);
    let items = embed_items(&base_items, &item_rows, &f, &popularity(&split), cfg);
    let mut out_items: Vec<Item> = items.values().map(|i| Item::clone(i)).collect();
    out_items.sort_by_key(|i| i.id);
    // Training set popularity for every item; other features the item did
    // not give stay missing, so a later training recomputes their default.
    let pop_slot = cfg.features.names.iter().position(|n| n == "popularity");
    for it in &mut out_items {
        for &j in missing.get(&it.id).map_or(&[][..], Vec::as_slice) {
            if Some(j) != pop_slot {
                it.features[j] = edgewise_origin::config::MISSING_FEATURE;
            }
        }
    }
    let feature_defaults = feature_means(&out_items, cfg);
    store.put_items(&out_items)?;
    let session = SessionConfig::default();
    let mut by_user: HashMap<u64, Vec<Interaction>> = HashMap::new();
    for i in &log {
        by_user.entry(i.user).or_default().push(*i);
    }
    let mut states = store.users()?;
    for (id, state) in &mut states {
        let mut h = by_user.remove(id).unwrap_or_default();
        h.sort_by_key(|i| (i.time_ms, i.item, i.kind));
        let fresh = replay(&h, &items, &session);
        state.session = fresh.session;
        state.content = fresh.content;
        state.content_ms = fresh.content_ms;
        state.base_ms = fresh.base_ms;
        state.base = users.of.get(id).map_or(fresh.base, |&r| f.user(r).to_vec());
    }
    store.put_users(&states)?;
    store.put_model(&digest.to_hex(), &bytes)?;
    let manifest = Manifest { stable: Some(digest), canary: None };
    store.put_meta("manifest", &serde_json::to_vec(&manifest).map_err(|e| TrainError::Input(e.to_string()))?)?;
    let report = TrainReport {
        items: out_items.len(),
        users: users.ids.len(),
        train_interactions: split.train_interactions().count(),
        test_users: split.test.len(),
        ranker_examples: train_rows.rows(),
        ranker_validation_auc: ranker::auc(&valid_pairs),
        prerank_validation_auc: ranker::auc(&pre_pairs),
        ranker_validation_ndcg: trained.valid_ndcg.get(trained.best_epoch.saturating_sub(1)).copied().unwrap_or(0.0),
        ranker_best_epoch: trained.best_epoch,
        history_length: length,
        export_max_logit_diff: export_diff,
        model_digest: digest.to_hex(),
        model_bytes: bytes.len(),
        dim: o.dim,
        seed: o.seed,
        feature_defaults,
        factorisation: Factorisation { lambda: o.lambda, alpha: o.alpha, skip_weight: o.skip_weight },
    };
    store.put_meta(REPORT_KEY, &serde_json::to_vec(&report).map_err(|e| TrainError::Input(e.to_string()))?)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_embeddings_are_unit_multi_hot_plus_year() {
        let item = Item {
            id: 1,
            embedding: vec![],
            content: None,
            creator: 0,
            categories: vec![1, 3, 99],
            region_mask: u32::MAX,
            created_at_ms: 0,
            features: vec![],
        };
        let v = content_embedding(&item, 1990.0, 5).expect("dim > 0");
        assert_eq!(v.len(), 5);
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-6);
        assert_eq!(v[0], 0.0);
        assert!(v[1] > 0.0 && (v[1] - v[3]).abs() < 1e-7, "{v:?}");
        assert_eq!(v[4], 0.0, "1990 is the centre");
        assert!(content_embedding(&item, 1990.0, 0).is_none());
    }
}
