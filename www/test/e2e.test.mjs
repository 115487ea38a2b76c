// The demo web app end to end: the real origin on MovieLens-100K, the real
// edge in front of it, the page served by `edgewise-www`, and Debian's
// Chromium driven by playwright-core (headless), in both engines.
//
// 1. WebGPU (SwiftShader): every frame ranks on the GPU, and the refined
//    ranking is byte for byte what the native core (`edgewise-edge rank`)
//    makes of the same bundle, context and model bytes;
// 2. without WebGPU: the same, in wasm;
// 3. a like re-ranks on the device within 50 ms with no request on that path,
//    moves items like the liked one up, and the event reaches the origin;
// 4. items already shown keep their places when the refined frame arrives,
//    with no layout shift; the controls are labelled and work from the keyboard;
// 5. with the edge stopped the page keeps showing and re-ranking, says so,
//    and recovers when the edge is back;
// 6. no console errors or unhandled rejections anywhere; a screenshot of
//    each mode under EDGEWISE_E2E_DIR.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Core, decodeResult, stableMerge } from 'edgewise';
import { launch, watchedPage } from './chromium.mjs';
import { startStack } from './stack.mjs';

const OUT = process.env.EDGEWISE_E2E_DIR ?? '/tmp/edgewise-e2e';
const USER = 42;
/** Re-ranking after a like must be on screen within this many ms of the click. */
const RERANK_BUDGET_MS = 50;

await Core.load(readFileSync(fileURLToPath(import.meta.resolve('edgewise/edgewise_core_bg.wasm'))));

let stack;
before(async () => {
  mkdirSync(OUT, { recursive: true });
  stack = await startStack();
});
after(async () => {
  await stack?.close();
});

/**
 * A fresh Chromium page on the demo, with its errors watched and its requests
 * recorded; `shown` browser console errors that only report the edge being
 * unreachable are allowed while `outage` is set.
 * @param {{ webgpu: boolean }} o
 */
async function openDemo(o) {
  const browser = await launch(o);
  try {
    const { page, errors } = await watchedPage(browser);
    await page.setViewportSize({ width: 1280, height: 900 });
    const requests = [];
    page.on('request', (r) => requests.push({ method: r.method(), url: r.url() }));
    await page.goto(`${stack.page}/`);
    await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 60_000 });
    return { browser, page, errors, requests };
  } catch (e) {
    await browser.close();
    throw e;
  }
}

/** Signs in as `user` through the picker and waits for that feed's last frame. @param {import('playwright-core').Page} page */
async function pickUser(page, user) {
  const feeds = await page.evaluate(() => window.demo.feeds);
  await page.selectOption('#user', String(user));
  await page.waitForFunction((n) => window.demo.feeds > n, feeds, { timeout: 60_000 });
  const last = await page.evaluate(() => {
    const f = window.demo.frames.at(-1);
    return { kind: f.kind, scope: f.scope };
  });
  assert.deepEqual(last, { kind: 'refined', scope: 'personal' }, 'the feed ends with the personal refined frame');
}

/** The ids in the order the page shows them (the DOM, not the page's bookkeeping). @param {import('playwright-core').Page} page */
function domOrder(page) {
  return page.$$eval('#feed li.item', (lis) => lis.map((li) => li.dataset.id ?? ''));
}

/** Events the origin has applied (its `/metrics`). */
async function applied() {
  const text = await (await fetch(`${stack.origin}/metrics`)).text();
  const m = text.match(/^edgewise_origin_writes_total\{kind="event",outcome="applied"\} (\d+)/m);
  return m ? Number(m[1]) : 0;
}

/** What the page showed the user as errors (`demo.errors`). @param {import('playwright-core').Page} page */
function shownErrors(page) {
  return page.evaluate(() => window.demo.errors.slice());
}

/** @param {string} bin @param {string[]} args */
function run(bin, args) {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { maxBuffer: 16 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
  });
}

/**
 * The refined frame's bytes ranked by the native core and the guest
 * (`edgewise-edge rank` checks the two agree), compared byte for byte with
 * what the page ranked, and the page's list checked to be the stable merge
 * of what it showed before with the native ranking.
 * @param {import('playwright-core').Page} page @param {string} mode
 */
