// The JavaScript edge adapter: the unchanged zero-import guest
// `edgewise_core.wasm` inside a CDN runtime (Cloudflare Workers / workerd,
// Deno, Vercel's edge runtime), serving `GET|POST /v1/feed` as the Rust edge
// (`edgewise-edge serve`) does.
//
//   const edge = createEdge({ module, origin, fetch, cache });
//   export default { fetch: (req, env, ctx) => edge.fetch(req, ctx) };
//
// `module` is a compiled `WebAssembly.Module` (Workers forbid compiling from
// bytes at run time, so the platform hands it over). One instance is kept per
// isolate; a call that traps drops it, and the next call instantiates a fresh
// one (its allocator may have been interrupted half-way). Regional bundles
// come from the origin through `cache` (a Cache-API-like object: `match`,
// `put`); a user's own bundle is fetched with their Bearer token and never
// stored. Models are fetched by the digest the bundle names (the origin's
// current manifest when it names none) and verified against their sha256
// before the guest sees them. Every input is bounded; every refusal is a 4xx
// `{"error": "…"}` naming the rule, as the Rust edge words it.
//
// No dependencies: WebAssembly, fetch, Response, ReadableStream, crypto.subtle.

/** The guest ABI this adapter speaks (`core::abi::ABI_VERSION`). */
export const ABI_VERSION = 1;
/** The exports every guest has (`core::abi::EXPORTS`). */
export const EXPORTS = [
  'ew_abi_version', 'ew_alloc', 'ew_free', 'ew_load_model', 'ew_rank',
  'ew_result_ptr', 'ew_result_len', 'ew_error_ptr', 'ew_error_len',
];
/** `core::abi::Status` codes, by value. */
export const STATUS = ['Ok', 'BadModel', 'NoModel', 'BadBundle', 'BadContext', 'Incompatible', 'BadPointer'];
/** Most `seen` ids a feed request may carry (`edge-worker` `MAX_SEEN`). */
export const MAX_SEEN = 10_000;
/** The tenant of a request that names none. */
export const DEFAULT_TENANT = 'default';
/** `core::region::REGION_ANY`. */
export const REGION_ANY = 255;

const U64_MAX = 0xffff_ffff_ffff_ffffn;
const U32_MAX = 0xffff_ffff;
const SESSION_MAX_DIM = 4096;
const KNOWN_QUERY = ['user', 'region', 'k', 'shown', 'tenant', 'refine'];
const BODY_FIELDS = ['seen', 'session', 'now_ms'];
const NDJSON = 'application/x-ndjson';
const JSON_TYPE = 'application/json';
const STORED_AT = 'x-edgewise-stored-at';

/** Defaults; each is an option of `createEdge`. */
export const DEFAULTS = Object.freeze({
  refineDeadlineMs: 150,
  candidates: 300,
  maxClockSkewMs: 3_600_000,
  maxBodyBytes: 1 << 20,
  maxBundleBytes: 32 << 20,
  maxModelBytes: 16 << 20,
  maxManifestBytes: 64 << 10,
  maxGuestMemoryBytes: 256 << 20,
  originTimeoutMs: 5_000,
  models: 4,
});

// ---------------------------------------------------------------------------
// Errors.

/** A refusal with an HTTP status; the body is `{"error": message}`. */
export class HttpError extends Error {
  /** @param {number} status @param {string} message @param {Record<string, string>} [headers] */
  constructor(status, message, headers) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.headers = headers ?? {};
  }
}

/** A guest failure: a trap (the instance was dropped), a bad status, a bad result. */
export class GuestError extends Error {
  /** @param {string} kind @param {string} message @param {{ status?: number, cause?: unknown }} [o] */
  constructor(kind, message, o = {}) {
    super(message, o.cause === undefined ? undefined : { cause: o.cause });
    this.name = 'GuestError';
    this.kind = kind;
    this.status = o.status;
  }
}

const bad = (m) => new HttpError(400, m);

/** @param {number} status @param {string} message @param {Record<string, string>} [headers] */
export function jsonError(status, message, headers = {}) {
  return new Response(JSON.stringify({ error: message }), {
    status,
    headers: { 'content-type': JSON_TYPE, ...headers },
  });
}

// ---------------------------------------------------------------------------
// Bytes: hex, base64, sha256, f32 formatting.

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
/** @param {Uint8Array} b */
export const hex = (b) => {
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX[b[i]];
  return s;
};

/** The sha256 of `bytes`, as 64 hex digits. @param {Uint8Array} bytes */
export async function sha256Hex(bytes) {
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)));
}

/**
 * Strict standard base64 with padding, as Rust's `general_purpose::STANDARD`
 * (its error messages too, for the common cases).
 * @param {string} s
 */
