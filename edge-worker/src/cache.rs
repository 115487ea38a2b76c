//! The regional cache: an HTTP shared cache (RFC 9111) in front of the origin,
//! for bundles and models.
//!
//! What it follows, from the origin's `Cache-Control`:
//!
//! | directive | effect |
//! |---|---|
//! | `s-maxage` | freshness lifetime (a shared cache prefers it to `max-age`) |
//! | `max-age` | freshness lifetime when there is no `s-maxage` |
//! | `private`, `no-store` | never stored: personalized bundles are never shared across users |
//! | `no-cache` | stored, but revalidated before every use |
//! | `stale-while-revalidate` | once stale, served for this long while one background request revalidates |
//! | `stale-if-error` | once stale, served for this long when the origin fails (connection error or 5xx) |
//! | `immutable` | never revalidated while fresh |
//!
//! The age of a response is the origin's `Age` plus the time it spent here.
//! Revalidation sends `If-None-Match` with the stored ETag; a 304 refreshes the
//! stored headers and keeps the body. Concurrent misses for one key wait for a
//! single origin request (coalescing). Memory is bounded by bytes, evicting the
//! least recently used entry first (moka with the LRU policy and a byte
//! weigher). Entries can be purged by surrogate key (`Surrogate-Key` /
//! `Cache-Tag`). Every response says how it was served ([`Status`]).
//!
//! The cache knows HTTP and bytes, nothing else: it interprets the headers
//! the caching rules need (`Cache-Control`, `Age`, `ETag`, surrogate keys)
//! and keeps the origin's other end-to-end headers as they came
//! ([`Stored::header`]) for the layers that do know what they mean (the
//! module checks read the signature, the proxy passes headers on). What a
//! layer learns from a body, such as a bundle's digest and model, it keeps in
//! the stored response's memo ([`Stored::derived`]), computed once per stored
//! response rather than once per request. Ages are read from the [`Clock`]
//! the cache is built with ([`Cache::with_clock`]).
//!
//! With a [`DiskStore`] ([`Cache::with_disk`]) every stored response is also
//! written to disk, and a key missing from memory is looked for there before
//! the origin is asked: a restarted edge answers from what it stored before.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgewise_wire::headers;
use moka::policy::EvictionPolicy;
use reqwest::header::{self as h, HeaderMap, HeaderName};

use crate::clock::{Clock, SystemClock};
use crate::disk::{DiskStore, unix_ms};
use crate::metrics::CacheMetrics;

/// The parsed `Cache-Control` of a response (shared with the other edges).
pub use edgewise_wire::CacheControl;

/// How a response was served (the `X-Edgewise-Cache` header): the wire's
/// [`edgewise_wire::CacheStatus`].
pub use edgewise_wire::CacheStatus as Status;

/// Response headers the cache neither stores nor passes on: hop-by-hop
/// headers (RFC 9110 §7.6.1), the ones it recomputes (`Age`, `Content-Length`),
/// and `Set-Cookie`, which a shared cache must not hand to other users.
const NOT_STORED: [HeaderName; 11] = [
    h::CONNECTION,
    HeaderName::from_static("keep-alive"),
    h::PROXY_AUTHENTICATE,
    h::PROXY_AUTHORIZATION,
    h::TE,
    h::TRAILER,
    h::TRANSFER_ENCODING,
    h::UPGRADE,
    h::AGE,
    h::CONTENT_LENGTH,
    h::SET_COOKIE,
];

/// The origin's end-to-end headers, without those in [`NOT_STORED`].
fn storable_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = from.clone();
    for name in &NOT_STORED {
        out.remove(name);
    }
    out
}

/// Values other layers derive from a stored body, one per type, each
/// computed at most once per stored response (a 304 refresh keeps them: the
/// body is the same). The cache never looks inside them.
#[derive(Default)]
pub struct Derived {
    values: Mutex<Vec<Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.values.lock().map_or(0, |v| v.len());
        f.debug_struct("Derived").field("values", &n).finish()
    }
}

impl Derived {
    /// The value of type `T`, computed by `init` the first time it is asked for.
    /// Concurrent first requests wait for the one computation.
    pub fn get_or_init<T: Any + Send + Sync>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let mut values = self.values.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = values.iter().find_map(|v| v.clone().downcast::<T>().ok()) {
            return v;
        }
        let v = Arc::new(init());
        values.push(v.clone());
        v
    }
}

