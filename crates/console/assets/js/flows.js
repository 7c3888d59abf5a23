// The flows page (#/flows, #/flows/{id}): the tenant's flows, and a visual editor for
// one: a palette of node types (flow-nodes.js), nodes and wires drawn by the vendored
// Drawflow, each node's settings as JSON beside the canvas, enable/disable, the
// debugger's switch, import and export of dojot's node-red JSON. With the trace on, what
// each node did lately shows on it (counts, errors) and, for the chosen node, its last
// messages, live.
//
// The document is the node-red list dojot saves: the editor keeps every node object as
// it came (unknown fields, `tab` and `comment` nodes included) and rewrites only `x`, `y`,
// `z` and `wires` from the drawing, so a flow exported from dojot goes back out as it was
// apart from what the user changed.
'use strict';

import { call } from './api.js';
import { $, clear, el, say, saveBlob, show, timeText } from './dom.js';
import { NODE_TYPES, groupOf, helpOf, newId, newNode, ports, settingsOf } from './flow-nodes.js';

/** Node-red's nodes are about 100 × 30 px and dojot's flows are laid out for that; ours,
 * with their type and trace lines, are larger: positions are drawn at this scale and
 * saved back at node-red's. */
const SCALE = { x: 1.4, y: 2 };

/** Entries kept per node for the panel (the server keeps as many). */
const TRACE_KEPT = 20;

let editor = null;
/** The flow in the editor: `{id (null until saved), tabs, comments}`. */
let open = null;
/** Drawflow id → the node-red object it draws. */
const nodes = new Map();
/** The chosen node's Drawflow id, or null. */
let chosen = null;
/** Node-red id → its last trace entries (oldest first). */
let traced = new Map();
let live = null;
let dirty = false;

export async function enter(params) {
  setUp();
  say('flows-error', null);
  await listFlows();
  if (params.id && (!open || open.id !== params.id)) await openFlow(params.id);
  else if (open && open.id) await followTrace();
}

export function leave() {
  stopTrace();
}

/** Builds the page's fixed parts once: the editor, the palette, the buttons. */
function setUp() {
  if (editor) return;
  editor = new window.Drawflow($('flow-canvas'));
  editor.reroute = false;
  editor.start();
  editor.on('nodeSelected', (id) => choose(Number(id)));
  editor.on('nodeUnselected', () => choose(null));
  editor.on('nodeRemoved', (id) => {
    nodes.delete(Number(id));
    if (chosen === Number(id)) choose(null);
    changed();
  });
  for (const event of ['nodeMoved', 'connectionCreated', 'connectionRemoved']) editor.on(event, changed);
  // Drawflow deletes the selected node on the Delete key anywhere on the page: not while
  // the user types in the settings.
  $('node-panel').addEventListener('keydown', (e) => e.stopPropagation());

  const palette = $('flow-palette');
  for (const t of NODE_TYPES) {
    palette.append(el('button', {
      type: 'button', class: `small palette-${groupOf(t.type)}`, text: t.type, title: t.help,
      data: { type: t.type }, on: { click: () => addNode(newNode(t.type)) },
    }));
  }
  $('flow-new').addEventListener('click', () => load({ name: 'New flow', enabled: true, trace: false, flow: [] }, null));
  $('flow-import-open').addEventListener('click', () => show('flow-import', $('flow-import').hidden));
  $('flow-import').addEventListener('submit', (e) => { e.preventDefault(); importText($('flow-import-text').value); });
  $('flow-import-file').addEventListener('change', async (e) => {
    const file = e.target.files[0];
    if (file) importText(await file.text());
    e.target.value = '';
  });
  $('flow-save').addEventListener('click', save);
  $('flow-export').addEventListener('click', exportFlow);
  $('flow-delete').addEventListener('click', removeFlow);
  $('flow-close').addEventListener('click', () => { close(); window.location.hash = '#/flows'; });
  for (const id of ['flow-name', 'flow-enabled', 'flow-trace']) $(id).addEventListener('input', changed);
  $('node-apply').addEventListener('click', applySettings);
  $('node-remove').addEventListener('click', () => { if (chosen !== null) editor.removeNodeId(`node-${chosen}`); });
}

// ---- The list ----------------------------------------------------------------------

async function listFlows() {
  const { flows } = await call('GET', '/console/api/flows');
  const body = clear($('flows-table').querySelector('tbody'));
  for (const f of flows) {
    const nodeCount = (f.flow || []).filter((n) => n.type !== 'tab' && n.type !== 'comment').length;
    body.append(el('tr', { data: { id: f.id } },
      el('td', {}, el('a', { href: `#/flows/${encodeURIComponent(f.id)}`, text: f.name })),
      el('td', { text: String(nodeCount) }),
      el('td', {}, toggle(f, 'enabled')),
      el('td', {}, toggle(f, 'trace')),
      el('td', { text: timeText(f.updated) }),
    ));
  }
  show('flows-empty', flows.length === 0);
}

