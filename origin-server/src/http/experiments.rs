//! Experiments: definitions (admin key), stored in the store and checked
//! against each other, and each user's assignments (the user's token).

use super::*;
use crate::experiments::{Definition, Experiment, Phase};
use edgewise_core::experiment::Assignment;

/// An experiment as `GET` shows it: the stored definition and where it is now.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ExperimentView {
    /// The stored experiment, defaults resolved.
    pub experiment: Experiment,
    /// The origin's clock when it answered.
    pub now_ms: u64,
    /// The phase at `now_ms`.
    pub phase: Phase,
    /// The share of users enrolled at `now_ms`, in percent.
    pub enrolled_percent: f64,
}

/// One experiment a user is in (or not).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UserExperiment {
    /// The experiment.
    pub name: String,
    /// Its layer.
    pub layer: String,
    /// The user's variant's index (`None`: not enrolled).
    pub index: Option<u8>,
    /// The user's variant's name (`None`: not enrolled).
    pub variant: Option<String>,
}

/// The experiments running now and where the user is in each.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct UserExperiments {
    /// The user.
    pub user: u64,
    /// The origin's clock when it answered.
    pub now_ms: u64,
    /// Every running experiment, by name.
    pub experiments: Vec<UserExperiment>,
}

fn parse(name: &str, json: &[u8]) -> Result<Experiment, ApiError> {
    serde_json::from_slice(json).map_err(|e| ApiError::internal(format!("stored experiment {name}: {e}")))
}

/// Every stored experiment, read on the blocking pool.
async fn stored(st: &Arc<AppState>) -> Result<Vec<Experiment>, ApiError> {
    let st2 = st.clone();
    let rows = tokio::task::spawn_blocking(move || st2.store.experiments()).await.map_err(ApiError::internal)??;
    rows.iter().map(|(name, json)| parse(name, json)).collect()
}

fn view(e: Experiment) -> ExperimentView {
    let now = now_ms();
    ExperimentView {
        phase: e.phase(now),
        enrolled_percent: f64::from(e.ramp_bp(now)) / 100.0,
        now_ms: now,
        experiment: e,
    }
}

#[utoipa::path(put, path = "/v1/experiments/{name}", tag = "experiments",
    params(("name" = String, Path, description = "1–64 characters of a-z, 0-9, '-' and '_'")),
    request_body = Definition,
    responses((status = 201, body = ExperimentView, description = "created"), (status = 200, body = ExperimentView, description = "replaced"),
        (status = 400, body = ErrorBody, description = "an invalid definition; the message names the field and the rule"),
        (status = 409, body = ErrorBody, description = "another experiment runs on the same layer at an overlapping time")),
    security(("api_key" = [])))]
pub(super) async fn put_experiment(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(ApiError::bad_request("invalid experiment: expected a JSON object like {\"variants\": [...]}"));
    }
    let def: Definition =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid experiment: {e}")))?;
    let models: Vec<Digest> = def.variants.iter().filter_map(|v| v.model).collect();
    let st2 = st.clone();
    let known: Vec<Digest> = tokio::task::spawn_blocking(move || -> Result<Vec<Digest>, crate::store::StoreError> {
        let mut known = Vec::new();
        for d in models {
            if st2.store.model(&d.to_hex())?.is_some() {
                known.push(d);
            }
        }
        Ok(known)
    })
    .await
    .map_err(ApiError::internal)??;
    let e = Experiment::new(&name, def, |d| known.contains(d), st.cfg.retrieval.max_k)
        .map_err(|m| ApiError::bad_request(format!("invalid experiment: {m}")))?;
    if let Some(other) = stored(&st).await?.into_iter().find(|o| o.name != e.name && o.overlaps(&e)) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "experiment {:?} runs on layer {:?} at an overlapping time; one layer runs one experiment at a time",
                other.name, e.layer
            ),
        ));
    }
    let json = serde_json::to_vec(&e).map_err(ApiError::internal)?;
    let (st2, n2) = (st.clone(), e.name.clone());
    let replaced = tokio::task::spawn_blocking(move || st2.store.put_experiment(&n2, &json))
        .await
        .map_err(ApiError::internal)??;
    let status = if replaced { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, axum::Json(view(e))).into_response())
}

#[utoipa::path(get, path = "/v1/experiments/{name}", tag = "experiments",
    params(("name" = String, Path, description = "the experiment")),
    responses((status = 200, body = ExperimentView, description = "the experiment and where it is now"), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn get_experiment(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (st2, n2) = (st.clone(), name.clone());
    let json = tokio::task::spawn_blocking(move || st2.store.experiment(&n2))
        .await
        .map_err(ApiError::internal)??
        .ok_or_else(|| ApiError::not_found(format!("experiment {name:?} does not exist")))?;
    Ok(axum::Json(view(parse(&name, &json)?)).into_response())
}

#[utoipa::path(delete, path = "/v1/experiments/{name}", tag = "experiments",
    params(("name" = String, Path, description = "the experiment")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn delete_experiment(
    State(st): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let (st2, n2) = (st.clone(), name.clone());
    let existed =
        tokio::task::spawn_blocking(move || st2.store.delete_experiment(&n2)).await.map_err(ApiError::internal)??;
    if !existed {
        return Err(ApiError::not_found(format!("experiment {name:?} does not exist")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(get, path = "/v1/users/{id}/experiments", tag = "experiments",
    params(("id" = u64, Path, description = "the user")),
    responses((status = 200, body = UserExperiments, description = "the running experiments and the user's variant in each"),
        (status = 400, body = ErrorBody)),
    security(("user_token" = [])))]
pub(super) async fn user_experiments(
    State(st): State<Arc<AppState>>,
    who: Option<axum::Extension<Caller>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = parse_id(&id, "user id")?;
    caller(who)?.may_act_for(user)?;
    let now = now_ms();
    let experiments = stored(&st)
        .await?
        .into_iter()
        .filter(|e| e.phase(now) == Phase::Running)
        .map(|e| {
            let index = match e.assign(user, now) {
                Assignment::Outside => None,
                Assignment::Variant(i) => Some(i),
            };
            UserExperiment {
                variant: index.and_then(|i| e.variants.get(usize::from(i))).map(|v| v.name.clone()),
                index,
                layer: e.layer,
                name: e.name,
            }
        })
        .collect();
    Ok(axum::Json(UserExperiments { user, now_ms: now, experiments }).into_response())
}
