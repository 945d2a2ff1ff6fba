/*
 * conversations.js: the sidebar's list of stored chats, and opening, starting and
 * deleting one (the chat on screen is state.dbId, also in the address's #hash).
 */
import { API, personaName, state, uuid4 } from './state.js';
import { els, icon, node } from './dom.js';
import { api, apiSend } from './api.js';
import { errorClear, errorShow } from './banner.js';
import { hooks } from './hooks.js';
import { composerUpdate } from './composer.js';
import { drawerClose, isPhone } from './drawer.js';
import { pickerSync } from './personas.js';
import { stopGeneration } from './stream.js';
import { PAGE_SIZE, greetingAppend, introUpdate, messageReveal, threadRender } from './thread.js';

/** "3 min ago", "yesterday", or a date: when a chat (or a note) last changed. */
export function relativeTime(iso) {
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

export function hashSet(dbId) {
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

export function newChat(personaId) {
  leaveCurrent();
  state.persona = state.personas.has(personaId) ? personaId : state.defaultPersona;
  state.greeting = 0;
  state.dbId = uuid4();
  state.stored = false;
  state.group = null;
  pickerSync();
  els.messages.replaceChildren();
  greetingAppend(state.persona);
  introUpdate();
  hashSet(null);
  document.title = `${pageTitle()}`;
  conversationsRender();
  hooks.conversationShown();
  composerUpdate();
  drawerClose();
  if (!isPhone() && !els.input.disabled) els.input.focus();
}

/** Pages from the newest back to the one holding place `seq` (a search hit), joined. */
async function pagesDownTo(dbId, seq) {
  let data = await api(`/conversations/${dbId}/messages?limit=${PAGE_SIZE}`);
  let messages = data.messages || [];
  while (data.before !== null && data.before !== undefined && data.before > seq) {
    const limit = Math.min(TARGET_PAGE_MAX, data.before - seq + PAGE_SIZE / 2);
    data = await api(`/conversations/${dbId}/messages?before=${data.before}&limit=${limit}`);
    messages = (data.messages || []).concat(messages);
  }
  return { messages, before: data.before };
}

const TARGET_PAGE_MAX = 500; // the API's largest page

/**
 * Show a stored chat: its newest page, or with `target` ({messageId, seq, conversation}:
 * a search hit, with its chat's title and persona) every page down to that message,
 * scrolled to it and marked.
 */
export async function openConversation(dbId, target) {
  leaveCurrent();
  const seq = state.viewSeq;
  const conv = state.conversations.find((c) => c.db_id === dbId) || (target && target.conversation);
  let data;
  try {
    data = target
      ? await pagesDownTo(dbId, target.seq)
      : await api(`/conversations/${dbId}/messages?limit=${PAGE_SIZE}`);
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
  state.greeting = conv && Number.isInteger(conv.greeting) ? conv.greeting : 0;
  state.group = conv && Array.isArray(conv.members) && conv.members.length ? conv : null;
  pickerSync();
  threadRender(data.messages || [], { before: data.before });
  hooks.conversationShown();
  if (target) messageReveal(target.messageId);
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

export async function conversationsLoad() {
  const data = await api('/conversations');
  state.conversations = (data && data.conversations) || [];
  conversationsRender();
}

export async function conversationsRefresh() {
  try {
    await conversationsLoad();
  } catch (_) {
    // The list is a convenience; the next refresh will catch up.
  }
}

export function conversationsRender() {
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
    const group = Array.isArray(conv.members) && conv.members.length > 0;
    const who = group ? conv.members.map(personaName).join(', ') : personaName(conv.persona);
    meta.append(time, document.createTextNode(` · ${who}`));
    if (group) li.dataset.group = 'true';
    if (conv.parent_id) {
      const parent = state.conversations.find((c) => c.db_id === conv.parent_id);
      const mark = node('span', 'conversation-branch', ' · branch');
      mark.dataset.testid = 'conversation-branch';
      mark.title = parent ? `Branched from “${parent.title || 'Untitled chat'}”` : 'Branched from another chat';
      meta.append(mark);
    }
    open.append(meta);
    open.addEventListener('click', () => {
      if (conv.db_id === state.dbId && state.stored) {
        drawerClose();
        return;
      }
      openConversation(conv.db_id);
    });
    const save = node('a', 'icon-button conversation-export');
    save.dataset.testid = 'export-conversation';
    save.href = `${API}/conversations/${conv.db_id}/export?format=jsonl`;
    save.download = '';
    save.setAttribute('aria-label', `Export chat: ${title} (SillyTavern JSONL)`);
    save.title = 'Export (SillyTavern JSONL)';
    save.append(icon('download'));
    save.addEventListener('click', (event) => event.stopPropagation());
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
    li.append(open, save, del);
    return li;
  });
  els.convList.replaceChildren(...items);
  els.convEmpty.hidden = items.length > 0 || els.convList.hidden; // hidden: search results stand in
}

function pageTitle() {
  return document.querySelector('.brand-text').textContent.trim() + ' · Persona chat';
}

/** Import a chat file (the sidebar's Import): stored as a new chat, which opens. */
export async function chatImport(file) {
  const form = new FormData();
  form.append('file', file);
  let result;
  try {
    result = await apiSend('/conversations/import', { form });
  } catch (err) {
    errorShow(err);
    return;
  }
  await conversationsRefresh();
  await openConversation(result.conversation.db_id);
}
