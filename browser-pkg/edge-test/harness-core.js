// The test harness every runtime runs (ES module, no dependencies): three
// edges over the adapter in ./edge.js, all with the test routes
// (`POST /__edgewise/rank`, `GET /__edgewise/stats`):
//   /…        the real guest, regional bundles cached (`cache`)
//   /trap/…   a guest whose ew_rank traps on k = 13 (and on any call into an
//             instance an earlier call trapped in), same cache kind
//   /nocache/… the real guest, no cache
// The runtime entry hands over compiled modules and the origin URL.

import { createEdge, memoryCache } from './edge.js';

/**
 * @param {{ guest: WebAssembly.Module, trap: WebAssembly.Module, origin: string, cache?: any,
 *   fetch?: typeof fetch, candidates?: number, maxClockSkewMs?: number }} o
 */
export function makeHarness(o) {
  const common = { origin: o.origin, fetch: o.fetch, candidates: o.candidates ?? 300, testRoutes: true, refineDeadlineMs: 5_000, maxClockSkewMs: o.maxClockSkewMs };
  const main = createEdge({ ...common, module: o.guest, cache: o.cache ?? memoryCache() });
  const trap = createEdge({ ...common, module: o.trap, cache: memoryCache() });
  const nocache = createEdge({ ...common, module: o.guest, cache: null });
  const strip = (req, prefix) => {
    const u = new URL(req.url);
    u.pathname = u.pathname.slice(prefix.length) || '/';
    return new Request(u, req);
  };
  /** @param {Request} req @param {any} [ctx] */
  return async (req, ctx) => {
    const path = new URL(req.url).pathname;
    if (path.startsWith('/trap/')) return trap.fetch(strip(req, '/trap'), ctx);
    if (path.startsWith('/nocache/')) return nocache.fetch(strip(req, '/nocache'), ctx);
    return main.fetch(req, ctx);
  };
}
