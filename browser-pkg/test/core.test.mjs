// The packed `edgewise` package in Node, against the native core.
//
// `cargo xtask npm-test` installs the tarball `cargo xtask npm` packed into a
// scratch directory, writes randomized cases ranked by the native core
// (`examples/fixtures.rs`) and runs this file with Node's test runner.
// EDGEWISE_FIXTURES and EDGEWISE_GOLDEN name the case and golden directories;
// a missing one fails the run, never skips it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  Core, EdgewiseError, encodeContext, decodeResult, verifyBundle, bundleLayout, sessionNew, sessionObserve, sessionInfo,
  abiVersion, historyObserve, historyInfo, experimentAssign, teamDraft, thompson, thompsonShares,
} from 'edgewise';

const fixtures = process.env.EDGEWISE_FIXTURES;
const golden = process.env.EDGEWISE_GOLDEN;
assert.ok(fixtures && golden, 'EDGEWISE_FIXTURES and EDGEWISE_GOLDEN must be set (cargo xtask npm-test sets them)');

const wasmBytes = await readFile(new URL(import.meta.resolve('edgewise/edgewise_core_bg.wasm')));
const core = await Core.load(wasmBytes);
const read = async (dir, name) => new Uint8Array(await readFile(join(dir, name)));

/** Every row's int8 dot product with `q`, as a GPU scan computes it. */
function dots(bundle, q) {
  const { rows: n, dim: d, start } = bundleLayout(bundle);
  const emb = new Int8Array(bundle.buffer, bundle.byteOffset + start, n * d);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < d; j++) s += q[j] * emb[i * d + j];
    out[i] = s;
  }
  return out;
}

/** Runs `f` and returns the EdgewiseError it throws. */
function thrown(f) {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof EdgewiseError, `an EdgewiseError, not ${e}`);
    return e;
  }
  assert.fail('no error was thrown');
}

test('experiment decisions equal the native core\'s committed vectors', async () => {
  const v = JSON.parse(await readFile(join(golden, '..', 'experiment', 'vectors.json'), 'utf8'));
  assert.equal(v.assign.length, 200);
  for (const c of v.assign) {
    assert.equal(experimentAssign(BigInt(c.user), BigInt(c.salt), c.ramp_bp, c.allocations_bp), c.variant, JSON.stringify(c));
  }
  for (const c of v.team_draft) {
    const got = teamDraft(c.a.map(BigInt), c.b.map(BigInt), c.k, BigInt(c.seed));
    assert.deepEqual([...got.items].map(String), c.items, JSON.stringify(c));
    assert.deepEqual([...got.teams], c.teams);
  }
  for (const c of v.thompson) {
    const [clicks, exposures, seed] = [c.clicks.map(BigInt), c.exposures.map(BigInt), BigInt(c.seed)];
    assert.equal(thompson(clicks, exposures, seed), c.choice, JSON.stringify(c));
    const shares = thompsonShares(clicks, exposures, c.draws, seed);
    assert.deepEqual([...shares], c.wins.map((w) => w / c.draws), 'shares are wins / draws, bit for bit');
  }
  console.log(`experiments: ${v.assign.length} assignments, ${v.team_draft.length} interleavings, ${v.thompson.length} bandit decisions agree`);
  // Bad input is a typed error naming the problem.
  assert.equal(thrown(() => experimentAssign(1, 2, 100, [5000, 4000])).code, 'bad-experiment');
  assert.match(thrown(() => experimentAssign(-1, 2, 100, [10000])).message, /user must be a u64/);
  assert.match(thrown(() => experimentAssign(1, 2, 10001, [10000])).message, /ramp/);
  assert.match(thrown(() => thompson([1n], [1n, 2n], 0)).message, /one of each per variant/);
  assert.equal(thrown(() => teamDraft([1], [2], 200_000, 0)).code, 'bad-experiment');
});

test('the golden v1 files rank to the committed bytes', async () => {
  const [bundle, model, ctx, want] = await Promise.all(
    ['bundle.ewb', 'model.ewm', 'context.ewcx', 'result.ewrs'].map((n) => read(golden, n)),
  );
  const c = await Core.load();
  assert.match(c.loadModel(model), /^[0-9a-f]{64}$/);
  assert.deepEqual(c.rank(bundle, ctx), want);
  assert.equal(abiVersion(), 1);
});

