//! The feed within one request: the regional bundle (and, for a signed-in
//! user, their own) from the origin, the model each names (verified by
//! sha256 and decoded once per request), the ranking by the linked
//! `edgewise-core`, the retrieval order when the model or the ranking fails,
//! the stable merge, and the answer: one JSON frame, or NDJSON lines,
//! serialized by `edgewise_wire::Frame` as the Rust edge does.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edgewise_core::abi::{decode_context, encode_context};
use edgewise_core::rank::{RankContext, RankOutput, Ranker};
use edgewise_core::{Bundle, Digest, Model};
use edgewise_wire::{CacheStatus, Frame, FrameFailure, FrameItem, FrameKind, ModelManifest, RankedBy, Timings, paths};

use crate::origin::{Origin, OriginError, OriginResponse};
use crate::request::{Call, FeedBody, FeedRequest};
use crate::{Answer, HttpError};

/// Largest bundle taken from the origin.
pub const MAX_BUNDLE_BYTES: usize = 32 << 20;
/// Largest model taken from the origin.
pub const MAX_MODEL_BYTES: usize = 16 << 20;
/// Largest model manifest taken from the origin.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// The settings, from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `EDGEWISE_ORIGIN` (and `EDGEWISE_API_KEY`).
    pub origin: Origin,
    /// `EDGEWISE_CANDIDATES`: candidates asked of the origin for each bundle.
    pub candidates: usize,
    /// `EDGEWISE_REFINE_DEADLINE_MS`: how long a JSON answer waits for the refined frame.
    pub refine_deadline: Duration,
    /// `EDGEWISE_MAX_CLOCK_SKEW_MS`: how far a body's `now_ms` may be from the clock.
    pub max_clock_skew_ms: u64,
}

impl Config {
    /// Reads the environment; a missing origin or a bad number is a 500 naming the variable.
    pub fn from_env() -> Result<Self, HttpError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let fail = |m: String| HttpError::new(500, m);
        let url = var("EDGEWISE_ORIGIN").ok_or_else(|| {
            fail("EDGEWISE_ORIGIN is not set: the component needs the origin's URL (wasmtime serve -S cli --env EDGEWISE_ORIGIN=http://…)".into())
        })?;
        let mut origin = Origin::parse(&url).map_err(|e| fail(format!("EDGEWISE_ORIGIN: {e}")))?;
        origin.api_key = var("EDGEWISE_API_KEY");
        let num = |name: &str, default: u64, max: u64| -> Result<u64, HttpError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| fail(format!("{name}={v:?} is not a number in 0..={max}"))),
            }
        };
        Ok(Config {
            origin,
            candidates: num("EDGEWISE_CANDIDATES", 300, 100_000)? as usize,
            refine_deadline: Duration::from_millis(num("EDGEWISE_REFINE_DEADLINE_MS", 150, 600_000)?),
            max_clock_skew_ms: num("EDGEWISE_MAX_CLOCK_SKEW_MS", 3_600_000, u64::MAX)?,
        })
    }
}

/// What one request spent, for `Server-Timing`.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    origin_ms: f64,
    model_ms: f64,
    rank_ms: f64,
}

/// Models verified and decoded during this request, by digest.
#[derive(Default)]
struct Models {
    have: Vec<(Digest, Model)>,
}

impl Models {
    /// Model `digest` (the origin's current one when `None`): fetched,
    /// verified against its sha256 and decoded, once per request.
    fn get(&mut self, origin: &Origin, digest: Option<Digest>, spent: &mut Spent) -> Result<usize, String> {
        let digest = match digest {
            Some(d) => d,
            None => {
                let m = fetch(origin, paths::MODEL_CURRENT, None, MAX_MANIFEST_BYTES, spent)
                    .map_err(|e| format!("model manifest: {}", e.detail()))?;
                serde_json::from_slice::<ModelManifest>(&m.body)
                    .map_err(|e| format!("the model manifest is not valid: {e}"))?
                    .digest
            }
        };
        if let Some(i) = self.have.iter().position(|(d, _)| *d == digest) {
            return Ok(i);
        }
        let served = fetch(origin, &paths::model(&digest), None, MAX_MODEL_BYTES, spent)
            .map_err(|e| format!("model {digest}: {}", e.detail()))?;
        let t = Instant::now();
        let actual = Digest::of(&served.body);
        if actual != digest {
            return Err(format!("model {digest} failed verification: its sha256 is {actual}"));
        }
        let model = Model::decode(&served.body).map_err(|e| format!("model {digest}: invalid model: {e}"))?;
        spent.model_ms += t.elapsed().as_secs_f64() * 1e3;
        self.have.push((digest, model));
        Ok(self.have.len() - 1)
    }
}

