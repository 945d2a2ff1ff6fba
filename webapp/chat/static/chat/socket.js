/*
 * socket.js: the chat WebSocket at {ws_path}: connect, reconnect with backoff, the
 * connection indicator, and the frames from the server, handed to the modules that
 * own them. While the socket is down it asks whether the app itself is restarting.
 * One generation runs at a time (the server allows one per socket).
 */
import { API, config, state } from './state.js';
import { els } from './dom.js';
import { api, signinGo } from './api.js';
import { bannerRender, errorShow } from './banner.js';
import { composerUpdate } from './composer.js';
import { conversationsRefresh } from './conversations.js';
import { hooks } from './hooks.js';
import { modelSet } from './model.js';
import { connectionLost, onDone, onError, onStart, resumeAfterReconnect, streamScheduleRender } from './stream.js';
import { PAGE_SIZE, threadRender } from './thread.js';

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 5000;

export function connSet(conn) {
  state.conn = conn;
  els.conn.dataset.state = conn;
  const label = { connecting: 'Connecting', open: 'Connected', closed: 'Offline' }[conn];
  els.conn.title = label;
  els.conn.querySelector('.connection-label').textContent = label;
  els.conn.setAttribute('aria-label', `Connection: ${label}`);
  bannerRender();
  composerUpdate();
}

export function wsOpen() {
  return state.ws && state.ws.readyState === WebSocket.OPEN;
}

let reconnectDelay = RECONNECT_MIN_MS;
let reconnectTimer = null;

export function wsConnect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  let ws;
  try {
    ws = new WebSocket(`${scheme}://${location.host}${config.ws_path}`);
  } catch (_) {
    wsScheduleReconnect();
    return;
  }
  state.ws = ws;
  connSet('connecting');
  ws.addEventListener('open', () => {
    if (state.ws !== ws) return;
    reconnectDelay = RECONNECT_MIN_MS;
    state.restarting = false;
    const wasOpen = state.everOpen;
    state.everOpen = true;
    connSet('open');
    if (wasOpen) afterReconnect();
  });
  ws.addEventListener('message', (event) => {
    if (state.ws !== ws) return;
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch (_) {
      return;
    }
    if (frame && typeof frame === 'object') frameHandle(frame);
  });
  ws.addEventListener('close', (event) => {
    if (state.ws !== ws) return;
    if (event.code === 4401) {
      // The server no longer knows this session (signed out, expired, account disabled).
      signinGo();
      return;
    }
    connSet('closed');
    connectionLost();
    wsScheduleReconnect();
    restartingCheck();
  });
}

/** While the socket is down: does the gateway say the app itself is down (restarting)? */
async function restartingCheck() {
  let restarting = false;
  try {
    const response = await fetch(`${API}/health`, { cache: 'no-store', headers: { Accept: 'application/json' } });
    const body = await response.json().catch(() => ({}));
    restarting = response.status === 503 && Boolean(body.error) && body.error.code === 'app_unavailable';
  } catch (_) {
    restarting = false;
  }
  if (state.conn !== 'closed') return;
  state.restarting = restarting;
  bannerRender();
}

function wsScheduleReconnect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(wsConnect, reconnectDelay);
  reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
}

export function wsSend(frame) {
  if (!wsOpen()) return false;
  state.ws.send(JSON.stringify(frame));
  return true;
}

async function afterReconnect() {
  if (resumeAfterReconnect()) return; // the reply goes on where it was
  await pendingReload();
}

/** Reload the conversation a dropped stream belonged to, showing what the store has. */
export async function pendingReload() {
  const pending = state.reloadAfterReconnect;
  state.reloadAfterReconnect = null;
  if (!pending || pending.dbId !== state.dbId) return;
  const seq = state.viewSeq;
  let data;
  try {
    data = await api(`/conversations/${pending.dbId}/messages?limit=${PAGE_SIZE}`);
  } catch (err) {
    if (err.status === 404) return; // the chat never reached the store: keep what is shown
    errorShow(err);
    return;
  }
  if (seq !== state.viewSeq) return;
  state.stored = true;
  threadRender(data.messages, { interrupted: pending, before: data.before });
  conversationsRefresh();
}

/** A frame from the server, to the module that owns it. */
function frameHandle(frame) {
  switch (frame.type) {
    case 'status':
      modelSet(frame.state, frame.model, frame.error);
      break;
    case 'queued':
      if (state.stream) {
        state.queuePosition = frame.position;
        bannerRender();
      }
      break;
    case 'start':
      onStart(frame);
      break;
    case 'resumed':
      if (state.stream) state.stream.resuming = false;
      break;
    case 'token':
      if (state.queuePosition !== null) {
        // Queued frames come between start and the first token: the wait is over.
        state.queuePosition = null;
        bannerRender();
      }
      if (state.stream && typeof frame.text === 'string') {
        state.stream.text += frame.text;
        streamScheduleRender(state.stream);
      }
      break;
    case 'done':
      onDone(frame);
      break;
    case 'error':
      onError(frame);
      break;
    default:
      hooks.frame(frame); // office: tool_call
      break;
  }
}
