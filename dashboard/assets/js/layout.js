// The shell every page shares: the nav bar, the signed-in user, logout and
// the page-level alert.

import * as api from './api.js';
import { h, replace, toast } from './dom.js';

const LINKS = [
  { id: 'dashboard', href: '/', label: 'Dashboard' },
  { id: 'customers', href: '/customers', label: 'Customers' },
  { id: 'settings', href: '/settings', label: 'Settings' },
];

function brand() {
  return h(
    'a',
    { class: 'brand', href: '/', 'aria-label': 'LLMObserve home' },
    h('img', { src: '/assets/favicon.svg', alt: '', width: 24, height: 24 }),
    h('span', null, 'LLMObserve'),
  );
}

/** Logs out and goes to the login page. */
export async function logout() {
  try {
    await api.logout();
  } catch (err) {
    if (err.code === 'network') {
      toast(err.message, 'error');
      return;
    }
  }
  location.assign('/login?reason=signed_out');
}

function renderAppNav(active) {
  const nav = document.getElementById('nav');
  const menuId = 'nav-menu';
  const toggle = h(
    'button',
    { type: 'button', id: 'nav-toggle', class: 'nav-toggle', 'aria-expanded': 'false', 'aria-controls': menuId, 'aria-label': 'Menu' },
    h('span', { class: 'nav-toggle-bar' }),
    h('span', { class: 'nav-toggle-bar' }),
    h('span', { class: 'nav-toggle-bar' }),
  );
  const links = h(
    'ul',
    { class: 'nav-links' },
    LINKS.map((l) =>
      h(
        'li',
        null,
        h('a', { href: l.href, id: `nav-${l.id}`, 'aria-current': l.id === active ? 'page' : null, class: l.id === active ? 'active' : null }, l.label),
      ),
    ),
  );
  const logoutBtn = h('button', { type: 'button', id: 'logout', class: 'btn btn-ghost btn-small' }, 'Log out');
  logoutBtn.addEventListener('click', logout);
  const user = h(
    'div',
    { class: 'nav-user' },
    h('span', { id: 'user-email', class: 'nav-email', title: 'Signed in' }, '\u00a0'),
    logoutBtn,
  );
  const menu = h('div', { id: menuId, class: 'nav-menu' }, links, user);
  toggle.addEventListener('click', () => {
    const open = nav.classList.toggle('nav-open');
    toggle.setAttribute('aria-expanded', String(open));
  });
  replace(nav, h('nav', { class: 'nav-inner', 'aria-label': 'Main' }, brand(), toggle, menu));
}

function renderPublicNav(which) {
  const nav = document.getElementById('nav');
  const other =
    which === 'login'
      ? h('a', { href: '/signup', class: 'btn btn-small' }, 'Create an account')
      : h('a', { href: '/login', class: 'btn btn-small' }, 'Log in');
  replace(nav, h('nav', { class: 'nav-inner', 'aria-label': 'Main' }, brand(), h('div', { class: 'nav-public' }, other)));
}

/** Shows (or with null, hides) the page-level alert, with an optional retry. */
export function pageAlert(message, { retry, kind = 'error' } = {}) {
  let el = document.getElementById('page-alert');
  if (!el) {
    el = h('div', { id: 'page-alert', class: 'alert', role: 'alert', hidden: true });
    const main = document.querySelector('main');
    main.prepend(el);
  }
  if (!message) {
    el.hidden = true;
    replace(el);
    return;
  }
  el.className = `alert alert-${kind}`;
  replace(
    el,
    h('span', null, message),
    retry ? h('button', { type: 'button', class: 'btn btn-small', onclick: retry }, 'Retry') : null,
  );
  el.hidden = false;
}

/**
 * Sets up a signed-in page: nav bar, current user. Resolves with the
 * /auth/me answer; a 401 has already redirected to /login.
 */
export async function initAppPage(active) {
  renderAppNav(active);
  for (;;) {
    try {
      const me = await api.me();
      const email = document.getElementById('user-email');
      email.textContent = me.user?.email || '';
      email.title = me.user?.name ? `${me.user.name} <${me.user.email}>` : me.user?.email || '';
      return me;
    } catch (err) {
      if (err.status === 401) return new Promise(() => {}); // redirecting
      await new Promise((resolve) => pageAlert(err.message, { retry: () => { pageAlert(null); resolve(); } }));
    }
  }
}

/** Switches the nav to the signed-in bar (after signup, on the same page). */
export function showSignedIn(user, active = null) {
  renderAppNav(active);
  const email = document.getElementById('user-email');
  email.textContent = user?.email || '';
  email.title = user?.email || '';
}

/** Sets up /login or /signup. */
export function initPublicPage(which) {
  renderPublicNav(which);
}

/** Wraps a promise-returning loader so failures show the page alert with Retry. */
export async function guarded(loader) {
  try {
    const out = await loader();
    pageAlert(null);
    return out;
  } catch (err) {
    if (err && (err.status === 401 || err.name === 'AbortError')) return undefined;
    pageAlert(err.message || String(err), { retry: () => guarded(loader) });
    return undefined;
  }
}
