// "By provider" and "By model" tables.

import { h, replace, shareBar, messageRow } from './dom.js';
import * as fmt from './format.js';

/**
 * Fills `tbody` with one row per entry, costliest first.
 * kind: 'provider' (rows carry data-provider) or 'model' (data-model and
 * data-provider). onPick(row), when given, makes the name a filter button.
 */
export function renderBreakdown(tbody, rows, { kind, onPick, emptyText = 'Nothing in this range.' } = {}) {
  const list = [...(rows || [])].sort(
    (a, b) => fmt.moneyNumber(b.cost_usd) - fmt.moneyNumber(a.cost_usd) || (b.calls || 0) - (a.calls || 0),
  );
  if (!list.length) {
    replace(tbody, messageRow(5, emptyText));
    return;
  }
  const totalCost = list.reduce((s, r) => s + fmt.moneyNumber(r.cost_usd), 0);
  const totalCalls = list.reduce((s, r) => s + (r.calls || 0), 0);
  replace(
    tbody,
    list.map((r) => {
      const share = totalCost > 0 ? fmt.moneyNumber(r.cost_usd) / totalCost : totalCalls > 0 ? (r.calls || 0) / totalCalls : 0;
      const label = kind === 'model' ? r.model || '(unknown model)' : fmt.providerName(r.provider);
      const nameContent = onPick
        ? h('button', { type: 'button', class: 'link-button', title: `Show only ${label}`, onclick: () => onPick(r) }, label)
        : label;
      const nameCell =
        kind === 'model'
          ? h('td', { class: 'name-cell' }, h('span', { class: 'mono' }, nameContent), h('span', { class: 'sub' }, fmt.providerName(r.provider)))
          : h('td', { class: 'name-cell' }, nameContent);
      return h(
        'tr',
        { 'data-model': kind === 'model' ? r.model : null, 'data-provider': r.provider },
        nameCell,
        h('td', { class: 'num' }, fmt.int(r.calls)),
        h('td', { class: 'num nowrap hide-sm', title: `${fmt.int(r.input_tokens)} input / ${fmt.int(r.output_tokens)} output tokens` }, `${fmt.compact(r.input_tokens)} / ${fmt.compact(r.output_tokens)}`),
        h('td', { class: 'num strong', title: r.cost_usd === null || r.cost_usd === undefined ? 'Unpriced' : `$${r.cost_usd}` }, fmt.money(r.cost_usd)),
        h('td', { class: 'col-share hide-sm' }, h('div', { class: 'share' }, shareBar(share), h('span', { class: 'share-pct' }, fmt.percent(share)))),
      );
    }),
  );
}
