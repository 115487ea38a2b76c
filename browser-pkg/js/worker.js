// The module worker behind `RankerWorker`: a `Ranker` (WebGPU or wasm) off
// the main thread. Created by index.js with
// `new Worker(new URL('./worker.js', import.meta.url), { type: 'module' })`,
// so a strict `worker-src 'self'` policy allows it (no blob: URL).

import { Ranker } from './index.js';

/** @type {Ranker | null} */
let ranker = null;
/** Bundles held here, by handle, so they cross the thread boundary once. @type {Map<number, Uint8Array>} */
const bundles = new Map();
let nextHandle = 1;

const state = () =>
  ranker && {
    engine: ranker.engine,
    lastEngine: ranker.lastEngine,
    adapter: ranker.adapter,
    fallbacks: ranker.fallbacks,
    lastFallback: ranker.lastFallback && { code: ranker.lastFallback.code, message: ranker.lastFallback.message },
  };

/** @param {number | Uint8Array} b */
function bundle(b) {
  if (b instanceof Uint8Array) return b;
  const held = bundles.get(b);
  if (held === undefined) throw Object.assign(new Error(`no bundle with handle ${b}`), { code: 'bad-bundle' });
  return held;
}

self.onmessage = async (/** @type {MessageEvent} */ e) => {
  const { id, op, args } = e.data ?? {};
  /** @type {Transferable[]} */
  const transfer = [];
  try {
    let value;
    if (op === 'create') {
      ranker = await Ranker.create(args);
    } else if (ranker === null) {
      throw Object.assign(new Error('the worker has no ranker yet'), { code: 'internal' });
    } else if (op === 'loadModel') {
      value = await ranker.loadModel(args.bytes);
    } else if (op === 'addBundle') {
      value = nextHandle++;
      bundles.set(value, args.bytes);
    } else if (op === 'dropBundle') {
      bundles.delete(args.handle);
    } else if (op === 'rank') {
      value = await ranker.rankWithEngine(bundle(args.bundle), args.context);
      transfer.push(value.bytes.buffer);
    } else if (op === 'releaseGpu') {
      ranker.releaseGpu();
    } else {
      throw Object.assign(new Error(`unknown operation ${String(op)}`), { code: 'internal' });
    }
    self.postMessage({ id, ok: true, value, state: state() }, transfer);
  } catch (err) {
    const x = /** @type {any} */ (err);
    self.postMessage({ id, ok: false, error: { code: String(x?.code ?? 'internal'), message: String(x?.message ?? x) }, state: state() });
  }
};