/** A checkbox that switches `key` (enabled, trace) of flow `f` on the server at once. */
function toggle(f, key) {
  const box = el('input', { type: 'checkbox', class: `flow-${key}`, checked: f[key], 'aria-label': `${key}: ${f.name}` });
  box.addEventListener('change', async () => {
    try {
      await call('PUT', `/console/api/flows/${encodeURIComponent(f.id)}`, { [key]: box.checked });
      if (open && open.id === f.id) {
        $(`flow-${key}`).checked = box.checked;
        if (key === 'trace') await followTrace();
      }
    } catch (err) {
      box.checked = !box.checked;
      say('flows-error', err);
    }
  });
  return box;
}

// ---- Loading and saving ------------------------------------------------------------

async function openFlow(id) {
  try {
    load(await call('GET', `/console/api/flows/${encodeURIComponent(id)}`), id);
  } catch (err) {
    say('flows-error', err);
  }
}

/** Puts flow `f` (`{name, enabled, trace, flow}`) in the editor; `id` null for a new one. */
function load(f, id) {
  stopTrace();
  editor.clear();
  nodes.clear();
  choose(null);
  const list = Array.isArray(f.flow) ? f.flow : [];
  open = {
    id,
    tabs: list.filter((n) => n && n.type === 'tab'),
    comments: list.filter((n) => n && n.type === 'comment'),
  };
  // Shown before drawing: Drawflow lays wires out from where the nodes are on screen.
  show('flow-editor', true);
  show('flow-import', false);
  $('flow-name').value = f.name || '';
  $('flow-enabled').checked = f.enabled !== false;
  $('flow-trace').checked = !!f.trace;
  const byId = new Map();
  for (const n of list) {
    if (!n || typeof n !== 'object' || n.type === 'tab' || n.type === 'comment') continue;
    byId.set(n.id, addNode(n, false));
  }
  let lost = 0;
  for (const n of list) {
    if (!byId.has(n && n.id)) continue;
    (Array.isArray(n.wires) ? n.wires : []).forEach((targets, port) => {
      for (const target of Array.isArray(targets) ? targets : []) {
        if (byId.has(target) && port < ports(n).outputs) {
          editor.addConnection(byId.get(n.id), byId.get(target), `output_${port + 1}`, 'input_1');
        } else {
          lost += 1;
        }
      }
    });
  }
  toTopLeft();
  say('flow-editor-error', null);
  setDirty(id === null, lost ? `${lost} wire(s) led to nodes not in the flow and were left out.` : '');
  if (id) followTrace();
}

/** Moves the view so that the flow's top-left node is near the canvas's top-left corner
 * (dojot's editor saved positions far from the origin). Drawflow pans by a CSS transform,
 * set here as it sets it (through the CSSOM, which the CSP allows). */
function toTopLeft() {
  const drawn = [...nodes.keys()].map((id) => editor.getNodeFromId(id));
  const minX = Math.min(...drawn.map((d) => d.pos_x));
  const minY = Math.min(...drawn.map((d) => d.pos_y));
  editor.zoom = 1;
  editor.canvas_x = drawn.length ? 20 - minX : 0;
  editor.canvas_y = drawn.length ? 20 - minY : 0;
  editor.precanvas.style.transform = `translate(${editor.canvas_x}px, ${editor.canvas_y}px) scale(1)`;
}

/** Draws node-red object `n`; returns its Drawflow id. */
function addNode(n, fresh = true) {
  const { inputs, outputs } = ports(n);
  const count = nodes.size;
  const x = Number.isFinite(n.x) ? n.x * SCALE.x : Math.round((40 - editor.canvas_x) / editor.zoom) + (count % 6) * 30;
  const y = Number.isFinite(n.y) ? n.y * SCALE.y : Math.round((40 - editor.canvas_y) / editor.zoom) + (count % 6) * 50;
  const dfId = editor.addNode(n.type, inputs, outputs, x, y, `flow-node group-${groupOf(n.type)}`, {}, '');
  nodes.set(dfId, n);
  label(dfId);
  if (fresh) {
    changed();
    editor.dispatch('nodeSelected', dfId);
  }
  return dfId;
}

