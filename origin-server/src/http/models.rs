//! Models and guest modules: uploads (admin key), immutable artifacts by
//! digest, and the manifest with its sticky canary.

use super::*;
use edgewise_wire::{ModelManifest, headers, media};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelQuery {
    rollout: Option<String>,
    percent: Option<String>,
}

#[utoipa::path(put, path = "/v1/models", tag = "models",
    params(("rollout" = Option<String>, Query, description = "stable (default) or canary"), ("percent" = Option<u8>, Query, description = "canary share, 1–100")),
    request_body(description = "a model artifact (edgewise_core::model v1); the content type is not checked",
        content((Binary = "application/vnd.edgewise.model"), (Binary = "application/octet-stream"))),
    responses((status = 201, body = ModelRegistered, description = "registered; the digest and the manifest"), (status = 400, body = ErrorBody)),
    security(("api_key" = [])))]
pub(super) async fn put_model(
    State(st): State<Arc<AppState>>,
    q: Result<Query<ModelQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let model =
        edgewise_core::model::Model::decode(&body).map_err(|e| ApiError::bad_request(format!("invalid model: {e}")))?;
    let cfg = &st.cfg;
    let mismatch = |what: &str, model: String, want: String| {
        Err(ApiError::bad_request(format!("the model's {what} is {model}, the catalogue's is {want}")))
    };
    if model.feature_schema_hash != cfg.schema_hash() {
        return mismatch(
            "feature-schema hash",
            format!("{:#018x}", model.feature_schema_hash),
            format!("{:#018x} (features {:?})", cfg.schema_hash(), cfg.features.names),
        );
    }
    if usize::from(model.dim) != cfg.index.dim {
        return mismatch("embedding dimension", model.dim.to_string(), cfg.index.dim.to_string());
    }
    if usize::from(model.n_sources) != sources::SLOTS {
        return mismatch("source-slot count", model.n_sources.to_string(), sources::SLOTS.to_string());
    }
    let digest = Digest::of(&body);
    let mut next = st.manifest.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    match q.rollout.as_deref().unwrap_or("stable") {
        "stable" => {
            if q.percent.is_some() {
                return Err(ApiError::bad_request("percent only applies to rollout=canary"));
            }
            next.stable = Some(digest);
            if next.canary.as_ref().is_some_and(|c| c.digest == digest) {
                next.canary = None;
            }
        }
        "canary" => {
            let percent = match q.percent.as_deref().map(str::parse::<u8>) {
                Some(Ok(p)) if (1..=100).contains(&p) => p,
                _ => return Err(ApiError::bad_request("rollout=canary needs percent=1..100")),
            };
            next.canary = Some(Canary { digest, percent });
        }
        other => return Err(ApiError::bad_request(format!("rollout={other:?} must be stable or canary"))),
    }
    let manifest_json = serde_json::to_vec(&next).map_err(ApiError::internal)?;
    let (st2, d2) = (st.clone(), digest.to_hex());
    tokio::task::spawn_blocking(move || {
        st2.store.put_model(&d2, &body)?;
        st2.store.put_meta("manifest", &manifest_json)
    })
    .await
    .map_err(ApiError::internal)??;
    *st.manifest.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next.clone();
    // Bundles built before now name the old model; rebuild regional ones on next request.
    st.regional.invalidate_all();
    Ok((StatusCode::CREATED, axum::Json(ModelRegistered { digest, manifest: next })).into_response())
}

#[utoipa::path(get, path = "/v1/models/{digest}", tag = "models", params(("digest" = String, Path, description = "sha256, hex")),
    responses((status = 200, description = "the artifact (immutable)", content_type = "application/vnd.edgewise.model", body = Binary),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_model(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    stored_artifact(st, &headers, digest, "model", media::MODEL, |store, d| {
        Ok(store.model(d)?.map(|bytes| (bytes, None)))
    })
    .await
}

/// `GET` of a stored immutable artifact: checks the read key and the digest,
/// loads it on the blocking pool with `load` (bytes and optional signature),
/// and answers with [`immutable_artifact`], or 404 naming the `kind`.
pub(super) async fn stored_artifact(
    st: Arc<AppState>,
    headers: &HeaderMap,
    digest: String,
    kind: &'static str,
    content_type: &'static str,
    load: impl FnOnce(&crate::store::Store, &str) -> Result<Option<(Vec<u8>, Option<String>)>, ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    let (st2, d2) = (st.clone(), digest.clone());
    let found = tokio::task::spawn_blocking(move || load(&st2.store, &d2)).await.map_err(ApiError::internal)??;
    let (bytes, signature) = found.ok_or_else(|| ApiError::not_found(format!("{kind} {digest} is not stored")))?;
    Ok(immutable_artifact(headers, &digest, kind, content_type, bytes, signature.as_deref()))
}

/// An immutable, content-addressed artifact response: a year's `max-age`,
/// the digest as strong ETag (304 on `If-None-Match`), and surrogate keys
/// `<kind> <kind>-<digest>`; `signature` goes out in `X-Edgewise-Signature`.
pub(super) fn immutable_artifact(
    headers: &HeaderMap,
    digest: &str,
    kind: &str,
    content_type: &'static str,
    bytes: Vec<u8>,
    signature: Option<&str>,
) -> Response {
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(&edgewise_wire::etag::strong(digest)) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{kind} {kind}-{digest}")) {
        h.insert(headers::SURROGATE_KEY, v.clone());
        h.insert(headers::CACHE_TAG, v);
    }
    if let Some(v) = signature.filter(|s| !s.is_empty()).and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(SIGNATURE_HEADER, v);
    }
    if edgewise_http::if_none_match(headers, digest) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    (StatusCode::OK, h, bytes).into_response()
}

