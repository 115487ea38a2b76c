// Types for the `edgewise` package (js/index.js).

/** What went wrong: the `code` of every `EdgewiseError`. */
export type ErrorCode =
  | 'wasm-load'
  | 'bad-model'
  | 'no-model'
  | 'bad-bundle'
  | 'bad-context'
  | 'bad-session'
  | 'bad-experiment'
  | 'incompatible'
  | 'bad-options'
  | 'no-gpu'
  | 'gpu'
  | 'gpu-lost'
  | 'worker'
  | 'bad-event'
  | 'queue-full'
  | 'event-rejected'
  | 'endpoint-down'
  | 'aborted'
  | 'no-token'
  | 'no-feed'
  | 'too-large'
  | 'digest-mismatch'
  | `http-${number}`
  | 'internal';

/** Every error this package throws. */
export class EdgewiseError extends Error {
  constructor(code: ErrorCode | string, message: string, options?: { cause?: unknown });
  readonly name: 'EdgewiseError';
  readonly code: ErrorCode | string;
}

/** What `Core.load` accepts: the default is the `.wasm` shipped next to the package's JavaScript. */
export type WasmInput = URL | string | Response | Promise<Response> | BufferSource | WebAssembly.Module;

/** The ranking core. */
export class Core {
  /** Loads the wasm module (once per page or worker) and returns a core with no model. */
  static load(wasm?: WasmInput): Promise<Core>;
  /** Decodes and installs a model; returns its sha256 (hex). */
  loadModel(bytes: Uint8Array): string;
  /** The loaded model's sha256 (hex). */
  readonly modelDigest: string | undefined;
  /** Ranks a bundle for an `EWCX` context; returns the `EWRS` result bytes. */
  rank(bundle: Uint8Array, context: Uint8Array): Uint8Array;
  /** The int8 query a GPU scan needs, after every check `rank` makes. */
  quantizedQuery(bundle: Uint8Array, context: Uint8Array): Int8Array;
  /** `rank` from every row's int8 dot product with `quantizedQuery`'s query: the same bytes. */
  rankWithDots(bundle: Uint8Array, context: Uint8Array, dots: Int32Array): Uint8Array;
  /** Frees the core's memory now. */
  free(): void;
}

/** The fields of a ranking context. */
export interface ContextOptions {
  /** Items to return (default 20). */
  k?: number;
  /** The user's region, 0–31; none filters nothing. */
  region?: number;
  /** Now, in ms since the Unix epoch (default `Date.now()`). */
  nowMs?: number;
  /** Item ids not to show again. */
  seen?: Iterable<bigint | number>;
  /** Creator ids the user blocked. */
  blocked?: Iterable<number>;
  /** The user's long-term embedding (empty: anonymous). */
  base?: ArrayLike<number>;
  /** A session state (`sessionNew`, `sessionObserve`). */
  session?: Uint8Array;
  /** Pre-rank keep override (0: the model's). */
  prerankKeep?: number;
  /** The bundle's checksum was checked when it entered the cache (`verifyBundle`). */
  checksumVerified?: boolean;
  /** The user's recent interactions (`historyObserve`), for a model with a history block. */
  history?: Uint8Array;
}

/** Builds an `EWCX` context (after `Core.load()`). */
export function encodeContext(options?: ContextOptions): Uint8Array;

/** One ranked item. */
export interface RankedItem {
  id: bigint;
  row: number;
  score: number;
  preScore: number;
  mainScore: number;
  mmrPenalty: number;
  mmrScore: number;
}

/** A decoded `EWRS` result. */
export interface RankResult {
  modelMatch: 'any' | 'match' | 'mismatch';
  items: RankedItem[];
  /** Per bundle row: the outcome code (an index into `outcomes`) and each stage's score (NaN where not reached). */
  rows: { outcome: Uint8Array; preScore: Float32Array; mainScore: Float32Array; calibrated: Float32Array };
  /** Outcome names by code. */
  outcomes: string[];
}

/** Decodes `EWRS` bytes. */
export function decodeResult(bytes: Uint8Array): RankResult;

/** Checks a bundle's checksum and structure once; returns its row count. */
export function verifyBundle(bytes: Uint8Array): number;

