/*
 * model.js: the model's state (ready, loading, failed), from the socket's status frames
 * and from polling /health while it loads or after it failed.
 */
import { API, state } from './state.js';
import { els } from './dom.js';
import { bannerRender } from './banner.js';
import { composerUpdate } from './composer.js';
import { isPhone } from './drawer.js';

const HEALTH_POLL_MS = 2000;
const HEALTH_POLL_FAILED_MS = 10000;

export function modelSet(modelState, name, error) {
  const previous = state.model.state;
  state.model.state = modelState;
  if (name) {
    state.model.name = name;
    els.modelName.textContent = name;
  }
  state.model.error = error || null;
  if (modelState === 'loading' || modelState === 'failed') healthPollStart();
  bannerRender();
  composerUpdate();
  if (previous !== 'ready' && modelState === 'ready' && !isPhone()) els.input.focus();
}

let healthTimer = null;
let healthInFlight = false;

/** Polls /health until the model is ready: every 2 s while loading, slower after a failure. */
function healthPollStart() {
  if (healthTimer !== null || healthInFlight) return;
  const delay = state.model.state === 'failed' ? HEALTH_POLL_FAILED_MS : HEALTH_POLL_MS;
  healthTimer = setTimeout(healthCheck, delay);
}

export async function healthCheck() {
  healthTimer = null;
  healthInFlight = true;
  let status = null;
  let body = {};
  try {
    const response = await fetch(`${API}/health`, { cache: 'no-store', headers: { Accept: 'application/json' } });
    body = await response.json().catch(() => ({}));
    status = body.status || (response.ok ? 'ready' : 'loading');
  } catch (_) {
    status = null; // network trouble: ask again shortly
  }
  healthInFlight = false;
  if (status) modelSet(status, body.model, body.error);
  else healthPollStart();
}
