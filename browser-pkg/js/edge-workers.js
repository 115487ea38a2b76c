// Cloudflare Workers entry for the Edgewise edge adapter (./edge.js).
//
// wrangler.toml:
//   main = "edge-workers.js"
//   [vars] EDGEWISE_ORIGIN = "https://origin.example"
//   # optional: EDGEWISE_CANDIDATES, EDGEWISE_REFINE_DEADLINE_MS, EDGEWISE_CORS_ORIGIN,
//   # and the secret EDGEWISE_USER_TOKEN_SECRETS (a JSON array of HS256 secrets)
//
// Workers forbid compiling WebAssembly from bytes at run time, so the guest
// is imported as a module (wrangler and workerd hand over a compiled
// WebAssembly.Module); the package ships the guest next to this file
// (`edgewise/edgewise_core.wasm`, the zero-import module `cargo xtask guest` builds).

import wasm from './edgewise_core.wasm';
import { createEdge } from './edge.js';

/** One edge per isolate (its guest instance, verified models and coalescing live here). */
let edge = null;

/** @param {Record<string, any>} env */
function build(env) {
  const num = (v) => (v === undefined || v === '' ? undefined : Number(v));
  return createEdge({
    module: wasm,
    origin: env.EDGEWISE_ORIGIN,
    fetch: (url, init) => fetch(url, init),
    cache: typeof caches !== 'undefined' ? caches.default : null,
    candidates: num(env.EDGEWISE_CANDIDATES),
    refineDeadlineMs: num(env.EDGEWISE_REFINE_DEADLINE_MS),
    maxClockSkewMs: num(env.EDGEWISE_MAX_CLOCK_SKEW_MS),
    userTokenSecrets: env.EDGEWISE_USER_TOKEN_SECRETS ? JSON.parse(env.EDGEWISE_USER_TOKEN_SECRETS) : undefined,
    corsOrigin: env.EDGEWISE_CORS_ORIGIN || undefined,
  });
}

export default {
  /** @param {Request} req @param {Record<string, any>} env @param {{ waitUntil(p: Promise<unknown>): void }} ctx */
  async fetch(req, env, ctx) {
    edge ??= build(env);
    return edge.fetch(req, ctx);
  },
};
