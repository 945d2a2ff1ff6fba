/*
 * stream.js: one turn, from Send (or Regenerate) to its reply's end: the optimistic
 * bubbles, the turn's frames (start, done, error; socket.js hands them over and adds the
 * tokens to state.stream.text), rendering the reply as it grows, Stop, retries after
 * server_busy, and what a dropped connection leaves. state.stream is the running
 * generation (see streamBegin).
 */
import { INPUT_MAX, IS_CHARACTER, messageData, state } from './state.js';
import { els } from './dom.js';
import { api } from './api.js';
import { bannerRender, errorClear, errorShow } from './banner.js';
import { composerUpdate, inputAutogrow, restoreInput } from './composer.js';
import { conversationsRefresh, conversationsRender, hashSet } from './conversations.js';
import { hooks } from './hooks.js';
import { modelSet } from './model.js';
import { pendingReload, wsOpen, wsSend } from './socket.js';
import {
  bodyRender,
  bubbleFinish,
  messageActionsSet,
  introUpdate,
  messageAppend,
  messageCreate,
  nearBottom,
  regenerateButtonsUpdate,
  scrollToBottom,
} from './thread.js';

const BUSY_MAX_RETRIES = 3;
const STOP_GRACE_MS = 10000;
// Errors the server gives before it stores anything: the message can simply be retried.
const REJECTED_BEFORE_START = new Set([
  'malformed_json', 'unknown_type', 'invalid', 'blank', 'max_length', 'min_length', 'required', 'null',
  'not_found', 'model_loading', 'generation_in_progress', 'server_busy', 'frame_too_large',
]);

export function sendMessage(text) {
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
    input_data: text,
    persona: state.persona,
  };
  // A new character chat starts with the greeting picked on its first bubble (0: the first message).
  if (IS_CHARACTER && !state.stored && state.greeting > 0) frame.greeting_index = state.greeting;
  Object.assign(frame, hooks.messageOptions()); // office: web search, tool calls
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

export function regenerate(oldArticle) {
  if (state.stream || !wsOpen() || state.model.state !== 'ready') return;
  if (state.group) {
    // A group's reply is answered again by the member who wrote it.
    const speaker = (messageData.get(oldArticle).meta || {}).speaker;
    if (speaker) speak(speaker, { replaces: oldArticle });
    return;
  }
  const frame = { type: 'regenerate', db_id: state.dbId, persona: state.persona };
  const old = messageData.get(oldArticle);
  if (old.id) frame.message_id = old.id; // this reply, wherever it is in the chat
  const bubble = messageCreate('assistant', { streaming: true, persona: state.persona, seq: old.seq });
  bubble.classList.add('is-new');
  oldArticle.replaceWith(bubble);
  regenerateButtonsUpdate();
  if (nearBottom()) scrollToBottom();
  streamBegin('regenerate', frame, { bubble, replaced: oldArticle });
}

/**
 * The model goes on writing the chat's last reply (a reply cut at the length limit, or
 * stopped): what streams is added to the same bubble, and the server adds it to the
 * stored reply. One-to-one chats only.
 */
export function continueReply(article) {
  if (state.stream || state.group || !wsOpen() || state.model.state !== 'ready') return;
  const data = messageData.get(article);
  if (!data.id) return;
  const frame = { type: 'continue', db_id: state.dbId, persona: state.persona, message_id: data.id };
  article.dataset.streaming = 'true';
  article.setAttribute('aria-busy', 'true');
  regenerateButtonsUpdate();
  streamBegin('continue', frame, { bubble: article, base: data.text });
}

/**
 * Ask for a reply to the chat's last message: the user's, with no reply yet (a branch
 * that ends on an edited message). A regenerate frame with no reply to replace.
 */
export function replyAsk() {
  if (state.stream || state.group || !wsOpen() || state.model.state !== 'ready') return;
  const frame = { type: 'regenerate', db_id: state.dbId, persona: state.persona };
  const bubble = messageCreate('assistant', { streaming: true, persona: state.persona });
  messageAppend(bubble);
  regenerateButtonsUpdate();
  scrollToBottom();
  streamBegin('regenerate', frame, { bubble });
}

/**
 * A group chat's member replies now (the group's next speaker, or one the user picked);
 * with `replaces` (the group's last reply) it answers again in its place, a new swipe.
 * Resolves with the stream once it has ended (`completed`: its reply was stored), or
 * null when it could not start.
 */
export function speak(speaker, { replaces } = {}) {
  return new Promise((resolve) => {
    if (state.stream || !state.group) {
      resolve(null);
      return;
    }
    if (state.model.state !== 'ready' || !wsOpen()) {
      errorShow({ code: 'model_loading', message: 'The model is not ready (or the connection is down); try again in a moment.' });
      resolve(null);
      return;
    }
    const frame = { type: 'speak', db_id: state.dbId, speaker };
    const bubble = messageCreate('assistant', { streaming: true, persona: speaker });
    if (replaces) {
      frame.message_id = messageData.get(replaces).id;
      bubble.classList.add('is-new');
      replaces.replaceWith(bubble);
    } else {
      messageAppend(bubble);
    }
    regenerateButtonsUpdate();
    if (nearBottom()) scrollToBottom();
    streamBegin('speak', frame, { bubble, replaced: replaces, onEnd: resolve });
  });
}