/** Where a bundle's int8 embedding column lies (byte offsets), its rows and dimension; checks its structure. */
export function bundleLayout(bytes: Uint8Array): { rows: number; dim: number; start: number; end: number };

/** A fresh session state for embeddings of dimension `dim`. */
export function sessionNew(dim: number): Uint8Array;

/** An interaction the session embedding learns from at once. */
export interface SessionEvent {
  /** The bundle row interacted with. */
  row: number;
  kind: 'impression' | 'click' | 'like' | 'skip' | 'hide' | 'dwell';
  /** For `dwell`. */
  dwellMs?: number;
  /** Default `Date.now()`. */
  nowMs?: number;
}

/** The session state after an interaction with a row of `bundle`. */
export function sessionObserve(state: Uint8Array, bundle: Uint8Array, event: SessionEvent): Uint8Array;

/** A session state's dimension, event count and last event time. */
export function sessionInfo(state: Uint8Array): { dim: number; events: number; lastMs: number };

/**
 * The stored history (`EWHS`) after an interaction with a row of `bundle`: a
 * click, like or dwell goes to the front (at most 64 entries, one per item);
 * other kinds leave it as it was. An empty array starts one.
 */
export function historyObserve(
  state: Uint8Array,
  bundle: Uint8Array,
  event: { row: number; kind: string; nowMs?: number },
): Uint8Array;

/** A stored history's entry count and dimension. */
export function historyInfo(state: Uint8Array): { entries: number; dim: number };

/**
 * A kept personal bundle's rows, then the regional bundle's rows it lacks, as
 * one personal bundle created at `nowMs` carrying the kept bundle's user
 * embedding: the candidates of a preliminary frame (the core's `bundle::union`).
 */
export function bundleUnion(kept: Uint8Array, regional: Uint8Array, nowMs: number): Uint8Array;

/** The variant of `user` in an experiment (its index), or -1 when not enrolled: the core's `experiment::assign`. */
export function experimentAssign(user: bigint | number, salt: bigint | number, rampBp: number, allocationsBp: ArrayLike<number>): number;

/** Team-draft interleaving of two rankings: the items and the team (0: A, 1: B) that placed each. */
export function teamDraft(
  a: Iterable<bigint | number>, b: Iterable<bigint | number>, k: number, seed: bigint | number,
): { items: BigUint64Array; teams: Uint8Array };

/** One Thompson-sampling decision over variants with these clicks and exposures. */
export function thompson(clicks: Iterable<bigint | number>, exposures: Iterable<bigint | number>, seed: bigint | number): number;

/** The share of traffic Thompson sampling gives each variant over `draws` decisions. */
export function thompsonShares(
  clicks: Iterable<bigint | number>, exposures: Iterable<bigint | number>, draws: number, seed: bigint | number,
): Float64Array;

/** What a client needs to know about a bundle, read once when it arrives (checks its structure). */
export function bundleInfo(bytes: Uint8Array): {
  rows: number;
  dim: number;
  scope: 'regional' | 'personal';
  createdAtMs: number;
  /** The sha256 of the model the bundle names; `undefined`: any model. */
  model?: string;
  /** Every row's item id, in row order. */
  ids: BigUint64Array;
  /** Which sources found each row: bit j is `sourceNames()[j]`. */
  sourceMasks: Uint8Array;
  /** Every row's creator id. */
  creators: Uint32Array;
};

/** The candidate sources by source-mask bit (`collaborative`, `content`, `trending`, …). */
export function sourceNames(): string[];

/** The sha256 (lower-case hex) of `bytes`, computed by the core (no secure context needed). */
export function sha256(bytes: Uint8Array): string;

/** The core's stable merge: the first `shown` preliminary ids keep their places; the rest come from `refined`. */
export function stableMerge(preliminary: Iterable<bigint>, shown: number, refined: Iterable<bigint>, k: number): bigint[];

/** The core's agreement of two rankings: overlap@k and Kendall's τ over the ids both hold. */
export function agreement(a: Iterable<bigint>, b: Iterable<bigint>, k: number): Agreement;

