// The guest side of the JavaScript edge adapter (`edge.js`): the zero-import
// guest `edgewise_core.wasm` behind the ABI it exports (`core::abi`), and
// the byte formats around it, written in JavaScript so a CDN runtime needs
// nothing else: the EWCX context encoder, the EWRS result decoder, the
// bundle header view and the retrieval-order fallback, the stable merge,
// hex, base64, sha256 and CRC-32, and bounded reads of request and response
// bodies.

/** The guest ABI this adapter speaks (`core::abi::ABI_VERSION`). */
export const ABI_VERSION = 1;
/** The exports every guest has (`core::abi::EXPORTS`). */
export const EXPORTS = [
  'ew_abi_version', 'ew_alloc', 'ew_free', 'ew_load_model', 'ew_rank',
  'ew_result_ptr', 'ew_result_len', 'ew_error_ptr', 'ew_error_len',
];
/** `core::abi::Status` codes, by value. */
export const STATUS = ['Ok', 'BadModel', 'NoModel', 'BadBundle', 'BadContext', 'Incompatible', 'BadPointer', 'NoBundle'];
/** Most `seen` ids a feed request may carry (`edge-worker` `MAX_SEEN`). */
export const MAX_SEEN = 10_000;
/** `core::region::REGION_ANY`. */
export const REGION_ANY = 255;

export const U64_MAX = 0xffff_ffff_ffff_ffffn;
const U32_MAX = 0xffff_ffff;
const SESSION_MAX_DIM = 4096;
export const NDJSON = 'application/x-ndjson';
export const JSON_TYPE = 'application/json';

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

export const bad = (m) => new HttpError(400, m);

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
export const msJson = (x) => (Number.isFinite(x) ? String(Math.max(0, x)) : '0');

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

/**
 * Checks an `EWHS` stored history (`core::history::History::decode`: magic,
 * version, reserved bytes, entry count and dimension, length, CRC, and every
 * entry: zero padding, a kind below 8, a finite non-negative scale, newest
 * first) and returns `{ count, dim, entries }`, the entry bytes as `EWCX`
 * version 2 carries them, or `null` for an empty history.
 * @param {Uint8Array} b
 */
