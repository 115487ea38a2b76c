// Shared pieces of the edge-adapter tests: the environment, the runtimes'
// binaries (installed from npm OUTSIDE the repository, in EDGEWISE_EDGE_RT,
// default /tmp/edge-rt), a scratch directory with the adapter and the guests,
// a counting proxy in front of the origin, the hand-written trapping guest,
// and the checks every runtime must pass.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, copyFileSync, mkdirSync, appendFileSync } from 'node:fs';
import { createServer } from 'node:net';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const JS = join(here, '..', 'js');

/** A required environment variable naming an existing file or directory; throws naming what is missing. */
export function envPath(name, what) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} must name ${what}`);
  if (!existsSync(v)) throw new Error(`${name}=${v} does not exist (${what})`);
  return v;
}

export const RT = process.env.EDGEWISE_EDGE_RT ?? '/tmp/edge-rt';
const INSTALL = `mkdir -p ${RT} && cd ${RT} && npm init -y && npm install workerd@1.20261117.1 edge-runtime@4.0.1 @deno/linux-x64-glibc@2.9.6 miniflare@4.20260426.0`;

/** The path of a runtime's file under EDGEWISE_EDGE_RT; throws naming the npm package to install. */
export function runtimeFile(rel, pkg) {
  const p = join(RT, 'node_modules', rel);
  if (!existsSync(p)) throw new Error(`${p} is missing: the runtime ${pkg} is not installed (${INSTALL})`);
  return p;
}

/** The golden files. */
export function golden() {
  const dir = envPath('EDGEWISE_GOLDEN', 'the golden directory core/tests/golden/v1');
  const read = (f) => new Uint8Array(readFileSync(join(dir, f)));
  return { bundle: read('bundle.ewb'), context: read('context.ewcx'), model: read('model.ewm'), result: read('result.ewrs') };
}

/** A free loopback port. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {any} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

// --- The trapping guest, hand-assembled --------------------------------------

const uleb = (n) => {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const str = (s) => [...uleb(s.length), ...new TextEncoder().encode(s)];
const section = (id, body) => [id, ...uleb(body.length), ...body];
const vec = (items) => [...uleb(items.length), ...items.flat()];

/**
 * A zero-import guest with the ABI's exports whose `ew_rank` executes
 * `unreachable` when the context's k is 13, and also when it is entered in an
 * instance whose previous `ew_rank` trapped (as a real guest's interrupted
 * allocator would fail): a host that reuses a trapped instance fails again.
 * Otherwise it "ranks" to an empty EWRS result (16 bytes at address 16).
 * `ew_alloc` bumps from 1024; ew_rank and ew_load_model reset it.
 */
export function trapWasm() {
  const I32 = 0x7f;
  const types = [[0x60, 0, 1, I32], [0x60, 1, I32, 1, I32], [0x60, 2, I32, I32, 0], [0x60, 2, I32, I32, 1, I32], [0x60, 4, I32, I32, I32, I32, 1, I32]];
  // name, type, body
  const G_BUSY = 0, G_NEXT = 1;
  const reset = [0x41, 0x80, 0x08, 0x24, G_NEXT]; // next = 1024
  const funcs = [
    ['ew_abi_version', 0, [0x41, 1]],
    ['ew_alloc', 1, [0x23, G_NEXT, 0x23, G_NEXT, 0x20, 0, 0x41, 7, 0x6a, 0x41, 0x78, 0x71, 0x6a, 0x24, G_NEXT]],
    ['ew_free', 2, []],
    ['ew_load_model', 3, [...reset, 0x41, 0]],
    ['ew_rank', 4, [
      0x23, G_BUSY, 0x04, 0x40, 0x00, 0x0b, // if busy: unreachable
      0x41, 1, 0x24, G_BUSY, // busy = 1
      0x20, 2, 0x28, 2, 8, 0x41, 13, 0x46, 0x04, 0x40, 0x00, 0x0b, // if ctx.k == 13: unreachable
      0x41, 0, 0x24, G_BUSY, ...reset, 0x41, 0,
    ]],
    ['ew_result_ptr', 0, [0x41, 16]],
    ['ew_result_len', 0, [0x41, 16]],
    ['ew_error_ptr', 0, [0x41, 0]],
    ['ew_error_len', 0, [0x41, 0]],
  ];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(3, vec(funcs.map(([, t]) => [t]))),
    ...section(5, vec([[0x00, 4]])),
    ...section(6, vec([[I32, 1, 0x41, 0, 0x0b], [I32, 1, 0x41, 0x80, 0x08, 0x0b]])),
    ...section(7, vec([[...str('memory'), 2, 0], ...funcs.map(([name], i) => [...str(name), 0, i])])),
    ...section(10, vec(funcs.map(([, , body]) => { const b = [0, ...body, 0x0b]; return [...uleb(b.length), ...b]; }))),
    ...section(11, vec([[0, 0x41, 16, 0x0b, ...uleb(16), 0x45, 0x57, 0x52, 0x53, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])),
  ];
  return new Uint8Array(bytes);
}

// --- Scratch directory ---------------------------------------------------------

/** A fresh scratch directory holding the adapter, the harness and both guests. */
export function scratch(name) {
  const guest = envPath('EDGEWISE_GUEST', 'the guest module target/wasm/edgewise_core.wasm (cargo xtask guest)');
  const dir = mkdtempSync(join(tmpdir(), `edgewise-${name}-`));
  for (const f of ['edge.js', 'edge-guest.js', 'edge-workers.js', 'edge-deno.js', 'edge-vercel.js']) copyFileSync(join(JS, f), join(dir, f));
  for (const f of ['harness-core.js', 'harness-workerd.js', 'harness-deno.js']) copyFileSync(join(here, f), join(dir, f));
  copyFileSync(guest, join(dir, 'edgewise_core.wasm'));
  writeFileSync(join(dir, 'trap.wasm'), trapWasm());
  return dir;
}

// --- Processes -----------------------------------------------------------------

/**
 * Spawns a runtime and waits until `url` answers 200; resolves to
 * `{ child, coldMs, stop() }`. Fails with the runtime's own output when it
 * exits or does not answer within `timeoutMs`.
 */
export async function startRuntime(cmd, args, opts, url, timeoutMs = 60_000) {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { out += d; });
  let exited = null;
  child.once('exit', (code, sig) => { exited = `${code ?? sig}`; });
  child.once('error', (e) => { exited = String(e); });
  for (;;) {
    if (exited !== null) throw new Error(`${cmd} exited (${exited}) before it answered ${url}:\n${out}`);
    if (performance.now() - t0 > timeoutMs) {
      child.kill('SIGKILL');
      throw new Error(`${cmd} did not answer ${url} within ${timeoutMs} ms:\n${out}`);
    }
    try {
      const r = await fetch(url);
      if (r.status === 200) {
        await r.arrayBuffer();
        break;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    child,
    coldMs: performance.now() - t0,
    output: () => out,
    stop() {
      if (exited === null) child.kill('SIGTERM');
    },
  };
}

/**
 * A proxy in front of the origin that counts the GETs it passes, by path.
 * A test may also, per path: replace the origin's `Cache-Control`
 * (`cacheControl.set(path, value)`), or answer 503 instead of asking the
 * origin (`failing.add(path)`); `revalidations` counts the requests that
 * carried `If-None-Match` and `notModified` the 304s passed back.
 */
export async function countingProxy(origin) {
  const counts = new Map();
  /** Requests per path that carried a Bearer token. */
  const bearers = new Map();
  const revalidations = new Map();
  const notModified = new Map();
  const cacheControl = new Map();
  const failing = new Set();
  const bump = (m, k) => m.set(k, (m.get(k) ?? 0) + 1);
  const server = http.createServer(async (req, res) => {
    const path = req.url.split('?')[0];
    bump(counts, path);
    if (/^Bearer /.test(req.headers.authorization ?? '')) bump(bearers, path);
    if (req.headers['if-none-match']) bump(revalidations, path);
    if (failing.has(path)) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('the origin is down (counting proxy)');
      return;
    }
    try {
      const headers = {};
      for (const h of ['authorization', 'if-none-match', 'accept', 'x-api-key']) if (req.headers[h]) headers[h] = req.headers[h];
      const r = await fetch(origin + req.url, { method: req.method, headers });
      const body = Buffer.from(await r.arrayBuffer());
      const out = {};
      for (const [k, v] of r.headers) if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection', 'keep-alive'].includes(k)) out[k] = v;
      if (cacheControl.has(path) && r.status < 400) out['cache-control'] = cacheControl.get(path);
      if (r.status === 304) bump(notModified, path);
      res.writeHead(r.status, out);
      res.end(body);
    } catch (e) {
      res.writeHead(502);
      res.end(String(e));
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = /** @type {any} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    counts,
    bearers,
    revalidations,
    notModified,
    cacheControl,
    failing,
    // Kept-alive connections are dropped too, or a runtime's idle one keeps the proxy open.
    close: () => new Promise((r) => { server.close(r); server.closeAllConnections(); }),
  };
}

// --- The checks ------------------------------------------------------------------

/** The body of `POST /__edgewise/rank`. */
export function rankBody(bundle, context, model) {
  const head = new Uint8Array(12);
  const dv = new DataView(head.buffer);
  dv.setUint32(0, bundle.length, true);
  dv.setUint32(4, context.length, true);
  dv.setUint32(8, model.length, true);
  return Buffer.concat([head, bundle, context, model]);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Ranks the golden files through the adapter at `base`; returns the timings. */
export async function checkGoldenRank(base) {
  const g = golden();
  const body = rankBody(g.bundle, g.context, g.model);
  const rank = () => fetch(`${base}/__edgewise/rank`, { method: 'POST', body });
  const t0 = performance.now();
  let r = await rank();
  const firstMs = performance.now() - t0;
  const got = new Uint8Array(await r.arrayBuffer());
  assert.equal(r.status, 200, new TextDecoder().decode(got));
  assert.equal(got.length, g.result.length, 'the EWRS length');
  assert.ok(Buffer.from(got).equals(Buffer.from(g.result)), 'the adapter\'s EWRS bytes are result.ewrs, byte for byte');
  const times = [];
  for (let i = 0; i < 50; i++) {
    const t = performance.now();
    r = await rank();
    const b = new Uint8Array(await r.arrayBuffer());
    times.push(performance.now() - t);
    assert.ok(Buffer.from(b).equals(Buffer.from(g.result)), `ranking ${i + 2} is result.ewrs too`);
  }
  const stats = await (await fetch(`${base}/__edgewise/stats`)).json();
  assert.equal(stats.guests.default.instances, 1, 'one instance for every ranking');
  assert.equal(stats.guests.default.modelLoads, 1, 'the model is loaded once');
  // A bad context is a 422 naming the guest's refusal, and the instance survives it.
  r = await fetch(`${base}/__edgewise/rank`, { method: 'POST', body: rankBody(g.bundle, g.context.subarray(1), g.model) });
  assert.equal(r.status, 422);
  assert.match((await r.json()).error, /BadContext: invalid context/);
  return { firstRankMs: firstMs, rankMedianMs: median(times) };
}

/** The stack's edge accepts request times this far from its clock (`FIXTURE_CLOCK_SKEW`, 20 years). */
export const STACK_CLOCK_SKEW_MS = 20 * 365 * 86_400_000;

/** The same feed request at the Rust edge and at the adapter. */
async function both(rustEdge, base, path, init = {}) {
  const [a, b] = await Promise.all([fetchRetrying(rustEdge + path, init), fetchRetrying(base + path, init)]);
  const ta = await a.text();
  const tb = await b.text();
  return { rust: { status: a.status, text: ta, headers: a.headers }, js: { status: b.status, text: tb, headers: b.headers } };
}

/**
 * `fetch`, sent once more when the connection it reused turns out to have
 * been closed by the server meanwhile (a keep-alive race, undici's
 * `UND_ERR_SOCKET` / `ECONNRESET`): said on the log, never hidden; any other
 * failure is thrown with its cause.
 * @param {string} url @param {RequestInit} init
 */
export async function fetchRetrying(url, init) {
  try {
    return await fetch(url, init);
  } catch (e) {
    const code = /** @type {any} */ (e)?.cause?.code;
    if (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET') {
      throw new Error(`${init?.method ?? 'GET'} ${url}: ${e} (${code ?? /** @type {any} */ (e)?.cause})`, { cause: e });
    }
    console.log(`# ${url}: the reused connection was closed (${code}); sent again on a new one`);
    return fetch(url, init);
  }
}

