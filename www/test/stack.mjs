// The whole demo on loopback, for the end-to-end tests (and by hand): the
// real origin on MovieLens-100K (imported and trained into a fresh data
// directory by `edgewise-lab`), the real edge in front of it (the core guest
// in wasmtime, CORS for the page), and the page server (`edgewise-www`), each
// a child process on a free port. The edge can be stopped and started again
// on its port, as an outage would.
//
// Environment: EDGEWISE_BIN (the folder with edgewise-origin, edgewise-lab,
// edgewise-edge, edgewise-www), EDGEWISE_GUEST (edgewise_core.wasm),
// EDGEWISE_PACKAGE (the npm package folder the page imports), EDGEWISE_WWW
// (the page's files), EDGEWISE_E2E_DIR (where the data directory goes).
//
// By hand: `node stack.mjs` prints `open http://127.0.0.1:PORT/` and serves
// until Ctrl-C.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';

/** @param {string} name */
function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (cargo xtask www-test sets it)`);
  return v;
}

/**
 * `n` distinct ports the system says are free now (all held open until
 * every one is chosen, so none is handed out twice).
 * @param {number} n
 * @returns {Promise<number[]>}
 */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i += 1) {
      const s = createServer();
      servers.push(s);
      await new Promise((resolve, reject) => {
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => resolve(undefined));
      });
    }
    return servers.map((s) => /** @type {import('node:net').AddressInfo} */ (s.address()).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

/**
 * Runs a command to completion; rejects with its output when it fails.
 * @param {string} bin @param {string[]} args
 */
function run(bin, args) {
  return new Promise((resolve, reject) => {
    const c = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.stderr.on('data', (d) => { out += d; });
    c.on('error', reject);
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${bin} ${args.join(' ')} exited with ${code}:\n${out.slice(-3000)}`))));
  });
}

/** A server child process with its log kept (the tail is shown when it fails). */
class Server {
  /** @param {string} name @param {string} bin @param {string[]} args @param {Record<string, string>} extraEnv @param {string} ready */
  constructor(name, bin, args, extraEnv, ready) {
    Object.assign(this, { name, bin, args, extraEnv, ready });
    /** @type {import('node:child_process').ChildProcess | null} */
    this.child = null;
    this.log = '';
  }

  async start() {
    const child = spawn(this.bin, this.args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn', ...this.extraEnv },
    });
    this.child = child;
    child.stderr?.on('data', (d) => { this.log = (this.log + d).slice(-20_000); });
    let exited = null;
    child.on('exit', (code, signal) => { exited = { code, signal }; });
    child.on('error', (e) => { exited = { error: String(e) }; });
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      if (exited) throw new Error(`the ${this.name} exited (${JSON.stringify(exited)}) before it was ready:\n${this.log}`);
      try {
        const res = await fetch(this.ready, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the ${this.name} did not answer ${this.ready} within 60 s:\n${this.log}`);
  }

  /** SIGTERM, and the exit awaited (the servers drain and stop). */
  async stop() {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise((resolve) => {
      const kill = setTimeout(() => c.kill('SIGKILL'), 10_000);
      c.once('exit', () => { clearTimeout(kill); resolve(undefined); });
      c.kill('SIGTERM');
    });
  }
}

/**
 * Imports and trains MovieLens-100K into a fresh data directory, then starts
 * the origin, the edge and the page server.
 * @param {{ data?: string }} [o]
 */
export async function startStack(o = {}) {
  const bin = env('EDGEWISE_BIN');
  const data = o.data ?? join(env('EDGEWISE_E2E_DIR'), 'ml-100k');
  rmSync(data, { recursive: true, force: true });
  mkdirSync(data, { recursive: true });
  const lab = join(bin, 'edgewise-lab');
  await run(lab, ['--data-dir', data, 'import', 'movielens']);
  await run(lab, ['--data-dir', data, 'train']);
  const secret = randomBytes(32).toString('hex');
  const secrets = JSON.stringify([secret]);
  const [originPort, edgePort, pagePort] = await freePorts(3);
  const origin = `http://127.0.0.1:${originPort}`;
  const edge = `http://127.0.0.1:${edgePort}`;
  const page = `http://127.0.0.1:${pagePort}`;
  const servers = {
    origin: new Server('origin', join(bin, 'edgewise-origin'), ['--data-dir', data, 'serve', '--listen', `127.0.0.1:${originPort}`],
      { EDGEWISE__AUTH__USER_TOKENS__HMAC_SECRETS: secrets }, `${origin}/readyz`),
    edge: new Server('edge', join(bin, 'edgewise-edge'),
      ['serve', '--origin', origin, '--listen', `127.0.0.1:${edgePort}`, '--module', env('EDGEWISE_GUEST')],
      { EDGEWISE_EDGE__AUTH__USER_TOKENS__HMAC_SECRETS: secrets, EDGEWISE_EDGE__SERVER__CORS_ORIGINS: JSON.stringify([page, `http://localhost:${pagePort}`]) },
      `${edge}/readyz`),
    page: new Server('page', join(bin, 'edgewise-www'),
      ['--listen', `127.0.0.1:${pagePort}`, '--edge', edge, '--package', env('EDGEWISE_PACKAGE'), '--static', env('EDGEWISE_WWW')],
      { EDGEWISE_WWW_TOKEN_SECRET: secret }, `${page}/demo/config.json`),
  };
  try {
    for (const s of Object.values(servers)) await s.start();
  } catch (e) {
    for (const s of Object.values(servers)) await s.stop();
    throw e;
  }
  return {
    origin, edge, page, data, secret,
    /** The edge goes away (SIGTERM, drained), as in an outage. */
    stopEdge: () => servers.edge.stop(),
    /** The edge comes back on the same port. */
    startEdge: () => servers.edge.start(),
    /** The servers' logs (for a failing test's message). */
    logs: () => Object.values(servers).map((s) => `--- ${s.name}\n${s.log}`).join('\n'),
    async close() {
      for (const s of [servers.page, servers.edge, servers.origin]) await s.stop();
    },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const stack = await startStack();
  console.log(`origin ${stack.origin}, edge ${stack.edge}\nopen ${stack.page}/`);
  const stop = async () => { await stack.close(); process.exit(0); };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
