/*
 * state.js: the page's settings (from <script id="page-config">) and the state of the
 * chat on screen, shared by every module: `state`, and `messageData` beside each
 * message's element.
 */

export const config = JSON.parse(document.getElementById('page-config').textContent);
export const API = config.api_base.replace(/\/$/, '');
export const INPUT_MAX = Number(config.input_max) || 500;
export const IS_CHARACTER = config.app === 'character';
// Who the page acts for comes from the session cookie; writes carry Django's CSRF token.
export const USERNAME = config.username || '';
export const CSRF_TOKEN = config.csrf_token || '';
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export const state = {
  personas: new Map(),
  defaultPersona: null,
  persona: null, // persona of the chat on screen
  greeting: 0, // character app: which of the persona's greetings the chat on screen starts with
  userName: USERNAME, // character app: who the user is in role-play ({{user}}), GET /user-persona
  dbId: null, // conversation on screen
  group: null, // the group chat on screen (its conversation: members, muted, activation), or null
  stored: false, // the server has this conversation
  conversations: [],
  model: { state: 'unknown', name: config.model || '', error: null },
  conn: 'connecting',
  everOpen: false,
  restarting: false, // the gateway says the app is down (a crash being restarted)
  ws: null,
  stream: null, // the running generation, see streamBegin
  busy: null, // { seconds, timer } while waiting to retry after server_busy
  queuePosition: null,
  reloadAfterReconnect: null,
  replaced: new Set(), // ids of stored replies a regenerated one replaced (hidden), over every page shown
  viewSeq: 0, // bumps on every view change, so late responses for an old view are dropped
};

/** Per-message data kept beside the DOM node: raw text, ids, parts. */
export const messageData = new WeakMap();

export function uuid4() {
  if (window.crypto && typeof crypto.randomUUID === 'function') {
    try {
      return crypto.randomUUID();
    } catch (_) {
      // not a secure context: fall through
    }
  }
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function personaName(id) {
  const p = state.personas.get(id);
  return p ? p.name : id || 'Assistant';
}