/** Items as [id (exact), f32 score]. */
const itemsOf = (text) => [...text.matchAll(/\{"id":(\d+),"score":([^,}]+)\}/g)].map((m) => [m[1], Math.fround(Number(m[2]))]);

/** `/v1/feed` at the adapter (origin: the stack's) against the Rust edge. */
export async function checkFeed(base, stack) {
  const now = Date.now();
  const post = (body, headers = {}) => ({ method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  // Anonymous regional feed, JSON, refine=false.
  let r = await both(stack.edge, base, '/v1/feed?region=0&k=10&refine=false', post({ now_ms: now }));
  assert.equal(r.js.status, 200, r.js.text);
  assert.equal(r.rust.status, 200, r.rust.text);
  const [rj, jj] = [JSON.parse(r.rust.text), JSON.parse(r.js.text)];
  assert.equal(jj.frame, 'preliminary');
  assert.equal(r.js.headers.get('x-edgewise-feed'), 'preliminary');
  assert.equal(jj.ranked_by, 'guest');
  assert.equal(jj.bundle_digest, rj.bundle_digest, 'the same regional bundle');
  assert.equal(jj.model, rj.model, 'the same model');
  assert.equal(jj.items.length, 10);
  assert.deepEqual(itemsOf(r.js.text), itemsOf(r.rust.text), 'the same items and scores as the Rust edge');
  assert.deepEqual(Object.keys(jj), Object.keys(rj), 'the same JSON fields, in order');

  // With seen items and another region.
  const seen = itemsOf(r.rust.text).slice(0, 3).map(([id]) => Number(id));
  r = await both(stack.edge, base, '/v1/feed?region=3&k=7&refine=false', post({ now_ms: now, seen }));
  assert.equal(r.js.status, 200, r.js.text);
  assert.deepEqual(itemsOf(r.js.text), itemsOf(r.rust.text), 'region 3 with seen items');

  // A seen id past 2^53: u64 ids are exact end to end.
  r = await both(stack.edge, base, '/v1/feed?region=0&k=5&refine=false', { method: 'POST', body: `{"now_ms":${now},"seen":[18446744073709551615]}` });
  assert.equal(r.js.status, r.rust.status, r.js.text);
  assert.deepEqual(itemsOf(r.js.text), itemsOf(r.rust.text));

  // A signed-in user: NDJSON, preliminary then refined (stable-merged).
  const auth = { authorization: `Bearer ${stack.tokens['7']}`, accept: 'application/x-ndjson' };
  r = await both(stack.edge, base, '/v1/feed?user=7&region=0&k=10', post({ now_ms: now }, auth));
  assert.equal(r.js.status, 200, r.js.text);
  assert.match(r.js.headers.get('content-type'), /application\/x-ndjson/);
  const lines = (t) => t.trim().split('\n').map((l) => JSON.parse(l));
  const [jl, rl] = [lines(r.js.text), lines(r.rust.text)];
  assert.deepEqual(jl.map((f) => f.frame), ['preliminary', 'refined']);
  assert.deepEqual(rl.map((f) => f.frame), ['preliminary', 'refined']);
  const jsLines = r.js.text.trim().split('\n');
  const rustLines = r.rust.text.trim().split('\n');
  assert.deepEqual(itemsOf(jsLines[0]), itemsOf(rustLines[0]), 'the preliminary frame');
  // The origin builds a personal bundle per request (its header carries the
  // creation time), so the two digests differ; its rows, and so the ranking, do not.
  assert.match(jl[1].bundle_digest, /^[0-9a-f]{64}$/);
  assert.equal(jl[1].bundle_cache, 'miss', 'a personal bundle is never stored');
  assert.deepEqual(itemsOf(jsLines[1]), itemsOf(rustLines[1]), 'the refined frame');
  assert.deepEqual(jl[1].merged, rl[1].merged, 'the same stable merge (3 shown)');
  assert.deepEqual(jl[1].merged.slice(0, 3), jl[0].items.slice(0, 3).map((i) => i.id));

  // The refused requests: the same status, and the same message.
  for (const [path, init] of [
    ['/v1/feed?k=0', {}],
    ['/v1/feed?k=1001', {}],
    ['/v1/feed?region=32', {}],
    ['/v1/feed?region=01', {}],
    ['/v1/feed?bogus=1', {}],
    ['/v1/feed?k=5&k=6', {}],
    ['/v1/feed?refine=maybe', {}],
    ['/v1/feed?user=x', {}],
    ['/v1/feed', post({ now_ms: now - 30 * 365 * 86_400_000 })],
    ['/v1/feed', post({ now_ms: now, seen: Array.from({ length: 10_001 }, (_, i) => i) })],
    ['/v1/feed', post({ session: 'not base64!' })],
    ['/v1/feed', post({ history: 'not base64!' })],
  ]) {
    r = await both(stack.edge, base, path, init);
    assert.equal(r.js.status, r.rust.status, `${path}: ${r.js.text} vs ${r.rust.text}`);
    assert.ok(r.js.status >= 400 && r.js.status < 500, `${path} is refused: ${r.js.status}`);
    const [ej, er] = [JSON.parse(r.js.text).error, JSON.parse(r.rust.text).error];
    // The clock-skew message names the measured skew, which differs by the ms between the two answers.
    const norm = (m) => m.replace(/is \d+ ms from/, 'is N ms from');
    assert.equal(norm(ej), norm(er), `${path}: the same message`);
  }
  // No token for a user: 401; a body past the limit: 413.
  r = await both(stack.edge, base, '/v1/feed?user=7', {});
  assert.equal(r.js.status, 401, r.js.text);
  assert.equal(r.rust.status, 401);
  // A server may close the connection as soon as it has answered 413, while
  // the client is still writing the body; the client then sees a reset
  // instead of the answer (seen once under wasmtime serve). Up to three
  // tries: every answer that does arrive must be the 413.
  let big = null;
  for (let attempt = 1; !big; attempt++) {
    try {
      big = await fetch(`${base}/v1/feed`, { method: 'POST', body: 'x'.repeat((1 << 20) + 1) });
    } catch (e) {
      if (attempt === 3) throw e;
      console.log(`# oversized body, attempt ${attempt}: ${e.cause?.code ?? e.message} (connection closed before the answer was read)`);
    }
  }
  assert.equal(big.status, 413);
  assert.match((await big.json()).error, /larger than/);
}

/** A trapping guest is dropped and a fresh one ranks the next request. */
export async function checkTrap(base) {
  const g = golden();
  const ctx = (k) => {
    const c = g.context.slice();
    new DataView(c.buffer).setUint32(8, k, true);
    return c;
  };
  const rank = (k) => fetch(`${base}/trap/__edgewise/rank`, { method: 'POST', body: rankBody(g.bundle, ctx(k), g.model) });
  let r = await rank(8);
  assert.equal(r.status, 200, await r.clone().text());
  assert.equal((await r.arrayBuffer()).byteLength, 16, 'the trap guest\'s empty result');
  r = await rank(13);
  assert.equal(r.status, 500);
  assert.match((await r.json()).error, /guest trapped/);
  // The next request gets a fresh instance (the trapped one would trap again).
  r = await rank(8);
  assert.equal(r.status, 200, await r.clone().text());
  await r.arrayBuffer();
  let stats = await (await fetch(`${base}/trap/__edgewise/stats`)).json();
  assert.equal(stats.guests.default.traps, 1);
  assert.equal(stats.guests.default.instances, 2, 'the trapped instance was replaced once');
  // In the feed: a trap falls back to retrieval order, and the next feed is ranked by the guest again.
  const feed = async (k) => (await fetch(`${base}/trap/v1/feed?region=0&k=${k}&refine=false`)).json();
  const f1 = await feed(13);
  assert.equal(f1.ranked_by, 'retrieval-order');
  assert.equal(f1.items.length, 13, 'the retrieval order fills k');
  const f2 = await feed(8);
  assert.equal(f2.ranked_by, 'guest', JSON.stringify(f2).slice(0, 300));
  stats = await (await fetch(`${base}/trap/__edgewise/stats`)).json();
  assert.equal(stats.guests.default.traps, 2);
  assert.equal(stats.guests.default.instances, 3);
  assert.equal(stats.failures.trap, 1);
}

/**
 * Many feeds, some concurrent: with a cache the regional bundle comes from the
 * origin (through the counting proxy) once; without one, every time.
 */
export async function checkCache(base, proxy) {
  const before = (p) => proxy.counts.get(p) ?? 0;
  const path = '/v1/regions/5/bundle';
  const n0 = before(path);
  const feed = (prefix) => fetch(`${base}${prefix}/v1/feed?region=5&k=10&refine=false`).then(async (r) => {
    assert.equal(r.status, 200, await r.clone().text());
    return r.json();
  });
  const first = await Promise.all(Array.from({ length: 5 }, () => feed('')));
  const guestStats = async () => (await (await fetch(`${base}/__edgewise/stats`)).json()).guests.default;
  const g0 = await guestStats();
  const times = [];
  const rest = [];
  for (let i = 0; i < 20; i++) {
    const t = performance.now();
    rest.push(await feed(''));
    times.push(performance.now() - t);
  }
  // The guest keeps the bundle loaded: twenty rankings of it, no new load.
  const g1 = await guestStats();
  assert.equal(g1.ranks - g0.ranks, 20, 'twenty rankings');
  assert.equal(g1.bundleLoads - g0.bundleLoads, 0, `the kept bundle was loaded again (${g0.bundleLoads} → ${g1.bundleLoads})`);
  assert.ok(g1.bundleLoads >= 1, 'the feed ranks through the kept-bundle exports');
  assert.equal(before(path) - n0, 1, `the regional bundle was fetched once for 25 feeds (${before(path) - n0})`);
  assert.ok(rest.every((f) => f.bundle_cache === 'hit'), rest.map((f) => f.bundle_cache).join(','));
  assert.ok(first.some((f) => f.bundle_cache === 'miss'));
  assert.ok([...first, ...rest].every((f) => f.bundle_digest === first[0].bundle_digest && f.ranked_by === 'guest'));
  const modelFetches = [...proxy.counts].filter(([p]) => /^\/v1\/models\/[0-9a-f]{64}$/.test(p)).reduce((a, [, c]) => a + c, 0);
  assert.ok(modelFetches <= 3, `the model is fetched once per edge (${modelFetches})`);
  const n1 = before(path);
  for (let i = 0; i < 3; i++) assert.equal((await feed('/nocache')).bundle_cache, 'miss');
  assert.equal(before(path) - n1, 3, 'without a cache, every feed asks the origin');
  return { feedMedianMs: median(times) };
}

/** Appends a runtime's measurements to EDGEWISE_EDGE_TIMINGS (a JSON-lines file), if set, and logs them. */
export function record(runtime, m) {
  const line = JSON.stringify({ runtime, ...m });
  console.log(`# timings ${line}`);
  if (process.env.EDGEWISE_EDGE_TIMINGS) {
    mkdirSync(dirname(process.env.EDGEWISE_EDGE_TIMINGS), { recursive: true });
    appendFileSync(process.env.EDGEWISE_EDGE_TIMINGS, `${line}\n`);
  }
}
