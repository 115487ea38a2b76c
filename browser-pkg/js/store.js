// The client's store: bundles and models from the endpoint (an Edgewise
// edge or origin) with HTTP validators, bounded and timed out, kept in
// memory (an LRU of a few bundles) and in the Cache API across visits. A
// bundle's checksum and named digest are checked once, when it enters the store;
// models are verified against the sha256 that names them.

import { EdgewiseError } from './error.js';
import { bundleInfo, sha256, verifyBundle } from './index.js';

/** Bundles kept in memory (the Cache API keeps more, across visits). */
const MEMORY_BUNDLES = 8;
/** The Cache API store. Bumped when what is stored changes meaning. */
const CACHE_NAME = 'edgewise-v1';
/** Marks a stored response whose bundle passed the full check (checksum included). */
const VERIFIED = 'x-edgewise-verified';


/** @param {unknown} e @returns {EdgewiseError} */
export function asError(e) {
  if (e instanceof EdgewiseError) return e;
  const x = /** @type {any} */ (e);
  if (x?.name === 'EdgewiseError') return new EdgewiseError(String(x.code ?? 'internal'), String(x.message));
  return new EdgewiseError('internal', String(x?.message ?? x), { cause: e });
}

/**
 * A signal that aborts when `outer` does or after `ms`, and the cleanup.
 * @param {AbortSignal | undefined} outer
 * @param {number} ms
 */
function deadline(outer, ms) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(new EdgewiseError('endpoint-down', `no answer within ${ms} ms`)), ms);
  const onAbort = () => ctl.abort(outer?.reason);
  outer?.addEventListener('abort', onAbort, { once: true });
  return {
    signal: ctl.signal,
    done() {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onAbort);
    },
  };
}

/** @param {AbortSignal | undefined} signal */
export function checkAborted(signal) {
  if (signal?.aborted) throw new EdgewiseError('aborted', 'the request was aborted', { cause: signal.reason });
}

/**
 * @typedef {{ url: string, bytes: Uint8Array, etag: string | null, digest: string,
 *   info: ReturnType<typeof bundleInfo>, cache: string, handle?: number }} BundleEntry
 * A bundle as the client holds it: checked once, with its facts read once.
 */

/** Bundles (and models) from the endpoint, with validators and a store. */
export class Store {
  /** @type {Map<string, BundleEntry>} */
  bundles = new Map();
  /** @type {Map<string, Uint8Array>} */
  models = new Map();
  /** @type {Promise<Cache | null> | null} */
  #cache = null;

  /**
   * @param {{ endpoint: string, fetch: typeof fetch, token?: (refresh: boolean, user: bigint) => string | Promise<string>,
   *   timeoutMs: number, maxBytes: number, persist: boolean, onEvict: (e: BundleEntry) => void }} o
   */
  constructor(o) {
    this.o = o;
  }

