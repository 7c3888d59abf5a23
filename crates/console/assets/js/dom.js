// Building the page safely: every text from the server goes in with textContent (or as a
// text node), never as HTML; no inline style (the CSP forbids it; classes do the work).
'use strict';

export const $ = (id) => document.getElementById(id);

/**
 * A new element. `props`: `class`, `text`, `on` ({event: handler}), `data` ({key: value},
 * as data-* attributes), anything else as an attribute (never `style`).
 * Children: nodes or strings (as text).
 */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'on') for (const [event, handler] of Object.entries(value)) node.addEventListener(event, handler);
    else if (key === 'data') for (const [k, v] of Object.entries(value)) node.dataset[k] = v;
    else if (key === 'style') throw new Error('no inline style: use a class');
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Removes every child of `node`. */
export function clear(node) { node.replaceChildren(); return node; }

export function show(node, visible) { (typeof node === 'string' ? $(node) : node).hidden = !visible; }

/** Shows `err`'s words in the element `id` (hides it when `err` is empty). */
export function say(id, err) {
  const node = $(id);
  node.textContent = err ? (err.message || String(err)) : '';
  node.hidden = !err;
}

/** A reading's value as text: strings as they are, anything else as JSON. */
export function valueText(value) {
  if (value === undefined) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** A time (ms since the epoch, or an ISO string) in the browser's locale. */
export function timeText(t) {
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}

/** An `<option>`. */
export function option(value, text, selected = false) {
  return el('option', { value, text, selected });
}

/** Numeric value types, which charts draw. */
export function isNumericType(valueType) {
  return valueType === 'integer' || valueType === 'float';
}

/** A device's attributes (dojot's `attrs` by template id) as one list. */
export function deviceAttrs(device) {
  return Object.values(device.attrs || {}).flat();
}

/** Saves `blob` as a file named `name`, as a download. */
export function saveBlob(name, blob) {
  const url = URL.createObjectURL(blob);
  const link = el('a', { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
