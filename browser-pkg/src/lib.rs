//! # edgewise-browser
//!
//! The npm package `edgewise`: `edgewise-core` compiled for the browser with
//! wasm-bindgen (the only crate allowed to depend on it), wrapped by the
//! JavaScript in `browser-pkg/js/` (with TypeScript types). `cargo xtask npm`
//! builds and packs it.
//!
//! This crate is the package's low-level `Core`: the same code paths the
//! zero-import guest and the native core run ([`edgewise_core::abi::Engine`]),
//! so its `EWRS` results are byte-identical to theirs. The byte formats are
//! the core's: bundles, models, `EWCX` contexts (built by [`encode_context`]),
//! `EWRS` results and session states.
//!
//! | export | what |
//! |---|---|
//! | `Core.loadModel(bytes)` | decodes and installs a model; returns its sha256 (hex) |
//! | `Core.rank(bundle, context)` | the `EWRS` bytes |
//! | `Core.quantizedQuery(bundle, context)` | the int8 query a GPU scan needs, after every check `rank` makes |
//! | `Core.rankWithDots(bundle, context, dots)` | `rank` finished from dot products computed on the GPU (same bytes) |
//! | `encodeContext(...)` | an `EWCX` context |
//! | `sessionNew(dim)`, `sessionObserve(...)`, `sessionInfo(state)` | the local session embedding |
//! | `verifyBundle(bytes)` | the bundle's checksum and structure, once, when it enters a cache |
//! | `decodeResult(bytes)` | `EWRS` bytes as items and per-row typed arrays |
//! | `bundleEmbeddings(bytes)` | where the embedding column lies, for a GPU upload |
//! | `bundleUnion(kept, regional, nowMs)` | a kept personal bundle's rows, then the regional rows it lacks: the preliminary frame's candidates |
//! | `experimentAssign`, `teamDraft`, `thompson`, `thompsonShares` | experiments as the origin and the edges decide them: assignment, interleaving, bandit |
//! | `bundleInfo(bytes)` | rows, dimension, the model the bundle names, every row's item id, source mask and creator |
//! | `sourceNames()` | the candidate sources, by source-mask bit |
//! | `sha256(bytes)` | the digest that names models and bundles |
//! | `stableMerge`, `overlapAtK`, `kendallTau` | the core's merge of a preliminary and a refined ranking, and their agreement |
//!
//! Errors are JavaScript `Error`s named `EdgewiseError` with a `code`
//! ([`Code`]); the wrapper turns them into its `EdgewiseError` class.

use edgewise_core::abi::{self, Engine, Status};
use edgewise_core::bundle::{Bundle, SOURCE_NAMES};
use edgewise_core::context::RankContext;
use edgewise_core::experiment;
use edgewise_core::history::History;
use edgewise_core::region::Region;
use edgewise_core::session::{SessionConfig, SessionState, Signal};
use wasm_bindgen::prelude::*;

/// Why a call failed: the `code` of the thrown `EdgewiseError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The model bytes are not a valid model.
    BadModel,
    /// `rank` before `loadModel`.
    NoModel,
    /// The bundle bytes are not a valid bundle (truncated, corrupt, bad checksum).
    BadBundle,
    /// The context is invalid (bad region, non-finite embedding, malformed bytes).
    BadContext,
    /// Bundle, model and context do not fit together (schema, dimensions, dot products).
    Incompatible,
    /// The session state is invalid, or an observation does not fit it.
    BadSession,
    /// An experiment's allocation, ramp or counts are invalid.
    BadExperiment,
}

