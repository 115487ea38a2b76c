// The adapter's pure parts in Node: the EWCX encoder against the golden
// context's bytes, the guest wrapper against result.ewrs, and the request rules.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  Guest, crc32, decodeContext, encodeContext, f32Json, historyEntries, parseFeedBody, parseFeedRequest, sessionBytes, sha256Hex,
  stableMerge,
} from '../js/edge.js';
import { envPath, golden, trapWasm } from './lib.mjs';

test('the EWCX encoder writes context.ewcx byte for byte', () => {
  const g = golden();
  const c = decodeContext(g.context);
  assert.deepEqual([c.region, c.k, c.nowMs, c.halfLifeMs, c.seen], [null, 8, 1_700_000_100_000n, 1_800_000n, [1_000_015n, 1_000_001n]]);
  assert.equal(c.sessionShare, Math.fround(0.3));
  assert.equal(c.base.length, 16);
  assert.ok(c.session && sessionBytes(c.session).length === c.session.length, 'the golden session is canonical');
  assert.ok(Buffer.from(encodeContext(c)).equals(Buffer.from(g.context)));
  // The same context from plain values (numbers, arrays), as the feed builds it.
  const plain = encodeContext({ region: null, k: 8, nowMs: 1_700_000_100_000, seen: [1_000_015, 1_000_001], base: Array.from(c.base), session: c.session });
  assert.ok(Buffer.from(plain).equals(Buffer.from(g.context)));
  assert.throws(() => encodeContext({ k: -1, nowMs: 0 }), /k must be a u32/);
  assert.throws(() => encodeContext({ k: 1, nowMs: 0, region: 32 }), /region/);
});

/** An `EWHS` history of `entries` ([item, atMs, kind, scale, [i8...]]), with its CRC. */
function ewhs(entries, dim) {
  const out = new Uint8Array(12 + entries.length * (24 + dim) + 4);
  const dv = new DataView(out.buffer);
  out.set([0x45, 0x57, 0x48, 0x53, 1, 0], 0);
  dv.setUint16(6, entries.length, true);
  dv.setUint16(8, entries.length ? dim : 0, true);
  entries.forEach(([item, atMs, kind, scale, q], l) => {
    const at = 12 + l * (24 + dim);
    dv.setBigUint64(at, BigInt(item), true);
    dv.setBigUint64(at + 8, BigInt(atMs), true);
    dv.setFloat32(at + 16, scale, true);
    out[at + 20] = kind;
    q.forEach((x, j) => dv.setInt8(at + 24 + j, x));
  });
  dv.setUint32(out.length - 4, crc32(out.subarray(0, out.length - 4)), true);
  return out;
}

test('a stored history is checked and travels in a version-2 context', () => {
  const h = historyEntries(ewhs([[7, 9_000, 2, 0.5, [127, -3]], [8, 4_000, 1, 0.25, [0, 9]]], 2));
  assert.deepEqual([h.count, h.dim, h.entries.length], [2, 2, 52]);
  assert.equal(historyEntries(ewhs([], 2)), null, 'an empty history');
  const plain = encodeContext({ k: 5, nowMs: 10_000 });
  const ctx = encodeContext({ k: 5, nowMs: 10_000, history: h });
  assert.deepEqual([plain[4], ctx[4]], [1, 2], 'version 1 without a history, 2 with one');
  assert.deepEqual([...ctx.subarray(28, 32)], [2, 0, 2, 0]);
  assert.equal(ctx.length, plain.length + 52);
  assert.ok(Buffer.from(ctx.subarray(plain.length)).equals(Buffer.from(h.entries)));
  for (const [bytes, msg] of [
    [ewhs([[7, 9_000, 8, 0.5, [1, 1]]], 2), /kind is not below 8/],
    [ewhs([[7, 1_000, 1, 0.5, [1, 1]], [8, 2_000, 1, 0.5, [1, 1]]], 2), /newest first/],
    [ewhs([[7, 1_000, 1, -1, [1, 1]]], 2), /scale/],
    [ewhs(Array.from({ length: 65 }, (_, i) => [i, 100 - i, 1, 1, [1]]), 1), /more than 64/],
  ]) assert.throws(() => historyEntries(bytes), msg);
  const bad = ewhs([[7, 9_000, 2, 0.5, [127, -3]]], 2);
  bad[12] ^= 1;
  assert.throws(() => historyEntries(bad), /checksum/);
  assert.deepEqual(parseFeedBody(new TextEncoder().encode('{"history":"AAAA"}')).history, 'AAAA');
  assert.throws(() => parseFeedRequest(new Map(), { seen: [], session: null, history: 'AAAA', nowMs: null }, 0, 1, 1), /history: /);
});