  /** The Cache API store, or null where the page has none (Node, opaque origins). */
  #storage() {
    if (this.#cache === null) {
      const caches = /** @type {any} */ (globalThis).caches;
      this.#cache = this.o.persist && caches?.open ? caches.open(CACHE_NAME).catch(() => null) : Promise.resolve(null);
    }
    return this.#cache;
  }

  /** @param {string} path */
  url(path) {
    return new URL(path.replace(/^\//, ''), this.o.endpoint).toString();
  }

  /**
   * One GET with the user's token (refreshed once on a 401), a timeout and a
   * size bound. Resolves to the response (200 or 304).
   * @param {string} url
   * @param {{ personal: boolean, user?: bigint, etag?: string | null, signal?: AbortSignal }} opts
   */
  async get(url, opts) {
    checkAborted(opts.signal);
    let res;
    for (const refresh of [false, true]) {
      /** @type {Record<string, string>} */
      const headers = {};
      if (opts.etag) headers['if-none-match'] = opts.etag;
      if (opts.personal) {
        const t = this.o.token && opts.user !== undefined ? await this.o.token(refresh, opts.user) : undefined;
        if (!t) throw new EdgewiseError('no-token', 'a personal feed needs the signed-in user\'s token (`token` option)');
        headers.authorization = `Bearer ${t}`;
      }
      const d = deadline(opts.signal, this.o.timeoutMs);
      try {
        res = await this.o.fetch(url, { headers, signal: d.signal, credentials: 'omit' });
      } catch (e) {
        if (opts.signal?.aborted) throw new EdgewiseError('aborted', 'the request was aborted', { cause: e });
        const why = d.signal.aborted ? asError(d.signal.reason).message : asError(e).message;
        throw new EdgewiseError('endpoint-down', `${url} could not be reached: ${why}`, { cause: e });
      } finally {
        d.done();
      }
      if (res.status !== 401 || !opts.personal) break;
    }
    if (res.status === 304 || res.ok) return res;
    let detail = '';
    try {
      detail = (await res.text()).slice(0, 300);
    } catch {
      detail = '';
    }
    const err = new EdgewiseError(`http-${res.status}`, `GET ${url} answered HTTP ${res.status}${detail ? `: ${detail}` : ''}`);
    /** @type {any} */ (err).status = res.status;
    throw err;
  }

  /**
   * The body of a 200, refused above `maxBytes` (before reading, when the
   * length is declared).
   * @param {Response} res
   * @param {string} url
   */
  async body(res, url) {
    const declared = Number(res.headers.get('content-length') ?? NaN);
    if (declared > this.o.maxBytes) {
      throw new EdgewiseError('too-large', `${url} is ${declared} bytes; at most ${this.o.maxBytes} are accepted`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.byteLength > this.o.maxBytes) {
      throw new EdgewiseError('too-large', `${url} is ${bytes.byteLength} bytes; at most ${this.o.maxBytes} are accepted`);
    }
    return bytes;
  }

  /**
   * A bundle already on the device: memory, else the Cache API (checked when
   * it was stored). `null` when there is none.
   * @param {string} url
   * @returns {Promise<BundleEntry | null>}
   */
  async local(url) {
    const held = this.bundles.get(url);
    if (held) {
      this.#touch(url, held);
      return { ...held, cache: 'memory' };
    }
    const storage = await this.#storage();
    if (!storage) return null;
    try {
      const res = await storage.match(url);
      if (!res || res.headers.get(VERIFIED) !== '1') return null;
      const bytes = new Uint8Array(await res.arrayBuffer());
      const entry = this.#entry(url, bytes, res.headers.get('etag'), 'cache-storage');
      this.#remember(entry);
      return entry;
    } catch {
      // A store the browser evicted or cannot read is only a miss.
      return null;
    }
  }

  /**
   * @param {string} url @param {Uint8Array} bytes @param {string | null} etag @param {string} cache
   * @returns {BundleEntry}
   */
  #entry(url, bytes, etag, cache) {
    return { url, bytes, etag, digest: sha256(bytes), info: bundleInfo(bytes), cache };
  }

  /** @param {string} url @param {BundleEntry} e */
  #touch(url, e) {
    this.bundles.delete(url);
    this.bundles.set(url, e);
  }

  /** @param {BundleEntry} e */
  #remember(e) {
    const old = this.bundles.get(e.url);
    if (old && old.bytes !== e.bytes) this.o.onEvict(old);
    this.#touch(e.url, e);
    while (this.bundles.size > MEMORY_BUNDLES) {
      const [url, first] = this.bundles.entries().next().value;
      this.bundles.delete(url);
      this.o.onEvict(first);
    }
  }

  /**
   * The bundle at `url` from the network, revalidating the copy on the device
   * (`If-None-Match`). A new body is checked (structure, checksum, and the digest
   * the response names) before it is stored or ranked.
   * @param {string} url
   * @param {{ personal: boolean, user?: bigint, signal?: AbortSignal }} opts
   * @returns {Promise<BundleEntry>}
   */
  async fetchBundle(url, opts) {
    const stored = this.bundles.get(url) ?? (await this.local(url));
    const res = await this.get(url, { ...opts, etag: stored?.etag });
    const edge = res.headers.get('x-edgewise-cache');
    if (res.status === 304 && stored) {
      const entry = { ...this.bundles.get(url) ?? stored, cache: edge ?? 'revalidated' };
      this.#remember(entry);
      return entry;
    }
    if (res.status === 304) throw new EdgewiseError('http-304', `GET ${url} answered 304 with nothing stored to reuse`);
    const bytes = await this.body(res, url);
    try {
      verifyBundle(bytes);
    } catch (e) {
      throw new EdgewiseError('bad-bundle', `${url}: ${asError(e).message}`, { cause: e });
    }
    const entry = this.#entry(url, bytes, res.headers.get('etag'), edge ?? 'origin');
    const named = res.headers.get('x-edgewise-bundle-digest');
    if (named && named.toLowerCase() !== entry.digest) {
      throw new EdgewiseError('digest-mismatch', `${url}: the bundle's sha256 is ${entry.digest}, not ${named} as the response says`);
    }
    this.#remember(entry);
    void this.#persist(url, bytes, entry.etag);
    return entry;
  }

  /** @param {string} url @param {Uint8Array} bytes @param {string | null} etag */
  async #persist(url, bytes, etag) {
    const storage = await this.#storage();
    if (!storage) return;
    /** @type {Record<string, string>} */
    const headers = { 'content-type': 'application/vnd.edgewise.bundle', [VERIFIED]: '1' };
    if (etag) headers.etag = etag;
    try {
      await storage.put(url, new Response(bytes, { headers }));
    } catch {
      // Out of quota: the memory copy still serves this visit.
    }
  }

  /**
   * Model `digest`, fetched once (immutable), verified against its sha256
   * before anything uses it.
   * @param {string} digest
   * @param {AbortSignal | undefined} signal
   */
  async model(digest, signal) {
    const held = this.models.get(digest);
    if (held) return held;
    const url = this.url(`/v1/models/${digest}`);
    const storage = await this.#storage();
    let bytes = null;
    try {
      const res = storage ? await storage.match(url) : undefined;
      if (res) bytes = new Uint8Array(await res.arrayBuffer());
    } catch {
      bytes = null;
    }
    if (bytes === null || sha256(bytes) !== digest) {
      const res = await this.get(url, { personal: false, signal });
      bytes = await this.body(res, url);
      const actual = sha256(bytes);
      if (actual !== digest) {
        throw new EdgewiseError('digest-mismatch', `model ${digest} failed verification: its sha256 is ${actual}`);
      }
      if (storage) void storage.put(url, new Response(bytes)).catch(() => {});
    }
    this.models.set(digest, bytes);
    return bytes;
  }

  /** The digest of the origin's current model (`/v1/models/current`). @param {AbortSignal | undefined} signal */
  async currentModel(signal) {
    const url = this.url('/v1/models/current');
    const res = await this.get(url, { personal: false, signal });
    let manifest;
    try {
      manifest = JSON.parse(new TextDecoder().decode(await this.body(res, url)));
    } catch (e) {
      throw new EdgewiseError('bad-model', `${url} is not a model manifest: ${asError(e).message}`, { cause: e });
    }
    const digest = manifest?.digest;
    if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest)) {
      throw new EdgewiseError('bad-model', `${url} names no sha256 digest`);
    }
    return digest;
  }

  /**
   * Forgets what is stored for `prefix` (a user's bundles), or everything.
   * @param {string} [prefix]
   */
  async forget(prefix) {
    for (const [url, e] of [...this.bundles]) {
      if (prefix === undefined || url.startsWith(prefix)) {
        this.bundles.delete(url);
        this.o.onEvict(e);
      }
    }
    const storage = await this.#storage();
    if (!storage) return;
    for (const req of await storage.keys()) {
      if (prefix === undefined || req.url.startsWith(prefix)) await storage.delete(req);
    }
  }
}
