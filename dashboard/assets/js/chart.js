// A hand-written SVG bar chart: y axis with round ticks and gridlines, time x
// axis, hover/touch/keyboard tooltip with the bucket's values. No library, so
// it works offline and under a strict CSP (positions are SVG attributes; the
// tooltip is placed through CSSOM, which the CSP allows).

import { h, s, replace } from './dom.js';

const HEIGHT = 260;
const HEIGHT_SMALL = 210;

/** Round tick values covering [0, max]. */
export function niceTicks(max, count = 5) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  const ticks = [];
  const top = Math.ceil(max / step - 1e-9) * step;
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

const hourFmt = new Intl.DateTimeFormat(undefined, { hour: 'numeric', minute: '2-digit' });
const dayFmtUtc = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' });
const dayFmtLocal = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const hourLongFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric', hour: 'numeric', minute: '2-digit' });
const dayLongFmtUtc = new Intl.DateTimeFormat(undefined, { weekday: 'short', month: 'short', day: 'numeric', year: 'numeric', timeZone: 'UTC' });

/** Axis label for a bucket start. Day buckets are UTC days. */
function axisLabel(t, bucket, prev) {
  if (bucket === 'day') return dayFmtUtc.format(t);
  const newDay = !prev || prev.toDateString() !== t.toDateString();
  return newDay && t.getHours() < 2 ? dayFmtLocal.format(t) : hourFmt.format(t);
}

/** Tooltip title for a bucket start. */
export function bucketTitle(t, bucket) {
  if (bucket === 'day') return `${dayLongFmtUtc.format(t)} (UTC)`;
  const end = new Date(t.getTime() + 3600_000);
  return `${hourLongFmt.format(t)} \u2013 ${hourFmt.format(end)}`;
}

/**
 * Creates a chart in `container`. Returns {update(points, options)} where
 * points are [{t: Date, value: Number, ...}] and options are
 * {bucket, formatAxis(v), tooltip(point) → [[label, value], ...], label}.
 */
