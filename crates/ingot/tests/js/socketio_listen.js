// A dojot GUI-style socket.io 2.x client: connects with a data-broker token and prints
// every event it receives as one JSON line on stdout, for stream_e2e.rs to read.
// Usage: node socketio_listen.js <base url> <token>
const io = require('socket.io-client');

const [base, token] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const socket = io(base, { query: 'token=' + token, transports: ['websocket'], reconnection: false });

socket.on('connect', () => out({ connected: true }));
const why = (e) => (e && e.message) || (typeof e === 'string' ? e : JSON.stringify(e));
socket.on('error', (e) => { out({ error: why(e) }); process.exit(0); });
socket.on('connect_error', (e) => { out({ error: why(e) }); process.exit(0); });
socket.on('disconnect', (reason) => { out({ disconnected: reason }); process.exit(0); });
// socket.io 2.x has no catch-all listener: wrap onevent to see every event name.
const onevent = socket.onevent;
socket.onevent = function (packet) {
  const [event, data] = packet.data || [];
  out({ event, data });
  onevent.call(this, packet);
};
