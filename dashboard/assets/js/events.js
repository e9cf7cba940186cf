// The "recent calls" table with cursor paging, used by the dashboard and the
// customer page. One row per metered call; a row opens to show every field.

import * as api from './api.js';
import { h, replace, badge, loadingRow, messageRow } from './dom.js';
import * as fmt from './format.js';
import { rangeQuery } from './range.js';

const COLUMNS = [
  { label: '', cls: 'col-toggle' },
  { label: 'Time' },
  { label: 'Model', title: 'Model, and the provider it went to' },
  { label: 'Customer', customer: true },
  { label: 'Cost', num: true },
  { label: 'Input tokens', num: true, title: 'All prompt-side tokens (fresh + cache read + cache write); below: the cached and cache-write parts' },
  { label: 'Output tokens', num: true, title: 'All output tokens, reasoning included; below: the reasoning part' },
  { label: 'Latency', num: true, title: 'Total time; for streams, also time to first token' },
  { label: 'Outcome' },
];
// Each cell also carries an ev-* class, which lays the row out on phones.

function outcomeBadge(e) {
  const label = fmt.OUTCOME_LABELS[e.outcome] || e.outcome || 'unknown';
  const kind = e.outcome === 'ok' ? 'success' : e.outcome === 'cancelled' ? 'warning' : 'danger';
  const text = e.outcome === 'ok' || !e.status ? label : `${label} \u00b7 ${e.status}`;
  return badge(text, kind, e.status ? `HTTP ${e.status}` : undefined);
}

function usageBadge(e) {
  if (e.usage_status === 'partial') return badge('partial', 'warning', 'The stream stopped early: token counts are lower bounds');
  if (e.usage_status === 'missing') return badge('no usage', 'warning', 'The provider reported no usage for this call');
  return null;
}

function costCell(e) {
  if (e.cost_usd === null || e.cost_usd === undefined) {
    const why = e.usage_status === 'missing' ? 'No usage was reported, so no cost' : 'Unpriced: no price is known for this model';
    return h('td', { class: 'ev-cost num muted', title: why }, '\u2014 ', h('span', { class: 'sr-only' }, why));
  }
  return h('td', { class: 'ev-cost num strong', title: `$${e.cost_usd}` }, fmt.money(e.cost_usd));
}

function customerCell(e) {
  if (!e.customer_id) return h('td', { class: 'ev-customer muted', title: 'No X-Customer-Id on this call' }, 'unattributed');
  return h('td', { class: 'ev-customer customer-cell' }, h('a', { href: `/customers/${encodeURIComponent(e.customer_id)}${rangeQuery()}`, class: 'customer-link' }, e.customer_id));
}

/** The parts of a token count (cached, cache write, reasoning), when non-zero. */
function subTokens(parts) {
  const shown = parts.filter(([n]) => n);
  if (!shown.length) return null;
  return h(
    'span',
    { class: 'sub' },
    // Each part stays whole; a narrow column breaks the line only between parts.
    shown.map(([n, label, cls], i) => [i ? ' \u00b7 ' : '', h('span', { class: 'nowrap' }, h('span', { class: cls }, fmt.int(n)), ` ${label}`)]),
  );
}

function detailRow(e, cols) {
  const fields = [
    ['Event id', e.id],
    ['Time', fmt.dateTimeLong(e.ts)],
    ['Provider', fmt.providerName(e.provider)],
    ['Endpoint', e.endpoint],
    ['Model', e.model],
    ['Customer', e.customer_id || 'unattributed'],
    ['API key id', e.api_key_id],
    ['HTTP status', e.status],
    ['Outcome', fmt.OUTCOME_LABELS[e.outcome] || e.outcome],
    ['Streamed', e.streamed ? 'yes' : 'no'],
    ['Latency', fmt.duration(e.latency_ms)],
    ['Time to first token', fmt.duration(e.ttft_ms)],
    ['Usage', e.usage_status],
    ['Input tokens', fmt.int(e.input_tokens)],
    ['Cached input tokens', fmt.int(e.cached_input_tokens)],
    ['Cache write tokens', fmt.int(e.cache_write_tokens)],
    ['Output tokens', fmt.int(e.output_tokens)],
    ['Reasoning tokens', fmt.int(e.reasoning_tokens)],
    ['Cost (exact)', e.cost_usd === null || e.cost_usd === undefined ? 'unpriced' : `$${e.cost_usd}`],
    ['Upstream request id', e.upstream_request_id],
  ];
  return h(
    'tr',
    { class: 'event-detail', hidden: true },
    h(
      'td',
      { colspan: cols },
      h(
        'dl',
        { class: 'detail-grid' },
        fields.map(([k, v]) => h('div', null, h('dt', null, k), h('dd', null, v === null || v === undefined || v === '' ? '\u2014' : String(v)))),
      ),
    ),
  );
}

