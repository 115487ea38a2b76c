//! `POST /v1/rank`: the refined ranking computed at the origin, with every
//! stage explained.

use super::*;

/// A request for the refined ranking computed at the origin.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RankBody {
    /// User id.
    pub user: u64,
    /// The user's region, 0–31.
    #[serde(default)]
    pub region: Option<u8>,
    /// Items to return, 1–1000 (default 20).
    #[serde(default)]
    pub k: Option<u32>,
    /// Candidates to retrieve and rank (default retrieval.default_k).
    #[serde(default)]
    pub candidates: Option<usize>,
}

#[utoipa::path(post, path = "/v1/rank", tag = "ranking", request_body = RankBody,
    responses((status = 200, body = RankResponse, description = "the ranking with every stage explained",
            headers(("x-edgewise-ranked-on" = String, description = "`gpu` or `cpu`: which path ranked (the same result either way)"))), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "no model registered")),
    security(("user_token" = [])))]
pub(super) async fn rank(
    State(st): State<Arc<AppState>>,
    who: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = caller(who)?;
    // serde would also read a struct from a JSON array (`[1, 2]` as user 1, region 2): objects only.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::bad_request("invalid rank request: expected a JSON object like {\"user\": 42}"));
    }
    let b: RankBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid rank request: {e}")))?;
    who.may_act_for(b.user)?;
    require_ready(&st)?;
    let k = b.k.unwrap_or(20);
    if !(1..=1000).contains(&k) {
        return Err(ApiError::bad_request("k must be in 1..=1000"));
    }
    let n = b.candidates.unwrap_or(st.cfg.retrieval.default_k);
    if !(1..=st.cfg.retrieval.max_k).contains(&n) {
        return Err(ApiError::bad_request(format!("candidates must be in 1..={}", st.cfg.retrieval.max_k)));
    }
    let region = b.region.map(Region::new).transpose().map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Some(digest) = model_for(&st, Some(b.user)) else {
        return Err(ApiError::new(StatusCode::CONFLICT, "no model is registered yet (PUT /v1/models)"));
    };
    let st2 = st.clone();
    let d2 = digest;
    let model =
        tokio::task::spawn_blocking(move || st2.models.get(&d2, || st2.store.model(&d2.to_hex()).ok().flatten()))
            .await
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::internal(format!("registered model {digest} cannot be loaded")))?;
    let (user, retrieved, built, now) = personal_bundle(&st, b.user, region, n).await?;
    let bundle = edgewise_core::bundle::Bundle::decode(&built.bytes).map_err(ApiError::internal)?;
    let view = user.as_deref().map(crate::user::UserState::view).unwrap_or_default();
    let mut ctx = view.rank_context(k, now, region, st.cfg.index.dim, st.session);
    // The user's recent history, for a model with a history block (others ignore it).
    if model.history.is_some() {
        let (st2, id) = (st.clone(), b.user);
        let log = tokio::task::spawn_blocking(move || {
            st2.store.last_interactions(
                id,
                4 * edgewise_core::history::MAX_HISTORY,
                crate::user::EventKind::is_positive_code,
            )
        })
        .await
        .map_err(ApiError::internal)??;
        // One read lock for every lookup, released before the next await.
        ctx.history = {
            let items = st.catalogue.read();
            crate::store::history_from_log(&log, |id| items.get(id).map(|l| l.embedding.as_slice()))
        };
    }
    let (st2, bytes) = (st.clone(), built.bytes.clone());
    let (out, ranked_on) = tokio::task::spawn_blocking(move || rank_blocking(&st2, &model, &bytes, &ctx))
        .await
        .map_err(ApiError::internal)??;
    let names = edgewise_core::bundle::SOURCE_NAMES;
    let ids: Vec<u64> = out.items.iter().map(|it| it.id).collect();
    let st2 = st.clone();
    let titles = tokio::task::spawn_blocking(move || st2.store.titles(&ids)).await.map_err(ApiError::internal)??;
    let items: Vec<RankedJson> = out
        .items
        .iter()
        .map(|it| {
            let mask = bundle.source_mask(it.row as usize);
            RankedJson {
                id: it.id,
                title: titles.get(&it.id).cloned(),
                score: it.score,
                pre_score: it.pre_score,
                main_score: it.main_score,
                mmr_penalty: it.mmr_penalty,
                retrieval_score: bundle.retrieval_score(it.row as usize),
                sources: names.iter().enumerate().filter(|(j, _)| mask & (1 << j) != 0).map(|(_, n)| *n).collect(),
            }
        })
        .collect();
    let mut stages = std::collections::BTreeMap::new();
    for r in &out.rows {
        *stages.entry(r.outcome.as_str()).or_insert(0u32) += 1;
    }
    let body = axum::Json(RankResponse {
        user: b.user,
        model: digest.to_hex(),
        bundle: built.digest.clone(),
        candidates: bundle.len(),
        sources_dropped: dropped_names(&retrieved),
        stages,
        items,
    });
    Ok(([(edgewise_wire::headers::RANKED_ON, ranked_on)], body).into_response())
}

