// edgewise: the Edgewise ranking core in the browser.
//
// The low-level entry: `Core.load(wasm?)`, then `core.loadModel(bytes)` and
// `core.rank(bundle, context)`, which returns the `EWRS` result bytes, the same
// bytes the origin's and the edge's cores produce for the same inputs.
// Everything that fails throws an `EdgewiseError` with a `code`.

import init, * as wasm from './edgewise_core.js';
import { EdgewiseError, u64 } from './error.js';

export { EdgewiseError };
export { EventQueue } from './events.js';
export { Edgewise } from './client.js';

/** @param {unknown} e */
function toEdgewiseError(e) {
  if (e instanceof EdgewiseError) return e;
  if (e && typeof e === 'object' && /** @type {any} */ (e).name === 'EdgewiseError') {
    const err = /** @type {any} */ (e);
    return new EdgewiseError(String(err.code ?? 'internal'), String(err.message));
  }
  const message = e && typeof e === 'object' && 'message' in e ? String(/** @type {any} */ (e).message) : String(e);
  return new EdgewiseError('internal', message, { cause: e });
}

/**
 * @template T
 * @param {() => T} f
 * @returns {T}
 */
function call(f) {
  try {
    return f();
  } catch (e) {
    throw toEdgewiseError(e);
  }
}

/** @type {Promise<unknown> | null} */
let loading = null;

/**
 * Instantiates the wasm module once per page (or worker). `wasm` may be a
 * URL (or string), a `Response` (or a promise of one), the module's bytes or
 * a compiled `WebAssembly.Module`; by default the `.wasm` next to this file,
 * which bundlers (Vite, webpack 5) find through `new URL(…, import.meta.url)`.
 * @param {URL | string | Response | Promise<Response> | BufferSource | WebAssembly.Module} [wasmInput]
 */
async function instantiate(wasmInput) {
  if (loading === null) {
    const source = wasmInput ?? new URL('./edgewise_core_bg.wasm', import.meta.url);
    loading = init({ module_or_path: source }).catch((e) => {
      loading = null;
      throw new EdgewiseError('wasm-load', `the edgewise core could not be loaded: ${e?.message ?? e}`, { cause: e });
    });
  }
  await loading;
}

/** The ranking core: a loaded model and a ranker with its scratch space. */
export class Core {
  /** @type {wasm.Core} */
  #core;

  /** Use `Core.load()`. */
  constructor() {
    if (loading === null) {
      throw new EdgewiseError('wasm-load', 'call `await Core.load()` before creating a Core');
    }
    this.#core = call(() => new wasm.Core());
  }

  /**
   * Loads the wasm module (once) and returns a core with no model.
   * @param {URL | string | Response | Promise<Response> | BufferSource | WebAssembly.Module} [wasmInput]
   */
  static async load(wasmInput) {
    await instantiate(wasmInput);
    return new Core();
  }

