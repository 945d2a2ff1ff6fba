/*
 * api.js: REST calls to this app ({api_base}/…), with the user id; errors as ApiError
 * (the server's {error: {code, message, field}}).
 */
import { API, state } from './state.js';

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

export async function api(path, options) {
  const sep = path.includes('?') ? '&' : '?';
  const url = `${API}${path}${sep}user_id=${encodeURIComponent(state.userId)}`;
  const response = await fetch(url, {
    method: (options && options.method) || 'GET',
    headers: { Accept: 'application/json' },
    cache: 'no-store',
  });
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

/** POSTs JSON (user_id added to the body); resolves to { status, body }, throws ApiError. */
export async function apiPost(path, payload) {
  const response = await fetch(`${API}${path}`, {
    method: 'POST',
    headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
    cache: 'no-store',
    body: JSON.stringify(Object.assign({ user_id: state.userId }, payload)),
  });
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