impl Code {
    /// The code as JavaScript sees it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadModel => "bad-model",
            Self::NoModel => "no-model",
            Self::BadBundle => "bad-bundle",
            Self::BadContext => "bad-context",
            Self::Incompatible => "incompatible",
            Self::BadSession => "bad-session",
            Self::BadExperiment => "bad-experiment",
        }
    }

    fn of(status: Status) -> Self {
        match status {
            Status::BadModel => Self::BadModel,
            Status::NoModel => Self::NoModel,
            Status::BadBundle | Status::BadPointer | Status::NoBundle => Self::BadBundle,
            Status::BadContext => Self::BadContext,
            Status::Incompatible | Status::Ok => Self::Incompatible,
        }
    }
}

/// An `Error` named `EdgewiseError` with `code` set.
fn error(code: Code, message: &str) -> JsValue {
    let e = js_sys::Error::new(message);
    e.set_name("EdgewiseError");
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&e, &JsValue::from_str("code"), &JsValue::from_str(code.as_str()));
    e.into()
}

/// The core: a loaded model and a ranker with its scratch space.
#[wasm_bindgen]
#[derive(Debug, Default)]
pub struct Core {
    engine: Engine,
}

#[wasm_bindgen]
impl Core {
    /// A core with no model.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Core {
        Core::default()
    }

    /// Decodes and installs a model; returns its sha256 (lower-case hex),
    /// which bundles name when they expect it.
    #[wasm_bindgen(js_name = loadModel)]
    pub fn load_model(&mut self, bytes: &[u8]) -> Result<String, JsValue> {
        match self.engine.load_model(bytes) {
            Status::Ok => Ok(self.model_digest().unwrap_or_default()),
            s => Err(error(Code::of(s), self.engine.error())),
        }
    }

    /// The loaded model's sha256 (hex), if a model is loaded.
    #[wasm_bindgen(js_name = modelDigest)]
    pub fn model_digest(&self) -> Option<String> {
        self.engine.model().map(|(_, d)| d.to_hex())
    }

    /// Ranks `bundle` for `context` (an `EWCX` context); returns the `EWRS` bytes.
    pub fn rank(&mut self, bundle: &[u8], context: &[u8]) -> Result<Vec<u8>, JsValue> {
        let status = self.engine.rank(bundle, context);
        self.result(status)
    }

    /// The int8 query that ranking `bundle` for `context` scores rows
    /// against, after every check `rank` makes; what a GPU scan needs.
    #[wasm_bindgen(js_name = quantizedQuery)]
    pub fn quantized_query(&mut self, bundle: &[u8], context: &[u8]) -> Result<Vec<i8>, JsValue> {
        let status = self.engine.quantized_query(bundle, context);
        self.result(status).map(|q| q.into_iter().map(|x| x as i8).collect())
    }

    /// `rank` with `dots[i]` the int8 dot product of `quantizedQuery`'s
    /// query and row `i`, computed elsewhere (the GPU); the same bytes.
    #[wasm_bindgen(js_name = rankWithDots)]
    pub fn rank_with_dots(&mut self, bundle: &[u8], context: &[u8], dots: &[i32]) -> Result<Vec<u8>, JsValue> {
        let status = self.engine.rank_with_dots(bundle, context, dots);
        self.result(status)
    }

    fn result(&self, status: Status) -> Result<Vec<u8>, JsValue> {
        match status {
            Status::Ok => Ok(self.engine.result().to_vec()),
            s => Err(error(Code::of(s), self.engine.error())),
        }
    }
}

/// The version of the byte formats (`EWCX`, `EWRS`) this build speaks.
#[wasm_bindgen(js_name = abiVersion)]
pub fn abi_version() -> u32 {
    abi::ABI_VERSION
}

