/*
 * office/tool-steps.js: the tool calls the model makes in a reply, shown as "tool steps"
 * above its text: running, then the outcome (a one-line preview, the whole result a click
 * away); a call that needs approval gets Approve / Deny, answered on the reply's own
 * WebSocket. A finished reply shows its calls as stored (meta.tool_calls).
 */
import { messageData, state } from '../state.js';
import { icon, node, spinner } from '../dom.js';
import { bannerRender } from '../banner.js';
import { wsSend } from '../socket.js';
import { nearBottom, scrollToBottom } from '../thread.js';
import { toolSideEffects } from './documents.js';

const STEP_LABELS = {
  running: 'Running…',
  ok: 'OK',
  error: 'Error',
  denied: 'Denied',
  approval_required: 'Needs your approval',
  unknown: 'No outcome',
};
const RESULT_PREVIEW_CHARS = 140;
const stepViews = new WeakMap(); // tool step element -> its parts, the call shown and the user's decision
let stepSeq = 0;

function stepsContainer(article) {
  const data = messageData.get(article);
  if (!data.stepsEl) {
    const wrap = node('div', 'tool-steps');
    wrap.dataset.testid = 'tool-steps';
    data.body.before(wrap);
    data.stepsEl = wrap;
  }
  return data.stepsEl;
}

function toolStepCreate() {
  stepSeq += 1;
  const step = node('div', 'tool-step');
  step.dataset.testid = 'tool-step';
  step.setAttribute('role', 'group');
  const head = node('div', 'tool-step-head');
  const mark = node('span', 'tool-step-icon');
  const name = node('code', 'tool-step-name');
  name.dataset.testid = 'tool-step-name';
  const status = node('span', 'tool-step-status');
  status.dataset.testid = 'tool-step-status';
  head.append(mark, node('span', 'tool-step-kind', 'Tool call'), name, status);
  const args = node('pre', 'tool-step-args');
  args.dataset.testid = 'tool-step-args';
  args.setAttribute('aria-label', 'Arguments');
  const detail = node('div', 'tool-step-detail');
  detail.dataset.testid = 'tool-step-detail';
  step.append(head, args, detail);
  stepViews.set(step, { seq: stepSeq, mark, name, status, args, detail, call: null, decision: null, live: null });
  return step;
}

function argumentsText(args) {
  if (!args || typeof args !== 'object' || !Object.keys(args).length) return '(no arguments)';
  return JSON.stringify(args, null, 2);
}

/** One line that says what a tool returned; the whole result is a click away. */
function resultPreviewText(tool, result) {
  if (result === null || result === undefined) return 'No result.';
  if (typeof result !== 'object') return String(result); // a long result is stored cut, as text
  const count = (list, one, many) => `${list.length} ${list.length === 1 ? one : many}`;
  if (tool === 'calculator' && 'result' in result) return `${result.expression ?? ''} = ${result.result}`;
  if (tool === 'current_time' && result.iso) {
    return `${String(result.iso).replace('T', ' ')} ${result.weekday || ''} ${result.timezone || ''}`.trim();
  }
  if ((tool === 'web_search' || tool === 'search_documents') && Array.isArray(result.results)) {
    const first = result.results[0] || {};
    const found = count(result.results, 'result', 'results');
    return result.results.length ? `${found}: ${first.title || first.url || ''}` : 'No results.';
  }
  if (tool === 'save_note' && result.note) return `Saved note “${result.note.title || ''}”.`;
  if (tool === 'list_notes' && Array.isArray(result.notes)) return count(result.notes, 'note', 'notes');
  if (tool === 'delete_document' && result.deleted) {
    return `Deleted “${result.deleted.title || result.deleted.id || 'the document'}”.`;
  }
  return JSON.stringify(result);
}

