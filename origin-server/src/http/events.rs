//! `POST /v1/events`: feedback events, idempotent by `event_id`.

use super::*;

#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = Vec<Event>, description = "a JSON array of events, or NDJSON; idempotent by event_id. With a user token, every event must be that user's (403 otherwise, nothing written)."),
    responses((status = 200, body = BatchResponse, description = "a status per event; at least one accepted"),
        (status = 400, body = BatchRefused, description = "no event accepted (a status per event), or the body is not JSON/NDJSON")),
    security(("api_key" = []), ("user_token" = [])))]
pub(super) async fn post_events(
    State(st): State<Arc<AppState>>,
    who: Option<axum::Extension<Caller>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let who = caller(who)?;
    require_ready(&st)?;
    let (now, skew) = (now_ms(), st.cfg.ingest.max_future_ms);
    let Validated { mut results, valid, slots } = validate_batch(&body, |v| Event::from_json(v, now, skew))?;
    // A user token may only write that user's events: one stranger refuses the whole batch.
    for e in &valid {
        who.may_act_for(e.user)?;
    }
    let applied_count = valid.len();
    if applied_count > 0 {
        let st2 = st.clone();
        let half_life = st.cfg.retrieval.trending_half_life_s * 1000.0;
        let (valid, r) = tokio::task::spawn_blocking(move || {
            let cat = st2.catalogue.clone();
            let session = st2.session;
            let r = st2.store.apply_events(
                &valid,
                |e, state| state.apply(e, cat.get(e.item).as_deref(), &session),
                |cur, b| trending_merge(cur, b, half_life),
            );
            (valid, r)
        })
        .await
        .map_err(ApiError::internal)?;
        let (outcomes, bumped) = r?;
        for ((region, item), v) in bumped {
            st.catalogue.set_trending(region, item, v);
        }
        for ((e, slot), o) in valid.iter().zip(slots).zip(outcomes) {
            let status = if o == EventOutcome::Applied { "applied" } else { "duplicate" };
            st.metrics.writes.with_label_values(&["event", status]).inc();
            results[slot] =
                BatchResult { index: slot, id: None, event_id: Some(e.event_id.clone()), status, error: None };
        }
    }
    let rejected = results.len() - applied_count;
    st.metrics.writes.with_label_values(&["event", "rejected"]).inc_by(rejected as u64);
    let status = if applied_count == 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::Json(BatchResponse { accepted: applied_count, rejected, results })).into_response())
}
