// A device's page: its attributes and latest values, a live chart of its numeric dynamic
// attributes (readings pushed by the server), a history chart over a chosen range, the
// history report as CSV (dojot GUI 9.6), actuation, and a new device secret.
'use strict';

import { call, currentSession, devicePath, download, query } from './api.js';
import { TimeChart, follow } from './charts.js';
import { $, clear, deviceAttrs, el, isNumericType, option, saveBlob, say, show, timeText, valueText } from './dom.js';

/** Readings the live chart starts with, over all its attributes. */
const LIVE_HISTORY = 300;

let device = null;
let liveChart = null;
let historyChart = null;
let feed = null;
let wired = false;

function latestCells(attr) {
  const row = document.querySelector(`#device-attrs tr[data-attr="${CSS.escape(attr)}"]`);
  return row ? [row.querySelector('.latest'), row.querySelector('.at')] : [null, null];
}

function showLatest(attr, value, at) {
  const [valueCell, atCell] = latestCells(attr);
  if (!valueCell) return;
  valueCell.textContent = valueText(value);
  atCell.textContent = timeText(at);
}

function renderAttrs(attrs) {
  const body = clear($('device-attrs').tBodies[0]);
  for (const a of attrs) {
    const fixed = a.type === 'static' && a.static_value !== undefined;
    body.append(el('tr', { data: { attr: a.label } },
      el('td', { text: a.label }),
      el('td', { text: a.type }),
      el('td', { text: a.value_type }),
      el('td', { class: 'latest', text: fixed ? valueText(a.static_value) : '' }),
      el('td', { class: 'at' })));
  }
}

function renderHistoryForm(attrs) {
  const box = clear($('history-attrs'));
  for (const a of attrs.filter((x) => x.type !== 'meta')) {
    box.append(el('label', {},
      el('input', { type: 'checkbox', name: 'history-attr', value: a.label, checked: isNumericType(a.value_type) }),
      a.label));
  }
  const hourAgo = new Date(Date.now() - 3600 * 1000);
  $('history-from').value = localInput(hourAgo);
  $('history-to').value = '';
}

/** A date as a datetime-local input shows it (local time, to the second). */
function localInput(d) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A datetime-local input's value (local time) as ISO 8601 UTC; '' for none. */
function isoFromInput(id) {
  const v = $(id).value;
  return v ? new Date(v).toISOString() : '';
}

function rangeParams() {
  const attr = [...document.querySelectorAll('#history-attrs input:checked')].map((i) => i.value);
  if (attr.length === 0) throw new Error('Choose at least one attribute.');
  return { attr, from: isoFromInput('history-from'), to: isoFromInput('history-to') };
}

async function showHistory(e) {
  e.preventDefault();
  say('history-error', null);
  show('history-note', false);
  try {
    const params = rangeParams();
    const numeric = new Set(deviceAttrs(device).filter((a) => isNumericType(a.value_type)).map((a) => a.label));
    const labels = params.attr.filter((l) => numeric.has(l));
    if (labels.length === 0) throw new Error('Charts draw numbers: choose an integer or float attribute.');
    const { points, truncated } = await call('GET', devicePath(device.id, `/history${query({ ...params, attr: labels })}`));
    if (historyChart) historyChart.destroy();
    historyChart = new TimeChart($('history-chart'), labels);
    historyChart.set(points);
    $('history-note').textContent = `${points.length} readings`
      + (truncated ? '; older ones in this range are left out: choose a shorter range to see them.' : '.');
    show('history-note', true);
  } catch (err) {
    say('history-error', err);
  }
}

async function downloadReport() {
  say('history-error', null);
  try {
    const { blob, name } = await download(devicePath(device.id, `/report.csv${query(rangeParams())}`));
    saveBlob(name, blob);
  } catch (err) {
    say('history-error', err);
  }
}

function renderActuation(attrs) {
  const box = clear($('actuate-fields'));
  const actuators = attrs.filter((a) => a.type === 'actuator');
  for (const a of actuators) {
    const id = `actuate-${a.label}`;
    const input = a.value_type === 'bool'
      ? el('select', { id, data: { attr: a.label, type: a.value_type } }, option('', ''), option('true', 'true'), option('false', 'false'))
      : el('input', {
        id, data: { attr: a.label, type: a.value_type },
        type: isNumericType(a.value_type) ? 'number' : 'text', step: a.value_type === 'float' ? 'any' : undefined,
      });
    box.append(el('label', { for: id, text: `${a.label} (${a.value_type})` }), input);
  }
  show('actuate-none', actuators.length === 0);
  show('actuate-send', actuators.length > 0);
}

/** The value a field holds, as its value type wants it; undefined when left empty. */
function fieldValue(input) {
  const text = input.value.trim();
  if (text === '') return undefined;
  switch (input.dataset.type) {
    case 'integer':
    case 'float': {
      const n = Number(text);
      if (!Number.isFinite(n) || (input.dataset.type === 'integer' && !Number.isInteger(n))) {
        throw new Error(`${input.dataset.attr}: not a valid ${input.dataset.type}`);
      }
      return n;
    }
    case 'bool': return text === 'true';
    case 'object':
      try { return JSON.parse(text); } catch (_) { throw new Error(`${input.dataset.attr}: not valid JSON`); }
    default: return text;
  }
}