  /**
   * Decodes and installs a model; returns its sha256 (hex).
   * @param {Uint8Array} bytes
   */
  loadModel(bytes) {
    return call(() => this.#core.loadModel(bytes));
  }

  /** The loaded model's sha256 (hex), or `undefined`. */
  get modelDigest() {
    return this.#core.modelDigest();
  }

  /**
   * Ranks a bundle for an `EWCX` context (`encodeContext`); returns the `EWRS` bytes.
   * @param {Uint8Array} bundle
   * @param {Uint8Array} context
   */
  rank(bundle, context) {
    return call(() => this.#core.rank(bundle, context));
  }

  /**
   * The int8 query a ranking of `bundle` for `context` scores rows against
   * (what a GPU scan needs), after every check `rank` makes.
   * @param {Uint8Array} bundle
   * @param {Uint8Array} context
   */
  quantizedQuery(bundle, context) {
    return call(() => this.#core.quantizedQuery(bundle, context));
  }

  /**
   * `rank`, given every row's int8 dot product with `quantizedQuery`'s query
   * (computed on the GPU): the same bytes.
   * @param {Uint8Array} bundle
   * @param {Uint8Array} context
   * @param {Int32Array} dots
   */
  rankWithDots(bundle, context, dots) {
    if (!(dots instanceof Int32Array)) {
      throw new EdgewiseError('incompatible', 'dots must be an Int32Array');
    }
    return call(() => this.#core.rankWithDots(bundle, context, dots));
  }

  /** Frees the core's memory now (otherwise the garbage collector does). */
  free() {
    this.#core.free();
  }
}

const U32_MAX = 0xffff_ffff;

/**
 * @param {string} name
 * @param {unknown} v
 * @param {number} max
 */
function whole(name, v, max) {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new EdgewiseError('bad-context', `${name} must be a whole number in 0..=${max}, not ${String(v)}`);
  }
  return v;
}

/**
 * Builds an `EWCX` context. Call after `Core.load()`.
 * @param {{ k?: number, region?: number, nowMs?: number, seen?: Iterable<bigint | number>, blocked?: Iterable<number>,
 *   base?: ArrayLike<number>, session?: Uint8Array, prerankKeep?: number, checksumVerified?: boolean,
 *   history?: Uint8Array }} [options]
 */
export function encodeContext(options = {}) {
  const k = whole('k', options.k ?? 20, U32_MAX);
  const region = options.region === undefined ? undefined : whole('region', options.region, 31);
  const nowMs = whole('nowMs', options.nowMs ?? Date.now(), Number.MAX_SAFE_INTEGER);
  const prerankKeep = whole('prerankKeep', options.prerankKeep ?? 0, U32_MAX);
  /** @type {bigint[]} */
  const seen = [];
  for (const id of options.seen ?? []) {
    const big = typeof id === 'bigint' ? id : Number.isSafeInteger(id) ? BigInt(id) : null;
    if (big === null || big < 0n || big > 0xffff_ffff_ffff_ffffn) {
      throw new EdgewiseError('bad-context', `seen ids must be u64 values, not ${String(id)}`);
    }
    seen.push(big);
  }
  const blocked = Uint32Array.from(options.blocked ?? [], (c) => whole('a blocked creator', c, U32_MAX));
  const base = Float32Array.from(options.base ?? []);
  const session = options.session ?? new Uint8Array();
  const history = options.history ?? new Uint8Array();
  return call(() =>
    wasm.encodeContext(k, region, nowMs, BigUint64Array.from(seen), blocked, base, session, prerankKeep,
      options.checksumVerified === true, history),
  );
}

/**
 * The stored history (`EWHS`) after an interaction with row `row` of
 * `bundle`: a `click`, `like` or `dwell` goes to the front (at most 64
 * entries, one per item); other kinds leave it as it was. Pass an empty
 * array to start one.
 * @param {Uint8Array} state
 * @param {Uint8Array} bundle
 * @param {{ row: number, kind: string, nowMs?: number }} event
 */
export function historyObserve(state, bundle, event) {
  const row = whole('row', event.row, U32_MAX);
  const nowMs = whole('nowMs', event.nowMs ?? Date.now(), Number.MAX_SAFE_INTEGER);
  return call(() => wasm.historyObserve(state, bundle, row, String(event.kind), nowMs));
}

/**
 * A stored history's entry count and dimension.
 * @param {Uint8Array} state
 */
export function historyInfo(state) {
  const [entries, dim] = call(() => wasm.historyInfo(state));
  return { entries, dim };
}

/**
 * Decodes `EWRS` bytes: `{ modelMatch, items, rows, outcomes }`.
 * @param {Uint8Array} bytes
 */
export function decodeResult(bytes) {
  return call(() => wasm.decodeResult(bytes));
}

/**
 * Checks a bundle's checksum and structure once (when it enters a cache);
 * returns its row count. Later contexts can say `checksumVerified: true`.
 * @param {Uint8Array} bytes
 */
export function verifyBundle(bytes) {
  return call(() => wasm.verifyBundle(bytes));
}

/**
 * Where a bundle's int8 embedding column lies (byte offsets), with its row
 * count and dimension; checks the bundle's structure.
 * @param {Uint8Array} bytes
 */
export function bundleLayout(bytes) {
  const [rows, dim, start, end] = call(() => wasm.bundleEmbeddings(bytes));
  return { rows, dim, start, end };
}

/**
 * What a client needs to know about a bundle, read once when it arrives:
 * `{ rows, dim, scope, createdAtMs, model, ids, sourceMasks, creators }`
 * (`scope`: `'regional'` or `'personal'`; `model`: the sha256 of the model
 * its header names, or `undefined`; `ids`: every row's item id, a
 * `BigUint64Array`; `sourceMasks`: which sources found each row, bit j being
 * `sourceNames()[j]`; `creators`: each row's creator). Checks the structure,
 * not the checksum.
 * @param {Uint8Array} bytes
 * @returns {{ rows: number, dim: number, scope: 'regional' | 'personal', createdAtMs: number, model?: string,
 *   ids: BigUint64Array, sourceMasks: Uint8Array, creators: Uint32Array }}
 */
export function bundleInfo(bytes) {
  return call(() => wasm.bundleInfo(bytes));
}

/** @param {Iterable<bigint | number>} xs @param {string} what */
const checkedU64s = (xs, what) => BigUint64Array.from(xs, (x, i) => u64(x, `${what}[${i}]`, 'bad-experiment'));

/**
 * The variant of `user` in the experiment salted `salt` that enrols `rampBp`
 * basis points of users and splits them by `allocationsBp` (basis points
 * summing to 10000): its index, or -1 when the user is not enrolled. The
 * core's `experiment::assign`, so the origin, the edges and the page agree.
 * @param {bigint | number} user @param {bigint | number} salt @param {number} rampBp
 * @param {ArrayLike<number>} allocationsBp
 * @returns {number}
 */
export function experimentAssign(user, salt, rampBp, allocationsBp) {
  const u = u64(user, 'user', 'bad-experiment');
  const s = u64(salt, 'salt', 'bad-experiment');
  return call(() => wasm.experimentAssign(u, s, rampBp, Uint32Array.from(allocationsBp)));
}

/**
 * Team-draft interleaving of rankings `a` and `b` (best first) into at most
 * `k` items, the coin drawn from `seed`: the items and, per item, the team
 * that placed it (0: A, 1: B). The core's `experiment::team_draft`.
 * @param {Iterable<bigint | number>} a @param {Iterable<bigint | number>} b @param {number} k
 * @param {bigint | number} seed
 * @returns {{ items: BigUint64Array, teams: Uint8Array }}
 */
export function teamDraft(a, b, k, seed) {
  const [ia, ib, s] = [checkedU64s(a, 'a'), checkedU64s(b, 'b'), u64(seed, 'seed', 'bad-experiment')];
  return call(() => wasm.teamDraft(ia, ib, k, s));
}

/**
 * One Thompson-sampling decision over variants with these clicks and
 * exposures (one of each per variant), for `seed`: the chosen variant.
 * @param {Iterable<bigint | number>} clicks @param {Iterable<bigint | number>} exposures
 * @param {bigint | number} seed
 * @returns {number}
 */
export function thompson(clicks, exposures, seed) {
  const [c, e, s] = [checkedU64s(clicks, 'clicks'), checkedU64s(exposures, 'exposures'), u64(seed, 'seed', 'bad-experiment')];
  return call(() => wasm.thompson(c, e, s));
}

/**
 * The share of traffic Thompson sampling gives each variant over `draws`
 * decisions (seeds `seed`, `seed + 1`, …).
 * @param {Iterable<bigint | number>} clicks @param {Iterable<bigint | number>} exposures
 * @param {number} draws @param {bigint | number} seed
 * @returns {Float64Array}
 */
export function thompsonShares(clicks, exposures, draws, seed) {
  const [c, e, s] = [checkedU64s(clicks, 'clicks'), checkedU64s(exposures, 'exposures'), u64(seed, 'seed', 'bad-experiment')];
  return call(() => wasm.thompsonShares(c, e, draws, s));
}

/**
 * The local candidate set of a preliminary ranking: the rows of `kept` (a
 * user's last personal bundle), then the rows of `regional` it lacks, as one
 * personal bundle created at `nowMs` that carries `kept`'s user embedding
 * (the core's `bundle::union`, which the edge uses too). Checks both
 * bundles' structure; `bad-bundle` when either is not a bundle or the two
 * differ in shape or feature schema.
 * @param {Uint8Array} kept @param {Uint8Array} regional @param {number} nowMs
 * @returns {Uint8Array}
 */
export function bundleUnion(kept, regional, nowMs) {
  return call(() => wasm.bundleUnion(kept, regional, nowMs));
}

/** @type {string[] | null} */
let names = null;

/**
 * The candidate sources by source-mask bit: `collaborative`, `content`,
 * `trending`, `recent_similar`, `creator`, `fresh`, `popular`.
 * @returns {string[]}
 */
export function sourceNames() {
  names ??= call(() => wasm.sourceNames());
  return names.slice();
}


/**
 * The sha256 (lower-case hex) of `bytes`: the digest that names models and
 * bundles. Computed by the core, so it works outside secure contexts.
 * @param {Uint8Array} bytes
 */
export function sha256(bytes) {
  return call(() => wasm.sha256(bytes));
}

/** @param {Iterable<bigint>} ids */
const u64s = (ids) => (ids instanceof BigUint64Array ? ids : BigUint64Array.from(ids));

/**
 * The core's stable merge: the first `shown` ids of `preliminary` keep their
 * places, the rest comes from `refined`, then the unshown preliminary ids,
 * without duplicates, at most `k` ids.
 * @param {Iterable<bigint>} preliminary
 * @param {number} shown
 * @param {Iterable<bigint>} refined
 * @param {number} k
 * @returns {bigint[]}
 */
export function stableMerge(preliminary, shown, refined, k) {
  const s = whole('shown', Math.min(shown, U32_MAX), U32_MAX);
  return Array.from(call(() => wasm.stableMerge(u64s(preliminary), s, u64s(refined), whole('k', k, U32_MAX))));
}

/**
 * The core's agreement of two rankings: overlap@k (`|top_k(a) ∩ top_k(b)| / k`)
 * and Kendall's τ over the ids both hold (`null` when they share fewer than two).
 * @param {Iterable<bigint>} a
 * @param {Iterable<bigint>} b
 * @param {number} k
 */
export function agreement(a, b, k) {
  const [x, y] = [u64s(a), u64s(b)];
  const kk = whole('k', k, U32_MAX);
  return { overlap: call(() => wasm.overlapAtK(x, y, kk)), kendallTau: call(() => wasm.kendallTau(x, y)) ?? null };
}

/**
 * A fresh session state for embeddings of dimension `dim`.
 * @param {number} dim
 */
export function sessionNew(dim) {
  return call(() => wasm.sessionNew(whole('dim', dim, 4096)));
}

/**
 * The session state after an interaction with row `row` of `bundle`:
 * `kind` is `impression`, `click`, `like`, `skip`, `hide` or `dwell` (with `dwellMs`).
 * @param {Uint8Array} state
 * @param {Uint8Array} bundle
 * @param {{ row: number, kind: string, dwellMs?: number, nowMs?: number }} event
 */
export function sessionObserve(state, bundle, event) {
  const row = whole('row', event.row, U32_MAX);
  const dwellMs = whole('dwellMs', event.dwellMs ?? 0, U32_MAX);
  const nowMs = whole('nowMs', event.nowMs ?? Date.now(), Number.MAX_SAFE_INTEGER);
  return call(() => wasm.sessionObserve(state, bundle, row, String(event.kind), dwellMs, nowMs));
}

/**
 * A session state's dimension, event count and last event time.
 * @param {Uint8Array} state
 */
export function sessionInfo(state) {
  const [dim, events, lastMs] = call(() => wasm.sessionInfo(state));
  return { dim, events, lastMs };
}

/** The version of the byte formats this build speaks. */
export function abiVersion() {
  return call(() => wasm.abiVersion());
}

/** Error codes that mean the GPU failed, not the input: the wasm core takes over. */
const GPU_CODES = new Set(['no-gpu', 'gpu', 'gpu-lost']);

/**
 * Finds a WebGPU adapter and loads the GPU add-on (`gpu.js`) only then.
 * @param {{ packed?: boolean }} options
 */
async function openGpu(options) {
  const gpu = /** @type {any} */ (globalThis.navigator)?.gpu;
  if (!gpu) throw new EdgewiseError('no-gpu', 'WebGPU is not available here (navigator.gpu is missing)');
  let adapter;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    throw new EdgewiseError('no-gpu', `requestAdapter() failed: ${toEdgewiseError(e).message}`, { cause: e });
  }
  if (!adapter) throw new EdgewiseError('no-gpu', 'requestAdapter() returned null: no usable GPU adapter');
  const { GpuScan } = await import('./gpu.js');
  return GpuScan.create(adapter, options);
}

/**
 * Ranks on the GPU when there is one (WebGPU), else in wasm, with the same
 * bytes either way: the GPU computes every row's int8 dot product (integers,
 * exact everywhere) and the wasm core finishes from them.
 */
export class Ranker {
  /** @type {Core} */
  #core;
  /** @type {any} */
  #gpu = null;
  /** @type {WeakMap<Uint8Array, { layout: ReturnType<typeof bundleLayout>, resident: any, trailer: Uint8Array }>} */
  #resident = new WeakMap();

  /**
   * @param {Core} core
   * @param {number} gpuMinRows
   */
  constructor(core, gpuMinRows) {
    this.#core = core;
    /** Bundles with fewer rows rank in wasm even with a GPU (the dispatch costs more than it saves). */
    this.gpuMinRows = gpuMinRows;
    /** `'webgpu'` or `'wasm-simd'`: where rankings run now. */
    this.engine = 'wasm-simd';
    /** Where the last ranking ran (`'webgpu'` only when its dot products came from the GPU). */
    this.lastEngine = 'wasm-simd';
    /** The WebGPU adapter's description, when the GPU is in use. @type {object | undefined} */
    this.adapter = undefined;
    /** How many times the GPU path failed and wasm took over (including at start). */
    this.fallbacks = 0;
    /** The last GPU failure. @type {EdgewiseError | undefined} */
    this.lastFallback = undefined;
  }

  /**
   * @param {{ wasm?: WasmInputArg, gpu?: 'auto' | 'off' | 'require', gpuMinRows?: number, packed?: boolean }} [options]
   *   `gpu`: `'auto'` (default) uses WebGPU when an adapter works, `'off'` never, `'require'` fails without one.
   */
  static async create(options = {}) {
    const mode = options.gpu ?? 'auto';
    if (!['auto', 'off', 'require'].includes(mode)) {
      throw new EdgewiseError('bad-options', `gpu must be 'auto', 'off' or 'require', not ${String(mode)}`);
    }
    const minRows = whole('gpuMinRows', options.gpuMinRows ?? 10_000, U32_MAX);
    const r = new Ranker(await Core.load(options.wasm), minRows);
    if (mode !== 'off') {
      try {
        r.#gpu = await openGpu({ packed: options.packed });
        r.engine = 'webgpu';
        r.adapter = r.#gpu.adapter;
      } catch (e) {
        const err = toEdgewiseError(e);
        if (mode === 'require') throw err;
        r.#fellBack(err);
      }
    }
    return r;
  }

  /** @param {EdgewiseError} err */
  #fellBack(err) {
    this.fallbacks += 1;
    this.lastFallback = err;
  }

  /**
   * Decodes and installs a model; resolves to its sha256 (hex). (Async, like
   * `RankerWorker`'s, so the two are interchangeable.)
   * @param {Uint8Array} bytes
   */
  async loadModel(bytes) {
    return this.#core.loadModel(bytes);
  }

  /**
   * Ranks `bundle` for `context`: the `EWRS` bytes. A bundle stays on the
   * GPU between calls (keyed by the array; give a new array for new bytes).
   * @param {Uint8Array} bundle
   * @param {Uint8Array} context
   */
  async rank(bundle, context) {
    return (await this.rankWithEngine(bundle, context)).bytes;
  }

  /**
   * `rank`, and where this ranking ran (`'webgpu'` only when the GPU computed
   * its dot products): rankings can overlap, so a shared "last engine" could
   * name another one's.
   * @param {Uint8Array} bundle
   * @param {Uint8Array} context
   * @returns {Promise<{ bytes: Uint8Array, engine: 'webgpu' | 'wasm-simd' }>}
   */
  async rankWithEngine(bundle, context) {
    const gpu = this.#gpu;
    if (gpu !== null) {
      try {
        // The bundle's layout is read once, and its embeddings uploaded once;
        // later rankings of the same bytes only write the query.
        const trailer = bundle.subarray(bundle.byteLength - 8);
        let entry = this.#resident.get(bundle);
        if (entry === undefined || !entry.trailer.every((b, i) => b === trailer[i])) {
          if (entry?.resident) gpu.release(entry.resident);
          entry = { layout: bundleLayout(bundle), resident: null, trailer: trailer.slice() };
          this.#resident.set(bundle, entry);
        }
        if (entry.layout.rows >= this.gpuMinRows) {
          const q = this.#core.quantizedQuery(bundle, context);
          entry.resident ??= gpu.upload(bundle, entry.layout);
          const dots = await gpu.dots(entry.resident, q);
          const bytes = this.#core.rankWithDots(bundle, context, dots);
          this.lastEngine = 'webgpu';
          return { bytes, engine: 'webgpu' };
        }
      } catch (e) {
        const err = toEdgewiseError(e);
        if (!GPU_CODES.has(err.code)) throw err;
        this.#fellBack(err);
        if (err.code === 'gpu-lost' || gpu.lost !== null) {
          this.#gpu = null;
          this.engine = 'wasm-simd';
        }
      }
    }
    const bytes = this.#core.rank(bundle, context);
    this.lastEngine = 'wasm-simd';
    return { bytes, engine: 'wasm-simd' };
  }

  /**
   * Gives the GPU up now: the device is destroyed and its memory freed. The
   * next ranking sees the lost device as it would see a driver reset: it
   * runs in wasm, counts a fallback and stays there.
   */
  releaseGpu() {
    if (this.#gpu !== null) {
      this.#gpu.destroy();
    }
  }
}

/** @typedef {URL | string | Response | Promise<Response> | BufferSource | WebAssembly.Module} WasmInputArg */

/**
 * A `Ranker` in a module Web Worker: ranking never blocks the main thread.
 * Bundles cross to the worker once (`addBundle`, transferring the bytes) and
 * stay there, on its GPU when it has one; `rank` takes the handle.
 */
export class RankerWorker {
  /** @type {Worker} */
  #worker;
  #next = 1;
  /** @type {Map<number, { resolve: (v: any) => void, reject: (e: EdgewiseError) => void }>} */
  #pending = new Map();

