// Small pure helpers of the demo page: DOM construction, number, time and
// agreement formatting, error messages, and the stage counts of a ranking.

/** The order of the ranking stages, for the stage counts. */
const STAGE_ORDER = [
  'selected', 'filtered: seen', 'filtered: region', 'filtered: blocked creator', 'cut at pre-rank', 'cut by creator cap',
  'below top k',
];

/**
 * @param {string} tag
 * @param {Record<string, string> | null} [attrs]
 * @param {...(Node | string | null | undefined | false)} children
 */
export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

/** A number with `d` decimals, or — when there is none (NaN: a stage the row never reached). @param {unknown} v @param {number} d */
export function num(v, d = 3) {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '—';
}

/** @param {number} ms */
export function fmtMs(ms) {
  if (!Number.isFinite(ms)) return '—';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${Math.round(ms)} ms`;
  return `${ms.toFixed(1)} ms`;
}

/** @param {{ overlap: number, kendallTau: number | null } | null | undefined} a */
export function fmtAgreement(a) {
  if (!a) return 'overlap — · τ —';
  const tau = typeof a.kendallTau === 'number' && Number.isFinite(a.kendallTau) ? a.kendallTau.toFixed(2) : '—';
  return `overlap ${Math.round(a.overlap * 100)}% · τ ${tau}`;
}

/** @param {unknown} e */
export function messageOf(e) {
  const x = /** @type {any} */ (e);
  return String(x?.message ?? x ?? 'unknown error');
}

/** Resolves when `p` settles or after `ms`, whichever comes first; never rejects. @param {Promise<unknown>} p @param {number} ms */
export function settle(p, ms) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    Promise.resolve(p).then(() => {}, () => {}).finally(() => {
      clearTimeout(t);
      resolve(undefined);
    });
  });
}

/** A source's name for people: `recent_similar` → `recent similar`. @param {unknown} s */
export function sourceName(s) {
  return String(s).replace(/_/g, ' ');
}

/** The stage counts of a ranking, in pipeline order. @param {Record<string, number> | undefined} stages */
function stageEntries(stages) {
  const entries = Object.entries(stages ?? {}).filter(([, n]) => n > 0);
  const rank = (/** @type {string} */ name) => {
    const i = STAGE_ORDER.indexOf(name);
    return i < 0 ? STAGE_ORDER.length : i;
  };
  return entries.sort((a, b) => rank(a[0]) - rank(b[0]));
}

/** @param {Record<string, number> | undefined} stages */
export function stagesList(stages) {
  const entries = stageEntries(stages);
  if (entries.length === 0) return null;
  return h('ul', { class: 'stages', 'aria-label': `What happened to every candidate: ${stagesText(stages)}` },
    ...entries.map(([name, n]) => h('li', { class: name === 'selected' ? 'selected' : '' }, h('b', null, String(n)), ` ${name}`)));
}

/** "312 filtered: seen · 40 cut at pre-rank · …" @param {Record<string, number> | undefined} stages */
function stagesText(stages) {
  return stageEntries(stages).map(([name, n]) => `${n} ${name}`).join(' · ');
}
