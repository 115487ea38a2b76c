// The Fastly app under Viceroy, Fastly's local server: the feed checks of the
// wasi:http component (the same contract as the Rust edge), and the core
// cache's (one origin fetch for many feeds, ETag revalidation, stale on
// error, personal bundles never stored). See lib.mjs for the environment.

import { suite } from '../../wasi-http/test/suite.mjs';
import { app, checkCached, checkPersonalNotCached, checkRevalidated, logSize, serveViceroy, viceroy } from './lib.mjs';

suite('viceroy', () => { viceroy(); app(); }, serveViceroy, {
  size: logSize,
  origin: ['the core cache fetches a regional bundle once for many feeds (20 at once), the model once', checkCached],
  extra: [
    ['an expired bundle is revalidated by ETag (304) and served stale while the origin fails', checkRevalidated],
    ['a personal bundle is never stored: each signed-in feed asks the origin', checkPersonalNotCached],
  ],
});