/// An `EWCX` context. `region`: 0–31, or `undefined` for none. `nowMs`:
/// milliseconds since the Unix epoch. `seen`: item ids not to show again;
/// `blocked`: creator ids; `base`: the user's long-term embedding (empty for
/// anonymous); `session`: a session state from `sessionNew`/`sessionObserve`
/// (empty for none); `prerankKeep`: 0 for the model's; `checksumVerified`:
/// the bundle's checksum was checked when it entered the cache
/// (`verifyBundle`), so ranking checks its structure only; `history`: a
/// stored history from `historyObserve` (empty for none).
#[allow(clippy::too_many_arguments)] // one argument per context field; the JS wrapper takes an object
#[wasm_bindgen(js_name = encodeContext)]
pub fn encode_context(
    k: u32,
    region: Option<u8>,
    now_ms: f64,
    seen: &[u64],
    blocked: &[u32],
    base: &[f32],
    session: &[u8],
    prerank_keep: u32,
    checksum_verified: bool,
    history: &[u8],
) -> Result<Vec<u8>, JsValue> {
    let mut ctx = context(k, region, now_ms, seen, blocked, base, session, prerank_keep, checksum_verified)
        .map_err(|(code, m)| error(code, &m))?;
    ctx.history = decode_history(history).map_err(|(code, m)| error(code, &m))?;
    let mut out = Vec::new();
    abi::encode_context(&ctx, &mut out);
    Ok(out)
}

/// The context behind [`encode_context`], with every value checked.
#[allow(clippy::too_many_arguments)]
fn context(
    k: u32,
    region: Option<u8>,
    now_ms: f64,
    seen: &[u64],
    blocked: &[u32],
    base: &[f32],
    session: &[u8],
    prerank_keep: u32,
    checksum_verified: bool,
) -> Result<RankContext, (Code, String)> {
    let bad = |m: String| (Code::BadContext, m);
    let region = region.map(Region::new).transpose().map_err(|e| bad(e.to_string()))?;
    let now_ms = millis(now_ms).ok_or_else(|| bad(format!("nowMs {now_ms} is not a whole number of ms in 0..2^53")))?;
    if let Some(x) = base.iter().find(|x| !x.is_finite()) {
        return Err(bad(format!("the base embedding holds {x}")));
    }
    let state = decode_session(session)?;
    Ok(RankContext {
        now_ms,
        k,
        region,
        seen: seen.to_vec(),
        blocked_creators: blocked.to_vec(),
        base: base.to_vec(),
        session: state.unwrap_or_else(|| SessionState::new(0)),
        session_config: SessionConfig::default(),
        prerank_keep,
        checksum_verified,
        history: History::new(),
    })
}

/// A JavaScript time in ms as a `u64`: whole, finite, within 0..2^53.
fn millis(ms: f64) -> Option<u64> {
    (ms.is_finite() && ms >= 0.0 && ms.fract() == 0.0 && ms < 9_007_199_254_740_992.0).then_some(ms as u64)
}

/// A session state's bytes (`None` when empty), checked.
fn decode_session(bytes: &[u8]) -> Result<Option<SessionState>, (Code, String)> {
    if bytes.is_empty() {
        return Ok(None);
    }
    let mut s = SessionState::new(0);
    match s.decode_from(bytes) {
        Ok(used) if used == bytes.len() => Ok(Some(s)),
        Ok(used) => Err((Code::BadSession, format!("{} bytes after the session state", bytes.len() - used))),
        Err(e) => Err((Code::BadSession, e.to_string())),
    }
}

/// A fresh session state for embeddings of dimension `dim`.
#[wasm_bindgen(js_name = sessionNew)]
pub fn session_new(dim: usize) -> Vec<u8> {
    SessionState::new(dim).encode()
}

/// The signal a `track` event kind names (`dwellMs` for `dwell`).
fn signal(kind: &str, dwell_ms: u32) -> Option<Signal> {
    Some(match kind {
        "impression" => Signal::Impression,
        "click" => Signal::Click,
        "like" => Signal::Like,
        "skip" => Signal::Skip,
        "hide" => Signal::Hide,
        "dwell" => Signal::Dwell { ms: dwell_ms },
        _ => return None,
    })
}

