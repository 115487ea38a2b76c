// The scratch app both bundler tests build (Vite and webpack 5): it imports
// the installed package as any app would, ranks the golden v1 files and
// leaves what happened in `window.__result`.
import { Ranker, RankerWorker, decodeResult } from 'edgewise';

const get = async (path) => {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
};

async function run() {
  const ranker = await Ranker.create({ gpu: 'auto', gpuMinRows: 0 });
  const names = ['model.ewm', 'bundle.ewb', 'context.ewcx', 'result.ewrs'];
  const [model, bundle, ctx, want] = await Promise.all(names.map((n) => get(`/golden/${n}`)));
  await ranker.loadModel(model);
  const got = await ranker.rank(bundle, ctx);
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  // The same in the package's module worker, which the bundler must emit too.
  const worker = await RankerWorker.create({ gpu: 'auto', gpuMinRows: 0 });
  await worker.loadModel(model);
  const inWorker = await worker.rank(await worker.addBundle(bundle.slice()), ctx);
  const workerEngine = worker.engine;
  worker.terminate();
  return {
    engine: ranker.engine,
    lastFallback: ranker.lastFallback?.code,
    same: equal(got, want),
    workerEngine,
    workerSame: equal(inWorker, want),
    items: decodeResult(got).items.length,
  };
}

run().then(
  (r) => { window.__result = r; },
  (e) => { window.__result = { error: String(e?.message ?? e) }; },
);
