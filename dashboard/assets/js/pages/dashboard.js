// / : totals for the chosen range, cost over time, breakdowns by provider and
// model, unpriced and unattributed tiles, recent calls; filters by provider,
// model and customer; auto-refresh; a setup snippet until the first call.

import * as api from '../api.js';
import { renderBreakdown } from '../breakdown.js';
import { createBarChart, fillBuckets } from '../chart.js';
import { $, h, replace } from '../dom.js';
import { createEventsTable } from '../events.js';
import * as fmt from '../format.js';
import { guarded, initAppPage } from '../layout.js';
import { createRangePicker, setUrlParams, urlParam } from '../range.js';
import { createSnippetPicker } from '../snippets.js';

const REFRESH_MS = 10_000;
const EMPTY_POLL_MS = 5_000;

const els = {
  summary: $('#range-summary'),
  provider: $('#filter-provider'),
  model: $('#filter-model'),
  customer: $('#filter-customer'),
  customerOptions: $('#customer-options'),
  clear: $('#filters-clear'),
  autoRefresh: $('#auto-refresh'),
  totalCost: $('#total-cost'),
  avgCost: $('#avg-cost'),
  calls: $('#calls'),
  callsSub: $('#calls-sub'),
  tokens: $('#tokens'),
  tokensSub: $('#tokens-sub'),
  unpriced: $('#unpriced-calls'),
  unpricedTile: $('#unpriced-tile'),
  unattributed: $('#unattributed-cost'),
  unattributedCalls: $('#unattributed-calls'),
  unattributedTile: $('#unattributed-tile'),
  emptyState: $('#empty-state'),
  overview: $('#overview'),
  byProvider: $('#by-provider tbody'),
  byModel: $('#by-model tbody'),
  eventsUpdated: $('#events-updated'),
  chartTitle: $('#chart-title'),
};

const TILES = [els.totalCost, els.calls, els.tokens, els.unpriced, els.unattributed];

const filters = {
  provider: urlParam('provider') || '',
  model: urlParam('model') || '',
  customer: urlParam('customer') || '',
};

let metric = 'cost';
let lastSeries = null;
let isEmpty = null; // unknown until checked
let emptySnippets = null;
let loading = false;
const knownModels = new Map(); // model -> provider

const me = await initAppPage('dashboard');

const range = createRangePicker($('#range-picker'), () => loadAll());
const chart = createBarChart($('#cost-chart'), { label: 'Cost over time' });
const events = createEventsTable($('#events'), { emptyText: 'No calls match this range and these filters.' });

// ---- filters ----

replace(
  els.provider,
  h('option', { value: '' }, 'All providers'),
  fmt.PROVIDERS.map((p) => h('option', { value: p }, fmt.providerName(p))),
);
els.provider.value = filters.provider;
els.customer.value = filters.customer;
renderModelOptions();

function renderModelOptions() {
  if (filters.model && !knownModels.has(filters.model)) knownModels.set(filters.model, filters.provider);
  const models = [...knownModels.keys()].sort();
  replace(els.model, h('option', { value: '' }, 'All models'), models.map((m) => h('option', { value: m }, m)));
  els.model.value = filters.model;
}

function setFilters(next) {
  Object.assign(filters, next);
  els.provider.value = filters.provider;
  els.model.value = filters.model;
  els.customer.value = filters.customer;
  setUrlParams({ provider: filters.provider, model: filters.model, customer: filters.customer });
  loadAll();
}

els.provider.addEventListener('change', () => setFilters({ provider: els.provider.value }));
els.model.addEventListener('change', () => setFilters({ model: els.model.value }));
let customerTimer = null;
els.customer.addEventListener('input', () => {
  clearTimeout(customerTimer);
  customerTimer = setTimeout(() => {
    if (els.customer.value.trim() !== filters.customer) setFilters({ customer: els.customer.value.trim() });
  }, 500);
});
els.customer.addEventListener('change', () => {
  clearTimeout(customerTimer);
  if (els.customer.value.trim() !== filters.customer) setFilters({ customer: els.customer.value.trim() });
});
$('#filters').addEventListener('submit', (evt) => evt.preventDefault());
els.clear.addEventListener('click', () => setFilters({ provider: '', model: '', customer: '' }));

// ---- chart metric ----

for (const btn of document.querySelectorAll('[data-metric]')) {
  btn.addEventListener('click', () => {
    metric = btn.dataset.metric;
    document.querySelectorAll('[data-metric]').forEach((b) => b.setAttribute('aria-pressed', String(b === btn)));
    els.chartTitle.textContent = metric === 'cost' ? 'Cost over time' : 'Calls over time';
    if (lastSeries) drawChart(lastSeries.points, lastSeries.bucket);
  });
}

function drawChart(points, bucket) {
  chart.update(
    points.map((p) => ({ ...p, value: metric === 'cost' ? p.cost : p.calls })),
    {
      bucket,
      label: metric === 'cost' ? 'Cost over time' : 'Calls over time',
      formatAxis: metric === 'cost' ? fmt.moneyAxis : (v) => fmt.compact(v),
      tooltip: (p) => [
        ['Cost', fmt.money(p.cost.toFixed(12))],
        ['Calls', fmt.int(p.calls)],
      ],
    },
  );
}

// ---- loading ----

function queryFor(r) {
  return {
    from: r.from.toISOString(),
    to: r.to.toISOString(),
    provider: filters.provider,
    model: filters.model,
    customer_id: filters.customer,
  };
}

