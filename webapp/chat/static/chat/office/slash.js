/*
 * office/slash.js: slash commands in the office composer (/calc, /search, /note, …):
 * parsing, the hint line while one is typed, and running one as a tool call whose
 * result shows as a local card (office/cards.js), never stored.
 */
import { els, icon, node, spinner } from '../dom.js';
import { apiMessage, apiPost } from '../api.js';
import { inputClear } from '../composer.js';
import { approvalShow, cardError, cardSet, resultRender, toolCardCreate } from './cards.js';
import { docs, documentsLoad, toolSideEffects } from './documents.js';
import { toolsGet } from './options.js';

/**
 * Rules: a command is "/" + a word at the very start, then a space or the end ("/calc 1+1",
 * "/notes"). Anything else is a message for the model: "/ hello", "/usr/bin?" and " /calc"
 * are sent as typed, and "//text" sends "/text".
 */
const SLASH_RE = /^\/([A-Za-z][\w-]*)(?:\s+([\s\S]*))?$/;

const SLASH_COMMANDS = [
  { name: 'search', tool: 'search_documents', usage: '/search <query>', args: (a) => (a ? { query: a } : null) },
  { name: 'web', tool: 'web_search', usage: '/web <query>', args: (a) => (a ? { query: a } : null) },
  { name: 'calc', tool: 'calculator', usage: '/calc <expression>', args: (a) => (a ? { expression: a } : null) },
  { name: 'time', tool: 'current_time', usage: '/time [zone]', args: (a) => (a ? { timezone: a } : {}) },
  { name: 'note', tool: 'save_note', usage: '/note <title>: <text>', args: noteArgs },
  { name: 'notes', tool: 'list_notes', usage: '/notes [how many]', args: notesArgs },
  { name: 'delete', tool: 'delete_document', usage: '/delete <document title or id>', args: null },
  { name: 'help', tool: null, usage: '/help', args: null },
];
const SLASH_ABOUT = {
  help: 'List these commands.',
  delete: 'Delete one of your documents (asks you to approve first).',
};

function noteArgs(a) {
  const at = a.indexOf(':');
  if (at < 1) return null;
  const title = a.slice(0, at).trim();
  const text = a.slice(at + 1).trim();
  return title && text ? { title, text } : null;
}

function notesArgs(a) {
  if (!a) return {};
  return /^\d{1,2}$/.test(a) ? { limit: Number(a) } : null;
}

/** null: not a command, send as it is. {kind: 'text', text}: send this text. {kind: 'command', …}. */
function slashParse(raw) {
  if (!raw.startsWith('/')) return null;
  if (raw.startsWith('//')) return { kind: 'text', text: raw.slice(1) };
  const match = SLASH_RE.exec(raw.trimEnd());
  if (!match) return null;
  return { kind: 'command', name: match[1].toLowerCase(), arg: (match[2] || '').trim() };
}

let hintDefault = null;

/** While a command is typed, the hint line under the composer shows the matching usages. */
function slashHintUpdate(value) {
  if (!els.hint) return;
  if (hintDefault === null) hintDefault = els.hint.textContent;
  const first = value.split(/\s/)[0];
  const match = value.startsWith('//') ? null : /^\/([A-Za-z][\w-]*)?$/.exec(first);
  const typedArgs = value.length > first.length;
  if (!match || (!match[1] && typedArgs)) {
    // Not a command ("/ hello", "/usr/bin", "//x" are messages): the usual hint.
    if (els.hint.textContent !== hintDefault) els.hint.textContent = hintDefault;
    els.hint.classList.remove('is-commands');
    return;
  }
  const word = (match[1] || '').toLowerCase();
  const found = SLASH_COMMANDS.filter((c) => (typedArgs ? c.name === word : c.name.startsWith(word)));
  const text = found.length
    ? found.map((c) => c.usage).join(' · ')
    : `No command /${word}: try /help`;
  els.hint.textContent = text;
  els.hint.classList.add('is-commands');
}

function slashUsageHint(commandText, message) {
  const view = toolCardCreate(null, commandText, 'hint');
  const p = node('p', 'tool-hint');
  p.dataset.testid = 'slash-hint';
  p.append(icon('info'), node('span', null, message));
  const list = node('p', 'tool-muted', `Commands: ${SLASH_COMMANDS.map((c) => c.usage).join(' · ')}`);
  cardSet(view, 'hint', p, list);
}