async function checkAgainstNative(page, mode) {
  const f = await page.evaluate(() => {
    const frames = window.demo.frames;
    const i = frames.findLastIndex((x) => x.kind === 'refined');
    const x = frames[i];
    return {
      engine: x.engine, engines: frames.map((y) => y.engine), model: x.model, shown: x.shown, display: x.display,
      before: frames[i - 1]?.display ?? null, k: window.demo.config.k,
      bundle: Array.from(x.replay.bundle), context: Array.from(x.replay.context), result: Array.from(x.replay.result),
    };
  });
  const dir = join(OUT, mode);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'bundle.ewb'), Uint8Array.from(f.bundle));
  writeFileSync(join(dir, 'context.ewcx'), Uint8Array.from(f.context));
  const model = await fetch(`${stack.origin}/v1/models/${f.model}`);
  assert.equal(model.status, 200, `the origin serves model ${f.model}`);
  writeFileSync(join(dir, 'model.ewm'), new Uint8Array(await model.arrayBuffer()));
  const out = await run(join(process.env.EDGEWISE_BIN, 'edgewise-edge'), [
    'rank', '--module', process.env.EDGEWISE_GUEST, '--bundle', join(dir, 'bundle.ewb'), '--model', join(dir, 'model.ewm'),
    '--context', join(dir, 'context.ewcx'), '--result-out', join(dir, 'native.ewrs'),
  ]);
  assert.match(out, /guest and native results are bit-identical/);
  const native = readFileSync(join(dir, 'native.ewrs'));
  assert.equal(Buffer.compare(native, Buffer.from(f.result)), 0,
    `${mode}: the page's ranking (${f.result.length} bytes) differs from the native core's (${native.length} bytes)`);
  const nativeIds = decodeResult(new Uint8Array(native)).items.map((it) => it.id);
  assert.equal(nativeIds.length, f.k);
  assert.ok(f.before, 'a preliminary frame came before the refined one');
  const merged = stableMerge(f.before.map(BigInt), f.shown, nativeIds, f.k).map(String);
  assert.deepEqual(f.display, merged, 'the page shows the stable merge of its preliminary list and the native ranking');
  console.log(`# ${mode}: ${f.engines.join(', ')}; refined ranking of ${f.bundle.length} bundle bytes = native (${native.length} result bytes); ${f.shown} kept`);
  return f;
}

for (const [mode, webgpu, engine] of [['webgpu', true, 'webgpu'], ['wasm', false, 'wasm-simd']]) {
  test(`${mode}: the page ranks on ${engine}, byte for byte as the native core does`, async () => {
    const { browser, page, errors } = await openDemo({ webgpu });
    try {
      await pickUser(page, USER);
      const f = await checkAgainstNative(page, mode);
      assert.equal(f.engine, engine);
      assert.ok(f.engines.every((e) => e === engine), `every frame ranked on ${engine}: ${f.engines}`);
      assert.equal(await page.textContent('#engine').then((t) => t?.includes(engine)), true, 'the badge names the engine');
      assert.deepEqual(await domOrder(page), f.display, 'the DOM shows the refined list');
      await page.screenshot({ path: join(OUT, `page-${mode}.png`) });
      assert.deepEqual(errors, []);
      assert.deepEqual(await shownErrors(page), []);
    } finally {
      await browser.close();
    }
  });
}

