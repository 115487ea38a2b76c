// The high-level client: `Edgewise.create({ endpoint, token })`, then
// `feed()` (a preliminary frame from what is on the device, then a refined
// one from the network, stable-merged), `track()` (the session embedding
// moves at once; the event is queued for the origin), `rerank()` and
// `explain()`. Every ranking runs on the device (WebGPU or wasm) through the
// same core the origin and the edge run.
//
// Bundles and models come from `endpoint` (an Edgewise edge or origin) with
// HTTP validators: a stored copy is revalidated with `If-None-Match`, and a
// bundle's checksum is checked once, when it enters the store (memory, and the
// Cache API where the page has one); models are verified against the sha256
// that names them before they are used (`store.js`).

import { EdgewiseError, u64 as checkU64 } from './error.js';
import { EventQueue } from './events.js';
import {
  Core, Ranker, RankerWorker, agreement, bundleInfo, bundleLayout, bundleUnion, decodeResult, encodeContext, historyInfo, historyObserve, sessionInfo,
  sessionNew, sessionObserve,
  sha256, sourceNames, stableMerge,
} from './index.js';
import { Store, asError, checkAborted } from './store.js';

/** A kept personal bundle older than this is not ranked in a preliminary frame (30 days). */
const KEPT_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

/** @typedef {import('./store.js').BundleEntry} BundleEntry */

const KINDS = new Set(['impression', 'click', 'like', 'skip', 'hide', 'dwell']);
/** Most ids remembered as seen (the core accepts this many in a context). */
const MAX_SEEN = 10_000;
/** The candidate sources, by source-mask bit (read from the core once it is loaded). @type {string[] | null} */
let SOURCES = null;
/** @param {number} mask */
const sourcesOf = (mask) => (SOURCES ??= sourceNames()).filter((_, j) => (mask >> j) & 1);


/** @param {unknown} v @param {string} what */
const u64 = (v, what) => checkU64(v, what, 'bad-options');

/** @param {unknown} v @param {string} what @param {number} min @param {number} max */
function int(v, what, min, max) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new EdgewiseError('bad-options', `${what} must be a whole number in ${min}..=${max}, not ${String(v)}`);
  }
  return v;
}

const now = () => (globalThis.performance?.now ? performance.now() : Date.now());


/**
 * @typedef {{ id: bigint, score: number, row: number, preScore: number, mainScore: number, mmrPenalty: number,
 *   mmrScore: number, sources: string[], creator: number, kept?: boolean }} FrameItem
 * @typedef {{ kind: 'preliminary' | 'refined', source: 'memory' | 'cache-storage' | 'network',
 *   scope: 'regional' | 'personal', items: FrameItem[], ranked: bigint[], shown: number,
 *   bundle: { digest: string, cache: string, rows: number, createdAtMs: number },
 *   merged?: { kept: string, regional: string }, model: string,
 *   engine: string, agreement: { overlap: number, kendallTau: number | null } | null,
 *   stages: Record<string, number>, timings: { fetch: number, rank: number, total: number },
 *   replay: { bundle: Uint8Array, context: Uint8Array, result: Uint8Array } }} Frame
 */

/**
 * The Edgewise client. Events: `error` (`detail`: an `EdgewiseError` from the
 * event queue: a refused batch or a full queue) and `flushed`.
 */
export class Edgewise extends EventTarget {
  /** @type {Ranker | RankerWorker} */
  #ranker;
  /** @type {Store} */
  #store;
  /** @type {EventQueue | null} */
  #events = null;
  /** @type {string | null} the model the ranker holds */
  #model = null;
  /** @type {Uint8Array | null} */
  #session = null;
  /** The user's recent interactions (`EWHS` bytes), or `null` before the first. @type {Uint8Array | null} */
  #history = null;
  /** @type {Set<bigint>} */
  #seen = new Set();
  /**
   * What the page shows: the last frame's bundle and display order, how many
   * of its items the user has seen, and the last ranking's explanation.
   * @type {{ entry: BundleEntry, order: bigint[], shown: number, k: number, region: number, user: bigint | null,
   *   result: ReturnType<typeof decodeResult> } | null}
   */
  #view = null;
  /** Which feed() may write the view (`feed` and `forget` bump it). */
  #feedSeq = 0;
  /** @type {(refresh: boolean, user: bigint) => string | Promise<string>} */
  #token;
  /**
   * Which ranking put each item of the display order where it is (the
   * preliminary one for a kept item, the refined one or a re-rank for the
   * rest): what `explain()` reads.
   * @type {Map<bigint, { entry: BundleEntry, result: ReturnType<typeof decodeResult> }>}
   */
  #placed = new Map();
  /** Where each held bundle's int8 embeddings start. @type {WeakMap<Uint8Array, number>} */
  #embeddingsAt = new WeakMap();
  #candidates;
  #keptMaxAgeMs;
  /** @type {() => number} */
  #clock;

