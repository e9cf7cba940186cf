// /login: email + password; a session cookie comes back and we go on.

import * as api from '../api.js';
import { initPublicPage } from '../layout.js';

initPublicPage('login');

const form = document.getElementById('login-form');
const email = document.getElementById('email');
const password = document.getElementById('password');
const error = document.getElementById('login-error');
const notice = document.getElementById('login-notice');
const submit = document.getElementById('login-submit');

const params = new URLSearchParams(location.search);
const REASONS = {
  expired: 'Your session has expired. Please log in again.',
  signed_out: 'You have been logged out.',
};
if (REASONS[params.get('reason')]) {
  notice.textContent = REASONS[params.get('reason')];
  notice.hidden = false;
}

/** Where to go after login: a same-site path only. */
function nextPath() {
  const next = params.get('next');
  if (next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') && !next.startsWith('/login')) return next;
  return '/';
}

function showError(message) {
  error.textContent = message;
  error.hidden = !message;
}

form.addEventListener('submit', async (evt) => {
  evt.preventDefault();
  showError('');
  if (!email.value.trim() || !password.value) {
    showError('Enter your email and password.');
    (email.value.trim() ? password : email).focus();
    return;
  }
  submit.disabled = true;
  submit.classList.add('loading');
  submit.textContent = 'Logging in\u2026';
  try {
    await api.login(email.value.trim(), password.value);
    location.assign(nextPath());
  } catch (err) {
    if (err.status === 401) {
      showError('Wrong email or password. Check both and try again.');
      password.select();
    } else if (err.status === 429) {
      showError(err.message || 'Too many attempts. Wait a minute and try again.');
    } else {
      showError(err.message);
    }
    password.focus();
    submit.disabled = false;
    submit.classList.remove('loading');
    submit.textContent = 'Log in';
  }
});

email.focus();
