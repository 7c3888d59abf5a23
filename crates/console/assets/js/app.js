// Ingot console: sign-in and the pages (#/devices, #/device/{id}, #/templates,
// #/dashboard, #/flows[/{id}], #/loadtests[/{job}], #/seats). No framework and no build step: ES modules
// served as they are.
// The CSP allows no inline script or style; everything the server sends is written as
// text (dom.js), never parsed as HTML.
'use strict';

import { call, onSignedOut, setSession } from './api.js';
import { $, say, show } from './dom.js';
import * as dashboard from './dashboard.js';
import * as device from './device.js';
import * as devices from './devices.js';
import * as flows from './flows.js';
import * as loadtests from './loadtests.js';
import * as seats from './seats.js';
import * as templates from './templates.js';

/** Each page: its section, its nav entry and its module (enter(params) / leave()). */
const PAGES = {
  devices: { view: 'devices-view', nav: 'devices', module: devices },
  device: { view: 'device-view', nav: 'devices', module: device },
  templates: { view: 'templates-view', nav: 'templates', module: templates },
  dashboard: { view: 'dashboard-page', nav: 'dashboard', module: dashboard },
  flows: { view: 'flows-view', nav: 'flows', module: flows },
  loadtests: { view: 'loadtests-view', nav: 'loadtests', module: loadtests },
  seats: { view: 'seats-view', nav: 'seats', module: seats },
};

let current = null;
let signedIn = false;

/** `#/device/abc` → { page: 'device', params: { id: 'abc' } } (and `#/flows/{id}`, `#/loadtests/{job}`); unknown → devices. */
function parseHash() {
  const [name, arg] = window.location.hash.replace(/^#\/?/, '').split('/');
  if ((name === 'device' || name === 'flows' || name === 'loadtests') && arg) return { page: name, params: { id: decodeURIComponent(arg) } };
  return { page: PAGES[name] ? name : 'devices', params: {} };
}

async function route() {
  if (!signedIn) return;
  const { page, params } = parseHash();
  if (current) current.module.leave();
  current = PAGES[page];
  for (const p of Object.values(PAGES)) show(p.view, p === current);
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('current', a.dataset.page === current.nav);
  try {
    await current.module.enter(params);
  } catch (err) {
    // A page that could not load says so where the user looks: its first error line.
    const line = document.querySelector(`#${current.view} .error`);
    if (line) say(line.id, err);
  }
}

function showLogin(message) {
  signedIn = false;
  setSession(null);
  if (current) current.module.leave();
  current = null;
  for (const p of Object.values(PAGES)) show(p.view, false);
  show('nav', false); show('who', false); show('logout', false);
  show('login-view', true);
  say('login-error', message || null);
}

async function signIn(session) {
  setSession(session);
  signedIn = true;
  $('who').textContent = `${session.username} (${session.tenant})`;
  show('login-view', false); show('nav', true); show('who', true); show('logout', true);
  await route();
}

document.addEventListener('DOMContentLoaded', async () => {
  onSignedOut(showLogin);
  $('login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const session = await call('POST', '/console/api/login', { login: $('login').value, password: $('password').value });
      $('password').value = '';
      await signIn(session);
    } catch (err) {
      showLogin(err.status === 429 ? err.message : 'Wrong user name or password.');
    }
  });
  $('logout').addEventListener('click', async () => {
    try { await call('POST', '/console/api/logout', {}); } finally { showLogin(); }
  });
  window.addEventListener('hashchange', route);
  let session;
  try {
    session = await call('GET', '/console/api/session');
  } catch (_) {
    return showLogin();
  }
  await signIn(session);
});
