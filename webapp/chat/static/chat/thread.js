/*
 * thread.js: the messages on screen: a message's element, a reply's body (Markdown, with
 * the cursor while it streams), its footer (stats, badges, Copy, Regenerate), the
 * greeting (with its alternates on the character page) and intro, a stored conversation
 * shown again, and scrolling.
 */
import { IS_CHARACTER, messageData, personaName, state } from './state.js';
import { els, icon, node } from './dom.js';
import { hooks } from './hooks.js';
import { copyText, render } from './markdown.js';
import { continueReply, regenerate, replyAsk } from './stream.js';
import { api, apiSend } from './api.js';
import { errorShow } from './banner.js';
import { conversationsRefresh, openConversation, relativeTime } from './conversations.js';

function initialOf(name) {
  const first = Array.from((name || '?').trim())[0] || '?';
  return first.toUpperCase();
}

/** Fills an avatar box: the persona's picture (`avatarSrc`) when it has one, else its initial. */
export function avatarFill(box, name, src) {
  box.replaceChildren();
  box.classList.toggle('has-image', Boolean(src));
  if (!src) {
    box.textContent = initialOf(name);
    return;
  }
  const img = node('img', 'avatar-image');
  img.alt = '';
  img.decoding = 'async';
  img.addEventListener('error', () => {
    box.classList.remove('has-image');
    box.textContent = initialOf(name);
  }, { once: true });
  img.src = src;
  box.append(img);
}

/**
 * Builds one message element. role: "user" | "assistant". Options: id, text,
 * streaming, meta, persona, greeting.
 */
export function messageCreate(role, options) {
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
    const avatar = node('div', 'message-avatar');
    avatarFill(avatar, name, persona && persona.avatarSrc);
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
    seq: Number.isInteger(o.seq) ? o.seq : null, // its place in the chat, when read from the store
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
    swipeGestureBind(article);
  }
  return article;
}

const SWIPE_MIN_PX = 60; // a horizontal drag at least this long, and mostly sideways, is a swipe

/**
 * On a touch screen, swiping a reply sideways steps through its alternatives as its
 * arrows do (a greeting: through the greetings): right to left shows the next one (past
 * the last: a new answer), left to right the one before. Mouse and pen drags select text.
 */
function swipeGestureBind(article) {
  let from = null;
  article.addEventListener('pointerdown', (event) => {
    from = event.pointerType === 'touch' ? { x: event.clientX, y: event.clientY } : null;
  });
  article.addEventListener('pointercancel', () => {
    from = null;
  });
  article.addEventListener('pointerup', (event) => {
    if (!from) return;
    const dx = event.clientX - from.x;
    const dy = event.clientY - from.y;
    from = null;
    if (Math.abs(dx) < SWIPE_MIN_PX || Math.abs(dy) * 2 > Math.abs(dx)) return;
    const steps = article.querySelectorAll('.greeting-nav .greeting-step');
    const button = dx < 0 ? steps[1] : steps[0];
    if (button && !button.disabled && !button.closest('[hidden]')) {
      button.click();
    } else if (dx < 0 && !steps.length && isLastReply(article) && messageData.get(article).id) {
      regenerate(article); // one answer so far: swiping on asks for another, as › would
    }
  });
}

