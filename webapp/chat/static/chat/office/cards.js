/*
 * office/cards.js: the cards a slash command leaves in the conversation (only here, not
 * saved): its result as text, an error, or Approve / Deny for a tool that asks first.
 */
import { els, icon, node, spinner } from '../dom.js';
import { apiMessage, apiPost } from '../api.js';
import { relativeTime } from '../conversations.js';
import { safeHref } from '../markdown.js';
import { introUpdate, nearBottom, scrollToBottom } from '../thread.js';
import { docs, toolSideEffects } from './documents.js';

/** An unsaved card in the conversation: header (tool, command) and a body filled later. */
export function toolCardCreate(tool, commandText, status) {
  const card = node('article', 'tool-card');
  card.dataset.testid = 'tool-card';
  card.dataset.tool = tool || 'help';
  card.dataset.status = status;
  card.setAttribute('aria-label', tool ? `Tool result: ${tool}` : 'Commands');
  const head = node('header', 'tool-card-head');
  const badgeIcon = node('span', 'tool-card-icon');
  badgeIcon.append(icon('tool'));
  const name = node('span', 'tool-card-name', tool || 'commands');
  name.dataset.testid = 'tool-name';
  const shown = commandText.length > 80 ? `${commandText.slice(0, 79)}…` : commandText;
  const command = node('code', 'tool-card-command', shown);
  command.title = commandText;
  const note = node('span', 'tool-card-note', 'only you · not saved');
  const close = node('button', 'icon-button tool-card-close');
  close.type = 'button';
  close.setAttribute('aria-label', 'Dismiss this card');
  close.title = 'Dismiss';
  close.append(icon('close'));
  close.addEventListener('click', () => {
    card.remove();
    introUpdate();
    els.input.focus();
  });
  head.append(badgeIcon, name, command, note, close);
  const body = node('div', 'tool-card-body');
  body.dataset.testid = 'tool-result';
  card.append(head, body);
  card.classList.add('is-new');
  els.messages.append(card);
  introUpdate();
  scrollToBottom();
  return { card, body, head, note };
}

export function cardSet(view, status, ...children) {
  const stick = nearBottom();
  view.card.dataset.status = status;
  view.card.setAttribute('aria-busy', status === 'pending' ? 'true' : 'false');
  view.body.replaceChildren(...children);
  if (stick) scrollToBottom();
}

export function cardError(view, err) {
  const line = node('p', 'tool-error');
  line.dataset.testid = 'tool-error';
  line.append(icon('alert'), node('span', null, apiMessage(err)));
  const extra = [];
  if (err.retryAfter && !/retry/i.test(err.message || '')) {
    extra.push(node('p', 'tool-muted', `Try again in ${Math.ceil(err.retryAfter)} s.`));
  }
  cardSet(view, 'error', line, ...extra);
}

/** A 202 from a tool: show what would run, with Approve / Deny. */
export function approvalShow(view, tool, args, body) {
  view.card.classList.add('is-approval');
  view.card.setAttribute('aria-label', `Approval needed: ${tool}`);
  view.head.querySelector('.tool-card-icon').replaceChildren(icon('shield'));
  view.note.textContent = 'needs your approval';
  const title = node('p', 'approval-title', `Run ${tool}?`);
  const reason = node('p', 'tool-muted', body.reason || 'This tool asks before it runs.');
  const argList = node('dl', 'approval-args');
  argList.dataset.testid = 'approval-args';
  for (const [key, value] of Object.entries(args)) {
    const shown = typeof value === 'string' ? value : JSON.stringify(value);
    const dd = node('dd', null, shown);
    if (key === 'document_id') {
      const doc = docs.list.find((d) => d.id === value);
      if (doc) dd.append(node('span', 'approval-doc', ` — “${doc.title}”`));
    }
    argList.append(node('dt', null, key), dd);
  }
  const actions = node('div', 'approval-actions');
  const approve = node('button', 'approval-button approve', 'Approve');
  approve.type = 'button';
  approve.dataset.testid = 'approve-button';
  approve.setAttribute('aria-label', `Approve ${tool}`);
  const deny = node('button', 'approval-button deny', 'Deny');
  deny.type = 'button';
  deny.dataset.testid = 'deny-button';
  deny.setAttribute('aria-label', `Deny ${tool}`);
  actions.append(approve, deny);
  const outcome = node('div', 'approval-outcome');
  outcome.dataset.testid = 'approval-outcome';
  outcome.setAttribute('role', 'status');
  const decide = async (decision) => {
    approve.disabled = true;
    deny.disabled = true;
    view.card.setAttribute('aria-busy', 'true');
    const doing = decision === 'approve' ? ' Running…' : ' Denying…';
    outcome.replaceChildren(spinner(), document.createTextNode(doing));
    let response;
    try {
      response = await apiPost(`/approvals/${encodeURIComponent(body.approval_id)}`, { decision });
    } catch (err) {
      view.card.setAttribute('aria-busy', 'false');
      const closed = err.status === 404 || err.status === 409;
      approve.disabled = closed;
      deny.disabled = closed;
      const line = node('p', 'tool-error');
      line.dataset.testid = 'tool-error';
      line.append(icon('alert'), node('span', null, apiMessage(err)));
      outcome.replaceChildren(line);
      view.card.dataset.status = closed ? 'error' : 'approval';
      return;
    }
    view.card.setAttribute('aria-busy', 'false');
    const result = response.body || {};
    actions.remove();
    view.card.dataset.status = result.status || decision;
    if (result.status === 'approved') {
      view.note.textContent = 'approved · not saved';
      const verdict = node('p', 'approval-verdict is-approved', 'Approved.');
      outcome.replaceChildren(verdict, resultRender(tool, result.result || {}));
      toolSideEffects(tool);
    } else {
      view.note.textContent = `${result.status || 'denied'} · not saved`;
      outcome.replaceChildren(node('p', 'approval-verdict is-denied', 'Denied — nothing was run.'));
    }
    if (nearBottom()) scrollToBottom();
  };
  approve.addEventListener('click', () => decide('approve'));
  deny.addEventListener('click', () => decide('deny'));
  cardSet(view, 'approval', title, reason, argList, actions, outcome);
}