/// `state` after an interaction of kind `kind` (`impression`, `click`,
/// `like`, `skip`, `hide`, `dwell` with `dwellMs`) with row `row` of `bundle`
/// at `nowMs`: the session embedding moves at once, as the core's session
/// module defines. An empty `state` starts a session of the bundle's dimension.
#[wasm_bindgen(js_name = sessionObserve)]
pub fn session_observe(
    state: &[u8],
    bundle: &[u8],
    row: u32,
    kind: &str,
    dwell_ms: u32,
    now_ms: f64,
) -> Result<Vec<u8>, JsValue> {
    observe(state, bundle, row, kind, dwell_ms, now_ms).map_err(|(code, m)| error(code, &m))
}

fn observe(
    state: &[u8],
    bundle: &[u8],
    row: u32,
    kind: &str,
    dwell_ms: u32,
    now_ms: f64,
) -> Result<Vec<u8>, (Code, String)> {
    let (b, row) = bundle_row(bundle, row)?;
    let signal = signal(kind, dwell_ms).ok_or_else(|| {
        (
            Code::BadSession,
            format!("unknown event kind {kind:?}: expected impression, click, like, skip, hide or dwell"),
        )
    })?;
    let now_ms = millis(now_ms).ok_or_else(|| (Code::BadSession, format!("nowMs {now_ms} is not a time in ms")))?;
    let mut s = decode_session(state)?.unwrap_or_else(|| SessionState::new(b.dim()));
    s.observe_quantized(&SessionConfig::default(), signal, b.embedding(row), b.scale(row), now_ms)
        .map_err(|e| (Code::BadSession, e.to_string()))?;
    Ok(s.encode())
}

/// `bundle` (structure checked) and `row`, which must be one of its rows.
fn bundle_row(bundle: &[u8], row: u32) -> Result<(Bundle<'_>, usize), (Code, String)> {
    let b = Bundle::decode_prechecked(bundle).map_err(|e| (Code::BadBundle, e.to_string()))?;
    let row = row as usize;
    if row >= b.len() {
        return Err((Code::BadSession, format!("row {row} is outside the bundle's {} rows", b.len())));
    }
    Ok((b, row))
}

/// A stored history (`EWHS`), checked; empty bytes are an empty history.
fn decode_history(bytes: &[u8]) -> Result<History, (Code, String)> {
    if bytes.is_empty() {
        return Ok(History::new());
    }
    History::decode(bytes).map_err(|e| (Code::BadContext, format!("history: {e}")))
}

/// `state` (a stored history, empty for none) after an interaction of kind
/// `kind` with row `row` of `bundle` at `nowMs`: a click, like or dwell goes
/// to the front (an earlier entry of the same item goes; at most 64 entries,
/// the oldest dropped), as the origin builds histories; other kinds leave it
/// as it was. A history of another dimension (a retrained catalogue) starts again.
#[wasm_bindgen(js_name = historyObserve)]
pub fn history_observe(state: &[u8], bundle: &[u8], row: u32, kind: &str, now_ms: f64) -> Result<Vec<u8>, JsValue> {
    history_observe_inner(state, bundle, row, kind, now_ms).map_err(|(code, m)| error(code, &m))
}

fn history_observe_inner(
    state: &[u8],
    bundle: &[u8],
    row: u32,
    kind: &str,
    now_ms: f64,
) -> Result<Vec<u8>, (Code, String)> {
    let (b, row) = bundle_row(bundle, row)?;
    let code = match kind {
        "click" => 1,
        "like" => 2,
        "dwell" => 5,
        "impression" | "skip" | "hide" => return Ok(decode_history(state)?.encode()),
        _ => {
            return Err((
                Code::BadSession,
                format!("unknown event kind {kind:?}: expected impression, click, like, skip, hide or dwell"),
            ));
        }
    };
    let now_ms = millis(now_ms).ok_or_else(|| (Code::BadSession, format!("nowMs {now_ms} is not a time in ms")))?;
    let mut h = decode_history(state)?;
    if h.dim() != b.dim() {
        h.clear();
    }
    h.record_quantized(b.id(row), now_ms, code, b.embedding(row), b.scale(row), edgewise_core::history::MAX_HISTORY)
        .map_err(|e| (Code::BadSession, e.to_string()))?;
    Ok(h.encode())
}