test('a like re-ranks the unseen items on the device at once, and the event reaches the origin', async () => {
  const { browser, page, errors, requests } = await openDemo({ webgpu: true });
  try {
    await pickUser(page, USER);
    const eventsBefore = await applied();
    const order = await domOrder(page);
    const liked = order[1];
    const mark = requests.length;
    // The like's own batch, sent in the background through the edge.
    const sent = page.waitForResponse((res) => res.request().method() === 'POST' && res.url().endsWith('/v1/events')
      && /"kind":\s*"like"/.test(res.request().postData() ?? '') && (res.request().postData() ?? '').includes(liked), { timeout: 20_000 });
    await page.click(`#feed li.item[data-id="${liked}"] button[data-action="like"]`);
    await page.waitForFunction(() => window.demo.reranks.length > 0);
    const r = await page.evaluate(() => {
      const x = window.demo.reranks.at(-1);
      const sim = (id) => window.demo.client.similarity(BigInt(x.item), BigInt(id));
      const unseen = (list) => list.slice(x.kept).filter((id) => id !== x.item);
      const mean = (ids) => ids.reduce((s, id) => s + sim(id), 0) / ids.length;
      return { ...x, simBefore: mean(unseen(x.before).slice(0, 5)), simAfter: mean(unseen(x.after).slice(0, 5)) };
    });
    const during = requests.slice(mark).filter((q) => !(q.method === 'POST' && q.url.endsWith('/v1/events')));
    assert.equal(r.item, liked);
    assert.ok(r.ms < RERANK_BUDGET_MS, `re-ranked and shown ${r.ms.toFixed(1)} ms after the click (budget ${RERANK_BUDGET_MS})`);
    assert.deepEqual(during, [], 'no request on the ranking path');
    assert.notDeepEqual(r.after, r.before, 'the like changed the order');
    assert.ok(r.moved.length > 0);
    assert.ok(r.simAfter > r.simBefore,
      `the top unseen items are more like the liked one after the like (mean cosine ${r.simBefore.toFixed(3)} → ${r.simAfter.toFixed(3)})`);
    assert.deepEqual(await domOrder(page), r.after, 'the DOM shows the re-ranked list');
    assert.ok((await page.textContent('#explain'))?.length, 'the explanation panel says what moved');
    console.log(`# like: re-ranked in ${r.ms.toFixed(1)} ms, ${r.moved.length} moved, mean cosine of the top 5 unseen ${r.simBefore.toFixed(3)} → ${r.simAfter.toFixed(3)}`);
    // The event goes to the origin through the edge, in the background.
    assert.equal((await sent).status(), 200, 'the edge passed the like to the origin, which took it');
    const until = Date.now() + 15_000;
    while ((await applied()) <= eventsBefore && Date.now() < until) await new Promise((res) => setTimeout(res, 200));
    assert.ok((await applied()) > eventsBefore, 'the origin applied the like');
    assert.deepEqual(await shownErrors(page), []);
    await page.screenshot({ path: join(OUT, 'page-after-like.png') });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('items already shown keep their places when the refined frame arrives, without a layout shift', async () => {
  const { browser, page, errors } = await openDemo({ webgpu: true });
  try {
    // The personal bundle is held back 800 ms, so the preliminary list is on screen first.
    await page.route('**/v1/users/*/candidates*', async (route) => {
      await new Promise((r) => setTimeout(r, 800));
      await route.continue();
    });
    const frames = await page.evaluate(() => window.demo.frames.length);
    await page.selectOption('#user', String(USER));
    await page.waitForFunction((n) => window.demo.frames.length > n && window.demo.frames.at(-1).kind === 'preliminary', frames);
    const before = await domOrder(page);
    await page.waitForFunction(() => window.demo.frames.at(-1).kind === 'refined', null, { timeout: 60_000 });
    const after = await domOrder(page);
    const { shown, cls } = await page.evaluate(() => ({ shown: window.demo.frames.at(-1).shown, cls: window.demo.cls }));
    assert.ok(shown >= 3, `the page reports the items on screen as shown (${shown})`);
    assert.deepEqual(after.slice(0, shown), before.slice(0, shown), 'the shown items did not move');
    assert.equal(after.length, before.length);
    assert.equal(cls, 0, 'no layout shift');
    console.log(`# stable merge: ${shown} shown items kept; ${after.filter((id, i) => id !== before[i]).length} of ${after.length} places refined; CLS ${cls}`);
    // Accessible basics: the pickers are labelled, every row's buttons are named
    // buttons, and feedback works from the keyboard alone.
    assert.equal(await page.getByLabel('Viewer').count(), 1);
    assert.equal(await page.getByLabel('Region').count(), 1);
    assert.equal(await page.getByRole('button', { name: /^Like / }).count(), after.length);
    assert.equal(await page.getByRole('button', { name: /^Hide / }).count(), after.length);
    const reranks = await page.evaluate(() => window.demo.reranks.length);
    await page.focus(`#feed li.item[data-id="${after[1]}"] button[data-action="like"]`);
    await page.keyboard.press('Tab'); // to the same row's skip button
    await page.keyboard.press('Enter');
    await page.waitForFunction((n) => window.demo.reranks.length > n, reranks);
    const byKey = await page.evaluate(() => window.demo.reranks.at(-1));
    assert.deepEqual([byKey.item, byKey.kind], [after[1], 'skip'], 'Tab and Enter skipped the focused row');
    assert.equal(await page.evaluate(() => window.demo.shiftsAll), 0, 'no layout shift at all, input-driven ones included');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});

test('with the edge down the page keeps working from what it has, says so, and recovers', async () => {
  const { browser, page, errors } = await openDemo({ webgpu: false });
  let edgeDown = false;
  try {
    await pickUser(page, USER);
    const order = await domOrder(page);
    await stack.stopEdge();
    edgeDown = true;
    const feeds = await page.evaluate(() => window.demo.feeds);
    await page.click('#refresh');
    await page.waitForFunction((n) => window.demo.feeds > n && document.body.dataset.offline === 'true', feeds, { timeout: 30_000 });
    const notice = (await page.textContent('#notice')) ?? '';
    assert.match(notice, /cannot be reached/i, `the page says the edge is down: ${notice}`);
    // The refresh ranked what the device holds (a preliminary frame); the failed refinement left it standing.
    const shownNow = await domOrder(page);
    const lastFrame = await page.evaluate(() => ({ kind: window.demo.frames.at(-1).kind, display: window.demo.frames.at(-1).display }));
    assert.equal(lastFrame.kind, 'preliminary', 'the device ranked its own copy while the edge was down');
    assert.deepEqual(shownNow, lastFrame.display, 'the list stays on screen');
    assert.equal(shownNow.filter(Boolean).length, order.length, 'a full list');
    // Feedback still re-ranks on the device.
    const n = await page.evaluate(() => window.demo.reranks.length);
    await page.click(`#feed li.item[data-id="${shownNow[2]}"] button[data-action="skip"]`);
    await page.waitForFunction((m) => window.demo.reranks.length > m, n);
    const r = await page.evaluate(() => window.demo.reranks.at(-1));
    assert.deepEqual(await domOrder(page), r.after, 'the re-ranked list is shown while offline');
    await page.screenshot({ path: join(OUT, 'page-offline.png') });
    const pending = await page.evaluate(() => window.demo.client.pendingEvents);
    assert.ok(pending > 0, 'the skip waits in the queue while the edge is down');
    const appliedDown = await applied();
    // Back again.
    const feedsDown = await page.evaluate(() => window.demo.feeds);
    await stack.startEdge();
    edgeDown = false;
    await page.waitForFunction((m) => document.body.dataset.offline === 'false' && window.demo.feeds > m, feedsDown, { timeout: 30_000 });
    const last = await page.evaluate(() => window.demo.frames.at(-1).kind);
    assert.equal(last, 'refined', 'a refined frame came once the edge was back');
    await page.waitForFunction(() => window.demo.client.pendingEvents === 0, null, { timeout: 20_000 });
    assert.ok((await applied()) >= appliedDown + pending, 'the feedback kept while offline reached the origin');
    const shown = await shownErrors(page);
    assert.ok(shown.every((m) => /cannot be reached/.test(m)), `only the outage was reported: ${JSON.stringify(shown)}`);
    // While the edge was down, Chromium reports each refused connection to it; nothing else may be logged.
    const edge = new URL(stack.edge).origin;
    const other = errors.filter((e) => !(e.includes('net::ERR_CONNECTION_REFUSED') && e.includes(edge)));
    assert.deepEqual(other, []);
    console.log(`# outage: the notice said "${notice.trim()}"; ${pending} event(s) waited and were sent after recovery`);
  } finally {
    await browser.close();
    if (edgeDown) await stack.startEdge();
  }
});