/** A tool's result as DOM nodes (text only; links only for http(s) addresses). */
export function resultRender(tool, result) {
  switch (tool) {
    case 'calculator': {
      const p = node('p', 'calc-result');
      p.append(node('span', 'calc-expression', String(result.expression ?? '')), node('span', 'calc-equals', ' = '));
      p.append(node('strong', 'calc-value', String(result.result ?? '')));
      return p;
    }
    case 'current_time': {
      const p = node('p', 'time-result');
      const iso = String(result.iso || '');
      p.append(node('strong', null, iso.replace('T', ' ')));
      p.append(node('span', 'tool-muted', ` ${result.weekday || ''} · ${result.timezone || ''}`));
      return p;
    }
    case 'search_documents': {
      const hits = Array.isArray(result.results) ? result.results : [];
      if (!hits.length) return node('p', 'tool-muted', 'No passage in your documents matches.');
      const ol = node('ol', 'result-list');
      for (const hit of hits) {
        const li = node('li', 'result-item');
        li.dataset.documentId = hit.document_id || '';
        li.append(node('div', 'result-title', hit.title || 'Untitled document'));
        li.append(node('p', 'result-text', hit.excerpt || ''));
        ol.append(li);
      }
      return ol;
    }
    case 'web_search': {
      const hits = Array.isArray(result.results) ? result.results : [];
      if (!hits.length) return node('p', 'tool-muted', 'No web results.');
      const ol = node('ol', 'result-list');
      for (const hit of hits) {
        const li = node('li', 'result-item');
        const href = safeHref(hit.url || '');
        let title;
        if (href && /^https?:/i.test(href)) {
          title = node('a', 'result-title', hit.title || href);
          title.href = href;
          title.target = '_blank';
          title.rel = 'noopener noreferrer nofollow';
        } else {
          title = node('div', 'result-title', hit.title || '');
        }
        li.append(title);
        if (hit.url) li.append(node('div', 'result-url', String(hit.url)));
        if (hit.snippet) li.append(node('p', 'result-text', hit.snippet));
        ol.append(li);
      }
      return ol;
    }
    case 'save_note': {
      const note = result.note || {};
      const wrap = node('div', 'note-result');
      wrap.append(node('p', null, `Saved note “${note.title || ''}”.`));
      if (note.text) wrap.append(node('p', 'result-text', note.text));
      return wrap;
    }
    case 'list_notes': {
      const notes = Array.isArray(result.notes) ? result.notes : [];
      if (!notes.length) return node('p', 'tool-muted', 'No notes yet. Save one with /note <title>: <text>.');
      const ol = node('ol', 'result-list');
      for (const note of notes) {
        const li = node('li', 'result-item');
        const head = node('div', 'result-title', note.title || '');
        if (note.created_at) head.append(node('span', 'result-when', ` · ${relativeTime(note.created_at)}`));
        li.append(head, node('p', 'result-text', note.text || ''));
        ol.append(li);
      }
      return ol;
    }
    case 'delete_document': {
      const deleted = result.deleted || {};
      return node('p', null, `Deleted “${deleted.title || deleted.id || 'the document'}”.`);
    }
    default: {
      const pre = node('pre', 'result-json', JSON.stringify(result, null, 2));
      return pre;
    }
  }
}