test('the guest wrapper ranks the golden files to result.ewrs and refuses a module with imports', async () => {
  const g = golden();
  const module = await WebAssembly.compile(readFileSync(envPath('EDGEWISE_GUEST', 'the guest module')));
  const guest = new Guest(module);
  const out = guest.rank(await sha256Hex(g.model), g.model, g.bundle, g.context);
  assert.ok(Buffer.from(out).equals(Buffer.from(g.result)));
  assert.throws(() => new Guest(new WebAssembly.Module(new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 2, 7, 1, 1, 0x6d, 1, 0x66, 0, 0, 1, 4, 1, 0x60, 0, 0].slice(0, 8)))), /does not export/);
  const trap = new Guest(await WebAssembly.compile(trapWasm()));
  assert.equal(trap.rank('d', g.model, g.bundle, g.context).length, 16);
});

test('feed requests are checked as the Rust edge checks them', () => {
  const q = (o) => new Map(Object.entries(o));
  const now = 1_700_000_000_000;
  const r = parseFeedRequest(q({ user: '7', region: '31', k: '10' }), null, 3, now, 60_000);
  assert.deepEqual([r.user, r.region, r.k, r.shown, r.refine, r.tenant], [7n, 31, 10, 3, true, 'default']);
  assert.equal(parseFeedRequest(q({ refine: 'true' }), null, 0, now, 60_000).refine, false, 'anonymous: nothing to refine');
  for (const [query, msg] of [
    [{ k: '0' }, 'k = 0 must be in 1..=1000'], [{ region: '+1' }, 'region "+1" is not an integer in 0..=31'],
    [{ region: '32' }, 'region 32 is out of range (0..=31)'], [{ x: '1' }, 'unknown query parameter "x" (known: user, region, k, shown, tenant, refine)'],
    [{ tenant: '' }, 'tenant must be 1 to 64 characters'],
  ]) assert.throws(() => parseFeedRequest(q(query), null, 0, now, 60_000), { message: msg });
  const body = parseFeedBody(new TextEncoder().encode('{"seen":[1,9007199254740991],"now_ms":1700000000001}'));
  assert.deepEqual([body.nowMs, body.seen], [1_700_000_000_001n, [1n, 9_007_199_254_740_991n]]);
  // u64 ids past 2^53 are kept exact (never rounded); past u64, refused.
  assert.deepEqual(parseFeedBody(new TextEncoder().encode('{"seen":[18446744073709551615]}')).seen, [18_446_744_073_709_551_615n]);
  assert.throws(() => parseFeedBody(new TextEncoder().encode('{"seen":[18446744073709551616]}')), /unsigned 64-bit/);
  assert.throws(() => parseFeedBody(new TextEncoder().encode('{"seen":[1.5]}')), /unsigned 64-bit/);
  assert.throws(() => parseFeedBody(new TextEncoder().encode('{"seen":[],"x":1}')), /unknown field `x`/);
  assert.throws(() => parseFeedRequest(q({}), { seen: [], session: null, history: null, nowMs: BigInt(now + 120_000) }, 0, now, 60_000), /120000 ms from the edge's clock/);
});

test('the stable merge and the f32 formatting', () => {
  assert.deepEqual(stableMerge([1n, 2n, 3n, 4n], 2, [9n, 3n, 8n, 1n], 4), [1n, 2n, 9n, 3n]);
  assert.deepEqual(stableMerge([], 2, [9n, 3n], 2), [9n, 3n]);
  for (const x of [0.5, 0.1, 1e-7, 3.4028235e38, 0.50633746]) assert.equal(Math.fround(Number(f32Json(Math.fround(x)))), Math.fround(x));
  assert.equal(f32Json(Math.fround(0.1)), '0.1');
  assert.equal(f32Json(1), '1.0');
});