const shortDate = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });

function describe(r) {
  const label = { today: 'Today', '7d': 'Last 7 days', '30d': 'Last 30 days' }[r.range] || `${shortDate.format(r.from)} \u2013 ${shortDate.format(r.to)}`;
  const parts = [label];
  if (filters.provider) parts.push(fmt.providerName(filters.provider));
  if (filters.model) parts.push(filters.model);
  if (filters.customer) parts.push(`customer ${filters.customer}`);
  return parts.join(' \u00b7 ');
}

function renderStats(s) {
  const calls = s.calls || 0;
  els.totalCost.textContent = fmt.money(s.total_cost_usd);
  els.totalCost.title = s.total_cost_usd ? `$${s.total_cost_usd}` : '';
  const priced = calls - (s.unpriced_calls || 0);
  els.avgCost.textContent = priced > 0 ? `${fmt.money((fmt.moneyNumber(s.total_cost_usd) / priced).toFixed(12))} per priced call` : 'No priced calls';
  els.calls.textContent = fmt.int(calls);
  els.callsSub.textContent = s.unpriced_calls ? `${fmt.int(priced)} priced` : calls ? 'all priced' : '\u00a0';
  const tokens = (s.input_tokens || 0) + (s.output_tokens || 0);
  els.tokens.textContent = fmt.int(tokens);
  els.tokensSub.textContent = `${fmt.compact(s.input_tokens || 0)} in \u00b7 ${fmt.compact(s.output_tokens || 0)} out`;
  els.unpriced.textContent = fmt.int(s.unpriced_calls || 0);
  els.unpricedTile.classList.toggle('tile-warn', (s.unpriced_calls || 0) > 0);
  els.unattributed.textContent = s.unattributed_cost_usd === undefined ? '\u2014' : fmt.money(s.unattributed_cost_usd);
  els.unattributedCalls.textContent =
    s.unattributed_calls === undefined ? 'Calls without X-Customer-Id' : `${fmt.int(s.unattributed_calls)} call${s.unattributed_calls === 1 ? '' : 's'} with no customer id`;
  els.unattributedTile.classList.toggle('tile-note', fmt.moneyNumber(s.unattributed_cost_usd) > 0);

  for (const m of s.by_model || []) if (m.model) knownModels.set(m.model, m.provider);
  renderModelOptions();
  renderBreakdown(els.byProvider, s.by_provider, {
    kind: 'provider',
    onPick: (r) => setFilters({ provider: r.provider }),
  });
  renderBreakdown(els.byModel, s.by_model, {
    kind: 'model',
    onPick: (r) => setFilters({ model: r.model, provider: r.provider }),
  });
}

async function checkEmpty() {
  if (isEmpty === false) return false;
  let empty = false;
  try {
    const res = await api.events({ limit: 1 });
    empty = !(res.events && res.events.length);
  } catch {
    empty = false; // can't tell: show the dashboard
  }
  isEmpty = empty;
  els.emptyState.hidden = !empty;
  els.overview.hidden = empty;
  if (empty && !emptySnippets) {
    const proxy = await api.proxyUrl();
    const live = (me.api_keys || []).find((k) => !k.revoked);
    emptySnippets = createSnippetPicker($('#empty-snippets'), { proxy, key: 'llmo_sk_YOUR_KEY' });
    if (live) {
      $('#empty-snippets').prepend(
        h('p', { class: 'muted small' }, 'Replace llmo_sk_YOUR_KEY with your key (yours starts with ', h('code', null, live.prefix), ').'),
      );
    }
  }
  return empty;
}

async function loadAll({ quiet = false } = {}) {
  const r = range.get();
  const q = queryFor(r);
  els.summary.textContent = describe(r);
  els.clear.hidden = !(filters.provider || filters.model || filters.customer);
  if (!quiet) TILES.forEach((t) => t.classList.add('loading'));
  loading = true;
  const seq = (loadAll.seq = (loadAll.seq || 0) + 1);
  await guarded(async () => {
    const [stats, series] = await Promise.all([
      api.stats(q),
      api.timeseries({ ...q, bucket: r.bucket }),
      quiet ? events.refresh(q) : events.load(q),
      checkEmpty(),
      loadCustomerOptions(q),
    ]);
    if (seq !== loadAll.seq) return;
    renderStats(stats);
    lastSeries = { points: fillBuckets(series, r.from, r.to, r.bucket), bucket: r.bucket };
    drawChart(lastSeries.points, lastSeries.bucket);
    els.eventsUpdated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  }).finally(() => {
    if (seq === loadAll.seq) {
      TILES.forEach((t) => t.classList.remove('loading'));
      loading = false;
    }
  });
}

async function loadCustomerOptions(q) {
  try {
    const list = await api.customers({ from: q.from, to: q.to });
    replace(els.customerOptions, (list || []).slice(0, 200).map((c) => h('option', { value: c.customer_id })));
  } catch {
    // only suggestions; ignore
  }
}

// ---- auto-refresh ----

function tick() {
  if (document.hidden || loading) return;
  if (isEmpty) {
    isEmpty = null;
    loadAll({ quiet: true });
  } else if (els.autoRefresh.checked && range.isLive()) {
    loadAll({ quiet: true });
  }
}

setInterval(() => {
  if (!isEmpty) tick();
}, REFRESH_MS);
setInterval(() => {
  if (isEmpty) tick();
}, EMPTY_POLL_MS);
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && els.autoRefresh.checked) tick();
});

loadAll();
