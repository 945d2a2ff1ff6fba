/*
 * composer.js: the message box and its Send / Stop button: what they show (placeholder,
 * counter, enabled or not) and what Enter sends.
 */
import { INPUT_MAX, personaName, state } from './state.js';
import { els } from './dom.js';
import { hooks } from './hooks.js';
import { wsOpen } from './socket.js';
import { sendMessage } from './stream.js';

export function composerUpdate() {
  const ready = state.model.state === 'ready';
  const streaming = Boolean(state.stream);
  els.input.disabled = !ready;
  if (!ready) {
    els.input.placeholder = state.model.state === 'failed' ? 'The model is unavailable' : 'Model loading…';
  } else {
    const name = state.persona ? personaName(state.persona) : '';
    if (state.group) els.input.placeholder = `Message ${state.group.title || 'the group'}…`;
    else els.input.placeholder = name ? `Message ${name}…` : 'Message…';
  }
  const length = els.input.value.length;
  const command = hooks.composerTyped(els.input.value); // an office slash command
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

export function inputAutogrow() {
  const ta = els.input;
  ta.style.height = 'auto';
  const max = Math.max(120, window.innerHeight * 0.4);
  ta.style.height = `${Math.min(ta.scrollHeight, max)}px`;
}

export function restoreInput(text) {
  if (!text || els.input.value.trim()) return;
  els.input.value = text;
  inputAutogrow();
  composerUpdate();
}

export function inputClear() {
  els.input.value = '';
  inputAutogrow();
  composerUpdate();
}

/** Enter or the send button: an app's own command (office: /calc …) runs here, anything else goes to the model. */
export function submitInput() {
  const text = hooks.submitText(els.input.value);
  if (text !== null && !state.stream) sendMessage(text);
}