/** How much two rankings agree. */
export interface Agreement {
  /** `|top_k(a) ∩ top_k(b)| / k`, in [0, 1]. */
  overlap: number;
  /** Kendall's τ over the ids both hold, in [-1, 1]; `null` when they share fewer than two. */
  kendallTau: number | null;
}

/** The version of the byte formats this build speaks. */
export function abiVersion(): number;

/** What a WebGPU adapter says about itself. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  description: string;
  /** A software adapter (SwiftShader): a CPU emulation, not a GPU. */
  isFallbackAdapter: boolean;
  /** Whether the scan uses `dot4I8Packed`. */
  packedDot: boolean;
}

/** Options of `Ranker.create`. */
export interface RankerOptions {
  /** The wasm module (see `Core.load`). */
  wasm?: WasmInput;
  /** `'auto'` (default): WebGPU when an adapter works, else wasm; `'off'`: wasm only; `'require'`: fail without a GPU. */
  gpu?: 'auto' | 'off' | 'require';
  /** Bundles with fewer rows rank in wasm even with a GPU (default 10,000). */
  gpuMinRows?: number;
  /** `false`: never use `dot4I8Packed` (both ways are exact). */
  packed?: boolean;
}

/** Ranks on WebGPU when there is a GPU, else in wasm; the same bytes either way. */
export class Ranker {
  static create(options?: RankerOptions): Promise<Ranker>;
  /** Where rankings run now. */
  readonly engine: 'webgpu' | 'wasm-simd';
  /** Where the last ranking ran (`'webgpu'` only when the GPU computed its dot products). */
  readonly lastEngine: 'webgpu' | 'wasm-simd';
  /** The adapter, when WebGPU is in use. */
  readonly adapter: AdapterSummary | undefined;
  /** How many times the GPU failed and wasm took over (including at start). */
  readonly fallbacks: number;
  /** The last GPU failure. */
  readonly lastFallback: EdgewiseError | undefined;
  gpuMinRows: number;
  /** Decodes and installs a model; resolves to its sha256 (hex). */
  loadModel(bytes: Uint8Array): Promise<string>;
  /** The `EWRS` bytes; a bundle stays on the GPU between calls (give a new array for new bytes). */
  rank(bundle: Uint8Array, context: Uint8Array): Promise<Uint8Array>;
  /** `rank`, and where this ranking ran (rankings can overlap: `lastEngine` may name another's). */
  rankWithEngine(bundle: Uint8Array, context: Uint8Array): Promise<{ bytes: Uint8Array; engine: 'webgpu' | 'wasm-simd' }>;
  /** Destroys the GPU device; the next ranking falls back to wasm and counts it. */
  releaseGpu(): void;
}

/** A `Ranker` in a module Web Worker (`new URL('./worker.js', import.meta.url)`, no blob: URL). */
export class RankerWorker {
  /** Starts the worker; `wasm` must be a URL there. */
  static create(options?: Omit<RankerOptions, 'wasm'> & { wasm?: URL | string }): Promise<RankerWorker>;
  readonly engine: 'webgpu' | 'wasm-simd';
  readonly lastEngine: 'webgpu' | 'wasm-simd';
  readonly adapter: AdapterSummary | undefined;
  readonly fallbacks: number;
  readonly lastFallback: EdgewiseError | undefined;
  /** Decodes and installs a model in the worker; resolves to its sha256 (hex). */
  loadModel(bytes: Uint8Array): Promise<string>;
  /** Moves a bundle into the worker (its buffer is transferred); resolves to a handle. */
  addBundle(bytes: Uint8Array): Promise<number>;
  /** Forgets a bundle. */
  dropBundle(handle: number): Promise<void>;
  /** Ranks a bundle (a handle, or bytes copied per call): the `EWRS` bytes. */
  rank(bundle: number | Uint8Array, context: Uint8Array): Promise<Uint8Array>;
  /** `rank`, and where this ranking ran. */
  rankWithEngine(bundle: number | Uint8Array, context: Uint8Array): Promise<{ bytes: Uint8Array; engine: 'webgpu' | 'wasm-simd' }>;
  /** Destroys the worker's GPU device; its next ranking falls back to wasm. */
  releaseGpu(): Promise<void>;
  /** Stops the worker; pending calls fail with code `worker`. */
  terminate(): void;
}

