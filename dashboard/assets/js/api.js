// The admin API client. The session is an HttpOnly cookie the server sets at
// signup/login; scripts never see or store the token. Every call goes out with
// credentials: 'same-origin', and a 401 from a session-only endpoint sends the
// browser to /login (an expired session lands there with a message).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

const NETWORK_MESSAGE =
  "Can't reach the LLMObserve server. Check that it is running and that you are online, then try again.";

let redirecting = false;

/** Sends the browser to the login page, saying why. */
export function goToLogin(reason = 'expired') {
  if (redirecting) return;
  redirecting = true;
  const here = location.pathname + location.search;
  const params = new URLSearchParams();
  if (reason) params.set('reason', reason);
  if (here !== '/' && here.startsWith('/') && !here.startsWith('/login')) params.set('next', here);
  const qs = params.toString();
  location.assign(`/login${qs ? `?${qs}` : ''}`);
}

function needsSession(path) {
  return path.startsWith('/api/') || path.startsWith('/auth/me') || path.startsWith('/auth/api-keys');
}

/** Builds a query string from an object, skipping empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === '') continue;
    q.set(k, v instanceof Date ? v.toISOString() : String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Calls the API. Resolves with the parsed JSON (or null for 204); rejects with
 * an ApiError whose message is fit to show to the user.
 */
export async function request(method, path, { body, params, signal } = {}) {
  const init = {
    method,
    credentials: 'same-origin',
    headers: { Accept: 'application/json' },
    signal,
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path + query(params), init);
  } catch (err) {
    if (err && err.name === 'AbortError') throw err;
    throw new ApiError(0, 'network', NETWORK_MESSAGE);
  }
  if (resp.status === 401 && needsSession(path)) {
    goToLogin('expired');
    throw new ApiError(401, 'unauthorized', 'Your session has expired. Please log in again.');
  }
  if (resp.status === 204) return null;
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const e = data && data.error;
    const code = (e && e.code) || `http_${resp.status}`;
    let message = e && e.message;
    if (!message) {
      if (resp.status >= 500) message = `The server had a problem (HTTP ${resp.status}). Try again in a moment.`;
      else if (resp.status === 403) message = 'This request was refused (HTTP 403). Reload the page and try again.';
      else if (resp.status === 404) message = 'Not found.';
      else message = `Request failed (HTTP ${resp.status}).`;
    }
    throw new ApiError(resp.status, code, message);
  }
  if (data === null && text) {
    throw new ApiError(resp.status, 'bad_response', 'The server sent an answer the dashboard could not read.');
  }
  return data;
}

export const get = (path, params, opts) => request('GET', path, { ...opts, params });
export const post = (path, body) => request('POST', path, { body: body ?? {} });
export const put = (path, body) => request('PUT', path, { body });
export const del = (path) => request('DELETE', path);

const enc = encodeURIComponent;

// ---- auth ----
export const signup = (email, password, name) =>
  post('/auth/signup', name ? { email, password, name } : { email, password });
export const login = (email, password) => post('/auth/login', { email, password });
export const logout = () => request('POST', '/auth/logout');
export const me = () => get('/auth/me');
export const createApiKey = (name) => post('/auth/api-keys', name ? { name } : {});
export const revokeApiKey = (id) => del(`/auth/api-keys/${enc(id)}`);

// ---- provider keys ----
export const providerKeys = () => get('/api/provider-keys');
export const setProviderKey = (provider, key) => put(`/api/provider-keys/${enc(provider)}`, { key });
export const removeProviderKey = (provider) => del(`/api/provider-keys/${enc(provider)}`);

// ---- metering ----
export const stats = (params) => get('/api/stats', params);
export const events = (params) => get('/api/events', params);
export const timeseries = (params) => get('/api/timeseries', params);
export const customers = (params) => get('/api/customers', params);
export const customer = (id, params) => get(`/api/customers/${enc(id)}`, params);

// ---- server config (proxy URL for snippets) ----
let configPromise = null;
export function config() {
  if (!configPromise) {
    configPromise = get('/dashboard/config.json').catch((err) => {
      configPromise = null;
      throw err;
    });
  }
  return configPromise;
}

/** The proxy URL, or a best guess if the config can't be loaded. */
export async function proxyUrl() {
  try {
    const c = await config();
    if (c && c.proxy_url) return String(c.proxy_url).replace(/\/+$/, '');
  } catch {
    // fall through
  }
  return `${location.protocol}//${location.hostname}:8080`;
}
