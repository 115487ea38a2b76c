// Compiled (not run) by types.test.mjs with `tsc --strict`: the shipped
// types describe the API as the README uses it.

import { Core, Edgewise, EdgewiseError, decodeResult, encodeContext, type Frame } from 'edgewise';

async function lowLevel(model: Uint8Array, bundle: Uint8Array): Promise<bigint[]> {
  const core = await Core.load();
  const digest: string = core.loadModel(model);
  void digest;
  const result = decodeResult(core.rank(bundle, encodeContext({ k: 10, region: 3, seen: [1n] })));
  return result.items.map((i) => i.id);
}

async function highLevel(): Promise<void> {
  const ew = await Edgewise.create({ endpoint: '/', token: async (refresh) => (refresh ? 'new' : 'old'), gpu: 'auto' });
  const engine: 'webgpu' | 'wasm-simd' = ew.engine;
  void engine;
  try {
    for await (const frame of ew.feed({ user: 7, region: 3, k: 20 })) {
      const f: Frame = frame;
      const first = f.items[0];
      if (first) ew.track({ item: first.id, kind: 'like' });
      const tau: number | null = f.agreement?.kendallTau ?? null;
      void tau;
      const sources: string[] = first?.sources ?? [];
      const replay: Uint8Array[] = [f.replay.bundle, f.replay.context, f.replay.result];
      const cut: number = f.stages['cut by creator cap'] ?? 0;
      void sources, replay, cut;
    }
  } catch (e) {
    if (e instanceof EdgewiseError && e.code === 'endpoint-down') console.log('offline');
  }
  const { moved } = await ew.rerank();
  const why = ew.explain(moved[0]?.id ?? 0n);
  if (why) console.log(why.outcome, why.preScore, why.creator, why.sources.join(', '));
  const sim: number | null = ew.similarity(1n, 2);
  void sim;
  ew.addEventListener('error', (e) => console.log((e as CustomEvent<EdgewiseError>).detail.code));
  await ew.close();
}

export { lowLevel, highLevel };
