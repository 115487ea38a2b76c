// The Fastly app's tests: the app (EDGEWISE_FASTLY_APP, built beforehand:
// nothing is built here), Viceroy, Fastly's local server (EDGEWISE_VICEROY,
// built from crates.io OUTSIDE the repository by `cargo xtask fastly-test`),
// and the checks that only an edge with a shared cache passes. The feed
// checks themselves are the wasi:http component's (../../wasi-http/test).
//
// A missing app or Viceroy FAILS the tests, naming how to get it.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startRuntime } from '../../../browser-pkg/edge-test/lib.mjs';
import { componentEnv } from '../../wasi-http/test/lib.mjs';

export const VICEROY_VERSION = '0.22.0';
const INSTALL_VICEROY = `cargo install --locked viceroy@${VICEROY_VERSION} --root ~/.cache/edgewise/viceroy (cargo xtask fastly-test does it)`;
const BUILD = 'cd edge-worker/fastly && CARGO_TARGET_DIR=../../target/fastly cargo build --release --target wasm32-wasip1';

/** The app to serve; throws naming how to build it. */
export function app() {
  const p = process.env.EDGEWISE_FASTLY_APP;
  if (!p) throw new Error(`EDGEWISE_FASTLY_APP must name the app (build it: ${BUILD})`);
  if (!existsSync(p)) throw new Error(`EDGEWISE_FASTLY_APP=${p} does not exist (build it: ${BUILD})`);
  return p;
}

/** Viceroy's binary; throws naming how to install it. */
export function viceroy() {
  const p = process.env.EDGEWISE_VICEROY;
  if (!p) throw new Error(`EDGEWISE_VICEROY must name the viceroy binary (${INSTALL_VICEROY})`);
  if (!existsSync(p)) throw new Error(`EDGEWISE_VICEROY=${p} does not exist (${INSTALL_VICEROY})`);
  return p;
}

/** The app's size, logged. */
export function logSize() {
  const n = statSync(app()).size;
  console.log(`# Fastly app ${app()}: ${n} bytes (${(n / 1024).toFixed(1)} KiB)`);
  return n;
}

/**
 * `viceroy serve` on a free loopback port, with a `fastly.toml` whose
 * config store `edgewise` holds the settings (the stack edge's, so that
 * refusals read the same).
 */
export async function serveViceroy(origin) {
  const bin = viceroy();
  const wasm = app();
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'edgewise-viceroy-'));
  const env = componentEnv(origin);
  const settings = {
    origin: env.EDGEWISE_ORIGIN,
    candidates: env.EDGEWISE_CANDIDATES,
    refine_deadline_ms: env.EDGEWISE_REFINE_DEADLINE_MS,
    max_clock_skew_ms: env.EDGEWISE_MAX_CLOCK_SKEW_MS,
  };
  const toml = [
    'manifest_version = 3',
    'name = "edgewise-edge-fastly"',
    'language = "rust"',
    '',
    '[local_server.config_stores.edgewise]',
    'format = "inline-toml"',
    '',
    '[local_server.config_stores.edgewise.contents]',
    ...Object.entries(settings).map(([k, v]) => `${k} = ${JSON.stringify(v)}`),
    '',
  ].join('\n');
  writeFileSync(join(dir, 'fastly.toml'), toml);
  const rt = await startRuntime(bin, ['serve', '--addr', `127.0.0.1:${port}`, '-C', join(dir, 'fastly.toml'), wasm],
    { cwd: dir, env: { ...process.env, RUST_LOG: 'warn' } }, `http://127.0.0.1:${port}/livez`, 120_000);
  return { ...rt, base: `http://127.0.0.1:${port}` };
}

const feed = async (base, region, k = 5) => {
  const r = await fetch(`${base}/v1/feed?region=${region}&k=${k}&refine=false`);
  const f = await r.json();
  assert.equal(r.status, 200, JSON.stringify(f));
  assert.equal(f.ranked_by, 'guest', JSON.stringify(f));
  return f;
};
const modelFetches = (proxy) => [...proxy.counts].filter(([p]) => /^\/v1\/models\/[0-9a-f]{64}$/.test(p)).reduce((a, [, c]) => a + c, 0);

/**
 * The core cache: a regional bundle is fetched from the origin once for many
 * feeds, concurrent or not, and the model once for all of them.
 */
