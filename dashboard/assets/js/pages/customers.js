// /customers: every customer for the range, costliest first, with calls,
// tokens, cost, share of total spend and last seen; search by id.

import * as api from '../api.js';
import { $, h, replace, shareBar, loadingRow, messageRow } from '../dom.js';
import * as fmt from '../format.js';
import { guarded, initAppPage } from '../layout.js';
import { createRangePicker, rangeQuery, setUrlParams, urlParam } from '../range.js';

const PAGE = 100;
const COLS = 7;

const tbody = $('#customers-table tbody');
const search = $('#customer-search');
const summary = $('#customers-summary');
const count = $('#customers-count');
const more = $('#customers-more');
const emptyState = $('#customers-empty');
const card = $('#customers-card');

let all = [];
let total = 0; // all spend in the range, attributed or not
let shown = PAGE;
let seq = 0;

await initAppPage('customers');
const range = createRangePicker($('#range-picker'), () => load());
search.value = urlParam('q') || '';

function matches(c, q) {
  return !q || String(c.customer_id).toLowerCase().includes(q);
}

function render() {
  const q = search.value.trim().toLowerCase();
  const list = all.filter((c) => matches(c, q));
  if (!all.length) {
    replace(tbody, messageRow(COLS, 'No customers in this range.'));
  } else if (!list.length) {
    replace(tbody, messageRow(COLS, `No customer matches \u201c${search.value.trim()}\u201d.`));
  } else {
    replace(
      tbody,
      list.slice(0, shown).map((c, i) => {
        const share = total > 0 ? fmt.moneyNumber(c.cost_usd) / total : 0;
        const href = `/customers/${encodeURIComponent(c.customer_id)}${rangeQuery()}`;
        return h(
          'tr',
          { 'data-customer': c.customer_id, class: 'clickable' },
          h('td', { class: 'name-cell nowrap' }, h('span', { class: 'rank', 'aria-hidden': 'true' }, String(i + 1)), h('a', { href, class: 'customer-link mono' }, c.customer_id)),
          h('td', { class: 'num' }, fmt.int(c.calls)),
          h('td', { class: 'num hide-sm' }, fmt.int(c.input_tokens)),
          h('td', { class: 'num hide-sm' }, fmt.int(c.output_tokens)),
          h('td', { class: 'num strong', title: c.cost_usd ? `$${c.cost_usd}` : 'Unpriced' }, fmt.money(c.cost_usd)),
          h('td', { class: 'col-share hide-sm' }, h('div', { class: 'share' }, shareBar(share), h('span', { class: 'share-pct' }, fmt.percent(share)))),
          h('td', { class: 'nowrap hide-sm', title: fmt.dateTimeLong(c.last_seen) }, fmt.relative(c.last_seen)),
        );
      }),
    );
  }
  count.textContent = all.length ? `Showing ${Math.min(shown, list.length)} of ${list.length}${q ? ` matching (of ${all.length})` : ''}` : '';
  more.hidden = list.length <= shown;
}

async function load() {
  const mine = ++seq;
  const r = range.get();
  const q = { from: r.from.toISOString(), to: r.to.toISOString() };
  replace(tbody, loadingRow(COLS, 'Loading customers\u2026'));
  summary.textContent = '\u00a0';
  await guarded(async () => {
    const [list, stats] = await Promise.all([api.customers(q), api.stats(q).catch(() => null)]);
    if (mine !== seq) return;
    all = list || [];
    const attributed = all.reduce((s, c) => s + fmt.moneyNumber(c.cost_usd), 0);
    total = stats ? Math.max(fmt.moneyNumber(stats.total_cost_usd), attributed) : attributed;
    shown = PAGE;
    const unattributed = stats ? stats.unattributed_cost_usd : null;
    summary.textContent =
      `${fmt.int(all.length)} customer${all.length === 1 ? '' : 's'} \u00b7 ${fmt.money(attributed.toFixed(12))} attributed` +
      (unattributed !== null && unattributed !== undefined ? ` \u00b7 ${fmt.money(unattributed)} unattributed` : '');
    // With no customers at all, the empty state (how to tag calls) replaces the table.
    emptyState.hidden = all.length > 0;
    card.hidden = all.length === 0;
    render();
  });
  if (mine === seq && tbody.querySelector('.row-message .spinner')) {
    replace(tbody, messageRow(COLS, 'Could not load customers.', 'error'));
    card.hidden = false;
    emptyState.hidden = true;
  }
}

search.addEventListener('input', () => {
  shown = PAGE;
  setUrlParams({ q: search.value.trim() });
  render();
});
more.addEventListener('click', () => {
  shown += PAGE;
  render();
});
// The whole row opens the customer, not only the link.
tbody.addEventListener('click', (evt) => {
  const row = evt.target.closest('tr[data-customer]');
  if (row && !evt.target.closest('a')) location.assign(`/customers/${encodeURIComponent(row.dataset.customer)}${rangeQuery()}`);
});

load();
