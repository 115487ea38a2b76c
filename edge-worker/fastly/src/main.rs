//! # edgewise-edge-fastly
//!
//! The Edgewise feed as a Fastly Compute app (`wasm32-wasip1`, the `fastly`
//! crate): `GET|POST /v1/feed?region=R&k=K[&user=U]` with the JSON body
//! `{"now_ms": …, "seen": […]}` answers one JSON frame, the shape
//! `edgewise-edge serve` gives with `refine=false` (the regional bundle) or,
//! for a signed-in user (`user` and their Bearer token), the refined frame
//! from their personal bundle.
//!
//! - **Origin.** A dynamic backend to the URL in the config store `edgewise`,
//!   key `origin` (`http://host:port` or `https://…`), with connect and
//!   first-byte timeouts.
//! - **Caching.** Regional bundles and models go through Fastly's HTTP cache,
//!   which keys them by URL and honours the origin's `Cache-Control`
//!   (`s-maxage`, `stale-while-revalidate`, `stale-if-error`) and revalidates
//!   with the stored `ETag`. A user's personal bundle is sent with their
//!   token and `pass` (never cached).
//! - **Ranking.** `edgewise-core` is linked in; models are verified against
//!   the sha256 the bundle names before they are decoded; a failed model or
//!   ranking falls back to the bundle's retrieval order, as the Rust edge does.
//! - **Bounds.** Request body 1 MiB (413), `k` 1–1000, region 0–31, at most
//!   10,000 `seen` ids, bundles 32 MiB and models 16 MiB; every refusal is a
//!   4xx `{"error": "…"}` that names the rule.
//!
//! Build: `cargo build --release --target wasm32-wasip1` in this folder (its
//! own workspace). `cargo xtask fastly-check` type-checks it.

use std::time::{Duration, Instant};

use edgewise_core::rank::{RankContext, RankOutput, Ranker};
use edgewise_core::{Bundle, Digest, Model, Region};
use edgewise_wire::feed::retrieval_order;
use edgewise_wire::{CacheStatus, Frame, FrameItem, FrameKind, ModelManifest, RankedBy, Timings};
use fastly::http::{Method, StatusCode};
use fastly::{Backend, ConfigStore, Request, Response};

const MAX_BODY_BYTES: usize = 1 << 20;
const MAX_BUNDLE_BYTES: usize = 32 << 20;
const MAX_MODEL_BYTES: usize = 16 << 20;
const MAX_SEEN: usize = 10_000;
const MAX_K: u32 = 1000;
/// Candidates asked for per bundle.
const CANDIDATES: u32 = 300;
const TIMEOUT: Duration = Duration::from_secs(5);

/// A refusal: its status and the message of its JSON body.
type Refusal = (StatusCode, String);

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    (status, message.into())
}

#[fastly::main]
fn main(req: Request) -> Result<Response, fastly::Error> {
    Ok(match route(req) {
        Ok(r) => r,
        Err((status, message)) => json(status, &serde_json::json!({ "error": message })),
    })
}

fn json(status: StatusCode, v: &impl serde::Serialize) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_else(|_| b"{\"error\":\"cannot encode the answer\"}".to_vec());
    Response::from_status(status).with_header("content-type", "application/json").with_body(body)
}

fn route(req: Request) -> Result<Response, Refusal> {
    match (req.get_method().clone(), req.get_path()) {
        (_, "/livez") => Ok(Response::from_status(StatusCode::OK).with_body_text_plain("ok")),
        (Method::GET | Method::POST, "/v1/feed") => feed(req),
        (_, "/v1/feed") => Err(refuse(StatusCode::METHOD_NOT_ALLOWED, "/v1/feed takes GET or POST")),
        _ => Err(refuse(StatusCode::NOT_FOUND, "no such route")),
    }
}

/// The feed request, checked.
struct FeedRequest {
    region: u8,
    k: u32,
    user: Option<(u64, String)>,
    now_ms: u64,
    seen: Vec<u64>,
}