function resultBlock(view, tool, result) {
  let preview = resultPreviewText(tool, result).replace(/\s+/g, ' ').trim();
  if (preview.length > RESULT_PREVIEW_CHARS) preview = `${preview.slice(0, RESULT_PREVIEW_CHARS - 1)}…`;
  const wrap = node('div', 'tool-step-result');
  const line = node('p', 'tool-step-preview');
  line.dataset.testid = 'tool-step-preview';
  line.append(icon('check'), node('span', 'tool-step-preview-text', preview));
  const full = node('pre', 'tool-step-full', typeof result === 'string' ? result : JSON.stringify(result, null, 2));
  full.id = `tool-step-result-${view.seq}`;
  full.dataset.testid = 'tool-step-full';
  full.hidden = true;
  const toggle = node('button', 'tool-step-expand', 'Show result');
  toggle.type = 'button';
  toggle.dataset.testid = 'tool-step-expand';
  toggle.setAttribute('aria-expanded', 'false');
  toggle.setAttribute('aria-controls', full.id);
  toggle.addEventListener('click', () => {
    const open = toggle.getAttribute('aria-expanded') !== 'true';
    toggle.setAttribute('aria-expanded', String(open));
    toggle.textContent = open ? 'Hide result' : 'Show result';
    full.hidden = !open;
  });
  line.append(toggle);
  wrap.append(line, full);
  return wrap;
}

function stepNote(text, className) {
  const p = node('p', `tool-step-note${className ? ` ${className}` : ''}`, text);
  p.dataset.testid = 'tool-step-note';
  return p;
}

/** Approve / Deny for a call that waits: the decision goes back on the reply's own socket. */
function approvalActions(view, call) {
  const actions = node('div', 'approval-actions');
  const approve = node('button', 'approval-button approve', 'Approve');
  approve.type = 'button';
  approve.dataset.testid = 'approve-button';
  approve.setAttribute('aria-label', `Approve ${call.tool}`);
  const deny = node('button', 'approval-button deny', 'Deny');
  deny.type = 'button';
  deny.dataset.testid = 'deny-button';
  deny.setAttribute('aria-label', `Deny ${call.tool}`);
  actions.append(approve, deny);
  const outcome = node('p', 'tool-step-note approval-outcome');
  outcome.dataset.testid = 'approval-outcome';
  outcome.setAttribute('role', 'status');
  const decide = (decision) => {
    if (approve.disabled) return;
    if (!wsSend({ type: 'approval', approval_id: call.approval_id, decision })) {
      outcome.textContent = 'Not connected: your decision was not sent.';
      return;
    }
    view.decision = decision;
    approve.disabled = true;
    deny.disabled = true;
    const doing = decision === 'approve' ? ' Approved: running it…' : ' Denied: the reply goes on without it…';
    outcome.replaceChildren(spinner(), document.createTextNode(doing));
  };
  approve.addEventListener('click', () => decide('approve'));
  deny.addEventListener('click', () => decide('deny'));
  view.live = { approve, deny, outcome };
  return [actions, outcome];
}

