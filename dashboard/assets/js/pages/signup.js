// /signup: create the account, then onboarding: the new key (shown once), the
// base URLs, an optional provider key for managed mode, and ready-to-paste
// snippets filled in with this server's proxy URL and the key.

import * as api from '../api.js';
import { h, copyButton, replace } from '../dom.js';
import { PROVIDERS, providerName } from '../format.js';
import { initPublicPage, showSignedIn } from '../layout.js';
import { createSnippetPicker } from '../snippets.js';

initPublicPage('signup');

const form = document.getElementById('signup-form');
const nameInput = document.getElementById('name');
const email = document.getElementById('email');
const password = document.getElementById('password');
const error = document.getElementById('signup-error');
const submit = document.getElementById('signup-submit');

function showError(message) {
  error.textContent = message;
  error.hidden = !message;
}

form.addEventListener('submit', async (evt) => {
  evt.preventDefault();
  showError('');
  if (!email.value.trim() || !email.validity.valid) {
    showError('Enter a valid email address.');
    email.focus();
    return;
  }
  if (password.value.length < 8) {
    showError('Choose a password of at least 8 characters.');
    password.focus();
    return;
  }
  submit.disabled = true;
  submit.textContent = 'Creating your account\u2026';
  try {
    const res = await api.signup(email.value.trim(), password.value, nameInput.value.trim());
    await showOnboarding(res);
  } catch (err) {
    showError(err.status === 409 ? err.message || 'An account with this email already exists. Log in instead.' : err.message);
    submit.disabled = false;
    submit.textContent = 'Create account';
  }
});

async function showOnboarding(res) {
  const key = res.api_key?.key || '';
  const proxy = await api.proxyUrl();
  password.value = '';
  showSignedIn(res.user);
  document.getElementById('signup-card').hidden = true;
  document.getElementById('onboarding').hidden = false;
  document.title = 'Welcome \u00b7 LLMObserve';
  const who = res.user?.name || '';
  document.getElementById('onboarding-title').textContent = who ? `You're all set, ${who}` : "You're all set";

  document.getElementById('new-key').textContent = key;
  const copyKey = document.getElementById('copy-key');
  copyKey.replaceWith(copyButton(() => key, { id: 'copy-key', label: 'Copy key' }));
  document.getElementById('copy-key').classList.add('btn-primary');

  for (const [id, url] of [
    ['base-url-openai', `${proxy}/v1`],
    ['base-url-anthropic', `${proxy}/anthropic`],
    ['base-url-groq', `${proxy}/groq/v1`],
  ]) {
    const el = document.getElementById(id);
    el.textContent = url;
    if (id !== 'base-url-groq') el.after(' ', copyButton(() => url, { label: 'Copy' }));
  }

  setupProviderForm();
  createSnippetPicker(document.getElementById('onboarding-snippets'), { proxy, key });
  window.scrollTo(0, 0);
  document.getElementById('onboarding-title').focus?.();
}

function setupProviderForm() {
  const formEl = document.getElementById('onboarding-provider-form');
  const select = document.getElementById('onboarding-provider');
  const input = document.getElementById('onboarding-provider-key');
  const status = document.getElementById('onboarding-provider-status');
  const save = document.getElementById('onboarding-provider-save');
  replace(select, PROVIDERS.map((p) => h('option', { value: p }, providerName(p))));
  formEl.addEventListener('submit', async (evt) => {
    evt.preventDefault();
    const key = input.value.trim();
    if (!key) {
      status.textContent = 'Paste the provider key first.';
      status.className = 'small text-error';
      input.focus();
      return;
    }
    save.disabled = true;
    status.textContent = 'Saving\u2026';
    status.className = 'muted small';
    try {
      await api.setProviderKey(select.value, key);
      input.value = '';
      status.textContent = `Saved: ${providerName(select.value)} key ending in ${key.slice(-4)}.`;
      status.className = 'small text-success';
    } catch (err) {
      status.textContent = err.message;
      status.className = 'small text-error';
    } finally {
      save.disabled = false;
    }
  });
}

nameInput.focus();
