// The edge adapter under miniflare (Cloudflare's local simulator, the engine
// of `wrangler dev`, from npm): workerd with Cloudflare's real Cache API
// semantics behind `caches.default`, which a bare `workerd serve` only has
// when a cache service is configured. The harness's main edge and the real
// Workers entry (js/edge-workers.js) both cache through `caches.default`
// here, so the cache check below is the platform's cache, not the adapter's
// in-memory stand-in.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { startStack } from '../test/stack.mjs';
import { checkCache, checkFeed, checkGoldenRank, checkTrap, countingProxy, record, runtimeFile, scratch, STACK_CLOCK_SKEW_MS } from './lib.mjs';

let stack;
let proxy;
/** @type {any[]} */
const mfs = [];
/** The harness's Miniflare, whose `caches.default` the test reads from outside. */
let harnessMf;
let harness;
let entry;
let cold;
let logs = '';

before(async () => {
  const pkg = runtimeFile('miniflare/package.json', 'miniflare (npm)');
  const { Miniflare, Log, LogLevel } = createRequire(pkg)('miniflare');
  // Miniflare's log lines (workerd's stderr included) are kept for the last check.
  class Keep extends Log {
    log(message) {
      logs += `${message}\n`;
    }
  }
  stack = await startStack();
  proxy = await countingProxy(stack.origin);
  const dir = scratch('miniflare');
  const start = async (script, bindings) => {
    const t0 = performance.now();
    const mf = new Miniflare({
      modules: true,
      scriptPath: join(dir, script),
      modulesRoot: dir,
      modulesRules: [{ type: 'ESModule', include: ['**/*.js'] }, { type: 'CompiledWasm', include: ['**/*.wasm'] }],
      compatibilityDate: '2025-01-01',
      bindings,
      host: '127.0.0.1',
      port: 0,
      log: new Keep(LogLevel.WARN),
    });
    mfs.push(mf);
    harnessMf ??= mf;
    const url = (await mf.ready).href.replace(/\/$/, '');
    const r = await fetch(`${url}/livez`);
    assert.equal(r.status, 200, await r.text());
    return { url, ms: performance.now() - t0 };
  };
  const h = await start('harness-workerd.js', { ORIGIN: proxy.url, MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS), USE_PLATFORM_CACHE: '1' });
  harness = h.url;
  cold = h.ms;
  entry = (await start('edge-workers.js', {
    EDGEWISE_ORIGIN: stack.origin, EDGEWISE_CANDIDATES: '300', EDGEWISE_REFINE_DEADLINE_MS: '5000', EDGEWISE_MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS),
  })).url;
});

after(async () => {
  for (const mf of mfs) await mf.dispose();
  await proxy?.close();
  stack?.stop();
});

test('miniflare: the golden bundle, context and model rank to result.ewrs, byte for byte', async () => {
  const t = await checkGoldenRank(harness);
  record('miniflare', { coldStartMs: cold, ...t });
});

test('miniflare: /v1/feed through the Workers entry (caches.default) matches the Rust edge', async () => {
  await checkFeed(entry, stack);
});

test('miniflare: a trapping guest is dropped and re-created on the next request', async () => {
  await checkTrap(harness);
});

test('miniflare: through caches.default, the regional bundle is fetched from the origin once for many requests', async () => {
  const t = await checkCache(harness, proxy);
  record('miniflare', { feed: t });
  // The entry is in the platform's cache, as the Workers runtime stored it.
  const stored = await (await harnessMf.getCaches()).default.match(`${proxy.url}/v1/regions/5/bundle?k=300`);
  assert.ok(stored, 'the regional bundle is in caches.default');
  assert.equal(stored.status, 200);
  assert.match(stored.headers.get('cache-control') ?? '', /s-maxage/);
  assert.ok((await stored.arrayBuffer()).byteLength > 64, 'with its body');
});

test('miniflare: the runtime logged no uncaught error', () => {
  assert.doesNotMatch(logs, /Uncaught|uncaught exception/i, logs);
});
