// The high-level client in Debian's Chromium against a real origin and edge
// (the `stack` example; the page is on another origin, so every call is a
// CORS request with a preflight): the same frames on WebGPU (SwiftShader),
// in a module worker, and in wasm; the Cache API keeps the bundles across a
// reload, so the next preliminary frame needs no network.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, serve, watchedPage } from './chromium.mjs';
import { startStack } from './stack.mjs';

const pkgDir = dirname(fileURLToPath(import.meta.resolve('edgewise/package.json')));
const here = dirname(fileURLToPath(import.meta.url));
let stack;
let server;

before(async () => {
  stack = await startStack();
  const csp = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; " +
    `connect-src 'self' ${stack.edge}`;
  server = await serve({
    pages: {
      '/': () => '<!doctype html><meta charset="utf-8"><script type="module" src="/app.js"></script>',
      '/app.js': () => readFile(join(here, 'client-app.js')),
    },
    types: { '/app.js': 'text/javascript' },
    dirs: { '/pkg/': pkgDir },
    headers: { 'content-security-policy': csp, 'cache-control': 'no-store' },
  });
});

after(async () => {
  await server?.close();
  stack?.stop();
});

const NOW = Date.now();

/** Runs the page with `query` (twice with `reload`), returns the results. */
async function run(query, { webgpu, reload = false }) {
  const browser = await launch({ webgpu });
  try {
    const { page: p, errors } = await watchedPage(browser);
    const url = `${server.origin}/?endpoint=${encodeURIComponent(stack.edge)}&token=${stack.tokens['7']}&now=${NOW}&${query}`;
    const results = [];
    for (let i = 0; i < (reload ? 2 : 1); i++) {
      await (i === 0 ? p.goto(url) : p.reload());
      await p.waitForFunction(() => window.__result !== undefined, null, { timeout: 120_000 });
      results.push(await p.evaluate(() => window.__result));
    }
    return { results, errors };
  } finally {
    await browser.close();
  }
}

test('the client ranks the same frames on WebGPU, in a worker and in wasm, and keeps bundles across a reload', async () => {
  const gpu = await run('gpu=require', { webgpu: true, reload: true });
  const worker = await run('gpu=require&worker=1', { webgpu: true });
  const wasm = await run('gpu=auto', { webgpu: false });
  for (const [name, r] of [['webgpu', gpu], ['worker', worker], ['wasm', wasm]]) {
    console.log(`${name}:`, JSON.stringify(r.results.map((x) => x.error ?? x.frames.map((f) =>
      ({ kind: f.kind, source: f.source, cache: f.cache, engine: f.engine, timings: f.timings, agreement: f.agreement })))));
    for (const x of r.results) assert.equal(x.error, undefined, `${name}: ${x.error}`);
    assert.deepEqual(r.errors, [], `${name}: no page errors, no CORS or CSP refusals`);
  }
  const [first, second] = gpu.results;
  assert.equal(first.engine, 'webgpu');
  assert.equal(worker.results[0].engine, 'webgpu');
  assert.equal(wasm.results[0].engine, 'wasm-simd');
  assert.equal(wasm.results[0].fallbacks, 1, 'no adapter: one fallback, counted');
  assert.deepEqual(first.frames.map((f) => [f.kind, f.source, f.scope]), [
    ['preliminary', 'network', 'regional'], ['refined', 'network', 'personal']]);
  // After the reload the user's last personal bundle comes from the Cache API.
  assert.deepEqual(second.frames.map((f) => [f.kind, f.source, f.scope]), [
    ['preliminary', 'cache-storage', 'personal'], ['refined', 'network', 'personal']]);
  // Every engine ranks the same regional bundle to the same items and scores
  // (personal bundles are built per request, so their bytes differ between runs).
  assert.equal(first.frames[0].digest, wasm.results[0].frames[0].digest, 'the regional bundle is shared');
  assert.deepEqual(first.frames[0].items, wasm.results[0].frames[0].items, 'WebGPU = wasm (preliminary)');
  assert.deepEqual(worker.results[0].frames[0].items, wasm.results[0].frames[0].items, 'worker = wasm (preliminary)');
  assert.equal(first.frames[1].shown, 2);
  assert.deepEqual(first.frames[1].items.slice(0, 2), first.frames[0].items.slice(0, 2), 'shown items stay');
  assert.ok(first.rerank.length > 0);
});
