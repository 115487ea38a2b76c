//! `PUT /v1/items`, `GET` and `DELETE /v1/items/{id}`: the catalogue.

use super::*;

#[utoipa::path(put, path = "/v1/items", tag = "items",
    request_body(content = Vec<ItemJson>, description = "a JSON array of items, or NDJSON (one item per line)"),
    responses((status = 200, body = BatchResponse, description = "a status per item; at least one accepted"),
        (status = 400, body = BatchRefused, description = "no item accepted (a status per item), or the body is not JSON/NDJSON")),
    security(("api_key" = [])))]
pub(super) async fn put_items(State(st): State<Arc<AppState>>, body: Bytes) -> Result<Response, ApiError> {
    require_ready(&st)?;
    let now = now_ms();
    let Validated { mut results, valid, slots } = validate_batch(&body, |v| Item::from_json(v, &st.cfg, now))?;
    let accepted = valid.len();
    if accepted > 0 {
        let st2 = st.clone();
        let (valid, existed) = tokio::task::spawn_blocking(move || {
            let (items, titles): (Vec<Item>, Vec<Option<String>>) = valid.into_iter().unzip();
            let titled: Vec<(u64, String)> =
                items.iter().zip(&titles).filter_map(|(i, t)| t.clone().map(|t| (i.id, t))).collect();
            let existed = st2.store.put_items(&items).and_then(|e| {
                if !titled.is_empty() {
                    st2.store.put_titles(&titled)?;
                }
                Ok(e)
            });
            (items, existed)
        })
        .await
        .map_err(ApiError::internal)?;
        let existed = existed?;
        for ((item, slot), was) in valid.into_iter().zip(slots).zip(existed) {
            results[slot] = BatchResult {
                index: slot,
                id: Some(item.id),
                event_id: None,
                status: if was { "updated" } else { "created" },
                error: None,
            };
            st.catalogue.upsert(item);
        }
        st.metrics.writes.with_label_values(&["item", "accepted"]).inc_by(accepted as u64);
    }
    let rejected = results.len() - accepted;
    st.metrics.writes.with_label_values(&["item", "rejected"]).inc_by(rejected as u64);
    let status = if accepted == 0 { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok((status, axum::Json(BatchResponse { accepted, rejected, results })).into_response())
}

#[utoipa::path(get, path = "/v1/items/{id}", tag = "items", params(("id" = u64, Path, description = "item id")),
    responses((status = 200, body = ItemJson, description = "the item, with its title when one is stored"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_item(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id(&id, "item id")?;
    let item = st.catalogue.get(id).ok_or_else(|| ApiError::not_found(format!("item {id} does not exist")))?;
    let st2 = st.clone();
    let titles = tokio::task::spawn_blocking(move || st2.store.titles(&[id])).await.map_err(ApiError::internal)??;
    let mut json = item.to_json(&st.cfg);
    if let (Some(t), Some(obj)) = (titles.get(&id), json.as_object_mut()) {
        obj.insert("title".into(), serde_json::json!(t));
    }
    Ok(axum::Json(json).into_response())
}

#[utoipa::path(delete, path = "/v1/items/{id}", tag = "items", params(("id" = u64, Path, description = "item id")),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn delete_item(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response, ApiError> {
    require_ready(&st)?;
    let id = parse_id(&id, "item id")?;
    let st2 = st.clone();
    let existed =
        tokio::task::spawn_blocking(move || st2.store.delete_item(id)).await.map_err(ApiError::internal)??;
    st.catalogue.remove(id);
    if !existed {
        return Err(ApiError::not_found(format!("item {id} does not exist")));
    }
    for (content, shard) in st.catalogue.shards_to_rebuild(st.cfg.index.rebuild_deleted_ratio) {
        let cat = st.catalogue.clone();
        tokio::task::spawn_blocking(move || {
            tracing::info!(shard, content, "rebuilding an index shard in the background");
            if cat.rebuild(content, shard) {
                tracing::info!(shard, content, "index shard rebuilt and swapped in");
            }
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