export function base64Decode(s) {
  const ok = (c) => /[A-Za-z0-9+/]/.test(c);
  const body = s.replace(/=*$/, '');
  for (let i = 0; i < body.length; i++) {
    if (!ok(body[i])) throw new Error(`Invalid symbol ${body.charCodeAt(i)}, offset ${i}.`);
  }
  if (body.length % 4 === 1) throw new Error(`Invalid input length: ${body.length}`);
  if (s.length % 4 !== 0 || s.length - body.length > 2) throw new Error('Invalid padding');
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** The shortest decimal that reads back as the same f32 (serde_json's f32 output, numerically). */
export function f32Json(x) {
  if (!Number.isFinite(x)) return 'null';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  for (let p = 1; p <= 9; p++) {
    const s = x.toPrecision(p);
    if (Math.fround(Number(s)) === x) {
      const t = String(Number(s));
      return /[.e]/.test(t) ? t : `${t}.0`;
    }
  }
  return String(x);
}

/** A millisecond timing as JSON (f64). */
const msJson = (x) => (Number.isFinite(x) ? String(Math.max(0, x)) : '0');

// ---------------------------------------------------------------------------
// CRC-32 (IEEE), for the session envelope.

let CRC_TABLE = null;
/** @param {Uint8Array} b */
export function crc32(b) {
  if (!CRC_TABLE) {
    CRC_TABLE = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < b.length; i++) c = CRC_TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/**
 * Checks an `EWSS` session state's envelope (magic, version, reserved byte,
 * dimension, CRC) and returns its canonical bytes (what the Rust edge
 * re-encodes after decoding: the first `28 + 4·dim` bytes), or `null` for a
 * dimension-0 state (which has no context section). The guest checks the rest.
 * @param {Uint8Array} b
 */
export function sessionBytes(b) {
  const FIXED = 28;
  if (b.length < FIXED) throw new Error(`session: ${b.length} bytes, shorter than its ${FIXED}-byte fixed part`);
  if (b[0] !== 0x45 || b[1] !== 0x57 || b[2] !== 0x53 || b[3] !== 0x53) throw new Error('session: bad magic');
  if (b[4] !== 1) throw new Error(`session: version ${b[4]} is not supported (1)`);
  if (b[5] !== 0) throw new Error('session: reserved byte 5 is not zero');
  const dim = b[6] | (b[7] << 8);
  if (dim > SESSION_MAX_DIM) throw new Error(`session: dim ${dim} is out of range (0..=${SESSION_MAX_DIM})`);
  const len = FIXED + 4 * dim;
  if (b.length < len) throw new Error('session: truncated session embedding');
  const dv = new DataView(b.buffer, b.byteOffset, len);
  if (crc32(b.subarray(0, len - 4)) !== dv.getUint32(len - 4, true)) throw new Error('session: checksum mismatch');
  return dim === 0 ? null : b.slice(0, len);
}

// ---------------------------------------------------------------------------
// The EWCX context (core::abi::encode_context / decode_context).

/** @param {unknown} v @param {string} what */
function toU64(v, what) {
  const big = typeof v === 'bigint' ? v : typeof v === 'number' && Number.isSafeInteger(v) ? BigInt(v) : null;
  if (big === null || big < 0n || big > U64_MAX) throw new RangeError(`${what} must be a u64, not ${String(v)}`);
  return big;
}
/** @param {unknown} v @param {string} what */
function toU32(v, what) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > U32_MAX) {
    throw new RangeError(`${what} must be a u32, not ${String(v)}`);
  }
  return v;
}

/**
 * Encodes a rank context as `EWCX` v1, byte for byte as
 * `core::abi::encode_context`.
 * @param {{ region?: number | null, checksumVerified?: boolean, k: number, prerankKeep?: number,
 *   nowMs: number | bigint, sessionShare?: number, halfLifeMs?: number | bigint,
 *   seen?: Iterable<number | bigint>, blockedCreators?: Iterable<number>, base?: ArrayLike<number>,
 *   session?: Uint8Array | null }} c
 */
export function encodeContext(c) {
  const seen = Array.from(c.seen ?? [], (x) => toU64(x, 'a seen id'));
  const blocked = Array.from(c.blockedCreators ?? [], (x) => toU32(x, 'a blocked creator'));
  const base = Float32Array.from(c.base ?? []);
  const session = c.session && c.session.length > 0 ? c.session : null;
  const region = c.region === null || c.region === undefined ? REGION_ANY : c.region;
  if (!(Number.isInteger(region) && ((region >= 0 && region <= 31) || region === REGION_ANY))) {
    throw new RangeError(`region must be in 0..=31 or null, not ${region}`);
  }
  const share = Math.fround(c.sessionShare ?? 0.3);
  if (!(share >= 0 && share <= 1)) throw new RangeError(`sessionShare must be in [0, 1], not ${share}`);
  const len = 56 + 8 * seen.length + 4 * blocked.length + 4 * base.length + (session ? session.length : 0);
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  out.set([0x45, 0x57, 0x43, 0x58, 1, region], 0); // "EWCX", version 1, region
  dv.setUint16(6, c.checksumVerified ? 1 : 0, true);
  dv.setUint32(8, toU32(c.k, 'k'), true);
  dv.setUint32(12, toU32(c.prerankKeep ?? 0, 'prerankKeep'), true);
  dv.setBigUint64(16, toU64(c.nowMs, 'nowMs'), true);
  dv.setFloat32(24, share, true);
  dv.setUint32(28, 0, true);
  dv.setBigUint64(32, toU64(c.halfLifeMs ?? 1_800_000, 'halfLifeMs'), true);
  dv.setUint32(40, seen.length, true);
  dv.setUint32(44, blocked.length, true);
  dv.setUint32(48, base.length, true);
  dv.setUint32(52, session ? session.length : 0, true);
  let at = 56;
  for (const x of seen) { dv.setBigUint64(at, x, true); at += 8; }
  for (const x of blocked) { dv.setUint32(at, x, true); at += 4; }
  for (const x of base) { dv.setFloat32(at, x, true); at += 4; }
  if (session) out.set(session, at);
  return out;
}

/** Reads an `EWCX` v1 context back (the fields `encodeContext` takes). @param {Uint8Array} b */
export function decodeContext(b) {
  if (b.length < 56 || String.fromCharCode(b[0], b[1], b[2], b[3]) !== 'EWCX' || b[4] !== 1) {
    throw new Error('not an EWCX v1 context');
  }
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const [s, bl, d, l] = [40, 44, 48, 52].map((o) => dv.getUint32(o, true));
  if (56 + 8 * s + 4 * bl + 4 * d + l !== b.length) throw new Error('section lengths do not add up to the context length');
  let at = 56;
  const seen = [];
  for (let i = 0; i < s; i++, at += 8) seen.push(dv.getBigUint64(at, true));
  const blockedCreators = [];
  for (let i = 0; i < bl; i++, at += 4) blockedCreators.push(dv.getUint32(at, true));
  const base = new Float32Array(d);
  for (let i = 0; i < d; i++, at += 4) base[i] = dv.getFloat32(at, true);
  return {
    region: b[5] === REGION_ANY ? null : b[5],
    checksumVerified: (dv.getUint16(6, true) & 1) === 1,
    k: dv.getUint32(8, true),
    prerankKeep: dv.getUint32(12, true),
    nowMs: dv.getBigUint64(16, true),
    sessionShare: dv.getFloat32(24, true),
    halfLifeMs: dv.getBigUint64(32, true),
    seen,
    blockedCreators,
    base,
    session: l > 0 ? b.slice(at, at + l) : null,
  };
}

// ---------------------------------------------------------------------------
// The EWRS result (core::abi::decode_result, the items).

/**
 * The ranked items of an `EWRS` v1 result.
 * @param {Uint8Array} b
 * @returns {{ modelMatch: number, items: { id: bigint, row: number, score: number }[], rows: number }}
 */
export function decodeResult(b) {
  if (b.length < 16 || String.fromCharCode(b[0], b[1], b[2], b[3]) !== 'EWRS' || b[4] !== 1 || b[5] > 2) {
    throw new GuestError('bad_result', 'the guest returned a malformed result (bad header)');
  }
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const ni = dv.getUint32(8, true);
  const nr = dv.getUint32(12, true);
  if (16 + 32 * ni + 16 * nr !== b.length) {
    throw new GuestError('bad_result', 'the guest returned a malformed result (counts do not match the length)');
  }
  const items = [];
  for (let i = 0, at = 16; i < ni; i++, at += 32) {
    items.push({ id: dv.getBigUint64(at, true), row: dv.getUint32(at + 8, true), score: dv.getFloat32(at + 12, true) });
  }
  return { modelMatch: b[5], items, rows: nr };
}

// ---------------------------------------------------------------------------
// The bundle header and the retrieval-order fallback.

const MAGIC_BUNDLE = [0x45, 0x57, 0x42, 0x55, 0x4e, 0x44, 0x4c, 0x45]; // "EWBUNDLE"
const align8 = (x) => (x + 7) & ~7;

/**
 * What the feed reads from a bundle itself: its rows' ids, retrieval scores
 * and region masks (for the fallback), and the model its header names.
 * Bounds are checked against the real length; `null` for what is not a bundle.
 * @param {Uint8Array} b
 */
export function bundleView(b) {
  if (b.length < 136 || MAGIC_BUNDLE.some((m, i) => b[i] !== m)) return null;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (dv.getUint32(12, true) !== 128) return null;
  const n = dv.getUint32(16, true);
  if (n > 1 << 20) return null;
  const ids = 128;
  const scales = align8(ids + 8 * n);
  const retrieval = align8(scales + 4 * n);
  const creators = align8(retrieval + 4 * n);
  const categories = align8(creators + 4 * n);
  const masks = align8(categories + 4 * n);
  if (masks + 4 * n > b.length - 8) return null;
  const digest = b.subarray(48, 80);
  return {
    n,
    model: digest.every((x) => x === 0) ? null : hex(digest),
    id: (i) => dv.getBigUint64(ids + 8 * i, true),
    retrieval: (i) => dv.getFloat32(retrieval + 4 * i, true),
    regionMask: (i) => dv.getUint32(masks + 4 * i, true),
  };
}

/**
 * The bundle's rows in retrieval order (the fallback ranking, as
 * `edge-worker`'s `retrieval_order`): seen items and items not shown in the
 * region removed, best `k` first (ties by id).
 * @param {Uint8Array} bundle @param {{ region: number | null, seen: bigint[], k: number }} ctx
 */
export function retrievalOrder(bundle, ctx) {
  const v = bundleView(bundle);
  if (!v) return [];
  const seen = new Set(ctx.seen);
  const rows = [];
  for (let i = 0; i < v.n; i++) {
    const id = v.id(i);
    if (seen.has(id)) continue;
    if (ctx.region !== null && ((v.regionMask(i) >>> ctx.region) & 1) === 0) continue;
    rows.push({ id, score: v.retrieval(i) });
  }
  rows.sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return rows.slice(0, ctx.k);
}

/** `core::merge::stable_merge`. @param {bigint[]} p @param {number} shown @param {bigint[]} r @param {number} k */
export function stableMerge(p, shown, r, k) {
  const out = [];
  const have = new Set();
  const push = (id) => {
    if (!have.has(id)) { have.add(id); out.push(id); }
  };
  const s = Math.min(shown, k, p.length);
  for (const id of p.slice(0, s)) push(id);
  for (const id of [...r, ...p.slice(s)]) {
    if (out.length >= k) break;
    push(id);
  }
  return out;
}

// ---------------------------------------------------------------------------
// The guest.

/**
 * One guest module and at most one live instance of it (per isolate). A
 * trap, or memory grown past the cap, drops the instance; the next call
 * instantiates a fresh one.
 */
export class Guest {
  /** @param {WebAssembly.Module} module @param {{ maxMemoryBytes?: number }} [o] */
  constructor(module, o = {}) {
    if (!(module instanceof WebAssembly.Module) && Object.prototype.toString.call(module) !== '[object WebAssembly.Module]') {
      throw new TypeError('module must be a compiled WebAssembly.Module');
    }
    const imports = WebAssembly.Module.imports(module);
    if (imports.length > 0) {
      throw new GuestError('host', `guest module has ${imports.length} import(s) (first: ${imports[0].module}::${imports[0].name}); the core guest must have none`);
    }
    const exports = new Map(WebAssembly.Module.exports(module).map((e) => [e.name, e.kind]));
    for (const name of EXPORTS) {
      if (exports.get(name) !== 'function') throw new GuestError('host', `guest module does not export the function ${name}`);
    }
    if (exports.get('memory') !== 'memory') throw new GuestError('host', 'guest module does not export its memory');
    this.module = module;
    this.maxMemoryBytes = o.maxMemoryBytes ?? DEFAULTS.maxGuestMemoryBytes;
    /** @type {any} */
    this.inst = null;
    /** @type {string | null} the digest of the model the live instance holds */
    this.loaded = null;
    this.stats = { instances: 0, traps: 0, modelLoads: 0, ranks: 0, dropped: 0, instantiateMs: 0 };
  }

  #ensure() {
    if (this.inst) return this.inst;
    const t = now();
    const instance = new WebAssembly.Instance(this.module, {});
    const x = /** @type {any} */ (instance.exports);
    const v = x.ew_abi_version() >>> 0;
    if (v !== ABI_VERSION) {
      throw new GuestError('host', `guest ABI version ${v} is not supported (host speaks ${ABI_VERSION})`);
    }
    this.stats.instances++;
    this.stats.instantiateMs = now() - t;
    this.inst = x;
    this.loaded = null;
    return x;
  }

  /** Drops the live instance (after a trap, or when its memory grew too large). */
  drop() {
    if (this.inst) this.stats.dropped++;
    this.inst = null;
    this.loaded = null;
  }

  /** Runs `f` on the instance; a trap drops it. */
  #call(f) {
    const x = this.#ensure();
    try {
      return f(x);
    } catch (e) {
      this.drop();
      if (e instanceof GuestError) throw e;
      this.stats.traps++;
      throw new GuestError('trap', `guest trapped: ${/** @type {any} */ (e)?.message ?? e}`, { cause: e });
    } finally {
      if (this.inst && this.inst.memory.buffer.byteLength > this.maxMemoryBytes) this.drop();
    }
  }

  /** Copies `bytes` into a fresh guest allocation. */
  static #put(x, bytes) {
    const len = Math.max(bytes.length, 1);
    const ptr = x.ew_alloc(len) >>> 0;
    if (ptr === 0) throw new GuestError('memory', `guest out of memory allocating ${len} bytes`);
    new Uint8Array(x.memory.buffer, ptr, bytes.length).set(bytes);
    return [ptr, len];
  }

  static #region(x, ptr, len) {
    const mem = x.memory.buffer.byteLength;
    if (ptr + len > mem) throw new GuestError('bad_result', `guest reported ${len} bytes at ${ptr}, outside its ${mem}-byte memory`);
    return new Uint8Array(x.memory.buffer, ptr, len).slice();
  }

  static #fail(x, status, what) {
    const msg = new TextDecoder().decode(Guest.#region(x, x.ew_error_ptr() >>> 0, x.ew_error_len() >>> 0));
    return new GuestError('status', `guest ${what} failed with ${STATUS[status] ?? status}: ${msg}`, { status });
  }

  /**
   * Ranks `bundle` with the context `ctx` (EWCX bytes) and the model
   * `model` (whose sha256 is `digest`, loaded only when the instance does not
   * hold it yet). Returns the EWRS bytes.
   * @param {string} digest @param {Uint8Array} model @param {Uint8Array} bundle @param {Uint8Array} ctx
   */
  rank(digest, model, bundle, ctx) {
    return this.#call((x) => {
      if (this.loaded !== digest) {
        const [mp, ml] = Guest.#put(x, model);
        const st = x.ew_load_model(mp, model.length);
        x.ew_free(mp, ml);
        if (st !== 0) throw Guest.#fail(x, st, 'model load');
        this.loaded = digest;
        this.stats.modelLoads++;
      }
      const [bp, bl] = Guest.#put(x, bundle);
      const [cp, cl] = Guest.#put(x, ctx);
      const st = x.ew_rank(bp, bundle.length, cp, ctx.length);
      x.ew_free(bp, bl);
      x.ew_free(cp, cl);
      if (st !== 0) throw Guest.#fail(x, st, 'ranking');
      this.stats.ranks++;
      return Guest.#region(x, x.ew_result_ptr() >>> 0, x.ew_result_len() >>> 0);
    });
  }
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

