// The time-range picker (Today / 7 days / 30 days / Custom) shared by the
// dashboard and the customer pages. The choice lives in the URL (?range=7d or
// ?range=custom&from=…&to=…) so a reload or a shared link shows the same view.

import { h } from './dom.js';

const PRESETS = [
  { id: 'today', label: 'Today' },
  { id: '7d', label: '7 days' },
  { id: '30d', label: '30 days' },
  { id: 'custom', label: 'Custom' },
];

const DAY = 24 * 3600_000;

function startOfLocalDay(d) {
  const x = new Date(d);
  x.setHours(0, 0, 0, 0);
  return x;
}

/** "2026-11-25T06:31" for a datetime-local input, in local time. */
function toLocalInput(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(v) {
  if (!v) return null;
  const d = new Date(v); // datetime-local values parse as local time
  return Number.isNaN(d.getTime()) ? null : d;
}

/** Updates the page URL's query without a reload. */
export function setUrlParams(updates) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(updates)) {
    if (v === null || v === undefined || v === '') url.searchParams.delete(k);
    else url.searchParams.set(k, v);
  }
  history.replaceState(null, '', url.pathname + (url.searchParams.toString() ? `?${url.searchParams}` : '') + url.hash);
}

/** The current page's range as a query string ("?range=30d"), for links. */
export function rangeQuery() {
  const here = new URL(location.href).searchParams;
  const out = new URLSearchParams();
  for (const k of ['range', 'from', 'to']) if (here.get(k)) out.set(k, here.get(k));
  const s = out.toString();
  return s ? `?${s}` : '';
}

export function urlParam(name) {
  return new URL(location.href).searchParams.get(name);
}

/** Computes {from, to, bucket} for a preset or custom range. */
export function resolveRange(range, customFrom, customTo, now = new Date()) {
  let from;
  let to = now;
  switch (range) {
    case '7d':
      from = new Date(startOfLocalDay(now).getTime() - 6 * DAY);
      break;
    case '30d':
      from = new Date(startOfLocalDay(now).getTime() - 29 * DAY);
      break;
    case 'custom':
      from = customFrom || new Date(now.getTime() - 7 * DAY);
      to = customTo || now;
      break;
    default:
      from = startOfLocalDay(now);
  }
  if (from > to) [from, to] = [to, from];
  const bucket = to - from <= 3 * DAY ? 'hour' : 'day';
  return { range, from, to, bucket };
}

/**
 * Renders the picker into `container`; calls onChange({range, from, to,
 * bucket}) when the user picks. get() recomputes "now" for presets, so an
 * auto-refresh keeps "Today" current.
 */
export function createRangePicker(container, onChange) {
  const initial = PRESETS.some((p) => p.id === urlParam('range')) ? urlParam('range') : 'today';
  let range = initial;
  let customFrom = fromLocalInput(urlParam('from') ? toLocalInput(new Date(urlParam('from'))) : '');
  let customTo = fromLocalInput(urlParam('to') ? toLocalInput(new Date(urlParam('to'))) : '');

  const buttons = PRESETS.map((p) =>
    h('button', { type: 'button', id: `range-${p.id}`, class: 'segment', 'data-range': p.id, 'aria-pressed': String(p.id === range) }, p.label),
  );
  const fromInput = h('input', { type: 'datetime-local', id: 'range-from', name: 'from', required: true });
  const toInput = h('input', { type: 'datetime-local', id: 'range-to', name: 'to', required: true });
  const error = h('span', { class: 'field-error', role: 'alert' });
  const form = h(
    'form',
    { class: 'range-custom', hidden: range !== 'custom', novalidate: true },
    h('label', { class: 'inline-field' }, h('span', null, 'From'), fromInput),
    h('label', { class: 'inline-field' }, h('span', null, 'To'), toInput),
    h('button', { type: 'submit', id: 'range-apply', class: 'btn btn-small btn-primary' }, 'Apply'),
    error,
  );

  const fillInputs = () => {
    const r = resolveRange(range, customFrom, customTo);
    fromInput.value = toLocalInput(r.from);
    toInput.value = toLocalInput(r.to);
  };

  const emit = () => {
    const r = get();
    setUrlParams({
      range: range === 'today' ? null : range,
      from: range === 'custom' ? r.from.toISOString() : null,
      to: range === 'custom' ? r.to.toISOString() : null,
    });
    onChange(r);
  };

  buttons.forEach((b) =>
    b.addEventListener('click', () => {
      const id = b.dataset.range;
      if (id === 'custom') {
        if (range !== 'custom') fillInputs();
        form.hidden = false;
        buttons.forEach((x) => x.setAttribute('aria-pressed', String(x === b)));
        fromInput.focus();
        return;
      }
      range = id;
      form.hidden = true;
      buttons.forEach((x) => x.setAttribute('aria-pressed', String(x === b)));
      emit();
    }),
  );

  form.addEventListener('submit', (evt) => {
    evt.preventDefault();
    const f = fromLocalInput(fromInput.value);
    const t = fromLocalInput(toInput.value);
    if (!f || !t) {
      error.textContent = 'Pick both a start and an end.';
      return;
    }
    if (f >= t) {
      error.textContent = 'The start must be before the end.';
      return;
    }
    error.textContent = '';
    range = 'custom';
    customFrom = f;
    customTo = t;
    emit();
  });

  container.replaceChildren(
    h('div', { class: 'range', role: 'group', 'aria-label': 'Time range' }, h('div', { class: 'segmented' }, buttons), form),
  );
  if (range === 'custom') fillInputs();

  function get() {
    return resolveRange(range, customFrom, customTo);
  }

  return { get, isLive: () => range !== 'custom' };
}
