// The edge adapter inside Deno (from npm, @deno/linux-x64-glibc): the
// harness (harness-deno.js; the harness's main edge uses Deno's Cache API)
// and the real Deno entry (js/edge-deno.js).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startStack } from '../test/stack.mjs';
import {
  checkCache, checkFeed, checkGoldenRank, checkTrap, countingProxy, envPath, freePort, record, runtimeFile, scratch,
  startRuntime, STACK_CLOCK_SKEW_MS,
} from './lib.mjs';

let stack;
let proxy;
let rts = [];
let harness;
let entry;
let cold;

before(async () => {
  const deno = runtimeFile('@deno/linux-x64-glibc/deno', '@deno/linux-x64-glibc (npm)');
  const guest = envPath('EDGEWISE_GUEST', 'the guest module target/wasm/edgewise_core.wasm');
  stack = await startStack();
  proxy = await countingProxy(stack.origin);
  const dir = scratch('deno');
  const [hp, ep] = [await freePort(), await freePort()];
  const base = { ...process.env, DENO_DIR: join(dir, '.deno'), NO_COLOR: '1', DENO_NO_UPDATE_CHECK: '1' };
  const flags = ['run', '--quiet', '--no-prompt', '--allow-net=127.0.0.1', '--allow-env', `--allow-read=${dir},${guest}`];
  harness = `http://127.0.0.1:${hp}`;
  entry = `http://127.0.0.1:${ep}`;
  const h = await startRuntime(deno, [...flags, 'harness-deno.js'], {
    cwd: dir,
    env: { ...base, EDGEWISE_GUEST: join(dir, 'edgewise_core.wasm'), EDGEWISE_TRAP: join(dir, 'trap.wasm'), ORIGIN: proxy.url, PORT: String(hp), MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS), USE_PLATFORM_CACHE: '1' },
  }, `${harness}/livez`);
  rts.push(h);
  cold = h.coldMs;
  rts.push(await startRuntime(deno, [...flags, 'edge-deno.js'], {
    cwd: dir,
    env: { ...base, EDGEWISE_ORIGIN: stack.origin, EDGEWISE_PORT: String(ep), EDGEWISE_CANDIDATES: '300', EDGEWISE_REFINE_DEADLINE_MS: '5000', EDGEWISE_MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS) },
  }, `${entry}/livez`));
});

after(async () => {
  for (const r of rts) r.stop();
  await proxy?.close();
  stack?.stop();
});

test('deno: the golden bundle, context and model rank to result.ewrs, byte for byte', async () => {
  const t = await checkGoldenRank(harness);
  record('deno', { coldStartMs: cold, ...t });
});

test('deno: /v1/feed through the Deno entry matches the Rust edge', async () => {
  await checkFeed(entry, stack);
});

test('deno: /v1/feed through the harness (origin behind a counting proxy) matches the Rust edge', async () => {
  await checkFeed(harness, stack);
});

test('deno: a trapping guest is dropped and re-created on the next request', async () => {
  await checkTrap(harness);
});

test('deno: the regional bundle is fetched from the origin once for many requests (Deno\'s Cache API)', async () => {
  const t = await checkCache(harness, proxy);
  record('deno', { feed: t });
});

test('deno: the runtime logged no uncaught error', () => {
  for (const r of rts) assert.doesNotMatch(r.output(), /Uncaught|error:/i, r.output());
});
