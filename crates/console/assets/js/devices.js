// The devices page: search by label, pages, create a device from one or more templates,
// delete; a device's own page is #/device/{id}.
'use strict';

import { call, query } from './api.js';
import { $, clear, el, say, show } from './dom.js';

const PAGE_SIZE = 20;

const state = { label: '', page: 1, pages: 0 };
let wired = false;

async function load() {
  say('devices-error', null);
  try {
    const params = { label: state.label, page_num: state.page, page_size: PAGE_SIZE, sortBy: 'label' };
    const { devices, pagination } = await call('GET', `/console/api/devices${query(params)}`);
    if (devices.length === 0 && state.page > 1 && state.page > pagination.total) {
      // The last page emptied (a deletion): show the one before.
      state.page = Math.max(pagination.total, 1);
      return load();
    }
    state.pages = pagination.total;
    const body = clear($('devices-table').tBodies[0]);
    for (const d of devices) {
      body.append(el('tr', { data: { id: d.id } },
        el('td', {}, el('a', { href: `#/device/${encodeURIComponent(d.id)}`, text: d.id })),
        el('td', { text: d.label }),
        el('td', { text: (d.templates || []).join(', ') }),
        el('td', { class: 'actions' },
          el('button', { type: 'button', class: 'small danger', text: 'Delete', on: { click: () => remove(d) } }))));
    }
    show('devices-empty', devices.length === 0);
    $('devices-page').textContent = state.pages ? `Page ${state.page} of ${state.pages}` : '';
    $('devices-prev').disabled = state.page <= 1;
    $('devices-next').disabled = !pagination.has_next;
  } catch (err) {
    say('devices-error', err);
  }
}

async function loadTemplates() {
  const box = clear($('device-templates'));
  const { templates } = await call('GET', '/console/api/templates?page_size=1000&sortBy=label');
  for (const t of templates) {
    box.append(el('label', {},
      el('input', { type: 'checkbox', name: 'template', value: t.id }),
      `${t.label} (${t.id})`));
  }
  show('device-no-templates', templates.length === 0);
}

async function create(e) {
  e.preventDefault();
  say('device-form-error', null);
  const templates = [...document.querySelectorAll('#device-templates input:checked')].map((i) => i.value);
  if (templates.length === 0) return say('device-form-error', 'Choose at least one template.');
  try {
    const { devices } = await call('POST', '/console/api/devices', { label: $('device-label').value.trim(), templates });
    $('device-label').value = '';
    window.location.hash = `#/device/${encodeURIComponent(devices[0].id)}`;
  } catch (err) {
    say('device-form-error', err);
  }
}

async function remove(device) {
  if (!window.confirm(`Delete device ${device.label} (${device.id})? Its history goes too.`)) return;
  try {
    await call('DELETE', `/console/api/devices/${encodeURIComponent(device.id)}`);
    await load();
  } catch (err) {
    say('devices-error', err);
  }
}

export async function enter() {
  if (!wired) {
    $('device-search').addEventListener('submit', (e) => {
      e.preventDefault();
      state.label = $('device-search-label').value.trim();
      state.page = 1;
      load();
    });
    $('devices-prev').addEventListener('click', () => { state.page -= 1; load(); });
    $('devices-next').addEventListener('click', () => { state.page += 1; load(); });
    $('device-form').addEventListener('submit', create);
    wired = true;
  }
  await Promise.all([load(), loadTemplates().catch((err) => say('device-form-error', err))]);
}

export function leave() {}
