/*
 * office/documents.js: the documents panel in the sidebar: upload with progress (the
 * button, or files dropped on the chat), indexing status polled until ready, errors in
 * the server's words, delete.
 */
import { API, CSRF_TOKEN, state } from '../state.js';
import { $, icon, node, spinner } from '../dom.js';
import { ApiError, api, apiMessage } from '../api.js';

const DOC_MAX_BYTES = 10 * 1024 * 1024;
const DOC_POLL_MS = 1500;
const DOC_POLL_SLOW_MS = 10000; // after DOC_POLL_PATIENCE_MS: a stuck "indexing" is not asked about every 1.5 s
const DOC_POLL_PATIENCE_MS = 120000;
const DOC_ERRORS_SHOWN = 3;

const els = {
  docUpload: $('document-upload'),
  docFile: $('document-file'),
  docList: $('document-list'),
  docEmpty: $('documents-empty'),
  docError: $('documents-error'),
  docErrorList: $('documents-error-list'),
  docErrorDismiss: $('documents-error-dismiss'),
  dropOverlay: $('drop-overlay'),
};

export const docs = {
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

export async function documentsLoad() {
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
  form.append('file', file, name);
  xhr.open('POST', `${API}/documents`);
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.setRequestHeader('X-CSRFToken', CSRF_TOKEN);
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

/** After a tool ran (a slash command or the model's call): a deleted document leaves the panel. */
export function toolSideEffects(tool) {
  if (tool === 'delete_document') documentsLoad();
}

/** Binds the panel: Upload, the file picker, dropped files, and catching up when the page is back in view. */
export function documentsBind() {
  els.docUpload.addEventListener('click', () => els.docFile.click());
  els.docFile.addEventListener('change', () => {
    documentsUpload(els.docFile.files);
    els.docFile.value = ''; // the same file can be picked again
  });
  els.docErrorDismiss.addEventListener('click', docErrorsClear);
  dropBind();
  // Documents may change elsewhere (another tab, the API): catch up when the page is back in view.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && docs.loaded) documentsLoad();
  });
  window.addEventListener('focus', () => {
    if (docs.loaded) documentsLoad();
  });
}
