// The event queue (`EventQueue`, behind `track()`) against a local HTTP
// server on a real socket that answers as the origin's `POST /v1/events`
// does (a status per event), and misbehaves on purpose: outages, expired
// tokens, refusals. Nothing handed to the queue may vanish without either the
// origin's acknowledgement or an `error` event.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { EventQueue, EdgewiseError } from 'edgewise';

/** Every fake origin and queue, closed when the file ends, pass or fail. */
const servers = [];
const queues = [];
after(async () => {
  for (const q of queues) q.close();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
});

/** A queue that `after` closes. @param {ConstructorParameters<typeof EventQueue>[0]} options */
function queue(options) {
  const q = new EventQueue(options);
  queues.push(q);
  return q;
}

/** A fake origin: `handler(lines, req, n)` → [status, body]. Records every request. */
async function origin(handler) {
  const requests = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const lines = body.split('\n').filter(Boolean);
      requests.push({ lines, auth: req.headers.authorization, type: req.headers['content-type'], url: req.url });
      const [status, reply] = handler(lines, req, requests.length);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(reply));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  servers.push(server);
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, requests, close: () => new Promise((r) => server.close(r)) };
}

/** The origin's answer when every event is applied. */
const applied = (lines) => [200, {
  accepted: lines.length, rejected: 0,
  results: lines.map((l, index) => ({ index, event_id: JSON.parse(l).event_id, status: 'applied' })),
}];

const until = async (cond, ms = 5000) => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
};

const ev = (item, extra = {}) => ({ user: 7, item, kind: 'click', region: 3, time: 1_700_000_000_000 + item, ...extra });

test('events go in batches, as NDJSON, with unique idempotency ids and exact u64 ids', async () => {
  const o = await origin(applied);
  const q = queue({ endpoint: o.url, batch: 3, flushMs: 60_000 });
  let flushed = 0;
  q.addEventListener('flushed', (e) => (flushed += e.detail));
  const ids = [];
  for (let i = 0; i < 7; i++) ids.push(q.push(ev(i)));
  ids.push(q.push({ user: 2n ** 60n, item: 2n ** 64n - 1n, kind: 'dwell', dwellMs: 1500, region: 0, time: 5 }));
  await q.flush();
  assert.equal(q.pending, 0);
  assert.equal(flushed, 8);
  // A batch holds one user's events: the last event is another user's.
  assert.deepEqual(o.requests.map((r) => r.lines.length), [3, 3, 1, 1]);
  assert.equal(o.requests[0].url, '/v1/events');
  assert.equal(o.requests[0].type, 'application/x-ndjson');
  const sent = o.requests.flatMap((r) => r.lines);
  assert.equal(new Set(sent.map((l) => JSON.parse(l).event_id)).size, 8, 'every event has its own id');
  assert.deepEqual(sent.map((l) => JSON.parse(l).event_id), ids);
  assert.match(sent[7], /"user":1152921504606846976,"item":18446744073709551615,"kind":"dwell"/);
  assert.match(sent[7], /"dwell_ms":1500/);
  await o.close();
});

test('each batch is sent with its own user\'s token, so a switch of user never mixes them', async () => {
  const o = await origin(applied);
  const asked = [];
  const q = queue({
    endpoint: o.url, batch: 10, flushMs: 60_000, storage: null,
    token: (refresh, user) => {
      asked.push([refresh, user]);
      return `token-of-${user}`;
    },
  });
  // User 7 acts, signs out while the events are still queued, and user 8 acts.
  q.push(ev(1));
  q.push(ev(2));
  q.push(ev(3, { user: 8 }));
  q.push(ev(4));
  await q.flush();
  assert.deepEqual(asked, [[false, 7n], [false, 8n], [false, 7n]]);
  assert.deepEqual(o.requests.map((r) => [r.auth, r.lines.map((l) => JSON.parse(l).user)]), [
    ['Bearer token-of-7', [7, 7]], ['Bearer token-of-8', [8]], ['Bearer token-of-7', [7]],
  ]);
  await o.close();
});

test('a user with no token any more loses only their own batch, said so, after a few tries', async () => {
  const o = await origin(applied);
  const q = queue({
    endpoint: o.url, batch: 10, flushMs: 60_000, backoffMs: 5, maxBackoffMs: 10, storage: null,
    token: (_refresh, user) => {
      if (user === 7n) throw new Error('signed out');
      return `token-of-${user}`;
    },
  });
  const errors = [];
  q.addEventListener('error', (e) => errors.push(e.detail));
  q.push(ev(1));
  q.push(ev(2, { user: 8 }));
  await q.flush();
  await until(() => q.pending === 0);
  assert.deepEqual(errors.map((e) => e.code), ['no-token']);
  assert.match(errors[0].message, /user 7 after 3 tries .*signed out.*1 event\(s\) dropped/);
  assert.deepEqual(o.requests.map((r) => [r.auth, r.lines.map((l) => JSON.parse(l).user)]), [['Bearer token-of-8', [8]]]);
  await o.close();
});

test('an outage is retried with backoff, resending the same ids, and nothing is lost', async () => {
  const o = await origin((lines, _req, n) => (n <= 3 ? [503, { error: 'down' }] : applied(lines)));
  const q = queue({ endpoint: o.url, batch: 10, flushMs: 60_000, backoffMs: 10, maxBackoffMs: 40 });
  const ids = [q.push(ev(1)), q.push(ev(2))];
  await q.flush();
  assert.equal(q.pending, 2, 'still queued after the first failure');
  await until(() => q.pending === 0);
  assert.equal(o.requests.length, 4);
  for (const r of o.requests) assert.deepEqual(r.lines.map((l) => JSON.parse(l).event_id), ids, 'the same ids on every try');
  await o.close();
});