export function bodyRender(article, text, streaming) {
  const data = messageData.get(article);
  // office: a reply that opens with "Web search was not used: …" shows that as a notice.
  const { lead, rest } = data.role === 'assistant' ? hooks.replyLead(text) : { lead: [], rest: text };
  data.body.replaceChildren(...lead, render(rest));
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

/** A button labelled for screen readers and on hover, with a test id. */
function buttonOf(className, label, testid, onClick) {
  const button = node('button', className);
  button.type = 'button';
  button.dataset.testid = testid;
  button.setAttribute('aria-label', label);
  button.title = label;
  button.addEventListener('click', onClick);
  return button;
}

function actionButton(label, iconName, testid, onClick) {
  const button = buttonOf('action-button', label, testid, onClick);
  button.append(icon(iconName), node('span', null, label.split(' ')[0]));
  return button;
}

/**
 * A reply is over (done, error, stop or a cut connection): drop the cursor and write
 * the footer (stats, badges, copy). flags: { interrupted, error }.
 */
export function bubbleFinish(article, flags) {
  const data = messageData.get(article);
  Object.assign(data.flags, flags);
  if (data.role === 'assistant' && !data.greeting) hooks.replyFinish(article); // office: its tool steps
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
    const swipes = (meta.swipes || []).length;
    if (data.role === 'assistant' && data.id && swipes > 1) {
      footer.prepend(swipeNav(article));
    }
    if (data.errorEl) data.errorEl.remove();
    if (data.flags.error) {
      const error = node('div', 'message-error', data.flags.error);
      footer.before(error);
      data.errorEl = error;
    }
    belowRefresh(article);
  }
  if (data.text) {
    const copy = actionButton('Copy reply', 'copy', 'copy-reply', async () => {
      const ok = await copyText(messageData.get(article).text);
      copy.classList.toggle('is-done', ok);
      copy.lastChild.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => {
        copy.classList.remove('is-done');
        copy.lastChild.textContent = 'Copy';
      }, 1500);
    });
    footer.append(copy);
  }
  messageActionsSet(article);
}

/**
 * Edit and Delete on a stored message (the user's or a reply). Edit swaps the text for a
 * box; Save sends PATCH {content} (the server keeps the earlier text in meta.edits) and
 * shows what was stored. Delete asks first, then removes the message from the store.
 */
export function messageActionsSet(article) {
  const data = messageData.get(article);
  data.footer.querySelectorAll('.message-action').forEach((b) => b.remove());
  if (!data.id || data.greeting || !state.stored || article.dataset.streaming === 'true') return;
  const edit = actionButton('Edit message', 'edit', 'edit-message', () => messageEditOpen(article));
  const branch = actionButton('Branch from here', 'branch', 'branch-message', () => messageBranch(article));
  const del = actionButton('Delete message', 'trash', 'delete-message', () => messageDelete(article));
  for (const b of [edit, branch, del]) b.classList.add('message-action');
  data.footer.append(edit, branch, del);
}

/** A new chat sharing this one's history up to this message; it opens at once. */
async function messageBranch(article) {
  const data = messageData.get(article);
  if (state.stream) return;
  let branch;
  try {
    branch = await apiSend(`/conversations/${state.dbId}/branches`, { json: { from_message_id: data.id } });
  } catch (err) {
    errorShow(err);
    return;
  }
  await conversationsRefresh();
  await openConversation(branch.db_id);
}

/**
 * Where the chat on screen came from and its branches, at the top of the thread: each a
 * link that opens that chat.
 */
function lineageShow() {
  const old = els.messages.querySelector('[data-testid="lineage"]');
  if (old) old.remove();
  const here = state.conversations.find((c) => c.db_id === state.dbId);
  const parent = here && here.parent_id ? state.conversations.find((c) => c.db_id === here.parent_id) : null;
  const children = state.conversations.filter((c) => c.parent_id && c.parent_id === state.dbId);
  if (!parent && !children.length) return;
  const bar = node('nav', 'lineage');
  bar.dataset.testid = 'lineage';
  bar.setAttribute('aria-label', 'Branches of this chat');
  const link = (conv, testid, text) => {
    const b = node('button', 'lineage-link', text);
    b.type = 'button';
    b.dataset.testid = testid;
    b.dataset.dbId = conv.db_id;
    b.addEventListener('click', () => openConversation(conv.db_id));
    return b;
  };
  if (parent) bar.append(node('span', null, 'Branched from '), link(parent, 'lineage-parent', parent.title || 'a chat'));
  if (children.length) {
    if (parent) bar.append(node('span', null, ' · '));
    bar.append(node('span', null, children.length === 1 ? 'Branch: ' : 'Branches: '));
    children.forEach((c, i) => {
      if (i) bar.append(node('span', null, ', '));
      bar.append(link(c, 'lineage-child', relativeTime(c.created_at)));
    });
  }
  els.messages.prepend(bar);
}

