//! `edgewise-lab eval`: offline evaluation with the time-ordered
//! leave-last-out split that training used ([`crate::train::split`]).
//!
//! Every user with a held-out item is evaluated as of the moment of that
//! item: their state is replayed from the training split only, with the
//! trained embeddings, and their long-term embedding is the one training
//! fitted without the held-out item. Trending counters are rebuilt from the
//! training split (counters are decayed to the request time; events of other
//! users after it still count, as in any leave-one-out evaluation).
//!
//! Variants (recall@10 and NDCG@10 of the one held-out item):
//! * **popularity**: the items with the most positive interactions in training;
//! * **mf**: ANN on the user's ALS embedding alone (the origin's index);
//! * **mf_session**: ANN on the ALS embedding blended with the replayed
//!   session (the collaborative source's query), no ranker: what the session
//!   alone adds;
//! * **pipeline**: the origin's multi-source candidates (the same code as
//!   `GET /v1/users/{id}/candidates`) encoded as a personal bundle that
//!   carries the user's embedding (format version 3), ranked by the core
//!   with the registered model as the edge's refined frame ranks it: a
//!   context of session, history and seen items, the base read from the
//!   bundle;
//! * **speculative**: what a client can rank before the personalized bundle
//!   arrives: the personal bundle it kept from the user's **previous visit**
//!   merged with the regional bundle (`edgewise_core::bundle::union`), ranked
//!   by the core with the current session, history and seen items, and the
//!   embedding the kept bundle carries. A visit ends after [`VISIT_GAP_MS`]
//!   without an interaction; the previous visit is the one before the
//!   held-out item's, and its bundle is retrieved as of its last
//!   interaction, with the user's state replayed to that moment and their
//!   embedding folded in ([`crate::train::als::FoldIn`]) from the
//!   interactions up to then only, against the trained item factors. A user
//!   with no previous visit, or one older than [`KEPT_MAX_AGE_MS`] (the
//!   client's age limit), has the regional bundle alone, and no embedding;
//! * **speculative_regional**: the regional bundle alone, for comparison.
//!
//! **Quality loss** at `n` candidates: the share of the brute-force
//! top 10 (the model scoring every unseen item) missing from the `n`
//! candidates. **Speculative agreement**: overlap@10 and Kendall τ (over the
//! items both top-10 lists share) between the speculative and the pipeline
//! ranking. **Bytes**: the pipeline bundle against the same candidates as JSON.
//!
//! In all variants, items the user saw in training are excluded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use edgewise_core::Region;
use edgewise_core::bundle::Bundle;
use edgewise_core::context::UserView;
use edgewise_core::model::Model;
use edgewise_core::rank::{RankContext, RankOutput, Ranker};
use edgewise_core::session::SessionConfig;
use serde::Serialize;

use crate::train::split::{Split, history_of, is_positive, replay_with};
use crate::train::{UserEmbedder, stored_report};
use edgewise_origin::bundles::Audience;
use edgewise_origin::catalogue::Catalogue;
use edgewise_origin::config::Config;
use edgewise_origin::item::Item;
use edgewise_origin::models::Manifest;
use edgewise_origin::sources::fusion::Fused;
use edgewise_origin::sources::{self, Request, Retrieved, SLOTS, Source};
use edgewise_origin::sources::{REGIONAL_PLAN, personal_plan};
use edgewise_origin::store::Store;
use edgewise_origin::trending::trending_merge;
use edgewise_origin::user::UserState;

/// A visit ends after this long without an interaction (30 minutes).
pub const VISIT_GAP_MS: u64 = 30 * 60 * 1000;
/// A kept personal bundle older than this is not used (30 days).
pub const KEPT_MAX_AGE_MS: u64 = 30 * 24 * 3600 * 1000;

/// Evaluation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// Candidates of the pipeline and speculative variants.
    pub candidates: usize,
    /// Candidate counts at which quality loss is measured.
    pub loss_at: Vec<usize>,
    /// Evaluate at most this many users (all when `None`).
    pub max_users: Option<usize>,
    /// Keep each user's top 10 per variant in [`EvalReport::lists`] (for the simulation study).
    pub keep_lists: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { candidates: 300, loss_at: vec![50, 100, 300, 1000], max_users: None, keep_lists: false }
    }
}

