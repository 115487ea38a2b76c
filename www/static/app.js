// The Edgewise demo page: a MovieLens feed ranked in this browser (WebGPU or
// wasm) by the npm package `edgewise`, from candidate bundles fetched through
// the edge. A preliminary list comes at once from what the device holds, the
// refined personal list replaces it with a stable merge, and every like, skip
// or hide moves the session embedding and re-ranks the unseen items locally.
//
// Layout never shifts: the k rows, the frames log, the notice, the panels and
// the chart all have fixed sizes, and rows are updated in place.
//
// Test hooks (the end-to-end tests read them):
//   window.demo.client, .config; .frames: every frame as the client yields it,
//   plus `display` (the ids shown after it, as strings); .reranks: one
//   { item, kind, ms (click → rendered), before, after, moved, kept } per
//   like/skip/hide; .cls (layout shift); .offline; .feeds (feed runs that
//   finished, failed ones included; runs superseded by a newer one are not
//   counted); .errors (the messages shown). document.body.dataset.state:
//   'loading' until the first frame is rendered, then 'ready' ('error' when
//   the page cannot start); dataset.offline: 'true' while the edge is away.
// Query parameters: ?user=ID (start signed in), ?region=N, ?gpu=off.

import { Edgewise, EdgewiseError } from 'edgewise';
import { drawChart } from './chart.js';
import { explanationPanel } from './explain.js';
import { fmtAgreement, fmtMs, h, messageOf, settle } from './format.js';
import { frameLog } from './framelog.js';
import { buildRow, fillRow } from './rows.js';

/** Lines kept in the frames log. */
const MAX_LOG = 12;
/** Moved items explained after a re-rank. */
const MAX_MOVED = 8;
/** How often the edge's `/livez` is polled while it cannot be reached. */
const POLL_MS = 1500;
/** Longest re-run delay after a reconnect whose feed failed again. */
const MAX_RETRY_MS = 30_000;
/** A token is renewed this long before it expires. */
const TOKEN_MARGIN_MS = 30_000;

// ---------------------------------------------------------------- test hooks

/** @type {{ client: any, config: any, frames: any[], reranks: any[], cls: number, offline: boolean, feeds: number, errors: string[] }} */
const demo = { client: null, config: null, frames: [], reranks: [], cls: 0, shiftsAll: 0, offline: false, feeds: 0, errors: [] };
/** @type {any} */ (window).demo = demo;

// ---------------------------------------------------------------- elements

const $ = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (document.querySelector(sel));
const userSel = /** @type {HTMLSelectElement} */ ($('#user'));
const regionSel = /** @type {HTMLSelectElement} */ ($('#region'));
const refreshBtn = /** @type {HTMLButtonElement} */ ($('#refresh'));
const engineEl = $('#engine');
const noticeEl = $('#notice');
const feedEl = $('#feed');
const feedStatus = $('#feed-status');
const framesLog = $('#frames .frame-log');
const framesSr = $('#frames-sr');
const explainBody = $('#explain .explain-body');
const explainNote = $('#explain-note');
const chartEl = /** @type {SVGSVGElement} */ (/** @type {unknown} */ ($('#chart')));
const clsEl = $('#cls');
const pendingEl = $('#pending');
const fallbacksEl = $('#fallbacks');

// ---------------------------------------------------------------- state

const state = {
  /** @type {any} */ client: null,
  /** @type {any} */ config: null,
  /** @type {Map<string, { title: string, year: number | null, genres: string[] }>} */ catalogue: new Map(),
  k: 20,
  /** @type {number | null} the signed-in user, null: anonymous */ user: null,
  region: 0,
  /** @type {string[]} ids in the order shown */ display: [],
  /** @type {Map<string, any>} the latest data of every item shown */ items: new Map(),
  /** @type {Map<string, 'like' | 'skip' | 'hide'>} */ marks: new Map(),
  /** @type {'regional' | 'personal' | null} */ scope: null,
  /** @type {any} the last frame */ lastFrame: null,
  // feed runs
  runGen: 0,
  /** @type {AbortController | null} */ runCtl: null,
  /** @type {Promise<void>} */ runDone: Promise.resolve(),
  switchGen: 0,
  /** A viewer switch is under way. */
  switching: false,
  /** @type {Promise<void>} the last viewer switch */ switchDone: Promise.resolve(),
  /** Rows ≥ 50 % visible since the list was rendered: the largest index + 1. */
  maxShown: 0,
  /** @type {Promise<void>} re-ranks run one at a time */ rankChain: Promise.resolve(),
  /** @type {'intro' | 'frame' | 'moved' | 'why'} */ explainMode: 'intro',
  // offline handling
  offline: false,
  offlineMessage: '',
  errorMessage: '',
  /** @type {ReturnType<typeof setTimeout> | null} */ pollTimer: null,
  /** @type {ReturnType<typeof setTimeout> | null} */ flashTimer: null,
  retryMs: POLL_MS,
  reconnecting: false,
  // sign-in
  /** @type {Map<number, { token: string, expiresAt: number }>} */ tokens: new Map(),
  /** @type {Map<number, Promise<string>>} */ signIns: new Map(),
};