function messageShow(article, message) {
  const data = messageData.get(article);
  data.text = message.content;
  data.meta = message.meta || {};
  if (data.role === 'assistant') {
    bubbleFinish(article, {});
  } else {
    data.body.textContent = data.text;
    messageActionsSet(article);
  }
}

function messageEditOpen(article) {
  const data = messageData.get(article);
  if (state.stream || data.editing) return;
  data.editing = true;
  const box = node('textarea', 'message-edit-input');
  box.dataset.testid = 'edit-input';
  box.value = data.text;
  box.rows = Math.min(12, Math.max(2, data.text.split('\n').length + 1));
  const save = node('button', 'action-button', 'Save');
  save.type = 'button';
  save.dataset.testid = 'edit-save';
  const cancel = node('button', 'action-button', 'Cancel');
  cancel.type = 'button';
  cancel.dataset.testid = 'edit-cancel';
  const form = node('div', 'message-edit');
  form.append(box, node('div', 'message-edit-buttons'));
  form.lastChild.append(save, cancel);
  if (data.role === 'user') {
    // Edit and send again: the past stays as it was; the edited message goes on in a branch.
    const resend = node('button', 'action-button', 'Send as a new branch');
    resend.type = 'button';
    resend.dataset.testid = 'edit-resend';
    resend.title = 'Keep this chat as it is: a new branch holds the edited message and its new reply';
    resend.addEventListener('click', async () => {
      const text = box.value;
      if (!text.trim()) return;
      resend.disabled = true;
      let branch;
      try {
        branch = await apiSend(`/conversations/${state.dbId}/branches`, {
          json: { from_message_id: data.id, content: text },
        });
      } catch (err) {
        resend.disabled = false;
        errorShow(err);
        return;
      }
      close();
      await conversationsRefresh();
      await openConversation(branch.db_id);
      replyAsk();
    });
    form.lastChild.insertBefore(resend, cancel);
  }
  data.body.hidden = true;
  data.body.after(form);
  box.focus();
  const close = () => {
    form.remove();
    data.body.hidden = false;
    data.editing = false;
  };
  cancel.addEventListener('click', close);
  save.addEventListener('click', async () => {
    const text = box.value;
    if (!text.trim() || text === data.text) {
      close();
      return;
    }
    save.disabled = true;
    try {
      const message = await apiSend(`/conversations/${state.dbId}/messages/${data.id}`, {
        method: 'PATCH',
        json: { content: text },
      });
      close();
      messageShow(article, message);
    } catch (err) {
      save.disabled = false;
      errorShow(err);
    }
  });
}

async function messageDelete(article) {
  const data = messageData.get(article);
  if (state.stream || !window.confirm('Delete this message? This cannot be undone.')) return;
  try {
    await apiSend(`/conversations/${state.dbId}/messages/${data.id}`, { method: 'DELETE' });
  } catch (err) {
    if (err.status !== 404) {
      errorShow(err);
      return;
    }
  }
  article.remove();
  regenerateButtonsUpdate();
  introUpdate();
}

/** (Re)builds what shows between a finished reply's text and its footer (office: Sources; character: Lore). */
export function belowRefresh(article) {
  const data = messageData.get(article);
  if (data.belowEl) data.belowEl.remove();
  data.belowEl = hooks.replyBelow(data.meta || {});
  if (data.belowEl) data.footer.before(data.belowEl);
}

function badge(kind, title) {
  const b = node('span', `badge badge-${kind}`, kind);
  b.title = title;
  b.dataset.badge = kind;
  return b;
}

/** Only the last assistant reply of a stored chat can be regenerated (or continued) from its footer. */
export function regenerateButtonsUpdate() {
  els.messages.querySelectorAll('[data-testid="regenerate"], [data-testid="continue-reply"]').forEach((b) => b.remove());
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
  if (!state.group && data.id) {
    // The model writes more of the same reply (one cut at the length limit, say).
    const more = actionButton('Continue this reply', 'continue', 'continue-reply', () => continueReply(last));
    data.footer.append(more);
  }
}

