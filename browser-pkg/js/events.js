// The interaction queue behind `track()`: events go to the origin's
// `POST /v1/events` in batches, each with an idempotency id (`event_id`) so a
// retried batch never counts twice. Nothing the page handed over is dropped
// silently: an event leaves the queue only when the origin applied it, said it
// was a duplicate, or refused it, and a refusal (or a full queue) is
// dispatched as an `error` event carrying an `EdgewiseError`. On `pagehide`
// the queue goes out in a `keepalive` request and is also written to
// `localStorage`; the next page's queue for the same endpoint sends it again
// with the same ids, so a page closed while offline loses nothing (and a
// batch that did arrive only counts as a duplicate).

import { EdgewiseError, u64 as checkU64 } from './error.js';

const KINDS = new Set(['impression', 'click', 'like', 'skip', 'hide', 'dwell']);
/** How many times in a row a user's token may fail before their batch is dropped. */
const TOKEN_TRIES = 3;

/** @param {unknown} v @param {string} what */
const u64 = (v, what) => checkU64(v, what, 'bad-event');

/** `localStorage`, where the page may use it (reading it throws in sandboxed frames). */
function defaultStorage() {
  try {
    return /** @type {any} */ (globalThis).localStorage ?? null;
  } catch {
    return null;
  }
}

