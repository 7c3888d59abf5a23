// The seats page (User Management Dashboard, fakeiot): an account's plan and users,
// live over Server-Sent Events (/console/api/events), and the plan upgrade.
'use strict';

import { call } from './api.js';
import { $, option, say, show } from './dom.js';

let events = null;
let current = null; // the account shown
let wired = false;

function addAccountOption(account) {
  const select = $('account');
  if ([...select.options].some((o) => o.value === account.account_id)) return;
  select.append(option(account.account_id, account.account_id));
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

async function choose(accountId) {
  show('upgrade-success', false); say('account-error', null);
  if (!accountId) { show('account-card', false); current = null; return; }
  try {
    render(await call('GET', `/console/api/accounts/${encodeURIComponent(accountId)}`));
  } catch (err) {
    say('account-error', err);
  }
}

async function upgrade() {
  if (!current) return;
  try {
    render(await call('POST', `/console/api/accounts/${encodeURIComponent(current.account_id)}/upgrade`, {}));
    show('upgrade-success', true);
  } catch (err) {
    say('account-error', err);
  }
}

export async function enter() {
  if (!wired) {
    $('account').addEventListener('change', (e) => choose(e.target.value));
    $('upgrade').addEventListener('click', upgrade);
    wired = true;
  }
  const { accounts } = await call('GET', '/console/api/accounts');
  accounts.forEach(addAccountOption);
  show('no-accounts', $('account').options.length === 1);
  if (current) choose(current.account_id);
  // Server push: one stream of account changes for the tenant.
  events = new EventSource('/console/api/events');
  events.addEventListener('account', (e) => {
    const account = JSON.parse(e.data);
    addAccountOption(account);
    if (current && current.account_id === account.account_id) render(account);
  });
}

export function leave() {
  if (events) events.close();
  events = null;
}
