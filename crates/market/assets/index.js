// The auction's test page: signs in (POST /v1/login), opens the WebSocket, authenticates
// on it, lists the offers (get_offers) and keeps the list live from the broadcasts
// (offerCreated, highestBid, offerSold). Everything received is written as text.
'use strict';

let token = null;
const rows = new Map();

const $ = (id) => document.getElementById(id);

function say(message, isError) {
  $(isError ? 'error' : 'status').textContent = message;
  $('error').hidden = !isError;
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

/** Shows offer `o` (a new row at the top, or its row updated). */
function show(o, fresh) {
  let row = rows.get(o.id);
  if (!row) {
    row = document.createElement('tr');
    row.dataset.id = o.id;
    rows.set(o.id, row);
    $('offers').prepend(row);
  }
  row.replaceChildren(cell(o.title), cell(String(o.bid_price)), cell(o.created_by), cell(o.sold ? 'yes' : 'no'),
    cell(new Date(o.go_live).toLocaleString()));
  row.classList.toggle('fresh', !!fresh);
}

function connect() {
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
  const socket = new WebSocket(`${scheme}://${window.location.host}/v1/stream`);
  socket.onopen = () => socket.send(JSON.stringify({ event: 'authenticate', token }));
  socket.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.event === 'authenticated') {
      say(`Signed in as ${m.username}: offers appear here as they are made.`);
      socket.send(JSON.stringify({ event: 'get_offers', page: 0, size: 50, sort_key: 'golive' }));
    } else if (m.event === 'offers') {
      m.offers.slice().reverse().forEach((o) => show(o, false));
    } else if (m.event === 'offerCreated') {
      show(m.offer, true);
    } else if (m.event === 'highestBid') {
      const row = rows.get(m.bid.offer_id);
      if (row) {
        row.children[1].textContent = String(m.bid.bid_price);
        row.classList.add('fresh');
      }
    } else if (m.event === 'offerSold' && m.offer) {
      show(m.offer, true);
    } else if (m.event === 'error') {
      say(m.message, true);
    }
  };
  socket.onclose = (e) => say(`The live feed closed (${e.code}${e.reason ? `: ${e.reason}` : ''}). Sign in again.`, true);
}

async function post(path, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const resp = await fetch(path, { method: 'POST', headers, body: JSON.stringify(body) });
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.message || `the server answered ${resp.status}`);
  return data;
}

document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      ({ token } = await post('/v1/login', { username: $('username').value, password: $('password').value }));
      $('password').value = '';
      $('offer').hidden = false;
      say('Connecting…');
      connect();
    } catch (err) {
      say(err.message, true);
    }
  });
  $('offer').addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await post('/v1/offer', {
        title: $('title').value, bid_price: Number($('price').value), lifetime: Number($('lifetime').value || 0),
      });
      $('title').value = '';
    } catch (err) {
      say(err.message, true);
    }
  });
});