fn fetch(
    origin: &Origin,
    path: &str,
    token: Option<&str>,
    max: usize,
    spent: &mut Spent,
) -> Result<OriginResponse, OriginError> {
    let r = origin.start(path, token, max)?.wait(None)?;
    let r = r.ok_or_else(|| OriginError::Refused("no answer".into()))?;
    spent.origin_ms += r.ms;
    Ok(r)
}

/// The bundle's rows in retrieval order (the fallback ranking every edge
/// shares, [`edgewise_wire::feed::retrieval_order`]).
pub fn retrieval_order(bundle: &[u8], ctx: &RankContext) -> Vec<FrameItem> {
    Bundle::decode(bundle).map(|b| edgewise_wire::feed::retrieval_order(&b, ctx)).unwrap_or_default()
}

/// Ranks `bundle` as the guest would: the context through its `EWCX`
/// encoding (so every field is what the guest decodes), the bundle checked
/// in full unless it already was.
fn rank(
    model: &Model,
    bundle: &[u8],
    ctx: &RankContext,
    verified: bool,
    ranker: &mut Ranker,
) -> Result<Vec<FrameItem>, String> {
    let mut wire = Vec::new();
    encode_context(&RankContext { checksum_verified: verified, ..ctx.clone() }, &mut wire);
    let mut decoded = RankContext::default();
    decode_context(&wire, &mut decoded).map_err(|e| format!("invalid context: {e}"))?;
    let b = if decoded.checksum_verified { Bundle::decode_prechecked(bundle) } else { Bundle::decode(bundle) }
        .map_err(|e| format!("invalid bundle: {e}"))?;
    let mut out = RankOutput::default();
    ranker.rank(model, &b, &decoded, &mut out).map_err(|e| format!("cannot rank: {e}"))?;
    Ok(out.items.iter().map(|i| FrameItem { id: i.id, score: i.score }).collect())
}

