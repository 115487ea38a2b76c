// The browser page of client-browser.test.mjs: the high-level client against
// a real edge (another origin: CORS), under a strict CSP. Query: `endpoint`,
// `token`, `gpu`, `worker`, `now` (the fixed clock). Writes `window.__result`.

import { Edgewise } from '/pkg/index.js';

const q = new URLSearchParams(location.search);
const plain = (f) => ({
  kind: f.kind, source: f.source, scope: f.scope, engine: f.engine, shown: f.shown, cache: f.bundle.cache,
  digest: f.bundle.digest, agreement: f.agreement, timings: f.timings,
  items: f.items.map((i) => [String(i.id), i.score]),
});

async function main() {
  const ew = await Edgewise.create({
    endpoint: q.get('endpoint'),
    token: async () => q.get('token'),
    gpu: q.get('gpu') ?? 'auto',
    worker: q.get('worker') === '1',
    gpuMinRows: 0, // the fixture's bundles are small: rank them on the GPU anyway
    clock: () => Number(q.get('now')),
  });
  const frames = [];
  for await (const f of ew.feed({ user: 7, region: 0, k: 10 })) {
    frames.push(plain(f));
    if (f.kind === 'preliminary') for (const it of f.items.slice(0, 2)) ew.track({ item: it.id, kind: 'impression' });
  }
  ew.track({ item: frames.at(-1).items[5][0] && BigInt(frames.at(-1).items[5][0]), kind: 'like' });
  const rerank = await ew.rerank();
  await ew.close();
  return {
    frames, engine: ew.engine, adapter: ew.adapter ?? null, fallbacks: ew.fallbacks.count,
    rerank: rerank.items.map((i) => String(i.id)),
  };
}

main().then(
  (r) => { window.__result = r; },
  (e) => { window.__result = { error: `${e?.code ?? ''} ${e?.message ?? e}` }; },
);
