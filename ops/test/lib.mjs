// Helpers for caches.test.mjs: the Edgewise stack, nginx and Varnish started
// from the templates in ops/, a recording pass-through in front of the origin
// ("tap"), a stub origin with short cache windows, and a small HTTP client.
// Node 20 built-ins only.

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const OPS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every process and directory started here, for `stopAll` and the exit hook. */
const started = new Set();
const tempDirs = new Set();
process.on('exit', () => {
  for (const p of started) {
    try {
      p.child.kill('SIGKILL');
    } catch {}
  }
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
});

export function tempDir(name) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `edgewise-ops-${name}-`));
  tempDirs.add(d);
  return d;
}

/** A free TCP port on 127.0.0.1 (free when asked; taken by the caller at once). */
export async function freePort() {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address();
  srv.close();
  await once(srv, 'close');
  return port;
}

// ---------------------------------------------------------------- HTTP client

/**
 * One request on its own connection: `{status, headers, body, ms}`. Sends no
 * Accept-Encoding unless asked. `localAddress` picks the source address.
 */
export function request(url, { method = 'GET', headers = {}, timeoutMs = 15000, localAddress } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request(url, { method, headers, agent: false, localAddress }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - t0 }),
      );
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

export const bearer = (token) => ({ authorization: `Bearer ${token}` });

/** `Cache-Control` directives as a map: `{public: true, 's-maxage': 60, ...}`. */
export function cacheControl(value = '') {
  const out = {};
  for (const part of value.split(',')) {
    const [k, v] = part.trim().split('=');
    if (k) out[k.toLowerCase()] = v === undefined ? true : Number(v);
  }
  return out;
}

/** The origin's request counts for one route, by status, from its /metrics. */
export async function routeCounts(origin, route) {
  const r = await request(`${origin}/metrics`);
  if (r.status !== 200) throw new Error(`${origin}/metrics answered ${r.status}`);
  const counts = {};
  const re = /^edgewise_origin_http_request_duration_seconds_count\{(.*)\}\s+(\S+)$/gm;
  for (const m of r.body.toString().matchAll(re)) {
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (labels.route === route) counts[labels.status] = (counts[labels.status] ?? 0) + Number(m[2]);
  }
  return counts;
}

export const total = (counts) => Object.values(counts).reduce((a, b) => a + b, 0);

export function histogram(values) {
  const h = {};
  for (const v of values) h[v] = (h[v] ?? 0) + 1;
  return h;
}

/** Polls `fn` until it returns a truthy value; throws `what` after `ms`. */
export async function until(what, fn, ms = 10000, every = 100) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

// ---------------------------------------------------------------- processes

function track(name, child) {
  const p = { name, child, stderr: '', exited: null };
  child.stderr?.on('data', (d) => {
    p.stderr += d;
    if (p.stderr.length > 64 << 10) p.stderr = p.stderr.slice(-(32 << 10));
  });
  p.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.on('error', (e) => {
    p.stderr += `\n${e.message}`;
  });
  started.add(p);
  p.exited.then(() => started.delete(p));
  return p;
}

async function stopProcess(p, signal = 'SIGTERM', graceMs = 5000) {
  if (!started.has(p)) return;
  p.child.kill(signal);
  const done = await Promise.race([p.exited, sleep(graceMs).then(() => null)]);
  if (!done) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

export async function stopAll() {
  await Promise.all([...started].map((p) => stopProcess(p)));
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

/** Where `name` is: `env` if set (it must exist), else on PATH or in /usr/sbin; else null. */
export function findBinary(name, env) {
  if (process.env[env]) return fs.existsSync(process.env[env]) ? process.env[env] : null;
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) {
    const p = path.join(d || '.', name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {}
  }
  return null;
}

/**
 * The Edgewise stack (`tests/examples/stack.rs`): a real origin with 300
 * items, user 7's events and a model, and an edge. It prints one JSON line and
 * serves until its stdin closes. `stop()` closes stdin and waits for the exit.
 */
export async function startStack() {
  const bin = process.env.EDGEWISE_STACK;
  if (!bin) {
    throw new Error(
      'EDGEWISE_STACK is not set: point it at the stack example, e.g. ' +
        'EDGEWISE_STACK=/work/main/target/ci/examples/stack (cargo build --profile ci -p edgewise-conformance --example stack)',
    );
  }
  if (!fs.existsSync(bin)) throw new Error(`EDGEWISE_STACK=${bin} does not exist`);
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'pipe'] });
  const p = track('stack', child);
  const line = await new Promise((resolve, reject) => {
    let out = '';
    const onData = (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        child.stdout.off('data', onData);
        resolve(out.slice(0, nl));
      }
    };
    child.stdout.on('data', onData);
    p.exited.then(({ code, signal }) =>
      reject(new Error(`the stack exited (${code ?? signal}) before printing its line:\n${p.stderr.slice(-4000)}`)),
    );
    setTimeout(() => reject(new Error(`the stack printed nothing in 30 s:\n${p.stderr.slice(-4000)}`)), 30000);
  });
  child.stdout.resume();
  const info = JSON.parse(line);
  const url = new URL(info.origin);
  // The stack keeps its origin's data in <tmp>/ew-edge-npm-stack-<pid> (common.rs); remove ours.
  tempDirs.add(path.join(os.tmpdir(), `ew-edge-npm-stack-${child.pid}`));
  return {
    ...info,
    originHost: url.hostname,
    originPort: Number(url.port),
    process: p,
    async stop() {
      if (!started.has(p)) return;
      child.stdin.end();
      const done = await Promise.race([p.exited, sleep(5000).then(() => null)]);
      if (!done) await stopProcess(p, 'SIGKILL');
    },
  };
}

