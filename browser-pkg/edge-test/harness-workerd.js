// workerd entry of the test harness: the guests come in as `wasm` modules
// (compiled by workerd, as on Cloudflare), the origin as a text binding.
import guest from './edgewise_core.wasm';
import trap from './trap.wasm';
import { makeHarness } from './harness-core.js';

let h = null;
export default {
  async fetch(req, env, ctx) {
    h ??= makeHarness({ guest, trap, origin: env.ORIGIN, maxClockSkewMs: Number(env.MAX_CLOCK_SKEW_MS), cache: env.USE_PLATFORM_CACHE === '1' ? caches.default : undefined });
    return h(req, ctx);
  },
};