// ---------------------------------------------------------------- small helpers

/** @param {string} id */
function movie(id) {
  return state.catalogue.get(id) ?? { title: `Movie ${id}`, year: null, genres: [] };
}

/** "Toy Story (1995)". @param {string} id */
function label(id) {
  const m = movie(id);
  return m.year ? `${m.title} (${m.year})` : m.title;
}

/** @param {string} name */
function regionName(name) {
  const r = state.config?.regions?.find((/** @type {any} */ x) => String(x.id) === String(name));
  return r ? r.name : `region ${name}`;
}

// ---------------------------------------------------------------- notice

function showBaseNotice() {
  if (state.offline) setNotice(state.offlineMessage, 'offline');
  else if (state.errorMessage) setNotice(state.errorMessage, 'error');
  else setNotice('', '');
}

/** @param {string} text @param {string} tone */
function setNotice(text, tone) {
  noticeEl.dataset.tone = tone;
  noticeEl.replaceChildren(...(text ? [h('span', { title: text }, text)] : []));
}

/** A short message that gives way to the standing notice after `ms`. @param {string} text @param {string} tone @param {number} [ms] */
function flash(text, tone, ms = 4000) {
  if (state.flashTimer !== null) clearTimeout(state.flashTimer);
  setNotice(text, tone);
  state.flashTimer = setTimeout(() => {
    state.flashTimer = null;
    showBaseNotice();
  }, ms);
}

/** Shows an error (without blocking anything) and records it for the tests. @param {string} text */
function showError(text) {
  demo.errors.push(text);
  flash(text, 'error', 6000);
}

/** @param {unknown} e */
function report(e) {
  showError(messageOf(e));
}

// ---------------------------------------------------------------- CLS

try {
  new PerformanceObserver((list) => {
    for (const entry of /** @type {any[]} */ (list.getEntries())) {
      if (!entry.hadRecentInput) demo.cls += entry.value;
      // Every shift, input-driven or not (tests check feedback moves nothing either).
      demo.shiftsAll += entry.value;
    }
    clsEl.textContent = demo.cls.toFixed(3);
  }).observe({ type: 'layout-shift', buffered: true });
} catch {
  clsEl.textContent = 'n/a';
}

// ---------------------------------------------------------------- the feed rows

/** @type {HTMLLIElement[]} */
let rows = [];

/** Makes the feed exactly `k` rows (the static page reserves 20). @param {number} k */
function buildRows(k) {
  const existing = /** @type {HTMLLIElement[]} */ ([...feedEl.children]);
  for (let i = existing.length; i < k; i++) {
    const li = /** @type {HTMLLIElement} */ (h('li'));
    feedEl.append(li);
    existing.push(li);
  }
  for (const extra of existing.splice(k)) extra.remove();
  existing.forEach(buildRow);
  rows = existing;
  resetShown();
}

/** @param {string} id */
function rowOf(id) {
  const i = state.display.indexOf(id);
  return i < 0 ? null : rows[i] ?? null;
}

/**
 * Writes row `i` from `state.display` in place (`fillRow`).
 * @param {number} i @param {boolean} changed the row now shows another item
 */
function renderRow(i, changed) {
  const id = state.display[i];
  const shown = id === undefined
    ? null
    : { id, it: state.items.get(id) ?? {}, m: movie(id), name: label(id), mark: state.marks.get(id) };
  fillRow(rows[i], shown, changed);
}

/** Re-renders every row; `before` is the order shown until now. @param {string[]} before */
function renderAll(before) {
  rows.forEach((_, i) => renderRow(i, before[i] !== state.display[i]));
}