/// One user's top 10 of three variants, as of their held-out moment.
#[derive(Debug, Clone, PartialEq)]
pub struct UserLists {
    /// The user.
    pub user: u64,
    /// The pipeline's (multi-source candidates ranked by the core).
    pub pipeline: Vec<u64>,
    /// MF only (ANN on the ALS user vector).
    pub mf: Vec<u64>,
    /// The most popular unseen items.
    pub popularity: Vec<u64>,
}

/// Recall@10 and NDCG@10 of one variant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VariantScore {
    /// Variant name.
    pub variant: String,
    /// Share of users whose held-out item is in the top 10.
    pub recall_at_10: f64,
    /// Mean NDCG@10 (one relevant item: `1 / log2(rank + 2)` when in the top 10).
    pub ndcg_at_10: f64,
}

/// Quality loss at one candidate count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityLoss {
    /// Candidates retrieved.
    pub candidates: usize,
    /// Share of the brute-force top 10 missing from them.
    pub loss: f64,
    /// Candidates as a share of the catalogue.
    pub share_of_catalogue: f64,
}

/// Speculative against refined.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Mean |spec@10 ∩ refined@10| / 10.
    pub overlap_at_10: f64,
    /// Mean Kendall τ over the shared items (users with at least two shared items).
    pub kendall_tau: f64,
    /// Users the τ mean is over.
    pub tau_users: usize,
}

/// Bytes per request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bytes {
    /// Mean bundle size.
    pub bundle: f64,
    /// Mean size of the same candidates as JSON.
    pub json: f64,
    /// `json / bundle`.
    pub json_over_bundle: f64,
}

/// The whole report (`eval --json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// Users evaluated.
    pub users: usize,
    /// Each user's lists, when [`EvalOptions::keep_lists`] asked for them.
    #[serde(skip)]
    pub lists: Vec<UserLists>,
    /// Items in the catalogue.
    pub catalogue: usize,
    /// Candidates of the pipeline and speculative variants.
    pub candidates: usize,
    /// Model ranked with.
    pub model: String,
    /// Per-variant scores.
    pub variants: Vec<VariantScore>,
    /// Quality loss by candidate count.
    pub quality_loss: Vec<QualityLoss>,
    /// Speculative agreement.
    pub speculative_agreement: Agreement,
    /// Users whose speculative ranking had a personal bundle kept from their previous visit.
    #[serde(default)]
    pub users_with_kept_bundle: usize,
    /// Bytes per request.
    pub bytes_per_request: Bytes,
}

/// Why evaluation could not run.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are described by each variant's error message
pub enum EvalError {
    /// Missing data or model.
    #[error("{0}")]
    Input(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] edgewise_origin::store::StoreError),
    /// A bundle or ranking failed.
    #[error("{0}")]
    Pipeline(String),
}

/// NDCG@10 of one relevant item at 0-based `rank`.
pub fn ndcg_at_10(rank: Option<usize>) -> f64 {
    match rank {
        Some(r) if r < 10 => 1.0 / ((r + 2) as f64).log2(),
        _ => 0.0,
    }
}

struct Acc {
    hits: f64,
    ndcg: f64,
}

impl Acc {
    fn add(&mut self, top: &[u64], target: u64) {
        let rank = top.iter().take(10).position(|&i| i == target);
        self.hits += f64::from(u8::from(rank.is_some()));
        self.ndcg += ndcg_at_10(rank);
    }
}

fn json_size(cfg: &Config, cat: &Catalogue, r: &Retrieved) -> usize {
    let rows: Vec<serde_json::Value> = r
        .rows
        .iter()
        .filter_map(|row| {
            let it = cat.get(row.id)?;
            let sources: Vec<&str> =
                Source::ALL.iter().zip(&row.ranks).filter(|(_, r)| r.is_some()).map(|(s, _)| s.name()).collect();
            let features: serde_json::Map<String, serde_json::Value> =
                cfg.features.names.iter().zip(&it.features).map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
            Some(serde_json::json!({
                "id": it.id, "embedding": it.embedding, "features": features, "creator": it.creator,
                "category": it.categories.first().copied().unwrap_or(0), "region_mask": it.region_mask,
                "retrieval_score": row.score as f32, "sources": sources,
            }))
        })
        .collect();
    serde_json::to_vec(&rows).map_or(0, |v| v.len())
}