export function messageAppend(article) {
  article.classList.add('is-new'); // only live messages animate in, not a reopened history
  els.messages.append(article);
  introUpdate();
}

/**
 * The greetings a chat with `persona` may start with, counted as the server counts them
 * (webapp.chat.personas.Persona.greetings): the first message, then the alternates.
 */
export function greetingsOf(persona) {
  if (!persona) return [];
  if (Array.isArray(persona.greetings)) return persona.greetings;
  return persona.greeting ? [persona.greeting] : [];
}

/**
 * A card's text for display before the server has seen it: {{char}} and {{user}} (and the
 * older <BOT>/<CHAR>/<USER>), any case, become the names, in one pass (a name that looks
 * like a macro stays as written). Other macros are left for the server.
 */
export function macrosShow(text, charName) {
  return String(text || '').replace(/\{\{(char|user)\}\}|<(bot|char|user)>/gi, (_, curly, legacy) => {
    return (curly || legacy).toLowerCase() === 'user' ? state.userName || 'you' : charName;
  });
}

function greetingText(persona, index) {
  return macrosShow(greetingsOf(persona)[index] || '', persona.called || persona.name);
}

/** Shows greeting `index` in the greeting bubble (its text and its "2/3" counter). */
function greetingShow(article, persona, index) {
  const data = messageData.get(article);
  const total = greetingsOf(persona).length;
  data.text = greetingText(persona, index);
  article.dataset.greetingIndex = String(index);
  bodyRender(article, data.text, false);
  const counter = article.querySelector('[data-testid="greeting-counter"]');
  if (counter) counter.textContent = `${index + 1}/${total}`;
}

/** A small arrow button (‹ or ›) of a nav: greetings, swipes. */
function stepButton(label, testid, path, onClick) {
  const b = buttonOf('icon-button greeting-step', label, testid, onClick);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  const d = document.createElementNS(ns, 'path');
  d.setAttribute('d', path);
  svg.append(d);
  b.append(svg);
  return b;
}

const PREV_PATH = 'M15 6l-6 6 6 6';
const NEXT_PATH = 'M9 6l6 6-6 6';

function greetingNav(article, persona) {
  const total = greetingsOf(persona).length;
  const nav = node('div', 'greeting-nav');
  nav.setAttribute('role', 'group');
  nav.setAttribute('aria-label', 'Greetings to start with');
  const step = (delta) => {
    state.greeting = (state.greeting + delta + total) % total;
    greetingShow(article, persona, state.greeting);
  };
  const counter = node('span', 'greeting-counter', `${state.greeting + 1}/${total}`);
  counter.dataset.testid = 'greeting-counter';
  counter.setAttribute('aria-live', 'polite');
  counter.title = 'Which greeting the chat starts with';
  nav.append(
    stepButton('Previous greeting', 'greeting-prev', PREV_PATH, () => step(-1)),
    counter,
    stepButton('Next greeting', 'greeting-next', NEXT_PATH, () => step(1)),
  );
  return nav;
}

/** Whether `article` is the chat's last reply (the one a new answer can be asked for). */
function isLastReply(article) {
  const all = els.messages.querySelectorAll('[data-testid="message"]');
  return all[all.length - 1] === article && article.dataset.role === 'assistant';
}

/**
 * A stored reply's alternatives (swipes): ‹ k/n ›. The arrows show another one (PATCH
 * swipe_id: later prompts see it); past the last alternative, › asks the model for a new
 * one, as Regenerate does: for any reply (in a group chat, only its last message).
 */