/// A stored history's entry count and dimension.
#[wasm_bindgen(js_name = historyInfo)]
pub fn history_info(state: &[u8]) -> Result<Vec<f64>, JsValue> {
    let h = decode_history(state).map_err(|(code, m)| error(code, &m))?;
    Ok(vec![h.len() as f64, h.dim() as f64])
}

/// A session state's dimension, event count and last event time.
#[wasm_bindgen(js_name = sessionInfo)]
pub fn session_info(state: &[u8]) -> Result<Vec<f64>, JsValue> {
    match decode_session(state).map_err(|(code, m)| error(code, &m))? {
        Some(s) => Ok(vec![s.dim() as f64, f64::from(s.events()), s.last_ms() as f64]),
        None => Ok(vec![0.0, 0.0, 0.0]),
    }
}

/// Sets `key` on a plain object (cannot fail on a fresh `Object`).
fn set(o: &js_sys::Object, key: &str, v: impl Into<JsValue>) {
    let _ = js_sys::Reflect::set(o, &JsValue::from_str(key), &v.into());
}

/// Decodes `EWRS` bytes into `{ modelMatch, items, rows }`: `items` is the
/// ranked list (`id` as a BigInt, `row`, `score`, `preScore`, `mainScore`,
/// `mmrPenalty`, `mmrScore`); `rows` explains every bundle row as typed
/// arrays (`outcome` codes, `preScore`, `mainScore`, `calibrated`) plus the
/// outcome names (`outcomes`), so a million rows cost four arrays, not a
/// million objects.
#[wasm_bindgen(js_name = decodeResult)]
pub fn decode_result(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let (r, model_match) =
        abi::decode_result(bytes).map_err(|e| error(Code::BadBundle, &format!("invalid result: {e}")))?;
    let out = js_sys::Object::new();
    set(
        &out,
        "modelMatch",
        match model_match {
            abi::ModelMatch::Any => "any",
            abi::ModelMatch::Match => "match",
            abi::ModelMatch::Mismatch => "mismatch",
        },
    );
    let items = js_sys::Array::new();
    for it in &r.items {
        let o = js_sys::Object::new();
        set(&o, "id", js_sys::BigInt::from(it.id));
        set(&o, "row", it.row);
        set(&o, "score", it.score);
        set(&o, "preScore", it.pre_score);
        set(&o, "mainScore", it.main_score);
        set(&o, "mmrPenalty", it.mmr_penalty);
        set(&o, "mmrScore", it.mmr_score);
        items.push(&o);
    }
    set(&out, "items", items);
    let rows = js_sys::Object::new();
    let outcome: Vec<u8> = r.rows.iter().map(|x| x.outcome as u8).collect();
    let col = |f: fn(&edgewise_core::rank::RowExplain) -> f32| -> js_sys::Float32Array {
        js_sys::Float32Array::from(r.rows.iter().map(f).collect::<Vec<f32>>().as_slice())
    };
    set(&rows, "outcome", js_sys::Uint8Array::from(outcome.as_slice()));
    set(&rows, "preScore", col(|x| x.pre_score));
    set(&rows, "mainScore", col(|x| x.main_score));
    set(&rows, "calibrated", col(|x| x.calibrated));
    set(&out, "rows", rows);
    let names = js_sys::Array::new();
    for code in 0u8..=u8::MAX {
        match edgewise_core::rank::Outcome::from_code(code) {
            Some(o) => names.push(&JsValue::from_str(o.as_str())),
            None => break,
        };
    }
    set(&out, "outcomes", names);
    Ok(out.into())
}

