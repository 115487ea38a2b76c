// The packed package built into real apps by Vite and by webpack 5 (the most
// reported failure of wasm packages is a `.wasm` the bundler cannot find:
// "expected magic word 00 61 73 6d"), each run in Debian's Chromium with and
// without WebGPU; the golden files must rank to the committed bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { launch, serve } from './chromium.mjs';

const golden = process.env.EDGEWISE_GOLDEN;
const apps = (process.env.EDGEWISE_APPS ?? '').split(',').filter(Boolean).map((a) => a.split('='));
assert.ok(golden, 'EDGEWISE_GOLDEN must be set');
assert.equal(apps.length, 2, 'EDGEWISE_APPS names the Vite and webpack builds (cargo xtask npm-test sets it)');

/** Serves an app's `dist/` and the golden files. Vite writes an index.html; webpack does not, so one is made. */
function serveApp(dist) {
  const index = () =>
    readFile(join(dist, 'index.html')).catch(() => '<!doctype html><meta charset="utf-8"><script src="/main.js"></script>');
  return serve({ pages: { '/': index }, dirs: { '/golden/': golden, '/': dist } });
}

for (const [name, dist] of apps) {
  test(`${name}: the built app ranks the golden files to the committed bytes, with and without WebGPU`, async () => {
    const { origin, close } = await serveApp(dist);
    try {
      for (const webgpu of [true, false]) {
        const browser = await launch({ webgpu });
        try {
          const page = await browser.newPage();
          const errors = [];
          page.on('pageerror', (e) => errors.push(String(e)));
          await page.goto(origin);
          await page.waitForFunction(() => window.__result !== undefined, null, { timeout: 60_000 });
          const r = await page.evaluate(() => window.__result);
          console.log(`${name}, WebGPU ${webgpu ? 'on' : 'off'}:`, JSON.stringify(r));
          assert.equal(r.error, undefined, r.error);
          assert.equal(r.same, true, 'the golden bytes');
          assert.equal(r.engine, webgpu ? 'webgpu' : 'wasm-simd');
          assert.equal(r.workerSame, true, 'the golden bytes in the worker');
          assert.equal(r.workerEngine, r.engine);
          assert.deepEqual(errors, []);
        } finally {
          await browser.close();
        }
      }
    } finally {
      close();
    }
  });
}
