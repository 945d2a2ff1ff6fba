/*
 * character/editor.js: the character editor, a modal dialog (index.html
 * #character-editor): the card's fields, its alternate greetings (a list of textareas)
 * and its picture. Save creates (POST /characters) or sends only the fields that changed
 * (PATCH /characters/{id}, with `lorebooks` when the "Lorebooks" checkboxes of one of the
 * user's own characters changed), then the picture (PUT …/avatar). A built-in character opens
 * read-only, with "Duplicate to edit". A server error that names a card field
 * (`data.<field>…`) is shown under that field.
 *
 * Card text goes into form controls as values, never as markup.
 */
import { $ } from '../dom.js';
import { apiMessage, apiSend } from '../api.js';
import { avatarFill } from '../thread.js';
import { avatarSrc } from './characters.js';
import { lorebookCheckboxes, lorebooksKnown, lorebooksLoad } from './lorebooks.js';

// The card's plain-text fields, each a control #editor-<field>.
const TEXT_FIELDS = [
  'name',
  'description',
  'personality',
  'scenario',
  'first_mes',
  'mes_example',
  'system_prompt',
  'post_history_instructions',
  'creator',
  'creator_notes',
];

const els = {
  dialog: $('character-editor'),
  form: $('editor-form'),
  title: $('editor-title'),
  close: $('editor-close'),
  cancel: $('editor-cancel'),
  save: $('editor-save'),
  status: $('editor-status'),
  error: $('editor-error'),
  readonly: $('editor-readonly'),
  duplicate: $('editor-duplicate'),
  avatar: $('editor-avatar'),
  avatarFile: $('editor-avatar-file'),
  greetings: $('editor-greetings'),
  greetingAdd: $('editor-greeting-add'),
  tags: $('editor-tags'),
  lorebooks: $('editor-lorebooks'),
  lorebookOptions: $('editor-lorebooks-options'),
};

const editing = {
  character: null, // the character being edited (null: a new one)
  readOnly: false,
  busy: false,
  onSaved: null, // (character) => void, after a save
  onDuplicate: null, // (character) => Promise<character|null>: "Duplicate to edit"
  previewUrl: null,
};

/** The card's text as a textarea holds it (CR LF becomes LF), to tell what the user changed. */
function asShown(value) {
  return typeof value === 'string' ? value.replace(/\r\n?/g, '\n') : '';
}

function tagsOf(text) {
  return text.split(',').map((t) => t.trim()).filter(Boolean);
}

function greetingRow(text) {
  const li = document.createElement('li');
  li.className = 'greeting-row';
  const id = `editor-greeting-${Math.random().toString(36).slice(2, 10)}`;
  const label = document.createElement('label');
  label.className = 'visually-hidden';
  label.htmlFor = id;
  const area = document.createElement('textarea');
  area.id = id;
  area.rows = 3;
  area.value = text;
  area.dataset.testid = 'editor-greeting';
  area.readOnly = editing.readOnly;
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'link-button greeting-remove';
  remove.dataset.testid = 'editor-greeting-remove';
  remove.textContent = 'Remove';
  remove.hidden = editing.readOnly;
  remove.addEventListener('click', () => {
    const next = li.nextElementSibling || li.previousElementSibling;
    li.remove();
    greetingLabels();
    (next ? next.querySelector('textarea') : els.greetingAdd).focus();
  });
  li.append(label, area, remove);
  return li;
}

/** "Alternate greeting 2" and so on, kept in order after an add or a remove. */
function greetingLabels() {
  els.greetings.querySelectorAll('.greeting-row').forEach((li, i) => {
    li.querySelector('label').textContent = `Alternate greeting ${i + 1}`;
    li.querySelector('.greeting-remove').setAttribute('aria-label', `Remove alternate greeting ${i + 1}`);
  });
}

function greetingsShown() {
  return Array.from(els.greetings.querySelectorAll('textarea'), (t) => t.value);
}

function errorsClear() {
  els.error.hidden = true;
  els.error.textContent = '';
  delete els.error.dataset.field;
  els.form.querySelectorAll('.field-error').forEach((p) => {
    p.hidden = true;
    p.textContent = '';
  });
  els.form.querySelectorAll('[aria-invalid]').forEach((c) => c.removeAttribute('aria-invalid'));
}

/**
 * A failed save: under its field when `field` names one (`data.tags[3]` → Tags, `file` →
 * the picture), else at the top of the form. Either way the field is named.
 */
