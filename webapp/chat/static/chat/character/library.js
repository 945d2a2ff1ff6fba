/*
 * character/library.js: the character library, a modal dialog (index.html #library)
 * opened from the top bar: every character (avatar, name, tags) with Chat, Edit (View for
 * a built-in), Duplicate, Export (PNG, JSON, CHARX) and Delete (the user's own); card
 * import by drop or file picker (POST /characters/import: the new character is picked for
 * a new chat); the user's lorebooks (character/lorebooks.js); and the user persona
 * (GET/PUT /user-persona), {{user}} in every card.
 *
 * Card text is untrusted: it is only ever placed with textContent.
 */
import { API, state } from '../state.js';
import { $, icon, node } from '../dom.js';
import { api, apiMessage, apiSend } from '../api.js';
import { conversationsRender, newChat } from '../conversations.js';
import { personasLoad } from '../personas.js';
import { avatarFill, greetingRefresh } from '../thread.js';
import { avatarSrc, library } from './characters.js';
import { editorBind, editorClose, editorIsOpen, editorOpen } from './editor.js';
import { lorebooksBind, lorebooksOpen } from './lorebooks.js';

const els = {
  open: $('library-open'),
  dialog: $('library'),
  close: $('library-close'),
  add: $('character-new'),
  drop: $('card-drop'),
  choose: $('card-choose'),
  file: $('card-file'),
  status: $('library-status'),
  error: $('library-error'),
  errorText: $('library-error-text'),
  errorDismiss: $('library-error-dismiss'),
  list: $('character-list'),
  persona: $('user-persona'),
  personaName: $('user-persona-name'),
  personaDescription: $('user-persona-description'),
  personaStatus: $('user-persona-status'),
  personaError: $('user-persona-error'),
};

const EXPORT_FORMATS = [
  ['png', 'PNG'],
  ['json', 'JSON'],
  ['charx', 'CHARX'],
];

function statusSet(text) {
  els.status.textContent = text || '';
}

function errorClear() {
  els.error.hidden = true;
  els.errorText.textContent = '';
  delete els.error.dataset.field;
  delete els.error.dataset.code;
}

/** An error in the library, naming the field at fault ("file", "data.name", "ccv3", …). */
function errorShow(err, what) {
  const message = apiMessage(err);
  const field = err.field ? ` (field: ${err.field})` : '';
  els.errorText.textContent = `${what}: ${message}${field}`;
  if (err.field) els.error.dataset.field = err.field;
  if (err.code) els.error.dataset.code = err.code;
  els.error.hidden = false;
}

/** The library again from the server: picker, list, and the greeting of a new chat. */
async function libraryReload() {
  await personasLoad();
  listRender();
  conversationsRender(); // a renamed character's chats
  if (!state.stored && !state.personas.has(state.persona)) newChat(state.defaultPersona);
  else greetingRefresh();
}

function exportMenu(character, name) {
  const menu = node('details', 'export-menu');
  const summary = node('summary', 'action-chip', 'Export');
  summary.dataset.testid = 'character-export';
  summary.setAttribute('aria-label', `Export ${name}`);
  const links = node('div', 'export-links');
  for (const [format, label] of EXPORT_FORMATS) {
    const a = node('a', 'export-link', label);
    a.href = `${API}/characters/${encodeURIComponent(character.id)}/export?format=${format}`;
    a.setAttribute('download', '');
    a.dataset.testid = `character-export-${format}`;
    a.setAttribute('aria-label', `Export ${name} as ${label}`);
    links.append(a);
  }
  menu.append(summary, links);
  return menu;
}

function chip(label, testid, ariaLabel, onClick) {
  const b = node('button', 'action-chip', label);
  b.type = 'button';
  b.dataset.testid = testid;
  b.setAttribute('aria-label', ariaLabel);
  b.addEventListener('click', onClick);
  return b;
}

