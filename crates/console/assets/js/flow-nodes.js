// The node types the flow editor offers, with the settings dojot's editor saved for a new
// node of each type (flowbroker 0.5's defaults, made useful where dojot's were empty),
// their ports, and a line of help. What a setting means, and whether it is right, is the
// server's rule (crates/flows): a flow it refuses comes back with the node and the reason.
'use strict';

/** Types that start a flow (no input port). The deprecated ones load but are not offered. */
const HEADS = new Set(['event device in', 'event template in', 'device in', 'device template in']);
/** Types that end a flow (no output port). */
const SINKS = new Set(['multi device out', 'device out', 'multi actuate', 'actuate']);

const TARGETS = 'device_source: "self" (the device that started the flow), "configured" (devices_source_configured: [ids]) or "dynamic" (ids at the msg path devices_source_dynamic)';

/** What the palette offers, in its order. */
export const NODE_TYPES = [
  {
    type: 'event device in',
    help: 'Starts the flow on the events of one device: device_id; event_publish for its readings, event_configure for actuation sent to it.',
    defaults: { device_id: '', event_publish: true, event_configure: false },
  },
  {
    type: 'event template in',
    help: 'Starts the flow on the events of every device of a template: template_id; event_publish, event_configure, event_create, event_update, event_remove.',
    defaults: {
      template_id: '', event_publish: true, event_configure: false, event_create: false, event_update: false, event_remove: false,
    },
  },
  {
    type: 'switch',
    help: 'One output per rule, on the value at the msg path property. rules: [{t, v, vt: "str"|"num", v2}], t one of eq, neq, lt, lte, gt, gte, btwn, cont, regex, true, false, null, nnull, else. checkall "false" stops at the first match.',
    defaults: {
      property: 'payload.data.attrs.temperature', propertyType: 'msg', checkall: 'true',
      rules: [{ t: 'lt', v: '40', vt: 'num' }, { t: 'gte', v: '40', vt: 'num' }],
    },
  },
  {
    type: 'change',
    help: 'Changes the message, rule after rule. rules: [{t: "set"|"change"|"delete"|"move", p: msg path, pt: "msg"|"flow"|"tenant", to, tot: "str"|"num"|"bool"|"json"|"msg"}].',
    defaults: { rules: [{ t: 'set', p: 'output.message', pt: 'msg', to: 'hello', tot: 'str' }] },
  },
  {
    type: 'template',
    help: 'Renders the mustache template over the message into the msg path field; output "json" parses the result.',
    defaults: { field: 'payload', fieldType: 'msg', syntax: 'mustache', template: 'This is the payload: {{payload}} !', output: 'str' },
  },
  {
    type: 'geofence',
    help: 'Passes the message on when the "lat, lng" at the msg path geopoint is inside (filter "inside") or outside the polygon points: [{latitude, longitude}…]. An inside match adds name to msg.location.isat.',
    defaults: {
      mode: 'polyline', filter: 'inside', geopoint: 'payload.data.attrs.position',
      points: [
        { latitude: -22.80, longitude: -47.29 }, { latitude: -22.80, longitude: -47.24 },
        { latitude: -22.84, longitude: -47.24 }, { latitude: -22.84, longitude: -47.29 },
      ],
    },
  },
  {
    type: 'http',
    help: 'Sends an HTTP request: method, url (mustache allowed), body (the msg path of a JSON string {"payload", "headers"}), and puts {statusCode, headers, payload} at the msg path response; ret "txt", "obj" or "bin". Private addresses are refused unless the server allows them (--flow-http-allow).',
    defaults: { method: 'POST', url: 'https://example.com/', body: 'request', response: 'result', ret: 'txt' },
  },
  {
    type: 'get context',
    help: 'Reads the tenant or flow context named contextName (contextNameType "str", or "msg" for a msg path) into the msg path contextContent.',
    defaults: { contextLayer: 'tenant', contextName: 'limits', contextNameType: 'str', contextContent: 'context' },
  },
  {
    type: 'merge data',
    help: 'Deep-merges the object at the msg path targetData into what this node has merged so far, and puts the result at mergedData.',
    defaults: { targetData: 'payload.data.attrs', mergedData: 'merged' },
  },
  {
    type: 'cumulative sum',
    help: 'Sums the value at targetAttribute over the last timePeriod minutes (by the timestamp at the msg path timestamp) into the msg path output.',
    defaults: { timePeriod: 60, targetAttribute: 'payload.data.attrs.consumption', timestamp: 'payload.metadata.timestamp', output: 'sum' },
  },
  {
    type: 'multi device out',
    help: `Publishes the object at the msg path attrs as a reading of devices: ${TARGETS}.`,
    defaults: {
      device_source: 'configured', devices_source_configured: [''], devices_source_dynamic: '',
      devices_source_dynamicFieldType: 'msg', attrs: 'output',
    },
  },
  {
    type: 'multi actuate',
    help: `Sends the object at the msg path attrs to devices as actuation: ${TARGETS}.`,
    defaults: {
      device_source: 'configured', devices_source_configured: [''], devices_source_dynamic: '',
      devices_source_dynamicFieldType: 'msg', attrs: 'output',
    },
  },
];

const BY_TYPE = new Map(NODE_TYPES.map((t) => [t.type, t]));

/** The help line of a type (deprecated and unknown types say so). */
export function helpOf(type) {
  const known = BY_TYPE.get(type);
  if (known) return known.help;
  return HEADS.has(type) || SINKS.has(type)
    ? `"${type}" is one of dojot's deprecated node types: it still runs, but new flows use the "event …" and "multi …" types.`
    : `"${type}" is not a node type the palette offers: the server says whether it runs when the flow is saved.`;
}

/** The palette's group of a type: input, function or output (a CSS class). */
export function groupOf(type) {
  if (HEADS.has(type)) return 'input';
  return SINKS.has(type) ? 'output' : 'function';
}

/** A node's ports: heads have no input, sinks no output, a switch one output per rule. */
export function ports(node) {
  const inputs = HEADS.has(node.type) ? 0 : 1;
  if (SINKS.has(node.type)) return { inputs, outputs: 0 };
  if (node.type === 'switch') return { inputs, outputs: Array.isArray(node.rules) ? node.rules.length : 0 };
  return { inputs, outputs: 1 };
}

/** A new node-red id in node-red's form (8 hex digits, a dot, 6 more). */
export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(7));
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}.${hex.slice(8, 14)}`;
}

/** A new node of `type` with its default settings (a copy). */
export function newNode(type) {
  const known = BY_TYPE.get(type);
  const node = { id: newId(), type, name: '', ...structuredClone(known ? known.defaults : {}) };
  if (type === 'switch') node.outputs = node.rules.length;
  return node;
}

/** Fields the editor owns (the settings box shows the rest). */
export const EDITOR_FIELDS = ['id', 'type', 'z', 'name', 'x', 'y', 'wires'];

/** The settings of `node` that the settings box shows. */
export function settingsOf(node) {
  return Object.fromEntries(Object.entries(node).filter(([k]) => !EDITOR_FIELDS.includes(k)));
}
