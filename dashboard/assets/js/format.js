// Number, money, token and time formatting. Pure functions, no DOM.
//
// Money arrives from the API as exact decimal strings ("0.0002832"); it is
// rounded here on the digits themselves (half up), never through a float, so
// what the page shows is what the server computed.

const EM_DASH = '\u2014';

/** Splits a decimal string into sign, integer digits and fraction digits. */
function parseDecimal(value) {
  const s = String(value).trim();
  const m = /^([+-]?)(\d*)(?:\.(\d*))?$/.exec(s);
  if (!m || (m[2] === '' && (m[3] === undefined || m[3] === ''))) return null;
  const int = m[2].replace(/^0+(?=\d)/, '') || '0';
  return { negative: m[1] === '-', int, frac: m[3] || '' };
}

/** Rounds {int, frac} to `places` decimals, half up. Returns {int, frac}. */
function roundDecimal(d, places) {
  const frac = d.frac.padEnd(places + 1, '0');
  const kept = d.int + frac.slice(0, places);
  const roundUp = Number(frac[places]) >= 5;
  let digits = kept;
  if (roundUp) {
    // Add one to the last digit, carrying as needed.
    const arr = kept.split('');
    let i = arr.length - 1;
    while (i >= 0) {
      if (arr[i] === '9') {
        arr[i] = '0';
        i -= 1;
      } else {
        arr[i] = String(Number(arr[i]) + 1);
        break;
      }
    }
    digits = (i < 0 ? '1' : '') + arr.join('');
  }
  const intLen = digits.length - places;
  return {
    int: digits.slice(0, intLen).replace(/^0+(?=\d)/, '') || '0',
    frac: digits.slice(intLen),
  };
}

function groupThousands(int) {
  return int.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function isZero(d) {
  return /^0*$/.test(d.int) && /^0*$/.test(d.frac);
}

/**
 * Formats a USD amount.
 * - null/undefined → "—" (unpriced)
 * - ≥ $1 → two decimals with thousands separators: $1,234.56
 * - < $1 → up to 4 significant digits, at most 6 decimals (micro-dollars),
 *   at least 2: $0.50, $0.0042, $0.000283; below that "<$0.000001".
 */
export function money(value) {
  if (value === null || value === undefined || value === '') return EM_DASH;
  const d = parseDecimal(value);
  if (!d) return EM_DASH;
  if (isZero(d)) return '$0.00';
  const sign = d.negative ? '-' : '';
  if (d.int !== '0') {
    const r = roundDecimal(d, 2);
    return `${sign}$${groupThousands(r.int)}.${r.frac}`;
  }
  const firstSig = d.frac.search(/[1-9]/); // index of first significant digit
  const places = Math.min(Math.max(firstSig + 4, 2), 6);
  const r = roundDecimal(d, places);
  if (r.int !== '0') return `${sign}$${groupThousands(r.int)}.00`;
  if (/^0*$/.test(r.frac)) return `${sign === '-' ? '>-' : '<'}$0.000001`;
  const frac = r.frac.replace(/0+$/, '').padEnd(2, '0');
  return `${sign}$0.${frac}`;
}

/** Money for chart axes: short and round ($0, $0.05, $12, $1.2k). */
export function moneyAxis(n) {
  const v = Number(n);
  if (!Number.isFinite(v) || v === 0) return '$0';
  const a = Math.abs(v);
  if (a >= 1e6) return `$${trimNum(v / 1e6, 1)}M`;
  if (a >= 1e4) return `$${trimNum(v / 1e3, 1)}k`;
  if (a >= 100) return `$${Math.round(v).toLocaleString('en-US')}`;
  if (a >= 1) return `$${trimNum(v, 2)}`;
  return `$${trimNum(v, Math.min(6, Math.max(2, 1 - Math.floor(Math.log10(a)) + 1)))}`;
}

function trimNum(v, places) {
  return String(Number(v.toFixed(places)));
}

/** Converts a decimal money string to a Number (for charts and shares only). */
export function moneyNumber(value) {
  if (value === null || value === undefined) return 0;
  const n = Number(value);
  return Number.isFinite(n) ? n : 0;
}

/** An integer with thousands separators; null → "—". */
export function int(n) {
  if (n === null || n === undefined || n === '') return EM_DASH;
  const v = Number(n);
  if (!Number.isFinite(v)) return EM_DASH;
  return Math.round(v).toLocaleString('en-US');
}

/** A count made short for tight places: 950, 12.3k, 4.5M, 1.2B. */
export function compact(n) {
  if (n === null || n === undefined) return EM_DASH;
  const v = Number(n);
  if (!Number.isFinite(v)) return EM_DASH;
  const a = Math.abs(v);
  if (a < 1000) return String(Math.round(v));
  if (a < 1e6) return `${trimNum(v / 1e3, a < 1e4 ? 1 : 0)}k`;
  if (a < 1e9) return `${trimNum(v / 1e6, a < 1e7 ? 1 : 0)}M`;
  return `${trimNum(v / 1e9, 1)}B`;
}

/** A share 0..1 as a percentage: 42%, 3.5%, <0.1%. */
export function percent(share) {
  if (!Number.isFinite(share) || share <= 0) return '0%';
  const p = share * 100;
  if (p < 0.1) return '<0.1%';
  if (p < 10) return `${trimNum(p, 1)}%`;
  return `${Math.round(p)}%`;
}

/** Milliseconds as "812 ms" or "1.24 s"; null → "—". */
export function duration(ms) {
  if (ms === null || ms === undefined) return EM_DASH;
  const v = Number(ms);
  if (!Number.isFinite(v)) return EM_DASH;
  if (v < 1000) return `${Math.round(v)} ms`;
  if (v < 60000) return `${trimNum(v / 1000, 2)} s`;
  return `${Math.floor(v / 60000)} m ${Math.round((v % 60000) / 1000)} s`;
}

const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: 'short',
  day: 'numeric',
  hour: 'numeric',
  minute: '2-digit',
  second: '2-digit',
});
const dateTimeLongFmt = new Intl.DateTimeFormat(undefined, {
  dateStyle: 'medium',
  timeStyle: 'medium',
});
const dateFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium' });