/** A random idempotency id. */
function eventId() {
  const c = /** @type {any} */ (globalThis).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const b = new Uint8Array(16);
  c.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * One event as the origin reads it. Ids are written as JSON numbers from
 * their BigInt text, so ids above 2^53 keep every digit.
 * @param {{ eventId: string, user: bigint, item: bigint, kind: string, time: number, region: number, dwellMs?: number }} e
 */
function json(e) {
  const dwell = e.kind === 'dwell' ? `,"dwell_ms":${e.dwellMs ?? 0}` : '';
  return `{"event_id":${JSON.stringify(e.eventId)},"user":${e.user},"item":${e.item},"kind":"${e.kind}",` +
    `"time":${e.time},"region":${e.region}${dwell}}`;
}

/** A batch as the NDJSON body `POST /v1/events` reads. @param {Parameters<typeof json>[0][]} batch */
const ndjson = (batch) => batch.map(json).join('\n') + '\n';

/**
 * The queue. Events: `error` (an `ErrorEvent`-like `CustomEvent` whose
 * `detail` is the `EdgewiseError`) and `flushed` (`detail`: how many events
 * the origin took).
 */
export class EventQueue extends EventTarget {
  /** @type {Array<{ eventId: string, user: bigint, item: bigint, kind: string, time: number, region: number, dwellMs?: number, attempts: number }>} */
  #queue = [];
  #timer = null;
  #timerAt = 0;
  #flushing = null;
  #failures = 0;
  #closed = false;
  /** Consecutive token failures per user. @type {Map<bigint, number>} */
  #tokenFailures = new Map();

  /**
   * `token(refresh, user)` returns `user`'s token (each batch holds one user's
   * events, so events queued before a sign-out or a switch of user go out
   * with their own user's token); it is called with `refresh` true after a
   * 401, to get a fresh one.
   * @param {{ endpoint: string | URL, token?: (refresh: boolean, user: bigint) => string | Promise<string>, fetch?: typeof fetch,
   *   batch?: number, maxQueue?: number, flushMs?: number, backoffMs?: number, maxBackoffMs?: number,
   *   timeoutMs?: number, storage?: Storage | null }} options
   *   `storage`: where unsent events wait between page loads (default
   *   `localStorage` where the page may use it; `null`: nowhere).
   */
  constructor(options) {
    super();
    if (!options?.endpoint) throw new EdgewiseError('bad-options', 'the event queue needs an endpoint');
    this.url = new URL('v1/events', String(options.endpoint).replace(/\/?$/, '/')).toString();
    this.token = options.token;
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.batch = options.batch ?? 100;
    this.maxQueue = options.maxQueue ?? 10_000;
    this.flushMs = options.flushMs ?? 2_000;
    this.backoffMs = options.backoffMs ?? 500;
    this.maxBackoffMs = options.maxBackoffMs ?? 30_000;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    /** The last token used per user, for the `pagehide` request (which cannot wait for a fresh one). @type {Map<bigint, string>} */
    this.lastTokens = new Map();
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.storageKey = `edgewise-events:${this.url}`;
    this.#restore();
    const hide = () => this.#unload();
    if (typeof globalThis.addEventListener === 'function') globalThis.addEventListener('pagehide', hide);
  }

  /** Events a previous page left unsent, queued first, with their ids. */
  #restore() {
    let saved = [];
    try {
      const text = this.storage?.getItem(this.storageKey);
      this.storage?.removeItem(this.storageKey);
      saved = text ? JSON.parse(text) : [];
    } catch {
      saved = []; // storage that cannot be read holds nothing for us
    }
    if (!Array.isArray(saved)) return;
    for (const e of saved.slice(0, this.maxQueue)) {
      try {
        if (typeof e?.eventId !== 'string' || !KINDS.has(e.kind)) continue;
        this.#queue.push({ eventId: e.eventId, user: u64(BigInt(e.user), 'user'), item: u64(BigInt(e.item), 'item'),
          kind: e.kind, time: Number(e.time), region: Number(e.region), dwellMs: Number(e.dwellMs ?? 0), attempts: 0 });
      } catch {
        // an entry this version cannot read is skipped
      }
    }
    if (this.#queue.length > 0) this.#schedule(0);
  }

  /**
   * Writes the unsent events to `storage` (as `pagehide` does), for the next
   * page's queue to send. Returns how many were written.
   */
  persist() {
    if (!this.storage) return 0;
    const plain = this.#queue.map((e) => ({ ...e, user: String(e.user), item: String(e.item) }));
    try {
      if (plain.length === 0) this.storage.removeItem(this.storageKey);
      else this.storage.setItem(this.storageKey, JSON.stringify(plain));
      return plain.length;
    } catch (e) {
      this.#error(new EdgewiseError('queue-full', `${plain.length} unsent event(s) could not be stored: ${e?.message ?? e}`));
      return 0;
    }
  }

  /** Events waiting to be sent. */
  get pending() {
    return this.#queue.length;
  }

  /** @param {EdgewiseError} err */
  #error(err) {
    this.dispatchEvent(new CustomEvent('error', { detail: err }));
  }

  /**
   * Queues an event; returns its idempotency id, or `null` when the queue is
   * full (an `error` event with code `queue-full` says so).
   * @param {{ user: bigint | number, item: bigint | number, kind: string, region: number, time?: number, dwellMs?: number }} event
   */
  push(event) {
    if (!KINDS.has(event.kind)) {
      throw new EdgewiseError('bad-event', `unknown event kind ${String(event.kind)}: expected ${[...KINDS].join(', ')}`);
    }
    if (!Number.isInteger(event.region) || event.region < 0 || event.region > 31) {
      throw new EdgewiseError('bad-event', `region must be 0..=31, not ${String(event.region)}`);
    }
    const time = event.time ?? Date.now();
    if (!Number.isSafeInteger(time) || time < 0) throw new EdgewiseError('bad-event', `time must be ms since the epoch`);
    const dwellMs = event.dwellMs ?? 0;
    if (!Number.isInteger(dwellMs) || dwellMs < 0 || dwellMs > 0xffff_ffff) {
      throw new EdgewiseError('bad-event', `dwellMs must be a u32, not ${String(dwellMs)}`);
    }
    const e = { eventId: eventId(), user: u64(event.user, 'user'), item: u64(event.item, 'item'), kind: event.kind,
      time, region: event.region, dwellMs, attempts: 0 };
    if (this.#queue.length >= this.maxQueue) {
      this.#error(new EdgewiseError('queue-full', `the event queue holds ${this.maxQueue} events; this one was not queued`));
      return null;
    }
    this.#queue.push(e);
    if (this.#queue.length >= this.batch) void this.flush();
    else this.#schedule(this.flushMs);
    return e.eventId;
  }

  /**
   * Flushes in `ms`, or sooner if a flush is already due sooner.
   * @param {number} ms
   */
  #schedule(ms) {
    if (this.#closed) return;
    const at = Date.now() + ms;
    if (this.#timer !== null) {
      if (this.#timerAt <= at) return;
      clearTimeout(this.#timer);
    }
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.flush();
    }, ms);
    // In Node, a pending retry must not keep the process alive.
    /** @type {any} */ (this.#timer).unref?.();
  }

  /**
   * Forgets the token last used for `user` (sign-out): a `pagehide` no longer
   * sends their events with it. Their queued events stay, sent with whatever
   * `token(refresh, user)` gives next.
   * @param {bigint} user
   */
  forgetUser(user) {
    this.lastTokens.delete(user);
    this.#tokenFailures.delete(user);
  }

  /** Stops the timers (queued events stay queued; `flush()` still sends them). */
  close() {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#closed = true;
  }

  /**
   * Sends what is queued, a batch at a time, until the queue is empty or the
   * origin is unreachable (then it retries later with backoff). Never rejects.
   */
  flush() {
    if (this.#flushing === null) {
      this.#flushing = this.#drain().finally(() => {
        this.#flushing = null;
      });
    }
    return this.#flushing;
  }

  async #drain() {
    let sent = 0;
    while (this.#queue.length > 0) {
      const batch = this.#head();
      const outcome = await this.#send(batch);
      if (outcome === 'retry') {
        this.#failures += 1;
        const wait = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** (this.#failures - 1));
        this.#schedule(wait * (0.5 + Math.random() / 2));
        break;
      }
      this.#failures = 0;
      sent += outcome;
    }
    if (this.#queue.length === 0) {
      // Nothing left to hand to a later page.
      try {
        this.storage?.removeItem(this.storageKey);
      } catch {
        // nothing was stored where nothing can be read
      }
    }
    if (sent > 0) this.dispatchEvent(new CustomEvent('flushed', { detail: sent }));
  }

  /** The next batch: the events at the head of the queue that belong to its first event's user. */
  #head() {
    const user = this.#queue[0]?.user;
    let n = 0;
    while (n < this.#queue.length && n < this.batch && this.#queue[n].user === user) n += 1;
    return this.#queue.slice(0, n);
  }

  /** @param {boolean} refresh @param {bigint} user */
  async #headers(refresh, user) {
    const h = { 'content-type': 'application/x-ndjson' };
    if (this.token) {
      const t = await this.token(refresh, user);
      if (t) {
        h.authorization = `Bearer ${t}`;
        this.lastTokens.set(user, t);
      }
    }
    return h;
  }

  /**
   * Sends one batch; removes what the origin settled. Returns how many were
   * taken, or `'retry'`.
   * @param {typeof this.#queue} batch
   */
  async #send(batch) {
    const body = ndjson(batch);
    let res;
    for (const refresh of [false, true]) {
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), this.timeoutMs);
      let headers;
      try {
        headers = await this.#headers(refresh, batch[0].user);
      } catch (e) {
        clearTimeout(timer);
        // No token for this user (signed out for good): after a few tries the
        // batch is dropped and said so, rather than holding every later event back.
        const tries = (this.#tokenFailures.get(batch[0].user) ?? 0) + 1;
        this.#tokenFailures.set(batch[0].user, tries);
        if (tries < TOKEN_TRIES) return 'retry';
        this.#tokenFailures.delete(batch[0].user);
        this.#queue.splice(0, batch.length);
        this.#error(new EdgewiseError('no-token',
          `no token for user ${batch[0].user} after ${tries} tries (${e?.message ?? e}): ${batch.length} event(s) dropped`));
        return 0;
      }
      this.#tokenFailures.delete(batch[0].user);
      try {
        res = await this.fetch(this.url, { method: 'POST', headers, body, signal: ctl.signal });
      } catch {
        return 'retry';
      } finally {
        clearTimeout(timer);
      }
      // An expired token: ask for a fresh one once, then resend the same ids.
      if (res.status !== 401 || !this.token) break;
    }
    for (const e of batch) e.attempts += 1;
    if (res.status === 408 || res.status === 429 || res.status >= 500) return 'retry';
    let results = null;
    try {
      results = (await res.json())?.results ?? null;
    } catch {
      results = null;
    }
    if (res.ok || (res.status === 400 && Array.isArray(results))) {
      // A status per event: applied and duplicate are settled, errors are refused.
      const byIndex = new Map((results ?? []).map((r) => [r.index, r]));
      const refused = [];
      batch.forEach((e, i) => {
        const r = byIndex.get(i);
        if (r?.status === 'error') refused.push(`${e.eventId}: ${r.error ?? 'refused'}`);
      });
      this.#queue.splice(0, batch.length);
      if (refused.length > 0) {
        this.#error(new EdgewiseError('event-rejected', `the origin refused ${refused.length} event(s): ${refused.join('; ')}`));
      }
      return batch.length - refused.length;
    }
    // 401 after a fresh token, 403, 413, or another 4xx: this batch will not be
    // taken as it is. Drop it and say so, rather than retrying forever.
    this.#queue.splice(0, batch.length);
    this.#error(new EdgewiseError(`http-${res.status}`, `the origin refused a batch of ${batch.length} event(s) with HTTP ${res.status}`));
    return 0;
  }

  /**
   * On `pagehide`: hands what is queued to the browser in one `keepalive`
   * request, which outlives the page. (`navigator.sendBeacon` cannot carry
   * the `Authorization` header a user token needs; `keepalive` fetch can.)
   */
  #unload() {
    if (this.#queue.length === 0) return;
    this.persist();
    const batch = this.#head();
    const body = ndjson(batch);
    const headers = { 'content-type': 'application/x-ndjson' };
    const t = this.lastTokens.get(batch[0].user);
    if (t) headers.authorization = `Bearer ${t}`;
    try {
      void this.fetch(this.url, { method: 'POST', headers, body, keepalive: true }).catch(() => {});
    } catch {
      // The page is going away; the ids make a later resend harmless.
    }
  }
}