/** Writes node `dfId`'s name, type and trace badge into its box (as text). */
function label(dfId) {
  const n = nodes.get(dfId);
  const box = document.getElementById(`node-${dfId}`);
  if (!n || !box) return;
  box.dataset.nodeId = n.id;
  const counts = { in: 0, out: 0, error: 0 };
  for (const e of traced.get(n.id) || []) counts[e.kind] += 1;
  const last = (traced.get(n.id) || []).at(-1);
  box.classList.toggle('traced-error', !!last && last.kind === 'error');
  const badge = traced.has(n.id)
    ? el('div', { class: 'flow-node-trace', text: `in ${counts.in} · out ${counts.out}${counts.error ? ` · errors ${counts.error}` : ''}` })
    : null;
  const parts = [
    el('div', { class: 'flow-node-name', text: n.name || n.type }),
    n.name ? el('div', { class: 'flow-node-type', text: n.type }) : null,
    badge,
  ];
  clear(box.querySelector('.drawflow_content_node')).append(...parts.filter(Boolean));
}

/** The flow as dojot's node-red list, from the drawing. */
function toDocument() {
  if (open.tabs.length === 0) open.tabs.push({ id: newId(), type: 'tab', label: $('flow-name').value || 'Flow' });
  const z = open.tabs[0].id;
  const list = [...open.tabs, ...open.comments];
  for (const [dfId, n] of nodes) {
    const drawn = editor.getNodeFromId(dfId);
    const outputs = Object.keys(drawn.outputs).sort((a, b) => Number(a.split('_')[1]) - Number(b.split('_')[1]));
    const wires = outputs.map((o) => drawn.outputs[o].connections.map((c) => nodes.get(Number(c.node)).id));
    list.push({ ...n, z: n.z || z, x: Math.round(drawn.pos_x / SCALE.x), y: Math.round(drawn.pos_y / SCALE.y),
      wires });
  }
  return list;
}

async function save() {
  say('flow-editor-error', null);
  for (const box of document.querySelectorAll('.drawflow-node.invalid')) box.classList.remove('invalid');
  const body = {
    name: $('flow-name').value, enabled: $('flow-enabled').checked, trace: $('flow-trace').checked, flow: toDocument(),
  };
  try {
    const saved = open.id
      ? await call('PUT', `/console/api/flows/${encodeURIComponent(open.id)}`, body)
      : await call('POST', '/console/api/flows', body);
    const first = !open.id;
    open.id = saved.id;
    setDirty(false, `Saved at ${timeText(saved.updated)}.`);
    if (first) window.history.replaceState(null, '', `#/flows/${encodeURIComponent(saved.id)}`);
    await listFlows();
    await followTrace();
  } catch (err) {
    say('flow-editor-error', err);
    // "… node 'abc' (switch): …": point at that node.
    const match = /node '([^']+)'/.exec(err.message || '');
    const bad = match && [...nodes].find(([, n]) => n.id === match[1]);
    if (bad) {
      document.getElementById(`node-${bad[0]}`).classList.add('invalid');
      editor.dispatch('nodeSelected', bad[0]);
    }
  }
}

function exportFlow() {
  const doc = { name: $('flow-name').value, enabled: $('flow-enabled').checked, flow: toDocument() };
  const name = `${($('flow-name').value || 'flow').replace(/[^A-Za-z0-9._-]+/g, '-')}.json`;
  saveBlob(name, new Blob([JSON.stringify(doc, null, 2)], { type: 'application/json' }));
}

/** Opens pasted or chosen JSON as a new flow: a node list, `{name?, flow}`, or dojot's `{flows: [one]}`. */
function importText(text) {
  say('flow-import-error', null);
  try {
    let doc = JSON.parse(text);
    if (doc && Array.isArray(doc.flows)) {
      if (doc.flows.length !== 1) throw new Error(`this file holds ${doc.flows.length} flows; import them one at a time`);
      [doc] = doc.flows;
    }
    if (Array.isArray(doc)) doc = { flow: doc };
    if (!doc || !Array.isArray(doc.flow)) throw new Error('expected a list of nodes, or an object with a "flow" list');
    const tab = doc.flow.find((n) => n && n.type === 'tab');
    const name = doc.name || (tab && tab.label) || 'Imported flow';
    load({ name, enabled: doc.enabled !== false, trace: false, flow: doc.flow }, null);
  } catch (err) {
    say('flow-import-error', err instanceof SyntaxError ? `not JSON: ${err.message}` : err);
  }
}

async function removeFlow() {
  if (open.id) {
    if (!window.confirm(`Delete the flow "${$('flow-name').value}"?`)) return;
    try {
      await call('DELETE', `/console/api/flows/${encodeURIComponent(open.id)}`);
    } catch (err) {
      return say('flow-editor-error', err);
    }
  }
  close();
  window.location.hash = '#/flows';
  await listFlows();
}

