// The high-level client (`Edgewise`) against a real origin and a real edge on
// loopback (the conformance crate's `stack` example): the two frames, the
// stable merge, local feedback, events through the edge, HTTP validators, the
// token refresh, and every error path, with no unhandled rejection.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Edgewise, EdgewiseError, bundleInfo, bundleUnion, decodeResult, sha256, sourceNames } from 'edgewise';
import { startStack } from './stack.mjs';

const wasm = await readFile(fileURLToPath(import.meta.resolve('edgewise/edgewise_core_bg.wasm')));
const unhandled = [];
process.on('unhandledRejection', (e) => unhandled.push(e));

let stack;
before(async () => {
  stack = await startStack();
});
after(() => stack?.stop());

/** A fetch that records what it was asked and answered. */
function recording(log, inner = fetch) {
  return async (url, init) => {
    const res = await inner(url, init);
    log.push({ url: String(url), status: res.status, inm: init?.headers?.['if-none-match'] ?? null });
    return res;
  };
}

/** @param {AsyncIterable<any>} it */
async function frames(it, each = () => {}) {
  const out = [];
  for await (const f of it) {
    out.push(f);
    each(f);
  }
  return out;
}

const token = (user) => async () => stack.tokens[String(user)];

async function client(options = {}) {
  return Edgewise.create({ endpoint: stack.edge, wasm, persist: false, ...options });
}