/// A stored (or just fetched) response.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The body, as the origin sent it.
    pub body: Bytes,
    /// The origin's end-to-end headers, updated by 304 refreshes.
    pub headers: HeaderMap,
    /// The parsed `Cache-Control`.
    pub cache_control: CacheControl,
    /// Surrogate keys (`Surrogate-Key` and `Cache-Tag`, space or comma separated).
    pub surrogate_keys: Vec<String>,
    /// The origin's `Age` when received.
    pub age_at_receipt: Duration,
    /// When it was received (or last revalidated), on the cache's clock.
    pub received: Instant,
    /// What other layers derived from the body ([`Stored::derived`]).
    derived: Arc<Derived>,
}

impl Stored {
    /// Its age at `now`: the origin's `Age` plus the time it has spent here.
    pub fn age(&self, now: Instant) -> Duration {
        self.age_at_receipt + now.saturating_duration_since(self.received)
    }

    /// A header of the origin's response, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `ETag`, if any.
    pub fn etag(&self) -> Option<&str> {
        self.header(h::ETAG.as_str())
    }

    /// The value of type `T` derived from the body by `init`, computed once per
    /// stored response and shared by every request it serves.
    pub fn derived<T: Any + Send + Sync>(&self, init: impl FnOnce(&Bytes) -> T) -> Arc<T> {
        self.derived.get_or_init(|| init(&self.body))
    }

    fn weight(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
        self.body.len() + headers
    }
}

/// What [`Cache::get`] returns.
#[derive(Debug, Clone)]
pub struct Served {
    /// The stored (or just fetched) response, shared rather than copied.
    pub response: Arc<Stored>,
    /// How it was served.
    pub status: Status,
    /// Its age now, in whole seconds (the `Age` header).
    pub age_secs: u64,
}

/// Why a request could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The origin could not be reached or failed, and nothing usable was stored.
    #[error("origin unavailable: {0}")]
    Origin(String),
    /// The origin answered with a client error (passed on with its status).
    #[error("origin answered {status}: {body}")]
    Upstream {
        /// The origin's status code (4xx).
        status: u16,
        /// The origin's body, truncated to 512 bytes.
        body: String,
    },
}

/// The regional cache. Clones share everything: the entries, the requests
/// in flight, the clock and the metrics.
#[derive(Clone)]
pub struct Cache {
    origin: String,
    client: reqwest::Client,
    api_key: Option<String>,
    entries: moka::sync::Cache<String, Arc<Stored>>,
    inflight: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    revalidating: Arc<Mutex<std::collections::HashSet<String>>>,
    clock: Arc<dyn Clock>,
    disk: Option<Arc<DiskStore>>,
    /// Counters (registered by the server's `/metrics`).
    pub metrics: CacheMetrics,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("origin", &self.origin).field("entries", &self.entries.entry_count()).finish()
    }
}

fn header<'h>(map: &'h HeaderMap, name: &str) -> Option<&'h str> {
    map.get(name).and_then(|v| v.to_str().ok())
}

fn age_header(map: &HeaderMap) -> Duration {
    Duration::from_secs(header(map, h::AGE.as_str()).and_then(|a| a.trim().parse().ok()).unwrap_or(0))
}

enum Fetched {
    Full(Stored),
    NotModified(HeaderMap),
}

/// A response as the cache keeps it: its storable headers, parsed
/// `Cache-Control` and surrogate keys, aged `age_at_receipt` at `received`.
fn stored(headers: &HeaderMap, body: Bytes, age_at_receipt: Duration, received: Instant) -> Stored {
    let mut keys: Vec<String> = Vec::new();
    for name in [headers::SURROGATE_KEY, headers::CACHE_TAG] {
        if let Some(v) = header(headers, name) {
            keys.extend(v.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_string));
        }
    }
    keys.sort();
    keys.dedup();
    Stored {
        body,
        cache_control: CacheControl::parse(header(headers, h::CACHE_CONTROL.as_str()).unwrap_or_default()),
        surrogate_keys: keys,
        age_at_receipt,
        received,
        headers: storable_headers(headers),
        derived: Arc::default(),
    }
}