test('an unreachable origin keeps the events queued until it answers', async () => {
  const o = await origin(applied);
  const { url } = o;
  await o.close();
  const q = queue({ endpoint: url, batch: 10, flushMs: 60_000, backoffMs: 10, maxBackoffMs: 20 });
  q.push(ev(1));
  await q.flush();
  assert.equal(q.pending, 1);
  const errors = [];
  q.addEventListener('error', (e) => errors.push(e.detail));
  await new Promise((r) => setTimeout(r, 60));
  assert.equal(q.pending, 1, 'nothing dropped while the origin is down');
  assert.deepEqual(errors, [], 'an outage is not an error: the events wait');
  q.close();
});

test('an expired token is refreshed once and the batch resent', async () => {
  const o = await origin((lines, req) => (req.headers.authorization === 'Bearer fresh' ? applied(lines) : [401, { error: 'expired' }]));
  const asked = [];
  const q = queue({ endpoint: o.url, flushMs: 60_000, token: (refresh) => (asked.push(refresh), refresh ? 'fresh' : 'stale') });
  q.push(ev(1));
  await q.flush();
  assert.equal(q.pending, 0);
  assert.deepEqual(asked, [false, true]);
  assert.deepEqual(o.requests.map((r) => r.auth), ['Bearer stale', 'Bearer fresh']);
  await o.close();
});

test('refusals are reported as error events, never silently dropped', async () => {
  // The origin refuses the second event of the batch, then a whole batch with 403.
  const o = await origin((lines, _req, n) => {
    if (n === 2) return [403, { error: 'not your events' }];
    const [, body] = applied(lines);
    body.results[1] = { index: 1, status: 'error', error: 'time is too far in the future' };
    return [200, { ...body, accepted: lines.length - 1, rejected: 1 }];
  });
  const q = queue({ endpoint: o.url, batch: 3, flushMs: 60_000 });
  const errors = [];
  q.addEventListener('error', (e) => errors.push(e.detail));
  let flushed = 0;
  q.addEventListener('flushed', (e) => (flushed += e.detail));
  const ids = [q.push(ev(1)), q.push(ev(2)), q.push(ev(3)), q.push(ev(4))];
  await q.flush();
  assert.equal(q.pending, 0);
  assert.equal(flushed, 2);
  assert.equal(errors.length, 2);
  assert.ok(errors.every((e) => e instanceof EdgewiseError));
  assert.equal(errors[0].code, 'event-rejected');
  assert.match(errors[0].message, new RegExp(ids[1]));
  assert.equal(errors[1].code, 'http-403');
  await o.close();
});

test('a full queue refuses with an error event; bad events throw at once', async () => {
  const q = queue({ endpoint: 'http://127.0.0.1:9', maxQueue: 2, flushMs: 60_000 });
  const errors = [];
  q.addEventListener('error', (e) => errors.push(e.detail.code));
  assert.ok(q.push(ev(1)));
  assert.ok(q.push(ev(2)));
  assert.equal(q.push(ev(3)), null);
  assert.deepEqual(errors, ['queue-full']);
  assert.equal(q.pending, 2);
  for (const bad of [ev(4, { kind: 'purchase' }), ev(4, { region: 32 }), ev(4, { user: -1 }), ev(4, { item: 2n ** 64n }),
    ev(4, { item: 2 ** 60 }), ev(4, { dwellMs: -5 })]) {
    assert.throws(() => q.push(bad), (e) => e instanceof EdgewiseError && e.code === 'bad-event', JSON.stringify(bad, (_, v) => (typeof v === 'bigint' ? String(v) : v)));
  }
  assert.throws(() => new EventQueue({}), (e) => e.code === 'bad-options');
  q.close();
});

test('unsent events wait in storage for the next page, which sends them with the same ids', async () => {
  // A Storage stand-in (Node has no localStorage): the queue uses only these three calls.
  const map = new Map();
  const storage = {
    getItem: (k) => (map.has(k) ? map.get(k) : null),
    setItem: (k, v) => void map.set(k, String(v)),
    removeItem: (k) => void map.delete(k),
  };
  const o = await origin(applied);
  await o.close(); // the origin is down while the first page lives
  const first = queue({ endpoint: o.url, storage, flushMs: 60_000 });
  const ids = [
    first.push({ user: 2n ** 63n + 5n, item: 9, kind: 'like', region: 1 }),
    first.push({ user: 2n ** 63n + 5n, item: 10, kind: 'dwell', dwellMs: 1500, region: 1 }),
  ];
  assert.equal(first.persist(), 2, 'what pagehide writes');
  first.close();

  // The next page: the origin is back on another port, so the stored queue
  // is moved to that endpoint's key, as a page of the same site would find it.
  const back = await origin(applied);
  const key = `edgewise-events:${new URL('v1/events', `${back.url}/`)}`;
  map.set(key, map.get(first.storageKey));
  map.delete(first.storageKey);
  const second = queue({ endpoint: back.url, storage });
  assert.equal(second.pending, 2, 'restored at once');
  await until(() => second.pending === 0);
  const sent = back.requests.flatMap((r) => r.lines.map((l) => JSON.parse(l)));
  assert.deepEqual(sent.map((e) => e.event_id), ids, 'the same idempotency ids');
  assert.equal(back.requests[0].lines[0].includes(`"user":${2n ** 63n + 5n}`), true, 'u64 ids keep every digit');
  assert.equal(sent[1].dwell_ms, 1500);
  assert.equal(map.size, 0, 'nothing left in storage once the origin took them');
});