/** Shows `call` ({tool, arguments, status, result?, error?, approval_id?}) in a step; `live`: buttons allowed. */
function toolStepSet(step, call, live) {
  const view = stepViews.get(step);
  const tool = String(call.tool || 'tool');
  const status = Object.prototype.hasOwnProperty.call(STEP_LABELS, call.status) ? call.status : 'unknown';
  view.call = Object.assign({}, call, { tool, status });
  view.live = null;
  step.dataset.tool = tool;
  step.dataset.status = status;
  if (call.approval_id) step.dataset.approvalId = String(call.approval_id);
  step.setAttribute('aria-label', `Tool call: ${tool}, ${STEP_LABELS[status].toLowerCase()}`);
  view.name.textContent = tool;
  view.args.textContent = argumentsText(call.arguments);
  view.mark.replaceChildren(icon(status === 'approval_required' ? 'shield' : 'tool'));
  const label = status === 'approval_required' && !live ? 'Was waiting for approval' : STEP_LABELS[status];
  view.status.replaceChildren(...(status === 'running' ? [spinner()] : []), node('span', null, label));
  const decided = {
    approve: 'You approved it.',
    deny: 'You denied it.',
    stop: 'Stopped: the call was denied.',
  }[view.decision];
  const parts = [];
  if (status === 'ok') {
    if (decided) parts.push(stepNote(decided, 'is-decision'));
    parts.push(resultBlock(view, tool, call.result));
  } else if (status === 'error') {
    if (decided) parts.push(stepNote(decided, 'is-decision'));
    const line = node('p', 'tool-error');
    line.dataset.testid = 'tool-error';
    line.append(icon('alert'), node('span', null, String(call.error || 'The tool failed.')));
    parts.push(line);
  } else if (status === 'denied') {
    parts.push(stepNote(`${decided || 'Denied.'} It did not run.`));
  } else if (status === 'approval_required' && live) {
    parts.push(stepNote(`${tool} runs only if you approve it. Stop denies it too.`));
    parts.push(...approvalActions(view, view.call));
  } else if (status === 'approval_required') {
    const note = stepNote('The reply was waiting for approval of this call. Approval id: ');
    note.append(node('code', 'tool-step-id', String(call.approval_id || '?')));
    parts.push(note);
  } else if (status === 'unknown') {
    parts.push(stepNote('The reply ended before this call had an outcome.'));
  }
  view.detail.replaceChildren(...parts);
}

/** A tool_call frame of the reply being streamed: a new step (running) or the outcome of the last one. */
export function onToolCall(frame) {
  const s = state.stream;
  if (!s) return;
  if (state.queuePosition !== null) {
    state.queuePosition = null;
    bannerRender();
  }
  const stick = nearBottom();
  const wrap = stepsContainer(s.bubble);
  let step = null;
  const last = wrap.lastElementChild;
  if (frame.status !== 'running' && last && ['running', 'approval_required'].includes(last.dataset.status)) {
    step = last;
  }
  if (!step) {
    step = toolStepCreate();
    step.classList.add('is-new');
    wrap.append(step);
  }
  toolStepSet(step, frame, !s.stopRequested);
  if (frame.status === 'ok') toolSideEffects(frame.tool);
  if (stick) scrollToBottom();
}

/** Stop was pressed: a call waiting for approval is denied by it, so its buttons go. */
export function toolStepsStopping(article) {
  const data = messageData.get(article);
  if (!data || !data.stepsEl) return;
  for (const step of data.stepsEl.children) {
    const view = stepViews.get(step);
    if (!view || !view.live) continue;
    view.live.approve.disabled = true;
    view.live.deny.disabled = true;
    if (!view.decision) {
      view.decision = 'stop';
      view.live.outcome.replaceChildren(spinner(), document.createTextNode(' Stopping: the call is denied…'));
    }
  }
}

/**
 * A reply is over: show its calls as stored (meta.tool_calls), keeping the steps that
 * streamed (and what the user opened or decided); no buttons are left on a finished reply.
 */
export function toolStepsFinish(article) {
  const data = messageData.get(article);
  const meta = data.meta || {};
  const calls = Array.isArray(meta.tool_calls) ? meta.tool_calls.filter((c) => c && typeof c === 'object') : [];
  const shown = data.stepsEl ? Array.from(data.stepsEl.children) : [];
  if (calls.length && shown.length !== calls.length) {
    if (data.stepsEl) data.stepsEl.replaceChildren();
    const wrap = stepsContainer(article);
    for (const call of calls) {
      const step = toolStepCreate();
      wrap.append(step);
      toolStepSet(step, call, false);
    }
    return;
  }
  shown.forEach((step, i) => {
    const view = stepViews.get(step);
    const call = calls[i] || view.call;
    const pending = call.status === 'running' || call.status === 'approval_required';
    const status = pending && !calls[i] && call.status === 'running' ? 'unknown' : call.status;
    if (view.live || status !== view.call.status) toolStepSet(step, Object.assign({}, call, { status }), false);
  });
}