// ---------------------------------------------------------------- what the user has seen

/** @param {IntersectionObserverEntry[]} entries */
function onVisible(entries) {
  for (const e of entries) {
    if (!e.isIntersecting || e.intersectionRatio < 0.49) continue;
    const li = /** @type {HTMLLIElement} */ (e.target);
    const i = rows.indexOf(li);
    if (i >= 0 && li.dataset.id) state.maxShown = Math.max(state.maxShown, i + 1);
  }
}
const visibility = 'IntersectionObserver' in window ? new IntersectionObserver(onVisible, { threshold: [0.5] }) : null;

/** A new list is on screen: count what is seen from now on. */
function resetShown() {
  state.maxShown = 0;
  if (visibility) {
    visibility.disconnect();
    for (const li of rows) visibility.observe(li);
  }
}

/**
 * How many leading items of the list the user has had on screen: the
 * observer's count, and the rows at least half visible right now (the
 * observer reports a frame late).
 */
function shownNow() {
  let n = state.maxShown;
  if (document.visibilityState === 'visible') {
    const vh = window.innerHeight || document.documentElement.clientHeight;
    rows.forEach((li, i) => {
      if (!li.dataset.id) return;
      const r = li.getBoundingClientRect();
      const visible = Math.min(r.bottom, vh) - Math.max(r.top, 0);
      if (r.height > 0 && visible >= r.height / 2) n = Math.max(n, i + 1);
    });
  }
  state.maxShown = n;
  return Math.max(0, Math.min(n, state.display.length));
}

// ---------------------------------------------------------------- frames log and chart

const record = frameLog({ list: framesLog, sr: framesSr, chart: chartEl, max: MAX_LOG, k: () => state.k });

// ---------------------------------------------------------------- engine badge and footer

function updateEngine() {
  const c = state.client;
  if (!c) return;
  const engine = String(c.engine);
  engineEl.dataset.engine = engine;
  engineEl.textContent = engine;
  const a = c.adapter;
  const fb = c.fallbacks ?? { count: 0, last: undefined };
  let title;
  if (engine === 'webgpu' && a) {
    const what = a.description || [a.vendor, a.architecture].filter(Boolean).join(' ') || 'a WebGPU adapter';
    title = `WebGPU: ${what}${a.isFallbackAdapter ? ' (software adapter)' : ''}${a.packedDot ? ', packed int8 dot products' : ''}`;
  } else {
    title = `WebAssembly (SIMD)${fb.last ? `: the GPU was not used (${messageOf(fb.last)})` : ': no WebGPU adapter'}`;
  }
  engineEl.title = title;
  fallbacksEl.textContent = engine !== 'webgpu' && !a
    ? 'WebGPU: not available, ranking in WebAssembly'
    : fb.count > 0 ? `GPU fallbacks: ${fb.count}` : '';
  fallbacksEl.title = fb.last ? messageOf(fb.last) : '';
}

function updatePending() {
  pendingEl.textContent = String(state.client?.pendingEvents ?? 0);
}

function updateFeedStatus() {
  const who = state.user === null ? 'Anonymous visitor' : `User ${state.user}`;
  const f = state.lastFrame;
  const what = f ? `${f.kind} from a ${f.scope} bundle (${f.bundle?.rows ?? '?'} candidates)` : 'loading…';
  feedStatus.textContent = `${who} · region ${state.region} · ${what}`;
  feedStatus.title = feedStatus.textContent;
}

// ---------------------------------------------------------------- explanation panel

const { setExplain, explainFrame, showWhy, explainMoved } = explanationPanel({
  state, body: explainBody, note: explainNote, movie, label, report, maxMoved: MAX_MOVED,
});

// ---------------------------------------------------------------- the feed