/// Where a bundle's int8 embedding column lies, for a GPU upload:
/// `[rows, dim, start, end]` (byte offsets into the bundle). Checks the
/// bundle's structure (not its checksum: `verifyBundle` does that).
#[wasm_bindgen(js_name = bundleEmbeddings)]
pub fn bundle_embeddings(bytes: &[u8]) -> Result<Vec<u32>, JsValue> {
    let b = Bundle::decode_prechecked(bytes).map_err(|e| error(Code::BadBundle, &e.to_string()))?;
    let (start, end) = b.layout().embeddings;
    Ok(vec![b.len() as u32, b.dim() as u32, start as u32, end as u32])
}

/// What a client needs to know about a bundle, read once when it arrives:
/// `{ rows, dim, scope, createdAtMs, model, ids, sourceMasks, creators }`:
/// `scope` is `regional` or `personal`, `model` is the sha256 (hex) of the
/// model its header names (`undefined`: any model), `ids` the item id of
/// every row (a `BigUint64Array`, row order), `sourceMasks` which sources
/// found each row (bit j: [`source_names`]`[j]`), `creators` each row's
/// creator. Checks the structure (not the checksum).
#[wasm_bindgen(js_name = bundleInfo)]
pub fn bundle_info(bytes: &[u8]) -> Result<JsValue, JsValue> {
    let b = Bundle::decode_prechecked(bytes).map_err(|e| error(Code::BadBundle, &e.to_string()))?;
    let out = js_sys::Object::new();
    set(&out, "rows", b.len() as u32);
    set(&out, "dim", b.dim() as u32);
    let h = b.header();
    set(
        &out,
        "scope",
        match h.scope {
            edgewise_core::Scope::Regional => "regional",
            edgewise_core::Scope::Personal => "personal",
        },
    );
    set(&out, "createdAtMs", h.created_at_ms as f64);
    if let Some(d) = h.model_digest {
        set(&out, "model", d.to_hex());
    }
    let ids: Vec<u64> = (0..b.len()).map(|i| b.id(i)).collect();
    set(&out, "ids", js_sys::BigUint64Array::from(ids.as_slice()));
    let masks: Vec<u8> = (0..b.len()).map(|i| b.source_mask(i)).collect();
    set(&out, "sourceMasks", js_sys::Uint8Array::from(masks.as_slice()));
    let creators: Vec<u32> = (0..b.len()).map(|i| b.creator(i)).collect();
    set(&out, "creators", js_sys::Uint32Array::from(creators.as_slice()));
    Ok(out.into())
}

/// The local candidate set of a preliminary ranking: the rows of `kept` (the
/// user's last personal bundle), then the rows of `regional` that `kept`
/// lacks, as one personal bundle created at `nowMs` that carries `kept`'s
/// user embedding ([`edgewise_core::bundle::union`]). Checks both bundles'
/// structure (not their checksums: they were checked when they arrived);
/// `bad-bundle` when either is not a bundle or the two differ in shape or
/// feature schema (a retrain between them).
#[wasm_bindgen(js_name = bundleUnion)]
pub fn bundle_union(kept: &[u8], regional: &[u8], now_ms: f64) -> Result<Vec<u8>, JsValue> {
    let bad = |what: &str, e: &dyn std::fmt::Display| error(Code::BadBundle, &format!("{what}: {e}"));
    let k = Bundle::decode_prechecked(kept).map_err(|e| bad("the kept bundle", &e))?;
    let g = Bundle::decode_prechecked(regional).map_err(|e| bad("the regional bundle", &e))?;
    let now = millis(now_ms)
        .ok_or_else(|| error(Code::BadContext, &format!("nowMs {now_ms} is not a whole number of ms in 0..2^53")))?;
    edgewise_core::bundle::union(&k, &g, now).map_err(|e| bad("union", &e))
}

