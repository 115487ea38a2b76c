// Runs an entry inside Vercel's edge runtime (the `edge-runtime` npm package,
// installed in EDGEWISE_EDGE_RT): `node run-edge-runtime.mjs harness|vercel PORT DIR`.
// ES modules become one classic script (the runtime evaluates scripts): the
// adapter's `export`s are dropped and its imports resolved to the script's
// own declarations. As on Vercel, the guests are compiled outside and handed
// over as WebAssembly.Module values (the `.wasm?module` import); the
// environment comes in as `process.env`.

import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const [which, port, dir] = process.argv.slice(2);
const rt = process.env.EDGEWISE_EDGE_RT ?? '/tmp/edge-rt';
const require = createRequire(join(rt, 'package.json'));
const { EdgeRuntime, runServer } = require('edge-runtime');

const script = (file) => readFileSync(join(dir, file), 'utf8')
  .replace(/^import\s+(\w+)\s+from\s+'\.\/edgewise_core\.wasm(\?module)?';$/m, 'const $1 = __GUEST;')
  .replace(/^import[^;]*;$/gm, '')
  .replace(/^export\s*\{[^}]*\}\s*from[^;]*;$/gm, '')
  .replace(/^export default async function (\w+)/m, 'async function $1')
  .replace(/^export (const|let|function|class|async function) /gm, '$1 ');

let code = script('edge-guest.js') + script('edge.js');
if (which === 'harness') {
  code += script('harness-core.js');
  code += `
const __h = makeHarness({ guest: __GUEST, trap: __TRAP, origin: process.env.ORIGIN, maxClockSkewMs: Number(process.env.MAX_CLOCK_SKEW_MS) });
addEventListener('fetch', (event) => event.respondWith(__h(event.request, event)));
`;
} else {
  code += script('edge-vercel.js');
  code += `
if (config.runtime !== 'edge') throw new Error('edge-vercel.js must declare the edge runtime');
addEventListener('fetch', (event) => event.respondWith(handler(event.request)));
`;
}
const guest = new WebAssembly.Module(readFileSync(join(dir, 'edgewise_core.wasm')));
const trap = new WebAssembly.Module(readFileSync(join(dir, 'trap.wasm')));
const env = { ...process.env };
const runtime = new EdgeRuntime({
  initialCode: code,
  extend(context) {
    context.__GUEST = guest;
    context.__TRAP = trap;
    context.process = { env };
    return context;
  },
});
const server = await runServer({ runtime, port: Number(port), host: '127.0.0.1' });
console.log(server.url);