/** @param {any} frame */
function onFrame(frame) {
  const before = state.display;
  const ids = frame.items.map((/** @type {any} */ it) => String(it.id));
  for (const it of frame.items) state.items.set(String(it.id), it);
  state.display = ids;
  renderAll(before);
  if (frame.kind === 'preliminary') resetShown();
  frame.display = ids.slice();
  demo.frames.push(frame);
  state.lastFrame = frame;
  state.scope = frame.scope;
  const kept = frame.kind === 'refined' ? frame.shown ?? frame.items.filter((/** @type {any} */ i) => i.kept).length : null;
  const where = frame.source === 'network' ? 'edge' : 'cache';
  const t = frame.timings ?? {};
  const main = `${frame.source} · ${frame.scope} · ${where}: ${frame.bundle?.cache ?? '—'} · ${frame.engine}`;
  const sub = `fetch ${fmtMs(t.fetch)} · rank ${fmtMs(t.rank)} · total ${fmtMs(t.total)} · ${fmtAgreement(frame.agreement)}` +
    (kept === null ? '' : ` · kept ${kept}`);
  record({ kind: frame.kind, main, sub, ms: t.total, overlap: frame.agreement ? frame.agreement.overlap : null, label: `${frame.kind} frame` });
  updateEngine();
  updateFeedStatus();
  if (frame.kind === 'preliminary') state.explainMode = 'intro'; // a new list: the old explanation is stale
  if (state.explainMode === 'intro' || state.explainMode === 'frame') explainFrame(frame);
  document.body.dataset.state = 'ready';
}

/** Stops the running feed, if any (its frames are no longer wanted). */
function stopFeed() {
  state.runGen += 1;
  state.runCtl?.abort();
  state.runCtl = null;
}

/** Runs the feed for the current viewer and region; never rejects. */
function runFeed() {
  const client = state.client;
  if (!client) return Promise.resolve();
  stopFeed();
  const gen = state.runGen;
  const ctl = new AbortController();
  state.runCtl = ctl;
  const user = state.user;
  const region = state.region;
  feedEl.setAttribute('aria-busy', 'true');
  updateFeedStatus();
  const done = (async () => {
    /** @type {unknown} */
    let error = null;
    try {
      const frames = client.feed({ user: user ?? undefined, region, k: state.k, signal: ctl.signal, shown: shownNow });
      for await (const frame of frames) {
        if (gen !== state.runGen) break;
        onFrame(frame);
      }
    } catch (e) {
      error = e;
    }
    if (gen !== state.runGen) return; // superseded by a newer run
    state.runCtl = null;
    feedEl.setAttribute('aria-busy', 'false');
    demo.feeds += 1;
    if (error !== null) {
      onFeedError(error);
    } else {
      state.retryMs = POLL_MS;
      if (state.errorMessage) {
        state.errorMessage = '';
        showBaseNotice();
      }
      if (state.offline) goOnline(false);
    }
  })();
  state.runDone = done;
  return done;
}

/** @param {string} code */
const isUnreachable = (code) => code === 'endpoint-down' || /^http-(5\d\d|408|429)$/.test(code);

/** @param {unknown} e */
function onFeedError(e) {
  const err = /** @type {any} */ (e);
  const code = String(err?.code ?? '');
  if (code === 'aborted') return;
  if (isUnreachable(code)) {
    goOffline(err);
    return;
  }
  state.errorMessage = `The feed could not be loaded (${code || 'error'}): ${messageOf(err)}`;
  demo.errors.push(state.errorMessage);
  if (state.flashTimer === null) showBaseNotice();
}

// ---------------------------------------------------------------- offline and reconnect

function edgeName() {
  try {
    return new URL(state.config.edge).host;
  } catch {
    return String(state.config?.edge ?? 'the edge');
  }
}

/** @param {any} err */
function goOffline(err) {
  const code = String(err?.code ?? '');
  const what = code === 'endpoint-down' ? 'cannot be reached' : `is not answering (${code.replace('http-', 'HTTP ')})`;
  state.offlineMessage = `The edge at ${edgeName()} ${what}: showing what this device has; your feedback is kept and re-ranked locally. Retrying…`;
  const wasOffline = state.offline;
  state.offline = true;
  demo.offline = true;
  document.body.dataset.offline = 'true';
  if (!wasOffline) demo.errors.push(state.offlineMessage);
  if (state.flashTimer !== null) {
    clearTimeout(state.flashTimer);
    state.flashTimer = null;
  }
  showBaseNotice();
  schedulePoll(state.retryMs);
}

/** @param {boolean} reconnected the edge answered `/livez` again: say so and run the feed */
function goOnline(reconnected) {
  state.offline = false;
  demo.offline = false;
  document.body.dataset.offline = 'false';
  if (state.pollTimer !== null) {
    clearTimeout(state.pollTimer);
    state.pollTimer = null;
  }
  flash(reconnected ? 'Reconnected: refreshing the feed.' : 'Reconnected.', 'ok', 2500);
  // The feedback kept while offline goes now, not after the queue's backoff.
  void state.client?.flush();
  if (reconnected) {
    // If this run fails again, the next attempt waits longer (an edge that
    // answers /livez but not the feed must not be hammered).
    state.retryMs = Math.min(MAX_RETRY_MS, state.retryMs * 2);
    void runFeed();
  }
}

