// Deno entry of the test harness: EDGEWISE_GUEST and EDGEWISE_TRAP name the
// .wasm files (compiled once at start), ORIGIN the origin, PORT the port.
import { makeHarness } from './harness-core.js';

const env = (k) => Deno.env.get(k);
const [guest, trap] = await Promise.all(
  [env('EDGEWISE_GUEST'), env('EDGEWISE_TRAP')].map(async (p) => WebAssembly.compile(await Deno.readFile(p))),
);
const cache = env('USE_PLATFORM_CACHE') === '1' ? await caches.open(`edgewise-test-${Date.now()}`) : undefined;
const h = makeHarness({ guest, trap, origin: env('ORIGIN'), maxClockSkewMs: Number(env('MAX_CLOCK_SKEW_MS')), cache });
Deno.serve({ port: Number(env('PORT')), hostname: '127.0.0.1', onListen() {} }, (req) => h(req));
