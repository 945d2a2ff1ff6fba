/*
 * character/groups.js: group chats of several characters.
 *   - "New group chat" opens a dialog: pick 2-8 characters, who speaks, a title
 *     (POST /groups), and the group opens.
 *   - On a group chat, the bar above the thread lists its members: Speak (that member
 *     replies now, even a muted one) and Mute; and who speaks after the user.
 *   - Sending in a group stores the message (POST /groups/{id}/messages), whose answer
 *     names who speaks; each then streams its reply over the socket (stream.js speak),
 *     one after another. A stopped or failed reply ends the round: the members still
 *     waiting don't speak.
 *
 * Names come from the character library; text goes in with textContent only.
 */
import { personaName, state } from '../state.js';
import { $, node } from '../dom.js';
import { apiMessage, apiPost, apiSend } from '../api.js';
import { errorClear, errorShow } from '../banner.js';
import { composerUpdate, inputAutogrow, restoreInput } from '../composer.js';
import { conversationsRefresh, conversationsRender, openConversation } from '../conversations.js';
import { speak } from '../stream.js';
import { introUpdate, messageActionsSet, messageAppend, messageCreate, scrollToBottom } from '../thread.js';
import { library } from './characters.js';

const els = {
  open: $('group-new'),
  dialog: $('group-dialog'),
  form: $('group-form'),
  close: $('group-close'),
  choices: $('group-choices'),
  activation: $('group-form-activation'),
  title: $('group-form-title'),
  error: $('group-error'),
  bar: $('group-bar'),
  members: $('group-members'),
  barActivation: $('group-activation'),
};

const MEMBERS_MIN = 2;
const MEMBERS_MAX = 8;

let round = 0; // the group round now speaking; a new message or Stop ends the one before

function dialogOpen() {
  errorClear();
  els.error.hidden = true;
  els.title.value = '';
  const boxes = library.characters.map((character) => {
    const label = node('label', 'group-choice');
    const box = node('input');
    box.type = 'checkbox';
    box.value = character.id;
    box.dataset.testid = 'group-choice';
    label.append(box, document.createTextNode(` ${personaName(character.id)}`));
    return label;
  });
  els.choices.replaceChildren(...boxes);
  els.dialog.showModal();
}

async function groupCreate(event) {
  event.preventDefault();
  const members = [...els.choices.querySelectorAll('input:checked')].map((box) => box.value);
  if (members.length < MEMBERS_MIN || members.length > MEMBERS_MAX) {
    els.error.textContent = `Pick ${MEMBERS_MIN} to ${MEMBERS_MAX} characters.`;
    els.error.hidden = false;
    return;
  }
  const body = { members, activation: els.activation.value };
  if (els.title.value.trim()) body.title = els.title.value.trim();
  let made;
  try {
    made = (await apiPost('/groups', body)).body;
  } catch (err) {
    els.error.textContent = apiMessage(err);
    els.error.hidden = false;
    return;
  }
  els.dialog.close();
  state.conversations.unshift(made);
  conversationsRender();
  await openConversation(made.db_id);
}

/** The group on screen changed on the server: keep the list's copy and the bar in step. */
function groupKeep(group) {
  state.group = group;
  state.conversations = state.conversations.map((c) => (c.db_id === group.db_id ? group : c));
  barRender();
}

async function groupChange(changes) {
  if (!state.group) return;
  try {
    groupKeep(await apiSend(`/groups/${state.group.db_id}`, { method: 'PATCH', json: changes }));
  } catch (err) {
    errorShow(err);
    barRender();
  }
}

function memberItem(memberId) {
  const muted = state.group.muted.includes(memberId);
  const li = node('li', muted ? 'group-member is-muted' : 'group-member');
  li.dataset.testid = 'group-member';
  li.dataset.member = memberId;
  const name = node('span', 'group-member-name', personaName(memberId));
  const talk = node('button', 'group-speak', 'Speak');
  talk.type = 'button';
  talk.dataset.testid = 'group-speak';
  talk.setAttribute('aria-label', `${personaName(memberId)}: speak now`);
  talk.disabled = Boolean(state.stream);
  talk.addEventListener('click', () => {
    round += 1;
    speak(memberId);
  });
  const mute = node('button', 'group-mute', muted ? 'Unmute' : 'Mute');
  mute.type = 'button';
  mute.dataset.testid = 'group-mute';
  mute.setAttribute('aria-pressed', muted ? 'true' : 'false');
  mute.setAttribute('aria-label', `${muted ? 'Unmute' : 'Mute'} ${personaName(memberId)}`);
  mute.addEventListener('click', () => {
    const next = muted ? state.group.muted.filter((m) => m !== memberId) : [...state.group.muted, memberId];
    groupChange({ muted: next });
  });
  li.append(name, talk, mute);
  return li;
}

function barRender() {
  if (!els.bar) return;
  els.bar.hidden = !state.group;
  if (!state.group) return;
  els.members.replaceChildren(...state.group.members.map(memberItem));
  els.barActivation.value = state.group.activation;
}

/** hooks.conversationShown: the bar for a group chat, none for a one-to-one chat. */
export function groupShown() {
  round += 1;
  barRender();
  introUpdate();
}

/** hooks.submitText: in a group, the message is posted here and its speakers speak in turn. */
export function groupSubmit(text) {
  if (!state.group) return text;
  if (!state.stream && text.trim()) groupSend(text);
  return null;
}

async function groupSend(text) {
  const group = state.group;
  const mine = ++round;
  els.members.querySelectorAll('.group-speak').forEach((b) => {
    b.disabled = true;
  });
  const userEl = messageCreate('user', { text });
  messageAppend(userEl);
  scrollToBottom();
  const input = document.getElementById('message-input');
  input.value = '';
  inputAutogrow();
  let posted;
  try {
    posted = (await apiPost(`/groups/${group.db_id}/messages`, { input_data: text })).body;
  } catch (err) {
    userEl.remove();
    restoreInput(text);
    introUpdate();
    errorShow(err);
    barRender();
    return;
  }
  userEl.dataset.messageId = posted.message.id;
  messageActionsSet(userEl);
  composerUpdate();
  for (const speaker of posted.speakers) {
    if (round !== mine || state.group !== group) break; // another message, Stop, or another chat
    const ended = await speak(speaker);
    if (!ended || !ended.completed) break;
  }
  barRender();
  conversationsRefresh();
}

export function groupsBind() {
  if (!els.open) return;
  els.open.addEventListener('click', dialogOpen);
  els.close.addEventListener('click', () => els.dialog.close());
  els.form.addEventListener('submit', groupCreate);
  els.barActivation.addEventListener('change', () => groupChange({ activation: els.barActivation.value }));
  // The bar's Speak buttons wait while a reply streams.
  new MutationObserver(() => barRender()).observe(document.getElementById('message-list'), { childList: true });
}
