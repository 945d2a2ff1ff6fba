/*
 * character/lorebooks.js: the user's standalone lorebooks (world info), the "Lorebooks"
 * section of the library dialog (index.html #lorebooks): the list (name, entry count,
 * Export, Delete), import from a JSON file (POST /lorebooks), and the lorebooks of the chat
 * on screen once it is stored (PUT /conversations/{db_id}/lorebooks). The editor asks
 * lorebooksKnown() for its "Lorebooks" checkboxes.
 *
 * Lorebook names are untrusted: they are only ever placed with textContent.
 */
import { API, state } from '../state.js';
import { $, icon, node } from '../dom.js';
import { api, apiMessage, apiSend } from '../api.js';

const els = {
  section: $('lorebooks'),
  file: $('lorebook-file'),
  status: $('lorebook-status'),
  error: $('lorebook-error'),
  list: $('lorebook-list'),
  chat: $('chat-lorebooks'),
  chatOptions: $('chat-lorebooks-options'),
  chatStatus: $('chat-lorebooks-status'),
};

let known = null; // as GET /lorebooks lists them, once loaded

/** The lorebooks as last loaded (an empty list before). */
export function lorebooksKnown() {
  return known || [];
}

/** GET /lorebooks; resolves to the list (the last one known if it fails). */
export async function lorebooksLoad() {
  try {
    const data = await api('/lorebooks');
    known = data && Array.isArray(data.lorebooks) ? data.lorebooks : [];
  } catch (err) {
    if (!known) throw err;
  }
  return known;
}

function errorClear() {
  els.error.hidden = true;
  els.error.textContent = '';
  delete els.error.dataset.field;
  delete els.error.dataset.code;
}

function errorShow(err, what) {
  const field = err.field ? ` (field: ${err.field})` : '';
  els.error.textContent = `${what}: ${apiMessage(err)}${field}`;
  if (err.field) els.error.dataset.field = err.field;
  if (err.code) els.error.dataset.code = err.code;
  els.error.hidden = false;
}

function entriesText(n) {
  return n === 1 ? '1 entry' : `${Number(n) || 0} entries`;
}

/**
 * Checkboxes, one a lorebook, into `container`; `checked` is a Set of ids; onChange(ids)
 * runs with every ticked id after a change. `testid` names each checkbox.
 */
export function lorebookCheckboxes(container, checked, testid, onChange) {
  const books = lorebooksKnown();
  if (!books.length) {
    container.replaceChildren(node('p', 'field-hint', 'No lorebooks yet: import one in the library.'));
    return;
  }
  const boxes = books.map((book) => {
    const label = node('label', 'lorebook-check');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.value = book.id;
    box.checked = checked.has(book.id);
    box.dataset.testid = testid;
    box.dataset.lorebookId = book.id;
    if (onChange) {
      box.addEventListener('change', () => {
        onChange(Array.from(container.querySelectorAll('input[type=checkbox]:checked'), (b) => b.value));
      });
    }
    label.append(
      box,
      node('span', 'lorebook-check-name', book.name || 'Unnamed lorebook'),
      node('span', 'lorebook-facts', `(${entriesText(book.entries)})`),
    );
    return label;
  });
  container.replaceChildren(...boxes);
}

function lorebookItem(book) {
  const name = book.name || 'Unnamed lorebook';
  const li = node('li', 'lorebook-item');
  li.dataset.testid = 'lorebook-item';
  li.dataset.lorebookId = book.id;
  const info = node('div', 'lorebook-info');
  const title = node('span', 'lorebook-name', name);
  title.dataset.testid = 'lorebook-name';
  const count = node('span', 'lorebook-entries', entriesText(book.entries));
  count.dataset.testid = 'lorebook-entries';
  count.dataset.count = String(book.entries);
  info.append(title, count);

  const actions = node('div', 'character-actions');
  const exp = node('a', 'action-chip', 'Export');
  exp.href = `${API}/lorebooks/${encodeURIComponent(book.id)}/export`;
  exp.setAttribute('download', '');
  exp.dataset.testid = 'lorebook-export';
  exp.setAttribute('aria-label', `Export ${name}`);
  const del = node('button', 'action-chip is-danger');
  del.type = 'button';
  del.title = 'Delete';
  del.dataset.testid = 'lorebook-delete';
  del.setAttribute('aria-label', `Delete ${name}`);
  del.append(icon('trash'));
  del.addEventListener('click', () => remove(book, name));
  actions.append(exp, del);
  li.append(info, actions);
  return li;
}

function chatConversation() {
  return state.stored ? state.conversations.find((c) => c.db_id === state.dbId) || null : null;
}

/** "This chat's lorebooks": only for a stored chat. */
function chatRender() {
  const conv = chatConversation();
  els.chat.hidden = !conv;
  if (!conv) return;
  const dbId = conv.db_id;
  lorebookCheckboxes(els.chatOptions, new Set(conv.lorebooks || []), 'chat-lorebook', async (ids) => {
    els.chatStatus.textContent = 'Saving…';
    errorClear();
    try {
      const saved = await apiSend(`/conversations/${encodeURIComponent(dbId)}/lorebooks`, {
        method: 'PUT',
        json: { lorebooks: ids },
      });
      conv.lorebooks = (saved && saved.lorebooks) || ids;
      els.chatStatus.textContent = 'Saved';
    } catch (err) {
      els.chatStatus.textContent = '';
      errorShow(err, err.status === 404 ? 'This chat is not saved yet' : "Could not change this chat's lorebooks");
      chatRender();
    }
  });
}

export function lorebooksRender() {
  els.list.replaceChildren(...lorebooksKnown().map(lorebookItem));
  chatRender();
}

async function reload() {
  try {
    await lorebooksLoad();
  } catch (err) {
    errorShow(err, 'Could not load the lorebooks');
  }
  lorebooksRender();
}

async function remove(book, name) {
  if (!window.confirm(`Delete the lorebook “${name}”? Characters and chats using it go on without it.`)) return;
  errorClear();
  try {
    await apiSend(`/lorebooks/${encodeURIComponent(book.id)}`, { method: 'DELETE' });
  } catch (err) {
    if (err.status !== 404) {
      errorShow(err, `Could not delete “${name}”`);
      return;
    }
  }
  for (const conv of state.conversations) {
    if (Array.isArray(conv.lorebooks)) conv.lorebooks = conv.lorebooks.filter((id) => id !== book.id);
  }
  await reload();
  els.status.textContent = `Deleted “${name}”.`;
  els.file.focus();
}

async function importFile(file) {
  if (!file) return;
  errorClear();
  els.status.textContent = `Importing “${file.name}”…`;
  const form = new FormData();
  form.append('file', file, file.name);
  let book;
  try {
    book = await apiSend('/lorebooks', { form });
  } catch (err) {
    els.status.textContent = '';
    errorShow(err, `Could not import “${file.name}”`);
    return;
  } finally {
    els.file.value = '';
  }
  await reload();
  els.status.textContent = `Imported “${book.name}” (${entriesText(book.entries)}).`;
}

/** On opening the library: the list again from the server. */
export function lorebooksOpen() {
  errorClear();
  els.status.textContent = '';
  els.chatStatus.textContent = '';
  lorebooksRender();
  return reload();
}

/** The section's events; once. */
export function lorebooksBind() {
  els.file.addEventListener('change', () => importFile(els.file.files[0]));
}
