// The demo page's explanation panel: why the current frame looks as it does
// (its bundle, engine and stage counts), why one movie sits where it is
// (`explain()` in plain words), and what a like, skip or hide moved and why
// (each moved movie's similarity to the one acted on, and its scores).

import { h, num, fmtMs, fmtAgreement, sourceName, stagesList } from './format.js';

/**
 * The panel over `o.body` and `o.note`, reading the page's `o.state` (the
 * client, the display order, the items shown, the viewer) and naming movies
 * with `o.movie` and `o.label`; failures go to `o.report`.
 * @param {{ state: any, body: HTMLElement, note: HTMLElement, movie: (id: string) => any, label: (id: string) => string,
 *   report: (e: unknown) => void, maxMoved: number }} o
 */
export function explanationPanel(o) {
  const { state, movie, label, report } = o;
  const [explainBody, explainNote, MAX_MOVED] = [o.body, o.note, o.maxMoved];

  /** @param {string} note @param {...(Node | null | false | undefined)} nodes */
  function setExplain(note, ...nodes) {
    explainNote.textContent = note;
    explainBody.replaceChildren(...nodes.filter((x) => x !== null && x !== undefined && x !== false));
    explainBody.scrollTop = 0;
  }

  /** @param {any} frame */
  function explainFrame(frame) {
    const kept = frame.kind === 'refined' ? frame.shown ?? frame.items.filter((/** @type {any} */ i) => i.kept).length : 0;
    const where = frame.source === 'network' ? `the network (edge cache: ${frame.bundle.cache})` : `this device (${frame.bundle.cache})`;
    const lead = h('p', { class: 'lead' },
      h('b', null, frame.kind === 'refined' ? 'Refined frame' : 'Preliminary frame'),
      ` from the ${frame.scope} bundle on ${where}: ${frame.bundle.rows} candidates ranked on ${frame.engine} in ${fmtMs(frame.timings.rank)}.`);
    const parts = [lead, stagesList(frame.stages)];
    if (frame.kind === 'refined') {
      parts.push(h('p', null, kept > 0
        ? `${kept} movie${kept === 1 ? '' : 's'} you had on screen kept ${kept === 1 ? 'its place' : 'their places'} (marked “kept”); the rest come from the refined ranking. `
        : 'Nothing had been on screen yet, so the refined ranking replaced the whole list. ',
      frame.agreement ? `Agreement with the preliminary ranking: ${fmtAgreement(frame.agreement)}.` : ''));
    } else if (state.user === null) {
      parts.push(h('p', null, 'An anonymous visitor gets the region’s bundle, ranked here with this session. Pick a viewer to see a preliminary list refined by a personal bundle.'));
    } else {
      parts.push(h('p', null, 'Ranked at once from what was at hand; the refined list replaces it when the personal bundle arrives, and what you have seen stays put.'));
    }
    parts.push(h('p', { class: 'muted' }, 'Like, skip or hide a movie to see what moved and why, or press “Why?” on any row.'));
    setExplain(`${frame.kind} frame`, ...parts);
    state.explainMode = 'frame';
  }

  /** Plain words for a row's outcome. @param {string} outcome */
  function outcomeWords(outcome) {
    switch (outcome) {
      case 'selected': return 'In the list: it passed every stage, and the diversity pass put it at this place.';
      case 'filtered: seen': return 'Already seen in this session: it keeps its place on screen, and new rankings leave it out.';
      case 'filtered: region': return 'Not available in this region.';
      case 'filtered: blocked creator': return 'From a creator you blocked.';
      case 'cut at pre-rank': return 'Dropped by the cheap pre-ranker: the main model never scored it.';
      case 'cut by creator cap': return 'Skipped: the list already held as many films by this director as the per-director cap allows.';
      case 'below top k': return 'Scored, but others scored higher: it did not make the top k.';
      case 'kept on screen': return 'Already on screen: it keeps its place while the rest re-ranks (new rankings leave seen items out). The scores are those of the ranking that placed it.';
      default: return outcome;
    }
  }

  /** @param {string} id @param {HTMLButtonElement} button */
  function showWhy(id, button) {
    const c = state.client;
    const name = label(id);
    let ex = null;
    try {
      ex = c?.explain(BigInt(id)) ?? null;
    } catch (e) {
      report(e);
      return;
    }
    const pos = state.display.indexOf(id);
    const back = h('button', { type: 'button', class: 'act back' }, 'Back to the row');
    back.addEventListener('click', () => {
      const row = rowOf(id);
      const target = /** @type {HTMLElement | null} */ (row?.querySelector('[data-action="why"]') ?? button);
      target?.focus();
    });
    const shownItem = state.items.get(id);
    if (ex === null && !(pos >= 0 && typeof shownItem?.preScore === 'number')) {
      setExplain(name, h('h3', null, name),
        h('p', null, 'This movie is not in the bundle the list was last ranked from, so there is nothing to explain yet.'), back);
    } else {
      const it = shownItem ?? {};
      const sources = Array.isArray(ex?.sources) ? ex.sources : Array.isArray(it.sources) ? it.sources : [];
      const creator = ex?.creator ?? it.creator;
      if ((ex === null || ex.outcome === 'filtered: seen') && pos >= 0 && typeof it.preScore === 'number') {
        // On screen and kept in place: the last ranking (a re-rank, or a
        // refined frame) left it out as seen, so its scores are those of the
        // ranking that placed it.
        ex = {
          ...(ex ?? {}), outcome: 'kept on screen', preScore: it.preScore, mainScore: it.mainScore, calibrated: it.score,
          mmrPenalty: it.mmrPenalty, rank: null,
        };
      }
      const cal = typeof ex.calibrated === 'number' && Number.isFinite(ex.calibrated) ? ex.calibrated : null;
      const row = (/** @type {string} */ dt, /** @type {string} */ value, /** @type {string} */ words) => [
        h('dt', null, dt), h('dd', null, h('b', null, value), ' ', h('span', null, words)),
      ];
      setExplain(name,
        h('h3', null, name),
        h('p', null,
          h('span', { class: `outcome ${ex.outcome === 'selected' || ex.outcome === 'kept on screen' ? 'selected' : ''}` }, ex.outcome),
          pos >= 0 ? ` · place ${pos + 1} of ${state.display.length} on screen` : ''),
        h('p', null, outcomeWords(String(ex.outcome))),
        h('dl', { class: 'scores' },
          ...row('Pre-rank score', num(ex.preScore), 'a cheap dot product of the movie’s embedding with your taste and this session (plus a few features): only the best candidates reach the main ranker.'),
          ...row('Main score', num(ex.mainScore), 'the MLP ranker’s score of the movie for you.'),
          ...row('Calibrated', num(ex.calibrated), cal === null ? 'not reached.' : `the probability of a positive rating: about ${Math.round(cal * 100)}%.`),
          ...row('MMR penalty', num(ex.mmrPenalty), 'diversity: what its similarity to the movies placed above it cost.'),
          ...row('Creator', creator ? `#${creator}` : '—', 'its director: the creator cap allows at most a few films by one director in the list.'),
          h('dt', null, 'Sources'),
          h('dd', null, ...(sources.length ? sources.map((/** @type {string} */ s) => h('span', { class: 'tag' }, sourceName(s))) : ['—']),
            ' ', h('span', null, 'the candidate sources that found it at the origin.'))),
        back);
    }
    state.explainMode = 'why';
    explainBody.focus({ preventScroll: window.matchMedia('(min-width: 981px)').matches });
  }

  /**
   * What a re-rank moved and why.
   * @param {string} acted @param {string} kind @param {any} r @param {number} ms @param {number} kept
   */
  function explainMoved(acted, kind, r, ms, kept) {
    const c = state.client;
    const verb = { like: 'liked', skip: 'skipped', hide: 'hid' }[kind] ?? kind;
    const lead = h('p', { class: 'lead' },
      'You ', verb, ' ', h('b', null, label(acted)), '. ',
      r.items.length > 0
        ? `The session embedding moved, and the ${r.items.length} places below the ${kept} kept ones were re-ranked on ${r.engine ?? c.engine} in ${fmtMs(r.timings?.rank ?? NaN)} (${fmtMs(ms)} from click to screen), with no network.`
        : 'Every place on screen is kept now, so there was nothing left to re-rank.');
    const moved = [...(r.moved ?? [])].sort((a, b) => a.to - b.to);
    const list = h('ol', { class: 'moved-list' });
    for (const m of moved.slice(0, MAX_MOVED)) {
      const id = String(m.id);
      const to = m.to + kept + 1;
      const from = m.from === null || m.from === undefined ? null : m.from + kept + 1;
      let sim = null;
      let ex = null;
      try {
        sim = c.similarity(BigInt(acted), m.id);
        ex = c.explain(m.id);
      } catch {
        // an item without data explains nothing more
      }
      const dir = from === null ? 'new' : to < from ? 'up' : 'down';
      list.append(h('li', null,
        h('div', { class: 'm1' },
          h('span', { class: 'm-title', title: label(id) }, label(id)),
          h('span', { class: `m-move ${dir}` }, from === null ? `new → ${to}` : `${from} → ${to}`),
          h('span', {
            class: 'm-sim',
            title: sim === null ? `${label(acted)} is not in the bundle this list was ranked from` : `Cosine similarity to ${label(acted)}`,
          }, `sim ${num(sim, 2)}`)),
        h('div', { class: 'm2' },
          ex
            ? `pre-rank ${num(ex.preScore)} · main ${num(ex.mainScore)} · calibrated ${num(ex.calibrated)} · MMR penalty ${num(ex.mmrPenalty)} · ${ex.outcome}`
            : 'not in the shown bundle')));
    }
    const parts = [lead, stagesList(r.stages)];
    if (moved.length === 0) {
      parts.push(h('p', null, r.items.length > 0 ? 'Nothing moved: the new session agrees with the old order.' : ''));
    } else {
      parts.push(h('p', null,
        `${moved.length} item${moved.length === 1 ? '' : 's'} moved${moved.length > MAX_MOVED ? ` (the first ${MAX_MOVED} shown)` : ''}. `,
        h('span', { class: 'muted' }, c.explain(BigInt(acted)) === null
          ? `(“sim” is — because ${label(acted)} came from the preliminary bundle: the bundle this list was refined from holds no embedding of it to compare.)`
          : `“sim” is the cosine similarity to ${label(acted)}: similar movies move with your ${kind === 'like' ? 'like' : kind}.`)));
      parts.push(list);
    }
    setExplain({ like: 'after a like', skip: 'after a skip', hide: 'after hiding' }[kind] ?? '', ...parts);
    state.explainMode = 'moved';
  }

  return { setExplain, explainFrame, showWhy, explainMoved };
}
