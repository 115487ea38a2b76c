//! The feed within one request: the regional bundle (and, for a signed-in
//! user, their own) from the origin, the model each names (verified by
//! sha256 and decoded once per request), the ranking by the linked
//! `edgewise-core`, the retrieval order when the model or the ranking fails,
//! the stable merge, and the answer: one JSON frame, or NDJSON lines (the
//! preliminary one sent before the refined one is waited for), serialized by
//! `edgewise_wire::Frame` as the Rust edge does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use edgewise_core::abi::{decode_context, encode_context};
use edgewise_core::rank::{RankContext, RankOutput, Ranker};
use edgewise_core::{Bundle, Digest, Model};
use edgewise_wire::{Frame, FrameFailure, FrameItem, FrameKind, ModelManifest, RankedBy, Timings, paths};

use crate::origin::{Origin, OriginError, OriginUrl, Served};
use crate::request::{Call, FeedBody, FeedRequest};
use crate::{HttpError, Reply};

/// Largest bundle taken from the origin.
pub const MAX_BUNDLE_BYTES: usize = 32 << 20;
/// Largest model taken from the origin.
pub const MAX_MODEL_BYTES: usize = 16 << 20;
/// Largest model manifest taken from the origin.
pub const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// The settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `origin`: the origin's base URL.
    pub origin: OriginUrl,
    /// `api_key`: sent to the origin as `X-Api-Key` when set.
    pub api_key: Option<String>,
    /// `candidates`: candidates asked of the origin for each bundle (300).
    pub candidates: usize,
    /// `refine_deadline_ms`: how long a JSON answer waits for the refined frame (150).
    pub refine_deadline: Duration,
    /// `max_clock_skew_ms`: how far a body's `now_ms` may be from the clock (3 600 000).
    pub max_clock_skew_ms: u64,
}

