// The live chart of the demo page: hand-written SVG, no library. One point
// per event of the session (feed frames and re-ranks): the latency in ms on a
// log scale (left axis) and the agreement with the previous ranking,
// overlap@k in % (right axis, 0–100). The SVG keeps its viewBox, so redrawing
// never changes the page's layout.

const SVG = 'http://www.w3.org/2000/svg';
const W = 560;
const H = 200;
const M = { left: 50, right: 52, top: 26, bottom: 32 };
const PLOT_W = W - M.left - M.right;
const PLOT_H = H - M.top - M.bottom;

/**
 * @typedef {{ n: number, kind: 'preliminary' | 'refined' | 'rerank', ms: number, overlap: number | null, label: string }} ChartPoint
 * `overlap` in percent (0–100), `null` where there was nothing to compare with.
 */

/**
 * @param {string} name
 * @param {Record<string, string | number>} [attrs]
 * @param {string} [text]
 */
function el(name, attrs = {}, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** @param {number} v */
const r1 = (v) => Math.round(v * 10) / 10;

/** @param {number} ms */
function formatMs(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms >= 1000) return `${r1(ms / 1000)} s`;
  if (ms >= 10) return `${Math.round(ms)} ms`;
  return `${r1(ms)} ms`;
}

/**
 * Log-scale bounds for the latencies: powers of ten around them (at least one
 * decade), never below 0.1 ms.
 * @param {number[]} values
 */
function logBounds(values) {
  const finite = values.filter((v) => Number.isFinite(v) && v > 0);
  if (finite.length === 0) return { lo: 1, hi: 1000 };
  let lo = 10 ** Math.floor(Math.log10(Math.max(0.1, Math.min(...finite))));
  let hi = 10 ** Math.ceil(Math.log10(Math.max(...finite)));
  if (hi <= lo) hi = lo * 10;
  if (hi / lo < 100) {
    // Two decades at least keeps the curve readable.
    if (lo >= 1) lo /= 10;
    else hi *= 10;
  }
  return { lo, hi };
}

/** @param {number} v */
function tickLabel(v) {
  if (v >= 1000) return `${v / 1000} s`;
  return v >= 1 ? String(v) : String(Number(v.toPrecision(1)));
}

/**
 * Draws `points` into `svg` (replacing what was there) and sets its accessible
 * label to a summary of the latest point.
 * @param {SVGSVGElement} svg
 * @param {ChartPoint[]} points
 * @param {{ k?: number }} [options]
 */