async function actuate(e) {
  e.preventDefault();
  say('actuate-error', null);
  show('actuate-done', false);
  try {
    const attrs = {};
    for (const input of $('actuate-fields').querySelectorAll('[data-attr]')) {
      const value = fieldValue(input);
      if (value !== undefined) attrs[input.dataset.attr] = value;
    }
    if (Object.keys(attrs).length === 0) throw new Error('Enter a value for at least one attribute.');
    await call('PUT', devicePath(device.id, '/actuate'), { attrs });
    $('actuate-done').textContent = `Sent to the device: ${Object.entries(attrs).map(([k, v]) => `${k} = ${valueText(v)}`).join(', ')}.`;
    show('actuate-done', true);
  } catch (err) {
    say('actuate-error', err);
  }
}

async function newSecret() {
  say('secret-error', null);
  show('secret-copied', false);
  try {
    const { secret } = await call('POST', devicePath(device.id, '/secret'), {});
    $('secret-value').textContent = secret;
    show('secret-box', true);
  } catch (err) {
    say('secret-error', err);
  }
}

async function newCertificate() {
  say('certificate-error', null);
  show('certificate-done', false);
  try {
    const files = await call('POST', devicePath(device.id, '/certificate'), {});
    const pem = (text) => new Blob([text], { type: 'application/x-pem-file' });
    saveBlob(`${device.id}-cert.pem`, pem(files.certificate));
    saveBlob(`${device.id}-private.key`, pem(files.privateKey));
    saveBlob('ca.pem', pem(files.ca));
    $('certificate-done').textContent = `Saved ${device.id}-cert.pem, ${device.id}-private.key and ca.pem (certificate ${files.fingerprint}).`;
    show('certificate-done', true);
  } catch (err) {
    say('certificate-error', err);
  }
}

async function copySecret() {
  const text = $('secret-value').textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // Without clipboard access: select it, for Ctrl+C.
    window.getSelection().selectAllChildren($('secret-value'));
    return;
  }
  show('secret-copied', true);
}

/** The live chart: opens the stream first, then fills in recent history, so that no
 *  reading falls between the two (one seen twice is drawn once: same time, same value).
 *  When the server says readings were missed, the recent history is read again. */
async function startLive(attrs) {
  const labels = attrs.filter((a) => a.type === 'dynamic' && isNumericType(a.value_type)).map((a) => a.label);
  show('live-none', labels.length === 0);
  const chart = labels.length ? new TimeChart($('live-chart'), labels) : null;
  liveChart = chart;
  const id = device.id;
  let early = []; // readings that arrive before the history: added after it
  const recent = async () => {
    if (!chart) return;
    const { points } = await call('GET', devicePath(id, `/history${query({ attr: labels, limit: LIVE_HISTORY })}`));
    chart.set(points);
  };
  feed = follow(id, {
    onReading: (data) => {
      for (const [attr, value] of Object.entries(data.attrs || {})) showLatest(attr, value, data.metadata.timestamp);
      if (!chart) return;
      if (early) early.push(data);
      else chart.addReading(data);
    },
    onGap: () => recent().catch((err) => say('device-error', err)),
    onStatus: (words) => { $('live-status').textContent = words; },
  });
  await recent();
  const buffered = early || [];
  early = null;
  buffered.forEach((d) => chart && chart.addReading(d));
}

export async function enter({ id }) {
  if (!wired) {
    $('history-form').addEventListener('submit', showHistory);
    $('report-download').addEventListener('click', downloadReport);
    $('actuate-form').addEventListener('submit', actuate);
    $('secret-generate').addEventListener('click', newSecret);
    $('secret-copy').addEventListener('click', copySecret);
    $('certificate-generate').addEventListener('click', newCertificate);
    wired = true;
  }
  for (const idOf of ['device-error', 'history-error', 'actuate-error', 'secret-error', 'certificate-error']) say(idOf, null);
  show('certificate-done', false);
  show('secret-box', false);
  show('actuate-done', false);
  show('history-note', false);
  try {
    device = await call('GET', devicePath(id));
  } catch (err) {
    $('device-title').textContent = `Device ${id}`;
    say('device-error', err);
    return;
  }
  const attrs = deviceAttrs(device);
  $('device-title').textContent = `${device.label} (${device.id})`;
  $('device-mqtt-user').textContent = `${currentSession().tenant}:${device.id}`;
  renderAttrs(attrs);
  renderHistoryForm(attrs);
  renderActuation(attrs);
  try {
    const latest = await call('GET', devicePath(id, '/latest'));
    for (const p of latest) showLatest(p.attr, p.value, p.ts);
    await startLive(attrs);
  } catch (err) {
    say('device-error', err);
  }
}

export function leave() {
  if (feed) feed.close();
  feed = null;
  for (const chart of [liveChart, historyChart]) if (chart) chart.destroy();
  liveChart = null;
  historyChart = null;
  device = null;
  $('secret-value').textContent = '';
  show('secret-box', false);
}
