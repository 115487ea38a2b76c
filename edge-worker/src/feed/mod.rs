//! The feed: a speculative ranking at once, then a refined one.
//!
//! `GET|POST /v1/feed?user=&region=&k=&shown=&tenant=&refine=`
//!
//! 1. **Preliminary.** The regional bundle (from the cache) is ranked by the
//!    guest with the user's context: the POST body's session state, history
//!    and seen items. For a user whose last refined bundle the edge kept
//!    ([`kept`]), the kept bundle's rows come first and the regional rows it
//!    lacks after them, ranked with the user's embedding it carries: the
//!    instant frame is already personal (the frame's `kept_bundle`).
//! 2. **Refined.** The personalized bundle is fetched from the origin (it is
//!    `private`, so the cache passes it through), kept for the user's next
//!    preliminary frame, and ranked by the guest.
//! 3. **Stable merge.** The first `shown` preliminary items keep their places
//!    ([`edgewise_core::merge::stable_merge`]); the rest comes from the refined
//!    ranking.
//! 4. **Responses.** With `Accept: application/x-ndjson`, two frames,
//!    preliminary then refined, each with its items, scores, timings, and the
//!    cache status and digest of its bundle. Otherwise one JSON document: the
//!    refined result if it is ready within the deadline (default 150 ms), else
//!    the preliminary one with `X-Edgewise-Feed: preliminary`.
//!    With `refine=false`, only the preliminary frame is computed and sent
//!    (one NDJSON frame, or JSON with `X-Edgewise-Feed: preliminary`): an
//!    instant first paint for a client that asks for the refined feed
//!    separately, served from the cache alone.
//! 5. **Fallbacks.** Origin down: the cache serves stale bundles
//!    (`stale-if-error`). Guest failure: the bundle's retrieval order, with
//!    `"ranked_by": "retrieval-order"` and the failure counted. Nothing cached
//!    and no origin: 503.
//!
//! Models are fetched through the cache by the digest the bundle names
//! (`/v1/models/{digest}`), or the origin's current manifest when the bundle
//! names none, and each is verified against its sha256 before it is used.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Feed`]: the two frames, the refinement task, its deadline, the NDJSON stream, the answer counts (`feeds_total`) |
//! | [`request`] | the query and body, parsed and checked into a [`FeedRequest`] |
//! | [`frame`] | one bundle into one frame: fetch, facts, model, guest, fallback |
//! | [`kept`] | each user's last personal bundle, private, bounded in bytes and age |
//!
//! The feed knows nothing of routes or status codes: the server hands it a
//! parsed request and turns its [`Answer`] or [`FeedError`] into a response.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use edgewise_wire::{Frame, FrameFailure, FrameKind};
use prometheus::IntCounterVec;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use crate::cache::{Cache, CacheError};
use crate::config::FeedSettings;
use crate::tenants::Tenants;

pub mod frame;
pub mod kept;
pub mod request;

pub use frame::{BundleFacts, Fetched, ModelError, Models, retrieval_order};
pub use kept::KeptBundles;
pub use request::{FeedBody, FeedRequest, MAX_SEEN};

/// The feed's settings (`[feed]` in the configuration).
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// How long a plain-JSON request waits for the refined result.
    pub refine_deadline: Duration,
    /// Candidates asked of the origin for each bundle.
    pub candidates: usize,
    /// How far a request's `now_ms` may be from the edge's clock.
    pub max_clock_skew: Duration,
    /// Bytes of users' personal bundles kept for their next preliminary frame (0: none).
    pub kept_bytes: u64,
    /// How long a kept personal bundle may be used.
    pub kept_max_age: Duration,
}

impl Default for FeedConfig {
    /// The settings of the default `[feed]` configuration.
    fn default() -> Self {
        Self::from(&FeedSettings::default())
    }
}

impl From<&FeedSettings> for FeedConfig {
    fn from(f: &FeedSettings) -> Self {
        Self {
            refine_deadline: Duration::from_millis(f.refine_deadline_ms),
            candidates: f.candidates,
            max_clock_skew: Duration::from_millis(f.max_clock_skew_ms),
            kept_bytes: f.kept_bytes,
            kept_max_age: Duration::from_secs(f.kept_max_age_s),
        }
    }
}