/// The header that carries a guest module's detached ed25519 signature (base64).
pub const SIGNATURE_HEADER: &str = headers::SIGNATURE;

#[utoipa::path(put, path = "/v1/modules", tag = "modules",
    request_body(description = "a core guest module (`edgewise_core.wasm` or a build of it: no imports, the guest ABI's exports); an optional detached ed25519 signature (base64) in X-Edgewise-Signature is stored with it and served to edges; the content type is not checked",
        content((Binary = "application/wasm"), (Binary = "application/octet-stream"))),
    responses((status = 201, body = ModuleStored, description = "stored; the digest and its URL"), (status = 400, body = ErrorBody, description = "a malformed signature header"),
        (status = 422, body = ErrorBody, description = "not a module an edge can run")),
    security(("api_key" = [])))]
pub(super) async fn put_module(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let checked = body.clone();
    tokio::task::spawn_blocking(move || crate::models::check_guest_module(&checked))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("module refused: {e}")))?;
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => String::new(),
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError::bad_request("X-Edgewise-Signature is not ASCII"))?;
            if s.is_empty() || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) {
                return Err(ApiError::bad_request("X-Edgewise-Signature must be base64 (an ed25519 signature)"));
            }
            s.to_string()
        }
    };
    let d = Digest::of(&body);
    let digest = d.to_hex();
    let (st2, d2) = (st.clone(), digest.clone());
    tokio::task::spawn_blocking(move || st2.store.put_module(&d2, &body, &signature))
        .await
        .map_err(ApiError::internal)??;
    let url = edgewise_wire::paths::module(&d);
    Ok((StatusCode::CREATED, axum::Json(ModuleStored { digest, url })).into_response())
}

#[utoipa::path(get, path = "/v1/modules/{digest}", tag = "modules", params(("digest" = String, Path, description = "sha256, hex")),
    responses((status = 200, description = "the module (immutable), with its signature in X-Edgewise-Signature when one was stored", content_type = "application/wasm", body = Binary),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_module(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    stored_artifact(st, &headers, digest, "module", media::WASM, |store, d| {
        Ok(store.module(d)?.map(|(bytes, signature)| (bytes, Some(signature))))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CurrentQuery {
    user: Option<String>,
}

#[utoipa::path(get, path = "/v1/models/current", tag = "models",
    params(("user" = Option<u64>, Query, description = "the user; picks stable or canary by a sticky hash")),
    responses((status = 200, body = ModelManifest, description = "the model this user gets, and the manifest"), (status = 400, body = ErrorBody),
        (status = 304, description = "If-None-Match matched"), (status = 404, body = ErrorBody)))]
pub(super) async fn current_model(
    State(st): State<Arc<AppState>>,
    request: HeaderMap,
    q: Result<Query<CurrentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let user = q.user.as_deref().map(|u| parse_id(u, "user id")).transpose()?;
    let manifest = st.manifest.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let Some(chosen) = manifest.for_user(user) else {
        return Err(ApiError::not_found("no model is registered yet (PUT /v1/models)"));
    };
    let body = serde_json::to_vec(&ModelManifest {
        url: edgewise_wire::paths::model(&chosen),
        digest: chosen,
        stable: manifest.stable,
        canary: manifest.canary,
    })
    .map_err(ApiError::internal)?;
    let etag = Digest::of(&body).to_hex();
    let mut h = HeaderMap::new();
    let cc = if user.is_some() { "private, max-age=60" } else { "public, max-age=60" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(headers::SURROGATE_KEY, HeaderValue::from_static("model-manifest"));
    h.insert(headers::CACHE_TAG, HeaderValue::from_static("model-manifest"));
    if let Ok(v) = HeaderValue::from_str(&edgewise_wire::etag::strong(&etag)) {
        h.insert(header::ETAG, v);
    }
    if edgewise_http::if_none_match(&request, &etag) {
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media::JSON));
    Ok((StatusCode::OK, h, body).into_response())
}

/// `PUT /v1/modules`' answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ModuleStored {
    /// The module's sha256.
    pub digest: String,
    /// Where edges fetch it.
    pub url: String,
}

/// `PUT /v1/models`' answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ModelRegistered {
    /// The model's sha256.
    #[schema(value_type = String)]
    pub digest: Digest,
    /// The models live now.
    pub manifest: Manifest,
}