fn parse(mut req: Request) -> Result<FeedRequest, Refusal> {
    let bad = |m: String| refuse(StatusCode::BAD_REQUEST, m);
    let (mut region, mut k, mut user) = (0u8, 20u32, None);
    for pair in req.get_query_str().unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "region" => {
                region = value
                    .parse()
                    .ok()
                    .filter(|r| *r < 32)
                    .ok_or_else(|| bad(format!("region {value:?} is not 0..=31")))?;
            }
            "k" => {
                k = value
                    .parse()
                    .ok()
                    .filter(|k| (1..=MAX_K).contains(k))
                    .ok_or_else(|| bad(format!("k {value:?} is not 1..={MAX_K}")))?;
            }
            "user" => user = Some(value.parse::<u64>().map_err(|_| bad(format!("user {value:?} is not a u64")))?),
            "refine" => {}
            other => return Err(bad(format!("unknown query parameter {other:?}"))),
        }
    }
    let user = match user {
        None => None,
        Some(id) => {
            let token = req
                .get_header_str("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, "a personal feed needs the user's Bearer token"))?;
            Some((id, token.trim().to_string()))
        }
    };
    if req.get_header_str("content-length").and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l > MAX_BODY_BYTES) {
        return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY_BYTES} bytes")));
    }
    let body = req.take_body_bytes();
    if body.len() > MAX_BODY_BYTES {
        return Err(refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than {MAX_BODY_BYTES} bytes")));
    }
    let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let (mut now_ms, mut seen) = (wall, Vec::new());
    if !body.is_empty() {
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
        let obj = v.as_object().ok_or_else(|| bad("the body must be a JSON object".into()))?;
        for (key, value) in obj {
            match key.as_str() {
                "now_ms" => {
                    now_ms = value.as_u64().ok_or_else(|| bad("now_ms must be ms since the epoch".into()))?;
                }
                "seen" => {
                    let list = value.as_array().ok_or_else(|| bad("seen must be an array of item ids".into()))?;
                    if list.len() > MAX_SEEN {
                        return Err(bad(format!("seen holds {} ids; at most {MAX_SEEN}", list.len())));
                    }
                    seen = list
                        .iter()
                        .map(|x| x.as_u64().ok_or_else(|| bad("seen must hold u64 item ids".into())))
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(bad(format!("unknown field {other:?} in the body"))),
            }
        }
    }
    Ok(FeedRequest { region, k, user, now_ms, seen })
}

/// The origin's base URL and a dynamic backend to it.
fn origin() -> Result<(String, Backend), Refusal> {
    let unavailable = |m: String| refuse(StatusCode::BAD_GATEWAY, m);
    let url = ConfigStore::try_open("edgewise")
        .ok()
        .and_then(|s| s.try_get("origin").ok().flatten())
        .ok_or_else(|| unavailable("no origin configured (config store `edgewise`, key `origin`)".into()))?;
    let url = url.trim_end_matches('/').to_string();
    let (tls, host) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(h), _) => (true, h),
        (None, Some(h)) => (false, h),
        _ => return Err(unavailable(format!("the configured origin {url:?} is not an http(s) URL"))),
    };
    let target = if host.contains(':') { host.to_string() } else { format!("{host}:{}", if tls { 443 } else { 80 }) };
    let name = host.split(':').next().unwrap_or(host).to_string();
    let mut builder = Backend::builder("edgewise-origin", &target)
        .override_host(&name)
        .connect_timeout(TIMEOUT)
        .first_byte_timeout(TIMEOUT);
    if tls {
        builder = builder.enable_ssl().sni_hostname(&name);
    }
    let backend = match builder.finish() {
        Ok(b) => b,
        // Defined earlier in this session: the same origin.
        Err(fastly::backend::BackendCreationError::NameInUse) => {
            Backend::from_name("edgewise-origin").map_err(|e| unavailable(format!("the origin backend: {e}")))?
        }
        Err(e) => return Err(unavailable(format!("cannot reach the origin {url:?}: {e}"))),
    };
    Ok((url, backend))
}

