//! # edgewise-edge-feed
//!
//! The feed — `GET|POST /v1/feed` with the contract of `edgewise-edge serve`
//! (the query `user`, `region`, `k`, `shown`, `tenant`, `refine`; the JSON
//! body `{now_ms, seen, session}`; one JSON frame, or NDJSON frames with
//! `Accept: application/x-ndjson`; the same 4xx refusals in the same words)
//! — for the edges that live one request at a time and link `edgewise-core`
//! instead of hosting the guest: the `wasi:http` component
//! (`edge-worker/wasi-http`) and the Fastly Compute app
//! (`edge-worker/fastly`). Each of them supplies only what its platform does
//! differently:
//!
//! - an [`Origin`]: how a GET reaches the origin, how a personal request is
//!   started early and waited for until a deadline, and whether a shared
//!   answer (a regional bundle, a model, the model manifest) comes from a
//!   cache — `wasi:http` has none, Fastly has its core cache;
//! - a [`Reply`]: how the status, headers and body go back, so that the
//!   preliminary NDJSON frame is on the wire before the refined one is
//!   waited for.
//!
//! Everything else — the request's rules, model verification (sha256) and
//! decoding once per request, ranking through the guest ABI's context
//! encoding (so the ranking is the guest's, bit for bit), the retrieval-order
//! fallback, the stable merge and the frames — is here, once, and tested
//! natively against a scripted origin.
//!
//! | module | what |
//! |---|---|
//! | [`request`] | the query and body into a [`request::FeedRequest`] (as `edge-worker/src/feed/request.rs`) |
//! | [`origin`] | the origin's URL, what it answered, and the [`Origin`] trait |
//! | [`feed`] | bundles into frames: model, ranking, fallback, merge, the answer |

pub mod feed;
pub mod origin;
pub mod request;

pub use feed::{Config, answer, guard};
pub use origin::{Origin, OriginError, OriginUrl, Served};
pub use request::{Call, FeedBody, FeedRequest};

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

    /// With one more header.
    pub fn with(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    /// The answer that carries it: `{"error": message}` as JSON.
    pub fn answer(&self) -> Answer {
        let body = serde_json::to_vec(&serde_json::json!({ "error": self.message }))
            .unwrap_or_else(|_| b"{\"error\":\"internal error\"}".to_vec());
        let mut headers = vec![("content-type", edgewise_wire::media::JSON.to_string())];
        headers.extend(self.headers.iter().cloned());
        Answer { status: self.status, headers, body }
    }
}

/// A whole answer, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Where an answer goes: the platform's response, possibly streamed.
pub trait Reply {
    /// Sends the status, the headers and the first part of the body, and
    /// flushes them to the client.
    fn head(&mut self, status: u16, headers: &[(&'static str, String)], body: &[u8]);
    /// Sends more of the body (the next NDJSON line) and flushes it.
    fn more(&mut self, body: &[u8]);
}

/// A [`Reply`] that keeps everything, for tests and for platforms that
/// answer in one piece.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// The answer so far (`None` before [`Reply::head`]).
    pub answer: Option<Answer>,
    /// How many writes the body came in.
    pub writes: usize,
}

impl Reply for Collected {
    fn head(&mut self, status: u16, headers: &[(&'static str, String)], body: &[u8]) {
        self.answer = Some(Answer { status, headers: headers.to_vec(), body: body.to_vec() });
        self.writes = 1;
    }

    fn more(&mut self, body: &[u8]) {
        if let Some(a) = &mut self.answer {
            a.body.extend_from_slice(body);
            self.writes += 1;
        }
    }
}