function fill(template, values) {
  const text = fs.readFileSync(template, 'utf8').replace(/\{\{([A-Z_]+)\}\}/g, (m, k) => {
    if (!(k in values)) throw new Error(`${template}: no value for placeholder ${m}`);
    return String(values[k]);
  });
  return text;
}

async function waitReady(p, url, ms = 20000) {
  const end = Date.now() + ms;
  let exited = false;
  p.exited.then(() => (exited = true));
  for (;;) {
    if (exited) throw new Error(`${p.name} exited while starting:\n${p.stderr.slice(-4000)}`);
    try {
      const r = await request(url, { timeoutMs: 1000 });
      if (r.status === 200) return;
    } catch {}
    if (Date.now() > end) throw new Error(`${p.name} not ready at ${url} after ${ms} ms:\n${p.stderr.slice(-4000)}`);
    await sleep(100);
  }
}

const INSTALL = {
  nginx: 'nginx is not installed (no nginx at $NGINX, on PATH or in /usr/sbin): apt-get install -y nginx-light (Debian 12: packages nginx-light and nginx, binary /usr/sbin/nginx)',
  varnish:
    'varnishd is not installed (no varnishd at $VARNISHD, on PATH or in /usr/sbin): apt-get install -y varnish varnish-modules (Debian 12: /usr/sbin/varnishd, and the xkey vmod /usr/lib/x86_64-linux-gnu/varnish/vmods/libvmod_xkey.so)',
};

/** nginx from ops/nginx/edgewise.conf.template, in front of `origin` ({host, port}). */
export async function startNginx(name, origin) {
  const bin = findBinary('nginx', 'NGINX');
  if (!bin) throw new Error(INSTALL.nginx);
  const prefix = tempDir(`nginx-${name}`);
  const cacheDir = path.join(prefix, 'cache');
  fs.mkdirSync(cacheDir);
  const port = await freePort();
  const conf = path.join(prefix, 'edgewise.conf');
  fs.writeFileSync(
    conf,
    fill(path.join(OPS, 'nginx/edgewise.conf.template'), {
      LISTEN: `127.0.0.1:${port}`,
      ORIGIN_HOST: origin.host,
      ORIGIN_PORT: origin.port,
      CACHE_DIR: cacheDir,
      PREFIX: prefix,
      USER: process.getuid?.() === 0 ? 'root' : os.userInfo().username,
    }),
  );
  const p = track(`nginx (${name})`, spawn(bin, ['-p', prefix, '-c', conf, '-e', 'stderr'], { stdio: ['ignore', 'ignore', 'pipe'] }));
  const url = `http://127.0.0.1:${port}`;
  await waitReady(p, `${url}/_cache/livez`);
  return {
    kind: 'nginx',
    url,
    statusHeader: 'x-cache-status',
    accessLog: path.join(prefix, 'access.log'),
    process: p,
    stop: () => stopProcess(p),
  };
}

