//! Candidate bundles: a user's own (`/v1/users/{id}/candidates`), regional
//! ones and bundles by digest, the retrieval plans behind them, and their
//! cache headers.

use super::*;
use crate::bundles::Audience;
use edgewise_wire::headers;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BundleQuery {
    k: Option<String>,
    region: Option<String>,
}

pub(super) fn parse_k(k: Option<&str>, cfg: &Config) -> Result<usize, ApiError> {
    let Some(k) = k else { return Ok(cfg.retrieval.default_k) };
    match k.parse::<usize>() {
        Ok(k) if (1..=cfg.retrieval.max_k).contains(&k) => Ok(k),
        _ => Err(ApiError::bad_request(format!("k={k:?} must be an integer in 1..={}", cfg.retrieval.max_k))),
    }
}

/// The candidate counts regional bundles are built for. A request's `k` is
/// rounded up to the next one (capped at `retrieval.max_k`), so varying `k`
/// cannot fill the origin's bundle caches, and every cache on the way shares
/// the same few bundles per region.
pub const REGIONAL_K_BUCKETS: [usize; 12] = [50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000];

/// `k` rounded up to a [`REGIONAL_K_BUCKETS`] entry, at most `max_k`.
pub fn regional_k(k: usize, max_k: usize) -> usize {
    REGIONAL_K_BUCKETS.iter().copied().find(|&b| b >= k).unwrap_or(max_k).min(max_k)
}

pub(super) fn parse_region(r: &str) -> Result<Region, ApiError> {
    r.parse().map_err(|e: edgewise_core::region::RegionError| ApiError::bad_request(e.to_string()))
}

pub(super) fn record_sources(st: &AppState, r: &Retrieved) {
    for rep in &r.reports {
        st.metrics.source_seconds.with_label_values(&[rep.name]).observe(rep.elapsed.as_secs_f64());
        st.metrics.source_used.with_label_values(&[rep.name]).inc_by(rep.used as u64);
        if let Some(why) = rep.dropped {
            tracing::warn!(source = rep.name, reason = why, "source dropped");
            st.metrics.source_dropped.with_label_values(&[rep.name, why]).inc();
        }
    }
}

pub(super) fn bundle_response(built: &Built, cache_control: &str, request: &HeaderMap) -> Response {
    let etag = edgewise_wire::etag::strong(&built.digest);
    let region = built.region.map_or_else(|| "any".to_string(), |r| r.to_string());
    let scope = if built.scope == Scope::Personal { "personal" } else { "regional" };
    let keys = format!("bundle bundle-{scope} region-{region} bundle-format-{}", built.version);
    let mut h = HeaderMap::new();
    let mut put = |name: header::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    };
    put(header::ETAG, &etag);
    put(header::CACHE_CONTROL, cache_control);
    put(header::VARY, "Accept-Encoding");
    put(header::HeaderName::from_static(headers::SURROGATE_KEY), &keys);
    put(header::HeaderName::from_static(headers::CACHE_TAG), &keys.replace(' ', ","));
    put(header::HeaderName::from_static(headers::BUNDLE_DIGEST), &built.digest);
    if edgewise_http::if_none_match(request, &built.digest) {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    put(header::CONTENT_TYPE, BUNDLE_MEDIA_TYPE);
    (StatusCode::OK, h, Body::from(built.bytes.clone())).into_response()
}

/// Retrieval and bundle building for one user (shared by `/candidates` and `/rank`).
pub(super) async fn personal_bundle(
    st: &Arc<AppState>,
    user: u64,
    region: Option<Region>,
    k: usize,
) -> Result<(Option<Arc<crate::user::UserState>>, Retrieved, Arc<Built>, u64), ApiError> {
    let now = now_ms();
    let stage = |name: &str, since: std::time::Instant| {
        st.metrics.personal_stage_seconds.with_label_values(&[name]).observe(since.elapsed().as_secs_f64());
    };
    let t = std::time::Instant::now();
    let st2 = st.clone();
    let state =
        tokio::task::spawn_blocking(move || st2.store.user(user)).await.map_err(ApiError::internal)??.map(Arc::new);
    let exclude = state.as_ref().map(|u| u.seen.iter().chain(&u.hidden).copied().collect()).unwrap_or_default();
    stage("user", t);
    let t = std::time::Instant::now();
    let query = state.as_ref().and_then(|u| u.query(&st.session, now, st.cfg.index.dim));
    let req = Arc::new(SourceRequest {
        catalogue: st.catalogue.clone(),
        user: state.clone(),
        region,
        now_ms: now,
        query,
        exclude,
        recent_seeds: st.cfg.retrieval.recent_seeds,
    });
    let retrieved = sources::retrieve(
        req,
        &sources::personal_plan(&st.cfg),
        k,
        &st.cfg.retrieval,
        &[Source::Fresh, Source::Popular],
    )
    .await;
    stage("retrieve", t);
    let t = std::time::Instant::now();
    record_sources(st, &retrieved);
    let digest = model_for(st, Some(user));
    let base = state.as_ref().map_or(&[][..], |u| u.base.as_slice());
    let built = Arc::new(
        crate::bundles::build(&st.cfg, &st.catalogue, &retrieved, Audience::Personal { base }, region, now, digest)
            .map(|b| Built { owner: Some(user), ..b })
            .map_err(ApiError::internal)?,
    );
    st.metrics.rows_dropped.with_label_values(&["personal"]).inc_by(built.dropped as u64);
    stage("build", t);
    let t = std::time::Instant::now();
    // Addressable by digest too, but only with this user's token (`bundle_by_digest`).
    st.by_digest.insert(built.digest.clone(), built.clone()).await;
    stage("publish", t);
    Ok((state, retrieved, built, now))
}