/** @param {number} ms */
function schedulePoll(ms) {
  if (state.pollTimer !== null || !state.offline) return;
  state.pollTimer = setTimeout(() => {
    state.pollTimer = null;
    void pollOnce();
  }, ms);
}

async function pollOnce() {
  if (!state.offline) return;
  let up = false;
  try {
    const res = await fetch(new URL('livez', state.config.edge), {
      cache: 'no-store', credentials: 'omit', signal: AbortSignal.timeout(1000),
    });
    up = res.status === 200;
  } catch {
    up = false;
  }
  if (!state.offline) return;
  if (up) goOnline(true);
  else schedulePoll(POLL_MS);
}

// ---------------------------------------------------------------- sign-in

/** The demo's stand-in for an app backend's login: a short-lived user token. @param {number} user */
function signIn(user) {
  let pending = state.signIns.get(user);
  if (!pending) {
    pending = (async () => {
      let res;
      try {
        res = await fetch('/demo/sign-in', {
          method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user }),
          signal: AbortSignal.timeout(10_000),
        });
      } catch (e) {
        throw new EdgewiseError('sign-in', `Signing in as user ${user} failed: the demo server could not be reached (${messageOf(e)})`);
      }
      if (!res.ok) {
        let detail = '';
        try {
          detail = (await res.text()).slice(0, 200);
        } catch {
          detail = '';
        }
        throw new EdgewiseError(`sign-in-${res.status}`, `Signing in as user ${user} failed: HTTP ${res.status}${detail ? ` ${detail}` : ''}`);
      }
      const body = await res.json().catch(() => null);
      if (typeof body?.token !== 'string' || body.token === '') {
        throw new EdgewiseError('sign-in', `Signing in as user ${user} failed: the answer holds no token`);
      }
      const ttl = Number(body.expiresInS);
      state.tokens.set(user, { token: body.token, expiresAt: Date.now() + (Number.isFinite(ttl) && ttl > 0 ? ttl : 900) * 1000 });
      return body.token;
    })().finally(() => state.signIns.delete(user));
    state.signIns.set(user, pending);
  }
  return pending;
}

/**
 * The client's `token` option: `user`'s token (the client names the user,
 * so events queued before a switch of user go out as their own user's).
 * `refresh`: the last token was refused (signed in again).
 * @param {boolean} refresh
 * @param {bigint} user
 */
async function token(refresh, user) {
  const id = Number(user);
  const held = state.tokens.get(id);
  if (!refresh && held && held.expiresAt - TOKEN_MARGIN_MS > Date.now()) return held.token;
  return signIn(id);
}

// ---------------------------------------------------------------- controls

async function onUserChange() {
  const value = userSel.value;
  const next = value === '' ? null : Number(value);
  const prev = state.user;
  const gen = ++state.switchGen;
  // Back to the same viewer with no switch under way: nothing to do. (Back
  // to it while a switch is under way: that switch stops, this one signs in
  // again and runs the feed.)
  if (next === prev && !state.switching) return;
  stopFeed();
  state.switching = true;
  // While the viewer changes, nothing may act for the one signing out.
  regionSel.disabled = true;
  refreshBtn.disabled = true;
  // One switch at a time: the one before stops at its next step (its
  // generation is stale), and this one starts from where it left things.
  const before = state.switchDone;
  const run = (async () => {
    await settle(before, 5000);
    if (gen !== state.switchGen) return;
    await switchUser(gen, state.user, next);
  })();
  state.switchDone = run;
  try {
    await run;
  } finally {
    if (gen === state.switchGen) {
      state.switching = false;
      regionSel.disabled = false;
      refreshBtn.disabled = false;
    }
  }
}

