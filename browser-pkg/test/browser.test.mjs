// The packed package in a real browser: Debian's Chromium driven by
// playwright-core. With `--enable-unsafe-webgpu` Chromium offers a WebGPU
// adapter (SwiftShader, a CPU emulation): the GPU path must run and give the
// native core's bytes. Without it `requestAdapter()` returns null: the wasm
// fallback must run, say so, and give the same bytes. The page runs under a
// strict Content Security Policy (`script-src 'self' 'wasm-unsafe-eval'`).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, serve, watchedPage } from './chromium.mjs';

const fixtures = process.env.EDGEWISE_FIXTURES;
const golden = process.env.EDGEWISE_GOLDEN;
assert.ok(fixtures && golden, 'EDGEWISE_FIXTURES and EDGEWISE_GOLDEN must be set (cargo xtask npm-test sets them)');
const pkgDir = dirname(fileURLToPath(import.meta.resolve('edgewise/package.json')));
const here = dirname(fileURLToPath(import.meta.url));
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'";
/** Cases per page. */
const CASES = { wasm: 200, gpu: 200 };

let server;

before(async () => {
  const cases = (await readdir(fixtures)).filter((n) => n.endsWith('.ewrs')).map((n) => n.slice(0, -5)).sort();
  server = await serve({
    pages: {
      '/': () => '<!doctype html><meta charset="utf-8"><script type="module" src="/app.js"></script>',
      '/app.js': () => readFile(join(here, 'browser-app.js')),
      // The first `n` cases.
      '/fixtures/index.json': (url) => JSON.stringify(cases.slice(0, Number(url.searchParams.get('n') || cases.length))),
    },
    types: { '/app.js': 'text/javascript', '/fixtures/index.json': 'application/json' },
    dirs: { '/pkg/': pkgDir, '/golden/': golden, '/fixtures/': fixtures },
    headers: { 'content-security-policy': CSP, 'cache-control': 'no-store' },
  });
});

after(() => server?.close());

/** Opens the page (ranking the first `cases` cases) in a fresh Chromium and returns its summary. */
async function page(query, { webgpu, cases }) {
  const browser = await launch({ webgpu });
  try {
    const { page: p, errors } = await watchedPage(browser);
    await p.goto(`${server.origin}/?${query}&n=${cases}`);
    await p.waitForFunction(() => window.__result !== undefined, null, { timeout: 240_000 });
    const r = await p.evaluate(() => window.__result);
    return { ...r, errors, browser: browser.version() };
  } finally {
    await browser.close();
  }
}

test('with WebGPU the GPU path runs and matches the native bytes, also after losing the device', async () => {
  for (const packed of [true, false]) {
    const r = await page(`gpu=auto&packed=${packed}`, { webgpu: true, cases: CASES.gpu });
    console.log(`Chromium ${r.browser}, WebGPU (packed ${packed}):`, JSON.stringify(r));
    assert.equal(r.error, undefined, r.error);
    assert.equal(r.engine, 'webgpu', `the GPU path ran (fallback: ${r.lastFallback})`);
    // Both dot4 variants must have run: SwiftShader offers packed_4x8_integer_dot_product.
    assert.equal(r.adapter.packedDot, packed, `dot4I8Packed in use: ${r.adapter.packedDot}, asked ${packed}`);
    assert.equal(r.compared, CASES.gpu + 1);
    assert.deepEqual(r.mismatches, [], 'every GPU ranking equals the native core\'s bytes');
    assert.deepEqual(r.lost, { engine: 'wasm-simd', fallbacks: 1, lastFallback: r.lost.lastFallback });
    assert.ok(['gpu-lost', 'gpu'].includes(r.lost.lastFallback), r.lost.lastFallback);
    assert.deepEqual(r.errors, [], 'no page errors, no unhandled rejections');
  }
});

test('in a module worker (under worker-src \'self\'): WebGPU and wasm both match the native bytes', async () => {
  const gpu = await page('gpu=auto&worker=1', { webgpu: true, cases: 60 });
  console.log('worker, WebGPU:', JSON.stringify(gpu));
  assert.equal(gpu.error, undefined, gpu.error);
  assert.equal(gpu.worker, true);
  assert.equal(gpu.engine, 'webgpu');
  assert.deepEqual(gpu.mismatches, []);
  assert.equal(gpu.lost.engine, 'wasm-simd', 'the worker fell back after losing its device');
  assert.deepEqual(gpu.errors, []);
  const cpu = await page('gpu=auto&worker=1', { webgpu: false, cases: 60 });
  console.log('worker, no WebGPU:', JSON.stringify(cpu));
  assert.equal(cpu.error, undefined, cpu.error);
  assert.equal(cpu.engine, 'wasm-simd');
  assert.equal(cpu.lastFallback, 'no-gpu');
  assert.deepEqual(cpu.mismatches, []);
  assert.deepEqual(cpu.errors, []);
});

test('without WebGPU the wasm fallback runs, says why, and matches the native bytes', async () => {
  const r = await page('gpu=auto', { webgpu: false, cases: CASES.wasm });
  console.log(`Chromium ${r.browser}, no WebGPU:`, JSON.stringify({ ...r, mismatches: r.mismatches.length }));
  assert.equal(r.error, undefined, r.error);
  assert.equal(r.engine, 'wasm-simd');
  assert.equal(r.fallbacks, 1);
  assert.equal(r.lastFallback, 'no-gpu');
  assert.equal(r.compared, CASES.wasm + 1);
  assert.deepEqual(r.mismatches, []);
  assert.deepEqual(r.errors, []);

  const required = await page('gpu=require', { webgpu: false, cases: 1 });
  assert.equal(required.code, 'no-gpu', JSON.stringify(required));
});