export function createBarChart(container, { label = 'Chart' } = {}) {
  container.classList.add('chart');
  const tooltip = h('div', { class: 'chart-tooltip', 'aria-live': 'polite', hidden: true });
  let state = { points: [], bucket: 'day', formatAxis: String, tooltip: () => [], label };
  let active = -1;
  let geometry = null;
  let lastWidth = 0;

  function render() {
    const width = Math.max(280, Math.floor(container.clientWidth || 600));
    lastWidth = width;
    const height = width < 520 ? HEIGHT_SMALL : HEIGHT;
    const { points, formatAxis } = state;
    const max = points.reduce((m, p) => Math.max(m, p.value || 0), 0);
    const ticks = niceTicks(max, height < HEIGHT ? 4 : 5);
    const yMax = ticks[ticks.length - 1] || 1;
    const tickLabels = ticks.map(formatAxis);
    const longest = tickLabels.reduce((m, t) => Math.max(m, t.length), 0);
    const m = { top: 14, right: 12, bottom: 30, left: Math.max(36, longest * 7 + 14) };
    const plotW = width - m.left - m.right;
    const plotH = height - m.top - m.bottom;
    const n = Math.max(points.length, 1);
    const band = plotW / n;
    const barW = Math.max(1, Math.min(48, band * 0.72));
    const y = (v) => m.top + plotH - (v / yMax) * plotH;

    const svg = s('svg', {
      class: 'chart-svg',
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      tabindex: 0,
      'aria-label': `${state.label}. Use the arrow keys to read each ${state.bucket}.`,
    });

    // Gridlines and y labels.
    const grid = s('g', { class: 'chart-grid' });
    ticks.forEach((v, i) => {
      const yy = Math.round(y(v)) + 0.5;
      grid.append(
        s('line', { x1: m.left, x2: width - m.right, y1: yy, y2: yy, class: i === 0 ? 'chart-axis-line' : 'chart-gridline' }),
        s('text', { x: m.left - 8, y: yy, class: 'chart-label chart-label-y', 'text-anchor': 'end', 'dominant-baseline': 'middle' }, tickLabels[i]),
      );
    });
    svg.append(grid);

    // X labels: as many as fit, evenly spaced.
    const xAxis = s('g', { class: 'chart-x' });
    const maxLabels = Math.max(2, Math.floor(plotW / 72));
    const every = Math.max(1, Math.ceil(points.length / maxLabels));
    let prevLabeled = null;
    points.forEach((p, i) => {
      if (i % every !== 0) return;
      const cx = m.left + band * i + band / 2;
      xAxis.append(
        s('line', { x1: cx, x2: cx, y1: m.top + plotH, y2: m.top + plotH + 4, class: 'chart-tick' }),
        s('text', { x: cx, y: m.top + plotH + 18, class: 'chart-label', 'text-anchor': 'middle' }, axisLabel(p.t, state.bucket, prevLabeled)),
      );
      prevLabeled = p.t;
    });
    svg.append(xAxis);

    // Bars.
    const bars = s('g', { class: 'chart-bars' });
    const barEls = points.map((p, i) => {
      const top = y(p.value || 0);
      const hgt = Math.max(p.value > 0 ? 1.5 : 0, m.top + plotH - top);
      const rect = s('rect', {
        x: m.left + band * i + (band - barW) / 2,
        y: m.top + plotH - hgt,
        width: barW,
        height: hgt,
        rx: Math.min(3, barW / 3),
        class: 'chart-bar',
      });
      bars.append(rect);
      return rect;
    });
    svg.append(bars);

    // Hover guide and capture surface.
    const guide = s('rect', { class: 'chart-guide', x: 0, y: m.top, width: band, height: plotH, visibility: 'hidden' });
    svg.insertBefore(guide, bars);
    const surface = s('rect', { class: 'chart-surface', x: m.left, y: m.top, width: plotW, height: plotH, fill: 'transparent' });
    svg.append(surface);

    geometry = { m, band, plotH, barEls, guide, width, y };

    const indexAt = (evt) => {
      const rect = svg.getBoundingClientRect();
      const x = evt.clientX - rect.left - m.left;
      return Math.max(0, Math.min(points.length - 1, Math.floor(x / band)));
    };
    surface.addEventListener('pointermove', (evt) => setActive(indexAt(evt)));
    surface.addEventListener('pointerdown', (evt) => setActive(indexAt(evt)));
    surface.addEventListener('pointerleave', (evt) => {
      if (evt.pointerType === 'mouse') setActive(-1);
    });
    svg.addEventListener('keydown', (evt) => {
      if (!points.length) return;
      if (evt.key === 'ArrowRight' || evt.key === 'ArrowLeft') {
        evt.preventDefault();
        const d = evt.key === 'ArrowRight' ? 1 : -1;
        setActive(active < 0 ? (d > 0 ? 0 : points.length - 1) : Math.max(0, Math.min(points.length - 1, active + d)));
      } else if (evt.key === 'Escape') {
        setActive(-1);
      }
    });
    svg.addEventListener('focus', () => {
      if (active < 0 && points.length) setActive(points.length - 1);
    });
    svg.addEventListener('blur', () => setActive(-1));

    const empty = !points.some((p) => p.value > 0);
    replace(container, svg, tooltip, empty ? h('div', { class: 'chart-empty' }, 'No spend in this range') : null);
    const keep = active;
    active = -1;
    if (keep >= 0 && keep < points.length) setActive(keep);
  }

  function setActive(i) {
    if (!geometry) return;
    const { m, band, barEls, guide, width } = geometry;
    if (active >= 0 && barEls[active]) barEls[active].classList.remove('active');
    active = i;
    if (i < 0 || !state.points[i]) {
      guide.setAttribute('visibility', 'hidden');
      tooltip.hidden = true;
      return;
    }
    const p = state.points[i];
    barEls[i].classList.add('active');
    guide.setAttribute('x', m.left + band * i);
    guide.setAttribute('visibility', 'visible');
    replace(
      tooltip,
      h('div', { class: 'chart-tooltip-title' }, bucketTitle(p.t, state.bucket)),
      state.tooltip(p).map(([k, v]) => h('div', { class: 'chart-tooltip-row' }, h('span', null, k), h('strong', null, v))),
    );
    tooltip.hidden = false;
    const cx = m.left + band * i + band / 2;
    const tw = tooltip.offsetWidth || 160;
    let left = cx + 12;
    if (left + tw > width - 4) left = cx - tw - 12;
    tooltip.style.left = `${Math.max(4, left)}px`;
    tooltip.style.top = `${m.top + 4}px`;
  }

  if (typeof ResizeObserver !== 'undefined') {
    new ResizeObserver(() => {
      const w = Math.floor(container.clientWidth || 0);
      if (w && Math.abs(w - lastWidth) > 2) render();
    }).observe(container);
  }

  return {
    update(points, options = {}) {
      state = { ...state, ...options, points };
      render();
    },
  };
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** Floors a time to its bucket start (UTC hours / UTC days). */
export function bucketStart(t, bucket) {
  const ms = t instanceof Date ? t.getTime() : Date.parse(t);
  const size = bucket === 'hour' ? HOUR : DAY;
  return Math.floor(ms / size) * size;
}

/**
 * Turns the API's sparse [{t, cost_usd, calls}] into one point per bucket
 * from `from` to `to`, zero where nothing happened.
 */
export function fillBuckets(series, from, to, bucket) {
  const size = bucket === 'hour' ? HOUR : DAY;
  const byKey = new Map();
  for (const row of series || []) {
    const key = bucketStart(row.t, bucket);
    const prev = byKey.get(key);
    const cost = Number(row.cost_usd || 0);
    const calls = Number(row.calls || 0);
    byKey.set(key, prev ? { cost: prev.cost + cost, calls: prev.calls + calls } : { cost, calls });
  }
  const start = bucketStart(from, bucket);
  const end = bucketStart(to, bucket);
  const out = [];
  if ((end - start) / size > 2000) {
    // Too many buckets to fill; plot what came back.
    for (const [key, v] of [...byKey.entries()].sort((a, b) => a[0] - b[0])) out.push({ t: new Date(key), ...v });
    return out;
  }
  for (let k = start; k <= end; k += size) {
    const v = byKey.get(k) || { cost: 0, calls: 0 };
    out.push({ t: new Date(k), cost: v.cost, calls: v.calls });
  }
  return out;
}
