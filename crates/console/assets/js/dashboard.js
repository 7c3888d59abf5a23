// The dashboard page (dojot GUI 9.7): the user places line charts (a device and some of
// its numeric attributes) and value tiles (a device and one attribute, its latest value),
// adds, removes and reorders them. The layout is kept on the server, per user
// (/console/api/dashboard), and saved whole on every change; readings arrive live.
'use strict';

import { call, devicePath, query } from './api.js';
import { TimeChart, follow } from './charts.js';
import { $, clear, deviceAttrs, el, isNumericType, option, say, show, timeText, valueText } from './dom.js';

/** Readings a chart starts with. */
const CHART_HISTORY = 300;

let layout = { widgets: [] };
let devices = new Map(); // id → device (or null: not found)
let charts = [];
let feeds = [];
let wired = false;
let generation = 0; // renders started; an older one stops when a newer one starts

function widgetAttrs(w) { return w.type === 'chart' ? w.attrs : [w.attr]; }

async function deviceInfo(id) {
  if (!devices.has(id)) {
    devices.set(id, await call('GET', devicePath(id)).catch((err) => (err.status === 404 ? null : Promise.reject(err))));
  }
  return devices.get(id);
}

async function save(next) {
  say('dashboard-error', null);
  try {
    layout = await call('PUT', '/console/api/dashboard', next);
  } catch (err) {
    say('dashboard-error', err);
  }
  await render();
}

function move(index, by) {
  const widgets = [...layout.widgets];
  const [w] = widgets.splice(index, 1);
  widgets.splice(index + by, 0, w);
  return save({ widgets });
}

function removeAt(index) {
  return save({ widgets: layout.widgets.filter((_, i) => i !== index) });
}

function stop() {
  feeds.forEach((f) => f.close());
  charts.forEach((c) => c.destroy());
  feeds = [];
  charts = [];
}

function card(w, index, device, body) {
  const count = layout.widgets.length;
  const title = `${device ? device.label : `${w.device} (not found)`} · ${widgetAttrs(w).join(', ')}`;
  const button = (text, label, onClick, disabled) =>
    el('button', { type: 'button', class: 'small secondary', text, 'aria-label': label, disabled, on: { click: onClick } });
  return el('div', {
    class: `widget ${w.type}-widget`, data: { type: w.type, device: w.device, attrs: widgetAttrs(w).join(',') },
  },
  el('header', {},
    el('h3', { text: title }),
    button('↑', 'Move up', () => move(index, -1), index === 0),
    button('↓', 'Move down', () => move(index, 1), index === count - 1),
    button('✕', 'Remove', () => removeAt(index), false)),
  body);
}

async function render() {
  const mine = ++generation;
  stop();
  const box = clear($('widgets'));
  show('dashboard-empty', layout.widgets.length === 0);
  const live = new Map(); // device id → [handler]
  const latest = new Map(); // device id → promise of its latest values
  for (const [index, w] of layout.widgets.entries()) {
    let device;
    try { device = await deviceInfo(w.device); } catch (err) { say('dashboard-error', err); }
    if (mine !== generation) return;
    if (w.type === 'tile') {
      const value = el('p', { class: 'value', text: '–' });
      const at = el('p', { class: 'at muted' });
      box.append(card(w, index, device, el('div', {}, value, at)));
      if (!device) continue;
      const put = (v, t) => { value.textContent = valueText(v); at.textContent = timeText(t); };
      if (!latest.has(w.device)) latest.set(w.device, call('GET', devicePath(w.device, '/latest')).catch(() => []));
      latest.get(w.device).then((points) => {
        const p = points.find((x) => x.attr === w.attr);
        if (p && mine === generation) put(p.value, p.ts);
      });
      addLive(live, w.device, (data) => {
        if (data.attrs && w.attr in data.attrs) put(data.attrs[w.attr], data.metadata.timestamp);
      });
    } else {
      const container = el('div', { class: 'chart', data: { points: '0' } });
      box.append(card(w, index, device, container));
      if (!device) continue;
      const chart = new TimeChart(container, w.attrs);
      charts.push(chart);
      addLive(live, w.device, (data) => chart.addReading(data));
      call('GET', devicePath(w.device, `/history${query({ attr: w.attrs, limit: CHART_HISTORY })}`))
        .then(({ points }) => chart.add(points))
        .catch((err) => say('dashboard-error', err));
    }
  }
  // One stream per device, shared by its widgets; after missed readings, everything is
  // read again.
  for (const [id, handlers] of live) {
    feeds.push(follow(id, {
      onReading: (data) => handlers.forEach((h) => h(data)),
      onGap: () => render(),
      onStatus: (words, state) => state === 'stopped' && say('dashboard-error', `${devices.get(id).label}: ${words}`),
    }));
  }
}

function addLive(live, id, handler) {
  if (!live.has(id)) live.set(id, []);
  live.get(id).push(handler);
}

async function fillAttrs() {
  const select = clear($('widget-attr'));
  const chart = $('widget-type').value === 'chart';
  select.multiple = chart;
  const id = $('widget-device').value;
  if (!id) return;
  try {
    const device = await deviceInfo(id);
    const attrs = deviceAttrs(device || {}).filter((a) => a.type !== 'meta' && (!chart || isNumericType(a.value_type)));
    attrs.forEach((a, i) => select.append(option(a.label, `${a.label} (${a.type}, ${a.value_type})`, i === 0)));
  } catch (err) {
    say('dashboard-error', err);
  }
}

async function fillDevices() {
  const select = clear($('widget-device'));
  const { devices: list } = await call('GET', `/console/api/devices${query({ page_size: 1000, sortBy: 'label' })}`);
  list.forEach((d) => select.append(option(d.id, `${d.label} (${d.id})`)));
  await fillAttrs();
}

function add(e) {
  e.preventDefault();
  const device = $('widget-device').value;
  const chosen = [...$('widget-attr').selectedOptions].map((o) => o.value);
  if (!device || chosen.length === 0) return say('dashboard-error', 'Choose a device and an attribute.');
  const widget = $('widget-type').value === 'chart'
    ? { type: 'chart', device, attrs: chosen }
    : { type: 'tile', device, attr: chosen[0] };
  return save({ widgets: [...layout.widgets, widget] });
}

export async function enter() {
  if (!wired) {
    $('widget-form').addEventListener('submit', add);
    $('widget-type').addEventListener('change', fillAttrs);
    $('widget-device').addEventListener('change', fillAttrs);
    wired = true;
  }
  say('dashboard-error', null);
  devices = new Map();
  try {
    [layout] = await Promise.all([call('GET', '/console/api/dashboard'), fillDevices()]);
  } catch (err) {
    say('dashboard-error', err);
  }
  await render();
}

export function leave() {
  generation++;
  stop();
}