/** @param {number} gen @param {number | null} prev @param {number | null} next */
async function switchUser(gen, prev, next) {
  stopFeed();
  feedEl.setAttribute('aria-busy', 'true');
  await settle(state.runDone, 2000);
  if (prev !== null && prev !== next) {
    // Sign-out: hand the queued events over (without waiting long when the
    // edge is down: they stay queued), then forget that user's session,
    // seen items and stored bundles.
    await settle(state.client.flush(), 1500);
    updatePending();
    if (gen !== state.switchGen) return;
    try {
      await state.client.forget({ user: prev });
    } catch (e) {
      report(e);
    }
    state.marks.clear();
    if (gen !== state.switchGen) return;
  }
  state.user = next;
  if (next !== null) {
    const u = state.config.users.find((/** @type {any} */ x) => x.id === next);
    if (u && regionSel.querySelector(`option[value="${Number(u.region)}"]`)) {
      regionSel.value = String(u.region);
      state.region = Number(u.region);
    }
    try {
      await signIn(next);
    } catch (e) {
      if (gen !== state.switchGen) return;
      feedEl.setAttribute('aria-busy', 'false');
      report(e);
      return;
    }
  }
  if (gen !== state.switchGen) return;
  updateFeedStatus();
  await runFeed();
}

function onRegionChange() {
  state.region = Number(regionSel.value);
  void runFeed();
}

// ---------------------------------------------------------------- feedback

/**
 * Like, skip or hide: the session moves at once (`track`), the unseen items
 * are re-ranked on the device (`rerank`, no network), the new order is
 * rendered in place, and the latency from the click is recorded.
 * @param {string} id @param {'like' | 'skip' | 'hide'} kind @param {number} t0 the click's timestamp (performance.now clock)
 * @param {HTMLButtonElement} button
 */
function feedback(id, kind, t0, button) {
  const client = state.client;
  if (!client) return;
  if (state.switching) {
    flash('The viewer is changing: feedback waits for the new feed.', 'info');
    return;
  }
  try {
    client.track({ item: BigInt(id), kind });
  } catch (e) {
    report(e);
    return;
  }
  state.marks.set(id, kind);
  const i = state.display.indexOf(id);
  if (i >= 0) renderRow(i, false);
  if (kind === 'hide' && document.activeElement === button) {
    // The hidden row's buttons are hidden too: keep the focus on the row.
    /** @type {HTMLElement | null} */ (rows[i]?.querySelector('[data-action="why"]'))?.focus();
  }
  updatePending();
  state.rankChain = state.rankChain.then(() => rerankAfter(id, kind, t0)).catch(report);
}

/** @param {string} id @param {'like' | 'skip' | 'hide'} kind @param {number} t0 */
async function rerankAfter(id, kind, t0) {
  const client = state.client;
  const before = state.display.slice();
  let r;
  try {
    r = await client.rerank();
  } catch (e) {
    if (/** @type {any} */ (e)?.code === 'no-feed') {
      flash('The feed is loading: your feedback is kept and counts in the next ranking.', 'info');
      return;
    }
    throw e;
  }
  for (const it of r.items) state.items.set(String(it.id), it);
  state.display = r.order.map((/** @type {bigint} */ x) => String(x));
  renderAll(before);
  // Click to screen: until the frame that shows the new order has been produced.
  await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
  const ms = performance.now() - t0;
  const kept = r.order.length - r.items.length;
  const moved = r.moved.map((/** @type {any} */ m) => ({ id: String(m.id), from: m.from, to: m.to }));
  demo.reranks.push({ item: id, kind, ms, before, after: state.display.slice(), moved, kept });
  record({
    kind: 'rerank',
    main: `device · ${state.scope ?? '—'} · ${kind} “${movie(id).title}” · ${r.engine ?? client.engine}`,
    sub: `rank ${fmtMs(r.timings?.rank ?? NaN)} · click → screen ${fmtMs(ms)} · ${fmtAgreement(r.agreement)} · moved ${moved.length}`,
    ms,
    overlap: r.agreement ? r.agreement.overlap : null,
    label: `re-rank after ${kind}`,
  });
  updateEngine();
  explainMoved(id, kind, r, ms, kept);
}

feedEl.addEventListener('click', (ev) => {
  const button = /** @type {HTMLButtonElement | null} */ (/** @type {Element} */ (ev.target).closest('button[data-action]'));
  if (!button || button.disabled) return;
  const li = /** @type {HTMLLIElement | null} */ (button.closest('li.item'));
  const id = li?.dataset.id;
  if (!id) return;
  const action = button.dataset.action;
  if (action === 'why') showWhy(id, button);
  else if (action === 'like' || action === 'skip' || action === 'hide') feedback(id, action, ev.timeStamp, button);
});

