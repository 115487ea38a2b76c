// The browser bench's page: ranks bench-N bundles with the package's Ranker
// in wasm and on WebGPU, and leaves the medians in `window.__result`.

import { Ranker } from '/pkg/index.js';

const get = async (path) => new Uint8Array(await (await fetch(path)).arrayBuffer());
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

async function time(ranker, bundle, ctx, rounds) {
  await ranker.rank(bundle, ctx); // warm-up (and, on the GPU, the upload)
  const ms = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    await ranker.rank(bundle, ctx);
    ms.push(performance.now() - t);
  }
  return median(ms);
}

async function run() {
  const wasm = await Ranker.create({ gpu: 'off' });
  const gpu = await Ranker.create({ gpu: 'auto', gpuMinRows: 0 });
  const rows = [];
  for (const n of [300, 10000, 100000]) {
    const [model, bundle, ctx] = await Promise.all(['ewm', 'ewb', 'ewcx'].map((e) => get(`/bench/bench-${n}.${e}`)));
    await wasm.loadModel(model);
    await gpu.loadModel(model);
    const a = await wasm.rank(bundle, ctx);
    const b = await gpu.rank(bundle, ctx);
    if (!same(a, b)) throw new Error(`n = ${n}: the WebGPU and wasm rankings differ`);
    const rounds = n >= 100000 ? 9 : 31;
    // Alternate, so machine noise hits both alike.
    const w = [];
    const g = [];
    for (let r = 0; r < 3; r++) {
      w.push(await time(wasm, bundle, ctx, Math.ceil(rounds / 3)));
      g.push(await time(gpu, bundle, ctx, Math.ceil(rounds / 3)));
    }
    rows.push({ n, wasmMs: median(w), gpuMs: median(g) });
  }
  return { engine: gpu.engine, adapter: gpu.adapter, lastFallback: gpu.lastFallback?.code, rows };
}

run().then(
  (r) => { window.__result = r; },
  (e) => { window.__result = { error: String(e?.message ?? e) }; },
);