test('randomized rankings are byte-identical to the native core, and so is the GPU split', async () => {
  const names = (await readdir(fixtures)).filter((n) => n.endsWith('.ewrs')).sort();
  assert.ok(names.length >= 200, `at least 200 cases, found ${names.length}`);
  let items = 0;
  let rows = 0;
  for (const name of names) {
    const base = name.slice(0, -'.ewrs'.length);
    const [bundle, model, ctx, want] = await Promise.all(
      ['ewb', 'ewm', 'ewcx', 'ewrs'].map((e) => read(fixtures, `${base}.${e}`)),
    );
    core.loadModel(model);
    const got = core.rank(bundle, ctx);
    assert.deepEqual(got, want, `${base}: the wasm core's EWRS differs from the native core's`);
    const q = core.quantizedQuery(bundle, ctx);
    assert.deepEqual(core.rankWithDots(bundle, ctx, dots(bundle, q)), want, `${base}: rankWithDots differs`);
    const r = decodeResult(got);
    items += r.items.length;
    rows += r.rows.outcome.length;
  }
  console.log(`compared ${names.length} randomized rankings (${items} items, ${rows} rows): all byte-identical`);
});

test('results decode into items and per-row arrays', async () => {
  const [bundle, model, ctx] = await Promise.all(['bundle.ewb', 'model.ewm', 'context.ewcx'].map((n) => read(golden, n)));
  core.loadModel(model);
  const r = decodeResult(core.rank(bundle, ctx));
  assert.equal(r.rows.outcome.length, verifyBundle(bundle));
  assert.ok(r.items.length > 0);
  assert.equal(typeof r.items[0].id, 'bigint');
  assert.equal(r.outcomes[0], 'selected');
  const selected = r.rows.outcome.filter((o) => o === 0).length;
  assert.equal(selected, r.items.length, 'every item is a selected row');
  for (const it of r.items) assert.equal(r.rows.outcome[it.row], 0);
});

test('every error is a typed EdgewiseError, and the core keeps working', async () => {
  const [bundle, model, ctx] = await Promise.all(['bundle.ewb', 'model.ewm', 'context.ewcx'].map((n) => read(golden, n)));
  const fresh = await Core.load();
  assert.equal(thrown(() => fresh.rank(bundle, ctx)).code, 'no-model');
  assert.equal(thrown(() => fresh.loadModel(new Uint8Array([1, 2, 3]))).code, 'bad-model');
  fresh.loadModel(model);
  const corrupt = bundle.slice();
  corrupt[200] ^= 0xff;
  assert.equal(thrown(() => fresh.rank(corrupt, ctx)).code, 'bad-bundle');
  assert.equal(thrown(() => verifyBundle(corrupt)).code, 'bad-bundle');
  assert.equal(thrown(() => fresh.rank(bundle.subarray(0, 100), ctx)).code, 'bad-bundle');
  assert.equal(thrown(() => fresh.rank(bundle, ctx.subarray(1))).code, 'bad-context');
  assert.equal(thrown(() => encodeContext({ region: 32 })).code, 'bad-context');
  assert.equal(thrown(() => encodeContext({ k: -1 })).code, 'bad-context');
  assert.equal(thrown(() => encodeContext({ nowMs: 1.5 })).code, 'bad-context');
  assert.equal(thrown(() => encodeContext({ seen: [-1] })).code, 'bad-context');
  assert.equal(thrown(() => encodeContext({ base: [NaN] })).code, 'bad-context');
  assert.equal(thrown(() => encodeContext({ session: new Uint8Array([9, 9, 9]) })).code, 'bad-session');
  // A context whose base embedding has the wrong dimension, and dot products of the wrong count.
  const wrongDim = encodeContext({ k: 5, base: [0.1, 0.2, 0.3] });
  assert.equal(thrown(() => fresh.rank(bundle, wrongDim)).code, 'incompatible');
  const q = fresh.quantizedQuery(bundle, ctx);
  assert.equal(thrown(() => fresh.rankWithDots(bundle, ctx, dots(bundle, q).subarray(1))).code, 'incompatible');
  assert.equal(thrown(() => fresh.rankWithDots(bundle, ctx, [1, 2, 3])).code, 'incompatible');
  // A model for another feature schema.
  const names = (await readdir(fixtures)).filter((n) => n.endsWith('.ewm')).sort();
  const other = await read(fixtures, names[0]);
  fresh.loadModel(other);
  assert.equal(thrown(() => fresh.rank(bundle, ctx)).code, 'incompatible');
  // After all that, it still ranks.
  fresh.loadModel(model);
  assert.ok(fresh.rank(bundle, ctx).length > 16);
});