  /** @param {Ranker | RankerWorker} ranker @param {Store} store @param {any} o */
  constructor(ranker, store, o) {
    super();
    this.#ranker = ranker;
    this.#store = store;
    this.#token = o.token;
    this.#candidates = o.candidates;
    this.#keptMaxAgeMs = o.keptMaxAgeMs;
    this.#clock = o.clock;
    this.endpoint = store.o.endpoint;
  }

  /**
   * @param {{ endpoint: string | URL, token?: (refresh: boolean, user: bigint) => string | Promise<string>,
   *   wasm?: import('./index.js').WasmInputArg, gpu?: 'auto' | 'off' | 'require', worker?: boolean,
   *   fetch?: typeof fetch, eventsEndpoint?: string | URL, candidates?: number, timeoutMs?: number,
   *   maxBundleBytes?: number, persist?: boolean, gpuMinRows?: number, events?: object,
   *   clock?: () => number, keptMaxAgeMs?: number }} options
   *   `clock`: ms since the epoch for rankings and events (default `Date.now`).
   *   `keptMaxAgeMs`: the oldest kept personal bundle a preliminary frame ranks (default 30 days).
   */
  static async create(options) {
    if (!options?.endpoint) throw new EdgewiseError('bad-options', 'Edgewise.create needs an endpoint (the edge or origin URL)');
    let endpoint;
    try {
      endpoint = new URL(String(options.endpoint).replace(/\/?$/, '/'), globalThis.location?.href).toString();
    } catch (e) {
      throw new EdgewiseError('bad-options', `endpoint ${String(options.endpoint)} is not a URL`, { cause: e });
    }
    if (options.token !== undefined && typeof options.token !== 'function') {
      throw new EdgewiseError('bad-options', 'token must be a function (refresh: boolean, user: bigint) => token');
    }
    const fetchFn = options.fetch ?? globalThis.fetch?.bind(globalThis);
    if (typeof fetchFn !== 'function') throw new EdgewiseError('bad-options', 'no fetch: pass one as `fetch`');
    const candidates = int(options.candidates ?? 300, 'candidates', 1, 5000);
    const timeoutMs = int(options.timeoutMs ?? 10_000, 'timeoutMs', 1, 600_000);
    const maxBytes = int(options.maxBundleBytes ?? 64 << 20, 'maxBundleBytes', 1, 2 ** 31);
    const keptMaxAgeMs = int(options.keptMaxAgeMs ?? KEPT_MAX_AGE_MS, 'keptMaxAgeMs', 0, 365 * 24 * 3600 * 1000);
    // The main thread always has the core: contexts, sessions and results are decoded here.
    await Core.load(options.wasm);
    const rankerOptions = { gpu: options.gpu ?? 'auto', gpuMinRows: options.gpuMinRows };
    const ranker = options.worker
      ? await RankerWorker.create({
        ...rankerOptions,
        wasm: typeof options.wasm === 'string' || options.wasm instanceof URL ? options.wasm : undefined,
      })
      : await Ranker.create({ ...rankerOptions, wasm: options.wasm });
    /** @type {Edgewise} */
    let client;
    const store = new Store({
      endpoint, fetch: fetchFn, token: options.token, timeoutMs, maxBytes, persist: options.persist !== false,
      onEvict: (e) => client?.#drop(e),
    });
    const clock = options.clock ?? Date.now;
    if (typeof clock !== 'function') throw new EdgewiseError('bad-options', 'clock must be a function returning ms since the epoch');
    client = new Edgewise(ranker, store, { token: options.token, candidates, clock, keptMaxAgeMs });
    if (options.token) {
      client.#events = new EventQueue({
        ...options.events, endpoint: options.eventsEndpoint ?? endpoint, token: options.token, fetch: fetchFn,
      });
      for (const type of ['error', 'flushed']) {
        client.#events.addEventListener(type, (e) => {
          client.dispatchEvent(new CustomEvent(type, { detail: /** @type {CustomEvent} */ (e).detail }));
        });
      }
    }
    return client;
  }

  /** Where rankings run: `'webgpu'` or `'wasm-simd'`. */
  get engine() {
    return this.#ranker.engine;
  }

  /** The WebGPU adapter's description when `engine` is `'webgpu'`. */
  get adapter() {
    return this.#ranker.adapter;
  }

  /** How many times the GPU failed and wasm took over, and the last reason. */
  get fallbacks() {
    return { count: this.#ranker.fallbacks, last: this.#ranker.lastFallback };
  }

  /** Events queued for the origin and not yet acknowledged. */
  get pendingEvents() {
    return this.#events?.pending ?? 0;
  }

  /** The local session state (`EWSS` bytes), or `null` before the first interaction. */
  get session() {
    return this.#session;
  }

  /** @param {BundleEntry} e */
  #drop(e) {
    if (e.handle !== undefined && this.#ranker instanceof RankerWorker) {
      void this.#ranker.dropBundle(e.handle).catch(() => {});
    }
  }

  /** @param {bigint | null} user @param {number} region */
  #paths(user, region) {
    const k = this.#candidates;
    return {
      regional: this.#store.url(`/v1/regions/${region}/bundle?k=${k}`),
      personal: user === null ? null : this.#store.url(`/v1/users/${user}/candidates?k=${k}&region=${region}`),
    };
  }

  /** The model a bundle names (else the origin's current one), in the ranker. @param {BundleEntry} e @param {AbortSignal | undefined} signal */
  async #modelFor(e, signal) {
    const digest = e.info.model ?? (await this.#store.currentModel(signal));
    if (this.#model !== digest) {
      const bytes = await this.#store.model(digest, signal);
      const loaded = await this.#ranker.loadModel(bytes.slice());
      if (loaded !== digest) {
        throw new EdgewiseError('digest-mismatch', `model ${digest} loaded as ${loaded}`);
      }
      this.#model = digest;
    }
    return digest;
  }

  /**
   * Ranks a bundle on the device with the current session.
   * @param {BundleEntry} e
   * @param {{ k: number, region: number, seen: Iterable<bigint>, signal?: AbortSignal }} o
   */
  async #rank(e, o) {
    const model = await this.#modelFor(e, o.signal);
    const session = this.#sessionDim() === e.info.dim ? /** @type {Uint8Array} */ (this.#session) : undefined;
    const history = this.#history !== null && historyInfo(this.#history).dim === e.info.dim ? this.#history : undefined;
    const context = encodeContext({
      k: o.k, region: o.region, nowMs: Math.floor(this.#clock()), seen: o.seen, session, history, checksumVerified: true,
    });
    const t = now();
    let ranked;
    if (this.#ranker instanceof RankerWorker) {
      const held = this.#store.bundles.get(e.url);
      if (held && held.bytes === e.bytes) {
        held.handle ??= await this.#ranker.addBundle(e.bytes.slice());
        ranked = await this.#ranker.rankWithEngine(held.handle, context);
      } else {
        ranked = await this.#ranker.rankWithEngine(e.bytes, context);
      }
    } else {
      ranked = await this.#ranker.rankWithEngine(e.bytes, context);
    }
    const rankMs = now() - t;
    const { bytes, engine } = ranked;
    return { result: decodeResult(bytes), bytes, context, model, rankMs, engine };
  }

  /**
   * What happened to every candidate row of a ranking: outcome name → rows.
   * @param {ReturnType<typeof decodeResult>} result
   */
  static #stages(result) {
    /** @type {Record<string, number>} */
    const out = {};
    const counts = new Array(result.outcomes.length).fill(0);
    for (const code of result.rows.outcome) counts[code] += 1;
    result.outcomes.forEach((/** @type {string} */ name, /** @type {number} */ i) => {
      if (counts[i] > 0) out[name] = counts[i];
    });
    return out;
  }

  /**
   * A ranked item with the sources that found it and its creator.
   * @param {any} it @param {BundleEntry} e
   * @returns {FrameItem}
   */
  static #described(it, e) {
    return { ...it, sources: sourcesOf(e.info.sourceMasks[it.row] ?? 0), creator: e.info.creators[it.row] ?? 0 };
  }

  #sessionDim() {
    return this.#session === null ? -1 : sessionInfo(this.#session).dim;
  }

  /**
   * The feed: an async iterable of frames. First a **preliminary** frame,
   * ranked at once from what is on the device (the user's last personal
   * bundle, no older than `keptMaxAgeMs`, with the region's rows it lacks
   * after its own, ranked with the user's embedding it carries; else the
   * region's; fetched when nothing is stored); then a
   * **refined** frame from the network (the user's personal bundle, or the
   * regional one revalidated for an anonymous visitor), stable-merged so the
   * items already shown keep their places. An anonymous visitor with nothing
   * stored gets one frame (the regional bundle is all there is to rank).
   * Errors end the iteration with an `EdgewiseError`; the last frame stands.
   * @param {{ user?: bigint | number, region?: number, k?: number, signal?: AbortSignal,
   *   shown?: number | (() => number) }} [options]
   *   `shown`: how many preliminary items the page has shown when the refined
   *   frame arrives (default: up to the last one with a tracked impression).
   * @returns {AsyncGenerator<Frame, void, void>}
   */
  async *feed(options = {}) {
    const user = options.user === undefined || options.user === null ? null : u64(options.user, 'user');
    const region = int(options.region ?? 0, 'region', 0, 31);
    const k = int(options.k ?? 20, 'k', 1, 1000);
    const signal = options.signal;
    if (user !== null && !this.#token) {
      throw new EdgewiseError('no-token', 'a personal feed needs the signed-in user\'s token (`token` option)');
    }
    const start = now();
    // One feed at a time: a newer feed() (or forget()) supersedes this one,
    // which then ends before it writes anything the page shares.
    const seq = ++this.#feedSeq;
    const current = () => {
      checkAborted(signal);
      if (seq !== this.#feedSeq) throw new EdgewiseError('aborted', 'a newer feed() (or forget()) superseded this one');
    };
    const paths = this.#paths(user, region);
    // The refined bundle is asked for at once, in parallel with the preliminary ranking.
    const refinedUrl = paths.personal ?? paths.regional;
    const refining = this.#store.fetchBundle(refinedUrl, { personal: user !== null, user: user ?? undefined, signal });
    refining.catch(() => {}); // handled below; never an unhandled rejection if the caller stops early
    const seen = () => [...this.#seen].slice(-MAX_SEEN);

    /** @type {Frame | null} */
    let first = null;
    const kept = paths.personal ? await this.#kept(paths.personal) : null;
    const regionalHere = await this.#store.local(paths.regional);
    /** @type {{ kept: string, regional: string } | undefined} */
    let merged;
    let local = kept ?? regionalHere;
    if (kept !== null && regionalHere !== null) {
      const union = this.#union(kept, regionalHere);
      if (union !== null) {
        local = union;
        merged = { kept: kept.digest, regional: regionalHere.digest };
      } else {
        local = regionalHere; // a retrain between the two: the kept bundle no longer fits the model
      }
    }
    let source = /** @type {Frame['source']} */ (local?.cache === 'memory' ? 'memory' : 'cache-storage');
    let fetchMs = now() - start;
    let refines = true;
    if (local === null) {
      // Nothing on the device: the regional bundle (shared, cached by the edge)
      // is the speculative one. For an anonymous visitor it is also all there
      // is to rank: one frame.
      try {
        local = await (user === null ? refining : this.#store.fetchBundle(paths.regional, { personal: false, signal }));
        source = 'network';
        fetchMs = now() - start;
        refines = user !== null;
      } catch (e) {
        if (user === null || asError(e).code === 'aborted') throw asError(e);
        local = null; // the refined frame may still come
      }
    }
    if (local !== null) {
      current();
      const r = await this.#rank(local, { k, region, seen: seen() });
      current();
      const ranked = r.result.items.map((/** @type {any} */ it) => it.id);
      const items = r.result.items.map((/** @type {any} */ it) => Edgewise.#described(it, /** @type {BundleEntry} */ (local)));
      first = this.#frame('preliminary', source, local, r, ranked, items, 0, null, { fetch: fetchMs, start });
      if (merged) first.merged = merged;
      this.#view = { entry: local, order: ranked, shown: 0, k, region, user, result: r.result };
      const placed = { entry: local, result: r.result };
      this.#placed = new Map(ranked.map((id) => [id, placed]));
      yield first;
    }
    if (!refines) return;
    let refined;
    try {
      refined = await refining;
    } catch (e) {
      throw asError(e);
    }
    current();
    const fetched = now() - start;
    const r = await this.#rank(refined, { k, region, seen: seen() });
    current();
    const ranked = r.result.items.map((/** @type {any} */ it) => it.id);
    const view = this.#view;
    let order = ranked;
    let shown = 0;
    if (first !== null && view !== null) {
      shown = this.#shownOf(view, options.shown);
      order = stableMerge(view.order, shown, ranked, k);
    }
    const byId = new Map(r.result.items.map((/** @type {any} */ it) => [it.id, Edgewise.#described(it, refined)]));
    const prior = new Map((first?.items ?? []).map((it) => [it.id, it]));
    const items = order.map((id, i) => {
      // A kept item is the one the page showed, as the ranking that placed it scored it.
      const it = i < shown ? prior.get(id) ?? byId.get(id) : byId.get(id) ?? prior.get(id);
      return { ...it, kept: i < shown };
    });
    const agree = first === null ? null : agreement(first.ranked, ranked, k);
    const frame = this.#frame('refined', 'network', refined, r, ranked, items, shown, agree, { fetch: fetched, start });
    this.#view = { entry: refined, order, shown, k, region, user, result: r.result };
    const placed = { entry: refined, result: r.result };
    const before = this.#placed;
    this.#placed = new Map(order.map((id, i) => [id, i < shown ? before.get(id) ?? placed : placed]));
    yield frame;
  }

  /** The user's kept personal bundle, if it is young enough. @param {string} url */
  async #kept(url) {
    const e = await this.#store.local(url);
    if (e === null || this.#clock() - e.info.createdAtMs > this.#keptMaxAgeMs) return null;
    return e;
  }

  /**
   * The kept bundle's rows, then the regional rows it lacks (the core's
   * `bundle::union`), as a bundle entry of its own; `null` when the two
   * differ in shape or feature schema.
   * @param {BundleEntry} kept @param {BundleEntry} regional
   * @returns {BundleEntry | null}
   */
  #union(kept, regional) {
    let bytes;
    try {
      bytes = bundleUnion(kept.bytes, regional.bytes, Math.floor(this.#clock()));
    } catch {
      return null;
    }
    return { url: kept.url, bytes, etag: null, digest: sha256(bytes), info: bundleInfo(bytes), cache: kept.cache };
  }

  /**
   * @param {{ order: bigint[], shown: number }} view
   * @param {number | (() => number) | undefined} option
   */
  #shownOf(view, option) {
    if (typeof option === 'function') return Math.min(int(option(), 'shown', 0, 2 ** 31), view.order.length);
    if (option !== undefined) return int(option, 'shown', 0, 100_000);
    let shown = view.shown;
    view.order.forEach((id, i) => {
      if (this.#seen.has(id)) shown = Math.max(shown, i + 1);
    });
    return shown;
  }

  /**
   * @param {Frame['kind']} kind @param {Frame['source']} source @param {BundleEntry} e
   * @param {{ model: string, rankMs: number, engine: string, bytes: Uint8Array, context: Uint8Array,
   *   result: ReturnType<typeof decodeResult> }} r
   * @param {bigint[]} ranked @param {FrameItem[]} items
   * @param {number} shown @param {Frame['agreement']} agree @param {{ fetch: number, start: number }} t
   * @returns {Frame}
   */
  #frame(kind, source, e, r, ranked, items, shown, agree, t) {
    return {
      kind, source, scope: e.info.scope, items, ranked, shown,
      bundle: { digest: e.digest, cache: e.cache, rows: e.info.rows, createdAtMs: e.info.createdAtMs },
      model: r.model, engine: r.engine, agreement: agree, stages: Edgewise.#stages(r.result),
      timings: { fetch: t.fetch, rank: r.rankMs, total: now() - t.start },
      replay: { bundle: e.bytes, context: r.context, result: r.bytes },
    };
  }

  /**
   * Records an interaction: the session embedding moves at once (when the
   * item is in a bundle on the device), the item counts as seen, and, for a
   * signed-in user, the event is queued for `POST /v1/events`. Returns the
   * event's idempotency id (`null` when it is not sent: anonymous, or a full
   * queue, which dispatches an `error` event) and whether the session moved.
   * @param {{ item: bigint | number, kind: 'impression' | 'click' | 'like' | 'skip' | 'hide' | 'dwell',
   *   dwellMs?: number, time?: number }} event
   */
  track(event) {
    const item = u64(event?.item, 'item');
    if (!KINDS.has(event.kind)) {
      throw new EdgewiseError('bad-event', `unknown event kind ${String(event.kind)}: expected ${[...KINDS].join(', ')}`);
    }
    const time = event.time ?? Math.floor(this.#clock());
    let sessionUpdated = false;
    const found = this.#find(item);
    if (found !== null) {
      if (this.#sessionDim() !== found.entry.info.dim) {
        this.#session = sessionNew(found.entry.info.dim);
      }
      this.#session = sessionObserve(this.#session, found.entry.bytes, {
        row: found.row, kind: event.kind, dwellMs: event.dwellMs, nowMs: time,
      });
      this.#history = historyObserve(this.#history ?? new Uint8Array(), found.entry.bytes, {
        row: found.row, kind: event.kind, nowMs: time,
      });
      sessionUpdated = true;
    }
    if (event.kind !== 'dwell') {
      this.#seen.delete(item);
      this.#seen.add(item);
      if (this.#seen.size > MAX_SEEN) this.#seen.delete(this.#seen.values().next().value);
    }
    const view = this.#view;
    let eventId = null;
    if (this.#events !== null && view?.user != null) {
      eventId = this.#events.push({ user: view.user, item, kind: event.kind, region: view.region, time, dwellMs: event.dwellMs });
    }
    return { eventId, sessionUpdated };
  }

  /** The row of `item` in the shown bundle, else in any bundle held. @param {bigint} item */
  #find(item) {
    const entries = [this.#view?.entry, ...[...this.#store.bundles.values()].reverse()];
    for (const entry of entries) {
      if (!entry) continue;
      const row = entry.info.ids.indexOf(item);
      if (row >= 0) return { entry, row };
    }
    return null;
  }

  /**
   * Re-ranks what the user has not seen yet, on the device, with the session
   * as it is now (GPU when there is one and the bundle is large enough to pay,
   * else wasm). The shown items stay; returns the new order of the unseen ones,
   * what moved, and the agreement with the previous order.
   * @param {{ shown?: number }} [options]
   */
  async rerank(options = {}) {
    // A frame that lands while this ranking runs replaces the view it started
    // from: rank again from the new one (a few times at most), so a re-rank
    // never puts an older frame back.
    for (let attempt = 0; ; attempt += 1) {
      const view = this.#view;
      if (view === null) throw new EdgewiseError('no-feed', 'rerank() needs a frame from feed() first');
      const shown = this.#shownOf(view, options.shown);
      const kept = view.order.slice(0, shown);
      const before = view.order.slice(shown).filter((id) => !this.#seen.has(id));
      const want = view.k - kept.length;
      if (want <= 0) {
        return { items: [], order: view.order, moved: [], agreement: null, engine: this.engine, stages: {}, timings: { rank: 0 } };
      }
      const r = await this.#rank(view.entry, { k: want, region: view.region, seen: [...new Set([...this.#seen, ...kept])].slice(-MAX_SEEN) });
      if (this.#view !== view) {
        if (attempt < 4) continue;
        throw new EdgewiseError('aborted', 'the feed kept changing while rerank() ran: its result would be stale');
      }
      const items = r.result.items.map((/** @type {any} */ it) => Edgewise.#described(it, view.entry));
      const after = items.map((/** @type {any} */ it) => it.id);
      const was = new Map(before.map((id, i) => [id, i]));
      const moved = after.flatMap((id, to) => {
        const from = was.get(id);
        return from === to ? [] : [{ id, from: from ?? null, to }];
      });
      const agree = before.length > 0 ? agreement(before, after, Math.max(before.length, after.length)) : null;
      this.#view = { ...view, order: [...kept, ...after], shown, result: r.result };
      const placed = { entry: view.entry, result: r.result };
      const prior = this.#placed;
      this.#placed = new Map([...kept.map((id) => [id, prior.get(id) ?? placed]), ...after.map((id) => [id, placed])]);
      return {
        items, order: this.#view.order, moved, agreement: agree, engine: r.engine, stages: Edgewise.#stages(r.result),
        timings: { rank: r.rankMs },
      };
    }
  }

  /**
   * How the ranking that put item `id` where the page shows it treated it
   * (for an item not on the page: the last ranking): its row's outcome
   * (`selected`, `cut at pre-rank`, `filtered: seen`, `filtered: region`,
   * `cut by creator cap`, …), pre-rank score, main score, calibrated score,
   * creator and sources, and for a ranked item its place and MMR penalty.
   * `null` when the item is in none of those bundles.
   * @param {bigint | number} id
   */
  explain(id) {
    const item = u64(id, 'id');
    const view = this.#view;
    if (view === null) return null;
    const { entry, result } = this.#placed.get(item) ?? view;
    const row = entry.info.ids.indexOf(item);
    if (row < 0) return null;
    const { rows, outcomes, items } = result;
    const rank = items.findIndex((/** @type {any} */ it) => it.id === item);
    const ranked = rank >= 0 ? items[rank] : null;
    return {
      id: item, row, outcome: outcomes[rows.outcome[row]], preScore: rows.preScore[row], mainScore: rows.mainScore[row],
      calibrated: rows.calibrated[row], rank: rank >= 0 ? rank : null, mmrPenalty: ranked?.mmrPenalty ?? null,
      mmrScore: ranked?.mmrScore ?? null, creator: entry.info.creators[row],
      sources: sourcesOf(entry.info.sourceMasks[row]), bundle: entry.digest, model: this.#model,
    };
  }

  /**
   * The cosine similarity of two items' embeddings (the int8 vectors the
   * bundles hold; quantization scales are per row, so the cosine does not
   * depend on them), or `null` when either is in no bundle on the device or
   * their dimensions differ: why a like moved an item.
   * @param {bigint | number} a @param {bigint | number} b
   */
  similarity(a, b) {
    const [x, y] = [this.#embedding(u64(a, 'a')), this.#embedding(u64(b, 'b'))];
    if (x === null || y === null || x.length !== y.length) return null;
    let [dot, nx, ny] = [0, 0, 0];
    for (let i = 0; i < x.length; i += 1) {
      dot += x[i] * y[i];
      nx += x[i] * x[i];
      ny += y[i] * y[i];
    }
    return nx > 0 && ny > 0 ? dot / Math.sqrt(nx * ny) : 0;
  }

  /** Item `id`'s int8 embedding, from the bundle that placed it or any bundle held. @param {bigint} id */
  #embedding(id) {
    const placed = this.#placed.get(id)?.entry;
    const row = placed ? placed.info.ids.indexOf(id) : -1;
    const found = row >= 0 && placed ? { entry: placed, row } : this.#find(id);
    if (found === null) return null;
    const { bytes, info } = found.entry;
    let start = this.#embeddingsAt.get(bytes);
    if (start === undefined) {
      start = bundleLayout(bytes).start;
      this.#embeddingsAt.set(bytes, start);
    }
    return new Int8Array(bytes.buffer, bytes.byteOffset + start + found.row * info.dim, info.dim);
  }

  /** Sends the queued events now (never rejects; failures are `error` events). */
  flush() {
    return this.#events?.flush() ?? Promise.resolve();
  }

  /**
   * Forgets the local session and seen items, and the bundles stored for
   * `user` (all stored bundles when no user is named): call it on sign-out.
   * @param {{ user?: bigint | number }} [options]
   */
  async forget(options = {}) {
    this.#session = null;
    this.#history = null;
    this.#seen.clear();
    this.#view = null;
    this.#placed = new Map();
    this.#feedSeq += 1;
    if (options.user !== undefined) this.#events?.forgetUser(u64(options.user, 'user'));
    const prefix = options.user === undefined ? undefined : this.#store.url(`/v1/users/${u64(options.user, 'user')}/`);
    await this.#store.forget(prefix);
  }

  /** Stops timers and the worker, and frees the GPU; queued events are handed to the network first. */
  async close() {
    await this.flush();
    this.#events?.close();
    if (this.#ranker instanceof RankerWorker) this.#ranker.terminate();
    else this.#ranker.releaseGpu();
  }
}
