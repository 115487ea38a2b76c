// The edge adapter inside Vercel's edge runtime (the `edge-runtime` npm
// package, through run-edge-runtime.mjs): the harness and the real Vercel
// entry (js/edge-vercel.js, whose cache is the isolate's memory).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { startStack } from '../test/stack.mjs';
import {
  checkCache, checkFeed, checkGoldenRank, checkTrap, countingProxy, freePort, record, runtimeFile, scratch, startRuntime,
  STACK_CLOCK_SKEW_MS,
} from './lib.mjs';

const runner = fileURLToPath(new URL('./run-edge-runtime.mjs', import.meta.url));
let stack;
let proxy;
const rts = [];
let harness;
let entry;
let cold;

before(async () => {
  runtimeFile('edge-runtime/package.json', 'edge-runtime (npm)');
  stack = await startStack();
  proxy = await countingProxy(stack.origin);
  const dir = scratch('edge-runtime');
  const [hp, ep] = [await freePort(), await freePort()];
  harness = `http://127.0.0.1:${hp}`;
  entry = `http://127.0.0.1:${ep}`;
  const env = { ...process.env, MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS) };
  const h = await startRuntime(process.execPath, [runner, 'harness', String(hp), dir], { env: { ...env, ORIGIN: proxy.url } }, `${harness}/livez`);
  rts.push(h);
  cold = h.coldMs;
  rts.push(await startRuntime(process.execPath, [runner, 'vercel', String(ep), dir], {
    env: { ...env, EDGEWISE_ORIGIN: stack.origin, EDGEWISE_CANDIDATES: '300', EDGEWISE_REFINE_DEADLINE_MS: '5000', EDGEWISE_MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS) },
  }, `${entry}/livez`));
});

after(async () => {
  for (const r of rts) r.stop();
  await proxy?.close();
  stack?.stop();
});

test('edge-runtime: the golden bundle, context and model rank to result.ewrs, byte for byte', async () => {
  const t = await checkGoldenRank(harness);
  record('edge-runtime', { coldStartMs: cold, ...t });
});

test('edge-runtime: /v1/feed through the Vercel entry matches the Rust edge', async () => {
  await checkFeed(entry, stack);
});

test('edge-runtime: /v1/feed through the harness (origin behind a counting proxy) matches the Rust edge', async () => {
  await checkFeed(harness, stack);
});

test('edge-runtime: a trapping guest is dropped and re-created on the next request', async () => {
  await checkTrap(harness);
});

test('edge-runtime: the regional bundle is fetched from the origin once for many requests', async () => {
  const t = await checkCache(harness, proxy);
  record('edge-runtime', { feed: t });
});

test('edge-runtime: the runtime logged no uncaught error', () => {
  for (const r of rts) assert.doesNotMatch(r.output(), /Uncaught|Error:/, r.output());
});