// ---------------------------------------------------------------------------
// Bounded reads.

/** Reads a body of at most `max` bytes; 413 (or `tooLarge`) beyond. */
async function readBounded(body, declared, max, tooLarge) {
  if (declared !== null && declared !== '' && Number(declared) > max) throw tooLarge();
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const parts = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.byteLength;
    if (n > max) {
      reader.cancel().catch(() => {});
      throw tooLarge();
    }
    parts.push(value);
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.byteLength; }
  return out;
}

// ---------------------------------------------------------------------------
// The request: query and body (edge-worker/src/feed/request.rs).

/** Parses a query string, refusing a parameter given twice. @param {URLSearchParams} sp */
function strictQuery(sp) {
  const q = new Map();
  for (const [k, v] of sp) {
    if (q.has(k)) throw bad(`the query parameter ${JSON.stringify(k)} is given more than once`);
    q.set(k, v);
  }
  return q;
}

/** Rust's `u64::from_str`: optional `+`, decimal digits, at most u64::MAX. */
function parseU64(v) {
  if (!/^\+?[0-9]+$/.test(v)) return null;
  const n = BigInt(v);
  return n <= U64_MAX ? n : null;
}

/** Rust's `Region::from_str`: no sign, no spaces, no leading zero, 0..=31. */
function parseRegion(s) {
  if (s.length === 0 || s.length > 2 || (s.length > 1 && s[0] === '0') || !/^[0-9]+$/.test(s)) {
    throw bad(`region ${JSON.stringify(s)} is not an integer in 0..=31`);
  }
  const r = Number(s);
  if (r > 31) throw bad(`region ${r} is out of range (0..=31)`);
  return r;
}