function errorShow(err) {
  const field = err.field || '';
  const message = apiMessage(err);
  const match = /^data\.([a-z_]+)(.*)$/.exec(field);
  const name = match ? match[1] : field === 'file' || field === 'avatar' ? 'avatar' : null;
  const slot = name ? $(`error-${name}`) : null;
  if (slot) {
    slot.textContent = match && match[2] ? `${partName(name, match[2])}: ${message}` : message;
    slot.hidden = false;
    const control = name === 'avatar' ? els.avatarFile : $(`editor-${name}`);
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      control.focus();
    }
    if (name === 'alternate_greetings') {
      const index = /^\[(\d+)\]/.exec(match[2]);
      const area = index ? els.greetings.querySelectorAll('textarea')[Number(index[1])] : null;
      if (area) {
        area.setAttribute('aria-invalid', 'true');
        area.focus();
      }
    }
  }
  els.error.textContent = field ? `${field}: ${message}` : message;
  els.error.dataset.field = field;
  els.error.hidden = false;
}

/** Which part of a list field an error names, readably: `[1]` of tags → "Tag 2". */
function partName(name, rest) {
  const index = /^\[(\d+)\]/.exec(rest);
  if (index && name === 'tags') return `Tag ${Number(index[1]) + 1}`;
  if (index && name === 'alternate_greetings') return `Alternate greeting ${Number(index[1]) + 1}`;
  return rest.replace(/^\./, '');
}

function fill(character) {
  const data = (character && character.data) || {};
  for (const field of TEXT_FIELDS) $(`editor-${field}`).value = asShown(data[field]);
  els.tags.value = (Array.isArray(data.tags) ? data.tags : []).join(', ');
  const greetings = Array.isArray(data.alternate_greetings) ? data.alternate_greetings : [];
  els.greetings.replaceChildren(...greetings.map((g) => greetingRow(asShown(g))));
  greetingLabels();
  avatarPreview(avatarSrc(character));
  lorebooksFill(character);
}

/** The "Lorebooks" checkboxes: for an existing character of the user's own only. */
function lorebooksFill(character) {
  const own = Boolean(character && !character.builtin);
  els.lorebooks.hidden = !own;
  if (!own) {
    els.lorebookOptions.replaceChildren();
    return;
  }
  const show = () => {
    if (editing.character !== character) return; // another one opened meanwhile
    lorebookCheckboxes(els.lorebookOptions, new Set(character.lorebooks || []), 'editor-lorebook', null);
  };
  show();
  if (!lorebooksKnown().length) lorebooksLoad().then(show, () => {});
}

/** The ticked lorebooks, or null when they are as loaded (or not shown). */
function lorebooksChanged(character) {
  if (els.lorebooks.hidden || !character) return null;
  const ticked = Array.from(els.lorebookOptions.querySelectorAll('input[type=checkbox]'));
  if (!ticked.length) return null;
  const known = new Set(ticked.map((b) => b.value));
  const ids = ticked.filter((b) => b.checked).map((b) => b.value);
  // Attached ones this page does not list (none known yet) stay attached.
  const kept = (character.lorebooks || []).filter((id) => !known.has(id));
  const next = [...kept, ...ids];
  const before = character.lorebooks || [];
  const same = next.length === before.length && next.every((id) => before.includes(id));
  return same ? null : next;
}

function avatarPreview(src) {
  avatarFill(els.avatar, $('editor-name').value || '?', src);
}

/** Everything the form holds, as card fields (blank alternate greetings left out). */
function formData() {
  const data = {};
  for (const field of TEXT_FIELDS) data[field] = $(`editor-${field}`).value;
  data.name = data.name.trim();
  data.alternate_greetings = greetingsShown().filter((g) => g.trim());
  data.tags = tagsOf(els.tags.value);
  return data;
}

/** The fields that differ from the character as loaded (so a PATCH leaves the rest as it was). */
function changes(original, data) {
  const out = {};
  for (const field of TEXT_FIELDS) {
    if (asShown(original[field]) !== data[field]) out[field] = data[field];
  }
  const greetings = (original.alternate_greetings || []).map(asShown);
  if (JSON.stringify(greetings) !== JSON.stringify(data.alternate_greetings)) {
    out.alternate_greetings = data.alternate_greetings;
  }
  if (JSON.stringify(original.tags || []) !== JSON.stringify(data.tags)) out.tags = data.tags;
  return out;
}

function busySet(busy, label) {
  editing.busy = busy;
  els.save.disabled = busy;
  els.save.setAttribute('aria-busy', busy ? 'true' : 'false');
  els.status.textContent = label || '';
}