function swipeNav(article) {
  const data = messageData.get(article);
  const swipes = (data.meta && data.meta.swipes) || [];
  const total = Math.max(1, swipes.length);
  const shown = Number.isInteger(data.meta && data.meta.swipe_id) ? data.meta.swipe_id : 0;
  const nav = node('div', 'greeting-nav swipe-nav');
  nav.setAttribute('role', 'group');
  nav.setAttribute('aria-label', 'Alternative replies');
  nav.dataset.testid = 'swipe-nav';
  const go = async (index) => {
    if (state.stream || !data.id || !state.dbId) return;
    if (index >= total) {
      // Any reply gets another answer (a group's: only its last message, by its member).
      if (!state.group || isLastReply(article)) regenerate(article);
      return;
    }
    if (index < 0) return;
    let message;
    try {
      message = await apiSend(`/conversations/${state.dbId}/messages/${data.id}`, {
        method: 'PATCH',
        json: { swipe_id: index },
      });
    } catch (err) {
      errorShow(err);
      return;
    }
    if (!article.isConnected) return;
    data.text = message.content;
    data.meta = message.meta || {};
    bubbleFinish(article, {});
  };
  const counter = node('span', 'greeting-counter', `${shown + 1}/${total}`);
  counter.dataset.testid = 'swipe-counter';
  counter.setAttribute('aria-live', 'polite');
  counter.title = 'Which of the alternative replies is shown';
  const prev = stepButton('Previous alternative', 'swipe-prev', PREV_PATH, () => go(shown - 1));
  prev.disabled = shown === 0;
  nav.append(prev, counter, stepButton('Next alternative', 'swipe-next', NEXT_PATH, () => go(shown + 1)));
  return nav;
}

/**
 * The character page's first bubble: the greeting the chat starts (or started) with,
 * state.greeting. While the chat has no messages, arrows pick another of its greetings.
 */
export function greetingAppend(personaId, { first = false } = {}) {
  const persona = state.personas.get(personaId);
  const total = greetingsOf(persona).length;
  if (!IS_CHARACTER || !total || state.group) return; // a group starts with the user's message
  if (state.greeting >= total) state.greeting = 0;
  const article = messageCreate('assistant', { text: '', greeting: true, persona: personaId });
  greetingShow(article, persona, state.greeting);
  bubbleFinish(article, {});
  if (total > 1) messageData.get(article).footer.prepend(greetingNav(article, persona));
  if (first) els.messages.prepend(article);
  else els.messages.append(article);
}

/** A new chat that has no messages yet shows its greeting again (the library or the user's name changed). */
export function greetingRefresh() {
  if (state.stored || els.messages.querySelector('[data-testid="message"]:not([data-greeting])')) return;
  els.messages.replaceChildren();
  greetingAppend(state.persona);
  introUpdate();
}