function characterItem(character) {
  const data = character.data || {};
  const name = typeof data.name === 'string' && data.name.trim() ? data.name : 'Unnamed character';
  const li = node('li', 'character-item');
  li.dataset.testid = 'character-item';
  li.dataset.characterId = character.id;
  if (character.builtin) li.dataset.builtin = 'true';
  if (character.id === state.persona) li.setAttribute('aria-current', 'true');

  const avatar = node('div', 'character-avatar');
  avatar.dataset.testid = 'character-avatar';
  avatar.setAttribute('aria-hidden', 'true');
  avatarFill(avatar, name, avatarSrc(character));

  const info = node('div', 'character-info');
  const title = node('div', 'character-title');
  title.append(node('span', 'character-name', name));
  if (character.builtin) title.append(node('span', 'badge', 'built-in'));
  title.querySelector('.character-name').dataset.testid = 'character-name';
  info.append(title);
  const facts = [];
  if (data.creator) facts.push(`by ${data.creator}`);
  const alternates = Array.isArray(data.alternate_greetings) ? data.alternate_greetings.filter((g) => g.trim()) : [];
  if (alternates.length) facts.push(`${alternates.length + 1} greetings`);
  const book = data.character_book;
  if (book && Array.isArray(book.entries) && book.entries.length) facts.push(`lorebook: ${book.entries.length}`);
  if (facts.length) info.append(node('div', 'character-facts', facts.join(' · ')));
  const tags = (Array.isArray(data.tags) ? data.tags : []).filter(
    (t) => typeof t === 'string' && t && !(character.builtin && t === 'built-in'), // the badge says so
  );
  if (tags.length) {
    const list = node('ul', 'character-tags');
    list.setAttribute('aria-label', 'Tags');
    list.append(...tags.slice(0, 12).map((t) => node('li', 'tag', t)));
    info.append(list);
  }

  const actions = node('div', 'character-actions');
  const chat = chip('Chat', 'character-chat', `Chat with ${name}`, () => {
    libraryClose();
    newChat(character.id);
  });
  chat.classList.add('is-primary');
  actions.append(
    chat,
    chip(character.builtin ? 'View' : 'Edit', 'character-edit', `${character.builtin ? 'View' : 'Edit'} ${name}`, () =>
      editorFor(character),
    ),
    chip('Duplicate', 'character-duplicate', `Duplicate ${name}`, () => duplicate(character)),
    exportMenu(character, name),
  );
  if (!character.builtin) {
    const del = chip('', 'character-delete', `Delete ${name}`, () => remove(character, name));
    del.classList.add('is-danger');
    del.title = 'Delete';
    del.append(icon('trash'));
    actions.append(del);
  }
  li.append(avatar, info, actions);
  return li;
}

function listRender() {
  els.list.replaceChildren(...library.characters.map(characterItem));
}

function editorFor(character) {
  editorOpen(character, {
    onSaved: async (saved, { keepOpen }) => {
      await libraryReload().catch((err) => errorShow(err, 'Could not load the library'));
      if (!keepOpen) {
        statusSet(`Saved “${saved.data.name}”.`);
        const item = els.list.querySelector(`[data-character-id="${CSS.escape(saved.id)}"] [data-testid=character-edit]`);
        if (item && els.dialog.open) item.focus();
      }
    },
    onDuplicate: duplicate,
  });
}

/** A copy in the user's library (of a built-in one too); resolves to it, or null. */
async function duplicate(character) {
  errorClear();
  let copy;
  try {
    copy = await apiSend(`/characters/${encodeURIComponent(character.id)}/duplicate`, { json: {} });
  } catch (err) {
    errorShow(err, 'Could not duplicate');
    if (editorIsOpen()) editorClose();
    return null;
  }
  await libraryReload().catch(() => {});
  statusSet(`Copied as “${copy.data.name}”.`);
  return copy;
}

async function remove(character, name) {
  if (!window.confirm(`Delete “${name}”? Its chats stay, but it cannot be picked again. This cannot be undone.`)) return;
  errorClear();
  try {
    await apiSend(`/characters/${encodeURIComponent(character.id)}`, { method: 'DELETE' });
  } catch (err) {
    if (err.status !== 404) {
      errorShow(err, `Could not delete “${name}”`);
      return;
    }
  }
  await libraryReload().catch((err) => errorShow(err, 'Could not load the library'));
  statusSet(`Deleted “${name}”.`);
  els.add.focus();
}

/** Imports a card file; on success the new character is picked for a new chat. */
async function cardImport(file) {
  if (!file) return;
  errorClear();
  statusSet(`Importing “${file.name}”…`);
  els.drop.setAttribute('aria-busy', 'true');
  const form = new FormData();
  form.append('file', file, file.name);
  let character;
  try {
    character = await apiSend('/characters/import', { form });
  } catch (err) {
    statusSet('');
    errorShow(err, `Could not import “${file.name}”`);
    return;
  } finally {
    els.drop.removeAttribute('aria-busy');
    els.file.value = '';
  }
  try {
    await personasLoad();
  } catch (err) {
    errorShow(err, 'Imported, but the library did not load');
    return;
  }
  listRender();
  statusSet(`Imported “${character.data.name}”.`);
  libraryClose();
  newChat(character.id);
}

