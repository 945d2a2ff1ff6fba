/*
 * api.js: REST calls to this app ({api_base}/…) as the signed-in account (its session
 * cookie; writes send the CSRF token); errors as ApiError (the server's {error: {code,
 * message, field}}). A 401 means the session ended: the page goes to sign in.
 */
import { API, CSRF_TOKEN } from './state.js';

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `request failed (HTTP ${status})`);
    this.status = status;
    this.code = err.code || `http_${status}`;
    this.field = err.field || null;
    this.body = body;
    this.retryAfter = null;
  }
}

/** Off to sign in, back here afterwards: the session expired or was signed out elsewhere. */
export function signinGo() {
  window.location.assign(`/accounts/signin?next=${encodeURIComponent(location.pathname + location.search)}`);
}

export async function api(path, options) {
  const method = (options && options.method) || 'GET';
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRFToken'] = CSRF_TOKEN;
  const response = await fetch(`${API}${path}`, { method, headers, cache: 'no-store' });
  if (response.status === 401) signinGo();
  if (response.status === 204) return null;
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** POSTs JSON; resolves to { status, body }, throws ApiError. */
export async function apiPost(path, payload) {
  const response = await fetch(`${API}${path}`, {
    method: 'POST',
    headers: { Accept: 'application/json', 'Content-Type': 'application/json', 'X-CSRFToken': CSRF_TOKEN },
    cache: 'no-store',
    body: JSON.stringify(payload),
  });
  if (response.status === 401) signinGo();
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const err = new ApiError(response.status, body);
    const retry = Number(response.headers.get('Retry-After'));
    if (retry > 0) err.retryAfter = retry;
    throw err;
  }
  return { status: response.status, body };
}

/** The message of a failed API call, readably ("file: …" prefixes are the field, said once). */
export function apiMessage(err) {
  let message = err.message || 'something went wrong';
  if (err.field && message.startsWith(`${err.field}: `)) message = message.slice(err.field.length + 2);
  return message;
}

/**
 * Any write: `json` is sent as JSON, `form` (FormData: a file upload) as multipart.
 * Resolves to the body (null for 204), throws ApiError.
 */
export async function apiSend(path, { method = 'POST', json, form } = {}) {
  const headers = { Accept: 'application/json', 'X-CSRFToken': CSRF_TOKEN };
  let body;
  if (form) {
    body = form; // the browser sets the multipart boundary
  } else if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const response = await fetch(`${API}${path}`, { method, headers, cache: 'no-store', body });
  if (response.status === 401) signinGo();
  if (response.status === 204) return null;
  let parsed = null;
  try {
    parsed = await response.json();
  } catch (_) {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}