export async function checkCached(base, proxy) {
  const count = (p) => proxy.counts.get(p) ?? 0;
  const path = '/v1/regions/6/bundle';
  const [b0, m0] = [count(path), modelFetches(proxy)];
  const first = await Promise.all(Array.from({ length: 20 }, () => feed(base, 6)));
  const rest = [];
  for (let i = 0; i < 10; i++) rest.push(await feed(base, 6));
  assert.equal(count(path) - b0, 1, `the regional bundle was fetched once for 30 feeds, 20 of them at once (${count(path) - b0})`);
  assert.ok(first.filter((f) => f.bundle_cache === 'miss').length === 1, first.map((f) => f.bundle_cache).join(','));
  assert.ok(rest.every((f) => f.bundle_cache === 'hit'), rest.map((f) => f.bundle_cache).join(','));
  assert.ok([...first, ...rest].every((f) => f.bundle_digest === first[0].bundle_digest));
  assert.ok(modelFetches(proxy) - m0 <= 1, `the model is fetched at most once more (${modelFetches(proxy) - m0})`);
  const m1 = modelFetches(proxy);
  for (let i = 0; i < 3; i++) await feed(base, 8);
  assert.equal(modelFetches(proxy), m1, 'another region names the same model: the cached one is used');
}

/**
 * Revalidation by ETag: with the origin's lifetime cut to 1 s (the proxy
 * rewrites `Cache-Control`), an expired entry is revalidated with
 * `If-None-Match`, the origin's 304 renews it, and while the origin fails the
 * stored copy is served stale.
 */
export async function checkRevalidated(base, { proxy }) {
  const path = '/v1/regions/9/bundle';
  proxy.cacheControl.set(path, 'public, s-maxage=1, stale-while-revalidate=60, stale-if-error=600');
  const count = (m) => m.get(path) ?? 0;
  const a = await feed(base, 9);
  assert.equal(a.bundle_cache, 'miss');
  assert.equal((await feed(base, 9)).bundle_cache, 'hit');
  await new Promise((r) => setTimeout(r, 1_300));
  const [r0, n0] = [count(proxy.revalidations), count(proxy.notModified)];
  const b = await feed(base, 9);
  assert.equal(b.bundle_cache, 'revalidated', JSON.stringify(b));
  assert.equal(count(proxy.revalidations) - r0, 1, 'the expired entry was revalidated with If-None-Match');
  assert.equal(count(proxy.notModified) - n0, 1, "the origin's 304 renewed it");
  assert.equal(b.bundle_digest, a.bundle_digest, 'the same bytes');
  assert.equal((await feed(base, 9)).bundle_cache, 'hit', 'renewed for another second');
  await new Promise((r) => setTimeout(r, 1_300));
  proxy.failing.add(path);
  try {
    const c = await feed(base, 9);
    assert.equal(c.bundle_cache, 'stale', JSON.stringify(c));
    assert.equal(c.bundle_digest, a.bundle_digest);
  } finally {
    proxy.failing.delete(path);
    proxy.cacheControl.delete(path);
  }
}

/** A personal bundle never enters the cache: each signed-in feed asks the origin. */
export async function checkPersonalNotCached(base, { stack, proxy }) {
  const path = '/v1/users/7/candidates';
  const n0 = proxy.counts.get(path) ?? 0;
  for (let i = 0; i < 3; i++) {
    const r = await fetch(`${base}/v1/feed?user=7&region=0&k=5`, { headers: { authorization: `Bearer ${stack.tokens['7']}` } });
    const f = await r.json();
    assert.equal(r.status, 200, JSON.stringify(f));
    assert.equal(f.frame, 'refined');
    assert.equal(f.bundle_cache, 'miss');
  }
  assert.equal((proxy.counts.get(path) ?? 0) - n0, 3);
  // Another user's token for user 7: the origin refuses it; nothing stored answers instead.
  const r = await fetch(`${base}/v1/feed?user=7&region=0&k=5`, { headers: { authorization: `Bearer ${stack.tokens['8']}` } });
  const f = await r.json();
  assert.equal(r.status, 200);
  assert.equal(f.frame, 'preliminary', 'the refinement failed: the answer is the regional ranking');
  assert.equal(r.headers.get('x-edgewise-feed'), 'preliminary');
}
