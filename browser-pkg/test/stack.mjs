// A real origin with a real edge in front of it, on loopback: the
// conformance crate's `stack` example (built by `cargo xtask npm-test`, which
// passes its path in EDGEWISE_STACK). It prints its URLs and user tokens on
// one line and serves until its stdin closes.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

/**
 * Starts the stack; resolves to `{ origin, edge, tokens, expired, stop() }`.
 * @returns {Promise<{ origin: string, edge: string, tokens: Record<string, string>, expired: Record<string, string>,
 *   ingest_key: string, stop: () => void }>}
 */
export async function startStack() {
  const bin = process.env.EDGEWISE_STACK;
  if (!bin) throw new Error('EDGEWISE_STACK must name the stack binary (cargo xtask npm-test sets it)');
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const first = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the stack printed nothing within 120 s')), 120_000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the stack exited with ${code} before it was ready`)));
    lines.once('line', (l) => {
      clearTimeout(timer);
      resolve(l);
    });
  });
  const info = JSON.parse(first);
  return {
    ...info,
    stop() {
      child.stdin.end();
      child.kill();
    },
  };
}
