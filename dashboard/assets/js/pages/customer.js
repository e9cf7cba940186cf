// /customers/<id>: one customer's cost over time, by model and recent calls.

import * as api from '../api.js';
import { renderBreakdown } from '../breakdown.js';
import { createBarChart, fillBuckets } from '../chart.js';
import { $ } from '../dom.js';
import { createEventsTable } from '../events.js';
import * as fmt from '../format.js';
import { guarded, initAppPage } from '../layout.js';
import { createRangePicker, rangeQuery } from '../range.js';

const PREFIX = '/customers/';

function customerIdFromPath() {
  const raw = location.pathname.startsWith(PREFIX) ? location.pathname.slice(PREFIX.length) : '';
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

const id = customerIdFromPath();
document.title = `${id} \u00b7 Customers \u00b7 LLMObserve`;
$('#customer-id').textContent = id;
$('#customer-crumb').textContent = id;

const body = $('#customer-body');
const missing = $('#customer-missing');
const TILES = ['#customer-cost', '#customer-calls', '#customer-tokens', '#customer-last-seen'].map((s) => $(s));

await initAppPage('customers');
const range = createRangePicker($('#range-picker'), () => load());
const chart = createBarChart($('#customer-chart'), { label: `Cost over time for ${id}` });
const events = createEventsTable($('#events'), { showCustomer: false, emptyText: 'No calls from this customer in this range.' });

const rangeLabel = { today: 'Today', '7d': 'Last 7 days', '30d': 'Last 30 days', custom: 'Custom range' };
let seq = 0;

async function load() {
  const mine = ++seq;
  const r = range.get();
  const q = { from: r.from.toISOString(), to: r.to.toISOString() };
  $('#range-summary').textContent = rangeLabel[r.range] || '';
  $('#back-to-customers').href = `/customers${rangeQuery()}`;
  TILES.forEach((t) => t.classList.add('loading'));
  await guarded(async () => {
    let detail;
    try {
      detail = await api.customer(id, q);
    } catch (err) {
      if (err.status === 404) detail = null;
      else throw err;
    }
    if (mine !== seq) return;
    missing.hidden = !!detail;
    body.hidden = !detail;
    if (!detail) return;
    const [series, stats] = await Promise.all([
      api.timeseries({ ...q, customer_id: id, bucket: r.bucket }).catch(() => detail.timeseries || []),
      api.stats(q).catch(() => null),
      events.load({ ...q, customer_id: id }),
    ]);
    if (mine !== seq) return;
    render(detail, stats);
    const points = fillBuckets(series, r.from, r.to, r.bucket).map((p) => ({ ...p, value: p.cost }));
    chart.update(points, {
      bucket: r.bucket,
      formatAxis: fmt.moneyAxis,
      tooltip: (p) => [
        ['Cost', fmt.money(p.cost.toFixed(12))],
        ['Calls', fmt.int(p.calls)],
      ],
    });
  });
  if (mine === seq) TILES.forEach((t) => t.classList.remove('loading'));
}

function render(c, stats) {
  $('#customer-cost').textContent = fmt.money(c.cost_usd);
  const total = stats ? fmt.moneyNumber(stats.total_cost_usd) : 0;
  $('#customer-share').textContent = total > 0 ? `${fmt.percent(fmt.moneyNumber(c.cost_usd) / total)} of all spend` : '\u00a0';
  $('#customer-calls').textContent = fmt.int(c.calls);
  $('#customer-avg').textContent = c.calls ? `${fmt.money((fmt.moneyNumber(c.cost_usd) / c.calls).toFixed(12))} per call` : '\u00a0';
  $('#customer-tokens').textContent = fmt.int((c.input_tokens || 0) + (c.output_tokens || 0));
  $('#customer-tokens-sub').textContent = `${fmt.compact(c.input_tokens || 0)} in \u00b7 ${fmt.compact(c.output_tokens || 0)} out`;
  $('#customer-last-seen').textContent = fmt.relative(c.last_seen);
  $('#customer-last-seen-abs').textContent = fmt.dateTimeLong(c.last_seen);
  renderBreakdown($('#customer-by-model tbody'), c.by_model, { kind: 'model' });
}

load();
