// Regional cache recipes (ops/nginx, ops/varnish) against the real Edgewise
// origin: `node --test` (Node 20, no npm packages).
//
//   cd ops/test && EDGEWISE_STACK=/work/main/target/ci/examples/stack \
//     node --test --test-timeout=120000 caches.test.mjs
//
// Needs nginx (Debian: nginx-light), varnishd and the xkey vmod (Debian:
// varnish, varnish-modules); a missing one fails the tests that need it,
// naming the package. Each cache talks to the origin through a recording
// pass-through (a "tap") so a test can see what that cache asked the origin;
// fetch counts are also checked against the origin's own /metrics.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  bearer,
  cacheControl,
  histogram,
  request,
  routeCounts,
  sleep,
  startNginx,
  startStack,
  startStubOrigin,
  startTap,
  startVarnish,
  stopAll,
  total,
  until,
} from './lib.mjs';

const REGIONAL_ROUTE = '/v1/regions/{region}/bundle';
const MANIFEST_ROUTE = '/v1/models/current';
const PERSONAL = new Set(['MISS', 'BYPASS', 'PASS']);
const FROM_CACHE = new Set(['HIT', 'STALE', 'UPDATING', 'REVALIDATED']);

// Regions each test uses, per cache, so that no two tests share an object.
const REGIONS = {
  nginx: { burst: 10, revalidate: 11, stale: 12 },
  varnish: { burst: 20, revalidate: 21, stale: 22, purged: 3, kept: 4 },
};

