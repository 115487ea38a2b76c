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
//! | file | what |
//! |---|---|
//! | `lib.rs` | the export, routing, errors into responses |
//! | [`request`] | the query and body into a [`request::FeedRequest`] (as `edge-worker/src/feed/request.rs`) |
//! | [`origin`] | bounded GETs at the origin through `wasi:http/outgoing-handler` |
//! | [`feed`] | bundles into frames: model, ranking, fallback, merge, JSON |

pub mod feed;
pub mod origin;
pub mod request;

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Largest request body accepted (the Rust edge's `server.max_body_bytes`).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Longest path-and-query accepted.
pub const MAX_TARGET_BYTES: usize = 8 << 10;

/// A refusal (or failure) with its HTTP status; the body is `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status.
    pub status: u16,
    /// What the client is told.
    pub message: String,
    /// Extra headers (`WWW-Authenticate`, `Allow`).
    pub headers: Vec<(&'static str, String)>,
}

impl HttpError {
    /// A 400 naming the rule the request broke.
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// Any status.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), headers: Vec::new() }
    }

    fn with(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// An answer, before it is written.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Answer {
    fn json_error(e: &HttpError) -> Self {
        let body = serde_json::to_vec(&serde_json::json!({ "error": e.message }))
            .unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
        let mut headers = vec![("content-type", edgewise_wire::media::JSON.to_string())];
        headers.extend(e.headers.iter().cloned());
        Answer { status: e.status, headers, body }
    }
}

struct Component;

wasip2::http::proxy::export!(Component);

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let answer = match route(&request) {
            Ok(a) => a,
            Err(e) => Answer::json_error(&e),
        };
        respond(out, answer);
    }
}

/// Writes `answer`; a host that has gone away gets nothing (there is no one to tell).
fn respond(out: ResponseOutparam, answer: Answer) {
    let entries: Vec<(String, Vec<u8>)> =
        answer.headers.iter().map(|(k, v)| ((*k).to_string(), v.as_bytes().to_vec())).collect();
    let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let resp = OutgoingResponse::new(fields);
    let _ = resp.set_status_code(answer.status);
    let Ok(body) = resp.body() else {
        ResponseOutparam::set(out, Err(wasip2::http::types::ErrorCode::InternalError(None)));
        return;
    };
    ResponseOutparam::set(out, Ok(resp));
    if let Ok(mut stream) = body.write() {
        // `write` honours the stream's check-write budget; `write_all` loops over it.
        let _ = stream.write_all(&answer.body);
        let _ = stream.flush();
        drop(stream);
    }
    let _ = OutgoingBody::finish(body, None);
}

fn route(request: &IncomingRequest) -> Result<Answer, HttpError> {
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
            let mut call = request::Call {
                query: query.map(str::to_string),
                authorization: header("authorization"),
                accept: header("accept"),
                body: None,
            };
            // As the Rust edge: the query and the token are checked before the body is read.
            let parsed = feed::guard(&call)?;
            if post {
                call.body = Some(read_body(request, header("content-length"))?);
            }
            feed::answer(call, parsed)
        }
        edgewise_wire::paths::LIVEZ => {
            Ok(Answer { status: 200, headers: vec![("content-type", "text/plain".into())], body: b"ok\n".to_vec() })
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
    // The stream is moved into the read and dropped there, before the body is finished.
    let stream = body.stream().map_err(|()| HttpError::new(500, "the request body has no stream"))?;
    let bytes = read_bounded(stream, MAX_BODY_BYTES).map_err(|e| match e {
        Bounded::TooLarge => too_large(),
        Bounded::Io(e) => HttpError::bad(format!("the request body could not be read: {e}")),
    })?;
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum Bounded {
    /// More than the limit.
    TooLarge,
    /// The stream failed.
    Io(std::io::Error),
}

/// Reads `stream` to its end, refusing more than `max` bytes.
pub fn read_bounded(mut stream: wasip2::io::streams::InputStream, max: usize) -> Result<Vec<u8>, Bounded> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = std::io::Read::read(&mut stream, &mut chunk).map_err(Bounded::Io)?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > max {
            return Err(Bounded::TooLarge);
        }
        out.extend_from_slice(&chunk[..n]);
    }
}