  /** @param {Worker} worker */
  constructor(worker) {
    this.#worker = worker;
    /** @type {'webgpu' | 'wasm-simd'} */
    this.engine = 'wasm-simd';
    /** Where the last ranking ran. @type {'webgpu' | 'wasm-simd'} */
    this.lastEngine = 'wasm-simd';
    /** @type {object | undefined} */
    this.adapter = undefined;
    this.fallbacks = 0;
    /** @type {EdgewiseError | undefined} */
    this.lastFallback = undefined;
    worker.onmessage = (e) => this.#reply(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      this.#failAll(new EdgewiseError('worker', `the ranking worker failed: ${e.message}`));
    };
    worker.onmessageerror = () => this.#failAll(new EdgewiseError('worker', 'a message from the worker could not be read'));
  }

  /**
   * Starts the worker and its `Ranker` (same options; `wasm` must be a URL or
   * string there, since a compiled module or a Response does not cross threads
   * in every browser).
   * @param {{ wasm?: URL | string, gpu?: 'auto' | 'off' | 'require', gpuMinRows?: number, packed?: boolean }} [options]
   */
  static async create(options = {}) {
    let worker;
    try {
      worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    } catch (e) {
      throw new EdgewiseError('worker', `the ranking worker could not start: ${toEdgewiseError(e).message}`, { cause: e });
    }
    const w = new RankerWorker(worker);
    const wasmUrl = options.wasm === undefined ? undefined : String(options.wasm);
    try {
      await w.#call('create', { ...options, wasm: wasmUrl });
    } catch (e) {
      worker.terminate();
      throw e;
    }
    return w;
  }