pub(super) fn dropped_names(r: &Retrieved) -> Vec<&'static str> {
    r.reports.iter().filter(|r| r.dropped.is_some()).map(|r| r.name).collect()
}

#[utoipa::path(get, path = "/v1/users/{id}/candidates", tag = "bundles",
    params(("id" = u64, Path, description = "user id"), ("k" = Option<usize>, Query, description = "candidates (default retrieval.default_k)"),
        ("region" = Option<u8>, Query, description = "the user's region, 0–31")),
    responses((status = 200, description = "a personalized candidate bundle (Cache-Control: private)", content_type = "application/vnd.edgewise.bundle", body = Binary),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody)),
    security(("user_token" = [])))]
pub(super) async fn candidates(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    who: Option<axum::Extension<Caller>>,
    q: Result<Query<BundleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let user = parse_id(&user, "user id")?;
    caller(who)?.may_act_for(user)?;
    require_ready(&st)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let k = parse_k(q.k.as_deref(), &st.cfg)?;
    let region = q.region.as_deref().map(parse_region).transpose()?;
    let (_, retrieved, built, _) = personal_bundle(&st, user, region, k).await?;
    let cc = format!("private, max-age={}", st.cfg.cache.personal_max_age);
    let mut resp = bundle_response(&built, &cc, &headers);
    if let Ok(v) = HeaderValue::from_str(&dropped_names(&retrieved).join(",")) {
        resp.headers_mut().insert(headers::SOURCES_DROPPED, v);
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/v1/regions/{region}/bundle", tag = "bundles",
    params(("region" = u8, Path, description = "region, 0–31"), ("k" = Option<usize>, Query, description = "candidates")),
    responses((status = 200, description = "a regional bundle (public, s-maxage, stale-while-revalidate, stale-if-error); k is rounded up to the next of 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000", content_type = "application/vnd.edgewise.bundle", body = Binary),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody)))]
pub(super) async fn regional_bundle(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(region): Path<String>,
    q: Result<Query<BundleQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_ready(&st)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if q.region.is_some() {
        return Err(ApiError::bad_request("the region is part of the path; drop the region query parameter"));
    }
    let region = parse_region(&region)?;
    // Cache keys are quantised: a k between buckets gets the next bucket's bundle.
    let k = regional_k(parse_k(q.k.as_deref(), &st.cfg)?, st.cfg.retrieval.max_k);
    let st2 = st.clone();
    // Concurrent identical requests share one computation (moka coalesces them).
    let entry = st
        .regional
        .entry((region, k))
        .or_try_insert_with(async move {
            let now = now_ms();
            let req = Arc::new(SourceRequest {
                catalogue: st2.catalogue.clone(),
                user: None,
                region: Some(region),
                now_ms: now,
                query: None,
                exclude: Default::default(),
                recent_seeds: 0,
            });
            let retrieved =
                sources::retrieve(req, &sources::REGIONAL_PLAN, k, &st2.cfg.retrieval, &[Source::Fresh]).await;
            record_sources(&st2, &retrieved);
            let digest = model_for(&st2, None);
            let built = crate::bundles::build(
                &st2.cfg,
                &st2.catalogue,
                &retrieved,
                Audience::Regional,
                Some(region),
                now,
                digest,
            )?;
            st2.metrics.rows_dropped.with_label_values(&["regional"]).inc_by(built.dropped as u64);
            Ok::<_, crate::bundles::BuildError>(Arc::new(built))
        })
        .await
        .map_err(|e| ApiError::internal(e.as_ref()))?;
    let result = if entry.is_fresh() { "miss" } else { "hit" };
    st.metrics.cache.with_label_values(&["regional", result]).inc();
    let built = entry.into_value();
    st.by_digest.insert(built.digest.clone(), built.clone()).await;
    let c = &st.cfg.cache;
    let cc = format!(
        "public, max-age=0, s-maxage={}, stale-while-revalidate={}, stale-if-error={}",
        c.regional_s_maxage, c.stale_while_revalidate, c.stale_if_error
    );
    Ok(bundle_response(&built, &cc, &headers))
}

#[utoipa::path(get, path = "/v1/bundles/{digest}", tag = "bundles", params(("digest" = String, Path, description = "sha256, hex")),
    responses((status = 200, description = "the bundle (immutable); a personal one only with its user's token", content_type = "application/vnd.edgewise.bundle", body = Binary),
        (status = 304, description = "If-None-Match matched"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn bundle_by_digest(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    check_digest(&digest)?;
    let Some(built) = st.by_digest.get(&digest).await else {
        st.metrics.cache.with_label_values(&["digest", "miss"]).inc();
        return Err(ApiError::not_found(format!("bundle {digest} is unknown or has expired from the bundle cache")));
    };
    // A personal bundle is its user's alone: the same token rule as `/v1/users/{id}/candidates`.
    let cc = match built.owner {
        Some(owner) => {
            st.tokens.require_user(&headers, owner)?;
            "private, max-age=31536000, immutable"
        }
        None => "public, max-age=31536000, immutable",
    };
    st.metrics.cache.with_label_values(&["digest", "hit"]).inc();
    Ok(bundle_response(&built, cc, &headers))
}
