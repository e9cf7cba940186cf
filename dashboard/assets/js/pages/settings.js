// /settings: API keys (list, create → shown once, revoke with confirmation),
// provider keys for managed mode (set, replace, remove), account, log out.

import * as api from '../api.js';
import { $, h, replace, badge, confirmDialog, copyButton, loadingRow, messageRow, toast } from '../dom.js';
import * as fmt from '../format.js';
import { initAppPage, logout, pageAlert } from '../layout.js';

const keysBody = $('#api-keys tbody');
const providerBody = $('#provider-keys tbody');
const createForm = $('#create-key-form');
const createBtn = $('#create-key');
const keyName = $('#key-name');
const newKeyPanel = $('#new-key-panel');
const newKey = $('#new-key');
let shownKeyId = null; // the key in the "copy it now" panel

replace(keysBody, loadingRow(6, 'Loading keys\u2026'));
replace(providerBody, loadingRow(4, 'Loading provider keys\u2026'));

let me = await initAppPage('settings');
renderAccount(me);
renderKeys(me.api_keys || []);
loadProviderKeys();
api.proxyUrl().then((url) => {
  $('#account-proxy').textContent = url;
});
$('#settings-logout').addEventListener('click', logout);

// ---- account ----

function renderAccount(m) {
  $('#account-email').textContent = m.user?.email || '\u2014';
  $('#account-name').textContent = m.user?.name || '\u2014';
  $('#account-id').textContent = m.user?.id || '\u2014';
}

// ---- API keys ----

async function reloadKeys() {
  try {
    me = await api.me();
    renderKeys(me.api_keys || []);
  } catch (err) {
    if (err.status !== 401) pageAlert(err.message, { retry: () => { pageAlert(null); reloadKeys(); } });
  }
}

function renderKeys(keys) {
  const list = [...keys].sort((a, b) => Number(a.revoked) - Number(b.revoked) || String(b.created_at).localeCompare(String(a.created_at)));
  if (!list.length) {
    replace(keysBody, messageRow(6, 'No API keys. Create one to start metering calls.'));
    return;
  }
  replace(
    keysBody,
    list.map((k) => {
      const revoke = k.revoked
        ? null
        : h(
            'button',
            {
              type: 'button',
              class: 'btn btn-small btn-danger-ghost revoke-key',
              id: `revoke-${k.id}`,
              'data-testid': 'revoke-key',
              'data-key-id': k.id,
              'aria-label': `Revoke key ${k.name || k.prefix}`,
            },
            'Revoke',
          );
      revoke?.addEventListener('click', () => revokeKey(k, revoke));
      return h(
        'tr',
        { 'data-key-id': k.id, class: k.revoked ? 'row-revoked' : null },
        h('td', null, k.name || h('span', { class: 'muted' }, 'Unnamed')),
        h('td', { class: 'mono nowrap' }, `${k.prefix}\u2026`),
        h('td', { class: 'nowrap hide-sm', title: fmt.dateTimeLong(k.created_at) }, fmt.date(k.created_at)),
        h('td', { class: 'nowrap hide-sm', title: k.last_used_at ? fmt.dateTimeLong(k.last_used_at) : 'Never used' }, k.last_used_at ? fmt.relative(k.last_used_at) : h('span', { class: 'muted' }, 'Never')),
        h('td', { class: 'hide-sm' }, k.revoked ? badge('Revoked', 'neutral') : badge('Active', 'success')),
        // Phones have no Status column: a revoked key says so where its button was.
        h('td', { class: 'actions' }, revoke || h('span', { class: 'show-sm' }, badge('Revoked', 'neutral'))),
      );
    }),
  );
}

createForm.addEventListener('submit', async (evt) => {
  evt.preventDefault();
  createBtn.disabled = true;
  createBtn.textContent = 'Creating\u2026';
  try {
    const created = await api.createApiKey(keyName.value.trim());
    keyName.value = '';
    shownKeyId = created.id;
    newKey.textContent = created.key;
    newKeyPanel.hidden = false;
    $('#copy-key').replaceWith(copyButton(() => created.key, { id: 'copy-key', label: 'Copy key' }));
    $('#copy-key').classList.add('btn-primary');
    newKeyPanel.scrollIntoView({ block: 'nearest' });
    await reloadKeys();
  } catch (err) {
    toast(`Could not create the key: ${err.message}`, 'error');
  } finally {
    createBtn.disabled = false;
    createBtn.textContent = 'Create key';
  }
});

function hideNewKey() {
  shownKeyId = null;
  newKey.textContent = '';
  newKeyPanel.hidden = true;
}

$('#dismiss-key').addEventListener('click', hideNewKey);

