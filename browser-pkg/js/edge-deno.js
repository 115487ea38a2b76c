// Deno entry for the Edgewise edge adapter (./edge.js).
//
//   EDGEWISE_ORIGIN=https://origin.example deno run --allow-net --allow-env --allow-read edge-deno.js
//
// Environment: EDGEWISE_ORIGIN (required), EDGEWISE_PORT (8000),
// EDGEWISE_HOSTNAME (127.0.0.1), EDGEWISE_GUEST (the .wasm path; default:
// edgewise_core.wasm next to this file), EDGEWISE_CANDIDATES,
// EDGEWISE_REFINE_DEADLINE_MS, EDGEWISE_USER_TOKEN_SECRETS (JSON array),
// EDGEWISE_CORS_ORIGIN. The Cache API (`caches.open`) is used where Deno has it.

import { createEdge } from './edge.js';

const env = (k) => Deno.env.get(k);
const num = (v) => (v === undefined || v === '' ? undefined : Number(v));
const guestPath = env('EDGEWISE_GUEST') ?? new URL('./edgewise_core.wasm', import.meta.url);
const module = await WebAssembly.compile(await Deno.readFile(guestPath));
const cache = typeof caches !== 'undefined' ? await caches.open('edgewise-edge-v1') : null;

const edge = createEdge({
  module,
  origin: env('EDGEWISE_ORIGIN'),
  fetch: (url, init) => fetch(url, init),
  cache,
  candidates: num(env('EDGEWISE_CANDIDATES')),
  refineDeadlineMs: num(env('EDGEWISE_REFINE_DEADLINE_MS')),
  maxClockSkewMs: num(env('EDGEWISE_MAX_CLOCK_SKEW_MS')),
  userTokenSecrets: env('EDGEWISE_USER_TOKEN_SECRETS') ? JSON.parse(env('EDGEWISE_USER_TOKEN_SECRETS')) : undefined,
  corsOrigin: env('EDGEWISE_CORS_ORIGIN') || undefined,
});

Deno.serve({ port: num(env('EDGEWISE_PORT')) ?? 8000, hostname: env('EDGEWISE_HOSTNAME') ?? '127.0.0.1' }, (req) => edge.fetch(req));