export function introUpdate() {
  // A turn, or a card an office slash command left.
  const hasTurns = Boolean(els.messages.querySelector('[data-testid="message"]:not([data-greeting]), .tool-card'));
  // Another greeting can be picked only before the chat's first message.
  els.messages.querySelectorAll('.greeting-nav:not(.swipe-nav)').forEach((nav) => {
    nav.hidden = hasTurns || state.stored;
  });
  if (state.group && !hasTurns) {
    const title = state.group.title || 'Group chat';
    avatarFill(els.introAvatar, title, null);
    els.introName.textContent = title;
    els.introDescription.textContent = `A group chat with ${state.group.members.map(personaName).join(', ')}.`;
    els.introHint.textContent = 'Say something to start; name a character to have them answer first.';
    els.introHint.hidden = false;
    els.intro.hidden = false;
    return;
  }
  const persona = state.personas.get(state.persona);
  if (hasTurns || !persona) {
    els.intro.hidden = true;
    return;
  }
  avatarFill(els.introAvatar, persona.name, persona.avatarSrc);
  els.introName.textContent = persona.name;
  els.introDescription.textContent = persona.blurb !== undefined ? persona.blurb : persona.description || '';
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

export const PAGE_SIZE = 50;

/** The stored messages of one page, as elements (replaced replies hidden). */
function pageArticles(messages, o) {
  for (const m of messages) {
    if (m.meta && m.meta.regenerates) state.replaced.add(m.meta.regenerates);
  }
  const articles = [];
  for (const m of messages) {
    if (m.role === 'assistant' && state.replaced.has(m.id)) continue;
    if (m.role !== 'user' && m.role !== 'assistant') continue;
    // A group's reply shows its speaker (meta.speaker); any other, the chat's persona.
    const speaker = (m.meta && m.meta.speaker) || undefined;
    const article = messageCreate(m.role, { id: m.id, seq: m.seq, text: m.content, meta: m.meta || {}, persona: speaker });
    if (m.role === 'assistant') {
      const wasCut = o.interrupted && o.interrupted.messageId && o.interrupted.messageId === m.id;
      if (wasCut) o.interruptedShown = true;
      bubbleFinish(article, wasCut ? { interrupted: true } : {});
    } else {
      messageActionsSet(article);
    }
    articles.push(article);
  }
  return articles;
}

/**
 * The top of a chat read by pages: the greeting once the first page is on screen, else
 * a marker that loads the page further back (`before`) when it scrolls into view or is
 * clicked, keeping what was on screen where it was.
 */
function olderMarkerSet(before) {
  const old = els.messages.querySelector('[data-testid="older-messages"]');
  if (old) old.remove();
  if (before === null || before === undefined) {
    if (!els.messages.querySelector('[data-greeting]')) greetingAppend(state.persona, { first: true });
    return;
  }
  const marker = node('button', 'older-messages', 'Earlier messages');
  marker.type = 'button';
  marker.dataset.testid = 'older-messages';
  marker.dataset.before = String(before);
  const view = state.viewSeq;
  const dbId = state.dbId;
  let loading = false;
  const load = async () => {
    if (loading || view !== state.viewSeq) return;
    loading = true;
    marker.textContent = 'Loading…';
    let data;
    try {
      data = await api(`/conversations/${dbId}/messages?before=${before}&limit=${PAGE_SIZE}`);
    } catch (_) {
      loading = false;
      marker.textContent = 'Earlier messages (retry)';
      return;
    }
    if (view !== state.viewSeq || !marker.isConnected) return;
    observer.disconnect();
    const s = els.scroller;
    const fromBottom = s.scrollHeight - s.scrollTop;
    const articles = pageArticles(data.messages || [], {});
    marker.after(...articles);
    olderMarkerSet(data.before);
    lineageShow();
    s.scrollTop = s.scrollHeight - fromBottom;
  };
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) load();
  }, { root: els.scroller, rootMargin: '200px 0px 0px 0px' });
  marker.addEventListener('click', load);
  els.messages.prepend(marker);
  // Observe once the first screen has settled at the bottom, so opening a chat loads one page.
  requestAnimationFrame(() => observer.observe(marker));
}

/** Shows a conversation's newest stored page; `options.before` says whether older pages exist. */
export function threadRender(messages, options) {
  const o = { ...(options || {}) };
  els.messages.replaceChildren();
  state.replaced = new Set();
  els.messages.append(...pageArticles(messages, o));
  olderMarkerSet(o.before);
  lineageShow();
  if (o.interrupted && !o.interruptedShown && o.interrupted.text) {
    // The server kept no part of the cut reply: show what had arrived.
    const article = messageCreate('assistant', { text: o.interrupted.text });
    bubbleFinish(article, { interrupted: true });
    els.messages.append(article);
  }
  introUpdate();
  regenerateButtonsUpdate();
  scrollToBottom();
}

/** Scroll to a stored message and mark it for a moment (a search hit opened). */
export function messageReveal(messageId) {
  const article = [...els.messages.querySelectorAll('[data-testid="message"]')].find(
    (a) => a.dataset.messageId === messageId,
  );
  if (!article) return;
  article.classList.add('message-found');
  article.dataset.found = 'true';
  article.scrollIntoView({ block: 'center' });
  setTimeout(() => {
    article.classList.remove('message-found');
  }, 4000);
}

/** The thread is scrolled (nearly) to its end: new text keeps it there. */
export function nearBottom() {
  const s = els.scroller;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

export function scrollToBottom() {
  els.scroller.scrollTop = els.scroller.scrollHeight;
  els.jumpBottom.hidden = true;
}
