//! # edgewise-edge-wasi-http
//!
//! The Edgewise feed as a `wasi:http` component: `GET|POST /v1/feed` with the
//! same contract as `edgewise-edge serve` (the query `user`, `region`, `k`,
//! `shown`, `tenant`, `refine`; the JSON body `{now_ms, seen, session}`; one
//! JSON frame, or two NDJSON frames with `Accept: application/x-ndjson`; the
//! same 4xx refusals in the same words), for any host of the
//! `wasi:http/proxy` world: `wasmtime serve`, `jco serve`, and the CDNs and
//! platforms that run such components.
//!
//! ```sh
//! cd edge-worker/wasi-http
//! CARGO_TARGET_DIR=../../target/wasi-http cargo build --release --target wasm32-wasip2
//! EDGEWISE_ORIGIN=http://127.0.0.1:8080 wasmtime serve -S cli --addr 127.0.0.1:8081 \
//!     ../../target/wasi-http/wasm32-wasip2/release/edgewise_edge_wasi_http.wasm
//! ```
//!
//! How it differs from the Rust edge, which keeps state between requests:
//!
//! - **Ranking is linked in.** `edgewise-core` is compiled into the
//!   component; there is no guest `.wasm` inside it and no tenant modules
//!   (`tenant=` is checked, then every tenant ranks with the linked core).
//!   The context goes through the guest ABI's `EWCX` encoding on its way to
//!   the ranker, so the ranking is the guest's, bit for bit.
//! - **Nothing outlives a request.** These hosts instantiate the component
//!   per request, so there is no cache: each feed fetches its bundle(s) and
//!   the model from the origin through `wasi:http/outgoing-handler`
//!   (`bundle_cache` is always `"miss"`; a CDN in front of the origin is the
//!   shared cache). Within a request the model is fetched, verified (sha256)
//!   and decoded once, even when both frames need it.
//! - **The refinement overlaps.** A signed-in feed sends the personal-bundle
//!   request first, ranks the regional bundle while the origin works, then
//!   waits for it until the refine deadline (JSON) or for good (NDJSON).
//! - **Tokens are passed through, not verified.** The user's Bearer token
//!   goes to the origin with the personal-bundle request and the origin
//!   checks it; a feed for a user without a token is refused with 401 here.
//!
//! The environment (`wasmtime serve -S cli --env NAME=VALUE`, or the host's
//! own means): `EDGEWISE_ORIGIN` (required: the origin's base URL,
//! `http://host:port[/prefix]`), `EDGEWISE_CANDIDATES` (300),
//! `EDGEWISE_REFINE_DEADLINE_MS` (150), `EDGEWISE_MAX_CLOCK_SKEW_MS`
//! (3 600 000), `EDGEWISE_API_KEY` (sent to the origin as `X-Api-Key`).
//!
//! Every input is bounded: the request body (1 MiB), the query (8 KiB), each
//! origin answer (bundles 32 MiB, models 16 MiB, the manifest 64 KiB) and
//! each origin request in time (5 s to connect and to the first byte).
//!
//! Each answer carries `Server-Timing` (`origin`, `model`, `rank`, `total`,
//! milliseconds inside the component), so a host's own overhead is the
//! client's time less `total`.
//!
//! The feed itself (the request's rules, the ranking, the fallback, the
//! merge, the frames) is `edgewise-edge-feed`, shared with the Fastly app;
//! this crate is the platform around it:
//!
//! | file | what |
//! |---|---|
//! | `lib.rs` | the export, routing, the body read, the streamed answer |
//! | [`origin`] | the `Origin` over `wasi:http/outgoing-handler`: bounded GETs, none cached |

pub mod origin;

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::OutputStream;

use edgewise_edge_feed::{Call, Config, HttpError, MAX_BODY_BYTES, MAX_TARGET_BYTES, Reply};

struct Component;

wasip2::http::proxy::export!(Component);

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let mut reply = Outgoing { out: Some(out), body: None, stream: None };
        if let Err(e) = route(&request, &mut reply) {
            let a = e.answer();
            reply.head(a.status, &a.headers, &a.body);
        }
        reply.finish();
    }
}

/// The response as it is written: headers first, then the body in as many
/// writes as the feed makes (an NDJSON line each), each flushed.
struct Outgoing {
    out: Option<ResponseOutparam>,
    body: Option<OutgoingBody>,
    stream: Option<OutputStream>,
}