function streamBegin(kind, frame, { userEl, bubble, replaced, onEnd, base }) {
  state.stream = {
    base: base || '', // a continued reply's text before this turn (the server streams only the rest)
    onEnd: onEnd || null,
    completed: false,
    kind,
    frame,
    dbId: frame.db_id,
    persona: frame.persona,
    userEl: userEl || null,
    bubble,
    replaced: replaced || null,
    text: base || '',
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
  // After the caller has finished with this reply's bubble (a group's next member may start).
  if (s.onEnd) setTimeout(() => s.onEnd(s), 0);
  clearTimeout(s.stopTimer);
  if (state.busy && state.busy.stream === s) busyCancel();
  state.queuePosition = null;
  bannerRender();
}

/** Renders the streaming reply again at the next frame (once per frame, however many tokens came). */
export function streamScheduleRender(s) {
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

export function stopGeneration() {
  const s = state.stream;
  if (!s || s.stopRequested) return;
  s.stopRequested = true;
  if (state.busy && state.busy.stream === s) {
    // Not sent again yet (waiting to retry after server_busy): just take it back.
    streamTakeBack(s);
    return;
  }
  wsSend({ type: 'stop' });
  hooks.replyStopping(s.bubble); // office: a call waiting for approval is denied by the stop
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

export function onStart(frame) {
  const s = state.stream;
  if (!s) return;
  s.started = true;
  s.messageId = frame.message_id || null;
  state.queuePosition = null;
  busyCancel();
  bannerRender();
  if (s.kind !== 'continue') {
    // A continued reply keeps its id; anything else is known by the id the server announced.
    if (s.messageId) s.bubble.dataset.messageId = s.messageId;
    messageData.get(s.bubble).id = s.messageId;
  }
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
        greeting: s.frame.greeting_index || 0,
        created_at: now,
        updated_at: now,
      });
    }
    conversationsRender();
  }
}

export function onDone(frame) {
  const s = state.stream;
  if (!s) return;
  s.completed = !s.stopRequested && frame.finish_reason !== 'stopped';
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
  if (frame.speaker) data.meta.speaker = frame.speaker; // a group's member: who answers it again
  const stick = nearBottom();
  bubbleFinish(s.bubble, {});
  if (s.userEl) messageActionsSet(s.userEl);
  regenerateButtonsUpdate();
  if (stick && s.bubble.isConnected) scrollToBottom();
  composerUpdate();
  conversationsRefresh();
  storedTextSync(s.dbId, s.bubble);
}

/**
 * After "done", take the reply's text from the store: Copy then copies exactly what
 * was saved, even if the streamed pieces differed from it (whitespace, a lost frame).
 * The app sees the stored message too (hooks.replyStored: the character's lore trace).
 */
async function storedTextSync(dbId, article) {
  const data = messageData.get(article);
  if (!data.id) return;
  let body;
  // A reply read from the store knows its place (an earlier one answered again); a live one is recent.
  const page = Number.isInteger(data.seq) ? `before=${data.seq + 1}&limit=1` : 'limit=8';
  try {
    body = await api(`/conversations/${dbId}/messages?${page}`);
  } catch (_) {
    return;
  }
  const stored = (body.messages || []).find((m) => m.id === data.id);
  if (!stored || !article.isConnected || article.dataset.streaming === 'true') return;
  hooks.replyStored(article, stored); // character: the lore that fired, kept only in the store
  const swipes = (stored.meta && stored.meta.swipes) || [];
  if (swipes.length > 1) {
    // A new answer to a stored reply is its newest alternative: show the ‹ k/n › arrows.
    data.meta = Object.assign({}, data.meta, { swipes, swipe_id: stored.meta.swipe_id });
    data.text = stored.content;
    bubbleFinish(article, {});
    return;
  }
  if (stored.content === data.text) return;
  data.text = stored.content;
  bodyRender(article, data.text, false);
}

export function onError(frame) {
  const s = state.stream;
  if (s && s.resuming && frame.field === 'message_id') {
    resumeFailed(s);
    return;
  }
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
  } else if (s.kind === 'continue') {
    bubbleFinish(s.bubble, {}); // the reply as it was
  } else {
    s.bubble.remove(); // a reply asked for without a message of its own (speak, replyAsk)
  }
  introUpdate();
  regenerateButtonsUpdate();
  composerUpdate();
}

/** server_busy before the turn started: wait retry_after seconds, then send the same frame again. */
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

/**
 * The socket dropped. A reply that had started keeps running on the server for a while:
 * it stays on screen, and once the socket is back it is resumed from what was received
 * (resumeAfterReconnect). Anything else is cut; its conversation is reloaded once back.
 */
export function connectionLost() {
  busyCancel();
  state.queuePosition = null;
  const s = state.stream;
  if (!s) return;
  const text = s.text;
  const visible = s.bubble.isConnected;
  if (s.started && s.messageId && visible && !s.stopRequested) {
    s.suspended = true;
    bannerRender();
    composerUpdate();
    return;
  }
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

/**
 * Back after a drop: ask for the rest of the suspended reply. Returns false when there is
 * nothing to resume (or the socket is not open), so the caller reloads instead.
 */
export function resumeAfterReconnect() {
  const s = state.stream;
  if (!s || !s.suspended) return false;
  s.suspended = false;
  const frame = { type: 'resume', message_id: s.messageId, offset: s.text.length - s.base.length };
  if (!wsSend(frame)) {
    connectionLost();
    return false;
  }
  s.resuming = true;
  return true;
}

/** The server could not resume the reply (it ended long ago, or the app restarted): show what came, reload. */
function resumeFailed(s) {
  s.resuming = false;
  streamEnd(s);
  const data = messageData.get(s.bubble);
  data.text = s.text;
  bubbleFinish(s.bubble, { interrupted: true });
  state.reloadAfterReconnect = { dbId: s.dbId, messageId: s.messageId, text: s.text };
  regenerateButtonsUpdate();
  composerUpdate();
  pendingReload();
}