/// Why a feed request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The query or body is malformed; the message names the problem.
    #[error("{0}")]
    BadRequest(String),
    /// Neither bundle could be had (nothing cached, and no origin).
    #[error("no bundle available: {0}")]
    Unavailable(String),
}

/// How the client wants its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// One JSON frame: the refined one if it is ready within the deadline.
    Json,
    /// NDJSON, each frame as soon as it is ready (`Accept: application/x-ndjson`).
    Ndjson,
}

impl Delivery {
    /// Preliminary items the client shows before the refined frame, unless
    /// `shown=` says otherwise: a streaming client paints the first frame.
    pub fn default_shown(self) -> usize {
        match self {
            Delivery::Json => 0,
            Delivery::Ndjson => 3,
        }
    }
}

/// What the feed answers.
#[derive(Debug)]
pub enum Answer {
    /// One frame: refined, or preliminary when the refined one is not ready
    /// in time or was not asked for.
    Frame(Frame),
    /// NDJSON lines, each sent as soon as it is ready: the preliminary frame,
    /// then the refined one when it was asked for.
    Stream(ReceiverStream<Result<Bytes, Infallible>>),
}

/// How a feed request was answered (the `answer` label of `feeds_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    Refined,
    Preliminary,
    Unavailable,
}

impl Answered {
    fn label(self) -> &'static str {
        match self {
            Answered::Refined => "refined",
            Answered::Preliminary => "preliminary",
            Answered::Unavailable => "unavailable",
        }
    }
}

/// The feed: the regional cache, the tenants' guests, verified models.
pub struct Feed {
    cache: Cache,
    tenants: Arc<Tenants>,
    models: Models,
    kept: KeptBundles,
    config: FeedConfig,
    answers: IntCounterVec,
    kept_outcomes: IntCounterVec,
}

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("config", &self.config).finish_non_exhaustive()
    }
}

type Refinement = JoinHandle<Result<Frame, CacheError>>;

impl Feed {
    /// A feed over `cache` and `tenants`; each answer is counted in `answers`
    /// (`feeds_total{answer}`), and what became of each user's kept bundle
    /// in `kept_outcomes` (`feed_kept_bundles_total{outcome}`: `merged`,
    /// `alone`, `mismatch`, `none`, `stored`, `forgotten`).
    pub fn new(
        cache: Cache,
        tenants: Arc<Tenants>,
        config: FeedConfig,
        answers: IntCounterVec,
        kept_outcomes: IntCounterVec,
    ) -> Self {
        let kept = KeptBundles::new(config.kept_bytes, config.kept_max_age);
        Self { cache, tenants, models: Models::default(), kept, config, answers, kept_outcomes }
    }

    /// The settings it was built with.
    pub fn config(&self) -> &FeedConfig {
        &self.config
    }

    /// Answers `req`. `token` is the user's own, passed on to the origin for
    /// their bundle; without it (an anonymous feed) there is no refinement.
    pub async fn answer(
        self: &Arc<Self>,
        req: FeedRequest,
        token: Option<String>,
        delivery: Delivery,
    ) -> Result<Answer, FeedError> {
        let start = Instant::now();
        let (regional, personal) = req.bundle_paths(&self.config);
        // The refinement starts first: the origin's retrieval runs while the
        // regional bundle is ranked.
        let refined = match (req.refine, personal, token) {
            (true, Some(path), Some(token)) => Some(self.refine(path, token, &req)),
            _ => None,
        };
        let prelim = self.preliminary(&regional, &req).await;
        let k = req.k as usize;
        match delivery {
            Delivery::Ndjson => Ok(Answer::Stream(self.stream(prelim, refined, req.shown, k))),
            Delivery::Json => {
                let left = self.config.refine_deadline.saturating_sub(start.elapsed());
                self.within(left, prelim, refined, req.shown, k).await.map(Answer::Frame)
            }
        }
    }

