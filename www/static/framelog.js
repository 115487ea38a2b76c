// The demo page's frames log and chart: every event of the session (a
// frame or a re-rank) is a line in a log of fixed slots (newest first, so
// nothing moves), a line for screen readers, and a point on the chart.

import { drawChart } from './chart.js';
import { h } from './format.js';

/**
 * Fills `list` with `max` fixed slots and returns `record`, which logs one
 * event. `k()` is the feed's current length (the chart's scale).
 * @param {{ list: HTMLElement, sr: HTMLElement, chart: SVGSVGElement, max: number, k: () => number }} o
 */
export function frameLog(o) {
  let n = 0;
  /** @type {import('./chart.js').ChartPoint[]} */
  const points = [];
  /** @type {{ n: number, kind: string, main: string, sub: string, title: string }[]} */
  const log = [];
  const slots = Array.from({ length: o.max }, () => h('li', { class: 'frame-line' }));
  o.list.replaceChildren(...slots);
  /**
   * @param {{ kind: 'preliminary' | 'refined' | 'rerank', main: string, sub: string, ms: number,
   *   overlap: number | null, label: string }} e
   */
  return function record(e) {
    n += 1;
    points.push({ n, kind: e.kind, ms: e.ms, overlap: e.overlap === null ? null : e.overlap * 100, label: e.label });
    log.unshift({ n, kind: e.kind, main: e.main, sub: e.sub, title: `${e.main} · ${e.sub}` });
    log.length = Math.min(log.length, o.max);
    slots.forEach((slot, i) => {
      const line = log[i];
      if (!line) {
        slot.removeAttribute('data-kind');
        slot.replaceChildren();
        return;
      }
      slot.dataset.kind = line.kind;
      slot.title = line.title;
      slot.replaceChildren(
        h('span', { class: `kind kind-${line.kind}` }, line.kind),
        h('span', { class: 'fl-main' }, line.main),
        h('span', { class: 'fl-num' }, `#${line.n}`),
        h('span', { class: 'fl-sub' }, line.sub),
      );
    });
    o.sr.append(h('li', null, `${e.kind}: ${e.main}; ${e.sub}`));
    while (o.sr.childElementCount > o.max) o.sr.firstElementChild?.remove();
    drawChart(o.chart, points.slice(-60), { k: o.k() });
  };
}