async function personaLoad() {
  try {
    const persona = await api('/user-persona');
    library.persona = { name: persona.name || '', description: persona.description || '' };
  } catch (_) {
    // The form keeps what was known at page load.
  }
  // What the user typed while it loaded stays (a late answer must not undo it).
  if (els.persona.dataset.edited === 'true') return;
  els.personaName.value = library.persona.name || state.userName;
  els.personaDescription.value = library.persona.description || '';
}

async function personaSave() {
  els.personaError.hidden = true;
  els.personaStatus.textContent = 'Saving…';
  const name = els.personaName.value.trim();
  if (!name) {
    els.personaStatus.textContent = '';
    els.personaError.textContent = 'name: Your name cannot be blank.';
    els.personaError.dataset.field = 'name';
    els.personaError.hidden = false;
    els.personaName.setAttribute('aria-invalid', 'true');
    els.personaName.focus();
    return;
  }
  let persona;
  try {
    persona = await apiSend('/user-persona', {
      method: 'PUT',
      json: { name, description: els.personaDescription.value },
    });
  } catch (err) {
    els.personaStatus.textContent = '';
    els.personaError.textContent = err.field ? `${err.field}: ${apiMessage(err)}` : apiMessage(err);
    els.personaError.dataset.field = err.field || '';
    els.personaError.hidden = false;
    return;
  }
  els.personaName.removeAttribute('aria-invalid');
  library.persona = { name: persona.name, description: persona.description };
  state.userName = persona.name;
  els.personaStatus.textContent = 'Saved';
  greetingRefresh(); // {{user}} in the greeting on screen
}

export async function libraryOpen() {
  errorClear();
  statusSet('');
  els.personaStatus.textContent = '';
  els.personaError.hidden = true;
  listRender();
  if (!els.dialog.open) els.dialog.showModal();
  els.open.setAttribute('aria-expanded', 'true');
  els.close.focus();
  delete els.persona.dataset.edited;
  personaLoad();
  lorebooksOpen();
  try {
    await personasLoad();
    listRender();
  } catch (err) {
    errorShow(err, 'Could not load the library');
  }
}

export function libraryClose() {
  if (els.dialog.open) els.dialog.close();
}

/** hooks.escape: Esc closes the editor, else the library (the chat's own Esc is Stop). */
export function libraryEscape() {
  if (editorIsOpen()) {
    editorClose();
    return true;
  }
  if (els.dialog.open) {
    libraryClose();
    return true;
  }
  return false;
}

function dropBind() {
  const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes('Files');
  els.drop.addEventListener('dragenter', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    els.drop.classList.add('is-over');
  });
  els.drop.addEventListener('dragover', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    els.drop.classList.add('is-over');
  });
  els.drop.addEventListener('dragleave', (event) => {
    if (!els.drop.contains(event.relatedTarget)) els.drop.classList.remove('is-over');
  });
  els.drop.addEventListener('drop', (event) => {
    event.preventDefault();
    els.drop.classList.remove('is-over');
    const files = event.dataTransfer ? event.dataTransfer.files : null;
    if (files && files.length) cardImport(files[0]);
  });
  // A file dropped beside the zone must not make the browser open it instead of the page.
  for (const type of ['dragover', 'drop']) {
    els.dialog.addEventListener(type, (event) => {
      if (!els.drop.contains(event.target)) event.preventDefault();
    });
  }
}

/** The library's and the editor's events; once (hooks.bind). */
export function libraryBind() {
  editorBind();
  lorebooksBind();
  dropBind();
  els.open.addEventListener('click', libraryOpen);
  els.close.addEventListener('click', libraryClose);
  els.dialog.addEventListener('close', () => {
    els.open.setAttribute('aria-expanded', 'false');
  });
  els.add.addEventListener('click', () => editorFor(null));
  els.choose.addEventListener('click', () => els.file.click());
  els.file.addEventListener('change', () => cardImport(els.file.files[0]));
  els.errorDismiss.addEventListener('click', errorClear);
  els.persona.addEventListener('submit', (event) => {
    event.preventDefault();
    personaSave();
  });
  els.personaName.addEventListener('input', () => els.personaName.removeAttribute('aria-invalid'));
  els.persona.addEventListener('input', () => {
    els.persona.dataset.edited = 'true';
  });
}
