//! The OpenAPI document ([`ApiDoc`]): generated from the handlers'
//! annotations, with the security schemes and the statuses every guarded
//! route can answer.

use super::*;

/// The OpenAPI document, generated from the handler annotations.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Edgewise origin API", description = "Catalogue, events, candidate bundles, models and ranking. \
        Service keys (api_key: `X-Api-Key` or `Authorization: Bearer`) guard ingest and admin routes; \
        personalized routes need the user's own token (user_token: a short-lived JWT whose sub is the user id). \
        Every error has a JSON body `{\"error\": ...}`, except 414 and 431, which the HTTP layer sends without one."),
    paths(livez, readyz, metrics, put_items, get_item, delete_item, post_events, candidates, regional_bundle, bundle_by_digest,
        put_model, get_model, current_model, put_module, get_module, rank, put_experiment, get_experiment,
        delete_experiment, user_experiments),
    components(schemas(ItemJson, Event, crate::user::EventKind, BatchResponse, BatchResult, BatchRefused, ErrorBody, RankBody,
        RankResponse, RankedJson, Manifest, Canary, edgewise_wire::ModelManifest, ModelRegistered, ModuleStored,
        crate::experiments::Definition, crate::experiments::VariantDef, crate::experiments::RampStep,
        crate::experiments::Experiment, crate::experiments::Phase, ExperimentView, UserExperiment, UserExperiments)),
    modifiers(&SecuritySchemes, &CommonResponses)
)]
pub struct ApiDoc;

pub(super) struct SecuritySchemes;
impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Api-Key",
                "a service key (ingest, admin or read); `Authorization: Bearer KEY` works too",
            ))),
        );
        comps.add_security_scheme(
            "user_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("the user's token: HS256 or EdDSA, sub = user id, exp and iat required"))
                    .build(),
            ),
        );
    }
}

/// The statuses every guarded route can answer, added to each operation so
/// the document says what the server really sends: 401/403 from the access
/// check, 408/413/429 from admission, 503 while the index loads, 500.
pub(super) struct CommonResponses;
impl utoipa::Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        /// Routes that wait for start-up recovery.
        const NEED_READY: [&str; 6] = [
            "/v1/items",
            "/v1/items/{id}",
            "/v1/events",
            "/v1/users/{id}/candidates",
            "/v1/regions/{region}/bundle",
            "/v1/rank",
        ];
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    edgewise_wire::media::JSON,
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") && path != edgewise_wire::paths::OPENAPI {
                continue;
            }
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                let r = &mut op.responses.responses;
                let mut add = |code: &str, what: &str| {
                    r.entry(code.to_string()).or_insert_with(|| error(what).into());
                };
                add("401", "a credential is missing or invalid (WWW-Authenticate says which)");
                add("403", "the credential does not allow this route, or the route is disabled");
                add("408", "the request body did not arrive within server.body_read_timeout_ms");
                add("413", "the request body is larger than server.max_body_bytes");
                add("429", "too many requests in flight or bodies being received; Retry-After says when to retry");
                add("500", "an internal error (logged)");
                if NEED_READY.contains(&path.as_str()) {
                    add("503", "the index is still loading");
                }
            }
        }
    }
}

/// Raw bytes: a candidate bundle, a model artifact or a guest module.
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("raw bytes"))
            .into()
    }
}

impl utoipa::ToSchema for Binary {}

/// A 400 from a batch route: per-record results when the body was a batch
/// but no record was accepted, or an error when it was not a batch at all.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum BatchRefused {
    /// No record was accepted; each says why.
    Records(BatchResponse),
    /// The body is not a JSON array or NDJSON.
    Body(ErrorBody),
}