/** Runs a parsed command. Usage mistakes keep the text in the composer to fix it. */
async function slashRun(parsed, commandText) {
  const spec = SLASH_COMMANDS.find((c) => c.name === parsed.name);
  if (!spec) {
    slashUsageHint(commandText, `Unknown command /${parsed.name}.`);
    return;
  }
  if (spec.name === 'help') {
    inputClear();
    helpShow(commandText);
    return;
  }
  let args;
  if (spec.name === 'delete') {
    if (!parsed.arg) {
      slashUsageHint(commandText, `Usage: ${spec.usage}`);
      return;
    }
    args = await deleteArgs(parsed.arg, commandText);
    if (!args) return;
  } else {
    args = spec.args(parsed.arg);
    if (!args) {
      slashUsageHint(commandText, `Usage: ${spec.usage}`);
      return;
    }
  }
  inputClear();
  const view = toolCardCreate(spec.tool, commandText, 'pending');
  cardSet(view, 'pending', node('p', 'tool-muted', 'Running…'));
  view.body.firstChild.prepend(spinner());
  let response;
  try {
    response = await apiPost(`/tools/${encodeURIComponent(spec.tool)}/call`, { arguments: args, source: 'slash' });
  } catch (err) {
    cardError(view, err);
    return;
  }
  const body = response.body || {};
  if (response.status === 202 || body.status === 'approval_required') {
    approvalShow(view, spec.tool, args, body);
    return;
  }
  if (typeof body.duration_ms === 'number') {
    view.note.textContent = `${Math.round(body.duration_ms)} ms · only you · not saved`;
  }
  cardSet(view, 'ok', resultRender(spec.tool, body.result || {}));
  toolSideEffects(spec.tool);
}

/** "/delete x": x is a document id, its exact title, or a unique part of one title. */
async function deleteArgs(wanted, commandText) {
  await documentsLoad();
  const lower = wanted.toLowerCase();
  let matches = docs.list.filter((d) => d.id === wanted);
  if (!matches.length) matches = docs.list.filter((d) => (d.title || '').toLowerCase() === lower);
  if (!matches.length) {
    matches = docs.list.filter(
      (d) => (d.title || '').toLowerCase().includes(lower) || (d.filename || '').toLowerCase().includes(lower),
    );
  }
  if (matches.length === 1) return { document_id: matches[0].id };
  const titles = matches.map((d) => d.title).join(', ');
  const message = matches.length
    ? `“${wanted}” matches ${matches.length} documents (${titles}); use more of the title.`
    : `No document matches “${wanted}”.`;
  slashUsageHint(commandText, message);
  return null;
}

async function helpShow(commandText) {
  const view = toolCardCreate(null, commandText, 'pending');
  let tools = new Map();
  let note = null;
  try {
    tools = await toolsGet();
  } catch (err) {
    note = node('p', 'tool-muted', `Tool descriptions are unavailable (${apiMessage(err)}).`);
  }
  const list = node('dl', 'help-list');
  for (const c of SLASH_COMMANDS) {
    const tool = c.tool ? tools.get(c.tool) : null;
    const dt = node('dt');
    dt.append(node('code', null, c.usage));
    const about = (tool && tool.description) || SLASH_ABOUT[c.name] || (c.tool ? `Calls ${c.tool}.` : '');
    const dd = node('dd', null, about);
    if (tool && tool.needs_approval) dd.prepend(node('span', 'badge badge-approval', 'asks approval'), ' ');
    list.append(dt, dd);
  }
  const rules = node(
    'p',
    'tool-muted',
    'A command is /word at the very start of the message. Anything else goes to the model as typed, ' +
      'so a slash followed by a space is an ordinary message, and //text sends /text. ' +
      'Results show only here and are not saved in the chat.',
  );
  cardSet(view, 'help', list, rules, ...(note ? [note] : []));
}

/** The composer's text as typed (hooks.composerTyped): shows the matching commands; true for a command. */
export function slashTyped(value) {
  const parsed = slashParse(value);
  slashHintUpdate(value);
  return Boolean(parsed && parsed.kind === 'command');
}

/** Enter or Send (hooks.submitText): a command runs here (null); "//text" sends "/text". */
export function slashSubmit(text) {
  const parsed = slashParse(text);
  if (parsed && parsed.kind === 'command') {
    slashRun(parsed, text);
    return null;
  }
  return parsed && parsed.kind === 'text' ? parsed.text : text;
}
