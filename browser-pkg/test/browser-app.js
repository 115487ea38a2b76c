// The page the browser test loads (under a strict CSP): it ranks the golden
// files and the randomized cases with the package's `Ranker` and leaves a
// summary in `window.__result` for the test to read.

import { Ranker, RankerWorker, EdgewiseError } from '/pkg/index.js';

const params = new URLSearchParams(location.search);
const get = async (path) => {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
};
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

async function run() {
  const gpu = params.get('gpu') ?? 'auto';
  const packed = params.get('packed') !== 'false';
  const inWorker = params.get('worker') === '1';
  const t0 = performance.now();
  const options = { gpu, gpuMinRows: 0, packed };
  const ranker = inWorker ? await RankerWorker.create(options) : await Ranker.create(options);
  const created = { engine: ranker.engine, adapter: ranker.adapter, fallbacks: ranker.fallbacks,
    lastFallback: ranker.lastFallback?.code, createMs: performance.now() - t0 };
  const cases = [['golden/model.ewm', 'golden/bundle.ewb', 'golden/context.ewcx', 'golden/result.ewrs']];
  for (const base of await (await fetch(`/fixtures/index.json?n=${params.get('n') ?? ''}`)).json()) {
    cases.push(['ewm', 'ewb', 'ewcx', 'ewrs'].map((e) => `fixtures/${base}.${e}`));
  }
  const mismatches = [];
  let rankMs = 0;
  const check = async (paths) => {
    const [model, bundle, ctx, want] = await Promise.all(paths.map((p) => get(`/${p}`)));
    await ranker.loadModel(model);
    // In the worker, the bundle moves there once and is ranked by handle.
    const handle = inWorker ? await ranker.addBundle(bundle) : bundle;
    const t = performance.now();
    const got = await ranker.rank(handle, ctx);
    rankMs += performance.now() - t;
    if (inWorker) await ranker.dropBundle(handle);
    if (!same(got, want)) mismatches.push(paths[1]);
  };
  for (const c of cases) await check(c);
  let lost = null;
  if (ranker.engine === 'webgpu') {
    // A device lost mid-session: the next ranking falls back to wasm, same bytes.
    await ranker.releaseGpu();
    await check(cases[0]);
    lost = { engine: ranker.engine, fallbacks: ranker.fallbacks, lastFallback: ranker.lastFallback?.code };
  }
  if (inWorker) ranker.terminate();
  return { ...created, worker: inWorker, compared: cases.length, mismatches, rankMs, lost };
}

run().then(
  (r) => { window.__result = r; },
  (e) => { window.__result = { error: String(e?.message ?? e), code: e instanceof EdgewiseError ? e.code : undefined }; },
);
