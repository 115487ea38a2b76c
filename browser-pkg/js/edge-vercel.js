// Vercel edge function entry for the Edgewise edge adapter (./edge.js):
// put it at api/feed.js (with a rewrite of /v1/feed to it), and copy
// target/wasm/edgewise_core.wasm next to it. Vercel's edge runtime hands a
// `.wasm?module` import over as a compiled WebAssembly.Module (it forbids
// compiling from bytes at run time).
//
// Environment: EDGEWISE_ORIGIN (required), EDGEWISE_CANDIDATES,
// EDGEWISE_REFINE_DEADLINE_MS, EDGEWISE_MAX_CLOCK_SKEW_MS, EDGEWISE_USER_TOKEN_SECRETS (JSON array),
// EDGEWISE_CORS_ORIGIN. The edge runtime has no shared Cache API: regional
// bundles are kept in the isolate's memory (./edge.js `memoryCache`), and
// Vercel's CDN caches nothing personal.

import wasm from './edgewise_core.wasm?module';
import { createEdge, memoryCache } from './edge.js';

export const config = { runtime: 'edge' };

let edge = null;

function build() {
  const env = (typeof process !== 'undefined' && process.env) || {};
  const num = (v) => (v === undefined || v === '' ? undefined : Number(v));
  return createEdge({
    module: wasm,
    origin: env.EDGEWISE_ORIGIN,
    fetch: (url, init) => fetch(url, init),
    cache: memoryCache({ maxBytes: 32 << 20 }),
    candidates: num(env.EDGEWISE_CANDIDATES),
    refineDeadlineMs: num(env.EDGEWISE_REFINE_DEADLINE_MS),
    maxClockSkewMs: num(env.EDGEWISE_MAX_CLOCK_SKEW_MS),
    userTokenSecrets: env.EDGEWISE_USER_TOKEN_SECRETS ? JSON.parse(env.EDGEWISE_USER_TOKEN_SECRETS) : undefined,
    corsOrigin: env.EDGEWISE_CORS_ORIGIN || undefined,
  });
}

/** @param {Request} req */
export default async function handler(req) {
  edge ??= build();
  return edge.fetch(req);
}