/// One fetched bundle into one frame.
fn frame(
    cfg: &Config,
    served: OriginResponse,
    kind: FrameKind,
    ctx: &RankContext,
    models: &mut Models,
    ranker: &mut Ranker,
    spent: &mut Spent,
) -> Frame {
    let t1 = Instant::now();
    let bundle = served.body;
    let header = Bundle::decode(&bundle).ok().map(|b| *b.header());
    let verified = header.is_some();
    let bundle_digest = Digest::of(&bundle);
    let fallback = |ctx: &RankContext| retrieval_order(&bundle, ctx);
    let (items, ranked_by, model) = match models.get(&cfg.origin, header.and_then(|h| h.model_digest), spent) {
        Err(e) => {
            eprintln!("edgewise-wasi-http: no usable model ({e}); falling back to retrieval order");
            (fallback(ctx), RankedBy::RetrievalOrder, None)
        }
        Ok(i) => {
            let (digest, model) = &models.have[i];
            let t = Instant::now();
            let r = rank(model, &bundle, ctx, verified, ranker);
            spent.rank_ms += t.elapsed().as_secs_f64() * 1e3;
            match r {
                Ok(items) => (items, RankedBy::Guest, Some(*digest)),
                Err(e) => {
                    eprintln!("edgewise-wasi-http: ranking failed ({e}); falling back to retrieval order");
                    (fallback(ctx), RankedBy::RetrievalOrder, Some(*digest))
                }
            }
        }
    };
    Frame {
        frame: kind,
        items,
        ranked_by,
        bundle_digest,
        // Nothing is stored between requests: every bundle came from the origin.
        bundle_cache: CacheStatus::Miss,
        model,
        timings_ms: Timings { fetch: served.ms, rank: t1.elapsed().as_secs_f64() * 1e3 },
        merged: None,
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| br#"{"error":"a frame could not be serialized"}"#.to_vec())
}

/// A failure as the client sees it in an NDJSON line or a 503.
fn client_error(e: &OriginError) -> String {
    match e {
        OriginError::Status { status, body } => format!("the origin answered {status}: {body}"),
        OriginError::TooLarge { .. } => e.to_http().message,
        _ => "the origin is unavailable".into(),
    }
}

/// The parsed request: the query map, the user's token, and the rest.
pub struct Parsed {
    /// The query, parameters once each.
    pub query: std::collections::HashMap<String, String>,
    /// The Bearer token of a feed for a user.
    pub token: Option<String>,
}

/// The guard: the query, parsed strictly, and the user's token (before the body is read).
pub fn guard(call: &Call) -> Result<Parsed, HttpError> {
    let query = crate::request::strict_query(call.query.as_deref())?;
    let token = crate::request::user_token(&query, call.authorization.as_deref())?;
    Ok(Parsed { query, token })
}

/// Answers a feed request.
pub fn answer(call: Call, parsed: Parsed) -> Result<Answer, HttpError> {
    let start = Instant::now();
    let ndjson = call.accept.as_deref().is_some_and(|a| a.contains(edgewise_wire::media::NDJSON));
    let body = match &call.body {
        Some(b) if !b.is_empty() => Some(FeedBody::parse(b)?),
        _ => None,
    };
    let cfg = Config::from_env()?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let req = FeedRequest::parse(&parsed.query, body, if ndjson { 3 } else { 0 }, now_ms, cfg.max_clock_skew_ms)?;
    let regional = paths::regional_bundle(req.region, cfg.candidates);
    let personal = req.user.map(|u| paths::user_candidates(u, cfg.candidates, Some(req.region)));
    let mut spent = Spent::default();
    // The refinement starts first: the origin builds the personal bundle
    // while the regional one is fetched and ranked.
    let refined = match (req.refine, personal, parsed.token.as_deref()) {
        (true, Some(path), Some(token)) => Some(cfg.origin.start(&path, Some(token), MAX_BUNDLE_BYTES)),
        _ => None,
    };
    let mut models = Models::default();
    let mut ranker = Ranker::new();
    let k = req.k as usize;
    let prelim = fetch(&cfg.origin, &regional, None, MAX_BUNDLE_BYTES, &mut spent)
        .map(|served| frame(&cfg, served, FrameKind::Preliminary, &req.ctx, &mut models, &mut ranker, &mut spent));
    if let Err(e) = &prelim {
        eprintln!("edgewise-wasi-http: regional bundle {regional}: {}", e.detail());
    }
    let deadline = if ndjson { None } else { Some(cfg.refine_deadline.saturating_sub(start.elapsed())) };
    let refined: Option<Result<Frame, OriginError>> = refined.map(|pending| {
        let served = pending.and_then(|p| p.wait(deadline))?;
        let served = served.ok_or_else(|| OriginError::Refused("past the refine deadline".into()))?;
        spent.origin_ms += served.ms;
        let mut f = frame(&cfg, served, FrameKind::Refined, &req.ctx, &mut models, &mut ranker, &mut spent);
        f.merge_after(prelim.as_ref().ok(), req.shown, k);
        Ok(f)
    });
    let timing = |spent: &Spent| {
        format!(
            "origin;dur={:.3}, model;dur={:.3}, rank;dur={:.3}, total;dur={:.3}",
            spent.origin_ms,
            spent.model_ms,
            spent.rank_ms,
            start.elapsed().as_secs_f64() * 1e3
        )
    };
    if ndjson {
        let mut out = match &prelim {
            Ok(f) => json(f),
            Err(_) => {
                json(&FrameFailure { frame: FrameKind::Preliminary, error: "no regional bundle available".into() })
            }
        };
        out.push(b'\n');
        if let Some(r) = &refined {
            out.extend(match r {
                Ok(f) => json(f),
                Err(e) => json(&FrameFailure { frame: FrameKind::Refined, error: client_error(e) }),
            });
            out.push(b'\n');
        }
        return Ok(Answer {
            status: 200,
            headers: vec![("content-type", edgewise_wire::media::NDJSON.into()), ("server-timing", timing(&spent))],
            body: out,
        });
    }
    let (frame, preliminary) = match (prelim, refined) {
        (_, Some(Ok(f))) => (f, false),
        (Ok(p), r) => {
            if let Some(Err(e)) = r {
                eprintln!(
                    "edgewise-wasi-http: personal bundle unavailable ({}); answering with the preliminary ranking",
                    e.detail()
                );
            }
            (p, true)
        }
        (Err(e), _) => return Err(HttpError::new(503, format!("no bundle available: {}", client_error(&e)))),
    };
    let mut headers = vec![("content-type", edgewise_wire::media::JSON.to_string())];
    if preliminary {
        headers.push((edgewise_wire::headers::FEED_FRAME, FrameKind::Preliminary.as_str().to_string()));
    }
    headers.push(("server-timing", timing(&spent)));
    Ok(Answer { status: 200, headers, body: json(&frame) })
}