/** An interaction to record. */
export interface TrackedEvent {
  user: bigint | number;
  item: bigint | number;
  kind: 'impression' | 'click' | 'like' | 'skip' | 'hide' | 'dwell';
  /** The user's region, 0–31. */
  region: number;
  /** Default `Date.now()`. */
  time?: number;
  /** For `dwell`. */
  dwellMs?: number;
}

/** The event queue's batching, retry and storage settings. */
export interface EventQueueOptions {
  batch?: number;
  maxQueue?: number;
  flushMs?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  timeoutMs?: number;
  /** Where unsent events wait between page loads (default `localStorage`; `null`: nowhere). */
  storage?: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'> | null;
}

/**
 * Batches events to the origin's `POST /v1/events` with idempotency ids,
 * retries with backoff, refreshes an expired token once, and on `pagehide`
 * hands the rest to a `keepalive` request. Refusals and a full queue are
 * dispatched as `error` events (`detail`: an `EdgewiseError`); `flushed`
 * events carry how many the origin took.
 */
export class EventQueue extends EventTarget {
  constructor(options: EventQueueOptions & {
    endpoint: string | URL;
    token?: (refresh: boolean, user: bigint) => string | Promise<string>;
    fetch?: typeof fetch;
  });
  /** Events waiting to be sent. */
  readonly pending: number;
  /** Writes the unsent events to `storage` (as `pagehide` does); how many. */
  persist(): number;
  /** Queues an event; its idempotency id, or null when the queue is full. */
  push(event: TrackedEvent): string | null;
  /** Sends what is queued; never rejects. */
  flush(): Promise<void>;
  /** Forgets the token last used for `user` (sign-out); their queued events stay. */
  forgetUser(user: bigint): void;
  /** Stops the timers; queued events stay queued. */
  close(): void;
}

/** Options of `Edgewise.create`. */
export interface EdgewiseOptions {
  /** The Edgewise edge (or origin) the bundles, models and events come from and go to. */
  endpoint: string | URL;
  /**
   * `user`'s short-lived token (for personal bundles, and for each batch of that user's queued events,
   * which may outlive a switch of user); called with `refresh` true after a 401 for a fresh one.
   * Without it: anonymous.
   */
  token?: (refresh: boolean, user: bigint) => string | Promise<string>;
  /** The core's `.wasm` (default: next to the package's JavaScript). A worker needs a URL or nothing. */
  wasm?: WasmInput;
  /** `'auto'` (default): WebGPU when an adapter works; `'off'`; `'require'`: fail without one. */
  gpu?: 'auto' | 'off' | 'require';
  /** Bundles with fewer rows rank in wasm even with a GPU (default 10000). */
  gpuMinRows?: number;
  /** Rank in a module worker, off the main thread. */
  worker?: boolean;
  /** The fetch to use (default `globalThis.fetch`). */
  fetch?: typeof fetch;
  /** Where `POST /v1/events` goes (default `endpoint`). */
  eventsEndpoint?: string | URL;
  /** Candidates asked for per bundle (default 300). */
  candidates?: number;
  /** The longest a request may take, in ms (default 10000). */
  timeoutMs?: number;
  /** The largest bundle or model accepted, in bytes (default 64 MiB). */
  maxBundleBytes?: number;
  /** Keep bundles and models in the Cache API across visits (default true, where the page has it). */
  persist?: boolean;
  /** The event queue's batching and retry settings. */
  events?: EventQueueOptions;
  /** ms since the epoch for rankings and events (default `Date.now`). */
  clock?: () => number;
  /** The oldest kept personal bundle a preliminary frame ranks, in ms (default 30 days; 0: never). */
  keptMaxAgeMs?: number;
}

/** One item of a frame. */
export interface FrameItem extends RankedItem {
  /** The candidate sources that found it (`collaborative`, `trending`, …). */
  sources: string[];
  /** Its creator id. */
  creator: number;
  /** Refined frames: the item was shown before and kept its place. */
  kept?: boolean;
}

/** What happened to every candidate row of a ranking: outcome name (`selected`, `filtered: seen`, …) → rows. */
export type Stages = Record<string, number>;