export function historyEntries(b) {
  const HEADER = 12;
  if (b.length < HEADER + 4) throw new Error(`history: ${b.length} bytes, shorter than its header and checksum`);
  if (b[0] !== 0x45 || b[1] !== 0x57 || b[2] !== 0x48 || b[3] !== 0x53) throw new Error('history: bad magic');
  if (b[4] !== 1) throw new Error(`history: version ${b[4]} is not supported (1)`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (crc32(b.subarray(0, b.length - 4)) !== dv.getUint32(b.length - 4, true)) throw new Error('history: checksum mismatch');
  if (b[5] !== 0 || b[10] !== 0 || b[11] !== 0) throw new Error("history: the header's reserved bytes are not zero");
  const count = dv.getUint16(6, true);
  const dim = dv.getUint16(8, true);
  if (count > 64) throw new Error('history: more than 64 entries');
  if (count > 0 && (dim === 0 || dim > 1024)) throw new Error("history: the dimension is not in 1..=1024");
  if (count === 0 && dim !== 0) throw new Error('history: an empty history names a dimension');
  const entry = 24 + dim;
  if (b.length !== HEADER + count * entry + 4) throw new Error("history: the length does not match the entry count");
  let before = U64_MAX;
  for (let l = 0; l < count; l++) {
    const at = HEADER + l * entry;
    const atMs = dv.getBigUint64(at + 8, true);
    const scale = dv.getFloat32(at + 16, true);
    if (b[at + 21] !== 0 || b[at + 22] !== 0 || b[at + 23] !== 0) throw new Error("history: an entry's padding is not zero");
    if (b[at + 20] >= 8) throw new Error("history: an entry's kind is not below 8");
    if (!(Number.isFinite(scale) && scale >= 0)) throw new Error("history: an entry's scale is negative or not finite");
    if (atMs > before) throw new Error('history: entries are not newest first');
    before = atMs;
  }
  return count === 0 ? null : { count, dim, entries: b.slice(HEADER, b.length - 4) };
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
 *   session?: Uint8Array | null, history?: { count: number, dim: number, entries: Uint8Array } | null }} c
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
  const history = c.history && c.history.count > 0 ? c.history : null;
  const len = 56 + 8 * seen.length + 4 * blocked.length + 4 * base.length + (session ? session.length : 0)
    + (history ? history.entries.length : 0);
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  out.set([0x45, 0x57, 0x43, 0x58, history ? 2 : 1, region], 0); // "EWCX", version 2 with a history, region
  dv.setUint16(6, c.checksumVerified ? 1 : 0, true);
  dv.setUint32(8, toU32(c.k, 'k'), true);
  dv.setUint32(12, toU32(c.prerankKeep ?? 0, 'prerankKeep'), true);
  dv.setBigUint64(16, toU64(c.nowMs, 'nowMs'), true);
  dv.setFloat32(24, share, true);
  dv.setUint16(28, history ? history.count : 0, true);
  dv.setUint16(30, history ? history.dim : 0, true);
  dv.setBigUint64(32, toU64(c.halfLifeMs ?? 1_800_000, 'halfLifeMs'), true);
  dv.setUint32(40, seen.length, true);
  dv.setUint32(44, blocked.length, true);
  dv.setUint32(48, base.length, true);
  dv.setUint32(52, session ? session.length : 0, true);
  let at = 56;
  for (const x of seen) { dv.setBigUint64(at, x, true); at += 8; }
  for (const x of blocked) { dv.setUint32(at, x, true); at += 4; }
  for (const x of base) { dv.setFloat32(at, x, true); at += 4; }
  if (session) {
    out.set(session, at);
    at += session.length;
  }
  if (history) out.set(history.entries, at);
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
    // The optional exports that keep a bundle loaded between rankings (`abi::OPTIONAL_EXPORTS`).
    this.keepsBundles = exports.get('ew_load_bundle') === 'function' && exports.get('ew_rank_loaded') === 'function';
    this.maxMemoryBytes = o.maxMemoryBytes ?? DEFAULTS.maxGuestMemoryBytes;
    /** @type {any} */
    this.inst = null;
    /** @type {string | null} the digest of the model the live instance holds */
    this.loaded = null;
    /** @type {string | null} the sha256 of the bundle the live instance keeps loaded */
    this.kept = null;
    this.stats = { instances: 0, traps: 0, modelLoads: 0, bundleLoads: 0, ranks: 0, dropped: 0, instantiateMs: 0 };
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
    this.kept = null;
    return x;
  }

  /** Drops the live instance (after a trap, or when its memory grew too large). */
  drop() {
    if (this.inst) this.stats.dropped++;
    this.inst = null;
    this.loaded = null;
    this.kept = null;
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
   *
   * With `bundleDigest` (the bundle's sha256, hex) and a module that has
   * the optional exports, the bundle is loaded into the instance once
   * (`ew_load_bundle`, its checksum and structure checked there) and later
   * rankings of the same digest only send the context (`ew_rank_loaded`), as
   * the Rust edge does; the bytes are the same either way. A bundle over an
   * eighth of the memory cap is sent with every call instead (keeping one
   * holds a second copy while it loads).
   * @param {string} digest @param {Uint8Array} model @param {Uint8Array} bundle @param {Uint8Array} ctx
   * @param {string | null} [bundleDigest]
   */
  rank(digest, model, bundle, ctx, bundleDigest = null) {
    return this.#call((x) => {
      if (this.loaded !== digest) {
        const [mp, ml] = Guest.#put(x, model);
        const st = x.ew_load_model(mp, model.length);
        x.ew_free(mp, ml);
        if (st !== 0) throw Guest.#fail(x, st, 'model load');
        this.loaded = digest;
        this.stats.modelLoads++;
      }
      if (this.keepsBundles && bundleDigest !== null && bundle.length <= this.maxMemoryBytes / 8) {
        if (this.kept !== bundleDigest) {
          this.kept = null;
          const [bp, bl] = Guest.#put(x, bundle);
          const st = x.ew_load_bundle(bp, bundle.length, 0);
          x.ew_free(bp, bl);
          if (st !== 0) throw Guest.#fail(x, st, 'bundle load');
          this.kept = bundleDigest;
          this.stats.bundleLoads++;
        }
        const [cp, cl] = Guest.#put(x, ctx);
        const st = x.ew_rank_loaded(cp, ctx.length);
        x.ew_free(cp, cl);
        if (st !== 0) throw Guest.#fail(x, st, 'ranking');
        this.stats.ranks++;
        return Guest.#region(x, x.ew_result_ptr() >>> 0, x.ew_result_len() >>> 0);
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

export const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

// ---------------------------------------------------------------------------
// Bounded reads.

/** Reads a body of at most `max` bytes; 413 (or `tooLarge`) beyond. */
export async function readBounded(body, declared, max, tooLarge) {
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