/**
 * Parses JSON keeping integers exact: an integer beyond 2^53 becomes a
 * BigInt, so u64 ids survive in every runtime (JSON.parse would round them).
 * A small recursive-descent parser (RFC 8259), nesting bounded.
 * @param {string} text
 */
export function parseJsonExact(text) {
  let i = 0;
  const fail = (what) => { throw new SyntaxError(`${what} at offset ${i}`); };
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const value = (depth) => {
    if (depth > 64) fail('nesting too deep');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const o = Object.create(null);
      ws();
      if (text[i] === '}') { i++; return o; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const k = string();
        ws();
        if (text[i++] !== ':') fail('expected ":"');
        if (Object.prototype.hasOwnProperty.call(o, k)) fail(`duplicate field \`${k}\``);
        o[k] = value(depth + 1);
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return o; }
        fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const a = [];
      ws();
      if (text[i] === ']') { i++; return a; }
      for (;;) {
        a.push(value(depth + 1));
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return a; }
        fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    for (const [lit, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(lit, i)) { i += lit.length; return v; }
    }
    const m = /^-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m) fail('expected a value');
    i += m[0].length;
    const n = Number(m[0]);
    if (!m[1] && !m[2] && !Number.isSafeInteger(n)) return BigInt(m[0]);
    return n;
  };
  const string = () => {
    const m = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/.exec(text.slice(i));
    if (!m) fail('invalid string');
    i += m[0].length;
    return JSON.parse(m[0]);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail('trailing characters');
  return v;
}

/** A u64 from the body (number or exact bigint). */
function bodyU64(v, what) {
  if (typeof v === 'bigint' && v >= 0n && v <= U64_MAX) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw bad(`invalid feed body: ${what} must be an unsigned 64-bit integer, not ${typeof v === 'bigint' ? v : JSON.stringify(v)}`);
}