async function revokeKey(k, button) {
  const label = k.name ? `\u201c${k.name}\u201d (${k.prefix}\u2026)` : `${k.prefix}\u2026`;
  const ok = await confirmDialog({
    title: 'Revoke this key?',
    message: `Apps using ${label} will get 401 errors at once. This can't be undone.`,
    confirmLabel: 'Revoke key',
    danger: true,
  });
  if (!ok) return;
  button.disabled = true;
  button.textContent = 'Revoking\u2026';
  try {
    await api.revokeApiKey(k.id);
    // A revoked key is no use to copy.
    if (k.id === shownKeyId) hideNewKey();
    toast('Key revoked.', 'success');
    await reloadKeys();
  } catch (err) {
    toast(`Could not revoke the key: ${err.message}`, 'error');
    button.disabled = false;
    button.textContent = 'Revoke';
  }
}

// ---- provider keys ----

async function loadProviderKeys() {
  try {
    const stored = await api.providerKeys();
    renderProviderKeys(stored || []);
  } catch (err) {
    if (err.status === 401) return;
    replace(providerBody, messageRow(4, `Could not load provider keys: ${err.message}`, 'error'));
  }
}

function renderProviderKeys(stored) {
  const byProvider = new Map(stored.map((p) => [p.provider, p]));
  replace(
    providerBody,
    fmt.PROVIDERS.map((p) => providerRow(p, byProvider.get(p))),
  );
}

function providerRow(provider, stored) {
  const name = fmt.providerName(provider);
  const row = h('tr', { 'data-provider': provider, class: stored ? 'row-set' : null });
  const status = stored
    ? h('span', null, badge('Set', 'success'), ' ', h('span', { class: 'mono muted' }, `\u2022\u2022\u2022\u2022${stored.last4 || ''}`))
    : h('span', { class: 'muted' }, 'Not set');
  const edit = h('button', { type: 'button', class: 'btn btn-small', id: `provider-edit-${provider}`, 'aria-label': `${stored ? 'Replace' : 'Set'} ${name} key` }, stored ? 'Replace' : 'Set key');
  const remove = stored
    ? h('button', { type: 'button', class: 'btn btn-small btn-danger-ghost', id: `provider-remove-${provider}`, 'aria-label': `Remove ${name} key` }, 'Remove')
    : null;
  const actions = h('td', { class: 'actions' }, edit, remove);
  replace(
    row,
    h('td', { class: 'nowrap strong' }, name),
    h('td', null, status),
    h('td', { class: 'nowrap muted hide-sm', title: stored ? fmt.dateTimeLong(stored.updated_at) : undefined }, stored ? fmt.relative(stored.updated_at) : '\u2014'),
    actions,
  );
  edit.addEventListener('click', () => openEditor(row, provider, stored));
  remove?.addEventListener('click', async () => {
    const ok = await confirmDialog({
      title: `Remove the ${name} key?`,
      message: `Managed-mode calls to ${name} will fail until you store a key again. Pass-through calls are not affected.`,
      confirmLabel: 'Remove key',
      danger: true,
    });
    if (!ok) return;
    remove.disabled = true;
    try {
      await api.removeProviderKey(provider);
      toast(`${name} key removed.`, 'success');
      await loadProviderKeys();
    } catch (err) {
      toast(`Could not remove the key: ${err.message}`, 'error');
      remove.disabled = false;
    }
  });
  return row;
}

function openEditor(row, provider, stored) {
  const name = fmt.providerName(provider);
  const input = h('input', {
    type: 'password',
    id: `provider-key-${provider}`,
    class: 'grow',
    autocomplete: 'off',
    spellcheck: 'false',
    placeholder: `Paste your ${name} API key`,
    'aria-label': `${name} API key`,
  });
  const save = h('button', { type: 'submit', class: 'btn btn-small btn-primary', id: `provider-save-${provider}` }, 'Save');
  const cancel = h('button', { type: 'button', class: 'btn btn-small btn-ghost' }, 'Cancel');
  const error = h('span', { class: 'small text-error', role: 'alert' });
  const form = h('form', { class: 'inline-form provider-form', novalidate: true }, input, save, cancel, error);
  const cell = h('td', { colspan: 4 }, h('div', { class: 'provider-edit-label strong' }, `${stored ? 'Replace' : 'Set'} the ${name} key`), form);
  const original = [...row.children];
  replace(row, cell);
  input.focus();
  cancel.addEventListener('click', () => replace(row, original));
  form.addEventListener('submit', async (evt) => {
    evt.preventDefault();
    const key = input.value.trim();
    if (!key) {
      error.textContent = 'Paste the key first.';
      input.focus();
      return;
    }
    save.disabled = true;
    save.textContent = 'Saving\u2026';
    error.textContent = '';
    try {
      await api.setProviderKey(provider, key);
      toast(`${name} key saved.`, 'success');
      await loadProviderKeys();
    } catch (err) {
      error.textContent = err.message;
      save.disabled = false;
      save.textContent = 'Save';
    }
  });
}