function toDate(ts) {
  if (ts === null || ts === undefined || ts === '') return null;
  const d = ts instanceof Date ? ts : new Date(ts);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "Nov 25, 06:31:19" in local time. */
export function dateTime(ts) {
  const d = toDate(ts);
  return d ? dateTimeFmt.format(d) : EM_DASH;
}

/** "Nov 25, 2026, 6:31:19 AM" in local time (for titles). */
export function dateTimeLong(ts) {
  const d = toDate(ts);
  return d ? dateTimeLongFmt.format(d) : EM_DASH;
}

/** "Nov 25, 2026". */
export function date(ts) {
  const d = toDate(ts);
  return d ? dateFmt.format(d) : EM_DASH;
}

/** "just now", "5 min ago", "3 h ago", "2 days ago", then the date. */
export function relative(ts, now = Date.now()) {
  const d = toDate(ts);
  if (!d) return 'never';
  const s = Math.round((now - d.getTime()) / 1000);
  if (s < 45) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const h = Math.round(m / 60);
  if (h < 24) return `${h} h ago`;
  const days = Math.round(h / 24);
  if (days < 30) return `${days} day${days === 1 ? '' : 's'} ago`;
  return date(d);
}

/** A provider's display name. */
export function providerName(id) {
  return PROVIDER_NAMES[id] || id || EM_DASH;
}

export const PROVIDER_NAMES = {
  openai: 'OpenAI',
  anthropic: 'Anthropic',
  gemini: 'Google Gemini',
  groq: 'Groq',
  mistral: 'Mistral',
  deepseek: 'DeepSeek',
  together: 'Together',
  openrouter: 'OpenRouter',
  xai: 'xAI',
  fireworks: 'Fireworks',
  azure: 'Azure OpenAI',
};

export const PROVIDERS = Object.keys(PROVIDER_NAMES);

export const OUTCOME_LABELS = {
  ok: 'OK',
  upstream_error: 'Upstream error',
  cancelled: 'Cancelled',
  proxy_error: 'Proxy error',
};