/// Ranks on the GPU path when `rank.gpu = "auto"` found one, else on the CPU
/// core (same bytes); returns the output and which path ran. A GPU failure
/// falls back to the CPU and is logged.
fn rank_blocking(
    st: &AppState,
    model: &edgewise_core::model::Model,
    bytes: &[u8],
    ctx: &edgewise_core::RankContext,
) -> Result<(edgewise_core::rank::RankOutput, &'static str), ApiError> {
    let bundle = edgewise_core::bundle::Bundle::decode_prechecked(bytes).map_err(ApiError::internal)?;
    let mut out = edgewise_core::rank::RankOutput::default();
    let failed = |e: &dyn std::fmt::Display| ApiError::internal(format!("ranking failed: {e}"));
    // The GPU is one device behind one lock; once it is gone (a lost device),
    // rankings go back to running in parallel on the CPU, without the lock.
    let gpu = st.gpu.as_ref().map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let Some(mut ranker) = gpu.filter(|r| r.gpu().is_some()) else {
        edgewise_core::rank::Ranker::new().rank(model, &bundle, ctx, &mut out).map_err(|e| failed(&e))?;
        return Ok((out, "cpu"));
    };
    let prepared = ranker.prepare(bundle).map_err(|e| failed(&e))?;
    let path = ranker.rank(model, &prepared, ctx, &mut out).map_err(|e| failed(&e))?;
    if let edgewise_shaders::Path::Cpu { fallback: Some(e) } = &path {
        tracing::warn!(error = %e, "the GPU path failed; ranked on the CPU");
    }
    Ok((out, path.name()))
}

/// `POST /v1/rank`'s answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RankResponse {
    /// The user.
    pub user: u64,
    /// The model that ranked (sha256).
    pub model: String,
    /// The personalized bundle that was ranked (sha256).
    pub bundle: String,
    /// Candidates in it.
    pub candidates: usize,
    /// Candidate sources that failed or missed their deadline.
    pub sources_dropped: Vec<&'static str>,
    /// How many candidates ended at each stage (`selected`, `seen`, `region`, `prerank_cut`, …).
    pub stages: std::collections::BTreeMap<&'static str, u32>,
    /// The ranking, best first.
    pub items: Vec<RankedJson>,
}

/// One ranked item, with the scores of every stage.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct RankedJson {
    /// Item id.
    pub id: u64,
    /// Its title, when one is stored.
    pub title: Option<String>,
    /// Calibrated score.
    pub score: f32,
    /// Pre-rank score.
    pub pre_score: f32,
    /// The MLP's logit.
    pub main_score: f32,
    /// What diversity (MMR) took off.
    pub mmr_penalty: f32,
    /// The fused retrieval score.
    pub retrieval_score: f32,
    /// The candidate sources that found it.
    pub sources: Vec<&'static str>,
}