// ---------------------------------------------------------------- start

/** @param {string} url */
async function getJson(url) {
  const res = await fetch(url, { headers: { accept: 'application/json' } });
  if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`);
  return res.json();
}

/** @param {any} u */
function userLabel(u) {
  return [`User ${u.id}`, u.age, u.gender, u.occupation, `region ${u.region}`, `${u.ratings} ratings`]
    .filter((x) => x !== undefined && x !== null && x !== '').join(' · ');
}

/** @param {string} text */
function fatal(text) {
  demo.errors.push(text);
  state.errorMessage = text;
  showBaseNotice();
  document.body.dataset.state = 'error';
  feedStatus.textContent = 'The demo could not start.';
  feedEl.setAttribute('aria-busy', 'false');
}

async function main() {
  buildRows(state.k);
  drawChart(chartEl, [], { k: state.k });

  let config;
  let catalogue;
  try {
    [config, catalogue] = await Promise.all([getJson('/demo/config.json'), getJson('/demo/catalogue.json')]);
  } catch (e) {
    fatal(`The demo's configuration could not be loaded: ${messageOf(e)}`);
    return;
  }
  if (typeof config?.edge !== 'string' || !Array.isArray(config.users) || !Array.isArray(config.regions)) {
    fatal('The demo configuration is malformed (edge, users and regions are required).');
    return;
  }
  state.config = config;
  demo.config = config;
  $('#conn').textContent = `Bundles and events go through the edge at ${edgeName()}; the ranking runs in this browser.`;
  const k = Number.isInteger(config.k) && config.k > 0 && config.k <= 200 ? config.k : 20;
  if (k !== state.k) {
    state.k = k;
    buildRows(k);
  }
  for (const [id, m] of Object.entries(catalogue?.items ?? {})) {
    const x = /** @type {any} */ (m);
    state.catalogue.set(id, {
      title: String(x?.title ?? `Movie ${id}`), year: typeof x?.year === 'number' ? x.year : null,
      genres: Array.isArray(x?.genres) ? x.genres.map(String) : [],
    });
  }

  // The pickers (fixed widths: filling them moves nothing).
  userSel.replaceChildren(h('option', { value: '' }, 'Anonymous visitor'),
    ...config.users.map((/** @type {any} */ u) => h('option', { value: String(u.id) }, userLabel(u))));
  regionSel.replaceChildren(...config.regions.map((/** @type {any} */ r) => h('option', { value: String(r.id) }, `${r.id} · ${r.name}`)));
  const q = new URLSearchParams(location.search);
  const wantUser = q.get('user');
  const first = config.users.find((/** @type {any} */ u) => String(u.id) === wantUser);
  const wantRegion = q.get('region') ?? (first ? String(first.region) : String(config.regions[0]?.id ?? 0));
  if (regionSel.querySelector(`option[value="${CSS.escape(wantRegion)}"]`)) regionSel.value = wantRegion;
  state.region = Number(regionSel.value || 0);
  updateFeedStatus();

  let client;
  try {
    client = await Edgewise.create({
      endpoint: config.edge,
      token,
      gpu: q.get('gpu') === 'off' ? 'off' : 'auto',
      gpuMinRows: 0,
      candidates: Number.isInteger(config.candidates) ? config.candidates : undefined,
    });
  } catch (e) {
    fatal(`The ranker could not start (${/** @type {any} */ (e)?.code ?? 'error'}): ${messageOf(e)}`);
    return;
  }
  state.client = client;
  demo.client = client;
  client.addEventListener('error', (/** @type {Event} */ e) => {
    const err = /** @type {CustomEvent} */ (e).detail;
    showError(`Events: ${messageOf(err)}`);
    updatePending();
  });
  client.addEventListener('flushed', updatePending);
  setInterval(updatePending, 1000);
  updateEngine();

  userSel.addEventListener('change', () => {
    onUserChange().catch(report);
  });
  regionSel.addEventListener('change', onRegionChange);
  refreshBtn.addEventListener('click', () => {
    void runFeed();
  });
  userSel.disabled = false;
  regionSel.disabled = false;
  refreshBtn.disabled = false;

  if (first) {
    userSel.value = String(first.id);
    await onUserChange();
  } else {
    await runFeed();
  }
}

main().catch((e) => fatal(`The demo failed: ${messageOf(e)}`));
