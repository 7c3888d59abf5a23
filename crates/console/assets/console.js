// Ingot console: the seats dashboard. No framework, no inline script (strict CSP);
// everything the server sends is written with textContent, never parsed as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
let csrf = null;
let events = null;
let current = null; // the account shown

async function call(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (csrf) headers['X-CSRF-Token'] = csrf;
  const resp = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = resp.status === 204 ? null : await resp.json().catch(() => null);
  if (!resp.ok) throw Object.assign(new Error((data && data.error) || resp.statusText), { status: resp.status });
  return data;
}

function show(id, visible) { $(id).hidden = !visible; }

function showLogin(message) {
  csrf = null;
  if (events) { events.close(); events = null; }
  show('dashboard-view', false); show('who', false); show('logout', false);
  show('login-view', true);
  $('login-error').textContent = message || '';
  show('login-error', Boolean(message));
}

async function showDashboard(session) {
  csrf = session.csrf;
  $('who').textContent = `${session.username} (${session.tenant})`;
  show('login-view', false); show('who', true); show('logout', true); show('dashboard-view', true);
  const { accounts } = await call('GET', '/console/api/accounts');
  accounts.forEach(addAccountOption);
  show('no-accounts', accounts.length === 0);
  listen();
}

function addAccountOption(account) {
  const select = $('account');
  if ([...select.options].some((o) => o.value === account.account_id)) return;
  const option = document.createElement('option');
  option.value = account.account_id;
  option.textContent = account.account_id;
  select.appendChild(option);
  show('no-accounts', false);
}

function render(account) {
  current = account;
  show('account-card', true);
  $('plan').textContent = account.plan;
  $('users').textContent = `Users: ${account.users}/${account.limit}`;
  $('progress').max = account.limit;
  $('progress').value = Math.min(account.users, account.limit);
  const atLimit = account.users >= account.limit;
  show('limit-alert', atLimit);
  show('upgrade', atLimit && account.plan !== 'Enterprise Plan');
}

// Server push: one stream of account changes for the tenant.
function listen() {
  if (events) events.close();
  events = new EventSource('/console/api/events');
  events.addEventListener('account', (e) => {
    const account = JSON.parse(e.data);
    addAccountOption(account);
    if (current && current.account_id === account.account_id) render(account);
  });
}

async function choose(accountId) {
  show('upgrade-success', false); show('account-error', false);
  if (!accountId) { show('account-card', false); current = null; return; }
  try {
    render(await call('GET', `/console/api/accounts/${encodeURIComponent(accountId)}`));
  } catch (err) {
    $('account-error').textContent = err.message; show('account-error', true);
  }
}

async function upgrade() {
  if (!current) return;
  try {
    const account = await call('POST', `/console/api/accounts/${encodeURIComponent(current.account_id)}/upgrade`, {});
    render(account);
    show('upgrade-success', true);
  } catch (err) {
    if (err.status === 401) return showLogin('Your session has ended; please sign in again.');
    $('account-error').textContent = err.message; show('account-error', true);
  }
}

document.addEventListener('DOMContentLoaded', async () => {
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const session = await call('POST', '/console/api/login', { login: $('login').value, password: $('password').value });
      $('password').value = '';
      await showDashboard(session);
    } catch (err) {
      showLogin(err.status === 429 ? err.message : 'Wrong user name or password.');
    }
  });
  $('logout').addEventListener('click', async () => {
    try { await call('POST', '/console/api/logout', {}); } finally { showLogin(); }
  });
  $('account').addEventListener('change', (e) => choose(e.target.value));
  $('upgrade').addEventListener('click', upgrade);
  try {
    await showDashboard(await call('GET', '/console/api/session'));
  } catch (_) {
    showLogin();
  }
});
