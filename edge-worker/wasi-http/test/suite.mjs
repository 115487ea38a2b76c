// The checks, as node:test tests, for one runtime of an edge that lives one
// request at a time: the wasi:http component (`wasmtime serve`, `jco serve`)
// and the Fastly app (Viceroy, edge-worker/fastly/test).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  checkAnonymous, checkOriginReached, countingProxy, checkSameAsRustEdge, checkSignedIn, logSize, measure, measureSignedIn, startStack,
} from './lib.mjs';

/**
 * Registers the tests for `name`, whose runtime `serve(origin)` starts.
 * `check()` runs first and throws, naming the install command, when the
 * runtime or the component is missing: every test then fails (none skips).
 * `opts.size()` logs the app's size (the component's by default);
 * `opts.origin` replaces the check of what reaches the origin
 * (`[title, (base, proxy) => …]`; by default every feed does, as nothing
 * outlives a request); `opts.extra` adds `[title, (base, { stack, proxy }) => …]` tests.
 */
export function suite(name, check, serve, opts = {}) {
  const size = opts.size ?? logSize;
  const [reachTitle, reach] = opts.origin ?? ['each feed reaches the origin for its bundle and its model', checkOriginReached];
  let stack;
  let proxy;
  let rt;
  let setup;

  before(async () => {
    setup = (async () => {
      check();
      stack = await startStack();
      proxy = await countingProxy(stack.origin);
      rt = await serve(proxy.url);
      console.log(`# ${name}: cold start (spawn to the first answer) ${rt.coldMs.toFixed(0)} ms`);
    })();
    await setup.catch(() => {});
  });

  after(async () => {
    rt?.stop();
    await proxy?.close();
    stack?.stop();
  });

  const ready = async () => {
    await setup;
    return rt.base;
  };

  test(`${name}: the app is there and its size is logged`, async () => {
    await ready();
    assert.ok(size() > 0);
  });

  test(`${name}: the anonymous feed (refine=false, JSON) has the Rust edge's items and scores`, async () => {
    await checkAnonymous(await ready(), stack);
  });

  test(`${name}: the feed contract matches the Rust edge (items, NDJSON, the same 4xx for bad input)`, async () => {
    await checkSameAsRustEdge(await ready(), stack);
  });

  test(`${name}: the signed-in feed passes user 7's token to the origin; 401 without one`, async () => {
    await checkSignedIn(await ready(), stack, proxy);
  });

  test(`${name}: ${reachTitle}`, async () => {
    await reach(await ready(), proxy);
  });

  for (const [title, fn] of opts.extra ?? []) {
    test(`${name}: ${title}`, async () => {
      await fn(await ready(), { stack, proxy });
    });
  }

  test(`${name}: per-request times`, async () => {
    const base = await ready();
    const a = await measure(base);
    const s = await measureSignedIn(base, stack);
    console.log(`# ${name}: timings ${JSON.stringify({ coldStartMs: rt.coldMs, ...a, ...s })}`);
  });

  test(`${name}: the runtime logged no trap or panic`, async () => {
    await ready();
    assert.doesNotMatch(rt.output(), /panicked|wasm trap|error while executing|Uncaught/i, rt.output());
  });
}