async function save() {
  if (editing.readOnly || editing.busy) return;
  errorsClear();
  const data = formData();
  if (!data.name) {
    errorShow({ field: 'data.name', message: 'A character needs a name.' });
    return;
  }
  const file = els.avatarFile.files[0] || null;
  busySet(true, 'Saving…');
  let character = editing.character;
  try {
    if (!character) {
      const blank = Object.fromEntries(Object.entries(data).filter(([, v]) => (Array.isArray(v) ? v.length : v)));
      character = await apiSend('/characters', { json: { data: blank } });
      editing.character = character; // a failed picture below must not create it twice
      els.title.textContent = `Edit ${character.data.name}`;
    } else {
      const changed = changes(character.data || {}, data);
      const lorebooks = lorebooksChanged(character);
      if (Object.keys(changed).length || lorebooks) {
        const json = {};
        if (Object.keys(changed).length) json.data = changed;
        if (lorebooks) json.lorebooks = lorebooks;
        character = await apiSend(`/characters/${encodeURIComponent(character.id)}`, {
          method: 'PATCH',
          json,
        });
        editing.character = character;
      }
    }
    if (file) {
      const form = new FormData();
      form.append('file', file, file.name);
      try {
        character = await apiSend(`/characters/${encodeURIComponent(character.id)}/avatar`, { method: 'PUT', form });
      } catch (err) {
        if (!err.field) err.field = 'file';
        throw err;
      }
      editing.character = character;
      els.avatarFile.value = '';
    }
  } catch (err) {
    busySet(false, '');
    errorShow(err);
    if (editing.character && editing.onSaved) editing.onSaved(editing.character, { keepOpen: true });
    return;
  }
  busySet(false, 'Saved');
  const saved = character;
  editorClose();
  if (editing.onSaved) editing.onSaved(saved, {});
}

function readOnlySet(readOnly) {
  editing.readOnly = readOnly;
  els.readonly.hidden = !readOnly;
  els.save.hidden = readOnly;
  els.greetingAdd.hidden = readOnly;
  els.avatarFile.disabled = readOnly;
  els.avatarFile.closest('.field').hidden = readOnly && !els.avatar.classList.contains('has-image');
  els.cancel.textContent = readOnly ? 'Close' : 'Cancel';
  els.form.querySelectorAll('input[type=text], textarea').forEach((c) => {
    c.readOnly = readOnly;
  });
  els.form.classList.toggle('is-readonly', readOnly);
}

/**
 * Opens the editor: on `character` (null for a new one). onSaved(character, {keepOpen})
 * runs after a save; onDuplicate(character) makes an editable copy (a built-in's).
 */
export function editorOpen(character, { onSaved, onDuplicate } = {}) {
  editing.character = character;
  editing.onSaved = onSaved || null;
  editing.onDuplicate = onDuplicate || null;
  busySet(false, '');
  errorsClear();
  els.avatarFile.value = '';
  editing.readOnly = Boolean(character && character.builtin);
  fill(character);
  readOnlySet(editing.readOnly);
  const name = character ? (character.data || {}).name || 'Unnamed character' : '';
  if (!character) els.title.textContent = 'New character';
  else if (editing.readOnly) els.title.textContent = `${name} (built-in)`;
  else els.title.textContent = `Edit ${name}`;
  if (!els.dialog.open) els.dialog.showModal();
  els.form.scrollTop = 0;
  (editing.readOnly ? els.duplicate : $('editor-name')).focus();
}

export function editorIsOpen() {
  return els.dialog.open;
}

export function editorClose() {
  if (els.dialog.open) els.dialog.close();
}

/** The editor's own events; once. */
export function editorBind() {
  els.form.addEventListener('submit', (event) => {
    event.preventDefault();
    save();
  });
  els.close.addEventListener('click', editorClose);
  els.cancel.addEventListener('click', editorClose);
  els.greetingAdd.addEventListener('click', () => {
    const row = greetingRow('');
    els.greetings.append(row);
    greetingLabels();
    row.querySelector('textarea').focus();
  });
  els.avatarFile.addEventListener('change', () => {
    const file = els.avatarFile.files[0];
    if (editing.previewUrl) URL.revokeObjectURL(editing.previewUrl);
    editing.previewUrl = file ? URL.createObjectURL(file) : null;
    avatarPreview(editing.previewUrl || avatarSrc(editing.character));
  });
  els.duplicate.addEventListener('click', async () => {
    if (!editing.onDuplicate || !editing.character) return;
    busySet(true, 'Copying…');
    const copy = await editing.onDuplicate(editing.character);
    busySet(false, '');
    if (copy) editorOpen(copy, { onSaved: editing.onSaved, onDuplicate: editing.onDuplicate });
  });
}