/// The variant of `user` in the experiment salted `salt` that enrols
/// `rampBp` basis points of users and splits them by `allocationsBp` (basis
/// points summing to 10000): its index, or -1 for a user not enrolled
/// ([`edgewise_core::experiment::assign`], as the origin and the edges
/// decide it).
#[wasm_bindgen(js_name = experimentAssign)]
pub fn experiment_assign(user: u64, salt: u64, ramp_bp: u32, allocations_bp: &[u32]) -> Result<i32, JsValue> {
    match experiment::assign(user, salt, ramp_bp, allocations_bp) {
        Ok(experiment::Assignment::Outside) => Ok(-1),
        Ok(experiment::Assignment::Variant(i)) => Ok(i32::from(i)),
        Err(e) => Err(error(Code::BadExperiment, &e.to_string())),
    }
}

/// The most items [`team_draft`] interleaves.
const MAX_INTERLEAVED: u32 = 100_000;

/// Team-draft interleaving of rankings `a` and `b` (item ids, best first)
/// into at most `k` items, the coin drawn from `seed`
/// ([`edgewise_core::experiment::team_draft`]): `{ items: BigUint64Array,
/// teams: Uint8Array }`, team 0 being A and 1 being B.
#[wasm_bindgen(js_name = teamDraft)]
pub fn team_draft(a: &[u64], b: &[u64], k: u32, seed: u64) -> Result<JsValue, JsValue> {
    if k > MAX_INTERLEAVED {
        return Err(error(Code::BadExperiment, &format!("k = {k} is above {MAX_INTERLEAVED}")));
    }
    let mut out = Vec::new();
    experiment::team_draft(a, b, k as usize, seed, &mut out);
    let items: Vec<u64> = out.iter().map(|p| p.0).collect();
    let teams: Vec<u8> = out.iter().map(|p| u8::from(p.1 == experiment::Team::B)).collect();
    let o = js_sys::Object::new();
    set(&o, "items", js_sys::BigUint64Array::from(items.as_slice()));
    set(&o, "teams", js_sys::Uint8Array::from(teams.as_slice()));
    Ok(o.into())
}

/// The arms of a bandit from per-variant clicks and exposures, checked.
fn arms(clicks: &[u64], exposures: &[u64]) -> Result<Vec<experiment::Arm>, JsValue> {
    if clicks.len() != exposures.len() || clicks.is_empty() || clicks.len() > experiment::MAX_VARIANTS {
        return Err(error(
            Code::BadExperiment,
            &format!(
                "{} clicks and {} exposures: one of each per variant, 1..={} variants",
                clicks.len(),
                exposures.len(),
                experiment::MAX_VARIANTS
            ),
        ));
    }
    Ok(clicks.iter().zip(exposures).map(|(&c, &e)| experiment::Arm { clicks: c, exposures: e }).collect())
}

/// One Thompson-sampling decision over variants with these clicks and
/// exposures, for `seed`: the chosen variant's index
/// ([`edgewise_core::experiment::thompson`]).
#[wasm_bindgen(js_name = thompson)]
pub fn thompson(clicks: &[u64], exposures: &[u64], seed: u64) -> Result<i32, JsValue> {
    let arms = arms(clicks, exposures)?;
    // At least one arm, so there is a decision.
    Ok(experiment::thompson(&arms, seed).map_or(0, |i| i as i32))
}

/// The most draws [`thompson_shares`] makes.
const MAX_DRAWS: u32 = 1_000_000;

/// The share of traffic Thompson sampling gives each variant over `draws`
/// decisions (seeds `seed`, `seed + 1`, …).
#[wasm_bindgen(js_name = thompsonShares)]
pub fn thompson_shares(clicks: &[u64], exposures: &[u64], draws: u32, seed: u64) -> Result<Vec<f64>, JsValue> {
    if draws > MAX_DRAWS {
        return Err(error(Code::BadExperiment, &format!("draws = {draws} is above {MAX_DRAWS}")));
    }
    Ok(experiment::thompson_shares(&arms(clicks, exposures)?, draws, seed))
}