    /// The preliminary frame: the regional bundle, merged after the user's
    /// kept bundle when there is one; the kept bundle alone when the
    /// regional one cannot be had.
    async fn preliminary(&self, path: &str, req: &FeedRequest) -> Result<Frame, CacheError> {
        let (ctx, tenant) = (&req.ctx, &req.tenant);
        let kept = req.user.and_then(|u| self.kept.get(u, ctx.now_ms));
        if req.user.is_some() && kept.is_none() {
            self.count_kept("none");
        }
        let fetched = self.fetch(path, None).await;
        let Some(kept) = kept else {
            return Ok(self.rank_frame(FrameKind::Preliminary, &fetched?, ctx, tenant).await);
        };
        // A merged or kept bundle is ranked once: sent to the guest, not kept loaded there.
        let (local, outcome) = match &fetched {
            Ok(regional) => {
                let t = Instant::now();
                match kept::merged(&kept, &regional.bundle, regional.facts, ctx.now_ms) {
                    Some((bytes, facts)) => {
                        let fetch_ms = regional.fetch_ms + t.elapsed().as_secs_f64() * 1e3;
                        let merged =
                            Fetched { bundle: bytes, facts, status: regional.status, fetch_ms, keep_loaded: false };
                        (merged, "merged")
                    }
                    None => (regional.clone(), "mismatch"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "no regional bundle; the preliminary frame ranks the user's kept bundle alone");
                let (bundle, facts, status) = (kept.bytes.clone(), kept.facts, crate::cache::Status::Stale);
                (Fetched { bundle, facts, status, fetch_ms: 0.0, keep_loaded: false }, "alone")
            }
        };
        self.count_kept(outcome);
        let mut frame = self.rank_frame(FrameKind::Preliminary, &local, ctx, tenant).await;
        if outcome != "mismatch" {
            frame.kept_bundle = Some(kept.facts.digest);
        }
        Ok(frame)
    }

    fn refine(self: &Arc<Self>, path: String, token: String, req: &FeedRequest) -> Refinement {
        let (this, ctx, tenant, user) = (self.clone(), req.ctx.clone(), req.tenant.clone(), req.user);
        tokio::spawn(async move {
            let fetched = this.fetch(&path, Some(&token)).await;
            if let Some(user) = user {
                match &fetched {
                    Ok(f) if this.kept.keep(user, &f.bundle, f.facts) => this.count_kept("stored"),
                    Err(CacheError::Upstream { status: 401 | 403 | 404, .. }) => {
                        this.kept.forget(user);
                        this.count_kept("forgotten");
                    }
                    _ => {}
                }
            }
            Ok(this.rank_frame(FrameKind::Refined, &fetched?, &ctx, &tenant).await)
        })
    }

    fn count_kept(&self, outcome: &str) {
        self.kept_outcomes.with_label_values(&[outcome]).inc();
    }

    fn count(&self, answered: Answered) {
        self.answers.with_label_values(&[answered.label()]).inc();
    }

    /// One frame: the refined one if it is ready within `left`, else the
    /// preliminary one.
    async fn within(
        &self,
        left: Duration,
        prelim: Result<Frame, CacheError>,
        refined: Option<Refinement>,
        shown: usize,
        k: usize,
    ) -> Result<Frame, FeedError> {
        let refined = match refined {
            None => None,
            Some(mut handle) => match tokio::time::timeout(left, &mut handle).await {
                Ok(Ok(Ok(f))) => Some(f),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "personalized bundle unavailable; answering with the preliminary ranking");
                    None
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "refinement task failed");
                    None
                }
                Err(_) => {
                    // Past the deadline the answer is preliminary; the refinement
                    // would only load the origin for nobody.
                    handle.abort();
                    None
                }
            },
        };
        match (prelim, refined) {
            (p, Some(mut f)) => {
                self.count(Answered::Refined);
                f.merge_after(p.as_ref().ok(), shown, k);
                Ok(f)
            }
            (Ok(p), None) => {
                self.count(Answered::Preliminary);
                Ok(p)
            }
            (Err(e), None) => {
                self.count(Answered::Unavailable);
                tracing::warn!(error = %e, "no bundle for the feed");
                Err(FeedError::Unavailable(client_error(&e)))
            }
        }
    }

    /// The NDJSON stream: the preliminary frame now, the refined one (merged)
    /// when it is ready. A client that leaves stops the refinement.
    fn stream(
        self: &Arc<Self>,
        prelim: Result<Frame, CacheError>,
        refined: Option<Refinement>,
        shown: usize,
        k: usize,
    ) -> ReceiverStream<Result<Bytes, Infallible>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(2);
        let this = self.clone();
        tokio::spawn(async move {
            let prelim = prelim.ok();
            let first = match &prelim {
                Some(f) => line(f),
                None => {
                    line(&FrameFailure { frame: FrameKind::Preliminary, error: "no regional bundle available".into() })
                }
            };
            let so_far = if prelim.is_some() { Answered::Preliminary } else { Answered::Unavailable };
            if tx.send(Ok(first)).await.is_err() {
                // The client is gone: stop the refinement too.
                if let Some(r) = &refined {
                    r.abort();
                }
                this.count(so_far);
                return;
            }
            let Some(refined) = refined else {
                this.count(so_far);
                return;
            };
            let second = match refined.await {
                Ok(Ok(mut f)) => {
                    f.merge_after(prelim.as_ref(), shown, k);
                    this.count(Answered::Refined);
                    line(&f)
                }
                Ok(Err(e)) => {
                    this.count(so_far);
                    line(&FrameFailure { frame: FrameKind::Refined, error: client_error(&e) })
                }
                Err(e) => {
                    this.count(so_far);
                    tracing::error!(error = %e, "refinement task failed");
                    line(&FrameFailure { frame: FrameKind::Refined, error: "the refinement failed".into() })
                }
            };
            let _ = tx.send(Ok(second)).await;
        });
        ReceiverStream::new(rx)
    }
}