/** Rejects with an `EdgewiseError` of `code`. */
async function rejectsWith(promise, code) {
  await assert.rejects(promise, (e) => {
    assert.ok(e instanceof EdgewiseError, `an EdgewiseError, not ${e}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

test('a signed-in user gets a preliminary frame, then a refined one stable-merged', async () => {
  const now = Date.now();
  const ew = await client({ token: token(7), clock: () => now });
  assert.equal(ew.engine, 'wasm-simd', 'no WebGPU in Node: the wasm path');
  const got = await frames(ew.feed({ user: 7, region: 0, k: 10 }), (f) => {
    // The page shows the first three preliminary items before the refined frame comes.
    if (f.kind === 'preliminary') for (const it of f.items.slice(0, 3)) ew.track({ item: it.id, kind: 'impression' });
  });
  assert.deepEqual(got.map((f) => [f.kind, f.scope, f.source]), [
    ['preliminary', 'regional', 'network'],
    ['refined', 'personal', 'network'],
  ]);
  const [pre, ref] = got;
  assert.equal(pre.items.length, 10);
  assert.equal(ref.items.length, 10);
  assert.equal(ref.shown, 3);
  assert.deepEqual(ref.items.slice(0, 3).map((i) => i.id), pre.items.slice(0, 3).map((i) => i.id), 'shown items kept');
  assert.ok(ref.items.slice(0, 3).every((i) => i.kept) && !ref.items[3].kept);
  assert.equal(new Set(ref.items.map((i) => i.id)).size, 10, 'no duplicates after the merge');
  assert.ok(ref.agreement && ref.agreement.overlap >= 0 && ref.agreement.overlap <= 1, JSON.stringify(ref.agreement));
  assert.ok(ref.agreement.kendallTau === null || Math.abs(ref.agreement.kendallTau) <= 1);
  assert.match(ref.model, /^[0-9a-f]{64}$/);
  assert.ok(['miss', 'hit', 'stale', 'revalidated'].includes(ref.bundle.cache), ref.bundle.cache);
  for (const f of got) assert.ok(f.timings.rank >= 0 && f.timings.total >= f.timings.rank);
  // Each item names the sources that found it and its creator; each frame
  // counts what happened to every candidate, and carries the bytes it ranked.
  const names = sourceNames();
  assert.deepEqual(names.slice(0, 3), ['collaborative', 'content', 'trending']);
  for (const f of got) {
    for (const it of f.items) {
      assert.ok(it.sources.length > 0 && it.sources.every((x) => names.includes(x)), `${it.id}: ${it.sources}`);
      assert.equal(typeof it.creator, 'number');
    }
    assert.equal(f.engine, 'wasm-simd');
    assert.equal(Object.values(f.stages).reduce((a, b) => a + b, 0), f.bundle.rows, 'every row has one outcome');
    assert.equal(f.stages.selected, 10);
    assert.equal(sha256(f.replay.bundle), f.bundle.digest);
    const again = decodeResult(f.replay.result).items.map((it) => it.id);
    assert.deepEqual(again, f.ranked, 'replay.result is this frame\'s own ranking');
  }

  // The same bundle and context at the edge (the guest, which is the native
  // core) give the same items and scores as the device.
  const r = await fetch(`${stack.edge}/v1/feed?region=0&k=10&refine=false`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ now_ms: now }),
  });
  assert.equal(r.status, 200);
  const edge = await r.json();
  assert.equal(edge.bundle_digest, pre.bundle.digest, 'the same regional bundle');
  assert.deepEqual(pre.items.map((i) => [i.id, i.score]), edge.items.map((i) => [BigInt(i.id), Math.fround(i.score)]));
  await ew.close();
});

test('interactions move the session at once, rerank() reorders the unseen items, and events reach the origin', async () => {
  const ew = await client({ token: token(7), events: { flushMs: 60_000 } });
  const got = await frames(ew.feed({ user: 7, region: 0, k: 12 }));
  const ref = got.at(-1);
  const before = ref.items.map((i) => i.id);
  // Like two items far down the list and hide one: the session leans towards the liked ones.
  const liked = [before[9], before[10]];
  for (const id of before.slice(0, 3)) ew.track({ item: id, kind: 'impression' });
  for (const id of liked) assert.equal(ew.track({ item: id, kind: 'like' }).sessionUpdated, true);
  const hid = ew.track({ item: before[4], kind: 'hide' });
  assert.equal(hid.sessionUpdated, true);
  assert.match(hid.eventId, /^[0-9a-f-]{32,36}$/);
  assert.ok(ew.session instanceof Uint8Array && ew.session.byteLength > 0);
  assert.equal(ew.pendingEvents, 3 + 2 + 1);

  const r = await ew.rerank();
  const after = r.order;
  assert.deepEqual(after.slice(0, 3), before.slice(0, 3), 'the shown items stay');
  for (const id of [...liked, before[4]]) assert.ok(!r.items.some((i) => i.id === id), `${id} was interacted with`);
  assert.ok(r.items.length > 0 && r.engine === 'wasm-simd');
  assert.ok(r.moved.length > 0, 'the session moved something');

  const why = ew.explain(r.items[0].id);
  assert.equal(why.outcome, 'selected');
  assert.ok(why.sources.length > 0 && typeof why.creator === 'number');
  assert.equal(Math.round(ew.similarity(liked[0], liked[0]) * 1e6), 1e6, 'an item is its own nearest');
  const sims = before.map((id) => ew.similarity(liked[0], id));
  assert.ok(sims.every((x) => x >= -1.000001 && x <= 1.000001), String(sims));
  assert.equal(ew.similarity(liked[0], 123456789), null, 'an id in no bundle');
  assert.equal(Object.values(r.stages).reduce((a, b) => a + b, 0), ref.bundle.rows);
  assert.equal(why.rank, 0);
  for (const k of ['preScore', 'mainScore', 'calibrated', 'mmrPenalty']) assert.equal(typeof why[k], 'number', k);
  // A hidden item keeps its place on the page (it was shown); explain() says how the
  // ranking that placed it treated it, and the re-rank filtered it, as every seen item.
  assert.equal(ew.explain(before[4]).outcome, 'selected');
  assert.equal(ew.explain(before[4]).rank, 4);
  assert.ok(r.order.slice(0, 11).includes(before[4]));
  assert.ok(r.stages['filtered: seen'] >= 6, JSON.stringify(r.stages));
  assert.equal(ew.explain(123456789), null, 'an id in no bundle');

  // The queued events go through the edge to the origin.
  const flushed = new Promise((resolve) => ew.addEventListener('flushed', (e) => resolve(e.detail), { once: true }));
  const errors = [];
  ew.addEventListener('error', (e) => errors.push(e.detail));
  await ew.flush();
  assert.equal(await flushed, 6);
  assert.equal(ew.pendingEvents, 0);
  assert.deepEqual(errors, []);
  await ew.close();
});

test('a returning user\'s preliminary frame ranks their kept personal bundle merged with the regional one', async () => {
  const now = Date.now();
  const ew = await client({ token: token(7), clock: () => now });
  const [pre1, ref1] = await frames(ew.feed({ user: 7, region: 0, k: 10 }));
  assert.equal(pre1.merged, undefined, 'nothing kept yet: the regional bundle alone');
  const [pre2] = await frames(ew.feed({ user: 7, region: 0, k: 10 }));
  assert.deepEqual([pre2.kind, pre2.scope, pre2.source], ['preliminary', 'personal', 'memory']);
  assert.deepEqual(pre2.merged, { kept: ref1.bundle.digest, regional: pre1.bundle.digest });
  // The bytes ranked are the kept rows, then the regional rows they lack (the core's union).
  const kept = bundleInfo(ref1.replay.bundle);
  const regional = bundleInfo(pre1.replay.bundle);
  const ranked = bundleInfo(pre2.replay.bundle);
  const keptIds = new Set(kept.ids);
  const want = [...kept.ids, ...[...regional.ids].filter((id) => !keptIds.has(id))];
  assert.deepEqual([...ranked.ids], want);
  assert.equal(sha256(pre2.replay.bundle), pre2.bundle.digest);
  assert.deepEqual(pre2.replay.bundle, bundleUnion(ref1.replay.bundle, pre1.replay.bundle, now));
  assert.ok(pre2.items.some((it) => keptIds.has(it.id)), 'the kept bundle\'s candidates reach the first frame');
  await ew.close();

  // A kept bundle older than keptMaxAgeMs is not ranked.
  const late = await client({ token: token(7), clock: () => now + 60_000, keptMaxAgeMs: 1_000 });
  await frames(late.feed({ user: 7, region: 0, k: 10 }));
  const [pre3] = await frames(late.feed({ user: 7, region: 0, k: 10 }));
  assert.deepEqual([pre3.scope, pre3.merged], ['regional', undefined], 'too old: the regional bundle alone');
  await late.close();
  await rejectsWith(client({ keptMaxAgeMs: -1 }), 'bad-options');
  assert.throws(() => bundleUnion(ref1.replay.bundle, new Uint8Array(8), now), (e) => e.code === 'bad-bundle');
});

test('a second feed starts from the device and revalidates with If-None-Match', async () => {
  const log = [];
  const ew = await client({ fetch: recording(log) });
  const first = await frames(ew.feed({ region: 2, k: 5 }));
  assert.deepEqual(first.map((f) => [f.kind, f.source]), [['preliminary', 'network']], 'anonymous, nothing stored: one frame');
  const again = await frames(ew.feed({ region: 2, k: 5 }));
  assert.deepEqual(again.map((f) => [f.kind, f.source]), [['preliminary', 'memory'], ['refined', 'network']]);
  const bundleGets = log.filter((l) => l.url.includes('/v1/regions/2/bundle'));
  assert.equal(bundleGets.length, 2);
  assert.equal(bundleGets[0].inm, null);
  assert.ok(bundleGets[1].inm, 'the stored ETag was sent');
  assert.equal(bundleGets[1].status, 304, 'the edge confirmed the stored copy');
  assert.deepEqual(again[1].items.map((i) => i.id), again[0].items.map((i) => i.id), 'same bytes, same ranking');
  assert.equal(log.filter((l) => l.url.includes('/v1/models/')).length, 1, 'the model is fetched once');
  await ew.close();
});

test('an expired token is refreshed once after a 401', async () => {
  const calls = [];
  const ew = await client({
    token: async (refresh) => {
      calls.push(refresh);
      return refresh ? stack.tokens['7'] : stack.expired['7'];
    },
  });
  const got = await frames(ew.feed({ user: 7, k: 5 }));
  assert.equal(got.at(-1).kind, 'refined');
  assert.ok(calls.includes(true), `token(true) was called: ${calls}`);
  await ew.close();
});

test('errors are typed, end the feed, and leave the last frame standing', async () => {
  // Endpoint down.
  const down = await Edgewise.create({ endpoint: 'http://127.0.0.1:9/', wasm, persist: false, timeoutMs: 2000 });
  await rejectsWith(frames(down.feed({ region: 0 })), 'endpoint-down');
  // Another user's feed with user 8's token: the edge refuses it.
  const other = await client({ token: token(8) });
  await rejectsWith(frames(other.feed({ user: 7 })), 'http-403');
  // A personal feed without a token.
  const anon = await client();
  await rejectsWith(frames(anon.feed({ user: 7 })), 'no-token');
  // Bad options.
  await rejectsWith(frames(anon.feed({ region: 32 })), 'bad-options');
  await rejectsWith(Edgewise.create({ wasm }), 'bad-options');
  // A bundle over the size bound.
  const small = await client({ maxBundleBytes: 100 });
  await rejectsWith(frames(small.feed({ region: 0 })), 'too-large');
  // Aborted.
  const ctl = new AbortController();
  ctl.abort();
  await rejectsWith(frames(anon.feed({ region: 0, signal: ctl.signal })), 'aborted');

  // Tampering on the way: a flipped byte in a bundle, a wrong digest header, a flipped byte in a model.
  const tamper = (pred, change) => async (url, init) => {
    const res = await fetch(url, init);
    if (!pred(String(url)) || res.status !== 200) return res;
    const bytes = new Uint8Array(await res.arrayBuffer());
    const headers = new Headers(res.headers);
    const body = change(bytes, headers) ?? bytes;
    headers.delete('content-length');
    return new Response(body, { status: 200, headers });
  };
  const isBundle = (u) => u.includes('/bundle');
  const corrupt = await client({ fetch: tamper(isBundle, (b) => void (b[b.length >> 1] ^= 0x40)) });
  await rejectsWith(frames(corrupt.feed({ region: 0 })), 'bad-bundle');
  const renamed = await client({ fetch: tamper(isBundle, (_, h) => void h.set('x-edgewise-bundle-digest', '0'.repeat(64))) });
  await rejectsWith(frames(renamed.feed({ region: 0 })), 'digest-mismatch');
  const badModel = await client({ fetch: tamper((u) => /\/v1\/models\/[0-9a-f]{64}$/.test(u), (b) => void (b[10] ^= 1)) });
  await rejectsWith(frames(badModel.feed({ region: 0 })), 'digest-mismatch');

  // After an error the last good frame stands: a good feed, then the edge goes "down".
  let offline = false;
  const flaky = await client({
    token: token(7),
    fetch: (url, init) => (offline ? Promise.reject(new TypeError('fetch failed')) : fetch(url, init)),
  });
  const good = await frames(flaky.feed({ user: 7, k: 5 }));
  const last = good.at(-1);
  offline = true;
  const partial = [];
  await rejectsWith(frames(flaky.feed({ user: 7, k: 5 }), (f) => partial.push(f)), 'endpoint-down');
  assert.deepEqual(partial.map((f) => [f.kind, f.source]), [['preliminary', 'memory']], 'the device still ranks what it has');
  assert.equal(flaky.explain(last.items[0].id).outcome !== undefined, true, 'the last frame can still be explained');
  for (const c of [down, other, anon, small, corrupt, renamed, badModel, flaky]) await c.close();
  assert.deepEqual(unhandled, [], 'no unhandled promise rejections');
});