impl Cache {
    /// A cache in front of `origin` (`http://host:port`), holding at most `max_bytes` of bodies.
    pub fn new(origin: &str, max_bytes: u64, timeout: Duration) -> Result<Self, CacheError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // Below the origin's header-read timeout (10 s by default), which
            // also closes idle keep-alive connections: the edge drops an idle
            // connection before the origin does, so a request never races a close.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| CacheError::Origin(format!("cannot build the HTTP client: {e}")))?;
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &Arc<Stored>| u32::try_from(k.len() + v.weight() + 256).unwrap_or(u32::MAX))
            .eviction_policy(EvictionPolicy::lru())
            .build();
        Ok(Cache {
            origin: origin.trim_end_matches('/').to_string(),
            client,
            api_key: None,
            entries,
            inflight: Arc::default(),
            revalidating: Arc::default(),
            clock: Arc::new(SystemClock),
            disk: None,
            metrics: CacheMetrics::new().map_err(|e| CacheError::Origin(format!("metrics: {e}")))?,
        })
    }

    /// Ages entries by `clock` instead of the system clock (tests use a
    /// [`ManualClock`](crate::clock::ManualClock)). Call it before the cache is cloned.
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Keeps every stored response on disk too, and looks there for keys
    /// missing from memory (a restarted edge starts warm). Call it before
    /// the cache is cloned.
    #[must_use]
    pub fn with_disk(mut self, disk: Arc<DiskStore>) -> Self {
        self.disk = Some(disk);
        self
    }

    /// Writes the disk store's index if entries changed (the server calls it
    /// every few seconds and at shutdown); `Ok(false)` when there is nothing
    /// to write or no disk store.
    pub fn flush_disk(&self) -> Result<bool, crate::disk::DiskError> {
        self.disk.as_ref().map_or(Ok(false), |d| d.flush())
    }

    /// The entry for `path`: from memory, else from the disk store (read,
    /// checked, and kept in memory from then on).
    async fn lookup(&self, path: &str) -> Option<Arc<Stored>> {
        if let Some(s) = self.entries.get(path) {
            return Some(s);
        }
        let disk = self.disk.clone()?;
        // The index is in memory: only a key it holds costs a file read (off the async threads).
        let e = disk.lookup(path)?;
        let read = tokio::task::spawn_blocking(move || match disk.read_body(&e) {
            Ok(body) => Some((e, body)),
            Err(err) => {
                tracing::warn!(error = %err, "a stored body failed its check; dropped");
                None
            }
        })
        .await
        .ok()??;
        let (e, body) = read;
        let age = Duration::from_secs(e.age_at_receipt_s) + e.since_received(unix_ms());
        let s = Arc::new(stored(&e.header_map(), body, age, self.clock.now()));
        self.entries.insert(path.to_string(), s.clone());
        Some(s)
    }

    /// Writes `s` to the disk store (off the async threads), if there is one.
    fn persist(&self, path: &str, s: &Arc<Stored>) {
        let Some(disk) = self.disk.clone() else { return };
        let held = self.clock.now().saturating_duration_since(s.received);
        let received_unix_ms = unix_ms().saturating_sub(u64::try_from(held.as_millis()).unwrap_or(u64::MAX));
        let (path, s) = (path.to_string(), s.clone());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = disk.put(&path, &s.body, &s.headers, s.age_at_receipt, received_unix_ms) {
                tracing::warn!(path, error = %e, "cannot write the response to the disk cache");
            }
        });
    }

    /// Drops `path` from memory and disk.
    fn forget(&self, path: &str) {
        self.entries.invalidate(path);
        if let Some(disk) = self.disk.clone() {
            let path = path.to_string();
            tokio::task::spawn_blocking(move || disk.remove(&path));
        }
    }

    /// Sends `key` as `X-Api-Key` with every origin request (for an origin with read keys).
    #[must_use]
    pub fn with_api_key(mut self, key: Option<String>) -> Self {
        self.api_key = key;
        self
    }

    /// The origin's base URL.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// How many responses are stored (once pending evictions have run).
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (the weigher's total).
    pub fn bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }

    async fn fetch(&self, path: &str, etag: Option<&str>, bearer: Option<&str>) -> Result<Fetched, CacheError> {
        self.metrics.origin_requests.inc();
        let _timer = self.metrics.origin_seconds.start_timer();
        let mut req = self.client.get(format!("{}{path}", self.origin));
        if let Some(e) = etag {
            req = req.header(h::IF_NONE_MATCH, e);
        }
        if let Some(k) = &self.api_key {
            req = req.header(headers::API_KEY, k);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.origin_up.set(0);
                return Err(CacheError::Origin(e.to_string()));
            }
        };
        let status = resp.status();
        self.metrics.origin_up.set(i64::from(!status.is_server_error()));
        let headers = resp.headers().clone();
        if status == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified(headers));
        }
        if status.is_server_error() {
            return Err(CacheError::Origin(format!("origin answered {status}")));
        }
        let body = resp.bytes().await.map_err(|e| CacheError::Origin(e.to_string()))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            return Err(CacheError::Upstream { status: status.as_u16(), body: text });
        }
        Ok(Fetched::Full(stored(&headers, body, age_header(&headers), self.clock.now())))
    }

    fn count(&self, s: Status) -> Status {
        self.metrics.served.with_label_values(&[s.as_str()]).inc();
        s
    }

    fn served(&self, response: Arc<Stored>, status: Status) -> Served {
        let age_secs = response.age(self.clock.now()).as_secs();
        Served { response, status: self.count(status), age_secs }
    }

    /// Applies a 304's headers to a stored entry (RFC 9111 §4.3.4: each header
    /// the 304 carries replaces the stored one); the body and what was derived
    /// from it stay.
    fn refreshed(&self, old: &Stored, fresh: &HeaderMap) -> Stored {
        let mut s = old.clone();
        let fresh = storable_headers(fresh);
        for name in fresh.keys() {
            s.headers.remove(name);
            for v in fresh.get_all(name) {
                s.headers.append(name.clone(), v.clone());
            }
        }
        s.cache_control = CacheControl::parse(s.header(h::CACHE_CONTROL.as_str()).unwrap_or_default());
        s.age_at_receipt = age_header(&fresh);
        s.received = self.clock.now();
        s
    }

    /// Fetches or revalidates `path` and stores the result when storable.
    async fn refresh(&self, path: &str, stale: Option<Arc<Stored>>) -> Result<(Arc<Stored>, Status), CacheError> {
        match self.fetch(path, stale.as_ref().and_then(|s| s.etag()), None).await? {
            Fetched::NotModified(fresh) => {
                let Some(old) = stale else {
                    return Err(CacheError::Origin("origin answered 304 to an unconditional request".into()));
                };
                let s = Arc::new(self.refreshed(&old, &fresh));
                self.entries.insert(path.to_string(), s.clone());
                self.persist(path, &s);
                Ok((s, Status::Revalidated))
            }
            Fetched::Full(s) => {
                let s = Arc::new(s);
                if s.cache_control.storable() {
                    self.entries.insert(path.to_string(), s.clone());
                    self.persist(path, &s);
                } else {
                    self.forget(path);
                }
                Ok((s, Status::Miss))
            }
        }
    }

    /// Fetches `path` from the origin on behalf of one user, with their
    /// `token`: never stored, never coalesced with another request, never
    /// served from the store, so one user's response cannot reach another.
    pub async fn pass_through(&self, path: &str, token: &str) -> Result<Served, CacheError> {
        match self.fetch(path, None, Some(token)).await? {
            Fetched::Full(s) => Ok(self.served(Arc::new(s), Status::Miss)),
            Fetched::NotModified(_) => {
                Err(CacheError::Origin("origin answered 304 to an unconditional request".into()))
            }
        }
    }

    /// Posts `body` to the origin's `path` on behalf of one user, with their
    /// `token`: never stored. Returns the origin's status, content type and
    /// body, whatever the status (the origin's refusals are the client's to
    /// read); fails only when the origin cannot be reached.
    pub async fn post_through(
        &self,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(u16, Option<String>, Bytes), CacheError> {
        self.metrics.origin_requests.inc();
        let _timer = self.metrics.origin_seconds.start_timer();
        let mut req = self.client.post(format!("{}{path}", self.origin)).bearer_auth(token).body(body);
        if let Some(t) = content_type {
            req = req.header(h::CONTENT_TYPE, t);
        }
        let resp = req.send().await.map_err(|e| {
            self.metrics.origin_up.set(0);
            CacheError::Origin(e.to_string())
        })?;
        let status = resp.status();
        self.metrics.origin_up.set(i64::from(!status.is_server_error()));
        let kind = header(resp.headers(), h::CONTENT_TYPE.as_str()).map(str::to_string);
        let body = resp.bytes().await.map_err(|e| CacheError::Origin(e.to_string()))?;
        Ok((status.as_u16(), kind, body))
    }

    /// Whether the last origin request got an answer (`None` before the first).
    pub fn origin_up(&self) -> Option<bool> {
        match self.metrics.origin_up.get() {
            -1 => None,
            v => Some(v == 1),
        }
    }

    /// Serves `path` (the origin path and query, the cache key).
    pub async fn get(&self, path: &str) -> Result<Served, CacheError> {
        let now = self.clock.now();
        if let Some(s) = self.lookup(path).await {
            let age = s.age(now);
            let life = s.cache_control.lifetime();
            if age < life {
                return Ok(self.served(s, Status::Hit));
            }
            let swr = Duration::from_secs(s.cache_control.stale_while_revalidate.unwrap_or(0));
            if age < life + swr {
                self.revalidate_in_background(path, s.clone());
                return Ok(self.served(s, Status::Stale));
            }
        }
        // A miss or an expired entry: one request per key at a time.
        let lock = {
            let mut m = self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            m.entry(path.to_string()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let result = self.get_locked(path).await;
        {
            let mut m = self.inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if Arc::strong_count(&lock) <= 2 {
                m.remove(path);
            }
        }
        result
    }

    async fn get_locked(&self, path: &str) -> Result<Served, CacheError> {
        let stored = self.entries.get(path);
        if let Some(s) = &stored
            && s.age(self.clock.now()) < s.cache_control.lifetime()
        {
            // Another request refreshed it while this one waited.
            return Ok(self.served(s.clone(), Status::Hit));
        }
        match self.refresh(path, stored.clone()).await {
            Ok((s, status)) => Ok(self.served(s, status)),
            Err(e @ CacheError::Upstream { .. }) => Err(e),
            Err(e) => {
                if let Some(s) = stored {
                    let sie = Duration::from_secs(s.cache_control.stale_if_error.unwrap_or(0));
                    if s.age(self.clock.now()) < s.cache_control.lifetime() + sie {
                        tracing::warn!(path, error = %e, "origin failed; serving a stale copy (stale-if-error)");
                        return Ok(self.served(s, Status::Stale));
                    }
                }
                Err(e)
            }
        }
    }

    fn revalidate_in_background(&self, path: &str, stale: Arc<Stored>) {
        {
            let mut r = self.revalidating.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !r.insert(path.to_string()) {
                return;
            }
        }
        let this = self.clone();
        let path = path.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.refresh(&path, Some(stale)).await {
                tracing::warn!(path, error = %e, "background revalidation failed; the stale copy stays");
            }
            this.revalidating.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&path);
        });
    }

    /// Drops every entry tagged with `key`, in memory and on disk; returns how many.
    pub fn purge(&self, key: &str) -> usize {
        let mut doomed: std::collections::HashSet<String> = self
            .entries
            .iter()
            .filter(|(_, v)| v.surrogate_keys.iter().any(|k| k == key))
            .map(|(k, _)| k.as_str().to_string())
            .collect();
        if let Some(disk) = &self.disk {
            doomed.extend(disk.purge(key));
        }
        for k in &doomed {
            self.entries.invalidate(k.as_str());
        }
        doomed.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_derived_value_is_computed_once_per_type() {
        let d = Derived::default();
        let mut calls = 0;
        let a = d.get_or_init(|| {
            calls += 1;
            7u32
        });
        let b = d.get_or_init(|| {
            calls += 1;
            8u32
        });
        assert_eq!((*a, *b, calls), (7, 7, 1), "the second caller gets the first value");
        assert_eq!(*d.get_or_init(|| "another type"), "another type", "each type has its own value");
    }

    #[test]
    fn hop_by_hop_and_recomputed_headers_are_not_stored() {
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("connection", "close"),
            ("age", "5"),
            ("content-length", "3"),
            ("set-cookie", "a=b"),
            ("x-edgewise-signature", "c2ln"),
            ("content-type", "application/wasm"),
        ] {
            from.insert(HeaderName::from_static(k), v.parse().expect("value"));
        }
        let kept = storable_headers(&from);
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "x-edgewise-signature"]);
    }
}