export function drawChart(svg, points, options = {}) {
  const k = options.k ?? 20;
  const nodes = [];
  // The x domain: from the first point drawn to the last, ten events at least.
  const first = points.length === 0 ? 1 : points[0].n;
  const n = Math.max(first + 9, points.length === 0 ? 0 : points[points.length - 1].n);
  const x = (/** @type {number} */ i) => M.left + ((i - first) / (n - first)) * PLOT_W;
  const { lo, hi } = logBounds(points.map((p) => p.ms));
  const yMs = (v) => {
    const c = Math.min(hi, Math.max(lo, v));
    return M.top + PLOT_H - ((Math.log10(c) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * PLOT_H;
  };
  const yPct = (v) => M.top + PLOT_H - (Math.min(100, Math.max(0, v)) / 100) * PLOT_H;

  // Grid and the left axis: a line per decade (and at 3× where there is room).
  const decades = Math.round(Math.log10(hi / lo));
  for (let e = 0; e <= decades; e++) {
    const v = lo * 10 ** e;
    const y = yMs(v);
    nodes.push(el('line', { class: 'grid', x1: M.left, x2: M.left + PLOT_W, y1: y, y2: y }));
    nodes.push(el('text', { class: 'tick', x: M.left - 6, y: y + 3.5, 'text-anchor': 'end' }, tickLabel(v)));
    if (decades <= 3 && e < decades) {
      const v3 = v * 3;
      nodes.push(el('text', { class: 'tick', x: M.left - 6, y: yMs(v3) + 3.5, 'text-anchor': 'end', opacity: 0.7 }, tickLabel(v3)));
    }
  }
  // The right axis: overlap in %.
  for (const pct of [0, 25, 50, 75, 100]) {
    nodes.push(el('text', { class: 'tick', x: M.left + PLOT_W + 6, y: yPct(pct) + 3.5, 'text-anchor': 'start' }, `${pct}%`));
  }
  nodes.push(el('line', { class: 'axis', x1: M.left, x2: M.left, y1: M.top, y2: M.top + PLOT_H }));
  nodes.push(el('line', { class: 'axis', x1: M.left + PLOT_W, x2: M.left + PLOT_W, y1: M.top, y2: M.top + PLOT_H }));
  nodes.push(el('line', { class: 'axis', x1: M.left, x2: M.left + PLOT_W, y1: M.top + PLOT_H, y2: M.top + PLOT_H }));

  // The x axis: event numbers, about six ticks.
  const step = niceStep(n - first + 1);
  const ticks = first === 1 && step >= 5 ? [1] : [];
  for (let i = Math.ceil(first / step) * step; i <= n; i += step) ticks.push(i);
  for (const i of ticks) {
    nodes.push(el('line', { class: 'axis', x1: x(i), x2: x(i), y1: M.top + PLOT_H, y2: M.top + PLOT_H + 3 }));
    nodes.push(el('text', { class: 'tick', x: x(i), y: M.top + PLOT_H + 14, 'text-anchor': 'middle' }, String(i)));
  }
  nodes.push(el('text', { class: 'axis-title', x: M.left + PLOT_W / 2, y: H - 4, 'text-anchor': 'middle' },
    'event of this session (feed frames and re-ranks)'));
  nodes.push(el('text', {
    class: 'axis-title', 'text-anchor': 'middle', transform: `translate(12 ${M.top + PLOT_H / 2}) rotate(-90)`,
  }, 'latency, ms (log)'));
  nodes.push(el('text', {
    class: 'axis-title', 'text-anchor': 'middle', transform: `translate(${W - 6} ${M.top + PLOT_H / 2}) rotate(90)`,
  }, `overlap@${k}, %`));

  // The legend.
  const legend = el('g', { transform: `translate(${M.left} 12)` });
  legend.append(
    el('line', { class: 'lat-line', x1: 0, x2: 18, y1: 0, y2: 0 }),
    el('circle', { class: 'lat-dot', cx: 9, cy: 0, r: 3.5 }),
    el('text', { class: 'legend', x: 24, y: 4 }, 'latency: frame total, or click → re-rendered'),
    el('line', { class: 'ovl-line', x1: 292, x2: 310, y1: 0, y2: 0 }),
    el('rect', { class: 'ovl-dot', x: 298, y: -3, width: 6, height: 6 }),
    el('text', { class: 'legend', x: 316, y: 4 }, 'agreement with the previous'),
  );
  nodes.push(legend);

  if (points.length === 0) {
    nodes.push(el('text', { class: 'empty', x: M.left + PLOT_W / 2, y: M.top + PLOT_H / 2, 'text-anchor': 'middle' },
      'Waiting for the first frame…'));
  } else {
    // Latency: a line through every point, a dot per point (hollow: preliminary frames).
    const lat = points.filter((p) => Number.isFinite(p.ms));
    if (lat.length > 1) {
      nodes.push(el('polyline', { class: 'lat-line', points: lat.map((p) => `${r1(x(p.n))},${r1(yMs(p.ms))}`).join(' ') }));
    }
    // Agreement: a dashed line, broken where there was nothing to compare with.
    let run = [];
    const flush = () => {
      if (run.length > 1) nodes.push(el('polyline', { class: 'ovl-line', points: run.join(' ') }));
      run = [];
    };
    for (const p of points) {
      if (p.overlap === null || !Number.isFinite(p.overlap)) {
        flush();
        continue;
      }
      run.push(`${r1(x(p.n))},${r1(yPct(p.overlap))}`);
    }
    flush();
    for (const p of points) {
      if (p.overlap !== null && Number.isFinite(p.overlap)) {
        const sq = el('rect', { class: 'ovl-dot', x: r1(x(p.n) - 3), y: r1(yPct(p.overlap) - 3), width: 6, height: 6 });
        sq.append(el('title', {}, `#${p.n} ${p.label}: overlap ${Math.round(p.overlap)}%`));
        nodes.push(sq);
      }
    }
    for (const p of lat) {
      const dot = el('circle', { class: `lat-dot ${p.kind}`, cx: r1(x(p.n)), cy: r1(yMs(p.ms)), r: p.kind === 'rerank' ? 3.5 : 4.5 });
      dot.append(el('title', {}, `#${p.n} ${p.label}: ${formatMs(p.ms)}`));
      nodes.push(dot);
    }
  }
  svg.replaceChildren(...nodes);

  const last = points[points.length - 1];
  svg.setAttribute('aria-label', last === undefined
    ? 'Chart of latency and agreement: no events yet'
    : `Chart of latency and agreement over ${points.length} event${points.length === 1 ? '' : 's'}; latest: ${last.label}, ` +
      `${formatMs(last.ms)}${last.overlap === null ? '' : `, overlap@${k} ${Math.round(last.overlap)}%`}`);
}

/** About six integer ticks over 1..n. @param {number} n */
function niceStep(n) {
  const raw = n / 6;
  for (const s of [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000]) if (s >= raw) return s;
  return Math.ceil(raw / 1000) * 1000;
}
