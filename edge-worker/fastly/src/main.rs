//! # edgewise-edge-fastly
//!
//! The Edgewise feed as a Fastly Compute app (`wasm32-wasip1`, the `fastly`
//! crate): `GET|POST /v1/feed` with the contract of `edgewise-edge serve`
//! (the query `user`, `region`, `k`, `shown`, `tenant`, `refine`; the JSON
//! body `{now_ms, seen, session}`; one JSON frame, or the preliminary and
//! refined NDJSON frames with `Accept: application/x-ndjson`, the first
//! streamed before the second is waited for; the same refusals in the same
//! words). The feed itself is `edgewise-edge-feed`, shared with the
//! `wasi:http` component; this file is Fastly's side of it.
//!
//! - **Settings** come from the config store `edgewise`: `origin` (required,
//!   `http://host:port[/prefix]` or `https://…`), `api_key`, `candidates`
//!   (300), `refine_deadline_ms` (150), `max_clock_skew_ms` (3 600 000).
//! - **Origin.** A dynamic backend to it, with connect, first-byte and
//!   between-bytes time-outs of 5 s. Every request to it is `pass`: the app
//!   does its own caching, below, and a user's bundle is never stored.
//! - **Caching.** Regional bundles, models and the model manifest go through
//!   Fastly's core cache (`fastly::cache::core`), in a transaction keyed by
//!   the URL, which collapses concurrent misses into one origin request. The
//!   entry keeps the origin's `ETag` in its metadata and lives as long as the
//!   origin's `Cache-Control` says (`s-maxage`, else `max-age`, with
//!   `stale-while-revalidate`); `private`, `no-store` or a zero lifetime are
//!   not stored. An expired entry is revalidated with `If-None-Match` — a 304
//!   renews it without moving the body — and served stale if the origin fails
//!   while `stale-if-error` allows. Each frame's `bundle_cache` says which.
//! - **Ranking.** `edgewise-core` is linked in; models are verified against
//!   the sha256 the bundle names before they are decoded; a failed model or
//!   ranking falls back to the bundle's retrieval order.
//! - **Bounds.** Request target 8 KiB (414), body 1 MiB (413), `k` 1–1000,
//!   at most 10,000 `seen` ids, bundles 32 MiB and models 16 MiB from the
//!   origin; every refusal is a 4xx `{"error": "…"}` that names the rule.
//!
//! Build: `cargo build --release --target wasm32-wasip1` in this folder (its
//! own workspace). `cargo xtask fastly-check` type-checks it; `cargo xtask
//! fastly-test` runs it under Viceroy, Fastly's local server.

use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgewise_edge_feed::origin::{ORIGIN_TIMEOUT, read_bounded};
use edgewise_edge_feed::{
    Call, Config, HttpError, MAX_BODY_BYTES, MAX_TARGET_BYTES, Origin, OriginError, OriginUrl, Reply, Served,
};
use edgewise_wire::{CacheControl, CacheStatus};
use fastly::cache::core::{CacheKey, Found, Transaction};
use fastly::http::body::StreamingBody;
use fastly::http::request::{PendingRequest, PollResult};
use fastly::http::{Method, StatusCode};
use fastly::{Backend, ConfigStore, Request, Response};

/// The config store the settings are read from.
const STORE: &str = "edgewise";
/// The dynamic backend's name: a prefix and the origin's `host:port`, so a
/// name already in use always points at the same origin.
fn backend_name(url: &OriginUrl) -> String {
    let target: String =
        url.host_port().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    format!("edgewise-origin-{}{target}", if url.https { "tls-" } else { "" })
}

fn main() {
    let req = Request::from_client();
    let mut reply = Downstream { stream: None };
    if let Err(e) = route(req, &mut reply) {
        let a = e.answer();
        reply.head(a.status, &a.headers, &a.body);
    }
    reply.finish();
}

/// The answer to the client, streamed: headers first, then each write flushed.
struct Downstream {
    stream: Option<StreamingBody>,
}

