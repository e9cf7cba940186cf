// Small DOM helpers. Everything the pages show is built with these (text goes
// in as text nodes, never as HTML), so a customer id or model name can't
// inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function applyAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'text') el.textContent = value;
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Creates an HTML element: h('a', {href: '/'}, 'Home'). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

/** Creates an SVG element. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  append(el, children);
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

export function $$(selector, root = document) {
  return Array.from(root.querySelectorAll(selector));
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function show(el, visible = true) {
  if (el) el.hidden = !visible;
}

/** A short message at the bottom of the screen. kind: 'info' | 'success' | 'error'. */
export function toast(message, kind = 'info') {
  let region = document.getElementById('toasts');
  if (!region) {
    region = h('div', { id: 'toasts', class: 'toasts', role: 'status', 'aria-live': 'polite' });
    document.body.append(region);
  }
  const item = h('div', { class: ['toast', `toast-${kind}`] }, message);
  region.append(item);
  setTimeout(() => item.classList.add('toast-leaving'), 3500);
  setTimeout(() => item.remove(), 4000);
}

/** Copies text to the clipboard, with a fallback for non-secure origins. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the legacy path
    }
  }
  const area = h('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true' });
  area.value = text;
  document.body.append(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/** A button that copies `getText()` and says so. */
export function copyButton(getText, { id, label = 'Copy', testid } = {}) {
  const btn = h('button', { type: 'button', class: 'btn btn-small', id, 'data-testid': testid }, label);
  btn.addEventListener('click', async () => {
    const ok = await copyText(getText());
    btn.textContent = ok ? 'Copied!' : 'Press Ctrl+C';
    btn.classList.toggle('btn-done', ok);
    setTimeout(() => {
      btn.textContent = label;
      btn.classList.remove('btn-done');
    }, 1800);
  });
  return btn;
}

/**
 * Asks for confirmation in a modal dialog. Resolves true when confirmed.
 * The dialog has ids #confirm-dialog, #confirm-ok and #confirm-cancel.
 */
export function confirmDialog({ title, message, confirmLabel = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    document.getElementById('confirm-dialog')?.remove();
    const ok = h('button', { type: 'button', id: 'confirm-ok', class: ['btn', danger ? 'btn-danger' : 'btn-primary'] }, confirmLabel);
    const cancel = h('button', { type: 'button', id: 'confirm-cancel', class: 'btn' }, 'Cancel');
    const dialog = h(
      'dialog',
      { id: 'confirm-dialog', class: 'dialog', 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, title),
      h('p', null, message),
      h('div', { class: 'dialog-actions' }, cancel, ok),
    );
    let answered = false;
    const finish = (value) => {
      if (answered) return;
      answered = true;
      if (dialog.open) dialog.close();
      dialog.remove();
      resolve(value);
    };
    ok.addEventListener('click', () => finish(true));
    cancel.addEventListener('click', () => finish(false));
    dialog.addEventListener('cancel', () => finish(false));
    dialog.addEventListener('close', () => finish(false));
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** A loading row for a table body. */
export function loadingRow(cols, text = 'Loading\u2026') {
  return h('tr', { class: 'row-message' }, h('td', { colspan: cols }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' ', text));
}

/** A message row (empty or error) for a table body. */
export function messageRow(cols, text, kind = 'empty') {
  return h('tr', { class: ['row-message', `row-${kind}`] }, h('td', { colspan: cols }, text));
}

/** A status pill. */
export function badge(text, kind = 'neutral', title) {
  return h('span', { class: ['badge', `badge-${kind}`], title }, text);
}

/** A horizontal share bar (0..1); width set through CSSOM, which the CSP allows. */
export function shareBar(share) {
  const fill = h('span', { class: 'share-fill' });
  fill.style.width = `${Math.max(0, Math.min(1, share || 0)) * 100}%`;
  return h('span', { class: 'share-bar', 'aria-hidden': 'true' }, fill);
}