  /** @param {any} msg */
  #reply(msg) {
    const p = this.#pending.get(msg?.id);
    if (p === undefined) return;
    this.#pending.delete(msg.id);
    if (msg.state) {
      this.engine = msg.state.engine;
      this.lastEngine = msg.state.lastEngine;
      this.adapter = msg.state.adapter;
      this.fallbacks = msg.state.fallbacks;
      const f = msg.state.lastFallback;
      this.lastFallback = f ? new EdgewiseError(f.code, f.message) : undefined;
    }
    if (msg.ok) p.resolve(msg.value);
    else p.reject(new EdgewiseError(msg.error.code, msg.error.message));
  }

  /** @param {EdgewiseError} err */
  #failAll(err) {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  /**
   * @param {string} op
   * @param {object} args
   * @param {Transferable[]} [transfer]
   */
  #call(op, args, transfer = []) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      try {
        this.#worker.postMessage({ id, op, args }, transfer);
      } catch (e) {
        this.#pending.delete(id);
        reject(toEdgewiseError(e));
      }
    });
  }

  /**
   * Decodes and installs a model in the worker; resolves to its sha256 (hex).
   * @param {Uint8Array} bytes
   */
  loadModel(bytes) {
    return this.#call('loadModel', { bytes });
  }

  /**
   * Moves a bundle into the worker (its buffer is transferred: `bytes` is
   * empty afterwards; pass a copy to keep one); resolves to a handle.
   * @param {Uint8Array} bytes
   */
  addBundle(bytes) {
    const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
    return this.#call('addBundle', { bytes: own }, [own.buffer]);
  }

  /**
   * Forgets a bundle (and frees its GPU copy when the worker's GC runs).
   * @param {number} handle
   */
  dropBundle(handle) {
    return this.#call('dropBundle', { handle });
  }

  /**
   * Ranks a bundle (a handle from `addBundle`, or bytes, copied per call) for
   * `context`: the `EWRS` bytes.
   * @param {number | Uint8Array} bundle
   * @param {Uint8Array} context
   */
  async rank(bundle, context) {
    return (await this.rankWithEngine(bundle, context)).bytes;
  }

  /**
   * `rank`, and where this ranking ran.
   * @param {number | Uint8Array} bundle
   * @param {Uint8Array} context
   * @returns {Promise<{ bytes: Uint8Array, engine: 'webgpu' | 'wasm-simd' }>}
   */
  rankWithEngine(bundle, context) {
    return this.#call('rank', { bundle, context });
  }

  /** Destroys the worker's GPU device; its next ranking falls back to wasm. */
  releaseGpu() {
    return this.#call('releaseGpu', {});
  }

  /** Stops the worker; pending calls fail with `worker`. */
  terminate() {
    this.#worker.terminate();
    this.#failAll(new EdgewiseError('worker', 'the ranking worker was terminated'));
  }
}
