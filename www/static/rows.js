// The feed's rows on the demo page: each row's fixed structure (position,
// content, score, actions) and how it shows an item, written in place so
// that no box on the page moves. `app.js` decides what each row shows.

import { h, num, sourceName } from './format.js';

const ICONS = {
  like: '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M12 20.3s-7.6-4.5-9.4-9.3C1.5 7.9 3.6 4.7 7 4.7c2 0 3.4 1.1 5 3 1.6-1.9 3-3 5-3 3.4 0 5.5 3.2 4.4 6.3-1.8 4.8-9.4 9.3-9.4 9.3z" fill="currentColor"/></svg>',
  skip: '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M5 5.5l7 6.5-7 6.5M12.5 5.5l7 6.5-7 6.5" fill="none" stroke="currentColor" stroke-width="2.2" stroke-linecap="round" stroke-linejoin="round"/></svg>',
  hide: '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M2.5 12S6 5.5 12 5.5 21.5 12 21.5 12 18 18.5 12 18.5 2.5 12 2.5 12z" fill="none" stroke="currentColor" stroke-width="2"/><circle cx="12" cy="12" r="3" fill="none" stroke="currentColor" stroke-width="2"/><path d="M4 20L20 4" stroke="currentColor" stroke-width="2.2" stroke-linecap="round"/></svg>',
};
const ACTION_NAMES = { like: 'Like', skip: 'Skip', hide: 'Hide' };

export /** Gives a row its fixed structure: position, content, score, actions. @param {HTMLLIElement} li @param {number} i */
function buildRow(li, i) {
  li.className = 'item skeleton';
  li.removeAttribute('data-id');
  const pos = h('span', { class: 'pos', 'aria-hidden': 'true' }, String(i + 1));
  const body = h('div', { class: 'body' }, h('span', { class: 'skel a' }), h('span', { class: 'skel b' }));
  const score = h('div', { class: 'score' }, h('span', { class: 'skel s' }));
  const actions = h('div', { class: 'actions' });
  for (const action of /** @type {const} */ (['like', 'skip', 'hide'])) {
    const b = h('button', { type: 'button', class: 'act', 'data-action': action, 'aria-pressed': 'false', title: ACTION_NAMES[action] });
    b.innerHTML = ICONS[action];
    /** @type {HTMLButtonElement} */ (b).disabled = true;
    actions.append(b);
  }
  const why = h('button', { type: 'button', class: 'act', 'data-action': 'why', 'aria-controls': 'explain' }, 'Why?');
  /** @type {HTMLButtonElement} */ (why).disabled = true;
  actions.append(why);
  li.replaceChildren(pos, body, score, actions);
}

/**
 * Writes one row in place: the li and its buttons stay, the content is
 * replaced by new nodes (so no existing box moves). `shown` is the item the
 * row shows (`null`: none): its id, what the feed said of it (`it`: score,
 * sources, kept), its movie (`m`: title, year, genres), its display name and
 * the user's mark on it.
 * @param {HTMLLIElement} li
 * @param {null | { id: string, it: any, m: { title: string, year?: number, genres: string[] }, name: string, mark?: string }} shown
 * @param {boolean} changed the row now shows another item
 */
export function fillRow(li, shown, changed) {
  const [, body, score, actions] = /** @type {HTMLElement[]} */ ([...li.children]);
  const buttons = /** @type {HTMLButtonElement[]} */ ([...actions.children]);
  if (shown === null) {
    li.className = 'item empty';
    li.removeAttribute('data-id');
    body.replaceChildren(h('span', { class: 'hidden-note' }, '—'));
    score.replaceChildren();
    for (const b of buttons) {
      b.disabled = true;
      b.removeAttribute('aria-label');
    }
    return;
  }
  const { id, it, m, name, mark } = shown;
  li.dataset.id = id;
  li.className = 'item';
  li.classList.toggle('kept', it.kept === true);
  li.classList.toggle('liked', mark === 'like');
  li.classList.toggle('skipped', mark === 'skip');
  li.classList.toggle('hidden', mark === 'hide');
  const fresh = changed ? 'fresh' : '';
  if (mark === 'hide') {
    body.replaceChildren(h('span', { class: `hidden-note ${fresh}` },
      h('span', { class: 'tag state' }, 'hidden'), ' You will not see this movie again.'));
  } else {
    const tags = h('span', { class: 'tags' });
    const sources = Array.isArray(it.sources) ? it.sources.map(sourceName) : [];
    for (const s of sources.slice(0, 2)) tags.append(h('span', { class: 'tag', title: `Found by the ${s} candidate source` }, s));
    if (sources.length > 2) {
      tags.append(h('span', { class: 'tag more', title: `Also found by: ${sources.slice(2).join(', ')}` }, `+${sources.length - 2}`));
    }
    body.replaceChildren(
      h('div', { class: `line1 ${fresh}` },
        h('span', { class: 'title', title: name }, m.title),
        m.year ? h('span', { class: 'year' }, String(m.year)) : null,
        it.kept ? h('span', { class: 'tag kept', title: 'On screen before the refined frame: it kept its place' }, 'kept') : null,
        mark === 'skip' ? h('span', { class: 'tag state' }, 'skipped') : null),
      h('div', { class: `line2 ${fresh}` },
        h('span', { class: 'genres' }, m.genres.length ? m.genres.join(' · ') : 'no genre'),
        tags),
    );
  }
  score.replaceChildren(
    h('b', { title: 'Calibrated score: the probability of a positive rating' }, num(it.score, 3)),
    h('small', null, 'score'),
  );
  for (const b of buttons) {
    b.disabled = false;
    const action = /** @type {'like' | 'skip' | 'hide' | 'why'} */ (b.dataset.action);
    if (action === 'why') {
      b.setAttribute('aria-label', `Why is ${name} ranked here?`);
    } else {
      b.setAttribute('aria-label', `${ACTION_NAMES[action]} ${name}`);
      b.setAttribute('aria-pressed', String(mark === action));
    }
  }
}