function close() {
  stopTrace();
  open = null;
  editor.clear();
  nodes.clear();
  choose(null);
  show('flow-editor', false);
}

function changed() { setDirty(true); }

function setDirty(on, words = '') {
  dirty = on;
  $('flow-status').textContent = words || (dirty ? 'Unsaved changes.' : '');
}

// ---- The chosen node ---------------------------------------------------------------

function choose(dfId) {
  chosen = dfId;
  const n = dfId === null ? null : nodes.get(dfId);
  show('node-panel', !!n);
  if (!n) return;
  $('node-title').textContent = n.type;
  $('node-id').textContent = n.id;
  $('node-help').textContent = helpOf(n.type);
  $('node-name').value = n.name || '';
  $('node-settings').value = JSON.stringify(settingsOf(n), null, 2);
  say('node-error', null);
  showNodeTrace();
}

/** Takes the panel's name and settings into the chosen node; a switch gets one output per rule. */
function applySettings() {
  say('node-error', null);
  const n = nodes.get(chosen);
  if (!n) return;
  let settings;
  try {
    settings = JSON.parse($('node-settings').value);
    if (!settings || typeof settings !== 'object' || Array.isArray(settings)) throw new Error('settings must be a JSON object');
  } catch (err) {
    return say('node-error', err instanceof SyntaxError ? `not JSON: ${err.message}` : err);
  }
  const next = { ...settings, id: n.id, type: n.type, name: $('node-name').value };
  for (const key of ['z', 'x', 'y', 'wires']) if (key in n) next[key] = n[key];
  if (next.type === 'switch' && Array.isArray(next.rules)) next.outputs = next.rules.length;
  const drawn = editor.getNodeFromId(chosen);
  let have = Object.keys(drawn.outputs).length;
  const want = ports(next).outputs;
  for (; have < want; have += 1) editor.addNodeOutput(chosen);
  for (; have > want; have -= 1) editor.removeNodeOutput(chosen, `output_${have}`);
  nodes.set(chosen, next);
  label(chosen);
  changed();
}

// ---- The debugger ------------------------------------------------------------------

/** Shows the saved flow's trace, and follows it live, while its switch is on. */
async function followTrace() {
  stopTrace();
  traced = new Map();
  if (!open || !open.id) return relabel();
  const path = `/console/api/flows/${encodeURIComponent(open.id)}/trace`;
  try {
    const snapshot = await call('GET', path);
    if (!snapshot.trace) {
      $('flow-trace-status').textContent = 'Trace is off: switch it on and save to see what each node does.';
      return relabel();
    }
    for (const [node, entries] of Object.entries(snapshot.nodes)) traced.set(node, entries);
    for (const [, n] of nodes) if (!traced.has(n.id)) traced.set(n.id, []);
    $('flow-trace-status').textContent = 'Tracing: each node shows what it did lately; choose one for its messages.';
    relabel();
    live = new EventSource(`${path}/stream`);
    live.addEventListener('trace', (e) => record(JSON.parse(e.data)));
    live.addEventListener('lagged', (e) => {
      $('flow-trace-status').textContent = `Tracing (${e.data} entries went by too fast to show).`;
    });
  } catch (err) {
    say('flow-editor-error', err);
  }
}

function stopTrace() {
  if (live) live.close();
  live = null;
  if ($('flow-trace-status')) $('flow-trace-status').textContent = '';
}

function record(entry) {
  const list = traced.get(entry.node) || [];
  list.push(entry);
  if (list.length > TRACE_KEPT) list.shift();
  traced.set(entry.node, list);
  const hit = [...nodes].find(([, n]) => n.id === entry.node);
  if (hit) label(hit[0]);
  if (hit && hit[0] === chosen) showNodeTrace();
}

function relabel() {
  for (const dfId of nodes.keys()) label(dfId);
  showNodeTrace();
}

/** The chosen node's trace entries, newest first. */
function showNodeTrace() {
  const n = chosen === null ? null : nodes.get(chosen);
  const list = clear($('node-trace'));
  const entries = n ? traced.get(n.id) : undefined;
  show('node-trace-off', !entries);
  for (const e of [...(entries || [])].reverse()) {
    const what = e.kind === 'out' ? `out ${e.port + 1}` : e.kind;
    const body = e.kind === 'error' ? e.error : JSON.stringify(e.message);
    list.append(el('li', { class: `trace-${e.kind}` },
      el('span', { class: 'muted', text: `${new Date(e.ts).toLocaleTimeString()} ${what}: ` }),
      el('code', { text: body && body.length > 400 ? `${body.slice(0, 400)}…` : body }),
    ));
  }
}
