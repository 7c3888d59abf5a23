// The console's calls to its own server (/console/api/…): JSON both ways, the session's
// CSRF token on every change, errors as ApiError carrying the server's plain words.
'use strict';

let csrf = null;
let session = null;
let signedOut = null;

/** Remembers the signed-in session (`{username, tenant, profile, csrf}`), or null. */
export function setSession(s) {
  session = s;
  csrf = s ? s.csrf : null;
}

/** The signed-in session, or null. */
export function currentSession() { return session; }

/** Called when a request finds the session over (401), with the words to show. */
export function onSignedOut(handler) { signedOut = handler; }

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** Reads a failed answer's `{"error": …}`, or says what happened in its place. */
async function failure(resp) {
  const data = await resp.json().catch(() => null);
  const message = (data && data.error) || `the server answered ${resp.status} ${resp.statusText}`;
  if (resp.status === 401 && signedOut && csrf) signedOut('Your session has ended; please sign in again.');
  return new ApiError(message, resp.status);
}

/** `method path` with an optional JSON body; resolves to the JSON answer (null for 204). */
export async function call(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (csrf && method !== 'GET') headers['X-CSRF-Token'] = csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (_) {
    throw new ApiError('The server cannot be reached; check the connection and retry.', 0);
  }
  if (!resp.ok) throw await failure(resp);
  return resp.status === 204 ? null : resp.json();
}

/** GET of a file (the CSV report): resolves to { blob, name } from Content-Disposition. */
export async function download(path) {
  let resp;
  try {
    resp = await fetch(path, { credentials: 'same-origin' });
  } catch (_) {
    throw new ApiError('The server cannot be reached; check the connection and retry.', 0);
  }
  if (!resp.ok) throw await failure(resp);
  const disposition = resp.headers.get('Content-Disposition') || '';
  const match = /filename="([^"]+)"/.exec(disposition);
  return { blob: await resp.blob(), name: match ? match[1] : 'report.csv' };
}

/** A query string from an object; arrays repeat their key, empty values are left out. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (v !== undefined && v !== null && v !== '') q.append(key, v);
    }
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** `/console/api/devices/{id}…`, the id escaped. */
export function devicePath(id, rest = '') {
  return `/console/api/devices/${encodeURIComponent(id)}${rest}`;
}
