// The edge adapter inside workerd (Cloudflare Workers' runtime, from npm):
// the harness (harness-workerd.js) and the real Workers entry
// (js/edge-workers.js), each with the guest embedded as a `wasm` module.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startStack } from '../test/stack.mjs';
import { checkCache, checkFeed, checkGoldenRank, checkTrap, countingProxy, freePort, record, runtimeFile, STACK_CLOCK_SKEW_MS, scratch, startRuntime } from './lib.mjs';

let stack;
let proxy;
let rt;
let harness;
let entry;
let cold;

before(async () => {
  const workerd = runtimeFile('workerd/bin/workerd', 'workerd (npm)');
  stack = await startStack();
  proxy = await countingProxy(stack.origin);
  const dir = scratch('workerd');
  const [hp, ep] = [await freePort(), await freePort()];
  const worker = (modules, bindings) => `(
    modules = [${modules.map(([n, kind, f]) => `(name = "${n}", ${kind} = embed "${f}")`).join(', ')}],
    compatibilityDate = "2025-01-01",
    bindings = [${Object.entries(bindings).map(([k, v]) => `(name = "${k}", text = ${JSON.stringify(v)})`).join(', ')}],
    globalOutbound = "net",
  )`;
  const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "harness", worker = ${worker([
      ['harness.js', 'esModule', 'harness-workerd.js'], ['harness-core.js', 'esModule', 'harness-core.js'],
      ['edge.js', 'esModule', 'edge.js'], ['edge-guest.js', 'esModule', 'edge-guest.js'], ['edgewise_core.wasm', 'wasm', 'edgewise_core.wasm'], ['trap.wasm', 'wasm', 'trap.wasm'],
    ], { ORIGIN: proxy.url, MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS) })}),
    (name = "edge", worker = ${worker([
      ['edge-workers.js', 'esModule', 'edge-workers.js'], ['edge.js', 'esModule', 'edge.js'], ['edge-guest.js', 'esModule', 'edge-guest.js'], ['edgewise_core.wasm', 'wasm', 'edgewise_core.wasm'],
    ], { EDGEWISE_ORIGIN: stack.origin, EDGEWISE_CANDIDATES: '300', EDGEWISE_REFINE_DEADLINE_MS: '5000', EDGEWISE_MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS) })}),
    (name = "net", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [
    (name = "harness", address = "127.0.0.1:${hp}", http = (), service = "harness"),
    (name = "edge", address = "127.0.0.1:${ep}", http = (), service = "edge"),
  ],
);
`;
  writeFileSync(join(dir, 'config.capnp'), config);
  harness = `http://127.0.0.1:${hp}`;
  entry = `http://127.0.0.1:${ep}`;
  rt = await startRuntime(workerd, ['serve', 'config.capnp', '--verbose'], { cwd: dir }, `${harness}/livez`);
  cold = rt.coldMs;
});

after(async () => {
  rt?.stop();
  await proxy?.close();
  stack?.stop();
});

test('workerd: the golden bundle, context and model rank to result.ewrs, byte for byte', async () => {
  const t = await checkGoldenRank(harness);
  record('workerd', { coldStartMs: cold, ...t });
});

test('workerd: /v1/feed through the Workers entry matches the Rust edge', async () => {
  await checkFeed(entry, stack);
});

test('workerd: /v1/feed through the harness (origin behind a counting proxy) matches the Rust edge', async () => {
  await checkFeed(harness, stack);
});

test('workerd: a trapping guest is dropped and re-created on the next request', async () => {
  await checkTrap(harness);
});

test('workerd: the regional bundle is fetched from the origin once for many requests', async () => {
  const t = await checkCache(harness, proxy);
  record('workerd', { feed: t });
});

test('workerd: the runtime logged no uncaught error', () => {
  assert.doesNotMatch(rt.output(), /Uncaught|uncaught exception/i, rt.output());
});
