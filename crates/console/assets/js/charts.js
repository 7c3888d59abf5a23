// Time charts (uPlot, vendored: /console/vendor/uplot-*/) and a device's live readings
// (Server-Sent Events from /console/api/devices/{id}/stream).
//
// A chart holds readings of some attributes of one device; it redraws when readings are
// added, and says how many values it shows in its container's data-points attribute.
// uPlot draws on a canvas and sizes its elements through the CSSOM (element.style),
// which the page's CSP allows; it writes no inline style attribute and no HTML.
'use strict';

import { clear } from './dom.js';

const COLORS = ['#2d6cdf', '#d9480f', '#2b8a3e', '#862e9c', '#e67700', '#0b7285', '#c2255c', '#5c940d'];
const HEIGHT = 260;

/** Most readings a chart keeps (the oldest go first). */
const MAX_ROWS = 2000;

export class TimeChart {
  /** A chart of `labels` (attribute names) in `container`. */
  constructor(container, labels) {
    this.container = container;
    this.labels = labels;
    this.rows = []; // [ms, Map(label → number)], oldest first
    this.plot = null;
    this.destroyed = false;
    this.onResize = () => this.plot && this.plot.setSize({ width: this.width(), height: HEIGHT });
    window.addEventListener('resize', this.onResize);
    this.draw();
  }

  width() { return Math.max(this.container.clientWidth, 300); }

  /** Replaces the readings: `[{attr, ts (ms), value}]`. */
  set(points) {
    this.rows = [];
    this.add(points);
  }

  /** Adds readings `[{attr, ts (ms), value}]`; non-numeric values and other labels are skipped. */
  add(points) {
    for (const p of points) {
      const value = typeof p.value === 'number' ? p.value : Number.NaN;
      if (!this.labels.includes(p.attr) || !Number.isFinite(value)) continue;
      this.put(p.ts, p.attr, value);
    }
    if (this.rows.length > MAX_ROWS) this.rows.splice(0, this.rows.length - MAX_ROWS);
    this.draw();
  }

  /** A live reading (dojot's device-data: metadata.timestamp in ms, attrs by label). */
  addReading(data) {
    const ts = data.metadata && data.metadata.timestamp;
    const attrs = data.attrs || {};
    this.add(Object.keys(attrs).map((attr) => ({ attr, ts, value: attrs[attr] })));
  }

  put(ts, attr, value) {
    // Readings mostly arrive in order: look from the end.
    let i = this.rows.length;
    while (i > 0 && this.rows[i - 1][0] > ts) i--;
    if (i > 0 && this.rows[i - 1][0] === ts) this.rows[i - 1][1].set(attr, value);
    else this.rows.splice(i, 0, [ts, new Map([[attr, value]])]);
  }

  /** How many values the chart shows. */
  points() {
    return this.rows.reduce((n, row) => n + row[1].size, 0);
  }

  data() {
    const xs = this.rows.map((r) => r[0] / 1000);
    const ys = this.labels.map((l) => this.rows.map((r) => (r[1].has(l) ? r[1].get(l) : null)));
    return [xs, ...ys];
  }

  draw() {
    if (this.destroyed) return; // a page left while its data was on the way
    this.container.dataset.points = String(this.points());
    if (this.plot) {
      this.plot.setData(this.data());
      return;
    }
    const options = {
      width: this.width(),
      height: HEIGHT,
      scales: { x: { time: true } },
      series: [{}, ...this.labels.map((label, i) => ({
        label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true, points: { size: 5 },
      }))],
    };
    clear(this.container);
    this.plot = new window.uPlot(options, this.data(), this.container);
  }

  destroy() {
    this.destroyed = true;
    window.removeEventListener('resize', this.onResize);
    if (this.plot) this.plot.destroy();
    this.plot = null;
    clear(this.container);
    this.container.dataset.points = '0';
  }
}

/**
 * Follows a device's readings as they arrive (`event: device-data`): `onReading(data)`
 * for each (dojot's device-data: metadata.timestamp in ms, attrs by label), `onGap()` when
 * the server says some were missed (history has them), and `onStatus(words, state)` when
 * the connection changes (state: 'open', 'reconnecting' or 'stopped': the server refused
 * the stream, e.g. the session ended or too many streams are open). The browser reconnects by itself, with Last-Event-ID so that the
 * server resumes after the last reading seen; `close()` ends it.
 */
export function follow(deviceId, { onReading, onGap = () => {}, onStatus = () => {} }) {
  const source = new EventSource(`/console/api/devices/${encodeURIComponent(deviceId)}/stream`);
  source.onopen = () => onStatus('Live: new readings appear as they arrive.', 'open');
  source.addEventListener('device-data', (e) => {
    let data;
    try { data = JSON.parse(e.data); } catch (_) { return; }
    onReading(data);
  });
  source.addEventListener('gap', () => onGap());
  source.onerror = () => (source.readyState === EventSource.CLOSED
    ? onStatus('Live readings stopped (the session may have ended, or too many are open); reload the page to retry.', 'stopped')
    : onStatus('Reconnecting to live readings…', 'reconnecting'));
  return { close: () => source.close() };
}