/// One NDJSON line.
fn line<T: serde::Serialize>(v: &T) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a feed frame does not serialize");
        br#"{"error": "a frame could not be serialized"}"#.to_vec()
    });
    out.push(b'\n');
    Bytes::from(out)
}

/// A frame's failure as the client sees it: the origin's own answer for a
/// 4xx (an expired token, say), a generic line for an unreachable origin
/// (whose address stays in the log).
fn client_error(e: &CacheError) -> String {
    match e {
        CacheError::Upstream { status, body } => format!("the origin answered {status}: {body}"),
        CacheError::Origin(_) => "the origin is unavailable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgewise_wire::{FrameItem, RankedBy, Timings};

    fn frame(kind: FrameKind, ids: &[u64]) -> Frame {
        Frame {
            frame: kind,
            items: ids.iter().map(|&id| FrameItem { id, score: 0.5 }).collect(),
            ranked_by: RankedBy::Guest,
            bundle_digest: edgewise_core::Digest::of(b"bundle"),
            bundle_cache: edgewise_wire::CacheStatus::Hit,
            model: None,
            timings_ms: Timings { fetch: 0.0, rank: 0.0 },
            merged: None,
            kept_bundle: None,
        }
    }

    #[test]
    fn shown_preliminary_items_keep_their_places() {
        let p = frame(FrameKind::Preliminary, &[1, 2, 3, 4]);
        let mut r = frame(FrameKind::Refined, &[9, 3, 8, 1]);
        r.merge_after(Some(&p), 2, 4);
        let merged = r.merged.expect("merged");
        assert_eq!(&merged[..2], &[1, 2]);
        assert_eq!(merged.len(), 4);
        let mut without = frame(FrameKind::Refined, &[9, 3]);
        without.merge_after(None, 2, 2);
        assert_eq!(without.merged.as_deref(), Some(&[9, 3][..]), "no preliminary frame: the refined order");
    }

    #[test]
    fn lines_are_one_json_document_each() {
        let l = line(&FrameFailure { frame: FrameKind::Refined, error: "the origin is unavailable".into() });
        assert_eq!(&l[..], &b"{\"frame\":\"refined\",\"error\":\"the origin is unavailable\"}\n"[..]);
        let v: serde_json::Value = serde_json::from_slice(&line(&frame(FrameKind::Preliminary, &[5]))).expect("json");
        assert_eq!((v["frame"].as_str(), v["ranked_by"].as_str()), (Some("preliminary"), Some("guest")));
    }
}
