// The templates page: list, create, edit attributes (label, type, value type, static
// value), delete. Templates are dojot's: devices are made from one or more of them.
'use strict';

import { call } from './api.js';
import { $, clear, el, option, say, show, valueText } from './dom.js';

const TYPES = ['dynamic', 'static', 'actuator'];
const VALUE_TYPES = ['float', 'integer', 'string', 'bool', 'geo:point', 'object'];

let editing = null; // the template being edited, or null for a new one
let wired = false;

function summary(t) {
  return (t.attrs || []).map((a) => `${a.label} (${a.type}, ${a.value_type})`).join(', ');
}

async function load() {
  say('templates-error', null);
  try {
    const { templates } = await call('GET', '/console/api/templates?page_size=1000&sortBy=label');
    const body = clear($('templates-table').tBodies[0]);
    for (const t of templates) {
      body.append(el('tr', { data: { id: t.id } },
        el('td', { text: t.id }),
        el('td', { text: t.label }),
        el('td', { text: summary(t) }),
        el('td', { class: 'actions' },
          el('button', { type: 'button', class: 'small secondary', text: 'Edit', on: { click: () => edit(t) } }),
          el('button', { type: 'button', class: 'small danger', text: 'Delete', on: { click: () => remove(t) } }))));
    }
    show('templates-empty', templates.length === 0);
  } catch (err) {
    say('templates-error', err);
  }
}

function select(cls, values, chosen) {
  return el('select', { class: cls, 'aria-label': cls.replace('attr-', '') },
    values.map((v) => option(v, v, v === chosen)));
}

/** One editable attribute row; `attr` fills it (an existing attribute keeps its metadata). */
function attrRow(attr = {}) {
  const row = el('tr', {},
    el('td', {}, el('input', {
      class: 'attr-label', 'aria-label': 'attribute label', required: true, maxlength: 128,
      pattern: '[A-Za-z0-9_\\-]+', title: 'letters, digits, _ and -', value: attr.label || '',
    })),
    el('td', {}, select('attr-type', TYPES, attr.type || 'dynamic')),
    el('td', {}, select('attr-value-type', VALUE_TYPES, attr.value_type || 'float')),
    el('td', {}, el('input', {
      class: 'attr-static', 'aria-label': 'static value',
      value: attr.static_value === undefined ? '' : valueText(attr.static_value),
    })),
    el('td', { class: 'actions' }, el('button', {
      type: 'button', class: 'small secondary attr-remove', text: 'Remove', on: { click: () => row.remove() },
    })));
  row.metadata = attr.metadata;
  const type = row.querySelector('.attr-type');
  const staticInput = row.querySelector('.attr-static');
  const sync = () => { staticInput.disabled = type.value !== 'static'; };
  type.addEventListener('change', sync);
  sync();
  return row;
}

/** A static value as its value type wants it (a form gives text). */
function staticValue(text, valueType, label) {
  const bad = (what) => { throw new Error(`${label}: the static value must be ${what}`); };
  switch (valueType) {
    case 'integer': return /^-?\d+$/.test(text) ? Number(text) : bad('an integer');
    case 'float': return text.trim() !== '' && Number.isFinite(Number(text)) ? Number(text) : bad('a number');
    case 'bool': return text === 'true' ? true : text === 'false' ? false : bad('true or false');
    case 'object': try { return JSON.parse(text); } catch (_) { return bad('JSON'); }
    default: return text;
  }
}

function formBody() {
  const attrs = [...$('template-attrs').tBodies[0].rows].map((row) => {
    const label = row.querySelector('.attr-label').value.trim();
    const attr = {
      label,
      type: row.querySelector('.attr-type').value,
      value_type: row.querySelector('.attr-value-type').value,
    };
    const text = row.querySelector('.attr-static').value;
    if (attr.type === 'static' && text !== '') attr.static_value = staticValue(text, attr.value_type, label);
    if (row.metadata && row.metadata.length) attr.metadata = row.metadata;
    return attr;
  });
  return { label: $('template-label').value.trim(), attrs };
}

function openForm(template) {
  editing = template;
  say('template-form-error', null);
  $('template-form-title').textContent = template ? `Edit template ${template.label}` : 'New template';
  $('template-label').value = template ? template.label : '';
  const body = clear($('template-attrs').tBodies[0]);
  const attrs = template ? template.attrs : [{}];
  attrs.forEach((a) => body.append(attrRow(a)));
  show('template-form', true);
  $('template-label').focus();
}

function edit(template) { openForm(template); }

async function save(e) {
  e.preventDefault();
  say('template-form-error', null);
  try {
    const body = formBody();
    if (editing) await call('PUT', `/console/api/templates/${encodeURIComponent(editing.id)}`, body);
    else await call('POST', '/console/api/templates', body);
    show('template-form', false);
    editing = null;
    await load();
  } catch (err) {
    say('template-form-error', err);
  }
}

async function remove(template) {
  if (!window.confirm(`Delete template ${template.label}?`)) return;
  try {
    await call('DELETE', `/console/api/templates/${encodeURIComponent(template.id)}`);
    if (editing && editing.id === template.id) show('template-form', false);
    await load();
  } catch (err) {
    say('templates-error', err);
  }
}

export async function enter() {
  if (!wired) {
    $('template-new').addEventListener('click', () => openForm(null));
    $('template-add-attr').addEventListener('click', () => $('template-attrs').tBodies[0].append(attrRow()));
    $('template-cancel').addEventListener('click', () => { show('template-form', false); editing = null; });
    $('template-form').addEventListener('submit', save);
    wired = true;
  }
  await load();
}

export function leave() {}
