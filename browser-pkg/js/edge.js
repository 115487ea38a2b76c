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
// The guest and the byte formats are in `edge-guest.js`; this file is the HTTP side.

import {
  DEFAULTS, Guest, GuestError, HttpError, JSON_TYPE, MAX_SEEN, NDJSON, U64_MAX, bad, base64Decode, bundleView, decodeResult,
  encodeContext, f32Json, historyEntries, jsonError, msJson, now, readBounded, retrievalOrder, sessionBytes, sha256Hex,
  stableMerge,
} from './edge-guest.js';

// The guest and its formats are part of this module's API.
export {
  ABI_VERSION, DEFAULTS, EXPORTS, Guest, GuestError, HttpError, MAX_SEEN,
  REGION_ANY, STATUS, base64Decode, bundleView, crc32, decodeContext, decodeResult, encodeContext,
  f32Json, hex, historyEntries, jsonError, retrievalOrder, sessionBytes, sha256Hex, stableMerge,
} from './edge-guest.js';

/** The tenant of a request that names none. */
export const DEFAULT_TENANT = 'default';
const KNOWN_QUERY = ['user', 'region', 'k', 'shown', 'tenant', 'refine'];
const BODY_FIELDS = ['seen', 'session', 'history', 'now_ms'];
const STORED_AT = 'x-edgewise-stored-at';

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
      throw bad(`invalid feed body: unknown field \`${k}\`, expected one of \`seen\`, \`session\`, \`history\`, \`now_ms\``);
    }
  }
  const out = { seen: [], session: null, history: null, nowMs: null };
  if (v.seen !== undefined) {
    if (!Array.isArray(v.seen)) throw bad('invalid feed body: seen must be an array of item ids');
    if (v.seen.length > MAX_SEEN) throw bad(`seen has ${v.seen.length} ids; at most ${MAX_SEEN}`);
    out.seen = v.seen.map((x) => bodyU64(x, 'each seen id'));
  }
  if (v.session !== undefined && v.session !== null) {
    if (typeof v.session !== 'string') throw bad('invalid feed body: session must be a base64 string');
    out.session = v.session;
  }
  if (v.history !== undefined && v.history !== null) {
    if (typeof v.history !== 'string') throw bad('invalid feed body: history must be a base64 string');
    out.history = v.history;
  }
  if (v.now_ms !== undefined && v.now_ms !== null) out.nowMs = bodyU64(v.now_ms, 'now_ms');
  return out;
}

/**
 * A base64 field of the feed body, decoded and read by `read` (which names
 * the field in its own errors); both failures are a 400 with the reason.
 * @template T @param {string} b64 @param {string} name @param {(raw: Uint8Array) => T} read
 */
function bodyBytes(b64, name, read) {
  let raw;
  try {
    raw = base64Decode(b64);
  } catch (e) {
    throw bad(`${name} is not base64: ${/** @type {any} */ (e).message}`);
  }
  try {
    return read(raw);
  } catch (e) {
    throw bad(/** @type {any} */ (e).message);
  }
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
  body ??= { seen: [], session: null, history: null, nowMs: null };
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
  const session = body.session === null ? null : bodyBytes(body.session, 'session', sessionBytes);
  const history = body.history === null ? null : bodyBytes(body.history, 'history', historyEntries);
  const rq = query.get('refine');
  let refine;
  if (rq === undefined || rq === 'true' || rq === '1') refine = true;
  else if (rq === 'false' || rq === '0') refine = false;
  else throw bad(`refine=${JSON.stringify(rq)} must be true or false`);
  refine = refine && user !== null; // An anonymous feed has no personal bundle to refine with.
  const tenant = query.get('tenant') ?? DEFAULT_TENANT;
  if (tenant.length === 0 || new TextEncoder().encode(tenant).length > 64) throw bad('tenant must be 1 to 64 characters');
  return { user, region, k, shown, tenant, refine, ctx: { region, k, nowMs: t, seen: body.seen, session, history } };
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
          const ewcx = encodeContext({
            region: c.region, k: c.k, nowMs: c.nowMs, seen: c.seen, session: c.session, history: c.history,
          });
          items = decodeResult(guest.rank(m.digest, m.bytes, bundle, ewcx, bundleDigest)).items;
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