/** One frame of a feed. */
export interface Frame {
  kind: 'preliminary' | 'refined';
  /** Where the bundle came from. */
  source: 'memory' | 'cache-storage' | 'network';
  scope: 'regional' | 'personal';
  /** What to show, in order (refined frames: stable-merged with the preliminary one). */
  items: FrameItem[];
  /** This frame's own ranking, before any merge. */
  ranked: bigint[];
  /** How many preliminary items kept their places. */
  shown: number;
  /** `cache`: the edge's `X-Edgewise-Cache` (`hit`, `miss`, `stale`, `revalidated`), `origin`, or where on the device. */
  bundle: { digest: string; cache: string; rows: number; createdAtMs: number };
  /**
   * Preliminary frames ranked from the user's kept personal bundle merged
   * with the regional one: the two bundles' digests (`bundle` then describes
   * the merged set, whose bytes `replay.bundle` holds).
   */
  merged?: { kept: string; regional: string };
  /** The model that ranked it (sha256). */
  model: string;
  /** Where this frame was ranked. */
  engine: 'webgpu' | 'wasm-simd';
  /** Against the previous frame of the same feed (`null` for the first). */
  agreement: Agreement | null;
  stages: Stages;
  /** ms: getting the bundle, ranking it, and since `feed()` was called. */
  timings: { fetch: number; rank: number; total: number };
  /** The exact bytes ranked and the result (`EWRS`): any core (`edgewise-edge rank`) reproduces `result` from them. */
  replay: { bundle: Uint8Array; context: Uint8Array; result: Uint8Array };
}

/** The Edgewise client. Events: `error` (`detail`: an `EdgewiseError` from the event queue) and `flushed`. */
export class Edgewise extends EventTarget {
  static create(options: EdgewiseOptions): Promise<Edgewise>;
  readonly endpoint: string;
  readonly engine: 'webgpu' | 'wasm-simd';
  readonly adapter: AdapterSummary | undefined;
  readonly fallbacks: { count: number; last: EdgewiseError | undefined };
  readonly pendingEvents: number;
  /** The local session state (`EWSS`), `null` before the first interaction. */
  readonly session: Uint8Array | null;
  /**
   * A preliminary frame from what is on the device (fetched when nothing is), then a refined
   * frame from the network, stable-merged. Errors end the iteration; the last frame stands.
   */
  feed(options?: {
    user?: bigint | number;
    region?: number;
    k?: number;
    signal?: AbortSignal;
    /** How many preliminary items the page has shown (default: up to the last with a tracked impression). */
    shown?: number | (() => number);
  }): AsyncGenerator<Frame, void, void>;
  /** Moves the session at once and queues the event for the origin (signed-in users). */
  track(event: { item: bigint | number; kind: TrackedEvent['kind']; dwellMs?: number; time?: number }): {
    eventId: string | null;
    sessionUpdated: boolean;
  };
  /** Re-ranks the unseen items on the device with the session as it is now. */
  rerank(options?: { shown?: number }): Promise<{
    items: FrameItem[];
    order: bigint[];
    moved: Array<{ id: bigint; from: number | null; to: number }>;
    agreement: Agreement | null;
    engine: 'webgpu' | 'wasm-simd';
    stages: Stages;
    timings: { rank: number };
  }>;
  /** How the ranking that placed an item on the page treated it (else the last ranking); `null` when it is in none. */
  explain(id: bigint | number): {
    id: bigint;
    row: number;
    outcome: string;
    preScore: number;
    mainScore: number;
    calibrated: number;
    rank: number | null;
    mmrPenalty: number | null;
    mmrScore: number | null;
    creator: number;
    sources: string[];
    bundle: string;
    model: string | null;
  } | null;
  /** Cosine similarity of two items' embeddings (from the bundles on the device); `null` when either is in none. */
  similarity(a: bigint | number, b: bigint | number): number | null;
  /** Sends queued events now (never rejects). */
  flush(): Promise<void>;
  /** Forgets the session, seen items and stored bundles (of `user`, or all): call it on sign-out. */
  forget(options?: { user?: bigint | number }): Promise<void>;
  /** Flushes events, stops the worker and frees the GPU. */
  close(): Promise<void>;
}