test('interactions move the session at once, and the ranking follows', async () => {
  const [bundle, model] = await Promise.all(['bundle.ewb', 'model.ewm'].map((n) => read(golden, n)));
  core.loadModel(model);
  const d = bundleLayout(bundle).dim;
  let state = sessionNew(d);
  assert.deepEqual(sessionInfo(state), { dim: d, events: 0, lastMs: 0 });
  const nowMs = 1_700_000_000_000;
  const before = decodeResult(core.rank(bundle, encodeContext({ k: 10, nowMs, session: state })));
  const liked = before.items.at(-1).row;
  for (let i = 0; i < 5; i++) state = sessionObserve(state, bundle, { row: liked, kind: 'like', nowMs: nowMs + i });
  assert.deepEqual(sessionInfo(state), { dim: d, events: 5, lastMs: nowMs + 4 });
  const after = decodeResult(core.rank(bundle, encodeContext({ k: 10, nowMs: nowMs + 5, session: state })));
  assert.notDeepEqual(after.items.map((i) => i.id), before.items.map((i) => i.id), 'likes change the ranking');
  assert.equal(thrown(() => sessionObserve(state, bundle, { row: 0, kind: 'purchase' })).code, 'bad-session');
  assert.equal(thrown(() => sessionObserve(state, bundle, { row: 1 << 30, kind: 'click' })).code, 'bad-session');
  assert.equal(thrown(() => sessionObserve(sessionNew(d + 1), bundle, { row: 0, kind: 'click' })).code, 'bad-session');
});

test('interactions build the history the ranker reads', async () => {
  const [bundle, model] = await Promise.all(['bundle.ewb', 'model.ewm'].map((n) => read(golden, n)));
  core.loadModel(model);
  const d = bundleLayout(bundle).dim;
  const nowMs = 1_700_000_000_000;
  let h = historyObserve(new Uint8Array(), bundle, { row: 3, kind: 'like', nowMs });
  assert.deepEqual(historyInfo(h), { entries: 1, dim: d });
  assert.deepEqual(historyObserve(h, bundle, { row: 4, kind: 'skip', nowMs: nowMs + 1 }), h, 'a skip is not history');
  h = historyObserve(h, bundle, { row: 3, kind: 'click', nowMs: nowMs + 2 });
  assert.deepEqual(historyInfo(h), { entries: 1, dim: d }, 'one entry per item');
  h = historyObserve(h, bundle, { row: 5, kind: 'dwell', nowMs: nowMs + 3 });
  assert.deepEqual(historyInfo(h), { entries: 2, dim: d });
  for (let r = 0; r < 70; r++) h = historyObserve(h, bundle, { row: r % 40, kind: 'click', nowMs: nowMs + 10 + r });
  assert.equal(historyInfo(h).entries, 40, 'one entry per item, at most 64');
  // A model without a history block ranks a context with one as it ranks it without.
  const plain = core.rank(bundle, encodeContext({ k: 10, nowMs: nowMs + 100 }));
  assert.deepEqual(core.rank(bundle, encodeContext({ k: 10, nowMs: nowMs + 100, history: h })), plain);
  assert.equal(thrown(() => historyObserve(h, bundle, { row: 0, kind: 'purchase' })).code, 'bad-session');
  assert.equal(thrown(() => historyObserve(h, bundle, { row: 1 << 30, kind: 'click' })).code, 'bad-session');
  assert.equal(thrown(() => encodeContext({ history: new Uint8Array([1, 2, 3]) })).code, 'bad-context');
});
