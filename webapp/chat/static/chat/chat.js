/*
 * chat.js: the browser chat app of both apps (office and character).
 *
 * Reads its settings from <script id="page-config">, talks REST to {api_base}/… for
 * personas, conversations and history, and streams replies over one WebSocket at
 * {ws_path}. One generation runs at a time (the server allows one per socket).
 *
 * Safety: text from the model, the user or a persona is only ever placed with
 * textContent or through PersonaMarkdown.render (which builds DOM nodes itself);
 * this file never assigns innerHTML.
 *
 * The office app adds a documents panel (upload with progress, drag-and-drop, indexing
 * status, delete), a "Sources" row under grounded replies, and slash commands that call
 * the office tools (/calc, /search, …) and show local, unsaved result cards. Its composer
 * has two options for the next message, remembered in localStorage: Web (google_access)
 * and Tools (off | auto | always, and which tools are offered). The calls the model makes
 * show as "tool steps" above the reply's text; one that needs approval gets Approve / Deny
 * buttons that answer on the same WebSocket.
 *
 * Debug/test handle: window.personaChat (read-only): ws, state, config.
 * document.body.dataset.ready = "true" once personas and the conversation list loaded.
 */
(function () {
  'use strict';

  const config = JSON.parse(document.getElementById('page-config').textContent);
  const API = config.api_base.replace(/\/$/, '');
  const INPUT_MAX = Number(config.input_max) || 500;
  const IS_CHARACTER = config.app === 'character';
  const IS_OFFICE = config.app === 'office';
  const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const USER_ID_KEY = 'personachat.user_id';
  const HEALTH_POLL_MS = 2000;
  const HEALTH_POLL_FAILED_MS = 10000;
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 5000;
  const BUSY_MAX_RETRIES = 3;
  const STOP_GRACE_MS = 10000;
  // Errors the server gives before it stores anything: the message can simply be retried.
  const REJECTED_BEFORE_START = new Set([
    'malformed_json', 'unknown_type', 'invalid', 'blank', 'max_length', 'min_length', 'required', 'null',
    'not_found', 'model_loading', 'generation_in_progress', 'server_busy', 'frame_too_large',
  ]);
  const FIELD_LABELS = {
    input_data: 'Message',
    persona: 'Persona',
    db_id: 'Conversation id',
    user_id: 'User id',
    type: 'Frame type',
    tools: 'Tool calls',
    tool_names: 'Offered tools',
    google_access: 'Web search',
    approval_id: 'Approval',
  };

  // -------------------------------------------------------------------------
  // Elements

  const $ = (id) => document.getElementById(id);
  const els = {
    layout: $('layout'),
    sidebar: $('sidebar'),
    backdrop: $('backdrop'),
    menuButton: $('menu-button'),
    sidebarClose: $('sidebar-close'),
    newChat: document.querySelector('[data-testid="new-chat"]'),
    convList: $('conversation-list'),
    convEmpty: $('conversation-empty'),
    appSwitch: $('app-switch'),
    appSwitchTitle: $('app-switch-title'),
    picker: $('persona-picker'),
    modelName: $('model-name'),
    conn: $('connection-state'),
    scroller: $('scroller'),
    intro: $('intro'),
    introAvatar: $('intro-avatar'),
    introName: $('intro-name'),
    introDescription: $('intro-description'),
    introHint: $('intro-hint'),
    messages: $('message-list'),
    jumpBottom: $('jump-bottom'),
    banner: $('status-banner'),
    bannerText: $('status-text'),
    errorLine: $('error-line'),
    errorText: $('error-text'),
    errorDismiss: $('error-dismiss'),
    composer: $('composer'),
    input: $('message-input'),
    counter: $('char-counter'),
    send: $('send-button'),
    hint: $('composer-hint'),
    main: $('main'),
    // Office only (absent from the character page):
    docUpload: $('document-upload'),
    docFile: $('document-file'),
    docList: $('document-list'),
    docEmpty: $('documents-empty'),
    docError: $('documents-error'),
    docErrorList: $('documents-error-list'),
    docErrorDismiss: $('documents-error-dismiss'),
    dropOverlay: $('drop-overlay'),
    webToggle: $('web-toggle'),
    webState: $('web-state'),
    toolsButton: $('tools-button'),
    toolsState: $('tools-state'),
    toolsMenu: $('tools-menu'),
    toolsList: $('tools-list'),
    toolsAll: $('tools-all'),
    toolsModeAbout: $('tools-mode-about'),
  };

  // -------------------------------------------------------------------------
  // State

  const state = {
    userId: userIdGet(),
    personas: new Map(),
    defaultPersona: null,
    persona: null, // persona of the chat on screen
    dbId: null, // conversation on screen
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
    viewSeq: 0, // bumps on every view change, so late responses for an old view are dropped
  };

  /** Per-message data kept beside the DOM node: raw text, ids, parts. */
  const messageData = new WeakMap();

  // -------------------------------------------------------------------------
  // Small utilities

  function uuid4() {
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

  function userIdGet() {
    let id = null;
    try {
      id = localStorage.getItem(USER_ID_KEY);
    } catch (_) {
      id = null;
    }
    if (!id || id.length > 128) {
      id = uuid4();
      try {
        localStorage.setItem(USER_ID_KEY, id);
      } catch (_) {
        // storage blocked: the id lives as long as the page
      }
    }
    return id;
  }

  function node(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  const ICONS = {
    copy: ['M9 9h10v10H9z', 'M5 15V5h10'],
    check: ['M5 12l5 5 9-10'],
    close: ['M6 6l12 12M18 6L6 18'],
    file: ['M6 3h8l4 4v14H6z', 'M14 3v4h4', 'M9 12h6M9 16h6'],
    tool: ['M14.7 6.3a4 4 0 0 0-5.4 5.4L3 18l3 3 6.3-6.3a4 4 0 0 0 5.4-5.4l-2.5 2.5-2.5-.5-.5-2.5z'],
    shield: ['M12 3l8 3v6c0 5-3.5 8-8 9-4.5-1-8-4-8-9V6z', 'M12 8v4M12 15.5v.5'],
    alert: ['M12 8v5M12 16.5v.5M12 3l10 18H2z'],
    info: ['M12 11v6M12 7.5v.5', 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18z'],
    regenerate: ['M20 11a8 8 0 1 0-2.3 5.7', 'M20 5v6h-6'],
    trash: ['M4 7h16', 'M10 11v6M14 11v6', 'M6 7l1 13h10l1-13', 'M9 7V4h6v3'],
  };

  function icon(name) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    for (const d of ICONS[name]) {
      const path = document.createElementNS(ns, 'path');
      path.setAttribute('d', d);
      svg.append(path);
    }
    return svg;
  }

  function relativeTime(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return '';
    const seconds = Math.max(0, (Date.now() - t) / 1000);
    if (seconds < 45) return 'just now';
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    if (seconds < 172800) return 'yesterday';
    if (seconds < 7 * 86400) return `${Math.floor(seconds / 86400)} days ago`;
    const date = new Date(t);
    const sameYear = date.getFullYear() === new Date().getFullYear();
    return date.toLocaleDateString(undefined, { month: 'short', day: 'numeric', year: sameYear ? undefined : 'numeric' });
  }

  function personaName(id) {
    const p = state.personas.get(id);
    return p ? p.name : id || 'Assistant';
  }

  function initialOf(name) {
    const first = Array.from((name || '?').trim())[0] || '?';
    return first.toUpperCase();
  }

  // -------------------------------------------------------------------------
  // REST

  class ApiError extends Error {
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

  async function api(path, options) {
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
  async function apiPost(path, payload) {
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

  // -------------------------------------------------------------------------
  // Banner (model / connection / queue state) and the error line

  function bannerRender() {
    let kind = null;
    let text = '';
    if (state.conn === 'closed' && state.restarting) {
      kind = 'restarting';
      text = 'The chat server is restarting — reconnecting…';
    } else if (state.conn === 'closed' && state.everOpen) {
      kind = 'reconnecting';
      text = 'Connection lost — reconnecting…';
    } else if (state.conn === 'closed') {
      kind = 'reconnecting';
      text = 'Cannot reach the chat server — retrying…';
    } else if (state.model.state === 'failed') {
      kind = 'failed';
      text = `The model failed to load${state.model.error ? `: ${state.model.error}` : '.'} Retrying…`;
    } else if (state.model.state === 'loading') {
      kind = 'loading';
      text = 'Model loading… the chat opens as soon as it is ready.';
    } else if (state.busy) {
      kind = 'busy';
      text = `Server busy — retrying in ${state.busy.seconds} s`;
    } else if (state.queuePosition !== null) {
      kind = 'queued';
      text = `Waiting — position ${state.queuePosition} in the queue`;
    }
    if (!kind) {
      els.banner.hidden = true;
      delete els.banner.dataset.state;
      els.bannerText.textContent = '';
      return;
    }
    els.banner.dataset.state = kind;
    els.bannerText.textContent = text;
    els.banner.hidden = false;
  }

  function fieldLabel(field) {
    return FIELD_LABELS[field] ? `${FIELD_LABELS[field]} (${field})` : field;
  }

  function errorShow(err) {
    const code = err.code || 'error';
    let message = err.message || 'Something went wrong.';
    // Server messages already start with "field: …"; say the field once, readably.
    if (err.field && message.startsWith(`${err.field}: `)) message = message.slice(err.field.length + 2);
    const text = err.field ? `${fieldLabel(err.field)}: ${message}` : message;
    els.errorText.textContent = text;
    els.errorLine.dataset.code = code;
    if (err.field) els.errorLine.dataset.field = err.field;
    else delete els.errorLine.dataset.field;
    els.errorLine.hidden = false;
  }

  function errorClear() {
    els.errorLine.hidden = true;
    els.errorText.textContent = '';
    delete els.errorLine.dataset.code;
    delete els.errorLine.dataset.field;
  }

  // -------------------------------------------------------------------------
  // Connection state and composer

  function connSet(conn) {
    state.conn = conn;
    els.conn.dataset.state = conn;
    const label = { connecting: 'Connecting', open: 'Connected', closed: 'Offline' }[conn];
    els.conn.title = label;
    els.conn.querySelector('.connection-label').textContent = label;
    els.conn.setAttribute('aria-label', `Connection: ${label}`);
    bannerRender();
    composerUpdate();
  }

  function modelSet(modelState, name, error) {
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

  function wsOpen() {
    return state.ws && state.ws.readyState === WebSocket.OPEN;
  }

  function composerUpdate() {
    const ready = state.model.state === 'ready';
    const streaming = Boolean(state.stream);
    els.input.disabled = !ready;
    if (!ready) {
      els.input.placeholder = state.model.state === 'failed' ? 'The model is unavailable' : 'Model loading…';
    } else {
      const name = state.persona ? personaName(state.persona) : '';
      els.input.placeholder = name ? `Message ${name}…` : 'Message…';
    }
    const length = els.input.value.length;
    const slash = IS_OFFICE && slashParse(els.input.value);
    const command = Boolean(slash && slash.kind === 'command');
    if (IS_OFFICE) slashHintUpdate(els.input.value);
    if (length >= INPUT_MAX * 0.8 && !command) {
      els.counter.hidden = false;
      els.counter.textContent = `${length} / ${INPUT_MAX}`;
      els.counter.classList.toggle('is-over', length > INPUT_MAX);
    } else {
      els.counter.hidden = true;
    }
    if (streaming) {
      els.send.classList.add('is-stop');
      els.send.dataset.testid = 'stop-button';
      els.send.setAttribute('aria-label', 'Stop generating');
      els.send.title = 'Stop (Esc)';
      els.send.disabled = false;
    } else {
      els.send.classList.remove('is-stop');
      els.send.dataset.testid = 'send-button';
      els.send.setAttribute('aria-label', 'Send message');
      els.send.title = 'Send (Enter)';
      const hasText = els.input.value.trim().length > 0;
      els.send.disabled = command
        ? !hasText
        : !(ready && wsOpen() && hasText && length <= INPUT_MAX) || Boolean(state.busy);
    }
  }

  function inputAutogrow() {
    const ta = els.input;
    ta.style.height = 'auto';
    const max = Math.max(120, window.innerHeight * 0.4);
    ta.style.height = `${Math.min(ta.scrollHeight, max)}px`;
  }

  // -------------------------------------------------------------------------
  // Health polling (while the model loads, and after a failure)

  let healthTimer = null;

  let healthInFlight = false;

  /** Polls /health until the model is ready: every 2 s while loading, slower after a failure. */
  function healthPollStart() {
    if (healthTimer !== null || healthInFlight) return;
    const delay = state.model.state === 'failed' ? HEALTH_POLL_FAILED_MS : HEALTH_POLL_MS;
    healthTimer = setTimeout(healthCheck, delay);
  }

  async function healthCheck() {
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

  // -------------------------------------------------------------------------
  // WebSocket

  let reconnectDelay = RECONNECT_MIN_MS;
  let reconnectTimer = null;

  function wsConnect() {
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
    ws.addEventListener('close', () => {
      if (state.ws !== ws) return;
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

  function wsSend(frame) {
    if (!wsOpen()) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  /** The socket dropped: a running stream is cut; reload its conversation once back. */
  function connectionLost() {
    busyCancel();
    state.queuePosition = null;
    const s = state.stream;
    if (!s) return;
    const text = s.text;
    const visible = s.bubble.isConnected;
    if (!s.started) {
      // No "start" yet: as far as we know nothing was stored. Undo; the reload after
      // reconnecting shows the truth should the server have stored the question.
      streamTakeBack(s);
    } else {
      streamEnd(s);
      if (visible) {
        messageData.get(s.bubble).text = text;
        bubbleFinish(s.bubble, { interrupted: true });
      }
    }
    if (visible && (s.started || state.stored)) {
      state.reloadAfterReconnect = { dbId: s.dbId, messageId: s.messageId, text };
    }
    regenerateButtonsUpdate();
    bannerRender();
    composerUpdate();
  }

  async function afterReconnect() {
    const pending = state.reloadAfterReconnect;
    state.reloadAfterReconnect = null;
    if (!pending || pending.dbId !== state.dbId) return;
    const seq = state.viewSeq;
    let data;
    try {
      data = await api(`/conversations/${pending.dbId}/messages`);
    } catch (err) {
      if (err.status === 404) return; // the chat never reached the store: keep what is shown
      errorShow(err);
      return;
    }
    if (seq !== state.viewSeq) return;
    state.stored = true;
    threadRender(data.messages, { interrupted: pending });
    conversationsRefresh();
  }

  // -------------------------------------------------------------------------
  // Frames from the server

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
      case 'tool_call':
        if (IS_OFFICE) onToolCall(frame);
        break;
      case 'done':
        onDone(frame);
        break;
      case 'error':
        onError(frame);
        break;
      default:
        break;
    }
  }

  function onStart(frame) {
    const s = state.stream;
    if (!s) return;
    s.started = true;
    s.messageId = frame.message_id || null;
    state.queuePosition = null;
    busyCancel();
    bannerRender();
    if (s.messageId) s.bubble.dataset.messageId = s.messageId;
    messageData.get(s.bubble).id = s.messageId;
    if (s.userEl && frame.user_message_id) {
      s.userEl.dataset.messageId = frame.user_message_id;
      messageData.get(s.userEl).id = frame.user_message_id;
    }
    if (s.dbId === state.dbId && !state.stored) {
      state.stored = true;
      hashSet(state.dbId);
      const now = new Date().toISOString();
      const title = (s.frame.input_data || 'New chat').trim().replace(/\s+/g, ' ').slice(0, 80);
      if (!state.conversations.some((c) => c.db_id === s.dbId)) {
        state.conversations.unshift({
          db_id: s.dbId,
          persona: s.persona,
          title,
          message_count: 1,
          created_at: now,
          updated_at: now,
        });
      }
      conversationsRender();
    }
  }

  function onDone(frame) {
    const s = state.stream;
    if (!s) return;
    streamEnd(s);
    const data = messageData.get(s.bubble);
    data.text = s.text;
    if (frame.message_id) {
      data.id = frame.message_id;
      s.bubble.dataset.messageId = frame.message_id;
    }
    const usage = frame.usage || {};
    data.meta = {
      finish_reason: frame.finish_reason,
      tokens: usage.completion_tokens,
      timings: frame.timings || null,
      sources: Array.isArray(frame.sources) ? frame.sources : [],
      tool_calls: Array.isArray(frame.tool_calls) ? frame.tool_calls : [],
    };
    const stick = nearBottom();
    bubbleFinish(s.bubble, {});
    regenerateButtonsUpdate();
    if (stick && s.bubble.isConnected) scrollToBottom();
    composerUpdate();
    conversationsRefresh();
    storedTextSync(s.dbId, s.bubble);
  }

  /**
   * After "done", take the reply's text from the store: Copy then copies exactly what
   * was saved, even if the streamed pieces differed from it (whitespace, a lost frame).
   */
  async function storedTextSync(dbId, article) {
    const data = messageData.get(article);
    if (!data.id) return;
    let body;
    try {
      body = await api(`/conversations/${dbId}/messages`);
    } catch (_) {
      return;
    }
    const stored = (body.messages || []).find((m) => m.id === data.id);
    if (!stored || stored.content === data.text || !article.isConnected || article.dataset.streaming === 'true') return;
    data.text = stored.content;
    bodyRender(article, data.text, false);
  }

  function onError(frame) {
    const s = state.stream;
    if (frame.code === 'no_pending_approval') {
      // An Approve / Deny that came too late (the call was already settled): the turn goes on.
      errorShow(frame);
      return;
    }
    if (frame.code === 'model_loading') modelSet('loading', null, null);
    if (s && !s.started && frame.code === 'server_busy') {
      if (s.retries < BUSY_MAX_RETRIES) {
        s.retries += 1;
        busyWait(s, Number(frame.retry_after) > 0 ? Number(frame.retry_after) : 2);
        return;
      }
    }
    if (s && !s.started && REJECTED_BEFORE_START.has(frame.code)) {
      streamTakeBack(s);
    } else if (s) {
      // Failed after it started (or in a way that may have stored the question).
      streamEnd(s);
      const data = messageData.get(s.bubble);
      data.text = s.text;
      bubbleFinish(s.bubble, { error: frame.message || 'The reply failed.' });
      if (s.kind === 'message' && s.dbId === state.dbId) state.stored = true;
      regenerateButtonsUpdate();
      composerUpdate();
      if (s.dbId === state.dbId) conversationsRefresh();
    }
    errorShow(frame);
  }

  /** The server refused a turn before storing anything: undo the optimistic bubbles. */
  function streamTakeBack(s) {
    streamEnd(s);
    if (s.kind === 'message') {
      s.bubble.remove();
      if (s.userEl) s.userEl.remove();
      if (s.dbId === state.dbId) restoreInput(s.frame.input_data);
    } else if (s.replaced && s.bubble.isConnected) {
      s.bubble.replaceWith(s.replaced);
    }
    introUpdate();
    regenerateButtonsUpdate();
    composerUpdate();
  }

  function restoreInput(text) {
    if (!text || els.input.value.trim()) return;
    els.input.value = text;
    inputAutogrow();
    composerUpdate();
  }

  // -------------------------------------------------------------------------
  // server_busy: wait retry_after seconds, then send the same frame again

  function busyWait(s, seconds) {
    busyCancel();
    const busy = { seconds: Math.max(1, Math.ceil(seconds)), timer: null, stream: s };
    state.busy = busy;
    const tick = () => {
      if (state.busy !== busy) return;
      busy.seconds -= 1;
      if (busy.seconds > 0) {
        bannerRender();
        busy.timer = setTimeout(tick, 1000);
        return;
      }
      state.busy = null;
      bannerRender();
      if (state.stream !== s) return;
      if (!wsSend(s.frame)) connectionLost();
      composerUpdate();
    };
    bannerRender();
    composerUpdate();
    busy.timer = setTimeout(tick, 1000);
  }

  function busyCancel() {
    if (!state.busy) return;
    clearTimeout(state.busy.timer);
    state.busy = null;
    bannerRender();
  }

  // -------------------------------------------------------------------------
  // Streaming

  function streamBegin(kind, frame, { userEl, bubble, replaced }) {
    state.stream = {
      kind,
      frame,
      dbId: frame.db_id,
      persona: frame.persona,
      userEl: userEl || null,
      bubble,
      replaced: replaced || null,
      text: '',
      messageId: null,
      started: false,
      stopRequested: false,
      stopTimer: null,
      retries: 0,
      renderQueued: false,
    };
    errorClear();
    const sent = wsSend(frame);
    composerUpdate();
    if (!sent) connectionLost();
  }

  function streamEnd(s) {
    if (state.stream === s) state.stream = null;
    clearTimeout(s.stopTimer);
    if (state.busy && state.busy.stream === s) busyCancel();
    state.queuePosition = null;
    bannerRender();
  }

  function streamScheduleRender(s) {
    if (s.renderQueued) return;
    s.renderQueued = true;
    requestAnimationFrame(() => {
      s.renderQueued = false;
      if (state.stream !== s) return;
      const stick = nearBottom();
      bodyRender(s.bubble, s.text, true);
      if (stick) scrollToBottom();
    });
  }

  function stopGeneration() {
    const s = state.stream;
    if (!s || s.stopRequested) return;
    s.stopRequested = true;
    if (state.busy && state.busy.stream === s) {
      // Not sent again yet (waiting to retry after server_busy): just take it back.
      streamTakeBack(s);
      return;
    }
    wsSend({ type: 'stop' });
    if (IS_OFFICE) toolStepsStopping(s.bubble); // a call waiting for approval is denied by the stop
    // Should "done" never come (an old server, a lost frame), do not stay stuck.
    s.stopTimer = setTimeout(() => {
      if (state.stream !== s) return;
      streamEnd(s);
      const data = messageData.get(s.bubble);
      data.text = s.text;
      data.meta = Object.assign({}, data.meta, { finish_reason: 'stopped' });
      bubbleFinish(s.bubble, {});
      regenerateButtonsUpdate();
      composerUpdate();
    }, STOP_GRACE_MS);
  }

  // -------------------------------------------------------------------------
  // Messages

  /**
   * Builds one message element. role: "user" | "assistant". Options: id, text,
   * streaming, meta, persona, greeting.
   */
  function messageCreate(role, options) {
    const o = options || {};
    const article = node('article', `message message-${role}`);
    article.dataset.testid = 'message';
    article.dataset.role = role;
    article.dataset.streaming = o.streaming ? 'true' : 'false';
    article.setAttribute('aria-busy', o.streaming ? 'true' : 'false');
    if (o.id) article.dataset.messageId = o.id;
    if (o.greeting) {
      article.dataset.greeting = 'true';
      article.classList.add('message-greeting');
    }
    const persona = state.personas.get(o.persona || state.persona);
    const main = node('div', 'message-main');
    const body = node('div', role === 'assistant' ? 'message-body md' : 'message-body');
    body.dataset.testid = 'message-body';
    if (role === 'assistant') {
      const name = personaName(o.persona || state.persona);
      const avatar = node('div', 'message-avatar', initialOf(name));
      avatar.setAttribute('aria-hidden', 'true');
      article.append(avatar);
      main.append(node('div', 'message-name', name));
      if (persona && persona.language) body.lang = persona.language;
    }
    const footer = node('div', 'message-footer');
    main.append(body, footer);
    article.append(main);
    messageData.set(article, {
      role,
      id: o.id || null,
      text: o.text || '',
      meta: o.meta || null,
      greeting: Boolean(o.greeting),
      body,
      footer,
      flags: {},
    });
    if (role === 'user') {
      body.textContent = o.text || '';
    } else {
      bodyRender(article, o.text || '', Boolean(o.streaming));
    }
    return article;
  }

  function bodyRender(article, text, streaming) {
    const data = messageData.get(article);
    const parts = [];
    let rest = text;
    if (IS_OFFICE && data.role === 'assistant' && text.startsWith(WEB_NOTICE)) {
      // "Web search was not used: <reason>" opens the stored reply, then a blank line and the answer.
      const end = text.indexOf('\n\n');
      parts.push(noticeBuild(end < 0 ? text : text.slice(0, end)));
      rest = end < 0 ? '' : text.slice(end + 2);
    }
    parts.push(window.PersonaMarkdown.render(rest));
    data.body.replaceChildren(...parts);
    if (streaming) cursorPlace(data.body);
  }

  /** Puts the cursor at the end of the deepest last block, so it sits after the text. */
  function cursorPlace(body) {
    const cursor = node('span', 'cursor');
    cursor.setAttribute('aria-hidden', 'true');
    let target = body;
    for (;;) {
      const last = target.lastChild;
      if (!last || last.nodeType !== Node.ELEMENT_NODE) break;
      const tag = last.tagName;
      if (['P', 'UL', 'OL', 'LI', 'BLOCKQUOTE', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'PRE'].includes(tag)) {
        target = last;
      } else if (tag === 'DIV' && last.classList.contains('md-code')) {
        target = last.querySelector('code') || last;
        break;
      } else {
        break;
      }
    }
    target.append(cursor);
  }

  function formatStats(meta) {
    const parts = [];
    const t = meta.timings || {};
    if (typeof t.ttft_ms === 'number') parts.push(`TTFT ${Math.round(t.ttft_ms)} ms`);
    if (typeof t.tokens_per_s === 'number') parts.push(`${t.tokens_per_s.toFixed(1)} tok/s`);
    if (typeof meta.tokens === 'number') parts.push(`${meta.tokens} token${meta.tokens === 1 ? '' : 's'}`);
    return parts.join(' · ');
  }

  function actionButton(label, iconName, testid, onClick) {
    const button = node('button', 'action-button');
    button.type = 'button';
    button.dataset.testid = testid;
    button.setAttribute('aria-label', label);
    button.title = label;
    button.append(icon(iconName), node('span', null, label.split(' ')[0]));
    button.addEventListener('click', onClick);
    return button;
  }

  /**
   * A reply is over (done, error, stop or a cut connection): drop the cursor and write
   * the footer (stats, badges, copy). flags: { interrupted, error }.
   */
  function bubbleFinish(article, flags) {
    const data = messageData.get(article);
    Object.assign(data.flags, flags);
    if (IS_OFFICE && data.role === 'assistant' && !data.greeting) toolStepsFinish(article);
    article.dataset.streaming = 'false';
    article.setAttribute('aria-busy', 'false');
    bodyRender(article, data.text, false);
    const meta = data.meta || {};
    if (!data.text && !data.greeting && !data.flags.error) {
      let note = 'The reply was empty.';
      if (data.flags.interrupted) note = 'The connection dropped before any text arrived.';
      else if (meta.finish_reason === 'stopped') note = 'Stopped before any text arrived.';
      data.body.append(node('p', 'message-placeholder', note));
    }
    const footer = data.footer;
    footer.replaceChildren();
    if (!data.greeting) {
      // The stats line always exists on a finished reply; its badges live inside it,
      // so "stopped" reads as part of the line: "TTFT 80 ms · 40.2 tok/s · 12 tokens stopped".
      const stats = node('span', 'reply-stats', formatStats(meta));
      stats.dataset.testid = 'reply-stats';
      const badges = [];
      if (meta.finish_reason === 'stopped') {
        badges.push(badge('stopped', 'Stopped before the end'));
      } else if (meta.finish_reason === 'length') {
        badges.push(badge('length', 'Cut at the maximum reply length'));
      } else if (meta.finish_reason === 'deadline') {
        badges.push(badge('deadline', 'Ended at the time limit for one reply'));
      } else if (meta.finish_reason === 'interrupted') {
        badges.push(badge('interrupted', 'The server stopped while this reply was being written; this is what it had'));
      }
      if (data.flags.interrupted && meta.finish_reason !== 'interrupted') {
        badges.push(badge('interrupted', 'The connection dropped while this reply was streaming'));
      }
      if (data.flags.error) badges.push(badge('error', 'The reply failed'));
      for (const b of badges) {
        if (stats.firstChild) stats.append(document.createTextNode(' '));
        stats.append(b);
      }
      footer.append(stats);
      if (data.errorEl) data.errorEl.remove();
      if (data.flags.error) {
        const error = node('div', 'message-error', data.flags.error);
        footer.before(error);
        data.errorEl = error;
      }
      if (data.sourcesEl) data.sourcesEl.remove();
      data.sourcesEl = null;
      const sources = Array.isArray(meta.sources) ? meta.sources.filter((x) => x && typeof x === 'object') : [];
      if (sources.length) {
        data.sourcesEl = sourcesBuild(sources);
        footer.before(data.sourcesEl);
      }
    }
    if (data.text) {
      const copy = actionButton('Copy reply', 'copy', 'copy-reply', async () => {
        const ok = await window.PersonaMarkdown.copyText(messageData.get(article).text);
        copy.classList.toggle('is-done', ok);
        copy.lastChild.textContent = ok ? 'Copied' : 'Copy failed';
        setTimeout(() => {
          copy.classList.remove('is-done');
          copy.lastChild.textContent = 'Copy';
        }, 1500);
      });
      footer.append(copy);
    }
  }

  function badge(kind, title) {
    const b = node('span', `badge badge-${kind}`, kind);
    b.title = title;
    b.dataset.badge = kind;
    return b;
  }

  /** Only the last assistant reply of a stored chat can be regenerated. */
  function regenerateButtonsUpdate() {
    els.messages.querySelectorAll('[data-testid="regenerate"]').forEach((b) => b.remove());
    if (state.stream || !state.stored) return;
    const all = els.messages.querySelectorAll('[data-testid="message"]');
    const last = all[all.length - 1];
    if (!last || last.dataset.role !== 'assistant' || last.dataset.greeting) return;
    if (last.dataset.streaming === 'true') return; // a reply about to stream: nothing to regenerate yet
    const hasUser = els.messages.querySelector('[data-role="user"]');
    if (!hasUser) return;
    const data = messageData.get(last);
    const button = actionButton('Regenerate reply', 'regenerate', 'regenerate', () => regenerate(last));
    data.footer.append(button);
  }

  function messageAppend(article) {
    article.classList.add('is-new'); // only live messages animate in, not a reopened history
    els.messages.append(article);
    introUpdate();
  }

  function greetingAppend(personaId) {
    const persona = state.personas.get(personaId);
    if (!IS_CHARACTER || !persona || !persona.greeting) return;
    const article = messageCreate('assistant', { text: persona.greeting, greeting: true, persona: personaId });
    bubbleFinish(article, {});
    els.messages.append(article);
  }

  function introUpdate() {
    const hasTurns = Boolean(els.messages.querySelector('[data-testid="message"]:not([data-greeting]), .tool-card'));
    const persona = state.personas.get(state.persona);
    if (hasTurns || !persona) {
      els.intro.hidden = true;
      return;
    }
    els.introAvatar.textContent = initialOf(persona.name);
    els.introName.textContent = persona.name;
    els.introDescription.textContent = persona.description || '';
    els.intro.lang = persona.language || 'en';
    if (IS_CHARACTER) {
      els.introHint.textContent = '';
      els.introHint.hidden = true;
    } else {
      els.introHint.textContent = persona.greeting || 'How can I help?';
      els.introHint.hidden = false;
    }
    els.intro.hidden = false;
  }

  /** Shows a conversation's stored messages (replaced replies hidden). */
  function threadRender(messages, options) {
    const o = options || {};
    els.messages.replaceChildren();
    const replaced = new Set();
    for (const m of messages) {
      if (m.meta && m.meta.regenerates) replaced.add(m.meta.regenerates);
    }
    greetingAppend(state.persona);
    let interruptedShown = false;
    for (const m of messages) {
      if (m.role === 'assistant' && replaced.has(m.id)) continue;
      if (m.role !== 'user' && m.role !== 'assistant') continue;
      const article = messageCreate(m.role, { id: m.id, text: m.content, meta: m.meta || {} });
      if (m.role === 'assistant') {
        const wasCut = o.interrupted && o.interrupted.messageId && o.interrupted.messageId === m.id;
        if (wasCut) interruptedShown = true;
        bubbleFinish(article, wasCut ? { interrupted: true } : {});
      }
      els.messages.append(article);
    }
    if (o.interrupted && !interruptedShown && o.interrupted.text) {
      // The server kept no part of the cut reply: show what had arrived.
      const article = messageCreate('assistant', { text: o.interrupted.text });
      bubbleFinish(article, { interrupted: true });
      els.messages.append(article);
    }
    introUpdate();
    regenerateButtonsUpdate();
    scrollToBottom();
  }

  // -------------------------------------------------------------------------
  // Scrolling

  function nearBottom() {
    const s = els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
    els.jumpBottom.hidden = true;
  }

  // -------------------------------------------------------------------------
  // Sending, stopping, regenerating

  /** Enter or the send button: a slash command (office) runs locally, anything else goes to the model. */
  function submitInput() {
    const text = els.input.value;
    if (IS_OFFICE) {
      const parsed = slashParse(text);
      if (parsed && parsed.kind === 'command') {
        slashRun(parsed, text);
        return;
      }
      if (parsed && parsed.kind === 'text') {
        if (!state.stream) sendMessage(parsed.text);
        return;
      }
    }
    if (!state.stream) sendMessage(text);
  }

  function sendMessage(text) {
    if (state.stream) return;
    if (!text.trim()) return;
    if (text.length > INPUT_MAX) {
      errorShow({ code: 'max_length', field: 'input_data', message: `must be at most ${INPUT_MAX} characters (now ${text.length}).` });
      return;
    }
    if (state.model.state !== 'ready') {
      errorShow({ code: 'model_loading', message: 'The model is still loading; try again in a moment.' });
      return;
    }
    if (!wsOpen()) {
      errorShow({ code: 'not_connected', message: 'Not connected to the chat server yet; reconnecting…' });
      return;
    }
    const frame = {
      type: 'message',
      db_id: state.dbId,
      user_id: state.userId,
      input_data: text,
      persona: state.persona,
    };
    if (IS_OFFICE) Object.assign(frame, optionsFrameFields());
    const userEl = messageCreate('user', { text });
    const bubble = messageCreate('assistant', { streaming: true, persona: state.persona });
    messageAppend(userEl);
    messageAppend(bubble);
    regenerateButtonsUpdate();
    els.input.value = '';
    inputAutogrow();
    scrollToBottom();
    streamBegin('message', frame, { userEl, bubble });
  }

  function regenerate(oldArticle) {
    if (state.stream || !wsOpen() || state.model.state !== 'ready') return;
    const frame = { type: 'regenerate', db_id: state.dbId, user_id: state.userId, persona: state.persona };
    const bubble = messageCreate('assistant', { streaming: true, persona: state.persona });
    bubble.classList.add('is-new');
    oldArticle.replaceWith(bubble);
    regenerateButtonsUpdate();
    if (nearBottom()) scrollToBottom();
    streamBegin('regenerate', frame, { bubble, replaced: oldArticle });
  }

  // -------------------------------------------------------------------------
  // Chats: new, open, delete, list

  function hashSet(dbId) {
    const url = dbId ? `${location.pathname}${location.search}#${dbId}` : `${location.pathname}${location.search}`;
    history.replaceState(null, '', url);
  }

  /** Leaving the chat on screen: a running reply is stopped (the server keeps it). */
  function leaveCurrent() {
    if (state.stream) stopGeneration();
    errorClear();
    state.viewSeq += 1;
    state.reloadAfterReconnect = null;
  }

  function newChat(personaId) {
    leaveCurrent();
    state.persona = state.personas.has(personaId) ? personaId : state.defaultPersona;
    state.dbId = uuid4();
    state.stored = false;
    pickerSync();
    els.messages.replaceChildren();
    greetingAppend(state.persona);
    introUpdate();
    hashSet(null);
    document.title = `${pageTitle()}`;
    conversationsRender();
    composerUpdate();
    drawerClose();
    if (!isPhone() && !els.input.disabled) els.input.focus();
  }

  async function openConversation(dbId) {
    leaveCurrent();
    const seq = state.viewSeq;
    const conv = state.conversations.find((c) => c.db_id === dbId);
    let data;
    try {
      data = await api(`/conversations/${dbId}/messages`);
    } catch (err) {
      if (seq !== state.viewSeq) return;
      errorShow(err.status === 404 ? { code: 'not_found', message: 'That chat no longer exists.' } : err);
      if (err.status === 404) {
        state.conversations = state.conversations.filter((c) => c.db_id !== dbId);
        conversationsRender();
        if (!state.dbId) newChat(state.defaultPersona);
      }
      return;
    }
    if (seq !== state.viewSeq) return;
    state.dbId = dbId;
    state.stored = true;
    state.persona = conv ? conv.persona : state.defaultPersona;
    pickerSync();
    threadRender(data.messages || []);
    hashSet(dbId);
    document.title = conv && conv.title ? `${conv.title} · ${pageTitle()}` : pageTitle();
    conversationsRender();
    composerUpdate();
    drawerClose();
  }

  async function deleteConversation(conv) {
    const title = conv.title || 'this chat';
    if (!window.confirm(`Delete “${title}”? This cannot be undone.`)) return;
    const wasCurrent = conv.db_id === state.dbId;
    if (wasCurrent && state.stream) stopGeneration();
    try {
      await api(`/conversations/${conv.db_id}`, { method: 'DELETE' });
    } catch (err) {
      if (err.status !== 404) {
        errorShow(err);
        return;
      }
    }
    state.conversations = state.conversations.filter((c) => c.db_id !== conv.db_id);
    if (wasCurrent) newChat(state.persona);
    else conversationsRender();
  }

  async function conversationsLoad() {
    const data = await api('/conversations');
    state.conversations = (data && data.conversations) || [];
    conversationsRender();
  }

  async function conversationsRefresh() {
    try {
      await conversationsLoad();
    } catch (_) {
      // The list is a convenience; the next refresh will catch up.
    }
  }

  function conversationsRender() {
    const items = state.conversations.map((conv) => {
      const li = node('li', 'conversation-item');
      li.dataset.testid = 'conversation-item';
      li.dataset.dbId = conv.db_id;
      if (conv.db_id === state.dbId && state.stored) li.setAttribute('aria-current', 'page');
      const open = node('button', 'conversation-open');
      open.type = 'button';
      const title = conv.title || 'Untitled chat';
      open.setAttribute('aria-label', `Open chat: ${title}`);
      open.append(node('span', 'conversation-title', title));
      const meta = node('span', 'conversation-meta');
      const time = node('time', null, relativeTime(conv.updated_at));
      time.dateTime = conv.updated_at || '';
      time.title = conv.updated_at ? new Date(conv.updated_at).toLocaleString() : '';
      meta.append(time, document.createTextNode(` · ${personaName(conv.persona)}`));
      open.append(meta);
      open.addEventListener('click', () => {
        if (conv.db_id === state.dbId && state.stored) {
          drawerClose();
          return;
        }
        openConversation(conv.db_id);
      });
      const del = node('button', 'icon-button conversation-delete');
      del.type = 'button';
      del.dataset.testid = 'delete-conversation';
      del.setAttribute('aria-label', `Delete chat: ${title}`);
      del.title = 'Delete chat';
      del.append(icon('trash'));
      del.addEventListener('click', (event) => {
        event.stopPropagation();
        deleteConversation(conv);
      });
      li.append(open, del);
      return li;
    });
    els.convList.replaceChildren(...items);
    els.convEmpty.hidden = items.length > 0;
  }

  // -------------------------------------------------------------------------
  // Personas

  async function personasLoad() {
    const data = await api('/personas');
    state.personas.clear();
    for (const p of data.personas || []) state.personas.set(p.id, p);
    state.defaultPersona = state.personas.has(data.default) ? data.default : (data.personas[0] || {}).id || null;
    pickerBuild();
  }

  function pickerBuild() {
    const options = [];
    for (const p of state.personas.values()) {
      const option = node('option', null, p.name);
      option.value = p.id;
      option.title = p.description || '';
      if (p.language) option.lang = p.language;
      options.push(option);
    }
    els.picker.replaceChildren(...options);
    els.picker.disabled = options.length === 0;
  }

  /** Shows state.persona in the picker, adding an entry for an unknown (inline) one. */
  function pickerSync() {
    els.picker.querySelectorAll('option[data-extra]').forEach((o) => o.remove());
    if (state.persona && !state.personas.has(state.persona)) {
      const option = node('option', null, `${state.persona} (not in this list)`);
      option.value = state.persona;
      option.dataset.extra = 'true';
      option.disabled = true;
      els.picker.append(option);
    }
    els.picker.value = state.persona || '';
    els.picker.title = (state.personas.get(state.persona) || {}).description || '';
  }

  // -------------------------------------------------------------------------
  // Drawer (phone width)

  const phoneQuery = window.matchMedia('(max-width: 720px)');

  function isPhone() {
    return phoneQuery.matches;
  }

  function drawerOpen() {
    els.layout.classList.add('sidebar-open');
    els.backdrop.hidden = false;
    els.menuButton.setAttribute('aria-expanded', 'true');
    els.newChat.focus();
  }

  function drawerClose() {
    if (!els.layout.classList.contains('sidebar-open')) return;
    els.layout.classList.remove('sidebar-open');
    els.backdrop.hidden = true;
    els.menuButton.setAttribute('aria-expanded', 'false');
  }

  function pageTitle() {
    return document.querySelector('.brand-text').textContent.trim() + ' · Persona chat';
  }

  // -------------------------------------------------------------------------
  // Office: sources under a grounded reply

  let sourcesSeq = 0;

  /** A web source's link, when its address is a plain http(s) one. */
  function sourceHref(source) {
    const href = source.url ? window.PersonaMarkdown.safeHref(String(source.url)) : null;
    return href && /^https?:/i.test(href) ? href : null;
  }

  /** What follows the title: a document's heading, or a web page's host. */
  function sourceDetail(source) {
    if (source.heading) return String(source.heading);
    const href = sourceHref(source);
    return href ? new URL(href).hostname : '';
  }

  function sourceTitle(source) {
    return source.title || (source.kind === 'web' ? 'Web page' : 'Untitled document');
  }

  function sourceLabel(source) {
    const title = sourceTitle(source);
    const detail = sourceDetail(source);
    return detail ? `${title} — ${detail}` : title;
  }

  /**
   * The "Sources" row: one chip per source ("[n] Title — heading", or the host of a web
   * source); a chip toggles its excerpt below the row (one open at a time). Text only; a
   * web source's address becomes a link only when it is http(s).
   */
  function sourcesBuild(sources) {
    sourcesSeq += 1;
    const wrap = node('div', 'sources');
    wrap.dataset.testid = 'sources';
    const row = node('div', 'sources-row');
    const label = node('span', 'sources-label', 'Sources');
    label.id = `sources-label-${sourcesSeq}`;
    const chips = node('div', 'sources-chips');
    chips.setAttribute('role', 'group');
    chips.setAttribute('aria-labelledby', label.id);
    row.append(label, chips);
    const panel = node('div', 'source-excerpt');
    panel.id = `source-excerpt-${sourcesSeq}`;
    panel.dataset.testid = 'source-excerpt';
    panel.hidden = true;
    const buttons = [];
    sources.forEach((source, index) => {
      const n = Number.isFinite(Number(source.n)) ? Number(source.n) : index + 1;
      const chip = node('button', 'source-chip');
      chip.type = 'button';
      chip.dataset.testid = 'source-chip';
      chip.dataset.n = String(n);
      chip.dataset.kind = source.kind === 'web' ? 'web' : 'document';
      if (source.document_id) chip.dataset.documentId = String(source.document_id);
      chip.setAttribute('aria-expanded', 'false');
      chip.setAttribute('aria-controls', panel.id);
      chip.title = `[${n}] ${sourceLabel(source)} — show the passage`;
      chip.append(node('span', 'source-n', `[${n}]`), document.createTextNode(' '));
      chip.append(node('span', 'source-title', sourceTitle(source)));
      const detail = sourceDetail(source);
      if (detail) chip.append(node('span', 'source-heading', ` — ${detail}`));
      chip.addEventListener('click', () => {
        const open = chip.getAttribute('aria-expanded') === 'true';
        for (const b of buttons) b.setAttribute('aria-expanded', 'false');
        if (open) {
          panel.hidden = true;
          panel.replaceChildren();
          return;
        }
        chip.setAttribute('aria-expanded', 'true');
        const head = node('div', 'source-excerpt-head', `[${n}] ${sourceLabel(source)}`);
        const text = node('p', 'source-excerpt-text', source.excerpt || '(no excerpt stored)');
        panel.replaceChildren(head, text);
        const href = sourceHref(source);
        if (href) {
          const link = node('a', 'source-link', href);
          link.href = href;
          link.target = '_blank';
          link.rel = 'noopener noreferrer nofollow';
          panel.append(link);
        }
        panel.dataset.n = String(n);
        panel.hidden = false;
        if (nearBottom()) scrollToBottom();
      });
      buttons.push(chip);
      chips.append(chip);
    });
    wrap.append(row, panel);
    return wrap;
  }

  // -------------------------------------------------------------------------
  // Office: the documents panel (upload with progress, drag-and-drop, status, delete)

  const DOC_MAX_BYTES = 10 * 1024 * 1024;
  const DOC_POLL_MS = 1500;
  const DOC_POLL_SLOW_MS = 10000; // after DOC_POLL_PATIENCE_MS: a stuck "indexing" is not asked about every 1.5 s
  const DOC_POLL_PATIENCE_MS = 120000;
  const DOC_ERRORS_SHOWN = 3;

  const docs = {
    list: [], // as the server lists them, newest first
    rows: new Map(), // document id -> <li>
    uploads: new Set(), // upload rows in flight
    polls: new Map(), // document id -> timeout id
    pollSince: new Map(), // document id -> when polling it began
    errors: [], // { label, message }, newest last
    loaded: false,
    loadSeq: 0,
    changes: 0, // bumps on every local change, so a list fetched before one is not trusted
  };

  function sizeFormat(bytes) {
    const n = Number(bytes) || 0;
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10 * 1024 ? 1 : 0)} KB`;
    return `${(n / (1024 * 1024)).toFixed(1)} MB`;
  }

  function spinner() {
    const s = node('span', 'spinner');
    s.setAttribute('aria-hidden', 'true');
    return s;
  }

  function docErrorAdd(label, message) {
    docs.errors.push({ label, message });
    docs.errors = docs.errors.slice(-DOC_ERRORS_SHOWN);
    docErrorsRender();
  }

  function docErrorsClear() {
    docs.errors = [];
    docErrorsRender();
  }

  function docErrorsRender() {
    const items = docs.errors.map((e) => {
      const li = node('li', 'documents-error-item');
      li.dataset.testid = 'documents-error-item';
      if (e.label) li.append(node('strong', null, `${e.label}: `));
      li.append(document.createTextNode(e.message));
      return li;
    });
    els.docErrorList.replaceChildren(...items);
    els.docError.hidden = items.length === 0;
  }

  /** The message of a failed API call, readably ("file: …" prefixes are the field, said once). */
  function apiMessage(err) {
    let message = err.message || 'something went wrong';
    if (err.field && message.startsWith(`${err.field}: `)) message = message.slice(err.field.length + 2);
    return message;
  }

  function docRowUpdate(li, doc) {
    li.dataset.documentId = doc.id;
    li.dataset.status = doc.status;
    li.classList.toggle('is-failed', doc.status === 'failed');
    const title = node('span', 'document-title', doc.title || doc.filename || 'Untitled document');
    title.title = doc.filename ? `${doc.title} (${doc.filename})` : doc.title;
    const parts = [String(doc.kind || '').toUpperCase(), sizeFormat(doc.size)];
    if (doc.status === 'ready') parts.push(`${doc.chunks} chunk${doc.chunks === 1 ? '' : 's'}`);
    const meta = node('span', 'document-meta');
    meta.append(node('span', 'document-facts', parts.filter(Boolean).join(' · ')));
    const status = node('span', `document-status status-${doc.status}`);
    status.dataset.testid = 'document-status';
    if (doc.status === 'indexing') {
      status.append(spinner(), document.createTextNode('Indexing…'));
    } else if (doc.status === 'failed') {
      status.textContent = 'Failed';
    } else {
      status.textContent = doc.status === 'ready' ? 'Ready' : doc.status;
    }
    meta.append(status);
    const info = node('div', 'document-info');
    info.append(title, meta);
    if (doc.status === 'failed') {
      const why = node('p', 'document-error', doc.error || 'indexing failed');
      why.dataset.testid = 'document-error';
      info.append(why);
    }
    const del = node('button', 'icon-button document-delete');
    del.type = 'button';
    del.dataset.testid = 'document-delete';
    del.setAttribute('aria-label', `Delete document: ${doc.title}`);
    del.title = 'Delete document';
    del.append(icon('trash'));
    del.addEventListener('click', () => documentDelete(doc.id));
    const kind = node('span', 'document-icon');
    kind.setAttribute('aria-hidden', 'true');
    kind.append(icon('file'));
    const hadFocus = li.contains(document.activeElement);
    li.replaceChildren(kind, info, del);
    if (hadFocus) del.focus();
  }

  function documentsRender() {
    const rows = [];
    for (const doc of docs.list) {
      let li = docs.rows.get(doc.id);
      if (!li) {
        li = node('li', 'document-item');
        li.dataset.testid = 'document-item';
        docs.rows.set(doc.id, li);
      }
      docRowUpdate(li, doc);
      rows.push(li);
    }
    for (const [id, li] of docs.rows) {
      if (docs.list.some((d) => d.id === id)) continue;
      docs.rows.delete(id);
      li.remove();
    }
    els.docList.replaceChildren(...docs.uploads, ...rows);
    els.docEmpty.hidden = !docs.loaded || rows.length > 0 || docs.uploads.size > 0;
  }

  function docUpsert(doc) {
    docs.changes += 1;
    const i = docs.list.findIndex((d) => d.id === doc.id);
    if (i >= 0) docs.list[i] = doc;
    else docs.list.unshift(doc);
    documentsRender();
    if (doc.status === 'indexing') docPollSchedule(doc.id);
  }

  function docForget(id) {
    docs.changes += 1;
    docs.list = docs.list.filter((d) => d.id !== id);
    clearTimeout(docs.polls.get(id));
    docs.polls.delete(id);
    docs.pollSince.delete(id);
    documentsRender();
  }

  async function documentsLoad() {
    const seq = ++docs.loadSeq;
    const changes = docs.changes;
    let data;
    try {
      data = await api('/documents');
    } catch (err) {
      if (seq === docs.loadSeq) docErrorAdd('Documents', `could not load the list (${apiMessage(err)})`);
      return;
    }
    if (seq !== docs.loadSeq) return; // a newer load is on its way
    if (changes !== docs.changes) {
      // An upload or delete finished meanwhile: this list may predate it; ask again.
      await documentsLoad();
      return;
    }
    docs.list = (data && data.documents) || [];
    docs.loaded = true;
    documentsRender();
    for (const doc of docs.list) if (doc.status === 'indexing') docPollSchedule(doc.id);
  }

  function docPollSchedule(id) {
    if (docs.polls.has(id)) return;
    if (!docs.pollSince.has(id)) docs.pollSince.set(id, Date.now());
    const patient = Date.now() - docs.pollSince.get(id) < DOC_POLL_PATIENCE_MS;
    docs.polls.set(id, setTimeout(() => docPoll(id), patient ? DOC_POLL_MS : DOC_POLL_SLOW_MS));
  }

  /** An indexing document: ask again every 1.5 s until it is ready or failed. */
  async function docPoll(id) {
    let doc;
    try {
      doc = await api(`/documents/${encodeURIComponent(id)}`);
    } catch (err) {
      docs.polls.delete(id);
      if (err.status === 404) docForget(id);
      else docPollSchedule(id); // network trouble: keep asking
      return;
    }
    docs.polls.delete(id);
    if (!docs.list.some((d) => d.id === id)) return; // deleted meanwhile
    if (doc.status !== 'indexing') docs.pollSince.delete(id);
    docUpsert(doc);
  }

  function documentUpload(file) {
    const name = file.name || 'file';
    if (file.size > DOC_MAX_BYTES) {
      // Same wording as the server; saves sending megabytes only to be refused.
      const size = file.size.toLocaleString('en-US');
      docErrorAdd(name, `file is ${size} bytes; the limit is ${DOC_MAX_BYTES.toLocaleString('en-US')} bytes (10 MiB)`);
      return;
    }
    const li = node('li', 'document-item is-uploading');
    li.dataset.testid = 'document-upload-row';
    const kind = node('span', 'document-icon');
    kind.setAttribute('aria-hidden', 'true');
    kind.append(icon('file'));
    const info = node('div', 'document-info');
    const title = node('span', 'document-title', name);
    const meta = node('span', 'document-meta');
    const facts = node('span', 'document-facts', `${sizeFormat(file.size)} · uploading`);
    const percent = node('span', 'document-percent', '0%');
    percent.dataset.testid = 'upload-percent';
    meta.append(facts, percent);
    const bar = node('div', 'progress');
    bar.setAttribute('role', 'progressbar');
    bar.setAttribute('aria-label', `Uploading ${name}`);
    bar.setAttribute('aria-valuemin', '0');
    bar.setAttribute('aria-valuemax', '100');
    bar.setAttribute('aria-valuenow', '0');
    const fill = node('span', 'progress-fill');
    bar.append(fill);
    info.append(title, meta, bar);
    const cancel = node('button', 'icon-button document-delete');
    cancel.type = 'button';
    cancel.setAttribute('aria-label', `Cancel the upload of ${name}`);
    cancel.title = 'Cancel upload';
    cancel.append(icon('close'));
    li.append(kind, info, cancel);

    const xhr = new XMLHttpRequest();
    const finish = () => {
      docs.uploads.delete(li);
      li.remove();
      documentsRender();
    };
    const progress = (fraction) => {
      const pct = Math.max(0, Math.min(100, Math.round(fraction * 100)));
      fill.style.width = `${pct}%`;
      bar.setAttribute('aria-valuenow', String(pct));
      percent.textContent = `${pct}%`;
    };
    xhr.upload.addEventListener('progress', (event) => {
      if (event.lengthComputable && event.total > 0) progress(event.loaded / event.total);
    });
    xhr.upload.addEventListener('load', () => {
      // Every byte is sent; the server now extracts, chunks and embeds it.
      progress(1);
      facts.textContent = `${sizeFormat(file.size)} · processing`;
      percent.replaceChildren(spinner());
      li.classList.add('is-processing');
    });
    xhr.addEventListener('load', () => {
      finish();
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        body = null;
      }
      if ((xhr.status === 201 || xhr.status === 202) && body && body.id) {
        docUpsert(body);
        return;
      }
      docErrorAdd(name, apiMessage(new ApiError(xhr.status, body)));
    });
    xhr.addEventListener('error', () => {
      finish();
      docErrorAdd(name, 'the upload failed: the server could not be reached');
    });
    xhr.addEventListener('abort', finish);
    cancel.addEventListener('click', () => xhr.abort());

    docs.uploads.add(li);
    documentsRender();
    const form = new FormData();
    form.append('user_id', state.userId);
    form.append('file', file, name);
    xhr.open('POST', `${API}/documents`);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.send(form);
  }

  function documentsUpload(files) {
    for (const file of Array.from(files || [])) documentUpload(file);
  }

  async function documentDelete(id) {
    const doc = docs.list.find((d) => d.id === id);
    if (!doc) return;
    const question = `Delete “${doc.title}”? Its passages leave the search index. This cannot be undone.`;
    if (!window.confirm(question)) return;
    const li = docs.rows.get(id);
    if (li) li.classList.add('is-deleting');
    try {
      await api(`/documents/${encodeURIComponent(id)}`, { method: 'DELETE' });
    } catch (err) {
      if (err.status !== 404) {
        if (li) li.classList.remove('is-deleting');
        docErrorAdd(doc.title, apiMessage(err));
        return;
      }
    }
    docForget(id);
  }

  /** Files dragged over the page: the overlay on the chat says where they go. */
  function dropBind() {
    let depth = 0;
    const hasFiles = (event) =>
      Boolean(event.dataTransfer) && Array.from(event.dataTransfer.types || []).includes('Files');
    const hide = () => {
      depth = 0;
      els.dropOverlay.hidden = true;
    };
    document.addEventListener('dragenter', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth += 1;
      els.dropOverlay.hidden = false;
    });
    document.addEventListener('dragover', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault(); // without this the browser opens the file instead
      event.dataTransfer.dropEffect = 'copy';
    });
    document.addEventListener('dragleave', (event) => {
      if (!hasFiles(event)) return;
      depth = Math.max(0, depth - 1);
      if (depth === 0) els.dropOverlay.hidden = true;
    });
    document.addEventListener('drop', (event) => {
      if (!hasFiles(event)) return;
      event.preventDefault();
      hide();
      documentsUpload(event.dataTransfer.files);
    });
    window.addEventListener('blur', hide);
  }

  // -------------------------------------------------------------------------
  // Office: slash commands → tool calls, shown as local result cards (never stored)

  /**
   * Rules: a command is "/" + a word at the very start, then a space or the end ("/calc 1+1",
   * "/notes"). Anything else is a message for the model: "/ hello", "/usr/bin?" and " /calc"
   * are sent as typed, and "//text" sends "/text".
   */
  const SLASH_RE = /^\/([A-Za-z][\w-]*)(?:\s+([\s\S]*))?$/;

  const SLASH_COMMANDS = [
    { name: 'search', tool: 'search_documents', usage: '/search <query>', args: (a) => (a ? { query: a } : null) },
    { name: 'web', tool: 'web_search', usage: '/web <query>', args: (a) => (a ? { query: a } : null) },
    { name: 'calc', tool: 'calculator', usage: '/calc <expression>', args: (a) => (a ? { expression: a } : null) },
    { name: 'time', tool: 'current_time', usage: '/time [zone]', args: (a) => (a ? { timezone: a } : {}) },
    { name: 'note', tool: 'save_note', usage: '/note <title>: <text>', args: noteArgs },
    { name: 'notes', tool: 'list_notes', usage: '/notes [how many]', args: notesArgs },
    { name: 'delete', tool: 'delete_document', usage: '/delete <document title or id>', args: null },
    { name: 'help', tool: null, usage: '/help', args: null },
  ];
  const SLASH_ABOUT = {
    help: 'List these commands.',
    delete: 'Delete one of your documents (asks you to approve first).',
  };

  function noteArgs(a) {
    const at = a.indexOf(':');
    if (at < 1) return null;
    const title = a.slice(0, at).trim();
    const text = a.slice(at + 1).trim();
    return title && text ? { title, text } : null;
  }

  function notesArgs(a) {
    if (!a) return {};
    return /^\d{1,2}$/.test(a) ? { limit: Number(a) } : null;
  }

  /** null: not a command, send as it is. {kind: 'text', text}: send this text. {kind: 'command', …}. */
  function slashParse(raw) {
    if (!raw.startsWith('/')) return null;
    if (raw.startsWith('//')) return { kind: 'text', text: raw.slice(1) };
    const match = SLASH_RE.exec(raw.trimEnd());
    if (!match) return null;
    return { kind: 'command', name: match[1].toLowerCase(), arg: (match[2] || '').trim() };
  }

  let hintDefault = null;

  /** While a command is typed, the hint line under the composer shows the matching usages. */
  function slashHintUpdate(value) {
    if (!els.hint) return;
    if (hintDefault === null) hintDefault = els.hint.textContent;
    const first = value.split(/\s/)[0];
    const match = value.startsWith('//') ? null : /^\/([A-Za-z][\w-]*)?$/.exec(first);
    const typedArgs = value.length > first.length;
    if (!match || (!match[1] && typedArgs)) {
      // Not a command ("/ hello", "/usr/bin", "//x" are messages): the usual hint.
      if (els.hint.textContent !== hintDefault) els.hint.textContent = hintDefault;
      els.hint.classList.remove('is-commands');
      return;
    }
    const word = (match[1] || '').toLowerCase();
    const found = SLASH_COMMANDS.filter((c) => (typedArgs ? c.name === word : c.name.startsWith(word)));
    const text = found.length
      ? found.map((c) => c.usage).join(' · ')
      : `No command /${word}: try /help`;
    els.hint.textContent = text;
    els.hint.classList.add('is-commands');
  }

  let toolsCache = null;

  async function toolsGet() {
    if (toolsCache) return toolsCache;
    const data = await api('/tools');
    toolsCache = new Map(((data && data.tools) || []).map((t) => [t.name, t]));
    return toolsCache;
  }

  /** An unsaved card in the conversation: header (tool, command) and a body filled later. */
  function toolCardCreate(tool, commandText, status) {
    const card = node('article', 'tool-card');
    card.dataset.testid = 'tool-card';
    card.dataset.tool = tool || 'help';
    card.dataset.status = status;
    card.setAttribute('aria-label', tool ? `Tool result: ${tool}` : 'Commands');
    const head = node('header', 'tool-card-head');
    const badgeIcon = node('span', 'tool-card-icon');
    badgeIcon.append(icon('tool'));
    const name = node('span', 'tool-card-name', tool || 'commands');
    name.dataset.testid = 'tool-name';
    const shown = commandText.length > 80 ? `${commandText.slice(0, 79)}…` : commandText;
    const command = node('code', 'tool-card-command', shown);
    command.title = commandText;
    const note = node('span', 'tool-card-note', 'only you · not saved');
    const close = node('button', 'icon-button tool-card-close');
    close.type = 'button';
    close.setAttribute('aria-label', 'Dismiss this card');
    close.title = 'Dismiss';
    close.append(icon('close'));
    close.addEventListener('click', () => {
      card.remove();
      introUpdate();
      els.input.focus();
    });
    head.append(badgeIcon, name, command, note, close);
    const body = node('div', 'tool-card-body');
    body.dataset.testid = 'tool-result';
    card.append(head, body);
    card.classList.add('is-new');
    els.messages.append(card);
    introUpdate();
    scrollToBottom();
    return { card, body, head, note };
  }

  function cardSet(view, status, ...children) {
    const stick = nearBottom();
    view.card.dataset.status = status;
    view.card.setAttribute('aria-busy', status === 'pending' ? 'true' : 'false');
    view.body.replaceChildren(...children);
    if (stick) scrollToBottom();
  }

  function cardError(view, err) {
    const line = node('p', 'tool-error');
    line.dataset.testid = 'tool-error';
    line.append(icon('alert'), node('span', null, apiMessage(err)));
    const extra = [];
    if (err.retryAfter && !/retry/i.test(err.message || '')) {
      extra.push(node('p', 'tool-muted', `Try again in ${Math.ceil(err.retryAfter)} s.`));
    }
    cardSet(view, 'error', line, ...extra);
  }

  function slashUsageHint(commandText, message) {
    const view = toolCardCreate(null, commandText, 'hint');
    const p = node('p', 'tool-hint');
    p.dataset.testid = 'slash-hint';
    p.append(icon('info'), node('span', null, message));
    const list = node('p', 'tool-muted', `Commands: ${SLASH_COMMANDS.map((c) => c.usage).join(' · ')}`);
    cardSet(view, 'hint', p, list);
  }

  /** Runs a parsed command. Usage mistakes keep the text in the composer to fix it. */
  async function slashRun(parsed, commandText) {
    const spec = SLASH_COMMANDS.find((c) => c.name === parsed.name);
    if (!spec) {
      slashUsageHint(commandText, `Unknown command /${parsed.name}.`);
      return;
    }
    if (spec.name === 'help') {
      inputClear();
      helpShow(commandText);
      return;
    }
    let args;
    if (spec.name === 'delete') {
      if (!parsed.arg) {
        slashUsageHint(commandText, `Usage: ${spec.usage}`);
        return;
      }
      args = await deleteArgs(parsed.arg, commandText);
      if (!args) return;
    } else {
      args = spec.args(parsed.arg);
      if (!args) {
        slashUsageHint(commandText, `Usage: ${spec.usage}`);
        return;
      }
    }
    inputClear();
    const view = toolCardCreate(spec.tool, commandText, 'pending');
    cardSet(view, 'pending', node('p', 'tool-muted', 'Running…'));
    view.body.firstChild.prepend(spinner());
    let response;
    try {
      response = await apiPost(`/tools/${encodeURIComponent(spec.tool)}/call`, { arguments: args, source: 'slash' });
    } catch (err) {
      cardError(view, err);
      return;
    }
    const body = response.body || {};
    if (response.status === 202 || body.status === 'approval_required') {
      approvalShow(view, spec.tool, args, body);
      return;
    }
    if (typeof body.duration_ms === 'number') {
      view.note.textContent = `${Math.round(body.duration_ms)} ms · only you · not saved`;
    }
    cardSet(view, 'ok', resultRender(spec.tool, body.result || {}));
    toolSideEffects(spec.tool);
  }

  function inputClear() {
    els.input.value = '';
    inputAutogrow();
    composerUpdate();
  }

  function toolSideEffects(tool) {
    if (tool === 'delete_document') documentsLoad();
  }

  /** "/delete x": x is a document id, its exact title, or a unique part of one title. */
  async function deleteArgs(wanted, commandText) {
    await documentsLoad();
    const lower = wanted.toLowerCase();
    let matches = docs.list.filter((d) => d.id === wanted);
    if (!matches.length) matches = docs.list.filter((d) => (d.title || '').toLowerCase() === lower);
    if (!matches.length) {
      matches = docs.list.filter(
        (d) => (d.title || '').toLowerCase().includes(lower) || (d.filename || '').toLowerCase().includes(lower),
      );
    }
    if (matches.length === 1) return { document_id: matches[0].id };
    const titles = matches.map((d) => d.title).join(', ');
    const message = matches.length
      ? `“${wanted}” matches ${matches.length} documents (${titles}); use more of the title.`
      : `No document matches “${wanted}”.`;
    slashUsageHint(commandText, message);
    return null;
  }

  async function helpShow(commandText) {
    const view = toolCardCreate(null, commandText, 'pending');
    let tools = new Map();
    let note = null;
    try {
      tools = await toolsGet();
    } catch (err) {
      note = node('p', 'tool-muted', `Tool descriptions are unavailable (${apiMessage(err)}).`);
    }
    const list = node('dl', 'help-list');
    for (const c of SLASH_COMMANDS) {
      const tool = c.tool ? tools.get(c.tool) : null;
      const dt = node('dt');
      dt.append(node('code', null, c.usage));
      const about = (tool && tool.description) || SLASH_ABOUT[c.name] || (c.tool ? `Calls ${c.tool}.` : '');
      const dd = node('dd', null, about);
      if (tool && tool.needs_approval) dd.prepend(node('span', 'badge badge-approval', 'asks approval'), ' ');
      list.append(dt, dd);
    }
    const rules = node(
      'p',
      'tool-muted',
      'A command is /word at the very start of the message. Anything else goes to the model as typed, ' +
        'so a slash followed by a space is an ordinary message, and //text sends /text. ' +
        'Results show only here and are not saved in the chat.',
    );
    cardSet(view, 'help', list, rules, ...(note ? [note] : []));
  }

  /** A 202 from a tool: show what would run, with Approve / Deny. */
  function approvalShow(view, tool, args, body) {
    view.card.classList.add('is-approval');
    view.card.setAttribute('aria-label', `Approval needed: ${tool}`);
    view.head.querySelector('.tool-card-icon').replaceChildren(icon('shield'));
    view.note.textContent = 'needs your approval';
    const title = node('p', 'approval-title', `Run ${tool}?`);
    const reason = node('p', 'tool-muted', body.reason || 'This tool asks before it runs.');
    const argList = node('dl', 'approval-args');
    argList.dataset.testid = 'approval-args';
    for (const [key, value] of Object.entries(args)) {
      const shown = typeof value === 'string' ? value : JSON.stringify(value);
      const dd = node('dd', null, shown);
      if (key === 'document_id') {
        const doc = docs.list.find((d) => d.id === value);
        if (doc) dd.append(node('span', 'approval-doc', ` — “${doc.title}”`));
      }
      argList.append(node('dt', null, key), dd);
    }
    const actions = node('div', 'approval-actions');
    const approve = node('button', 'approval-button approve', 'Approve');
    approve.type = 'button';
    approve.dataset.testid = 'approve-button';
    approve.setAttribute('aria-label', `Approve ${tool}`);
    const deny = node('button', 'approval-button deny', 'Deny');
    deny.type = 'button';
    deny.dataset.testid = 'deny-button';
    deny.setAttribute('aria-label', `Deny ${tool}`);
    actions.append(approve, deny);
    const outcome = node('div', 'approval-outcome');
    outcome.dataset.testid = 'approval-outcome';
    outcome.setAttribute('role', 'status');
    const decide = async (decision) => {
      approve.disabled = true;
      deny.disabled = true;
      view.card.setAttribute('aria-busy', 'true');
      const doing = decision === 'approve' ? ' Running…' : ' Denying…';
      outcome.replaceChildren(spinner(), document.createTextNode(doing));
      let response;
      try {
        response = await apiPost(`/approvals/${encodeURIComponent(body.approval_id)}`, { decision });
      } catch (err) {
        view.card.setAttribute('aria-busy', 'false');
        const closed = err.status === 404 || err.status === 409;
        approve.disabled = closed;
        deny.disabled = closed;
        const line = node('p', 'tool-error');
        line.dataset.testid = 'tool-error';
        line.append(icon('alert'), node('span', null, apiMessage(err)));
        outcome.replaceChildren(line);
        view.card.dataset.status = closed ? 'error' : 'approval';
        return;
      }
      view.card.setAttribute('aria-busy', 'false');
      const result = response.body || {};
      actions.remove();
      view.card.dataset.status = result.status || decision;
      if (result.status === 'approved') {
        view.note.textContent = 'approved · not saved';
        const verdict = node('p', 'approval-verdict is-approved', 'Approved.');
        outcome.replaceChildren(verdict, resultRender(tool, result.result || {}));
        toolSideEffects(tool);
      } else {
        view.note.textContent = `${result.status || 'denied'} · not saved`;
        outcome.replaceChildren(node('p', 'approval-verdict is-denied', 'Denied — nothing was run.'));
      }
      if (nearBottom()) scrollToBottom();
    };
    approve.addEventListener('click', () => decide('approve'));
    deny.addEventListener('click', () => decide('deny'));
    cardSet(view, 'approval', title, reason, argList, actions, outcome);
  }

  /** A tool's result as DOM nodes (text only; links only for http(s) addresses). */
  function resultRender(tool, result) {
    switch (tool) {
      case 'calculator': {
        const p = node('p', 'calc-result');
        p.append(node('span', 'calc-expression', String(result.expression ?? '')), node('span', 'calc-equals', ' = '));
        p.append(node('strong', 'calc-value', String(result.result ?? '')));
        return p;
      }
      case 'current_time': {
        const p = node('p', 'time-result');
        const iso = String(result.iso || '');
        p.append(node('strong', null, iso.replace('T', ' ')));
        p.append(node('span', 'tool-muted', ` ${result.weekday || ''} · ${result.timezone || ''}`));
        return p;
      }
      case 'search_documents': {
        const hits = Array.isArray(result.results) ? result.results : [];
        if (!hits.length) return node('p', 'tool-muted', 'No passage in your documents matches.');
        const ol = node('ol', 'result-list');
        for (const hit of hits) {
          const li = node('li', 'result-item');
          li.dataset.documentId = hit.document_id || '';
          li.append(node('div', 'result-title', hit.title || 'Untitled document'));
          li.append(node('p', 'result-text', hit.excerpt || ''));
          ol.append(li);
        }
        return ol;
      }
      case 'web_search': {
        const hits = Array.isArray(result.results) ? result.results : [];
        if (!hits.length) return node('p', 'tool-muted', 'No web results.');
        const ol = node('ol', 'result-list');
        for (const hit of hits) {
          const li = node('li', 'result-item');
          const href = window.PersonaMarkdown.safeHref(hit.url || '');
          let title;
          if (href && /^https?:/i.test(href)) {
            title = node('a', 'result-title', hit.title || href);
            title.href = href;
            title.target = '_blank';
            title.rel = 'noopener noreferrer nofollow';
          } else {
            title = node('div', 'result-title', hit.title || '');
          }
          li.append(title);
          if (hit.url) li.append(node('div', 'result-url', String(hit.url)));
          if (hit.snippet) li.append(node('p', 'result-text', hit.snippet));
          ol.append(li);
        }
        return ol;
      }
      case 'save_note': {
        const note = result.note || {};
        const wrap = node('div', 'note-result');
        wrap.append(node('p', null, `Saved note “${note.title || ''}”.`));
        if (note.text) wrap.append(node('p', 'result-text', note.text));
        return wrap;
      }
      case 'list_notes': {
        const notes = Array.isArray(result.notes) ? result.notes : [];
        if (!notes.length) return node('p', 'tool-muted', 'No notes yet. Save one with /note <title>: <text>.');
        const ol = node('ol', 'result-list');
        for (const note of notes) {
          const li = node('li', 'result-item');
          const head = node('div', 'result-title', note.title || '');
          if (note.created_at) head.append(node('span', 'result-when', ` · ${relativeTime(note.created_at)}`));
          li.append(head, node('p', 'result-text', note.text || ''));
          ol.append(li);
        }
        return ol;
      }
      case 'delete_document': {
        const deleted = result.deleted || {};
        return node('p', null, `Deleted “${deleted.title || deleted.id || 'the document'}”.`);
      }
      default: {
        const pre = node('pre', 'result-json', JSON.stringify(result, null, 2));
        return pre;
      }
    }
  }

  // -------------------------------------------------------------------------
  // Office: options of the next message (Web, Tools), remembered in this browser

  const OPTIONS_KEY = 'personachat.office.options';
  const TOOL_MODES = {
    off: { label: 'off', about: 'The model answers without calling tools.' },
    auto: { label: 'auto', about: 'The model may call one of the offered tools before it answers.' },
    required: { label: 'always', about: 'The model must call one of the offered tools before it answers.' },
  };

  const options = {
    web: false,
    tools: 'off', // a key of TOOL_MODES
    toolNames: null, // the tools offered; null: all of them
    known: null, // name -> tool spec, once GET /tools answered
    note: '', // says why a change was refused (the last offered tool can't be unticked)
  };

  function optionsLoad() {
    let saved = null;
    try {
      saved = JSON.parse(localStorage.getItem(OPTIONS_KEY) || 'null');
    } catch (_) {
      saved = null;
    }
    if (!saved || typeof saved !== 'object') return;
    options.web = saved.web === true;
    options.tools = Object.prototype.hasOwnProperty.call(TOOL_MODES, saved.tools) ? saved.tools : 'off';
    const names = Array.isArray(saved.tool_names) ? saved.tool_names.filter((n) => typeof n === 'string') : [];
    options.toolNames = names.length ? names.slice(0, 16) : null;
  }

  function optionsSave() {
    const saved = { web: options.web, tools: options.tools, tool_names: options.toolNames };
    try {
      localStorage.setItem(OPTIONS_KEY, JSON.stringify(saved));
    } catch (_) {
      // storage blocked: the choice lasts as long as the page
    }
  }

  /** The offered tools to send as tool_names, or null to offer all (the server's default). */
  function toolNamesSent() {
    if (!options.toolNames) return null;
    if (!options.known) return options.toolNames;
    const names = options.toolNames.filter((n) => options.known.has(n));
    return names.length && names.length < options.known.size ? names : null;
  }

  /** The fields the options add to a message frame. */
  function optionsFrameFields() {
    const fields = {};
    if (options.web) fields.google_access = true;
    if (options.tools !== 'off') {
      fields.tools = options.tools;
      const names = toolNamesSent();
      if (names) fields.tool_names = names.slice();
    }
    return fields;
  }

  function optionsRender() {
    els.webToggle.setAttribute('aria-pressed', String(options.web));
    els.webState.textContent = options.web ? 'on' : 'off';
    els.webToggle.title = options.web ? 'Web search is on: answers also use web results' : 'Also search the web for the answer';
    const mode = TOOL_MODES[options.tools];
    const names = toolNamesSent();
    const total = options.known ? options.known.size : null;
    let shown = mode.label;
    let spoken = `Tools: ${mode.label}`;
    if (names && options.tools !== 'off') {
      shown += total ? ` · ${names.length}/${total}` : ` · ${names.length}`;
      spoken += total ? `, ${names.length} of ${total} tools offered` : `, ${names.length} tools offered`;
    }
    els.toolsState.textContent = shown;
    els.toolsButton.dataset.mode = options.tools;
    els.toolsButton.setAttribute('aria-label', spoken);
    for (const radio of els.toolsMenu.querySelectorAll('input[name="tools-mode"]')) {
      radio.checked = radio.value === options.tools;
    }
    els.toolsModeAbout.textContent = options.note || mode.about;
    els.toolsModeAbout.classList.toggle('is-note', Boolean(options.note));
    for (const box of els.toolsList.querySelectorAll('input[type="checkbox"]')) {
      box.checked = !names || names.includes(box.value);
    }
    els.toolsAll.hidden = !names;
    els.toolsMenu.classList.toggle('is-off', options.tools === 'off');
  }

  /** Fills the menu's list of tools from GET /tools (shared with the slash commands' help). */
  async function toolOptionsLoad() {
    let tools;
    try {
      tools = await toolsGet();
    } catch (err) {
      els.toolsList.replaceChildren(node('li', 'tools-list-note', `The tools could not be listed (${apiMessage(err)}).`));
      return;
    }
    options.known = tools;
    if (options.toolNames) {
      const names = options.toolNames.filter((n) => tools.has(n));
      options.toolNames = names.length && names.length < tools.size ? names : null;
    }
    const items = [];
    for (const tool of tools.values()) {
      const li = node('li');
      const label = node('label', 'tool-option');
      label.title = tool.description || tool.name;
      const box = node('input');
      box.type = 'checkbox';
      box.value = tool.name;
      box.dataset.testid = 'tool-option';
      label.append(box, node('code', 'tool-option-name', tool.name));
      if (tool.needs_approval) {
        const asks = node('span', 'tool-option-asks');
        asks.title = 'Asks for your approval before it runs';
        asks.append(icon('shield'), node('span', 'visually-hidden', ' (asks for your approval)'));
        label.append(asks);
      }
      li.append(label);
      items.push(li);
    }
    els.toolsList.replaceChildren(...items);
    optionsRender();
  }

  function toolsMenuOpen() {
    els.toolsMenu.hidden = false;
    els.toolsButton.setAttribute('aria-expanded', 'true');
    const checked = els.toolsMenu.querySelector('input[name="tools-mode"]:checked');
    if (checked) checked.focus();
  }

  function toolsMenuClose(focusButton) {
    if (els.toolsMenu.hidden) return;
    els.toolsMenu.hidden = true;
    els.toolsButton.setAttribute('aria-expanded', 'false');
    options.note = '';
    optionsRender();
    if (focusButton) els.toolsButton.focus();
  }

  function optionsBind() {
    optionsLoad();
    optionsRender();
    els.webToggle.addEventListener('click', () => {
      options.web = !options.web;
      optionsSave();
      optionsRender();
    });
    els.toolsButton.addEventListener('click', () => {
      if (els.toolsMenu.hidden) toolsMenuOpen();
      else toolsMenuClose(false);
    });
    els.toolsMenu.addEventListener('change', (event) => {
      const input = event.target;
      options.note = '';
      if (input.name === 'tools-mode') {
        options.tools = input.value;
      } else if (input.type === 'checkbox') {
        const all = Array.from(els.toolsList.querySelectorAll('input[type="checkbox"]'));
        const ticked = all.filter((b) => b.checked).map((b) => b.value);
        if (!ticked.length) {
          input.checked = true; // the server needs at least one tool to offer
          options.note = 'At least one tool stays offered.';
        } else {
          options.toolNames = ticked.length < all.length ? ticked : null;
        }
      }
      optionsSave();
      optionsRender();
    });
    els.toolsAll.addEventListener('click', () => {
      options.toolNames = null;
      options.note = '';
      optionsSave();
      optionsRender();
      const first = els.toolsList.querySelector('input');
      if (first) first.focus(); // the button hides itself: keep the focus in the menu
    });
    els.toolsMenu.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter' || event.isComposing) return;
      // The menu sits in the composer's form: Enter must not send the message.
      event.preventDefault();
      if (event.target.name === 'tools-mode') toolsMenuClose(true);
    });
    document.addEventListener('pointerdown', (event) => {
      if (els.toolsMenu.hidden) return;
      if (els.toolsMenu.contains(event.target) || els.toolsButton.contains(event.target)) return;
      toolsMenuClose(false);
    });
    els.toolsMenu.parentElement.addEventListener('focusout', (event) => {
      const to = event.relatedTarget;
      if (!to || els.toolsMenu.contains(to) || els.toolsButton.contains(to)) return;
      toolsMenuClose(false);
    });
  }

  // -------------------------------------------------------------------------
  // Office: the tool calls of a reply ("tool steps" above its text)

  const WEB_NOTICE = 'Web search was not used:';
  const STEP_LABELS = {
    running: 'Running…',
    ok: 'OK',
    error: 'Error',
    denied: 'Denied',
    approval_required: 'Needs your approval',
    unknown: 'No outcome',
  };
  const RESULT_PREVIEW_CHARS = 140;
  const stepViews = new WeakMap(); // tool step element -> its parts, the call shown and the user's decision
  let stepSeq = 0;

  /** The notice that opens a reply whose web search could not run: a note, not part of the answer. */
  function noticeBuild(text) {
    const notice = node('div', 'reply-notice');
    notice.dataset.testid = 'reply-notice';
    notice.setAttribute('role', 'note');
    const reason = text.slice(WEB_NOTICE.length).trim();
    const words = node('span', 'reply-notice-text');
    words.append(node('strong', null, WEB_NOTICE), document.createTextNode(reason ? ` ${reason}` : ''));
    notice.append(icon('info'), words);
    return notice;
  }

  function stepsContainer(article) {
    const data = messageData.get(article);
    if (!data.stepsEl) {
      const wrap = node('div', 'tool-steps');
      wrap.dataset.testid = 'tool-steps';
      data.body.before(wrap);
      data.stepsEl = wrap;
    }
    return data.stepsEl;
  }

  function toolStepCreate() {
    stepSeq += 1;
    const step = node('div', 'tool-step');
    step.dataset.testid = 'tool-step';
    step.setAttribute('role', 'group');
    const head = node('div', 'tool-step-head');
    const mark = node('span', 'tool-step-icon');
    const name = node('code', 'tool-step-name');
    name.dataset.testid = 'tool-step-name';
    const status = node('span', 'tool-step-status');
    status.dataset.testid = 'tool-step-status';
    head.append(mark, node('span', 'tool-step-kind', 'Tool call'), name, status);
    const args = node('pre', 'tool-step-args');
    args.dataset.testid = 'tool-step-args';
    args.setAttribute('aria-label', 'Arguments');
    const detail = node('div', 'tool-step-detail');
    detail.dataset.testid = 'tool-step-detail';
    step.append(head, args, detail);
    stepViews.set(step, { seq: stepSeq, mark, name, status, args, detail, call: null, decision: null, live: null });
    return step;
  }

  function argumentsText(args) {
    if (!args || typeof args !== 'object' || !Object.keys(args).length) return '(no arguments)';
    return JSON.stringify(args, null, 2);
  }

  /** One line that says what a tool returned; the whole result is a click away. */
  function resultPreviewText(tool, result) {
    if (result === null || result === undefined) return 'No result.';
    if (typeof result !== 'object') return String(result); // a long result is stored cut, as text
    const count = (list, one, many) => `${list.length} ${list.length === 1 ? one : many}`;
    if (tool === 'calculator' && 'result' in result) return `${result.expression ?? ''} = ${result.result}`;
    if (tool === 'current_time' && result.iso) {
      return `${String(result.iso).replace('T', ' ')} ${result.weekday || ''} ${result.timezone || ''}`.trim();
    }
    if ((tool === 'web_search' || tool === 'search_documents') && Array.isArray(result.results)) {
      const first = result.results[0] || {};
      const found = count(result.results, 'result', 'results');
      return result.results.length ? `${found}: ${first.title || first.url || ''}` : 'No results.';
    }
    if (tool === 'save_note' && result.note) return `Saved note “${result.note.title || ''}”.`;
    if (tool === 'list_notes' && Array.isArray(result.notes)) return count(result.notes, 'note', 'notes');
    if (tool === 'delete_document' && result.deleted) {
      return `Deleted “${result.deleted.title || result.deleted.id || 'the document'}”.`;
    }
    return JSON.stringify(result);
  }

  function resultBlock(view, tool, result) {
    let preview = resultPreviewText(tool, result).replace(/\s+/g, ' ').trim();
    if (preview.length > RESULT_PREVIEW_CHARS) preview = `${preview.slice(0, RESULT_PREVIEW_CHARS - 1)}…`;
    const wrap = node('div', 'tool-step-result');
    const line = node('p', 'tool-step-preview');
    line.dataset.testid = 'tool-step-preview';
    line.append(icon('check'), node('span', 'tool-step-preview-text', preview));
    const full = node('pre', 'tool-step-full', typeof result === 'string' ? result : JSON.stringify(result, null, 2));
    full.id = `tool-step-result-${view.seq}`;
    full.dataset.testid = 'tool-step-full';
    full.hidden = true;
    const toggle = node('button', 'tool-step-expand', 'Show result');
    toggle.type = 'button';
    toggle.dataset.testid = 'tool-step-expand';
    toggle.setAttribute('aria-expanded', 'false');
    toggle.setAttribute('aria-controls', full.id);
    toggle.addEventListener('click', () => {
      const open = toggle.getAttribute('aria-expanded') !== 'true';
      toggle.setAttribute('aria-expanded', String(open));
      toggle.textContent = open ? 'Hide result' : 'Show result';
      full.hidden = !open;
    });
    line.append(toggle);
    wrap.append(line, full);
    return wrap;
  }

  function stepNote(text, className) {
    const p = node('p', `tool-step-note${className ? ` ${className}` : ''}`, text);
    p.dataset.testid = 'tool-step-note';
    return p;
  }

  /** Approve / Deny for a call that waits: the decision goes back on the reply's own socket. */
  function approvalActions(view, call) {
    const actions = node('div', 'approval-actions');
    const approve = node('button', 'approval-button approve', 'Approve');
    approve.type = 'button';
    approve.dataset.testid = 'approve-button';
    approve.setAttribute('aria-label', `Approve ${call.tool}`);
    const deny = node('button', 'approval-button deny', 'Deny');
    deny.type = 'button';
    deny.dataset.testid = 'deny-button';
    deny.setAttribute('aria-label', `Deny ${call.tool}`);
    actions.append(approve, deny);
    const outcome = node('p', 'tool-step-note approval-outcome');
    outcome.dataset.testid = 'approval-outcome';
    outcome.setAttribute('role', 'status');
    const decide = (decision) => {
      if (approve.disabled) return;
      if (!wsSend({ type: 'approval', approval_id: call.approval_id, decision })) {
        outcome.textContent = 'Not connected: your decision was not sent.';
        return;
      }
      view.decision = decision;
      approve.disabled = true;
      deny.disabled = true;
      const doing = decision === 'approve' ? ' Approved: running it…' : ' Denied: the reply goes on without it…';
      outcome.replaceChildren(spinner(), document.createTextNode(doing));
    };
    approve.addEventListener('click', () => decide('approve'));
    deny.addEventListener('click', () => decide('deny'));
    view.live = { approve, deny, outcome };
    return [actions, outcome];
  }

  /** Shows `call` ({tool, arguments, status, result?, error?, approval_id?}) in a step; `live`: buttons allowed. */
  function toolStepSet(step, call, live) {
    const view = stepViews.get(step);
    const tool = String(call.tool || 'tool');
    const status = Object.prototype.hasOwnProperty.call(STEP_LABELS, call.status) ? call.status : 'unknown';
    view.call = Object.assign({}, call, { tool, status });
    view.live = null;
    step.dataset.tool = tool;
    step.dataset.status = status;
    if (call.approval_id) step.dataset.approvalId = String(call.approval_id);
    step.setAttribute('aria-label', `Tool call: ${tool}, ${STEP_LABELS[status].toLowerCase()}`);
    view.name.textContent = tool;
    view.args.textContent = argumentsText(call.arguments);
    view.mark.replaceChildren(icon(status === 'approval_required' ? 'shield' : 'tool'));
    const label = status === 'approval_required' && !live ? 'Was waiting for approval' : STEP_LABELS[status];
    view.status.replaceChildren(...(status === 'running' ? [spinner()] : []), node('span', null, label));
    const decided = {
      approve: 'You approved it.',
      deny: 'You denied it.',
      stop: 'Stopped: the call was denied.',
    }[view.decision];
    const parts = [];
    if (status === 'ok') {
      if (decided) parts.push(stepNote(decided, 'is-decision'));
      parts.push(resultBlock(view, tool, call.result));
    } else if (status === 'error') {
      if (decided) parts.push(stepNote(decided, 'is-decision'));
      const line = node('p', 'tool-error');
      line.dataset.testid = 'tool-error';
      line.append(icon('alert'), node('span', null, String(call.error || 'The tool failed.')));
      parts.push(line);
    } else if (status === 'denied') {
      parts.push(stepNote(`${decided || 'Denied.'} It did not run.`));
    } else if (status === 'approval_required' && live) {
      parts.push(stepNote(`${tool} runs only if you approve it. Stop denies it too.`));
      parts.push(...approvalActions(view, view.call));
    } else if (status === 'approval_required') {
      const note = stepNote('The reply was waiting for approval of this call. Approval id: ');
      note.append(node('code', 'tool-step-id', String(call.approval_id || '?')));
      parts.push(note);
    } else if (status === 'unknown') {
      parts.push(stepNote('The reply ended before this call had an outcome.'));
    }
    view.detail.replaceChildren(...parts);
  }

  /** A tool_call frame of the reply being streamed: a new step (running) or the outcome of the last one. */
  function onToolCall(frame) {
    const s = state.stream;
    if (!s) return;
    if (state.queuePosition !== null) {
      state.queuePosition = null;
      bannerRender();
    }
    const stick = nearBottom();
    const wrap = stepsContainer(s.bubble);
    let step = null;
    const last = wrap.lastElementChild;
    if (frame.status !== 'running' && last && ['running', 'approval_required'].includes(last.dataset.status)) {
      step = last;
    }
    if (!step) {
      step = toolStepCreate();
      step.classList.add('is-new');
      wrap.append(step);
    }
    toolStepSet(step, frame, !s.stopRequested);
    if (frame.status === 'ok') toolSideEffects(frame.tool);
    if (stick) scrollToBottom();
  }

  /** Stop was pressed: a call waiting for approval is denied by it, so its buttons go. */
  function toolStepsStopping(article) {
    const data = messageData.get(article);
    if (!data || !data.stepsEl) return;
    for (const step of data.stepsEl.children) {
      const view = stepViews.get(step);
      if (!view || !view.live) continue;
      view.live.approve.disabled = true;
      view.live.deny.disabled = true;
      if (!view.decision) {
        view.decision = 'stop';
        view.live.outcome.replaceChildren(spinner(), document.createTextNode(' Stopping: the call is denied…'));
      }
    }
  }

  /**
   * A reply is over: show its calls as stored (meta.tool_calls), keeping the steps that
   * streamed (and what the user opened or decided); no buttons are left on a finished reply.
   */
  function toolStepsFinish(article) {
    const data = messageData.get(article);
    const meta = data.meta || {};
    const calls = Array.isArray(meta.tool_calls) ? meta.tool_calls.filter((c) => c && typeof c === 'object') : [];
    const shown = data.stepsEl ? Array.from(data.stepsEl.children) : [];
    if (calls.length && shown.length !== calls.length) {
      if (data.stepsEl) data.stepsEl.replaceChildren();
      const wrap = stepsContainer(article);
      for (const call of calls) {
        const step = toolStepCreate();
        wrap.append(step);
        toolStepSet(step, call, false);
      }
      return;
    }
    shown.forEach((step, i) => {
      const view = stepViews.get(step);
      const call = calls[i] || view.call;
      const pending = call.status === 'running' || call.status === 'approval_required';
      const status = pending && !calls[i] && call.status === 'running' ? 'unknown' : call.status;
      if (view.live || status !== view.call.status) toolStepSet(step, Object.assign({}, call, { status }), false);
    });
  }

  function officeBind() {
    els.docUpload.addEventListener('click', () => els.docFile.click());
    els.docFile.addEventListener('change', () => {
      documentsUpload(els.docFile.files);
      els.docFile.value = ''; // the same file can be picked again
    });
    els.docErrorDismiss.addEventListener('click', docErrorsClear);
    dropBind();
    optionsBind();
    // Documents may change elsewhere (another tab, the API): catch up when the page is back in view.
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && docs.loaded) documentsLoad();
    });
    window.addEventListener('focus', () => {
      if (docs.loaded) documentsLoad();
    });
  }

  // -------------------------------------------------------------------------
  // Events

  function bind() {
    els.composer.addEventListener('submit', (event) => {
      event.preventDefault();
      if (state.stream) stopGeneration();
      else submitInput();
    });

    els.input.addEventListener('keydown', (event) => {
      if (event.key !== 'Enter') return;
      // IME: Enter that confirms a Hangul (or other) composition must not send.
      if (event.isComposing || event.keyCode === 229) return;
      if (event.shiftKey || event.altKey) return;
      event.preventDefault();
      submitInput();
    });

    els.input.addEventListener('input', () => {
      inputAutogrow();
      composerUpdate();
    });

    document.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape' || event.isComposing) return;
      if (IS_OFFICE && !els.toolsMenu.hidden) {
        event.preventDefault();
        toolsMenuClose(true);
      } else if (state.stream) {
        event.preventDefault();
        stopGeneration();
      } else if (els.layout.classList.contains('sidebar-open')) {
        drawerClose();
        els.menuButton.focus();
      }
    });

    els.newChat.addEventListener('click', () => newChat(state.persona));
    els.picker.addEventListener('change', () => newChat(els.picker.value));

    els.menuButton.addEventListener('click', drawerOpen);
    els.sidebarClose.addEventListener('click', () => {
      drawerClose();
      els.menuButton.focus();
    });
    els.backdrop.addEventListener('click', drawerClose);
    phoneQuery.addEventListener('change', () => {
      if (!isPhone()) drawerClose();
    });

    els.errorDismiss.addEventListener('click', errorClear);

    els.scroller.addEventListener('scroll', () => {
      els.jumpBottom.hidden = nearBottom();
    }, { passive: true });
    els.jumpBottom.addEventListener('click', scrollToBottom);

    window.addEventListener('hashchange', () => {
      const id = location.hash.slice(1);
      if (UUID_RE.test(id) && id !== state.dbId) openConversation(id);
    });

    window.addEventListener('online', () => {
      if (state.conn === 'closed') wsConnect();
    });

    if (IS_OFFICE) officeBind();

    // Relative times age; refresh their text now and then (not the whole list, which
    // would take focus away from a button the user is on).
    setInterval(() => {
      els.convList.querySelectorAll('time').forEach((t) => {
        t.textContent = relativeTime(t.dateTime);
      });
    }, 60000);
  }

  // -------------------------------------------------------------------------
  // Start

  async function loadInitial() {
    let delay = 1000;
    for (;;) {
      try {
        await Promise.all([personasLoad(), conversationsLoad()]);
        errorClear();
        return;
      } catch (err) {
        errorShow({ code: err.code, message: `Could not load this app's personas and chats (${err.message}). Retrying…` });
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 10000);
      }
    }
  }

  async function init() {
    if (config.other_app) {
      els.appSwitch.href = config.other_app.href;
      els.appSwitchTitle.textContent = config.other_app.title;
    }
    els.modelName.textContent = state.model.name;
    bind();
    bannerRender();
    composerUpdate();
    wsConnect();
    healthCheck();
    await loadInitial();
    if (IS_OFFICE) {
      documentsLoad();
      toolOptionsLoad();
    }
    const hashId = location.hash.slice(1);
    if (UUID_RE.test(hashId)) {
      newChat(state.defaultPersona);
      await openConversation(hashId);
    } else {
      newChat(state.defaultPersona);
    }
    document.body.dataset.ready = 'true';
  }

  window.personaChat = Object.freeze({
    get ws() {
      return state.ws;
    },
    get state() {
      return Object.freeze({
        app: config.app,
        userId: state.userId,
        conn: state.conn,
        model: state.model.state,
        modelName: state.model.name,
        dbId: state.dbId,
        stored: state.stored,
        persona: state.persona,
        streaming: Boolean(state.stream),
        queuePosition: state.queuePosition,
        busy: state.busy ? state.busy.seconds : null,
        conversations: state.conversations.length,
        options: IS_OFFICE ? optionsFrameFields() : null,
      });
    },
    config: Object.freeze(Object.assign({}, config)),
  });

  init();
})();
