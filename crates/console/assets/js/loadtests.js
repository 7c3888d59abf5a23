// The load tests page: results agents pushed to Ingot as a collector (ingot agent, or
// go-lo's agent, with --collector http://agents:<API token>@<ingot>). The list of jobs,
// and one job's throughput, error rate and latency percentiles per second as charts,
// polled once a second while the page is open: live while the job runs.
'use strict';

import { call } from './api.js';
import { $, clear, el, say, show, timeText } from './dom.js';
import { TimeChart } from './charts.js';

/** How often the page asks for new seconds. */
const POLL_MS = 1000;
/** Seconds asked again each poll: agents push a second's Outputs in several batches. */
const REREAD = 5;
/** A job whose last push is older than this is shown as ended. */
const LIVE_MS = 5000;

let timer = null;
let charts = [];
let job = null; // the job shown: its name and the newest second seen
let wired = false;

const ms = (v) => (v === undefined ? '' : `${v.toFixed(2)} ms`);
const rate = (t) => (t.count ? `${((100 * t.errors) / t.count).toFixed(2)} %` : '—');

function stop() {
  if (timer) clearTimeout(timer);
  timer = null;
  charts.forEach((c) => c.destroy());
  charts = [];
  job = null;
}

async function list() {
  say('loadtests-error', null);
  const { jobs } = await call('GET', '/console/api/loadtests');
  const body = clear($('loadtests-table').tBodies[0]);
  for (const j of jobs) {
    const t = j.totals;
    const link = el('a', { href: `#/loadtests/${encodeURIComponent(j.name)}`, text: j.name });
    body.append(el('tr', { data: { job: j.name } },
      el('td', {}, link), el('td', { text: String(t.count) }), el('td', { text: rate(t) }),
      el('td', { text: `${ms(t.p50_ms)} / ${ms(t.p99_ms)}` }), el('td', { text: timeText(j.updated_ms) })));
  }
  show('loadtests-empty', jobs.length === 0);
}

/** Adds seconds to the charts; the totals line says the rest. */
function render(view, seconds) {
  const t = view.totals;
  const live = Date.now() - view.updated_ms < LIVE_MS;
  $('loadtest-state').textContent = live ? 'Running: results arrive as the agents push them.' : `Ended (last results ${timeText(view.updated_ms)}).`;
  $('loadtest-state').dataset.state = live ? 'live' : 'ended';
  $('loadtest-totals').textContent = `${t.count} results, ${t.errors} errors (${rate(t)}); latency p50 ${ms(t.p50_ms)}, `
    + `p90 ${ms(t.p90_ms)}, p99 ${ms(t.p99_ms)}, max ${ms(t.max_ms)}; `
    + `${view.last_second - view.first_second + 1} s from ${timeText(view.first_second * 1000)}`;
  const [throughput, errors, latency] = charts;
  const points = (f) => seconds.flatMap((s) => f(s).map(([attr, value]) => ({ attr, ts: s.second * 1000, value })));
  throughput.add(points((s) => [['results/s', s.count]]));
  errors.add(points((s) => [['errors %', s.count ? (100 * s.errors) / s.count : 0]]));
  latency.add(points((s) => [['p50 ms', s.p50_ms], ['p90 ms', s.p90_ms], ['p99 ms', s.p99_ms]]));
  for (const s of seconds) job.newest = Math.max(job.newest, s.second);
}

async function poll() {
  if (!job) return;
  const name = job.name;
  try {
    const since = job.newest ? job.newest - REREAD : 0;
    const answer = await call('GET', `/console/api/loadtests/${encodeURIComponent(name)}?since=${since}`);
    if (!job || job.name !== name) return; // left meanwhile
    say('loadtest-error', null);
    render(answer.job, answer.seconds);
  } catch (err) {
    if (!job || job.name !== name) return;
    say('loadtest-error', err);
  }
  timer = setTimeout(poll, POLL_MS);
}

async function open(name) {
  show('loadtests-list', false); show('loadtest-view', true);
  $('loadtest-title').textContent = name;
  job = { name, newest: 0 };
  charts = [
    new TimeChart($('loadtest-throughput'), ['results/s']),
    new TimeChart($('loadtest-errors'), ['errors %']),
    new TimeChart($('loadtest-latency'), ['p50 ms', 'p90 ms', 'p99 ms']),
  ];
  await poll();
}

async function remove() {
  if (!job) return;
  const name = job.name;
  try {
    await call('DELETE', `/console/api/loadtests/${encodeURIComponent(name)}`);
    window.location.hash = '#/loadtests';
  } catch (err) {
    say('loadtest-error', err);
  }
}

export async function enter(params) {
  if (!wired) {
    wired = true;
    $('loadtest-delete').addEventListener('click', remove);
    const { protocol, host } = window.location;
    $('loadtests-collector').textContent = `ingot agent --collector ${protocol}//agents:<API token>@${host}`;
  }
  stop();
  say('loadtest-error', null);
  if (params.id) return open(params.id);
  show('loadtest-view', false); show('loadtests-list', true);
  return list();
}

export function leave() {
  stop();
}