/// Runs the evaluation on the data directory's store and registered model.
pub async fn evaluate(
    store: Arc<Store>,
    cfg: &Config,
    o: &EvalOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<EvalReport, EvalError> {
    let manifest: Manifest = match store.meta("manifest")? {
        Some(m) => {
            serde_json::from_slice(&m).map_err(|e| EvalError::Input(format!("the stored manifest is corrupt: {e}")))?
        }
        None => Manifest::default(),
    };
    let digest = manifest
        .for_user(None)
        .ok_or_else(|| EvalError::Input("no model is registered: run `edgewise-lab train` first".into()))?;
    let bytes = store
        .model(&digest.to_hex())?
        .ok_or_else(|| EvalError::Input(format!("model {digest} is missing from the store")))?;
    let model = Model::decode(&bytes).map_err(|e| EvalError::Input(format!("model {digest}: {e}")))?;

    let report = stored_report(&store).map_err(|e| EvalError::Input(e.to_string()))?;

    let mut items = Vec::new();
    store.for_each_item(|i| items.push(i), |_| {})?;
    if items.iter().all(|i| i.embedding.iter().all(|&x| x == 0.0)) {
        return Err(EvalError::Input("the items have no embeddings yet: run `edgewise-lab train` first".into()));
    }
    let by_id: HashMap<u64, Arc<Item>> = items.iter().map(|i| (i.id, Arc::new(i.clone()))).collect();
    let catalogue = Arc::new(Catalogue::new(cfg).map_err(EvalError::Input)?);
    catalogue.bulk_upsert(items, true);

    let mut log = Vec::new();
    store.for_each_interaction(|i| log.push(i))?;
    let split = Split::leave_last_out(log);
    let profiles = store.profiles()?;
    let stored: BTreeMap<u64, UserState> = store.users()?.into_iter().collect();
    let session = SessionConfig::default();
    let region_of = |u: u64| profiles.get(&u).and_then(|p| p.region);

    // Trending from the training split, through the event path's own bump rule.
    let half_life = cfg.retrieval.trending_half_life_s * 1000.0;
    // The same replay gives each user's state as of their held-out item.
    let mut bumps = Vec::new();
    let mut states: HashMap<u64, UserState> = HashMap::new();
    for (user, history) in &split.train {
        let region = region_of(*user).unwrap_or(0);
        states.insert(*user, replay_with(history, &by_id, &session, region, |b| bumps.push(b)));
    }
    bumps.sort_by_key(|b| b.at_ms);
    let mut counters: HashMap<(u8, u64), (f64, u64)> = HashMap::new();
    for b in &bumps {
        let key = (b.region, b.item);
        let next = trending_merge(counters.get(&key).copied(), b, half_life);
        counters.insert(key, next);
    }
    for ((region, item), v) in counters {
        catalogue.set_trending(region, item, v);
    }
    let mut pop: HashMap<u64, u32> = HashMap::new();
    for i in split.train_interactions() {
        if is_positive(i.kind) {
            *pop.entry(i.item).or_default() += 1;
        }
    }
    let mut by_pop: Vec<(u64, u32)> =
        catalogue_ids(&by_id).into_iter().map(|id| (id, pop.get(&id).copied().unwrap_or(0))).collect();
    by_pop.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));

    // A user's embedding as of an earlier moment: folded in against the trained item factors.
    let dim = cfg.index.dim;
    let embedder =
        UserEmbedder::new(by_id.iter().map(|(&id, i)| (id, i.embedding.as_slice())), dim, report.factorisation);

    let mut eval_cfg = cfg.clone();
    // Offline, a source is never dropped for time: every variant sees every source.
    eval_cfg.retrieval.deadline_ms = 60_000;
    let tests: Vec<_> = split.test.iter().take(o.max_users.unwrap_or(usize::MAX)).copied().collect();
    let names = ["popularity", "mf", "mf_session", "pipeline", "speculative", "speculative_regional"];
    let mut kept_users = 0usize;
    let mut lists = Vec::new();
    let mut acc: Vec<Acc> = names.iter().map(|_| Acc { hits: 0.0, ndcg: 0.0 }).collect();
    let mut loss = vec![0.0f64; o.loss_at.len()];
    let (mut overlap, mut tau, mut tau_users) = (0.0f64, 0.0f64, 0usize);
    let (mut bundle_bytes, mut json_bytes) = (0.0f64, 0.0f64);
    let mut ranker = Ranker::new();
    let mut out = RankOutput::default();
    let total = tests.len() as u64;
    for (n, held) in tests.iter().enumerate() {
        let mut state = states.remove(&held.user).unwrap_or_default();
        if let Some(s) = stored.get(&held.user).filter(|s| s.base.len() == dim) {
            state.base = s.base.clone();
        }
        let now = held.time_ms;
        let region = region_of(held.user).and_then(|r| Region::new(r).ok());
        let seen: edgewise_origin::sources::Exclude = state.seen.iter().chain(&state.hidden).copied().collect();

        let popular: Vec<u64> = by_pop.iter().map(|p| p.0).filter(|id| !seen.contains(id)).take(10).collect();
        acc[0].add(&popular, held.item);

        let filter = |id: u64, _mask: u32| !seen.contains(&id);
        let mf: Vec<u64> = if state.base.len() == dim {
            catalogue.index.search(&state.base, 10, &filter).into_iter().map(|h| h.0).collect()
        } else {
            Vec::new()
        };
        acc[1].add(&mf, held.item);
        let blended = state.query(&session, now, dim).filter(|q| q.len() == dim);
        let mf_session: Vec<u64> = blended
            .map(|q| catalogue.index.search(&q, 10, &filter).into_iter().map(|h| h.0).collect())
            .unwrap_or_default();
        acc[2].add(&mf_session, held.item);

        let seen_ids: Vec<u64> = seen.iter().copied().collect();
        let view = UserView { seen: &seen_ids, hidden: &[], ..state.view() };
        let mut ctx = view.rank_context(10, now, region, dim, session);
        // The user's history as of the held-out moment: their training positives, newest first.
        ctx.history = history_of(split.train.get(&held.user).map_or(&[][..], Vec::as_slice), &by_id);

        let shared = Arc::new(state.clone());
        let request = |k_user: bool| {
            Arc::new(Request {
                catalogue: catalogue.clone(),
                user: k_user.then(|| shared.clone()),
                region,
                now_ms: now,
                query: if k_user { state.query(&session, now, dim) } else { None },
                exclude: seen.clone(),
                recent_seeds: cfg.retrieval.recent_seeds,
            })
        };
        let personal = personal_plan(&eval_cfg);
        let backfill = [Source::Fresh, Source::Popular];
        let pipeline_err = |e: &dyn std::fmt::Display| EvalError::Pipeline(e.to_string());
        let build = |r: &Retrieved, audience: Audience<'_>, at_ms: u64| -> Result<_, EvalError> {
            edgewise_origin::bundles::build(&eval_cfg, &catalogue, r, audience, region, at_ms, None)
                .map(|b| b.bytes)
                .map_err(|e| pipeline_err(&e))
        };
        let mut rank_bytes = |bytes: &[u8], ctx: &RankContext| -> Result<Vec<u64>, EvalError> {
            let b = Bundle::decode(bytes).map_err(|e| pipeline_err(&e))?;
            ranker.rank(&model, &b, ctx, &mut out).map_err(|e| EvalError::Pipeline(format!("ranking: {e}")))?;
            Ok(out.items.iter().map(|i| i.id).collect())
        };

        // Brute force: every unseen item, no pre-rank cut.
        let everything = Retrieved {
            rows: by_pop
                .iter()
                .filter(|p| !seen.contains(&p.0))
                .map(|p| Fused { id: p.0, score: 0.0, ranks: [None; SLOTS] })
                .collect(),
            ..Retrieved::default()
        };
        let mut bf_ctx = ctx.clone();
        bf_ctx.prerank_keep = u32::try_from(everything.rows.len()).unwrap_or(u32::MAX);
        let brute: HashSet<u64> =
            rank_bytes(&build(&everything, Audience::Personal { base: &[] }, now)?, &bf_ctx)?.into_iter().collect();
        // The edge's refined frame and the speculative one: no base in the
        // context; a personal bundle brings the user's.
        let mut spec_ctx = ctx.clone();
        spec_ctx.base = Vec::new();
        let me = Audience::Personal { base: &state.base };

        let mut pipeline_top = Vec::new();
        let mut sizes = o.loss_at.clone();
        if !sizes.contains(&o.candidates) {
            sizes.push(o.candidates);
        }
        for &size in &sizes {
            let r = sources::retrieve(request(true), &personal, size, &eval_cfg.retrieval, &backfill).await;
            if let Some(slot) = o.loss_at.iter().position(|&s| s == size) {
                let got: HashSet<u64> = r.rows.iter().map(|f| f.id).collect();
                let missing = brute.iter().filter(|id| !got.contains(id)).count();
                loss[slot] += missing as f64 / brute.len().max(1) as f64;
            }
            if size == o.candidates {
                let bytes = build(&r, me, now)?;
                pipeline_top = rank_bytes(&bytes, &spec_ctx)?;
                bundle_bytes += bytes.len() as f64;
                json_bytes += json_size(cfg, &catalogue, &r) as f64;
            }
        }
        acc[3].add(&pipeline_top, held.item);
        if o.keep_lists {
            lists.push(UserLists {
                user: held.user,
                pipeline: pipeline_top.clone(),
                mf: mf.clone(),
                popularity: popular.clone(),
            });
        }

        let regional =
            sources::retrieve(request(false), &REGIONAL_PLAN, o.candidates, &eval_cfg.retrieval, &[Source::Fresh])
                .await;
        let regional_bytes = build(&regional, Audience::Regional, now)?;
        let spec_regional = rank_bytes(&regional_bytes, &spec_ctx)?;
        acc[5].add(&spec_regional, held.item);

        // The personal bundle kept from the previous visit, if there is one young enough.
        let history = split.train.get(&held.user).map_or(&[][..], Vec::as_slice);
        let start = visit_start(history, held.time_ms);
        let spec = match start.checked_sub(1).map(|i| history[i].time_ms) {
            Some(then) if now.saturating_sub(then) <= KEPT_MAX_AGE_MS => {
                kept_users += 1;
                let before =
                    replay_with(&history[..start], &by_id, &session, region_of(held.user).unwrap_or(0), |_| {});
                let prev = Arc::new(Request {
                    catalogue: catalogue.clone(),
                    query: before.query(&session, then, dim),
                    exclude: before.seen.iter().chain(&before.hidden).copied().collect(),
                    user: Some(Arc::new(before)),
                    region,
                    now_ms: then,
                    recent_seeds: cfg.retrieval.recent_seeds,
                });
                let r = sources::retrieve(prev, &personal, o.candidates, &eval_cfg.retrieval, &backfill).await;
                let base_then =
                    embedder.embed(&history[..start]).map_err(|e| EvalError::Pipeline(format!("fold-in: {e}")))?;
                let kept = build(&r, Audience::Personal { base: &base_then }, then)?;
                let (k, g) = (
                    Bundle::decode(&kept).map_err(|e| pipeline_err(&e))?,
                    Bundle::decode(&regional_bytes).map_err(|e| pipeline_err(&e))?,
                );
                let local = edgewise_core::bundle::union(&k, &g, now).map_err(|e| pipeline_err(&e))?;
                rank_bytes(&local, &spec_ctx)?
            }
            _ => spec_regional,
        };
        acc[4].add(&spec, held.item);

        let refined: HashSet<u64> = pipeline_top.iter().copied().collect();
        overlap += spec.iter().filter(|id| refined.contains(id)).count() as f64 / 10.0;
        if let Some(t) = edgewise_core::merge::kendall_tau(&spec, &pipeline_top) {
            tau += t;
            tau_users += 1;
        }
        progress(n as u64 + 1, total);
    }
    let users = tests.len().max(1) as f64;
    Ok(EvalReport {
        lists,
        users: tests.len(),
        catalogue: by_id.len(),
        candidates: o.candidates,
        model: digest.to_hex(),
        variants: names
            .iter()
            .zip(&acc)
            .map(|(n, a)| VariantScore {
                variant: (*n).to_string(),
                recall_at_10: a.hits / users,
                ndcg_at_10: a.ndcg / users,
            })
            .collect(),
        quality_loss: o
            .loss_at
            .iter()
            .zip(&loss)
            .map(|(&c, &l)| QualityLoss {
                candidates: c,
                loss: l / users,
                share_of_catalogue: c as f64 / by_id.len().max(1) as f64,
            })
            .collect(),
        users_with_kept_bundle: kept_users,
        speculative_agreement: Agreement {
            overlap_at_10: overlap / users,
            kendall_tau: if tau_users > 0 { tau / tau_users as f64 } else { f64::NAN },
            tau_users,
        },
        bytes_per_request: Bytes {
            bundle: bundle_bytes / users,
            json: json_bytes / users,
            json_over_bundle: if bundle_bytes > 0.0 { json_bytes / bundle_bytes } else { f64::NAN },
        },
    })
}