impl Config {
    /// The settings by their short names (`origin`, `api_key`, `candidates`,
    /// `refine_deadline_ms`, `max_clock_skew_ms`) from `get`; `show` names a
    /// setting in an error as its platform spells it (an environment
    /// variable, a config-store key). A missing origin or a bad number is a
    /// 500 that names it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>, show: impl Fn(&str) -> String) -> Result<Self, HttpError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let fail = |m: String| HttpError::new(500, m);
        let url = var("origin")
            .ok_or_else(|| fail(format!("{} is not set: the edge needs the origin's URL", show("origin"))))?;
        let origin = OriginUrl::parse(&url).map_err(|e| fail(format!("{}: {e}", show("origin"))))?;
        let num = |name: &str, default: u64, max: u64| -> Result<u64, HttpError> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| fail(format!("{}={v:?} is not a number in 0..={max}", show(name)))),
            }
        };
        Ok(Config {
            origin,
            api_key: var("api_key"),
            candidates: num("candidates", 300, 100_000)? as usize,
            refine_deadline: Duration::from_millis(num("refine_deadline_ms", 150, 600_000)?),
            max_clock_skew_ms: num("max_clock_skew_ms", 3_600_000, u64::MAX)?,
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

/// Models verified and decoded during this request, by digest, and the
/// origin's current one once asked.
#[derive(Default)]
struct Models {
    have: Vec<(Digest, Model)>,
    current: Option<Digest>,
}

impl Models {
    /// Model `digest` (the origin's current one when `None`): fetched,
    /// verified against its sha256 and decoded, once per request.
    fn get<O: Origin>(&mut self, origin: &mut O, digest: Option<Digest>, spent: &mut Spent) -> Result<usize, String> {
        let digest = match digest.or(self.current) {
            Some(d) => d,
            None => {
                let m = shared(origin, paths::MODEL_CURRENT, MAX_MANIFEST_BYTES, spent)
                    .map_err(|e| format!("model manifest: {}", e.detail()))?;
                let d = serde_json::from_slice::<ModelManifest>(&m.body)
                    .map_err(|e| format!("the model manifest is not valid: {e}"))?
                    .digest;
                self.current = Some(d);
                d
            }
        };
        if let Some(i) = self.have.iter().position(|(d, _)| *d == digest) {
            return Ok(i);
        }
        let served = shared(origin, &paths::model(&digest), MAX_MODEL_BYTES, spent)
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

fn shared<O: Origin>(origin: &mut O, path: &str, max: usize, spent: &mut Spent) -> Result<Served, OriginError> {
    let r = origin.shared(path, max)?;
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

/// One request's ranking state: the models it has verified and the ranker's buffers.
struct Ranking<'o, O> {
    origin: &'o mut O,
    models: Models,
    ranker: Ranker,
    spent: Spent,
}

impl<O: Origin> Ranking<'_, O> {
    /// One fetched bundle into one frame.
    fn frame(&mut self, served: Served, kind: FrameKind, ctx: &RankContext) -> Frame {
        let t1 = Instant::now();
        let bundle = served.body;
        let header = Bundle::decode(&bundle).ok().map(|b| *b.header());
        let verified = header.is_some();
        let bundle_digest = Digest::of(&bundle);
        let fallback = |ctx: &RankContext| retrieval_order(&bundle, ctx);
        let (items, ranked_by, model) =
            match self.models.get(self.origin, header.and_then(|h| h.model_digest), &mut self.spent) {
                Err(e) => {
                    eprintln!("edgewise: no usable model ({e}); falling back to retrieval order");
                    (fallback(ctx), RankedBy::RetrievalOrder, None)
                }
                Ok(i) => {
                    let (digest, model) = &self.models.have[i];
                    let t = Instant::now();
                    let r = rank(model, &bundle, ctx, verified, &mut self.ranker);
                    self.spent.rank_ms += t.elapsed().as_secs_f64() * 1e3;
                    match r {
                        Ok(items) => (items, RankedBy::Guest, Some(*digest)),
                        Err(e) => {
                            eprintln!("edgewise: ranking failed ({e}); falling back to retrieval order");
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
            bundle_cache: served.cache,
            model,
            timings_ms: Timings { fetch: served.ms, rank: t1.elapsed().as_secs_f64() * 1e3 },
            merged: None,
            kept_bundle: None,
        }
    }

    fn timing(&self, start: Instant) -> String {
        format!(
            "origin;dur={:.3}, model;dur={:.3}, rank;dur={:.3}, total;dur={:.3}",
            self.spent.origin_ms,
            self.spent.model_ms,
            self.spent.rank_ms,
            start.elapsed().as_secs_f64() * 1e3
        )
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|_| br#"{"error":"a frame could not be serialized"}"#.to_vec())
}

fn line<T: serde::Serialize>(v: &T) -> Vec<u8> {
    let mut out = json(v);
    out.push(b'\n');
    out
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
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The query, parameters once each.
    pub query: HashMap<String, String>,
    /// The Bearer token of a feed for a user.
    pub token: Option<String>,
}

/// The guard: the query, parsed strictly, and the user's token — checked
/// before the body is read.
pub fn guard(call: &Call) -> Result<Parsed, HttpError> {
    let query = crate::request::strict_query(call.query.as_deref())?;
    let token = crate::request::user_token(&query, call.authorization.as_deref())?;
    Ok(Parsed { query, token })
}

/// Answers a feed request at the edge's clock `now_ms` into `reply`. An
/// `Err` means nothing was sent: the caller answers with
/// [`HttpError::answer`].
pub fn answer<O: Origin>(
    call: Call,
    parsed: Parsed,
    cfg: &Config,
    now_ms: u64,
    origin: &mut O,
    reply: &mut impl Reply,
) -> Result<(), HttpError> {
    let start = Instant::now();
    let ndjson = call.accept.as_deref().is_some_and(|a| a.contains(edgewise_wire::media::NDJSON));
    let body = match &call.body {
        Some(b) if !b.is_empty() => Some(FeedBody::parse(b)?),
        _ => None,
    };
    let req = FeedRequest::parse(&parsed.query, body, if ndjson { 3 } else { 0 }, now_ms, cfg.max_clock_skew_ms)?;
    let regional = paths::regional_bundle(req.region, cfg.candidates);
    let personal = req.user.map(|u| paths::user_candidates(u, cfg.candidates, Some(req.region)));
    // The refinement starts first: the origin builds the personal bundle
    // while the regional one is fetched and ranked.
    let refined = match (req.refine, personal, parsed.token.as_deref()) {
        (true, Some(path), Some(token)) => Some(origin.start_personal(&path, token, MAX_BUNDLE_BYTES)),
        _ => None,
    };
    let mut r = Ranking { origin, models: Models::default(), ranker: Ranker::new(), spent: Spent::default() };
    let k = req.k as usize;
    let prelim = shared(r.origin, &regional, MAX_BUNDLE_BYTES, &mut r.spent)
        .map(|served| r.frame(served, FrameKind::Preliminary, &req.ctx));
    if let Err(e) = &prelim {
        eprintln!("edgewise: regional bundle {regional}: {}", e.detail());
    }
    let refine = |r: &mut Ranking<'_, O>, deadline: Option<Duration>| {
        refined.map(|pending| -> Result<Frame, OriginError> {
            let served = pending.and_then(|p| r.origin.wait(p, deadline))?;
            let served = served.ok_or_else(|| OriginError::Refused("past the refine deadline".into()))?;
            r.spent.origin_ms += served.ms;
            let mut f = r.frame(served, FrameKind::Refined, &req.ctx);
            f.merge_after(prelim.as_ref().ok(), req.shown, k);
            Ok(f)
        })
    };
    if ndjson {
        // The preliminary line goes out now; the refined one when it is ready.
        let first = match &prelim {
            Ok(f) => line(f),
            Err(_) => {
                line(&FrameFailure { frame: FrameKind::Preliminary, error: "no regional bundle available".into() })
            }
        };
        let headers = [("content-type", edgewise_wire::media::NDJSON.to_string()), ("server-timing", r.timing(start))];
        reply.head(200, &headers, &first);
        if let Some(f) = refine(&mut r, None) {
            reply.more(&match f {
                Ok(f) => line(&f),
                Err(e) => line(&FrameFailure { frame: FrameKind::Refined, error: client_error(&e) }),
            });
        }
        return Ok(());
    }
    let deadline = cfg.refine_deadline.saturating_sub(start.elapsed());
    let refined = refine(&mut r, Some(deadline));
    let (frame, preliminary) = match (&prelim, refined) {
        (_, Some(Ok(f))) => (f, false),
        (Ok(p), f) => {
            if let Some(Err(e)) = f {
                eprintln!(
                    "edgewise: personal bundle unavailable ({}); answering with the preliminary ranking",
                    e.detail()
                );
            }
            (p.clone(), true)
        }
        (Err(e), _) => return Err(HttpError::new(503, format!("no bundle available: {}", client_error(e)))),
    };
    let mut headers = vec![("content-type", edgewise_wire::media::JSON.to_string())];
    if preliminary {
        headers.push((edgewise_wire::headers::FEED_FRAME, FrameKind::Preliminary.as_str().to_string()));
    }
    headers.push(("server-timing", r.timing(start)));
    reply.head(200, &headers, &json(&frame));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Collected;
    use edgewise_core::Region;
    use edgewise_wire::CacheStatus;

    const BUNDLE: &[u8] = include_bytes!("../../../core/tests/golden/v1/bundle.ewb");
    const MODEL: &[u8] = include_bytes!("../../../core/tests/golden/v1/model.ewm");
    const NOW: u64 = 1_700_000_000_000;

    /// An origin that answers from a script and counts what was asked.
    #[derive(Default)]
    struct Scripted {
        shared: HashMap<String, Result<Vec<u8>, OriginError>>,
        personal: Option<Result<Vec<u8>, OriginError>>,
        /// The personal answer comes after any deadline.
        late: bool,
        asked: Vec<String>,
        tokens: Vec<String>,
    }

    impl Origin for Scripted {
        type Pending = Result<Vec<u8>, OriginError>;

        fn start_personal(&mut self, path: &str, token: &str, _max: usize) -> Result<Self::Pending, OriginError> {
            self.asked.push(path.to_string());
            self.tokens.push(token.to_string());
            Ok(self.personal.clone().unwrap_or_else(|| Err(OriginError::status(404, b"no script"))))
        }

        fn wait(&mut self, p: Self::Pending, deadline: Option<Duration>) -> Result<Option<Served>, OriginError> {
            if self.late && deadline.is_some() {
                return Ok(None);
            }
            p.map(|body| Some(Served { body, ms: 1.0, cache: CacheStatus::Miss }))
        }

        fn shared(&mut self, path: &str, max: usize) -> Result<Served, OriginError> {
            self.asked.push(path.to_string());
            let body = self.shared.get(path).cloned().unwrap_or_else(|| Err(OriginError::status(404, b"no script")))?;
            if body.len() > max {
                return Err(OriginError::TooLarge { path: path.into(), max });
            }
            Ok(Served { body, ms: 1.0, cache: CacheStatus::Hit })
        }
    }

    fn config() -> Config {
        Config::from_lookup(|n| (n == "origin").then(|| "http://origin.test".to_string()), |n| n.to_string())
            .expect("config")
    }

    /// The golden bundle names no model: the feed asks for the current one.
    fn model_digest() -> Digest {
        Digest::of(MODEL)
    }

    fn origin() -> Scripted {
        let cfg = config();
        let mut o = Scripted::default();
        o.shared.insert(paths::regional_bundle(Region::new(0).expect("region"), cfg.candidates), Ok(BUNDLE.to_vec()));
        let manifest =
            ModelManifest { digest: model_digest(), url: paths::model(&model_digest()), stable: None, canary: None };
        o.shared.insert(paths::MODEL_CURRENT.to_string(), Ok(serde_json::to_vec(&manifest).expect("manifest")));
        o.shared.insert(paths::model(&model_digest()), Ok(MODEL.to_vec()));
        o.personal = Some(Ok(BUNDLE.to_vec()));
        o
    }

    fn call(query: &str, token: Option<&str>, accept: Option<&str>) -> Call {
        Call {
            query: Some(query.to_string()),
            authorization: token.map(|t| format!("Bearer {t}")),
            accept: accept.map(str::to_string),
            body: None,
        }
    }

    fn run(o: &mut Scripted, c: Call) -> Result<Collected, HttpError> {
        let parsed = guard(&c)?;
        let mut out = Collected::default();
        answer(c, parsed, &config(), NOW, o, &mut out)?;
        Ok(out)
    }

    fn header<'a>(a: &'a crate::Answer, name: &str) -> Option<&'a str> {
        a.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The ranking of the golden bundle by the core, called directly.
    fn native(k: u32) -> Vec<FrameItem> {
        let bundle = Bundle::decode(BUNDLE).expect("bundle");
        let model = Model::decode(MODEL).expect("model");
        let mut ctx = RankContext::new(k, NOW);
        ctx.region = Some(Region::new(0).expect("region"));
        let mut out = RankOutput::default();
        Ranker::new().rank(&model, &bundle, &ctx, &mut out).expect("rank");
        out.items.iter().map(|i| FrameItem { id: i.id, score: i.score }).collect()
    }

    #[test]
    fn an_anonymous_feed_is_the_cores_ranking_of_the_regional_bundle() {
        let mut o = origin();
        let out = run(&mut o, call("k=10", None, None)).expect("answer");
        let a = out.answer.expect("sent");
        assert_eq!(a.status, 200);
        let f: Frame = serde_json::from_slice(&a.body).expect("frame");
        assert_eq!((f.frame, f.ranked_by, f.bundle_cache), (FrameKind::Preliminary, RankedBy::Guest, CacheStatus::Hit));
        assert_eq!(f.items, native(10));
        assert_eq!(f.bundle_digest, Digest::of(BUNDLE));
        assert_eq!(f.model, Some(model_digest()));
        assert!(header(&a, "server-timing").is_some_and(|t| t.contains("total;dur=")));
        assert_eq!(o.asked.len(), 3, "the bundle, the manifest and the model, nothing else: {:?}", o.asked);
    }

    #[test]
    fn a_signed_in_feed_refines_with_the_users_bundle_and_verifies_the_model_once() {
        let mut o = origin();
        let out = run(&mut o, call("k=10&user=7", Some("tok"), None)).expect("answer");
        let a = out.answer.expect("sent");
        let f: Frame = serde_json::from_slice(&a.body).expect("frame");
        assert_eq!(f.frame, FrameKind::Refined);
        assert_eq!(header(&a, edgewise_wire::headers::FEED_FRAME), None);
        assert_eq!(o.tokens, ["tok"], "the token goes to the origin with the personal request");
        let models = o.asked.iter().filter(|p| p.starts_with("/v1/models/")).count();
        assert_eq!(models, 2, "one manifest and one model fetch for both frames: {:?}", o.asked);
        assert_eq!(o.asked[0], paths::user_candidates(7, 300, Some(Region::new(0).expect("region"))), "started first");
    }

    #[test]
    fn a_late_refinement_answers_json_with_the_preliminary_frame() {
        let mut o = origin();
        o.late = true;
        let a = run(&mut o, call("k=5&user=7", Some("tok"), None)).expect("answer").answer.expect("sent");
        let f: Frame = serde_json::from_slice(&a.body).expect("frame");
        assert_eq!(f.frame, FrameKind::Preliminary);
        assert_eq!(header(&a, edgewise_wire::headers::FEED_FRAME), Some("preliminary"));
    }

    #[test]
    fn ndjson_sends_the_preliminary_line_before_the_refined_one() {
        let mut o = origin();
        let out = run(&mut o, call("k=10&user=7", Some("tok"), Some(edgewise_wire::media::NDJSON))).expect("answer");
        assert_eq!(out.writes, 2, "two writes: the preliminary line, then the refined one");
        let a = out.answer.expect("sent");
        let lines: Vec<Frame> = a
            .body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("frame"))
            .collect();
        assert_eq!(lines.iter().map(|f| f.frame).collect::<Vec<_>>(), [FrameKind::Preliminary, FrameKind::Refined]);
        let merged = lines[1].merged.as_ref().expect("the refined frame is merged");
        let shown: Vec<u64> = lines[0].items[..3].iter().map(|i| i.id).collect();
        assert_eq!(&merged[..3], &shown[..], "the three shown items keep their places");
    }

    #[test]
    fn a_model_that_fails_verification_falls_back_to_retrieval_order() {
        let mut o = origin();
        let mut bad = MODEL.to_vec();
        bad[40] ^= 1;
        o.shared.insert(paths::model(&model_digest()), Ok(bad));
        let a = run(&mut o, call("k=10", None, None)).expect("answer").answer.expect("sent");
        let f: Frame = serde_json::from_slice(&a.body).expect("frame");
        assert_eq!((f.ranked_by, f.model), (RankedBy::RetrievalOrder, None));
        let mut ctx = RankContext::new(10, NOW);
        ctx.region = Some(Region::new(0).expect("region"));
        assert_eq!(f.items, retrieval_order(BUNDLE, &ctx));
    }

    #[test]
    fn without_a_regional_bundle_json_is_503_and_ndjson_says_so_in_its_line() {
        let mut o = Scripted::default();
        let e = run(&mut o, call("k=10", None, None)).expect_err("no bundle");
        assert_eq!(e.status, 503);
        let mut o = Scripted::default();
        let out = run(&mut o, call("k=10", None, Some(edgewise_wire::media::NDJSON))).expect("answer");
        let a = out.answer.expect("sent");
        let v: serde_json::Value = serde_json::from_slice(a.body.trim_ascii_end()).expect("one line");
        assert_eq!(v["error"], "no regional bundle available");
    }

    #[test]
    fn refusals_come_before_any_origin_request() {
        let mut o = origin();
        let e = run(&mut o, call("user=7", None, None)).expect_err("no token");
        assert_eq!(e.status, 401);
        assert!(e.headers.iter().any(|(n, v)| *n == "www-authenticate" && v == "Bearer"));
        for q in ["k=0", "k=1&k=2", "region=99", "frobnicate=1"] {
            assert_eq!(run(&mut o, call(q, None, None)).expect_err(q).status, 400, "{q}");
        }
        assert!(o.asked.is_empty(), "{:?}", o.asked);
    }

    #[test]
    fn settings_are_checked_and_named_as_the_platform_spells_them() {
        let e = Config::from_lookup(|_| None, |n| format!("EDGEWISE_{}", n.to_uppercase())).expect_err("no origin");
        assert!(e.message.contains("EDGEWISE_ORIGIN"), "{}", e.message);
        let get = |n: &str| match n {
            "origin" => Some("http://o".to_string()),
            "candidates" => Some("lots".to_string()),
            _ => None,
        };
        let e = Config::from_lookup(get, |n| n.to_string()).expect_err("bad number");
        assert!(e.message.starts_with("candidates=\"lots\""), "{}", e.message);
    }
}