/** @param {Uint8Array} bytes */
export function parseFeedBody(bytes) {
  let v;
  try {
    v = parseJsonExact(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (e) {
    throw bad(`invalid feed body: ${/** @type {any} */ (e)?.message ?? e}`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw bad('invalid feed body: expected a JSON object');
  for (const k of Object.keys(v)) {
    if (!BODY_FIELDS.includes(k)) {
      throw bad(`invalid feed body: unknown field \`${k}\`, expected one of \`seen\`, \`session\`, \`now_ms\``);
    }
  }
  const out = { seen: [], session: null, nowMs: null };
  if (v.seen !== undefined) {
    if (!Array.isArray(v.seen)) throw bad('invalid feed body: seen must be an array of item ids');
    if (v.seen.length > MAX_SEEN) throw bad(`seen has ${v.seen.length} ids; at most ${MAX_SEEN}`);
    out.seen = v.seen.map((x) => bodyU64(x, 'each seen id'));
  }
  if (v.session !== undefined && v.session !== null) {
    if (typeof v.session !== 'string') throw bad('invalid feed body: session must be a base64 string');
    out.session = v.session;
  }
  if (v.now_ms !== undefined && v.now_ms !== null) out.nowMs = bodyU64(v.now_ms, 'now_ms');
  return out;
}

/**
 * The feed request, parsed and checked as `FeedRequest::parse` does.
 * @param {Map<string, string>} query @param {ReturnType<typeof parseFeedBody> | null} body
 * @param {number} defaultShown @param {number} nowMs @param {number} maxSkewMs
 */
export function parseFeedRequest(query, body, defaultShown, nowMs, maxSkewMs) {
  for (const k of query.keys()) {
    if (!KNOWN_QUERY.includes(k)) throw bad(`unknown query parameter ${JSON.stringify(k)} (known: ${KNOWN_QUERY.join(', ')})`);
  }
  const num = (name) => {
    const v = query.get(name);
    if (v === undefined) return null;
    const n = parseU64(v);
    if (n === null) throw bad(`${name}=${JSON.stringify(v)} is not a number`);
    return n;
  };
  const user = num('user');
  const region = query.has('region') ? parseRegion(/** @type {string} */ (query.get('region'))) : 0;
  const kq = num('k');
  let k = 20;
  if (kq !== null) {
    if (kq < 1n || kq > 1000n) throw bad(`k = ${kq} must be in 1..=1000`);
    k = Number(kq);
  }
  const sq = num('shown');
  const shown = Math.min(sq === null ? defaultShown : Number(sq > 1_000_000n ? 1_000_000n : sq), k);
  body ??= { seen: [], session: null, nowMs: null };
  const skew = BigInt(Math.max(0, Math.floor(maxSkewMs)));
  const edgeNow = BigInt(Math.floor(nowMs));
  let t = edgeNow;
  if (body.nowMs !== null) {
    const d = body.nowMs > edgeNow ? body.nowMs - edgeNow : edgeNow - body.nowMs;
    if (d > skew) {
      throw bad(`now_ms ${body.nowMs} is ${d} ms from the edge's clock; at most ${skew} ms are accepted (feed.max_clock_skew_ms)`);
    }
    t = body.nowMs;
  }
  if (body.seen.length > MAX_SEEN) throw bad(`seen has ${body.seen.length} ids; at most ${MAX_SEEN}`);
  let session = null;
  if (body.session !== null) {
    let raw;
    try {
      raw = base64Decode(body.session);
    } catch (e) {
      throw bad(`session is not base64: ${/** @type {any} */ (e).message}`);
    }
    try {
      session = sessionBytes(raw);
    } catch (e) {
      throw bad(/** @type {any} */ (e).message);
    }
  }
  const rq = query.get('refine');
  let refine;
  if (rq === undefined || rq === 'true' || rq === '1') refine = true;
  else if (rq === 'false' || rq === '0') refine = false;
  else throw bad(`refine=${JSON.stringify(rq)} must be true or false`);
  refine = refine && user !== null; // An anonymous feed has no personal bundle to refine with.
  const tenant = query.get('tenant') ?? DEFAULT_TENANT;
  if (tenant.length === 0 || new TextEncoder().encode(tenant).length > 64) throw bad('tenant must be 1 to 64 characters');
  return { user, region, k, shown, tenant, refine, ctx: { region, k, nowMs: t, seen: body.seen, session } };
}

// ---------------------------------------------------------------------------
// Bearer tokens (optional HS256 verification, as the Rust edge does).

/** The Bearer token of `req`, or null. */
function bearer(req) {
  const h = req.headers.get('authorization');
  if (!h || h.length > 8192) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m ? m[1] : null;
}

function b64url(s) {
  const t = s.replace(/-/g, '+').replace(/_/g, '/');
  return base64Decode(t.padEnd(Math.ceil(t.length / 4) * 4, '='));
}

/**
 * Verifies an HS256 user token for `user` against any of `keys`
 * (CryptoKeys): 401 when invalid or expired, 403 for another user.
 */
async function verifyUserToken(token, user, keys, maxLifetimeS) {
  const unauthorized = (m) => new HttpError(401, m, { 'www-authenticate': 'Bearer error="invalid_token"' });
  const parts = token.split('.');
  if (parts.length !== 3) throw unauthorized('the user token is not a JWT');
  let header;
  let claims;
  let sig;
  try {
    header = JSON.parse(new TextDecoder().decode(b64url(parts[0])));
    claims = JSON.parse(new TextDecoder().decode(b64url(parts[1])));
    sig = b64url(parts[2]);
  } catch {
    throw unauthorized('the user token is not a JWT');
  }
  if (header?.alg !== 'HS256') throw unauthorized(`the user token's algorithm ${JSON.stringify(header?.alg)} is not accepted`);
  const signed = new TextEncoder().encode(`${parts[0]}.${parts[1]}`);
  let ok = false;
  for (const key of keys) if (await crypto.subtle.verify('HMAC', key, sig, signed)) ok = true;
  if (!ok) throw unauthorized('the user token has an invalid signature');
  const t = Math.floor(Date.now() / 1000);
  if (typeof claims?.exp !== 'number' || typeof claims?.iat !== 'number' || typeof claims?.sub !== 'string') {
    throw unauthorized('the user token lacks sub, exp or iat');
  }
  if (claims.exp <= t) throw unauthorized('the user token has expired');
  if (typeof claims.nbf === 'number' && claims.nbf > t + 60) throw unauthorized('the user token is not valid yet');
  if (claims.exp - claims.iat > maxLifetimeS) throw unauthorized(`the user token lives longer than ${maxLifetimeS} s`);
  if (parseU64(claims.sub) !== user) throw new HttpError(403, `the token was issued for user ${claims.sub}, not user ${user}`);
}

// ---------------------------------------------------------------------------
// The shared cache over a Cache-API-like object.

/** `Cache-Control` directives. */
function cacheControl(h) {
  const out = new Map();
  for (const part of (h ?? '').split(',')) {
    const [k, v] = part.trim().split('=');
    if (k) out.set(k.toLowerCase(), v === undefined ? true : Number(v.replace(/"/g, '')));
  }
  return out;
}

/**
 * An in-isolate, byte-bounded LRU with the Cache API's `match`/`put`/`delete`
 * (for runtimes without one, and for tests).
 * @param {{ maxBytes?: number }} [o]
 */
export function memoryCache(o = {}) {
  const max = o.maxBytes ?? 64 << 20;
  /** @type {Map<string, { body: Uint8Array, status: number, headers: [string, string][] }>} */
  const map = new Map();
  let bytes = 0;
  const key = (r) => (typeof r === 'string' ? r : r.url);
  return {
    async match(r) {
      const e = map.get(key(r));
      if (!e) return undefined;
      map.delete(key(r));
      map.set(key(r), e);
      return new Response(e.body.slice(), { status: e.status, headers: e.headers });
    },
    async put(r, res) {
      const body = new Uint8Array(await res.arrayBuffer());
      if (body.length > max) return;
      await this.delete(r);
      map.set(key(r), { body, status: res.status, headers: [...res.headers] });
      bytes += body.length;
      for (const [k, e] of map) {
        if (bytes <= max) break;
        map.delete(k);
        bytes -= e.body.length;
      }
    },
    async delete(r) {
      const e = map.get(key(r));
      if (!e) return false;
      map.delete(key(r));
      bytes -= e.body.length;
      return true;
    },
    get size() {
      return map.size;
    },
  };
}

// ---------------------------------------------------------------------------
// The edge.

/**
 * @typedef {object} EdgeOptions
 * @property {WebAssembly.Module} module the compiled guest
 * @property {string} origin the origin's base URL
 * @property {typeof fetch} [fetch] the platform fetch
 * @property {any} [cache] a Cache-API-like object (`match`, `put`), or null: no caching
 * @property {number} [refineDeadlineMs]
 * @property {number} [candidates] candidates asked of the origin for each bundle
 * @property {number} [maxClockSkewMs]
 * @property {number} [maxBodyBytes]
 * @property {number} [maxBundleBytes]
 * @property {number} [maxModelBytes]
 * @property {number} [maxGuestMemoryBytes]
 * @property {number} [originTimeoutMs]
 * @property {string[]} [userTokenSecrets] HS256 secrets: verify user tokens at the edge (else the origin alone does)
 * @property {number} [maxTokenLifetimeS]
 * @property {Record<string, WebAssembly.Module>} [tenants] more tenants' guests, by name
 * @property {string} [corsOrigin] `Access-Control-Allow-Origin` for every answer
 * @property {boolean} [testRoutes] enables `POST /__edgewise/rank` and `GET /__edgewise/stats` (tests only)
 * @property {() => number} [clock] ms since the epoch
 */

/**
 * The edge: `{ fetch(request, ctx?) }`, where `ctx.waitUntil` (Workers)
 * keeps background work alive.
 * @param {EdgeOptions} options
 */
export function createEdge(options) {
  const o = { ...DEFAULTS };
  for (const [k, v] of Object.entries(options ?? {})) if (v !== undefined) o[k] = v;
  if (!o.module) throw new TypeError('createEdge: module (a compiled WebAssembly.Module) is required');
  if (!o.origin) throw new TypeError('createEdge: origin (the origin\'s base URL) is required');
  const origin = String(o.origin).replace(/\/+$/, '');
  const platformFetch = o.fetch ?? globalThis.fetch.bind(globalThis);
  const cache = o.cache ?? null;
  const clock = o.clock ?? (() => Date.now());
  const guests = new Map([[DEFAULT_TENANT, new Guest(o.module, { maxMemoryBytes: o.maxGuestMemoryBytes })]]);
  for (const [name, m] of Object.entries(o.tenants ?? {})) guests.set(name, new Guest(m, { maxMemoryBytes: o.maxGuestMemoryBytes }));
  /** Verified models, by digest (a few, most recent last). @type {Map<string, Uint8Array>} */
  const models = new Map();
  /** Origin fetches in flight, by URL (coalesced). @type {Map<string, Promise<any>>} */
  const inflight = new Map();
  const stats = { originFetches: 0, originFetchesByPath: /** @type {Record<string, number>} */ ({}), feeds: { refined: 0, preliminary: 0, unavailable: 0 }, failures: /** @type {Record<string, number>} */ ({}) };
  let hmacKeys = null;
  const countFailure = (kind) => { stats.failures[kind] = (stats.failures[kind] ?? 0) + 1; };

  async function keys() {
    hmacKeys ??= Promise.all((o.userTokenSecrets ?? []).map((s) => crypto.subtle.importKey(
      'raw', new TextEncoder().encode(s), { name: 'HMAC', hash: 'SHA-256' }, false, ['verify'])));
    return hmacKeys;
  }

  /** One GET at the origin, bounded in time and size. */
  async function originGet(path, headers, maxBytes) {
    stats.originFetches++;
    const p = path.split('?')[0];
    stats.originFetchesByPath[p] = (stats.originFetchesByPath[p] ?? 0) + 1;
    const ac = typeof AbortController !== 'undefined' ? new AbortController() : null;
    const timer = ac ? setTimeout(() => ac.abort(), o.originTimeoutMs) : null;
    try {
      const res = await platformFetch(origin + path, { headers, signal: ac?.signal });
      const tooLarge = () => new HttpError(502, `the origin's answer for ${p} is larger than ${maxBytes} bytes`);
      const body = await readBounded(res.body, res.headers.get('content-length'), maxBytes, tooLarge);
      return { status: res.status, headers: res.headers, body };
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw new HttpError(503, 'the origin is unavailable', {});
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  const upstream = (r) => new HttpError(r.status >= 400 && r.status < 600 ? r.status : 502,
    `the origin answered ${r.status}: ${new TextDecoder().decode(r.body.subarray(0, 1024))}`);

  /**
   * A shared (public) response through the cache: `{ body, status }`, with
   * status `hit`, `miss`, `stale` or `revalidated`.
   */
  async function shared(path, maxBytes, ctx) {
    const url = origin + path;
    let stored = null;
    if (cache) {
      try {
        stored = await cache.match(url);
      } catch {
        stored = null;
      }
    }
    let storedBody = null;
    let cc = null;
    let age = 0;
    if (stored) {
      storedBody = new Uint8Array(await stored.arrayBuffer());
      cc = cacheControl(stored.headers.get('cache-control'));
      age = (clock() - Number(stored.headers.get(STORED_AT) ?? 0)) / 1000;
      const ttl = cc.get('s-maxage') ?? cc.get('max-age') ?? 0;
      if (!cc.get('no-cache') && age < ttl) return { body: storedBody, status: 'hit' };
      const swr = cc.get('stale-while-revalidate') ?? 0;
      if (age < ttl + swr) {
        const bg = refresh(path, url, maxBytes, stored.headers.get('etag')).catch(() => {});
        ctx?.waitUntil?.(bg);
        return { body: storedBody, status: 'stale' };
      }
    }
    try {
      const r = await refresh(path, url, maxBytes, stored?.headers.get('etag') ?? null);
      if (r.notModified && storedBody) return { body: storedBody, status: 'revalidated' };
      return { body: r.body, status: 'miss' };
    } catch (e) {
      const sie = cc ? cc.get('stale-if-error') ?? 0 : 0;
      const serverSide = !(e instanceof HttpError) || e.status >= 500;
      if (storedBody && serverSide && age < (cc?.get('s-maxage') ?? cc?.get('max-age') ?? 0) + sie) {
        return { body: storedBody, status: 'stale' };
      }
      throw e;
    }
  }

  /** Fetches `path` (coalesced per URL) and stores it when its Cache-Control allows. */
  function refresh(path, url, maxBytes, etag) {
    let p = inflight.get(url);
    if (p) return p;
    p = (async () => {
      const r = await originGet(path, etag ? { 'if-none-match': etag } : {}, maxBytes);
      if (r.status === 304 && etag) {
        if (cache) {
          const stored = await cache.match(url);
          if (stored) {
            const h = new Headers(stored.headers);
            h.set(STORED_AT, String(clock()));
            await cache.put(url, new Response(await stored.arrayBuffer(), { status: 200, headers: h }));
          }
        }
        return { notModified: true, body: null };
      }
      if (r.status !== 200) throw upstream(r);
      const cc = cacheControl(r.headers.get('cache-control'));
      if (cache && !cc.get('private') && !cc.get('no-store')) {
        const h = new Headers();
        for (const name of ['content-type', 'cache-control', 'etag', 'x-edgewise-bundle-digest']) {
          const v = r.headers.get(name);
          if (v !== null) h.set(name, v);
        }
        h.set(STORED_AT, String(clock()));
        try {
          await cache.put(url, new Response(r.body.slice(), { status: 200, headers: h }));
        } catch {
          // A cache that refuses (quota, a platform rule) costs a later miss, nothing else.
        }
      }
      return { notModified: false, body: r.body };
    })();
    inflight.set(url, p);
    p.finally(() => inflight.delete(url)).catch(() => {});
    return p;
  }

  /** Model `digest` (the origin's current one when null), verified by sha256. */
  async function model(digest, ctx) {
    if (digest === null) {
      const m = await shared('/v1/models/current', o.maxManifestBytes, ctx);
      let manifest;
      try {
        manifest = JSON.parse(new TextDecoder().decode(m.body));
      } catch (e) {
        throw new Error(`the model manifest is not valid: ${/** @type {any} */ (e).message}`);
      }
      if (typeof manifest?.digest !== 'string' || !/^[0-9a-f]{64}$/.test(manifest.digest)) {
        throw new Error('the model manifest is not valid: no digest');
      }
      digest = manifest.digest;
    }
    const d = /** @type {string} */ (digest);
    const have = models.get(d);
    if (have) {
      models.delete(d);
      models.set(d, have);
      return { digest: d, bytes: have };
    }
    const served = await shared(`/v1/models/${d}`, o.maxModelBytes, ctx);
    const actual = await sha256Hex(served.body);
    if (actual !== d) throw new Error(`model ${d} failed verification: its sha256 is ${actual}`);
    models.set(d, served.body);
    while (models.size > o.models) models.delete(/** @type {string} */ (models.keys().next().value));
    return { digest: d, bytes: served.body };
  }

  /**
   * One bundle into one frame (edge-worker/src/feed/frame.rs): fetch, model,
   * guest, and the retrieval order when the model or the guest fails.
   */
  async function frame(path, token, kind, req, ctx) {
    const t0 = now();
    let served;
    if (token) {
      const r = await originGet(path, { authorization: `Bearer ${token}` }, o.maxBundleBytes);
      if (r.status !== 200) throw upstream(r);
      served = { body: r.body, status: 'miss' };
    } else {
      served = await shared(path, o.maxBundleBytes, ctx);
    }
    const fetchMs = now() - t0;
    const bundle = served.body;
    const bundleDigest = await sha256Hex(bundle);
    const t1 = now();
    const c = req.ctx;
    const fallback = () => retrievalOrder(bundle, c);
    let items;
    let rankedBy = 'guest';
    let modelDigest = null;
    try {
      const view = bundleView(bundle);
      const m = await model(view ? view.model : null, ctx);
      modelDigest = m.digest;
      const guest = guests.get(req.tenant);
      if (!guest) {
        countFailure('no-module');
        items = fallback();
        rankedBy = 'retrieval-order';
      } else {
        try {
          const ewcx = encodeContext({ region: c.region, k: c.k, nowMs: c.nowMs, seen: c.seen, session: c.session });
          items = decodeResult(guest.rank(m.digest, m.bytes, bundle, ewcx)).items;
        } catch (e) {
          countFailure(e instanceof GuestError ? e.kind : 'host');
          items = fallback();
          rankedBy = 'retrieval-order';
        }
      }
    } catch {
      countFailure('model');
      items = fallback();
      rankedBy = 'retrieval-order';
    }
    return {
      frame: kind, items, ranked_by: rankedBy, bundle_digest: bundleDigest, bundle_cache: served.status,
      model: modelDigest, timings_ms: { fetch: fetchMs, rank: now() - t1 }, merged: null,
    };
  }

  async function feed(request, ctx) {
    const url = new URL(request.url);
    const query = strictQuery(url.searchParams);
    const ndjson = (request.headers.get('accept') ?? '').includes(NDJSON);
    const token = bearer(request);
    const userText = query.get('user');
    if (userText !== undefined) {
      const user = parseU64(userText);
      if (user === null) throw bad(`user=${JSON.stringify(userText)} is not a user id`);
      if (!token) throw new HttpError(401, 'this route needs the user\'s token (Authorization: Bearer)', { 'www-authenticate': 'Bearer' });
      if ((o.userTokenSecrets ?? []).length > 0) await verifyUserToken(token, user, await keys(), o.maxTokenLifetimeS ?? 86_400 * 30);
    }
    let body = null;
    if (request.method === 'POST') {
      const tooLarge = () => new HttpError(413, `the request body is larger than ${o.maxBodyBytes} bytes`);
      const bytes = await readBounded(request.body, request.headers.get('content-length'), o.maxBodyBytes, tooLarge);
      if (bytes.length > 0) body = parseFeedBody(bytes);
    }
    const req = parseFeedRequest(query, body, ndjson ? 3 : 0, clock(), o.maxClockSkewMs);
    const start = now();
    const regional = `/v1/regions/${req.region}/bundle?k=${o.candidates}`;
    const personal = req.user !== null ? `/v1/users/${req.user}/candidates?k=${o.candidates}&region=${req.region}` : null;
    // The refinement starts first: the origin's retrieval runs while the regional bundle is ranked.
    const refined = req.refine && personal && token ? frame(personal, token, 'refined', req, ctx) : null;
    refined?.catch(() => {});
    const prelim = await frame(regional, null, 'preliminary', req, ctx).then((f) => ({ ok: f }), (e) => ({ err: e }));
    const merge = (f) => {
      const p = prelim.ok ? prelim.ok.items.map((i) => i.id) : [];
      f.merged = stableMerge(p, req.shown, f.items.map((i) => i.id), req.k);
      return f;
    };
    const headers = o.corsOrigin ? { 'access-control-allow-origin': o.corsOrigin } : {};
    if (ndjson) {
      const enc = new TextEncoder();
      const stream = new ReadableStream({
        async start(controller) {
          controller.enqueue(enc.encode(`${prelim.ok ? frameJson(prelim.ok) : JSON.stringify({ frame: 'preliminary', error: 'no regional bundle available' })}\n`));
          if (refined) {
            let line;
            try {
              line = frameJson(merge(await refined));
              stats.feeds.refined++;
            } catch (e) {
              line = JSON.stringify({ frame: 'refined', error: clientError(e) });
              stats.feeds[prelim.ok ? 'preliminary' : 'unavailable']++;
            }
            controller.enqueue(enc.encode(`${line}\n`));
          } else {
            stats.feeds[prelim.ok ? 'preliminary' : 'unavailable']++;
          }
          controller.close();
        },
      });
      return new Response(stream, { headers: { 'content-type': NDJSON, ...headers } });
    }
    let ref = null;
    if (refined) {
      const left = Math.max(0, o.refineDeadlineMs - (now() - start));
      let timer;
      const deadline = new Promise((resolve) => { timer = setTimeout(() => resolve(null), left); });
      ref = await Promise.race([refined.catch(() => null), deadline]);
      clearTimeout(timer);
    }
    if (ref) {
      stats.feeds.refined++;
      return new Response(frameJson(merge(ref)), { headers: { 'content-type': JSON_TYPE, ...headers } });
    }
    if (prelim.ok) {
      stats.feeds.preliminary++;
      return new Response(frameJson(prelim.ok), { headers: { 'content-type': JSON_TYPE, 'x-edgewise-feed': 'preliminary', ...headers } });
    }
    stats.feeds.unavailable++;
    throw new HttpError(503, `no bundle available: ${clientError(prelim.err)}`);
  }

  /** `POST /__edgewise/rank` (tests): u32 lengths of bundle, context, model, then the three; answers the EWRS bytes. */
  async function testRank(request) {
    const tooLarge = () => new HttpError(413, 'the request body is too large');
    const b = await readBounded(request.body, request.headers.get('content-length'), o.maxBundleBytes + o.maxModelBytes + (1 << 20), tooLarge);
    if (b.length < 12) throw bad('expected three u32 lengths, then bundle, context and model');
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const [bl, cl, ml] = [0, 4, 8].map((x) => dv.getUint32(x, true));
    if (12 + bl + cl + ml !== b.length) throw bad('the lengths do not add up to the body');
    const bundle = b.subarray(12, 12 + bl);
    const ctxBytes = b.subarray(12 + bl, 12 + bl + cl);
    const modelBytes = b.subarray(12 + bl + cl);
    const guest = /** @type {Guest} */ (guests.get(new URL(request.url).searchParams.get('tenant') ?? DEFAULT_TENANT));
    if (!guest) throw new HttpError(404, 'no such tenant');
    const digest = await sha256Hex(modelBytes);
    try {
      const out = guest.rank(digest, modelBytes, bundle, ctxBytes);
      return new Response(out, { headers: { 'content-type': 'application/vnd.edgewise.result' } });
    } catch (e) {
      if (e instanceof GuestError && e.kind === 'status') throw new HttpError(422, e.message);
      if (e instanceof GuestError) throw new HttpError(500, e.message);
      throw e;
    }
  }

  function testStats() {
    const g = {};
    for (const [name, guest] of guests) g[name] = guest.stats;
    return new Response(JSON.stringify({ ...stats, guests: g, cachedModels: models.size }), { headers: { 'content-type': JSON_TYPE } });
  }

  return {
    /** @param {Request} request @param {{ waitUntil?: (p: Promise<unknown>) => void }} [ctx] */
    async fetch(request, ctx) {
      try {
        const url = new URL(request.url);
        if (url.pathname === '/v1/feed') {
          if (request.method !== 'GET' && request.method !== 'POST') throw new HttpError(405, `${request.method} is not allowed on /v1/feed (GET or POST)`, { allow: 'GET, POST' });
          return await feed(request, ctx);
        }
        if (url.pathname === '/livez') return new Response('ok\n', { headers: { 'content-type': 'text/plain' } });
        if (o.testRoutes && url.pathname === '/__edgewise/rank' && request.method === 'POST') return await testRank(request);
        if (o.testRoutes && url.pathname === '/__edgewise/stats') return testStats();
        throw new HttpError(404, 'no such route');
      } catch (e) {
        if (e instanceof HttpError) return jsonError(e.status, e.message, { ...e.headers, ...(o.corsOrigin ? { 'access-control-allow-origin': o.corsOrigin } : {}) });
        return jsonError(500, `internal error: ${/** @type {any} */ (e)?.message ?? e}`);
      }
    },
    /** The guests, by tenant (their `stats`), and the adapter's counters. */
    guests,
    stats,
  };
}

/** A frame failure as the client sees it. */
function clientError(e) {
  if (e instanceof HttpError && e.status !== 503) return e.message;
  return 'the origin is unavailable';
}

/** A frame as JSON, field for field as `edgewise_wire::Frame` (u64 ids exact, f32 scores shortest). */
export function frameJson(f) {
  const items = f.items.map((i) => `{"id":${i.id},"score":${f32Json(i.score)}}`).join(',');
  let s = `{"frame":"${f.frame}","items":[${items}],"ranked_by":"${f.ranked_by}","bundle_digest":"${f.bundle_digest}","bundle_cache":"${f.bundle_cache}"`;
  if (f.model) s += `,"model":"${f.model}"`;
  s += `,"timings_ms":{"fetch":${msJson(f.timings_ms.fetch)},"rank":${msJson(f.timings_ms.rank)}}`;
  if (f.merged) s += `,"merged":[${f.merged.join(',')}]`;
  return `${s}}`;
}