function eventRows(e, showCustomer, cols) {
  const detail = detailRow(e, cols);
  const toggle = h('button', { type: 'button', class: 'row-toggle', 'aria-expanded': 'false', 'aria-label': 'Show call details' }, '\u203a');
  toggle.addEventListener('click', () => {
    const open = detail.hidden;
    detail.hidden = !open;
    toggle.setAttribute('aria-expanded', String(open));
    row.classList.toggle('expanded', open);
  });
  const latency = h('td', { class: 'ev-latency num', title: e.ttft_ms !== null && e.ttft_ms !== undefined ? `First token after ${fmt.duration(e.ttft_ms)}` : undefined }, fmt.duration(e.latency_ms));
  if (e.streamed) latency.append(h('span', { class: 'sub' }, e.ttft_ms !== null && e.ttft_ms !== undefined ? `ttft ${fmt.duration(e.ttft_ms)}` : 'stream'));
  const row = h(
    'tr',
    { 'data-event-id': e.id, 'data-testid': 'event-row', 'data-outcome': e.outcome, 'data-provider': e.provider, 'data-model': e.model },
    h('td', { class: 'ev-toggle col-toggle' }, toggle),
    h('td', { class: 'ev-time nowrap', title: fmt.dateTimeLong(e.ts) }, fmt.dateTime(e.ts)),
    h('td', { class: 'ev-model model-cell', title: e.endpoint || undefined }, h('span', { class: 'mono' }, e.model || '\u2014'), h('span', { class: 'sub' }, fmt.providerName(e.provider))),
    showCustomer ? customerCell(e) : null,
    costCell(e),
    h(
      'td',
      { class: 'ev-in num tokens-in' },
      h('span', { class: 'tok-input' }, fmt.int(e.input_tokens)),
      subTokens([
        [e.cached_input_tokens, 'cached', 'tok-cached'],
        [e.cache_write_tokens, 'cache write', 'tok-cache-write'],
      ]),
    ),
    h(
      'td',
      { class: 'ev-out num tokens-out' },
      h('span', { class: 'tok-output' }, fmt.int(e.output_tokens)),
      subTokens([[e.reasoning_tokens, 'reasoning', 'tok-reasoning']]),
    ),
    latency,
    h('td', { class: 'ev-outcome nowrap' }, outcomeBadge(e), ' ', usageBadge(e)),
  );
  return [row, detail];
}

/**
 * Renders the table into `container`. load(params) shows the first page for
 * the given filters; refresh() reloads quietly, only while on the first page.
 */
export function createEventsTable(container, { showCustomer = true, emptyText = 'No calls in this range.' } = {}) {
  const cols = COLUMNS.filter((c) => showCustomer || !c.customer);
  const tbody = h('tbody');
  const table = h(
    'table',
    { id: 'events-table', class: 'table table-events' },
    h('caption', { class: 'sr-only' }, 'Recent calls, newest first'),
    h('thead', null, h('tr', null, cols.map((c) => h('th', { scope: 'col', class: [c.num ? 'num' : '', c.cls], title: c.title }, c.label)))),
    tbody,
  );
  const prev = h('button', { type: 'button', id: 'events-prev', class: 'btn btn-small', disabled: true }, '\u2039 Newer');
  const next = h('button', { type: 'button', id: 'events-next', class: 'btn btn-small', disabled: true }, 'Older \u203a');
  const pageLabel = h('span', { id: 'events-page', class: 'muted' }, 'Page 1');
  const pageSize = h(
    'select',
    { id: 'events-page-size', 'aria-label': 'Calls per page' },
    [25, 50, 100].map((n) => h('option', { value: n }, `${n} per page`)),
  );
  replace(
    container,
    h('div', { class: 'table-scroll' }, table),
    h('div', { class: 'pager' }, pageSize, h('div', { class: 'pager-buttons' }, prev, pageLabel, next)),
  );

  let params = {};
  let cursors = [null]; // cursor for each page visited; current page = last
  let nextCursor = null;
  let seq = 0;

  async function fetchPage({ quiet = false } = {}) {
    const mine = ++seq;
    if (!quiet) replace(tbody, loadingRow(cols.length, 'Loading calls\u2026'));
    prev.disabled = true;
    next.disabled = true;
    try {
      const cursor = cursors[cursors.length - 1];
      const res = await api.events({ ...params, limit: pageSize.value, cursor });
      if (mine !== seq) return;
      const events = res.events || [];
      nextCursor = res.next_cursor || null;
      if (!events.length) replace(tbody, messageRow(cols.length, cursors.length > 1 ? 'No older calls.' : emptyText));
      else replace(tbody, events.map((e) => eventRows(e, showCustomer, cols.length)));
    } catch (err) {
      if (mine !== seq) return;
      if (quiet) return; // keep what is shown; the page alert reports it
      replace(tbody, messageRow(cols.length, `Could not load calls: ${err.message}`, 'error'));
    } finally {
      if (mine === seq) {
        prev.disabled = cursors.length <= 1;
        next.disabled = !nextCursor;
        pageLabel.textContent = `Page ${cursors.length}`;
      }
    }
  }

  prev.addEventListener('click', () => {
    if (cursors.length > 1) {
      cursors.pop();
      fetchPage();
    }
  });
  next.addEventListener('click', () => {
    if (nextCursor) {
      cursors.push(nextCursor);
      fetchPage();
    }
  });
  pageSize.addEventListener('change', () => {
    cursors = [null];
    fetchPage();
  });

  return {
    load(newParams) {
      params = newParams;
      cursors = [null];
      return fetchPage();
    },
    /** Reloads quietly with `newParams` (e.g. a later "to"), only on the first page. */
    refresh(newParams) {
      if (cursors.length !== 1) return Promise.resolve();
      if (newParams) params = newParams;
      return fetchPage({ quiet: true });
    },
  };
}