/// The candidate sources, by bit of a bundle row's source mask
/// (`bundleInfo(...).sourceMasks`): `collaborative`, `content`, `trending`, ….
#[wasm_bindgen(js_name = sourceNames)]
pub fn source_names() -> Vec<String> {
    SOURCE_NAMES.iter().map(|s| (*s).to_string()).collect()
}

/// The sha256 of `bytes` (lower-case hex), the digest that names models and
/// bundles; computed in the core, so it needs no secure context.
#[wasm_bindgen]
pub fn sha256(bytes: &[u8]) -> String {
    edgewise_core::Digest::of(bytes).to_hex()
}

/// [`edgewise_core::merge::stable_merge`]: the first `shown` items of
/// `preliminary` keep their places, the rest comes from `refined` (then the
/// unshown preliminary items), without duplicates, at most `k` ids.
#[wasm_bindgen(js_name = stableMerge)]
pub fn stable_merge(preliminary: &[u64], shown: u32, refined: &[u64], k: u32) -> Vec<u64> {
    let mut out = Vec::new();
    edgewise_core::merge::stable_merge(preliminary, shown as usize, refined, k as usize, &mut out);
    out
}

/// [`edgewise_core::merge::overlap_at_k`]: `|top_k(a) ∩ top_k(b)| / k`.
#[wasm_bindgen(js_name = overlapAtK)]
pub fn overlap_at_k(a: &[u64], b: &[u64], k: u32) -> f32 {
    edgewise_core::merge::overlap_at_k(a, b, k as usize)
}

/// [`edgewise_core::merge::kendall_tau`]: Kendall's τ over the items both
/// rankings hold; `undefined` when they share fewer than two.
#[wasm_bindgen(js_name = kendallTau)]
pub fn kendall_tau(a: &[u64], b: &[u64]) -> Option<f64> {
    edgewise_core::merge::kendall_tau(a, b)
}

/// Checks a bundle's checksum and structure (once, when it enters a cache;
/// later rankings can then pass `checksumVerified`). Returns its row count.
#[wasm_bindgen(js_name = verifyBundle)]
pub fn verify_bundle(bytes: &[u8]) -> Result<u32, JsValue> {
    Bundle::decode(bytes).map(|b| b.len() as u32).map_err(|e| error(Code::BadBundle, &e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_kinds_are_checked() {
        assert_eq!(millis(1_700_000_000_000.0), Some(1_700_000_000_000));
        for bad in [f64::NAN, -1.0, 0.5, f64::INFINITY, 9_007_199_254_740_992.0] {
            assert_eq!(millis(bad), None, "{bad}");
        }
        assert_eq!(signal("dwell", 1500), Some(Signal::Dwell { ms: 1500 }));
        assert_eq!(signal("purchase", 0), None);
        assert_eq!(Code::of(Status::BadBundle).as_str(), "bad-bundle");
    }

    #[test]
    fn contexts_and_sessions_refuse_bad_values() {
        assert!(matches!(context(10, Some(32), 0.0, &[], &[], &[], &[], 0, false), Err((Code::BadContext, _))));
        assert!(matches!(context(10, None, 0.0, &[], &[], &[f32::NAN], &[], 0, false), Err((Code::BadContext, _))));
        assert!(matches!(context(10, None, 0.0, &[], &[], &[], &[1, 2, 3], 0, false), Err((Code::BadSession, _))));
        let mut state = session_new(4);
        state.push(0);
        assert!(matches!(decode_session(&state), Err((Code::BadSession, m)) if m.contains("after")));
        let ok = context(10, Some(3), 5.0, &[1], &[2], &[0.5; 4], &session_new(4), 0, true).expect("context");
        assert_eq!(ok.region, Region::new(3).ok());
    }
}