/// Index of the first interaction of the visit that `at_ms` belongs to in
/// `history` (time-ordered interactions before `at_ms`): walking back from
/// `at_ms`, a visit goes on while the gap to the previous interaction is at
/// most [`VISIT_GAP_MS`]. `history[..start]` is everything before that visit.
pub fn visit_start(history: &[edgewise_origin::store::Interaction], at_ms: u64) -> usize {
    let mut start = history.len();
    let mut t = at_ms;
    while start > 0 && t.saturating_sub(history[start - 1].time_ms) <= VISIT_GAP_MS {
        start -= 1;
        t = history[start].time_ms;
    }
    start
}

fn catalogue_ids(by_id: &HashMap<u64, Arc<Item>>) -> Vec<u64> {
    let mut ids: Vec<u64> = by_id.keys().copied().collect();
    ids.sort_unstable();
    ids
}

impl EvalReport {
    /// The report as text tables.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} users, {} items, model {}",
            self.users,
            self.catalogue,
            &self.model[..12.min(self.model.len())]
        );
        let _ = writeln!(s, "\n| variant | recall@10 | NDCG@10 |\n|---|---:|---:|");
        for v in &self.variants {
            let _ = writeln!(s, "| {} | {:.4} | {:.4} |", v.variant, v.recall_at_10, v.ndcg_at_10);
        }
        let _ = writeln!(s, "\n| candidates | share of catalogue | quality loss |\n|---:|---:|---:|");
        for q in &self.quality_loss {
            let _ = writeln!(s, "| {} | {:.1}% | {:.2}% |", q.candidates, 100.0 * q.share_of_catalogue, 100.0 * q.loss);
        }
        let a = &self.speculative_agreement;
        let _ = writeln!(
            s,
            "\nspeculative vs refined: overlap@10 {:.3}, Kendall tau {:.3} (over {} users with 2+ shared items); \
             {} of {} users had a personal bundle kept from their previous visit",
            a.overlap_at_10, a.kendall_tau, a.tau_users, self.users_with_kept_bundle, self.users
        );
        let b = &self.bytes_per_request;
        let _ = writeln!(
            s,
            "bytes per request ({} candidates): bundle {:.0}, JSON {:.0} ({:.1}x larger)",
            self.candidates, b.bundle, b.json, b.json_over_bundle
        );
        s
    }

    /// Draws `quality_loss.png` and `ndcg.png` into `dir`; returns their paths.
    pub fn plots(&self, dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, crate::plot::PlotError> {
        use crate::plot::{BarChart, LineChart, Series};
        std::fs::create_dir_all(dir)
            .map_err(|e| crate::plot::PlotError::Draw { path: dir.to_owned(), reason: e.to_string() })?;
        let loss = dir.join("quality_loss.png");
        LineChart {
            title: format!("Quality loss: brute-force top 10 missing from the candidates ({} items)", self.catalogue),
            x_label: "candidates".into(),
            y_label: "quality loss (%)".into(),
            log_x: true,
            log_y: false,
            series: vec![Series {
                label: "multi-source retrieval".into(),
                points: self.quality_loss.iter().map(|q| (q.candidates as f64, 100.0 * q.loss)).collect(),
            }],
        }
        .write_png(&loss)?;
        let ndcg = dir.join("ndcg.png");
        BarChart {
            title: format!("NDCG@10, leave-last-out, {} users", self.users),
            y_label: "NDCG@10".into(),
            bars: self.variants.iter().map(|v| (v.variant.clone(), v.ndcg_at_10)).collect(),
        }
        .write_png(&ndcg)?;
        Ok(vec![loss, ndcg])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_of_one_relevant_item() {
        assert_eq!(ndcg_at_10(Some(0)), 1.0);
        assert!((ndcg_at_10(Some(1)) - 1.0 / 3f64.log2()).abs() < 1e-12);
        assert_eq!(ndcg_at_10(Some(10)), 0.0);
        assert_eq!(ndcg_at_10(None), 0.0);
    }
}