/** varnishd from ops/varnish/edgewise.vcl.template, in front of `origin` ({host, port}). */
export async function startVarnish(name, origin) {
  const bin = findBinary('varnishd', 'VARNISHD');
  if (!bin) throw new Error(INSTALL.varnish);
  const dir = tempDir(`varnish-${name}`);
  const vcl = path.join(dir, 'edgewise.vcl');
  fs.writeFileSync(vcl, fill(path.join(OPS, 'varnish/edgewise.vcl.template'), { ORIGIN_HOST: origin.host, ORIGIN_PORT: origin.port }));
  const port = await freePort();
  // -j none: no privilege separation (the test's temp files are private to this user).
  const args = ['-F', '-j', 'none', '-a', `127.0.0.1:${port}`, '-f', vcl, '-n', path.join(dir, 'work'), '-s', 'malloc,64m'];
  const p = track(`varnishd (${name})`, spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
  p.child.stdout.on('data', (d) => (p.stderr += d));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitReady(p, `${url}/_cache/livez`);
  } catch (e) {
    if (/xkey/i.test(p.stderr)) e.message += `\n(the xkey vmod is missing: apt-get install -y varnish-modules)`;
    throw e;
  }
  return { kind: 'varnish', url, statusHeader: 'x-cache', process: p, stop: () => stopProcess(p) };
}

// ---------------------------------------------------------------- tap

/**
 * A recording pass-through in front of the origin: a cache talks to the tap,
 * the tap to the origin. It records each request (path, If-None-Match, the
 * origin's status and bundle digest), so a test sees what one cache asked the
 * origin. `close()` makes it refuse connections, as a dead origin does.
 */
export async function startTap(origin) {
  const agent = new http.Agent({ keepAlive: true });
  const log = [];
  const server = http.createServer((req, res) => {
    const rec = { t: Date.now(), method: req.method, url: req.url, inm: req.headers['if-none-match'] ?? null, status: null, digest: null, etag: null };
    log.push(rec);
    const up = http.request(
      { host: origin.host, port: origin.port, method: req.method, path: req.url, headers: req.headers, agent },
      (ures) => {
        rec.status = ures.statusCode;
        rec.digest = ures.headers['x-edgewise-bundle-digest'] ?? null;
        rec.etag = ures.headers.etag ?? null;
        res.writeHead(ures.statusCode, ures.statusMessage, ures.rawHeaders);
        ures.pipe(res);
      },
    );
    up.on('error', (e) => {
      rec.status = `error: ${e.code ?? e.message}`;
      req.socket.destroy();
    });
    req.pipe(up);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    host: '127.0.0.1',
    port: server.address().port,
    log,
    /** Requests whose path starts with `prefix` since `since` (ms since the epoch). */
    requests: (prefix, since = 0) => log.filter((r) => r.url.startsWith(prefix) && r.t >= since),
    async close() {
      server.close();
      server.closeAllConnections();
      agent.destroy();
    },
  };
}

// ---------------------------------------------------------------- stub origin

/**
 * An origin stand-in for the one thing the real stack cannot do quickly:
 * cache windows of seconds. It answers `/v1/regions/{r}/bundle` with the
 * origin's header shape (`public, max-age=0, s-maxage=S,
 * stale-while-revalidate=W, stale-if-error=E`, a strong ETag, 304 on
 * If-None-Match, Surrogate-Key, X-Edgewise-Bundle-Digest). `mode`: 'up', or
 * 'error' (503, as the origin answers while loading); `close()` takes it down.
 */
export async function startStubOrigin({ sMaxage, swr, sie }) {
  const state = { mode: 'up', version: 1, hits: [] };
  const server = http.createServer((req, res) => {
    const m = /^\/v1\/regions\/(\d+)\/bundle/.exec(req.url);
    state.hits.push({ t: Date.now(), url: req.url, mode: state.mode, inm: req.headers['if-none-match'] ?? null });
    if (state.mode === 'error') {
      res.writeHead(503, { 'content-type': 'application/json' });
      return res.end('{"error":"loading"}');
    }
    if (!m) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end('{"error":"no such route"}');
    }
    const digest = `stub-region-${m[1]}-v${state.version}`;
    const headers = {
      etag: `"${digest}"`,
      'cache-control': `public, max-age=0, s-maxage=${sMaxage}, stale-while-revalidate=${swr}, stale-if-error=${sie}`,
      vary: 'Accept-Encoding',
      'surrogate-key': `bundle bundle-regional region-${m[1]} bundle-format-2`,
      'x-edgewise-bundle-digest': digest,
    };
    if ((req.headers['if-none-match'] ?? '').includes(`"${digest}"`)) {
      res.writeHead(304, headers);
      return res.end();
    }
    res.writeHead(200, { ...headers, 'content-type': 'application/vnd.edgewise.bundle' });
    res.end(`EWBUNDLE stub ${digest}`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    host: '127.0.0.1',
    port: server.address().port,
    state,
    close() {
      server.close();
      server.closeAllConnections();
    },
  };
}
