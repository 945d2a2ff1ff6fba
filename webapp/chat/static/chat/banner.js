/*
 * banner.js: the status banner over the composer (model loading, server busy, queued,
 * connection lost or the app restarting) and the error line under it.
 */
import { state } from './state.js';
import { els } from './dom.js';

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

export function bannerRender() {
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

export function errorShow(err) {
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

export function errorClear() {
  els.errorLine.hidden = true;
  els.errorText.textContent = '';
  delete els.errorLine.dataset.code;
  delete els.errorLine.dataset.field;
}
