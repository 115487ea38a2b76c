// The packed package built into real apps by Vite and by webpack 5 (the most
// reported failure of wasm packages is a `.wasm` the bundler cannot find:
// "expected magic word 00 61 73 6d"), each run in Debian's Chromium with and
// without WebGPU; the golden files must rank to the committed bytes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, extname } from 'node:path';
import { chromium } from 'playwright-core';

const golden = process.env.EDGEWISE_GOLDEN;
const apps = (process.env.EDGEWISE_APPS ?? '').split(',').filter(Boolean).map((a) => a.split('='));
assert.ok(golden, 'EDGEWISE_GOLDEN must be set');
assert.equal(apps.length, 2, 'EDGEWISE_APPS names the Vite and webpack builds (cargo xtask npm-test sets it)');
const TYPES = { '.js': 'text/javascript', '.wasm': 'application/wasm', '.html': 'text/html' };

/** Serves an app's `dist/` and the golden files; returns its origin and a closer. */
async function serve(dist) {
  const server = createServer(async (req, res) => {
    let path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    try {
      if (path.includes('..')) throw new Error('no');
      let file;
      if (path.startsWith('/golden/')) file = join(golden, path.slice(8));
      else {
        if (path === '/') path = '/index.html';
        file = join(dist, path);
      }
      let body;
      try {
        body = await readFile(file);
      } catch (e) {
        if (path !== '/index.html') throw e;
        body = '<!doctype html><meta charset="utf-8"><script src="/main.js"></script>';
      }
      res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
      res.end(body);
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => server.close() };
}

for (const [name, dist] of apps) {
  test(`${name}: the built app ranks the golden files to the committed bytes, with and without WebGPU`, async () => {
    const { origin, close } = await serve(dist);
    try {
      for (const webgpu of [true, false]) {
        const args = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
          '--no-first-run', '--disable-quic'];
        if (webgpu) args.push('--enable-unsafe-webgpu');
        const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args });
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
