//! The router called directly, without a socket (`tower::ServiceExt::oneshot`).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use edgewise_origin::Config;
use tower::ServiceExt;

fn state(name: &str) -> std::sync::Arc<edgewise_origin::AppState> {
    let dir = std::env::temp_dir().join(format!("ew-router-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config { data_dir: dir, ..Config::default() };
    cfg.index.dim = 4;
    cfg.index.shards = 1;
    cfg.auth.ingest_keys = vec![INGEST.into()];
    edgewise_origin::open(cfg).expect("opens")
}

const INGEST: &str = "router-ingest";

/// Calls the router; every request carries the ingest key.
async fn call(app: axum::Router, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-api-key", INGEST)
        .body(Body::from(body.to_string()))
        .expect("request");
    let resp = app.oneshot(req).await.expect("infallible");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn readiness_follows_recovery() {
    let st = state("ready");
    let app = edgewise_origin::app(st.clone());
    assert_eq!(call(app.clone(), "GET", "/livez", "").await.0, StatusCode::OK);
    assert_eq!(call(app.clone(), "GET", "/readyz", "").await.0, StatusCode::SERVICE_UNAVAILABLE);
    // Writes wait for the index too.
    let (status, body) = call(app.clone(), "PUT", "/v1/items", r#"[{"id":1,"embedding":[1,2,3,4]}]"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    edgewise_origin::recover(&st, |_, _| {}).expect("recovers");
    assert_eq!(call(app.clone(), "GET", "/readyz", "").await.0, StatusCode::OK);
    let (status, body) = call(app, "PUT", "/v1/items", r#"[{"id":1,"embedding":[1,2,3,4]}]"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn openapi_documents_every_route() {
    let st = state("openapi");
    let app = edgewise_origin::app(st);
    let (status, body) = call(app, "GET", "/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let paths = doc["paths"].as_object().expect("paths");
    let want = [
        ("/livez", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/v1/items", "put"),
        ("/v1/items/{id}", "get"),
        ("/v1/items/{id}", "delete"),
        ("/v1/events", "post"),
        ("/v1/users/{id}/candidates", "get"),
        ("/v1/regions/{region}/bundle", "get"),
        ("/v1/bundles/{digest}", "get"),
        ("/v1/models", "put"),
        ("/v1/models/{digest}", "get"),
        ("/v1/models/current", "get"),
        ("/v1/modules", "put"),
        ("/v1/modules/{digest}", "get"),
        ("/v1/rank", "post"),
        ("/v1/experiments/{name}", "put"),
        ("/v1/experiments/{name}", "get"),
        ("/v1/experiments/{name}", "delete"),
        ("/v1/users/{id}/experiments", "get"),
    ];
    for (path, method) in want {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} is not documented");
    }
    assert_eq!(paths.values().map(|p| p.as_object().map_or(0, |o| o.len())).sum::<usize>(), want.len());
    for schema in [
        "ItemJson",
        "Event",
        "BatchResponse",
        "ErrorBody",
        "RankBody",
        "Manifest",
        "RankResponse",
        "ModelManifest",
        "Definition",
        "ExperimentView",
        "UserExperiments",
    ] {
        assert!(doc["components"]["schemas"].get(schema).is_some(), "schema {schema} missing");
    }
    // Regression (issue 13, defect 9): the document did not match the responses.
    let op = |path: &str, method: &str| &paths[path][method];
    for (path, method) in &want[3..] {
        for code in ["401", "403", "413", "429"] {
            assert!(op(path, method)["responses"].get(code).is_some(), "{method} {path} does not document {code}");
        }
    }
    let binary = &op("/v1/models", "put")["requestBody"]["content"]["application/vnd.edgewise.model"]["schema"];
    assert_eq!(
        doc["components"]["schemas"]["Binary"]["format"].as_str().or(binary["format"].as_str()),
        Some("binary"),
        "{binary}"
    );
    assert!(doc["components"]["schemas"]["ItemJson"]["properties"].get("title").is_some(), "items have titles");
    let refused = &op("/v1/items", "put")["responses"]["400"]["content"]["application/json"]["schema"];
    assert!(refused.to_string().contains("BatchRefused"), "{refused}");
}

#[tokio::test]
async fn overload_answers_429_with_retry_after() {
    let dir = std::env::temp_dir().join(format!("ew-router-{}-overload", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config { data_dir: dir, ..Config::default() };
    cfg.index.dim = 4;
    cfg.server.max_in_flight = 1;
    cfg.retrieval.deadline_ms = 2_000;
    cfg.retrieval.drills.insert("trending".into(), edgewise_origin::config::Drill { delay_ms: 400, fail: false });
    let st = edgewise_origin::open(cfg).expect("opens");
    edgewise_origin::recover(&st, |_, _| {}).expect("recovers");
    let app = edgewise_origin::app(st);
    // One slow request holds the only slot...
    let slow = tokio::spawn(call(app.clone(), "GET", "/v1/regions/1/bundle", ""));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // ...so the next one is refused at once...
    let req = Request::builder().uri("/v1/regions/2/bundle").body(Body::empty()).expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");
    // ...while health checks, outside the cap, still answer.
    for path in ["/livez", "/readyz", "/metrics"] {
        assert_eq!(call(app.clone(), "GET", path, "").await.0, StatusCode::OK, "{path} under overload");
    }
    assert_eq!(slow.await.expect("task").0, StatusCode::OK);
}

#[tokio::test]
async fn modules_are_stored_by_digest_with_their_signature_and_bad_uploads_get_400() {
    let dir = std::env::temp_dir().join(format!("ew-router-{}-modules", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cfg = Config { data_dir: dir, ..Config::default() };
    cfg.auth.admin_keys = vec!["k".into()];
    let st = edgewise_origin::open(cfg).expect("opens");
    edgewise_origin::recover(&st, |_, _| {}).expect("recovers");
    let app = edgewise_origin::app(st);
    let put = |body: &'static [u8], sig: Option<&'static str>, key: Option<&'static str>| {
        let mut b = Request::builder().method("PUT").uri("/v1/modules");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        if let Some(s) = sig {
            b = b.header("x-edgewise-signature", s);
        }
        let app = app.clone();
        async move {
            let resp = app.oneshot(b.body(Body::from(body)).expect("request")).await.expect("infallible");
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let wasm: &'static [u8] = guest_shaped();
    assert_eq!(put(wasm, None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(put(wasm, None, Some("wrong")).await.0, StatusCode::FORBIDDEN);
    let (status, body) = put(b"not wasm", None, Some("k")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("not a WebAssembly module"), "{body}");
    // Regression (issue 13, "also seen"): any blob starting with the wasm magic used to be stored.
    let (status, body) = put(b"\0asm\x01\0\0\0", None, Some("k")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an empty module: {body}");
    assert!(body.contains("does not export"), "{body}");
    let (status, body) = put(b"\0asm\x01\0\0\0\x01\xff", None, Some("k")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a truncated module: {body}");
    let (status, body) = put(wasm, Some("not base64!"), Some("k")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = put(wasm, Some("c2lnbmF0dXJl"), Some("k")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let digest = v["digest"].as_str().expect("digest").to_string();
    let req = Request::builder().uri(format!("/v1/modules/{digest}")).body(Body::empty()).expect("request");
    let resp = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-edgewise-signature"], "c2lnbmF0dXJl");
    assert!(resp.headers()["cache-control"].to_str().expect("ascii").contains("immutable"));
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("body");
    assert_eq!(&bytes[..], wasm);
    assert_eq!(call(app.clone(), "GET", &format!("/v1/modules/{}", "0".repeat(64)), "").await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(app, "GET", "/v1/modules/xyz", "").await.0, StatusCode::BAD_REQUEST);
}

/// A module with the guest ABI's exports and no imports (its functions do nothing).
fn guest_shaped() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let mut wat = String::from("(module (memory (export \"memory\") 1)");
        for name in edgewise_core::abi::EXPORTS {
            wat.push_str(&format!(" (func (export \"{name}\"))"));
        }
        wat.push(')');
        wat::parse_str(&wat).expect("valid WAT")
    })
}