/// A GET to the origin: its body, bounded; personal ones with the token, never cached.
fn get(origin: &(String, Backend), path: &str, token: Option<&str>, max: usize) -> Result<Vec<u8>, Refusal> {
    let mut req = Request::get(format!("{}{path}", origin.0));
    if let Some(t) = token {
        req.set_header("authorization", format!("Bearer {t}"));
        req.set_pass(true);
    }
    let mut resp =
        req.send(&origin.1).map_err(|e| refuse(StatusCode::BAD_GATEWAY, format!("origin unavailable: {e}")))?;
    let status = resp.get_status();
    if status.is_server_error() {
        return Err(refuse(StatusCode::BAD_GATEWAY, format!("origin answered {status}")));
    }
    if resp.get_header_str("content-length").and_then(|l| l.parse::<usize>().ok()).is_some_and(|l| l > max) {
        return Err(refuse(StatusCode::BAD_GATEWAY, format!("{path} is larger than {max} bytes")));
    }
    let body = resp.take_body_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err(refuse(status, format!("origin answered {status}: {text}")));
    }
    if body.len() > max {
        return Err(refuse(StatusCode::BAD_GATEWAY, format!("{path} is larger than {max} bytes")));
    }
    Ok(body)
}

/// The model `digest` (else the origin's current one), verified and decoded.
fn model(origin: &(String, Backend), named: Option<Digest>) -> Result<(Digest, Model), String> {
    let digest = match named {
        Some(d) => d,
        None => {
            let bytes = get(origin, "/v1/models/current", None, 64 << 10).map_err(|(_, m)| m)?;
            serde_json::from_slice::<ModelManifest>(&bytes).map_err(|e| format!("the model manifest: {e}"))?.digest
        }
    };
    let bytes = get(origin, &format!("/v1/models/{}", digest.to_hex()), None, MAX_MODEL_BYTES).map_err(|(_, m)| m)?;
    if Digest::of(&bytes) != digest {
        return Err(format!("model {} failed verification", digest.to_hex()));
    }
    Model::decode(&bytes).map(|m| (digest, m)).map_err(|e| format!("model {}: {e}", digest.to_hex()))
}

fn feed(req: Request) -> Result<Response, Refusal> {
    let r = parse(req)?;
    let origin = origin()?;
    let t0 = Instant::now();
    let (path, token, kind) = match &r.user {
        Some((id, token)) => (
            format!("/v1/users/{id}/candidates?k={CANDIDATES}&region={}", r.region),
            Some(token.as_str()),
            FrameKind::Refined,
        ),
        None => (format!("/v1/regions/{}/bundle?k={CANDIDATES}", r.region), None, FrameKind::Preliminary),
    };
    let bytes = get(&origin, &path, token, MAX_BUNDLE_BYTES)?;
    let fetched = t0.elapsed();
    let bundle =
        Bundle::decode(&bytes).map_err(|e| refuse(StatusCode::BAD_GATEWAY, format!("the origin's bundle: {e}")))?;
    let region = Region::new(r.region).map_err(|e| refuse(StatusCode::BAD_REQUEST, e.to_string()))?;
    let ctx = RankContext { k: r.k, now_ms: r.now_ms, region: Some(region), seen: r.seen, ..RankContext::default() };
    let t1 = Instant::now();
    let (items, ranked_by, used) = match model(&origin, bundle.header().model_digest) {
        Ok((digest, m)) => {
            let mut out = RankOutput::default();
            match Ranker::new().rank(&m, &bundle, &ctx, &mut out) {
                Ok(()) => (
                    out.items.iter().map(|i| FrameItem { id: i.id, score: i.score }).collect(),
                    RankedBy::Guest,
                    Some(digest),
                ),
                Err(e) => {
                    eprintln!("ranking failed ({e}); retrieval order");
                    (retrieval_order(&bundle, &ctx), RankedBy::RetrievalOrder, Some(digest))
                }
            }
        }
        Err(e) => {
            eprintln!("no usable model ({e}); retrieval order");
            (retrieval_order(&bundle, &ctx), RankedBy::RetrievalOrder, None)
        }
    };
    let frame = Frame {
        frame: kind,
        items,
        ranked_by,
        bundle_digest: Digest::of(&bytes),
        // Fastly's HTTP cache served it or fetched it; the app cannot tell which.
        bundle_cache: CacheStatus::Miss,
        model: used,
        timings_ms: Timings { fetch: fetched.as_secs_f64() * 1e3, rank: t1.elapsed().as_secs_f64() * 1e3 },
        merged: None,
    };
    Ok(json(StatusCode::OK, &frame)
        .with_header("x-edgewise-feed", if r.user.is_some() { "refined" } else { "preliminary" }))
}