impl Reply for Outgoing {
    fn head(&mut self, status: u16, headers: &[(&'static str, String)], body: &[u8]) {
        let Some(out) = self.out.take() else { return };
        let entries: Vec<(String, Vec<u8>)> =
            headers.iter().map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec())).collect();
        let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
        let resp = OutgoingResponse::new(fields);
        let _ = resp.set_status_code(status);
        let Ok(b) = resp.body() else {
            ResponseOutparam::set(out, Err(wasip2::http::types::ErrorCode::InternalError(None)));
            return;
        };
        ResponseOutparam::set(out, Ok(resp));
        self.stream = b.write().ok();
        self.body = Some(b);
        self.more(body);
    }

    fn more(&mut self, body: &[u8]) {
        // A host that has gone away gets nothing (there is no one to tell).
        if let Some(stream) = &mut self.stream {
            // `write` honours the stream's check-write budget; `write_all` loops over it.
            let _ = stream.write_all(body);
            let _ = stream.flush();
        }
    }
}

impl Outgoing {
    /// Ends the body (the stream is dropped first, as the host requires).
    fn finish(mut self) {
        drop(self.stream.take());
        if let Some(b) = self.body.take() {
            let _ = OutgoingBody::finish(b, None);
        }
    }
}

fn route(request: &IncomingRequest, reply: &mut Outgoing) -> Result<(), HttpError> {
    let target = request.path_with_query().unwrap_or_else(|| "/".to_string());
    if target.len() > MAX_TARGET_BYTES {
        return Err(HttpError::new(414, format!("the request target is longer than {MAX_TARGET_BYTES} bytes")));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target.as_str(), None),
    };
    match path {
        edgewise_wire::paths::FEED => {
            let method = request.method();
            let post = match method {
                Method::Get => false,
                Method::Post => true,
                m => {
                    return Err(HttpError::new(
                        405,
                        format!("{} is not allowed on /v1/feed (GET or POST)", method_name(&m)),
                    )
                    .with("allow", "GET, POST"));
                }
            };
            let headers = request.headers();
            let header = |name: &str| -> Option<String> {
                headers.get(name).into_iter().next().and_then(|v| String::from_utf8(v).ok())
            };
            let mut call = Call {
                query: query.map(str::to_string),
                authorization: header("authorization"),
                accept: header("accept"),
                body: None,
            };
            // As the Rust edge: the query and the token are checked before the body is read.
            let parsed = edgewise_edge_feed::guard(&call)?;
            if post {
                call.body = Some(read_body(request, header("content-length"))?);
            }
            let cfg = Config::from_lookup(
                |name| std::env::var(format!("EDGEWISE_{}", name.to_ascii_uppercase())).ok(),
                |name| format!("EDGEWISE_{}", name.to_ascii_uppercase()),
            )?;
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let mut origin = origin::WasiOrigin::new(&cfg);
            edgewise_edge_feed::answer(call, parsed, &cfg, now_ms, &mut origin, reply)
        }
        edgewise_wire::paths::LIVEZ => {
            reply.head(200, &[("content-type", "text/plain".into())], b"ok\n");
            Ok(())
        }
        _ => Err(HttpError::new(404, "no such route")),
    }
}

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.chars().take(32).collect(),
    }
}

/// The request body, at most [`MAX_BODY_BYTES`] (413 beyond, as the Rust edge).
fn read_body(request: &IncomingRequest, declared: Option<String>) -> Result<Vec<u8>, HttpError> {
    let too_large = || HttpError::new(413, format!("the request body is larger than {MAX_BODY_BYTES} bytes"));
    if declared.and_then(|d| d.trim().parse::<u64>().ok()).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let body: IncomingBody = request.consume().map_err(|()| HttpError::new(500, "the request body was taken"))?;
    // The stream is dropped before the body is finished, as the host requires.
    let mut stream = body.stream().map_err(|()| HttpError::new(500, "the request body has no stream"))?;
    let bytes = edgewise_edge_feed::origin::read_bounded(&mut stream, MAX_BODY_BYTES).map_err(|e| match e {
        None => too_large(),
        Some(e) => HttpError::bad(format!("the request body could not be read: {e}")),
    })?;
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok(bytes)
}