impl Reply for Downstream {
    fn head(&mut self, status: u16, headers: &[(&'static str, String)], body: &[u8]) {
        if self.stream.is_some() {
            return;
        }
        let mut resp = Response::from_status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
        for (name, value) in headers {
            resp.set_header(*name, value.as_str());
        }
        self.stream = Some(resp.stream_to_client());
        self.more(body);
    }

    fn more(&mut self, body: &[u8]) {
        // A client that has gone away gets nothing (there is no one to tell).
        if let Some(s) = &mut self.stream {
            let _ = s.write_all(body);
            let _ = s.flush();
        }
    }
}

impl Downstream {
    fn finish(self) {
        if let Some(s) = self.stream {
            let _ = s.finish();
        }
    }
}

fn route(mut req: Request, reply: &mut Downstream) -> Result<(), HttpError> {
    let target_len = req.get_path().len() + req.get_query_str().map_or(0, |q| q.len() + 1);
    if target_len > MAX_TARGET_BYTES {
        return Err(HttpError::new(414, format!("the request target is longer than {MAX_TARGET_BYTES} bytes")));
    }
    match req.get_path() {
        edgewise_wire::paths::FEED => {
            let post = match *req.get_method() {
                Method::GET => false,
                Method::POST => true,
                ref m => {
                    let name: String = m.as_str().chars().take(32).collect();
                    return Err(HttpError::new(405, format!("{name} is not allowed on /v1/feed (GET or POST)"))
                        .with("allow", "GET, POST"));
                }
            };
            let header = |name: &str| req.get_header_str(name).map(str::to_string);
            let mut call = Call {
                query: req.get_query_str().map(str::to_string),
                authorization: header("authorization"),
                accept: header("accept"),
                body: None,
            };
            // As the Rust edge: the query and the token are checked before the body is read.
            let parsed = edgewise_edge_feed::guard(&call)?;
            if post {
                call.body = Some(read_body(&mut req)?);
            }
            let store = ConfigStore::try_open(STORE).ok();
            let cfg = Config::from_lookup(
                |name| store.as_ref().and_then(|s| s.try_get(name).ok().flatten()),
                |name| format!("config store `{STORE}` key `{name}`"),
            )?;
            let mut origin = FastlyOrigin::new(&cfg)?;
            let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            edgewise_edge_feed::answer(call, parsed, &cfg, now_ms, &mut origin, reply)
        }
        edgewise_wire::paths::LIVEZ => {
            reply.head(200, &[("content-type", "text/plain".into())], b"ok\n");
            Ok(())
        }
        _ => Err(HttpError::new(404, "no such route")),
    }
}

/// The request body, at most [`MAX_BODY_BYTES`] (413 beyond, as the Rust edge).
fn read_body(req: &mut Request) -> Result<Vec<u8>, HttpError> {
    let too_large = || HttpError::new(413, format!("the request body is larger than {MAX_BODY_BYTES} bytes"));
    let declared = req.get_header_str("content-length").and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = req.take_body();
    read_bounded(&mut body, MAX_BODY_BYTES).map_err(|e| match e {
        None => too_large(),
        Some(e) => HttpError::bad(format!("the request body could not be read: {e}")),
    })
}

/// The origin through a dynamic backend, shared answers through the core cache.
struct FastlyOrigin {
    url: OriginUrl,
    api_key: Option<String>,
    backend: Backend,
}

/// A personal request in flight.
struct Flight {
    pending: PendingRequest,
    path: String,
    max_bytes: usize,
    started: Instant,
}

impl FastlyOrigin {
    fn new(cfg: &Config) -> Result<Self, HttpError> {
        let url = cfg.origin.clone();
        let host = url.host().to_string();
        let name = backend_name(&url);
        let mut builder = Backend::builder(&name, url.host_port())
            .override_host(&host)
            .connect_timeout(ORIGIN_TIMEOUT)
            .first_byte_timeout(ORIGIN_TIMEOUT)
            .between_bytes_timeout(ORIGIN_TIMEOUT);
        if url.https {
            builder = builder.enable_ssl().sni_hostname(&host);
        }
        let backend = match builder.finish() {
            Ok(b) => b,
            // Already defined: the name carries the origin, so it is the same one.
            Err(fastly::backend::BackendCreationError::NameInUse) => {
                Backend::from_name(&name).map_err(|e| HttpError::new(500, format!("the origin backend {name}: {e}")))?
            }
            Err(e) => return Err(HttpError::new(500, format!("cannot define a backend for the origin: {e}"))),
        };
        Ok(FastlyOrigin { url, api_key: cfg.api_key.clone(), backend })
    }

    /// `GET {origin}{path}`, past Fastly's HTTP cache. The URL and the API key
    /// come from the config store: checked here, since the `fastly` crate's
    /// string conversions panic on what they cannot parse.
    fn request(&self, path: &str) -> Result<Request, OriginError> {
        let target = self.url.url(path);
        let url = fastly::http::Url::parse(&target)
            .map_err(|e| OriginError::Refused(format!("the origin URL {target:?} is not valid: {e}")))?;
        let mut req = Request::get(url);
        if let Some(k) = &self.api_key {
            let v = fastly::http::HeaderValue::from_str(k)
                .map_err(|_| OriginError::Refused("the config store's api_key is not a valid header value".into()))?;
            req.set_header(edgewise_wire::headers::API_KEY, v);
        }
        req.set_pass(true);
        Ok(req)
    }

    /// A 200's body, bounded; anything else is an error.
    fn body(mut resp: Response, path: &str, max: usize) -> Result<Vec<u8>, OriginError> {
        let too_large = || OriginError::TooLarge { path: path.split('?').next().unwrap_or(path).to_string(), max };
        if resp
            .get_header_str("content-length")
            .and_then(|l| l.trim().parse::<u64>().ok())
            .is_some_and(|n| n > max as u64)
        {
            return Err(too_large());
        }
        let status = resp.get_status().as_u16();
        let mut body = resp.take_body();
        let bytes = read_bounded(&mut body, max).map_err(|e| match e {
            None => too_large(),
            Some(e) => OriginError::Body(e.to_string()),
        })?;
        if status != 200 {
            return Err(OriginError::status(status, &bytes));
        }
        Ok(bytes)
    }

    /// A cached entry's body, bounded.
    fn cached(found: &Found, path: &str, max: usize) -> Result<Vec<u8>, OriginError> {
        let mut body = found.to_stream().map_err(|e| OriginError::Failed(format!("the cached {path}: {e}")))?;
        read_bounded(&mut body, max).map_err(|e| match e {
            None => OriginError::TooLarge { path: path.to_string(), max },
            Some(e) => OriginError::Body(e.to_string()),
        })
    }
}

impl Origin for FastlyOrigin {
    type Pending = Flight;

    fn start_personal(&mut self, path: &str, token: &str, max_bytes: usize) -> Result<Flight, OriginError> {
        let mut req = self.request(path)?;
        let bearer = fastly::http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| OriginError::Refused("the user's token is not a valid header value".into()))?;
        req.set_header("authorization", bearer);
        let pending = req.send_async(&self.backend).map_err(|e| OriginError::Failed(e.to_string()))?;
        Ok(Flight { pending, path: path.to_string(), max_bytes, started: Instant::now() })
    }

    fn wait(&mut self, flight: Flight, deadline: Option<Duration>) -> Result<Option<Served>, OriginError> {
        let Flight { mut pending, path, max_bytes, started } = flight;
        let waited = Instant::now();
        let resp = match deadline {
            None => pending.wait(),
            Some(d) => loop {
                match pending.poll() {
                    PollResult::Done(r) => break r,
                    // Past the deadline the request is dropped, which abandons it.
                    PollResult::Pending(_) if waited.elapsed() >= d => return Ok(None),
                    PollResult::Pending(p) => {
                        pending = p;
                        std::thread::sleep(Duration::from_millis(1).min(d.saturating_sub(waited.elapsed())));
                    }
                }
            },
        }
        .map_err(|e| OriginError::Failed(e.to_string()))?;
        let body = Self::body(resp, &path, max_bytes)?;
        Ok(Some(Served { body, ms: started.elapsed().as_secs_f64() * 1e3, cache: CacheStatus::Miss }))
    }

    fn shared(&mut self, path: &str, max_bytes: usize) -> Result<Served, OriginError> {
        let started = Instant::now();
        let served = |body, cache| Served { body, ms: started.elapsed().as_secs_f64() * 1e3, cache };
        let key = CacheKey::from(format!("edgewise {}", self.url.url(path)));
        let tx = Transaction::lookup(key).execute().map_err(|e| OriginError::Failed(format!("cache lookup: {e}")))?;
        let found = tx.found();
        if !tx.must_insert_or_update()
            && let Some(f) = &found
        {
            let status = if f.is_stale() { CacheStatus::Stale } else { CacheStatus::Hit };
            return Ok(served(Self::cached(f, path, max_bytes)?, status));
        }
        // This request fetches; concurrent lookups of the key wait for its insert.
        let etag = found.as_ref().map(Found::user_metadata).filter(|m| !m.is_empty());
        let mut req = match self.request(path) {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.cancel_insert_or_update();
                return Err(e);
            }
        };
        if let Some(v) = etag.as_ref().and_then(|t| fastly::http::HeaderValue::from_bytes(t).ok()) {
            req.set_header("if-none-match", v);
        }
        let stale_if_error = |found: &Option<Found>, e: OriginError| -> Result<Served, OriginError> {
            let _ = tx.cancel_insert_or_update();
            match found {
                Some(f) => {
                    eprintln!("edgewise: {path}: {} (serving the stored copy)", e.detail());
                    Ok(served(Self::cached(f, path, max_bytes)?, CacheStatus::Stale))
                }
                None => Err(e),
            }
        };
        let resp = match req.send(&self.backend) {
            Ok(r) => r,
            Err(e) => return stale_if_error(&found, OriginError::Failed(e.to_string())),
        };
        let cc = CacheControl::parse(resp.get_header_str("cache-control").unwrap_or_default());
        let ttl = cc.lifetime();
        let swr = Duration::from_secs(cc.stale_while_revalidate.unwrap_or(0));
        if resp.get_status() == StatusCode::NOT_MODIFIED
            && let (Some(f), Some(tag)) = (&found, etag)
        {
            let body = Self::cached(f, path, max_bytes)?;
            if cc.storable() && !ttl.is_zero() {
                let _ = tx.update(ttl).user_metadata(tag).stale_while_revalidate(swr).execute();
            } else {
                let _ = tx.cancel_insert_or_update();
            }
            return Ok(served(body, CacheStatus::Revalidated));
        }
        if resp.get_status().is_server_error() && found.is_some() && cc.stale_if_error.is_none_or(|s| s > 0) {
            return stale_if_error(&found, OriginError::status(resp.get_status().as_u16(), b""));
        }
        let tag = resp.get_header_str("etag").map(|t| t.as_bytes().to_vec()).unwrap_or_default();
        let body = match Self::body(resp, path, max_bytes) {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.cancel_insert_or_update();
                return Err(e);
            }
        };
        if cc.storable() && !ttl.is_zero() {
            let stored = tx
                .insert(ttl)
                .user_metadata(tag.into())
                .stale_while_revalidate(swr)
                .known_length(body.len() as u64)
                .execute()
                .map_err(|e| e.to_string())
                .and_then(|mut w| {
                    w.write_all(&body).map_err(|e| e.to_string())?;
                    w.finish().map_err(|e| e.to_string())
                });
            // A cache that refuses costs a later miss, nothing else.
            if let Err(e) = stored {
                eprintln!("edgewise: {path} was not stored: {e}");
            }
        } else {
            let _ = tx.cancel_insert_or_update();
        }
        Ok(served(body, CacheStatus::Miss))
    }
}