const log = (msg) => console.log(`# ${msg}`);
const regional = (r) => `/v1/regions/${r}/bundle`;
// Varnish gunzips for a client that did not ask for gzip and weakens the ETag it shows (W/).
const strong = (etag) => etag?.replace(/^W\//, '');
// The entity an ETag names: without W/ and the origin's content-coding suffix ("<digest>-gzip").
const entity = (etag) => strong(etag)?.replace(/^"(.*?)(-(gzip|br|deflate|zstd))?"$/, '$1');
const memo = (f) => {
  let p;
  return () => (p ??= f());
};

// Started once, in `before`; a failure (say, nginx missing) fails every test
// that needs that piece, with its message.
const stack = memo(startStack);
const taps = { nginx: memo(async () => startTap(await origin())), varnish: memo(async () => startTap(await origin())) };
const caches = {
  nginx: memo(async () => startNginx('stack', await taps.nginx())),
  varnish: memo(async () => startVarnish('stack', await taps.varnish())),
};
const origin = memo(async () => {
  const s = await stack();
  return { host: s.originHost, port: s.originPort };
});

/** The long test's copies, stored before the other tests run so that their s-maxage wait overlaps them. */
const warmed = {};
const setupErrors = [];

before(async () => {
  const t0 = Date.now();
  const results = await Promise.allSettled([stack(), caches.nginx(), caches.varnish()]);
  const s = await stack().catch(() => null);
  if (s) log(`stack up: origin ${s.origin}`);
  for (const kind of ['nginx', 'varnish']) {
    const c = await caches[kind]().catch((e) => {
      setupErrors.push(`${kind}: ${e.message.split('\n')[0]}`);
      log(setupErrors.at(-1));
      return null;
    });
    if (!c) continue;
    log(`${kind} up at ${c.url}`);
    const w = { at: Date.now() };
    for (const what of ['revalidate', 'stale']) {
      const r = await request(c.url + regional(REGIONS[kind][what]));
      w[what] = { status: r.status, etag: r.headers.etag, digest: r.headers['x-edgewise-bundle-digest'], cc: r.headers['cache-control'] };
    }
    const m = await request(`${c.url}${MANIFEST_ROUTE}`);
    w.manifest = { status: m.status, etag: m.headers.etag, cc: m.headers['cache-control'] };
    w.at = Date.now();
    warmed[kind] = w;
  }
  log(`set-up took ${Date.now() - t0} ms (${results.filter((r) => r.status === 'rejected').length} part(s) failed)`);
});

after(async () => {
  const s = await stack().catch(() => null);
  await s?.stop();
  for (const kind of ['nginx', 'varnish']) (await taps[kind]().catch(() => null))?.close();
  await stopAll();
});

for (const kind of ['nginx', 'varnish']) {
  test(`${kind}: a personal bundle is never served from the cache, nor to another user`, async () => {
    const [s, c, tap] = [await stack(), await caches[kind](), await taps[kind]()];
    const status = (r) => r.headers[c.statusHeader];
    const since = Date.now();
    const seen = [];
    const get = async (path, token) => {
      const r = await request(c.url + path, { headers: token ? bearer(token) : {} });
      seen.push(`${path.replace(/[0-9a-f]{64}/, '{digest}')} ${token === s.tokens['7'] ? 'user 7' : token ? 'user 8' : 'no token'}: ${r.status} ${status(r)}`);
      assert.ok(PERSONAL.has(status(r)), `${path}: ${c.statusHeader} ${status(r)} for a personal request`);
      return r;
    };
    const mine = `/v1/users/7/candidates`;
    const a = await get(mine, s.tokens['7']);
    assert.equal(a.status, 200);
    const d7 = a.headers['x-edgewise-bundle-digest'];
    const b = await get(mine, s.tokens['7']);
    assert.equal(b.status, 200);
    assert.equal((await get(mine, s.tokens['8'])).status, 403, "user 8's token on user 7's bundle");
    assert.equal((await get(mine)).status, 401, "no token on user 7's bundle");
    const other = await get('/v1/users/8/candidates', s.tokens['8']);
    assert.equal(other.status, 200);
    const d8 = other.headers['x-edgewise-bundle-digest'];
    assert.notEqual(d8, d7);
    assert.notEqual(d8, b.headers['x-edgewise-bundle-digest']);
    // The same bundle by its digest: private, so never stored either.
    const byDigest = `/v1/bundles/${d7}`;
    const own = await get(byDigest, s.tokens['7']);
    assert.equal(own.status, 200);
    assert.equal(own.headers['x-edgewise-bundle-digest'], d7);
    assert.match(own.headers['cache-control'], /private/);
    assert.equal((await get(byDigest)).status, 401, 'a personal bundle by digest without a token');
    assert.equal((await get(byDigest, s.tokens['8'])).status, 403, "a personal bundle by digest with user 8's token");
    assert.equal((await get(mine, s.tokens['8'])).status, 403, "user 8's token on user 7's bundle, again");
    // Every one of them went to the origin.
    const asked = tap.requests('/v1/users/', since).length + tap.requests('/v1/bundles/', since).length;
    assert.equal(asked, seen.length, 'each personal request reaches the origin');
    // A token on a public bundle bypasses the cache as well.
    await request(c.url + regional(1));
    const withToken = await request(c.url + regional(1), { headers: bearer(s.tokens['7']) });
    assert.ok(PERSONAL.has(withToken.headers[c.statusHeader]), `a regional bundle with a token: ${withToken.headers[c.statusHeader]}`);
    for (const line of seen) log(`${kind}: ${line}`);
    log(`${kind}: ${seen.length} personal requests, ${asked} reached the origin; digests user 7 ${d7.slice(0, 12)}… / ${b.headers['x-edgewise-bundle-digest'].slice(0, 12)}…, user 8 ${d8.slice(0, 12)}…`);
  });
}

for (const kind of ['nginx', 'varnish']) {
  test(`${kind}: 50 concurrent clients, one origin fetch per s-maxage window`, async () => {
    const [s, c, tap] = [await stack(), await caches[kind](), await taps[kind]()];
    const path = regional(REGIONS[kind].burst);
    const before = await routeCounts(s.origin, REGIONAL_ROUTE);
    const since = Date.now();
    const wave = async () => {
      const t0 = performance.now();
      const rs = await Promise.all(Array.from({ length: 50 }, () => request(c.url + path)));
      return { rs, ms: performance.now() - t0 };
    };
    const first = await wave();
    const second = await wave();
    const after = await routeCounts(s.origin, REGIONAL_ROUTE);
    const fetched = total(after) - total(before);
    for (const { rs } of [first, second]) {
      for (const r of rs) assert.equal(r.status, 200);
      assert.equal(new Set(rs.map((r) => r.headers['x-edgewise-bundle-digest'])).size, 1, 'one bundle for everyone');
    }
    const cc = cacheControl(first.rs[0].headers['cache-control']);
    const elapsed = (Date.now() - since) / 1000;
    assert.ok(elapsed < cc['s-maxage'], `both waves within one s-maxage window (${elapsed} s)`);
    log(`${kind}: wave 1 (cold): ${JSON.stringify(histogram(first.rs.map((r) => r.headers[c.statusHeader])))} in ${first.ms.toFixed(0)} ms`);
    log(`${kind}: wave 2 (warm): ${JSON.stringify(histogram(second.rs.map((r) => r.headers[c.statusHeader])))} in ${second.ms.toFixed(0)} ms`);
    log(`${kind}: 100 requests in ${elapsed.toFixed(1)} s (s-maxage ${cc['s-maxage']} s): origin ${REGIONAL_ROUTE} count +${fetched} (metrics), tap saw ${tap.requests(path, since).length}; ${first.rs[0].body.length} bytes per bundle`);
    assert.equal(fetched, 1, 'the origin built and sent the bundle once');
    assert.equal(tap.requests(path, since).length, 1, 'this cache asked the origin once');
    assert.ok(second.rs.every((r) => r.headers[c.statusHeader] === 'HIT'), 'the second wave is all hits');
  });
}

test('varnish: a Surrogate-Key purge (xkey) empties exactly the tagged objects', async () => {
  const [c, tap] = [await caches.varnish(), await taps.varnish()];
  const { purged, kept } = REGIONS.varnish;
  const xcache = async (r) => (await request(c.url + regional(r))).headers['x-cache'];
  const digests = {};
  for (const r of [purged, kept]) {
    digests[r] = (await request(c.url + regional(r))).headers['x-edgewise-bundle-digest'];
    assert.equal(await xcache(r), 'HIT', `region ${r} is cached`);
  }
  const tags = (await request(c.url + regional(purged))).headers['surrogate-key'];
  assert.match(tags, new RegExp(`\\bregion-${purged}\\b`));
  // From another loopback address the ACL refuses it.
  const refused = await request(`${c.url}/`, { method: 'PURGE', headers: { 'xkey-purge': `region-${purged}` }, localAddress: '127.0.0.2' });
  assert.equal(refused.status, 403, 'PURGE from outside the ACL');
  assert.equal(await xcache(purged), 'HIT', 'a refused purge purges nothing');
  assert.equal((await request(`${c.url}/`, { method: 'PURGE' })).status, 400, 'PURGE without a key');
  const since = Date.now();
  const p = await request(`${c.url}/`, { method: 'PURGE', headers: { 'xkey-purge': `region-${purged}` } });
  assert.equal(p.status, 200);
  const n = Number(/Purged (\d+)/.exec(p.body.toString())?.[1]);
  assert.ok(n >= 1, `purged ${n} objects`);
  assert.equal(await xcache(purged), 'MISS', `region ${purged} after the purge`);
  assert.equal(await xcache(kept), 'HIT', `region ${kept} after the purge of region-${purged}`);
  assert.equal(tap.requests(regional(purged), since).length, 1, 'one refetch of the purged region');
  assert.equal(tap.requests(regional(kept), since).length, 0, 'none of the other');
  // A soft purge keeps the copy for grace: served stale once, refreshed behind it.
  const sp = await request(`${c.url}/`, { method: 'PURGE', headers: { 'xkey-softpurge': `region-${kept}` } });
  assert.match(sp.body.toString(), /Softpurged [1-9]/);
  assert.equal(await xcache(kept), 'STALE', 'after a soft purge: the stale copy');
  const refresh = await until('the background refetch', () => tap.requests(regional(kept), since)[0]?.status && tap.requests(regional(kept), since)[0], 5000);
  // The origin still has that bundle (its s-maxage has not run out): the conditional refetch gets a 304.
  assert.equal(entity(refresh.inm), digests[kept], 'the refetch carried the stored ETag');
  assert.equal(refresh.status, 304, 'the origin confirms the soft-purged copy');
  assert.equal(await until('a fresh copy', async () => ((await xcache(kept)) === 'HIT' ? 'HIT' : null), 5000), 'HIT');
  log(`varnish: surrogate keys "${tags}"; PURGE xkey-purge: region-${purged} → "${p.body.toString().trim()}"; region ${purged} MISS, region ${kept} HIT; softpurge region-${kept} → "${sp.body.toString().trim()}", STALE, background If-None-Match → origin ${refresh.status}, then HIT; PURGE from 127.0.0.2 → ${refused.status}`);
});

test('stale-if-error beyond stale-while-revalidate (stub origin with windows of seconds)', async () => {
  // The stack's origin sends s-maxage=60, stale-while-revalidate=30,
  // stale-if-error=600 (its defaults; the stack does not let a test change
  // them): too long to cross here. A stub with the origin's header shape and
  // windows of seconds checks that each cache keeps to all three. nginx keeps
  // time in whole seconds, hence the margins.
  const windows = { sMaxage: 1, swr: 1, sie: 4 };
  const pastSwr = (windows.sMaxage + windows.swr + 1) * 1000 + 50;
  const pastSie = (windows.sMaxage + windows.sie + 1) * 1000 + 50;
  const stub = await startStubOrigin(windows);
  try {
    const started = await Promise.allSettled([startNginx('stub', stub), startVarnish('stub', stub)]);
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    const runs = started.map((r, i) => ({ c: r.value, path: regional(1 + i), steps: [] }));
    const get = async (run, what) => {
      const r = await request(run.c.url + run.path);
      const g = { status: r.status, digest: r.headers['x-edgewise-bundle-digest'], cache: r.headers[run.c.statusHeader] };
      run.steps.push(`+${((Date.now() - run.t0) / 1000).toFixed(2)} s, ${what}: ${g.status} ${g.cache ?? '-'} ${g.digest ?? ''}`);
      return g;
    };
    // 1. Both warm.
    for (const run of runs) {
      run.t0 = Date.now();
      const g = await get(run, 'warm');
      assert.equal(g.status, 200);
      run.v1 = g.digest;
    }
    // 2. The origin answers 503 past s-maxage + stale-while-revalidate.
    stub.state.mode = 'error';
    await sleep(pastSwr);
    for (const run of runs) {
      const g = await get(run, 'origin answers 503');
      if (run.c.kind === 'varnish') {
        assert.equal(g.status, 200, 'varnish: stale-if-error on a 503');
        assert.equal(g.digest, run.v1);
        assert.equal(g.cache, 'STALE');
      } else {
        // nginx applies stale-if-error to connection errors and timeouts only
        // (ops/nginx/edgewise.conf.template, proxy_cache_use_stale).
        assert.equal(g.status, 503, 'nginx passes a 5xx answer on (documented)');
      }
    }
    // 3. The origin is back: past stale-while-revalidate, a fresh copy, not the stale one.
    stub.state.mode = 'up';
    stub.state.version = 2;
    for (const run of runs) {
      const g = await get(run, 'origin up again');
      assert.equal(g.status, 200);
      assert.equal(g.digest, 'stub-region-' + run.path.split('/')[3] + '-v2', `${run.c.kind}: a fresh copy`);
      run.t1 = Date.now();
    }
    // 4. The origin goes down: stale within stale-if-error, past stale-while-revalidate...
    stub.close();
    await sleep(pastSwr);
    for (const run of runs) {
      const g = await get(run, 'origin down');
      assert.equal(g.status, 200, `${run.c.kind}: stale-if-error with the origin down`);
      assert.equal(g.cache, 'STALE');
      assert.match(g.digest, /-v2$/);
    }
    // 5. ...and an error after it.
    await sleep(Math.max(0, Math.max(...runs.map((r) => r.t1)) + pastSie - Date.now()));
    for (const run of runs) {
      const g = await get(run, 'origin down, past stale-if-error');
      assert.ok(g.status >= 500, `${run.c.kind}: past stale-if-error the copy must not be served (got ${g.status})`);
    }
    for (const run of runs) {
      for (const s of run.steps) log(`${run.c.kind} (stub: s-maxage=${windows.sMaxage}, swr=${windows.swr}, sie=${windows.sie}): ${s}`);
    }
    await Promise.all(runs.map((r) => r.c.stop()));
  } finally {
    stub.close();
  }
});

test('after s-maxage: If-None-Match revalidation, then stale while the origin is down', async (t) => {
  const s = await stack();
  const kinds = Object.keys(warmed);
  assert.deepEqual(kinds.sort(), ['nginx', 'varnish'], `both caches started and warmed: ${setupErrors.join('; ')}`);
  const sMaxage = Math.max(...kinds.map((k) => cacheControl(warmed[k].stale.cc)['s-maxage']));
  const maxAge = Math.max(...kinds.map((k) => cacheControl(warmed[k].manifest.cc)['max-age']));
  const swr = cacheControl(warmed.nginx.stale.cc)['stale-while-revalidate'];
  const warmedAt = Math.max(...kinds.map((k) => warmed[k].at));
  const wait = warmedAt + Math.max(sMaxage, maxAge) * 1000 + 1500 - Date.now();
  log(`origin windows: ${warmed.nginx.stale.cc}; manifest ${warmed.nginx.manifest.cc}; waiting ${(wait / 1000).toFixed(1)} s more for them to expire`);
  assert.ok(swr * 1000 > 5000, 'stale-while-revalidate leaves time for these checks');
  await sleep(Math.max(0, wait));
  const before304 = await routeCounts(s.origin, MANIFEST_ROUTE);
  const since = Date.now();

  for (const kind of kinds) {
    await t.test(`${kind}: revalidates with If-None-Match, and answers a client's If-None-Match with 304`, async () => {
      const [c, tap] = [await caches[kind](), await taps[kind]()];
      const w = warmed[kind];
      const st = (r) => r.headers[c.statusHeader];
      // The public model manifest: its ETag stays while the model does, so the origin answers 304.
      const m1 = await request(`${c.url}${MANIFEST_ROUTE}`);
      assert.equal(m1.status, 200);
      assert.ok(FROM_CACHE.has(st(m1)), `${MANIFEST_ROUTE}: ${st(m1)}`);
      const reval = await until('the manifest revalidation', () => tap.requests(MANIFEST_ROUTE, since)[0]?.status && tap.requests(MANIFEST_ROUTE, since)[0], 5000);
      assert.equal(strong(reval.inm), strong(w.manifest.etag), 'the cache sent its stored ETag');
      assert.equal(reval.status, 304, 'the origin confirmed the stored copy');
      const m2 = await until('the revalidated manifest', async () => {
        const r = await request(`${c.url}${MANIFEST_ROUTE}`);
        return st(r) === 'HIT' && r;
      });
      // The same representation: the origin's 304 names the one its 200 did ("<digest>-gzip" for gzip).
      assert.equal(m2.headers.etag, m1.headers.etag, 'the stored ETag survives the origin\'s 304');
      // The regional bundle: served stale within stale-while-revalidate while one conditional request refreshes it.
      const path = regional(REGIONS[kind].revalidate);
      const r1 = await request(c.url + path);
      assert.equal(r1.status, 200);
      assert.equal(r1.headers['x-edgewise-bundle-digest'], w.revalidate.digest, 'the stale copy');
      assert.equal(st(r1), 'STALE');
      const cond = await until('the bundle revalidation', () => tap.requests(path, since)[0]?.status && tap.requests(path, since)[0], 5000);
      assert.equal(strong(cond.inm), strong(w.revalidate.etag), 'the cache revalidated with its stored ETag');
      // 304 when the origin still has that bundle; 200 with a new one when it has rebuilt it.
      assert.ok(cond.status === 304 || (cond.status === 200 && cond.digest !== w.revalidate.digest), `origin answer ${cond.status}`);
      const r2 = await until('the refreshed bundle', async () => {
        const r = await request(c.url + path);
        return st(r) === 'HIT' && r;
      });
      const expected = cond.status === 304 ? w.revalidate.digest : cond.digest;
      assert.equal(r2.headers['x-edgewise-bundle-digest'], expected);
      const r3 = await request(c.url + path, { headers: { 'if-none-match': r2.headers.etag } });
      assert.equal(r3.status, 304, "a client's If-None-Match");
      assert.equal(r3.body.length, 0);
      assert.equal(tap.requests(path, since).length, 1, 'one origin request for the refresh');
      log(`${kind}: ${MANIFEST_ROUTE} after max-age: ${st(m1)}, cache → origin If-None-Match ${reval.inm} → ${reval.status}, then ${st(m2)}`);
      log(`${kind}: ${path} after s-maxage: ${st(r1)} (old digest), cache → origin If-None-Match ${cond.inm.slice(0, 14)}…" → ${cond.status}${cond.status === 200 ? ` (the origin rebuilt the bundle: new digest ${cond.digest.slice(0, 12)}…)` : ''}, then ${st(r2)}; client If-None-Match → ${r3.status} (${st(r3)})`);
    });
  }
  const after304 = await routeCounts(s.origin, MANIFEST_ROUTE);
  log(`origin ${MANIFEST_ROUTE} 304s: +${(after304['304'] ?? 0) - (before304['304'] ?? 0)} (metrics); all regional bundle requests by status (whole run): ${JSON.stringify(await routeCounts(s.origin, REGIONAL_ROUTE))}`);
  assert.ok((after304['304'] ?? 0) - (before304['304'] ?? 0) >= kinds.length, 'the origin counted a 304 per cache');

  // The origin goes away (the stack exits when its stdin closes; the taps refuse connections).
  await s.stop();
  for (const kind of kinds) await (await taps[kind]()).close();
  await assert.rejects(request(s.origin), 'the origin is down');
  for (const kind of kinds) {
    await t.test(`${kind}: serves the stale bundle while the origin is down`, async () => {
      const c = await caches[kind]();
      const w = warmed[kind];
      const path = regional(REGIONS[kind].stale);
      const rs = [];
      for (let i = 0; i < 5; i++) rs.push(await request(c.url + path));
      for (const r of rs) {
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-edgewise-bundle-digest'], w.stale.digest, 'the bundle stored before the origin went down');
        assert.ok(FROM_CACHE.has(r.headers[c.statusHeader]), r.headers[c.statusHeader]);
      }
      log(`${kind}: origin down, copy ${((Date.now() - w.at) / 1000).toFixed(1)} s old (s-maxage ${sMaxage} s): ${JSON.stringify(histogram(rs.map((r) => `${r.status} ${r.headers[c.statusHeader]}`)))}, ${rs[0].body.length} bytes, digest ${w.stale.digest.slice(0, 12)}…`);
    });
  }
});
