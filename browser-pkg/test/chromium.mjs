// What the browser tests and the browser bench share: Debian's Chromium
// driven by playwright-core, and a static file server on 127.0.0.1.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join, extname } from 'node:path';
import { chromium } from 'playwright-core';

const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.json': 'application/json', '.html': 'text/html' };

/**
 * Headless Debian Chromium (`npx playwright install` cannot work here).
 * `webgpu`: `--enable-unsafe-webgpu`, which gives a SwiftShader WebGPU
 * adapter; without it `requestAdapter()` returns null.
 * @param {{ webgpu: boolean }} options
 */
export function launch({ webgpu }) {
  const args = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-quic'];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  return chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args });
}

/**
 * A new page of `browser` and the list its page errors and console errors
 * (unhandled rejections included) are pushed to.
 * @param {import('playwright-core').Browser} browser
 */
export async function watchedPage(browser) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(`${m.text()} (${m.location().url})`));
  return { page, errors };
}

/**
 * Serves `pages` (exact paths: a function of the URL returning the body,
 * typed by `type` or text/html) and `dirs` (path prefix → directory), with
 * `headers` on every answer; anything else is a 404.
 * @param {{ pages?: Record<string, (url: URL) => Promise<string | Buffer> | string | Buffer>,
 *   types?: Record<string, string>, dirs?: Record<string, string>, headers?: Record<string, string> }} options
 */
export async function serve({ pages = {}, types = {}, dirs = {}, headers = {} }) {
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const path = decodeURIComponent(url.pathname);
    const send = (status, body, type) => {
      res.writeHead(status, { 'content-type': type, ...headers });
      res.end(body);
    };
    try {
      if (path.includes('..')) throw new Error('no');
      // Chromium asks for one after every page load; a 404 would show up as a console error.
      if (path === '/favicon.ico') return send(204, '', 'image/x-icon');
      if (pages[path]) return send(200, await pages[path](url), types[path] ?? 'text/html');
      const prefix = Object.keys(dirs).filter((p) => path.startsWith(p)).sort((a, b) => b.length - a.length)[0];
      if (prefix === undefined) throw new Error('no');
      const file = join(dirs[prefix], path.slice(prefix.length));
      send(200, await readFile(file), TYPES[extname(file)] ?? 'application/octet-stream');
    } catch {
      send(404, 'not found', 'text/plain');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${server.address().port}`, close: () => new Promise((r) => server.close(r)) };
}
