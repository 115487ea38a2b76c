// The scratch app both bundler tests build (Vite and webpack 5): it imports
// the installed package as any app would, ranks the golden v1 files and
// leaves what happened in `window.__result`.
import { Ranker, decodeResult } from 'edgewise';

const get = async (path) => {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
};

async function run() {
  const ranker = await Ranker.create({ gpu: 'auto', gpuMinRows: 0 });
  const names = ['model.ewm', 'bundle.ewb', 'context.ewcx', 'result.ewrs'];
  const [model, bundle, ctx, want] = await Promise.all(names.map((n) => get(`/golden/${n}`)));
  ranker.loadModel(model);
  const got = await ranker.rank(bundle, ctx);
  const same = got.length === want.length && got.every((x, i) => x === want[i]);
  return { engine: ranker.engine, lastFallback: ranker.lastFallback?.code, same, items: decodeResult(got).items.length };
}

run().then(
  (r) => { window.__result = r; },
  (e) => { window.__result = { error: String(e?.message ?? e) }; },
);
